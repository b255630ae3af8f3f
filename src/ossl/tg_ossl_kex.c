/*
 * KEYEXCH: X25519 and ECDH with ephemeral keys held by tlsgate. The derive
 * is a tg_keyop run by the provider the connection's listener chose for key
 * exchange (or inline in software).
 */
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <stdlib.h>
#include <string.h>

#include "ossl/tg_ossl.h"
#include "ossl/tg_ossl_internal.h"

struct tg_kexctx {
    enum tg_okey_type type;
    struct tg_okey *mine; /* owned by the EVP_PKEYs the caller holds */
    struct tg_okey *peer;
};

const struct tg_keyprov_binding *tg_ossl_kx_binding(void)
{
    struct tg_keyctx *ctx = tg_keyctx_current();
    return ctx != NULL ? ctx->kx : NULL;
}

static void *tg_kex_newctx(enum tg_okey_type type)
{
    struct tg_kexctx *c = calloc(1, sizeof(*c));
    if (c != NULL)
        c->type = type;
    return c;
}

static void *tg_ecdh_newctx(void *provctx)
{
    (void)provctx;
    return tg_kex_newctx(TG_OKEY_EC);
}

static void *tg_x25519_kex_newctx(void *provctx)
{
    (void)provctx;
    return tg_kex_newctx(TG_OKEY_X25519);
}

static void tg_kex_freectx(void *vc)
{
    free(vc);
}

static void *tg_kex_dupctx(void *vc)
{
    struct tg_kexctx *c = malloc(sizeof(*c));
    if (c != NULL)
        *c = *(struct tg_kexctx *)vc;
    return c;
}

static int tg_kex_set_ctx_params(void *vc, const OSSL_PARAM params[])
{
    (void)vc;
    if (params == NULL)
        return 1;
    /* Plain ECDH only: no KDF, no cofactor mode (the curves have cofactor 1). */
    const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, OSSL_EXCHANGE_PARAM_KDF_TYPE);
    if (p != NULL) {
        const char *kdf = NULL;
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &kdf) || kdf[0] != '\0')
            return 0;
    }
    return 1;
}

static const OSSL_PARAM tg_kex_settable[] = {
    OSSL_PARAM_utf8_string(OSSL_EXCHANGE_PARAM_KDF_TYPE, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *tg_kex_settable_fn(void *vc, void *provctx)
{
    (void)vc;
    (void)provctx;
    return tg_kex_settable;
}

static int tg_kex_init(void *vc, void *vkey, const OSSL_PARAM params[])
{
    struct tg_kexctx *c = vc;
    struct tg_okey *k = vkey;
    /* Certificate keys do not do key exchange here (static ECDH is not
     * offered); only ephemeral keys with a private part. */
    if (k == NULL || k->type != c->type || k->cert != NULL || !k->kx.has_priv)
        return 0;
    c->mine = k;
    c->peer = NULL;
    return tg_kex_set_ctx_params(vc, params);
}

static int tg_kex_set_peer(void *vc, void *vpeer)
{
    struct tg_kexctx *c = vc;
    struct tg_okey *p = vpeer;
    if (p == NULL || p->type != c->type || !p->kx.has_pub || c->mine == NULL ||
        p->kx.group != c->mine->kx.group)
        return 0;
    c->peer = p;
    return 1;
}

static int tg_kex_derive(void *vc, unsigned char *secret, size_t *secretlen, size_t outlen)
{
    struct tg_kexctx *c = vc;
    if (c->mine == NULL || c->peer == NULL)
        return 0;
    size_t need = tg_group_secretlen(c->mine->kx.group);
    if (secret == NULL) {
        *secretlen = need;
        return 1;
    }
    if (outlen < need)
        return 0;
    struct tg_keyop op;
    tg_keyop_init(&op, TG_KEYOP_KX_DERIVE);
    op.kx = &c->mine->kx;
    op.peer = &c->peer->kx;
    op.binding = tg_ossl_kx_binding();
    int rc = tg_keyop_run(&op);
    if (rc != TG_OK || op.outlen != need) {
        OPENSSL_cleanse(op.out, sizeof(op.out));
        return 0;
    }
    memcpy(secret, op.out, need);
    OPENSSL_cleanse(op.out, sizeof(op.out));
    *secretlen = need;
    return 1;
}

#define TG_KEX_COMMON                                                                              \
    {OSSL_FUNC_KEYEXCH_INIT, (void (*)(void))tg_kex_init},                                         \
        {OSSL_FUNC_KEYEXCH_SET_PEER, (void (*)(void))tg_kex_set_peer},                             \
        {OSSL_FUNC_KEYEXCH_DERIVE, (void (*)(void))tg_kex_derive},                                 \
        {OSSL_FUNC_KEYEXCH_FREECTX, (void (*)(void))tg_kex_freectx},                               \
        {OSSL_FUNC_KEYEXCH_DUPCTX, (void (*)(void))tg_kex_dupctx},                                 \
        {OSSL_FUNC_KEYEXCH_SET_CTX_PARAMS, (void (*)(void))tg_kex_set_ctx_params},                 \
    {                                                                                              \
        OSSL_FUNC_KEYEXCH_SETTABLE_CTX_PARAMS, (void (*)(void))tg_kex_settable_fn                  \
    }

const OSSL_DISPATCH tg_ossl_ecdh_keyexch[] = {
    {OSSL_FUNC_KEYEXCH_NEWCTX, (void (*)(void))tg_ecdh_newctx},
    TG_KEX_COMMON,
    {0, NULL},
};

const OSSL_DISPATCH tg_ossl_x25519_keyexch[] = {
    {OSSL_FUNC_KEYEXCH_NEWCTX, (void (*)(void))tg_x25519_kex_newctx},
    TG_KEX_COMMON,
    {0, NULL},
};
