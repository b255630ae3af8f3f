#include "proxy/tg_conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/tg_log.h"
#include "core/tg_time.h"
#include "proxy/tg_conn_alog.h"
#include "proxy/tg_ppio.h"
#include "proxy/tg_worker.h"
#include "tls/tg_tls.h"
#include "upstream/tg_cluster.h"

const char *tg_conn_state_name(enum tg_conn_state s)
{
    static const char *const names[] = {
#define TG_CONN_STATE_NAME(id, label) label,
        TG_CONN_STATES(TG_CONN_STATE_NAME)
#undef TG_CONN_STATE_NAME
    };
    return (unsigned)s < TG_ARRAY_LEN(names) ? names[s] : "?";
}

static void tg_conn_pump(struct tg_conn *c);
static void tg_conn_handshake(struct tg_conn *c);

static void tg_conn_set_state(struct tg_conn *c, enum tg_conn_state s)
{
    TG_DEBUG("conn %p: %s -> %s", (void *)c, tg_conn_state_name(c->state), tg_conn_state_name(s));
    c->state = s;
}

/* Every SSL_* call is bracketed: a clean error queue (so SSL_get_error sees
 * only this call's errors) and the connection's key context installed for
 * the bridge. */
static inline void tg_ssl_enter(struct tg_conn *c)
{
    ERR_clear_error();
    tg_keyctx_set_current(&c->keyctx);
}

static inline void tg_ssl_leave(void)
{
    tg_keyctx_set_current(NULL);
}

static void tg_io_want(struct ev_loop *loop, ev_io *io, int fd, int events)
{
    if (events == 0) {
        if (ev_is_active(io))
            ev_io_stop(loop, io);
        return;
    }
    if (ev_is_active(io) && (io->events & (EV_READ | EV_WRITE)) == events)
        return;
    if (ev_is_active(io))
        ev_io_stop(loop, io);
    ev_io_set(io, fd, events);
    ev_io_start(loop, io);
}

static void tg_conn_timer_after(struct tg_conn *c, double after)
{
    struct ev_loop *loop = c->w->loop;
    ev_timer_stop(loop, &c->timer);
    /* Timers count from the loop's cached time, taken when the iteration
     * began: after a long callback (a software key operation, or anything
     * under valgrind) that is stale and the timer would fire early. */
    ev_now_update(loop);
    ev_timer_set(&c->timer, after, 0.0);
    ev_timer_start(loop, &c->timer);
}

static double tg_ns_s(uint64_t ns)
{
    return (double)ns / 1e9;
}

/* The limits of the generation the connection was accepted under: a reload
 * changes those of new connections only. */
static inline const struct tg_conf_limits *tg_conn_limits(const struct tg_conn *c)
{
    return &c->l->wg->gen->cfg->limits;
}

/* ---- close path ---- */

static void tg_conn_handshake_over(struct tg_conn *c)
{
    tg_worker_hs_over(c->w, c);
}

/* A pipe's storage, from the worker's pool, for bytes about to arrive. */
static bool tg_pipe_take(struct tg_worker *w, struct tg_pipe *p)
{
    if (p->data == NULL)
        p->data = tg_worker_buf_get(w, p->cap);
    return p->data != NULL;
}

/* libssl's buffers back too (the read buffer is ~17 KiB): its
 * SSL_MODE_RELEASE_BUFFERS frees the read buffer after a read that returned
 * data, not after one that would block, so a connection that went quiet
 * would keep it. Nothing is freed while libssl holds bytes not yet read, or
 * not yet sent (SSL_free_buffers refuses then). */
static void tg_conn_ssl_quiet(struct tg_conn *c)
{
    if (!SSL_has_pending(c->ssl))
        (void)SSL_free_buffers(c->ssl);
}

/* Back to the pool once drained: an idle connection holds no buffer. */
static void tg_pipe_drop_if_empty(struct tg_worker *w, struct tg_pipe *p)
{
    if (p->data != NULL && p->len == 0) {
        tg_worker_buf_put(w, p->data, p->cap);
        p->data = NULL;
        p->off = 0;
    }
}

