/*
 * One PKCS#11 module: loading, tokens, login, key and certificate objects.
 * Contract in tg_p11_module.h.
 */
#include "providers/pkcs11/tg_p11_module.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *tg_p11_token_label(const CK_TOKEN_INFO *ti, char *buf, size_t len)
{
    return tg_p11_field(ti->label, sizeof(ti->label), buf, len);
}

static int tg_p11_fail_rv(char *why, size_t whylen, int rc, const char *what, CK_RV rv)
{
    char name[40];
    snprintf(why, whylen, "%s: %s", what, tg_p11_ckr_text(rv, name, sizeof(name)));
    return rc;
}

/* ---- the module ---- */

int tg_p11_module_open(const char *path, struct tg_p11_module **out, char *why, size_t whylen)
{
    *out = NULL;
    struct tg_p11_module *m = calloc(1, sizeof(*m));
    if (m == NULL || (m->path = strdup(path)) == NULL) {
        free(m);
        return TG_ENOMEM;
    }
    int rc = TG_EUNAVAIL;
    char what[600];
    dlerror();
    m->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (m->dl == NULL) {
        const char *e = dlerror();
        snprintf(why, whylen, "cannot load PKCS#11 module '%s': %s", path, e ? e : "unknown error");
        goto out;
    }
    CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(m->dl, "C_GetFunctionList");
    if (gfl == NULL) {
        snprintf(why, whylen, "'%s' is not a PKCS#11 module (it has no C_GetFunctionList)", path);
        goto out;
    }
    CK_RV rv = gfl(&m->f);
    if (rv != CKR_OK || m->f == NULL) {
        snprintf(what, sizeof(what), "PKCS#11 module '%s': C_GetFunctionList failed", path);
        rc = tg_p11_fail_rv(why, whylen, TG_EUNAVAIL, what, rv);
        goto out;
    }
    if (m->f->version.major != 2) {
        snprintf(why, whylen, "PKCS#11 module '%s' implements version %u.%u (2.x is supported)",
                 path, m->f->version.major, m->f->version.minor);
        goto out;
    }
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK; /* pool threads call it concurrently */
    rv = m->f->C_Initialize(&args);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        snprintf(what, sizeof(what), "PKCS#11 module '%s': C_Initialize failed", path);
        rc = tg_p11_fail_rv(why, whylen, TG_EDEVICE, what, rv);
        goto out;
    }
    m->finalize = rv == CKR_OK;
    rv = m->f->C_GetInfo(&m->info);
    if (rv != CKR_OK) {
        snprintf(what, sizeof(what), "PKCS#11 module '%s': C_GetInfo failed", path);
        rc = tg_p11_fail_rv(why, whylen, TG_EDEVICE, what, rv);
        goto out;
    }
    *out = m;
    m = NULL;
    rc = TG_OK;
out:
    tg_p11_module_close(m);
    return rc;
}

void tg_p11_module_close(struct tg_p11_module *m)
{
    if (m == NULL)
        return;
    if (m->f != NULL && m->finalize)
        (void)m->f->C_Finalize(NULL);
    if (m->dl != NULL)
        dlclose(m->dl);
    free(m->path);
    free(m);
}

/* ---- tokens ---- */

