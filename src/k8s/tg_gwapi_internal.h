/*
 * tg_gwapi internals shared by tg_gwapi.c (inputs, YAML access, diagnostics,
 * output helpers, the command) and tg_gwapi_conv.c (the conversion).
 * Not part of the module's interface.
 */
#ifndef TG_GWAPI_INTERNAL_H
#define TG_GWAPI_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <yaml.h>

#include "core/tg_buf.h"
#include "k8s/tg_gwapi.h"

/* One Kubernetes object: a mapping node inside one of the loaded documents. */
struct tg_gw_obj {
    yaml_document_t *doc;
    yaml_node_t *node;
    const char *file;
    const char *api_version, *kind, *ns, *name; /* "" when absent */
    bool invalid;    /* no apiVersion, kind or name: reported once, then skipped */
    bool superseded; /* the same object comes again later in the input */
    bool used;       /* something in the output came from it (or it was reported) */
};

struct tg_gwapi {
    struct tg_gwapi_opts opts;
    yaml_document_t **docs;
    size_t ndocs, capdocs;
    char **files;
    size_t nfiles, capfiles;
    struct tg_gw_obj *objs;
    size_t nobjs, capobjs;
    struct tg_buf diag;
    size_t nwarn, nerr, nlisteners;
    bool converted;
};

enum tg_gw_sev { TG_GW_WARN, TG_GW_ERROR };

/* Report at node (NULL: the object itself): "FILE:LINE:COL: warning|error: Kind ns/name: path:
 * msg". */
void tg_gw_report(struct tg_gwapi *g, enum tg_gw_sev sev, const struct tg_gw_obj *o,
                  const yaml_node_t *at, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* About the input as a whole: "tlsgate gateway-api: warning|error: msg". */
void tg_gw_report_input(struct tg_gwapi *g, enum tg_gw_sev sev, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- YAML access (NULL-tolerant) ---- */
yaml_node_t *tg_gw_get(yaml_document_t *doc, const yaml_node_t *map, const char *key);
/* The scalar's text, or NULL when node is not a scalar. */
const char *tg_gw_scalar(const yaml_node_t *node);
/* Scalar text of map[key], or NULL (absent or not a scalar). */
const char *tg_gw_str(yaml_document_t *doc, const yaml_node_t *map, const char *key);
/* Items of a sequence node (n = 0 when node is not a sequence). */
size_t tg_gw_seq_len(const yaml_node_t *node);
yaml_node_t *tg_gw_seq_at(yaml_document_t *doc, const yaml_node_t *node, size_t i);
bool tg_gw_is_map(const yaml_node_t *node);
/* Decimal integer scalar in [lo, hi]. */
bool tg_gw_int(const yaml_node_t *node, long lo, long hi, long *out);

/*
 * Warn about every key of map not in allowed (NULL-terminated): "field not
 * supported by tlsgate gateway-api, ignored". path is the map's path.
 */
void tg_gw_check_keys(struct tg_gwapi *g, const struct tg_gw_obj *o, const yaml_node_t *map,
                      const char *path, const char *const *allowed);

/* ---- output ---- */
/* A YAML scalar for s: plain when unambiguous, else double-quoted with escapes. */
void tg_gw_emit_str(struct tg_buf *out, const char *s);
/* Comment text: control characters replaced, so a comment stays one line. */
void tg_gw_emit_comment(struct tg_buf *out, const char *s);

/* ---- objects ---- */
#define TG_GW_GROUP      "gateway.networking.k8s.io"
#define TG_EG_GROUP      "gateway.envoyproxy.io"
#define TG_ENVOY_SECRET  "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
#define TG_PKP_PATH      "/tls_certificate/private_key_provider"
#define TG_NAME_MAX      64
#define TG_MAX_LISTENERS 1024

/* apiVersion's group is group ("" = core). */
bool tg_gw_api(const struct tg_gw_obj *o, const char *group);
/* A valid, not superseded object of group and kind. */
bool tg_gw_is(const struct tg_gw_obj *o, const char *group, const char *kind);
/* Its namespace ("default" when not given). */
const char *tg_gw_ns(const struct tg_gw_obj *o);
/* The object group/kind ns/name (ns NULL: cluster-scoped), or NULL. */
struct tg_gw_obj *tg_gw_find(struct tg_gwapi *g, const char *group, const char *kind,
                             const char *ns, const char *name);
/* str, or dflt when str is NULL or empty. */
const char *tg_gw_or(const char *str, const char *dflt);

/* ---- the conversion (tg_gwapi_conv.c, tg_gwapi_policy.c) ---- */
/* A private_key_provider an EnvoyPatchPolicy adds to one Secret. */
struct tg_gw_prov {
    struct tg_gw_obj *policy;
    const char *gateway; /* target Gateway's name, in the policy's namespace */
    char secret[300];    /* "<namespace>/<name>" */
    const char *provider, *poll_delay, *fallback;
    const yaml_node_t *at, *inline_key;
    bool key_copied, used;
};

/* The client certificates a listener asks for (tg_gwapi_mtls.c). */
struct tg_gw_cca {
    const char *mode; /* "require" or "optional"; NULL: no client certificate */
    char ca[700];     /* the CA file: CERT_DIR/<namespace>/<name>/ca.crt */
    char src[300];    /* "ConfigMap <namespace>/<name>" */
    char from[300];   /* what asked for it, for comments and messages */
};

/* A ClientTrafficPolicy (tg_gwapi_mtls.c). */
struct tg_gw_ctp {
    struct tg_gw_obj *policy;
    struct tg_gw_cca cca; /* cca.mode NULL: it has no tls.clientValidation */
    bool bad;             /* its clientValidation was refused (reported) */
};

struct tg_gw_ctx {
    struct tg_gwapi *g;
    struct tg_buf lst; /* the listeners section */
    struct tg_gw_prov *provs;
    size_t nprovs, capprovs;
    struct tg_gw_ctp *ctps;
    size_t nctps, capctps;
    long concurrency;
    const struct tg_gw_obj *concurrency_from;
    struct {
        long port;
        char name[TG_NAME_MAX + 1];
    } out[TG_MAX_LISTENERS];
    size_t nout;
};

/* An EnvoyPatchPolicy -> c->provs (tg_gwapi_policy.c). TG_OK, TG_ECONFIG (reported), TG_ENOMEM. */
int tg_gw_policy(struct tg_gw_ctx *c, struct tg_gw_obj *o);

/* A ClientTrafficPolicy -> c->ctps: its fields checked, its clientValidation's CA resolved.
 * TG_OK (errors are reported and counted), TG_ENOMEM. */
int tg_gw_ctp(struct tg_gw_ctx *c, struct tg_gw_obj *o);

/*
 * The client certificates listener idx of gw (named lname, on port) asks
 * for: its tls.frontendValidation (fv, NULL when absent), the Gateway's
 * spec.tls.frontend, and the ClientTrafficPolicies that target it. Sources
 * that disagree are an error. out->mode NULL: none. TG_OK or TG_ECONFIG
 * (reported).
 */
int tg_gw_client_cert(struct tg_gw_ctx *c, struct tg_gw_obj *gw, size_t idx, const char *lname,
                      long port, const yaml_node_t *fv, struct tg_gw_cca *out);

/* The client_certificate block of a listener's tls (nothing when cca->mode is NULL). */
void tg_gw_emit_client_cert(struct tg_buf *b, const struct tg_gw_cca *cca);

/* tg_gwapi_conv.c: the conversion proper (tg_gwapi_convert's body). */
int tg_gw_convert(struct tg_gwapi *g, struct tg_buf *out);

#endif
