/*
 * Unit tests for src/alog/tg_alog_format.c: every field of a text and a JSON
 * line, absent fields, escaping (text quoting, strict JSON with \u00XX for
 * control and non-ASCII bytes), checked by decoding both formats back with
 * strict readers: random bytes in every copied string, log-injection
 * attempts, the longest possible line; IPv6, the time cache, and the
 * termination-code table.
 */
#include "tg_test_util.h"

#include "alog/tg_alog.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

/* 2023-11-14T22:13:20.123Z */
#define T0_NS (1700000000ULL * 1000000000ULL + 123456789ULL)

static struct tg_alog_rec full_rec(void)
{
    struct tg_alog_rec r;
    memset(&r, 0, sizeof(r));
    r.time_ns = T0_NS;
    r.duration_ns = 12345678; /* 12.345 ms */
    r.handshake_ns = 1500000; /* 1.500 ms */
    r.connect_ns = 210999;    /* 0.210 ms (truncated to the microsecond) */
    r.bytes_in = 78;
    r.bytes_out = 18446744073709551615ULL;
    r.cipher = "TLS_AES_128_GCM_SHA256";
    r.provider = "cryptomb";
    r.client.family = AF_INET;
    r.client.port = 53422;
    memcpy(r.client.ip, "\xc0\x00\x02\x0a", 4);
    r.peer.family = AF_INET;
    r.peer.port = 40000;
    memcpy(r.peer.ip, "\x7f\x00\x00\x01", 4);
    r.upstream.family = AF_INET;
    r.upstream.port = 8080;
    memcpy(r.upstream.ip, "\x0a\x01\x02\xff", 4);
    r.tls_version = 0x0304;
    r.key_fallbacks = 2;
    r.cert_index = 1;
    r.attempts = 1;
    r.term = TG_ALOG_TERM_NORMAL;
    r.resumed = false;
    return r;
}

static void set(struct tg_alog_strs *s, enum tg_alog_str i, const char *p)
{
    s->p[i] = p;
    s->len[i] = p != NULL ? strlen(p) : 0;
}

static struct tg_alog_strs full_strs(void)
{
    struct tg_alog_strs s;
    memset(&s, 0, sizeof(s));
    set(&s, TG_ALOG_S_LISTENER, "https");
    set(&s, TG_ALOG_S_SNI, "a.example.org");
    set(&s, TG_ALOG_S_ALPN, "h2");
    set(&s, TG_ALOG_S_GROUP, "x25519");
    set(&s, TG_ALOG_S_CERT, "*.example.org");
    set(&s, TG_ALOG_S_UPSTREAM_HOST, "web.svc:8080");
    return s;
}

static char g_line[TG_ALOG_LINE_MAX + 1];

static const char *fmt(enum tg_conf_alog_format f, const struct tg_alog_rec *r,
                       const struct tg_alog_strs *s)
{
    struct tg_alog_clock clk;
    tg_alog_clock_init(&clk);
    size_t n = tg_alog_format(f, r, s, &clk, g_line);
    assert_true(n > 0 && n <= TG_ALOG_LINE_MAX);
    g_line[n] = '\0';
    assert_int_equal(g_line[n - 1], '\n');
    assert_null(memchr(g_line, '\n', n - 1)); /* exactly one line */
    return g_line;
}

static void test_text_every_field(void **state)
{
    (void)state;
    struct tg_alog_rec r = full_rec();
    struct tg_alog_strs s = full_strs();
    assert_string_equal(
        fmt(TG_CONF_ALOG_TEXT, &r, &s),
        "time=2023-11-14T22:13:20.123Z listener=https client=192.0.2.10:53422 "
        "peer=127.0.0.1:40000 sni=a.example.org alpn=h2 tls=TLSv1.3 "
        "cipher=TLS_AES_128_GCM_SHA256 group=x25519 cert=*.example.org cert_index=1 "
        "key_provider=cryptomb key_fallbacks=2 resumed=false handshake_ms=1.500 "
        "upstream=10.1.2.255:8080 upstream_host=web.svc:8080 attempts=1 connect_ms=0.210 "
        "bytes_in=78 bytes_out=18446744073709551615 duration_ms=12.345 term=-- "
        "client_subject=- client_san=- client_fingerprint=-\n");
}

