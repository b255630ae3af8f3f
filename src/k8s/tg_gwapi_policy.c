/*
 * tg_gwapi_policy: Envoy Gateway's EnvoyPatchPolicy -> the key providers it
 * adds to Secrets (the private key provider guide's JSON patch of
 * /tls_certificate/private_key_provider, and the copy of the Secret's key
 * into it). Anything else the policy patches is reported, not applied.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "k8s/tg_gwapi_internal.h"

static bool tg_gw_known_provider(const struct tg_gwapi *g, const char *name)
{
    if (g->opts.providers == NULL)
        return true;
    for (size_t i = 0; g->opts.providers[i] != NULL; i++)
        if (strcmp(g->opts.providers[i], name) == 0)
            return true;
    return false;
}

static void tg_gw_known_list(const struct tg_gwapi *g, char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; g->opts.providers != NULL && g->opts.providers[i] != NULL; i++) {
        int n = snprintf(buf + off, len - off, "%s%s", i ? ", " : "", g->opts.providers[i]);
        if (n < 0 || (size_t)n >= len - off)
            break;
        off += (size_t)n;
    }
}

static struct tg_gw_prov *tg_gw_prov_for(struct tg_gw_ctx *c, struct tg_gw_obj *pol,
                                         const char *gateway, const char *secret)
{
    for (size_t i = 0; i < c->nprovs; i++) {
        struct tg_gw_prov *p = &c->provs[i];
        if (p->policy == pol && strcmp(p->gateway, gateway) == 0 && strcmp(p->secret, secret) == 0)
            return p;
    }
    if (c->nprovs == c->capprovs) {
        size_t cap = c->capprovs ? c->capprovs * 2 : 8;
        struct tg_gw_prov *n = realloc(c->provs, cap * sizeof(*n));
        if (n == NULL)
            return NULL;
        c->provs = n;
        c->capprovs = cap;
    }
    struct tg_gw_prov *p = &c->provs[c->nprovs++];
    memset(p, 0, sizeof(*p));
    p->policy = pol;
    p->gateway = gateway;
    snprintf(p->secret, sizeof(p->secret), "%s", secret);
    return p;
}

/* value of an add of /tls_certificate/private_key_provider. */
static int tg_gw_patch_value(struct tg_gw_ctx *c, struct tg_gw_obj *o, const yaml_node_t *v,
                             const char *path, struct tg_gw_prov *p)
{
    static const char *const keys[] = {"provider_name", "typed_config", "fallback", NULL};
    static const char *const tc_keys[] = {"@type", "private_key", "poll_delay", NULL};
    struct tg_gwapi *g = c->g;
    char sub[256], known[256];
    if (!tg_gw_is_map(v)) {
        tg_gw_report(g, TG_GW_ERROR, o, v, path, "expected a mapping with provider_name");
        return TG_ECONFIG;
    }
    tg_gw_check_keys(g, o, v, path, keys);
    yaml_node_t *pn = tg_gw_get(o->doc, v, "provider_name");
    const char *name = tg_gw_scalar(pn);
    snprintf(sub, sizeof(sub), "%s.provider_name", path);
    if (name == NULL || name[0] == '\0') {
        tg_gw_report(g, TG_GW_ERROR, o, pn != NULL ? pn : v, sub, "missing provider name");
        return TG_ECONFIG;
    }
    if (!tg_gw_known_provider(g, name)) {
        tg_gw_known_list(g, known, sizeof(known));
        tg_gw_report(g, TG_GW_ERROR, o, pn, sub, "unknown provider '%s' (known: %s)", name, known);
        return TG_ECONFIG;
    }
    p->provider = name;
    p->at = pn;
    yaml_node_t *fb = tg_gw_get(o->doc, v, "fallback");
    if (fb != NULL) {
        const char *s = tg_gw_scalar(fb);
        snprintf(sub, sizeof(sub), "%s.fallback", path);
        if (s == NULL || (strcasecmp(s, "true") != 0 && strcasecmp(s, "false") != 0)) {
            tg_gw_report(g, TG_GW_ERROR, o, fb, sub, "expected true or false");
            return TG_ECONFIG;
        }
        p->fallback = strcasecmp(s, "true") == 0 ? "true" : "false";
    }
    yaml_node_t *tc = tg_gw_get(o->doc, v, "typed_config");
    if (tc == NULL)
        return TG_OK;
    snprintf(sub, sizeof(sub), "%s.typed_config", path);
    if (!tg_gw_is_map(tc)) {
        tg_gw_report(g, TG_GW_ERROR, o, tc, sub, "expected a mapping");
        return TG_ECONFIG;
    }
    tg_gw_check_keys(g, o, tc, sub, tc_keys);
    yaml_node_t *type = tg_gw_get(o->doc, tc, "@type");
    const char *t = tg_gw_scalar(type);
    char want[160];
    snprintf(want, sizeof(want), ".%s.v3alpha.", name);
    if (type != NULL && (t == NULL || strstr(t, want) == NULL))
        tg_gw_report(g, TG_GW_WARN, o, type, sub,
                     "'@type' %s is not Envoy's type for provider '%s': ignored (the provider is "
                     "chosen by provider_name)",
                     t != NULL ? t : "?", name);
    yaml_node_t *pd = tg_gw_get(o->doc, tc, "poll_delay");
    if (pd != NULL) {
        p->poll_delay = tg_gw_scalar(pd);
        if (p->poll_delay == NULL) {
            snprintf(sub, sizeof(sub), "%s.typed_config.poll_delay", path);
            tg_gw_report(g, TG_GW_ERROR, o, pd, sub, "expected a duration such as 0.001s");
            return TG_ECONFIG;
        }
    }
    p->inline_key = tg_gw_get(o->doc, tc, "private_key");
    return TG_OK;
}

