/*
 * `tlsgate doctor` for the pkcs11 provider: what a PKCS#11 module offers.
 *
 * The doctor is generic (src/doctor knows no provider): it calls this hook
 * with no arguments. The modules to inspect are those of the configuration
 * given to `tlsgate doctor --config FILE` (tg_keyprov_doctor_block), and
 * those named in the environment: TLSGATE_PKCS11_MODULE=/path/module.so[:
 * /path/other.so]. For a configured key the doctor says whether its token
 * is there and what of the key is visible without logging in. For
 * each module: its library information, every slot with a token (label,
 * manufacturer, model, serial, flags), the signing mechanisms tlsgate can
 * use, and the objects visible without logging in (public keys,
 * certificates; private keys too on tokens that show them), each as the
 * PKCS#11 URI to put in `key:` (with type=private). The doctor never logs
 * in and never asks for a PIN.
 *
 * Main thread; must not log (the report is the output).
 */
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "providers/pkcs11/tg_p11_internal.h"
#include "providers/pkcs11/tg_pkcs11.h"

#define TG_P11_DOCTOR_ENV "TLSGATE_PKCS11_MODULE"

void tg_p11_json_str(struct tg_buf *out, const char *s)
{
    tg_buf_puts(out, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            tg_buf_printf(out, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            tg_buf_printf(out, "\\u%04x", *p);
        else
            tg_buf_append(out, p, 1);
    }
    tg_buf_puts(out, "\"");
}

static const char *tg_p11_class_type(CK_OBJECT_CLASS c)
{
    switch (c) {
    case CKO_PRIVATE_KEY:
        return "private";
    case CKO_PUBLIC_KEY:
        return "public";
    case CKO_CERTIFICATE:
        return "cert";
    default:
        return NULL;
    }
}

/* "RSA 2048", "EC P-256", "CN=example.com", into buf. */
static void tg_p11_object_what(struct tg_p11_module *m, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                               CK_OBJECT_CLASS cls, char *buf, size_t len)
{
    snprintf(buf, len, "?");
    if (cls == CKO_CERTIFICATE) {
        unsigned char der[8192];
        CK_ATTRIBUTE a = {CKA_VALUE, der, sizeof(der)};
        if (m->f->C_GetAttributeValue(s, h, &a, 1) != CKR_OK)
            return;
        const unsigned char *p = der;
        X509 *x = d2i_X509(NULL, &p, (long)a.ulValueLen);
        if (x == NULL)
            return;
        X509_NAME_oneline(X509_get_subject_name(x), buf, (int)len);
        X509_free(x);
        return;
    }
    CK_KEY_TYPE kt = 0;
    CK_ATTRIBUTE a = {CKA_KEY_TYPE, &kt, sizeof(kt)};
    if (m->f->C_GetAttributeValue(s, h, &a, 1) != CKR_OK)
        return;
    if (kt == CKK_RSA) {
        CK_ATTRIBUTE n = {CKA_MODULUS, NULL, 0};
        if (m->f->C_GetAttributeValue(s, h, &n, 1) == CKR_OK &&
            n.ulValueLen != CK_UNAVAILABLE_INFORMATION)
            snprintf(buf, len, "RSA %lu", (unsigned long)n.ulValueLen * 8);
        else
            snprintf(buf, len, "RSA");
    } else if (kt == CKK_EC) {
        unsigned char params[64];
        CK_ATTRIBUTE p = {CKA_EC_PARAMS, params, sizeof(params)};
        const char *curve = "EC (other curve)";
        if (m->f->C_GetAttributeValue(s, h, &p, 1) == CKR_OK) {
            if (p.ulValueLen == 10 && params[9] == 0x07 && params[2] == 0x2a)
                curve = "EC P-256";
            else if (p.ulValueLen == 7 && params[6] == 0x22)
                curve = "EC P-384";
            else if (p.ulValueLen == 7 && params[6] == 0x23)
                curve = "EC P-521";
        }
        snprintf(buf, len, "%s", curve);
    } else {
        snprintf(buf, len, "key type 0x%lx (not usable)", (unsigned long)kt);
    }
}

static void tg_p11_doctor_objects(struct tg_p11_module *m, CK_SLOT_ID slot, const char *label,
                                  struct tg_buf *text, struct tg_buf *json)
{
    CK_SESSION_HANDLE s;
    char name[40];
    CK_RV rv = m->f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
    tg_buf_puts(json, ",\"objects\":[");
    if (rv != CKR_OK) {
        tg_buf_printf(text, "      objects: cannot open a session: %s\n",
                      tg_p11_ckr_text(rv, name, sizeof(name)));
        tg_buf_puts(json, "]");
        return;
    }
    static const CK_OBJECT_CLASS classes[] = {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, CKO_CERTIFICATE};
    size_t shown = 0;
    for (size_t c = 0; c < TG_ARRAY_LEN(classes); c++) {
        CK_OBJECT_CLASS cls = classes[c];
        CK_ATTRIBUTE t = {CKA_CLASS, &cls, sizeof(cls)};
        CK_OBJECT_HANDLE found[64];
        CK_ULONG n = 0;
        if (m->f->C_FindObjectsInit(s, &t, 1) != CKR_OK)
            continue;
        (void)m->f->C_FindObjects(s, found, TG_ARRAY_LEN(found), &n);
        (void)m->f->C_FindObjectsFinal(s);
        for (CK_ULONG i = 0; i < n; i++) {
            unsigned char id[TG_P11_URI_ID_MAX];
            char olabel[TG_P11_URI_LABEL_MAX + 1] = "";
            CK_ATTRIBUTE a[] = {{CKA_ID, id, sizeof(id)}, {CKA_LABEL, olabel, sizeof(olabel) - 1}};
            if (m->f->C_GetAttributeValue(s, found[i], a, 2) != CKR_OK)
                continue;
            char uri[600] = "pkcs11:";
            size_t off = strlen(uri);
            const char *type = tg_p11_class_type(cls);
            tg_p11_uri_append(uri, sizeof(uri), &off, "token", (const unsigned char *)label,
                              strlen(label));
            if (a[1].ulValueLen != CK_UNAVAILABLE_INFORMATION && a[1].ulValueLen > 0)
                tg_p11_uri_append(uri, sizeof(uri), &off, "object", (const unsigned char *)olabel,
                                  a[1].ulValueLen);
            if (a[0].ulValueLen != CK_UNAVAILABLE_INFORMATION && a[0].ulValueLen > 0)
                tg_p11_uri_append(uri, sizeof(uri), &off, "id", id, a[0].ulValueLen);
            tg_p11_uri_append(uri, sizeof(uri), &off, "type", (const unsigned char *)type,
                              strlen(type));
            char what[256];
            tg_p11_object_what(m, s, found[i], cls, what, sizeof(what));
            tg_buf_printf(text, "      %s  %s\n", uri, what);
            tg_buf_printf(json, "%s{\"uri\":", shown++ ? "," : "");
            tg_p11_json_str(json, uri);
            tg_buf_puts(json, ",\"what\":");
            tg_p11_json_str(json, what);
            tg_buf_puts(json, "}");
        }
    }
    if (shown == 0)
        tg_buf_puts(text, "      objects: none visible without logging in\n");
    tg_buf_puts(json, "]");
    (void)m->f->C_CloseSession(s);
}

/* A configured key: the block's path, and its settings (configure). */
struct tg_p11_doc_use {
    const char *path;
    struct tg_p11_settings *s;
};

/* Objects of one class with the URI's label and/or id, seen on session s. */
static CK_ULONG tg_p11_doctor_count(struct tg_p11_module *m, CK_SESSION_HANDLE s,
                                    const struct tg_p11_uri *u, CK_OBJECT_CLASS cls)
{
    CK_ATTRIBUTE t[3] = {{CKA_CLASS, &cls, sizeof(cls)}};
    CK_ULONG nt = 1, n = 0;
    if (u->has_object)
        t[nt++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)u->object, strlen(u->object)};
    if (u->has_id)
        t[nt++] = (CK_ATTRIBUTE){CKA_ID, (void *)u->id, u->id_len};
    CK_OBJECT_HANDLE found[4];
    if (m->f->C_FindObjectsInit(s, t, nt) != CKR_OK)
        return 0;
    (void)m->f->C_FindObjects(s, found, TG_ARRAY_LEN(found), &n);
    (void)m->f->C_FindObjectsFinal(s);
    return n;
}

