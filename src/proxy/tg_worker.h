/*
 * tg_worker: one event loop per worker thread, its listening sockets
 * (SO_REUSEPORT, one per listener per worker), its connections, and the
 * "ready list" of connections whose key operation completed.
 *
 * Threading: everything in a worker is owned by its thread, except the
 * fields marked otherwise. The gateway (main thread) talks to a worker only
 * through ev_async (stop) and reads its stats counters.
 */
#ifndef TG_WORKER_H
#define TG_WORKER_H

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "config/tg_config.h"
#include "core/tg_stats.h"
#include "keyprov/tg_keyprov.h"
#include "tls/tg_tls.h"

struct tg_conn;
struct tg_gateway;

/* One listener as a worker sees it. */
struct tg_wlistener {
    struct tg_worker *w;
    const struct tg_conf_listener *conf;
    const struct tg_tls_listener *tls;
    int fd;
    ev_io io;
    bool paused; /* accept paused (max_connections or drain) */
};

struct tg_worker {
    int id;
    pthread_t thread;
    struct ev_loop *loop;
    struct tg_gateway *gw;
    const struct tg_config *cfg;

    struct tg_wlistener *listeners;
    size_t n_listeners;

    ev_prepare prepare;    /* the loop is about to block: flush providers, resume */
    ev_idle idle;          /* keeps the loop spinning while resumptions remain */
    ev_async stop;         /* main thread asks to drain */
    ev_timer drain_timer;  /* drain_timeout */
    ev_timer accept_retry; /* accept paused after EMFILE/ENFILE */
    bool draining;
    _Atomic bool stop_now; /* set by the main thread: drain no longer */

    struct tg_keyprov_set *kp;
    struct tg_core_stats stats; /* written by this thread only */

    struct tg_conn *conns; /* all open connections (doubly linked) */
    size_t n_conns;
    size_t n_handshaking;  /* of those, in a TLS handshake (providers read it) */
    struct tg_conn *ready; /* connections to resume (singly linked) */
    struct tg_conn *ready_tail;

    void **buf_pool; /* free connection buffers, reused */
    size_t buf_pool_n;
};

/* Create listening sockets for listener index li, one per worker, bound to
 * the same address with SO_REUSEPORT. The first bind resolves port 0.
 * Called on the main thread before workers start. */
int tg_worker_open_listeners(struct tg_worker *workers, int n, size_t li,
                             struct tg_conf_listener *conf, char *err, size_t errlen) TG_MUST_CHECK;

/* Thread entry: runs the loop until drained. arg is the struct tg_worker. */
void *tg_worker_main(void *arg);

/* Ask a worker to drain and stop (any thread); now: stop waiting for open
 * connections. Requests are not counted (ev_async merges them): the level
 * asked for is kept in the worker. */
void tg_worker_request_stop(struct tg_worker *w, bool now);

/* Queue a connection for resumption from the prepare watcher. */
void tg_worker_make_ready(struct tg_worker *w, struct tg_conn *c);
/* Take it off that queue (before it is freed). */
void tg_worker_unready(struct tg_worker *w, struct tg_conn *c);

/* Connection buffers (2 x buffer_size), pooled per worker. */
void *tg_worker_buf_get(struct tg_worker *w);
void tg_worker_buf_put(struct tg_worker *w, void *buf);

/* Global connection accounting for limits.max_connections (main + workers). */
bool tg_gateway_conn_acquire(struct tg_gateway *gw);
void tg_gateway_conn_release(struct tg_gateway *gw);
/* Worker finished (called on the worker thread right before it returns). */
void tg_gateway_worker_exited(struct tg_gateway *gw);

#endif
