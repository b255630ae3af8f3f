#include "proxy/tg_gateway.h"

#include <arpa/inet.h>
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin/tg_admin.h"
#include "core/tg_log.h"
#include "core/tg_time.h"
#include "ossl/tg_ossl.h"
#include "proxy/tg_worker.h"
#include "tls/tg_tls.h"
#include "upstream/tg_cluster.h"
#include "upstream/tg_resolver.h"

struct tg_gateway {
    struct tg_config *cfg;
    struct tg_tls_listener **tls;
    size_t n_tls;
    struct tg_worker *workers;
    int n_workers;
    int n_started;
    struct tg_core_stats **stats; /* one per worker, for /stats */
    struct ev_loop *loop;         /* main thread */
    ev_signal sigterm, sigint;
    ev_async worker_exit;
    struct tg_admin *admin;
    struct tg_resolver *resolver; /* NULL when no upstream has a host name */
    struct tg_cluster **clusters; /* one per listener */
    _Atomic uint64_t active;      /* open connections, all workers (limits.max_connections) */
    _Atomic int exited;
    _Atomic bool stopping;
    uint64_t started_ns;
};

/* tg_worker_host.exited: on the worker's thread, as it finishes. */
static void tg_gateway_worker_exited(void *arg)
{
    struct tg_gateway *gw = arg;
    atomic_fetch_add_explicit(&gw->exited, 1, memory_order_acq_rel);
    ev_async_send(gw->loop, &gw->worker_exit);
}

static void tg_gateway_render(struct tg_buf *out, void *arg)
{
    struct tg_gateway *gw = arg;
    tg_prom_header(out, "tlsgate_info", "gauge", "Build and runtime information");
    tg_buf_printf(out, "tlsgate_info{version=\"%s\",workers=\"%d\"} 1\n", TG_VERSION,
                  gw->n_workers);
    tg_prom_header(out, "tlsgate_uptime_seconds", "gauge", "Seconds since start");
    tg_prom_value(out, "tlsgate_uptime_seconds", "", (tg_now_ns() - gw->started_ns) / TG_NS_PER_S);
    tg_core_stats_render(out, gw->stats, (size_t)gw->n_workers);
    if (gw->clusters != NULL)
        tg_cluster_render(out, gw->clusters, gw->cfg->n_listeners);
    tg_keyprov_render_stats(out);
}

static bool tg_gateway_ready(void *arg)
{
    struct tg_gateway *gw = arg;
    if (atomic_load(&gw->stopping) || gw->n_started != gw->n_workers)
        return false;
    /* Not before every upstream name had its first answer: until then a
     * connection could find no endpoint. */
    for (size_t i = 0; gw->clusters != NULL && i < gw->cfg->n_listeners; i++) {
        if (gw->clusters[i] != NULL && !tg_cluster_ready(gw->clusters[i]))
            return false;
    }
    return true;
}

static void tg_signal_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_gateway *gw = s->data;
    bool again = atomic_exchange(&gw->stopping, true);
    TG_INFO("%s: %s", s->signum == SIGTERM ? "SIGTERM" : "SIGINT",
            again ? "stopping now" : "draining connections");
    for (int i = 0; i < gw->n_started; i++)
        tg_worker_request_stop(&gw->workers[i], again);
}

static void tg_worker_exit_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)revents;
    struct tg_gateway *gw = a->data;
    if (atomic_load_explicit(&gw->exited, memory_order_acquire) >= gw->n_started) {
        if (!atomic_load(&gw->stopping))
            TG_ERROR("all workers stopped unexpectedly");
        ev_break(loop, EVBREAK_ALL);
    }
}

static void tg_gateway_free(struct tg_gateway *gw)
{
    if (gw == NULL)
        return;
    tg_admin_stop(gw->admin);
    if (gw->workers != NULL) {
        for (int i = 0; i < gw->n_workers; i++)
            tg_worker_destroy(&gw->workers[i]);
    }
    /* The workers have released their cluster slots (or never ran). */
    for (size_t i = 0; gw->clusters != NULL && i < gw->cfg->n_listeners; i++) {
        tg_cluster_stop(gw->clusters[i]);
        tg_cluster_unref(gw->clusters[i]);
    }
    free(gw->clusters);
    tg_resolver_free(gw->resolver);
    free(gw->workers);
    free(gw->stats);
    for (size_t i = 0; i < gw->n_tls; i++)
        tg_tls_listener_free(gw->tls[i]);
    free(gw->tls);
    tg_keyprov_shutdown();
    free(gw);
}

