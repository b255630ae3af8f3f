/*
 * The cost model: the break-even it decides from given costs (pure, no
 * timing), the measurement (real library and fake: what it fills, never how
 * fast), and the process-wide model the provider reads (learn, pin, forget,
 * the start-up summary).
 */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "providers/cryptomb/tg_cmb_calib.h"
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
    tg_cmb_calib_pin(NULL);
    tg_mbx_unload();
    tg_mbx_fake_cleanup();
    return 0;
}

static int teardown(void **state)
{
    tg_cmb_calib_pin(NULL);
    return tg_mbx_backend_teardown(state);
}

/* ---- the model: decisions from given costs ---- */

static void test_set_interpolates(void **state)
{
    (void)state;
    struct tg_cmb_calib c;
    memset(&c, 0, sizeof(c));
    tg_cmb_calib_set(&c, TG_CMB_KIND_P256_DERIVE, 40, 100, 170);
    assert_true(c.valid[TG_CMB_KIND_P256_DERIVE]);
    assert_false(c.valid[TG_CMB_KIND_P256_KEYGEN]);
    assert_true(c.scalar_us[TG_CMB_KIND_P256_DERIVE] == 40);
    for (size_t n = 1; n <= TG_MBX_LANES; n++)
        assert_true(c.batch_us[TG_CMB_KIND_P256_DERIVE][n] == 100 + 10 * (double)(n - 1));
    tg_cmb_calib_set(&c, TG_CMB_KIND_NONE, 1, 1, 1); /* ignored */
    tg_cmb_calib_set(&c, (enum tg_cmb_kind) - 1, 1, 1, 1);
}

static void test_breakeven(void **state)
{
    (void)state;
    struct tg_cmb_calib c;
    memset(&c, 0, sizeof(c));
    const enum tg_cmb_kind k = TG_CMB_KIND_RSA2048;
    /* Unmeasured: batch. */
    assert_true(tg_cmb_calib_prefer_batch(&c, k, 1));
    assert_int_equal(tg_cmb_calib_breakeven(&c, k), 1);
    assert_true(tg_cmb_calib_prefer_batch(NULL, k, 3));
    assert_true(tg_cmb_calib_prefer_batch(&c, TG_CMB_KIND_NONE, 3));
    /* mb8 call 500 us whatever the fill, scalar 300 us: batch from 2 on. */
    tg_cmb_calib_set(&c, k, 300, 500, 500);
    assert_false(tg_cmb_calib_prefer_batch(&c, k, 1));
    assert_true(tg_cmb_calib_prefer_batch(&c, k, 2));
    assert_true(tg_cmb_calib_prefer_batch(&c, k, 8));
    assert_false(tg_cmb_calib_prefer_batch(&c, k, 0));
    assert_true(tg_cmb_calib_prefer_batch(&c, k, 9)); /* more than a batch: batch */
    assert_int_equal(tg_cmb_calib_breakeven(&c, k), 2);
    /* Equal cost is not cheaper: 600 = 2 x 300, so from 3. */
    tg_cmb_calib_set(&c, k, 300, 600, 600);
    assert_int_equal(tg_cmb_calib_breakeven(&c, k), 3);
    /* A batch of one already beats OpenSSL (P-384 on IFMA). */
    tg_cmb_calib_set(&c, k, 750, 150, 160);
    assert_int_equal(tg_cmb_calib_breakeven(&c, k), 1);
    /* Growing cost: 100 + 10 (n - 1) < 40 n from n = 4. */
    tg_cmb_calib_set(&c, k, 40, 100, 170);
    assert_int_equal(tg_cmb_calib_breakeven(&c, k), 4);
    /* Never worth it. */
    tg_cmb_calib_set(&c, k, 10, 500, 500);
    assert_int_equal(tg_cmb_calib_breakeven(&c, k), TG_MBX_LANES + 1);
    /* Other kinds are untouched. */
    assert_int_equal(tg_cmb_calib_breakeven(&c, TG_CMB_KIND_X25519_DERIVE), 1);
}

/* ---- measuring (what is filled, never how fast) ---- */

