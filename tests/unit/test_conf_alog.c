/*
 * Unit tests for src/config/tg_conf_alog.c, the access_log block: defaults
 * (absent: off; present: stdout, text, 256 KiB), every key, a file resolved
 * against the configuration's directory, and the errors with their exact
 * FILE:LINE:COL (a file in a directory that does not exist among them).
 */
#include "tg_test_util.h"

#include "config/tg_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char g_dir[512];
static char *g_cert_pem, *g_key_pem;

/* A valid configuration (lines 1..6) followed by tail. */
static char *yaml_with(const char *tail)
{
    static const char head[] = "listeners:\n"
                               "  - address: 127.0.0.1:8443\n"
                               "    tls:\n"
                               "      certificates:\n"
                               "        - { certificate_chain: { filename: %s/c.pem }, "
                               "private_key: { filename: %s/k.pem } }\n"
                               "    upstream: { address: 127.0.0.1:8080 }\n";
    size_t len = sizeof(head) + 2 * strlen(g_dir) + strlen(tail) + 1;
    char *y = malloc(len);
    assert_non_null(y);
    int n = snprintf(y, len, head, g_dir, g_dir);
    snprintf(y + n, len - (size_t)n, "%s", tail);
    return y;
}

static struct tg_config *load_ok(const char *tail)
{
    char *y = yaml_with(tail);
    struct tg_config *cfg = NULL;
    char err[TG_CONFIG_ERRLEN] = "";
    int rc = tg_config_load_buffer("gw.yaml", y, strlen(y), &cfg, err, sizeof(err));
    if (rc != TG_OK)
        print_error("unexpected error: %s\n", err);
    free(y);
    assert_int_equal(rc, TG_OK);
    return cfg;
}

static void check_error(const char *tail, const char *want)
{
    char *y = yaml_with(tail);
    struct tg_config *cfg = NULL;
    char err[TG_CONFIG_ERRLEN] = "";
    int rc = tg_config_load_buffer("gw.yaml", y, strlen(y), &cfg, err, sizeof(err));
    free(y);
    if (rc == TG_OK || strcmp(err, want) != 0)
        print_error("%s\n got: %s\nwant: %s\n", tail, err, want);
    assert_int_equal(rc, TG_ECONFIG);
    assert_null(cfg);
    assert_string_equal(err, want);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "%s", tg_test_tmpdir());
    tg_test_make_cert("EC:P-256", "example.com", &g_cert_pem, &g_key_pem);
    tg_test_write_file("c.pem", g_cert_pem, strlen(g_cert_pem));
    tg_test_write_file("k.pem", g_key_pem, strlen(g_key_pem));
    char sub[600];
    snprintf(sub, sizeof(sub), "%s/logs", g_dir);
    return mkdir(sub, 0700);
}

static int group_teardown(void **state)
{
    (void)state;
    free(g_cert_pem);
    free(g_key_pem);
    return 0;
}

static void test_defaults(void **state)
{
    (void)state;
    struct tg_config *cfg = load_ok("");
    assert_int_equal(cfg->access_log.dest, TG_CONF_ALOG_OFF);
    assert_int_equal(cfg->access_log.format, TG_CONF_ALOG_TEXT);
    assert_int_equal(cfg->access_log.buffer, 256 << 10);
    assert_null(cfg->access_log.path);
    tg_config_free(cfg);
    /* A block, even empty, turns it on: stdout. */
    cfg = load_ok("access_log: {}\n");
    assert_int_equal(cfg->access_log.dest, TG_CONF_ALOG_STDOUT);
    assert_int_equal(cfg->access_log.format, TG_CONF_ALOG_TEXT);
    assert_int_equal(cfg->access_log.buffer, 256 << 10);
    assert_int_equal(cfg->access_log.mark.line, 7);
    tg_config_free(cfg);
}

