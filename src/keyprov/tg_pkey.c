#include "keyprov/tg_pkey.h"

#include "core/tg_wipe.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TG_SW_PROPQ "provider=default"

struct tg_group_info {
    enum tg_group id;
    const char *name;    /* OpenSSL group name */
    const char *keytype; /* OpenSSL key type */
    size_t privlen, publen, secretlen;
};

static const struct tg_group_info tg_groups[TG_GROUP_COUNT] = {
    /* OpenSSL's short names: libssl maps them back to NIDs with OBJ_txt2nid. */
    [TG_GROUP_X25519] = {TG_GROUP_X25519, "X25519", "X25519", 32, 32, 32},
    [TG_GROUP_P256] = {TG_GROUP_P256, "prime256v1", "EC", 32, 65, 32},
    [TG_GROUP_P384] = {TG_GROUP_P384, "secp384r1", "EC", 48, 97, 48},
    [TG_GROUP_P521] = {TG_GROUP_P521, "secp521r1", "EC", 66, 133, 66},
};

const char *tg_group_name(enum tg_group g)
{
    return (g > TG_GROUP_NONE && g < TG_GROUP_COUNT) ? tg_groups[g].name : NULL;
}

enum tg_group tg_group_from_name(const char *name)
{
    static const struct {
        const char *alias;
        enum tg_group g;
    } aliases[] = {
        {"x25519", TG_GROUP_X25519},  {"P-256", TG_GROUP_P256},     {"prime256v1", TG_GROUP_P256},
        {"secp256r1", TG_GROUP_P256}, {"P-384", TG_GROUP_P384},     {"secp384r1", TG_GROUP_P384},
        {"P-521", TG_GROUP_P521},     {"secp521r1", TG_GROUP_P521},
    };
    if (name == NULL)
        return TG_GROUP_NONE;
    for (size_t i = 0; i < TG_ARRAY_LEN(aliases); i++) {
        if (strcasecmp(name, aliases[i].alias) == 0)
            return aliases[i].g;
    }
    return TG_GROUP_NONE;
}

size_t tg_group_privlen(enum tg_group g)
{
    return tg_group_name(g) ? tg_groups[g].privlen : 0;
}

size_t tg_group_publen(enum tg_group g)
{
    return tg_group_name(g) ? tg_groups[g].publen : 0;
}

size_t tg_group_secretlen(enum tg_group g)
{
    return tg_group_name(g) ? tg_groups[g].secretlen : 0;
}

static void tg_pkey_free(struct tg_pkey *k)
{
    if (k == NULL)
        return;
    EVP_PKEY_free(k->sw);
    EVP_PKEY_free(k->pub);
    BN_free(k->n);
    BN_free(k->e);
    BN_clear_free(k->d);
    BN_clear_free(k->p);
    BN_clear_free(k->q);
    BN_clear_free(k->dmp1);
    BN_clear_free(k->dmq1);
    BN_clear_free(k->iqmp);
    BN_clear_free(k->priv);
    free(k->label);
    if (k->prov_key != NULL && k->prov_key_free != NULL)
        k->prov_key_free(k->prov_key);
    OPENSSL_cleanse(k, sizeof(*k));
    free(k);
}

struct tg_pkey *tg_pkey_ref(struct tg_pkey *k)
{
    if (k != NULL)
        atomic_fetch_add_explicit(&k->refs, 1, memory_order_relaxed);
    return k;
}

void tg_pkey_unref(struct tg_pkey *k)
{
    if (k != NULL && atomic_fetch_sub_explicit(&k->refs, 1, memory_order_acq_rel) == 1)
        tg_pkey_free(k);
}

void tg_pkey_retire(struct tg_pkey *k)
{
    if (k != NULL)
        atomic_store_explicit(&k->retired, true, memory_order_relaxed);
}

bool tg_pkey_is_retired(const struct tg_pkey *k)
{
    return atomic_load_explicit(&((struct tg_pkey *)k)->retired, memory_order_relaxed);
}

static int tg_why(char *why, size_t whylen, const char *msg)
{
    if (why != NULL && whylen > 0) {
        unsigned long e = ERR_peek_last_error();
        if (e != 0) {
            char ebuf[160];
            ERR_error_string_n(e, ebuf, sizeof(ebuf));
            snprintf(why, whylen, "%s (%s)", msg, ebuf);
        } else {
            snprintf(why, whylen, "%s", msg);
        }
    }
    ERR_clear_error();
    return TG_ECRYPTO;
}

