#include "proxy/tg_gateway.h"

#include <arpa/inet.h>
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin/tg_admin.h"
#include "alog/tg_alog.h"
#include "core/tg_heap.h"
#include "core/tg_log.h"
#include "core/tg_pidfile.h"
#include "core/tg_time.h"
#include "ossl/tg_ossl.h"
#include "proxy/tg_audit.h"
#include "proxy/tg_gen.h"
#include "proxy/tg_srclimit.h"
#include "proxy/tg_watch.h"
#include "proxy/tg_worker.h"
#include "tls/tg_ticket.h"
#include "tls/tg_tls.h"

struct tg_gateway {
    const struct tg_gateway_opts *opts;
    struct tg_gen *gen;  /* serving new connections (the main thread's reference) */
    struct tg_gen *next; /* offered to the workers; serving once every one took it */
    bool next_offered;   /* false: next waits for its clusters' first DNS answers */
    struct tg_worker *workers;
    int n_workers;
    int n_started;
    struct tg_core_stats **stats; /* one per worker, for /stats */
    struct ev_loop *loop;         /* main thread */
    ev_signal sigterm, sigint, sighup, sigusr1;
    ev_async worker_exit;
    ev_async switched;
    ev_prepare upstreams_wait; /* next's clusters not ready yet: look before each poll */
    struct tg_admin *admin;
    struct tg_watch *watch; /* NULL: reload.watch off, or no inotify */
    struct tg_pidfile *pidfile;
    struct tg_ticket_ring *tickets; /* every generation's session ticket keys */
    ev_timer tickets_timer;         /* the next rotation: retired keys wiped on time */
    ev_timer certs_timer;           /* daily: certificates expired or expiring */
    struct tg_alog *alog;           /* NULL: access_log off (restart-only: tg_gen_check_restart) */
    _Atomic uint64_t active;        /* open connections, all workers (limits.max_connections) */
    struct tg_srclimit *sources;    /* per source address (limits.max_connections_per_source) */
    _Atomic int exited;
    _Atomic int acks;    /* workers that took `next` */
    bool reload_again;   /* asked while a switch was in progress */
    _Atomic int serving; /* workers whose start succeeded */
    _Atomic bool stopping;
    bool announced; /* "ready" logged (main thread) */
    bool failed;    /* a worker stopped unasked: exit status 1 */
    uint64_t started_ns;
    uint64_t reloads_ok, reloads_failed;
    uint64_t loaded_at; /* wall clock, seconds: when `gen` was loaded */
};

static void tg_gateway_reload(struct tg_gateway *gw, const char *why);

/* tg_worker_host.exited: on the worker's thread, as it finishes. */
static void tg_gateway_worker_exited(void *arg)
{
    struct tg_gateway *gw = arg;
    atomic_fetch_add_explicit(&gw->exited, 1, memory_order_acq_rel);
    ev_async_send(gw->loop, &gw->worker_exit);
}

/* tg_worker_host.switched: on the worker's thread, once it took `next`. */
static void tg_gateway_worker_switched(void *arg, const struct tg_gen *gen)
{
    (void)gen;
    struct tg_gateway *gw = arg;
    atomic_fetch_add_explicit(&gw->acks, 1, memory_order_acq_rel);
    ev_async_send(gw->loop, &gw->switched);
}

static uint64_t tg_wall_s(void)
{
    return (uint64_t)time(NULL);
}

/* Start-up and every reload: what the configuration risks. */
static void tg_gateway_audit(const struct tg_gen *g)
{
    struct tg_audit_ids ids;
    tg_audit_ids_self(&ids);
    tg_audit_config(g->cfg, &ids, tg_audit_emit_log, NULL);
    tg_audit_certs(g, (int64_t)time(NULL), tg_audit_emit_log, NULL);
}

static void tg_certs_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_gateway *gw = w->data;
    tg_audit_certs(gw->gen, (int64_t)time(NULL), tg_audit_emit_log, NULL);
}

