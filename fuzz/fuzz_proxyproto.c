/*
 * libFuzzer target: the PROXY protocol parser and builder
 * (src/proxy/tg_proxyproto.h). Besides "no crash, no sanitizer report" it
 * checks their contract, so a logic slip aborts too:
 *
 * The input as bytes from a load balancer:
 *   - the result is OK, EAGAIN or EPROTO, and deterministic;
 *   - OK: 0 < used <= size, used <= TG_PP_HDR_MAX (<= 107 for v1), version 1
 *     or 2, both addresses of one family (AF_UNSPEC, AF_INET or AF_INET6),
 *     every string inside the header; the header alone parses the same and
 *     one byte less needs more (no early completion, no reading past it);
 *   - round trip: building what was parsed and parsing that gives back the
 *     same fields;
 *   - EAGAIN only below TG_PP_HDR_MAX; EPROTO with a reason.
 * The input as fields (structured): whatever the builder accepts, the parser
 * reads back field for field, in exactly the bytes written.
 */
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/tg_proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static bool str_eq(struct tg_pp_str a, struct tg_pp_str b)
{
    if ((a.p == NULL) != (b.p == NULL))
        return false;
    return a.p == NULL || (a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0));
}

static bool str_inside(struct tg_pp_str s, const uint8_t *buf, size_t used)
{
    const char *lo = (const char *)buf, *hi = lo + used;
    return s.p == NULL || (s.p >= lo && s.len <= (size_t)(hi - s.p));
}

/* The fields a header carries in its version (v1: no TLV). */
static void same_fields(const struct tg_pp_hdr *a, const struct tg_pp_hdr *b)
{
    CHECK(a->version == b->version);
    CHECK(a->local == b->local);
    CHECK(memcmp(&a->src, &b->src, sizeof(a->src)) == 0);
    CHECK(memcmp(&a->dst, &b->dst, sizeof(a->dst)) == 0);
    CHECK(str_eq(a->authority, b->authority));
    CHECK(str_eq(a->alpn, b->alpn));
    CHECK(a->ssl.present == b->ssl.present);
    if (a->ssl.present) {
        CHECK(a->ssl.client == b->ssl.client && a->ssl.verify == b->ssl.verify);
        CHECK(str_eq(a->ssl.version, b->ssl.version));
        CHECK(str_eq(a->ssl.cipher, b->ssl.cipher));
        CHECK(str_eq(a->ssl.cn, b->ssl.cn));
    }
}

static void check_families(const struct tg_pp_hdr *h)
{
    int f = h->src.ss_family;
    CHECK(f == h->dst.ss_family);
    CHECK(f == AF_UNSPEC || f == AF_INET || f == AF_INET6);
    if (h->local || h->version == 1)
        CHECK(!h->ssl.present && h->authority.p == NULL && h->alpn.p == NULL);
    if (h->local)
        CHECK(f == AF_UNSPEC);
}

static uint8_t out[TG_PP_HDR_MAX], out2[TG_PP_HDR_MAX];

static void fuzz_parse(const uint8_t *data, size_t size)
{
    struct tg_pp_hdr h, again;
    size_t used = 1, used2 = 1;
    const char *why = "x", *why2 = "y";
    int rc = tg_pp_parse(data, size, &h, &used, &why);
    CHECK(rc == TG_OK || rc == TG_EAGAIN || rc == TG_EPROTO);
    CHECK(tg_pp_parse(data, size, &again, &used2, &why2) == rc);
    CHECK(used == used2 && why == why2);
    CHECK(memcmp(&h, &again, sizeof(h)) == 0);

    if (rc == TG_EAGAIN) {
        CHECK(size < TG_PP_HDR_MAX && used == 0);
        return;
    }
    if (rc == TG_EPROTO) {
        CHECK(why != NULL && used == 0);
        CHECK(h.version >= 0 && h.version <= 2);
        CHECK(h.src.ss_family == AF_UNSPEC);
        return;
    }
    CHECK(why == NULL);
    CHECK(used > 0 && used <= size && used <= TG_PP_HDR_MAX);
    CHECK(h.version == 1 || h.version == 2);
    CHECK(h.version == 2 || used <= TG_PP_V1_MAX);
    check_families(&h);
    CHECK(str_inside(h.authority, data, used) && str_inside(h.alpn, data, used));
    CHECK(str_inside(h.ssl.version, data, used) && str_inside(h.ssl.cipher, data, used) &&
          str_inside(h.ssl.cn, data, used));
    /* The header alone; one byte less. */
    CHECK(tg_pp_parse(data, used, &again, &used2, &why2) == TG_OK);
    CHECK(used2 == used);
    same_fields(&h, &again);
    CHECK(tg_pp_parse(data, used - 1, &again, &used2, &why2) == TG_EAGAIN);

    /* Round trip: what was parsed, built, parses back the same. A v2 header
     * rebuilt holds a subset of the original's TLVs: it fits. */
    size_t len = 0;
    CHECK(tg_pp_build(&h, out, sizeof(out), &len) == TG_OK);
    CHECK(tg_pp_parse(out, len, &again, &used2, &why2) == TG_OK);
    CHECK(used2 == len);
    same_fields(&h, &again);
}

