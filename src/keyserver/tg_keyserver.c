/*
 * The key server: start-up (keys, the listening socket, the admin endpoint),
 * the loop (accept, the prepare that flushes the providers and writes the
 * replies), stop, statistics, and `tlsgate keyserver`. Contract in
 * tg_keyserver.h; the connections are tg_ks_conn.c's, the keys
 * tg_ks_keys.c's.
 *
 * One loop serves every connection and owns one provider set, as a gateway
 * worker does: a cryptomb batch takes the SIGN requests of every gateway
 * connected, and the providers see, as "handshakes in flight", what the
 * gateways report in their requests (tg_ks_update_handshaking).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "admin/tg_admin.h"
#include "core/tg_log.h"
#include "core/tg_time.h"
#include "keyserver/tg_ks_internal.h"

/* Request records kept for reuse. */
#define TG_KS_REQ_POOL 1024
/* Rounds of "flush the providers, write, read what was held back" per
 * prepare before the loop is kept from blocking instead. */
#define TG_KS_ROUNDS 8

/* ---- small pieces the connections use ---- */

void tg_ks_mark_dirty(struct tg_ks *ks, struct tg_ks_conn *c)
{
    if (c->dirty)
        return;
    c->dirty = true;
    c->dirty_next = ks->dirty;
    ks->dirty = c;
}

struct tg_ks_req *tg_ks_req_get(struct tg_ks *ks)
{
    struct tg_ks_req *r = ks->free_reqs;
    if (r != NULL) {
        ks->free_reqs = r->next;
        ks->n_free_reqs--;
        return r;
    }
    return malloc(sizeof(*r));
}

void tg_ks_req_put(struct tg_ks *ks, struct tg_ks_req *r)
{
    if (ks->n_free_reqs >= TG_KS_REQ_POOL) {
        free(r);
        return;
    }
    r->next = ks->free_reqs;
    ks->free_reqs = r;
    ks->n_free_reqs++;
}

void tg_ks_update_handshaking(struct tg_ks *ks)
{
    ks->handshaking = ks->hint_sum > ks->queued ? ks->hint_sum : ks->queued;
    atomic_store_explicit(&ks->stats.hint, ks->hint_sum, memory_order_relaxed);
}

/* ---- the listening socket ---- */

static socklen_t tg_ks_sockaddr(const char *name, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    size_t len = strlen(name);
    if (name[0] == '@') {
        /* Abstract: a leading NUL, then the name without '@', no NUL. */
        memcpy(sa->sun_path + 1, name + 1, len - 1);
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    }
    memcpy(sa->sun_path, name, len);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
}

/* A socket file left by a key server that is gone is removed; one that
 * answers belongs to a running key server. */
static int tg_ks_clear_stale(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? TG_OK : TG_EIO;
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "keyserver.socket: %s exists and is not a socket", path);
        return TG_EIO;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return TG_EIO;
    struct sockaddr_un sa;
    socklen_t sl = tg_ks_sockaddr(path, &sa);
    int rc = connect(fd, (struct sockaddr *)&sa, sl);
    int e = errno;
    close(fd);
    if (rc == 0) {
        snprintf(err, errlen, "keyserver.socket: %s: another key server is running on it", path);
        return TG_EIO;
    }
    if (e != ECONNREFUSED) {
        snprintf(err, errlen, "keyserver.socket: %s: %s", path, strerror(e));
        return TG_EIO;
    }
    TG_INFO("keyserver: removing the stale socket %s", path);
    return unlink(path) == 0 || errno == ENOENT ? TG_OK : TG_EIO;
}