/* Rotate the ticket keys when due and sleep until the next rotation. */
static void tg_tickets_schedule(struct tg_gateway *gw)
{
    uint64_t left = tg_ticket_ring_advance(gw->tickets, tg_ticket_ring_now(gw->tickets));
    ev_timer_stop(gw->loop, &gw->tickets_timer);
    /* A millisecond late rather than early: the ring decides by its own
     * clock, and an early wake-up would only sleep again. */
    ev_timer_set(&gw->tickets_timer, tg_ns_to_s(left) + 0.001, 0.0);
    ev_timer_start(gw->loop, &gw->tickets_timer);
}

static void tg_tickets_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    tg_tickets_schedule(w->data);
}

/* tg_worker_host.started: on the worker's thread, once it serves. */
static void tg_gateway_worker_started(void *arg)
{
    struct tg_gateway *gw = arg;
    atomic_fetch_add_explicit(&gw->serving, 1, memory_order_acq_rel);
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
    tg_prom_header(out, "tlsgate_config_reloads_total", "counter",
                   "Configuration reloads (SIGHUP, tlsgate reload, certificate files changed), by "
                   "result");
    tg_prom_value(out, "tlsgate_config_reloads_total", "result=\"ok\"", gw->reloads_ok);
    tg_prom_value(out, "tlsgate_config_reloads_total", "result=\"error\"", gw->reloads_failed);
    tg_prom_header(out, "tlsgate_config_last_reload_success_timestamp_seconds", "gauge",
                   "When the configuration serving now was loaded: start-up or the last "
                   "successful reload (Unix time)");
    tg_prom_value(out, "tlsgate_config_last_reload_success_timestamp_seconds", "", gw->loaded_at);
    tg_prom_header(out, "tlsgate_config_generation", "gauge",
                   "Generation of the configuration serving new connections (1 at start-up, one "
                   "more per successful reload)");
    tg_prom_value(out, "tlsgate_config_generation", "", gw->gen->id);
    tg_prom_header(out, "tlsgate_config_generations_active", "gauge",
                   "Configuration generations in memory: the one serving, and older ones whose "
                   "connections are still open");
    tg_prom_value(out, "tlsgate_config_generations_active", "", tg_gen_alive());
    tg_gen_render_certs(gw->gen, out);
    tg_ticket_ring_render(gw->tickets, out);
    if (gw->admin != NULL) {
        tg_prom_header(out, "tlsgate_admin_connections_refused_total", "counter",
                       "Admin connections closed at accept: the client is outside "
                       "admin.allowed_sources");
        tg_prom_value(out, "tlsgate_admin_connections_refused_total", "",
                      tg_admin_refused(gw->admin));
    }
    tg_core_stats_render(out, gw->stats, (size_t)gw->n_workers);
    tg_gen_render_clusters(gw->gen, out);
    tg_alog_render_stats(out, gw->alog);
    tg_keyprov_render_stats(out);
}

static bool tg_gateway_ready(void *arg)
{
    struct tg_gateway *gw = arg;
    /* Not before every upstream name had its first answer: until then a
     * connection could find no endpoint. (A reload switches only once the
     * new clusters are past that point.) */
    return !atomic_load(&gw->stopping) && atomic_load(&gw->serving) == gw->n_workers &&
           tg_gen_upstreams_ready(gw->gen);
}

static void tg_signal_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_gateway *gw = s->data;
    bool again = atomic_exchange(&gw->stopping, true);
    TG_INFO("%s: %s", s->signum == SIGTERM ? "SIGTERM" : "SIGINT",
            again ? "stopping now" : "draining connections");
    /* No reload from now on (one waiting for DNS is dropped at exit). */
    tg_watch_free(gw->watch);
    gw->watch = NULL;
    ev_prepare_stop(gw->loop, &gw->upstreams_wait);
    for (int i = 0; i < gw->n_started; i++)
        tg_worker_request_stop(&gw->workers[i], again);
}

static void tg_sighup_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop;
    (void)revents;
    tg_gateway_reload(s->data, "SIGHUP");
}

/* SIGUSR1: reopen the access-log file (logrotate's postrotate). */
static void tg_sigusr1_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_gateway *gw = s->data;
    if (gw->alog == NULL) {
        TG_INFO("SIGUSR1: no access log to reopen");
        return;
    }
    tg_alog_reopen(gw->alog);
}

static void tg_watch_cb(void *arg)
{
    tg_gateway_reload(arg, "certificate or key files changed");
}