int tg_p11_find_slot(struct tg_p11_module *m, const struct tg_p11_uri *u, CK_SLOT_ID *slot,
                     CK_TOKEN_INFO *ti, char *why, size_t whylen)
{
    char what[600], label[40];
    if (!tg_p11_uri_match_library(u, &m->info)) {
        snprintf(why, whylen, "the library attributes of the key URI do not match module '%s'",
                 m->path);
        return TG_ECONFIG;
    }
    CK_ULONG n = 0;
    CK_RV rv = m->f->C_GetSlotList(CK_TRUE, NULL, &n);
    CK_SLOT_ID *slots = NULL;
    if (rv == CKR_OK && n > 0) {
        slots = calloc(n, sizeof(*slots));
        if (slots == NULL)
            return TG_ENOMEM;
        rv = m->f->C_GetSlotList(CK_TRUE, slots, &n);
    }
    if (rv != CKR_OK) {
        free(slots);
        snprintf(what, sizeof(what), "PKCS#11 module '%s': C_GetSlotList failed", m->path);
        return tg_p11_fail_rv(why, whylen, TG_EDEVICE, what, rv);
    }
    size_t found = 0;
    char seen[256] = "";
    size_t off = 0;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_SLOT_INFO si;
        CK_TOKEN_INFO t;
        if (m->f->C_GetSlotInfo(slots[i], &si) != CKR_OK ||
            m->f->C_GetTokenInfo(slots[i], &t) != CKR_OK)
            continue;
        if (off < sizeof(seen) - 1) {
            int w = snprintf(seen + off, sizeof(seen) - off, "%s'%s'", off ? ", " : "",
                             tg_p11_token_label(&t, label, sizeof(label)));
            off = w > 0 ? off + (size_t)w : off;
        }
        if (!tg_p11_uri_match_slot(u, slots[i], &si) || !tg_p11_uri_match_token(u, &t))
            continue;
        if (found++ == 0) {
            *slot = slots[i];
            *ti = t;
        }
    }
    free(slots);
    char uri[300];
    struct tg_p11_uri tok = *u;
    tok.has_object = tok.has_id = false;
    tok.type = TG_P11_OBJ_ANY;
    tg_p11_uri_format(&tok, uri, sizeof(uri));
    if (found == 0) {
        snprintf(why, whylen, "no token matching '%s' in PKCS#11 module '%s' (tokens present: %s)",
                 uri, m->path, off ? seen : "none");
        return TG_ECONFIG;
    }
    if (found > 1) {
        snprintf(why, whylen,
                 "%zu tokens match '%s' in PKCS#11 module '%s' (%s): name one with token=, "
                 "serial= or slot-id=",
                 found, uri, m->path, seen);
        return TG_ECONFIG;
    }
    return TG_OK;
}

/* ---- PIN ---- */

int tg_p11_pin_read(const struct tg_p11_pin *p, unsigned char *buf, size_t cap, size_t *len,
                    char *why, size_t whylen)
{
    *len = 0;
    switch (p->kind) {
    case TG_P11_PIN_NONE:
        snprintf(why, whylen, "no PIN configured");
        return TG_ECONFIG;
    case TG_P11_PIN_INLINE:
        if (p->len > cap)
            return TG_EINVAL;
        memcpy(buf, p->value, p->len);
        *len = p->len;
        break;
    case TG_P11_PIN_ENV: {
        const char *v = getenv(p->source);
        if (v == NULL) {
            snprintf(why, whylen, "PIN: environment variable %s is not set", p->source);
            return TG_ECONFIG;
        }
        size_t l = strlen(v);
        if (l > cap) {
            snprintf(why, whylen, "PIN: environment variable %s is longer than %zu bytes",
                     p->source, cap);
            return TG_ECONFIG;
        }
        memcpy(buf, v, l);
        *len = l;
        break;
    }
    case TG_P11_PIN_FILE: {
        int fd = open(p->source, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            snprintf(why, whylen, "PIN: cannot read '%s': %s", p->source, strerror(errno));
            return TG_ECONFIG;
        }
        size_t got = 0;
        ssize_t r = 1;
        while (got < cap && (r = read(fd, buf + got, cap - got)) > 0)
            got += (size_t)r;
        unsigned char extra;
        bool more = got == cap && read(fd, &extra, 1) > 0;
        int e = errno;
        close(fd);
        if (r < 0 || more) {
            OPENSSL_cleanse(buf, got);
            snprintf(why, whylen, "PIN: cannot read '%s': %s", p->source,
                     more ? "longer than 256 bytes" : strerror(e));
            return TG_ECONFIG;
        }
        if (got > 0 && buf[got - 1] == '\n')
            got--;
        if (got > 0 && buf[got - 1] == '\r')
            got--;
        *len = got;
        break;
    }
    }
    if (*len == 0) {
        snprintf(why, whylen, "PIN: %s is empty",
                 p->kind == TG_P11_PIN_FILE  ? p->source
                 : p->kind == TG_P11_PIN_ENV ? p->source
                                             : "the inline PIN");
        return TG_ECONFIG;
    }
    return TG_OK;
}

