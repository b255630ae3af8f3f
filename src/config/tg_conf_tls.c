/*
 * tg_conf_tls: the schema of a listener's tls block: certificates and their
 * PEM data sources (read into memory here), versions, ALPN, ciphers, groups,
 * client_certificate (mutual TLS), and the private_key_provider / key_exchange_provider blocks
 * whose typed_config is kept as generic parameters for the key provider to judge. Contract in
 * tg_conf_tls.h.
 */
#include "config/tg_conf_tls.h"

#include "config/tg_conf_parse.h"
#include "config/tg_config_internal.h"
#include "core/tg_time.h"

#include <errno.h>
#include <openssl/prov_ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Freeing                                                                  */

static void tg_conf_tls_datasource_free(struct tg_conf_datasource *ds)
{
    free(ds->filename);
    free(ds->path);
    /* Certificate chains are not secret, but wiping every source keeps the
     * rule simple and costs nothing measurable. */
    tg_config_free_secret(ds->data, ds->data_len);
    memset(ds, 0, sizeof(*ds));
}

static void tg_conf_tls_params_free(struct tg_conf_params *p)
{
    for (size_t i = 0; p->v != NULL && i < p->n; i++) {
        struct tg_conf_param *q = &p->v[i];
        free(q->key);
        /* Provider settings may be secrets (a PIN, a device password). */
        if (q->value != NULL)
            tg_config_free_secret(q->value, strlen(q->value));
        tg_cp_strv_free(q->items, q->nitems);
    }
    free(p->v);
    free(p->path);
    memset(p, 0, sizeof(*p));
}

void tg_conf_tls_free(struct tg_conf_tls *t)
{
    for (size_t i = 0; t->certs != NULL && i < t->n_certs; i++) {
        struct tg_conf_cert *c = &t->certs[i];
        tg_conf_tls_datasource_free(&c->chain);
        tg_conf_tls_datasource_free(&c->private_key);
        tg_cp_strv_free(c->server_names, c->n_server_names);
        free(c->keyprov.provider_name);
        free(c->keyprov.path);
        tg_conf_tls_params_free(&c->keyprov.typed_config);
        free(c->path);
    }
    free(t->certs);
    free(t->kx_provider.provider_name);
    free(t->kx_provider.path);
    tg_conf_tls_params_free(&t->kx_provider.typed_config);
    tg_conf_tls_datasource_free(&t->client_cert.ca);
    tg_conf_tls_datasource_free(&t->client_cert.crl);
    free(t->client_cert.path);
    tg_cp_strv_free(t->alpn, t->n_alpn);
    free(t->cipher_list);
    free(t->cipher_suites);
    free(t->groups);
}

/* ------------------------------------------------------------------------ */
/* Data sources (PEM from a file or inline)                                 */

enum tg_conf_tls_pem { TG_CONF_TLS_CERT, TG_CONF_TLS_KEY, TG_CONF_TLS_CA, TG_CONF_TLS_CRL };

/* What each kind of source must contain, and how a message names it. */
static const struct {
    const char *needle;
    const char *what;
} tg_conf_tls_pems[] = {
    [TG_CONF_TLS_CERT] = {"-----BEGIN CERTIFICATE-----", "certificate"},
    [TG_CONF_TLS_KEY] = {"PRIVATE KEY-----", "private key"},
    [TG_CONF_TLS_CA] = {"-----BEGIN CERTIFICATE-----", "CA certificate"},
    [TG_CONF_TLS_CRL] = {"-----BEGIN X509 CRL-----", "CRL"},
};

static int tg_conf_tls_datasource(struct tg_cp *cp, const yaml_node_t *n, enum tg_conf_tls_pem kind,
                                  struct tg_conf_datasource *ds)
{
    static const char *const keys[] = {"filename", "inline_string", NULL};
    const yaml_node_t *fk = NULL, *ik = NULL, *v;
    char ex[TG_CONF_EXCERPT];
    int rc = TG_OK;

    if (n->type != YAML_MAPPING_NODE)
        return tg_cp_fail(cp, n,
                          "expected a mapping { filename: ... } or { inline_string: ... }, got %s",
                          tg_cp_kind(n));
    TG_GUARD(tg_cp_check_map(cp, n, keys));
    const yaml_node_t *fv = tg_cp_get(cp, n, "filename", &fk);
    const yaml_node_t *iv = tg_cp_get(cp, n, "inline_string", &ik);
    if (fv == NULL && iv == NULL)
        return tg_cp_fail(cp, n, "one of 'filename' or 'inline_string' is required");
    if (fv != NULL && iv != NULL) {
        const yaml_node_t *second = fk->start_mark.index > ik->start_mark.index ? fk : ik;
        size_t o = tg_cp_push_key(cp, tg_cp_text(second));
        rc = tg_cp_fail(cp, second, "give only one of 'filename' and 'inline_string'");
        tg_cp_pop(cp, o);
        return rc;
    }

