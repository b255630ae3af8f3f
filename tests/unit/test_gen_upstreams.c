/*
 * The upstream clusters of configuration generations (src/proxy/tg_gen.c,
 * tg_gen_upstreams / tg_gen_retire), as the gateway drives them:
 *
 *   - a listener whose upstream did not change keeps the previous
 *     generation's cluster (the same object, still serving after that
 *     generation is freed); a changed upstream, a renamed listener or, for
 *     names, a changed dns block gets a new one; proxy_protocol does not
 *     count;
 *   - retiring a generation retires exactly the clusters its successor does
 *     not keep, and everything is freed with the last generation;
 *   - on a real loop: health checks and look-ups run while the generation
 *     serves, the resolver is shared while the dns block stays the same, and
 *     once the last generation is retired nothing is left on the loop
 *     (ev_run returns by itself);
 *   - the readiness the gateway waits for before a switch: a cluster with an
 *     unanswered name is not ready.
 */
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/tg_config.h"
#include "keyprov/tg_keyprov.h"
#include "ossl/tg_ossl.h"
#include "proxy/tg_gen.h"
#include "upstream/tg_cluster.h"
#include "tg_test_util.h"
#include "providers/software/tg_software.h"
#include "providers/deferred/tg_deferred.h"

static char cert_a[256], key_a[256];

static int dummy_async_cb(SSL *s, void *arg)
{
    (void)s;
    (void)arg;
    return 1;
}

static int setup(void **state)
{
    (void)state;
    if (tg_ossl_init() != TG_OK)
        return -1;
    tg_config_set_known_providers(tg_keyprov_names());
    char *c, *k;
    tg_test_make_cert("EC:P-256", "a.test", &c, &k);
    snprintf(cert_a, sizeof(cert_a), "%s", tg_test_write_file("a.crt", c, strlen(c)));
    snprintf(key_a, sizeof(key_a), "%s", tg_test_write_file("a.key", k, strlen(k)));
    free(c);
    free(k);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tg_keyprov_shutdown();
    tg_ossl_cleanup();
    return 0;
}

/* A generation of listeners named names[i] with upstream mappings ups[i]
 * (YAML flow text), after head (top-level keys). Its clusters made or kept
 * from prev, started on loop (may be NULL). */
