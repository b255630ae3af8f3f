/* Signature batches through crypto_mb: RSA (2048/3072/4096, PKCS#1 v1.5 and
 * PSS, fault check), ECDSA (P-256/384/521, fault check), unwritten lanes,
 * and what is available when (key exchange batches: test_cmb_batch_kx.c).
 * Every test runs against the real library (skipped when it cannot load,
 * e.g. under valgrind) and against the fake; results are checked with
 * OpenSSL. Negative cases inject lane errors and faults through the fake,
 * also on top of the real library's arithmetic (passthrough). */
#include <dlfcn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <stdlib.h>
#include <string.h>

#include "core/tg_sysinfo.h"
#include "keyprov/tg_keyprov.h"
#include "keyprov/tg_rsa_pad.h"
#include "providers/cryptomb/tg_cmb_batch.h"
#include "providers/cryptomb/tg_mbx.h"
#include "tg_mbx_backend.h"
#include "tg_mbx_fake.h"
#include "tg_test_util.h"

#define NONE TG_FALLBACK_REASON_COUNT

/* The per-lane fault check: every lane, no lane. */
static const bool CHECK_ALL[TG_MBX_LANES] = {true, true, true, true, true, true, true, true};
static const bool CHECK_NONE[TG_MBX_LANES] = {false};

/* ---- fixtures ---- */

static const int rsa_sizes[] = {2048, 3072, 4096};
#define NRSA_SIZES 3
#define KEYS_PER   3
static struct tg_pkey *rsa[NRSA_SIZES][KEYS_PER];
static size_t nrsa_sizes; /* sizes generated (fewer under valgrind) */
static struct tg_pkey *rsa_e3, *rsa_unbal, *rsa_2049;

static const char *const curve_names[] = {"P-256", "P-384", "P-521"};
#define NCURVES 3
static struct tg_pkey *ec[NCURVES][KEYS_PER];

static bool slow_env(void)
{
    const char *p = getenv("LD_PRELOAD");
    return (p != NULL && strstr(p, "vgpreload") != NULL) || getenv("TG_TEST_QUICK") != NULL;
}

static struct tg_pkey *wrap(EVP_PKEY *evp)
{
    struct tg_pkey *k = NULL;
    char why[256];
    if (evp == NULL || tg_pkey_from_evp(evp, &k, why, sizeof(why)) != TG_OK)
        k = NULL;
    EVP_PKEY_free(evp);
    return k;
}

static int group_setup(void **state)
{
    (void)state;
    nrsa_sizes = slow_env() ? 1 : NRSA_SIZES;
    for (size_t s = 0; s < nrsa_sizes; s++) {
        for (size_t i = 0; i < KEYS_PER; i++) {
            rsa[s][i] = wrap(tg_test_rsa_key(rsa_sizes[s] / 2, rsa_sizes[s] / 2, 65537));
            if (rsa[s][i] == NULL)
                return -1;
        }
    }
    rsa_e3 = wrap(tg_test_rsa_key(1024, 1024, 3));
    rsa_unbal = wrap(tg_test_rsa_key(1048, 1000, 65537));
    rsa_2049 = wrap(tg_test_rsa_key(1025, 1024, 65537));
    if (rsa_e3 == NULL || rsa_unbal == NULL || rsa_2049 == NULL || rsa_e3->bits != 2048 ||
        rsa_unbal->bits != 2048 || rsa_2049->bits != 2049)
        return -1;
    for (size_t c = 0; c < NCURVES; c++) {
        for (size_t i = 0; i < KEYS_PER; i++) {
            ec[c][i] = wrap(EVP_EC_gen(curve_names[c]));
            if (ec[c][i] == NULL)
                return -1;
        }
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (size_t s = 0; s < NRSA_SIZES; s++)
        for (size_t i = 0; i < KEYS_PER; i++)
            tg_pkey_unref(rsa[s][i]);
    for (size_t c = 0; c < NCURVES; c++)
        for (size_t i = 0; i < KEYS_PER; i++)
            tg_pkey_unref(ec[c][i]);
    tg_pkey_unref(rsa_e3);
    tg_pkey_unref(rsa_unbal);
    tg_pkey_unref(rsa_2049);
    tg_mbx_unload();
    tg_mbx_fake_cleanup();
    return 0;
}

/* ---- RSA helpers ---- */

#define SALT_DIGEST (-100)
#define SALT_MAX    (-101)

struct rsa_case {
    int pad;
    const char *md, *mgf1;
    int salt;
};
static const struct rsa_case rsa_cases[] = {
    {TG_RSA_PAD_PKCS1, "SHA256", NULL, 0},
    {TG_RSA_PAD_PSS, "SHA256", "SHA256", SALT_DIGEST},
    {TG_RSA_PAD_PKCS1, "SHA384", NULL, 0},
    {TG_RSA_PAD_PSS, "SHA384", "SHA384", 0},
    {TG_RSA_PAD_PKCS1, "SHA512", NULL, 0},
    {TG_RSA_PAD_PSS, "SHA512", "SHA1", SALT_MAX},
    {TG_RSA_PAD_PKCS1, "SHA1", NULL, 0},
    {TG_RSA_PAD_PKCS1, "SHA224", NULL, 0},
    {TG_RSA_PAD_PSS, "SHA256", "SHA256", SALT_MAX},
};

static void rsa_op(struct tg_keyop *op, struct tg_pkey *k, const struct rsa_case *c)
{
    tg_keyop_init(op, TG_KEYOP_RSA_SIGN);
    memset(op->out, 0x33, sizeof(op->out));
    op->pkey = k;
    op->rsa_padding = c->pad;
    op->md = EVP_get_digestbyname(c->md);
    op->mgf1_md = c->mgf1 ? EVP_get_digestbyname(c->mgf1) : NULL;
    int hlen = EVP_MD_get_size(op->md);
    op->pss_saltlen = c->salt == SALT_DIGEST ? hlen
                      : c->salt == SALT_MAX  ? tg_rsa_pad_pss_max_saltlen(k->bits, op->md)
                                             : c->salt;
    op->inlen = (size_t)hlen;
    assert_int_equal(RAND_bytes(op->in, hlen), 1);
}

/* OpenSSL's verdict on op->out; for PKCS#1 v1.5 also byte-identical to
 * OpenSSL's own signature (the scheme is deterministic). */
static int rsa_verify(const struct tg_keyop *op)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, op->pkey->pub, NULL);
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, op->rsa_padding), 1);
    assert_int_equal(EVP_PKEY_CTX_set_signature_md(ctx, op->md), 1);
    if (op->rsa_padding == TG_RSA_PAD_PSS) {
        assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, op->mgf1_md ? op->mgf1_md : op->md), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, op->pss_saltlen), 1);
    }
    int rc = EVP_PKEY_verify(ctx, op->out, op->outlen, op->in, op->inlen);
    EVP_PKEY_CTX_free(ctx);
    ERR_clear_error();
    if (rc == 1 && op->rsa_padding == TG_RSA_PAD_PKCS1) {
        struct tg_keyop sw = *op;
        assert_int_equal(tg_keyop_compute_sw(&sw), TG_OK);
        assert_int_equal(sw.outlen, op->outlen);
        assert_memory_equal(sw.out, op->out, op->outlen);
    }
    return rc;
}

