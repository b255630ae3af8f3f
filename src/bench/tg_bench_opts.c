/*
 * tg_bench_opts: command line of `tlsgate bench` (see tg_bench_internal.h and
 * docs/BENCH.md). Pure parsing, no I/O; option strings stay in argv.
 */
#include "bench/tg_bench_internal.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char tg_bench_usage_text[] =
    "usage: tlsgate bench [options] TARGET\n"
    "       tlsgate bench --serve ADDR [--response-size N] [--max-conns N] [--quiet]\n"
    "\n"
    "TARGET is https://HOST[:PORT][/path] or HOST:PORT, HOST an IP literal\n"
    "([::1] for IPv6) or localhost. Options take one or two dashes, and\n"
    "values as --opt=value or --opt value.\n"
    "\n"
    "load generator:\n"
    "  -c N                 connections (default 8)\n"
    "  -qps R               total target rate, 0 = as fast as possible (default 0)\n"
    "  -t DUR               measured duration (default 5s; 0 = until Ctrl-C)\n"
    "  -n N                 total measured calls (instead of -t)\n"
    "  --warmup N           calls before the measured interval (default 0)\n"
    "  --keepalive=BOOL     reuse connections (default false: new TCP + TLS per call)\n"
    "  -k                   do not verify the server certificate\n"
    "  --cacert FILE        CA bundle to verify the server (required without -k)\n"
    "  --sni NAME           server name (default: HOST when it is a name)\n"
    "  --tls-version V      1.2 or 1.3 (pins min and max; default negotiate)\n"
    "  --groups LIST        key exchange groups (default X25519)\n"
    "  --ciphers LIST       TLS 1.2 cipher list\n"
    "  --ciphersuites LIST  TLS 1.3 cipher suites (default AES-128-GCM first)\n"
    "  --alpn LIST          ALPN protocols, comma separated\n"
    "  --payload N          POST a body of N bytes (default: GET, no body)\n"
    "  --path /p            request path when TARGET has none (default /)\n"
    "  --timeout DUR        per-call timeout (default 10s)\n"
    "  --pid PID            report that process's CPU and handshakes per CPU-second\n"
    "  --json FILE          write the results as JSON\n"
    "  --quiet              no per-second progress\n"
    "  --source-ips N       bind sources 127.0.0.1..127.0.0.N round robin (IPv4 only)\n"
    "  --close MODE         who closes after \"Connection: close\": auto (default: the\n"
    "                       server if it does, else the client), server, client\n"
    "  --ssl-reuse=BOOL     reuse SSL objects with SSL_clear (default true)\n"
    "  --lean-libctx=BOOL   parse certificates in a lean OpenSSL context (default true)\n"
    "  --reuse-keyshare=BOOL  reuse the client's X25519 key pair for 1024 calls\n"
    "                       (default true; needs --lean-libctx)\n"
    "\n"
    "upstream server:\n"
    "  --serve ADDR         plaintext HTTP/1.1 server on ADDR (port 0 = any free port)\n"
    "  --response-size N    response body bytes (default: a short greeting)\n"
    "  --max-conns N        connection limit (default 100000)\n"
    "\n"
    "DUR: 10s, 250ms, 1.5s, 2m, 1m30s, 100us (a bare number is seconds).\n"
    "Exit status: 0 run completed, 1 no call succeeded (or a fatal error), 2 usage.\n";

const char *tg_bench_usage(void)
{
    return tg_bench_usage_text;
}

static int tg_bench_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int tg_bench_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return TG_ECONFIG;
}

static bool tg_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

void tg_bench_opts_init(struct tg_bench_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->mode = TG_BENCH_MODE_LOAD;
    o->connections = 8;
    o->duration_ns = 5ULL * 1000000000ULL;
    o->groups = "X25519";
    o->timeout_ns = 10ULL * 1000000000ULL;
    o->ssl_reuse = true;
    o->lean_libctx = true;
    o->reuse_keyshare = true;
    o->response_size = TG_BENCH_RESPONSE_DEFAULT;
    o->max_conns = 100000;
}

int tg_bench_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (s == NULL || !tg_is_digit(*s))
        return TG_ECONFIG;
    for (; *s; s++) {
        if (!tg_is_digit(*s))
            return TG_ECONFIG;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return TG_ECONFIG;
        v = v * 10 + d;
    }
    if (v < min || v > max)
        return TG_ECONFIG;
    *out = v;
    return TG_OK;
}

