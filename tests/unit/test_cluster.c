/*
 * Unit tests for src/upstream/tg_cluster.c and tg_cluster_main.c: literal
 * endpoints published without a loop, answers for names (tg_cluster_answer,
 * as the resolver gives them) rebuilding the endpoint set, endpoints reused
 * across snapshots, snapshot and endpoint reference counts (nothing leaks,
 * nothing is freed under a worker or a connection), a failed answer keeping
 * the last good set, ejection through reports, panic, the tried list,
 * metrics, and workers picking on their threads while the main thread
 * publishes.
 */
#include "tg_test_util.h"

#include "config/tg_config.h"
#include "core/tg_log.h"
#include "core/tg_time.h"
#include "upstream/tg_cluster_internal.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <string.h>

static char g_cert[512], g_key[512];

static int setup(void **state)
{
    (void)state;
    char *cert, *key;
    tg_test_make_cert("EC:P-256", "a.test", &cert, &key);
    snprintf(g_cert, sizeof(g_cert), "%s", tg_test_write_file("c.pem", cert, strlen(cert)));
    snprintf(g_key, sizeof(g_key), "%s", tg_test_write_file("k.pem", key, strlen(key)));
    free(cert);
    free(key);
    tg_log_set_level(TG_LOG_WARN);
    return 0;
}

static struct tg_config *g_cfg;
static struct tg_cluster *g_cl;

/* A cluster from an upstream mapping (flow YAML), with n_slots slots. */
static struct tg_cluster *mk(const char *upstream, int n_slots)
{
    char yaml[2048], err[TG_CONFIG_ERRLEN] = "";
    snprintf(yaml, sizeof(yaml),
             "listeners:\n"
             "  - name: web\n"
             "    address: 127.0.0.1:8443\n"
             "    tls: { certificates: [ { certificate_chain: { filename: %s },\n"
             "                             private_key: { filename: %s } } ] }\n"
             "    upstream: %s\n",
             g_cert, g_key, upstream);
    if (tg_config_load_buffer("t.yaml", yaml, strlen(yaml), &g_cfg, err, sizeof(err)) != TG_OK)
        fail_msg("config: %s", err);
    assert_int_equal(tg_cluster_new("web", &g_cfg->listeners[0].upstream, n_slots, &g_cl), TG_OK);
    return g_cl;
}

/* Stop, release every slot, drop: nothing may be left. */
static int teardown(void **state)
{
    (void)state;
    if (g_cl != NULL) {
        tg_cluster_stop(g_cl);
        for (int i = 0; i < g_cl->n_slots; i++)
            tg_cluster_slot_release(g_cl, i);
        tg_cluster_unref(g_cl);
        g_cl = NULL;
    }
    tg_config_free(g_cfg);
    g_cfg = NULL;
    assert_int_equal(tg_cluster_live_snapshots(), 0);
    assert_int_equal(tg_cluster_live_endpoints(), 0);
    return 0;
}

static union tg_sockaddr v4(const char *ip)
{
    union tg_sockaddr a;
    memset(&a, 0, sizeof(a));
    a.sin.sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, ip, &a.sin.sin_addr), 1);
    return a;
}

static union tg_sockaddr v6(const char *ip)
{
    union tg_sockaddr a;
    memset(&a, 0, sizeof(a));
    a.sin6.sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, ip, &a.sin6.sin6_addr), 1);
    return a;
}

static struct tg_endpoint *pick(int slot)
{
    return tg_cluster_pick(g_cl, slot, NULL, 0, NULL);
}

static void test_literals(void **state)
{
    (void)state;
    mk("{ endpoints: [ { address: 10.0.0.1:80 }, { address: \"[::1]:81\" }, "
       "{ address: 10.0.0.3:82 } ] }",
       2);
    assert_true(tg_cluster_ready(g_cl));
    assert_int_equal(tg_cluster_size(g_cl), 3);
    assert_int_equal(tg_cluster_live_snapshots(), 1);
    assert_int_equal(tg_cluster_live_endpoints(), 3);
    assert_int_equal(tg_cluster_max_attempts(g_cl), 3);
    assert_true(tg_cluster_connect_timeout_ns(g_cl) == 5 * TG_NS_PER_S);
    /* Round robin over the three, from wherever the cursor starts. */
    struct tg_endpoint *seen[3];
    for (int i = 0; i < 3; i++) {
        seen[i] = pick(0);
        assert_non_null(seen[i]);
        for (int j = 0; j < i; j++)
            assert_ptr_not_equal(seen[i], seen[j]);
        assert_int_equal(atomic_load(&seen[i]->active), 1);
    }
    const char *texts[] = {"10.0.0.1:80", "[::1]:81", "10.0.0.3:82"};
    for (int k = 0; k < 3; k++) {
        bool found = false;
        for (int i = 0; i < 3; i++)
            found = found || strcmp(seen[i]->text, texts[k]) == 0;
        assert_true(found);
    }
    for (int i = 0; i < 3; i++)
        tg_cluster_done(seen[i]);
    assert_int_equal(atomic_load(&seen[0]->active), 0);
}