static void assert_unreleased(const struct tg_keyop *op)
{
    assert_int_equal(op->outlen, 0);
    for (size_t j = 0; j < sizeof(op->out); j++)
        assert_int_equal(op->out[j], 0x33); /* never written */
}

/* ---- RSA ---- */

static void test_rsa_sign_batches(void **state)
{
    tg_mbx_use_backend(state);
    struct tg_keyop ops[TG_MBX_LANES];
    struct tg_keyop *p[TG_MBX_LANES];
    int res[TG_MBX_LANES];
    enum tg_fallback_reason why[TG_MBX_LANES];
    size_t ci = 0;
    for (size_t s = 0; s < nrsa_sizes; s++) {
        size_t k = (size_t)rsa_sizes[s] / 8;
        for (size_t n = 1; n <= TG_MBX_LANES; n++) {
            if (slow_env() && n != 1 && n != 3 && n != 8)
                continue;
            bool fault_check = n % 2 == 1;
            for (size_t i = 0; i < n; i++) {
                /* Different keys of one size share a batch. */
                rsa_op(&ops[i], rsa[s][(i + n) % KEYS_PER],
                       &rsa_cases[ci++ % TG_ARRAY_LEN(rsa_cases)]);
                p[i] = &ops[i];
            }
            assert_int_equal(
                tg_cmb_batch_rsa_sign(p, n, res, why, fault_check ? CHECK_ALL : CHECK_NONE), TG_OK);
            for (size_t i = 0; i < n; i++) {
                assert_int_equal(res[i], TG_OK);
                assert_int_equal(why[i], NONE);
                assert_int_equal(ops[i].outlen, k);
                assert_int_equal(rsa_verify(&ops[i]), 1);
            }
        }
    }
}

