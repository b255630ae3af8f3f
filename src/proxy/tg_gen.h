/*
 * tg_gen: one generation of the running configuration — the configuration
 * itself, every listener's TLS contexts (certificate keys bound to their key
 * providers) and the listening sockets — built and fully validated on the
 * main thread, then shared read-only by the workers and by every connection
 * accepted under it. `tlsgate run` starts with generation 1; each successful
 * reload makes the next one.
 *
 * Lifetime: reference-counted (atomic). The main thread holds a reference on
 * the generation it serves; each worker holds one on every generation it
 * still uses, as its current one or because connections accepted under it
 * are still open (those are counted per worker without atomics, see struct
 * tg_wgen in tg_worker.h). The last reference frees it on whichever thread
 * drops it: TLS contexts, keys (wiped, and marked retired for the provider
 * caches), bindings, configuration, and any socket no worker took.
 *
 * Sockets: a listener whose configured address the previous generation
 * already served (same name and address, else same address) keeps those
 * sockets: it gets the same sock_id and each worker hands its socket over, so
 * nothing waiting in an accept queue is lost. Any other listener gets new
 * sockets, one SO_REUSEPORT socket per worker, opened here before any worker
 * switches; worker w takes fds[w].
 *
 * Upstream clusters (tg_cluster.h): each listener has one, which the
 * generation holds a reference on; connections accepted under the
 * generation use it until they end. tg_gen_upstreams gives them: a listener
 * whose upstream block (and the dns block, when it has host names) the
 * previous generation had unchanged, under the same name, keeps that
 * generation's cluster (the same endpoints, counters, ejections, health and
 * DNS schedule); any other gets a new one, started on the main loop, with a
 * resolver shared by the generations whose dns block is the same. When a
 * generation stops serving new connections the main thread retires it
 * (tg_gen_retire): the clusters its successor does not keep stop looking up
 * names, probing and ending ejections (tg_cluster_retire), and their
 * resolver goes with its last generation. Workers keep the endpoints they
 * hold (their slot, its mailbox included) until their last connection of
 * the generation ends (tg_worker.c), then release the slot; when the
 * generation is freed its retired clusters are stopped (mailboxes emptied)
 * and dropped, on whichever thread that is; a cluster goes with its last
 * reference (the generation's, an endpoint's).
 *
 * Threading: built on the main thread and read-only once published (offered
 * to the workers), except fds[w], which only worker w touches after that,
 * and what the main thread alone uses (dns, the started/retired marks).
 */
#ifndef TG_GEN_H
#define TG_GEN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/tg_config.h"
#include "core/tg_buf.h"
#include "core/tg_err.h"
#include "tls/tg_tls.h"
#include "upstream/tg_cluster.h"

struct ev_loop;
struct tg_gen_dns;

struct tg_gen_listener {
    const struct tg_conf_listener *conf; /* in gen->cfg; addr is the bound address */
    struct tg_tls_listener *tls;         /* owned */
    struct sockaddr_storage configured;  /* the address as configured (port 0 kept) */
    uint64_t sock_id; /* its sockets' identity: the same in two generations = the same sockets */
    bool inherited;   /* the sockets come from the previous generation */
    int *fds;         /* [n_workers] sockets opened for it; -1: inherited, or taken */
    /* Where its connections go (a reference); NULL before tg_gen_upstreams. */
    struct tg_cluster *cluster;
    bool cluster_kept;    /* the previous generation's, its upstream unchanged */
    bool cluster_retired; /* this generation retired it: stopped when it is freed */
};

struct tg_gen {
    _Atomic unsigned long refs;
    uint64_t id; /* 1, 2, ... in the order built */
    struct tg_config *cfg;
    struct tg_gen_listener *listeners; /* [n_listeners], configuration order */
    size_t n_listeners;
    int n_workers;
    uint32_t kp_slots; /* key providers its bindings run on (tg_keyprov_slots_used) */
    /* main thread only */
    struct tg_gen_dns *dns; /* the resolver of its clusters' names; NULL: none */
    bool upstreams;         /* tg_gen_upstreams done: it must be retired */
    bool retired;           /* tg_gen_retire done */
};