static int tg_ks_listen(struct tg_ks *ks, char *err, size_t errlen)
{
    const struct tg_conf_keyserver *conf = ks->conf;
    const char *name = conf->socket;
    bool abstract = name[0] == '@';
    if (!abstract) {
        int rc = tg_ks_clear_stale(name, err, errlen);
        if (rc != TG_OK) {
            if (err[0] == '\0')
                snprintf(err, errlen, "keyserver.socket: %s: %s", name, strerror(errno));
            return rc;
        }
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "keyserver.socket: socket(): %s", strerror(errno));
        return TG_EIO;
    }
    struct sockaddr_un sa;
    socklen_t sl = tg_ks_sockaddr(name, &sa);
    /* Created owner-only, opened up to socket_mode once its group is set:
     * nobody else can connect in between. */
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&sa, sl);
    int e = errno;
    umask(old);
    if (rc != 0) {
        snprintf(err, errlen, "keyserver.socket: cannot bind %s: %s", name, strerror(e));
        close(fd);
        return TG_EIO;
    }
    if (!abstract) {
        ks->unlink_path = strdup(name);
        if ((conf->has_socket_group && chown(name, (uid_t)-1, (gid_t)conf->socket_group) != 0) ||
            chmod(name, (mode_t)conf->socket_mode) != 0) {
            snprintf(err, errlen, "keyserver.socket: %s: cannot set its %s: %s", name,
                     conf->has_socket_group ? "group or mode" : "mode", strerror(errno));
            close(fd);
            return TG_EIO;
        }
    }
    if (listen(fd, 128) != 0) {
        snprintf(err, errlen, "keyserver.socket: listen on %s: %s", name, strerror(errno));
        close(fd);
        return TG_EIO;
    }
    ks->lfd = fd;
    return TG_OK;
}

static void tg_ks_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct tg_ks *ks = w->data;
    for (int i = 0; i < 64 && !ks->stopping; i++) {
        int fd = accept4(ks->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            tg_ks_conn_accept(ks, fd);
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            TG_WARN("keyserver: accept: %s; pausing accept for 100ms", strerror(errno));
            ev_io_stop(loop, &ks->accept_io);
            ev_timer_set(&ks->accept_retry, 0.1, 0.0);
            ev_timer_start(loop, &ks->accept_retry);
            return;
        }
        TG_WARN("keyserver: accept: %s", strerror(errno));
        return;
    }
}

static void tg_ks_accept_retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct tg_ks *ks = t->data;
    if (!ks->stopping)
        ev_io_start(loop, &ks->accept_io);
}

/* ---- the loop ---- */

/* Write every connection that has replies; reading what was held back may
 * start new requests (and mark connections again). */
static void tg_ks_write_all(struct tg_ks *ks)
{
    while (ks->dirty != NULL) {
        struct tg_ks_conn *c = ks->dirty;
        ks->dirty = c->dirty_next;
        c->dirty_next = NULL;
        c->dirty = false;
        if (c->closed) {
            if (c->pending == 0)
                tg_ks_conn_free(c);
            continue;
        }
        tg_ks_conn_flush(c);
    }
}

static void tg_ks_prepare_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_ks *ks = p->data;
    for (int round = 0; round < TG_KS_ROUNDS; round++) {
        tg_keyprov_set_flush(ks->set);
        if (ks->dirty == NULL)
            break;
        tg_ks_write_all(ks);
    }
    /* Still work after the last round: keep the loop from blocking. */
    if (ks->dirty != NULL)
        ev_idle_start(ks->loop, &ks->idle);
    else
        ev_idle_stop(ks->loop, &ks->idle);
}

static void tg_ks_idle_cb(struct ev_loop *loop, ev_idle *i, int revents)
{
    (void)loop;
    (void)i;
    (void)revents;
}

static void tg_ks_stop_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)revents;
    (void)a;
    ev_break(loop, EVBREAK_ONE);
}

void tg_ks_request_stop(struct tg_ks *ks)
{
    atomic_store(&ks->stop_requested, true);
    ev_async_send(ks->loop, &ks->stop);
}

/* ---- statistics ---- */

