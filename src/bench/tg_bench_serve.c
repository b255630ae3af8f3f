/*
 * tg_bench_serve: `tlsgate bench --serve ADDR`, a trivial plaintext HTTP/1.1
 * server used as the upstream in the demo, the benchmarks and the tests.
 *
 * Contract (docs/BENCH.md): every well-formed request, whatever its method
 * or path, gets
 *     HTTP/1.1 200 OK\r\nContent-Length: N\r\nContent-Type: text/plain\r\n\r\n
 * followed by N body bytes (default "hello from tlsgate upstream\n"). The
 * connection stays open unless the request asks to close (Connection: close,
 * or HTTP/1.0 without keep-alive): then the response carries
 * "Connection: close" and the server closes right after it. Request bodies
 * (Content-Length or chunked) are read and discarded; pipelined requests are
 * answered in order. A malformed request gets 400 (431 for a head over
 * 16 KiB) and the connection is closed. Client EOF closes the connection
 * once owed responses are written. SIGINT/SIGTERM stop the server, exit 0.
 *
 * It sits on the load generator's core in the benchmark, so it is cheap:
 * requests are parsed straight out of one shared read buffer (no per
 * connection input buffer), responses are prebuilt once, a connection only
 * owes a count of responses, connection objects are recycled, and the
 * listener uses TCP_DEFER_ACCEPT so that accept() returns when the request
 * is already there and can be read and answered without another wake-up.
 * The number of connections is bounded (--max-conns, and the open-file
 * limit): at the bound the server stops accepting until one closes.
 */
#include "bench/tg_bench_internal.h"

#include <ev.h>

#include <errno.h>
#include <inttypes.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define SV_HEAD_LIMIT   (16u * 1024u)
#define SV_RBUF_SIZE    (64 * 1024)
#define SV_ACCEPT_BATCH 64
static const char sv_default_body[] = "hello from tlsgate upstream\n";

enum sv_final { SV_FINAL_NONE, SV_FINAL_CLOSE, SV_FINAL_400, SV_FINAL_431 };

struct server;

struct sv_conn {
    ev_io io;
    struct server *s;
    struct sv_conn *prev, *next; /* live list, or free list (next only) */
    int fd;
    uint8_t final;   /* enum sv_final: last response, then close */
    bool eof;        /* the client closed its side */
    uint64_t queued; /* keep-alive 200 responses owed */
    size_t woff;     /* bytes of the response being written */
    struct tg_http_parser p;
};

struct sv_resp {
    char *data;
    size_t len;
};

struct server {
    struct ev_loop *loop;
    int lfd;
    ev_io accept_io;
    ev_timer accept_retry;
    ev_signal sigint, sigterm;
    struct sv_conn *live, *free;
    uint64_t nconns, max_conns;
    struct sv_resp ok_ka, ok_close, bad, too_large;
    char rbuf[SV_RBUF_SIZE];
    uint64_t accepted, requests, bad_requests;
};

static int sv_make_resp(struct sv_resp *r, const char *status, const char *extra, uint64_t body_len,
                        const char *body)
{
    struct tg_buf b = TG_BUF_INIT;
    tg_buf_printf(&b, "HTTP/1.1 %s\r\nContent-Length: %" PRIu64 "\r\n%s\r\n", status, body_len,
                  extra);
    size_t head = b.len;
    if (body != NULL) {
        tg_buf_append(&b, body, (size_t)body_len);
    } else {
        for (uint64_t i = 0; i < body_len && !tg_buf_failed(&b); i += 64)
            tg_buf_append(&b, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                          body_len - i < 64 ? (size_t)(body_len - i) : 64);
        if (body_len > 0 && !tg_buf_failed(&b))
            b.data[head + body_len - 1] = '\n';
    }
    if (tg_buf_failed(&b)) {
        tg_buf_free(&b);
        return TG_ENOMEM;
    }
    r->data = b.data;
    r->len = b.len;
    return TG_OK;
}

static void sv_accept_resume(struct server *s)
{
    if (!ev_is_active(&s->accept_io) && !ev_is_active(&s->accept_retry))
        ev_io_start(s->loop, &s->accept_io);
}

static void sv_close(struct sv_conn *c)
{
    struct server *s = c->s;
    ev_io_stop(s->loop, &c->io);
    close(c->fd);
    c->fd = -1;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->live = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = NULL;
    c->next = s->free;
    s->free = c;
    s->nconns--;
    sv_accept_resume(s);
}

