/*
 * tg_cluster: the cluster object, its snapshots and endpoints, and the
 * workers' side (pick, report, done). Contract in tg_cluster.h; the main
 * thread's side is in tg_cluster_main.c.
 */
#include "upstream/tg_cluster_internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/tg_log.h"
#include "core/tg_time.h"

static _Atomic size_t tg_cluster_snaps_alive, tg_cluster_eps_alive;

size_t tg_cluster_live_snapshots(void)
{
    return atomic_load(&tg_cluster_snaps_alive);
}

size_t tg_cluster_live_endpoints(void)
{
    return atomic_load(&tg_cluster_eps_alive);
}

/* ---- the object ---- */

static void tg_cluster_free(struct tg_cluster *cl)
{
    TG_ASSERT(!cl->started);
    for (size_t i = 0; i < cl->n_entries; i++) {
        free(cl->entries[i].text);
        free(cl->entries[i].host);
        free(cl->entries[i].addrs);
    }
    free(cl->entries);
    free(cl->members);
    free(cl->slots);
    free(cl->name);
    free(cl);
}

void tg_cluster_ref(struct tg_cluster *cl)
{
    atomic_fetch_add_explicit(&cl->refs, 1, memory_order_relaxed);
}

void tg_cluster_unref(struct tg_cluster *cl)
{
    if (cl != NULL && atomic_fetch_sub_explicit(&cl->refs, 1, memory_order_acq_rel) == 1)
        tg_cluster_free(cl);
}

static int tg_cluster_entry_init(struct tg_cluster *cl, struct tg_cluster_entry *e,
                                 const struct tg_conf_endpoint *c)
{
    e->cl = cl;
    e->port = c->port;
    e->weight = c->weight;
    e->is_name = c->is_name;
    e->text = strdup(c->text);
    e->host = strdup(c->host);
    if (e->text == NULL || e->host == NULL)
        return TG_ENOMEM;
    if (!c->is_name) {
        e->addrs = calloc(1, sizeof(*e->addrs));
        if (e->addrs == NULL)
            return TG_ENOMEM;
        memcpy(e->addrs, &c->addr.ss,
               c->addr.len < sizeof(*e->addrs) ? c->addr.len : sizeof(*e->addrs));
        e->n_addrs = 1;
        e->answered = true;
    }
    return TG_OK;
}

int tg_cluster_new(const char *name, const struct tg_conf_upstream *conf, int n_slots,
                   struct tg_cluster **out)
{
    *out = NULL;
    TG_ENSURE(n_slots > 0 && conf->n_endpoints > 0, TG_EINVAL);
    struct tg_cluster *cl = calloc(1, sizeof(*cl));
    if (cl == NULL)
        return TG_ENOMEM;
    atomic_init(&cl->refs, 1);
    cl->lb_policy = conf->lb_policy;
    cl->family = conf->dns_lookup_family == TG_DNS_V4   ? AF_INET
                 : conf->dns_lookup_family == TG_DNS_V6 ? AF_INET6
                                                        : AF_UNSPEC;
    cl->max_attempts = conf->max_connect_attempts;
    cl->connect_timeout_ns = conf->connect_timeout_ns;
    cl->refresh_ns = conf->dns_refresh_rate_ns;
    cl->respect_ttl = conf->respect_dns_ttl;
    cl->outlier = conf->outlier;
    cl->hc = conf->health_check;
    cl->name = strdup(name);
    cl->slots = aligned_alloc(64, sizeof(*cl->slots) * (size_t)n_slots);
    cl->entries = calloc(conf->n_endpoints, sizeof(*cl->entries));
    int rc = cl->name == NULL || cl->slots == NULL || cl->entries == NULL ? TG_ENOMEM : TG_OK;
    if (cl->slots != NULL) {
        memset(cl->slots, 0, sizeof(*cl->slots) * (size_t)n_slots);
        cl->n_slots = n_slots;
        for (int i = 0; i < n_slots; i++)
            tg_lb_cursor_init(&cl->slots[i].cursor, tg_now_ns() + (uint64_t)i * 7919);
    }
    bool names = false;
    for (size_t i = 0; rc == TG_OK && i < conf->n_endpoints; i++) {
        cl->n_entries = i + 1;
        rc = tg_cluster_entry_init(cl, &cl->entries[i], &conf->endpoints[i]);
        names = names || conf->endpoints[i].is_name;
    }
    if (rc != TG_OK) {
        tg_cluster_free(cl);
        return rc;
    }
    atomic_init(&cl->ready, !names);
    /* Literal addresses need no loop: publish them now. */
    tg_cluster_rebuild(cl);
    *out = cl;
    return TG_OK;
}

