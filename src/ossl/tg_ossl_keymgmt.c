/*
 * KEYMGMT for RSA, EC and X25519 keys held by the tlsgate provider.
 *
 * Three kinds of key objects live here:
 *  - certificate private keys, imported by reference (tg_ossl_wrap_pkey);
 *  - public-only keys libssl imports to compare with a certificate;
 *  - ephemeral key-exchange keys (EC, X25519) that libssl generates and the
 *    peer shares it sets, when a listener routes key exchange through us.
 * Private parts are never exported.
 */
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/params.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ossl/tg_ossl.h"
#include "ossl/tg_ossl_internal.h"

static struct tg_okey *tg_okey_new(enum tg_okey_type type)
{
    struct tg_okey *k = calloc(1, sizeof(*k));
    if (k != NULL) {
        k->type = type;
        if (type == TG_OKEY_X25519)
            k->kx.group = TG_GROUP_X25519;
    }
    return k;
}

static void *tg_rsa_new(void *provctx)
{
    (void)provctx;
    return tg_okey_new(TG_OKEY_RSA);
}

static void *tg_ec_new(void *provctx)
{
    (void)provctx;
    return tg_okey_new(TG_OKEY_EC);
}

static void *tg_x25519_new(void *provctx)
{
    (void)provctx;
    return tg_okey_new(TG_OKEY_X25519);
}

static void tg_okey_free(void *vk)
{
    struct tg_okey *k = vk;
    if (k == NULL)
        return;
    tg_pkey_unref(k->cert);
    BN_free(k->n);
    BN_free(k->e);
    tg_kxkey_clear(&k->kx); /* wipes any ephemeral private key */
    free(k);
}

static const BIGNUM *tg_okey_n(const struct tg_okey *k)
{
    return k->cert ? k->cert->n : k->n;
}

static const BIGNUM *tg_okey_e(const struct tg_okey *k)
{
    return k->cert ? k->cert->e : k->e;
}

static bool tg_okey_has_pub(const struct tg_okey *k)
{
    if (k->type == TG_OKEY_RSA)
        return tg_okey_n(k) != NULL && tg_okey_e(k) != NULL;
    return k->kx.has_pub;
}

static bool tg_okey_has_priv(const struct tg_okey *k)
{
    return k->cert != NULL || k->kx.has_priv;
}

static int tg_okey_has(const void *vk, int selection)
{
    const struct tg_okey *k = vk;
    if (k == NULL)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) && !tg_okey_has_pub(k))
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) && !tg_okey_has_priv(k))
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS) && k->type != TG_OKEY_RSA &&
        k->kx.group == TG_GROUP_NONE)
        return 0;
    return 1;
}

static int tg_okey_match(const void *va, const void *vb, int selection)
{
    const struct tg_okey *a = va, *b = vb;
    if (a->type != b->type)
        return 0;
    if (a->type == TG_OKEY_RSA) {
        if ((selection & OSSL_KEYMGMT_SELECT_KEYPAIR) == 0)
            return 1;
        const BIGNUM *an = tg_okey_n(a), *bn = tg_okey_n(b);
        const BIGNUM *ae = tg_okey_e(a), *be = tg_okey_e(b);
        return an && bn && ae && be && BN_cmp(an, bn) == 0 && BN_cmp(ae, be) == 0;
    }
    if (a->kx.group != b->kx.group)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_KEYPAIR) == 0)
        return 1;
    /* Public points identify the pair; private parts are never compared. */
    return a->kx.has_pub && b->kx.has_pub && a->kx.publen == b->kx.publen &&
           CRYPTO_memcmp(a->kx.pub, b->kx.pub, a->kx.publen) == 0;
}

static void tg_okey_from_cert(struct tg_okey *k, struct tg_pkey *cert)
{
    k->cert = cert;
    if (cert->type == TG_PKEY_EC) {
        k->kx.group = tg_group_from_name(cert->group);
        memcpy(k->kx.pub, cert->pub_point, cert->pub_point_len);
        k->kx.publen = cert->pub_point_len;
        k->kx.has_pub = true;
    }
}

/* ---- import / export ---- */

