/*
 * tg_bench_client: the load generator of `tlsgate bench`.
 *
 * One libev loop (epoll) on the calling thread drives N connection slots.
 * Each slot runs calls one after the other: [TCP connect, TLS handshake,]
 * HTTP/1.1 request, response. Everything is non-blocking; a slot is a small
 * state machine (struct bc_conn, states below) with one io watcher and one
 * timer that serves as the per-call timeout, the pacing wait and the
 * close-wait, whichever applies to the state.
 *
 * Cost per full handshake is what matters (DESIGN.md §6: the client is the
 * wall), so the hot path avoids what can be avoided:
 *  - one SSL_CTX for the run, on a lean library context (tg_bench_libctx.c:
 *    OpenSSL 3.0 otherwise walks all its decoders to parse the server
 *    certificate, ~45 us per handshake); no session cache, no tickets; SSL
 *    objects are reused with SSL_clear() and SSL_set_session(NULL) (so a call
 *    never resumes) and keep their BIO;
 *  - our own socket BIO: what libssl writes is collected in a small per-slot
 *    buffer and sent once per step, so the TLS Finished and the HTTP request
 *    leave in one segment (one write instead of two, and one wake-up less for
 *    the server); and it knows from epoll whether the socket is readable, so
 *    libssl's read right after the ClientHello costs no system call;
 *  - no allocation of ours per call: the request is built once, responses
 *    are parsed by a streaming parser straight out of one shared 64 KiB read
 *    buffer, latencies go to a preallocated, doubling array;
 *  - read-ahead on the SSL so a whole flight comes in with one read(), and
 *    SSL_has_pending() instead of reading until EAGAIN (epoll is level
 *    triggered, so a readable socket wakes us again anyway);
 *  - AES-128-GCM first among the TLS 1.3 suites, as Go (hey) and Chrome do:
 *    SHA-256 for the transcript and key schedule is cheaper than SHA-384;
 *  - the client's X25519 key pair is reused for 1,024 handshakes (the
 *    server's work is unchanged; tg_bench_libctx.c);
 *  - -k skips X509_verify_cert() (libssl runs it even with VERIFY_NONE);
 *    --cacert skips rebuilding a chain identical to the one just verified;
 *  - the ClientHello is written right after connect(): on loopback the TCP
 *    handshake has usually completed by then, which saves a wake-up.
 *
 * TIME_WAIT: with keepalive=false the request says "Connection: close" and
 * the client waits, after the response is complete, for the server to close
 * first (it reads the close_notify and the FIN), then closes its side. The
 * TIME_WAIT state therefore lands on the server side, and the client's
 * ephemeral port is free again at once; at 2,000+ connections/s, client-side
 * TIME_WAIT would hold 120,000 four-tuples for 60 s, more than the 28,232
 * ports of the default range (Linux's tcp_tw_reuse=2 lets loopback connects
 * reuse them after a second, at the price of a longer port search). Some
 * servers never close first (nginx's stream proxy waits for the client): in
 * --close=auto, after TG_BENCH_AUTO_MISSES waits of TG_BENCH_CLOSE_WAIT_NS
 * that saw no server close at all, the client closes first (a plain FIN,
 * like hey and most clients) for the rest of the run; --close=client does so
 * from the start, --close=server always waits (up to 1 s, then resets).
 * The report counts who closed. Failed calls are always closed with a reset
 * (SO_LINGER 0). --source-ips spreads connections over several 127.0.0.x
 * sources when the port range is still too small.
 *
 * Measurement: the interval starts when the warmup calls are all done (or
 * at once) and ends when the last measured call completes. Calls in flight
 * when the duration ends are finished and counted, like fortio does.
 */
#include "bench/tg_bench_internal.h"

#include <ev.h>

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench/tg_bench_libctx.h"
#include "core/tg_time.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define TG_BENCH_RBUF_SIZE (64 * 1024)
/* Per-slot output buffer: a ClientHello, or a Finished flight plus a small
 * request. Larger writes (big payloads) go to the socket directly. */
#define TG_BENCH_OBUF_SIZE 2048
/* How long a server may take to close after a "Connection: close" response
 * (--close=auto; --close=server waits TG_BENCH_CLOSE_WAIT_MAX_NS). */
#define TG_BENCH_CLOSE_WAIT_NS     (200ULL * TG_NS_PER_MS)
#define TG_BENCH_CLOSE_WAIT_MAX_NS (1000ULL * TG_NS_PER_MS)
/* --close=auto: this many expired waits without any server close -> client closes. */
#define TG_BENCH_AUTO_MISSES 8
/* A paced call starts when its slot is due within this much. */
#define TG_BENCH_PACE_SLACK_NS (100ULL * TG_NS_PER_US)

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
    int fd;              /* -1 without a TCP connection */
    uint8_t state;       /* enum bc_state */
    bool readable;       /* epoll said readable and no read came back short since */
    bool peer_eof;       /* a read returned 0 */
    bool ssl_dirty;      /* the SSL was used since it was last reset */
    bool tls_up;         /* handshake finished on the current connection */
    bool tcp_up;         /* the TCP connection is known to be established */
    bool close_notify;   /* the server's close_notify was read */
    bool call_hs;        /* the current call did a full handshake */
    bool call_warmup;    /* the current call is a warmup call */
    uint64_t call_start; /* ns, tg_now_ns() */
    uint64_t k;          /* measured calls started by this slot (pacing) */
    uint64_t pace_offset;
    size_t wpos; /* request bytes written */
    char *obuf;  /* TG_BENCH_OBUF_SIZE bytes: TLS output not sent yet */
    uint32_t olen;
    struct tg_http_parser http;
};

enum bc_phase { PH_WARMUP, PH_MEASURE, PH_END };

