/*
 * Key-exchange batches through crypto_mb (tg_cmb_batch.h): ephemeral key
 * generation and shared secrets, X25519 and ECDH.
 */
#include "providers/cryptomb/tg_cmb_batch.h"
#include "providers/cryptomb/tg_cmb_batch_internal.h"

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <openssl/rand.h>
#include <string.h>

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
        memset(k->pub, 0, 32); /* an unwritten lane stays recognisable */
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
        /* A clamped scalar never yields u = 0: zero is an unwritten lane. */
        if (tg_mbx_lane_status(st, (unsigned)i) != TG_MBX_STATUS_OK ||
            tg_cmb_batch_all_zero(k->pub, 32)) {
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
         * so such a lane is recognisable (d*G is never the point (0, 0)). */
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
        memset(shared[i], 0, 32); /* an unwritten lane stays recognisable */
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
        /* Every low-order peer value was refused above: an all-zero secret
         * (or crypto_mb's low-order flag) now means a lane it did not
         * compute. Software gives the definitive answer (TG_EPROTO if the
         * secret really is zero). */
        if (tg_mbx_lane_status(st, (unsigned)i) != TG_MBX_STATUS_OK ||
            tg_cmb_batch_all_zero(shared[i], 32)) {
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
        memset(shared[i], 0, c->flen); /* an unwritten lane stays recognisable */
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
            /* An x-coordinate of zero has probability 2^-256 for honest
             * keys: an all-zero lane was not written. Software rechecks the
             * point and gives the final answer either way. */
            if (tg_mbx_lane_status(st, (unsigned)i) != TG_MBX_STATUS_OK ||
                tg_cmb_batch_all_zero(shared[i], c->flen)) {
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