static void test_rsa_lane_error_each_position(void **state)
{
    tg_mbx_use_backend(state);
    tg_mbx_use_injection(state);
    struct tg_keyop ops[TG_MBX_LANES];
    struct tg_keyop *p[TG_MBX_LANES];
    int res[TG_MBX_LANES];
    enum tg_fallback_reason why[TG_MBX_LANES];
    for (unsigned bad = 0; bad < TG_MBX_LANES; bad++) {
        tg_mbx_reset_knobs(state);
        tg_mbx_fake_fail_lane(TG_MBX_FAKE_RSA_PRIVATE_CRT, bad, TG_MBX_STATUS_MISMATCH_PARAM_ERR);
        for (size_t i = 0; i < TG_MBX_LANES; i++) {
            rsa_op(&ops[i], rsa[0][i % KEYS_PER], &rsa_cases[i % TG_ARRAY_LEN(rsa_cases)]);
            p[i] = &ops[i];
        }
        assert_int_equal(tg_cmb_batch_rsa_sign(p, TG_MBX_LANES, res, why, CHECK_ALL), TG_OK);
        for (unsigned i = 0; i < TG_MBX_LANES; i++) {
            if (i == bad) {
                assert_int_equal(res[i], TG_EDEVICE);
                assert_int_equal(why[i], TG_FALLBACK_LANE_ERROR);
                assert_unreleased(&ops[i]);
            } else {
                assert_int_equal(res[i], TG_OK);
                assert_int_equal(rsa_verify(&ops[i]), 1);
            }
        }
        /* One private-op call and one verification call for the batch. */
        assert_int_equal(tg_mbx_fake_stats()->calls[TG_MBX_FAKE_RSA_PRIVATE_CRT], 1);
        assert_int_equal(tg_mbx_fake_stats()->lanes[TG_MBX_FAKE_RSA_PRIVATE_CRT], 8);
        assert_int_equal(tg_mbx_fake_stats()->calls[TG_MBX_FAKE_RSA_PUBLIC], 1);
        assert_int_equal(tg_mbx_fake_stats()->lanes[TG_MBX_FAKE_RSA_PUBLIC], 7);
    }
    /* A failure injected on an empty lane changes nothing. */
    tg_mbx_reset_knobs(state);
    tg_mbx_fake_fail_lane(TG_MBX_FAKE_RSA_PRIVATE_CRT, 6, TG_MBX_STATUS_MISMATCH_PARAM_ERR);
    for (size_t i = 0; i < 5; i++)
        rsa_op(&ops[i], rsa[0][0], &rsa_cases[0]);
    assert_int_equal(tg_cmb_batch_rsa_sign(p, 5, res, why, CHECK_NONE), TG_OK);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(res[i], TG_OK);
    assert_int_equal(tg_mbx_fake_stats()->calls[TG_MBX_FAKE_RSA_PUBLIC], 0);
}

static void test_rsa_fault_check(void **state)
{
    tg_mbx_use_backend(state);
    tg_mbx_use_injection(state);
    struct tg_keyop ops[TG_MBX_LANES];
    struct tg_keyop *p[TG_MBX_LANES];
    int res[TG_MBX_LANES];
    enum tg_fallback_reason why[TG_MBX_LANES];
    for (unsigned bad = 0; bad < TG_MBX_LANES; bad += 3) {
        tg_mbx_fake_corrupt_lane(bad);
        for (size_t i = 0; i < TG_MBX_LANES; i++) {
            rsa_op(&ops[i], rsa[0][i % KEYS_PER], &rsa_cases[i % TG_ARRAY_LEN(rsa_cases)]);
            p[i] = &ops[i];
        }
        assert_int_equal(tg_cmb_batch_rsa_sign(p, TG_MBX_LANES, res, why, CHECK_ALL), TG_OK);
        for (unsigned i = 0; i < TG_MBX_LANES; i++) {
            if (i == bad) {
                /* The faulty signature never leaves. */
                assert_int_equal(res[i], TG_EDEVICE);
                assert_int_equal(why[i], TG_FALLBACK_FAULT_CHECK);
                assert_unreleased(&ops[i]);
            } else {
                assert_int_equal(res[i], TG_OK);
                assert_int_equal(rsa_verify(&ops[i]), 1);
            }
        }
        /* Without the check the corrupted signature would go out. */
        for (size_t i = 0; i < TG_MBX_LANES; i++)
            rsa_op(&ops[i], rsa[0][i % KEYS_PER], &rsa_cases[0]);
        assert_int_equal(tg_cmb_batch_rsa_sign(p, TG_MBX_LANES, res, why, CHECK_NONE), TG_OK);
        assert_int_equal(res[bad], TG_OK);
        assert_int_equal(rsa_verify(&ops[bad]), 0);
        tg_mbx_reset_knobs(state);
    }
    /* The verification call failing for a lane: not released either. */
    tg_mbx_fake_fail_lane(TG_MBX_FAKE_RSA_PUBLIC, 2, TG_MBX_STATUS_MISMATCH_PARAM_ERR);
    for (size_t i = 0; i < 4; i++)
        rsa_op(&ops[i], rsa[0][i % KEYS_PER], &rsa_cases[i]);
    assert_int_equal(tg_cmb_batch_rsa_sign(p, 4, res, why, CHECK_ALL), TG_OK);
    assert_int_equal(res[2], TG_EDEVICE);
    assert_int_equal(why[2], TG_FALLBACK_LANE_ERROR);
    assert_unreleased(&ops[2]);
    assert_int_equal(res[3], TG_OK);
}

