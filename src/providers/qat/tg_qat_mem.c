/*
 * Pinned DMA memory and keys in the form the device takes (tg_qat_internal.h):
 * a key is converted once per (key, worker) into one pinned slab, wiped
 * before it is freed; RSA results are checked with the public key and ECDSA
 * results encoded as DER here too, since both read the converted key.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>

#include "providers/qat/tg_qat_internal.h"

Cpa8U *tg_qat_pin_alloc(size_t len, int node)
{
    void *p = tg_qat_g.api->qaeMemAllocNUMA(len, node, TG_QAT_ALIGN);
    if (p == NULL && node != NUMA_ANY_NODE)
        p = tg_qat_g.api->qaeMemAllocNUMA(len, NUMA_ANY_NODE, TG_QAT_ALIGN);
    return p;
}

void tg_qat_pin_free(Cpa8U **p, size_t len)
{
    if (*p == NULL)
        return;
    OPENSSL_cleanse(*p, len);
    void *v = *p;
    tg_qat_g.api->qaeMemFreeNUMA(&v);
    *p = NULL;
}

void tg_qat_key_free(struct tg_qat_key *k)
{
    if (k == NULL)
        return;
    tg_qat_pin_free(&k->pin, k->pinlen);
    BN_free(k->n);
    BN_free(k->e);
    BN_MONT_CTX_free(k->mont);
    tg_pkey_unref(k->pkey);
    free(k);
}

static bool tg_qat_put_bn(const BIGNUM *v, Cpa8U *at, size_t len, CpaFlatBuffer *fb)
{
    if (v == NULL || BN_bn2binpad(v, at, (int)len) < 0)
        return false;
    fb->pData = at;
    fb->dataLenInBytes = (Cpa32U)len;
    return true;
}

static int tg_qat_key_rsa(struct tg_qat_wstate *st, struct tg_qat_key *k)
{
    const struct tg_pkey *pk = k->pkey;
    size_t half = k->nbytes / 2;
    k->pinlen = 5 * half;
    k->pin = tg_qat_pin_alloc(k->pinlen, st->node);
    if (k->pin == NULL)
        return TG_ENOMEM;
    CpaCyRsaPrivateKeyRep2 *r2 = &k->rsa.privateKeyRep2;
    k->rsa.version = CPA_CY_RSA_VERSION_TWO_PRIME;
    k->rsa.privateKeyRepType = CPA_CY_RSA_PRIVATE_KEY_REP_TYPE_2;
    /* Every component padded to half the modulus: qatlib takes the
     * operation size from p and checks p's top bit at that width. */
    if (!tg_qat_put_bn(pk->p, k->pin, half, &r2->prime1P) ||
        !tg_qat_put_bn(pk->q, k->pin + half, half, &r2->prime2Q) ||
        !tg_qat_put_bn(pk->dmp1, k->pin + 2 * half, half, &r2->exponent1Dp) ||
        !tg_qat_put_bn(pk->dmq1, k->pin + 3 * half, half, &r2->exponent2Dq) ||
        !tg_qat_put_bn(pk->iqmp, k->pin + 4 * half, half, &r2->coefficientQInv))
        return TG_ECRYPTO;
    k->n = BN_dup(pk->n);
    k->e = BN_dup(pk->e);
    k->mont = BN_MONT_CTX_new();
    if (k->n == NULL || k->e == NULL || k->mont == NULL || !BN_MONT_CTX_set(k->mont, k->n, st->bn))
        return TG_ENOMEM;
    return TG_OK;
}

static int tg_qat_key_ec(struct tg_qat_wstate *st, struct tg_qat_key *k)
{
    const struct tg_pkey *pk = k->pkey;
    int rc = TG_ECRYPTO;
    EC_GROUP *g = EC_GROUP_new_by_curve_name(pk->curve_nid);
    BN_CTX_start(st->bn);
    BIGNUM *q = BN_CTX_get(st->bn), *a = BN_CTX_get(st->bn), *b = BN_CTX_get(st->bn);
    BIGNUM *x = BN_CTX_get(st->bn), *y = BN_CTX_get(st->bn);
    size_t nb = k->nbytes;
    if (g == NULL || y == NULL || !EC_GROUP_get_curve(g, q, a, b, st->bn) ||
        !EC_POINT_get_affine_coordinates(g, EC_GROUP_get0_generator(g), x, y, st->bn))
        goto out;
    /* a, b, q, xg, yg, n, d: seven order-sized numbers. */
    k->pinlen = 7 * nb;
    k->pin = tg_qat_pin_alloc(k->pinlen, st->node);
    if (k->pin == NULL) {
        rc = TG_ENOMEM;
        goto out;
    }
    CpaCyEcdsaSignRSOpData *ec = &k->ec;
    ec->fieldType = CPA_CY_EC_FIELD_TYPE_PRIME;
    if (!tg_qat_put_bn(x, k->pin, nb, &ec->xg) || !tg_qat_put_bn(y, k->pin + nb, nb, &ec->yg) ||
        !tg_qat_put_bn(EC_GROUP_get0_order(g), k->pin + 2 * nb, nb, &ec->n) ||
        !tg_qat_put_bn(q, k->pin + 3 * nb, nb, &ec->q) ||
        !tg_qat_put_bn(a, k->pin + 4 * nb, nb, &ec->a) ||
        !tg_qat_put_bn(b, k->pin + 5 * nb, nb, &ec->b) ||
        !tg_qat_put_bn(pk->priv, k->pin + 6 * nb, nb, &ec->d))
        goto out;
    rc = TG_OK;
out:
    BN_CTX_end(st->bn);
    EC_GROUP_free(g);
    return rc;
}

