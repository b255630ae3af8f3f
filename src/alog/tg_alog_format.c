/*
 * tg_alog_format: a record -> one text or JSON line; the termination-code
 * table; addresses. Pure functions, run on the writer thread (and in tests):
 * no allocation, no locale, no stdio on the per-line path except inet_ntop
 * for IPv6.
 */
#include "alog/tg_alog.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <time.h>

/* Every string at its longest and escaped at its widest (JSON's \u00XX: six
 * bytes per byte), plus the fixed fields, fits in a line: nothing is cut. */
_Static_assert(TG_ALOG_S_COUNT *TG_ALOG_STR_MAX * 6 + 1536 <= TG_ALOG_LINE_MAX,
               "TG_ALOG_LINE_MAX too small for the worst line");
_Static_assert(TG_ALOG_S_COUNT <= 8, "the ring keeps one presence bit per string");

/* ---- termination codes ---- */

static const struct {
    const char *code;
    int counter;
    int detail;
} tg_alog_terms[] = {
#define TG_ALOG_TERM_ROW(id, code, counter, detail, meaning) {code, TG_STAT_##counter, detail},
    TG_ALOG_TERMS(TG_ALOG_TERM_ROW)
#undef TG_ALOG_TERM_ROW
};

const char *tg_alog_term_code(enum tg_alog_term t)
{
    return (unsigned)t < TG_ARRAY_LEN(tg_alog_terms) ? tg_alog_terms[t].code : "??";
}

enum tg_alog_term tg_alog_term_of(int counter, int detail)
{
    for (size_t i = 0; i < TG_ARRAY_LEN(tg_alog_terms); i++) {
        if (tg_alog_terms[i].counter == counter &&
            (tg_alog_terms[i].detail == TG_ALOG_ANY || tg_alog_terms[i].detail == detail))
            return (enum tg_alog_term)i;
    }
    return TG_ALOG_TERM_INTERNAL;
}

/* ---- addresses ---- */

void tg_alog_addr_set(struct tg_alog_addr *a, const struct sockaddr *sa, socklen_t len)
{
    memset(a, 0, sizeof(*a));
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        a->family = AF_INET;
        a->port = ntohs(s4->sin_port);
        memcpy(a->ip, &s4->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        a->family = AF_INET6;
        a->port = ntohs(s6->sin6_port);
        memcpy(a->ip, &s6->sin6_addr, 16);
    }
}

/* ---- output cursor ---- */

/* Writes never pass end; a line that would (it cannot: every string is at
 * most TG_ALOG_STR_MAX bytes and TG_ALOG_LINE_MAX allows for all of them
 * escaped) is cut, never overrun. */
struct tg_alog_out {
    char *p;
    char *end; /* one byte kept for the '\n' */
};

static void tg_out_mem(struct tg_alog_out *o, const char *s, size_t n)
{
    size_t room = (size_t)(o->end - o->p);
    if (n > room)
        n = room;
    memcpy(o->p, s, n);
    o->p += n;
}

static void tg_out_lit(struct tg_alog_out *o, const char *s)
{
    tg_out_mem(o, s, strlen(s));
}

static void tg_out_ch(struct tg_alog_out *o, char c)
{
    if (o->p < o->end)
        *o->p++ = c;
}

static void tg_out_u64(struct tg_alog_out *o, uint64_t v)
{
    char buf[24];
    size_t i = sizeof(buf);
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    tg_out_mem(o, buf + i, sizeof(buf) - i);
}

/* Nanoseconds as milliseconds with three decimals (microsecond resolution). */
static void tg_out_ms(struct tg_alog_out *o, uint64_t ns)
{
    uint64_t us = ns / 1000;
    unsigned frac = (unsigned)(us % 1000);
    tg_out_u64(o, us / 1000);
    char buf[4] = {'.', (char)('0' + frac / 100), (char)('0' + frac / 10 % 10),
                   (char)('0' + frac % 10)};
    tg_out_mem(o, buf, sizeof(buf));
}

static const char tg_hex[] = "0123456789abcdef";

static void tg_out_2d(struct tg_alog_out *o, unsigned v)
{
    tg_out_ch(o, (char)('0' + v / 10 % 10));
    tg_out_ch(o, (char)('0' + v % 10));
}

