/*
 * tg_conn: one client connection, an explicit state machine with exactly one
 * close path.
 *
 *   ACCEPTED [-> PROXY_HEADER] -> HELLO_WAIT -> HANDSHAKING <-> KEYOP_WAIT
 *            -> UPSTREAM_CONNECTING -> PROXYING -> (half-closed directions drain) -> CLOSED
 *
 * HELLO_WAIT: nothing of the ClientHello has arrived yet. The connection
 * holds no SSL object and no buffer (an idle flood costs a few hundred
 * bytes per connection); its SSL is made when the first byte is readable.
 * limits.first_byte_timeout (capped by handshake_timeout) closes a
 * connection that stays silent (CLOSE_FIRST_BYTE_TIMEOUT).
 *
 * From accept to the end of the handshake a connection is on its worker's
 * handshake list, the one whose client was heard from longest ago first: at
 * limits.max_connections the worker closes the first of them that is not
 * inside a key operation to make room for a new one (CLOSE_EVICTED). A
 * connection is also counted against max_connections_per_source from
 * accept (on a proxy_protocol listener: from the header's end, under the
 * header's source address) until it is freed.
 *
 * PROXY_HEADER, on listeners with proxy_protocol: true only: reading the
 * load balancer's PROXY header (tg_ppio), exactly its bytes, for at most the
 * listener's proxy_protocol_timeout; a missing, invalid or late header
 * closes the connection (CLOSE_PROXY_PROTOCOL, PP_ERR_*). The handshake
 * and first-byte timers start when the header is complete. When the upstream has
 * proxy_protocol v1 or v2, the header for it is the first thing in the
 * client -> upstream buffer once the upstream connection is up.
 *
 * HANDSHAKING, on listeners with tls.client_certificate: libssl asks for
 * and verifies the client's certificate; a refused or missing one fails the
 * handshake (counted by reason: tlsgate_client_certificates_total), a
 * verified one is described in c->peer once the handshake is done. A
 * resumed session whose certificate has expired since is refused too.
 *
 * UPSTREAM_CONNECTING: the listener's cluster gives an endpoint; when the
 * connect fails or times out (connect_timeout per attempt) the result is
 * reported to the cluster and another endpoint is tried, up to
 * max_connect_attempts, the client's session waiting meanwhile.
 *
 * KEYOP_WAIT: libssl's ASYNC job is paused on a key operation; no SSL_* call
 * is made until the async callback (tg_worker_ssl_async_cb, whose argument is
 * the connection) puts the connection on the worker's ready list. A connection asked to close while
 * in KEYOP_WAIT is only marked (closing, its key context cancelled); it is freed after its job
 * ended.
 *
 * Owner: the worker thread that accepted it. Created by tg_conn_accept();
 * freed only by the close path. From accept until it is freed it holds the
 * configuration generation it was accepted under (through its listener,
 * c->l->wg): a reload leaves its TLS context, listener settings and limits
 * alone, even when its listener is removed.
 */
#ifndef TG_CONN_H
#define TG_CONN_H

#include <ev.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "alog/tg_alog.h"
#include "core/tg_sockbio.h"
#include "core/tg_stats.h"
#include "keyprov/tg_keyprov.h"
#include "proxy/tg_srclimit.h"
#include "tls/tg_mtls.h"
#include "upstream/tg_endpoint.h"

/* Most upstream endpoints one connection tries (upstream.max_connect_attempts). */
#define TG_CONN_MAX_ATTEMPTS 10

struct tg_worker;
struct tg_wlistener;
struct tg_ppio_rx;

