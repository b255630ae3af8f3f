/* Unit tests for src/admin: the request-head parser (table + prefix/extension
 * invariants) and the live server on 127.0.0.1 with a libev loop running in a
 * thread while blocking clients talk to it from the test thread. */
#include "tg_test_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "admin/tg_admin.h"
#include "admin/tg_admin_http.h"
#include "config/tg_config.h"

/* ---- parser table ---- */

#define C    TG_ADMIN_PARSE_COMPLETE
#define M    TG_ADMIN_PARSE_NEED_MORE
#define E    TG_ADMIN_PARSE_ERROR
#define GET  TG_ADMIN_M_GET
#define HEAD TG_ADMIN_M_HEAD
#define OTH  TG_ADMIN_M_OTHER
#define IDX  TG_ADMIN_R_INDEX
#define STA  TG_ADMIN_R_STATS
#define RDY  TG_ADMIN_R_READY
#define UNK  TG_ADMIN_R_UNKNOWN

struct ptcase {
    const char *in;
    size_t len; /* 0: strlen(in) */
    int rc;
    int status;             /* E only */
    enum tg_admin_method m; /* C only */
    enum tg_admin_route r;  /* C only */
    size_t head_len;        /* C only; 0: the whole input */
};

#define H11 "Host: x\r\n"
/* A literal with embedded NULs, and its length. */
#define B(lit) lit, sizeof(lit) - 1