static void test_answers_and_refcounts(void **state)
{
    (void)state;
    mk("{ endpoints: [ { address: web.test:8080 }, { address: 10.0.0.9:9 } ] }", 2);
    assert_false(tg_cluster_ready(g_cl));
    assert_int_equal(tg_cluster_size(g_cl), 1);
    struct tg_endpoint *lit = pick(0);
    assert_string_equal(lit->text, "10.0.0.9:9");
    tg_cluster_done(lit);
    /* The name answers with two addresses (unsorted, v4 and v6). */
    union tg_sockaddr a[] = {v6("fd00::2"), v4("10.1.0.2"), v4("10.1.0.1")};
    tg_cluster_answer(g_cl, 0, TG_OK, NULL, a, 3, 30);
    assert_true(tg_cluster_ready(g_cl));
    assert_int_equal(tg_cluster_size(g_cl), 4);
    /* Slot 0 held the first snapshot, slot 1 never took one: the first is
     * alive only through slot 0. */
    assert_int_equal(tg_cluster_live_snapshots(), 2);
    struct tg_endpoint *held = NULL;
    for (int i = 0; i < 4; i++) {
        struct tg_endpoint *ep = pick(0);
        if (strcmp(ep->text, "10.1.0.1:8080") == 0) {
            held = ep; /* a connection keeps it */
            assert_string_equal(ep->host, "web.test:8080");
            continue;
        }
        tg_cluster_done(ep);
    }
    assert_non_null(held);
    assert_int_equal(tg_cluster_live_snapshots(), 1); /* slot 0 switched */
    /* The same set in another order changes nothing. */
    union tg_sockaddr b[] = {v4("10.1.0.1"), v6("fd00::2"), v4("10.1.0.2")};
    tg_cluster_answer(g_cl, 0, TG_OK, NULL, b, 3, 30);
    assert_int_equal(tg_cluster_live_snapshots(), 1);
    /* A failed look-up keeps the last good addresses. */
    tg_cluster_answer(g_cl, 0, TG_EIO, "timeout", NULL, 0, 0);
    assert_int_equal(tg_cluster_size(g_cl), 4);
    assert_int_equal(atomic_load(&g_cl->dns_ok), 2);
    assert_int_equal(atomic_load(&g_cl->dns_failed), 1);
    /* The name moves: 10.1.0.1 leaves, 10.1.0.2 stays (the same object). */
    struct tg_endpoint *stay = NULL;
    for (size_t i = 0; i < g_cl->n_members; i++) {
        if (strcmp(g_cl->members[i].ep->text, "10.1.0.2:8080") == 0)
            stay = g_cl->members[i].ep;
    }
    assert_non_null(stay);
    union tg_sockaddr c[] = {v4("10.1.0.2"), v4("10.1.0.3")};
    tg_cluster_answer(g_cl, 0, TG_OK, NULL, c, 2, 30);
    assert_int_equal(tg_cluster_size(g_cl), 3);
    bool stayed = false;
    for (size_t i = 0; i < g_cl->n_members; i++) {
        assert_string_not_equal(g_cl->members[i].ep->text, "10.1.0.1:8080");
        stayed = stayed || g_cl->members[i].ep == stay;
    }
    assert_true(stayed);
    /* The held endpoint outlives its snapshots and the registry. */
    for (int i = 0; i < 6; i++) {
        struct tg_endpoint *ep = pick(0);
        assert_ptr_not_equal(ep, held);
        tg_cluster_done(ep);
    }
    assert_int_equal(tg_cluster_live_snapshots(), 1);
    assert_int_equal(tg_cluster_live_endpoints(), 4); /* 3 + the held one */
    assert_int_equal(atomic_load(&held->active), 1);
    tg_cluster_done(held);
    assert_int_equal(tg_cluster_live_endpoints(), 3);
}

