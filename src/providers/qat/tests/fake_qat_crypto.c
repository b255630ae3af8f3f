/*
 * fake_qat_crypto: the two operations of the fake qatlib (fake_qat.c
 * describes it), cpaCyRsaDecrypt (two primes, CRT representation 2) and
 * cpaCyEcdsaSignRS (prime curves): qatlib's parameter checks on the
 * submitting thread, then, on one of the fake's compute threads
 * (fq_compute), the result computed from the buffers alone with OpenSSL, as
 * the device does.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include "fake_qat_internal.h"

/* ---- big-endian helpers (no BIGNUM on the submitting thread) ---- */

/* Significant bytes: length without leading zero octets. */
static size_t fq_minbytes(const CpaFlatBuffer *b)
{
    size_t i = 0;
    while (i < b->dataLenInBytes && b->pData[i] == 0)
        i++;
    return b->dataLenInBytes - i;
}

/* Compare unsigned big-endian a and b; with b_minus_1, b - 1 for an odd b
 * (its lowest bit cleared). */
static int fq_cmp(const CpaFlatBuffer *a, const CpaFlatBuffer *b, bool b_minus_1)
{
    size_t la = fq_minbytes(a), lb = fq_minbytes(b);
    const Cpa8U *pa = a->pData + (a->dataLenInBytes - la);
    const Cpa8U *pb = b->pData + (b->dataLenInBytes - lb);
    if (b_minus_1 && lb == 1 && pb[0] == 1)
        lb = 0; /* b - 1 == 0 */
    if (la != lb)
        return la < lb ? -1 : 1;
    for (size_t i = 0; i < la; i++) {
        unsigned vb = pb[i];
        if (b_minus_1 && i == lb - 1)
            vb &= 0xfeu;
        if (pa[i] != vb)
            return pa[i] < vb ? -1 : 1;
    }
    return 0;
}

static bool fq_is_one_or_zero(const CpaFlatBuffer *b)
{
    size_t l = fq_minbytes(b);
    return l == 0 || (l == 1 && b->pData[b->dataLenInBytes - 1] == 1);
}

static bool fq_present(const CpaFlatBuffer *b)
{
    return b != NULL && b->pData != NULL && b->dataLenInBytes > 0;
}

/* DMA-able: the whole buffer translates, contiguously, through the
 * application's translation function (memory from qaeMemAllocNUMA). */
static bool fq_pinned(const struct fq_inst *inst, const CpaFlatBuffer *b)
{
    CpaPhysicalAddr a = inst->v2p(b->pData);
    CpaPhysicalAddr z = inst->v2p(b->pData + b->dataLenInBytes - 1);
    return a != 0 && z == a + b->dataLenInBytes - 1;
}

static bool fq_valid_rsa_size(size_t bytes)
{
    static const size_t sizes[] = {64, 128, 192, 256, 384, 512, 1024};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        if (sizes[i] == bytes)
            return true;
    }
    return false;
}

/* qatlib's LAC_CHECK_FLAT_BUFFER_MSB_LSB for a CRT prime of len bytes. */
static bool fq_prime_ok(const CpaFlatBuffer *p, size_t len)
{
    return p->dataLenInBytes >= len && (p->pData[p->dataLenInBytes - len] & 0x80) &&
           (p->pData[p->dataLenInBytes - 1] & 1);
}

