/*
 * tg_gwapi_conv: Gateway API objects -> tlsgate configuration text.
 *
 * Passes: duplicates (a later copy of an object replaces an earlier one, as
 * kubectl apply would), EnvoyPatchPolicies (key providers per Gateway and
 * Secret), then every Gateway with its class, EnvoyProxy, listeners, routes,
 * Secrets and Services, then what was given but used by nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "k8s/tg_gwapi_internal.h"

static void tg_gw_supersede(struct tg_gwapi *g)
{
    for (size_t i = 0; i < g->nobjs; i++) {
        struct tg_gw_obj *a = &g->objs[i];
        for (size_t j = i + 1; j < g->nobjs && !a->invalid; j++) {
            const struct tg_gw_obj *b = &g->objs[j];
            if (!b->invalid && strcmp(a->kind, b->kind) == 0 &&
                strcmp(a->api_version, b->api_version) == 0 && strcmp(a->name, b->name) == 0 &&
                strcmp(tg_gw_ns(a), tg_gw_ns(b)) == 0) {
                tg_gw_report(g, TG_GW_WARN, a, NULL, NULL,
                             "replaced by the same object later in the input (%s:%zu)", b->file,
                             b->node->start_mark.line + 1);
                a->superseded = true;
                break;
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* GatewayClass and EnvoyProxy                                              */

static void tg_gw_envoyproxy(struct tg_gw_ctx *c, struct tg_gw_obj *ep)
{
    static const char *const keys[] = {"concurrency", "provider", NULL};
    struct tg_gwapi *g = c->g;
    if (ep->used)
        return;
    ep->used = true;
    yaml_node_t *spec = tg_gw_get(ep->doc, ep->node, "spec");
    tg_gw_check_keys(g, ep, spec, "spec", keys);
    yaml_node_t *conc = tg_gw_get(ep->doc, spec, "concurrency");
    long n;
    if (conc != NULL) {
        if (!tg_gw_int(conc, 1, 256, &n)) {
            tg_gw_report(g, TG_GW_WARN, ep, conc, "spec.concurrency",
                         "expected an integer in 1..256: ignored (tlsgate's default: 1)");
        } else if (c->concurrency_from != NULL && c->concurrency != n) {
            tg_gw_report(g, TG_GW_WARN, ep, conc, "spec.concurrency",
                         "%ld differs from %ld (EnvoyProxy %s/%s): one tlsgate has one "
                         "concurrency: %ld kept",
                         n, c->concurrency, tg_gw_ns(c->concurrency_from),
                         c->concurrency_from->name, c->concurrency);
        } else {
            c->concurrency = n;
            c->concurrency_from = ep;
        }
    }
    yaml_node_t *prov = tg_gw_get(ep->doc, spec, "provider");
    if (prov != NULL)
        tg_gw_report(g, TG_GW_WARN, ep, prov, "spec.provider",
                     "Kubernetes settings (image, resources such as qat.intel.com/cy, "
                     "affinity, Service type) are not part of tlsgate's configuration: set them "
                     "in tlsgate's Deployment and Service (deploy/kubernetes)");
}

static void tg_gw_class(struct tg_gw_ctx *c, const struct tg_gw_obj *gw, const char *cname)
{
    static const char *const keys[] = {"controllerName", "parametersRef", "description", NULL};
    struct tg_gwapi *g = c->g;
    struct tg_gw_obj *gc =
        cname != NULL ? tg_gw_find(g, TG_GW_GROUP, "GatewayClass", NULL, cname) : NULL;
    if (gc == NULL || gc->used)
        return;
    (void)gw;
    gc->used = true;
    yaml_node_t *spec = tg_gw_get(gc->doc, gc->node, "spec");
    tg_gw_check_keys(g, gc, spec, "spec", keys);
    yaml_node_t *pref = tg_gw_get(gc->doc, spec, "parametersRef");
    if (pref == NULL)
        return;
    const char *group = tg_gw_str(gc->doc, pref, "group");
    const char *kind = tg_gw_str(gc->doc, pref, "kind");
    const char *name = tg_gw_str(gc->doc, pref, "name");
    const char *ns = tg_gw_str(gc->doc, pref, "namespace");
    if (group == NULL || strcmp(group, TG_EG_GROUP) != 0 || kind == NULL ||
        strcmp(kind, "EnvoyProxy") != 0 || name == NULL) {
        tg_gw_report(g, TG_GW_WARN, gc, pref, "spec.parametersRef",
                     "parameters of kind %s: not understood, ignored", kind ? kind : "?");
        return;
    }
    struct tg_gw_obj *ep = tg_gw_find(g, TG_EG_GROUP, "EnvoyProxy", tg_gw_or(ns, "default"), name);
    if (ep != NULL)
        tg_gw_envoyproxy(c, ep);
}

