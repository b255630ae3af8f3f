/*
 * tg_conf_parse: the scalar parsers behind every configuration value:
 * unsigned integers, byte sizes, durations (exact decimal arithmetic, no
 * floating point), booleans and "host:port" socket addresses (numeric or
 * localhost, never DNS).
 *
 * Contract: each parser takes a NUL-terminated string and returns TG_OK or
 * TG_ECONFIG; the output is written only on success. Addresses are the one
 * allocation (out->text, released with tg_conf_addr_clear, which lives here
 * with the address it clears). Nothing here formats messages or keeps state,
 * so every function may be called from any thread.
 */
#include "config/tg_conf_parse.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

bool tg_conf_parse_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool tg_conf_parse_mul(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a != 0 && b > UINT64_MAX / a)
        return false;
    *out = a * b;
    return true;
}

/* Digits only: no sign, no blanks, no base prefix. */
static bool tg_conf_parse_digits(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (s == NULL || !tg_conf_parse_is_digit(*s))
        return false;
    for (; *s != '\0'; s++) {
        if (!tg_conf_parse_is_digit(*s))
            return false;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

int tg_conf_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v;
    if (!tg_conf_parse_digits(s, &v) || v < min || v > max)
        return TG_ECONFIG;
    *out = v;
    return TG_OK;
}

int tg_conf_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t mul;
    } units[] = {{"", 1}, {"B", 1}, {"KiB", 1ULL << 10}, {"MiB", 1ULL << 20}, {"GiB", 1ULL << 30}};
    char digits[24];
    size_t n = 0;
    uint64_t v;
    if (s == NULL)
        return TG_ECONFIG;
    while (tg_conf_parse_is_digit(s[n]) && n < sizeof(digits) - 1) {
        digits[n] = s[n];
        n++;
    }
    digits[n] = '\0';
    if (!tg_conf_parse_digits(digits, &v))
        return TG_ECONFIG;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(s + n, units[i].unit) == 0) {
            if (!tg_conf_parse_mul(v, units[i].mul, &v) || v < min || v > max)
                return TG_ECONFIG;
            *out = v;
            return TG_OK;
        }
    }
    return TG_ECONFIG;
}

int tg_conf_parse_bool(const char *s, bool *out)
{
    static const char *const t[] = {"true", "True", "TRUE"};
    static const char *const f[] = {"false", "False", "FALSE"};
    if (s == NULL)
        return TG_ECONFIG;
    for (size_t i = 0; i < TG_ARRAY_LEN(t); i++) {
        if (strcmp(s, t[i]) == 0) {
            *out = true;
            return TG_OK;
        }
        if (strcmp(s, f[i]) == 0) {
            *out = false;
            return TG_OK;
        }
    }
    return TG_ECONFIG;
}

/*
 * Durations are parsed as exact decimals: a unit is c * 10^e nanoseconds
 * (c in {1, 6, 36}), and "I.F<unit>" is the integer D = I followed by the
 * significant digits of F (k of them), so the value is D * c * 10^(e - k).
 * No floating point is involved, so "0.001s" is exactly 1000000 ns. A value
 * that is not a whole number of nanoseconds is rejected rather than rounded.
 */
int tg_conf_parse_duration(const char *s, uint64_t *out_ns)
{
    static const struct {
        const char *name;
        uint64_t c;
        unsigned e;
    } units[] = {
        {"ns", 1, 0}, {"us", 1, 3}, {"ms", 1, 6},  {"s", 1, 9},
        {"", 1, 9},   {"m", 6, 10}, {"h", 36, 11},
    };
    static const uint64_t pow10[] = {
        1,       10,       100,       1000,       10000,          100000,
        1000000, 10000000, 100000000, 1000000000, 10000000000ULL, 100000000000ULL};
    uint64_t d = 0;
    unsigned k = 0;
    const char *p = s;

    if (s == NULL || !tg_conf_parse_is_digit(*p))
        return TG_ECONFIG;
    for (; tg_conf_parse_is_digit(*p); p++) {
        unsigned dg = (unsigned)(*p - '0');
        if (d > (UINT64_MAX - dg) / 10)
            return TG_ECONFIG;
        d = d * 10 + dg;
    }
    if (*p == '.') {
        const char *f = ++p;
        const char *last = NULL; /* last non-zero fraction digit */
        if (!tg_conf_parse_is_digit(*p))
            return TG_ECONFIG;
        for (; tg_conf_parse_is_digit(*p); p++) {
            if (*p != '0')
                last = p;
        }
        for (const char *q = f; last != NULL && q <= last; q++) {
            unsigned dg = (unsigned)(*q - '0');
            if (d > (UINT64_MAX - dg) / 10)
                return TG_ECONFIG;
            d = d * 10 + dg;
            k++;
        }
    }
    for (size_t i = 0; i < TG_ARRAY_LEN(units); i++) {
        if (strcmp(p, units[i].name) != 0)
            continue;
        uint64_t v;
        if (!tg_conf_parse_mul(d, units[i].c, &v))
            return TG_ECONFIG;
        if (k <= units[i].e) {
            if (!tg_conf_parse_mul(v, pow10[units[i].e - k], &v))
                return TG_ECONFIG;
        } else {
            /* Significant digits below 1 ns: exact only in rare cases
             * ("0.0000000000025h" = 9 ns), never more than 2 places. */
            unsigned j = k - units[i].e;
            if (j >= TG_ARRAY_LEN(pow10) || v % pow10[j] != 0)
                return TG_ECONFIG;
            v /= pow10[j];
        }
        *out_ns = v;
        return TG_OK;
    }
    return TG_ECONFIG;
}

