/* SSL_CTX building from configuration: certificates and keys, SNI grouping,
 * key-exchange routing, and the errors an operator sees. */
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/tg_config.h"
#include "keyprov/tg_keyprov.h"
#include "ossl/tg_ossl.h"
#include "tls/tg_tls.h"
#include "tg_test_util.h"
#include "providers/software/tg_software.h"
#include "providers/deferred/tg_deferred.h"

static int dummy_async_cb(SSL *s, void *arg)
{
    (void)s;
    (void)arg;
    return 1;
}

/* Write PEMs to files and return a config with one listener whose
 * certificates are given as "cert_path|key_path|provider" triples. */
static struct tg_config *load(const char *tls_extra, const char *const *certs, size_t n, char *err,
                              size_t errlen, int *rc)
{
    char yaml[8192];
    int off = snprintf(yaml, sizeof(yaml),
                       "listeners:\n"
                       "  - name: t\n"
                       "    address: 127.0.0.1:0\n"
                       "    upstream: { address: 127.0.0.1:9 }\n"
                       "    tls:\n%s"
                       "      certificates:\n",
                       tls_extra);
    for (size_t i = 0; i < n; i++) {
        char c[256], k[256], p[64];
        if (sscanf(certs[i], "%255[^|]|%255[^|]|%63s", c, k, p) != 3)
            abort();
        off += snprintf(yaml + off, sizeof(yaml) - (size_t)off,
                        "        - certificate_chain: { filename: %s }\n"
                        "          private_key: { filename: %s }\n"
                        "          private_key_provider: { provider_name: %s }\n",
                        c, k, p);
    }
    struct tg_config *cfg = NULL;
    *rc = tg_config_load_buffer("t.yaml", yaml, strlen(yaml), &cfg, err, errlen);
    return cfg;
}

static char cert_rsa_a[256], key_rsa_a[256], cert_ec_a[256], key_ec_a[256];
static char cert_rsa_b[256], key_rsa_b[256];

static void make(const char *alg, const char *cn, char *cpath, char *kpath, const char *tag)
{
    char *c, *k;
    char name[64];
    tg_test_make_cert(alg, cn, &c, &k);
    snprintf(name, sizeof(name), "%s.crt", tag);
    snprintf(cpath, 256, "%s", tg_test_write_file(name, c, strlen(c)));
    snprintf(name, sizeof(name), "%s.key", tag);
    snprintf(kpath, 256, "%s", tg_test_write_file(name, k, strlen(k)));
    free(c);
    free(k);
}

static int setup(void **state)
{
    (void)state;
    if (tg_ossl_init() != TG_OK)
        return -1;
    tg_config_set_known_providers(tg_keyprov_names());
    make("RSA:2048", "a.example", cert_rsa_a, key_rsa_a, "rsa_a");
    make("EC:P-256", "a.example", cert_ec_a, key_ec_a, "ec_a");
    make("RSA:2048", "b.example", cert_rsa_b, key_rsa_b, "rsa_b");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tg_keyprov_shutdown();
    tg_ossl_cleanup();
    return 0;
}

static void test_name_matches(void **state)
{
    (void)state;
    assert_true(tg_tls_name_matches("example.com", "EXAMPLE.com"));
    assert_true(tg_tls_name_matches("*.example.com", "www.example.com"));
    assert_false(tg_tls_name_matches("*.example.com", "example.com"));
    assert_false(tg_tls_name_matches("*.example.com", "a.b.example.com"));
    assert_false(tg_tls_name_matches("*.example.com", ".example.com"));
    assert_false(tg_tls_name_matches("www.example.com", "example.com"));
    assert_false(tg_tls_name_matches(NULL, "x"));
    assert_false(tg_tls_name_matches("x", NULL));
}