struct bench {
    const struct tg_bench_opts *o;
    struct ev_loop *loop;
    OSSL_LIB_CTX *libctx; /* NULL: the default context */
    SSL_CTX *ctx;
    BIO_METHOD *biom;
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

static void bc_next(struct bc_conn *c);
static void bc_handshake(struct bc_conn *c);
static void bc_send(struct bc_conn *c);
static void bc_recv(struct bc_conn *c);
static void bc_end_measure(struct bench *b);
static void bc_begin_measure(struct bench *b);
static void bc_fail(struct bc_conn *c, enum tg_bench_errkind kind, const char *msg);

/* ------------------------------------------------------------------------- */
/* Small helpers                                                             */

static double bc_tv(const struct timeval *tv)
{
    return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

static void bc_want(struct bc_conn *c, int events)
{
    if (ev_is_active(&c->io)) {
        if (c->io.fd == c->fd && (c->io.events & (EV_READ | EV_WRITE)) == events)
            return;
        ev_io_stop(c->b->loop, &c->io);
    }
    ev_io_set(&c->io, c->fd, events);
    ev_io_start(c->b->loop, &c->io);
}

static void bc_timer(struct bc_conn *c, uint64_t after_ns)
{
    ev_timer_stop(c->b->loop, &c->timer);
    ev_timer_set(&c->timer, (double)after_ns / 1e9, 0.0);
    ev_timer_start(c->b->loop, &c->timer);
}

/* Close the TCP connection. abortive: reset (no TIME_WAIT, no FIN). */
static void bc_close(struct bc_conn *c, bool abortive)
{
    if (c->fd < 0)
        return;
    ev_io_stop(c->b->loop, &c->io);
    if (abortive) {
        struct linger lg = {1, 0};
        (void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(c->fd);
    c->fd = -1;
    c->tls_up = false;
    c->tcp_up = false;
    c->close_notify = false;
    c->olen = 0;
}

/* ------------------------------------------------------------------------- */
/* The socket BIO                                                            */

static void bc_tcp_up(struct bc_conn *c);

/* Send the buffered TLS output. 0: all sent; 1: would block (the rest stays
 * buffered, wait for EV_WRITE); -1: error, errno set. */
static int bc_flush(struct bc_conn *c)
{
    uint32_t off = 0;
    while (off < c->olen) {
        ssize_t n = send(c->fd, c->obuf + off, c->olen - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -1;
            break;
        }
        off += (uint32_t)n;
    }
    if (off > 0) {
        bc_tcp_up(c); /* bytes went out: the TCP connection is established */
        memmove(c->obuf, c->obuf + off, c->olen - off);
        c->olen -= off;
    }
    return c->olen > 0 ? 1 : 0;
}

static int bc_bio_write(BIO *bio, const char *data, int len)
{
    struct bc_conn *c = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    if (len <= 0)
        return 0;
    if ((size_t)c->olen + (size_t)len <= TG_BENCH_OBUF_SIZE) {
        memcpy(c->obuf + c->olen, data, (size_t)len);
        c->olen += (uint32_t)len;
        return len;
    }
    /* Too big to collect: what is buffered goes first, then this directly. */
    int r = bc_flush(c);
    if (r < 0)
        return -1;
    if (r == 0) {
        ssize_t n = send(c->fd, data, (size_t)len, MSG_NOSIGNAL);
        if (n >= 0)
            return (int)n;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
    }
    BIO_set_retry_write(bio);
    return -1;
}

static int bc_bio_read(BIO *bio, char *out, int len)
{
    struct bc_conn *c = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    if (!c->readable) {
        /* epoll has not reported data since the last short read: read(2)
         * could only say EAGAIN. */
        BIO_set_retry_read(bio);
        return -1;
    }
    ssize_t n = recv(c->fd, out, (size_t)len, 0);
    if (n > 0) {
        if (n < len)
            c->readable = false;
        return (int)n;
    }
    if (n == 0) {
        c->peer_eof = true;
        return 0;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        c->readable = false;
        BIO_set_retry_read(bio);
    }
    return -1;
}

static long bc_bio_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    struct bc_conn *c = BIO_get_data(bio);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* sent at the end of the step (bc_wait), not per flight */
    case BIO_CTRL_EOF:
        return c != NULL && c->peer_eof;
    case BIO_CTRL_GET_CLOSE:
    case BIO_CTRL_SET_CLOSE:
    case BIO_CTRL_DUP:
        return 1;
    default:
        return 0;
    }
}

static int bc_bio_create(BIO *bio)
{
    BIO_set_init(bio, 1);
    return 1;
}

static BIO_METHOD *bc_bio_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tgbench");
    if (m == NULL || BIO_meth_set_write(m, bc_bio_write) != 1 ||
        BIO_meth_set_read(m, bc_bio_read) != 1 || BIO_meth_set_ctrl(m, bc_bio_ctrl) != 1 ||
        BIO_meth_set_create(m, bc_bio_create) != 1) {
        BIO_meth_free(m);
        return NULL;
    }
    return m;
}

/* Kind of error for a failed send/recv, from where the call stands. */
static enum tg_bench_errkind bc_io_errkind(const struct bc_conn *c)
{
    switch (c->state) {
    case BC_HANDSHAKE:
        return c->tcp_up ? TG_BENCH_ERR_TLS_HANDSHAKE : TG_BENCH_ERR_CONNECT;
    case BC_SEND:
        return TG_BENCH_ERR_WRITE;
    default:
        return TG_BENCH_ERR_READ;
    }
}

/* Send what libssl produced during this step, then wait for events. */
static void bc_wait(struct bc_conn *c, int events)
{
    if (c->olen > 0) {
        int r = bc_flush(c);
        if (r < 0) {
            char msg[160];
            snprintf(msg, sizeof(msg), "%s %s: %s", c->tcp_up ? "send to" : "connect",
                     c->b->o->target.addr.text, strerror(errno));
            bc_fail(c, bc_io_errkind(c), msg);
            return;
        }
        if (r > 0) {
            bc_want(c, EV_WRITE); /* bc_io_cb sends the rest, then resumes */
            return;
        }
    }
    bc_want(c, events);
}

/* The first OpenSSL error, or errno, as text. */
static void bc_describe(char *buf, size_t len, SSL *ssl, int ssl_err, int saved_errno)
{
    unsigned long e = ERR_peek_error();
    if (ssl != NULL && SSL_get_verify_result(ssl) != X509_V_OK) {
        snprintf(buf, len, "certificate verify failed: %s",
                 X509_verify_cert_error_string(SSL_get_verify_result(ssl)));
    } else if (e != 0) {
        ERR_error_string_n(e, buf, len);
    } else if (ssl_err == SSL_ERROR_SYSCALL && saved_errno != 0) {
        snprintf(buf, len, "%s", strerror(saved_errno));
    } else if (ssl_err == SSL_ERROR_SYSCALL || ssl_err == SSL_ERROR_ZERO_RETURN) {
        snprintf(buf, len, "connection closed by the server");
    } else {
        snprintf(buf, len, "SSL error %d", ssl_err);
    }
}

/* ------------------------------------------------------------------------- */
/* Call bookkeeping                                                          */

static void bc_note_error(struct bench *b, enum tg_bench_errkind kind, const char *msg)
{
    if (b->res.first_error[kind][0] == '\0' && msg != NULL)
        snprintf(b->res.first_error[kind], sizeof(b->res.first_error[kind]), "%s", msg);
}

/* Record the end of the current call. kind is TG_BENCH_OK on success. */
static void bc_call_end(struct bc_conn *c, enum tg_bench_errkind kind, const char *msg)
{
    struct bench *b = c->b;
    uint64_t now = tg_now_ns();
    ev_timer_stop(b->loop, &c->timer);
    if (c->call_warmup) {
        b->warm_done++;
        b->res.warmup_done++;
        if (kind == TG_BENCH_OK)
            b->res.total_ok++;
        else
            bc_note_error(b, kind, msg);
        /* The slot finishing the last warmup call goes on with bc_next()
         * right after this, already in the measured phase. */
        if (b->phase == PH_WARMUP && b->warm_done == b->o->warmup)
            bc_begin_measure(b);
        return;
    }
    b->res.calls++;
    b->sec_calls++;
    b->last_done = now;
    tg_bench_lat_add(&b->lat, (now - c->call_start) / TG_NS_PER_US);
    if (kind == TG_BENCH_OK) {
        b->res.ok++;
        b->res.total_ok++;
        if (c->call_hs)
            b->res.handshakes_full++;
    } else {
        b->res.errors[kind]++;
        b->sec_errors++;
        bc_note_error(b, kind, msg);
    }
}

/* A failed call: record it, reset the connection, go on. */
static void bc_fail(struct bc_conn *c, enum tg_bench_errkind kind, const char *msg)
{
    bc_call_end(c, kind, msg);
    bc_close(c, true);
    bc_next(c);
}

static void bc_fail_ssl(struct bc_conn *c, enum tg_bench_errkind kind, int ssl_err, int saved_errno)
{
    char msg[160] = "";
    if (c->b->res.first_error[kind][0] == '\0')
        bc_describe(msg, sizeof(msg), c->ssl, ssl_err, saved_errno);
    ERR_clear_error();
    bc_fail(c, kind, msg);
}

static void bc_record_tls(struct bc_conn *c)
{
    struct tg_bench_result *r = &c->b->res;
    const char *ver = SSL_get_version(c->ssl);
    const char *cip = SSL_CIPHER_get_name(SSL_get_current_cipher(c->ssl));
    int gid = SSL_get_negotiated_group(c->ssl);
    for (size_t i = 0; i < r->ntls; i++) {
        /* version and cipher names are static strings inside libssl */
        if (r->tls[i].version == ver && r->tls[i].cipher == cip && r->tls[i].group_id == gid) {
            r->tls[i].count++;
            return;
        }
    }
    if (r->ntls == TG_BENCH_MAX_TLS_COMBOS) {
        r->tls_other++;
        return;
    }
    struct tg_bench_tls_combo *t = &r->tls[r->ntls++];
    const char *gname = gid ? SSL_group_to_name(c->ssl, gid) : NULL;
    t->version = ver;
    t->cipher = cip ? cip : "?";
    t->group_id = gid;
    snprintf(t->group, sizeof(t->group), "%s", gname ? gname : "");
    t->count = 1;
}

/* ------------------------------------------------------------------------- */
/* Connect and handshake                                                     */

/* The TCP connection is established (counted once per connection). */
static void bc_tcp_up(struct bc_conn *c)
{
    if (!c->tcp_up) {
        c->tcp_up = true;
        if (!c->call_warmup)
            c->b->res.connections++;
    }
}

static bool bc_connect_errno(int e)
{
    return e == ECONNREFUSED || e == ENETUNREACH || e == EHOSTUNREACH || e == ETIMEDOUT ||
           e == EADDRNOTAVAIL || e == ECONNRESET || e == EPIPE;
}

/* A fresh SSL for the new connection: reuse the object when allowed. */
static int bc_ssl_prepare(struct bc_conn *c)
{
    struct bench *b = c->b;
    if (c->ssl != NULL && c->ssl_dirty) {
        if (b->o->ssl_reuse && SSL_clear(c->ssl) == 1) {
            /* SSL_clear keeps a good session for resumption: drop it, every
             * call must do a full handshake. */
            SSL_set_session(c->ssl, NULL);
        } else {
            SSL_free(c->ssl);
            c->ssl = NULL;
        }
    }
    if (c->ssl == NULL) {
        c->ssl = SSL_new(b->ctx);
        if (c->ssl == NULL)
            return TG_ENOMEM;
        const char *sni =
            b->o->sni ? b->o->sni : (b->o->target.host_is_ip ? NULL : b->o->target.host);
        /* Our BIO works on c->fd and c->obuf, whatever the connection is. */
        BIO *bio = BIO_new(b->biom);
        if (bio != NULL) {
            BIO_set_data(bio, c);
            SSL_set_bio(c->ssl, bio, bio);
        }
        if (bio == NULL || (sni != NULL && SSL_set_tlsext_host_name(c->ssl, sni) != 1)) {
            SSL_free(c->ssl);
            c->ssl = NULL;
            return TG_ECRYPTO;
        }
    }
    c->readable = false;
    c->peer_eof = false;
    c->olen = 0;
    SSL_set_connect_state(c->ssl);
    c->ssl_dirty = true;
    return TG_OK;
}

static void bc_connect(struct bc_conn *c)
{
    struct bench *b = c->b;
    const struct tg_bench_addr *a = &b->o->target.addr;
    char msg[160];
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(msg, sizeof(msg), "socket: %s", strerror(errno));
        bc_fail(c, TG_BENCH_ERR_CONNECT, msg);
        return;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (b->o->source_ips > 0) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000001u + (b->src_rr++ % b->o->source_ips));
        /* The port is chosen at connect() time, against the full four-tuple. */
        (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
            snprintf(msg, sizeof(msg), "bind source: %s", strerror(errno));
            close(fd);
            bc_fail(c, TG_BENCH_ERR_CONNECT, msg);
            return;
        }
    }
    int r = connect(fd, (const struct sockaddr *)&a->ss, a->len);
    if (r != 0 && errno != EINPROGRESS) {
        snprintf(msg, sizeof(msg), "connect %s: %s", a->text, strerror(errno));
        close(fd);
        bc_fail(c, TG_BENCH_ERR_CONNECT, msg);
        return;
    }
    c->fd = fd;
    c->tcp_up = false;
    c->tls_up = false;
    c->close_notify = false;
    if (r == 0)
        bc_tcp_up(c);
    if (bc_ssl_prepare(c) != TG_OK) {
        bc_fail(c, TG_BENCH_ERR_TLS_HANDSHAKE, "cannot create the SSL object");
        return;
    }
    c->state = BC_HANDSHAKE;
    bc_handshake(c);
}

