/*
 * tg_conn_internal: what the two files of the connection state machine share.
 * tg_conn.c has accept, the PROXY header, the first byte, the handshake, the
 * watchers and timers, and the one close path; tg_conn_relay.c has what comes
 * after the handshake: the upstream connect (one endpoint after another),
 * the relay both ways with its buffers, and half-close. The interface for
 * the rest of the program is tg_conn.h; nothing else includes this.
 *
 * Worker thread only, as everything about a connection.
 */
#ifndef TG_CONN_INTERNAL_H
#define TG_CONN_INTERNAL_H

#include <openssl/err.h>

#include "core/tg_log.h"
#include "proxy/tg_conn.h"
#include "proxy/tg_worker.h"

static inline void tg_conn_set_state(struct tg_conn *c, enum tg_conn_state s)
{
    TG_DEBUG("conn %p: %s -> %s", (void *)c, tg_conn_state_name(c->state), tg_conn_state_name(s));
    c->state = s;
}

/* Every SSL_* call is bracketed: a clean error queue (so SSL_get_error sees
 * only this call's errors) and the connection's key context installed for
 * the bridge. */
static inline void tg_ssl_enter(struct tg_conn *c)
{
    ERR_clear_error();
    tg_keyctx_set_current(&c->keyctx);
}

static inline void tg_ssl_leave(void)
{
    tg_keyctx_set_current(NULL);
}

static inline void tg_io_want(struct ev_loop *loop, ev_io *io, int fd, int events)
{
    if (events == 0) {
        if (ev_is_active(io))
            ev_io_stop(loop, io);
        return;
    }
    if (ev_is_active(io) && (io->events & (EV_READ | EV_WRITE)) == events)
        return;
    if (ev_is_active(io))
        ev_io_stop(loop, io);
    ev_io_set(io, fd, events);
    ev_io_start(loop, io);
}

static inline void tg_conn_timer_after(struct tg_conn *c, double after)
{
    struct ev_loop *loop = c->w->loop;
    ev_timer_stop(loop, &c->timer);
    /* Timers count from the loop's cached time, taken when the iteration
     * began: after a long callback (a software key operation, or anything
     * under valgrind) that is stale and the timer would fire early. */
    ev_now_update(loop);
    ev_timer_set(&c->timer, after, 0.0);
    ev_timer_start(loop, &c->timer);
}

static inline double tg_ns_s(uint64_t ns)
{
    return (double)ns / 1e9;
}

/* The limits of the generation the connection was accepted under: a reload
 * changes those of new connections only. */
static inline const struct tg_conf_limits *tg_conn_limits(const struct tg_conn *c)
{
    return &c->l->wg->gen->cfg->limits;
}

/* libssl's buffers back too (the read buffer is ~17 KiB): its
 * SSL_MODE_RELEASE_BUFFERS frees the read buffer after a read that returned
 * data, not after one that would block, so a connection that went quiet
 * would keep it. Nothing is freed while libssl holds bytes not yet read, or
 * not yet sent (SSL_free_buffers refuses then). */
static inline void tg_conn_ssl_quiet(struct tg_conn *c)
{
    if (!SSL_has_pending(c->ssl))
        (void)SSL_free_buffers(c->ssl);
}

/* Back to the pool once drained: an idle connection holds no buffer. */
static inline void tg_pipe_drop_if_empty(struct tg_worker *w, struct tg_pipe *p)
{
    if (p->data != NULL && p->len == 0) {
        tg_worker_buf_put(w, p->data, p->cap);
        p->data = NULL;
        p->off = 0;
    }
}

/* ---- tg_conn_relay.c ---- */

/* The handshake is done: connect to an endpoint of the listener's cluster
 * (UPSTREAM_CONNECTING), trying others while attempts are left; PROXYING
 * once connected. May close c. */
void tg_conn_connect(struct tg_conn *c);
/* UPSTREAM_CONNECTING: the outcome of the connect in progress on ufd: 0
 * connected, an errno value when it failed, -1 while it is still in
 * progress. */
int tg_conn_connect_state(const struct tg_conn *c);
/* The connect succeeded: buffers sized, the upstream's PROXY header queued,
 * PROXYING. May close c. */
void tg_conn_upstream_connected(struct tg_conn *c);
/* The connect failed with errno value err: reported to the cluster, another
 * endpoint tried or c closed. */
void tg_conn_upstream_failed(struct tg_conn *c, int err);
/* PROXYING: move bytes both ways until nothing more can move now, then
 * watch what can move next. May close c. */
void tg_conn_pump(struct tg_conn *c);

#endif
