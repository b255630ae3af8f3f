/*
 * The qat provider against the fake qatlib (src/providers/qat/tests/fake_qat.c), loaded
 * through the shim from $TG_BUILD_DIR/fakes (TG_QAT_LIB_DIR).
 *
 * Operations run the production way: tg_keyop_run() inside an OpenSSL ASYNC
 * job with a wait-context callback, so the job pauses while the request is
 * on the (fake) device and is resumed after the provider completes it from
 * a poll, a timer, a timeout or a drain. Every signature is verified with
 * OpenSSL and the public key.
 *
 * Covered: start-up without device / with failing instances / without
 * instances / without the library, instance spreading, RSA 2048/3072/4096
 * PKCS#1 v1.5 and PSS, ECDSA P-256/P-384 with digest truncation, completion
 * only when polled and not before the latency, ring full -> spill (to deferred,
 * to cryptomb where it runs) -> software,
 * device errors, a device that dies (timeouts), late completions after a
 * timeout (the op's memory freed meanwhile: ASan/valgrind would see a touch),
 * drain, workers sharing an instance across threads (callbacks on the wrong
 * thread go through the owner's inbox), key conversion cached per worker,
 * every pinned buffer wiped and freed, typed_config errors with file:line,
 * /stats and doctor output.
 */
#include <dlfcn.h>
#include <ev.h>
#include <openssl/async.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define UNDER_VALGRIND() (RUNNING_ON_VALGRIND != 0)
#else
#define UNDER_VALGRIND() 0
#endif

#include "config/tg_config.h"
#include "core/tg_time.h"
#include "keyprov/tg_keyprov.h"
#include "providers/deferred/tg_deferred.h"
#include "providers/qat/tg_qat.h"
#include "providers/software/tg_software.h"
#ifdef TG_TEST_WITH_CRYPTOMB
#include "providers/cryptomb/tg_cryptomb.h"
#define TG_TEST_CRYPTOMB &tg_cryptomb_provider,
#else
#define TG_TEST_CRYPTOMB
#endif
#include "providers/qat/tg_qat_internal.h"
#include "providers/qat/tg_qat_lib.h"
#include "tg_test_util.h"

/* ---- the fake's side channel ---- */

static uint64_t (*fq_counter)(const char *);
static unsigned (*fq_inflight)(void);
static void (*fq_reset)(void);
static size_t (*fu_live)(void);
static size_t (*fu_dirty)(void);
static char fakes_dir[600];
static bool have_fake;

static const char *const fake_env[] = {"FAKE_QAT_LATENCY_US", "FAKE_QAT_CAPACITY",
                                       "FAKE_QAT_INSTANCES",  "FAKE_QAT_FAIL_EVERY",
                                       "FAKE_QAT_START_FAIL", "FAKE_QAT_NO_DEVICE",
                                       "FAKE_QAT_DIE_AFTER",  "FAKE_QAT_NO_ECDSA",
                                       "FAKE_USDM_LIMIT",     NULL};

static void *dl_sym(void *h, const char *name)
{
    void *p = dlsym(h, name);
    if (p == NULL) {
        fprintf(stderr, "fake lacks %s\n", name);
        abort();
    }
    return p;
}

static void fake_open(void)
{
    const char *bd = getenv("TG_BUILD_DIR");
    char exe[512];
    if (bd == NULL) {
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        exe[n > 0 ? n : 0] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash != NULL)
            *slash = '\0';
        bd = exe;
    }
    snprintf(fakes_dir, sizeof(fakes_dir), "%s/fakes", bd);
    char q[700], u[700];
    snprintf(q, sizeof(q), "%s/libqat.so.4", fakes_dir);
    snprintf(u, sizeof(u), "%s/libusdm.so.0", fakes_dir);
    void *hq = dlopen(q, RTLD_NOW | RTLD_LOCAL), *hu = dlopen(u, RTLD_NOW | RTLD_LOCAL);
    if (!tg_qat_have_headers() || hq == NULL || hu == NULL)
        return;
    void *p;
#define TG_SYM(var, h, name)                                                                       \
    p = dl_sym(h, name);                                                                           \
    memcpy(&var, &p, sizeof(p));
    TG_SYM(fq_counter, hq, "fake_qat_counter")
    TG_SYM(fq_inflight, hq, "fake_qat_inflight")
    TG_SYM(fq_reset, hq, "fake_qat_reset")
    TG_SYM(fu_live, hu, "fake_usdm_live")
    TG_SYM(fu_dirty, hu, "fake_usdm_dirty_frees")
#undef TG_SYM
    have_fake = true;
}

/* ---- keys ---- */

enum { K_RSA2048, K_RSA3072, K_RSA4096, K_RSA2560, K_P256, K_P384, K_P521, K_COUNT };
static const char *const key_algs[K_COUNT] = {"RSA:2048", "RSA:3072", "RSA:4096", "RSA:2560",
                                              "EC:P-256", "EC:P-384", "EC:P-521"};
static struct tg_pkey *keys[K_COUNT];

/* ---- config ---- */

static struct tg_conf_param params[8];
static char *seq_items[8];

static void conf_init(struct tg_conf_keyprov *c, bool fallback)
{
    memset(c, 0, sizeof(*c));
    memset(params, 0, sizeof(params));
    c->provider_name = (char *)"qat";
    c->fallback = fallback;
    c->poll_delay_ns = TG_NS_PER_MS;
    c->path = (char *)"listeners[0].tls.certificates[0].private_key_provider";
    c->typed_config.path =
        (char *)"listeners[0].tls.certificates[0].private_key_provider.typed_config";
    c->typed_config.v = params;
    c->mark = (struct tg_conf_mark){"gw.yaml", 7, 11};
}

static void add_param(struct tg_conf_keyprov *c, const char *k, const char *v)
{
    struct tg_conf_param *p = &params[c->typed_config.n++];
    p->key = (char *)k;
    p->value = (char *)v;
    p->mark = (struct tg_conf_mark){"gw.yaml", 9, 13};
    p->value_mark = (struct tg_conf_mark){"gw.yaml", 9, 20};
}

static void add_seq(struct tg_conf_keyprov *c, const char *k, const char *a, const char *b)
{
    struct tg_conf_param *p = &params[c->typed_config.n++];
    p->key = (char *)k;
    seq_items[0] = (char *)a;
    seq_items[1] = (char *)b;
    p->items = seq_items;
    p->nitems = b != NULL ? 2 : (a != NULL ? 1 : 0);
    p->mark = (struct tg_conf_mark){"gw.yaml", 10, 13};
    p->value_mark = (struct tg_conf_mark){"gw.yaml", 10, 20};
}

/* Bind; a test that is not about timeouts gets a long one, so a slow run
 * (valgrind, a loaded machine) does not turn into software fallbacks. */
