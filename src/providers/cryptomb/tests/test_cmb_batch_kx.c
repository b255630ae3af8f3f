/* Key-exchange batches through crypto_mb: key generation and derivation
 * (X25519, P-256/384/521), the X25519 peer values crypto_mb gets wrong, lane
 * errors and contract violations. Every test runs against the real library
 * (skipped when it cannot load, e.g. under valgrind) and against the fake;
 * results are checked with OpenSSL. Negative cases inject lane errors through
 * the fake, also on top of the real library's arithmetic (passthrough). */
#include <dlfcn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "core/tg_sysinfo.h"
#include "keyprov/tg_keyprov.h"
#include "providers/cryptomb/tg_cmb_batch.h"
#include "providers/cryptomb/tg_mbx.h"
#include "tg_mbx_backend.h"
#include "tg_mbx_fake.h"
#include "tg_test_util.h"

#define NONE TG_FALLBACK_REASON_COUNT

static const enum tg_group groups[] = {TG_GROUP_X25519, TG_GROUP_P256, TG_GROUP_P384,
                                       TG_GROUP_P521};
#define NGROUPS 4

static int group_teardown(void **state)
{
    (void)state;
    tg_mbx_unload();
    tg_mbx_fake_cleanup();
    return 0;
}

/* A failed lane's output is never released (the test prefilled 0x33). */
static void assert_unreleased(const struct tg_keyop *op)
{
    assert_int_equal(op->outlen, 0);
    for (size_t j = 0; j < sizeof(op->out); j++)
        assert_int_equal(op->out[j], 0x33); /* never written */
}

/* ---- key generation ---- */

/* The public key corresponds to the private key (OpenSSL computes it). */
static void check_kxkey(const struct tg_kxkey *k, enum tg_group g)
{
    assert_true(k->has_priv);
    assert_true(k->has_pub);
    assert_int_equal(k->group, g);
    assert_int_equal(k->privlen, tg_group_privlen(g));
    assert_int_equal(k->publen, tg_group_publen(g));
    unsigned char want[133];
    size_t wl = sizeof(want);
    EVP_PKEY *pk = NULL;
    if (g == TG_GROUP_X25519) {
        assert_int_equal(k->priv[0] & 7, 0); /* clamped, as OpenSSL stores keys */
        assert_int_equal(k->priv[31] & 0xC0, 0x40);
        pk = EVP_PKEY_new_raw_private_key_ex(NULL, "X25519", NULL, k->priv, 32);
        assert_int_equal(EVP_PKEY_get_raw_public_key(pk, want, &wl), 1);
    } else {
        EC_GROUP *eg = EC_GROUP_new_by_curve_name(g == TG_GROUP_P256   ? NID_X9_62_prime256v1
                                                  : g == TG_GROUP_P384 ? NID_secp384r1
                                                                       : NID_secp521r1);
        BIGNUM *d = BN_bin2bn(k->priv, (int)k->privlen, NULL);
        assert_false(BN_is_zero(d));
        assert_true(BN_cmp(d, EC_GROUP_get0_order(eg)) < 0);
        EC_POINT *P = EC_POINT_new(eg);
        assert_int_equal(EC_POINT_mul(eg, P, d, NULL, NULL, NULL), 1);
        wl = EC_POINT_point2oct(eg, P, POINT_CONVERSION_UNCOMPRESSED, want, sizeof(want), NULL);
        EC_POINT_free(P);
        BN_clear_free(d);
        EC_GROUP_free(eg);
    }
    EVP_PKEY_free(pk);
    assert_int_equal(wl, k->publen);
    assert_memory_equal(k->pub, want, wl);
}