static void bc_handshake(struct bc_conn *c)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_connect(c->ssl);
    if (r == 1) {
        struct bench *b = c->b;
        bc_tcp_up(c);
        c->tls_up = true;
        if (SSL_session_reused(c->ssl)) {
            if (!c->call_warmup)
                b->res.handshakes_resumed++;
        } else {
            c->call_hs = true;
        }
        if (!c->call_warmup)
            bc_record_tls(c);
        c->state = BC_SEND;
        c->wpos = 0;
        bc_send(c);
        return;
    }
    int saved = errno;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        bc_wait(c, EV_READ);
    } else if (e == SSL_ERROR_WANT_WRITE) {
        bc_wait(c, EV_WRITE);
    } else if (!c->tcp_up && e == SSL_ERROR_SYSCALL && bc_connect_errno(saved)) {
        char msg[160];
        snprintf(msg, sizeof(msg), "connect %s: %s", c->b->o->target.addr.text, strerror(saved));
        ERR_clear_error();
        bc_fail(c, TG_BENCH_ERR_CONNECT, msg);
    } else {
        bc_fail_ssl(c, TG_BENCH_ERR_TLS_HANDSHAKE, e, saved);
    }
}

/* ------------------------------------------------------------------------- */
/* Request and response                                                      */

static void bc_send(struct bc_conn *c)
{
    struct bench *b = c->b;
    while (c->wpos < b->reqlen) {
        ERR_clear_error();
        errno = 0;
        size_t left = b->reqlen - c->wpos;
        int n = SSL_write(c->ssl, b->req + c->wpos, left > INT32_MAX ? INT32_MAX : (int)left);
        if (n > 0) {
            c->wpos += (size_t)n;
            continue;
        }
        int saved = errno;
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_WRITE) {
            bc_wait(c, EV_WRITE);
        } else if (e == SSL_ERROR_WANT_READ) {
            bc_wait(c, EV_READ);
        } else {
            bc_fail_ssl(c, TG_BENCH_ERR_WRITE, e, saved);
        }
        return;
    }
    c->state = BC_RECV;
    tg_http_init(&c->http, TG_HTTP_RESPONSE, 0);
    if (SSL_has_pending(c->ssl) && c->olen == 0)
        bc_recv(c);
    else
        bc_wait(c, EV_READ); /* sends the request (with the Finished, if any) */
}