/*
 * Build a generation from cfg: every listener's TLS contexts, with every key
 * checked against its certificate and bound to its provider. Takes ownership
 * of cfg in every case. async_cb goes to every SSL_CTX (tg_tls_listener_new).
 * One reference, the caller's. No socket yet (tg_gen_open_sockets). Errors
 * are "FILE:LINE:COL: path: message" in err. Main thread.
 */
int tg_gen_new(struct tg_config *cfg, int n_workers, SSL_async_callback_fn async_cb,
               struct tg_gen **out, char *err, size_t errlen) TG_MUST_CHECK;

/*
 * Listening sockets for every listener of g: inherited from prev (may be
 * NULL) when it served the same configured address, else opened now, one
 * per worker. Records the bound address (port 0 resolved) in g's
 * configuration. On error ("FILE:LINE:COL: listeners[i].address: cannot
 * listen on ...") nothing of prev is touched; what was opened is closed when
 * g is freed. Main thread, before g is published.
 */
int tg_gen_open_sockets(struct tg_gen *g, const struct tg_gen *prev, char *err,
                        size_t errlen) TG_MUST_CHECK;

/* Worker w's socket for listener li, opened for g; -1 if the listener's
 * sockets are inherited or it was already taken. The caller owns it. */
int tg_gen_take_fd(struct tg_gen *g, size_t li, int w);

/*
 * Every listener's upstream cluster: prev's (may be NULL) when the listener
 * has the same name there and its upstream block makes the same cluster
 * (tg_conf_upstream_same_cluster; with host names, the dns block must be
 * the same too), else a new one, started on loop: names are looked up from
 * now on. With loop NULL nothing is started (tests, tools): literal
 * addresses work at once, names stay unresolved. Errors (the resolver
 * cannot be set up: "dns: ..."; TG_ENOMEM) leave g to be retired and
 * dropped like any other. Main thread, before g is published; once called,
 * g must be retired (tg_gen_retire) before the main thread drops its last
 * reference.
 */
int tg_gen_upstreams(struct tg_gen *g, const struct tg_gen *prev, struct ev_loop *loop, char *err,
                     size_t errlen) TG_MUST_CHECK;

/* True once every cluster of g has had the first answers for its names
 * (tg_cluster_ready): before that a new connection could find no endpoint.
 * Main thread. */
bool tg_gen_upstreams_ready(const struct tg_gen *g);

/*
 * g serves no new connection any more (keep, which may be NULL, does, or is
 * about to): retire every cluster of g that keep does not hold, so that its
 * look-ups, health checks and ejection timer end, and let go of g's
 * resolver unless keep shares it. Connections of g, even those that have
 * not reached their upstream yet, keep the endpoints their worker holds.
 * Idempotent; nothing to do before tg_gen_upstreams. Main thread.
 */
void tg_gen_retire(struct tg_gen *g, const struct tg_gen *keep);

/* The metrics of g's clusters (tg_cluster_render). Main thread. */
void tg_gen_render_clusters(const struct tg_gen *g, struct tg_buf *out);

struct tg_gen *tg_gen_ref(struct tg_gen *g);
/* Drop a reference; the last one frees g (any thread). NULL is fine. */
void tg_gen_unref(struct tg_gen *g);

/* Generations alive in the process (serving, or draining connections). */
unsigned long tg_gen_alive(void);

/*
 * Settings a reload cannot change (concurrency; the admin endpoint's
 * presence and address; the access_log block): TG_ECONFIG with "FILE:LINE:COL: key: changed from
 * A to B: ... needs a restart" in err when new_cfg changes one, else TG_OK.
 */
int tg_gen_check_restart(const struct tg_config *old_cfg, const struct tg_config *new_cfg,
                         char *err, size_t errlen) TG_MUST_CHECK;

/* The listener of g named name, or NULL. */
const struct tg_gen_listener *tg_gen_find(const struct tg_gen *g, const char *name);

/* tlsgate_certificate_expiry_timestamp_seconds of every certificate g
 * serves, header included. */
void tg_gen_render_certs(const struct tg_gen *g, struct tg_buf *out);

/* Equal socket addresses (family, address, port, IPv6 scope). */
bool tg_gen_same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b);

#endif
