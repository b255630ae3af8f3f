/*
 * tg_gwapi_mtls: client certificates (mutual TLS) -> a listener's
 * tls.client_certificate. Three sources ask for them: a Gateway listener's
 * tls.frontendValidation, the Gateway's spec.tls.frontend (default and
 * perPort) and Envoy Gateway's ClientTrafficPolicy (tls.clientValidation).
 * Each names its CA bundle by reference: a ConfigMap or Secret holding
 * ca.crt, which the Deployment mounts where certificate Secrets go,
 * CERT_DIR/<namespace>/<name>/, so tlsgate reads CERT_DIR/<namespace>/<name>/ca.crt.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "k8s/tg_gwapi_internal.h"

/* Does Secret or ConfigMap o carry key (in data, stringData or binaryData)? */
static bool tg_gw_has_key(const struct tg_gw_obj *o, const char *key)
{
    static const char *const maps[] = {"data", "stringData", "binaryData", NULL};
    for (size_t i = 0; maps[i] != NULL; i++)
        if (tg_gw_get(o->doc, tg_gw_get(o->doc, o->node, maps[i]), key) != NULL)
            return true;
    return false;
}

/*
 * caCertificateRefs of o at path -> out->ca and out->src. dflt_kind: the
 * kind of a reference without one (NULL: kind required). TG_OK or
 * TG_ECONFIG (reported).
 */