static void test_keygen(void **state)
{
    tg_mbx_use_backend(state);
    struct tg_kxkey keys[TG_MBX_LANES];
    struct tg_kxkey *p[TG_MBX_LANES];
    int res[TG_MBX_LANES];
    memset(keys, 0, sizeof(keys));
    for (size_t gi = 0; gi < NGROUPS; gi++) {
        enum tg_group g = groups[gi];
        assert_true(tg_cmb_batch_group_supported(g));
        for (size_t n = 1; n <= TG_MBX_LANES; n++) {
            for (size_t i = 0; i < n; i++)
                p[i] = &keys[i];
            assert_int_equal(tg_cmb_batch_keygen(p, n, g, res), TG_OK);
            for (size_t i = 0; i < n; i++) {
                assert_int_equal(res[i], TG_OK);
                check_kxkey(&keys[i], g);
                for (size_t j = 0; j < i; j++)
                    assert_memory_not_equal(keys[i].priv, keys[j].priv, keys[i].privlen);
                /* The software twin works (fallback derive). */
                assert_non_null(tg_kxkey_sw(&keys[i]));
            }
        }
    }
    for (size_t i = 0; i < TG_MBX_LANES; i++)
        tg_kxkey_clear(&keys[i]);
}

static void test_keygen_lane_errors(void **state)
{
    tg_mbx_use_backend(state);
    tg_mbx_use_injection(state);
    struct tg_kxkey keys[TG_MBX_LANES];
    struct tg_kxkey *p[TG_MBX_LANES];
    int res[TG_MBX_LANES];
    memset(keys, 0, sizeof(keys));
    for (size_t i = 0; i < TG_MBX_LANES; i++)
        p[i] = &keys[i];
    for (size_t gi = 0; gi < NGROUPS; gi++) {
        enum tg_group g = groups[gi];
        tg_mbx_reset_knobs(state);
        tg_mbx_fake_fail_lane(g == TG_GROUP_X25519 ? TG_MBX_FAKE_X25519_PUBLIC_KEY
                                                   : TG_MBX_FAKE_EC_PUBLIC_KEY,
                              2, TG_MBX_STATUS_MISMATCH_PARAM_ERR);
        assert_int_equal(tg_cmb_batch_keygen(p, TG_MBX_LANES, g, res), TG_OK);
        for (size_t i = 0; i < TG_MBX_LANES; i++) {
            if (i == 2) {
                assert_int_equal(res[i], TG_EDEVICE);
                assert_false(keys[i].has_priv);
                assert_false(keys[i].has_pub);
            } else if (res[i] == TG_OK) {
                check_kxkey(&keys[i], g);
            } else {
                /* The fake reproduces crypto_mb's EC public-key quirk: lanes
                 * after a failed one are not stored although their status is
                 * OK. They must fail, not hand out a wrong key. */
                assert_true(i > 2 && g != TG_GROUP_X25519 && !tg_mbx_is_real(state));
                assert_int_equal(res[i], TG_EDEVICE);
                assert_false(keys[i].has_priv);
            }
        }
        if (!tg_mbx_is_real(state) && g != TG_GROUP_X25519)
            assert_int_equal(res[3], TG_EDEVICE);
    }
    /* NULL key slots; bad n. */
    p[1] = NULL;
    assert_int_equal(tg_cmb_batch_keygen(p, 3, TG_GROUP_X25519, res), TG_OK);
    assert_int_equal(res[1], TG_EINVAL);
    assert_int_equal(tg_cmb_batch_keygen(p, 9, TG_GROUP_X25519, res), TG_EINVAL);
    assert_int_equal(tg_cmb_batch_keygen(NULL, 1, TG_GROUP_X25519, res), TG_EINVAL);
    assert_int_equal(tg_cmb_batch_keygen(p, 0, TG_GROUP_X25519, res), TG_OK);
    assert_int_equal(tg_cmb_batch_keygen(p, 1, TG_GROUP_NONE, res), TG_EUNAVAIL);
    assert_int_equal(res[0], TG_EDEVICE);
    for (size_t i = 0; i < TG_MBX_LANES; i++)
        tg_kxkey_clear(&keys[i]);
}

/* ---- derivation ---- */

/* A peer share made by OpenSSL. */
static void peer_key(struct tg_kxkey *peer, enum tg_group g)
{
    struct tg_keyop op;
    struct tg_kxkey tmp;
    memset(&tmp, 0, sizeof(tmp));
    tmp.group = g;
    tg_keyop_init(&op, TG_KEYOP_KX_KEYGEN);
    op.kx = &tmp;
    assert_int_equal(tg_keyop_compute_sw(&op), TG_OK);
    memset(peer, 0, sizeof(*peer));
    assert_int_equal(tg_kxkey_set_public(peer, g, tmp.pub, tmp.publen), TG_OK);
    tg_kxkey_clear(&tmp);
}

