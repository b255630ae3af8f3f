/*
 * tg_proxyproto: PROXY protocol parser and builder. Contract in
 * tg_proxyproto.h. Written from the protocol's specification (haproxy's
 * doc/proxy-protocol.txt); section numbers below refer to it.
 */
#include "proxy/tg_proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* Section 2.2: the twelve bytes that open every version 2 header. */
static const uint8_t tg_pp_v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
/* Section 2.1: version 1 opens with these five. */
static const char tg_pp_v1_sig[5] = {'P', 'R', 'O', 'X', 'Y'};

#define TG_PP_CMD_LOCAL  0x0
#define TG_PP_CMD_PROXY  0x1
#define TG_PP_FAM_UNSPEC 0x00
#define TG_PP_FAM_TCP4   0x11
#define TG_PP_FAM_TCP6   0x21
#define TG_PP_ADDR_LEN4  12 /* two IPv4 addresses and two ports */
#define TG_PP_ADDR_LEN6  36 /* two IPv6 addresses and two ports */
#define TG_PP_SSL_FIXED  5  /* PP2_TYPE_SSL's client (1) and verify (4) */

/* Longest text accepted for one v1 field: an IPv6 address written with an
 * IPv4 tail ("ffff:...:ffff:255.255.255.255") is 45 characters. */
#define TG_PP_V1_ADDR_MAX 45
#define TG_PP_V1_PORT_MAX 5

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */

static uint16_t tg_pp_get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t tg_pp_get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void tg_pp_set_in4(struct sockaddr_storage *ss, const uint8_t *addr, const uint8_t *port)
{
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    memset(ss, 0, sizeof(*ss));
    s4->sin_family = AF_INET;
    memcpy(&s4->sin_addr, addr, 4);
    memcpy(&s4->sin_port, port, 2);
}

static void tg_pp_set_in6(struct sockaddr_storage *ss, const uint8_t *addr, const uint8_t *port)
{
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof(*ss));
    s6->sin6_family = AF_INET6;
    memcpy(&s6->sin6_addr, addr, 16);
    memcpy(&s6->sin6_port, port, 2);
}

static int tg_pp_fail(const char **why, const char *msg)
{
    *why = msg;
    return TG_EPROTO;
}

/* ------------------------------------------------------------------------ */
/* Version 1                                                                */

/* A cursor over the first bytes of a v1 line. Each step returns TG_OK (and
 * moves on), TG_EAGAIN (the input ends inside the step, the bytes so far
 * being a valid beginning of it) or TG_EPROTO. */
struct tg_pp_v1cur {
    const uint8_t *p;
    size_t len;
    size_t pos;
    const char **why;
};

/* The literal lit (n bytes) next. */
static int tg_pp_v1_lit(struct tg_pp_v1cur *c, const char *lit, size_t n, const char *msg)
{
    size_t avail = c->len - c->pos, k = avail < n ? avail : n;
    if (memcmp(c->p + c->pos, lit, k) != 0)
        return tg_pp_fail(c->why, msg);
    if (k < n)
        return TG_EAGAIN;
    c->pos += n;
    return TG_OK;
}

static bool tg_pp_is_digit(uint8_t b)
{
    return b >= '0' && b <= '9';
}

static bool tg_pp_v4_char(uint8_t b)
{
    return tg_pp_is_digit(b) || b == '.';
}

static bool tg_pp_v6_char(uint8_t b)
{
    return tg_pp_is_digit(b) || (b >= 'a' && b <= 'f') || (b >= 'A' && b <= 'F') || b == ':' ||
           b == '.';
}

/* A non-empty field of at most max characters that ok() accepts, ended by
 * term (consumed). tok (max + 1 bytes) gets it NUL-terminated. */
static int tg_pp_v1_field(struct tg_pp_v1cur *c, uint8_t term, size_t max, bool (*ok)(uint8_t),
                          char *tok, const char *msg)
{
    size_t i = 0;
    for (;;) {
        if (c->pos + i >= c->len)
            return TG_EAGAIN;
        uint8_t b = c->p[c->pos + i];
        if (b == term)
            break;
        if (i == max || !ok(b))
            return tg_pp_fail(c->why, msg);
        tok[i++] = (char)b;
    }
    if (i == 0)
        return tg_pp_fail(c->why, msg);
    tok[i] = '\0';
    c->pos += i + 1;
    return TG_OK;
}