/* A worker started or stopped (both come through worker_exit). */
static void tg_worker_exit_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)revents;
    struct tg_gateway *gw = a->data;
    int exited = atomic_load_explicit(&gw->exited, memory_order_acquire);
    if (exited > 0 && !atomic_load(&gw->stopping)) {
        /* Workers end only when asked to, or when they cannot start (the
         * worker said why): serving with fewer than configured would hide
         * it. Stop the others too; the exit status says it failed. */
        TG_ERROR("%d of %d worker(s) stopped without being asked (see above): tlsgate stops "
                 "(exit status 1)",
                 exited, gw->n_workers);
        gw->failed = true;
        atomic_store(&gw->stopping, true);
        for (int i = 0; i < gw->n_started; i++)
            tg_worker_request_stop(&gw->workers[i], true);
    }
    if (!gw->announced && !atomic_load(&gw->stopping) &&
        atomic_load(&gw->serving) == gw->n_workers) {
        gw->announced = true;
        if (tg_heap_kind() != TG_HEAP_GLIBC)
            TG_INFO("memory allocator: %s (preloaded)", tg_heap_name());
        TG_INFO("tlsgate %s ready: %d worker(s)", TG_VERSION, gw->n_workers);
    }
    if (exited >= gw->n_started)
        ev_break(loop, EVBREAK_ALL);
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

static const char *tg_pp_version_text(int v)
{
    return v == 1 ? "v1" : v == 2 ? "v2" : "none";
}

/* The log lines of a generation's listeners: addresses (tests read the
 * ports from them), upstreams, PROXY protocol, certificates, providers; and
 * the listeners prev had that g drops. */
static void tg_gateway_describe(const struct tg_gen *g, const struct tg_gen *prev)
{
    for (size_t i = 0; i < g->n_listeners; i++) {
        const struct tg_gen_listener *l = &g->listeners[i];
        const struct tg_conf_listener *lc = l->conf;
        char addr[80];
        tg_addr_text(&lc->addr, addr, sizeof(addr));
        char pp[96] = "";
        if (lc->proxy_protocol || lc->upstream.proxy_protocol != 0)
            snprintf(pp, sizeof(pp),
                     " (PROXY protocol: %s from the load balancer, %s to the upstream)",
                     lc->proxy_protocol ? "required" : "none",
                     tg_pp_version_text(lc->upstream.proxy_protocol));
        /* On a reload: whether the listener's cluster carries on. */
        const char *cl = prev == NULL      ? ""
                         : l->cluster_kept ? " (cluster unchanged)"
                                           : " (new cluster)";
        TG_INFO("listener %s: %s %s, upstream %s%s%s", lc->name,
                l->inherited ? "keeps" : "listening on", addr, lc->upstream.text, cl, pp);
        tg_tls_listener_describe(l->tls, lc->name);
    }
    for (size_t i = 0; prev != NULL && i < prev->n_listeners; i++) {
        const char *name = prev->listeners[i].conf->name;
        if (tg_gen_find(g, name) == NULL)
            TG_INFO("listener %s: removed; its open connections finish", name);
    }
}

/* Watch the certificate, key, client CA and CRL files g reads
 * (reload.watch). */
static void tg_gateway_watch(struct tg_gateway *gw, const struct tg_gen *g)
{
    const struct tg_config *cfg = g->cfg;
    if (gw->watch == NULL && cfg->reload.watch &&
        tg_watch_new(gw->loop, tg_watch_cb, gw, &gw->watch) != TG_OK)
        return;
    if (gw->watch == NULL)
        return;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < cfg->n_listeners; i++)
        cap += 2 * cfg->listeners[i].tls.n_certs + 2;
    const char **paths = calloc(cap + 1, sizeof(*paths));
    if (paths == NULL) {
        TG_WARN("reload.watch: out of memory: the files watched stay as they were");
        return;
    }
    for (size_t i = 0; cfg->reload.watch && i < cfg->n_listeners; i++) {
        const struct tg_conf_tls *tls = &cfg->listeners[i].tls;
        for (size_t c = 0; c < tls->n_certs; c++) {
            if (tls->certs[c].chain.path != NULL)
                paths[n++] = tls->certs[c].chain.path;
            if (tls->certs[c].private_key.path != NULL)
                paths[n++] = tls->certs[c].private_key.path;
        }
        if (tls->client_cert.ca.path != NULL)
            paths[n++] = tls->client_cert.ca.path;
        if (tls->client_cert.crl.path != NULL)
            paths[n++] = tls->client_cert.crl.path;
    }
    tg_watch_set(gw->watch, paths, n, cfg->reload.debounce_ns);
    free(paths);
    if (n > 0)
        TG_DEBUG("reload.watch: %zu file(s) in %zu director(ies)", n, tg_watch_dirs(gw->watch));
}

