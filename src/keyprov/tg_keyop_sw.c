/*
 * Software computation of key operations with OpenSSL's default provider:
 * what the software provider runs, what every runtime fallback runs, and what
 * an operation outside an ASYNC job runs (tests, tools, the client side).
 *
 * Threading: any thread. The contexts cached here are per thread; a worker
 * frees its own with tg_keyop_sw_thread_cleanup() when it exits.
 */
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <string.h>

#include "core/tg_log.h"
#include "keyprov/tg_keyprov.h"
#include "keyprov/tg_keyprov_internal.h"

#define TG_SW_PROPQ "provider=default"

/* Per-thread keygen contexts: EVP_PKEY_keygen may be called repeatedly on an
 * initialised context, which saves a fetch and an allocation per handshake. */
static _Thread_local EVP_PKEY_CTX *tg_sw_keygen_ctx[TG_GROUP_COUNT];

/* Per-thread signing contexts, by key and parameters: EVP_PKEY_sign may be
 * called again on an initialised context (PSS draws a fresh salt each time),
 * which saves the algorithm fetch, the property look-ups and two allocations
 * per signature. A handful of entries covers every certificate of a worker;
 * a miss simply builds a new context. */
#define TG_SW_SIGN_CACHE 8
struct tg_sw_sign_entry {
    EVP_PKEY *key; /* referenced by ctx */
    const EVP_MD *md;
    const EVP_MD *mgf1;
    int padding;
    int saltlen;
    EVP_PKEY_CTX *ctx;
};
static _Thread_local struct tg_sw_sign_entry tg_sw_sign_cache[TG_SW_SIGN_CACHE];
static _Thread_local unsigned tg_sw_sign_next;

/* Per-thread verification contexts for result checks, by public key (the
 * context holds a reference: the pointer cannot be reused while cached). */
struct tg_sw_verify_entry {
    EVP_PKEY *key;
    EVP_PKEY_CTX *ctx;
};
static _Thread_local struct tg_sw_verify_entry tg_sw_verify_cache[TG_SW_SIGN_CACHE];
static _Thread_local unsigned tg_sw_verify_next;

void tg_keyop_sw_forget_keys(void)
{
    /* Entries match on the EVP_PKEY pointer; each holds a reference to its
     * key (through ctx), so a freed key's address cannot be reused while it
     * is cached. Forgetting them lets the keys of a configuration no longer
     * served go, with their private material. */
    for (int i = 0; i < TG_SW_SIGN_CACHE; i++) {
        EVP_PKEY_CTX_free(tg_sw_sign_cache[i].ctx);
        memset(&tg_sw_sign_cache[i], 0, sizeof(tg_sw_sign_cache[i]));
        EVP_PKEY_CTX_free(tg_sw_verify_cache[i].ctx);
        memset(&tg_sw_verify_cache[i], 0, sizeof(tg_sw_verify_cache[i]));
    }
}

void tg_keyop_sw_thread_cleanup(void)
{
    for (int g = 0; g < TG_GROUP_COUNT; g++) {
        EVP_PKEY_CTX_free(tg_sw_keygen_ctx[g]);
        tg_sw_keygen_ctx[g] = NULL;
    }
    tg_kxkey_thread_cleanup();
    tg_keyop_sw_forget_keys();
}

