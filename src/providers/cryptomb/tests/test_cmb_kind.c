/* Operation kinds: names (also metric labels), the table, and the
 * classification of keys, groups and operations. */
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <string.h>

#include "providers/cryptomb/tg_cmb_kind.h"
#include "tg_test_util.h"

static struct tg_pkey *keys[6]; /* RSA-2048, P-256, P-384, P-521, RSA-2049, RSA-3072 */

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
    keys[4] = wrap(tg_test_rsa_key(1025, 1024, 65537)); /* 2049 bits */
    keys[5] = wrap(EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072));
    for (size_t i = 0; i < TG_ARRAY_LEN(keys); i++) {
        if (keys[i] == NULL)
            return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < TG_ARRAY_LEN(keys); i++)
        tg_pkey_unref(keys[i]);
    return 0;
}

static void test_names(void **state)
{
    (void)state;
    /* The labels are the op label of tlsgate_cryptomb_cost_microseconds. */
    static const char *const want[TG_CMB_KIND_COUNT] = {
        "RSA-2048 sign",    "RSA-3072 sign", "RSA-4096 sign", "ECDSA P-256 sign",
        "ECDSA P-384 sign", "X25519 keygen", "X25519 derive", "P-256 keygen",
        "P-256 derive",     "P-384 keygen",  "P-384 derive"};
    for (int k = 0; k < TG_CMB_KIND_COUNT; k++)
        assert_string_equal(tg_cmb_kind_name((enum tg_cmb_kind)k), want[k]);
    assert_string_equal(tg_cmb_kind_name(TG_CMB_KIND_NONE), "unknown");
    assert_string_equal(tg_cmb_kind_name((enum tg_cmb_kind) - 1), "unknown");
    assert_null(tg_cmb_kind_info(TG_CMB_KIND_NONE));
    assert_int_equal(TG_CMB_KIND_ALL, (1u << 11) - 1);
}

static void test_table(void **state)
{
    (void)state;
    const struct tg_cmb_kind_info *i = tg_cmb_kind_info(TG_CMB_KIND_RSA4096);
    assert_int_equal(i->type, TG_KEYOP_RSA_SIGN);
    assert_int_equal(i->rsa_bits, 4096);
    i = tg_cmb_kind_info(TG_CMB_KIND_ECDSA_P384);
    assert_int_equal(i->type, TG_KEYOP_ECDSA_SIGN);
    assert_int_equal(i->curve_nid, NID_secp384r1);
    i = tg_cmb_kind_info(TG_CMB_KIND_P256_DERIVE);
    assert_int_equal(i->type, TG_KEYOP_KX_DERIVE);
    assert_int_equal(i->group, TG_GROUP_P256);
    /* Every kind is the classification of what it describes. */
    for (int k = 0; k < TG_CMB_KIND_COUNT; k++) {
        i = tg_cmb_kind_info((enum tg_cmb_kind)k);
        if (i->type == TG_KEYOP_KX_KEYGEN)
            assert_int_equal(tg_cmb_kind_keygen(i->group), k);
        else if (i->type == TG_KEYOP_KX_DERIVE)
            assert_int_equal(tg_cmb_kind_derive(i->group), k);
        else
            assert_true(i->rsa_bits != 0 || i->curve_nid != 0);
    }
}

static void test_keys_and_groups(void **state)
{
    (void)state;
    assert_int_equal(tg_cmb_kind_for_key(keys[0]), TG_CMB_KIND_RSA2048);
    assert_int_equal(tg_cmb_kind_for_key(keys[1]), TG_CMB_KIND_ECDSA_P256);
    assert_int_equal(tg_cmb_kind_for_key(keys[2]), TG_CMB_KIND_ECDSA_P384);
    assert_int_equal(tg_cmb_kind_for_key(keys[5]), TG_CMB_KIND_RSA3072);
    /* Not batched: P-521, RSA of an odd size. */
    assert_int_equal(tg_cmb_kind_for_key(keys[3]), TG_CMB_KIND_NONE);
    assert_int_equal(tg_cmb_kind_for_key(keys[4]), TG_CMB_KIND_NONE);
    assert_int_equal(tg_cmb_kind_for_key(NULL), TG_CMB_KIND_NONE);
    assert_int_equal(tg_cmb_kind_keygen(TG_GROUP_X25519), TG_CMB_KIND_X25519_KEYGEN);
    assert_int_equal(tg_cmb_kind_derive(TG_GROUP_P384), TG_CMB_KIND_P384_DERIVE);
    assert_int_equal(tg_cmb_kind_keygen(TG_GROUP_P521), TG_CMB_KIND_NONE);
    assert_int_equal(tg_cmb_kind_derive(TG_GROUP_NONE), TG_CMB_KIND_NONE);
}

static void test_ops(void **state)
{
    (void)state;
    struct tg_keyop op;
    struct tg_kxkey kx;
    memset(&kx, 0, sizeof(kx));
    tg_keyop_init(&op, TG_KEYOP_RSA_SIGN);
    op.pkey = keys[0];
    assert_int_equal(tg_cmb_kind_for_op(&op), TG_CMB_KIND_RSA2048);
    tg_keyop_init(&op, TG_KEYOP_ECDSA_SIGN);
    op.pkey = keys[2];
    assert_int_equal(tg_cmb_kind_for_op(&op), TG_CMB_KIND_ECDSA_P384);
    op.pkey = keys[3];
    assert_int_equal(tg_cmb_kind_for_op(&op), TG_CMB_KIND_NONE);
    tg_keyop_init(&op, TG_KEYOP_KX_KEYGEN);
    assert_int_equal(tg_cmb_kind_for_op(&op), TG_CMB_KIND_NONE); /* no key to fill */
    kx.group = TG_GROUP_P256;
    op.kx = &kx;
    assert_int_equal(tg_cmb_kind_for_op(&op), TG_CMB_KIND_P256_KEYGEN);
    tg_keyop_init(&op, TG_KEYOP_KX_DERIVE);
    kx.group = TG_GROUP_X25519;
    op.kx = &kx;
    assert_int_equal(tg_cmb_kind_for_op(&op), TG_CMB_KIND_X25519_DERIVE);
    kx.group = TG_GROUP_P521;
    assert_int_equal(tg_cmb_kind_for_op(&op), TG_CMB_KIND_NONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_keys_and_groups),
        cmocka_unit_test(test_ops),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