int tg_p11_pin_copy(struct tg_p11_pin *dst, const struct tg_p11_pin *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->kind = src->kind;
    if (src->source != NULL && (dst->source = strdup(src->source)) == NULL)
        return TG_ENOMEM;
    if (src->value != NULL) {
        dst->value = malloc(src->len ? src->len : 1);
        if (dst->value == NULL) {
            tg_p11_pin_clear(dst);
            return TG_ENOMEM;
        }
        memcpy(dst->value, src->value, src->len);
        dst->len = src->len;
    }
    return TG_OK;
}

void tg_p11_pin_clear(struct tg_p11_pin *p)
{
    free(p->source);
    if (p->value != NULL) {
        OPENSSL_cleanse(p->value, p->len);
        free(p->value);
    }
    memset(p, 0, sizeof(*p));
}

CK_RV tg_p11_login(struct tg_p11_module *m, CK_SESSION_HANDLE s, const CK_TOKEN_INFO *ti,
                   const struct tg_p11_pin *pin, char *why, size_t whylen)
{
    char label[40], name[40];
    tg_p11_token_label(ti, label, sizeof(label));
    CK_SESSION_INFO info;
    if (m->f->C_GetSessionInfo(s, &info) == CKR_OK &&
        (info.state == CKS_RO_USER_FUNCTIONS || info.state == CKS_RW_USER_FUNCTIONS))
        return CKR_OK;
    CK_RV rv;
    if (pin->kind == TG_P11_PIN_NONE) {
        if (ti->flags & CKF_PROTECTED_AUTHENTICATION_PATH) {
            rv = m->f->C_Login(s, CKU_USER, NULL, 0);
        } else if (!(ti->flags & CKF_LOGIN_REQUIRED)) {
            return CKR_OK;
        } else {
            snprintf(why, whylen, "token '%s' requires a login: set the provider's 'pin'", label);
            return CKR_ARGUMENTS_BAD;
        }
    } else {
        unsigned char buf[TG_P11_PIN_MAX];
        size_t len = 0;
        char pwhy[300] = "";
        if (tg_p11_pin_read(pin, buf, sizeof(buf), &len, pwhy, sizeof(pwhy)) != TG_OK) {
            snprintf(why, whylen, "token '%s': %s", label, pwhy);
            return CKR_ARGUMENTS_BAD;
        }
        rv = m->f->C_Login(s, CKU_USER, buf, (CK_ULONG)len);
        OPENSSL_cleanse(buf, sizeof(buf));
    }
    if (rv == CKR_USER_ALREADY_LOGGED_IN)
        rv = CKR_OK;
    if (rv != CKR_OK)
        snprintf(why, whylen, "token '%s': login failed: %s%s", label,
                 tg_p11_ckr_text(rv, name, sizeof(name)),
                 rv == CKR_PIN_INCORRECT ? " (wrong PIN)"
                 : rv == CKR_PIN_LOCKED  ? " (the PIN is locked: unlock it with the SO PIN)"
                                         : "");
    return rv;
}

/* ---- objects ---- */

/* Find up to max objects matching tmpl. */
static CK_RV tg_p11_find(struct tg_p11_module *m, CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl,
                         CK_ULONG n, CK_OBJECT_HANDLE *found, CK_ULONG max, CK_ULONG *nfound)
{
    *nfound = 0;
    CK_RV rv = m->f->C_FindObjectsInit(s, tmpl, n);
    if (rv != CKR_OK)
        return rv;
    rv = m->f->C_FindObjects(s, found, max, nfound);
    CK_RV rv2 = m->f->C_FindObjectsFinal(s);
    return rv != CKR_OK ? rv : rv2;
}

/* A variable-length attribute into buf (cap); *len its length. */
static CK_RV tg_p11_attr(struct tg_p11_module *m, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                         CK_ATTRIBUTE_TYPE type, void *buf, size_t cap, size_t *len)
{
    CK_ATTRIBUTE a = {type, NULL, 0};
    CK_RV rv = m->f->C_GetAttributeValue(s, h, &a, 1);
    if (rv != CKR_OK)
        return rv;
    if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION)
        return CKR_ATTRIBUTE_SENSITIVE;
    if (a.ulValueLen > cap)
        return CKR_BUFFER_TOO_SMALL;
    a.pValue = buf;
    rv = m->f->C_GetAttributeValue(s, h, &a, 1);
    *len = a.ulValueLen;
    return rv;
}