uint16_t tg_conf_parse_port(const struct tg_conf_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    if (a->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    return 0;
}

bool tg_conf_parse_same_addr(const struct tg_conf_addr *a, const struct tg_conf_addr *b)
{
    if (a->ss.ss_family != b->ss.ss_family || tg_conf_parse_port(a) != tg_conf_parse_port(b))
        return false;
    if (a->ss.ss_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)&a->ss)->sin_addr,
                      &((const struct sockaddr_in *)&b->ss)->sin_addr, sizeof(struct in_addr)) == 0;
    return memcmp(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr,
                  &((const struct sockaddr_in6 *)&b->ss)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

/* Returns NULL on success or why s is not an address. *out is only written
 * on success. */
const char *tg_conf_parse_addr_why(const char *s, struct tg_conf_addr *out)
{
    char host[64];
    const char *hs, *he, *port;
    bool v6 = false;
    uint64_t pnum;
    struct sockaddr_storage ss;
    socklen_t len;

    if (s == NULL || *s == '\0')
        return "empty address";
    if (s[0] == '[') {
        hs = s + 1;
        he = strchr(hs, ']');
        if (he == NULL)
            return "missing ']' after the IPv6 address";
        if (he[1] != ':')
            return "missing ':port' after ']'";
        port = he + 2;
        v6 = true;
    } else {
        hs = s;
        he = strrchr(s, ':');
        if (he == NULL)
            return "missing ':port'";
        if (memchr(hs, ':', (size_t)(he - hs)) != NULL)
            return "IPv6 addresses must be written in brackets, e.g. [::1]:8443";
        port = he + 1;
    }
    if (he == hs)
        return "missing host (use 0.0.0.0 or [::] for all addresses)";
    if ((size_t)(he - hs) >= sizeof(host))
        return "host too long";
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = '\0';
    if (tg_conf_parse_u64(port, 0, 65535, &pnum) != TG_OK)
        return "port must be a number in 0..65535";

    memset(&ss, 0, sizeof(ss));
    if (v6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            return "not a valid IPv6 address";
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)pnum);
        len = sizeof(*sin6);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        if (strcmp(host, "localhost") == 0)
            sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
            return "host must be an IPv4 address, [IPv6] or localhost (names are not resolved)";
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)pnum);
        len = sizeof(*sin);
    }
    char *text = strdup(s);
    if (text == NULL)
        return "out of memory";
    out->text = text;
    out->ss = ss;
    out->len = len;
    return NULL;
}

int tg_conf_parse_addr(const char *s, struct tg_conf_addr *out)
{
    return tg_conf_parse_addr_why(s, out) == NULL ? TG_OK : TG_ECONFIG;
}

void tg_conf_addr_clear(struct tg_conf_addr *a)
{
    if (a == NULL)
        return;
    free(a->text);
    memset(a, 0, sizeof(*a));
}

/* A host name as DNS and the hosts file know them; all digits and dots is
 * a mistyped IPv4 address, not a name. */
