/*
 * tg_cmb_calib: the cryptomb provider's cost model, and the start-up
 * calibration that fills it on this CPU.
 *
 * The provider chooses, for a partial batch of n operations of one kind,
 * between one multi-buffer call and n scalar (OpenSSL) operations. The model
 * holds, per kind (tg_cmb_kind.h), what one scalar operation costs and what
 * a batch of 1..8 lanes costs, in microseconds of CPU; the decision is the
 * break-even batch size: the smallest n for which the batch is cheaper.
 *
 * Three parts:
 *  - the model and its decisions: pure functions of given costs
 *    (tg_cmb_calib_set, tg_cmb_calib_prefer_batch, tg_cmb_calib_breakeven);
 *  - the measurement (tg_cmb_calib_measure): CPU time, a few repetitions;
 *  - the process-wide model the provider decides with: filled at start-up
 *    on the main thread (tg_cmb_calib_learn), read by the workers
 *    (tg_cmb_calib_batch_from) once they run. Tests pin it
 *    (tg_cmb_calib_pin) so that no policy test depends on timing.
 *
 * Internal to src/providers/cryptomb.
 */
#ifndef TG_CMB_CALIB_H
#define TG_CMB_CALIB_H

#include <stdbool.h>
#include <stddef.h>

#include "core/tg_buf.h"
#include "core/tg_err.h"
#include "keyprov/tg_pkey.h"
#include "providers/cryptomb/tg_cmb_kind.h"
#include "providers/cryptomb/tg_mbx.h"

/* Per kind (valid[k] false: not measured): one scalar operation costs
 * scalar_us[k], a batch of n lanes batch_us[k][n] (n = 1..8). */
struct tg_cmb_calib {
    bool valid[TG_CMB_KIND_COUNT];
    double scalar_us[TG_CMB_KIND_COUNT];
    double batch_us[TG_CMB_KIND_COUNT][TG_MBX_LANES + 1]; /* [0] unused */
};

/* The provider's break-even for a kind nobody measured: batch from 2
 * operations (right for every kind on the CPUs measured so far, and never
 * worse than twice the best choice). */
#define TG_CMB_CALIB_DEFAULT_BATCH_FROM 2

/* ---- the model (pure) ---- */

/* Record kind k from two measurements: a batch of 1 lane and of 8 lanes
 * (an mb8 call costs nearly the same whatever its fill, the per-lane
 * encoding is small: lanes in between are interpolated linearly), and one
 * scalar operation. Marks k valid. Out-of-range k: nothing. */
void tg_cmb_calib_set(struct tg_cmb_calib *c, enum tg_cmb_kind k, double scalar_us,
                      double batch1_us, double batch8_us);
/* Cheaper to run n pending operations of kind k as one batch than as n
 * scalar ones? Unmeasured kinds, c NULL, n > 8: true; n == 0: false. */
bool tg_cmb_calib_prefer_batch(const struct tg_cmb_calib *c, enum tg_cmb_kind k, size_t n);
/* Smallest n (1..8) for which the batch is cheaper; TG_MBX_LANES + 1 if
 * never (scalar always). Unmeasured kinds: 1. */
size_t tg_cmb_calib_breakeven(const struct tg_cmb_calib *c, enum tg_cmb_kind k);

/* ---- measuring ---- */

/*
 * Measure the kinds in `kinds` (TG_CMB_KIND_BIT mask; 0 = all) cheaply: per
 * kind a batch of 1 and of 8 lanes through tg_cmb_batch and one OpenSSL
 * operation, the minimum of a few runs each; ~5 ms for all kinds without
 * RSA-3072/4096 on an AVX-512 IFMA core (RSA-4096 alone ~25 ms). Sign kinds
 * are measured only when keys[] holds a key of that kind that crypto_mb can
 * take (no key generation here); key-exchange kinds need no key. A kind
 * whose workload reported an error is left unmeasured.
 * Calling thread, normal stack; crypto_mb loaded (tg_mbx.h), else
 * TG_EUNAVAIL with out cleared. Returns TG_OK when at least one kind was
 * measured, else TG_EUNAVAIL.
 */
int tg_cmb_calib_measure(const struct tg_pkey *const keys[], size_t nkeys, unsigned kinds,
                         struct tg_cmb_calib *out) TG_MUST_CHECK;

/* ---- the process-wide model (start-up: main thread; then read-only) ---- */

/*
 * Measure the kinds in `kinds` that the model does not hold yet (key: the
 * certificate key for a sign kind, NULL for key exchange) and add them.
 * Never logs: `tlsgate doctor` calls this too and prints a report, not log
 * lines (the provider logs a summary when its workers start, see
 * tg_cmb_calib_summary). Nothing is measured while the model is pinned.
 * Main thread: at start-up, and at a reload while the workers run (a kind's
 * entry becomes visible to them once complete, tg_cmb_calib_known).
 */
void tg_cmb_calib_learn(const struct tg_pkey *key, unsigned kinds);
/* The model as it stands (never NULL). */
const struct tg_cmb_calib *tg_cmb_calib_model(void);
/* Break-even of kind k under the model: tg_cmb_calib_breakeven for measured
 * kinds, TG_CMB_CALIB_DEFAULT_BATCH_FROM for the others. Lock-free: any
 * thread. */
size_t tg_cmb_calib_batch_from(enum tg_cmb_kind k);
/* Whether kind k's entry of the model is complete and may be read (any
 * thread; the model's valid[] is only for the thread that learns). */
bool tg_cmb_calib_known(enum tg_cmb_kind k);
/* One line for the start-up log: "RSA-2048 sign from 2, X25519 keygen from
 * 1, P-384 derive never, ..." for the measured kinds; "no kind measured"
 * when none is. Appended to out. */
void tg_cmb_calib_summary(struct tg_buf *out);
/* Forget the measured model (global_cleanup). A pinned model stays. */
void tg_cmb_calib_forget(void);

/*
 * Tests only: make the model exactly *c (copied) and stop measuring, so
 * that the provider's decisions do not depend on timing; kinds not valid in
 * *c get the default break-even. NULL unpins and forgets. Main thread,
 * while no worker runs.
 */
void tg_cmb_calib_pin(const struct tg_cmb_calib *c);

#endif