void tg_ks_render(struct tg_ks *ks, struct tg_buf *out)
{
    struct tg_ks_stats *s = &ks->stats;
    char lab[128];
    tg_prom_header(out, "tlsgate_keyserver_info", "gauge", "Key server build and keys");
    tg_buf_printf(out, "tlsgate_keyserver_info{version=\"%s\",protocol=\"%d\",keys=\"%zu\"} 1\n",
                  TG_VERSION, TG_KSP_VERSION, ks->keys != NULL ? ks->keys->n : 0);
    tg_prom_header(out, "tlsgate_keyserver_uptime_seconds", "gauge", "Seconds since start");
    tg_prom_value(out, "tlsgate_keyserver_uptime_seconds", "",
                  (tg_now_ns() - ks->started_ns) / TG_NS_PER_S);
    tg_prom_header(out, "tlsgate_keyserver_connections_accepted_total", "counter",
                   "Gateway connections accepted");
    tg_prom_value(out, "tlsgate_keyserver_connections_accepted_total", "",
                  tg_ctr_get(&s->accepted));
    static const char *const refuse[] = {
#define TG_KS_REFUSE_NAME(id, label) label,
        TG_KS_REFUSE_REASONS(TG_KS_REFUSE_NAME)
#undef TG_KS_REFUSE_NAME
    };
    tg_prom_header(out, "tlsgate_keyserver_connections_refused_total", "counter",
                   "Connections refused at accept, by reason");
    for (int i = 0; i < TG_KS_REFUSE_COUNT; i++) {
        snprintf(lab, sizeof(lab), "reason=\"%s\"", refuse[i]);
        tg_prom_value(out, "tlsgate_keyserver_connections_refused_total", lab,
                      tg_ctr_get(&s->refused[i]));
    }
    static const char *const closes[] = {
#define TG_KS_CLOSE_NAME(id, label) label,
        TG_KS_CLOSE_REASONS(TG_KS_CLOSE_NAME)
#undef TG_KS_CLOSE_NAME
    };
    tg_prom_header(out, "tlsgate_keyserver_connections_closed_total", "counter",
                   "Gateway connections closed, by reason");
    for (int i = 0; i < TG_KS_CLOSE_COUNT; i++) {
        snprintf(lab, sizeof(lab), "reason=\"%s\"", closes[i]);
        tg_prom_value(out, "tlsgate_keyserver_connections_closed_total", lab,
                      tg_ctr_get(&s->closed[i]));
    }
    tg_prom_header(out, "tlsgate_keyserver_connections_active", "gauge",
                   "Gateway connections open now");
    tg_prom_value(out, "tlsgate_keyserver_connections_active", "", tg_ctr_get(&s->active));
    tg_prom_header(out, "tlsgate_keyserver_requests_total", "counter",
                   "Requests answered, by type and status");
    static const char *const kinds[] = {"sign", "lookup"};
    for (int k = 0; k < TG_KS_REQ_KIND_COUNT; k++) {
        for (int st = 0; st < TG_KSP_STATUS_COUNT; st++) {
            /* Only the statuses a request of this kind can get. */
            bool possible =
                st == TG_KSP_ST_OK || st == TG_KSP_ST_UNKNOWN_KEY ||
                (k == TG_KS_REQ_SIGN && (st == TG_KSP_ST_BAD_REQUEST || st == TG_KSP_ST_BUSY ||
                                         st == TG_KSP_ST_FAILED || st == TG_KSP_ST_SHUTTING_DOWN));
            if (!possible)
                continue;
            snprintf(lab, sizeof(lab), "type=\"%s\",status=\"%s\"", kinds[k],
                     tg_ksp_status_name((unsigned)st));
            tg_prom_value(out, "tlsgate_keyserver_requests_total", lab,
                          tg_ctr_get(&s->requests[k][st]));
        }
    }
    tg_prom_header(out, "tlsgate_keyserver_requests_in_flight", "gauge",
                   "Signing requests in the key providers now");
    tg_prom_value(out, "tlsgate_keyserver_requests_in_flight", "", tg_ctr_get(&s->queued));
    tg_prom_header(out, "tlsgate_keyserver_gateway_handshakes", "gauge",
                   "Handshakes in flight the connected gateways last reported");
    tg_prom_value(out, "tlsgate_keyserver_gateway_handshakes", "", tg_ctr_get(&s->hint));
    tg_prom_header(out, "tlsgate_keyserver_bytes_received_total", "counter", "Bytes read");
    tg_prom_value(out, "tlsgate_keyserver_bytes_received_total", "", tg_ctr_get(&s->bytes_in));
    tg_prom_header(out, "tlsgate_keyserver_bytes_sent_total", "counter", "Bytes written");
    tg_prom_value(out, "tlsgate_keyserver_bytes_sent_total", "", tg_ctr_get(&s->bytes_out));
    struct tg_hist_spec spec = tg_hist_latency_us;
    spec.name = "tlsgate_keyserver_sign_seconds";
    spec.help = "Time from a signing request read to its reply queued";
    tg_prom_hist(out, &spec, "", &s->latency_us, 1);
    tg_keyprov_render_stats(out);
}