static size_t tg_p11_template(CK_ATTRIBUTE *t, CK_OBJECT_CLASS *cls,
                              const struct tg_p11_keyref *ref)
{
    size_t n = 0;
    t[n++] = (CK_ATTRIBUTE){CKA_CLASS, cls, sizeof(*cls)};
    if (ref->has_id)
        t[n++] = (CK_ATTRIBUTE){CKA_ID, (void *)ref->id, ref->id_len};
    if (ref->has_label)
        t[n++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)ref->label, strlen(ref->label)};
    return n;
}

int tg_p11_find_key(struct tg_p11_module *m, CK_SESSION_HANDLE s, const struct tg_p11_uri *u,
                    const char *token, CK_OBJECT_HANDLE *h, struct tg_p11_keyref *ref, char *why,
                    size_t whylen)
{
    char uri[400], name[40];
    tg_p11_uri_format(u, uri, sizeof(uri));
    memset(ref, 0, sizeof(*ref));
    if (!u->has_object && !u->has_id) {
        snprintf(why, whylen, "key '%s' names no object: add object=LABEL and/or id=ID", uri);
        return TG_ECONFIG;
    }
    if (u->type != TG_P11_OBJ_ANY && u->type != TG_P11_OBJ_PRIVATE) {
        snprintf(why, whylen, "key '%s': type must be 'private' (the private key object)", uri);
        return TG_ECONFIG;
    }
    ref->has_id = u->has_id;
    memcpy(ref->id, u->id, u->id_len);
    ref->id_len = u->id_len;
    ref->has_label = u->has_object;
    snprintf(ref->label, sizeof(ref->label), "%s", u->object);
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[3];
    CK_OBJECT_HANDLE found[2];
    CK_ULONG n = 0;
    CK_RV rv = tg_p11_find(m, s, t, tg_p11_template(t, &cls, ref), found, 2, &n);
    if (rv != CKR_OK) {
        snprintf(why, whylen, "token '%s': searching for '%s' failed: %s", token, uri,
                 tg_p11_ckr_text(rv, name, sizeof(name)));
        return TG_EDEVICE;
    }
    if (n == 0) {
        snprintf(why, whylen, "no private key '%s' on token '%s'", uri, token);
        return TG_ECONFIG;
    }
    if (n > 1) {
        snprintf(why, whylen,
                 "several private keys match '%s' on token '%s': name one with object= and id=",
                 uri, token);
        return TG_ECONFIG;
    }
    *h = found[0];
    CK_BBOOL can_sign = CK_TRUE;
    CK_ATTRIBUTE a[] = {{CKA_KEY_TYPE, &ref->type, sizeof(ref->type)},
                        {CKA_SIGN, &can_sign, sizeof(can_sign)}};
    rv = m->f->C_GetAttributeValue(s, *h, a, 2);
    if (rv != CKR_OK) {
        snprintf(why, whylen, "token '%s': reading key '%s' failed: %s", token, uri,
                 tg_p11_ckr_text(rv, name, sizeof(name)));
        return TG_EDEVICE;
    }
    if (ref->type != CKK_RSA && ref->type != CKK_EC) {
        snprintf(why, whylen, "key '%s' on token '%s' is neither RSA nor EC (CKK 0x%lx)", uri,
                 token, (unsigned long)ref->type);
        return TG_ECONFIG;
    }
    if (!can_sign) {
        snprintf(why, whylen, "key '%s' on token '%s' may not sign (CKA_SIGN is false)", uri,
                 token);
        return TG_ECONFIG;
    }
    /* The real id and label, to find the same object again later. */
    size_t len = 0;
    if (tg_p11_attr(m, s, *h, CKA_ID, ref->id, sizeof(ref->id), &len) == CKR_OK) {
        ref->id_len = len;
        ref->has_id = true;
    }
    char label[TG_P11_URI_LABEL_MAX + 1];
    if (tg_p11_attr(m, s, *h, CKA_LABEL, label, sizeof(label) - 1, &len) == CKR_OK &&
        memchr(label, '\0', len) == NULL) {
        label[len] = '\0';
        memcpy(ref->label, label, len + 1);
        ref->has_label = true;
    }
    return TG_OK;
}