/* ------------------------------------------------------------------------ */
/* Routes and backends                                                      */

static const char *const tg_gw_route_kinds[] = {"TCPRoute",  "TLSRoute", "HTTPRoute",
                                                "GRPCRoute", "UDPRoute", NULL};

/* Does route o attach to listener lname/port of Gateway gw? */
static bool tg_gw_attaches(const struct tg_gw_obj *o, const struct tg_gw_obj *gw, const char *lname,
                           long port)
{
    yaml_node_t *spec = tg_gw_get(o->doc, o->node, "spec");
    yaml_node_t *refs = tg_gw_get(o->doc, spec, "parentRefs");
    for (size_t i = 0; i < tg_gw_seq_len(refs); i++) {
        yaml_node_t *r = tg_gw_seq_at(o->doc, refs, i);
        const char *name = tg_gw_str(o->doc, r, "name");
        const char *section = tg_gw_str(o->doc, r, "sectionName");
        long p;
        if (name == NULL || strcmp(name, gw->name) != 0 ||
            strcmp(tg_gw_or(tg_gw_str(o->doc, r, "kind"), "Gateway"), "Gateway") != 0 ||
            strcmp(tg_gw_or(tg_gw_str(o->doc, r, "group"), TG_GW_GROUP), TG_GW_GROUP) != 0 ||
            strcmp(tg_gw_or(tg_gw_str(o->doc, r, "namespace"), tg_gw_ns(o)), tg_gw_ns(gw)) != 0)
            continue;
        if (section != NULL && strcmp(section, lname) != 0)
            continue;
        yaml_node_t *pn = tg_gw_get(o->doc, r, "port");
        if (pn != NULL && (!tg_gw_int(pn, 1, 65535, &p) || p != port))
            continue;
        return true;
    }
    return false;
}