static int tg_pp_v1_addr(struct tg_pp_v1cur *c, int family, struct sockaddr_storage *ss)
{
    char tok[TG_PP_V1_ADDR_MAX + 1];
    const char *msg = "v1: invalid address";
    int rc = tg_pp_v1_field(c, ' ', family == AF_INET ? 15 : TG_PP_V1_ADDR_MAX,
                            family == AF_INET ? tg_pp_v4_char : tg_pp_v6_char, tok, msg);
    if (rc != TG_OK)
        return rc;
    memset(ss, 0, sizeof(*ss));
    ss->ss_family = (sa_family_t)family;
    void *dst = family == AF_INET ? (void *)&((struct sockaddr_in *)ss)->sin_addr
                                  : (void *)&((struct sockaddr_in6 *)ss)->sin6_addr;
    /* glibc's inet_pton is as strict as section 2.1 asks: four decimal
     * numbers without leading zeroes, or one IPv6 address (no zone). */
    if (inet_pton(family, tok, dst) != 1)
        return tg_pp_fail(c->why, msg);
    return TG_OK;
}

static int tg_pp_v1_port(struct tg_pp_v1cur *c, uint8_t term, struct sockaddr_storage *ss)
{
    char tok[TG_PP_V1_PORT_MAX + 1];
    const char *msg = "v1: invalid port";
    int rc = tg_pp_v1_field(c, term, TG_PP_V1_PORT_MAX, tg_pp_is_digit, tok, msg);
    if (rc != TG_OK)
        return rc;
    if (tok[0] == '0' && tok[1] != '\0')
        return tg_pp_fail(c->why, "v1: port with a leading zero");
    unsigned long v = 0;
    for (const char *s = tok; *s != '\0'; s++)
        v = v * 10 + (unsigned long)(*s - '0');
    if (v > 65535)
        return tg_pp_fail(c->why, msg);
    uint16_t port = htons((uint16_t)v);
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = port;
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = port;
    return TG_OK;
}

/* "UNKNOWN" seen: the rest of the line up to CRLF is ignored, but it must
 * end with a real CRLF (no lone CR or LF). */
static int tg_pp_v1_unknown_rest(struct tg_pp_v1cur *c)
{
    if (c->pos >= c->len)
        return TG_EAGAIN;
    if (c->p[c->pos] != ' ' && c->p[c->pos] != '\r')
        return tg_pp_fail(c->why, "v1: unknown protocol");
    for (size_t i = c->pos; i < c->len; i++) {
        if (c->p[i] == '\n')
            return tg_pp_fail(c->why, "v1: LF without CR");
        if (c->p[i] != '\r')
            continue;
        if (i + 1 >= c->len)
            return TG_EAGAIN;
        if (c->p[i + 1] != '\n')
            return tg_pp_fail(c->why, "v1: CR without LF");
        c->pos = i + 2;
        return TG_OK;
    }
    return TG_EAGAIN;
}

static int tg_pp_v1_line(struct tg_pp_v1cur *c, struct tg_pp_hdr *out)
{
    TG_GUARD(tg_pp_v1_lit(c, "PROXY ", 6, "v1: no space after PROXY"));
    /* Which protocol: as soon as the bytes so far fit none of the three. */
    static const char *const protos[] = {"TCP4 ", "TCP6 ", "UNKNOWN"};
    size_t avail = c->len - c->pos;
    int which = -1;
    bool maybe = false;
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(protos[i]), k = avail < n ? avail : n;
        if (memcmp(c->p + c->pos, protos[i], k) != 0)
            continue;
        if (k == n)
            which = i;
        else
            maybe = true;
    }
    if (which < 0)
        return maybe ? TG_EAGAIN : tg_pp_fail(c->why, "v1: unknown protocol");
    c->pos += strlen(protos[which]);
    if (which == 2)
        return tg_pp_v1_unknown_rest(c);
    int family = which == 0 ? AF_INET : AF_INET6;
    TG_GUARD(tg_pp_v1_addr(c, family, &out->src));
    TG_GUARD(tg_pp_v1_addr(c, family, &out->dst));
    TG_GUARD(tg_pp_v1_port(c, ' ', &out->src));
    TG_GUARD(tg_pp_v1_port(c, '\r', &out->dst));
    return tg_pp_v1_lit(c, "\n", 1, "v1: CR without LF");
}

