#include "proxy/tg_worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/async.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/tg_log.h"
#include "proxy/tg_conn.h"

#define TG_ACCEPT_BATCH  64
#define TG_BUF_POOL_MAX  1024
#define TG_RESUME_ROUNDS 16

/* ---- listening sockets (main thread, before workers start) ---- */

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

int tg_worker_open_listeners(struct tg_worker *workers, int n, size_t li,
                             struct tg_conf_listener *conf, char *err, size_t errlen)
{
    struct sockaddr_storage ss = conf->addr.ss;
    socklen_t len = conf->addr.len;
    for (int i = 0; i < n; i++) {
        int e = 0;
        int fd = tg_listen_socket(&ss, len, conf->backlog, &e);
        if (fd < 0) {
            char path[512];
            snprintf(path, sizeof(path), "%s.address", conf->path);
            tg_conf_error(err, errlen, conf->addr.mark.line > 0 ? &conf->addr.mark : &conf->mark,
                          path, "cannot listen on %s: %s", conf->addr.text, strerror(e));
            return TG_EIO;
        }
        if (i == 0) {
            /* Port 0 means "any": every worker must share the one chosen. */
            socklen_t sl = sizeof(ss);
            if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
                len = sl;
        }
        struct tg_wlistener *wl = &workers[i].listeners[li];
        wl->w = &workers[i];
        wl->conf = conf;
        wl->fd = fd;
    }
    /* Record the bound address (with the real port) for logs and tests. */
    conf->addr.ss = ss;
    conf->addr.len = len;
    return TG_OK;
}

/* ---- ready list ---- */

void tg_worker_make_ready(struct tg_worker *w, struct tg_conn *c)
{
    if (c->on_ready)
        return;
    c->on_ready = true;
    c->ready_next = NULL;
    if (w->ready_tail)
        w->ready_tail->ready_next = c;
    else
        w->ready = c;
    w->ready_tail = c;
}

void tg_worker_unready(struct tg_worker *w, struct tg_conn *c)
{
    struct tg_conn *prev = NULL;
    for (struct tg_conn *p = w->ready; p != NULL; prev = p, p = p->ready_next) {
        if (p != c)
            continue;
        if (prev)
            prev->ready_next = p->ready_next;
        else
            w->ready = p->ready_next;
        if (w->ready_tail == p)
            w->ready_tail = prev;
        break;
    }
    c->on_ready = false;
}

/* Flush the providers and resume what completed, until quiet (bounded). */
static void tg_worker_run_ready(struct tg_worker *w)
{
    for (int round = 0; round < TG_RESUME_ROUNDS; round++) {
        tg_keyprov_set_flush(w->kp);
        if (w->ready == NULL)
            break;
        struct tg_conn *list = w->ready;
        w->ready = w->ready_tail = NULL;
        while (list != NULL) {
            struct tg_conn *c = list;
            list = c->ready_next;
            c->ready_next = NULL;
            c->on_ready = false;
            tg_conn_resume(c); /* may free c */
        }
    }
}

int tg_worker_ssl_async_cb(SSL *ssl, void *arg)
{
    (void)ssl;
    struct tg_conn *c = arg;
    tg_worker_make_ready(c->w, c);
    return 1;
}

size_t tg_worker_count_state(const struct tg_worker *w, enum tg_conn_state s)
{
    size_t n = 0;
    for (const struct tg_conn *c = w->conns; c != NULL; c = c->next)
        n += c->state == s;
    return n;
}

/* ---- connection accounting ---- */

bool tg_worker_conn_acquire(struct tg_worker *w)
{
    uint64_t n = atomic_fetch_add_explicit(w->host.active, 1, memory_order_relaxed);
    if (n >= w->host.max_active) {
        atomic_fetch_sub_explicit(w->host.active, 1, memory_order_relaxed);
        return false;
    }
    return true;
}

void tg_worker_conn_release(struct tg_worker *w)
{
    atomic_fetch_sub_explicit(w->host.active, 1, memory_order_relaxed);
}

/* ---- buffers ---- */

void *tg_worker_buf_get(struct tg_worker *w)
{
    if (w->buf_pool_n > 0)
        return w->buf_pool[--w->buf_pool_n];
    return malloc(2 * w->cfg->limits.buffer_size);
}

void tg_worker_buf_put(struct tg_worker *w, void *buf)
{
    if (w->buf_pool_n < TG_BUF_POOL_MAX)
        w->buf_pool[w->buf_pool_n++] = buf;
    else
        free(buf);
}

/* ---- watchers ---- */

