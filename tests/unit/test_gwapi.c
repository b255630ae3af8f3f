/*
 * Unit tests of src/k8s/tg_gwapi*.c: the private key provider guide's own
 * objects and the "TLS Termination for TCP" objects it builds on
 * (tests/data/gateway-api), what cannot be converted
 * (tests/data/gateway-api/unconvertible), and edge cases of the input.
 */
#include "tg_test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config/tg_config.h"
#include "core/tg_buf.h"
#include "k8s/tg_gwapi.h"

static const char *const providers[] = {"software", "deferred", "cryptomb", "qat", NULL};

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

/* Convert test-data files (NULL-terminated); returns the status, fills out and *gp. */
static int convert_files(const struct tg_gwapi_opts *opts, const char *const *files,
                         struct tg_buf *out, struct tg_gwapi **gp)
{
    struct tg_gwapi *g = NULL;
    assert_int_equal(tg_gwapi_new(opts, &g), TG_OK);
    for (size_t i = 0; files[i] != NULL; i++) {
        size_t len;
        char *buf = slurp(tg_test_data(files[i]), &len);
        int rc = tg_gwapi_add(g, files[i], buf, len);
        free(buf);
        assert_true(rc == TG_OK || rc == TG_ECONFIG);
    }
    int rc = tg_gwapi_convert(g, out);
    *gp = g;
    return rc;
}

static int convert_text(const struct tg_gwapi_opts *opts, const char *text, struct tg_buf *out,
                        struct tg_gwapi **gp)
{
    struct tg_gwapi *g = NULL;
    assert_int_equal(tg_gwapi_new(opts, &g), TG_OK);
    int rc = tg_gwapi_add(g, "t.yaml", text, strlen(text));
    if (rc == TG_OK)
        rc = tg_gwapi_convert(g, out);
    *gp = g;
    return rc;
}

static void opts_init(struct tg_gwapi_opts *o)
{
    tg_gwapi_opts_default(o);
    o->providers = providers;
}

/* The guide's QAT step on top of TLS termination for TCP. */
static void test_seed_qat(void **state)
{
    (void)state;
    struct tg_gwapi_opts o;
    opts_init(&o);
    const char *files[] = {"gateway-api/tls-termination-tcp.yaml",
                           "gateway-api/key-provider-qat.yaml", NULL};
    struct tg_buf out = TG_BUF_INIT;
    struct tg_gwapi *g;
    assert_int_equal(convert_files(&o, files, &out, &g), TG_OK);
    const char *d = tg_gwapi_diagnostics(g);
    assert_int_equal(tg_gwapi_errors(g), 0);
    assert_int_equal(tg_gwapi_listeners(g), 1);
    assert_has(out.data, "concurrency: 1 # EnvoyProxy envoy-gateway-system/custom-proxy-config");
    assert_has(out.data, "admin: { address: 0.0.0.0:9901 }");
    assert_has(out.data, "  - name: eg-tls\n    address: 0.0.0.0:8443\n");
    assert_has(
        out.data,
        "        - certificate_chain: { filename: "
        "/etc/tlsgate/certs/default/example-cert/tls.crt }\n"
        "          private_key: { filename: /etc/tlsgate/certs/default/example-cert/tls.key }\n"
        "          server_names: [www.example.com]\n");
    assert_has(out.data, "          private_key_provider:\n            provider_name: qat\n"
                         "            typed_config: { poll_delay: 0.001s }\n"
                         "            fallback: true\n");
    assert_has(out.data,
               "      endpoints: [ { address: backend.default.svc.cluster.local:3000 } ]\n");
    assert_has(out.data, "TCPRoute default/tcp-app-1 -> Service default/backend port 3000");
    /* Nothing dropped silently: what was not converted is said. */
    assert_has(d, "tls-termination-tcp.yaml:5:1: warning: GatewayClass eg: replaced by the same "
                  "object later in the input (gateway-api/key-provider-qat.yaml:4)");
    assert_has(d, "warning: EnvoyProxy envoy-gateway-system/custom-proxy-config: spec.provider: ");
    assert_has(d, "Gateway default/eg: spec.listeners[0].hostname: ");
    /* The placeholder key is replaced by the Secret's (the guide's copy op). */
    assert_lacks(d, "private_key");
    assert_lacks(out.data, "abcd");
    assert_int_equal(tg_gwapi_warnings(g), 3);
    tg_buf_free(&out);
    tg_gwapi_free(g);
}