static void test_json_every_field(void **state)
{
    (void)state;
    struct tg_alog_rec r = full_rec();
    struct tg_alog_strs s = full_strs();
    r.resumed = true;
    r.tls_version = 0x0303;
    r.term = TG_ALOG_TERM_UP_RESET;
    assert_string_equal(
        fmt(TG_CONF_ALOG_JSON, &r, &s),
        "{\"time\":\"2023-11-14T22:13:20.123Z\",\"listener\":\"https\",\"client_addr\":"
        "\"192.0.2.10\",\"client_port\":53422,\"peer_addr\":\"127.0.0.1\",\"peer_port\":40000,"
        "\"sni\":\"a.example.org\",\"alpn\":\"h2\","
        "\"tls\":\"TLSv1.2\",\"cipher\":\"TLS_AES_128_GCM_SHA256\",\"group\":\"x25519\","
        "\"cert\":\"*.example.org\",\"cert_index\":1,\"key_provider\":\"cryptomb\","
        "\"key_fallbacks\":2,\"resumed\":true,\"handshake_ms\":1.500,\"upstream\":"
        "\"10.1.2.255:8080\",\"upstream_host\":\"web.svc:8080\",\"attempts\":1,\"connect_ms\":0."
        "210,\"bytes_in\":78,\"bytes_out\":"
        "18446744073709551615,\"duration_ms\":12.345,\"term\":\"UR\",\"client_subject\":null,"
        "\"client_san\":null,\"client_fingerprint\":null}\n");
}

/* A connection refused at accept: almost everything is absent. */
static void test_absent_fields(void **state)
{
    (void)state;
    struct tg_alog_rec r;
    struct tg_alog_strs s;
    memset(&r, 0, sizeof(r));
    memset(&s, 0, sizeof(s));
    r.time_ns = T0_NS;
    r.handshake_ns = TG_ALOG_NONE;
    r.connect_ns = TG_ALOG_NONE;
    r.cert_index = -1;
    r.term = TG_ALOG_TERM_LIMIT;
    assert_string_equal(fmt(TG_CONF_ALOG_TEXT, &r, &s),
                        "time=2023-11-14T22:13:20.123Z listener=- client=- peer=- sni=- alpn=- "
                        "tls=- cipher=- group=- cert=- cert_index=- key_provider=- "
                        "key_fallbacks=0 resumed=false handshake_ms=- upstream=- "
                        "upstream_host=- attempts=0 connect_ms=- bytes_in=0 bytes_out=0 "
                        "duration_ms=0.000 term=LR client_subject=- client_san=- "
                        "client_fingerprint=-\n");
    assert_string_equal(
        fmt(TG_CONF_ALOG_JSON, &r, &s),
        "{\"time\":\"2023-11-14T22:13:20.123Z\",\"listener\":null,\"client_addr\":"
        "null,\"client_port\":null,\"peer_addr\":null,\"peer_port\":null,"
        "\"sni\":null,\"alpn\":null,\"tls\":null,"
        "\"cipher\":null,\"group\":null,\"cert\":null,\"cert_index\":null,"
        "\"key_provider\":null,\"key_fallbacks\":0,\"resumed\":false,"
        "\"handshake_ms\":null,\"upstream\":null,\"upstream_host\":null,"
        "\"attempts\":0,\"connect_ms\":null,"
        "\"bytes_in\":0,\"bytes_out\":0,\"duration_ms\":0.000,\"term\":\"LR\","
        "\"client_subject\":null,\"client_san\":null,\"client_fingerprint\":null}\n");
}