/* Let go of the device copies of retired keys (their configuration was
 * replaced by a reload) that no request on the device reads any more. The
 * cache holds a reference to each key, so an entry never matches a new key
 * allocated at a freed one's address; without this, every reload would
 * leave its keys pinned here until the worker ends. */
static void tg_qat_keys_prune(struct tg_qat_wstate *st)
{
    struct tg_qat_key **kp = &st->keys;
    while (*kp != NULL) {
        struct tg_qat_key *k = *kp;
        if (k->refs == 0 && tg_pkey_is_retired(k->pkey)) {
            *kp = k->next;
            tg_qat_key_free(k);
        } else {
            kp = &k->next;
        }
    }
}

int tg_qat_key_get(struct tg_qat_wstate *st, const struct tg_pkey *pkey, struct tg_qat_key **out)
{
    for (struct tg_qat_key *k = st->keys; k != NULL; k = k->next) {
        if (k->pkey == pkey) {
            *out = k;
            return TG_OK;
        }
    }
    /* A miss: a key not seen before, typically after a reload. */
    tg_qat_keys_prune(st);
    if (pkey == NULL)
        return TG_EUNAVAIL;
    struct tg_qat_key *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return TG_ENOMEM;
    k->pkey = tg_pkey_ref((struct tg_pkey *)pkey);
    k->bits = pkey->bits;
    int rc;
    if (pkey->type == TG_PKEY_RSA) {
        k->kind = TG_QAT_RSA;
        k->nbytes = (size_t)(pkey->bits + 7) / 8;
        rc = tg_qat_key_rsa(st, k);
    } else if (tg_qat_g.ecdsa &&
               (pkey->curve_nid == NID_X9_62_prime256v1 || pkey->curve_nid == NID_secp384r1)) {
        k->kind = TG_QAT_ECDSA;
        k->nbytes = (size_t)(pkey->bits + 7) / 8;
        rc = tg_qat_key_ec(st, k);
    } else {
        rc = TG_EUNAVAIL;
    }
    if (rc != TG_OK) {
        tg_qat_key_free(k);
        return rc;
    }
    k->next = st->keys;
    st->keys = k;
    *out = k;
    return TG_OK;
}

/* s^e mod n == em: the signature is what the key makes (a faulty device
 * result from a CRT computation would leak a prime: Bellcore/Lenstra). */
bool tg_qat_rsa_check(struct tg_qat_wstate *st, const struct tg_qat_key *k, const Cpa8U *sig,
                      const Cpa8U *em)
{
    bool ok = false;
    unsigned char back[TG_KEYOP_OUT_MAX];
    BN_CTX_start(st->bn);
    BIGNUM *s = BN_CTX_get(st->bn), *m = BN_CTX_get(st->bn);
    if (m != NULL && BN_bin2bn(sig, (int)k->nbytes, s) != NULL && BN_cmp(s, k->n) < 0 &&
        BN_mod_exp_mont(m, s, k->e, k->n, st->bn, k->mont) &&
        BN_bn2binpad(m, back, (int)k->nbytes) >= 0)
        ok = CRYPTO_memcmp(back, em, k->nbytes) == 0;
    BN_CTX_end(st->bn);
    return ok;
}

/* DER INTEGER from a big-endian unsigned number of len bytes. */
static size_t tg_qat_der_int(unsigned char *out, const Cpa8U *v, size_t len)
{
    while (len > 1 && v[0] == 0) {
        v++;
        len--;
    }
    size_t pad = (v[0] & 0x80) ? 1 : 0;
    out[0] = 0x02;
    out[1] = (unsigned char)(len + pad);
    if (pad)
        out[2] = 0;
    memcpy(out + 2 + pad, v, len);
    return 2 + pad + len;
}

size_t tg_qat_der_sig(unsigned char *out, const Cpa8U *r, const Cpa8U *s, size_t len)
{
    unsigned char body[2 * (2 + 1 + 66)];
    size_t n = tg_qat_der_int(body, r, len);
    n += tg_qat_der_int(body + n, s, len);
    size_t o = 0;
    out[o++] = 0x30;
    if (n >= 0x80)
        out[o++] = 0x81;
    out[o++] = (unsigned char)n;
    memcpy(out + o, body, n);
    return o + n;
}
