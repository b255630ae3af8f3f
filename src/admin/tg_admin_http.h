/*
 * tg_admin_http: the admin endpoint's request-head parser (internal to
 * src/admin; also driven by tests/unit/test_admin.c and fuzz/fuzz_admin_http.c).
 *
 * Pure: no I/O, no allocation, no global state; thread-safe. It re-parses
 * from the start on every call (the head is bounded to 8 KiB, so a call costs
 * a few microseconds: the same order as the read(2) that preceded it).
 *
 * Grammar accepted (RFC 9112, strict):
 *   request-line = method SP request-target SP "HTTP/" DIGIT "." DIGIT CRLF
 *   header-line  = field-name ":" OWS field-value OWS CRLF
 *   head         = request-line *header-line CRLF
 * Line ends are CRLF; a bare LF is also accepted (RFC 9112 2.2 allows it, and
 * `printf 'GET /ready HTTP/1.0\n\n' | nc` is how operators poke at it).
 * Methods are case-sensitive tokens: "get" is a method we do not implement
 * (405), not a spelling of GET. request-target is origin-form ("/stats?x")
 * or absolute-form ("http://host:9901/stats"); the query is ignored; a
 * fragment, a bare LF/CR/NUL or any control byte is rejected. HTTP/1.1
 * requests must carry exactly one Host header. obs-fold, whitespace before a
 * colon and empty field names are rejected.
 */
#ifndef TG_ADMIN_HTTP_H
#define TG_ADMIN_HTTP_H

#include <stddef.h>

/* Largest request head accepted (request line + headers + blank line). */
#define TG_ADMIN_HEAD_MAX 8192

enum tg_admin_method { TG_ADMIN_M_GET, TG_ADMIN_M_HEAD, TG_ADMIN_M_OTHER };

enum tg_admin_route {
    TG_ADMIN_R_INDEX,   /* "/" */
    TG_ADMIN_R_STATS,   /* "/stats" */
    TG_ADMIN_R_READY,   /* "/ready" */
    TG_ADMIN_R_UNKNOWN, /* anything else: 404 */
};

enum tg_admin_parse_rc {
    TG_ADMIN_PARSE_ERROR = -1,    /* out->status holds the response status */
    TG_ADMIN_PARSE_NEED_MORE = 0, /* valid so far; read more */
    TG_ADMIN_PARSE_COMPLETE = 1,  /* a whole head: method, route, head_len set */
};

struct tg_admin_req {
    enum tg_admin_method method;
    enum tg_admin_route route;
    int version_minor; /* 0 or 1 (major is always 1) */
    size_t head_len;   /* COMPLETE: bytes up to and including the blank line */
    int status;        /* ERROR: 400, 431 or 505; otherwise 0 */
    const char *error; /* ERROR: static text for the debug log; otherwise NULL */
};

/*
 * Parse the bytes received so far (buf need not be NUL-terminated and may
 * contain NULs). Only the first TG_ADMIN_HEAD_MAX bytes are examined; bytes
 * after a complete head (a body, a pipelined request) are not looked at.
 * Returns an enum tg_admin_parse_rc value. Errors are final: once a prefix
 * is an ERROR, every extension of it is too. A head that is still incomplete
 * at TG_ADMIN_HEAD_MAX bytes is an error with status 431.
 * out is always fully written.
 */
int tg_admin_parse_request(const char *buf, size_t len, struct tg_admin_req *out);

/* "GET", "HEAD", "OTHER" / "index", "stats", "ready", "unknown" (logs). */
const char *tg_admin_method_name(enum tg_admin_method m);
const char *tg_admin_route_name(enum tg_admin_route r);

/*
 * Test knob (internal): change the per-connection timeout (whole request,
 * default 5 s) and the lingering-close time (default 1 s) of a running server.
 * Loop thread only.
 */
struct tg_admin;
void tg_admin_set_timeouts(struct tg_admin *a, double conn_timeout_s, double linger_s);

#endif
