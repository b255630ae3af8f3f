/*
 * tg_bench_http: a streaming HTTP/1.x framing parser (contract in
 * tg_bench_internal.h). It walks each byte of the head once with a small
 * state machine and keeps only what framing needs, so neither the load
 * generator nor the upstream server buffers a request or a response: the
 * bytes are parsed straight out of the shared read buffer. Bodies are skipped
 * in bulk.
 */
#include "bench/tg_bench_internal.h"

#include <string.h>

enum {
    ST_START,      /* first byte of a message */
    ST_RS_VERSION, /* response: matching "HTTP/1." */
    ST_RS_MINOR,   /* response: the digit after "HTTP/1." */
    ST_RS_SP,      /* response: SP before the status code */
    ST_RS_CODE,    /* response: three digits */
    ST_RS_AFTER,   /* response: SP + reason, or end of line */
    ST_RS_REASON,  /* response: reason phrase up to the end of line */
    ST_RQ_METHOD,  /* request: method token */
    ST_RQ_TARGET,  /* request: request-target */
    ST_RQ_VERSION, /* request: matching "HTTP/1." */
    ST_RQ_MINOR,   /* request: digit */
    ST_RQ_EOL,     /* request: CR or LF after the version */
    ST_SL_LF,      /* start line: CR seen, LF expected */
    ST_H_START,    /* first byte of a header line, or of the empty line */
    ST_H_NAME,     /* field name */
    ST_H_OWS,      /* whitespace after ':' */
    ST_H_VALUE,    /* field value */
    ST_H_LF,       /* header line: CR seen, LF expected */
    ST_H_END_LF,   /* empty line: CR seen, LF expected */
    ST_C_SIZE0,    /* chunk size: first hex digit */
    ST_C_SIZE,     /* chunk size: more hex digits */
    ST_C_EXT,      /* chunk extension, ignored up to the end of line */
    ST_C_SIZE_LF,  /* chunk size line: CR seen */
    ST_C_DATA,     /* chunk data (bulk) */
    ST_C_DATA_CR,  /* CRLF after chunk data */
    ST_C_DATA_LF,  /* CR seen after chunk data */
    ST_T_START,    /* trailer line or final empty line */
    ST_T_LINE,     /* trailer field, ignored */
    ST_T_LINE_LF,  /* trailer line: CR seen */
    ST_T_END_LF,   /* final empty line: CR seen */
    ST_B_CL,       /* Content-Length body (bulk) */
    ST_B_EOF,      /* body until the connection closes (bulk) */
    ST_DONE,
    ST_ERROR,
};

/* Interesting header names, as bits while the name is being matched. */
enum { HDR_CL = 1, HDR_TE = 2, HDR_CONN = 4 };
static const char *const tg_hdr_names[] = {"content-length", "transfer-encoding", "connection"};

static const char tg_http_version[] = "HTTP/1.";

#define TG_HTTP_DEFAULT_HEAD_LIMIT (64u * 1024u)

void tg_http_init(struct tg_http_parser *p, enum tg_http_kind kind, uint32_t head_limit)
{
    memset(p, 0, sizeof(*p));
    p->kind = (uint8_t)kind;
    p->state = ST_START;
    p->head_limit = head_limit ? head_limit : TG_HTTP_DEFAULT_HEAD_LIMIT;
}

const char *tg_http_strerror(enum tg_http_error e)
{
    switch (e) {
    case TG_HTTP_OK:
        return "ok";
    case TG_HTTP_E_START_LINE:
        return "malformed start line";
    case TG_HTTP_E_HEADER:
        return "malformed header";
    case TG_HTTP_E_CONTENT_LENGTH:
        return "invalid Content-Length";
    case TG_HTTP_E_TRANSFER_CODING:
        return "unsupported Transfer-Encoding";
    case TG_HTTP_E_TOO_LARGE:
        return "header section too large";
    case TG_HTTP_E_CHUNK:
        return "malformed chunked body";
    case TG_HTTP_E_TRUNCATED:
        return "connection closed inside the message";
    case TG_HTTP_E_EMPTY:
        return "connection closed before any byte";
    case TG_HTTP_E_STATUS:
        return "unexpected status";
    }
    return "?";
}