/* ---- reload ---- */

/* Every worker took `next`: it serves. */
static void tg_switched_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_gateway *gw = a->data;
    if (gw->next == NULL || atomic_load_explicit(&gw->acks, memory_order_acquire) < gw->n_started)
        return;
    struct tg_gen *old = gw->gen;
    gw->gen = gw->next;
    gw->next = NULL;
    gw->reloads_ok++;
    gw->loaded_at = tg_wall_s();
    tg_log_set_level((enum tg_log_level)gw->gen->cfg->log_level);
    if (!atomic_load(&gw->stopping)) {
        tg_gateway_describe(gw->gen, old);
        tg_gateway_watch(gw, gw->gen);
        tg_gateway_audit(gw->gen);
    }
    /* Who may use the admin endpoint follows the configuration. */
    if (gw->admin != NULL && tg_admin_set_allowed(gw->admin, gw->gen->cfg->admin_allowed,
                                                  gw->gen->cfg->n_admin_allowed) != TG_OK)
        TG_ERROR("reload: admin.allowed_sources: out of memory; the previous list stays");
    if (gw->gen->cfg->tickets.rotation_ns != tg_ticket_ring_interval(gw->tickets)) {
        tg_ticket_ring_set_interval(gw->tickets, gw->gen->cfg->tickets.rotation_ns,
                                    tg_ticket_ring_now(gw->tickets));
        tg_tickets_schedule(gw);
    }
    TG_INFO("reload: generation %llu serves new connections; generation %llu finishes its own",
            (unsigned long long)gw->gen->id, (unsigned long long)old->id);
    /* The clusters the new generation did not keep stop looking up names
     * and probing; connections still open keep their endpoints. */
    tg_gen_retire(old, gw->gen);
    tg_gen_unref(old);
    if (gw->reload_again) {
        gw->reload_again = false;
        tg_gateway_reload(gw, "asked again during the last one");
    }
}

/* next is ready: every worker takes it from its own loop. */
static void tg_gateway_offer(struct tg_gateway *gw)
{
    gw->next_offered = true;
    atomic_store_explicit(&gw->acks, 0, memory_order_release);
    for (int i = 0; i < gw->n_started; i++)
        tg_worker_offer(&gw->workers[i], gw->next);
}

/* Before the main loop blocks, after the callbacks of its turn (the
 * resolver's answers among them), while next waits for the first answers
 * of its new clusters' names (bounded by the dns block's query timeout and
 * attempts: a failed look-up counts as an answer). */
static void tg_upstreams_wait_cb(struct ev_loop *loop, ev_prepare *c, int revents)
{
    (void)revents;
    struct tg_gateway *gw = c->data;
    if (gw->next == NULL || gw->next_offered || !tg_gen_upstreams_ready(gw->next))
        return;
    ev_prepare_stop(loop, c);
    TG_INFO("reload: the new upstream names have their first answers");
    tg_gateway_offer(gw);
}

