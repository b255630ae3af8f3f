/*
 * Batches of RSA / ECDSA / key-exchange operations through crypto_mb.
 *
 * Lanes are packed at the front (0..n-1); the rest get NULL pointers, which
 * crypto_mb answers with MBX_STATUS_NULL_PARAM_ERR without writing anything.
 * A lane is used only when its status nibble is 0: crypto_mb computes, and
 * may write, lanes that failed a parameter check.
 */
#include "providers/cryptomb/tg_cmb_batch.h"

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/tg_log.h"
#include "keyprov/tg_rsa_pad.h"

#define TG_CMB_BATCH_NONE      TG_FALLBACK_REASON_COUNT
#define TG_CMB_BATCH_RSA_BYTES (4096 / 8)
#define TG_CMB_BATCH_EC_BYTES  66 /* P-521 field and order */

/*
 * crypto_mb copies private keys and nonces into stack buffers it does not
 * clear (BN_bn2lebinpad into locals), and leaves intermediate values mod p on
 * the stack. Overwrite the region its frames used: this function's frame
 * starts where the library's did, as both are called from the same caller.
 */
static void __attribute__((noinline)) tg_cmb_batch_scrub_stack(size_t kib)
{
    unsigned char area[128 * 1024];
    size_t len = kib * 1024 < sizeof(area) ? kib * 1024 : sizeof(area);
    OPENSSL_cleanse(area + sizeof(area) - len, len);
    __asm__ __volatile__("" : : "r"(area) : "memory");
}

static void tg_cmb_batch_lanes_init(size_t n, int results[], enum tg_fallback_reason reasons[],
                                    int rc)
{
    for (size_t i = 0; i < n; i++) {
        results[i] = rc;
        if (reasons != NULL)
            reasons[i] = TG_CMB_BATCH_NONE;
    }
}

static void tg_cmb_batch_lane_fail(int results[], enum tg_fallback_reason reasons[], size_t i,
                                   int rc, enum tg_fallback_reason why)
{
    results[i] = rc;
    if (reasons != NULL)
        reasons[i] = rc == TG_EDEVICE ? why : TG_CMB_BATCH_NONE;
}

static int tg_cmb_batch_batch_unavailable(size_t n, int results[],
                                          enum tg_fallback_reason reasons[])
{
    for (size_t i = 0; i < n; i++)
        tg_cmb_batch_lane_fail(results, reasons, i, TG_EDEVICE, TG_FALLBACK_DEVICE_ERROR);
    return TG_EUNAVAIL;
}

/* ---- curves ---- */

struct tg_cmb_batch_curve {
    enum tg_mbx_alg alg;
    enum tg_group group;
    int nid;
    size_t flen;      /* field element bytes (coordinates, ECDH output) */
    size_t olen;      /* order bytes (scalars, ECDSA r/s and message) */
    int order_bits;   /* for ECDSA digest truncation */
    size_t scrub_kib; /* crypto_mb's stack use (measured: 8, 15, 20 KiB) + margin */
    BIGNUM *order;    /* filled once */
};

static struct tg_cmb_batch_curve tg_cmb_batch_curves[] = {
    {TG_MBX_P256, TG_GROUP_P256, NID_X9_62_prime256v1, 32, 32, 256, 16, NULL},
    {TG_MBX_P384, TG_GROUP_P384, NID_secp384r1, 48, 48, 384, 24, NULL},
    {TG_MBX_P521, TG_GROUP_P521, NID_secp521r1, 66, 66, 521, 32, NULL},
};
static pthread_once_t tg_cmb_batch_curves_once = PTHREAD_ONCE_INIT;
static bool tg_cmb_batch_curves_ok;

static void tg_cmb_batch_curves_init(void)
{
    bool ok = true;
    for (size_t i = 0; i < TG_ARRAY_LEN(tg_cmb_batch_curves); i++) {
        EC_GROUP *g = EC_GROUP_new_by_curve_name_ex(NULL, NULL, tg_cmb_batch_curves[i].nid);
        const BIGNUM *o = g ? EC_GROUP_get0_order(g) : NULL;
        tg_cmb_batch_curves[i].order = o ? BN_dup(o) : NULL;
        ok = ok && tg_cmb_batch_curves[i].order != NULL &&
             BN_num_bits(tg_cmb_batch_curves[i].order) == tg_cmb_batch_curves[i].order_bits;
        EC_GROUP_free(g);
    }
    tg_cmb_batch_curves_ok = ok;
}

static const struct tg_cmb_batch_curve *tg_cmb_batch_curve_by_alg(enum tg_mbx_alg a)
{
    pthread_once(&tg_cmb_batch_curves_once, tg_cmb_batch_curves_init);
    if (!tg_cmb_batch_curves_ok)
        return NULL;
    for (size_t i = 0; i < TG_ARRAY_LEN(tg_cmb_batch_curves); i++) {
        if (tg_cmb_batch_curves[i].alg == a)
            return &tg_cmb_batch_curves[i];
    }
    return NULL;
}

