/* tg_ssl_pool: SSL objects kept after a finished handshake, reset, reused;
 * the rest freed; bounded; trimmed when unused. In-memory handshakes (BIO
 * pairs) between a server SSL from the pool and a fresh client. */
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "tg_test_util.h"
#include "tls/tg_ssl_pool.h"

static SSL_CTX *g_srv, *g_srv2, *g_cli;

static SSL_CTX *server_ctx(void)
{
    char *cert, *key;
    tg_test_make_cert("EC:P-256", "pool.test", &cert, &key);
    BIO *cb = BIO_new_mem_buf(cert, -1), *kb = BIO_new_mem_buf(key, -1);
    X509 *x = PEM_read_bio_X509(cb, NULL, NULL, NULL);
    EVP_PKEY *pk = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, pk), 1);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
    X509_free(x);
    EVP_PKEY_free(pk);
    BIO_free(cb);
    BIO_free(kb);
    free(cert);
    free(key);
    return ctx;
}

static int setup(void **state)
{
    (void)state;
    g_srv = server_ctx();
    g_srv2 = server_ctx();
    g_cli = SSL_CTX_new(TLS_client_method());
    return g_srv != NULL && g_srv2 != NULL && g_cli != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    SSL_CTX_free(g_srv);
    SSL_CTX_free(g_srv2);
    SSL_CTX_free(g_cli);
    return 0;
}

/* Drives a handshake between srv and a new client over a BIO pair; `steps`
 * bounds it (a few steps leave it unfinished). Returns the client. */
static SSL *handshake(SSL *srv, int steps)
{
    SSL *cli = SSL_new(g_cli);
    BIO *sb, *cbio;
    assert_int_equal(BIO_new_bio_pair(&sb, 0, &cbio, 0), 1);
    SSL_set_bio(srv, sb, sb);
    SSL_set_bio(cli, cbio, cbio);
    SSL_set_accept_state(srv);
    SSL_set_connect_state(cli);
    for (int i = 0; i < steps && !(SSL_is_init_finished(srv) && SSL_is_init_finished(cli)); i++) {
        (void)SSL_do_handshake(cli);
        (void)SSL_do_handshake(srv);
    }
    ERR_clear_error();
    return cli;
}

static void test_reused_after_a_finished_handshake(void **state)
{
    (void)state;
    struct tg_ssl_pool p;
    assert_true(tg_ssl_pool_init(&p, 4));
    SSL *s = tg_ssl_pool_get(&p, g_srv);
    assert_non_null(s);
    assert_int_equal(p.created, 1);
    SSL_clear_mode(s, SSL_MODE_RELEASE_BUFFERS); /* as a connection may */
    SSL_set_verify(s, SSL_VERIFY_PEER, NULL);
    SSL *c = handshake(s, 20);
    assert_true(SSL_is_init_finished(s));
    assert_non_null(SSL_get_session(s));
    tg_ssl_pool_put(&p, s, g_srv, true);
    assert_int_equal(p.n, 1);
    assert_int_equal(p.kept, 1);
    assert_null(SSL_get_session(s)); /* no session (master secret) kept */
    assert_null(SSL_get_rbio(s));
    SSL_free(c);

    SSL *again = tg_ssl_pool_get(&p, g_srv);
    assert_ptr_equal(again, s);
    assert_int_equal(p.reused, 1);
    assert_int_equal(p.n, 0);
    assert_true((SSL_get_mode(again) & SSL_MODE_RELEASE_BUFFERS) != 0);
    assert_int_equal(SSL_get_verify_mode(again), SSL_VERIFY_NONE);
    assert_false(SSL_is_init_finished(again));
    /* A second, complete handshake on the reset object. */
    c = handshake(again, 20);
    assert_true(SSL_is_init_finished(again));
    assert_true(SSL_is_init_finished(c));
    const char msg[] = "ping";
    char buf[8];
    assert_int_equal(SSL_write(c, msg, 4), 4);
    assert_int_equal(SSL_read(again, buf, sizeof(buf)), 4);
    assert_memory_equal(buf, msg, 4);
    SSL_free(c);
    tg_ssl_pool_put(&p, again, g_srv, true);
    assert_int_equal(p.n, 1);
    tg_ssl_pool_free(&p);
    assert_int_equal(p.n, 0);
}

