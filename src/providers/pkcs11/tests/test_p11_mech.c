/* What PKCS#11 answers mean (error mapping), which mechanisms a key signs
 * with (mechanism selection), and the bytes around C_Sign: DigestInfo for
 * CKM_RSA_PKCS, tlsgate's encodings for CKM_RSA_X_509, PSS parameters,
 * ECDSA digest truncation and r||s -> DER, checked against OpenSSL. */
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <string.h>

#include "keyprov/tg_keyprov.h"
#include "tg_test_util.h"
#include "providers/pkcs11/tg_p11_mech.h"

static void test_classify(void **state)
{
    (void)state;
    assert_int_equal(tg_p11_classify(CKR_OK), TG_P11_ACT_OK);
    assert_int_equal(tg_p11_classify(CKR_USER_NOT_LOGGED_IN), TG_P11_ACT_RELOGIN);
    assert_int_equal(tg_p11_classify(CKR_KEY_HANDLE_INVALID), TG_P11_ACT_REFIND);
    assert_int_equal(tg_p11_classify(CKR_OBJECT_HANDLE_INVALID), TG_P11_ACT_REFIND);
    static const CK_RV down[] = {CKR_DEVICE_REMOVED,         CKR_TOKEN_NOT_PRESENT,
                                 CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED,
                                 CKR_DEVICE_ERROR,           CKR_GENERAL_ERROR,
                                 CKR_TOKEN_NOT_RECOGNIZED,   CKR_CRYPTOKI_NOT_INITIALIZED};
    for (size_t i = 0; i < TG_ARRAY_LEN(down); i++)
        assert_int_equal(tg_p11_classify(down[i]), TG_P11_ACT_TOKEN_DOWN);
    static const CK_RV fail[] = {CKR_MECHANISM_INVALID, CKR_DATA_LEN_RANGE,
                                 CKR_FUNCTION_FAILED,   CKR_KEY_FUNCTION_NOT_PERMITTED,
                                 CKR_HOST_MEMORY,       0x80000001UL};
    for (size_t i = 0; i < TG_ARRAY_LEN(fail); i++)
        assert_int_equal(tg_p11_classify(fail[i]), TG_P11_ACT_FAIL);

    assert_true(tg_p11_pin_refused(CKR_PIN_INCORRECT));
    assert_true(tg_p11_pin_refused(CKR_PIN_LOCKED));
    assert_true(tg_p11_pin_refused(CKR_PIN_EXPIRED));
    assert_false(tg_p11_pin_refused(CKR_DEVICE_ERROR));
    assert_false(tg_p11_pin_refused(CKR_OK));
}

static void test_ckr_names(void **state)
{
    (void)state;
    char buf[40];
    assert_string_equal(tg_p11_ckr_name(CKR_PIN_INCORRECT), "CKR_PIN_INCORRECT");
    assert_string_equal(tg_p11_ckr_name(CKR_DEVICE_REMOVED), "CKR_DEVICE_REMOVED");
    assert_null(tg_p11_ckr_name(0x80000123UL));
    assert_null(tg_p11_ckr_name(CKR_OK));
    assert_string_equal(tg_p11_ckr_text(CKR_OK, buf, sizeof(buf)), "CKR_OK");
    assert_string_equal(tg_p11_ckr_text(0x80000123UL, buf, sizeof(buf)), "CKR_0x80000123");
    assert_string_equal(tg_p11_ckr_text(CKR_SESSION_HANDLE_INVALID, buf, sizeof(buf)),
                        "CKR_SESSION_HANDLE_INVALID");
    assert_int_equal(tg_p11_ckr_index(0x80000123UL), TG_P11_CKR_OTHER);
    assert_string_equal(tg_p11_ckr_index_name(TG_P11_CKR_OTHER), "other");
    assert_string_equal(tg_p11_ckr_index_name(tg_p11_ckr_index(CKR_DEVICE_ERROR)),
                        "CKR_DEVICE_ERROR");
}

