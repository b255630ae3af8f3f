/*
 * tg_ticket: the session ticket key ring. Rotation is driven by the clock
 * values the tests pass (never wall time); the OpenSSL part runs real TLS
 * 1.2 and 1.3 handshakes in memory (BIO pairs) against a ring whose clock
 * the test sets.
 */
#include "tg_test_util.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "core/tg_time.h"
#include "tls/tg_ticket.h"

#define S TG_NS_PER_S

static struct tg_ticket_ring *ring_new(uint64_t interval, uint64_t now)
{
    struct tg_ticket_ring *r = NULL;
    assert_int_equal(tg_ticket_ring_new(interval, now, &r), TG_OK);
    assert_non_null(r);
    return r;
}

/* The name of the key that encrypts at now. */
static void enc_name(struct tg_ticket_ring *r, uint64_t now, unsigned char name[16])
{
    struct tg_ticket_key k;
    assert_int_equal(tg_ticket_ring_encrypt_key(r, now, &k), TG_OK);
    memcpy(name, k.name, 16);
}

static enum tg_ticket_which which(struct tg_ticket_ring *r, uint64_t now,
                                  const unsigned char name[16])
{
    struct tg_ticket_key k;
    memset(&k, 0xa5, sizeof(k));
    enum tg_ticket_which w = tg_ticket_ring_decrypt_key(r, now, name, &k);
    if (w != TG_TICKET_NONE)
        assert_memory_equal(k.name, name, 16);
    return w;
}

static void test_rotation(void **state)
{
    (void)state;
    struct tg_ticket_ring *r = ring_new(10 * S, 100 * S);
    unsigned char a[16], a2[16], b[16], c[16];
    enc_name(r, 100 * S, a);
    enc_name(r, 109 * S, a2);
    assert_memory_equal(a, a2, 16); /* one key for the whole interval */
    assert_int_equal(which(r, 109 * S, a), TG_TICKET_CURRENT);

    /* One interval later: a new key encrypts, the old one still decrypts. */
    enc_name(r, 110 * S, b);
    assert_memory_not_equal(a, b, 16);
    assert_int_equal(which(r, 110 * S, b), TG_TICKET_CURRENT);
    assert_int_equal(which(r, 119 * S, a), TG_TICKET_PREVIOUS);

    /* Two intervals after a was retired from encrypting, it is gone. */
    enc_name(r, 120 * S, c);
    assert_memory_not_equal(b, c, 16);
    assert_memory_not_equal(a, c, 16);
    assert_int_equal(which(r, 120 * S, a), TG_TICKET_NONE);
    assert_int_equal(which(r, 120 * S, b), TG_TICKET_PREVIOUS);
    assert_int_equal(which(r, 120 * S, c), TG_TICKET_CURRENT);

    /* A name that was never ours. */
    unsigned char bogus[16];
    memset(bogus, 0x42, sizeof(bogus));
    assert_int_equal(which(r, 120 * S, bogus), TG_TICKET_NONE);

    struct tg_ticket_stats st;
    tg_ticket_ring_stats(r, &st);
    assert_int_equal(st.rotations, 2);
    assert_int_equal(st.issued, 4);
    assert_int_equal(st.resumed_current, 3);
    assert_int_equal(st.resumed_previous, 2);
    assert_int_equal(st.unknown_key, 2);
    tg_ticket_ring_free(r);
}

/* The time left until the next rotation, and rotation by advance alone (the
 * gateway's timer, without traffic). */
