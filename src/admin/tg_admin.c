#include "admin/tg_admin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admin/tg_admin_http.h"
#include "config/tg_config.h"
#include "core/tg_log.h"

#define TG_ADMIN_MAX_CONNS 64
#define TG_ADMIN_BACKLOG   64
#define TG_ADMIN_TIMEOUT_S 5.0
/* After an error or a request with trailing bytes we half-close and read
 * what the client still sends, for at most this long: closing a socket with
 * unread input makes the kernel send RST, which can destroy the response
 * before the client reads it. */
#define TG_ADMIN_LINGER_S         1.0
#define TG_ADMIN_LINGER_MAX_BYTES (256 * 1024)
/* accept() failing for lack of descriptors leaves the listener readable:
 * pause it instead of spinning. */
#define TG_ADMIN_ACCEPT_BACKOFF_S 0.1

#define TG_ADMIN_CT_STATS "text/plain; version=0.0.4"
#define TG_ADMIN_CT_TEXT  "text/plain; charset=utf-8"

enum tg_admin_conn_state { CONN_READING, CONN_WRITING, CONN_LINGERING };

struct tg_admin_conn {
    struct tg_admin *srv;
    struct tg_admin_conn *prev, *next;
    int fd;
    enum tg_admin_conn_state state;
    bool linger;    /* unread input may remain when the response is out */
    ev_io io;       /* read or write, by state */
    ev_timer timer; /* whole-connection timeout, then the linger time */
    size_t in_len;
    size_t drained; /* bytes discarded while lingering */
    struct tg_buf out;
    size_t out_off;
    char in[TG_ADMIN_HEAD_MAX];
};

struct tg_admin {
    struct ev_loop *loop;
    struct tg_admin_callbacks cb;
    int fd;
    int port;
    ev_io accept_io;
    ev_timer backoff;
    struct tg_admin_conn *conns;
    unsigned nconns;
    double conn_timeout_s;
    double linger_s;
    struct tg_conf_cidr *allowed; /* admin.allowed_sources (copies, text NULL) */
    size_t n_allowed;
    uint64_t refused; /* connections from outside allowed */
};

static void tg_admin_conn_io_cb(struct ev_loop *loop, ev_io *w, int revents);

static const char *tg_admin_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

static void tg_admin_conn_close(struct tg_admin_conn *c)
{
    struct tg_admin *a = c->srv;
    ev_io_stop(a->loop, &c->io);
    ev_timer_stop(a->loop, &c->timer);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    a->nconns--;
    tg_buf_free(&c->out);
    free(c);
}

/* Re-arm the single I/O watcher for another event set. */
static void tg_admin_conn_watch(struct tg_admin_conn *c, int events)
{
    ev_io_stop(c->srv->loop, &c->io);
    ev_io_set(&c->io, c->fd, events);
    ev_io_start(c->srv->loop, &c->io);
}

static void tg_admin_conn_linger(struct tg_admin_conn *c)
{
    /* Our side is done: FIN tells the client, then drain until it closes. */
    if (shutdown(c->fd, SHUT_WR) != 0) {
        tg_admin_conn_close(c);
        return;
    }
    c->state = CONN_LINGERING;
    tg_admin_conn_watch(c, EV_READ);
    ev_timer_stop(c->srv->loop, &c->timer);
    ev_timer_set(&c->timer, c->srv->linger_s, 0.);
    ev_timer_start(c->srv->loop, &c->timer);
}

/* Write what is left; on completion close (or linger). */
static void tg_admin_conn_write(struct tg_admin_conn *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (c->state != CONN_WRITING) {
                c->state = CONN_WRITING;
                tg_admin_conn_watch(c, EV_WRITE);
            }
            return;
        }
        TG_DEBUG("admin: send failed: %s", strerror(errno));
        tg_admin_conn_close(c);
        return;
    }
    if (c->linger)
        tg_admin_conn_linger(c);
    else
        tg_admin_conn_close(c);
}

/*
 * Queue a whole response. body may be NULL (empty); head_only sends the
 * headers with the Content-Length the body would have (HEAD).
 */
static void tg_admin_respond(struct tg_admin_conn *c, int status, const char *ctype,
                             const char *extra, const char *body, size_t blen, bool head_only)
{
    tg_buf_printf(&c->out,
                  "HTTP/1.1 %d %s\r\n"
                  "Content-Type: %s\r\n"
                  "Content-Length: %zu\r\n"
                  "Cache-Control: no-store\r\n"
                  "Connection: close\r\n"
                  "%s"
                  "\r\n",
                  status, tg_admin_reason(status), ctype, blen, extra ? extra : "");
    if (!head_only && blen > 0)
        tg_buf_append(&c->out, body, blen);
    if (tg_buf_failed(&c->out)) {
        /* Nothing sensible fits; drop the connection. */
        TG_WARN("admin: out of memory building a %d response", status);
        tg_admin_conn_close(c);
        return;
    }
    /* The socket is almost always writable now: try before waiting. */
    tg_admin_conn_write(c);
}

