/*
 * A worker switching configuration generations (src/proxy/tg_worker.c,
 * tg_worker_offer) with real sockets on 127.0.0.1, its loop run by the test's
 * own thread as in test_conn.c:
 *
 *   - a proxied connection opened before a switch keeps passing bytes, new
 *     connections get the new certificate, the listening socket is the same,
 *     and the old generation is freed with its last connection;
 *   - a handshake paused on a key operation during the switch completes
 *     with the old generation's key;
 *   - a listener that goes: what waits in its accept queue is still served,
 *     then its port is closed; a listener that comes accepts at once;
 *   - a provider the new generation starts using (software -> deferred)
 *     gets its per-worker state at the switch;
 *   - the upstream changes: a handshake of the old generation still in
 *     progress at the switch connects to the old upstream (its cluster,
 *     retired meanwhile, still gives the worker its endpoints), new
 *     connections go to the new one; the old cluster and its endpoints are
 *     freed with the old generation's last connection; a cluster a newer
 *     generation keeps stays usable after the older one is freed.
 *
 * No sleeping: every wait turns the loop until a condition holds (bounded).
 */
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/tg_config.h"
#include "core/tg_log.h"
#include "keyprov/tg_keyprov.h"
#include "ossl/tg_ossl.h"
#include "proxy/tg_gen.h"
#include "proxy/tg_worker.h"
#include "upstream/tg_cluster.h"
#include "tg_test_util.h"
#include "providers/software/tg_software.h"
#include "providers/deferred/tg_deferred.h"

#define MAX_TURNS 20000

static char cert_a[256], key_a[256], cert_b[256], key_b[256];
static SSL_CTX *client_ctx;

static struct {
    struct tg_worker w;
    bool started;
    int up_lfd; /* the upstream the test plays */
    int up_port;
    uint64_t switched;
    _Atomic uint64_t active;
    ev_timer heartbeat;
} T;