static void sv_want(struct sv_conn *c, int events)
{
    if (ev_is_active(&c->io)) {
        if ((c->io.events & (EV_READ | EV_WRITE)) == events)
            return;
        ev_io_stop(c->s->loop, &c->io);
    }
    ev_io_set(&c->io, c->fd, events);
    ev_io_start(c->s->loop, &c->io);
}

/* Write what is owed. Returns false when the connection was closed. */
static bool sv_flush(struct sv_conn *c)
{
    struct server *s = c->s;
    while (c->queued > 0 || c->final != SV_FINAL_NONE) {
        const struct sv_resp *r = c->queued > 0                ? &s->ok_ka
                                  : c->final == SV_FINAL_CLOSE ? &s->ok_close
                                  : c->final == SV_FINAL_400   ? &s->bad
                                                               : &s->too_large;
        ssize_t n = send(c->fd, r->data + c->woff, r->len - c->woff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                sv_want(c, EV_WRITE);
                return true;
            }
            sv_close(c);
            return false;
        }
        c->woff += (size_t)n;
        if (c->woff < r->len)
            continue;
        c->woff = 0;
        if (c->queued > 0) {
            c->queued--;
        } else {
            sv_close(c); /* the final response: close first (see docs/BENCH.md) */
            return false;
        }
    }
    if (c->eof) {
        sv_close(c);
        return false;
    }
    sv_want(c, EV_READ);
    return true;
}

static void sv_read(struct sv_conn *c)
{
    struct server *s = c->s;
    ssize_t n = recv(c->fd, s->rbuf, sizeof(s->rbuf), 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            sv_want(c, EV_READ);
            return;
        }
        sv_close(c);
        return;
    }
    if (n == 0) {
        /* Half-closed clients (HTTP/1.0 tools) still get what they are owed. */
        c->eof = true;
        if (c->queued == 0 || tg_http_started(&c->p))
            sv_close(c);
        else
            sv_flush(c);
        return;
    }
    size_t off = 0;
    while (off < (size_t)n) {
        size_t used;
        int rc = tg_http_feed(&c->p, s->rbuf + off, (size_t)n - off, &used);
        if (rc == TG_HTTP_MORE)
            break;
        if (rc == TG_HTTP_ERROR) {
            s->bad_requests++;
            c->final = c->p.error == TG_HTTP_E_TOO_LARGE ? SV_FINAL_431 : SV_FINAL_400;
            break;
        }
        off += used;
        s->requests++;
        if (!tg_http_keep_alive(&c->p)) {
            c->final = SV_FINAL_CLOSE; /* anything after it is ignored */
            break;
        }
        c->queued++;
        tg_http_init(&c->p, TG_HTTP_REQUEST, SV_HEAD_LIMIT);
    }
    /* Reading resumes only when everything owed is written (sv_flush), so a
     * pipelining client cannot make us buffer: it only raises a counter. */
    if (c->queued > 0 || c->final != SV_FINAL_NONE)
        sv_flush(c);
    else
        sv_want(c, EV_READ);
}

static void sv_conn_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct sv_conn *c = w->data;
    if (revents & EV_WRITE)
        sv_flush(c);
    else
        sv_read(c);
}

static void sv_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct server *s = w->data;
    for (int i = 0; i < SV_ACCEPT_BATCH; i++) {
        if (s->nconns >= s->max_conns) {
            ev_io_stop(loop, &s->accept_io); /* resumed by sv_close */
            return;
        }
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: back off instead of spinning on a
                 * listener that stays readable. */
                ev_io_stop(loop, &s->accept_io);
                ev_timer_set(&s->accept_retry, 0.1, 0.0);
                ev_timer_start(loop, &s->accept_retry);
            }
            return;
        }
        struct sv_conn *c = s->free;
        if (c != NULL) {
            s->free = c->next;
        } else {
            c = malloc(sizeof(*c));
            if (c == NULL) {
                close(fd);
                return;
            }
        }
        memset(c, 0, sizeof(*c));
        c->s = s;
        c->fd = fd;
        ev_init(&c->io, sv_conn_cb);
        c->io.data = c;
        c->next = s->live;
        if (s->live)
            s->live->prev = c;
        s->live = c;
        s->nconns++;
        s->accepted++;
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        tg_http_init(&c->p, TG_HTTP_REQUEST, SV_HEAD_LIMIT);
        sv_read(c); /* TCP_DEFER_ACCEPT: the request is usually here already */
    }
}

