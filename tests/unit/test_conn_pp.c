/*
 * The connection state machine's PROXY protocol parts (src/proxy/tg_conn.c)
 * through a real worker whose loop runs on the test's own thread, as in
 * test_conn.c: a proxy_protocol listener on 127.0.0.1, an upstream socket
 * the test accepts from, and a client that writes the load balancer's header
 * by hand and then runs libssl on the same socket.
 *
 *   - PROXY_HEADER comes before the handshake; a header sent in pieces stays
 *     there, consumed piece by piece, and the ClientHello behind it is intact;
 *   - the upstream's header carries the address from the client's header,
 *     and the client's byte count does not include it;
 *   - LOCAL keeps the TCP peer; a missing, invalid, cut or late header is
 *     closed and counted by reason; an empty connection is not an error.
 *
 * Nothing waits for time to pass: loops turn the event loop until a
 * condition holds (bounded); the one timeout under test is 1 ms.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/tg_config.h"
#include "core/tg_log.h"
#include "keyprov/tg_keyprov.h"
#include "ossl/tg_ossl.h"
#include "proxy/tg_conn.h"
#include "proxy/tg_gen.h"
#include "proxy/tg_proxyproto.h"
#include "proxy/tg_worker.h"
#include "tls/tg_tls.h"
#include "upstream/tg_cluster.h"
#include "tg_test_util.h"
#include "providers/software/tg_software.h"
#include "providers/deferred/tg_deferred.h"

#define TC_MAX_TURNS 20000

static struct {
    struct tg_gen *gen; /* the generation the worker serves */
    struct tg_worker w;
    bool started;
    _Atomic uint64_t active;
    ev_timer heartbeat;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int up_lfd, up_fd;
    int port, up_port;
} T;

static char cert_path[256], key_path[256];
static SSL_CTX *client_ctx;

static void heartbeat_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
}

static uint64_t st(enum tg_core_stat id)
{
    return tg_ctr_get(&T.w.stats.c[id]);
}

static void turn(void)
{
    ev_run(T.w.loop, EVRUN_ONCE);
}

