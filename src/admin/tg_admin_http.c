#include "admin/tg_admin_http.h"

#include <stdbool.h>
#include <string.h>

/* Longest method token we bother to read; real ones are <= 7 bytes. */
#define TG_ADMIN_METHOD_MAX 32

enum tg_http_state {
    S_METHOD,
    S_TARGET,
    S_VERSION,
    S_RL_LF,     /* request line: saw CR, want LF */
    S_HDR_START, /* at the start of a header line (or the blank line) */
    S_HDR_NAME,
    S_HDR_VALUE,
    S_HDR_LF, /* header line: saw CR, want LF */
    S_END_LF, /* blank line: saw CR, want LF */
};

/* RFC 9110 tchar. */
static bool tg_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int tg_fail(struct tg_admin_req *out, int status, const char *why)
{
    out->status = status;
    out->error = why;
    out->head_len = 0;
    return TG_ADMIN_PARSE_ERROR;
}

static bool tg_ieq(const char *a, size_t alen, const char *lit)
{
    size_t n = strlen(lit);
    if (alen != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)lit[i];
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x - 'A' + 'a');
        if (x != y)
            return false;
    }
    return true;
}

/* Case-insensitive prefix test (schemes). */
static bool tg_iprefix(const char *a, size_t alen, const char *lit)
{
    size_t n = strlen(lit);
    return alen >= n && tg_ieq(a, n, lit);
}

/*
 * Resolve request-target into a route. Origin-form "/path[?query]",
 * absolute-form "http[s]://authority[/path][?query]", or "*" (only
 * meaningful for OPTIONS, which gets 405 anyway).
 */
static int tg_route(const char *t, size_t n, struct tg_admin_req *out)
{
    const char *path;
    size_t plen;
    if (memchr(t, '#', n) != NULL)
        return tg_fail(out, 400, "fragment in request-target");
    if (t[0] == '/') {
        path = t;
        plen = n;
    } else if (n == 1 && t[0] == '*') {
        if (out->method != TG_ADMIN_M_OTHER)
            return tg_fail(out, 400, "asterisk-form with GET/HEAD");
        out->route = TG_ADMIN_R_UNKNOWN;
        return 0;
    } else {
        size_t skip;
        if (tg_iprefix(t, n, "http://"))
            skip = 7;
        else if (tg_iprefix(t, n, "https://"))
            skip = 8;
        else
            return tg_fail(out, 400, "bad request-target form");
        size_t a = skip;
        while (a < n && t[a] != '/' && t[a] != '?')
            a++;
        if (a == skip)
            return tg_fail(out, 400, "absolute-form without authority");
        path = t + a;
        plen = n - a;
    }
    const char *q = memchr(path, '?', plen);
    if (q != NULL)
        plen = (size_t)(q - path);
    if (plen == 0 || (plen == 1 && path[0] == '/'))
        out->route = TG_ADMIN_R_INDEX;
    else if (plen == 6 && memcmp(path, "/stats", 6) == 0)
        out->route = TG_ADMIN_R_STATS;
    else if (plen == 6 && memcmp(path, "/ready", 6) == 0)
        out->route = TG_ADMIN_R_READY;
    else
        out->route = TG_ADMIN_R_UNKNOWN;
    return 0;
}