CK_RV tg_p11_find_again(struct tg_p11_module *m, CK_SESSION_HANDLE s,
                        const struct tg_p11_keyref *ref, CK_OBJECT_HANDLE *h)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[3];
    CK_OBJECT_HANDLE found[2];
    CK_ULONG n = 0;
    CK_RV rv = tg_p11_find(m, s, t, tg_p11_template(t, &cls, ref), found, 2, &n);
    if (rv != CKR_OK)
        return rv;
    if (n != 1)
        return CKR_OBJECT_HANDLE_INVALID;
    *h = found[0];
    return CKR_OK;
}

/* The first object of class cls with the key's id (else label). */
static CK_RV tg_p11_find_sibling(struct tg_p11_module *m, CK_SESSION_HANDLE s,
                                 const struct tg_p11_keyref *ref, CK_OBJECT_CLASS cls,
                                 CK_OBJECT_HANDLE *h)
{
    struct tg_p11_keyref by = *ref;
    CK_ATTRIBUTE t[3];
    CK_ULONG n = 0;
    CK_RV rv = CKR_OBJECT_HANDLE_INVALID;
    if (ref->has_id && ref->id_len > 0) {
        by.has_label = false;
        rv = tg_p11_find(m, s, t, tg_p11_template(t, &cls, &by), h, 1, &n);
        if (rv == CKR_OK && n == 1)
            return CKR_OK;
    }
    if (ref->has_label) {
        by = *ref;
        by.has_id = false;
        rv = tg_p11_find(m, s, t, tg_p11_template(t, &cls, &by), h, 1, &n);
        if (rv == CKR_OK && n == 1)
            return CKR_OK;
    }
    return rv == CKR_OK ? CKR_OBJECT_HANDLE_INVALID : rv;
}

static EVP_PKEY *tg_p11_build_pub(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY *pk = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, "provider=default");
    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pk = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pk;
}

