/*
 * The cryptomb provider's settings are per binding: every operation is
 * handled with its own binding's typed_config, although queues, batches and
 * key pools are shared by every binding of a worker.
 *
 *  - fault_check: per lane of a batch, from each operation's binding;
 *    `false` really turns the check off for that binding's operations;
 *  - key_pool: a key exchange is served from the pool only when its
 *    binding has key_pool > 0; the pool holds the largest key_pool of the
 *    bindings whose key exchanges reached the worker;
 *  - partial_batch: a partial batch runs as one mb8 call when any of its
 *    operations' bindings says `mb`, in OpenSSL when all say `scalar`;
 *  - an operation of another provider's binding (qat spills its overflow to
 *    cryptomb and the operation keeps its qat binding; modelled here by a
 *    test provider, "spiller", that hands everything to cryptomb the same
 *    way, through tg_keyprov_spill) gets cryptomb's defaults -- checked,
 *    cost model -- and takes no part in the key pool.
 *
 * Operations run inside real ASYNC jobs; the arithmetic is the fake's
 * (tests/tg_mbx_fake.c, whose knobs corrupt results); the cost model is
 * pinned, so no decision depends on timing.
 */
#include <ev.h>
#include <openssl/async.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <stdlib.h>
#include <string.h>

#include "keyprov/tg_keyprov.h"
#include "providers/cryptomb/tg_cmb_calib.h"
#include "providers/cryptomb/tg_cryptomb.h"
#include "providers/cryptomb/tg_mbx.h"
#include "providers/deferred/tg_deferred.h"
#include "providers/software/tg_software.h"
#include "tg_cmb_test_job.h"
#include "tg_mbx_fake.h"
#include "tg_test_util.h"

/* ---- a provider that spills everything to cryptomb, as qat does ---- */

static int spiller_state;

static int spiller_worker_init(const struct tg_keyprov_worker *w, void **state)
{
    (void)w;
    *state = &spiller_state;
    return TG_OK;
}

static void spiller_worker_cleanup(void *state)
{
    (void)state;
}

static int spiller_submit(void *state, struct tg_keyop *op)
{
    (void)state;
    if (tg_keyprov_spill(op, "cryptomb") != TG_OK)
        return TG_EDEVICE;
    return op->state == TG_KEYOP_DONE ? TG_OK : TG_EPENDING;
}

static const struct tg_keyprov_ops spiller = {
    .name = "spiller",
    .description = "test: hands every operation to cryptomb (tg_keyprov_spill)",
    .does_kx = true,
    .worker_init = spiller_worker_init,
    .worker_cleanup = spiller_worker_cleanup,
    .submit = spiller_submit,
};

/* ---- jobs ---- */

static struct ev_loop *g_loop;
static struct tg_keyprov_set *g_set;
static size_t g_handshaking;
static struct tg_pkey *g_rsa, *g_ec;

/* Flush (the loop is about to block) and resume what was woken. */
static void flush_and_resume(struct tg_test_job *jobs, size_t n)
{
    tg_keyprov_set_flush(g_set);
    for (size_t i = 0; i < n; i++) {
        if (!jobs[i].done && jobs[i].woken) {
            jobs[i].woken = false;
            tg_test_job_step(&jobs[i]);
        }
        assert_true(jobs[i].done);
        assert_int_equal(jobs[i].ret, TG_OK);
    }
}

/* A signature op (RSA-2048 PSS or ECDSA P-256) on binding b, not started. */
static void sign_op(struct tg_test_job *j, const struct tg_keyprov_binding *b, bool ecdsa)
{
    memset(j, 0, sizeof(*j));
    tg_keyop_init(&j->op, ecdsa ? TG_KEYOP_ECDSA_SIGN : TG_KEYOP_RSA_SIGN);
    j->op.pkey = ecdsa ? g_ec : g_rsa;
    j->op.binding = b;
    j->op.md = EVP_sha256();
    j->op.rsa_padding = TG_RSA_PAD_PSS;
    j->op.pss_saltlen = 32;
    for (int i = 0; i < 32; i++)
        j->op.in[i] = (unsigned char)(i * 7 + (int)(size_t)j);
    j->op.inlen = 32;
}

