/*
 * crypto_mb microbenchmark and the provider's batch-vs-scalar calibration.
 */
#include "providers/cryptomb/tg_mb_bench.h"

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/tg_sysinfo.h"
#include "keyprov/tg_keyprov.h"
#include "providers/cryptomb/tg_mbx.h"
#include "keyprov/tg_rsa_pad.h"

struct tg_mb_kind_info {
    const char *label;
    enum tg_keyop_type type;
    int rsa_bits;      /* RSA_SIGN */
    int curve_nid;     /* ECDSA_SIGN */
    enum tg_group grp; /* KX_* */
};

static const struct tg_mb_kind_info tg_mb_kinds[TG_MB_KIND_COUNT] = {
    [TG_MB_KIND_RSA2048] = {"RSA-2048 sign", TG_KEYOP_RSA_SIGN, 2048, 0, TG_GROUP_NONE},
    [TG_MB_KIND_RSA3072] = {"RSA-3072 sign", TG_KEYOP_RSA_SIGN, 3072, 0, TG_GROUP_NONE},
    [TG_MB_KIND_RSA4096] = {"RSA-4096 sign", TG_KEYOP_RSA_SIGN, 4096, 0, TG_GROUP_NONE},
    [TG_MB_KIND_ECDSA_P256] = {"ECDSA P-256 sign", TG_KEYOP_ECDSA_SIGN, 0, NID_X9_62_prime256v1,
                               TG_GROUP_NONE},
    [TG_MB_KIND_ECDSA_P384] = {"ECDSA P-384 sign", TG_KEYOP_ECDSA_SIGN, 0, NID_secp384r1,
                               TG_GROUP_NONE},
    [TG_MB_KIND_X25519_KEYGEN] = {"X25519 keygen", TG_KEYOP_KX_KEYGEN, 0, 0, TG_GROUP_X25519},
    [TG_MB_KIND_X25519_DERIVE] = {"X25519 derive", TG_KEYOP_KX_DERIVE, 0, 0, TG_GROUP_X25519},
    [TG_MB_KIND_P256_KEYGEN] = {"P-256 keygen", TG_KEYOP_KX_KEYGEN, 0, 0, TG_GROUP_P256},
    [TG_MB_KIND_P256_DERIVE] = {"P-256 derive", TG_KEYOP_KX_DERIVE, 0, 0, TG_GROUP_P256},
    [TG_MB_KIND_P384_KEYGEN] = {"P-384 keygen", TG_KEYOP_KX_KEYGEN, 0, 0, TG_GROUP_P384},
    [TG_MB_KIND_P384_DERIVE] = {"P-384 derive", TG_KEYOP_KX_DERIVE, 0, 0, TG_GROUP_P384},
};

const char *tg_mb_kind_name(enum tg_mb_kind k)
{
    return (unsigned)k < TG_MB_KIND_COUNT ? tg_mb_kinds[k].label : "unknown";
}

enum tg_mb_kind tg_mb_kind_for_key(const struct tg_pkey *key)
{
    for (int k = 0; key != NULL && k < TG_MB_KIND_COUNT; k++) {
        const struct tg_mb_kind_info *i = &tg_mb_kinds[k];
        if ((key->type == TG_PKEY_RSA && i->type == TG_KEYOP_RSA_SIGN &&
             i->rsa_bits == key->bits) ||
            (key->type == TG_PKEY_EC && i->type == TG_KEYOP_ECDSA_SIGN &&
             i->curve_nid == key->curve_nid))
            return (enum tg_mb_kind)k;
    }
    return TG_MB_KIND_COUNT;
}

static enum tg_mb_kind tg_mb_kind_kx(enum tg_group g, enum tg_keyop_type t)
{
    for (int k = 0; k < TG_MB_KIND_COUNT; k++) {
        if (tg_mb_kinds[k].type == t && tg_mb_kinds[k].grp == g && g != TG_GROUP_NONE)
            return (enum tg_mb_kind)k;
    }
    return TG_MB_KIND_COUNT;
}