static void tg_gateway_reload(struct tg_gateway *gw, const char *why)
{
    if (atomic_load(&gw->stopping))
        return;
    if (gw->next != NULL) {
        /* One switch at a time; this request is served right after it. */
        TG_INFO("reload (%s): after the one in progress", why);
        gw->reload_again = true;
        return;
    }
    TG_INFO("reload (%s): reading %s", why, gw->gen->cfg->source_name);
    char err[TG_CONFIG_ERRLEN] = "";
    struct tg_config *cfg = NULL;
    struct tg_gen *g = NULL;
    int rc = gw->opts->load(gw->opts->load_arg, &cfg, err, sizeof(err));
    if (rc != TG_OK)
        goto out;
    if (gw->opts->log_level >= 0)
        cfg->log_level = gw->opts->log_level;
    rc = tg_gen_check_restart(gw->gen->cfg, cfg, err, sizeof(err));
    if (rc != TG_OK) {
        tg_config_free(cfg);
        goto out;
    }
    /* Built and validated here, off the workers' loops: keys, certificates,
     * providers, TLS contexts, sockets. */
    rc = tg_gen_new(cfg, gw->n_workers, tg_worker_ssl_async_cb, &g, err, sizeof(err));
    if (rc != TG_OK)
        goto out;
    /* The same ticket keys: tickets issued before the reload resume. */
    rc = tg_gen_use_tickets(g, gw->tickets, err, sizeof(err));
    if (rc != TG_OK)
        goto out;
    rc = tg_gen_open_sockets(g, gw->gen, err, sizeof(err));
    if (rc != TG_OK)
        goto out;
    /* Last, as it starts look-ups and health checks: each listener keeps its
     * cluster when its upstream did not change, else gets a new one. */
    rc = tg_gen_upstreams(g, gw->gen, gw->loop, err, sizeof(err));
    if (rc != TG_OK)
        goto out;
    gw->next = g;
    g = NULL;
    gw->next_offered = false;
    if (tg_gen_upstreams_ready(gw->next)) {
        tg_gateway_offer(gw);
    } else {
        TG_INFO("reload: waiting for the first answers for the new upstream names");
        ev_prepare_start(gw->loop, &gw->upstreams_wait);
    }
out:
    /* Its clusters kept from the serving generation go on. */
    tg_gen_retire(g, gw->gen);
    tg_gen_unref(g);
    if (rc != TG_OK) {
        gw->reloads_failed++;
        tg_log_openssl_errors(TG_LOG_DEBUG, "reload");
        TG_ERROR("reload failed: %s; generation %llu keeps serving", err[0] ? err : tg_strerror(rc),
                 (unsigned long long)gw->gen->id);
    }
}

/* ---- start and stop ---- */

static void tg_gateway_free(struct tg_gateway *gw)
{
    if (gw == NULL)
        return;
    tg_admin_stop(gw->admin);
    tg_watch_free(gw->watch);
    tg_alog_free(gw->alog); /* after the workers ended: every line is written */
    if (gw->workers != NULL) {
        for (int i = 0; i < gw->n_workers; i++)
            tg_worker_destroy(&gw->workers[i]);
    }
    free(gw->workers);
    free(gw->stats);
    tg_srclimit_free(gw->sources);
    /* The workers are gone: every cluster stops, then goes. */
    tg_gen_retire(gw->next, gw->gen);
    tg_gen_retire(gw->gen, NULL);
    tg_gen_unref(gw->next);
    tg_gen_unref(gw->gen);
    /* After every SSL_CTX that used it. */
    tg_ticket_ring_free(gw->tickets);
    tg_keyprov_shutdown();
    tg_pidfile_release(gw->pidfile);
    free(gw);
}

/* Exit status of a failed build: 1 when out of memory, else 2 (the
 * configuration is wrong). */
static int tg_gateway_build(struct tg_config *cfg, int n_workers, struct tg_gen **out)
{
    char err[TG_CONFIG_ERRLEN] = "";
    tg_log_set_level((enum tg_log_level)cfg->log_level);
    if (tg_ossl_init() != TG_OK) {
        fprintf(stderr, "tlsgate: cannot initialise OpenSSL and the tlsgate provider\n");
        tg_config_free(cfg);
        return 1;
    }
    int rc = tg_gen_new(cfg, n_workers, tg_worker_ssl_async_cb, out, err, sizeof(err));
    if (rc != TG_OK) {
        fprintf(stderr, "tlsgate: %s\n", err[0] ? err : tg_strerror(rc));
        tg_log_openssl_errors(TG_LOG_DEBUG, "tls");
        return rc == TG_ENOMEM ? 1 : 2;
    }
    return 0;
}