static struct tg_keyprov_binding *bind_ok(struct tg_conf_keyprov *c, const struct tg_pkey *k)
{
    char err[1024] = "";
    if (tg_conf_params_get(&c->typed_config, "timeout") == NULL)
        add_param(c, "timeout", "30s");
    for (size_t i = 0; i < c->typed_config.n; i++)
        params[i].used = false;
    struct tg_keyprov_binding *b = NULL;
    int rc = tg_keyprov_bind(c, k, &b, err, sizeof(err));
    if (rc != TG_OK)
        fprintf(stderr, "bind: %s\n", err);
    assert_int_equal(rc, TG_OK);
    return b;
}

/* ---- jobs ---- */

struct job {
    ASYNC_JOB *job;
    ASYNC_WAIT_CTX *wctx;
    struct tg_keyop *op; /* heap: a test may free it once the job ended */
    int ret;
    bool woken, finished;
};

static int job_fn(void *arg)
{
    struct job *j = *(struct job **)arg;
    j->ret = tg_keyop_run(j->op);
    return 1;
}

static int job_wake(void *arg)
{
    ((struct job *)arg)->woken = true;
    return 1;
}

static void job_step(struct job *j)
{
    int r = 0;
    int st = ASYNC_start_job(&j->job, j->wctx, &r, job_fn, &j, sizeof(j));
    if (st == ASYNC_FINISH) {
        j->finished = true;
        ASYNC_WAIT_CTX_free(j->wctx);
        j->wctx = NULL;
    } else {
        assert_int_equal(st, ASYNC_PAUSE);
    }
}

static const EVP_MD *md_of(const char *name)
{
    return EVP_get_digestbyname(name);
}

/* A signing op for key on binding b (digest of "tlsgate"). */
static struct tg_keyop *op_new(const struct tg_keyprov_binding *b, struct tg_pkey *k,
                               const char *md, int pad)
{
    struct tg_keyop *op = calloc(1, sizeof(*op));
    assert_non_null(op);
    tg_keyop_init(op, k->type == TG_PKEY_RSA ? TG_KEYOP_RSA_SIGN : TG_KEYOP_ECDSA_SIGN);
    op->pkey = k;
    op->binding = b;
    op->md = md_of(md);
    op->mgf1_md = op->md;
    op->rsa_padding = pad;
    op->pss_saltlen = EVP_MD_get_size(op->md);
    unsigned int dl = 0;
    assert_int_equal(EVP_Digest("tlsgate", 7, op->in, &dl, op->md, NULL), 1);
    op->inlen = dl;
    return op;
}

static void job_start(struct job *j, struct tg_keyop *op)
{
    memset(j, 0, sizeof(*j));
    j->op = op;
    j->wctx = ASYNC_WAIT_CTX_new();
    assert_non_null(j->wctx);
    assert_int_equal(ASYNC_WAIT_CTX_set_callback(j->wctx, job_wake, j), 1);
    job_step(j);
}

static void job_free(struct job *j)
{
    free(j->op);
    j->op = NULL;
}

/* OpenSSL's verdict on the op's signature. */
static bool sig_ok(const struct tg_keyop *op)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, op->pkey->sw, NULL);
    bool ok = ctx != NULL && EVP_PKEY_verify_init(ctx) > 0;
    if (ok && op->pkey->type == TG_PKEY_RSA) {
        ok = EVP_PKEY_CTX_set_rsa_padding(ctx, op->rsa_padding) > 0 &&
             EVP_PKEY_CTX_set_signature_md(ctx, op->md) > 0;
        if (ok && op->rsa_padding == TG_RSA_PAD_PSS)
            ok = EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, op->pss_saltlen) > 0;
    }
    ok = ok && EVP_PKEY_verify(ctx, op->out, op->outlen, op->in, op->inlen) == 1;
    EVP_PKEY_CTX_free(ctx);
    return ok;
}

/* ---- a worker on this thread ---- */

struct world {
    struct ev_loop *loop;
    struct tg_keyprov_set *set;
    ev_timer guard;
};

static void guard_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

static void world_init(struct world *w, int worker_id)
{
    w->loop = ev_loop_new(EVBACKEND_EPOLL);
    assert_non_null(w->loop);
    assert_int_equal(tg_keyprov_set_new(w->loop, worker_id, NULL, &w->set), TG_OK);
    ev_timer_init(&w->guard, guard_cb, 0.0, 0.0);
    tg_keyprov_set_current(w->set);
}

static void world_free(struct world *w)
{
    tg_keyprov_set_current(w->set);
    ev_timer_stop(w->loop, &w->guard);
    tg_keyprov_set_free(w->set);
    ev_loop_destroy(w->loop);
}

/* Wait for one event (timers, the provider's timerfd, at most 50 ms), no
 * flush: only what the provider's own watchers do happens. */
static void loop_once(struct world *w)
{
    ev_timer_stop(w->loop, &w->guard);
    ev_timer_set(&w->guard, 0.05, 0.0);
    ev_timer_start(w->loop, &w->guard);
    ev_run(w->loop, EVRUN_ONCE);
}

/* One turn of a worker: wait for an event (at most 5 ms), flush the
 * providers ("about to block"), resume the jobs that were woken. */
static void world_turn(struct world *w, struct job *jobs, size_t n)
{
    tg_keyprov_set_current(w->set);
    ev_timer_stop(w->loop, &w->guard);
    ev_timer_set(&w->guard, 0.005, 0.0);
    ev_timer_start(w->loop, &w->guard);
    ev_run(w->loop, EVRUN_ONCE);
    tg_keyprov_set_flush(w->set);
    for (size_t i = 0; i < n; i++) {
        if (!jobs[i].finished && jobs[i].woken) {
            jobs[i].woken = false;
            job_step(&jobs[i]);
        }
    }
}

static bool all_done(const struct job *jobs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!jobs[i].finished)
            return false;
    }
    return true;
}

