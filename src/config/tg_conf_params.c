/*
 * tg_conf_params: the typed_config helpers key providers call from their
 * configure() to read their own keys (declared in tg_config.h, with the
 * contract: look a key up, mark it used, parse it, and on a bad value write
 * one "FILE:LINE:COL: path.key: ..." line; a missing key leaves the output
 * alone). Values are parsed with the same parsers and worded with the same
 * messages as the rest of the configuration.
 *
 * Threading: marking writes into the config, so these run while the
 * providers are configured, on one thread, before the config is shared.
 */
#include "config/tg_config.h"

#include "config/tg_conf_parse.h"
#include "config/tg_config_internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tg_conf_params_fail(const struct tg_conf_params *p, const struct tg_conf_param *q,
                               const struct tg_conf_mark *mark, char *err, size_t errlen,
                               const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int tg_conf_params_fail(const struct tg_conf_params *p, const struct tg_conf_param *q,
                               const struct tg_conf_mark *mark, char *err, size_t errlen,
                               const char *fmt, ...)
{
    char path[TG_CONF_PATHMAX];
    char ex[TG_CONF_EXCERPT];
    va_list ap;
    snprintf(path, sizeof(path), "%s%s%s", p->path != NULL ? p->path : "",
             p->path != NULL && p->path[0] != '\0' ? "." : "",
             tg_config_excerpt(q->key, ex, sizeof(ex)));
    va_start(ap, fmt);
    tg_config_verror(err, errlen, mark, path, fmt, ap);
    va_end(ap);
    return TG_ECONFIG;
}

const struct tg_conf_param *tg_conf_params_get(const struct tg_conf_params *p, const char *key)
{
    if (p == NULL || key == NULL)
        return NULL;
    for (size_t i = 0; i < p->n; i++) {
        if (strcmp(p->v[i].key, key) == 0) {
            /* The params live in heap memory owned by the config; marking
             * them from the provider's configure() is part of the contract. */
            ((struct tg_conf_param *)&p->v[i])->used = true;
            return &p->v[i];
        }
    }
    return NULL;
}

/* Look up a key that must be a scalar; *q = NULL when absent. */
static int tg_conf_params_scalar(const struct tg_conf_params *p, const char *key, const char *what,
                                 const struct tg_conf_param **q, char *err, size_t errlen)
{
    *q = tg_conf_params_get(p, key);
    if (*q == NULL)
        return TG_OK;
    if ((*q)->value == NULL)
        return tg_conf_params_fail(p, *q, &(*q)->value_mark, err, errlen,
                                   "expected %s, got a sequence", what);
    return TG_OK;
}

int tg_conf_params_duration(const struct tg_conf_params *p, const char *key, uint64_t *out_ns,
                            char *err, size_t errlen)
{
    const struct tg_conf_param *q;
    char ex[TG_CONF_EXCERPT];
    TG_GUARD(tg_conf_params_scalar(p, key, "a duration", &q, err, errlen));
    if (q != NULL && tg_conf_parse_duration(q->value, out_ns) != TG_OK)
        return tg_conf_params_fail(
            p, q, &q->value_mark, err, errlen,
            "invalid duration '%s' (expected a number and a unit ns, us, ms, s, "
            "m, h or d, e.g. 2s, 250ms, 0.001s; whole nanoseconds)",
            tg_config_excerpt(q->value, ex, sizeof(ex)));
    return TG_OK;
}

int tg_conf_params_bool(const struct tg_conf_params *p, const char *key, bool *out, char *err,
                        size_t errlen)
{
    const struct tg_conf_param *q;
    char ex[TG_CONF_EXCERPT];
    TG_GUARD(tg_conf_params_scalar(p, key, "true or false", &q, err, errlen));
    if (q != NULL && tg_conf_parse_bool(q->value, out) != TG_OK)
        return tg_conf_params_fail(p, q, &q->value_mark, err, errlen,
                                   "expected true or false, got '%s'",
                                   tg_config_excerpt(q->value, ex, sizeof(ex)));
    return TG_OK;
}

int tg_conf_params_u64(const struct tg_conf_params *p, const char *key, uint64_t min, uint64_t max,
                       uint64_t *out, char *err, size_t errlen)
{
    const struct tg_conf_param *q;
    char ex[TG_CONF_EXCERPT];
    TG_GUARD(tg_conf_params_scalar(p, key, "an integer", &q, err, errlen));
    if (q != NULL && tg_conf_parse_u64(q->value, min, max, out) != TG_OK)
        return tg_conf_params_fail(p, q, &q->value_mark, err, errlen,
                                   "expected an integer in %llu..%llu, got '%s'",
                                   (unsigned long long)min, (unsigned long long)max,
                                   tg_config_excerpt(q->value, ex, sizeof(ex)));
    return TG_OK;
}

int tg_conf_params_double(const struct tg_conf_params *p, const char *key, double min, double max,
                          double *out, char *err, size_t errlen)
{
    const struct tg_conf_param *q;
    char ex[TG_CONF_EXCERPT];
    TG_GUARD(tg_conf_params_scalar(p, key, "a number", &q, err, errlen));
    if (q == NULL)
        return TG_OK;
    /* Plain decimal notation only: strtod would also take "inf", "nan",
     * hex floats and leading blanks. */
    const char *s = q->value;
    bool ok = *s != '\0';
    for (const char *c = s; ok && *c != '\0'; c++)
        ok = tg_conf_parse_is_digit(*c) || *c == '.' || *c == '-' || *c == '+' || *c == 'e' ||
             *c == 'E';
    char *end = NULL;
    double d = 0;
    if (ok) {
        errno = 0;
        d = strtod(s, &end);
        ok = end != s && *end == '\0' && errno == 0 && isfinite(d) && d >= min && d <= max;
    }
    if (!ok)
        return tg_conf_params_fail(p, q, &q->value_mark, err, errlen,
                                   "expected a number in [%g, %g], got '%s'", min, max,
                                   tg_config_excerpt(s, ex, sizeof(ex)));
    *out = d;
    return TG_OK;
}

int tg_conf_params_string(const struct tg_conf_params *p, const char *key, const char **out,
                          char *err, size_t errlen)
{
    const struct tg_conf_param *q;
    TG_GUARD(tg_conf_params_scalar(p, key, "a string", &q, err, errlen));
    if (q != NULL)
        *out = q->value;
    return TG_OK;
}

int tg_conf_params_check_unused(const struct tg_conf_params *p, const char *provider_name,
                                char *err, size_t errlen)
{
    if (p == NULL)
        return TG_OK;
    for (size_t i = 0; i < p->n; i++) {
        const struct tg_conf_param *q = &p->v[i];
        if (!q->used) {
            char ex[TG_CONF_EXCERPT];
            return tg_conf_params_fail(p, q, &q->mark, err, errlen,
                                       "unknown key '%s' for provider '%s'",
                                       tg_config_excerpt(q->key, ex, sizeof(ex)),
                                       provider_name != NULL ? provider_name : "?");
        }
    }
    return TG_OK;
}
