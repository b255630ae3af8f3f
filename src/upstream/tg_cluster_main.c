/*
 * tg_cluster_main: the main thread's side of a cluster: look-ups of the
 * configured names and their refresh, the registry of endpoints rebuilt
 * from the answers, active health checks, the tick that ends ejections,
 * and the metrics. Contract in tg_cluster.h.
 *
 * An answer that changes a name's set of addresses rebuilds the registry:
 * the addresses of every entry, in configuration order (each entry's sorted),
 * an address reached through several entries being one endpoint whose
 * weight is the sum. Endpoints whose address stays are reused; new ones are
 * made; the others are retired (never ejected again, counted out) and
 * dropped by the registry. Then a snapshot is published. A failed look-up
 * changes nothing: the entry keeps its last good addresses.
 */
#include "upstream/tg_cluster_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tg_log.h"
#include "core/tg_stats.h"
#include "core/tg_time.h"

/* ---- the registry ---- */

static int tg_cluster_addr_cmp(const void *a, const void *b)
{
    return tg_sockaddr_cmp(a, b);
}

static void tg_cluster_health_cb(void *arg, bool ok, int err);

struct tg_cluster_want {
    union tg_sockaddr addr;
    uint32_t weight;
    const char *host;
};

/* The addresses every entry gives now, merged. Returns the count (at most
 * TG_CLUSTER_MAX_ENDPOINTS); *out is malloc'd (NULL when empty or out of
 * memory: *nomem says which). */
static size_t tg_cluster_wanted(struct tg_cluster *cl, struct tg_cluster_want **out, bool *nomem)
{
    size_t total = 0, n = 0;
    *out = NULL;
    *nomem = false;
    for (size_t i = 0; i < cl->n_entries; i++)
        total += cl->entries[i].n_addrs;
    if (total == 0)
        return 0;
    if (total > TG_CLUSTER_MAX_ENDPOINTS)
        total = TG_CLUSTER_MAX_ENDPOINTS;
    struct tg_cluster_want *w = calloc(total, sizeof(*w));
    if (w == NULL) {
        *nomem = true;
        return 0;
    }
    for (size_t i = 0; i < cl->n_entries; i++) {
        const struct tg_cluster_entry *e = &cl->entries[i];
        for (size_t k = 0; k < e->n_addrs; k++) {
            size_t j;
            for (j = 0; j < n && !tg_sockaddr_equal(&w[j].addr, &e->addrs[k]); j++)
                ;
            if (j < n) {
                w[j].weight += e->weight;
                continue;
            }
            if (n == total) {
                TG_WARN("upstream %s: more than %d endpoints; the rest are left out", cl->name,
                        TG_CLUSTER_MAX_ENDPOINTS);
                goto done;
            }
            w[n++] = (struct tg_cluster_want){e->addrs[k], e->weight, e->text};
        }
    }
done:
    *out = w;
    return n;
}

static void tg_cluster_member_drop(struct tg_cluster *cl, struct tg_cluster_member *m)
{
    tg_health_free(m->hc);
    m->hc = NULL;
    tg_outlier_retire(&m->ep->outlier, &cl->n_ejected);
    tg_cluster_endpoint_unref(m->ep);
    m->ep = NULL;
}

static void tg_cluster_member_checks(struct tg_cluster *cl, struct tg_cluster_member *m)
{
    if (!cl->hc.enabled || cl->loop == NULL || m->hc != NULL)
        return;
    if (tg_health_new(cl->loop, &cl->hc, &m->ep->addr, m->ep->addrlen, 0.0, tg_cluster_health_cb,
                      m->ep, &m->hc) != TG_OK)
        TG_WARN("upstream %s: endpoint %s: out of memory starting its health check", cl->name,
                m->ep->text);
}

static void tg_cluster_log_set(struct tg_cluster *cl, const struct tg_cluster_member *m, size_t n)
{
    char buf[512];
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && off < sizeof(buf) - 1; i++) {
        int w = snprintf(buf + off, sizeof(buf) - off, "%s%s", i ? " " : "", m[i].ep->text);
        if (w < 0 || (size_t)w >= sizeof(buf) - off) {
            snprintf(buf + (sizeof(buf) > 5 ? sizeof(buf) - 5 : 0), 5, "...");
            break;
        }
        off += (size_t)w;
    }
    TG_INFO("upstream %s: %zu endpoint(s): %s", cl->name, n, n > 0 ? buf : "(none)");
}

