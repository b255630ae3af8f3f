/*
 * tg_config: YAML (libyaml document API) -> validated struct tg_config.
 *
 * Shape of the loader:
 *   1. a pre-pass over libyaml's event stream rejects what the document API
 *      would silently accept or resolve: aliases and anchors, more than one
 *      document, absurd nesting; and it reports syntax errors with marks;
 *   2. yaml_parser_load() builds the node tree;
 *   3. a schema-driven walk copies every value into the config structs.
 *
 * Every allocation is attached to the config as soon as it is made (arrays
 * are zeroed and counted before they are filled), so any failure simply calls
 * tg_config_free() on the partial result: there is one cleanup path.
 */
#include "config/tg_config.h"

#include "core/tg_log.h"
#include "core/tg_time.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/prov_ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

/* Largest config file and largest referenced PEM file we read. */
#define TG_CONF_MAX_FILE ((size_t)16 << 20)
/* Deepest nesting the pre-pass lets through (the schema needs 7). */
#define TG_CONF_MAX_DEPTH 64
#define TG_CONF_PATHMAX   512
/* Room for a user value quoted in a message. */
#define TG_CONF_EXCERPT 72

#define TG_CONF_MAX_CONCURRENCY 256

/* ------------------------------------------------------------------------ */
/* Known provider names                                                     */

/* The program's provider names (tg_config_set_known_providers); NULL: any
 * name passes here and the key-provider registry judges it at start-up. */
static const char *const *tg_conf_providers;

void tg_config_set_known_providers(const char *const *names)
{
    tg_conf_providers = names;
}

static bool tg_conf_provider_known(const char *name)
{
    if (tg_conf_providers == NULL)
        return true;
    for (size_t i = 0; tg_conf_providers[i] != NULL; i++) {
        if (strcmp(tg_conf_providers[i], name) == 0)
            return true;
    }
    return false;
}

/* ------------------------------------------------------------------------ */
/* Error formatting                                                         */

static void tg_conf_verror(char *err, size_t errlen, const struct tg_conf_mark *mark,
                           const char *path, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

static void tg_conf_verror(char *err, size_t errlen, const struct tg_conf_mark *mark,
                           const char *path, const char *fmt, va_list ap)
{
    if (err == NULL || errlen == 0)
        return;
    const char *file = (mark != NULL && mark->file != NULL) ? mark->file : "<config>";
    size_t off = 0;
    int n;
    if (mark != NULL && mark->line > 0)
        n = snprintf(err, errlen, "%s:%d:%d: ", file, mark->line, mark->col);
    else
        n = snprintf(err, errlen, "%s: ", file);
    if (n > 0)
        off = (size_t)n < errlen ? (size_t)n : errlen - 1;
    if (path != NULL && path[0] != '\0' && off < errlen - 1) {
        n = snprintf(err + off, errlen - off, "%s: ", path);
        if (n > 0)
            off += (size_t)n < errlen - off ? (size_t)n : errlen - off - 1;
    }
    if (off < errlen - 1)
        vsnprintf(err + off, errlen - off, fmt, ap);
    /* The contract is one line: values quoted from the file may hold
     * newlines or other control characters. */
    for (char *p = err; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    }
}

void tg_conf_error(char *err, size_t errlen, const struct tg_conf_mark *mark, const char *path,
                   const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tg_conf_verror(err, errlen, mark, path, fmt, ap);
    va_end(ap);
}

/* A short excerpt of user text for a message (the rest is elided). */
static const char *tg_excerpt(const char *s, char *buf, size_t n)
{
    size_t len = strlen(s);
    if (len < n) {
        memcpy(buf, s, len + 1);
        return buf;
    }
    memcpy(buf, s, n - 4);
    memcpy(buf + n - 4, "...", 4);
    return buf;
}

/* ------------------------------------------------------------------------ */
/* Value parsers                                                            */

static bool tg_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool tg_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a != 0 && b > UINT64_MAX / a)
        return false;
    *out = a * b;
    return true;
}

