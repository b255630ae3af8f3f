/* Software key operations (src/keyprov/tg_keyop_sw.c): the result check
 * providers run before they release a signature, tg_keyop_verify_sw. */
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <string.h>

#include "keyprov/tg_keyprov.h"
#include "keyprov/tg_keyprov_internal.h"
#include "providers/deferred/tg_deferred.h"
#include "providers/software/tg_software.h"
#include "tg_test_util.h"

static struct tg_pkey *wrap(EVP_PKEY *evp)
{
    struct tg_pkey *k = NULL;
    char why[256];
    assert_non_null(evp);
    assert_int_equal(tg_pkey_from_evp(evp, &k, why, sizeof(why)), TG_OK);
    EVP_PKEY_free(evp);
    return k;
}

static void test_verify_ecdsa(void **state)
{
    (void)state;
    static const char *const curves[] = {"P-256", "P-384", "P-521"};
    for (size_t c = 0; c < TG_ARRAY_LEN(curves); c++) {
        struct tg_pkey *key = wrap(EVP_EC_gen(curves[c]));
        struct tg_pkey *other = wrap(EVP_EC_gen(curves[c]));
        struct tg_keyop op;
        tg_keyop_init(&op, TG_KEYOP_ECDSA_SIGN);
        op.pkey = key;
        op.inlen = 48;
        memset(op.in, 0x5a, op.inlen);
        assert_int_equal(tg_keyop_compute_sw(&op), TG_OK);
        /* Twice: the second one reuses the cached context. */
        assert_int_equal(tg_keyop_verify_sw(&op, op.out, op.outlen), TG_OK);
        assert_int_equal(tg_keyop_verify_sw(&op, op.out, op.outlen), TG_OK);
        /* A signature that does not verify is reported, and only its own
         * errors leave the queue: what was there before stays. */
        ERR_raise_data(ERR_LIB_USER, 42, "earlier");
        unsigned char bad[TG_KEYOP_OUT_MAX];
        memcpy(bad, op.out, op.outlen);
        bad[op.outlen - 3] ^= 0x04;
        assert_int_equal(tg_keyop_verify_sw(&op, bad, op.outlen), TG_ECRYPTO);
        assert_int_equal(ERR_GET_REASON(ERR_peek_last_error()), 42);
        ERR_clear_error();
        assert_int_equal(tg_keyop_verify_sw(&op, op.out, op.outlen - 1), TG_ECRYPTO);
        /* Another key's signature does not verify either. */
        struct tg_keyop o2 = op;
        o2.pkey = other;
        assert_int_equal(tg_keyop_verify_sw(&o2, op.out, op.outlen), TG_ECRYPTO);
        assert_int_equal(ERR_peek_error(), 0);
        tg_pkey_unref(key);
        tg_pkey_unref(other);
    }
}

static void test_verify_refuses_other_ops(void **state)
{
    (void)state;
    struct tg_pkey *rsa = wrap(EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048));
    struct tg_keyop op;
    tg_keyop_init(&op, TG_KEYOP_RSA_SIGN);
    op.pkey = rsa;
    assert_int_equal(tg_keyop_verify_sw(&op, op.out, 256), TG_EINVAL);
    tg_keyop_init(&op, TG_KEYOP_ECDSA_SIGN);
    op.pkey = rsa; /* not an EC key */
    assert_int_equal(tg_keyop_verify_sw(&op, op.out, 64), TG_EINVAL);
    op.pkey = NULL;
    assert_int_equal(tg_keyop_verify_sw(&op, op.out, 64), TG_EINVAL);
    tg_pkey_unref(rsa);
}

static int teardown(void **state)
{
    (void)state;
    tg_keyop_sw_thread_cleanup(); /* the cached contexts and their key references */
    return 0;
}

int main(void)
{
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider, &tg_deferred_provider);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verify_ecdsa),
        cmocka_unit_test(test_verify_refuses_other_ops),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