static void test_rsa_special_keys(void **state)
{
    tg_mbx_use_backend(state);
    tg_mbx_use_injection(state);
    struct tg_keyop ops[4];
    struct tg_keyop *p[4] = {&ops[0], &ops[1], &ops[2], &ops[3]};
    int res[4];
    enum tg_fallback_reason why[4];
    char reason[256];

    /* e = 3: crypto_mb's public op is for 65537 only, so the fault check of
     * that lane runs in scalar OpenSSL; it still catches faults. */
    assert_int_equal(tg_cmb_batch_key_supported(rsa_e3, reason, sizeof(reason)), TG_OK);
    rsa_op(&ops[0], rsa[0][0], &rsa_cases[0]);
    rsa_op(&ops[1], rsa_e3, &rsa_cases[1]);
    rsa_op(&ops[2], rsa_e3, &rsa_cases[2]);
    rsa_op(&ops[3], rsa[0][1], &rsa_cases[3]);
    tg_mbx_fake_corrupt_lane(2);
    assert_int_equal(tg_cmb_batch_rsa_sign(p, 4, res, why, CHECK_ALL), TG_OK);
    assert_int_equal(res[0], TG_OK);
    assert_int_equal(res[1], TG_OK);
    assert_int_equal(rsa_verify(&ops[1]), 1);
    assert_int_equal(res[2], TG_EDEVICE);
    assert_int_equal(why[2], TG_FALLBACK_FAULT_CHECK);
    assert_int_equal(res[3], TG_OK);
    assert_int_equal(tg_mbx_fake_stats()->lanes[TG_MBX_FAKE_RSA_PUBLIC], 2);

    /* Primes of 1048 and 1000 bits: not for crypto_mb; such a lane is never
     * sent and goes to software. */
    assert_int_equal(tg_cmb_batch_key_supported(rsa_unbal, reason, sizeof(reason)), TG_EUNAVAIL);
    assert_non_null(strstr(reason, "primes of 1048 and 1000 bits"));
    tg_mbx_reset_knobs(state);
    rsa_op(&ops[0], rsa[0][0], &rsa_cases[0]);
    rsa_op(&ops[1], rsa_unbal, &rsa_cases[1]);
    assert_int_equal(tg_cmb_batch_rsa_sign(p, 2, res, why, CHECK_ALL), TG_OK);
    assert_int_equal(res[0], TG_OK);
    assert_int_equal(res[1], TG_EDEVICE);
    assert_int_equal(why[1], TG_FALLBACK_LANE_ERROR);
    assert_unreleased(&ops[1]);
    assert_int_equal(tg_mbx_fake_stats()->lanes[TG_MBX_FAKE_RSA_PRIVATE_CRT], 1);

    /* A size crypto_mb does not have: the whole batch is unavailable. */
    assert_int_equal(tg_cmb_batch_key_supported(rsa_2049, reason, sizeof(reason)), TG_EUNAVAIL);
    assert_non_null(strstr(reason, "RSA-2049"));
    rsa_op(&ops[0], rsa_2049, &rsa_cases[0]);
    assert_int_equal(tg_cmb_batch_rsa_sign(p, 1, res, why, CHECK_ALL), TG_EUNAVAIL);
    assert_int_equal(res[0], TG_EDEVICE);
    assert_int_equal(why[0], TG_FALLBACK_DEVICE_ERROR);
}

static void test_rsa_invalid(void **state)
{
    tg_mbx_use_backend(state);
    struct tg_keyop ops[TG_MBX_LANES + 1];
    struct tg_keyop *p[TG_MBX_LANES + 1];
    int res[TG_MBX_LANES + 1];
    enum tg_fallback_reason why[TG_MBX_LANES + 1];
    for (size_t i = 0; i <= TG_MBX_LANES; i++) {
        rsa_op(&ops[i], rsa[0][0], &rsa_cases[0]);
        p[i] = &ops[i];
    }
    assert_int_equal(tg_cmb_batch_rsa_sign(p, 0, res, why, CHECK_ALL), TG_OK);
    assert_int_equal(tg_cmb_batch_rsa_sign(p, TG_MBX_LANES + 1, res, why, CHECK_ALL), TG_EINVAL);
    assert_int_equal(tg_cmb_batch_rsa_sign(NULL, 1, res, why, CHECK_ALL), TG_EINVAL);
    assert_int_equal(tg_cmb_batch_rsa_sign(p, 1, NULL, why, CHECK_ALL), TG_EINVAL);
    assert_int_equal(tg_cmb_batch_rsa_sign(p, 1, res, NULL, CHECK_ALL), TG_EINVAL);

    /* Per-lane contract violations fail that lane only, without overflow. */
    ops[1].inlen = 31;                    /* SHA-256 digest must be 32 bytes */
    ops[2].inlen = sizeof(ops[2].in) + 1; /* beyond the input buffer */
    ops[3].rsa_padding = 3;               /* not PKCS#1 / PSS */
    rsa_op(&ops[4], rsa[0][0], &rsa_cases[1]);
    ops[4].pss_saltlen = 300;          /* larger than the modulus allows */
    ops[5].type = TG_KEYOP_ECDSA_SIGN; /* not an RSA op */
    p[6] = NULL;
    if (nrsa_sizes > 1)
        ops[7].pkey = rsa[1][0]; /* 3072 in a 2048 batch */
    else
        ops[7].pkey = ec[0][0];
    assert_int_equal(tg_cmb_batch_rsa_sign(p, TG_MBX_LANES, res, why, CHECK_ALL), TG_OK);
    assert_int_equal(res[0], TG_OK);
    assert_int_equal(rsa_verify(&ops[0]), 1);
    for (size_t i = 1; i < TG_MBX_LANES; i++) {
        assert_int_equal(res[i], TG_EINVAL);
        assert_int_equal(why[i], NONE);
        if (p[i] != NULL)
            assert_unreleased(&ops[i]);
    }
    p[6] = &ops[6];

    /* A digest without a DigestInfo here: software finishes it. */
    EVP_MD *sha3 = EVP_MD_fetch(NULL, "SHA3-256", NULL);
    rsa_op(&ops[0], rsa[0][0], &rsa_cases[0]);
    ops[0].md = sha3;
    rsa_op(&ops[1], rsa[0][0], &rsa_cases[0]);
    assert_int_equal(tg_cmb_batch_rsa_sign(p, 2, res, why, CHECK_ALL), TG_OK);
    assert_int_equal(res[0], TG_EDEVICE);
    assert_int_equal(why[0], TG_FALLBACK_LANE_ERROR);
    assert_int_equal(res[1], TG_OK);
    EVP_MD_free(sha3);
}

