/*
 * Fake crypto_mb: scalar OpenSSL behind struct tg_mbx_api (see tg_mbx_fake.h).
 */
#include "tg_mbx_fake.h"

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <string.h>

#define LANES 8

static struct {
    bool not_applicable;
    bool algo_off[16];
    unsigned fail_status[TG_MBX_FAKE_FN_COUNT][LANES];
    bool corrupt[TG_MBX_FAKE_FN_COUNT][LANES];
    bool skip[TG_MBX_FAKE_FN_COUNT][LANES];
    struct tg_mbx_fake_stats stats;
} fk;

static EC_GROUP *fk_groups[3];
static const struct tg_mbx_api *fk_inner;

void tg_mbx_fake_set_inner(const struct tg_mbx_api *inner)
{
    fk_inner = inner;
}

void tg_mbx_fake_reset(void)
{
    memset(&fk, 0, sizeof(fk));
    fk_inner = NULL;
}

static BIGNUM *fk_sink_bn[3][LANES];

void tg_mbx_fake_cleanup(void)
{
    for (size_t i = 0; i < 3; i++) {
        EC_GROUP_free(fk_groups[i]);
        fk_groups[i] = NULL;
        for (size_t l = 0; l < LANES; l++) {
            BN_free(fk_sink_bn[i][l]);
            fk_sink_bn[i][l] = NULL;
        }
    }
}

void tg_mbx_fake_set_applicable(bool yes)
{
    fk.not_applicable = !yes;
}

void tg_mbx_fake_set_algo(unsigned mbx_algo, bool supported)
{
    if (mbx_algo < 16)
        fk.algo_off[mbx_algo] = !supported;
}

void tg_mbx_fake_fail_lane(enum tg_mbx_fake_fn fn, unsigned lane, unsigned status)
{
    if ((unsigned)fn < TG_MBX_FAKE_FN_COUNT && lane < LANES)
        fk.fail_status[fn][lane] = status & 0xFu;
}

void tg_mbx_fake_corrupt(enum tg_mbx_fake_fn fn, unsigned lane)
{
    if ((unsigned)fn < TG_MBX_FAKE_FN_COUNT && lane < LANES)
        fk.corrupt[fn][lane] = true;
}

void tg_mbx_fake_corrupt_lane(unsigned lane)
{
    tg_mbx_fake_corrupt(TG_MBX_FAKE_RSA_PRIVATE_CRT, lane);
}

void tg_mbx_fake_skip_lane(enum tg_mbx_fake_fn fn, unsigned lane)
{
    if ((unsigned)fn < TG_MBX_FAKE_FN_COUNT && lane < LANES)
        fk.skip[fn][lane] = true;
}

const struct tg_mbx_fake_stats *tg_mbx_fake_stats(void)
{
    return &fk.stats;
}

/* ---- helpers ---- */

static tg_mbx_status all_status(unsigned v)
{
    tg_mbx_status st = 0;
    for (unsigned i = 0; i < LANES; i++)
        st = tg_mbx_set_lane_status(st, i, v);
    return st;
}

/* Injected failure: status plus garbage in the lane's output, as the real
 * library writes lanes it flagged. */
static tg_mbx_status inject(enum tg_mbx_fake_fn fn, tg_mbx_status st, unsigned lane,
                            unsigned char *out, size_t outlen)
{
    unsigned v = fk.fail_status[fn][lane];
    if (v == 0)
        return st;
    if (out != NULL)
        memset(out, 0xEE, outlen);
    return tg_mbx_set_lane_status(st, lane, v);
}

/* Passthrough: count the lanes, then corrupt / inject as knobs say. */
static tg_mbx_status fk_post(enum tg_mbx_fake_fn fn, tg_mbx_status st, const void *const lanes[8],
                             unsigned char *const out[8], size_t outlen)
{
    for (unsigned i = 0; i < LANES; i++) {
        if (lanes == NULL || lanes[i] == NULL)
            continue;
        fk.stats.lanes[fn]++;
        unsigned char *o = out != NULL ? out[i] : NULL;
        if (fk.corrupt[fn][i] && o != NULL)
            o[outlen / 2] ^= 0x10;
        st = inject(fn, st, i, o, outlen);
    }
    return st;
}

static EC_GROUP *fk_group(int nid)
{
    size_t i = nid == NID_X9_62_prime256v1 ? 0 : nid == NID_secp384r1 ? 1 : 2;
    if (fk_groups[i] == NULL)
        fk_groups[i] = EC_GROUP_new_by_curve_name_ex(NULL, NULL, nid);
    return fk_groups[i];
}

static int fk_bits(int nid)
{
    return nid == NID_X9_62_prime256v1 ? 256 : nid == NID_secp384r1 ? 384 : 521;
}

static size_t fk_bytes(int nid)
{
    return ((size_t)fk_bits(nid) + 7) / 8;
}

/* ---- unwritten lanes (tg_mbx_fake_skip_lane) ---- */

/* Where the outputs of skipped lanes go: up to two byte outputs (ECDSA r
 * and s) and three BIGNUM outputs (x, y, z) per lane. */
static unsigned char fk_sink[2][LANES][512];

/* The output array a call really writes: out, with fn's skipped lanes
 * pointing into sink `which` instead. */
static unsigned char **fk_redirect(enum tg_mbx_fake_fn fn, unsigned char *const out[8],
                                   unsigned char *buf[8], unsigned which)
{
    if (out == NULL)
        return NULL;
    for (unsigned i = 0; i < LANES; i++)
        buf[i] = fk.skip[fn][i] && out[i] != NULL ? fk_sink[which][i] : out[i];
    return buf;
}

