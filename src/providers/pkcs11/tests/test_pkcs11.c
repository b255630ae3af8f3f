/*
 * The pkcs11 provider end to end in memory, against the fault-injecting fake
 * module (harness: p11_test_util.h): RSA (PSS, PKCS#1 v1.5, native and raw
 * mechanisms) and ECDSA signatures; the certificate read from the token;
 * start-up errors (wrong PIN naming the token, missing object, a library
 * that is not a PKCS#11 module, typed_config errors with positions); the
 * PIN sources; the doctor's listing, with and without a configuration.
 * Faults while serving are in test_pkcs11_faults.c.
 */
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>

#include "p11_test_util.h"
#include "providers/pkcs11/tg_pkcs11.h"

static void test_signatures(void **state)
{
    (void)state;
    struct conf c;
    struct pair p;
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    pair_init(&p, &c);
    assert_true(p.b->held);
    assert_true(tg_pkey_is_held(p.key));
    unsigned long signs = fake_stat("signs");
    conn_new(&p, TLS1_3_VERSION, NULL); /* RSA-PSS, CKM_RSA_PKCS_PSS */
    assert_int_equal(handshake(&p), 1);
    conn_new(&p, TLS1_2_VERSION, "RSA+SHA256"); /* PKCS#1 v1.5, CKM_RSA_PKCS */
    assert_int_equal(handshake(&p), 1);
    conn_new(&p, TLS1_2_VERSION, "RSA-PSS+SHA512");
    assert_int_equal(handshake(&p), 1);
    assert_int_equal(fake_stat("signs"), signs + 3);
    assert_int_equal(OPS("ok"), 3); /* the start-up self-test is not counted */
    pair_free(&p);

    conf_init(&c, "pkcs11:object=ec;id=%02;type=private", "1234");
    pair_init(&p, &c);
    signs = fake_stat("signs");
    long long ec_before = stat_value("tlsgate_keyprov_operations_completed_total{provider="
                                     "\"pkcs11\",type=\"ecdsa_sign\"}");
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(handshake(&p), 1);
    conn_new(&p, TLS1_2_VERSION, "ECDSA+SHA384");
    assert_int_equal(handshake(&p), 1);
    assert_int_equal(fake_stat("signs"), signs + 2);
    assert_int_equal(stat_value("tlsgate_keyprov_operations_completed_total{provider=\"pkcs11\","
                                "type=\"ecdsa_sign\"}"),
                     ec_before + 2);
    assert_int_equal(stat_value("tlsgate_pkcs11_sign_seconds_count{token=\"fake\"}"), 5);
    pair_free(&p);
}

static void test_raw_mechanisms(void **state)
{
    (void)state;
    struct conf c;
    struct pair p;
    /* The token has no CKM_RSA_PKCS_PSS: tlsgate encodes PSS itself. */
    fake_control("no_pss=1");
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    pair_init(&p, &c);
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(handshake(&p), 1);
    pair_free(&p);
    /* rsa_mechanism: raw uses CKM_RSA_X_509 for both encodings. */
    fake_control("no_pss=0");
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    conf_add(&c, "rsa_mechanism", "raw");
    pair_init(&p, &c);
    conn_new(&p, TLS1_2_VERSION, "RSA+SHA384");
    assert_int_equal(handshake(&p), 1);
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(handshake(&p), 1);
    pair_free(&p);
    /* native without PSS on the token: refused at start-up. */
    fake_control("no_pss=1");
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    conf_add(&c, "rsa_mechanism", "native");
    char err[1024];
    assert_int_not_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_OK);
    assert_string_equal(err, "gw.yaml:5:11: tls.certificates[0].private_key_provider: token "
                             "'fake': key 'pkcs11:token=fake;object=rsa': TLS 1.3 needs RSA-PSS "
                             "signatures and the token offers no CKM_RSA_PKCS_PSS "
                             "(rsa_mechanism: native)");
}

