/*
 * SIGNATURE: RSA (PKCS#1 v1.5 and PSS) and ECDSA with certificate keys held
 * by tlsgate. The message is hashed here; the private-key operation on the
 * digest is a tg_keyop run by the certificate's key provider.
 *
 * libssl calls digest_sign_init once per signature it makes and then
 * EVP_DigestSign twice: a size query (sig == NULL), which must not start an
 * operation, and the real one, which may pause the ASYNC job.
 */
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/rsa.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ossl/tg_ossl.h"
#include "ossl/tg_ossl_internal.h"

struct tg_sigctx {
    bool rsa;
    struct tg_okey *key; /* owned by the EVP_PKEY the caller holds */
    int pad;             /* TG_RSA_PAD_PKCS1 or TG_RSA_PAD_PSS */
    int saltlen;         /* >= 0, or RSA_PSS_SALTLEN_DIGEST / _MAX / _AUTO */
    const EVP_MD *md;
    const EVP_MD *mgf1;
    EVP_MD_CTX *mdctx; /* only for streaming digest_sign_update */
};

static void *tg_sig_newctx_common(bool rsa)
{
    struct tg_sigctx *c = calloc(1, sizeof(*c));
    if (c != NULL) {
        c->rsa = rsa;
        c->pad = TG_RSA_PAD_PKCS1;
        c->saltlen = RSA_PSS_SALTLEN_AUTO;
    }
    return c;
}

static void *tg_rsa_sig_newctx(void *provctx, const char *propq)
{
    (void)provctx;
    (void)propq;
    return tg_sig_newctx_common(true);
}

static void *tg_ecdsa_sig_newctx(void *provctx, const char *propq)
{
    (void)provctx;
    (void)propq;
    return tg_sig_newctx_common(false);
}

static void tg_sig_freectx(void *vc)
{
    struct tg_sigctx *c = vc;
    if (c == NULL)
        return;
    EVP_MD_CTX_free(c->mdctx);
    free(c);
}

static void *tg_sig_dupctx(void *vc)
{
    const struct tg_sigctx *src = vc;
    struct tg_sigctx *c = malloc(sizeof(*c));
    if (c == NULL)
        return NULL;
    *c = *src;
    c->mdctx = NULL;
    if (src->mdctx != NULL) {
        c->mdctx = EVP_MD_CTX_new();
        if (c->mdctx == NULL || !EVP_MD_CTX_copy_ex(c->mdctx, src->mdctx)) {
            tg_sig_freectx(c);
            return NULL;
        }
    }
    return c;
}

static int tg_sig_set_ctx_params(void *vc, const OSSL_PARAM params[]);

static int tg_sig_init(void *vc, void *vkey, const OSSL_PARAM params[])
{
    struct tg_sigctx *c = vc;
    struct tg_okey *k = vkey;
    if (k == NULL || k->cert == NULL)
        return 0; /* only certificate private keys sign here */
    if (c->rsa != (k->cert->type == TG_PKEY_RSA))
        return 0;
    c->key = k;
    c->md = NULL;
    c->mgf1 = NULL;
    c->pad = TG_RSA_PAD_PKCS1;
    c->saltlen = RSA_PSS_SALTLEN_AUTO;
    EVP_MD_CTX_free(c->mdctx);
    c->mdctx = NULL;
    return tg_sig_set_ctx_params(c, params);
}

static int tg_sig_digest_sign_init(void *vc, const char *mdname, void *vkey,
                                   const OSSL_PARAM params[])
{
    struct tg_sigctx *c = vc;
    if (!tg_sig_init(vc, vkey, params))
        return 0;
    if (mdname != NULL && mdname[0] != '\0') {
        c->md = tg_ossl_md(mdname);
        if (c->md == NULL)
            return 0;
    }
    return 1;
}

static int tg_sig_resolve_saltlen(const struct tg_sigctx *c)
{
    int hlen = EVP_MD_get_size(c->md);
    int emlen = (c->key->cert->bits - 1 + 7) / 8;
    int max = emlen - hlen - 2;
    switch (c->saltlen) {
    case RSA_PSS_SALTLEN_DIGEST:
        return hlen;
    case RSA_PSS_SALTLEN_MAX:
    case RSA_PSS_SALTLEN_AUTO:
        return max;
    default:
        return c->saltlen <= max ? c->saltlen : -1;
    }
}

