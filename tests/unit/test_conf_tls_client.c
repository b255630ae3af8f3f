/*
 * Unit tests for tls.client_certificate in src/config/tg_conf_tls.c: the
 * block's defaults and values, its data sources (file and inline, read at
 * load time, kept for the file watcher), and every error with its exact
 * FILE:LINE:COL and key path. Parsing the PEM is the TLS layer's job
 * (test_mtls.c).
 */
#include "tg_test_util.h"

#include "config/tg_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *g_cert_pem, *g_key_pem;
static char g_dir[512];

/* Lines 1..7 of every configuration below; tls ends with the certificate,
 * so the block under test starts at line 8, column 7. */
#define HEAD                                                                                       \
    "listeners:\n"                                                                                 \
    "  - address: 127.0.0.1:8443\n"                                                                \
    "    upstream: { address: 127.0.0.1:8080 }\n"                                                  \
    "    tls:\n"                                                                                   \
    "      certificates:\n"                                                                        \
    "        - certificate_chain: { filename: @DIR@/server.pem }\n"                                \
    "          private_key: { filename: @DIR@/server.key }\n"
#define CC "listeners[0].tls.client_certificate"

/* s with every "@DIR@" replaced by the test's directory, into buf. */
static void subst(const char *s, char *buf, size_t cap)
{
    size_t o = 0;
    for (const char *p = s; *p != '\0' && o + sizeof(g_dir) + 1 < cap;) {
        if (strncmp(p, "@DIR@", 5) == 0) {
            o += (size_t)snprintf(buf + o, cap - o, "%s", g_dir);
            p += 5;
        } else {
            buf[o++] = *p++;
        }
    }
    buf[o] = '\0';
}

static int load(const char *yaml, struct tg_config **cfg, char *err, size_t errlen)
{
    char buf[4096];
    subst(yaml, buf, sizeof(buf));
    return tg_config_load_buffer("gw.yaml", buf, strlen(buf), cfg, err, errlen);
}

static struct tg_config *load_ok(const char *yaml)
{
    struct tg_config *cfg = NULL;
    char err[TG_CONFIG_ERRLEN] = "";
    int rc = load(yaml, &cfg, err, sizeof(err));
    if (rc != TG_OK)
        print_error("unexpected error: %s\n", err);
    assert_int_equal(rc, TG_OK);
    return cfg;
}

static void load_err(const char *yaml, const char *want_text)
{
    struct tg_config *cfg = (struct tg_config *)1;
    char err[TG_CONFIG_ERRLEN] = "", want[TG_CONFIG_ERRLEN];
    int rc = load(yaml, &cfg, err, sizeof(err));
    subst(want_text, want, sizeof(want));
    if (rc == TG_OK || strcmp(err, want) != 0)
        print_error("%s\n got: %s\nwant: %s\n", yaml, err, want);
    assert_int_equal(rc, TG_ECONFIG);
    assert_null(cfg);
    assert_string_equal(err, want);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "%s", tg_test_tmpdir());
    tg_test_make_cert("EC:P-256", "example.com", &g_cert_pem, &g_key_pem);
    tg_test_write_file("server.pem", g_cert_pem, strlen(g_cert_pem));
    tg_test_write_file("server.key", g_key_pem, strlen(g_key_pem));
    /* The config module only looks for the PEM block's start line. */
    tg_test_write_file("ca.pem", g_cert_pem, strlen(g_cert_pem));
    static const char crl[] = "-----BEGIN X509 CRL-----\nMA==\n-----END X509 CRL-----\n";
    tg_test_write_file("crl.pem", crl, sizeof(crl) - 1);
    tg_test_write_file("unreadable.pem", g_cert_pem, strlen(g_cert_pem));
    char p[600];
    snprintf(p, sizeof(p), "%s/unreadable.pem", g_dir);
    if (chmod(p, 0) != 0)
        return -1;
    /* Relative filenames of a buffer are relative to the working directory. */
    return chdir(g_dir);
}

static int teardown(void **state)
{
    (void)state;
    free(g_cert_pem);
    free(g_key_pem);
    return 0;
}

static void test_absent(void **state)
{
    (void)state;
    struct tg_config *cfg = load_ok(HEAD);
    const struct tg_conf_client_cert *cc = &cfg->listeners[0].tls.client_cert;
    assert_int_equal(cc->mode, TG_CCERT_OFF);
    assert_null(cc->ca.data);
    assert_null(cc->crl.data);
    tg_config_free(cfg);
}

static void test_defaults(void **state)
{
    (void)state;
    struct tg_config *cfg =
        load_ok(HEAD "      client_certificate: { ca: { filename: ca.pem } }\n");
    const struct tg_conf_client_cert *cc = &cfg->listeners[0].tls.client_cert;
    assert_int_equal(cc->mode, TG_CCERT_REQUIRE);
    assert_int_equal(cc->verify_depth, 4);
    assert_string_equal(cc->path, CC);
    assert_int_equal(cc->mark.line, 8);
    assert_int_equal(cc->mark.col, 27);
    /* As written; read into memory. */
    assert_string_equal(cc->ca.filename, "ca.pem");
    assert_int_equal(cc->ca.mark.line, 8);
    assert_null(cc->crl.data);
    tg_config_free(cfg);
}