CpaStatus cpaCyRsaDecrypt(const CpaInstanceHandle instanceHandle,
                          const CpaCyGenFlatBufCbFunc pRsaDecryptCb, void *pCallbackTag,
                          const CpaCyRsaDecryptOpData *pDecryptOpData, CpaFlatBuffer *pOutputData)
{
    struct fq_inst *inst = NULL;
    CpaStatus st = fq_entry(instanceHandle, (const void *)pRsaDecryptCb, &inst);
    if (st != CPA_STATUS_SUCCESS)
        return st;
    const CpaCyRsaDecryptOpData *od = pDecryptOpData;
    if (od == NULL || od->pRecipientPrivateKey == NULL || pOutputData == NULL ||
        pOutputData->pData == NULL)
        return fq_count(FQ_C_INVALID, CPA_STATUS_INVALID_PARAM);
    const CpaCyRsaPrivateKey *k = od->pRecipientPrivateKey;
    if (k->version != CPA_CY_RSA_VERSION_TWO_PRIME)
        return fq_count(FQ_C_INVALID, CPA_STATUS_INVALID_PARAM);
    if (k->privateKeyRepType != CPA_CY_RSA_PRIVATE_KEY_REP_TYPE_2)
        return CPA_STATUS_UNSUPPORTED; /* representation 1 is not faked */
    const CpaCyRsaPrivateKeyRep2 *r2 = &k->privateKeyRep2;
    const CpaFlatBuffer *bufs[] = {&r2->prime1P,     &r2->prime2Q,         &r2->exponent1Dp,
                                   &r2->exponent2Dq, &r2->coefficientQInv, &od->inputData,
                                   pOutputData};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
        if (!fq_present(bufs[i]))
            return fq_count(FQ_C_INVALID, CPA_STATUS_INVALID_PARAM);
    }
    size_t half = fq_minbytes(&r2->prime1P);
    size_t op = 2 * half;
    if (half != fq_minbytes(&r2->prime2Q) || !fq_valid_rsa_size(op) ||
        od->inputData.dataLenInBytes > op || pOutputData->dataLenInBytes < op ||
        !fq_prime_ok(&r2->prime1P, half) || !fq_prime_ok(&r2->prime2Q, half) ||
        /* qatlib's LacRsa_Type2StdsCheck */
        fq_is_one_or_zero(&r2->exponent1Dp) || fq_cmp(&r2->exponent1Dp, &r2->prime1P, true) >= 0 ||
        fq_is_one_or_zero(&r2->exponent2Dq) || fq_cmp(&r2->exponent2Dq, &r2->prime2Q, true) >= 0 ||
        fq_minbytes(&r2->coefficientQInv) == 0 ||
        fq_cmp(&r2->coefficientQInv, &r2->prime1P, false) >= 0)
        return fq_count(FQ_C_INVALID, CPA_STATUS_INVALID_PARAM);
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
        if (!fq_pinned(inst, bufs[i]))
            return fq_count(FQ_C_INVALID, CPA_STATUS_INVALID_PARAM);
    }
    struct fq_req t;
    memset(&t, 0, sizeof(t));
    t.kind = FQ_RSA;
    t.tag = pCallbackTag;
    t.rsa_cb = pRsaDecryptCb;
    t.opdata = (void *)pDecryptOpData;
    t.out = pOutputData;
    return fq_enqueue(inst, &t);
}

CpaStatus cpaCyEcdsaSignRS(const CpaInstanceHandle instanceHandle, const CpaCyEcdsaSignRSCbFunc pCb,
                           void *pCallbackTag, const CpaCyEcdsaSignRSOpData *pOpData,
                           CpaBoolean *pSignStatus, CpaFlatBuffer *pR, CpaFlatBuffer *pS)
{
    struct fq_inst *inst = NULL;
    CpaStatus st = fq_entry(instanceHandle, (const void *)pCb, &inst);
    if (st != CPA_STATUS_SUCCESS)
        return st;
    if (fq_no_ecdsa())
        return CPA_STATUS_UNSUPPORTED;
    const CpaCyEcdsaSignRSOpData *od = pOpData;
    if (od == NULL || pSignStatus == NULL || pR == NULL || pS == NULL)
        return fq_count(FQ_C_INVALID, CPA_STATUS_INVALID_PARAM);
    const CpaFlatBuffer *bufs[] = {&od->xg, &od->yg, &od->n, &od->q, &od->a, &od->b,
                                   &od->k,  &od->m,  &od->d, pR,     pS};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
        if (!fq_present(bufs[i]))
            return fq_count(FQ_C_INVALID, CPA_STATUS_INVALID_PARAM);
    }
    if (od->fieldType == CPA_CY_EC_FIELD_TYPE_BINARY)
        return CPA_STATUS_UNSUPPORTED; /* binary curves are not faked */
    size_t nlen = fq_minbytes(&od->n);
    if (od->fieldType != CPA_CY_EC_FIELD_TYPE_PRIME ||
        !(od->q.pData[od->q.dataLenInBytes - 1] & 1) ||
        !(od->n.pData[od->n.dataLenInBytes - 1] & 1) || fq_minbytes(&od->k) == 0 ||
        fq_cmp(&od->k, &od->n, false) >= 0 || fq_minbytes(&od->d) == 0 ||
        fq_cmp(&od->d, &od->n, false) >= 0 || pR->dataLenInBytes < nlen ||
        pS->dataLenInBytes < nlen)
        return fq_count(FQ_C_INVALID, CPA_STATUS_INVALID_PARAM);
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
        if (!fq_pinned(inst, bufs[i]))
            return fq_count(FQ_C_INVALID, CPA_STATUS_INVALID_PARAM);
    }
    struct fq_req t;
    memset(&t, 0, sizeof(t));
    t.kind = FQ_ECDSA;
    t.tag = pCallbackTag;
    t.ec_cb = pCb;
    t.opdata = (void *)pOpData;
    t.r = pR;
    t.s = pS;
    return fq_enqueue(inst, &t);
}