int tg_gw_policy(struct tg_gw_ctx *c, struct tg_gw_obj *o)
{
    static const char *const keys[] = {"targetRef",   "targetRefs", "type",
                                       "jsonPatches", "priority",   NULL};
    static const char *const patch_keys[] = {"type", "name", "operation", NULL};
    static const char *const op_keys[] = {"op", "path", "from", "value", NULL};
    struct tg_gwapi *g = c->g;
    yaml_node_t *spec = tg_gw_get(o->doc, o->node, "spec");
    char path[128];
    tg_gw_check_keys(g, o, spec, "spec", keys);
    const char *type = tg_gw_str(o->doc, spec, "type");
    if (type == NULL || strcmp(type, "JSONPatch") != 0) {
        tg_gw_report(g, TG_GW_ERROR, o, tg_gw_get(o->doc, spec, "type"), "spec.type",
                     "only JSONPatch policies are understood");
        return TG_ECONFIG;
    }
    /* The Gateways it targets (targetRef, or the newer targetRefs). */
    const char *gateways[16];
    size_t ngw = 0;
    yaml_node_t *one = tg_gw_get(o->doc, spec, "targetRef");
    yaml_node_t *many = tg_gw_get(o->doc, spec, "targetRefs");
    size_t nrefs = (one != NULL ? 1 : 0) + tg_gw_seq_len(many);
    for (size_t i = 0; i < nrefs; i++) {
        size_t j = one != NULL ? i - 1 : i; /* index in targetRefs */
        yaml_node_t *ref = one != NULL && i == 0 ? one : tg_gw_seq_at(o->doc, many, j);
        if (one != NULL && i == 0)
            snprintf(path, sizeof(path), "spec.targetRef");
        else
            snprintf(path, sizeof(path), "spec.targetRefs[%zu]", j);
        const char *kind = tg_gw_str(o->doc, ref, "kind");
        const char *name = tg_gw_str(o->doc, ref, "name");
        if (kind == NULL || strcmp(kind, "Gateway") != 0 || name == NULL ||
            strcmp(tg_gw_or(tg_gw_str(o->doc, ref, "group"), TG_GW_GROUP), TG_GW_GROUP) != 0) {
            tg_gw_report(g, TG_GW_ERROR, o, ref, path,
                         "only a Gateway target is understood (kind %s)", kind ? kind : "?");
            return TG_ECONFIG;
        }
        if (ngw < TG_ARRAY_LEN(gateways))
            gateways[ngw++] = name;
    }
    if (ngw == 0) {
        tg_gw_report(g, TG_GW_ERROR, o, spec, "spec.targetRef", "missing: which Gateway?");
        return TG_ECONFIG;
    }
    yaml_node_t *patches = tg_gw_get(o->doc, spec, "jsonPatches");
    int rc = TG_OK;
    for (size_t i = 0; i < tg_gw_seq_len(patches); i++) {
        yaml_node_t *jp = tg_gw_seq_at(o->doc, patches, i);
        snprintf(path, sizeof(path), "spec.jsonPatches[%zu]", i);
        tg_gw_check_keys(g, o, jp, path, patch_keys);
        const char *ptype = tg_gw_str(o->doc, jp, "type");
        const char *secret = tg_gw_str(o->doc, jp, "name");
        yaml_node_t *op = tg_gw_get(o->doc, jp, "operation");
        if (ptype == NULL || strcmp(ptype, TG_ENVOY_SECRET) != 0) {
            tg_gw_report(g, TG_GW_WARN, o, jp, path,
                         "a patch of Envoy's %s: tlsgate has no such resource: ignored",
                         ptype != NULL ? ptype : "(no type)");
            continue;
        }
        if (secret == NULL || strchr(secret, '/') == NULL || strchr(secret, '/') == secret) {
            tg_gw_report(g, TG_GW_ERROR, o, jp, path, "name: expected <namespace>/<secret>");
            rc = TG_ECONFIG;
            continue;
        }
        snprintf(path, sizeof(path), "spec.jsonPatches[%zu].operation", i);
        tg_gw_check_keys(g, o, op, path, op_keys);
        const char *verb = tg_gw_str(o->doc, op, "op");
        const char *ppath = tg_gw_str(o->doc, op, "path");
        const char *from = tg_gw_str(o->doc, op, "from");
        verb = verb != NULL ? verb : "";
        ppath = ppath != NULL ? ppath : "";
        bool add = (strcmp(verb, "add") == 0 || strcmp(verb, "replace") == 0) &&
                   strcmp(ppath, TG_PKP_PATH) == 0;
        bool copy = strcmp(verb, "copy") == 0 && from != NULL &&
                    strcmp(from, "/tls_certificate/private_key") == 0 &&
                    strcmp(ppath, TG_PKP_PATH "/typed_config/private_key") == 0;
        if (!add && !copy) {
            tg_gw_report(g, TG_GW_WARN, o, op, path,
                         "op '%s' of '%s': only adding %s (and copying the Secret's private "
                         "key into it) is understood: ignored",
                         verb, ppath, TG_PKP_PATH);
            continue;
        }
        for (size_t k = 0; k < ngw; k++) {
            struct tg_gw_prov *p = tg_gw_prov_for(c, o, gateways[k], secret);
            if (p == NULL)
                return TG_ENOMEM;
            if (copy) {
                p->key_copied = true;
                continue;
            }
            snprintf(path, sizeof(path), "spec.jsonPatches[%zu].operation.value", i);
            if (tg_gw_patch_value(c, o, tg_gw_get(o->doc, op, "value"), path, p) != TG_OK) {
                rc = TG_ECONFIG;
                break;
            }
        }
    }
    for (size_t i = 0; i < c->nprovs; i++) {
        struct tg_gw_prov *p = &c->provs[i];
        if (p->policy == o && p->provider != NULL && p->inline_key != NULL && !p->key_copied) {
            tg_gw_report(g, TG_GW_WARN, o, p->inline_key, "typed_config.private_key",
                         "not used: tlsgate reads the key from the Secret's tls.key");
            p->inline_key = NULL;
        }
    }
    o->used = true; /* from here on it is reported per patch */
    return rc;
}
