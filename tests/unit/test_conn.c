/*
 * The connection state machine (src/proxy/tg_conn.c) through a real worker
 * whose loop runs on the test's own thread (the fixture: tg_test_conn.h):
 * every state of a connection's life in order, key operations held in
 * KEYOP_WAIT, the handshake and first-byte timeouts, a client gone or timed
 * out inside a key operation, max_connections (eviction of the connection
 * heard from longest ago, never one in a key operation) and
 * max_connections_per_source. What follows the handshake (upstream connect,
 * relay, half-close) is test_conn_relay.c's.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/tg_log.h"
#include "keyprov/tg_keyprov.h"
#include "tg_test_conn.h"
#include "providers/software/tg_software.h"
#include "providers/deferred/tg_deferred.h"

/* ---- server-side SSL_do_handshake calls ----
 *
 * tg_conn.c's calls bind to this definition at link time (it is in the
 * executable); it counts the server's calls and forwards to libssl's. It is
 * how the test sees that a connection in KEYOP_WAIT makes no SSL call before
 * its key operation completes. */
static unsigned server_hs_calls;

int SSL_do_handshake(SSL *s)
{
    static int (*real)(SSL *);
    if (real == NULL) {
        *(void **)&real = dlsym(RTLD_NEXT, "SSL_do_handshake");
        if (real == NULL)
            abort();
    }
    if (SSL_is_server(s))
        server_hs_calls++;
    return real(s);
}

/* ---- shared steps ---- */

static struct tg_conn *only_conn(void)
{
    assert_int_equal(T.w.n_conns, 1);
    return T.w.conns;
}

/* Connect, and see the connection wait for its ClientHello (HELLO_WAIT):
 * no SSL object, no buffer yet. */
static struct tg_conn *connect_to_handshaking(struct client *c)
{
    client_connect(c);
    RUN_UNTIL(tg_worker_count_state(&T.w, TG_CONN_HELLO_WAIT) == 1);
    assert_int_equal(st(TG_STAT_CONN_ACCEPTED), 1);
    assert_int_equal(atomic_load(&T.active), 1);
    assert_int_equal(T.w.n_handshaking, 1);
    struct tg_conn *conn = only_conn();
    assert_null(conn->ssl);
    assert_null(conn->c2u.data);
    assert_null(conn->u2c.data);
    return conn;
}

/* Send the ClientHello and see the connection pause on its signature. */
static void hello_to_keyop_wait(struct client *c)
{
    unsigned before = server_hs_calls;
    RUN_UNTIL(client_handshake(c) == 0 && tg_worker_count_state(&T.w, TG_CONN_KEYOP_WAIT) == 1);
    assert_true(server_hs_calls > before); /* the interposition sees the server */
}

/* While the key operation is pending, n turns change nothing: same state,
 * no SSL call, no watcher that could make one, nothing counted closed. */
static void hold_keyop_wait(struct tg_conn *c, struct client *cl, int n)
{
    unsigned calls = server_hs_calls;
    uint64_t closed = st(TG_STAT_CONN_CLOSED_ACTIVE);
    for (int i = 0; i < n; i++) {
        if (cl != NULL)
            assert_int_equal(client_handshake(cl), 0);
        turn();
        assert_int_equal(only_conn(), c);
        assert_int_equal(c->state, TG_CONN_KEYOP_WAIT);
        assert_false(ev_is_active(&c->cio));
        assert_false(c->on_ready);
    }
    assert_int_equal(server_hs_calls, calls);
    assert_int_equal(st(TG_STAT_CONN_CLOSED_ACTIVE), closed);
    assert_int_equal(st(TG_STAT_HS_OK), 0);
}

/* The state names a connection logged (tg_conn_set_state at debug level),
 * repeats folded: "accepted hello_wait handshaking ...". */
static void logged_states(const char *path, const struct tg_conn *c, char *out, size_t outlen)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char prefix[64], line[2048], from[32], to[32], last[32] = "";
    snprintf(prefix, sizeof(prefix), "conn %p: ", (const void *)c);
    out[0] = '\0';
    while (fgets(line, sizeof(line), f) != NULL) {
        const char *p = strstr(line, prefix);
        if (p == NULL || sscanf(p + strlen(prefix), "%31[a-z_] -> %31[a-z_]", from, to) != 2)
            continue;
        if (last[0] == '\0') {
            snprintf(last, sizeof(last), "%s", from);
            snprintf(out, outlen, "%s", from);
        }
        if (strcmp(to, last) != 0) {
            size_t l = strlen(out);
            snprintf(out + l, outlen - l, " %s", to);
            snprintf(last, sizeof(last), "%s", to);
        }
    }
    fclose(f);
}

