/*
 * tg_bench_libctx: a private OpenSSL library context whose certificate
 * parsing skips OpenSSL 3.0's walk over every decoder, and which can reuse
 * the client's key share (see the .c file for the why and the
 * measurements). Used by the load generator's SSL_CTX only.
 *
 * tg_bench_libctx_new() returns NULL on any failure; the caller then uses the
 * default context. Free with tg_bench_libctx_free() after every object made
 * from the context. One such context per process at a time, one thread.
 */
#ifndef TG_BENCH_LIBCTX_H
#define TG_BENCH_LIBCTX_H

#include <openssl/types.h>
#include <stdbool.h>

/* reuse_keyshare: hand the same X25519/X448 key pair to 1,024 handshakes. */
OSSL_LIB_CTX *tg_bench_libctx_new(bool reuse_keyshare);
void tg_bench_libctx_free(OSSL_LIB_CTX *ctx);

#endif
