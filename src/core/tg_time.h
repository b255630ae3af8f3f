/* tg_time: monotonic clock helpers. Thread-safe. */
#ifndef TG_TIME_H
#define TG_TIME_H

#include <stdint.h>
#include <time.h>

#define TG_NS_PER_US 1000ULL
#define TG_NS_PER_MS 1000000ULL
#define TG_NS_PER_S  1000000000ULL

static inline uint64_t tg_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * TG_NS_PER_S + (uint64_t)ts.tv_nsec;
}

static inline double tg_ns_to_s(uint64_t ns)
{
    return (double)ns / 1e9;
}

#endif