static void on_exit_cb(void *arg)
{
    (void)arg;
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

#define RUN_UNTIL(cond)                                                                            \
    do {                                                                                           \
        bool ok_ = false;                                                                          \
        for (int i_ = 0; i_ < MAX_TURNS; i_++) {                                                   \
            if ((ok_ = (cond)))                                                                    \
                break;                                                                             \
            ev_run(T.w.loop, EVRUN_ONCE);                                                          \
        }                                                                                          \
        if (!ok_)                                                                                  \
            fail_msg("line %d: gave up waiting for %s", __LINE__, #cond);                          \
    } while (0)

/* ---- generations ---- */

struct lspec {
    const char *name;
    const char *addr;
    const char *cert, *key;
    const char *provider; /* typed as YAML: "{ provider_name: ... }" */
    int up_port;          /* the upstream; 0: T.up_port */
};

static struct tg_gen *gen_of(const struct lspec *ls, size_t n, struct tg_gen *prev)
{
    char yaml[8192];
    int off = snprintf(yaml, sizeof(yaml), "listeners:\n");
    for (size_t i = 0; i < n; i++)
        off += snprintf(yaml + off, sizeof(yaml) - (size_t)off,
                        "  - name: %s\n"
                        "    address: %s\n"
                        "    upstream: { address: 127.0.0.1:%d }\n"
                        "    tls:\n"
                        "      certificates:\n"
                        "        - certificate_chain: { filename: %s }\n"
                        "          private_key: { filename: %s }\n"
                        "          private_key_provider: %s\n",
                        ls[i].name, ls[i].addr, ls[i].up_port ? ls[i].up_port : T.up_port,
                        ls[i].cert, ls[i].key, ls[i].provider);
    char err[TG_CONFIG_ERRLEN] = "";
    struct tg_config *cfg = NULL;
    struct tg_gen *g = NULL;
    if (tg_config_load_buffer("t.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)) != TG_OK ||
        tg_gen_new(cfg, 1, tg_worker_ssl_async_cb, &g, err, sizeof(err)) != TG_OK ||
        tg_gen_open_sockets(g, prev, err, sizeof(err)) != TG_OK ||
        tg_gen_upstreams(g, prev, NULL, err, sizeof(err)) != TG_OK)
        fail_msg("generation: %s", err);
    return g;
}

/* What the main thread does with a generation it no longer serves (keep:
 * the one that replaces it, or NULL). */
static void drop(struct tg_gen *g, const struct tg_gen *keep)
{
    tg_gen_retire(g, keep);
    tg_gen_unref(g);
}

#define DEFERRED_NOW "{ provider_name: deferred, typed_config: { key_exchange: false } }"
#define DEFERRED_HOUR                                                                              \
    "{ provider_name: deferred, typed_config: { key_exchange: false, delay: 1h } }"
#define SOFTWARE "{ provider_name: software }"

static struct tg_gen *start(const struct lspec *ls, size_t n)
{
    memset(&T, 0, sizeof(T));
    T.up_lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    assert_int_equal(bind(T.up_lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(T.up_lfd, 16), 0);
    assert_int_equal(getsockname(T.up_lfd, (struct sockaddr *)&sin, &sl), 0);
    T.up_port = ntohs(sin.sin_port);
    struct tg_gen *g = gen_of(ls, n, NULL);
    struct tg_worker_host host = {
        .active = &T.active, .exited = on_exit_cb, .switched = on_switched_cb};
    assert_int_equal(tg_worker_init(&T.w, 0, g, &host), TG_OK);
    assert_int_equal(tg_worker_thread_start(&T.w), TG_OK);
    T.started = true;
    ev_timer_init(&T.heartbeat, heartbeat_cb, 0.001, 0.001);
    ev_timer_start(T.w.loop, &T.heartbeat);
    return g;
}

/* Offer g and turn until the worker took it. */
static void switch_to(struct tg_gen *g)
{
    tg_worker_offer(&T.w, g);
    RUN_UNTIL(T.switched == g->id);
    assert_ptr_equal(T.w.cur->gen, g);
}

static int teardown(void **state)
{
    (void)state;
    if (T.started) {
        ev_timer_stop(T.w.loop, &T.heartbeat);
        tg_worker_thread_end(&T.w);
    }
    tg_worker_destroy(&T.w);
    if (T.up_lfd > 0)
        close(T.up_lfd);
    memset(&T, 0, sizeof(T));
    ERR_clear_error();
    return 0;
}

static int port_of(const struct tg_gen *g, size_t li)
{
    return ntohs(((const struct sockaddr_in *)&g->listeners[li].conf->addr.ss)->sin_port);
}

/* ---- a client and the upstream end of its connection ---- */

struct client {
    int fd;
    SSL *ssl;
    int up; /* the upstream side, once accepted */
    char in[256];
    size_t inlen;
};

static int client_connect(struct client *c, int port)
{
    memset(c, 0, sizeof(*c));
    c->up = -1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                              .sin_port = htons((uint16_t)port)};
    if (connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)) != 0)
        return errno;
    assert_int_equal(fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK), 0);
    c->ssl = SSL_new(client_ctx);
    assert_int_equal(SSL_set_fd(c->ssl, c->fd), 1);
    SSL_set_connect_state(c->ssl);
    return 0;
}

static void client_free(struct client *c)
{
    SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    if (c->up >= 0)
        close(c->up);
    memset(c, 0, sizeof(*c));
    c->fd = c->up = -1;
}

/* 1 done, 0 in progress. */
static int client_handshake(struct client *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1)
        return 1;
    int e = SSL_get_error(c->ssl, r);
    ERR_clear_error();
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
        fail_msg("client handshake failed (%d)", e);
    return 0;
}

/* The CN of the certificate the server presented. */
static const char *client_peer_cn(struct client *c)
{
    static char cn[64];
    X509 *x = SSL_get1_peer_certificate(c->ssl);
    assert_non_null(x);
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
    X509_free(x);
    return cn;
}

static bool upstream_accepted_on(struct client *c, int lfd)
{
    if (c->up < 0)
        c->up = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    return c->up >= 0;
}

static bool upstream_accepted(struct client *c)
{
    return upstream_accepted_on(c, T.up_lfd);
}

static bool client_got(struct client *c, const char *want)
{
    ERR_clear_error();
    int n = SSL_read(c->ssl, c->in + c->inlen, (int)(sizeof(c->in) - 1 - c->inlen));
    if (n > 0) {
        c->inlen += (size_t)n;
        c->in[c->inlen] = '\0';
    }
    ERR_clear_error();
    return strstr(c->in, want) != NULL;
}