static void test_measure(void **state)
{
    tg_mbx_use_backend(state);
    struct tg_cmb_calib c;
    const struct tg_pkey *const k[] = {keys[0], keys[1], keys[2], keys[3]};
    assert_int_equal(tg_cmb_calib_measure(k, 4, 0, &c), TG_OK);
    /* RSA-3072/4096: no key given, not measured. */
    assert_false(c.valid[TG_CMB_KIND_RSA3072]);
    assert_false(c.valid[TG_CMB_KIND_RSA4096]);
    for (int kind = 0; kind < TG_CMB_KIND_COUNT; kind++) {
        if (kind == TG_CMB_KIND_RSA3072 || kind == TG_CMB_KIND_RSA4096)
            continue;
        assert_true(c.valid[kind]);
        assert_true(c.scalar_us[kind] > 0);
        assert_true(c.batch_us[kind][1] > 0);
        assert_true(c.batch_us[kind][8] > 0);
        print_message("  %-18s scalar %8.1f us, batch(1) %8.1f us, batch(8) %8.1f us, "
                      "break-even %zu\n",
                      tg_cmb_kind_name((enum tg_cmb_kind)kind), c.scalar_us[kind],
                      c.batch_us[kind][1], c.batch_us[kind][8],
                      tg_cmb_calib_breakeven(&c, (enum tg_cmb_kind)kind));
    }
    /* Only the kinds asked for. */
    assert_int_equal(tg_cmb_calib_measure(k, 4, TG_CMB_KIND_BIT(TG_CMB_KIND_X25519_DERIVE), &c),
                     TG_OK);
    assert_true(c.valid[TG_CMB_KIND_X25519_DERIVE]);
    assert_false(c.valid[TG_CMB_KIND_RSA2048]);
    /* A sign kind without its key: nothing measured. */
    assert_int_equal(tg_cmb_calib_measure(k, 0, TG_CMB_KIND_BIT(TG_CMB_KIND_RSA2048), &c),
                     TG_EUNAVAIL);
    assert_int_equal(tg_cmb_calib_measure(NULL, 0, TG_CMB_KIND_BIT(TG_CMB_KIND_RSA2048), &c),
                     TG_EUNAVAIL);
    /* A key of another kind does not stand in. */
    assert_int_equal(tg_cmb_calib_measure(&k[1], 1, TG_CMB_KIND_BIT(TG_CMB_KIND_RSA2048), &c),
                     TG_EUNAVAIL);
    tg_mbx_unload();
    assert_int_equal(tg_cmb_calib_measure(k, 4, 0, &c), TG_EUNAVAIL);
    assert_false(c.valid[TG_CMB_KIND_X25519_DERIVE]);
}

/* A kind whose workload fails is left unmeasured. */
static void test_measure_lane_errors(void **state)
{
    (void)state;
    tg_mbx_unload();
    tg_mbx_fake_reset();
    assert_int_equal(tg_mbx_install(tg_mbx_fake_api()), TG_OK);
    tg_mbx_fake_fail_lane(TG_MBX_FAKE_X25519, 3, TG_MBX_STATUS_MISMATCH_PARAM_ERR);
    struct tg_cmb_calib c;
    unsigned kinds =
        TG_CMB_KIND_BIT(TG_CMB_KIND_X25519_DERIVE) | TG_CMB_KIND_BIT(TG_CMB_KIND_X25519_KEYGEN);
    assert_int_equal(tg_cmb_calib_measure(NULL, 0, kinds, &c), TG_OK);
    assert_false(c.valid[TG_CMB_KIND_X25519_DERIVE]);
    assert_true(c.valid[TG_CMB_KIND_X25519_KEYGEN]);
}

/* ---- the process-wide model ---- */