static void derive_op(struct tg_keyop *op, struct tg_kxkey *mine, const struct tg_kxkey *peer)
{
    tg_keyop_init(op, TG_KEYOP_KX_DERIVE);
    memset(op->out, 0x33, sizeof(op->out));
    op->kx = mine;
    op->peer = peer;
}

/* The same secret as OpenSSL's derive for the same keys. */
static void check_derive(struct tg_keyop *op)
{
    struct tg_keyop sw = *op;
    assert_int_equal(tg_keyop_compute_sw(&sw), TG_OK);
    assert_int_equal(op->outlen, sw.outlen);
    assert_int_equal(op->outlen, tg_group_secretlen(op->kx->group));
    assert_memory_equal(op->out, sw.out, sw.outlen);
}

static void test_derive(void **state)
{
    tg_mbx_use_backend(state);
    struct tg_kxkey mine[TG_MBX_LANES], peers[TG_MBX_LANES];
    struct tg_kxkey *kp[TG_MBX_LANES];
    struct tg_keyop ops[TG_MBX_LANES];
    struct tg_keyop *p[TG_MBX_LANES];
    int res[TG_MBX_LANES];
    enum tg_fallback_reason why[TG_MBX_LANES];
    memset(mine, 0, sizeof(mine));
    for (size_t gi = 0; gi < NGROUPS; gi++) {
        enum tg_group g = groups[gi];
        for (size_t i = 0; i < TG_MBX_LANES; i++) {
            kp[i] = &mine[i];
            peer_key(&peers[i], g);
        }
        assert_int_equal(tg_cmb_batch_keygen(kp, TG_MBX_LANES, g, res), TG_OK);
        for (size_t n = 1; n <= TG_MBX_LANES; n++) {
            for (size_t i = 0; i < n; i++) {
                derive_op(&ops[i], &mine[(i + n) % TG_MBX_LANES], &peers[i]);
                p[i] = &ops[i];
            }
            assert_int_equal(tg_cmb_batch_derive(p, n, res, why), TG_OK);
            for (size_t i = 0; i < n; i++) {
                assert_int_equal(res[i], TG_OK);
                assert_int_equal(why[i], NONE);
                check_derive(&ops[i]);
            }
        }
        for (size_t i = 0; i < TG_MBX_LANES; i++) {
            tg_kxkey_clear(&mine[i]);
            tg_kxkey_clear(&peers[i]);
        }
    }
}

/* Little-endian u-coordinates of X25519 points of small order (and
 * non-canonical encodings of them): the shared secret is all zero. */
static const char *const low_order[] = {
    "0000000000000000000000000000000000000000000000000000000000000000", /* 0 */
    "0100000000000000000000000000000000000000000000000000000000000000", /* 1 */
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", /* p - 1 */
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", /* p */
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", /* p + 1 */
    "0000000000000000000000000000000000000000000000000000000000000080", /* 0, top bit */
};

static void hex32(const char *hex, unsigned char *out)
{
    for (size_t i = 0; i < 32; i++) {
        char b[3] = {hex[2 * i], hex[2 * i + 1], 0};
        out[i] = (unsigned char)strtoul(b, NULL, 16);
    }
}