/* Close statistics cover the measured calls only, like every other count. */
static void bc_count_close(const struct bc_conn *c, uint64_t *counter)
{
    if (!c->call_warmup)
        (*counter)++;
}

/* The response is complete. tcp_eof: the server's FIN is already here. */
static void bc_response_done(struct bc_conn *c, bool tcp_eof)
{
    struct bench *b = c->b;
    uint16_t status = c->http.status;
    bool ok = status >= 200 && status <= 299;
    if (!ok) {
        char msg[64];
        snprintf(msg, sizeof(msg), "HTTP status %u", status);
        bc_fail(c, TG_BENCH_ERR_HTTP_STATUS, msg); /* like every failed call: reset */
        return;
    }
    bc_call_end(c, TG_BENCH_OK, NULL);
    if (tcp_eof) {
        bc_count_close(c, &b->res.close_server);
        b->auto_server_closes++;
        bc_close(c, false); /* the server closed first: no TIME_WAIT here */
        bc_next(c);
    } else if (b->o->keepalive && !c->close_notify && tg_http_keep_alive(&c->http)) {
        bc_next(c); /* reuse the connection */
    } else if (b->o->close_mode == TG_BENCH_CLOSE_CLIENT || b->res.close_switched) {
        bc_count_close(c, &b->res.close_client);
        bc_close(c, false);
        bc_next(c);
    } else {
        /* Let the server close first (see the file comment). */
        c->state = BC_CLOSE_WAIT;
        bc_timer(c, b->o->close_mode == TG_BENCH_CLOSE_SERVER ? TG_BENCH_CLOSE_WAIT_MAX_NS
                                                              : TG_BENCH_CLOSE_WAIT_NS);
        bc_want(c, EV_READ);
    }
}

