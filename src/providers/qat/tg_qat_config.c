/*
 * The qat provider's typed_config: timeout, verify, key_exchange, section,
 * spill (tg_qat_internal.h). Compiled into both builds, so a configuration
 * naming qat is validated the same way with or without the qatlib headers.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tg_log.h"
#include "providers/qat/tg_qat_internal.h"

static const struct tg_qat_settings tg_qat_default_settings = {
    .timeout_ns = TG_QAT_DEFAULT_TIMEOUT,
    .verify = true,
    .nspill = 0, /* only the implied software */
};

static char tg_qat_section_name[TG_QAT_SECTION_MAX] = "SSL";
static bool tg_qat_section_fixed;

const char *tg_qat_section(void)
{
    return tg_qat_section_name;
}

void tg_qat_section_reset(void)
{
    tg_qat_section_fixed = false;
    snprintf(tg_qat_section_name, sizeof(tg_qat_section_name), "SSL");
}

int tg_qat_registry_slot(const struct tg_keyprov_ops *ops)
{
    size_t n = 0;
    const struct tg_keyprov_ops *const *all = tg_keyprov_all(&n);
    for (size_t i = 0; all != NULL && i < n && i < TG_KEYPROV_MAX; i++) {
        if (all[i] == ops)
            return (int)i;
    }
    return -1;
}

const struct tg_qat_settings *tg_qat_settings_of(const struct tg_keyop *op)
{
    if (op->binding != NULL && op->binding->ops == &tg_qat_provider &&
        op->binding->settings != NULL)
        return op->binding->settings;
    return &tg_qat_default_settings;
}

static int tg_qat_conf_fail(const struct tg_conf_params *p, const struct tg_conf_param *q,
                            char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int tg_qat_conf_fail(const struct tg_conf_params *p, const struct tg_conf_param *q,
                            char *err, size_t errlen, const char *fmt, ...)
{
    char path[512], msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(path, sizeof(path), "%s.%s", p->path ? p->path : "typed_config", q->key);
    tg_conf_error(err, errlen, &q->value_mark, path, "%s", msg);
    return TG_ECONFIG;
}

/* "software, deferred, cryptomb": the providers a spill list may name. */
static void tg_qat_spill_choices(char *buf, size_t len)
{
    size_t n = 0, used = 0;
    const struct tg_keyprov_ops *const *all = tg_keyprov_all(&n);
    buf[0] = '\0';
    for (size_t i = 0; all != NULL && i < n; i++) {
        if (all[i] == &tg_qat_provider)
            continue;
        int w = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", all[i]->name);
        if (w < 0 || (size_t)w >= len - used)
            break;
        used += (size_t)w;
    }
}

/*
 * spill: a list of registered providers (or one as a scalar), in order;
 * "software" may only end it and is implied anyway. qat itself is refused:
 * its own ring is what is full.
 */
static int tg_qat_conf_spill(const struct tg_conf_params *p, struct tg_qat_settings *s, char *err,
                             size_t errlen)
{
    const struct tg_conf_param *q = tg_conf_params_get(p, "spill");
    if (q == NULL)
        return TG_OK;
    const char *one[1];
    const char *const *items = (const char *const *)q->items;
    size_t n = q->nitems;
    if (q->value != NULL) { /* spill: software */
        one[0] = q->value;
        items = one;
        n = 1;
    }
    if (n == 0)
        return tg_qat_conf_fail(p, q, err, errlen, "%s",
                                "expected a list of providers, e.g. [cryptomb, software]");
    if (n > TG_QAT_SPILL_MAX)
        return tg_qat_conf_fail(p, q, err, errlen, "at most %d providers", TG_QAT_SPILL_MAX);
    s->nspill = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = items[i];
        const struct tg_keyprov_ops *ops = tg_keyprov_find(name);
        if (ops == NULL) {
            char choices[256];
            tg_qat_spill_choices(choices, sizeof(choices));
            return tg_qat_conf_fail(p, q, err, errlen, "unknown spill target '%s' (expected %s)",
                                    name, choices);
        }
        if (ops == &tg_qat_provider)
            return tg_qat_conf_fail(p, q, err, errlen,
                                    "spill target 'qat' is this provider: its ring is the one "
                                    "that is full");
        for (size_t j = 0; j < i; j++) {
            if (strcmp(items[j], name) == 0)
                return tg_qat_conf_fail(p, q, err, errlen, "'%s' is listed twice", name);
        }
        if (i > 0 && strcmp(items[i - 1], TG_KEYPROV_FALLBACK) == 0)
            return tg_qat_conf_fail(p, q, err, errlen,
                                    "'software' must be last (it always succeeds), not before "
                                    "'%s'",
                                    name);
        if (strcmp(name, TG_KEYPROV_FALLBACK) == 0)
            continue; /* implied at the end */
        s->spill[s->nspill] = ops;
        s->spill_ok[s->nspill] = true;
        s->nspill++;
    }
    return TG_OK;
}