static void tg_ks_admin_render(struct tg_buf *out, void *arg)
{
    tg_ks_render(arg, out);
}

static bool tg_ks_admin_ready(void *arg)
{
    struct tg_ks *ks = arg;
    return ks->set != NULL && !ks->stopping;
}

/* ---- life cycle ---- */

int tg_ks_new(const struct tg_config *cfg, struct ev_loop *loop, struct tg_ks **out, char *err,
              size_t errlen)
{
    *out = NULL;
    err[0] = '\0';
    if (cfg->keyserver == NULL) {
        snprintf(err, errlen, "%s: not a key server's configuration", cfg->source_name);
        return TG_ECONFIG;
    }
    struct tg_ks *ks = calloc(1, sizeof(*ks));
    if (ks == NULL)
        return TG_ENOMEM;
    ks->cfg = cfg;
    ks->conf = cfg->keyserver;
    ks->loop = loop;
    ks->lfd = -1;
    ks->started_ns = tg_now_ns();
    int rc = tg_ks_keys_load(ks->conf, &ks->keys, err, errlen);
    if (rc == TG_OK)
        rc = tg_ks_listen(ks, err, errlen);
    if (rc == TG_OK && cfg->has_admin) {
        struct tg_admin_callbacks cb = {tg_ks_admin_render, tg_ks_admin_ready, ks};
        if (tg_admin_start(loop, &cfg->admin, &cb, &ks->admin) != TG_OK) {
            snprintf(err, errlen, "admin.address: cannot listen on %s", cfg->admin.text);
            rc = TG_EIO;
        } else if (tg_admin_set_allowed(ks->admin, cfg->admin_allowed, cfg->n_admin_allowed) !=
                   TG_OK) {
            snprintf(err, errlen, "admin.allowed_sources: out of memory");
            rc = TG_ENOMEM;
        }
    }
    if (rc != TG_OK) {
        tg_ks_free(ks);
        return rc;
    }
    ev_io_init(&ks->accept_io, tg_ks_accept_cb, ks->lfd, EV_READ);
    ks->accept_io.data = ks;
    ev_timer_init(&ks->accept_retry, tg_ks_accept_retry_cb, 0.0, 0.0);
    ks->accept_retry.data = ks;
    ev_prepare_init(&ks->prepare, tg_ks_prepare_cb);
    ks->prepare.data = ks;
    ev_idle_init(&ks->idle, tg_ks_idle_cb);
    ev_async_init(&ks->stop, tg_ks_stop_cb);
    ks->stop.data = ks;
    ev_async_start(loop, &ks->stop);
    *out = ks;
    return TG_OK;
}

/* The socket file goes as soon as the server stops taking connections, so
 * a new key server can start at once. */
