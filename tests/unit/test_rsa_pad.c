/* EMSA-PKCS1-v1_5 and EMSA-PSS encodings, checked against OpenSSL: PKCS#1
 * v1.5 must be byte-identical to EVP_PKEY_sign (deterministic), PSS must
 * verify with OpenSSL's PSS verification for every salt length. */
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <stdlib.h>
#include <string.h>

#include "keyprov/tg_keyprov.h"
#include "keyprov/tg_rsa_pad.h"
#include "tg_test_util.h"

/* Modulus sizes: the usual ones, plus 2049 (modBits - 1 a multiple of 8:
 * PSS then has emLen = k - 1 and a leading zero octet) and 2050, 2055. */
static const int key_bits[] = {2048, 2049, 2050, 2055, 3072, 4096};
#define NKEYS (sizeof(key_bits) / sizeof(key_bits[0]))
static EVP_PKEY *keys[NKEYS];
static size_t nkeys;

/* Valgrind is slow at RSA key generation: fewer keys there. */
static bool slow_env(void)
{
    const char *p = getenv("LD_PRELOAD");
    return (p != NULL && strstr(p, "vgpreload") != NULL) || getenv("TG_TEST_QUICK") != NULL;
}

static int group_setup(void **state)
{
    (void)state;
    nkeys = slow_env() ? 2 : NKEYS;
    for (size_t i = 0; i < nkeys; i++) {
        /* OpenSSL's generator does not make odd sizes such as 2049 bits. */
        int b = key_bits[i];
        keys[i] = tg_test_rsa_key(b - b / 2, b / 2, 65537);
        if (keys[i] == NULL || EVP_PKEY_get_bits(keys[i]) != b)
            return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < nkeys; i++)
        EVP_PKEY_free(keys[i]);
    return 0;
}

static const EVP_MD *md_of(const char *name)
{
    const EVP_MD *md = EVP_get_digestbyname(name);
    assert_non_null(md);
    return md;
}

/* The raw private operation: em^d mod n. */
static void raw_sign(EVP_PKEY *pk, const unsigned char *em, size_t k, unsigned char *sig)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
    size_t len = k;
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING), 1);
    assert_int_equal(EVP_PKEY_sign(ctx, sig, &len, em, k), 1);
    assert_int_equal(len, k);
    EVP_PKEY_CTX_free(ctx);
}

static void test_pkcs1_identical_to_openssl(void **state)
{
    (void)state;
    static const char *const mds[] = {"SHA1", "SHA224", "SHA256", "SHA384", "SHA512"};
    unsigned char dgst[64], em[512 + 16], mine[512], theirs[512], rec[512];
    for (size_t ki = 0; ki < nkeys; ki++) {
        int bits = key_bits[ki];
        size_t k = ((size_t)bits + 7) / 8;
        for (size_t mi = 0; mi < TG_ARRAY_LEN(mds); mi++) {
            const EVP_MD *md = md_of(mds[mi]);
            size_t dlen = (size_t)EVP_MD_get_size(md);
            assert_int_equal(RAND_bytes(dgst, (int)dlen), 1);
            memset(em, 0xA5, sizeof(em));
            assert_int_equal(tg_rsa_pad_pkcs1(em, k, bits, md, dgst, dlen), TG_OK);
            for (size_t i = k; i < sizeof(em); i++)
                assert_int_equal(em[i], 0xA5); /* nothing past k */
            assert_int_equal(em[0], 0x00);
            assert_int_equal(em[1], 0x01);
            raw_sign(keys[ki], em, k, mine);

            EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, keys[ki], NULL);
            size_t len = sizeof(theirs);
            assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
            assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING), 1);
            assert_int_equal(EVP_PKEY_CTX_set_signature_md(ctx, md), 1);
            assert_int_equal(EVP_PKEY_sign(ctx, theirs, &len, dgst, dlen), 1);
            EVP_PKEY_CTX_free(ctx);
            assert_int_equal(len, k);
            assert_memory_equal(mine, theirs, k);

            /* And OpenSSL's own encoded message is ours. */
            ctx = EVP_PKEY_CTX_new_from_pkey(NULL, keys[ki], NULL);
            len = sizeof(rec);
            assert_int_equal(EVP_PKEY_verify_recover_init(ctx), 1);
            assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING), 1);
            assert_int_equal(EVP_PKEY_verify_recover(ctx, rec, &len, theirs, k), 1);
            EVP_PKEY_CTX_free(ctx);
            assert_int_equal(len, k);
            assert_memory_equal(rec, em, k);

            /* Through the dispatcher too. */
            unsigned char em2[512];
            assert_int_equal(
                tg_rsa_pad_encode(em2, k, bits, TG_RSA_PAD_PKCS1, md, NULL, 0, dgst, dlen), TG_OK);
            assert_memory_equal(em2, em, k);
        }
    }
}