static void test_x25519_low_order(void **state)
{
    tg_mbx_use_backend(state);
    struct tg_kxkey mine[TG_MBX_LANES], peers[TG_MBX_LANES];
    struct tg_kxkey *kp[TG_MBX_LANES];
    struct tg_keyop ops[TG_MBX_LANES];
    struct tg_keyop *p[TG_MBX_LANES];
    int res[TG_MBX_LANES];
    enum tg_fallback_reason why[TG_MBX_LANES];
    memset(mine, 0, sizeof(mine));
    for (size_t i = 0; i < TG_MBX_LANES; i++)
        kp[i] = &mine[i];
    assert_int_equal(tg_cmb_batch_keygen(kp, TG_MBX_LANES, TG_GROUP_X25519, res), TG_OK);
    for (size_t bad = 0; bad < TG_ARRAY_LEN(low_order); bad++) {
        size_t lane = bad % TG_MBX_LANES;
        for (size_t i = 0; i < TG_MBX_LANES; i++) {
            peer_key(&peers[i], TG_GROUP_X25519);
            derive_op(&ops[i], &mine[i], &peers[i]);
            p[i] = &ops[i];
        }
        unsigned char u[32];
        hex32(low_order[bad], u);
        tg_kxkey_clear(&peers[lane]);
        assert_int_equal(tg_kxkey_set_public(&peers[lane], TG_GROUP_X25519, u, 32), TG_OK);
        assert_int_equal(tg_cmb_batch_derive(p, TG_MBX_LANES, res, why), TG_OK);
        for (size_t i = 0; i < TG_MBX_LANES; i++) {
            if (i == lane) {
                /* Refused, as OpenSSL refuses it; not a fallback. */
                assert_int_equal(res[i], TG_EPROTO);
                assert_int_equal(why[i], NONE);
                assert_unreleased(&ops[i]);
                struct tg_keyop sw = ops[i];
                assert_int_equal(tg_keyop_compute_sw(&sw), TG_EPROTO);
                ERR_clear_error();
            } else {
                assert_int_equal(res[i], TG_OK);
                check_derive(&ops[i]);
            }
        }
        for (size_t i = 0; i < TG_MBX_LANES; i++)
            tg_kxkey_clear(&peers[i]);
    }
    /* Top bit set: masked as OpenSSL masks it. */
    for (int j = 0; j < 4; j++) {
        unsigned char u[32];
        RAND_bytes(u, 32);
        u[31] |= 0x80;
        assert_int_equal(tg_kxkey_set_public(&peers[0], TG_GROUP_X25519, u, 32), TG_OK);
        derive_op(&ops[0], &mine[j], &peers[0]);
        assert_int_equal(tg_cmb_batch_derive(p, 1, res, why), TG_OK);
        assert_int_equal(res[0], TG_OK);
        check_derive(&ops[0]);
        tg_kxkey_clear(&peers[0]);
    }
    for (size_t i = 0; i < TG_MBX_LANES; i++)
        tg_kxkey_clear(&mine[i]);
}

/* Structured peer values on which crypto_mb 1.0.14's X25519 is wrong
 * (found by comparison with OpenSSL): they must never yield a wrong secret.
 * They go to software (TG_EDEVICE), which gives OpenSSL's answer. */
static const char *const structured[] = {
    "ffffffffffffffffffff1f000000000000000000000000000000000000000000", /* 2^85 - 1 */
    "feffffffffffffffffff1f000000000000000000000000000000000000000000", /* 2^85 - 2 */
    "ffffffffffffffffffffff1f0000000000000000000000000000000000000000", /* 2^93 - 1 */
    "e0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", /* 2^255 - 2^5 */
    "00fcffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", /* 2^255 - 2^10 */
    "a9fdffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", /* p - 580 */
    "7cfaffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", /* p - 1393 */
    "f6ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", /* p + 9 */
    "0900000000000000000000000000000000000000000000000000000000000080", /* 9, top bit */
};

static void test_x25519_structured_inputs(void **state)
{
    tg_mbx_use_backend(state);
    struct tg_kxkey mine[TG_MBX_LANES], peers[TG_MBX_LANES];
    struct tg_kxkey *kp[TG_MBX_LANES];
    struct tg_keyop ops[TG_MBX_LANES];
    struct tg_keyop *p[TG_MBX_LANES];
    int res[TG_MBX_LANES];
    enum tg_fallback_reason why[TG_MBX_LANES];
    memset(mine, 0, sizeof(mine));
    memset(peers, 0, sizeof(peers));
    for (size_t i = 0; i < TG_MBX_LANES; i++) {
        kp[i] = &mine[i];
        p[i] = &ops[i];
    }
    assert_int_equal(tg_cmb_batch_keygen(kp, TG_MBX_LANES, TG_GROUP_X25519, res), TG_OK);
    for (size_t j = 0; j < TG_ARRAY_LEN(structured); j += TG_MBX_LANES) {
        size_t n = TG_ARRAY_LEN(structured) - j < TG_MBX_LANES ? TG_ARRAY_LEN(structured) - j
                                                               : TG_MBX_LANES;
        for (size_t i = 0; i < n; i++) {
            unsigned char u[32];
            hex32(structured[j + i], u);
            assert_int_equal(tg_kxkey_set_public(&peers[i], TG_GROUP_X25519, u, 32), TG_OK);
            derive_op(&ops[i], &mine[i], &peers[i]);
        }
        assert_int_equal(tg_cmb_batch_derive(p, n, res, why), TG_OK);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(res[i], TG_EDEVICE);
            assert_int_equal(why[i], TG_FALLBACK_LANE_ERROR);
            assert_unreleased(&ops[i]);
            struct tg_keyop sw = ops[i];
            assert_int_equal(tg_keyop_compute_sw(&sw), TG_OK);
            tg_kxkey_clear(&peers[i]);
        }
    }
    for (size_t i = 0; i < TG_MBX_LANES; i++)
        tg_kxkey_clear(&mine[i]);
}