/* RFC 3339, UTC, milliseconds: 2026-12-02T06:03:04.123Z. */
static void tg_out_time(struct tg_alog_out *o, uint64_t ns, struct tg_alog_clock *clk)
{
    int64_t sec = (int64_t)(ns / 1000000000ULL);
    unsigned ms = (unsigned)(ns / 1000000ULL % 1000);
    if (clk->sec != sec) {
        time_t t = (time_t)sec;
        struct tm tm;
        struct tg_alog_out d = {clk->ymdhms, clk->ymdhms + sizeof(clk->ymdhms) - 1};
        if (gmtime_r(&t, &tm) == NULL)
            memset(&tm, 0, sizeof(tm));
        unsigned year = (unsigned)(tm.tm_year + 1900);
        tg_out_2d(&d, year / 100);
        tg_out_2d(&d, year % 100);
        tg_out_ch(&d, '-');
        tg_out_2d(&d, (unsigned)tm.tm_mon + 1);
        tg_out_ch(&d, '-');
        tg_out_2d(&d, (unsigned)tm.tm_mday);
        tg_out_ch(&d, 'T');
        tg_out_2d(&d, (unsigned)tm.tm_hour);
        tg_out_ch(&d, ':');
        tg_out_2d(&d, (unsigned)tm.tm_min);
        tg_out_ch(&d, ':');
        tg_out_2d(&d, (unsigned)tm.tm_sec);
        *d.p = '\0';
        clk->sec = sec;
    }
    tg_out_lit(o, clk->ymdhms);
    tg_out_ch(o, '.');
    tg_out_ch(o, (char)('0' + ms / 100));
    tg_out_2d(o, ms % 100);
    tg_out_ch(o, 'Z');
}

void tg_alog_clock_init(struct tg_alog_clock *c)
{
    c->sec = -1;
    c->ymdhms[0] = '\0';
}

/* The IP without the port; IPv6 bare (no brackets). */
static void tg_out_ip(struct tg_alog_out *o, const struct tg_alog_addr *a)
{
    if (a->family == AF_INET) {
        for (int i = 0; i < 4; i++) {
            if (i > 0)
                tg_out_ch(o, '.');
            tg_out_u64(o, a->ip[i]);
        }
        return;
    }
    char buf[INET6_ADDRSTRLEN];
    if (inet_ntop(AF_INET6, a->ip, buf, sizeof(buf)) == NULL)
        buf[0] = '\0';
    tg_out_lit(o, buf);
}

/* 127.0.0.1:8080 or [::1]:8080. */
static void tg_out_hostport(struct tg_alog_out *o, const struct tg_alog_addr *a)
{
    if (a->family == AF_INET6)
        tg_out_ch(o, '[');
    tg_out_ip(o, a);
    if (a->family == AF_INET6)
        tg_out_ch(o, ']');
    tg_out_ch(o, ':');
    tg_out_u64(o, a->port);
}

static const char *tg_alog_version_name(uint16_t v, char *buf)
{
    switch (v) {
    case 0x0301:
        return "TLSv1";
    case 0x0302:
        return "TLSv1.1";
    case 0x0303:
        return "TLSv1.2";
    case 0x0304:
        return "TLSv1.3";
    default:
        buf[0] = '0';
        buf[1] = 'x';
        for (int i = 0; i < 4; i++)
            buf[2 + i] = tg_hex[(v >> (12 - 4 * i)) & 0xf];
        buf[6] = '\0';
        return buf;
    }
}

/* ---- text: key=value ---- */

static bool tg_text_bare(const char *s, size_t n)
{
    if (n == 0 || (n == 1 && s[0] == '-'))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '=')
            return false;
    }
    return true;
}

static void tg_text_str(struct tg_alog_out *o, const char *s, size_t n)
{
    if (tg_text_bare(s, n)) {
        tg_out_mem(o, s, n);
        return;
    }
    tg_out_ch(o, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            tg_out_ch(o, '\\');
            tg_out_ch(o, (char)c);
        } else if (c >= 0x20 && c < 0x7f) {
            tg_out_ch(o, (char)c);
        } else {
            char esc[4] = {'\\', 'x', tg_hex[c >> 4], tg_hex[c & 0xf]};
            tg_out_mem(o, esc, sizeof(esc));
        }
    }
    tg_out_ch(o, '"');
}