static int tg_gw_ca_refs(struct tg_gwapi *g, struct tg_gw_obj *o, const yaml_node_t *refs,
                         const char *path, const char *dflt_kind, struct tg_gw_cca *out)
{
    char sub[200];
    if (tg_gw_seq_len(refs) == 0) {
        tg_gw_report(g, TG_GW_ERROR, o, refs, path,
                     "expected at least one reference to a ConfigMap or Secret holding ca.crt");
        return TG_ECONFIG;
    }
    int rc = TG_OK;
    if (tg_gw_seq_len(refs) > 1) {
        snprintf(sub, sizeof(sub), "%s[1]", path);
        tg_gw_report(g, TG_GW_ERROR, o, tg_gw_seq_at(o->doc, refs, 1), sub,
                     "tlsgate reads one CA file per listener (client_certificate.ca): put every "
                     "CA certificate into the ca.crt of one ConfigMap and refer to it alone");
        rc = TG_ECONFIG;
    }
    yaml_node_t *ref = tg_gw_seq_at(o->doc, refs, 0);
    const char *kind = tg_gw_or(tg_gw_str(o->doc, ref, "kind"), dflt_kind);
    const char *group = tg_gw_str(o->doc, ref, "group");
    const char *name = tg_gw_str(o->doc, ref, "name");
    const char *ns = tg_gw_or(tg_gw_str(o->doc, ref, "namespace"), tg_gw_ns(o));
    snprintf(sub, sizeof(sub), "%s[0]", path);
    if (kind == NULL || (strcmp(kind, "ConfigMap") != 0 && strcmp(kind, "Secret") != 0) ||
        (group != NULL && group[0] != '\0')) {
        tg_gw_report(g, TG_GW_ERROR, o, ref, sub,
                     "kind %s%s%s: only a ConfigMap or a Secret (core group) holding ca.crt is "
                     "understood",
                     group != NULL && group[0] != '\0' ? group : "",
                     group != NULL && group[0] != '\0' ? "/" : "", kind != NULL ? kind : "(none)");
        return TG_ECONFIG;
    }
    if (name == NULL || name[0] == '\0') {
        tg_gw_report(g, TG_GW_ERROR, o, ref, sub, "missing name: which %s holds the CA?", kind);
        return TG_ECONFIG;
    }
    if (strcmp(ns, tg_gw_ns(o)) != 0)
        tg_gw_report(g, TG_GW_WARN, o, ref, sub,
                     "a %s in namespace %s needs a ReferenceGrant there (not checked)", kind, ns);
    struct tg_gw_obj *src = tg_gw_find(g, "", kind, ns, name);
    if (src != NULL) {
        src->used = true;
        if (!tg_gw_has_key(src, "ca.crt")) {
            tg_gw_report(g, TG_GW_ERROR, src, NULL, "data",
                         "no key ca.crt: tlsgate reads the CA certificates (PEM) from the file "
                         "ca.crt of the mounted %s",
                         kind);
            return TG_ECONFIG;
        }
    }
    snprintf(out->ca, sizeof(out->ca), "%s/%s/%s/ca.crt", g->opts.cert_dir, ns, name);
    snprintf(out->src, sizeof(out->src), "%s %s/%s", kind, ns, name);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* ClientTrafficPolicy                                                      */

/* Does selector sel name Gateways (the only kind that becomes listeners)? */
static bool tg_gw_selector_is_gateway(const struct tg_gw_obj *o, const yaml_node_t *sel)
{
    const char *kind = tg_gw_str(o->doc, sel, "kind");
    const char *group = tg_gw_or(tg_gw_str(o->doc, sel, "group"), TG_GW_GROUP);
    return kind != NULL && strcmp(kind, "Gateway") == 0 && strcmp(group, TG_GW_GROUP) == 0;
}

/*
 * spec.targetSelectors: each {kind: Gateway, group?, matchLabels} selects the
 * policy's namespace's Gateways carrying every one of its labels (an empty
 * matchLabels selects them all, as a Kubernetes label selector does).
 * Selectors of other kinds are said and ignored (only Gateways become
 * listeners); matchExpressions are refused: leaving one out would change
 * which listeners ask for client certificates. TG_OK or TG_ECONFIG.
 */
static int tg_gw_ctp_selectors_check(struct tg_gwapi *g, struct tg_gw_obj *o, yaml_node_t *sels)
{
    static const char *const keys[] = {"group", "kind", "matchLabels", "matchExpressions", NULL};
    int rc = TG_OK;
    if (sels != NULL && sels->type != YAML_SEQUENCE_NODE) {
        tg_gw_report(g, TG_GW_ERROR, o, sels, "spec.targetSelectors", "expected a list");
        return TG_ECONFIG;
    }
    for (size_t i = 0; i < tg_gw_seq_len(sels); i++) {
        yaml_node_t *sel = tg_gw_seq_at(o->doc, sels, i);
        char path[64];
        snprintf(path, sizeof(path), "spec.targetSelectors[%zu]", i);
        if (!tg_gw_is_map(sel)) {
            tg_gw_report(g, TG_GW_ERROR, o, sel, path, "expected a mapping (kind, matchLabels)");
            rc = TG_ECONFIG;
            continue;
        }
        tg_gw_check_keys(g, o, sel, path, keys);
        yaml_node_t *exprs = tg_gw_get(o->doc, sel, "matchExpressions");
        if (exprs != NULL) {
            tg_gw_report(g, TG_GW_ERROR, o, exprs, path,
                         "matchExpressions are not evaluated by tlsgate gateway-api: select the "
                         "Gateways with matchLabels or name them in targetRefs");
            rc = TG_ECONFIG;
        }
        yaml_node_t *labels = tg_gw_get(o->doc, sel, "matchLabels");
        for (yaml_node_pair_t *kv = tg_gw_is_map(labels) ? labels->data.mapping.pairs.start : NULL;
             kv != NULL && kv < labels->data.mapping.pairs.top; kv++) {
            if (tg_gw_scalar(yaml_document_get_node(o->doc, kv->key)) == NULL ||
                tg_gw_scalar(yaml_document_get_node(o->doc, kv->value)) == NULL) {
                tg_gw_report(g, TG_GW_ERROR, o, labels, path,
                             "matchLabels: expected label names and values (strings)");
                rc = TG_ECONFIG;
                break;
            }
        }
        if (labels != NULL && !tg_gw_is_map(labels)) {
            tg_gw_report(g, TG_GW_ERROR, o, labels, path, "matchLabels: expected a mapping");
            rc = TG_ECONFIG;
        }
        if (!tg_gw_selector_is_gateway(o, sel)) {
            const char *kind = tg_gw_str(o->doc, sel, "kind");
            tg_gw_report(g, TG_GW_WARN, o, sel, path,
                         "selects kind %s, not Gateways: tlsgate gateway-api converts Gateways "
                         "only: ignored",
                         kind != NULL ? kind : "(none)");
        }
    }
    return rc;
}

/* Does selector sel (checked above) select Gateway gw? */
static bool tg_gw_ctp_selects(const struct tg_gw_obj *o, const yaml_node_t *sel,
                              const struct tg_gw_obj *gw)
{
    if (!tg_gw_selector_is_gateway(o, sel) || tg_gw_get(o->doc, sel, "matchExpressions") != NULL)
        return false;
    yaml_node_t *want = tg_gw_get(o->doc, sel, "matchLabels");
    yaml_node_t *have = tg_gw_get(gw->doc, tg_gw_get(gw->doc, gw->node, "metadata"), "labels");
    for (yaml_node_pair_t *kv = tg_gw_is_map(want) ? want->data.mapping.pairs.start : NULL;
         kv != NULL && kv < want->data.mapping.pairs.top; kv++) {
        const char *k = tg_gw_scalar(yaml_document_get_node(o->doc, kv->key));
        const char *v = tg_gw_scalar(yaml_document_get_node(o->doc, kv->value));
        const char *got = k != NULL ? tg_gw_str(gw->doc, have, k) : NULL;
        if (v == NULL || got == NULL || strcmp(got, v) != 0)
            return false;
    }
    return true;
}

int tg_gw_ctp(struct tg_gw_ctx *c, struct tg_gw_obj *o)
{
    static const char *const keys[] = {"targetRef", "targetRefs", "targetSelectors", "tls", NULL};
    static const char *const tls_keys[] = {"clientValidation", NULL};
    static const char *const cv_keys[] = {"caCertificateRefs", "optional", NULL};
    struct tg_gwapi *g = c->g;
    if (c->nctps == c->capctps) {
        size_t cap = c->capctps ? c->capctps * 2 : 4;
        struct tg_gw_ctp *n = realloc(c->ctps, cap * sizeof(*n));
        if (n == NULL)
            return TG_ENOMEM;
        c->ctps = n;
        c->capctps = cap;
    }
    struct tg_gw_ctp *p = &c->ctps[c->nctps++];
    memset(p, 0, sizeof(*p));
    p->policy = o;
    yaml_node_t *spec = tg_gw_get(o->doc, o->node, "spec");
    /* Everything but the targets and the client validation: said, not converted. */
    for (yaml_node_pair_t *kv = tg_gw_is_map(spec) ? spec->data.mapping.pairs.start : NULL;
         kv != NULL && kv < spec->data.mapping.pairs.top; kv++) {
        yaml_node_t *kn = yaml_document_get_node(o->doc, kv->key);
        const char *k = tg_gw_scalar(kn);
        bool ok = false;
        for (size_t i = 0; k != NULL && keys[i] != NULL && !ok; i++)
            ok = strcmp(k, keys[i]) == 0;
        if (!ok)
            tg_gw_report(g, TG_GW_WARN, o, kn, "spec",
                         "field '%s' is not converted (tlsgate gateway-api converts a "
                         "ClientTrafficPolicy's tls.clientValidation only): ignored",
                         k != NULL ? k : "?");
    }
    yaml_node_t *tls = tg_gw_get(o->doc, spec, "tls");
    for (yaml_node_pair_t *kv = tg_gw_is_map(tls) ? tls->data.mapping.pairs.start : NULL;
         kv != NULL && kv < tls->data.mapping.pairs.top; kv++) {
        yaml_node_t *kn = yaml_document_get_node(o->doc, kv->key);
        const char *k = tg_gw_scalar(kn);
        if (k == NULL || strcmp(k, tls_keys[0]) != 0)
            tg_gw_report(g, TG_GW_WARN, o, kn, "spec.tls",
                         "field '%s' is not converted: set it in tlsgate's listener tls "
                         "(docs/CONFIG.md): ignored",
                         k != NULL ? k : "?");
    }
    yaml_node_t *cv = tg_gw_get(o->doc, tls, "clientValidation");
    if (cv == NULL)
        return TG_OK;
    if (!tg_gw_is_map(cv)) {
        tg_gw_report(g, TG_GW_ERROR, o, cv, "spec.tls.clientValidation", "expected a mapping");
        p->bad = true;
        return TG_OK;
    }
    /* Every other check of the client's certificate narrows who gets in:
     * leaving one out would let in clients the policy refuses. */
    for (yaml_node_pair_t *kv = cv->data.mapping.pairs.start; kv < cv->data.mapping.pairs.top;
         kv++) {
        yaml_node_t *kn = yaml_document_get_node(o->doc, kv->key);
        const char *k = tg_gw_scalar(kn);
        if (k == NULL || (strcmp(k, cv_keys[0]) != 0 && strcmp(k, cv_keys[1]) != 0)) {
            tg_gw_report(g, TG_GW_ERROR, o, kn, "spec.tls.clientValidation",
                         "'%s' is not converted: tlsgate would accept client certificates the "
                         "policy refuses",
                         k != NULL ? k : "?");
            p->bad = true;
        }
    }
    yaml_node_t *opt = tg_gw_get(o->doc, cv, "optional");
    const char *os = tg_gw_scalar(opt);
    if (opt != NULL &&
        (os == NULL || (strcasecmp(os, "true") != 0 && strcasecmp(os, "false") != 0))) {
        tg_gw_report(g, TG_GW_ERROR, o, opt, "spec.tls.clientValidation.optional",
                     "expected true or false");
        p->bad = true;
    }
    if (tg_gw_ca_refs(g, o, tg_gw_get(o->doc, cv, "caCertificateRefs"),
                      "spec.tls.clientValidation.caCertificateRefs", "Secret", &p->cca) != TG_OK)
        p->bad = true;
    yaml_node_t *sels = tg_gw_get(o->doc, spec, "targetSelectors");
    if (tg_gw_ctp_selectors_check(g, o, sels) != TG_OK)
        p->bad = true;
    if (tg_gw_get(o->doc, spec, "targetRef") == NULL &&
        tg_gw_seq_len(tg_gw_get(o->doc, spec, "targetRefs")) == 0 && tg_gw_seq_len(sels) == 0) {
        tg_gw_report(g, TG_GW_ERROR, o, spec, "spec.targetRefs",
                     "missing: which Gateway asks for client certificates? (targetRefs, "
                     "targetRef or targetSelectors)");
        p->bad = true;
    }
    if (p->bad) {
        o->used = true; /* reported */
        return TG_OK;
    }
    p->cca.mode = os != NULL && strcasecmp(os, "true") == 0 ? "optional" : "require";
    snprintf(p->cca.from, sizeof(p->cca.from), "ClientTrafficPolicy %s/%s", tg_gw_ns(o), o->name);
    return TG_OK;
}

/*
 * How policy p targets listener lname of gw: 0 not, 1 the whole Gateway (by
 * reference or by a label selector), 2 the listener by sectionName (the more
 * specific attachment wins).
 */
static int tg_gw_ctp_targets(const struct tg_gw_ctp *p, const struct tg_gw_obj *gw,
                             const char *lname)
{
    const struct tg_gw_obj *o = p->policy;
    yaml_node_t *spec = tg_gw_get(o->doc, o->node, "spec");
    yaml_node_t *one = tg_gw_get(o->doc, spec, "targetRef");
    yaml_node_t *many = tg_gw_get(o->doc, spec, "targetRefs");
    int best = 0;
    size_t n = (one != NULL ? 1 : 0) + tg_gw_seq_len(many);
    if (strcmp(tg_gw_ns(o), tg_gw_ns(gw)) != 0) /* a policy targets its own namespace */
        return 0;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *ref =
            one != NULL && i == 0 ? one : tg_gw_seq_at(o->doc, many, one != NULL ? i - 1 : i);
        const char *name = tg_gw_str(o->doc, ref, "name");
        const char *section = tg_gw_str(o->doc, ref, "sectionName");
        if (name == NULL || strcmp(name, gw->name) != 0 ||
            strcmp(tg_gw_or(tg_gw_str(o->doc, ref, "kind"), ""), "Gateway") != 0 ||
            strcmp(tg_gw_or(tg_gw_str(o->doc, ref, "group"), TG_GW_GROUP), TG_GW_GROUP) != 0)
            continue;
        if (section == NULL || section[0] == '\0')
            best = best > 1 ? best : 1;
        else if (strcmp(section, lname) == 0)
            best = 2;
    }
    yaml_node_t *sels = tg_gw_get(o->doc, spec, "targetSelectors");
    for (size_t i = 0; i < tg_gw_seq_len(sels) && best == 0; i++) {
        if (tg_gw_ctp_selects(o, tg_gw_seq_at(o->doc, sels, i), gw))
            best = 1;
    }
    return best;
}