enum tg_mb_kind tg_mb_kind_keygen(enum tg_group g)
{
    return tg_mb_kind_kx(g, TG_KEYOP_KX_KEYGEN);
}

enum tg_mb_kind tg_mb_kind_derive(enum tg_group g)
{
    return tg_mb_kind_kx(g, TG_KEYOP_KX_DERIVE);
}

/* ---- one workload: 8 lanes of one kind ---- */

struct tg_mb_case {
    enum tg_mb_kind kind;
    const struct tg_mb_kind_info *info;
    const struct tg_pkey *key;
    struct tg_keyop ops[TG_MBX_LANES];
    struct tg_keyop *p[TG_MBX_LANES];
    struct tg_kxkey mine[TG_MBX_LANES], peers[TG_MBX_LANES], scratch;
    struct tg_kxkey *kp[TG_MBX_LANES];
    int res[TG_MBX_LANES];
    enum tg_fallback_reason why[TG_MBX_LANES];
    bool fault_check;
    unsigned errors;
    /* raw mbx inputs and outputs */
    unsigned char in[TG_MBX_LANES][512], out[TG_MBX_LANES][512], out2[TG_MBX_LANES][512];
    BIGNUM *bn_a[TG_MBX_LANES], *bn_b[TG_MBX_LANES], *bn_c[TG_MBX_LANES];
};

static double tg_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void tg_mb_case_free(struct tg_mb_case *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < TG_MBX_LANES; i++) {
        tg_kxkey_clear(&c->mine[i]);
        tg_kxkey_clear(&c->peers[i]);
        BN_clear_free(c->bn_a[i]);
        BN_free(c->bn_b[i]);
        BN_free(c->bn_c[i]);
    }
    tg_kxkey_clear(&c->scratch);
    OPENSSL_cleanse(c, sizeof(*c));
    free(c);
}

/* A peer share from OpenSSL. */
static int tg_mb_peer(struct tg_kxkey *peer, enum tg_group g)
{
    struct tg_keyop op;
    struct tg_kxkey tmp;
    memset(&tmp, 0, sizeof(tmp));
    tmp.group = g;
    tg_keyop_init(&op, TG_KEYOP_KX_KEYGEN);
    op.kx = &tmp;
    int rc = tg_keyop_compute_sw(&op);
    if (rc == TG_OK)
        rc = tg_kxkey_set_public(peer, g, tmp.pub, tmp.publen);
    tg_kxkey_clear(&tmp);
    return rc;
}

static const BIGNUM *tg_mb_order(int nid, EC_GROUP **keep)
{
    *keep = EC_GROUP_new_by_curve_name_ex(NULL, NULL, nid);
    return *keep ? EC_GROUP_get0_order(*keep) : NULL;
}

static int tg_mb_curve_nid(enum tg_group g)
{
    return g == TG_GROUP_P256 ? NID_X9_62_prime256v1 : NID_secp384r1;
}

static size_t tg_mb_flen(int nid)
{
    return nid == NID_X9_62_prime256v1 ? 32 : 48;
}