static BIGNUM **fk_redirect_bn(enum tg_mbx_fake_fn fn, BIGNUM *const out[8], BIGNUM *buf[8],
                               unsigned which)
{
    if (out == NULL)
        return NULL;
    for (unsigned i = 0; i < LANES; i++) {
        buf[i] = out[i];
        if (!fk.skip[fn][i] || out[i] == NULL)
            continue;
        if (fk_sink_bn[which][i] == NULL)
            fk_sink_bn[which][i] = BN_new();
        buf[i] = fk_sink_bn[which][i];
    }
    return buf;
}

/* A skipped lane that was not empty reports success, whatever happened. */
static tg_mbx_status fk_skipped_ok(enum tg_mbx_fake_fn fn, tg_mbx_status st)
{
    for (unsigned i = 0; i < LANES; i++) {
        if (fk.skip[fn][i] && tg_mbx_lane_status(st, i) != TG_MBX_STATUS_NULL_PARAM_ERR)
            st = tg_mbx_set_lane_status(st, i, TG_MBX_STATUS_OK);
    }
    return st;
}

/* ---- CPU / version ---- */

static tg_mbx_u64 fk_get_cpu_features(void)
{
    if (fk_inner != NULL && !fk.not_applicable)
        return fk_inner->get_cpu_features();
    return fk.not_applicable ? 0x1FFULL : 0xFFFFFFFFFFULL;
}

static int fk_is_applicable(tg_mbx_u64 features)
{
    if (fk_inner != NULL && !fk.not_applicable)
        return fk_inner->is_crypto_mb_applicable(features);
    return fk.not_applicable ? 0 : 1;
}

static tg_mbx_u64 fk_get_algo_info(unsigned int algo)
{
    if (fk.not_applicable || algo >= 16 || fk.algo_off[algo])
        return 0;
    return algo <= TG_MBX_ALGO_EC_NIST_P521 ? TG_MBX_WIDTH_MB8 : 0;
}

static const struct tg_mbx_version fk_version = {
    1, 0, 14, "crypto_mb_fake", "test", "crypto_mb fake (scalar OpenSSL)"};

static const struct tg_mbx_version *fk_getversion(void)
{
    if (fk_inner != NULL)
        return fk_inner->getversion();
    return &fk_version;
}

/* ---- RSA ---- */

static bool fk_rsa_bits_ok(int bits)
{
    return bits == 1024 || bits == 2048 || bits == 3072 || bits == 4096;
}

static tg_mbx_status fk_rsa_private_crt_impl(const unsigned char *const from[8],
                                             unsigned char *const to[8], const BIGNUM *const p[8],
                                             const BIGNUM *const q[8], const BIGNUM *const dp[8],
                                             const BIGNUM *const dq[8], const BIGNUM *const iq[8],
                                             int bits)
{
    enum tg_mbx_fake_fn fn = TG_MBX_FAKE_RSA_PRIVATE_CRT;
    fk.stats.calls[fn]++;
    if (fk_inner != NULL)
        return fk_post(fn, fk_inner->rsa_private_crt_ssl_mb8(from, to, p, q, dp, dq, iq, bits),
                       (const void *const *)from, to, (size_t)bits / 8);
    if (from == NULL || to == NULL || p == NULL || q == NULL || dp == NULL || dq == NULL ||
        iq == NULL)
        return all_status(TG_MBX_STATUS_NULL_PARAM_ERR);
    if (!fk_rsa_bits_ok(bits))
        return all_status(TG_MBX_STATUS_MISMATCH_PARAM_ERR);
    size_t k = (size_t)bits / 8;
    tg_mbx_status st = 0;
    BN_CTX *ctx = BN_CTX_new();
    BN_CTX_start(ctx);
    BIGNUM *c = BN_CTX_get(ctx), *m1 = BN_CTX_get(ctx), *m2 = BN_CTX_get(ctx);
    BIGNUM *h = BN_CTX_get(ctx), *t = BN_CTX_get(ctx);
    for (unsigned i = 0; i < LANES; i++) {
        if (from[i] == NULL || to[i] == NULL || p[i] == NULL || q[i] == NULL || dp[i] == NULL ||
            dq[i] == NULL || iq[i] == NULL) {
            st = tg_mbx_set_lane_status(st, i, TG_MBX_STATUS_NULL_PARAM_ERR);
            continue;
        }
        fk.stats.lanes[fn]++;
        if (BN_num_bits(p[i]) != bits / 2 || BN_num_bits(q[i]) != bits / 2) {
            memset(to[i], 0xEE, k);
            st = tg_mbx_set_lane_status(st, i, TG_MBX_STATUS_MISMATCH_PARAM_ERR);
            continue;
        }
        /* Garner: m = m2 + q * (iq * (m1 - m2) mod p) */
        if (t == NULL || BN_bin2bn(from[i], (int)k, c) == NULL || !BN_mod(t, c, p[i], ctx) ||
            !BN_mod_exp_mont_consttime(m1, t, dp[i], p[i], ctx, NULL) || !BN_mod(t, c, q[i], ctx) ||
            !BN_mod_exp_mont_consttime(m2, t, dq[i], q[i], ctx, NULL) ||
            !BN_mod_sub(h, m1, m2, p[i], ctx) || !BN_mod_mul(h, h, iq[i], p[i], ctx) ||
            !BN_mul(t, h, q[i], ctx) || !BN_add(t, t, m2) || BN_bn2binpad(t, to[i], (int)k) < 0) {
            memset(to[i], 0xEE, k);
            st = tg_mbx_set_lane_status(st, i, TG_MBX_STATUS_MISMATCH_PARAM_ERR);
            continue;
        }
        if (fk.corrupt[fn][i])
            to[i][k / 2] ^= 0x10;
        st = inject(fn, st, i, to[i], k);
    }
    BN_CTX_end(ctx);
    BN_CTX_free(ctx);
    return st;
}

