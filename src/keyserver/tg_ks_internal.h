/*
 * Internal to src/keyserver: the server, its keys, its connections and
 * their requests, shared by the folder's files:
 *   tg_keyserver.c  the server: start-up, the listening socket, accept,
 *                   the loop's prepare (flush providers, write replies),
 *                   stop, statistics, `tlsgate keyserver`
 *   tg_ks_keys.c    the key table: keys loaded and bound to their
 *                   providers, found by key id
 *   tg_ks_conn.c    one gateway connection: peer check, frames in,
 *                   requests to the providers, replies out
 *
 * Threading: everything runs on the server's loop thread, except
 * tg_ks_render (the admin endpoint: the same thread in `tlsgate keyserver`;
 * any thread in tests, which is why the numbers it reads are tg_ctr).
 */
#ifndef TG_KS_INTERNAL_H
#define TG_KS_INTERNAL_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/tg_config.h"
#include "core/tg_stats.h"
#include "keyprov/tg_keyprov.h"
#include "keyserver/tg_keyserver.h"
#include "ksproto/tg_ksproto.h"

/* ---- keys (tg_ks_keys.c) ---- */

struct tg_ks_key {
    uint8_t id[TG_KSP_KEY_ID];
    char id_hex[17]; /* the first 8 bytes, for logs */
    struct tg_pkey *pkey;
    struct tg_keyprov_binding *binding;
    const char *path; /* "keys[0]", the configuration's */
};

struct tg_ks_keys {
    struct tg_ks_key *v; /* sorted by id */
    size_t n;
    /* The digests a SIGN may name, by protocol code, fetched once. */
    EVP_MD *md[TG_KSP_MD_MAX + 1];
};

/* Load every key of conf: parse it (or have its provider load it), check it
 * against its certificate when one is given, bind it to its provider. Main
 * thread, before the loop runs. Errors: "FILE:LINE:COL: keys[i]...: why" in
 * err; TG_ECONFIG (and TG_EUNAVAIL: a provider cannot run here) for the
 * operator, TG_ENOMEM. */
int tg_ks_keys_load(const struct tg_conf_keyserver *conf, struct tg_ks_keys **out, char *err,
                    size_t errlen) TG_MUST_CHECK;
const struct tg_ks_key *tg_ks_keys_find(const struct tg_ks_keys *keys,
                                        const uint8_t id[TG_KSP_KEY_ID]);
void tg_ks_keys_free(struct tg_ks_keys *keys);

/* ---- statistics ---- */

/* X(id, label): why a connection was refused at accept. */
#define TG_KS_REFUSE_REASONS(X)                                                                    \
    X(NOT_ALLOWED, "not_allowed")                                                                  \
    X(LIMIT, "max_connections")                                                                    \
    X(NO_CREDENTIALS, "no_credentials")                                                            \
    X(NO_MEMORY, "no_memory")
enum tg_ks_refuse {
#define TG_KS_REFUSE_ENUM(id, label) TG_KS_REFUSE_##id,
    TG_KS_REFUSE_REASONS(TG_KS_REFUSE_ENUM)
#undef TG_KS_REFUSE_ENUM
        TG_KS_REFUSE_COUNT
};

/* X(id, label): why a connection ended. */
#define TG_KS_CLOSE_REASONS(X)                                                                     \
    X(PEER, "peer_closed")                                                                         \
    X(PROTOCOL, "protocol_error")                                                                  \
    X(TIMEOUT, "request_timeout")                                                                  \
    X(IO, "io_error")                                                                              \
    X(SHUTDOWN, "shutdown")
enum tg_ks_close {
#define TG_KS_CLOSE_ENUM(id, label) TG_KS_CLOSE_##id,
    TG_KS_CLOSE_REASONS(TG_KS_CLOSE_ENUM)
#undef TG_KS_CLOSE_ENUM
        TG_KS_CLOSE_COUNT
};

/* Requests by kind. */
enum tg_ks_req_kind { TG_KS_REQ_SIGN, TG_KS_REQ_LOOKUP, TG_KS_REQ_KIND_COUNT };

struct tg_ks_stats {
    tg_ctr accepted;
    tg_ctr refused[TG_KS_REFUSE_COUNT];
    tg_ctr closed[TG_KS_CLOSE_COUNT];
    tg_ctr requests[TG_KS_REQ_KIND_COUNT][TG_KSP_STATUS_COUNT];
    tg_ctr bytes_in, bytes_out;
    tg_ctr active;             /* gauge: connections open */
    tg_ctr queued;             /* gauge: SIGN requests in the providers */
    tg_ctr hint;               /* gauge: handshakes in flight the gateways reported */
    struct tg_hist latency_us; /* a SIGN from its frame read to its reply written */
};