static int tg_okey_import(void *vk, int selection, const OSSL_PARAM params[])
{
    struct tg_okey *k = vk;
    const OSSL_PARAM *p;
    if (k == NULL || k->cert != NULL)
        return 0;
    struct tg_pkey *cert =
        tg_ossl_pkey_from_param(OSSL_PARAM_locate_const(params, TG_OSSL_PARAM_PKEY));
    if (cert != NULL) {
        int want = k->type == TG_OKEY_RSA ? TG_PKEY_RSA : TG_PKEY_EC;
        if ((int)cert->type != want || k->type == TG_OKEY_X25519) {
            tg_pkey_unref(cert);
            return 0;
        }
        tg_okey_from_cert(k, cert);
        return 1;
    }
    /* Raw private keys are not accepted: keys enter through the registry. */
    if (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY)
        return 0;
    if (k->type == TG_OKEY_RSA) {
        if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) == 0)
            return 1;
        BIGNUM *n = NULL, *e = NULL;
        if ((p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_N)) == NULL ||
            !OSSL_PARAM_get_BN(p, &n) ||
            (p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_E)) == NULL ||
            !OSSL_PARAM_get_BN(p, &e)) {
            BN_free(n);
            BN_free(e);
            return 0;
        }
        BN_free(k->n);
        BN_free(k->e);
        k->n = n;
        k->e = e;
        return 1;
    }
    enum tg_group g = k->type == TG_OKEY_X25519 ? TG_GROUP_X25519 : k->kx.group;
    if (k->type == TG_OKEY_EC) {
        p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_GROUP_NAME);
        const char *gname = NULL;
        if (p != NULL) {
            if (!OSSL_PARAM_get_utf8_string_ptr(p, &gname))
                return 0;
            g = tg_group_from_name(gname);
            if (g == TG_GROUP_NONE || g == TG_GROUP_X25519)
                return 0;
        }
        if (g == TG_GROUP_NONE)
            return 0;
        k->kx.group = g;
    }
    if (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) {
        const void *pub = NULL;
        size_t publen = 0;
        p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PUB_KEY);
        if (p == NULL)
            p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY);
        if (p == NULL || !OSSL_PARAM_get_octet_string_ptr(p, &pub, &publen))
            return 0;
        if (tg_kxkey_set_public(&k->kx, g, pub, publen) != TG_OK)
            return 0;
    }
    return 1;
}

static int tg_okey_export(void *vk, int selection, OSSL_CALLBACK *cb, void *cbarg)
{
    const struct tg_okey *k = vk;
    /* Refusing private export keeps libssl from copying the key to another
     * provider, which would bypass the key provider. */
    if (k == NULL || (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY))
        return 0;
    OSSL_PARAM params[4];
    int n = 0;
    unsigned char *nbuf = NULL, *ebuf = NULL;
    int ok = 0;
    if (k->type == TG_OKEY_RSA) {
        if (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) {
            const BIGNUM *bn = tg_okey_n(k), *be = tg_okey_e(k);
            if (bn == NULL || be == NULL)
                return 0;
            size_t nl = (size_t)BN_num_bytes(bn), el = (size_t)BN_num_bytes(be);
            nbuf = malloc(nl ? nl : 1);
            ebuf = malloc(el ? el : 1);
            if (nbuf == NULL || ebuf == NULL || BN_bn2nativepad(bn, nbuf, (int)nl) < 0 ||
                BN_bn2nativepad(be, ebuf, (int)el) < 0)
                goto out;
            params[n++] = OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_RSA_N, nbuf, nl);
            params[n++] = OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_RSA_E, ebuf, el);
        }
    } else {
        if (k->type == TG_OKEY_EC && (selection & (OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS |
                                                   OSSL_KEYMGMT_SELECT_PUBLIC_KEY))) {
            const char *gn = tg_group_name(k->kx.group);
            if (gn == NULL)
                goto out;
            params[n++] =
                OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)gn, 0);
        }
        if (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) {
            if (!k->kx.has_pub)
                goto out;
            params[n++] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
                                                            (void *)k->kx.pub, k->kx.publen);
        }
    }
    params[n] = OSSL_PARAM_construct_end();
    ok = cb(params, cbarg);
out:
    free(nbuf);
    free(ebuf);
    return ok;
}