static tg_mbx_status fk_rsa_private_crt(const unsigned char *const from[8],
                                        unsigned char *const to[8], const BIGNUM *const p[8],
                                        const BIGNUM *const q[8], const BIGNUM *const dp[8],
                                        const BIGNUM *const dq[8], const BIGNUM *const iq[8],
                                        int bits)
{
    enum tg_mbx_fake_fn fn = TG_MBX_FAKE_RSA_PRIVATE_CRT;
    unsigned char *o[LANES];
    return fk_skipped_ok(
        fn, fk_rsa_private_crt_impl(from, fk_redirect(fn, to, o, 0), p, q, dp, dq, iq, bits));
}

static tg_mbx_status fk_rsa_public_impl(const unsigned char *const from[8],
                                        unsigned char *const to[8], const BIGNUM *const e[8],
                                        const BIGNUM *const n[8], int bits)
{
    enum tg_mbx_fake_fn fn = TG_MBX_FAKE_RSA_PUBLIC;
    fk.stats.calls[fn]++;
    if (fk_inner != NULL)
        return fk_post(fn, fk_inner->rsa_public_ssl_mb8(from, to, e, n, bits),
                       (const void *const *)from, to, (size_t)bits / 8);
    if (from == NULL || to == NULL || e == NULL || n == NULL)
        return all_status(TG_MBX_STATUS_NULL_PARAM_ERR);
    if (!fk_rsa_bits_ok(bits))
        return all_status(TG_MBX_STATUS_MISMATCH_PARAM_ERR);
    size_t k = (size_t)bits / 8;
    tg_mbx_status st = 0;
    BN_CTX *ctx = BN_CTX_new();
    BN_CTX_start(ctx);
    BIGNUM *c = BN_CTX_get(ctx), *m = BN_CTX_get(ctx);
    for (unsigned i = 0; i < LANES; i++) {
        if (from[i] == NULL || to[i] == NULL || e[i] == NULL || n[i] == NULL) {
            st = tg_mbx_set_lane_status(st, i, TG_MBX_STATUS_NULL_PARAM_ERR);
            continue;
        }
        fk.stats.lanes[fn]++;
        if (!BN_is_word(e[i], 65537) || BN_num_bits(n[i]) != bits || m == NULL ||
            BN_bin2bn(from[i], (int)k, c) == NULL || !BN_mod_exp(m, c, e[i], n[i], ctx) ||
            BN_bn2binpad(m, to[i], (int)k) < 0) {
            memset(to[i], 0xEE, k);
            st = tg_mbx_set_lane_status(st, i, TG_MBX_STATUS_MISMATCH_PARAM_ERR);
            continue;
        }
        st = inject(fn, st, i, to[i], k);
    }
    BN_CTX_end(ctx);
    BN_CTX_free(ctx);
    return st;
}

static tg_mbx_status fk_rsa_public(const unsigned char *const from[8], unsigned char *const to[8],
                                   const BIGNUM *const e[8], const BIGNUM *const n[8], int bits)
{
    enum tg_mbx_fake_fn fn = TG_MBX_FAKE_RSA_PUBLIC;
    unsigned char *o[LANES];
    return fk_skipped_ok(fn, fk_rsa_public_impl(from, fk_redirect(fn, to, o, 0), e, n, bits));
}

/* ---- ECDSA ---- */