static void pss_verify(EVP_PKEY *pk, const EVP_MD *md, const EVP_MD *mgf1, int saltlen,
                       const unsigned char *sig, size_t siglen, const unsigned char *dgst,
                       size_t dlen, int expect)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
    assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING), 1);
    assert_int_equal(EVP_PKEY_CTX_set_signature_md(ctx, md), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, mgf1), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, saltlen), 1);
    assert_int_equal(EVP_PKEY_verify(ctx, sig, siglen, dgst, dlen), expect);
    EVP_PKEY_CTX_free(ctx);
    ERR_clear_error();
}

static void test_pss_verifies_with_openssl(void **state)
{
    (void)state;
    static const char *const mds[][2] = {{"SHA256", "SHA256"}, {"SHA384", "SHA384"},
                                         {"SHA512", "SHA512"}, {"SHA1", "SHA1"},
                                         {"SHA256", "SHA1"},   {"SHA384", "SHA512"}};
    unsigned char dgst[64], em[512 + 16], sig[512];
    for (size_t ki = 0; ki < nkeys; ki++) {
        int bits = key_bits[ki];
        size_t k = ((size_t)bits + 7) / 8;
        for (size_t mi = 0; mi < TG_ARRAY_LEN(mds); mi++) {
            const EVP_MD *md = md_of(mds[mi][0]), *mgf1 = md_of(mds[mi][1]);
            int hlen = EVP_MD_get_size(md);
            int max = tg_rsa_pad_pss_max_saltlen(bits, md);
            assert_int_equal(max, (int)((bits - 1 + 7) / 8) - hlen - 2);
            const int salts[] = {0, hlen, max};
            for (size_t si = 0; si < TG_ARRAY_LEN(salts); si++) {
                int saltlen = salts[si];
                assert_int_equal(RAND_bytes(dgst, hlen), 1);
                memset(em, 0xA5, sizeof(em));
                assert_int_equal(tg_rsa_pad_pss(em, k, bits, md, mgf1, dgst, (size_t)hlen, saltlen),
                                 TG_OK);
                for (size_t i = k; i < sizeof(em); i++)
                    assert_int_equal(em[i], 0xA5);
                assert_int_equal(em[k - 1], 0xbc);
                if ((bits - 1) % 8 == 0)
                    assert_int_equal(em[0], 0x00); /* emLen = k - 1 */
                else                               /* the top 8 * emLen - emBits bits are clear */
                    assert_int_equal(em[0] >> ((bits - 1) % 8), 0);
                raw_sign(keys[ki], em, k, sig);
                pss_verify(keys[ki], md, mgf1, saltlen, sig, k, dgst, (size_t)hlen, 1);
                /* A wrong salt length must not verify (the check is real). */
                pss_verify(keys[ki], md, mgf1, saltlen == 0 ? 1 : saltlen - 1, sig, k, dgst,
                           (size_t)hlen, 0);
                /* Auto-detected salt length too. */
                pss_verify(keys[ki], md, mgf1, RSA_PSS_SALTLEN_AUTO, sig, k, dgst, (size_t)hlen, 1);
            }
        }
    }
}