/* The upstream address of route o's backend into buf; TG_OK or TG_ECONFIG (reported). */
static int tg_gw_backend(struct tg_gw_ctx *c, struct tg_gw_obj *o, char *buf, size_t len,
                         char *what, size_t whatlen)
{
    static const char *const spec_tcp[] = {"parentRefs", "rules", NULL};
    static const char *const spec_tls[] = {"parentRefs", "rules", "hostnames", NULL};
    static const char *const rule_keys[] = {"backendRefs", "name", NULL};
    static const char *const be_keys[] = {"group", "kind",   "name", "namespace",
                                          "port",  "weight", NULL};
    struct tg_gwapi *g = c->g;
    bool tls = strcmp(o->kind, "TLSRoute") == 0;
    yaml_node_t *spec = tg_gw_get(o->doc, o->node, "spec");
    tg_gw_check_keys(g, o, spec, "spec", tls ? spec_tls : spec_tcp);
    yaml_node_t *hosts = tg_gw_get(o->doc, spec, "hostnames");
    if (hosts != NULL)
        tg_gw_report(g, TG_GW_WARN, o, hosts, "spec.hostnames",
                     "tlsgate does not route by server name: the listener's one route gets "
                     "every connection");
    yaml_node_t *rules = tg_gw_get(o->doc, spec, "rules");
    yaml_node_t *rule = tg_gw_seq_at(o->doc, rules, 0);
    if (rule == NULL) {
        tg_gw_report(g, TG_GW_ERROR, o, spec, "spec.rules", "no rule: no backend to forward to");
        return TG_ECONFIG;
    }
    if (tg_gw_seq_len(rules) > 1)
        tg_gw_report(g, TG_GW_WARN, o, tg_gw_seq_at(o->doc, rules, 1), "spec.rules[1]",
                     "only the first rule is used: tlsgate forwards a listener to one upstream");
    tg_gw_check_keys(g, o, rule, "spec.rules[0]", rule_keys);
    yaml_node_t *refs = tg_gw_get(o->doc, rule, "backendRefs");
    yaml_node_t *be = tg_gw_seq_at(o->doc, refs, 0);
    if (be == NULL) {
        tg_gw_report(g, TG_GW_ERROR, o, rule, "spec.rules[0].backendRefs",
                     "no backend to forward to");
        return TG_ECONFIG;
    }
    if (tg_gw_seq_len(refs) > 1)
        tg_gw_report(g, TG_GW_WARN, o, tg_gw_seq_at(o->doc, refs, 1),
                     "spec.rules[0].backendRefs[1]",
                     "only the first backend gets traffic (tlsgate has one upstream per "
                     "listener; weights are not applied)");
    tg_gw_check_keys(g, o, be, "spec.rules[0].backendRefs[0]", be_keys);
    const char *kind = tg_gw_or(tg_gw_str(o->doc, be, "kind"), "Service");
    const char *group = tg_gw_str(o->doc, be, "group");
    const char *name = tg_gw_str(o->doc, be, "name");
    const char *ns = tg_gw_or(tg_gw_str(o->doc, be, "namespace"), tg_gw_ns(o));
    long port;
    if (strcmp(kind, "Service") != 0 || (group != NULL && group[0] != '\0') || name == NULL ||
        name[0] == '\0') {
        tg_gw_report(g, TG_GW_ERROR, o, be, "spec.rules[0].backendRefs[0]",
                     "only a Service backend (with a name) is understood");
        return TG_ECONFIG;
    }
    if (!tg_gw_int(tg_gw_get(o->doc, be, "port"), 1, 65535, &port)) {
        tg_gw_report(g, TG_GW_ERROR, o, be, "spec.rules[0].backendRefs[0].port",
                     "a Service backend needs a port in 1..65535");
        return TG_ECONFIG;
    }
    if (strcmp(ns, tg_gw_ns(o)) != 0)
        tg_gw_report(g, TG_GW_WARN, o, be, "spec.rules[0].backendRefs[0].namespace",
                     "a backend in namespace %s needs a ReferenceGrant there (not checked)", ns);
    snprintf(what, whatlen, "%s %s/%s -> Service %s/%s port %ld", o->kind, tg_gw_ns(o), o->name, ns,
             name, port);
    struct tg_gw_obj *svc = tg_gw_find(g, "", "Service", ns, name);
    if (svc != NULL) {
        svc->used = true;
        yaml_node_t *sspec = tg_gw_get(svc->doc, svc->node, "spec");
        yaml_node_t *ports = tg_gw_get(svc->doc, sspec, "ports");
        bool found = false;
        long p;
        for (size_t i = 0; i < tg_gw_seq_len(ports) && !found; i++)
            found = tg_gw_int(tg_gw_get(svc->doc, tg_gw_seq_at(svc->doc, ports, i), "port"), 1,
                              65535, &p) &&
                    p == port;
        if (!found)
            tg_gw_report(g, TG_GW_WARN, svc, ports, "spec.ports",
                         "no port %ld, which %s %s/%s forwards to", port, o->kind, tg_gw_ns(o),
                         o->name);
    }
    if (g->opts.upstream == TG_GWAPI_UPSTREAM_CLUSTER_IP) {
        const char *ip =
            svc != NULL ? tg_gw_str(svc->doc, tg_gw_get(svc->doc, svc->node, "spec"), "clusterIP")
                        : NULL;
        if (ip == NULL || ip[0] == '\0' || strcmp(ip, "None") == 0) {
            tg_gw_report(g, TG_GW_ERROR, o, be, "spec.rules[0].backendRefs[0]",
                         "--upstream cluster-ip: Service %s/%s %s", ns, name,
                         svc == NULL ? "is not in the input (kubectl get service -o yaml)"
                                     : "has no spec.clusterIP");
            return TG_ECONFIG;
        }
        snprintf(buf, len, strchr(ip, ':') != NULL ? "[%s]:%ld" : "%s:%ld", ip, port);
    } else {
        snprintf(buf, len, "%s.%s.svc.%s:%ld", name, ns, g->opts.cluster_domain, port);
    }
    return TG_OK;
}