static void build_ok(const char *extra, const char *const *certs, size_t n, bool expect_kx)
{
    char err[1024] = "";
    int rc;
    struct tg_config *cfg = load(extra, certs, n, err, sizeof(err), &rc);
    if (rc != TG_OK)
        fail_msg("config: %s", err);
    struct tg_tls_listener *t = NULL;
    rc = tg_tls_listener_new(&cfg->listeners[0], dummy_async_cb, &t, err, sizeof(err));
    if (rc != TG_OK)
        fail_msg("tls: %s", err);
    assert_non_null(tg_tls_listener_ctx(t));
    assert_int_equal(tg_tls_listener_kx(t) != NULL, expect_kx);
    assert_true(SSL_CTX_get_mode(tg_tls_listener_ctx(t)) & SSL_MODE_ASYNC);
    tg_tls_listener_describe(t, "t");
    tg_tls_listener_free(t);
    tg_config_free(cfg);
}

static void test_build(void **state)
{
    (void)state;
    char c1[600], c2[600], c3[600];
    snprintf(c1, sizeof(c1), "%s|%s|software", cert_rsa_a, key_rsa_a);
    snprintf(c2, sizeof(c2), "%s|%s|software", cert_ec_a, key_ec_a);
    snprintf(c3, sizeof(c3), "%s|%s|deferred", cert_rsa_b, key_rsa_b);
    const char *one[] = {c1};
    build_ok("", one, 1, false);
    /* RSA + ECDSA for the same names share a context; another name gets its own. */
    const char *three[] = {c1, c2, c3};
    build_ok("      alpn: [h2, http/1.1]\n      session_resumption: false\n", three, 3, false);
    /* The first certificate's provider takes key exchange: deferred does. */
    const char *kx[] = {c3, c1};
    build_ok("      groups: \"X25519:P-256\"\n", kx, 2, true);
    /* An explicit key_exchange_provider overrides the certificates'. */
    build_ok("      key_exchange_provider: { provider_name: deferred }\n", one, 1, true);
    build_ok("      key_exchange_provider: { provider_name: software }\n", kx, 2, false);
    build_ok("      key_exchange_provider:\n"
             "        provider_name: deferred\n"
             "        typed_config: { key_exchange: false }\n",
             kx, 2, false);
}

/* What /stats reports per certificate: names, serial, expiry. */
static void test_cert_info(void **state)
{
    (void)state;
    char c1[600], c3[600];
    snprintf(c1, sizeof(c1), "%s|%s|software", cert_rsa_a, key_rsa_a);
    snprintf(c3, sizeof(c3), "%s|%s|deferred", cert_rsa_b, key_rsa_b);
    const char *two[] = {c1, c3};
    char err[1024] = "";
    int rc;
    struct tg_config *cfg = load("", two, 2, err, sizeof(err), &rc);
    if (rc != TG_OK)
        fail_msg("config: %s", err);
    struct tg_tls_listener *t = NULL;
    if (tg_tls_listener_new(&cfg->listeners[0], dummy_async_cb, &t, err, sizeof(err)) != TG_OK)
        fail_msg("tls: %s", err);
    assert_int_equal(tg_tls_listener_cert_count(t), 2);
    const char *paths[] = {cert_rsa_a, cert_rsa_b};
    const char *names[] = {"a.example", "b.example"};
    for (size_t i = 0; i < 2; i++) {
        FILE *f = fopen(paths[i], "r");
        assert_non_null(f);
        X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
        fclose(f);
        assert_non_null(x);
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
        char *hex = BN_bn2hex(bn);
        int day = 0, sec = 0;
        assert_int_equal(ASN1_TIME_diff(&day, &sec, NULL, X509_get0_notAfter(x)), 1);
        struct tg_tls_cert_info info;
        tg_tls_listener_cert_info(t, i, &info);
        assert_string_equal(info.names, names[i]);
        assert_string_equal(info.serial, hex);
        int64_t want = (int64_t)time(NULL) + (int64_t)day * 86400 + sec;
        assert_true(info.not_after >= want - 5 && info.not_after <= want + 5);
        OPENSSL_free(hex);
        BN_free(bn);
        X509_free(x);
    }
    tg_tls_listener_free(t);
    tg_config_free(cfg);
}