/* Public-only twin of the key, for fault checks and certificate matching. */
static EVP_PKEY *tg_pkey_make_public(struct tg_pkey *k)
{
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pub = NULL;
    if (bld == NULL)
        goto out;
    if (k->type == TG_PKEY_RSA) {
        if (!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, k->n) ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, k->e))
            goto out;
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", TG_SW_PROPQ);
    } else {
        if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                             OBJ_nid2sn(k->curve_nid), 0) ||
            !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, k->pub_point,
                                              k->pub_point_len))
            goto out;
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", TG_SW_PROPQ);
    }
    params = OSSL_PARAM_BLD_to_param(bld);
    if (ctx == NULL || params == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pub, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pub = NULL;
out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    return pub;
}

/* RSA components from src; the private ones only when priv (a software key). */
static int tg_pkey_fill_rsa(struct tg_pkey *k, EVP_PKEY *src, bool priv, char *why, size_t whylen)
{
    BIGNUM *extra = NULL;
    /* Multi-prime keys have a third factor; batching providers cannot use
     * them and they are vanishingly rare in TLS. */
    if (priv && EVP_PKEY_get_bn_param(src, "rsa-factor3", &extra)) {
        BN_clear_free(extra);
        snprintf(why, whylen, "multi-prime RSA keys are not supported");
        return TG_ECONFIG;
    }
    ERR_clear_error();
    if (!EVP_PKEY_get_bn_param(src, OSSL_PKEY_PARAM_RSA_N, &k->n) ||
        !EVP_PKEY_get_bn_param(src, OSSL_PKEY_PARAM_RSA_E, &k->e))
        return tg_why(why, whylen, "RSA key lacks its modulus or public exponent");
    if (priv && (!EVP_PKEY_get_bn_param(src, OSSL_PKEY_PARAM_RSA_D, &k->d) ||
                 !EVP_PKEY_get_bn_param(src, OSSL_PKEY_PARAM_RSA_FACTOR1, &k->p) ||
                 !EVP_PKEY_get_bn_param(src, OSSL_PKEY_PARAM_RSA_FACTOR2, &k->q) ||
                 !EVP_PKEY_get_bn_param(src, OSSL_PKEY_PARAM_RSA_EXPONENT1, &k->dmp1) ||
                 !EVP_PKEY_get_bn_param(src, OSSL_PKEY_PARAM_RSA_EXPONENT2, &k->dmq1) ||
                 !EVP_PKEY_get_bn_param(src, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, &k->iqmp)))
        return tg_why(why, whylen, "RSA key lacks CRT components");
    k->bits = BN_num_bits(k->n);
    if (k->bits < TG_PKEY_RSA_MIN_BITS) {
        snprintf(why, whylen, "RSA key of %d bits is too small (minimum %d)", k->bits,
                 TG_PKEY_RSA_MIN_BITS);
        return TG_ECONFIG;
    }
    if (k->bits > TG_PKEY_RSA_MAX_BITS) {
        snprintf(why, whylen, "RSA key of %d bits is too large (maximum %d)", k->bits,
                 TG_PKEY_RSA_MAX_BITS);
        return TG_ECONFIG;
    }
    return TG_OK;
}

/* EC curve and public point from src; the scalar only when priv. */
static int tg_pkey_fill_ec(struct tg_pkey *k, EVP_PKEY *src, bool priv, char *why, size_t whylen)
{
    char gname[64];
    size_t glen = 0;
    if (!EVP_PKEY_get_utf8_string_param(src, OSSL_PKEY_PARAM_GROUP_NAME, gname, sizeof(gname),
                                        &glen))
        return tg_why(why, whylen, "EC key has no named curve");
    k->curve_nid = OBJ_sn2nid(gname);
    if (k->curve_nid == NID_undef)
        k->curve_nid = OBJ_ln2nid(gname);
    switch (k->curve_nid) {
    case NID_X9_62_prime256v1:
        k->group = "P-256";
        k->bits = 256;
        break;
    case NID_secp384r1:
        k->group = "P-384";
        k->bits = 384;
        break;
    case NID_secp521r1:
        k->group = "P-521";
        k->bits = 521;
        break;
    default:
        snprintf(why, whylen, "EC curve '%s' is not supported (P-256, P-384, P-521 are)", gname);
        return TG_ECONFIG;
    }
    if (priv && !EVP_PKEY_get_bn_param(src, OSSL_PKEY_PARAM_PRIV_KEY, &k->priv))
        return tg_why(why, whylen, "EC key has no private scalar");
    if (!EVP_PKEY_get_octet_string_param(src, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, k->pub_point,
                                         sizeof(k->pub_point), &k->pub_point_len) ||
        k->pub_point_len == 0 || k->pub_point[0] != 0x04)
        return tg_why(why, whylen, "EC key has no uncompressed public point");
    return TG_OK;
}

