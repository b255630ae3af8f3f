/*
 * The key server protocol: framing, message bodies, key ids. Contract in
 * tg_ksproto.h; the byte layouts are specified in
 * docs/KEYSERVER-PROTOCOL.md (keep both in step).
 */
#include "ksproto/tg_ksproto.h"

#include <openssl/sha.h>
#include <openssl/x509.h>
#include <string.h>

/* ---- byte order ---- */

static uint16_t tg_ksp_get16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static uint32_t tg_ksp_get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void tg_ksp_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void tg_ksp_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ---- names ---- */

const char *tg_ksp_type_name(unsigned type)
{
    switch (type) {
#define TG_KSP_TYPE_CASE(id, v, label)                                                             \
    case v:                                                                                        \
        return label;
        TG_KSP_TYPES(TG_KSP_TYPE_CASE)
#undef TG_KSP_TYPE_CASE
    default:
        return "unknown";
    }
}

const char *tg_ksp_status_name(unsigned status)
{
    switch (status) {
#define TG_KSP_STATUS_CASE(id, v, label)                                                           \
    case v:                                                                                        \
        return label;
        TG_KSP_STATUSES(TG_KSP_STATUS_CASE)
#undef TG_KSP_STATUS_CASE
    default:
        return "unknown";
    }
}

bool tg_ksp_text_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    }
    return true;
}

/* ---- digests ---- */

static const struct {
    const char *name;
    int nid;
    size_t size;
} tg_ksp_mds[TG_KSP_MD_MAX + 1] = {
    [TG_KSP_MD_NONE] = {NULL, 0, 0},
    [TG_KSP_MD_SHA1] = {"SHA1", NID_sha1, 20},
    [TG_KSP_MD_SHA224] = {"SHA224", NID_sha224, 28},
    [TG_KSP_MD_SHA256] = {"SHA256", NID_sha256, 32},
    [TG_KSP_MD_SHA384] = {"SHA384", NID_sha384, 48},
    [TG_KSP_MD_SHA512] = {"SHA512", NID_sha512, 64},
};

int tg_ksp_md_code(const EVP_MD *md)
{
    if (md == NULL)
        return TG_KSP_MD_NONE;
    int nid = EVP_MD_get_type(md);
    for (int c = 1; c <= TG_KSP_MD_MAX; c++) {
        if (tg_ksp_mds[c].nid == nid)
            return c;
    }
    return -1;
}

size_t tg_ksp_md_size(unsigned code)
{
    return code <= TG_KSP_MD_MAX ? tg_ksp_mds[code].size : 0;
}

const char *tg_ksp_md_name(unsigned code)
{
    return code <= TG_KSP_MD_MAX ? tg_ksp_mds[code].name : NULL;
}

/* ---- key ids ---- */

int tg_ksp_key_id(EVP_PKEY *pub, uint8_t id[TG_KSP_KEY_ID])
{
    unsigned char *der = NULL;
    int len = pub != NULL ? i2d_PUBKEY(pub, &der) : -1;
    if (len <= 0)
        return TG_ECRYPTO;
    SHA256(der, (size_t)len, id);
    OPENSSL_free(der);
    return TG_OK;
}

void tg_ksp_key_id_hex(const uint8_t id[TG_KSP_KEY_ID], size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    if (n > TG_KSP_KEY_ID)
        n = TG_KSP_KEY_ID;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[id[i] >> 4];
        out[2 * i + 1] = hex[id[i] & 15];
    }
    out[2 * n] = '\0';
}

/* ---- frames ---- */

