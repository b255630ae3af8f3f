/*
 * The qat provider against the fake qatlib (src/providers/qat/tests/fake_*.c):
 * start-up, instances, keys, configuration, /stats and doctor. Operations,
 * polling and errors: test_qat_ops.c; shared helpers: qat_test_util.h.
 *
 * Covered: start-up without device / with failing instances / without
 * instances / without the library, unsupported keys, instance spreading, key
 * conversion cached per worker, every pinned buffer wiped and freed, no
 * pinned memory, typed_config errors with file:line, /stats and doctor
 * output.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/tg_config.h"
#include "core/tg_time.h"
#include "keyprov/tg_keyprov.h"
#include "qat_test_util.h"

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

/* ---- instances and pinned memory ---- */

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

int main(void)
{
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider, &tg_deferred_provider,
                               TG_TEST_CRYPTOMB & tg_qat_provider);
#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)
    const struct CMUnitTest tests[] = {
        T(test_no_device),        T(test_start_failure),
        T(test_no_instances),     T(test_no_library),
        T(test_unsupported_keys), T(test_instances_spread),
        T(test_key_cache),        T(test_no_pinned_memory),
        T(test_config),           T(test_verify_off_and_stats_doctor),
    };
#undef T
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