static bool tg_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static unsigned char tg_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static int tg_http_fail(struct tg_http_parser *p, enum tg_http_error e)
{
    p->state = ST_ERROR;
    p->error = e;
    return TG_HTTP_ERROR;
}

/* A token of Connection or Transfer-Encoding ended. */
static void tg_http_token_end(struct tg_http_parser *p)
{
    if (p->toklen == 0 && !p->tok_overflow)
        return;
    p->tok[p->toklen] = '\0';
    bool known = !p->tok_overflow;
    if (p->hdr == HDR_TE) {
        /* chunked must be the last coding; anything else is unsupported */
        if (p->chunked || !known || strcmp(p->tok, "chunked") != 0)
            p->te_other = true;
        else
            p->chunked = true;
    } else if (p->hdr == HDR_CONN && known) {
        if (strcmp(p->tok, "close") == 0)
            p->conn_close = true;
        else if (strcmp(p->tok, "keep-alive") == 0)
            p->conn_keepalive = true;
    }
    p->toklen = 0;
    p->tok_overflow = false;
}

/* The value of the current header line ended. */
static int tg_http_value_end(struct tg_http_parser *p)
{
    if (p->hdr == HDR_CL) {
        if (!p->cl_seen_digit)
            return tg_http_fail(p, TG_HTTP_E_CONTENT_LENGTH);
        if (p->has_cl && p->content_length != p->cur_cl)
            return tg_http_fail(p, TG_HTTP_E_CONTENT_LENGTH);
        p->has_cl = true;
        p->content_length = p->cur_cl;
    } else if (p->hdr == HDR_TE || p->hdr == HDR_CONN) {
        tg_http_token_end(p);
    }
    p->hdr = 0;
    return TG_HTTP_MORE;
}

static int tg_http_value_byte(struct tg_http_parser *p, unsigned char c)
{
    if (p->hdr == HDR_CL) {
        if (c >= '0' && c <= '9') {
            unsigned d = (unsigned)(c - '0');
            if (p->pos != 0) /* a digit after trailing whitespace: "1 2" */
                return tg_http_fail(p, TG_HTTP_E_CONTENT_LENGTH);
            if (p->cur_cl > (UINT64_MAX / 4 - d) / 10) /* absurd: refuse long before overflow */
                return tg_http_fail(p, TG_HTTP_E_CONTENT_LENGTH);
            p->cur_cl = p->cur_cl * 10 + d;
            p->cl_seen_digit = true;
        } else if (c == ' ' || c == '\t') {
            p->pos = 1;
        } else {
            return tg_http_fail(p, TG_HTTP_E_CONTENT_LENGTH);
        }
    } else if (p->hdr == HDR_TE || p->hdr == HDR_CONN) {
        if (c == ',' || c == ' ' || c == '\t') {
            tg_http_token_end(p);
        } else if ((size_t)p->toklen + 1 < sizeof(p->tok)) {
            p->tok[p->toklen++] = (char)tg_lower(c);
        } else {
            p->tok_overflow = true;
        }
    } else if (c < 0x20 && c != '\t') {
        return tg_http_fail(p, TG_HTTP_E_HEADER);
    }
    return TG_HTTP_MORE;
}

/* The empty line after the headers: decide how the body is framed. */
static int tg_http_head_end(struct tg_http_parser *p)
{
    if (p->te_other || (p->chunked && p->has_cl))
        return tg_http_fail(p, TG_HTTP_E_TRANSFER_CODING);
    if (p->kind == TG_HTTP_RESPONSE) {
        if (p->status == 101)
            return tg_http_fail(p, TG_HTTP_E_STATUS);
        if (p->status < 200) {
            /* interim response: the real one follows */
            bool no_body = p->no_body;
            uint32_t limit = p->head_limit;
            tg_http_init(p, TG_HTTP_RESPONSE, limit);
            p->no_body = no_body;
            return TG_HTTP_MORE;
        }
        if (p->no_body || p->status == 204 || p->status == 304) {
            p->state = ST_DONE;
            return TG_HTTP_DONE;
        }
    }
    if (p->chunked) {
        p->state = ST_C_SIZE0;
        p->head_bytes = 0; /* each chunk line gets its own allowance */
    } else if (p->has_cl) {
        p->remaining = p->content_length;
        p->state = p->remaining ? ST_B_CL : ST_DONE;
    } else if (p->kind == TG_HTTP_RESPONSE) {
        p->until_eof = true;
        p->state = ST_B_EOF;
    } else {
        p->state = ST_DONE;
    }
    return p->state == ST_DONE ? TG_HTTP_DONE : TG_HTTP_MORE;
}