/* The one TCPRoute/TLSRoute of listener i of gw, or NULL (reported). */
static struct tg_gw_obj *tg_gw_route_of(struct tg_gw_ctx *c, const struct tg_gw_obj *gw,
                                        const yaml_node_t *l, const char *path, const char *lname,
                                        long port)
{
    struct tg_gwapi *g = c->g;
    yaml_node_t *ar = tg_gw_get(gw->doc, l, "allowedRoutes");
    yaml_node_t *from_n = tg_gw_get(gw->doc, tg_gw_get(gw->doc, ar, "namespaces"), "from");
    const char *from = tg_gw_or(tg_gw_scalar(from_n), "Same");
    yaml_node_t *kinds = tg_gw_get(gw->doc, ar, "kinds");
    char sub[160];
    snprintf(sub, sizeof(sub), "%s.allowedRoutes", path);
    if (strcmp(from, "Selector") == 0)
        tg_gw_report(g, TG_GW_WARN, gw, from_n, sub,
                     "namespaces.from Selector is not evaluated: routes of every namespace "
                     "attach");
    struct tg_gw_obj *found = NULL;
    size_t n = 0;
    for (size_t i = 0; i < g->nobjs; i++) {
        struct tg_gw_obj *o = &g->objs[i];
        bool route = false;
        for (size_t k = 0; tg_gw_route_kinds[k] != NULL && !route; k++)
            route = tg_gw_is(o, TG_GW_GROUP, tg_gw_route_kinds[k]);
        if (!route || !tg_gw_attaches(o, gw, lname, port))
            continue;
        if (strcmp(from, "Same") == 0 && strcmp(tg_gw_ns(o), tg_gw_ns(gw)) != 0) {
            tg_gw_report(g, TG_GW_WARN, o, NULL, "spec.parentRefs",
                         "not attached to %s/%s listener %s: its allowedRoutes take routes of "
                         "namespace %s only",
                         tg_gw_ns(gw), gw->name, lname, tg_gw_ns(gw));
            o->used = true;
            continue;
        }
        bool kind_ok = tg_gw_seq_len(kinds) == 0;
        for (size_t k = 0; k < tg_gw_seq_len(kinds) && !kind_ok; k++) {
            const char *kk = tg_gw_str(gw->doc, tg_gw_seq_at(gw->doc, kinds, k), "kind");
            kind_ok = kk != NULL && strcmp(kk, o->kind) == 0;
        }
        if (!kind_ok) {
            tg_gw_report(g, TG_GW_WARN, o, NULL, "spec.parentRefs",
                         "not attached to %s/%s listener %s: allowedRoutes.kinds excludes %s",
                         tg_gw_ns(gw), gw->name, lname, o->kind);
            o->used = true;
            continue;
        }
        if (strcmp(o->kind, "TCPRoute") != 0 && strcmp(o->kind, "TLSRoute") != 0) {
            tg_gw_report(g, TG_GW_ERROR, o, NULL, NULL,
                         "attached to %s/%s listener %s: %s routing is not supported (tlsgate "
                         "forwards TCP streams): use a TCPRoute",
                         tg_gw_ns(gw), gw->name, lname, o->kind);
            o->used = true;
            n = 2; /* an error already: no "missing route" on top */
            continue;
        }
        o->used = true;
        if (found != NULL) {
            tg_gw_report(g, TG_GW_ERROR, o, NULL, "spec.parentRefs",
                         "a second route for %s/%s listener %s (first: %s %s/%s): tlsgate "
                         "forwards a listener to one upstream",
                         tg_gw_ns(gw), gw->name, lname, found->kind, tg_gw_ns(found), found->name);
            n = 2;
            continue;
        }
        found = o;
        n = n == 0 ? 1 : n;
    }
    if (n == 0)
        tg_gw_report(g, TG_GW_ERROR, gw, l, path,
                     "no TCPRoute or TLSRoute attaches to listener %s: no upstream to forward to",
                     lname);
    return n == 1 ? found : NULL;
}

/* ------------------------------------------------------------------------ */
/* Gateways and listeners                                                   */

/* A tlsgate listener name from gw and listener names: [A-Za-z0-9_.-], unique, <= 64. */
static void tg_gw_listener_name(struct tg_gw_ctx *c, const struct tg_gw_obj *gw, const char *lname,
                                char *out)
{
    char raw[3 * TG_NAME_MAX];
    for (int attempt = 0;; attempt++) {
        if (attempt == 0)
            snprintf(raw, sizeof(raw), "%s-%s", gw->name, lname);
        else if (attempt == 1)
            snprintf(raw, sizeof(raw), "%s-%s-%s", tg_gw_ns(gw), gw->name, lname);
        else
            snprintf(raw, sizeof(raw), "%.50s-%d", out, attempt);
        size_t j = 0;
        for (size_t i = 0; raw[i] != '\0' && j < TG_NAME_MAX; i++) {
            char ch = raw[i];
            bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.';
            out[j++] = ok ? ch : '-';
        }
        out[j] = '\0';
        bool dup = j == 0;
        for (size_t i = 0; i < c->nout && !dup; i++)
            dup = strcmp(c->out[i].name, out) == 0;
        if (!dup)
            return;
    }
}

