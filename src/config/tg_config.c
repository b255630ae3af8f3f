/*
 * tg_config: the front door of the configuration module. tg_config_load_*()
 * reads the bytes, has tg_conf_yaml turn them into a libyaml document and
 * tg_conf_schema walk it (with a tg_cp cursor) into struct tg_config;
 * tg_config_free() releases the result. What the files of src/config share
 * (messages, file reads, provider names) is in tg_conf_util.c.
 *
 * Every allocation is attached to the config as soon as it is made (arrays
 * are zeroed and counted before they are filled), so any failure simply calls
 * tg_config_free() on the partial result: there is one cleanup path.
 *
 * Threading: load on one thread.
 */
#include "config/tg_config.h"

#include "config/tg_conf_cursor.h"
#include "config/tg_conf_keyserver.h"
#include "config/tg_conf_schema.h"
#include "config/tg_conf_yaml.h"
#include "config/tg_config_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void tg_config_free(struct tg_config *cfg)
{
    tg_conf_schema_free(cfg);
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                  */

/* What a file is: a gateway's configuration or a key server's. */
enum tg_config_kind { TG_CONFIG_GATEWAY, TG_CONFIG_KEYSERVER };

/* The common loader. basedir: where relative filenames are resolved (NULL:
 * the current directory). */
static int tg_config_load_impl(enum tg_config_kind kind, const char *name, const char *yaml,
                               size_t len, const char *basedir, struct tg_config **out, char *err,
                               size_t errlen)
{
    const char *empty = kind == TG_CONFIG_KEYSERVER
                            ? "configuration is empty (expected a mapping with at least "
                              "'keyserver' and 'keys')"
                            : "configuration is empty (expected a mapping with at least "
                              "'listeners')";
    struct tg_config *cfg = NULL;
    yaml_document_t doc;
    bool doc_ok = false;
    int rc;

    if (out == NULL)
        return TG_EINVAL;
    *out = NULL;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (name == NULL)
        name = "<config>";
    if (yaml == NULL && len > 0)
        return TG_EINVAL;
    if (yaml == NULL)
        yaml = "";

    cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL || (cfg->source_name = strdup(name)) == NULL) {
        struct tg_conf_mark m = {name, 0, 0};
        tg_conf_error(err, errlen, &m, NULL, "out of memory");
        rc = TG_ENOMEM;
        goto out;
    }
    tg_conf_schema_defaults(cfg);

    if (len > TG_CONF_MAX_FILE) {
        struct tg_conf_mark m = {cfg->source_name, 0, 0};
        tg_conf_error(err, errlen, &m, NULL, "configuration larger than %zu bytes",
                      TG_CONF_MAX_FILE);
        rc = TG_ECONFIG;
        goto out;
    }
    rc = tg_conf_yaml_load(cfg->source_name, yaml, len, &doc, &doc_ok, err, errlen);
    if (rc != TG_OK)
        goto out;
    if (!doc_ok) {
        struct tg_conf_mark m = {cfg->source_name, 0, 0};
        tg_conf_error(err, errlen, &m, NULL, "%s", empty);
        rc = TG_ECONFIG;
        goto out;
    }
    const yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
        struct tg_conf_mark m = {cfg->source_name, 0, 0};
        tg_conf_error(err, errlen, &m, NULL, "configuration is empty");
        rc = TG_ECONFIG;
        goto out;
    }
    if (tg_cp_is_null(root)) {
        struct tg_conf_mark m = {cfg->source_name, 0, 0};
        tg_conf_error(err, errlen, &m, NULL, "%s", empty);
        rc = TG_ECONFIG;
        goto out;
    }

    struct tg_cp cp = {.doc = &doc, .cfg = cfg, .basedir = basedir, .err = err, .errlen = errlen};
    rc = kind == TG_CONFIG_KEYSERVER ? tg_conf_keyserver_root(&cp, root)
                                     : tg_conf_schema_root(&cp, root);
out:
    if (doc_ok)
        tg_conf_yaml_free(&doc);
    if (rc != TG_OK) {
        if (rc == TG_ENOMEM && err != NULL && errlen > 0 && err[0] == '\0') {
            struct tg_conf_mark m = {name, 0, 0};
            tg_conf_error(err, errlen, &m, NULL, "out of memory");
        }
        tg_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return TG_OK;
}

int tg_config_load_buffer(const char *name, const char *yaml, size_t len, struct tg_config **out,
                          char *err, size_t errlen)
{
    return tg_config_load_impl(TG_CONFIG_GATEWAY, name, yaml, len, NULL, out, err, errlen);
}

int tg_config_load_keyserver_buffer(const char *name, const char *yaml, size_t len,
                                    struct tg_config **out, char *err, size_t errlen)
{
    return tg_config_load_impl(TG_CONFIG_KEYSERVER, name, yaml, len, NULL, out, err, errlen);
}

static int tg_config_load_file_kind(enum tg_config_kind kind, const char *path,
                                    struct tg_config **out, char *err, size_t errlen)
{
    char *buf = NULL, *dir = NULL;
    size_t len = 0;
    int rc;

    if (out == NULL || path == NULL)
        return TG_EINVAL;
    *out = NULL;
    int e = tg_config_read_file(path, &buf, &len);
    if (e != 0) {
        struct tg_conf_mark m = {path, 0, 0};
        tg_conf_error(err, errlen, &m, NULL, "cannot read: %s", strerror(e));
        return e == ENOMEM ? TG_ENOMEM : TG_ECONFIG;
    }
    /* Relative certificate paths are relative to the config file, so a
     * config works the same from any working directory. */
    const char *slash = strrchr(path, '/');
    if (slash != NULL) {
        size_t dl = slash == path ? 1 : (size_t)(slash - path);
        dir = malloc(dl + 1);
        if (dir == NULL) {
            struct tg_conf_mark m = {path, 0, 0};
            tg_conf_error(err, errlen, &m, NULL, "out of memory");
            rc = TG_ENOMEM;
            goto out;
        }
        memcpy(dir, path, dl);
        dir[dl] = '\0';
    }
    rc = tg_config_load_impl(kind, path, buf, len, dir, out, err, errlen);
out:
    free(dir);
    tg_config_free_secret(buf, len);
    return rc;
}

int tg_config_load_file(const char *path, struct tg_config **out, char *err, size_t errlen)
{
    return tg_config_load_file_kind(TG_CONFIG_GATEWAY, path, out, err, errlen);
}

int tg_config_load_keyserver_file(const char *path, struct tg_config **out, char *err,
                                  size_t errlen)
{
    return tg_config_load_file_kind(TG_CONFIG_KEYSERVER, path, out, err, errlen);
}