void tg_cluster_rebuild(struct tg_cluster *cl)
{
    bool nomem;
    struct tg_cluster_want *w = NULL;
    struct tg_cluster_member *nm = NULL;
    struct tg_endpoint **eps = NULL;
    uint32_t *weights = NULL;
    size_t *from = NULL;
    struct tg_cluster_snap *s = NULL;
    size_t n = tg_cluster_wanted(cl, &w, &nomem);
    if (nomem)
        goto fail;
    size_t cnt = n > 0 ? n : 1;
    nm = calloc(cnt, sizeof(*nm));
    eps = calloc(cnt, sizeof(*eps));
    weights = calloc(cnt, sizeof(*weights));
    from = calloc(cnt, sizeof(*from));
    if (nm == NULL || eps == NULL || weights == NULL || from == NULL)
        goto fail;
    /* Nothing in the registry moves until everything new exists. */
    bool changed = n != cl->n_members;
    for (size_t i = 0; i < n; i++) {
        from[i] = SIZE_MAX;
        for (size_t j = 0; j < cl->n_members && from[i] == SIZE_MAX; j++) {
            if (tg_sockaddr_equal(&cl->members[j].ep->addr, &w[i].addr))
                from[i] = j;
        }
        if (from[i] != SIZE_MAX) {
            eps[i] = cl->members[from[i]].ep;
        } else {
            changed = true;
            eps[i] = nm[i].ep = tg_cluster_endpoint_new(cl, &w[i].addr, w[i].host);
            if (eps[i] == NULL)
                goto fail;
        }
        weights[i] = w[i].weight;
    }
    s = tg_cluster_snap_new(eps, weights, (uint32_t)n);
    if (s == NULL)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        if (from[i] != SIZE_MAX) {
            nm[i] = cl->members[from[i]];
            cl->members[from[i]].ep = NULL;
        } else {
            tg_cluster_member_checks(cl, &nm[i]);
        }
    }
    /* What is left in the old registry has left the cluster. */
    for (size_t j = 0; j < cl->n_members; j++) {
        if (cl->members[j].ep != NULL)
            tg_cluster_member_drop(cl, &cl->members[j]);
    }
    free(cl->members);
    cl->members = nm;
    cl->n_members = n;
    atomic_store_explicit(&cl->n_endpoints, (uint32_t)n, memory_order_relaxed);
    tg_cluster_publish(cl, s);
    if (changed)
        tg_cluster_log_set(cl, nm, n);
    free(w);
    free(eps);
    free(weights);
    free(from);
    return;

fail:
    TG_ERROR("upstream %s: out of memory updating the endpoints; keeping the old set", cl->name);
    for (size_t i = 0; nm != NULL && i < n; i++)
        tg_cluster_endpoint_unref(nm[i].ep); /* only the new ones are in nm */
    free(w);
    free(nm);
    free(eps);
    free(weights);
    free(from);
}

/* ---- look-ups ---- */

static void tg_cluster_resolve_cb(void *arg, int status, const char *why,
                                  const union tg_sockaddr *addrs, size_t n, uint32_t ttl_s);

static void tg_cluster_lookup(struct tg_cluster_entry *e)
{
    struct tg_cluster *cl = e->cl;
    if (e->q != NULL || cl->res == NULL)
        return;
    ev_timer_stop(cl->loop, &e->refresh);
    e->started_ns = tg_now_ns();
    if (tg_resolver_resolve(cl->res, e->host, cl->family, tg_cluster_resolve_cb, e, &e->q) !=
        TG_OK) {
        e->q = NULL;
        TG_WARN("upstream %s: out of memory resolving %s", cl->name, e->host);
        ev_timer_set(&e->refresh, tg_ns_to_s(cl->refresh_ns), 0.0);
        ev_timer_start(cl->loop, &e->refresh);
    }
}