static void test_plan(void **state)
{
    (void)state;
    struct tg_p11_plan p;
    char why[256];
    struct tg_p11_mechs all = {true, true, true, true};
    assert_int_equal(tg_p11_plan(true, &all, TG_P11_RSA_AUTO, &p, why, sizeof(why)), TG_OK);
    assert_int_equal(p.pkcs1, CKM_RSA_PKCS);
    assert_int_equal(p.pss, CKM_RSA_PKCS_PSS);
    assert_int_equal(tg_p11_plan(true, &all, TG_P11_RSA_RAW, &p, why, sizeof(why)), TG_OK);
    assert_int_equal(p.pkcs1, CKM_RSA_X_509);
    assert_int_equal(p.pss, CKM_RSA_X_509);
    /* No PSS on the token: raw RSA with tlsgate's EMSA-PSS. */
    struct tg_p11_mechs nopss = {true, false, true, true};
    assert_int_equal(tg_p11_plan(true, &nopss, TG_P11_RSA_AUTO, &p, why, sizeof(why)), TG_OK);
    assert_int_equal(p.pkcs1, CKM_RSA_PKCS);
    assert_int_equal(p.pss, CKM_RSA_X_509);
    assert_int_equal(tg_p11_plan(true, &nopss, TG_P11_RSA_NATIVE, &p, why, sizeof(why)),
                     TG_EUNAVAIL);
    assert_string_equal(why, "TLS 1.3 needs RSA-PSS signatures and the token offers no "
                             "CKM_RSA_PKCS_PSS (rsa_mechanism: native)");
    struct tg_p11_mechs pkcs_only = {true, false, false, true};
    assert_int_equal(tg_p11_plan(true, &pkcs_only, TG_P11_RSA_AUTO, &p, why, sizeof(why)),
                     TG_EUNAVAIL);
    assert_string_equal(why, "TLS 1.3 needs RSA-PSS signatures and the token offers neither "
                             "CKM_RSA_PKCS_PSS nor CKM_RSA_X_509");
    struct tg_p11_mechs pss_only = {false, true, false, false};
    assert_int_equal(tg_p11_plan(true, &pss_only, TG_P11_RSA_AUTO, &p, why, sizeof(why)),
                     TG_EUNAVAIL);
    assert_string_equal(why, "the token offers neither CKM_RSA_PKCS nor CKM_RSA_X_509 for "
                             "PKCS#1 v1.5 signatures");
    struct tg_p11_mechs x509_only = {false, false, true, false};
    assert_int_equal(tg_p11_plan(true, &x509_only, TG_P11_RSA_AUTO, &p, why, sizeof(why)), TG_OK);
    assert_int_equal(p.pkcs1, CKM_RSA_X_509);
    assert_int_equal(p.pss, CKM_RSA_X_509);
    assert_int_equal(tg_p11_plan(true, &pss_only, TG_P11_RSA_RAW, &p, why, sizeof(why)),
                     TG_EUNAVAIL);
    /* EC. */
    assert_int_equal(tg_p11_plan(false, &all, TG_P11_RSA_AUTO, &p, why, sizeof(why)), TG_OK);
    assert_int_equal(p.ecdsa, CKM_ECDSA);
    assert_int_equal(p.pkcs1, CK_UNAVAILABLE_INFORMATION);
    assert_int_equal(tg_p11_plan(false, &x509_only, TG_P11_RSA_AUTO, &p, why, sizeof(why)),
                     TG_EUNAVAIL);
    assert_string_equal(why, "the token offers no CKM_ECDSA signing");
}

static EVP_PKEY *g_rsa, *g_ec256, *g_ec384;

static int setup(void **state)
{
    (void)state;
    g_rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    g_ec256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    g_ec384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    return g_rsa && g_ec256 && g_ec384 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(g_rsa);
    EVP_PKEY_free(g_ec256);
    EVP_PKEY_free(g_ec384);
    return 0;
}

