/*
 * tg_outlier: ejection arithmetic and the lock-free state changes of an
 * endpoint's passive health. Contract in tg_outlier.h.
 */
#include "upstream/tg_outlier.h"

uint64_t tg_outlier_ejection_ns(const struct tg_conf_outlier *c, uint32_t streak)
{
    uint64_t d = c->base_ejection_time_ns;
    for (uint32_t i = 1; i < streak && d < c->max_ejection_time_ns; i++)
        d = d > UINT64_MAX / 2 ? UINT64_MAX : d * 2;
    return d < c->max_ejection_time_ns ? d : c->max_ejection_time_ns;
}

uint32_t tg_outlier_max_ejected(uint32_t n_endpoints, uint32_t percent)
{
    uint64_t m = (uint64_t)n_endpoints * percent / 100;
    return m < 1 ? 1 : (uint32_t)m;
}

/* Take one of the cluster's ejection places; false at the limit. */
static bool tg_outlier_reserve(_Atomic uint32_t *n_ejected, uint32_t max)
{
    uint32_t e = atomic_load_explicit(n_ejected, memory_order_relaxed);
    do {
        if (e >= max)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(n_ejected, &e, e + 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    return true;
}

uint64_t tg_outlier_failure(struct tg_outlier *o, const struct tg_conf_outlier *c,
                            _Atomic uint32_t *n_ejected, uint32_t n_endpoints, uint64_t now)
{
    if (c->consecutive_failures == 0)
        return 0;
    uint32_t f = atomic_fetch_add_explicit(&o->failures, 1, memory_order_relaxed) + 1;
    if (f < c->consecutive_failures)
        return 0;
    uint64_t u = atomic_load_explicit(&o->until_ns, memory_order_relaxed);
    if (u == TG_OUTLIER_RETIRED || (u != 0 && now < u))
        return 0; /* retired, or a late report on an endpoint already out */
    /* An ejection that has expired but was not swept yet still holds its
     * place in the count: renewing it takes no new one. */
    bool counted = u != 0;
    if (!counted && !tg_outlier_reserve(
                        n_ejected, tg_outlier_max_ejected(n_endpoints, c->max_ejection_percent)))
        return 0;
    uint32_t k = atomic_load_explicit(&o->streak, memory_order_relaxed) + 1;
    uint64_t d = tg_outlier_ejection_ns(c, k);
    uint64_t until = now + d;
    if (until == 0 || until == TG_OUTLIER_RETIRED)
        until = TG_OUTLIER_RETIRED - 1;
    if (!atomic_compare_exchange_strong_explicit(&o->until_ns, &u, until, memory_order_relaxed,
                                                 memory_order_relaxed)) {
        /* Another thread ejected, retired or returned it first. */
        if (!counted)
            atomic_fetch_sub_explicit(n_ejected, 1, memory_order_relaxed);
        return 0;
    }
    atomic_store_explicit(&o->streak, k, memory_order_relaxed);
    atomic_store_explicit(&o->failures, 0, memory_order_relaxed);
    return d;
}

void tg_outlier_success(struct tg_outlier *o)
{
    /* Loads first: the common case writes nothing to the shared line. */
    if (atomic_load_explicit(&o->failures, memory_order_relaxed) != 0)
        atomic_store_explicit(&o->failures, 0, memory_order_relaxed);
    if (atomic_load_explicit(&o->streak, memory_order_relaxed) != 0)
        atomic_store_explicit(&o->streak, 0, memory_order_relaxed);
}

bool tg_outlier_expire(struct tg_outlier *o, _Atomic uint32_t *n_ejected, uint64_t now)
{
    uint64_t u = atomic_load_explicit(&o->until_ns, memory_order_relaxed);
    if (u == 0 || u == TG_OUTLIER_RETIRED || now < u)
        return false;
    if (!atomic_compare_exchange_strong_explicit(&o->until_ns, &u, 0, memory_order_relaxed,
                                                 memory_order_relaxed))
        return false; /* renewed meanwhile */
    atomic_fetch_sub_explicit(n_ejected, 1, memory_order_relaxed);
    atomic_store_explicit(&o->failures, 0, memory_order_relaxed);
    return true;
}

bool tg_outlier_clear(struct tg_outlier *o, _Atomic uint32_t *n_ejected)
{
    uint64_t u = atomic_load_explicit(&o->until_ns, memory_order_relaxed);
    while (u != 0 && u != TG_OUTLIER_RETIRED) {
        if (atomic_compare_exchange_weak_explicit(&o->until_ns, &u, 0, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            atomic_fetch_sub_explicit(n_ejected, 1, memory_order_relaxed);
            atomic_store_explicit(&o->failures, 0, memory_order_relaxed);
            return true;
        }
    }
    return false;
}

void tg_outlier_retire(struct tg_outlier *o, _Atomic uint32_t *n_ejected)
{
    uint64_t u = atomic_exchange_explicit(&o->until_ns, TG_OUTLIER_RETIRED, memory_order_relaxed);
    if (u != 0 && u != TG_OUTLIER_RETIRED)
        atomic_fetch_sub_explicit(n_ejected, 1, memory_order_relaxed);
}
