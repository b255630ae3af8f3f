#include "proxy/tg_worker.h"

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
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
#include "core/tg_time.h"
#include "proxy/tg_conn.h"
#include "proxy/tg_ppio.h"
#include "proxy/tg_srclimit.h"

#define TG_ACCEPT_BATCH  64
#define TG_BUF_POOL_MAX  256 /* one-direction buffers kept for reuse, per worker */
#define TG_RESUME_ROUNDS 16
/* Connections looked at, from the handshake list's head, for one to evict:
 * those inside a key operation are skipped (a close would only mark them). */
#define TG_EVICT_SCAN 64
/* The heap is trimmed when the open connections have fallen by this many
 * and by a quarter since their peak (tg_worker_trim_due). */
#define TG_TRIM_MIN_DROP 256

/* Process-wide: one line per interval for each kind of limit. */
static struct tg_log_every tg_warn_max_conns, tg_warn_per_source, tg_warn_accept;

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

static void tg_worker_housekeep_soon(struct tg_worker *w);

static bool tg_worker_try_acquire(struct tg_worker *w)
{
    uint64_t n = atomic_fetch_add_explicit(w->host.active, 1, memory_order_relaxed);
    if (n >= w->cfg->limits.max_connections) {
        atomic_fetch_sub_explicit(w->host.active, 1, memory_order_relaxed);
        return false;
    }
    return true;
}

/* Close the connection that has waited longest for its client during the
 * handshake, if one is not inside a key operation. */
static bool tg_worker_evict(struct tg_worker *w)
{
    struct tg_conn *c = w->hs_head;
    for (int i = 0; c != NULL && i < TG_EVICT_SCAN; i++, c = c->hs_next) {
        if (c->in_job || c->closing || c->state == TG_CONN_KEYOP_WAIT)
            continue;
        char a[TG_PP_ADDR_TEXT];
        TG_DEBUG("conn %p: evicted at max_connections (%s, client %s)", (void *)c,
                 tg_conn_state_name(c->state), tg_pp_addr_text(&c->client_addr, a, sizeof(a)));
        tg_conn_close(c, TG_STAT_CLOSE_EVICTED); /* frees it: not in a job */
        return true;
    }
    return false;
}

bool tg_worker_conn_acquire(struct tg_worker *w)
{
    if (tg_worker_try_acquire(w))
        return true;
    bool evicted = tg_worker_evict(w);
    bool ok = evicted && tg_worker_try_acquire(w);
    uint64_t missed = 0;
    if (tg_log_every_due(&tg_warn_max_conns, TG_LIMIT_WARN_S * TG_NS_PER_S, tg_now_ns(), &missed))
        TG_WARN("limits.max_connections (%llu) reached: %s (%llu more time(s) since the last "
                "warning; tlsgate_connections_closed_total{reason=\"evicted\"}, "
                "tlsgate_connections_rejected_total{reason=\"max_connections\"})",
                (unsigned long long)w->cfg->limits.max_connections,
                ok ? "closed the connection idle longest in its handshake to make room"
                   : "new connection refused: no connection of this worker idle in its handshake",
                (unsigned long long)missed);
    return ok;
}

void tg_worker_conn_release(struct tg_worker *w)
{
    atomic_fetch_sub_explicit(w->host.active, 1, memory_order_relaxed);
}

bool tg_worker_source_acquire(struct tg_worker *w, const struct sockaddr_storage *addr,
                              struct tg_srclimit_hold *hold)
{
    hold->held = false;
    const struct tg_conf_limits *lim = &w->cfg->limits;
    if (w->host.sources == NULL || lim->max_connections_per_source == 0)
        return true;
    if (tg_srclimit_acquire(w->host.sources, addr, lim->per_source_ipv6_prefix,
                            lim->max_connections_per_source, hold))
        return true;
    tg_stat_inc(&w->stats, TG_STAT_CONN_REJECTED_PER_SOURCE);
    uint64_t missed = 0;
    if (tg_log_every_due(&tg_warn_per_source, TG_LIMIT_WARN_S * TG_NS_PER_S, tg_now_ns(),
                         &missed)) {
        char a[TG_PP_ADDR_TEXT];
        TG_WARN("limits.max_connections_per_source (%llu) reached by %s: new connection refused "
                "(%llu more refusal(s), any source, since the last warning; "
                "tlsgate_connections_rejected_total{reason=\"max_connections_per_source\"})",
                (unsigned long long)lim->max_connections_per_source,
                tg_pp_addr_text(addr, a, sizeof(a)), (unsigned long long)missed);
    }
    return false;
}

