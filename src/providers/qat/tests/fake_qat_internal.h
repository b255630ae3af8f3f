/*
 * fake_qat_internal.h: private to the fake qatlib (fake_qat.c describes it),
 * shared by fake_qat.c (instances, queues, polling, compute threads) and
 * fake_qat_crypto.c (the two operations); fake_usdm.c uses fq_env_u64 only.
 * Nothing here is exported from the shared libraries: their dynamic symbols
 * are qatlib's and usdm's, plus the fake_* side channel.
 */
#ifndef FAKE_QAT_INTERNAL_H
#define FAKE_QAT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cpa.h>
#include <cpa_cy_common.h>
#include <cpa_cy_ecdsa.h>
#include <cpa_cy_rsa.h>

#define FQ_HIDDEN __attribute__((visibility("hidden")))

/* The unsigned number in environment variable name: def when unset or not a
 * number, at most max. */
static inline uint64_t fq_env_u64(const char *name, uint64_t def, uint64_t max)
{
    const char *s = getenv(name);
    if (s == NULL || s[0] == '\0')
        return def;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end != '\0') {
        fprintf(stderr, "fake_qat: ignoring %s=%s (not a number)\n", name, s);
        return def;
    }
    return v > max ? max : (uint64_t)v;
}

/* X(id, name) */
#define FQ_COUNTERS(X)                                                                             \
    X(RECEIVED, "received")       /* requests accepted onto a ring */                              \
    X(COMPLETED, "completed")     /* returned by a poll with CPA_STATUS_SUCCESS */                 \
    X(FAILED, "failed")           /* returned by a poll with CPA_STATUS_FAIL */                    \
    X(RETRIED, "retried")         /* submits refused with CPA_STATUS_RETRY (ring full) */          \
    X(REJECTED, "rejected")       /* submits refused because the device is gone */                 \
    X(INVALID, "invalid")         /* submits refused with CPA_STATUS_INVALID_PARAM */              \
    X(DROPPED, "dropped")         /* requests lost when the device died or stopped */              \
    X(POLLS, "polls")             /* icp_sal_CyPollInstance calls */                               \
    X(EMPTY_POLLS, "empty_polls") /* polls that returned nothing */                                \
    X(RSA, "rsa")                 /* RSA requests received */                                      \
    X(ECDSA, "ecdsa")             /* ECDSA requests received */                                    \
    X(STARTS, "starts")           /* successful icp_sal_userStart calls */

enum {
#define FQ_ENUM(id, name) FQ_C_##id,
    FQ_COUNTERS(FQ_ENUM)
#undef FQ_ENUM
        FQ_NCOUNTERS
};

enum fq_kind { FQ_RSA, FQ_ECDSA };

struct fq_req {
    struct fq_req *next;
    enum fq_kind kind;
    unsigned inst;
    uint64_t epoch; /* fq.epoch at submit: a request of an older epoch is lost */
    void *tag;
    CpaCyGenFlatBufCbFunc rsa_cb;
    CpaCyEcdsaSignRSCbFunc ec_cb;
    void *opdata; /* the caller's op data, handed back in the callback */
    CpaFlatBuffer *out, *r, *s;
    uint64_t t_ready;
    bool inject_fail;
    CpaStatus status;
    CpaBoolean mult;
};

struct fq_inst {
    bool started;
    CpaVirtualToPhysical v2p;
    unsigned inflight; /* accepted, not yet returned by a poll */
    struct fq_req *done, **done_tail;
};

/* ---- fake_qat.c: the submit path, for the operations ---- */

/* Count one event of counter (FQ_C_*) and return st. */
FQ_HIDDEN CpaStatus fq_count(int counter, CpaStatus st);
/* Common entry checks of an asynchronous request on instance h with
 * callback cb: *out is the instance on CPA_STATUS_SUCCESS. */
FQ_HIDDEN CpaStatus fq_entry(CpaInstanceHandle h, const void *cb, struct fq_inst **out);
/* Put a copy of tmpl (kind, tag, callback, op data, output buffers) on
 * inst's ring for the compute threads: CPA_STATUS_RETRY when the ring is
 * full, CPA_STATUS_FAIL when the instance is down or the device gone. */
FQ_HIDDEN CpaStatus fq_enqueue(struct fq_inst *inst, struct fq_req *tmpl);
/* FAKE_QAT_NO_ECDSA: the instances do not offer ECDSA. */
FQ_HIDDEN bool fq_no_ecdsa(void);

/* ---- fake_qat_crypto.c: the computation, on a compute thread ---- */

/* A compute thread's OpenSSL state (BN_CTX, rebuilt keys and curves). */
struct fq_thread;
/* NULL, or a state without a BN_CTX, when out of memory: fq_compute then
 * fails every request with CPA_STATUS_RESOURCE. */
FQ_HIDDEN struct fq_thread *fq_thread_new(void);
FQ_HIDDEN void fq_thread_free(struct fq_thread *t);
/* Compute r's result into the caller's buffers: r->status (and r->mult). */
FQ_HIDDEN void fq_compute(struct fq_thread *t, struct fq_req *r);

#endif
