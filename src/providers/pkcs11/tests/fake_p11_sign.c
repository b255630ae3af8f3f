/*
 * The fake PKCS#11 module's C_SignInit and C_Sign (see fake_p11.c): PKCS#11's
 * rules for a signing operation, the injected faults (block, hold, delay,
 * fail_sign, removal), and the signature itself with OpenSSL.
 */
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fake_p11.h"

CK_RV fake_sign_init(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE o)
{
    pthread_mutex_lock(&fake_g.lock);
    fake_refresh();
    struct fake_session *s;
    size_t key;
    CK_OBJECT_CLASS cls;
    CK_RV rv = fake_session(h, &s);
    if (rv == CKR_OK && s->signing)
        rv = CKR_OPERATION_ACTIVE;
    else if (rv == CKR_OK && !fake_g.logged_in)
        rv = CKR_USER_NOT_LOGGED_IN;
    else if (rv == CKR_OK && (!fake_object(o, &key, &cls) || cls != CKO_PRIVATE_KEY))
        rv = CKR_KEY_HANDLE_INVALID;
    else if (rv == CKR_OK && (m == NULL || !fake_mech_offered(m->mechanism)))
        rv = CKR_MECHANISM_INVALID;
    else if (rv == CKR_OK && (m->mechanism == CKM_ECDSA) == fake_rsa(key))
        rv = CKR_KEY_TYPE_INCONSISTENT;
    else if (rv == CKR_OK && m->mechanism == CKM_RSA_PKCS_PSS &&
             (m->pParameter == NULL || m->ulParameterLen != sizeof(CK_RSA_PKCS_PSS_PARAMS)))
        rv = CKR_MECHANISM_PARAM_INVALID;
    if (rv == CKR_OK) {
        s->signing = true;
        s->mech = m->mechanism;
        s->key = key;
        if (m->mechanism == CKM_RSA_PKCS_PSS)
            memcpy(&s->pss, m->pParameter, sizeof(s->pss));
    }
    pthread_mutex_unlock(&fake_g.lock);
    return rv;
}

static const EVP_MD *fake_md(CK_MECHANISM_TYPE m)
{
    switch (m) {
    case CKM_SHA_1:
    case CKG_MGF1_SHA1:
        return EVP_sha1();
    case CKM_SHA224:
    case CKG_MGF1_SHA224:
        return EVP_sha224();
    case CKM_SHA256:
    case CKG_MGF1_SHA256:
        return EVP_sha256();
    case CKM_SHA384:
    case CKG_MGF1_SHA384:
        return EVP_sha384();
    case CKM_SHA512:
    case CKG_MGF1_SHA512:
        return EVP_sha512();
    default:
        return NULL;
    }
}

/* The signature itself, with OpenSSL (no lock held). */
static CK_RV fake_compute(EVP_PKEY *k, CK_MECHANISM_TYPE mech, const CK_RSA_PKCS_PSS_PARAMS *pss,
                          const unsigned char *in, size_t inlen, unsigned char *out, size_t *outlen)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, k, "provider=default");
    unsigned char der[160], buf[512];
    size_t dlen = sizeof(der);
    CK_RV rv = CKR_FUNCTION_FAILED;
    if (ctx == NULL || EVP_PKEY_sign_init(ctx) <= 0)
        goto out;
    size_t klen = (size_t)EVP_PKEY_get_size(k);
    if (mech == CKM_RSA_X_509) {
        if (inlen > klen)
            goto out;
        memset(buf, 0, klen - inlen);
        memcpy(buf + (klen - inlen), in, inlen);
        if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING) <= 0 ||
            EVP_PKEY_sign(ctx, out, outlen, buf, klen) <= 0)
            rv = CKR_DATA_INVALID;
        else
            rv = CKR_OK;
    } else if (mech == CKM_RSA_PKCS) {
        if (inlen > klen - 11) {
            rv = CKR_DATA_LEN_RANGE;
            goto out;
        }
        rv = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) > 0 &&
                     EVP_PKEY_sign(ctx, out, outlen, in, inlen) > 0
                 ? CKR_OK
                 : CKR_FUNCTION_FAILED;
    } else if (mech == CKM_RSA_PKCS_PSS) {
        const EVP_MD *md = fake_md(pss->hashAlg), *mgf = fake_md(pss->mgf);
        if (md == NULL || mgf == NULL || (size_t)EVP_MD_get_size(md) != inlen) {
            rv = CKR_MECHANISM_PARAM_INVALID;
            goto out;
        }
        rv = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) > 0 &&
                     EVP_PKEY_CTX_set_signature_md(ctx, md) > 0 &&
                     EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, mgf) > 0 &&
                     EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, (int)pss->sLen) > 0 &&
                     EVP_PKEY_sign(ctx, out, outlen, in, inlen) > 0
                 ? CKR_OK
                 : CKR_MECHANISM_PARAM_INVALID;
    } else {
        /* ECDSA: OpenSSL gives DER; PKCS#11 wants r || s, each the field size. */
        size_t f = ((size_t)EVP_PKEY_get_bits(k) + 7) / 8;
        if (EVP_PKEY_sign(ctx, der, &dlen, in, inlen) <= 0)
            goto out;
        const unsigned char *p = der;
        ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)dlen);
        if (sig == NULL)
            goto out;
        if (BN_bn2binpad(ECDSA_SIG_get0_r(sig), out, (int)f) < 0 ||
            BN_bn2binpad(ECDSA_SIG_get0_s(sig), out + f, (int)f) < 0) {
            ECDSA_SIG_free(sig);
            goto out;
        }
        ECDSA_SIG_free(sig);
        *outlen = 2 * f;
        rv = CKR_OK;
    }