/* ---- cases ---- */

/* The whole life of a connection: every state in order, KEYOP_WAIT held by
 * the test, bytes both ways, the client's half-close then the upstream's,
 * and a normal close. */
static void test_lifecycle(void **state)
{
    (void)state;
    tc_start(&default_opts);
    const char *log_path = tg_test_write_file("lifecycle.log", "", 0);
    int log_fd = open(log_path, O_WRONLY | O_APPEND | O_CLOEXEC);
    assert_true(log_fd >= 0);
    tg_log_set_fd(log_fd);
    tg_log_set_level(TG_LOG_DEBUG);

    struct client cl;
    struct tg_conn *c = connect_to_handshaking(&cl);
    hello_to_keyop_wait(&cl);
    assert_int_equal(c->state, TG_CONN_KEYOP_WAIT);
    /* Bytes arriving meanwhile (a TLS 1.3 compatibility ChangeCipherSpec,
     * which the server drops) do not wake it either. */
    static const unsigned char ccs[] = {0x14, 0x03, 0x03, 0x00, 0x01, 0x01};
    assert_int_equal(send(cl.fd, ccs, sizeof(ccs), MSG_NOSIGNAL), (ssize_t)sizeof(ccs));
    hold_keyop_wait(c, &cl, 50);

    /* The provider completes: the async callback queues the connection and
     * the loop resumes it. */
    unsigned calls = server_hs_calls;
    tg_keyprov_set_drain(T.w.kp);
    RUN_UNTIL(client_handshake(&cl) == 1 && tg_worker_count_state(&T.w, TG_CONN_PROXYING) == 1);
    assert_true(server_hs_calls > calls);
    assert_int_equal(only_conn(), c);
    assert_int_equal(T.w.n_handshaking, 0);
    assert_int_equal(st(TG_STAT_HS_OK), 1);
    assert_int_equal(st(TG_STAT_HS_TLS13), 1);
    assert_int_equal(st(TG_STAT_KEYOP_WAITS), 1);
    assert_int_equal(st(TG_STAT_UPSTREAM_CONNECT_OK), 1);
    char states[256];
    logged_states(log_path, c, states, sizeof(states));
    assert_string_equal(states, "accepted hello_wait handshaking keyop_wait handshaking "
                                "upstream_connecting proxying");
    tg_log_set_level(TG_LOG_WARN);
    tg_log_set_fd(2);
    close(log_fd);

    /* Bytes both ways. */
    RUN_UNTIL(upstream_accept());
    struct sink up = {0};
    client_write(&cl, "ping from the client");
    RUN_UNTIL(upstream_got(&up, "ping from the client"));
    upstream_send("pong from the upstream");
    RUN_UNTIL(client_got(&cl, "pong from the upstream"));
    /* Drained both ways: the connection holds no buffer; they wait in the
     * worker's pool for the next bytes. */
    RUN_UNTIL(c->c2u.data == NULL && c->u2c.data == NULL);
    assert_true(T.w.buf_pool_n >= 1);
    assert_int_equal(st(TG_STAT_BYTES_FROM_CLIENT), strlen("ping from the client"));
    assert_int_equal(st(TG_STAT_BYTES_TO_CLIENT), strlen("pong from the upstream"));

    /* The client half-closes: the upstream sees EOF, the other direction
     * stays open. */
    ERR_clear_error();
    assert_int_equal(SSL_shutdown(cl.ssl), 0);
    RUN_UNTIL(upstream_ended(&up));
    assert_true(up.eof);
    assert_int_equal(only_conn(), c);
    assert_int_equal(c->state, TG_CONN_PROXYING);
    upstream_send("late answer");
    RUN_UNTIL(client_got(&cl, "late answer"));
    assert_false(cl.closed);

    /* The upstream half-closes too: close_notify to the client, closed. */
    assert_int_equal(shutdown(T.up_fd, SHUT_WR), 0);
    RUN_UNTIL(client_read(&cl) && T.w.n_conns == 0);
    assert_true(cl.closed);
    assert_false(cl.failed);
    assert_closed_by(TG_STAT_CLOSE_NORMAL, 1);
    assert_int_equal(st(TG_STAT_UPSTREAM_RESET), 0);
    client_free(&cl);
    tc_finish();
}

/* The client vanishes while its signature is pending: nothing notices until
 * the job ends (the connection watches no socket then); the connection is
 * freed only after that, and counted. */
