/*
 * tg_gwapi: `tlsgate gateway-api FILE...` — the Kubernetes objects of a
 * TLS-terminating TCP gateway (Gateway API GatewayClass, Gateway with TLS
 * listeners in Terminate mode, TCPRoute/TLSRoute, the kubernetes.io/tls
 * Secrets, CA ConfigMaps and backend Services, and Envoy Gateway's
 * EnvoyProxy, the EnvoyPatchPolicy that adds a private_key_provider and the
 * ClientTrafficPolicy that asks for client certificates) turned into the
 * equivalent tlsgate configuration (docs/KUBERNETES.md, "From Gateway API").
 *
 *   one tlsgate listener per Gateway listener, on 0.0.0.0:PORT (PORT + the
 *     port offset for ports below 1024: tlsgate runs as a non-root user);
 *   certificates at CERT_DIR/<namespace>/<secret>/tls.crt and tls.key, where
 *     the Deployment mounts the Secrets;
 *   the upstream from the route's backendRef: <svc>.<ns>.svc.<cluster domain>:<port>,
 *     or the Service's spec.clusterIP when asked (TG_GWAPI_UPSTREAM_CLUSTER_IP);
 *   client certificates (tls.client_certificate) from a listener's
 *     tls.frontendValidation, the Gateway's spec.tls.frontend or Envoy
 *     Gateway's ClientTrafficPolicy: the CA at CERT_DIR/<namespace>/<name>/ca.crt,
 *     where the Deployment mounts the ConfigMap or Secret holding ca.crt;
 *   the key provider from the EnvoyPatchPolicy (provider_name, poll_delay, fallback);
 *   concurrency from the GatewayClass's EnvoyProxy.
 *
 * Nothing is dropped silently: every field it does not convert is reported
 * with the file, line, column, the object (Kind namespace/name), the field
 * path and why, as a warning (the output is still right for what it covers)
 * or an error (the output would not do what the objects ask: no output).
 *
 * Ownership: a tg_gwapi owns copies of everything added; the caller owns the
 * output buffer. Threading: one converter on one thread; no global state.
 */
#ifndef TG_GWAPI_H
#define TG_GWAPI_H

#include <stddef.h>

#include "core/tg_buf.h"
#include "core/tg_err.h"

enum tg_gwapi_upstream {
    TG_GWAPI_UPSTREAM_DNS,        /* <svc>.<ns>.svc.<domain>:<port> */
    TG_GWAPI_UPSTREAM_CLUSTER_IP, /* the Service's spec.clusterIP (the Service must be given) */
};

struct tg_gwapi_opts {
    const char *cert_dir;       /* where Secrets are mounted; "/etc/tlsgate/certs" */
    const char *cluster_domain; /* "cluster.local" */
    const char *admin;          /* admin address, "0.0.0.0:9901"; NULL or "" = no admin block */
    int port_offset;            /* added to listener ports below 1024; 8000 (443 -> 8443) */
    enum tg_gwapi_upstream upstream;
    const char *const *providers; /* known key providers, NULL-terminated; NULL: any name */
};

/* The defaults above. */
void tg_gwapi_opts_default(struct tg_gwapi_opts *o);

struct tg_gwapi;

/* A converter with a copy of *opts (its strings must outlive it). TG_ENOMEM. */
int tg_gwapi_new(const struct tg_gwapi_opts *opts, struct tg_gwapi **out) TG_MUST_CHECK;

/*
 * Add the YAML documents of one input (len bytes, need not be
 * NUL-terminated; file names it in messages). Documents may be Kubernetes
 * objects or a v1 List of them. TG_OK, or TG_ECONFIG after a YAML syntax
 * error (reported as an error diagnostic; documents before it are kept),
 * TG_ENOMEM.
 */
int tg_gwapi_add(struct tg_gwapi *g, const char *file, const char *buf, size_t len) TG_MUST_CHECK;

/*
 * Convert everything added so far; appends the configuration to out. TG_OK
 * (there may be warnings), TG_ECONFIG when there are errors (out then holds
 * nothing usable), TG_ENOMEM. Call once.
 */
int tg_gwapi_convert(struct tg_gwapi *g, struct tg_buf *out) TG_MUST_CHECK;

/* The diagnostics so far, one per line ("" when none), and their counts. */
const char *tg_gwapi_diagnostics(const struct tg_gwapi *g);
size_t tg_gwapi_warnings(const struct tg_gwapi *g);
size_t tg_gwapi_errors(const struct tg_gwapi *g);
/* Listeners in the converted output. */
size_t tg_gwapi_listeners(const struct tg_gwapi *g);

void tg_gwapi_free(struct tg_gwapi *g);

/*
 * The command: argv[0] is "gateway-api". providers as in the options.
 * Exit status: 0 converted (warnings on stderr), 2 errors or usage, 1 an
 * input or output file could not be read or written.
 */
int tg_gwapi_main(int argc, char **argv, const char *const *providers);

#endif
