/*
 * ECDSA signature batches through crypto_mb (tg_cmb_batch.h).
 */
#include "providers/cryptomb/tg_cmb_batch.h"
#include "providers/cryptomb/tg_cmb_batch_internal.h"

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <openssl/rand.h>
#include <string.h>

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