int tg_admin_parse_request(const char *buf, size_t len, struct tg_admin_req *out)
{
    static const char http[] = "HTTP/";
    memset(out, 0, sizeof(*out));
    out->method = TG_ADMIN_M_OTHER;
    out->route = TG_ADMIN_R_UNKNOWN;

    size_t lim = len < TG_ADMIN_HEAD_MAX ? len : TG_ADMIN_HEAD_MAX;
    enum tg_http_state st = S_METHOD;
    size_t mlen = 0, tstart = 0, tlen = 0, vpos = 0, name_start = 0;
    int major = 0, hosts = 0;

    for (size_t i = 0; i < lim; i++) {
        unsigned char c = (unsigned char)buf[i];
        switch (st) {
        case S_METHOD:
            if (tg_tchar(c)) {
                if (++mlen > TG_ADMIN_METHOD_MAX)
                    return tg_fail(out, 400, "method too long");
            } else if (c == ' ' && mlen > 0) {
                if (mlen == 3 && memcmp(buf, "GET", 3) == 0)
                    out->method = TG_ADMIN_M_GET;
                else if (mlen == 4 && memcmp(buf, "HEAD", 4) == 0)
                    out->method = TG_ADMIN_M_HEAD;
                st = S_TARGET;
                tstart = i + 1;
            } else {
                return tg_fail(out, 400, "bad method");
            }
            break;
        case S_TARGET:
            if (c > 0x20 && c < 0x7f) {
                tlen++;
            } else if (c == ' ' && tlen > 0) {
                if (tg_route(buf + tstart, tlen, out) < 0)
                    return TG_ADMIN_PARSE_ERROR;
                st = S_VERSION;
            } else {
                return tg_fail(out, 400, "bad request-target");
            }
            break;
        case S_VERSION:
            if (vpos < 5) {
                if (c != (unsigned char)http[vpos])
                    return tg_fail(out, 400, "bad HTTP version");
            } else if (vpos == 5 || vpos == 7) {
                if (c < '0' || c > '9')
                    return tg_fail(out, 400, "bad HTTP version");
                if (vpos == 5) {
                    major = c - '0';
                } else {
                    out->version_minor = c - '0';
                    /* Well-formed but not ours: 505 rather than 400. */
                    if (major != 1 || out->version_minor > 1)
                        return tg_fail(out, 505, "HTTP version not supported");
                }
            } else if (vpos == 6) {
                if (c != '.')
                    return tg_fail(out, 400, "bad HTTP version");
            } else if (c == '\r') {
                st = S_RL_LF;
            } else if (c == '\n') {
                st = S_HDR_START;
            } else {
                return tg_fail(out, 400, "bad HTTP version");
            }
            vpos++;
            break;
        case S_RL_LF:
        case S_HDR_LF:
            if (c != '\n')
                return tg_fail(out, 400, "CR without LF");
            st = S_HDR_START;
            break;
        case S_HDR_START:
            if (c == '\r') {
                st = S_END_LF;
            } else if (c == '\n') {
                goto complete;
            } else if (tg_tchar(c)) {
                name_start = i;
                st = S_HDR_NAME;
            } else {
                /* SP/HTAB here is obs-fold (or whitespace before the first
                 * header): both are request-smuggling vectors; refuse. */
                return tg_fail(out, 400, "bad header line");
            }
            break;
        case S_HDR_NAME:
            if (c == ':') {
                if (tg_ieq(buf + name_start, i - name_start, "host"))
                    hosts++;
                st = S_HDR_VALUE;
            } else if (!tg_tchar(c)) {
                return tg_fail(out, 400, "bad header name");
            }
            break;
        case S_HDR_VALUE:
            /* field-vchar / obs-text / SP / HTAB; no other control byte. */
            if (c == '\t' || (c >= 0x20 && c != 0x7f))
                break;
            if (c == '\r')
                st = S_HDR_LF;
            else if (c == '\n')
                st = S_HDR_START;
            else
                return tg_fail(out, 400, "control byte in header value");
            break;
        case S_END_LF:
            if (c != '\n')
                return tg_fail(out, 400, "CR without LF");
            goto complete;
        }
        continue;
    complete:
        if (hosts > 1)
            return tg_fail(out, 400, "more than one Host header");
        if (out->version_minor == 1 && hosts == 0)
            return tg_fail(out, 400, "HTTP/1.1 request without Host");
        out->head_len = i + 1;
        return TG_ADMIN_PARSE_COMPLETE;
    }
    if (len >= TG_ADMIN_HEAD_MAX)
        return tg_fail(out, 431, "request head too large");
    return TG_ADMIN_PARSE_NEED_MORE;
}

const char *tg_admin_method_name(enum tg_admin_method m)
{
    switch (m) {
    case TG_ADMIN_M_GET:
        return "GET";
    case TG_ADMIN_M_HEAD:
        return "HEAD";
    case TG_ADMIN_M_OTHER:
        break;
    }
    return "OTHER";
}

const char *tg_admin_route_name(enum tg_admin_route r)
{
    switch (r) {
    case TG_ADMIN_R_INDEX:
        return "index";
    case TG_ADMIN_R_STATS:
        return "stats";
    case TG_ADMIN_R_READY:
        return "ready";
    case TG_ADMIN_R_UNKNOWN:
        break;
    }
    return "unknown";
}
