/*
 * Unit tests for src/config/tg_conf_params.c: the typed_config helpers key
 * providers call (lookup and marking, typed values, exact messages with the
 * key's position, unused keys). The parameters come from a real load, so the
 * positions are those an operator would see.
 */
#include "tg_test_util.h"

#include "config/tg_config.h"
#include "core/tg_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

/* Pieces of a valid configuration. */
#define CERT_FILES                                                                                 \
    "        - certificate_chain: { filename: @DIR@/certs/server.pem }\n"                          \
    "          private_key: { filename: @DIR@/certs/server.key }\n"
#define CERTS    "      certificates:\n" CERT_FILES
#define UPSTREAM "    upstream: { address: 127.0.0.1:8080 }\n"
#define KP       "listeners[0].tls.certificates[0].private_key_provider"

/* ------------------------------------------------------------------------ */
/* Fixtures                                                                 */

static int group_setup(void **state)
{
    (void)state;
    char path[600];
    snprintf(g_dir, sizeof(g_dir), "%s", tg_test_tmpdir());
    snprintf(path, sizeof(path), "%s/certs", g_dir);
    if (mkdir(path, 0700) != 0)
        return -1;
    tg_test_make_cert("EC:P-256", "example.com", &g_cert_pem, &g_key_pem);
    tg_test_write_file("certs/server.pem", g_cert_pem, strlen(g_cert_pem));
    tg_test_write_file("certs/server.key", g_key_pem, strlen(g_key_pem));
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
/* typed_config helpers                                                     */

static void test_params_helpers(void **state)
{
    (void)state;
    struct tg_config *cfg = load_ok("listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
                                    "          private_key_provider:\n"
                                    "            provider_name: deferred\n"
                                    "            typed_config:\n"
                                    "              delay: 2ms\n"
                                    "              fail_every: 3\n"
                                    "              fail_mode: error\n"
                                    "              key_exchange: false\n"
                                    "              ratio: 0.25\n"
                                    "              bad_int: x1\n"
                                    "              list: [a, b]\n"
                                    "              foo: 1\n" UPSTREAM);
    const struct tg_conf_params *p = &cfg->listeners[0].tls.certs[0].keyprov.typed_config;
    char err[TG_CONFIG_ERRLEN] = "";
    assert_int_equal(p->n, 8);

    uint64_t d = 0, u = 0;
    bool b = true;
    double r = 0;
    const char *s = NULL;
    assert_int_equal(tg_conf_params_duration(p, "delay", &d, err, sizeof(err)), TG_OK);
    assert_true(d == 2 * TG_NS_PER_MS);
    assert_int_equal(tg_conf_params_u64(p, "fail_every", 0, UINT64_MAX, &u, err, sizeof(err)),
                     TG_OK);
    assert_true(u == 3);
    assert_int_equal(tg_conf_params_string(p, "fail_mode", &s, err, sizeof(err)), TG_OK);
    assert_string_equal(s, "error");
    assert_int_equal(tg_conf_params_bool(p, "key_exchange", &b, err, sizeof(err)), TG_OK);
    assert_false(b);
    assert_int_equal(tg_conf_params_double(p, "ratio", 0.0, 1.0, &r, err, sizeof(err)), TG_OK);
    assert_true(r == 0.25);

    /* Absent keys leave the output alone. */
    u = 99;
    assert_int_equal(tg_conf_params_u64(p, "absent", 0, 10, &u, err, sizeof(err)), TG_OK);
    assert_true(u == 99);
    assert_null(tg_conf_params_get(p, "absent"));
    assert_null(tg_conf_params_get(NULL, "x"));

    /* Still unused: bad_int, list, foo -> the first one in file order. */
    assert_int_equal(tg_conf_params_check_unused(p, "deferred", err, sizeof(err)), TG_ECONFIG);
    assert_string_equal(err,
                        "gw.yaml:15:15: " KP
                        ".typed_config.bad_int: unknown key 'bad_int' for provider 'deferred'");

    assert_int_equal(tg_conf_params_u64(p, "bad_int", 0, 10, &u, err, sizeof(err)), TG_ECONFIG);
    assert_string_equal(err, "gw.yaml:15:24: " KP
                             ".typed_config.bad_int: expected an integer in 0..10, got 'x1'");
    assert_true(u == 99);
    assert_int_equal(tg_conf_params_u64(p, "fail_every", 4, 10, &u, err, sizeof(err)), TG_ECONFIG);
    assert_string_equal(err, "gw.yaml:11:27: " KP
                             ".typed_config.fail_every: expected an integer in 4..10, got '3'");
    assert_int_equal(tg_conf_params_duration(p, "fail_mode", &d, err, sizeof(err)), TG_ECONFIG);
    assert_string_equal(err, "gw.yaml:12:26: " KP
                             ".typed_config.fail_mode: invalid duration 'error' (expected a number "
                             "and a unit ns, us, ms, s, m, h or d, e.g. 2s, 250ms, 0.001s; whole "
                             "nanoseconds)");
    assert_int_equal(tg_conf_params_bool(p, "fail_every", &b, err, sizeof(err)), TG_ECONFIG);
    assert_string_equal(err, "gw.yaml:11:27: " KP
                             ".typed_config.fail_every: expected true or false, got '3'");
    assert_int_equal(tg_conf_params_double(p, "ratio", 0.5, 1.0, &r, err, sizeof(err)), TG_ECONFIG);
    assert_string_equal(err, "gw.yaml:14:22: " KP
                             ".typed_config.ratio: expected a number in [0.5, 1], got '0.25'");
    assert_int_equal(tg_conf_params_double(p, "fail_mode", 0, 1, &r, err, sizeof(err)), TG_ECONFIG);
    assert_int_equal(tg_conf_params_string(p, "list", &s, err, sizeof(err)), TG_ECONFIG);
    assert_string_equal(err, "gw.yaml:16:21: " KP
                             ".typed_config.list: expected a string, got a sequence");

    /* bad_int and list are now marked; foo remains. */
    assert_int_equal(tg_conf_params_check_unused(p, "deferred", err, sizeof(err)), TG_ECONFIG);
    assert_string_equal(err, "gw.yaml:17:15: " KP
                             ".typed_config.foo: unknown key 'foo' for provider 'deferred'");
    const struct tg_conf_param *foo = tg_conf_params_get(p, "foo");
    assert_non_null(foo);
    assert_string_equal(foo->value, "1");
    assert_true(foo->used);
    assert_int_equal(tg_conf_params_check_unused(p, "deferred", err, sizeof(err)), TG_OK);
    tg_config_free(cfg);
}

static void test_params_double_forms(void **state)
{
    (void)state;
    struct tg_config *cfg = load_ok("listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
                                    "          private_key_provider:\n"
                                    "            provider_name: deferred\n"
                                    "            typed_config: { a: 1e-3, b: inf, c: nan, d: "
                                    "0x10, e: \" 1\", f: -2.5, g: \"\" }\n" UPSTREAM);
    const struct tg_conf_params *p = &cfg->listeners[0].tls.certs[0].keyprov.typed_config;
    char err[TG_CONFIG_ERRLEN];
    double r = 0;
    assert_int_equal(tg_conf_params_double(p, "a", 0, 1, &r, err, sizeof(err)), TG_OK);
    assert_true(r == 1e-3);
    assert_int_equal(tg_conf_params_double(p, "f", -10, 0, &r, err, sizeof(err)), TG_OK);
    assert_true(r == -2.5);
    static const char *const bad[] = {"b", "c", "d", "e", "g"};
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++)
        assert_int_equal(tg_conf_params_double(p, bad[i], -1e300, 1e300, &r, err, sizeof(err)),
                         TG_ECONFIG);
    tg_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_helpers),
        cmocka_unit_test(test_params_double_forms),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
