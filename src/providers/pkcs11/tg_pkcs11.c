/*
 * The pkcs11 provider: certificate private keys held in an HSM or any
 * PKCS#11 token, used through the module the configuration names. The
 * private key never enters tlsgate: the provider holds keys itself
 * (tg_keyprov_ops.load_key) and signs with C_Sign on a pool of threads per
 * token (tg_p11_pool.h); completions go back to the worker's loop
 * (tg_p11_worker.c).
 *
 *   private_key_provider:
 *     provider_name: pkcs11
 *     typed_config:
 *       module: /usr/lib/softhsm/libsofthsm2.so
 *       key: "pkcs11:token=tlsgate;object=server-rsa"
 *       pin: { filename: /run/secrets/pin }
 *       threads: 2
 *
 * This file: configuration, loading keys at start-up, statistics, the
 * ops table. Settings are documented in docs/CONFIG.md and
 * docs/KEY-PROVIDERS.md ("pkcs11").
 */
#include <libgen.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tg_log.h"
#include "core/tg_time.h"
#include "providers/pkcs11/tg_p11_internal.h"
#include "providers/pkcs11/tg_pkcs11.h"

/* ---- configuration ---- */

static void tg_p11_settings_free(void *vs)
{
    struct tg_p11_settings *s = vs;
    if (s == NULL)
        return;
    free(s->module);
    tg_p11_pin_clear(&s->pin);
    free(s);
}

