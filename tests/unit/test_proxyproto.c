/*
 * The PROXY protocol parser and builder (src/proxy/tg_proxyproto.c): every
 * field of v1 TCP4 / TCP6 / UNKNOWN and v2 IPv4 / IPv6 / LOCAL / UNSPEC with
 * TLVs, every bound (107-byte v1 line, 2048-byte v2 length, TLV lengths),
 * the refusals, prefixes that need more bytes, and the builder's exact bytes.
 * Version 2 inputs are written out byte by byte here, with the type numbers
 * as plain numbers, so the test does not borrow the code's constants.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "proxy/tg_proxyproto.h"
#include "tg_test_util.h"

static struct sockaddr_storage in4(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *s = (struct sockaddr_in *)&ss;
    s->sin_family = AF_INET;
    s->sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, ip, &s->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage in6(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(port);
    assert_int_equal(inet_pton(AF_INET6, ip, &s->sin6_addr), 1);
    return ss;
}

static void assert_addr(const struct sockaddr_storage *got, const char *want)
{
    char buf[TG_PP_ADDR_TEXT];
    assert_string_equal(tg_pp_addr_text(got, buf, sizeof(buf)), want);
}

static void assert_str(struct tg_pp_str s, const char *want)
{
    if (want == NULL) {
        assert_null(s.p);
        return;
    }
    assert_non_null(s.p);
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.p, want, s.len);
}

/* Parse a complete header: TG_OK, and used == hlen. */
static void parse_ok(const void *buf, size_t len, size_t hlen, struct tg_pp_hdr *h)
{
    size_t used = 99;
    const char *why = "unset";
    int rc = tg_pp_parse(buf, len, h, &used, &why);
    if (rc != TG_OK)
        fail_msg("parse: %s (%s)", tg_strerror(rc), why ? why : "-");
    assert_int_equal(used, hlen);
    assert_null(why);
}

/* Refused, with *why containing want_why and version as given. */
static void parse_bad(const void *buf, size_t len, int version, const char *want_why)
{
    struct tg_pp_hdr h;
    size_t used = 99;
    const char *why = NULL;
    int rc = tg_pp_parse(buf, len, &h, &used, &why);
    if (rc != TG_EPROTO)
        fail_msg("expected a refusal (%s), got %s", want_why, tg_strerror(rc));
    assert_non_null(why);
    if (strstr(why, want_why) == NULL)
        fail_msg("why: '%s', expected '%s'", why, want_why);
    assert_int_equal(h.version, version);
    assert_int_equal(h.src.ss_family, AF_UNSPEC);
    assert_int_equal(used, 0);
}

static void parse_more(const void *buf, size_t len)
{
    struct tg_pp_hdr h;
    size_t used = 99;
    const char *why = NULL;
    int rc = tg_pp_parse(buf, len, &h, &used, &why);
    if (rc != TG_EAGAIN)
        fail_msg("prefix of %zu bytes: expected TG_EAGAIN, got %s (%s)", len, tg_strerror(rc),
                 why ? why : "-");
    assert_int_equal(used, 0);
}

/* Every proper prefix of a complete header needs more. */
static void prefixes_need_more(const void *buf, size_t hlen)
{
    for (size_t n = 0; n < hlen; n++)
        parse_more(buf, n);
}

static void parse_bad_str(const char *s, const char *want_why)
{
    parse_bad(s, strlen(s), 1, want_why);
}

/* ---- version 1 ---- */