/* ---- the "device": compute threads ---- */

#define FQ_GROUPS   4
#define FQ_RSA_KEYS 8
struct fq_rsakey {
    unsigned char *crt; /* p|q|dP|dQ|qInv as given */
    size_t crtlen;
    EVP_PKEY_CTX *ctx; /* raw private decrypt with the rebuilt key; NULL: BN path */
};

struct fq_group {
    unsigned char *key; /* q|a|b|xg|yg|n as given, to recognise the curve */
    size_t keylen;
    EC_GROUP *group;
};

struct fq_thread {
    BN_CTX *bn;
    struct fq_group groups[FQ_GROUPS];
    struct fq_rsakey rsakeys[FQ_RSA_KEYS];
    unsigned next_rsakey;
};

static BIGNUM *fq_bn(const CpaFlatBuffer *b, BN_CTX *ctx)
{
    BIGNUM *v = BN_CTX_get(ctx);
    return v != NULL ? BN_bin2bn(b->pData, (int)b->dataLenInBytes, v) : NULL;
}

/* Write v right-aligned into b, zero-filled in front. */
static bool fq_put(CpaFlatBuffer *b, const BIGNUM *v)
{
    return BN_bn2binpad(v, b->pData, (int)b->dataLenInBytes) >= 0;
}

/*
 * The fast way to the same number: when the five CRT values form a real key
 * (e = dP^-1 mod (p-1) is small and consistent with dQ and qInv), rebuild it
 * once and let OpenSSL's RSA code (its AVX-512 CRT where the CPU has it) do
 * the raw private operation, so the fake's thread keeps up with a benchmark.
 * Inconsistent values, as a buggy caller might send, go through the plain
 * CRT formula below and yield what a device would compute from them.
 */
static EVP_PKEY_CTX *fq_rsa_rebuild(struct fq_thread *t, const CpaCyRsaPrivateKeyRep2 *k)
{
    EVP_PKEY_CTX *kctx = NULL, *ctx = NULL;
    EVP_PKEY *pk = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    BN_CTX_start(t->bn);
    BIGNUM *p = fq_bn(&k->prime1P, t->bn), *q = fq_bn(&k->prime2Q, t->bn);
    BIGNUM *dp = fq_bn(&k->exponent1Dp, t->bn), *dq = fq_bn(&k->exponent2Dq, t->bn);
    BIGNUM *qinv = fq_bn(&k->coefficientQInv, t->bn);
    BIGNUM *n = BN_CTX_get(t->bn), *e = BN_CTX_get(t->bn), *d = BN_CTX_get(t->bn);
    BIGNUM *p1 = BN_CTX_get(t->bn), *q1 = BN_CTX_get(t->bn), *x = BN_CTX_get(t->bn);
    if (x == NULL || p == NULL || q == NULL || dp == NULL || dq == NULL || qinv == NULL ||
        !BN_mul(n, p, q, t->bn) || !BN_sub(p1, p, BN_value_one()) ||
        !BN_sub(q1, q, BN_value_one()) || BN_mod_inverse(e, dp, p1, t->bn) == NULL ||
        BN_num_bits(e) > 32 || !BN_mod_mul(x, e, dq, q1, t->bn) || !BN_is_one(x) ||
        !BN_mod_mul(x, qinv, q, p, t->bn) || !BN_is_one(x))
        goto out;
    /* d = e^-1 mod lcm(p-1, q-1) */
    if (!BN_gcd(x, p1, q1, t->bn) || !BN_mul(d, p1, q1, t->bn) || !BN_div(d, NULL, d, x, t->bn) ||
        BN_mod_inverse(d, e, d, t->bn) == NULL)
        goto out;
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_D, d) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR1, p) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR2, q) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT1, dp) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT2, dq) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, qinv) ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL)
        goto out;
    kctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (kctx == NULL || EVP_PKEY_fromdata_init(kctx) <= 0 ||
        EVP_PKEY_fromdata(kctx, &pk, EVP_PKEY_KEYPAIR, params) <= 0)
        goto out;
    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
    if (ctx == NULL || EVP_PKEY_decrypt_init(ctx) <= 0 ||
        EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING) <= 0) {
        EVP_PKEY_CTX_free(ctx);
        ctx = NULL;
    }