    tg_conf_tls_datasource_free(ds);
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
        int e = tg_config_read_file(full != NULL ? full : name, &ds->data, &ds->data_len);
        /* Kept for the file watcher (reload.watch). */
        ds->path = full != NULL ? full : strdup(name);
        if (e == 0 && ds->path == NULL)
            e = ENOMEM;
        if (e != 0) {
            rc = tg_cp_fail(cp, v, "cannot read '%s': %s", tg_config_excerpt(name, ex, sizeof(ex)),
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
    const char *needle = tg_conf_tls_pems[kind].needle;
    if (memmem(ds->data, ds->data_len, needle, strlen(needle)) == NULL) {
        const char *what = tg_conf_tls_pems[kind].what;
        if (fv != NULL)
            rc = tg_cp_fail(cp, v, "'%s' contains no PEM %s ('%s')", ds->filename, what, needle);
        else
            rc = tg_cp_fail(cp, v, "no PEM %s ('%s') in the string", what, needle);
    }
out:
    tg_cp_pop(cp, o);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* private_key_provider and key_exchange_provider                           */

/* prefix: the parent key of a flattened mapping ("pin" for pin.filename), or NULL. */
static int tg_conf_tls_param(struct tg_cp *cp, const yaml_node_t *k, const yaml_node_t *v,
                             struct tg_conf_params *params, const char *prefix)
{
    struct tg_conf_param *q = &params->v[params->n];
    if (prefix != NULL) {
        size_t len = strlen(prefix) + 1 + strlen(tg_cp_text(k)) + 1;
        q->key = malloc(len);
        if (q->key != NULL)
            snprintf(q->key, len, "%s.%s", prefix, tg_cp_text(k));
    } else {
        q->key = strdup(tg_cp_text(k));
    }
    if (q->key == NULL)
        return tg_cp_nomem(cp);
    params->n++;
    q->mark = tg_cp_mark(cp, k);
    q->value_mark = tg_cp_mark(cp, v);
    if (v->type == YAML_MAPPING_NODE)
        return tg_cp_fail(cp, v,
                          "expected a scalar, a sequence of scalars or a mapping of "
                          "scalars, got a mapping of mappings");
    if (v->type == YAML_SCALAR_NODE) {
        if (strlen(tg_cp_text(v)) != v->data.scalar.length)
            return tg_cp_fail(cp, v, "value contains a NUL character");
        return tg_cp_strdup(cp, tg_cp_text(v), &q->value);
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
            rc = tg_cp_fail(cp, it, "expected a scalar, got %s", tg_cp_kind(it));
        else if (strlen(tg_cp_text(it)) != it->data.scalar.length)
            rc = tg_cp_fail(cp, it, "value contains a NUL character");
        else
            rc = tg_cp_strdup(cp, tg_cp_text(it), &q->items[i]);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    return TG_OK;
}

/* A mapping of scalars under typed_config key k: one dotted pair each. */
static int tg_conf_tls_param_map(struct tg_cp *cp, const yaml_node_t *k, const yaml_node_t *v,
                                 struct tg_conf_params *params)
{
    /* params->v was sized for every pair (tg_conf_tls_typed_config). */
    TG_GUARD(tg_cp_check_map(cp, v, NULL));
    if (v->data.mapping.pairs.top == v->data.mapping.pairs.start)
        return tg_cp_fail(cp, v, "expected a mapping with at least one key");
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        const yaml_node_t *ck = tg_cp_node(cp, p->key);
        const yaml_node_t *cv = tg_cp_node(cp, p->value);
        char ex[TG_CONF_EXCERPT];
        size_t o = tg_cp_push_key(cp, tg_config_excerpt(tg_cp_text(ck), ex, sizeof(ex)));
        int rc = tg_conf_tls_param(cp, ck, cv, params, tg_cp_text(k));
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    return TG_OK;
}

/* c: the certificate the provider block belongs to, or NULL for a
 * listener's key_exchange_provider (no Envoy-style private_key then). */
static int tg_conf_tls_typed_config(struct tg_cp *cp, const yaml_node_t *n,
                                    struct tg_conf_keyprov *kp, struct tg_conf_cert *c,
                                    const yaml_node_t *cert_key_node)
{
    TG_GUARD(tg_cp_check_map(cp, n, NULL));
    /* One parameter per key, or per key of a mapping value (flattened). */
    size_t cnt = 0;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const yaml_node_t *v = tg_cp_node(cp, p->value);
        cnt += v->type == YAML_MAPPING_NODE
                   ? (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start)
                   : 1;
    }
    if (cnt > 0) {
        kp->typed_config.v = calloc(cnt, sizeof(*kp->typed_config.v));
        if (kp->typed_config.v == NULL)
            return tg_cp_nomem(cp);
    }
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = tg_cp_node(cp, p->key);
        const yaml_node_t *v = tg_cp_node(cp, p->value);
        const char *key = tg_cp_text(k);
        char ex[TG_CONF_EXCERPT];
        size_t o = tg_cp_push_key(cp, tg_config_excerpt(key, ex, sizeof(ex)));
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
                rc = tg_conf_tls_datasource(cp, v, TG_CONF_TLS_KEY, &c->private_key);
        } else if (strcmp(key, "@type") == 0) {
            /* Envoy's protobuf type URL: accepted for copy-paste
             * compatibility, the provider is chosen by provider_name. */
            const char *s;
            rc = tg_cp_scalar(cp, v, "a type URL string", &s);
        } else if (v->type == YAML_MAPPING_NODE) {
            rc = tg_conf_tls_param_map(cp, k, v, &kp->typed_config);
        } else {
            rc = tg_conf_tls_param(cp, k, v, &kp->typed_config, NULL);
        }
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    return TG_OK;
}

/* Provider defaults; used for certificates without private_key_provider too. */
static int tg_conf_tls_keyprov_init(struct tg_cp *cp, struct tg_conf_keyprov *kp, const char *key,
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

static int tg_conf_tls_keyprov(struct tg_cp *cp, const yaml_node_t *n, struct tg_conf_keyprov *kp,
                               struct tg_conf_cert *c, const yaml_node_t *cert_key_node)
{
    static const char *const keys[] = {"provider_name", "typed_config", "fallback", NULL};
    const yaml_node_t *v;

    TG_GUARD(tg_cp_check_map(cp, n, keys));
    kp->mark = tg_cp_mark(cp, n);
    TG_GUARD(tg_cp_require(cp, n, "provider_name", &v));
    size_t o = tg_cp_push_key(cp, "provider_name");
    int rc = tg_cp_string(cp, v, &kp->provider_name);
    if (rc == TG_OK && !tg_config_provider_known(kp->provider_name)) {
        char list[256], ex[TG_CONF_EXCERPT];
        tg_config_provider_list(list, sizeof(list));
        rc = tg_cp_fail(cp, v, "unknown provider '%s' (known: %s)",
                        tg_config_excerpt(kp->provider_name, ex, sizeof(ex)), list);
    }
    tg_cp_pop(cp, o);
    TG_GUARD(rc);
    TG_GUARD(tg_cp_opt_bool(cp, n, "fallback", &kp->fallback));
    if ((v = tg_cp_get(cp, n, "fallback", NULL)) != NULL) {
        kp->fallback_set = true;
        kp->fallback_mark = tg_cp_mark(cp, v);
    }
    if ((v = tg_cp_get(cp, n, "typed_config", NULL)) != NULL) {
        o = tg_cp_push_key(cp, "typed_config");
        rc = tg_conf_tls_typed_config(cp, v, kp, c, cert_key_node);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    return TG_OK;
}

/* ------------------------------------------------------------------------ */
/* certificates                                                             */

/* SNI names: DNS labels, optionally a leading "*." wildcard. */
static bool tg_conf_tls_server_name_ok(const char *s)
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
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || tg_conf_parse_is_digit(c) ||
                  c == '-' || c == '_';
        if (!ok || ++label > 63)
            return false;
    }
    return label > 0;
}

static int tg_conf_tls_cert(struct tg_cp *cp, const yaml_node_t *n, struct tg_conf_cert *c)
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
    TG_GUARD(tg_conf_tls_keyprov_init(cp, &c->keyprov, "private_key_provider", n));
    TG_GUARD(tg_cp_check_map(cp, n, keys));

    /* certificate_chain may be left to a key-holding provider (struct
     * tg_conf_cert); checked once private_key is known. */
    const yaml_node_t *provnode = tg_cp_get(cp, n, "private_key_provider", NULL);
    if ((v = tg_cp_get(cp, n, "certificate_chain", NULL)) != NULL || provnode == NULL) {
        TG_GUARD(tg_cp_require(cp, n, "certificate_chain", &v));
        o = tg_cp_push_key(cp, "certificate_chain");
        rc = tg_conf_tls_datasource(cp, v, TG_CONF_TLS_CERT, &c->chain);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }

    if ((v = tg_cp_get(cp, n, "private_key", &keynode)) != NULL) {
        o = tg_cp_push_key(cp, "private_key");
        rc = tg_conf_tls_datasource(cp, v, TG_CONF_TLS_KEY, &c->private_key);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }

    if ((v = tg_cp_get(cp, n, "server_names", NULL)) != NULL) {
        o = tg_cp_push_key(cp, "server_names");
        rc = tg_cp_strings(cp, v, 253, &c->server_names, &c->n_server_names);
        for (size_t i = 0; rc == TG_OK && i < c->n_server_names; i++) {
            if (!tg_conf_tls_server_name_ok(c->server_names[i])) {
                char ex[TG_CONF_EXCERPT];
                tg_cp_push_index(cp, i);
                rc = tg_cp_fail(cp, tg_cp_node(cp, v->data.sequence.items.start[i]),
                                "invalid server name '%s' (expected a DNS name, optionally "
                                "starting with '*.')",
                                tg_config_excerpt(c->server_names[i], ex, sizeof(ex)));
            }
        }
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }

    if ((v = tg_cp_get(cp, n, "private_key_provider", NULL)) != NULL) {
        o = tg_cp_push_key(cp, "private_key_provider");
        rc = tg_conf_tls_keyprov(cp, v, &c->keyprov, c, keynode);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }

    if (c->private_key.data == NULL && provnode == NULL)
        return tg_cp_fail(cp, n,
                          "missing required key 'private_key' (or "
                          "private_key_provider.typed_config.private_key)");
    if (c->chain.data == NULL && c->private_key.data != NULL)
        return tg_cp_fail(cp, n, "missing required key 'certificate_chain'");
    return TG_OK;
}

/* ------------------------------------------------------------------------ */
/* client_certificate (mutual TLS)                                          */

/* Longest chain of intermediates verify_depth may allow. */
#define TG_CONF_TLS_MAX_DEPTH 16

static int tg_conf_tls_source_at(struct tg_cp *cp, const yaml_node_t *v, const char *key,
                                 enum tg_conf_tls_pem kind, struct tg_conf_datasource *ds)
{
    size_t o = tg_cp_push_key(cp, key);
    int rc = tg_conf_tls_datasource(cp, v, kind, ds);
    tg_cp_pop(cp, o);
    return rc;
}

static int tg_conf_tls_client_cert(struct tg_cp *cp, const yaml_node_t *n,
                                   struct tg_conf_client_cert *cc)
{
    static const char *const keys[] = {"ca", "mode", "crl", "verify_depth", NULL};
    const yaml_node_t *v, *k = NULL;
    char ex[TG_CONF_EXCERPT];
    int rc;

