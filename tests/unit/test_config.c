/*
 * Unit tests for src/config's loader and schema (tg_config.c, tg_conf_yaml.c,
 * tg_conf_cursor.c, tg_conf_schema.c, tg_conf_tls.c): valid configurations
 * and their defaults, the error messages (exact FILE:LINE:COL and key paths),
 * robustness, and the embedded default configuration. The scalar parsers and
 * the typed_config helpers have their own tests (test_conf_parse.c,
 * test_conf_params.c); the demo certificate is src/tls's (test_tls_demo.c).
 */
#include "tg_test_util.h"

#include "config/tg_config.h"
#include "core/tg_log.h"
#include "core/tg_time.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/prov_ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *g_cert_pem;
static char *g_key_pem;
static char g_dir[512];

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

/* s with every "@DIR@" replaced by the test's temporary directory. */
static char *subst(const char *s)
{
    size_t dl = strlen(g_dir), n = 0;
    for (const char *p = s; (p = strstr(p, "@DIR@")) != NULL; p += 5)
        n++;
    char *out = malloc(strlen(s) + n * dl + 1);
    assert_non_null(out);
    char *o = out;
    for (const char *p = s;;) {
        const char *hit = strstr(p, "@DIR@");
        if (hit == NULL) {
            memcpy(o, p, strlen(p) + 1);
            break;
        }
        memcpy(o, p, (size_t)(hit - p));
        o += hit - p;
        memcpy(o, g_dir, dl);
        o += dl;
        p = hit + 5;
    }
    return out;
}

/* Load yaml (after subst) as a buffer named "gw.yaml". */
static int load(const char *yaml, struct tg_config **cfg, char *err, size_t errlen)
{
    char *y = subst(yaml);
    int rc = tg_config_load_buffer("gw.yaml", y, strlen(y), cfg, err, errlen);
    free(y);
    return rc;
}

static struct tg_config *load_ok(const char *yaml)
{
    struct tg_config *cfg = NULL;
    char err[TG_CONFIG_ERRLEN] = "";
    int rc = load(yaml, &cfg, err, sizeof(err));
    if (rc != TG_OK)
        print_error("unexpected error: %s\n", err);
    assert_int_equal(rc, TG_OK);
    assert_non_null(cfg);
    return cfg;
}

struct err_case {
    const char *yaml;
    const char *want; /* exact message, after subst */
};

static void check_errors(const struct err_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct tg_config *cfg = (struct tg_config *)1;
        char err[TG_CONFIG_ERRLEN] = "";
        int rc = load(cases[i].yaml, &cfg, err, sizeof(err));
        char *want = subst(cases[i].want);
        if (rc == TG_OK || strcmp(err, want) != 0)
            print_error("case %zu:\n%s\n got: %s\nwant: %s\n", i, cases[i].yaml, err, want);
        assert_int_not_equal(rc, TG_OK);
        assert_null(cfg);
        assert_string_equal(err, want);
        assert_null(strchr(err, '\n'));
        free(want);
    }
}

/* Pieces of a valid configuration; L0 is lines 1..7. */
#define CERT_FILES                                                                                 \
    "        - certificate_chain: { filename: @DIR@/certs/server.pem }\n"                          \
    "          private_key: { filename: @DIR@/certs/server.key }\n"
#define CERTS    "      certificates:\n" CERT_FILES
#define UPSTREAM "    upstream: { address: 127.0.0.1:8080 }\n"
#define L0       "listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS UPSTREAM
#define KP       "listeners[0].tls.certificates[0].private_key_provider"
#define A16      "aaaaaaaaaaaaaaaa"
#define A256     A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16

/* ------------------------------------------------------------------------ */
/* Fixtures                                                                 */

/* The provider names this test's program knows (the config module has no
 * list of its own). */
static const char *const g_providers[] = {"software", "deferred", "cryptomb", "qat", NULL};

