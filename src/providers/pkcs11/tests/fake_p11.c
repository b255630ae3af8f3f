/*
 * A fault-injecting fake PKCS#11 module, built as a shared object
 * (BUILD/fakes/libtgfakep11.so) and loaded by tlsgate like any module.
 *
 * One slot (id 7) with one token ("fake" unless FAKE_P11_LABEL), login
 * required, user PIN "1234" (FAKE_P11_PIN). Its keys come from the
 * environment at C_Initialize:
 *   FAKE_P11_KEYS=label:idhex:key.pem[:cert.pem],...   RSA or EC keys
 * Each key is three objects: the private key (visible after login only),
 * its public key and, when given, its certificate. Signing is done with
 * OpenSSL: CKM_RSA_PKCS, CKM_RSA_PKCS_PSS, CKM_RSA_X_509, CKM_ECDSA, with
 * PKCS#11's rules (login required, the mechanism must suit the key, one
 * operation per session, buffer-size queries).
 *
 * Faults, changed at any time: `key=value` lines in the file named by
 * FAKE_P11_CONTROL (re-read at every call), or fake_p11_control("k=v")
 * from a test that dlopens this module (the same instance tlsgate uses):
 *   removed=1        the token is gone: no slot lists it, sessions answer
 *                    CKR_DEVICE_REMOVED; removed=0 puts it back (old
 *                    sessions are then CKR_SESSION_HANDLE_INVALID, the user
 *                    is logged out)
 *   logout=N         a new N logs the user out (C_Sign: CKR_USER_NOT_LOGGED_IN)
 *   handles=N        a new N renumbers the objects (old handles invalid)
 *   sign_delay_ms=N  every C_Sign takes N ms
 *   block=1          C_Sign waits until block=0
 *   fail_sign=0xNN   C_Sign returns that CKR_ code
 *   pin=XXXX         the user PIN from now on
 *   no_pss=1, no_x509=1, no_rsa_pkcs=1   hide mechanisms
 * Counters for tests: fake_p11_stat("signs" | "logins" | "in_sign" |
 * "sessions" | "login_failures").
 *
 * fake_p11_hold(1) makes every C_Sign wait, after it took its operation,
 * until fake_p11_hold(0); fake_p11_hold_stat("holding" | "returned") counts
 * the calls waiting now and the held calls that have returned. Unlike
 * block=1 these use relaxed atomics only, never a lock the module's callers
 * could synchronise through: a test can let a signing thread go without
 * creating a happens-before edge to it, so ThreadSanitizer sees any access
 * of the caller's that is not ordered by the caller's own locks.
 */
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fake_p11.h"

struct fake_state fake_g = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/* ---- control ---- */

static void fake_set(struct fake_ctl *c, const char *k, const char *v)
{
    if (strcmp(k, "pin") == 0) {
        snprintf(c->pin, sizeof(c->pin), "%s", v);
        return;
    }
    long n = strtol(v, NULL, 0);
    if (strcmp(k, "removed") == 0)
        c->removed = (int)n;
    else if (strcmp(k, "logout") == 0)
        c->logout = (int)n;
    else if (strcmp(k, "handles") == 0)
        c->handles = (int)n;
    else if (strcmp(k, "sign_delay_ms") == 0)
        c->sign_delay_ms = (int)n;
    else if (strcmp(k, "block") == 0)
        c->block = (int)n;
    else if (strcmp(k, "fail_sign") == 0)
        c->fail_sign = (unsigned long)strtoul(v, NULL, 0);
    else if (strcmp(k, "no_pss") == 0)
        c->no_pss = (int)n;
    else if (strcmp(k, "no_x509") == 0)
        c->no_x509 = (int)n;
    else if (strcmp(k, "no_rsa_pkcs") == 0)
        c->no_rsa_pkcs = (int)n;
}

static void fake_parse(struct fake_ctl *c, char *line)
{
    char *eq = strchr(line, '=');
    if (eq == NULL)
        return;
    *eq = '\0';
    char *v = eq + 1;
    v[strcspn(v, "\r\n")] = '\0';
    fake_set(c, line, v);
}