static void bc_recv(struct bc_conn *c)
{
    struct bench *b = c->b;
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int n = SSL_read(c->ssl, b->rbuf, TG_BENCH_RBUF_SIZE);
        if (n > 0) {
            size_t used;
            int rc = tg_http_feed(&c->http, (const char *)b->rbuf, (size_t)n, &used);
            if (rc == TG_HTTP_ERROR) {
                bc_fail(c, TG_BENCH_ERR_BAD_RESPONSE, tg_http_strerror(c->http.error));
                return;
            }
            if (rc == TG_HTTP_DONE) {
                if (used < (size_t)n) {
                    bc_fail(c, TG_BENCH_ERR_BAD_RESPONSE, "extra bytes after the response");
                    return;
                }
                /* The close_notify often arrives with the response: pick it
                 * up now if libssl already holds it (no system call). */
                if (SSL_has_pending(c->ssl)) {
                    ERR_clear_error();
                    char one;
                    int m = SSL_read(c->ssl, &one, 1);
                    if (m > 0) {
                        bc_fail(c, TG_BENCH_ERR_BAD_RESPONSE, "extra bytes after the response");
                        return;
                    }
                    if (SSL_get_error(c->ssl, m) == SSL_ERROR_ZERO_RETURN)
                        c->close_notify = true;
                    ERR_clear_error();
                }
                bc_response_done(c, false);
                return;
            }
            if (!SSL_has_pending(c->ssl)) {
                bc_wait(c, EV_READ);
                return;
            }
            continue;
        }
        int saved = errno;
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ) {
            bc_wait(c, EV_READ);
            return;
        }
        if (e == SSL_ERROR_WANT_WRITE) {
            bc_wait(c, EV_WRITE);
            return;
        }
        /* close_notify, or a bare FIN (our BIO saw read() return 0; libssl
         * calls it "unexpected eof"): the end of a body delimited by the close. */
        bool eof = e == SSL_ERROR_ZERO_RETURN || c->peer_eof;
        if (!eof) {
            bc_fail_ssl(c, TG_BENCH_ERR_READ, e, saved);
            return;
        }
        ERR_clear_error();
        if (tg_http_eof(&c->http) == TG_HTTP_DONE) {
            c->close_notify = e == SSL_ERROR_ZERO_RETURN;
            bc_response_done(c, c->peer_eof); /* the FIN may follow the close_notify */
        } else {
            bc_fail(c, TG_BENCH_ERR_READ,
                    c->http.error == TG_HTTP_E_EMPTY ? "connection closed before the response"
                                                     : "connection closed inside the response");
        }
        return;
    }
}

/* CLOSE_WAIT and idle keep-alive connections: the socket became readable.
 * Returns 1 when the server closed (the connection is now closed on our side
 * too, with a plain close), 0 while still waiting, -1 when the connection
 * was reset for anything else (unexpected data, an error). */
static int bc_read_closed(struct bc_conn *c)
{
    if (!c->close_notify && c->tls_up && !c->peer_eof) {
        ERR_clear_error();
        char one;
        int n = SSL_read(c->ssl, &one, 1);
        int e = n > 0 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, n);
        ERR_clear_error();
        if (e == SSL_ERROR_WANT_READ)
            return 0;
        if (e == SSL_ERROR_ZERO_RETURN) {
            c->close_notify = true;
        } else if (!c->peer_eof) {
            bc_close(c, true); /* data nobody asked for, or an error */
            return -1;
        }
    }
    if (!c->peer_eof) {
        /* After close_notify only the FIN should follow: read it raw. */
        char tmp[64];
        ssize_t r = recv(c->fd, tmp, sizeof(tmp), 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return 0;
        if (r != 0) {
            bc_close(c, true);
            return -1;
        }
    }
    bc_close(c, false); /* the server closed first: no TIME_WAIT here */
    return 1;
}

/* ------------------------------------------------------------------------- */
/* Scheduling                                                                */

static void bc_start_call(struct bc_conn *c, bool warmup)
{
    struct bench *b = c->b;
    c->call_warmup = warmup;
    c->call_hs = false;
    if (warmup) {
        b->warm_issued++;
    } else {
        b->issued++;
        c->k++;
    }
    c->call_start = tg_now_ns();
    bc_timer(c, b->o->timeout_ns);
    if (c->tls_up) {
        c->state = BC_SEND;
        c->wpos = 0;
        bc_send(c);
    } else {
        bc_close(c, false);
        bc_connect(c);
    }
}

static void bc_finish(struct bc_conn *c)
{
    struct bench *b = c->b;
    if (c->state == BC_FINISHED)
        return;
    ev_timer_stop(b->loop, &c->timer);
    bc_close(c, false);
    c->state = BC_FINISHED;
    if (--b->active == 0)
        bc_end_measure(b);
}

/* Idle slot: watch a kept-alive connection for the server closing it. */
static void bc_idle_watch(struct bc_conn *c)
{
    if (c->fd >= 0)
        bc_want(c, EV_READ);
    else
        ev_io_stop(c->b->loop, &c->io);
}

static void bc_next_now(struct bc_conn *c)
{
    struct bench *b = c->b;
    const struct tg_bench_opts *o = b->o;
    if (b->phase == PH_END) {
        bc_finish(c);
        return;
    }
    if (b->phase == PH_WARMUP) {
        if (b->warm_issued < o->warmup) {
            bc_start_call(c, true);
            return;
        }
        c->state = BC_PARKED;
        ev_timer_stop(b->loop, &c->timer);
        bc_idle_watch(c);
        return;
    }
    if (b->stopping || (o->num_calls > 0 && b->issued >= o->num_calls)) {
        bc_finish(c);
        return;
    }
    if (o->qps > 0) {
        uint64_t due = b->t0 + c->pace_offset + (uint64_t)((double)c->k * b->interval_ns);
        uint64_t now = tg_now_ns();
        if (due > now + TG_BENCH_PACE_SLACK_NS) {
            c->state = BC_PACING;
            bc_timer(c, due - now);
            bc_idle_watch(c);
            return;
        }
    }
    bc_start_call(c, false);
}

/* The slot has no call in flight: start the next one, wait, or finish.
 * A call can fail synchronously (connection refused) and call this again;
 * past a small depth the next call goes through the loop (a zero timer), so
 * a dead target costs no stack. */
