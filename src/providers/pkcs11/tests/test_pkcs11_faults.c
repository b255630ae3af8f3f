/*
 * The pkcs11 provider's handling of a failing token while it serves,
 * against the fault-injecting fake module (harness: p11_test_util.h):
 * re-login after CKR_USER_NOT_LOGGED_IN; stale handles found again; a token
 * removed and put back (fail fast, recovery); a PIN that changed (no more
 * logins); a PIN file missing at a re-login (fails, then logs in once it is
 * back); a C_Sign that blocks (the loop keeps running, the timeout fails the
 * handshake, the thread's late answer is dropped); the same with no lock in
 * common with the signing thread (for ThreadSanitizer); a full queue;
 * drain. Nothing here waits for a duration: waits are bounded polls on a
 * condition.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11_test_util.h"

static void test_relogin_and_refind(void **state)
{
    (void)state;
    struct conf c;
    struct pair p;
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    pair_init(&p, &c);
    unsigned long logins = fake_stat("logins");
    fake_control("logout=1"); /* the token forgets the login */
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(handshake(&p), 1);
    assert_int_equal(fake_stat("logins"), logins + 1);
    assert_int_equal(stat_value("tlsgate_pkcs11_errors_total{token=\"fake\",code="
                                "\"CKR_USER_NOT_LOGGED_IN\"}"),
                     1);
    fake_control("handles=1"); /* every object handle changes */
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(handshake(&p), 1);
    assert_int_equal(stat_value("tlsgate_pkcs11_errors_total{token=\"fake\",code="
                                "\"CKR_KEY_HANDLE_INVALID\"}"),
                     1);
    assert_int_equal(OPS("ok"), 2);
    pair_free(&p);
}

static void test_token_removed(void **state)
{
    (void)state;
    struct conf c;
    struct pair p;
    conf_init(&c, "pkcs11:token=fake;object=ec", "1234");
    pair_init(&p, &c);
    fake_control("removed=1");
    unsigned long signs = fake_stat("signs");
    long long unrec = stat_value("tlsgate_keyprov_unrecoverable_total{provider=\"pkcs11\","
                                 "reason=\"device_error\"}");
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(handshake(&p), 0);
    /* The thread's session answers CKR_DEVICE_REMOVED, or a thread without
     * a session yet cannot open one: CKR_TOKEN_NOT_PRESENT. */
    assert_int_equal(stat_value("tlsgate_pkcs11_errors_total{token=\"fake\",code="
                                "\"CKR_DEVICE_REMOVED\"}") +
                         stat_value("tlsgate_pkcs11_errors_total{token=\"fake\",code="
                                    "\"CKR_TOKEN_NOT_PRESENT\"}"),
                     1);
    assert_int_equal(stat_value("tlsgate_pkcs11_token_up{token=\"fake\"}"), 0);
    assert_int_equal(stat_value("tlsgate_keyprov_unrecoverable_total{provider=\"pkcs11\","
                                "reason=\"device_error\"}"),
                     unrec + 1);
    /* While it is down, handshakes fail at once, without asking it. */
    for (int i = 0; i < 3; i++) {
        conn_new(&p, TLS1_3_VERSION, NULL);
        assert_int_equal(handshake(&p), 0);
    }
    assert_int_equal(OPS("token_down"), 3);
    assert_int_equal(fake_stat("signs"), signs);
    /* Back: a signing thread finds it, logs in and finds the key again. */
    fake_control("removed=0");
    assert_true(wait_ms(30000, token_up, NULL));
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(handshake(&p), 1);
    assert_int_equal(stat_value("tlsgate_pkcs11_recoveries_total{token=\"fake\"}"), 1);
    assert_int_equal(stat_value("tlsgate_pkcs11_token_down_total{token=\"fake\"}"), 1);
    pair_free(&p);
}

