/*
 * The qat provider's result check (typed_config `verify`) against the fake
 * qatlib (src/providers/qat/tests/fake_qat.c), loaded through the shim from
 * $TG_BUILD_DIR/fakes.
 *
 * A device fault is modelled where it would show: between the device and
 * tlsgate. The test installs (tg_qat_install) a copy of the fake's function
 * table whose cpaCyEcdsaSignRS hands qatlib a callback of its own; that
 * callback flips one bit of s in the request's pinned result buffer, with
 * the status still CPA_STATUS_SUCCESS, before tlsgate's callback sees it.
 *
 * Operations run the production way: tg_keyop_run() inside an OpenSSL ASYNC
 * job, completed from polls of the worker's loop; every signature is
 * checked with OpenSSL here.
 */
#include <dlfcn.h>
#include <ev.h>
#include <openssl/async.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/tg_config.h"
#include "core/tg_time.h"
#include "keyprov/tg_keyprov.h"
#include "providers/deferred/tg_deferred.h"
#include "providers/qat/tg_qat.h"
#include "providers/software/tg_software.h"
#include "providers/qat/tg_qat_internal.h"
#include "providers/qat/tg_qat_lib.h"
#include "tg_test_util.h"

static char fakes_dir[600];
static bool have_fake;
static size_t (*fu_live)(void);

#define NEED_FAKE()                                                                                \
    do {                                                                                           \
        if (!have_fake)                                                                            \
            skip();                                                                                \
    } while (0)

static void fake_find(void)
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
    char u[700];
    snprintf(u, sizeof(u), "%s/libusdm.so.0", fakes_dir);
    void *hu = dlopen(u, RTLD_NOW | RTLD_LOCAL);
    if (!tg_qat_have_headers() || hu == NULL)
        return;
    void *p = dlsym(hu, "fake_usdm_live");
    if (p == NULL)
        return;
    memcpy(&fu_live, &p, sizeof(p));
    have_fake = true;
}

/* ---- the faulty device: the fake behind a corrupting callback ---- */

static struct tg_qat_api faulty;
static CpaCyEcdsaSignRSCbFunc tlsgate_cb;
static __typeof__(&cpaCyEcdsaSignRS) fake_sign;
static unsigned corrupted; /* signatures corrupted so far */
static bool corrupt_on;

static void corrupting_cb(void *tag, CpaStatus status, void *opdata, CpaBoolean mult,
                          CpaFlatBuffer *pr, CpaFlatBuffer *ps)
{
    if (corrupt_on && status == CPA_STATUS_SUCCESS && mult == CPA_TRUE) {
        ps->pData[ps->dataLenInBytes / 2] ^= 0x10;
        corrupted++;
    }
    tlsgate_cb(tag, status, opdata, mult, pr, ps);
}

static CpaStatus faulty_sign(const CpaInstanceHandle inst, const CpaCyEcdsaSignRSCbFunc cb,
                             void *tag, const CpaCyEcdsaSignRSOpData *od, CpaBoolean *sign_status,
                             CpaFlatBuffer *r, CpaFlatBuffer *s)
{
    tlsgate_cb = cb;
    return fake_sign(inst, corrupting_cb, tag, od, sign_status, r, s);
}

/* qat start-ups from now on use the fake through the corrupting table. */
static void install_faulty(void)
{
    const struct tg_qat_api *api = NULL;
    char why[512];
    tg_qat_install(NULL);
    tg_qat_unload();
    assert_int_equal(tg_qat_load(&api, why, sizeof(why)), TG_OK);
    faulty = *api;
    fake_sign = api->cpaCyEcdsaSignRS;
    assert_non_null(fake_sign);
    faulty.cpaCyEcdsaSignRS = faulty_sign;
    tg_qat_install(&faulty);
    corrupted = 0;
    corrupt_on = true;
}

/* ---- keys, bindings, jobs ---- */

enum { K_P256, K_P384, K_COUNT };
static const char *const key_algs[K_COUNT] = {"EC:P-256", "EC:P-384"};
static struct tg_pkey *keys[K_COUNT];
static struct tg_conf_param params[4];