static bool upstream_got(struct client *c, const char *want, char *buf, size_t *len)
{
    ssize_t n = recv(c->up, buf + *len, 255 - *len, 0);
    if (n > 0) {
        *len += (size_t)n;
        buf[*len] = '\0';
    }
    return strstr(buf, want) != NULL;
}

/* Full handshake to a proxied connection; returns the server's CN. */
static const char *client_proxied(struct client *c, int port)
{
    assert_int_equal(client_connect(c, port), 0);
    RUN_UNTIL(client_handshake(c) == 1);
    RUN_UNTIL(upstream_accepted(c));
    return client_peer_cn(c);
}

/* One round trip each way through the proxy. */
static void round_trip(struct client *c, const char *tag)
{
    char msg[64], buf[256] = "";
    size_t len = 0;
    snprintf(msg, sizeof(msg), "ping %s", tag);
    ERR_clear_error();
    assert_int_equal(SSL_write(c->ssl, msg, (int)strlen(msg)), (int)strlen(msg));
    RUN_UNTIL(upstream_got(c, msg, buf, &len));
    snprintf(msg, sizeof(msg), "pong %s", tag);
    assert_int_equal(send(c->up, msg, strlen(msg), MSG_NOSIGNAL), (ssize_t)strlen(msg));
    c->inlen = 0;
    c->in[0] = '\0';
    RUN_UNTIL(client_got(c, msg));
}

/* ---- cases ---- */

static void test_open_connection_survives(void **state)
{
    (void)state;
    unsigned long alive = tg_gen_alive();
    struct lspec a = {"l0", "127.0.0.1:0", cert_a, key_a, DEFERRED_NOW, 0};
    struct tg_gen *g1 = start(&a, 1);
    int port = port_of(g1, 0), fd = T.w.listeners[0].fd;
    struct client old;
    assert_string_equal(client_proxied(&old, port), "a.test");
    round_trip(&old, "before");

    struct lspec b = {"l0", "127.0.0.1:0", cert_b, key_b, DEFERRED_NOW, 0};
    struct tg_gen *g2 = gen_of(&b, 1, g1);
    switch_to(g2);
    assert_int_equal(T.w.listeners[0].fd, fd); /* the same socket */
    assert_int_equal(port_of(g2, 0), port);
    drop(g1, g2); /* the test's: the open connection still holds it */
    assert_int_equal(tg_gen_alive(), alive + 2);

    round_trip(&old, "after");
    struct client fresh;
    assert_string_equal(client_proxied(&fresh, port), "b.test");
    round_trip(&fresh, "new");
    round_trip(&old, "again");

    /* The old generation goes with its last connection. */
    client_free(&old);
    RUN_UNTIL(T.w.n_conns == 1 && tg_gen_alive() == alive + 1);
    client_free(&fresh);
    RUN_UNTIL(T.w.n_conns == 0);
    assert_int_equal(tg_gen_alive(), alive + 1); /* g2: the worker and the test */
    teardown(NULL);
    drop(g2, NULL);
    assert_int_equal(tg_gen_alive(), alive);
}

/* The worker switches between events: a handshake paused on its signature
 * is not touched, and completes with the old generation's key. */
static void test_paused_handshake_across_switch(void **state)
{
    (void)state;
    unsigned long alive = tg_gen_alive();
    struct lspec a = {"l0", "127.0.0.1:0", cert_a, key_a, DEFERRED_HOUR, 0};
    struct tg_gen *g1 = start(&a, 1);
    int port = port_of(g1, 0);
    struct client c;
    assert_int_equal(client_connect(&c, port), 0);
    RUN_UNTIL(client_handshake(&c) == 0 && tg_worker_count_state(&T.w, TG_CONN_KEYOP_WAIT) == 1);

    struct lspec b = {"l0", "127.0.0.1:0", cert_b, key_b, SOFTWARE, 0};
    struct tg_gen *g2 = gen_of(&b, 1, g1);
    switch_to(g2);
    drop(g1, g2);
    assert_int_equal(tg_worker_count_state(&T.w, TG_CONN_KEYOP_WAIT), 1);

    tg_keyprov_set_drain(T.w.kp); /* the hour is up */
    RUN_UNTIL(client_handshake(&c) == 1);
    assert_string_equal(client_peer_cn(&c), "a.test");
    RUN_UNTIL(upstream_accepted(&c));
    round_trip(&c, "old key");
    struct client fresh;
    assert_string_equal(client_proxied(&fresh, port), "b.test");
    client_free(&c);
    client_free(&fresh);
    RUN_UNTIL(T.w.n_conns == 0 && tg_gen_alive() == alive + 1);
    teardown(NULL);
    drop(g2, NULL);
}