out:
    BN_CTX_end(t->bn);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(kctx);
    EVP_PKEY_free(pk);
    return ctx;
}

static struct fq_rsakey *fq_rsakey(struct fq_thread *t, const CpaCyRsaPrivateKeyRep2 *k)
{
    const CpaFlatBuffer *parts[] = {&k->prime1P, &k->prime2Q, &k->exponent1Dp, &k->exponent2Dq,
                                    &k->coefficientQInv};
    size_t len = 0;
    for (size_t i = 0; i < 5; i++)
        len += parts[i]->dataLenInBytes + 1;
    for (unsigned i = 0; i < FQ_RSA_KEYS; i++) {
        struct fq_rsakey *c = &t->rsakeys[i];
        if (c->crt == NULL || c->crtlen != len)
            continue;
        size_t o = 0;
        bool same = true;
        for (size_t j = 0; j < 5 && same; j++) {
            same = memcmp(c->crt + o, parts[j]->pData, parts[j]->dataLenInBytes) == 0;
            o += parts[j]->dataLenInBytes + 1;
        }
        if (same)
            return c;
    }
    struct fq_rsakey *c = &t->rsakeys[t->next_rsakey++ % FQ_RSA_KEYS];
    free(c->crt);
    EVP_PKEY_CTX_free(c->ctx);
    c->ctx = NULL;
    c->crt = malloc(len);
    if (c->crt == NULL)
        return NULL;
    c->crtlen = len;
    size_t o = 0;
    for (size_t j = 0; j < 5; j++) {
        memcpy(c->crt + o, parts[j]->pData, parts[j]->dataLenInBytes);
        o += parts[j]->dataLenInBytes;
        c->crt[o++] = '|';
    }
    c->ctx = fq_rsa_rebuild(t, k);
    return c;
}