static void test_pin_changed(void **state)
{
    (void)state;
    struct conf c;
    struct pair p;
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    pair_init(&p, &c);
    unsigned long failures = fake_stat("login_failures");
    fake_control("pin=9999");
    fake_control("logout=2");
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(handshake(&p), 0);
    assert_int_equal(fake_stat("login_failures"), failures + 1);
    /* No further login: a PIN refused once is never tried again. */
    for (int i = 0; i < 3; i++) {
        conn_new(&p, TLS1_3_VERSION, NULL);
        assert_int_equal(handshake(&p), 0);
    }
    assert_int_equal(fake_stat("login_failures"), failures + 1);
    assert_int_equal(OPS("token_down"), 3);
    assert_int_equal(stat_value("tlsgate_pkcs11_token_up{token=\"fake\"}"), 0);
    pair_free(&p);
}

/* The PIN file disappears (a secret being replaced) when the token needs a
 * new login: that login cannot happen, but the token was not asked, so
 * nothing may mark the PIN refused; once the file is back, the next
 * handshake logs in. */
static void test_pin_unreadable(void **state)
{
    (void)state;
    struct conf c;
    struct pair p;
    char pin[512], gone[600];
    snprintf(pin, sizeof(pin), "%s", tg_test_write_file("p11.pin", "1234\n", 5));
    snprintf(gone, sizeof(gone), "%s.gone", pin);
    conf_init(&c, "pkcs11:token=fake;object=ec", NULL);
    conf_add(&c, "pin.filename", pin);
    pair_init(&p, &c);
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(handshake(&p), 1);
    unsigned long failures = fake_stat("login_failures"), logins = fake_stat("logins");
    assert_int_equal(rename(pin, gone), 0);
    fake_control("logout=1");
    for (int i = 0; i < 2; i++) {
        conn_new(&p, TLS1_3_VERSION, NULL);
        assert_int_equal(handshake(&p), 0);
    }
    assert_int_equal(OPS("token_error"), 2);
    assert_int_equal(fake_stat("logins"), logins); /* C_Login never called */
    assert_int_equal(fake_stat("login_failures"), failures);
    assert_int_equal(stat_value("tlsgate_pkcs11_token_up{token=\"fake\"}"), 1);
    assert_int_equal(rename(gone, pin), 0);
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(handshake(&p), 1);
    assert_int_equal(fake_stat("logins"), logins + 1);
    assert_int_equal(OPS("ok"), 2);
    pair_free(&p);
}

static void test_slow_token(void **state)
{
    (void)state;
    struct conf c;
    struct pair p;
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    conf_add(&c, "timeout", "2s"); /* the later handshake signs within it, loaded or not */
    pair_init(&p, &c);
    fake_control("block=1"); /* C_Sign hangs until released */
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(SSL_do_handshake(p.c), -1);
    int before = p.wakeups;
    /* The server does not block: the handshake waits, the loop runs. */
    assert_int_equal(server_step(&p), -1);
    assert_true(wait_ms(30000, fake_signing, (void *)1));
    loop_until_woken(&p, before); /* the timer, not the token */
    assert_int_equal(server_step(&p), 0);
    assert_int_equal(OPS("timeout"), 1);
    assert_int_equal(fake_stat("in_sign"), 1); /* still inside C_Sign */
    assert_int_equal(tg_keyprov_set_pending(g_set), 0);
    /* Its late answer is dropped by the thread (ASan/valgrind: no leak). */
    fake_control("block=0");
    assert_true(wait_ms(30000, fake_idle, NULL));
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(handshake(&p), 1);
    assert_int_equal(OPS("ok"), 1);
    pair_free(&p);
}

/*
 * The timeout gives up on a request while a signing thread is inside C_Sign
 * with it: from that moment the request is the thread's (it frees it when
 * C_Sign returns), so the worker must not touch it again. The thread is let
 * go with the fake's lock-free hold, and nothing here takes a lock the
 * thread takes before it writes the request's result and frees it: an
 * access of the worker's after tg_p11_abandon() would be a race with no
 * happens-before edge to hide it, which ThreadSanitizer reports whatever
 * the timing (and ASan when the thread wins).
 */