/* Build the 8-lane workload (ops for tg_mb_ops, inputs for the raw call). */
static struct tg_mb_case *tg_mb_case_new(enum tg_mb_kind kind, const struct tg_pkey *key)
{
    struct tg_mb_case *c = calloc(1, sizeof(*c));
    EC_GROUP *grp = NULL;
    if (c == NULL)
        return NULL;
    c->kind = kind;
    c->info = &tg_mb_kinds[kind];
    c->key = key;
    c->fault_check = true;
    const EVP_MD *sha256 = EVP_sha256();
    for (size_t i = 0; i < TG_MBX_LANES; i++) {
        struct tg_keyop *op = &c->ops[i];
        c->p[i] = op;
        c->kp[i] = &c->mine[i];
        tg_keyop_init(op, c->info->type);
        op->inlen = 32;
        if (RAND_bytes(op->in, 32) != 1)
            goto fail;
        switch (c->info->type) {
        case TG_KEYOP_RSA_SIGN:
            op->pkey = key;
            op->md = sha256;
            op->rsa_padding = TG_RSA_PAD_PKCS1;
            if (tg_rsa_pad_pkcs1(c->in[i], (size_t)key->bits / 8, key->bits, sha256, op->in, 32) !=
                TG_OK)
                goto fail;
            break;
        case TG_KEYOP_ECDSA_SIGN: {
            op->pkey = key;
            const BIGNUM *order = tg_mb_order(key->curve_nid, &grp);
            size_t olen = tg_mb_flen(key->curve_nid);
            c->bn_a[i] = BN_secure_new();
            if (order == NULL || c->bn_a[i] == NULL || !BN_priv_rand_range(c->bn_a[i], order) ||
                BN_is_zero(c->bn_a[i]))
                goto fail;
            memset(c->in[i], 0, olen);
            memcpy(c->in[i] + olen - 32, op->in, 32);
            c->in[i][0] &= 0x7f; /* below the order */
            EC_GROUP_free(grp);
            grp = NULL;
            break;
        }
        case TG_KEYOP_KX_KEYGEN:
            op->kx = &c->scratch;
            c->scratch.group = c->info->grp;
            if (c->info->grp == TG_GROUP_X25519) {
                if (RAND_bytes(c->in[i], 32) != 1)
                    goto fail;
            } else {
                const BIGNUM *order = tg_mb_order(tg_mb_curve_nid(c->info->grp), &grp);
                c->bn_a[i] = BN_secure_new();
                c->bn_b[i] = BN_new();
                c->bn_c[i] = BN_new();
                if (order == NULL || c->bn_c[i] == NULL || !BN_priv_rand_range(c->bn_a[i], order) ||
                    BN_is_zero(c->bn_a[i]))
                    goto fail;
                EC_GROUP_free(grp);
                grp = NULL;
            }
            break;
        case TG_KEYOP_KX_DERIVE:
            op->kx = &c->mine[i];
            op->peer = &c->peers[i];
            break;
        default:
            goto fail;
        }
    }
    if (c->info->type == TG_KEYOP_KX_DERIVE) {
        /* One key pair and one peer share (OpenSSL), replicated: the lanes'
         * cost does not depend on the values, and P-384 keygen is slow. */
        enum tg_group g = c->info->grp;
        struct tg_keyop kg;
        c->mine[0].group = g;
        tg_keyop_init(&kg, TG_KEYOP_KX_KEYGEN);
        kg.kx = &c->mine[0];
        if (tg_keyop_compute_sw(&kg) != TG_OK || tg_mb_peer(&c->peers[0], g) != TG_OK)
            goto fail;
        for (size_t i = 0; i < TG_MBX_LANES; i++) {
            if (i > 0) {
                c->mine[i] = c->mine[0];
                c->mine[i].sw = NULL; /* built on demand */
                if (tg_kxkey_set_public(&c->peers[i], g, c->peers[0].pub, c->peers[0].publen) !=
                    TG_OK)
                    goto fail;
            }
            if (g != TG_GROUP_X25519) {
                size_t flen = tg_mb_flen(tg_mb_curve_nid(g));
                c->bn_a[i] = BN_secure_new();
                c->bn_b[i] = BN_bin2bn(c->peers[i].pub + 1, (int)flen, NULL);
                c->bn_c[i] = BN_bin2bn(c->peers[i].pub + 1 + flen, (int)flen, NULL);
                if (c->bn_a[i] == NULL || c->bn_b[i] == NULL || c->bn_c[i] == NULL ||
                    BN_bin2bn(c->mine[i].priv, (int)c->mine[i].privlen, c->bn_a[i]) == NULL)
                    goto fail;
            }
        }
    }
    return c;
fail:
    EC_GROUP_free(grp);
    tg_mb_case_free(c);
    return NULL;
}

static int tg_mb_run_scalar(struct tg_mb_case *c, size_t n)
{
    (void)n;
    struct tg_keyop *op = &c->ops[0];
    op->state = TG_KEYOP_NEW;
    int rc = tg_keyop_compute_sw(op);
    if (rc != TG_OK)
        c->errors++;
    return rc;
}