static void tg_cluster_refresh_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    tg_cluster_lookup(t->data);
}

static bool tg_cluster_all_answered(const struct tg_cluster *cl)
{
    for (size_t i = 0; i < cl->n_entries; i++) {
        if (!cl->entries[i].answered)
            return false;
    }
    return true;
}

void tg_cluster_answer(struct tg_cluster *cl, size_t entry, int status, const char *why,
                       const union tg_sockaddr *addrs, size_t n, uint32_t ttl_s)
{
    TG_ASSERT(entry < cl->n_entries);
    struct tg_cluster_entry *e = &cl->entries[entry];
    (void)ttl_s;
    e->answered = true;
    if (status != TG_OK || n == 0) {
        atomic_fetch_add_explicit(&cl->dns_failed, 1, memory_order_relaxed);
        if (!e->failing)
            TG_WARN("upstream %s: cannot resolve %s: %s; keeping its last %zu address(es)",
                    cl->name, e->host, why != NULL ? why : "no address", e->n_addrs);
        e->failing = true;
    } else {
        atomic_fetch_add_explicit(&cl->dns_ok, 1, memory_order_relaxed);
        if (e->failing)
            TG_INFO("upstream %s: %s resolves again", cl->name, e->host);
        e->failing = false;
        union tg_sockaddr *v = malloc(n * sizeof(*v));
        if (v == NULL) {
            TG_WARN("upstream %s: out of memory keeping the addresses of %s", cl->name, e->host);
        } else {
            for (size_t i = 0; i < n; i++) {
                v[i] = addrs[i];
                if (v[i].sa.sa_family == AF_INET6)
                    v[i].sin6.sin6_port = htons(e->port);
                else
                    v[i].sin.sin_port = htons(e->port);
            }
            qsort(v, n, sizeof(*v), tg_cluster_addr_cmp);
            bool same = n == e->n_addrs;
            for (size_t i = 0; same && i < n; i++)
                same = tg_sockaddr_equal(&v[i], &e->addrs[i]);
            if (same) {
                free(v);
            } else {
                free(e->addrs);
                e->addrs = v;
                e->n_addrs = n;
                tg_cluster_rebuild(cl);
            }
        }
    }
    if (!atomic_load_explicit(&cl->ready, memory_order_relaxed) && tg_cluster_all_answered(cl))
        atomic_store_explicit(&cl->ready, true, memory_order_release);
}

static void tg_cluster_resolve_cb(void *arg, int status, const char *why,
                                  const union tg_sockaddr *addrs, size_t n, uint32_t ttl_s)
{
    struct tg_cluster_entry *e = arg;
    struct tg_cluster *cl = e->cl;
    e->q = NULL;
    tg_cluster_answer(cl, (size_t)(e - cl->entries), status, why, addrs, n, ttl_s);
    if (!cl->started)
        return;
    double next = tg_ns_to_s(cl->refresh_ns);
    if (cl->respect_ttl && status == TG_OK && ttl_s > 0)
        next = ttl_s < TG_CLUSTER_TTL_MIN_S   ? TG_CLUSTER_TTL_MIN_S
               : ttl_s > TG_CLUSTER_TTL_MAX_S ? TG_CLUSTER_TTL_MAX_S
                                              : (double)ttl_s;
    ev_timer_set(&e->refresh, next, 0.0);
    ev_timer_start(cl->loop, &e->refresh);
}

/* ---- health checks and the tick ---- */

static struct tg_cluster_member *tg_cluster_member_of(struct tg_cluster *cl,
                                                      const struct tg_endpoint *ep)
{
    for (size_t i = 0; i < cl->n_members; i++) {
        if (cl->members[i].ep == ep)
            return &cl->members[i];
    }
    return NULL;
}