static const struct ptcase ptcases[] = {
    /* complete, valid */
    {"GET /stats HTTP/1.0\r\n\r\n", 0, C, 0, GET, STA, 0},
    {"GET /stats HTTP/1.1\r\n" H11 "\r\n", 0, C, 0, GET, STA, 0},
    {"HEAD /ready HTTP/1.1\r\nHost: a\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n", 0, C, 0,
     HEAD, RDY, 0},
    {"GET / HTTP/1.0\r\n\r\n", 0, C, 0, GET, IDX, 0},
    {"GET /ready?verbose=1&x=%20 HTTP/1.0\r\n\r\n", 0, C, 0, GET, RDY, 0},
    {"GET /stats? HTTP/1.0\r\n\r\n", 0, C, 0, GET, STA, 0},
    {"GET /?x HTTP/1.0\r\n\r\n", 0, C, 0, GET, IDX, 0},
    {"GET http://localhost:9901/stats HTTP/1.1\r\nHost: localhost:9901\r\n\r\n", 0, C, 0, GET, STA,
     0},
    {"GET HTTP://h HTTP/1.0\r\n\r\n", 0, C, 0, GET, IDX, 0},
    {"GET https://h?x=/stats HTTP/1.0\r\n\r\n", 0, C, 0, GET, IDX, 0},
    {"GET http://[::1]:9/ready?q HTTP/1.0\r\n\r\n", 0, C, 0, GET, RDY, 0},
    {"GET /ready HTTP/1.0\n\n", 0, C, 0, GET, RDY, 0},          /* bare LF */
    {"GET /ready HTTP/1.1\nHost: x\n\n", 0, C, 0, GET, RDY, 0}, /* bare LF headers */
    {"GET /nope HTTP/1.0\r\n\r\n", 0, C, 0, GET, UNK, 0},
    {"GET /stats/ HTTP/1.0\r\n\r\n", 0, C, 0, GET, UNK, 0},
    {"GET /Stats HTTP/1.0\r\n\r\n", 0, C, 0, GET, UNK, 0},
    {"GET /st%61ts HTTP/1.0\r\n\r\n", 0, C, 0, GET, UNK, 0}, /* no decoding */
    {"GET //stats HTTP/1.0\r\n\r\n", 0, C, 0, GET, UNK, 0},
    {"GET /statsx HTTP/1.0\r\n\r\n", 0, C, 0, GET, UNK, 0},
    {"POST /stats HTTP/1.1\r\n" H11 "Content-Length: 3\r\n\r\nabc", 0, C, 0, OTH, STA, 52},
    {"get /stats HTTP/1.0\r\n\r\n", 0, C, 0, OTH, STA, 0}, /* methods are case-sensitive */
    {"Get /stats HTTP/1.0\r\n\r\n", 0, C, 0, OTH, STA, 0},
    {"GETS /stats HTTP/1.0\r\n\r\n", 0, C, 0, OTH, STA, 0},
    {"OPTIONS * HTTP/1.1\r\n" H11 "\r\n", 0, C, 0, OTH, UNK, 0},
    {"DELETE /ready HTTP/1.0\r\n\r\n", 0, C, 0, OTH, RDY, 0},
    {"GET /stats HTTP/1.1\r\nhOsT: x\r\nX-Empty:\r\nX-Tab:\ta\tb\r\nX-Utf8: \xc3\xa9\r\n\r\n", 0, C,
     0, GET, STA, 0},
    {"GET /stats HTTP/1.0\r\n\r\nGET /ready HTTP/1.0\r\n\r\n", 0, C, 0, GET, STA, 23},
    {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA / HTTP/1.0\r\n\r\n", 0, C, 0, OTH, IDX, 0}, /* 32 */

    /* incomplete */
    {"", 0, M, 0, 0, 0, 0},
    {"G", 0, M, 0, 0, 0, 0},
    {"GET", 0, M, 0, 0, 0, 0},
    {"GET ", 0, M, 0, 0, 0, 0},
    {"GET /st", 0, M, 0, 0, 0, 0},
    {"GET /stats ", 0, M, 0, 0, 0, 0},
    {"GET /stats HT", 0, M, 0, 0, 0, 0},
    {"GET /stats HTTP/1.", 0, M, 0, 0, 0, 0},
    {"GET /stats HTTP/1.1", 0, M, 0, 0, 0, 0},
    {"GET /stats HTTP/1.1\r", 0, M, 0, 0, 0, 0},
    {"GET /stats HTTP/1.1\r\n", 0, M, 0, 0, 0, 0},
    {"GET /stats HTTP/1.1\r\nHost: x", 0, M, 0, 0, 0, 0},
    {"GET /stats HTTP/1.1\r\n" H11, 0, M, 0, 0, 0, 0},
    {"GET /stats HTTP/1.1\r\n" H11 "\r", 0, M, 0, 0, 0, 0},

    /* malformed: 400 */
    {" GET / HTTP/1.0\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"\r\nGET / HTTP/1.0\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET  /stats HTTP/1.0\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET /stats  HTTP/1.0\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET /stats HTTP/1.0 \r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET\t/stats HTTP/1.0\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET /stats\r\n\r\n", 0, E, 400, 0, 0, 0}, /* HTTP/0.9 */
    {"GET /stats\n", 0, E, 400, 0, 0, 0},
    {B("GET /sta\0ts HTTP/1.0\r\n\r\n"), E, 400, 0, 0, 0}, /* NUL in target */
    {B("\0"), E, 400, 0, 0, 0},
    {B("G\0T / HTTP/1.0\r\n\r\n"), E, 400, 0, 0, 0},
    {B("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), E, 400, 0, 0, 0}, /* TLS hello */
    {"\xff\xfe", 0, E, 400, 0, 0, 0},
    {"GET /st\x7f HTTP/1.0\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET /\xc3\xa9 HTTP/1.0\r\n\r\n", 0, E, 400, 0, 0, 0}, /* raw UTF-8 in target */
    {"GET stats HTTP/1.0\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET /a#b HTTP/1.0\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET http:///stats HTTP/1.0\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET http:/stats HTTP/1.0\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET ftp://h/stats HTTP/1.0\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET * HTTP/1.0\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET /stats http/1.1\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET /stats HTTP/1.x\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET /stats HTTP/11.1\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET /stats HTTP/1.10\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET /stats HTTP/1.1x\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET /stats HTTP/1\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET /stats HTTP/\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET /stats HTTP/1.0\r\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET /stats HTTP/1.0\r\nHost : x\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET /stats HTTP/1.0\r\nHost: x\r\n folded\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET /stats HTTP/1.0\r\n\tX: y\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET /stats HTTP/1.0\r\n: novalue\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET /stats HTTP/1.0\r\nX\x01Y: z\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET /stats HTTP/1.0\r\nNoColon\r\n\r\n", 0, E, 400, 0, 0, 0},
    {B("GET /stats HTTP/1.0\r\nX: a\0b\r\n\r\n"), E, 400, 0, 0, 0},
    {"GET /stats HTTP/1.0\r\nX: a\x7f\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET /stats HTTP/1.0\r\nX: a\rb\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET /stats HTTP/1.0\r\nX: a\r\n\rx", 0, E, 400, 0, 0, 0},
    {"GET /stats HTTP/1.1\r\n\r\n", 0, E, 400, 0, 0, 0}, /* 1.1 needs Host */
    {"GET /stats HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"GET /stats HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 0, E, 400, 0, 0, 0},
    {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA / HTTP/1.0\r\n\r\n", 0, E, 400, 0, 0, 0}, /* 33 */

    /* well-formed, unsupported version: 505 */
    {"GET /stats HTTP/2.0\r\n\r\n", 0, E, 505, 0, 0, 0},
    {"GET /stats HTTP/1.2\r\n\r\n", 0, E, 505, 0, 0, 0},
    {"GET /stats HTTP/0.9\r\n\r\n", 0, E, 505, 0, 0, 0},
    {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0, E, 505, 0, 0, 0}, /* h2 preface */
};

static size_t ptlen(const struct ptcase *t)
{
    return t->len ? t->len : strlen(t->in);
}

static void test_parse_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < TG_ARRAY_LEN(ptcases); i++) {
        const struct ptcase *t = &ptcases[i];
        struct tg_admin_req req;
        size_t n = ptlen(t);
        int rc = tg_admin_parse_request(t->in, n, &req);
        if (rc != t->rc)
            fail_msg("case %zu (%.40s): rc %d, want %d (%s)", i, t->in, rc, t->rc,
                     req.error ? req.error : "-");
        if (rc == E) {
            if (req.status != t->status)
                fail_msg("case %zu (%.40s): status %d, want %d", i, t->in, req.status, t->status);
            assert_non_null(req.error);
        } else if (rc == C) {
            if (req.method != t->m || req.route != t->r)
                fail_msg("case %zu (%.40s): %s %s, want %s %s", i, t->in,
                         tg_admin_method_name(req.method), tg_admin_route_name(req.route),
                         tg_admin_method_name(t->m), tg_admin_route_name(t->r));
            assert_int_equal(req.head_len, t->head_len ? t->head_len : n);
            assert_int_equal(req.status, 0);
            assert_null(req.error);
        }
    }
}

/* Every proper prefix of a complete head needs more; every extension of an
 * error stays the same error; a complete head ignores what follows. */
static void test_parse_prefix_invariants(void **state)
{
    (void)state;
    char ext[256];
    for (size_t i = 0; i < TG_ARRAY_LEN(ptcases); i++) {
        const struct ptcase *t = &ptcases[i];
        size_t n = ptlen(t);
        struct tg_admin_req req, req2;
        int rc = tg_admin_parse_request(t->in, n, &req);
        if (rc == C) {
            for (size_t k = 0; k < req.head_len; k++) {
                int prc = tg_admin_parse_request(t->in, k, &req2);
                if (prc != M)
                    fail_msg("case %zu: prefix %zu gives %d (%s)", i, k, prc,
                             req2.error ? req2.error : "-");
            }
        }
        static const char tail[] = "\r\n\r\nGARBAGE\0\x01\xff";
        if (n + sizeof(tail) > sizeof(ext))
            continue;
        memcpy(ext, t->in, n);
        memcpy(ext + n, tail, sizeof(tail));
        int erc = tg_admin_parse_request(ext, n + sizeof(tail), &req2);
        if (rc == E) {
            assert_int_equal(erc, E);
            assert_int_equal(req2.status, req.status);
        } else if (rc == C) {
            assert_int_equal(erc, C);
            assert_int_equal(req2.head_len, req.head_len);
        }
    }
}

static void test_parse_limits(void **state)
{
    (void)state;
    char *big = malloc(TG_ADMIN_HEAD_MAX * 2);
    assert_non_null(big);
    struct tg_admin_req req;

    /* A target filling the whole budget: 431 at the limit, need-more below it. */
    memcpy(big, "GET /", 5);
    memset(big + 5, 'a', TG_ADMIN_HEAD_MAX * 2 - 5);
    assert_int_equal(tg_admin_parse_request(big, TG_ADMIN_HEAD_MAX - 1, &req), M);
    assert_int_equal(tg_admin_parse_request(big, TG_ADMIN_HEAD_MAX, &req), E);
    assert_int_equal(req.status, 431);
    assert_int_equal(tg_admin_parse_request(big, TG_ADMIN_HEAD_MAX * 2, &req), E);
    assert_int_equal(req.status, 431);

    /* Many valid header lines without the blank line: 431. */
    size_t off = (size_t)snprintf(big, TG_ADMIN_HEAD_MAX * 2, "GET /stats HTTP/1.0\r\n");
    while (off + 16 < TG_ADMIN_HEAD_MAX * 2) {
        memcpy(big + off, "X-Pad: 0123456\r\n", 16);
        off += 16;
    }
    assert_int_equal(tg_admin_parse_request(big, off, &req), E);
    assert_int_equal(req.status, 431);

    /* A head of exactly TG_ADMIN_HEAD_MAX bytes is fine; one more byte is not. */
    static const char pre[] = "GET /stats HTTP/1.0\r\nX: ";
    size_t plen = strlen(pre);
    memcpy(big, pre, plen);
    memset(big + plen, 'v', TG_ADMIN_HEAD_MAX - plen - 4);
    memcpy(big + TG_ADMIN_HEAD_MAX - 4, "\r\n\r\n", 4);
    assert_int_equal(tg_admin_parse_request(big, TG_ADMIN_HEAD_MAX, &req), C);
    assert_int_equal(req.head_len, TG_ADMIN_HEAD_MAX);
    /* ... even with bytes after it. */
    assert_int_equal(tg_admin_parse_request(big, TG_ADMIN_HEAD_MAX + 100, &req), C);
    memset(big + plen, 'v', TG_ADMIN_HEAD_MAX - plen - 3);
    memcpy(big + TG_ADMIN_HEAD_MAX - 3, "\r\n\r\n", 4);
    assert_int_equal(tg_admin_parse_request(big, TG_ADMIN_HEAD_MAX + 1, &req), E);
    assert_int_equal(req.status, 431);
    free(big);

    assert_string_equal(tg_admin_method_name(TG_ADMIN_M_HEAD), "HEAD");
    assert_string_equal(tg_admin_route_name(TG_ADMIN_R_UNKNOWN), "unknown");
}

/* Pseudo-random bytes from an HTTP-ish alphabet must never crash and must
 * respect the result contract (a smoke version of the fuzz target). */
static void test_parse_random(void **state)
{
    (void)state;
    static const char alpha[] = "GETHADPOS /?#:\r\n\t\0\x7f\x80stayHTP1.0x";
    char buf[256];
    uint32_t s = 12345;
    for (int iter = 0; iter < 100000; iter++) {
        size_t n = (size_t)(iter % 255);
        for (size_t i = 0; i < n; i++) {
            s = s * 1103515245u + 12345u;
            buf[i] = alpha[(s >> 16) % (sizeof(alpha) - 1)];
        }
        if (iter % 3 == 0 && n > 20)
            memcpy(buf, "GET /stats HTTP/1.0\r\n", 21);
        struct tg_admin_req req;
        int rc = tg_admin_parse_request(buf, n, &req);
        assert_true(rc == C || rc == M || rc == E);
        if (rc == C)
            assert_true(req.head_len > 0 && req.head_len <= n);
        if (rc == E)
            assert_true(req.status == 400 || req.status == 431 || req.status == 505);
    }
}

/* ---- live server ---- */

struct srv {
    struct ev_loop *loop;
    struct tg_admin *admin;
    ev_async stop;
    pthread_t thread;
    atomic_bool ready;
    atomic_size_t big; /* /stats body size; 0: the small fixed body */
    atomic_int renders;
    int port;
};

static const char small_stats[] = "# TYPE tlsgate_test_total counter\ntlsgate_test_total 42\n";

static void render_cb(struct tg_buf *out, void *arg)
{
    struct srv *s = arg;
    atomic_fetch_add(&s->renders, 1);
    size_t big = atomic_load(&s->big);
    if (big == 0) {
        tg_buf_puts(out, small_stats);
        return;
    }
    /* A recognisable pattern so the client can check every byte arrived. */
    for (size_t i = 0; i < big; i++) {
        char ch = (char)('a' + (i % 26));
        tg_buf_append(out, &ch, 1);
    }
}

static bool ready_cb(void *arg)
{
    struct srv *s = arg;
    return atomic_load(&s->ready);
}

static void stop_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void *loop_thread(void *arg)
{
    struct srv *s = arg;
    ev_run(s->loop, 0);
    return NULL;
}

static void make_addr(struct tg_conf_addr *a, int port)
{
    memset(a, 0, sizeof(*a));
    struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a->len = sizeof(*sin);
    a->text = (char *)"127.0.0.1:test";
}

static struct srv *srv_up(double timeout_s, double linger_s)
{
    struct srv *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    atomic_init(&s->ready, true);
    atomic_init(&s->big, 0);
    atomic_init(&s->renders, 0);
    s->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(s->loop);
    struct tg_conf_addr addr;
    make_addr(&addr, 0);
    struct tg_admin_callbacks cb = {.render_stats = render_cb, .ready = ready_cb, .arg = s};
    assert_int_equal(tg_admin_start(s->loop, &addr, &cb, &s->admin), TG_OK);
    s->port = tg_admin_port(s->admin);
    assert_true(s->port > 0);
    if (timeout_s > 0)
        tg_admin_set_timeouts(s->admin, timeout_s, linger_s);
    ev_async_init(&s->stop, stop_cb);
    ev_async_start(s->loop, &s->stop);
    assert_int_equal(pthread_create(&s->thread, NULL, loop_thread, s), 0);
    return s;
}

static void srv_down(struct srv *s)
{
    ev_async_send(s->loop, &s->stop);
    assert_int_equal(pthread_join(s->thread, NULL), 0);
    ev_async_stop(s->loop, &s->stop);
    tg_admin_stop(s->admin);
    ev_loop_destroy(s->loop);
    free(s);
}

static int client_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        assert_true(w > 0);
        p += w;
        n -= (size_t)w;
    }
}

/* Read until EOF (or error/timeout); returns a malloc'd NUL-terminated buffer. */
static char *recv_all(int fd, size_t *outlen)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (cap - len < 2048) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    if (outlen)
        *outlen = len;
    return buf;
}