static struct tg_keyprov_binding *bind_qat(const struct tg_pkey *k, const char *verify)
{
    struct tg_conf_keyprov c;
    memset(&c, 0, sizeof(c));
    memset(params, 0, sizeof(params));
    c.provider_name = (char *)"qat";
    c.poll_delay_ns = TG_NS_PER_MS;
    c.path = (char *)"t.private_key_provider";
    c.typed_config.path = (char *)"t.private_key_provider.typed_config";
    c.typed_config.v = params;
    c.mark = (struct tg_conf_mark){"t.yaml", 3, 5};
    /* A long timeout: a slow run must not turn into timeout fallbacks. */
    params[c.typed_config.n++] = (struct tg_conf_param){.key = (char *)"timeout", .value = "30s"};
    if (verify != NULL)
        params[c.typed_config.n++] =
            (struct tg_conf_param){.key = (char *)"verify", .value = (char *)verify};
    char err[512] = "";
    struct tg_keyprov_binding *b = NULL;
    int rc = tg_keyprov_bind(&c, k, &b, err, sizeof(err));
    if (rc != TG_OK)
        fail_msg("bind: %s", err);
    assert_string_equal(b->ops->name, "qat");
    return b;
}

struct job {
    ASYNC_JOB *job;
    ASYNC_WAIT_CTX *wctx;
    struct tg_keyop op;
    int ret;
    bool woken, finished;
};

static int job_fn(void *arg)
{
    struct job *j = *(struct job **)arg;
    j->ret = tg_keyop_run(&j->op);
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

/* Start an ECDSA signature of SHA-256("tlsgate") with key k on binding b. */
static void job_start(struct job *j, const struct tg_keyprov_binding *b, struct tg_pkey *k)
{
    memset(j, 0, sizeof(*j));
    tg_keyop_init(&j->op, TG_KEYOP_ECDSA_SIGN);
    j->op.pkey = k;
    j->op.binding = b;
    unsigned int dl = 0;
    assert_int_equal(EVP_Digest("tlsgate", 7, j->op.in, &dl, EVP_sha256(), NULL), 1);
    j->op.inlen = dl;
    j->wctx = ASYNC_WAIT_CTX_new();
    assert_int_equal(ASYNC_WAIT_CTX_set_callback(j->wctx, job_wake, j), 1);
    job_step(j);
}

/* Run the worker's loop (flushes included) until every job ended; bounded. */
static void run_until_done(struct ev_loop *loop, struct tg_keyprov_set *set, struct job *jobs,
                           size_t n)
{
    uint64_t end = tg_now_ns() + 30 * TG_NS_PER_S;
    for (;;) {
        size_t done = 0;
        for (size_t i = 0; i < n; i++) {
            if (!jobs[i].finished && jobs[i].woken) {
                jobs[i].woken = false;
                job_step(&jobs[i]);
            }
            done += jobs[i].finished;
        }
        if (done == n || tg_now_ns() > end)
            break;
        ev_run(loop, EVRUN_NOWAIT);
        tg_keyprov_set_flush(set);
        usleep(200);
    }
    for (size_t i = 0; i < n; i++)
        assert_true(jobs[i].finished);
}

/* OpenSSL's verdict on the op's signature. */
static bool sig_ok(const struct tg_keyop *op)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, op->pkey->pub, NULL);
    bool ok = ctx != NULL && EVP_PKEY_verify_init(ctx) > 0 &&
              EVP_PKEY_verify(ctx, op->out, op->outlen, op->in, op->inlen) == 1;
    EVP_PKEY_CTX_free(ctx);
    return ok;
}

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

/*
 * Three ECDSA signatures on a device that corrupts every result. verify
 * (the default, or "true"): each is caught, finished in software, counted
 * as a fault_check fallback and a failed verify stage; every signature the
 * handshake gets is right. verify: false: the corrupted signatures go out,
 * proving nothing else checks them.
 */
static void faulty_device_case(int key, const char *verify)
{
    static const char fallbacks[] =
        "tlsgate_keyprov_fallbacks_total{provider=\"qat\",reason=\"fault_check\"}";
    static const char failed[] =
        "tlsgate_qat_requests_failed_total{provider=\"qat\",instance=\"0\",stage=\"verify\"}";
    bool check = verify == NULL || strcmp(verify, "true") == 0;
    install_faulty();
    struct tg_keyprov_binding *b = bind_qat(keys[key], verify);
    struct ev_loop *loop = ev_loop_new(EVBACKEND_EPOLL);
    struct tg_keyprov_set *set = NULL;
    assert_int_equal(tg_keyprov_set_new(loop, 0, NULL, &set), TG_OK);
    tg_keyprov_set_current(set);
    long long fallbacks0 = stat_value(fallbacks), failed0 = stat_value(failed); /* earlier runs' */
    struct job jobs[3];
    for (size_t i = 0; i < 3; i++) {
        job_start(&jobs[i], b, keys[key]);
        assert_false(jobs[i].finished); /* on the device */
    }
    run_until_done(loop, set, jobs, 3);
    assert_int_equal(corrupted, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(jobs[i].ret, TG_OK);
        assert_true(jobs[i].op.fell_back == check);
        assert_true(sig_ok(&jobs[i].op) == check);
    }
    assert_int_equal(stat_value(fallbacks) - fallbacks0, check ? 3 : 0);
    assert_int_equal(stat_value(failed) - failed0, check ? 3 : 0);
    assert_int_equal(
        stat_value("tlsgate_qat_requests_failed_total{provider=\"qat\",instance=\"0\",stage="
                   "\"verify\"}"),
        check ? 3 : 0);
    tg_keyprov_set_free(set);
    tg_keyprov_set_current(NULL);
    ev_loop_destroy(loop);
    tg_keyprov_binding_free(b);
    tg_keyprov_shutdown();
}