static void bc_next(struct bc_conn *c)
{
    struct bench *b = c->b;
    if (b->depth >= 4 && b->phase != PH_END) {
        c->state = BC_PACING;
        bc_timer(c, 0);
        bc_idle_watch(c);
        return;
    }
    b->depth++;
    bc_next_now(c);
    b->depth--;
}

static void bc_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct bc_conn *c = w->data;
    if (revents & EV_READ)
        c->readable = true;
    if (c->olen > 0 && c->fd >= 0) {
        int r = bc_flush(c);
        if (r < 0 && c->state >= BC_HANDSHAKE && c->state <= BC_RECV) {
            char msg[160];
            snprintf(msg, sizeof(msg), "%s %s: %s", c->tcp_up ? "send to" : "connect",
                     c->b->o->target.addr.text, strerror(errno));
            bc_fail(c, bc_io_errkind(c), msg);
            return;
        }
        if (r > 0)
            return; /* still waiting for EV_WRITE */
    }
    switch (c->state) {
    case BC_HANDSHAKE:
        bc_handshake(c);
        break;
    case BC_SEND:
        bc_send(c);
        break;
    case BC_RECV:
        bc_recv(c);
        break;
    case BC_CLOSE_WAIT: {
        int r = bc_read_closed(c);
        if (r != 0) {
            if (r > 0) {
                bc_count_close(c, &c->b->res.close_server);
                c->b->auto_server_closes++;
            }
            ev_timer_stop(c->b->loop, &c->timer);
            bc_next(c);
        }
        break;
    }
    case BC_PACING:
    case BC_PARKED:
        (void)bc_read_closed(c); /* an idle keep-alive connection closed by the server */
        break;
    default:
        ev_io_stop(c->b->loop, &c->io);
        break;
    }
}

static void bc_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct bc_conn *c = w->data;
    char msg[96];
    switch (c->state) {
    case BC_PACING:
        bc_next(c);
        break;
    case BC_CLOSE_WAIT: {
        struct bench *b = c->b;
        bc_count_close(c, &b->res.server_no_close);
        if (b->o->close_mode == TG_BENCH_CLOSE_AUTO && b->auto_server_closes == 0 &&
            ++b->auto_misses >= TG_BENCH_AUTO_MISSES)
            b->res.close_switched = true;
        /* auto: a plain close, as the client would do anyway; server: the
         * server was asked to close and did not, reset. */
        bc_close(c, b->o->close_mode == TG_BENCH_CLOSE_SERVER);
        bc_next(c);
        break;
    }
    case BC_HANDSHAKE:
    case BC_SEND:
    case BC_RECV:
        snprintf(msg, sizeof(msg), "no response within %.3f s (%s)",
                 (double)c->b->o->timeout_ns / 1e9,
                 c->state == BC_HANDSHAKE ? (c->tcp_up ? "handshake" : "connect")
                 : c->state == BC_SEND    ? "sending"
                                          : "receiving");
        bc_fail(c, TG_BENCH_ERR_TIMEOUT, msg);
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------------------- */
/* Measured interval                                                         */

static void bc_progress_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct bench *b = w->data;
    uint64_t now = tg_now_ns();
    char hms[16], line[160];
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(hms, sizeof(hms), "%H:%M:%S", &tm);
    b->sec_index++;
    double dt = tg_ns_to_s(now - b->sec_start);
    tg_bench_format_progress(line, sizeof(line), hms, b->sec_index, b->sec_calls,
                             dt > 0 ? (double)b->sec_calls / dt : 0, b->sec_errors);
    fprintf(stderr, "%s\n", line);
    b->sec_calls = b->sec_errors = 0;
    b->sec_start = now;
}

static void bc_stop(struct bench *b)
{
    b->stopping = true;
    if (b->phase == PH_WARMUP) {
        b->phase = PH_END; /* nothing measured; finish every slot */
    }
    for (uint32_t i = 0; i < b->nconns; i++) {
        struct bc_conn *c = &b->conns[i];
        if (c->state == BC_PACING || c->state == BC_PARKED)
            bc_finish(c);
    }
}

static void bc_deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    bc_stop(w->data);
}

static void bc_signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    struct bench *b = w->data;
    b->res.interrupted = true;
    if (++b->nsignals == 1) {
        fprintf(stderr, "interrupted: finishing the calls in flight (again to abort them)\n");
        bc_stop(b);
    } else {
        b->phase = PH_END;
        bc_end_measure(b);
    }
}

static void bc_begin_measure(struct bench *b)
{
    const struct tg_bench_opts *o = b->o;
    b->phase = PH_MEASURE;
    b->measuring_started = true;
    getrusage(RUSAGE_SELF, &b->ru0);
    if (o->pid > 0)
        b->proxy0_ok = tg_bench_proc_cpu(o->pid, &b->proxy0) == TG_OK;
    b->t0 = b->sec_start = b->last_done = tg_now_ns();
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(b->res.start_time, sizeof(b->res.start_time), "%Y-%m-%dT%H:%M:%S%z", &tm);
    if (o->num_calls == 0 && o->duration_ns > 0) {
        ev_timer_set(&b->deadline, (double)o->duration_ns / 1e9, 0.0);
        ev_timer_start(b->loop, &b->deadline);
    }
    if (!o->quiet) {
        ev_timer_set(&b->progress, 1.0, 1.0);
        ev_timer_start(b->loop, &b->progress);
    }
    for (uint32_t i = 0; i < b->nconns; i++) {
        if (b->conns[i].state == BC_PARKED)
            bc_next(&b->conns[i]);
    }
}

static void bc_end_measure(struct bench *b)
{
    if (b->ended)
        return;
    b->ended = true;
    b->phase = PH_END;
    if (b->measuring_started) {
        struct rusage ru1;
        getrusage(RUSAGE_SELF, &ru1);
        b->res.client_cpu_s = bc_tv(&ru1.ru_utime) + bc_tv(&ru1.ru_stime) -
                              bc_tv(&b->ru0.ru_utime) - bc_tv(&b->ru0.ru_stime);
        b->res.elapsed_s = tg_ns_to_s(b->last_done - b->t0);
        double p1;
        if (b->o->pid > 0 && b->proxy0_ok && tg_bench_proc_cpu(b->o->pid, &p1) == TG_OK) {
            b->res.have_proxy_cpu = true;
            b->res.proxy_cpu_s = p1 - b->proxy0;
        }
    }
    ev_timer_stop(b->loop, &b->progress);
    ev_timer_stop(b->loop, &b->deadline);
    ev_signal_stop(b->loop, &b->sigint);
    ev_signal_stop(b->loop, &b->sigterm);
    ev_break(b->loop, EVBREAK_ALL);
}