static void tg_ks_unlisten(struct tg_ks *ks)
{
    if (ks->loop != NULL) {
        ev_io_stop(ks->loop, &ks->accept_io);
        ev_timer_stop(ks->loop, &ks->accept_retry);
    }
    if (ks->lfd >= 0)
        close(ks->lfd);
    ks->lfd = -1;
    if (ks->unlink_path != NULL) {
        if (unlink(ks->unlink_path) != 0 && errno != ENOENT)
            TG_WARN("keyserver: cannot remove %s: %s", ks->unlink_path, strerror(errno));
        free(ks->unlink_path);
        ks->unlink_path = NULL;
    }
}

/*
 * After the loop: stop taking connections and reading requests, complete
 * every request taken, answer it, say goodbye (after the goodbye a client
 * knows that what was not answered was not read, and may send it again to
 * the next key server), close. Writes wait for the sockets at most
 * TG_KS_GOODBYE_WAIT in all.
 */
#define TG_KS_GOODBYE_WAIT (2 * TG_NS_PER_S)
static void tg_ks_shutdown(struct tg_ks *ks)
{
    ks->stopping = true;
    tg_ks_unlisten(ks);
    for (struct tg_ks_conn *c = ks->conns; c != NULL; c = c->next) {
        ev_io_stop(ks->loop, &c->rio);
        c->read_paused = true;
    }
    for (int round = 0; round < TG_KS_ROUNDS && ks->queued > 0; round++)
        tg_keyprov_set_drain(ks->set);
    if (ks->queued > 0)
        TG_ERROR("keyserver: %zu request(s) still in a provider at exit", ks->queued);
    uint64_t deadline = tg_now_ns() + TG_KS_GOODBYE_WAIT;
    for (struct tg_ks_conn *c = ks->conns, *next; c != NULL; c = next) {
        next = c->next; /* a failed write closes c (and unlinks it) */
        if (ks->queued == 0)
            tg_ks_conn_goodbye(c);
        tg_ks_conn_flush_wait(c, deadline);
    }
    tg_ks_write_all(ks);
    while (ks->conns != NULL)
        tg_ks_conn_close(ks->conns, TG_KS_CLOSE_SHUTDOWN);
    tg_ks_write_all(ks); /* frees what closing left on the list */
}

int tg_ks_run(struct tg_ks *ks)
{
    tg_log_set_thread_tag("ks");
    int rc = tg_keyprov_set_new(ks->loop, 0, &ks->handshaking, &ks->set);
    if (rc != TG_OK) {
        TG_ERROR("keyserver: the key providers cannot start: %s", tg_strerror(rc));
        return rc;
    }
    tg_keyprov_set_current(ks->set);
    ev_io_start(ks->loop, &ks->accept_io);
    ev_prepare_start(ks->loop, &ks->prepare);
    TG_INFO("tlsgate %s keyserver ready: %zu key(s) on %s", TG_VERSION, ks->keys->n,
            ks->conf->socket);
    if (!atomic_load(&ks->stop_requested))
        ev_run(ks->loop, 0);
    tg_ks_shutdown(ks);
    ev_prepare_stop(ks->loop, &ks->prepare);
    ev_idle_stop(ks->loop, &ks->idle);
    tg_keyprov_set_free(ks->set);
    ks->set = NULL;
    tg_keyprov_set_current(NULL);
    return TG_OK;
}

void tg_ks_free(struct tg_ks *ks)
{
    if (ks == NULL)
        return;
    tg_admin_stop(ks->admin);
    tg_ks_unlisten(ks);
    if (ks->loop != NULL)
        ev_async_stop(ks->loop, &ks->stop);
    while (ks->free_reqs != NULL) {
        struct tg_ks_req *r = ks->free_reqs;
        ks->free_reqs = r->next;
        free(r);
    }
    tg_ks_keys_free(ks->keys);
    free(ks);
}

/* ---- `tlsgate keyserver` ---- */

