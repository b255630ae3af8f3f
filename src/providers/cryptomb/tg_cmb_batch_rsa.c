/*
 * RSA signature batches through crypto_mb (tg_cmb_batch.h): PKCS#1 v1.5 and
 * PSS encoding, one private-key call, the fault check.
 */
#include "providers/cryptomb/tg_cmb_batch.h"
#include "providers/cryptomb/tg_cmb_batch_internal.h"

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <string.h>

#include "core/tg_log.h"
#include "keyprov/tg_rsa_pad.h"

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
                          enum tg_fallback_reason reasons[], const bool check[])
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
        memset(sig[i], 0, klen); /* an unwritten lane stays recognisable */
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
        /* Zero is no signature of an encoded message (it starts 00 01 or
         * ends 0xbc): an all-zero lane was not written. */
        if (live[i] && (tg_mbx_lane_status(st, (unsigned)i) != TG_MBX_STATUS_OK ||
                        tg_cmb_batch_all_zero(sig[i], klen))) {
            live[i] = false;
            tg_cmb_batch_lane_fail(results, reasons, i, TG_EDEVICE, TG_FALLBACK_LANE_ERROR);
        }
    }

    /* The fault check, for the lanes whose operation asks for it. */
    {
        const unsigned char *vfrom[TG_MBX_LANES] = {NULL};
        unsigned char *vto[TG_MBX_LANES] = {NULL};
        const BIGNUM *ve[TG_MBX_LANES] = {NULL}, *vn[TG_MBX_LANES] = {NULL};
        bool batched[TG_MBX_LANES] = {false};
        size_t nb = 0;
        for (size_t i = 0; i < n; i++) {
            if (!live[i] || (check != NULL && !check[i]))
                continue;
            const struct tg_pkey *k = ops[i]->pkey;
            if (BN_is_word(k->e, 65537)) {
                vfrom[i] = sig[i];
                vto[i] = chk[i];
                memset(chk[i], 0, klen); /* never a stale match */
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