static const char *tg_conf_parse_name_why(const char *h, size_t len)
{
    bool numeric = true;
    size_t label = 0;
    if (len > 0 && h[len - 1] == '.')
        len--; /* an absolute name */
    if (len == 0)
        return "missing host";
    if (len > 253)
        return "host name longer than 253 characters";
    for (size_t i = 0; i <= len; i++) {
        char c = i < len ? h[i] : '.';
        if (c == '.') {
            if (label == 0)
                return "empty label in host name";
            if (h[i - 1] == '-')
                return "a host name label may not end with '-'";
            label = 0;
            continue;
        }
        if (label == 0 && c == '-')
            return "a host name label may not start with '-'";
        if (++label > 63)
            return "host name label longer than 63 characters";
        if (!tg_conf_parse_is_digit(c))
            numeric = false;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || tg_conf_parse_is_digit(c) ||
              c == '-' || c == '_'))
            return "host must be an IPv4 address, [IPv6] or a host name (letters, digits, '-', "
                   "'_', '.')";
    }
    if (numeric)
        return "not a valid IPv4 address";
    return NULL;
}

const char *tg_conf_parse_hostport(const char *s, char **host, uint16_t *port, bool *is_name,
                                   struct tg_conf_addr *addr)
{
    const char *hs, *he, *ps;
    uint64_t pnum;
    bool literal;

    if (s == NULL || *s == '\0')
        return "empty address";
    if (s[0] == '[') {
        hs = s + 1;
        he = strchr(hs, ']');
        if (he == NULL)
            return "missing ']' after the IPv6 address";
        if (he[1] != ':')
            return "missing ':port' after ']'";
        ps = he + 2;
        literal = true;
    } else {
        hs = s;
        he = strrchr(s, ':');
        if (he == NULL)
            return "missing ':port'";
        if (memchr(hs, ':', (size_t)(he - hs)) != NULL)
            return "IPv6 addresses must be written in brackets, e.g. [::1]:8443";
        ps = he + 1;
        char tmp[INET_ADDRSTRLEN];
        struct in_addr a4;
        size_t hl = (size_t)(he - hs);
        literal = false;
        if (hl < sizeof(tmp)) {
            memcpy(tmp, hs, hl);
            tmp[hl] = '\0';
            literal = inet_pton(AF_INET, tmp, &a4) == 1;
        }
    }
    if (tg_conf_parse_u64(ps, 1, 65535, &pnum) != TG_OK)
        return "port must be a number in 1..65535";
    if (he == hs)
        return "missing host";
    if (!literal) {
        const char *why = tg_conf_parse_name_why(hs, (size_t)(he - hs));
        if (why != NULL)
            return why;
    }
    struct tg_conf_addr a;
    memset(&a, 0, sizeof(a));
    if (literal) {
        const char *why = tg_conf_parse_addr_why(s, &a);
        if (why != NULL)
            return why;
    }
    char *h = strndup(hs, (size_t)(he - hs));
    if (h == NULL) {
        tg_conf_addr_clear(&a);
        return "out of memory";
    }
    *host = h;
    *port = (uint16_t)pnum;
    *is_name = !literal;
    if (literal)
        *addr = a;
    return NULL;
}

const char *tg_conf_parse_resolver(const char *s, char *buf, size_t len)
{
    char tmp[80];
    struct in6_addr a6;
    struct in_addr a4;
    struct tg_conf_addr a;

    if (s == NULL || *s == '\0')
        return "empty address";
    if (strlen(s) >= sizeof(tmp) - 4)
        return "address too long";
    /* Without a port: 53. */
    if (inet_pton(AF_INET6, s, &a6) == 1)
        snprintf(tmp, sizeof(tmp), "[%s]:53", s);
    else if (inet_pton(AF_INET, s, &a4) == 1 || (s[0] == '[' && s[strlen(s) - 1] == ']'))
        snprintf(tmp, sizeof(tmp), "%s:53", s);
    else
        snprintf(tmp, sizeof(tmp), "%s", s);
    const char *why = tg_conf_parse_addr_why(tmp, &a);
    if (why != NULL)
        return why;
    uint16_t port = tg_conf_parse_port(&a);
    char host[INET6_ADDRSTRLEN];
    if (a.ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a.ss)->sin6_addr, host, sizeof(host));
    else
        inet_ntop(AF_INET, &((const struct sockaddr_in *)&a.ss)->sin_addr, host, sizeof(host));
    bool v6 = a.ss.ss_family == AF_INET6;
    tg_conf_addr_clear(&a);
    if (port == 0)
        return "port must be in 1..65535";
    int n = snprintf(buf, len, v6 ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
    if (n < 0 || (size_t)n >= len)
        return "address too long";
    return NULL;
}