/* l0 goes, l1 comes. A connection already in l0's accept queue when the
 * worker switches is still served (under the old generation); then l0's
 * port refuses; l1 serves at once. */
static void test_listener_removed_and_added(void **state)
{
    (void)state;
    struct lspec a = {"l0", "127.0.0.1:0", cert_a, key_a, SOFTWARE, 0};
    struct tg_gen *g1 = start(&a, 1);
    int port0 = port_of(g1, 0);
    struct lspec b = {"l1", "127.0.0.1:0", cert_b, key_b, SOFTWARE, 0};
    /* l1 is new by name, but port 0 "is" l0's address: force new sockets by
     * building without a previous generation. */
    struct tg_gen *g2 = gen_of(&b, 1, NULL);
    int port1 = port_of(g2, 0);
    assert_int_not_equal(port0, port1);

    struct client queued;
    assert_int_equal(client_connect(&queued, port0), 0); /* in the queue, not accepted */
    switch_to(g2);
    drop(g1, g2);
    RUN_UNTIL(client_handshake(&queued) == 1);
    assert_string_equal(client_peer_cn(&queued), "a.test");
    RUN_UNTIL(upstream_accepted(&queued));
    round_trip(&queued, "queued");

    struct client gone;
    assert_int_equal(client_connect(&gone, port0), ECONNREFUSED);
    client_free(&gone);
    struct client fresh;
    assert_string_equal(client_proxied(&fresh, port1), "b.test");
    client_free(&queued);
    client_free(&fresh);
    RUN_UNTIL(T.w.n_conns == 0);
    teardown(NULL);
    drop(g2, NULL);
}

/* software -> deferred: the deferred provider had no state on this worker;
 * the switch creates it, and the next handshake waits on it. */
static void test_provider_started_at_switch(void **state)
{
    (void)state;
    tg_keyprov_shutdown(); /* forget providers earlier cases used */
    struct lspec a = {"l0", "127.0.0.1:0", cert_a, key_a, SOFTWARE, 0};
    struct tg_gen *g1 = start(&a, 1);
    int port = port_of(g1, 0);
    struct client c;
    client_proxied(&c, port);
    client_free(&c);
    RUN_UNTIL(T.w.n_conns == 0);
    assert_int_equal(tg_ctr_get(&T.w.stats.c[TG_STAT_KEYOP_WAITS]), 0);

    struct lspec b = {"l0", "127.0.0.1:0", cert_a, key_a, DEFERRED_NOW, 0};
    struct tg_gen *g2 = gen_of(&b, 1, g1);
    switch_to(g2);
    drop(g1, g2);
    assert_string_equal(client_proxied(&c, port), "a.test");
    round_trip(&c, "deferred");
    assert_int_equal(tg_ctr_get(&T.w.stats.c[TG_STAT_KEYOP_WAITS]), 1);
    client_free(&c);
    RUN_UNTIL(T.w.n_conns == 0);
    teardown(NULL);
    drop(g2, NULL);
}