static void sv_accept_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    sv_accept_resume(w->data);
}

static void sv_signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static int sv_listen(struct server *s, const struct tg_bench_addr *a, struct tg_bench_addr *bound)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1, defer = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof(defer));
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) != 0 || listen(fd, 4096) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    *bound = *a;
    bound->len = sizeof(bound->ss);
    if (getsockname(fd, (struct sockaddr *)&bound->ss, &bound->len) != 0)
        *bound = *a;
    tg_bench_addr_format(bound);
    s->lfd = fd;
    return 0;
}

int tg_bench_run_serve(const struct tg_bench_opts *o)
{
    int status = 1;
    struct server *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        fprintf(stderr, "tlsgate bench: out of memory\n");
        return 1;
    }
    s->lfd = -1;
    s->max_conns = o->max_conns;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            (void)setrlimit(RLIMIT_NOFILE, &rl);
            (void)getrlimit(RLIMIT_NOFILE, &rl);
        }
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur > 64 && s->max_conns > rl.rlim_cur - 32)
            s->max_conns = rl.rlim_cur - 32;
    }
    bool dflt = o->response_size == TG_BENCH_RESPONSE_DEFAULT;
    uint64_t blen = dflt ? sizeof(sv_default_body) - 1 : o->response_size;
    const char *body = dflt ? sv_default_body : NULL;
    if (sv_make_resp(&s->ok_ka, "200 OK", "Content-Type: text/plain\r\n", blen, body) != TG_OK ||
        sv_make_resp(&s->ok_close, "200 OK", "Content-Type: text/plain\r\nConnection: close\r\n",
                     blen, body) != TG_OK ||
        sv_make_resp(&s->bad, "400 Bad Request", "Connection: close\r\n", 0, "") != TG_OK ||
        sv_make_resp(&s->too_large, "431 Request Header Fields Too Large", "Connection: close\r\n",
                     0, "") != TG_OK) {
        fprintf(stderr, "tlsgate bench: out of memory\n");
        goto out;
    }
    struct tg_bench_addr bound;
    int rc = sv_listen(s, &o->serve, &bound);
    if (rc < 0) {
        fprintf(stderr, "tlsgate bench: cannot listen on %s: %s\n", o->serve.text, strerror(-rc));
        goto out;
    }
    s->loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
    if (s->loop == NULL) {
        fprintf(stderr, "tlsgate bench: cannot create the event loop\n");
        goto out;
    }
    ev_io_init(&s->accept_io, sv_accept_cb, s->lfd, EV_READ);
    s->accept_io.data = s;
    ev_init(&s->accept_retry, sv_accept_retry_cb);
    s->accept_retry.data = s;
    ev_signal_init(&s->sigint, sv_signal_cb, SIGINT);
    ev_signal_init(&s->sigterm, sv_signal_cb, SIGTERM);
    ev_signal_start(s->loop, &s->sigint);
    ev_signal_start(s->loop, &s->sigterm);
    ev_io_start(s->loop, &s->accept_io);
    printf("serving on %s\n", bound.text);
    fflush(stdout);

    ev_run(s->loop, 0);

    if (!o->quiet)
        printf("served %" PRIu64 " requests on %" PRIu64 " connections, %" PRIu64 " bad requests\n",
               s->requests, s->accepted, s->bad_requests);
    fflush(stdout);
    status = 0;
out:
    while (s->live != NULL)
        sv_close(s->live);
    while (s->free != NULL) {
        struct sv_conn *c = s->free;
        s->free = c->next;
        free(c);
    }
    if (s->loop != NULL) {
        ev_io_stop(s->loop, &s->accept_io);
        ev_timer_stop(s->loop, &s->accept_retry);
        ev_signal_stop(s->loop, &s->sigint);
        ev_signal_stop(s->loop, &s->sigterm);
        ev_loop_destroy(s->loop);
    }
    if (s->lfd >= 0)
        close(s->lfd);
    free(s->ok_ka.data);
    free(s->ok_close.data);
    free(s->bad.data);
    free(s->too_large.data);
    free(s);
    return status;
}