/* Units longest first so that "ms" is not read as "m" followed by garbage. */
static const struct {
    const char *name;
    uint64_t ns;
} tg_duration_units[] = {
    {"ns", 1ULL},
    {"us", 1000ULL},
    {"\xc2\xb5s", 1000ULL}, /* "µs" in UTF-8 */
    {"ms", 1000000ULL},
    {"s", 1000000000ULL},
    {"m", 60ULL * 1000000000ULL},
    {"h", 3600ULL * 1000000000ULL},
};

int tg_bench_parse_duration(const char *s, uint64_t *out_ns)
{
    if (s == NULL || *s == '\0')
        return TG_ECONFIG;
    const char *p = s;
    unsigned __int128 total = 0;
    int segments = 0;
    while (*p) {
        /* number: digits [. digits], at least one digit on either side */
        uint64_t ip = 0, frac = 0, fscale = 1;
        bool digits = false;
        while (tg_is_digit(*p)) {
            unsigned d = (unsigned)(*p++ - '0');
            if (ip > (UINT64_MAX - d) / 10)
                return TG_ECONFIG;
            ip = ip * 10 + d;
            digits = true;
        }
        if (*p == '.') {
            p++;
            while (tg_is_digit(*p)) {
                /* 18 fraction digits are far below a nanosecond for any unit */
                if (fscale < 1000000000000000000ULL) {
                    frac = frac * 10 + (uint64_t)(*p - '0');
                    fscale *= 10;
                }
                p++;
                digits = true;
            }
        }
        if (!digits)
            return TG_ECONFIG;
        uint64_t unit = 0;
        if (*p == '\0') {
            if (segments > 0) /* "1m30" is ambiguous */
                return TG_ECONFIG;
            unit = 1000000000ULL; /* bare number: seconds */
        } else {
            for (size_t i = 0; i < TG_ARRAY_LEN(tg_duration_units); i++) {
                size_t ul = strlen(tg_duration_units[i].name);
                if (strncmp(p, tg_duration_units[i].name, ul) == 0) {
                    unit = tg_duration_units[i].ns;
                    p += ul;
                    break;
                }
            }
            if (unit == 0)
                return TG_ECONFIG;
        }
        total += (unsigned __int128)ip * unit + ((unsigned __int128)frac * unit) / fscale;
        if (total > UINT64_MAX)
            return TG_ECONFIG;
        segments++;
    }
    *out_ns = (uint64_t)total;
    return TG_OK;
}

/* host (without brackets) + port into a socket address. */
static int tg_bench_host_addr(const char *host, bool bracketed, uint16_t port,
                              struct tg_bench_addr *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof(*a));
    if (bracketed) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
            return tg_bench_fail(err, errlen, "'[%s]' is not an IPv6 address", host);
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        a->len = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;
        if (strcasecmp(host, "localhost") == 0) {
            s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        } else if (inet_pton(AF_INET, host, &s4->sin_addr) != 1) {
            if (strchr(host, ':') != NULL)
                return tg_bench_fail(err, errlen, "IPv6 addresses need brackets: [%s]:PORT", host);
            return tg_bench_fail(
                err, errlen, "host '%s' must be an IP address or localhost (no DNS lookups)", host);
        }
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        a->len = sizeof(*s4);
    }
    tg_bench_addr_format(a);
    return TG_OK;
}

void tg_bench_addr_format(struct tg_bench_addr *a)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(a->text, sizeof(a->text), "[%s]:%u", ip, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->ss;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(a->text, sizeof(a->text), "%s:%u", ip, ntohs(s4->sin_port));
    }
}

/*
 * Split "HOST:PORT" / "[V6]:PORT" (s points at the host). On success *rest
 * points after the port (or after the host when there is no ':').
 */
