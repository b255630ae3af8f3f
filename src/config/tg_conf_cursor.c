/*
 * tg_conf_cursor: the generic cursor over a libyaml document (path stack,
 * positions, typed getters, mapping checks). Contract in tg_conf_cursor.h.
 */
#include "config/tg_conf_cursor.h"

#include "config/tg_conf_parse.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tg_conf_mark tg_cp_mark(const struct tg_cp *cp, const yaml_node_t *n)
{
    struct tg_conf_mark m = {cp->cfg->source_name, 0, 0};
    if (n != NULL) {
        m.line = n->start_mark.line < INT_MAX ? (int)n->start_mark.line + 1 : INT_MAX;
        m.col = n->start_mark.column < INT_MAX ? (int)n->start_mark.column + 1 : INT_MAX;
    }
    return m;
}

/* Report at node n under the current path; returns TG_ECONFIG. */
int tg_cp_fail(struct tg_cp *cp, const yaml_node_t *n, const char *fmt, ...)
{
    struct tg_conf_mark m = tg_cp_mark(cp, n);
    va_list ap;
    va_start(ap, fmt);
    tg_config_verror(cp->err, cp->errlen, &m, cp->path, fmt, ap);
    va_end(ap);
    return TG_ECONFIG;
}

int tg_cp_nomem(struct tg_cp *cp)
{
    struct tg_conf_mark m = {cp->cfg->source_name, 0, 0};
    tg_conf_error(cp->err, cp->errlen, &m, NULL, "out of memory");
    return TG_ENOMEM;
}

size_t tg_cp_push_key(struct tg_cp *cp, const char *key)
{
    size_t old = cp->plen;
    size_t room = sizeof(cp->path) - cp->plen;
    int n = snprintf(cp->path + cp->plen, room, "%s%s", cp->plen > 0 ? "." : "", key);
    if (n > 0)
        cp->plen += (size_t)n < room ? (size_t)n : room - 1;
    return old;
}

size_t tg_cp_push_index(struct tg_cp *cp, size_t i)
{
    size_t old = cp->plen;
    size_t room = sizeof(cp->path) - cp->plen;
    int n = snprintf(cp->path + cp->plen, room, "[%zu]", i);
    if (n > 0)
        cp->plen += (size_t)n < room ? (size_t)n : room - 1;
    return old;
}

void tg_cp_pop(struct tg_cp *cp, size_t old)
{
    cp->plen = old;
    cp->path[old] = '\0';
}

char *tg_cp_path_dup(struct tg_cp *cp)
{
    return strdup(cp->path);
}

yaml_node_t *tg_cp_node(struct tg_cp *cp, int idx)
{
    return yaml_document_get_node(cp->doc, idx);
}

const char *tg_cp_text(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

bool tg_cp_is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = tg_cp_text(n);
    return strcmp(s, "") == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

const char *tg_cp_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a sequence";
    case YAML_SCALAR_NODE:
        return tg_cp_is_null(n) ? "an empty value" : "a scalar";
    default:
        return "nothing";
    }
}

/* A string value (not null, no NUL bytes inside). */
int tg_cp_scalar(struct tg_cp *cp, const yaml_node_t *n, const char *what, const char **out)
{
    *out = NULL;
    if (n->type != YAML_SCALAR_NODE || tg_cp_is_null(n))
        return tg_cp_fail(cp, n, "expected %s, got %s", what, tg_cp_kind(n));
    if (strlen(tg_cp_text(n)) != n->data.scalar.length)
        return tg_cp_fail(cp, n, "value contains a NUL character");
    *out = tg_cp_text(n);
    return TG_OK;
}

int tg_cp_strdup(struct tg_cp *cp, const char *s, char **out)
{
    char *d = strdup(s);
    if (d == NULL)
        return tg_cp_nomem(cp);
    free(*out);
    *out = d;
    return TG_OK;
}

/* A non-empty string, copied. */
int tg_cp_string(struct tg_cp *cp, const yaml_node_t *n, char **out)
{
    const char *s;
    TG_GUARD(tg_cp_scalar(cp, n, "a string", &s));
    if (*s == '\0')
        return tg_cp_fail(cp, n, "must not be empty");
    return tg_cp_strdup(cp, s, out);
}

int tg_cp_u64(struct tg_cp *cp, const yaml_node_t *n, uint64_t min, uint64_t max, uint64_t *out)
{
    const char *s;
    char ex[TG_CONF_EXCERPT];
    TG_GUARD(tg_cp_scalar(cp, n, "an integer", &s));
    if (tg_conf_parse_u64(s, min, max, out) != TG_OK)
        return tg_cp_fail(cp, n, "expected an integer in %llu..%llu, got '%s'",
                          (unsigned long long)min, (unsigned long long)max,
                          tg_config_excerpt(s, ex, sizeof(ex)));
    return TG_OK;
}

int tg_cp_bool(struct tg_cp *cp, const yaml_node_t *n, bool *out)
{
    const char *s;
    char ex[TG_CONF_EXCERPT];
    TG_GUARD(tg_cp_scalar(cp, n, "true or false", &s));
    if (tg_conf_parse_bool(s, out) != TG_OK)
        return tg_cp_fail(cp, n, "expected true or false, got '%s'",
                          tg_config_excerpt(s, ex, sizeof(ex)));
    return TG_OK;
}