static void make_sig(struct tg_p11_sig *s, bool rsa, int pad, const EVP_MD *md)
{
    memset(s, 0, sizeof(*s));
    s->rsa = rsa;
    s->padding = pad;
    s->md = md;
    s->mgf1 = md;
    s->dlen = (size_t)EVP_MD_get_size(md);
    s->saltlen = (int)s->dlen;
    for (size_t i = 0; i < s->dlen; i++)
        s->digest[i] = (unsigned char)(i * 7 + 1);
}

/* What the token would do: the private operation the mechanism names. */
static size_t token_sign(EVP_PKEY *k, const struct tg_p11_call *c, unsigned char *out)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL);
    size_t outlen = 512;
    assert_true(EVP_PKEY_sign_init(ctx) > 0);
    if (c->mech.mechanism == CKM_RSA_X_509) {
        assert_true(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING) > 0);
    } else if (c->mech.mechanism == CKM_RSA_PKCS) {
        assert_true(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) > 0);
    } else if (c->mech.mechanism == CKM_ECDSA) {
        /* DER from OpenSSL -> the raw r || s a token returns */
        unsigned char der[160];
        size_t dl = sizeof(der);
        assert_true(EVP_PKEY_sign(ctx, der, &dl, c->data, c->datalen) > 0);
        const unsigned char *p = der;
        ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)dl);
        size_t f = ((size_t)EVP_PKEY_get_bits(k) + 7) / 8;
        BN_bn2binpad(ECDSA_SIG_get0_r(sig), out, (int)f);
        BN_bn2binpad(ECDSA_SIG_get0_s(sig), out + f, (int)f);
        ECDSA_SIG_free(sig);
        EVP_PKEY_CTX_free(ctx);
        return 2 * f;
    }
    assert_true(EVP_PKEY_sign(ctx, out, &outlen, c->data, c->datalen) > 0);
    EVP_PKEY_CTX_free(ctx);
    return outlen;
}

static void roundtrip(EVP_PKEY *k, const struct tg_p11_sig *s, const struct tg_p11_plan *plan)
{
    struct tg_p11_call c;
    int bits = EVP_PKEY_get_bits(k);
    assert_int_equal(tg_p11_prepare(s, plan, bits, &c), TG_OK);
    unsigned char raw[512], sig[600];
    size_t rawlen = token_sign(k, &c, raw), siglen = 0;
    assert_int_equal(tg_p11_finish(s, bits, raw, rawlen, sig, sizeof(sig), &siglen), TG_OK);
    assert_int_equal(tg_p11_verify(k, s, sig, siglen), TG_OK);
    /* One flipped bit: refused. */
    sig[siglen / 2] ^= 1;
    assert_int_equal(tg_p11_verify(k, s, sig, siglen), TG_ECRYPTO);
}