static void test_ipv6_and_version(void **state)
{
    (void)state;
    struct tg_alog_rec r = full_rec();
    struct tg_alog_strs s = full_strs();
    struct sockaddr_in6 s6;
    memset(&s6, 0, sizeof(s6));
    s6.sin6_family = AF_INET6;
    s6.sin6_port = htons(443);
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::1", &s6.sin6_addr), 1);
    tg_alog_addr_set(&r.client, (const struct sockaddr *)&s6, sizeof(s6));
    assert_int_equal(r.client.family, AF_INET6);
    assert_int_equal(r.client.port, 443);
    r.tls_version = 0x7f1c;
    const char *t = fmt(TG_CONF_ALOG_TEXT, &r, &s);
    assert_non_null(strstr(t, " client=[2001:db8::1]:443 "));
    assert_non_null(strstr(t, " tls=0x7f1c "));
    const char *j = fmt(TG_CONF_ALOG_JSON, &r, &s);
    assert_non_null(strstr(j, "\"client_addr\":\"2001:db8::1\",\"client_port\":443,"));
    /* Anything but IPv4 / IPv6 is "no address". */
    struct sockaddr un = {.sa_family = AF_UNIX};
    tg_alog_addr_set(&r.client, &un, sizeof(un));
    assert_int_equal(r.client.family, 0);
    tg_alog_addr_set(&r.client, NULL, 0);
    assert_int_equal(r.client.family, 0);
}

/* The text value of sni for a given SNI. */
static const char *text_sni(const char *sni, size_t len)
{
    struct tg_alog_rec r = full_rec();
    struct tg_alog_strs s = full_strs();
    s.p[TG_ALOG_S_SNI] = sni;
    s.len[TG_ALOG_S_SNI] = len;
    const char *line = fmt(TG_CONF_ALOG_TEXT, &r, &s);
    static char v[TG_ALOG_LINE_MAX];
    const char *b = strstr(line, " sni=");
    const char *e = strstr(line, " alpn=");
    assert_non_null(b);
    assert_non_null(e);
    b += 5;
    memcpy(v, b, (size_t)(e - b));
    v[e - b] = '\0';
    return v;
}

static void test_text_escaping(void **state)
{
    (void)state;
    assert_string_equal(text_sni("plain.example", 13), "plain.example");
    assert_string_equal(text_sni("", 0), "\"\"");
    assert_string_equal(text_sni("-", 1), "\"-\"");
    assert_string_equal(text_sni("a b", 3), "\"a b\"");
    assert_string_equal(text_sni("k=v", 3), "\"k=v\"");
    assert_string_equal(text_sni("q\"b\\s", 5), "\"q\\\"b\\\\s\"");
    assert_string_equal(text_sni("\x01\n\x7f", 3), "\"\\x01\\x0a\\x7f\"");
    assert_string_equal(text_sni("caf\xc3\xa9", 5), "\"caf\\xc3\\xa9\"");
    /* Static strings go through the same escaper. */
    struct tg_alog_rec r = full_rec();
    struct tg_alog_strs s = full_strs();
    r.provider = "my provider";
    assert_non_null(strstr(fmt(TG_CONF_ALOG_TEXT, &r, &s), " key_provider=\"my provider\" "));
    r.cipher = "a\"b\x01";
    assert_non_null(strstr(fmt(TG_CONF_ALOG_TEXT, &r, &s), " cipher=\"a\\\"b\\x01\" "));
    assert_non_null(strstr(fmt(TG_CONF_ALOG_JSON, &r, &s), ",\"cipher\":\"a\\\"b\\u0001\","));
}

/* ---- a small JSON reader: one flat object of strings, numbers, true,
 * false, null; strings decoded (\u00XX only up to 0xff, as we write them).
 * Fails the test on anything else. ---- */

struct jv {
    char key[32];
    int type; /* 's', 'n', 't', 'f', 'z' */
    char str[TG_ALOG_LINE_MAX];
    size_t len;
};

