/*
 * tg_conf_schema: the top level of the configuration (concurrency,
 * log_level, admin, limits, reload) and the listeners (name, address, backlog);
 * each listener's tls block is tg_conf_tls's, its upstream block and the
 * top-level dns block tg_conf_upstream's, the access_log block
 * tg_conf_alog's. Contract in tg_conf_schema.h.
 */
#include "config/tg_conf_schema.h"

#include "config/tg_conf_alog.h"
#include "config/tg_conf_parse.h"
#include "config/tg_conf_tls.h"
#include "config/tg_conf_upstream.h"
#include "core/tg_log.h"
#include "core/tg_sysinfo.h"
#include "core/tg_time.h"

#include <openssl/prov_ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TG_CONF_MAX_CONCURRENCY 256

void tg_conf_schema_defaults(struct tg_config *cfg)
{
    cfg->concurrency = 1;
    cfg->log_level = TG_LOG_INFO;
    cfg->limits.max_connections = 50000;
    cfg->limits.max_connections_per_source = 0;
    cfg->limits.per_source_ipv6_prefix = 64;
    cfg->limits.first_byte_timeout_ns = 5 * TG_NS_PER_S;
    cfg->limits.handshake_timeout_ns = 10 * TG_NS_PER_S;
    cfg->limits.idle_timeout_ns = 300 * TG_NS_PER_S;
    cfg->limits.drain_timeout_ns = 30 * TG_NS_PER_S;
    cfg->limits.buffer_size = 16384;
    cfg->access_log.dest = TG_CONF_ALOG_OFF;
    cfg->access_log.format = TG_CONF_ALOG_TEXT;
    cfg->access_log.buffer = (size_t)256 << 10;
    cfg->reload.watch = true;
    cfg->reload.debounce_ns = 200 * TG_NS_PER_MS;
    tg_conf_dns_defaults(&cfg->dns);
}

static void tg_conf_schema_listener_free(struct tg_conf_listener *l)
{
    free(l->name);
    tg_conf_addr_clear(&l->addr);
    tg_conf_tls_free(&l->tls);
    tg_conf_upstream_free(&l->upstream);
    free(l->path);
}

void tg_conf_schema_free(struct tg_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; cfg->listeners != NULL && i < cfg->n_listeners; i++)
        tg_conf_schema_listener_free(&cfg->listeners[i]);
    free(cfg->listeners);
    tg_conf_addr_clear(&cfg->admin);
    free(cfg->access_log.path);
    tg_conf_dns_free(&cfg->dns);
    free(cfg->source_name);
    free(cfg->state_dir);
    free(cfg);
}

/* ------------------------------------------------------------------------ */
/* listeners                                                                */

