/*
 * ECDSA signature batches through crypto_mb (tg_cmb_batch.h): one signing
 * call, then the fault check (one verification call) before release.
 */
#include "providers/cryptomb/tg_cmb_batch.h"
#include "providers/cryptomb/tg_cmb_batch_internal.h"

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <openssl/rand.h>
#include <string.h>

#include "core/tg_log.h"

static tg_mbx_ecdsa_verify_ssl_mb8_fn tg_cmb_batch_verify_fn(const struct tg_mbx_api *api,
                                                             enum tg_mbx_alg a)
{
    return a == TG_MBX_P256   ? api->nistp256_ecdsa_verify_ssl_mb8
           : a == TG_MBX_P384 ? api->nistp384_ecdsa_verify_ssl_mb8
                              : api->nistp521_ecdsa_verify_ssl_mb8;
}

static tg_mbx_ecdsa_sign_ssl_mb8_fn tg_cmb_batch_sign_fn(const struct tg_mbx_api *api,
                                                         enum tg_mbx_alg a)
{
    return a == TG_MBX_P256   ? api->nistp256_ecdsa_sign_ssl_mb8
           : a == TG_MBX_P384 ? api->nistp384_ecdsa_sign_ssl_mb8
                              : api->nistp521_ecdsa_sign_ssl_mb8;
}

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

/* (r, s) from olen-byte big-endian strings; NULL if OpenSSL fails. */
static ECDSA_SIG *tg_cmb_batch_ecdsa_sig(const unsigned char *r, const unsigned char *s,
                                         size_t olen)
{
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *br = BN_bin2bn(r, (int)olen, NULL);
    BIGNUM *bs = BN_bin2bn(s, (int)olen, NULL);
    if (sig == NULL || br == NULL || bs == NULL || !ECDSA_SIG_set0(sig, br, bs)) {
        BN_free(br);
        BN_free(bs);
        ECDSA_SIG_free(sig);
        return NULL;
    }
    return sig;
}

/* DER ECDSA-Sig-Value into out (cap bytes); its length, or -1. */
static int tg_cmb_batch_ecdsa_der(const ECDSA_SIG *sig, unsigned char *out, size_t cap)
{
    int len = i2d_ECDSA_SIG(sig, NULL);
    if (len <= 0 || (size_t)len > cap)
        return -1;
    return i2d_ECDSA_SIG(sig, &out);
}

/*
 * The fault check: every signature left in sigs[] is verified with its key's
 * public point before it may leave: in one crypto_mb call when the library
 * has its ECDSA verification, else with OpenSSL (tg_keyop_verify_sw). A
 * signature that does not verify (a computation fault, a lane crypto_mb got
 * wrong) is dropped: TG_EDEVICE / fault_check, software signs instead, and
 * the handshake never sees it. m[i]: the message crypto_mb signed.
 */
static void tg_cmb_batch_ecdsa_check(const struct tg_mbx_api *api,
                                     const struct tg_cmb_batch_curve *c,
                                     struct tg_keyop *const ops[], size_t n, const bool check[],
                                     const unsigned char *const m[], ECDSA_SIG *sigs[], BN_CTX *ctx,
                                     int results[], enum tg_fallback_reason reasons[])
{
    tg_mbx_ecdsa_verify_ssl_mb8_fn vf = tg_cmb_batch_verify_fn(api, c->alg);
    bool ok[TG_MBX_LANES] = {false};
    ECDSA_SIG *todo[TG_MBX_LANES] = {NULL}; /* the lanes to check */
    size_t ntodo = 0;
    for (size_t i = 0; i < n; i++) {
        if (sigs[i] != NULL && (check == NULL || check[i])) {
            todo[i] = sigs[i];
            ntodo++;
        }
    }
    if (ntodo == 0)
        return;
    if (vf != NULL) {
        const ECDSA_SIG *vs[TG_MBX_LANES] = {NULL};
        const unsigned char *vm[TG_MBX_LANES] = {NULL};
        const BIGNUM *vx[TG_MBX_LANES] = {NULL}, *vy[TG_MBX_LANES] = {NULL};
        size_t nv = 0;
        for (size_t i = 0; i < n; i++) {
            const struct tg_pkey *k = ops[i]->pkey;
            BIGNUM *x = todo[i] != NULL ? BN_CTX_get(ctx) : NULL;
            BIGNUM *y = x != NULL ? BN_CTX_get(ctx) : NULL;
            if (y == NULL || k->pub_point_len != 1 + 2 * c->flen ||
                BN_bin2bn(k->pub_point + 1, (int)c->flen, x) == NULL ||
                BN_bin2bn(k->pub_point + 1 + c->flen, (int)c->flen, y) == NULL)
                continue; /* not verified: fails the check */
            vs[i] = todo[i];
            vm[i] = m[i];
            vx[i] = x;
            vy[i] = y;
            nv++;
        }
        tg_mbx_status st = nv > 0 ? vf(vs, vm, vx, vy, NULL, NULL) : 0;
        for (size_t i = 0; i < n; i++)
            ok[i] = vs[i] != NULL && tg_mbx_lane_status(st, (unsigned)i) == TG_MBX_STATUS_OK;
    } else {
        for (size_t i = 0; i < n; i++) {
            unsigned char der[TG_KEYOP_OUT_MAX];
            int len = todo[i] != NULL ? tg_cmb_batch_ecdsa_der(todo[i], der, sizeof(der)) : -1;
            ok[i] = len > 0 && tg_keyop_verify_sw(ops[i], der, (size_t)len) == TG_OK;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (todo[i] == NULL || ok[i])
            continue;
        ECDSA_SIG_free(sigs[i]);
        sigs[i] = NULL;
        tg_cmb_batch_lane_fail(results, reasons, i, TG_EDEVICE, TG_FALLBACK_FAULT_CHECK);
        TG_WARN("crypto_mb: ECDSA %s signature failed its fault check (lane %zu); "
                "signing in software",
                ops[i]->pkey->group ? ops[i]->pkey->group : "", i);
    }
}

int tg_cmb_batch_ecdsa_sign(struct tg_keyop *const ops[], size_t n, int results[],
                            enum tg_fallback_reason reasons[], const bool check[])
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
    ECDSA_SIG *sigs[TG_MBX_LANES] = {NULL};
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
        memset(rb[i], 0, c->olen); /* an unwritten lane stays recognisable */
        memset(sb[i], 0, c->olen);
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
        /* r and s are never zero in a signature: zero is an unwritten lane. */
        if (tg_mbx_lane_status(st, (unsigned)i) != TG_MBX_STATUS_OK ||
            tg_cmb_batch_all_zero(rb[i], c->olen) || tg_cmb_batch_all_zero(sb[i], c->olen)) {
            tg_cmb_batch_lane_fail(results, reasons, i, TG_EDEVICE, TG_FALLBACK_LANE_ERROR);
            continue;
        }
        sigs[i] = tg_cmb_batch_ecdsa_sig(rb[i], sb[i], c->olen);
        if (sigs[i] == NULL)
            tg_cmb_batch_lane_fail(results, reasons, i, TG_ECRYPTO, TG_CMB_BATCH_NONE);
    }
    tg_cmb_batch_ecdsa_check(api, c, ops, n, check, m, sigs, ctx, results, reasons);
    for (size_t i = 0; i < n; i++) {
        if (sigs[i] == NULL)
            continue;
        int len = tg_cmb_batch_ecdsa_der(sigs[i], ops[i]->out, sizeof(ops[i]->out));
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
        ECDSA_SIG_free(sigs[i]);
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
