/*
 * tg_mb_bench: what crypto_mb buys on this CPU, and the cost model the
 * cryptomb provider uses to choose between a partial multi-buffer batch and
 * scalar (software) operations.
 *
 * Everything is measured on the calling thread, in its CPU time
 * (CLOCK_THREAD_CPUTIME_ID): operations per second per core, stable on a
 * shared machine where wall-clock rates are not. Scalar means
 * tg_keyop_compute_sw() (OpenSSL EVP, default provider: exactly the software
 * provider's and every fallback's path); crypto_mb means the tg_mb_ops
 * functions (what the provider calls) and, separately, the raw mbx call.
 *
 * Threading: any thread, on a normal stack (RSA-4096 needs ~128 KiB); not
 * concurrently with tg_mbx_install()/tg_mbx_unload().
 */
#ifndef TG_MB_BENCH_H
#define TG_MB_BENCH_H

#include <stdbool.h>
#include <stddef.h>

#include "core/tg_buf.h"
#include "core/tg_err.h"
#include "providers/cryptomb/tg_cmb_batch.h"
#include "keyprov/tg_pkey.h"

/* X(id, label): the operation kinds measured and calibrated. */
#define TG_MB_KINDS(X)                                                                             \
    X(RSA2048, "RSA-2048 sign")                                                                    \
    X(RSA3072, "RSA-3072 sign")                                                                    \
    X(RSA4096, "RSA-4096 sign")                                                                    \
    X(ECDSA_P256, "ECDSA P-256 sign")                                                              \
    X(ECDSA_P384, "ECDSA P-384 sign")                                                              \
    X(X25519_KEYGEN, "X25519 keygen")                                                              \
    X(X25519_DERIVE, "X25519 derive")                                                              \
    X(P256_KEYGEN, "P-256 keygen")                                                                 \
    X(P256_DERIVE, "P-256 derive")                                                                 \
    X(P384_KEYGEN, "P-384 keygen")                                                                 \
    X(P384_DERIVE, "P-384 derive")

enum tg_mb_kind {
#define TG_MB_KIND_ENUM(id, label) TG_MB_KIND_##id,
    TG_MB_KINDS(TG_MB_KIND_ENUM)
#undef TG_MB_KIND_ENUM
        TG_MB_KIND_COUNT
};
#define TG_MB_KIND_BIT(k) (1u << (k))
#define TG_MB_KIND_ALL    ((1u << TG_MB_KIND_COUNT) - 1u)

const char *tg_mb_kind_name(enum tg_mb_kind k);
/* The kind of a signing key (RSA 2048/3072/4096, EC P-256/P-384) or of a
 * key-exchange group; TG_MB_KIND_COUNT when not one of the kinds above. */
enum tg_mb_kind tg_mb_kind_for_key(const struct tg_pkey *key);
enum tg_mb_kind tg_mb_kind_keygen(enum tg_group g);
enum tg_mb_kind tg_mb_kind_derive(enum tg_group g);

/*
 * The cost model, per kind (valid[k] false: not measured). A batch of n
 * lanes through tg_mb_ops costs about batch_us[k][n] microseconds of CPU
 * (n = 1..8; measured at 1 and 8, interpolated between: an mb8 call costs
 * nearly the same whatever its fill, the per-lane encoding is small), one
 * scalar operation scalar_us[k].
 */
struct tg_mb_calib {
    bool valid[TG_MB_KIND_COUNT];
    double scalar_us[TG_MB_KIND_COUNT];
    double batch_us[TG_MB_KIND_COUNT][TG_MBX_LANES + 1]; /* [0] unused */
};

/*
 * Measure the kinds in `kinds` (TG_MB_KIND_BIT mask; 0 = all) cheaply: a
 * few repetitions each, the minimum kept, ~5 ms for all kinds without
 * RSA-3072/4096 on this machine (RSA-4096 alone ~25 ms). Sign kinds are
 * measured only when keys[] holds a key of that kind (the configured
 * certificates: no key generation here); key exchange needs no key.
 * Requires crypto_mb loaded; TG_EUNAVAIL otherwise (out cleared).
 * Returns TG_OK when at least one kind was measured.
 */
int tg_mb_calibrate(const struct tg_pkey *const keys[], size_t nkeys, unsigned kinds,
                    struct tg_mb_calib *out) TG_MUST_CHECK;

/* Cheaper to run n pending operations of kind k as one batch than as n
 * scalar ones? Unmeasured kinds: batch (true). */
bool tg_mb_calib_prefer_batch(const struct tg_mb_calib *c, enum tg_mb_kind k, size_t n);
/* Smallest n (1..8) for which the batch is cheaper; 9 if never. */
size_t tg_mb_calib_min_batch(const struct tg_mb_calib *c, enum tg_mb_kind k);

/*
 * The full microbenchmark (for `tlsgate bench-mb` or a test): generates keys
 * (not timed; RSA-4096 takes a second or two), then for every kind measures
 * for seconds_per_case each: OpenSSL scalar ops/s, crypto_mb through
 * tg_mb_ops with full 8-lane batches, the raw mbx call alone, and the raw
 * mbx call cost with 1..8 lanes filled. Appends markdown tables to out.
 * Loads crypto_mb if needed; without it only the scalar column is filled and
 * TG_EUNAVAIL is returned.
 */
int tg_mb_bench_run(struct tg_buf *out, double seconds_per_case) TG_MUST_CHECK;

#endif
