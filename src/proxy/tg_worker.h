/*
 * tg_worker: one event loop per worker thread, its listening sockets
 * (SO_REUSEPORT, one per listener per worker), its connections, and the
 * "ready list" of connections whose key operation completed.
 *
 * Threading: everything in a worker is owned by its thread, except the
 * fields marked otherwise. The code that runs workers (the gateway, on the
 * main thread) talks to a worker only through ev_async (stop, a new
 * generation) and reads its stats counters.
 *
 * Generations (reload): a worker serves one generation of the configuration
 * (tg_gen.h) at a time, its "current" one: new connections are accepted
 * under it. The main thread offers the next one (tg_worker_offer); the
 * worker switches from its own loop, between events, where no connection is
 * in the middle of anything: it creates the state of any key provider the
 * new generation starts using, takes over the listening sockets the two
 * generations share, takes the new ones, closes the ones of listeners that
 * are gone (after accepting what waits in their queues), and only then
 * accepts under the new generation. Connections accepted before keep their
 * generation (its listener, TLS contexts, limits, upstream cluster) until
 * they end; the worker's hold on an old generation ends with its last such
 * connection. Its slot of a cluster (tg_cluster.h) is released when no
 * generation it holds uses that cluster any more (a reload may keep one).
 *
 * Edges: the worker knows nothing of who runs it. What it needs from above
 * (the process-wide connection count, exit and switch notices) it gets at
 * init as a struct tg_worker_host. It calls down into tg_conn; a connection
 * calls back into its worker (ready list, buffers, connection accounting).
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
#include "proxy/tg_gen.h"
#include "tls/tg_tls.h"
#include "upstream/tg_cluster.h"

/*
 * What a worker is handed by the code that runs it. Copied by
 * tg_worker_init(); what the pointers point to must outlive the worker.
 */
/* Warnings about limits (max_connections, per source, descriptors) are
 * logged at most once per this many seconds, process-wide, each kind. */
#define TG_LIMIT_WARN_S 10
/* The worker's housekeeping period (pool shrink, heap trim). */
#define TG_HOUSEKEEP_S 2

struct tg_worker_host {
    /* Client connections open in the whole process, shared by every worker
     * (any thread: atomic). Never NULL. A connection accepted while it has
     * reached the current generation's limits.max_connections is refused
     * (closed at once and counted). */
    _Atomic uint64_t *active;
    /* Called on the worker thread when it has finished (tg_worker_thread_end),
     * whatever the outcome; may be NULL. */
    void (*exited)(void *arg);
    void *exited_arg;
    /* Called on the worker thread once it has taken (or, draining, refused)
     * a generation offered with tg_worker_offer; may be NULL. Its arg is
     * exited_arg too. */
    void (*switched)(void *arg, const struct tg_gen *gen);
    /* Called on the worker thread once it serves (tg_worker_thread_start
     * succeeded: its accept watchers run); may be NULL. Argument: exited_arg.
     * A worker that fails to start calls exited without it. */
    void (*started)(void *arg);
    /* Open connections per source address, shared by every worker
     * (limits.max_connections_per_source; any thread). NULL: no per-source
     * limit, whatever the configuration says. */
    struct tg_srclimit *sources;
};

struct tg_wgen;

/* One listener of one generation as a worker and its connections see it.
 * Owned by that generation's tg_wgen; a connection points at the one it was
 * accepted on for its whole life. */
struct tg_wlistener {
    struct tg_worker *w;
    struct tg_wgen *wg; /* the generation it belongs to */
    const struct tg_conf_listener *conf;
    const struct tg_tls_listener *tls;
    /* Where its connections go: the generation's cluster for this listener
     * (tg_gen_listener.cluster; slot w->id is this worker's). The worker
     * releases its slot when it stops using the cluster (tg_worker.c). */
    struct tg_cluster *cluster;
    uint64_t sock_id; /* tg_gen_listener.sock_id */
    int fd;           /* -1 once handed to the next generation's listener, or closed */
    ev_io io;
    bool paused; /* accept paused (max_connections or drain) */
};

/* A worker's use of one generation (worker thread only). It holds one
 * reference on gen, dropped when the worker has moved on to a newer one and
 * the last connection accepted under it has ended. */
struct tg_wgen {
    struct tg_worker *w;
    struct tg_wgen *next_live; /* the worker's generations alive (w->wgens) */
    struct tg_gen *gen;
    struct tg_wlistener *listeners; /* [n_listeners] */
    size_t n_listeners;
    size_t conns; /* open connections accepted under it */
    bool current; /* the worker accepts under it */
};

struct tg_worker {
    int id;
    pthread_t thread;
    struct ev_loop *loop;
    struct tg_worker_host host;
    const struct tg_config *cfg; /* the current generation's */

    struct tg_wgen *cur;            /* the current generation */
    struct tg_wgen *wgens;          /* every generation it still holds, cur included */
    struct tg_wlistener *listeners; /* cur's */
    size_t n_listeners;
    /* Offered by the main thread (tg_worker_offer), with a reference; taken
     * by the worker's `reload` watcher. */
    _Atomic(struct tg_gen *) offered;

    ev_prepare prepare;    /* the loop is about to block: flush providers, resume */
    ev_idle idle;          /* keeps the loop spinning while resumptions remain */
    ev_async stop;         /* main thread asks to drain */
    ev_async reload;       /* main thread offers a generation */
    ev_timer drain_timer;  /* drain_timeout */
    ev_timer accept_retry; /* accept paused after EMFILE/ENFILE */
    bool draining;
    _Atomic bool stop_now; /* set by the main thread: drain no longer */

    struct tg_keyprov_set *kp;
    struct tg_core_stats stats; /* written by this thread only */