static const OSSL_PARAM tg_rsa_io_types[] = {
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM tg_ec_io_types[] = {
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM tg_x25519_io_types[] = {
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *tg_rsa_io_types_fn(int selection)
{
    (void)selection;
    return tg_rsa_io_types;
}

static const OSSL_PARAM *tg_ec_io_types_fn(int selection)
{
    (void)selection;
    return tg_ec_io_types;
}

static const OSSL_PARAM *tg_x25519_io_types_fn(int selection)
{
    (void)selection;
    return tg_x25519_io_types;
}

/* ---- parameters ---- */

static int tg_set_int_param(OSSL_PARAM params[], const char *name, int v)
{
    OSSL_PARAM *p = OSSL_PARAM_locate(params, name);
    return p == NULL || OSSL_PARAM_set_int(p, v);
}

static int tg_okey_get_params(void *vk, OSSL_PARAM params[])
{
    struct tg_okey *k = vk;
    OSSL_PARAM *p;
    int bits = 0, secbits = 0, maxsize = 0;
    if (k->type == TG_OKEY_RSA) {
        const BIGNUM *n = tg_okey_n(k);
        if (n != NULL) {
            bits = BN_num_bits(n);
            maxsize = BN_num_bytes(n);
            secbits = bits >= 15360  ? 256
                      : bits >= 7680 ? 192
                      : bits >= 3072 ? 128
                      : bits >= 2048 ? 112
                                     : 80;
        }
        if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_RSA_N)) != NULL &&
            (n == NULL || !OSSL_PARAM_set_BN(p, n)))
            return 0;
        if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_RSA_E)) != NULL &&
            (tg_okey_e(k) == NULL || !OSSL_PARAM_set_BN(p, tg_okey_e(k))))
            return 0;
    } else {
        switch (k->kx.group) {
        case TG_GROUP_X25519:
            bits = 253, secbits = 128, maxsize = 32;
            break;
        case TG_GROUP_P256:
            bits = 256, secbits = 128, maxsize = 72;
            break;
        case TG_GROUP_P384:
            bits = 384, secbits = 192, maxsize = 104;
            break;
        case TG_GROUP_P521:
            bits = 521, secbits = 256, maxsize = 139;
            break;
        default:
            break;
        }
        if (k->cert != NULL)
            maxsize = (int)k->cert->sig_max;
        if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_GROUP_NAME)) != NULL &&
            k->type == TG_OKEY_EC &&
            (tg_group_name(k->kx.group) == NULL ||
             !OSSL_PARAM_set_utf8_string(p, tg_group_name(k->kx.group))))
            return 0;
        if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY)) != NULL &&
            (!k->kx.has_pub || !OSSL_PARAM_set_octet_string(p, k->kx.pub, k->kx.publen)))
            return 0;
        if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_PUB_KEY)) != NULL &&
            (!k->kx.has_pub || !OSSL_PARAM_set_octet_string(p, k->kx.pub, k->kx.publen)))
            return 0;
        if (k->type == TG_OKEY_EC) {
            if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT)) !=
                    NULL &&
                !OSSL_PARAM_set_utf8_string(p, "uncompressed"))
                return 0;
            if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_EC_FIELD_TYPE)) != NULL &&
                !OSSL_PARAM_set_utf8_string(p, "prime-field"))
                return 0;
        }
    }
    if (!tg_set_int_param(params, OSSL_PKEY_PARAM_BITS, bits) ||
        !tg_set_int_param(params, OSSL_PKEY_PARAM_SECURITY_BITS, secbits) ||
        !tg_set_int_param(params, OSSL_PKEY_PARAM_MAX_SIZE, maxsize))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_DEFAULT_DIGEST)) != NULL &&
        k->type != TG_OKEY_X25519 && !OSSL_PARAM_set_utf8_string(p, "SHA256"))
        return 0;
    return 1;
}