/* tg_audit findings: `check-config` prints them. */
int tg_gateway_check(struct tg_config *cfg)
{
    struct tg_gen *g = NULL;
    int rc = tg_gateway_build(cfg, 1, &g);
    if (rc == 0) {
        struct tg_audit_ids ids;
        tg_audit_ids_self(&ids);
        tg_audit_config(g->cfg, &ids, tg_audit_emit_stderr, NULL);
        tg_audit_certs(g, (int64_t)time(NULL), tg_audit_emit_stderr, NULL);
        size_t certs = 0;
        for (size_t i = 0; i < g->cfg->n_listeners; i++)
            certs += g->cfg->listeners[i].tls.n_certs;
        printf("%s: configuration OK (%zu listener(s), %zu certificate(s))\n", g->cfg->source_name,
               g->cfg->n_listeners, certs);
    }
    tg_gen_unref(g);
    tg_keyprov_shutdown();
    tg_ossl_cleanup();
    return rc;
}

/* The pid file, once the configuration is known to be good and before any
 * socket is opened: a second instance stops here. */
static int tg_gateway_pidfile(struct tg_gateway *gw)
{
    const struct tg_gateway_opts *o = gw->opts;
    if (o->pid_file == NULL)
        return 0;
    char err[600];
    pid_t holder = 0;
    int rc = tg_pidfile_acquire(o->pid_file, !o->pid_file_explicit, &gw->pidfile, &holder, err,
                                sizeof(err));
    if (rc == TG_OK)
        return 0;
    if (rc == TG_EAGAIN || o->pid_file_explicit) {
        fprintf(stderr, "tlsgate: %s\n", err);
        return 1;
    }
    TG_WARN("%s; running without a pid file (`tlsgate reload` cannot find this process, SIGHUP "
            "works)",
            err);
    return 0;
}