#define RUN_UNTIL(cond)                                                                            \
    do {                                                                                           \
        bool ok_ = false;                                                                          \
        for (int i_ = 0; i_ < TC_MAX_TURNS; i_++) {                                                \
            if ((ok_ = (cond)))                                                                    \
                break;                                                                             \
            turn();                                                                                \
        }                                                                                          \
        if (!ok_)                                                                                  \
            fail_msg("line %d: gave up waiting for %s", __LINE__, #cond);                          \
    } while (0)

/* proxy_out: upstream.proxy_protocol ("v1", "v2" or NULL). */
static void tc_start(const char *pp_timeout, const char *proxy_out)
{
    memset(&T, 0, sizeof(T));
    T.up_fd = -1;
    T.up_lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(T.up_lfd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    assert_int_equal(bind(T.up_lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(T.up_lfd, 16), 0);
    assert_int_equal(getsockname(T.up_lfd, (struct sockaddr *)&sin, &sl), 0);
    T.up_port = ntohs(sin.sin_port);
    char out[64] = "";
    if (proxy_out != NULL)
        snprintf(out, sizeof(out), ", proxy_protocol: %s", proxy_out);
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "listeners:\n"
             "  - name: t\n"
             "    address: 127.0.0.1:0\n"
             "    proxy_protocol: true\n"
             "    proxy_protocol_timeout: %s\n"
             "    upstream: { address: 127.0.0.1:%d%s }\n"
             "    tls:\n"
             "      certificates:\n"
             "        - certificate_chain: { filename: %s }\n"
             "          private_key: { filename: %s }\n"
             "limits: { handshake_timeout: 1h, idle_timeout: 1h }\n",
             pp_timeout, T.up_port, out, cert_path, key_path);
    char err[1024] = "";
    struct tg_config *cfg = NULL;
    if (tg_config_load_buffer("t.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)) != TG_OK)
        fail_msg("config: %s", err);
    if (tg_gen_new(cfg, 1, tg_worker_ssl_async_cb, &T.gen, err, sizeof(err)) != TG_OK)
        fail_msg("tls: %s", err);
    if (tg_gen_open_sockets(T.gen, NULL, err, sizeof(err)) != TG_OK)
        fail_msg("listen: %s", err);
    /* Not started: a literal address needs no loop. */
    if (tg_gen_upstreams(T.gen, NULL, NULL, err, sizeof(err)) != TG_OK)
        fail_msg("upstreams: %s", err);
    struct tg_worker_host host = {.active = &T.active};
    assert_int_equal(tg_worker_init(&T.w, 0, T.gen, &host), TG_OK);
    const struct tg_conf_listener *conf = T.gen->listeners[0].conf;
    T.addr = conf->addr.ss;
    T.addrlen = conf->addr.len;
    T.port = ntohs(((struct sockaddr_in *)&T.addr)->sin_port);
    assert_int_equal(tg_worker_thread_start(&T.w), TG_OK);
    T.started = true;
    ev_timer_init(&T.heartbeat, heartbeat_cb, 0.001, 0.001);
    ev_timer_start(T.w.loop, &T.heartbeat);
}

static void tc_finish(void)
{
    assert_int_equal(T.w.n_conns, 0);
    assert_int_equal(T.w.n_handshaking, 0);
    assert_int_equal(atomic_load(&T.active), 0);
    assert_int_equal(st(TG_STAT_CONN_OPENED), st(TG_STAT_CONN_CLOSED_ACTIVE));
}

static int tc_teardown(void **state)
{
    (void)state;
    if (T.started) {
        ev_timer_stop(T.w.loop, &T.heartbeat);
        tg_worker_thread_end(&T.w);
    }
    tg_worker_destroy(&T.w);
    tg_gen_retire(T.gen, NULL);
    tg_gen_unref(T.gen);
    if (T.up_lfd >= 0)
        close(T.up_lfd);
    if (T.up_fd >= 0)
        close(T.up_fd);
    memset(&T, 0, sizeof(T));
    tg_log_set_level(TG_LOG_WARN);
    tg_log_set_fd(2);
    ERR_clear_error();
    return 0;
}

/* ---- the client: raw bytes first, then libssl on the same socket ---- */

struct client {
    int fd;
    SSL *ssl;
    uint16_t port; /* its local port */
};

static void client_connect(struct client *c)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c->fd >= 0);
    int one = 1;
    assert_int_equal(setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&T.addr, T.addrlen), 0);
    struct sockaddr_in me;
    socklen_t sl = sizeof(me);
    assert_int_equal(getsockname(c->fd, (struct sockaddr *)&me, &sl), 0);
    c->port = ntohs(me.sin_port);
    assert_int_equal(fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK), 0);
}

static void client_free(struct client *c)
{
    SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    c->ssl = NULL;
    c->fd = -1;
}

