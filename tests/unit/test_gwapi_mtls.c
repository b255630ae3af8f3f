/*
 * Unit tests of src/k8s/tg_gwapi_mtls.c: client certificates asked for by a
 * Gateway listener's tls.frontendValidation, the Gateway's spec.tls.frontend
 * and Envoy Gateway's ClientTrafficPolicy become the listener's
 * tls.client_certificate (the CA at CERT_DIR/<namespace>/<name>/ca.crt);
 * what cannot be converted is refused with its position.
 */
#include "tg_test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

#include "config/tg_config.h"
#include "core/tg_buf.h"
#include "k8s/tg_gwapi.h"

static const char *const providers[] = {"software", "deferred", NULL};

/* A Gateway ns/gw: listeners a (443) and b (9443) with Secret s, tls of a given. */
static const char gw_fmt[] =
    "apiVersion: gateway.networking.k8s.io/v1\n"
    "kind: Gateway\n"
    "metadata: { name: gw, namespace: ns }\n"
    "spec:\n"
    "  gatewayClassName: c\n"
    "%s"
    "  listeners:\n"
    "    - name: a\n"
    "      protocol: TLS\n"
    "      port: 443\n"
    "      tls:\n"
    "        certificateRefs: [{ name: s }]\n"
    "%s"
    "    - { name: b, protocol: TLS, port: 9443, tls: { certificateRefs: [{ name: s }] } }\n"
    "---\n"
    "apiVersion: gateway.networking.k8s.io/v1alpha2\n"
    "kind: TCPRoute\n"
    "metadata: { name: r, namespace: ns }\n"
    "spec:\n"
    "  parentRefs: [{ name: gw }]\n"
    "  rules: [{ backendRefs: [{ name: be, port: 9000 }] }]\n"
    "%s";

static const char ca_cm[] = "---\n"
                            "apiVersion: v1\n"
                            "kind: ConfigMap\n"
                            "metadata: { name: clients-ca, namespace: ns }\n"
                            "data: { ca.crt: \"-----BEGIN CERTIFICATE-----\" }\n";

struct run {
    struct tg_gwapi *g;
    struct tg_buf out;
    int rc;
    const char *d;
};

/* Convert the Gateway above with gateway-level spec (gspec), listener a's extra tls lines
 * (ltls) and more documents (tail). */
static void run(struct run *r, const char *cert_dir, const char *gspec, const char *ltls,
                const char *tail)
{
    struct tg_gwapi_opts o;
    tg_gwapi_opts_default(&o);
    o.providers = providers;
    if (cert_dir != NULL)
        o.cert_dir = cert_dir;
    size_t n = sizeof(gw_fmt) + strlen(gspec) + strlen(ltls) + strlen(tail);
    char *y = malloc(n);
    assert_non_null(y);
    snprintf(y, n, gw_fmt, gspec, ltls, tail);
    memset(r, 0, sizeof(*r));
    assert_int_equal(tg_gwapi_new(&o, &r->g), TG_OK);
    r->rc = tg_gwapi_add(r->g, "t.yaml", y, strlen(y));
    if (r->rc == TG_OK)
        r->rc = tg_gwapi_convert(r->g, &r->out);
    r->d = tg_gwapi_diagnostics(r->g);
    if (r->out.data == NULL)
        tg_buf_puts(&r->out, "");
    free(y);
}

static void done(struct run *r)
{
    tg_buf_free(&r->out);
    tg_gwapi_free(r->g);
}

