/*
 * tg_gwapi: inputs (YAML streams -> Kubernetes objects), YAML access helpers,
 * diagnostics, output helpers and the `tlsgate gateway-api` command. The
 * conversion itself is in tg_gwapi_conv.c.
 */
#include "k8s/tg_gwapi.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "k8s/tg_gwapi_internal.h"

#define TG_GW_MAX_INPUT (16u * 1024 * 1024)
#define TG_GW_MAX_DEPTH 64

void tg_gwapi_opts_default(struct tg_gwapi_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->cert_dir = "/etc/tlsgate/certs";
    o->cluster_domain = "cluster.local";
    o->admin = "0.0.0.0:9901";
    o->port_offset = 8000;
    o->upstream = TG_GWAPI_UPSTREAM_DNS;
}

int tg_gwapi_new(const struct tg_gwapi_opts *opts, struct tg_gwapi **out)
{
    *out = NULL;
    struct tg_gwapi *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return TG_ENOMEM;
    g->opts = *opts;
    *out = g;
    return TG_OK;
}

void tg_gwapi_free(struct tg_gwapi *g)
{
    if (g == NULL)
        return;
    for (size_t i = 0; i < g->ndocs; i++) {
        yaml_document_delete(g->docs[i]);
        free(g->docs[i]);
    }
    for (size_t i = 0; i < g->nfiles; i++)
        free(g->files[i]);
    free(g->docs);
    free(g->files);
    free(g->objs);
    tg_buf_free(&g->diag);
    free(g);
}

const char *tg_gwapi_diagnostics(const struct tg_gwapi *g)
{
    return g->diag.len > 0 && !g->diag.failed ? g->diag.data : "";
}

size_t tg_gwapi_warnings(const struct tg_gwapi *g)
{
    return g->nwarn;
}

size_t tg_gwapi_errors(const struct tg_gwapi *g)
{
    return g->nerr;
}

size_t tg_gwapi_listeners(const struct tg_gwapi *g)
{
    return g->nlisteners;
}

/* ------------------------------------------------------------------------ */
/* Diagnostics                                                              */

/* Appends text from the input (object names, paths, messages that quote
 * values) keeping a diagnostic on one line and the terminal safe: a line
 * break or another control character becomes an escape (\n, \x1b). */
static void tg_gw_put_text(struct tg_buf *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '\n')
            tg_buf_puts(b, "\\n");
        else if (*p == '\r')
            tg_buf_puts(b, "\\r");
        else if (*p == '\t')
            tg_buf_puts(b, "\\t");
        else if (*p < 0x20 || *p == 0x7f)
            tg_buf_printf(b, "\\x%02x", *p);
        else
            tg_buf_append(b, p, 1);
    }
}

static void tg_gw_vreport(struct tg_gwapi *g, enum tg_gw_sev sev, const char *file,
                          const yaml_node_t *at, const char *what, const char *path,
                          const char *fmt, va_list ap) __attribute__((format(printf, 7, 0)));

static void tg_gw_vreport(struct tg_gwapi *g, enum tg_gw_sev sev, const char *file,
                          const yaml_node_t *at, const char *what, const char *path,
                          const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    /* One line per diagnostic, whatever the input held: every part that
     * can carry input text goes through tg_gw_put_text. */
    tg_gw_put_text(&g->diag, file != NULL ? file : "tlsgate gateway-api");
    if (at != NULL)
        tg_buf_printf(&g->diag, ":%zu:%zu", at->start_mark.line + 1, at->start_mark.column + 1);
    tg_buf_printf(&g->diag, ": %s: ", sev == TG_GW_ERROR ? "error" : "warning");
    if (what != NULL && what[0] != '\0') {
        tg_gw_put_text(&g->diag, what);
        tg_buf_puts(&g->diag, ": ");
    }
    if (path != NULL && path[0] != '\0') {
        tg_gw_put_text(&g->diag, path);
        tg_buf_puts(&g->diag, ": ");
    }
    tg_gw_put_text(&g->diag, msg);
    tg_buf_puts(&g->diag, "\n");
    if (sev == TG_GW_ERROR)
        g->nerr++;
    else
        g->nwarn++;
}