static CpaStatus fq_rsa(struct fq_thread *t, const CpaCyRsaDecryptOpData *od, CpaFlatBuffer *out)
{
    const CpaCyRsaPrivateKeyRep2 *k = &od->pRecipientPrivateKey->privateKeyRep2;
    CpaStatus st = CPA_STATUS_FAIL;
    BN_CTX_start(t->bn);
    BIGNUM *p = fq_bn(&k->prime1P, t->bn), *q = fq_bn(&k->prime2Q, t->bn);
    BIGNUM *dp = fq_bn(&k->exponent1Dp, t->bn), *dq = fq_bn(&k->exponent2Dq, t->bn);
    BIGNUM *qinv = fq_bn(&k->coefficientQInv, t->bn), *c = fq_bn(&od->inputData, t->bn);
    BIGNUM *m1 = BN_CTX_get(t->bn), *m2 = BN_CTX_get(t->bn), *h = BN_CTX_get(t->bn);
    if (h == NULL || p == NULL || q == NULL || dp == NULL || dq == NULL || qinv == NULL ||
        c == NULL)
        goto out;
    size_t op = 2 * fq_minbytes(&k->prime1P);
    struct fq_rsakey *rk = fq_rsakey(t, k);
    if (rk != NULL && rk->ctx != NULL && op <= 1024 && od->inputData.dataLenInBytes <= op) {
        /* Raw RSA wants exactly the modulus length in and out. */
        unsigned char in[1024], res[1024];
        size_t inl = od->inputData.dataLenInBytes, outl = sizeof(res);
        memset(in, 0, op - inl);
        memcpy(in + (op - inl), od->inputData.pData, inl);
        if (EVP_PKEY_decrypt(rk->ctx, res, &outl, in, op) > 0 && outl == op) {
            memset(out->pData, 0, out->dataLenInBytes - op);
            memcpy(out->pData + (out->dataLenInBytes - op), res, op);
            st = CPA_STATUS_SUCCESS;
            goto out;
        }
        /* c >= n, for instance: the plain formula reduces it like a device. */
    }
    BN_set_flags(dp, BN_FLG_CONSTTIME);
    BN_set_flags(dq, BN_FLG_CONSTTIME);
    if (!BN_mod_exp_mont_consttime(m1, c, dp, p, t->bn, NULL) ||
        !BN_mod_exp_mont_consttime(m2, c, dq, q, t->bn, NULL) || !BN_mod_sub(h, m1, m2, p, t->bn) ||
        !BN_mod_mul(h, h, qinv, p, t->bn) || !BN_mul(h, h, q, t->bn) || !BN_add(h, h, m2) ||
        !fq_put(out, h))
        goto out;
    st = CPA_STATUS_SUCCESS;
out:
    BN_CTX_end(t->bn);
    return st;
}

static EC_GROUP *fq_group(struct fq_thread *t, const CpaCyEcdsaSignRSOpData *od)
{
    const CpaFlatBuffer *parts[] = {&od->q, &od->a, &od->b, &od->xg, &od->yg, &od->n};
    size_t len = 0;
    for (size_t i = 0; i < 6; i++)
        len += parts[i]->dataLenInBytes + 1;
    unsigned char *key = malloc(len);
    if (key == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < 6; i++) {
        memcpy(key + o, parts[i]->pData, parts[i]->dataLenInBytes);
        o += parts[i]->dataLenInBytes;
        key[o++] = '|';
    }
    struct fq_group *slot = NULL;
    for (int i = 0; i < FQ_GROUPS; i++) {
        struct fq_group *g = &t->groups[i];
        if (g->group != NULL && g->keylen == len && memcmp(g->key, key, len) == 0) {
            free(key);
            return g->group;
        }
        if (g->group == NULL && slot == NULL)
            slot = g;
    }
    if (slot == NULL) {
        slot = &t->groups[0];
        EC_GROUP_free(slot->group);
        free(slot->key);
        slot->group = NULL;
    }
    /* The curve exactly as given; a named group (faster code) only when it
     * is the very same curve. */
    EC_GROUP *g = NULL, *named = NULL;
    EC_POINT *gen = NULL;
    BN_CTX_start(t->bn);
    BIGNUM *q = fq_bn(&od->q, t->bn), *a = fq_bn(&od->a, t->bn), *b = fq_bn(&od->b, t->bn);
    BIGNUM *x = fq_bn(&od->xg, t->bn), *y = fq_bn(&od->yg, t->bn), *n = fq_bn(&od->n, t->bn);
    if (n == NULL || q == NULL || a == NULL || b == NULL || x == NULL || y == NULL)
        goto out;
    g = EC_GROUP_new_curve_GFp(q, a, b, t->bn);
    gen = g != NULL ? EC_POINT_new(g) : NULL;
    if (gen == NULL || !EC_POINT_set_affine_coordinates(g, gen, x, y, t->bn) ||
        !EC_GROUP_set_generator(g, gen, n, BN_value_one())) {
        EC_GROUP_free(g);
        g = NULL;
        goto out;
    }
    static const int nids[] = {NID_X9_62_prime256v1, NID_secp384r1, NID_secp521r1};
    for (size_t i = 0; i < 3 && named == NULL; i++) {
        named = EC_GROUP_new_by_curve_name(nids[i]);
        if (named != NULL && EC_GROUP_cmp(named, g, t->bn) != 0) {
            EC_GROUP_free(named);
            named = NULL;
        }
    }
    if (named != NULL) {
        EC_GROUP_free(g);
        g = named;
    }
out:
    BN_CTX_end(t->bn);
    EC_POINT_free(gen);
    if (g == NULL) {
        free(key);
        return NULL;
    }
    slot->group = g;
    slot->key = key;
    slot->keylen = len;
    return g;
}

