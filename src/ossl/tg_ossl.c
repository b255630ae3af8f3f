/*
 * The "tlsgate" OpenSSL provider: registration, algorithm tables, TLS-GROUP
 * capabilities and the registry of certificate keys.
 */
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/tg_log.h"
#include "ossl/tg_ossl.h"
#include "ossl/tg_ossl_internal.h"

#define TG_PROPS "provider=tlsgate"

static const OSSL_ALGORITHM tg_keymgmt_algs[] = {
    {"RSA:rsaEncryption:1.2.840.113549.1.1.1", TG_PROPS, tg_ossl_rsa_keymgmt,
     "tlsgate RSA keys (asynchronous key providers)"},
    {"EC:id-ecPublicKey:1.2.840.10045.2.1", TG_PROPS, tg_ossl_ec_keymgmt,
     "tlsgate EC keys (asynchronous key providers)"},
    {"X25519:1.3.101.110", TG_PROPS, tg_ossl_x25519_keymgmt,
     "tlsgate X25519 keys (asynchronous key providers)"},
    {NULL, NULL, NULL, NULL},
};

static const OSSL_ALGORITHM tg_signature_algs[] = {
    {"RSA:rsaEncryption:1.2.840.113549.1.1.1", TG_PROPS, tg_ossl_rsa_signature,
     "RSA signatures through a tlsgate key provider"},
    {"ECDSA", TG_PROPS, tg_ossl_ecdsa_signature, "ECDSA through a tlsgate key provider"},
    {NULL, NULL, NULL, NULL},
};

static const OSSL_ALGORITHM tg_keyexch_algs[] = {
    {"ECDH", TG_PROPS, tg_ossl_ecdh_keyexch, "ECDH through a tlsgate key provider"},
    {"X25519:1.3.101.110", TG_PROPS, tg_ossl_x25519_keyexch,
     "X25519 through a tlsgate key provider"},
    {NULL, NULL, NULL, NULL},
};

static const OSSL_ALGORITHM *tg_query(void *provctx, int operation_id, int *no_cache)
{
    (void)provctx;
    *no_cache = 0;
    switch (operation_id) {
    case OSSL_OP_KEYMGMT:
        return tg_keymgmt_algs;
    case OSSL_OP_SIGNATURE:
        return tg_signature_algs;
    case OSSL_OP_KEYEXCH:
        return tg_keyexch_algs;
    default:
        return NULL;
    }
}

/* ---- TLS-GROUP capability ----
 * libssl (3.0) drops a group whose KEYMGMT, fetched with the SSL_CTX's
 * property query, comes from another provider than the one declaring it.
 * Whenever tlsgate's X25519/EC key management is preferred, tlsgate must
 * declare every group of those algorithms, aliases included. */
struct tg_tls_group {
    const char *tlsname, *realname, *alg;
    unsigned int id, secbits;
};

static const struct tg_tls_group tg_tls_groups[] = {
    {"x25519", "X25519", "X25519", 29, 128},    {"X25519", "X25519", "X25519", 29, 128},
    {"secp256r1", "prime256v1", "EC", 23, 128}, {"P-256", "prime256v1", "EC", 23, 128},
    {"secp384r1", "secp384r1", "EC", 24, 192},  {"P-384", "secp384r1", "EC", 24, 192},
    {"secp521r1", "secp521r1", "EC", 25, 256},  {"P-521", "secp521r1", "EC", 25, 256},
};

static int tg_get_capabilities(void *provctx, const char *capability, OSSL_CALLBACK *cb, void *arg)
{
    (void)provctx;
    if (strcasecmp(capability, "TLS-GROUP") != 0)
        return 0;
    for (size_t i = 0; i < TG_ARRAY_LEN(tg_tls_groups); i++) {
        const struct tg_tls_group *g = &tg_tls_groups[i];
        unsigned int id = g->id, secbits = g->secbits, is_kem = 0;
        int mintls = TLS1_VERSION, maxtls = 0, mindtls = DTLS1_VERSION, maxdtls = 0;
        OSSL_PARAM p[] = {
            OSSL_PARAM_utf8_string(OSSL_CAPABILITY_TLS_GROUP_NAME, (char *)g->tlsname, 0),
            OSSL_PARAM_utf8_string(OSSL_CAPABILITY_TLS_GROUP_NAME_INTERNAL, (char *)g->realname, 0),
            OSSL_PARAM_utf8_string(OSSL_CAPABILITY_TLS_GROUP_ALG, (char *)g->alg, 0),
            OSSL_PARAM_uint(OSSL_CAPABILITY_TLS_GROUP_ID, &id),
            OSSL_PARAM_uint(OSSL_CAPABILITY_TLS_GROUP_SECURITY_BITS, &secbits),
            OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MIN_TLS, &mintls),
            OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MAX_TLS, &maxtls),
            OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MIN_DTLS, &mindtls),
            OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MAX_DTLS, &maxdtls),
            OSSL_PARAM_uint(OSSL_CAPABILITY_TLS_GROUP_IS_KEM, &is_kem),
            OSSL_PARAM_END,
        };
        /* OSSL_PARAM_utf8_string with size 0 means "use strlen" only for
         * getters; set the sizes explicitly for the callback's readers. */
        p[0].data_size = strlen(g->tlsname) + 1;
        p[1].data_size = strlen(g->realname) + 1;
        p[2].data_size = strlen(g->alg) + 1;
        if (!cb(p, arg))
            return 0;
    }
    return 1;
}