/* ------------------------------------------------------------------------ */
/* Gateway API: frontendValidation and spec.tls.frontend                    */

/* A FrontendTLSValidation (caCertificateRefs, mode) at v -> out. TG_OK or TG_ECONFIG. */
static int tg_gw_frontend_validation(struct tg_gwapi *g, struct tg_gw_obj *gw, const yaml_node_t *v,
                                     const char *path, struct tg_gw_cca *out)
{
    static const char *const keys[] = {"caCertificateRefs", "mode", NULL};
    char sub[200];
    if (!tg_gw_is_map(v)) {
        tg_gw_report(g, TG_GW_ERROR, gw, v, path, "expected a mapping with caCertificateRefs");
        return TG_ECONFIG;
    }
    tg_gw_check_keys(g, gw, v, path, keys);
    yaml_node_t *mode_n = tg_gw_get(gw->doc, v, "mode");
    const char *mode = tg_gw_or(tg_gw_scalar(mode_n), "AllowValidOnly");
    snprintf(sub, sizeof(sub), "%s.mode", path);
    if (strcmp(mode, "AllowValidOnly") == 0) {
        out->mode = "require";
    } else if (strcmp(mode, "AllowInsecureFallback") == 0) {
        tg_gw_report(g, TG_GW_WARN, gw, mode_n, sub,
                     "AllowInsecureFallback becomes mode optional: a client without a "
                     "certificate gets in, but one whose certificate does not verify is refused");
        out->mode = "optional";
    } else {
        tg_gw_report(g, TG_GW_ERROR, gw, mode_n, sub,
                     "'%s': expected AllowValidOnly or AllowInsecureFallback", mode);
        return TG_ECONFIG;
    }
    snprintf(sub, sizeof(sub), "%s.caCertificateRefs", path);
    int rc = tg_gw_ca_refs(g, gw, tg_gw_get(gw->doc, v, "caCertificateRefs"), sub, NULL, out);
    snprintf(out->from, sizeof(out->from), "Gateway %s/%s %s", tg_gw_ns(gw), gw->name, path);
    return rc;
}