/* ---- structured: fields from the input ---- */

struct reader {
    const uint8_t *p;
    size_t n;
};

static uint8_t take8(struct reader *r)
{
    if (r->n == 0)
        return 0;
    r->n--;
    return *r->p++;
}

static void take(struct reader *r, void *to, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ((uint8_t *)to)[i] = take8(r);
}

/* A string of a length the input chooses (bits 0-8 of two bytes), or
 * absent; its bytes come from the input too (they may run short: the
 * string is then cut to what is left). */
static struct tg_pp_str take_str(struct reader *r)
{
    uint8_t a = take8(r), b = take8(r);
    if ((a & 0x80) == 0)
        return (struct tg_pp_str){NULL, 0};
    size_t want = ((size_t)(a & 0x01) << 8) | b;
    size_t len = want < r->n ? want : r->n;
    struct tg_pp_str s = {(const char *)r->p, len};
    r->p += len;
    r->n -= len;
    return s;
}

static void take_addr(struct reader *r, int family, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    ss->ss_family = (sa_family_t)family;
    if (family == AF_INET) {
        struct sockaddr_in *s = (struct sockaddr_in *)ss;
        take(r, &s->sin_addr, 4);
        take(r, &s->sin_port, 2);
    } else if (family == AF_INET6) {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
        take(r, &s->sin6_addr, 16);
        take(r, &s->sin6_port, 2);
    }
}

static void fuzz_build(const uint8_t *data, size_t size)
{
    struct reader r = {data, size};
    uint8_t flags = take8(&r);
    static const int families[] = {AF_UNSPEC, AF_INET, AF_INET6, AF_UNIX};
    struct tg_pp_hdr h;
    memset(&h, 0, sizeof(h));
    h.version = 1 + (flags & 1);
    h.local = (flags & 2) != 0;
    take_addr(&r, families[(flags >> 2) & 3], &h.src);
    take_addr(&r, families[(flags >> 4) & 3], &h.dst);
    h.authority = take_str(&r);
    h.alpn = take_str(&r);
    if (flags & 0x40) {
        h.ssl.present = true;
        h.ssl.client = take8(&r);
        take(&r, &h.ssl.verify, 4);
        h.ssl.version = take_str(&r);
        h.ssl.cipher = take_str(&r);
        h.ssl.cn = take_str(&r);
    }
    size_t cap = (flags & 0x80) ? sizeof(out) : take8(&r), len = 0;
    int rc = tg_pp_build(&h, out, cap, &len);
    CHECK(rc == TG_OK || rc == TG_ELIMIT || rc == TG_EINVAL);
    if (rc != TG_OK) {
        /* Too big for the caller's buffer only: the full buffer takes it. */
        if (rc == TG_ELIMIT)
            CHECK(cap < sizeof(out) && tg_pp_build(&h, out, sizeof(out), &len) == TG_OK);
        return;
    }
    CHECK(len > 0 && len <= cap && len <= TG_PP_HDR_MAX);

    /* What the parser must read back: the fields the version carries. */
    struct tg_pp_hdr want = h;
    bool pair = !h.local && h.src.ss_family == h.dst.ss_family &&
                (h.src.ss_family == AF_INET || h.src.ss_family == AF_INET6);
    if (!pair) {
        memset(&want.src, 0, sizeof(want.src));
        memset(&want.dst, 0, sizeof(want.dst));
    }
    if (h.version == 1) {
        want.local = false;
        want.authority = want.alpn = (struct tg_pp_str){NULL, 0};
        memset(&want.ssl, 0, sizeof(want.ssl));
    } else if (h.local) {
        want.authority = want.alpn = (struct tg_pp_str){NULL, 0};
        memset(&want.ssl, 0, sizeof(want.ssl));
    }
    memcpy(out2, out, len); /* parse a copy: nothing may depend on the builder's buffer */
    struct tg_pp_hdr back;
    size_t used = 0;
    const char *why = NULL;
    CHECK(tg_pp_parse(out2, len, &back, &used, &why) == TG_OK);
    CHECK(used == len);
    same_fields(&want, &back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_parse(data, size);
    fuzz_build(data, size);
    return 0;
}