static void world_run(struct world *w, struct job *jobs, size_t n, double max_s)
{
    uint64_t end = tg_now_ns() + (uint64_t)(max_s * 1e9);
    while (!all_done(jobs, n) && tg_now_ns() < end)
        world_turn(w, jobs, n);
    assert_true(all_done(jobs, n));
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t kp_stat(const struct tg_keyprov_binding *b, size_t off, int idx)
{
    const struct tg_keyprov_stats *s = tg_keyprov_current_stats(b);
    return tg_ctr_get((const tg_ctr *)((const char *)s + off) + idx);
}
#define FALLBACKS(b, r) kp_stat(b, offsetof(struct tg_keyprov_stats, fallbacks), r)

/* The value of one /stats series (exact label set), or -1. */
static long long stat_value(const char *series)
{
    struct tg_buf out = TG_BUF_INIT;
    tg_keyprov_render_stats(&out);
    long long v = -1;
    size_t sl = strlen(series);
    for (const char *p = out.data; p != NULL && *p;) {
        const char *nl = strchr(p, '\n');
        if (strncmp(p, series, sl) == 0 && p[sl] == ' ')
            v = strtoll(p + sl + 1, NULL, 10);
        p = nl ? nl + 1 : NULL;
    }
    tg_buf_free(&out);
    return v;
}

/* ---- per-test set-up ---- */

static int test_setup(void **state)
{
    (void)state;
    if (!have_fake)
        return 0;
    for (int i = 0; fake_env[i] != NULL; i++)
        unsetenv(fake_env[i]);
    setenv("TG_QAT_LIB_DIR", fakes_dir, 1);
    fq_reset();
    return 0;
}

static int test_teardown(void **state)
{
    (void)state;
    tg_keyprov_set_current(NULL);
    tg_keyprov_shutdown();
    if (have_fake) {
        /* Every pinned buffer came back, wiped by tlsgate. */
        assert_int_equal(fu_live(), 0);
        assert_int_equal(fu_dirty(), 0);
    }
    return 0;
}

#define NEED_FAKE()                                                                                \
    do {                                                                                           \
        if (!have_fake)                                                                            \
            skip();                                                                                \
    } while (0)

/* ---- start-up ---- */

static void expect_unavailable(const char *needle)
{
    struct tg_conf_keyprov c;
    char err[1024] = "";
    struct tg_keyprov_binding *b = NULL;
    conf_init(&c, false);
    assert_int_equal(tg_keyprov_bind(&c, keys[K_RSA2048], &b, err, sizeof(err)), TG_EUNAVAIL);
    assert_null(b);
    assert_non_null(strstr(err, "gw.yaml:7:11: "));
    assert_non_null(strstr(err, "provider 'qat' cannot run here"));
    if (strstr(err, needle) == NULL)
        fail_msg("'%s' not in: %s", needle, err);
    tg_keyprov_shutdown();
    /* fallback: true serves with software instead. */
    conf_init(&c, true);
    b = bind_ok(&c, keys[K_RSA2048]);
    assert_string_equal(b->ops->name, "software");
    assert_string_equal(b->configured, "qat");
    tg_keyprov_binding_free(b);
}

static void test_no_device(void **state)
{
    (void)state;
    NEED_FAKE();
    setenv("FAKE_QAT_NO_DEVICE", "1", 1);
    /* What the library printed (the fake, like qatlib, writes to stderr) is
     * captured and quoted in the reason, not left on the terminal. */
    expect_unavailable("icp_sal_userStart(\"SSL\") failed (CPA_STATUS_FAIL): no QAT device this "
                       "process can use (run `tlsgate doctor`); qatlib: fake_qat: "
                       "icp_sal_userStart(SSL): no device (FAKE_QAT_NO_DEVICE)");
}

static void test_start_failure(void **state)
{
    (void)state;
    NEED_FAKE();
    setenv("FAKE_QAT_START_FAIL", "1", 1);
    expect_unavailable("cpaCyStartInstance(SSL_CY0) failed (CPA_STATUS_FAIL)");
}

static void test_no_instances(void **state)
{
    (void)state;
    NEED_FAKE();
    setenv("FAKE_QAT_INSTANCES", "0", 1);
    expect_unavailable("offers no crypto instance");
}

static void test_no_library(void **state)
{
    (void)state;
    NEED_FAKE();
    setenv("TG_QAT_LIB_DIR", "/nonexistent-qat", 1);
    expect_unavailable("cannot load qatlib from TG_QAT_LIB_DIR=/nonexistent-qat");
}

static void test_unsupported_keys(void **state)
{
    (void)state;
    NEED_FAKE();
    struct tg_conf_keyprov c;
    char err[1024];
    struct tg_keyprov_binding *b = NULL;
    conf_init(&c, false);
    assert_int_equal(tg_keyprov_bind(&c, keys[K_P521], &b, err, sizeof(err)), TG_EUNAVAIL);
    assert_non_null(strstr(err, "P-256 and P-384"));
    conf_init(&c, false);
    assert_int_equal(tg_keyprov_bind(&c, keys[K_RSA2560], &b, err, sizeof(err)), TG_EUNAVAIL);
    assert_non_null(strstr(err, "RSA-2560"));
    tg_keyprov_shutdown();
    setenv("FAKE_QAT_NO_ECDSA", "1", 1);
    conf_init(&c, false);
    assert_int_equal(tg_keyprov_bind(&c, keys[K_P256], &b, err, sizeof(err)), TG_EUNAVAIL);
    assert_non_null(strstr(err, "do not offer ECDSA"));
    conf_init(&c, false); /* RSA still goes to the device */
    b = bind_ok(&c, keys[K_RSA2048]);
    assert_string_equal(b->ops->name, "qat");
    tg_keyprov_binding_free(b);
}

/* ---- operations ---- */

static void sign_and_check(int key, const char *md, int pad)
{
    struct tg_conf_keyprov c;
    conf_init(&c, false);
    struct tg_keyprov_binding *b = bind_ok(&c, keys[key]);
    assert_string_equal(b->ops->name, "qat");
    struct world w;
    world_init(&w, 0);
    struct job j;
    job_start(&j, op_new(b, keys[key], md, pad));
    assert_false(j.finished); /* paused: the request is on the device */
    world_run(&w, &j, 1, 5.0);
    assert_int_equal(j.ret, TG_OK);
    assert_false(j.op->fell_back);
    if (!sig_ok(j.op))
        fail_msg("%s %s pad %d: signature does not verify", key_algs[key], md, pad);
    job_free(&j);
    world_free(&w);
    tg_keyprov_binding_free(b);
    tg_keyprov_shutdown();
}

static void test_rsa_signatures(void **state)
{
    (void)state;
    NEED_FAKE();
    static const struct {
        int key;
        const char *md;
        int pad;
    } cases[] = {
        {K_RSA2048, "SHA256", TG_RSA_PAD_PSS},   {K_RSA2048, "SHA256", TG_RSA_PAD_PKCS1},
        {K_RSA2048, "SHA384", TG_RSA_PAD_PSS},   {K_RSA2048, "SHA1", TG_RSA_PAD_PKCS1},
        {K_RSA3072, "SHA384", TG_RSA_PAD_PKCS1}, {K_RSA3072, "SHA512", TG_RSA_PAD_PSS},
        {K_RSA4096, "SHA512", TG_RSA_PAD_PSS},   {K_RSA4096, "SHA256", TG_RSA_PAD_PKCS1},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++)
        sign_and_check(cases[i].key, cases[i].md, cases[i].pad);
    assert_int_equal(fq_counter("rsa"), TG_ARRAY_LEN(cases));
    assert_int_equal(fq_counter("completed"), TG_ARRAY_LEN(cases));
    assert_int_equal(fq_counter("invalid"), 0);
}

static void test_ecdsa_signatures(void **state)
{
    (void)state;
    NEED_FAKE();
    /* Digest longer than the order (truncated) and shorter (padded). */
    sign_and_check(K_P256, "SHA256", 0);
    sign_and_check(K_P256, "SHA384", 0);
    sign_and_check(K_P384, "SHA384", 0);
    sign_and_check(K_P384, "SHA256", 0);
    sign_and_check(K_P384, "SHA512", 0);
    assert_int_equal(fq_counter("ecdsa"), 5);
    assert_int_equal(fq_counter("completed"), 5);
}

static void test_completion_only_on_poll(void **state)
{
    (void)state;
    NEED_FAKE();
    setenv("FAKE_QAT_LATENCY_US", "20000", 1); /* 20 ms */
    struct tg_conf_keyprov c;
    conf_init(&c, false);
    struct tg_keyprov_binding *b = bind_ok(&c, keys[K_RSA2048]);
    struct world w;
    world_init(&w, 0);
    struct job j;
    uint64_t t0 = tg_now_ns();
    job_start(&j, op_new(b, keys[K_RSA2048], "SHA256", TG_RSA_PAD_PSS));
    assert_false(j.finished);
    assert_int_equal(tg_keyprov_set_pending(w.set), 1);
    /* Before the latency: a poll finds nothing. (Only checked when this
     * thread got here in time: a loaded machine may stall it longer.) */
    tg_keyprov_set_flush(w.set);
    if (tg_now_ns() - t0 < 20 * TG_NS_PER_MS)
        assert_false(j.woken);
    if (!j.woken) {
        /* After it, but nobody polls: still nothing. */
        sleep_ms(40);
        assert_false(j.woken);
        assert_int_equal(fq_counter("completed"), 0);
        assert_int_equal(fq_inflight(), 1);
        /* The loop is about to block: flush polls, the op completes (once
         * the fake's own thread has computed it: poll until then). */
        for (uint64_t t1 = tg_now_ns(); !j.woken && tg_now_ns() - t1 < 10 * TG_NS_PER_S;) {
            tg_keyprov_set_flush(w.set);
            if (!j.woken)
                sleep_ms(1);
        }
        assert_true(j.woken);
    }
    assert_int_equal(fq_counter("completed"), 1);
    world_run(&w, &j, 1, 10.0);
    assert_int_equal(j.ret, TG_OK);
    assert_true(sig_ok(j.op));
    assert_true(tg_now_ns() - t0 >= 20 * TG_NS_PER_MS); /* never before the latency */
    job_free(&j);

    /* The timer alone (no flush) completes the next one, about one latency
     * later: the timer aims at the expected completion, not at poll_delay. */
    setenv("FAKE_QAT_LATENCY_US", "2000", 1);
    tg_keyprov_set_free(w.set);
    tg_keyprov_binding_free(b);
    ev_loop_destroy(w.loop);
    tg_keyprov_shutdown();
    conf_init(&c, false);
    c.poll_delay_ns = 50 * TG_NS_PER_MS;
    b = bind_ok(&c, keys[K_RSA2048]);
    world_init(&w, 0);
    for (int i = 0; i < 20; i++) {
        job_start(&j, op_new(b, keys[K_RSA2048], "SHA256", TG_RSA_PAD_PSS));
        t0 = tg_now_ns();
        while (!j.woken && tg_now_ns() - t0 < 10 * TG_NS_PER_S)
            loop_once(&w); /* timers only: no flush */
        assert_true(j.woken);
        j.woken = false;
        job_step(&j);
        assert_true(j.finished);
        assert_int_equal(j.ret, TG_OK);
        job_free(&j);
    }
    /* With poll_delay 50 ms, 20 ops took well under 20 x 50 ms. */
    assert_true(
        stat_value("tlsgate_qat_requests_completed_total{provider=\"qat\",instance=\"0\"}") == 20);
    world_free(&w);
    tg_keyprov_binding_free(b);
}

/*
 * The poll timer aims at the expected completion of the oldest request (a
 * running estimate of the device latency), not at poll_delay, and runs on a
 * timerfd (nanoseconds; libev's epoll timers round up to 1 ms). Checked on
 * what the provider armed, not on how late the kernel woke this thread: a
 * loaded machine may wake anyone late, and that is not the provider's doing.
 */
static void test_timer_latency(void **state)
{
    (void)state;
    NEED_FAKE();
#ifdef TG_HAVE_QAT_H /* have_fake implies it; this reads the provider's state */
    setenv("FAKE_QAT_LATENCY_US", "300", 1);
    struct tg_conf_keyprov c;
    conf_init(&c, false);
    c.poll_delay_ns = 50 * TG_NS_PER_MS;
    struct tg_keyprov_binding *b = bind_ok(&c, keys[K_P256]);
    struct world w;
    world_init(&w, 0);
    for (int i = 0; i < 30; i++) {
        struct job j;
        job_start(&j, op_new(b, keys[K_P256], "SHA256", 0));
        uint64_t after = tg_now_ns();
        const struct tg_qat_req *r = j.op->prov_data;
        assert_non_null(r);
        const struct tg_qat_wstate *st = atomic_load(&r->owner);
        assert_non_null(st);
        assert_true(st->tfd >= 0);
        assert_true(st->poll_at != 0);
        /* Armed for submit + estimate (or a fraction of it once passed, and
         * never under the floor): the first time from the initial 100 us. */
        uint64_t est = st->ewma_ns > TG_QAT_MIN_POLL_NS ? st->ewma_ns : TG_QAT_MIN_POLL_NS;
        if (i == 0)
            assert_true(est <= 100 * TG_NS_PER_US);
        if (st->poll_at > after + est)
            fail_msg("op %d: poll armed %llu us after submit, estimate %llu us", i,
                     (unsigned long long)((st->poll_at - r->t_submit) / 1000),
                     (unsigned long long)(est / 1000));
        /* The kernel timer holds that much, not poll_delay. */
        struct itimerspec its;
        assert_int_equal(timerfd_gettime(st->tfd, &its), 0);
        uint64_t left =
            (uint64_t)its.it_value.tv_sec * TG_NS_PER_S + (uint64_t)its.it_value.tv_nsec;
        assert_true(left <= est);
        /* The timer alone completes it: no flush. */
        uint64_t t0 = tg_now_ns();
        while (!j.woken && tg_now_ns() - t0 < 10 * TG_NS_PER_S)
            loop_once(&w);
        assert_true(j.woken);
        j.woken = false;
        job_step(&j);
        assert_true(j.finished && j.ret == TG_OK);
        job_free(&j);
    }
    /* Every completion came from a timer poll (flushes never ran). */
    assert_int_equal(
        stat_value("tlsgate_qat_requests_completed_total{provider=\"qat\",instance=\"0\"}"), 30);
    world_free(&w);
    tg_keyprov_binding_free(b);
#endif
}

/* Capacity 2 and five operations at once: two go to the device, three are
 * refused with CPA_STATUS_RETRY and spilled to `target` (then software;
 * NULL: the default list, software alone); taken: the target runs here and
 * took them. */
static void ring_full_case(const char *target, bool taken)
{
    fq_reset();
    setenv("FAKE_QAT_CAPACITY", "2", 1);
    setenv("FAKE_QAT_LATENCY_US", "5000", 1);
    struct tg_conf_keyprov c;
    conf_init(&c, false);
    if (target != NULL)
        add_seq(&c, "spill", target, "software");
    struct tg_keyprov_binding *b = bind_ok(&c, keys[K_RSA2048]);
    struct world w;
    world_init(&w, 0);
    struct job jobs[5];
    for (int i = 0; i < 5; i++)
        job_start(&jobs[i], op_new(b, keys[K_RSA2048], "SHA256", TG_RSA_PAD_PKCS1));
    assert_false(jobs[0].finished);
    assert_false(jobs[1].finished);
    if (!taken) {
        /* Software, at once, counted as ring_full fallbacks. */
        for (int i = 2; i < 5; i++) {
            assert_true(jobs[i].finished);
            assert_int_equal(jobs[i].ret, TG_OK);
            assert_true(jobs[i].op->fell_back);
        }
        assert_int_equal(FALLBACKS(b, TG_FALLBACK_RING_FULL), 3);
    }
    assert_int_equal(fq_counter("retried"), 3);
    world_run(&w, jobs, 5, 5.0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(jobs[i].ret, TG_OK);
        assert_true(sig_ok(jobs[i].op));
        if (taken)
            assert_false(jobs[i].op->fell_back); /* the target computed them */
        job_free(&jobs[i]);
    }
    assert_int_equal(
        stat_value("tlsgate_qat_requests_retried_total{provider=\"qat\",instance=\"0\"}"), 3);
    /* One series per provider a list may name, whether listed or not. */
    size_t np = 0;
    const struct tg_keyprov_ops *const *all = tg_keyprov_all(&np);
    for (size_t i = 0; i < np; i++) {
        char series[160];
        snprintf(series, sizeof(series),
                 "tlsgate_qat_spilled_total{provider=\"qat\",instance=\"0\",to=\"%s\"}",
                 all[i]->name);
        long long want = 0;
        if (strcmp(all[i]->name, "qat") == 0)
            want = -1; /* never a target: no series */
        else if (taken ? strcmp(all[i]->name, target) == 0 : strcmp(all[i]->name, "software") == 0)
            want = 3;
        if (stat_value(series) != want)
            fail_msg("%s: %lld, expected %lld", series, stat_value(series), want);
    }
    assert_int_equal(
        stat_value("tlsgate_qat_requests_submitted_total{provider=\"qat\",instance=\"0\"}"), 2);
    if (taken) {
        char series[160];
        snprintf(series, sizeof(series),
                 "tlsgate_keyprov_operations_total{provider=\"%s\",type=\"rsa_sign\"}", target);
        assert_true(stat_value(series) >= 3);
    }
    world_free(&w);
    tg_keyprov_binding_free(b);
    tg_keyprov_shutdown();
}

static void test_ring_full_spill(void **state)
{
    (void)state;
    NEED_FAKE();
    /* Default spill list: software. */
    ring_full_case(NULL, false);
    /* [deferred, software]: any registered provider takes the overflow,
     * none is known to qat by name. */
    ring_full_case("deferred", true);
    if (tg_keyprov_find("cryptomb") == NULL)
        return;
    /* [cryptomb, software]: cryptomb takes them where it can run. */
    char why[256];
    bool mb = tg_keyprov_require("cryptomb", why, sizeof(why)) == TG_OK;
    tg_keyprov_shutdown();
    ring_full_case("cryptomb", mb);
    /* A cryptomb that cannot run (no AVX-512 IFMA) is skipped: software. */
    setenv("TG_FAKE_NO_IFMA", "1", 1);
    ring_full_case("cryptomb", false);
    unsetenv("TG_FAKE_NO_IFMA");
}

static void test_device_errors(void **state)
{
    (void)state;
    NEED_FAKE();
    setenv("FAKE_QAT_FAIL_EVERY", "2", 1);
    struct tg_conf_keyprov c;
    conf_init(&c, false);
    struct tg_keyprov_binding *b = bind_ok(&c, keys[K_RSA2048]);
    struct world w;
    world_init(&w, 0);
    struct job jobs[4];
    for (int i = 0; i < 4; i++)
        job_start(&jobs[i], op_new(b, keys[K_RSA2048], "SHA256", TG_RSA_PAD_PSS));
    world_run(&w, jobs, 4, 5.0);
    int fell = 0;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(jobs[i].ret, TG_OK);
        assert_true(sig_ok(jobs[i].op));
        fell += jobs[i].op->fell_back;
        job_free(&jobs[i]);
    }
    assert_int_equal(fell, 2);
    assert_int_equal(FALLBACKS(b, TG_FALLBACK_DEVICE_ERROR), 2);
    assert_int_equal(fq_counter("failed"), 2);
    assert_int_equal(
        stat_value(
            "tlsgate_qat_requests_failed_total{provider=\"qat\",instance=\"0\",stage=\"device\"}"),
        2);
    world_free(&w);
    tg_keyprov_binding_free(b);
}