static void build_err(const char *extra, const char *const *certs, size_t n, const char *want1,
                      const char *want2)
{
    char err[1024] = "";
    int rc;
    struct tg_config *cfg = load(extra, certs, n, err, sizeof(err), &rc);
    if (rc != TG_OK)
        fail_msg("config: %s", err);
    struct tg_tls_listener *t = NULL;
    rc = tg_tls_listener_new(&cfg->listeners[0], dummy_async_cb, &t, err, sizeof(err));
    assert_int_not_equal(rc, TG_OK);
    assert_null(t);
    if (strstr(err, want1) == NULL || (want2 && strstr(err, want2) == NULL))
        fail_msg("unexpected error text: %s", err);
    assert_non_null(strstr(err, "t.yaml:"));
    tg_config_free(cfg);
}

static void test_errors(void **state)
{
    (void)state;
    char mismatch[600], dup[600], ok[600];
    snprintf(mismatch, sizeof(mismatch), "%s|%s|software", cert_rsa_a, key_rsa_b);
    snprintf(ok, sizeof(ok), "%s|%s|software", cert_rsa_a, key_rsa_a);
    snprintf(dup, sizeof(dup), "%s|%s|deferred", cert_rsa_a, key_rsa_a);
    const char *m[] = {mismatch};
    build_err("", m, 1, "certificates[0].private_key", "does not match");
    const char *d[] = {ok, dup};
    build_err("", d, 2, "certificates[1]", "already serves the same names");
    const char *o[] = {ok};
    build_err("      groups: \"X25519:nonsense\"\n", o, 1, "tls.groups", "nonsense");
    build_err("      cipher_list: \"NOT-A-CIPHER\"\n", o, 1, "tls.cipher_list", NULL);
    build_err("      cipher_list: \"ECDHE-RSA-AES128-GCM-SHA256:AES128-GCM-SHA256\"\n", o, 1,
              "tls.cipher_list", "RSA key exchange");
    build_err("      cipher_suites: \"TLS_FAKE\"\n", o, 1, "tls.cipher_suites", NULL);
    build_err("      key_exchange_provider:\n"
              "        provider_name: deferred\n"
              "        typed_config: { colour: blue }\n",
              o, 1, "tls.key_exchange_provider.typed_config.colour", "unknown key");
    /* A file that is not a certificate. */
    char bad[600];
    snprintf(bad, sizeof(bad), "%s|%s|software", key_rsa_a, key_rsa_a);
    char err[1024];
    int rc;
    const char *b[] = {bad};
    struct tg_config *cfg = load("", b, 1, err, sizeof(err), &rc);
    if (cfg != NULL) {
        struct tg_tls_listener *t = NULL;
        rc = tg_tls_listener_new(&cfg->listeners[0], dummy_async_cb, &t, err, sizeof(err));
        assert_int_not_equal(rc, TG_OK);
        assert_non_null(strstr(err, "certificate_chain"));
        tg_config_free(cfg);
    } else {
        assert_non_null(strstr(err, "certificate_chain"));
    }

    /* No private_key: only a provider that holds keys can serve it. */
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "listeners:\n"
             "  - address: 127.0.0.1:0\n"
             "    upstream: { address: 127.0.0.1:9 }\n"
             "    tls:\n"
             "      certificates:\n"
             "        - certificate_chain: { filename: %s }\n"
             "          private_key_provider: { provider_name: deferred }\n",
             cert_rsa_a);
    assert_int_equal(tg_config_load_buffer("t.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)),
                     TG_OK);
    struct tg_tls_listener *t = NULL;
    assert_int_equal(tg_tls_listener_new(&cfg->listeners[0], dummy_async_cb, &t, err, sizeof(err)),
                     TG_ECONFIG);
    assert_string_equal(err, "t.yaml:7:33: listeners[0].tls.certificates[0].private_key_provider: "
                             "provider 'deferred' does not hold private keys: give the "
                             "certificate's private_key");
    assert_null(t);
    tg_config_free(cfg);
}

int main(void)
{
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider, &tg_deferred_provider);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_matches),
        cmocka_unit_test(test_build),
        cmocka_unit_test(test_cert_info),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
