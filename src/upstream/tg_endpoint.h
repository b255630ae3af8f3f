/*
 * tg_endpoint: one upstream address (IP and port) of a cluster, as the
 * workers see it. Inline because a worker's connect path reads and bumps
 * its counters.
 *
 * Ownership: reference-counted (refs). A cluster's registry holds one
 * reference while the address is part of the cluster, every snapshot that
 * lists it holds one, and every connection that was given it by
 * tg_cluster_pick holds one until tg_cluster_done. The endpoint holds a
 * reference on its cluster (the settings and cluster-wide counters it
 * points to), dropped when the endpoint is freed.
 *
 * Threading: the fields above `refs` are written once, before the endpoint
 * is published, and read by any thread. The atomics are shared by every
 * worker (read-modify-write) and the main thread; relaxed order is enough
 * for counters and gauges, ejected_until_ns is changed only by
 * compare-and-swap (tg_outlier.h).
 */
#ifndef TG_ENDPOINT_H
#define TG_ENDPOINT_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "upstream/tg_outlier.h"

struct tg_cluster;

/* Room for "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535". */
#define TG_ENDPOINT_TEXT 56

union tg_sockaddr {
    struct sockaddr sa;
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
};

/* The result of one connect attempt, reported by the worker that made it. */
enum tg_connect_result {
    TG_CONNECT_OK,
    TG_CONNECT_REFUSED,
    TG_CONNECT_TIMEOUT,
    TG_CONNECT_ERROR,
};

struct tg_endpoint {
    struct tg_cluster *cluster; /* referenced */
    union tg_sockaddr addr;
    socklen_t addrlen;
    char text[TG_ENDPOINT_TEXT]; /* "10.0.0.7:3000", "[::1]:3000": the stats label */
    const char *host; /* the configured entry it came from ("web.svc:80"), owned by the cluster */

    _Atomic uint32_t refs;
    _Atomic uint32_t active;   /* connections using it now, all workers */
    _Atomic bool healthy;      /* the active health check's verdict; true without one */
    struct tg_outlier outlier; /* passive health: failures in a row, ejection */
    _Atomic uint64_t connects_ok;
    _Atomic uint64_t connects_failed[TG_CONNECT_ERROR + 1]; /* by result (index 0 unused) */
    _Atomic uint64_t ejections;
};

/* Format an address as "IP:PORT" or "[IPv6]:PORT" (buf >= TG_ENDPOINT_TEXT). */
void tg_sockaddr_text(const union tg_sockaddr *a, char *buf, size_t len);
/* Same family, address and port. */
bool tg_sockaddr_equal(const union tg_sockaddr *a, const union tg_sockaddr *b);
/* A total order (family, address bytes, port), for canonical sets. */
int tg_sockaddr_cmp(const union tg_sockaddr *a, const union tg_sockaddr *b);

#endif
