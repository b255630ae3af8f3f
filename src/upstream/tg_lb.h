/*
 * tg_lb: the load-balancing choice among a snapshot's endpoints, as pure
 * functions over a view (the caller says what each endpoint's state and
 * load is), so that they are tested without sockets or threads.
 *
 * Policies (upstream.lb_policy):
 *   round_robin        the weighted ring in order, from a per-worker cursor.
 *   least_connections  the endpoint with the fewest active connections per
 *                      unit of weight, ties broken in ring order; among more
 *                      than TG_LB_SCAN_MAX endpoints, the better of two
 *                      drawn at random (weighted), so the cost stays flat.
 *   random             one drawn at random, weighted (a random ring slot).
 *
 * Each endpoint is USABLE, DEGRADED (ejected or failing its health check)
 * or EXCLUDED (already tried by this connection). A usable endpoint is
 * always preferred; when none is left, a degraded one is chosen by the same
 * rule (panic mode: a cluster that looks entirely down is tried anyway,
 * since a guess beats certain failure); excluded endpoints never.
 *
 * The ring is the weighted order: endpoint i appears weights[i] times,
 * spread evenly (tg_lb_ring_build), so a cursor walking it serves every
 * endpoint in proportion to its weight without bursts.
 *
 * Threading: pure; a cursor belongs to one thread.
 */
#ifndef TG_LB_H
#define TG_LB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TG_LB_SCAN_MAX 16

enum tg_lb_state { TG_LB_USABLE, TG_LB_DEGRADED, TG_LB_EXCLUDED };

struct tg_lb_view {
    uint32_t n;              /* endpoints */
    const uint32_t *weights; /* n weights >= 1 */
    const uint32_t *ring;    /* ring_len endpoint indices */
    uint32_t ring_len;
    enum tg_lb_state (*state)(void *arg, uint32_t i);
    uint32_t (*load)(void *arg, uint32_t i); /* active connections (least_connections) */
    void *arg;
};

/* A worker's position: round-robin cursor and random state. */
struct tg_lb_cursor {
    uint64_t rr;
    uint64_t rng; /* never 0 */
};

void tg_lb_cursor_init(struct tg_lb_cursor *c, uint64_t seed);
uint64_t tg_lb_rand(struct tg_lb_cursor *c);

/* The chosen endpoint's index, or -1 when every endpoint is excluded (or
 * there is none). *panic (may be NULL) says whether it is a degraded one
 * chosen because no usable one was left. policy: enum tg_lb_policy. */
int64_t tg_lb_pick(int policy, const struct tg_lb_view *v, struct tg_lb_cursor *c, bool *panic);

/* The weighted ring of n endpoints into ring (room for the sum of the
 * weights, after dividing them by their greatest common divisor); returns
 * its length. Equal weights give 0, 1, ..., n-1. */
uint32_t tg_lb_ring_build(const uint32_t *weights, uint32_t n, uint32_t *ring);
/* The length tg_lb_ring_build will produce (0 for n == 0). */
uint32_t tg_lb_ring_len(const uint32_t *weights, uint32_t n);

#endif