static struct tg_gen *gen_of(const char *head, const char *const *names, const char *const *ups,
                             size_t n, const struct tg_gen *prev, struct ev_loop *loop)
{
    char yaml[8192], err[TG_CONFIG_ERRLEN] = "";
    int off = snprintf(yaml, sizeof(yaml), "%slisteners:\n", head);
    for (size_t i = 0; i < n; i++)
        off += snprintf(yaml + off, sizeof(yaml) - (size_t)off,
                        "  - name: %s\n"
                        "    address: 127.0.0.1:0\n"
                        "    tls:\n"
                        "      certificates:\n"
                        "        - certificate_chain: { filename: %s }\n"
                        "          private_key: { filename: %s }\n"
                        "    upstream: %s\n",
                        names[i], cert_a, key_a, ups[i]);
    struct tg_config *cfg = NULL;
    struct tg_gen *g = NULL;
    if (tg_config_load_buffer("gw.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)) != TG_OK ||
        tg_gen_new(cfg, 2, dummy_async_cb, &g, err, sizeof(err)) != TG_OK ||
        tg_gen_upstreams(g, prev, loop, err, sizeof(err)) != TG_OK)
        fail_msg("generation: %s", err);
    return g;
}

/* The gateway's way out for a generation: retire (keep: its successor),
 * then drop the main thread's reference. */
static void drop(struct tg_gen *g, const struct tg_gen *keep)
{
    tg_gen_retire(g, keep);
    tg_gen_unref(g);
}

static void test_kept_or_new(void **state)
{
    (void)state;
    size_t eps = tg_cluster_live_endpoints();
    const char *names[] = {"l0", "l1"};
    const char *ups[] = {"{ address: 127.0.0.1:9 }",
                         "{ endpoints: [ { address: 127.0.0.1:10 } ], lb_policy: random }"};
    struct tg_gen *g1 = gen_of("", names, ups, 2, NULL, NULL);
    for (size_t i = 0; i < 2; i++) {
        assert_non_null(g1->listeners[i].cluster);
        assert_false(g1->listeners[i].cluster_kept);
    }
    assert_true(tg_gen_upstreams_ready(g1)); /* literal addresses */
    assert_null(g1->dns);                    /* no name, no resolver */

    /* The same configuration: both kept. */
    struct tg_gen *g2 = gen_of("", names, ups, 2, g1, NULL);
    for (size_t i = 0; i < 2; i++) {
        assert_ptr_equal(g2->listeners[i].cluster, g1->listeners[i].cluster);
        assert_true(g2->listeners[i].cluster_kept);
    }
    drop(g1, g2);
    assert_false(g2->listeners[0].cluster_retired);
    /* g1 is gone; the kept cluster still gives its endpoint. */
    struct tg_endpoint *ep = tg_cluster_pick(g2->listeners[0].cluster, 1, NULL, 0, NULL);
    assert_non_null(ep);
    assert_string_equal(ep->text, "127.0.0.1:9");
    tg_cluster_done(ep);
    tg_cluster_slot_release(g2->listeners[0].cluster, 1);

    /* l1's load balancing changes; l0 only gains a PROXY header. */
    const char *ups3[] = {"{ address: 127.0.0.1:9, proxy_protocol: v1 }",
                          "{ endpoints: [ { address: 127.0.0.1:10 } ] }"};
    struct tg_gen *g3 = gen_of("", names, ups3, 2, g2, NULL);
    assert_ptr_equal(g3->listeners[0].cluster, g2->listeners[0].cluster);
    assert_true(g3->listeners[0].cluster_kept);
    assert_ptr_not_equal(g3->listeners[1].cluster, g2->listeners[1].cluster);
    assert_false(g3->listeners[1].cluster_kept);
    drop(g2, g3);

    /* l1 renamed: a new cluster (its metrics carry the name), even with the
     * same upstream. */
    const char *names4[] = {"l0", "l9"};
    struct tg_gen *g4 = gen_of("", names4, ups3, 2, g3, NULL);
    assert_true(g4->listeners[0].cluster_kept);
    assert_false(g4->listeners[1].cluster_kept);
    /* A reload that fails after its clusters were made: its own go, the
     * serving generation's stay. */
    tg_gen_retire(g4, g3);
    assert_false(g4->listeners[0].cluster_retired);
    assert_true(g4->listeners[1].cluster_retired);
    tg_gen_retire(g4, g3); /* idempotent */
    tg_gen_unref(g4);
    ep = tg_cluster_pick(g3->listeners[0].cluster, 0, NULL, 0, NULL);
    assert_non_null(ep);
    tg_cluster_done(ep);
    tg_cluster_slot_release(g3->listeners[0].cluster, 0);
    drop(g3, NULL);
    assert_int_equal(tg_cluster_live_endpoints(), eps);
}

struct guard {
    ev_timer t;
    bool fired;
};

static void guard_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    ((struct guard *)t->data)->fired = true;
    ev_break(loop, EVBREAK_ALL);
}

/* ev_run(loop, 0) with a guard timer that does not keep the loop alive:
 * true when the loop ran out of watchers by itself, false when the guard
 * had to stop it after `after` seconds. */
static bool loop_runs_dry(struct ev_loop *loop, double after)
{
    struct guard g = {.fired = false};
    ev_timer_init(&g.t, guard_cb, after, 0.0);
    g.t.data = &g;
    ev_timer_start(loop, &g.t);
    ev_unref(loop);
    ev_run(loop, 0);
    ev_ref(loop);
    ev_timer_stop(loop, &g.t);
    return !g.fired;
}

static int accept_probe(int lfd)
{
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0)
        return 0;
    close(fd);
    return 1;
}