static const char *j_string(const char *p, char *out, size_t *len)
{
    assert_int_equal(*p, '"');
    p++;
    size_t n = 0;
    while (*p != '"') {
        unsigned char c = (unsigned char)*p;
        assert_true(c >= 0x20 && c < 0x7f); /* strict: ASCII, no raw control */
        if (c == '\\') {
            p++;
            if (*p == '"' || *p == '\\' || *p == '/') {
                out[n++] = *p++;
            } else if (*p == 'u') {
                unsigned v = 0;
                for (int i = 1; i <= 4; i++) {
                    char h = p[i];
                    assert_non_null(strchr("0123456789abcdefABCDEF", h));
                    v = v * 16 + (unsigned)(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
                }
                assert_true(v <= 0xff);
                out[n++] = (char)v;
                p += 5;
            } else {
                fail_msg("unexpected escape \\%c", *p);
            }
        } else {
            out[n++] = (char)c;
            p++;
        }
    }
    *len = n;
    return p + 1;
}

static size_t j_parse(const char *line, struct jv *v, size_t max)
{
    const char *p = line;
    size_t n = 0;
    assert_int_equal(*p++, '{');
    while (*p != '}') {
        assert_true(n < max);
        size_t kl;
        p = j_string(p, v[n].key, &kl);
        v[n].key[kl] = '\0';
        assert_int_equal(*p++, ':');
        if (*p == '"') {
            v[n].type = 's';
            p = j_string(p, v[n].str, &v[n].len);
        } else if (strncmp(p, "true", 4) == 0) {
            v[n].type = 't';
            p += 4;
        } else if (strncmp(p, "false", 5) == 0) {
            v[n].type = 'f';
            p += 5;
        } else if (strncmp(p, "null", 4) == 0) {
            v[n].type = 'z';
            p += 4;
        } else {
            /* JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)? (we write no sign/exponent) */
            assert_true(*p >= '0' && *p <= '9');
            assert_false(*p == '0' && p[1] >= '0' && p[1] <= '9');
            while (*p >= '0' && *p <= '9')
                p++;
            if (*p == '.') {
                p++;
                assert_true(*p >= '0' && *p <= '9');
                while (*p >= '0' && *p <= '9')
                    p++;
            }
            v[n].type = 'n';
        }
        n++;
        if (*p == ',')
            p++;
        else
            assert_int_equal(*p, '}');
    }
    assert_string_equal(p, "}\n");
    return n;
}

static const struct jv *j_get(const struct jv *v, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].key, key) == 0)
            return &v[i];
    }
    fail_msg("no key %s", key);
    return NULL;
}

static struct jv g_jv[32];

/* ---- a strict reader of the text format: `key=value` pairs separated by
 * one space, a value bare (printable ASCII but space, '"', '\\', '=') or
 * double-quoted with \" \\ and \xHH only; "-" bare is absent. What a log
 * shipper's logfmt parser sees: if a value could smuggle a '=' or a space
 * out of its quotes, a key would appear here that the formatter never
 * wrote. ---- */

struct tv {
    char key[32];
    bool absent;
    char str[TG_ALOG_LINE_MAX];
    size_t len;
};

static int t_hex(char h)
{
    assert_non_null(strchr("0123456789abcdef", h)); /* lower case, as written */
    return h <= '9' ? h - '0' : h - 'a' + 10;
}

static size_t t_parse(const char *line, struct tv *v, size_t max)
{
    const char *p = line;
    size_t n = 0;
    while (*p != '\n') {
        assert_true(n < max);
        if (n > 0)
            assert_int_equal(*p++, ' ');
        size_t kl = 0;
        while (*p != '=') {
            assert_true((*p >= 'a' && *p <= 'z') || *p == '_');
            assert_true(kl < sizeof(v[n].key) - 1);
            v[n].key[kl++] = *p++;
        }
        v[n].key[kl] = '\0';
        p++;
        v[n].len = 0;
        v[n].absent = false;
        if (*p == '"') {
            p++;
            while (*p != '"') {
                unsigned char c = (unsigned char)*p;
                assert_true(c >= 0x20 && c < 0x7f);
                if (c == '\\') {
                    if (p[1] == '"' || p[1] == '\\') {
                        v[n].str[v[n].len++] = p[1];
                        p += 2;
                    } else {
                        assert_int_equal(p[1], 'x');
                        v[n].str[v[n].len++] = (char)(t_hex(p[2]) * 16 + t_hex(p[3]));
                        p += 4;
                    }
                } else {
                    v[n].str[v[n].len++] = (char)c;
                    p++;
                }
            }
            p++;
            assert_true(*p == ' ' || *p == '\n');
        } else {
            while (*p != ' ' && *p != '\n') {
                unsigned char c = (unsigned char)*p;
                assert_true(c > 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '=');
                v[n].str[v[n].len++] = *p++;
            }
            assert_true(v[n].len > 0);
            v[n].absent = v[n].len == 1 && v[n].str[0] == '-';
        }
        n++;
    }
    assert_string_equal(p, "\n");
    return n;
}