static tg_mbx_status fk_ecdsa_sign_impl(int nid, unsigned char *r[8], unsigned char *s[8],
                                        const unsigned char *const msg[8], const BIGNUM *const k[8],
                                        const BIGNUM *const d[8])
{
    enum tg_mbx_fake_fn fn = TG_MBX_FAKE_ECDSA_SIGN;
    fk.stats.calls[fn]++;
    if (fk_inner != NULL) {
        tg_mbx_ecdsa_sign_ssl_mb8_fn f =
            nid == NID_X9_62_prime256v1 ? fk_inner->nistp256_ecdsa_sign_ssl_mb8
            : nid == NID_secp384r1      ? fk_inner->nistp384_ecdsa_sign_ssl_mb8
                                        : fk_inner->nistp521_ecdsa_sign_ssl_mb8;
        return fk_post(fn, f(r, s, msg, k, d, NULL), (const void *const *)msg, r, fk_bytes(nid));
    }
    if (r == NULL || s == NULL || msg == NULL || k == NULL || d == NULL)
        return all_status(TG_MBX_STATUS_NULL_PARAM_ERR);
    const EC_GROUP *g = fk_group(nid);
    const BIGNUM *order = EC_GROUP_get0_order(g);
    size_t olen = fk_bytes(nid);
    tg_mbx_status st = 0;
    BN_CTX *ctx = BN_CTX_new();
    BN_CTX_start(ctx);
    BIGNUM *e = BN_CTX_get(ctx), *x = BN_CTX_get(ctx), *rr = BN_CTX_get(ctx);
    BIGNUM *ss = BN_CTX_get(ctx), *kinv = BN_CTX_get(ctx);
    EC_POINT *R = EC_POINT_new(g);
    for (unsigned i = 0; i < LANES; i++) {
        if (r[i] == NULL || s[i] == NULL || msg[i] == NULL || k[i] == NULL || d[i] == NULL) {
            st = tg_mbx_set_lane_status(st, i, TG_MBX_STATUS_NULL_PARAM_ERR);
            continue;
        }
        fk.stats.lanes[fn]++;
        if (kinv == NULL || BN_bin2bn(msg[i], (int)olen, e) == NULL || BN_is_zero(e) ||
            BN_cmp(e, order) >= 0 || BN_is_zero(k[i]) || BN_is_zero(d[i])) {
            memset(r[i], 0xEE, olen);
            memset(s[i], 0xEE, olen);
            st = tg_mbx_set_lane_status(st, i, TG_MBX_STATUS_MISMATCH_PARAM_ERR);
            continue;
        }
        /* r = (kG).x mod n; s = k^-1 (e + r d) mod n */
        if (!EC_POINT_mul(g, R, k[i], NULL, NULL, ctx) ||
            !EC_POINT_get_affine_coordinates(g, R, x, NULL, ctx) || !BN_nnmod(rr, x, order, ctx) ||
            BN_mod_inverse(kinv, k[i], order, ctx) == NULL ||
            !BN_mod_mul(ss, rr, d[i], order, ctx) || !BN_mod_add(ss, ss, e, order, ctx) ||
            !BN_mod_mul(ss, ss, kinv, order, ctx) || BN_bn2binpad(rr, r[i], (int)olen) < 0 ||
            BN_bn2binpad(ss, s[i], (int)olen) < 0) {
            st = tg_mbx_set_lane_status(st, i, TG_MBX_STATUS_MISMATCH_PARAM_ERR);
            continue;
        }
        if (BN_is_zero(rr) || BN_is_zero(ss))
            st = tg_mbx_set_lane_status(st, i, TG_MBX_STATUS_SIGNATURE_ERR);
        if (fk.corrupt[fn][i])
            r[i][olen / 2] ^= 0x10;
        st = inject(fn, st, i, r[i], olen);
    }
    if (kinv != NULL)
        BN_clear(kinv);
    EC_POINT_free(R);
    BN_CTX_end(ctx);
    BN_CTX_free(ctx);
    return st;
}

static tg_mbx_status fk_ecdsa_sign(int nid, unsigned char *r[8], unsigned char *s[8],
                                   const unsigned char *const msg[8], const BIGNUM *const k[8],
                                   const BIGNUM *const d[8])
{
    enum tg_mbx_fake_fn fn = TG_MBX_FAKE_ECDSA_SIGN;
    unsigned char *ro[LANES], *so[LANES];
    return fk_skipped_ok(fn, fk_ecdsa_sign_impl(nid, fk_redirect(fn, r, ro, 0),
                                                fk_redirect(fn, s, so, 1), msg, k, d));
}

static tg_mbx_status fk_p256_sign(unsigned char *r[8], unsigned char *s[8],
                                  const unsigned char *const msg[8], const BIGNUM *const k[8],
                                  const BIGNUM *const d[8], unsigned char *scratch)
{
    (void)scratch;
    return fk_ecdsa_sign(NID_X9_62_prime256v1, r, s, msg, k, d);
}

static tg_mbx_status fk_p384_sign(unsigned char *r[8], unsigned char *s[8],
                                  const unsigned char *const msg[8], const BIGNUM *const k[8],
                                  const BIGNUM *const d[8], unsigned char *scratch)
{
    (void)scratch;
    return fk_ecdsa_sign(NID_secp384r1, r, s, msg, k, d);
}

static tg_mbx_status fk_p521_sign(unsigned char *r[8], unsigned char *s[8],
                                  const unsigned char *const msg[8], const BIGNUM *const k[8],
                                  const BIGNUM *const d[8], unsigned char *scratch)
{
    (void)scratch;
    return fk_ecdsa_sign(NID_secp521r1, r, s, msg, k, d);
}

/* ---- ECDSA verification ---- */