static const OSSL_PARAM tg_rsa_gettable[] = {
    OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM tg_ec_gettable[] = {
    OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_FIELD_TYPE, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM tg_x25519_gettable[] = {
    OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *tg_rsa_gettable_fn(void *provctx)
{
    (void)provctx;
    return tg_rsa_gettable;
}

static const OSSL_PARAM *tg_ec_gettable_fn(void *provctx)
{
    (void)provctx;
    return tg_ec_gettable;
}

static const OSSL_PARAM *tg_x25519_gettable_fn(void *provctx)
{
    (void)provctx;
    return tg_x25519_gettable;
}

/* libssl sets the peer's share with EVP_PKEY_set1_encoded_public_key(). */
static int tg_kx_set_params(void *vk, const OSSL_PARAM params[])
{
    struct tg_okey *k = vk;
    const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY);
    if (p == NULL)
        return 1;
    if (k->cert != NULL)
        return 0; /* a certificate key's public half is fixed */
    const void *pub = NULL;
    size_t publen = 0;
    if (!OSSL_PARAM_get_octet_string_ptr(p, &pub, &publen))
        return 0;
    return tg_kxkey_set_public(&k->kx, k->kx.group, pub, publen) == TG_OK;
}

static const OSSL_PARAM tg_kx_settable[] = {
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *tg_kx_settable_fn(void *provctx)
{
    (void)provctx;
    return tg_kx_settable;
}

static int tg_okey_validate(const void *vk, int selection, int checktype)
{
    (void)checktype;
    /* Public shares are validated when they are set. */
    return tg_okey_has(vk, selection);
}

static void *tg_okey_dup(const void *vsrc, int selection)
{
    const struct tg_okey *src = vsrc;
    struct tg_okey *k = tg_okey_new(src->type);
    if (k == NULL)
        return NULL;
    if (src->cert != NULL && (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY)) {
        tg_okey_from_cert(k, tg_pkey_ref(src->cert));
        return k;
    }
    if (src->type == TG_OKEY_RSA) {
        if (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) {
            const BIGNUM *n = tg_okey_n(src), *e = tg_okey_e(src);
            if (n == NULL || e == NULL || (k->n = BN_dup(n)) == NULL ||
                (k->e = BN_dup(e)) == NULL) {
                tg_okey_free(k);
                return NULL;
            }
        }
        return k;
    }
    k->kx.group = src->kx.group;
    if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) && src->kx.has_pub) {
        memcpy(k->kx.pub, src->kx.pub, src->kx.publen);
        k->kx.publen = src->kx.publen;
        k->kx.has_pub = true;
    }
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) && src->kx.has_priv) {
        memcpy(k->kx.priv, src->kx.priv, src->kx.privlen);
        k->kx.privlen = src->kx.privlen;
        k->kx.has_priv = true;
    }
    return k;
}

static const char *tg_ec_query_operation_name(int operation_id)
{
    switch (operation_id) {
    case OSSL_OP_SIGNATURE:
        return "ECDSA";
    case OSSL_OP_KEYEXCH:
        return "ECDH";
    default:
        return NULL;
    }
}

/* ---- generation: ephemeral keys for key exchange ---- */

struct tg_gen {
    enum tg_okey_type type;
    int selection;
    enum tg_group group;
};

static void *tg_gen_init(enum tg_okey_type type, int selection, const OSSL_PARAM params[]);

static int tg_gen_set_params(void *vg, const OSSL_PARAM params[])
{
    struct tg_gen *g = vg;
    const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_GROUP_NAME);
    if (p == NULL)
        return 1;
    const char *name = NULL;
    if (!OSSL_PARAM_get_utf8_string_ptr(p, &name))
        return 0;
    enum tg_group grp = tg_group_from_name(name);
    if (grp == TG_GROUP_NONE || (g->type == TG_OKEY_EC) != (grp != TG_GROUP_X25519))
        return 0;
    g->group = grp;
    return 1;
}

static void *tg_gen_init(enum tg_okey_type type, int selection, const OSSL_PARAM params[])
{
    struct tg_gen *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    g->type = type;
    g->selection = selection;
    g->group = type == TG_OKEY_X25519 ? TG_GROUP_X25519 : TG_GROUP_NONE;
    if (params != NULL && !tg_gen_set_params(g, params)) {
        free(g);
        return NULL;
    }
    return g;
}

static void *tg_ec_gen_init(void *provctx, int selection, const OSSL_PARAM params[])
{
    (void)provctx;
    return tg_gen_init(TG_OKEY_EC, selection, params);
}

static void *tg_x25519_gen_init(void *provctx, int selection, const OSSL_PARAM params[])
{
    (void)provctx;
    return tg_gen_init(TG_OKEY_X25519, selection, params);
}