static int tg_gw_listener(struct tg_gw_ctx *c, struct tg_gw_obj *gw, size_t idx, bool *converted)
{
    static const char *const keys[] = {"name", "hostname",      "port", "protocol",
                                       "tls",  "allowedRoutes", NULL};
    static const char *const tls_keys[] = {"mode", "certificateRefs", "options",
                                           "frontendValidation", NULL};
    struct tg_gwapi *g = c->g;
    char path[64], sub[128], what[600], name[TG_NAME_MAX + 1];
    yaml_node_t *l = tg_gw_seq_at(
        gw->doc, tg_gw_get(gw->doc, tg_gw_get(gw->doc, gw->node, "spec"), "listeners"), idx);
    snprintf(path, sizeof(path), "spec.listeners[%zu]", idx);
    *converted = false;
    tg_gw_check_keys(g, gw, l, path, keys);
    const char *lname = tg_gw_or(tg_gw_str(gw->doc, l, "name"), "");
    const char *proto = tg_gw_or(tg_gw_str(gw->doc, l, "protocol"), "");
    if (strcmp(proto, "TLS") != 0) {
        tg_gw_report(g, TG_GW_WARN, gw, l, path,
                     "listener '%s', protocol '%s': not converted (tlsgate terminates TLS for "
                     "TCP: protocol TLS, mode Terminate)",
                     lname, proto);
        return TG_OK;
    }
    long port;
    if (!tg_gw_int(tg_gw_get(gw->doc, l, "port"), 1, 65535, &port)) {
        snprintf(sub, sizeof(sub), "%s.port", path);
        tg_gw_report(g, TG_GW_ERROR, gw, l, sub, "expected a port in 1..65535");
        return TG_ECONFIG;
    }
    yaml_node_t *tls = tg_gw_get(gw->doc, l, "tls");
    snprintf(sub, sizeof(sub), "%s.tls", path);
    if (!tg_gw_is_map(tls)) {
        tg_gw_report(g, TG_GW_ERROR, gw, l, sub, "a TLS listener needs tls (mode Terminate)");
        return TG_ECONFIG;
    }
    tg_gw_check_keys(g, gw, tls, sub, tls_keys);
    yaml_node_t *mode_n = tg_gw_get(gw->doc, tls, "mode");
    const char *mode = tg_gw_or(tg_gw_scalar(mode_n), "Terminate");
    snprintf(sub, sizeof(sub), "%s.tls.mode", path);
    if (strcmp(mode, "Terminate") != 0) {
        tg_gw_report(g, TG_GW_ERROR, gw, mode_n, sub,
                     "%s: tlsgate terminates TLS; it cannot pass TLS through to the backend", mode);
        return TG_ECONFIG;
    }
    yaml_node_t *opts = tg_gw_get(gw->doc, tls, "options");
    if (opts != NULL) {
        snprintf(sub, sizeof(sub), "%s.tls.options", path);
        tg_gw_report(g, TG_GW_WARN, gw, opts, sub,
                     "implementation-specific options are not understood: ignored");
    }
    struct tg_gw_cca cca;
    if (tg_gw_client_cert(c, gw, idx, lname, port, tg_gw_get(gw->doc, tls, "frontendValidation"),
                          &cca) != TG_OK)
        return TG_ECONFIG;
    yaml_node_t *refs = tg_gw_get(gw->doc, tls, "certificateRefs");
    snprintf(sub, sizeof(sub), "%s.tls.certificateRefs", path);
    if (tg_gw_seq_len(refs) == 0) {
        tg_gw_report(g, TG_GW_ERROR, gw, refs != NULL ? refs : tls, sub,
                     "mode Terminate needs at least one certificate (a kubernetes.io/tls Secret)");
        return TG_ECONFIG;
    }
    struct tg_gw_obj *route = tg_gw_route_of(c, gw, l, path, lname, port);
    if (route == NULL)
        return TG_ECONFIG;
    char upstream[400];
    if (tg_gw_backend(c, route, upstream, sizeof(upstream), what, sizeof(what)) != TG_OK)
        return TG_ECONFIG;

    long listen = port < 1024 ? port + g->opts.port_offset : port;
    if (listen > 65535) {
        tg_gw_report(g, TG_GW_ERROR, gw, l, path, "port %ld + offset %d is above 65535", port,
                     g->opts.port_offset);
        return TG_ECONFIG;
    }
    for (size_t i = 0; i < c->nout; i++) {
        if (c->out[i].port == listen) {
            tg_gw_report(g, TG_GW_ERROR, gw, l, path,
                         "port %ld is already tlsgate listener %s: one listener per port (give "
                         "several certificateRefs to one listener instead)",
                         listen, c->out[i].name);
            return TG_ECONFIG;
        }
    }
    if (c->nout == TG_MAX_LISTENERS) {
        tg_gw_report(g, TG_GW_ERROR, gw, l, path, "more than %d listeners", TG_MAX_LISTENERS);
        return TG_ECONFIG;
    }
    tg_gw_listener_name(c, gw, lname, name);
    c->out[c->nout].port = listen;
    snprintf(c->out[c->nout].name, sizeof(c->out[c->nout].name), "%s", name);
    c->nout++;

    struct tg_buf *b = &c->lst;
    tg_buf_puts(b, "  # ");
    snprintf(sub, sizeof(sub), "Gateway %s/%s, listener ", tg_gw_ns(gw), gw->name);
    tg_gw_emit_comment(b, sub);
    tg_gw_emit_comment(b, lname);
    tg_buf_printf(b, " (TLS, Terminate, port %ld)\n  - name: ", port);
    tg_gw_emit_str(b, name);
    tg_buf_printf(b, "\n    address: 0.0.0.0:%ld\n    tls:\n      certificates:\n", listen);
    yaml_node_t *host = tg_gw_get(gw->doc, l, "hostname");
    if (host != NULL) {
        snprintf(sub, sizeof(sub), "%s.hostname", path);
        tg_gw_report(g, TG_GW_WARN, gw, host, sub,
                     "used as the certificates' server_names (SNI selects among them); tlsgate "
                     "does not refuse other server names");
    }
    int rc = TG_OK;
    for (size_t i = 0; i < tg_gw_seq_len(refs); i++) {
        yaml_node_t *ref = tg_gw_seq_at(gw->doc, refs, i);
        const char *rkind = tg_gw_or(tg_gw_str(gw->doc, ref, "kind"), "Secret");
        const char *rgroup = tg_gw_str(gw->doc, ref, "group");
        const char *rname = tg_gw_str(gw->doc, ref, "name");
        const char *rns = tg_gw_or(tg_gw_str(gw->doc, ref, "namespace"), tg_gw_ns(gw));
        snprintf(sub, sizeof(sub), "%s.tls.certificateRefs[%zu]", path, i);
        if (strcmp(rkind, "Secret") != 0 || (rgroup != NULL && rgroup[0] != '\0') ||
            rname == NULL || rname[0] == '\0') {
            tg_gw_report(g, TG_GW_ERROR, gw, ref, sub,
                         "only a Secret (kubernetes.io/tls, core group) with a name is understood");
            rc = TG_ECONFIG;
            continue;
        }
        if (strcmp(rns, tg_gw_ns(gw)) != 0)
            tg_gw_report(g, TG_GW_WARN, gw, ref, sub,
                         "a Secret in namespace %s needs a ReferenceGrant there (not checked)",
                         rns);
        char key[300];
        snprintf(key, sizeof(key), "ConfigMap %s/%s", rns, rname);
        if (cca.mode != NULL && strcmp(cca.src, key) == 0) {
            tg_gw_report(g, TG_GW_ERROR, gw, ref, sub,
                         "Secret %s/%s and the client CA's ConfigMap of the same name would both "
                         "be mounted at %s/%s/%s/: rename one",
                         rns, rname, g->opts.cert_dir, rns, rname);
            rc = TG_ECONFIG;
            continue;
        }
        struct tg_gw_obj *secret = tg_gw_find(g, "", "Secret", rns, rname);
        if (secret != NULL) {
            const char *type = tg_gw_str(secret->doc, secret->node, "type");
            secret->used = true;
            if (type == NULL || strcmp(type, "kubernetes.io/tls") != 0) {
                tg_gw_report(g, TG_GW_ERROR, secret, tg_gw_get(secret->doc, secret->node, "type"),
                             "type", "'%s': a certificate Secret must be of type kubernetes.io/tls",
                             type != NULL ? type : "(none)");
                rc = TG_ECONFIG;
                continue;
            }
        }
        char file[700];
        for (int f = 0; f < 2; f++) {
            snprintf(file, sizeof(file), "%s/%s/%s/%s", g->opts.cert_dir, rns, rname,
                     f == 0 ? "tls.crt" : "tls.key");
            tg_buf_puts(b, f == 0 ? "        - certificate_chain: { filename: "
                                  : "          private_key: { filename: ");
            tg_gw_emit_str(b, file);
            tg_buf_puts(b, " }\n");
        }
        if (host != NULL && tg_gw_scalar(host) != NULL) {
            tg_buf_puts(b, "          server_names: [");
            tg_gw_emit_str(b, tg_gw_scalar(host));
            tg_buf_puts(b, "]\n");
        }
        snprintf(key, sizeof(key), "%s/%s", rns, rname);
        struct tg_gw_prov *prov = NULL;
        for (size_t k = 0; k < c->nprovs && prov == NULL; k++) {
            struct tg_gw_prov *p = &c->provs[k];
            if (p->provider != NULL && strcmp(p->secret, key) == 0 &&
                strcmp(p->gateway, gw->name) == 0 && strcmp(tg_gw_ns(p->policy), tg_gw_ns(gw)) == 0)
                prov = p;
        }
        if (prov == NULL)
            continue;
        prov->used = true;
        snprintf(sub, sizeof(sub), "from EnvoyPatchPolicy %s/%s", tg_gw_ns(prov->policy),
                 prov->policy->name);
        tg_buf_puts(b, "          # ");
        tg_gw_emit_comment(b, sub);
        tg_buf_puts(b, "\n          private_key_provider:\n            provider_name: ");
        tg_gw_emit_str(b, prov->provider);
        tg_buf_puts(b, "\n");
        if (prov->poll_delay != NULL) {
            tg_buf_puts(b, "            typed_config: { poll_delay: ");
            tg_gw_emit_str(b, prov->poll_delay);
            tg_buf_puts(b, " }\n");
        }
        if (prov->fallback != NULL)
            tg_buf_printf(b, "            fallback: %s\n", prov->fallback);
    }
    tg_gw_emit_client_cert(b, &cca);
    tg_buf_puts(b, "    upstream:\n      # ");
    tg_gw_emit_comment(b, what);
    if (g->opts.upstream == TG_GWAPI_UPSTREAM_CLUSTER_IP) {
        tg_buf_puts(b, "\n      address: ");
        tg_gw_emit_str(b, upstream);
        tg_buf_puts(b, "\n");
    } else { /* a host name: resolved (and re-resolved) by the upstream cluster */
        tg_buf_puts(b, "\n      endpoints: [ { address: ");
        tg_gw_emit_str(b, upstream);
        tg_buf_puts(b, " } ]\n");
    }
    if (rc == TG_OK) {
        *converted = true;
        g->nlisteners++;
    }
    return rc;
}

