/*
 * The connection state machine (src/proxy/tg_conn.c) through a real worker
 * (src/proxy/tg_worker.c) whose loop runs on the test's own thread: no
 * gateway, no other thread. Real sockets on 127.0.0.1: the worker's
 * listening socket, an upstream the test plays, and a libssl client on a
 * non-blocking socket that the test steps between loop turns.
 *
 * The certificate's key is served by the `deferred` provider. With a `delay`
 * of an hour its operations complete only when the test drains the worker's
 * provider set, so a connection stays in KEYOP_WAIT for as long as the test
 * wants; without a delay they complete when the loop is about to block, as
 * a real provider's would.
 *
 * Nothing waits for time to pass: every wait turns the loop until a
 * condition holds, at most TC_MAX_TURNS turns, each turn at most one
 * heartbeat (1 ms) long. A timeout under test is 1 ms; the others are an
 * hour, so a slow machine cannot make them fire.
 */
#include <dlfcn.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <arpa/inet.h>
#include <netinet/in.h>
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
#include "proxy/tg_srclimit.h"
#include "proxy/tg_worker.h"
#include "tls/tg_tls.h"
#include "upstream/tg_cluster.h"
#include "tg_test_util.h"
#include "providers/software/tg_software.h"
#include "providers/deferred/tg_deferred.h"

#define TC_MAX_TURNS 20000
#define HOUR         "1h"

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

/* ---- fixture: one worker, one listener, one upstream ---- */

enum upstream_kind {
    UP_LISTEN, /* a listening socket the test accepts from */
    UP_REFUSE, /* bound, not listening: connect is refused */
    UP_FULL,   /* listening with a full accept queue: a SYN goes unanswered */
};

struct opts {
    const char *delay; /* deferred provider delay; NULL: none */
    const char *handshake_timeout;
    const char *idle_timeout;
    const char *connect_timeout;
    uint64_t max_active;
    enum upstream_kind upstream;
    /* The whole upstream mapping instead of { address: <the upstream> }
     * (PORT, once: the upstream's port). */
    const char *upstream_yaml;
    const char *first_byte_timeout; /* NULL: an hour */
    uint64_t per_source;            /* limits.max_connections_per_source */
};

static const struct opts default_opts = {HOUR, HOUR, HOUR, HOUR, 100, UP_LISTEN, NULL, NULL, 0};

static struct {
    struct tg_gen *gen; /* the generation the worker starts with */
    struct tg_worker w;
    bool started;
    int exited;        /* tg_worker_host.exited calls */
    uint64_t switched; /* generation of the last tg_worker_host.switched call */
    _Atomic uint64_t active;
    struct tg_srclimit *sources;
    ev_timer heartbeat;
    struct sockaddr_storage addr; /* the worker's listener */
    socklen_t addrlen;
    int up_lfd;  /* upstream socket (see upstream_kind) */
    int up_fill; /* UP_FULL: the connection that fills the accept queue */
    int up_fd;   /* upstream end of the proxied connection, once accepted */
} T;

static char cert_path[256], key_path[256];
static SSL_CTX *client_ctx;

static void on_exit_cb(void *arg)
{
    (void)arg;
    T.exited++;
}

static void on_switched_cb(void *arg, const struct tg_gen *gen)
{
    (void)arg;
    T.switched = gen->id;
}

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

/* One loop turn: whatever is ready, or at most one heartbeat of waiting. */
static void turn(void)
{
    ev_run(T.w.loop, EVRUN_ONCE);
}

/* Turn the loop until cond holds (cond may step the client or upstream). */
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

static int upstream_socket(enum upstream_kind kind, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    if (kind != UP_REFUSE)
        assert_int_equal(listen(fd, kind == UP_FULL ? 0 : 16), 0);
    socklen_t len = sizeof(sin);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

/* UP_FULL: one completed connection waits in the accept queue (backlog 0),
 * so the kernel drops the proxy's SYN and its connect stays in progress. */
static void fill_accept_queue(int port)
{
    T.up_fill = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(T.up_fill >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                              .sin_port = htons((uint16_t)port)};
    assert_int_equal(connect(T.up_fill, (struct sockaddr *)&sin, sizeof(sin)), 0);
    struct pollfd p = {.fd = T.up_lfd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, -1), 1); /* queued: the listener is readable */
}

