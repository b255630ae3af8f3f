/*
 * tg_bench_conn: one connection slot of the load generator. A slot is a
 * small state machine (struct bc_conn and its states, tg_bench_client.h)
 * with one io watcher (bconn_io_cb) and one timer (bconn_timer_cb) that
 * serves as the per-call timeout, the pacing wait and the close-wait,
 * whichever applies to the state. Everything is non-blocking. Each call ends
 * exactly once in bc_call_end (the books), and the slot then goes on with
 * bc_next (the scheduler); a failed call always takes the reset path
 * (bconn_fail).
 *
 * Cheap on the hot path: an SSL object is reused with SSL_clear() and
 * SSL_set_session(NULL) (so a call never resumes) and keeps its BIO;
 * SSL_has_pending() instead of reading until EAGAIN (epoll is level
 * triggered, so a readable socket wakes us again anyway); the ClientHello is
 * written right after connect(): on loopback the TCP handshake has usually
 * completed by then, which saves a wake-up.
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
 * Threading: the loop's thread only.
 */
#include "bench/tg_bench_client.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/tg_time.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* How long a server may take to close after a "Connection: close" response
 * (--close=auto; --close=server waits TG_BENCH_CLOSE_WAIT_MAX_NS). */
#define TG_BENCH_CLOSE_WAIT_NS     (200ULL * TG_NS_PER_MS)
#define TG_BENCH_CLOSE_WAIT_MAX_NS (1000ULL * TG_NS_PER_MS)
/* --close=auto: this many expired waits without any server close -> client closes. */
#define TG_BENCH_AUTO_MISSES 8

static void bconn_handshake(struct bc_conn *c);
static void bconn_recv(struct bc_conn *c);
static void bconn_fail(struct bc_conn *c, enum tg_bench_errkind kind, const char *msg);

/* ------------------------------------------------------------------------- */
/* Small helpers                                                             */

void bconn_want(struct bc_conn *c, int events)
{
    if (ev_is_active(&c->io)) {
        if (c->io.fd == c->sb.fd && (c->io.events & (EV_READ | EV_WRITE)) == events)
            return;
        ev_io_stop(c->b->loop, &c->io);
    }
    ev_io_set(&c->io, c->sb.fd, events);
    ev_io_start(c->b->loop, &c->io);
}

void bconn_timer(struct bc_conn *c, uint64_t after_ns)
{
    ev_timer_stop(c->b->loop, &c->timer);
    ev_timer_set(&c->timer, (double)after_ns / 1e9, 0.0);
    ev_timer_start(c->b->loop, &c->timer);
}