static void test_pss_salt_is_random(void **state)
{
    (void)state;
    const EVP_MD *md = md_of("SHA256");
    unsigned char dgst[32] = {1, 2, 3}, a[256], b[256];
    assert_int_equal(tg_rsa_pad_pss(a, 256, 2048, md, NULL, dgst, 32, 32), TG_OK);
    assert_int_equal(tg_rsa_pad_pss(b, 256, 2048, md, NULL, dgst, 32, 32), TG_OK);
    assert_memory_not_equal(a, b, 256);
    /* Without salt the encoding is deterministic. */
    assert_int_equal(tg_rsa_pad_pss(a, 256, 2048, md, NULL, dgst, 32, 0), TG_OK);
    assert_int_equal(tg_rsa_pad_pss(b, 256, 2048, md, NULL, dgst, 32, 0), TG_OK);
    assert_memory_equal(a, b, 256);
    /* Through the dispatcher, with the op's mode number. */
    assert_int_equal(tg_rsa_pad_encode(b, 256, 2048, TG_RSA_PAD_PSS, md, md, 0, dgst, 32), TG_OK);
    assert_memory_equal(a, b, 256);
}

static void assert_zeroed(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(p[i], 0);
}

static void test_invalid_lengths(void **state)
{
    (void)state;
    const EVP_MD *sha256 = md_of("SHA256"), *sha512 = md_of("SHA512");
    unsigned char dgst[64] = {0};
    unsigned char em[512 + 16];

    /* Digest length must match the digest. */
    memset(em, 0xA5, sizeof(em));
    assert_int_equal(tg_rsa_pad_pkcs1(em, 256, 2048, sha256, dgst, 31), TG_EINVAL);
    assert_zeroed(em, 256);
    assert_int_equal(em[256], 0xA5);
    assert_int_equal(tg_rsa_pad_pkcs1(em, 256, 2048, sha256, dgst, 64), TG_EINVAL);
    assert_int_equal(tg_rsa_pad_pss(em, 256, 2048, sha256, NULL, dgst, 48, 0), TG_EINVAL);
    assert_int_equal(tg_rsa_pad_pss(em, 256, 2048, sha256, NULL, dgst, 0, 0), TG_EINVAL);

    /* k must be the modulus length. */
    assert_int_equal(tg_rsa_pad_pkcs1(em, 255, 2048, sha256, dgst, 32), TG_EINVAL);
    assert_int_equal(tg_rsa_pad_pkcs1(em, 257, 2048, sha256, dgst, 32), TG_EINVAL);
    assert_int_equal(tg_rsa_pad_pss(em, 256, 2049, sha256, NULL, dgst, 32, 0), TG_EINVAL);
    assert_int_equal(tg_rsa_pad_pss(em, 64, 511, sha256, NULL, dgst, 32, 0), TG_EINVAL);
    assert_int_equal(tg_rsa_pad_pkcs1(em, 2049, 16392, sha256, dgst, 32), TG_EINVAL);

    /* PKCS#1: a 512-bit modulus cannot hold a SHA-512 DigestInfo (83 + 11). */
    memset(em, 0xA5, sizeof(em));
    assert_int_equal(tg_rsa_pad_pkcs1(em, 64, 512, sha512, dgst, 64), TG_EINVAL);
    assert_zeroed(em, 64);
    assert_int_equal(em[64], 0xA5);
    /* ... but SHA-256 fits (51 + 11 <= 64). */
    assert_int_equal(tg_rsa_pad_pkcs1(em, 64, 512, sha256, dgst, 32), TG_OK);

    /* PSS salt: negative, one past the maximum, no room at all. */
    int max = tg_rsa_pad_pss_max_saltlen(2048, sha256);
    assert_int_equal(max, 222);
    assert_int_equal(tg_rsa_pad_pss(em, 256, 2048, sha256, NULL, dgst, 32, -1), TG_EINVAL);
    assert_int_equal(tg_rsa_pad_pss(em, 256, 2048, sha256, NULL, dgst, 32, -2), TG_EINVAL);
    memset(em, 0xA5, sizeof(em));
    assert_int_equal(tg_rsa_pad_pss(em, 256, 2048, sha256, NULL, dgst, 32, max + 1), TG_EINVAL);
    assert_zeroed(em, 256);
    assert_int_equal(em[256], 0xA5);
    assert_int_equal(tg_rsa_pad_pss(em, 256, 2048, sha256, NULL, dgst, 32, max), TG_OK);
    assert_int_equal(tg_rsa_pad_pss(em, 256, 2048, sha256, NULL, dgst, 32, INT32_MAX), TG_EINVAL);
    assert_int_equal(tg_rsa_pad_pss_max_saltlen(512, sha512), -1);
    assert_int_equal(tg_rsa_pad_pss(em, 64, 512, sha512, NULL, dgst, 64, 0), TG_EINVAL);
    assert_int_equal(tg_rsa_pad_pss_max_saltlen(2048, NULL), -1);

    /* NULL arguments. */
    assert_int_equal(tg_rsa_pad_pkcs1(NULL, 256, 2048, sha256, dgst, 32), TG_EINVAL);
    assert_int_equal(tg_rsa_pad_pkcs1(em, 256, 2048, NULL, dgst, 32), TG_EINVAL);
    assert_int_equal(tg_rsa_pad_pkcs1(em, 256, 2048, sha256, NULL, 32), TG_EINVAL);
    assert_int_equal(tg_rsa_pad_pss(NULL, 256, 2048, sha256, NULL, dgst, 32, 0), TG_EINVAL);
    assert_int_equal(tg_rsa_pad_pss(em, 256, 2048, NULL, NULL, dgst, 32, 0), TG_EINVAL);

    /* Unknown padding mode. */
    memset(em, 0xA5, sizeof(em));
    assert_int_equal(tg_rsa_pad_encode(em, 256, 2048, 3, sha256, NULL, 0, dgst, 32), TG_EINVAL);
    assert_zeroed(em, 256);
}