static int tg_gen_set_template(void *vg, void *vtempl)
{
    struct tg_gen *g = vg;
    const struct tg_okey *t = vtempl;
    if (t == NULL || t->type != g->type || t->kx.group == TG_GROUP_NONE)
        return 0;
    g->group = t->kx.group;
    return 1;
}

static const OSSL_PARAM tg_gen_settable[] = {
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *tg_gen_settable_fn(void *genctx, void *provctx)
{
    (void)genctx;
    (void)provctx;
    return tg_gen_settable;
}

static void *tg_gen(void *vg, OSSL_CALLBACK *cb, void *cbarg)
{
    (void)cb;
    (void)cbarg;
    struct tg_gen *g = vg;
    if (g->group == TG_GROUP_NONE)
        return NULL;
    struct tg_okey *k = tg_okey_new(g->type);
    if (k == NULL)
        return NULL;
    k->kx.group = g->group;
    if ((g->selection & OSSL_KEYMGMT_SELECT_KEYPAIR) == 0)
        return k; /* domain parameters only (paramgen) */
    struct tg_keyop op;
    tg_keyop_init(&op, TG_KEYOP_KX_KEYGEN);
    op.kx = &k->kx;
    op.binding = tg_ossl_kx_binding();
    if (tg_keyop_run(&op) != TG_OK) {
        tg_okey_free(k);
        return NULL;
    }
    return k;
}

static void tg_gen_cleanup(void *vg)
{
    free(vg);
}

/* ---- dispatch tables ---- */

#define TG_KM_COMMON(io_types_fn, gettable_fn)                                                     \
    {OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))tg_okey_free},                                        \
        {OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))tg_okey_has},                                      \
        {OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))tg_okey_match},                                  \
        {OSSL_FUNC_KEYMGMT_VALIDATE, (void (*)(void))tg_okey_validate},                            \
        {OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))tg_okey_import},                                \
        {OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))io_types_fn},                             \
        {OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void))tg_okey_export},                                \
        {OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))io_types_fn},                             \
        {OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))tg_okey_get_params},                        \
        {OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))gettable_fn},                          \
    {                                                                                              \
        OSSL_FUNC_KEYMGMT_DUP, (void (*)(void))tg_okey_dup                                         \
    }

const OSSL_DISPATCH tg_ossl_rsa_keymgmt[] = {
    {OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))tg_rsa_new},
    TG_KM_COMMON(tg_rsa_io_types_fn, tg_rsa_gettable_fn),
    {0, NULL},
};

#define TG_KM_GEN(gen_init_fn)                                                                     \
    {OSSL_FUNC_KEYMGMT_GEN_INIT, (void (*)(void))gen_init_fn},                                     \
        {OSSL_FUNC_KEYMGMT_GEN_SET_TEMPLATE, (void (*)(void))tg_gen_set_template},                 \
        {OSSL_FUNC_KEYMGMT_GEN_SET_PARAMS, (void (*)(void))tg_gen_set_params},                     \
        {OSSL_FUNC_KEYMGMT_GEN_SETTABLE_PARAMS, (void (*)(void))tg_gen_settable_fn},               \
        {OSSL_FUNC_KEYMGMT_GEN, (void (*)(void))tg_gen},                                           \
        {OSSL_FUNC_KEYMGMT_GEN_CLEANUP, (void (*)(void))tg_gen_cleanup},                           \
        {OSSL_FUNC_KEYMGMT_SET_PARAMS, (void (*)(void))tg_kx_set_params},                          \
    {                                                                                              \
        OSSL_FUNC_KEYMGMT_SETTABLE_PARAMS, (void (*)(void))tg_kx_settable_fn                       \
    }

const OSSL_DISPATCH tg_ossl_ec_keymgmt[] = {
    {OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))tg_ec_new},
    TG_KM_COMMON(tg_ec_io_types_fn, tg_ec_gettable_fn),
    TG_KM_GEN(tg_ec_gen_init),
    {OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, (void (*)(void))tg_ec_query_operation_name},
    {0, NULL},
};

const OSSL_DISPATCH tg_ossl_x25519_keymgmt[] = {
    {OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))tg_x25519_new},
    TG_KM_COMMON(tg_x25519_io_types_fn, tg_x25519_gettable_fn),
    TG_KM_GEN(tg_x25519_gen_init),
    {0, NULL},
};
