/*
 * The connection state machine after the handshake (src/proxy/tg_conn_relay.c)
 * through a real worker whose loop runs on the test's own thread (the
 * fixture: tg_test_conn.h): half-close in either order, an upstream that
 * refuses or never answers the connect, a retry on the cluster's other
 * endpoint, idle_timeout on a proxied connection, and no read of the
 * upstream that could only say EAGAIN.
 */
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "keyprov/tg_keyprov.h"
#include "tg_test_conn.h"
#include "providers/software/tg_software.h"
#include "providers/deferred/tg_deferred.h"

/* ---- recv(2) as the gateway calls it on its upstream sockets ----
 * This definition takes the place of libc's for the whole test program
 * (the gateway's code is linked into it) and counts the calls made on a
 * socket whose peer is the test's upstream listener. */

static int recv_up_port; /* 0: not counting */
static unsigned recv_up_calls, recv_up_eagain;

/* The port of fd's peer (peer) or of fd itself; -1 if none. */
static int sock_port(int fd, bool peer)
{
    struct sockaddr_storage a;
    socklen_t al = sizeof(a);
    if ((peer ? getpeername(fd, (struct sockaddr *)&a, &al)
              : getsockname(fd, (struct sockaddr *)&a, &al)) != 0)
        return -1;
    if (a.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&a)->sin_port);
    if (a.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&a)->sin6_port);
    return -1;
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    static ssize_t (*real)(int, void *, size_t, int);
    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "recv");
    ssize_t n = real(fd, buf, len, flags);
    int saved = errno;
    if (recv_up_port != 0 && sock_port(fd, true) == recv_up_port) {
        recv_up_calls++;
        if (n < 0 && (saved == EAGAIN || saved == EWOULDBLOCK))
            recv_up_eagain++;
    }
    errno = saved;
    return n;
}

/* ---- cases ---- */

/* The other order: the upstream finishes first, the client goes on sending,
 * then finishes. Key operations complete on the provider's own schedule. */
static void test_upstream_half_closes_first(void **state)
{
    (void)state;
    struct opts o = default_opts;
    o.delay = NULL;
    tc_start(&o);
    struct client cl;
    handshake_to_proxying(&cl);
    assert_int_equal(st(TG_STAT_KEYOP_WAITS), 1);
    struct sink up = {0};
    upstream_send("all I have to say");
    assert_int_equal(shutdown(T.up_fd, SHUT_WR), 0);
    RUN_UNTIL(client_got(&cl, "all I have to say") && cl.closed);
    assert_int_equal(T.w.n_conns, 1);
    client_write(&cl, "still talking");
    RUN_UNTIL(upstream_got(&up, "still talking"));
    assert_false(up.eof);
    ERR_clear_error();
    assert_true(SSL_shutdown(cl.ssl) >= 0);
    RUN_UNTIL(upstream_ended(&up) && T.w.n_conns == 0);
    assert_true(up.eof);
    assert_closed_by(TG_STAT_CLOSE_NORMAL, 1);
    client_free(&cl);
    tc_finish();
}

/* Nothing listens upstream: counted, and the client gets a clean close. */
static void test_upstream_refused(void **state)
{
    (void)state;
    struct opts o = default_opts;
    o.delay = NULL;
    o.upstream = UP_REFUSE;
    tc_start(&o);
    struct client cl;
    client_connect(&cl);
    RUN_UNTIL(client_handshake(&cl) == 1);
    RUN_UNTIL(client_read(&cl) && T.w.n_conns == 0);
    assert_true(cl.closed);
    assert_int_equal(st(TG_STAT_HS_OK), 1);
    assert_int_equal(st(TG_STAT_UPSTREAM_CONNECT_REFUSED), 1);
    assert_int_equal(st(TG_STAT_UPSTREAM_CONNECT_OK), 0);
    assert_closed_by(TG_STAT_CLOSE_UPSTREAM_CONNECT, 1);
    client_free(&cl);
    tc_finish();
}

/* Two endpoints, one refusing: every connection ends on the other, after
 * a retry when the refusing one came first (round robin makes it come
 * first for some of them). */
static void test_upstream_retry_other_endpoint(void **state)
{
    (void)state;
    int dead_port, dead = upstream_socket(UP_REFUSE, &dead_port);
    char up[256];
    snprintf(up, sizeof(up),
             "{ endpoints: [ { address: \"127.0.0.1:%d\" }, { address: \"127.0.0.1:PORT\" } ], "
             "max_connect_attempts: 2, connect_timeout: 1h }",
             dead_port);
    struct opts o = default_opts;
    o.delay = NULL;
    o.upstream_yaml = up;
    tc_start(&o);
    for (int i = 0; i < 4; i++) {
        struct client cl;
        struct sink sk = {0};
        client_connect(&cl);
        RUN_UNTIL(client_handshake(&cl) == 1);
        RUN_UNTIL(upstream_accept());
        client_write(&cl, "ping");
        RUN_UNTIL(upstream_got(&sk, "ping"));
        close(T.up_fd);
        T.up_fd = -1;
        RUN_UNTIL(client_read(&cl));
        assert_true(cl.closed);
        client_free(&cl);
        RUN_UNTIL(T.w.n_conns == 0);
    }
    assert_int_equal(st(TG_STAT_UPSTREAM_CONNECT_OK), 4);
    assert_true(st(TG_STAT_UPSTREAM_CONNECT_REFUSED) >= 1);
    assert_int_equal(st(TG_STAT_UPSTREAM_RETRY), st(TG_STAT_UPSTREAM_CONNECT_REFUSED));
    assert_closed_by(TG_STAT_CLOSE_NORMAL, 4);
    close(dead);
    tc_finish();
}