out:
    EVP_PKEY_CTX_free(ctx);
    ERR_clear_error();
    return rv;
}

CK_RV fake_sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
                CK_ULONG_PTR siglen)
{
    pthread_mutex_lock(&fake_g.lock);
    fake_refresh();
    struct fake_session *s;
    CK_RV rv = fake_session(h, &s);
    if (rv == CKR_OK && !s->signing)
        rv = CKR_OPERATION_NOT_INITIALIZED;
    if (rv != CKR_OK) {
        pthread_mutex_unlock(&fake_g.lock);
        return rv;
    }
    EVP_PKEY *k = fake_g.keys[s->key].key;
    size_t need = fake_rsa(s->key) ? (size_t)EVP_PKEY_get_size(k)
                                   : 2 * (((size_t)EVP_PKEY_get_bits(k) + 7) / 8);
    if (sig == NULL || *siglen < need) {
        *siglen = need;
        pthread_mutex_unlock(&fake_g.lock);
        return sig == NULL ? CKR_OK : CKR_BUFFER_TOO_SMALL;
    }
    /* From here the operation ends, whatever happens. */
    s->signing = false;
    CK_MECHANISM_TYPE mech = s->mech;
    CK_RSA_PKCS_PSS_PARAMS pss = s->pss;
    EVP_PKEY_up_ref(k);
    fake_g.in_sign++;
    pthread_cond_broadcast(&fake_g.cond);
    while (fake_g.cur.block && !fake_g.cur.removed) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&fake_g.cond, &fake_g.lock, &ts);
        fake_refresh(); /* the control file may have changed */
    }
    int delay = fake_g.cur.sign_delay_ms;
    unsigned long fail = fake_g.cur.fail_sign;
    bool removed = fake_g.cur.removed;
    pthread_mutex_unlock(&fake_g.lock);
    bool held = atomic_load_explicit(&fake_g.hold, memory_order_relaxed) != 0;
    if (held) {
        atomic_fetch_add_explicit(&fake_g.holding, 1, memory_order_relaxed);
        while (atomic_load_explicit(&fake_g.hold, memory_order_relaxed) != 0) {
            struct timespec ts = {0, 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        atomic_fetch_sub_explicit(&fake_g.holding, 1, memory_order_relaxed);
    }
    if (delay > 0)
        usleep((useconds_t)delay * 1000);
    size_t outlen = *siglen;
    if (removed)
        rv = CKR_DEVICE_REMOVED;
    else if (fail != 0)
        rv = (CK_RV)fail;
    else
        rv = fake_compute(k, mech, &pss, data, len, sig, &outlen);
    EVP_PKEY_free(k);
    pthread_mutex_lock(&fake_g.lock);
    fake_g.in_sign--;
    if (rv == CKR_OK) {
        fake_g.signs++;
        *siglen = outlen;
    }
    pthread_mutex_unlock(&fake_g.lock);
    if (held)
        atomic_fetch_add_explicit(&fake_g.held_returned, 1, memory_order_relaxed);
    return rv;
}