static void test_device_dies(void **state)
{
    (void)state;
    NEED_FAKE();
    setenv("FAKE_QAT_DIE_AFTER", "2", 1);
    setenv("FAKE_QAT_LATENCY_US", "100000", 1); /* nothing returns before it dies */
    struct tg_conf_keyprov c;
    conf_init(&c, false);
    add_param(&c, "timeout", "20ms");
    struct tg_keyprov_binding *b = bind_ok(&c, keys[K_P384]);
    struct world w;
    world_init(&w, 0);
    struct job jobs[4];
    uint64_t t0 = tg_now_ns();
    for (int i = 0; i < 4; i++)
        job_start(&jobs[i], op_new(b, keys[K_P384], "SHA384", 0));
    /* The third submit finds the device gone: software at once, like the 4th. */
    assert_true(jobs[2].finished && jobs[3].finished);
    assert_false(jobs[0].finished || jobs[1].finished);
    world_run(&w, jobs, 4, 5.0);
    assert_true(tg_now_ns() - t0 >= 20 * TG_NS_PER_MS);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(jobs[i].ret, TG_OK);
        assert_true(jobs[i].op->fell_back);
        assert_true(sig_ok(jobs[i].op));
        job_free(&jobs[i]);
    }
    assert_int_equal(FALLBACKS(b, TG_FALLBACK_TIMEOUT), 2);
    assert_int_equal(FALLBACKS(b, TG_FALLBACK_DEVICE_ERROR), 2);
    assert_int_equal(fq_counter("rejected"), 2);
    assert_int_equal(fq_counter("dropped"), 2);
    assert_int_equal(
        stat_value(
            "tlsgate_qat_requests_failed_total{provider=\"qat\",instance=\"0\",stage=\"timeout\"}"),
        2);
    /* The two requests stay owned by the provider (the device could still
     * write them) until qatlib stops: the teardown checks they are freed. */
    assert_int_equal(stat_value("tlsgate_qat_inflight{provider=\"qat\",instance=\"0\"}"), 2);
    world_free(&w);
    tg_keyprov_binding_free(b);
}