static char *exchange(int port, const char *req, size_t reqlen, size_t *outlen)
{
    int fd = client_connect(port);
    send_all(fd, req, reqlen);
    char *resp = recv_all(fd, outlen);
    close(fd);
    return resp;
}

static int status_of(const char *resp)
{
    int code = 0;
    if (strncmp(resp, "HTTP/1.1 ", 9) != 0)
        return -1;
    for (int i = 9; i < 12; i++) {
        if (resp[i] < '0' || resp[i] > '9')
            return -1;
        code = code * 10 + (resp[i] - '0');
    }
    return code;
}

static const char *body_of(const char *resp)
{
    const char *p = strstr(resp, "\r\n\r\n");
    return p ? p + 4 : NULL;
}

/* One request, check status; returns the response (caller frees). */
static char *expect(struct srv *s, const char *req, int status)
{
    char *resp = exchange(s->port, req, strlen(req), NULL);
    if (status_of(resp) != status)
        fail_msg("request %.60s: got '%.80s', want status %d", req, resp, status);
    assert_non_null(strstr(resp, "\r\nConnection: close\r\n"));
    return resp;
}

static void test_live_routes(void **state)
{
    (void)state;
    struct srv *s = srv_up(0, 0);
    char *r;

    r = expect(s, "GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 200);
    assert_non_null(strstr(r, "\r\nContent-Type: text/plain; version=0.0.4\r\n"));
    char cl[64];
    snprintf(cl, sizeof(cl), "\r\nContent-Length: %zu\r\n", strlen(small_stats));
    assert_non_null(strstr(r, cl));
    assert_string_equal(body_of(r), small_stats);
    free(r);

    r = expect(s, "HEAD /stats HTTP/1.0\r\n\r\n", 200);
    assert_non_null(strstr(r, cl)); /* the length GET would have */
    assert_string_equal(body_of(r), "");
    free(r);

    r = expect(s, "GET /ready HTTP/1.0\r\n\r\n", 200);
    assert_string_equal(body_of(r), "ready\n");
    free(r);
    atomic_store(&s->ready, false);
    r = expect(s, "GET /ready?x=1 HTTP/1.1\r\nHost: h\r\n\r\n", 503);
    assert_string_equal(body_of(r), "draining\n");
    free(r);
    r = expect(s, "HEAD /ready HTTP/1.0\r\n\r\n", 503);
    assert_string_equal(body_of(r), "");
    free(r);
    atomic_store(&s->ready, true);

    r = expect(s, "GET / HTTP/1.0\r\n\r\n", 200);
    assert_non_null(strstr(body_of(r), "/stats"));
    assert_non_null(strstr(body_of(r), "/ready"));
    free(r);
    r = expect(s, "GET http://127.0.0.1/stats HTTP/1.0\r\n\r\n", 200);
    free(r);

    r = expect(s, "GET /nope HTTP/1.0\r\n\r\n", 404);
    free(r);
    r = expect(s, "POST /stats HTTP/1.0\r\n\r\n", 405);
    assert_non_null(strstr(r, "\r\nAllow: GET, HEAD\r\n"));
    free(r);
    r = expect(s, "get /stats HTTP/1.0\r\n\r\n", 405);
    free(r);
    r = expect(s, "GET /stats HTTP/2.0\r\n\r\n", 505);
    free(r);
    r = expect(s, "GET /stats HTTP/1.1\r\n\r\n", 400); /* no Host */
    free(r);
    r = expect(s, "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 400);
    free(r);
    r = expect(s, "GET /a\r\n\r\n", 400);
    free(r);

    /* Oversized head: 431, and the whole response still arrives (the
     * server drains what we keep sending instead of resetting). */
    char *big = malloc(20000);
    assert_non_null(big);
    memcpy(big, "GET /", 5);
    memset(big + 5, 'a', 20000 - 5);
    size_t rlen = 0;
    r = exchange(s->port, big, 20000, &rlen);
    assert_int_equal(status_of(r), 431);
    free(r);
    free(big);

    /* A request with a body: 405, response intact despite unread bytes. */
    r = expect(s, "POST /stats HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world", 405);
    free(r);

    assert_true(atomic_load(&s->renders) >= 3);
    srv_down(s);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_live_split_and_eof(void **state)
{
    (void)state;
    struct srv *s = srv_up(0, 0);

    /* The head arrives in pieces, byte boundaries inside CRLF included. */
    static const char *const parts[] = {"GE",   "T /rea",      "dy HTTP/1.1\r",
                                        "\nHo", "st: x\r\n\r", "\n"};
    int fd = client_connect(s->port);
    for (size_t i = 0; i < TG_ARRAY_LEN(parts); i++) {
        send_all(fd, parts[i], strlen(parts[i]));
        sleep_ms(20);
    }
    char *r = recv_all(fd, NULL);
    close(fd);
    assert_int_equal(status_of(r), 200);
    assert_string_equal(body_of(r), "ready\n");
    free(r);

    /* EOF before a whole head: closed without a response. */
    fd = client_connect(s->port);
    send_all(fd, "GET /stats HTTP/1.0\r\n", 21);
    shutdown(fd, SHUT_WR);
    size_t n = 99;
    r = recv_all(fd, &n);
    close(fd);
    assert_int_equal(n, 0);
    free(r);

    /* Connect and close at once: the server must just clean up. */
    for (int i = 0; i < 20; i++)
        close(client_connect(s->port));
    r = expect(s, "GET /ready HTTP/1.0\r\n\r\n", 200);
    free(r);
    srv_down(s);
}

/* A body much larger than the socket buffers forces partial writes. */
static void test_live_big_body(void **state)
{
    (void)state;
    struct srv *s = srv_up(0, 0);
    const size_t big = 8u << 20;
    atomic_store(&s->big, big);
    int fd = client_connect(s->port);
    send_all(fd, "GET /stats HTTP/1.0\r\n\r\n", 23);
    sleep_ms(200); /* let the server fill the socket and wait for EV_WRITE */
    size_t len = 0;
    char *r = recv_all(fd, &len);
    close(fd);
    assert_int_equal(status_of(r), 200);
    const char *b = body_of(r);
    assert_non_null(b);
    assert_int_equal(len - (size_t)(b - r), big);
    for (size_t i = 0; i < big; i++)
        if (b[i] != (char)('a' + (i % 26)))
            fail_msg("body byte %zu is %d", i, b[i]);
    free(r);
    srv_down(s);
}

static void test_live_timeout(void **state)
{
    (void)state;
    struct srv *s = srv_up(0.3, 0.2);
    int fd = client_connect(s->port);
    send_all(fd, "GET /st", 7);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    /* Closed by the server well before our 5 s receive timeout. */
    assert_int_equal(poll(&p, 1, 3000), 1);
    size_t n = 99;
    char *r = recv_all(fd, &n);
    assert_int_equal(n, 0);
    free(r);
    close(fd);

    /* Lingering is bounded too: a client that never closes after a 400. */
    fd = client_connect(s->port);
    send_all(fd, "BAD\x01", 4);
    r = recv_all(fd, &n); /* EOF arrives after the response (our FIN) */
    assert_int_equal(status_of(r), 400);
    free(r);
    sleep_ms(400); /* the linger timer closes the server side */
    close(fd);
    r = expect(s, "GET /ready HTTP/1.0\r\n\r\n", 200);
    free(r);
    srv_down(s);
}

static void test_live_conn_limit(void **state)
{
    (void)state;
    struct srv *s = srv_up(0, 0);
    int fds[64];
    for (int i = 0; i < 64; i++)
        fds[i] = client_connect(s->port);
    /* The 65th is accepted by the kernel and closed by the server at once. */
    int extra = client_connect(s->port);
    struct pollfd p = {.fd = extra, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 3000), 1);
    size_t n = 99;
    char *r = recv_all(extra, &n);
    assert_int_equal(n, 0);
    free(r);
    close(extra);
    /* All 64 were kept: each still gets its answer. */
    for (int i = 0; i < 64; i++) {
        send_all(fds[i], "GET /ready HTTP/1.0\r\n\r\n", 23);
        r = recv_all(fds[i], NULL);
        assert_int_equal(status_of(r), 200);
        free(r);
        close(fds[i]);
    }
    /* Slots are free again. */
    r = expect(s, "GET /ready HTTP/1.0\r\n\r\n", 200);
    free(r);
    srv_down(s);
}

/* tg_admin_stop with connections in every state frees everything (ASan /
 * valgrind check the leak side) and the clients see the close. */
static void test_stop_with_conns(void **state)
{
    (void)state;
    struct srv *s = srv_up(0, 0);
    int idle = client_connect(s->port);
    int partial = client_connect(s->port);
    send_all(partial, "GET /stats HT", 13);
    int bad = client_connect(s->port);
    send_all(bad, "\x01", 1); /* 400 then lingering */
    sleep_ms(100);
    srv_down(s);
    int fds[3] = {idle, partial, bad};
    for (int i = 0; i < 3; i++) {
        char *r = recv_all(fds[i], NULL);
        free(r);
        close(fds[i]);
    }
}

static void test_start_errors(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct tg_conf_addr addr;
    make_addr(&addr, 0);
    struct tg_admin_callbacks cb = {0};
    struct tg_admin *a = (struct tg_admin *)1, *b = NULL;
    assert_int_equal(tg_admin_start(NULL, &addr, &cb, &a), TG_EINVAL);
    assert_null(a);
    assert_int_equal(tg_admin_start(loop, NULL, &cb, &a), TG_EINVAL);
    assert_int_equal(tg_admin_start(loop, &addr, NULL, &a), TG_EINVAL);
    struct tg_conf_addr zero = {0};
    assert_int_equal(tg_admin_start(loop, &zero, &cb, &a), TG_EINVAL);

    /* Callbacks may be NULL: /stats is empty, /ready says ready. */
    assert_int_equal(tg_admin_start(loop, &addr, &cb, &a), TG_OK);
    /* The same port again: bind fails (a listener, not TIME_WAIT). */
    struct tg_conf_addr taken;
    make_addr(&taken, tg_admin_port(a));
    assert_int_equal(tg_admin_start(loop, &taken, &cb, &b), TG_EIO);
    assert_null(b);
    tg_admin_stop(a);
    tg_admin_stop(NULL);
    assert_int_equal(tg_admin_port(NULL), -1);
    ev_loop_destroy(loop);
}

static void test_live_null_callbacks(void **state)
{
    (void)state;
    struct srv *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    s->loop = ev_loop_new(EVFLAG_AUTO);
    struct tg_conf_addr addr;
    make_addr(&addr, 0);
    struct tg_admin_callbacks cb = {0};
    assert_int_equal(tg_admin_start(s->loop, &addr, &cb, &s->admin), TG_OK);
    s->port = tg_admin_port(s->admin);
    ev_async_init(&s->stop, stop_cb);
    ev_async_start(s->loop, &s->stop);
    assert_int_equal(pthread_create(&s->thread, NULL, loop_thread, s), 0);
    char *r = expect(s, "GET /stats HTTP/1.0\r\n\r\n", 200);
    assert_non_null(strstr(r, "\r\nContent-Length: 0\r\n"));
    free(r);
    r = expect(s, "GET /ready HTTP/1.0\r\n\r\n", 200);
    free(r);
    srv_down(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_table),     cmocka_unit_test(test_parse_prefix_invariants),
        cmocka_unit_test(test_parse_limits),    cmocka_unit_test(test_parse_random),
        cmocka_unit_test(test_live_routes),     cmocka_unit_test(test_live_split_and_eof),
        cmocka_unit_test(test_live_big_body),   cmocka_unit_test(test_live_timeout),
        cmocka_unit_test(test_live_conn_limit), cmocka_unit_test(test_stop_with_conns),
        cmocka_unit_test(test_start_errors),    cmocka_unit_test(test_live_null_callbacks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