/* The CryptoMB step, with the Envoy Gateway ConfigMap thrown in. */
static void test_seed_cryptomb(void **state)
{
    (void)state;
    struct tg_gwapi_opts o;
    opts_init(&o);
    const char *files[] = {"gateway-api/tls-termination-tcp.yaml",
                           "gateway-api/key-provider-cryptomb.yaml",
                           "gateway-api/envoy-gateway-config.yaml", NULL};
    struct tg_buf out = TG_BUF_INIT;
    struct tg_gwapi *g;
    assert_int_equal(convert_files(&o, files, &out, &g), TG_OK);
    const char *d = tg_gwapi_diagnostics(g);
    assert_has(out.data, "            provider_name: cryptomb\n");
    assert_has(out.data, "            fallback: true\n");
    /* The class of the upstream example has no parametersRef: the
     * EnvoyProxy is reported, its concurrency not taken. */
    assert_lacks(out.data, "concurrency:");
    assert_has(d, "EnvoyProxy envoy-gateway-system/custom-proxy-config: not used: no GatewayClass");
    assert_has(d, "ConfigMap envoy-gateway-system/envoy-gateway-config: not used");
    tg_buf_free(&out);
    tg_gwapi_free(g);
}

/* The output loads with tlsgate's configuration loader (certificates at the mapped paths). */
static void test_output_loads(void **state)
{
    (void)state;
    char certs[512], dir[600], path[700];
    snprintf(certs, sizeof(certs), "%s/certs", tg_test_tmpdir());
    snprintf(dir, sizeof(dir), "%s/default", certs);
    mkdir(certs, 0700);
    mkdir(dir, 0700);
    snprintf(dir, sizeof(dir), "%s/default/example-cert", certs);
    mkdir(dir, 0700);
    char *cert = NULL, *key = NULL;
    tg_test_make_cert("RSA:2048", "www.example.com", &cert, &key);
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, i == 0 ? "tls.crt" : "tls.key");
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(i == 0 ? cert : key, f);
        fclose(f);
    }
    free(cert);
    free(key);

    struct tg_gwapi_opts o;
    opts_init(&o);
    o.cert_dir = certs;
    o.upstream = TG_GWAPI_UPSTREAM_CLUSTER_IP;
    const char *files[] = {"gateway-api/tls-termination-tcp.yaml",
                           "gateway-api/backend-service-kubectl.yaml",
                           "gateway-api/key-provider-qat.yaml", NULL};
    struct tg_buf out = TG_BUF_INIT;
    struct tg_gwapi *g;
    assert_int_equal(convert_files(&o, files, &out, &g), TG_OK);
    assert_has(out.data, "      address: 10.96.18.7:3000\n");
    assert_has(tg_gwapi_diagnostics(g), "Service default/backend: replaced by the same object");
    const char *file = tg_test_write_file("converted.yaml", out.data, out.len);
    tg_config_set_known_providers(providers);
    struct tg_config *cfg = NULL;
    char err[TG_CONFIG_ERRLEN] = "";
    int rc = tg_config_load_file(file, &cfg, err, sizeof(err));
    if (rc != TG_OK)
        fail_msg("%s\n%s", err, out.data);
    assert_int_equal(cfg->n_listeners, 1);
    tg_config_free(cfg);
    tg_buf_free(&out);
    tg_gwapi_free(g);
}

struct negative {
    const char *file;
    const char *diag;
};

static void test_unconvertible(void **state)
{
    (void)state;
    static const struct negative cases[] = {
        {"gateway-api/unconvertible/missing-certificate-refs.yaml",
         "missing-certificate-refs.yaml:14:9: error: Gateway default/eg: "
         "spec.listeners[0].tls.certificateRefs: mode Terminate needs at least one certificate"},
        {"gateway-api/unconvertible/passthrough.yaml",
         "passthrough.yaml:14:15: error: Gateway default/eg: spec.listeners[0].tls.mode: "
         "Passthrough: tlsgate terminates TLS"},
        {"gateway-api/unconvertible/httproute.yaml",
         "error: HTTPRoute default/backend: attached to default/eg listener tls: HTTPRoute "
         "routing is not supported"},
        {"gateway-api/unconvertible/unknown-provider.yaml",
         "unknown-provider.yaml:50:26: error: EnvoyPatchPolicy default/key-provider-patch-policy: "
         "spec.jsonPatches[0].operation.value.provider_name: unknown provider 'hsm' (known: "
         "software, deferred, cryptomb, qat)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tg_gwapi_opts o;
        opts_init(&o);
        const char *files[] = {cases[i].file, NULL};
        struct tg_buf out = TG_BUF_INIT;
        struct tg_gwapi *g;
        assert_int_equal(convert_files(&o, files, &out, &g), TG_ECONFIG);
        assert_true(tg_gwapi_errors(g) >= 1);
        assert_has(tg_gwapi_diagnostics(g), cases[i].diag);
        tg_buf_free(&out);
        tg_gwapi_free(g);
    }
}

static const char gw_head[] = "apiVersion: gateway.networking.k8s.io/v1\n"
                              "kind: Gateway\n"
                              "metadata: { name: gw, namespace: ns }\n"
                              "spec:\n"
                              "  gatewayClassName: c\n"
                              "  listeners:\n";
static const char route[] = "---\n"
                            "apiVersion: gateway.networking.k8s.io/v1alpha2\n"
                            "kind: TCPRoute\n"
                            "metadata: { name: r, namespace: ns }\n"
                            "spec:\n"
                            "  parentRefs: [{ name: gw }]\n"
                            "  rules: [{ backendRefs: [{ name: be, port: 9000 }] }]\n";

static char *compose(const char *listeners, const char *tail)
{
    size_t n = strlen(gw_head) + strlen(listeners) + strlen(tail) + 1;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, "%s%s%s", gw_head, listeners, tail);
    return s;
}

