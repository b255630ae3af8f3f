/*
 * PKCS#11 return codes, mechanism choice and the data of one C_Sign.
 * Contract in tg_p11_mech.h.
 */
#include "providers/pkcs11/tg_p11_mech.h"

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <string.h>

#include "keyprov/tg_keyprov.h"
#include "keyprov/tg_rsa_pad.h"

static const struct {
    CK_RV rv;
    const char *name;
} tg_p11_ckrs[] = {
#define TG_P11_CKR_ROW(code) {code, #code},
    TG_P11_CKR_LIST(TG_P11_CKR_ROW)
#undef TG_P11_CKR_ROW
};

enum tg_p11_ckr tg_p11_ckr_index(CK_RV rv)
{
    for (size_t i = 0; i < TG_ARRAY_LEN(tg_p11_ckrs); i++) {
        if (tg_p11_ckrs[i].rv == rv)
            return (enum tg_p11_ckr)i;
    }
    return TG_P11_CKR_OTHER;
}

const char *tg_p11_ckr_name(CK_RV rv)
{
    enum tg_p11_ckr i = tg_p11_ckr_index(rv);
    return i == TG_P11_CKR_OTHER ? NULL : tg_p11_ckrs[i].name;
}

const char *tg_p11_ckr_index_name(enum tg_p11_ckr i)
{
    return (unsigned)i < TG_ARRAY_LEN(tg_p11_ckrs) ? tg_p11_ckrs[i].name : "other";
}

const char *tg_p11_ckr_text(CK_RV rv, char *buf, size_t len)
{
    const char *n = rv == CKR_OK ? "CKR_OK" : tg_p11_ckr_name(rv);
    if (n != NULL)
        snprintf(buf, len, "%s", n);
    else
        snprintf(buf, len, "CKR_0x%08lX", (unsigned long)rv);
    return buf;
}

enum tg_p11_action tg_p11_classify(CK_RV rv)
{
    switch (rv) {
    case CKR_OK:
        return TG_P11_ACT_OK;
    case CKR_USER_NOT_LOGGED_IN:
        return TG_P11_ACT_RELOGIN;
    case CKR_KEY_HANDLE_INVALID:
    case CKR_OBJECT_HANDLE_INVALID:
        return TG_P11_ACT_REFIND;
    case CKR_DEVICE_REMOVED:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_TOKEN_NOT_RECOGNIZED:
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
    case CKR_DEVICE_ERROR:
    case CKR_GENERAL_ERROR:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
        return TG_P11_ACT_TOKEN_DOWN;
    default:
        return TG_P11_ACT_FAIL;
    }
}

bool tg_p11_pin_refused(CK_RV rv)
{
    return rv == CKR_PIN_INCORRECT || rv == CKR_PIN_INVALID || rv == CKR_PIN_LEN_RANGE ||
           rv == CKR_PIN_EXPIRED || rv == CKR_PIN_LOCKED || rv == CKR_USER_PIN_NOT_INITIALIZED;
}