static void test_advance(void **state)
{
    (void)state;
    struct tg_ticket_ring *r = ring_new(10 * S, 0);
    unsigned char a[16], b[16];
    enc_name(r, 0, a);
    assert_int_equal(tg_ticket_ring_advance(r, 3 * S), 7 * S);
    assert_int_equal(tg_ticket_ring_advance(r, 10 * S - 1), 1);
    assert_int_equal(tg_ticket_ring_advance(r, 10 * S), 10 * S);
    assert_int_equal(which(r, 10 * S, a), TG_TICKET_PREVIOUS);
    assert_int_equal(tg_ticket_ring_advance(r, 25 * S), 5 * S);
    assert_int_equal(which(r, 25 * S, a), TG_TICKET_NONE);
    enc_name(r, 25 * S, b);
    assert_int_equal(which(r, 29 * S, b), TG_TICKET_CURRENT);
    tg_ticket_ring_free(r);
}

/* Several intervals unseen (a suspended machine, a stalled loop): both keys
 * are past their life and go; rotation stays on its grid. */
static void test_skip(void **state)
{
    (void)state;
    struct tg_ticket_ring *r = ring_new(10 * S, 0);
    unsigned char a[16], b[16];
    enc_name(r, 5 * S, a);
    enc_name(r, 35 * S, b);
    assert_memory_not_equal(a, b, 16);
    assert_int_equal(which(r, 35 * S, a), TG_TICKET_NONE);
    assert_int_equal(tg_ticket_ring_advance(r, 35 * S), 5 * S);
    struct tg_ticket_stats st;
    tg_ticket_ring_stats(r, &st);
    assert_int_equal(st.rotations, 1);
    tg_ticket_ring_free(r);
}

/* A reload changes the interval: longer keeps the key current longer;
 * shorter than the key's age makes it previous at once, still decrypting
 * for one new interval. */
static void test_set_interval(void **state)
{
    (void)state;
    struct tg_ticket_ring *r = ring_new(10 * S, 0);
    unsigned char a[16], b[16], c[16];
    enc_name(r, 0, a);
    tg_ticket_ring_set_interval(r, 20 * S, 5 * S);
    assert_int_equal(tg_ticket_ring_interval(r), 20 * S);
    enc_name(r, 15 * S, b);
    assert_memory_equal(a, b, 16);
    assert_int_equal(tg_ticket_ring_advance(r, 15 * S), 5 * S);

    tg_ticket_ring_set_interval(r, 4 * S, 16 * S);
    enc_name(r, 16 * S, c);
    assert_memory_not_equal(a, c, 16);
    assert_int_equal(which(r, 19 * S, a), TG_TICKET_PREVIOUS);
    assert_int_equal(tg_ticket_ring_advance(r, 19 * S), 1 * S);
    assert_int_equal(which(r, 20 * S, a), TG_TICKET_NONE);
    assert_int_equal(which(r, 20 * S, c), TG_TICKET_PREVIOUS);
    tg_ticket_ring_free(r);
}

static void test_bad_args(void **state)
{
    (void)state;
    struct tg_ticket_ring *r = (void *)1;
    assert_int_equal(tg_ticket_ring_new(0, 0, &r), TG_EINVAL);
    assert_null(r);
    tg_ticket_ring_free(NULL);
    r = ring_new(10 * S, 0);
    tg_ticket_ring_set_interval(r, 0, 5 * S); /* ignored */
    assert_int_equal(tg_ticket_ring_interval(r), 10 * S);
    tg_ticket_ring_free(r);
}

/* Many threads issuing and opening tickets while the clock moves: names stay
 * consistent (run under ASan/TSan builds too). */