void tg_worker_source_release(struct tg_worker *w, struct tg_srclimit_hold *hold)
{
    if (w->host.sources != NULL)
        tg_srclimit_release(w->host.sources, hold);
}

void tg_worker_conn_attach(struct tg_worker *w, struct tg_conn *c)
{
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    if (++w->n_conns > w->conns_peak)
        w->conns_peak = w->n_conns;
    c->in_handshake = true;
    w->n_handshaking++;
    tg_worker_hs_touch(w, c);
}

/* Many connections have closed since the peak: the heap holds their freed
 * memory (glibc keeps a thread's arena), worth giving back. */
static bool tg_worker_trim_due(const struct tg_worker *w)
{
    size_t drop = w->conns_peak - w->n_conns;
    return drop >= TG_TRIM_MIN_DROP && drop * 4 >= w->conns_peak;
}

void tg_worker_conn_detach(struct tg_worker *w, struct tg_conn *c)
{
    tg_worker_hs_over(w, c);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->n_conns--;
    if (tg_worker_trim_due(w))
        tg_worker_housekeep_soon(w);
}

static void tg_worker_hs_unlink(struct tg_worker *w, struct tg_conn *c)
{
    if (c->hs_prev)
        c->hs_prev->hs_next = c->hs_next;
    else
        w->hs_head = c->hs_next;
    if (c->hs_next)
        c->hs_next->hs_prev = c->hs_prev;
    else
        w->hs_tail = c->hs_prev;
    c->hs_prev = c->hs_next = NULL;
}

void tg_worker_hs_touch(struct tg_worker *w, struct tg_conn *c)
{
    if (!c->in_handshake || w->hs_tail == c)
        return;
    if (c->hs_prev != NULL || w->hs_head == c)
        tg_worker_hs_unlink(w, c);
    c->hs_prev = w->hs_tail;
    if (w->hs_tail)
        w->hs_tail->hs_next = c;
    else
        w->hs_head = c;
    w->hs_tail = c;
}

void tg_worker_hs_over(struct tg_worker *w, struct tg_conn *c)
{
    if (!c->in_handshake)
        return;
    c->in_handshake = false;
    w->n_handshaking--;
    tg_worker_hs_unlink(w, c);
}

/* ---- buffers ---- */

void *tg_worker_buf_get(struct tg_worker *w, size_t size)
{
    if (size == w->buf_size && w->buf_pool_n > 0) {
        void *b = w->buf_pool[--w->buf_pool_n];
        if (w->buf_pool_n < w->buf_pool_low)
            w->buf_pool_low = w->buf_pool_n;
        return b;
    }
    return malloc(size);
}

void tg_worker_buf_put(struct tg_worker *w, void *buf, size_t size)
{
    /* A connection of an older generation may have another size. */
    if (size == w->buf_size && w->buf_pool_n < TG_BUF_POOL_MAX) {
        w->buf_pool[w->buf_pool_n++] = buf;
        tg_worker_housekeep_soon(w);
    } else {
        free(buf);
    }
}

static void tg_worker_buf_resize(struct tg_worker *w, size_t size)
{
    if (size == w->buf_size)
        return;
    while (w->buf_pool_n > 0)
        free(w->buf_pool[--w->buf_pool_n]);
    w->buf_pool_low = 0;
    w->buf_size = size;
}

/* ---- housekeeping: give memory back ---- */

/* Every TG_HOUSEKEEP_S while there is something to give back, else idle. */
static void tg_worker_housekeep_soon(struct tg_worker *w)
{
    if (w->loop != NULL && !ev_is_active(&w->housekeep) && !w->draining) {
        ev_timer_set(&w->housekeep, TG_HOUSEKEEP_S, 0.0);
        ev_timer_start(w->loop, &w->housekeep);
    }
}