/* The upstream never answers the connect (its accept queue is full). */
static void test_upstream_connect_timeout(void **state)
{
    (void)state;
    struct opts o = default_opts;
    o.delay = NULL;
    o.upstream = UP_FULL;
    o.connect_timeout = "1ms";
    tc_start(&o);
    struct client cl;
    client_connect(&cl);
    RUN_UNTIL(client_handshake(&cl) == 1);
    RUN_UNTIL(client_read(&cl) && T.w.n_conns == 0);
    assert_true(cl.closed);
    assert_int_equal(st(TG_STAT_UPSTREAM_CONNECT_TIMEOUT), 1);
    assert_int_equal(st(TG_STAT_UPSTREAM_CONNECT_OK), 0);
    assert_closed_by(TG_STAT_CLOSE_UPSTREAM_CONNECT, 1);
    client_free(&cl);
    tc_finish();
}

/* A proxied connection where nothing moves is closed after idle_timeout,
 * cleanly on both sides. */
static void test_idle_timeout(void **state)
{
    (void)state;
    struct opts o = default_opts;
    o.delay = NULL;
    o.idle_timeout = "1ms";
    tc_start(&o);
    struct client cl;
    client_connect(&cl);
    RUN_UNTIL(client_handshake(&cl) == 1);
    RUN_UNTIL(client_read(&cl) && T.w.n_conns == 0);
    assert_true(cl.closed);
    assert_int_equal(st(TG_STAT_HS_OK), 1);
    assert_int_equal(st(TG_STAT_UPSTREAM_CONNECT_OK), 1);
    assert_closed_by(TG_STAT_CLOSE_IDLE_TIMEOUT, 1);
    struct sink up = {0};
    RUN_UNTIL(upstream_accept() && upstream_ended(&up));
    assert_true(up.eof);
    assert_int_equal(up.len, 0);
    client_free(&cl);
    tc_finish();
}

/* The gateway reads the upstream when its socket says so, not right after
 * sending it the client's bytes (an answer needs at least a wake-up of the
 * upstream: that read could only say EAGAIN); once data came, it reads on
 * until the socket is drained. */
static void test_no_blind_upstream_read(void **state)
{
    (void)state;
    struct opts o = default_opts;
    o.delay = NULL;
    tc_start(&o);
    struct client cl;
    handshake_to_proxying(&cl);
    recv_up_port = sock_port(T.up_lfd, false);
    assert_true(recv_up_port > 0);
    recv_up_calls = recv_up_eagain = 0;
    struct sink up = {0};
    client_write(&cl, "a request");
    RUN_UNTIL(upstream_got(&up, "a request"));
    for (int i = 0; i < 4; i++)
        turn(); /* whatever the gateway still does after its send */
    assert_int_equal(recv_up_eagain, 0);
    assert_int_equal(recv_up_calls, 0);
    upstream_send("its answer");
    RUN_UNTIL(client_got(&cl, "its answer"));
    /* The answer, then the read that found the socket empty. */
    assert_true(recv_up_calls >= 1);
    assert_true(recv_up_eagain <= 1);
    recv_up_port = 0;
    assert_int_equal(shutdown(T.up_fd, SHUT_WR), 0);
    RUN_UNTIL(client_read(&cl) && cl.closed);
    ERR_clear_error();
    assert_true(SSL_shutdown(cl.ssl) >= 0);
    RUN_UNTIL(upstream_ended(&up) && T.w.n_conns == 0);
    assert_closed_by(TG_STAT_CLOSE_NORMAL, 1);
    client_free(&cl);
    tc_finish();
}

int main(void)
{
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider, &tg_deferred_provider);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_upstream_half_closes_first, tc_teardown),
        cmocka_unit_test_teardown(test_upstream_refused, tc_teardown),
        cmocka_unit_test_teardown(test_upstream_connect_timeout, tc_teardown),
        cmocka_unit_test_teardown(test_upstream_retry_other_endpoint, tc_teardown),
        cmocka_unit_test_teardown(test_idle_timeout, tc_teardown),
        cmocka_unit_test_teardown(test_no_blind_upstream_read, tc_teardown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