static void test_expire_while_signing(void **state)
{
    (void)state;
    struct conf c;
    struct pair p;
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    conf_add(&c, "timeout", "2s"); /* the later handshake signs within it, loaded or not */
    pair_init(&p, &c);
    unsigned long returned = fake_hold_stat("returned");
    fake_hold(1);
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(SSL_do_handshake(p.c), -1);
    int before = p.wakeups;
    assert_int_equal(server_step(&p), -1);
    assert_true(wait_ms(30000, fake_holding, NULL)); /* a thread holds it */
    loop_until_woken(&p, before);                    /* the timer: the request is abandoned */
    assert_int_equal(server_step(&p), 0);
    assert_int_equal(tg_keyprov_set_pending(g_set), 0);
    fake_hold(0);
    assert_true(wait_ms(30000, fake_held_returned, (void *)(size_t)(returned + 1)));
    /* Counted once, as a timeout; the late signature is dropped. */
    assert_int_equal(OPS("timeout"), 1);
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(handshake(&p), 1);
    assert_int_equal(OPS("ok"), 1);
    assert_int_equal(OPS("timeout"), 1);
    pair_free(&p);
}

static void test_queue_full(void **state)
{
    (void)state;
    struct conf c;
    struct pair a, b, d;
    conf_init(&c, "pkcs11:token=fake;object=ec", "1234");
    conf_add(&c, "threads", "1");
    conf_add(&c, "max_queue", "1");
    pair_init(&a, &c);
    pair_init(&b, &c);
    pair_init(&d, &c);
    long long unrec = stat_value("tlsgate_keyprov_unrecoverable_total{provider=\"pkcs11\","
                                 "reason=\"ring_full\"}");
    fake_control("block=1");
    conn_new(&a, TLS1_3_VERSION, NULL);
    assert_int_equal(SSL_do_handshake(a.c), -1);
    assert_int_equal(server_step(&a), -1);
    assert_true(wait_ms(30000, fake_signing, (void *)1)); /* the one thread holds it */
    conn_new(&b, TLS1_3_VERSION, NULL);
    assert_int_equal(SSL_do_handshake(b.c), -1);
    assert_int_equal(server_step(&b), -1); /* queued */
    assert_int_equal(stat_value("tlsgate_pkcs11_queue_depth{token=\"fake\"}"), 1);
    /* A third one finds the queue full: it fails now, not later. */
    conn_new(&d, TLS1_3_VERSION, NULL);
    assert_int_equal(SSL_do_handshake(d.c), -1);
    assert_int_equal(server_step(&d), 0);
    assert_int_equal(OPS("queue_full"), 1);
    assert_int_equal(stat_value("tlsgate_keyprov_unrecoverable_total{provider=\"pkcs11\","
                                "reason=\"ring_full\"}"),
                     unrec + 1);
    fake_control("block=0");
    assert_int_equal(handshake(&a), 1);
    assert_int_equal(handshake(&b), 1);
    assert_int_equal(OPS("ok"), 2);
    pair_free(&a);
    pair_free(&b);
    pair_free(&d);
}

static void test_drain(void **state)
{
    (void)state;
    struct conf c;
    struct pair p;
    conf_init(&c, "pkcs11:token=fake;object=ec", "1234");
    conf_add(&c, "timeout", "20ms");
    pair_init(&p, &c);
    fake_control("block=1");
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(SSL_do_handshake(p.c), -1);
    assert_int_equal(server_step(&p), -1);
    assert_int_equal(tg_keyprov_set_pending(g_set), 1);
    /* Shutdown: drain completes it (at its deadline); the job can end. */
    tg_keyprov_set_drain(g_set);
    assert_int_equal(tg_keyprov_set_pending(g_set), 0);
    assert_int_equal(server_step(&p), 0);
    fake_control("block=0");
    assert_true(wait_ms(30000, fake_idle, NULL));
    pair_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_relogin_and_refind, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_token_removed, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_pin_changed, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_pin_unreadable, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_slow_token, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_expire_while_signing, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_queue_full, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_drain, setup_each, teardown_each),
    };
    return p11_test_run("test_pkcs11_faults", tests, TG_ARRAY_LEN(tests));
}