    cc->path = tg_cp_path_dup(cp);
    if (cc->path == NULL)
        return tg_cp_nomem(cp);
    cc->mark = tg_cp_mark(cp, n);
    if (n->type != YAML_MAPPING_NODE)
        return tg_cp_fail(cp, n, "expected a mapping { ca: ..., mode: require | optional }, got %s",
                          tg_cp_kind(n));
    TG_GUARD(tg_cp_check_map(cp, n, keys));
    if (tg_cp_get(cp, n, "ca", NULL) == NULL && tg_cp_get(cp, n, "crl", &k) != NULL) {
        /* Said plainly: a CRL alone would look like revocation checking. */
        size_t o = tg_cp_push_key(cp, "crl");
        rc = tg_cp_fail(cp, k,
                        "'crl' needs 'ca': client certificates are verified against the CA "
                        "certificates in 'ca', and a CRL only revokes some of them");
        tg_cp_pop(cp, o);
        return rc;
    }
    TG_GUARD(tg_cp_require(cp, n, "ca", &v));
    TG_GUARD(tg_conf_tls_source_at(cp, v, "ca", TG_CONF_TLS_CA, &cc->ca));

    cc->mode = TG_CCERT_REQUIRE;
    if ((v = tg_cp_get(cp, n, "mode", NULL)) != NULL) {
        const char *s;
        size_t o = tg_cp_push_key(cp, "mode");
        rc = tg_cp_scalar(cp, v, "a mode", &s);
        if (rc == TG_OK) {
            if (strcmp(s, "require") == 0)
                cc->mode = TG_CCERT_REQUIRE;
            else if (strcmp(s, "optional") == 0)
                cc->mode = TG_CCERT_OPTIONAL;
            else
                rc = tg_cp_fail(cp, v, "invalid mode '%s' (valid: require, optional)",
                                tg_config_excerpt(s, ex, sizeof(ex)));
        }
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    if ((v = tg_cp_get(cp, n, "crl", NULL)) != NULL)
        TG_GUARD(tg_conf_tls_source_at(cp, v, "crl", TG_CONF_TLS_CRL, &cc->crl));
    uint64_t depth = 4;
    TG_GUARD(tg_cp_opt_u64(cp, n, "verify_depth", 0, TG_CONF_TLS_MAX_DEPTH, &depth));
    cc->verify_depth = (uint32_t)depth;
    return TG_OK;
}

/* ------------------------------------------------------------------------ */
/* The tls block                                                            */

static int tg_conf_tls_version(struct tg_cp *cp, const yaml_node_t *map, const char *key, int *out,
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
                            tg_config_excerpt(s, ex, sizeof(ex)));
    }
    tg_cp_pop(cp, o);
    return rc;
}