static tg_mbx_status fk_ecdsa_verify(int nid, const ECDSA_SIG *const sig[8],
                                     const unsigned char *const msg[8], const BIGNUM *const x[8],
                                     const BIGNUM *const y[8], const BIGNUM *const z[8])
{
    enum tg_mbx_fake_fn fn = TG_MBX_FAKE_ECDSA_VERIFY;
    fk.stats.calls[fn]++;
    tg_mbx_ecdsa_verify_ssl_mb8_fn f =
        fk_inner == NULL              ? NULL
        : nid == NID_X9_62_prime256v1 ? fk_inner->nistp256_ecdsa_verify_ssl_mb8
        : nid == NID_secp384r1        ? fk_inner->nistp384_ecdsa_verify_ssl_mb8
                                      : fk_inner->nistp521_ecdsa_verify_ssl_mb8;
    if (f != NULL)
        return fk_post(fn, f(sig, msg, x, y, z, NULL), (const void *const *)sig, NULL, 0);
    if (sig == NULL || msg == NULL || x == NULL || y == NULL)
        return all_status(TG_MBX_STATUS_NULL_PARAM_ERR);
    const EC_GROUP *g = fk_group(nid);
    const BIGNUM *order = EC_GROUP_get0_order(g);
    size_t olen = fk_bytes(nid);
    tg_mbx_status st = 0;
    BN_CTX *ctx = BN_CTX_new();
    BN_CTX_start(ctx);
    BIGNUM *e = BN_CTX_get(ctx), *w = BN_CTX_get(ctx), *u1 = BN_CTX_get(ctx);
    BIGNUM *u2 = BN_CTX_get(ctx), *rx = BN_CTX_get(ctx);
    EC_POINT *Q = EC_POINT_new(g), *R = EC_POINT_new(g);
    for (unsigned i = 0; i < LANES; i++) {
        if (sig[i] == NULL || msg[i] == NULL || x[i] == NULL || y[i] == NULL ||
            (z != NULL && z[i] == NULL)) {
            st = tg_mbx_set_lane_status(st, i, TG_MBX_STATUS_NULL_PARAM_ERR);
            continue;
        }
        fk.stats.lanes[fn]++;
        const BIGNUM *r = ECDSA_SIG_get0_r(sig[i]), *s = ECDSA_SIG_get0_s(sig[i]);
        if (rx == NULL || BN_bin2bn(msg[i], (int)olen, e) == NULL || BN_cmp(e, order) >= 0 ||
            BN_is_zero(r) || BN_cmp(r, order) >= 0 || BN_is_zero(s) || BN_cmp(s, order) >= 0 ||
            !EC_POINT_set_affine_coordinates(g, Q, x[i], y[i], ctx)) {
            st = tg_mbx_set_lane_status(st, i, TG_MBX_STATUS_MISMATCH_PARAM_ERR);
            continue;
        }
        /* w = s^-1, u1 = e w, u2 = r w; valid iff (u1 G + u2 Q).x = r mod n */
        bool good = BN_mod_inverse(w, s, order, ctx) != NULL && BN_mod_mul(u1, e, w, order, ctx) &&
                    BN_mod_mul(u2, r, w, order, ctx) && EC_POINT_mul(g, R, u1, Q, u2, ctx) &&
                    !EC_POINT_is_at_infinity(g, R) &&
                    EC_POINT_get_affine_coordinates(g, R, rx, NULL, ctx) &&
                    BN_nnmod(rx, rx, order, ctx) && BN_cmp(rx, r) == 0;
        if (!good)
            st = tg_mbx_set_lane_status(st, i, TG_MBX_STATUS_SIGNATURE_ERR);
        st = inject(fn, st, i, NULL, 0);
    }
    EC_POINT_free(Q);
    EC_POINT_free(R);
    BN_CTX_end(ctx);
    BN_CTX_free(ctx);
    return st;
}

static tg_mbx_status fk_p256_verify(const ECDSA_SIG *const sig[8],
                                    const unsigned char *const msg[8], const BIGNUM *const x[8],
                                    const BIGNUM *const y[8], const BIGNUM *const z[8],
                                    unsigned char *scratch)
{
    (void)scratch;
    return fk_ecdsa_verify(NID_X9_62_prime256v1, sig, msg, x, y, z);
}

static tg_mbx_status fk_p384_verify(const ECDSA_SIG *const sig[8],
                                    const unsigned char *const msg[8], const BIGNUM *const x[8],
                                    const BIGNUM *const y[8], const BIGNUM *const z[8],
                                    unsigned char *scratch)
{
    (void)scratch;
    return fk_ecdsa_verify(NID_secp384r1, sig, msg, x, y, z);
}

static tg_mbx_status fk_p521_verify(const ECDSA_SIG *const sig[8],
                                    const unsigned char *const msg[8], const BIGNUM *const x[8],
                                    const BIGNUM *const y[8], const BIGNUM *const z[8],
                                    unsigned char *scratch)
{
    (void)scratch;
    return fk_ecdsa_verify(NID_secp521r1, sig, msg, x, y, z);
}

/* ---- EC public key ---- */

static tg_mbx_status fk_ecpub_impl(int nid, BIGNUM *x[8], BIGNUM *y[8], BIGNUM *z[8],
                                   const BIGNUM *const d[8])
{
    enum tg_mbx_fake_fn fn = TG_MBX_FAKE_EC_PUBLIC_KEY;
    fk.stats.calls[fn]++;
    if (fk_inner != NULL) {
        tg_mbx_ecpublic_key_ssl_mb8_fn f =
            nid == NID_X9_62_prime256v1 ? fk_inner->nistp256_ecpublic_key_ssl_mb8
            : nid == NID_secp384r1      ? fk_inner->nistp384_ecpublic_key_ssl_mb8
                                        : fk_inner->nistp521_ecpublic_key_ssl_mb8;
        return fk_post(fn, f(x, y, z, d, NULL), (const void *const *)d, NULL, 0);
    }
    if (x == NULL || y == NULL || d == NULL)
        return all_status(TG_MBX_STATUS_NULL_PARAM_ERR);
    const EC_GROUP *g = fk_group(nid);
    tg_mbx_status st = 0;
    BN_CTX *ctx = BN_CTX_new();
    BN_CTX_start(ctx);
    BIGNUM *fp = BN_CTX_get(ctx), *Z = BN_CTX_get(ctx), *t = BN_CTX_get(ctx);
    BIGNUM *ox[LANES], *oy[LANES];
    EC_POINT *P = EC_POINT_new(g);
    EC_GROUP_get_curve(g, fp, NULL, NULL, ctx);
    for (unsigned i = 0; i < LANES; i++) {
        ox[i] = BN_CTX_get(ctx);
        oy[i] = BN_CTX_get(ctx);
        if (x[i] == NULL || y[i] == NULL || d[i] == NULL || (z != NULL && z[i] == NULL)) {
            st = tg_mbx_set_lane_status(st, i, TG_MBX_STATUS_NULL_PARAM_ERR);
            continue;
        }
        fk.stats.lanes[fn]++;
        if (BN_is_zero(d[i]) || !EC_POINT_mul(g, P, d[i], NULL, NULL, ctx) ||
            !EC_POINT_get_affine_coordinates(g, P, ox[i], oy[i], ctx)) {
            st = tg_mbx_set_lane_status(st, i, TG_MBX_STATUS_MISMATCH_PARAM_ERR);
            continue;
        }
        st = inject(fn, st, i, NULL, 0);
    }
    /* The real library stores results only up to the first failed lane. */
    for (unsigned i = 0; i < LANES && tg_mbx_lane_status(st, i) == 0; i++) {
        if (z == NULL) {
            BN_copy(x[i], ox[i]);
            BN_copy(y[i], oy[i]);
        } else {
            /* Jacobian with Z = i + 2: X = x Z^2, Y = y Z^3. */
            BN_set_word(Z, i + 2);
            BN_mod_sqr(t, Z, fp, ctx);
            BN_mod_mul(x[i], ox[i], t, fp, ctx);
            BN_mod_mul(t, t, Z, fp, ctx);
            BN_mod_mul(y[i], oy[i], t, fp, ctx);
            BN_copy(z[i], Z);
        }
    }
    EC_POINT_free(P);
    BN_CTX_end(ctx);
    BN_CTX_free(ctx);
    return st;
}