static void tg_gw_gateway(struct tg_gw_ctx *c, struct tg_gw_obj *gw)
{
    static const char *const keys[] = {"gatewayClassName", "listeners", "addresses",
                                       "infrastructure",   "tls",       NULL};
    static const char *const tls_keys[] = {"frontend", "backend", NULL};
    static const char *const fe_keys[] = {"default", "perPort", NULL};
    struct tg_gwapi *g = c->g;
    gw->used = true;
    yaml_node_t *spec = tg_gw_get(gw->doc, gw->node, "spec");
    tg_gw_check_keys(g, gw, spec, "spec", keys);
    yaml_node_t *addrs = tg_gw_get(gw->doc, spec, "addresses");
    if (addrs != NULL)
        tg_gw_report(g, TG_GW_WARN, gw, addrs, "spec.addresses",
                     "tlsgate listens on every address of its pod; the Service decides the "
                     "addresses clients use: ignored");
    yaml_node_t *infra = tg_gw_get(gw->doc, spec, "infrastructure");
    if (infra != NULL)
        tg_gw_report(g, TG_GW_WARN, gw, infra, "spec.infrastructure",
                     "labels and annotations of generated resources: set them on tlsgate's "
                     "Deployment and Service: ignored");
    yaml_node_t *gtls = tg_gw_get(gw->doc, spec, "tls");
    tg_gw_check_keys(g, gw, gtls, "spec.tls", tls_keys);
    tg_gw_check_keys(g, gw, tg_gw_get(gw->doc, gtls, "frontend"), "spec.tls.frontend", fe_keys);
    yaml_node_t *btls = tg_gw_get(gw->doc, gtls, "backend");
    if (btls != NULL)
        tg_gw_report(g, TG_GW_WARN, gw, btls, "spec.tls.backend",
                     "the client certificate for backends: tlsgate forwards plaintext to the "
                     "upstream: ignored");
    tg_gw_class(c, gw, tg_gw_str(gw->doc, spec, "gatewayClassName"));
    yaml_node_t *ls = tg_gw_get(gw->doc, spec, "listeners");
    size_t ok = 0, failed = 0;
    for (size_t i = 0; i < tg_gw_seq_len(ls); i++) {
        bool converted = false;
        if (tg_gw_listener(c, gw, i, &converted) != TG_OK)
            failed++;
        ok += converted;
    }
    if (ok == 0 && failed == 0)
        tg_gw_report(g, TG_GW_ERROR, gw, ls != NULL ? ls : spec, "spec.listeners",
                     "no TLS listener in Terminate mode: nothing for tlsgate to serve");
}