/* Two entries reaching one address: one endpoint, weights added. */
static void test_merge(void **state)
{
    (void)state;
    mk("{ endpoints: [ { address: a.test:80, weight: 2 }, { address: 10.0.0.5:80, weight: 3 } ] "
       "}",
       1);
    union tg_sockaddr a[] = {v4("10.0.0.5"), v4("10.0.0.6")};
    tg_cluster_answer(g_cl, 0, TG_OK, NULL, a, 2, 0);
    assert_int_equal(tg_cluster_size(g_cl), 2);
    struct tg_cluster_snap *s = g_cl->snap;
    assert_int_equal(s->n, 2);
    for (uint32_t i = 0; i < s->n; i++) {
        if (strcmp(s->eps[i]->text, "10.0.0.5:80") == 0)
            assert_int_equal(s->weights[i], 5);
        else
            assert_int_equal(s->weights[i], 2);
    }
    assert_int_equal(s->ring_len, 7);
    /* Nothing but a never-resolved name: no endpoint at all. */
    teardown(NULL);
    mk("{ endpoints: [ { address: a.test:80 } ] }", 1);
    assert_null(pick(0));
    tg_cluster_answer(g_cl, 0, TG_EIO, "NXDOMAIN", NULL, 0, 0);
    assert_true(tg_cluster_ready(g_cl));
    assert_null(pick(0));
}

static void test_ejection_panic_tried(void **state)
{
    (void)state;
    mk("{ endpoints: [ { address: 10.0.0.1:1 }, { address: 10.0.0.2:1 } ], "
       "outlier_detection: { consecutive_failures: 2, max_ejection_percent: 50 } }",
       1);
    struct tg_endpoint *a = pick(0), *b = pick(0);
    assert_ptr_not_equal(a, b);
    tg_cluster_done(b);
    for (int i = 0; i < 2; i++)
        tg_cluster_report(a, TG_CONNECT_REFUSED);
    assert_int_equal(atomic_load(&a->ejections), 1);
    assert_int_equal(atomic_load(&g_cl->n_ejected), 1);
    assert_true(atomic_load(&g_cl->refresh_wanted));
    bool panic = true;
    for (int i = 0; i < 4; i++) {
        struct tg_endpoint *ep = tg_cluster_pick(g_cl, 0, NULL, 0, &panic);
        assert_ptr_equal(ep, b);
        assert_false(panic);
        tg_cluster_done(ep);
    }
    /* Tried already: the ejected one, in panic. */
    struct tg_endpoint *ep = tg_cluster_pick(g_cl, 0, &b, 1, &panic);
    assert_ptr_equal(ep, a);
    assert_true(panic);
    tg_cluster_done(ep);
    struct tg_endpoint *both[] = {a, b};
    assert_null(tg_cluster_pick(g_cl, 0, both, 2, &panic));
    /* 50% of 2: b's failures eject nothing while a is out. */
    for (int i = 0; i < 4; i++)
        tg_cluster_report(b, TG_CONNECT_TIMEOUT);
    assert_int_equal(atomic_load(&b->ejections), 0);
    assert_int_equal(atomic_load(&b->connects_failed[TG_CONNECT_TIMEOUT]), 4);
    tg_cluster_report(b, TG_CONNECT_OK);
    assert_int_equal(atomic_load(&b->connects_ok), 1);
    /* The metrics name both, a ejected. */
    struct tg_buf out = TG_BUF_INIT;
    struct tg_cluster *cls[] = {g_cl};
    tg_cluster_render(&out, cls, 1);
    assert_non_null(out.data);
    char want[256];
    snprintf(want, sizeof(want),
             "tlsgate_upstream_endpoint_ejected{listener=\"web\",endpoint=\"%s\",host=\"%s\"} "
             "1\n",
             a->text, a->text);
    assert_non_null(strstr(out.data, want));
    snprintf(want, sizeof(want),
             "tlsgate_upstream_endpoint_ejected{listener=\"web\",endpoint=\"%s\",host=\"%s\"} "
             "0\n",
             b->text, b->text);
    assert_non_null(strstr(out.data, want));
    snprintf(want, sizeof(want),
             "tlsgate_upstream_endpoint_connect_failures_total{listener=\"web\",endpoint=\"%s\","
             "host=\"%s\",result=\"timeout\"} 4\n",
             b->text, b->text);
    assert_non_null(strstr(out.data, want));
    snprintf(want, sizeof(want),
             "tlsgate_upstream_endpoint_active{listener=\"web\",endpoint=\"%s\",host=\"%s\"} 1\n",
             a->text, a->text);
    assert_non_null(strstr(out.data, want));
    assert_non_null(strstr(out.data, "tlsgate_upstream_endpoints{listener=\"web\"} 2\n"));
    assert_non_null(strstr(out.data, "tlsgate_upstream_dns_resolutions_total{listener=\"web\","
                                     "result=\"failed\"} 0\n"));
    tg_buf_free(&out);
    tg_cluster_done(a);
}

