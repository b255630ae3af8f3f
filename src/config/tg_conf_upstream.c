/*
 * tg_conf_upstream: the schema of a listener's upstream block and of the
 * top-level dns block. Contract in tg_conf_upstream.h.
 */
#include "config/tg_conf_upstream.h"

#include "config/tg_conf_parse.h"
#include "config/tg_config_internal.h"
#include "core/tg_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TG_CONF_MAX_ENDPOINTS 256
#define TG_CONF_MAX_WEIGHT    128
#define TG_CONF_MAX_ATTEMPTS  10
#define TG_CONF_MAX_RESOLVERS 8
#define TG_CONF_TEXT_MAX      200 /* upstream.text: the rest is summarised */

/* ------------------------------------------------------------------------ */
/* Defaults and freeing                                                     */

void tg_conf_upstream_defaults(struct tg_conf_upstream *u)
{
    u->connect_timeout_ns = 5 * TG_NS_PER_S;
    u->max_connect_attempts = 3;
    u->lb_policy = TG_LB_ROUND_ROBIN;
    u->dns_lookup_family = TG_DNS_AUTO;
    u->dns_refresh_rate_ns = 5 * TG_NS_PER_S;
    u->outlier.consecutive_failures = 5;
    u->outlier.base_ejection_time_ns = 30 * TG_NS_PER_S;
    u->outlier.max_ejection_time_ns = 300 * TG_NS_PER_S;
    u->outlier.max_ejection_percent = 10;
    u->health_check.interval_ns = 5 * TG_NS_PER_S;
    u->health_check.timeout_ns = 1 * TG_NS_PER_S;
    u->health_check.unhealthy_threshold = 3;
    u->health_check.healthy_threshold = 1;
}

void tg_conf_upstream_free(struct tg_conf_upstream *u)
{
    for (size_t i = 0; u->endpoints != NULL && i < u->n_endpoints; i++) {
        free(u->endpoints[i].text);
        free(u->endpoints[i].host);
        tg_conf_addr_clear(&u->endpoints[i].addr);
    }
    free(u->endpoints);
    tg_conf_addr_clear(&u->addr);
    free(u->text);
    u->endpoints = NULL;
    u->n_endpoints = 0;
    u->text = NULL;
}

void tg_conf_dns_defaults(struct tg_conf_dns *d)
{
    d->query_timeout_ns = 2 * TG_NS_PER_S;
    d->query_attempts = 2;
}

void tg_conf_dns_free(struct tg_conf_dns *d)
{
    tg_cp_strv_free(d->resolvers, d->n_resolvers);
    d->resolvers = NULL;
    d->n_resolvers = 0;
}

/* ------------------------------------------------------------------------ */
/* Comparisons (a reload keeps what did not change)                         */

bool tg_conf_upstream_has_names(const struct tg_conf_upstream *u)
{
    for (size_t i = 0; i < u->n_endpoints; i++) {
        if (u->endpoints[i].is_name)
            return true;
    }
    return false;
}

bool tg_conf_upstream_same_cluster(const struct tg_conf_upstream *a,
                                   const struct tg_conf_upstream *b)
{
    if (a->n_endpoints != b->n_endpoints || a->connect_timeout_ns != b->connect_timeout_ns ||
        a->max_connect_attempts != b->max_connect_attempts || a->lb_policy != b->lb_policy ||
        a->dns_lookup_family != b->dns_lookup_family ||
        a->dns_refresh_rate_ns != b->dns_refresh_rate_ns ||
        a->respect_dns_ttl != b->respect_dns_ttl)
        return false;
    const struct tg_conf_outlier *oa = &a->outlier, *ob = &b->outlier;
    if (oa->consecutive_failures != ob->consecutive_failures ||
        oa->base_ejection_time_ns != ob->base_ejection_time_ns ||
        oa->max_ejection_time_ns != ob->max_ejection_time_ns ||
        oa->max_ejection_percent != ob->max_ejection_percent)
        return false;
    const struct tg_conf_health_check *ha = &a->health_check, *hb = &b->health_check;
    if (ha->enabled != hb->enabled)
        return false;
    if (ha->enabled && (ha->interval_ns != hb->interval_ns || ha->timeout_ns != hb->timeout_ns ||
                        ha->unhealthy_threshold != hb->unhealthy_threshold ||
                        ha->healthy_threshold != hb->healthy_threshold))
        return false;
    for (size_t i = 0; i < a->n_endpoints; i++) {
        const struct tg_conf_endpoint *x = &a->endpoints[i], *y = &b->endpoints[i];
        if (x->is_name != y->is_name || x->weight != y->weight || x->port != y->port ||
            strcmp(x->host, y->host) != 0)
            return false;
    }
    return true;
}