/* A second upstream socket on 127.0.0.1; its port in *port. */
static int upstream_listen(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

static void test_upstream_changed_across_switch(void **state)
{
    (void)state;
    unsigned long alive = tg_gen_alive();
    size_t eps = tg_cluster_live_endpoints();
    struct lspec a = {"l0", "127.0.0.1:0", cert_a, key_a, DEFERRED_HOUR, 0};
    struct tg_gen *g1 = start(&a, 1);
    int port = port_of(g1, 0), b_port;
    int b_lfd = upstream_listen(&b_port);

    /* The first connection: its handshake waits for the key operation, so
     * the worker has not picked from g1's cluster yet. */
    struct client hs;
    assert_int_equal(client_connect(&hs, port), 0);
    RUN_UNTIL(client_handshake(&hs) == 0 && tg_worker_count_state(&T.w, TG_CONN_KEYOP_WAIT) == 1);

    struct lspec b = {"l0", "127.0.0.1:0", cert_b, key_b, SOFTWARE, b_port};
    struct tg_gen *g2 = gen_of(&b, 1, g1);
    assert_false(g2->listeners[0].cluster_kept);
    struct tg_cluster *old_cl = g1->listeners[0].cluster;
    switch_to(g2);
    drop(g1, g2); /* retired: no look-up, no health check; the worker's endpoints stay */
    assert_int_equal(tg_cluster_size(old_cl), 0);

    tg_keyprov_set_drain(T.w.kp);
    RUN_UNTIL(client_handshake(&hs) == 1);
    assert_string_equal(client_peer_cn(&hs), "a.test");
    RUN_UNTIL(upstream_accepted(&hs)); /* g1's upstream */
    round_trip(&hs, "old upstream");

    struct client fresh;
    assert_int_equal(client_connect(&fresh, port), 0);
    RUN_UNTIL(client_handshake(&fresh) == 1);
    RUN_UNTIL(upstream_accepted_on(&fresh, b_lfd));
    assert_string_equal(client_peer_cn(&fresh), "b.test");
    round_trip(&fresh, "new upstream");
    round_trip(&hs, "old upstream again");
    assert_int_equal(tg_cluster_live_endpoints(), eps + 2);

    /* g1 goes with its connection, and its cluster's endpoint with it. */
    client_free(&hs);
    RUN_UNTIL(T.w.n_conns == 1 && tg_gen_alive() == alive + 1);
    assert_int_equal(tg_cluster_live_endpoints(), eps + 1);

    /* A certificate change only: g3 keeps g2's cluster. When g2 goes with
     * its last connection, the worker keeps its slot of the cluster g3
     * uses: the next connection still finds its endpoint. */
    struct lspec c = {"l0", "127.0.0.1:0", cert_a, key_a, SOFTWARE, b_port};
    struct tg_gen *g3 = gen_of(&c, 1, g2);
    assert_true(g3->listeners[0].cluster_kept);
    assert_ptr_equal(g3->listeners[0].cluster, g2->listeners[0].cluster);
    switch_to(g3);
    drop(g2, g3);
    client_free(&fresh);
    RUN_UNTIL(T.w.n_conns == 0 && tg_gen_alive() == alive + 1);
    struct client third;
    assert_int_equal(client_connect(&third, port), 0);
    RUN_UNTIL(client_handshake(&third) == 1);
    RUN_UNTIL(upstream_accepted_on(&third, b_lfd));
    round_trip(&third, "kept cluster");
    assert_int_equal(tg_cluster_live_endpoints(), eps + 1);
    client_free(&third);
    RUN_UNTIL(T.w.n_conns == 0);
    teardown(NULL);
    drop(g3, NULL);
    assert_int_equal(tg_gen_alive(), alive);
    assert_int_equal(tg_cluster_live_endpoints(), eps);
    close(b_lfd);
}

static void make(const char *cn, char *cpath, char *kpath)
{
    char *c, *k, name[64];
    tg_test_make_cert("EC:P-256", cn, &c, &k);
    snprintf(name, sizeof(name), "%s.crt", cn);
    snprintf(cpath, 256, "%s", tg_test_write_file(name, c, strlen(c)));
    snprintf(name, sizeof(name), "%s.key", cn);
    snprintf(kpath, 256, "%s", tg_test_write_file(name, k, strlen(k)));
    free(c);
    free(k);
}

static int setup(void **state)
{
    (void)state;
    if (tg_ossl_init() != TG_OK)
        return -1;
    tg_config_set_known_providers(tg_keyprov_names());
    make("a.test", cert_a, key_a);
    make("b.test", cert_b, key_b);
    client_ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
    return client_ctx == NULL ? -1 : 0;
}

static int group_teardown(void **state)
{
    (void)state;
    SSL_CTX_free(client_ctx);
    tg_keyprov_shutdown();
    tg_ossl_cleanup();
    return 0;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider, &tg_deferred_provider);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_open_connection_survives, teardown),
        cmocka_unit_test_teardown(test_paused_handshake_across_switch, teardown),
        cmocka_unit_test_teardown(test_listener_removed_and_added, teardown),
        cmocka_unit_test_teardown(test_provider_started_at_switch, teardown),
        cmocka_unit_test_teardown(test_upstream_changed_across_switch, teardown),
    };
    return cmocka_run_group_tests(tests, setup, group_teardown);
}