static tg_mbx_ecdsa_sign_ssl_mb8_fn tg_cmb_batch_sign_fn(const struct tg_mbx_api *api,
                                                         enum tg_mbx_alg a)
{
    return a == TG_MBX_P256   ? api->nistp256_ecdsa_sign_ssl_mb8
           : a == TG_MBX_P384 ? api->nistp384_ecdsa_sign_ssl_mb8
                              : api->nistp521_ecdsa_sign_ssl_mb8;
}

static tg_mbx_ecpublic_key_ssl_mb8_fn tg_cmb_batch_pub_fn(const struct tg_mbx_api *api,
                                                          enum tg_mbx_alg a)
{
    return a == TG_MBX_P256   ? api->nistp256_ecpublic_key_ssl_mb8
           : a == TG_MBX_P384 ? api->nistp384_ecpublic_key_ssl_mb8
                              : api->nistp521_ecpublic_key_ssl_mb8;
}

static tg_mbx_ecdh_ssl_mb8_fn tg_cmb_batch_ecdh_fn(const struct tg_mbx_api *api, enum tg_mbx_alg a)
{
    return a == TG_MBX_P256   ? api->nistp256_ecdh_ssl_mb8
           : a == TG_MBX_P384 ? api->nistp384_ecdh_ssl_mb8
                              : api->nistp521_ecdh_ssl_mb8;
}

/* A uniformly random scalar in [1, n-1]. */
static int tg_cmb_batch_rand_scalar(BIGNUM *k, const BIGNUM *order, BN_CTX *ctx)
{
    for (int tries = 0; tries < 100; tries++) {
        if (!BN_priv_rand_range_ex(k, order, 0, ctx))
            return TG_ECRYPTO;
        if (!BN_is_zero(k))
            return TG_OK;
    }
    return TG_ECRYPTO;
}

/* ---- support queries ---- */

static bool tg_cmb_batch_rsa_shape_ok(const struct tg_pkey *k)
{
    int half = k->bits / 2;
    return k->n != NULL && k->e != NULL && k->p != NULL && k->q != NULL && k->dmp1 != NULL &&
           k->dmq1 != NULL && k->iqmp != NULL && BN_num_bits(k->n) == k->bits &&
           BN_num_bits(k->p) == half && BN_num_bits(k->q) == half && BN_num_bits(k->dmp1) <= half &&
           BN_num_bits(k->dmq1) <= half && BN_num_bits(k->iqmp) <= half;
}

int tg_cmb_batch_key_supported(const struct tg_pkey *key, char *why, size_t whylen)
{
    char dummy[4];
    if (why == NULL || whylen == 0) {
        why = dummy;
        whylen = sizeof(dummy);
    }
    why[0] = '\0';
    if (key == NULL)
        return TG_EINVAL;
    if (tg_mbx_api() == NULL) {
        snprintf(why, whylen, "crypto_mb is not loaded");
        return TG_EUNAVAIL;
    }
    if (key->type == TG_PKEY_RSA) {
        enum tg_mbx_alg a = tg_mbx_alg_for_rsa_bits(key->bits);
        if (a == TG_MBX_ALG_NONE || !tg_mbx_available(a)) {
            snprintf(why, whylen, "crypto_mb does not batch RSA-%d here (2048, 3072, 4096)",
                     key->bits);
            return TG_EUNAVAIL;
        }
        if (!tg_cmb_batch_rsa_shape_ok(key)) {
            snprintf(why, whylen,
                     "RSA-%d key with primes of %d and %d bits: crypto_mb needs two %d-bit primes",
                     key->bits, key->p ? BN_num_bits(key->p) : 0, key->q ? BN_num_bits(key->q) : 0,
                     key->bits / 2);
            return TG_EUNAVAIL;
        }
        return TG_OK;
    }
    if (key->type == TG_PKEY_EC) {
        enum tg_mbx_alg a = tg_mbx_alg_for_curve_nid(key->curve_nid);
        const struct tg_cmb_batch_curve *c = tg_cmb_batch_curve_by_alg(a);
        if (a == TG_MBX_ALG_NONE || c == NULL || !tg_mbx_available(a)) {
            snprintf(why, whylen, "crypto_mb does not do ECDSA on %s here",
                     key->group ? key->group : "this curve");
            return TG_EUNAVAIL;
        }
        if (key->priv == NULL || BN_is_zero(key->priv) || BN_cmp(key->priv, c->order) >= 0) {
            snprintf(why, whylen, "EC private scalar out of range");
            return TG_EUNAVAIL;
        }
        return TG_OK;
    }
    snprintf(why, whylen, "unsupported key type");
    return TG_EUNAVAIL;
}

bool tg_cmb_batch_group_supported(enum tg_group g)
{
    enum tg_mbx_alg a = tg_mbx_alg_for_group(g);
    if (a == TG_MBX_ALG_NONE || !tg_mbx_available(a))
        return false;
    return g == TG_GROUP_X25519 || tg_cmb_batch_curve_by_alg(a) != NULL;
}

/* ---- RSA ---- */