/* Send raw bytes and wait until the kernel has them on the server side. */
static void client_send_raw(struct client *c, const void *p, size_t n)
{
    assert_int_equal(send(c->fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
    for (int i = 0; i < TC_MAX_TURNS; i++) {
        int unacked = -1;
        assert_int_equal(ioctl(c->fd, SIOCOUTQ, &unacked), 0);
        if (unacked == 0)
            return;
        (void)poll(NULL, 0, 1);
    }
    fail_msg("client bytes never acknowledged");
}

/* One handshake step: 1 done, 0 in progress, -1 failed. */
static int client_handshake(struct client *c)
{
    if (c->ssl == NULL) {
        c->ssl = SSL_new(client_ctx);
        assert_non_null(c->ssl);
        assert_int_equal(SSL_set_fd(c->ssl, c->fd), 1);
        SSL_set_connect_state(c->ssl);
        assert_int_equal(SSL_set_tlsext_host_name(c->ssl, "a.test"), 1);
    }
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1)
        return 1;
    int e = SSL_get_error(c->ssl, r);
    ERR_clear_error();
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

static bool client_socket_ended(struct client *c)
{
    char b[64];
    ssize_t n = recv(c->fd, b, sizeof(b), 0);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* ---- the upstream ---- */

static bool upstream_accept(void)
{
    if (T.up_fd < 0)
        T.up_fd = accept4(T.up_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    return T.up_fd >= 0;
}

struct sink {
    uint8_t data[4096];
    size_t len;
};

static bool upstream_has(struct sink *s, size_t n)
{
    ssize_t r = recv(T.up_fd, s->data + s->len, sizeof(s->data) - s->len, 0);
    if (r > 0)
        s->len += (size_t)r;
    return s->len >= n;
}

static struct tg_conn *only_conn(void)
{
    assert_int_equal(T.w.n_conns, 1);
    return T.w.conns;
}

static void assert_addr(const struct sockaddr_storage *ss, const char *want)
{
    char buf[TG_PP_ADDR_TEXT];
    assert_string_equal(tg_pp_addr_text(ss, buf, sizeof(buf)), want);
}

/* Exactly n connections closed, all for reason `want`. */
static void assert_closed_by(enum tg_core_stat want, uint64_t n)
{
    for (int s = TG_STAT_CLOSE_NORMAL; s <= TG_STAT_CLOSE_INTERNAL; s++) {
        uint64_t got = st((enum tg_core_stat)s), exp = s == (int)want ? n : 0;
        if (got != exp)
            fail_msg("close stat %d: %llu, expected %llu", s, (unsigned long long)got,
                     (unsigned long long)exp);
    }
}

/* The states a connection logged, repeats folded. */
static void logged_states(const char *path, char *out, size_t outlen)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[2048], from[32], to[32], last[32] = "";
    out[0] = '\0';
    while (fgets(line, sizeof(line), f) != NULL) {
        const char *p = strstr(line, "conn 0x");
        if (p == NULL || (p = strstr(p, ": ")) == NULL ||
            sscanf(p + 2, "%31[a-z_] -> %31[a-z_]", from, to) != 2)
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

/* A v1 header in three pieces, then TLS; the upstream gets a v2 header with
 * the load balancer's client, then the client's bytes. */
static void test_header_in_pieces_to_v2(void **state)
{
    (void)state;
    tc_start("1h", "v2");
    const char *log_path = tg_test_write_file("pieces.log", "", 0);
    int log_fd = open(log_path, O_WRONLY | O_APPEND | O_CLOEXEC);
    assert_true(log_fd >= 0);
    tg_log_set_fd(log_fd);
    tg_log_set_level(TG_LOG_DEBUG);

    static const char hdr[] = "PROXY TCP4 198.51.100.7 203.0.113.1 4242 443\r\n";
    struct client cl;
    client_connect(&cl);
    client_send_raw(&cl, hdr, 10);
    RUN_UNTIL(T.w.n_conns == 1 && only_conn()->pp_rx != NULL);
    struct tg_conn *c = only_conn();
    assert_int_equal(c->state, TG_CONN_PROXY_HEADER);
    char peer[64];
    snprintf(peer, sizeof(peer), "127.0.0.1:%u", cl.port);
    assert_addr(&c->client_addr, peer); /* the TCP peer until the header is complete */
    client_send_raw(&cl, hdr + 10, 20);
    for (int i = 0; i < 20; i++)
        turn();
    assert_int_equal(c->state, TG_CONN_PROXY_HEADER);
    assert_int_equal(st(TG_STAT_PP_HEADER_V1), 0);
    client_send_raw(&cl, hdr + 30, strlen(hdr) - 30);
    /* Header done: waiting for the ClientHello, still without an SSL object. */
    RUN_UNTIL(c->state == TG_CONN_HELLO_WAIT);
    assert_null(c->ssl);
    assert_null(c->pp_rx);
    assert_int_equal(st(TG_STAT_PP_HEADER_V1), 1);
    assert_addr(&c->client_addr, "198.51.100.7:4242");
    assert_addr(&c->dest_addr, "203.0.113.1:443");
    RUN_UNTIL(client_handshake(&cl) == 1 && tg_worker_count_state(&T.w, TG_CONN_PROXYING) == 1);
    assert_int_equal(st(TG_STAT_HS_OK), 1);

    /* The upstream: the v2 header, then the client's bytes. */
    RUN_UNTIL(upstream_accept());
    ERR_clear_error();
    assert_int_equal(SSL_write(cl.ssl, "ping", 4), 4);
    struct sink up = {.len = 0};
    struct tg_pp_hdr h;
    size_t used = 0;
    const char *why;
    RUN_UNTIL(upstream_has(&up, 16) &&
              up.len >= 16 + (size_t)((up.data[14] << 8) | up.data[15]) + 4);
    assert_int_equal(tg_pp_parse(up.data, up.len, &h, &used, &why), TG_OK);
    assert_int_equal(h.version, 2);
    assert_addr(&h.src, "198.51.100.7:4242");
    assert_addr(&h.dst, "203.0.113.1:443");
    assert_int_equal(h.authority.len, 6);
    assert_memory_equal(h.authority.p, "a.test", 6);
    assert_true(h.ssl.present);
    assert_int_equal(h.ssl.client, TG_PP2_CLIENT_SSL);
    assert_int_equal(up.len, used + 4);
    assert_memory_equal(up.data + used, "ping", 4);
    assert_int_equal(st(TG_STAT_BYTES_FROM_CLIENT), 4);

    tg_log_set_level(TG_LOG_WARN);
    tg_log_set_fd(2);
    close(log_fd);
    char states[256];
    logged_states(log_path, states, sizeof(states));
    assert_string_equal(
        states, "accepted proxy_header hello_wait handshaking upstream_connecting proxying");

    client_free(&cl);
    RUN_UNTIL(T.w.n_conns == 0);
    tc_finish();
}

/* v2 LOCAL (a load balancer's own check): the TCP peer stands, and the
 * upstream's v1 header names it and the listener's own address. */
static void test_local_keeps_peer(void **state)
{
    (void)state;
    tc_start("1h", "v1");
    static const uint8_t local[] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51,
                                    0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00};
    struct client cl;
    client_connect(&cl);
    client_send_raw(&cl, local, sizeof(local));
    RUN_UNTIL(client_handshake(&cl) == 1 && tg_worker_count_state(&T.w, TG_CONN_PROXYING) == 1);
    assert_int_equal(st(TG_STAT_PP_HEADER_V2), 1);
    RUN_UNTIL(upstream_accept());
    char want[128];
    int n =
        snprintf(want, sizeof(want), "PROXY TCP4 127.0.0.1 127.0.0.1 %u %d\r\n", cl.port, T.port);
    struct sink up = {.len = 0};
    RUN_UNTIL(upstream_has(&up, (size_t)n));
    assert_int_equal(up.len, (size_t)n);
    assert_memory_equal(up.data, want, (size_t)n);
    assert_int_equal(st(TG_STAT_BYTES_FROM_CLIENT), 0);
    client_free(&cl);
    RUN_UNTIL(T.w.n_conns == 0);
    tc_finish();
}

/* Silence after part of a header: closed at proxy_protocol_timeout. */
static void test_timeout(void **state)
{
    (void)state;
    tc_start("1ms", NULL);
    struct client cl;
    client_connect(&cl);
    client_send_raw(&cl, "PROXY ", 6);
    RUN_UNTIL(st(TG_STAT_CONN_ACCEPTED) == 1 && T.w.n_conns == 0);
    assert_int_equal(st(TG_STAT_PP_ERR_TIMEOUT), 1);
    assert_int_equal(st(TG_STAT_HS_FAIL_TIMEOUT), 0);
    assert_closed_by(TG_STAT_CLOSE_PROXY_PROTOCOL, 1);
    RUN_UNTIL(client_socket_ended(&cl));
    client_free(&cl);
    tc_finish();
}

/* Each kind of bad start closes its connection and counts its reason. */
static void test_refusals(void **state)
{
    (void)state;
    tc_start("1h", NULL);
    struct client cl;

    /* A plain ClientHello: no signature. */
    client_connect(&cl);
    RUN_UNTIL(client_handshake(&cl) == -1 || st(TG_STAT_PP_ERR_NOT_PROXY) == 1);
    RUN_UNTIL(T.w.n_conns == 0);
    assert_int_equal(st(TG_STAT_PP_ERR_NOT_PROXY), 1);
    RUN_UNTIL(client_handshake(&cl) == -1);
    client_free(&cl);

    /* A v1 line with a bad address. */
    client_connect(&cl);
    client_send_raw(&cl, "PROXY TCP4 1.2.3.999 ", 21);
    RUN_UNTIL(st(TG_STAT_PP_ERR_MALFORMED) == 1 && T.w.n_conns == 0);
    RUN_UNTIL(client_socket_ended(&cl));
    client_free(&cl);

    /* A v2 header with a UDP family. */
    static const uint8_t udp[] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51,
                                  0x55, 0x49, 0x54, 0x0A, 0x21, 0x12, 0x00, 0x0C};
    client_connect(&cl);
    client_send_raw(&cl, udp, sizeof(udp));
    RUN_UNTIL(st(TG_STAT_PP_ERR_MALFORMED) == 2 && T.w.n_conns == 0);
    client_free(&cl);

    /* Cut: part of a header, then the end of the stream. */
    client_connect(&cl);
    client_send_raw(&cl, "PROXY TCP6 ::1", 14);
    RUN_UNTIL(T.w.n_conns == 1 && only_conn()->pp_rx != NULL);
    assert_int_equal(shutdown(cl.fd, SHUT_WR), 0);
    RUN_UNTIL(st(TG_STAT_PP_ERR_TRUNCATED) == 1 && T.w.n_conns == 0);
    client_free(&cl);

    assert_closed_by(TG_STAT_CLOSE_PROXY_PROTOCOL, 4);

    /* Nothing at all (a TCP health check): not a PROXY protocol error. */
    client_connect(&cl);
    RUN_UNTIL(T.w.n_conns == 1);
    client_free(&cl);
    RUN_UNTIL(T.w.n_conns == 0);
    assert_int_equal(st(TG_STAT_HS_FAIL_CLOSED), 1);
    assert_int_equal(st(TG_STAT_CLOSE_HANDSHAKE_FAILED), 1);
    assert_int_equal(st(TG_STAT_PP_ERR_NOT_PROXY) + st(TG_STAT_PP_ERR_MALFORMED) +
                         st(TG_STAT_PP_ERR_TRUNCATED) + st(TG_STAT_PP_ERR_TIMEOUT),
                     4);
    assert_int_equal(st(TG_STAT_PP_HEADER_V1) + st(TG_STAT_PP_HEADER_V2), 0);
    assert_int_equal(st(TG_STAT_UPSTREAM_CONNECT_OK), 0);
    tc_finish();
}

/* ---- group ---- */

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    tg_log_set_level(TG_LOG_WARN);
    if (tg_ossl_init() != TG_OK)
        return -1;
    tg_config_set_known_providers(tg_keyprov_names());
    char *cert, *key;
    tg_test_make_cert("EC:P-256", "a.test", &cert, &key);
    snprintf(cert_path, sizeof(cert_path), "%s", tg_test_write_file("c.crt", cert, strlen(cert)));
    snprintf(key_path, sizeof(key_path), "%s", tg_test_write_file("c.key", key, strlen(key)));
    free(cert);
    free(key);
    client_ctx = SSL_CTX_new(TLS_client_method());
    if (client_ctx == NULL)
        return -1;
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    SSL_CTX_free(client_ctx);
    tg_keyprov_shutdown();
    tg_ossl_cleanup();
    return 0;
}

int main(void)
{
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider, &tg_deferred_provider);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_header_in_pieces_to_v2, tc_teardown),
        cmocka_unit_test_teardown(test_local_keeps_peer, tc_teardown),
        cmocka_unit_test_teardown(test_timeout, tc_teardown),
        cmocka_unit_test_teardown(test_refusals, tc_teardown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