int tg_ksp_frame_parse(const uint8_t *buf, size_t len, struct tg_ksp_frame *f, size_t *used,
                       const char **why)
{
    *used = 0;
    *why = NULL;
    if (len < 4)
        return TG_EAGAIN;
    uint32_t flen = tg_ksp_get32(buf);
    if (flen < TG_KSP_HDR_LEN - 4) {
        *why = "frame shorter than its header";
        return TG_EPROTO;
    }
    if (flen > TG_KSP_FRAME_MAX - 4) {
        *why = "frame longer than the largest message";
        return TG_EPROTO;
    }
    /* Check what the header says as soon as it is there, so garbage is
     * refused without waiting for a body it announces. */
    if (len >= 5 && buf[4] == 0) {
        *why = "version 0";
        return TG_EPROTO;
    }
    if (len >= 6 && (buf[5] == 0 || buf[5] > TG_KSP_TYPE_MAX)) {
        *why = "unknown message type";
        return TG_EPROTO;
    }
    if (len >= 8 && tg_ksp_get16(buf + 6) != 0) {
        *why = "flags set";
        return TG_EPROTO;
    }
    if (len < 4 + (size_t)flen)
        return TG_EAGAIN;
    f->version = buf[4];
    f->type = buf[5];
    f->flags = 0;
    f->id = tg_ksp_get32(buf + 8);
    f->body = buf + TG_KSP_HDR_LEN;
    f->bodylen = flen - (TG_KSP_HDR_LEN - 4);
    *used = 4 + (size_t)flen;
    return TG_OK;
}

/* ---- bodies ---- */

#define TG_KSP_FAIL(reason)                                                                        \
    do {                                                                                           \
        *why = (reason);                                                                           \
        return TG_EPROTO;                                                                          \
    } while (0)

/* A length-prefixed text at p (len bytes left); *n = bytes it takes. */
static int tg_ksp_get_text(const uint8_t *p, size_t len, char *out, size_t *n, const char **why)
{
    if (len < 1)
        TG_KSP_FAIL("text length missing");
    size_t tl = p[0];
    if (tl > TG_KSP_TEXT_MAX)
        TG_KSP_FAIL("text too long");
    if (len < 1 + tl)
        TG_KSP_FAIL("text runs past the body");
    if (!tg_ksp_text_ok((const char *)p + 1, tl))
        TG_KSP_FAIL("text not printable ASCII");
    memcpy(out, p + 1, tl);
    out[tl] = '\0';
    *n = 1 + tl;
    return TG_OK;
}

/* The checks of a SIGN's parameters the receiver relies on. */
static int tg_ksp_sign_check(const struct tg_ksp_msg *m, const char **why)
{
    if (m->alg < TG_KSP_ALG_RSA_PKCS1 || m->alg > TG_KSP_ALG_ECDSA)
        TG_KSP_FAIL("unknown signature algorithm");
    if (m->md > TG_KSP_MD_MAX || m->mgf1 > TG_KSP_MD_MAX)
        TG_KSP_FAIL("unknown digest");
    if (m->datalen < 1 || m->datalen > TG_KSP_DIGEST)
        TG_KSP_FAIL("digest length out of range");
    if (m->md != TG_KSP_MD_NONE && m->datalen != tg_ksp_md_size(m->md))
        TG_KSP_FAIL("digest length does not match the digest");
    if (m->alg != TG_KSP_ALG_ECDSA && m->md == TG_KSP_MD_NONE)
        TG_KSP_FAIL("RSA signature without a digest");
    if (m->alg == TG_KSP_ALG_RSA_PSS) {
        if (m->mgf1 == TG_KSP_MD_NONE)
            TG_KSP_FAIL("PSS without an MGF1 digest");
    } else if (m->mgf1 != TG_KSP_MD_NONE || m->saltlen != 0) {
        TG_KSP_FAIL("MGF1 digest or salt length outside PSS");
    }
    return TG_OK;
}