static struct tv g_tv[32];

static const char *const text_keys[] = {"time",          "listener",
                                        "client",        "peer",
                                        "sni",           "alpn",
                                        "tls",           "cipher",
                                        "group",         "cert",
                                        "cert_index",    "key_provider",
                                        "key_fallbacks", "resumed",
                                        "handshake_ms",  "upstream",
                                        "upstream_host", "attempts",
                                        "connect_ms",    "bytes_in",
                                        "bytes_out",     "duration_ms",
                                        "term",          "client_subject",
                                        "client_san",    "client_fingerprint"};
static const char *const json_keys[] = {
    "time",         "listener",       "client_addr",   "client_port",
    "peer_addr",    "peer_port",      "sni",           "alpn",
    "tls",          "cipher",         "group",         "cert",
    "cert_index",   "key_provider",   "key_fallbacks", "resumed",
    "handshake_ms", "upstream",       "upstream_host", "attempts",
    "connect_ms",   "bytes_in",       "bytes_out",     "duration_ms",
    "term",         "client_subject", "client_san",    "client_fingerprint"};
/* Each copied string's key, in both formats. */
static const char *const str_keys[TG_ALOG_S_COUNT] = {[TG_ALOG_S_LISTENER] = "listener",
                                                      [TG_ALOG_S_SNI] = "sni",
                                                      [TG_ALOG_S_ALPN] = "alpn",
                                                      [TG_ALOG_S_GROUP] = "group",
                                                      [TG_ALOG_S_CERT] = "cert",
                                                      [TG_ALOG_S_UPSTREAM_HOST] = "upstream_host",
                                                      [TG_ALOG_S_CLIENT_SUBJECT] = "client_subject",
                                                      [TG_ALOG_S_CLIENT_SAN] = "client_san"};

static const struct tv *t_get(const struct tv *v, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].key, key) == 0)
            return &v[i];
    }
    fail_msg("no key %s", key);
    return NULL;
}

/* Both lines of (r, s): exactly the keys in order, and every string decodes
 * back to its bytes (the JSON reader also refuses anything but ASCII). */
static void check_roundtrip(const struct tg_alog_rec *r, const struct tg_alog_strs *s)
{
    const char *line = fmt(TG_CONF_ALOG_JSON, r, s);
    size_t n = j_parse(line, g_jv, TG_ARRAY_LEN(g_jv));
    assert_int_equal(n, TG_ARRAY_LEN(json_keys));
    for (size_t i = 0; i < n; i++)
        assert_string_equal(g_jv[i].key, json_keys[i]);
    for (int k = 0; k < TG_ALOG_S_COUNT; k++) {
        const struct jv *v = j_get(g_jv, n, str_keys[k]);
        if (s->p[k] == NULL) {
            assert_int_equal(v->type, 'z');
            continue;
        }
        assert_int_equal(v->type, 's');
        assert_int_equal(v->len, s->len[k]);
        assert_memory_equal(v->str, s->p[k], s->len[k]);
    }
    line = fmt(TG_CONF_ALOG_TEXT, r, s);
    n = t_parse(line, g_tv, TG_ARRAY_LEN(g_tv));
    assert_int_equal(n, TG_ARRAY_LEN(text_keys));
    for (size_t i = 0; i < n; i++)
        assert_string_equal(g_tv[i].key, text_keys[i]);
    for (int k = 0; k < TG_ALOG_S_COUNT; k++) {
        const struct tv *v = t_get(g_tv, n, str_keys[k]);
        if (s->p[k] == NULL) {
            assert_true(v->absent);
            continue;
        }
        assert_false(v->absent); /* a string "-" is quoted: not absent */
        assert_int_equal(v->len, s->len[k]);
        assert_memory_equal(v->str, s->p[k], s->len[k]);
    }
}

/* Random strings of every byte but NUL, up to the longest, in every copied
 * field: both formats stay one line, keep their keys, and give the bytes
 * back. */