static bool tg_conf_schema_name_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 64)
        return false;
    for (; *s != '\0'; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || tg_conf_parse_is_digit(c) ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

static int tg_conf_schema_listener(struct tg_cp *cp, const yaml_node_t *n, size_t idx)
{
    static const char *const keys[] = {
        "name", "address", "backlog", "tls", "upstream", "proxy_protocol", "proxy_protocol_timeout",
        NULL};
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
    tg_conf_upstream_defaults(&l->upstream);
    l->proxy_protocol_timeout_ns = 3 * TG_NS_PER_S;
    TG_GUARD(tg_cp_check_map(cp, n, keys));

    if ((namenode = tg_cp_get(cp, n, "name", NULL)) != NULL) {
        char ex[TG_CONF_EXCERPT];
        o = tg_cp_push_key(cp, "name");
        rc = tg_cp_string(cp, namenode, &l->name);
        if (rc == TG_OK && !tg_conf_schema_name_ok(l->name))
            rc = tg_cp_fail(cp, namenode,
                            "invalid name '%s' (1..64 characters of A-Z a-z 0-9 _ - .)",
                            tg_config_excerpt(l->name, ex, sizeof(ex)));
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
    for (size_t i = 0; i < idx && tg_conf_parse_port(&l->addr) != 0; i++) {
        if (tg_conf_parse_same_addr(&cp->cfg->listeners[i].addr, &l->addr)) {
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

    TG_GUARD(tg_cp_opt_bool(cp, n, "proxy_protocol", &l->proxy_protocol));
    TG_GUARD(
        tg_cp_opt_duration(cp, n, "proxy_protocol_timeout", false, &l->proxy_protocol_timeout_ns));

    TG_GUARD(tg_cp_require(cp, n, "tls", &v));
    o = tg_cp_push_key(cp, "tls");
    rc = tg_conf_tls_parse(cp, v, &l->tls);
    tg_cp_pop(cp, o);
    TG_GUARD(rc);

    TG_GUARD(tg_cp_require(cp, n, "upstream", &v));
    o = tg_cp_push_key(cp, "upstream");
    rc = tg_conf_upstream_parse(cp, v, &l->upstream);
    tg_cp_pop(cp, o);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* The top level                                                            */

static int tg_conf_schema_concurrency(struct tg_cp *cp, const yaml_node_t *root)
{
    const yaml_node_t *v = tg_cp_get(cp, root, "concurrency", NULL);
    const char *s;
    char ex[TG_CONF_EXCERPT];
    uint64_t u;
    if (v == NULL)
        return TG_OK;
    size_t o = tg_cp_push_key(cp, "concurrency");
    cp->cfg->concurrency_mark = tg_cp_mark(cp, v);
    int rc = tg_cp_scalar(cp, v, "an integer or 'auto'", &s);
    if (rc == TG_OK && strcmp(s, "auto") == 0) {
        /* CPUs this process may run on, capped by its cgroup CPU quota. */
        long ncpu = tg_sysinfo_cpus_auto();
        if (ncpu > TG_CONF_MAX_CONCURRENCY)
            ncpu = TG_CONF_MAX_CONCURRENCY;
        cp->cfg->concurrency = (int)ncpu;
    } else if (rc == TG_OK) {
        if (tg_conf_parse_u64(s, 1, TG_CONF_MAX_CONCURRENCY, &u) == TG_OK)
            cp->cfg->concurrency = (int)u;
        else
            rc = tg_cp_fail(cp, v, "expected an integer in 1..%d or 'auto', got '%s'",
                            TG_CONF_MAX_CONCURRENCY, tg_config_excerpt(s, ex, sizeof(ex)));
    }
    tg_cp_pop(cp, o);
    return rc;
}

/* reload: { watch, debounce } */
static int tg_conf_schema_reload(struct tg_cp *cp, const yaml_node_t *v, struct tg_conf_reload *r)
{
    static const char *const keys[] = {"watch", "debounce", NULL};
    TG_GUARD(tg_cp_check_map(cp, v, keys));
    TG_GUARD(tg_cp_opt_bool(cp, v, "watch", &r->watch));
    TG_GUARD(tg_cp_opt_duration(cp, v, "debounce", true, &r->debounce_ns));
    return TG_OK;
}

int tg_conf_schema_root(struct tg_cp *cp, const yaml_node_t *root)
{
    static const char *const keys[] = {"concurrency", "log_level",  "admin",
                                       "listeners",   "limits",     "reload",
                                       "dns",         "access_log", NULL};
    static const char *const admin_keys[] = {"address", NULL};
    static const char *const limit_keys[] = {"max_connections",
                                             "max_connections_per_source",
                                             "per_source_ipv6_prefix",
                                             "first_byte_timeout",
                                             "handshake_timeout",
                                             "idle_timeout",
                                             "drain_timeout",
                                             "buffer_size",
                                             NULL};
    struct tg_config *cfg = cp->cfg;
    const yaml_node_t *v;
    size_t o;
    int rc;

    if (root->type != YAML_MAPPING_NODE)
        return tg_cp_fail(cp, root, "expected a mapping at the top level, got %s",
                          tg_cp_kind(root));
    TG_GUARD(tg_cp_check_map(cp, root, keys));
    TG_GUARD(tg_conf_schema_concurrency(cp, root));

    if ((v = tg_cp_get(cp, root, "log_level", NULL)) != NULL) {
        const char *s;
        char ex[TG_CONF_EXCERPT];
        enum tg_log_level lvl;
        o = tg_cp_push_key(cp, "log_level");
        rc = tg_cp_scalar(cp, v, "a log level", &s);
        if (rc == TG_OK && !tg_log_parse_level(s, &lvl))
            rc = tg_cp_fail(cp, v, "invalid log level '%s' (valid: error, warn, info, debug)",
                            tg_config_excerpt(s, ex, sizeof(ex)));
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
        rc = tg_cp_fail(cp, v, "expected a sequence of listeners, got %s", tg_cp_kind(v));
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
            rc = tg_conf_schema_listener(cp, it, i);
            tg_cp_pop(cp, o2);
        }
    }
    tg_cp_pop(cp, o);
    TG_GUARD(rc);

    if ((v = tg_cp_get(cp, root, "dns", NULL)) != NULL) {
        o = tg_cp_push_key(cp, "dns");
        rc = tg_conf_dns_parse(cp, v, &cfg->dns);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }

    if ((v = tg_cp_get(cp, root, "limits", NULL)) != NULL) {
        struct tg_conf_limits *lim = &cfg->limits;
        uint64_t bs = lim->buffer_size, v6p = lim->per_source_ipv6_prefix;
        o = tg_cp_push_key(cp, "limits");
        rc = tg_cp_check_map(cp, v, limit_keys);
        if (rc == TG_OK)
            rc = tg_cp_opt_u64(cp, v, "max_connections", 1, 10000000, &lim->max_connections);
        if (rc == TG_OK)
            rc = tg_cp_opt_u64(cp, v, "max_connections_per_source", 0, 10000000,
                               &lim->max_connections_per_source);
        if (rc == TG_OK)
            rc = tg_cp_opt_u64(cp, v, "per_source_ipv6_prefix", 1, 128, &v6p);
        lim->per_source_ipv6_prefix = (unsigned)v6p;
        if (rc == TG_OK)
            rc =
                tg_cp_opt_duration(cp, v, "first_byte_timeout", false, &lim->first_byte_timeout_ns);
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

    if ((v = tg_cp_get(cp, root, "reload", NULL)) != NULL) {
        o = tg_cp_push_key(cp, "reload");
        rc = tg_conf_schema_reload(cp, v, &cfg->reload);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }

    if ((v = tg_cp_get(cp, root, "access_log", NULL)) != NULL) {
        o = tg_cp_push_key(cp, "access_log");
        rc = tg_conf_alog_parse(cp, v, &cfg->access_log);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    return TG_OK;
}
