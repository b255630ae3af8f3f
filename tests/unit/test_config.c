/*
 * Unit tests for src/config's loader and schema (tg_config.c, tg_conf_yaml.c,
 * tg_conf_cursor.c, tg_conf_schema.c, tg_conf_tls.c): valid configurations
 * and their defaults, files and relative paths, the documented example, and
 * the embedded default configuration. Certificates' and keys' settings are
 * test_config_keys.c's, the error messages and robustness
 * test_config_errors.c's (what they share: tg_test_config.h). The scalar
 * parsers and the typed_config helpers have their own tests
 * (test_conf_parse.c, test_conf_params.c); the demo certificate is
 * src/tls's (test_tls_demo.c).
 */
#include "tg_test_config.h"

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
    assert_int_equal(cfg->n_admin_allowed, 2);
    assert_true(cfg->tickets.rotation_ns == 3600 * TG_NS_PER_S);
    assert_true(cfg->cert_expiry_warning_ns == 30 * 86400 * TG_NS_PER_S);
    assert_true(cfg->listeners[0].tls.session_timeout_ns == 3600 * TG_NS_PER_S);
    assert_int_equal(cfg->listeners[0].tls.tls13_tickets, 1);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conf_error_format),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_relative_paths),
        cmocka_unit_test(test_unreadable_config_file),
        cmocka_unit_test(test_example_file),
        cmocka_unit_test(test_default_config),
        cmocka_unit_test(test_default_config_odd_dir),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