static void test_derive_lane_errors_and_invalid(void **state)
{
    tg_mbx_use_backend(state);
    tg_mbx_use_injection(state);
    struct tg_kxkey mine[TG_MBX_LANES], peers[TG_MBX_LANES];
    struct tg_kxkey *kp[TG_MBX_LANES];
    struct tg_keyop ops[TG_MBX_LANES];
    struct tg_keyop *p[TG_MBX_LANES];
    int res[TG_MBX_LANES];
    enum tg_fallback_reason why[TG_MBX_LANES];
    memset(mine, 0, sizeof(mine));
    for (size_t gi = 0; gi < NGROUPS; gi++) {
        enum tg_group g = groups[gi];
        tg_mbx_reset_knobs(state);
        for (size_t i = 0; i < TG_MBX_LANES; i++) {
            kp[i] = &mine[i];
            peer_key(&peers[i], g);
        }
        assert_int_equal(tg_cmb_batch_keygen(kp, TG_MBX_LANES, g, res), TG_OK);
        unsigned bad = (unsigned)(gi * 3 + 1) % TG_MBX_LANES;
        tg_mbx_fake_fail_lane(g == TG_GROUP_X25519 ? TG_MBX_FAKE_X25519 : TG_MBX_FAKE_ECDH, bad,
                              TG_MBX_STATUS_MISMATCH_PARAM_ERR);
        for (size_t i = 0; i < TG_MBX_LANES; i++) {
            derive_op(&ops[i], &mine[i], &peers[i]);
            p[i] = &ops[i];
        }
        assert_int_equal(tg_cmb_batch_derive(p, TG_MBX_LANES, res, why), TG_OK);
        for (unsigned i = 0; i < TG_MBX_LANES; i++) {
            if (i == bad) {
                assert_int_equal(res[i], TG_EDEVICE);
                assert_int_equal(why[i], TG_FALLBACK_LANE_ERROR);
                assert_unreleased(&ops[i]);
            } else {
                assert_int_equal(res[i], TG_OK);
                check_derive(&ops[i]);
            }
        }
        assert_int_equal(tg_mbx_fake_stats()
                             ->calls[g == TG_GROUP_X25519 ? TG_MBX_FAKE_X25519 : TG_MBX_FAKE_ECDH],
                         1);
        /* Contract violations: other group, no private key, bad lengths. */
        tg_mbx_reset_knobs(state);
        struct tg_kxkey other, nopriv = mine[2];
        peer_key(&other, g == TG_GROUP_P256 ? TG_GROUP_P384 : TG_GROUP_P256);
        nopriv.has_priv = false;
        nopriv.sw = NULL;
        struct tg_kxkey badlen = peers[3];
        badlen.publen = 31;
        badlen.sw = NULL;
        for (size_t i = 0; i < 5; i++)
            derive_op(&ops[i], &mine[i], &peers[i]);
        ops[1].peer = &other;
        ops[2].kx = &nopriv;
        ops[3].peer = &badlen;
        ops[4].type = TG_KEYOP_KX_KEYGEN;
        assert_int_equal(tg_cmb_batch_derive(p, 5, res, why), TG_OK);
        assert_int_equal(res[0], TG_OK);
        for (size_t i = 1; i < 5; i++) {
            assert_int_equal(res[i], TG_EINVAL);
            assert_unreleased(&ops[i]);
        }
        tg_kxkey_clear(&other);
        for (size_t i = 0; i < TG_MBX_LANES; i++) {
            tg_kxkey_clear(&mine[i]);
            tg_kxkey_clear(&peers[i]);
        }
    }
    assert_int_equal(tg_cmb_batch_derive(p, 9, res, why), TG_EINVAL);
    assert_int_equal(tg_cmb_batch_derive(p, 1, res, NULL), TG_EINVAL);
}