int tg_p11_plan(bool rsa, const struct tg_p11_mechs *m, enum tg_p11_rsa_mode mode,
                struct tg_p11_plan *out, char *why, size_t whylen)
{
    out->pkcs1 = out->pss = out->ecdsa = CK_UNAVAILABLE_INFORMATION;
    if (!rsa) {
        if (!m->ecdsa) {
            snprintf(why, whylen, "the token offers no CKM_ECDSA signing");
            return TG_EUNAVAIL;
        }
        out->ecdsa = CKM_ECDSA;
        return TG_OK;
    }
    bool native = mode != TG_P11_RSA_RAW, raw = mode != TG_P11_RSA_NATIVE;
    if (native && m->rsa_pkcs)
        out->pkcs1 = CKM_RSA_PKCS;
    else if (raw && m->rsa_x509)
        out->pkcs1 = CKM_RSA_X_509;
    if (native && m->rsa_pss)
        out->pss = CKM_RSA_PKCS_PSS;
    else if (raw && m->rsa_x509)
        out->pss = CKM_RSA_X_509;
    if (out->pss == CK_UNAVAILABLE_INFORMATION) {
        snprintf(why, whylen, "TLS 1.3 needs RSA-PSS signatures and the token offers %s",
                 mode == TG_P11_RSA_NATIVE ? "no CKM_RSA_PKCS_PSS (rsa_mechanism: native)"
                 : mode == TG_P11_RSA_RAW  ? "no CKM_RSA_X_509 (rsa_mechanism: raw)"
                                           : "neither CKM_RSA_PKCS_PSS nor CKM_RSA_X_509");
        return TG_EUNAVAIL;
    }
    if (out->pkcs1 == CK_UNAVAILABLE_INFORMATION) {
        snprintf(why, whylen, "the token offers %s for PKCS#1 v1.5 signatures",
                 mode == TG_P11_RSA_NATIVE ? "no CKM_RSA_PKCS (rsa_mechanism: native)"
                 : mode == TG_P11_RSA_RAW  ? "no CKM_RSA_X_509 (rsa_mechanism: raw)"
                                           : "neither CKM_RSA_PKCS nor CKM_RSA_X_509");
        return TG_EUNAVAIL;
    }
    return TG_OK;
}

/* PKCS#11 names of a digest and of MGF1 with it; FALSE if it has none. */
static bool tg_p11_md_mechs(const EVP_MD *md, CK_MECHANISM_TYPE *hash, CK_RSA_PKCS_MGF_TYPE *mgf)
{
    switch (md ? EVP_MD_get_type(md) : NID_undef) {
    case NID_sha1:
        *hash = CKM_SHA_1, *mgf = CKG_MGF1_SHA1;
        return true;
    case NID_sha224:
        *hash = CKM_SHA224, *mgf = CKG_MGF1_SHA224;
        return true;
    case NID_sha256:
        *hash = CKM_SHA256, *mgf = CKG_MGF1_SHA256;
        return true;
    case NID_sha384:
        *hash = CKM_SHA384, *mgf = CKG_MGF1_SHA384;
        return true;
    case NID_sha512:
        *hash = CKM_SHA512, *mgf = CKG_MGF1_SHA512;
        return true;
    default:
        return false;
    }
}

static int tg_p11_prepare_rsa(const struct tg_p11_sig *s, const struct tg_p11_plan *plan, int bits,
                              struct tg_p11_call *c)
{
    size_t k = ((size_t)bits + 7) / 8;
    if (k > sizeof(c->data) || s->md == NULL || (size_t)EVP_MD_get_size(s->md) != s->dlen)
        return TG_EINVAL;
    CK_MECHANISM_TYPE m = s->padding == TG_RSA_PAD_PSS ? plan->pss : plan->pkcs1;
    if (s->padding != TG_RSA_PAD_PSS && s->padding != TG_RSA_PAD_PKCS1)
        return TG_EINVAL;
    c->mech.mechanism = m;
    if (m == CKM_RSA_X_509) {
        /* Raw RSA: tlsgate encodes, the token only exponentiates. */
        TG_GUARD(tg_rsa_pad_encode(c->data, k, bits, s->padding, s->md, s->mgf1, s->saltlen,
                                   s->digest, s->dlen));
        c->datalen = k;
        return TG_OK;
    }
    if (m == CKM_RSA_PKCS_PSS) {
        CK_RSA_PKCS_MGF_TYPE unused;
        if (!tg_p11_md_mechs(s->md, &c->pss.hashAlg, &unused) ||
            !tg_p11_md_mechs(s->mgf1 ? s->mgf1 : s->md, &unused, &c->pss.mgf) || s->saltlen < 0)
            return TG_EINVAL;
        c->pss.sLen = (CK_ULONG)s->saltlen;
        c->mech.pParameter = &c->pss;
        c->mech.ulParameterLen = sizeof(c->pss);
        memcpy(c->data, s->digest, s->dlen);
        c->datalen = s->dlen;
        return TG_OK;
    }
    if (m == CKM_RSA_PKCS) {
        /* The token adds 00 01 FF.. 00; it signs DigestInfo || digest,
         * which is what follows the 00 separator of the full encoding. */
        unsigned char em[512];
        TG_GUARD(tg_rsa_pad_pkcs1(em, k, bits, s->md, s->digest, s->dlen));
        size_t i = 2;
        while (i < k && em[i] == 0xff)
            i++;
        if (i >= k || em[i] != 0x00)
            return TG_EINVAL;
        c->datalen = k - i - 1;
        memcpy(c->data, em + i + 1, c->datalen);
        return TG_OK;
    }
    return TG_EINVAL;
}