int tg_ksp_decode(const struct tg_ksp_frame *f, struct tg_ksp_msg *m, const char **why)
{
    memset(m, 0, sizeof(*m));
    *why = NULL;
    const uint8_t *b = f->body;
    size_t n = f->bodylen, tn = 0;
    m->type = (enum tg_ksp_type)f->type;
    m->version = f->version;
    m->id = f->id;
    if (f->version == 0)
        TG_KSP_FAIL("version 0");
    if (f->version != TG_KSP_VERSION && f->type != TG_KSP_HELLO)
        TG_KSP_FAIL("unsupported protocol version");
    bool conn_level = f->type == TG_KSP_HELLO || f->type == TG_KSP_HELLO_REPLY;
    if (conn_level && f->id != 0)
        TG_KSP_FAIL("hello with a request id");
    if (!conn_level && f->type != TG_KSP_ERROR && f->id == 0)
        TG_KSP_FAIL("request id 0");
    switch (f->type) {
    case TG_KSP_HELLO:
        if (n < 5)
            TG_KSP_FAIL("hello too short");
        m->max_in_flight = tg_ksp_get32(b);
        if (m->max_in_flight == 0 || m->max_in_flight > TG_KSP_INFLIGHT_MAX)
            TG_KSP_FAIL("max_in_flight out of range");
        TG_GUARD(tg_ksp_get_text(b + 4, n - 4, m->text, &tn, why));
        /* A later version may append fields: ignore them, as promised. */
        if (f->version == TG_KSP_VERSION && 4 + tn != n)
            TG_KSP_FAIL("hello has trailing bytes");
        break;
    case TG_KSP_HELLO_REPLY:
        if (n < 6)
            TG_KSP_FAIL("hello reply too short");
        m->status = b[0];
        m->max_in_flight = tg_ksp_get32(b + 1);
        TG_GUARD(tg_ksp_get_text(b + 5, n - 5, m->text, &tn, why));
        if (5 + tn != n)
            TG_KSP_FAIL("hello reply has trailing bytes");
        if (m->status >= TG_KSP_STATUS_COUNT)
            TG_KSP_FAIL("unknown status");
        if (m->status == TG_KSP_ST_OK &&
            (m->max_in_flight == 0 || m->max_in_flight > TG_KSP_INFLIGHT_MAX))
            TG_KSP_FAIL("max_in_flight out of range");
        break;
    case TG_KSP_LOOKUP:
        if (n != TG_KSP_KEY_ID)
            TG_KSP_FAIL("lookup body is not one key id");
        memcpy(m->key_id, b, TG_KSP_KEY_ID);
        break;
    case TG_KSP_LOOKUP_REPLY:
        if (n != 4)
            TG_KSP_FAIL("lookup reply body is not 4 bytes");
        m->status = b[0];
        m->key_type = b[1];
        m->key_bits = tg_ksp_get16(b + 2);
        if (m->status >= TG_KSP_STATUS_COUNT)
            TG_KSP_FAIL("unknown status");
        if (m->status == TG_KSP_ST_OK && m->key_type != TG_KSP_KEY_RSA &&
            m->key_type != TG_KSP_KEY_EC)
            TG_KSP_FAIL("unknown key type");
        if (m->status != TG_KSP_ST_OK && (m->key_type != 0 || m->key_bits != 0))
            TG_KSP_FAIL("key details in a failed lookup");
        break;
    case TG_KSP_SIGN:
        if (n < TG_KSP_KEY_ID + 8)
            TG_KSP_FAIL("sign too short");
        memcpy(m->key_id, b, TG_KSP_KEY_ID);
        m->alg = b[32];
        m->md = b[33];
        m->mgf1 = b[34];
        m->datalen = b[35];
        m->saltlen = tg_ksp_get16(b + 36);
        m->hint = tg_ksp_get16(b + 38);
        if (n != TG_KSP_KEY_ID + 8 + m->datalen)
            TG_KSP_FAIL("sign body length does not match its digest length");
        TG_GUARD(tg_ksp_sign_check(m, why));
        memcpy(m->data, b + 40, m->datalen);
        break;
    case TG_KSP_SIGN_REPLY:
        if (n < 3)
            TG_KSP_FAIL("sign reply too short");
        m->status = b[0];
        m->datalen = tg_ksp_get16(b + 1);
        if (m->status >= TG_KSP_STATUS_COUNT)
            TG_KSP_FAIL("unknown status");
        if (n != 3 + m->datalen)
            TG_KSP_FAIL("sign reply length does not match its signature length");
        if (m->status == TG_KSP_ST_OK && (m->datalen == 0 || m->datalen > TG_KSP_SIG_MAX))
            TG_KSP_FAIL("signature length out of range");
        if (m->status != TG_KSP_ST_OK && m->datalen != 0)
            TG_KSP_FAIL("signature in a failed reply");
        memcpy(m->data, b + 3, m->datalen);
        break;
    case TG_KSP_ERROR:
        if (n < 2)
            TG_KSP_FAIL("error too short");
        m->status = b[0];
        if (m->status >= TG_KSP_STATUS_COUNT || m->status == TG_KSP_ST_OK)
            TG_KSP_FAIL("unknown status");
        TG_GUARD(tg_ksp_get_text(b + 1, n - 1, m->text, &tn, why));
        if (1 + tn != n)
            TG_KSP_FAIL("error has trailing bytes");
        break;
    default:
        TG_KSP_FAIL("unknown message type");
    }
    return TG_OK;
}

