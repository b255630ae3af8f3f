/*
 * tg_config: the front door of the configuration module. tg_config_load_*()
 * reads the bytes, has tg_conf_yaml turn them into a libyaml document and
 * tg_conf_schema walk it (with a tg_cp cursor) into struct tg_config;
 * tg_config_free() releases the result. It also holds what the other files
 * of src/config share (tg_config_internal.h): the one-line message format
 * (tg_conf_error, kept under its public name), whole-file reads with wiping,
 * and the program's provider names.
 *
 * Every allocation is attached to the config as soon as it is made (arrays
 * are zeroed and counted before they are filled), so any failure simply calls
 * tg_config_free() on the partial result: there is one cleanup path.
 *
 * Threading: load on one thread; tg_config_set_known_providers is not
 * thread-safe (set once at start-up).
 */
#include "config/tg_config.h"

#include "config/tg_conf_cursor.h"
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

/* ------------------------------------------------------------------------ */
/* Known provider names                                                     */

/* The program's provider names (tg_config_set_known_providers); NULL: any
 * name passes here and the key-provider registry judges it at start-up. */
static const char *const *tg_config_providers;

void tg_config_set_known_providers(const char *const *names)
{
    tg_config_providers = names;
}

bool tg_config_provider_known(const char *name)
{
    if (tg_config_providers == NULL)
        return true;
    for (size_t i = 0; tg_config_providers[i] != NULL; i++) {
        if (strcmp(tg_config_providers[i], name) == 0)
            return true;
    }
    return false;
}

void tg_config_provider_list(char *buf, size_t len)
{
    size_t off = 0;
    if (len == 0)
        return;
    buf[0] = '\0';
    for (size_t i = 0; tg_config_providers != NULL && tg_config_providers[i] != NULL; i++) {
        int w = snprintf(buf + off, len - off, "%s%s", i ? ", " : "", tg_config_providers[i]);
        if (w < 0 || (size_t)w >= len - off)
            break;
        off += (size_t)w;
    }
}

/* ------------------------------------------------------------------------ */
/* Error formatting                                                         */

void tg_config_verror(char *err, size_t errlen, const struct tg_conf_mark *mark, const char *path,
                      const char *fmt, va_list ap)
{
    if (err == NULL || errlen == 0)
        return;
    const char *file = (mark != NULL && mark->file != NULL) ? mark->file : "<config>";
    size_t off = 0;
    int n;
    if (mark != NULL && mark->line > 0)
        n = snprintf(err, errlen, "%s:%d:%d: ", file, mark->line, mark->col);
    else
        n = snprintf(err, errlen, "%s: ", file);
    if (n > 0)
        off = (size_t)n < errlen ? (size_t)n : errlen - 1;
    if (path != NULL && path[0] != '\0' && off < errlen - 1) {
        n = snprintf(err + off, errlen - off, "%s: ", path);
        if (n > 0)
            off += (size_t)n < errlen - off ? (size_t)n : errlen - off - 1;
    }
    if (off < errlen - 1)
        vsnprintf(err + off, errlen - off, fmt, ap);
    /* The contract is one line: values quoted from the file may hold
     * newlines or other control characters. */
    for (char *p = err; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    }
}

void tg_conf_error(char *err, size_t errlen, const struct tg_conf_mark *mark, const char *path,
                   const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tg_config_verror(err, errlen, mark, path, fmt, ap);
    va_end(ap);
}

/* A short excerpt of user text for a message (the rest is elided). */
const char *tg_config_excerpt(const char *s, char *buf, size_t n)
{
    size_t len = strlen(s);
    if (len < n) {
        memcpy(buf, s, len + 1);
        return buf;
    }
    memcpy(buf, s, n - 4);
    memcpy(buf + n - 4, "...", 4);
    return buf;
}

/* ------------------------------------------------------------------------ */
/* Files                                                                    */

/* Every buffer released on the way (growth, errors) is wiped first, as the
 * file may be a private key. */
int tg_config_read_file(const char *path, char **out, size_t *outlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    struct stat st;
    char *buf = NULL;
    size_t cap, len = 0;
    int rc = 0;

    if (fstat(fd, &st) != 0) {
        rc = errno;
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = EISDIR;
        goto out;
    }
    if (st.st_size > 0 && (uint64_t)st.st_size > TG_CONF_MAX_FILE) {
        rc = EFBIG;
        goto out;
    }
    /* One spare byte beyond the size so that EOF is seen without growing. */
    cap = st.st_size > 0 ? (size_t)st.st_size + 2 : 4096;
    buf = malloc(cap);
    if (buf == NULL) {
        rc = ENOMEM;
        goto out;
    }
    for (;;) {
        if (len + 1 == cap) {
            /* The file grew (or is not a regular file): move to a bigger
             * buffer by hand so the old one can be wiped. */
            if (cap > TG_CONF_MAX_FILE) {
                rc = EFBIG;
                goto out;
            }
            char *nb = malloc(cap * 2);
            if (nb == NULL) {
                rc = ENOMEM;
                goto out;
            }
            memcpy(nb, buf, len);
            OPENSSL_cleanse(buf, cap);
            free(buf);
            buf = nb;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = errno;
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    buf = NULL;
out:
    if (buf != NULL) {
        OPENSSL_cleanse(buf, cap);
        free(buf);
    }
    close(fd);
    return rc;
}

void tg_config_free_secret(char *p, size_t len)
{
    if (p == NULL)
        return;
    OPENSSL_cleanse(p, len);
    free(p);
}

void tg_config_free(struct tg_config *cfg)
{
    tg_conf_schema_free(cfg);
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                  */

/* The common loader. basedir: where relative filenames are resolved (NULL:
 * the current directory). */
static int tg_config_load_impl(const char *name, const char *yaml, size_t len, const char *basedir,
                               struct tg_config **out, char *err, size_t errlen)
{
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
        tg_conf_error(err, errlen, &m, NULL,
                      "configuration is empty (expected a mapping with at least 'listeners')");
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
        tg_conf_error(err, errlen, &m, NULL,
                      "configuration is empty (expected a mapping with at least 'listeners')");
        rc = TG_ECONFIG;
        goto out;
    }

    struct tg_cp cp = {.doc = &doc, .cfg = cfg, .basedir = basedir, .err = err, .errlen = errlen};
    rc = tg_conf_schema_root(&cp, root);
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
    return tg_config_load_impl(name, yaml, len, NULL, out, err, errlen);
}

int tg_config_load_file(const char *path, struct tg_config **out, char *err, size_t errlen)
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
    rc = tg_config_load_impl(path, buf, len, dir, out, err, errlen);
out:
    free(dir);
    tg_config_free_secret(buf, len);
    return rc;
}