    struct tg_conn *conns; /* all open connections (doubly linked) */
    size_t n_conns;
    size_t n_handshaking; /* of those, in a TLS handshake (providers read it) */
    /* The same n_handshaking connections (from accept to the end of the
     * handshake), the one whose client was heard from longest ago first: at
     * max_connections the first one that is not inside a key operation is
     * closed to make room (tg_worker_conn_acquire). */
    struct tg_conn *hs_head, *hs_tail;
    size_t conns_peak;     /* most connections open at once since the last heap trim */
    struct tg_conn *ready; /* connections to resume (singly linked) */
    struct tg_conn *ready_tail;

    void **buf_pool; /* free one-direction connection buffers, reused */
    size_t buf_pool_n;
    size_t buf_pool_low; /* fewest buffers in the pool since the last housekeeping */
    size_t buf_size;     /* bytes of the pooled buffers (limits.buffer_size) */
    /* Every TG_HOUSEKEEP_S while there is something to give back: pooled
     * buffers unused for a whole period, and the heap's free memory after
     * many connections closed (tg_worker.c). */
    ev_timer housekeep;

    /* This worker's access-log ring (it is the only producer); NULL: no
     * access log. Set by the code that runs the worker, after init. */
    struct tg_alog_ring *alog;
};

/* Set up a worker serving gen (its sockets already open, tg_gen_open_sockets):
 * its loop and watchers, its socket of each listener (taken from gen), no
 * thread (tg_worker_main). Takes a reference on gen; host is copied. Called
 * on the main thread. TG_OK or TG_ENOMEM; in every case the worker must be
 * released with tg_worker_destroy(). */
int tg_worker_init(struct tg_worker *w, int id, struct tg_gen *gen,
                   const struct tg_worker_host *host) TG_MUST_CHECK;
/* Close the listening sockets left, drop the generations and free the loop.
 * After the thread ended (or never started). Zeroes *w. */
void tg_worker_destroy(struct tg_worker *w);

/* Main thread: offer the worker the next generation (a reference is taken).
 * The worker switches from its loop and then calls host.switched. An offer
 * not yet taken is replaced (and its reference dropped). */
void tg_worker_offer(struct tg_worker *w, struct tg_gen *gen);

/* Thread entry: tg_worker_thread_start(), the loop until drained,
 * tg_worker_thread_end(). arg is the struct tg_worker. */
void *tg_worker_main(void *arg);

/* The two halves of tg_worker_main around its ev_run, for a caller that runs
 * the loop itself (tests). Both on the thread that runs w->loop.
 * thread_start: ASYNC job pool, key-provider instances (installed as the
 * thread's current set), accept watchers on the listening sockets, then
 * host.started. TG_OK or the error from the key providers (logged); then
 * the worker's listening sockets are closed at once, so that the kernel
 * stops handing it connections (SO_REUSEPORT) nobody would accept.
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

/* One direction's buffer of size bytes, taken while bytes are in flight and
 * given back once drained; pooled per worker (a bounded pool, shrunk when
 * unused) when size is the current generation's limits.buffer_size. get:
 * NULL when out of memory. */
void *tg_worker_buf_get(struct tg_worker *w, size_t size);
void tg_worker_buf_put(struct tg_worker *w, void *buf, size_t size);

/* A connection accepted under wg starts / ends (they keep wg alive). */
void tg_worker_wgen_hold(struct tg_wgen *wg);
void tg_worker_wgen_release(struct tg_wgen *wg);

/* Process-wide connection accounting (host.active against the current
 * generation's limits.max_connections), for tg_conn. acquire: true if the
 * new connection may stay (it is then counted). At the limit it first
 * closes this worker's connection that has waited longest for its client
 * during the handshake (counted CLOSE_EVICTED); false when there is none,
 * or another worker took the room (nothing counted). Either way a warning,
 * at most once per TG_LIMIT_WARN_S process-wide. release: once per
 * successful acquire, when that connection is freed. */
bool tg_worker_conn_acquire(struct tg_worker *w);
void tg_worker_conn_release(struct tg_worker *w);

/* limits.max_connections_per_source (the current generation's) for a
 * connection from addr: true if it may stay (then counted in *hold, or
 * nothing held when there is no limit); false when the source has reached
 * its limit (counted CONN_REJECTED_PER_SOURCE, a warning at most once per
 * TG_LIMIT_WARN_S). release: when the connection is freed (a hold that
 * holds nothing is ignored). */
struct tg_srclimit_hold;
bool tg_worker_source_acquire(struct tg_worker *w, const struct sockaddr_storage *addr,
                              struct tg_srclimit_hold *hold);
void tg_worker_source_release(struct tg_worker *w, struct tg_srclimit_hold *hold);

/* A connection joins the worker (its list, counts; in its handshake) and
 * leaves it (from the close path). */
void tg_worker_conn_attach(struct tg_worker *w, struct tg_conn *c);
void tg_worker_conn_detach(struct tg_worker *w, struct tg_conn *c);
/* The handshake list (hs_head): the client was heard from now (move c
 * last), or c's handshake is over (it leaves the list and n_handshaking). */
void tg_worker_hs_touch(struct tg_worker *w, struct tg_conn *c);
void tg_worker_hs_over(struct tg_worker *w, struct tg_conn *c);

/* The SSL_CTX async callback for the contexts of the listeners a worker
 * serves (tg_tls_listener_new): libssl calls it on the worker thread when a
 * paused key operation completes; arg is the connection (set by tg_conn),
 * which is queued for resumption. Returns 1. */
int tg_worker_ssl_async_cb(SSL *ssl, void *arg);

/* Read-only, worker thread: open connections now in state s. */
size_t tg_worker_count_state(const struct tg_worker *w, enum tg_conn_state s);

#endif