struct hammer {
    struct tg_ticket_ring *r;
    _Atomic uint64_t *clock;
    int errors;
};

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    for (int i = 0; i < 20000; i++) {
        uint64_t now = atomic_fetch_add(h->clock, S / 100);
        struct tg_ticket_key k, k2;
        struct tg_ticket_stats before, after;
        tg_ticket_ring_stats(h->r, &before);
        if (tg_ticket_ring_encrypt_key(h->r, now, &k) != TG_OK) {
            h->errors++;
            continue;
        }
        enum tg_ticket_which w = tg_ticket_ring_decrypt_key(h->r, now, k.name, &k2);
        tg_ticket_ring_stats(h->r, &after);
        /* Unless other threads rotated twice meanwhile (this one may have
         * been descheduled), the key still opens, and is the same key. */
        if (w == TG_TICKET_NONE ? after.rotations - before.rotations < 2
                                : memcmp(&k, &k2, sizeof(k)) != 0)
            h->errors++;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    _Atomic uint64_t clock = 0;
    struct tg_ticket_ring *r = ring_new(10 * S, 0);
    struct hammer h[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        h[i] = (struct hammer){r, &clock, 0};
        assert_int_equal(pthread_create(&th[i], NULL, hammer_main, &h[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(h[i].errors, 0);
    }
    struct tg_ticket_stats st;
    tg_ticket_ring_stats(r, &st);
    assert_true(st.rotations > 0);
    tg_ticket_ring_free(r);
}

/* ---- real handshakes in memory ---- */

static uint64_t test_now;

static uint64_t test_clock(void *arg)
{
    (void)arg;
    return test_now;
}

static SSL_CTX *server_ctx(struct tg_ticket_ring *r, X509 *x, EVP_PKEY *pk)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, pk), 1);
    static const unsigned char sid[] = "test listener";
    assert_int_equal(SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1), 1);
    /* Tickets only: no server cache to resume from instead. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_timeout(ctx, 3600);
    assert_int_equal(tg_ticket_ring_attach(r, ctx), TG_OK);
    return ctx;
}

/* One full or resumed handshake; returns the client's session (with its
 * ticket) and whether it was resumed. */
