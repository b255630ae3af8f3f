/*
 * tg_lb: round robin, least connections and random over a weighted ring,
 * with ejected endpoints skipped and panic mode. Contract in tg_lb.h.
 */
#include "upstream/tg_lb.h"

#include <stdlib.h>
#include <string.h>

#include "config/tg_config.h"

void tg_lb_cursor_init(struct tg_lb_cursor *c, uint64_t seed)
{
    /* splitmix64 of the seed: distinct seeds give unrelated streams. */
    uint64_t z = seed + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    c->rng = z != 0 ? z : 1;
    c->rr = z >> 16;
}

uint64_t tg_lb_rand(struct tg_lb_cursor *c)
{
    /* xorshift64* */
    uint64_t x = c->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    c->rng = x;
    return x * 0x2545f4914f6cdd1dULL;
}

/* Walk the ring from position start: the first usable endpoint, else the
 * first degraded one. *pos gets the ring position taken. */
static int64_t tg_lb_walk(const struct tg_lb_view *v, uint64_t start, uint64_t *pos, bool *panic)
{
    int64_t fallback = -1;
    uint64_t fpos = 0;
    for (uint32_t step = 0; step < v->ring_len; step++) {
        uint64_t p = (start + step) % v->ring_len;
        uint32_t i = v->ring[p];
        enum tg_lb_state s = v->state(v->arg, i);
        if (s == TG_LB_USABLE) {
            *pos = p;
            *panic = false;
            return i;
        }
        if (s == TG_LB_DEGRADED && fallback < 0) {
            fallback = i;
            fpos = p;
        }
    }
    *pos = fpos;
    *panic = fallback >= 0;
    return fallback;
}

static int64_t tg_lb_round_robin(const struct tg_lb_view *v, struct tg_lb_cursor *c, bool *panic)
{
    uint64_t pos;
    int64_t i = tg_lb_walk(v, c->rr % v->ring_len, &pos, panic);
    if (i >= 0)
        c->rr = pos + 1;
    return i;
}

static int64_t tg_lb_random(const struct tg_lb_view *v, struct tg_lb_cursor *c, bool *panic)
{
    /* A few independent draws keep the choice weighted when some are
     * ejected; then a walk from the last draw finds whatever is left. */
    uint64_t p = 0, pos;
    for (int tries = 0; tries < 4; tries++) {
        p = tg_lb_rand(c) % v->ring_len;
        if (v->state(v->arg, v->ring[p]) == TG_LB_USABLE) {
            *panic = false;
            return v->ring[p];
        }
    }
    return tg_lb_walk(v, p, &pos, panic);
}

/* a better than b: fewer connections per unit of weight. */
static bool tg_lb_lighter(const struct tg_lb_view *v, uint32_t a, uint32_t b)
{
    uint64_t la = v->load(v->arg, a), lb = v->load(v->arg, b);
    return la * v->weights[b] < lb * v->weights[a];
}

static int64_t tg_lb_least(const struct tg_lb_view *v, struct tg_lb_cursor *c, bool *panic)
{
    if (v->n > TG_LB_SCAN_MAX) {
        uint32_t a = v->ring[tg_lb_rand(c) % v->ring_len];
        uint32_t b = v->ring[tg_lb_rand(c) % v->ring_len];
        bool ua = v->state(v->arg, a) == TG_LB_USABLE, ub = v->state(v->arg, b) == TG_LB_USABLE;
        if (ua && ub) {
            *panic = false;
            return tg_lb_lighter(v, b, a) ? b : a;
        }
        if (ua || ub) {
            *panic = false;
            return ua ? a : b;
        }
        /* Both out: scan as for a small cluster. */
    }
    /* Start the scan at the cursor, so that ties rotate. */
    int64_t best = -1, best_degraded = -1;
    uint32_t start = (uint32_t)(c->rr++ % v->n);
    for (uint32_t k = 0; k < v->n; k++) {
        uint32_t i = (start + k) % v->n;
        enum tg_lb_state s = v->state(v->arg, i);
        if (s == TG_LB_USABLE && (best < 0 || tg_lb_lighter(v, i, (uint32_t)best)))
            best = i;
        else if (s == TG_LB_DEGRADED &&
                 (best_degraded < 0 || tg_lb_lighter(v, i, (uint32_t)best_degraded)))
            best_degraded = i;
    }
    *panic = best < 0 && best_degraded >= 0;
    return best >= 0 ? best : best_degraded;
}

int64_t tg_lb_pick(int policy, const struct tg_lb_view *v, struct tg_lb_cursor *c, bool *panic)
{
    bool p = false;
    int64_t i = -1;
    if (v->n > 0 && v->ring_len > 0) {
        switch (policy) {
        case TG_LB_LEAST_CONNECTIONS:
            i = tg_lb_least(v, c, &p);
            break;
        case TG_LB_RANDOM:
            i = tg_lb_random(v, c, &p);
            break;
        default:
            i = tg_lb_round_robin(v, c, &p);
            break;
        }
    }
    if (panic != NULL)
        *panic = i >= 0 && p;
    return i;
}

/* ---- the weighted ring ---- */

static uint32_t tg_lb_gcd(uint32_t a, uint32_t b)
{
    while (b != 0) {
        uint32_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static uint32_t tg_lb_weights_gcd(const uint32_t *w, uint32_t n)
{
    uint32_t g = 0;
    for (uint32_t i = 0; i < n; i++)
        g = tg_lb_gcd(g, w[i]);
    return g == 0 ? 1 : g;
}

uint32_t tg_lb_ring_len(const uint32_t *weights, uint32_t n)
{
    uint32_t g = tg_lb_weights_gcd(weights, n), len = 0;
    for (uint32_t i = 0; i < n; i++)
        len += weights[i] / g;
    return len;
}

/* A slot of the ring: the k-th (0-based) appearance of endpoint i. It
 * belongs at the fraction (2k + 1) / (2 w_i) of the ring: each endpoint's
 * appearances are evenly spaced, and the ring is all of them in order. */
struct tg_lb_slot {
    uint32_t i, k, w;
};

static int tg_lb_slot_cmp(const void *pa, const void *pb)
{
    const struct tg_lb_slot *a = pa, *b = pb;
    uint64_t l = (2 * (uint64_t)a->k + 1) * b->w, r = (2 * (uint64_t)b->k + 1) * a->w;
    if (l != r)
        return l < r ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

uint32_t tg_lb_ring_build(const uint32_t *weights, uint32_t n, uint32_t *ring)
{
    uint32_t g = tg_lb_weights_gcd(weights, n);
    uint32_t len = tg_lb_ring_len(weights, n);
    if (len == n) {
        for (uint32_t i = 0; i < n; i++)
            ring[i] = i;
        return n;
    }
    struct tg_lb_slot *s = malloc((size_t)len * sizeof(*s));
    if (s == NULL) {
        /* Unweighted rather than nothing. */
        for (uint32_t i = 0; i < n; i++)
            ring[i] = i;
        return n;
    }
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; i++) {
        for (uint32_t k = 0; k < weights[i] / g; k++)
            s[m++] = (struct tg_lb_slot){i, k, weights[i] / g};
    }
    qsort(s, m, sizeof(*s), tg_lb_slot_cmp);
    for (uint32_t j = 0; j < m; j++)
        ring[j] = s[j].i;
    free(s);
    return m;
}