static int tg_mb_run_ops(struct tg_mb_case *c, size_t n)
{
    int rc;
    switch (c->info->type) {
    case TG_KEYOP_RSA_SIGN:
        rc = tg_cmb_batch_rsa_sign(c->p, n, c->res, c->why, c->fault_check);
        break;
    case TG_KEYOP_ECDSA_SIGN:
        rc = tg_cmb_batch_ecdsa_sign(c->p, n, c->res, c->why);
        break;
    case TG_KEYOP_KX_KEYGEN: {
        struct tg_kxkey *keys[TG_MBX_LANES];
        for (size_t i = 0; i < n; i++)
            keys[i] = &c->peers[i]; /* scratch keys; derive cases use their own */
        rc = tg_cmb_batch_keygen(keys, n, c->info->grp, c->res);
        break;
    }
    default:
        rc = tg_cmb_batch_derive(c->p, n, c->res, c->why);
        break;
    }
    for (size_t i = 0; i < n; i++) {
        if (rc != TG_OK || c->res[i] != TG_OK)
            c->errors++;
    }
    return rc;
}

static int tg_mb_run_raw(struct tg_mb_case *c, size_t n)
{
    const struct tg_mbx_api *api = tg_mbx_api();
    tg_mbx_status st;
    const unsigned char *in[TG_MBX_LANES] = {NULL};
    unsigned char *out[TG_MBX_LANES] = {NULL}, *out2[TG_MBX_LANES] = {NULL};
    const BIGNUM *a[TG_MBX_LANES] = {NULL}, *b[TG_MBX_LANES] = {NULL}, *cc[TG_MBX_LANES] = {NULL};
    const BIGNUM *d[TG_MBX_LANES] = {NULL}, *e[TG_MBX_LANES] = {NULL};
    BIGNUM *x[TG_MBX_LANES] = {NULL}, *y[TG_MBX_LANES] = {NULL};
    if (api == NULL)
        return TG_EUNAVAIL;
    for (size_t i = 0; i < n; i++) {
        in[i] = c->in[i];
        out[i] = c->out[i];
        out2[i] = c->out2[i];
    }
    switch (c->kind) {
    case TG_MB_KIND_RSA2048:
    case TG_MB_KIND_RSA3072:
    case TG_MB_KIND_RSA4096:
        for (size_t i = 0; i < n; i++) {
            a[i] = c->key->p;
            b[i] = c->key->q;
            cc[i] = c->key->dmp1;
            d[i] = c->key->dmq1;
            e[i] = c->key->iqmp;
        }
        st = api->rsa_private_crt_ssl_mb8(in, out, a, b, cc, d, e, c->key->bits);
        break;
    case TG_MB_KIND_ECDSA_P256:
    case TG_MB_KIND_ECDSA_P384:
        for (size_t i = 0; i < n; i++) {
            a[i] = c->bn_a[i];
            b[i] = c->key->priv;
        }
        st = (c->kind == TG_MB_KIND_ECDSA_P256
                  ? api->nistp256_ecdsa_sign_ssl_mb8
                  : api->nistp384_ecdsa_sign_ssl_mb8)(out, out2, in, a, b, NULL);
        break;
    case TG_MB_KIND_X25519_KEYGEN:
        st = api->x25519_public_key_mb8(out, in);
        break;
    case TG_MB_KIND_P256_KEYGEN:
    case TG_MB_KIND_P384_KEYGEN:
        for (size_t i = 0; i < n; i++) {
            a[i] = c->bn_a[i];
            x[i] = c->bn_b[i];
            y[i] = c->bn_c[i];
        }
        st = (c->kind == TG_MB_KIND_P256_KEYGEN
                  ? api->nistp256_ecpublic_key_ssl_mb8
                  : api->nistp384_ecpublic_key_ssl_mb8)(x, y, NULL, a, NULL);
        break;
    case TG_MB_KIND_X25519_DERIVE:
        for (size_t i = 0; i < n; i++) {
            in[i] = c->mine[i].priv;
            out2[i] = c->peers[i].pub;
        }
        st = api->x25519_mb8(out, in, (const unsigned char *const *)out2);
        break;
    default: /* P-256 / P-384 derive */
        for (size_t i = 0; i < n; i++) {
            a[i] = c->bn_a[i];
            b[i] = c->bn_b[i];
            cc[i] = c->bn_c[i];
        }
        st = (c->kind == TG_MB_KIND_P256_DERIVE
                  ? api->nistp256_ecdh_ssl_mb8
                  : api->nistp384_ecdh_ssl_mb8)(out, a, b, cc, NULL, NULL);
        break;
    }
    for (size_t i = 0; i < n; i++) {
        if (tg_mbx_lane_status(st, (unsigned)i) != 0)
            c->errors++;
    }
    return TG_OK;
}