/* Scalar fault check for keys crypto_mb's public op cannot take (e != 65537). */
static int tg_cmb_batch_rsa_verify_scalar(const struct tg_pkey *k, const unsigned char *sig,
                                          const unsigned char *em, size_t klen)
{
    BN_CTX *ctx = BN_CTX_new();
    BIGNUM *s = NULL, *m = NULL;
    unsigned char chk[TG_CMB_BATCH_RSA_BYTES];
    int ok = 0;
    if (ctx == NULL)
        return 0;
    BN_CTX_start(ctx);
    s = BN_CTX_get(ctx);
    m = BN_CTX_get(ctx);
    ok = m != NULL && BN_bin2bn(sig, (int)klen, s) != NULL && BN_mod_exp(m, s, k->e, k->n, ctx) &&
         BN_bn2binpad(m, chk, (int)klen) == (int)klen && CRYPTO_memcmp(chk, em, klen) == 0;
    BN_CTX_end(ctx);
    BN_CTX_free(ctx);
    return ok;
}

int tg_cmb_batch_rsa_sign(struct tg_keyop *const ops[], size_t n, int results[],
                          enum tg_fallback_reason reasons[], bool fault_check)
{
    if (n == 0)
        return TG_OK;
    if (ops == NULL || results == NULL || reasons == NULL || n > TG_MBX_LANES)
        return TG_EINVAL;
    tg_cmb_batch_lanes_init(n, results, reasons, TG_EINVAL);

    int bits = 0;
    for (size_t i = 0; i < n && bits == 0; i++) {
        if (ops[i] != NULL && ops[i]->type == TG_KEYOP_RSA_SIGN && ops[i]->pkey != NULL &&
            ops[i]->pkey->type == TG_PKEY_RSA)
            bits = ops[i]->pkey->bits;
    }
    const struct tg_mbx_api *api = tg_mbx_api();
    enum tg_mbx_alg alg = tg_mbx_alg_for_rsa_bits(bits);
    if (api == NULL || alg == TG_MBX_ALG_NONE || !tg_mbx_available(alg))
        return tg_cmb_batch_batch_unavailable(n, results, reasons);

    size_t klen = (size_t)bits / 8;
    unsigned char em[TG_MBX_LANES][TG_CMB_BATCH_RSA_BYTES];
    unsigned char sig[TG_MBX_LANES][TG_CMB_BATCH_RSA_BYTES];
    unsigned char chk[TG_MBX_LANES][TG_CMB_BATCH_RSA_BYTES];
    const unsigned char *from[TG_MBX_LANES] = {NULL};
    unsigned char *to[TG_MBX_LANES] = {NULL};
    const BIGNUM *p[TG_MBX_LANES] = {NULL}, *q[TG_MBX_LANES] = {NULL};
    const BIGNUM *dp[TG_MBX_LANES] = {NULL}, *dq[TG_MBX_LANES] = {NULL}, *iq[TG_MBX_LANES] = {NULL};
    bool live[TG_MBX_LANES] = {false};
    size_t nlive = 0;

    for (size_t i = 0; i < n; i++) {
        struct tg_keyop *op = ops[i];
        if (op == NULL)
            continue;
        op->outlen = 0;
        const struct tg_pkey *k = op->pkey;
        if (op->type != TG_KEYOP_RSA_SIGN || k == NULL || k->type != TG_PKEY_RSA ||
            k->bits != bits || op->inlen > sizeof(op->in))
            continue; /* TG_EINVAL */
        if (!tg_cmb_batch_rsa_shape_ok(k)) {
            tg_cmb_batch_lane_fail(results, reasons, i, TG_EDEVICE, TG_FALLBACK_LANE_ERROR);
            continue;
        }
        int rc = tg_rsa_pad_encode(em[i], klen, bits, op->rsa_padding, op->md, op->mgf1_md,
                                   op->pss_saltlen, op->in, op->inlen);
        if (rc != TG_OK) {
            /* A digest without a DigestInfo here: software knows more. */
            tg_cmb_batch_lane_fail(results, reasons, i, rc == TG_EUNAVAIL ? TG_EDEVICE : rc,
                                   TG_FALLBACK_LANE_ERROR);
            continue;
        }
        from[i] = em[i];
        to[i] = sig[i];
        p[i] = k->p;
        q[i] = k->q;
        dp[i] = k->dmp1;
        dq[i] = k->dmq1;
        iq[i] = k->iqmp;
        live[i] = true;
        nlive++;
    }
    if (nlive == 0)
        return TG_OK;

    tg_mbx_status st = api->rsa_private_crt_ssl_mb8(from, to, p, q, dp, dq, iq, bits);
    tg_cmb_batch_scrub_stack((size_t)bits / 32 + 16); /* measured use: 70, 98, 125 KiB */
    for (size_t i = 0; i < n; i++) {
        if (live[i] && tg_mbx_lane_status(st, (unsigned)i) != TG_MBX_STATUS_OK) {
            live[i] = false;
            tg_cmb_batch_lane_fail(results, reasons, i, TG_EDEVICE, TG_FALLBACK_LANE_ERROR);
        }
    }

