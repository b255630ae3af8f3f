/*
 * The embedded default configuration (tg_config.h).
 *
 * tg_config_load_default() makes `tlsgate run` work with no configuration at
 * all: it loads the YAML below with ${STATE_DIR} filled in. The demo
 * certificate it names is the TLS layer's business (tg_tls_demo_cert_ensure
 * creates it); this file only reads it, as any configuration's PEM files.
 */
#include "config/tg_config.h"

#include "core/tg_buf.h"

#include <stdlib.h>
#include <string.h>

/* ${STATE_DIR} only ever appears inside double quotes: the substitution
 * escapes '"' and '\' so any directory name stays one YAML string. */
const char tg_config_default_yaml[] =
    "# tlsgate embedded default configuration (tlsgate run without --config).\n"
    "# TLS on 127.0.0.1:8443 with a self-signed demo certificate for localhost,\n"
    "# forwarded to a plain TCP service on 127.0.0.1:8080.\n"
    "concurrency: 1\n"
    "log_level: info\n"
    "admin:\n"
    "  address: 127.0.0.1:9901\n"
    "listeners:\n"
    "  - name: https\n"
    "    address: 127.0.0.1:8443\n"
    "    tls:\n"
    "      certificates:\n"
    "        - certificate_chain: { filename: \"${STATE_DIR}/" TG_CONFIG_DEMO_CERT "\" }\n"
    "          private_key: { filename: \"${STATE_DIR}/" TG_CONFIG_DEMO_KEY "\" }\n"
    "          private_key_provider:\n"
    "            provider_name: cryptomb\n"
    "            fallback: true\n"
    "      session_resumption: true\n"
    "    upstream:\n"
    "      address: 127.0.0.1:8080\n";

int tg_config_check_state_dir(const char *state_dir, char *err, size_t errlen)
{
    struct tg_conf_mark m = {TG_CONFIG_DEFAULT_NAME, 0, 0};
    if (state_dir == NULL || state_dir[0] == '\0') {
        tg_conf_error(err, errlen, &m, NULL, "no state directory given");
        return TG_EINVAL;
    }
    for (const char *s = state_dir; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f) {
            tg_conf_error(err, errlen, &m, NULL,
                          "the state directory name contains control characters");
            return TG_ECONFIG;
        }
    }
    return TG_OK;
}

/* The default YAML with ${STATE_DIR} replaced, escaped for a double-quoted
 * YAML string. */
static int tg_config_default_subst(const char *state_dir, struct tg_buf *b)
{
    static const char var[] = "${STATE_DIR}";
    const char *p = tg_config_default_yaml;
    const char *hit;
    while ((hit = strstr(p, var)) != NULL) {
        tg_buf_append(b, p, (size_t)(hit - p));
        for (const char *s = state_dir; *s != '\0'; s++) {
            if (*s == '"' || *s == '\\')
                tg_buf_append(b, "\\", 1);
            tg_buf_append(b, s, 1);
        }
        p = hit + sizeof(var) - 1;
    }
    tg_buf_puts(b, p);
    return tg_buf_failed(b) ? TG_ENOMEM : TG_OK;
}

int tg_config_load_default(const char *state_dir, struct tg_config **out, char *err, size_t errlen)
{
    struct tg_buf y = TG_BUF_INIT;
    struct tg_conf_mark m = {TG_CONFIG_DEFAULT_NAME, 0, 0};
    int rc;

    if (out == NULL)
        return TG_EINVAL;
    *out = NULL;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    rc = tg_config_check_state_dir(state_dir, err, errlen);
    if (rc == TG_OK)
        rc = tg_config_default_subst(state_dir, &y);
    if (rc == TG_OK)
        rc = tg_config_load_buffer(m.file, y.data, y.len, out, err, errlen);
    if (rc == TG_OK) {
        (*out)->state_dir = strdup(state_dir);
        if ((*out)->state_dir == NULL) {
            tg_config_free(*out);
            *out = NULL;
            rc = TG_ENOMEM;
        }
    }
    if (rc == TG_ENOMEM && err != NULL && errlen > 0 && err[0] == '\0')
        tg_conf_error(err, errlen, &m, NULL, "out of memory");
    tg_buf_free(&y);
    return rc;
}
