/*
 * tg_cluster: the upstream of one listener as a set of endpoints (IP and
 * port), kept up to date from the configured entries (literals, and host
 * names resolved and re-resolved with tg_resolver), load-balanced by the
 * workers (tg_lb), with passive (tg_outlier) and optional active
 * (tg_health) health.
 *
 * Objects:
 *   cluster   built from a listener's upstream config (everything it needs
 *             is copied: it does not keep the config); reference-counted.
 *   endpoint  tg_endpoint.h: one address; reused for as long as the address
 *             stays in the cluster, so its counters and ejection survive
 *             DNS refreshes.
 *   snapshot  an immutable array of endpoint references with their weights
 *             and the weighted ring; reference-counted. The main thread
 *             builds a new one whenever the set of addresses changes.
 *
 * Publication (no lock on a worker's path): the cluster has one mailbox per
 * worker (a slot). To publish, the main thread takes one snapshot reference
 * per slot and atomically exchanges it into each mailbox, dropping the one
 * it replaces if that worker never took it. A worker's pick looks at its
 * mailbox (one relaxed load); when it is not empty it takes the snapshot
 * out with an exchange (so exactly one side ever owns that reference),
 * makes it its current one and drops its old one. A snapshot is freed by
 * whichever thread drops its last reference, and an endpoint likewise; a
 * connection holds a reference on the endpoint it was given, so a snapshot
 * can go while connections to its endpoints remain.
 *
 * Lifecycle (main thread unless said): tg_cluster_new (literal endpoints
 * are published at once, so a cluster of addresses works without a loop),
 * tg_cluster_start (look-ups, refresh timers, health checks, the tick that
 * ends ejections), ..., tg_cluster_stop (every watcher stopped, queries
 * cancelled, the registry and the mailboxes emptied), and once each worker
 * has called tg_cluster_slot_release on its own thread, tg_cluster_unref
 * by the creator frees it (or the last endpoint reference, on any thread).
 *
 * A reload (src/proxy/tg_gen.h) keeps a cluster whose upstream did not
 * change; one that did is retired when its generation stops taking new
 * connections: tg_cluster_retire (main thread) ends its look-ups, health
 * checks and tick but leaves each worker's mailbox alone, so a connection
 * of that generation still mid-handshake finds an endpoint; when the
 * generation is freed (no worker uses the cluster any more),
 * tg_cluster_stop, on whichever thread that is, empties the mailboxes.
 */
#ifndef TG_CLUSTER_H
#define TG_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/tg_config.h"
#include "core/tg_buf.h"
#include "core/tg_err.h"
#include "upstream/tg_endpoint.h"
#include "upstream/tg_resolver.h"

struct ev_loop;
struct tg_cluster;

/* A cluster for the listener called name (the stats label) from its
 * upstream block, with n_slots worker mailboxes (slot i for worker i).
 * Reference count 1. TG_OK or TG_ENOMEM. */
int tg_cluster_new(const char *name, const struct tg_conf_upstream *conf, int n_slots,
                   struct tg_cluster **out) TG_MUST_CHECK;
/* Start resolving, refreshing and probing on loop (main thread). res is
 * needed when the cluster has names (else may be NULL) and must outlive the
 * cluster's start..stop. TG_OK or TG_ENOMEM (nothing started then). */
int tg_cluster_start(struct tg_cluster *cl, struct ev_loop *loop,
                     struct tg_resolver *res) TG_MUST_CHECK;
/* Stop everything tg_cluster_start started (look-ups cancelled, health
 * checks and the tick stopped), let the registry's endpoints go and publish
 * no more: connections keep the endpoints they hold and workers the
 * snapshots they hold, in their mailbox too. NULL, a cluster never started
 * and a second call are fine. */
void tg_cluster_retire(struct tg_cluster *cl);
/* tg_cluster_retire, and empty the workers' mailboxes: the workers keep
 * the snapshot they took until they release their slot. NULL and a
 * cluster never started are fine. Main thread; any thread once the cluster
 * was retired. */
void tg_cluster_stop(struct tg_cluster *cl);
void tg_cluster_ref(struct tg_cluster *cl);
/* Any thread. NULL is fine. */
void tg_cluster_unref(struct tg_cluster *cl);

/* True once every host name has had its first look-up answered (or
 * failed): before that, connections may find no endpoint. */
bool tg_cluster_ready(const struct tg_cluster *cl);
/* Endpoints in the cluster now (any thread). */
uint32_t tg_cluster_size(const struct tg_cluster *cl);

/* Settings the connection needs (any thread). */
uint64_t tg_cluster_connect_timeout_ns(const struct tg_cluster *cl);
uint32_t tg_cluster_max_attempts(const struct tg_cluster *cl);

/* ---- the workers' side: worker `slot`'s thread only ---- */

/* An endpoint for a new upstream connection, not one of tried[0..n_tried)
 * (the connection's earlier attempts); it is referenced and counted active
 * until tg_cluster_done. NULL when there is no endpoint (no snapshot yet,
 * none resolved) or every one was tried. *panic (may be NULL): chosen
 * although ejected or unhealthy, because no other was left. */
struct tg_endpoint *tg_cluster_pick(struct tg_cluster *cl, int slot,
                                    struct tg_endpoint *const *tried, size_t n_tried, bool *panic);
/* The outcome of the connect attempt to ep (any thread). A failure may
 * eject ep and asks for an early look-up of the cluster's names. */
void tg_cluster_report(struct tg_endpoint *ep, enum tg_connect_result r);
/* The connection no longer uses ep (any thread). */
void tg_cluster_done(struct tg_endpoint *ep);
/* The worker of slot stops using the cluster: drop its snapshots. */
void tg_cluster_slot_release(struct tg_cluster *cl, int slot);

/* ---- main thread ---- */

/* Append the clusters' metrics in Prometheus text format. */
void tg_cluster_render(struct tg_buf *out, struct tg_cluster *const *cls, size_t n);

/* An answer for configured entry `entry` (a host name), as the resolver
 * gives it (tg_resolver_cb). Used by the resolver's callback and by tests;
 * the cluster need not be started. */
void tg_cluster_answer(struct tg_cluster *cl, size_t entry, int status, const char *why,
                       const union tg_sockaddr *addrs, size_t n, uint32_t ttl_s);

/* Snapshots and endpoints alive in the process (tests: nothing leaks). */
size_t tg_cluster_live_snapshots(void);
size_t tg_cluster_live_endpoints(void);

#endif