static void tg_cluster_health_cb(void *arg, bool ok, int err)
{
    struct tg_endpoint *ep = arg;
    struct tg_cluster *cl = ep->cluster;
    struct tg_cluster_member *m = tg_cluster_member_of(cl, ep);
    if (m == NULL)
        return;
    bool was = atomic_load_explicit(&ep->healthy, memory_order_relaxed);
    bool now = tg_health_judge(&m->run, &cl->hc, was, ok);
    if (now != was) {
        atomic_store_explicit(&ep->healthy, now, memory_order_relaxed);
        if (now)
            TG_INFO("upstream %s: endpoint %s healthy again", cl->name, ep->text);
        else
            TG_WARN("upstream %s: endpoint %s unhealthy after %u failed health checks (%s)",
                    cl->name, ep->text, m->run.failed, strerror(err));
    }
    if (ok && tg_outlier_clear(&ep->outlier, &cl->n_ejected))
        TG_INFO("upstream %s: endpoint %s back in service (health check passed)", cl->name,
                ep->text);
}

static void tg_cluster_tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_cluster *cl = t->data;
    uint64_t now = tg_now_ns();
    if (atomic_load_explicit(&cl->n_ejected, memory_order_relaxed) != 0) {
        for (size_t i = 0; i < cl->n_members; i++) {
            struct tg_endpoint *ep = cl->members[i].ep;
            if (tg_outlier_expire(&ep->outlier, &cl->n_ejected, now))
                TG_INFO("upstream %s: endpoint %s back in service (ejection over)", cl->name,
                        ep->text);
        }
    }
    if (atomic_load_explicit(&cl->refresh_wanted, memory_order_relaxed)) {
        /* A name looked up less than a second ago keeps the request for a
         * later tick: early, but at most once a second per name. */
        bool later = false;
        atomic_store_explicit(&cl->refresh_wanted, false, memory_order_relaxed);
        for (size_t i = 0; i < cl->n_entries; i++) {
            struct tg_cluster_entry *e = &cl->entries[i];
            if (!e->is_name || e->q != NULL)
                continue;
            if (now - e->started_ns >= TG_CLUSTER_EARLY_MIN_NS)
                tg_cluster_lookup(e);
            else
                later = true;
        }
        if (later)
            atomic_store_explicit(&cl->refresh_wanted, true, memory_order_relaxed);
    }
}

int tg_cluster_start(struct tg_cluster *cl, struct ev_loop *loop, struct tg_resolver *res)
{
    TG_ENSURE(!cl->started, TG_ESTATE);
    for (size_t i = 0; i < cl->n_entries; i++)
        TG_ENSURE(!cl->entries[i].is_name || res != NULL, TG_EINVAL);
    cl->loop = loop;
    cl->res = res;
    cl->started = true;
    ev_timer_init(&cl->tick, tg_cluster_tick_cb, TG_CLUSTER_TICK_S, TG_CLUSTER_TICK_S);
    cl->tick.data = cl;
    ev_timer_start(loop, &cl->tick);
    for (size_t i = 0; i < cl->n_members; i++)
        tg_cluster_member_checks(cl, &cl->members[i]);
    for (size_t i = 0; i < cl->n_entries; i++) {
        struct tg_cluster_entry *e = &cl->entries[i];
        ev_timer_init(&e->refresh, tg_cluster_refresh_cb, 0.0, 0.0);
        e->refresh.data = e;
        if (e->is_name)
            tg_cluster_lookup(e);
    }
    return TG_OK;
}

void tg_cluster_main_stop(struct tg_cluster *cl)
{
    if (cl->started) {
        ev_timer_stop(cl->loop, &cl->tick);
        for (size_t i = 0; i < cl->n_entries; i++) {
            struct tg_cluster_entry *e = &cl->entries[i];
            ev_timer_stop(cl->loop, &e->refresh);
            tg_resolver_cancel(e->q);
            e->q = NULL;
        }
        cl->started = false;
    }
    for (size_t i = 0; i < cl->n_members; i++)
        tg_cluster_member_drop(cl, &cl->members[i]);
    cl->n_members = 0;
    atomic_store_explicit(&cl->n_endpoints, 0, memory_order_relaxed);
}

/* ---- metrics ---- */

struct tg_cluster_metric {
    const char *name, *type, *help;
    int what;
};

enum {
    M_ENDPOINTS,
    M_DNS,
    M_CONNECTS,
    M_FAILURES,
    M_ACTIVE,
    M_EJECTED,
    M_EJECTIONS,
    M_HEALTHY,
};

