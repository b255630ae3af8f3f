/* RLIMIT_MEMLOCK against what qatlib pins (tg_qat_memlock.h). */
#include "providers/qat/tg_qat_memlock.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "core/tg_sysinfo.h"

int tg_qat_memlock_read(struct tg_qat_memlock *out)
{
    struct rlimit rl;
    memset(out, 0, sizeof(*out));
    if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0)
        return TG_EIO;
    out->soft_unlimited = rl.rlim_cur == RLIM_INFINITY;
    out->hard_unlimited = rl.rlim_max == RLIM_INFINITY;
    out->soft = out->soft_unlimited ? 0 : (uint64_t)rl.rlim_cur;
    out->hard = out->hard_unlimited ? 0 : (uint64_t)rl.rlim_max;
    return TG_OK;
}

enum tg_qat_memlock_verdict tg_qat_memlock_verdict(const struct tg_qat_memlock *m, char *advice,
                                                   size_t advicelen)
{
    char rec[32];
    tg_sysinfo_fmt_bytes(false, TG_QAT_MEMLOCK_RECOMMENDED, rec, sizeof(rec));
    bool soft_ok = m->soft_unlimited || m->soft >= TG_QAT_MEMLOCK_RECOMMENDED;
    bool hard_ok = m->hard_unlimited || m->hard >= TG_QAT_MEMLOCK_RECOMMENDED;
    enum tg_qat_memlock_verdict v = soft_ok   ? TG_QAT_MEMLOCK_OK
                                    : hard_ok ? TG_QAT_MEMLOCK_RAISABLE
                                              : TG_QAT_MEMLOCK_LOW;
    if (advice == NULL || advicelen == 0)
        return v;
    switch (v) {
    case TG_QAT_MEMLOCK_OK:
        snprintf(advice, advicelen, "ok for qat (needs >= %s or unlimited)", rec);
        break;
    case TG_QAT_MEMLOCK_RAISABLE:
        snprintf(advice, advicelen,
                 "too low for qat: qatlib pins its DMA memory against RLIMIT_MEMLOCK; the hard "
                 "limit allows raising it: `ulimit -l unlimited` (or >= %s) before starting",
                 rec);
        break;
    case TG_QAT_MEMLOCK_LOW:
        snprintf(advice, advicelen,
                 "too low for qat: qatlib pins its DMA memory against RLIMIT_MEMLOCK; set "
                 ">= %s or unlimited in the service manager (systemd LimitMEMLOCK=134217728 or "
                 "infinity, the container runtime's memlock ulimit, /etc/security/limits.conf)",
                 rec);
        break;
    }
    return v;
}