/* Sign a digest: the private-key operation, through the key provider. */
static int tg_sig_sign(void *vc, unsigned char *sig, size_t *siglen, size_t sigsize,
                       const unsigned char *tbs, size_t tbslen)
{
    struct tg_sigctx *c = vc;
    if (c->key == NULL)
        return 0;
    const struct tg_pkey *pk = c->key->cert;
    if (sig == NULL) {
        *siglen = pk->sig_max;
        return 1;
    }
    if (sigsize < pk->sig_max)
        return 0;
    struct tg_keyop op;
    tg_keyop_init(&op, c->rsa ? TG_KEYOP_RSA_SIGN : TG_KEYOP_ECDSA_SIGN);
    if (tbslen == 0 || tbslen > sizeof(op.in))
        return 0;
    if (c->md != NULL && (size_t)EVP_MD_get_size(c->md) != tbslen)
        return 0;
    if (c->rsa) {
        if (c->md == NULL)
            return 0; /* raw (no DigestInfo) RSA signatures are not offered */
        op.md = c->md;
        op.rsa_padding = c->pad;
        if (c->pad == TG_RSA_PAD_PSS) {
            op.pss_saltlen = tg_sig_resolve_saltlen(c);
            if (op.pss_saltlen < 0)
                return 0;
            op.mgf1_md = c->mgf1 ? c->mgf1 : c->md;
        }
    }
    memcpy(op.in, tbs, tbslen);
    op.inlen = tbslen;
    op.pkey = pk;
    op.binding = pk->binding;
    if (tg_keyop_run(&op) != TG_OK || op.outlen > sigsize)
        return 0;
    memcpy(sig, op.out, op.outlen);
    *siglen = op.outlen;
    return 1;
}

static int tg_sig_digest_sign(void *vc, unsigned char *sig, size_t *siglen, size_t sigsize,
                              const unsigned char *tbs, size_t tbslen)
{
    struct tg_sigctx *c = vc;
    if (c->key == NULL)
        return 0;
    if (sig == NULL) {
        *siglen = c->key->cert->sig_max;
        return 1;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (c->md == NULL)
        c->md = tg_ossl_md("SHA256");
    if (c->md == NULL || !EVP_Digest(tbs, tbslen, md, &mdlen, c->md, NULL))
        return 0;
    return tg_sig_sign(vc, sig, siglen, sigsize, md, mdlen);
}

static int tg_sig_digest_sign_update(void *vc, const unsigned char *data, size_t len)
{
    struct tg_sigctx *c = vc;
    if (c->mdctx == NULL) {
        if (c->md == NULL)
            c->md = tg_ossl_md("SHA256");
        c->mdctx = EVP_MD_CTX_new();
        if (c->mdctx == NULL || c->md == NULL || !EVP_DigestInit_ex(c->mdctx, c->md, NULL))
            return 0;
    }
    return EVP_DigestUpdate(c->mdctx, data, len);
}

static int tg_sig_digest_sign_final(void *vc, unsigned char *sig, size_t *siglen, size_t sigsize)
{
    struct tg_sigctx *c = vc;
    if (c->key == NULL)
        return 0;
    if (sig == NULL) {
        *siglen = c->key->cert->sig_max;
        return 1;
    }
    if (c->mdctx == NULL && !tg_sig_digest_sign_update(vc, (const unsigned char *)"", 0))
        return 0;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_DigestFinal_ex(c->mdctx, md, &mdlen))
        return 0;
    return tg_sig_sign(vc, sig, siglen, sigsize, md, mdlen);
}

/* ---- parameters ---- */