static void test_edges(void **state)
{
    (void)state;
    struct tg_gwapi_opts o;
    opts_init(&o);
    struct tg_buf out = TG_BUF_INIT;
    struct tg_gwapi *g;

    /* A wildcard hostname needs quoting; a high port has no offset; options ignored. */
    char *y = compose("    - name: a\n      protocol: TLS\n      port: 9443\n"
                      "      hostname: \"*.example.org\"\n"
                      "      tls: { mode: Terminate, certificateRefs: [{ name: s }],"
                      " options: { x: y } }\n",
                      route);
    assert_int_equal(convert_text(&o, y, &out, &g), TG_OK);
    assert_has(out.data, "server_names: [\"*.example.org\"]");
    assert_has(out.data, "address: 0.0.0.0:9443\n");
    assert_has(out.data, "endpoints: [ { address: be.ns.svc.cluster.local:9000 } ]\n");
    assert_has(tg_gwapi_diagnostics(g), "spec.listeners[0].tls.options: implementation-specific");
    tg_buf_free(&out);
    tg_gwapi_free(g);
    free(y);

    /* Two listeners on one port; an HTTPS listener is not converted. */
    y = compose(
        "    - { name: a, protocol: TLS, port: 443, tls: { certificateRefs: [{ name: s }] } }\n"
        "    - { name: b, protocol: TLS, port: 443, tls: { certificateRefs: [{ name: s }] } }\n"
        "    - { name: h, protocol: HTTPS, port: 8443 }\n",
        route);
    assert_int_equal(convert_text(&o, y, &out, &g), TG_ECONFIG);
    assert_has(tg_gwapi_diagnostics(g), "port 8443 is already tlsgate listener gw-a");
    assert_has(tg_gwapi_diagnostics(g), "listener 'h', protocol 'HTTPS': not converted");
    tg_buf_free(&out);
    tg_gwapi_free(g);
    free(y);

    /* Only non-TLS listeners: nothing to serve. */
    y = compose("    - { name: h, protocol: HTTP, port: 80 }\n", route);
    assert_int_equal(convert_text(&o, y, &out, &g), TG_ECONFIG);
    assert_has(tg_gwapi_diagnostics(g), "no TLS listener in Terminate mode");
    tg_buf_free(&out);
    tg_gwapi_free(g);
    free(y);

    /* Client certificate validation with a reference without a kind (test_gwapi_mtls.c
     * has the rest). */
    y = compose("    - { name: a, protocol: TLS, port: 443, tls: { certificateRefs: [{ name: s }],"
                " frontendValidation: { caCertificateRefs: [{ name: ca }] } } }\n",
                route);
    assert_int_equal(convert_text(&o, y, &out, &g), TG_ECONFIG);
    assert_has(tg_gwapi_diagnostics(g),
               "t.yaml:7:125: error: Gateway ns/gw: "
               "spec.listeners[0].tls.frontendValidation.caCertificateRefs[0]: kind (none): only a "
               "ConfigMap or a Secret (core group) holding ca.crt is understood\n");
    tg_buf_free(&out);
    tg_gwapi_free(g);
    free(y);

    /* IPv6 cluster IP, no offset, no admin, a v1 List, an unknown field. */
    o.upstream = TG_GWAPI_UPSTREAM_CLUSTER_IP;
    o.port_offset = 0;
    o.admin = NULL;
    y = compose(
        "    - { name: a, protocol: TLS, port: 443, tls: { certificateRefs: [{ name: s }] },"
        " colour: blue }\n",
        "---\napiVersion: v1\nkind: List\nitems:\n"
        "  - apiVersion: gateway.networking.k8s.io/v1alpha2\n"
        "    kind: TCPRoute\n"
        "    metadata: { name: r, namespace: ns }\n"
        "    spec:\n"
        "      parentRefs: [{ name: gw, port: 443 }]\n"
        "      rules: [{ backendRefs: [{ name: be, port: 9000 }, { name: be2, port: 1 }] }]\n"
        "  - apiVersion: v1\n"
        "    kind: Service\n"
        "    metadata: { name: be, namespace: ns }\n"
        "    spec: { clusterIP: 'fd00::12', ports: [{ port: 9000 }] }\n");
    assert_int_equal(convert_text(&o, y, &out, &g), TG_OK);
    assert_has(out.data, "address: \"[fd00::12]:9000\"\n");
    assert_has(out.data, "address: 0.0.0.0:443\n");
    assert_lacks(out.data, "admin:");
    assert_has(tg_gwapi_diagnostics(g), "spec.listeners[0]: field 'colour' is not supported");
    assert_has(tg_gwapi_diagnostics(g), "only the first backend gets traffic");
    tg_buf_free(&out);
    tg_gwapi_free(g);
    free(y);
}

