/*
 * Unit tests for the streaming HTTP/1.x parser of `tlsgate bench`
 * (src/bench/tg_bench_http.c): responses for the load generator, requests
 * for the upstream server. Every well-formed case is also fed split at every
 * byte boundary and one byte at a time: the result must not depend on how
 * the bytes arrive.
 */
#include "tg_test_util.h"

#include <string.h>

#include "bench/tg_bench_internal.h"

struct outcome {
    int rc;      /* TG_HTTP_DONE / MORE / ERROR after the last chunk */
    size_t used; /* bytes consumed by the message (DONE), total offset */
    uint16_t status;
    uint64_t body;
    bool keep_alive;
    enum tg_http_error error;
};

/* Feed msg in pieces: the first `split` bytes, then the rest, each piece
 * further cut into `step`-byte chunks (0 = whole piece). */
static struct outcome feed(enum tg_http_kind kind, const char *msg, size_t len, size_t split,
                           size_t step, bool eof)
{
    struct tg_http_parser p;
    struct outcome o = {0};
    tg_http_init(&p, kind, 0);
    size_t off = 0;
    int rc = TG_HTTP_MORE;
    while (off < len && rc == TG_HTTP_MORE) {
        size_t end = off < split ? split : len;
        size_t n = end - off;
        if (step > 0 && n > step)
            n = step;
        size_t used = 0;
        rc = tg_http_feed(&p, msg + off, n, &used);
        if (rc == TG_HTTP_MORE)
            assert_int_equal(used, n);
        off += rc == TG_HTTP_ERROR ? n : used;
    }
    if (rc == TG_HTTP_MORE && eof)
        rc = tg_http_eof(&p);
    o.rc = rc;
    o.used = rc == TG_HTTP_ERROR ? 0 : off; /* where an error is noticed depends on the cuts */
    o.status = p.status;
    o.body = p.body_bytes;
    o.keep_alive = rc == TG_HTTP_DONE && tg_http_keep_alive(&p);
    o.error = p.error;
    return o;
}

/* The same outcome for every way of cutting msg. */
static struct outcome feed_all_ways(enum tg_http_kind kind, const char *msg, bool eof)
{
    size_t len = strlen(msg);
    struct outcome ref = feed(kind, msg, len, 0, 0, eof);
    for (size_t split = 0; split <= len; split++) {
        struct outcome o = feed(kind, msg, len, split, 0, eof);
        if (o.rc != ref.rc || o.used != ref.used || o.status != ref.status || o.body != ref.body ||
            o.keep_alive != ref.keep_alive || o.error != ref.error)
            fail_msg("split at %zu differs: rc %d/%d used %zu/%zu", split, o.rc, ref.rc, o.used,
                     ref.used);
    }
    struct outcome o = feed(kind, msg, len, 0, 1, eof);
    assert_int_equal(o.rc, ref.rc);
    assert_int_equal(o.used, ref.used);
    assert_int_equal(o.status, ref.status);
    assert_true(o.body == ref.body);
    assert_int_equal(o.error, ref.error);
    return ref;
}

static struct outcome resp(const char *msg)
{
    return feed_all_ways(TG_HTTP_RESPONSE, msg, false);
}

static struct outcome resp_eof(const char *msg)
{
    return feed_all_ways(TG_HTTP_RESPONSE, msg, true);
}

static struct outcome req(const char *msg)
{
    return feed_all_ways(TG_HTTP_REQUEST, msg, false);
}

/* ------------------------------------------------------------------------- */