static void test_startup_errors(void **state)
{
    (void)state;
    struct conf c;
    struct pair p;
    char err[1024];
    conf_init(&c, "pkcs11:token=fake;object=rsa", "0000");
    assert_int_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_ECONFIG);
    assert_string_equal(err, "gw.yaml:5:11: tls.certificates[0].private_key_provider: token "
                             "'fake': login failed: CKR_PIN_INCORRECT (wrong PIN)");
    tg_keyprov_shutdown();
    conf_init(&c, "pkcs11:token=fake;object=nope", "1234");
    assert_int_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_ECONFIG);
    assert_string_equal(err, "gw.yaml:5:11: tls.certificates[0].private_key_provider: no private "
                             "key 'pkcs11:token=fake;object=nope' on token 'fake'");
    conf_init(&c, "pkcs11:token=other;object=rsa", "1234");
    assert_int_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "no token matching 'pkcs11:token=other' in PKCS#11 module"));
    assert_non_null(strstr(err, "(tokens present: 'fake')"));
    /* No PIN for a token that needs one. */
    conf_init(&c, "pkcs11:token=fake;object=rsa", NULL);
    tg_keyprov_shutdown();
    assert_int_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "token 'fake' requires a login: set the provider's 'pin'"));
    /* A library that is not a PKCS#11 module, and no library at all. */
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    c.p[0].value = (char *)"libc.so.6";
    assert_int_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_EUNAVAIL);
    assert_string_equal(err, "gw.yaml:5:11: tls.certificates[0].private_key_provider: "
                             "'libc.so.6' is not a PKCS#11 module (it has no C_GetFunctionList)");
    c.p[0].value = (char *)"/nonexistent/module.so";
    assert_int_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_EUNAVAIL);
    assert_non_null(strstr(err, "cannot load PKCS#11 module '/nonexistent/module.so'"));
    /* The certificate must be on the token when certificate_chain is absent. */
    conf_init(&c, "pkcs11:token=fake;object=nocert", "1234");
    X509 *leaf = NULL;
    assert_int_equal(bind_key(&c, &p, &leaf, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "no certificate object with the key's id or label: give the "
                                "certificate with certificate_chain"));
    assert_null(leaf);
    /* ... but with certificate_chain the same key is fine. */
    assert_int_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_OK);
    tg_pkey_unref(p.key);
    tg_keyprov_binding_free(p.b);
}

static void conf_err(struct conf *c, const char *want)
{
    struct pair p;
    char err[1024] = "";
    assert_int_equal(bind_key(c, &p, NULL, err, sizeof(err)), TG_ECONFIG);
    if (strcmp(err, want) != 0)
        fail_msg("\n got: %s\nwant: %s", err, want);
}

#define TC "gw.yaml:5:11: tls.certificates[0].private_key_provider.typed_config"

static void test_config_errors(void **state)
{
    (void)state;
    struct conf c;
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    c.kp.typed_config.n = 1;
    conf_err(&c, TC ": missing required key 'key' (a PKCS#11 URI, e.g. "
                    "\"pkcs11:token=NAME;object=LABEL\")");
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    c.p[0].key = (char *)"modul";
    conf_err(&c, "gw.yaml:8:13: tls.certificates[0].private_key_provider.typed_config.modul: "
                 "unknown key 'modul' for provider 'pkcs11'");
    conf_init(&c, "pkcs11:token=my token", "1234");
    conf_err(&c, "gw.yaml:9:13: tls.certificates[0].private_key_provider.typed_config.key: "
                 "token: ' ' must be percent-encoded as %20");
    conf_init(&c, "pkcs11:token=fake", "1234");
    conf_err(&c, "gw.yaml:9:13: tls.certificates[0].private_key_provider.typed_config.key: the "
                 "URI names no object: add object=LABEL and/or id=ID");
    conf_init(&c, "pkcs11:token=fake;object=rsa;type=cert", "1234");
    conf_err(&c, "gw.yaml:9:13: tls.certificates[0].private_key_provider.typed_config.key: type "
                 "must be 'private' (the private key object)");
    conf_init(&c, "pkcs11:token=fake;object=rsa?pin-value=1234", "1234");
    conf_err(&c, "gw.yaml:9:13: tls.certificates[0].private_key_provider.typed_config.key: "
                 "'pin-value' is not accepted in the key URI: give the PIN with the provider's "
                 "'pin' setting (a key URI is logged, a PIN never is)");
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    conf_add(&c, "pin.filename", "/run/pin");
    conf_err(&c, "gw.yaml:11:13: tls.certificates[0].private_key_provider.typed_config."
                 "pin.filename: give only one of pin.filename, pin.environment_variable and "
                 "pin.inline_string");
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    conf_add(&c, "pin.file", "/run/pin");
    conf_err(&c, "gw.yaml:11:13: tls.certificates[0].private_key_provider.typed_config.pin.file: "
                 "unknown key 'pin.file' for provider 'pkcs11'");
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    conf_add(&c, "threads", "0");
    conf_err(&c, "gw.yaml:11:13: tls.certificates[0].private_key_provider.typed_config.threads: "
                 "expected an integer in 1..64, got '0'");
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    conf_add(&c, "timeout", "2m");
    conf_err(&c, "gw.yaml:11:13: tls.certificates[0].private_key_provider.typed_config.timeout: "
                 "expected a duration from 1ms to 60s");
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    conf_add(&c, "rsa_mechanism", "fast");
    conf_err(&c, "gw.yaml:11:13: tls.certificates[0].private_key_provider.typed_config."
                 "rsa_mechanism: expected auto, native or raw, got 'fast'");
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    conf_add(&c, "key_exchange", "true");
    conf_err(&c, "gw.yaml:11:13: tls.certificates[0].private_key_provider.typed_config."
                 "key_exchange: pkcs11 does not do key exchange (the token only signs)");
    /* fallback: true written out is refused: no software copy. */
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    c.kp.fallback_set = true;
    c.kp.fallback_mark = (struct tg_conf_mark){"gw.yaml", 6, 23};
    conf_err(&c, "gw.yaml:6:23: tls.certificates[0].private_key_provider.fallback: provider "
                 "'pkcs11' holds this certificate's private key: there is no software copy to "
                 "fall back to (remove fallback or set it to false)");
}