static void test_bad_input(void **state)
{
    (void)state;
    struct tg_gwapi_opts o;
    opts_init(&o);
    struct tg_buf out = TG_BUF_INIT;
    struct tg_gwapi *g;

    assert_int_equal(convert_text(&o, "a: [b\n", &out, &g), TG_ECONFIG);
    assert_has(tg_gwapi_diagnostics(g), "t.yaml: error: line ");
    assert_has(tg_gwapi_diagnostics(g), "invalid YAML");
    tg_buf_free(&out);
    tg_gwapi_free(g);

    assert_int_equal(convert_text(&o, "- 1\n---\nfoo: bar\n---\n", &out, &g), TG_ECONFIG);
    assert_has(tg_gwapi_diagnostics(g), "not a mapping");
    assert_has(tg_gwapi_diagnostics(g), "not a Kubernetes object");
    assert_has(tg_gwapi_diagnostics(g), "error: no Gateway (gateway.networking.k8s.io)");
    tg_buf_free(&out);
    tg_gwapi_free(g);

    char deep[300];
    size_t n = 0;
    for (int i = 0; i < 100; i++)
        deep[n++] = '[';
    for (int i = 0; i < 100; i++)
        deep[n++] = ']';
    deep[n] = '\0';
    assert_int_equal(convert_text(&o, deep, &out, &g), TG_ECONFIG);
    assert_has(tg_gwapi_diagnostics(g), "nesting deeper than 64 levels");
    tg_buf_free(&out);
    tg_gwapi_free(g);

    /* An empty stream: no Gateway. */
    assert_int_equal(convert_text(&o, "", &out, &g), TG_ECONFIG);
    tg_buf_free(&out);
    tg_gwapi_free(g);

    /* Names from the input that hold a line break or a terminal escape
     * stay on their diagnostic's line, escaped (the fuzzer found a
     * ClientTrafficPolicy whose name ran onto a second line). */
    assert_int_equal(convert_text(&o,
                                  "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
                                  "  name: \"a\\nb\\x1b[2Jc\"\n",
                                  &out, &g),
                     TG_ECONFIG);
    const char *d = tg_gwapi_diagnostics(g);
    assert_has(d, "ConfigMap a\\nb\\x1b[2Jc: not used");
    size_t lines = 0;
    for (const char *p = d; *p != '\0'; p++) {
        lines += *p == '\n';
        assert_true(*p == '\n' || (unsigned char)*p >= 0x20);
    }
    assert_int_equal(lines, tg_gwapi_warnings(g) + tg_gwapi_errors(g));
    tg_buf_free(&out);
    tg_gwapi_free(g);

    /* Convert twice: refused. */
    assert_int_equal(tg_gwapi_new(&o, &g), TG_OK);
    assert_int_equal(tg_gwapi_convert(g, &out), TG_ECONFIG);
    assert_int_equal(tg_gwapi_convert(g, &out), TG_ESTATE);
    tg_buf_free(&out);
    tg_gwapi_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_qat),     cmocka_unit_test(test_seed_cryptomb),
        cmocka_unit_test(test_output_loads), cmocka_unit_test(test_unconvertible),
        cmocka_unit_test(test_edges),        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