static int tg_qat_conf_section(const struct tg_conf_params *p, const char *section, char *err,
                               size_t errlen)
{
    const struct tg_conf_param *q = tg_conf_params_get(p, "section");
    size_t len = strlen(section);
    bool ok = len > 0 && len < TG_QAT_SECTION_MAX;
    for (size_t i = 0; ok && i < len; i++) {
        char c = section[i];
        ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '-';
    }
    if (!ok)
        return tg_qat_conf_fail(p, q, err, errlen,
                                "invalid qatlib section name '%s' (letters, digits, '_', '-'; "
                                "at most 63)",
                                section);
    if (tg_qat_section_fixed && strcmp(section, tg_qat_section_name) != 0)
        return tg_qat_conf_fail(p, q, err, errlen,
                                "section '%s' differs from the one another certificate set "
                                "(qatlib starts once per process with one section)",
                                section);
    return TG_OK;
}

int tg_qat_configure(const struct tg_conf_keyprov *conf, void **settings, bool *kx, char *err,
                     size_t errlen)
{
    const struct tg_conf_params *p = &conf->typed_config;
    struct tg_qat_settings *s = malloc(sizeof(*s));
    if (s == NULL)
        return TG_ENOMEM;
    *s = tg_qat_default_settings;
    const char *section = NULL;
    bool want_kx = false;
    *kx = false;
    int rc = tg_conf_params_duration(p, "timeout", &s->timeout_ns, err, errlen);
    if (rc == TG_OK && (s->timeout_ns < TG_NS_PER_MS || s->timeout_ns > 60 * TG_NS_PER_S))
        rc = tg_qat_conf_fail(p, tg_conf_params_get(p, "timeout"), err, errlen, "%s",
                              "expected a duration between 1ms and 60s");
    if (rc == TG_OK)
        rc = tg_conf_params_bool(p, "verify", &s->verify, err, errlen);
    if (rc == TG_OK)
        rc = tg_conf_params_bool(p, "key_exchange", &want_kx, err, errlen);
    if (rc == TG_OK && want_kx)
        rc = tg_qat_conf_fail(p, tg_conf_params_get(p, "key_exchange"), err, errlen, "%s",
                              "the qat provider does not do key exchange (X25519 / ECDH stay in "
                              "software); remove the key or set it to false");
    if (rc == TG_OK)
        rc = tg_conf_params_string(p, "section", &section, err, errlen);
    if (rc == TG_OK && section != NULL)
        rc = tg_qat_conf_section(p, section, err, errlen);
    if (rc == TG_OK)
        rc = tg_qat_conf_spill(p, s, err, errlen);
    if (rc == TG_OK)
        rc = tg_conf_params_check_unused(p, "qat", err, errlen);
    if (rc != TG_OK) {
        free(s);
        return rc;
    }
    if (section != NULL) {
        snprintf(tg_qat_section_name, sizeof(tg_qat_section_name), "%s", section);
        tg_qat_section_fixed = true;
    }
    /* A spill target needs a per-worker state even if no certificate uses it. */
    for (size_t i = 0; i < s->nspill; i++) {
        char why[256] = "";
        if (tg_keyprov_require(s->spill[i]->name, why, sizeof(why)) != TG_OK) {
            s->spill_ok[i] = false;
            TG_WARN("%s: spill target '%s' cannot run here (%s); ring-full operations go to "
                    "the next one",
                    conf->path ? conf->path : "private_key_provider", s->spill[i]->name, why);
        }
    }
    *settings = s;
    return TG_OK;
}

void tg_qat_settings_free(void *settings)
{
    free(settings);
}