static int group_setup(void **state)
{
    (void)state;
    tg_config_set_known_providers(g_providers);
    char path[600];
    snprintf(g_dir, sizeof(g_dir), "%s", tg_test_tmpdir());
    snprintf(path, sizeof(path), "%s/certs", g_dir);
    if (mkdir(path, 0700) != 0)
        return -1;
    snprintf(path, sizeof(path), "%s/sub", g_dir);
    if (mkdir(path, 0700) != 0)
        return -1;
    snprintf(path, sizeof(path), "%s/sub/certs", g_dir);
    if (mkdir(path, 0700) != 0)
        return -1;
    tg_test_make_cert("EC:P-256", "example.com", &g_cert_pem, &g_key_pem);
    tg_test_write_file("certs/server.pem", g_cert_pem, strlen(g_cert_pem));
    tg_test_write_file("certs/server.key", g_key_pem, strlen(g_key_pem));
    tg_test_write_file("sub/certs/server.pem", g_cert_pem, strlen(g_cert_pem));
    tg_test_write_file("sub/certs/server.key", g_key_pem, strlen(g_key_pem));
    tg_test_write_file("certs/empty.pem", "", 0);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    free(g_cert_pem);
    free(g_key_pem);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Messages                                                                 */

static void test_conf_error_format(void **state)
{
    (void)state;
    char err[TG_CONFIG_ERRLEN];
    struct tg_conf_mark m = {"gw.yaml", 12, 9};
    tg_conf_error(err, sizeof(err), &m, "a.b", "bad %s", "thing");
    assert_string_equal(err, "gw.yaml:12:9: a.b: bad thing");
    tg_conf_error(err, sizeof(err), &m, NULL, "no path");
    assert_string_equal(err, "gw.yaml:12:9: no path");
    struct tg_conf_mark m0 = {"x.yaml", 0, 0};
    tg_conf_error(err, sizeof(err), &m0, "k", "built in code");
    assert_string_equal(err, "x.yaml: k: built in code");
    tg_conf_error(err, sizeof(err), NULL, NULL, "line1\nline2");
    assert_string_equal(err, "<config>: line1?line2");
    /* Truncation never overruns. */
    char small[8];
    tg_conf_error(small, sizeof(small), &m, "a.b", "bad");
    assert_string_equal(small, "gw.yaml");
    tg_conf_error(NULL, 0, &m, "a", "ignored");
    char one[1] = {'x'};
    tg_conf_error(one, 1, &m, "a", "x");
    assert_int_equal(one[0], '\0');
}

/* ------------------------------------------------------------------------ */
/* Valid configurations                                                     */

static void test_defaults(void **state)
{
    (void)state;
    struct tg_config *cfg = load_ok(L0);
    assert_string_equal(cfg->source_name, "gw.yaml");
    assert_int_equal(cfg->concurrency, 1);
    assert_int_equal(cfg->log_level, TG_LOG_INFO);
    assert_false(cfg->has_admin);
    assert_null(cfg->admin.text);
    assert_null(cfg->state_dir);
    assert_true(cfg->limits.max_connections == 50000);
    assert_true(cfg->limits.handshake_timeout_ns == 10 * TG_NS_PER_S);
    assert_true(cfg->limits.first_byte_timeout_ns == 5 * TG_NS_PER_S);
    assert_true(cfg->limits.max_connections_per_source == 0);
    assert_int_equal(cfg->limits.per_source_ipv6_prefix, 64);
    assert_true(cfg->limits.idle_timeout_ns == 300 * TG_NS_PER_S);
    assert_true(cfg->limits.drain_timeout_ns == 30 * TG_NS_PER_S);
    assert_int_equal(cfg->limits.buffer_size, 16384);
    assert_true(cfg->reload.watch);
    assert_true(cfg->reload.debounce_ns == 200 * TG_NS_PER_MS);
    assert_int_equal(cfg->concurrency_mark.line, 0);
    assert_int_equal(cfg->n_listeners, 1);

    const struct tg_conf_listener *l = &cfg->listeners[0];
    assert_string_equal(l->name, "listener0");
    assert_string_equal(l->path, "listeners[0]");
    assert_int_equal(l->mark.line, 2);
    assert_int_equal(l->mark.col, 5);
    assert_ptr_equal(l->mark.file, cfg->source_name);
    assert_string_equal(l->addr.text, "127.0.0.1:8443");
    assert_int_equal(l->backlog, 4096);
    assert_int_equal(l->tls.min_version, TLS1_2_VERSION);
    assert_int_equal(l->tls.max_version, TLS1_3_VERSION);
    assert_true(l->tls.session_resumption);
    assert_false(l->tls.require_close_notify);
    assert_null(l->tls.alpn);
    assert_int_equal(l->tls.n_alpn, 0);
    assert_null(l->tls.cipher_list);
    assert_null(l->tls.cipher_suites);
    assert_null(l->tls.groups);
    assert_int_equal(l->tls.mark.line, 4);
    assert_string_equal(l->upstream.addr.text, "127.0.0.1:8080");
    assert_true(l->upstream.connect_timeout_ns == 5 * TG_NS_PER_S);
    assert_int_equal(l->upstream.proxy_protocol, 0);
    assert_false(l->proxy_protocol);
    assert_true(l->proxy_protocol_timeout_ns == 3 * TG_NS_PER_S);
    assert_int_equal(l->upstream.mark.line, 7);
    assert_int_equal(l->upstream.mark.col, 15);

    assert_int_equal(l->tls.n_certs, 1);
    const struct tg_conf_cert *c = &l->tls.certs[0];
    assert_string_equal(c->path, "listeners[0].tls.certificates[0]");
    assert_int_equal(c->mark.line, 5);
    assert_int_equal(c->mark.col, 11);
    assert_null(c->server_names);
    assert_int_equal(c->n_server_names, 0);
    char want[600];
    snprintf(want, sizeof(want), "%s/certs/server.pem", g_dir);
    assert_string_equal(c->chain.filename, want);
    assert_int_equal(c->chain.data_len, strlen(g_cert_pem));
    assert_memory_equal(c->chain.data, g_cert_pem, c->chain.data_len);
    assert_int_equal(c->chain.mark.line, 5);
    assert_int_equal(c->chain.mark.col, 42);
    assert_int_equal(c->private_key.data_len, strlen(g_key_pem));
    assert_memory_equal(c->private_key.data, g_key_pem, c->private_key.data_len);
    assert_int_equal(c->private_key.mark.line, 6);
    assert_int_equal(c->private_key.mark.col, 36);

    const struct tg_conf_keyprov *kp = &c->keyprov;
    assert_string_equal(kp->provider_name, "software");
    assert_true(kp->fallback);
    assert_true(kp->poll_delay_ns == TG_NS_PER_MS);
    assert_int_equal(kp->typed_config.n, 0);
    assert_string_equal(kp->path, KP);
    assert_string_equal(kp->typed_config.path, KP ".typed_config");
    assert_int_equal(kp->mark.line, 5);
    tg_config_free(cfg);
    tg_config_free(NULL);
}

static void test_full_config(void **state)
{
    (void)state;
    struct tg_config *cfg = load_ok(
        "concurrency: auto\n"
        "log_level: debug\n"
        "admin: { address: 127.0.0.1:0 }\n"
        "listeners:\n"
        "  - name: https\n"
        "    address: \"[::1]:0\"\n"
        "    backlog: 128\n"
        "    tls:\n"
        "      certificates:\n" CERT_FILES
        "          server_names: [example.com, \"*.example.org\"]\n"
        "          private_key_provider:\n"
        "            provider_name: deferred\n"
        "            fallback: false\n"
        "            typed_config:\n"
        "              \"@type\": type.example/Deferred\n"
        "              poll_delay: 0.001s\n"
        "              delay: 2ms\n"
        "              modes: [a, b]\n"
        "      min_version: TLSv1.3\n"
        "      max_version: TLSv1_3\n"
        "      alpn: [h2, http/1.1]\n"
        "      session_resumption: false\n"
        "      require_close_notify: true\n"
        "      cipher_list: ECDHE-RSA-AES128-GCM-SHA256\n"
        "      cipher_suites: TLS_AES_128_GCM_SHA256\n"
        "      groups: [X25519, P-256]\n"
        "    upstream: { address: localhost:8080, connect_timeout: 250ms, proxy_protocol: v2 }\n"
        "    proxy_protocol: true\n"
        "    proxy_protocol_timeout: 500ms\n"
        "  - name: second\n"
        "    address: 0.0.0.0:0\n"
        "    proxy_protocol: false\n"
        "    tls:\n"
        "      certificates:\n" CERT_FILES "      groups: \"X25519:P-384\"\n"
        "    upstream: { address: 127.0.0.1:8080, proxy_protocol: v1 }\n"
        "limits:\n"
        "  max_connections: 10000000\n"
        "  handshake_timeout: 1500ms\n"
        "  first_byte_timeout: 250ms\n"
        "  max_connections_per_source: 64\n"
        "  per_source_ipv6_prefix: 56\n"
        "  idle_timeout: 1h\n"
        "  drain_timeout: 1\n"
        "  buffer_size: 1024\n");
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(cfg->concurrency, ncpu < 1 ? 1 : ncpu > 256 ? 256 : ncpu);
    assert_int_equal(cfg->log_level, TG_LOG_DEBUG);
    assert_true(cfg->has_admin);
    assert_string_equal(cfg->admin.text, "127.0.0.1:0");
    assert_int_equal(cfg->n_listeners, 2);
    const struct tg_conf_listener *l = &cfg->listeners[0];
    assert_string_equal(l->name, "https");
    assert_int_equal(l->addr.ss.ss_family, AF_INET6);
    assert_int_equal(l->backlog, 128);
    assert_int_equal(l->tls.min_version, TLS1_3_VERSION);
    assert_int_equal(l->tls.max_version, TLS1_3_VERSION);
    assert_int_equal(l->tls.n_alpn, 2);
    assert_string_equal(l->tls.alpn[0], "h2");
    assert_string_equal(l->tls.alpn[1], "http/1.1");
    assert_false(l->tls.session_resumption);
    assert_true(l->tls.require_close_notify);
    assert_string_equal(l->tls.cipher_list, "ECDHE-RSA-AES128-GCM-SHA256");
    assert_string_equal(l->tls.cipher_suites, "TLS_AES_128_GCM_SHA256");
    assert_string_equal(l->tls.groups, "X25519:P-256");
    assert_string_equal(l->upstream.addr.text, "localhost:8080");
    assert_true(l->upstream.connect_timeout_ns == 250 * TG_NS_PER_MS);
    assert_int_equal(l->upstream.proxy_protocol, 2);
    assert_true(l->proxy_protocol);
    assert_true(l->proxy_protocol_timeout_ns == 500 * TG_NS_PER_MS);
    const struct tg_conf_cert *c = &l->tls.certs[0];
    assert_int_equal(c->n_server_names, 2);
    assert_string_equal(c->server_names[0], "example.com");
    assert_string_equal(c->server_names[1], "*.example.org");
    const struct tg_conf_keyprov *kp = &c->keyprov;
    assert_string_equal(kp->provider_name, "deferred");
    assert_false(kp->fallback);
    assert_true(kp->poll_delay_ns == 1000000);
    /* A block mapping starts at its first key. */
    assert_int_equal(kp->mark.line, 14);
    assert_int_equal(kp->mark.col, 13);
    /* poll_delay and @type are consumed by the config module. */
    assert_int_equal(kp->typed_config.n, 2);
    assert_string_equal(kp->typed_config.v[0].key, "delay");
    assert_string_equal(kp->typed_config.v[0].value, "2ms");
    assert_int_equal(kp->typed_config.v[0].mark.line, 19);
    assert_int_equal(kp->typed_config.v[0].mark.col, 15);
    assert_int_equal(kp->typed_config.v[0].value_mark.col, 22);
    assert_string_equal(kp->typed_config.v[1].key, "modes");
    assert_null(kp->typed_config.v[1].value);
    assert_int_equal(kp->typed_config.v[1].nitems, 2);
    assert_string_equal(kp->typed_config.v[1].items[0], "a");
    assert_string_equal(kp->typed_config.v[1].items[1], "b");
    assert_false(kp->typed_config.v[0].used);

    l = &cfg->listeners[1];
    assert_string_equal(l->name, "second");
    assert_string_equal(l->tls.groups, "X25519:P-384");
    assert_false(l->proxy_protocol);
    assert_true(l->proxy_protocol_timeout_ns == 3 * TG_NS_PER_S);
    assert_int_equal(l->upstream.proxy_protocol, 1);
    assert_string_equal(l->tls.certs[0].keyprov.provider_name, "software");
    assert_string_equal(l->tls.certs[0].keyprov.path,
                        "listeners[1].tls.certificates[0].private_key_provider");

    assert_true(cfg->limits.max_connections == 10000000);
    assert_true(cfg->limits.handshake_timeout_ns == 1500 * TG_NS_PER_MS);
    assert_true(cfg->limits.first_byte_timeout_ns == 250 * TG_NS_PER_MS);
    assert_true(cfg->limits.max_connections_per_source == 64);
    assert_int_equal(cfg->limits.per_source_ipv6_prefix, 56);
    assert_true(cfg->limits.idle_timeout_ns == 3600 * TG_NS_PER_S);
    assert_true(cfg->limits.drain_timeout_ns == TG_NS_PER_S);
    assert_int_equal(cfg->limits.buffer_size, 1024);
    tg_config_free(cfg);
}

static void test_inline_sources(void **state)
{
    (void)state;
    /* A block scalar with the PEM indented under inline_string. */
    size_t cap = 16384, off = 0;
    char *y = malloc(cap);
    assert_non_null(y);
    off += (size_t)snprintf(y + off, cap - off,
                            "listeners:\n"
                            "  - address: 127.0.0.1:8443\n"
                            "    tls:\n"
                            "      certificates:\n"
                            "        - certificate_chain:\n"
                            "            inline_string: |\n");
    for (const char *p = g_cert_pem; *p != '\0';) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) + 1 : strlen(p);
        off += (size_t)snprintf(y + off, cap - off, "              %.*s", (int)n, p);
        p += n;
    }
    off += (size_t)snprintf(y + off, cap - off,
                            "          private_key_provider:\n"
                            "            provider_name: cryptomb\n"
                            "            typed_config:\n"
                            "              private_key:\n"
                            "                inline_string: |\n");
    for (const char *p = g_key_pem; *p != '\0';) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) + 1 : strlen(p);
        off += (size_t)snprintf(y + off, cap - off, "                  %.*s", (int)n, p);
        p += n;
    }
    snprintf(y + off, cap - off, UPSTREAM);
    struct tg_config *cfg = load_ok(y);
    const struct tg_conf_cert *c = &cfg->listeners[0].tls.certs[0];
    assert_null(c->chain.filename);
    assert_string_equal(c->chain.data, g_cert_pem);
    assert_int_equal(c->chain.data_len, strlen(g_cert_pem));
    assert_int_equal(c->chain.mark.line, 6); /* the '|' */
    assert_null(c->private_key.filename);
    assert_string_equal(c->private_key.data, g_key_pem);
    assert_string_equal(c->keyprov.provider_name, "cryptomb");
    /* Envoy-compat private_key does not show up as a provider param. */
    assert_int_equal(c->keyprov.typed_config.n, 0);
    tg_config_free(cfg);
    free(y);
}