static void tg_conn_finalize(struct tg_conn *c, int stat)
{
    struct tg_worker *w = c->w;
    if (w->alog != NULL)
        tg_conn_alog_closed(c, stat);
    tg_conn_handshake_over(c);
    struct ev_loop *loop = w->loop;
    ev_io_stop(loop, &c->cio);
    ev_io_stop(loop, &c->uio);
    ev_timer_stop(loop, &c->timer);
    bool established = c->ssl != NULL && SSL_is_init_finished(c->ssl);
    bool abortive = stat == TG_STAT_CLOSE_CLIENT_ERROR || stat == TG_STAT_CLOSE_CLIENT_TRUNCATED;
    if (established && !c->client_shut && !abortive) {
        /* Best effort close_notify; the socket is non-blocking. */
        tg_ssl_enter(c);
        (void)SSL_shutdown(c->ssl);
        tg_ssl_leave();
        ERR_clear_error();
    }
    SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->ep != NULL) {
        tg_cluster_done(c->ep);
        c->ep = NULL;
    }
    if (c->ufd >= 0) {
        if (abortive) {
            /* The client vanished: reset the upstream rather than let it
             * believe the stream ended cleanly. */
            struct linger lg = {1, 0};
            (void)setsockopt(c->ufd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        close(c->ufd);
    }
    close(c->cfd);
    tg_ppio_rx_free(c->pp_rx);
    free(c->peer);
    c->c2u.len = c->u2c.len = 0; /* whatever was left is lost with the connection */
    tg_pipe_drop_if_empty(w, &c->c2u);
    tg_pipe_drop_if_empty(w, &c->u2c);
    if (c->on_ready)
        tg_worker_unready(w, c);
    tg_worker_conn_detach(w, c);
    tg_worker_source_release(w, &c->src);
    tg_stat_inc(&w->stats, (enum tg_core_stat)stat);
    tg_stat_inc(&w->stats, TG_STAT_CONN_CLOSED_ACTIVE);
    tg_worker_conn_release(w);
    char a[TG_PP_ADDR_TEXT];
    TG_DEBUG("conn %p: closed (%s, stat %d), client %s", (void *)c, tg_conn_state_name(c->state),
             stat, tg_pp_addr_text(&c->client_addr, a, sizeof(a)));
    c->state = TG_CONN_CLOSED;
    struct tg_wgen *wg = c->l->wg;
    free(c);
    /* Last: it may free the generation, and with it c's listener. */
    tg_worker_wgen_release(wg);
}

void tg_conn_close(struct tg_conn *c, int stat)
{
    if (c->state == TG_CONN_CLOSED)
        return;
    if (c->in_job) {
        /* A key operation holds libssl's job: let it finish (it fails fast
         * now that the context is cancelled), then free. */
        if (!c->closing) {
            c->closing = true;
            c->close_stat = stat;
            c->keyctx.cancelled = true;
            ev_io_stop(c->w->loop, &c->cio);
            ev_io_stop(c->w->loop, &c->uio);
            ev_timer_stop(c->w->loop, &c->timer);
        }
        return;
    }
    tg_conn_finalize(c, stat);
}

/* ---- upstream ---- */

static void tg_conn_upstream_cb(struct ev_loop *loop, ev_io *io, int revents);

/* upstream.proxy_protocol: the header goes first in the client -> upstream
 * buffer, so it leaves before any byte of the client's and the pump needs no
 * special case beyond not counting it as the client's. */
static int tg_conn_pp_prepend(struct tg_conn *c)
{
    if (c->dest_addr.ss_family == AF_UNSPEC) {
        socklen_t sl = sizeof(c->dest_addr);
        if (getsockname(c->cfd, (struct sockaddr *)&c->dest_addr, &sl) != 0 ||
            sl > sizeof(c->dest_addr))
            memset(&c->dest_addr, 0, sizeof(c->dest_addr)); /* v1 UNKNOWN, v2 UNSPEC */
    }
    size_t n = 0;
    if (!tg_pipe_take(c->w, &c->c2u))
        return TG_ENOMEM;
    /* The verified client certificate's CN, when there is one. */
    const char *cn = c->peer != NULL && c->peer->cn[0] != '\0' ? c->peer->cn : NULL;
    int rc = tg_ppio_build(c->l->conf->upstream.proxy_protocol, c->ssl, &c->client_addr,
                           &c->dest_addr, cn, c->c2u.data, c->c2u.cap, &n);
    if (rc != TG_OK) {
        TG_WARN("conn %p: cannot build the PROXY header for the upstream: %s", (void *)c,
                tg_strerror(rc));
        return rc;
    }
    c->c2u.len = n;
    c->pp_unsent = n;
    return TG_OK;
}

static void tg_conn_upstream_connected(struct tg_conn *c)
{
    struct tg_worker *w = c->w;
    c->alog.t_connected_ns = tg_now_ns();
    tg_stat_inc(&w->stats, TG_STAT_UPSTREAM_CONNECT_OK);
    tg_cluster_report(c->ep, TG_CONNECT_OK);
    /* The buffers themselves are taken when bytes come (tg_pipe_take). */
    size_t cap = tg_conn_limits(c)->buffer_size;
    c->c2u = (struct tg_pipe){NULL, cap, 0, 0};
    c->u2c = (struct tg_pipe){NULL, cap, 0, 0};
    if (c->l->conf->upstream.proxy_protocol != 0 && tg_conn_pp_prepend(c) != TG_OK) {
        tg_conn_close(c, TG_STAT_CLOSE_INTERNAL);
        return;
    }
    tg_conn_set_state(c, TG_CONN_PROXYING);
    /* The client may have sent its first bytes with its Finished message;
     * the upstream speaks when spoken to, or its socket will say so. */
    c->client_maybe_readable = true;
    c->upstream_maybe_readable = false;
    c->t_active_ns = tg_now_ns();
    tg_conn_timer_after(c, tg_ns_s(tg_conn_limits(c)->idle_timeout_ns));
    tg_conn_pump(c);
}

static void tg_conn_connect(struct tg_conn *c);

/* The outcome of the connect in progress on ufd: 0 connected, an errno
 * value when it failed, -1 while it is still in progress. */
static int tg_conn_connect_state(const struct tg_conn *c)
{
    struct pollfd p = {.fd = c->ufd, .events = POLLOUT};
    if (poll(&p, 1, 0) != 1)
        return -1;
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
        soerr = errno;
    return soerr;
}

/* An attempt failed: report it, and try another endpoint while attempts
 * are left. */
static void tg_conn_upstream_failed(struct tg_conn *c, int err)
{
    struct tg_worker *w = c->w;
    struct tg_cluster *cl = c->l->cluster;
    enum tg_connect_result r = err == ECONNREFUSED ? TG_CONNECT_REFUSED
                               : err == ETIMEDOUT  ? TG_CONNECT_TIMEOUT
                                                   : TG_CONNECT_ERROR;
    int stat = r == TG_CONNECT_REFUSED   ? TG_STAT_UPSTREAM_CONNECT_REFUSED
               : r == TG_CONNECT_TIMEOUT ? TG_STAT_UPSTREAM_CONNECT_TIMEOUT
                                         : TG_STAT_UPSTREAM_CONNECT_ERROR;
    tg_stat_inc(&w->stats, (enum tg_core_stat)stat);
    c->alog.t_connected_ns = tg_now_ns();
    c->alog.detail = stat;
    char a[TG_PP_ADDR_TEXT];
    TG_DEBUG("conn %p: upstream %s (attempt %u): %s (client %s)", (void *)c,
             c->ep != NULL ? c->ep->text : "?", (unsigned)c->n_tried, strerror(err),
             tg_pp_addr_text(&c->client_addr, a, sizeof(a)));
    ev_io_stop(w->loop, &c->uio);
    if (c->ufd >= 0) {
        close(c->ufd);
        c->ufd = -1;
    }
    if (c->ep != NULL) {
        tg_cluster_report(c->ep, r);
        tg_cluster_done(c->ep);
        c->ep = NULL;
    }
    if (c->n_tried < tg_cluster_max_attempts(cl) && c->n_tried < TG_CONN_MAX_ATTEMPTS) {
        tg_conn_connect(c);
        return;
    }
    tg_conn_close(c, TG_STAT_CLOSE_UPSTREAM_CONNECT);
}

static void tg_conn_connect(struct tg_conn *c)
{
    struct tg_worker *w = c->w;
    struct tg_cluster *cl = c->l->cluster;
    tg_conn_set_state(c, TG_CONN_UPSTREAM_CONNECTING);
    struct tg_endpoint *ep = tg_cluster_pick(cl, w->id, c->tried, c->n_tried, NULL);
    if (ep == NULL) {
        /* Nothing resolved (or left): fail fast instead of waiting. */
        TG_DEBUG("conn %p: no upstream endpoint left after %u attempt(s)", (void *)c,
                 (unsigned)c->n_tried);
        tg_conn_close(c,
                      c->n_tried == 0 ? TG_STAT_CLOSE_NO_HEALTHY : TG_STAT_CLOSE_UPSTREAM_CONNECT);
        return;
    }
    if (c->n_tried > 0)
        tg_stat_inc(&w->stats, TG_STAT_UPSTREAM_RETRY);
    c->ep = ep;
    c->tried[c->n_tried++] = ep;
    if (c->alog.t_connect_ns == 0)
        c->alog.t_connect_ns = tg_now_ns();
    tg_alog_addr_set(&c->alog.upstream, &ep->addr.sa, ep->addrlen);
    c->alog.upstream_host = ep->host;
    int fd = socket(ep->addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        tg_conn_upstream_failed(c, errno);
        return;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->ufd = fd;
    ev_io_set(&c->uio, fd, EV_WRITE);
    if (connect(fd, &ep->addr.sa, ep->addrlen) == 0) {
        tg_conn_upstream_connected(c);
        return;
    }
    if (errno != EINPROGRESS) {
        tg_conn_upstream_failed(c, errno);
        return;
    }
    ev_io_start(w->loop, &c->uio);
    tg_conn_timer_after(c, tg_ns_s(tg_cluster_connect_timeout_ns(cl)));
}

/* ---- the first byte of the ClientHello ---- */

/* How long a connection may stay silent: first_byte_timeout from accept (or
 * the PROXY header's end), never longer than handshake_timeout. */
static uint64_t tg_conn_hello_wait_ns(const struct tg_conn *c)
{
    const struct tg_conf_limits *lim = tg_conn_limits(c);
    return lim->first_byte_timeout_ns < lim->handshake_timeout_ns ? lim->first_byte_timeout_ns
                                                                  : lim->handshake_timeout_ns;
}

/* The connection's SSL, made when its ClientHello starts: a connection that
 * never sends anything costs no SSL object and none of libssl's buffers.
 * (One place that makes it, so that a pool of SSL objects could be drawn
 * from here.) */
static int tg_conn_tls_start(struct tg_conn *c)
{
    SSL *ssl = SSL_new(tg_tls_listener_ctx(c->l->tls));
    if (ssl == NULL || !SSL_set_fd(ssl, c->cfd)) {
        tg_log_openssl_errors(TG_LOG_ERROR, "new connection");
        SSL_free(ssl);
        return TG_ENOMEM;
    }
    SSL_set_accept_state(ssl);
    SSL_set_async_callback_arg(ssl, c);
    c->ssl = ssl;
    return TG_OK;
}

/* HELLO_WAIT: has the ClientHello started? A peek, so that libssl reads it
 * whole from the socket. */
static void tg_conn_hello_wait(struct tg_conn *c)
{
    struct tg_worker *w = c->w;
    char b;
    ssize_t n = recv(c->cfd, &b, 1, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        tg_io_want(w->loop, &c->cio, c->cfd, EV_READ);
        return;
    }
    if (n <= 0) {
        /* Gone before the first byte (a TCP health check, a scan): a
         * client that left before its ClientHello. */
        tg_stat_inc(&w->stats, TG_STAT_HS_FAIL_CLOSED);
        tg_conn_close(c, TG_STAT_CLOSE_HANDSHAKE_FAILED);
        return;
    }
    if (tg_conn_tls_start(c) != TG_OK) {
        tg_conn_close(c, TG_STAT_CLOSE_INTERNAL);
        return;
    }
    /* From now on handshake_timeout, counted from where it started. */
    uint64_t hs = tg_conn_limits(c)->handshake_timeout_ns;
    if (tg_conn_hello_wait_ns(c) < hs) {
        uint64_t spent = tg_now_ns() - c->t_hs_start_ns;
        tg_conn_timer_after(c, tg_ns_s(spent < hs ? hs - spent : 0));
    }
    /* Set here: the handshake may pause at once, or wait for a job, before
     * it sets a state itself. */
    tg_conn_set_state(c, TG_CONN_HANDSHAKING);
    tg_conn_handshake(c);
}

/* ---- PROXY header from a load balancer ---- */

static void tg_conn_proxy_header(struct tg_conn *c)
{
    struct tg_worker *w = c->w;
    struct tg_pp_hdr h;
    const char *why = NULL;
    char a[TG_PP_ADDR_TEXT], b[TG_PP_ADDR_TEXT];
    int stat;
    int rc = tg_ppio_recv(c->cfd, &c->pp_rx, &h, &why);
    switch (rc) {
    case TG_OK:
        break;
    case TG_EAGAIN:
        tg_io_want(w->loop, &c->cio, c->cfd, EV_READ);
        return;
    case TG_ECLOSED:
        if (why == NULL) {
            /* Gone before the first byte (a load balancer's TCP health
             * check): counted as a client that leaves before its
             * ClientHello is, not as a protocol error. */
            tg_stat_inc(&w->stats, TG_STAT_HS_FAIL_CLOSED);
            c->alog.detail = TG_STAT_HS_FAIL_CLOSED;
            tg_conn_close(c, TG_STAT_CLOSE_HANDSHAKE_FAILED);
            return;
        }
        stat = TG_STAT_PP_ERR_TRUNCATED;
        goto refused;
    case TG_EPROTO:
        stat = h.version == 0 ? TG_STAT_PP_ERR_NOT_PROXY : TG_STAT_PP_ERR_MALFORMED;
        goto refused;
    default:
        TG_WARN("conn %p: reading the PROXY header: %s", (void *)c, why ? why : tg_strerror(rc));
        tg_conn_close(c, TG_STAT_CLOSE_INTERNAL);
        return;
    }
    tg_stat_inc(&w->stats, h.version == 1 ? TG_STAT_PP_HEADER_V1 : TG_STAT_PP_HEADER_V2);
    if (h.src.ss_family != AF_UNSPEC) {
        c->client_addr = h.src;
        c->dest_addr = h.dst;
    }
    TG_DEBUG("conn %p: PROXY v%d header%s: client %s, to %s", (void *)c, h.version,
             h.src.ss_family == AF_UNSPEC ? " without addresses" : "",
             tg_pp_addr_text(&c->client_addr, a, sizeof(a)), tg_pp_addr_text(&h.dst, b, sizeof(b)));
    /* The load balancer's clients are counted per source from here, under
     * the address the header gives (a header without one: not counted). */
    if (h.src.ss_family != AF_UNSPEC && !tg_worker_source_acquire(w, &c->client_addr, &c->src)) {
        tg_conn_close(c, TG_STAT_CLOSE_PER_SOURCE);
        return;
    }
    c->t_hs_start_ns = tg_now_ns();
    tg_conn_set_state(c, TG_CONN_HELLO_WAIT);
    tg_conn_timer_after(c, tg_ns_s(tg_conn_hello_wait_ns(c)));
    tg_conn_hello_wait(c);
    return;
refused:
    TG_DEBUG("conn %p: PROXY header refused from %s: %s", (void *)c,
             tg_pp_addr_text(&c->client_addr, a, sizeof(a)), why);
    tg_stat_inc(&w->stats, (enum tg_core_stat)stat);
    c->alog.detail = stat;
    tg_conn_close(c, TG_STAT_CLOSE_PROXY_PROTOCOL);
}

/* ---- handshake ---- */

/* A finished handshake on a listener with client certificates: counted,
 * described (c->peer). false when the connection must not go on. */
static bool tg_conn_client_cert(struct tg_conn *c)
{
    int count = -1;
    int rc = tg_mtls_handshake_done(c->ssl, tg_tls_listener_ctx(c->l->tls), time(NULL), &c->peer,
                                    &count);
    if (count >= 0)
        tg_stat_inc(&c->w->stats, (enum tg_core_stat)count);
    if (rc == TG_OK && c->peer != NULL)
        TG_DEBUG("conn %p: client certificate%s: subject %s, sha256 %s", (void *)c,
                 c->peer->resumed ? " (resumed session)" : "", c->peer->subject, c->peer->sha256);
    if (rc == TG_EPROTO) {
        tg_stat_inc(&c->w->stats, TG_STAT_HS_FAIL_CCERT);
        TG_DEBUG("conn %p: resumed session's client certificate is no longer valid", (void *)c);
    }
    if (rc != TG_OK)
        tg_conn_close(c, rc == TG_EPROTO ? TG_STAT_CLOSE_HANDSHAKE_FAILED : TG_STAT_CLOSE_INTERNAL);
    return rc == TG_OK;
}

static void tg_conn_handshake_done(struct tg_conn *c)
{
    struct tg_worker *w = c->w;
    tg_conn_handshake_over(c);
    if (tg_tls_listener_mtls(c->l->tls) != NULL && !tg_conn_client_cert(c))
        return;
    /* No private-key operation happens after the handshake: stop paying
     * for an ASYNC job on every read and write. */
    SSL_clear_mode(c->ssl, SSL_MODE_ASYNC);
    /* tls.require_close_notify: from now on a TCP FIN without close_notify
     * is an error (SSL_R_UNEXPECTED_EOF_WHILE_READING), not an EOF; during
     * the handshake it still counts as the client closing. */
    if (c->l->conf->tls.require_close_notify)
        SSL_clear_options(c->ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
    tg_stat_inc(&w->stats, TG_STAT_HS_OK);
    tg_stat_inc(&w->stats,
                SSL_version(c->ssl) == TLS1_3_VERSION ? TG_STAT_HS_TLS13 : TG_STAT_HS_TLS12);
    if (SSL_session_reused(c->ssl))
        tg_stat_inc(&w->stats, TG_STAT_HS_RESUMED);
    if (c->keyctx.waits > 0)
        tg_stat_add(&w->stats, TG_STAT_KEYOP_WAITS, c->keyctx.waits);
    c->alog.t_handshake_ns = tg_now_ns();
    tg_hist_record(&w->stats.handshake_us, &tg_hist_latency_us,
                   (c->alog.t_handshake_ns - c->t_accept_ns) / 1000);
    ev_io_stop(w->loop, &c->cio);
    tg_conn_ssl_quiet(c); /* until the upstream is connected */
    tg_conn_connect(c);
}

static void tg_conn_handshake_failed(struct tg_conn *c, int err)
{
    struct tg_worker *w = c->w;
    int stat, ccert = -1;
    if (tg_tls_listener_mtls(c->l->tls) != NULL)
        ccert = tg_mtls_failure(c->ssl);
    if (ccert >= 0)
        stat = TG_STAT_HS_FAIL_CCERT;
    else if (c->keyctx.failures > 0 && !c->keyctx.cancelled)
        stat = TG_STAT_HS_FAIL_KEYOP;
    else if (err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN)
        stat = TG_STAT_HS_FAIL_CLOSED;
    else
        stat = TG_STAT_HS_FAIL_PROTOCOL;
    c->alog.detail = stat;
    if (!c->closing) {
        tg_stat_inc(&w->stats, (enum tg_core_stat)stat);
        if (ccert >= 0) {
            tg_stat_inc(&w->stats, (enum tg_core_stat)ccert);
            TG_DEBUG("conn %p: client certificate refused: %s", (void *)c, tg_mtls_why(c->ssl));
        }
        if (tg_log_enabled(TG_LOG_DEBUG))
            tg_log_openssl_errors(TG_LOG_DEBUG, "handshake failed");
    }
    ERR_clear_error();
    tg_conn_close(c, TG_STAT_CLOSE_HANDSHAKE_FAILED);
}

static void tg_conn_handshake(struct tg_conn *c)
{
    tg_ssl_enter(c);
    int r = SSL_do_handshake(c->ssl);
    int err = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
    tg_ssl_leave();
    c->in_job = err == SSL_ERROR_WANT_ASYNC;
    if (c->closing && !c->in_job) {
        /* The job the close waited for has ended. */
        ERR_clear_error();
        tg_conn_finalize(c, c->close_stat);
        return;
    }
    switch (err) {
    case SSL_ERROR_NONE:
        tg_conn_handshake_done(c);
        return;
    case SSL_ERROR_WANT_READ:
        tg_conn_set_state(c, TG_CONN_HANDSHAKING);
        tg_conn_ssl_quiet(c); /* waiting for the client, maybe long */
        tg_io_want(c->w->loop, &c->cio, c->cfd, EV_READ);
        return;
    case SSL_ERROR_WANT_WRITE:
        tg_conn_set_state(c, TG_CONN_HANDSHAKING);
        tg_io_want(c->w->loop, &c->cio, c->cfd, EV_WRITE);
        return;
    case SSL_ERROR_WANT_ASYNC:
        /* Paused on a key operation: no SSL call until the async callback. */
        tg_conn_set_state(c, TG_CONN_KEYOP_WAIT);
        tg_io_want(c->w->loop, &c->cio, c->cfd, 0);
        return;
    case SSL_ERROR_WANT_ASYNC_JOB:
        /* No free ASYNC job: try again when the loop is about to block. */
        tg_worker_make_ready(c->w, c);
        return;
    default:
        tg_conn_handshake_failed(c, err);
        return;
    }
}

void tg_conn_resume(struct tg_conn *c)
{
    if (c->state == TG_CONN_KEYOP_WAIT || c->state == TG_CONN_HANDSHAKING)
        tg_conn_handshake(c);
    else if (c->state == TG_CONN_HELLO_WAIT)
        tg_conn_hello_wait(c);
    else if (c->state == TG_CONN_PROXYING)
        tg_conn_pump(c);
}

/* ---- proxying ---- */

static void tg_conn_client_error(struct tg_conn *c)
{
    ERR_clear_error();
    tg_conn_close(c, TG_STAT_CLOSE_CLIENT_ERROR);
}

/* SSL_read failed because the client's TCP stream ended without close_notify
 * (only seen with tls.require_close_notify). */
static bool tg_conn_truncated(int err)
{
    unsigned long e = ERR_peek_error();
    return err == SSL_ERROR_SSL && ERR_GET_LIB(e) == ERR_LIB_SSL &&
           ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
}

/* Send close_notify. False while it waits in libssl for room in the
 * client's socket (SSL_shutdown: WANT_WRITE): the pump calls again when the
 * socket is writable, and only then may the TCP write side be shut (a
 * shutdown(SHUT_WR) now would lose the alert). Bounded like any stalled
 * write: by idle_timeout, or the drain at exit. True once it left, or when
 * it never can (the client is gone). */
static bool tg_conn_close_notify(struct tg_conn *c)
{
    tg_ssl_enter(c);
    int r = SSL_shutdown(c->ssl); /* first call queues the alert, a later one resends it */
    int err = r >= 0 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
    tg_ssl_leave();
    ERR_clear_error();
    return err != SSL_ERROR_WANT_WRITE;
}

static void tg_conn_upstream_error(struct tg_conn *c)
{
    tg_stat_inc(&c->w->stats, TG_STAT_UPSTREAM_RESET);
    tg_conn_close(c, TG_STAT_CLOSE_UPSTREAM_ERROR);
}

/* Move bytes both ways until nothing more can move now. Returns false if the
 * connection was closed. */
static bool tg_conn_pump_once(struct tg_conn *c, bool *progress)
{
    struct tg_worker *w = c->w;
    struct tg_pipe *cu = &c->c2u, *uc = &c->u2c;

    /* client -> buffer: only when the socket said it had something, or
     * OpenSSL holds bytes it read ahead; a read that would block is a wasted
     * system call. */
    if (!c->client_eof && cu->len < cu->cap &&
        (c->client_maybe_readable || SSL_has_pending(c->ssl))) {
        if (!tg_pipe_take(w, cu)) {
            tg_conn_close(c, TG_STAT_CLOSE_INTERNAL);
            return false;
        }
        tg_ssl_enter(c);
        int n = SSL_read(c->ssl, cu->data + cu->len, (int)(cu->cap - cu->len));
        int err = n > 0 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, n);
        tg_ssl_leave();
        c->ssl_read_wants = 0;
        if (n > 0) {
            cu->len += (size_t)n;
            *progress = true;
        } else if (err == SSL_ERROR_WANT_READ) {
            c->ssl_read_wants = EV_READ;
            c->client_maybe_readable = false;
        } else if (err == SSL_ERROR_WANT_WRITE) {
            c->ssl_read_wants = EV_WRITE;
        } else if (err == SSL_ERROR_ZERO_RETURN) {
            c->client_eof = true; /* close_notify or EOF: half-close */
            *progress = true;
        } else if (tg_conn_truncated(err)) {
            ERR_clear_error();
            tg_conn_close(c, TG_STAT_CLOSE_CLIENT_TRUNCATED);
            return false;
        } else {
            tg_conn_client_error(c);
            return false;
        }
    }
    /* buffer -> upstream */
    if (cu->off < cu->len) {
        ssize_t n = send(c->ufd, cu->data + cu->off, cu->len - cu->off, MSG_NOSIGNAL);
        if (n > 0) {
            cu->off += (size_t)n;
            size_t from_client = (size_t)n;
            if (c->pp_unsent > 0) { /* our PROXY header is not the client's */
                size_t h = c->pp_unsent < from_client ? c->pp_unsent : from_client;
                c->pp_unsent -= h;
                from_client -= h;
            }
            tg_stat_add(&w->stats, TG_STAT_BYTES_FROM_CLIENT, (uint64_t)from_client);
            c->alog.bytes_in += (uint64_t)from_client;
            /* A nearby upstream often answers before the loop comes back:
             * look once, it can save a poll round trip. */
            c->upstream_maybe_readable = true;
            if (cu->off == cu->len)
                cu->off = cu->len = 0;
            *progress = true;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            /* the upstream's window is full: its EV_WRITE brings us back */
        } else {
            tg_conn_upstream_error(c);
            return false;
        }
    }
    if (c->client_eof && cu->len == 0 && !c->upstream_shut) {
        /* When the upstream has finished too, close() follows at once and
         * says the same thing: skip the system call. */
        if (!c->upstream_eof)
            (void)shutdown(c->ufd, SHUT_WR);
        c->upstream_shut = true;
        *progress = true;
    }
    /* upstream -> buffer */
    if (!c->upstream_eof && uc->len < uc->cap && c->upstream_maybe_readable) {
        if (!tg_pipe_take(w, uc)) {
            tg_conn_close(c, TG_STAT_CLOSE_INTERNAL);
            return false;
        }
        ssize_t n = recv(c->ufd, uc->data + uc->len, uc->cap - uc->len, 0);
        if (n > 0) {
            uc->len += (size_t)n;
            *progress = true;
        } else if (n == 0) {
            c->upstream_eof = true;
            *progress = true;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->upstream_maybe_readable = false;
        } else if (errno != EINTR) {
            tg_conn_upstream_error(c);
            return false;
        }
    }
    /* buffer -> client */
    if (uc->off < uc->len) {
        tg_ssl_enter(c);
        int n = SSL_write(c->ssl, uc->data + uc->off, (int)(uc->len - uc->off));
        int err = n > 0 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, n);
        tg_ssl_leave();
        c->ssl_write_wants = 0;
        if (n > 0) {
            uc->off += (size_t)n;
            tg_stat_add(&w->stats, TG_STAT_BYTES_TO_CLIENT, (uint64_t)n);
            c->alog.bytes_out += (uint64_t)n;
            if (uc->off == uc->len)
                uc->off = uc->len = 0;
            *progress = true;
        } else if (err == SSL_ERROR_WANT_WRITE) {
            c->ssl_write_wants = EV_WRITE;
        } else if (err == SSL_ERROR_WANT_READ) {
            c->ssl_write_wants = EV_READ;
        } else {
            tg_conn_client_error(c);
            return false;
        }
    }
    if (c->upstream_eof && uc->len == 0 && !c->client_shut && tg_conn_close_notify(c)) {
        if (!c->upstream_shut) /* else close() follows at once */
            (void)shutdown(c->cfd, SHUT_WR);
        c->client_shut = true;
        *progress = true;
    }
    if (c->client_shut && c->upstream_shut) {
        tg_conn_close(c, TG_STAT_CLOSE_NORMAL);
        return false;
    }
    return true;
}

static void tg_conn_pump(struct tg_conn *c)
{
    bool any = false, progress = false;
    /* Bounded so that one busy connection cannot starve the others. */
    for (int round = 0; round < 8; round++) {
        progress = false;
        if (!tg_conn_pump_once(c, &progress))
            return;
        if (!progress)
            break;
        any = true;
    }
    if (any)
        c->t_active_ns = tg_now_ns();
    tg_pipe_drop_if_empty(c->w, &c->c2u);
    tg_pipe_drop_if_empty(c->w, &c->u2c);
    if (c->ssl_read_wants == EV_READ || c->client_eof)
        tg_conn_ssl_quiet(c);
    /* Bytes OpenSSL already holds raise no socket event: if the round limit
     * stopped us, or whole records wait in OpenSSL while the buffer has room
     * (not a partial one: the last read would have asked for more), come
     * back when the loop is about to block instead of waiting for a socket
     * event that may never come. */
    if (progress || (!c->client_eof && c->c2u.len < c->c2u.cap && c->ssl_read_wants != EV_READ &&
                     SSL_has_pending(c->ssl)))
        tg_worker_make_ready(c->w, c);
    struct tg_pipe *cu = &c->c2u, *uc = &c->u2c;
    int cev = 0, uev = 0;
    if (!c->client_eof && cu->len < cu->cap)
        cev |= c->ssl_read_wants ? c->ssl_read_wants : EV_READ;
    if (uc->off < uc->len)
        cev |= c->ssl_write_wants ? c->ssl_write_wants : EV_WRITE;
    else if (c->upstream_eof && !c->client_shut)
        cev |= EV_WRITE; /* close_notify waits for room (tg_conn_close_notify) */
    if (!c->upstream_eof && uc->len < uc->cap)
        uev |= EV_READ;
    if (cu->off < cu->len)
        uev |= EV_WRITE;
    tg_io_want(c->w->loop, &c->cio, c->cfd, cev);
    tg_io_want(c->w->loop, &c->uio, c->ufd, uev);
    if (cev == 0 && uev == 0) {
        /* Should not happen: nothing to wait for means nothing will ever
         * finish this connection. */
        TG_DEBUG("conn %p: no events left, closing", (void *)c);
        tg_conn_close(c, TG_STAT_CLOSE_NORMAL);
    }
}

/* ---- watchers ---- */

static void tg_conn_client_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_conn *c = io->data;
    switch (c->state) {
    case TG_CONN_PROXY_HEADER:
        tg_worker_hs_touch(c->w, c); /* heard from: evicted last */
        tg_conn_proxy_header(c);
        break;
    case TG_CONN_HELLO_WAIT:
        tg_worker_hs_touch(c->w, c);
        tg_conn_hello_wait(c);
        break;
    case TG_CONN_HANDSHAKING:
        tg_worker_hs_touch(c->w, c);
        tg_conn_handshake(c);
        break;
    case TG_CONN_PROXYING:
        c->client_maybe_readable = true;
        tg_conn_pump(c);
        break;
    default:
        /* Not waiting for the client now. */
        ev_io_stop(loop, io);
        break;
    }
}

