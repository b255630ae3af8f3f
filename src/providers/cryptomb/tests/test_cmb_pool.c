/* The ephemeral key pool (tg_cmb_pool.c): refill by keygen batches with
 * failed lanes, compaction, take, and that no private key stays behind in a
 * slot that does not hold a ready key. The arithmetic is the fake's
 * (tests/tg_mbx_fake.c), whose knobs fail lanes. */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "providers/cryptomb/tg_cmb_pool.h"
#include "providers/cryptomb/tg_mbx.h"
#include "tg_mbx_fake.h"
#include "tg_test_util.h"

static bool all_zero(const void *p, size_t len)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < len; i++) {
        if (b[i] != 0)
            return false;
    }
    return true;
}

/* Every slot from n on is zero; the ready keys are real, distinct pairs. */
static void check_pool(const struct tg_cmb_pool *p, size_t n)
{
    assert_int_equal(p->n, n);
    for (size_t i = 0; i < p->n; i++) {
        const struct tg_kxkey *k = &p->keys[i];
        assert_true(k->has_priv && k->has_pub);
        assert_int_equal(k->group, p->group);
        assert_int_equal(k->privlen, tg_group_privlen(p->group));
        assert_int_equal(k->publen, tg_group_publen(p->group));
        assert_false(all_zero(k->priv, k->privlen));
        for (size_t j = 0; j < i; j++)
            assert_memory_not_equal(k->priv, p->keys[j].priv, k->privlen);
    }
    for (size_t i = p->n; i < p->cap; i++) {
        if (!all_zero(&p->keys[i], sizeof(p->keys[i])))
            fail_msg("slot %zu of %zu (ready: %zu) is not wiped", i, p->cap, p->n);
    }
}

/* A refill whose batch loses lanes 2 and 5 packs the six good keys at the
 * front and leaves nothing of the moved ones behind; a second refill adds a
 * full batch; a take wipes its slot. X25519 lanes fail with a status, EC
 * lanes are left unwritten while reported OK (crypto_mb's own failure mode
 * for EC public keys). */
static void test_refill_compacts_and_wipes(void **state)
{
    (void)state;
    static const enum tg_group groups[] = {TG_GROUP_X25519, TG_GROUP_P256, TG_GROUP_P384};
    for (size_t gi = 0; gi < TG_ARRAY_LEN(groups); gi++) {
        enum tg_group g = groups[gi];
        tg_mbx_fake_reset();
        assert_int_equal(tg_mbx_install(tg_mbx_fake_api()), TG_OK);
        if (g == TG_GROUP_X25519) {
            tg_mbx_fake_fail_lane(TG_MBX_FAKE_X25519_PUBLIC_KEY, 2,
                                  TG_MBX_STATUS_MISMATCH_PARAM_ERR);
            tg_mbx_fake_fail_lane(TG_MBX_FAKE_X25519_PUBLIC_KEY, 5,
                                  TG_MBX_STATUS_MISMATCH_PARAM_ERR);
        } else {
            tg_mbx_fake_skip_lane(TG_MBX_FAKE_EC_PUBLIC_KEY, 2);
            tg_mbx_fake_skip_lane(TG_MBX_FAKE_EC_PUBLIC_KEY, 5);
        }
        struct tg_cmb_pool p;
        memset(&p, 0, sizeof(p));
        assert_int_equal(tg_cmb_pool_reserve(&p, g, 2 * TG_MBX_LANES + 4), TG_OK);
        check_pool(&p, 0);
        assert_int_equal(tg_cmb_pool_refill(&p), TG_MBX_LANES - 2);
        check_pool(&p, TG_MBX_LANES - 2);
        /* Healthy again: one whole batch more. */
        tg_mbx_fake_reset();
        assert_int_equal(tg_cmb_pool_refill(&p), TG_MBX_LANES);
        check_pool(&p, 2 * TG_MBX_LANES - 2);
        /* No room for a whole batch: nothing runs. */
        assert_int_equal(tg_cmb_pool_refill(&p), 0);
        assert_int_equal(
            tg_mbx_fake_stats()->calls[g == TG_GROUP_X25519 ? TG_MBX_FAKE_X25519_PUBLIC_KEY
                                                            : TG_MBX_FAKE_EC_PUBLIC_KEY],
            1);
        /* Take: the newest key moves out, its slot is wiped. */
        struct tg_kxkey k, want = p.keys[p.n - 1];
        memset(&k, 0, sizeof(k));
        assert_true(tg_cmb_pool_take(&p, &k));
        assert_memory_equal(k.priv, want.priv, k.privlen);
        OPENSSL_cleanse(&want, sizeof(want));
        check_pool(&p, 2 * TG_MBX_LANES - 3);
        tg_kxkey_clear(&k);
        tg_cmb_pool_free(&p);
        assert_null(p.keys);
        assert_int_equal(p.n + p.cap, 0);
        tg_mbx_unload();
    }
}