/* Digits only: no sign, no blanks, no base prefix. */
static bool tg_parse_digits(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (s == NULL || !tg_is_digit(*s))
        return false;
    for (; *s != '\0'; s++) {
        if (!tg_is_digit(*s))
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
    if (!tg_parse_digits(s, &v) || v < min || v > max)
        return TG_ECONFIG;
    *out = v;
    return TG_OK;
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

    if (s == NULL || !tg_is_digit(*p))
        return TG_ECONFIG;
    for (; tg_is_digit(*p); p++) {
        unsigned dg = (unsigned)(*p - '0');
        if (d > (UINT64_MAX - dg) / 10)
            return TG_ECONFIG;
        d = d * 10 + dg;
    }
    if (*p == '.') {
        const char *f = ++p;
        const char *last = NULL; /* last non-zero fraction digit */
        if (!tg_is_digit(*p))
            return TG_ECONFIG;
        for (; tg_is_digit(*p); p++) {
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
        if (!tg_mul_u64(d, units[i].c, &v))
            return TG_ECONFIG;
        if (k <= units[i].e) {
            if (!tg_mul_u64(v, pow10[units[i].e - k], &v))
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

static uint16_t tg_conf_addr_port(const struct tg_conf_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    if (a->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    return 0;
}

static bool tg_conf_addr_equal(const struct tg_conf_addr *a, const struct tg_conf_addr *b)
{
    if (a->ss.ss_family != b->ss.ss_family || tg_conf_addr_port(a) != tg_conf_addr_port(b))
        return false;
    if (a->ss.ss_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)&a->ss)->sin_addr,
                      &((const struct sockaddr_in *)&b->ss)->sin_addr, sizeof(struct in_addr)) == 0;
    return memcmp(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr,
                  &((const struct sockaddr_in6 *)&b->ss)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

/* Returns NULL on success or why s is not an address. *out is only written
 * on success. */
static const char *tg_addr_parse(const char *s, struct tg_conf_addr *out)
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
    return tg_addr_parse(s, out) == NULL ? TG_OK : TG_ECONFIG;
}

void tg_conf_addr_clear(struct tg_conf_addr *a)
{
    if (a == NULL)
        return;
    free(a->text);
    memset(a, 0, sizeof(*a));
}

/* ------------------------------------------------------------------------ */
/* Files                                                                    */

/* Read a whole file into a NUL-terminated buffer. Every buffer released on
 * the way (growth, errors) is wiped first, as the file may be a private key.
 * Returns 0 or an errno value. */
static int tg_read_file(const char *path, char **out, size_t *outlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    struct stat st;
    char *buf = NULL;
    size_t cap, len = 0;
    int rc = 0;

    if (fstat(fd, &st) != 0) {
        rc = errno;
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = EISDIR;
        goto out;
    }
    if (st.st_size > 0 && (uint64_t)st.st_size > TG_CONF_MAX_FILE) {
        rc = EFBIG;
        goto out;
    }
    /* One spare byte beyond the size so that EOF is seen without growing. */
    cap = st.st_size > 0 ? (size_t)st.st_size + 2 : 4096;
    buf = malloc(cap);
    if (buf == NULL) {
        rc = ENOMEM;
        goto out;
    }
    for (;;) {
        if (len + 1 == cap) {
            /* The file grew (or is not a regular file): move to a bigger
             * buffer by hand so the old one can be wiped. */
            if (cap > TG_CONF_MAX_FILE) {
                rc = EFBIG;
                goto out;
            }
            char *nb = malloc(cap * 2);
            if (nb == NULL) {
                rc = ENOMEM;
                goto out;
            }
            memcpy(nb, buf, len);
            OPENSSL_cleanse(buf, cap);
            free(buf);
            buf = nb;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = errno;
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    buf = NULL;
out:
    if (buf != NULL) {
        OPENSSL_cleanse(buf, cap);
        free(buf);
    }
    close(fd);
    return rc;
}

static void tg_free_secret(char *p, size_t len)
{
    if (p == NULL)
        return;
    OPENSSL_cleanse(p, len);
    free(p);
}

/* ------------------------------------------------------------------------ */
/* Freeing                                                                  */

static void tg_datasource_free(struct tg_conf_datasource *ds)
{
    free(ds->filename);
    /* Certificate chains are not secret, but wiping every source keeps the
     * rule simple and costs nothing measurable. */
    tg_free_secret(ds->data, ds->data_len);
    memset(ds, 0, sizeof(*ds));
}

static void tg_strv_free(char **v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++)
        free(v[i]);
    free(v);
}

static void tg_params_free(struct tg_conf_params *p)
{
    for (size_t i = 0; p->v != NULL && i < p->n; i++) {
        struct tg_conf_param *q = &p->v[i];
        free(q->key);
        /* Provider settings may be secrets (a PIN, a device password). */
        if (q->value != NULL)
            tg_free_secret(q->value, strlen(q->value));
        tg_strv_free(q->items, q->nitems);
    }
    free(p->v);
    free(p->path);
    memset(p, 0, sizeof(*p));
}

static void tg_listener_free(struct tg_conf_listener *l)
{
    free(l->name);
    tg_conf_addr_clear(&l->addr);
    for (size_t i = 0; l->tls.certs != NULL && i < l->tls.n_certs; i++) {
        struct tg_conf_cert *c = &l->tls.certs[i];
        tg_datasource_free(&c->chain);
        tg_datasource_free(&c->private_key);
        tg_strv_free(c->server_names, c->n_server_names);
        free(c->keyprov.provider_name);
        free(c->keyprov.path);
        tg_params_free(&c->keyprov.typed_config);
        free(c->path);
    }
    free(l->tls.certs);
    free(l->tls.kx_provider.provider_name);
    free(l->tls.kx_provider.path);
    tg_params_free(&l->tls.kx_provider.typed_config);
    tg_strv_free(l->tls.alpn, l->tls.n_alpn);
    free(l->tls.cipher_list);
    free(l->tls.cipher_suites);
    free(l->tls.groups);
    tg_conf_addr_clear(&l->upstream.addr);
    free(l->path);
}

void tg_config_free(struct tg_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; cfg->listeners != NULL && i < cfg->n_listeners; i++)
        tg_listener_free(&cfg->listeners[i]);
    free(cfg->listeners);
    tg_conf_addr_clear(&cfg->admin);
    free(cfg->source_name);
    free(cfg->state_dir);
    free(cfg);
}

/* ------------------------------------------------------------------------ */
/* The walk over the node tree                                              */

struct tg_cp {
    yaml_document_t *doc;
    struct tg_config *cfg;
    const char *basedir; /* relative filenames are resolved here; NULL = as given */
    char *err;
    size_t errlen;
    size_t plen;
    char path[TG_CONF_PATHMAX]; /* "listeners[0].tls" while inside that node */
};

static struct tg_conf_mark tg_cp_mark(const struct tg_cp *cp, const yaml_node_t *n)
{
    struct tg_conf_mark m = {cp->cfg->source_name, 0, 0};
    if (n != NULL) {
        m.line = n->start_mark.line < INT_MAX ? (int)n->start_mark.line + 1 : INT_MAX;
        m.col = n->start_mark.column < INT_MAX ? (int)n->start_mark.column + 1 : INT_MAX;
    }
    return m;
}

static int tg_cp_fail(struct tg_cp *cp, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Report at node n under the current path; returns TG_ECONFIG. */
static int tg_cp_fail(struct tg_cp *cp, const yaml_node_t *n, const char *fmt, ...)
{
    struct tg_conf_mark m = tg_cp_mark(cp, n);
    va_list ap;
    va_start(ap, fmt);
    tg_conf_verror(cp->err, cp->errlen, &m, cp->path, fmt, ap);
    va_end(ap);
    return TG_ECONFIG;
}

static int tg_cp_nomem(struct tg_cp *cp)
{
    struct tg_conf_mark m = {cp->cfg->source_name, 0, 0};
    tg_conf_error(cp->err, cp->errlen, &m, NULL, "out of memory");
    return TG_ENOMEM;
}

static size_t tg_cp_push_key(struct tg_cp *cp, const char *key)
{
    size_t old = cp->plen;
    size_t room = sizeof(cp->path) - cp->plen;
    int n = snprintf(cp->path + cp->plen, room, "%s%s", cp->plen > 0 ? "." : "", key);
    if (n > 0)
        cp->plen += (size_t)n < room ? (size_t)n : room - 1;
    return old;
}

static size_t tg_cp_push_index(struct tg_cp *cp, size_t i)
{
    size_t old = cp->plen;
    size_t room = sizeof(cp->path) - cp->plen;
    int n = snprintf(cp->path + cp->plen, room, "[%zu]", i);
    if (n > 0)
        cp->plen += (size_t)n < room ? (size_t)n : room - 1;
    return old;
}

static void tg_cp_pop(struct tg_cp *cp, size_t old)
{
    cp->plen = old;
    cp->path[old] = '\0';
}

static char *tg_cp_path_dup(struct tg_cp *cp)
{
    return strdup(cp->path);
}

static yaml_node_t *tg_cp_node(struct tg_cp *cp, int idx)
{
    return yaml_document_get_node(cp->doc, idx);
}

static const char *tg_scalar(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

static bool tg_node_is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = tg_scalar(n);
    return strcmp(s, "") == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

static const char *tg_node_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a sequence";
    case YAML_SCALAR_NODE:
        return tg_node_is_null(n) ? "an empty value" : "a scalar";
    default:
        return "nothing";
    }
}

/* A string value (not null, no NUL bytes inside). */
static int tg_cp_scalar(struct tg_cp *cp, const yaml_node_t *n, const char *what, const char **out)
{
    *out = NULL;
    if (n->type != YAML_SCALAR_NODE || tg_node_is_null(n))
        return tg_cp_fail(cp, n, "expected %s, got %s", what, tg_node_kind(n));
    if (strlen(tg_scalar(n)) != n->data.scalar.length)
        return tg_cp_fail(cp, n, "value contains a NUL character");
    *out = tg_scalar(n);
    return TG_OK;
}

static int tg_cp_strdup(struct tg_cp *cp, const char *s, char **out)
{
    char *d = strdup(s);
    if (d == NULL)
        return tg_cp_nomem(cp);
    free(*out);
    *out = d;
    return TG_OK;
}

/* A non-empty string, copied. */
static int tg_cp_string(struct tg_cp *cp, const yaml_node_t *n, char **out)
{
    const char *s;
    TG_GUARD(tg_cp_scalar(cp, n, "a string", &s));
    if (*s == '\0')
        return tg_cp_fail(cp, n, "must not be empty");
    return tg_cp_strdup(cp, s, out);
}

static int tg_cp_u64(struct tg_cp *cp, const yaml_node_t *n, uint64_t min, uint64_t max,
                     uint64_t *out)
{
    const char *s;
    char ex[TG_CONF_EXCERPT];
    TG_GUARD(tg_cp_scalar(cp, n, "an integer", &s));
    if (tg_conf_parse_u64(s, min, max, out) != TG_OK)
        return tg_cp_fail(cp, n, "expected an integer in %llu..%llu, got '%s'",
                          (unsigned long long)min, (unsigned long long)max,
                          tg_excerpt(s, ex, sizeof(ex)));
    return TG_OK;
}

static int tg_cp_bool(struct tg_cp *cp, const yaml_node_t *n, bool *out)
{
    const char *s;
    char ex[TG_CONF_EXCERPT];
    TG_GUARD(tg_cp_scalar(cp, n, "true or false", &s));
    if (tg_conf_parse_bool(s, out) != TG_OK)
        return tg_cp_fail(cp, n, "expected true or false, got '%s'", tg_excerpt(s, ex, sizeof(ex)));
    return TG_OK;
}

static int tg_cp_duration(struct tg_cp *cp, const yaml_node_t *n, bool allow_zero, uint64_t *out)
{
    const char *s;
    char ex[TG_CONF_EXCERPT];
    uint64_t v;
    TG_GUARD(tg_cp_scalar(cp, n, "a duration", &s));
    if (tg_conf_parse_duration(s, &v) != TG_OK)
        return tg_cp_fail(cp, n,
                          "invalid duration '%s' (expected a number and a unit ns, us, ms, s, m "
                          "or h, e.g. 2s, 250ms, 0.001s; whole nanoseconds)",
                          tg_excerpt(s, ex, sizeof(ex)));
    if (v == 0 && !allow_zero)
        return tg_cp_fail(cp, n, "must be greater than 0");
    *out = v;
    return TG_OK;
}

static int tg_cp_addr(struct tg_cp *cp, const yaml_node_t *n, bool allow_port0,
                      struct tg_conf_addr *out)
{
    const char *s;
    char ex[TG_CONF_EXCERPT];
    struct tg_conf_addr a;
    TG_GUARD(tg_cp_scalar(cp, n, "an address 'host:port'", &s));
    const char *why = tg_addr_parse(s, &a);
    if (why != NULL)
        return tg_cp_fail(cp, n, "invalid address '%s': %s", tg_excerpt(s, ex, sizeof(ex)), why);
    if (!allow_port0 && tg_conf_addr_port(&a) == 0) {
        tg_conf_addr_clear(&a);
        return tg_cp_fail(cp, n, "invalid address '%s': port must be in 1..65535",
                          tg_excerpt(s, ex, sizeof(ex)));
    }
    tg_conf_addr_clear(out);
    *out = a;
    out->mark = tg_cp_mark(cp, n);
    return TG_OK;
}

/*
 * Check that n is a mapping with scalar keys, no duplicates and (when allowed
 * is not NULL) only the keys listed there.
 */
static int tg_cp_check_map(struct tg_cp *cp, const yaml_node_t *n, const char *const *allowed)
{
    if (n->type != YAML_MAPPING_NODE)
        return tg_cp_fail(cp, n, "expected a mapping, got %s", tg_node_kind(n));
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = tg_cp_node(cp, p->key);
        if (k->type != YAML_SCALAR_NODE)
            return tg_cp_fail(cp, k, "mapping keys must be scalars, got %s", tg_node_kind(k));
        const char *key = tg_scalar(k);
        char ex[TG_CONF_EXCERPT];
        tg_excerpt(key, ex, sizeof(ex));
        for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < p; q++) {
            const yaml_node_t *k2 = tg_cp_node(cp, q->key);
            if (strcmp(tg_scalar(k2), key) == 0) {
                size_t o = tg_cp_push_key(cp, ex);
                int rc = tg_cp_fail(cp, k, "duplicate key '%s' (first given at line %zu)", ex,
                                    k2->start_mark.line + 1);
                tg_cp_pop(cp, o);
                return rc;
            }
        }
        if (allowed == NULL)
            continue;
        bool ok = false;
        for (size_t i = 0; allowed[i] != NULL && !ok; i++)
            ok = strcmp(allowed[i], key) == 0;
        if (!ok) {
            char list[256];
            size_t off = 0;
            list[0] = '\0';
            for (size_t i = 0; allowed[i] != NULL; i++) {
                int w = snprintf(list + off, sizeof(list) - off, "%s%s", i ? ", " : "", allowed[i]);
                if (w < 0 || (size_t)w >= sizeof(list) - off)
                    break;
                off += (size_t)w;
            }
            size_t o = tg_cp_push_key(cp, ex);
            int rc = tg_cp_fail(cp, k, "unknown key '%s' (allowed: %s)", ex, list);
            tg_cp_pop(cp, o);
            return rc;
        }
    }
    return TG_OK;
}

/* The value of key in (checked) mapping n, or NULL. */
static const yaml_node_t *tg_cp_get(struct tg_cp *cp, const yaml_node_t *n, const char *key,
                                    const yaml_node_t **keynode)
{
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = tg_cp_node(cp, p->key);
        if (strcmp(tg_scalar(k), key) == 0) {
            if (keynode != NULL)
                *keynode = k;
            return tg_cp_node(cp, p->value);
        }
    }
    return NULL;
}

static int tg_cp_require(struct tg_cp *cp, const yaml_node_t *n, const char *key,
                         const yaml_node_t **out)
{
    *out = tg_cp_get(cp, n, key, NULL);
    if (*out == NULL)
        return tg_cp_fail(cp, n, "missing required key '%s'", key);
    return TG_OK;
}

/* Optional fields: absent leaves *out unchanged. */
static int tg_cp_opt_u64(struct tg_cp *cp, const yaml_node_t *map, const char *key, uint64_t min,
                         uint64_t max, uint64_t *out)
{
    const yaml_node_t *v = tg_cp_get(cp, map, key, NULL);
    if (v == NULL)
        return TG_OK;
    size_t o = tg_cp_push_key(cp, key);
    int rc = tg_cp_u64(cp, v, min, max, out);
    tg_cp_pop(cp, o);
    return rc;
}

static int tg_cp_opt_bool(struct tg_cp *cp, const yaml_node_t *map, const char *key, bool *out)
{
    const yaml_node_t *v = tg_cp_get(cp, map, key, NULL);
    if (v == NULL)
        return TG_OK;
    size_t o = tg_cp_push_key(cp, key);
    int rc = tg_cp_bool(cp, v, out);
    tg_cp_pop(cp, o);
    return rc;
}

static int tg_cp_opt_duration(struct tg_cp *cp, const yaml_node_t *map, const char *key,
                              bool allow_zero, uint64_t *out)
{
    const yaml_node_t *v = tg_cp_get(cp, map, key, NULL);
    if (v == NULL)
        return TG_OK;
    size_t o = tg_cp_push_key(cp, key);
    int rc = tg_cp_duration(cp, v, allow_zero, out);
    tg_cp_pop(cp, o);
    return rc;
}

static int tg_cp_opt_string(struct tg_cp *cp, const yaml_node_t *map, const char *key, char **out)
{
    const yaml_node_t *v = tg_cp_get(cp, map, key, NULL);
    if (v == NULL)
        return TG_OK;
    size_t o = tg_cp_push_key(cp, key);
    int rc = tg_cp_string(cp, v, out);
    tg_cp_pop(cp, o);
    return rc;
}

static int tg_cp_req_addr(struct tg_cp *cp, const yaml_node_t *map, const char *key,
                          bool allow_port0, struct tg_conf_addr *out)
{
    const yaml_node_t *v;
    TG_GUARD(tg_cp_require(cp, map, key, &v));
    size_t o = tg_cp_push_key(cp, key);
    int rc = tg_cp_addr(cp, v, allow_port0, out);
    tg_cp_pop(cp, o);
    return rc;
}

/* A sequence of non-empty strings; the array is attached to *out before it is
 * filled so that a failure part-way leaves nothing unowned. */
static int tg_cp_strings(struct tg_cp *cp, const yaml_node_t *n, size_t maxlen, char ***out,
                         size_t *nout)
{
    if (n->type != YAML_SEQUENCE_NODE)
        return tg_cp_fail(cp, n, "expected a sequence of strings, got %s", tg_node_kind(n));
    size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (cnt == 0)
        return tg_cp_fail(cp, n, "must not be empty (leave the key out instead)");
    char **v = calloc(cnt, sizeof(*v));
    if (v == NULL)
        return tg_cp_nomem(cp);
    tg_strv_free(*out, *nout);
    *out = v;
    *nout = cnt;
    for (size_t i = 0; i < cnt; i++) {
        const yaml_node_t *it = tg_cp_node(cp, n->data.sequence.items.start[i]);
        size_t o = tg_cp_push_index(cp, i);
        int rc = tg_cp_string(cp, it, &v[i]);
        if (rc == TG_OK && strlen(v[i]) > maxlen)
            rc = tg_cp_fail(cp, it, "too long (%zu bytes, at most %zu)", strlen(v[i]), maxlen);
        for (size_t j = 0; rc == TG_OK && j < i; j++) {
            if (strcmp(v[j], v[i]) == 0)
                rc = tg_cp_fail(cp, it, "duplicate value '%s'", v[i]);
        }
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    return TG_OK;
}

/* ---- data sources (PEM from a file or inline) ---- */

enum tg_pem_kind { TG_PEM_CERT, TG_PEM_KEY };

static int tg_cp_datasource(struct tg_cp *cp, const yaml_node_t *n, enum tg_pem_kind kind,
                            struct tg_conf_datasource *ds)
{
    static const char *const keys[] = {"filename", "inline_string", NULL};
    const yaml_node_t *fk = NULL, *ik = NULL, *v;
    char ex[TG_CONF_EXCERPT];
    int rc = TG_OK;

    if (n->type != YAML_MAPPING_NODE)
        return tg_cp_fail(cp, n,
                          "expected a mapping { filename: ... } or { inline_string: ... }, got %s",
                          tg_node_kind(n));
    TG_GUARD(tg_cp_check_map(cp, n, keys));
    const yaml_node_t *fv = tg_cp_get(cp, n, "filename", &fk);
    const yaml_node_t *iv = tg_cp_get(cp, n, "inline_string", &ik);
    if (fv == NULL && iv == NULL)
        return tg_cp_fail(cp, n, "one of 'filename' or 'inline_string' is required");
    if (fv != NULL && iv != NULL) {
        const yaml_node_t *second = fk->start_mark.index > ik->start_mark.index ? fk : ik;
        size_t o = tg_cp_push_key(cp, tg_scalar(second));
        rc = tg_cp_fail(cp, second, "give only one of 'filename' and 'inline_string'");
        tg_cp_pop(cp, o);
        return rc;
    }

    tg_datasource_free(ds);
    v = fv != NULL ? fv : iv;
    size_t o = tg_cp_push_key(cp, fv != NULL ? "filename" : "inline_string");
    ds->mark = tg_cp_mark(cp, v);
    if (fv != NULL) {
        const char *name;
        char *full = NULL;
        rc = tg_cp_scalar(cp, v, "a file name", &name);
        if (rc != TG_OK)
            goto out;
        if (*name == '\0') {
            rc = tg_cp_fail(cp, v, "must not be empty");
            goto out;
        }
        rc = tg_cp_strdup(cp, name, &ds->filename);
        if (rc != TG_OK)
            goto out;
        if (name[0] != '/' && cp->basedir != NULL) {
            size_t fl = strlen(cp->basedir) + strlen(name) + 2;
            full = malloc(fl);
            if (full == NULL) {
                rc = tg_cp_nomem(cp);
                goto out;
            }
            snprintf(full, fl, "%s/%s", cp->basedir, name);
        }
        int e = tg_read_file(full != NULL ? full : name, &ds->data, &ds->data_len);
        free(full);
        if (e != 0) {
            rc = tg_cp_fail(cp, v, "cannot read '%s': %s", tg_excerpt(name, ex, sizeof(ex)),
                            strerror(e));
            goto out;
        }
    } else {
        const char *s;
        rc = tg_cp_scalar(cp, v, "a PEM string", &s);
        if (rc != TG_OK)
            goto out;
        size_t len = v->data.scalar.length;
        ds->data = malloc(len + 1);
        if (ds->data == NULL) {
            rc = tg_cp_nomem(cp);
            goto out;
        }
        memcpy(ds->data, s, len + 1);
        ds->data_len = len;
    }

    /* Cheap sanity check here so that a swapped cert/key is reported at
     * load time; parsing the PEM is the TLS layer's job. */
    const char *needle = kind == TG_PEM_CERT ? "-----BEGIN CERTIFICATE-----" : "PRIVATE KEY-----";
    if (memmem(ds->data, ds->data_len, needle, strlen(needle)) == NULL) {
        const char *what = kind == TG_PEM_CERT ? "certificate" : "private key";
        if (fv != NULL)
            rc = tg_cp_fail(cp, v, "'%s' contains no PEM %s ('%s')", ds->filename, what, needle);
        else
            rc = tg_cp_fail(cp, v, "no PEM %s ('%s') in the string", what, needle);
    }
out:
    tg_cp_pop(cp, o);
    return rc;
}

/* ---- private_key_provider ---- */

static int tg_cp_param(struct tg_cp *cp, const yaml_node_t *k, const yaml_node_t *v,
                       struct tg_conf_params *params)
{
    struct tg_conf_param *q = &params->v[params->n];
    q->key = strdup(tg_scalar(k));
    if (q->key == NULL)
        return tg_cp_nomem(cp);
    params->n++;
    q->mark = tg_cp_mark(cp, k);
    q->value_mark = tg_cp_mark(cp, v);
    if (v->type == YAML_MAPPING_NODE)
        return tg_cp_fail(cp, v, "expected a scalar or a sequence of scalars, got a mapping");
    if (v->type == YAML_SCALAR_NODE) {
        if (strlen(tg_scalar(v)) != v->data.scalar.length)
            return tg_cp_fail(cp, v, "value contains a NUL character");
        return tg_cp_strdup(cp, tg_scalar(v), &q->value);
    }
    size_t cnt = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    q->items = calloc(cnt ? cnt : 1, sizeof(*q->items));
    if (q->items == NULL)
        return tg_cp_nomem(cp);
    q->nitems = cnt;
    for (size_t i = 0; i < cnt; i++) {
        const yaml_node_t *it = tg_cp_node(cp, v->data.sequence.items.start[i]);
        size_t o = tg_cp_push_index(cp, i);
        int rc;
        if (it->type != YAML_SCALAR_NODE)
            rc = tg_cp_fail(cp, it, "expected a scalar, got %s", tg_node_kind(it));
        else if (strlen(tg_scalar(it)) != it->data.scalar.length)
            rc = tg_cp_fail(cp, it, "value contains a NUL character");
        else
            rc = tg_cp_strdup(cp, tg_scalar(it), &q->items[i]);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    return TG_OK;
}

/* c: the certificate the provider block belongs to, or NULL for a
 * listener's key_exchange_provider (no Envoy-style private_key then). */
static int tg_cp_typed_config(struct tg_cp *cp, const yaml_node_t *n, struct tg_conf_keyprov *kp,
                              struct tg_conf_cert *c, const yaml_node_t *cert_key_node)
{
    TG_GUARD(tg_cp_check_map(cp, n, NULL));
    size_t cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    if (cnt > 0) {
        kp->typed_config.v = calloc(cnt, sizeof(*kp->typed_config.v));
        if (kp->typed_config.v == NULL)
            return tg_cp_nomem(cp);
    }
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = tg_cp_node(cp, p->key);
        const yaml_node_t *v = tg_cp_node(cp, p->value);
        const char *key = tg_scalar(k);
        char ex[TG_CONF_EXCERPT];
        size_t o = tg_cp_push_key(cp, tg_excerpt(key, ex, sizeof(ex)));
        int rc;
        if (strcmp(key, "poll_delay") == 0) {
            rc = tg_cp_duration(cp, v, true, &kp->poll_delay_ns);
        } else if (c != NULL && strcmp(key, "private_key") == 0) {
            /* Envoy puts the key inside the provider's typed_config. */
            if (cert_key_node != NULL)
                rc = tg_cp_fail(cp, k,
                                "the private key is also given at line %zu (%s.private_key); "
                                "give it only once",
                                cert_key_node->start_mark.line + 1, c->path);
            else
                rc = tg_cp_datasource(cp, v, TG_PEM_KEY, &c->private_key);
        } else if (strcmp(key, "@type") == 0) {
            /* Envoy's protobuf type URL: accepted for copy-paste
             * compatibility, the provider is chosen by provider_name. */
            const char *s;
            rc = tg_cp_scalar(cp, v, "a type URL string", &s);
        } else {
            rc = tg_cp_param(cp, k, v, &kp->typed_config);
        }
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    return TG_OK;
}

/* Provider defaults; used for certificates without private_key_provider too. */
static int tg_cp_keyprov_init(struct tg_cp *cp, struct tg_conf_keyprov *kp, const char *key,
                              const yaml_node_t *n)
{
    size_t o = tg_cp_push_key(cp, key);
    kp->path = tg_cp_path_dup(cp);
    size_t o2 = tg_cp_push_key(cp, "typed_config");
    kp->typed_config.path = tg_cp_path_dup(cp);
    tg_cp_pop(cp, o2);
    tg_cp_pop(cp, o);
    kp->provider_name = strdup("software");
    if (kp->path == NULL || kp->typed_config.path == NULL || kp->provider_name == NULL)
        return tg_cp_nomem(cp);
    kp->fallback = true;
    kp->poll_delay_ns = TG_NS_PER_MS;
    kp->mark = tg_cp_mark(cp, n);
    return TG_OK;
}

static int tg_cp_keyprov(struct tg_cp *cp, const yaml_node_t *n, struct tg_conf_keyprov *kp,
                         struct tg_conf_cert *c, const yaml_node_t *cert_key_node)
{
    static const char *const keys[] = {"provider_name", "typed_config", "fallback", NULL};
    const yaml_node_t *v;

    TG_GUARD(tg_cp_check_map(cp, n, keys));
    kp->mark = tg_cp_mark(cp, n);
    TG_GUARD(tg_cp_require(cp, n, "provider_name", &v));
    size_t o = tg_cp_push_key(cp, "provider_name");
    int rc = tg_cp_string(cp, v, &kp->provider_name);
    if (rc == TG_OK && !tg_conf_provider_known(kp->provider_name)) {
        char list[256], ex[TG_CONF_EXCERPT];
        size_t off = 0;
        list[0] = '\0';
        for (size_t i = 0; tg_conf_providers[i] != NULL; i++) {
            int w = snprintf(list + off, sizeof(list) - off, "%s%s", i ? ", " : "",
                             tg_conf_providers[i]);
            if (w < 0 || (size_t)w >= sizeof(list) - off)
                break;
            off += (size_t)w;
        }
        rc = tg_cp_fail(cp, v, "unknown provider '%s' (known: %s)",
                        tg_excerpt(kp->provider_name, ex, sizeof(ex)), list);
    }
    tg_cp_pop(cp, o);
    TG_GUARD(rc);
    TG_GUARD(tg_cp_opt_bool(cp, n, "fallback", &kp->fallback));
    if ((v = tg_cp_get(cp, n, "typed_config", NULL)) != NULL) {
        o = tg_cp_push_key(cp, "typed_config");
        rc = tg_cp_typed_config(cp, v, kp, c, cert_key_node);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    return TG_OK;
}

/* ---- certificates ---- */

/* SNI names: DNS labels, optionally a leading "*." wildcard. */
static bool tg_server_name_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 253)
        return false;
    if (s[0] == '*') {
        if (s[1] != '.' || s[2] == '\0')
            return false;
        s += 2;
    }
    size_t label = 0;
    for (; *s != '\0'; s++) {
        char c = *s;
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || tg_is_digit(c) || c == '-' ||
                  c == '_';
        if (!ok || ++label > 63)
            return false;
    }
    return label > 0;
}

static int tg_cp_cert(struct tg_cp *cp, const yaml_node_t *n, struct tg_conf_cert *c)
{
    static const char *const keys[] = {"certificate_chain", "private_key", "server_names",
                                       "private_key_provider", NULL};
    const yaml_node_t *v, *keynode = NULL;
    size_t o;
    int rc;

    c->path = tg_cp_path_dup(cp);
    if (c->path == NULL)
        return tg_cp_nomem(cp);
    c->mark = tg_cp_mark(cp, n);
    TG_GUARD(tg_cp_keyprov_init(cp, &c->keyprov, "private_key_provider", n));
    TG_GUARD(tg_cp_check_map(cp, n, keys));

    TG_GUARD(tg_cp_require(cp, n, "certificate_chain", &v));
    o = tg_cp_push_key(cp, "certificate_chain");
    rc = tg_cp_datasource(cp, v, TG_PEM_CERT, &c->chain);
    tg_cp_pop(cp, o);
    TG_GUARD(rc);

    if ((v = tg_cp_get(cp, n, "private_key", &keynode)) != NULL) {
        o = tg_cp_push_key(cp, "private_key");
        rc = tg_cp_datasource(cp, v, TG_PEM_KEY, &c->private_key);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }

    if ((v = tg_cp_get(cp, n, "server_names", NULL)) != NULL) {
        o = tg_cp_push_key(cp, "server_names");
        rc = tg_cp_strings(cp, v, 253, &c->server_names, &c->n_server_names);
        for (size_t i = 0; rc == TG_OK && i < c->n_server_names; i++) {
            if (!tg_server_name_ok(c->server_names[i])) {
                char ex[TG_CONF_EXCERPT];
                tg_cp_push_index(cp, i);
                rc = tg_cp_fail(cp, tg_cp_node(cp, v->data.sequence.items.start[i]),
                                "invalid server name '%s' (expected a DNS name, optionally "
                                "starting with '*.')",
                                tg_excerpt(c->server_names[i], ex, sizeof(ex)));
            }
        }
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }

    if ((v = tg_cp_get(cp, n, "private_key_provider", NULL)) != NULL) {
        o = tg_cp_push_key(cp, "private_key_provider");
        rc = tg_cp_keyprov(cp, v, &c->keyprov, c, keynode);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }

    if (c->private_key.data == NULL)
        return tg_cp_fail(cp, n,
                          "missing required key 'private_key' (or "
                          "private_key_provider.typed_config.private_key)");
    return TG_OK;
}

/* ---- tls ---- */

static int tg_cp_version(struct tg_cp *cp, const yaml_node_t *map, const char *key, int *out,
                         const yaml_node_t **node)
{
    const yaml_node_t *v = tg_cp_get(cp, map, key, NULL);
    const char *s;
    char ex[TG_CONF_EXCERPT];
    if (v == NULL)
        return TG_OK;
    *node = v;
    size_t o = tg_cp_push_key(cp, key);
    int rc = tg_cp_scalar(cp, v, "a TLS version", &s);
    if (rc == TG_OK) {
        /* Envoy spells them TLSv1_2 / TLSv1_3. */
        if (strcmp(s, "TLSv1.2") == 0 || strcmp(s, "TLSv1_2") == 0)
            *out = TLS1_2_VERSION;
        else if (strcmp(s, "TLSv1.3") == 0 || strcmp(s, "TLSv1_3") == 0)
            *out = TLS1_3_VERSION;
        else
            rc = tg_cp_fail(cp, v, "invalid TLS version '%s' (valid: TLSv1.2, TLSv1.3)",
                            tg_excerpt(s, ex, sizeof(ex)));
    }
    tg_cp_pop(cp, o);
    return rc;
}

static int tg_cp_groups(struct tg_cp *cp, const yaml_node_t *v, struct tg_conf_tls *t)
{
    if (v->type == YAML_SCALAR_NODE)
        return tg_cp_string(cp, v, &t->groups);
    if (v->type != YAML_SEQUENCE_NODE)
        return tg_cp_fail(cp, v, "expected a string or a sequence of strings, got %s",
                          tg_node_kind(v));
    char **items = NULL;
    size_t n = 0, total = 0;
    int rc = tg_cp_strings(cp, v, 64, &items, &n);
    for (size_t i = 0; rc == TG_OK && i < n; i++) {
        if (strchr(items[i], ':') != NULL) {
            size_t o = tg_cp_push_index(cp, i);
            rc = tg_cp_fail(cp, tg_cp_node(cp, v->data.sequence.items.start[i]),
                            "one group per item (no ':')");
            tg_cp_pop(cp, o);
        }
        total += strlen(items[i]) + 1;
    }
    if (rc == TG_OK) {
        char *g = malloc(total);
        if (g == NULL) {
            rc = tg_cp_nomem(cp);
        } else {
            size_t off = 0;
            for (size_t i = 0; i < n; i++) {
                size_t l = strlen(items[i]);
                memcpy(g + off, items[i], l);
                off += l;
                g[off++] = i + 1 < n ? ':' : '\0';
            }
            free(t->groups);
            t->groups = g;
        }
    }
    tg_strv_free(items, n);
    return rc;
}

static int tg_cp_tls(struct tg_cp *cp, const yaml_node_t *n, struct tg_conf_tls *t)
{
    static const char *const keys[] = {
        "certificates",          "min_version", "max_version",   "alpn",
        "session_resumption",    "cipher_list", "cipher_suites", "groups",
        "key_exchange_provider", NULL};
    const yaml_node_t *v, *minv = NULL, *maxv = NULL;
    size_t o;
    int rc;

    t->mark = tg_cp_mark(cp, n);
    TG_GUARD(tg_cp_check_map(cp, n, keys));

    TG_GUARD(tg_cp_require(cp, n, "certificates", &v));
    o = tg_cp_push_key(cp, "certificates");
    if (v->type != YAML_SEQUENCE_NODE) {
        rc = tg_cp_fail(cp, v, "expected a sequence of certificates, got %s", tg_node_kind(v));
    } else if (v->data.sequence.items.top == v->data.sequence.items.start) {
        rc = tg_cp_fail(cp, v, "at least one certificate is required");
    } else {
        size_t cnt = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
        t->certs = calloc(cnt, sizeof(*t->certs));
        rc = t->certs == NULL ? tg_cp_nomem(cp) : TG_OK;
        if (rc == TG_OK)
            t->n_certs = cnt;
        for (size_t i = 0; rc == TG_OK && i < cnt; i++) {
            size_t o2 = tg_cp_push_index(cp, i);
            const yaml_node_t *it = tg_cp_node(cp, v->data.sequence.items.start[i]);
            rc = tg_cp_cert(cp, it, &t->certs[i]);
            tg_cp_pop(cp, o2);
        }
    }
    tg_cp_pop(cp, o);
    TG_GUARD(rc);

    TG_GUARD(tg_cp_version(cp, n, "min_version", &t->min_version, &minv));
    TG_GUARD(tg_cp_version(cp, n, "max_version", &t->max_version, &maxv));
    if (t->min_version > t->max_version) {
        o = tg_cp_push_key(cp, maxv != NULL ? "max_version" : "min_version");
        rc = tg_cp_fail(cp, maxv != NULL ? maxv : minv,
                        "min_version (TLSv1.%d) is greater than max_version (TLSv1.%d)",
                        t->min_version - 0x0301, t->max_version - 0x0301);
        tg_cp_pop(cp, o);
        return rc;
    }

    if ((v = tg_cp_get(cp, n, "alpn", NULL)) != NULL) {
        o = tg_cp_push_key(cp, "alpn");
        rc = tg_cp_strings(cp, v, 255, &t->alpn, &t->n_alpn);
        /* The ALPN extension body is a 16-bit length of 8-bit-prefixed names. */
        size_t wire = 0;
        for (size_t i = 0; rc == TG_OK && i < t->n_alpn; i++)
            wire += 1 + strlen(t->alpn[i]);
        if (rc == TG_OK && wire > 65535)
            rc = tg_cp_fail(cp, v, "protocol list too long (%zu bytes encoded, at most 65535)",
                            wire);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    TG_GUARD(tg_cp_opt_bool(cp, n, "session_resumption", &t->session_resumption));
    TG_GUARD(tg_cp_opt_string(cp, n, "cipher_list", &t->cipher_list));
    TG_GUARD(tg_cp_opt_string(cp, n, "cipher_suites", &t->cipher_suites));
    if ((v = tg_cp_get(cp, n, "cipher_list", NULL)) != NULL)
        t->cipher_list_mark = tg_cp_mark(cp, v);
    if ((v = tg_cp_get(cp, n, "cipher_suites", NULL)) != NULL)
        t->cipher_suites_mark = tg_cp_mark(cp, v);
    if ((v = tg_cp_get(cp, n, "key_exchange_provider", NULL)) != NULL) {
        TG_GUARD(tg_cp_keyprov_init(cp, &t->kx_provider, "key_exchange_provider", v));
        t->has_kx_provider = true;
        o = tg_cp_push_key(cp, "key_exchange_provider");
        rc = tg_cp_keyprov(cp, v, &t->kx_provider, NULL, NULL);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    if ((v = tg_cp_get(cp, n, "groups", NULL)) != NULL) {
        t->groups_mark = tg_cp_mark(cp, v);
        o = tg_cp_push_key(cp, "groups");
        rc = tg_cp_groups(cp, v, t);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    return TG_OK;
}

/* ---- listeners ---- */

static bool tg_listener_name_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 64)
        return false;
    for (; *s != '\0'; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || tg_is_digit(c) || c == '_' ||
              c == '-' || c == '.'))
            return false;
    }
    return true;
}

static int tg_cp_upstream(struct tg_cp *cp, const yaml_node_t *n, struct tg_conf_upstream *u)
{
    static const char *const keys[] = {"address", "connect_timeout", NULL};
    u->mark = tg_cp_mark(cp, n);
    TG_GUARD(tg_cp_check_map(cp, n, keys));
    TG_GUARD(tg_cp_req_addr(cp, n, "address", false, &u->addr));
    return tg_cp_opt_duration(cp, n, "connect_timeout", false, &u->connect_timeout_ns);
}

static int tg_cp_listener(struct tg_cp *cp, const yaml_node_t *n, size_t idx)
{
    static const char *const keys[] = {"name", "address", "backlog", "tls", "upstream", NULL};
    struct tg_conf_listener *l = &cp->cfg->listeners[idx];
    const yaml_node_t *v, *namenode = NULL;
    uint64_t u;
    size_t o;
    int rc;

    l->path = tg_cp_path_dup(cp);
    if (l->path == NULL)
        return tg_cp_nomem(cp);
    l->mark = tg_cp_mark(cp, n);
    l->backlog = 4096;
    l->tls.min_version = TLS1_2_VERSION;
    l->tls.max_version = TLS1_3_VERSION;
    l->tls.session_resumption = true;
    l->upstream.connect_timeout_ns = 5 * TG_NS_PER_S;
    TG_GUARD(tg_cp_check_map(cp, n, keys));

    if ((namenode = tg_cp_get(cp, n, "name", NULL)) != NULL) {
        char ex[TG_CONF_EXCERPT];
        o = tg_cp_push_key(cp, "name");
        rc = tg_cp_string(cp, namenode, &l->name);
        if (rc == TG_OK && !tg_listener_name_ok(l->name))
            rc = tg_cp_fail(cp, namenode,
                            "invalid name '%s' (1..64 characters of A-Z a-z 0-9 _ - .)",
                            tg_excerpt(l->name, ex, sizeof(ex)));
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    } else {
        char def[32];
        snprintf(def, sizeof(def), "listener%zu", idx);
        TG_GUARD(tg_cp_strdup(cp, def, &l->name));
    }
    for (size_t i = 0; i < idx; i++) {
        if (strcmp(cp->cfg->listeners[i].name, l->name) == 0) {
            o = tg_cp_push_key(cp, "name");
            rc = tg_cp_fail(cp, namenode != NULL ? namenode : n,
                            "duplicate listener name '%s' (also used by listeners[%zu])", l->name,
                            i);
            tg_cp_pop(cp, o);
            return rc;
        }
    }

    TG_GUARD(tg_cp_req_addr(cp, n, "address", true, &l->addr));
    for (size_t i = 0; i < idx && tg_conf_addr_port(&l->addr) != 0; i++) {
        if (tg_conf_addr_equal(&cp->cfg->listeners[i].addr, &l->addr)) {
            o = tg_cp_push_key(cp, "address");
            rc = tg_cp_fail(cp, tg_cp_get(cp, n, "address", NULL),
                            "address '%s' is already used by listeners[%zu]", l->addr.text, i);
            tg_cp_pop(cp, o);
            return rc;
        }
    }

    u = (uint64_t)l->backlog;
    TG_GUARD(tg_cp_opt_u64(cp, n, "backlog", 1, 65535, &u));
    l->backlog = (int)u;

    TG_GUARD(tg_cp_require(cp, n, "tls", &v));
    o = tg_cp_push_key(cp, "tls");
    rc = tg_cp_tls(cp, v, &l->tls);
    tg_cp_pop(cp, o);
    TG_GUARD(rc);

    TG_GUARD(tg_cp_require(cp, n, "upstream", &v));
    o = tg_cp_push_key(cp, "upstream");
    rc = tg_cp_upstream(cp, v, &l->upstream);
    tg_cp_pop(cp, o);
    return rc;
}

/* ---- top level ---- */

static int tg_cp_concurrency(struct tg_cp *cp, const yaml_node_t *root)
{
    const yaml_node_t *v = tg_cp_get(cp, root, "concurrency", NULL);
    const char *s;
    char ex[TG_CONF_EXCERPT];
    uint64_t u;
    if (v == NULL)
        return TG_OK;
    size_t o = tg_cp_push_key(cp, "concurrency");
    int rc = tg_cp_scalar(cp, v, "an integer or 'auto'", &s);
    if (rc == TG_OK && strcmp(s, "auto") == 0) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        if (ncpu < 1)
            ncpu = 1;
        if (ncpu > TG_CONF_MAX_CONCURRENCY)
            ncpu = TG_CONF_MAX_CONCURRENCY;
        cp->cfg->concurrency = (int)ncpu;
    } else if (rc == TG_OK) {
        if (tg_conf_parse_u64(s, 1, TG_CONF_MAX_CONCURRENCY, &u) == TG_OK)
            cp->cfg->concurrency = (int)u;
        else
            rc = tg_cp_fail(cp, v, "expected an integer in 1..%d or 'auto', got '%s'",
                            TG_CONF_MAX_CONCURRENCY, tg_excerpt(s, ex, sizeof(ex)));
    }
    tg_cp_pop(cp, o);
    return rc;
}

static int tg_cp_root(struct tg_cp *cp, const yaml_node_t *root)
{
    static const char *const keys[] = {"concurrency", "log_level", "admin",
                                       "listeners",   "limits",    NULL};
    static const char *const admin_keys[] = {"address", NULL};
    static const char *const limit_keys[] = {"max_connections", "handshake_timeout", "idle_timeout",
                                             "drain_timeout",   "buffer_size",       NULL};
    struct tg_config *cfg = cp->cfg;
    const yaml_node_t *v;
    size_t o;
    int rc;

    if (root->type != YAML_MAPPING_NODE)
        return tg_cp_fail(cp, root, "expected a mapping at the top level, got %s",
                          tg_node_kind(root));
    TG_GUARD(tg_cp_check_map(cp, root, keys));
    TG_GUARD(tg_cp_concurrency(cp, root));

    if ((v = tg_cp_get(cp, root, "log_level", NULL)) != NULL) {
        const char *s;
        char ex[TG_CONF_EXCERPT];
        enum tg_log_level lvl;
        o = tg_cp_push_key(cp, "log_level");
        rc = tg_cp_scalar(cp, v, "a log level", &s);
        if (rc == TG_OK && !tg_log_parse_level(s, &lvl))
            rc = tg_cp_fail(cp, v, "invalid log level '%s' (valid: error, warn, info, debug)",
                            tg_excerpt(s, ex, sizeof(ex)));
        if (rc == TG_OK)
            cfg->log_level = (int)lvl;
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }

    if ((v = tg_cp_get(cp, root, "admin", NULL)) != NULL) {
        o = tg_cp_push_key(cp, "admin");
        rc = tg_cp_check_map(cp, v, admin_keys);
        if (rc == TG_OK)
            rc = tg_cp_req_addr(cp, v, "address", true, &cfg->admin);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
        cfg->has_admin = true;
    }

    TG_GUARD(tg_cp_require(cp, root, "listeners", &v));
    o = tg_cp_push_key(cp, "listeners");
    if (v->type != YAML_SEQUENCE_NODE) {
        rc = tg_cp_fail(cp, v, "expected a sequence of listeners, got %s", tg_node_kind(v));
    } else if (v->data.sequence.items.top == v->data.sequence.items.start) {
        rc = tg_cp_fail(cp, v, "at least one listener is required");
    } else {
        size_t cnt = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
        cfg->listeners = calloc(cnt, sizeof(*cfg->listeners));
        rc = cfg->listeners == NULL ? tg_cp_nomem(cp) : TG_OK;
        if (rc == TG_OK)
            cfg->n_listeners = cnt;
        for (size_t i = 0; rc == TG_OK && i < cnt; i++) {
            size_t o2 = tg_cp_push_index(cp, i);
            const yaml_node_t *it = tg_cp_node(cp, v->data.sequence.items.start[i]);
            rc = tg_cp_listener(cp, it, i);
            tg_cp_pop(cp, o2);
        }
    }
    tg_cp_pop(cp, o);
    TG_GUARD(rc);

    if ((v = tg_cp_get(cp, root, "limits", NULL)) != NULL) {
        struct tg_conf_limits *lim = &cfg->limits;
        uint64_t bs = lim->buffer_size;
        o = tg_cp_push_key(cp, "limits");
        rc = tg_cp_check_map(cp, v, limit_keys);
        if (rc == TG_OK)
            rc = tg_cp_opt_u64(cp, v, "max_connections", 1, 10000000, &lim->max_connections);
        if (rc == TG_OK)
            rc = tg_cp_opt_duration(cp, v, "handshake_timeout", false, &lim->handshake_timeout_ns);
        if (rc == TG_OK)
            rc = tg_cp_opt_duration(cp, v, "idle_timeout", false, &lim->idle_timeout_ns);
        if (rc == TG_OK)
            rc = tg_cp_opt_duration(cp, v, "drain_timeout", false, &lim->drain_timeout_ns);
        if (rc == TG_OK)
            rc = tg_cp_opt_u64(cp, v, "buffer_size", 1024, 1048576, &bs);
        lim->buffer_size = (size_t)bs;
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    return TG_OK;
}

/* ------------------------------------------------------------------------ */
/* libyaml driving                                                          */

/* Format libyaml's error; returns the status to give back. */
static int tg_yaml_error(const yaml_parser_t *p, const char *file, const char *buf, size_t len,
                         char *err, size_t errlen)
{
    struct tg_conf_mark m = {file, 0, 0};
    if (p->error == YAML_MEMORY_ERROR) {
        tg_conf_error(err, errlen, &m, NULL, "out of memory while parsing YAML");
        return TG_ENOMEM;
    }
    const char *problem = p->problem != NULL ? p->problem : "unknown error";
    if (p->error == YAML_READER_ERROR) {
        /* The reader reports a byte offset, not a mark. */
        size_t off = p->problem_offset < len ? p->problem_offset : len;
        m.line = 1;
        m.col = 1;
        for (size_t i = 0; i < off; i++) {
            if (buf[i] == '\n') {
                m.line++;
                m.col = 1;
            } else {
                m.col++;
            }
        }
        if (p->problem_value != -1)
            tg_conf_error(err, errlen, &m, NULL, "invalid YAML: %s (byte 0x%02X)", problem,
                          (unsigned)p->problem_value & 0xffu);
        else
            tg_conf_error(err, errlen, &m, NULL, "invalid YAML: %s", problem);
        return TG_ECONFIG;
    }
    m.line = (int)(p->problem_mark.line < INT_MAX ? p->problem_mark.line + 1 : INT_MAX);
    m.col = (int)(p->problem_mark.column < INT_MAX ? p->problem_mark.column + 1 : INT_MAX);
    if (p->context != NULL)
        tg_conf_error(err, errlen, &m, NULL, "invalid YAML: %s (%s at line %zu)", problem,
                      p->context, p->context_mark.line + 1);
    else
        tg_conf_error(err, errlen, &m, NULL, "invalid YAML: %s", problem);
    return TG_ECONFIG;
}

/* libyaml frees its buffers without wiping them; inline private keys pass
 * through them. */
static void tg_yaml_parser_wipe(yaml_parser_t *p)
{
    if (p->buffer.start != NULL)
        OPENSSL_cleanse(p->buffer.start, (size_t)(p->buffer.end - p->buffer.start));
    if (p->raw_buffer.start != NULL)
        OPENSSL_cleanse(p->raw_buffer.start, (size_t)(p->raw_buffer.end - p->raw_buffer.start));
}

static void tg_yaml_event_wipe(yaml_event_t *ev)
{
    if (ev->type == YAML_SCALAR_EVENT && ev->data.scalar.value != NULL)
        OPENSSL_cleanse(ev->data.scalar.value, ev->data.scalar.length);
}

static int tg_yaml_mark_error(const char *file, const yaml_mark_t *ym, char *err, size_t errlen,
                              const char *msg)
{
    struct tg_conf_mark m = {file, (int)(ym->line < INT_MAX ? ym->line + 1 : INT_MAX),
                             (int)(ym->column < INT_MAX ? ym->column + 1 : INT_MAX)};
    tg_conf_error(err, errlen, &m, NULL, "%s", msg);
    return TG_ECONFIG;
}

/*
 * The event pre-pass: the document API resolves aliases silently (and a
 * self-referencing one would make the walk loop), so refuse them here, with
 * anchors, extra documents and excessive nesting. *ndocs tells whether there
 * is a document at all.
 */
static int tg_yaml_prepass(const char *file, const char *buf, size_t len, int *ndocs, char *err,
                           size_t errlen)
{
    yaml_parser_t p;
    yaml_event_t ev;
    int depth = 0, rc = TG_OK;
    bool done = false;

    *ndocs = 0;
    if (!yaml_parser_initialize(&p)) {
        struct tg_conf_mark m = {file, 0, 0};
        tg_conf_error(err, errlen, &m, NULL, "out of memory");
        return TG_ENOMEM;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
    while (!done && rc == TG_OK) {
        if (!yaml_parser_parse(&p, &ev)) {
            rc = tg_yaml_error(&p, file, buf, len, err, errlen);
            break;
        }
        const char *anchor = NULL;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++*ndocs > 1)
                rc = tg_yaml_mark_error(file, &ev.start_mark, err, errlen,
                                        "only one YAML document is allowed in a configuration");
            break;
        case YAML_ALIAS_EVENT:
            rc = tg_yaml_mark_error(file, &ev.start_mark, err, errlen,
                                    "YAML aliases ('*name') are not supported");
            break;
        case YAML_SCALAR_EVENT:
            anchor = (const char *)ev.data.scalar.anchor;
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            anchor = ev.type == YAML_SEQUENCE_START_EVENT
                         ? (const char *)ev.data.sequence_start.anchor
                         : (const char *)ev.data.mapping_start.anchor;
            if (++depth > TG_CONF_MAX_DEPTH)
                rc = tg_yaml_mark_error(file, &ev.start_mark, err, errlen,
                                        "YAML nesting is too deep");
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            depth--;
            break;
        default:
            break;
        }
        if (rc == TG_OK && anchor != NULL)
            rc = tg_yaml_mark_error(file, &ev.start_mark, err, errlen,
                                    "YAML anchors ('&name') are not supported");
        tg_yaml_event_wipe(&ev);
        yaml_event_delete(&ev);
    }
    tg_yaml_parser_wipe(&p);
    yaml_parser_delete(&p);
    return rc;
}

static void tg_yaml_document_wipe(yaml_document_t *doc)
{
    for (yaml_node_t *n = doc->nodes.start; n != NULL && n < doc->nodes.top; n++) {
        if (n->type == YAML_SCALAR_NODE && n->data.scalar.value != NULL)
            OPENSSL_cleanse(n->data.scalar.value, n->data.scalar.length);
    }
}

/* The common loader. basedir: where relative filenames are resolved (NULL:
 * the current directory). */
static int tg_config_load_impl(const char *name, const char *yaml, size_t len, const char *basedir,
                               struct tg_config **out, char *err, size_t errlen)
{
    struct tg_config *cfg = NULL;
    yaml_parser_t parser;
    yaml_document_t doc;
    bool parser_ok = false, doc_ok = false;
    int ndocs = 0, rc;

    if (out == NULL)
        return TG_EINVAL;
    *out = NULL;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (name == NULL)
        name = "<config>";
    if (yaml == NULL && len > 0)
        return TG_EINVAL;
    if (yaml == NULL)
        yaml = "";

    cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL || (cfg->source_name = strdup(name)) == NULL) {
        struct tg_conf_mark m = {name, 0, 0};
        tg_conf_error(err, errlen, &m, NULL, "out of memory");
        rc = TG_ENOMEM;
        goto out;
    }
    cfg->concurrency = 1;
    cfg->log_level = TG_LOG_INFO;
    cfg->limits.max_connections = 50000;
    cfg->limits.handshake_timeout_ns = 10 * TG_NS_PER_S;
    cfg->limits.idle_timeout_ns = 300 * TG_NS_PER_S;
    cfg->limits.drain_timeout_ns = 30 * TG_NS_PER_S;
    cfg->limits.buffer_size = 16384;

    if (len > TG_CONF_MAX_FILE) {
        struct tg_conf_mark m = {cfg->source_name, 0, 0};
        tg_conf_error(err, errlen, &m, NULL, "configuration larger than %zu bytes",
                      TG_CONF_MAX_FILE);
        rc = TG_ECONFIG;
        goto out;
    }
    rc = tg_yaml_prepass(cfg->source_name, yaml, len, &ndocs, err, errlen);
    if (rc != TG_OK)
        goto out;
    if (ndocs == 0) {
        struct tg_conf_mark m = {cfg->source_name, 0, 0};
        tg_conf_error(err, errlen, &m, NULL,
                      "configuration is empty (expected a mapping with at least 'listeners')");
        rc = TG_ECONFIG;
        goto out;
    }

    if (!yaml_parser_initialize(&parser)) {
        rc = TG_ENOMEM;
        goto out;
    }
    parser_ok = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = tg_yaml_error(&parser, cfg->source_name, yaml, len, err, errlen);
        goto out;
    }
    doc_ok = true;
    const yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
        struct tg_conf_mark m = {cfg->source_name, 0, 0};
        tg_conf_error(err, errlen, &m, NULL, "configuration is empty");
        rc = TG_ECONFIG;
        goto out;
    }
    if (tg_node_is_null(root)) {
        struct tg_conf_mark m = {cfg->source_name, 0, 0};
        tg_conf_error(err, errlen, &m, NULL,
                      "configuration is empty (expected a mapping with at least 'listeners')");
        rc = TG_ECONFIG;
        goto out;
    }

    struct tg_cp cp = {.doc = &doc, .cfg = cfg, .basedir = basedir, .err = err, .errlen = errlen};
    rc = tg_cp_root(&cp, root);
