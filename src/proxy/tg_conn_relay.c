/*
 * tg_conn_relay: a connection after its handshake: the upstream connect
 * (one endpoint after another), the relay both ways, half-close. Part of
 * the connection state machine (contract in tg_conn.h; what its two files
 * share in tg_conn_internal.h).
 */
#include "proxy/tg_conn_internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/tg_time.h"
#include "proxy/tg_ppio.h"
#include "upstream/tg_cluster.h"

/* ---- upstream ---- */

/* A pipe's storage, from the worker's pool, for bytes about to arrive. */
static bool tg_pipe_take(struct tg_worker *w, struct tg_pipe *p)
{
    if (p->data == NULL)
        p->data = tg_worker_buf_get(w, p->cap);
    return p->data != NULL;
}

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

void tg_conn_upstream_connected(struct tg_conn *c)
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

/* The outcome of the connect in progress on ufd: 0 connected, an errno
 * value when it failed, -1 while it is still in progress. */
int tg_conn_connect_state(const struct tg_conn *c)
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
void tg_conn_upstream_failed(struct tg_conn *c, int err)
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

void tg_conn_connect(struct tg_conn *c)
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
    ev_io_set(&c->uio, fd, EV_READ | EV_WRITE); /* why both: tg_conn_upstream_cb */
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
            /* No read of the upstream right after: its answer takes at
             * least a wake-up of another process, so that read would only
             * say EAGAIN (one system call per request, measured with
             * bench/syscalls.sh); the loop reports the answer. */
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
    /* upstream -> buffer, until the socket is drained (or the buffer full):
     * an upstream that answered and closed is then seen to have closed
     * before its last bytes are encrypted, and those leave with the
     * close_notify and the FIN in one packet. The read that finds the
     * socket empty is the one the next pass would have made. */
    while (!c->upstream_eof && uc->len < uc->cap && c->upstream_maybe_readable) {
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
    /* Once the upstream has finished, what goes to the client is its last
     * bytes and the close_notify, then shutdown() or close(): the kernel
     * may hold them back until then (MSG_MORE) and send one packet. */
    c->sb.more = c->upstream_eof;
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

void tg_conn_pump(struct tg_conn *c)
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