static int tg_pp_parse_v1(const uint8_t *b, size_t len, struct tg_pp_hdr *out, size_t *used,
                          const char **why)
{
    /* Section 2.1: the line ends within 107 bytes, or it is invalid. */
    struct tg_pp_v1cur c = {b, len < TG_PP_V1_MAX ? len : TG_PP_V1_MAX, 0, why};
    int rc = tg_pp_v1_line(&c, out);
    if (rc == TG_EAGAIN && len >= TG_PP_V1_MAX)
        return tg_pp_fail(why, "v1: no CRLF within 107 bytes");
    if (rc != TG_OK)
        return rc;
    *used = c.pos;
    return TG_OK;
}

/* ------------------------------------------------------------------------ */
/* Version 2                                                                */

static int tg_pp_once(struct tg_pp_str *s, const uint8_t *v, size_t n, const char **why,
                      const char *dup)
{
    if (s->p != NULL)
        return tg_pp_fail(why, dup);
    s->p = (const char *)v;
    s->len = n;
    return TG_OK;
}

/* Walk the TLVs in p[0..n): each calls back with its type and value. */
typedef int (*tg_pp_tlv_fn)(uint8_t type, const uint8_t *v, size_t vlen, void *arg,
                            const char **why);

static int tg_pp_tlv_walk(const uint8_t *p, size_t n, tg_pp_tlv_fn fn, void *arg, const char **why)
{
    size_t i = 0;
    while (i < n) {
        if (n - i < 3)
            return tg_pp_fail(why, "v2: truncated TLV");
        size_t vlen = tg_pp_get16(p + i + 1);
        if (vlen > n - i - 3)
            return tg_pp_fail(why, "v2: TLV longer than the header");
        TG_GUARD(fn(p[i], p + i + 3, vlen, arg, why));
        i += 3 + vlen;
    }
    return TG_OK;
}

static int tg_pp_ssl_sub(uint8_t type, const uint8_t *v, size_t vlen, void *arg, const char **why)
{
    struct tg_pp_ssl *ssl = arg;
    switch (type) {
    case TG_PP2_SUBTYPE_SSL_VERSION:
        return tg_pp_once(&ssl->version, v, vlen, why, "v2: SSL version given twice");
    case TG_PP2_SUBTYPE_SSL_CIPHER:
        return tg_pp_once(&ssl->cipher, v, vlen, why, "v2: SSL cipher given twice");
    case TG_PP2_SUBTYPE_SSL_CN:
        return tg_pp_once(&ssl->cn, v, vlen, why, "v2: SSL CN given twice");
    default:
        return TG_OK; /* SIG_ALG, KEY_ALG, future ones: not used here */
    }
}

static int tg_pp_tlv(uint8_t type, const uint8_t *v, size_t vlen, void *arg, const char **why)
{
    struct tg_pp_hdr *h = arg;
    switch (type) {
    case TG_PP2_TYPE_ALPN:
        return tg_pp_once(&h->alpn, v, vlen, why, "v2: ALPN given twice");
    case TG_PP2_TYPE_AUTHORITY:
        return tg_pp_once(&h->authority, v, vlen, why, "v2: AUTHORITY given twice");
    case TG_PP2_TYPE_SSL:
        if (h->ssl.present)
            return tg_pp_fail(why, "v2: SSL given twice");
        if (vlen < TG_PP_SSL_FIXED)
            return tg_pp_fail(why, "v2: SSL TLV too short");
        h->ssl.present = true;
        h->ssl.client = v[0];
        h->ssl.verify = tg_pp_get32(v + 1);
        return tg_pp_tlv_walk(v + TG_PP_SSL_FIXED, vlen - TG_PP_SSL_FIXED, tg_pp_ssl_sub, &h->ssl,
                              why);
    default:
        /* CRC32C is not checked (optional for receivers), NOOP, UNIQUE_ID,
         * NETNS and custom types are not used: skipped. */
        return TG_OK;
    }
}