/* The Gateway's spec.tls.frontend for a listener on port: the perPort entry, else default. */
static int tg_gw_frontend(struct tg_gwapi *g, struct tg_gw_obj *gw, long port,
                          struct tg_gw_cca *out)
{
    yaml_node_t *fe = tg_gw_get(
        gw->doc, tg_gw_get(gw->doc, tg_gw_get(gw->doc, gw->node, "spec"), "tls"), "frontend");
    yaml_node_t *pp = tg_gw_get(gw->doc, fe, "perPort");
    char path[128];
    for (size_t i = 0; i < tg_gw_seq_len(pp); i++) {
        yaml_node_t *e = tg_gw_seq_at(gw->doc, pp, i);
        long p;
        if (tg_gw_int(tg_gw_get(gw->doc, e, "port"), 1, 65535, &p) && p == port) {
            yaml_node_t *v = tg_gw_get(gw->doc, tg_gw_get(gw->doc, e, "tls"), "validation");
            if (v == NULL)
                return TG_OK;
            snprintf(path, sizeof(path), "spec.tls.frontend.perPort[%zu].tls.validation", i);
            return tg_gw_frontend_validation(g, gw, v, path, out);
        }
    }
    yaml_node_t *v = tg_gw_get(gw->doc, tg_gw_get(gw->doc, fe, "default"), "validation");
    if (v == NULL)
        return TG_OK;
    return tg_gw_frontend_validation(g, gw, v, "spec.tls.frontend.default.validation", out);
}