int tg_gateway_run(struct tg_config *cfg, const struct tg_gateway_opts *opts)
{
    /* SIGUSR1's default action ends the process: a logrotate postrotate
     * that comes while the certificates and providers are still loading
     * must not. Its handler (reopen) is installed with the other signals. */
    signal(SIGUSR1, SIG_IGN);
    struct tg_gateway *gw = calloc(1, sizeof(*gw));
    if (gw == NULL) {
        tg_config_free(cfg);
        return 1;
    }
    gw->opts = opts;
    gw->n_workers = cfg->concurrency;
    int rc = tg_gateway_build(cfg, gw->n_workers, &gw->gen);
    if (rc != 0) {
        free(gw);
        tg_keyprov_shutdown();
        tg_ossl_cleanup();
        return rc;
    }
    char err[TG_CONFIG_ERRLEN] = "";
    /* One ring for the life of the process: every generation's contexts
     * seal tickets with it. */
    if (tg_ticket_ring_new(gw->gen->cfg->tickets.rotation_ns, tg_ticket_clock_ns(), &gw->tickets) !=
            TG_OK ||
        tg_gen_use_tickets(gw->gen, gw->tickets, err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "tlsgate: %s\n", err[0] ? err : "cannot make the session ticket keys");
        rc = 1;
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);
    gw->started_ns = tg_now_ns();
    gw->loaded_at = tg_wall_s();
    gw->loop = EV_DEFAULT;
    if ((rc = tg_gateway_pidfile(gw)) != 0)
        goto out;
    if (tg_gen_open_sockets(gw->gen, NULL, err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "tlsgate: %s\n", err);
        rc = 1;
        goto out;
    }
    /* One cluster per listener, started on the main loop: names are looked
     * up from now on (/ready waits for their first answers). */
    if (tg_gen_upstreams(gw->gen, NULL, gw->loop, err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "tlsgate: %s\n", err[0] ? err : "out of memory starting the upstreams");
        rc = 1;
        goto out;
    }
    gw->workers = calloc((size_t)gw->n_workers, sizeof(*gw->workers));
    gw->stats = calloc((size_t)gw->n_workers, sizeof(*gw->stats));
    if (gw->workers == NULL || gw->stats == NULL) {
        rc = 1;
        goto out;
    }
    /* Always made (a reload may set limits.max_connections_per_source);
     * its pages stay untouched, not resident, while no source is counted. */
    if (tg_srclimit_new(&gw->sources) != TG_OK) {
        fprintf(stderr, "tlsgate: cannot set up the per-source connection counts\n");
        rc = 1;
        goto out;
    }
    const struct tg_config *c = gw->gen->cfg;
    struct tg_worker_host host = {
        .active = &gw->active,
        .exited = tg_gateway_worker_exited,
        .exited_arg = gw,
        .switched = tg_gateway_worker_switched,
        .started = tg_gateway_worker_started,
        .sources = gw->sources,
    };
    for (int i = 0; i < gw->n_workers; i++) {
        if (tg_worker_init(&gw->workers[i], i, gw->gen, &host) != TG_OK) {
            rc = 1;
            goto out;
        }
        gw->stats[i] = &gw->workers[i].stats;
    }
    if (c->access_log.dest != TG_CONF_ALOG_OFF) {
        int arc = tg_alog_open(&c->access_log, gw->n_workers, &gw->alog, err, sizeof(err));
        if (arc != TG_OK) {
            fprintf(stderr, "tlsgate: %s\n", err);
            rc = arc == TG_ECONFIG ? 2 : 1;
            goto out;
        }
        if (tg_alog_start(gw->alog) != TG_OK) {
            TG_ERROR("cannot start the access-log writer");
            rc = 1;
            goto out;
        }
        for (int i = 0; i < gw->n_workers; i++)
            gw->workers[i].alog = tg_alog_ring_of(gw->alog, i);
    }
    tg_gateway_describe(gw->gen, NULL);
    tg_gateway_audit(gw->gen);
    if (c->has_admin) {
        struct tg_admin_callbacks cb = {tg_gateway_render, tg_gateway_ready, gw};
        if (tg_admin_start(gw->loop, &c->admin, &cb, &gw->admin) != TG_OK) {
            fprintf(stderr, "tlsgate: admin.address: cannot listen on %s\n", c->admin.text);
            rc = 1;
            goto out;
        }
        if (tg_admin_set_allowed(gw->admin, c->admin_allowed, c->n_admin_allowed) != TG_OK) {
            fprintf(stderr, "tlsgate: admin.allowed_sources: out of memory\n");
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
    ev_signal_init(&gw->sighup, tg_sighup_cb, SIGHUP);
    gw->sighup.data = gw;
    ev_signal_start(gw->loop, &gw->sighup);
    ev_signal_init(&gw->sigusr1, tg_sigusr1_cb, SIGUSR1);
    gw->sigusr1.data = gw;
    ev_signal_start(gw->loop, &gw->sigusr1);
    ev_async_init(&gw->worker_exit, tg_worker_exit_cb);
    gw->worker_exit.data = gw;
    ev_async_start(gw->loop, &gw->worker_exit);
    ev_async_init(&gw->switched, tg_switched_cb);
    gw->switched.data = gw;
    ev_async_start(gw->loop, &gw->switched);
    ev_prepare_init(&gw->upstreams_wait, tg_upstreams_wait_cb);
    gw->upstreams_wait.data = gw;
    ev_init(&gw->tickets_timer, tg_tickets_timer_cb);
    gw->tickets_timer.data = gw;
    tg_tickets_schedule(gw);
    ev_timer_init(&gw->certs_timer, tg_certs_timer_cb, 86400.0, 86400.0);
    gw->certs_timer.data = gw;
    ev_timer_start(gw->loop, &gw->certs_timer);
    tg_gateway_watch(gw, gw->gen);

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
    /* "ready" is logged when every worker serves (tg_worker_exit_cb). */
    if (gw->n_started > 0)
        ev_run(gw->loop, 0);
    for (int i = 0; i < gw->n_started; i++)
        pthread_join(gw->workers[i].thread, NULL);
    /* Every worker has ended: the writer drains what they logged. */
    tg_alog_stop(gw->alog);
    if (gw->failed)
        rc = 1;
    if (rc == 0)
        TG_INFO("stopped");
    ev_signal_stop(gw->loop, &gw->sigterm);
    ev_signal_stop(gw->loop, &gw->sigint);
    ev_signal_stop(gw->loop, &gw->sighup);
    ev_signal_stop(gw->loop, &gw->sigusr1);
    ev_async_stop(gw->loop, &gw->worker_exit);
    ev_async_stop(gw->loop, &gw->switched);
    ev_prepare_stop(gw->loop, &gw->upstreams_wait);
    ev_timer_stop(gw->loop, &gw->tickets_timer);
    ev_timer_stop(gw->loop, &gw->certs_timer);
out:
    tg_gateway_free(gw);
    tg_ossl_cleanup();
    return rc;
}
