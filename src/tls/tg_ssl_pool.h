/*
 * tg_ssl_pool: a small, bounded per-worker free list of server SSL objects,
 * reset with SSL_clear and reused by the next connection instead of an
 * SSL_free + SSL_new pair per handshake.
 *
 * Owner: the worker (one pool per worker thread; not thread-safe). Only SSL
 * objects whose handshake completed, whose SSL_CTX is still the one a new
 * connection would get (no SNI switch), and that hold no buffered bytes are
 * kept; anything else is freed. A kept object holds no session (its session,
 * and with it the master secret, is released on the way in) and no buffers.
 * tg_ssl_pool_get restores the per-connection settings a connection may have
 * changed (mode, options, verify mode) to its SSL_CTX's. The pool never holds
 * more than its capacity, and tg_ssl_pool_trim frees what was not used over a
 * housekeeping period, so it empties itself when connections stop.
 */
#ifndef TG_SSL_POOL_H
#define TG_SSL_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#define TG_SSL_POOL_MAX 64

struct tg_ssl_pool {
    SSL **ssl;  /* [cap] */
    size_t n;   /* kept now */
    size_t cap; /* 0: the pool is off (every put frees) */
    size_t low; /* fewest kept since the last trim */
    /* Counters for tests and debugging. */
    unsigned long long reused, created, kept, dropped;
};

/* cap 0 turns the pool off; returns false on allocation failure (then off). */
bool tg_ssl_pool_init(struct tg_ssl_pool *p, size_t cap);
/* An SSL for a new server connection on ctx: a kept one, reset, or SSL_new. */
SSL *tg_ssl_pool_get(struct tg_ssl_pool *p, SSL_CTX *ctx);
/* Done with ssl (its connection is closed). ctx is what a new connection on
 * the same listener would get; reusable false forces SSL_free (an older
 * generation). Takes ownership of ssl; NULL is a no-op. */
void tg_ssl_pool_put(struct tg_ssl_pool *p, SSL *ssl, SSL_CTX *ctx, bool reusable);
/* Frees the objects that stayed unused since the last trim; returns how
 * many are still kept. */
size_t tg_ssl_pool_trim(struct tg_ssl_pool *p);
/* Frees every kept object (a reload: they refer to the old contexts). */
void tg_ssl_pool_clear(struct tg_ssl_pool *p);
/* tg_ssl_pool_clear and the storage. */
void tg_ssl_pool_free(struct tg_ssl_pool *p);

#endif