static void test_v1_tcp4(void **state)
{
    (void)state;
    static const char line[] = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    char buf[128];
    size_t n = strlen(line);
    memcpy(buf, line, n);
    memcpy(buf + n, "\x16\x03\x01", 3); /* a ClientHello follows: not part of it */
    struct tg_pp_hdr h;
    parse_ok(buf, n + 3, n, &h);
    assert_int_equal(h.version, 1);
    assert_false(h.local);
    assert_int_equal(h.src.ss_family, AF_INET);
    assert_addr(&h.src, "192.168.0.1:56324");
    assert_addr(&h.dst, "192.168.0.11:443");
    assert_null(h.authority.p);
    assert_null(h.alpn.p);
    assert_false(h.ssl.present);
    prefixes_need_more(line, n);
    /* The extremes. */
    static const char ext[] = "PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n";
    parse_ok(ext, strlen(ext), strlen(ext), &h);
    assert_addr(&h.src, "255.255.255.255:65535");
    assert_addr(&h.dst, "0.0.0.0:0");
}

static void test_v1_tcp6(void **state)
{
    (void)state;
    static const char line[] = "PROXY TCP6 2001:db8::1 2001:DB8:0:0:0:0:0:2 1 65535\r\n";
    struct tg_pp_hdr h;
    parse_ok(line, strlen(line), strlen(line), &h);
    assert_int_equal(h.version, 1);
    assert_int_equal(h.src.ss_family, AF_INET6);
    assert_int_equal(h.dst.ss_family, AF_INET6);
    assert_addr(&h.src, "[2001:db8::1]:1");
    assert_addr(&h.dst, "[2001:db8::2]:65535");
    prefixes_need_more(line, strlen(line));
    /* An IPv4-mapped address, as a dual-stack sender writes one. */
    static const char mapped[] = "PROXY TCP6 ::ffff:10.0.0.1 ::1 5 6\r\n";
    parse_ok(mapped, strlen(mapped), strlen(mapped), &h);
    assert_addr(&h.src, "[::ffff:10.0.0.1]:5");
    assert_addr(&h.dst, "[::1]:6");
    /* The longest TCP6 line of section 2.1 (104 bytes). */
    static const char full[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                               "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_int_equal(strlen(full), 104);
    parse_ok(full, strlen(full), 104, &h);
}

static void test_v1_unknown(void **state)
{
    (void)state;
    struct tg_pp_hdr h;
    static const char short_form[] = "PROXY UNKNOWN\r\nrest";
    parse_ok(short_form, strlen(short_form), 15, &h);
    assert_int_equal(h.version, 1);
    assert_false(h.local);
    assert_int_equal(h.src.ss_family, AF_UNSPEC);
    assert_int_equal(h.dst.ss_family, AF_UNSPEC);
    prefixes_need_more(short_form, 15);
    /* Whatever follows UNKNOWN up to CRLF is ignored. */
    static const char long_form[] = "PROXY UNKNOWN ffff::1 whatever, really 1 2\r\n";
    parse_ok(long_form, strlen(long_form), strlen(long_form), &h);
    assert_int_equal(h.src.ss_family, AF_UNSPEC);
    /* The worst case of section 2.1: exactly 107 bytes. */
    char line[200];
    memcpy(line, "PROXY UNKNOWN ", 14);
    memset(line + 14, 'f', 107 - 14 - 2);
    memcpy(line + 105, "\r\n", 2);
    parse_ok(line, 107, 107, &h);
    parse_more(line, 106);
    /* One byte more: no CRLF within 107 bytes. */
    memset(line + 14, 'f', 108 - 14 - 2);
    memcpy(line + 106, "\r\n", 2);
    parse_bad(line, 108, 1, "no CRLF within 107");
    parse_bad(line, 107, 1, "no CRLF within 107");
    parse_more(line, 106);
    parse_bad_str("PROXY UNKNOWNX\r\n", "unknown protocol");
    parse_bad_str("PROXY UNKNOWN x\ny\r\n", "LF without CR");
    parse_bad_str("PROXY UNKNOWN x\ry\r\n", "CR without LF");
}

static void test_v1_refused(void **state)
{
    (void)state;
    parse_bad_str("PROXY TCP4 01.2.3.4 1.2.3.4 1 2\r\n", "invalid address");
    parse_bad_str("PROXY TCP4 1.2.3.4 1.2.3 1 2\r\n", "invalid address");
    parse_bad_str("PROXY TCP4 1.2.3.256 1.2.3.4 1 2\r\n", "invalid address");
    parse_bad_str("PROXY TCP4 ::1 ::1 1 2\r\n", "invalid address");
    parse_bad_str("PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "invalid address");
    parse_bad_str("PROXY TCP6 ::1 fe80::1%lo 1 2\r\n", "invalid address");
    parse_bad_str("PROXY TCP6 1::2::3 ::1 1 2\r\n", "invalid address");
    parse_bad_str("PROXY TCP4 1.2.3.4 1.2.3.4 0443 2\r\n", "leading zero");
    parse_bad_str("PROXY TCP4 1.2.3.4 1.2.3.4 00 2\r\n", "leading zero");
    parse_bad_str("PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", "invalid port");
    parse_bad_str("PROXY TCP4 1.2.3.4 1.2.3.4 123456 2\r\n", "invalid port");
    parse_bad_str("PROXY TCP4 1.2.3.4 1.2.3.4 -1 2\r\n", "invalid port");
    parse_bad_str("PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n", "invalid port");
    parse_bad_str("PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n", "invalid port");
    parse_bad_str("PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n", "invalid address");
    parse_bad_str("PROXY  TCP4 1.2.3.4 1.2.3.4 1 2\r\n", "unknown protocol");
    parse_bad_str("PROXY tcp4 1.2.3.4 1.2.3.4 1 2\r\n", "unknown protocol");
    parse_bad_str("PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n", "unknown protocol");
    parse_bad_str("PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n", "unknown protocol");
    parse_bad_str("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n", "invalid port");
    parse_bad_str("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rX", "CR without LF");
    parse_bad_str("PROXYTCP4 1.2.3.4 1.2.3.4 1 2\r\n", "no space after PROXY");
    parse_bad_str("PROXY\r\n", "no space after PROXY");
    /* A bad byte is refused as soon as it arrives, not at the CRLF. */
    parse_bad_str("PROXY TCP4 1.2.3.x", "invalid address");
    parse_bad_str("PROXY TCP4 1234567890123456", "invalid address");
    parse_bad_str("PROXY TCP6 2001:db8::g", "invalid address");
    parse_bad_str("PROXY TCP4 1.2.3.4 1.2.3.4 123456", "invalid port");
    parse_bad_str("PROXY X", "unknown protocol");
}

static void test_not_proxy(void **state)
{
    (void)state;
    static const uint8_t hello[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03};
    parse_bad(hello, sizeof(hello), 0, "no PROXY protocol signature");
    parse_bad(hello, 1, 0, "no PROXY protocol signature");
    parse_bad("GET / HTTP/1.1\r\n", 16, 0, "no PROXY protocol signature");
    parse_bad("PROXZ", 5, 0, "no PROXY protocol signature");
    parse_bad("proxy TCP4", 10, 0, "no PROXY protocol signature");
    parse_bad("\r\n\r\n\0\r\nQUIX", 12, 0, "no PROXY protocol signature");
    parse_bad("\r\n\r\nX", 5, 0, "no PROXY protocol signature");
    parse_more("", 0);
    parse_more("PROX", 4);
    parse_more("\r\n\r\n\0\r\nQUIT", 11);
}

/* ---- version 2 ---- */

#define SIG 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A

static void test_v2_ipv4_tlvs(void **state)
{
    (void)state;
    static const uint8_t hdr[] = {
        SIG,  0x21, 0x11, 0x00, 12 + 9 + 5 + 3 + 29 + 7, /* PROXY, TCP over IPv4 */
        198,  51,   100,  7,    203,
        0,    113,  1,    0x10, 0x92,
        0x01, 0xBB, /* 4242 -> 443 */
        0x02, 0x00, 0x06, 'a',  '.',
        't',  'e',  's',  't',        /* AUTHORITY */
        0x01, 0x00, 0x02, 'h',  '2',  /* ALPN */
        0x20, 0x00, 29,               /* SSL */
        0x07, 0x00, 0x00, 0x00, 0x00, /* client 7, verify 0 */
        0x21, 0x00, 0x07, 'T',  'L',
        'S',  'v',  '1',  '.',  '3', /* VERSION */
        0x22, 0x00, 0x02, 'c',  'n', /* CN */
        0x24, 0x00, 0x06, 'S',  'H',
        'A',  '2',  '5',  '6', /* SIG_ALG: skipped */
        0x05, 0x00, 0x04, 'u',  'u',
        'i',  'd', /* UNIQUE_ID: skipped */
    };
    /* The length byte above counts addresses (12) and every TLV. */
    assert_int_equal(hdr[15], sizeof(hdr) - 16);
    uint8_t buf[sizeof(hdr) + 4];
    memcpy(buf, hdr, sizeof(hdr));
    memcpy(buf + sizeof(hdr), "\x16\x03\x01\x00", 4);
    struct tg_pp_hdr h;
    parse_ok(buf, sizeof(buf), sizeof(hdr), &h);
    assert_int_equal(h.version, 2);
    assert_false(h.local);
    assert_addr(&h.src, "198.51.100.7:4242");
    assert_addr(&h.dst, "203.0.113.1:443");
    assert_str(h.authority, "a.test");
    assert_str(h.alpn, "h2");
    assert_true(h.ssl.present);
    assert_int_equal(h.ssl.client, 7);
    assert_int_equal(h.ssl.verify, 0);
    assert_str(h.ssl.version, "TLSv1.3");
    assert_str(h.ssl.cn, "cn");
    assert_str(h.ssl.cipher, NULL);
    prefixes_need_more(hdr, sizeof(hdr));
}

static void test_v2_ipv6(void **state)
{
    (void)state;
    static const uint8_t hdr[] = {
        SIG,  0x21, 0x21, 0x00, 36 + 3, /* PROXY, TCP over IPv6 */
        0x20, 0x01, 0x0d, 0xb8, 0,      0,    0,    0,    0,    0,    0,    0, 0, 0,
        0,    0x07, 0,    0,    0,      0,    0,    0,    0,    0,    0,    0, 0, 0,
        0,    0,    0,    0x01, 0xFF,   0xFF, 0x00, 0x50, 0x04, 0x00, 0x00, /* ports 65535 -> 80, an
                                                                               empty NOOP */
    };
    struct tg_pp_hdr h;
    parse_ok(hdr, sizeof(hdr), sizeof(hdr), &h);
    assert_int_equal(h.version, 2);
    assert_int_equal(h.src.ss_family, AF_INET6);
    assert_addr(&h.src, "[2001:db8::7]:65535");
    assert_addr(&h.dst, "[::1]:80");
    assert_false(h.ssl.present);
    assert_null(h.authority.p);
    prefixes_need_more(hdr, sizeof(hdr));
}

static void test_v2_local_unspec(void **state)
{
    (void)state;
    /* LOCAL: the block (and the family, even one never valid) is skipped. */
    static const uint8_t local[] = {SIG, 0x20, 0x77, 0x00, 0x04, 1, 2, 3, 4};
    struct tg_pp_hdr h;
    parse_ok(local, sizeof(local), sizeof(local), &h);
    assert_int_equal(h.version, 2);
    assert_true(h.local);
    assert_int_equal(h.src.ss_family, AF_UNSPEC);
    static const uint8_t local0[] = {SIG, 0x20, 0x00, 0x00, 0x00, 0x16};
    parse_ok(local0, sizeof(local0), 16, &h);
    assert_true(h.local);
    /* PROXY with UNSPEC: no addresses, TLVs may follow. */
    static const uint8_t unspec[] = {SIG, 0x21, 0x00, 0x00, 0x04, 0x02, 0x00, 0x01, 'x'};
    parse_ok(unspec, sizeof(unspec), sizeof(unspec), &h);
    assert_false(h.local);
    assert_int_equal(h.src.ss_family, AF_UNSPEC);
    assert_str(h.authority, "x");
}

static void test_v2_bounds(void **state)
{
    (void)state;
    /* A length of exactly 2048 (IPv4 + one NOOP of padding) is accepted;
     * 2049 is refused as soon as the length field is in. */
    static uint8_t buf[16 + 2049];
    static const uint8_t head[] = {SIG, 0x21, 0x11, 0x08, 0x00};
    memset(buf, 0, sizeof(buf));
    memcpy(buf, head, sizeof(head));
    buf[16 + 12] = 0x04;
    buf[16 + 13] = (uint8_t)((2048 - 12 - 3) >> 8);
    buf[16 + 14] = (uint8_t)(2048 - 12 - 3);
    struct tg_pp_hdr h;
    parse_ok(buf, 16 + 2048, 16 + 2048, &h);
    parse_more(buf, 16 + 2047);
    assert_int_equal(TG_PP_HDR_MAX, 16 + 2048);
    buf[14] = 0x08;
    buf[15] = 0x01;
    parse_bad(buf, 16, 2, "length above 2048");
    buf[14] = 0xFF;
    buf[15] = 0xFF;
    parse_bad(buf, 16, 2, "length above 2048");
}

static void test_v2_refused(void **state)
{
    (void)state;
    const char *addr_why = "not TCP over IPv4 or IPv6";
    /* version, command, family */
    static const uint8_t v1cmd[] = {SIG, 0x11, 0x11, 0x00, 0x0C};
    parse_bad(v1cmd, 13, 2, "version is not 2");
    static const uint8_t v3[] = {SIG, 0x31};
    parse_bad(v3, sizeof(v3), 2, "version is not 2");
    static const uint8_t cmd2[] = {SIG, 0x22};
    parse_bad(cmd2, sizeof(cmd2), 2, "unknown command");
    static const uint8_t fams[] = {0x12, 0x22, 0x31, 0x32, 0x10, 0x20, 0x01, 0x13, 0x41, 0xFF};
    for (size_t i = 0; i < sizeof(fams); i++) {
        uint8_t b[] = {SIG, 0x21, fams[i]};
        parse_bad(b, sizeof(b), 2, addr_why);
    }
    /* lengths that do not hold the addresses */
    static const uint8_t short4[] = {SIG, 0x21, 0x11, 0x00, 0x0B, 1, 2,  3,
                                     4,   5,    6,    7,    8,    9, 10, 11};
    parse_bad(short4, sizeof(short4), 2, "shorter than the addresses");
    static const uint8_t short6[] = {SIG, 0x21, 0x21, 0x00, 0x0C, 1,  2,  3, 4,
                                     5,   6,    7,    8,    9,    10, 11, 12};
    parse_bad(short6, sizeof(short6), 2, "shorter than the addresses");
    /* TLVs */
    static const uint8_t trunc[] = {SIG, 0x21, 0x00, 0x00, 0x02, 0x02, 0x00};
    parse_bad(trunc, sizeof(trunc), 2, "truncated TLV");
    static const uint8_t over[] = {SIG, 0x21, 0x00, 0x00, 0x05, 0x02, 0x00, 0x03, 'a', 'b'};
    parse_bad(over, sizeof(over), 2, "TLV longer than the header");
    static const uint8_t dup[] = {SIG,  0x21, 0x00, 0x00, 0x08, 0x02, 0x00,
                                  0x01, 'a',  0x02, 0x00, 0x01, 'b'};
    parse_bad(dup, sizeof(dup), 2, "AUTHORITY given twice");
    static const uint8_t dupalpn[] = {SIG,  0x21, 0x00, 0x00, 0x06, 0x01,
                                      0x00, 0x00, 0x01, 0x00, 0x00};
    parse_bad(dupalpn, sizeof(dupalpn), 2, "ALPN given twice");
    static const uint8_t sslshort[] = {SIG, 0x21, 0x00, 0x00, 0x07, 0x20, 0x00, 0x04, 1, 0, 0, 0};
    parse_bad(sslshort, sizeof(sslshort), 2, "SSL TLV too short");
    static const uint8_t sslsub[] = {SIG, 0x21, 0x00, 0x00, 0x0A, 0x20, 0x00, 0x07,
                                     1,   0,    0,    0,    0,    0x21, 0x00};
    parse_bad(sslsub, sizeof(sslsub), 2, "truncated TLV");
    static const uint8_t ssldup[] = {SIG, 0x21, 0x00, 0x00, 0x0E, 0x20, 0x00, 0x0B, 1,   0,
                                     0,   0,    0,    0x23, 0x00, 0x00, 0x23, 0x00, 0x00};
    parse_bad(ssldup, sizeof(ssldup), 2, "SSL cipher given twice");
    static const uint8_t sslsub_over[] = {SIG, 0x21, 0x00, 0x00, 0x0B, 0x20, 0x00, 0x08,
                                          1,   0,    0,    0,    0,    0x21, 0x00, 0x09};
    parse_bad(sslsub_over, sizeof(sslsub_over), 2, "TLV longer than the header");
    static const uint8_t twossl[] = {SIG, 0x21, 0x00, 0x00, 0x10, 0x20, 0x00, 0x05, 1, 0, 0,
                                     0,   0,    0x20, 0x00, 0x05, 1,    0,    0,    0, 0};
    parse_bad(twossl, sizeof(twossl), 2, "SSL given twice");
}

/* ---- building ---- */

static struct tg_pp_hdr hdr4(int version)
{
    struct tg_pp_hdr h;
    memset(&h, 0, sizeof(h));
    h.version = version;
    h.src = in4("192.0.2.10", 51000);
    h.dst = in4("192.0.2.1", 8443);
    return h;
}

static void build_ok(const struct tg_pp_hdr *h, uint8_t *out, size_t cap, size_t *len)
{
    int rc = tg_pp_build(h, out, cap, len);
    if (rc != TG_OK)
        fail_msg("build: %s", tg_strerror(rc));
}

static void test_build_v1(void **state)
{
    (void)state;
    uint8_t out[TG_PP_HDR_MAX];
    size_t len;
    struct tg_pp_hdr h = hdr4(1);
    h.authority = (struct tg_pp_str){"ignored", 7}; /* v1 has no TLVs */
    build_ok(&h, out, sizeof(out), &len);
    static const char want4[] = "PROXY TCP4 192.0.2.10 192.0.2.1 51000 8443\r\n";
    assert_int_equal(len, strlen(want4));
    assert_memory_equal(out, want4, len);
    /* Exactly enough room, then one byte less. */
    build_ok(&h, out, len, &len);
    assert_int_equal(tg_pp_build(&h, out, len - 1, &len), TG_ELIMIT);

    h.src = in6("2001:db8::10", 1);
    h.dst = in6("::1", 443);
    build_ok(&h, out, sizeof(out), &len);
    static const char want6[] = "PROXY TCP6 2001:db8::10 ::1 1 443\r\n";
    assert_int_equal(len, strlen(want6));
    assert_memory_equal(out, want6, len);

    /* No pair of one family: UNKNOWN. */
    static const char unknown[] = "PROXY UNKNOWN\r\n";
    h.dst = in4("127.0.0.1", 1);
    build_ok(&h, out, sizeof(out), &len);
    assert_int_equal(len, strlen(unknown));
    assert_memory_equal(out, unknown, len);
    memset(&h.src, 0, sizeof(h.src));
    memset(&h.dst, 0, sizeof(h.dst));
    build_ok(&h, out, sizeof(out), &len);
    assert_memory_equal(out, unknown, len);
    h = hdr4(1);
    h.local = true;
    build_ok(&h, out, sizeof(out), &len);
    assert_memory_equal(out, unknown, len);

    /* The longest line inet_ntop can make still parses. */
    h.local = false;
    h.src = in6("::ffff:255.255.255.255", 65535);
    h.dst = in6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535);
    build_ok(&h, out, sizeof(out), &len);
    struct tg_pp_hdr back;
    parse_ok(out, len, len, &back);
    assert_addr(&back.src, "[::ffff:255.255.255.255]:65535");
}

static void test_build_v2_bytes(void **state)
{
    (void)state;
    uint8_t out[TG_PP_HDR_MAX];
    size_t len;
    struct tg_pp_hdr h = hdr4(2);
    h.authority = (struct tg_pp_str){"a.test", 6};
    h.alpn = (struct tg_pp_str){"h2", 2};
    h.ssl.present = true;
    h.ssl.client = 0x01;
    h.ssl.verify = 1;
    h.ssl.version = (struct tg_pp_str){"TLSv1.3", 7};
    h.ssl.cipher = (struct tg_pp_str){"TLS_AES_128_GCM_SHA256", 22};
    build_ok(&h, out, sizeof(out), &len);
    static const uint8_t want[] = {SIG,  0x21, 0x11, 0x00, 12 + 9 + 5 + 3 + 5 + 10 + 25,
                                   192,  0,    2,    10,   192,
                                   0,    2,    1,    0xC7, 0x38,
                                   0x20, 0xFB, /* 51000 -> 8443 */
                                   0x02, 0x00, 0x06, 'a',  '.',
                                   't',  'e',  's',  't',  0x01,
                                   0x00, 0x02, 'h',  '2',  0x20,
                                   0x00, 40,   0x01, 0x00, 0x00,
                                   0x00, 0x01, 0x21, 0x00, 0x07,
                                   'T',  'L',  'S',  'v',  '1',
                                   '.',  '3',  0x23, 0x00, 22,
                                   'T',  'L',  'S',  '_',  'A',
                                   'E',  'S',  '_',  '1',  '2',
                                   '8',  '_',  'G',  'C',  'M',
                                   '_',  'S',  'H',  'A',  '2',
                                   '5',  '6'};
    assert_int_equal(want[15], sizeof(want) - 16);
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(out, want, len);
    assert_int_equal(tg_pp_build(&h, out, len - 1, &len), TG_ELIMIT);

    /* LOCAL: no address, no TLV. */
    h.local = true;
    build_ok(&h, out, sizeof(out), &len);
    static const uint8_t local[] = {SIG, 0x20, 0x00, 0x00, 0x00};
    assert_int_equal(len, sizeof(local));
    assert_memory_equal(out, local, len);

    /* Mixed families: PROXY with UNSPEC, TLVs kept. */
    h = hdr4(2);
    h.dst = in6("::1", 1);
    h.authority = (struct tg_pp_str){"x", 1};
    build_ok(&h, out, sizeof(out), &len);
    static const uint8_t unspec[] = {SIG, 0x21, 0x00, 0x00, 0x04, 0x02, 0x00, 0x01, 'x'};
    assert_int_equal(len, sizeof(unspec));
    assert_memory_equal(out, unspec, len);

    /* IPv6 addresses. */
    h = hdr4(2);
    h.src = in6("2001:db8::10", 1);
    h.dst = in6("::1", 443);
    build_ok(&h, out, sizeof(out), &len);
    assert_int_equal(len, 16 + 36);
    assert_int_equal(out[13], 0x21);
    assert_int_equal(out[16 + 15], 0x10);
    assert_int_equal(out[16 + 31], 0x01);
    assert_int_equal(out[16 + 33], 1);
    assert_int_equal(out[16 + 35], 0xBB);
}

static void test_build_v2_round_trip(void **state)
{
    (void)state;
    uint8_t out[TG_PP_HDR_MAX];
    size_t len;
    static char big[2048];
    memset(big, 'n', sizeof(big));
    struct tg_pp_hdr h = hdr4(2);
    h.src = in6("2001:db8::10", 1234);
    h.dst = in6("2001:db8::1", 443);
    h.authority = (struct tg_pp_str){"www.example.org", 15};
    h.alpn = (struct tg_pp_str){"http/1.1", 8};
    h.ssl = (struct tg_pp_ssl){
        true, 0x07, 0, {"TLSv1.2", 7}, {"ECDHE-RSA-AES128-GCM-SHA256", 27}, {"client.example", 14}};
    build_ok(&h, out, sizeof(out), &len);
    struct tg_pp_hdr b;
    parse_ok(out, len, len, &b);
    assert_int_equal(b.version, 2);
    assert_memory_equal(&b.src, &h.src, sizeof(h.src));
    assert_memory_equal(&b.dst, &h.dst, sizeof(h.dst));
    assert_str(b.authority, "www.example.org");
    assert_str(b.alpn, "http/1.1");
    assert_true(b.ssl.present);
    assert_int_equal(b.ssl.client, 0x07);
    assert_int_equal(b.ssl.verify, 0);
    assert_str(b.ssl.version, "TLSv1.2");
    assert_str(b.ssl.cipher, "ECDHE-RSA-AES128-GCM-SHA256");
    assert_str(b.ssl.cn, "client.example");

    /* Empty values are present values. */
    h.alpn = (struct tg_pp_str){"", 0};
    build_ok(&h, out, sizeof(out), &len);
    parse_ok(out, len, len, &b);
    assert_non_null(b.alpn.p);
    assert_int_equal(b.alpn.len, 0);

    /* The largest header: length 2048 exactly; one byte more is refused. */
    h = hdr4(2);
    h.authority = (struct tg_pp_str){big, 2048 - 12 - 3};
    build_ok(&h, out, sizeof(out), &len);
    assert_int_equal(len, TG_PP_HDR_MAX);
    parse_ok(out, len, len, &b);
    assert_int_equal(b.authority.len, 2048 - 15);
    h.authority.len++;
    assert_int_equal(tg_pp_build(&h, out, sizeof(out), &len), TG_EINVAL);
    h.authority.len = SIZE_MAX - 1; /* no overflow in the size sum */
    assert_int_equal(tg_pp_build(&h, out, sizeof(out), &len), TG_EINVAL);

    h = hdr4(3);
    assert_int_equal(tg_pp_build(&h, out, sizeof(out), &len), TG_EINVAL);
    h.version = 0;
    assert_int_equal(tg_pp_build(&h, out, sizeof(out), &len), TG_EINVAL);
}

static void test_addr_text(void **state)
{
    (void)state;
    char buf[TG_PP_ADDR_TEXT];
    struct sockaddr_storage ss = in4("10.1.2.3", 80);
    assert_string_equal(tg_pp_addr_text(&ss, buf, sizeof(buf)), "10.1.2.3:80");
    ss = in6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    assert_string_equal(tg_pp_addr_text(&ss, buf, sizeof(buf)),
                        "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
    memset(&ss, 0, sizeof(ss));
    assert_string_equal(tg_pp_addr_text(&ss, buf, sizeof(buf)), "-");
    ss = in4("10.1.2.3", 80);
    assert_string_equal(tg_pp_addr_text(&ss, buf, 5), "10.1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),
        cmocka_unit_test(test_v1_tcp6),
        cmocka_unit_test(test_v1_unknown),
        cmocka_unit_test(test_v1_refused),
        cmocka_unit_test(test_not_proxy),
        cmocka_unit_test(test_v2_ipv4_tlvs),
        cmocka_unit_test(test_v2_ipv6),
        cmocka_unit_test(test_v2_local_unspec),
        cmocka_unit_test(test_v2_bounds),
        cmocka_unit_test(test_v2_refused),
        cmocka_unit_test(test_build_v1),
        cmocka_unit_test(test_build_v2_bytes),
        cmocka_unit_test(test_build_v2_round_trip),
        cmocka_unit_test(test_addr_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