static void test_response_complete(void **state)
{
    (void)state;
    const char *m = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello";
    struct outcome o = resp(m);
    assert_int_equal(o.rc, TG_HTTP_DONE);
    assert_int_equal(o.used, strlen(m));
    assert_int_equal(o.status, 200);
    assert_true(o.body == 5);
    assert_true(o.keep_alive);

    /* bare LF line ends, no reason phrase, odd header case, OWS */
    o = resp("HTTP/1.1 204\ncontent-LENGTH:   0  \n\n");
    assert_int_equal(o.rc, TG_HTTP_DONE);
    assert_int_equal(o.status, 204);
    o = resp("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(o.rc, TG_HTTP_DONE);
    assert_int_equal(o.status, 503);
}

static void test_response_extra_bytes(void **state)
{
    (void)state;
    const char *m = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA";
    struct tg_http_parser p;
    size_t used;
    tg_http_init(&p, TG_HTTP_RESPONSE, 0);
    assert_int_equal(tg_http_feed(&p, m, strlen(m), &used), TG_HTTP_DONE);
    assert_int_equal(used, strlen(m) - 5);
    /* fed again after DONE: still DONE, nothing consumed */
    assert_int_equal(tg_http_feed(&p, "x", 1, &used), TG_HTTP_DONE);
    assert_int_equal(used, 0);
}

static void test_response_no_body_statuses(void **state)
{
    (void)state;
    struct outcome o = resp("HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n");
    assert_int_equal(o.rc, TG_HTTP_DONE);
    assert_true(o.body == 0);
    /* HEAD: the caller says there is no body */
    struct tg_http_parser p;
    size_t used;
    const char *m = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
    tg_http_init(&p, TG_HTTP_RESPONSE, 0);
    p.no_body = true;
    assert_int_equal(tg_http_feed(&p, m, strlen(m), &used), TG_HTTP_DONE);
}

static void test_response_interim(void **state)
{
    (void)state;
    struct outcome o =
        resp("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n"
             "HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nz");
    assert_int_equal(o.rc, TG_HTTP_DONE);
    assert_int_equal(o.status, 201);
    assert_true(o.body == 1);
    o = resp("HTTP/1.1 101 Switching Protocols\r\n\r\n");
    assert_int_equal(o.rc, TG_HTTP_ERROR);
    assert_int_equal(o.error, TG_HTTP_E_STATUS);
}

static void test_response_chunked(void **state)
{
    (void)state;
    const char *m =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n1A;ext=\"v\"\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: x\r\n\r\n";
    struct outcome o = resp(m);
    assert_int_equal(o.rc, TG_HTTP_DONE);
    assert_int_equal(o.used, strlen(m));
    assert_true(o.body == 31);
    assert_true(o.keep_alive);
    o = resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n");
    assert_int_equal(o.rc, TG_HTTP_DONE);
    assert_true(o.body == 0);
    o = resp("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n");
    assert_int_equal(o.rc, TG_HTTP_DONE);
    assert_true(o.body == 3);

    static const char *const bad[] = {
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\rX",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\n",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++) {
        o = resp(bad[i]);
        assert_int_equal(o.rc, TG_HTTP_ERROR);
        assert_int_equal(o.error, TG_HTTP_E_CHUNK);
    }
}

static void test_response_until_eof(void **state)
{
    (void)state;
    /* no Content-Length: the body runs to the close */
    const char *m = "HTTP/1.0 200 ok\r\nContent-type: text/html\r\n\r\n<html>body</html>";
    struct outcome o = resp(m);
    assert_int_equal(o.rc, TG_HTTP_MORE);
    o = resp_eof(m);
    assert_int_equal(o.rc, TG_HTTP_DONE);
    assert_true(o.body == 17);
    assert_false(o.keep_alive);
    /* EOF inside a Content-Length body, inside the head, before anything */
    o = resp_eof("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    assert_int_equal(o.rc, TG_HTTP_ERROR);
    assert_int_equal(o.error, TG_HTTP_E_TRUNCATED);
    o = resp_eof("HTTP/1.1 200 OK\r\nContent-Le");
    assert_int_equal(o.error, TG_HTTP_E_TRUNCATED);
    struct tg_http_parser p;
    tg_http_init(&p, TG_HTTP_RESPONSE, 0);
    assert_int_equal(tg_http_eof(&p), TG_HTTP_ERROR);
    assert_int_equal(p.error, TG_HTTP_E_EMPTY);
}

static void test_response_bad_status_line(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "HTTP/2 200 OK\r\n\r\n",    "HTTP/1.1 20 OK\r\n\r\n",      "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 abc\r\n\r\n",     "XTTP/1.1 200 OK\r\n\r\n",     "HTTP/1.1  200 OK\r\n\r\n",
        "http/1.1 200 OK\r\n\r\n",  "HTTP/1.2 200 OK\r\n\r\n",     "HTTP/1.1 200 OK\rX\n\r\n",
        "HTTP/1.1 099 Low\r\n\r\n", "\r\nHTTP/1.1 200 OK\r\n\r\n", "SSH-2.0-OpenSSH_9.2\r\n",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++) {
        struct outcome o = resp(bad[i]);
        if (o.rc != TG_HTTP_ERROR || o.error != TG_HTTP_E_START_LINE)
            fail_msg("case %zu: rc %d error %d", i, o.rc, o.error);
    }
}

static void test_response_content_length(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++) {
        struct outcome o = resp(bad[i]);
        if (o.rc != TG_HTTP_ERROR || o.error != TG_HTTP_E_CONTENT_LENGTH)
            fail_msg("case %zu: rc %d error %d", i, o.rc, o.error);
    }
    /* the same value twice is fine */
    struct outcome o = resp("HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nok");
    assert_int_equal(o.rc, TG_HTTP_DONE);
    /* a header that merely starts like Content-Length is just a header */
    o = resp(
        "HTTP/1.1 200 OK\r\nContent-Lengthy: x\r\nContent-Len: y\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(o.rc, TG_HTTP_DONE);
}

static void test_response_transfer_coding(void **state)
{
    (void)state;
    struct outcome o =
        resp("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_int_equal(o.rc, TG_HTTP_ERROR);
    assert_int_equal(o.error, TG_HTTP_E_TRANSFER_CODING);
    o = resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
    assert_int_equal(o.error, TG_HTTP_E_TRANSFER_CODING);
    o = resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
    assert_int_equal(o.error, TG_HTTP_E_TRANSFER_CODING);
    o = resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: averyveryverylongcodingname\r\n\r\n");
    assert_int_equal(o.error, TG_HTTP_E_TRANSFER_CODING);
}

static void test_response_connection(void **state)
{
    (void)state;
    struct outcome o = resp("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(o.rc, TG_HTTP_DONE);
    assert_false(o.keep_alive);
    o = resp("HTTP/1.1 200 OK\r\nConnection: Upgrade, CLOSE\r\nContent-Length: 0\r\n\r\n");
    assert_false(o.keep_alive);
    o = resp("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_false(o.keep_alive);
    o = resp("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n");
    assert_true(o.keep_alive);
    o = resp("HTTP/1.1 200 OK\r\nConnection: keep-alive-ish\r\nContent-Length: 0\r\n\r\n");
    assert_true(o.keep_alive);
}

static void test_response_header_syntax(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "HTTP/1.1 200 OK\r\n Folded: x\r\n\r\n",    /* obs-fold */
        "HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n", /* space in name */
        "HTTP/1.1 200 OK\r\nName : v\r\n\r\n",      /* space before ':' */
        "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",       /* CR inside a line */
        "HTTP/1.1 200 OK\r\nX: a\x01\r\n\r\n",      /* control character */
        "HTTP/1.1 200 OK\r\n\rX",                   /* CR not followed by LF */
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++) {
        struct outcome o = resp(bad[i]);
        if (o.rc != TG_HTTP_ERROR || o.error != TG_HTTP_E_HEADER)
            fail_msg("case %zu: rc %d error %d", i, o.rc, o.error);
    }
}

static void test_head_limit(void **state)
{
    (void)state;
    struct tg_http_parser p;
    size_t used;
    char big[300];
    memset(big, 'a', sizeof(big));
    tg_http_init(&p, TG_HTTP_RESPONSE, 256);
    const char *h = "HTTP/1.1 200 OK\r\nX: ";
    assert_int_equal(tg_http_feed(&p, h, strlen(h), &used), TG_HTTP_MORE);
    assert_int_equal(tg_http_feed(&p, big, sizeof(big), &used), TG_HTTP_ERROR);
    assert_int_equal(p.error, TG_HTTP_E_TOO_LARGE);
    /* errors are sticky */
    assert_int_equal(tg_http_feed(&p, "\r\n", 2, &used), TG_HTTP_ERROR);
    assert_int_equal(tg_http_eof(&p), TG_HTTP_ERROR);
    assert_non_null(tg_http_strerror(p.error));
    /* a large body is not limited by the head limit */
    tg_http_init(&p, TG_HTTP_RESPONSE, 64);
    const char *m = "HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n";
    assert_int_equal(tg_http_feed(&p, m, strlen(m), &used), TG_HTTP_MORE);
    assert_int_equal(tg_http_feed(&p, big, sizeof(big), &used), TG_HTTP_DONE);
    assert_int_equal(used, 300);
}

/* ------------------------------------------------------------------------- */

static void test_request(void **state)
{
    (void)state;
    const char *m = "GET /path?q=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: tlsgate-bench\r\n\r\n";
    struct outcome o = req(m);
    assert_int_equal(o.rc, TG_HTTP_DONE);
    assert_int_equal(o.used, strlen(m));
    assert_true(o.keep_alive);
    o = req("POST / HTTP/1.1\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody");
    assert_int_equal(o.rc, TG_HTTP_DONE);
    assert_true(o.body == 4);
    assert_false(o.keep_alive);
    o = req("GET / HTTP/1.0\r\n\r\n");
    assert_int_equal(o.rc, TG_HTTP_DONE);
    assert_false(o.keep_alive);
    o = req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_true(o.keep_alive);
    /* empty lines before a request are ignored (RFC 9112 2.2) */
    o = req("\r\n\r\nGET / HTTP/1.1\r\n\r\n");
    assert_int_equal(o.rc, TG_HTTP_DONE);
    o = req("PUT /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n");
    assert_int_equal(o.rc, TG_HTTP_DONE);
    assert_true(o.body == 4);
}

static void test_request_pipelined(void **state)
{
    (void)state;
    const char *m =
        "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\n"
        "okGET /c HTTP/1.1\r\n\r\n";
    size_t len = strlen(m), off = 0, used;
    int n = 0;
    struct tg_http_parser p;
    tg_http_init(&p, TG_HTTP_REQUEST, 0);
    while (off < len) {
        int rc = tg_http_feed(&p, m + off, len - off, &used);
        assert_int_equal(rc, TG_HTTP_DONE);
        off += used;
        n++;
        tg_http_init(&p, TG_HTTP_REQUEST, 0);
    }
    assert_int_equal(n, 3);
}

static void test_request_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "GET  / HTTP/1.1\r\n\r\n",  "GET / HTTP/2.0\r\n\r\n",
        "G(T / HTTP/1.1\r\n\r\n",   "GET /\r\n\r\n",
        "GET / HTTP/1.1 x\r\n\r\n", "GET /a\x7f HTTP/1.1\r\n\r\n",
        " GET / HTTP/1.1\r\n\r\n",  "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++) {
        struct outcome o = req(bad[i]);
        if (o.rc != TG_HTTP_ERROR || o.error != TG_HTTP_E_START_LINE)
            fail_msg("case %zu: rc %d error %d", i, o.rc, o.error);
    }
    struct outcome o = req("POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n");
    assert_int_equal(o.error, TG_HTTP_E_CONTENT_LENGTH);
    /* a request without a body ends at the empty line; EOF before it is truncation */
    struct tg_http_parser p;
    size_t used;
    tg_http_init(&p, TG_HTTP_REQUEST, 0);
    assert_int_equal(tg_http_feed(&p, "GET / HT", 8, &used), TG_HTTP_MORE);
    assert_true(tg_http_started(&p));
    assert_int_equal(tg_http_eof(&p), TG_HTTP_ERROR);
    assert_int_equal(p.error, TG_HTTP_E_TRUNCATED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_response_complete),
        cmocka_unit_test(test_response_extra_bytes),
        cmocka_unit_test(test_response_no_body_statuses),
        cmocka_unit_test(test_response_interim),
        cmocka_unit_test(test_response_chunked),
        cmocka_unit_test(test_response_until_eof),
        cmocka_unit_test(test_response_bad_status_line),
        cmocka_unit_test(test_response_content_length),
        cmocka_unit_test(test_response_transfer_coding),
        cmocka_unit_test(test_response_connection),
        cmocka_unit_test(test_response_header_syntax),
        cmocka_unit_test(test_head_limit),
        cmocka_unit_test(test_request),
        cmocka_unit_test(test_request_pipelined),
        cmocka_unit_test(test_request_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
