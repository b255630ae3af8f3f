/*
 * Unit tests for src/config's loader and schema: the settings of
 * certificates and keys (tg_conf_tls.c, tg_conf_schema.c): inline PEM
 * sources, the Envoy-style private_key inside typed_config, provider-held
 * keys, tls.key_exchange_provider, session tickets, and the settings the
 * operator warnings read (certificate_expiry_warning, admin.allowed_sources,
 * the mode of key files). The fixture: tg_test_config.h.
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
/* Certificates and keys                                                    */

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

/* session_tickets, tls.session_timeout / tls13_tickets,
 * certificate_expiry_warning, admin.allowed_sources, and the mode of key
 * files. */
static void test_tickets_and_warnings(void **state)
{
    (void)state;
    struct tg_config *cfg = load_ok(L0);
    assert_true(cfg->tickets.rotation_ns == 3600 * TG_NS_PER_S);
    assert_int_equal(cfg->tickets.mark.line, 0);
    assert_true(cfg->cert_expiry_warning_ns == 30 * 86400 * TG_NS_PER_S);
    const struct tg_conf_tls *t = &cfg->listeners[0].tls;
    /* Not given: as long as a key encrypts. */
    assert_true(t->session_timeout_ns == 3600 * TG_NS_PER_S);
    assert_int_equal(t->session_timeout_mark.line, 0);
    assert_int_equal(t->tls13_tickets, 1);
    assert_false(cfg->has_admin);
    assert_int_equal(cfg->n_admin_allowed, 0);
    tg_config_free(cfg);

    cfg = load_ok("session_tickets: { key_rotation_interval: 10m }\n"
                  "certificate_expiry_warning: 14d\n"
                  "admin:\n"
                  "  address: 0.0.0.0:9901\n"
                  "  allowed_sources: [10.0.0.0/8, \"::1\", 192.168.1.0/24, 172.16.0.1]\n"
                  "listeners:\n"
                  "  - address: 127.0.0.1:8443\n"
                  "    tls:\n" CERTS "      tls13_tickets: 0\n" UPSTREAM
                  "  - address: 127.0.0.1:8444\n"
                  "    tls:\n" CERTS "      session_timeout: 2h\n" UPSTREAM);
    assert_true(cfg->tickets.rotation_ns == 600 * TG_NS_PER_S);
    assert_int_equal(cfg->tickets.mark.line, 1);
    assert_true(cfg->cert_expiry_warning_ns == 14 * 86400 * TG_NS_PER_S);
    assert_true(cfg->listeners[0].tls.session_timeout_ns == 600 * TG_NS_PER_S);
    assert_int_equal(cfg->listeners[0].tls.tls13_tickets, 0);
    assert_true(cfg->listeners[1].tls.session_timeout_ns == 7200 * TG_NS_PER_S);
    assert_int_equal(cfg->listeners[1].tls.session_timeout_mark.line, 19);
    assert_int_equal(cfg->n_admin_allowed, 4);
    assert_string_equal(cfg->admin_allowed[1].text, "::1");
    assert_int_equal(cfg->admin_allowed[1].prefix, 128);
    assert_int_equal(cfg->admin_allowed[3].prefix, 32);
    tg_config_free(cfg);

    /* What the key file's mode was when it was read. */
    char path[700];
    snprintf(path, sizeof(path), "%s/certs/server.key", g_dir);
    assert_int_equal(chmod(path, 0640), 0);
    cfg = load_ok(L0);
    const struct tg_conf_datasource *k = &cfg->listeners[0].tls.certs[0].private_key;
    assert_true(k->has_stat);
    assert_int_equal(k->mode, 0640);
    assert_int_equal(k->uid, (uint32_t)geteuid());
    tg_config_free(cfg);
    assert_int_equal(chmod(path, 0600), 0);

    static const struct err_case cases[] = {
        {"session_tickets: { key_rotation_interval: 500ms }\n" L0,
         "gw.yaml:1:43: session_tickets.key_rotation_interval: must be between 1s and 7d"},
        {"session_tickets: { key_rotation_interval: 8d }\n" L0,
         "gw.yaml:1:43: session_tickets.key_rotation_interval: must be between 1s and 7d"},
        {"session_tickets: { rotate: 1h }\n" L0,
         "gw.yaml:1:20: session_tickets.rotate: unknown key 'rotate' (allowed: "
         "key_rotation_interval)"},
        {"certificate_expiry_warning: soon\n" L0,
         "gw.yaml:1:29: certificate_expiry_warning: invalid duration 'soon' (expected a number "
         "and a unit ns, us, ms, s, m, h or d, e.g. 2s, 250ms, 0.001s; whole nanoseconds)"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "      session_timeout: 8d\n" UPSTREAM,
         "gw.yaml:7:24: listeners[0].tls.session_timeout: must be between 1s and 7d (TLS 1.3's "
         "longest ticket lifetime)"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "      tls13_tickets: 17\n" UPSTREAM,
         "gw.yaml:7:22: listeners[0].tls.tls13_tickets: expected an integer in 0..16, got '17'"},
        {"admin: { address: 0.0.0.0:1, allowed_sources: [] }\n" L0,
         "gw.yaml:1:47: admin.allowed_sources: must not be empty (leave the key out instead)"},
        {"admin: { address: 0.0.0.0:1, allowed_sources: [10.0.0.1/8] }\n" L0,
         "gw.yaml:1:48: admin.allowed_sources[0]: '10.0.0.1/8': bits are set beyond the prefix "
         "length (give the network address)"},
        {"admin: { address: 0.0.0.0:1, allowed_sources: [10.0.0.0/33] }\n" L0,
         "gw.yaml:1:48: admin.allowed_sources[0]: '10.0.0.0/33': the prefix length must be "
         "0..32"},
        {"admin: { address: 0.0.0.0:1, allowed_sources: [\"::/129\"] }\n" L0,
         "gw.yaml:1:48: admin.allowed_sources[0]: '::/129': the prefix length must be 0..128"},
        {"admin: { address: 0.0.0.0:1, allowed_sources: [10.0.0.0/8, intranet] }\n" L0,
         "gw.yaml:1:60: admin.allowed_sources[1]: 'intranet': expected an IPv4 or IPv6 address, "
         "optionally with /PREFIX"},
    };
    check_errors(cases, TG_ARRAY_LEN(cases));
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_provider_held_keys),
        cmocka_unit_test(test_tickets_and_warnings),
        cmocka_unit_test(test_inline_sources),
        cmocka_unit_test(test_envoy_compat_private_key_file),
        cmocka_unit_test(test_key_exchange_provider),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