/* What the doctor can tell about a configured key without logging in (m:
 * its module, NULL when that did not open). */
static void tg_p11_doctor_use(struct tg_p11_module *m, const struct tg_p11_doc_use *use,
                              struct tg_buf *text, struct tg_buf *json, bool first)
{
    char uri[400], why[600] = "", label[40], name[40];
    tg_p11_uri_format(&use->s->uri, uri, sizeof(uri));
    CK_SLOT_ID slot;
    CK_TOKEN_INFO ti;
    const char *verdict;
    if (m == NULL) {
        verdict = "the module is not usable (above)";
    } else if (tg_p11_find_slot(m, &use->s->uri, &slot, &ti, why, sizeof(why)) != TG_OK) {
        verdict = why;
    } else {
        CK_SESSION_HANDLE s;
        CK_RV rv = m->f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
        tg_p11_token_label(&ti, label, sizeof(label));
        if (rv != CKR_OK) {
            snprintf(why, sizeof(why), "token '%s': cannot open a session: %s", label,
                     tg_p11_ckr_text(rv, name, sizeof(name)));
        } else {
            CK_ULONG priv = tg_p11_doctor_count(m, s, &use->s->uri, CKO_PRIVATE_KEY);
            CK_ULONG pub = tg_p11_doctor_count(m, s, &use->s->uri, CKO_PUBLIC_KEY);
            CK_ULONG cert = tg_p11_doctor_count(m, s, &use->s->uri, CKO_CERTIFICATE);
            (void)m->f->C_CloseSession(s);
            snprintf(why, sizeof(why),
                     "token '%s' found; without login: %lu private key(s), %lu public key(s), "
                     "%lu certificate(s) match%s",
                     label, (unsigned long)priv, (unsigned long)pub, (unsigned long)cert,
                     priv == 0 && (ti.flags & CKF_LOGIN_REQUIRED)
                         ? " (private keys are hidden until login)"
                         : "");
        }
        verdict = why;
    }
    tg_buf_printf(text, "  configured: %s: %s\n    %s\n", use->path, uri, verdict);
    tg_buf_printf(json, "%s{\"path\":", first ? "" : ",");
    tg_p11_json_str(json, use->path);
    tg_buf_puts(json, ",\"key\":");
    tg_p11_json_str(json, uri);
    tg_buf_puts(json, ",\"status\":");
    tg_p11_json_str(json, verdict);
    tg_buf_puts(json, "}");
}