static int tg_bench_split_hostport(const char *s, char *host, size_t hostlen, bool *bracketed,
                                   bool *has_port, uint16_t *port, const char **rest, char *err,
                                   size_t errlen)
{
    const char *h, *hend, *p;
    *bracketed = false;
    if (*s == '[') {
        h = s + 1;
        hend = strchr(h, ']');
        if (hend == NULL)
            return tg_bench_fail(err, errlen, "missing ']' in '%s'", s);
        p = hend + 1;
        *bracketed = true;
    } else {
        h = s;
        hend = s + strcspn(s, ":/");
        p = hend;
        /* "::1:443": the host would be empty; say what is wrong */
        if (hend == h && *p == ':' && p[1] == ':')
            return tg_bench_fail(err, errlen, "IPv6 addresses need brackets: [::1]:PORT");
    }
    size_t hl = (size_t)(hend - h);
    if (hl == 0)
        return tg_bench_fail(err, errlen, "missing host in '%s'", s);
    if (hl >= hostlen)
        return tg_bench_fail(err, errlen, "host too long in '%s'", s);
    memcpy(host, h, hl);
    host[hl] = '\0';
    *has_port = false;
    *port = 0;
    if (*p == ':') {
        p++;
        char num[8];
        size_t nl = strcspn(p, "/");
        if (nl == 0 || nl >= sizeof(num))
            return tg_bench_fail(err, errlen, "bad port in '%s'", s);
        memcpy(num, p, nl);
        num[nl] = '\0';
        uint64_t v;
        if (tg_bench_parse_u64(num, 0, 65535, &v) != TG_OK)
            return tg_bench_fail(err, errlen, "bad port '%s' in '%s'", num, s);
        *port = (uint16_t)v;
        *has_port = true;
        p += nl;
    }
    *rest = p;
    return TG_OK;
}

int tg_bench_parse_target(const char *s, struct tg_bench_target *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    const char *p = s;
    bool https = false;
    if (strncasecmp(p, "https://", 8) == 0) {
        p += 8;
        https = true;
    } else if (strstr(p, "://") != NULL) {
        return tg_bench_fail(err, errlen,
                             "unsupported scheme in '%s': tlsgate bench speaks https:// only", s);
    }
    bool bracketed = false, has_port = false;
    uint16_t port = 0;
    const char *rest = NULL;
    TG_GUARD(tg_bench_split_hostport(p, t->host, sizeof(t->host), &bracketed, &has_port, &port,
                                     &rest, err, errlen));
    if (!has_port) {
        if (!https)
            return tg_bench_fail(err, errlen, "missing port in '%s' (HOST:PORT)", s);
        port = 443;
    }
    if (port == 0)
        return tg_bench_fail(err, errlen, "port 0 in '%s'", s);
    if (*rest != '\0' && *rest != '/')
        return tg_bench_fail(err, errlen, "unexpected '%s' in target '%s'", rest, s);
    if (*rest == '/') {
        if (!https)
            return tg_bench_fail(err, errlen,
                                 "a path needs the https:// form (https://HOST:PORT/path)");
        size_t pl = strlen(rest);
        if (pl >= sizeof(t->path))
            return tg_bench_fail(err, errlen, "path too long in '%s'", s);
        for (size_t i = 0; i < pl; i++) {
            unsigned char c = (unsigned char)rest[i];
            if (c <= 0x20 || c >= 0x7f || c == '#')
                return tg_bench_fail(err, errlen,
                                     "invalid character in path '%s' (percent-encode it)", rest);
        }
        memcpy(t->path, rest, pl + 1);
    }
    TG_GUARD(tg_bench_host_addr(t->host, bracketed, port, &t->addr, err, errlen));
    t->host_is_ip = strcasecmp(t->host, "localhost") != 0;
    const char *lb = bracketed ? "[" : "", *rb = bracketed ? "]" : "";
    if (has_port)
        snprintf(t->authority, sizeof(t->authority), "%s%s%s:%u", lb, t->host, rb, port);
    else
        snprintf(t->authority, sizeof(t->authority), "%s%s%s", lb, t->host, rb);
    return TG_OK;
}

int tg_bench_parse_addr(const char *s, struct tg_bench_addr *a, char *err, size_t errlen)
{
    char host[64];
    bool bracketed = false, has_port = false;
    uint16_t port = 0;
    const char *rest = NULL;
    TG_GUARD(tg_bench_split_hostport(s, host, sizeof(host), &bracketed, &has_port, &port, &rest,
                                     err, errlen));
    if (!has_port || *rest != '\0')
        return tg_bench_fail(err, errlen, "address '%s' must be HOST:PORT or [V6]:PORT", s);
    return tg_bench_host_addr(host, bracketed, port, a, err, errlen);
}