static void test_pin_sources(void **state)
{
    (void)state;
    struct conf c;
    struct pair p;
    char err[1024];
    const char *file = tg_test_write_file("pin.txt", "1234\n", 5);
    conf_init(&c, "pkcs11:token=fake;object=ec", NULL);
    conf_add(&c, "pin.filename", file);
    assert_int_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_OK);
    tg_pkey_unref(p.key);
    tg_keyprov_binding_free(p.b);
    tg_keyprov_shutdown();
    setenv("TG_TEST_P11_PIN", "1234", 1);
    conf_init(&c, "pkcs11:token=fake;object=ec", NULL);
    conf_add(&c, "pin.environment_variable", "TG_TEST_P11_PIN");
    assert_int_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_OK);
    tg_pkey_unref(p.key);
    tg_keyprov_binding_free(p.b);
    tg_keyprov_shutdown();
    conf_init(&c, "pkcs11:token=fake;object=ec", NULL);
    conf_add(&c, "pin.environment_variable", "TG_TEST_P11_NO_SUCH_VAR");
    assert_int_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "token 'fake': PIN: environment variable TG_TEST_P11_NO_SUCH_VAR "
                                "is not set"));
    conf_init(&c, "pkcs11:token=fake;object=ec", NULL);
    conf_add(&c, "pin.filename", "/nonexistent/pin");
    assert_int_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "PIN: cannot read '/nonexistent/pin': No such file or directory"));
    /* A PIN never appears in a message. */
    conf_init(&c, "pkcs11:token=fake;object=ec", "s3cr3t-pin");
    assert_int_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_ECONFIG);
    assert_null(strstr(err, "s3cr3t"));
}

static void test_cert_from_token(void **state)
{
    (void)state;
    struct conf c;
    struct pair p;
    char err[1024];
    X509 *leaf = NULL;
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    assert_int_equal(bind_key(&c, &p, &leaf, err, sizeof(err)), TG_OK);
    FILE *f = fopen(g_rsa_cert, "r");
    X509 *want = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_int_equal(X509_cmp(leaf, want), 0);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(leaf), p.key->pub), 1);
    X509_free(want);
    X509_free(leaf);
    tg_pkey_unref(p.key);
    tg_keyprov_binding_free(p.b);
}