static void tg_ks_usage(FILE *f)
{
    fprintf(f, "usage: tlsgate keyserver --config FILE [--log-level LEVEL] [--check]\n"
               "\n"
               "Hold the private keys of gateways and sign for them over a Unix socket\n"
               "(provider_name: keyserver in a gateway's configuration). --check loads the\n"
               "configuration and the keys, then exits (0 valid, 2 invalid).\n");
}

struct tg_ks_main {
    struct tg_ks *ks;
    ev_signal sigterm, sigint;
};

static void tg_ks_signal_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_ks_main *m = s->data;
    TG_INFO("%s: stopping: pending requests are completed and answered",
            s->signum == SIGTERM ? "SIGTERM" : "SIGINT");
    tg_ks_request_stop(m->ks);
}

int tg_keyserver_main(int argc, char **argv, tg_ks_audit_fn audit)
{
    const char *config = NULL, *level = NULL;
    bool check = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) && i + 1 < argc) {
            config = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            config = a + 9;
        } else if (strcmp(a, "--log-level") == 0 && i + 1 < argc) {
            level = argv[++i];
        } else if (strcmp(a, "--check") == 0) {
            check = true;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            tg_ks_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "tlsgate keyserver: unexpected argument '%s'\n", a);
            tg_ks_usage(stderr);
            return 2;
        }
    }
    if (config == NULL) {
        fprintf(stderr, "tlsgate keyserver: missing --config FILE\n");
        tg_ks_usage(stderr);
        return 2;
    }
    enum tg_log_level lv = TG_LOG_INFO;
    if (level != NULL && !tg_log_parse_level(level, &lv)) {
        fprintf(stderr, "tlsgate keyserver: --log-level: expected error|warn|info|debug\n");
        return 2;
    }
    char err[TG_CONFIG_ERRLEN] = "";
    tg_config_set_known_providers(tg_keyprov_names());
    struct tg_config *cfg = NULL;
    int rc = tg_config_load_keyserver_file(config, &cfg, err, sizeof(err));
    if (rc != TG_OK) {
        fprintf(stderr, "tlsgate: %s\n", err[0] ? err : tg_strerror(rc));
        return 2;
    }
    tg_log_set_level(level != NULL ? lv : (enum tg_log_level)cfg->log_level);
    signal(SIGPIPE, SIG_IGN);
    struct ev_loop *loop = EV_DEFAULT;
    struct tg_ks_main m = {0};
    int status = 0;
    if (check) {
        struct tg_ks_keys *keys = NULL;
        rc = tg_ks_keys_load(cfg->keyserver, &keys, err, sizeof(err));
        if (rc == TG_OK)
            printf("%s: configuration OK (%zu key(s))\n", cfg->source_name, keys->n);
        tg_ks_keys_free(keys);
    } else {
        rc = tg_ks_new(cfg, loop, &m.ks, err, sizeof(err));
    }
    if (rc != TG_OK) {
        fprintf(stderr, "tlsgate: %s\n", err[0] ? err : tg_strerror(rc));
        status = rc == TG_ECONFIG || rc == TG_EUNAVAIL ? 2 : 1;
        goto out;
    }
    /* The keys are loaded: their PEM text is no longer needed. */
    tg_config_wipe_keys(cfg);
    if (audit != NULL)
        audit(cfg, check);
    if (check)
        goto out;
    ev_signal_init(&m.sigterm, tg_ks_signal_cb, SIGTERM);
    m.sigterm.data = &m;
    ev_signal_start(loop, &m.sigterm);
    ev_signal_init(&m.sigint, tg_ks_signal_cb, SIGINT);
    m.sigint.data = &m;
    ev_signal_start(loop, &m.sigint);
    status = tg_ks_run(m.ks) == TG_OK ? 0 : 1;
    ev_signal_stop(loop, &m.sigterm);
    ev_signal_stop(loop, &m.sigint);
    if (status == 0)
        TG_INFO("keyserver stopped");
out:
    tg_ks_free(m.ks);
    tg_keyprov_shutdown();
    tg_config_free(cfg);
    return status;
}