static int tg_sig_set_ctx_params(void *vc, const OSSL_PARAM params[])
{
    struct tg_sigctx *c = vc;
    const OSSL_PARAM *p;
    if (params == NULL)
        return 1;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST)) != NULL) {
        const char *name = NULL;
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &name) || (c->md = tg_ossl_md(name)) == NULL)
            return 0;
    }
    if (!c->rsa)
        return 1;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) != NULL) {
        int mode = 0;
        if (p->data_type == OSSL_PARAM_UTF8_STRING) {
            const char *s = NULL;
            if (!OSSL_PARAM_get_utf8_string_ptr(p, &s))
                return 0;
            mode = strcasecmp(s, OSSL_PKEY_RSA_PAD_MODE_PKCSV15) == 0 ? TG_RSA_PAD_PKCS1
                   : strcasecmp(s, OSSL_PKEY_RSA_PAD_MODE_PSS) == 0   ? TG_RSA_PAD_PSS
                                                                      : 0;
        } else if (!OSSL_PARAM_get_int(p, &mode)) {
            return 0;
        }
        if (mode != TG_RSA_PAD_PKCS1 && mode != TG_RSA_PAD_PSS)
            return 0;
        c->pad = mode;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) != NULL) {
        int len = 0;
        if (p->data_type == OSSL_PARAM_UTF8_STRING) {
            const char *s = NULL;
            if (!OSSL_PARAM_get_utf8_string_ptr(p, &s))
                return 0;
            if (strcmp(s, OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST) == 0)
                len = RSA_PSS_SALTLEN_DIGEST;
            else if (strcmp(s, OSSL_PKEY_RSA_PSS_SALT_LEN_MAX) == 0)
                len = RSA_PSS_SALTLEN_MAX;
            else if (strcmp(s, OSSL_PKEY_RSA_PSS_SALT_LEN_AUTO) == 0)
                len = RSA_PSS_SALTLEN_AUTO;
            else
                return 0;
        } else if (!OSSL_PARAM_get_int(p, &len) || len < RSA_PSS_SALTLEN_MAX) {
            return 0;
        }
        c->saltlen = len;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST)) != NULL) {
        const char *name = NULL;
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &name) || (c->mgf1 = tg_ossl_md(name)) == NULL)
            return 0;
    }
    return 1;
}

static const OSSL_PARAM tg_rsa_sig_settable[] = {
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
    OSSL_PARAM_int(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL),
    OSSL_PARAM_int(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM tg_ecdsa_sig_settable[] = {
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *tg_rsa_sig_settable_fn(void *vc, void *provctx)
{
    (void)vc;
    (void)provctx;
    return tg_rsa_sig_settable;
}

static const OSSL_PARAM *tg_ecdsa_sig_settable_fn(void *vc, void *provctx)
{
    (void)vc;
    (void)provctx;
    return tg_ecdsa_sig_settable;
}

static int tg_sig_get_ctx_params(void *vc, OSSL_PARAM params[])
{
    struct tg_sigctx *c = vc;
    OSSL_PARAM *p;
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST)) != NULL &&
        (c->md == NULL || !OSSL_PARAM_set_utf8_string(p, EVP_MD_get0_name(c->md))))
        return 0;
    if (c->rsa && (p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) != NULL &&
        !OSSL_PARAM_set_int(p, c->pad))
        return 0;
    return 1;
}

static const OSSL_PARAM tg_sig_gettable[] = {
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
    OSSL_PARAM_int(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *tg_sig_gettable_fn(void *vc, void *provctx)
{
    (void)vc;
    (void)provctx;
    return tg_sig_gettable;
}

#define TG_SIG_COMMON                                                                              \
    {OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))tg_sig_freectx},                                 \
        {OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))tg_sig_dupctx},                               \
        {OSSL_FUNC_SIGNATURE_SIGN_INIT, (void (*)(void))tg_sig_init},                              \
        {OSSL_FUNC_SIGNATURE_SIGN, (void (*)(void))tg_sig_sign},                                   \
        {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, (void (*)(void))tg_sig_digest_sign_init},           \
        {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE, (void (*)(void))tg_sig_digest_sign_update},       \
        {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL, (void (*)(void))tg_sig_digest_sign_final},         \
        {OSSL_FUNC_SIGNATURE_DIGEST_SIGN, (void (*)(void))tg_sig_digest_sign},                     \
        {OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, (void (*)(void))tg_sig_set_ctx_params},               \
        {OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, (void (*)(void))tg_sig_get_ctx_params},               \
    {                                                                                              \
        OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, (void (*)(void))tg_sig_gettable_fn                \
    }

const OSSL_DISPATCH tg_ossl_rsa_signature[] = {
    {OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))tg_rsa_sig_newctx},
    TG_SIG_COMMON,
    {OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, (void (*)(void))tg_rsa_sig_settable_fn},
    {0, NULL},
};

const OSSL_DISPATCH tg_ossl_ecdsa_signature[] = {
    {OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))tg_ecdsa_sig_newctx},
    TG_SIG_COMMON,
    {OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, (void (*)(void))tg_ecdsa_sig_settable_fn},
    {0, NULL},
};