/* ------------------------------------------------------------------------ */

/* Merge source s into *out; two sources that disagree are an error. */
static int tg_gw_cca_merge(struct tg_gwapi *g, struct tg_gw_obj *gw, const yaml_node_t *l,
                           const char *lpath, const char *lname, const struct tg_gw_cca *s,
                           struct tg_gw_cca *out)
{
    if (s->mode == NULL)
        return TG_OK;
    if (out->mode == NULL) {
        *out = *s;
        return TG_OK;
    }
    if (strcmp(out->mode, s->mode) == 0 && strcmp(out->ca, s->ca) == 0)
        return TG_OK;
    tg_gw_report(g, TG_GW_ERROR, gw, l, lpath,
                 "listener %s: client certificates: %s asks for mode %s with the CA of %s, %s "
                 "for mode %s with the CA of %s: tlsgate applies one: make them agree",
                 lname, out->from, out->mode, out->src, s->from, s->mode, s->src);
    return TG_ECONFIG;
}

int tg_gw_client_cert(struct tg_gw_ctx *c, struct tg_gw_obj *gw, size_t idx, const char *lname,
                      long port, const yaml_node_t *fv, struct tg_gw_cca *out)
{
    struct tg_gwapi *g = c->g;
    struct tg_gw_cca s;
    char path[128];
    int rc = TG_OK;
    memset(out, 0, sizeof(*out));
    snprintf(path, sizeof(path), "spec.listeners[%zu]", idx);
    const yaml_node_t *l = tg_gw_seq_at(
        gw->doc, tg_gw_get(gw->doc, tg_gw_get(gw->doc, gw->node, "spec"), "listeners"), idx);
    if (fv != NULL) {
        char sub[160];
        memset(&s, 0, sizeof(s));
        snprintf(sub, sizeof(sub), "%s.tls.frontendValidation", path);
        if (tg_gw_frontend_validation(g, gw, fv, sub, &s) != TG_OK)
            return TG_ECONFIG;
        *out = s;
    }
    memset(&s, 0, sizeof(s));
    if (tg_gw_frontend(g, gw, port, &s) != TG_OK)
        return TG_ECONFIG;
    if (tg_gw_cca_merge(g, gw, l, path, lname, &s, out) != TG_OK)
        return TG_ECONFIG;
    /* The ClientTrafficPolicies: the most specific attachment wins, as in Envoy Gateway. */
    int best = 0;
    const struct tg_gw_ctp *pick = NULL;
    for (size_t i = 0; i < c->nctps; i++) {
        struct tg_gw_ctp *p = &c->ctps[i];
        int t = tg_gw_ctp_targets(p, gw, lname);
        if (t == 0)
            continue;
        p->policy->used = true;
        if (p->bad) {
            rc = TG_ECONFIG; /* reported with the policy */
            continue;
        }
        if (p->cca.mode == NULL || t < best)
            continue;
        if (t == best && pick != NULL &&
            (strcmp(pick->cca.mode, p->cca.mode) != 0 || strcmp(pick->cca.ca, p->cca.ca) != 0)) {
            tg_gw_report(g, TG_GW_ERROR, p->policy, NULL, "spec.tls.clientValidation",
                         "ClientTrafficPolicy %s/%s sets other client certificates for %s/%s "
                         "listener %s: tlsgate cannot tell which applies: make them agree",
                         tg_gw_ns(pick->policy), pick->policy->name, tg_gw_ns(gw), gw->name, lname);
            rc = TG_ECONFIG;
            continue;
        }
        best = t;
        pick = p;
    }
    if (rc != TG_OK)
        return rc;
    if (pick != NULL)
        rc = tg_gw_cca_merge(g, gw, l, path, lname, &pick->cca, out);
    return rc;
}

void tg_gw_emit_client_cert(struct tg_buf *b, const struct tg_gw_cca *cca)
{
    if (cca->mode == NULL)
        return;
    tg_buf_puts(b, "      # from ");
    tg_gw_emit_comment(b, cca->from);
    tg_buf_puts(b, "\n      # CA: ");
    tg_gw_emit_comment(b, cca->src);
    tg_buf_puts(b, ", key ca.crt, mounted at ");
    size_t n = strlen(cca->ca) - strlen("ca.crt");
    char dir[sizeof(cca->ca)];
    snprintf(dir, sizeof(dir), "%.*s", (int)n, cca->ca);
    tg_gw_emit_comment(b, dir);
    tg_buf_printf(
        b, "\n      client_certificate:\n        mode: %s\n        ca: { filename: ", cca->mode);
    tg_gw_emit_str(b, cca->ca);
    tg_buf_puts(b, " }\n");
}
