/* The crypto_mb microbenchmark and the batch-vs-scalar calibration: they
 * run (real library and fake), fill what they promise, stay within their
 * time budget; the cost-model decisions. Set TG_MB_BENCH_SECONDS=1 to print
 * the full benchmark table (the report's numbers). */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/tg_sysinfo.h"
#include "providers/cryptomb/tg_mbx.h"
#include "providers/cryptomb/tg_mb_bench.h"
#include "tg_mbx_fake.h"
#include "tg_test_util.h"

static struct tg_pkey *keys[4];

static struct tg_pkey *wrap(EVP_PKEY *evp)
{
    struct tg_pkey *k = NULL;
    if (evp == NULL || tg_pkey_from_evp(evp, &k, NULL, 0) != TG_OK)
        k = NULL;
    EVP_PKEY_free(evp);
    return k;
}

static int group_setup(void **state)
{
    (void)state;
    keys[0] = wrap(EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048));
    keys[1] = wrap(EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"));
    keys[2] = wrap(EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384"));
    keys[3] = wrap(EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521"));
    return keys[0] && keys[1] && keys[2] && keys[3] ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < 4; i++)
        tg_pkey_unref(keys[i]);
    tg_mbx_unload();
    tg_mbx_fake_cleanup();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tg_mbx_unload();
    tg_mbx_fake_reset();
    return 0;
}

enum backend { REAL, FAKE };
static const enum backend be_real = REAL, be_fake = FAKE;

static void use_backend(void **state)
{
    tg_mbx_unload();
    tg_mbx_fake_reset();
    if (*(const enum backend *)*state == FAKE) {
        assert_int_equal(tg_mbx_install(tg_mbx_fake_api()), TG_OK);
        return;
    }
    char why[256];
    if (tg_mbx_load(why, sizeof(why)) != TG_OK) {
        print_message("real crypto_mb unavailable: %s\n", why);
        skip();
    }
}

/* The benchmark generates RSA-3072/4096 keys: minutes under valgrind. */
static bool slow_env(void)
{
    const char *p = getenv("LD_PRELOAD");
    return (p != NULL && strstr(p, "vgpreload") != NULL) || getenv("TG_TEST_QUICK") != NULL;
}

static double wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void test_kinds(void **state)
{
    (void)state;
    assert_string_equal(tg_mb_kind_name(TG_MB_KIND_RSA2048), "RSA-2048 sign");
    assert_string_equal(tg_mb_kind_name(TG_MB_KIND_COUNT), "unknown");
    assert_int_equal(tg_mb_kind_for_key(keys[0]), TG_MB_KIND_RSA2048);
    assert_int_equal(tg_mb_kind_for_key(keys[1]), TG_MB_KIND_ECDSA_P256);
    assert_int_equal(tg_mb_kind_for_key(keys[2]), TG_MB_KIND_ECDSA_P384);
    assert_int_equal(tg_mb_kind_for_key(keys[3]), TG_MB_KIND_COUNT); /* not calibrated */
    assert_int_equal(tg_mb_kind_for_key(NULL), TG_MB_KIND_COUNT);
    assert_int_equal(tg_mb_kind_keygen(TG_GROUP_X25519), TG_MB_KIND_X25519_KEYGEN);
    assert_int_equal(tg_mb_kind_derive(TG_GROUP_P384), TG_MB_KIND_P384_DERIVE);
    assert_int_equal(tg_mb_kind_derive(TG_GROUP_NONE), TG_MB_KIND_COUNT);
}

static void test_cost_model(void **state)
{
    (void)state;
    struct tg_mb_calib c;
    memset(&c, 0, sizeof(c));
    /* Unmeasured: batch. */
    assert_true(tg_mb_calib_prefer_batch(&c, TG_MB_KIND_RSA2048, 1));
    assert_int_equal(tg_mb_calib_min_batch(&c, TG_MB_KIND_RSA2048), 1);
    assert_true(tg_mb_calib_prefer_batch(NULL, TG_MB_KIND_RSA2048, 3));
    /* mb8 call 500 us whatever the fill, scalar 300 us: batch from 2 on. */
    c.valid[TG_MB_KIND_RSA2048] = true;
    c.scalar_us[TG_MB_KIND_RSA2048] = 300;
    for (size_t n = 1; n <= TG_MBX_LANES; n++)
        c.batch_us[TG_MB_KIND_RSA2048][n] = 500;
    assert_false(tg_mb_calib_prefer_batch(&c, TG_MB_KIND_RSA2048, 1));
    assert_true(tg_mb_calib_prefer_batch(&c, TG_MB_KIND_RSA2048, 2));
    assert_true(tg_mb_calib_prefer_batch(&c, TG_MB_KIND_RSA2048, 8));
    assert_false(tg_mb_calib_prefer_batch(&c, TG_MB_KIND_RSA2048, 0));
    assert_int_equal(tg_mb_calib_min_batch(&c, TG_MB_KIND_RSA2048), 2);
    /* Never worth it. */
    c.scalar_us[TG_MB_KIND_RSA2048] = 10;
    assert_int_equal(tg_mb_calib_min_batch(&c, TG_MB_KIND_RSA2048), TG_MBX_LANES + 1);
}

static void test_calibrate(void **state)
{
    use_backend(state);
    struct tg_mb_calib c;
    const struct tg_pkey *const k[] = {keys[0], keys[1], keys[2], keys[3]};
    double t0 = wall_ms();
    assert_int_equal(tg_mb_calibrate(k, 4, 0, &c), TG_OK);
    double ms = wall_ms() - t0;
    print_message("calibration took %.1f ms\n", ms);
    /* RSA-3072/4096: no key given, not measured. */
    assert_false(c.valid[TG_MB_KIND_RSA3072]);
    assert_false(c.valid[TG_MB_KIND_RSA4096]);
    for (int kind = 0; kind < TG_MB_KIND_COUNT; kind++) {
        if (kind == TG_MB_KIND_RSA3072 || kind == TG_MB_KIND_RSA4096)
            continue;
        assert_true(c.valid[kind]);
        assert_true(c.scalar_us[kind] > 0);
        assert_true(c.batch_us[kind][1] > 0);
        assert_true(c.batch_us[kind][8] > 0);
        print_message("  %-18s scalar %8.1f us, batch(1) %8.1f us, batch(8) %8.1f us, "
                      "min batch %zu\n",
                      tg_mb_kind_name((enum tg_mb_kind)kind), c.scalar_us[kind],
                      c.batch_us[kind][1], c.batch_us[kind][8],
                      tg_mb_calib_min_batch(&c, (enum tg_mb_kind)kind));
    }
    if (*(const enum backend *)*state == REAL) {
        /* The budget (loose bound: a shared CI machine). */
        assert_true(ms < 500);
        /* On IFMA hardware a full batch beats 8 scalar RSA-2048 signatures. */
        assert_true(tg_mb_calib_prefer_batch(&c, TG_MB_KIND_RSA2048, 8));
    }
    /* Only the kinds asked for. */
    assert_int_equal(tg_mb_calibrate(k, 4, TG_MB_KIND_BIT(TG_MB_KIND_X25519_DERIVE), &c), TG_OK);
    assert_true(c.valid[TG_MB_KIND_X25519_DERIVE]);
    assert_false(c.valid[TG_MB_KIND_RSA2048]);
    /* A sign kind without its key: nothing measured. */
    assert_int_equal(tg_mb_calibrate(k, 0, TG_MB_KIND_BIT(TG_MB_KIND_RSA2048), &c), TG_EUNAVAIL);
    tg_mbx_unload();
    assert_int_equal(tg_mb_calibrate(k, 4, 0, &c), TG_EUNAVAIL);
    assert_false(c.valid[TG_MB_KIND_X25519_DERIVE]);
}

static void test_bench_run(void **state)
{
    use_backend(state);
    if (slow_env())
        skip();
    struct tg_buf out = TG_BUF_INIT;
    const char *env = getenv("TG_MB_BENCH_SECONDS");
    double secs = env != NULL ? strtod(env, NULL) : 0.0;
    bool full = secs > 0 && *(const enum backend *)*state == REAL;
    assert_int_equal(tg_mb_bench_run(&out, full ? secs : 0.005), TG_OK);
    assert_false(tg_buf_failed(&out));
    assert_non_null(strstr(out.data, "| RSA-2048 sign, fault check on |"));
    assert_non_null(strstr(out.data, "| X25519 derive |"));
    assert_non_null(strstr(out.data, "n=8"));
    assert_null(strstr(out.data, "lane errors"));
    assert_null(strstr(out.data, "set-up failed"));
    if (full)
        printf("%s\n", out.data);
    tg_buf_free(&out);
}

static void test_bench_without_mb(void **state)
{
    (void)state;
    if (slow_env())
        skip();
    struct tg_buf out = TG_BUF_INIT;
    tg_mbx_unload();
    setenv("TG_FAKE_NO_IFMA", "1", 1);
    assert_int_equal(tg_mb_bench_run(&out, 0.002), TG_EUNAVAIL);
    unsetenv("TG_FAKE_NO_IFMA");
    assert_non_null(strstr(out.data, "CPU lacks AVX-512 IFMA"));
    assert_non_null(strstr(out.data, "| RSA-2048 sign | "));
    assert_null(strstr(out.data, "n=8"));
    tg_buf_free(&out);
}

int main(void)
{
#define BOTH(t)                                                                                    \
    {#t "(real)", t, NULL, teardown, (void *)&be_real},                                            \
    {                                                                                              \
#t "(fake)", t, NULL, teardown, (void *)&be_fake                                           \
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds),
        cmocka_unit_test(test_cost_model),
        BOTH(test_calibrate),
        BOTH(test_bench_run),
        cmocka_unit_test_teardown(test_bench_without_mb, teardown),
    };
#undef BOTH
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