bool tg_conf_dns_equal(const struct tg_conf_dns *a, const struct tg_conf_dns *b)
{
    if (a->n_resolvers != b->n_resolvers || a->query_timeout_ns != b->query_timeout_ns ||
        a->query_attempts != b->query_attempts)
        return false;
    for (size_t i = 0; i < a->n_resolvers; i++) {
        if (strcmp(a->resolvers[i], b->resolvers[i]) != 0)
            return false;
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* Small typed readers                                                      */

/* An optional key whose value is one of names[] (NULL-terminated); *out is
 * the index. */
static int tg_conf_upstream_enum(struct tg_cp *cp, const yaml_node_t *map, const char *key,
                                 const char *const *names, int *out)
{
    const yaml_node_t *v = tg_cp_get(cp, map, key, NULL);
    const char *s;
    char ex[TG_CONF_EXCERPT], list[160];
    if (v == NULL)
        return TG_OK;
    size_t o = tg_cp_push_key(cp, key);
    int rc = tg_cp_scalar(cp, v, "a name", &s);
    if (rc != TG_OK)
        goto out;
    size_t off = 0;
    list[0] = '\0';
    for (int i = 0; names[i] != NULL; i++) {
        if (strcmp(names[i], s) == 0) {
            *out = i;
            goto out;
        }
        int w = snprintf(list + off, sizeof(list) - off, "%s%s", i ? ", " : "", names[i]);
        if (w > 0 && (size_t)w < sizeof(list) - off)
            off += (size_t)w;
    }
    rc = tg_cp_fail(cp, v, "invalid value '%s' (valid: %s)", tg_config_excerpt(s, ex, sizeof(ex)),
                    list);
out:
    tg_cp_pop(cp, o);
    return rc;
}

static int tg_conf_upstream_u32(struct tg_cp *cp, const yaml_node_t *map, const char *key,
                                uint32_t min, uint32_t max, uint32_t *out)
{
    uint64_t v = *out;
    TG_GUARD(tg_cp_opt_u64(cp, map, key, min, max, &v));
    *out = (uint32_t)v;
    return TG_OK;
}

/* ------------------------------------------------------------------------ */
/* upstream.endpoints                                                       */

static int tg_conf_upstream_hostport(struct tg_cp *cp, const yaml_node_t *v,
                                     struct tg_conf_endpoint *e)
{
    const char *s, *why;
    char ex[TG_CONF_EXCERPT];
    TG_GUARD(tg_cp_scalar(cp, v, "an address 'host:port'", &s));
    e->mark = tg_cp_mark(cp, v);
    why = tg_conf_parse_hostport(s, &e->host, &e->port, &e->is_name, &e->addr);
    if (why != NULL)
        return tg_cp_fail(cp, v, "invalid address '%s': %s", tg_config_excerpt(s, ex, sizeof(ex)),
                          why);
    e->addr.mark = e->mark;
    return tg_cp_strdup(cp, s, &e->text);
}

static int tg_conf_upstream_endpoint(struct tg_cp *cp, const yaml_node_t *n,
                                     struct tg_conf_endpoint *e)
{
    static const char *const keys[] = {"address", "weight", NULL};
    const yaml_node_t *v;
    e->weight = 1;
    TG_GUARD(tg_cp_check_map(cp, n, keys));
    TG_GUARD(tg_cp_require(cp, n, "address", &v));
    size_t o = tg_cp_push_key(cp, "address");
    int rc = tg_conf_upstream_hostport(cp, v, e);
    tg_cp_pop(cp, o);
    TG_GUARD(rc);
    return tg_conf_upstream_u32(cp, n, "weight", 1, TG_CONF_MAX_WEIGHT, &e->weight);
}

static int tg_conf_upstream_endpoints(struct tg_cp *cp, const yaml_node_t *v,
                                      struct tg_conf_upstream *u)
{
    if (v->type != YAML_SEQUENCE_NODE)
        return tg_cp_fail(cp, v, "expected a sequence of endpoints, got %s", tg_cp_kind(v));
    size_t cnt = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (cnt == 0)
        return tg_cp_fail(cp, v, "at least one endpoint is required");
    if (cnt > TG_CONF_MAX_ENDPOINTS)
        return tg_cp_fail(cp, v, "too many endpoints (%zu, at most %d)", cnt,
                          TG_CONF_MAX_ENDPOINTS);
    u->endpoints = calloc(cnt, sizeof(*u->endpoints));
    if (u->endpoints == NULL)
        return tg_cp_nomem(cp);
    u->n_endpoints = cnt;
    for (size_t i = 0; i < cnt; i++) {
        const yaml_node_t *it = tg_cp_node(cp, v->data.sequence.items.start[i]);
        size_t o = tg_cp_push_index(cp, i);
        int rc = tg_conf_upstream_endpoint(cp, it, &u->endpoints[i]);
        for (size_t j = 0; rc == TG_OK && j < i; j++) {
            /* The same entry twice is a copy-and-paste slip; weights say
             * "more of this one". */
            if (strcmp(u->endpoints[j].text, u->endpoints[i].text) == 0) {
                size_t o2 = tg_cp_push_key(cp, "address");
                rc = tg_cp_fail(cp, tg_cp_get(cp, it, "address", NULL),
                                "duplicate endpoint '%s' (also endpoints[%zu]; use weight)",
                                u->endpoints[i].text, j);
                tg_cp_pop(cp, o2);
            }
        }
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    return TG_OK;
}

/* The `address` form: one numeric endpoint of weight 1. */
static int tg_conf_upstream_from_address(struct tg_cp *cp, struct tg_conf_upstream *u)
{
    u->endpoints = calloc(1, sizeof(*u->endpoints));
    if (u->endpoints == NULL)
        return tg_cp_nomem(cp);
    u->n_endpoints = 1;
    struct tg_conf_endpoint *e = &u->endpoints[0];
    e->weight = 1;
    e->mark = u->addr.mark;
    e->port = tg_conf_parse_port(&u->addr);
    TG_GUARD(tg_cp_strdup(cp, u->addr.text, &e->text));
    char *colon = strrchr(e->text, ':');
    e->host = strndup(e->text, (size_t)(colon - e->text));
    if (e->host == NULL)
        return tg_cp_nomem(cp);
    e->addr = u->addr;
    e->addr.text = strdup(u->addr.text);
    if (e->addr.text == NULL)
        return tg_cp_nomem(cp);
    return TG_OK;
}

/* "a:1, b:2, c:3" for logs, cut with "(+N more)". */
static int tg_conf_upstream_text(struct tg_cp *cp, struct tg_conf_upstream *u)
{
    char buf[TG_CONF_TEXT_MAX + 32];
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < u->n_endpoints; i++) {
        size_t len = strlen(u->endpoints[i].text);
        if (i > 0 && off + len + 2 > TG_CONF_TEXT_MAX) {
            snprintf(buf + off, sizeof(buf) - off, " (+%zu more)", u->n_endpoints - i);
            break;
        }
        int w = snprintf(buf + off, sizeof(buf) - off, "%s%s", i ? "," : "", u->endpoints[i].text);
        if (w < 0 || (size_t)w >= sizeof(buf) - off)
            break;
        off += (size_t)w;
    }
    return tg_cp_strdup(cp, buf, &u->text);
}

/* ------------------------------------------------------------------------ */
/* outlier_detection, health_check                                          */

static int tg_conf_upstream_outlier(struct tg_cp *cp, const yaml_node_t *n,
                                    struct tg_conf_outlier *o)
{
    static const char *const keys[] = {"consecutive_failures", "base_ejection_time",
                                       "max_ejection_time", "max_ejection_percent", NULL};
    TG_GUARD(tg_cp_check_map(cp, n, keys));
    TG_GUARD(
        tg_conf_upstream_u32(cp, n, "consecutive_failures", 0, 1000, &o->consecutive_failures));
    TG_GUARD(tg_cp_opt_duration(cp, n, "base_ejection_time", false, &o->base_ejection_time_ns));
    bool max_given = tg_cp_get(cp, n, "max_ejection_time", NULL) != NULL;
    TG_GUARD(tg_cp_opt_duration(cp, n, "max_ejection_time", false, &o->max_ejection_time_ns));
    if (!max_given && o->max_ejection_time_ns < o->base_ejection_time_ns)
        o->max_ejection_time_ns = o->base_ejection_time_ns;
    if (o->max_ejection_time_ns < o->base_ejection_time_ns) {
        size_t k = tg_cp_push_key(cp, "max_ejection_time");
        int rc = tg_cp_fail(cp, tg_cp_get(cp, n, "max_ejection_time", NULL),
                            "must not be shorter than base_ejection_time");
        tg_cp_pop(cp, k);
        return rc;
    }
    return tg_conf_upstream_u32(cp, n, "max_ejection_percent", 1, 100, &o->max_ejection_percent);
}

static int tg_conf_upstream_health(struct tg_cp *cp, const yaml_node_t *n,
                                   struct tg_conf_health_check *h)
{
    static const char *const keys[] = {"interval", "timeout", "unhealthy_threshold",
                                       "healthy_threshold", NULL};
    TG_GUARD(tg_cp_check_map(cp, n, keys));
    TG_GUARD(tg_cp_opt_duration(cp, n, "interval", false, &h->interval_ns));
    TG_GUARD(tg_cp_opt_duration(cp, n, "timeout", false, &h->timeout_ns));
    TG_GUARD(tg_conf_upstream_u32(cp, n, "unhealthy_threshold", 1, 100, &h->unhealthy_threshold));
    TG_GUARD(tg_conf_upstream_u32(cp, n, "healthy_threshold", 1, 100, &h->healthy_threshold));
    h->enabled = true;
    return TG_OK;
}

/* A sub-mapping under key, parsed by fn with the path pushed. */
static int tg_conf_upstream_block(struct tg_cp *cp, const yaml_node_t *map, const char *key,
                                  int (*fn)(struct tg_cp *, const yaml_node_t *, void *), void *arg)
{
    const yaml_node_t *v = tg_cp_get(cp, map, key, NULL);
    if (v == NULL)
        return TG_OK;
    size_t o = tg_cp_push_key(cp, key);
    int rc = fn(cp, v, arg);
    tg_cp_pop(cp, o);
    return rc;
}

static int tg_conf_upstream_outlier_fn(struct tg_cp *cp, const yaml_node_t *n, void *arg)
{
    return tg_conf_upstream_outlier(cp, n, arg);
}

static int tg_conf_upstream_health_fn(struct tg_cp *cp, const yaml_node_t *n, void *arg)
{
    return tg_conf_upstream_health(cp, n, arg);
}

static int tg_conf_upstream_endpoints_fn(struct tg_cp *cp, const yaml_node_t *n, void *arg)
{
    return tg_conf_upstream_endpoints(cp, n, arg);
}

/* upstream.proxy_protocol: v1 | v2 (absent: no header). */
static int tg_conf_upstream_pp(struct tg_cp *cp, const yaml_node_t *map, int *out)
{
    const yaml_node_t *v = tg_cp_get(cp, map, "proxy_protocol", NULL);
    const char *s;
    char ex[TG_CONF_EXCERPT];
    if (v == NULL)
        return TG_OK;
    size_t o = tg_cp_push_key(cp, "proxy_protocol");
    int rc = tg_cp_scalar(cp, v, "v1 or v2", &s);
    if (rc != TG_OK)
        goto out;
    if (strcmp(s, "v1") == 0)
        *out = 1;
    else if (strcmp(s, "v2") == 0)
        *out = 2;
    else
        rc = tg_cp_fail(cp, v, "expected v1 or v2, got '%s'", tg_config_excerpt(s, ex, sizeof(ex)));
out:
    tg_cp_pop(cp, o);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* The upstream block                                                       */

int tg_conf_upstream_parse(struct tg_cp *cp, const yaml_node_t *n, struct tg_conf_upstream *u)
{
    static const char *const keys[] = {
        "address",           "endpoints",         "connect_timeout",  "max_connect_attempts",
        "lb_policy",         "dns_lookup_family", "dns_refresh_rate", "respect_dns_ttl",
        "outlier_detection", "health_check",      "proxy_protocol",   NULL};
    static const char *const policies[] = {"round_robin", "least_connections", "random", NULL};
    static const char *const families[] = {"auto", "v4", "v6", NULL};
    const yaml_node_t *addr, *eps;

    u->mark = tg_cp_mark(cp, n);
    TG_GUARD(tg_cp_check_map(cp, n, keys));
    addr = tg_cp_get(cp, n, "address", NULL);
    eps = tg_cp_get(cp, n, "endpoints", NULL);
    if (addr != NULL && eps != NULL) {
        size_t o = tg_cp_push_key(cp, "endpoints");
        int rc = tg_cp_fail(cp, eps, "give either 'address' or 'endpoints', not both");
        tg_cp_pop(cp, o);
        return rc;
    }
    if (addr == NULL && eps == NULL)
        return tg_cp_fail(cp, n, "missing required key 'address' (or 'endpoints')");
    if (addr != NULL) {
        TG_GUARD(tg_cp_req_addr(cp, n, "address", false, &u->addr));
        TG_GUARD(tg_conf_upstream_from_address(cp, u));
    } else {
        TG_GUARD(tg_conf_upstream_block(cp, n, "endpoints", tg_conf_upstream_endpoints_fn, u));
    }
    TG_GUARD(tg_conf_upstream_text(cp, u));
    TG_GUARD(tg_cp_opt_duration(cp, n, "connect_timeout", false, &u->connect_timeout_ns));
    TG_GUARD(tg_conf_upstream_u32(cp, n, "max_connect_attempts", 1, TG_CONF_MAX_ATTEMPTS,
                                  &u->max_connect_attempts));
    TG_GUARD(tg_conf_upstream_enum(cp, n, "lb_policy", policies, &u->lb_policy));
    TG_GUARD(tg_conf_upstream_enum(cp, n, "dns_lookup_family", families, &u->dns_lookup_family));
    TG_GUARD(tg_cp_opt_duration(cp, n, "dns_refresh_rate", false, &u->dns_refresh_rate_ns));
    TG_GUARD(tg_cp_opt_bool(cp, n, "respect_dns_ttl", &u->respect_dns_ttl));
    TG_GUARD(tg_conf_upstream_block(cp, n, "outlier_detection", tg_conf_upstream_outlier_fn,
                                    &u->outlier));
    TG_GUARD(tg_conf_upstream_pp(cp, n, &u->proxy_protocol));
    return tg_conf_upstream_block(cp, n, "health_check", tg_conf_upstream_health_fn,
                                  &u->health_check);
}

/* ------------------------------------------------------------------------ */
/* The top-level dns block                                                  */

int tg_conf_dns_parse(struct tg_cp *cp, const yaml_node_t *n, struct tg_conf_dns *d)
{
    static const char *const keys[] = {"resolvers", "query_timeout", "query_attempts", NULL};
    const yaml_node_t *v;
    d->mark = tg_cp_mark(cp, n);
    TG_GUARD(tg_cp_check_map(cp, n, keys));
    if ((v = tg_cp_get(cp, n, "resolvers", NULL)) != NULL) {
        size_t o = tg_cp_push_key(cp, "resolvers");
        int rc = tg_cp_strings(cp, v, 80, &d->resolvers, &d->n_resolvers);
        if (rc == TG_OK && d->n_resolvers > TG_CONF_MAX_RESOLVERS)
            rc = tg_cp_fail(cp, v, "too many resolvers (%zu, at most %d)", d->n_resolvers,
                            TG_CONF_MAX_RESOLVERS);
        for (size_t i = 0; rc == TG_OK && i < d->n_resolvers; i++) {
            char norm[80], ex[TG_CONF_EXCERPT];
            const char *why = tg_conf_parse_resolver(d->resolvers[i], norm, sizeof(norm));
            size_t o2 = tg_cp_push_index(cp, i);
            if (why != NULL)
                rc = tg_cp_fail(cp, tg_cp_node(cp, v->data.sequence.items.start[i]),
                                "invalid resolver '%s': %s (expected IP or IP:PORT)",
                                tg_config_excerpt(d->resolvers[i], ex, sizeof(ex)), why);
            else
                rc = tg_cp_strdup(cp, norm, &d->resolvers[i]);
            tg_cp_pop(cp, o2);
        }
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    TG_GUARD(tg_cp_opt_duration(cp, n, "query_timeout", false, &d->query_timeout_ns));
    return tg_conf_upstream_u32(cp, n, "query_attempts", 1, 10, &d->query_attempts);
}