static void tg_conn_upstream_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    struct tg_conn *c = io->data;
    if (c->state == TG_CONN_UPSTREAM_CONNECTING) {
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
            soerr = errno;
        ev_io_stop(loop, io);
        if (soerr != 0)
            tg_conn_upstream_failed(c, soerr);
        else
            tg_conn_upstream_connected(c);
        return;
    }
    if (c->state == TG_CONN_PROXYING) {
        if (revents & EV_READ)
            c->upstream_maybe_readable = true;
        tg_conn_pump(c);
    } else {
        ev_io_stop(loop, io);
    }
}

static void tg_conn_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_conn *c = t->data;
    struct tg_worker *w = c->w;
    switch (c->state) {
    case TG_CONN_PROXY_HEADER:
        TG_DEBUG("conn %p: no complete PROXY header within proxy_protocol_timeout", (void *)c);
        tg_stat_inc(&w->stats, TG_STAT_PP_ERR_TIMEOUT);
        c->alog.detail = TG_STAT_PP_ERR_TIMEOUT;
        tg_conn_close(c, TG_STAT_CLOSE_PROXY_PROTOCOL);
        break;
    case TG_CONN_HELLO_WAIT: {
        /* Silent: closed at first_byte_timeout, or at handshake_timeout
         * when that is not later. */
        bool first = tg_conn_hello_wait_ns(c) < tg_conn_limits(c)->handshake_timeout_ns;
        TG_DEBUG("conn %p: no byte of a ClientHello within %s", (void *)c,
                 first ? "first_byte_timeout" : "handshake_timeout");
        tg_stat_inc(&w->stats, TG_STAT_HS_FAIL_TIMEOUT);
        tg_conn_close(c,
                      first ? TG_STAT_CLOSE_FIRST_BYTE_TIMEOUT : TG_STAT_CLOSE_HANDSHAKE_TIMEOUT);
        break;
    }
    case TG_CONN_HANDSHAKING:
    case TG_CONN_KEYOP_WAIT:
        tg_stat_inc(&w->stats, TG_STAT_HS_FAIL_TIMEOUT);
        tg_conn_close(c, TG_STAT_CLOSE_HANDSHAKE_TIMEOUT);
        break;
    case TG_CONN_UPSTREAM_CONNECTING: {
        /* A slow loop turn can bring the timer together with the socket
         * event it was waiting for: look before calling it a timeout. */
        int st = tg_conn_connect_state(c);
        ev_io_stop(loop, &c->uio);
        if (st == 0)
            tg_conn_upstream_connected(c);
        else
            tg_conn_upstream_failed(c, st > 0 ? st : ETIMEDOUT);
        break;
    }
    case TG_CONN_PROXYING: {
        uint64_t idle = tg_conn_limits(c)->idle_timeout_ns, now = tg_now_ns();
        if (now - c->t_active_ns >= idle)
            tg_conn_close(c, TG_STAT_CLOSE_IDLE_TIMEOUT);
        else
            tg_conn_timer_after(c, tg_ns_s(c->t_active_ns + idle - now));
        break;
    }
    default:
        break;
    }
}