/* ---- ECDSA ---- */

static void ecdsa_op(struct tg_keyop *op, struct tg_pkey *k, size_t dlen)
{
    tg_keyop_init(op, TG_KEYOP_ECDSA_SIGN);
    memset(op->out, 0x33, sizeof(op->out));
    op->pkey = k;
    op->inlen = dlen;
    assert_int_equal(RAND_bytes(op->in, (int)dlen), 1);
}

static int ecdsa_verify(const struct tg_keyop *op)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, op->pkey->pub, NULL);
    assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
    int rc = EVP_PKEY_verify(ctx, op->out, op->outlen, op->in, op->inlen);
    EVP_PKEY_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

static void test_ecdsa_batches(void **state)
{
    tg_mbx_use_backend(state);
    static const size_t dlens[] = {32, 48, 64, 20, 28};
    struct tg_keyop ops[TG_MBX_LANES];
    struct tg_keyop *p[TG_MBX_LANES];
    int res[TG_MBX_LANES];
    enum tg_fallback_reason why[TG_MBX_LANES];
    size_t di = 0;
    for (size_t c = 0; c < NCURVES; c++) {
        for (size_t n = 1; n <= TG_MBX_LANES; n++) {
            for (size_t i = 0; i < n; i++) {
                /* Digests shorter and longer than the order (truncation). */
                ecdsa_op(&ops[i], ec[c][(i + n) % KEYS_PER], dlens[di++ % TG_ARRAY_LEN(dlens)]);
                p[i] = &ops[i];
            }
            assert_int_equal(tg_cmb_batch_ecdsa_sign(p, n, res, why, CHECK_ALL), TG_OK);
            for (size_t i = 0; i < n; i++) {
                assert_int_equal(res[i], TG_OK);
                assert_int_equal(why[i], NONE);
                assert_int_equal(ecdsa_verify(&ops[i]), 1);
            }
        }
    }
}

static void test_ecdsa_digest_edges(void **state)
{
    tg_mbx_use_backend(state);
    struct tg_keyop ops[6];
    struct tg_keyop *p[6];
    int res[6];
    enum tg_fallback_reason why[6];
    for (size_t c = 0; c < NCURVES; c++) {
        for (size_t i = 0; i < 6; i++) {
            ecdsa_op(&ops[i], ec[c][0], 64);
            p[i] = &ops[i];
        }
        /* e >= n: all-ones digests, 64 and order-size bytes (reduced mod n). */
        memset(ops[0].in, 0xff, 64);
        memset(ops[1].in, 0xff, 64);
        ops[1].inlen = (size_t)(c == 0 ? 32 : c == 1 ? 48 : 64);
        /* e == 0: crypto_mb refuses it, software signs it. */
        memset(ops[2].in, 0, 64);
        ops[2].inlen = 32;
        ops[3].inlen = 0;
        /* One (non-zero) byte; 33 bytes (one past P-256's order size). */
        ops[4].inlen = 1;
        ops[4].in[0] |= 1;
        ops[5].inlen = 33;
        assert_int_equal(tg_cmb_batch_ecdsa_sign(p, 6, res, why, CHECK_ALL), TG_OK);
        for (size_t i = 0; i < 6; i++) {
            if (i == 2 || i == 3) {
                assert_int_equal(res[i], TG_EDEVICE);
                assert_int_equal(why[i], TG_FALLBACK_LANE_ERROR);
                assert_unreleased(&ops[i]);
                /* ...and software does sign it. */
                struct tg_keyop sw = ops[i];
                assert_int_equal(tg_keyop_compute_sw(&sw), TG_OK);
                assert_int_equal(ecdsa_verify(&sw), 1);
            } else {
                assert_int_equal(res[i], TG_OK);
                assert_int_equal(ecdsa_verify(&ops[i]), 1);
            }
        }
    }
    /* The nonce is fresh: two signatures of one digest differ. */
    ecdsa_op(&ops[0], ec[0][0], 32);
    ops[1] = ops[0];
    assert_int_equal(tg_cmb_batch_ecdsa_sign(p, 2, res, why, CHECK_ALL), TG_OK);
    assert_int_equal(res[0], TG_OK);
    assert_int_equal(res[1], TG_OK);
    assert_true(ops[0].outlen != ops[1].outlen ||
                memcmp(ops[0].out, ops[1].out, ops[0].outlen) != 0);
}