static EVP_PKEY *tg_p11_rsa_pub(struct tg_p11_module *m, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h)
{
    unsigned char n[1024], e[16];
    size_t nl = 0, el = 0;
    if (tg_p11_attr(m, s, h, CKA_MODULUS, n, sizeof(n), &nl) != CKR_OK ||
        tg_p11_attr(m, s, h, CKA_PUBLIC_EXPONENT, e, sizeof(e), &el) != CKR_OK || nl == 0 ||
        el == 0)
        return NULL;
    BIGNUM *bn = BN_bin2bn(n, (int)nl, NULL), *be = BN_bin2bn(e, (int)el, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pk = NULL;
    if (bn != NULL && be != NULL && bld != NULL &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
        pk = tg_p11_build_pub("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return pk;
}

/* CKA_EC_PARAMS (DER OID) of the curves TLS uses. */
static const char *tg_p11_curve(const unsigned char *p, size_t len)
{
    static const unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
    static const unsigned char p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
    static const unsigned char p521[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23};
    if (len == sizeof(p256) && memcmp(p, p256, len) == 0)
        return "prime256v1";
    if (len == sizeof(p384) && memcmp(p, p384, len) == 0)
        return "secp384r1";
    if (len == sizeof(p521) && memcmp(p, p521, len) == 0)
        return "secp521r1";
    return NULL;
}

static EVP_PKEY *tg_p11_ec_pub(struct tg_p11_module *m, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                               const struct tg_p11_keyref *ref, char *why, size_t whylen)
{
    unsigned char params[64], point[160];
    size_t pl = 0, ql = 0;
    if (tg_p11_attr(m, s, h, CKA_EC_PARAMS, params, sizeof(params), &pl) != CKR_OK) {
        snprintf(why, whylen, "the key has no readable CKA_EC_PARAMS");
        return NULL;
    }
    const char *curve = tg_p11_curve(params, pl);
    if (curve == NULL) {
        snprintf(why, whylen, "the key's curve is not P-256, P-384 or P-521");
        return NULL;
    }
    CK_OBJECT_HANDLE pubh;
    if (tg_p11_find_sibling(m, s, ref, CKO_PUBLIC_KEY, &pubh) != CKR_OK ||
        tg_p11_attr(m, s, pubh, CKA_EC_POINT, point, sizeof(point), &ql) != CKR_OK || ql < 2) {
        snprintf(why, whylen, "no public key object with the key's id or label");
        return NULL;
    }
    /* CKA_EC_POINT is a DER OCTET STRING around the point (some tokens
     * give the bare point). */
    const unsigned char *pt = point;
    size_t ptl = ql;
    if (point[0] == 0x04 && point[1] == ql - 2) {
        pt = point + 2;
        ptl = ql - 2;
    } else if (point[0] == 0x04 && point[1] == 0x81 && ql > 3 && point[2] == ql - 3) {
        pt = point + 3;
        ptl = ql - 3;
    }
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pk = NULL;
    if (bld != NULL && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, curve, 0) &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, ptl))
        pk = tg_p11_build_pub("EC", bld);
    OSSL_PARAM_BLD_free(bld);
    if (pk == NULL)
        snprintf(why, whylen, "the public key object holds no valid point");
    return pk;
}

EVP_PKEY *tg_p11_read_public(struct tg_p11_module *m, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                             const struct tg_p11_keyref *ref, char *why, size_t whylen)
{
    EVP_PKEY *pk = NULL;
    if (ref->type == CKK_RSA) {
        pk = tg_p11_rsa_pub(m, s, h);
        CK_OBJECT_HANDLE pubh;
        if (pk == NULL && tg_p11_find_sibling(m, s, ref, CKO_PUBLIC_KEY, &pubh) == CKR_OK)
            pk = tg_p11_rsa_pub(m, s, pubh);
        if (pk == NULL)
            snprintf(why, whylen,
                     "neither the key nor a public key object with its id or label "
                     "exposes the modulus");
    } else {
        pk = tg_p11_ec_pub(m, s, h, ref, why, whylen);
    }
    ERR_clear_error();
    return pk;
}

X509 *tg_p11_read_cert(struct tg_p11_module *m, CK_SESSION_HANDLE s,
                       const struct tg_p11_keyref *ref, char *why, size_t whylen)
{
    CK_OBJECT_HANDLE h;
    if (tg_p11_find_sibling(m, s, ref, CKO_CERTIFICATE, &h) != CKR_OK) {
        snprintf(why, whylen, "no certificate object with the key's id or label");
        return NULL;
    }
    CK_ATTRIBUTE a = {CKA_VALUE, NULL, 0};
    CK_RV rv = m->f->C_GetAttributeValue(s, h, &a, 1);
    if (rv != CKR_OK || a.ulValueLen == 0 || a.ulValueLen == CK_UNAVAILABLE_INFORMATION ||
        a.ulValueLen > 1 << 20) {
        snprintf(why, whylen, "the certificate object has no readable value");
        return NULL;
    }
    unsigned char *der = malloc(a.ulValueLen);
    X509 *x = NULL;
    if (der == NULL)
        return NULL;
    a.pValue = der;
    if (m->f->C_GetAttributeValue(s, h, &a, 1) == CKR_OK) {
        const unsigned char *p = der;
        x = d2i_X509(NULL, &p, (long)a.ulValueLen);
    }
    free(der);
    if (x == NULL) {
        ERR_clear_error();
        snprintf(why, whylen, "the certificate object does not hold a DER X.509 certificate");
    }
    return x;
}

CK_RV tg_p11_read_mechs(struct tg_p11_module *m, CK_SLOT_ID slot, struct tg_p11_mechs *out)
{
    memset(out, 0, sizeof(*out));
    static const CK_MECHANISM_TYPE want[] = {CKM_RSA_PKCS, CKM_RSA_PKCS_PSS, CKM_RSA_X_509,
                                             CKM_ECDSA};
    bool *flag[] = {&out->rsa_pkcs, &out->rsa_pss, &out->rsa_x509, &out->ecdsa};
    CK_RV last = CKR_OK;
    for (size_t i = 0; i < TG_ARRAY_LEN(want); i++) {
        CK_MECHANISM_INFO mi;
        CK_RV rv = m->f->C_GetMechanismInfo(slot, want[i], &mi);
        if (rv == CKR_OK)
            *flag[i] = (mi.flags & CKF_SIGN) != 0;
        else if (rv != CKR_MECHANISM_INVALID)
            last = rv;
    }
    return last;
}