static void test_envoy_compat_private_key_file(void **state)
{
    (void)state;
    struct tg_config *cfg =
        load_ok("listeners:\n"
                "  - address: 127.0.0.1:8443\n"
                "    tls:\n"
                "      certificates:\n"
                "        - certificate_chain: { filename: @DIR@/certs/server.pem }\n"
                "          private_key_provider:\n"
                "            provider_name: qat\n"
                "            typed_config:\n"
                "              private_key: { filename: @DIR@/certs/server.key }\n"
                "              poll_delay: 0s\n" UPSTREAM);
    const struct tg_conf_cert *c = &cfg->listeners[0].tls.certs[0];
    assert_string_equal(c->private_key.data, g_key_pem);
    assert_int_equal(c->private_key.mark.line, 9);
    assert_int_equal(c->private_key.mark.col, 40);
    assert_true(c->keyprov.poll_delay_ns == 0);
    tg_config_free(cfg);
}

static void test_relative_paths(void **state)
{
    (void)state;
    static const char yaml[] = "listeners:\n"
                               "  - address: 127.0.0.1:8443\n"
                               "    tls:\n"
                               "      certificates:\n"
                               "        - certificate_chain: { filename: certs/server.pem }\n"
                               "          private_key: { filename: ./certs/server.key }\n" UPSTREAM;
    const char *path = tg_test_write_file("sub/gw.yaml", yaml, strlen(yaml));
    char cwd[1024];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    /* Independent of the working directory. */
    assert_int_equal(chdir("/"), 0);
    struct tg_config *cfg = NULL;
    char err[TG_CONFIG_ERRLEN] = "";
    int rc = tg_config_load_file(path, &cfg, err, sizeof(err));
    if (rc != TG_OK)
        print_error("%s\n", err);
    assert_int_equal(rc, TG_OK);
    assert_string_equal(cfg->source_name, path);
    assert_string_equal(cfg->listeners[0].tls.certs[0].chain.filename, "certs/server.pem");
    assert_string_equal(cfg->listeners[0].tls.certs[0].chain.data, g_cert_pem);
    assert_string_equal(cfg->listeners[0].tls.certs[0].private_key.data, g_key_pem);
    assert_ptr_equal(cfg->listeners[0].tls.certs[0].chain.mark.file, cfg->source_name);
    tg_config_free(cfg);

    /* A missing relative file: the message names it as written. */
    static const char bad[] = "listeners:\n"
                              "  - address: 127.0.0.1:8443\n"
                              "    tls:\n"
                              "      certificates:\n"
                              "        - certificate_chain: { filename: certs/server.pem }\n"
                              "          private_key: { filename: certs/x.key }\n" UPSTREAM;
    path = tg_test_write_file("sub/bad.yaml", bad, strlen(bad));
    cfg = (struct tg_config *)1;
    assert_int_equal(tg_config_load_file(path, &cfg, err, sizeof(err)), TG_ECONFIG);
    assert_null(cfg);
    char want[1200];
    snprintf(want, sizeof(want),
             "%s:6:36: listeners[0].tls.certificates[0].private_key.filename: cannot read "
             "'certs/x.key': No such file or directory",
             path);
    assert_string_equal(err, want);

    /* A config file given without a directory: relative to the cwd. */
    assert_int_equal(chdir(g_dir), 0);
    tg_test_write_file("plain.yaml", yaml, strlen(yaml));
    cfg = NULL;
    assert_int_equal(tg_config_load_file("plain.yaml", &cfg, err, sizeof(err)), TG_OK);
    tg_config_free(cfg);
    assert_int_equal(chdir(cwd), 0);
}

static void test_unreadable_config_file(void **state)
{
    (void)state;
    char path[600], err[TG_CONFIG_ERRLEN], want[800];
    struct tg_config *cfg = (struct tg_config *)1;
    snprintf(path, sizeof(path), "%s/nope.yaml", g_dir);
    assert_int_equal(tg_config_load_file(path, &cfg, err, sizeof(err)), TG_ECONFIG);
    assert_null(cfg);
    snprintf(want, sizeof(want), "%s: cannot read: No such file or directory", path);
    assert_string_equal(err, want);

    cfg = (struct tg_config *)1;
    assert_int_equal(tg_config_load_file(g_dir, &cfg, err, sizeof(err)), TG_ECONFIG);
    snprintf(want, sizeof(want), "%s: cannot read: Is a directory", g_dir);
    assert_string_equal(err, want);

    const char *empty = tg_test_write_file("empty.yaml", "", 0);
    assert_int_equal(tg_config_load_file(empty, &cfg, err, sizeof(err)), TG_ECONFIG);
    snprintf(want, sizeof(want),
             "%s: configuration is empty (expected a mapping with at least 'listeners')", empty);
    assert_string_equal(err, want);
}

/* The example documented in docs/CONFIG.md (tests/data/config/example.yaml)
 * loads, with its relative certificate paths resolved beside it. */
