/*
 * tg_bench_client: the state the files of the load generator share
 * (tg_bench_client.c, tg_bench_conn.c,
 * tg_bench_tlsctx.c); not for other modules, whose entry point is
 * tg_bench_run_load (tg_bench_internal.h).
 *
 * One struct bench per run owns everything (slots, SSL_CTX, buffers, the
 * loop); each struct bc_conn is one connection slot, its SSL object and its
 * output buffer. All of it is used on the run's one thread, the libev loop's.
 */
#ifndef TG_BENCH_CLIENT_H
#define TG_BENCH_CLIENT_H

#include <ev.h>

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>

#include "bench/tg_bench_internal.h"
#include "core/tg_sockbio.h"

/* The shared read buffer: every slot reads its responses into it. */
#define TG_BENCH_RBUF_SIZE (64 * 1024)
/* Per-slot output buffer: a ClientHello, or a Finished flight plus a small
 * request. Larger writes (big payloads) go to the socket directly. */
#define TG_BENCH_OBUF_SIZE 2048

enum bc_state {
    BC_PARKED,     /* no call: waiting for the warmup to finish */
    BC_PACING,     /* no call: waiting for the next scheduled start */
    BC_HANDSHAKE,  /* call: TCP connect + TLS handshake */
    BC_SEND,       /* call: writing the request */
    BC_RECV,       /* call: reading the response */
    BC_CLOSE_WAIT, /* call done: waiting for the server to close */
    BC_FINISHED,   /* the slot is done for the run */
};

struct bench;

struct bc_conn {
    ev_io io;
    ev_timer timer;
    struct bench *b;
    SSL *ssl;
    struct tg_sockbio sb; /* the socket (sb.fd, -1 without a TCP connection) as libssl sees it */
    uint8_t state;        /* enum bc_state */
    bool ssl_dirty;       /* the SSL was used since it was last reset */
    bool tls_up;          /* handshake finished on the current connection */
    bool tcp_up;          /* the TCP connection is known to be established */
    bool close_notify;    /* the server's close_notify was read */
    bool call_hs;         /* the current call did a full handshake */
    bool call_warmup;     /* the current call is a warmup call */
    uint64_t call_start;  /* ns, tg_now_ns() */
    uint64_t k;           /* measured calls started by this slot (pacing) */
    uint64_t pace_offset;
    size_t wpos; /* request bytes written */
    struct tg_http_parser http;
};

enum bc_phase { PH_WARMUP, PH_MEASURE, PH_END };

struct bench {
    const struct tg_bench_opts *o;
    struct ev_loop *loop;
    OSSL_LIB_CTX *libctx; /* NULL: the default context */
    SSL_CTX *ctx;
    char *obufs;
    X509 *verified_leaf; /* --cacert: the last chain that verified, and when */
    uint64_t verified_at;
    struct bc_conn *conns;
    uint32_t nconns;
    uint32_t active; /* slots not FINISHED */
    char *req;
    size_t reqlen;
    unsigned char *rbuf;
    enum bc_phase phase;
    bool measuring_started;
    bool stopping;
    bool ended;
    int depth;                                /* bc_next recursion depth (synchronous failures) */
    uint64_t auto_server_closes, auto_misses; /* --close=auto, warmup included */
    uint64_t warm_issued, warm_done;
    uint64_t issued; /* measured calls started */
    uint64_t t0, last_done;
    double interval_ns; /* pacing interval of one slot */
    uint32_t src_rr;
    struct rusage ru0;
    double proxy0;
    bool proxy0_ok;
    ev_timer progress, deadline;
    ev_signal sigint, sigterm;
    int nsignals;
    uint64_t sec_calls, sec_errors, sec_index, sec_start;
    struct tg_bench_lat lat;
    struct tg_bench_result res;
};

/* ---- tg_bench_client.c: scheduling and the books ---- */

/* The slot has no call in flight: start the next one, wait, or finish. */
void bc_next(struct bc_conn *c);
/* Record the end of the current call (once per call): kind is TG_BENCH_OK
 * on success, msg the first error text of its kind (may be NULL). Stops the
 * call's timer; may start the measured interval (last warmup call). */
void bc_call_end(struct bc_conn *c, enum tg_bench_errkind kind, const char *msg);
/* The TCP connection is established (counted once per connection). */
void bc_tcp_up(struct bc_conn *c);
/* Count the version / cipher / group of the handshake just finished. */
void bc_record_tls(struct bc_conn *c);

/* ---- tg_bench_conn.c: one slot ---- */

/* Watch c->fd for events (EV_READ and/or EV_WRITE). */
void bconn_want(struct bc_conn *c, int events);
/* (Re)arm the slot's one timer. */
void bconn_timer(struct bc_conn *c, uint64_t after_ns);
/* Close the TCP connection, if any. abortive: reset (no TIME_WAIT, no FIN). */
void bconn_close(struct bc_conn *c, bool abortive);
/* Start a call on a new connection: connect, then the TLS handshake. */
void bconn_connect(struct bc_conn *c);
/* Write the request (c->wpos bytes already written), then read the response. */
void bconn_send(struct bc_conn *c);
/* libev callbacks of c->io and c->timer (their data is c). */
void bconn_io_cb(struct ev_loop *loop, ev_io *w, int revents);
void bconn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* Send the TLS output collected in c->sb. 0: all sent; 1: would block (the
 * rest stays, wait for EV_WRITE); -1: error, errno set. */
int bconn_flush(struct bc_conn *c);

/* ---- tg_bench_tlsctx.c: the SSL_CTX ---- */

/* Build b->ctx (and b->libctx) from b->o. Returns 0, or the exit status (2)
 * after printing "tlsgate bench: ..." for an unusable option value. What it
 * made is freed by the caller either way (SSL_CTX_free, tg_bench_libctx_free,
 * X509_free(b->verified_leaf)). */
int bctx_make(struct bench *b);

#endif