int tg_bench_alpn_wire(const char *list, unsigned char *out, size_t outlen)
{
    size_t n = 0;
    const char *p = list;
    if (list == NULL || *list == '\0')
        return -1;
    for (;;) {
        size_t l = strcspn(p, ",");
        if (l == 0 || l > 255 || n + 1 + l > outlen)
            return -1;
        out[n++] = (unsigned char)l;
        memcpy(out + n, p, l);
        n += l;
        p += l;
        if (*p == '\0')
            break;
        p++; /* ',' */
    }
    return (int)n;
}

/* ------------------------------------------------------------------------- */

enum tg_opt_id {
    O_C,
    O_QPS,
    O_T,
    O_N,
    O_WARMUP,
    O_KEEPALIVE,
    O_K,
    O_CACERT,
    O_SNI,
    O_TLSVER,
    O_GROUPS,
    O_CIPHERS,
    O_CIPHERSUITES,
    O_ALPN,
    O_PAYLOAD,
    O_PATH,
    O_TIMEOUT,
    O_PID,
    O_JSON,
    O_QUIET,
    O_SOURCE_IPS,
    O_CLOSE,
    O_SSL_REUSE,
    O_LEAN_LIBCTX,
    O_REUSE_KEYSHARE,
    O_SERVE,
    O_RESPONSE_SIZE,
    O_MAX_CONNS,
    O_HELP,
    O_COUNT
};

enum tg_opt_arg {
    A_VALUE, /* needs a value: --opt=v or --opt v */
    A_FLAG,  /* no value; --opt=true|false accepted */
    A_BOOL,  /* --opt, --opt=true|false, or --opt true|false */
};

/* Which mode an option belongs to, so that mixing them is reported. */
enum tg_opt_scope { S_LOAD, S_SERVE, S_BOTH };

static const struct {
    const char *name;
    enum tg_opt_id id;
    enum tg_opt_arg arg;
    enum tg_opt_scope scope;
} tg_opts[] = {
    {"c", O_C, A_VALUE, S_LOAD},
    {"connections", O_C, A_VALUE, S_LOAD},
    {"qps", O_QPS, A_VALUE, S_LOAD},
    {"t", O_T, A_VALUE, S_LOAD},
    {"n", O_N, A_VALUE, S_LOAD},
    {"warmup", O_WARMUP, A_VALUE, S_LOAD},
    {"keepalive", O_KEEPALIVE, A_BOOL, S_LOAD},
    {"k", O_K, A_FLAG, S_LOAD},
    {"insecure", O_K, A_FLAG, S_LOAD},
    {"cacert", O_CACERT, A_VALUE, S_LOAD},
    {"sni", O_SNI, A_VALUE, S_LOAD},
    {"tls-version", O_TLSVER, A_VALUE, S_LOAD},
    {"groups", O_GROUPS, A_VALUE, S_LOAD},
    {"ciphers", O_CIPHERS, A_VALUE, S_LOAD},
    {"ciphersuites", O_CIPHERSUITES, A_VALUE, S_LOAD},
    {"alpn", O_ALPN, A_VALUE, S_LOAD},
    {"payload", O_PAYLOAD, A_VALUE, S_LOAD},
    {"path", O_PATH, A_VALUE, S_LOAD},
    {"timeout", O_TIMEOUT, A_VALUE, S_LOAD},
    {"pid", O_PID, A_VALUE, S_LOAD},
    {"json", O_JSON, A_VALUE, S_LOAD},
    {"quiet", O_QUIET, A_FLAG, S_BOTH},
    {"source-ips", O_SOURCE_IPS, A_VALUE, S_LOAD},
    {"close", O_CLOSE, A_VALUE, S_LOAD},
    {"ssl-reuse", O_SSL_REUSE, A_BOOL, S_LOAD},
    {"lean-libctx", O_LEAN_LIBCTX, A_BOOL, S_LOAD},
    {"reuse-keyshare", O_REUSE_KEYSHARE, A_BOOL, S_LOAD},
    {"serve", O_SERVE, A_VALUE, S_SERVE},
    {"response-size", O_RESPONSE_SIZE, A_VALUE, S_SERVE},
    {"max-conns", O_MAX_CONNS, A_VALUE, S_SERVE},
    {"h", O_HELP, A_FLAG, S_BOTH},
    {"help", O_HELP, A_FLAG, S_BOTH},
};