static int recv_query(int ufd)
{
    char buf[512];
    return recv(ufd, buf, sizeof(buf), MSG_DONTWAIT) > 0;
}

/* Turn the loop until the health check reached lfd n more times and the
 * resolver sent ufd m more queries. */
static void run_until_probed(struct ev_loop *loop, int lfd, int n, int ufd, int m)
{
    for (int i = 0; i < 100000 && (n > 0 || m > 0); i++) {
        ev_run(loop, EVRUN_ONCE);
        n -= accept_probe(lfd);
        m -= ufd >= 0 ? recv_query(ufd) : 0;
    }
    if (n > 0 || m > 0)
        fail_msg("gave up waiting for %d probe(s), %d query(ies)", n, m);
}

static void test_retired_clusters_leave_the_loop(void **state)
{
    (void)state;
    size_t eps = tg_cluster_live_endpoints();
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    /* The health check's target, and a DNS server that never answers. */
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int ufd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_in uin = sin;
    socklen_t sl = sizeof(sin);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(lfd, 64), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &sl), 0);
    assert_int_equal(bind(ufd, (struct sockaddr *)&uin, sizeof(uin)), 0);
    assert_int_equal(getsockname(ufd, (struct sockaddr *)&uin, &sl), 0);
    char head[256], hc[256], head3[256];
    snprintf(head, sizeof(head), "dns: { resolvers: [\"127.0.0.1:%d\"], query_timeout: 1h }\n",
             ntohs(uin.sin_port));
    snprintf(head3, sizeof(head3), "dns: { resolvers: [\"127.0.0.1:%d\"], query_timeout: 2h }\n",
             ntohs(uin.sin_port));
    snprintf(hc, sizeof(hc), "{ address: 127.0.0.1:%d, health_check: { interval: 10ms } }",
             ntohs(sin.sin_port));
    const char *names[] = {"hc", "dns"};
    const char *ups[] = {hc, "{ endpoints: [ { address: \"never.test:80\" } ] }"};

    struct tg_gen *g1 = gen_of(head, names, ups, 2, NULL, loop);
    assert_non_null(g1->dns);
    assert_false(tg_gen_upstreams_ready(g1)); /* never.test has no answer */
    run_until_probed(loop, lfd, 2, ufd, 1);
    assert_false(loop_runs_dry(loop, 0.05)); /* the clusters keep it busy */

    /* The same: both clusters and the resolver carry on. */
    struct tg_gen *g2 = gen_of(head, names, ups, 2, g1, loop);
    assert_true(g2->listeners[0].cluster_kept && g2->listeners[1].cluster_kept);
    assert_ptr_equal(g2->dns, g1->dns);
    drop(g1, g2);
    run_until_probed(loop, lfd, 2, -1, 0);

    /* Another dns block: the cluster with a name is made again with a new
     * resolver; the one of addresses only is kept. */
    struct tg_gen *g3 = gen_of(head3, names, ups, 2, g2, loop);
    assert_true(g3->listeners[0].cluster_kept);
    assert_false(g3->listeners[1].cluster_kept);
    assert_non_null(g3->dns);
    assert_ptr_not_equal(g3->dns, g2->dns);
    drop(g2, g3); /* g2's resolver and name cluster go */
    run_until_probed(loop, lfd, 2, ufd, 1);

    /* The last generation retired: no health check, no look-up, no
     * resolver, no tick: the loop has nothing left. */
    tg_gen_retire(g3, NULL);
    assert_true(g3->listeners[0].cluster_retired && g3->listeners[1].cluster_retired);
    assert_null(g3->dns);
    assert_true(loop_runs_dry(loop, 60.0));
    tg_gen_unref(g3);
    assert_int_equal(tg_cluster_live_endpoints(), eps);
    assert_int_equal(tg_cluster_live_snapshots(), 0);
    ev_loop_destroy(loop);
    close(lfd);
    close(ufd);
}

int main(void)
{
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider, &tg_deferred_provider);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kept_or_new),
        cmocka_unit_test(test_retired_clusters_leave_the_loop),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
