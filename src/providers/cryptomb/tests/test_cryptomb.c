/*
 * The cryptomb provider's policy: inline when alone, batches with company,
 * full batches, forced partial batches, the cost model's say, runtime
 * fallback per lane (lane error, fault check), the ephemeral key pool, drain,
 * availability and fallback at start-up, typed_config validation; its
 * doctor report (text and JSON, no log lines) and its start-up log line.
 * Operations run inside real ASYNC jobs, as libssl runs them. The arithmetic
 * is crypto_mb's when the real library loads here, else the scalar fake's
 * (tests/tg_mbx_fake.c).
 *
 * No decision here depends on timing: every test runs with a pinned cost
 * model (pin_costs), never with what the start-up calibration measured.
 */
#include <ev.h>
#include <fcntl.h>
#include <openssl/async.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/tg_log.h"
#include "keyprov/tg_keyprov.h"
#include "providers/cryptomb/tg_cmb_calib.h"
#include "providers/cryptomb/tg_cryptomb.h"
#include "providers/cryptomb/tg_mbx.h"
#include "providers/deferred/tg_deferred.h"
#include "providers/software/tg_software.h"
#include "tg_cmb_test_job.h"
#include "tg_mbx_fake.h"
#include "tg_test_util.h"

#define NJOBS 12

static struct ev_loop *g_loop;
static struct tg_keyprov_set *g_set;
static size_t g_handshaking;
static struct tg_pkey *g_rsa, *g_ec;

static void resume_woken(struct tg_test_job *jobs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!jobs[i].done && jobs[i].woken) {
            jobs[i].woken = false;
            tg_test_job_step(&jobs[i]);
        }
    }
}

static void rsa_op(struct tg_test_job *j, const struct tg_keyprov_binding *b)
{
    memset(j, 0, sizeof(*j));
    tg_keyop_init(&j->op, TG_KEYOP_RSA_SIGN);
    j->op.pkey = g_rsa;
    j->op.binding = b;
    j->op.md = EVP_sha256();
    j->op.rsa_padding = TG_RSA_PAD_PSS;
    j->op.pss_saltlen = 32;
    for (int i = 0; i < 32; i++)
        j->op.in[i] = (unsigned char)(i * 7 + (int)(size_t)j);
    j->op.inlen = 32;
}

static void check_rsa(const struct tg_test_job *j)
{
    assert_true(j->done);
    assert_int_equal(j->ret, TG_OK);
    EVP_PKEY_CTX *v = EVP_PKEY_CTX_new_from_pkey(NULL, g_rsa->pub, NULL);
    assert_non_null(v);
    assert_int_equal(EVP_PKEY_verify_init(v), 1);
    EVP_PKEY_CTX_set_rsa_padding(v, RSA_PKCS1_PSS_PADDING);
    EVP_PKEY_CTX_set_signature_md(v, EVP_sha256());
    EVP_PKEY_CTX_set_rsa_pss_saltlen(v, 32);
    assert_int_equal(EVP_PKEY_verify(v, j->op.out, j->op.outlen, j->op.in, j->op.inlen), 1);
    EVP_PKEY_CTX_free(v);
}

static bool real_library;

static struct tg_keyprov_binding *bind_cmb(const char *k1, const char *v1, bool fallback, int *rc,
                                           char *err, size_t errlen)
{
    static struct tg_conf_param p[2];
    struct tg_conf_keyprov c;
    memset(&c, 0, sizeof(c));
    memset(p, 0, sizeof(p));
    c.provider_name = (char *)"cryptomb";
    c.fallback = fallback;
    c.poll_delay_ns = 50 * 1000000ULL; /* long: tests decide when flushes happen */
    c.path = (char *)"t.private_key_provider";
    c.mark = (struct tg_conf_mark){"t.yaml", 3, 5};
    c.typed_config.path = (char *)"t.private_key_provider.typed_config";
    if (k1 != NULL) {
        p[0].key = (char *)k1;
        p[0].value = (char *)v1;
        p[0].value_mark = (struct tg_conf_mark){"t.yaml", 4, 20};
        c.typed_config.v = p;
        c.typed_config.n = 1;
    }
    struct tg_keyprov_binding *b = NULL;
    *rc = tg_keyprov_bind(&c, g_rsa, &b, err, errlen);
    return b;
}

/* The cost model of every test: one mb8 call costs `batch` us whatever its
 * fill, one OpenSSL operation `scalar` us, for every kind. The default, 500
 * vs 300, batches from 2 operations. */