static void tg_text_key(struct tg_alog_out *o, const char *key)
{
    tg_out_ch(o, ' ');
    tg_out_lit(o, key);
    tg_out_ch(o, '=');
}

static void tg_text_endpoint(struct tg_alog_out *o, const char *key, const char *addr_key,
                             const char *port_key, const struct tg_alog_addr *a)
{
    (void)addr_key;
    (void)port_key;
    tg_text_key(o, key);
    if (a->family != 0)
        tg_out_hostport(o, a);
    else
        tg_out_ch(o, '-');
}

/* ---- JSON ---- */

static void tg_json_str(struct tg_alog_out *o, const char *s, size_t n)
{
    tg_out_ch(o, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            tg_out_ch(o, '\\');
            tg_out_ch(o, (char)c);
        } else if (c >= 0x20 && c < 0x7f) {
            tg_out_ch(o, (char)c);
        } else {
            /* Control characters, DEL and every byte of a non-ASCII name:
             * one \u00XX per byte keeps the line ASCII and lossless. */
            char esc[6] = {'\\', 'u', '0', '0', tg_hex[c >> 4], tg_hex[c & 0xf]};
            tg_out_mem(o, esc, sizeof(esc));
        }
    }
    tg_out_ch(o, '"');
}

static void tg_json_key(struct tg_alog_out *o, const char *key)
{
    tg_out_lit(o, ",\"");
    tg_out_lit(o, key);
    tg_out_lit(o, "\":");
}

static void tg_json_absent(struct tg_alog_out *o)
{
    tg_out_lit(o, "null");
}

/* "k_addr":"IP","k_port":N, or nulls. */
static void tg_json_endpoint(struct tg_alog_out *o, const char *key, const char *addr_key,
                             const char *port_key, const struct tg_alog_addr *a)
{
    (void)key;
    tg_json_key(o, addr_key);
    if (a->family == 0) {
        tg_out_lit(o, "null");
        tg_json_key(o, port_key);
        tg_out_lit(o, "null");
        return;
    }
    tg_out_ch(o, '"');
    tg_out_ip(o, a);
    tg_out_ch(o, '"');
    tg_json_key(o, port_key);
    tg_out_u64(o, a->port);
}

static void tg_json_hostport(struct tg_alog_out *o, const struct tg_alog_addr *a)
{
    tg_out_ch(o, '"');
    tg_out_hostport(o, a);
    tg_out_ch(o, '"');
}

/* ---- the fields, once for both formats ---- */

/*
 * How a format writes each kind of value. A value may be absent (no SNI, no
 * upstream yet): text writes '-', JSON null. Strings: text bare when that is
 * unambiguous, else quoted with \xHH escapes; JSON always quoted, \u00XX.
 * An endpoint is one field in text (client=IP:port) and two in JSON
 * (client_addr, client_port).
 */
struct tg_alog_style {
    const char *open, *close; /* around the line; open ends where the time goes */
    char time_quote;          /* around the time, or 0 */
    void (*key)(struct tg_alog_out *o, const char *key);
    void (*str)(struct tg_alog_out *o, const char *s, size_t n); /* s != NULL */
    void (*absent)(struct tg_alog_out *o);
    void (*endpoint)(struct tg_alog_out *o, const char *key, const char *addr_key,
                     const char *port_key, const struct tg_alog_addr *a);
    void (*hostport)(struct tg_alog_out *o, const struct tg_alog_addr *a); /* a->family != 0 */
};

static void tg_text_absent(struct tg_alog_out *o)
{
    tg_out_ch(o, '-');
}

static const struct tg_alog_style tg_alog_text = {
    .open = "time=",
    .close = "",
    .time_quote = 0,
    .key = tg_text_key,
    .str = tg_text_str,
    .absent = tg_text_absent,
    .endpoint = tg_text_endpoint,
    .hostport = tg_out_hostport,
};

static const struct tg_alog_style tg_alog_json = {
    .open = "{\"time\":",
    .close = "}",
    .time_quote = '"',
    .key = tg_json_key,
    .str = tg_json_str,
    .absent = tg_json_absent,
    .endpoint = tg_json_endpoint,
    .hostport = tg_json_hostport,
};

/* A string field; NULL: absent. */
static void tg_f_str(struct tg_alog_out *o, const struct tg_alog_style *st, const char *key,
                     const char *s, size_t n)
{
    st->key(o, key);
    if (s != NULL)
        st->str(o, s, n);
    else
        st->absent(o);
}