static tg_mbx_status fk_ecpub(int nid, BIGNUM *x[8], BIGNUM *y[8], BIGNUM *z[8],
                              const BIGNUM *const d[8])
{
    enum tg_mbx_fake_fn fn = TG_MBX_FAKE_EC_PUBLIC_KEY;
    BIGNUM *xo[LANES], *yo[LANES], *zo[LANES];
    return fk_skipped_ok(fn, fk_ecpub_impl(nid, fk_redirect_bn(fn, x, xo, 0),
                                           fk_redirect_bn(fn, y, yo, 1),
                                           fk_redirect_bn(fn, z, zo, 2), d));
}

static tg_mbx_status fk_p256_pub(BIGNUM *x[8], BIGNUM *y[8], BIGNUM *z[8], const BIGNUM *const d[8],
                                 unsigned char *scratch)
{
    (void)scratch;
    return fk_ecpub(NID_X9_62_prime256v1, x, y, z, d);
}

static tg_mbx_status fk_p384_pub(BIGNUM *x[8], BIGNUM *y[8], BIGNUM *z[8], const BIGNUM *const d[8],
                                 unsigned char *scratch)
{
    (void)scratch;
    return fk_ecpub(NID_secp384r1, x, y, z, d);
}

static tg_mbx_status fk_p521_pub(BIGNUM *x[8], BIGNUM *y[8], BIGNUM *z[8], const BIGNUM *const d[8],
                                 unsigned char *scratch)
{
    (void)scratch;
    return fk_ecpub(NID_secp521r1, x, y, z, d);
}

/* ---- ECDH ---- */

static tg_mbx_status fk_ecdh_impl(int nid, unsigned char *shared[8], const BIGNUM *const d[8],
                                  const BIGNUM *const x[8], const BIGNUM *const y[8],
                                  const BIGNUM *const z[8])
{
    enum tg_mbx_fake_fn fn = TG_MBX_FAKE_ECDH;
    fk.stats.calls[fn]++;
    if (fk_inner != NULL) {
        tg_mbx_ecdh_ssl_mb8_fn f = nid == NID_X9_62_prime256v1 ? fk_inner->nistp256_ecdh_ssl_mb8
                                   : nid == NID_secp384r1      ? fk_inner->nistp384_ecdh_ssl_mb8
                                                               : fk_inner->nistp521_ecdh_ssl_mb8;
        return fk_post(fn, f(shared, d, x, y, z, NULL), (const void *const *)shared, shared,
                       fk_bytes(nid));
    }
    if (shared == NULL || d == NULL || x == NULL || y == NULL)
        return all_status(TG_MBX_STATUS_NULL_PARAM_ERR);
    const EC_GROUP *g = fk_group(nid);
    size_t flen = fk_bytes(nid);
    tg_mbx_status st = 0;
    BN_CTX *ctx = BN_CTX_new();
    BN_CTX_start(ctx);
    BIGNUM *fp = BN_CTX_get(ctx), *ax = BN_CTX_get(ctx), *ay = BN_CTX_get(ctx);
    BIGNUM *zi = BN_CTX_get(ctx), *t = BN_CTX_get(ctx);
    EC_POINT *P = EC_POINT_new(g), *R = EC_POINT_new(g);
    EC_GROUP_get_curve(g, fp, NULL, NULL, ctx);
    for (unsigned i = 0; i < LANES; i++) {
        if (shared[i] == NULL || d[i] == NULL || x[i] == NULL || y[i] == NULL ||
            (z != NULL && z[i] == NULL)) {
            st = tg_mbx_set_lane_status(st, i, TG_MBX_STATUS_NULL_PARAM_ERR);
            continue;
        }
        fk.stats.lanes[fn]++;
        bool ok = t != NULL && BN_copy(ax, x[i]) && BN_copy(ay, y[i]);
        if (ok && z != NULL) {
            /* affine x = X / Z^2, y = Y / Z^3 */
            ok = BN_mod_inverse(zi, z[i], fp, ctx) && BN_mod_sqr(t, zi, fp, ctx) &&
                 BN_mod_mul(ax, ax, t, fp, ctx) && BN_mod_mul(t, t, zi, fp, ctx) &&
                 BN_mod_mul(ay, ay, t, fp, ctx);
        }
        ok = ok && !BN_is_zero(d[i]) && EC_POINT_set_affine_coordinates(g, P, ax, ay, ctx) &&
             EC_POINT_mul(g, R, NULL, P, d[i], ctx) &&
             EC_POINT_get_affine_coordinates(g, R, ax, NULL, ctx) &&
             BN_bn2binpad(ax, shared[i], (int)flen) >= 0;
        if (!ok) {
            memset(shared[i], 0xEE, flen);
            st = tg_mbx_set_lane_status(st, i, TG_MBX_STATUS_MISMATCH_PARAM_ERR);
            continue;
        }
        st = inject(fn, st, i, shared[i], flen);
    }
    EC_POINT_free(P);
    EC_POINT_free(R);
    BN_CTX_end(ctx);
    BN_CTX_free(ctx);
    return st;
}