/* Every lane failing, or crypto_mb gone: nothing added, nothing left. */
static void test_refill_fails(void **state)
{
    (void)state;
    struct tg_cmb_pool p;
    memset(&p, 0, sizeof(p));
    tg_mbx_fake_reset();
    assert_int_equal(tg_mbx_install(tg_mbx_fake_api()), TG_OK);
    for (unsigned i = 0; i < TG_MBX_LANES; i++)
        tg_mbx_fake_fail_lane(TG_MBX_FAKE_X25519_PUBLIC_KEY, i, TG_MBX_STATUS_MISMATCH_PARAM_ERR);
    assert_int_equal(tg_cmb_pool_reserve(&p, TG_GROUP_X25519, 2 * TG_MBX_LANES), TG_OK);
    assert_int_equal(tg_cmb_pool_refill(&p), 0);
    check_pool(&p, 0);
    tg_mbx_unload();
    assert_int_equal(tg_cmb_pool_refill(&p), 0);
    check_pool(&p, 0);
    struct tg_kxkey k;
    memset(&k, 0, sizeof(k));
    assert_false(tg_cmb_pool_take(&p, &k));
    tg_cmb_pool_free(&p);
    struct tg_cmb_pool none;
    memset(&none, 0, sizeof(none));
    assert_int_equal(tg_cmb_pool_refill(&none), 0); /* no storage: no refill */
    tg_cmb_pool_free(&none);
}

/* More room later (a binding with a larger key_pool): the ready keys move
 * to the new storage unchanged, the new slots are zero; never shrinks. */
static void test_grow_keeps_keys(void **state)
{
    (void)state;
    tg_mbx_fake_reset();
    assert_int_equal(tg_mbx_install(tg_mbx_fake_api()), TG_OK);
    struct tg_cmb_pool p;
    memset(&p, 0, sizeof(p));
    assert_int_equal(tg_cmb_pool_reserve(&p, TG_GROUP_P256, TG_MBX_LANES), TG_OK);
    assert_int_equal(tg_cmb_pool_refill(&p), TG_MBX_LANES);
    unsigned char first[66];
    memcpy(first, p.keys[0].priv, sizeof(first));
    assert_int_equal(tg_cmb_pool_reserve(&p, TG_GROUP_X25519, 4 * TG_MBX_LANES), TG_OK);
    assert_int_equal(p.cap, 4 * TG_MBX_LANES);
    assert_int_equal(p.group, TG_GROUP_P256); /* the group stays */
    assert_memory_equal(p.keys[0].priv, first, sizeof(first));
    check_pool(&p, TG_MBX_LANES);
    assert_int_equal(tg_cmb_pool_reserve(&p, TG_GROUP_P256, 2), TG_OK);
    assert_int_equal(p.cap, 4 * TG_MBX_LANES);
    assert_int_equal(tg_cmb_pool_refill(&p), TG_MBX_LANES);
    check_pool(&p, 2 * TG_MBX_LANES);
    OPENSSL_cleanse(first, sizeof(first));
    tg_cmb_pool_free(&p);
    tg_mbx_unload();
}

static int teardown(void **state)
{
    (void)state;
    tg_mbx_unload();
    tg_mbx_fake_reset();
    tg_mbx_fake_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refill_compacts_and_wipes),
        cmocka_unit_test(test_refill_fails),
        cmocka_unit_test(test_grow_keeps_keys),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