static void test_late_completion(void **state)
{
    (void)state;
    NEED_FAKE();
    /* Much longer than the timeout and than the software fallback takes
     * (valgrind makes that slow), so the request comes back only after the
     * job ended and its op was freed. */
    setenv("FAKE_QAT_LATENCY_US", UNDER_VALGRIND() ? "3000000" : "60000", 1);
    struct tg_conf_keyprov c;
    conf_init(&c, false);
    add_param(&c, "timeout", "10ms");
    struct tg_keyprov_binding *b = bind_ok(&c, keys[K_RSA2048]);
    struct world w;
    world_init(&w, 0);
    struct job j;
    job_start(&j, op_new(b, keys[K_RSA2048], "SHA256", TG_RSA_PAD_PSS));
    world_run(&w, &j, 1, 5.0);
    assert_int_equal(j.ret, TG_OK);
    assert_true(j.op->fell_back);
    assert_true(sig_ok(j.op));
    /* The job is over and its op memory is gone; the device still has the
     * request. Its return must not touch the op (ASan/valgrind would see). */
    job_free(&j);
    assert_int_equal(fq_inflight(), 1);
    uint64_t t0 = tg_now_ns();
    while (fq_counter("completed") == 0 && tg_now_ns() - t0 < 10 * TG_NS_PER_S)
        world_turn(&w, NULL, 0);
    assert_int_equal(fq_counter("completed"), 1);
    assert_int_equal(
        stat_value("tlsgate_qat_late_completions_total{provider=\"qat\",instance=\"0\"}"), 1);
    assert_int_equal(stat_value("tlsgate_qat_inflight{provider=\"qat\",instance=\"0\"}"), 0);
    /* The recycled request serves the next operation: no new pinned memory. */
    size_t live = fu_live();
    job_start(&j, op_new(b, keys[K_RSA2048], "SHA256", TG_RSA_PAD_PSS));
    assert_int_equal(fu_live(), live);
    world_run(&w, &j, 1, 5.0);
    assert_int_equal(j.ret, TG_OK);
    assert_true(sig_ok(j.op));
    job_free(&j);
    world_free(&w);
    tg_keyprov_binding_free(b);
}