typedef int (*tg_mb_runner)(struct tg_mb_case *c, size_t n);

/* CPU microseconds per call: run for `seconds` (at least 2 calls). */
static double tg_mb_rate(tg_mb_runner fn, struct tg_mb_case *c, size_t n, double seconds)
{
    (void)fn(c, n); /* warm-up: page in tables, fill caches */
    unsigned long calls = 0;
    double t0 = tg_cpu_s(), t = t0;
    while (calls < 2 || t - t0 < seconds) {
        (void)fn(c, n);
        calls++;
        t = tg_cpu_s();
    }
    return (t - t0) * 1e6 / (double)calls;
}

/* Minimum over a few single calls (calibration: cheap, robust to noise):
 * three samples, two when a call is expensive. */
static double tg_mb_min_us(tg_mb_runner fn, struct tg_mb_case *c, size_t n)
{
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = tg_cpu_s();
        (void)fn(c, n);
        double us = (tg_cpu_s() - t0) * 1e6;
        if (rep == 0 || us < best)
            best = us;
        if (rep >= 1 && best > 200.0)
            break;
    }
    return best;
}

/* ---- calibration ---- */

int tg_mb_calibrate(const struct tg_pkey *const keys[], size_t nkeys, unsigned kinds,
                    struct tg_mb_calib *out)
{
    memset(out, 0, sizeof(*out));
    if (tg_mbx_api() == NULL)
        return TG_EUNAVAIL;
    if (kinds == 0)
        kinds = TG_MB_KIND_ALL;
    bool any = false;
    for (int k = 0; k < TG_MB_KIND_COUNT; k++) {
        if (!(kinds & TG_MB_KIND_BIT(k)))
            continue;
        const struct tg_mb_kind_info *info = &tg_mb_kinds[k];
        const struct tg_pkey *key = NULL;
        if (info->type == TG_KEYOP_RSA_SIGN || info->type == TG_KEYOP_ECDSA_SIGN) {
            for (size_t i = 0; i < nkeys && key == NULL; i++) {
                if (keys[i] != NULL && tg_mb_kind_for_key(keys[i]) == (enum tg_mb_kind)k &&
                    tg_cmb_batch_key_supported(keys[i], NULL, 0) == TG_OK)
                    key = keys[i];
            }
            if (key == NULL)
                continue;
        } else if (!tg_cmb_batch_group_supported(info->grp)) {
            continue;
        }
        struct tg_mb_case *c = tg_mb_case_new((enum tg_mb_kind)k, key);
        if (c == NULL)
            continue;
        double one = tg_mb_min_us(tg_mb_run_ops, c, 1);
        double eight = tg_mb_min_us(tg_mb_run_ops, c, TG_MBX_LANES);
        double scalar = tg_mb_min_us(tg_mb_run_scalar, c, 1);
        if (c->errors == 0) {
            out->valid[k] = true;
            out->scalar_us[k] = scalar;
            for (size_t n = 1; n <= TG_MBX_LANES; n++)
                out->batch_us[k][n] = one + (eight - one) * (double)(n - 1) / (TG_MBX_LANES - 1);
            any = true;
        }
        tg_mb_case_free(c);
    }
    return any ? TG_OK : TG_EUNAVAIL;
}