static void tg_p11_doctor_module(const char *path, const struct tg_p11_doc_use *uses, size_t nuses,
                                 struct tg_buf *text, struct tg_buf *json, bool first)
{
    struct tg_p11_module *m = NULL;
    char why[600] = "", a[40], b[40], c[40];
    tg_buf_printf(json, "%s{\"path\":", first ? "" : ",");
    tg_p11_json_str(json, path);
    if (tg_p11_module_open(path, &m, why, sizeof(why)) != TG_OK) {
        m = NULL;
        tg_buf_printf(text, "module %s: not usable: %s\n", path, why);
        tg_buf_puts(json, ",\"error\":");
        tg_p11_json_str(json, why);
    } else {
        tg_p11_field(m->info.manufacturerID, sizeof(m->info.manufacturerID), a, sizeof(a));
        tg_p11_field(m->info.libraryDescription, sizeof(m->info.libraryDescription), b, sizeof(b));
        tg_buf_printf(text, "module %s: %s \"%s\" %u.%u, PKCS#11 %u.%u\n", path, a, b,
                      m->info.libraryVersion.major, m->info.libraryVersion.minor,
                      m->info.cryptokiVersion.major, m->info.cryptokiVersion.minor);
        tg_buf_puts(json, ",\"manufacturer\":");
        tg_p11_json_str(json, a);
        tg_buf_puts(json, ",\"description\":");
        tg_p11_json_str(json, b);
    }
    tg_buf_puts(json, ",\"configured\":[");
    size_t shown_use = 0;
    for (size_t i = 0; i < nuses; i++) {
        if (strcmp(uses[i].s->module, path) == 0)
            tg_p11_doctor_use(m, &uses[i], text, json, shown_use++ == 0);
    }
    tg_buf_puts(json, "]");
    if (m == NULL) {
        tg_buf_puts(json, "}");
        return;
    }
    tg_buf_puts(json, ",\"tokens\":[");
    CK_SLOT_ID slots[64];
    CK_ULONG n = TG_ARRAY_LEN(slots);
    CK_RV rv = m->f->C_GetSlotList(CK_TRUE, slots, &n);
    if (rv != CKR_OK) {
        tg_buf_printf(text, "  C_GetSlotList: %s\n", tg_p11_ckr_text(rv, a, sizeof(a)));
        n = 0;
    } else if (n == 0) {
        tg_buf_puts(text, "  no token present\n");
    }
    size_t shown = 0;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        if (m->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue;
        if (!(ti.flags & CKF_TOKEN_INITIALIZED)) {
            tg_buf_printf(text, "  slot %lu: token not initialised\n", (unsigned long)slots[i]);
            continue;
        }
        char label[40];
        tg_p11_token_label(&ti, label, sizeof(label));
        tg_p11_field(ti.manufacturerID, sizeof(ti.manufacturerID), a, sizeof(a));
        tg_p11_field(ti.model, sizeof(ti.model), b, sizeof(b));
        tg_p11_field(ti.serialNumber, sizeof(ti.serialNumber), c, sizeof(c));
        bool login = (ti.flags & CKF_LOGIN_REQUIRED) != 0;
        const char *pin = (ti.flags & CKF_USER_PIN_LOCKED)        ? "user PIN locked"
                          : (ti.flags & CKF_USER_PIN_FINAL_TRY)   ? "user PIN: last try left"
                          : (ti.flags & CKF_USER_PIN_COUNT_LOW)   ? "user PIN: wrong tries seen"
                          : (ti.flags & CKF_USER_PIN_INITIALIZED) ? "user PIN set"
                                                                  : "no user PIN set";
        tg_buf_printf(text, "  slot %lu: token '%s' (%s %s, serial %s): %s, %s\n",
                      (unsigned long)slots[i], label, a, b, c,
                      login ? "login required" : "no login needed", pin);
        struct tg_p11_mechs mech;
        (void)tg_p11_read_mechs(m, slots[i], &mech);
        tg_buf_printf(text,
                      "    signing: CKM_RSA_PKCS %s, CKM_RSA_PKCS_PSS %s, CKM_RSA_X_509 %s, "
                      "CKM_ECDSA %s\n",
                      mech.rsa_pkcs ? "yes" : "no", mech.rsa_pss ? "yes" : "no",
                      mech.rsa_x509 ? "yes" : "no", mech.ecdsa ? "yes" : "no");
        tg_buf_printf(json, "%s{\"slot\":%lu,\"label\":", shown++ ? "," : "",
                      (unsigned long)slots[i]);
        tg_p11_json_str(json, label);
        tg_buf_puts(json, ",\"manufacturer\":");
        tg_p11_json_str(json, a);
        tg_buf_puts(json, ",\"model\":");
        tg_p11_json_str(json, b);
        tg_buf_puts(json, ",\"serial\":");
        tg_p11_json_str(json, c);
        tg_buf_printf(json,
                      ",\"login_required\":%s,\"pin\":\"%s\",\"mechanisms\":{\"CKM_RSA_PKCS\":%s,"
                      "\"CKM_RSA_PKCS_PSS\":%s,\"CKM_RSA_X_509\":%s,\"CKM_ECDSA\":%s}",
                      login ? "true" : "false", pin, mech.rsa_pkcs ? "true" : "false",
                      mech.rsa_pss ? "true" : "false", mech.rsa_x509 ? "true" : "false",
                      mech.ecdsa ? "true" : "false");
        tg_p11_doctor_objects(m, slots[i], label, text, json);
        if (login)
            tg_buf_puts(text, "      (private keys may be hidden until login; the doctor never "
                              "logs in: use the public key's or certificate's URI with "
                              "type=private)\n");
        tg_buf_puts(json, "}");
    }
    tg_buf_puts(json, "]}");
    tg_p11_module_close(m);
}