static void tg_housekeep_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_worker *w = t->data;
    /* Buffers the pool kept all period long were not needed: free them. */
    for (size_t spare = w->buf_pool_low; spare > 0 && w->buf_pool_n > 0; spare--)
        free(w->buf_pool[--w->buf_pool_n]);
    w->buf_pool_low = w->buf_pool_n;
    if (tg_worker_trim_due(w)) {
        /* What the closed connections freed stays in the thread's malloc
         * arena, fragmented, and counts in RSS until trimmed (glibc returns
         * the top of a heap by itself, not the free pages inside it). */
        uint64_t t0 = tg_now_ns();
#ifdef __GLIBC__
        (void)malloc_trim(0);
#endif
        TG_DEBUG("heap trimmed in %.1f ms: %zu connection(s) open, %zu at the peak",
                 (double)(tg_now_ns() - t0) / 1e6, w->n_conns, w->conns_peak);
        tg_stat_inc(&w->stats, TG_STAT_MEMORY_TRIMS);
        w->conns_peak = w->n_conns;
    }
    if (w->buf_pool_n > 0)
        tg_worker_housekeep_soon(w);
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
            int e = errno;
            uint64_t missed = 0;
            tg_stat_inc(&w->stats, TG_STAT_ACCEPT_PAUSED);
            if (tg_log_every_due(&tg_warn_accept, TG_LIMIT_WARN_S * TG_NS_PER_S, tg_now_ns(),
                                 &missed))
                TG_WARN("accept on %s: %s; pausing accept for 100ms (%llu more pause(s) since "
                        "the last warning; tlsgate_accept_pauses_total)",
                        l->conf->addr.text, strerror(e), (unsigned long long)missed);
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

/* ---- generations ---- */

static struct tg_wgen *tg_wgen_new(struct tg_worker *w, struct tg_gen *gen)
{
    struct tg_wgen *wg = calloc(1, sizeof(*wg));
    if (wg == NULL)
        return NULL;
    wg->listeners = calloc(gen->n_listeners + 1, sizeof(*wg->listeners));
    if (wg->listeners == NULL) {
        free(wg);
        return NULL;
    }
    wg->w = w;
    wg->gen = tg_gen_ref(gen);
    wg->n_listeners = gen->n_listeners;
    for (size_t i = 0; i < gen->n_listeners; i++) {
        struct tg_wlistener *l = &wg->listeners[i];
        l->w = w;
        l->wg = wg;
        l->conf = gen->listeners[i].conf;
        l->tls = gen->listeners[i].tls;
        l->cluster = gen->listeners[i].cluster;
        l->sock_id = gen->listeners[i].sock_id;
        l->fd = -1;
        ev_io_init(&l->io, tg_accept_cb, -1, EV_READ);
        l->io.data = l;
    }
    wg->next_live = w->wgens;
    w->wgens = wg;
    return wg;
}

/* Whether a generation the worker still holds sends connections to cl. */
static bool tg_worker_uses_cluster(const struct tg_worker *w, const struct tg_cluster *cl)
{
    for (const struct tg_wgen *wg = w->wgens; wg != NULL; wg = wg->next_live) {
        for (size_t i = 0; i < wg->n_listeners; i++) {
            if (wg->listeners[i].cluster == cl)
                return true;
        }
    }
    return false;
}

static void tg_wgen_free(struct tg_wgen *wg)
{
    struct tg_worker *w = wg->w;
    for (struct tg_wgen **pp = &w->wgens; *pp != NULL; pp = &(*pp)->next_live) {
        if (*pp == wg) {
            *pp = wg->next_live;
            break;
        }
    }
    for (size_t i = 0; i < wg->n_listeners; i++) {
        if (wg->listeners[i].fd >= 0)
            close(wg->listeners[i].fd);
        /* The worker's last use of a cluster (a newer generation may keep
         * it): the endpoints it holds for it can go. */
        struct tg_cluster *cl = wg->listeners[i].cluster;
        if (cl != NULL && !tg_worker_uses_cluster(w, cl))
            tg_cluster_slot_release(cl, w->id);
    }
    free(wg->listeners);
    tg_gen_unref(wg->gen);
    free(wg);
}