static void pin_costs(double scalar, double batch)
{
    struct tg_cmb_calib c;
    memset(&c, 0, sizeof(c));
    for (int k = 0; k < TG_CMB_KIND_COUNT; k++)
        tg_cmb_calib_set(&c, (enum tg_cmb_kind)k, scalar, batch, batch);
    tg_cmb_calib_pin(&c);
}

static void pin_default_costs(void)
{
    pin_costs(300, 500);
    assert_int_equal(tg_cmb_calib_batch_from(TG_CMB_KIND_RSA2048), 2);
}

/* Log lines go to a file while capturing; returns what was logged. */
static int g_log_fd = -1;
static void log_capture(enum tg_log_level level)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/log-XXXXXX", tg_test_tmpdir());
    g_log_fd = mkstemp(path);
    assert_true(g_log_fd >= 0);
    unlink(path);
    tg_log_set_level(level);
    tg_log_set_fd(g_log_fd);
}

static char *log_release(void)
{
    tg_log_set_fd(2);
    tg_log_set_level(TG_LOG_INFO);
    off_t len = lseek(g_log_fd, 0, SEEK_END);
    assert_true(len >= 0);
    char *text = calloc(1, (size_t)len + 1);
    assert_non_null(text);
    assert_int_equal(pread(g_log_fd, text, (size_t)len, 0), len);
    close(g_log_fd);
    g_log_fd = -1;
    return text;
}

static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Fresh provider state with the fake (or the real library) in place. */
static void env_up(bool use_fake)
{
    tg_keyprov_shutdown();
    tg_mbx_fake_reset();
    pin_default_costs();
    if (use_fake) {
        assert_int_equal(tg_mbx_install(tg_mbx_fake_api()), TG_OK);
    } else {
        char why[256];
        real_library = tg_mbx_load(why, sizeof(why)) == TG_OK;
    }
}

static void set_up(void)
{
    g_loop = ev_loop_new(EVFLAG_AUTO);
    assert_int_equal(tg_keyprov_set_new(g_loop, 0, &g_handshaking, &g_set), TG_OK);
    tg_keyprov_set_current(g_set);
}

static void set_down(void)
{
    tg_keyprov_set_free(g_set);
    tg_keyprov_set_current(NULL);
    ev_loop_destroy(g_loop);
    g_set = NULL;
}

static uint64_t stat_of(const char *needle)
{
    struct tg_buf out = TG_BUF_INIT;
    tg_keyprov_render_stats(&out);
    const char *p = strstr(out.data, needle);
    uint64_t v = p ? strtoull(p + strlen(needle), NULL, 10) : UINT64_MAX;
    tg_buf_free(&out);
    return v;
}

static void test_alone_runs_inline(void **state)
{
    (void)state;
    env_up(false);
    if (!real_library)
        skip();
    char err[512];
    int rc;
    struct tg_keyprov_binding *b = bind_cmb(NULL, NULL, false, &rc, err, sizeof(err));
    assert_int_equal(rc, TG_OK);
    set_up();
    g_handshaking = 1; /* only this handshake: no company to wait for */
    struct tg_test_job j;
    rsa_op(&j, b);
    assert_true(tg_test_job_step(&j)); /* finished without a pause */
    check_rsa(&j);
    assert_int_equal(tg_keyprov_set_pending(g_set), 0);
    set_down();
    tg_keyprov_binding_free(b);
}

static void test_company_makes_full_batch(void **state)
{
    (void)state;
    env_up(false);
    if (!real_library)
        skip();
    char err[512];
    int rc;
    struct tg_keyprov_binding *b = bind_cmb(NULL, NULL, false, &rc, err, sizeof(err));
    assert_int_equal(rc, TG_OK);
    set_up();
    g_handshaking = 40;
    struct tg_test_job jobs[8];
    for (int i = 0; i < 8; i++) {
        rsa_op(&jobs[i], b);
        assert_false(tg_test_job_step(&jobs[i])); /* queued, paused */
    }
    assert_int_equal(tg_keyprov_set_pending(g_set), 8);
    tg_keyprov_set_flush(g_set);
    resume_woken(jobs, 8);
    for (int i = 0; i < 8; i++)
        check_rsa(&jobs[i]);
    assert_int_equal(
        stat_of("tlsgate_keyprov_flushes_total{provider=\"cryptomb\",reason=\"full\"} "), 1);
    /* A partial batch below the break-even point waits while company is in
     * flight, and runs when its deadline passes. */
    for (int i = 0; i < 1; i++) {
        rsa_op(&jobs[i], b);
        assert_false(tg_test_job_step(&jobs[i]));
    }
    tg_keyprov_set_flush(g_set);
    assert_int_equal(tg_keyprov_set_pending(g_set), 1);
    g_handshaking = 1; /* the others went away: no more reason to wait */
    tg_keyprov_set_flush(g_set);
    assert_int_equal(tg_keyprov_set_pending(g_set), 0);
    resume_woken(jobs, 1);
    check_rsa(&jobs[0]);
    set_down();
    tg_keyprov_binding_free(b);
}