static void tg_admin_respond_text(struct tg_admin_conn *c, int status, const char *text,
                                  const char *extra, bool head_only)
{
    tg_admin_respond(c, status, TG_ADMIN_CT_TEXT, extra, text, strlen(text), head_only);
}

static const char tg_admin_index[] = "tlsgate admin endpoint\n"
                                     "\n"
                                     "GET /stats   metrics, Prometheus text format 0.0.4\n"
                                     "GET /ready   200 \"ready\" while serving, 503 \"draining\" "
                                     "otherwise\n";

static void tg_admin_dispatch(struct tg_admin_conn *c, const struct tg_admin_req *req)
{
    struct tg_admin *a = c->srv;
    bool head = req->method == TG_ADMIN_M_HEAD;
    if (req->method == TG_ADMIN_M_OTHER) {
        tg_admin_respond_text(c, 405, "method not allowed\n", "Allow: GET, HEAD\r\n", false);
        return;
    }
    switch (req->route) {
    case TG_ADMIN_R_INDEX:
        tg_admin_respond_text(c, 200, tg_admin_index, NULL, head);
        return;
    case TG_ADMIN_R_READY: {
        bool ready = a->cb.ready ? a->cb.ready(a->cb.arg) : true;
        tg_admin_respond_text(c, ready ? 200 : 503, ready ? "ready\n" : "draining\n", NULL, head);
        return;
    }
    case TG_ADMIN_R_STATS: {
        struct tg_buf body = TG_BUF_INIT;
        if (a->cb.render_stats)
            a->cb.render_stats(&body, a->cb.arg);
        if (tg_buf_failed(&body))
            tg_admin_respond_text(c, 500, "out of memory\n", NULL, head);
        else
            tg_admin_respond(c, 200, TG_ADMIN_CT_STATS, NULL, body.data, body.len, head);
        tg_buf_free(&body);
        return;
    }
    case TG_ADMIN_R_UNKNOWN:
        break;
    }
    tg_admin_respond_text(c, 404, "not found\n", NULL, head);
}

static void tg_admin_conn_read(struct tg_admin_conn *c)
{
    for (;;) {
        size_t room = sizeof(c->in) - c->in_len;
        /* The parser reports 431 at TG_ADMIN_HEAD_MAX, so room is never 0 here. */
        ssize_t n = recv(c->fd, c->in + c->in_len, room, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            /* EOF or error before a whole head: nobody to answer. */
            tg_admin_conn_close(c);
            return;
        }
        c->in_len += (size_t)n;
        struct tg_admin_req req;
        int rc = tg_admin_parse_request(c->in, c->in_len, &req);
        if (rc == TG_ADMIN_PARSE_NEED_MORE)
            continue;
        ev_io_stop(c->srv->loop, &c->io);
        if (rc == TG_ADMIN_PARSE_ERROR) {
            TG_DEBUG("admin: fd %d: %d %s", c->fd, req.status, req.error);
            c->linger = true;
            char body[64];
            snprintf(body, sizeof(body), "%s\n", tg_admin_reason(req.status));
            tg_admin_respond_text(c, req.status, body, NULL, false);
            return;
        }
        TG_DEBUG("admin: fd %d: %s %s", c->fd, tg_admin_method_name(req.method),
                 tg_admin_route_name(req.route));
        /* A body or a pipelined request follows the head: drain it later. */
        c->linger = c->in_len > req.head_len;
        tg_admin_dispatch(c, &req);
        return;
    }
}

static void tg_admin_conn_drain(struct tg_admin_conn *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, c->in, sizeof(c->in), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            tg_admin_conn_close(c);
            return;
        }
        c->drained += (size_t)n;
        if (c->drained > TG_ADMIN_LINGER_MAX_BYTES) {
            tg_admin_conn_close(c);
            return;
        }
    }
}

static void tg_admin_conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_admin_conn *c = w->data;
    switch (c->state) {
    case CONN_READING:
        tg_admin_conn_read(c);
        break;
    case CONN_WRITING:
        tg_admin_conn_write(c);
        break;
    case CONN_LINGERING:
        tg_admin_conn_drain(c);
        break;
    }
}

static void tg_admin_conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_admin_conn *c = w->data;
    if (c->state != CONN_LINGERING)
        TG_DEBUG("admin: fd %d timed out", c->fd);
    tg_admin_conn_close(c);
}

static void tg_admin_backoff_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct tg_admin *a = w->data;
    ev_io_start(loop, &a->accept_io);
}

/* admin.allowed_sources: none means everyone. */
static bool tg_admin_allowed(const struct tg_admin *a, const struct sockaddr *peer)
{
    if (a->n_allowed == 0)
        return true;
    for (size_t i = 0; i < a->n_allowed; i++) {
        if (tg_conf_cidr_match(&a->allowed[i], peer))
            return true;
    }
    return false;
}