static void test_prepare_rsa(void **state)
{
    (void)state;
    struct tg_p11_sig s;
    struct tg_p11_call c;
    struct tg_p11_plan native = {CKM_RSA_PKCS, CKM_RSA_PKCS_PSS, CK_UNAVAILABLE_INFORMATION};
    struct tg_p11_plan raw = {CKM_RSA_X_509, CKM_RSA_X_509, CK_UNAVAILABLE_INFORMATION};

    /* CKM_RSA_PKCS gets DigestInfo || digest. */
    make_sig(&s, true, TG_RSA_PAD_PKCS1, EVP_sha256());
    assert_int_equal(tg_p11_prepare(&s, &native, 2048, &c), TG_OK);
    static const unsigned char sha256_prefix[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                                  0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                                  0x01, 0x05, 0x00, 0x04, 0x20};
    assert_int_equal(c.mech.mechanism, CKM_RSA_PKCS);
    assert_null(c.mech.pParameter);
    assert_int_equal(c.datalen, sizeof(sha256_prefix) + 32);
    assert_memory_equal(c.data, sha256_prefix, sizeof(sha256_prefix));
    assert_memory_equal(c.data + sizeof(sha256_prefix), s.digest, 32);
    roundtrip(g_rsa, &s, &native);

    /* CKM_RSA_PKCS_PSS gets the digest and its parameters. */
    make_sig(&s, true, TG_RSA_PAD_PSS, EVP_sha384());
    s.mgf1 = EVP_sha256();
    s.saltlen = 20;
    assert_int_equal(tg_p11_prepare(&s, &native, 2048, &c), TG_OK);
    assert_int_equal(c.mech.mechanism, CKM_RSA_PKCS_PSS);
    assert_ptr_equal(c.mech.pParameter, &c.pss);
    assert_int_equal(c.mech.ulParameterLen, sizeof(CK_RSA_PKCS_PSS_PARAMS));
    assert_int_equal(c.pss.hashAlg, CKM_SHA384);
    assert_int_equal(c.pss.mgf, CKG_MGF1_SHA256);
    assert_int_equal(c.pss.sLen, 20);
    assert_int_equal(c.datalen, 48);

    /* CKM_RSA_X_509: the whole encoded message, modulus-sized. */
    make_sig(&s, true, TG_RSA_PAD_PKCS1, EVP_sha1());
    assert_int_equal(tg_p11_prepare(&s, &raw, 2048, &c), TG_OK);
    assert_int_equal(c.mech.mechanism, CKM_RSA_X_509);
    assert_int_equal(c.datalen, 256);
    assert_int_equal(c.data[0], 0x00);
    assert_int_equal(c.data[1], 0x01);
    assert_int_equal(c.data[2], 0xff);
    roundtrip(g_rsa, &s, &raw);
    make_sig(&s, true, TG_RSA_PAD_PSS, EVP_sha256());
    assert_int_equal(tg_p11_prepare(&s, &raw, 2048, &c), TG_OK);
    assert_int_equal(c.datalen, 256);
    assert_int_equal(c.data[255], 0xbc); /* EMSA-PSS trailer */
    roundtrip(g_rsa, &s, &raw);
    make_sig(&s, true, TG_RSA_PAD_PSS, EVP_sha512());
    roundtrip(g_rsa, &s, &raw);
    make_sig(&s, true, TG_RSA_PAD_PKCS1, EVP_sha384());
    roundtrip(g_rsa, &s, &native);

    /* Refusals. */
    make_sig(&s, true, TG_RSA_PAD_PKCS1, EVP_sha256());
    s.dlen = 20; /* not SHA-256's length */
    assert_int_equal(tg_p11_prepare(&s, &native, 2048, &c), TG_EINVAL);
    make_sig(&s, true, 3, EVP_sha256());
    assert_int_equal(tg_p11_prepare(&s, &native, 2048, &c), TG_EINVAL);
    make_sig(&s, true, TG_RSA_PAD_PSS, EVP_sha256());
    struct tg_p11_plan none = {CKM_RSA_PKCS, CK_UNAVAILABLE_INFORMATION,
                               CK_UNAVAILABLE_INFORMATION};
    assert_int_equal(tg_p11_prepare(&s, &none, 2048, &c), TG_EINVAL);
    s.saltlen = -1;
    assert_int_equal(tg_p11_prepare(&s, &native, 2048, &c), TG_EINVAL);
    make_sig(&s, true, TG_RSA_PAD_PKCS1, EVP_sha256());
    assert_int_equal(tg_p11_prepare(&s, &native, 8192 * 2, &c), TG_EINVAL);
    s.dlen = 0;
    assert_int_equal(tg_p11_prepare(&s, &native, 2048, &c), TG_EINVAL);
}