void tg_conn_accept(struct tg_wlistener *l, int fd, const struct sockaddr_storage *peer)
{
    struct tg_worker *w = l->w;
    bool pp = l->conf->proxy_protocol;
    /* On a proxy_protocol listener the TCP peer is the load balancer: its
     * clients are counted per source once the header names them. */
    struct tg_srclimit_hold src = {0};
    if (!pp && !tg_worker_source_acquire(w, peer, &src)) {
        if (w->alog != NULL)
            tg_conn_alog_rejected(l, peer, TG_STAT_CONN_REJECTED_PER_SOURCE);
        close(fd);
        return;
    }
    if (!tg_worker_conn_acquire(w)) {
        tg_stat_inc(&w->stats, TG_STAT_CONN_REJECTED_LIMIT);
        tg_worker_source_release(w, &src);
        if (w->alog != NULL)
            tg_conn_alog_rejected(l, peer, TG_STAT_CONN_REJECTED_LIMIT);
        close(fd);
        return;
    }
    /* Nothing else yet: the SSL object comes with the ClientHello's first
     * byte, the buffers with the bytes to forward. */
    struct tg_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        TG_ERROR("new connection: out of memory");
        close(fd);
        tg_worker_source_release(w, &src);
        tg_worker_conn_release(w);
        return;
    }
    /* TCP_NODELAY comes from the listening socket. */
    c->w = w;
    c->l = l;
    c->cfd = fd;
    c->ufd = -1;
    c->state = TG_CONN_ACCEPTED;
    c->keyctx.kx = tg_tls_listener_kx(l->tls);
    c->client_addr = *peer;
    c->src = src;
    c->t_accept_ns = c->t_hs_start_ns = tg_now_ns();
    if (w->alog != NULL)
        tg_alog_addr_set(&c->alog.peer, (const struct sockaddr *)peer, sizeof(*peer));
    ev_io_init(&c->cio, tg_conn_client_cb, fd, EV_READ);
    c->cio.data = c;
    ev_init(&c->uio, tg_conn_upstream_cb);
    c->uio.data = c;
    uint64_t first_wait = pp ? l->conf->proxy_protocol_timeout_ns : tg_conn_hello_wait_ns(c);
    ev_timer_init(&c->timer, tg_conn_timer_cb, tg_ns_s(first_wait), 0.0);
    c->timer.data = c;
    ev_timer_start(w->loop, &c->timer);
    tg_worker_conn_attach(w, c);
    tg_worker_wgen_hold(l->wg); /* c keeps its generation until it is freed */
    tg_stat_inc(&w->stats, TG_STAT_CONN_ACCEPTED);
    tg_stat_inc(&w->stats, TG_STAT_CONN_OPENED);
    char a[TG_PP_ADDR_TEXT];
    TG_DEBUG("conn %p: accepted from %s on listener %s", (void *)c,
             tg_pp_addr_text(&c->client_addr, a, sizeof(a)), l->conf->name);
    /* The PROXY header or the ClientHello usually follows the connect
     * closely: look at once instead of paying a poll round trip. */
    if (pp) {
        tg_conn_set_state(c, TG_CONN_PROXY_HEADER);
        tg_conn_proxy_header(c);
    } else {
        tg_conn_set_state(c, TG_CONN_HELLO_WAIT);
        tg_conn_hello_wait(c);
    }
}