static const OSSL_PARAM tg_prov_param_types[] = {
    OSSL_PARAM_DEFN(OSSL_PROV_PARAM_NAME, OSSL_PARAM_UTF8_PTR, NULL, 0),
    OSSL_PARAM_DEFN(OSSL_PROV_PARAM_VERSION, OSSL_PARAM_UTF8_PTR, NULL, 0),
    OSSL_PARAM_DEFN(OSSL_PROV_PARAM_BUILDINFO, OSSL_PARAM_UTF8_PTR, NULL, 0),
    OSSL_PARAM_DEFN(OSSL_PROV_PARAM_STATUS, OSSL_PARAM_INTEGER, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *tg_gettable_params(void *provctx)
{
    (void)provctx;
    return tg_prov_param_types;
}

static int tg_get_params(void *provctx, OSSL_PARAM params[])
{
    (void)provctx;
    OSSL_PARAM *p;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME)) != NULL &&
        !OSSL_PARAM_set_utf8_ptr(p, "tlsgate asynchronous key provider bridge"))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION)) != NULL &&
        !OSSL_PARAM_set_utf8_ptr(p, TG_VERSION))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_BUILDINFO)) != NULL &&
        !OSSL_PARAM_set_utf8_ptr(p, TG_VERSION))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS)) != NULL &&
        !OSSL_PARAM_set_int(p, 1))
        return 0;
    return 1;
}

static void tg_teardown(void *provctx)
{
    free(provctx);
}

static const OSSL_DISPATCH tg_prov_dispatch[] = {
    {OSSL_FUNC_PROVIDER_TEARDOWN, (void (*)(void))tg_teardown},
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))tg_query},
    {OSSL_FUNC_PROVIDER_GET_CAPABILITIES, (void (*)(void))tg_get_capabilities},
    {OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, (void (*)(void))tg_gettable_params},
    {OSSL_FUNC_PROVIDER_GET_PARAMS, (void (*)(void))tg_get_params},
    {0, NULL},
};

static int tg_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                            const OSSL_DISPATCH **out, void **provctx)
{
    (void)in;
    struct tg_provctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return 0;
    ctx->handle = handle;
    *provctx = ctx;
    *out = tg_prov_dispatch;
    return 1;
}

/* ---- digests ---- */

static const char *const tg_md_names[] = {"SHA256", "SHA384", "SHA512", "SHA1", "SHA224"};
static EVP_MD *tg_mds[TG_ARRAY_LEN(tg_md_names)];

const EVP_MD *tg_ossl_md(const char *name)
{
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < TG_ARRAY_LEN(tg_mds); i++) {
        if (tg_mds[i] != NULL && EVP_MD_is_a(tg_mds[i], name))
            return tg_mds[i];
    }
    return NULL;
}

/* ---- registry of certificate keys ----
 * tg_ossl_wrap_pkey() passes a tg_pkey pointer to the key manager's import
 * through an OSSL_PARAM. Only pointers registered here are honoured, so a
 * crafted parameter cannot make the provider dereference arbitrary memory.
 * A key is registered only for the duration of its import. */
struct tg_pkey_ref_param {
    uint64_t magic;
    struct tg_pkey *key;
};
#define TG_PKEY_REF_MAGIC 0x74676b6579726566ULL /* "tgkeyref" */

static pthread_mutex_t tg_reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tg_pkey **tg_reg;
static size_t tg_reg_n, tg_reg_cap;

static int tg_reg_add(struct tg_pkey *k)
{
    int rc = TG_OK;
    pthread_mutex_lock(&tg_reg_lock);
    for (size_t i = 0; i < tg_reg_n; i++) {
        if (tg_reg[i] == k)
            goto out;
    }
    if (tg_reg_n == tg_reg_cap) {
        size_t ncap = tg_reg_cap ? tg_reg_cap * 2 : 16;
        struct tg_pkey **nr = realloc(tg_reg, ncap * sizeof(*nr));
        if (nr == NULL) {
            rc = TG_ENOMEM;
            goto out;
        }
        tg_reg = nr;
        tg_reg_cap = ncap;
    }
    /* The registry keeps its own reference while the key is registered. */
    tg_reg[tg_reg_n++] = tg_pkey_ref(k);
out:
    pthread_mutex_unlock(&tg_reg_lock);
    return rc;
}