out:
    if (doc_ok) {
        tg_yaml_document_wipe(&doc);
        yaml_document_delete(&doc);
    }
    if (parser_ok) {
        tg_yaml_parser_wipe(&parser);
        yaml_parser_delete(&parser);
    }
    if (rc != TG_OK) {
        if (rc == TG_ENOMEM && err != NULL && errlen > 0 && err[0] == '\0') {
            struct tg_conf_mark m = {name, 0, 0};
            tg_conf_error(err, errlen, &m, NULL, "out of memory");
        }
        tg_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return TG_OK;
}

int tg_config_load_buffer(const char *name, const char *yaml, size_t len, struct tg_config **out,
                          char *err, size_t errlen)
{
    return tg_config_load_impl(name, yaml, len, NULL, out, err, errlen);
}

int tg_config_load_file(const char *path, struct tg_config **out, char *err, size_t errlen)
{
    char *buf = NULL, *dir = NULL;
    size_t len = 0;
    int rc;

    if (out == NULL || path == NULL)
        return TG_EINVAL;
    *out = NULL;
    int e = tg_read_file(path, &buf, &len);
    if (e != 0) {
        struct tg_conf_mark m = {path, 0, 0};
        tg_conf_error(err, errlen, &m, NULL, "cannot read: %s", strerror(e));
        return e == ENOMEM ? TG_ENOMEM : TG_ECONFIG;
    }
    /* Relative certificate paths are relative to the config file, so a
     * config works the same from any working directory. */
    const char *slash = strrchr(path, '/');
    if (slash != NULL) {
        size_t dl = slash == path ? 1 : (size_t)(slash - path);
        dir = malloc(dl + 1);
        if (dir == NULL) {
            struct tg_conf_mark m = {path, 0, 0};
            tg_conf_error(err, errlen, &m, NULL, "out of memory");
            rc = TG_ENOMEM;
            goto out;
        }
        memcpy(dir, path, dl);
        dir[dl] = '\0';
    }
    rc = tg_config_load_impl(path, buf, len, dir, out, err, errlen);
out:
    free(dir);
    tg_free_secret(buf, len);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* typed_config helpers                                                     */

static int tg_param_fail(const struct tg_conf_params *p, const struct tg_conf_param *q,
                         const struct tg_conf_mark *mark, char *err, size_t errlen, const char *fmt,
                         ...) __attribute__((format(printf, 6, 7)));

static int tg_param_fail(const struct tg_conf_params *p, const struct tg_conf_param *q,
                         const struct tg_conf_mark *mark, char *err, size_t errlen, const char *fmt,
                         ...)
{
    char path[TG_CONF_PATHMAX];
    char ex[TG_CONF_EXCERPT];
    va_list ap;
    snprintf(path, sizeof(path), "%s%s%s", p->path != NULL ? p->path : "",
             p->path != NULL && p->path[0] != '\0' ? "." : "", tg_excerpt(q->key, ex, sizeof(ex)));
    va_start(ap, fmt);
    tg_conf_verror(err, errlen, mark, path, fmt, ap);
    va_end(ap);
    return TG_ECONFIG;
}

const struct tg_conf_param *tg_conf_params_get(const struct tg_conf_params *p, const char *key)
{
    if (p == NULL || key == NULL)
        return NULL;
    for (size_t i = 0; i < p->n; i++) {
        if (strcmp(p->v[i].key, key) == 0) {
            /* The params live in heap memory owned by the config; marking
             * them from the provider's configure() is part of the contract. */
            ((struct tg_conf_param *)&p->v[i])->used = true;
            return &p->v[i];
        }
    }
    return NULL;
}

/* Look up a key that must be a scalar; *q = NULL when absent. */
static int tg_param_scalar(const struct tg_conf_params *p, const char *key, const char *what,
                           const struct tg_conf_param **q, char *err, size_t errlen)
{
    *q = tg_conf_params_get(p, key);
    if (*q == NULL)
        return TG_OK;
    if ((*q)->value == NULL)
        return tg_param_fail(p, *q, &(*q)->value_mark, err, errlen, "expected %s, got a sequence",
                             what);
    return TG_OK;
}

int tg_conf_params_duration(const struct tg_conf_params *p, const char *key, uint64_t *out_ns,
                            char *err, size_t errlen)
{
    const struct tg_conf_param *q;
    char ex[TG_CONF_EXCERPT];
    TG_GUARD(tg_param_scalar(p, key, "a duration", &q, err, errlen));
    if (q != NULL && tg_conf_parse_duration(q->value, out_ns) != TG_OK)
        return tg_param_fail(p, q, &q->value_mark, err, errlen,
                             "invalid duration '%s' (expected a number and a unit ns, us, ms, s, "
                             "m or h, e.g. 2s, 250ms, 0.001s; whole nanoseconds)",
                             tg_excerpt(q->value, ex, sizeof(ex)));
    return TG_OK;
}

int tg_conf_params_bool(const struct tg_conf_params *p, const char *key, bool *out, char *err,
                        size_t errlen)
{
    const struct tg_conf_param *q;
    char ex[TG_CONF_EXCERPT];
    TG_GUARD(tg_param_scalar(p, key, "true or false", &q, err, errlen));
    if (q != NULL && tg_conf_parse_bool(q->value, out) != TG_OK)
        return tg_param_fail(p, q, &q->value_mark, err, errlen, "expected true or false, got '%s'",
                             tg_excerpt(q->value, ex, sizeof(ex)));
    return TG_OK;
}

int tg_conf_params_u64(const struct tg_conf_params *p, const char *key, uint64_t min, uint64_t max,
                       uint64_t *out, char *err, size_t errlen)
{
    const struct tg_conf_param *q;
    char ex[TG_CONF_EXCERPT];
    TG_GUARD(tg_param_scalar(p, key, "an integer", &q, err, errlen));
    if (q != NULL && tg_conf_parse_u64(q->value, min, max, out) != TG_OK)
        return tg_param_fail(p, q, &q->value_mark, err, errlen,
                             "expected an integer in %llu..%llu, got '%s'", (unsigned long long)min,
                             (unsigned long long)max, tg_excerpt(q->value, ex, sizeof(ex)));
    return TG_OK;
}

int tg_conf_params_double(const struct tg_conf_params *p, const char *key, double min, double max,
                          double *out, char *err, size_t errlen)
{
    const struct tg_conf_param *q;
    char ex[TG_CONF_EXCERPT];
    TG_GUARD(tg_param_scalar(p, key, "a number", &q, err, errlen));
    if (q == NULL)
        return TG_OK;
    /* Plain decimal notation only: strtod would also take "inf", "nan",
     * hex floats and leading blanks. */
    const char *s = q->value;
    bool ok = *s != '\0';
    for (const char *c = s; ok && *c != '\0'; c++)
        ok = tg_is_digit(*c) || *c == '.' || *c == '-' || *c == '+' || *c == 'e' || *c == 'E';
    char *end = NULL;
    double d = 0;
    if (ok) {
        errno = 0;
        d = strtod(s, &end);
        ok = end != s && *end == '\0' && errno == 0 && isfinite(d) && d >= min && d <= max;
    }
    if (!ok)
        return tg_param_fail(p, q, &q->value_mark, err, errlen,
                             "expected a number in [%g, %g], got '%s'", min, max,
                             tg_excerpt(s, ex, sizeof(ex)));
    *out = d;
    return TG_OK;
}

int tg_conf_params_string(const struct tg_conf_params *p, const char *key, const char **out,
                          char *err, size_t errlen)
{
    const struct tg_conf_param *q;
    TG_GUARD(tg_param_scalar(p, key, "a string", &q, err, errlen));
    if (q != NULL)
        *out = q->value;
    return TG_OK;
}

int tg_conf_params_check_unused(const struct tg_conf_params *p, const char *provider_name,
                                char *err, size_t errlen)
{
    if (p == NULL)
        return TG_OK;
    for (size_t i = 0; i < p->n; i++) {
        const struct tg_conf_param *q = &p->v[i];
        if (!q->used) {
            char ex[TG_CONF_EXCERPT];
            return tg_param_fail(p, q, &q->mark, err, errlen, "unknown key '%s' for provider '%s'",
                                 tg_excerpt(q->key, ex, sizeof(ex)),
                                 provider_name != NULL ? provider_name : "?");
        }
    }
    return TG_OK;
}