static void test_ecdsa_lane_errors_and_invalid(void **state)
{
    tg_mbx_use_backend(state);
    tg_mbx_use_injection(state);
    struct tg_keyop ops[TG_MBX_LANES];
    struct tg_keyop *p[TG_MBX_LANES];
    int res[TG_MBX_LANES];
    enum tg_fallback_reason why[TG_MBX_LANES];
    for (unsigned bad = 0; bad < TG_MBX_LANES; bad++) {
        tg_mbx_reset_knobs(state);
        tg_mbx_fake_fail_lane(TG_MBX_FAKE_ECDSA_SIGN, bad, TG_MBX_STATUS_SIGNATURE_ERR);
        for (size_t i = 0; i < TG_MBX_LANES; i++) {
            ecdsa_op(&ops[i], ec[1][i % KEYS_PER], 48);
            p[i] = &ops[i];
        }
        assert_int_equal(tg_cmb_batch_ecdsa_sign(p, TG_MBX_LANES, res, why, CHECK_ALL), TG_OK);
        for (unsigned i = 0; i < TG_MBX_LANES; i++) {
            if (i == bad) {
                assert_int_equal(res[i], TG_EDEVICE);
                assert_int_equal(why[i], TG_FALLBACK_LANE_ERROR);
                assert_unreleased(&ops[i]);
            } else {
                assert_int_equal(res[i], TG_OK);
                assert_int_equal(ecdsa_verify(&ops[i]), 1);
            }
        }
        assert_int_equal(tg_mbx_fake_stats()->calls[TG_MBX_FAKE_ECDSA_SIGN], 1);
    }
    /* Contract violations. */
    for (size_t i = 0; i < 4; i++)
        ecdsa_op(&ops[i], ec[0][0], 32);
    ops[1].pkey = ec[1][0]; /* P-384 in a P-256 batch */
    ops[2].inlen = 65;      /* beyond the input buffer */
    ops[3].pkey = rsa[0][0];
    assert_int_equal(tg_cmb_batch_ecdsa_sign(p, 4, res, why, CHECK_ALL), TG_OK);
    assert_int_equal(res[0], TG_OK);
    for (size_t i = 1; i < 4; i++) {
        assert_int_equal(res[i], TG_EINVAL);
        assert_unreleased(&ops[i]);
    }
    assert_int_equal(tg_cmb_batch_ecdsa_sign(p, 9, res, why, CHECK_ALL), TG_EINVAL);
    assert_int_equal(tg_cmb_batch_ecdsa_sign(p, 0, res, why, CHECK_ALL), TG_OK);
}

/* Install the fake table t, over the real library when the backend is real
 * (passthrough), knobs reset. */
static void use_table(void **state, const struct tg_mbx_api *t)
{
    tg_mbx_unload();
    tg_mbx_reset_knobs(state);
    assert_int_equal(tg_mbx_install(t), TG_OK);
}

/* Every ECDSA signature is verified before it leaves: a corrupted one
 * (one bit of r flipped, status OK) fails its lane with fault_check and is
 * never released; without the check it would go out and not verify. The
 * check is one batched verification call, or OpenSSL when the library has
 * no verification. */
static void test_ecdsa_fault_check(void **state)
{
    tg_mbx_use_backend(state);
    tg_mbx_use_injection(state);
    struct tg_keyop ops[TG_MBX_LANES];
    struct tg_keyop *p[TG_MBX_LANES];
    int res[TG_MBX_LANES];
    enum tg_fallback_reason why[TG_MBX_LANES];
    for (int batched = 1; batched >= 0; batched--) {
        for (unsigned bad = 0; bad < TG_MBX_LANES; bad += 3) {
            size_t c = bad % NCURVES;
            use_table(state, batched ? tg_mbx_fake_api() : tg_mbx_fake_api_no_verify());
            tg_mbx_fake_corrupt(TG_MBX_FAKE_ECDSA_SIGN, bad);
            for (size_t i = 0; i < TG_MBX_LANES; i++) {
                ecdsa_op(&ops[i], ec[c][i % KEYS_PER], 48);
                p[i] = &ops[i];
            }
            assert_int_equal(tg_cmb_batch_ecdsa_sign(p, TG_MBX_LANES, res, why, CHECK_ALL), TG_OK);
            for (unsigned i = 0; i < TG_MBX_LANES; i++) {
                if (i == bad) {
                    assert_int_equal(res[i], TG_EDEVICE);
                    assert_int_equal(why[i], TG_FALLBACK_FAULT_CHECK);
                    assert_unreleased(&ops[i]);
                } else {
                    assert_int_equal(res[i], TG_OK);
                    assert_int_equal(why[i], NONE);
                    assert_int_equal(ecdsa_verify(&ops[i]), 1);
                }
            }
            const struct tg_mbx_fake_stats *fs = tg_mbx_fake_stats();
            assert_int_equal(fs->calls[TG_MBX_FAKE_ECDSA_VERIFY], batched ? 1 : 0);
            assert_int_equal(fs->lanes[TG_MBX_FAKE_ECDSA_VERIFY], batched ? TG_MBX_LANES : 0);
            /* Without the check the corrupted signature goes out. */
            for (size_t i = 0; i < TG_MBX_LANES; i++)
                ecdsa_op(&ops[i], ec[c][i % KEYS_PER], 48);
            assert_int_equal(tg_cmb_batch_ecdsa_sign(p, TG_MBX_LANES, res, why, CHECK_NONE), TG_OK);
            assert_int_equal(res[bad], TG_OK);
            assert_int_equal(ecdsa_verify(&ops[bad]), 0);
            assert_int_equal(fs->calls[TG_MBX_FAKE_ECDSA_VERIFY], batched ? 1 : 0);
        }
    }
    /* The verification itself failing a lane: not released either. */
    use_table(state, tg_mbx_fake_api());
    tg_mbx_fake_fail_lane(TG_MBX_FAKE_ECDSA_VERIFY, 1, TG_MBX_STATUS_SIGNATURE_ERR);
    for (size_t i = 0; i < 3; i++)
        ecdsa_op(&ops[i], ec[0][i], 32);
    assert_int_equal(tg_cmb_batch_ecdsa_sign(p, 3, res, why, CHECK_ALL), TG_OK);
    assert_int_equal(res[1], TG_EDEVICE);
    assert_int_equal(why[1], TG_FALLBACK_FAULT_CHECK);
    assert_unreleased(&ops[1]);
    assert_int_equal(res[0], TG_OK);
    assert_int_equal(res[2], TG_OK);
}