/* Effective control (lock held): the in-memory one, overridden by the file. */
void fake_refresh(void)
{
    struct fake_ctl c = fake_g.mem;
    const char *path = getenv("FAKE_P11_CONTROL");
    FILE *f = path != NULL ? fopen(path, "r") : NULL;
    if (f != NULL) {
        char line[256];
        while (fgets(line, sizeof(line), f) != NULL)
            fake_parse(&c, line);
        fclose(f);
    }
    if (c.logout != fake_g.seen_logout) {
        fake_g.seen_logout = c.logout;
        fake_g.logged_in = false;
    }
    if (c.removed != fake_g.seen_removed) {
        fake_g.seen_removed = c.removed;
        fake_g.insert_gen++; /* every session dies with the token */
        fake_g.logged_in = false;
    }
    fake_g.cur = c;
}

void fake_p11_control(const char *kv)
{
    char line[256];
    snprintf(line, sizeof(line), "%s", kv);
    pthread_mutex_lock(&fake_g.lock);
    fake_parse(&fake_g.mem, line);
    fake_refresh();
    pthread_cond_broadcast(&fake_g.cond);
    pthread_mutex_unlock(&fake_g.lock);
}

void fake_p11_hold(int on)
{
    atomic_store_explicit(&fake_g.hold, on, memory_order_relaxed);
}

unsigned long fake_p11_hold_stat(const char *name)
{
    if (strcmp(name, "holding") == 0)
        return atomic_load_explicit(&fake_g.holding, memory_order_relaxed);
    if (strcmp(name, "returned") == 0)
        return atomic_load_explicit(&fake_g.held_returned, memory_order_relaxed);
    return 0;
}

unsigned long fake_p11_stat(const char *name)
{
    unsigned long v = 0;
    pthread_mutex_lock(&fake_g.lock);
    if (strcmp(name, "signs") == 0)
        v = fake_g.signs;
    else if (strcmp(name, "logins") == 0)
        v = fake_g.logins;
    else if (strcmp(name, "in_sign") == 0)
        v = fake_g.in_sign;
    else if (strcmp(name, "sessions") == 0)
        v = fake_g.sessions;
    else if (strcmp(name, "login_failures") == 0)
        v = fake_g.login_failures;
    pthread_mutex_unlock(&fake_g.lock);
    return v;
}

/* ---- objects: handle = base + 3 * key + {0 private, 1 public, 2 cert} ---- */

static CK_OBJECT_HANDLE fake_base(void)
{
    return 100 + (CK_OBJECT_HANDLE)fake_g.cur.handles * 1000;
}

bool fake_object(CK_OBJECT_HANDLE h, size_t *key, CK_OBJECT_CLASS *cls)
{
    if (h < fake_base() || h >= fake_base() + 3 * fake_g.nkeys)
        return false;
    *key = (h - fake_base()) / 3;
    int kind = (int)((h - fake_base()) % 3);
    *cls = kind == 0 ? CKO_PRIVATE_KEY : kind == 1 ? CKO_PUBLIC_KEY : CKO_CERTIFICATE;
    if (*cls == CKO_CERTIFICATE && fake_g.keys[*key].cert_der == NULL)
        return false;
    return true;
}

bool fake_rsa(size_t k)
{
    return EVP_PKEY_is_a(fake_g.keys[k].key, "RSA");
}