static void test_forced_partial_batch_and_lane_faults(void **state)
{
    (void)state;
    env_up(true);
    char err[512];
    int rc;
    struct tg_keyprov_binding *b = bind_cmb("partial_batch", "mb", false, &rc, err, sizeof(err));
    if (rc != TG_OK)
        fail_msg("%s", err);
    set_up();
    g_handshaking = 4;
    tg_mbx_fake_fail_lane(TG_MBX_FAKE_RSA_PRIVATE_CRT, 1, 0x1);
    tg_mbx_fake_corrupt_lane(2);
    tg_mbx_fake_skip_lane(TG_MBX_FAKE_RSA_PRIVATE_CRT, 3); /* "OK", never written */
    struct tg_test_job jobs[4];
    for (int i = 0; i < 4; i++) {
        rsa_op(&jobs[i], b);
        assert_false(tg_test_job_step(&jobs[i]));
    }
    unsigned before = tg_mbx_fake_stats()->calls[TG_MBX_FAKE_RSA_PRIVATE_CRT];
    tg_keyprov_set_flush(g_set);
    resume_woken(jobs, 4);
    /* Every signature is right: the failed lane, the unwritten one and the
     * corrupted one were finished in software, each counted with its
     * reason. */
    for (int i = 0; i < 4; i++) {
        check_rsa(&jobs[i]);
        assert_true(jobs[i].op.fell_back == (i > 0));
    }
    assert_int_equal(tg_mbx_fake_stats()->calls[TG_MBX_FAKE_RSA_PRIVATE_CRT] - before, 1);
    assert_int_equal(
        stat_of("tlsgate_keyprov_fallbacks_total{provider=\"cryptomb\",reason=\"lane_error\"} "),
        2);
    assert_int_equal(
        stat_of("tlsgate_keyprov_fallbacks_total{provider=\"cryptomb\",reason=\"fault_check\"} "),
        1);
    set_down();
    tg_keyprov_binding_free(b);
}

static void test_key_pool(void **state)
{
    (void)state;
    env_up(true);
    char err[512];
    int rc;
    struct tg_keyprov_binding *b = bind_cmb("key_pool", "16", false, &rc, err, sizeof(err));
    assert_int_equal(rc, TG_OK);
    set_up();
    g_handshaking = 1;
    struct tg_kxkey k1, k2;
    memset(&k1, 0, sizeof(k1));
    memset(&k2, 0, sizeof(k2));
    k1.group = k2.group = TG_GROUP_X25519;
    struct tg_test_job j;
    memset(&j, 0, sizeof(j));
    tg_keyop_init(&j.op, TG_KEYOP_KX_KEYGEN);
    j.op.kx = &k1;
    j.op.binding = b;
    /* First use: no pool yet; computed at once. */
    assert_true(tg_test_job_step(&j));
    assert_int_equal(j.ret, TG_OK);
    assert_true(k1.has_priv && k1.has_pub);
    /* The loop about to block refills the pool in one mb8 batch. */
    unsigned before = tg_mbx_fake_stats()->calls[TG_MBX_FAKE_X25519_PUBLIC_KEY];
    tg_keyprov_set_flush(g_set);
    assert_int_equal(tg_mbx_fake_stats()->calls[TG_MBX_FAKE_X25519_PUBLIC_KEY] - before, 1);
    assert_int_equal(stat_of("tlsgate_keyprov_key_pool_level{provider=\"cryptomb\"} "), 8);
    memset(&j, 0, sizeof(j));
    tg_keyop_init(&j.op, TG_KEYOP_KX_KEYGEN);
    j.op.kx = &k2;
    j.op.binding = b;
    assert_true(tg_test_job_step(&j)); /* from the pool: no pause, no new batch */
    assert_int_equal(j.ret, TG_OK);
    assert_int_equal(stat_of("tlsgate_keyprov_key_pool_level{provider=\"cryptomb\"} "), 7);
    assert_memory_not_equal(k1.priv, k2.priv, 32);
    /* The pool key is a real pair: derive both ways agrees. */
    struct tg_test_job d1, d2;
    memset(&d1, 0, sizeof(d1));
    memset(&d2, 0, sizeof(d2));
    tg_keyop_init(&d1.op, TG_KEYOP_KX_DERIVE);
    d1.op.kx = &k1;
    d1.op.peer = &k2;
    tg_keyop_init(&d2.op, TG_KEYOP_KX_DERIVE);
    d2.op.kx = &k2;
    d2.op.peer = &k1;
    assert_int_equal(tg_keyop_compute_sw(&d1.op), TG_OK);
    assert_int_equal(tg_keyop_compute_sw(&d2.op), TG_OK);
    assert_memory_equal(d1.op.out, d2.op.out, 32);
    tg_kxkey_clear(&k1);
    tg_kxkey_clear(&k2);
    set_down();
    tg_keyprov_binding_free(b);
}