static void test_roundtrip_random(void **state)
{
    (void)state;
    struct tg_alog_rec r = full_rec();
    unsigned seed = 12345;
    static char str[TG_ALOG_S_COUNT][TG_ALOG_STR_MAX];
    for (int iter = 0; iter < 2000; iter++) {
        struct tg_alog_strs s = full_strs();
        for (int k = 0; k < TG_ALOG_S_COUNT; k++) {
            /* The SNI every round, the others on some rounds, one absent
             * now and then. */
            if (k != TG_ALOG_S_SNI && iter % 3 != 0)
                continue;
            seed = seed * 1103515245u + 12345u;
            if ((seed >> 16) % 11 == 0) {
                s.p[k] = NULL;
                s.len[k] = 0;
                continue;
            }
            size_t len = iter == 0 ? TG_ALOG_STR_MAX : (seed >> 8) % (TG_ALOG_STR_MAX + 1);
            for (size_t i = 0; i < len; i++) {
                seed = seed * 1103515245u + 12345u;
                str[k][i] = (char)(1 + (seed >> 16) % 255);
            }
            s.p[k] = str[k];
            s.len[k] = len;
        }
        check_roundtrip(&r, &s);
    }
}

/* What a hostile client can put in the SNI to forge a line or a field: a
 * newline with a whole fake record after it, a fake key=value, a quote that
 * tries to close the value early, an escape that tries to eat our quote,
 * ANSI terminal sequences, a NUL-free UTF-8 overlong, JSON's own syntax. */
static void test_injection(void **state)
{
    (void)state;
    static const char *const evil[] = {
        "a.example\ntime=2023-11-14T22:13:20.123Z listener=https term=--",
        "x term=-- sni=ok",
        "x\" term=\"--",
        "x\\",
        "x\\\" term=--",
        "\x1b[2J\x1b[31mred\x1b[0m",
        "\xc0\xaf\xe2\x80\xa8\xe2\x80\xa9",
        "\",\"term\":\"--\",\"x\":\"",
        "\\u0022}\n{\"term\":\"--\"}",
        "\r\n\t\v\f\b",
        "=",
        "-",
        "",
    };
    struct tg_alog_rec r = full_rec();
    for (size_t i = 0; i < TG_ARRAY_LEN(evil); i++) {
        struct tg_alog_strs s = full_strs();
        set(&s, TG_ALOG_S_SNI, evil[i]);
        set(&s, TG_ALOG_S_ALPN, evil[i]); /* ALPN is the client's bytes too */
        check_roundtrip(&r, &s);
    }
}

/* The widest line: every string at the longest and made of bytes that take
 * the longest escape, addresses at their longest, every number at its
 * widest. Nothing is cut. */
static void test_longest_line(void **state)
{
    (void)state;
    static char worst[TG_ALOG_STR_MAX];
    memset(worst, 0x01, sizeof(worst));
    struct tg_alog_rec r = full_rec();
    r.client.family = r.peer.family = r.upstream.family = AF_INET6;
    memset(r.client.ip, 0xff, 16);
    memset(r.peer.ip, 0xfe, 16);
    memset(r.upstream.ip, 0xfd, 16);
    r.client.port = r.peer.port = r.upstream.port = 65535;
    r.duration_ns = r.handshake_ns = r.connect_ns = UINT64_MAX - 1;
    r.bytes_in = r.bytes_out = UINT64_MAX;
    r.key_fallbacks = UINT16_MAX;
    r.cert_index = INT16_MAX;
    r.attempts = UINT8_MAX;
    r.tls_version = 0xfefd;
    struct tg_alog_strs s;
    for (int k = 0; k < TG_ALOG_S_COUNT; k++) {
        s.p[k] = worst;
        s.len[k] = sizeof(worst);
    }
    check_roundtrip(&r, &s);
    size_t jl = strlen(fmt(TG_CONF_ALOG_JSON, &r, &s));
    assert_true(jl > TG_ALOG_S_COUNT * TG_ALOG_STR_MAX * 6);
    assert_true(jl < TG_ALOG_LINE_MAX);
    /* A string handed over longer than the maximum is the ring's to cut
     * (tg_alog_emit); the formatter writes what it is given. */
}

