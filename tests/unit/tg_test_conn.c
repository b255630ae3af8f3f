/*
 * The connection tests' fixture: contract in tg_test_conn.h.
 */
#include "tg_test_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "config/tg_config.h"
#include "core/tg_log.h"
#include "keyprov/tg_keyprov.h"
#include "ossl/tg_ossl.h"
#include "tls/tg_tls.h"
#include "upstream/tg_cluster.h"

const struct opts default_opts = {HOUR, HOUR, HOUR, HOUR, 100, UP_LISTEN, NULL, NULL, 0};

struct tc_fixture T;

static char cert_path[256], key_path[256];
SSL_CTX *client_ctx;

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

uint64_t st(enum tg_core_stat id)
{
    return tg_ctr_get(&T.w.stats.c[id]);
}

void turn(void)
{
    ev_run(T.w.loop, EVRUN_ONCE);
}

int upstream_socket(enum upstream_kind kind, int *port)
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

void tc_start(const struct opts *o)
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

void tc_finish(void)
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

int tc_teardown(void **state)
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

void assert_closed_by(enum tg_core_stat want, uint64_t n)
{
    for (int s = TG_STAT_CLOSE_NORMAL; s <= TG_STAT_CLOSE_INTERNAL; s++) {
        uint64_t got = st((enum tg_core_stat)s), exp = s == (int)want ? n : 0;
        if (got != exp)
            fail_msg("close stat %d: %llu, expected %llu", s, (unsigned long long)got,
                     (unsigned long long)exp);
    }
}

/* ---- the client: libssl on a non-blocking socket, stepped by the test ---- */

void client_connect_from(struct client *c, const char *from)
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

void client_connect(struct client *c)
{
    client_connect_from(c, NULL);
}

void client_free(struct client *c)
{
    SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    c->ssl = NULL;
    c->fd = -1;
}

int client_handshake(struct client *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1)
        return 1;
    int e = SSL_get_error(c->ssl, r);
    ERR_clear_error();
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

bool client_read(struct client *c)
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

bool client_got(struct client *c, const char *s)
{
    client_read(c);
    return strstr(c->in, s) != NULL;
}

void client_write(struct client *c, const char *s)
{
    ERR_clear_error();
    assert_int_equal(SSL_write(c->ssl, s, (int)strlen(s)), (int)strlen(s));
}

bool client_socket_ended(struct client *c)
{
    char b[64];
    ssize_t n = recv(c->fd, b, sizeof(b), 0);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

void client_abort(struct client *c)
{
    struct linger lg = {1, 0};
    assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    client_free(c);
}

void client_wait_delivered(struct client *c)
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

bool upstream_accept(void)
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

bool upstream_got(struct sink *s, const char *want)
{
    sink_read(T.up_fd, s);
    return strstr(s->data, want) != NULL;
}

bool upstream_ended(struct sink *s)
{
    sink_read(T.up_fd, s);
    return s->eof || s->reset;
}

void upstream_send(const char *s)
{
    assert_int_equal(send(T.up_fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

/* ---- shared steps ---- */

void handshake_to_proxying(struct client *c)
{
    client_connect(c);
    RUN_UNTIL(client_handshake(c) == 1 && tg_worker_count_state(&T.w, TG_CONN_PROXYING) == 1);
    RUN_UNTIL(upstream_accept());
}

/* ---- group ---- */

int setup(void **state)
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

int teardown(void **state)
{
    (void)state;
    SSL_CTX_free(client_ctx);
    tg_keyprov_shutdown();
    tg_ossl_cleanup();
    return 0;
}