static int tg_hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tg_lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* One byte of a head, chunk framing or trailer. */
static int tg_http_step(struct tg_http_parser *p, unsigned char c)
{
    /* Every byte that is not bulk body counts: the head, each chunk-size line
     * (reset per chunk) and the trailers, so no line can grow without bound. */
    if (++p->head_bytes > p->head_limit)
        return tg_http_fail(p, TG_HTTP_E_TOO_LARGE);
    switch (p->state) {
    case ST_START:
        if (p->kind == TG_HTTP_REQUEST) {
            if (c == '\r' || c == '\n') /* RFC 9112 2.2: ignore empty lines before */
                return TG_HTTP_MORE;
            if (!tg_is_tchar(c))
                return tg_http_fail(p, TG_HTTP_E_START_LINE);
            p->state = ST_RQ_METHOD;
            return TG_HTTP_MORE;
        }
        p->state = ST_RS_VERSION;
        p->pos = 0;
        /* fall through */
    case ST_RS_VERSION:
    case ST_RQ_VERSION:
        if (c != (unsigned char)tg_http_version[p->pos])
            return tg_http_fail(p, TG_HTTP_E_START_LINE);
        if (++p->pos == sizeof(tg_http_version) - 1)
            p->state = p->state == ST_RS_VERSION ? ST_RS_MINOR : ST_RQ_MINOR;
        return TG_HTTP_MORE;
    case ST_RS_MINOR:
    case ST_RQ_MINOR:
        if (c != '0' && c != '1')
            return tg_http_fail(p, TG_HTTP_E_START_LINE);
        p->http_minor = (uint8_t)(c - '0');
        p->state = p->state == ST_RS_MINOR ? ST_RS_SP : ST_RQ_EOL;
        return TG_HTTP_MORE;
    case ST_RS_SP:
        if (c != ' ')
            return tg_http_fail(p, TG_HTTP_E_START_LINE);
        p->state = ST_RS_CODE;
        p->pos = 0;
        p->status = 0;
        return TG_HTTP_MORE;
    case ST_RS_CODE:
        if (c < '0' || c > '9')
            return tg_http_fail(p, TG_HTTP_E_START_LINE);
        p->status = (uint16_t)(p->status * 10 + (c - '0'));
        if (++p->pos == 3) {
            if (p->status < 100)
                return tg_http_fail(p, TG_HTTP_E_START_LINE);
            p->state = ST_RS_AFTER;
        }
        return TG_HTTP_MORE;
    case ST_RS_AFTER:
        if (c == ' ') {
            p->state = ST_RS_REASON;
        } else if (c == '\r') {
            p->state = ST_SL_LF;
        } else if (c == '\n') {
            p->state = ST_H_START;
        } else {
            return tg_http_fail(p, TG_HTTP_E_START_LINE);
        }
        return TG_HTTP_MORE;
    case ST_RS_REASON:
        if (c == '\r')
            p->state = ST_SL_LF;
        else if (c == '\n')
            p->state = ST_H_START;
        else if (c < 0x20 && c != '\t')
            return tg_http_fail(p, TG_HTTP_E_START_LINE);
        return TG_HTTP_MORE;
    case ST_RQ_METHOD:
        if (c == ' ') {
            p->state = ST_RQ_TARGET;
            p->pos = 0;
        } else if (!tg_is_tchar(c)) {
            return tg_http_fail(p, TG_HTTP_E_START_LINE);
        }
        return TG_HTTP_MORE;
    case ST_RQ_TARGET:
        if (c == ' ' && p->pos > 0) {
            p->state = ST_RQ_VERSION;
            p->pos = 0;
        } else if (c <= 0x20 || c >= 0x7f) {
            return tg_http_fail(p, TG_HTTP_E_START_LINE);
        } else {
            p->pos = 1;
        }
        return TG_HTTP_MORE;
    case ST_RQ_EOL:
        if (c == '\r')
            p->state = ST_SL_LF;
        else if (c == '\n')
            p->state = ST_H_START;
        else
            return tg_http_fail(p, TG_HTTP_E_START_LINE);
        return TG_HTTP_MORE;
    case ST_SL_LF:
        if (c != '\n')
            return tg_http_fail(p, TG_HTTP_E_START_LINE);
        p->state = ST_H_START;
        return TG_HTTP_MORE;
    case ST_H_START:
        if (c == '\r') {
            p->state = ST_H_END_LF;
            return TG_HTTP_MORE;
        }
        if (c == '\n')
            return tg_http_head_end(p);
        if (!tg_is_tchar(c)) /* includes obs-fold (SP/HT at line start) */
            return tg_http_fail(p, TG_HTTP_E_HEADER);
        p->state = ST_H_NAME;
        p->hdr = HDR_CL | HDR_TE | HDR_CONN;
        p->pos = 0;
        /* fall through */
    case ST_H_NAME:
        if (c == ':') {
            unsigned id = 0;
            for (unsigned i = 0; i < 3; i++) {
                if ((p->hdr & (1u << i)) && strlen(tg_hdr_names[i]) == p->pos)
                    id = 1u << i;
            }
            p->hdr = (uint8_t)id;
            p->pos = 0;
            p->cur_cl = 0;
            p->cl_seen_digit = false;
            p->toklen = 0;
            p->tok_overflow = false;
            p->state = ST_H_OWS;
            return TG_HTTP_MORE;
        }
        if (!tg_is_tchar(c))
            return tg_http_fail(p, TG_HTTP_E_HEADER);
        if (p->hdr != 0) {
            unsigned char l = tg_lower(c);
            for (unsigned i = 0; i < 3; i++) {
                const char *n = tg_hdr_names[i];
                if ((p->hdr & (1u << i)) && (p->pos >= strlen(n) || (unsigned char)n[p->pos] != l))
                    p->hdr = (uint8_t)(p->hdr & ~(1u << i));
            }
            p->pos++;
        }
        return TG_HTTP_MORE;
    case ST_H_OWS:
        if (c == ' ' || c == '\t')
            return TG_HTTP_MORE;
        p->state = ST_H_VALUE;
        /* fall through */
    case ST_H_VALUE:
        if (c == '\r' || c == '\n') {
            if (tg_http_value_end(p) < 0)
                return TG_HTTP_ERROR;
            p->state = c == '\r' ? ST_H_LF : ST_H_START;
            return TG_HTTP_MORE;
        }
        return tg_http_value_byte(p, c);
    case ST_H_LF:
        if (c != '\n')
            return tg_http_fail(p, TG_HTTP_E_HEADER);
        p->state = ST_H_START;
        return TG_HTTP_MORE;
    case ST_H_END_LF:
        if (c != '\n')
            return tg_http_fail(p, TG_HTTP_E_HEADER);
        return tg_http_head_end(p);
    case ST_C_SIZE0:
    case ST_C_SIZE: {
        int h = tg_hex(c);
        if (h >= 0) {
            if (p->remaining > (UINT64_MAX >> 8)) /* > 2^56: refuse */
                return tg_http_fail(p, TG_HTTP_E_CHUNK);
            p->remaining = p->remaining * 16 + (uint64_t)h;
            p->state = ST_C_SIZE;
            return TG_HTTP_MORE;
        }
        if (p->state == ST_C_SIZE0)
            return tg_http_fail(p, TG_HTTP_E_CHUNK);
        if (c == ';' || c == ' ' || c == '\t') {
            p->state = ST_C_EXT;
            return TG_HTTP_MORE;
        }
    }
        /* fall through */
    case ST_C_EXT:
        if (c == '\r') {
            p->state = ST_C_SIZE_LF;
            return TG_HTTP_MORE;
        }
        if (c != '\n') {
            if (p->state == ST_C_EXT && (c >= 0x20 || c == '\t'))
                return TG_HTTP_MORE;
            return tg_http_fail(p, TG_HTTP_E_CHUNK);
        }
        /* fall through */
    case ST_C_SIZE_LF:
        if (c != '\n')
            return tg_http_fail(p, TG_HTTP_E_CHUNK);
        if (p->remaining == 0) {
            p->state = ST_T_START;
            p->head_bytes = 0;
        } else {
            p->state = ST_C_DATA;
        }
        return TG_HTTP_MORE;
    case ST_C_DATA_CR:
        if (c == '\r') {
            p->state = ST_C_DATA_LF;
            return TG_HTTP_MORE;
        }
        /* fall through */
    case ST_C_DATA_LF:
        if (c != '\n')
            return tg_http_fail(p, TG_HTTP_E_CHUNK);
        p->state = ST_C_SIZE0;
        p->head_bytes = 0;
        return TG_HTTP_MORE;
    case ST_T_START:
        if (c == '\r') {
            p->state = ST_T_END_LF;
            return TG_HTTP_MORE;
        }
        if (c == '\n') {
            p->state = ST_DONE;
            return TG_HTTP_DONE;
        }
        if (!tg_is_tchar(c))
            return tg_http_fail(p, TG_HTTP_E_CHUNK);
        p->state = ST_T_LINE;
        return TG_HTTP_MORE;
    case ST_T_LINE:
        if (c == '\r')
            p->state = ST_T_LINE_LF;
        else if (c == '\n')
            p->state = ST_T_START;
        return TG_HTTP_MORE;
    case ST_T_LINE_LF:
        if (c != '\n')
            return tg_http_fail(p, TG_HTTP_E_CHUNK);
        p->state = ST_T_START;
        return TG_HTTP_MORE;
    case ST_T_END_LF:
        if (c != '\n')
            return tg_http_fail(p, TG_HTTP_E_CHUNK);
        p->state = ST_DONE;
        return TG_HTTP_DONE;
    default:
        return tg_http_fail(p, TG_HTTP_E_HEADER);
    }
}