static void test_dropped_when_not_reusable(void **state)
{
    (void)state;
    struct tg_ssl_pool p;
    assert_true(tg_ssl_pool_init(&p, 4));
    /* Handshake not finished. */
    SSL *s = tg_ssl_pool_get(&p, g_srv);
    SSL *c = handshake(s, 1);
    assert_false(SSL_is_init_finished(s));
    tg_ssl_pool_put(&p, s, g_srv, true);
    SSL_free(c);
    /* Another context than the listener's (an SNI switch, a reload). */
    s = tg_ssl_pool_get(&p, g_srv);
    c = handshake(s, 20);
    assert_true(SSL_is_init_finished(s));
    tg_ssl_pool_put(&p, s, g_srv2, true);
    SSL_free(c);
    /* The caller says no (an older generation). */
    s = tg_ssl_pool_get(&p, g_srv);
    c = handshake(s, 20);
    tg_ssl_pool_put(&p, s, g_srv, false);
    SSL_free(c);
    tg_ssl_pool_put(&p, NULL, g_srv, true);
    assert_int_equal(p.n, 0);
    assert_int_equal(p.dropped, 3);
    assert_int_equal(p.kept, 0);
    /* A pool of capacity 0 is off. */
    struct tg_ssl_pool off;
    assert_true(tg_ssl_pool_init(&off, 0));
    s = tg_ssl_pool_get(&off, g_srv);
    c = handshake(s, 20);
    tg_ssl_pool_put(&off, s, g_srv, true);
    SSL_free(c);
    assert_int_equal(off.n, 0);
    assert_int_equal(off.dropped, 1);
    tg_ssl_pool_free(&off);
    tg_ssl_pool_free(&p);
}

static void test_bounded_per_context_and_trimmed(void **state)
{
    (void)state;
    struct tg_ssl_pool p;
    assert_true(tg_ssl_pool_init(&p, 3));
    SSL *s[5], *c[5];
    for (int i = 0; i < 5; i++) {
        s[i] = tg_ssl_pool_get(&p, i == 0 ? g_srv2 : g_srv);
        c[i] = handshake(s[i], 20);
        assert_true(SSL_is_init_finished(s[i]));
    }
    for (int i = 0; i < 5; i++) {
        tg_ssl_pool_put(&p, s[i], i == 0 ? g_srv2 : g_srv, true);
        SSL_free(c[i]);
    }
    assert_int_equal(p.n, 3); /* the capacity */
    assert_int_equal(p.dropped, 2);
    /* g_srv2's object is found among g_srv's. */
    SSL *x = tg_ssl_pool_get(&p, g_srv2);
    assert_ptr_equal(x, s[0]);
    assert_ptr_equal(SSL_get_SSL_CTX(x), g_srv2);
    /* No g_srv2 object left: a new one, the two of g_srv stay. */
    SSL *y = tg_ssl_pool_get(&p, g_srv2);
    assert_ptr_not_equal(y, s[0]);
    assert_int_equal(p.n, 2);
    SSL_free(x);
    SSL_free(y);
    /* Trim frees what stayed unused for a whole period (the low-water mark
     * since the previous trim): the pool was empty since init, so nothing
     * the first time; nothing taken after it, so both the second time. */
    assert_int_equal(tg_ssl_pool_trim(&p), 2);
    assert_int_equal(tg_ssl_pool_trim(&p), 0);
    assert_int_equal(p.n, 0);
    tg_ssl_pool_free(&p);
}

static void test_trim_keeps_what_was_used(void **state)
{
    (void)state;
    struct tg_ssl_pool p;
    assert_true(tg_ssl_pool_init(&p, 8));
    SSL *s[3], *c[3];
    for (int i = 0; i < 3; i++) {
        s[i] = tg_ssl_pool_get(&p, g_srv);
        c[i] = handshake(s[i], 20);
    }
    for (int i = 0; i < 3; i++) {
        tg_ssl_pool_put(&p, s[i], g_srv, true);
        SSL_free(c[i]);
    }
    assert_int_equal(tg_ssl_pool_trim(&p), 3); /* low was 0: all were needed */
    SSL *t = tg_ssl_pool_get(&p, g_srv);       /* one taken in this period */
    tg_ssl_pool_put(&p, t, g_srv, false);      /* (and dropped) */
    assert_int_equal(tg_ssl_pool_trim(&p), 0); /* the two never taken: freed */
    t = tg_ssl_pool_get(&p, g_srv);            /* an empty pool: a new one */
    assert_int_equal(p.created, 4);
    SSL *c4 = handshake(t, 20);
    tg_ssl_pool_put(&p, t, g_srv, true);
    SSL_free(c4);
    assert_int_equal(tg_ssl_pool_trim(&p), 1); /* low was 0 in this period */
    assert_int_equal(tg_ssl_pool_trim(&p), 0);
    tg_ssl_pool_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reused_after_a_finished_handshake),
        cmocka_unit_test(test_dropped_when_not_reusable),
        cmocka_unit_test(test_bounded_per_context_and_trimmed),
        cmocka_unit_test(test_trim_keeps_what_was_used),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