int tg_admin_set_allowed(struct tg_admin *a, const struct tg_conf_cidr *v, size_t n)
{
    struct tg_conf_cidr *copy = NULL;
    if (n > 0) {
        copy = calloc(n, sizeof(*copy));
        if (copy == NULL)
            return TG_ENOMEM;
        for (size_t i = 0; i < n; i++) {
            copy[i] = v[i];
            copy[i].text = NULL; /* not needed to match */
        }
    }
    free(a->allowed);
    a->allowed = copy;
    a->n_allowed = n;
    return TG_OK;
}

uint64_t tg_admin_refused(const struct tg_admin *a)
{
    return a->refused;
}

static void tg_admin_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct tg_admin *a = w->data;
    /* Bounded so a connection flood cannot starve the rest of the loop. */
    for (int i = 0; i < TG_ADMIN_MAX_CONNS; i++) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        int fd = accept4(a->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            TG_WARN("admin: accept failed: %s; pausing the admin listener", strerror(errno));
            ev_io_stop(loop, &a->accept_io);
            ev_timer_set(&a->backoff, TG_ADMIN_ACCEPT_BACKOFF_S, 0.);
            ev_timer_start(loop, &a->backoff);
            return;
        }
        if (!tg_admin_allowed(a, (const struct sockaddr *)&peer)) {
            a->refused++;
            TG_DEBUG("admin: a client outside admin.allowed_sources, closed");
            close(fd);
            continue;
        }
        if (a->nconns >= TG_ADMIN_MAX_CONNS) {
            TG_DEBUG("admin: %u connections open, refusing fd %d", a->nconns, fd);
            close(fd);
            continue;
        }
        struct tg_admin_conn *c = calloc(1, sizeof(*c));
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->srv = a;
        c->fd = fd;
        c->state = CONN_READING;
        c->out = (struct tg_buf)TG_BUF_INIT;
        ev_io_init(&c->io, tg_admin_conn_io_cb, fd, EV_READ);
        c->io.data = c;
        ev_timer_init(&c->timer, tg_admin_conn_timer_cb, a->conn_timeout_s, 0.);
        c->timer.data = c;
        c->next = a->conns;
        if (a->conns)
            a->conns->prev = c;
        a->conns = c;
        a->nconns++;
        ev_io_start(loop, &c->io);
        ev_timer_start(loop, &c->timer);
    }
}

static int tg_admin_bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

int tg_admin_start(struct ev_loop *loop, const struct tg_conf_addr *addr,
                   const struct tg_admin_callbacks *cb, struct tg_admin **out)
{
    int rc = TG_EIO;
    const char *text = addr && addr->text ? addr->text : "?";
    struct tg_admin *a = NULL;
    if (out)
        *out = NULL;
    if (loop == NULL || addr == NULL || cb == NULL || out == NULL || addr->len == 0 ||
        addr->len > sizeof(addr->ss)) {
        rc = TG_EINVAL;
        goto out;
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        rc = TG_ENOMEM;
        goto out;
    }
    a->loop = loop;
    a->cb = *cb;
    a->conn_timeout_s = TG_ADMIN_TIMEOUT_S;
    a->linger_s = TG_ADMIN_LINGER_S;
    a->fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (a->fd < 0) {
        TG_ERROR("admin: socket for %s: %s", text, strerror(errno));
        goto out;
    }
    int one = 1;
    if (setsockopt(a->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
        TG_ERROR("admin: SO_REUSEADDR on %s: %s", text, strerror(errno));
        goto out;
    }
    if (bind(a->fd, (const struct sockaddr *)&addr->ss, addr->len) != 0) {
        TG_ERROR("admin: bind %s: %s", text, strerror(errno));
        goto out;
    }
    if (listen(a->fd, TG_ADMIN_BACKLOG) != 0) {
        TG_ERROR("admin: listen %s: %s", text, strerror(errno));
        goto out;
    }
    a->port = tg_admin_bound_port(a->fd);
    ev_io_init(&a->accept_io, tg_admin_accept_cb, a->fd, EV_READ);
    a->accept_io.data = a;
    ev_timer_init(&a->backoff, tg_admin_backoff_cb, TG_ADMIN_ACCEPT_BACKOFF_S, 0.);
    a->backoff.data = a;
    ev_io_start(loop, &a->accept_io);
    TG_INFO("admin: listening on %s (port %d)", text, a->port);
    *out = a;
    a = NULL;
    rc = TG_OK;
out:
    if (a != NULL) {
        if (a->fd >= 0)
            close(a->fd);
        free(a);
    }
    return rc;
}

int tg_admin_port(const struct tg_admin *a)
{
    return a ? a->port : -1;
}

void tg_admin_set_timeouts(struct tg_admin *a, double conn_timeout_s, double linger_s)
{
    a->conn_timeout_s = conn_timeout_s;
    a->linger_s = linger_s;
}

void tg_admin_stop(struct tg_admin *a)
{
    if (a == NULL)
        return;
    ev_io_stop(a->loop, &a->accept_io);
    ev_timer_stop(a->loop, &a->backoff);
    while (a->conns)
        tg_admin_conn_close(a->conns);
    close(a->fd);
    free(a->allowed);
    free(a);
}
