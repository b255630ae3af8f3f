/*
 * tg_worker: one event loop per worker thread, its listening sockets
 * (SO_REUSEPORT, one per listener per worker), its connections, and the
 * "ready list" of connections whose key operation completed.
 *
 * Threading: everything in a worker is owned by its thread, except the
 * fields marked otherwise. The code that runs workers (the gateway, on the
 * main thread) talks to a worker only through ev_async (stop) and reads its
 * stats counters.
 *
 * Edges: the worker knows nothing of who runs it. What it needs from above
 * (the process-wide connection count and an exit notice) it gets at init as
 * a struct tg_worker_host. It calls down into tg_conn; a connection calls
 * back into its worker (ready list, buffers, connection accounting).
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
#include "proxy/tg_conn.h"
#include "tls/tg_tls.h"
#include "upstream/tg_cluster.h"

/*
 * What a worker is handed by the code that runs it. Copied by
 * tg_worker_init(); what the pointers point to must outlive the worker.
 */
struct tg_worker_host {
    /* Client connections open in the whole process, shared by every worker
     * (any thread: atomic). Never NULL. */
    _Atomic uint64_t *active;
    /* limits.max_connections: a connection accepted while *active has
     * reached it is refused (closed at once and counted). */
    uint64_t max_active;
    /* Called on the worker thread when it has finished (tg_worker_thread_end),
     * whatever the outcome; may be NULL. */
    void (*exited)(void *arg);
    void *exited_arg;
};

/* One listener as a worker sees it. */
struct tg_wlistener {
    struct tg_worker *w;
    const struct tg_conf_listener *conf;
    const struct tg_tls_listener *tls;
    /* Where connections go (set by the code that runs the worker, like
     * tls; slot w->id is this worker's). Released by the worker's
     * tg_worker_thread_end (tg_cluster_slot_release). */
    struct tg_cluster *cluster;
    int fd;
    ev_io io;
    bool paused; /* accept paused (max_connections or drain) */
};

struct tg_worker {
    int id;
    pthread_t thread;
    struct ev_loop *loop;
    struct tg_worker_host host;
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

/* Set up a worker: its loop and watchers, no listening socket yet (that is
 * tg_worker_open_listeners), no thread (tg_worker_main). host is copied.
 * Called on the main thread. TG_OK or TG_ENOMEM; in every case the worker
 * must be released with tg_worker_destroy(). */
int tg_worker_init(struct tg_worker *w, int id, const struct tg_config *cfg,
                   const struct tg_worker_host *host) TG_MUST_CHECK;
/* Close the listening sockets left and free the loop. After the thread
 * ended (or never started). Zeroes *w. */
void tg_worker_destroy(struct tg_worker *w);

/* Create listening sockets for listener index li, one per worker, bound to
 * the same address with SO_REUSEPORT. The first bind resolves port 0.
 * Called on the main thread before workers start. */
int tg_worker_open_listeners(struct tg_worker *workers, int n, size_t li,
                             struct tg_conf_listener *conf, char *err, size_t errlen) TG_MUST_CHECK;

/* Thread entry: tg_worker_thread_start(), the loop until drained,
 * tg_worker_thread_end(). arg is the struct tg_worker. */
void *tg_worker_main(void *arg);

/* The two halves of tg_worker_main around its ev_run, for a caller that runs
 * the loop itself (tests). Both on the thread that runs w->loop.
 * thread_start: ASYNC job pool, key-provider instances (installed as the
 * thread's current set), accept watchers on the listening sockets. TG_OK or
 * the error from the key providers (logged).
 * thread_end: always after thread_start, whatever it returned: closes every
 * connection left (counted CLOSE_SHUTDOWN), finishes their key operations,
 * frees the per-thread state, releases its slot of each listener's cluster,
 * then calls host.exited. */
int tg_worker_thread_start(struct tg_worker *w) TG_MUST_CHECK;
void tg_worker_thread_end(struct tg_worker *w);

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

/* Process-wide connection accounting (host.active against host.max_active),
 * for tg_conn. acquire: true if the new connection may stay (it is then
 * counted); false if the limit is reached (nothing counted). release: once
 * per successful acquire, when that connection is freed. */
bool tg_worker_conn_acquire(struct tg_worker *w);
void tg_worker_conn_release(struct tg_worker *w);

/* The SSL_CTX async callback for the contexts of the listeners a worker
 * serves (tg_tls_listener_new): libssl calls it on the worker thread when a
 * paused key operation completes; arg is the connection (set by tg_conn),
 * which is queued for resumption. Returns 1. */
int tg_worker_ssl_async_cb(SSL *ssl, void *arg);

/* Read-only, worker thread: open connections now in state s. */
size_t tg_worker_count_state(const struct tg_worker *w, enum tg_conn_state s);

#endif