/* Close the TCP connection. abortive: reset (no TIME_WAIT, no FIN). */
void bconn_close(struct bc_conn *c, bool abortive)
{
    if (c->sb.fd < 0)
        return;
    ev_io_stop(c->b->loop, &c->io);
    if (abortive) {
        struct linger lg = {1, 0};
        (void)setsockopt(c->sb.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(c->sb.fd);
    c->sb.fd = -1;
    c->tls_up = false;
    c->tcp_up = false;
    c->close_notify = false;
    c->sb.olen = 0;
}

/* Kind of error for a failed send/recv, from where the call stands. */
static enum tg_bench_errkind bconn_io_errkind(const struct bc_conn *c)
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

int bconn_flush(struct bc_conn *c)
{
    size_t sent = 0;
    int r = tg_sockbio_flush(&c->sb, &sent);
    if (sent > 0) {
        int saved = errno;
        bc_tcp_up(c); /* bytes went out: the TCP connection is established */
        errno = saved;
    }
    return r;
}

/* Send what libssl produced during this step, then wait for events. */
static void bconn_wait(struct bc_conn *c, int events)
{
    if (c->sb.olen > 0) {
        int r = bconn_flush(c);
        if (r < 0) {
            char msg[160];
            snprintf(msg, sizeof(msg), "%s %s: %s", c->tcp_up ? "send to" : "connect",
                     c->b->o->target.addr.text, strerror(errno));
            bconn_fail(c, bconn_io_errkind(c), msg);
            return;
        }
        if (r > 0) {
            bconn_want(c, EV_WRITE); /* bconn_io_cb sends the rest, then resumes */
            return;
        }
    }
    bconn_want(c, events);
}

/* The first OpenSSL error, or errno, as text. */
static void bconn_describe(char *buf, size_t len, SSL *ssl, int ssl_err, int saved_errno)
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
/* Failed calls                                                              */

/* A failed call: record it, reset the connection, go on. */
static void bconn_fail(struct bc_conn *c, enum tg_bench_errkind kind, const char *msg)
{
    bc_call_end(c, kind, msg);
    bconn_close(c, true);
    bc_next(c);
}

static void bconn_fail_ssl(struct bc_conn *c, enum tg_bench_errkind kind, int ssl_err,
                           int saved_errno)
{
    char msg[160] = "";
    if (c->b->res.first_error[kind][0] == '\0')
        bconn_describe(msg, sizeof(msg), c->ssl, ssl_err, saved_errno);
    ERR_clear_error();
    bconn_fail(c, kind, msg);
}

/* ------------------------------------------------------------------------- */
/* Connect and handshake                                                     */

static bool bconn_connect_errno(int e)
{
    return e == ECONNREFUSED || e == ENETUNREACH || e == EHOSTUNREACH || e == ETIMEDOUT ||
           e == EADDRNOTAVAIL || e == ECONNRESET || e == EPIPE;
}

/* A fresh SSL for the new connection: reuse the object when allowed. */
static int bconn_ssl_prepare(struct bc_conn *c)
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
        /* Our BIO works on c->sb, whatever connection the slot holds. */
        BIO *bio = tg_sockbio_new(&c->sb);
        if (bio != NULL)
            SSL_set_bio(c->ssl, bio, bio);
        if (bio == NULL || (sni != NULL && SSL_set_tlsext_host_name(c->ssl, sni) != 1)) {
            SSL_free(c->ssl);
            c->ssl = NULL;
            return TG_ECRYPTO;
        }
    }
    c->sb.readable = false;
    c->sb.eof = false;
    c->sb.olen = 0;
    SSL_set_connect_state(c->ssl);
    c->ssl_dirty = true;
    return TG_OK;
}

void bconn_connect(struct bc_conn *c)
{
    struct bench *b = c->b;
    const struct tg_bench_addr *a = &b->o->target.addr;
    char msg[160];
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(msg, sizeof(msg), "socket: %s", strerror(errno));
        bconn_fail(c, TG_BENCH_ERR_CONNECT, msg);
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
            bconn_fail(c, TG_BENCH_ERR_CONNECT, msg);
            return;
        }
    }
    int r = connect(fd, (const struct sockaddr *)&a->ss, a->len);
    if (r != 0 && errno != EINPROGRESS) {
        snprintf(msg, sizeof(msg), "connect %s: %s", a->text, strerror(errno));
        close(fd);
        bconn_fail(c, TG_BENCH_ERR_CONNECT, msg);
        return;
    }
    c->sb.fd = fd;
    c->tcp_up = false;
    c->tls_up = false;
    c->close_notify = false;
    if (r == 0)
        bc_tcp_up(c);
    if (bconn_ssl_prepare(c) != TG_OK) {
        bconn_fail(c, TG_BENCH_ERR_TLS_HANDSHAKE, "cannot create the SSL object");
        return;
    }
    c->state = BC_HANDSHAKE;
    bconn_handshake(c);
}

static void bconn_handshake(struct bc_conn *c)
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
        bconn_send(c);
        return;
    }
    int saved = errno;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        bconn_wait(c, EV_READ);
    } else if (e == SSL_ERROR_WANT_WRITE) {
        bconn_wait(c, EV_WRITE);
    } else if (!c->tcp_up && e == SSL_ERROR_SYSCALL && bconn_connect_errno(saved)) {
        char msg[160];
        snprintf(msg, sizeof(msg), "connect %s: %s", c->b->o->target.addr.text, strerror(saved));
        ERR_clear_error();
        bconn_fail(c, TG_BENCH_ERR_CONNECT, msg);
    } else {
        bconn_fail_ssl(c, TG_BENCH_ERR_TLS_HANDSHAKE, e, saved);
    }
}