/* ------------------------------------------------------------------------ */

static const char *tg_gw_unused_why(const struct tg_gw_obj *o)
{
    if (strcmp(o->kind, "Secret") == 0)
        return "no converted listener uses this Secret";
    if (strcmp(o->kind, "ConfigMap") == 0)
        return "no converted listener takes its ca.crt as the client CA";
    if (strcmp(o->kind, "ClientTrafficPolicy") == 0)
        return "it targets no converted listener of a Gateway in the input";
    if (strcmp(o->kind, "Service") == 0)
        return "no converted route forwards to this Service";
    if (strcmp(o->kind, "GatewayClass") == 0)
        return "no Gateway in the input uses this class";
    if (strcmp(o->kind, "EnvoyProxy") == 0)
        return "no GatewayClass in the input refers to it (spec.parametersRef)";
    if (strcmp(o->kind, "TCPRoute") == 0 || strcmp(o->kind, "TLSRoute") == 0)
        return "it attaches to no converted listener of a Gateway in the input";
    return "not part of a gateway's configuration";
}

int tg_gw_convert(struct tg_gwapi *g, struct tg_buf *out)
{
    struct tg_gw_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return TG_ENOMEM;
    c->g = g;
    int rc = TG_OK;
    tg_gw_supersede(g);
    for (size_t i = 0; i < g->nobjs && rc != TG_ENOMEM; i++)
        if (tg_gw_is(&g->objs[i], TG_EG_GROUP, "EnvoyPatchPolicy"))
            rc = tg_gw_policy(c, &g->objs[i]);
    for (size_t i = 0; i < g->nobjs && rc != TG_ENOMEM; i++)
        if (tg_gw_is(&g->objs[i], TG_EG_GROUP, "ClientTrafficPolicy"))
            rc = tg_gw_ctp(c, &g->objs[i]);
    size_t ngw = 0;
    for (size_t i = 0; i < g->nobjs && rc != TG_ENOMEM; i++) {
        if (tg_gw_is(&g->objs[i], TG_GW_GROUP, "Gateway")) {
            tg_gw_gateway(c, &g->objs[i]);
            ngw++;
        }
    }
    if (rc == TG_ENOMEM)
        goto out;
    for (size_t i = 0; i < c->nprovs; i++) {
        const struct tg_gw_prov *p = &c->provs[i];
        if (!p->used && p->provider != NULL)
            tg_gw_report(g, TG_GW_WARN, p->policy, p->at, "spec.jsonPatches",
                         "provider '%s' for Secret %s not applied: no converted listener of "
                         "Gateway %s/%s uses that Secret",
                         p->provider, p->secret, tg_gw_ns(p->policy), p->gateway);
    }
    for (size_t i = 0; i < g->nobjs; i++) {
        const struct tg_gw_obj *o = &g->objs[i];
        if (!o->used && !o->invalid && !o->superseded)
            tg_gw_report(g, TG_GW_WARN, o, NULL, NULL, "not used: %s", tg_gw_unused_why(o));
    }
    if (ngw == 0)
        tg_gw_report_input(g, TG_GW_ERROR, "no Gateway (gateway.networking.k8s.io) in the input");

    tg_buf_puts(out, "# tlsgate configuration from `tlsgate gateway-api`");
    for (size_t i = 0; i < g->nfiles; i++) {
        tg_buf_puts(out, i == 0 ? " " : ", ");
        tg_gw_emit_comment(out, g->files[i]);
    }
    tg_buf_puts(out, "\n# Certificates (and client CAs): the Secrets (and ConfigMaps) as the "
                     "Deployment mounts them, ");
    tg_gw_emit_comment(out, g->opts.cert_dir);
    tg_buf_puts(out, "/<namespace>/<name>/.\n");
    if (c->concurrency_from != NULL) {
        tg_buf_printf(out, "concurrency: %ld # EnvoyProxy ", c->concurrency);
        tg_gw_emit_comment(out, tg_gw_ns(c->concurrency_from));
        tg_buf_puts(out, "/");
        tg_gw_emit_comment(out, c->concurrency_from->name);
        tg_buf_puts(out, " spec.concurrency\n");
    }
    if (g->opts.admin != NULL && g->opts.admin[0] != '\0') {
        tg_buf_puts(out, "admin: { address: ");
        tg_gw_emit_str(out, g->opts.admin);
        tg_buf_puts(out, " } # GET /ready, /stats\n");
    }
    tg_buf_puts(out, "listeners:\n");
    tg_buf_append(out, c->lst.data != NULL ? c->lst.data : "", c->lst.len);
    if (c->lst.failed)
        rc = TG_ENOMEM;
out:
    tg_buf_free(&c->lst);
    free(c->provs);
    free(c->ctps);
    free(c);
    return rc == TG_ENOMEM ? TG_ENOMEM : TG_OK;
}