    if (fault_check) {
        const unsigned char *vfrom[TG_MBX_LANES] = {NULL};
        unsigned char *vto[TG_MBX_LANES] = {NULL};
        const BIGNUM *ve[TG_MBX_LANES] = {NULL}, *vn[TG_MBX_LANES] = {NULL};
        bool batched[TG_MBX_LANES] = {false};
        size_t nb = 0;
        for (size_t i = 0; i < n; i++) {
            if (!live[i])
                continue;
            const struct tg_pkey *k = ops[i]->pkey;
            if (BN_is_word(k->e, 65537)) {
                vfrom[i] = sig[i];
                vto[i] = chk[i];
                ve[i] = k->e;
                vn[i] = k->n;
                batched[i] = true;
                nb++;
            } else if (!tg_cmb_batch_rsa_verify_scalar(k, sig[i], em[i], klen)) {
                live[i] = false;
                tg_cmb_batch_lane_fail(results, reasons, i, TG_EDEVICE, TG_FALLBACK_FAULT_CHECK);
            }
        }
        tg_mbx_status vst = nb > 0 ? api->rsa_public_ssl_mb8(vfrom, vto, ve, vn, bits) : 0;
        for (size_t i = 0; i < n; i++) {
            if (!batched[i])
                continue;
            if (tg_mbx_lane_status(vst, (unsigned)i) != TG_MBX_STATUS_OK) {
                live[i] = false;
                tg_cmb_batch_lane_fail(results, reasons, i, TG_EDEVICE, TG_FALLBACK_LANE_ERROR);
            } else if (CRYPTO_memcmp(chk[i], em[i], klen) != 0) {
                live[i] = false;
                tg_cmb_batch_lane_fail(results, reasons, i, TG_EDEVICE, TG_FALLBACK_FAULT_CHECK);
                TG_WARN("crypto_mb: RSA-%d signature failed its fault check (lane %zu); "
                        "recomputing in software",
                        bits, i);
            }
        }
    }

    for (size_t i = 0; i < n; i++) {
        if (!live[i])
            continue;
        memcpy(ops[i]->out, sig[i], klen);
        ops[i]->outlen = klen;
        results[i] = TG_OK;
        reasons[i] = TG_CMB_BATCH_NONE;
    }
    /* A faulty signature would reveal a factor of n: none may linger. */
    OPENSSL_cleanse(sig, sizeof(sig));
    return TG_OK;
}

/* ---- ECDSA ---- */

/*
 * The integer e of ECDSA (SEC 1 4.1.3 step 5 / FIPS 186-4 6.4): the leftmost
 * min(order_bits, 8 * dlen) bits of the digest, then reduced mod n because
 * crypto_mb rejects e >= n (OpenSSL reduces implicitly in its mod-add).
 * Written as olen big-endian bytes. Returns false when e == 0.
 */
static bool tg_cmb_batch_ecdsa_msg(const struct tg_cmb_batch_curve *c, const unsigned char *dgst,
                                   size_t dlen, unsigned char *msg, BIGNUM *e)
{
    size_t take = dlen;
    if (8 * dlen > (size_t)c->order_bits)
        take = ((size_t)c->order_bits + 7) / 8;
    if (BN_bin2bn(dgst, (int)take, e) == NULL)
        return false;
    if (8 * take > (size_t)c->order_bits && !BN_rshift(e, e, (int)(8 * take) - c->order_bits))
        return false;
    if (BN_cmp(e, c->order) >= 0 && !BN_sub(e, e, c->order))
        return false;
    return !BN_is_zero(e) && BN_bn2binpad(e, msg, (int)c->olen) == (int)c->olen;
}

int tg_cmb_batch_ecdsa_sign(struct tg_keyop *const ops[], size_t n, int results[],
                            enum tg_fallback_reason reasons[])
{
    if (n == 0)
        return TG_OK;
    if (ops == NULL || results == NULL || reasons == NULL || n > TG_MBX_LANES)
        return TG_EINVAL;
    tg_cmb_batch_lanes_init(n, results, reasons, TG_EINVAL);

    int nid = NID_undef;
    for (size_t i = 0; i < n && nid == NID_undef; i++) {
        if (ops[i] != NULL && ops[i]->type == TG_KEYOP_ECDSA_SIGN && ops[i]->pkey != NULL &&
            ops[i]->pkey->type == TG_PKEY_EC)
            nid = ops[i]->pkey->curve_nid;
    }
    const struct tg_mbx_api *api = tg_mbx_api();
    enum tg_mbx_alg alg = tg_mbx_alg_for_curve_nid(nid);
    const struct tg_cmb_batch_curve *c = tg_cmb_batch_curve_by_alg(alg);
    if (api == NULL || c == NULL || !tg_mbx_available(alg))
        return tg_cmb_batch_batch_unavailable(n, results, reasons);

    unsigned char msg[TG_MBX_LANES][TG_CMB_BATCH_EC_BYTES];
    unsigned char rb[TG_MBX_LANES][TG_CMB_BATCH_EC_BYTES], sb[TG_MBX_LANES][TG_CMB_BATCH_EC_BYTES];
    unsigned char *r[TG_MBX_LANES] = {NULL}, *s[TG_MBX_LANES] = {NULL};
    const unsigned char *m[TG_MBX_LANES] = {NULL};
    const BIGNUM *kk[TG_MBX_LANES] = {NULL}, *dd[TG_MBX_LANES] = {NULL};
    BIGNUM *k[TG_MBX_LANES] = {NULL};
    bool live[TG_MBX_LANES] = {false};
    size_t nlive = 0;
    int rc = TG_OK;
    BN_CTX *ctx = BN_CTX_secure_new();
    BIGNUM *e = NULL;
    if (ctx != NULL) {
        BN_CTX_start(ctx);
        e = BN_CTX_get(ctx);
    }
    if (e == NULL) {
        rc = TG_ECRYPTO;
        goto out;
    }