static void test_drain(void **state)
{
    (void)state;
    NEED_FAKE();
    setenv("FAKE_QAT_LATENCY_US", "30000", 1);
    struct tg_conf_keyprov c;
    conf_init(&c, false);
    add_param(&c, "timeout", "30s");
    struct tg_keyprov_binding *b = bind_ok(&c, keys[K_RSA2048]);
    struct world w;
    world_init(&w, 0);
    struct job jobs[3];
    for (int i = 0; i < 3; i++)
        job_start(&jobs[i], op_new(b, keys[K_RSA2048], "SHA256", TG_RSA_PAD_PKCS1));
    /* Shutdown: drain waits for the device (30 ms < timeout), not software. */
    tg_keyprov_set_drain(w.set);
    assert_int_equal(tg_keyprov_set_pending(w.set), 0);
    for (int i = 0; i < 3; i++) {
        assert_true(jobs[i].woken);
        jobs[i].woken = false;
        job_step(&jobs[i]);
        assert_true(jobs[i].finished);
        assert_int_equal(jobs[i].ret, TG_OK);
        assert_false(jobs[i].op->fell_back);
        assert_true(sig_ok(jobs[i].op));
        job_free(&jobs[i]);
    }
    assert_int_equal(fq_inflight(), 0);
    world_free(&w);
    tg_keyprov_binding_free(b);
    tg_keyprov_shutdown();

    /* A dead device: drain finishes in software at the deadline and keeps
     * the requests the device never returned until qatlib stops. */
    setenv("FAKE_QAT_DIE_AFTER", "1", 1);
    conf_init(&c, false);
    add_param(&c, "timeout", "15ms");
    b = bind_ok(&c, keys[K_RSA2048]);
    world_init(&w, 0);
    job_start(&jobs[0], op_new(b, keys[K_RSA2048], "SHA256", TG_RSA_PAD_PKCS1));
    job_start(&jobs[1], op_new(b, keys[K_RSA2048], "SHA256", TG_RSA_PAD_PKCS1));
    assert_true(jobs[1].finished); /* the device died at the second submit */
    uint64_t t0 = tg_now_ns();
    tg_keyprov_set_drain(w.set);
    assert_true(tg_now_ns() - t0 < 2 * TG_NS_PER_S);
    assert_true(jobs[0].woken);
    jobs[0].woken = false;
    job_step(&jobs[0]);
    assert_true(jobs[0].finished);
    assert_int_equal(jobs[0].ret, TG_OK);
    assert_true(jobs[0].op->fell_back);
    for (int i = 0; i < 2; i++) {
        assert_true(sig_ok(jobs[i].op));
        job_free(&jobs[i]);
    }
    world_free(&w); /* the never-returned request becomes an orphan */
    tg_keyprov_binding_free(b);
}

static void test_instances_spread(void **state)
{
    (void)state;
    NEED_FAKE();
    setenv("FAKE_QAT_INSTANCES", "2", 1);
    struct tg_conf_keyprov c;
    conf_init(&c, false);
    struct tg_keyprov_binding *b = bind_ok(&c, keys[K_P256]);
    struct world w[3];
    for (int i = 0; i < 3; i++)
        world_init(&w[i], i);
    for (int i = 0; i < 3; i++) {
        struct job j;
        tg_keyprov_set_current(w[i].set);
        job_start(&j, op_new(b, keys[K_P256], "SHA256", 0));
        world_run(&w[i], &j, 1, 5.0);
        assert_int_equal(j.ret, TG_OK);
        assert_true(sig_ok(j.op));
        job_free(&j);
    }
    /* Workers 0 and 2 on instance 0, worker 1 on instance 1. */
    assert_int_equal(
        stat_value("tlsgate_qat_requests_submitted_total{provider=\"qat\",instance=\"0\"}"), 2);
    assert_int_equal(
        stat_value("tlsgate_qat_requests_submitted_total{provider=\"qat\",instance=\"1\"}"), 1);
    for (int i = 0; i < 3; i++)
        world_free(&w[i]);
    /* Counters of workers that ended are kept. */
    assert_int_equal(
        stat_value("tlsgate_qat_requests_submitted_total{provider=\"qat\",instance=\"0\"}"), 2);
    tg_keyprov_binding_free(b);
}

/* Two worker threads sharing one instance: a poll on one thread returns the
 * other's requests, which must travel through its inbox. */
struct thread_arg {
    const struct tg_keyprov_binding *b;
    int worker_id;
    int ok;
};

#define SHARED_OPS 40

static void *shared_worker(void *arg)
{
    struct thread_arg *a = arg;
    struct world w;
    w.loop = ev_loop_new(EVBACKEND_EPOLL);
    if (tg_keyprov_set_new(w.loop, a->worker_id, NULL, &w.set) != TG_OK)
        return NULL;
    ev_timer_init(&w.guard, guard_cb, 0.0, 0.0);
    tg_keyprov_set_current(w.set);
    static const int kinds[] = {K_RSA2048, K_P256};
    struct job jobs[8];
    for (int round = 0; round < SHARED_OPS / 8; round++) {
        for (int i = 0; i < 8; i++) {
            int k = kinds[i % 2];
            job_start(&jobs[i], op_new(a->b, keys[k], "SHA256", TG_RSA_PAD_PSS));
        }
        uint64_t end = tg_now_ns() + 10 * TG_NS_PER_S;
        while (!all_done(jobs, 8) && tg_now_ns() < end)
            world_turn(&w, jobs, 8);
        for (int i = 0; i < 8; i++) {
            a->ok += jobs[i].finished && jobs[i].ret == TG_OK && sig_ok(jobs[i].op) &&
                     !jobs[i].op->fell_back;
            if (jobs[i].finished)
                job_free(&jobs[i]);
        }
    }
    ev_timer_stop(w.loop, &w.guard);
    tg_keyprov_set_free(w.set);
    ev_loop_destroy(w.loop);
    return NULL;
}