static void tg_worker_pause_accept(struct tg_worker *w)
{
    for (size_t i = 0; i < w->n_listeners; i++) {
        ev_io_stop(w->loop, &w->listeners[i].io);
        w->listeners[i].paused = true;
    }
}

static void tg_accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_wlistener *l = io->data;
    struct tg_worker *w = l->w;
    for (int i = 0; i < TG_ACCEPT_BATCH && !w->draining; i++) {
        struct sockaddr_storage peer;
        socklen_t peerlen = sizeof(peer);
        int fd = accept4(l->fd, (struct sockaddr *)&peer, &peerlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            if (peerlen > sizeof(peer))
                peer.ss_family = AF_UNSPEC;
            tg_conn_accept(l, fd, &peer);
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
            continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* Out of descriptors or memory: stop accepting for a moment
             * instead of spinning on a listener that stays readable. */
            TG_WARN("accept on %s: %s; pausing accept for 100ms", l->conf->addr.text,
                    strerror(errno));
            tg_worker_pause_accept(w);
            ev_timer_stop(w->loop, &w->accept_retry);
            ev_timer_set(&w->accept_retry, 0.1, 0.0);
            ev_timer_start(w->loop, &w->accept_retry);
            break;
        }
        TG_WARN("accept on %s: %s", l->conf->addr.text, strerror(errno));
        break;
    }
}

static void tg_accept_retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct tg_worker *w = t->data;
    if (w->draining)
        return;
    for (size_t i = 0; i < w->n_listeners; i++) {
        if (w->listeners[i].paused && w->listeners[i].fd >= 0) {
            w->listeners[i].paused = false;
            ev_io_start(loop, &w->listeners[i].io);
        }
    }
}

static void tg_prepare_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
    (void)revents;
    struct tg_worker *w = p->data;
    tg_worker_run_ready(w);
    if (w->ready != NULL)
        ev_idle_start(loop, &w->idle); /* more to resume: do not block */
    else
        ev_idle_stop(loop, &w->idle);
    if (w->draining && w->n_conns == 0)
        ev_break(loop, EVBREAK_ONE);
}

static void tg_idle_cb(struct ev_loop *loop, ev_idle *i, int revents)
{
    (void)loop;
    (void)i;
    (void)revents;
}

static void tg_worker_close_all(struct tg_worker *w)
{
    struct tg_conn *c = w->conns;
    while (c != NULL) {
        struct tg_conn *next = c->next;
        tg_conn_close(c, TG_STAT_CLOSE_SHUTDOWN);
        c = next;
    }
}

static void tg_drain_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct tg_worker *w = t->data;
    TG_WARN("drain timeout: closing %zu remaining connection(s)", w->n_conns);
    tg_worker_close_all(w);
    ev_break(loop, EVBREAK_ONE);
}

static void tg_stop_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)revents;
    struct tg_worker *w = a->data;
    bool now = atomic_load(&w->stop_now);
    if (w->draining) {
        if (now) /* asked again: stop waiting */
            tg_drain_timer_cb(loop, &w->drain_timer, 0);
        return;
    }
    w->draining = true;
    for (size_t i = 0; i < w->n_listeners; i++) {
        ev_io_stop(loop, &w->listeners[i].io);
        if (w->listeners[i].fd >= 0) {
            close(w->listeners[i].fd);
            w->listeners[i].fd = -1;
        }
    }
    ev_timer_stop(loop, &w->accept_retry);
    if (w->n_conns == 0) {
        ev_break(loop, EVBREAK_ONE);
        return;
    }
    if (now) {
        /* Both requests came before this loop ran: no drain at all. */
        tg_drain_timer_cb(loop, &w->drain_timer, 0);
        return;
    }
    TG_INFO("draining %zu connection(s)", w->n_conns);
    ev_timer_set(&w->drain_timer, (double)w->cfg->limits.drain_timeout_ns / 1e9, 0.0);
    ev_timer_start(loop, &w->drain_timer);
}

void tg_worker_request_stop(struct tg_worker *w, bool now)
{
    if (now)
        atomic_store(&w->stop_now, true);
    ev_async_send(w->loop, &w->stop);
}

/* After the loop: finish every key operation still pending, let the jobs
 * waiting for them end, and free what is left. */
