/*
 * One generation of the running configuration (tg_gen.h).
 */
#include "proxy/tg_gen.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/tg_log.h"
#include "core/tg_stats.h"
#include "keyprov/tg_keyprov.h"
#include "upstream/tg_resolver.h"

/* A resolver and the generations that use it (main thread only: created by
 * tg_gen_upstreams, released by tg_gen_retire). */
struct tg_gen_dns {
    struct tg_resolver *res;
    unsigned refs;
};

/* Identities handed out on the main thread only. */
static uint64_t tg_gen_next_id = 1;
static uint64_t tg_gen_next_sock_id = 1;
static _Atomic unsigned long tg_gen_alive_n;

unsigned long tg_gen_alive(void)
{
    return atomic_load_explicit(&tg_gen_alive_n, memory_order_relaxed);
}

bool tg_gen_same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a;
        const struct sockaddr_in *y = (const struct sockaddr_in *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
        const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)b;
        return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return false;
}

static void tg_gen_free(struct tg_gen *g)
{
    /* The main thread retired it before it let go (its clusters stopped,
     * its resolver released): what is left is safe on any thread. */
    TG_ASSERT(!g->upstreams || g->retired);
    for (size_t i = 0; g->listeners != NULL && i < g->n_listeners; i++) {
        struct tg_gen_listener *l = &g->listeners[i];
        for (int w = 0; l->fds != NULL && w < g->n_workers; w++) {
            if (l->fds[w] >= 0)
                close(l->fds[w]);
        }
        free(l->fds);
        /* No worker uses it through g any more: what waits in the
         * mailboxes can go. */
        if (l->cluster_retired)
            tg_cluster_stop(l->cluster);
        tg_cluster_unref(l->cluster);
        tg_tls_listener_free(l->tls);
    }
    free(g->listeners);
    tg_config_free(g->cfg);
    free(g);
    atomic_fetch_sub_explicit(&tg_gen_alive_n, 1, memory_order_relaxed);
}

struct tg_gen *tg_gen_ref(struct tg_gen *g)
{
    atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
    return g;
}

void tg_gen_unref(struct tg_gen *g)
{
    /* acq_rel: whatever a thread did with g happens before the free, on
     * whichever thread drops the last reference. */
    if (g != NULL && atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) == 1)
        tg_gen_free(g);
}

int tg_gen_new(struct tg_config *cfg, int n_workers, SSL_async_callback_fn async_cb,
               struct tg_gen **out, char *err, size_t errlen)
{
    *out = NULL;
    struct tg_gen *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        tg_config_free(cfg);
        return TG_ENOMEM;
    }
    atomic_init(&g->refs, 1);
    atomic_fetch_add_explicit(&tg_gen_alive_n, 1, memory_order_relaxed);
    g->cfg = cfg;
    g->n_workers = n_workers;
    g->listeners = calloc(cfg->n_listeners, sizeof(*g->listeners));
    if (g->listeners == NULL) {
        tg_gen_free(g);
        return TG_ENOMEM;
    }
    g->n_listeners = cfg->n_listeners;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        struct tg_gen_listener *l = &g->listeners[i];
        l->conf = &cfg->listeners[i];
        l->configured = cfg->listeners[i].addr.ss;
        int rc = tg_tls_listener_new(l->conf, async_cb, &l->tls, err, errlen);
        if (rc != TG_OK) {
            tg_gen_free(g);
            return rc;
        }
    }
    g->kp_slots = tg_keyprov_slots_used();
    g->id = tg_gen_next_id++;
    *out = g;
    return TG_OK;
}

/* ---- sockets ---- */

