/*
 * tg_cluster_internal: the cluster's structures, shared by its two files:
 * tg_cluster.c (the object, snapshots, the workers' side) and
 * tg_cluster_main.c (the main thread's side: look-ups, the registry of
 * endpoints, health checks, the tick, metrics). Not for other modules.
 */
#ifndef TG_CLUSTER_INTERNAL_H
#define TG_CLUSTER_INTERNAL_H

#include <ev.h>
#include <stdatomic.h>

#include "upstream/tg_cluster.h"
#include "upstream/tg_health.h"
#include "upstream/tg_lb.h"

/* Main-thread tick: ends ejections whose time has passed and serves the
 * workers' requests for an early look-up. */
#define TG_CLUSTER_TICK_S 0.25
/* An early look-up (after connect failures) at most this often per name. */
#define TG_CLUSTER_EARLY_MIN_NS (1000 * 1000 * 1000ULL)
/* respect_dns_ttl: the next look-up between these bounds. */
#define TG_CLUSTER_TTL_MIN_S 1
#define TG_CLUSTER_TTL_MAX_S 3600
/* Most endpoints in one cluster (all entries, all addresses). */
#define TG_CLUSTER_MAX_ENDPOINTS 1024

struct tg_cluster_snap {
    _Atomic uint32_t refs;
    uint32_t n;
    uint32_t ring_len;
    struct tg_endpoint **eps; /* n references */
    uint32_t *weights;        /* n */
    uint32_t *ring;           /* ring_len indices into eps */
};

/* One worker's mailbox and position. Sized to keep two workers' slots off
 * one cache line. */
struct tg_cluster_slot {
    _Atomic(struct tg_cluster_snap *) mail; /* written by the main thread */
    struct tg_cluster_snap *cur;            /* the worker's own reference */
    struct tg_lb_cursor cursor;
    char pad[128 - sizeof(void *) * 2 - sizeof(struct tg_lb_cursor)];
};

/* A configured endpoint entry and what it resolves to now. */
struct tg_cluster_entry {
    struct tg_cluster *cl;
    char *text; /* "web.svc:8080", as configured: the endpoints' host label */
    char *host; /* the name, or the literal */
    uint16_t port;
    uint32_t weight;
    bool is_name;
    union tg_sockaddr *addrs; /* sorted, port set; a literal has its one address */
    size_t n_addrs;
    bool answered; /* a look-up has ended at least once */
    bool failing;  /* the last look-up failed (logged once per run of failures) */
    struct tg_resolver_query *q;
    ev_timer refresh;
    uint64_t started_ns; /* of the last look-up */
};

/* The registry: the endpoints of the cluster now (main thread). */
struct tg_cluster_member {
    struct tg_endpoint *ep; /* the registry's reference */
    struct tg_health *hc;   /* NULL without a health check */
    struct tg_health_run run;
};

struct tg_cluster {
    _Atomic uint32_t refs;
    char *name;

    /* settings, copied from the config */
    int lb_policy;
    int family; /* AF_UNSPEC, AF_INET, AF_INET6 */
    uint32_t max_attempts;
    uint64_t connect_timeout_ns;
    uint64_t refresh_ns;
    bool respect_ttl;
    struct tg_conf_outlier outlier;
    struct tg_conf_health_check hc;

    /* shared with the workers */
    struct tg_cluster_slot *slots;
    int n_slots;
    _Atomic uint32_t n_ejected;
    _Atomic uint32_t n_endpoints;
    _Atomic bool refresh_wanted;
    _Atomic bool ready;
    _Atomic uint64_t dns_ok, dns_failed;

    /* main thread */
    struct ev_loop *loop;
    struct tg_resolver *res;
    bool started;
    ev_timer tick;
    struct tg_cluster_entry *entries;
    size_t n_entries;
    struct tg_cluster_member *members;
    size_t n_members;
    struct tg_cluster_snap *snap; /* the latest published (a reference) */
};

/* tg_cluster.c */
struct tg_endpoint *tg_cluster_endpoint_new(struct tg_cluster *cl, const union tg_sockaddr *a,
                                            const char *host);
void tg_cluster_endpoint_unref(struct tg_endpoint *ep);
/* A snapshot of the members with these weights; NULL when out of memory. */
struct tg_cluster_snap *tg_cluster_snap_new(struct tg_endpoint *const *eps, const uint32_t *weights,
                                            uint32_t n);
void tg_cluster_snap_unref(struct tg_cluster_snap *s);
/* Hand s (the caller's reference) to every slot and keep it as cl->snap. */
void tg_cluster_publish(struct tg_cluster *cl, struct tg_cluster_snap *s);

/* tg_cluster_main.c */
/* Make the registry and a snapshot from the entries' addresses now. */
void tg_cluster_rebuild(struct tg_cluster *cl);
void tg_cluster_main_stop(struct tg_cluster *cl);

#endif