static tg_mbx_status fk_ecdh(int nid, unsigned char *shared[8], const BIGNUM *const d[8],
                             const BIGNUM *const x[8], const BIGNUM *const y[8],
                             const BIGNUM *const z[8])
{
    enum tg_mbx_fake_fn fn = TG_MBX_FAKE_ECDH;
    unsigned char *o[LANES];
    return fk_skipped_ok(fn, fk_ecdh_impl(nid, fk_redirect(fn, shared, o, 0), d, x, y, z));
}

static tg_mbx_status fk_p256_ecdh(unsigned char *shared[8], const BIGNUM *const d[8],
                                  const BIGNUM *const x[8], const BIGNUM *const y[8],
                                  const BIGNUM *const z[8], unsigned char *scratch)
{
    (void)scratch;
    return fk_ecdh(NID_X9_62_prime256v1, shared, d, x, y, z);
}

static tg_mbx_status fk_p384_ecdh(unsigned char *shared[8], const BIGNUM *const d[8],
                                  const BIGNUM *const x[8], const BIGNUM *const y[8],
                                  const BIGNUM *const z[8], unsigned char *scratch)
{
    (void)scratch;
    return fk_ecdh(NID_secp384r1, shared, d, x, y, z);
}

static tg_mbx_status fk_p521_ecdh(unsigned char *shared[8], const BIGNUM *const d[8],
                                  const BIGNUM *const x[8], const BIGNUM *const y[8],
                                  const BIGNUM *const z[8], unsigned char *scratch)
{
    (void)scratch;
    return fk_ecdh(NID_secp521r1, shared, d, x, y, z);
}

/* ---- X25519 ---- */

static tg_mbx_status fk_x25519_public_key_impl(unsigned char *const pub[8],
                                               const unsigned char *const priv[8])
{
    enum tg_mbx_fake_fn fn = TG_MBX_FAKE_X25519_PUBLIC_KEY;
    fk.stats.calls[fn]++;
    if (fk_inner != NULL)
        return fk_post(fn, fk_inner->x25519_public_key_mb8(pub, priv), (const void *const *)pub,
                       pub, 32);
    if (pub == NULL || priv == NULL)
        return all_status(TG_MBX_STATUS_NULL_PARAM_ERR);
    tg_mbx_status st = 0;
    for (unsigned i = 0; i < LANES; i++) {
        if (pub[i] == NULL || priv[i] == NULL) {
            st = tg_mbx_set_lane_status(st, i, TG_MBX_STATUS_NULL_PARAM_ERR);
            continue;
        }
        fk.stats.lanes[fn]++;
        /* OpenSSL clamps the scalar itself, as crypto_mb does. */
        EVP_PKEY *pk = EVP_PKEY_new_raw_private_key_ex(NULL, "X25519", NULL, priv[i], 32);
        size_t len = 32;
        if (pk == NULL || !EVP_PKEY_get_raw_public_key(pk, pub[i], &len) || len != 32) {
            memset(pub[i], 0xEE, 32);
            st = tg_mbx_set_lane_status(st, i, TG_MBX_STATUS_MISMATCH_PARAM_ERR);
        }
        EVP_PKEY_free(pk);
        st = inject(fn, st, i, pub[i], 32);
    }
    return st;
}

static tg_mbx_status fk_x25519_public_key(unsigned char *const pub[8],
                                          const unsigned char *const priv[8])
{
    enum tg_mbx_fake_fn fn = TG_MBX_FAKE_X25519_PUBLIC_KEY;
    unsigned char *o[LANES];
    return fk_skipped_ok(fn, fk_x25519_public_key_impl(fk_redirect(fn, pub, o, 0), priv));
}

static tg_mbx_status fk_x25519_impl(unsigned char *const shared[8],
                                    const unsigned char *const priv[8],
                                    const unsigned char *const pub[8])
{
    enum tg_mbx_fake_fn fn = TG_MBX_FAKE_X25519;
    fk.stats.calls[fn]++;
    if (fk_inner != NULL)
        return fk_post(fn, fk_inner->x25519_mb8(shared, priv, pub), (const void *const *)shared,
                       shared, 32);
    if (shared == NULL || priv == NULL || pub == NULL)
        return all_status(TG_MBX_STATUS_NULL_PARAM_ERR);
    tg_mbx_status st = 0;
    for (unsigned i = 0; i < LANES; i++) {
        if (shared[i] == NULL || priv[i] == NULL || pub[i] == NULL) {
            st = tg_mbx_set_lane_status(st, i, TG_MBX_STATUS_NULL_PARAM_ERR);
            continue;
        }
        fk.stats.lanes[fn]++;
        EVP_PKEY *mine = EVP_PKEY_new_raw_private_key_ex(NULL, "X25519", NULL, priv[i], 32);
        EVP_PKEY *peer = EVP_PKEY_new_raw_public_key_ex(NULL, "X25519", NULL, pub[i], 32);
        EVP_PKEY_CTX *ctx = mine ? EVP_PKEY_CTX_new_from_pkey(NULL, mine, NULL) : NULL;
        size_t len = 32;
        /* OpenSSL masks the peer's top bit and refuses an all-zero result. */
        if (peer == NULL || ctx == NULL || EVP_PKEY_derive_init(ctx) <= 0 ||
            EVP_PKEY_derive_set_peer_ex(ctx, peer, 0) <= 0 ||
            EVP_PKEY_derive(ctx, shared[i], &len) <= 0 || len != 32) {
            memset(shared[i], 0, 32);
            st = tg_mbx_set_lane_status(st, i, TG_MBX_STATUS_LOW_ORDER_ERR);
        }
        EVP_PKEY_CTX_free(ctx);
        EVP_PKEY_free(mine);
        EVP_PKEY_free(peer);
        st = inject(fn, st, i, shared[i], 32);
    }
    return st;
}

