/*
 * tg_ssl_pool: reuse of server SSL objects with SSL_clear (see the header).
 *
 * What SSL_new costs per connection in OpenSSL 3.0 (the certificate
 * structure copied from the SSL_CTX, the verify parameters, ex_data, the
 * record layer, the method's state) and SSL_free undoes is replaced by
 * SSL_clear, which resets the connection state and keeps those.
 */
#include "tls/tg_ssl_pool.h"

#include <stdlib.h>

bool tg_ssl_pool_init(struct tg_ssl_pool *p, size_t cap)
{
    *p = (struct tg_ssl_pool){0};
    if (cap == 0)
        return true;
    p->ssl = calloc(cap, sizeof(*p->ssl));
    if (p->ssl == NULL)
        return false;
    p->cap = cap;
    return true;
}

/* Back to the SSL_CTX's settings what a connection may change on its SSL. */
static void tg_ssl_pool_reset_settings(SSL *ssl, SSL_CTX *ctx)
{
    SSL_clear_mode(ssl, ~SSL_CTX_get_mode(ctx));
    SSL_set_mode(ssl, SSL_CTX_get_mode(ctx));
    SSL_clear_options(ssl, ~SSL_CTX_get_options(ctx));
    SSL_set_options(ssl, SSL_CTX_get_options(ctx));
    SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), SSL_CTX_get_verify_callback(ctx));
    SSL_set_verify_depth(ssl, SSL_CTX_get_verify_depth(ctx));
    SSL_set_async_callback_arg(ssl, NULL);
}

SSL *tg_ssl_pool_get(struct tg_ssl_pool *p, SSL_CTX *ctx)
{
    /* Newest first: the one most likely still in cache. Listeners differ in
     * SSL_CTX, so look for one of ctx's (the pool is small). */
    for (size_t i = p->n; i-- > 0;) {
        SSL *ssl = p->ssl[i];
        if (SSL_get_SSL_CTX(ssl) != ctx)
            continue;
        p->ssl[i] = p->ssl[--p->n];
        if (p->n < p->low)
            p->low = p->n;
        tg_ssl_pool_reset_settings(ssl, ctx);
        p->reused++;
        return ssl;
    }
    SSL *ssl = SSL_new(ctx);
    if (ssl != NULL)
        p->created++;
    return ssl;
}

void tg_ssl_pool_put(struct tg_ssl_pool *p, SSL *ssl, SSL_CTX *ctx, bool reusable)
{
    if (ssl == NULL)
        return;
    /* Only a finished handshake: one that stopped half-way may still have a
     * paused ASYNC job or a key operation in flight. Only ctx's own: after an
     * SNI switch its certificate and settings are another context's. */
    if (!reusable || p->n >= p->cap || SSL_get_SSL_CTX(ssl) != ctx || !SSL_is_init_finished(ssl) ||
        SSL_has_pending(ssl) || !SSL_free_buffers(ssl) || !SSL_clear(ssl)) {
        SSL_free(ssl);
        p->dropped++;
        return;
    }
    /* The last session (and its master secret, cleansed when freed) goes
     * now, not when the object is next used. SSL_clear left the socket BIOs,
     * whose descriptor is closed: the next SSL_set_fd replaces them. */
    SSL_set_session(ssl, NULL);
    SSL_set_bio(ssl, NULL, NULL);
    p->ssl[p->n++] = ssl;
    p->kept++;
}

size_t tg_ssl_pool_trim(struct tg_ssl_pool *p)
{
    for (size_t spare = p->low; spare > 0 && p->n > 0; spare--)
        SSL_free(p->ssl[--p->n]);
    p->low = p->n;
    return p->n;
}

void tg_ssl_pool_clear(struct tg_ssl_pool *p)
{
    while (p->n > 0)
        SSL_free(p->ssl[--p->n]);
    p->low = 0;
}

void tg_ssl_pool_free(struct tg_ssl_pool *p)
{
    tg_ssl_pool_clear(p);
    free(p->ssl);
    p->ssl = NULL;
    p->cap = 0;
}
