/*
 * tg_cmb_work: a workload for measuring the cryptomb provider's arithmetic:
 * TG_MBX_LANES operations of one kind (tg_cmb_kind.h), ready to run as one
 * batch through tg_cmb_batch and, one of them, through OpenSSL
 * (tg_keyop_compute_sw: the software provider's and every fallback's path).
 * Used by the start-up calibration (tg_cmb_calib.c) and the microbenchmark
 * (tg_cmb_bench.c); never by the serving path.
 *
 * Internal to src/providers/cryptomb. A workload belongs to the thread that
 * made it; run it on a normal stack (RSA-4096 needs ~128 KiB, see
 * tg_cmb_batch.h), never inside an ASYNC job.
 */
#ifndef TG_CMB_WORK_H
#define TG_CMB_WORK_H

#include <stdbool.h>
#include <stddef.h>

#include "keyprov/tg_keyprov.h"
#include "keyprov/tg_pkey.h"
#include "providers/cryptomb/tg_cmb_kind.h"
#include "providers/cryptomb/tg_mbx.h"

struct tg_cmb_work {
    enum tg_cmb_kind kind;
    const struct tg_cmb_kind_info *info;
    const struct tg_pkey *key; /* sign kinds: borrowed, must outlive the workload */
    struct tg_keyop ops[TG_MBX_LANES];
    struct tg_keyop *p[TG_MBX_LANES];    /* &ops[i], as tg_cmb_batch takes them */
    struct tg_kxkey mine[TG_MBX_LANES];  /* derive: our keys (one pair, replicated) */
    struct tg_kxkey peers[TG_MBX_LANES]; /* derive: peer shares; keygen: batch output */
    struct tg_kxkey scratch;             /* keygen: the scalar op's output */
    int res[TG_MBX_LANES];
    enum tg_fallback_reason why[TG_MBX_LANES];
    bool fault_check; /* signatures: as the provider's default, true */
    unsigned errors;  /* lanes or scalar runs that failed since creation */
};

/*
 * Build a workload of kind k: random 32-byte digests (RSA: PKCS#1 v1.5 with
 * SHA-256), key pairs and peer shares from OpenSSL for derive (one pair,
 * replicated: the cost does not depend on the values). key: the signing key
 * for sign kinds (of that kind), ignored otherwise. NULL on failure (bad
 * arguments, OpenSSL failure). Free with tg_cmb_work_free (wipes secrets).
 */
struct tg_cmb_work *tg_cmb_work_new(enum tg_cmb_kind k, const struct tg_pkey *key);
void tg_cmb_work_free(struct tg_cmb_work *w);

/* A runner: does some work on arg with n lanes; timed by its caller. */
typedef int (*tg_cmb_work_fn)(void *arg, size_t n);

/* Runners on a struct tg_cmb_work: n lanes through tg_cmb_batch (one
 * batch), or one operation through OpenSSL (n ignored). Failures are counted
 * in w->errors; the return is the call's result. */
int tg_cmb_work_batch(void *w, size_t n);
int tg_cmb_work_scalar(void *w, size_t n);

/* CPU time of the calling thread, seconds (CLOCK_THREAD_CPUTIME_ID): stable
 * on a shared machine where wall-clock rates are not. */
double tg_cmb_work_cpu_s(void);

#endif