static void test_values(void **state)
{
    (void)state;
    struct tg_config *cfg = load_ok(HEAD "      client_certificate:\n"
                                         "        ca: { filename: @DIR@/ca.pem }\n"
                                         "        mode: optional\n"
                                         "        crl: { filename: @DIR@/crl.pem }\n"
                                         "        verify_depth: 0\n");
    const struct tg_conf_client_cert *cc = &cfg->listeners[0].tls.client_cert;
    assert_int_equal(cc->mode, TG_CCERT_OPTIONAL);
    assert_int_equal(cc->verify_depth, 0);
    assert_string_equal(cc->ca.data, g_cert_pem);
    assert_non_null(strstr(cc->ca.path, "/ca.pem"));
    assert_non_null(strstr(cc->crl.data, "BEGIN X509 CRL"));
    assert_non_null(strstr(cc->crl.path, "/crl.pem"));
    assert_int_equal(cc->crl.mark.line, 11);
    tg_config_free(cfg);

    cfg = load_ok(HEAD "      client_certificate:\n"
                       "        mode: require\n"
                       "        verify_depth: 16\n"
                       "        ca:\n"
                       "          inline_string: |\n"
                       "            -----BEGIN CERTIFICATE-----\n"
                       "            MA==\n"
                       "            -----END CERTIFICATE-----\n");
    cc = &cfg->listeners[0].tls.client_cert;
    assert_int_equal(cc->mode, TG_CCERT_REQUIRE);
    assert_int_equal(cc->verify_depth, 16);
    assert_null(cc->ca.filename);
    assert_null(cc->ca.path); /* nothing to watch */
    assert_string_equal(cc->ca.data,
                        "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n");
    tg_config_free(cfg);
}

static void test_errors(void **state)
{
    (void)state;
    load_err(HEAD "      client_certificate: { ca: { filename: @DIR@/missing.pem } }\n",
             "gw.yaml:8:45: " CC ".ca.filename: cannot read '@DIR@/missing.pem': No such file or "
             "directory");
    /* Root reads anything: the unreadable case only where permissions hold. */
    if (geteuid() != 0)
        load_err(HEAD "      client_certificate: { ca: { filename: @DIR@/unreadable.pem } }\n",
                 "gw.yaml:8:45: " CC ".ca.filename: cannot read '@DIR@/unreadable.pem': Permission "
                 "denied");
    load_err(HEAD "      client_certificate: { ca: { filename: @DIR@/server.key } }\n",
             "gw.yaml:8:45: " CC ".ca.filename: '@DIR@/server.key' contains no PEM CA certificate "
             "('-----BEGIN CERTIFICATE-----')");
    load_err(HEAD "      client_certificate: { ca: { inline_string: hello } }\n",
             "gw.yaml:8:50: " CC ".ca.inline_string: no PEM CA certificate "
             "('-----BEGIN CERTIFICATE-----') in the string");
    load_err(HEAD "      client_certificate: { ca: { filename: ca.pem }, crl: { filename: "
                  "ca.pem } }\n",
             "gw.yaml:8:72: " CC ".crl.filename: 'ca.pem' contains no PEM CRL "
             "('-----BEGIN X509 CRL-----')");
    load_err(HEAD "      client_certificate: { ca: { filename: ca.pem }, mode: required }\n",
             "gw.yaml:8:61: " CC ".mode: invalid mode 'required' (valid: require, optional)");
    load_err(HEAD "      client_certificate: { ca: { filename: ca.pem }, mode: [require] }\n",
             "gw.yaml:8:61: " CC ".mode: expected a mode, got a sequence");
    load_err(HEAD "      client_certificate: { crl: { filename: @DIR@/crl.pem } }\n",
             "gw.yaml:8:29: " CC ".crl: 'crl' needs 'ca': client certificates are verified "
             "against the CA certificates in 'ca', and a CRL only revokes some of them");
    load_err(HEAD "      client_certificate: { mode: optional }\n",
             "gw.yaml:8:27: " CC ": missing required key 'ca'");
    load_err(HEAD "      client_certificate: { ca: { filename: ca.pem }, verify_depth: 17 }\n",
             "gw.yaml:8:69: " CC ".verify_depth: expected an integer in 0..16, got '17'");
    load_err(HEAD "      client_certificate: { ca: { filename: ca.pem }, depth: 1 }\n",
             "gw.yaml:8:55: " CC ".depth: unknown key 'depth' (allowed: ca, mode, crl, "
             "verify_depth)");
    load_err(HEAD "      client_certificate: require\n",
             "gw.yaml:8:27: " CC ": expected a mapping { ca: ..., mode: require | optional }, "
             "got a scalar");
    load_err(HEAD "      client_certificate:\n",
             "gw.yaml:8:26: " CC ": expected a mapping { ca: ..., mode: require | optional }, "
             "got an empty value");
    load_err(HEAD "      client_certificate: { ca: ca.pem }\n",
             "gw.yaml:8:33: " CC ".ca: expected a mapping { filename: ... } or { inline_string: "
             "... }, got a scalar");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_absent),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