static void tc_start(const struct opts *o)
{
    memset(&T, 0, sizeof(T));
    T.up_lfd = T.up_fill = T.up_fd = -1;
    int port;
    T.up_lfd = upstream_socket(o->upstream, &port);
    if (o->upstream == UP_FULL)
        fill_accept_queue(port);
    char delay[64] = "";
    if (o->delay != NULL)
        snprintf(delay, sizeof(delay), ", delay: %s", o->delay);
    char up[512];
    const char *at = o->upstream_yaml != NULL ? strstr(o->upstream_yaml, "PORT") : NULL;
    if (at != NULL)
        snprintf(up, sizeof(up), "%.*s%d%s", (int)(at - o->upstream_yaml), o->upstream_yaml, port,
                 at + 4);
    else
        snprintf(up, sizeof(up), "{ address: 127.0.0.1:%d, connect_timeout: %s }", port,
                 o->connect_timeout);
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "listeners:\n"
             "  - name: t\n"
             "    address: 127.0.0.1:0\n"
             "    upstream: %s\n"
             "    tls:\n"
             "      certificates:\n"
             "        - certificate_chain: { filename: %s }\n"
             "          private_key: { filename: %s }\n"
             "          private_key_provider:\n"
             "            provider_name: deferred\n"
             "            typed_config: { key_exchange: false%s }\n"
             "limits: { handshake_timeout: %s, idle_timeout: %s, max_connections: %llu,\n"
             "          first_byte_timeout: %s, max_connections_per_source: %llu }\n",
             up, cert_path, key_path, delay, o->handshake_timeout, o->idle_timeout,
             (unsigned long long)o->max_active,
             o->first_byte_timeout != NULL ? o->first_byte_timeout : HOUR,
             (unsigned long long)o->per_source);
    char err[1024] = "";
    struct tg_config *cfg = NULL;
    if (tg_config_load_buffer("t.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)) != TG_OK)
        fail_msg("config: %s", err);
    if (tg_gen_new(cfg, 1, tg_worker_ssl_async_cb, &T.gen, err, sizeof(err)) != TG_OK)
        fail_msg("tls: %s", err);
    if (tg_gen_open_sockets(T.gen, NULL, err, sizeof(err)) != TG_OK)
        fail_msg("listen: %s", err);
    /* Not started: literal addresses need no loop; names stay unresolved. */
    if (tg_gen_upstreams(T.gen, NULL, NULL, err, sizeof(err)) != TG_OK)
        fail_msg("upstreams: %s", err);
    assert_int_equal(tg_srclimit_new(&T.sources), TG_OK);
    struct tg_worker_host host = {.active = &T.active,
                                  .exited = on_exit_cb,
                                  .switched = on_switched_cb,
                                  .sources = T.sources};
    assert_int_equal(tg_worker_init(&T.w, 0, T.gen, &host), TG_OK);
    const struct tg_conf_listener *conf = T.gen->listeners[0].conf;
    T.addr = conf->addr.ss;
    T.addrlen = conf->addr.len;
    assert_int_equal(tg_worker_thread_start(&T.w), TG_OK);
    T.started = true;
    ev_timer_init(&T.heartbeat, heartbeat_cb, 0.001, 0.001);
    ev_timer_start(T.w.loop, &T.heartbeat);
}

/* End of a case: nothing may be left open, and the host hears the exit. */
static void tc_finish(void)
{
    assert_int_equal(T.w.n_conns, 0);
    assert_int_equal(T.w.n_handshaking, 0);
    assert_int_equal(atomic_load(&T.active), 0);
    assert_int_equal(st(TG_STAT_CONN_OPENED), st(TG_STAT_CONN_CLOSED_ACTIVE));
    ev_timer_stop(T.w.loop, &T.heartbeat);
    T.started = false;
    tg_worker_thread_end(&T.w);
    assert_int_equal(T.exited, 1);
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
    tg_srclimit_free(T.sources);
    assert_int_equal(tg_cluster_live_snapshots(), 0);
    assert_int_equal(tg_cluster_live_endpoints(), 0);
    int fds[] = {T.up_lfd, T.up_fill, T.up_fd};
    for (size_t i = 0; i < TG_ARRAY_LEN(fds); i++) {
        if (fds[i] >= 0)
            close(fds[i]);
    }
    memset(&T, 0, sizeof(T));
    tg_log_set_level(TG_LOG_WARN);
    tg_log_set_fd(2);
    ERR_clear_error();
    return 0;
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

/* ---- the client: libssl on a non-blocking socket, stepped by the test ---- */

struct client {
    int fd;
    SSL *ssl;
    char in[1024];
    size_t inlen;
    bool closed; /* close_notify received */
    bool failed; /* EOF without close_notify, reset, or a TLS error */
};

/* TCP connection only (it completes in the listener's queue, before the
 * worker accepts); no TLS byte sent yet. From 127.0.0.1, or from `from`. */
static void client_connect_from(struct client *c, const char *from)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(T.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c->fd >= 0);
    if (from != NULL) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        assert_int_equal(inet_pton(AF_INET, from, &src.sin_addr), 1);
        assert_int_equal(bind(c->fd, (struct sockaddr *)&src, sizeof(src)), 0);
    }
    assert_int_equal(connect(c->fd, (struct sockaddr *)&T.addr, T.addrlen), 0);
    assert_int_equal(fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK), 0);
    c->ssl = SSL_new(client_ctx);
    assert_non_null(c->ssl);
    assert_int_equal(SSL_set_fd(c->ssl, c->fd), 1);
    SSL_set_connect_state(c->ssl);
}

static void client_connect(struct client *c)
{
    client_connect_from(c, NULL);
}