static void keygen_op(struct tg_test_job *j, const struct tg_keyprov_binding *b, struct tg_kxkey *k)
{
    memset(j, 0, sizeof(*j));
    memset(k, 0, sizeof(*k));
    k->group = TG_GROUP_X25519;
    tg_keyop_init(&j->op, TG_KEYOP_KX_KEYGEN);
    j->op.kx = k;
    j->op.binding = b;
}

/* OpenSSL's verdict on the op's signature. */
static bool sig_ok(const struct tg_test_job *j)
{
    EVP_PKEY_CTX *v = EVP_PKEY_CTX_new_from_pkey(NULL, j->op.pkey->pub, NULL);
    bool ok = v != NULL && EVP_PKEY_verify_init(v) == 1;
    if (ok && j->op.type == TG_KEYOP_RSA_SIGN)
        ok = EVP_PKEY_CTX_set_rsa_padding(v, RSA_PKCS1_PSS_PADDING) == 1 &&
             EVP_PKEY_CTX_set_signature_md(v, EVP_sha256()) == 1 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(v, 32) == 1;
    ok = ok && EVP_PKEY_verify(v, j->op.out, j->op.outlen, j->op.in, j->op.inlen) == 1;
    EVP_PKEY_CTX_free(v);
    return ok;
}

/* ---- bindings ---- */

static struct tg_conf_param params[2];

