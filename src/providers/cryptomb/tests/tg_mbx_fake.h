/*
 * A fake crypto_mb (struct tg_mbx_api) for tests: every lane is computed with
 * scalar OpenSSL, following crypto_mb's calling conventions as the shim
 * documents them (tg_mbx.h) and test_mbx checks them against the real library:
 *  - 4 status bits per lane; NULL lane pointers -> NULL_PARAM_ERR, lane not
 *    written; parameter errors -> MISMATCH_PARAM_ERR with the lane's output
 *    overwritten with garbage (the real library computes such lanes anyway);
 *  - RSA: p and q of exactly bits/2 bits; the public op only for e = 65537;
 *  - ECDSA: message of order size, rejected when 0 or >= n; SIGNATURE_ERR
 *    for r or s == 0; verification: SIGNATURE_ERR when the signature does
 *    not verify, MISMATCH_PARAM_ERR for r, s or the message out of range;
 *  - EC public key: affine when z == NULL, else Jacobian with Z != 1; stores
 *    only up to the first failed lane (the real library's behaviour);
 *  - ECDH: peer point checked on the curve;
 *  - X25519: clamping and top-bit masking as RFC 7748; all-zero shared
 *    secret -> LOW_ORDER_ERR with zeros written.
 * Knobs inject per-lane failures, corrupt RSA and ECDSA results, leave lanes unwritten
 * while reporting success, pretend the CPU lacks
 * IFMA or an algorithm is missing; counters record calls and filled lanes.
 *
 * Single-threaded: knobs and counters are process globals.
 * Install with tg_mbx_install(tg_mbx_fake_api()).
 */
#ifndef TG_MBX_FAKE_H
#define TG_MBX_FAKE_H

#include <openssl/evp.h>
#include <stdbool.h>

#include "providers/cryptomb/tg_mbx.h"

enum tg_mbx_fake_fn {
    TG_MBX_FAKE_RSA_PRIVATE_CRT,
    TG_MBX_FAKE_RSA_PUBLIC,
    TG_MBX_FAKE_ECDSA_SIGN,
    TG_MBX_FAKE_EC_PUBLIC_KEY,
    TG_MBX_FAKE_ECDH,
    TG_MBX_FAKE_X25519_PUBLIC_KEY,
    TG_MBX_FAKE_X25519,
    TG_MBX_FAKE_ECDSA_VERIFY,
    TG_MBX_FAKE_FN_COUNT
};

struct tg_mbx_fake_stats {
    unsigned calls[TG_MBX_FAKE_FN_COUNT];
    unsigned lanes[TG_MBX_FAKE_FN_COUNT]; /* lanes with every pointer set */
};

/* The full table (P-521 included). */
const struct tg_mbx_api *tg_mbx_fake_api(void);
/* The same without the optional P-521 entry points (an older library). */
const struct tg_mbx_api *tg_mbx_fake_api_no_p521(void);
/* The full table without the optional ECDSA verifications: signatures are
 * then checked with OpenSSL. */
const struct tg_mbx_api *tg_mbx_fake_api_no_verify(void);

/* Knobs off, counters zero. */
void tg_mbx_fake_reset(void);
/* Free cached EC groups (end of a test program). */
void tg_mbx_fake_cleanup(void);

/* mbx_is_crypto_mb_applicable() answer (default true): false = no IFMA. */
void tg_mbx_fake_set_applicable(bool yes);
/* mbx_get_algo_info(algo) answer for one TG_MBX_ALGO_* (default: all MB8). */
void tg_mbx_fake_set_algo(unsigned mbx_algo, bool supported);
/* Every later call of fn reports `status` (a TG_MBX_STATUS_* bit) on lane,
 * with garbage in that lane's output, until reset. */
void tg_mbx_fake_fail_lane(enum tg_mbx_fake_fn fn, unsigned lane, unsigned status);
/* Later results of fn on lane get one bit flipped, with status OK (a
 * computation fault the fault check must catch), until reset: the RSA
 * private op's signature, the ECDSA signature's r. */
void tg_mbx_fake_corrupt(enum tg_mbx_fake_fn fn, unsigned lane);
/* tg_mbx_fake_corrupt(TG_MBX_FAKE_RSA_PRIVATE_CRT, lane). */
void tg_mbx_fake_corrupt_lane(unsigned lane);
/* Every later call of fn leaves lane's output unwritten (whatever the
 * caller's buffer held stays) and reports success for it, until reset: the
 * real library's EC public-key behaviour after a failed lane, for any
 * function. The lane is still computed, into a scratch buffer. */
void tg_mbx_fake_skip_lane(enum tg_mbx_fake_fn fn, unsigned lane);

const struct tg_mbx_fake_stats *tg_mbx_fake_stats(void);

/*
 * Passthrough: with inner != NULL the fake forwards every call to inner
 * (e.g. a copy of the real library's table, kept loaded by the test) and
 * only applies the knobs and counters afterwards: real arithmetic with fault
 * injection. NULL (the default, also after reset) computes with OpenSSL.
 */
void tg_mbx_fake_set_inner(const struct tg_mbx_api *inner);

/* Test keys of unusual shapes: tg_test_rsa_key() (tests/unit/tg_test_util.h). */

#endif