void tg_worker_wgen_hold(struct tg_wgen *wg)
{
    wg->conns++;
}

void tg_worker_wgen_release(struct tg_wgen *wg)
{
    TG_ASSERT(wg->conns > 0);
    if (--wg->conns == 0 && !wg->current)
        tg_wgen_free(wg);
}

/* A listener that the new generation does not keep: accept what already
 * waits in its queue (under its own generation), then close it. */
static void tg_worker_close_listener(struct tg_worker *w, struct tg_wlistener *l)
{
    ev_io_stop(w->loop, &l->io);
    for (int i = 0; i < 65536; i++) {
        struct sockaddr_storage peer;
        socklen_t peerlen = sizeof(peer);
        int fd = accept4(l->fd, (struct sockaddr *)&peer, &peerlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0 && peerlen > sizeof(peer))
            peer.ss_family = AF_UNSPEC;
        if (fd >= 0)
            tg_conn_accept(l, fd, &peer);
        else if (errno != EINTR && errno != ECONNABORTED && errno != EPROTO)
            break;
    }
    close(l->fd);
    l->fd = -1;
}

/* Make gen the worker's current generation. `running`: the loop serves
 * (accept watchers start now); else tg_worker_thread_start starts them. */
static int tg_worker_adopt(struct tg_worker *w, struct tg_gen *gen, bool running)
{
    struct tg_wgen *nw = tg_wgen_new(w, gen);
    if (nw == NULL)
        return TG_ENOMEM;
    struct tg_wgen *old = w->cur;
    /* A provider the new generation starts using: on failure (logged) its
     * bindings run in software on this worker. */
    if (w->kp != NULL && tg_keyprov_set_add_slots(w->kp, gen->kp_slots) != TG_OK)
        TG_WARN("generation %llu: a key provider runs in software on this worker",
                (unsigned long long)gen->id);
    for (size_t i = 0; i < nw->n_listeners; i++) {
        struct tg_wlistener *l = &nw->listeners[i];
        for (size_t j = 0; old != NULL && j < old->n_listeners && l->fd < 0; j++) {
            struct tg_wlistener *o = &old->listeners[j];
            if (o->sock_id != l->sock_id || o->fd < 0)
                continue;
            /* Same sockets: the accept queue carries over untouched. */
            ev_io_stop(w->loop, &o->io);
            l->fd = o->fd;
            l->paused = o->paused;
            o->fd = -1;
            if (o->conf->backlog != l->conf->backlog)
                (void)listen(l->fd, l->conf->backlog);
        }
        if (l->fd < 0)
            l->fd = tg_gen_take_fd(gen, i, w->id);
        if (l->fd < 0)
            TG_ERROR("listener %s: no socket for worker %d", l->conf->name, w->id);
    }
    for (size_t j = 0; old != NULL && j < old->n_listeners; j++) {
        if (old->listeners[j].fd >= 0)
            tg_worker_close_listener(w, &old->listeners[j]);
    }
    w->cur = nw;
    nw->current = true;
    w->listeners = nw->listeners;
    w->n_listeners = nw->n_listeners;
    w->cfg = gen->cfg;
    tg_worker_buf_resize(w, gen->cfg->limits.buffer_size);
    for (size_t i = 0; running && i < nw->n_listeners; i++) {
        struct tg_wlistener *l = &nw->listeners[i];
        ev_io_set(&l->io, l->fd, EV_READ);
        if (l->fd >= 0 && !l->paused)
            ev_io_start(w->loop, &l->io);
    }
    if (old != NULL) {
        old->current = false;
        if (old->conns == 0)
            tg_wgen_free(old);
    }
    /* Keys of generations no longer served may go with their contexts. */
    tg_keyprov_forget_keys();
    return TG_OK;
}

static void tg_reload_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_worker *w = a->data;
    struct tg_gen *gen = atomic_exchange_explicit(&w->offered, NULL, memory_order_acq_rel);
    if (gen == NULL)
        return;
    if (w->draining) {
        /* Stopping: no new listener now. */
        TG_DEBUG("draining: generation %llu not taken", (unsigned long long)gen->id);
    } else if (tg_worker_adopt(w, gen, true) != TG_OK) {
        TG_ERROR("worker %d: out of memory: generation %llu not taken", w->id,
                 (unsigned long long)gen->id);
    } else {
        TG_DEBUG("serving generation %llu", (unsigned long long)gen->id);
    }
    if (w->host.switched != NULL)
        w->host.switched(w->host.exited_arg, gen);
    tg_gen_unref(gen); /* the offer's reference; the worker took its own */
}