static void tg_worker_teardown(struct tg_worker *w)
{
    tg_worker_close_all(w);
    for (int round = 0; round < TG_RESUME_ROUNDS && w->conns != NULL; round++) {
        tg_keyprov_set_drain(w->kp);
        tg_worker_run_ready(w);
    }
    if (w->conns != NULL)
        TG_ERROR("%zu connection(s) still wait for a key operation at exit", w->n_conns);
    tg_keyprov_set_free(w->kp);
    w->kp = NULL;
    for (size_t i = 0; i < w->n_listeners; i++) {
        if (w->listeners[i].fd >= 0)
            close(w->listeners[i].fd);
        w->listeners[i].fd = -1;
    }
    while (w->buf_pool_n > 0)
        free(w->buf_pool[--w->buf_pool_n]);
    ev_prepare_stop(w->loop, &w->prepare);
    ev_idle_stop(w->loop, &w->idle);
    ev_async_stop(w->loop, &w->stop);
    ev_timer_stop(w->loop, &w->drain_timer);
    ev_timer_stop(w->loop, &w->accept_retry);
}

int tg_worker_thread_start(struct tg_worker *w)
{
    char tag[16];
    snprintf(tag, sizeof(tag), "w%d", w->id);
    tg_log_set_thread_tag(tag);
    /* An unbounded job pool (max 0): jobs are made on demand and kept for
     * reuse; a bounded pool would stall handshakes at its size. */
    if (!ASYNC_init_thread(0, 0)) {
        tg_log_openssl_errors(TG_LOG_WARN, "ASYNC_init_thread");
        TG_WARN("ASYNC job pool not initialised; jobs will be created on demand");
    }
    int rc = tg_keyprov_set_new(w->loop, w->id, &w->n_handshaking, &w->kp);
    if (rc != TG_OK) {
        TG_ERROR("worker %d cannot start its key providers: %s", w->id, tg_strerror(rc));
        return rc;
    }
    tg_keyprov_set_current(w->kp);
    for (size_t i = 0; i < w->n_listeners; i++) {
        struct tg_wlistener *l = &w->listeners[i];
        ev_io_init(&l->io, tg_accept_cb, l->fd, EV_READ);
        l->io.data = l;
        ev_io_start(w->loop, &l->io);
    }
    return TG_OK;
}

void tg_worker_thread_end(struct tg_worker *w)
{
    /* No provider set: thread_start failed before anything else started. */
    if (w->kp != NULL)
        tg_worker_teardown(w);
    /* Every connection is gone: the snapshots this worker held can go. */
    for (size_t i = 0; i < w->n_listeners; i++)
        tg_cluster_slot_release(w->listeners[i].cluster, w->id);
    tg_keyprov_set_current(NULL);
    ASYNC_cleanup_thread();
    OPENSSL_thread_stop();
    if (w->host.exited != NULL)
        w->host.exited(w->host.exited_arg);
}

void *tg_worker_main(void *arg)
{
    struct tg_worker *w = arg;
    if (tg_worker_thread_start(w) == TG_OK)
        ev_run(w->loop, 0);
    tg_worker_thread_end(w);
    return NULL;
}

int tg_worker_init(struct tg_worker *w, int id, const struct tg_config *cfg,
                   const struct tg_worker_host *host)
{
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->host = *host;
    w->cfg = cfg;
    w->loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV | EVFLAG_NOSIGMASK);
    w->listeners = calloc(cfg->n_listeners, sizeof(*w->listeners));
    w->buf_pool = calloc(TG_BUF_POOL_MAX, sizeof(*w->buf_pool));
    if (w->loop == NULL || w->listeners == NULL || w->buf_pool == NULL)
        return TG_ENOMEM;
    w->n_listeners = cfg->n_listeners;
    for (size_t i = 0; i < w->n_listeners; i++)
        w->listeners[i].fd = -1;
    ev_prepare_init(&w->prepare, tg_prepare_cb);
    w->prepare.data = w;
    ev_prepare_start(w->loop, &w->prepare);
    ev_idle_init(&w->idle, tg_idle_cb);
    ev_async_init(&w->stop, tg_stop_cb);
    w->stop.data = w;
    ev_async_start(w->loop, &w->stop);
    ev_timer_init(&w->drain_timer, tg_drain_timer_cb, 0.0, 0.0);
    w->drain_timer.data = w;
    ev_timer_init(&w->accept_retry, tg_accept_retry_cb, 0.0, 0.0);
    w->accept_retry.data = w;
    return TG_OK;
}

void tg_worker_destroy(struct tg_worker *w)
{
    if (w->listeners != NULL) {
        for (size_t i = 0; i < w->n_listeners; i++) {
            if (w->listeners[i].fd >= 0)
                close(w->listeners[i].fd);
        }
    }
    free(w->listeners);
    free(w->buf_pool);
    if (w->loop != NULL)
        ev_loop_destroy(w->loop);
    memset(w, 0, sizeof(*w));
}