static int tg_parse_bool(const char *s, bool *out)
{
    if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0) {
        *out = true;
        return TG_OK;
    }
    if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0) {
        *out = false;
        return TG_OK;
    }
    return TG_ECONFIG;
}

/* Only the words, not 1/0: "--keepalive 1" must not swallow a TARGET-like "1". */
static bool tg_is_bool_word(const char *s)
{
    return strcmp(s, "true") == 0 || strcmp(s, "false") == 0;
}

/* 1 s .. 1e9 s; the options are written like fortio's: "-qps 1500.5". */
static int tg_parse_rate(const char *s, double *out)
{
    uint64_t ip = 0;
    const char *p = s;
    if (!tg_is_digit(*p))
        return TG_ECONFIG;
    while (tg_is_digit(*p)) {
        ip = ip * 10 + (uint64_t)(*p++ - '0');
        if (ip > 1000000000ULL)
            return TG_ECONFIG;
    }
    double v = (double)ip;
    if (*p == '.') {
        double scale = 0.1;
        p++;
        if (!tg_is_digit(*p))
            return TG_ECONFIG;
        while (tg_is_digit(*p)) {
            v += scale * (*p++ - '0');
            scale /= 10;
        }
    }
    if (*p != '\0')
        return TG_ECONFIG;
    *out = v;
    return TG_OK;
}