/* ---- workers on their threads while the main thread publishes ---- */

#define NW 2
/* cmocka's asserts may only run on the test's thread. */
#define W_CHECK(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "worker check failed: %s\n", #cond);                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)
static _Atomic bool w_stop;
static _Atomic uint64_t w_picks;

static void *worker(void *arg)
{
    int slot = (int)(intptr_t)arg;
    struct tg_endpoint *held[8] = {0};
    unsigned k = 0;
    while (!atomic_load(&w_stop)) {
        struct tg_endpoint *ep = tg_cluster_pick(g_cl, slot, NULL, 0, NULL);
        if (ep == NULL)
            continue;
        atomic_fetch_add(&w_picks, 1);
        /* Read what a connection reads. */
        W_CHECK(ep->addr.sa.sa_family == AF_INET);
        W_CHECK(ep->text[0] == '1');
        tg_cluster_report(ep, (k % 3) ? TG_CONNECT_OK : TG_CONNECT_REFUSED);
        /* Keep a few "connections" open across publications. */
        unsigned i = k++ % 8;
        if (held[i] != NULL)
            tg_cluster_done(held[i]);
        held[i] = ep;
    }
    for (int i = 0; i < 8; i++) {
        if (held[i] != NULL)
            tg_cluster_done(held[i]);
    }
    tg_cluster_slot_release(g_cl, slot);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    mk("{ endpoints: [ { address: w.test:80 } ], "
       "outlier_detection: { consecutive_failures: 3, max_ejection_percent: 50, "
       "base_ejection_time: 1ms } }",
       NW);
    atomic_store(&w_stop, false);
    atomic_store(&w_picks, 0);
    pthread_t th[NW];
    for (intptr_t i = 0; i < NW; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker, (void *)i), 0);
    union tg_sockaddr pool[8];
    char ip[32];
    for (int i = 0; i < 8; i++) {
        snprintf(ip, sizeof(ip), "10.9.0.%d", i + 1);
        pool[i] = v4(ip);
    }
    uint64_t x = 88172645463325252ULL;
    for (int round = 0; round < 3000; round++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        union tg_sockaddr set[8];
        size_t n = 0;
        for (int i = 0; i < 8; i++) {
            if ((x >> i) & 1)
                set[n++] = pool[i];
        }
        if (n == 0)
            set[n++] = pool[x % 8];
        tg_cluster_answer(g_cl, 0, TG_OK, NULL, set, n, 0);
        for (size_t i = 0; i < g_cl->n_members; i++)
            (void)tg_outlier_expire(&g_cl->members[i].ep->outlier, &g_cl->n_ejected, tg_now_ns());
    }
    /* Let the workers see the last one too. */
    uint64_t seen = atomic_load(&w_picks), end = tg_now_ns() + 60 * TG_NS_PER_S;
    while (atomic_load(&w_picks) < seen + 1000)
        assert_true(tg_now_ns() < end);
    atomic_store(&w_stop, true);
    for (int i = 0; i < NW; i++)
        pthread_join(th[i], NULL);
    assert_true(atomic_load(&w_picks) > 1000);
    /* Every slot is released: only the registry and the main reference
     * remain. */
    assert_int_equal(tg_cluster_live_snapshots(), 1);
    assert_int_equal(tg_cluster_live_endpoints(), g_cl->n_members);
    for (size_t i = 0; i < g_cl->n_members; i++)
        assert_int_equal(atomic_load(&g_cl->members[i].ep->active), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_literals, teardown),
        cmocka_unit_test_teardown(test_answers_and_refcounts, teardown),
        cmocka_unit_test_teardown(test_merge, teardown),
        cmocka_unit_test_teardown(test_ejection_panic_tried, teardown),
        cmocka_unit_test_teardown(test_threads, teardown),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