/* ------------------------------------------------------------------------- */
/* Setup                                                                     */

static int bc_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bc_usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "tlsgate bench: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    unsigned long e = ERR_get_error();
    if (e != 0) {
        char tmp[256];
        ERR_error_string_n(e, tmp, sizeof(tmp));
        fprintf(stderr, " (%s)", tmp);
    }
    fprintf(stderr, "\n");
    ERR_clear_error();
    return 2;
}

/* -k: no chain building at all (libssl still checks the CertificateVerify
 * signature with the certificate's key, so the handshake is complete). */
static int bc_verify_none(X509_STORE_CTX *sctx, void *arg)
{
    (void)sctx;
    (void)arg;
    return 1;
}

/* --cacert: a full X509_verify_cert(), except that a leaf identical to the
 * last one that verified (same bytes, no intermediates sent) is accepted for
 * a second. Verifying the same bytes against the same store and name gives
 * the same answer; only the clock could change it, hence the second. */
static int bc_verify_cached(X509_STORE_CTX *sctx, void *arg)
{
    struct bench *b = arg;
    X509 *leaf = X509_STORE_CTX_get0_cert(sctx);
    STACK_OF(X509) *untrusted = X509_STORE_CTX_get0_untrusted(sctx);
    uint64_t now = tg_now_ns();
    bool single = untrusted == NULL || sk_X509_num(untrusted) <= 1;
    if (single && b->verified_leaf != NULL && now - b->verified_at < TG_NS_PER_S &&
        X509_cmp(leaf, b->verified_leaf) == 0) {
        X509_STORE_CTX_set_error(sctx, X509_V_OK);
        return 1;
    }
    int ok = X509_verify_cert(sctx);
    if (ok == 1 && single && X509_up_ref(leaf) == 1) {
        X509_free(b->verified_leaf);
        b->verified_leaf = leaf;
        b->verified_at = now;
    }
    return ok;
}

/* Returns 0, or the exit status for a bad option value. */
static int bc_make_ctx(struct bench *b)
{
    const struct tg_bench_opts *o = b->o;
    if (o->lean_libctx)
        b->libctx = tg_bench_libctx_new(o->reuse_keyshare); /* NULL: the default context */
    SSL_CTX *ctx = SSL_CTX_new_ex(b->libctx, NULL, TLS_client_method());
    if (ctx == NULL)
        return bc_usage_error("cannot create the TLS context");
    b->ctx = ctx;
    if (o->tls_version != 0 && (SSL_CTX_set_min_proto_version(ctx, o->tls_version) != 1 ||
                                SSL_CTX_set_max_proto_version(ctx, o->tls_version) != 1))
        return bc_usage_error("cannot pin the TLS version");
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(ctx, 1);
    if (SSL_CTX_set1_groups_list(ctx, o->groups) != 1)
        return bc_usage_error("--groups: unknown group in '%s'", o->groups);
    if (o->ciphers != NULL && SSL_CTX_set_cipher_list(ctx, o->ciphers) != 1)
        return bc_usage_error("--ciphers: no usable cipher in '%s'", o->ciphers);
    /* Go's (hey's) and Chrome's order: AES-128-GCM first. SHA-256 for the
     * transcript and key schedule also costs both sides less than SHA-384. */
    const char *suites = o->ciphersuites ? o->ciphersuites
                                         : "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                           "TLS_CHACHA20_POLY1305_SHA256";
    if (SSL_CTX_set_ciphersuites(ctx, suites) != 1)
        return bc_usage_error("--ciphersuites: bad list '%s'", suites);
    if (o->alpn != NULL) {
        unsigned char wire[256];
        int n = tg_bench_alpn_wire(o->alpn, wire, sizeof(wire));
        if (n < 0 || SSL_CTX_set_alpn_protos(ctx, wire, (unsigned)n) != 0)
            return bc_usage_error("--alpn: bad list '%s'", o->alpn);
    }
    if (o->insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_cert_verify_callback(ctx, bc_verify_none, NULL);
    } else {
        if (SSL_CTX_load_verify_locations(ctx, o->cacert, NULL) != 1)
            return bc_usage_error("--cacert: cannot load '%s'", o->cacert);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        int ok;
        if (o->sni != NULL)
            ok = X509_VERIFY_PARAM_set1_host(param, o->sni, 0);
        else if (o->target.host_is_ip)
            ok = X509_VERIFY_PARAM_set1_ip_asc(param, o->target.host);
        else
            ok = X509_VERIFY_PARAM_set1_host(param, o->target.host, 0);
        if (ok != 1)
            return bc_usage_error("cannot set the name to verify");
        SSL_CTX_set_cert_verify_callback(ctx, bc_verify_cached, b);
    }
    return 0;
}

static int bc_make_request(struct bench *b)
{
    const struct tg_bench_opts *o = b->o;
    struct tg_buf req = TG_BUF_INIT;
    tg_buf_printf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tlsgate-bench\r\n",
                  o->payload ? "POST" : "GET", o->target.path, o->target.authority);
    if (o->payload)
        tg_buf_printf(&req,
                      "Content-Type: application/octet-stream\r\nContent-Length: %" PRIu64 "\r\n",
                      o->payload);
    if (!o->keepalive)
        tg_buf_puts(&req, "Connection: close\r\n");
    tg_buf_puts(&req, "\r\n");
    size_t head = req.len;
    for (uint64_t i = 0; i < o->payload && !tg_buf_failed(&req); i += 4096) {
        static const char chunk[4096] = {0};
        size_t n = o->payload - i < sizeof(chunk) ? (size_t)(o->payload - i) : sizeof(chunk);
        tg_buf_append(&req, chunk, n);
    }
    if (tg_buf_failed(&req)) {
        tg_buf_free(&req);
        return TG_ENOMEM;
    }
    memset(req.data + head, 'x', req.len - head);
    b->req = req.data;
    b->reqlen = req.len;
    return TG_OK;
}