void tg_cluster_retire(struct tg_cluster *cl)
{
    if (cl == NULL)
        return;
    tg_cluster_main_stop(cl);
    tg_cluster_snap_unref(cl->snap);
    cl->snap = NULL;
}

void tg_cluster_stop(struct tg_cluster *cl)
{
    if (cl == NULL)
        return;
    tg_cluster_retire(cl);
    for (int i = 0; i < cl->n_slots; i++)
        tg_cluster_snap_unref(atomic_exchange(&cl->slots[i].mail, NULL));
}

bool tg_cluster_ready(const struct tg_cluster *cl)
{
    return atomic_load_explicit(&((struct tg_cluster *)cl)->ready, memory_order_acquire);
}

uint32_t tg_cluster_size(const struct tg_cluster *cl)
{
    return atomic_load_explicit(&((struct tg_cluster *)cl)->n_endpoints, memory_order_relaxed);
}

uint64_t tg_cluster_connect_timeout_ns(const struct tg_cluster *cl)
{
    return cl->connect_timeout_ns;
}

uint32_t tg_cluster_max_attempts(const struct tg_cluster *cl)
{
    return cl->max_attempts;
}

/* ---- endpoints ---- */

struct tg_endpoint *tg_cluster_endpoint_new(struct tg_cluster *cl, const union tg_sockaddr *a,
                                            const char *host)
{
    struct tg_endpoint *ep = calloc(1, sizeof(*ep));
    if (ep == NULL)
        return NULL;
    ep->cluster = cl;
    tg_cluster_ref(cl);
    ep->addr = *a;
    ep->addrlen = a->sa.sa_family == AF_INET6 ? sizeof(a->sin6) : sizeof(a->sin);
    tg_sockaddr_text(a, ep->text, sizeof(ep->text));
    ep->host = host;
    atomic_init(&ep->refs, 1);
    atomic_init(&ep->healthy, true);
    atomic_fetch_add(&tg_cluster_eps_alive, 1);
    return ep;
}

void tg_cluster_endpoint_unref(struct tg_endpoint *ep)
{
    if (ep == NULL || atomic_fetch_sub_explicit(&ep->refs, 1, memory_order_acq_rel) != 1)
        return;
    struct tg_cluster *cl = ep->cluster;
    free(ep);
    atomic_fetch_sub(&tg_cluster_eps_alive, 1);
    tg_cluster_unref(cl);
}

/* ---- snapshots ---- */

struct tg_cluster_snap *tg_cluster_snap_new(struct tg_endpoint *const *eps, const uint32_t *weights,
                                            uint32_t n)
{
    uint32_t ring_len = tg_lb_ring_len(weights, n);
    size_t size = sizeof(struct tg_cluster_snap) + n * sizeof(struct tg_endpoint *) +
                  n * sizeof(uint32_t) + (size_t)(ring_len > n ? ring_len : n) * sizeof(uint32_t);
    struct tg_cluster_snap *s = calloc(1, size);
    if (s == NULL)
        return NULL;
    s->eps = (struct tg_endpoint **)(s + 1);
    s->weights = (uint32_t *)(s->eps + n);
    s->ring = s->weights + n;
    s->n = n;
    for (uint32_t i = 0; i < n; i++) {
        s->eps[i] = eps[i];
        atomic_fetch_add_explicit(&eps[i]->refs, 1, memory_order_relaxed);
        s->weights[i] = weights[i];
    }
    s->ring_len = n > 0 ? tg_lb_ring_build(s->weights, n, s->ring) : 0;
    atomic_init(&s->refs, 1);
    atomic_fetch_add(&tg_cluster_snaps_alive, 1);
    return s;
}

