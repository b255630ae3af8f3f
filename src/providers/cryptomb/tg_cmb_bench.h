/*
 * tg_cmb_bench: the cryptomb provider's part of `tlsgate bench-crypto`
 * (tg_keyprov_ops.microbench): what crypto_mb buys on this CPU, measured
 * through the provider's batch layer (tg_cmb_batch) and as the raw mbx call
 * alone, next to the OpenSSL rates src/bench measured.
 *
 * Not on the serving path: only the microbench hook calls it. Internal to
 * src/providers/cryptomb.
 */
#ifndef TG_CMB_BENCH_H
#define TG_CMB_BENCH_H

#include "keyprov/tg_keyprov.h"

/*
 * The microbench hook. For every case crypto_mb can run here (the kinds of
 * tg_cmb_kind.h; other cases are skipped): peak_ops = 8-lane batches through
 * tg_cmb_batch, ops/s of CPU. With b->report set, each case is measured for
 * b->seconds (the full run) and the report gets a markdown section: per
 * case, OpenSSL (b->cases[i].scalar_us), crypto_mb through tg_cmb_batch
 * (RSA with the fault check on and off), the raw mbx call, the speed-up;
 * then the raw call's cost with 1..8 lanes filled and the break-even batch
 * size the provider's cost model (tg_cmb_calib.h) derives from it. Without a
 * report, peak_ops comes from the start-up calibration's cheap measurement.
 * Sets b->peak_label. Main thread (normal stack). Returns TG_OK, or
 * TG_EUNAVAIL when crypto_mb is not loaded (the report says so).
 */
int tg_cmb_bench_run(struct tg_keyprov_bench *b);

#endif