/* ------------------------------------------------------------------------- */
/* Request and response                                                      */

void bconn_send(struct bc_conn *c)
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
            bconn_wait(c, EV_WRITE);
        } else if (e == SSL_ERROR_WANT_READ) {
            bconn_wait(c, EV_READ);
        } else {
            bconn_fail_ssl(c, TG_BENCH_ERR_WRITE, e, saved);
        }
        return;
    }
    c->state = BC_RECV;
    tg_http_init(&c->http, TG_HTTP_RESPONSE, 0);
    if (SSL_has_pending(c->ssl) && c->sb.olen == 0)
        bconn_recv(c);
    else
        bconn_wait(c, EV_READ); /* sends the request (with the Finished, if any) */
}

/* Close statistics cover the measured calls only, like every other count. */
static void bconn_count_close(const struct bc_conn *c, uint64_t *counter)
{
    if (!c->call_warmup)
        (*counter)++;
}

/* The response is complete. tcp_eof: the server's FIN is already here. */
static void bconn_response_done(struct bc_conn *c, bool tcp_eof)
{
    struct bench *b = c->b;
    uint16_t status = c->http.status;
    bool ok = status >= 200 && status <= 299;
    if (!ok) {
        char msg[64];
        snprintf(msg, sizeof(msg), "HTTP status %u", status);
        bconn_fail(c, TG_BENCH_ERR_HTTP_STATUS, msg); /* like every failed call: reset */
        return;
    }
    bc_call_end(c, TG_BENCH_OK, NULL);
    if (tcp_eof) {
        bconn_count_close(c, &b->res.close_server);
        b->auto_server_closes++;
        bconn_close(c, false); /* the server closed first: no TIME_WAIT here */
        bc_next(c);
    } else if (b->o->keepalive && !c->close_notify && tg_http_keep_alive(&c->http)) {
        bc_next(c); /* reuse the connection */
    } else if (b->o->close_mode == TG_BENCH_CLOSE_CLIENT || b->res.close_switched) {
        bconn_count_close(c, &b->res.close_client);
        bconn_close(c, false);
        bc_next(c);
    } else {
        /* Let the server close first (see the file comment). */
        c->state = BC_CLOSE_WAIT;
        bconn_timer(c, b->o->close_mode == TG_BENCH_CLOSE_SERVER ? TG_BENCH_CLOSE_WAIT_MAX_NS
                                                                 : TG_BENCH_CLOSE_WAIT_NS);
        bconn_want(c, EV_READ);
    }
}