void tg_worker_offer(struct tg_worker *w, struct tg_gen *gen)
{
    struct tg_gen *prev =
        atomic_exchange_explicit(&w->offered, tg_gen_ref(gen), memory_order_acq_rel);
    tg_gen_unref(prev);
    ev_async_send(w->loop, &w->reload);
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
    ev_timer_stop(w->loop, &w->housekeep);
    ev_prepare_stop(w->loop, &w->prepare);
    ev_idle_stop(w->loop, &w->idle);
    ev_async_stop(w->loop, &w->stop);
    ev_async_stop(w->loop, &w->reload);
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
        /* Its SO_REUSEPORT sockets would keep taking a share of the new
         * connections that nobody accepts. */
        for (size_t i = 0; i < w->n_listeners; i++) {
            if (w->listeners[i].fd >= 0)
                close(w->listeners[i].fd);
            w->listeners[i].fd = -1;
        }
        return rc;
    }
    tg_keyprov_set_current(w->kp);
    for (size_t i = 0; i < w->n_listeners; i++) {
        struct tg_wlistener *l = &w->listeners[i];
        ev_io_set(&l->io, l->fd, EV_READ);
        if (l->fd >= 0)
            ev_io_start(w->loop, &l->io);
    }
    if (w->host.started != NULL)
        w->host.started(w->host.exited_arg);
    return TG_OK;
}

void tg_worker_thread_end(struct tg_worker *w)
{
    /* No provider set: thread_start failed before anything else started. */
    if (w->kp != NULL)
        tg_worker_teardown(w);
    /* Every connection is gone (older generations with them): the
     * snapshots this worker held for the current one can go too. */
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

int tg_worker_init(struct tg_worker *w, int id, struct tg_gen *gen,
                   const struct tg_worker_host *host)
{
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->host = *host;
    atomic_init(&w->offered, NULL);
    w->loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV | EVFLAG_NOSIGMASK);
    w->buf_pool = calloc(TG_BUF_POOL_MAX, sizeof(*w->buf_pool));
    if (w->loop == NULL || w->buf_pool == NULL)
        return TG_ENOMEM;
    ev_timer_init(&w->housekeep, tg_housekeep_cb, 0.0, 0.0);
    w->housekeep.data = w;
    TG_GUARD(tg_worker_adopt(w, gen, false));
    ev_prepare_init(&w->prepare, tg_prepare_cb);
    w->prepare.data = w;
    ev_prepare_start(w->loop, &w->prepare);
    ev_idle_init(&w->idle, tg_idle_cb);
    ev_async_init(&w->stop, tg_stop_cb);
    w->stop.data = w;
    ev_async_start(w->loop, &w->stop);
    ev_async_init(&w->reload, tg_reload_cb);
    w->reload.data = w;
    ev_async_start(w->loop, &w->reload);
    ev_timer_init(&w->drain_timer, tg_drain_timer_cb, 0.0, 0.0);
    w->drain_timer.data = w;
    ev_timer_init(&w->accept_retry, tg_accept_retry_cb, 0.0, 0.0);
    w->accept_retry.data = w;
    return TG_OK;
}

void tg_worker_destroy(struct tg_worker *w)
{
    /* Connections are gone (thread ended) or never were: only the current
     * generation is still held, and maybe an offer nobody took. */
    if (w->cur != NULL && w->cur->conns == 0)
        tg_wgen_free(w->cur);
    else if (w->cur != NULL)
        TG_ERROR("worker %d: generation %llu still has %zu connection(s): not freed", w->id,
                 (unsigned long long)w->cur->gen->id, w->cur->conns);
    tg_gen_unref(atomic_exchange(&w->offered, NULL));
    free(w->buf_pool);
    if (w->loop != NULL)
        ev_loop_destroy(w->loop);
    memset(w, 0, sizeof(*w));
}