/* Bind provider `name` with up to two typed_config keys (k2 may be NULL). */
static struct tg_keyprov_binding *bind_with(const char *name, const char *k1, const char *v1,
                                            const char *k2, const char *v2)
{
    struct tg_conf_keyprov c;
    memset(&c, 0, sizeof(c));
    memset(params, 0, sizeof(params));
    c.provider_name = (char *)name;
    c.poll_delay_ns = 50 * 1000000ULL; /* long: the test decides when flushes happen */
    c.path = (char *)"t.private_key_provider";
    c.mark = (struct tg_conf_mark){"t.yaml", 3, 5};
    c.typed_config.path = (char *)"t.private_key_provider.typed_config";
    c.typed_config.v = params;
    if (k1 != NULL)
        params[c.typed_config.n++] = (struct tg_conf_param){.key = (char *)k1, .value = (char *)v1};
    if (k2 != NULL)
        params[c.typed_config.n++] = (struct tg_conf_param){.key = (char *)k2, .value = (char *)v2};
    char err[512] = "";
    struct tg_keyprov_binding *b = NULL;
    if (tg_keyprov_bind(&c, g_rsa, &b, err, sizeof(err)) != TG_OK)
        fail_msg("bind %s: %s", name, err);
    assert_string_equal(b->ops->name, name);
    return b;
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

static const char fault_checks[] =
    "tlsgate_keyprov_fallbacks_total{provider=\"cryptomb\",reason=\"fault_check\"} ";
static const char pool_level[] = "tlsgate_keyprov_key_pool_level{provider=\"cryptomb\"} ";

/* Fresh provider state: the fake, a pinned cost model (batch from 2). */
static void env_up(void)
{
    tg_keyprov_shutdown();
    tg_mbx_fake_reset();
    struct tg_cmb_calib c;
    memset(&c, 0, sizeof(c));
    for (int k = 0; k < TG_CMB_KIND_COUNT; k++)
        tg_cmb_calib_set(&c, (enum tg_cmb_kind)k, 300, 500, 500);
    tg_cmb_calib_pin(&c);
    assert_int_equal(tg_mbx_install(tg_mbx_fake_api()), TG_OK);
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

/* ---- fault_check ---- */

/*
 * One full batch of 8 signatures, lanes 0..3 from a binding with
 * fault_check: false, lanes 4..7 from one with the default, lanes 1 and 5
 * corrupted by the "device". Lane 5 is caught and signed in software; lane
 * 1 goes out as crypto_mb made it: it does not verify, which proves the
 * check was off for its binding only. RSA and ECDSA.
 */
static void test_fault_check_per_binding(void **state)
{
    (void)state;
    for (int ecdsa = 0; ecdsa < 2; ecdsa++) {
        env_up();
        struct tg_keyprov_binding *off = bind_with("cryptomb", "fault_check", "false", NULL, NULL);
        struct tg_keyprov_binding *on = bind_with("cryptomb", NULL, NULL, NULL, NULL);
        set_up();
        g_handshaking = 8;
        enum tg_mbx_fake_fn fn = ecdsa ? TG_MBX_FAKE_ECDSA_SIGN : TG_MBX_FAKE_RSA_PRIVATE_CRT;
        tg_mbx_fake_corrupt(fn, 1);
        tg_mbx_fake_corrupt(fn, 5);
        uint64_t fc0 = stat_of(fault_checks);
        struct tg_test_job jobs[8];
        for (int i = 0; i < 8; i++) {
            sign_op(&jobs[i], i < 4 ? off : on, ecdsa);
            assert_false(tg_test_job_step(&jobs[i])); /* queued: a full batch is coming */
        }
        flush_and_resume(jobs, 8);
        assert_int_equal(tg_mbx_fake_stats()->calls[fn], 1); /* one batch, mixed bindings */
        for (int i = 0; i < 8; i++) {
            assert_true(jobs[i].op.fell_back == (i == 5));
            assert_true(sig_ok(&jobs[i]) == (i != 1));
        }
        assert_int_equal(stat_of(fault_checks) - fc0, 1);
        set_down();
        tg_keyprov_binding_free(off);
        tg_keyprov_binding_free(on);
    }
}

/* fault_check: false alone on a worker (no other binding to "tighten" it):
 * a partial batch of two, one corrupted, goes out unchecked. */
static void test_fault_check_off_alone(void **state)
{
    (void)state;
    env_up();
    struct tg_keyprov_binding *off =
        bind_with("cryptomb", "fault_check", "false", "partial_batch", "mb");
    set_up();
    g_handshaking = 2;
    tg_mbx_fake_corrupt(TG_MBX_FAKE_ECDSA_SIGN, 0);
    struct tg_test_job jobs[2];
    for (int i = 0; i < 2; i++) {
        sign_op(&jobs[i], off, true);
        assert_false(tg_test_job_step(&jobs[i]));
    }
    flush_and_resume(jobs, 2);
    assert_false(jobs[0].op.fell_back);
    assert_false(sig_ok(&jobs[0])); /* not checked: the fault went out */
    assert_true(sig_ok(&jobs[1]));
    assert_int_equal(tg_mbx_fake_stats()->calls[TG_MBX_FAKE_ECDSA_VERIFY], 0);
    set_down();
    tg_keyprov_binding_free(off);
}

/* ---- key_pool ---- */

/* Run a keygen on binding b (alone: computed at once or from the pool). */
static void keygen_now(const struct tg_keyprov_binding *b)
{
    struct tg_test_job j;
    struct tg_kxkey k;
    keygen_op(&j, b, &k);
    assert_true(tg_test_job_step(&j));
    assert_int_equal(j.ret, TG_OK);
    assert_true(k.has_priv && k.has_pub);
    tg_kxkey_clear(&k);
}

static void test_key_pool_per_binding(void **state)
{
    (void)state;
    env_up();
    struct tg_keyprov_binding *none = bind_with("cryptomb", "key_pool", "0", NULL, NULL);
    struct tg_keyprov_binding *small = bind_with("cryptomb", "key_pool", "16", NULL, NULL);
    struct tg_keyprov_binding *big = bind_with("cryptomb", "key_pool", "64", NULL, NULL);
    set_up();
    g_handshaking = 1;
    /* key_pool 0: keys on demand, no pool. */
    keygen_now(none);
    tg_keyprov_set_flush(g_set);
    assert_int_equal(stat_of(pool_level), 0);
    /* key_pool 16: the group gets a pool, filled by a batch per flush. */
    keygen_now(small);
    tg_keyprov_set_flush(g_set);
    assert_int_equal(stat_of(pool_level), 8);
    /* key_pool 0 again: still on demand, the pool is not its. */
    keygen_now(none);
    assert_int_equal(stat_of(pool_level), 8);
    keygen_now(small); /* from the pool */
    assert_int_equal(stat_of(pool_level), 7);
    /* Refills by whole batches while below 16: 7, 15, 23, then no more. */
    for (int i = 0; i < 4; i++)
        tg_keyprov_set_flush(g_set);
    assert_int_equal(stat_of(pool_level), 23);
    /* key_pool 64: the pool grows to the largest key_pool seen (the ready
     * keys move to the larger storage): 22, 30, ..., 62, 70. */
    keygen_now(big);
    assert_int_equal(stat_of(pool_level), 22);
    for (int i = 0; i < 12; i++)
        tg_keyprov_set_flush(g_set);
    assert_int_equal(stat_of(pool_level), 70);
    keygen_now(none); /* still not from the pool */
    keygen_now(small);
    assert_int_equal(stat_of(pool_level), 69);
    set_down();
    tg_keyprov_binding_free(none);
    tg_keyprov_binding_free(small);
    tg_keyprov_binding_free(big);
}

/* ---- partial_batch ---- */

static void test_partial_batch_per_binding(void **state)
{
    (void)state;
    env_up();
    struct tg_keyprov_binding *scalar =
        bind_with("cryptomb", "partial_batch", "scalar", NULL, NULL);
    struct tg_keyprov_binding *mb = bind_with("cryptomb", "partial_batch", "mb", NULL, NULL);
    set_up();
    g_handshaking = 8;
    const unsigned *calls = &tg_mbx_fake_stats()->calls[TG_MBX_FAKE_RSA_PRIVATE_CRT];
    /* All `scalar`: OpenSSL, although the cost model would batch two. */
    struct tg_test_job jobs[2];
    for (int i = 0; i < 2; i++) {
        sign_op(&jobs[i], scalar, false);
        assert_false(tg_test_job_step(&jobs[i]));
    }
    flush_and_resume(jobs, 2);
    assert_int_equal(*calls, 0);
    /* Any `mb`: one multi-buffer call for the whole remainder. */
    sign_op(&jobs[0], scalar, false);
    sign_op(&jobs[1], mb, false);
    for (int i = 0; i < 2; i++)
        assert_false(tg_test_job_step(&jobs[i]));
    flush_and_resume(jobs, 2);
    assert_int_equal(*calls, 1);
    for (int i = 0; i < 2; i++)
        assert_true(sig_ok(&jobs[i]));
    set_down();
    tg_keyprov_binding_free(scalar);
    tg_keyprov_binding_free(mb);
}

/* ---- operations of another provider's binding ---- */

/*
 * The only cryptomb binding says fault_check: false, key_pool: 0. The
 * operations spilled to cryptomb by another provider keep that provider's
 * binding and get cryptomb's defaults: a corrupted signature is caught
 * (checked), and a key exchange neither draws from nor creates a pool.
 */
static void test_spilled_ops_get_defaults(void **state)
{
    (void)state;
    env_up();
    struct tg_keyprov_binding *cmb = bind_with("cryptomb", "fault_check", "false", "key_pool", "0");
    struct tg_keyprov_binding *sp = bind_with("spiller", NULL, NULL, NULL, NULL);
    set_up();
    g_handshaking = 8;
    tg_mbx_fake_corrupt(TG_MBX_FAKE_RSA_PRIVATE_CRT, 3);
    uint64_t fc0 = stat_of(fault_checks);
    struct tg_test_job jobs[8];
    for (int i = 0; i < 8; i++) {
        sign_op(&jobs[i], sp, false);
        assert_false(tg_test_job_step(&jobs[i])); /* spilled, queued in cryptomb */
    }
    assert_int_equal(tg_keyprov_set_pending(g_set), 8);
    flush_and_resume(jobs, 8);
    assert_int_equal(tg_mbx_fake_stats()->calls[TG_MBX_FAKE_RSA_PRIVATE_CRT], 1);
    for (int i = 0; i < 8; i++) {
        assert_true(jobs[i].op.fell_back == (i == 3));
        assert_true(sig_ok(&jobs[i]));
    }
    assert_int_equal(stat_of(fault_checks) - fc0, 1);
    /* Key exchange: made on demand, no pool appears. */
    g_handshaking = 1;
    keygen_now(sp);
    tg_keyprov_set_flush(g_set);
    keygen_now(sp);
    tg_keyprov_set_flush(g_set);
    assert_int_equal(stat_of(pool_level), 0);
    assert_int_equal(tg_mbx_fake_stats()->calls[TG_MBX_FAKE_X25519_PUBLIC_KEY], 0);
    set_down();
    tg_keyprov_binding_free(cmb);
    tg_keyprov_binding_free(sp);
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
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider, &tg_deferred_provider, &tg_cryptomb_provider,
                               &spiller);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fault_check_per_binding),
        cmocka_unit_test(test_fault_check_off_alone),
        cmocka_unit_test(test_key_pool_per_binding),
        cmocka_unit_test(test_partial_batch_per_binding),
        cmocka_unit_test(test_spilled_ops_get_defaults),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