static void tg_gw_report_file(struct tg_gwapi *g, enum tg_gw_sev sev, const char *file,
                              const yaml_node_t *at, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void tg_gw_report_file(struct tg_gwapi *g, enum tg_gw_sev sev, const char *file,
                              const yaml_node_t *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tg_gw_vreport(g, sev, file, at, NULL, NULL, fmt, ap);
    va_end(ap);
}

void tg_gw_report_input(struct tg_gwapi *g, enum tg_gw_sev sev, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tg_gw_vreport(g, sev, NULL, NULL, NULL, NULL, fmt, ap);
    va_end(ap);
}

void tg_gw_report(struct tg_gwapi *g, enum tg_gw_sev sev, const struct tg_gw_obj *o,
                  const yaml_node_t *at, const char *path, const char *fmt, ...)
{
    char what[300];
    if (o->ns[0] != '\0')
        snprintf(what, sizeof(what), "%s %s/%s", o->kind[0] ? o->kind : "?", o->ns, o->name);
    else
        snprintf(what, sizeof(what), "%s %s", o->kind[0] ? o->kind : "?", o->name);
    va_list ap;
    va_start(ap, fmt);
    tg_gw_vreport(g, sev, o->file, at != NULL ? at : o->node, what, path, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------ */
/* YAML access                                                              */

const char *tg_gw_scalar(const yaml_node_t *node)
{
    if (node == NULL || node->type != YAML_SCALAR_NODE)
        return NULL;
    return (const char *)node->data.scalar.value;
}

bool tg_gw_is_map(const yaml_node_t *node)
{
    return node != NULL && node->type == YAML_MAPPING_NODE;
}

yaml_node_t *tg_gw_get(yaml_document_t *doc, const yaml_node_t *map, const char *key)
{
    if (!tg_gw_is_map(map))
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const char *k = tg_gw_scalar(yaml_document_get_node(doc, p->key));
        if (k != NULL && strcmp(k, key) == 0)
            return yaml_document_get_node(doc, p->value);
    }
    return NULL;
}

const char *tg_gw_str(yaml_document_t *doc, const yaml_node_t *map, const char *key)
{
    return tg_gw_scalar(tg_gw_get(doc, map, key));
}

size_t tg_gw_seq_len(const yaml_node_t *node)
{
    if (node == NULL || node->type != YAML_SEQUENCE_NODE)
        return 0;
    return (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
}

yaml_node_t *tg_gw_seq_at(yaml_document_t *doc, const yaml_node_t *node, size_t i)
{
    if (i >= tg_gw_seq_len(node))
        return NULL;
    return yaml_document_get_node(doc, node->data.sequence.items.start[i]);
}

bool tg_gw_int(const yaml_node_t *node, long lo, long hi, long *out)
{
    const char *s = tg_gw_scalar(node);
    if (s == NULL || s[0] < '0' || s[0] > '9' || strlen(s) > 9)
        return false;
    long v = 0;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (*p - '0');
    }
    if (v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

void tg_gw_check_keys(struct tg_gwapi *g, const struct tg_gw_obj *o, const yaml_node_t *map,
                      const char *path, const char *const *allowed)
{
    if (!tg_gw_is_map(map))
        return;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = yaml_document_get_node(o->doc, p->key);
        const char *k = tg_gw_scalar(kn);
        bool ok = false;
        for (size_t i = 0; k != NULL && allowed[i] != NULL && !ok; i++)
            ok = strcmp(k, allowed[i]) == 0;
        if (!ok)
            tg_gw_report(g, TG_GW_WARN, o, kn, path,
                         "field '%s' is not supported by tlsgate: ignored", k != NULL ? k : "?");
    }
}

/* ------------------------------------------------------------------------ */
/* Objects                                                                  */

bool tg_gw_api(const struct tg_gw_obj *o, const char *group)
{
    size_t n = strlen(group);
    if (n == 0)
        return strchr(o->api_version, '/') == NULL;
    return strncmp(o->api_version, group, n) == 0 && o->api_version[n] == '/';
}

bool tg_gw_is(const struct tg_gw_obj *o, const char *group, const char *kind)
{
    return !o->invalid && !o->superseded && strcmp(o->kind, kind) == 0 && tg_gw_api(o, group);
}

const char *tg_gw_ns(const struct tg_gw_obj *o)
{
    return o->ns[0] != '\0' ? o->ns : "default";
}

/* The object group/kind ns/name (ns NULL: cluster-scoped), or NULL. */
struct tg_gw_obj *tg_gw_find(struct tg_gwapi *g, const char *group, const char *kind,
                             const char *ns, const char *name)
{
    for (size_t i = 0; i < g->nobjs; i++) {
        struct tg_gw_obj *o = &g->objs[i];
        if (tg_gw_is(o, group, kind) && strcmp(o->name, name) == 0 &&
            (ns == NULL || strcmp(tg_gw_ns(o), ns) == 0))
            return o;
    }
    return NULL;
}

/* str, or dflt when str is NULL or empty. */
const char *tg_gw_or(const char *str, const char *dflt)
{
    return str != NULL && str[0] != '\0' ? str : dflt;
}

/* ------------------------------------------------------------------------ */
/* Output helpers                                                           */

static bool tg_gw_plain_ok(const char *s)
{
    static const char *const special[] = {"true", "false", "yes",  "no", "on", "off",
                                          "y",    "n",     "null", "~",  NULL};
    if (s[0] == '\0' || strchr("-.:@", s[0]) != NULL || s[strlen(s) - 1] == ':')
        return false;
    for (const char *p = s; *p != '\0'; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("_./@:-", c) != NULL))
            return false;
    }
    for (size_t i = 0; special[i] != NULL; i++)
        if (strcasecmp(s, special[i]) == 0)
            return false;
    /* Numbers stay text in tlsgate's loader, but quote them for other readers. */
    char *end;
    (void)strtod(s, &end);
    return *end != '\0';
}

void tg_gw_emit_str(struct tg_buf *out, const char *s)
{
    if (tg_gw_plain_ok(s)) {
        tg_buf_puts(out, s);
        return;
    }
    tg_buf_puts(out, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            tg_buf_printf(out, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            tg_buf_printf(out, "\\x%02x", *p);
        else
            tg_buf_append(out, p, 1);
    }
    tg_buf_puts(out, "\"");
}

void tg_gw_emit_comment(struct tg_buf *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        tg_buf_append(out, (*p < 0x20 || *p == 0x7f) ? (const unsigned char *)"?" : p, 1);
}

/* ------------------------------------------------------------------------ */
/* Inputs                                                                   */

/* Refuse nesting deeper than TG_GW_MAX_DEPTH before libyaml's recursive loader sees it. */
static bool tg_gw_depth_ok(struct tg_gwapi *g, const char *file, const char *buf, size_t len)
{
    yaml_parser_t p;
    yaml_event_t ev;
    int depth = 0;
    bool ok = true;
    if (!yaml_parser_initialize(&p))
        return false;
    yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
    for (;;) {
        if (!yaml_parser_parse(&p, &ev))
            break; /* the loader reports the syntax error with its position */
        yaml_event_type_t t = ev.type;
        if (t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) {
            if (++depth > TG_GW_MAX_DEPTH) {
                tg_gw_report_file(g, TG_GW_ERROR, file, NULL,
                                  "line %zu: nesting deeper than %d levels", ev.start_mark.line + 1,
                                  TG_GW_MAX_DEPTH);
                ok = false;
            }
        } else if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT) {
            depth--;
        }
        yaml_event_delete(&ev);
        if (!ok || t == YAML_STREAM_END_EVENT)
            break;
    }
    yaml_parser_delete(&p);
    return ok;
}

static int tg_gw_add_obj(struct tg_gwapi *g, yaml_document_t *doc, yaml_node_t *node,
                         const char *file)
{
    if (g->nobjs == g->capobjs) {
        size_t cap = g->capobjs ? g->capobjs * 2 : 16;
        struct tg_gw_obj *n = realloc(g->objs, cap * sizeof(*n));
        if (n == NULL)
            return TG_ENOMEM;
        g->objs = n;
        g->capobjs = cap;
    }
    struct tg_gw_obj *o = &g->objs[g->nobjs++];
    memset(o, 0, sizeof(*o));
    o->doc = doc;
    o->node = node;
    o->file = file;
    yaml_node_t *meta = tg_gw_get(doc, node, "metadata");
    const char *s;
    o->api_version = (s = tg_gw_str(doc, node, "apiVersion")) != NULL ? s : "";
    o->kind = (s = tg_gw_str(doc, node, "kind")) != NULL ? s : "";
    o->name = (s = tg_gw_str(doc, meta, "name")) != NULL ? s : "";
    o->ns = (s = tg_gw_str(doc, meta, "namespace")) != NULL ? s : "";
    o->invalid = o->kind[0] == '\0' || o->api_version[0] == '\0' || o->name[0] == '\0';
    if (o->invalid)
        tg_gw_report(g, TG_GW_WARN, o, NULL, NULL,
                     "not a Kubernetes object (apiVersion, kind and metadata.name expected): "
                     "ignored");
    return TG_OK;
}

static int tg_gw_keep(void **arr, size_t *n, size_t *cap, size_t elem)
{
    if (*n < *cap)
        return TG_OK;
    size_t c = *cap ? *cap * 2 : 8;
    void *a = realloc(*arr, c * elem);
    if (a == NULL)
        return TG_ENOMEM;
    *arr = a;
    *cap = c;
    return TG_OK;
}

int tg_gwapi_add(struct tg_gwapi *g, const char *file, const char *buf, size_t len)
{
    int rc = tg_gw_keep((void **)&g->files, &g->nfiles, &g->capfiles, sizeof(char *));
    if (rc != TG_OK)
        return rc;
    char *name = strdup(file != NULL ? file : "<input>");
    if (name == NULL)
        return TG_ENOMEM;
    g->files[g->nfiles++] = name;
    if (!tg_gw_depth_ok(g, name, buf, len))
        return TG_ECONFIG;

    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return TG_ENOMEM;
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    for (;;) {
        rc = tg_gw_keep((void **)&g->docs, &g->ndocs, &g->capdocs, sizeof(yaml_document_t *));
        yaml_document_t *doc = rc == TG_OK ? calloc(1, sizeof(*doc)) : NULL;
        if (doc == NULL) {
            rc = TG_ENOMEM;
            break;
        }
        if (!yaml_parser_load(&parser, doc)) {
            free(doc);
            tg_gw_report_file(g, TG_GW_ERROR, name, NULL, "line %zu column %zu: invalid YAML: %s",
                              parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                              parser.problem != NULL ? parser.problem : "syntax error");
            rc = parser.error == YAML_MEMORY_ERROR ? TG_ENOMEM : TG_ECONFIG;
            break;
        }
        yaml_node_t *root = yaml_document_get_root_node(doc);
        if (root == NULL) { /* end of the stream */
            yaml_document_delete(doc);
            free(doc);
            break;
        }
        g->docs[g->ndocs++] = doc;
        if (!tg_gw_is_map(root)) {
            tg_gw_report_file(g, TG_GW_WARN, name, root,
                              "a document that is not a mapping (Kubernetes object): ignored");
            continue;
        }
        const char *kind = tg_gw_str(doc, root, "kind");
        yaml_node_t *items = tg_gw_get(doc, root, "items");
        if (kind != NULL && strcmp(kind, "List") == 0 && items != NULL) {
            for (size_t i = 0; i < tg_gw_seq_len(items) && rc == TG_OK; i++) {
                yaml_node_t *it = tg_gw_seq_at(doc, items, i);
                if (tg_gw_is_map(it))
                    rc = tg_gw_add_obj(g, doc, it, name);
                else
                    tg_gw_report_file(g, TG_GW_WARN, name, it,
                                      "List item is not an object: ignored");
            }
        } else {
            rc = tg_gw_add_obj(g, doc, root, name);
        }
        if (rc != TG_OK)
            break;
    }
    yaml_parser_delete(&parser);
    return rc;
}

int tg_gwapi_convert(struct tg_gwapi *g, struct tg_buf *out)
{
    if (g->converted)
        return TG_ESTATE;
    g->converted = true;
    int rc = tg_gw_convert(g, out);
    if (rc == TG_OK && (g->diag.failed || out->failed))
        rc = TG_ENOMEM;
    if (rc == TG_OK && g->nerr > 0)
        rc = TG_ECONFIG;
    return rc;
}

/* ------------------------------------------------------------------------ */
/* The command                                                              */

static void tg_gw_usage(FILE *f)
{
    fprintf(f, "usage: tlsgate gateway-api [options] FILE...   (FILE '-' = standard input)\n"
               "\n"
               "Converts Kubernetes Gateway API objects (GatewayClass, Gateway with TLS\n"
               "listeners in Terminate mode, TCPRoute/TLSRoute, kubernetes.io/tls Secrets,\n"
               "Services, client CA ConfigMaps) and Envoy Gateway's EnvoyProxy,\n"
               "EnvoyPatchPolicy (private_key_provider) and ClientTrafficPolicy (client\n"
               "certificates) into a tlsgate configuration. What is not converted\n"
               "is reported on stderr: warnings (exit 0) or errors (exit 2, no output).\n"
               "\n"
               "options:\n"
               "  -o FILE                write the configuration to FILE (default: stdout)\n"
               "  --cert-dir DIR         where the Secrets are mounted: DIR/<namespace>/<secret>/\n"
               "                         tls.crt and tls.key (default /etc/tlsgate/certs);\n"
               "                         client CAs: DIR/<namespace>/<name>/ca.crt\n"
               "  --upstream dns|cluster-ip\n"
               "                         upstream as <svc>.<ns>.svc.<domain>:<port> (default), or\n"
               "                         the backend Service's spec.clusterIP (Service required)\n"
               "  --cluster-domain D     default cluster.local\n"
               "  --admin ADDR|none      admin endpoint (default 0.0.0.0:9901)\n"
               "  --port-offset N        added to listener ports below 1024 (default 8000:\n"
               "                         443 -> 8443; tlsgate runs as a non-root user)\n");
}

static int tg_gw_read_input(const char *path, char **out, size_t *outlen)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL)
        return TG_EIO;
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    int rc = buf != NULL ? TG_OK : TG_ENOMEM;
    while (rc == TG_OK) {
        if (len == cap) {
            char *n = cap < TG_GW_MAX_INPUT ? realloc(buf, cap * 2) : NULL;
            if (n == NULL) {
                rc = cap < TG_GW_MAX_INPUT ? TG_ENOMEM : TG_ELIMIT;
                break;
            }
            buf = n;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f))
                rc = TG_EIO;
            break;
        }
    }
    if (f != stdin)
        fclose(f);
    if (rc != TG_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    *outlen = len;
    return TG_OK;
}