static SSL_SESSION *handshake(SSL_CTX *sctx, SSL_CTX *cctx, int version, SSL_SESSION *resume,
                              int *reused)
{
    SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
    BIO *bs = NULL, *bc = NULL;
    assert_non_null(s);
    assert_non_null(c);
    assert_int_equal(BIO_new_bio_pair(&bs, 0, &bc, 0), 1);
    SSL_set_bio(s, bs, bs);
    SSL_set_bio(c, bc, bc);
    SSL_set_min_proto_version(c, version);
    SSL_set_max_proto_version(c, version);
    SSL_SESSION *copy = NULL;
    if (resume != NULL) {
        /* A fresh copy each time, as a client reads a stored session: libssl
         * marks a session it has used as spent. */
        unsigned char der[8192], *p = der;
        const unsigned char *q = der;
        int len = i2d_SSL_SESSION(resume, NULL);
        assert_true(len > 0 && len <= (int)sizeof(der));
        assert_int_equal(i2d_SSL_SESSION(resume, &p), len);
        copy = d2i_SSL_SESSION(NULL, &q, len);
        assert_non_null(copy);
        assert_int_equal(SSL_set_session(c, copy), 1);
    }
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    int done_c = 0, done_s = 0;
    for (int i = 0; i < 50 && !(done_c && done_s); i++) {
        if (!done_c) {
            int rc = SSL_do_handshake(c);
            done_c = rc == 1;
            if (rc <= 0)
                assert_int_equal(SSL_get_error(c, rc), SSL_ERROR_WANT_READ);
        }
        if (!done_s) {
            int rc = SSL_do_handshake(s);
            done_s = rc == 1;
            if (rc <= 0)
                assert_int_equal(SSL_get_error(s, rc), SSL_ERROR_WANT_READ);
        }
    }
    assert_true(done_c && done_s);
    /* TLS 1.3 tickets follow the handshake: let the client read them. */
    unsigned char buf[1];
    assert_true(SSL_read(c, buf, 1) <= 0);
    *reused = SSL_session_reused(c);
    assert_int_equal(*reused, SSL_session_reused(s));
    SSL_SESSION *sess = SSL_get1_session(c);
    assert_non_null(sess);
    /* A connection freed without a shutdown spoils its session. */
    SSL_set_shutdown(c, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_set_shutdown(s, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(c);
    SSL_free(s);
    SSL_SESSION_free(copy);
    return sess;
}

/* The key name: the first 16 bytes of the ticket. */
static void ticket_name(SSL_SESSION *sess, unsigned char name[16])
{
    const unsigned char *tick = NULL;
    size_t len = 0;
    SSL_SESSION_get0_ticket(sess, &tick, &len);
    assert_true(len > 16);
    memcpy(name, tick, 16);
}

static void run_handshakes(int version)
{
    char *cert_pem, *key_pem;
    tg_test_make_cert("EC:P-256", "t.test", &cert_pem, &key_pem);
    BIO *b = BIO_new_mem_buf(cert_pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    b = BIO_new_mem_buf(key_pem, -1);
    EVP_PKEY *pk = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(x);
    assert_non_null(pk);

    test_now = 1000 * S;
    struct tg_ticket_ring *r = ring_new(60 * S, test_now);
    tg_ticket_ring_set_clock(r, test_clock, NULL);
    /* Two contexts on one ring: two workers' view of a listener, or the
     * same listener before and after a reload. */
    SSL_CTX *s1 = server_ctx(r, x, pk), *s2 = server_ctx(r, x, pk);
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(cctx);
    SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_CLIENT);

    int reused;
    unsigned char n1[16], n2[16], n3[16];
    SSL_SESSION *t1 = handshake(s1, cctx, version, NULL, &reused);
    assert_false(reused);
    ticket_name(t1, n1);
    /* Another context, same ring: resumes. */
    SSL_SESSION *t = handshake(s2, cctx, version, t1, &reused);
    assert_true(reused);
    SSL_SESSION_free(t);

    /* One interval later: tickets carry a new key name... */
    test_now += 60 * S;
    SSL_SESSION *t2 = handshake(s1, cctx, version, NULL, &reused);
    assert_false(reused);
    ticket_name(t2, n2);
    assert_memory_not_equal(n1, n2, 16);
    /* ...and the ticket of the previous interval still resumes. */
    t = handshake(s2, cctx, version, t1, &reused);
    assert_true(reused);
    SSL_SESSION_free(t);

    /* Two intervals after t1's key stopped encrypting, it is gone: a full
     * handshake; t2 (previous key now) still resumes. */
    test_now += 60 * S;
    t = handshake(s1, cctx, version, t1, &reused);
    assert_false(reused);
    ticket_name(t, n3);
    assert_memory_not_equal(n3, n1, 16);
    assert_memory_not_equal(n3, n2, 16);
    SSL_SESSION_free(t);
    t = handshake(s1, cctx, version, t2, &reused);
    assert_true(reused);
    SSL_SESSION_free(t);

    struct tg_ticket_stats st;
    tg_ticket_ring_stats(r, &st);
    assert_int_equal(st.rotations, 2);
    assert_int_equal(st.unknown_key, 1);
    assert_int_equal(st.resumed_previous, 2);

    SSL_SESSION_free(t1);
    SSL_SESSION_free(t2);
    SSL_CTX_free(s1);
    SSL_CTX_free(s2);
    SSL_CTX_free(cctx);
    tg_ticket_ring_free(r);
    X509_free(x);
    EVP_PKEY_free(pk);
    free(cert_pem);
    OPENSSL_cleanse(key_pem, strlen(key_pem));
    free(key_pem);
}

static void test_tls12_tickets(void **state)
{
    (void)state;
    run_handshakes(TLS1_2_VERSION);
}

static void test_tls13_tickets(void **state)
{
    (void)state;
    run_handshakes(TLS1_3_VERSION);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rotation),      cmocka_unit_test(test_advance),
        cmocka_unit_test(test_skip),          cmocka_unit_test(test_set_interval),
        cmocka_unit_test(test_bad_args),      cmocka_unit_test(test_threads),
        cmocka_unit_test(test_tls12_tickets), cmocka_unit_test(test_tls13_tickets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