static EVP_PKEY_CTX *tg_sw_sign_ctx(const struct tg_keyop *op)
{
    bool rsa = op->type == TG_KEYOP_RSA_SIGN;
    const EVP_MD *mgf1 =
        rsa && op->rsa_padding == TG_RSA_PAD_PSS ? (op->mgf1_md ? op->mgf1_md : op->md) : NULL;
    int saltlen = rsa && op->rsa_padding == TG_RSA_PAD_PSS ? op->pss_saltlen : 0;
    for (int i = 0; i < TG_SW_SIGN_CACHE; i++) {
        struct tg_sw_sign_entry *e = &tg_sw_sign_cache[i];
        if (e->ctx != NULL && e->key == op->pkey->sw && e->md == (rsa ? op->md : NULL) &&
            e->padding == (rsa ? op->rsa_padding : 0) && e->saltlen == saltlen && e->mgf1 == mgf1)
            return e->ctx;
    }
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, op->pkey->sw, TG_SW_PROPQ);
    if (ctx == NULL || EVP_PKEY_sign_init(ctx) <= 0)
        goto fail;
    if (rsa && (EVP_PKEY_CTX_set_rsa_padding(ctx, op->rsa_padding) <= 0 ||
                EVP_PKEY_CTX_set_signature_md(ctx, op->md) <= 0))
        goto fail;
    if (mgf1 != NULL && (EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, saltlen) <= 0 ||
                         EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, mgf1) <= 0))
        goto fail;
    struct tg_sw_sign_entry *e = &tg_sw_sign_cache[tg_sw_sign_next++ % TG_SW_SIGN_CACHE];
    EVP_PKEY_CTX_free(e->ctx);
    *e = (struct tg_sw_sign_entry){
        op->pkey->sw, rsa ? op->md : NULL, mgf1, rsa ? op->rsa_padding : 0, saltlen, ctx};
    return ctx;
fail:
    EVP_PKEY_CTX_free(ctx);
    return NULL;
}

static EVP_PKEY_CTX *tg_sw_keygen_ctx_get(enum tg_group g)
{
    if (tg_sw_keygen_ctx[g] != NULL)
        return tg_sw_keygen_ctx[g];
    EVP_PKEY_CTX *ctx =
        EVP_PKEY_CTX_new_from_name(NULL, g == TG_GROUP_X25519 ? "X25519" : "EC", TG_SW_PROPQ);
    if (ctx == NULL || EVP_PKEY_keygen_init(ctx) <= 0 ||
        (g != TG_GROUP_X25519 && EVP_PKEY_CTX_set_group_name(ctx, tg_group_name(g)) <= 0)) {
        EVP_PKEY_CTX_free(ctx);
        return NULL;
    }
    tg_sw_keygen_ctx[g] = ctx;
    return ctx;
}

/* RSA (PKCS#1 v1.5 or PSS) and ECDSA signatures of op->in. */
static int tg_sw_sign(struct tg_keyop *op)
{
    EVP_PKEY_CTX *ctx = tg_sw_sign_ctx(op);
    size_t outlen = sizeof(op->out);
    if (ctx == NULL || EVP_PKEY_sign(ctx, op->out, &outlen, op->in, op->inlen) <= 0)
        return TG_ECRYPTO;
    op->outlen = outlen;
    return TG_OK;
}

static int tg_sw_kx_keygen(struct tg_keyop *op)
{
    struct tg_kxkey *k = op->kx;
    EVP_PKEY *pk = NULL;
    BIGNUM *priv = NULL;
    int rc = TG_ECRYPTO;
    EVP_PKEY_CTX *ctx = tg_sw_keygen_ctx_get(k->group);
    if (ctx == NULL || EVP_PKEY_keygen(ctx, &pk) <= 0)
        goto out;
    k->privlen = tg_group_privlen(k->group);
    if (k->group == TG_GROUP_X25519) {
        size_t pl = 32, ql = 32;
        if (!EVP_PKEY_get_raw_private_key(pk, k->priv, &pl) ||
            !EVP_PKEY_get_raw_public_key(pk, k->pub, &ql) || pl != 32 || ql != 32)
            goto out;
        k->publen = 32;
    } else {
        if (!EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_PRIV_KEY, &priv) ||
            BN_bn2binpad(priv, k->priv, (int)k->privlen) < 0 ||
            !EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, k->pub,
                                             sizeof(k->pub), &k->publen) ||
            k->publen != tg_group_publen(k->group))
            goto out;
    }
    EVP_PKEY_free(k->sw);
    k->sw = pk; /* keep the twin: derive needs it and rebuilding costs a scalar mult */
    pk = NULL;
    k->has_priv = k->has_pub = true;
    rc = TG_OK;
out:
    BN_clear_free(priv);
    EVP_PKEY_free(pk);
    return rc;
}

