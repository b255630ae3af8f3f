/*
 * The configuration tests' fixture: contract in tg_test_config.h.
 */
#include "tg_test_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

char *g_cert_pem;
char *g_key_pem;
char g_dir[512];

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

/* s with every "@DIR@" replaced by the test's temporary directory. */
char *subst(const char *s)
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

int load(const char *yaml, struct tg_config **cfg, char *err, size_t errlen)
{
    char *y = subst(yaml);
    int rc = tg_config_load_buffer("gw.yaml", y, strlen(y), cfg, err, errlen);
    free(y);
    return rc;
}

struct tg_config *load_ok(const char *yaml)
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

void check_errors(const struct err_case *cases, size_t n)
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

/* ------------------------------------------------------------------------ */
/* Fixtures                                                                 */

const char *const g_providers[] = {"software", "deferred", "cryptomb", "qat", NULL};

int group_setup(void **state)
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

int group_teardown(void **state)
{
    (void)state;
    free(g_cert_pem);
    free(g_key_pem);
    return 0;
}