/* crypto_mb may leave a lane unwritten while reporting success: such a lane
 * must fail (software finishes it), never yield a key or secret made of
 * whatever the buffer held before. Keygen and derive, every group; an
 * unwritten X25519 secret is a lane error, not the peer's fault (the peer
 * share is honest). */
static void test_unwritten_lanes(void **state)
{
    tg_mbx_use_backend(state);
    tg_mbx_use_injection(state);
    struct tg_kxkey mine[TG_MBX_LANES], peers[TG_MBX_LANES];
    struct tg_kxkey *kp[TG_MBX_LANES];
    struct tg_keyop ops[TG_MBX_LANES];
    struct tg_keyop *p[TG_MBX_LANES];
    int res[TG_MBX_LANES];
    enum tg_fallback_reason why[TG_MBX_LANES];
    memset(mine, 0, sizeof(mine));
    for (size_t gi = 0; gi < NGROUPS; gi++) {
        enum tg_group g = groups[gi];
        bool x = g == TG_GROUP_X25519;
        unsigned bad = (unsigned)(gi * 3 + 2) % TG_MBX_LANES;
        /* Keygen: a stale public key in the slot must not survive. */
        tg_mbx_reset_knobs(state);
        tg_mbx_fake_skip_lane(x ? TG_MBX_FAKE_X25519_PUBLIC_KEY : TG_MBX_FAKE_EC_PUBLIC_KEY, bad);
        for (size_t i = 0; i < TG_MBX_LANES; i++)
            kp[i] = &mine[i];
        assert_int_equal(tg_cmb_batch_keygen(kp, TG_MBX_LANES, g, res), TG_OK);
        for (size_t i = 0; i < TG_MBX_LANES; i++) {
            if (i == bad) {
                assert_int_equal(res[i], TG_EDEVICE);
                assert_false(mine[i].has_priv);
                assert_false(mine[i].has_pub);
            } else {
                assert_int_equal(res[i], TG_OK);
                check_kxkey(&mine[i], g);
            }
        }
        /* Derive: fresh keys, one lane left unwritten. */
        tg_mbx_reset_knobs(state);
        assert_int_equal(tg_cmb_batch_keygen(kp, TG_MBX_LANES, g, res), TG_OK);
        tg_mbx_fake_skip_lane(x ? TG_MBX_FAKE_X25519 : TG_MBX_FAKE_ECDH, bad);
        for (size_t i = 0; i < TG_MBX_LANES; i++) {
            assert_int_equal(res[i], TG_OK);
            peer_key(&peers[i], g);
            derive_op(&ops[i], &mine[i], &peers[i]);
            p[i] = &ops[i];
        }
        assert_int_equal(tg_cmb_batch_derive(p, TG_MBX_LANES, res, why), TG_OK);
        for (size_t i = 0; i < TG_MBX_LANES; i++) {
            if (i == bad) {
                assert_int_equal(res[i], TG_EDEVICE);
                assert_int_equal(why[i], TG_FALLBACK_LANE_ERROR);
                assert_unreleased(&ops[i]);
                struct tg_keyop sw = ops[i];
                assert_int_equal(tg_keyop_compute_sw(&sw), TG_OK); /* software finishes it */
            } else {
                assert_int_equal(res[i], TG_OK);
                check_derive(&ops[i]);
            }
        }
        for (size_t i = 0; i < TG_MBX_LANES; i++) {
            tg_kxkey_clear(&mine[i]);
            tg_kxkey_clear(&peers[i]);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TG_MBX_BOTH(test_keygen),
        TG_MBX_BOTH(test_keygen_lane_errors),
        TG_MBX_BOTH(test_derive),
        TG_MBX_BOTH(test_x25519_low_order),
        TG_MBX_BOTH(test_x25519_structured_inputs),
        TG_MBX_BOTH(test_derive_lane_errors_and_invalid),
        TG_MBX_BOTH(test_unwritten_lanes),
    };
    return cmocka_run_group_tests(tests, NULL, group_teardown);
}