static void test_shared_instance_threads(void **state)
{
    (void)state;
    NEED_FAKE();
    /* valgrind loses track of a thread's stack (and the glibc thread block
     * at its top) once the thread runs OpenSSL ASYNC fibres, and reports
     * every later access, pthread_join included (a known false positive of
     * swapcontext off the main thread). ASan runs this test. */
    if (UNDER_VALGRIND())
        skip();
    setenv("FAKE_QAT_INSTANCES", "1", 1);
    setenv("FAKE_QAT_LATENCY_US", "200", 1);
    struct tg_conf_keyprov c;
    conf_init(&c, false);
    struct tg_keyprov_binding *b = bind_ok(&c, keys[K_RSA2048]);
    conf_init(&c, false);
    struct tg_keyprov_binding *be = bind_ok(&c, keys[K_P256]);
    (void)be; /* same provider: one binding serves both key types here */
    struct thread_arg args[2] = {{b, 0, 0}, {b, 1, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, shared_worker, &args[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(args[0].ok, SHARED_OPS);
    assert_int_equal(args[1].ok, SHARED_OPS);
    assert_int_equal(fq_counter("completed"), 2 * SHARED_OPS);
    assert_int_equal(
        stat_value("tlsgate_qat_requests_completed_total{provider=\"qat\",instance=\"0\"}"),
        2 * SHARED_OPS);
    tg_keyprov_binding_free(b);
    tg_keyprov_binding_free(be);
}

static void test_key_cache(void **state)
{
    (void)state;
    NEED_FAKE();
    struct tg_conf_keyprov c;
    conf_init(&c, false);
    struct tg_keyprov_binding *b = bind_ok(&c, keys[K_RSA2048]);
    struct world w;
    world_init(&w, 0);
    size_t base = fu_live(); /* the request pool */
    for (int i = 0; i < 3; i++) {
        struct job j;
        job_start(&j, op_new(b, keys[K_RSA2048], "SHA256", TG_RSA_PAD_PSS));
        world_run(&w, &j, 1, 5.0);
        assert_int_equal(j.ret, TG_OK);
        job_free(&j);
        /* Converted once: one pinned key slab, then reused. */
        assert_int_equal(fu_live(), base + 1);
    }
    struct job j;
    job_start(&j, op_new(b, keys[K_P384], "SHA384", 0));
    world_run(&w, &j, 1, 5.0);
    assert_int_equal(j.ret, TG_OK);
    job_free(&j);
    assert_int_equal(fu_live(), base + 2);
    /* A reload: a key whose configuration is gone is retired; the next miss
     * lets its device copy go (the cache's reference kept its address from
     * being reused meanwhile). */
    EVP_PKEY *ev = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    struct tg_pkey *old = NULL;
    char why[256];
    assert_int_equal(tg_pkey_from_evp(ev, &old, why, sizeof(why)), TG_OK);
    EVP_PKEY_free(ev);
    job_start(&j, op_new(b, old, "SHA256", TG_RSA_PAD_PSS));
    world_run(&w, &j, 1, 5.0);
    job_free(&j);
    assert_int_equal(fu_live(), base + 3);
    tg_pkey_retire(old);
    tg_pkey_unref(old); /* the cache still holds it */
    job_start(&j, op_new(b, keys[K_RSA3072], "SHA256", TG_RSA_PAD_PSS));
    world_run(&w, &j, 1, 5.0);
    assert_int_equal(j.ret, TG_OK);
    job_free(&j);
    assert_int_equal(fu_live(), base + 3); /* one dropped, one converted */
    world_free(&w);
    /* The worker freed its pool and keys, wiped (checked again at teardown). */
    assert_int_equal(fu_live(), 0);
    assert_int_equal(fu_dirty(), 0);
    tg_keyprov_binding_free(b);
}

static void test_no_pinned_memory(void **state)
{
    (void)state;
    NEED_FAKE();
    setenv("FAKE_USDM_LIMIT", "0", 1);
    struct tg_conf_keyprov c;
    conf_init(&c, false);
    struct tg_keyprov_binding *b = bind_ok(&c, keys[K_RSA2048]);
    struct world w;
    world_init(&w, 0);
    struct job j;
    job_start(&j, op_new(b, keys[K_RSA2048], "SHA256", TG_RSA_PAD_PSS));
    assert_true(j.finished); /* software, inline, counted */
    assert_int_equal(j.ret, TG_OK);
    assert_true(j.op->fell_back);
    assert_true(sig_ok(j.op));
    job_free(&j);
    assert_int_equal(FALLBACKS(b, TG_FALLBACK_DEVICE_ERROR), 1);
    world_free(&w);
    tg_keyprov_binding_free(b);
}

/* ---- configuration ---- */

static void expect_config_error(struct tg_conf_keyprov *c, const char *where, const char *what)
{
    char err[1024] = "";
    struct tg_keyprov_binding *b = NULL;
    assert_int_equal(tg_keyprov_bind(c, NULL, &b, err, sizeof(err)), TG_ECONFIG);
    assert_null(b);
    if (strstr(err, where) == NULL || strstr(err, what) == NULL)
        fail_msg("expected '%s' and '%s' in: %s", where, what, err);
}

static void test_config(void **state)
{
    (void)state;
    struct tg_conf_keyprov c;
    conf_init(&c, true);
    add_param(&c, "timeout", "soon");
    expect_config_error(&c, "gw.yaml:9:20: ", "typed_config.timeout: invalid duration");
    conf_init(&c, true);
    add_param(&c, "timeout", "500us");
    expect_config_error(&c, "gw.yaml:9:20: ", "between 1ms and 60s");
    conf_init(&c, true);
    add_param(&c, "verify", "maybe");
    expect_config_error(&c, "typed_config.verify", "true or false");
    conf_init(&c, true);
    add_param(&c, "key_exchange", "true");
    expect_config_error(&c, "typed_config.key_exchange", "does not do key exchange");
    conf_init(&c, true);
    add_param(&c, "section", "bad name!");
    expect_config_error(&c, "typed_config.section", "invalid qatlib section name");
    conf_init(&c, true);
    add_seq(&c, "spill", "software", "deferred");
    expect_config_error(&c, "gw.yaml:10:20: ", "'software' must be last");
    conf_init(&c, true);
    add_seq(&c, "spill", "deferred", "deferred");
    expect_config_error(&c, "typed_config.spill", "listed twice");
    conf_init(&c, true);
    add_seq(&c, "spill", "qat", NULL);
    expect_config_error(&c, "gw.yaml:10:20: ", "spill target 'qat' is this provider");
    /* Targets come from the provider registry: an unknown name is refused
     * at its place in the file, with the names that would do. */
    conf_init(&c, true);
    add_seq(&c, "spill", "nosuch", "software");
    expect_config_error(&c, "gw.yaml:10:20: ",
                        "private_key_provider.typed_config.spill: unknown spill target 'nosuch' "
                        "(expected software, deferred");
    conf_init(&c, true);
    add_param(&c, "spill", "qat-ish");
    expect_config_error(&c, "gw.yaml:9:20: ", "unknown spill target 'qat-ish'");
    conf_init(&c, true);
    add_seq(&c, "spill", "Software", NULL); /* names are exact */
    expect_config_error(&c, "typed_config.spill", "unknown spill target 'Software'");
    conf_init(&c, true);
    add_seq(&c, "spill", NULL, NULL);
    expect_config_error(&c, "typed_config.spill", "expected a list");
    conf_init(&c, true);
    add_param(&c, "colour", "blue");
    expect_config_error(&c, "gw.yaml:9:13: ", "unknown key 'colour' for provider 'qat'");

    /* Valid: every key, spill as a scalar too. */
    conf_init(&c, true);
    add_param(&c, "timeout", "250ms");
    add_param(&c, "verify", "false");
    add_param(&c, "key_exchange", "false");
    add_param(&c, "section", "SHIM_1");
    add_param(&c, "spill", "software");
    struct tg_keyprov_binding *b = bind_ok(&c, NULL);
    assert_false(b->kx);
    tg_keyprov_binding_free(b);
    /* Any registered provider but qat, software implied or last. */
    conf_init(&c, true);
    add_seq(&c, "spill", "deferred", NULL);
    b = bind_ok(&c, NULL);
    tg_keyprov_binding_free(b);
    conf_init(&c, true);
    add_seq(&c, "spill", "deferred", "software");
    b = bind_ok(&c, NULL);
    tg_keyprov_binding_free(b);
    /* Another certificate may not pick another qatlib section (once qatlib
     * runs with the first one). */
    if (have_fake) {
        conf_init(&c, true);
        add_param(&c, "section", "OTHER");
        expect_config_error(&c, "typed_config.section", "differs from the one another certificate");
    }
    tg_keyprov_shutdown();
}

static void test_verify_off_and_stats_doctor(void **state)
{
    (void)state;
    NEED_FAKE();
    struct tg_conf_keyprov c;
    conf_init(&c, false);
    add_param(&c, "verify", "false");
    add_param(&c, "section", "SSL");
    struct tg_keyprov_binding *b = bind_ok(&c, keys[K_RSA3072]);
    struct world w;
    world_init(&w, 0);
    struct job j;
    job_start(&j, op_new(b, keys[K_RSA3072], "SHA256", TG_RSA_PAD_PSS));
    world_run(&w, &j, 1, 5.0);
    assert_int_equal(j.ret, TG_OK);
    assert_true(sig_ok(j.op));
    job_free(&j);
    struct tg_buf out = TG_BUF_INIT;
    tg_keyprov_render_stats(&out);
    static const char *const want[] = {
        "# TYPE tlsgate_qat_requests_submitted_total counter",
        "tlsgate_qat_instance_info{provider=\"qat\",instance=\"1\",name=\"SSL_CY1\"} 1",
        "tlsgate_qat_polls_total{provider=\"qat\",instance=\"0\"} ",
        "tlsgate_qat_latency_seconds_count{provider=\"qat\",instance=\"0\"} 1",
        "tlsgate_qat_inflight{provider=\"qat\",instance=\"0\"} 0",
        "tlsgate_keyprov_operations_total{provider=\"qat\",type=\"rsa_sign\"} ",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(want); i++) {
        if (strstr(out.data, want[i]) == NULL)
            fail_msg("/stats lacks: %s\n%s", want[i], out.data);
    }
    tg_buf_free(&out);
    out = (struct tg_buf)TG_BUF_INIT;
    const struct tg_keyprov_ops *qat = tg_keyprov_find("qat");
    assert_non_null(qat);
    struct tg_buf json = TG_BUF_INIT;
    qat->doctor(&out, &json);
    assert_non_null(strstr(out.data, "fakes/libqat.so.4"));
    assert_non_null(strstr(out.data, "icp_sal_userStart(\"SSL\") CPA_STATUS_SUCCESS\n"));
    assert_non_null(strstr(out.data, "crypto instances         2 seen, 2 started\n"));
    assert_non_null(strstr(out.data, "  instance 1             SSL_CY1 ("));
    assert_non_null(strstr(out.data, "verdict                  usable (2 instance(s); RSA "
                                     "2048/3072/4096, ECDSA P-256/P-384)\n"));
    assert_non_null(strstr(json.data, "\"headers\":true,\"library\":\""));
    assert_non_null(strstr(json.data, "\"start_status\":\"CPA_STATUS_SUCCESS\""));
    assert_non_null(strstr(json.data, "\"instances_seen\":2,\"instances_started\":2,"));
    assert_non_null(strstr(json.data, "{\"index\":1,\"name\":\"SSL_CY1\","));
    assert_non_null(strstr(json.data, "\"usable\":true,\"verdict\":\"usable (2 instance(s)"));
    tg_buf_free(&json);
    tg_buf_free(&out);
    world_free(&w);
    tg_keyprov_binding_free(b);
}

static int group_setup(void **state)
{
    (void)state;
    fake_open();
    for (int i = 0; i < K_COUNT; i++) {
        char *cert = NULL, *pem = NULL, why[256];
        tg_test_make_cert(key_algs[i], "a.test", &cert, &pem);
        int rc = tg_pkey_load_pem(pem, strlen(pem), &keys[i], why, sizeof(why));
        free(cert);
        free(pem);
        if (rc != TG_OK) {
            fprintf(stderr, "%s: %s\n", key_algs[i], why);
            return -1;
        }
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < K_COUNT; i++)
        tg_pkey_unref(keys[i]);
    tg_keyprov_shutdown(); /* also frees this thread's software contexts */
    return 0;
}

int main(void)
{
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider, &tg_deferred_provider,
                               TG_TEST_CRYPTOMB & tg_qat_provider);
#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)
    const struct CMUnitTest tests[] = {
        T(test_no_device),        T(test_start_failure),
        T(test_no_instances),     T(test_no_library),
        T(test_unsupported_keys), T(test_rsa_signatures),
        T(test_ecdsa_signatures), T(test_completion_only_on_poll),
        T(test_timer_latency),    T(test_ring_full_spill),
        T(test_device_errors),    T(test_device_dies),
        T(test_late_completion),  T(test_drain),
        T(test_instances_spread), T(test_shared_instance_threads),
        T(test_key_cache),        T(test_no_pinned_memory),
        T(test_config),           T(test_verify_off_and_stats_doctor),
    };
#undef T
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