#define TG_CONN_STATES(X)                                                                          \
    X(ACCEPTED, "accepted")                                                                        \
    X(PROXY_HEADER, "proxy_header")                                                                \
    X(HELLO_WAIT, "hello_wait")                                                                    \
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
    uint64_t t_connect_ns;        /* first upstream connect() started; 0: not */
    uint64_t t_connected_ns;      /* upstream connected, or the last attempt failed; 0: not yet */
    uint64_t bytes_in;            /* plaintext of the client's sent to the upstream */
    uint64_t bytes_out;           /* plaintext written to the client */
    struct tg_alog_addr peer;     /* the TCP peer, set at accept when the worker logs */
    struct tg_alog_addr upstream; /* the endpoint of the last connect attempt */
    /* That endpoint's entry in the configuration ("web.svc:80"): owned by
     * the listener's cluster, which outlives the connection. NULL: none. */
    const char *upstream_host;
    /* The tg_core_stat refining the close reason (HS_FAIL_*,
     * UPSTREAM_CONNECT_*, PP_ERR_*); 0: none. */
    int detail;
};

struct tg_conn {
    struct tg_worker *w;
    struct tg_wlistener *l; /* of its generation (l->wg), kept until it is freed */
    enum tg_conn_state state;
    int cfd; /* client socket */
    int ufd; /* upstream socket, -1 before connect */
    SSL *ssl;
    /* The client socket as libssl sees it (its BIO's state): sb.readable
     * saves the read that could only say EAGAIN, sb.more holds the last
     * response bytes back for the close_notify and FIN (tg_sockbio.h). */
    struct tg_sockbio sb;
    ev_io cio;
    ev_io uio;
    ev_timer timer;
    struct tg_keyctx keyctx;
    /* The client as tlsgate reports it (logs, the PROXY header it sends):
     * on a proxy_protocol listener the header's source address when it
     * carried one, else the TCP peer. dest_addr: the address the client
     * connected to, from the same header; AF_UNSPEC when there was none
     * until something needs it (then getsockname). */
    struct sockaddr_storage client_addr;
    struct sockaddr_storage dest_addr;
    struct tg_ppio_rx *pp_rx; /* a PROXY header arriving in pieces (PROXY_HEADER) */
    size_t pp_unsent;         /* bytes of the upstream's PROXY header still at the head of c2u */
    uint64_t t_accept_ns;
    uint64_t
        t_hs_start_ns; /* handshake_timeout counts from here: accept, or the PROXY header's end */
    uint64_t t_active_ns; /* last byte moved, for idle_timeout */
    /* Each pipe's storage (data) comes from the worker's pool only while
     * bytes are in flight in that direction: NULL when drained. */
    struct tg_pipe c2u;          /* client -> upstream plaintext */
    struct tg_pipe u2c;          /* upstream -> client plaintext */
    struct tg_srclimit_hold src; /* counted against max_connections_per_source */
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
    int close_stat; /* enum tg_core_stat of the close reason */
    /* upstream: the endpoint of the current attempt (referenced, counted
     * active; NULL before the first and between attempts) and the ones
     * tried so far (compared only, not referenced) */
    struct tg_endpoint *ep;
    struct tg_endpoint *tried[TG_CONN_MAX_ATTEMPTS];
    uint8_t n_tried;
    /* The client's certificate (tls.client_certificate), verified: subject,
     * SAN, SHA-256 fingerprint (tg_mtls.h). Filled when the handshake
     * finishes (also from a resumed session) and kept until the connection
     * is freed, for the PROXY v2 header's SSL_CN and the access log; NULL
     * when the listener asks for none or the client sent none. Owned. */
    struct tg_tls_peer *peer;
    struct tg_conn *prev, *next;       /* worker's list */
    struct tg_conn *hs_prev, *hs_next; /* worker's handshake list (in_handshake) */
    struct tg_conn *ready_next;

    struct tg_conn_alog alog;
};

/* Take an accepted socket (non-blocking) from the TCP peer `peer` (as
 * accept4 gave it; AF_UNSPEC if unknown) and start reading the PROXY header
 * or the handshake. On failure the socket is closed and counted. */
void tg_conn_accept(struct tg_wlistener *l, int fd, const struct sockaddr_storage *peer);
/* Resume a connection from the ready list. */
void tg_conn_resume(struct tg_conn *c);
/* The one close path. stat is the tg_core_stat to count (CLOSE_*). */
void tg_conn_close(struct tg_conn *c, int stat);

#endif