static void test_client_gone_in_keyop_wait(void **state)
{
    (void)state;
    tc_start(&default_opts);
    struct client cl;
    struct tg_conn *c = connect_to_handshaking(&cl);
    hello_to_keyop_wait(&cl);
    client_abort(&cl);
    hold_keyop_wait(c, NULL, 50);
    assert_int_equal(atomic_load(&T.active), 1);
    tg_keyprov_set_drain(T.w.kp);
    RUN_UNTIL(T.w.n_conns == 0);
    assert_int_equal(st(TG_STAT_HS_FAIL_CLOSED), 1);
    assert_int_equal(st(TG_STAT_HS_OK), 0);
    assert_closed_by(TG_STAT_CLOSE_HANDSHAKE_FAILED, 1);
    assert_int_equal(st(TG_STAT_UPSTREAM_CONNECT_OK), 0);
    tc_finish();
}

/* The handshake timer fires in KEYOP_WAIT: the connection is marked and
 * its key context cancelled, but freed only once the job has ended. */
static void test_timeout_in_keyop_wait(void **state)
{
    (void)state;
    struct opts o = default_opts;
    o.handshake_timeout = "1ms";
    tc_start(&o);
    /* The whole ClientHello waits in the socket before the worker accepts:
     * accepting reads it and pauses on the signature in one callback, before
     * the 1 ms timer can fire. */
    struct client cl;
    client_connect(&cl);
    assert_int_equal(client_handshake(&cl), 0);
    client_wait_delivered(&cl);
    RUN_UNTIL(T.w.n_conns == 1);
    struct tg_conn *c = only_conn();
    assert_int_equal(c->state, TG_CONN_KEYOP_WAIT);
    unsigned calls = server_hs_calls;
    RUN_UNTIL(st(TG_STAT_HS_FAIL_TIMEOUT) == 1);
    assert_int_equal(only_conn(), c);
    assert_true(c->keyctx.cancelled);
    assert_closed_by(TG_STAT_CLOSE_HANDSHAKE_TIMEOUT, 0);
    hold_keyop_wait(c, NULL, 20);
    assert_int_equal(server_hs_calls, calls);
    tg_keyprov_set_drain(T.w.kp);
    RUN_UNTIL(T.w.n_conns == 0);
    assert_closed_by(TG_STAT_CLOSE_HANDSHAKE_TIMEOUT, 1);
    assert_int_equal(st(TG_STAT_HS_FAIL_TIMEOUT), 1);
    /* The cancelled operation is the timeout's doing, not a key failure. */
    assert_int_equal(st(TG_STAT_HS_FAIL_KEYOP), 0);
    assert_int_equal(st(TG_STAT_HS_FAIL_CLOSED) + st(TG_STAT_HS_FAIL_PROTOCOL), 0);
    RUN_UNTIL(client_handshake(&cl) == -1);
    client_free(&cl);
    tc_finish();
}

/* A client that connects and says nothing. */
static void test_handshake_timeout(void **state)
{
    (void)state;
    struct opts o = default_opts;
    o.handshake_timeout = "1ms";
    tc_start(&o);
    struct client cl;
    client_connect(&cl);
    RUN_UNTIL(st(TG_STAT_CONN_ACCEPTED) == 1 && T.w.n_conns == 0);
    assert_int_equal(st(TG_STAT_HS_FAIL_TIMEOUT), 1);
    assert_closed_by(TG_STAT_CLOSE_HANDSHAKE_TIMEOUT, 1);
    RUN_UNTIL(client_socket_ended(&cl));
    client_free(&cl);
    tc_finish();
}

/* Close the proxied connection from both ends and wait until it is gone. */
static void close_proxied(struct client *cl)
{
    struct sink up = {0};
    ERR_clear_error();
    (void)SSL_shutdown(cl->ssl);
    assert_int_equal(shutdown(T.up_fd, SHUT_WR), 0);
    RUN_UNTIL(upstream_ended(&up) && client_read(cl) && T.w.n_conns == 0);
    client_free(cl);
    close(T.up_fd);
    T.up_fd = -1;
}

/* limits.max_connections counts the whole process through the host's
 * counter: a connection over it is closed at accept and counted. */