static void tg_reg_remove(struct tg_pkey *k)
{
    struct tg_pkey *found = NULL;
    pthread_mutex_lock(&tg_reg_lock);
    for (size_t i = 0; i < tg_reg_n; i++) {
        if (tg_reg[i] == k) {
            found = k;
            tg_reg[i] = tg_reg[--tg_reg_n];
            break;
        }
    }
    pthread_mutex_unlock(&tg_reg_lock);
    tg_pkey_unref(found);
}

struct tg_pkey *tg_ossl_pkey_from_param(const OSSL_PARAM *p)
{
    struct tg_pkey_ref_param ref;
    if (p == NULL || p->data_type != OSSL_PARAM_OCTET_STRING || p->data_size != sizeof(ref))
        return NULL;
    memcpy(&ref, p->data, sizeof(ref));
    if (ref.magic != TG_PKEY_REF_MAGIC)
        return NULL;
    struct tg_pkey *found = NULL;
    pthread_mutex_lock(&tg_reg_lock);
    for (size_t i = 0; i < tg_reg_n; i++) {
        if (tg_reg[i] == ref.key) {
            found = tg_pkey_ref(ref.key);
            break;
        }
    }
    pthread_mutex_unlock(&tg_reg_lock);
    return found;
}

EVP_PKEY *tg_ossl_wrap_pkey(struct tg_pkey *key)
{
    EVP_PKEY *pk = NULL;
    if (tg_reg_add(key) != TG_OK)
        return NULL;
    struct tg_pkey_ref_param ref = {TG_PKEY_REF_MAGIC, key};
    OSSL_PARAM params[] = {
        OSSL_PARAM_octet_string(TG_OSSL_PARAM_PKEY, &ref, sizeof(ref)),
        OSSL_PARAM_END,
    };
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, key->type == TG_PKEY_RSA ? "RSA" : "EC",
                                                   "provider=" TG_OSSL_PROVIDER_NAME);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_KEYPAIR, params) <= 0) {
        tg_log_openssl_errors(TG_LOG_ERROR, "wrapping a key in the tlsgate provider");
        pk = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    /* Only the import reads the pointer; the key object holds its own
     * reference now. Unregistered, a reload's old keys do not pile up. */
    tg_reg_remove(key);
    return pk;
}

/* ---- init ---- */

static OSSL_PROVIDER *tg_prov_default, *tg_prov_self;

int tg_ossl_init(void)
{
    if (tg_prov_self != NULL)
        return TG_OK;
    tg_prov_default = OSSL_PROVIDER_load(NULL, "default");
    if (tg_prov_default == NULL)
        goto fail;
    if (!OSSL_PROVIDER_add_builtin(NULL, TG_OSSL_PROVIDER_NAME, tg_provider_init))
        goto fail;
    tg_prov_self = OSSL_PROVIDER_load(NULL, TG_OSSL_PROVIDER_NAME);
    if (tg_prov_self == NULL)
        goto fail;
    /* Both providers implement X25519 and EC key management: say which one an
     * unqualified fetch gets. Listeners that offload key exchange override
     * it with "?provider=tlsgate". */
    if (!EVP_set_default_properties(NULL, "?provider=default"))
        goto fail;
    for (size_t i = 0; i < TG_ARRAY_LEN(tg_md_names); i++) {
        tg_mds[i] = EVP_MD_fetch(NULL, tg_md_names[i], "provider=default");
        if (tg_mds[i] == NULL)
            goto fail;
    }
    return TG_OK;
fail:
    tg_log_openssl_errors(TG_LOG_ERROR, "loading the tlsgate OpenSSL provider");
    tg_ossl_cleanup();
    return TG_ECRYPTO;
}

void tg_ossl_cleanup(void)
{
    for (size_t i = 0; i < TG_ARRAY_LEN(tg_mds); i++) {
        EVP_MD_free(tg_mds[i]);
        tg_mds[i] = NULL;
    }
    pthread_mutex_lock(&tg_reg_lock);
    for (size_t i = 0; i < tg_reg_n; i++)
        tg_pkey_unref(tg_reg[i]);
    free(tg_reg);
    tg_reg = NULL;
    tg_reg_n = tg_reg_cap = 0;
    pthread_mutex_unlock(&tg_reg_lock);
    if (tg_prov_self != NULL)
        OSSL_PROVIDER_unload(tg_prov_self);
    if (tg_prov_default != NULL)
        OSSL_PROVIDER_unload(tg_prov_default);
    tg_prov_self = tg_prov_default = NULL;
}