int tg_cp_duration(struct tg_cp *cp, const yaml_node_t *n, bool allow_zero, uint64_t *out)
{
    const char *s;
    char ex[TG_CONF_EXCERPT];
    uint64_t v;
    TG_GUARD(tg_cp_scalar(cp, n, "a duration", &s));
    if (tg_conf_parse_duration(s, &v) != TG_OK)
        return tg_cp_fail(cp, n,
                          "invalid duration '%s' (expected a number and a unit ns, us, ms, s, m, "
                          "h or d, e.g. 2s, 250ms, 0.001s; whole nanoseconds)",
                          tg_config_excerpt(s, ex, sizeof(ex)));
    if (v == 0 && !allow_zero)
        return tg_cp_fail(cp, n, "must be greater than 0");
    *out = v;
    return TG_OK;
}

int tg_cp_addr(struct tg_cp *cp, const yaml_node_t *n, bool allow_port0, struct tg_conf_addr *out)
{
    const char *s;
    char ex[TG_CONF_EXCERPT];
    struct tg_conf_addr a;
    TG_GUARD(tg_cp_scalar(cp, n, "an address 'host:port'", &s));
    const char *why = tg_conf_parse_addr_why(s, &a);
    if (why != NULL)
        return tg_cp_fail(cp, n, "invalid address '%s': %s", tg_config_excerpt(s, ex, sizeof(ex)),
                          why);
    if (!allow_port0 && tg_conf_parse_port(&a) == 0) {
        tg_conf_addr_clear(&a);
        return tg_cp_fail(cp, n, "invalid address '%s': port must be in 1..65535",
                          tg_config_excerpt(s, ex, sizeof(ex)));
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
int tg_cp_check_map(struct tg_cp *cp, const yaml_node_t *n, const char *const *allowed)
{
    if (n->type != YAML_MAPPING_NODE)
        return tg_cp_fail(cp, n, "expected a mapping, got %s", tg_cp_kind(n));
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = tg_cp_node(cp, p->key);
        if (k->type != YAML_SCALAR_NODE)
            return tg_cp_fail(cp, k, "mapping keys must be scalars, got %s", tg_cp_kind(k));
        const char *key = tg_cp_text(k);
        char ex[TG_CONF_EXCERPT];
        tg_config_excerpt(key, ex, sizeof(ex));
        for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < p; q++) {
            const yaml_node_t *k2 = tg_cp_node(cp, q->key);
            if (strcmp(tg_cp_text(k2), key) == 0) {
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
const yaml_node_t *tg_cp_get(struct tg_cp *cp, const yaml_node_t *n, const char *key,
                             const yaml_node_t **keynode)
{
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = tg_cp_node(cp, p->key);
        if (strcmp(tg_cp_text(k), key) == 0) {
            if (keynode != NULL)
                *keynode = k;
            return tg_cp_node(cp, p->value);
        }
    }
    return NULL;
}

int tg_cp_require(struct tg_cp *cp, const yaml_node_t *n, const char *key, const yaml_node_t **out)
{
    *out = tg_cp_get(cp, n, key, NULL);
    if (*out == NULL)
        return tg_cp_fail(cp, n, "missing required key '%s'", key);
    return TG_OK;
}

/* Optional fields: absent leaves *out unchanged. */
int tg_cp_opt_u64(struct tg_cp *cp, const yaml_node_t *map, const char *key, uint64_t min,
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

int tg_cp_opt_bool(struct tg_cp *cp, const yaml_node_t *map, const char *key, bool *out)
{
    const yaml_node_t *v = tg_cp_get(cp, map, key, NULL);
    if (v == NULL)
        return TG_OK;
    size_t o = tg_cp_push_key(cp, key);
    int rc = tg_cp_bool(cp, v, out);
    tg_cp_pop(cp, o);
    return rc;
}

int tg_cp_opt_duration(struct tg_cp *cp, const yaml_node_t *map, const char *key, bool allow_zero,
                       uint64_t *out)
{
    const yaml_node_t *v = tg_cp_get(cp, map, key, NULL);
    if (v == NULL)
        return TG_OK;
    size_t o = tg_cp_push_key(cp, key);
    int rc = tg_cp_duration(cp, v, allow_zero, out);
    tg_cp_pop(cp, o);
    return rc;
}

int tg_cp_opt_string(struct tg_cp *cp, const yaml_node_t *map, const char *key, char **out)
{
    const yaml_node_t *v = tg_cp_get(cp, map, key, NULL);
    if (v == NULL)
        return TG_OK;
    size_t o = tg_cp_push_key(cp, key);
    int rc = tg_cp_string(cp, v, out);
    tg_cp_pop(cp, o);
    return rc;
}

int tg_cp_req_addr(struct tg_cp *cp, const yaml_node_t *map, const char *key, bool allow_port0,
                   struct tg_conf_addr *out)
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
int tg_cp_strings(struct tg_cp *cp, const yaml_node_t *n, size_t maxlen, char ***out, size_t *nout)
{
    if (n->type != YAML_SEQUENCE_NODE)
        return tg_cp_fail(cp, n, "expected a sequence of strings, got %s", tg_cp_kind(n));
    size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (cnt == 0)
        return tg_cp_fail(cp, n, "must not be empty (leave the key out instead)");
    char **v = calloc(cnt, sizeof(*v));
    if (v == NULL)
        return tg_cp_nomem(cp);
    tg_cp_strv_free(*out, *nout);
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

void tg_cp_strv_free(char **v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++)
        free(v[i]);
    free(v);
}