#define TG_P11_DOCTOR_MAX 32

/* Add path to the list of modules to inspect, once. */
static void tg_p11_doctor_add(const char **mods, size_t *n, const char *path)
{
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(mods[i], path) == 0)
            return;
    }
    if (*n < TG_P11_DOCTOR_MAX)
        mods[(*n)++] = path;
}

void tg_p11_doctor(struct tg_buf *text, struct tg_buf *json)
{
    const char *mods[TG_P11_DOCTOR_MAX];
    size_t nmods = 0, nuses = 0;
    struct tg_p11_doc_use uses[TG_P11_DOCTOR_MAX];
    /* The configuration's blocks first: a block that does not configure is
     * reported (check-config says the same, with its position). */
    size_t it = 0;
    const struct tg_conf_keyprov *kp;
    bool have_config = false;
    while ((kp = tg_keyprov_doctor_block(tg_pkcs11_provider.name, &it)) != NULL) {
        have_config = true;
        void *settings = NULL;
        bool kx = false;
        char err[TG_CONFIG_ERRLEN] = "";
        if (tg_pkcs11_provider.configure(kp, &settings, &kx, err, sizeof(err)) != TG_OK) {
            tg_buf_printf(text, "configured: %s: not usable: %s\n", kp->path, err);
            continue;
        }
        if (nuses == TG_P11_DOCTOR_MAX) {
            tg_pkcs11_provider.settings_free(settings);
            continue;
        }
        uses[nuses] = (struct tg_p11_doc_use){kp->path, settings};
        tg_p11_doctor_add(mods, &nmods, uses[nuses].s->module);
        nuses++;
    }
    const char *env = getenv(TG_P11_DOCTOR_ENV);
    char *list = env != NULL && env[0] != '\0' ? strdup(env) : NULL;
    char *save = NULL;
    for (char *p = list ? strtok_r(list, ":", &save) : NULL; p != NULL;
         p = strtok_r(NULL, ":", &save))
        tg_p11_doctor_add(mods, &nmods, p);
    tg_buf_puts(json, "\"modules\":[");
    if (nmods == 0)
        tg_buf_printf(text,
                      "modules: none inspected; %s`tlsgate doctor --config FILE` lists the "
                      "tokens, mechanisms and keys of the modules FILE names, or set "
                      "%s=/path/to/module.so (colon-separated for several)\n",
                      have_config ? "the configuration names no usable pkcs11 module; " : "",
                      TG_P11_DOCTOR_ENV);
    for (size_t i = 0; i < nmods; i++)
        tg_p11_doctor_module(mods[i], uses, nuses, text, json, i == 0);
    tg_buf_puts(json, "]");
    free(list);
    for (size_t i = 0; i < nuses; i++)
        tg_pkcs11_provider.settings_free(uses[i].s);
}