static const struct tg_cluster_metric tg_cluster_metrics[] = {
    {"tlsgate_upstream_endpoints", "gauge", "Endpoints in the upstream cluster now", M_ENDPOINTS},
    {"tlsgate_upstream_dns_resolutions_total", "counter",
     "Look-ups of the upstream host names, by result", M_DNS},
    {"tlsgate_upstream_endpoint_connections_total", "counter",
     "Upstream connections established, per endpoint", M_CONNECTS},
    {"tlsgate_upstream_endpoint_connect_failures_total", "counter",
     "Failed upstream connect attempts, per endpoint and result", M_FAILURES},
    {"tlsgate_upstream_endpoint_active", "gauge", "Connections using the endpoint now", M_ACTIVE},
    {"tlsgate_upstream_endpoint_ejected", "gauge",
     "1 while the endpoint is ejected by outlier detection", M_EJECTED},
    {"tlsgate_upstream_endpoint_ejections_total", "counter",
     "Times outlier detection ejected the endpoint", M_EJECTIONS},
    {"tlsgate_upstream_endpoint_healthy", "gauge",
     "0 while the active health check finds the endpoint unhealthy", M_HEALTHY},
};

static void tg_cluster_render_one(struct tg_buf *out, const struct tg_cluster_metric *m,
                                  struct tg_cluster *cl, uint64_t now)
{
    static const char *const results[] = {"", "refused", "timeout", "error"};
    char lab[256];
    if (m->what == M_ENDPOINTS) {
        snprintf(lab, sizeof(lab), "listener=\"%s\"", cl->name);
        tg_prom_value(out, m->name, lab, cl->n_members);
        return;
    }
    if (m->what == M_DNS) {
        snprintf(lab, sizeof(lab), "listener=\"%s\",result=\"ok\"", cl->name);
        tg_prom_value(out, m->name, lab, atomic_load(&cl->dns_ok));
        snprintf(lab, sizeof(lab), "listener=\"%s\",result=\"failed\"", cl->name);
        tg_prom_value(out, m->name, lab, atomic_load(&cl->dns_failed));
        return;
    }
    for (size_t i = 0; i < cl->n_members; i++) {
        struct tg_endpoint *ep = cl->members[i].ep;
        int n = snprintf(lab, sizeof(lab), "listener=\"%s\",endpoint=\"%s\",host=\"%s\"", cl->name,
                         ep->text, ep->host);
        if (n < 0 || (size_t)n >= sizeof(lab))
            continue;
        uint64_t v = 0;
        switch (m->what) {
        case M_CONNECTS:
            v = atomic_load_explicit(&ep->connects_ok, memory_order_relaxed);
            break;
        case M_FAILURES:
            for (int r = TG_CONNECT_REFUSED; r <= TG_CONNECT_ERROR; r++) {
                char l2[300];
                snprintf(l2, sizeof(l2), "%s,result=\"%s\"", lab, results[r]);
                tg_prom_value(out, m->name, l2,
                              atomic_load_explicit(&ep->connects_failed[r], memory_order_relaxed));
            }
            continue;
        case M_ACTIVE:
            v = atomic_load_explicit(&ep->active, memory_order_relaxed);
            break;
        case M_EJECTED:
            v = tg_outlier_ejected(&ep->outlier, now);
            break;
        case M_EJECTIONS:
            v = atomic_load_explicit(&ep->ejections, memory_order_relaxed);
            break;
        default:
            v = atomic_load_explicit(&ep->healthy, memory_order_relaxed);
            break;
        }
        tg_prom_value(out, m->name, lab, v);
    }
}

void tg_cluster_render(struct tg_buf *out, struct tg_cluster *const *cls, size_t n)
{
    uint64_t now = tg_now_ns();
    if (n == 0)
        return;
    for (size_t k = 0; k < TG_ARRAY_LEN(tg_cluster_metrics); k++) {
        const struct tg_cluster_metric *m = &tg_cluster_metrics[k];
        tg_prom_header(out, m->name, m->type, m->help);
        for (size_t i = 0; i < n; i++) {
            if (cls[i] != NULL)
                tg_cluster_render_one(out, m, cls[i], now);
        }
    }
}