/* The fault check is per lane (a batch mixes operations of bindings that
 * want it and bindings that do not): lanes 0..3 checked, 4..7 not, lane 2
 * and lane 6 corrupted. Lane 2 fails its check; lane 6 goes out as the
 * device made it (and does not verify); the rest are right. NULL checks
 * every lane. RSA and ECDSA. */
static void test_fault_check_per_lane(void **state)
{
    tg_mbx_use_backend(state);
    tg_mbx_use_injection(state);
    static const bool half[TG_MBX_LANES] = {true, true, true, true, false, false, false, false};
    struct tg_keyop ops[TG_MBX_LANES];
    struct tg_keyop *p[TG_MBX_LANES];
    int res[TG_MBX_LANES];
    enum tg_fallback_reason why[TG_MBX_LANES];
    for (int ecdsa = 0; ecdsa < 2; ecdsa++) {
        for (int all = 0; all < 2; all++) {
            tg_mbx_reset_knobs(state);
            enum tg_mbx_fake_fn fn = ecdsa ? TG_MBX_FAKE_ECDSA_SIGN : TG_MBX_FAKE_RSA_PRIVATE_CRT;
            tg_mbx_fake_corrupt(fn, 2);
            tg_mbx_fake_corrupt(fn, 6);
            for (size_t i = 0; i < TG_MBX_LANES; i++) {
                if (ecdsa)
                    ecdsa_op(&ops[i], ec[0][i % KEYS_PER], 32);
                else
                    rsa_op(&ops[i], rsa[0][i % KEYS_PER], &rsa_cases[i % TG_ARRAY_LEN(rsa_cases)]);
                p[i] = &ops[i];
            }
            const bool *check = all ? NULL : half;
            int rc = ecdsa ? tg_cmb_batch_ecdsa_sign(p, TG_MBX_LANES, res, why, check)
                           : tg_cmb_batch_rsa_sign(p, TG_MBX_LANES, res, why, check);
            assert_int_equal(rc, TG_OK);
            for (unsigned i = 0; i < TG_MBX_LANES; i++) {
                bool checked = all || half[i], bad = i == 2 || i == 6;
                int good = ecdsa ? ecdsa_verify(&ops[i]) : rsa_verify(&ops[i]);
                if (bad && checked) {
                    assert_int_equal(res[i], TG_EDEVICE);
                    assert_int_equal(why[i], TG_FALLBACK_FAULT_CHECK);
                    assert_unreleased(&ops[i]);
                } else {
                    assert_int_equal(res[i], TG_OK);
                    assert_int_equal(good, bad ? 0 : 1);
                }
            }
        }
    }
}

/* crypto_mb may leave a lane unwritten while reporting success: such a lane
 * must fail (software finishes it), not release whatever the output buffer
 * held before (a stale signature, stack garbage). RSA with and without the
 * fault check, ECDSA; every lane position. */
static void test_unwritten_lanes(void **state)
{
    tg_mbx_use_backend(state);
    tg_mbx_use_injection(state);
    struct tg_keyop ops[TG_MBX_LANES];
    struct tg_keyop *p[TG_MBX_LANES];
    int res[TG_MBX_LANES];
    enum tg_fallback_reason why[TG_MBX_LANES];
    for (unsigned bad = 0; bad < TG_MBX_LANES; bad++) {
        for (int kind = 0; kind < 3; kind++) {
            tg_mbx_reset_knobs(state);
            tg_mbx_fake_skip_lane(kind < 2 ? TG_MBX_FAKE_RSA_PRIVATE_CRT : TG_MBX_FAKE_ECDSA_SIGN,
                                  bad);
            for (size_t i = 0; i < TG_MBX_LANES; i++) {
                if (kind < 2)
                    rsa_op(&ops[i], rsa[0][i % KEYS_PER], &rsa_cases[i % TG_ARRAY_LEN(rsa_cases)]);
                else
                    ecdsa_op(&ops[i], ec[bad % NCURVES][i % KEYS_PER], 32);
                p[i] = &ops[i];
            }
            int rc = kind < 2 ? tg_cmb_batch_rsa_sign(p, TG_MBX_LANES, res, why,
                                                      kind == 1 ? CHECK_ALL : CHECK_NONE)
                              : tg_cmb_batch_ecdsa_sign(p, TG_MBX_LANES, res, why, CHECK_ALL);
            assert_int_equal(rc, TG_OK);
            for (unsigned i = 0; i < TG_MBX_LANES; i++) {
                if (i == bad) {
                    assert_int_equal(res[i], TG_EDEVICE);
                    assert_int_equal(why[i], TG_FALLBACK_LANE_ERROR);
                    assert_unreleased(&ops[i]);
                } else {
                    assert_int_equal(res[i], TG_OK);
                    assert_int_equal(kind < 2 ? rsa_verify(&ops[i]) : ecdsa_verify(&ops[i]), 1);
                }
            }
        }
    }
}