static CpaStatus fq_ecdsa(struct fq_thread *t, const CpaCyEcdsaSignRSOpData *od, CpaFlatBuffer *pr,
                          CpaFlatBuffer *ps, CpaBoolean *mult)
{
    CpaStatus st = CPA_STATUS_FAIL;
    *mult = CPA_FALSE;
    EC_GROUP *g = fq_group(t, od);
    if (g == NULL)
        return CPA_STATUS_FAIL;
    EC_POINT *R = EC_POINT_new(g);
    BN_CTX_start(t->bn);
    BIGNUM *n = fq_bn(&od->n, t->bn), *k = fq_bn(&od->k, t->bn), *d = fq_bn(&od->d, t->bn);
    BIGNUM *e = fq_bn(&od->m, t->bn), *x = BN_CTX_get(t->bn), *r = BN_CTX_get(t->bn);
    BIGNUM *s = BN_CTX_get(t->bn), *kinv = BN_CTX_get(t->bn);
    if (R == NULL || s == NULL || kinv == NULL || n == NULL || k == NULL || d == NULL || e == NULL)
        goto out;
    /* X9.62: e is the leftmost bitlen(n) bits of the digest. */
    int nbits = BN_num_bits(n), mbits = (int)od->m.dataLenInBytes * 8;
    if (mbits > nbits && !BN_rshift(e, e, mbits - nbits))
        goto out;
    BN_set_flags(k, BN_FLG_CONSTTIME);
    if (!EC_POINT_mul(g, R, k, NULL, NULL, t->bn) ||
        !EC_POINT_get_affine_coordinates(g, R, x, NULL, t->bn) || !BN_nnmod(r, x, n, t->bn))
        goto out;
    st = CPA_STATUS_SUCCESS; /* from here on, a zero r or s is "multiply failed" */
    if (BN_is_zero(r))
        goto out;
    if (BN_mod_inverse(kinv, k, n, t->bn) == NULL || !BN_mod_mul(s, r, d, n, t->bn) ||
        !BN_mod_add(s, s, e, n, t->bn) || !BN_mod_mul(s, s, kinv, n, t->bn)) {
        st = CPA_STATUS_FAIL;
        goto out;
    }
    if (BN_is_zero(s))
        goto out;
    if (!fq_put(pr, r) || !fq_put(ps, s)) {
        st = CPA_STATUS_FAIL;
        goto out;
    }
    *mult = CPA_TRUE;
out:
    BN_CTX_end(t->bn);
    EC_POINT_free(R);
    return st;
}

struct fq_thread *fq_thread_new(void)
{
    struct fq_thread *t = calloc(1, sizeof(*t));
    if (t != NULL)
        t->bn = BN_CTX_new();
    return t;
}

void fq_thread_free(struct fq_thread *t)
{
    if (t == NULL)
        return;
    for (int i = 0; i < FQ_GROUPS; i++) {
        EC_GROUP_free(t->groups[i].group);
        free(t->groups[i].key);
    }
    for (int i = 0; i < FQ_RSA_KEYS; i++) {
        EVP_PKEY_CTX_free(t->rsakeys[i].ctx);
        free(t->rsakeys[i].crt);
    }
    BN_CTX_free(t->bn);
    free(t);
}

void fq_compute(struct fq_thread *t, struct fq_req *r)
{
    if (t == NULL || t->bn == NULL) {
        r->status = CPA_STATUS_RESOURCE;
        return;
    }
    r->mult = CPA_TRUE;
    if (r->inject_fail) {
        r->status = CPA_STATUS_FAIL;
        return;
    }
    if (r->kind == FQ_RSA)
        r->status = fq_rsa(t, r->opdata, r->out);
    else
        r->status = fq_ecdsa(t, r->opdata, r->r, r->s, &r->mult);
}
