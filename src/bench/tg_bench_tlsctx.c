/*
 * tg_bench_tlsctx: the one SSL_CTX of a load run, built from the options
 * (bctx_make). What it saves per handshake:
 *  - a lean library context (tg_bench_libctx.c: OpenSSL 3.0 otherwise walks
 *    all its decoders to parse the server certificate, ~45 us per
 *    handshake), whose X25519 key pair is reused for 1,024 handshakes (the
 *    server's work is unchanged); no session cache, no tickets;
 *  - read-ahead, so a whole flight comes in with one read();
 *  - AES-128-GCM first among the TLS 1.3 suites, as Go (hey) and Chrome do:
 *    SHA-256 for the transcript and key schedule is cheaper than SHA-384;
 *  - -k skips X509_verify_cert() (libssl runs it even with VERIFY_NONE);
 *    --cacert skips rebuilding a chain identical to the one just verified.
 *
 * Threading: the loop's thread only (the verify cache lives in struct
 * bench).
 */
#include "bench/tg_bench_client.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>

#include "bench/tg_bench_libctx.h"
#include "core/tg_time.h"

static int bctx_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bctx_usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "tlsgate bench: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    unsigned long e = ERR_get_error();
    if (e != 0) {
        char tmp[256];
        ERR_error_string_n(e, tmp, sizeof(tmp));
        fprintf(stderr, " (%s)", tmp);
    }
    fprintf(stderr, "\n");
    ERR_clear_error();
    return 2;
}

/* -k: no chain building at all (libssl still checks the CertificateVerify
 * signature with the certificate's key, so the handshake is complete). */
static int bctx_verify_none(X509_STORE_CTX *sctx, void *arg)
{
    (void)sctx;
    (void)arg;
    return 1;
}

/* --cacert: a full X509_verify_cert(), except that a leaf identical to the
 * last one that verified (same bytes, no intermediates sent) is accepted for
 * a second. Verifying the same bytes against the same store and name gives
 * the same answer; only the clock could change it, hence the second. */
static int bctx_verify_cached(X509_STORE_CTX *sctx, void *arg)
{
    struct bench *b = arg;
    X509 *leaf = X509_STORE_CTX_get0_cert(sctx);
    STACK_OF(X509) *untrusted = X509_STORE_CTX_get0_untrusted(sctx);
    uint64_t now = tg_now_ns();
    bool single = untrusted == NULL || sk_X509_num(untrusted) <= 1;
    if (single && b->verified_leaf != NULL && now - b->verified_at < TG_NS_PER_S &&
        X509_cmp(leaf, b->verified_leaf) == 0) {
        X509_STORE_CTX_set_error(sctx, X509_V_OK);
        return 1;
    }
    int ok = X509_verify_cert(sctx);
    if (ok == 1 && single && X509_up_ref(leaf) == 1) {
        X509_free(b->verified_leaf);
        b->verified_leaf = leaf;
        b->verified_at = now;
    }
    return ok;
}

/* Returns 0, or the exit status for a bad option value. */
int bctx_make(struct bench *b)
{
    const struct tg_bench_opts *o = b->o;
    if (o->lean_libctx)
        b->libctx = tg_bench_libctx_new(o->reuse_keyshare); /* NULL: the default context */
    SSL_CTX *ctx = SSL_CTX_new_ex(b->libctx, NULL, TLS_client_method());
    if (ctx == NULL)
        return bctx_usage_error("cannot create the TLS context");
    b->ctx = ctx;
    if (o->tls_version != 0 && (SSL_CTX_set_min_proto_version(ctx, o->tls_version) != 1 ||
                                SSL_CTX_set_max_proto_version(ctx, o->tls_version) != 1))
        return bctx_usage_error("cannot pin the TLS version");
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(ctx, 1);
    if (SSL_CTX_set1_groups_list(ctx, o->groups) != 1)
        return bctx_usage_error("--groups: unknown group in '%s'", o->groups);
    if (o->ciphers != NULL && SSL_CTX_set_cipher_list(ctx, o->ciphers) != 1)
        return bctx_usage_error("--ciphers: no usable cipher in '%s'", o->ciphers);
    /* Go's (hey's) and Chrome's order: AES-128-GCM first. SHA-256 for the
     * transcript and key schedule also costs both sides less than SHA-384. */
    const char *suites = o->ciphersuites ? o->ciphersuites
                                         : "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                           "TLS_CHACHA20_POLY1305_SHA256";
    if (SSL_CTX_set_ciphersuites(ctx, suites) != 1)
        return bctx_usage_error("--ciphersuites: bad list '%s'", suites);
    if (o->alpn != NULL) {
        unsigned char wire[256];
        int n = tg_bench_alpn_wire(o->alpn, wire, sizeof(wire));
        if (n < 0 || SSL_CTX_set_alpn_protos(ctx, wire, (unsigned)n) != 0)
            return bctx_usage_error("--alpn: bad list '%s'", o->alpn);
    }
    if (o->insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_cert_verify_callback(ctx, bctx_verify_none, NULL);
    } else {
        if (SSL_CTX_load_verify_locations(ctx, o->cacert, NULL) != 1)
            return bctx_usage_error("--cacert: cannot load '%s'", o->cacert);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        int ok;
        if (o->sni != NULL)
            ok = X509_VERIFY_PARAM_set1_host(param, o->sni, 0);
        else if (o->target.host_is_ip)
            ok = X509_VERIFY_PARAM_set1_ip_asc(param, o->target.host);
        else
            ok = X509_VERIFY_PARAM_set1_host(param, o->target.host, 0);
        if (ok != 1)
            return bctx_usage_error("cannot set the name to verify");
        SSL_CTX_set_cert_verify_callback(ctx, bctx_verify_cached, b);
    }
    return 0;
}