static void test_unsupported_digest(void **state)
{
    (void)state;
    unsigned char dgst[64] = {0}, em[256];
    /* No DigestInfo table entry: the caller finishes in software. */
    EVP_MD *sha3 = EVP_MD_fetch(NULL, "SHA3-256", NULL);
    assert_non_null(sha3);
    assert_int_equal(tg_rsa_pad_pkcs1(em, 256, 2048, sha3, dgst, 32), TG_EUNAVAIL);
    /* PSS works with any digest. */
    assert_int_equal(tg_rsa_pad_pss(em, 256, 2048, sha3, NULL, dgst, 32, 32), TG_OK);
    EVP_MD_free(sha3);
    EVP_MD *md5 = EVP_MD_fetch(NULL, "MD5", NULL);
    if (md5 != NULL) {
        assert_int_equal(tg_rsa_pad_pkcs1(em, 256, 2048, md5, dgst, 16), TG_EUNAVAIL);
        EVP_MD_free(md5);
    }
    /* Fetched (not legacy) digests are recognised too. */
    EVP_MD *sha384 = EVP_MD_fetch(NULL, "SHA2-384", NULL);
    assert_int_equal(tg_rsa_pad_pkcs1(em, 256, 2048, sha384, dgst, 48), TG_OK);
    EVP_MD_free(sha384);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pkcs1_identical_to_openssl),
        cmocka_unit_test(test_pss_verifies_with_openssl),
        cmocka_unit_test(test_pss_salt_is_random),
        cmocka_unit_test(test_invalid_lengths),
        cmocka_unit_test(test_unsupported_digest),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