static tg_mbx_status fk_x25519(unsigned char *const shared[8], const unsigned char *const priv[8],
                               const unsigned char *const pub[8])
{
    enum tg_mbx_fake_fn fn = TG_MBX_FAKE_X25519;
    unsigned char *o[LANES];
    return fk_skipped_ok(fn, fk_x25519_impl(fk_redirect(fn, shared, o, 0), priv, pub));
}

/* ---- tables ---- */

static const struct tg_mbx_api fk_api = {
    .name = "fake",
    .get_cpu_features = fk_get_cpu_features,
    .is_crypto_mb_applicable = fk_is_applicable,
    .get_algo_info = fk_get_algo_info,
    .getversion = fk_getversion,
    .rsa_private_crt_ssl_mb8 = fk_rsa_private_crt,
    .rsa_public_ssl_mb8 = fk_rsa_public,
    .nistp256_ecdsa_sign_ssl_mb8 = fk_p256_sign,
    .nistp384_ecdsa_sign_ssl_mb8 = fk_p384_sign,
    .nistp521_ecdsa_sign_ssl_mb8 = fk_p521_sign,
    .nistp256_ecdsa_verify_ssl_mb8 = fk_p256_verify,
    .nistp384_ecdsa_verify_ssl_mb8 = fk_p384_verify,
    .nistp521_ecdsa_verify_ssl_mb8 = fk_p521_verify,
    .nistp256_ecpublic_key_ssl_mb8 = fk_p256_pub,
    .nistp384_ecpublic_key_ssl_mb8 = fk_p384_pub,
    .nistp521_ecpublic_key_ssl_mb8 = fk_p521_pub,
    .nistp256_ecdh_ssl_mb8 = fk_p256_ecdh,
    .nistp384_ecdh_ssl_mb8 = fk_p384_ecdh,
    .nistp521_ecdh_ssl_mb8 = fk_p521_ecdh,
    .x25519_public_key_mb8 = fk_x25519_public_key,
    .x25519_mb8 = fk_x25519,
};

static const struct tg_mbx_api fk_api_no_p521 = {
    .name = "fake-no-p521",
    .get_cpu_features = fk_get_cpu_features,
    .is_crypto_mb_applicable = fk_is_applicable,
    .get_algo_info = fk_get_algo_info,
    .getversion = fk_getversion,
    .rsa_private_crt_ssl_mb8 = fk_rsa_private_crt,
    .rsa_public_ssl_mb8 = fk_rsa_public,
    .nistp256_ecdsa_sign_ssl_mb8 = fk_p256_sign,
    .nistp384_ecdsa_sign_ssl_mb8 = fk_p384_sign,
    .nistp256_ecdsa_verify_ssl_mb8 = fk_p256_verify,
    .nistp384_ecdsa_verify_ssl_mb8 = fk_p384_verify,
    .nistp256_ecpublic_key_ssl_mb8 = fk_p256_pub,
    .nistp384_ecpublic_key_ssl_mb8 = fk_p384_pub,
    .nistp256_ecdh_ssl_mb8 = fk_p256_ecdh,
    .nistp384_ecdh_ssl_mb8 = fk_p384_ecdh,
    .x25519_public_key_mb8 = fk_x25519_public_key,
    .x25519_mb8 = fk_x25519,
};

static const struct tg_mbx_api fk_api_no_verify = {
    .name = "fake-no-verify",
    .get_cpu_features = fk_get_cpu_features,
    .is_crypto_mb_applicable = fk_is_applicable,
    .get_algo_info = fk_get_algo_info,
    .getversion = fk_getversion,
    .rsa_private_crt_ssl_mb8 = fk_rsa_private_crt,
    .rsa_public_ssl_mb8 = fk_rsa_public,
    .nistp256_ecdsa_sign_ssl_mb8 = fk_p256_sign,
    .nistp384_ecdsa_sign_ssl_mb8 = fk_p384_sign,
    .nistp521_ecdsa_sign_ssl_mb8 = fk_p521_sign,
    .nistp256_ecpublic_key_ssl_mb8 = fk_p256_pub,
    .nistp384_ecpublic_key_ssl_mb8 = fk_p384_pub,
    .nistp521_ecpublic_key_ssl_mb8 = fk_p521_pub,
    .nistp256_ecdh_ssl_mb8 = fk_p256_ecdh,
    .nistp384_ecdh_ssl_mb8 = fk_p384_ecdh,
    .nistp521_ecdh_ssl_mb8 = fk_p521_ecdh,
    .x25519_public_key_mb8 = fk_x25519_public_key,
    .x25519_mb8 = fk_x25519,
};

const struct tg_mbx_api *tg_mbx_fake_api(void)
{
    return &fk_api;
}

const struct tg_mbx_api *tg_mbx_fake_api_no_verify(void)
{
    return &fk_api_no_verify;
}

const struct tg_mbx_api *tg_mbx_fake_api_no_p521(void)
{
    return &fk_api_no_p521;
}

/* ---- test helper ---- */