static int tg_bench_set(struct tg_bench_opts *o, enum tg_opt_id id, const char *spelled,
                        const char *v, char *err, size_t errlen)
{
    uint64_t u;
    bool b;
    switch (id) {
    case O_C:
        if (tg_bench_parse_u64(v, 1, 1000000, &u) != TG_OK)
            return tg_bench_fail(err, errlen, "%s: expected 1..1000000 connections, got '%s'",
                                 spelled, v);
        o->connections = (uint32_t)u;
        break;
    case O_QPS:
        if (tg_parse_rate(v, &o->qps) != TG_OK)
            return tg_bench_fail(err, errlen, "%s: expected a rate >= 0, got '%s'", spelled, v);
        break;
    case O_T:
        if (tg_bench_parse_duration(v, &o->duration_ns) != TG_OK)
            return tg_bench_fail(err, errlen, "%s: bad duration '%s' (e.g. 10s, 500ms, 2m)",
                                 spelled, v);
        break;
    case O_N:
        if (tg_bench_parse_u64(v, 1, UINT64_MAX / 2, &o->num_calls) != TG_OK)
            return tg_bench_fail(err, errlen, "%s: expected a number of calls >= 1, got '%s'",
                                 spelled, v);
        break;
    case O_WARMUP:
        if (tg_bench_parse_u64(v, 0, UINT64_MAX / 2, &o->warmup) != TG_OK)
            return tg_bench_fail(err, errlen, "%s: expected a number of calls, got '%s'", spelled,
                                 v);
        break;
    case O_KEEPALIVE:
    case O_K:
    case O_QUIET:
    case O_SSL_REUSE:
    case O_LEAN_LIBCTX:
    case O_REUSE_KEYSHARE:
    case O_HELP:
        if (tg_parse_bool(v, &b) != TG_OK)
            return tg_bench_fail(err, errlen, "%s: expected true or false, got '%s'", spelled, v);
        if (id == O_KEEPALIVE)
            o->keepalive = b;
        else if (id == O_K)
            o->insecure = b;
        else if (id == O_QUIET)
            o->quiet = b;
        else if (id == O_SSL_REUSE)
            o->ssl_reuse = b;
        else if (id == O_LEAN_LIBCTX)
            o->lean_libctx = b;
        else if (id == O_REUSE_KEYSHARE)
            o->reuse_keyshare = b;
        else if (b)
            o->mode = TG_BENCH_MODE_HELP;
        break;
    case O_CACERT:
        o->cacert = v;
        break;
    case O_SNI:
        if (*v == '\0' || strlen(v) > 253)
            return tg_bench_fail(err, errlen, "%s: bad server name '%s'", spelled, v);
        o->sni = v;
        break;
    case O_TLSVER:
        if (strcmp(v, "1.2") == 0)
            o->tls_version = 0x0303;
        else if (strcmp(v, "1.3") == 0)
            o->tls_version = 0x0304;
        else
            return tg_bench_fail(err, errlen, "%s: expected 1.2 or 1.3, got '%s'", spelled, v);
        break;
    case O_GROUPS:
        if (*v == '\0')
            return tg_bench_fail(err, errlen, "%s: empty list", spelled);
        o->groups = v;
        break;
    case O_CIPHERS:
        o->ciphers = v;
        break;
    case O_CIPHERSUITES:
        o->ciphersuites = v;
        break;
    case O_ALPN: {
        unsigned char wire[256];
        if (tg_bench_alpn_wire(v, wire, sizeof(wire)) < 0)
            return tg_bench_fail(err, errlen, "%s: bad protocol list '%s'", spelled, v);
        o->alpn = v;
        break;
    }
    case O_PAYLOAD:
        if (tg_bench_parse_u64(v, 0, 64ULL << 20, &o->payload) != TG_OK)
            return tg_bench_fail(err, errlen, "%s: expected 0..%llu bytes, got '%s'", spelled,
                                 64ULL << 20, v);
        break;
    case O_PATH:
        if (v[0] != '/')
            return tg_bench_fail(err, errlen, "%s: the path must start with '/', got '%s'", spelled,
                                 v);
        for (const char *c = v; *c; c++) {
            if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f || *c == '#')
                return tg_bench_fail(err, errlen, "%s: invalid character in '%s'", spelled, v);
        }
        if (strlen(v) >= sizeof(o->target.path))
            return tg_bench_fail(err, errlen, "%s: path too long", spelled);
        o->path = v;
        break;
    case O_TIMEOUT:
        if (tg_bench_parse_duration(v, &o->timeout_ns) != TG_OK || o->timeout_ns < 1000000ULL)
            return tg_bench_fail(err, errlen, "%s: expected a duration >= 1ms, got '%s'", spelled,
                                 v);
        break;
    case O_PID:
        if (tg_bench_parse_u64(v, 1, 0x7fffffff, &u) != TG_OK)
            return tg_bench_fail(err, errlen, "%s: expected a process id, got '%s'", spelled, v);
        o->pid = (long)u;
        break;
    case O_JSON:
        if (*v == '\0')
            return tg_bench_fail(err, errlen, "%s: empty file name", spelled);
        o->json = v;
        break;
    case O_SOURCE_IPS:
        if (tg_bench_parse_u64(v, 0, 254, &u) != TG_OK)
            return tg_bench_fail(err, errlen, "%s: expected 0..254, got '%s'", spelled, v);
        o->source_ips = (uint32_t)u;
        break;
    case O_CLOSE:
        if (strcmp(v, "auto") == 0)
            o->close_mode = TG_BENCH_CLOSE_AUTO;
        else if (strcmp(v, "server") == 0)
            o->close_mode = TG_BENCH_CLOSE_SERVER;
        else if (strcmp(v, "client") == 0)
            o->close_mode = TG_BENCH_CLOSE_CLIENT;
        else
            return tg_bench_fail(err, errlen, "%s: expected auto, server or client, got '%s'",
                                 spelled, v);
        break;
    case O_SERVE:
        if (tg_bench_parse_addr(v, &o->serve, err, errlen) != TG_OK) {
            char inner[TG_BENCH_ERRLEN];
            snprintf(inner, sizeof(inner), "%s", err ? err : "");
            return tg_bench_fail(err, errlen, "%s: %s", spelled, inner);
        }
        o->mode = o->mode == TG_BENCH_MODE_HELP ? TG_BENCH_MODE_HELP : TG_BENCH_MODE_SERVE;
        break;
    case O_RESPONSE_SIZE:
        if (tg_bench_parse_u64(v, 0, 64ULL << 20, &o->response_size) != TG_OK)
            return tg_bench_fail(err, errlen, "%s: expected 0..%llu bytes, got '%s'", spelled,
                                 64ULL << 20, v);
        break;
    case O_MAX_CONNS:
        if (tg_bench_parse_u64(v, 1, 10000000, &o->max_conns) != TG_OK)
            return tg_bench_fail(err, errlen, "%s: expected 1..10000000, got '%s'", spelled, v);
        break;
    case O_COUNT:
        break;
    }
    return TG_OK;
}