static void test_pin(void **state)
{
    (void)state;
    tg_mbx_unload();
    tg_mbx_fake_reset();
    assert_int_equal(tg_mbx_install(tg_mbx_fake_api()), TG_OK);
    struct tg_cmb_calib pinned;
    memset(&pinned, 0, sizeof(pinned));
    tg_cmb_calib_set(&pinned, TG_CMB_KIND_RSA2048, 300, 500, 520);
    tg_cmb_calib_set(&pinned, TG_CMB_KIND_X25519_KEYGEN, 40, 30, 35);
    tg_cmb_calib_set(&pinned, TG_CMB_KIND_X25519_DERIVE, 10, 500, 500);
    tg_cmb_calib_pin(&pinned);
    assert_int_equal(tg_cmb_calib_batch_from(TG_CMB_KIND_RSA2048), 2);
    assert_int_equal(tg_cmb_calib_batch_from(TG_CMB_KIND_X25519_KEYGEN), 1);
    assert_int_equal(tg_cmb_calib_batch_from(TG_CMB_KIND_X25519_DERIVE), TG_MBX_LANES + 1);
    /* Kinds the pin leaves out: the default. */
    assert_int_equal(tg_cmb_calib_batch_from(TG_CMB_KIND_P256_DERIVE),
                     TG_CMB_CALIB_DEFAULT_BATCH_FROM);
    assert_int_equal(tg_cmb_calib_batch_from(TG_CMB_KIND_NONE), TG_CMB_CALIB_DEFAULT_BATCH_FROM);
    /* Pinned: nothing is measured, and cleanup keeps the pin. */
    tg_cmb_calib_learn(NULL, TG_CMB_KIND_ALL);
    tg_cmb_calib_learn(keys[1], TG_CMB_KIND_BIT(TG_CMB_KIND_ECDSA_P256));
    tg_cmb_calib_forget();
    const struct tg_cmb_calib *m = tg_cmb_calib_model();
    assert_memory_equal(m, &pinned, sizeof(pinned));
    struct tg_buf s = TG_BUF_INIT;
    tg_cmb_calib_summary(&s);
    assert_string_equal(s.data, "RSA-2048 sign from 2, X25519 keygen from 1, X25519 derive never");
    tg_buf_free(&s);
    /* Unpinned: empty, defaults, measured again on demand. */
    tg_cmb_calib_pin(NULL);
    assert_false(tg_cmb_calib_model()->valid[TG_CMB_KIND_RSA2048]);
    assert_int_equal(tg_cmb_calib_batch_from(TG_CMB_KIND_RSA2048), TG_CMB_CALIB_DEFAULT_BATCH_FROM);
    tg_cmb_calib_summary(&s);
    assert_string_equal(s.data, "no kind measured");
    tg_buf_free(&s);
}

static void test_learn_and_forget(void **state)
{
    (void)state;
    tg_mbx_unload();
    tg_mbx_fake_reset();
    tg_cmb_calib_pin(NULL);
    /* Nothing loaded: nothing learnt. */
    tg_cmb_calib_learn(NULL, TG_CMB_KIND_ALL);
    assert_false(tg_cmb_calib_model()->valid[TG_CMB_KIND_X25519_KEYGEN]);
    assert_int_equal(tg_mbx_install(tg_mbx_fake_api()), TG_OK);
    tg_cmb_calib_learn(NULL, TG_CMB_KIND_BIT(TG_CMB_KIND_X25519_KEYGEN));
    tg_cmb_calib_learn(keys[0], TG_CMB_KIND_BIT(TG_CMB_KIND_RSA2048));
    const struct tg_cmb_calib *m = tg_cmb_calib_model();
    assert_true(m->valid[TG_CMB_KIND_X25519_KEYGEN]);
    assert_true(m->valid[TG_CMB_KIND_RSA2048]);
    assert_false(m->valid[TG_CMB_KIND_X25519_DERIVE]); /* not asked for */
    /* batch_from follows the learnt costs, whatever they are. */
    for (int k = 0; k < TG_CMB_KIND_COUNT; k++) {
        size_t want = m->valid[k] ? tg_cmb_calib_breakeven(m, (enum tg_cmb_kind)k)
                                  : TG_CMB_CALIB_DEFAULT_BATCH_FROM;
        assert_int_equal(tg_cmb_calib_batch_from((enum tg_cmb_kind)k), want);
    }
    /* A kind already known is not measured again. */
    struct tg_cmb_calib before = *m;
    unsigned calls = tg_mbx_fake_stats()->calls[TG_MBX_FAKE_X25519_PUBLIC_KEY];
    tg_cmb_calib_learn(NULL, TG_CMB_KIND_BIT(TG_CMB_KIND_X25519_KEYGEN));
    assert_int_equal(tg_mbx_fake_stats()->calls[TG_MBX_FAKE_X25519_PUBLIC_KEY], calls);
    assert_memory_equal(m, &before, sizeof(before));
    tg_cmb_calib_forget();
    assert_false(tg_cmb_calib_model()->valid[TG_CMB_KIND_RSA2048]);
    assert_false(tg_cmb_calib_model()->valid[TG_CMB_KIND_X25519_KEYGEN]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_interpolates),
        cmocka_unit_test(test_breakeven),
        TG_MBX_BOTH_WITH(test_measure, teardown),
        cmocka_unit_test_teardown(test_measure_lane_errors, teardown),
        cmocka_unit_test_teardown(test_pin, teardown),
        cmocka_unit_test_teardown(test_learn_and_forget, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