/* Build every listener's TLS contexts (keys, certificates, providers). */
static int tg_gateway_build_tls(struct tg_gateway *gw)
{
    char err[TG_CONFIG_ERRLEN] = "";
    const struct tg_config *cfg = gw->cfg;
    gw->tls = calloc(cfg->n_listeners, sizeof(*gw->tls));
    if (gw->tls == NULL)
        return 1;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        int rc = tg_tls_listener_new(&cfg->listeners[i], tg_worker_ssl_async_cb, &gw->tls[i], err,
                                     sizeof(err));
        if (rc != TG_OK) {
            fprintf(stderr, "tlsgate: %s\n", err[0] ? err : tg_strerror(rc));
            tg_log_openssl_errors(TG_LOG_DEBUG, "tls");
            return rc == TG_ENOMEM ? 1 : 2;
        }
        gw->n_tls = i + 1;
    }
    return 0;
}

static int tg_gateway_setup(struct tg_config *cfg, struct tg_gateway **out)
{
    *out = NULL;
    tg_log_set_level((enum tg_log_level)cfg->log_level);
    if (tg_ossl_init() != TG_OK) {
        fprintf(stderr, "tlsgate: cannot initialise OpenSSL and the tlsgate provider\n");
        return 1;
    }
    struct tg_gateway *gw = calloc(1, sizeof(*gw));
    if (gw == NULL)
        return 1;
    gw->cfg = cfg;
    int rc = tg_gateway_build_tls(gw);
    if (rc != 0) {
        tg_gateway_free(gw);
        return rc;
    }
    *out = gw;
    return 0;
}

int tg_gateway_check(struct tg_config *cfg)
{
    struct tg_gateway *gw = NULL;
    int rc = tg_gateway_setup(cfg, &gw);
    if (rc == 0) {
        size_t certs = 0;
        for (size_t i = 0; i < cfg->n_listeners; i++)
            certs += cfg->listeners[i].tls.n_certs;
        printf("%s: configuration OK (%zu listener(s), %zu certificate(s))\n", cfg->source_name,
               cfg->n_listeners, certs);
    }
    tg_gateway_free(gw);
    tg_ossl_cleanup();
    return rc;
}

/* One cluster per listener, started on the main loop (names are looked up
 * from now on), handed to every worker. */
static int tg_gateway_clusters(struct tg_gateway *gw)
{
    const struct tg_config *cfg = gw->cfg;
    bool names = false;
    for (size_t li = 0; li < cfg->n_listeners; li++) {
        for (size_t k = 0; k < cfg->listeners[li].upstream.n_endpoints; k++)
            names = names || cfg->listeners[li].upstream.endpoints[k].is_name;
    }
    if (names) {
        char err[TG_CONFIG_ERRLEN] = "";
        int rc = tg_resolver_new(gw->loop, &cfg->dns, &gw->resolver, err, sizeof(err));
        if (rc != TG_OK) {
            fprintf(stderr, "tlsgate: %s\n", err[0] ? err : tg_strerror(rc));
            return rc;
        }
    }
    gw->clusters = calloc(cfg->n_listeners, sizeof(*gw->clusters));
    if (gw->clusters == NULL)
        return TG_ENOMEM;
    for (size_t li = 0; li < cfg->n_listeners; li++) {
        const struct tg_conf_listener *l = &cfg->listeners[li];
        TG_GUARD(tg_cluster_new(l->name, &l->upstream, gw->n_workers, &gw->clusters[li]));
        TG_GUARD(tg_cluster_start(gw->clusters[li], gw->loop, gw->resolver));
        for (int i = 0; i < gw->n_workers; i++)
            gw->workers[i].listeners[li].cluster = gw->clusters[li];
    }
    return TG_OK;
}

static void tg_addr_text(const struct tg_conf_addr *a, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->ss;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        port = ntohs(s4->sin_port);
        snprintf(buf, len, "%s:%d", host, port);
    } else {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        port = ntohs(s6->sin6_port);
        snprintf(buf, len, "[%s]:%d", host, port);
    }
}

