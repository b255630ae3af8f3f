/*
 * tg_qat_memlock: whether RLIMIT_MEMLOCK leaves qatlib room for its pinned
 * DMA memory (vfio mappings, usdm slabs count against it), and what to do
 * when it does not. For the qat provider's doctor hook.
 *
 * Threading: thread-safe (no shared state).
 */
#ifndef TG_QAT_MEMLOCK_H
#define TG_QAT_MEMLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tg_err.h"

/* What a qatlib process should be allowed to lock (the seed guide's
 * LimitMEMLOCK=134217728); unlimited is fine too. */
#define TG_QAT_MEMLOCK_RECOMMENDED (128ULL * 1024 * 1024)

struct tg_qat_memlock {
    bool soft_unlimited, hard_unlimited;
    uint64_t soft, hard; /* bytes; meaningful unless *_unlimited */
};

enum tg_qat_memlock_verdict {
    TG_QAT_MEMLOCK_OK,       /* unlimited or >= recommended */
    TG_QAT_MEMLOCK_RAISABLE, /* soft too low, hard allows raising it (setrlimit, ulimit -l) */
    TG_QAT_MEMLOCK_LOW,      /* hard limit too low: needs privileges / service config */
};

/* This process's limits (getrlimit). TG_OK or TG_EIO. */
int tg_qat_memlock_read(struct tg_qat_memlock *out) TG_MUST_CHECK;
/* Verdict (pure). If advice != NULL, writes one line of advice into it. */
enum tg_qat_memlock_verdict tg_qat_memlock_verdict(const struct tg_qat_memlock *m, char *advice,
                                                   size_t advicelen);

#endif
