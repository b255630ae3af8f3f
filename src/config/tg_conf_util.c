/*
 * tg_conf_util: what every file of src/config shares (tg_config_internal.h):
 * the one-line message format (tg_conf_error, public under that name),
 * excerpts of user values, whole-file reads with wiping, and the program's
 * provider names. It depends on nothing else in src/config, so the loader,
 * the schema, the cursor and the YAML reader all stand above it.
 *
 * Threading: tg_config_set_known_providers is not thread-safe (set once at
 * start-up); the rest is reentrant.
 */
#include "config/tg_config.h"
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
