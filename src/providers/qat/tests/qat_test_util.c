/*
 * Helpers shared by the qat provider's tests against the fake qatlib
 * (test_qat.c, test_qat_ops.c): qat_test_util.h describes them.
 */
#include <dlfcn.h>
#include <ev.h>
#include <openssl/async.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config/tg_config.h"
#include "core/tg_time.h"
#include "keyprov/tg_keyprov.h"
#include "providers/qat/tg_qat_lib.h"
#include "qat_test_util.h"

/* ---- the fake's side channel ---- */

uint64_t (*fq_counter)(const char *);
unsigned (*fq_inflight)(void);
void (*fq_reset)(void);
size_t (*fu_live)(void);
size_t (*fu_dirty)(void);
static char fakes_dir[600];
bool have_fake;

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

const char *const key_algs[K_COUNT] = {"RSA:2048", "RSA:3072", "RSA:4096", "RSA:2560",
                                       "EC:P-256", "EC:P-384", "EC:P-521"};
struct tg_pkey *keys[K_COUNT];

/* ---- config ---- */

static struct tg_conf_param params[8];
static char *seq_items[8];

void conf_init(struct tg_conf_keyprov *c, bool fallback)
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

void add_param(struct tg_conf_keyprov *c, const char *k, const char *v)
{
    struct tg_conf_param *p = &params[c->typed_config.n++];
    p->key = (char *)k;
    p->value = (char *)v;
    p->mark = (struct tg_conf_mark){"gw.yaml", 9, 13};
    p->value_mark = (struct tg_conf_mark){"gw.yaml", 9, 20};
}

void add_seq(struct tg_conf_keyprov *c, const char *k, const char *a, const char *b)
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
struct tg_keyprov_binding *bind_ok(struct tg_conf_keyprov *c, const struct tg_pkey *k)
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

void job_step(struct job *j)
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
struct tg_keyop *op_new(const struct tg_keyprov_binding *b, struct tg_pkey *k, const char *md,
                        int pad)
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

void job_start(struct job *j, struct tg_keyop *op)
{
    memset(j, 0, sizeof(*j));
    j->op = op;
    j->wctx = ASYNC_WAIT_CTX_new();
    assert_non_null(j->wctx);
    assert_int_equal(ASYNC_WAIT_CTX_set_callback(j->wctx, job_wake, j), 1);
    job_step(j);
}

void job_free(struct job *j)
{
    free(j->op);
    j->op = NULL;
}

/* OpenSSL's verdict on the op's signature. */
bool sig_ok(const struct tg_keyop *op)
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

void guard_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

void world_init(struct world *w, int worker_id)
{
    w->loop = ev_loop_new(EVBACKEND_EPOLL);
    assert_non_null(w->loop);
    assert_int_equal(tg_keyprov_set_new(w->loop, worker_id, NULL, &w->set), TG_OK);
    ev_timer_init(&w->guard, guard_cb, 0.0, 0.0);
    tg_keyprov_set_current(w->set);
}

void world_free(struct world *w)
{
    tg_keyprov_set_current(w->set);
    ev_timer_stop(w->loop, &w->guard);
    tg_keyprov_set_free(w->set);
    ev_loop_destroy(w->loop);
}

/* Wait for one event (timers, the provider's timerfd, at most 50 ms), no
 * flush: only what the provider's own watchers do happens. */
void loop_once(struct world *w)
{
    ev_timer_stop(w->loop, &w->guard);
    ev_timer_set(&w->guard, 0.05, 0.0);
    ev_timer_start(w->loop, &w->guard);
    ev_run(w->loop, EVRUN_ONCE);
}

/* One turn of a worker: wait for an event (at most 5 ms), flush the
 * providers ("about to block"), resume the jobs that were woken. */
void world_turn(struct world *w, struct job *jobs, size_t n)
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

bool all_done(const struct job *jobs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!jobs[i].finished)
            return false;
    }
    return true;
}

void world_run(struct world *w, struct job *jobs, size_t n, double max_s)
{
    uint64_t end = tg_now_ns() + (uint64_t)(max_s * 1e9);
    while (!all_done(jobs, n) && tg_now_ns() < end)
        world_turn(w, jobs, n);
    assert_true(all_done(jobs, n));
}

void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

uint64_t kp_stat(const struct tg_keyprov_binding *b, size_t off, int idx)
{
    const struct tg_keyprov_stats *s = tg_keyprov_current_stats(b);
    return tg_ctr_get((const tg_ctr *)((const char *)s + off) + idx);
}

/* The value of one /stats series (exact label set), or -1. */
long long stat_value(const char *series)
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

int test_setup(void **state)
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

int test_teardown(void **state)
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

/* ---- per-group set-up ---- */

int group_setup(void **state)
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

int group_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < K_COUNT; i++)
        tg_pkey_unref(keys[i]);
    tg_keyprov_shutdown(); /* also frees this thread's software contexts */
    return 0;
}
