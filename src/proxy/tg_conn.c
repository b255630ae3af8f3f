#include "proxy/tg_conn.h"

#include <errno.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/tg_log.h"
#include "core/tg_time.h"
#include "proxy/tg_conn_alog.h"
#include "proxy/tg_conn_internal.h"
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

static void tg_conn_handshake(struct tg_conn *c);

/* ---- close path ---- */

static void tg_conn_handshake_over(struct tg_conn *c)
{
    tg_worker_hs_over(c->w, c);
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
    tg_worker_ssl_put(w, c->l, c->ssl);
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
 * (One place that makes it, from the worker's pool of SSL objects.) libssl
 * reads and writes the socket through c->sb; the ClientHello has started,
 * so the first read is worth its system call. */
static int tg_conn_tls_start(struct tg_conn *c)
{
    SSL *ssl = tg_worker_ssl_get(c->w, c->l);
    c->sb = (struct tg_sockbio){.fd = c->cfd, .readable = true};
    BIO *bio = ssl != NULL ? tg_sockbio_new(&c->sb) : NULL;
    if (bio == NULL) {
        tg_log_openssl_errors(TG_LOG_ERROR, "new connection");
        SSL_free(ssl);
        return TG_ENOMEM;
    }
    SSL_set_bio(ssl, bio, bio);
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
        c->alog.detail = TG_STAT_HS_FAIL_CCERT;
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
    /* The client's watcher stays as it is while the upstream connects: a
     * client that sends more meanwhile has it stopped (tg_conn_client_cb),
     * one that waits (the usual case) finds it still registered afterwards,
     * which saves an epoll_ctl. Not a wait for writability: that would
     * fire at once. */
    if (ev_is_active(&c->cio) && (c->cio.events & EV_WRITE))
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

/* ---- watchers ---- */

static void tg_conn_client_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    struct tg_conn *c = io->data;
    if (revents & EV_READ)
        c->sb.readable = true;
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
        /* The watcher asks for both: a failed connect reports readable
         * too (error, hang-up), a successful one only writable, unless
         * the upstream already spoke; only then is SO_ERROR worth asking. */
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if ((revents & EV_READ) && getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
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
