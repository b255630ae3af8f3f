/*
 * What the configuration loader's tests share (test_config.c,
 * test_config_keys.c, test_config_errors.c): a temporary directory with a
 * certificate and its key under certs/ and sub/certs/ (made by group_setup),
 * loading a YAML text in which "@DIR@" stands for that directory, checking
 * error messages exactly, and the pieces of a valid configuration.
 */
#ifndef TG_TEST_CONFIG_H
#define TG_TEST_CONFIG_H

#include <stddef.h>

#include "config/tg_config.h"
#include "tg_test_util.h"

/* The group's certificate and key (PEM) and its temporary directory. */
extern char *g_cert_pem;
extern char *g_key_pem;
extern char g_dir[512];
/* The provider names these tests' programs know (the config module has no
 * list of its own); group_setup installs them. */
extern const char *const g_providers[];

/* s with every "@DIR@" replaced by the test's temporary directory (malloc'd). */
char *subst(const char *s);
/* Load yaml (after subst) as a buffer named "gw.yaml". */
int load(const char *yaml, struct tg_config **cfg, char *err, size_t errlen);
/* load() that must succeed. */
struct tg_config *load_ok(const char *yaml);

struct err_case {
    const char *yaml;
    const char *want; /* exact message, after subst */
};

/* Each case must fail with exactly its message (one line). */
void check_errors(const struct err_case *cases, size_t n);

/* Pieces of a valid configuration; L0 is lines 1..7. */
#define CERT_FILES                                                                                 \
    "        - certificate_chain: { filename: @DIR@/certs/server.pem }\n"                          \
    "          private_key: { filename: @DIR@/certs/server.key }\n"
#define CERTS    "      certificates:\n" CERT_FILES
#define UPSTREAM "    upstream: { address: 127.0.0.1:8080 }\n"
#define L0       "listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS UPSTREAM
#define KP       "listeners[0].tls.certificates[0].private_key_provider"

int group_setup(void **state);
int group_teardown(void **state);

#endif