/* frontendValidation with a ConfigMap: listener a requires client certificates, b does not. */
static void test_frontend_validation(void **state)
{
    (void)state;
    struct run r;
    run(&r, NULL, "",
        "        frontendValidation:\n"
        "          caCertificateRefs: [{ group: \"\", kind: ConfigMap, name: clients-ca }]\n",
        ca_cm);
    assert_int_equal(r.rc, TG_OK);
    assert_int_equal(tg_gwapi_errors(r.g), 0);
    assert_int_equal(tg_gwapi_listeners(r.g), 2);
    assert_has(r.out.data, "          private_key: { filename: /etc/tlsgate/certs/ns/s/tls.key }\n"
                           "      # from Gateway ns/gw spec.listeners[0].tls.frontendValidation\n"
                           "      # CA: ConfigMap ns/clients-ca, key ca.crt, mounted at "
                           "/etc/tlsgate/certs/ns/clients-ca/\n"
                           "      client_certificate:\n"
                           "        mode: require\n"
                           "        ca: { filename: /etc/tlsgate/certs/ns/clients-ca/ca.crt }\n"
                           "    upstream:\n");
    /* Listener b asks for none. */
    const char *b = strstr(r.out.data, "  - name: gw-b\n");
    assert_non_null(b);
    assert_lacks(b, "client_certificate");
    assert_lacks(r.d, "ConfigMap ns/clients-ca: not used");
    assert_int_equal(tg_gwapi_warnings(r.g), 0);
    done(&r);

    /* A Secret in another namespace, mode AllowInsecureFallback: optional, with warnings. */
    run(&r, NULL, "",
        "        frontendValidation:\n"
        "          mode: AllowInsecureFallback\n"
        "          caCertificateRefs: [{ group: \"\", kind: Secret, name: ca, namespace: pki }]\n",
        "");
    assert_int_equal(r.rc, TG_OK);
    assert_has(r.out.data, "      # CA: Secret pki/ca, key ca.crt, mounted at "
                           "/etc/tlsgate/certs/pki/ca/\n"
                           "      client_certificate:\n"
                           "        mode: optional\n"
                           "        ca: { filename: /etc/tlsgate/certs/pki/ca/ca.crt }\n");
    assert_has(r.d, "t.yaml:13:17: warning: Gateway ns/gw: "
                    "spec.listeners[0].tls.frontendValidation.mode: AllowInsecureFallback becomes "
                    "mode optional: a client without a certificate gets in, but one whose "
                    "certificate does not verify is refused\n");
    assert_has(r.d, "t.yaml:14:31: warning: Gateway ns/gw: "
                    "spec.listeners[0].tls.frontendValidation.caCertificateRefs[0]: a Secret in "
                    "namespace pki needs a ReferenceGrant there (not checked)\n");
    done(&r);
}