int tg_gateway_run(struct tg_config *cfg)
{
    struct tg_gateway *gw = NULL;
    int rc = tg_gateway_setup(cfg, &gw);
    if (rc != 0) {
        tg_ossl_cleanup();
        return rc;
    }
    signal(SIGPIPE, SIG_IGN);
    gw->started_ns = tg_now_ns();
    gw->loop = EV_DEFAULT;
    gw->n_workers = cfg->concurrency;
    gw->workers = calloc((size_t)gw->n_workers, sizeof(*gw->workers));
    gw->stats = calloc((size_t)gw->n_workers, sizeof(*gw->stats));
    if (gw->workers == NULL || gw->stats == NULL) {
        rc = 1;
        goto out;
    }
    struct tg_worker_host host = {
        .active = &gw->active,
        .max_active = cfg->limits.max_connections,
        .exited = tg_gateway_worker_exited,
        .exited_arg = gw,
    };
    for (int i = 0; i < gw->n_workers; i++) {
        if (tg_worker_init(&gw->workers[i], i, cfg, &host) != TG_OK) {
            rc = 1;
            goto out;
        }
        gw->stats[i] = &gw->workers[i].stats;
    }
    char err[TG_CONFIG_ERRLEN];
    for (size_t li = 0; li < cfg->n_listeners; li++) {
        if (tg_worker_open_listeners(gw->workers, gw->n_workers, li, &cfg->listeners[li], err,
                                     sizeof(err)) != TG_OK) {
            fprintf(stderr, "tlsgate: %s\n", err);
            rc = 1;
            goto out;
        }
        for (int i = 0; i < gw->n_workers; i++)
            gw->workers[i].listeners[li].tls = gw->tls[li];
        char addr[80];
        tg_addr_text(&cfg->listeners[li].addr, addr, sizeof(addr));
        const struct tg_conf_listener *lc = &cfg->listeners[li];
        char pp[96] = "";
        if (lc->proxy_protocol || lc->upstream.proxy_protocol != 0)
            snprintf(pp, sizeof(pp),
                     " (PROXY protocol: %s from the load balancer, %s to the upstream)",
                     lc->proxy_protocol ? "required" : "none",
                     lc->upstream.proxy_protocol == 1   ? "v1"
                     : lc->upstream.proxy_protocol == 2 ? "v2"
                                                        : "none");
        TG_INFO("listener %s: listening on %s, upstream %s%s", lc->name, addr, lc->upstream.text,
                pp);
        tg_tls_listener_describe(gw->tls[li], cfg->listeners[li].name);
    }
    if (tg_gateway_clusters(gw) != TG_OK) {
        rc = 1;
        goto out;
    }
    if (cfg->has_admin) {
        struct tg_admin_callbacks cb = {tg_gateway_render, tg_gateway_ready, gw};
        if (tg_admin_start(gw->loop, &cfg->admin, &cb, &gw->admin) != TG_OK) {
            fprintf(stderr, "tlsgate: admin.address: cannot listen on %s\n", cfg->admin.text);
            rc = 1;
            goto out;
        }
    }
    ev_signal_init(&gw->sigterm, tg_signal_cb, SIGTERM);
    gw->sigterm.data = gw;
    ev_signal_start(gw->loop, &gw->sigterm);
    ev_signal_init(&gw->sigint, tg_signal_cb, SIGINT);
    gw->sigint.data = gw;
    ev_signal_start(gw->loop, &gw->sigint);
    ev_async_init(&gw->worker_exit, tg_worker_exit_cb);
    gw->worker_exit.data = gw;
    ev_async_start(gw->loop, &gw->worker_exit);

    for (int i = 0; i < gw->n_workers; i++) {
        if (pthread_create(&gw->workers[i].thread, NULL, tg_worker_main, &gw->workers[i]) != 0) {
            TG_ERROR("cannot start worker %d", i);
            atomic_store(&gw->stopping, true);
            for (int j = 0; j < gw->n_started; j++)
                tg_worker_request_stop(&gw->workers[j], true);
            rc = 1;
            break;
        }
        gw->n_started++;
    }
    if (rc == 0)
        TG_INFO("tlsgate %s ready: %d worker(s)", TG_VERSION, gw->n_workers);
    if (gw->n_started > 0)
        ev_run(gw->loop, 0);
    for (int i = 0; i < gw->n_started; i++)
        pthread_join(gw->workers[i].thread, NULL);
    if (rc == 0)
        TG_INFO("stopped");
    ev_signal_stop(gw->loop, &gw->sigterm);
    ev_signal_stop(gw->loop, &gw->sigint);
    ev_async_stop(gw->loop, &gw->worker_exit);
out:
    tg_gateway_free(gw);
    tg_ossl_cleanup();
    return rc;
}
