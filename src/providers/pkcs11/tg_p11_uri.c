/*
 * RFC 7512 PKCS#11 URI parser and formatter. Contract in tg_p11_uri.h.
 */
#include "providers/pkcs11/tg_p11_uri.h"

#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <string.h>

enum tg_p11_uri_kind { TG_URI_TEXT, TG_URI_ID, TG_URI_TYPE, TG_URI_LIBVER, TG_URI_SLOTID };

/* Path attributes, in the order the canonical form prints them. */
struct tg_p11_uri_attr {
    const char *name;
    enum tg_p11_uri_kind kind;
    size_t off_has; /* offsetof the bool */
    size_t off_val; /* offsetof the value (text: char[cap]) */
    size_t cap;     /* text: field size + 1 */
};

#define TG_URI_TEXT_ATTR(n, has, val)                                                              \
    {                                                                                              \
        n, TG_URI_TEXT, offsetof(struct tg_p11_uri, has), offsetof(struct tg_p11_uri, val),        \
            sizeof(((struct tg_p11_uri *)0)->val)                                                  \
    }

static const struct tg_p11_uri_attr tg_uri_attrs[] = {
    TG_URI_TEXT_ATTR("library-manufacturer", has_lib_manufacturer, lib_manufacturer),
    TG_URI_TEXT_ATTR("library-description", has_lib_description, lib_description),
    {"library-version", TG_URI_LIBVER, offsetof(struct tg_p11_uri, has_lib_version), 0, 0},
    TG_URI_TEXT_ATTR("slot-manufacturer", has_slot_manufacturer, slot_manufacturer),
    TG_URI_TEXT_ATTR("slot-description", has_slot_description, slot_description),
    {"slot-id", TG_URI_SLOTID, offsetof(struct tg_p11_uri, has_slot_id), 0, 0},
    TG_URI_TEXT_ATTR("manufacturer", has_manufacturer, manufacturer),
    TG_URI_TEXT_ATTR("model", has_model, model),
    TG_URI_TEXT_ATTR("serial", has_serial, serial),
    TG_URI_TEXT_ATTR("token", has_token, token),
    TG_URI_TEXT_ATTR("object", has_object, object),
    {"id", TG_URI_ID, offsetof(struct tg_p11_uri, has_id), 0, 0},
    {"type", TG_URI_TYPE, 0, 0, 0},
};

static const char *const tg_uri_types[] = {
    [TG_P11_OBJ_PUBLIC] = "public", [TG_P11_OBJ_PRIVATE] = "private",
    [TG_P11_OBJ_CERT] = "cert",     [TG_P11_OBJ_SECRET_KEY] = "secret-key",
    [TG_P11_OBJ_DATA] = "data",
};

static bool tg_uri_unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* RFC 7512 pk11-pchar (path) and pk11-qchar (query), pct-encoded aside. */
static bool tg_uri_pchar(unsigned char c)
{
    return tg_uri_unreserved(c) || (c != 0 && strchr(":[]@!$'()*+,=&", c) != NULL);
}

static bool tg_uri_qchar(unsigned char c)
{
    return tg_uri_unreserved(c) || (c != 0 && strchr(":[]@!$'()*+,=/?|", c) != NULL);
}