/* Room for the connections in the open-file limit. */
static int bc_raise_nofile(uint32_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return TG_OK;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)need + 32 ? TG_ELIMIT : TG_OK;
}

int tg_bench_run_load(const struct tg_bench_opts *o)
{
    /* libssl allocates and frees ~1,600 blocks per handshake, some of 16 KiB
     * and more; with glibc's default (dynamic) thresholds the heap top is
     * trimmed and regrown hundreds of times a second, each regrowth paying
     * page faults. This process is ours alone: keep the memory. */
    (void)mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);
    (void)mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
    struct bench *b = calloc(1, sizeof(*b));
    int status = 1;
    struct tg_buf out = TG_BUF_INIT;
    if (b == NULL) {
        fprintf(stderr, "tlsgate bench: out of memory\n");
        return 1;
    }
    b->o = o;
    if (bc_raise_nofile(o->connections) != TG_OK) {
        fprintf(stderr, "tlsgate bench: -c %u exceeds the open-file limit (ulimit -n)\n",
                o->connections);
        status = 2;
        goto out;
    }
    status = bc_make_ctx(b);
    if (status != 0)
        goto out;
    status = 1;
    b->loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
    b->nconns = o->connections;
    b->conns = calloc(b->nconns, sizeof(*b->conns));
    b->rbuf = malloc(TG_BENCH_RBUF_SIZE);
    b->obufs = malloc((size_t)b->nconns * TG_BENCH_OBUF_SIZE);
    b->biom = bc_bio_method();
    if (b->loop == NULL || b->conns == NULL || b->rbuf == NULL || b->obufs == NULL ||
        b->biom == NULL || bc_make_request(b) != TG_OK) {
        fprintf(stderr, "tlsgate bench: cannot set up (out of memory or no epoll)\n");
        goto out;
    }
    size_t cap = 1 << 16;
    if (o->num_calls > 0)
        cap = o->num_calls < (64u << 20) ? (size_t)o->num_calls : (64u << 20);
    else if (o->qps > 0 && o->duration_ns > 0)
        cap = (size_t)(o->qps * ((double)o->duration_ns / 1e9) * 1.05) + 1024;
    tg_bench_lat_init(&b->lat, cap);

    double per_slot_qps = o->qps / b->nconns;
    b->interval_ns = o->qps > 0 ? 1e9 / per_slot_qps : 0;
    for (uint32_t i = 0; i < b->nconns; i++) {
        struct bc_conn *c = &b->conns[i];
        c->b = b;
        c->fd = -1;
        c->state = BC_PARKED;
        c->obuf = b->obufs + (size_t)i * TG_BENCH_OBUF_SIZE;
        /* Stagger the slots so the paced starts are spread evenly. */
        c->pace_offset = (uint64_t)(b->interval_ns * i / b->nconns);
        ev_init(&c->io, bc_io_cb);
        c->io.data = c;
        ev_init(&c->timer, bc_timer_cb);
        c->timer.data = c;
    }
    b->active = b->nconns;
    ev_init(&b->progress, bc_progress_cb);
    b->progress.data = b;
    ev_init(&b->deadline, bc_deadline_cb);
    b->deadline.data = b;
    ev_signal_init(&b->sigint, bc_signal_cb, SIGINT);
    b->sigint.data = b;
    ev_signal_init(&b->sigterm, bc_signal_cb, SIGTERM);
    b->sigterm.data = b;
    ev_signal_start(b->loop, &b->sigint);
    ev_signal_start(b->loop, &b->sigterm);

    if (o->warmup > 0) {
        b->phase = PH_WARMUP;
        for (uint32_t i = 0; i < b->nconns && b->phase == PH_WARMUP; i++)
            bc_next(&b->conns[i]);
    } else {
        bc_begin_measure(b);
    }
    ev_run(b->loop, 0);

    b->res.lat_truncated = b->lat.truncated;
    tg_bench_lat_summarize(&b->lat, &b->res.lat);
    tg_bench_report_text(&out, o, &b->res);
    if (tg_buf_failed(&out)) {
        fprintf(stderr, "tlsgate bench: out of memory\n");
        goto out;
    }
    fwrite(out.data, 1, out.len, stdout);
    fflush(stdout);
    status = b->res.total_ok > 0 ? 0 : 1;
    if (status != 0)
        fprintf(stderr, "tlsgate bench: no call succeeded\n");
    if (o->json != NULL) {
        tg_buf_reset(&out);
        tg_bench_report_json(&out, o, &b->res);
        FILE *f = fopen(o->json, "w");
        if (f == NULL || tg_buf_failed(&out) || fwrite(out.data, 1, out.len, f) != out.len ||
            fclose(f) != 0) {
            fprintf(stderr, "tlsgate bench: cannot write --json %s: %s\n", o->json,
                    strerror(errno));
            status = 1;
        }
    }
out:
    tg_buf_free(&out);
    if (b->conns != NULL) {
        for (uint32_t i = 0; i < b->nconns; i++) {
            struct bc_conn *c = &b->conns[i];
            if (b->loop != NULL) {
                ev_io_stop(b->loop, &c->io);
                ev_timer_stop(b->loop, &c->timer);
            }
            if (c->fd >= 0)
                close(c->fd);
            SSL_free(c->ssl);
        }
        free(b->conns);
    }
    if (b->loop != NULL)
        ev_loop_destroy(b->loop);
    SSL_CTX_free(b->ctx);
    X509_free(b->verified_leaf);
    BIO_meth_free(b->biom);
    free(b->obufs);
    if (b->libctx != NULL)
        tg_bench_libctx_free(b->libctx);
    free(b->req);
    free(b->rbuf);
    tg_bench_lat_free(&b->lat);
    free(b);
    return status;
}