static int fake_hex(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static void fake_load_keys(void)
{
    const char *env = getenv("FAKE_P11_KEYS");
    if (env == NULL)
        return;
    char *list = strdup(env), *save = NULL;
    for (char *it = strtok_r(list, ",", &save); it != NULL && fake_g.nkeys < FAKE_KEYS;
         it = strtok_r(NULL, ",", &save)) {
        char *label = it, *id = strchr(label, ':');
        if (id == NULL)
            continue;
        *id++ = '\0';
        char *kf = strchr(id, ':');
        if (kf == NULL)
            continue;
        *kf++ = '\0';
        char *cf = strchr(kf, ':');
        if (cf != NULL)
            *cf++ = '\0';
        struct fake_key *k = &fake_g.keys[fake_g.nkeys];
        snprintf(k->label, sizeof(k->label), "%s", label);
        for (size_t i = 0; id[i] && id[i + 1] && k->idlen < sizeof(k->id); i += 2)
            k->id[k->idlen++] = (unsigned char)(fake_hex(id[i]) * 16 + fake_hex(id[i + 1]));
        FILE *f = fopen(kf, "r");
        if (f == NULL)
            continue;
        k->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
        if (k->key == NULL)
            continue;
        if (cf != NULL && (f = fopen(cf, "r")) != NULL) {
            X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
            fclose(f);
            int len = x ? i2d_X509(x, &k->cert_der) : -1;
            k->cert_len = len > 0 ? (size_t)len : 0;
            X509_free(x);
        }
        fake_g.nkeys++;
    }
    free(list);
    ERR_clear_error();
}

/* ---- general ---- */

static CK_RV fake_initialize(void *args)
{
    (void)args;
    pthread_mutex_lock(&fake_g.lock);
    if (fake_g.init) {
        pthread_mutex_unlock(&fake_g.lock);
        return CKR_CRYPTOKI_ALREADY_INITIALIZED;
    }
    fake_g.init = true;
    const char *label = getenv("FAKE_P11_LABEL");
    snprintf(fake_g.label, sizeof(fake_g.label), "%s", label ? label : "fake");
    const char *pin = getenv("FAKE_P11_PIN");
    snprintf(fake_g.mem.pin, sizeof(fake_g.mem.pin), "%s", pin ? pin : "1234");
    fake_load_keys();
    fake_refresh();
    pthread_mutex_unlock(&fake_g.lock);
    return CKR_OK;
}

static CK_RV fake_finalize(void *reserved)
{
    (void)reserved;
    pthread_mutex_lock(&fake_g.lock);
    if (!fake_g.init) {
        pthread_mutex_unlock(&fake_g.lock);
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    }
    for (size_t i = 0; i < fake_g.nkeys; i++) {
        EVP_PKEY_free(fake_g.keys[i].key);
        OPENSSL_free(fake_g.keys[i].cert_der);
    }
    memset(fake_g.keys, 0, sizeof(fake_g.keys));
    memset(fake_g.s, 0, sizeof(fake_g.s));
    fake_g.nkeys = 0;
    fake_g.init = false;
    fake_g.logged_in = false;
    pthread_mutex_unlock(&fake_g.lock);
    return CKR_OK;
}

static void fake_pad(unsigned char *dst, size_t n, const char *s)
{
    memset(dst, ' ', n);
    memcpy(dst, s, strlen(s) < n ? strlen(s) : n);
}

static CK_RV fake_get_info(CK_INFO_PTR info)
{
    memset(info, 0, sizeof(*info));
    info->cryptokiVersion.major = 2;
    info->cryptokiVersion.minor = 40;
    fake_pad(info->manufacturerID, sizeof(info->manufacturerID), "tlsgate tests");
    fake_pad(info->libraryDescription, sizeof(info->libraryDescription), "fake PKCS#11 module");
    info->libraryVersion.major = 1;
    return CKR_OK;
}

static CK_RV fake_get_slot_list(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count)
{
    pthread_mutex_lock(&fake_g.lock);
    fake_refresh();
    CK_ULONG n = present && fake_g.cur.removed ? 0 : 1;
    pthread_mutex_unlock(&fake_g.lock);
    if (list != NULL) {
        if (*count < n) {
            *count = n;
            return CKR_BUFFER_TOO_SMALL;
        }
        if (n)
            list[0] = FAKE_SLOT;
    }
    *count = n;
    return CKR_OK;
}

static CK_RV fake_get_slot_info(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info)
{
    if (slot != FAKE_SLOT)
        return CKR_SLOT_ID_INVALID;
    memset(info, 0, sizeof(*info));
    fake_pad(info->slotDescription, sizeof(info->slotDescription), "fake slot");
    fake_pad(info->manufacturerID, sizeof(info->manufacturerID), "tlsgate tests");
    pthread_mutex_lock(&fake_g.lock);
    fake_refresh();
    info->flags = CKF_REMOVABLE_DEVICE | (fake_g.cur.removed ? 0 : CKF_TOKEN_PRESENT);
    pthread_mutex_unlock(&fake_g.lock);
    return CKR_OK;
}

static CK_RV fake_get_token_info(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
    if (slot != FAKE_SLOT)
        return CKR_SLOT_ID_INVALID;
    pthread_mutex_lock(&fake_g.lock);
    fake_refresh();
    bool removed = fake_g.cur.removed;
    memset(info, 0, sizeof(*info));
    fake_pad(info->label, sizeof(info->label), fake_g.label);
    pthread_mutex_unlock(&fake_g.lock);
    if (removed)
        return CKR_TOKEN_NOT_PRESENT;
    fake_pad(info->manufacturerID, sizeof(info->manufacturerID), "tlsgate tests");
    fake_pad(info->model, sizeof(info->model), "fake");
    fake_pad(info->serialNumber, sizeof(info->serialNumber), "0001");
    info->flags = CKF_LOGIN_REQUIRED | CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED;
    info->ulMaxSessionCount = FAKE_SESSIONS;
    info->ulMaxPinLen = 64;
    info->ulMinPinLen = 4;
    return CKR_OK;
}

bool fake_mech_offered(CK_MECHANISM_TYPE m)
{
    switch (m) {
    case CKM_RSA_PKCS:
        return !fake_g.cur.no_rsa_pkcs;
    case CKM_RSA_PKCS_PSS:
        return !fake_g.cur.no_pss;
    case CKM_RSA_X_509:
        return !fake_g.cur.no_x509;
    case CKM_ECDSA:
        return true;
    default:
        return false;
    }
}

static CK_RV fake_get_mech_list(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count)
{
    static const CK_MECHANISM_TYPE all[] = {CKM_RSA_PKCS, CKM_RSA_PKCS_PSS, CKM_RSA_X_509,
                                            CKM_ECDSA};
    if (slot != FAKE_SLOT)
        return CKR_SLOT_ID_INVALID;
    pthread_mutex_lock(&fake_g.lock);
    fake_refresh();
    CK_ULONG n = 0;
    for (size_t i = 0; i < 4; i++) {
        if (!fake_mech_offered(all[i]))
            continue;
        if (list != NULL && n < *count)
            list[n] = all[i];
        n++;
    }
    pthread_mutex_unlock(&fake_g.lock);
    CK_RV rv = list != NULL && n > *count ? CKR_BUFFER_TOO_SMALL : CKR_OK;
    *count = n;
    return rv;
}

static CK_RV fake_get_mech_info(CK_SLOT_ID slot, CK_MECHANISM_TYPE m, CK_MECHANISM_INFO_PTR info)
{
    if (slot != FAKE_SLOT)
        return CKR_SLOT_ID_INVALID;
    pthread_mutex_lock(&fake_g.lock);
    fake_refresh();
    bool ok = fake_mech_offered(m);
    pthread_mutex_unlock(&fake_g.lock);
    if (!ok)
        return CKR_MECHANISM_INVALID;
    info->ulMinKeySize = m == CKM_ECDSA ? 256 : 1024;
    info->ulMaxKeySize = m == CKM_ECDSA ? 521 : 8192;
    info->flags = CKF_SIGN | CKF_VERIFY | CKF_HW;
    return CKR_OK;
}

/* ---- sessions (lock held) ---- */

CK_RV fake_session(CK_SESSION_HANDLE h, struct fake_session **out)
{
    if (!fake_g.init)
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (h == 0 || h > FAKE_SESSIONS || !fake_g.s[h - 1].open)
        return CKR_SESSION_HANDLE_INVALID;
    if (fake_g.cur.removed)
        return CKR_DEVICE_REMOVED;
    if (fake_g.s[h - 1].gen != fake_g.insert_gen)
        return CKR_SESSION_HANDLE_INVALID;
    *out = &fake_g.s[h - 1];
    return CKR_OK;
}

static CK_RV fake_open_session(CK_SLOT_ID slot, CK_FLAGS flags, void *app, CK_NOTIFY notify,
                               CK_SESSION_HANDLE_PTR out)
{
    (void)app;
    (void)notify;
    if (slot != FAKE_SLOT)
        return CKR_SLOT_ID_INVALID;
    if (!(flags & CKF_SERIAL_SESSION))
        return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
    pthread_mutex_lock(&fake_g.lock);
    fake_refresh();
    CK_RV rv = CKR_SESSION_COUNT;
    if (fake_g.cur.removed) {
        rv = CKR_TOKEN_NOT_PRESENT;
    } else {
        for (size_t i = 0; i < FAKE_SESSIONS; i++) {
            if (!fake_g.s[i].open) {
                memset(&fake_g.s[i], 0, sizeof(fake_g.s[i]));
                fake_g.s[i].open = true;
                fake_g.s[i].gen = fake_g.insert_gen;
                *out = i + 1;
                fake_g.sessions++;
                rv = CKR_OK;
                break;
            }
        }
    }
    pthread_mutex_unlock(&fake_g.lock);
    return rv;
}

static CK_RV fake_close_session(CK_SESSION_HANDLE h)
{
    pthread_mutex_lock(&fake_g.lock);
    CK_RV rv = CKR_SESSION_HANDLE_INVALID;
    if (h > 0 && h <= FAKE_SESSIONS && fake_g.s[h - 1].open) {
        fake_g.s[h - 1].open = false;
        rv = CKR_OK;
        bool any = false;
        for (size_t i = 0; i < FAKE_SESSIONS; i++)
            any = any || (fake_g.s[i].open && fake_g.s[i].gen == fake_g.insert_gen);
        if (!any)
            fake_g.logged_in = false; /* the last session closes the login */
    }
    pthread_mutex_unlock(&fake_g.lock);
    return rv;
}

static CK_RV fake_get_session_info(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info)
{
    pthread_mutex_lock(&fake_g.lock);
    fake_refresh();
    struct fake_session *s;
    CK_RV rv = fake_session(h, &s);
    if (rv == CKR_OK) {
        memset(info, 0, sizeof(*info));
        info->slotID = FAKE_SLOT;
        info->state = fake_g.logged_in ? CKS_RO_USER_FUNCTIONS : CKS_RO_PUBLIC_SESSION;
        info->flags = CKF_SERIAL_SESSION;
    }
    pthread_mutex_unlock(&fake_g.lock);
    return rv;
}

static CK_RV fake_login(CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
    pthread_mutex_lock(&fake_g.lock);
    fake_refresh();
    struct fake_session *s;
    CK_RV rv = fake_session(h, &s);
    if (rv == CKR_OK && user != CKU_USER)
        rv = CKR_USER_TYPE_INVALID;
    else if (rv == CKR_OK && fake_g.logged_in)
        rv = CKR_USER_ALREADY_LOGGED_IN;
    else if (rv == CKR_OK && (pin == NULL || len != strlen(fake_g.cur.pin) ||
                              memcmp(pin, fake_g.cur.pin, len) != 0)) {
        rv = CKR_PIN_INCORRECT;
        fake_g.login_failures++;
    } else if (rv == CKR_OK) {
        fake_g.logged_in = true;
    }
    if (rv == CKR_OK || rv == CKR_PIN_INCORRECT)
        fake_g.logins++;
    pthread_mutex_unlock(&fake_g.lock);
    return rv;
}

static CK_RV fake_logout(CK_SESSION_HANDLE h)
{
    pthread_mutex_lock(&fake_g.lock);
    struct fake_session *s;
    CK_RV rv = fake_session(h, &s);
    if (rv == CKR_OK)
        rv = fake_g.logged_in ? CKR_OK : CKR_USER_NOT_LOGGED_IN;
    fake_g.logged_in = false;
    pthread_mutex_unlock(&fake_g.lock);
    return rv;
}

/* ---- attributes ---- */

static CK_RV fake_put(CK_ATTRIBUTE_PTR a, const void *v, size_t n)
{
    if (a->pValue == NULL) {
        a->ulValueLen = n;
        return CKR_OK;
    }
    if (a->ulValueLen < n) {
        a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
        return CKR_BUFFER_TOO_SMALL;
    }
    memcpy(a->pValue, v, n);
    a->ulValueLen = n;
    return CKR_OK;
}

static CK_RV fake_bn_attr(CK_ATTRIBUTE_PTR a, EVP_PKEY *k, const char *param)
{
    BIGNUM *bn = NULL;
    unsigned char buf[1024];
    if (!EVP_PKEY_get_bn_param(k, param, &bn))
        return CKR_ATTRIBUTE_TYPE_INVALID;
    int n = BN_bn2bin(bn, buf);
    BN_free(bn);
    return fake_put(a, buf, (size_t)n);
}

static CK_RV fake_ec_params(CK_ATTRIBUTE_PTR a, EVP_PKEY *k)
{
    static const unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
    static const unsigned char p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
    int bits = EVP_PKEY_get_bits(k);
    return bits == 256 ? fake_put(a, p256, sizeof(p256)) : fake_put(a, p384, sizeof(p384));
}

static CK_RV fake_attr(size_t key, CK_OBJECT_CLASS cls, CK_ATTRIBUTE_PTR a)
{
    struct fake_key *k = &fake_g.keys[key];
    CK_BBOOL yes = CK_TRUE;
    CK_KEY_TYPE kt = fake_rsa(key) ? CKK_RSA : CKK_EC;
    CK_CERTIFICATE_TYPE ct = CKC_X_509;
    switch (a->type) {
    case CKA_CLASS:
        return fake_put(a, &cls, sizeof(cls));
    case CKA_ID:
        return fake_put(a, k->id, k->idlen);
    case CKA_LABEL:
        return fake_put(a, k->label, strlen(k->label));
    case CKA_TOKEN:
        return fake_put(a, &yes, sizeof(yes));
    case CKA_KEY_TYPE:
        return cls == CKO_CERTIFICATE ? CKR_ATTRIBUTE_TYPE_INVALID : fake_put(a, &kt, sizeof(kt));
    case CKA_CERTIFICATE_TYPE:
        return cls != CKO_CERTIFICATE ? CKR_ATTRIBUTE_TYPE_INVALID : fake_put(a, &ct, sizeof(ct));
    case CKA_SIGN:
        return cls != CKO_PRIVATE_KEY ? CKR_ATTRIBUTE_TYPE_INVALID : fake_put(a, &yes, 1);
    case CKA_MODULUS:
    case CKA_PUBLIC_EXPONENT:
        if (cls == CKO_CERTIFICATE || kt != CKK_RSA)
            return CKR_ATTRIBUTE_TYPE_INVALID;
        return fake_bn_attr(a, k->key, a->type == CKA_MODULUS ? "n" : "e");
    case CKA_EC_PARAMS:
        if (cls == CKO_CERTIFICATE || kt != CKK_EC)
            return CKR_ATTRIBUTE_TYPE_INVALID;
        return fake_ec_params(a, k->key);
    case CKA_EC_POINT: {
        if (cls != CKO_PUBLIC_KEY || kt != CKK_EC)
            return CKR_ATTRIBUTE_TYPE_INVALID;
        unsigned char pt[200];
        size_t n = 0;
        if (!EVP_PKEY_get_octet_string_param(k->key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt + 2,
                                             sizeof(pt) - 2, &n))
            return CKR_FUNCTION_FAILED;
        pt[0] = 0x04; /* DER OCTET STRING */
        pt[1] = (unsigned char)n;
        return fake_put(a, pt, n + 2);
    }
    case CKA_VALUE:
        if (cls == CKO_PRIVATE_KEY)
            return CKR_ATTRIBUTE_SENSITIVE;
        if (cls != CKO_CERTIFICATE)
            return CKR_ATTRIBUTE_TYPE_INVALID;
        return fake_put(a, k->cert_der, k->cert_len);
    case CKA_PRIVATE_EXPONENT:
    case CKA_PRIME_1:
    case CKA_PRIME_2:
        return cls == CKO_PRIVATE_KEY ? CKR_ATTRIBUTE_SENSITIVE : CKR_ATTRIBUTE_TYPE_INVALID;
    default:
        return CKR_ATTRIBUTE_TYPE_INVALID;
    }
}

static CK_RV fake_get_attr(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
    pthread_mutex_lock(&fake_g.lock);
    fake_refresh();
    struct fake_session *s;
    size_t key;
    CK_OBJECT_CLASS cls;
    CK_RV rv = fake_session(h, &s);
    if (rv == CKR_OK &&
        (!fake_object(o, &key, &cls) || (cls == CKO_PRIVATE_KEY && !fake_g.logged_in)))
        rv = CKR_OBJECT_HANDLE_INVALID;
    CK_RV ret = rv;
    for (CK_ULONG i = 0; rv == CKR_OK && i < n; i++) {
        CK_RV r = fake_attr(key, cls, &t[i]);
        if (r != CKR_OK) {
            if (r != CKR_BUFFER_TOO_SMALL)
                t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
            ret = r; /* PKCS#11: process every attribute, return the last error */
        }
    }
    pthread_mutex_unlock(&fake_g.lock);
    return ret;
}

/* ---- search ---- */

static bool fake_matches(size_t key, CK_OBJECT_CLASS cls, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
    for (CK_ULONG i = 0; i < n; i++) {
        unsigned char v[512];
        CK_ATTRIBUTE a = {t[i].type, v, sizeof(v)};
        if (fake_attr(key, cls, &a) != CKR_OK || a.ulValueLen != t[i].ulValueLen ||
            memcmp(v, t[i].pValue, a.ulValueLen) != 0)
            return false;
    }
    return true;
}

static CK_RV fake_find_init(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
    pthread_mutex_lock(&fake_g.lock);
    fake_refresh();
    struct fake_session *s;
    CK_RV rv = fake_session(h, &s);
    if (rv == CKR_OK && s->finding)
        rv = CKR_OPERATION_ACTIVE;
    if (rv == CKR_OK) {
        s->finding = true;
        s->nfound = s->pos = 0;
        for (CK_OBJECT_HANDLE o = fake_base(); o < fake_base() + 3 * fake_g.nkeys; o++) {
            size_t key;
            CK_OBJECT_CLASS cls;
            if (!fake_object(o, &key, &cls) || (cls == CKO_PRIVATE_KEY && !fake_g.logged_in))
                continue;
            if (fake_matches(key, cls, t, n) && s->nfound < 16)
                s->found[s->nfound++] = o;
        }
    }
    pthread_mutex_unlock(&fake_g.lock);
    return rv;
}

static CK_RV fake_find(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR out, CK_ULONG max, CK_ULONG_PTR n)
{
    pthread_mutex_lock(&fake_g.lock);
    fake_refresh();
    struct fake_session *s;
    CK_RV rv = fake_session(h, &s);
    if (rv == CKR_OK && !s->finding)
        rv = CKR_OPERATION_NOT_INITIALIZED;
    *n = 0;
    while (rv == CKR_OK && *n < max && s->pos < s->nfound)
        out[(*n)++] = s->found[s->pos++];
    pthread_mutex_unlock(&fake_g.lock);
    return rv;
}

static CK_RV fake_find_final(CK_SESSION_HANDLE h)
{
    pthread_mutex_lock(&fake_g.lock);
    struct fake_session *s;
    CK_RV rv = fake_session(h, &s);
    if (rv == CKR_OK && !s->finding)
        rv = CKR_OPERATION_NOT_INITIALIZED;
    if (rv == CKR_OK)
        s->finding = false;
    pthread_mutex_unlock(&fake_g.lock);
    return rv;
}

static CK_FUNCTION_LIST fake_list = {
    .version = {2, 40},
    .C_Initialize = fake_initialize,
    .C_Finalize = fake_finalize,
    .C_GetInfo = fake_get_info,
    .C_GetFunctionList = C_GetFunctionList,
    .C_GetSlotList = fake_get_slot_list,
    .C_GetSlotInfo = fake_get_slot_info,
    .C_GetTokenInfo = fake_get_token_info,
    .C_GetMechanismList = fake_get_mech_list,
    .C_GetMechanismInfo = fake_get_mech_info,
    .C_OpenSession = fake_open_session,
    .C_CloseSession = fake_close_session,
    .C_GetSessionInfo = fake_get_session_info,
    .C_Login = fake_login,
    .C_Logout = fake_logout,
    .C_GetAttributeValue = fake_get_attr,
    .C_FindObjectsInit = fake_find_init,
    .C_FindObjects = fake_find,
    .C_FindObjectsFinal = fake_find_final,
    .C_SignInit = fake_sign_init,
    .C_Sign = fake_sign,
};

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
    if (list == NULL)
        return CKR_ARGUMENTS_BAD;
    *list = &fake_list;
    return CKR_OK;
}