static void test_drain_completes_queued(void **state)
{
    (void)state;
    env_up(true);
    char err[512];
    int rc;
    struct tg_keyprov_binding *b = bind_cmb("partial_batch", "mb", false, &rc, err, sizeof(err));
    assert_int_equal(rc, TG_OK);
    set_up();
    g_handshaking = 5;
    struct tg_test_job jobs[2];
    for (int i = 0; i < 2; i++) {
        rsa_op(&jobs[i], b);
        assert_false(tg_test_job_step(&jobs[i]));
    }
    tg_keyprov_set_drain(g_set);
    resume_woken(jobs, 2);
    for (int i = 0; i < 2; i++)
        check_rsa(&jobs[i]);
    set_down();
    tg_keyprov_binding_free(b);
}

static void test_unavailable_and_fallback(void **state)
{
    (void)state;
    char err[512] = "";
    int rc;
    /* No fake installed, and the machine pretends to lack AVX-512 IFMA:
     * the real library must refuse to load. */
    tg_keyprov_shutdown();
    setenv("TG_FAKE_NO_IFMA", "1", 1);
    struct tg_keyprov_binding *b = bind_cmb(NULL, NULL, false, &rc, err, sizeof(err));
    assert_int_equal(rc, TG_EUNAVAIL);
    assert_null(b);
    assert_non_null(strstr(err, "t.yaml:3:5: t.private_key_provider: provider 'cryptomb' "
                                "cannot run here"));
    b = bind_cmb(NULL, NULL, true, &rc, err, sizeof(err));
    assert_int_equal(rc, TG_OK);
    assert_string_equal(b->ops->name, "software");
    assert_string_equal(b->configured, "cryptomb");
    tg_keyprov_binding_free(b);
    unsetenv("TG_FAKE_NO_IFMA");
}

static void test_typed_config(void **state)
{
    (void)state;
    char err[512] = "";
    int rc;
    env_up(true);
    assert_null(bind_cmb("colour", "red", false, &rc, err, sizeof(err)));
    assert_int_equal(rc, TG_ECONFIG);
    assert_non_null(strstr(err, "colour"));
    assert_null(bind_cmb("partial_batch", "sometimes", false, &rc, err, sizeof(err)));
    assert_non_null(strstr(err, "t.yaml:4:20: "));
    assert_non_null(strstr(err, "partial_batch"));
    assert_null(bind_cmb("key_pool", "100000", false, &rc, err, sizeof(err)));
    assert_non_null(strstr(err, "key_pool"));
    assert_null(bind_cmb("fault_check", "maybe", false, &rc, err, sizeof(err)));
    assert_non_null(strstr(err, "fault_check"));
    struct tg_keyprov_binding *b = bind_cmb("key_exchange", "false", false, &rc, err, sizeof(err));
    assert_int_equal(rc, TG_OK);
    assert_false(b->kx);
    tg_keyprov_binding_free(b);
    b = bind_cmb(NULL, NULL, false, &rc, err, sizeof(err));
    assert_true(b->kx);
    tg_keyprov_binding_free(b);
}

/* The cost model decides, at submit and at flush: pinned costs, so the
 * outcome is certain. */