static void test_every_key(void **state)
{
    (void)state;
    char tail[1024];
    snprintf(tail, sizeof(tail),
             "access_log:\n  path: %s/logs/a.log\n  format: json\n"
             "  buffer: 1MiB\n",
             g_dir);
    struct tg_config *cfg = load_ok(tail);
    char want[700];
    snprintf(want, sizeof(want), "%s/logs/a.log", g_dir);
    assert_int_equal(cfg->access_log.dest, TG_CONF_ALOG_FILE);
    assert_string_equal(cfg->access_log.path, want);
    assert_int_equal(cfg->access_log.path_mark.line, 8);
    assert_int_equal(cfg->access_log.path_mark.col, 9);
    assert_int_equal(cfg->access_log.format, TG_CONF_ALOG_JSON);
    assert_int_equal(cfg->access_log.buffer, 1 << 20);
    tg_config_free(cfg);

    cfg = load_ok("access_log: { path: stdout, format: text, buffer: 4KiB }\n");
    assert_int_equal(cfg->access_log.dest, TG_CONF_ALOG_STDOUT);
    assert_int_equal(cfg->access_log.buffer, 4096);
    tg_config_free(cfg);
    cfg = load_ok("access_log: { path: \"off\", buffer: 65536 }\n");
    assert_int_equal(cfg->access_log.dest, TG_CONF_ALOG_OFF);
    assert_int_equal(cfg->access_log.buffer, 65536);
    tg_config_free(cfg);
}

/* A relative file is relative to the configuration file's directory. */
static void test_relative_to_config(void **state)
{
    (void)state;
    char *y = yaml_with("access_log: { path: logs/b.log }\n");
    const char *file = tg_test_write_file("gw-alog.yaml", y, strlen(y));
    free(y);
    struct tg_config *cfg = NULL;
    char err[TG_CONFIG_ERRLEN] = "";
    int rc = tg_config_load_file(file, &cfg, err, sizeof(err));
    if (rc != TG_OK)
        print_error("%s\n", err);
    assert_int_equal(rc, TG_OK);
    char want[700];
    snprintf(want, sizeof(want), "%s/logs/b.log", g_dir);
    assert_string_equal(cfg->access_log.path, want);
    tg_config_free(cfg);
}

static void test_errors(void **state)
{
    (void)state;
    check_error("access_log:\n",
                "gw.yaml:7:12: access_log: expected a mapping, got an empty value");
    check_error("access_log: stdout\n",
                "gw.yaml:7:13: access_log: expected a mapping, got a scalar");
    check_error(
        "access_log: { file: x }\n",
        "gw.yaml:7:15: access_log.file: unknown key 'file' (allowed: path, format, buffer)");
    check_error("access_log: { path: \"\" }\n",
                "gw.yaml:7:21: access_log.path: must not be empty (stdout, off or a file name)");
    check_error("access_log: { path: /nonexistent-tg-dir/x/a.log }\n",
                "gw.yaml:7:21: access_log.path: cannot open '/nonexistent-tg-dir/x/a.log': "
                "directory '/nonexistent-tg-dir/x': No such file or directory");
    check_error("access_log: { path: /etc/hostname/a.log }\n",
                "gw.yaml:7:21: access_log.path: cannot open '/etc/hostname/a.log': "
                "'/etc/hostname' is not a directory");
    check_error("access_log: { path: /tmp/ }\n",
                "gw.yaml:7:21: access_log.path: '/tmp/' is a directory, not a file");
    check_error("access_log: { path: /tmp }\n",
                "gw.yaml:7:21: access_log.path: '/tmp' is a directory, not a file");
    check_error("access_log: { format: xml }\n",
                "gw.yaml:7:23: access_log.format: invalid format 'xml' (valid: text, json)");
    check_error("access_log: { buffer: 1KiB }\n",
                "gw.yaml:7:23: access_log.buffer: expected a size in 4KiB..256MiB (bytes, or a "
                "number with B, KiB, MiB or GiB), got '1KiB'");
    check_error("access_log: { buffer: 1GiB }\n",
                "gw.yaml:7:23: access_log.buffer: expected a size in 4KiB..256MiB (bytes, or a "
                "number with B, KiB, MiB or GiB), got '1GiB'");
    check_error("access_log: { path: [a] }\n",
                "gw.yaml:7:21: access_log.path: expected stdout, off or a file name, got a "
                "sequence");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_relative_to_config),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
