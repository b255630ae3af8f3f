/*
 * Batches through crypto_mb: what every kind shares (lane bookkeeping,
 * curves, stack scrubbing) and the support queries. The kinds themselves:
 * tg_cmb_batch_rsa.c, tg_cmb_batch_ecdsa.c, tg_cmb_batch_kx.c.
 *
 * Lanes are packed at the front (0..n-1); the rest get NULL pointers, which
 * crypto_mb answers with MBX_STATUS_NULL_PARAM_ERR without writing anything.
 * A lane is used only when its status nibble is 0: crypto_mb computes, and
 * may write, lanes that failed a parameter check.
 */
#include "providers/cryptomb/tg_cmb_batch.h"
#include "providers/cryptomb/tg_cmb_batch_internal.h"

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/*
 * crypto_mb copies private keys and nonces into stack buffers it does not
 * clear (BN_bn2lebinpad into locals), and leaves intermediate values mod p on
 * the stack. Overwrite the region its frames used: this function's frame
 * starts where the library's did, as both are called from the same caller.
 */
void __attribute__((noinline)) tg_cmb_batch_scrub_stack(size_t kib)
{
    unsigned char area[128 * 1024];
    size_t len = kib * 1024 < sizeof(area) ? kib * 1024 : sizeof(area);
    OPENSSL_cleanse(area + sizeof(area) - len, len);
    __asm__ __volatile__("" : : "r"(area) : "memory");
}

void tg_cmb_batch_lanes_init(size_t n, int results[], enum tg_fallback_reason reasons[], int rc)
{
    for (size_t i = 0; i < n; i++) {
        results[i] = rc;
        if (reasons != NULL)
            reasons[i] = TG_CMB_BATCH_NONE;
    }
}

void tg_cmb_batch_lane_fail(int results[], enum tg_fallback_reason reasons[], size_t i, int rc,
                            enum tg_fallback_reason why)
{
    results[i] = rc;
    if (reasons != NULL)
        reasons[i] = rc == TG_EDEVICE ? why : TG_CMB_BATCH_NONE;
}

bool tg_cmb_batch_all_zero(const unsigned char *p, size_t len)
{
    unsigned char acc = 0;
    for (size_t i = 0; i < len; i++)
        acc |= p[i];
    return acc == 0;
}

int tg_cmb_batch_batch_unavailable(size_t n, int results[], enum tg_fallback_reason reasons[])
{
    for (size_t i = 0; i < n; i++)
        tg_cmb_batch_lane_fail(results, reasons, i, TG_EDEVICE, TG_FALLBACK_DEVICE_ERROR);
    return TG_EUNAVAIL;
}

/* ---- curves ---- */

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

const struct tg_cmb_batch_curve *tg_cmb_batch_curve_by_alg(enum tg_mbx_alg a)
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

/* A uniformly random scalar in [1, n-1]. */
int tg_cmb_batch_rand_scalar(BIGNUM *k, const BIGNUM *order, BN_CTX *ctx)
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

bool tg_cmb_batch_rsa_shape_ok(const struct tg_pkey *k)
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