static void test_cost_model_decides(void **state)
{
    (void)state;
    env_up(true);
    char err[512];
    int rc;
    struct tg_keyprov_binding *b = bind_cmb(NULL, NULL, false, &rc, err, sizeof(err));
    assert_int_equal(rc, TG_OK);
    set_up();
    g_handshaking = 1; /* alone */
    struct tg_test_job j;
    /* A batch of one beats OpenSSL: even alone, the op goes to crypto_mb. */
    static const char idle[] =
        "tlsgate_keyprov_flushes_total{provider=\"cryptomb\",reason=\"idle\"} ";
    static const char scalar[] =
        "tlsgate_keyprov_flushes_total{provider=\"cryptomb\",reason=\"scalar\"} ";
    uint64_t idle0 = stat_of(idle), scalar0 = stat_of(scalar); /* earlier tests' */
    pin_costs(300, 200);
    unsigned before = tg_mbx_fake_stats()->calls[TG_MBX_FAKE_RSA_PRIVATE_CRT];
    rsa_op(&j, b);
    assert_false(tg_test_job_step(&j)); /* queued */
    tg_keyprov_set_flush(g_set);
    resume_woken(&j, 1);
    check_rsa(&j);
    assert_int_equal(tg_mbx_fake_stats()->calls[TG_MBX_FAKE_RSA_PRIVATE_CRT] - before, 1);
    assert_int_equal(stat_of(idle) - idle0, 1);
    /* A batch never pays: computed inline in software even with company. */
    pin_costs(10, 500);
    g_handshaking = 40;
    rsa_op(&j, b);
    assert_true(tg_test_job_step(&j)); /* no pause */
    check_rsa(&j);
    assert_int_equal(tg_mbx_fake_stats()->calls[TG_MBX_FAKE_RSA_PRIVATE_CRT] - before, 1);
    assert_int_equal(stat_of(scalar) - scalar0, 1);
    /* Batch from 2: alone, inline; with company, queued. */
    pin_default_costs();
    g_handshaking = 1;
    rsa_op(&j, b);
    assert_true(tg_test_job_step(&j));
    check_rsa(&j);
    g_handshaking = 2;
    rsa_op(&j, b);
    assert_false(tg_test_job_step(&j));
    tg_keyprov_set_drain(g_set);
    resume_woken(&j, 1);
    check_rsa(&j);
    set_down();
    tg_keyprov_binding_free(b);
}

/* `tlsgate doctor`: a report, text and JSON, and not one log line (even at
 * debug level) from global_init or the doctor hook. */
static void test_doctor_report(void **state)
{
    (void)state;
    env_up(true);
    const struct tg_keyprov_ops *ops = &tg_cryptomb_provider;
    struct tg_buf text = TG_BUF_INIT, json = TG_BUF_INIT;
    char why[256] = "";
    log_capture(TG_LOG_DEBUG);
    int rc = ops->global_init(why, sizeof(why));
    ops->doctor(&text, &json);
    char *logged = log_release();
    assert_int_equal(rc, TG_OK);
    assert_string_equal(logged, "");
    free(logged);
    assert_false(tg_buf_failed(&text) || tg_buf_failed(&json));
    /* Text: the library, what it batches, the (pinned) costs. */
    assert_non_null(strstr(text.data, "library (none), version "));
    assert_non_null(strstr(text.data, "batches: rsa2048 rsa3072 rsa4096 x25519 p256 p384 p521\n"));
    assert_non_null(strstr(text.data, "X25519 keygen     OpenSSL 300.0 us/op, mb8 500.0 us/call: "
                                      "batch from 2 op(s)\n"));
    assert_null(strstr(text.data, "cryptomb:")); /* the log lines' prefix */
    /* JSON: members of one object, exactly. */
    assert_non_null(strstr(json.data, "\"library\":\"fake\",\"version\":"));
    assert_non_null(strstr(json.data, ",\"batches\":[\"rsa2048\",\"rsa3072\",\"rsa4096\","
                                      "\"x25519\",\"p256\",\"p384\",\"p521\"],"));
    assert_non_null(strstr(json.data, "\"costs\":{\"RSA-2048 sign\":{\"openssl_us\":300.0,"
                                      "\"mb8_1lane_us\":500.0,\"mb8_8lanes_us\":500.0,"
                                      "\"batch_from\":2},"));
    assert_int_equal(count_of(json.data, "\"batch_from\":2"), TG_CMB_KIND_COUNT);
    assert_int_equal(count_of(json.data, "{"), count_of(json.data, "}"));
    assert_int_equal(count_of(json.data, "\"") % 2, 0);
    assert_true(json.data[json.len - 1] == '}');
    tg_buf_free(&text);
    tg_buf_free(&json);
    /* "Scalar always" is null in JSON. */
    pin_costs(10, 500);
    ops->doctor(&text, &json);
    assert_non_null(strstr(text.data, "mb8 500.0 us/call: scalar always\n"));
    assert_int_equal(count_of(json.data, "\"batch_from\":null"), TG_CMB_KIND_COUNT);
    tg_buf_free(&text);
    tg_buf_free(&json);
    ops->global_cleanup();
}