static void client_free(struct client *c)
{
    SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    c->ssl = NULL;
    c->fd = -1;
}

/* One handshake step: 1 done, 0 in progress, -1 failed. */
static int client_handshake(struct client *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1)
        return 1;
    int e = SSL_get_error(c->ssl, r);
    ERR_clear_error();
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

/* Read whatever has arrived; returns true once the stream ended. */
static bool client_read(struct client *c)
{
    while (!c->closed && !c->failed) {
        ERR_clear_error();
        int n = SSL_read(c->ssl, c->in + c->inlen, (int)(sizeof(c->in) - 1 - c->inlen));
        if (n > 0) {
            c->inlen += (size_t)n;
            c->in[c->inlen] = '\0';
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        ERR_clear_error();
        if (e == SSL_ERROR_ZERO_RETURN)
            c->closed = true;
        else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            c->failed = true;
        break;
    }
    return c->closed || c->failed;
}

static bool client_got(struct client *c, const char *s)
{
    client_read(c);
    return strstr(c->in, s) != NULL;
}

static void client_write(struct client *c, const char *s)
{
    ERR_clear_error();
    assert_int_equal(SSL_write(c->ssl, s, (int)strlen(s)), (int)strlen(s));
}

/* A TCP-level end seen on the raw socket (before any TLS): EOF or reset. */
static bool client_socket_ended(struct client *c)
{
    char b[64];
    ssize_t n = recv(c->fd, b, sizeof(b), 0);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* Close with a reset, as a client that vanishes does. */
static void client_abort(struct client *c)
{
    struct linger lg = {1, 0};
    assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    client_free(c);
}

/* The kernel acknowledged every byte the client sent: they wait in the
 * server socket, accepted or not. */
static void client_wait_delivered(struct client *c)
{
    for (int i = 0; i < TC_MAX_TURNS; i++) {
        int unacked = -1;
        assert_int_equal(ioctl(c->fd, SIOCOUTQ, &unacked), 0);
        if (unacked == 0)
            return;
        (void)poll(NULL, 0, 1);
    }
    fail_msg("client bytes never acknowledged");
}

/* ---- the upstream the test plays ---- */

struct sink {
    char data[1024];
    size_t len;
    bool eof;
    bool reset;
};

static bool upstream_accept(void)
{
    if (T.up_fd < 0)
        T.up_fd = accept4(T.up_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    return T.up_fd >= 0;
}

static void sink_read(int fd, struct sink *s)
{
    while (!s->eof && !s->reset) {
        ssize_t n = recv(fd, s->data + s->len, sizeof(s->data) - 1 - s->len, 0);
        if (n > 0) {
            s->len += (size_t)n;
            s->data[s->len] = '\0';
        } else if (n == 0) {
            s->eof = true;
        } else {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                s->reset = true;
            break;
        }
    }
}

static bool upstream_got(struct sink *s, const char *want)
{
    sink_read(T.up_fd, s);
    return strstr(s->data, want) != NULL;
}

static bool upstream_ended(struct sink *s)
{
    sink_read(T.up_fd, s);
    return s->eof || s->reset;
}

static void upstream_send(const char *s)
{
    assert_int_equal(send(T.up_fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
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

/* Handshake through to PROXYING with the upstream connection accepted. */
static void handshake_to_proxying(struct client *c)
{
    client_connect(c);
    RUN_UNTIL(client_handshake(c) == 1 && tg_worker_count_state(&T.w, TG_CONN_PROXYING) == 1);
    RUN_UNTIL(upstream_accept());
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

/* ---- group ---- */

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN); /* as the gateway does */
    tg_log_set_level(TG_LOG_WARN);
    if (tg_ossl_init() != TG_OK)
        return -1;
    tg_config_set_known_providers(tg_keyprov_names());
    char *cert, *key;
    tg_test_make_cert("EC:P-256", "localhost", &cert, &key);
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
        cmocka_unit_test_teardown(test_upstream_half_closes_first, tc_teardown),
        cmocka_unit_test_teardown(test_client_gone_in_keyop_wait, tc_teardown),
        cmocka_unit_test_teardown(test_timeout_in_keyop_wait, tc_teardown),
        cmocka_unit_test_teardown(test_handshake_timeout, tc_teardown),
        cmocka_unit_test_teardown(test_upstream_refused, tc_teardown),
        cmocka_unit_test_teardown(test_upstream_connect_timeout, tc_teardown),
        cmocka_unit_test_teardown(test_upstream_retry_other_endpoint, tc_teardown),
        cmocka_unit_test_teardown(test_max_connections, tc_teardown),
        cmocka_unit_test_teardown(test_idle_timeout, tc_teardown),
        cmocka_unit_test_teardown(test_first_byte_timeout, tc_teardown),
        cmocka_unit_test_teardown(test_evict_least_recently_heard, tc_teardown),
        cmocka_unit_test_teardown(test_evict_skips_keyop_wait, tc_teardown),
        cmocka_unit_test_teardown(test_per_source, tc_teardown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