static void test_doctor(void **state)
{
    (void)state;
    struct tg_buf text = TG_BUF_INIT, json = TG_BUF_INIT;
    unsetenv("TLSGATE_PKCS11_MODULE");
    tg_pkcs11_provider.doctor(&text, &json);
    assert_non_null(strstr(text.data, "TLSGATE_PKCS11_MODULE=/path/to/module.so"));
    tg_buf_reset(&text);
    tg_buf_reset(&json);
    setenv("TLSGATE_PKCS11_MODULE", TG_FAKE_P11 ":libc.so.6", 1);
    tg_pkcs11_provider.doctor(&text, &json);
    unsetenv("TLSGATE_PKCS11_MODULE");
    assert_non_null(strstr(text.data, "slot 7: token 'fake' (tlsgate tests fake, serial 0001): "
                                      "login required, user PIN set"));
    assert_non_null(strstr(text.data, "signing: CKM_RSA_PKCS yes, CKM_RSA_PKCS_PSS yes, "
                                      "CKM_RSA_X_509 yes, CKM_ECDSA yes"));
    assert_non_null(strstr(text.data, "pkcs11:token=fake;object=rsa;id=%01;type=public  RSA 2048"));
    assert_non_null(strstr(text.data, "pkcs11:token=fake;object=ec;id=%02;type=public  EC P-256"));
    assert_non_null(
        strstr(text.data, "pkcs11:token=fake;object=rsa;id=%01;type=cert  /CN=p11.test"));
    assert_non_null(strstr(text.data, "module libc.so.6: not usable: 'libc.so.6' is not a PKCS#11 "
                                      "module"));
    assert_non_null(strstr(json.data, "\"modules\":[{\"path\":"));
    assert_non_null(strstr(json.data, "\"label\":\"fake\""));
    assert_null(strstr(text.data, "1234"));
    tg_buf_reset(&text);
    tg_buf_reset(&json);

    /* doctor --config: the configuration's modules, and for each configured
     * key whether its token is there and what is visible without login. */
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "listeners:\n"
             "  - address: 127.0.0.1:0\n"
             "    tls:\n"
             "      certificates:\n"
             "        - private_key_provider:\n"
             "            provider_name: pkcs11\n"
             "            typed_config:\n"
             "              module: %s\n"
             "              key: \"pkcs11:token=fake;object=rsa\"\n"
             "              pin: { filename: /nonexistent/pin }\n"
             "        - private_key_provider:\n"
             "            provider_name: pkcs11\n"
             "            typed_config: { module: %s, key: \"pkcs11:token=other;id=%%01\" }\n"
             "        - private_key_provider:\n"
             "            provider_name: pkcs11\n"
             "            typed_config: { module: libc.so.6, key: \"pkcs11:object=x\" }\n"
             "        - private_key_provider:\n"
             "            provider_name: pkcs11\n"
             "            typed_config: { modul: %s, key: \"pkcs11:object=x\" }\n"
             "    upstream: { address: 127.0.0.1:1 }\n",
             TG_FAKE_P11, TG_FAKE_P11, TG_FAKE_P11);
    struct tg_config *cfg = NULL;
    char err[1024] = "";
    if (tg_config_load_buffer("doc.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)) != TG_OK)
        fail_msg("config: %s", err);
    unsigned long logins = fake_stat("logins");
    tg_keyprov_set_doctor_config(cfg);
    tg_pkcs11_provider.doctor(&text, &json);
    tg_keyprov_set_doctor_config(NULL);
    tg_config_free(cfg);
    if (getenv("TG_TEST_DEBUG"))
        fprintf(stderr, "%s\n%s\n", text.data, json.data);
    assert_non_null(strstr(text.data, "configured: listeners[0].tls.certificates[0]."
                                      "private_key_provider: pkcs11:token=fake;object=rsa\n"
                                      "    token 'fake' found; without login: 0 private key(s), "
                                      "1 public key(s), 1 certificate(s) match (private keys are "
                                      "hidden until login)\n"));
    assert_non_null(strstr(text.data, "configured: listeners[0].tls.certificates[1]."
                                      "private_key_provider: pkcs11:token=other;id=%01\n"));
    assert_non_null(strstr(text.data, "module libc.so.6: not usable: "));
    assert_non_null(strstr(text.data, "configured: listeners[0].tls.certificates[2]."
                                      "private_key_provider: pkcs11:object=x\n"
                                      "    the module is not usable (above)\n"));
    assert_non_null(strstr(text.data, "configured: listeners[0].tls.certificates[3]."
                                      "private_key_provider: not usable: doc.yaml:"));
    assert_non_null(strstr(text.data, "unknown key 'modul'"));
    /* Each module once, the configured ones first; the doctor never logs in. */
    const char *mod = strstr(text.data, "module " TG_FAKE_P11 ":");
    assert_non_null(mod);
    assert_null(strstr(mod + 1, "module " TG_FAKE_P11 ":"));
    assert_non_null(strstr(json.data, "\"configured\":[{\"path\":"));
    assert_int_equal(fake_stat("logins"), logins);
    tg_buf_free(&text);
    tg_buf_free(&json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_signatures, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_raw_mechanisms, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_startup_errors, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_config_errors, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_pin_sources, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_cert_from_token, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_doctor, setup_each, teardown_each),
    };
    return p11_test_run("test_pkcs11", tests, TG_ARRAY_LEN(tests));
}
