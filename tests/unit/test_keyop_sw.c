/* Software key operations (src/keyprov/tg_keyop_sw.c): the result check
 * providers run before they release a signature, tg_keyop_verify_sw; key
 * exchange with twins rebuilt from a key's halves (src/keyprov/tg_pkey.c). */
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

/* A key-exchange key without its software twin, as a multi-buffer batch
 * leaves one: the halves only (the private one when with_priv). */
static struct tg_kxkey halves_of(const struct tg_kxkey *k, bool with_priv)
{
    struct tg_kxkey h = *k;
    h.sw = NULL;
    if (!with_priv) {
        memset(h.priv, 0, sizeof(h.priv));
        h.has_priv = false;
    }
    return h;
}

static void derive(struct tg_kxkey *mine, const struct tg_kxkey *peer, unsigned char *out,
                   size_t *outlen)
{
    struct tg_keyop op;
    tg_keyop_init(&op, TG_KEYOP_KX_DERIVE);
    op.kx = mine;
    op.peer = peer;
    assert_int_equal(tg_keyop_compute_sw(&op), TG_OK);
    memcpy(out, op.out, op.outlen);
    *outlen = op.outlen;
}

/* Twins rebuilt from the halves (both, or the private one alone) derive the
 * same secret as the keys OpenSSL generated; for X25519 the public half is
 * imported, not recomputed, when it is known. */
static void test_kx_twin_from_halves(void **state)
{
    (void)state;
    static const enum tg_group groups[] = {TG_GROUP_X25519, TG_GROUP_P256, TG_GROUP_P384};
    for (size_t g = 0; g < TG_ARRAY_LEN(groups); g++) {
        struct tg_kxkey a = {.group = groups[g]}, b = {.group = groups[g]};
        struct tg_keyop op;
        tg_keyop_init(&op, TG_KEYOP_KX_KEYGEN);
        op.kx = &a;
        assert_int_equal(tg_keyop_compute_sw(&op), TG_OK);
        op.kx = &b;
        assert_int_equal(tg_keyop_compute_sw(&op), TG_OK);

        unsigned char ref[80], got[80];
        size_t reflen, gotlen;
        derive(&a, &b, ref, &reflen); /* OpenSSL's own twins */
        assert_int_equal(reflen, tg_group_secretlen(groups[g]));

        struct tg_kxkey a2 = halves_of(&a, true), b2 = halves_of(&b, false);
        derive(&a2, &b2, got, &gotlen);
        assert_memory_equal(got, ref, reflen);
        assert_int_equal(gotlen, reflen);
        if (groups[g] == TG_GROUP_X25519) {
            /* The private half alone: OpenSSL recomputes the public one. */
            struct tg_kxkey a3 = halves_of(&a, true);
            a3.has_pub = false;
            struct tg_kxkey b3 = halves_of(&b, false);
            derive(&a3, &b3, got, &gotlen);
            assert_memory_equal(got, ref, reflen);
            tg_kxkey_clear(&a3);
            tg_kxkey_clear(&b3);
        }
        /* The other way round, from b's private half and a's public one. */
        struct tg_kxkey b4 = halves_of(&b, true), a4 = halves_of(&a, false);
        derive(&b4, &a4, got, &gotlen);
        assert_memory_equal(got, ref, reflen);
        tg_kxkey_clear(&a);
        tg_kxkey_clear(&b);
        tg_kxkey_clear(&a2);
        tg_kxkey_clear(&b2);
        tg_kxkey_clear(&a4);
        tg_kxkey_clear(&b4);
    }
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
        cmocka_unit_test(test_kx_twin_from_halves),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