void tg_cluster_snap_unref(struct tg_cluster_snap *s)
{
    if (s == NULL || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (uint32_t i = 0; i < s->n; i++)
        tg_cluster_endpoint_unref(s->eps[i]);
    free(s);
    atomic_fetch_sub(&tg_cluster_snaps_alive, 1);
}

void tg_cluster_publish(struct tg_cluster *cl, struct tg_cluster_snap *s)
{
    for (int i = 0; i < cl->n_slots; i++) {
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
        /* release: the snapshot's contents before its pointer; the old
         * mail was never taken by the worker, so it is ours to drop. */
        tg_cluster_snap_unref(
            atomic_exchange_explicit(&cl->slots[i].mail, s, memory_order_acq_rel));
    }
    tg_cluster_snap_unref(cl->snap);
    cl->snap = s;
}

/* ---- the workers' side ---- */

struct tg_cluster_pickctx {
    struct tg_cluster_snap *s;
    struct tg_endpoint *const *tried;
    size_t n_tried;
    uint64_t now;
};

static enum tg_lb_state tg_cluster_state(void *arg, uint32_t i)
{
    struct tg_cluster_pickctx *p = arg;
    struct tg_endpoint *ep = p->s->eps[i];
    for (size_t k = 0; k < p->n_tried; k++) {
        if (p->tried[k] == ep)
            return TG_LB_EXCLUDED;
    }
    if (!atomic_load_explicit(&ep->healthy, memory_order_relaxed) ||
        tg_outlier_ejected(&ep->outlier, p->now))
        return TG_LB_DEGRADED;
    return TG_LB_USABLE;
}

static uint32_t tg_cluster_load(void *arg, uint32_t i)
{
    struct tg_cluster_pickctx *p = arg;
    return atomic_load_explicit(&p->s->eps[i]->active, memory_order_relaxed);
}

static struct tg_cluster_snap *tg_cluster_slot_current(struct tg_cluster_slot *slot)
{
    if (atomic_load_explicit(&slot->mail, memory_order_relaxed) != NULL) {
        struct tg_cluster_snap *s =
            atomic_exchange_explicit(&slot->mail, NULL, memory_order_acquire);
        if (s != NULL) {
            tg_cluster_snap_unref(slot->cur);
            slot->cur = s;
        }
    }
    return slot->cur;
}

struct tg_endpoint *tg_cluster_pick(struct tg_cluster *cl, int slot,
                                    struct tg_endpoint *const *tried, size_t n_tried, bool *panic)
{
    TG_ASSERT(slot >= 0 && slot < cl->n_slots);
    struct tg_cluster_slot *sl = &cl->slots[slot];
    struct tg_cluster_snap *s = tg_cluster_slot_current(sl);
    if (panic != NULL)
        *panic = false;
    if (s == NULL || s->n == 0)
        return NULL;
    /* With no ejection counted, every until_ns is 0 or RETIRED, which a
     * time of 0 judges right: skip the clock. */
    uint64_t now =
        atomic_load_explicit(&cl->n_ejected, memory_order_relaxed) != 0 ? tg_now_ns() : 0;
    struct tg_cluster_pickctx ctx = {s, tried, n_tried, now};
    struct tg_lb_view v = {
        s->n, s->weights, s->ring, s->ring_len, tg_cluster_state, tg_cluster_load, &ctx};
    int64_t i = tg_lb_pick(cl->lb_policy, &v, &sl->cursor, panic);
    if (i < 0)
        return NULL;
    struct tg_endpoint *ep = s->eps[i];
    atomic_fetch_add_explicit(&ep->refs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&ep->active, 1, memory_order_relaxed);
    return ep;
}

void tg_cluster_report(struct tg_endpoint *ep, enum tg_connect_result r)
{
    struct tg_cluster *cl = ep->cluster;
    if (r == TG_CONNECT_OK) {
        atomic_fetch_add_explicit(&ep->connects_ok, 1, memory_order_relaxed);
        tg_outlier_success(&ep->outlier);
        return;
    }
    if ((unsigned)r < TG_ARRAY_LEN(ep->connects_failed))
        atomic_fetch_add_explicit(&ep->connects_failed[r], 1, memory_order_relaxed);
    uint64_t d = tg_outlier_failure(&ep->outlier, &cl->outlier, &cl->n_ejected,
                                    atomic_load_explicit(&cl->n_endpoints, memory_order_relaxed),
                                    tg_now_ns());
    if (d != 0) {
        atomic_fetch_add_explicit(&ep->ejections, 1, memory_order_relaxed);
        bool same = strcmp(ep->text, ep->host) == 0;
        TG_WARN("upstream %s: endpoint %s%s%s%s ejected for %.3gs after %u connect failures in a "
                "row",
                cl->name, ep->text, same ? "" : " (", same ? "" : ep->host, same ? "" : ")",
                tg_ns_to_s(d), cl->outlier.consecutive_failures);
    }
    /* The main thread's tick looks again at the names (rate-limited): a
     * backend that moved fails here first. */
    if (!atomic_load_explicit(&cl->refresh_wanted, memory_order_relaxed))
        atomic_store_explicit(&cl->refresh_wanted, true, memory_order_relaxed);
}

void tg_cluster_done(struct tg_endpoint *ep)
{
    atomic_fetch_sub_explicit(&ep->active, 1, memory_order_relaxed);
    tg_cluster_endpoint_unref(ep);
}

void tg_cluster_slot_release(struct tg_cluster *cl, int slot)
{
    if (cl == NULL || slot < 0 || slot >= cl->n_slots)
        return;
    struct tg_cluster_slot *sl = &cl->slots[slot];
    tg_cluster_snap_unref(atomic_exchange_explicit(&sl->mail, NULL, memory_order_acquire));
    tg_cluster_snap_unref(sl->cur);
    sl->cur = NULL;
}