    for (size_t i = 0; i < n; i++) {
        struct tg_keyop *op = ops[i];
        if (op == NULL)
            continue;
        op->outlen = 0;
        const struct tg_pkey *key = op->pkey;
        if (op->type != TG_KEYOP_ECDSA_SIGN || key == NULL || key->type != TG_PKEY_EC ||
            key->curve_nid != nid || op->inlen > sizeof(op->in) || key->priv == NULL)
            continue; /* TG_EINVAL */
        if (BN_is_zero(key->priv) || BN_cmp(key->priv, c->order) >= 0 ||
            !tg_cmb_batch_ecdsa_msg(c, op->in, op->inlen, msg[i], e)) {
            tg_cmb_batch_lane_fail(results, reasons, i, TG_EDEVICE, TG_FALLBACK_LANE_ERROR);
            continue;
        }
        k[i] = BN_CTX_get(ctx);
        if (k[i] == NULL || tg_cmb_batch_rand_scalar(k[i], c->order, ctx) != TG_OK) {
            tg_cmb_batch_lane_fail(results, reasons, i, TG_ECRYPTO, TG_CMB_BATCH_NONE);
            continue;
        }
        r[i] = rb[i];
        s[i] = sb[i];
        m[i] = msg[i];
        kk[i] = k[i];
        dd[i] = key->priv;
        live[i] = true;
        nlive++;
    }
    if (nlive == 0)
        goto out;

    tg_mbx_status st = tg_cmb_batch_sign_fn(api, alg)(r, s, m, kk, dd, NULL);
    tg_cmb_batch_scrub_stack(c->scrub_kib);
    for (size_t i = 0; i < n; i++) {
        if (!live[i])
            continue;
        if (tg_mbx_lane_status(st, (unsigned)i) != TG_MBX_STATUS_OK) {
            tg_cmb_batch_lane_fail(results, reasons, i, TG_EDEVICE, TG_FALLBACK_LANE_ERROR);
            continue;
        }
        ECDSA_SIG *sig = ECDSA_SIG_new();
        BIGNUM *br = BN_bin2bn(rb[i], (int)c->olen, NULL);
        BIGNUM *bs = BN_bin2bn(sb[i], (int)c->olen, NULL);
        int len = -1;
        if (sig != NULL && br != NULL && bs != NULL && ECDSA_SIG_set0(sig, br, bs)) {
            br = bs = NULL; /* owned by sig */
            len = i2d_ECDSA_SIG(sig, NULL);
            if (len > 0 && (size_t)len <= sizeof(ops[i]->out)) {
                unsigned char *pp = ops[i]->out;
                len = i2d_ECDSA_SIG(sig, &pp);
            } else {
                len = -1;
            }
        }
        BN_free(br);
        BN_free(bs);
        ECDSA_SIG_free(sig);
        if (len <= 0) {
            tg_cmb_batch_lane_fail(results, reasons, i, TG_ECRYPTO, TG_CMB_BATCH_NONE);
            continue;
        }
        ops[i]->outlen = (size_t)len;
        results[i] = TG_OK;
    }
out:
    for (size_t i = 0; i < n; i++) {
        if (k[i] != NULL)
            BN_clear(k[i]);
    }
    if (ctx != NULL) {
        BN_CTX_end(ctx);
        BN_CTX_free(ctx);
    }
    if (rc != TG_OK) {
        for (size_t i = 0; i < n; i++) {
            if (results[i] == TG_EINVAL && ops[i] != NULL)
                tg_cmb_batch_lane_fail(results, reasons, i, rc, TG_CMB_BATCH_NONE);
        }
    }
    return TG_OK;
}

/* ---- key generation ---- */

static int tg_cmb_batch_x25519_keygen(const struct tg_mbx_api *api, struct tg_kxkey *const keys[],
                                      size_t n, int results[])
{
    unsigned char *pub[TG_MBX_LANES] = {NULL};
    const unsigned char *priv[TG_MBX_LANES] = {NULL};
    unsigned char rnd[TG_MBX_LANES][32];
    size_t nlive = 0;
    /* One RNG call for the batch: cheaper than one per key. */
    if (RAND_priv_bytes_ex(NULL, &rnd[0][0], n * 32, 0) != 1) {
        for (size_t i = 0; i < n; i++) {
            if (keys[i] != NULL)
                results[i] = TG_ECRYPTO;
        }
        return TG_OK;
    }
    for (size_t i = 0; i < n; i++) {
        struct tg_kxkey *k = keys[i];
        if (k == NULL)
            continue;
        memcpy(k->priv, rnd[i], 32);
        /* RFC 7748 decodeScalar25519, as OpenSSL stores generated keys. */
        k->priv[0] &= 248;
        k->priv[31] &= 127;
        k->priv[31] |= 64;
        priv[i] = k->priv;
        pub[i] = k->pub;
        nlive++;
    }
    OPENSSL_cleanse(rnd, sizeof(rnd));
    if (nlive == 0)
        return TG_OK;
    tg_mbx_status st = api->x25519_public_key_mb8(pub, priv);
    tg_cmb_batch_scrub_stack(8); /* measured: 4 KiB */
    for (size_t i = 0; i < n; i++) {
        struct tg_kxkey *k = keys[i];
        if (priv[i] == NULL)
            continue;
        if (tg_mbx_lane_status(st, (unsigned)i) != TG_MBX_STATUS_OK) {
            OPENSSL_cleanse(k->priv, sizeof(k->priv));
            memset(k->pub, 0, sizeof(k->pub));
            results[i] = TG_EDEVICE;
            continue;
        }
        k->privlen = 32;
        k->publen = 32;
        k->has_priv = k->has_pub = true;
        results[i] = TG_OK;
    }
    return TG_OK;
}

