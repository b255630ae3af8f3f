/*
 * crypto_mb shim: dlopen, dlsym, CPU and algorithm checks.
 */
#include "providers/cryptomb/tg_mbx.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/tg_log.h"
#include "core/tg_sysinfo.h"

#define TG_MBX_SONAME "libcrypto_mb.so.11"

#ifndef TG_DEPS_LIBDIR
#define TG_DEPS_LIBDIR ""
#endif

/* ---- compile-time checks against the real headers ---- */

#ifdef TG_HAVE_CRYPTO_MB_H
#include <crypto_mb/cpu_features.h>
#include <crypto_mb/ec_nistp256.h>
#include <crypto_mb/ec_nistp384.h>
#include <crypto_mb/ec_nistp521.h>
#include <crypto_mb/rsa.h>
#include <crypto_mb/status.h>
#include <crypto_mb/version.h>
#include <crypto_mb/x25519.h>

#define TG_MBX_SAME_TYPE(fn, type)                                                                 \
    _Static_assert(__builtin_types_compatible_p(__typeof__(&fn), type),                            \
                   #fn ": prototype differs from tg_mbx.h")

TG_MBX_SAME_TYPE(mbx_get_cpu_features, tg_mbx_get_cpu_features_fn);
TG_MBX_SAME_TYPE(mbx_is_crypto_mb_applicable, tg_mbx_is_crypto_mb_applicable_fn);
TG_MBX_SAME_TYPE(mbx_get_algo_info, tg_mbx_get_algo_info_fn);
TG_MBX_SAME_TYPE(mbx_getversion, const mbxVersion *(*)(void));
TG_MBX_SAME_TYPE(mbx_rsa_private_crt_ssl_mb8, tg_mbx_rsa_private_crt_ssl_mb8_fn);
TG_MBX_SAME_TYPE(mbx_rsa_public_ssl_mb8, tg_mbx_rsa_public_ssl_mb8_fn);
TG_MBX_SAME_TYPE(mbx_nistp256_ecdsa_sign_ssl_mb8, tg_mbx_ecdsa_sign_ssl_mb8_fn);
TG_MBX_SAME_TYPE(mbx_nistp384_ecdsa_sign_ssl_mb8, tg_mbx_ecdsa_sign_ssl_mb8_fn);
TG_MBX_SAME_TYPE(mbx_nistp521_ecdsa_sign_ssl_mb8, tg_mbx_ecdsa_sign_ssl_mb8_fn);
TG_MBX_SAME_TYPE(mbx_nistp256_ecdsa_verify_ssl_mb8, tg_mbx_ecdsa_verify_ssl_mb8_fn);
TG_MBX_SAME_TYPE(mbx_nistp384_ecdsa_verify_ssl_mb8, tg_mbx_ecdsa_verify_ssl_mb8_fn);
TG_MBX_SAME_TYPE(mbx_nistp521_ecdsa_verify_ssl_mb8, tg_mbx_ecdsa_verify_ssl_mb8_fn);
TG_MBX_SAME_TYPE(mbx_nistp256_ecpublic_key_ssl_mb8, tg_mbx_ecpublic_key_ssl_mb8_fn);
TG_MBX_SAME_TYPE(mbx_nistp384_ecpublic_key_ssl_mb8, tg_mbx_ecpublic_key_ssl_mb8_fn);
TG_MBX_SAME_TYPE(mbx_nistp521_ecpublic_key_ssl_mb8, tg_mbx_ecpublic_key_ssl_mb8_fn);
TG_MBX_SAME_TYPE(mbx_nistp256_ecdh_ssl_mb8, tg_mbx_ecdh_ssl_mb8_fn);
TG_MBX_SAME_TYPE(mbx_nistp384_ecdh_ssl_mb8, tg_mbx_ecdh_ssl_mb8_fn);
TG_MBX_SAME_TYPE(mbx_nistp521_ecdh_ssl_mb8, tg_mbx_ecdh_ssl_mb8_fn);
TG_MBX_SAME_TYPE(mbx_x25519_public_key_mb8, tg_mbx_x25519_public_key_mb8_fn);
TG_MBX_SAME_TYPE(mbx_x25519_mb8, tg_mbx_x25519_mb8_fn);

_Static_assert(sizeof(mbx_status) == sizeof(tg_mbx_status), "mbx_status");
_Static_assert(sizeof(enum MBX_ALGO) == sizeof(unsigned int), "enum MBX_ALGO");
_Static_assert(MBX_STATUS_OK == TG_MBX_STATUS_OK &&
                   MBX_STATUS_MISMATCH_PARAM_ERR == TG_MBX_STATUS_MISMATCH_PARAM_ERR &&
                   MBX_STATUS_NULL_PARAM_ERR == TG_MBX_STATUS_NULL_PARAM_ERR &&
                   MBX_STATUS_LOW_ORDER_ERR == TG_MBX_STATUS_LOW_ORDER_ERR &&
                   MBX_STATUS_SIGNATURE_ERR == TG_MBX_STATUS_SIGNATURE_ERR,
               "MBX_STATUS_* values");
_Static_assert(MBX_ALGO_RSA_2K == TG_MBX_ALGO_RSA_2K && MBX_ALGO_RSA_3K == TG_MBX_ALGO_RSA_3K &&
                   MBX_ALGO_RSA_4K == TG_MBX_ALGO_RSA_4K && MBX_ALGO_X25519 == TG_MBX_ALGO_X25519 &&
                   MBX_ALGO_EC_NIST_P256 == TG_MBX_ALGO_EC_NIST_P256 &&
                   MBX_ALGO_EC_NIST_P384 == TG_MBX_ALGO_EC_NIST_P384 &&
                   MBX_ALGO_EC_NIST_P521 == TG_MBX_ALGO_EC_NIST_P521 &&
                   MBX_WIDTH_MB8 == TG_MBX_WIDTH_MB8,
               "MBX_ALGO_* values");
_Static_assert(sizeof(mbxVersion) == sizeof(struct tg_mbx_version) &&
                   offsetof(mbxVersion, major) == offsetof(struct tg_mbx_version, major) &&
                   offsetof(mbxVersion, minor) == offsetof(struct tg_mbx_version, minor) &&
                   offsetof(mbxVersion, revision) == offsetof(struct tg_mbx_version, revision) &&
                   offsetof(mbxVersion, name) == offsetof(struct tg_mbx_version, name) &&
                   offsetof(mbxVersion, buildDate) == offsetof(struct tg_mbx_version, build_date) &&
                   offsetof(mbxVersion, strVersion) == offsetof(struct tg_mbx_version, str_version),
               "mbxVersion layout");
#endif /* TG_HAVE_CRYPTO_MB_H */

/* dlsym() yields an object pointer; POSIX guarantees it converts to a
 * function pointer of the same size. */
_Static_assert(sizeof(void *) == sizeof(tg_mbx_x25519_mb8_fn), "function pointer size");

/* ---- algorithm table ---- */

static const char *const tg_mbx_alg_names[TG_MBX_ALG_COUNT] = {
#define TG_MBX_ALG_LABEL(id, label) label,
    TG_MBX_ALGS(TG_MBX_ALG_LABEL)
#undef TG_MBX_ALG_LABEL
};

static const unsigned tg_mbx_alg_mbx[TG_MBX_ALG_COUNT] = {
    [TG_MBX_RSA2K] = TG_MBX_ALGO_RSA_2K,      [TG_MBX_RSA3K] = TG_MBX_ALGO_RSA_3K,
    [TG_MBX_RSA4K] = TG_MBX_ALGO_RSA_4K,      [TG_MBX_X25519] = TG_MBX_ALGO_X25519,
    [TG_MBX_P256] = TG_MBX_ALGO_EC_NIST_P256, [TG_MBX_P384] = TG_MBX_ALGO_EC_NIST_P384,
    [TG_MBX_P521] = TG_MBX_ALGO_EC_NIST_P521,
};

const char *tg_mbx_alg_name(enum tg_mbx_alg a)
{
    return (a >= 0 && a < TG_MBX_ALG_COUNT) ? tg_mbx_alg_names[a] : "none";
}

enum tg_mbx_alg tg_mbx_alg_for_rsa_bits(int bits)
{
    switch (bits) {
    case 2048:
        return TG_MBX_RSA2K;
    case 3072:
        return TG_MBX_RSA3K;
    case 4096:
        return TG_MBX_RSA4K;
    default:
        return TG_MBX_ALG_NONE;
    }
}

enum tg_mbx_alg tg_mbx_alg_for_group(enum tg_group g)
{
    switch (g) {
    case TG_GROUP_X25519:
        return TG_MBX_X25519;
    case TG_GROUP_P256:
        return TG_MBX_P256;
    case TG_GROUP_P384:
        return TG_MBX_P384;
    case TG_GROUP_P521:
        return TG_MBX_P521;
    default:
        return TG_MBX_ALG_NONE;
    }
}

enum tg_mbx_alg tg_mbx_alg_for_curve_nid(int nid)
{
    switch (nid) {
    case NID_X9_62_prime256v1:
        return TG_MBX_P256;
    case NID_secp384r1:
        return TG_MBX_P384;
    case NID_secp521r1:
        return TG_MBX_P521;
    default:
        return TG_MBX_ALG_NONE;
    }
}

/* ---- state ---- */

static pthread_mutex_t tg_mbx_mu = PTHREAD_MUTEX_INITIALIZER;
/* Published last (release) so lock-free readers see a complete table. */
static _Atomic(const struct tg_mbx_api *) tg_mbx_current;
static atomic_bool tg_mbx_alg_ok[TG_MBX_ALG_COUNT];
/* Under tg_mbx_mu: */
static struct tg_mbx_api tg_mbx_real;
static void *tg_mbx_handle;
static struct tg_mbx_info tg_mbx_st;

struct tg_mbx_sym {
    const char *name;
    size_t offset;
    bool required;
};

#define TG_MBX_SYM(member, req)                                                                    \
    {                                                                                              \
        "mbx_" #member, offsetof(struct tg_mbx_api, member), req                                   \
    }
static const struct tg_mbx_sym tg_mbx_syms[] = {
    TG_MBX_SYM(get_cpu_features, true),
    TG_MBX_SYM(is_crypto_mb_applicable, true),
    TG_MBX_SYM(get_algo_info, true),
    TG_MBX_SYM(getversion, true),
    TG_MBX_SYM(rsa_private_crt_ssl_mb8, true),
    TG_MBX_SYM(rsa_public_ssl_mb8, true),
    TG_MBX_SYM(nistp256_ecdsa_sign_ssl_mb8, true),
    TG_MBX_SYM(nistp384_ecdsa_sign_ssl_mb8, true),
    TG_MBX_SYM(nistp521_ecdsa_sign_ssl_mb8, false),
    TG_MBX_SYM(nistp256_ecdsa_verify_ssl_mb8, false),
    TG_MBX_SYM(nistp384_ecdsa_verify_ssl_mb8, false),
    TG_MBX_SYM(nistp521_ecdsa_verify_ssl_mb8, false),
    TG_MBX_SYM(nistp256_ecpublic_key_ssl_mb8, true),
    TG_MBX_SYM(nistp384_ecpublic_key_ssl_mb8, true),
    TG_MBX_SYM(nistp521_ecpublic_key_ssl_mb8, false),
    TG_MBX_SYM(nistp256_ecdh_ssl_mb8, true),
    TG_MBX_SYM(nistp384_ecdh_ssl_mb8, true),
    TG_MBX_SYM(nistp521_ecdh_ssl_mb8, false),
    TG_MBX_SYM(x25519_public_key_mb8, true),
    TG_MBX_SYM(x25519_mb8, true),
};
#undef TG_MBX_SYM

static void *tg_mbx_slot_get(const struct tg_mbx_api *api, size_t off)
{
    void *p;
    memcpy(&p, (const char *)api + off, sizeof(p));
    return p;
}

/* Record the failure reason (kept in the state and copied to the caller). */
static void tg_mbx_why_set(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void tg_mbx_why_set(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (vsnprintf(tg_mbx_st.why, sizeof(tg_mbx_st.why), fmt, ap) < 0)
        tg_mbx_st.why[0] = '\0';
    va_end(ap);
    if (why != NULL && whylen > 0 && snprintf(why, whylen, "%s", tg_mbx_st.why) < 0)
        why[0] = '\0';
}

static void tg_mbx_clear_locked(void)
{
    atomic_store_explicit(&tg_mbx_current, NULL, memory_order_release);
    for (int a = 0; a < TG_MBX_ALG_COUNT; a++)
        atomic_store_explicit(&tg_mbx_alg_ok[a], false, memory_order_relaxed);
    if (tg_mbx_handle != NULL)
        dlclose(tg_mbx_handle);
    tg_mbx_handle = NULL;
    memset(&tg_mbx_real, 0, sizeof(tg_mbx_real));
    char why[sizeof(tg_mbx_st.why)];
    memcpy(why, tg_mbx_st.why, sizeof(why));
    memset(&tg_mbx_st, 0, sizeof(tg_mbx_st));
    memcpy(tg_mbx_st.why, why, sizeof(why)); /* the last reason outlives an unload */
}

/*
 * Checks shared by the real library and an installed table: every required
 * function present, the library's own CPU verdict, per-algorithm support.
 * On success publishes api.
 */
static int tg_mbx_adopt_locked(const struct tg_mbx_api *api, char *why, size_t whylen)
{
    bool alg[TG_MBX_ALG_COUNT] = {false};
    for (size_t i = 0; i < TG_ARRAY_LEN(tg_mbx_syms); i++) {
        if (tg_mbx_syms[i].required && tg_mbx_slot_get(api, tg_mbx_syms[i].offset) == NULL) {
            tg_mbx_why_set(why, whylen, "crypto_mb lacks function %s", tg_mbx_syms[i].name);
            return TG_EUNAVAIL;
        }
    }
    tg_mbx_u64 features = api->get_cpu_features();
    if (!api->is_crypto_mb_applicable(features)) {
        tg_mbx_why_set(why, whylen, "%s",
                       "CPU lacks the AVX-512 features crypto_mb needs "
                       "(IFMA, VBMI2, DQ, BW; mbx_is_crypto_mb_applicable)");
        return TG_EUNAVAIL;
    }
    bool any = false;
    for (int a = 0; a < TG_MBX_ALG_COUNT; a++)
        alg[a] = (api->get_algo_info(tg_mbx_alg_mbx[a]) & TG_MBX_WIDTH_MB8) != 0;
    /* P-521 entry points are optional in the table. */
    if (api->nistp521_ecdsa_sign_ssl_mb8 == NULL || api->nistp521_ecpublic_key_ssl_mb8 == NULL ||
        api->nistp521_ecdh_ssl_mb8 == NULL)
        alg[TG_MBX_P521] = false;
    for (int a = 0; a < TG_MBX_ALG_COUNT; a++)
        any = any || alg[a];
    if (!any) {
        tg_mbx_why_set(why, whylen, "%s",
                       "crypto_mb supports none of RSA-2K/3K/4K, X25519, P-256/384/521 here");
        return TG_EUNAVAIL;
    }
    const struct tg_mbx_version *v = api->getversion();
    if (v != NULL && v->str_version != NULL)
        snprintf(tg_mbx_st.version, sizeof(tg_mbx_st.version), "%s", v->str_version);
    else if (v != NULL)
        snprintf(tg_mbx_st.version, sizeof(tg_mbx_st.version), "%s %d.%d.%d",
                 v->name ? v->name : "crypto_mb", v->major, v->minor, v->revision);
    else
        snprintf(tg_mbx_st.version, sizeof(tg_mbx_st.version), "unknown");
    tg_mbx_st.cpu_features = features;
    for (int a = 0; a < TG_MBX_ALG_COUNT; a++) {
        tg_mbx_st.alg[a] = alg[a];
        atomic_store_explicit(&tg_mbx_alg_ok[a], alg[a], memory_order_relaxed);
    }
    tg_mbx_st.loaded = true;
    tg_mbx_st.why[0] = '\0';
    atomic_store_explicit(&tg_mbx_current, api, memory_order_release);
    return TG_OK;
}

/* dlopen() in the documented order; records the path; NULL + reason. */
static void *tg_mbx_open_locked(char *why, size_t whylen)
{
    void *h = NULL;
    const char *env = getenv("TG_CRYPTO_MB_LIB");
    char path[512];
    if (env != NULL && env[0] != '\0') {
        h = dlopen(env, RTLD_NOW | RTLD_LOCAL);
        if (h == NULL) {
            const char *e = dlerror();
            tg_mbx_why_set(why, whylen, "cannot load TG_CRYPTO_MB_LIB=%s (%s)", env,
                           e ? e : "dlopen failed");
            return NULL;
        }
    } else {
        int n = snprintf(path, sizeof(path), "%s/%s", TG_DEPS_LIBDIR, TG_MBX_SONAME);
        if (TG_DEPS_LIBDIR[0] != '\0' && n > 0 && (size_t)n < sizeof(path) &&
            access(path, F_OK) == 0) {
            h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
            if (h == NULL) {
                const char *e = dlerror();
                tg_mbx_why_set(why, whylen, "cannot load %s (%s)", path, e ? e : "dlopen failed");
                return NULL;
            }
        }
        if (h == NULL) {
            h = dlopen(TG_MBX_SONAME, RTLD_NOW | RTLD_LOCAL);
            if (h == NULL) {
                const char *e = dlerror();
                if (e == NULL || strstr(e, "No such file") != NULL)
                    tg_mbx_why_set(why, whylen, "%s",
                                   TG_MBX_SONAME " not found (install libcrypto-mb11 or run "
                                                 "scripts/setup.sh)");
                else
                    tg_mbx_why_set(why, whylen, "cannot load " TG_MBX_SONAME " (%s)", e);
                return NULL;
            }
        }
    }
    struct link_map *lm = NULL;
    if (dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm != NULL && lm->l_name != NULL &&
        snprintf(tg_mbx_st.path, sizeof(tg_mbx_st.path), "%s", lm->l_name) < 0)
        tg_mbx_st.path[0] = '\0';
    return h;
}

int tg_mbx_load(char *why, size_t whylen)
{
    if (why != NULL && whylen > 0)
        why[0] = '\0';
    pthread_mutex_lock(&tg_mbx_mu);
    int rc = TG_OK;
    if (atomic_load_explicit(&tg_mbx_current, memory_order_acquire) != NULL)
        goto out; /* loaded, or a fake installed */
    tg_mbx_clear_locked();
    if (!tg_sysinfo_cpu_has_avx512_ifma()) {
        tg_mbx_why_set(why, whylen, "%s",
                       tg_sysinfo_fake_no_ifma() ? "CPU lacks AVX-512 IFMA (TG_FAKE_NO_IFMA is set)"
                                                 : "CPU lacks AVX-512 IFMA");
        rc = TG_EUNAVAIL;
        goto out;
    }
    tg_mbx_handle = tg_mbx_open_locked(why, whylen);
    if (tg_mbx_handle == NULL) {
        rc = TG_EUNAVAIL;
        goto out;
    }
    tg_mbx_real.name = TG_MBX_SONAME;
    for (size_t i = 0; i < TG_ARRAY_LEN(tg_mbx_syms); i++) {
        void *sym = dlsym(tg_mbx_handle, tg_mbx_syms[i].name);
        if (sym == NULL && tg_mbx_syms[i].required) {
            tg_mbx_why_set(why, whylen, "crypto_mb lacks function %s", tg_mbx_syms[i].name);
            rc = TG_EUNAVAIL;
            goto out;
        }
        memcpy((char *)&tg_mbx_real + tg_mbx_syms[i].offset, &sym, sizeof(sym));
    }
    char path[sizeof(tg_mbx_st.path)];
    memcpy(path, tg_mbx_st.path, sizeof(path));
    rc = tg_mbx_adopt_locked(&tg_mbx_real, why, whylen);
    memcpy(tg_mbx_st.path, path, sizeof(path));
out:
    if (rc != TG_OK) {
        char keep[sizeof(tg_mbx_st.why)];
        memcpy(keep, tg_mbx_st.why, sizeof(keep));
        tg_mbx_clear_locked();
        memcpy(tg_mbx_st.why, keep, sizeof(keep));
    }
    pthread_mutex_unlock(&tg_mbx_mu);
    return rc;
}

const struct tg_mbx_api *tg_mbx_api(void)
{
    return atomic_load_explicit(&tg_mbx_current, memory_order_acquire);
}

int tg_mbx_install(const struct tg_mbx_api *api)
{
    pthread_mutex_lock(&tg_mbx_mu);
    tg_mbx_clear_locked();
    int rc = TG_OK;
    if (api != NULL) {
        rc = tg_mbx_adopt_locked(api, NULL, 0);
        if (rc == TG_OK)
            tg_mbx_st.fake = true;
        else
            tg_mbx_clear_locked();
    }
    pthread_mutex_unlock(&tg_mbx_mu);
    return rc;
}

void tg_mbx_unload(void)
{
    pthread_mutex_lock(&tg_mbx_mu);
    tg_mbx_clear_locked();
    pthread_mutex_unlock(&tg_mbx_mu);
}

bool tg_mbx_available(enum tg_mbx_alg a)
{
    if (a < 0 || a >= TG_MBX_ALG_COUNT || tg_mbx_api() == NULL)
        return false;
    return atomic_load_explicit(&tg_mbx_alg_ok[a], memory_order_relaxed);
}

void tg_mbx_get_info(struct tg_mbx_info *out)
{
    pthread_mutex_lock(&tg_mbx_mu);
    *out = tg_mbx_st;
    pthread_mutex_unlock(&tg_mbx_mu);
}
