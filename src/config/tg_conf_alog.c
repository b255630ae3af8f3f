/*
 * tg_conf_alog: access_log { path, format, buffer }. Contract in
 * tg_conf_alog.h.
 */
#include "config/tg_conf_alog.h"

#include "config/tg_conf_parse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The directory part of path ("." when there is none) into buf. */
static void tg_conf_alog_dirname(const char *path, char *buf, size_t len)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        snprintf(buf, len, ".");
        return;
    }
    size_t dl = slash == path ? 1 : (size_t)(slash - path);
    snprintf(buf, len, "%.*s", (int)dl, path);
}

/* A file destination: resolve it, and refuse now what cannot be opened later
 * for sure (no such directory, a directory). */
static int tg_conf_alog_file(struct tg_cp *cp, const yaml_node_t *v, const char *name,
                             struct tg_conf_access_log *a)
{
    char ex[TG_CONF_EXCERPT];
    char dir[4096];
    struct stat st;
    free(a->path);
    a->path = NULL;
    if (name[0] != '/' && cp->basedir != NULL) {
        size_t fl = strlen(cp->basedir) + strlen(name) + 2;
        a->path = malloc(fl);
        if (a->path != NULL)
            snprintf(a->path, fl, "%s/%s", cp->basedir, name);
    } else {
        a->path = strdup(name);
    }
    if (a->path == NULL)
        return tg_cp_nomem(cp);
    if (name[strlen(name) - 1] == '/' || (stat(a->path, &st) == 0 && S_ISDIR(st.st_mode)))
        return tg_cp_fail(cp, v, "'%s' is a directory, not a file",
                          tg_config_excerpt(name, ex, sizeof(ex)));
    tg_conf_alog_dirname(a->path, dir, sizeof(dir));
    if (stat(dir, &st) != 0)
        return tg_cp_fail(cp, v, "cannot open '%s': directory '%s': %s",
                          tg_config_excerpt(name, ex, sizeof(ex)), dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return tg_cp_fail(cp, v, "cannot open '%s': '%s' is not a directory",
                          tg_config_excerpt(name, ex, sizeof(ex)), dir);
    return TG_OK;
}

static int tg_conf_alog_path(struct tg_cp *cp, const yaml_node_t *v, struct tg_conf_access_log *a)
{
    const char *s;
    TG_GUARD(tg_cp_scalar(cp, v, "stdout, off or a file name", &s));
    a->path_mark = tg_cp_mark(cp, v);
    if (*s == '\0')
        return tg_cp_fail(cp, v, "must not be empty (stdout, off or a file name)");
    if (strcmp(s, "stdout") == 0) {
        a->dest = TG_CONF_ALOG_STDOUT;
        return TG_OK;
    }
    if (strcmp(s, "off") == 0) {
        a->dest = TG_CONF_ALOG_OFF;
        return TG_OK;
    }
    a->dest = TG_CONF_ALOG_FILE;
    return tg_conf_alog_file(cp, v, s, a);
}

static int tg_conf_alog_format(struct tg_cp *cp, const yaml_node_t *v, struct tg_conf_access_log *a)
{
    const char *s;
    char ex[TG_CONF_EXCERPT];
    TG_GUARD(tg_cp_scalar(cp, v, "text or json", &s));
    if (strcmp(s, "text") == 0)
        a->format = TG_CONF_ALOG_TEXT;
    else if (strcmp(s, "json") == 0)
        a->format = TG_CONF_ALOG_JSON;
    else
        return tg_cp_fail(cp, v, "invalid format '%s' (valid: text, json)",
                          tg_config_excerpt(s, ex, sizeof(ex)));
    return TG_OK;
}

static int tg_conf_alog_buffer(struct tg_cp *cp, const yaml_node_t *v, struct tg_conf_access_log *a)
{
    const char *s;
    char ex[TG_CONF_EXCERPT];
    uint64_t u;
    TG_GUARD(tg_cp_scalar(cp, v, "a size", &s));
    if (tg_conf_parse_size(s, TG_CONF_ALOG_BUFFER_MIN, TG_CONF_ALOG_BUFFER_MAX, &u) != TG_OK)
        return tg_cp_fail(cp, v,
                          "expected a size in 4KiB..256MiB (bytes, or a number with B, KiB, "
                          "MiB or GiB), got '%s'",
                          tg_config_excerpt(s, ex, sizeof(ex)));
    a->buffer = (size_t)u;
    return TG_OK;
}

int tg_conf_alog_parse(struct tg_cp *cp, const yaml_node_t *n, struct tg_conf_access_log *a)
{
    static const char *const keys[] = {"path", "format", "buffer", NULL};
    const yaml_node_t *v;
    size_t o;
    int rc;

    a->mark = tg_cp_mark(cp, n);
    TG_GUARD(tg_cp_check_map(cp, n, keys));
    a->dest = TG_CONF_ALOG_STDOUT;
    if ((v = tg_cp_get(cp, n, "path", NULL)) != NULL) {
        o = tg_cp_push_key(cp, "path");
        rc = tg_conf_alog_path(cp, v, a);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    if ((v = tg_cp_get(cp, n, "format", NULL)) != NULL) {
        o = tg_cp_push_key(cp, "format");
        rc = tg_conf_alog_format(cp, v, a);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    if ((v = tg_cp_get(cp, n, "buffer", NULL)) != NULL) {
        o = tg_cp_push_key(cp, "buffer");
        rc = tg_conf_alog_buffer(cp, v, a);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    return TG_OK;
}
