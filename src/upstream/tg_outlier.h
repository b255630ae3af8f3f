/*
 * tg_outlier: passive health of an endpoint (outlier detection) from the
 * results of real connect attempts.
 *
 * An endpoint is ejected after `consecutive_failures` failed connects in a
 * row. The n-th ejection without a successful connect in between lasts
 * base_ejection_time * 2^(n-1), at most max_ejection_time. A cluster
 * ejects at most max(1, endpoints * max_ejection_percent / 100) endpoints
 * at a time; a failure beyond that limit is counted but ejects nothing.
 * An ejected endpoint returns to service when its time has passed (for
 * the load balancer at once; for the cluster's count when the main thread
 * sweeps, tg_outlier_expire) or when an active health check probe
 * succeeds (tg_outlier_clear). Ejected endpoints are skipped by the load
 * balancer unless every endpoint is ejected or unhealthy (panic: see
 * tg_lb.h).
 *
 * State: struct tg_outlier, embedded in the endpoint. until_ns is 0 (in
 * service), TG_OUTLIER_RETIRED (the endpoint left its cluster: never
 * ejected nor counted again), or the end of an ejection, which may already
 * have passed. Every change of until_ns is a compare-and-swap, so the
 * cluster-wide count of ejected endpoints (n_ejected: every until_ns that
 * is neither 0 nor RETIRED) stays exact whatever the threads do.
 *
 * Threading: tg_outlier_failure / _success / _ejected from any worker;
 * _expire / _clear / _retire from the cluster's main thread. Lock-free.
 * tg_outlier_ejection_ns and tg_outlier_max_ejected are pure.
 */
#ifndef TG_OUTLIER_H
#define TG_OUTLIER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/tg_config.h"

#define TG_OUTLIER_RETIRED UINT64_MAX

struct tg_outlier {
    _Atomic uint32_t failures; /* failed connects in a row */
    _Atomic uint32_t streak;   /* ejections since the last successful connect */
    _Atomic uint64_t until_ns; /* see above (tg_now_ns clock) */
};

/* The length of the streak-th ejection in a row (streak >= 1). */
uint64_t tg_outlier_ejection_ns(const struct tg_conf_outlier *c, uint32_t streak);

/* How many of n_endpoints may be ejected at once. */
uint32_t tg_outlier_max_ejected(uint32_t n_endpoints, uint32_t percent);

/* Ejected (or retired) at time now. */
static inline bool tg_outlier_ejected(struct tg_outlier *o, uint64_t now)
{
    uint64_t u = atomic_load_explicit(&o->until_ns, memory_order_relaxed);
    return u != 0 && now < u;
}

/* A connect failed. Returns the length of the ejection this failure
 * started (ns), or 0 when it ejected nothing (detection off, not enough
 * failures in a row, already ejected, retired, or the cluster at its
 * limit). n_ejected is the cluster's count, n_endpoints its size now. */
uint64_t tg_outlier_failure(struct tg_outlier *o, const struct tg_conf_outlier *c,
                            _Atomic uint32_t *n_ejected, uint32_t n_endpoints, uint64_t now);

/* A connect succeeded: the failure run and the ejection streak end. */
void tg_outlier_success(struct tg_outlier *o);

/* Main thread. An ejection whose time has passed at now ends: uncounted,
 * failure run reset. True when this call returned the endpoint. */
bool tg_outlier_expire(struct tg_outlier *o, _Atomic uint32_t *n_ejected, uint64_t now);

/* Main thread. End an ejection now (a health-check probe succeeded).
 * True when the endpoint was ejected. */
bool tg_outlier_clear(struct tg_outlier *o, _Atomic uint32_t *n_ejected);

/* Main thread. The endpoint leaves its cluster: uncounted if ejected, and
 * never ejected again. */
void tg_outlier_retire(struct tg_outlier *o, _Atomic uint32_t *n_ejected);

#endif
