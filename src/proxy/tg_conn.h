/*
 * tg_conn: one client connection, an explicit state machine with exactly one
 * close path.
 *
 *   ACCEPTED -> HANDSHAKING <-> KEYOP_WAIT -> UPSTREAM_CONNECTING -> PROXYING
 *            -> (half-closed directions drain) -> CLOSED
 *
 * KEYOP_WAIT: libssl's ASYNC job is paused on a key operation; no SSL_* call
 * is made until the async callback (tg_worker_ssl_async_cb, whose argument is
 * the connection) puts the connection on the worker's ready list. A connection asked to close while
 * in KEYOP_WAIT is only marked (closing, its key context cancelled); it is freed after its job
 * ended.
 *
 * Owner: the worker thread that accepted it. Created by tg_conn_accept();
 * freed only by the close path.
 */
#ifndef TG_CONN_H
#define TG_CONN_H

#include <ev.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>

#include "alog/tg_alog.h"
#include "core/tg_stats.h"
#include "keyprov/tg_keyprov.h"

struct tg_worker;
struct tg_wlistener;

#define TG_CONN_STATES(X)                                                                          \
    X(ACCEPTED, "accepted")                                                                        \
    X(HANDSHAKING, "handshaking")                                                                  \
    X(KEYOP_WAIT, "keyop_wait")                                                                    \
    X(UPSTREAM_CONNECTING, "upstream_connecting")                                                  \
    X(PROXYING, "proxying")                                                                        \
    X(CLOSED, "closed")

enum tg_conn_state {
#define TG_CONN_STATE_ENUM(id, label) TG_CONN_##id,
    TG_CONN_STATES(TG_CONN_STATE_ENUM)
#undef TG_CONN_STATE_ENUM
};
const char *tg_conn_state_name(enum tg_conn_state s);

/* A one-direction byte buffer. */
struct tg_pipe {
    char *data;
    size_t cap;
    size_t off; /* first unsent byte */
    size_t len; /* bytes in data[0..len) */
};

/* What the access log needs beyond what the connection keeps anyway,
 * gathered along the way (times from tg_now_ns); read once, at close, by
 * tg_conn_alog_closed. */
struct tg_conn_alog {
    uint64_t t_handshake_ns;      /* handshake finished; 0: not */
    uint64_t t_connect_ns;        /* upstream connect() started; 0: not */
    uint64_t t_connected_ns;      /* upstream connected, or its connect failed; 0: not yet */
    uint64_t bytes_in;            /* plaintext sent to the upstream */
    uint64_t bytes_out;           /* plaintext written to the client */
    struct tg_alog_addr client;   /* set at accept when the worker logs */
    struct tg_alog_addr upstream; /* set at connect() */
    /* The tg_core_stat refining the close reason (HS_FAIL_*,
     * UPSTREAM_CONNECT_*); 0: none. */
    int detail;
};

struct tg_conn {
    struct tg_worker *w;
    struct tg_wlistener *l;
    enum tg_conn_state state;
    int cfd; /* client socket */
    int ufd; /* upstream socket, -1 before connect */
    SSL *ssl;
    ev_io cio;
    ev_io uio;
    ev_timer timer;
    struct tg_keyctx keyctx;
    uint64_t t_accept_ns;
    uint64_t t_active_ns; /* last byte moved, for idle_timeout */
    void *bufmem;         /* both pipes' storage, from the worker pool */
    struct tg_pipe c2u;   /* client -> upstream plaintext */
    struct tg_pipe u2c;   /* upstream -> client plaintext */
    /* half-close bookkeeping */
    bool client_eof;    /* no more bytes will come from the client */
    bool upstream_eof;  /* no more bytes will come from the upstream */
    bool upstream_shut; /* shutdown(ufd, SHUT_WR) done */
    bool client_shut;   /* close_notify sent to the client */
    /* which socket event a blocked SSL_read / SSL_write waits for */
    int ssl_read_wants; /* 0, EV_READ or EV_WRITE */
    int ssl_write_wants;
    bool client_maybe_readable; /* an event or EOF may be waiting */
    bool upstream_maybe_readable;
    bool in_handshake; /* counted in the worker's n_handshaking */
    bool in_job;       /* paused ASYNC job */
    bool closing;      /* close requested while in_job */
    bool on_ready;
    int close_stat;              /* enum tg_core_stat of the close reason */
    struct tg_conn *prev, *next; /* worker's list */
    struct tg_conn *ready_next;

    struct tg_conn_alog alog;
};

/* Take an accepted socket (non-blocking) and start the handshake. On failure
 * the socket is closed and counted. */
void tg_conn_accept(struct tg_wlistener *l, int fd);
/* Resume a connection from the ready list. */
void tg_conn_resume(struct tg_conn *c);
/* The one close path. stat is the tg_core_stat to count (CLOSE_*). */
void tg_conn_close(struct tg_conn *c, int stat);

#endif