/* Fill k (refs, type, components, sig_max, pub) from src; k->sw is already
 * set for a software key. */
static int tg_pkey_fill(struct tg_pkey *k, EVP_PKEY *src, bool priv, char *why, size_t whylen)
{
    int rc;
    if (EVP_PKEY_is_a(src, "RSA")) {
        k->type = TG_PKEY_RSA;
        rc = tg_pkey_fill_rsa(k, src, priv, why, whylen);
    } else if (EVP_PKEY_is_a(src, "EC")) {
        k->type = TG_PKEY_EC;
        rc = tg_pkey_fill_ec(k, src, priv, why, whylen);
    } else {
        snprintf(why, whylen, "unsupported key type '%s' (RSA and EC are supported)",
                 EVP_PKEY_get0_type_name(src));
        rc = TG_ECONFIG;
    }
    if (rc != TG_OK)
        return rc;
    k->sig_max = (size_t)EVP_PKEY_get_size(src);
    k->pub = tg_pkey_make_public(k);
    if (k->pub == NULL)
        return tg_why(why, whylen, "cannot build the public key");
    if (k->sig_max == 0 || k->sig_max > TG_PKEY_SIG_MAX)
        return tg_why(why, whylen, "unexpected signature size");
    return TG_OK;
}

int tg_pkey_from_evp(EVP_PKEY *sw, struct tg_pkey **out, char *why, size_t whylen)
{
    char dummy[8];
    if (why == NULL || whylen == 0) {
        why = dummy;
        whylen = sizeof(dummy);
    }
    why[0] = '\0';
    *out = NULL;
    struct tg_pkey *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return TG_ENOMEM;
    atomic_init(&k->refs, 1);
    if (!EVP_PKEY_up_ref(sw)) {
        free(k);
        return TG_ECRYPTO;
    }
    k->sw = sw;
    int rc = tg_pkey_fill(k, sw, true, why, whylen);
    if (rc != TG_OK) {
        tg_pkey_free(k);
        return rc;
    }
    *out = k;
    return TG_OK;
}

int tg_pkey_from_public(EVP_PKEY *pub, void *prov_key, void (*prov_key_free)(void *),
                        struct tg_pkey **out, char *why, size_t whylen)
{
    char dummy[8];
    if (why == NULL || whylen == 0) {
        why = dummy;
        whylen = sizeof(dummy);
    }
    why[0] = '\0';
    *out = NULL;
    struct tg_pkey *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return TG_ENOMEM;
    atomic_init(&k->refs, 1);
    int rc = tg_pkey_fill(k, pub, false, why, whylen);
    if (rc != TG_OK) {
        tg_pkey_free(k); /* prov_key is not set yet: the caller keeps it */
        return rc;
    }
    k->prov_key = prov_key;
    k->prov_key_free = prov_key_free;
    *out = k;
    return TG_OK;
}

int tg_pkey_load_pem(const char *pem, size_t len, struct tg_pkey **out, char *why, size_t whylen)
{
    *out = NULL;
    if (len > INT32_MAX)
        return TG_EINVAL;
    /* The mem BIO reads pem in place; the decoders copy the key (base64
     * text, DER) into blocks they free unwiped: the section wipes them. */
    tg_wipe_begin();
    int rc = TG_ENOMEM;
    EVP_PKEY *sw = NULL;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL)
        goto out;
    /* No password callback: an encrypted key is refused instead of prompting. */
    sw = PEM_read_bio_PrivateKey_ex(bio, NULL, NULL, (void *)"", NULL, TG_SW_PROPQ);
    BIO_free(bio);
    if (sw == NULL) {
        rc = tg_why(why, whylen, "cannot parse the private key PEM (or it is encrypted)");
        goto out;
    }
    rc = tg_pkey_from_evp(sw, out, why, whylen);
    EVP_PKEY_free(sw);
out:
    tg_wipe_end();
    return rc;
}

/* ---- ephemeral key-exchange keys ---- */

void tg_kxkey_clear(struct tg_kxkey *k)
{
    if (k == NULL)
        return;
    EVP_PKEY_free(k->sw);
    OPENSSL_cleanse(k, sizeof(*k));
}

/*
 * Software twins are imported with EVP_PKEY_fromdata through one context per
 * thread and key type (a fetch and an allocation saved per handshake); the
 * contexts hold no key. Freed by tg_kxkey_thread_cleanup().
 */
static _Thread_local EVP_PKEY_CTX *tg_kx_import_ctx[2]; /* [0] X25519, [1] EC */