/* Without the library the JSON stays valid: nulls and empty members. */
static void test_doctor_unavailable(void **state)
{
    (void)state;
    tg_keyprov_shutdown();
    tg_cmb_calib_pin(NULL);
    setenv("TG_FAKE_NO_IFMA", "1", 1);
    const struct tg_keyprov_ops *ops = &tg_cryptomb_provider;
    struct tg_buf text = TG_BUF_INIT, json = TG_BUF_INIT;
    char why[256] = "";
    log_capture(TG_LOG_DEBUG);
    assert_int_equal(ops->global_init(why, sizeof(why)), TG_EUNAVAIL);
    ops->doctor(&text, &json);
    char *logged = log_release();
    unsetenv("TG_FAKE_NO_IFMA");
    assert_string_equal(logged, "");
    free(logged);
    assert_non_null(strstr(why, "AVX-512 IFMA"));
    assert_string_equal(text.data, "library (none), version ?\nbatches:\n");
    assert_string_equal(json.data, "\"library\":null,\"version\":null,\"batches\":[],"
                                   "\"costs\":{}");
    tg_buf_free(&text);
    tg_buf_free(&json);
    pin_default_costs();
}

/* `tlsgate run`: one concise calibration line when the workers start,
 * whatever the number of workers. */
static void test_startup_log_line(void **state)
{
    (void)state;
    env_up(true);
    char err[512];
    int rc;
    log_capture(TG_LOG_INFO);
    struct tg_keyprov_binding *b = bind_cmb(NULL, NULL, false, &rc, err, sizeof(err));
    char *at_bind = log_release();
    assert_int_equal(rc, TG_OK);
    assert_string_equal(at_bind, ""); /* start-up calibration is silent */
    free(at_bind);
    log_capture(TG_LOG_INFO);
    struct ev_loop *loops[2];
    struct tg_keyprov_set *sets[2];
    for (int i = 0; i < 2; i++) {
        loops[i] = ev_loop_new(EVFLAG_AUTO);
        assert_int_equal(tg_keyprov_set_new(loops[i], i, &g_handshaking, &sets[i]), TG_OK);
    }
    char *logged = log_release();
    for (int i = 0; i < 2; i++) {
        tg_keyprov_set_free(sets[i]);
        ev_loop_destroy(loops[i]);
    }
    assert_int_equal(count_of(logged, "\n"), 1);
    assert_non_null(strstr(logged, " info: cryptomb: batch vs OpenSSL, calibrated on this CPU: "
                                   "RSA-2048 sign from 2, RSA-3072 sign from 2, "));
    assert_non_null(strstr(logged, ", P-384 derive from 2\n"));
    free(logged);
    tg_keyprov_binding_free(b);
}

static int setup(void **state)
{
    (void)state;
    char why[256];
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (rsa == NULL || ec == NULL || tg_pkey_from_evp(rsa, &g_rsa, why, sizeof(why)) != TG_OK ||
        tg_pkey_from_evp(ec, &g_ec, why, sizeof(why)) != TG_OK)
        return -1;
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    pin_default_costs();
    return ASYNC_init_thread(0, 0) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tg_keyprov_shutdown();
    tg_cmb_calib_pin(NULL);
    tg_mbx_fake_cleanup();
    tg_pkey_unref(g_rsa);
    tg_pkey_unref(g_ec);
    ASYNC_cleanup_thread();
    return 0;
}

int main(void)
{
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider, &tg_deferred_provider, &tg_cryptomb_provider);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_typed_config),
        cmocka_unit_test(test_unavailable_and_fallback),
        cmocka_unit_test(test_alone_runs_inline),
        cmocka_unit_test(test_company_makes_full_batch),
        cmocka_unit_test(test_forced_partial_batch_and_lane_faults),
        cmocka_unit_test(test_key_pool),
        cmocka_unit_test(test_drain_completes_queued),
        cmocka_unit_test(test_cost_model_decides),
        cmocka_unit_test(test_doctor_report),
        cmocka_unit_test(test_doctor_unavailable),
        cmocka_unit_test(test_startup_log_line),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