static void test_time_cache(void **state)
{
    (void)state;
    struct tg_alog_rec r = full_rec();
    struct tg_alog_strs s = full_strs();
    struct tg_alog_clock clk;
    char a[TG_ALOG_LINE_MAX], b[TG_ALOG_LINE_MAX], c[TG_ALOG_LINE_MAX];
    tg_alog_clock_init(&clk);
    size_t n = tg_alog_format(TG_CONF_ALOG_TEXT, &r, &s, &clk, a);
    a[n] = '\0';
    r.time_ns = T0_NS + 876000000ULL; /* same second: .999 */
    n = tg_alog_format(TG_CONF_ALOG_TEXT, &r, &s, &clk, b);
    b[n] = '\0';
    r.time_ns = 951782400ULL * 1000000000ULL + 7000000ULL; /* 2000-02-29T00:00:00.007Z */
    n = tg_alog_format(TG_CONF_ALOG_TEXT, &r, &s, &clk, c);
    c[n] = '\0';
    assert_memory_equal(a, "time=2023-11-14T22:13:20.123Z ", 30);
    assert_memory_equal(b, "time=2023-11-14T22:13:20.999Z ", 30);
    assert_memory_equal(c, "time=2000-02-29T00:00:00.007Z ", 30);
}

static void test_term_codes(void **state)
{
    (void)state;
    /* Every end reason of tlsgate_connections_closed_total has a code, and
     * the refusals at accept too. */
    assert_int_equal(tg_alog_term_of(TG_STAT_CLOSE_NORMAL, 0), TG_ALOG_TERM_NORMAL);
    assert_int_equal(tg_alog_term_of(TG_STAT_CLOSE_CLIENT_ERROR, 0), TG_ALOG_TERM_CLIENT_ERROR);
    assert_int_equal(tg_alog_term_of(TG_STAT_CLOSE_CLIENT_TRUNCATED, 0),
                     TG_ALOG_TERM_CLIENT_TRUNCATED);
    assert_string_equal(tg_alog_term_code(TG_ALOG_TERM_CLIENT_TRUNCATED), "CT");
    assert_int_equal(tg_alog_term_of(TG_STAT_CLOSE_HANDSHAKE_FAILED, TG_STAT_HS_FAIL_PROTOCOL),
                     TG_ALOG_TERM_HS_FAILED);
    assert_int_equal(tg_alog_term_of(TG_STAT_CLOSE_HANDSHAKE_FAILED, TG_STAT_HS_FAIL_CLOSED),
                     TG_ALOG_TERM_HS_CLOSED);
    assert_int_equal(tg_alog_term_of(TG_STAT_CLOSE_HANDSHAKE_FAILED, TG_STAT_HS_FAIL_KEYOP),
                     TG_ALOG_TERM_HS_KEYOP);
    assert_int_equal(tg_alog_term_of(TG_STAT_CLOSE_HANDSHAKE_FAILED, 0), TG_ALOG_TERM_HS_FAILED);
    assert_int_equal(tg_alog_term_of(TG_STAT_CLOSE_HANDSHAKE_TIMEOUT, 0), TG_ALOG_TERM_HS_TIMEOUT);
    /* A detail only refines its own reason: a key-operation failure seen by
     * a connection that timed out is still a timeout. */
    assert_int_equal(tg_alog_term_of(TG_STAT_CLOSE_HANDSHAKE_TIMEOUT, TG_STAT_HS_FAIL_KEYOP),
                     TG_ALOG_TERM_HS_TIMEOUT);
    assert_int_equal(
        tg_alog_term_of(TG_STAT_CLOSE_UPSTREAM_CONNECT, TG_STAT_UPSTREAM_CONNECT_TIMEOUT),
        TG_ALOG_TERM_UP_TIMEOUT);
    assert_int_equal(
        tg_alog_term_of(TG_STAT_CLOSE_UPSTREAM_CONNECT, TG_STAT_UPSTREAM_CONNECT_REFUSED),
        TG_ALOG_TERM_UP_FAILED);
    assert_int_equal(
        tg_alog_term_of(TG_STAT_CLOSE_UPSTREAM_CONNECT, TG_STAT_UPSTREAM_CONNECT_ERROR),
        TG_ALOG_TERM_UP_FAILED);
    assert_int_equal(tg_alog_term_of(TG_STAT_CLOSE_UPSTREAM_CONNECT, 0), TG_ALOG_TERM_UP_FAILED);
    assert_int_equal(tg_alog_term_of(TG_STAT_CLOSE_NO_HEALTHY, 0), TG_ALOG_TERM_NO_HEALTHY);
    assert_int_equal(tg_alog_term_of(TG_STAT_CLOSE_PROXY_PROTOCOL, TG_STAT_PP_ERR_TIMEOUT),
                     TG_ALOG_TERM_PP_TIMEOUT);
    assert_int_equal(tg_alog_term_of(TG_STAT_CLOSE_PROXY_PROTOCOL, TG_STAT_PP_ERR_MALFORMED),
                     TG_ALOG_TERM_PP_REFUSED);
    assert_int_equal(tg_alog_term_of(TG_STAT_CLOSE_PROXY_PROTOCOL, TG_STAT_PP_ERR_NOT_PROXY),
                     TG_ALOG_TERM_PP_REFUSED);
    assert_int_equal(tg_alog_term_of(TG_STAT_CLOSE_PROXY_PROTOCOL, TG_STAT_PP_ERR_TRUNCATED),
                     TG_ALOG_TERM_PP_REFUSED);
    assert_string_equal(tg_alog_term_code(TG_ALOG_TERM_PP_TIMEOUT), "PT");
    assert_string_equal(tg_alog_term_code(TG_ALOG_TERM_PP_REFUSED), "PH");
    assert_string_equal(tg_alog_term_code(TG_ALOG_TERM_NO_HEALTHY), "NH");
    assert_int_equal(tg_alog_term_of(TG_STAT_CLOSE_UPSTREAM_ERROR, 0), TG_ALOG_TERM_UP_RESET);
    assert_int_equal(tg_alog_term_of(TG_STAT_CLOSE_IDLE_TIMEOUT, 0), TG_ALOG_TERM_IDLE);
    assert_int_equal(tg_alog_term_of(TG_STAT_CLOSE_SHUTDOWN, 0), TG_ALOG_TERM_SHUTDOWN);
    assert_int_equal(tg_alog_term_of(TG_STAT_CLOSE_INTERNAL, 0), TG_ALOG_TERM_INTERNAL);
    assert_int_equal(tg_alog_term_of(TG_STAT_CONN_REJECTED_LIMIT, 0), TG_ALOG_TERM_LIMIT);
    /* Not an end reason: a bug, reported as internal rather than hidden. */
    assert_int_equal(tg_alog_term_of(TG_STAT_BYTES_TO_CLIENT, 0), TG_ALOG_TERM_INTERNAL);

    /* Codes: two characters, unique; and every CLOSE_* reason is covered. */
    for (int i = 0; i < TG_ALOG_TERM_COUNT; i++) {
        const char *c = tg_alog_term_code((enum tg_alog_term)i);
        assert_int_equal(strlen(c), 2);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(c, tg_alog_term_code((enum tg_alog_term)j));
    }
    assert_string_equal(tg_alog_term_code(TG_ALOG_TERM_COUNT), "??");
    for (int st = TG_STAT_CLOSE_NORMAL; st <= TG_STAT_CLOSE_INTERNAL; st++) {
        enum tg_alog_term t = tg_alog_term_of(st, 0);
        assert_true(t != TG_ALOG_TERM_INTERNAL || st == TG_STAT_CLOSE_INTERNAL);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_every_field), cmocka_unit_test(test_json_every_field),
        cmocka_unit_test(test_absent_fields),    cmocka_unit_test(test_ipv6_and_version),
        cmocka_unit_test(test_text_escaping),    cmocka_unit_test(test_roundtrip_random),
        cmocka_unit_test(test_injection),        cmocka_unit_test(test_longest_line),
        cmocka_unit_test(test_time_cache),       cmocka_unit_test(test_term_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