static void test_prepare_ecdsa(void **state)
{
    (void)state;
    struct tg_p11_sig s;
    struct tg_p11_call c;
    struct tg_p11_plan ec = {CK_UNAVAILABLE_INFORMATION, CK_UNAVAILABLE_INFORMATION, CKM_ECDSA};
    make_sig(&s, false, 0, EVP_sha256());
    assert_int_equal(tg_p11_prepare(&s, &ec, 256, &c), TG_OK);
    assert_int_equal(c.mech.mechanism, CKM_ECDSA);
    assert_int_equal(c.datalen, 32);
    roundtrip(g_ec256, &s, &ec);
    /* SHA-384 with P-256: the leftmost 32 bytes (what ECDSA uses anyway). */
    make_sig(&s, false, 0, EVP_sha384());
    assert_int_equal(tg_p11_prepare(&s, &ec, 256, &c), TG_OK);
    assert_int_equal(c.datalen, 32);
    assert_memory_equal(c.data, s.digest, 32);
    roundtrip(g_ec256, &s, &ec);
    make_sig(&s, false, 0, EVP_sha384());
    roundtrip(g_ec384, &s, &ec);
    make_sig(&s, false, 0, EVP_sha256());
    assert_int_equal(tg_p11_prepare(&s, &ec, 521, &c), TG_OK);
    assert_int_equal(c.datalen, 32);
    struct tg_p11_plan rsa = {CKM_RSA_PKCS, CKM_RSA_PKCS_PSS, CK_UNAVAILABLE_INFORMATION};
    assert_int_equal(tg_p11_prepare(&s, &rsa, 256, &c), TG_EINVAL);
}

static void test_finish(void **state)
{
    (void)state;
    struct tg_p11_sig s;
    unsigned char raw[600], out[600];
    size_t outlen = 99;
    /* RSA: a short answer is left-padded to the modulus length. */
    make_sig(&s, true, TG_RSA_PAD_PKCS1, EVP_sha256());
    memset(raw, 0xab, sizeof(raw));
    assert_int_equal(tg_p11_finish(&s, 2048, raw, 255, out, sizeof(out), &outlen), TG_OK);
    assert_int_equal(outlen, 256);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 0xab);
    assert_int_equal(tg_p11_finish(&s, 2048, raw, 257, out, sizeof(out), &outlen), TG_EPROTO);
    assert_int_equal(outlen, 0);
    assert_int_equal(tg_p11_finish(&s, 2048, raw, 0, out, sizeof(out), &outlen), TG_EPROTO);
    assert_int_equal(tg_p11_finish(&s, 2048, raw, 256, out, 100, &outlen), TG_EPROTO);
    /* ECDSA: exactly twice the field size, r and s not zero. */
    make_sig(&s, false, 0, EVP_sha256());
    assert_int_equal(tg_p11_finish(&s, 256, raw, 63, out, sizeof(out), &outlen), TG_EPROTO);
    assert_int_equal(tg_p11_finish(&s, 256, raw, 65, out, sizeof(out), &outlen), TG_EPROTO);
    memset(raw, 0, 32);
    assert_int_equal(tg_p11_finish(&s, 256, raw, 64, out, sizeof(out), &outlen), TG_EPROTO);
    memset(raw, 0x11, 64);
    assert_int_equal(tg_p11_finish(&s, 256, raw, 64, out, sizeof(out), &outlen), TG_OK);
    /* SEQUENCE { INTEGER r, INTEGER s } */
    assert_int_equal(out[0], 0x30);
    assert_int_equal(outlen, 2 + 2 * (2 + 32));
    assert_int_equal(tg_p11_finish(&s, 256, raw, 64, out, 10, &outlen), TG_EPROTO);
    /* High bit set: DER adds a zero byte. */
    memset(raw, 0xf1, 64);
    assert_int_equal(tg_p11_finish(&s, 256, raw, 64, out, sizeof(out), &outlen), TG_OK);
    assert_int_equal(outlen, 2 + 2 * (2 + 33));
    /* P-521: 66-byte halves. */
    memset(raw, 0x01, 132);
    assert_int_equal(tg_p11_finish(&s, 521, raw, 132, out, sizeof(out), &outlen), TG_OK);
    ERR_clear_error();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),      cmocka_unit_test(test_ckr_names),
        cmocka_unit_test(test_plan),          cmocka_unit_test(test_prepare_rsa),
        cmocka_unit_test(test_prepare_ecdsa), cmocka_unit_test(test_finish),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