static void test_ecdsa_fault_caught(void **state)
{
    (void)state;
    NEED_FAKE();
    faulty_device_case(K_P256, NULL);
    faulty_device_case(K_P384, "true");
}

static void test_ecdsa_verify_off(void **state)
{
    (void)state;
    NEED_FAKE();
    faulty_device_case(K_P256, "false");
}

/* A healthy device: checked, nothing falls back. */
static void test_ecdsa_healthy(void **state)
{
    (void)state;
    NEED_FAKE();
    install_faulty();
    corrupt_on = false;
    struct tg_keyprov_binding *b = bind_qat(keys[K_P384], NULL);
    struct ev_loop *loop = ev_loop_new(EVBACKEND_EPOLL);
    struct tg_keyprov_set *set = NULL;
    assert_int_equal(tg_keyprov_set_new(loop, 0, NULL, &set), TG_OK);
    tg_keyprov_set_current(set);
    static const char fallbacks[] =
        "tlsgate_keyprov_fallbacks_total{provider=\"qat\",reason=\"fault_check\"}";
    long long fallbacks0 = stat_value(fallbacks);
    struct job jobs[4];
    for (size_t i = 0; i < 4; i++)
        job_start(&jobs[i], b, keys[K_P384]);
    run_until_done(loop, set, jobs, 4);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(jobs[i].ret, TG_OK);
        assert_false(jobs[i].op.fell_back);
        assert_true(sig_ok(&jobs[i].op));
    }
    assert_int_equal(stat_value(fallbacks) - fallbacks0, 0);
    tg_keyprov_set_free(set);
    tg_keyprov_set_current(NULL);
    ev_loop_destroy(loop);
    tg_keyprov_binding_free(b);
    tg_keyprov_shutdown();
}

static int test_setup(void **state)
{
    (void)state;
    static const char *const fake_env[] = {"FAKE_QAT_LATENCY_US",
                                           "FAKE_QAT_CAPACITY",
                                           "FAKE_QAT_FAIL_EVERY",
                                           "FAKE_QAT_DIE_AFTER",
                                           "FAKE_QAT_NO_ECDSA",
                                           "FAKE_QAT_INSTANCES",
                                           NULL};
    for (int i = 0; fake_env[i] != NULL; i++)
        unsetenv(fake_env[i]);
    if (have_fake)
        setenv("TG_QAT_LIB_DIR", fakes_dir, 1);
    return 0;
}

static int test_teardown(void **state)
{
    (void)state;
    tg_keyprov_set_current(NULL);
    tg_keyprov_shutdown();
    tg_qat_install(NULL);
    if (have_fake)
        assert_int_equal(fu_live(), 0); /* every pinned buffer came back */
    return 0;
}

static int group_setup(void **state)
{
    (void)state;
    fake_find();
    for (int i = 0; i < K_COUNT; i++) {
        char *cert = NULL, *pem = NULL, why[256];
        tg_test_make_cert(key_algs[i], "a.test", &cert, &pem);
        int rc = tg_pkey_load_pem(pem, strlen(pem), &keys[i], why, sizeof(why));
        free(cert);
        free(pem);
        if (rc != TG_OK)
            return -1;
    }
    return ASYNC_init_thread(0, 0) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < K_COUNT; i++)
        tg_pkey_unref(keys[i]);
    tg_keyprov_shutdown();
    ASYNC_cleanup_thread();
    return 0;
}

int main(void)
{
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider, &tg_deferred_provider, &tg_qat_provider);
#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)
    const struct CMUnitTest tests[] = {
        T(test_ecdsa_fault_caught),
        T(test_ecdsa_verify_off),
        T(test_ecdsa_healthy),
    };
#undef T
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