/* Write atomically: a temporary file beside path, then rename. */
static int tg_gw_write_output(const char *path, const struct tg_buf *b)
{
    if (path == NULL || strcmp(path, "-") == 0) {
        if (b->len > 0 && fwrite(b->data, 1, b->len, stdout) != b->len)
            return TG_EIO;
        return fflush(stdout) == 0 ? TG_OK : TG_EIO;
    }
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
        return TG_EINVAL;
    FILE *f = fopen(tmp, "wb");
    if (f == NULL)
        return TG_EIO;
    bool ok = b->len == 0 || fwrite(b->data, 1, b->len, f) == b->len;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return TG_EIO;
    }
    return TG_OK;
}

int tg_gwapi_main(int argc, char **argv, const char *const *providers)
{
    struct tg_gwapi_opts opts;
    tg_gwapi_opts_default(&opts);
    opts.providers = providers;
    const char *output = NULL;
    int first_file = 0, nfiles = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            tg_gw_usage(stdout);
            return 0;
        } else if (strcmp(a, "-o") == 0 && has_val) {
            output = argv[++i];
        } else if (strcmp(a, "--cert-dir") == 0 && has_val) {
            opts.cert_dir = argv[++i];
        } else if (strcmp(a, "--cluster-domain") == 0 && has_val) {
            opts.cluster_domain = argv[++i];
        } else if (strcmp(a, "--admin") == 0 && has_val) {
            opts.admin = argv[++i];
            if (strcmp(opts.admin, "none") == 0)
                opts.admin = NULL;
        } else if (strcmp(a, "--upstream") == 0 && has_val) {
            const char *v = argv[++i];
            if (strcmp(v, "dns") == 0) {
                opts.upstream = TG_GWAPI_UPSTREAM_DNS;
            } else if (strcmp(v, "cluster-ip") == 0) {
                opts.upstream = TG_GWAPI_UPSTREAM_CLUSTER_IP;
            } else {
                fprintf(stderr, "tlsgate gateway-api: --upstream: expected dns or cluster-ip\n");
                return 2;
            }
        } else if (strcmp(a, "--port-offset") == 0 && has_val) {
            char *end;
            errno = 0;
            long v = strtol(argv[++i], &end, 10);
            if (errno != 0 || *end != '\0' || v < 0 || v > 64511) {
                fprintf(stderr, "tlsgate gateway-api: --port-offset: expected 0..64511\n");
                return 2;
            }
            opts.port_offset = (int)v;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "tlsgate gateway-api: unexpected argument '%s'\n", a);
            tg_gw_usage(stderr);
            return 2;
        } else {
            /* Files are collected in place: move them to the front of argv. */
            argv[first_file + nfiles + 1] = argv[i];
            nfiles++;
        }
    }
    if (nfiles == 0) {
        fprintf(stderr, "tlsgate gateway-api: missing FILE\n");
        tg_gw_usage(stderr);
        return 2;
    }

    struct tg_gwapi *g = NULL;
    struct tg_buf out = TG_BUF_INIT;
    int status = 0;
    if (tg_gwapi_new(&opts, &g) != TG_OK) {
        fprintf(stderr, "tlsgate gateway-api: out of memory\n");
        return 1;
    }
    for (int i = 0; i < nfiles && status == 0; i++) {
        const char *path = argv[first_file + i + 1];
        char *buf = NULL;
        size_t len = 0;
        int rc = tg_gw_read_input(path, &buf, &len);
        if (rc != TG_OK) {
            fprintf(stderr, "tlsgate gateway-api: %s: cannot read: %s\n", path,
                    rc == TG_ELIMIT ? "larger than 16 MiB" : strerror(errno ? errno : EIO));
            status = 1;
            break;
        }
        rc = tg_gwapi_add(g, strcmp(path, "-") == 0 ? "<stdin>" : path, buf, len);
        free(buf);
        if (rc == TG_ENOMEM)
            status = 1;
    }
    int rc = TG_OK;
    if (status == 0) {
        rc = tg_gwapi_convert(g, &out);
        if (rc == TG_ENOMEM)
            status = 1;
    }
    fputs(tg_gwapi_diagnostics(g), stderr);
    if (status == 0 && (rc != TG_OK || tg_gwapi_errors(g) > 0))
        status = 2;
    if (status == 0 && tg_gw_write_output(output, &out) != TG_OK) {
        fprintf(stderr, "tlsgate gateway-api: %s: cannot write: %s\n", output ? output : "stdout",
                strerror(errno ? errno : EIO));
        status = 1;
    }
    fprintf(stderr, "tlsgate gateway-api: %zu listener(s), %zu warning(s), %zu error(s)%s\n",
            tg_gwapi_listeners(g), tg_gwapi_warnings(g), tg_gwapi_errors(g),
            status == 2 ? ": no configuration written" : "");
    tg_buf_free(&out);
    tg_gwapi_free(g);
    return status;
}