int tg_p11_prepare(const struct tg_p11_sig *s, const struct tg_p11_plan *plan, int bits,
                   struct tg_p11_call *c)
{
    memset(c, 0, sizeof(*c));
    if (s->dlen == 0 || s->dlen > sizeof(s->digest) || bits <= 0)
        return TG_EINVAL;
    if (s->rsa)
        return tg_p11_prepare_rsa(s, plan, bits, c);
    if (plan->ecdsa != CKM_ECDSA)
        return TG_EINVAL;
    /* ECDSA uses the leftmost bits of the digest, as many as the order
     * has; the orders of P-256 and P-384 are byte-aligned and P-521's is
     * longer than any digest, so whole bytes are exact. */
    size_t olen = ((size_t)bits + 7) / 8;
    c->mech.mechanism = CKM_ECDSA;
    c->datalen = s->dlen < olen ? s->dlen : olen;
    memcpy(c->data, s->digest, c->datalen);
    return TG_OK;
}

int tg_p11_finish(const struct tg_p11_sig *s, int bits, const unsigned char *raw, size_t rawlen,
                  unsigned char *out, size_t cap, size_t *outlen)
{
    *outlen = 0;
    size_t k = ((size_t)bits + 7) / 8;
    if (s->rsa) {
        if (rawlen == 0 || rawlen > k || k > cap)
            return TG_EPROTO;
        memset(out, 0, k - rawlen);
        memcpy(out + (k - rawlen), raw, rawlen);
        *outlen = k;
        return TG_OK;
    }
    if (rawlen != 2 * k)
        return TG_EPROTO;
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, (int)k, NULL), *ss = BN_bin2bn(raw + k, (int)k, NULL);
    int rc = TG_ECRYPTO;
    if (sig == NULL || r == NULL || ss == NULL || BN_is_zero(r) || BN_is_zero(ss))
        goto out;
    if (!ECDSA_SIG_set0(sig, r, ss))
        goto out;
    r = ss = NULL; /* owned by sig */
    int len = i2d_ECDSA_SIG(sig, NULL);
    if (len <= 0 || (size_t)len > cap)
        goto out;
    unsigned char *p = out;
    if (i2d_ECDSA_SIG(sig, &p) != len)
        goto out;
    *outlen = (size_t)len;
    rc = TG_OK;
out:
    BN_free(r);
    BN_free(ss);
    ECDSA_SIG_free(sig);
    if (rc != TG_OK)
        ERR_clear_error();
    return rc == TG_OK ? TG_OK : TG_EPROTO;
}

int tg_p11_verify(EVP_PKEY *pub, const struct tg_p11_sig *s, const unsigned char *sig,
                  size_t siglen)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pub, "provider=default");
    int ok = ctx != NULL && EVP_PKEY_verify_init(ctx) > 0;
    if (ok && s->rsa) {
        ok = EVP_PKEY_CTX_set_rsa_padding(ctx, s->padding) > 0 &&
             EVP_PKEY_CTX_set_signature_md(ctx, s->md) > 0;
        if (ok && s->padding == TG_RSA_PAD_PSS)
            ok = EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, s->saltlen) > 0 &&
                 EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, s->mgf1 ? s->mgf1 : s->md) > 0;
    }
    ok = ok && EVP_PKEY_verify(ctx, sig, siglen, s->digest, s->dlen) == 1;
    EVP_PKEY_CTX_free(ctx);
    if (!ok)
        ERR_clear_error();
    return ok ? TG_OK : TG_ECRYPTO;
}
