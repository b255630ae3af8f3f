/*
 * Internal to the keyserver provider (the client side of the key server
 * protocol, in a gateway): what its two files share.
 *   tg_ksc.c       configuration, keys (load_key, with a start-up check
 *                  against the key server), statistics, the ops table
 *   tg_ksc_chan.c  a worker's channels: one connection per key server
 *                  socket per worker, with its requests, timers and
 *                  reconnection; the submit/flush/drain entries
 *
 * Process-wide state (the sockets named by the configuration, the stats
 * registry) is written on the main thread at start-up and read-only after,
 * except the registry's list, which has a lock.
 */
#ifndef TG_KSC_INTERNAL_H
#define TG_KSC_INTERNAL_H

#include <ev.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/tg_stats.h"
#include "keyprov/tg_keyprov.h"
#include "ksproto/tg_ksproto.h"

/* Key servers (distinct sockets) one process may use. */
#define TG_KSC_MAX_SOCKETS 16

/* typed_config of one certificate (docs/CONFIG.md, "keyserver"). */
struct tg_ksc_settings {
    char *socket;           /* a path, or "@name" (abstract) */
    uint64_t timeout_ns;    /* a signature not back by then fails; also how long an outage
                               is waited out (default 1s) */
    uint32_t max_in_flight; /* requests per worker per key server (default 256) */
};

/* A certificate's key in the key server: the handle in tg_pkey.prov_key. */
struct tg_ksc_key {
    uint8_t id[TG_KSP_KEY_ID];
    char id_hex[17];
    int sock;            /* index into the process's sockets */
    uint64_t timeout_ns; /* its certificate's timeout */
};

/* One key server socket the configuration names (process-wide). Added on
 * the main thread (start-up, a reload), never removed until the provider's
 * global cleanup; workers and the admin thread read them. */
struct tg_ksc_socket {
    char *name;                     /* immutable once published */
    _Atomic uint32_t max_in_flight; /* the largest its certificates ask */
};

/* The sockets, in the order first named (indexes in tg_ksc_key.sock): *n
 * published entries (acquire), any thread. */
struct tg_ksc_socket *tg_ksc_sockets(size_t *n);

/* X(id, label): why a request failed without a signature. */
#define TG_KSC_FAILURES(X)                                                                         \
    X(UNAVAILABLE, "unavailable")                                                                  \
    X(QUEUE_FULL, "queue_full")                                                                    \
    X(TIMEOUT, "timeout")                                                                          \
    X(CONNECTION_LOST, "connection_lost")                                                          \
    X(BUSY, "server_busy")                                                                         \
    X(UNKNOWN_KEY, "unknown_key")                                                                  \
    X(SERVER_ERROR, "server_error")                                                                \
    X(SHUTDOWN, "shutdown")
enum tg_ksc_failure {
#define TG_KSC_FAILURE_ENUM(id, label) TG_KSC_FAIL_##id,
    TG_KSC_FAILURES(TG_KSC_FAILURE_ENUM)
#undef TG_KSC_FAILURE_ENUM
        TG_KSC_FAIL_COUNT
};

/* X(id, label): why a connection to the key server ended (or never began). */
#define TG_KSC_DISCONNECTS(X)                                                                      \
    X(CONNECT_FAILED, "connect_failed")                                                            \
    X(PEER_CLOSED, "peer_closed")                                                                  \
    X(PROTOCOL, "protocol_error")                                                                  \
    X(REFUSED, "refused")                                                                          \
    X(GOODBYE, "server_shutdown")                                                                  \
    X(IO, "io_error")
enum tg_ksc_disconnect {
#define TG_KSC_DISCONNECT_ENUM(id, label) TG_KSC_DISC_##id,
    TG_KSC_DISCONNECTS(TG_KSC_DISCONNECT_ENUM)
#undef TG_KSC_DISCONNECT_ENUM
        TG_KSC_DISC_COUNT
};

/* Counters of one channel (single writer: its worker). */
struct tg_ksc_stats {
    tg_ctr connects; /* hellos answered */
    tg_ctr disconnects[TG_KSC_DISC_COUNT];
    tg_ctr requests; /* signing requests sent */
    tg_ctr failures[TG_KSC_FAIL_COUNT];
    tg_ctr late_replies;   /* replies to requests given up */
    tg_ctr resent;         /* requests a key server said goodbye without reading */
    tg_ctr connected;      /* gauge: 1 while ready */
    tg_ctr in_flight;      /* gauge: sent, not answered */
    tg_ctr waiting;        /* gauge: not sent yet */
    struct tg_hist rtt_us; /* request written to reply read */
};

/* Worker side (tg_ksc_chan.c): the tg_keyprov_ops entries. */
int tg_ksc_worker_init(const struct tg_keyprov_worker *w, void **state);
void tg_ksc_worker_cleanup(void *state);
int tg_ksc_submit(void *state, struct tg_keyop *op);
void tg_ksc_flush(void *state);
size_t tg_ksc_pending(void *state);
void tg_ksc_drain(void *state);

/* Stats of every channel of every worker (and of workers gone), summed per
 * socket into out[TG_KSC_MAX_SOCKETS] (zeroed by the caller). Any thread. */
void tg_ksc_stats_collect(struct tg_ksc_stats *out, size_t n);
/* A finished worker's counters are kept (tg_ksc_chan.c) until
 * tg_ksc_stats_forget (the provider's global cleanup). */
void tg_ksc_stats_merge(struct tg_ksc_stats *dst, const struct tg_ksc_stats *src);
void tg_ksc_stats_forget(void);

/* Connect a Unix stream socket to name ("@x": abstract); non-blocking when
 * asked. Returns the fd, or -1 with errno. */
int tg_ksc_connect(const char *name, bool nonblock);

#endif