/* ---- encoding ---- */

static size_t tg_ksp_put_text(uint8_t *p, const char *s)
{
    size_t tl = strlen(s);
    p[0] = (uint8_t)tl;
    memcpy(p + 1, s, tl);
    return 1 + tl;
}

size_t tg_ksp_encode(const struct tg_ksp_msg *m, uint8_t *out, size_t cap)
{
    uint8_t body[TG_KSP_BODY_MAX];
    size_t n = 0;
    const char *why;
    size_t tl = strnlen(m->text, sizeof(m->text));
    if (tl > TG_KSP_TEXT_MAX || !tg_ksp_text_ok(m->text, tl))
        return 0;
    uint8_t version = m->version ? m->version : TG_KSP_VERSION;
    switch (m->type) {
    case TG_KSP_HELLO:
        if (m->id != 0 || m->max_in_flight == 0 || m->max_in_flight > TG_KSP_INFLIGHT_MAX)
            return 0;
        tg_ksp_put32(body, m->max_in_flight);
        n = 4 + tg_ksp_put_text(body + 4, m->text);
        break;
    case TG_KSP_HELLO_REPLY:
        if (m->id != 0 || m->status >= TG_KSP_STATUS_COUNT ||
            (m->status == TG_KSP_ST_OK &&
             (m->max_in_flight == 0 || m->max_in_flight > TG_KSP_INFLIGHT_MAX)))
            return 0;
        body[0] = m->status;
        tg_ksp_put32(body + 1, m->max_in_flight);
        n = 5 + tg_ksp_put_text(body + 5, m->text);
        break;
    case TG_KSP_LOOKUP:
        if (m->id == 0)
            return 0;
        memcpy(body, m->key_id, TG_KSP_KEY_ID);
        n = TG_KSP_KEY_ID;
        break;
    case TG_KSP_LOOKUP_REPLY: {
        bool ok = m->status == TG_KSP_ST_OK;
        if (m->id == 0 || m->status >= TG_KSP_STATUS_COUNT ||
            (ok && m->key_type != TG_KSP_KEY_RSA && m->key_type != TG_KSP_KEY_EC))
            return 0;
        body[0] = m->status;
        body[1] = ok ? m->key_type : 0;
        tg_ksp_put16(body + 2, ok ? m->key_bits : 0);
        n = 4;
        break;
    }
    case TG_KSP_SIGN:
        if (m->id == 0 || tg_ksp_sign_check(m, &why) != TG_OK)
            return 0;
        memcpy(body, m->key_id, TG_KSP_KEY_ID);
        body[32] = m->alg;
        body[33] = m->md;
        body[34] = m->mgf1;
        body[35] = (uint8_t)m->datalen;
        tg_ksp_put16(body + 36, m->saltlen);
        tg_ksp_put16(body + 38, m->hint);
        memcpy(body + 40, m->data, m->datalen);
        n = 40 + m->datalen;
        break;
    case TG_KSP_SIGN_REPLY: {
        bool ok = m->status == TG_KSP_ST_OK;
        if (m->id == 0 || m->status >= TG_KSP_STATUS_COUNT ||
            (ok && (m->datalen == 0 || m->datalen > TG_KSP_SIG_MAX)))
            return 0;
        size_t sl = ok ? m->datalen : 0;
        body[0] = m->status;
        tg_ksp_put16(body + 1, (uint16_t)sl);
        memcpy(body + 3, m->data, sl);
        n = 3 + sl;
        break;
    }
    case TG_KSP_ERROR:
        if (m->status == TG_KSP_ST_OK || m->status >= TG_KSP_STATUS_COUNT)
            return 0;
        body[0] = m->status;
        n = 1 + tg_ksp_put_text(body + 1, m->text);
        break;
    default:
        return 0;
    }
    if (TG_KSP_HDR_LEN + n > cap)
        return 0;
    tg_ksp_put32(out, (uint32_t)(TG_KSP_HDR_LEN - 4 + n));
    out[4] = version;
    out[5] = (uint8_t)m->type;
    tg_ksp_put16(out + 6, 0);
    tg_ksp_put32(out + 8, m->id);
    memcpy(out + TG_KSP_HDR_LEN, body, n);
    return TG_KSP_HDR_LEN + n;
}