static void test_example_file(void **state)
{
    (void)state;
    char path[700], *text = NULL;
    size_t len = 0;
    FILE *f = fopen(tg_test_data("config/example.yaml"), "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    len = (size_t)ftell(f);
    rewind(f);
    text = malloc(len + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, len, f), len);
    fclose(f);
    snprintf(path, sizeof(path), "%s/example", g_dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/example/certs", g_dir);
    assert_int_equal(mkdir(path, 0700), 0);
    tg_test_write_file("example/certs/server.pem", g_cert_pem, strlen(g_cert_pem));
    tg_test_write_file("example/certs/server.key", g_key_pem, strlen(g_key_pem));
    tg_test_write_file("example/certs/client-ca.pem", g_cert_pem, strlen(g_cert_pem));
    static const char crl[] = "-----BEGIN X509 CRL-----\nMA==\n-----END X509 CRL-----\n";
    tg_test_write_file("example/certs/client-ca.crl", crl, sizeof(crl) - 1);
    const char *yaml = tg_test_write_file("example/gw.yaml", text, len);
    free(text);

    struct tg_config *cfg = NULL;
    char err[TG_CONFIG_ERRLEN] = "";
    int rc = tg_config_load_file(yaml, &cfg, err, sizeof(err));
    if (rc != TG_OK)
        print_error("%s\n", err);
    assert_int_equal(rc, TG_OK);
    assert_true(cfg->has_admin);
    assert_int_equal(cfg->n_listeners, 3);
    const struct tg_conf_upstream *u = &cfg->listeners[2].upstream;
    assert_int_equal(u->n_endpoints, 2);
    assert_true(u->endpoints[0].is_name);
    assert_int_equal(u->endpoints[1].weight, 2);
    assert_true(u->health_check.enabled);
    assert_int_equal(cfg->dns.n_resolvers, 1);
    assert_false(cfg->listeners[0].proxy_protocol);
    assert_true(cfg->listeners[0].proxy_protocol_timeout_ns == 3 * TG_NS_PER_S);
    assert_int_equal(cfg->listeners[0].upstream.proxy_protocol, 0);
    assert_int_equal(cfg->listeners[1].upstream.proxy_protocol, 2);
    const struct tg_conf_cert *c = &cfg->listeners[1].tls.certs[0];
    assert_string_equal(c->keyprov.provider_name, "deferred");
    const struct tg_conf_client_cert *cc = &cfg->listeners[1].tls.client_cert;
    assert_int_equal(cc->mode, TG_CCERT_REQUIRE);
    assert_int_equal(cc->verify_depth, 4);
    assert_non_null(cc->crl.data);
    assert_int_equal(cfg->listeners[0].tls.client_cert.mode, TG_CCERT_OFF);
    assert_true(c->keyprov.poll_delay_ns == 200 * TG_NS_PER_US);
    assert_string_equal(c->private_key.data, g_key_pem);
    /* The resolved path, for the file watcher: beside the config file. */
    snprintf(path, sizeof(path), "%s/example/certs/server.key", g_dir);
    assert_string_equal(c->private_key.path, path);
    assert_true(cfg->reload.watch);
    assert_true(cfg->reload.debounce_ns == 200 * TG_NS_PER_MS);
    assert_int_equal(cfg->concurrency_mark.line, 3);
    assert_int_equal(cfg->concurrency_mark.col, 14);
    assert_int_equal(c->keyprov.typed_config.n, 4);
    /* What the deferred provider will read. */
    const struct tg_conf_params *p = &c->keyprov.typed_config;
    uint64_t d = 1, n = 1;
    bool kx = false;
    const char *mode = NULL;
    assert_int_equal(tg_conf_params_duration(p, "delay", &d, err, sizeof(err)), TG_OK);
    assert_int_equal(tg_conf_params_u64(p, "fail_every", 0, UINT32_MAX, &n, err, sizeof(err)),
                     TG_OK);
    assert_int_equal(tg_conf_params_string(p, "fail_mode", &mode, err, sizeof(err)), TG_OK);
    assert_int_equal(tg_conf_params_bool(p, "key_exchange", &kx, err, sizeof(err)), TG_OK);
    assert_true(d == 0 && n == 0 && kx);
    assert_string_equal(mode, "error");
    assert_int_equal(tg_conf_params_check_unused(p, "deferred", err, sizeof(err)), TG_OK);
    assert_int_equal(cfg->access_log.dest, TG_CONF_ALOG_STDOUT);
    assert_int_equal(cfg->access_log.buffer, 256 << 10);
    tg_config_free(cfg);
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */

static void test_err_yaml(void **state)
{
    (void)state;
    static const struct err_case cases[] = {
        {"", "gw.yaml: configuration is empty (expected a mapping with at least 'listeners')"},
        {"# nothing here\n\n",
         "gw.yaml: configuration is empty (expected a mapping with at least 'listeners')"},
        {"---\n...\n",
         "gw.yaml: configuration is empty (expected a mapping with at least 'listeners')"},
        {"~\n", "gw.yaml: configuration is empty (expected a mapping with at least 'listeners')"},
        {"listeners: [\n",
         "gw.yaml:2:1: invalid YAML: did not find expected node content (while parsing a flow "
         "node at line 2)"},
        {"a: b: c\n", "gw.yaml:1:5: invalid YAML: mapping values are not allowed in this context"},
        {"listeners:\n  - x\n bad: 1\n",
         "gw.yaml:3:2: invalid YAML: did not find expected key (while parsing a block mapping at "
         "line 1)"},
        {"a: \"unterminated\n",
         "gw.yaml:2:1: invalid YAML: found unexpected end of stream (while scanning a quoted "
         "scalar at line 1)"},
        {"a: 1\nb: \xff\n", "gw.yaml:2:4: invalid YAML: invalid leading UTF-8 octet (byte 0xFF)"},
        {"a:\t\x01\n", "gw.yaml:1:4: invalid YAML: control characters are not allowed (byte 0x01)"},
        {L0 "---\n" L0, "gw.yaml:8:1: only one YAML document is allowed in a configuration"},
        {"x: &a 1\n" L0, "gw.yaml:1:4: YAML anchors ('&name') are not supported"},
        {"listeners: &l\n  - address: 1\n",
         "gw.yaml:1:12: YAML anchors ('&name') are not supported"},
        {"admin: *x\n", "gw.yaml:1:8: YAML aliases ('*name') are not supported"},
        {"- a\n", "gw.yaml:1:1: expected a mapping at the top level, got a sequence"},
        {"hello\n", "gw.yaml:1:1: expected a mapping at the top level, got a scalar"},
        {"? [a]\n: 1\n", "gw.yaml:1:3: mapping keys must be scalars, got a sequence"},
        {"a: "
         "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]"
         "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
         "gw.yaml:1:67: YAML nesting is too deep"},
        {"concurrency: 1\nconcurrency: 2\n" L0,
         "gw.yaml:2:1: concurrency: duplicate key 'concurrency' (first given at line 1)"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    address: 127.0.0.1:8444\n",
         "gw.yaml:3:5: listeners[0].address: duplicate key 'address' (first given at line 2)"},
    };
    check_errors(cases, TG_ARRAY_LEN(cases));
}

static void test_err_unknown_keys(void **state)
{
    (void)state;
    static const struct err_case cases[] = {
        {"bogus: 1\n" L0, "gw.yaml:1:1: bogus: unknown key 'bogus' (allowed: concurrency, "
                          "log_level, admin, listeners, limits, reload, dns, access_log)"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    port: 1\n    tls:\n" CERTS UPSTREAM,
         "gw.yaml:3:5: listeners[0].port: unknown key 'port' (allowed: name, address, backlog, "
         "tls, upstream, proxy_protocol, proxy_protocol_timeout)"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      ciphers: x\n" CERTS UPSTREAM,
         "gw.yaml:4:7: listeners[0].tls.ciphers: unknown key 'ciphers' (allowed: certificates, "
         "min_version, max_version, alpn, session_resumption, cipher_list, cipher_suites, "
         "groups, key_exchange_provider, require_close_notify, client_certificate)"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "          chain: x\n" UPSTREAM,
         "gw.yaml:7:11: listeners[0].tls.certificates[0].chain: unknown key 'chain' (allowed: "
         "certificate_chain, private_key, server_names, private_key_provider)"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - certificate_chain: { file: x }\n" UPSTREAM,
         "gw.yaml:5:32: listeners[0].tls.certificates[0].certificate_chain.file: unknown key "
         "'file' (allowed: filename, inline_string)"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "          private_key_provider: { provider_name: software, poll_delay: 1ms }\n" UPSTREAM,
         "gw.yaml:7:60: " KP ".poll_delay: unknown key 'poll_delay' (allowed: provider_name, "
         "typed_config, fallback)"},
        {L0 "limits: { max_conns: 5 }\n",
         "gw.yaml:8:11: limits.max_conns: unknown key 'max_conns' (allowed: max_connections, "
         "max_connections_per_source, per_source_ipv6_prefix, first_byte_timeout, "
         "handshake_timeout, idle_timeout, drain_timeout, buffer_size)"},
        {"admin: { addr: 1 }\n" L0,
         "gw.yaml:1:10: admin.addr: unknown key 'addr' (allowed: address)"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "    upstream: { address: 127.0.0.1:8080, timeout: 1s }\n",
         "gw.yaml:7:42: listeners[0].upstream.timeout: unknown key 'timeout' (allowed: address, "
         "endpoints, connect_timeout, max_connect_attempts, lb_policy, dns_lookup_family, "
         "dns_refresh_rate, respect_dns_ttl, outlier_detection, health_check, proxy_protocol)"},
    };
    check_errors(cases, TG_ARRAY_LEN(cases));
}

static void test_err_types(void **state)
{
    (void)state;
    static const struct err_case cases[] = {
        {"listeners: {a: 1}\n",
         "gw.yaml:1:12: listeners: expected a sequence of listeners, got a mapping"},
        {"listeners: x\n",
         "gw.yaml:1:12: listeners: expected a sequence of listeners, got a scalar"},
        {"admin: [1]\n" L0, "gw.yaml:1:8: admin: expected a mapping, got a sequence"},
        {"admin:\n" L0, "gw.yaml:1:7: admin: expected a mapping, got an empty value"},
        {"listeners:\n  - 42\n", "gw.yaml:2:5: listeners[0]: expected a mapping, got a scalar"},
        {"concurrency: [1]\n" L0,
         "gw.yaml:1:14: concurrency: expected an integer or 'auto', got a sequence"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    backlog: abc\n    tls:\n" CERTS UPSTREAM,
         "gw.yaml:3:14: listeners[0].backlog: expected an integer in 1..65535, got 'abc'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls: yes\n" UPSTREAM,
         "gw.yaml:3:10: listeners[0].tls: expected a mapping, got a scalar"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates: {a: 1}\n" UPSTREAM,
         "gw.yaml:4:21: listeners[0].tls.certificates: expected a sequence of certificates, got a "
         "mapping"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - certificate_chain: { filename: @DIR@/certs/server.pem }\n"
         "          private_key: certs/server.key\n" UPSTREAM,
         "gw.yaml:6:24: listeners[0].tls.certificates[0].private_key: expected a mapping { "
         "filename: ... } or { inline_string: ... }, got a scalar"},
        {"listeners:\n  - address: [127.0.0.1]\n",
         "gw.yaml:2:14: listeners[0].address: expected an address 'host:port', got a sequence"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "      session_resumption: yes\n" UPSTREAM,
         "gw.yaml:7:27: listeners[0].tls.session_resumption: expected true or false, got 'yes'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "      require_close_notify: 1\n" UPSTREAM,
         "gw.yaml:7:29: listeners[0].tls.require_close_notify: expected true or false, got '1'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "          private_key_provider: { provider_name: deferred, typed_config: { a: { b: { c: "
         "1 } } } }\n" UPSTREAM,
         "gw.yaml:7:84: " KP ".typed_config.a.b: expected a scalar, a sequence of scalars or a "
         "mapping of scalars, got a mapping of mappings"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "          private_key_provider: { provider_name: deferred, typed_config: { a: {} } "
         "}\n" UPSTREAM,
         "gw.yaml:7:79: " KP ".typed_config.a: expected a mapping with at least one key"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "          private_key_provider: { provider_name: deferred, typed_config: { a: { b: 1, "
         "b: 2 } } }\n" UPSTREAM,
         "gw.yaml:7:87: " KP ".typed_config.a.b: duplicate key 'b' (first given at line 7)"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "          private_key_provider: { provider_name: deferred, typed_config: { a: [x, [y]] "
         "} }\n" UPSTREAM,
         "gw.yaml:7:83: " KP ".typed_config.a[1]: expected a scalar, got a sequence"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "          private_key_provider: { provider_name: deferred, typed_config: [1] "
         "}\n" UPSTREAM,
         "gw.yaml:7:74: " KP ".typed_config: expected a mapping, got a sequence"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "          private_key_provider: { provider_name: [software] }\n" UPSTREAM,
         "gw.yaml:7:50: " KP ".provider_name: expected a string, got a sequence"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS "      alpn: h2\n" UPSTREAM,
         "gw.yaml:7:13: listeners[0].tls.alpn: expected a sequence of strings, got a scalar"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "      groups: {a: b}\n" UPSTREAM,
         "gw.yaml:7:15: listeners[0].tls.groups: expected a string or a sequence of strings, got "
         "a mapping"},
        {"listeners:\n  - name: \"a\\0b\"\n",
         "gw.yaml:2:11: listeners[0].name: value contains a NUL character"},
        {"log_level:\n" L0, "gw.yaml:1:11: log_level: expected a log level, got an empty value"},
    };
    check_errors(cases, TG_ARRAY_LEN(cases));
}

static void test_err_missing(void **state)
{
    (void)state;
    static const struct err_case cases[] = {
        {"concurrency: 2\n", "gw.yaml:1:1: missing required key 'listeners'"},
        {"listeners:\n  - tls:\n" CERTS UPSTREAM,
         "gw.yaml:2:5: listeners[0]: missing required key 'address'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n" UPSTREAM,
         "gw.yaml:2:5: listeners[0]: missing required key 'tls'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS,
         "gw.yaml:2:5: listeners[0]: missing required key 'upstream'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "    upstream: { connect_timeout: 1s }\n",
         "gw.yaml:7:15: listeners[0].upstream: missing required key 'address' (or 'endpoints')"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls: { min_version: TLSv1.2 }\n" UPSTREAM,
         "gw.yaml:3:10: listeners[0].tls: missing required key 'certificates'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - private_key: { filename: @DIR@/certs/server.key }\n" UPSTREAM,
         "gw.yaml:5:11: listeners[0].tls.certificates[0]: missing required key "
         "'certificate_chain'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - certificate_chain: { filename: @DIR@/certs/server.pem }\n" UPSTREAM,
         "gw.yaml:5:11: listeners[0].tls.certificates[0]: missing required key 'private_key' (or "
         "private_key_provider.typed_config.private_key)"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - private_key: { filename: @DIR@/certs/server.key }\n"
         "          private_key_provider: { provider_name: deferred }\n" UPSTREAM,
         "gw.yaml:5:11: listeners[0].tls.certificates[0]: missing required key "
         "'certificate_chain'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "          private_key_provider: { fallback: false }\n" UPSTREAM,
         "gw.yaml:7:33: " KP ": missing required key 'provider_name'"},
        {"admin: {}\n" L0, "gw.yaml:1:8: admin: missing required key 'address'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - certificate_chain: {}\n" UPSTREAM,
         "gw.yaml:5:30: listeners[0].tls.certificates[0].certificate_chain: one of 'filename' or "
         "'inline_string' is required"},
        {"listeners: []\n", "gw.yaml:1:12: listeners: at least one listener is required"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates: []\n" UPSTREAM,
         "gw.yaml:4:21: listeners[0].tls.certificates: at least one certificate is required"},
    };
    check_errors(cases, TG_ARRAY_LEN(cases));
}

static void test_err_values(void **state)
{
    (void)state;
#define LST(extra) "listeners:\n  - address: 127.0.0.1:8443\n" extra "    tls:\n" CERTS UPSTREAM
#define TLS(extra) "listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS extra UPSTREAM
    static const struct err_case cases[] = {
        {"concurrency: 0\n" L0,
         "gw.yaml:1:14: concurrency: expected an integer in 1..256 or 'auto', got '0'"},
        {"concurrency: 257\n" L0,
         "gw.yaml:1:14: concurrency: expected an integer in 1..256 or 'auto', got '257'"},
        {"concurrency: -1\n" L0,
         "gw.yaml:1:14: concurrency: expected an integer in 1..256 or 'auto', got '-1'"},
        {"log_level: loud\n" L0,
         "gw.yaml:1:12: log_level: invalid log level 'loud' (valid: error, warn, info, debug)"},
        {LST("    backlog: 0\n"),
         "gw.yaml:3:14: listeners[0].backlog: expected an integer in 1..65535, got '0'"},
        {LST("    backlog: 65536\n"),
         "gw.yaml:3:14: listeners[0].backlog: expected an integer in 1..65535, got '65536'"},
        {LST("    name: \"\"\n"), "gw.yaml:3:11: listeners[0].name: must not be empty"},
        {LST("    name: a b\n"), "gw.yaml:3:11: listeners[0].name: invalid name 'a b' (1..64 "
                                 "characters of A-Z a-z 0-9 _ - .)"},
        {"listeners:\n  - address: example.com:80\n",
         "gw.yaml:2:14: listeners[0].address: invalid address 'example.com:80': host must be an "
         "IPv4 address, [IPv6] or localhost (names are not resolved)"},
        {"listeners:\n  - address: 127.0.0.1\n",
         "gw.yaml:2:14: listeners[0].address: invalid address '127.0.0.1': missing ':port'"},
        {"listeners:\n  - address: 127.0.0.1:99999\n",
         "gw.yaml:2:14: listeners[0].address: invalid address '127.0.0.1:99999': port must be a "
         "number in 0..65535"},
        {"listeners:\n  - address: ::1:80\n",
         "gw.yaml:2:14: listeners[0].address: invalid address '::1:80': IPv6 addresses must be "
         "written in brackets, e.g. [::1]:8443"},
        {"listeners:\n  - address: \"[::1:80\"\n",
         "gw.yaml:2:14: listeners[0].address: invalid address '[::1:80': missing ']' after the "
         "IPv6 address"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "    upstream: { address: 127.0.0.1:0 }\n",
         "gw.yaml:7:26: listeners[0].upstream.address: invalid address '127.0.0.1:0': port must "
         "be in 1..65535"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "    upstream: { address: 127.0.0.1:1, connect_timeout: 0s }\n",
         "gw.yaml:7:56: listeners[0].upstream.connect_timeout: must be greater than 0"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "    upstream: { address: 127.0.0.1:1, connect_timeout: 5 s }\n",
         "gw.yaml:7:56: listeners[0].upstream.connect_timeout: invalid duration '5 s' (expected a "
         "number and a unit ns, us, ms, s, m or h, e.g. 2s, 250ms, 0.001s; whole nanoseconds)"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "    upstream: { address: 127.0.0.1:1, proxy_protocol: v3 }\n",
         "gw.yaml:7:55: listeners[0].upstream.proxy_protocol: expected v1 or v2, got 'v3'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "    upstream: { address: 127.0.0.1:1, proxy_protocol: true }\n",
         "gw.yaml:7:55: listeners[0].upstream.proxy_protocol: expected v1 or v2, got 'true'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "    upstream: { address: 127.0.0.1:1, proxy_protocol: [v1] }\n",
         "gw.yaml:7:55: listeners[0].upstream.proxy_protocol: expected v1 or v2, got a sequence"},
        {LST("    proxy_protocol: v2\n"),
         "gw.yaml:3:21: listeners[0].proxy_protocol: expected true or false, got 'v2'"},
        {LST("    proxy_protocol: true\n    proxy_protocol_timeout: 0s\n"),
         "gw.yaml:4:29: listeners[0].proxy_protocol_timeout: must be greater than 0"},
        {L0 "limits: { idle_timeout: -1s }\n",
         "gw.yaml:8:25: limits.idle_timeout: invalid duration '-1s' (expected a number and a "
         "unit ns, us, ms, s, m or h, e.g. 2s, 250ms, 0.001s; whole nanoseconds)"},
        {L0 "limits: { handshake_timeout: 0 }\n",
         "gw.yaml:8:30: limits.handshake_timeout: must be greater than 0"},
        {L0 "limits: { drain_timeout: 0ms }\n",
         "gw.yaml:8:26: limits.drain_timeout: must be greater than 0"},
        {L0 "limits: { buffer_size: 1023 }\n",
         "gw.yaml:8:24: limits.buffer_size: expected an integer in 1024..1048576, got '1023'"},
        {L0 "limits: { buffer_size: 1048577 }\n",
         "gw.yaml:8:24: limits.buffer_size: expected an integer in 1024..1048576, got '1048577'"},
        {L0 "reload: { watch: yes }\n",
         "gw.yaml:8:18: reload.watch: expected true or false, got 'yes'"},
        {L0 "reload: { debounce: -1s }\n",
         "gw.yaml:8:21: reload.debounce: invalid duration '-1s' (expected a number and a unit ns, "
         "us, ms, s, m or h, e.g. 2s, 250ms, 0.001s; whole nanoseconds)"},
        {L0 "reload: { interval: 1s }\n",
         "gw.yaml:8:11: reload.interval: unknown key 'interval' (allowed: watch, debounce)"},
        {L0 "limits: { first_byte_timeout: 0s }\n",
         "gw.yaml:8:31: limits.first_byte_timeout: must be greater than 0"},
        {L0 "limits: { max_connections_per_source: -1 }\n",
         "gw.yaml:8:39: limits.max_connections_per_source: expected an integer in 0..10000000, "
         "got '-1'"},
        {L0 "limits: { per_source_ipv6_prefix: 0 }\n",
         "gw.yaml:8:35: limits.per_source_ipv6_prefix: expected an integer in 1..128, got '0'"},
        {L0 "limits: { per_source_ipv6_prefix: 129 }\n",
         "gw.yaml:8:35: limits.per_source_ipv6_prefix: expected an integer in 1..128, got '129'"},
        {L0 "limits: { max_connections: 0 }\n",
         "gw.yaml:8:28: limits.max_connections: expected an integer in 1..10000000, got '0'"},
        {L0 "limits: { max_connections: 10000001 }\n",
         "gw.yaml:8:28: limits.max_connections: expected an integer in 1..10000000, got "
         "'10000001'"},
        {TLS("      min_version: TLSv1.1\n"),
         "gw.yaml:7:20: listeners[0].tls.min_version: invalid TLS version 'TLSv1.1' (valid: "
         "TLSv1.2, TLSv1.3)"},
        {TLS("      min_version: TLSv1.3\n      max_version: TLSv1.2\n"),
         "gw.yaml:8:20: listeners[0].tls.max_version: min_version (TLSv1.3) is greater than "
         "max_version (TLSv1.2)"},
        {TLS("      alpn: [h2, \"\"]\n"),
         "gw.yaml:7:18: listeners[0].tls.alpn[1]: must not be empty"},
        {TLS("      alpn: [h2, h2]\n"),
         "gw.yaml:7:18: listeners[0].tls.alpn[1]: duplicate value 'h2'"},
        {TLS("      alpn: []\n"),
         "gw.yaml:7:13: listeners[0].tls.alpn: must not be empty (leave the key out instead)"},
        {TLS("      alpn: [" A256 "]\n"),
         "gw.yaml:7:14: listeners[0].tls.alpn[0]: too long (256 bytes, at most 255)"},
        {TLS("      cipher_list: \"\"\n"),
         "gw.yaml:7:20: listeners[0].tls.cipher_list: must not be empty"},
        {TLS("      groups: [X25519, \"P-256:P-384\"]\n"),
         "gw.yaml:7:24: listeners[0].tls.groups[1]: one group per item (no ':')"},
        {TLS("      groups: []\n"),
         "gw.yaml:7:15: listeners[0].tls.groups: must not be empty (leave the key out instead)"},
        {TLS("          server_names: [example.com, \"bad name\"]\n"),
         "gw.yaml:7:39: listeners[0].tls.certificates[0].server_names[1]: invalid server name "
         "'bad name' (expected a DNS name, optionally starting with '*.')"},
        {TLS("          server_names: [\"a.*.com\"]\n"),
         "gw.yaml:7:26: listeners[0].tls.certificates[0].server_names[0]: invalid server name "
         "'a.*.com' (expected a DNS name, optionally starting with '*.')"},
        {TLS("          private_key_provider: { provider_name: foo }\n"),
         "gw.yaml:7:50: " KP ".provider_name: unknown provider 'foo' (known: software, deferred, "
         "cryptomb, qat)"},
        {TLS("          private_key_provider: { provider_name: software, fallback: yes }\n"),
         "gw.yaml:7:70: " KP ".fallback: expected true or false, got 'yes'"},
        {TLS("          private_key_provider:\n"
             "            provider_name: cryptomb\n"
             "            typed_config: { poll_delay: 1.5ns }\n"),
         "gw.yaml:9:41: " KP ".typed_config.poll_delay: invalid duration '1.5ns' (expected a "
         "number and a unit ns, us, ms, s, m or h, e.g. 2s, 250ms, 0.001s; whole nanoseconds)"},
        {TLS("          private_key_provider:\n"
             "            provider_name: cryptomb\n"
             "            typed_config:\n"
             "              private_key: { filename: @DIR@/certs/server.key }\n"),
         "gw.yaml:10:15: " KP ".typed_config.private_key: the private key is also given at line "
         "6 (listeners[0].tls.certificates[0].private_key); give it only once"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS UPSTREAM
         "  - address: 127.0.0.1:8443\n    tls:\n" CERTS UPSTREAM,
         "gw.yaml:8:14: listeners[1].address: address '127.0.0.1:8443' is already used by "
         "listeners[0]"},
        {"listeners:\n  - name: a\n    address: 127.0.0.1:1\n    tls:\n" CERTS UPSTREAM
         "  - name: a\n    address: 127.0.0.1:2\n    tls:\n" CERTS UPSTREAM,
         "gw.yaml:9:11: listeners[1].name: duplicate listener name 'a' (also used by "
         "listeners[0])"},
        {"listeners:\n  - name: listener1\n    address: 127.0.0.1:1\n    tls:\n" CERTS UPSTREAM
         "  - address: 127.0.0.1:2\n    tls:\n" CERTS UPSTREAM,
         "gw.yaml:9:5: listeners[1].name: duplicate listener name 'listener1' (also used by "
         "listeners[0])"},
    };
#undef LST
#undef TLS
    check_errors(cases, TG_ARRAY_LEN(cases));
}

static void test_err_sources(void **state)
{
    (void)state;
    static const struct err_case cases[] = {
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - certificate_chain: { filename: @DIR@/certs/server.pem }\n"
         "          private_key: { filename: @DIR@/certs/missing.key }\n" UPSTREAM,
         "gw.yaml:6:36: listeners[0].tls.certificates[0].private_key.filename: cannot read "
         "'@DIR@/certs/missing.key': No such file or directory"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - certificate_chain: { filename: @DIR@/certs }\n"
         "          private_key: { filename: @DIR@/certs/server.key }\n" UPSTREAM,
         "gw.yaml:5:42: listeners[0].tls.certificates[0].certificate_chain.filename: cannot read "
         "'@DIR@/certs': Is a directory"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - certificate_chain: { filename: @DIR@/certs/server.key }\n"
         "          private_key: { filename: @DIR@/certs/server.key }\n" UPSTREAM,
         "gw.yaml:5:42: listeners[0].tls.certificates[0].certificate_chain.filename: "
         "'@DIR@/certs/server.key' contains no PEM certificate ('-----BEGIN CERTIFICATE-----')"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - certificate_chain: { filename: @DIR@/certs/server.pem }\n"
         "          private_key: { filename: @DIR@/certs/empty.pem }\n" UPSTREAM,
         "gw.yaml:6:36: listeners[0].tls.certificates[0].private_key.filename: "
         "'@DIR@/certs/empty.pem' contains no PEM private key ('PRIVATE KEY-----')"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - certificate_chain: { inline_string: hello }\n"
         "          private_key: { filename: @DIR@/certs/server.key }\n" UPSTREAM,
         "gw.yaml:5:47: listeners[0].tls.certificates[0].certificate_chain.inline_string: no PEM "
         "certificate ('-----BEGIN CERTIFICATE-----') in the string"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - certificate_chain: { filename: @DIR@/certs/server.pem }\n"
         "          private_key: { filename: x, inline_string: y }\n" UPSTREAM,
         "gw.yaml:6:39: listeners[0].tls.certificates[0].private_key.inline_string: give only one "
         "of 'filename' and 'inline_string'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - certificate_chain: { filename: \"\" }\n" UPSTREAM,
         "gw.yaml:5:42: listeners[0].tls.certificates[0].certificate_chain.filename: must not be "
         "empty"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - certificate_chain: { inline_string: }\n" UPSTREAM,
         "gw.yaml:5:47: listeners[0].tls.certificates[0].certificate_chain.inline_string: expected "
         "a PEM string, got an empty value"},
    };
    check_errors(cases, TG_ARRAY_LEN(cases));
}

static void test_known_providers(void **state)
{
    (void)state;
    static const char *const names[] = {"software", "mine", NULL};
    tg_config_set_known_providers(names);
    static const struct err_case cases[] = {
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "          private_key_provider: { provider_name: deferred }\n" UPSTREAM,
         "gw.yaml:7:50: " KP ".provider_name: unknown provider 'deferred' (known: software, mine)"},
    };
    check_errors(cases, TG_ARRAY_LEN(cases));
    struct tg_config *cfg =
        load_ok("listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
                "          private_key_provider: { provider_name: mine }\n" UPSTREAM);
    tg_config_free(cfg);
    tg_config_set_known_providers(NULL);
    /* No list: any name passes here (the registry judges it at start-up). */
    cfg = load_ok("listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
                  "          private_key_provider: { provider_name: anything }\n" UPSTREAM);
    tg_config_free(cfg);
    tg_config_set_known_providers(g_providers);
}

static void test_err_null_buffers(void **state)
{
    (void)state;
    struct tg_config *cfg = NULL;
    assert_int_equal(tg_config_load_buffer("x", "listeners: []\n", 14, &cfg, NULL, 0), TG_ECONFIG);
    assert_null(cfg);
    char small[16];
    assert_int_equal(tg_config_load_buffer("x", "listeners: []\n", 14, &cfg, small, sizeof(small)),
                     TG_ECONFIG);
    assert_string_equal(small, "x:1:12: listene");
    assert_int_equal(tg_config_load_buffer("x", NULL, 0, &cfg, small, sizeof(small)), TG_ECONFIG);
    assert_int_equal(tg_config_load_buffer(NULL, NULL, 0, &cfg, NULL, 0), TG_ECONFIG);
    assert_int_equal(tg_config_load_buffer("x", NULL, 0, NULL, NULL, 0), TG_EINVAL);
}

/* Every prefix and a few byte substitutions of a full config: must never
 * crash or leak (the sanitizer and valgrind builds check), and an error must
 * come with one message line. */
static void test_robustness(void **state)
{
    (void)state;
    char *y = subst("concurrency: 2\nlog_level: warn\nadmin: { address: 127.0.0.1:0 }\n"
                    "listeners:\n"
                    "  - name: https\n"
                    "    address: \"[::1]:0\"\n"
                    "    tls:\n"
                    "      certificates:\n" CERT_FILES "          server_names: [example.com]\n"
                    "          private_key_provider:\n"
                    "            provider_name: deferred\n"
                    "            typed_config: { poll_delay: 1ms, delay: 1ms, l: [a, b] }\n"
                    "      alpn: [h2]\n"
                    "      groups: [X25519]\n"
                    "    upstream: { address: 127.0.0.1:1, connect_timeout: 1s }\n"
                    "limits: { max_connections: 10, buffer_size: 2048 }\n");
    size_t len = strlen(y);
    char *m = malloc(len + 1);
    assert_non_null(m);
    static const char subs[] = {'[', ':', ' ', '\n', '&', '"', '{', '-', '\0'};
    size_t okcount = 0;
    for (size_t i = 0; i <= len; i++) {
        for (size_t s = 0; s <= TG_ARRAY_LEN(subs); s++) {
            size_t n = len;
            memcpy(m, y, len);
            if (s == TG_ARRAY_LEN(subs))
                n = i; /* prefix */
            else if (i < len)
                m[i] = subs[s];
            else
                continue;
            struct tg_config *cfg = NULL;
            char err[TG_CONFIG_ERRLEN] = "";
            int rc = tg_config_load_buffer("f.yaml", m, n, &cfg, err, sizeof(err));
            if (rc == TG_OK) {
                okcount++;
                assert_non_null(cfg);
                tg_config_free(cfg);
            } else {
                assert_null(cfg);
                assert_true(strncmp(err, "f.yaml", 6) == 0);
                assert_null(strchr(err, '\n'));
            }
        }
    }
    assert_true(okcount > 0);
    free(m);
    free(y);
}

/* ------------------------------------------------------------------------ */
/* Embedded default                                                         */

/* The embedded default only reads its demo certificate (src/tls creates it):
 * any certificate and key will do here. */
static void put_demo_files(const char *subdir)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/%s", g_dir, subdir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/" TG_CONFIG_DEMO_CERT, subdir);
    tg_test_write_file(path, g_cert_pem, strlen(g_cert_pem));
    snprintf(path, sizeof(path), "%s/" TG_CONFIG_DEMO_KEY, subdir);
    tg_test_write_file(path, g_key_pem, strlen(g_key_pem));
}

static void test_default_config(void **state)
{
    (void)state;
    char dir[600], path[700];
    put_demo_files("state");
    snprintf(dir, sizeof(dir), "%s/state", g_dir);
    struct tg_config *cfg = NULL;
    char err[TG_CONFIG_ERRLEN] = "";
    int rc = tg_config_load_default(dir, &cfg, err, sizeof(err));
    if (rc != TG_OK)
        print_error("%s\n", err);
    assert_int_equal(rc, TG_OK);
    assert_string_equal(cfg->source_name, "<embedded default>");
    assert_string_equal(cfg->state_dir, dir);
    assert_int_equal(cfg->concurrency, 1);
    assert_true(cfg->has_admin);
    assert_string_equal(cfg->admin.text, "127.0.0.1:9901");
    assert_int_equal(cfg->n_listeners, 1);
    const struct tg_conf_listener *l = &cfg->listeners[0];
    assert_string_equal(l->name, "https");
    assert_string_equal(l->addr.text, "127.0.0.1:8443");
    assert_string_equal(l->upstream.addr.text, "127.0.0.1:8080");
    assert_true(l->tls.session_resumption);
    /* The product's point, safely: software serves where cryptomb cannot run. */
    assert_string_equal(l->tls.certs[0].keyprov.provider_name, "cryptomb");
    assert_true(l->tls.certs[0].keyprov.fallback);
    snprintf(path, sizeof(path), "%s/demo-cert.pem", dir);
    assert_string_equal(l->tls.certs[0].chain.filename, path);
    assert_true(l->tls.certs[0].chain.mark.line > 0);
    assert_string_equal(l->tls.certs[0].chain.data, g_cert_pem);
    snprintf(path, sizeof(path), "%s/demo-key.pem", dir);
    assert_string_equal(l->tls.certs[0].private_key.filename, path);
    assert_string_equal(l->tls.certs[0].private_key.data, g_key_pem);
    tg_config_free(cfg);

    /* Loading creates nothing: no lock file, no temporary file. */
    char cmd[800];
    snprintf(cmd, sizeof(cmd),
             "test -z \"$(ls -A '%s' | grep -v -e '^demo-cert.pem$' -e '^demo-key.pem$')\"", dir);
    assert_int_equal(system(cmd), 0);

    /* Without the certificate (nobody ensured it): the usual message for a
     * missing file, and no directory appears. */
    snprintf(dir, sizeof(dir), "%s/no-state", g_dir);
    cfg = (struct tg_config *)1;
    assert_int_equal(tg_config_load_default(dir, &cfg, err, sizeof(err)), TG_ECONFIG);
    assert_null(cfg);
    char want[1400];
    snprintf(want, sizeof(want),
             "<embedded default>:13:42: listeners[0].tls.certificates[0].certificate_chain."
             "filename: cannot read '%s/demo-cert.pem': No such file or directory",
             dir);
    assert_string_equal(err, want);
    struct stat st;
    assert_int_not_equal(stat(dir, &st), 0);
}

static void test_default_config_odd_dir(void **state)
{
    (void)state;
    char dir[600], path[700];
    /* Quotes and backslashes must survive the YAML substitution. */
    put_demo_files("st\"a\\te: #x");
    snprintf(dir, sizeof(dir), "%s/st\"a\\te: #x", g_dir);
    struct tg_config *cfg = NULL;
    char err[TG_CONFIG_ERRLEN] = "";
    int rc = tg_config_load_default(dir, &cfg, err, sizeof(err));
    if (rc != TG_OK)
        print_error("%s\n", err);
    assert_int_equal(rc, TG_OK);
    assert_string_equal(cfg->state_dir, dir);
    snprintf(path, sizeof(path), "%s/demo-key.pem", dir);
    assert_string_equal(cfg->listeners[0].tls.certs[0].private_key.filename, path);
    tg_config_free(cfg);

    /* Unusable names, refused the same way by the check and the load. */
    assert_int_equal(tg_config_check_state_dir(dir, err, sizeof(err)), TG_OK);
    assert_int_equal(tg_config_check_state_dir("", err, sizeof(err)), TG_EINVAL);
    assert_string_equal(err, "<embedded default>: no state directory given");
    assert_int_equal(tg_config_check_state_dir(NULL, err, sizeof(err)), TG_EINVAL);
    assert_int_equal(tg_config_check_state_dir("a\nb", err, sizeof(err)), TG_ECONFIG);
    assert_string_equal(err,
                        "<embedded default>: the state directory name contains control characters");
    assert_int_equal(tg_config_check_state_dir("a\x7f", NULL, 0), TG_ECONFIG);
    cfg = (struct tg_config *)1;
    assert_int_equal(tg_config_load_default("", &cfg, err, sizeof(err)), TG_EINVAL);
    assert_null(cfg);
    assert_string_equal(err, "<embedded default>: no state directory given");
    assert_int_equal(tg_config_load_default("a\nb", &cfg, err, sizeof(err)), TG_ECONFIG);
    assert_string_equal(err,
                        "<embedded default>: the state directory name contains control characters");
    assert_int_equal(tg_config_load_default(dir, NULL, err, sizeof(err)), TG_EINVAL);
}

/* tls.key_exchange_provider: the same block as private_key_provider, at the
 * listener, with its own path and marks; no Envoy-style private_key there. */
static void test_key_exchange_provider(void **state)
{
    (void)state;
    struct tg_config *cfg = NULL;
    char err[TG_CONFIG_ERRLEN];
    char cert_pem[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    char key_pem[] = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";
    const char *c = tg_test_write_file("kx.crt", cert_pem, strlen(cert_pem));
    char cpath[600];
    snprintf(cpath, sizeof(cpath), "%s", c);
    const char *k = tg_test_write_file("kx.key", key_pem, strlen(key_pem));
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "listeners:\n"
             "  - address: 127.0.0.1:8443\n"
             "    upstream: { address: 127.0.0.1:8080 }\n"
             "    tls:\n"
             "      key_exchange_provider:\n"
             "        provider_name: cryptomb\n"
             "        fallback: false\n"
             "        typed_config: { poll_delay: 250us, key_pool: 8 }\n"
             "      certificates:\n"
             "        - certificate_chain: { filename: %s }\n"
             "          private_key: { filename: %s }\n",
             cpath, k);
    assert_int_equal(tg_config_load_buffer("gw.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)),
                     TG_OK);
    const struct tg_conf_tls *t = &cfg->listeners[0].tls;
    assert_true(t->has_kx_provider);
    assert_string_equal(t->kx_provider.provider_name, "cryptomb");
    assert_false(t->kx_provider.fallback);
    assert_int_equal(t->kx_provider.poll_delay_ns, 250000);
    assert_string_equal(t->kx_provider.path, "listeners[0].tls.key_exchange_provider");
    assert_int_equal(t->kx_provider.mark.line, 6);
    assert_int_equal(t->kx_provider.typed_config.n, 1);
    assert_string_equal(t->kx_provider.typed_config.v[0].key, "key_pool");
    assert_true(cfg->listeners[0].tls.certs[0].keyprov.fallback);
    tg_config_free(cfg);
    /* private_key is not special here: it is an ordinary typed_config key. */
    snprintf(yaml, sizeof(yaml),
             "listeners:\n"
             "  - address: 127.0.0.1:8443\n"
             "    upstream: { address: 127.0.0.1:8080 }\n"
             "    tls:\n"
             "      key_exchange_provider: { provider_name: nope }\n"
             "      certificates:\n"
             "        - certificate_chain: { filename: %s }\n"
             "          private_key: { filename: %s }\n",
             cpath, k);
    assert_int_equal(tg_config_load_buffer("gw.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)),
                     TG_ECONFIG);
    assert_non_null(strstr(err, "gw.yaml:5:"));
    assert_non_null(strstr(err, "listeners[0].tls.key_exchange_provider.provider_name: unknown "
                                "provider 'nope'"));
}

/* A provider that holds keys: private_key (and certificate_chain) may be
 * left out when a private_key_provider block is given; the provider's
 * settings may be one-level mappings (flattened to dotted keys). */
static void test_provider_held_keys(void **state)
{
    (void)state;
    struct tg_config *cfg =
        load_ok("listeners:\n"
                "  - address: 127.0.0.1:8443\n"
                "    tls:\n"
                "      certificates:\n"
                "        - private_key_provider:\n"
                "            provider_name: deferred\n"
                "            fallback: false\n"
                "            typed_config:\n"
                "              key: \"pkcs11:object=a\"\n"
                "              pin: { filename: pin.txt }\n"
                "              threads: 2\n"
                "        - certificate_chain: { filename: @DIR@/certs/server.pem }\n"
                "          private_key_provider: { provider_name: deferred }\n" UPSTREAM);
    const struct tg_conf_cert *c = &cfg->listeners[0].tls.certs[0];
    assert_null(c->chain.data);
    assert_null(c->private_key.data);
    assert_true(c->keyprov.fallback_set);
    assert_false(c->keyprov.fallback);
    assert_int_equal(c->keyprov.fallback_mark.line, 7);
    assert_int_equal(c->keyprov.fallback_mark.col, 23);
    const struct tg_conf_params *p = &c->keyprov.typed_config;
    assert_int_equal(p->n, 3);
    assert_string_equal(p->v[0].key, "key");
    assert_string_equal(p->v[1].key, "pin.filename");
    assert_string_equal(p->v[1].value, "pin.txt");
    assert_int_equal(p->v[1].mark.line, 10);
    assert_int_equal(p->v[1].mark.col, 22);
    assert_int_equal(p->v[1].value_mark.col, 32);
    assert_string_equal(p->v[2].key, "threads");
    c = &cfg->listeners[0].tls.certs[1];
    assert_non_null(c->chain.data);
    assert_null(c->private_key.data);
    assert_false(c->keyprov.fallback_set);
    assert_true(c->keyprov.fallback);
    tg_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_provider_held_keys),
        cmocka_unit_test(test_conf_error_format),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_inline_sources),
        cmocka_unit_test(test_envoy_compat_private_key_file),
        cmocka_unit_test(test_relative_paths),
        cmocka_unit_test(test_unreadable_config_file),
        cmocka_unit_test(test_example_file),
        cmocka_unit_test(test_key_exchange_provider),
        cmocka_unit_test(test_err_yaml),
        cmocka_unit_test(test_err_unknown_keys),
        cmocka_unit_test(test_err_types),
        cmocka_unit_test(test_err_missing),
        cmocka_unit_test(test_err_values),
        cmocka_unit_test(test_err_sources),
        cmocka_unit_test(test_known_providers),
        cmocka_unit_test(test_err_null_buffers),
        cmocka_unit_test(test_robustness),
        cmocka_unit_test(test_default_config),
        cmocka_unit_test(test_default_config_odd_dir),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