/* ---- connections (tg_ks_conn.c) ---- */

struct tg_ks_conn;
struct tg_admin;

/* One SIGN in a provider. The op must not move until the provider
 * completes it: requests are allocated one by one (and pooled). */
struct tg_ks_req {
    struct tg_keyop op;
    struct tg_ks_conn *conn;
    uint32_t id;
    uint64_t t_recv_ns;
    struct tg_ks_req *next; /* free list */
};

struct tg_ks_conn {
    struct tg_ks *ks;
    int fd;
    ev_io rio, wio;
    ev_timer frame_timer; /* a frame begun must end within request_timeout */
    char peer[80];        /* "pid 123 uid 1000 gid 1000" */
    char name[TG_KSP_TEXT_MAX + 1];
    bool hello_done;
    bool closed;            /* fd closed; the struct waits for its requests */
    bool read_paused;       /* flow control: too many requests or replies waiting */
    bool dirty;             /* on the server's list of connections to write */
    uint32_t max_in_flight; /* granted in HELLO_REPLY */
    uint16_t hint;          /* the last SIGN's handshakes-in-flight hint */
    size_t pending;         /* SIGN requests in the providers */
    uint8_t in[2 * TG_KSP_FRAME_MAX];
    size_t in_len;
    uint8_t *out; /* replies not yet written: out[out_off..out_len) */
    size_t out_len, out_off, out_cap;
    struct tg_ks_conn *prev, *next; /* the server's connections */
    struct tg_ks_conn *dirty_next;  /* the server's list to write */
};

/* Take a connection accepted on fd (non-blocking): check the peer, greet
 * nobody (the client speaks first), watch it. Refusals are counted and
 * answered with an ERROR before the close. */
void tg_ks_conn_accept(struct tg_ks *ks, int fd);
/* Write what the connection has (the server's prepare); may close it. */
void tg_ks_conn_flush(struct tg_ks_conn *c);
/* Shutting down: stop reading and queue the goodbye (an ERROR
 * SHUTTING_DOWN with id 0: every request read has been answered before
 * it). */
void tg_ks_conn_goodbye(struct tg_ks_conn *c);
/* Write what the connection has, waiting for the socket until deadline
 * (shutdown only). */
void tg_ks_conn_flush_wait(struct tg_ks_conn *c, uint64_t deadline_ns);
/* Close (once): the fd now, the struct when no request is pending. */
void tg_ks_conn_close(struct tg_ks_conn *c, enum tg_ks_close why);
/* Free a closed connection's struct (no request pending). */
void tg_ks_conn_free(struct tg_ks_conn *c);

/* ---- the server (tg_keyserver.c) ---- */

struct tg_ks {
    const struct tg_config *cfg;
    const struct tg_conf_keyserver *conf;
    struct ev_loop *loop;
    struct tg_ks_keys *keys;
    struct tg_keyprov_set *set;
    struct tg_admin *admin;
    int lfd;
    char *unlink_path; /* the socket file we created, removed at exit */
    ev_io accept_io;
    ev_timer accept_retry;
    ev_prepare prepare;
    ev_idle idle; /* active while replies are left to write: do not block */
    ev_async stop;
    _Atomic bool stop_requested;
    bool stopping;
    struct tg_ks_conn *conns;
    size_t n_conns;
    struct tg_ks_conn *dirty; /* connections with replies to write */
    struct tg_ks_req *free_reqs;
    size_t n_free_reqs;
    /* The handshakes the providers may expect operations from: the larger
     * of the gateways' hints (summed over connections with requests
     * pending) and the requests queued. cryptomb reads it through
     * tg_keyprov_worker.handshaking. */
    size_t handshaking;
    size_t hint_sum;
    size_t queued;
    uint64_t started_ns;
    uint64_t last_refuse_log_ns;
    struct tg_ks_stats stats;
};

/* The connection has replies to write at the next prepare. */
void tg_ks_mark_dirty(struct tg_ks *ks, struct tg_ks_conn *c);
/* A request record (pooled), or NULL when out of memory. */
struct tg_ks_req *tg_ks_req_get(struct tg_ks *ks);
void tg_ks_req_put(struct tg_ks *ks, struct tg_ks_req *r);
/* Recompute ks->handshaking after queued or a hint changed. */
void tg_ks_update_handshaking(struct tg_ks *ks);

#endif