static int tg_listen_socket(const struct sockaddr_storage *ss, socklen_t len, int backlog,
                            int *out_errno)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        goto fail;
    if (ss->ss_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    /* Accepted sockets inherit it: one system call per listener instead of
     * one per connection. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)ss, len) < 0 || listen(fd, backlog) < 0)
        goto fail;
    return fd;
fail:
    *out_errno = errno;
    if (fd >= 0)
        close(fd);
    return -1;
}

/* One socket per worker on the listener's address, all bound to the same
 * port (the first bind resolves port 0). */
static int tg_gen_listen(struct tg_gen *g, size_t li, char *err, size_t errlen)
{
    struct tg_gen_listener *l = &g->listeners[li];
    struct tg_conf_listener *conf = &g->cfg->listeners[li];
    l->fds = malloc((size_t)g->n_workers * sizeof(*l->fds));
    if (l->fds == NULL)
        return TG_ENOMEM;
    for (int w = 0; w < g->n_workers; w++)
        l->fds[w] = -1;
    struct sockaddr_storage ss = conf->addr.ss;
    socklen_t len = conf->addr.len;
    for (int w = 0; w < g->n_workers; w++) {
        int e = 0;
        int fd = tg_listen_socket(&ss, len, conf->backlog, &e);
        if (fd < 0) {
            char path[512];
            snprintf(path, sizeof(path), "%s.address", conf->path);
            tg_conf_error(err, errlen, conf->addr.mark.line > 0 ? &conf->addr.mark : &conf->mark,
                          path, "cannot listen on %s: %s", conf->addr.text, strerror(e));
            return TG_EIO;
        }
        l->fds[w] = fd;
        if (w == 0) {
            /* Port 0 means "any": every worker must share the one chosen. */
            socklen_t sl = sizeof(ss);
            if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
                len = sl;
        }
    }
    /* The bound address (with the real port), for logs and tests. */
    conf->addr.ss = ss;
    conf->addr.len = len;
    l->sock_id = tg_gen_next_sock_id++;
    return TG_OK;
}

int tg_gen_open_sockets(struct tg_gen *g, const struct tg_gen *prev, char *err, size_t errlen)
{
    size_t np = prev != NULL ? prev->n_listeners : 0;
    int rc = TG_ENOMEM;
    bool *claimed = calloc(np + 1, sizeof(*claimed));
    long *match = malloc((g->n_listeners + 1) * sizeof(*match));
    if (claimed == NULL || match == NULL)
        goto out;
    for (size_t i = 0; i < g->n_listeners; i++)
        match[i] = -1;
    /* The same listener at the same address first; then any listener that
     * served the address (renamed, or two listeners swapping addresses). */
    for (int by_name = 1; by_name >= 0; by_name--) {
        for (size_t i = 0; i < g->n_listeners; i++) {
            for (size_t j = 0; match[i] < 0 && j < np; j++) {
                const struct tg_gen_listener *p = &prev->listeners[j];
                if (!claimed[j] && tg_gen_same_addr(&p->configured, &g->listeners[i].configured) &&
                    (!by_name || strcmp(p->conf->name, g->listeners[i].conf->name) == 0)) {
                    match[i] = (long)j;
                    claimed[j] = true;
                }
            }
        }
    }
    for (size_t i = 0; i < g->n_listeners; i++) {
        struct tg_gen_listener *l = &g->listeners[i];
        if (match[i] >= 0) {
            const struct tg_gen_listener *p = &prev->listeners[match[i]];
            struct tg_conf_listener *conf = &g->cfg->listeners[i];
            conf->addr.ss = p->conf->addr.ss;
            conf->addr.len = p->conf->addr.len;
            l->sock_id = p->sock_id;
            l->inherited = true;
            continue;
        }
        rc = tg_gen_listen(g, i, err, errlen);
        if (rc != TG_OK)
            goto out;
    }
    rc = TG_OK;
out:
    free(claimed);
    free(match);
    return rc;
}

int tg_gen_take_fd(struct tg_gen *g, size_t li, int w)
{
    struct tg_gen_listener *l = &g->listeners[li];
    if (l->fds == NULL || w < 0 || w >= g->n_workers)
        return -1;
    int fd = l->fds[w];
    l->fds[w] = -1;
    return fd;
}

const struct tg_gen_listener *tg_gen_find(const struct tg_gen *g, const char *name)
{
    for (size_t i = 0; i < g->n_listeners; i++) {
        if (strcmp(g->listeners[i].conf->name, name) == 0)
            return &g->listeners[i];
    }
    return NULL;
}

/* ---- upstream clusters ---- */

static void tg_gen_dns_release(struct tg_gen_dns *d)
{
    if (d == NULL || --d->refs > 0)
        return;
    tg_resolver_free(d->res);
    free(d);
}

/* The resolver of g's new clusters: prev's when the dns block is the same,
 * else a new one. */
static int tg_gen_dns(struct tg_gen *g, const struct tg_gen *prev, struct ev_loop *loop, char *err,
                      size_t errlen)
{
    if (prev != NULL && prev->dns != NULL && tg_conf_dns_equal(&prev->cfg->dns, &g->cfg->dns)) {
        g->dns = prev->dns;
        g->dns->refs++;
        return TG_OK;
    }
    struct tg_gen_dns *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return TG_ENOMEM;
    int rc = tg_resolver_new(loop, &g->cfg->dns, &d->res, err, errlen);
    if (rc != TG_OK) {
        free(d);
        return rc;
    }
    d->refs = 1;
    g->dns = d;
    return TG_OK;
}

/* The cluster prev has for g's listener i, if g may keep it. */
static struct tg_cluster *tg_gen_keepable(const struct tg_gen *g, size_t i,
                                          const struct tg_gen *prev)
{
    const struct tg_conf_listener *c = g->listeners[i].conf;
    const struct tg_gen_listener *p = prev != NULL ? tg_gen_find(prev, c->name) : NULL;
    if (p == NULL || p->cluster == NULL ||
        !tg_conf_upstream_same_cluster(&p->conf->upstream, &c->upstream))
        return NULL;
    /* Names were looked up with prev's resolver settings. */
    if (tg_conf_upstream_has_names(&c->upstream) &&
        !tg_conf_dns_equal(&prev->cfg->dns, &g->cfg->dns))
        return NULL;
    return p->cluster;
}

int tg_gen_upstreams(struct tg_gen *g, const struct tg_gen *prev, struct ev_loop *loop, char *err,
                     size_t errlen)
{
    TG_ENSURE(!g->upstreams, TG_ESTATE);
    g->upstreams = true;
    for (size_t i = 0; i < g->n_listeners; i++) {
        struct tg_gen_listener *l = &g->listeners[i];
        struct tg_cluster *kept = tg_gen_keepable(g, i, prev);
        if (kept != NULL) {
            tg_cluster_ref(kept);
            l->cluster = kept;
            l->cluster_kept = true;
            continue;
        }
        TG_GUARD(tg_cluster_new(l->conf->name, &l->conf->upstream, g->n_workers, &l->cluster));
        if (loop == NULL)
            continue;
        if (g->dns == NULL && tg_conf_upstream_has_names(&l->conf->upstream))
            TG_GUARD(tg_gen_dns(g, prev, loop, err, errlen));
        TG_GUARD(tg_cluster_start(l->cluster, loop, g->dns != NULL ? g->dns->res : NULL));
    }
    /* A kept cluster with names uses prev's resolver: hold it too. */
    for (size_t i = 0; loop != NULL && g->dns == NULL && i < g->n_listeners; i++) {
        if (g->listeners[i].cluster_kept &&
            tg_conf_upstream_has_names(&g->listeners[i].conf->upstream))
            TG_GUARD(tg_gen_dns(g, prev, loop, err, errlen));
    }
    return TG_OK;
}

bool tg_gen_upstreams_ready(const struct tg_gen *g)
{
    for (size_t i = 0; i < g->n_listeners; i++) {
        if (g->listeners[i].cluster != NULL && !tg_cluster_ready(g->listeners[i].cluster))
            return false;
    }
    return true;
}

static bool tg_gen_holds(const struct tg_gen *g, const struct tg_cluster *cl)
{
    for (size_t i = 0; g != NULL && i < g->n_listeners; i++) {
        if (g->listeners[i].cluster == cl)
            return true;
    }
    return false;
}

void tg_gen_retire(struct tg_gen *g, const struct tg_gen *keep)
{
    if (g == NULL || !g->upstreams || g->retired)
        return;
    g->retired = true;
    for (size_t i = 0; i < g->n_listeners; i++) {
        struct tg_gen_listener *l = &g->listeners[i];
        if (l->cluster != NULL && !tg_gen_holds(keep, l->cluster)) {
            tg_cluster_retire(l->cluster);
            l->cluster_retired = true;
        }
    }
    /* Last: the clusters that used it have cancelled their queries. */
    tg_gen_dns_release(g->dns);
    g->dns = NULL;
}

void tg_gen_render_clusters(const struct tg_gen *g, struct tg_buf *out)
{
    struct tg_cluster **cls = calloc(g->n_listeners + 1, sizeof(*cls));
    if (cls == NULL)
        return;
    for (size_t i = 0; i < g->n_listeners; i++)
        cls[i] = g->listeners[i].cluster;
    tg_cluster_render(out, cls, g->n_listeners);
    free(cls);
}

/* ---- what a reload may not change ---- */

int tg_gen_check_restart(const struct tg_config *old_cfg, const struct tg_config *new_cfg,
                         char *err, size_t errlen)
{
    const struct tg_conf_mark file = {new_cfg->source_name, 0, 0};
    if (new_cfg->concurrency != old_cfg->concurrency) {
        const struct tg_conf_mark *m =
            new_cfg->concurrency_mark.line > 0 ? &new_cfg->concurrency_mark : &file;
        tg_conf_error(err, errlen, m, "concurrency",
                      "changed from %d to %d: the number of workers changes only at a restart "
                      "(nothing was reloaded)",
                      old_cfg->concurrency, new_cfg->concurrency);
        return TG_ECONFIG;
    }
    bool same = old_cfg->has_admin == new_cfg->has_admin &&
                (!old_cfg->has_admin || tg_gen_same_addr(&old_cfg->admin.ss, &new_cfg->admin.ss));
    if (!same) {
        const struct tg_conf_mark *m = new_cfg->has_admin ? &new_cfg->admin.mark : &file;
        tg_conf_error(err, errlen, m, new_cfg->has_admin ? "admin.address" : "admin",
                      "changed from %s to %s: the admin endpoint moves only at a restart "
                      "(nothing was reloaded)",
                      old_cfg->has_admin ? old_cfg->admin.text : "none",
                      new_cfg->has_admin ? new_cfg->admin.text : "none");
        return TG_ECONFIG;
    }
    const struct tg_conf_access_log *oa = &old_cfg->access_log, *na = &new_cfg->access_log;
    if (oa->dest != na->dest || oa->format != na->format || oa->buffer != na->buffer ||
        (na->dest == TG_CONF_ALOG_FILE && strcmp(oa->path, na->path) != 0)) {
        /* The writer thread and the workers' rings live as long as the
         * process; SIGUSR1 reopens the file (log rotation). */
        tg_conf_error(err, errlen, na->mark.line > 0 ? &na->mark : &file, "access_log",
                      "changed: the access log's path, format and buffer change only at a "
                      "restart (nothing was reloaded; SIGUSR1 reopens the file)");
        return TG_ECONFIG;
    }
    return TG_OK;
}

/* ---- metrics ---- */

/* A Prometheus label value: backslash, double quote and newline escaped. */
static void tg_gen_label(char *out, size_t len, const char *s)
{
    size_t o = 0;
    for (; *s != '\0' && o + 3 < len; s++) {
        if (*s == '\\' || *s == '"') {
            out[o++] = '\\';
            out[o++] = *s;
        } else if (*s == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *s;
        }
    }
    out[o] = '\0';
}

void tg_gen_render_certs(const struct tg_gen *g, struct tg_buf *out)
{
    static const char *const name = "tlsgate_certificate_expiry_timestamp_seconds";
    tg_prom_header(out, name, "gauge",
                   "Not-after time of each certificate served to new connections (Unix time)");
    for (size_t i = 0; i < g->n_listeners; i++) {
        const struct tg_gen_listener *l = &g->listeners[i];
        char lname[160], names[1100], labels[1500];
        tg_gen_label(lname, sizeof(lname), l->conf->name);
        for (size_t c = 0; c < tg_tls_listener_cert_count(l->tls); c++) {
            struct tg_tls_cert_info info;
            tg_tls_listener_cert_info(l->tls, c, &info);
            tg_gen_label(names, sizeof(names), info.names);
            snprintf(labels, sizeof(labels), "listener=\"%s\",names=\"%s\",serial=\"%s\"", lname,
                     names, info.serial);
            tg_prom_value(out, name, labels, info.not_after > 0 ? (uint64_t)info.not_after : 0);
        }
    }
}