static int tg_pp_parse_v2(const uint8_t *b, size_t len, struct tg_pp_hdr *out, size_t *used,
                          const char **why)
{
    /* The signature (checked by the caller) is complete from here on. */
    if (len < 13)
        return TG_EAGAIN;
    if ((b[12] >> 4) != 2)
        return tg_pp_fail(why, "v2: version is not 2");
    int cmd = b[12] & 0x0F;
    if (cmd != TG_PP_CMD_LOCAL && cmd != TG_PP_CMD_PROXY)
        return tg_pp_fail(why, "v2: unknown command");
    if (len < 14)
        return TG_EAGAIN;
    uint8_t fam = b[13];
    /* LOCAL: the family is ignored with the rest of the block. */
    if (cmd == TG_PP_CMD_PROXY && fam != TG_PP_FAM_UNSPEC && fam != TG_PP_FAM_TCP4 &&
        fam != TG_PP_FAM_TCP6)
        return tg_pp_fail(why, "v2: address family and protocol not TCP over IPv4 or IPv6");
    if (len < TG_PP_V2_FIXED)
        return TG_EAGAIN;
    size_t blen = tg_pp_get16(b + 14);
    if (blen > TG_PP_V2_MAX_LEN)
        return tg_pp_fail(why, "v2: length above 2048");
    if (len < TG_PP_V2_FIXED + blen)
        return TG_EAGAIN;
    const uint8_t *blk = b + TG_PP_V2_FIXED;
    if (cmd == TG_PP_CMD_LOCAL) {
        out->local = true;
        *used = TG_PP_V2_FIXED + blen;
        return TG_OK;
    }
    size_t alen = fam == TG_PP_FAM_TCP4   ? TG_PP_ADDR_LEN4
                  : fam == TG_PP_FAM_TCP6 ? TG_PP_ADDR_LEN6
                                          : 0;
    if (blen < alen)
        return tg_pp_fail(why, "v2: length shorter than the addresses");
    if (fam == TG_PP_FAM_TCP4) {
        tg_pp_set_in4(&out->src, blk, blk + 8);
        tg_pp_set_in4(&out->dst, blk + 4, blk + 10);
    } else if (fam == TG_PP_FAM_TCP6) {
        tg_pp_set_in6(&out->src, blk, blk + 32);
        tg_pp_set_in6(&out->dst, blk + 16, blk + 34);
    }
    int rc = tg_pp_tlv_walk(blk + alen, blen - alen, tg_pp_tlv, out, why);
    if (rc != TG_OK)
        return rc;
    *used = TG_PP_V2_FIXED + blen;
    return TG_OK;
}

