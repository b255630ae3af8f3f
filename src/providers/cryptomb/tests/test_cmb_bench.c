/*
 * The microbench hook (`tlsgate bench-crypto`): it runs on the real library
 * and on the fake, fills what it promises for the cases it can run, skips
 * the others, and says so without the library. Rates are printed, never
 * compared. Set TG_CMB_BENCH_SECONDS=1 to print the full report.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "providers/cryptomb/tg_cmb_bench.h"
#include "providers/cryptomb/tg_cryptomb.h"
#include "providers/cryptomb/tg_mbx.h"
#include "tg_mbx_backend.h"
#include "tg_mbx_fake.h"
#include "tg_test_util.h"

static struct tg_pkey *keys[4]; /* RSA-2048, P-256, P-384, P-521 */

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

/* The cases as bench-crypto makes them; scalar costs are given (the hook
 * only prints them and derives the break-even from them). */
#define NCASES 7
#define P521   3 /* the case crypto_mb does not batch */
static void make_cases(struct tg_keyprov_bench_case c[NCASES])
{
    memset(c, 0, sizeof(struct tg_keyprov_bench_case) * NCASES);
    c[0] = (struct tg_keyprov_bench_case){
        "RSA-2048 sign", TG_KEYOP_RSA_SIGN, keys[0], TG_GROUP_NONE, 400, 0};
    c[1] = (struct tg_keyprov_bench_case){
        "ECDSA P-256 sign", TG_KEYOP_ECDSA_SIGN, keys[1], TG_GROUP_NONE, 25, 0};
    c[2] = (struct tg_keyprov_bench_case){
        "ECDSA P-384 sign", TG_KEYOP_ECDSA_SIGN, keys[2], TG_GROUP_NONE, 800, 0};
    c[P521] = (struct tg_keyprov_bench_case){
        "ECDSA P-521 sign", TG_KEYOP_ECDSA_SIGN, keys[3], TG_GROUP_NONE, 900, 0};
    c[4] = (struct tg_keyprov_bench_case){
        "X25519 keygen", TG_KEYOP_KX_KEYGEN, NULL, TG_GROUP_X25519, 40, 0};
    c[5] = (struct tg_keyprov_bench_case){"X25519 derive", TG_KEYOP_KX_DERIVE, NULL,
                                          TG_GROUP_X25519, 0 /* unknown */,    0};
    c[6] = (struct tg_keyprov_bench_case){
        "P-256 keygen", TG_KEYOP_KX_KEYGEN, NULL, TG_GROUP_P256, 20, 0};
}

static void test_wired(void **state)
{
    (void)state;
    assert_ptr_equal(tg_cryptomb_provider.microbench, tg_cmb_bench_run);
}

static void test_full(void **state)
{
    tg_mbx_use_backend(state);
    struct tg_keyprov_bench_case c[NCASES];
    struct tg_buf out = TG_BUF_INIT;
    const char *env = getenv("TG_CMB_BENCH_SECONDS");
    double secs = env != NULL ? strtod(env, NULL) : 0.0;
    bool print = secs > 0 && tg_mbx_is_real(state);
    make_cases(c);
    struct tg_keyprov_bench b = {c, NCASES, print ? secs : 0.002, &out, NULL};
    assert_int_equal(tg_cmb_bench_run(&b), TG_OK);
    assert_false(tg_buf_failed(&out));
    assert_string_equal(b.peak_label, "crypto_mb raw");
    for (size_t i = 0; i < NCASES; i++) {
        if (i == P521)
            assert_true(c[i].peak_ops == 0);
        else
            assert_true(c[i].peak_ops > 0);
    }
    assert_non_null(strstr(out.data, "## crypto_mb microbenchmark"));
    assert_non_null(strstr(out.data, "| RSA-2048 sign, fault check on | 2500 |"));
    assert_non_null(strstr(out.data, "| RSA-2048 sign, fault check off | |"));
    /* ECDSA too: the difference between the two rows is the check's cost. */
    assert_non_null(strstr(out.data, "| ECDSA P-256 sign, fault check on | 40000 |"));
    assert_non_null(strstr(out.data, "| ECDSA P-256 sign, fault check off | |"));
    assert_non_null(strstr(out.data, "| X25519 derive | - |")); /* scalar unknown */
    assert_null(strstr(out.data, "P-521"));
    assert_non_null(strstr(out.data, "n=8"));
    /* The cost table has a row per case with a known scalar cost. */
    assert_non_null(strstr(out.data, "| P-256 keygen | 20.0 |"));
    assert_null(strstr(out.data, "| X25519 derive | 0.0 |"));
    assert_null(strstr(out.data, "lane errors"));
    assert_null(strstr(out.data, "set-up failed"));
    if (print)
        printf("%s\n", out.data);
    tg_buf_free(&out);
}

static void test_quick(void **state)
{
    tg_mbx_use_backend(state);
    struct tg_keyprov_bench_case c[NCASES];
    make_cases(c);
    struct tg_keyprov_bench b = {c, NCASES, 1.0, NULL, NULL};
    assert_int_equal(tg_cmb_bench_run(&b), TG_OK);
    assert_string_equal(b.peak_label, "crypto_mb raw");
    for (size_t i = 0; i < NCASES; i++) {
        if (i == P521)
            assert_true(c[i].peak_ops == 0);
        else
            assert_true(c[i].peak_ops > 0);
    }
}

/* A lane the library refuses is reported in the table. */
static void test_lane_errors_reported(void **state)
{
    (void)state;
    tg_mbx_unload();
    tg_mbx_fake_reset();
    assert_int_equal(tg_mbx_install(tg_mbx_fake_api()), TG_OK);
    tg_mbx_fake_fail_lane(TG_MBX_FAKE_X25519_PUBLIC_KEY, 2, TG_MBX_STATUS_MISMATCH_PARAM_ERR);
    struct tg_keyprov_bench_case c[NCASES];
    struct tg_buf out = TG_BUF_INIT;
    make_cases(c);
    struct tg_keyprov_bench b = {c + 4, 1, 0.002, &out, NULL};
    assert_int_equal(tg_cmb_bench_run(&b), TG_OK);
    assert_non_null(strstr(out.data, "| X25519 keygen: "));
    assert_non_null(strstr(out.data, "lane errors during the run"));
    tg_buf_free(&out);
}

static void test_without_library(void **state)
{
    (void)state;
    tg_mbx_unload();
    struct tg_keyprov_bench_case c[NCASES];
    struct tg_buf out = TG_BUF_INIT;
    make_cases(c);
    struct tg_keyprov_bench b = {c, NCASES, 0.002, &out, NULL};
    assert_int_equal(tg_cmb_bench_run(&b), TG_EUNAVAIL);
    assert_non_null(strstr(out.data, "crypto_mb is not loaded"));
    for (size_t i = 0; i < NCASES; i++)
        assert_true(c[i].peak_ops == 0);
    b.report = NULL;
    assert_int_equal(tg_cmb_bench_run(&b), TG_EUNAVAIL);
    tg_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wired),
        TG_MBX_BOTH(test_full),
        TG_MBX_BOTH(test_quick),
        cmocka_unit_test_teardown(test_lane_errors_reported, tg_mbx_backend_teardown),
        cmocka_unit_test_teardown(test_without_library, tg_mbx_backend_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