static void bconn_recv(struct bc_conn *c)
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
                bconn_fail(c, TG_BENCH_ERR_BAD_RESPONSE, tg_http_strerror(c->http.error));
                return;
            }
            if (rc == TG_HTTP_DONE) {
                if (used < (size_t)n) {
                    bconn_fail(c, TG_BENCH_ERR_BAD_RESPONSE, "extra bytes after the response");
                    return;
                }
                /* The close_notify often arrives with the response: pick it
                 * up now if libssl already holds it (no system call). */
                if (SSL_has_pending(c->ssl)) {
                    ERR_clear_error();
                    char one;
                    int m = SSL_read(c->ssl, &one, 1);
                    if (m > 0) {
                        bconn_fail(c, TG_BENCH_ERR_BAD_RESPONSE, "extra bytes after the response");
                        return;
                    }
                    if (SSL_get_error(c->ssl, m) == SSL_ERROR_ZERO_RETURN)
                        c->close_notify = true;
                    ERR_clear_error();
                }
                bconn_response_done(c, false);
                return;
            }
            if (!SSL_has_pending(c->ssl)) {
                bconn_wait(c, EV_READ);
                return;
            }
            continue;
        }
        int saved = errno;
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ) {
            bconn_wait(c, EV_READ);
            return;
        }
        if (e == SSL_ERROR_WANT_WRITE) {
            bconn_wait(c, EV_WRITE);
            return;
        }
        /* close_notify, or a bare FIN (our BIO saw read() return 0; libssl
         * calls it "unexpected eof"): the end of a body delimited by the close. */
        bool eof = e == SSL_ERROR_ZERO_RETURN || c->sb.eof;
        if (!eof) {
            bconn_fail_ssl(c, TG_BENCH_ERR_READ, e, saved);
            return;
        }
        ERR_clear_error();
        if (tg_http_eof(&c->http) == TG_HTTP_DONE) {
            c->close_notify = e == SSL_ERROR_ZERO_RETURN;
            bconn_response_done(c, c->sb.eof); /* the FIN may follow the close_notify */
        } else {
            bconn_fail(c, TG_BENCH_ERR_READ,
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
static int bconn_read_closed(struct bc_conn *c)
{
    if (!c->close_notify && c->tls_up && !c->sb.eof) {
        ERR_clear_error();
        char one;
        int n = SSL_read(c->ssl, &one, 1);
        int e = n > 0 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, n);
        ERR_clear_error();
        if (e == SSL_ERROR_WANT_READ)
            return 0;
        if (e == SSL_ERROR_ZERO_RETURN) {
            c->close_notify = true;
        } else if (!c->sb.eof) {
            bconn_close(c, true); /* data nobody asked for, or an error */
            return -1;
        }
    }
    if (!c->sb.eof) {
        /* After close_notify only the FIN should follow: read it raw. */
        char tmp[64];
        ssize_t r = recv(c->sb.fd, tmp, sizeof(tmp), 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return 0;
        if (r != 0) {
            bconn_close(c, true);
            return -1;
        }
    }
    bconn_close(c, false); /* the server closed first: no TIME_WAIT here */
    return 1;
}

/* ------------------------------------------------------------------------- */
/* Events                                                                    */

void bconn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct bc_conn *c = w->data;
    if (revents & EV_READ)
        c->sb.readable = true;
    if (c->sb.olen > 0 && c->sb.fd >= 0) {
        int r = bconn_flush(c);
        if (r < 0 && c->state >= BC_HANDSHAKE && c->state <= BC_RECV) {
            char msg[160];
            snprintf(msg, sizeof(msg), "%s %s: %s", c->tcp_up ? "send to" : "connect",
                     c->b->o->target.addr.text, strerror(errno));
            bconn_fail(c, bconn_io_errkind(c), msg);
            return;
        }
        if (r > 0)
            return; /* still waiting for EV_WRITE */
    }
    switch (c->state) {
    case BC_HANDSHAKE:
        bconn_handshake(c);
        break;
    case BC_SEND:
        bconn_send(c);
        break;
    case BC_RECV:
        bconn_recv(c);
        break;
    case BC_CLOSE_WAIT: {
        int r = bconn_read_closed(c);
        if (r != 0) {
            if (r > 0) {
                bconn_count_close(c, &c->b->res.close_server);
                c->b->auto_server_closes++;
            }
            ev_timer_stop(c->b->loop, &c->timer);
            bc_next(c);
        }
        break;
    }
    case BC_PACING:
    case BC_PARKED:
        (void)bconn_read_closed(c); /* an idle keep-alive connection closed by the server */
        break;
    default:
        ev_io_stop(c->b->loop, &c->io);
        break;
    }
}

void bconn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
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
        bconn_count_close(c, &b->res.server_no_close);
        if (b->o->close_mode == TG_BENCH_CLOSE_AUTO && b->auto_server_closes == 0 &&
            ++b->auto_misses >= TG_BENCH_AUTO_MISSES)
            b->res.close_switched = true;
        /* auto: a plain close, as the client would do anyway; server: the
         * server was asked to close and did not, reset. */
        bconn_close(c, b->o->close_mode == TG_BENCH_CLOSE_SERVER);
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
        bconn_fail(c, TG_BENCH_ERR_TIMEOUT, msg);
        break;
    default:
        break;
    }
}