static int tg_uri_hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int tg_uri_fail(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int tg_uri_fail(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return TG_ECONFIG;
}

/* Percent-decode s[0..n) into out (cap bytes); checks the character set.
 * what: the attribute name, for messages. */
static int tg_uri_decode(const char *s, size_t n, bool query, unsigned char *out, size_t cap,
                         size_t *outlen, const char *what, char *why, size_t whylen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        unsigned char v;
        if (c == '%') {
            int hi = i + 2 < n ? tg_uri_hex((unsigned char)s[i + 1]) : -1;
            int lo = i + 2 < n ? tg_uri_hex((unsigned char)s[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return tg_uri_fail(why, whylen, "%s: '%%' must start a percent-encoded byte (%%XX)",
                                   what);
            v = (unsigned char)(hi * 16 + lo);
            i += 2;
        } else if (query ? tg_uri_qchar(c) : tg_uri_pchar(c)) {
            v = c;
        } else {
            char enc[48];
            if (c >= 0x20 && c < 0x7f)
                snprintf(enc, sizeof(enc), "'%c' must be percent-encoded as %%%02X", c, c);
            else
                snprintf(enc, sizeof(enc), "byte 0x%02X must be percent-encoded as %%%02X", c, c);
            return tg_uri_fail(why, whylen, "%s: %s", what, enc);
        }
        if (o >= cap)
            return tg_uri_fail(why, whylen, "%s: value too long", what);
        out[o++] = v;
    }
    *outlen = o;
    return TG_OK;
}

/* A decimal unsigned number within max; whole string. */
static bool tg_uri_number(const unsigned char *s, size_t n, unsigned long max, unsigned long *out)
{
    if (n == 0 || n > 20)
        return false;
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static int tg_uri_set(struct tg_p11_uri *u, const struct tg_p11_uri_attr *a, const unsigned char *v,
                      size_t n, char *why, size_t whylen)
{
    char *base = (char *)u;
    switch (a->kind) {
    case TG_URI_TEXT: {
        if (memchr(v, '\0', n) != NULL)
            return tg_uri_fail(why, whylen, "%s: a NUL byte (%%00) cannot be part of a label",
                               a->name);
        if (n + 1 > a->cap) {
            char lim[48];
            snprintf(lim, sizeof(lim), "longer than the %zu bytes PKCS#11 allows", a->cap - 1);
            return tg_uri_fail(why, whylen, "%s: %s", a->name, lim);
        }
        memcpy(base + a->off_val, v, n);
        (base + a->off_val)[n] = '\0';
        break;
    }
    case TG_URI_ID:
        memcpy(u->id, v, n);
        u->id_len = n;
        break;
    case TG_URI_TYPE:
        for (size_t t = TG_P11_OBJ_PUBLIC; t < TG_ARRAY_LEN(tg_uri_types); t++) {
            if (strlen(tg_uri_types[t]) == n && memcmp(tg_uri_types[t], v, n) == 0) {
                u->type = (enum tg_p11_obj_type)t;
                return TG_OK;
            }
        }
        return tg_uri_fail(why, whylen, "type: expected public, private, cert, secret-key or data");
    case TG_URI_LIBVER: {
        const unsigned char *dot = memchr(v, '.', n);
        unsigned long major, minor = 0;
        size_t mlen = dot ? (size_t)(dot - v) : n;
        if (!tg_uri_number(v, mlen, 255, &major) ||
            (dot != NULL && !tg_uri_number(dot + 1, n - mlen - 1, 255, &minor)))
            return tg_uri_fail(why, whylen,
                               "library-version: expected MAJOR or MAJOR.MINOR (0..255 each)");
        u->lib_ver_major = (unsigned)major;
        u->lib_ver_minor = (unsigned)minor;
        u->lib_ver_has_minor = dot != NULL;
        break;
    }
    case TG_URI_SLOTID:
        if (!tg_uri_number(v, n, (unsigned long)-1, &u->slot_id))
            return tg_uri_fail(why, whylen, "slot-id: expected a decimal number");
        break;
    }
    if (a->kind != TG_URI_TYPE)
        *(bool *)(base + a->off_has) = true;
    return TG_OK;
}

static bool tg_uri_seen(const struct tg_p11_uri *u, const struct tg_p11_uri_attr *a)
{
    if (a->kind == TG_URI_TYPE)
        return u->type != TG_P11_OBJ_ANY;
    return *(const bool *)((const char *)u + a->off_has);
}

/* An attribute name for a message: at most 32 bytes, anything outside
 * printable ASCII shown as %XX, so a message stays one printable line. */
static void tg_uri_name(const char *s, size_t n, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n && i < 32 && o + 4 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c > 0x20 && c < 0x7f && c != '%') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
}

static int tg_uri_path_attr(struct tg_p11_uri *u, const char *s, size_t n, char *why, size_t whylen)
{
    const char *eq = memchr(s, '=', n);
    char name[104];
    size_t nlen = eq ? (size_t)(eq - s) : n;
    tg_uri_name(s, nlen, name, sizeof(name));
    if (eq == NULL)
        return tg_uri_fail(why, whylen, "'%s': expected NAME=VALUE", name);
    if (nlen == 0)
        return tg_uri_fail(why, whylen, "empty attribute name before '='");
    const struct tg_p11_uri_attr *a = NULL;
    for (size_t i = 0; i < TG_ARRAY_LEN(tg_uri_attrs) && a == NULL; i++) {
        if (strlen(tg_uri_attrs[i].name) == nlen && memcmp(tg_uri_attrs[i].name, s, nlen) == 0)
            a = &tg_uri_attrs[i];
    }
    if (a == NULL) {
        if (nlen >= 2 && s[0] == 'x' && s[1] == '-')
            return tg_uri_fail(why, whylen, "vendor attribute '%s' is not supported", name);
        return tg_uri_fail(why, whylen, "unknown attribute '%s'", name);
    }
    if (tg_uri_seen(u, a))
        return tg_uri_fail(why, whylen, "attribute '%s' given twice", a->name);
    unsigned char v[TG_P11_URI_LABEL_MAX + 1];
    size_t cap = a->kind == TG_URI_ID ? TG_P11_URI_ID_MAX : sizeof(v);
    size_t vlen = 0;
    TG_GUARD(tg_uri_decode(eq + 1, n - nlen - 1, false, v, cap, &vlen, a->name, why, whylen));
    return tg_uri_set(u, a, v, vlen, why, whylen);
}

static int tg_uri_query_attr(const char *s, size_t n, char *why, size_t whylen)
{
    const char *eq = memchr(s, '=', n);
    size_t nlen = eq ? (size_t)(eq - s) : n;
    char name[104];
    tg_uri_name(s, nlen, name, sizeof(name));
    if (strcmp(name, "pin-value") == 0 || strcmp(name, "pin-source") == 0)
        return tg_uri_fail(why, whylen,
                           "'%s' is not accepted in the key URI: give the PIN with the "
                           "provider's 'pin' setting (a key URI is logged, a PIN never is)",
                           name);
    if (strcmp(name, "module-name") == 0 || strcmp(name, "module-path") == 0)
        return tg_uri_fail(why, whylen,
                           "'%s' is not accepted in the key URI: name the module with the "
                           "provider's 'module' setting",
                           name);
    unsigned char tmp[TG_P11_URI_TEXT_MAX];
    size_t tl;
    /* Check the syntax first, so that a bad character is reported as such. */
    TG_GUARD(tg_uri_decode(s, n, true, tmp, sizeof(tmp), &tl, "query", why, whylen));
    if (eq == NULL || nlen == 0)
        return tg_uri_fail(why, whylen, "query '%s': expected NAME=VALUE", name);
    return tg_uri_fail(why, whylen, "query attribute '%s' is not supported", name);
}

int tg_p11_uri_parse(const char *s, struct tg_p11_uri *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    if (s == NULL)
        return tg_uri_fail(why, whylen, "no URI");
    size_t len = strlen(s);
    if (len > TG_P11_URI_TEXT_MAX)
        return tg_uri_fail(why, whylen, "URI longer than %d bytes", TG_P11_URI_TEXT_MAX);
    if (len < 7 || strncasecmp(s, "pkcs11:", 7) != 0)
        return tg_uri_fail(why, whylen, "expected a PKCS#11 URI starting with 'pkcs11:'");
    const char *p = s + 7, *end = s + len;
    const char *q = memchr(p, '?', (size_t)(end - p));
    const char *pend = q ? q : end;
    while (p < pend) {
        const char *semi = memchr(p, ';', (size_t)(pend - p));
        const char *aend = semi ? semi : pend;
        if (aend == p)
            return tg_uri_fail(why, whylen, "empty attribute (';;' or a trailing ';')");
        TG_GUARD(tg_uri_path_attr(out, p, (size_t)(aend - p), why, whylen));
        p = semi ? semi + 1 : pend;
        if (semi != NULL && p == pend)
            return tg_uri_fail(why, whylen, "empty attribute (';;' or a trailing ';')");
    }
    if (q != NULL) {
        p = q + 1;
        while (p < end) {
            const char *amp = memchr(p, '&', (size_t)(end - p));
            const char *aend = amp ? amp : end;
            TG_GUARD(tg_uri_query_attr(p, (size_t)(aend - p), why, whylen));
            p = amp ? amp + 1 : end;
        }
    }
    return TG_OK;
}

/* ---- matching ---- */

char *tg_p11_field(const unsigned char *field, size_t n, char *out, size_t cap)
{
    size_t l = n;
    while (l > 0 && (field[l - 1] == ' ' || field[l - 1] == '\0'))
        l--;
    if (l > cap - 1)
        l = cap - 1;
    memcpy(out, field, l);
    out[l] = '\0';
    return out;
}

static bool tg_uri_field_eq(bool has, const char *want, const unsigned char *field, size_t n)
{
    if (!has)
        return true;
    char got[80];
    return strcmp(want, tg_p11_field(field, n, got, sizeof(got))) == 0;
}

bool tg_p11_uri_match_token(const struct tg_p11_uri *u, const CK_TOKEN_INFO *ti)
{
    return tg_uri_field_eq(u->has_token, u->token, ti->label, sizeof(ti->label)) &&
           tg_uri_field_eq(u->has_manufacturer, u->manufacturer, ti->manufacturerID,
                           sizeof(ti->manufacturerID)) &&
           tg_uri_field_eq(u->has_model, u->model, ti->model, sizeof(ti->model)) &&
           tg_uri_field_eq(u->has_serial, u->serial, ti->serialNumber, sizeof(ti->serialNumber));
}

bool tg_p11_uri_match_library(const struct tg_p11_uri *u, const CK_INFO *li)
{
    if (u->has_lib_version && (li->libraryVersion.major != u->lib_ver_major ||
                               (u->lib_ver_has_minor ? li->libraryVersion.minor != u->lib_ver_minor
                                                     : li->libraryVersion.minor != 0)))
        return false;
    return tg_uri_field_eq(u->has_lib_manufacturer, u->lib_manufacturer, li->manufacturerID,
                           sizeof(li->manufacturerID)) &&
           tg_uri_field_eq(u->has_lib_description, u->lib_description, li->libraryDescription,
                           sizeof(li->libraryDescription));
}

bool tg_p11_uri_match_slot(const struct tg_p11_uri *u, CK_SLOT_ID id, const CK_SLOT_INFO *si)
{
    if (u->has_slot_id && id != u->slot_id)
        return false;
    return tg_uri_field_eq(u->has_slot_description, u->slot_description, si->slotDescription,
                           sizeof(si->slotDescription)) &&
           tg_uri_field_eq(u->has_slot_manufacturer, u->slot_manufacturer, si->manufacturerID,
                           sizeof(si->manufacturerID));
}

/* ---- formatting ---- */

void tg_p11_uri_append(char *buf, size_t len, size_t *off, const char *name,
                       const unsigned char *value, size_t vlen)
{
    static const char hex[] = "0123456789ABCDEF";
    if (len == 0)
        return;
    size_t o = *off;
    bool first = o >= 7 && strncmp(buf, "pkcs11:", 7) == 0 && o == 7;
    char head[48];
    int hn = snprintf(head, sizeof(head), "%s%s=", first ? "" : ";", name);
    for (int i = 0; i < hn && o + 1 < len; i++)
        buf[o++] = head[i];
    for (size_t i = 0; i < vlen && o + 1 < len; i++) {
        unsigned char c = value[i];
        /* ';', '?' and '%' separate or escape; '&' is fine in a path but is
         * encoded too so the text reads the same in a query. */
        if (tg_uri_pchar(c) && c != '&') {
            buf[o++] = (char)c;
        } else if (o + 3 < len) {
            buf[o++] = '%';
            buf[o++] = hex[c >> 4];
            buf[o++] = hex[c & 15];
        } else {
            break;
        }
    }
    buf[o] = '\0';
    *off = o;
}

const char *tg_p11_uri_format(const struct tg_p11_uri *u, char *buf, size_t len)
{
    if (len == 0)
        return buf;
    size_t off = 0;
    snprintf(buf, len, "pkcs11:");
    off = strlen(buf);
    const char *base = (const char *)u;
    for (size_t i = 0; i < TG_ARRAY_LEN(tg_uri_attrs); i++) {
        const struct tg_p11_uri_attr *a = &tg_uri_attrs[i];
        if (!tg_uri_seen(u, a))
            continue;
        char num[32];
        switch (a->kind) {
        case TG_URI_TEXT: {
            const char *v = base + a->off_val;
            tg_p11_uri_append(buf, len, &off, a->name, (const unsigned char *)v, strlen(v));
            break;
        }
        case TG_URI_ID:
            tg_p11_uri_append(buf, len, &off, a->name, u->id, u->id_len);
            break;
        case TG_URI_TYPE:
            tg_p11_uri_append(buf, len, &off, a->name, (const unsigned char *)tg_uri_types[u->type],
                              strlen(tg_uri_types[u->type]));
            break;
        case TG_URI_LIBVER:
            if (u->lib_ver_has_minor)
                snprintf(num, sizeof(num), "%u.%u", u->lib_ver_major, u->lib_ver_minor);
            else
                snprintf(num, sizeof(num), "%u", u->lib_ver_major);
            tg_p11_uri_append(buf, len, &off, a->name, (const unsigned char *)num, strlen(num));
            break;
        case TG_URI_SLOTID:
            snprintf(num, sizeof(num), "%lu", u->slot_id);
            tg_p11_uri_append(buf, len, &off, a->name, (const unsigned char *)num, strlen(num));
            break;
        }
    }
    return buf;
}