int tg_bench_parse_args(int argc, char **argv, struct tg_bench_opts *o, char *err, size_t errlen)
{
    bool seen[O_COUNT] = {false};
    enum tg_opt_scope scope[O_COUNT] = {S_BOTH};
    const char *seen_as[O_COUNT] = {NULL};
    const char *target = NULL;
    bool opts_done = false;

    tg_bench_opts_init(o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (opts_done || a[0] != '-' || a[1] == '\0') {
            if (strcmp(a, "-") == 0)
                return tg_bench_fail(err, errlen, "unexpected argument '-'");
            if (target != NULL)
                return tg_bench_fail(err, errlen, "more than one target: '%s' and '%s'", target, a);
            target = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            opts_done = true;
            continue;
        }
        const char *name = a + (a[1] == '-' ? 2 : 1);
        const char *eq = strchr(name, '=');
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        size_t k;
        for (k = 0; k < TG_ARRAY_LEN(tg_opts); k++) {
            if (strlen(tg_opts[k].name) == nl && strncmp(tg_opts[k].name, name, nl) == 0)
                break;
        }
        if (k == TG_ARRAY_LEN(tg_opts)) {
            if (eq != NULL)
                return tg_bench_fail(err, errlen, "unknown option '%.*s'", (int)(eq - a), a);
            return tg_bench_fail(err, errlen, "unknown option '%s'", a);
        }
        const char *v;
        switch (tg_opts[k].arg) {
        case A_VALUE:
            if (eq != NULL) {
                v = eq + 1;
            } else if (i + 1 < argc) {
                v = argv[++i];
            } else {
                return tg_bench_fail(err, errlen, "option '%s' needs a value", a);
            }
            break;
        case A_BOOL:
            if (eq != NULL)
                v = eq + 1;
            else if (i + 1 < argc && tg_is_bool_word(argv[i + 1]))
                v = argv[++i];
            else
                v = "true";
            break;
        default: /* A_FLAG */
            v = eq != NULL ? eq + 1 : "true";
            break;
        }
        char spelled[40];
        snprintf(spelled, sizeof(spelled), "%.*s", (int)(nl + (size_t)(name - a)), a);
        TG_GUARD(tg_bench_set(o, tg_opts[k].id, spelled, v, err, errlen));
        seen[tg_opts[k].id] = true;
        scope[tg_opts[k].id] = tg_opts[k].scope;
        seen_as[tg_opts[k].id] = tg_opts[k].name;
    }

    if (o->mode == TG_BENCH_MODE_HELP)
        return TG_OK;

    /* Options of the other mode are a mistake worth reporting, not ignoring. */
    bool serve = seen[O_SERVE];
    for (int id = 0; id < O_COUNT; id++) {
        if (!seen[id])
            continue;
        if (serve && scope[id] == S_LOAD)
            return tg_bench_fail(err, errlen, "option '--%s' does not apply to --serve",
                                 seen_as[id]);
        if (!serve && scope[id] == S_SERVE)
            return tg_bench_fail(err, errlen, "option '--%s' only applies to --serve", seen_as[id]);
    }
    if (serve) {
        if (target != NULL)
            return tg_bench_fail(err, errlen, "--serve takes no target (got '%s')", target);
        return TG_OK;
    }

    if (target == NULL)
        return tg_bench_fail(err, errlen, "missing TARGET (https://HOST:PORT/path or HOST:PORT)");
    TG_GUARD(tg_bench_parse_target(target, &o->target, err, errlen));
    if (seen[O_T] && seen[O_N])
        return tg_bench_fail(err, errlen, "-t and -n are exclusive");
    if (!o->insecure && o->cacert == NULL)
        return tg_bench_fail(err, errlen,
                             "no way to verify the server: give --cacert FILE, or -k to skip");
    if (o->insecure && o->cacert != NULL)
        return tg_bench_fail(err, errlen, "-k and --cacert are exclusive");
    if (o->path != NULL) {
        if (o->target.path[0] != '\0')
            return tg_bench_fail(err, errlen, "--path given but TARGET already has path '%s'",
                                 o->target.path);
        snprintf(o->target.path, sizeof(o->target.path), "%s", o->path);
    }
    if (o->target.path[0] == '\0')
        snprintf(o->target.path, sizeof(o->target.path), "/");
    if (o->source_ips > 0 && o->target.addr.ss.ss_family != AF_INET)
        return tg_bench_fail(err, errlen, "--source-ips needs an IPv4 target");
    if (o->num_calls > 0 && o->connections > o->num_calls)
        o->connections = (uint32_t)o->num_calls;
    return TG_OK;
}