static EVP_PKEY_CTX *tg_kx_import_ctx_get(bool x25519)
{
    EVP_PKEY_CTX **slot = &tg_kx_import_ctx[x25519 ? 0 : 1];
    if (*slot == NULL)
        *slot = EVP_PKEY_CTX_new_from_name(NULL, x25519 ? "X25519" : "EC", TG_SW_PROPQ);
    if (*slot == NULL || EVP_PKEY_fromdata_init(*slot) <= 0)
        return NULL;
    return *slot;
}

void tg_kxkey_thread_cleanup(void)
{
    for (size_t i = 0; i < TG_ARRAY_LEN(tg_kx_import_ctx); i++) {
        EVP_PKEY_CTX_free(tg_kx_import_ctx[i]);
        tg_kx_import_ctx[i] = NULL;
    }
}

/*
 * X25519 twin. With both halves known (every key this process generated,
 * in software or in a multi-buffer batch) both are imported: given only the
 * private half, OpenSSL recomputes the public one, a full scalar
 * multiplication (~40-60 us, as much as the derive the twin is built for).
 */
static EVP_PKEY *tg_kxkey_build_x25519(struct tg_kxkey *k)
{
    if (!k->has_pub) /* the private half alone (callers check there is one) */
        return EVP_PKEY_new_raw_private_key_ex(NULL, "X25519", TG_SW_PROPQ, k->priv, 32);
    OSSL_PARAM params[3];
    int n = 0;
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, k->pub, 32);
    if (k->has_priv)
        params[n++] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PRIV_KEY, k->priv, 32);
    params[n] = OSSL_PARAM_construct_end();
    EVP_PKEY_CTX *ctx = tg_kx_import_ctx_get(true);
    int selection = k->has_priv ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY;
    EVP_PKEY *pk = NULL;
    if (ctx == NULL || EVP_PKEY_fromdata(ctx, &pk, selection, params) <= 0)
        pk = NULL;
    return pk;
}

static EVP_PKEY *tg_kxkey_build_ec(const struct tg_kxkey *k, int with_priv)
{
    OSSL_PARAM params[4];
    int n = 0;
    BIGNUM *priv = NULL;
    unsigned char privbuf[66];
    EVP_PKEY *pk = NULL;
    EVP_PKEY_CTX *ctx = tg_kx_import_ctx_get(false);
    if (ctx == NULL)
        goto out;
    params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                                   (char *)tg_groups[k->group].name, 0);
    params[n++] =
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)k->pub, k->publen);
    if (with_priv) {
        /* OSSL_PARAM BIGNUMs are native-endian unsigned integers. */
        priv = BN_bin2bn(k->priv, (int)k->privlen, NULL);
        if (priv == NULL || BN_bn2nativepad(priv, privbuf, (int)k->privlen) < 0)
            goto out;
        params[n++] = OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_PRIV_KEY, privbuf, k->privlen);
    }
    params[n] = OSSL_PARAM_construct_end();
    if (EVP_PKEY_fromdata(ctx, &pk, with_priv ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, params) <=
        0)
        pk = NULL;
out:
    BN_clear_free(priv);
    OPENSSL_cleanse(privbuf, sizeof(privbuf));
    return pk;
}

int tg_kxkey_set_public(struct tg_kxkey *k, enum tg_group g, const unsigned char *pub, size_t len)
{
    if (tg_group_name(g) == NULL || len != tg_group_publen(g))
        return TG_EPROTO;
    if (g != TG_GROUP_X25519 && pub[0] != 0x04)
        return TG_EPROTO; /* only uncompressed points are used in TLS */
    EVP_PKEY_free(k->sw);
    k->sw = NULL;
    k->group = g;
    memcpy(k->pub, pub, len);
    k->publen = len;
    k->has_pub = true;
    k->has_priv = false;
    if (g != TG_GROUP_X25519) {
        /* Building the software twin decodes the point, which rejects points
         * that are not on the curve (the curves have cofactor 1, so that is
         * the whole public-key check). */
        k->sw = tg_kxkey_build_ec(k, 0);
        if (k->sw == NULL) {
            ERR_clear_error();
            k->has_pub = false;
            return TG_EPROTO;
        }
    }
    return TG_OK;
}

EVP_PKEY *tg_kxkey_sw(struct tg_kxkey *k)
{
    if (k->sw != NULL)
        return k->sw;
    if (k->group == TG_GROUP_X25519) {
        if (k->has_priv || k->has_pub)
            k->sw = tg_kxkey_build_x25519(k);
    } else if (tg_group_name(k->group) != NULL && k->has_pub) {
        k->sw = tg_kxkey_build_ec(k, k->has_priv);
    }
    return k->sw;
}