int tg_pp_parse(const void *buf, size_t len, struct tg_pp_hdr *out, size_t *used, const char **why)
{
    const uint8_t *b = buf;
    memset(out, 0, sizeof(*out));
    *used = 0;
    *why = NULL;
    if (len == 0)
        return TG_EAGAIN;
    const uint8_t *sig = b[0] == tg_pp_v2_sig[0] ? tg_pp_v2_sig : (const uint8_t *)tg_pp_v1_sig;
    size_t siglen = sig == tg_pp_v2_sig ? sizeof(tg_pp_v2_sig) : sizeof(tg_pp_v1_sig);
    size_t k = len < siglen ? len : siglen;
    if (memcmp(b, sig, k) != 0)
        return tg_pp_fail(why, "no PROXY protocol signature");
    if (k < siglen)
        return TG_EAGAIN;
    out->version = sig == tg_pp_v2_sig ? 2 : 1;
    int rc = out->version == 2 ? tg_pp_parse_v2(b, len, out, used, why)
                               : tg_pp_parse_v1(b, len, out, used, why);
    if (rc != TG_OK) {
        /* Nothing half-parsed leaks out: only the version is kept. */
        int v = out->version;
        memset(out, 0, sizeof(*out));
        out->version = v;
        *used = 0;
    }
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Building                                                                 */

/* Both addresses of one family we can write (AF_INET or AF_INET6), else AF_UNSPEC. */
static int tg_pp_family(const struct tg_pp_hdr *h)
{
    int f = h->src.ss_family;
    if (h->local || f != h->dst.ss_family || (f != AF_INET && f != AF_INET6))
        return AF_UNSPEC;
    return f;
}

static int tg_pp_build_v1(const struct tg_pp_hdr *h, uint8_t *out, size_t cap, size_t *len)
{
    char line[TG_PP_V1_MAX + 1];
    int family = tg_pp_family(h), n;
    if (family == AF_UNSPEC) {
        n = snprintf(line, sizeof(line), "PROXY UNKNOWN\r\n");
    } else {
        char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
        unsigned sport, dport;
        if (family == AF_INET) {
            const struct sockaddr_in *s = (const void *)&h->src, *d = (const void *)&h->dst;
            inet_ntop(AF_INET, &s->sin_addr, src, sizeof(src));
            inet_ntop(AF_INET, &d->sin_addr, dst, sizeof(dst));
            sport = ntohs(s->sin_port);
            dport = ntohs(d->sin_port);
        } else {
            const struct sockaddr_in6 *s = (const void *)&h->src, *d = (const void *)&h->dst;
            inet_ntop(AF_INET6, &s->sin6_addr, src, sizeof(src));
            inet_ntop(AF_INET6, &d->sin6_addr, dst, sizeof(dst));
            sport = ntohs(s->sin6_port);
            dport = ntohs(d->sin6_port);
        }
        n = snprintf(line, sizeof(line), "PROXY %s %s %s %u %u\r\n",
                     family == AF_INET ? "TCP4" : "TCP6", src, dst, sport, dport);
    }
    /* inet_ntop writes an IPv4-mapped address with a dotted tail: still
     * within 107 bytes ("::ffff:" + 15 characters). */
    if (n < 0 || (size_t)n >= sizeof(line))
        return TG_EINVAL;
    if ((size_t)n > cap)
        return TG_ELIMIT;
    memcpy(out, line, (size_t)n);
    *len = (size_t)n;
    return TG_OK;
}

static size_t tg_pp_add(size_t a, size_t b)
{
    return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

static size_t tg_pp_tlv_size(const struct tg_pp_str *s)
{
    return s->p == NULL ? 0 : tg_pp_add(3, s->len);
}

/* Bytes of the PP2_TYPE_SSL value (without its own type and length). */
static size_t tg_pp_ssl_size(const struct tg_pp_ssl *ssl)
{
    size_t n = TG_PP_SSL_FIXED;
    n = tg_pp_add(n, tg_pp_tlv_size(&ssl->version));
    n = tg_pp_add(n, tg_pp_tlv_size(&ssl->cipher));
    return tg_pp_add(n, tg_pp_tlv_size(&ssl->cn));
}

static uint8_t *tg_pp_put_tlv_head(uint8_t *p, uint8_t type, size_t vlen)
{
    p[0] = type;
    p[1] = (uint8_t)(vlen >> 8);
    p[2] = (uint8_t)vlen;
    return p + 3;
}

static uint8_t *tg_pp_put_tlv(uint8_t *p, uint8_t type, const struct tg_pp_str *s)
{
    if (s->p == NULL)
        return p;
    p = tg_pp_put_tlv_head(p, type, s->len);
    if (s->len > 0)
        memcpy(p, s->p, s->len);
    return p + s->len;
}

static int tg_pp_build_v2(const struct tg_pp_hdr *h, uint8_t *out, size_t cap, size_t *len)
{
    int family = tg_pp_family(h);
    size_t alen = family == AF_INET ? TG_PP_ADDR_LEN4 : family == AF_INET6 ? TG_PP_ADDR_LEN6 : 0;
    size_t blen = 0;
    if (!h->local) {
        blen = alen;
        blen = tg_pp_add(blen, tg_pp_tlv_size(&h->authority));
        blen = tg_pp_add(blen, tg_pp_tlv_size(&h->alpn));
        if (h->ssl.present)
            blen = tg_pp_add(blen, tg_pp_add(3, tg_pp_ssl_size(&h->ssl)));
    }
    /* Every value is then shorter than 65536: the 16-bit fields hold it. */
    if (blen > TG_PP_V2_MAX_LEN)
        return TG_EINVAL;
    if (TG_PP_V2_FIXED + blen > cap)
        return TG_ELIMIT;
    uint8_t *p = out;
    memcpy(p, tg_pp_v2_sig, sizeof(tg_pp_v2_sig));
    p += sizeof(tg_pp_v2_sig);
    *p++ = (uint8_t)(0x20 | (h->local ? TG_PP_CMD_LOCAL : TG_PP_CMD_PROXY));
    *p++ = family == AF_INET    ? TG_PP_FAM_TCP4
           : family == AF_INET6 ? TG_PP_FAM_TCP6
                                : TG_PP_FAM_UNSPEC;
    *p++ = (uint8_t)(blen >> 8);
    *p++ = (uint8_t)blen;
    if (!h->local) {
        if (family == AF_INET) {
            const struct sockaddr_in *s = (const void *)&h->src, *d = (const void *)&h->dst;
            memcpy(p, &s->sin_addr, 4);
            memcpy(p + 4, &d->sin_addr, 4);
            memcpy(p + 8, &s->sin_port, 2);
            memcpy(p + 10, &d->sin_port, 2);
        } else if (family == AF_INET6) {
            const struct sockaddr_in6 *s = (const void *)&h->src, *d = (const void *)&h->dst;
            memcpy(p, &s->sin6_addr, 16);
            memcpy(p + 16, &d->sin6_addr, 16);
            memcpy(p + 32, &s->sin6_port, 2);
            memcpy(p + 34, &d->sin6_port, 2);
        }
        p += alen;
        p = tg_pp_put_tlv(p, TG_PP2_TYPE_AUTHORITY, &h->authority);
        p = tg_pp_put_tlv(p, TG_PP2_TYPE_ALPN, &h->alpn);
        if (h->ssl.present) {
            p = tg_pp_put_tlv_head(p, TG_PP2_TYPE_SSL, tg_pp_ssl_size(&h->ssl));
            *p++ = h->ssl.client;
            *p++ = (uint8_t)(h->ssl.verify >> 24);
            *p++ = (uint8_t)(h->ssl.verify >> 16);
            *p++ = (uint8_t)(h->ssl.verify >> 8);
            *p++ = (uint8_t)h->ssl.verify;
            p = tg_pp_put_tlv(p, TG_PP2_SUBTYPE_SSL_VERSION, &h->ssl.version);
            p = tg_pp_put_tlv(p, TG_PP2_SUBTYPE_SSL_CIPHER, &h->ssl.cipher);
            p = tg_pp_put_tlv(p, TG_PP2_SUBTYPE_SSL_CN, &h->ssl.cn);
        }
    }
    TG_ASSERT((size_t)(p - out) == TG_PP_V2_FIXED + blen);
    *len = TG_PP_V2_FIXED + blen;
    return TG_OK;
}

int tg_pp_build(const struct tg_pp_hdr *h, void *out, size_t cap, size_t *len)
{
    *len = 0;
    if (h->version == 1)
        return tg_pp_build_v1(h, out, cap, len);
    if (h->version == 2)
        return tg_pp_build_v2(h, out, cap, len);
    return TG_EINVAL;
}

const char *tg_pp_addr_text(const struct sockaddr_storage *ss, char *buf, size_t buflen)
{
    char host[INET6_ADDRSTRLEN];
    if (buflen == 0)
        return buf;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const void *)ss;
        inet_ntop(AF_INET, &s->sin_addr, host, sizeof(host));
        snprintf(buf, buflen, "%s:%u", host, (unsigned)ntohs(s->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const void *)ss;
        inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof(host));
        snprintf(buf, buflen, "[%s]:%u", host, (unsigned)ntohs(s->sin6_port));
    } else {
        snprintf(buf, buflen, "-");
    }
    return buf;
}