/* What frontendValidation cannot become: each refused with its position. */
static void test_frontend_refused(void **state)
{
    (void)state;
    static const struct {
        const char *tls, *tail, *diag;
    } cases[] = {
        {"        frontendValidation:\n"
         "          caCertificateRefs:\n"
         "            - { group: \"\", kind: ConfigMap, name: one }\n"
         "            - { group: \"\", kind: ConfigMap, name: two }\n",
         "",
         "t.yaml:15:15: error: Gateway ns/gw: "
         "spec.listeners[0].tls.frontendValidation.caCertificateRefs[1]: tlsgate reads one CA "
         "file per listener (client_certificate.ca): put every CA certificate into the ca.crt of "
         "one ConfigMap and refer to it alone\n"},
        {"        frontendValidation:\n"
         "          caCertificateRefs: [{ group: cert-manager.io, kind: Certificate, name: x }]\n",
         "",
         "t.yaml:13:31: error: Gateway ns/gw: "
         "spec.listeners[0].tls.frontendValidation.caCertificateRefs[0]: kind "
         "cert-manager.io/Certificate: only a ConfigMap or a Secret (core group) holding ca.crt "
         "is understood\n"},
        {"        frontendValidation:\n"
         "          caCertificateRefs: [{ group: \"\", kind: ConfigMap }]\n",
         "",
         "t.yaml:13:31: error: Gateway ns/gw: "
         "spec.listeners[0].tls.frontendValidation.caCertificateRefs[0]: missing name: which "
         "ConfigMap holds the CA?\n"},
        {"        frontendValidation: { caCertificateRefs: [] }\n", "",
         "t.yaml:12:50: error: Gateway ns/gw: "
         "spec.listeners[0].tls.frontendValidation.caCertificateRefs: expected at least one "
         "reference to a ConfigMap or Secret holding ca.crt\n"},
        {"        frontendValidation:\n"
         "          mode: Sometimes\n"
         "          caCertificateRefs: [{ group: \"\", kind: ConfigMap, name: clients-ca }]\n",
         "",
         "t.yaml:13:17: error: Gateway ns/gw: spec.listeners[0].tls.frontendValidation.mode: "
         "'Sometimes': expected AllowValidOnly or AllowInsecureFallback\n"},
        {"        frontendValidation:\n"
         "          caCertificateRefs: [{ group: \"\", kind: ConfigMap, name: clients-ca }]\n",
         "---\napiVersion: v1\nkind: ConfigMap\nmetadata: { name: clients-ca, namespace: ns }\n"
         "data: { ca.pem: x }\n",
         "t.yaml:23:1: error: ConfigMap ns/clients-ca: data: no key ca.crt: tlsgate reads the CA "
         "certificates (PEM) from the file ca.crt of the mounted ConfigMap\n"},
        {"        frontendValidation:\n"
         "          caCertificateRefs: [{ group: \"\", kind: ConfigMap, name: s }]\n",
         "",
         "t.yaml:11:27: error: Gateway ns/gw: spec.listeners[0].tls.certificateRefs[0]: Secret "
         "ns/s and the client CA's ConfigMap of the same name would both be mounted at "
         "/etc/tlsgate/certs/ns/s/: rename one\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct run r;
        run(&r, NULL, "", cases[i].tls, cases[i].tail);
        if (r.rc != TG_ECONFIG)
            fail_msg("case %zu: converted:\n%s%s", i, r.d, r.out.data);
        assert_has(r.d, cases[i].diag);
        done(&r);
    }
}

static const char ctp_head[] = "---\n"
                               "apiVersion: gateway.envoyproxy.io/v1alpha1\n"
                               "kind: ClientTrafficPolicy\n"
                               "metadata: { name: mtls, namespace: ns }\n"
                               "spec:\n";

/* run() with listener a's extra tls lines (ltls) and, after the Gateway, a
 * ClientTrafficPolicy ns/mtls with spec, the CA ConfigMap and more. */
static void run_ctp(struct run *r, const char *ltls, const char *spec, const char *more)
{
    size_t n = strlen(ctp_head) + strlen(spec) + strlen(more) + strlen(ca_cm) + 1;
    char *t = malloc(n);
    assert_non_null(t);
    snprintf(t, n, "%s%s%s%s", ctp_head, spec, ca_cm, more);
    run(r, NULL, "", ltls, t);
    free(t);
}

/* A ClientTrafficPolicy: every listener of the Gateway; optional; other fields said. */
static void test_client_traffic_policy(void **state)
{
    (void)state;
    struct run r;
    run_ctp(&r, "",
            "  targetRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: gw }]\n"
            "  tcpKeepalive: {}\n"
            "  tls:\n"
            "    minVersion: \"1.3\"\n"
            "    clientValidation:\n"
            "      optional: true\n"
            "      caCertificateRefs: [{ kind: ConfigMap, name: clients-ca }]\n",
            "");
    assert_int_equal(r.rc, TG_OK);
    assert_int_equal(tg_gwapi_listeners(r.g), 2);
    const char *block = "      # from ClientTrafficPolicy ns/mtls\n"
                        "      # CA: ConfigMap ns/clients-ca, key ca.crt, mounted at "
                        "/etc/tlsgate/certs/ns/clients-ca/\n"
                        "      client_certificate:\n"
                        "        mode: optional\n"
                        "        ca: { filename: /etc/tlsgate/certs/ns/clients-ca/ca.crt }\n";
    const char *first = strstr(r.out.data, block);
    assert_non_null(first);
    assert_non_null(strstr(first + 1, block)); /* listener b too */
    assert_has(r.d, "t.yaml:26:3: warning: ClientTrafficPolicy ns/mtls: spec: field "
                    "'tcpKeepalive' is not converted (tlsgate gateway-api converts a "
                    "ClientTrafficPolicy's tls.clientValidation only): ignored\n");
    assert_has(r.d, "t.yaml:28:5: warning: ClientTrafficPolicy ns/mtls: spec.tls: field "
                    "'minVersion' is not converted: set it in tlsgate's listener tls "
                    "(docs/CONFIG.md): ignored\n");
    assert_int_equal(tg_gwapi_warnings(r.g), 2);
    done(&r);

    /* targetRef (singular), sectionName b: only listener b; the default kind is Secret. */
    run_ctp(&r, "",
            "  targetRef: { group: gateway.networking.k8s.io, kind: Gateway, name: gw,"
            " sectionName: b }\n"
            "  tls: { clientValidation: { caCertificateRefs: [{ name: ca-secret }] } }\n",
            "");
    assert_int_equal(r.rc, TG_OK);
    const char *b = strstr(r.out.data, "  - name: gw-b\n");
    assert_non_null(b);
    assert_has(b, "        mode: require\n"
                  "        ca: { filename: /etc/tlsgate/certs/ns/ca-secret/ca.crt }\n");
    size_t before_b = (size_t)(b - r.out.data);
    char *head = strndup(r.out.data, before_b);
    assert_non_null(head);
    assert_lacks(head, "client_certificate");
    free(head);
    /* The ConfigMap is not referred to by anything now. */
    assert_has(r.d, "warning: ConfigMap ns/clients-ca: not used: no converted listener takes "
                    "its ca.crt as the client CA\n");
    done(&r);

    /* A policy for another Gateway: not used. */
    run_ctp(&r, "",
            "  targetRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: other }]\n"
            "  tls: { clientValidation: { caCertificateRefs: [{ kind: ConfigMap, name: "
            "clients-ca }] } }\n",
            "");
    assert_int_equal(r.rc, TG_OK);
    assert_lacks(r.out.data, "client_certificate");
    assert_has(r.d, "t.yaml:21:1: warning: ClientTrafficPolicy ns/mtls: not used: it targets no "
                    "converted listener of a Gateway in the input\n");
    done(&r);
}

/* ClientTrafficPolicies and frontendValidation that disagree, and what a policy cannot be. */
static void test_policy_refused(void **state)
{
    (void)state;
    static const char fv[] =
        "        frontendValidation:\n"
        "          caCertificateRefs: [{ group: \"\", kind: ConfigMap, name: clients-ca }]\n";
    static const char gw_ref[] =
        "  targetRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: gw }]\n";
    struct run r;

    /* The same CA and mode from both: fine. */
    char spec[600];
    snprintf(spec, sizeof(spec),
             "%s  tls: { clientValidation: { caCertificateRefs: [{ kind: ConfigMap, name: "
             "clients-ca }] } }\n",
             gw_ref);
    run_ctp(&r, fv, spec, "");
    assert_int_equal(r.rc, TG_OK);
    assert_has(r.out.data, "      # from Gateway ns/gw spec.listeners[0].tls.frontendValidation\n");
    assert_has(r.out.data, "      # from ClientTrafficPolicy ns/mtls\n"); /* listener b */
    done(&r);

    /* optional from the policy, required by the listener: refused. */
    snprintf(spec, sizeof(spec),
             "%s  tls: { clientValidation: { optional: true, caCertificateRefs: [{ kind: "
             "ConfigMap, name: clients-ca }] } }\n",
             gw_ref);
    run_ctp(&r, fv, spec, "");
    assert_int_equal(r.rc, TG_ECONFIG);
    assert_has(r.d, "t.yaml:7:7: error: Gateway ns/gw: spec.listeners[0]: listener a: client "
                    "certificates: Gateway ns/gw spec.listeners[0].tls.frontendValidation asks "
                    "for mode require with the CA of ConfigMap ns/clients-ca, ClientTrafficPolicy "
                    "ns/mtls for mode optional with the CA of ConfigMap ns/clients-ca: tlsgate "
                    "applies one: make them agree\n");
    done(&r);

    /* Two policies on the whole Gateway with different CAs. */
    snprintf(spec, sizeof(spec),
             "%s  tls: { clientValidation: { caCertificateRefs: [{ kind: ConfigMap, name: "
             "clients-ca }] } }\n",
             gw_ref);
    run_ctp(&r, "", spec,
            "---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: ClientTrafficPolicy\n"
            "metadata: { name: mtls2, namespace: ns }\nspec:\n"
            "  targetRef: { group: gateway.networking.k8s.io, kind: Gateway, name: gw }\n"
            "  tls: { clientValidation: { caCertificateRefs: [{ name: other }] } }\n");
    assert_int_equal(r.rc, TG_ECONFIG);
    assert_has(r.d, "t.yaml:33:1: error: ClientTrafficPolicy ns/mtls2: spec.tls.clientValidation: "
                    "ClientTrafficPolicy ns/mtls sets other client certificates for ns/gw "
                    "listener a: tlsgate cannot tell which applies: make them agree\n");
    done(&r);

    /* Checks tlsgate does not make, an optional that is not a boolean, no target. */
    run_ctp(&r, "",
            "  tls:\n"
            "    clientValidation:\n"
            "      optional: maybe\n"
            "      subjectAltNames: { dnsNames: [a.example] }\n"
            "      caCertificateRefs: [{ kind: ConfigMap, name: clients-ca }]\n",
            "");
    assert_int_equal(r.rc, TG_ECONFIG);
    assert_has(r.d, "t.yaml:28:7: error: ClientTrafficPolicy ns/mtls: spec.tls.clientValidation: "
                    "'subjectAltNames' is not converted: tlsgate would accept client certificates "
                    "the policy refuses\n");
    assert_has(r.d, "t.yaml:27:17: error: ClientTrafficPolicy ns/mtls: "
                    "spec.tls.clientValidation.optional: expected true or false\n");
    assert_has(r.d, "t.yaml:25:3: error: ClientTrafficPolicy ns/mtls: spec.targetRefs: missing: "
                    "which Gateway asks for client certificates? (targetRefs, targetRef or "
                    "targetSelectors)\n");
    done(&r);

    /* A policy with a bad reference makes its Gateway's conversion fail (no output). */
    snprintf(spec, sizeof(spec),
             "%s  tls: { clientValidation: { caCertificateRefs: [{ kind: Certificate, name: x "
             "}] } }\n",
             gw_ref);
    run_ctp(&r, "", spec, "");
    assert_int_equal(r.rc, TG_ECONFIG);
    assert_has(r.d, "error: ClientTrafficPolicy ns/mtls: "
                    "spec.tls.clientValidation.caCertificateRefs[0]: kind Certificate: only a "
                    "ConfigMap or a Secret (core group) holding ca.crt is understood\n");
    done(&r);
}

/* A second Gateway, ns/edge labelled tier: edge, listener e on 7443. */
static const char edge_gw[] =
    "---\n"
    "apiVersion: gateway.networking.k8s.io/v1\n"
    "kind: Gateway\n"
    "metadata: { name: edge, namespace: ns, labels: { tier: edge, zone: a } }\n"
    "spec:\n"
    "  gatewayClassName: c\n"
    "  listeners:\n"
    "    - { name: e, protocol: TLS, port: 7443, tls: { certificateRefs: [{ name: s }] } }\n"
    "---\n"
    "apiVersion: gateway.networking.k8s.io/v1alpha2\n"
    "kind: TCPRoute\n"
    "metadata: { name: r2, namespace: ns }\n"
    "spec:\n"
    "  parentRefs: [{ name: edge }]\n"
    "  rules: [{ backendRefs: [{ name: be, port: 9000 }] }]\n";

static const char cv_cm[] =
    "  tls: { clientValidation: { caCertificateRefs: [{ kind: ConfigMap, name: clients-ca }] } }\n";

/* Convert the Gateways with a policy whose targets are selectors (the CA
 * ConfigMap's clientValidation after them), and Gateway ns/edge. */
static void run_selectors(struct run *r, const char *selectors)
{
    size_t n = strlen(selectors) + sizeof(cv_cm);
    char *spec = malloc(n);
    assert_non_null(spec);
    snprintf(spec, n, "%s%s", selectors, cv_cm);
    run_ctp(r, "", spec, edge_gw);
    free(spec);
}

/* spec.targetSelectors: the Gateways whose labels match, in the policy's namespace. */
static void test_target_selectors(void **state)
{
    (void)state;
    struct run r;

    /* matchLabels tier: edge selects ns/edge only. */
    run_selectors(&r, "  targetSelectors: [{ group: gateway.networking.k8s.io, kind: Gateway, "
                      "matchLabels: { tier: edge } }]\n");
    if (r.rc != TG_OK)
        fail_msg("not converted:\n%s", r.d);
    assert_int_equal(tg_gwapi_listeners(r.g), 3);
    const char *e = strstr(r.out.data, "  - name: edge-e\n");
    assert_non_null(e);
    char *before = strndup(r.out.data, (size_t)(e - r.out.data));
    assert_non_null(before);
    assert_lacks(before, "client_certificate"); /* gw-a, gw-b */
    free(before);
    assert_has(e, "      # from ClientTrafficPolicy ns/mtls\n");
    assert_has(e, "        mode: require\n");
    done(&r);

    /* Every label must match; an empty matchLabels selects every Gateway. */
    run_selectors(&r,
                  "  targetSelectors: [{ kind: Gateway, matchLabels: { tier: edge, zone: b } }]\n");
    assert_int_equal(r.rc, TG_OK);
    assert_lacks(r.out.data, "client_certificate");
    assert_has(r.d, "warning: ClientTrafficPolicy ns/mtls: not used: it targets no converted "
                    "listener of a Gateway in the input\n");
    done(&r);
    run_selectors(&r, "  targetSelectors: [{ kind: Gateway }]\n");
    assert_int_equal(r.rc, TG_OK);
    size_t n = 0;
    for (const char *p = r.out.data; (p = strstr(p, "client_certificate:")) != NULL; p++)
        n++;
    assert_int_equal(n, 3);
    done(&r);

    /* Another kind: said and ignored; matchExpressions and bad labels: refused. */
    run_selectors(&r, "  targetSelectors: [{ kind: Service, matchLabels: {} }]\n");
    assert_int_equal(r.rc, TG_OK);
    assert_lacks(r.out.data, "client_certificate");
    assert_has(r.d, "t.yaml:25:21: warning: ClientTrafficPolicy ns/mtls: spec.targetSelectors[0]: "
                    "selects kind Service, not Gateways: tlsgate gateway-api converts Gateways "
                    "only: ignored\n");
    done(&r);
    run_selectors(&r, "  targetSelectors:\n"
                      "    - kind: Gateway\n"
                      "      matchExpressions: [{ key: tier, operator: In, values: [edge] }]\n"
                      "    - { kind: Gateway, matchLabels: { tier: [edge] } }\n");
    assert_int_equal(r.rc, TG_ECONFIG);
    assert_has(r.d, "t.yaml:27:25: error: ClientTrafficPolicy ns/mtls: spec.targetSelectors[0]: "
                    "matchExpressions are not evaluated by tlsgate gateway-api: select the "
                    "Gateways with matchLabels or name them in targetRefs\n");
    assert_has(r.d, "error: ClientTrafficPolicy ns/mtls: spec.targetSelectors[1]: matchLabels: "
                    "expected label names and values (strings)\n");
    done(&r);
}

/* Gateway spec.tls.frontend: default for every listener, perPort overrides by port. */
static void test_gateway_frontend(void **state)
{
    (void)state;
    struct run r;
    run(&r, NULL,
        "  tls:\n"
        "    backend: {}\n"
        "    frontend:\n"
        "      default:\n"
        "        validation:\n"
        "          caCertificateRefs: [{ group: \"\", kind: ConfigMap, name: clients-ca }]\n"
        "      perPort:\n"
        "        - port: 9443\n"
        "          tls:\n"
        "            validation:\n"
        "              mode: AllowInsecureFallback\n"
        "              caCertificateRefs: [{ group: \"\", kind: ConfigMap, name: clients-ca }]\n",
        "", ca_cm);
    assert_int_equal(r.rc, TG_OK);
    const char *b = strstr(r.out.data, "  - name: gw-b\n");
    assert_non_null(b);
    assert_has(r.out.data, "      # from Gateway ns/gw spec.tls.frontend.default.validation\n"
                           "      # CA: ConfigMap ns/clients-ca, key ca.crt, mounted at "
                           "/etc/tlsgate/certs/ns/clients-ca/\n"
                           "      client_certificate:\n"
                           "        mode: require\n");
    assert_has(b, "      # from Gateway ns/gw spec.tls.frontend.perPort[0].tls.validation\n");
    assert_has(b, "        mode: optional\n");
    assert_has(r.d, "t.yaml:7:14: warning: Gateway ns/gw: spec.tls.backend: the client "
                    "certificate for backends: tlsgate forwards plaintext to the upstream: "
                    "ignored\n");
    done(&r);
}

/* The output loads with tlsgate's configuration loader, the CA where the converter says. */
static void test_output_loads(void **state)
{
    (void)state;
    char certs[512], path[800];
    snprintf(certs, sizeof(certs), "%s/certs", tg_test_tmpdir());
    mkdir(certs, 0700);
    snprintf(path, sizeof(path), "%s/ns", certs);
    mkdir(path, 0700);
    char *cert = NULL, *key = NULL, *ca = NULL, *cakey = NULL;
    tg_test_make_cert("EC:P-256", "gw.example", &cert, &key);
    tg_test_make_cert("EC:P-256", "Clients CA", &ca, &cakey);
    const char *files[][2] = {{"s", "tls.crt"}, {"s", "tls.key"}, {"clients-ca", "ca.crt"}};
    const char *pems[] = {cert, key, ca};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/ns/%s", certs, files[i][0]);
        mkdir(path, 0700);
        snprintf(path, sizeof(path), "%s/ns/%s/%s", certs, files[i][0], files[i][1]);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(pems[i], f);
        fclose(f);
    }
    free(cert);
    free(key);
    free(ca);
    OPENSSL_cleanse(cakey, strlen(cakey));
    free(cakey);

    struct run r;
    run(&r, certs, "",
        "        frontendValidation:\n"
        "          caCertificateRefs: [{ group: \"\", kind: ConfigMap, name: clients-ca }]\n",
        ca_cm);
    assert_int_equal(r.rc, TG_OK);
    const char *file = tg_test_write_file("converted-mtls.yaml", r.out.data, r.out.len);
    tg_config_set_known_providers(providers);
    struct tg_config *cfg = NULL;
    char err[TG_CONFIG_ERRLEN] = "";
    if (tg_config_load_file(file, &cfg, err, sizeof(err)) != TG_OK)
        fail_msg("%s\n%s", err, r.out.data);
    assert_int_equal(cfg->n_listeners, 2);
    tg_config_free(cfg);
    done(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frontend_validation),   cmocka_unit_test(test_frontend_refused),
        cmocka_unit_test(test_client_traffic_policy), cmocka_unit_test(test_policy_refused),
        cmocka_unit_test(test_gateway_frontend),      cmocka_unit_test(test_output_loads),
        cmocka_unit_test(test_target_selectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