bool tg_mb_calib_prefer_batch(const struct tg_mb_calib *c, enum tg_mb_kind k, size_t n)
{
    if (c == NULL || (unsigned)k >= TG_MB_KIND_COUNT || !c->valid[k] || n > TG_MBX_LANES)
        return true;
    if (n == 0)
        return false;
    return c->batch_us[k][n] < (double)n * c->scalar_us[k];
}

size_t tg_mb_calib_min_batch(const struct tg_mb_calib *c, enum tg_mb_kind k)
{
    for (size_t n = 1; n <= TG_MBX_LANES; n++) {
        if (tg_mb_calib_prefer_batch(c, k, n))
            return n;
    }
    return TG_MBX_LANES + 1;
}

/* ---- the benchmark ---- */

static struct tg_pkey *tg_mb_bench_key(const char *type, size_t bits_or_0, const char *curve)
{
    EVP_PKEY *evp = curve != NULL ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve)
                                  : EVP_PKEY_Q_keygen(NULL, NULL, type, bits_or_0);
    struct tg_pkey *k = NULL;
    if (evp == NULL || tg_pkey_from_evp(evp, &k, NULL, 0) != TG_OK)
        k = NULL;
    EVP_PKEY_free(evp);
    return k;
}

int tg_mb_bench_run(struct tg_buf *out, double seconds_per_case)
{
    char why[256] = "";
    bool have_mb = tg_mbx_load(why, sizeof(why)) == TG_OK;
    struct tg_mbx_info info;
    struct tg_cpuinfo cpu;
    tg_mbx_get_info(&info);
    if (tg_sysinfo_read_cpuinfo(NULL, &cpu) != TG_OK)
        cpu.model[0] = '\0';
    if (seconds_per_case <= 0)
        seconds_per_case = 1.0;

    struct tg_pkey *keys[5] = {
        tg_mb_bench_key("RSA", 2048, NULL), tg_mb_bench_key("RSA", 3072, NULL),
        tg_mb_bench_key("RSA", 4096, NULL), tg_mb_bench_key("EC", 0, "P-256"),
        tg_mb_bench_key("EC", 0, "P-384"),
    };

    tg_buf_printf(out, "## crypto_mb microbenchmark\n\n");
    tg_buf_printf(out, "- CPU: %s\n- OpenSSL: %s\n- crypto_mb: %s\n",
                  cpu.model[0] ? cpu.model : "?", tg_sysinfo_openssl_runtime(),
                  have_mb ? info.version : why);
    tg_buf_printf(out,
                  "- one thread, CPU time of that thread (ops/s per core), %.2f s per case; "
                  "scalar = tg_keyop_compute_sw (OpenSSL EVP, default provider); RSA = PKCS#1 "
                  "v1.5 SHA-256\n\n",
                  seconds_per_case);
    tg_buf_printf(out, "| operation | OpenSSL scalar ops/s | crypto_mb via tg_mb_ops, 8 lanes "
                       "ops/s | raw mbx call, 8 lanes ops/s | speed-up (tg_mb_ops / scalar) |\n");
    tg_buf_printf(out, "|---|---:|---:|---:|---:|\n");

    double scalar_us[TG_MB_KIND_COUNT] = {0}, cost[TG_MB_KIND_COUNT][TG_MBX_LANES + 1];
    bool measured[TG_MB_KIND_COUNT] = {false};
    memset(cost, 0, sizeof(cost));
    for (int k = 0; k < TG_MB_KIND_COUNT; k++) {
        const struct tg_mb_kind_info *ki = &tg_mb_kinds[k];
        const struct tg_pkey *key = NULL;
        if (ki->type == TG_KEYOP_RSA_SIGN)
            key = keys[ki->rsa_bits == 2048 ? 0 : ki->rsa_bits == 3072 ? 1 : 2];
        else if (ki->type == TG_KEYOP_ECDSA_SIGN)
            key = keys[ki->curve_nid == NID_X9_62_prime256v1 ? 3 : 4];
        if ((ki->type == TG_KEYOP_RSA_SIGN || ki->type == TG_KEYOP_ECDSA_SIGN) && key == NULL)
            continue;
        struct tg_mb_case *c = tg_mb_case_new((enum tg_mb_kind)k, key);
        if (c == NULL) {
            tg_buf_printf(out, "| %s | (set-up failed) | | | |\n", ki->label);
            continue;
        }
        double s_us = tg_mb_rate(tg_mb_run_scalar, c, 1, seconds_per_case);
        scalar_us[k] = s_us;
        if (!have_mb) {
            tg_buf_printf(out, "| %s | %.0f | - | - | - |\n", ki->label, 1e6 / s_us);
            tg_mb_case_free(c);
            continue;
        }
        double ops_us = tg_mb_rate(tg_mb_run_ops, c, TG_MBX_LANES, seconds_per_case);
        double raw_us = tg_mb_rate(tg_mb_run_raw, c, TG_MBX_LANES, seconds_per_case);
        tg_buf_printf(out, "| %s%s | %.0f | %.0f | %.0f | %.2fx |\n", ki->label,
                      ki->type == TG_KEYOP_RSA_SIGN ? ", fault check on" : "", 1e6 / s_us,
                      1e6 * TG_MBX_LANES / ops_us, 1e6 * TG_MBX_LANES / raw_us,
                      s_us * TG_MBX_LANES / ops_us);
        if (ki->type == TG_KEYOP_RSA_SIGN) {
            c->fault_check = false;
            double nf_us = tg_mb_rate(tg_mb_run_ops, c, TG_MBX_LANES, seconds_per_case);
            tg_buf_printf(out, "| %s, fault check off | | %.0f | | %.2fx |\n", ki->label,
                          1e6 * TG_MBX_LANES / nf_us, s_us * TG_MBX_LANES / nf_us);
            c->fault_check = true;
        }
        for (size_t n = 1; n <= TG_MBX_LANES; n++)
            cost[k][n] = tg_mb_rate(tg_mb_run_raw, c, n, seconds_per_case / 4);
        measured[k] = true;
        if (c->errors != 0)
            tg_buf_printf(out, "| %s: %u lane errors during the run | | | | |\n", ki->label,
                          c->errors);
        tg_mb_case_free(c);
    }

    if (have_mb) {
        tg_buf_printf(out, "\n### Cost of one raw mbx call by lanes filled (us of CPU per call)\n\n"
                           "The provider's cost model: a partial batch of n is worth running "
                           "when mb8(n) < n x scalar (break-even n below).\n\n");
        tg_buf_printf(out, "| operation | scalar us/op |");
        for (size_t n = 1; n <= TG_MBX_LANES; n++)
            tg_buf_printf(out, " n=%zu |", n);
        tg_buf_printf(out, " break-even n |\n|---|---:|");
        for (size_t n = 1; n <= TG_MBX_LANES; n++)
            tg_buf_printf(out, "---:|");
        tg_buf_printf(out, "---:|\n");
        for (int k = 0; k < TG_MB_KIND_COUNT; k++) {
            if (!measured[k])
                continue;
            size_t be = 0;
            tg_buf_printf(out, "| %s | %.1f |", tg_mb_kinds[k].label, scalar_us[k]);
            for (size_t n = 1; n <= TG_MBX_LANES; n++) {
                tg_buf_printf(out, " %.1f |", cost[k][n]);
                if (be == 0 && cost[k][n] < (double)n * scalar_us[k])
                    be = n;
            }
            if (be)
                tg_buf_printf(out, " %zu |\n", be);
            else
                tg_buf_printf(out, " never |\n");
        }
    }
    for (size_t i = 0; i < TG_ARRAY_LEN(keys); i++)
        tg_pkey_unref(keys[i]);
    return have_mb ? TG_OK : TG_EUNAVAIL;
}
