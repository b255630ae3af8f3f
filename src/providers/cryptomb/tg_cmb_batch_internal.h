/*
 * tg_cmb_batch_internal.h: what the files of the batch layer share (the
 * public contract is tg_cmb_batch.h). Internal to src/providers/cryptomb.
 *
 *   tg_cmb_batch.c        lane bookkeeping, curves, stack scrubbing, support queries
 *   tg_cmb_batch_rsa.c    RSA signatures and their fault check
 *   tg_cmb_batch_ecdsa.c  ECDSA signatures
 *   tg_cmb_batch_kx.c     key generation and derivation (X25519, ECDH)
 */
#ifndef TG_CMB_BATCH_INTERNAL_H
#define TG_CMB_BATCH_INTERNAL_H

#include <openssl/bn.h>
#include <stdbool.h>
#include <stddef.h>

#include "providers/cryptomb/tg_cmb_batch.h"

/* reasons[i] of a lane that is not a fallback ("none"). */
#define TG_CMB_BATCH_NONE      TG_FALLBACK_REASON_COUNT
#define TG_CMB_BATCH_RSA_BYTES (4096 / 8)
#define TG_CMB_BATCH_EC_BYTES  66 /* P-521 field and order */
/* A batched signature is copied into op->out; larger keys (RSA-8192) are not
 * batched (tg_cmb_batch_key_supported) and never reach these buffers. */
_Static_assert(TG_CMB_BATCH_RSA_BYTES <= TG_KEYOP_OUT_MAX, "op->out holds an RSA-4096 signature");

/*
 * crypto_mb copies private keys and nonces into stack buffers it does not
 * clear, and leaves intermediate values on the stack: overwrite the region
 * its frames used (kib KiB below the caller's frame). Call it from the
 * function that made the library call, right after it.
 */
void tg_cmb_batch_scrub_stack(size_t kib);

/* Every lane of n: results[i] = rc, reasons[i] = none (reasons may be NULL). */
void tg_cmb_batch_lanes_init(size_t n, int results[], enum tg_fallback_reason reasons[], int rc);
/* Lane i failed with rc; why is kept only for TG_EDEVICE. */
void tg_cmb_batch_lane_fail(int results[], enum tg_fallback_reason reasons[], size_t i, int rc,
                            enum tg_fallback_reason why);
/* crypto_mb cannot run this batch: every lane TG_EDEVICE / device_error;
 * returns TG_EUNAVAIL. */
int tg_cmb_batch_batch_unavailable(size_t n, int results[], enum tg_fallback_reason reasons[]);

/* Whether len bytes are all zero. crypto_mb may leave a lane unwritten
 * while reporting success (its EC public-key function stops storing at the
 * first failed lane): outputs are zeroed before each call, and an all-zero
 * output where zero is no legitimate result is a lane error. */
bool tg_cmb_batch_all_zero(const unsigned char *p, size_t len);

/* A uniformly random scalar in [1, order-1]. TG_OK or TG_ECRYPTO. */
int tg_cmb_batch_rand_scalar(BIGNUM *k, const BIGNUM *order, BN_CTX *ctx);
/* RSA key with the CRT shape crypto_mb needs (two primes of bits/2 bits). */
bool tg_cmb_batch_rsa_shape_ok(const struct tg_pkey *k);

/* ---- curves ---- */

struct tg_cmb_batch_curve {
    enum tg_mbx_alg alg;
    enum tg_group group;
    int nid;
    size_t flen;      /* field element bytes (coordinates, ECDH output) */
    size_t olen;      /* order bytes (scalars, ECDSA r/s and message) */
    int order_bits;   /* for ECDSA digest truncation */
    size_t scrub_kib; /* crypto_mb's stack use (measured: 8, 15, 20 KiB) + margin */
    BIGNUM *order;    /* filled once */
};

/* The curve of a crypto_mb algorithm (P-256, P-384, P-521), its order
 * filled; NULL for other algorithms or when OpenSSL failed. */
const struct tg_cmb_batch_curve *tg_cmb_batch_curve_by_alg(enum tg_mbx_alg a);

#endif