static int tg_cmb_batch_ec_keygen(const struct tg_mbx_api *api, const struct tg_cmb_batch_curve *c,
                                  struct tg_kxkey *const keys[], size_t n, int results[])
{
    BIGNUM *x[TG_MBX_LANES] = {NULL}, *y[TG_MBX_LANES] = {NULL};
    BIGNUM *d[TG_MBX_LANES] = {NULL};
    const BIGNUM *dc[TG_MBX_LANES] = {NULL};
    size_t nlive = 0;
    BN_CTX *ctx = BN_CTX_secure_new();
    if (ctx == NULL)
        goto oom;
    BN_CTX_start(ctx);
    for (size_t i = 0; i < n; i++) {
        if (keys[i] == NULL)
            continue;
        d[i] = BN_CTX_get(ctx);
        x[i] = BN_CTX_get(ctx);
        y[i] = BN_CTX_get(ctx);
        if (y[i] == NULL || tg_cmb_batch_rand_scalar(d[i], c->order, ctx) != TG_OK) {
            results[i] = TG_ECRYPTO;
            continue;
        }
        /* crypto_mb stops storing results at the first failed lane, leaving
         * later lanes untouched although their status is OK: start from zero
         * so such a lane is recognisable. */
        BN_zero(x[i]);
        BN_zero(y[i]);
        dc[i] = d[i];
        nlive++;
    }
    if (nlive > 0) {
        tg_mbx_status st = tg_cmb_batch_pub_fn(api, c->alg)(x, y, NULL, dc, NULL);
        tg_cmb_batch_scrub_stack(c->scrub_kib);
        for (size_t i = 0; i < n; i++) {
            struct tg_kxkey *k = keys[i];
            if (dc[i] == NULL)
                continue;
            if (tg_mbx_lane_status(st, (unsigned)i) != TG_MBX_STATUS_OK ||
                (BN_is_zero(x[i]) && BN_is_zero(y[i])) || BN_num_bytes(x[i]) > (int)c->flen ||
                BN_num_bytes(y[i]) > (int)c->flen) {
                results[i] = TG_EDEVICE;
                continue;
            }
            k->pub[0] = 0x04;
            if (BN_bn2binpad(x[i], k->pub + 1, (int)c->flen) < 0 ||
                BN_bn2binpad(y[i], k->pub + 1 + c->flen, (int)c->flen) < 0 ||
                BN_bn2binpad(d[i], k->priv, (int)c->olen) < 0) {
                OPENSSL_cleanse(k->priv, sizeof(k->priv));
                results[i] = TG_ECRYPTO;
                continue;
            }
            k->privlen = c->olen;
            k->publen = 1 + 2 * c->flen;
            k->has_priv = k->has_pub = true;
            results[i] = TG_OK;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (d[i] != NULL)
            BN_clear(d[i]);
    }
    BN_CTX_end(ctx);
    BN_CTX_free(ctx);
    return TG_OK;
oom:
    for (size_t i = 0; i < n; i++) {
        if (keys[i] != NULL)
            results[i] = TG_ECRYPTO;
    }
    return TG_OK;
}

int tg_cmb_batch_keygen(struct tg_kxkey *const keys[], size_t n, enum tg_group group, int results[])
{
    if (n == 0)
        return TG_OK;
    if (keys == NULL || results == NULL || n > TG_MBX_LANES)
        return TG_EINVAL;
    tg_cmb_batch_lanes_init(n, results, NULL, TG_EINVAL);
    for (size_t i = 0; i < n; i++) {
        struct tg_kxkey *k = keys[i];
        if (k == NULL)
            continue;
        /* Whatever the key held is gone; so is its software twin. */
        EVP_PKEY_free(k->sw);
        OPENSSL_cleanse(k, sizeof(*k));
        k->group = group;
        results[i] = TG_EDEVICE;
    }
    const struct tg_mbx_api *api = tg_mbx_api();
    enum tg_mbx_alg alg = tg_mbx_alg_for_group(group);
    if (api == NULL || !tg_cmb_batch_group_supported(group))
        return TG_EUNAVAIL; /* lanes already TG_EDEVICE */
    if (group == TG_GROUP_X25519)
        return tg_cmb_batch_x25519_keygen(api, keys, n, results);
    return tg_cmb_batch_ec_keygen(api, tg_cmb_batch_curve_by_alg(alg), keys, n, results);
}

/* ---- key derivation ---- */

static bool tg_cmb_batch_derive_lane_ok(const struct tg_keyop *op, enum tg_group group)
{
    const struct tg_kxkey *k = op->kx, *p = op->peer;
    return op->type == TG_KEYOP_KX_DERIVE && k != NULL && p != NULL && k->group == group &&
           p->group == group && k->has_priv && p->has_pub &&
           k->privlen == tg_group_privlen(group) && p->publen == tg_group_publen(group) &&
           (group == TG_GROUP_X25519 || p->pub[0] == 0x04);
}

/*
 * Peer u-coordinates (little-endian, top bit masked as RFC 7748 says) of the
 * points of order dividing 8, including the non-canonical p and p + 1: the
 * shared secret is all zero for every private key, so they are refused
 * outright (OpenSSL refuses them too).
 */
static const unsigned char tg_cmb_batch_x25519_low_order[7][32] = {
    {0},
    {1},
    {0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3,
     0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32,
     0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00},
    {0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1,
     0x55, 0x9c, 0x83, 0xef, 0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c,
     0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57},
    {0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
    {0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
    {0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
};

static bool tg_cmb_batch_x25519_is_low_order(const unsigned char u[32])
{
    unsigned char m[32];
    memcpy(m, u, 32);
    m[31] &= 0x7f;
    for (size_t i = 0; i < TG_ARRAY_LEN(tg_cmb_batch_x25519_low_order); i++) {
        if (memcmp(m, tg_cmb_batch_x25519_low_order[i], 32) == 0)
            return true;
    }
    return false;
}

/*
 * crypto_mb 1.0.14's mbx_x25519_mb8 returns wrong results (status OK) for
 * some highly structured peer values, found by comparing with OpenSSL:
 * u = 2^85-1 ... 2^93-1, 2^85-2, 2^255-2^5 ... 2^255-2^10, every u in
 * [p-1393, p-1] (p-1 is a low-order point it fails to flag). All have runs
 * of at least 84 equal bits; random values, and random values containing
 * long runs, agree (1.3M + 0.5M lanes), as do 240k honest shares [k]B. Such
 * values never come from an honest peer (a run of 32 equal bits has
 * probability ~1e-7 in a random share), so a peer share with one goes to
 * software, which answers exactly as OpenSSL does. The share is public: no
 * constant-time concern.
 */
static bool tg_cmb_batch_x25519_structured(const unsigned char u[32])
{
    unsigned run = 0, longest = 0;
    int prev = -1;
    for (unsigned bit = 0; bit < 255; bit++) {
        int b = (u[bit / 8] >> (bit % 8)) & 1;
        run = b == prev ? run + 1 : 1;
        prev = b;
        if (run > longest)
            longest = run;
    }
    return longest >= 32;
}

static void tg_cmb_batch_x25519_derive(const struct tg_mbx_api *api, struct tg_keyop *const ops[],
                                       size_t n, const bool lane_ok[], int results[],
                                       enum tg_fallback_reason reasons[])
{
    unsigned char shared[TG_MBX_LANES][32];
    unsigned char *sh[TG_MBX_LANES] = {NULL};
    const unsigned char *priv[TG_MBX_LANES] = {NULL}, *pub[TG_MBX_LANES] = {NULL};
    size_t nlive = 0;
    for (size_t i = 0; i < n; i++) {
        if (!lane_ok[i])
            continue;
        const unsigned char *u = ops[i]->peer->pub;
        if (tg_cmb_batch_x25519_is_low_order(u)) {
            tg_cmb_batch_lane_fail(results, reasons, i, TG_EPROTO, TG_CMB_BATCH_NONE);
            continue;
        }
        if (tg_cmb_batch_x25519_structured(u)) {
            tg_cmb_batch_lane_fail(results, reasons, i, TG_EDEVICE, TG_FALLBACK_LANE_ERROR);
            continue;
        }
        sh[i] = shared[i];
        priv[i] = ops[i]->kx->priv;
        pub[i] = u;
        nlive++;
    }
    if (nlive == 0)
        return;
    tg_mbx_status st = api->x25519_mb8(sh, priv, pub);
    tg_cmb_batch_scrub_stack(8); /* measured: 4 KiB */
    for (size_t i = 0; i < n; i++) {
        if (sh[i] == NULL)
            continue;
        unsigned lst = tg_mbx_lane_status(st, (unsigned)i);
        unsigned char acc = 0;
        for (size_t j = 0; j < 32; j++)
            acc |= shared[i][j];
        if ((lst & TG_MBX_STATUS_LOW_ORDER_ERR) || (lst == TG_MBX_STATUS_OK && acc == 0)) {
            /* Low-order peer point: RFC 7748 6.1 / OpenSSL refuse it. */
            tg_cmb_batch_lane_fail(results, reasons, i, TG_EPROTO, TG_CMB_BATCH_NONE);
        } else if (lst != TG_MBX_STATUS_OK) {
            tg_cmb_batch_lane_fail(results, reasons, i, TG_EDEVICE, TG_FALLBACK_LANE_ERROR);
        } else {
            memcpy(ops[i]->out, shared[i], 32);
            ops[i]->outlen = 32;
            results[i] = TG_OK;
            reasons[i] = TG_CMB_BATCH_NONE;
        }
    }
    OPENSSL_cleanse(shared, sizeof(shared));
}

static void tg_cmb_batch_ecdh_derive(const struct tg_mbx_api *api,
                                     const struct tg_cmb_batch_curve *c,
                                     struct tg_keyop *const ops[], size_t n, bool lane_ok[],
                                     int results[], enum tg_fallback_reason reasons[])
{
    unsigned char shared[TG_MBX_LANES][TG_CMB_BATCH_EC_BYTES];
    unsigned char *sh[TG_MBX_LANES] = {NULL};
    BIGNUM *d[TG_MBX_LANES] = {NULL}, *x[TG_MBX_LANES] = {NULL}, *y[TG_MBX_LANES] = {NULL};
    const BIGNUM *dc[TG_MBX_LANES] = {NULL}, *xc[TG_MBX_LANES] = {NULL}, *yc[TG_MBX_LANES] = {NULL};
    size_t nlive = 0;
    BN_CTX *ctx = BN_CTX_secure_new();
    if (ctx == NULL) {
        for (size_t i = 0; i < n; i++) {
            if (lane_ok[i])
                tg_cmb_batch_lane_fail(results, reasons, i, TG_ECRYPTO, TG_CMB_BATCH_NONE);
        }
        return;
    }
    BN_CTX_start(ctx);
    for (size_t i = 0; i < n; i++) {
        if (!lane_ok[i])
            continue;
        const struct tg_kxkey *k = ops[i]->kx, *p = ops[i]->peer;
        d[i] = BN_CTX_get(ctx);
        x[i] = BN_CTX_get(ctx);
        y[i] = BN_CTX_get(ctx);
        if (y[i] == NULL || BN_bin2bn(k->priv, (int)k->privlen, d[i]) == NULL ||
            BN_bin2bn(p->pub + 1, (int)c->flen, x[i]) == NULL ||
            BN_bin2bn(p->pub + 1 + c->flen, (int)c->flen, y[i]) == NULL) {
            tg_cmb_batch_lane_fail(results, reasons, i, TG_ECRYPTO, TG_CMB_BATCH_NONE);
            continue;
        }
        if (BN_is_zero(d[i]) || BN_cmp(d[i], c->order) >= 0)
            continue; /* TG_EINVAL: not a private key of this group */
        sh[i] = shared[i];
        dc[i] = d[i];
        xc[i] = x[i];
        yc[i] = y[i];
        nlive++;
    }
    if (nlive > 0) {
        tg_mbx_status st = tg_cmb_batch_ecdh_fn(api, c->alg)(sh, dc, xc, yc, NULL, NULL);
        tg_cmb_batch_scrub_stack(c->scrub_kib);
        for (size_t i = 0; i < n; i++) {
            if (sh[i] == NULL)
                continue;
            if (tg_mbx_lane_status(st, (unsigned)i) != TG_MBX_STATUS_OK) {
                /* Software rechecks the point and gives the final answer. */
                tg_cmb_batch_lane_fail(results, reasons, i, TG_EDEVICE, TG_FALLBACK_LANE_ERROR);
                continue;
            }
            memcpy(ops[i]->out, shared[i], c->flen);
            ops[i]->outlen = c->flen;
            results[i] = TG_OK;
            reasons[i] = TG_CMB_BATCH_NONE;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (d[i] != NULL)
            BN_clear(d[i]);
    }
    OPENSSL_cleanse(shared, sizeof(shared));
    BN_CTX_end(ctx);
    BN_CTX_free(ctx);
}

int tg_cmb_batch_derive(struct tg_keyop *const ops[], size_t n, int results[],
                        enum tg_fallback_reason reasons[])
{
    if (n == 0)
        return TG_OK;
    if (ops == NULL || results == NULL || reasons == NULL || n > TG_MBX_LANES)
        return TG_EINVAL;
    tg_cmb_batch_lanes_init(n, results, reasons, TG_EINVAL);

    enum tg_group group = TG_GROUP_NONE;
    for (size_t i = 0; i < n && group == TG_GROUP_NONE; i++) {
        if (ops[i] != NULL && ops[i]->type == TG_KEYOP_KX_DERIVE && ops[i]->kx != NULL)
            group = ops[i]->kx->group;
    }
    const struct tg_mbx_api *api = tg_mbx_api();
    if (api == NULL || !tg_cmb_batch_group_supported(group))
        return tg_cmb_batch_batch_unavailable(n, results, reasons);

    bool lane_ok[TG_MBX_LANES] = {false};
    for (size_t i = 0; i < n; i++) {
        if (ops[i] == NULL)
            continue;
        ops[i]->outlen = 0;
        lane_ok[i] = tg_cmb_batch_derive_lane_ok(ops[i], group);
    }
    if (group == TG_GROUP_X25519)
        tg_cmb_batch_x25519_derive(api, ops, n, lane_ok, results, reasons);
    else
        tg_cmb_batch_ecdh_derive(api, tg_cmb_batch_curve_by_alg(tg_mbx_alg_for_group(group)), ops,
                                 n, lane_ok, results, reasons);
    return TG_OK;
}