static void test_max_connections(void **state)
{
    (void)state;
    struct opts o = default_opts;
    o.delay = NULL;
    o.max_active = 1;
    tc_start(&o);
    struct client a, b;
    handshake_to_proxying(&a);
    assert_int_equal(atomic_load(&T.active), 1);
    client_connect(&b);
    RUN_UNTIL(st(TG_STAT_CONN_REJECTED_LIMIT) == 1);
    RUN_UNTIL(client_socket_ended(&b));
    client_free(&b);
    assert_int_equal(st(TG_STAT_CONN_ACCEPTED), 1);
    assert_int_equal(atomic_load(&T.active), 1);
    assert_int_equal(only_conn()->state, TG_CONN_PROXYING);
    close_proxied(&a);
    assert_int_equal(atomic_load(&T.active), 0);

    /* Another worker's connection holds the only place. */
    atomic_store(&T.active, 1);
    client_connect(&b);
    RUN_UNTIL(st(TG_STAT_CONN_REJECTED_LIMIT) == 2);
    RUN_UNTIL(client_socket_ended(&b));
    client_free(&b);
    assert_int_equal(atomic_load(&T.active), 1);
    /* It closed: there is room again. */
    atomic_store(&T.active, 0);
    handshake_to_proxying(&a);
    assert_int_equal(st(TG_STAT_CONN_ACCEPTED), 2);
    close_proxied(&a);
    assert_closed_by(TG_STAT_CLOSE_NORMAL, 2);
    tc_finish();
}

/* A silent connection is closed at first_byte_timeout (handshake_timeout
 * is an hour); one that has sent a byte of its ClientHello is not. */
static void test_first_byte_timeout(void **state)
{
    (void)state;
    struct opts o = default_opts;
    o.first_byte_timeout = "1ms";
    tc_start(&o);
    struct client silent, started;
    client_connect(&silent);
    RUN_UNTIL(st(TG_STAT_CONN_ACCEPTED) == 1 && T.w.n_conns == 0);
    assert_int_equal(st(TG_STAT_HS_FAIL_TIMEOUT), 1);
    assert_closed_by(TG_STAT_CLOSE_FIRST_BYTE_TIMEOUT, 1);
    RUN_UNTIL(client_socket_ended(&silent));
    client_free(&silent);

    client_connect(&started);
    static const unsigned char first = 0x16; /* a handshake record's type */
    assert_int_equal(send(started.fd, &first, 1, MSG_NOSIGNAL), 1);
    RUN_UNTIL(tg_worker_count_state(&T.w, TG_CONN_HANDSHAKING) == 1);
    struct tg_conn *c = only_conn();
    assert_non_null(c->ssl); /* made with the first byte */
    /* Many times the first-byte timeout: only handshake_timeout applies now. */
    for (int i = 0; i < 50; i++)
        turn();
    assert_int_equal(only_conn(), c);
    assert_int_equal(c->state, TG_CONN_HANDSHAKING);
    assert_int_equal(st(TG_STAT_HS_FAIL_TIMEOUT), 1);
    client_free(&started);
    RUN_UNTIL(T.w.n_conns == 0);
    assert_int_equal(st(TG_STAT_HS_FAIL_CLOSED), 1);
    tc_finish();
}

/* At max_connections a new connection closes the one whose client was
 * heard from longest ago, not the oldest one. */
static void test_evict_least_recently_heard(void **state)
{
    (void)state;
    struct opts o = default_opts;
    o.max_active = 3;
    tc_start(&o);
    struct client a, b, c, d;
    client_connect(&a);
    RUN_UNTIL(T.w.n_conns == 1);
    client_connect(&b);
    RUN_UNTIL(T.w.n_conns == 2);
    client_connect(&c);
    RUN_UNTIL(T.w.n_conns == 3);
    /* a speaks: b is now the one heard from longest ago. */
    static const unsigned char first = 0x16;
    assert_int_equal(send(a.fd, &first, 1, MSG_NOSIGNAL), 1);
    RUN_UNTIL(tg_worker_count_state(&T.w, TG_CONN_HANDSHAKING) == 1);
    client_connect(&d);
    RUN_UNTIL(st(TG_STAT_CONN_ACCEPTED) == 4);
    RUN_UNTIL(client_socket_ended(&b));
    assert_int_equal(st(TG_STAT_CLOSE_EVICTED), 1);
    assert_int_equal(st(TG_STAT_CONN_REJECTED_LIMIT), 0);
    assert_int_equal(T.w.n_conns, 3);
    assert_int_equal(atomic_load(&T.active), 3);
    assert_int_equal(T.w.n_handshaking, 3);
    assert_false(client_socket_ended(&a));
    assert_false(client_socket_ended(&c));
    assert_false(client_socket_ended(&d));
    /* The list order: c (silent since accept), a (spoke), d (new). */
    assert_int_equal(T.w.hs_head->hs_next->hs_next, T.w.hs_tail);
    assert_null(T.w.hs_tail->hs_next);
    client_free(&a);
    client_free(&b);
    client_free(&c);
    client_free(&d);
    RUN_UNTIL(T.w.n_conns == 0);
    assert_null(T.w.hs_head);
    assert_null(T.w.hs_tail);
    tc_finish();
}