static int tg_conf_tls_groups(struct tg_cp *cp, const yaml_node_t *v, struct tg_conf_tls *t)
{
    if (v->type == YAML_SCALAR_NODE)
        return tg_cp_string(cp, v, &t->groups);
    if (v->type != YAML_SEQUENCE_NODE)
        return tg_cp_fail(cp, v, "expected a string or a sequence of strings, got %s",
                          tg_cp_kind(v));
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
    tg_cp_strv_free(items, n);
    return rc;
}

int tg_conf_tls_parse(struct tg_cp *cp, const yaml_node_t *n, struct tg_conf_tls *t)
{
    static const char *const keys[] = {
        "certificates",          "min_version",          "max_version",        "alpn",
        "session_resumption",    "cipher_list",          "cipher_suites",      "groups",
        "key_exchange_provider", "require_close_notify", "client_certificate", NULL};
    const yaml_node_t *v, *minv = NULL, *maxv = NULL;
    size_t o;
    int rc;

    t->mark = tg_cp_mark(cp, n);
    TG_GUARD(tg_cp_check_map(cp, n, keys));

    TG_GUARD(tg_cp_require(cp, n, "certificates", &v));
    o = tg_cp_push_key(cp, "certificates");
    if (v->type != YAML_SEQUENCE_NODE) {
        rc = tg_cp_fail(cp, v, "expected a sequence of certificates, got %s", tg_cp_kind(v));
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
            rc = tg_conf_tls_cert(cp, it, &t->certs[i]);
            tg_cp_pop(cp, o2);
        }
    }
    tg_cp_pop(cp, o);
    TG_GUARD(rc);

    TG_GUARD(tg_conf_tls_version(cp, n, "min_version", &t->min_version, &minv));
    TG_GUARD(tg_conf_tls_version(cp, n, "max_version", &t->max_version, &maxv));
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
    TG_GUARD(tg_cp_opt_bool(cp, n, "require_close_notify", &t->require_close_notify));
    TG_GUARD(tg_cp_opt_string(cp, n, "cipher_list", &t->cipher_list));
    TG_GUARD(tg_cp_opt_string(cp, n, "cipher_suites", &t->cipher_suites));
    if ((v = tg_cp_get(cp, n, "cipher_list", NULL)) != NULL)
        t->cipher_list_mark = tg_cp_mark(cp, v);
    if ((v = tg_cp_get(cp, n, "cipher_suites", NULL)) != NULL)
        t->cipher_suites_mark = tg_cp_mark(cp, v);
    if ((v = tg_cp_get(cp, n, "key_exchange_provider", NULL)) != NULL) {
        TG_GUARD(tg_conf_tls_keyprov_init(cp, &t->kx_provider, "key_exchange_provider", v));
        t->has_kx_provider = true;
        o = tg_cp_push_key(cp, "key_exchange_provider");
        rc = tg_conf_tls_keyprov(cp, v, &t->kx_provider, NULL, NULL);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    if ((v = tg_cp_get(cp, n, "groups", NULL)) != NULL) {
        t->groups_mark = tg_cp_mark(cp, v);
        o = tg_cp_push_key(cp, "groups");
        rc = tg_conf_tls_groups(cp, v, t);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    if ((v = tg_cp_get(cp, n, "client_certificate", NULL)) != NULL) {
        o = tg_cp_push_key(cp, "client_certificate");
        rc = tg_conf_tls_client_cert(cp, v, &t->client_cert);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    return TG_OK;
}