int tg_http_feed(struct tg_http_parser *p, const char *data, size_t n, size_t *used)
{
    const unsigned char *d = (const unsigned char *)data;
    size_t i = 0;
    *used = 0;
    if (p->state == ST_ERROR)
        return TG_HTTP_ERROR;
    if (p->state == ST_DONE)
        return TG_HTTP_DONE;
    while (i < n) {
        size_t avail = n - i, take;
        switch (p->state) {
        case ST_B_CL:
        case ST_C_DATA:
            take = p->remaining < avail ? (size_t)p->remaining : avail;
            p->remaining -= take;
            p->body_bytes += take;
            i += take;
            if (p->remaining == 0) {
                if (p->state == ST_C_DATA) {
                    p->state = ST_C_DATA_CR;
                } else {
                    p->state = ST_DONE;
                    *used = i;
                    return TG_HTTP_DONE;
                }
            }
            break;
        case ST_B_EOF:
            p->body_bytes += avail;
            i = n;
            break;
        default: {
            int rc = tg_http_step(p, d[i++]);
            if (rc == TG_HTTP_ERROR)
                return TG_HTTP_ERROR;
            if (rc == TG_HTTP_DONE) {
                *used = i;
                return TG_HTTP_DONE;
            }
            break;
        }
        }
    }
    *used = n;
    return TG_HTTP_MORE;
}

bool tg_http_started(const struct tg_http_parser *p)
{
    return p->state != ST_START || p->head_bytes > 0;
}

int tg_http_eof(struct tg_http_parser *p)
{
    if (p->state == ST_DONE)
        return TG_HTTP_DONE;
    if (p->state == ST_ERROR)
        return TG_HTTP_ERROR;
    if (p->state == ST_B_EOF) {
        p->state = ST_DONE;
        return TG_HTTP_DONE;
    }
    return tg_http_fail(p, tg_http_started(p) ? TG_HTTP_E_TRUNCATED : TG_HTTP_E_EMPTY);
}

bool tg_http_keep_alive(const struct tg_http_parser *p)
{
    if (p->state != ST_DONE || p->until_eof || p->conn_close)
        return false;
    return p->http_minor >= 1 || p->conn_keepalive;
}