/* ---- availability ---- */

static void test_not_loaded_or_unavailable(void **state)
{
    (void)state;
    struct tg_keyop ops[2];
    struct tg_keyop *p[2] = {&ops[0], &ops[1]};
    struct tg_kxkey key, *kp[1] = {&key};
    int res[2];
    enum tg_fallback_reason why[2];
    char reason[128];
    memset(&key, 0, sizeof(key));
    tg_mbx_unload();
    rsa_op(&ops[0], rsa[0][0], &rsa_cases[0]);
    rsa_op(&ops[1], rsa[0][0], &rsa_cases[0]);
    assert_int_equal(tg_cmb_batch_rsa_sign(p, 2, res, why, CHECK_ALL), TG_EUNAVAIL);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(res[i], TG_EDEVICE);
        assert_int_equal(why[i], TG_FALLBACK_DEVICE_ERROR);
    }
    ecdsa_op(&ops[0], ec[0][0], 32);
    assert_int_equal(tg_cmb_batch_ecdsa_sign(p, 1, res, why, CHECK_ALL), TG_EUNAVAIL);
    assert_int_equal(res[0], TG_EDEVICE);
    assert_int_equal(tg_cmb_batch_keygen(kp, 1, TG_GROUP_X25519, res), TG_EUNAVAIL);
    assert_int_equal(res[0], TG_EDEVICE);
    assert_false(key.has_priv);
    assert_false(tg_cmb_batch_group_supported(TG_GROUP_X25519));
    assert_int_equal(tg_cmb_batch_key_supported(rsa[0][0], reason, sizeof(reason)), TG_EUNAVAIL);
    assert_string_equal(reason, "crypto_mb is not loaded");
    assert_int_equal(tg_cmb_batch_key_supported(NULL, NULL, 0), TG_EINVAL);

    /* Loaded, but an algorithm missing here: that kind goes to software. */
    tg_mbx_fake_reset();
    tg_mbx_fake_set_algo(TG_MBX_ALGO_EC_NIST_P256, false);
    assert_int_equal(tg_mbx_install(tg_mbx_fake_api()), TG_OK);
    assert_int_equal(tg_cmb_batch_ecdsa_sign(p, 1, res, why, CHECK_ALL), TG_EUNAVAIL);
    assert_int_equal(why[0], TG_FALLBACK_DEVICE_ERROR);
    assert_false(tg_cmb_batch_group_supported(TG_GROUP_P256));
    assert_true(tg_cmb_batch_group_supported(TG_GROUP_P384));
    assert_int_equal(tg_cmb_batch_key_supported(ec[0][0], reason, sizeof(reason)), TG_EUNAVAIL);
    assert_non_null(strstr(reason, "P-256"));
    assert_int_equal(tg_cmb_batch_key_supported(ec[1][0], reason, sizeof(reason)), TG_OK);
    assert_int_equal(tg_cmb_batch_key_supported(rsa[0][0], reason, sizeof(reason)), TG_OK);
    tg_mbx_unload();
    tg_mbx_fake_reset();

    /* A library without P-521: P-521 to software, the rest batched. */
    assert_int_equal(tg_mbx_install(tg_mbx_fake_api_no_p521()), TG_OK);
    assert_false(tg_cmb_batch_group_supported(TG_GROUP_P521));
    assert_int_equal(tg_cmb_batch_key_supported(ec[2][0], reason, sizeof(reason)), TG_EUNAVAIL);
    ecdsa_op(&ops[0], ec[2][0], 64);
    assert_int_equal(tg_cmb_batch_ecdsa_sign(p, 1, res, why, CHECK_ALL), TG_EUNAVAIL);
    tg_mbx_unload();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TG_MBX_BOTH(test_rsa_sign_batches),
        TG_MBX_BOTH(test_rsa_lane_error_each_position),
        TG_MBX_BOTH(test_rsa_fault_check),
        TG_MBX_BOTH(test_rsa_special_keys),
        TG_MBX_BOTH(test_rsa_invalid),
        TG_MBX_BOTH(test_ecdsa_batches),
        TG_MBX_BOTH(test_ecdsa_digest_edges),
        TG_MBX_BOTH(test_ecdsa_lane_errors_and_invalid),
        TG_MBX_BOTH(test_ecdsa_fault_check),
        TG_MBX_BOTH(test_fault_check_per_lane),
        TG_MBX_BOTH(test_unwritten_lanes),
        cmocka_unit_test_teardown(test_not_loaded_or_unavailable, tg_mbx_backend_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