/* A connection inside a key operation is not evicted (a close would only
 * mark it): the next one is; with none left to evict, refused. */
static void test_evict_skips_keyop_wait(void **state)
{
    (void)state;
    struct opts o = default_opts;
    o.max_active = 2;
    tc_start(&o);
    struct client k, s, n, r;
    struct tg_conn *kc = connect_to_handshaking(&k);
    hello_to_keyop_wait(&k);
    client_connect(&s);
    RUN_UNTIL(T.w.n_conns == 2);
    client_connect(&n);
    RUN_UNTIL(st(TG_STAT_CONN_ACCEPTED) == 3);
    RUN_UNTIL(client_socket_ended(&s));
    assert_int_equal(st(TG_STAT_CLOSE_EVICTED), 1);
    assert_int_equal(kc->state, TG_CONN_KEYOP_WAIT);
    /* n in a key operation too: nothing can make room. */
    SSL_free(n.ssl);
    n.ssl = SSL_new(client_ctx);
    assert_int_equal(SSL_set_fd(n.ssl, n.fd), 1);
    SSL_set_connect_state(n.ssl);
    RUN_UNTIL(client_handshake(&n) == 0 && tg_worker_count_state(&T.w, TG_CONN_KEYOP_WAIT) == 2);
    client_connect(&r);
    RUN_UNTIL(st(TG_STAT_CONN_REJECTED_LIMIT) == 1);
    RUN_UNTIL(client_socket_ended(&r));
    assert_int_equal(st(TG_STAT_CLOSE_EVICTED), 1);
    assert_int_equal(T.w.n_conns, 2);
    client_free(&r);
    client_free(&s);
    client_free(&k);
    client_free(&n);
    tg_keyprov_set_drain(T.w.kp);
    RUN_UNTIL(T.w.n_conns == 0);
    tc_finish();
}

/* limits.max_connections_per_source: 2 from 127.0.0.2, a third refused at
 * accept; 127.0.0.1 unaffected; a closed one makes room. */
static void test_per_source(void **state)
{
    (void)state;
    struct opts o = default_opts;
    o.per_source = 2;
    tc_start(&o);
    struct client a, b, c, other;
    client_connect_from(&a, "127.0.0.2");
    client_connect_from(&b, "127.0.0.2");
    RUN_UNTIL(T.w.n_conns == 2);
    client_connect_from(&c, "127.0.0.2");
    RUN_UNTIL(st(TG_STAT_CONN_REJECTED_PER_SOURCE) == 1);
    RUN_UNTIL(client_socket_ended(&c));
    client_free(&c);
    assert_int_equal(st(TG_STAT_CONN_ACCEPTED), 2);
    assert_int_equal(atomic_load(&T.active), 2);
    client_connect(&other);
    RUN_UNTIL(T.w.n_conns == 3);
    client_free(&a);
    RUN_UNTIL(T.w.n_conns == 2);
    client_connect_from(&c, "127.0.0.2");
    RUN_UNTIL(T.w.n_conns == 3);
    assert_int_equal(st(TG_STAT_CONN_REJECTED_PER_SOURCE), 1);
    client_free(&b);
    client_free(&c);
    client_free(&other);
    RUN_UNTIL(T.w.n_conns == 0);
    /* Everything given back: 2 again from 127.0.0.2. */
    client_connect_from(&a, "127.0.0.2");
    client_connect_from(&b, "127.0.0.2");
    RUN_UNTIL(T.w.n_conns == 2);
    assert_int_equal(st(TG_STAT_CONN_REJECTED_PER_SOURCE), 1);
    client_free(&a);
    client_free(&b);
    RUN_UNTIL(T.w.n_conns == 0);
    tc_finish();
}

int main(void)
{
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider, &tg_deferred_provider);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_lifecycle, tc_teardown),
        cmocka_unit_test_teardown(test_client_gone_in_keyop_wait, tc_teardown),
        cmocka_unit_test_teardown(test_timeout_in_keyop_wait, tc_teardown),
        cmocka_unit_test_teardown(test_handshake_timeout, tc_teardown),
        cmocka_unit_test_teardown(test_max_connections, tc_teardown),
        cmocka_unit_test_teardown(test_first_byte_timeout, tc_teardown),
        cmocka_unit_test_teardown(test_evict_least_recently_heard, tc_teardown),
        cmocka_unit_test_teardown(test_evict_skips_keyop_wait, tc_teardown),
        cmocka_unit_test_teardown(test_per_source, tc_teardown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