static int tg_sw_kx_derive(struct tg_keyop *op)
{
    int rc = TG_ECRYPTO;
    EVP_PKEY *mine = tg_kxkey_sw(op->kx);
    EVP_PKEY *peer = tg_kxkey_sw((struct tg_kxkey *)op->peer);
    EVP_PKEY_CTX *ctx = NULL;
    size_t outlen = sizeof(op->out);
    if (mine == NULL || peer == NULL)
        goto out;
    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, mine, TG_SW_PROPQ);
    /* The peer share was validated when it was set (tg_kxkey_set_public);
     * skip the second, costlier public-key check. */
    if (ctx == NULL || EVP_PKEY_derive_init(ctx) <= 0 ||
        EVP_PKEY_derive_set_peer_ex(ctx, peer, 0) <= 0 ||
        EVP_PKEY_derive(ctx, op->out, &outlen) <= 0) {
        rc = TG_EPROTO; /* e.g. an all-zero X25519 result from a low-order point */
        goto out;
    }
    op->outlen = outlen;
    rc = TG_OK;
out:
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

static EVP_PKEY_CTX *tg_sw_verify_ctx(EVP_PKEY *key)
{
    for (int i = 0; i < TG_SW_SIGN_CACHE; i++) {
        if (tg_sw_verify_cache[i].ctx != NULL && tg_sw_verify_cache[i].key == key)
            return tg_sw_verify_cache[i].ctx;
    }
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, TG_SW_PROPQ);
    if (ctx == NULL || EVP_PKEY_verify_init(ctx) <= 0) {
        EVP_PKEY_CTX_free(ctx);
        return NULL;
    }
    struct tg_sw_verify_entry *e = &tg_sw_verify_cache[tg_sw_verify_next++ % TG_SW_SIGN_CACHE];
    EVP_PKEY_CTX_free(e->ctx);
    *e = (struct tg_sw_verify_entry){key, ctx};
    return ctx;
}

int tg_keyop_verify_sw(const struct tg_keyop *op, const unsigned char *sig, size_t siglen)
{
    if (op->type != TG_KEYOP_ECDSA_SIGN || op->pkey == NULL || op->pkey->type != TG_PKEY_EC ||
        op->pkey->pub == NULL || sig == NULL)
        return TG_EINVAL;
    EVP_PKEY_CTX *ctx = tg_sw_verify_ctx(op->pkey->pub);
    if (ctx == NULL)
        return TG_ECRYPTO;
    /* A bad signature leaves entries in the error queue: an expected
     * outcome here, so drop them (only them). */
    ERR_set_mark();
    int ok = EVP_PKEY_verify(ctx, sig, siglen, op->in, op->inlen);
    ERR_pop_to_mark();
    return ok == 1 ? TG_OK : TG_ECRYPTO;
}

int tg_keyop_compute_sw(struct tg_keyop *op)
{
    int rc;
    switch (op->type) {
    case TG_KEYOP_RSA_SIGN:
    case TG_KEYOP_ECDSA_SIGN:
        if (op->pkey == NULL ||
            (op->type == TG_KEYOP_RSA_SIGN) != (op->pkey->type == TG_PKEY_RSA) ||
            (op->type == TG_KEYOP_RSA_SIGN && op->md == NULL))
            rc = TG_EINVAL;
        else if (tg_pkey_is_held(op->pkey))
            rc = TG_EUNAVAIL; /* the private key is not in this process */
        else
            rc = tg_sw_sign(op);
        break;
    case TG_KEYOP_KX_KEYGEN:
        rc = op->kx ? tg_sw_kx_keygen(op) : TG_EINVAL;
        break;
    case TG_KEYOP_KX_DERIVE:
        rc = op->kx && op->peer ? tg_sw_kx_derive(op) : TG_EINVAL;
        break;
    default:
        rc = TG_EINVAL;
    }
    if (rc != TG_OK) {
        op->outlen = 0;
        tg_log_openssl_errors(TG_LOG_DEBUG, "software key operation");
    }
    op->result = rc;
    return rc;
}