static void tg_f_cstr(struct tg_alog_out *o, const struct tg_alog_style *st, const char *key,
                      const char *s)
{
    tg_f_str(o, st, key, s, s != NULL ? strlen(s) : 0);
}

static void tg_f_u64(struct tg_alog_out *o, const struct tg_alog_style *st, const char *key,
                     uint64_t v)
{
    st->key(o, key);
    tg_out_u64(o, v);
}

/* Milliseconds with three decimals; TG_ALOG_NONE: absent. */
static void tg_f_ms(struct tg_alog_out *o, const struct tg_alog_style *st, const char *key,
                    uint64_t ns)
{
    st->key(o, key);
    if (ns == TG_ALOG_NONE)
        st->absent(o);
    else
        tg_out_ms(o, ns);
}

static void tg_format_fields(struct tg_alog_out *o, const struct tg_alog_style *st,
                             const struct tg_alog_rec *r, const struct tg_alog_strs *s,
                             struct tg_alog_clock *clk)
{
    char vbuf[8];
    tg_out_lit(o, st->open);
    if (st->time_quote)
        tg_out_ch(o, st->time_quote);
    tg_out_time(o, r->time_ns, clk);
    if (st->time_quote)
        tg_out_ch(o, st->time_quote);
#define TG_F_S(key, i) tg_f_str(o, st, key, s->p[i], s->len[i])
    TG_F_S("listener", TG_ALOG_S_LISTENER);
    st->endpoint(o, "client", "client_addr", "client_port", &r->client);
    st->endpoint(o, "peer", "peer_addr", "peer_port", &r->peer);
    TG_F_S("sni", TG_ALOG_S_SNI);
    TG_F_S("alpn", TG_ALOG_S_ALPN);
    tg_f_cstr(o, st, "tls",
              r->tls_version != 0 ? tg_alog_version_name(r->tls_version, vbuf) : NULL);
    tg_f_cstr(o, st, "cipher", r->cipher);
    TG_F_S("group", TG_ALOG_S_GROUP);
    TG_F_S("cert", TG_ALOG_S_CERT);
    st->key(o, "cert_index");
    if (r->cert_index >= 0)
        tg_out_u64(o, (uint64_t)r->cert_index);
    else
        st->absent(o);
    tg_f_cstr(o, st, "key_provider", r->provider);
    tg_f_u64(o, st, "key_fallbacks", r->key_fallbacks);
    st->key(o, "resumed");
    tg_out_lit(o, r->resumed ? "true" : "false");
    tg_f_ms(o, st, "handshake_ms", r->handshake_ns);
    st->key(o, "upstream");
    if (r->upstream.family != 0)
        st->hostport(o, &r->upstream);
    else
        st->absent(o);
    TG_F_S("upstream_host", TG_ALOG_S_UPSTREAM_HOST);
    tg_f_u64(o, st, "attempts", r->attempts);
    tg_f_ms(o, st, "connect_ms", r->connect_ns);
    tg_f_u64(o, st, "bytes_in", r->bytes_in);
    tg_f_u64(o, st, "bytes_out", r->bytes_out);
    tg_f_ms(o, st, "duration_ms", r->duration_ns);
    tg_f_cstr(o, st, "term", tg_alog_term_code((enum tg_alog_term)r->term));
    TG_F_S("client_subject", TG_ALOG_S_CLIENT_SUBJECT);
    TG_F_S("client_san", TG_ALOG_S_CLIENT_SAN);
#undef TG_F_S
    tg_f_cstr(o, st, "client_fingerprint", r->client_sha256[0] != '\0' ? r->client_sha256 : NULL);
    tg_out_lit(o, st->close);
}

size_t tg_alog_format(enum tg_conf_alog_format fmt, const struct tg_alog_rec *rec,
                      const struct tg_alog_strs *s, struct tg_alog_clock *clk, char *out)
{
    struct tg_alog_out o = {out, out + TG_ALOG_LINE_MAX - 1};
    tg_format_fields(&o, fmt == TG_CONF_ALOG_JSON ? &tg_alog_json : &tg_alog_text, rec, s, clk);
    *o.p++ = '\n';
    return (size_t)(o.p - out);
}