static int tg_p11_conf_fail(const struct tg_conf_params *p, const struct tg_conf_mark *mark,
                            const char *key, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static int tg_p11_conf_fail(const struct tg_conf_params *p, const struct tg_conf_mark *mark,
                            const char *key, char *err, size_t errlen, const char *fmt, ...)
{
    char path[600], msg[700];
    if (key != NULL)
        snprintf(path, sizeof(path), "%s.%s", p->path ? p->path : "typed_config", key);
    else
        snprintf(path, sizeof(path), "%s", p->path ? p->path : "typed_config");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    tg_conf_error(err, errlen, mark, path, "%s", msg);
    return TG_ECONFIG;
}

/* pin: { filename | environment_variable | inline_string } */
static int tg_p11_conf_pin(const struct tg_conf_params *p, struct tg_p11_pin *pin, char *err,
                           size_t errlen)
{
    static const char *const keys[] = {"pin.filename", "pin.environment_variable",
                                       "pin.inline_string"};
    const struct tg_conf_param *given = NULL;
    const char *value = NULL;
    for (size_t i = 0; i < TG_ARRAY_LEN(keys); i++) {
        const char *v = NULL;
        TG_GUARD(tg_conf_params_string(p, keys[i], &v, err, errlen));
        if (v == NULL)
            continue;
        const struct tg_conf_param *q = tg_conf_params_get(p, keys[i]);
        if (given != NULL) {
            /* Point at whichever of the two comes later in the file. */
            const struct tg_conf_param *later =
                q->mark.line > given->mark.line ||
                        (q->mark.line == given->mark.line && q->mark.col > given->mark.col)
                    ? q
                    : given;
            return tg_p11_conf_fail(p, &later->mark, later->key, err, errlen,
                                    "give only one of pin.filename, pin.environment_variable "
                                    "and pin.inline_string");
        }
        if (v[0] == '\0')
            return tg_p11_conf_fail(p, &q->value_mark, keys[i], err, errlen, "must not be empty");
        given = q;
        value = v;
        pin->kind = i == 0 ? TG_P11_PIN_FILE : i == 1 ? TG_P11_PIN_ENV : TG_P11_PIN_INLINE;
    }
    if (given == NULL)
        return TG_OK;
    if (pin->kind == TG_P11_PIN_INLINE) {
        pin->len = strlen(value);
        pin->value = malloc(pin->len);
        if (pin->value == NULL)
            return TG_ENOMEM;
        memcpy(pin->value, value, pin->len);
        return TG_OK;
    }
    if (pin->kind == TG_P11_PIN_FILE && value[0] != '/' && given->value_mark.file != NULL &&
        strchr(given->value_mark.file, '/') != NULL) {
        /* Relative to the configuration file, like certificate files. */
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s", given->value_mark.file);
        size_t len = strlen(dirname(dir)) + strlen(value) + 2;
        pin->source = malloc(len);
        if (pin->source != NULL)
            snprintf(pin->source, len, "%s/%s", dir, value);
    } else {
        pin->source = strdup(value);
    }
    return pin->source == NULL ? TG_ENOMEM : TG_OK;
}

static int tg_p11_configure(const struct tg_conf_keyprov *conf, void **out, bool *kx, char *err,
                            size_t errlen)
{
    const struct tg_conf_params *p = &conf->typed_config;
    *kx = false;
    struct tg_p11_settings *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return TG_ENOMEM;
    const char *module = NULL, *key = NULL, *rsa = "auto";
    uint64_t threads = 2, max_queue = 256, timeout = 5 * TG_NS_PER_S;
    bool kxwant = false;
    s->verify = true;
    int rc = tg_conf_params_string(p, "module", &module, err, errlen);
    if (rc != TG_OK)
        goto out;
    rc = tg_conf_params_string(p, "key", &key, err, errlen);
    if (rc != TG_OK)
        goto out;
    rc = tg_conf_params_u64(p, "threads", 1, 64, &threads, err, errlen);
    if (rc != TG_OK)
        goto out;
    rc = tg_conf_params_u64(p, "max_queue", 1, 65536, &max_queue, err, errlen);
    if (rc != TG_OK)
        goto out;
    rc = tg_conf_params_duration(p, "timeout", &timeout, err, errlen);
    if (rc != TG_OK)
        goto out;
    rc = tg_conf_params_bool(p, "verify", &s->verify, err, errlen);
    if (rc != TG_OK)
        goto out;
    rc = tg_conf_params_string(p, "rsa_mechanism", &rsa, err, errlen);
    if (rc != TG_OK)
        goto out;
    rc = tg_conf_params_bool(p, "key_exchange", &kxwant, err, errlen);
    if (rc != TG_OK)
        goto out;
    rc = tg_p11_conf_pin(p, &s->pin, err, errlen);
    if (rc != TG_OK)
        goto out;
    /* Unknown keys first: a misspelt "modul" is reported as such, not as a
     * missing "module". */
    rc = tg_conf_params_check_unused(p, "pkcs11", err, errlen);
    if (rc != TG_OK)
        goto out;
    const struct tg_conf_param *q;
    if (module == NULL || key == NULL) {
        rc = tg_p11_conf_fail(p, &conf->mark, NULL, err, errlen,
                              module == NULL ? "missing required key 'module' (the PKCS#11 module, "
                                               "e.g. /usr/lib/softhsm/libsofthsm2.so)"
                                             : "missing required key 'key' (a PKCS#11 URI, e.g. "
                                               "\"pkcs11:token=NAME;object=LABEL\")");
        goto out;
    }
    if (module[0] == '\0') {
        q = tg_conf_params_get(p, "module");
        rc = tg_p11_conf_fail(p, &q->value_mark, "module", err, errlen, "must not be empty");
        goto out;
    }
    char why[400];
    if (tg_p11_uri_parse(key, &s->uri, why, sizeof(why)) != TG_OK ||
        (!s->uri.has_object && !s->uri.has_id &&
         snprintf(why, sizeof(why), "the URI names no object: add object=LABEL and/or id=ID") >
             0) ||
        (s->uri.type != TG_P11_OBJ_ANY && s->uri.type != TG_P11_OBJ_PRIVATE &&
         snprintf(why, sizeof(why), "type must be 'private' (the private key object)") > 0)) {
        q = tg_conf_params_get(p, "key");
        rc = tg_p11_conf_fail(p, &q->value_mark, "key", err, errlen, "%s", why);
        goto out;
    }
    if (timeout < TG_NS_PER_MS || timeout > 60 * TG_NS_PER_S) {
        q = tg_conf_params_get(p, "timeout");
        rc = tg_p11_conf_fail(p, &q->value_mark, "timeout", err, errlen,
                              "expected a duration from 1ms to 60s");
        goto out;
    }
    if (strcmp(rsa, "auto") == 0) {
        s->rsa_mode = TG_P11_RSA_AUTO;
    } else if (strcmp(rsa, "native") == 0) {
        s->rsa_mode = TG_P11_RSA_NATIVE;
    } else if (strcmp(rsa, "raw") == 0) {
        s->rsa_mode = TG_P11_RSA_RAW;
    } else {
        q = tg_conf_params_get(p, "rsa_mechanism");
        rc = tg_p11_conf_fail(p, &q->value_mark, "rsa_mechanism", err, errlen,
                              "expected auto, native or raw, got '%.40s'", rsa);
        goto out;
    }
    if (kxwant) {
        q = tg_conf_params_get(p, "key_exchange");
        rc = tg_p11_conf_fail(p, &q->value_mark, "key_exchange", err, errlen,
                              "pkcs11 does not do key exchange (the token only signs)");
        goto out;
    }
    s->module = strdup(module);
    if (s->module == NULL) {
        rc = TG_ENOMEM;
        goto out;
    }
    s->threads = (size_t)threads;
    s->max_queue = (size_t)max_queue;
    s->timeout_ns = timeout;
    *out = s;
    s = NULL;
out:
    tg_p11_settings_free(s);
    return rc;
}

/* ---- keys ---- */

static const char *tg_p11_mech_name(CK_MECHANISM_TYPE m)
{
    switch (m) {
    case CKM_RSA_PKCS:
        return "CKM_RSA_PKCS";
    case CKM_RSA_PKCS_PSS:
        return "CKM_RSA_PKCS_PSS";
    case CKM_RSA_X_509:
        return "CKM_RSA_X_509";
    case CKM_ECDSA:
        return "CKM_ECDSA";
    default:
        return "none";
    }
}

/* One test signature per mechanism the key will use, checked with its
 * public key: proves the login, the mechanisms and that the token's key is
 * the one the certificate names, before any client connects. */
static int tg_p11_selftest(struct tg_p11_token *t, struct tg_p11_key *k, char *err, size_t errlen)
{
    static const int pads[] = {TG_RSA_PAD_PKCS1, TG_RSA_PAD_PSS};
    const EVP_MD *md = EVP_sha256();
    for (size_t i = 0; i < (k->ref.type == CKK_RSA ? 2u : 1u); i++) {
        struct tg_p11_req r;
        memset(&r, 0, sizeof(r));
        r.key = k;
        r.sig.rsa = k->ref.type == CKK_RSA;
        r.sig.padding = pads[i];
        r.sig.md = md;
        r.sig.mgf1 = md;
        r.sig.saltlen = 32;
        r.sig.dlen = 32;
        memset(r.sig.digest, 0x5a, r.sig.dlen);
        tg_p11_sign_now(t, &r);
        CK_MECHANISM_TYPE m = !r.sig.rsa                  ? k->plan.ecdsa
                              : pads[i] == TG_RSA_PAD_PSS ? k->plan.pss
                                                          : k->plan.pkcs1;
        char name[40];
        if (r.result == TG_P11_R_TOKEN_ERROR) {
            snprintf(err, errlen, "token '%s': key '%s': a test signature with %s failed: %s",
                     t->label, k->uri, tg_p11_mech_name(m),
                     tg_p11_ckr_text(r.rv, name, sizeof(name)));
            return TG_EDEVICE;
        }
        if (r.result != TG_P11_R_OK) {
            snprintf(err, errlen,
                     "token '%s': key '%s': a test signature with %s does not verify with the "
                     "key's public half: the private key does not match its public key object "
                     "or certificate",
                     t->label, k->uri, tg_p11_mech_name(m));
            return TG_ECRYPTO;
        }
    }
    return TG_OK;
}

/* The key object, its public half and (leaf != NULL) the certificate next
 * to it, on the token's login session (t->login_lock held). */
static int tg_p11_find_locked(struct tg_p11_token *t, const struct tg_p11_settings *s,
                              EVP_PKEY *cert_pub, struct tg_p11_key *k, X509 **leaf, char *err,
                              size_t errlen)
{
    char why[400] = "";
    TG_GUARD(tg_p11_find_key(t->mod, t->login_session, &s->uri, t->label, &k->handle, &k->ref, err,
                             errlen));
    k->pub = tg_p11_read_public(t->mod, t->login_session, k->handle, &k->ref, why, sizeof(why));
    if (k->pub == NULL && cert_pub != NULL && EVP_PKEY_up_ref(cert_pub))
        k->pub = cert_pub; /* the token hides it: the certificate's */
    if (k->pub == NULL) {
        snprintf(err, errlen, "token '%s': key '%s': cannot read its public key (%s)%s", t->label,
                 k->uri, why, leaf != NULL ? "" : "; give certificate_chain");
        return TG_ECONFIG;
    }
    if (leaf == NULL)
        return TG_OK;
    *leaf = tg_p11_read_cert(t->mod, t->login_session, &k->ref, why, sizeof(why));
    if (*leaf == NULL) {
        snprintf(err, errlen,
                 "token '%s': key '%s': %s: give the certificate with certificate_chain", t->label,
                 k->uri, why);
        return TG_ECONFIG;
    }
    return TG_OK;
}

static int tg_p11_load_key(void *vs, EVP_PKEY *cert_pub, struct tg_pkey **out, X509 **leaf,
                           char *err, size_t errlen)
{
    const struct tg_p11_settings *s = vs;
    struct tg_p11_token *t = NULL;
    TG_GUARD(tg_p11_token_get(s->module, &s->uri, &s->pin, &t, err, errlen));
    struct tg_p11_key *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return TG_ENOMEM;
    atomic_init(&k->refs, 1);
    k->token = t;
    k->verify = s->verify;
    k->timeout_ns = s->timeout_ns;
    tg_p11_uri_format(&s->uri, k->uri, sizeof(k->uri));
    char why[400] = "";
    pthread_mutex_lock(&t->login_lock);
    int rc = tg_p11_find_locked(t, s, cert_pub, k, leaf, err, errlen);
    pthread_mutex_unlock(&t->login_lock);
    if (rc != TG_OK)
        goto out;
    struct tg_p11_mechs mechs;
    (void)tg_p11_read_mechs(t->mod, t->slot, &mechs);
    rc = tg_p11_plan(k->ref.type == CKK_RSA, &mechs, s->rsa_mode, &k->plan, why, sizeof(why));
    if (rc != TG_OK) {
        snprintf(err, errlen, "token '%s': key '%s': %s", t->label, k->uri, why);
        goto out;
    }
    k->bits = EVP_PKEY_get_bits(k->pub);
    /* From here on the token's list holds the first reference. */
    tg_p11_token_add_key(t, k);
    struct tg_p11_key *mine = k;
    k = NULL;
    rc = tg_p11_selftest(t, mine, err, errlen);
    if (rc != TG_OK)
        goto out;
    atomic_fetch_add(&mine->refs, 1);
    rc = tg_pkey_from_public(mine->pub, mine, tg_p11_key_unref, out, why, sizeof(why));
    if (rc != TG_OK) {
        atomic_fetch_sub(&mine->refs, 1);
        snprintf(err, errlen, "token '%s': key '%s': %s", t->label, mine->uri, why);
        goto out;
    }
    rc = tg_p11_token_start(t, s->threads, s->max_queue, err, errlen);
    if (rc != TG_OK) {
        tg_pkey_unref(*out);
        *out = NULL;
        goto out;
    }
    TG_INFO("pkcs11: token '%s' (%s): key '%s': %s %d-bit, %s%s%s, %zu signing thread(s)", t->label,
            t->mod->path, mine->uri, mine->ref.type == CKK_RSA ? "RSA" : "EC", mine->bits,
            tg_p11_mech_name(mine->ref.type == CKK_RSA ? mine->plan.pkcs1 : mine->plan.ecdsa),
            mine->ref.type == CKK_RSA ? " + " : "",
            mine->ref.type == CKK_RSA ? tg_p11_mech_name(mine->plan.pss) : "", t->nthreads);
out:
    if (rc != TG_OK && leaf != NULL) {
        X509_free(*leaf);
        *leaf = NULL;
    }
    tg_p11_key_unref(k);
    return rc;
}

/* ---- statistics ---- */

/* A token label as a Prometheus label value. */
static void tg_p11_prom_label(const char *in, char *out, size_t len)
{
    size_t o = 0;
    for (; *in != '\0' && o + 3 < len; in++) {
        if (*in == '"' || *in == '\\')
            out[o++] = '\\';
        out[o++] = *in == '\n' ? ' ' : *in;
    }
    out[o] = '\0';
}

static void tg_p11_render_stats(struct tg_buf *out)
{
    char lab[256], tok[96];
    struct tg_p11_token *toks = tg_p11_tokens();
    if (toks == NULL)
        return;
    tg_prom_header(out, "tlsgate_pkcs11_operations_total", "counter",
                   "Signatures asked of a PKCS#11 token, by result");
    for (struct tg_p11_token *t = toks; t != NULL; t = t->next) {
        tg_p11_prom_label(t->label, tok, sizeof(tok));
        for (int r = 0; r < TG_P11_R_COUNT; r++) {
            snprintf(lab, sizeof(lab), "token=\"%s\",result=\"%s\"", tok,
                     tg_p11_result_name((enum tg_p11_result)r));
            tg_prom_value(out, "tlsgate_pkcs11_operations_total", lab,
                          atomic_load_explicit(&t->results[r], memory_order_relaxed));
        }
    }
    /* The codes an operator watches are always present; others once seen. */
    static const CK_RV watched[] = {CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT,
                                    CKR_SESSION_HANDLE_INVALID, CKR_DEVICE_ERROR,
                                    CKR_USER_NOT_LOGGED_IN};
    tg_prom_header(out, "tlsgate_pkcs11_errors_total", "counter",
                   "Errors returned by a PKCS#11 token, by CKR code");
    for (struct tg_p11_token *t = toks; t != NULL; t = t->next) {
        tg_p11_prom_label(t->label, tok, sizeof(tok));
        for (int c = 0; c < TG_P11_CKR_COUNT; c++) {
            uint64_t v = atomic_load_explicit(&t->errors[c], memory_order_relaxed);
            bool always = false;
            for (size_t w = 0; w < TG_ARRAY_LEN(watched); w++)
                always = always || tg_p11_ckr_index(watched[w]) == (enum tg_p11_ckr)c;
            if (v == 0 && !always)
                continue;
            snprintf(lab, sizeof(lab), "token=\"%s\",code=\"%s\"", tok,
                     tg_p11_ckr_index_name((enum tg_p11_ckr)c));
            tg_prom_value(out, "tlsgate_pkcs11_errors_total", lab, v);
        }
    }
    static const struct {
        const char *name, *type, *help;
    } gauges[] = {
        {"tlsgate_pkcs11_queue_depth", "gauge", "Signatures waiting for a signing thread"},
        {"tlsgate_pkcs11_signing", "gauge", "Signatures a signing thread is making now"},
        {"tlsgate_pkcs11_token_up", "gauge", "1 when the token signs, 0 while down or failed"},
        {"tlsgate_pkcs11_threads", "gauge", "Signing threads of the token"},
        {"tlsgate_pkcs11_logins_total", "counter", "C_Login calls (start-up, re-login, recovery)"},
        {"tlsgate_pkcs11_sessions_opened_total", "counter", "Sessions opened"},
        {"tlsgate_pkcs11_token_down_total", "counter", "Times the token was found unavailable"},
        {"tlsgate_pkcs11_recoveries_total", "counter", "Times the token came back"},
    };
    for (size_t g = 0; g < TG_ARRAY_LEN(gauges); g++) {
        tg_prom_header(out, gauges[g].name, gauges[g].type, gauges[g].help);
        for (struct tg_p11_token *t = toks; t != NULL; t = t->next) {
            tg_p11_prom_label(t->label, tok, sizeof(tok));
            snprintf(lab, sizeof(lab), "token=\"%s\"", tok);
            uint64_t v = 0;
            pthread_mutex_lock(&t->lock);
            switch (g) {
            case 0:
                v = t->queued;
                break;
            case 1:
                v = t->signing;
                break;
            case 2:
                v = t->state == TG_P11_UP;
                break;
            case 3:
                v = t->nthreads;
                break;
            case 4:
                v = atomic_load(&t->logins);
                break;
            case 5:
                v = atomic_load(&t->sessions_opened);
                break;
            case 6:
                v = atomic_load(&t->downs);
                break;
            default:
                v = atomic_load(&t->recoveries);
                break;
            }
            pthread_mutex_unlock(&t->lock);
            tg_prom_value(out, gauges[g].name, lab, v);
        }
    }
    struct tg_hist_spec spec = tg_hist_latency_us;
    spec.name = "tlsgate_pkcs11_sign_seconds";
    spec.help = "Time the token took for C_SignInit + C_Sign";
    int first = 1;
    for (struct tg_p11_token *t = toks; t != NULL; t = t->next) {
        struct tg_hist h;
        memset(&h, 0, sizeof(h));
        for (size_t i = 0; i < t->nthreads; i++)
            tg_hist_merge(&h, &t->threads[i].sign_us);
        tg_p11_prom_label(t->label, tok, sizeof(tok));
        snprintf(lab, sizeof(lab), "token=\"%s\"", tok);
        tg_prom_hist(out, &spec, lab, &h, first);
        first = 0;
    }
}

/* ---- the provider ---- */

static int tg_p11_supports_key(const struct tg_pkey *key, char *why, size_t whylen)
{
    (void)key;
    snprintf(why, whylen, "pkcs11 signs only with keys held in a token");
    return TG_EUNAVAIL;
}

static void tg_p11_global_cleanup(void)
{
    tg_p11_pool_shutdown();
}

const struct tg_keyprov_ops tg_pkcs11_provider = {
    .name = "pkcs11",
    .description = "private keys held in an HSM or any PKCS#11 token (C_Sign on a thread pool)",
    .does_kx = false,
    .configure = tg_p11_configure,
    .settings_free = tg_p11_settings_free,
    .global_cleanup = tg_p11_global_cleanup,
    .supports_key = tg_p11_supports_key,
    .load_key = tg_p11_load_key,
    .worker_init = tg_p11_worker_init,
    .worker_cleanup = tg_p11_worker_cleanup,
    .submit = tg_p11_submit,
    .flush = tg_p11_flush,
    .pending = tg_p11_pending,
    .drain = tg_p11_drain,
    .render_stats = tg_p11_render_stats,
    .doctor = tg_p11_doctor,
};
