/*
 * tg_proxyproto: the PROXY protocol, versions 1 (a text line) and 2 (binary,
 * with TLVs), as pure functions over byte buffers: a strict parser for the
 * header a load balancer puts in front of a connection, and a builder for the
 * header tlsgate sends its upstream.
 *
 * No I/O, no allocation, no global state: any thread. Reading a header off a
 * socket is tg_ppio's job. Fuzzed by fuzz/fuzz_proxyproto.c.
 *
 * Errors: TG_OK, TG_EAGAIN (parse: the bytes so far are a valid beginning,
 * more are needed), TG_EPROTO (parse: not a valid header; *why says what in
 * a static English phrase), TG_EINVAL / TG_ELIMIT (build: a header that
 * cannot be written / does not fit the caller's buffer).
 */
#ifndef TG_PROXYPROTO_H
#define TG_PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/tg_err.h"

/* A version 1 line, CRLF included, is at most this long (the specification's
 * worst case, "PROXY UNKNOWN" with two full IPv6 addresses). */
#define TG_PP_V1_MAX 107
/* The fixed part of a version 2 header: signature, version and command,
 * family and protocol, length. */
#define TG_PP_V2_FIXED 16
/* The largest version 2 length field accepted (addresses + TLVs). The field
 * allows 65535; real senders stay near the 536 bytes the specification
 * advises, so a longer one is refused rather than waited for. */
#define TG_PP_V2_MAX_LEN 2048
/* No header accepted or built is longer. */
#define TG_PP_HDR_MAX (TG_PP_V2_FIXED + TG_PP_V2_MAX_LEN)

/* Version 2 TLV types and SSL sub-types (specification, section 2.2). */
#define TG_PP2_TYPE_ALPN           0x01
#define TG_PP2_TYPE_AUTHORITY      0x02
#define TG_PP2_TYPE_CRC32C         0x03
#define TG_PP2_TYPE_NOOP           0x04
#define TG_PP2_TYPE_UNIQUE_ID      0x05
#define TG_PP2_TYPE_SSL            0x20
#define TG_PP2_SUBTYPE_SSL_VERSION 0x21
#define TG_PP2_SUBTYPE_SSL_CN      0x22
#define TG_PP2_SUBTYPE_SSL_CIPHER  0x23
#define TG_PP2_SUBTYPE_SSL_SIG_ALG 0x24
#define TG_PP2_SUBTYPE_SSL_KEY_ALG 0x25
#define TG_PP2_TYPE_NETNS          0x30
/* PP2_TYPE_SSL's client field. */
#define TG_PP2_CLIENT_SSL       0x01
#define TG_PP2_CLIENT_CERT_CONN 0x02
#define TG_PP2_CLIENT_CERT_SESS 0x04

/* Bytes inside some buffer, not NUL-terminated; p == NULL: absent. A parsed
 * header's strings point into the parsed buffer and live as long as it. */
struct tg_pp_str {
    const char *p;
    size_t len;
};

/* PP2_TYPE_SSL: how the client connected to the sender. */
struct tg_pp_ssl {
    bool present;
    uint8_t client;           /* TG_PP2_CLIENT_* */
    uint32_t verify;          /* 0: a client certificate was presented and verified */
    struct tg_pp_str version; /* PP2_SUBTYPE_SSL_VERSION, "TLSv1.3" */
    struct tg_pp_str cipher;  /* PP2_SUBTYPE_SSL_CIPHER, OpenSSL's name */
    struct tg_pp_str cn;      /* PP2_SUBTYPE_SSL_CN: the client certificate's subject CN */
};

struct tg_pp_hdr {
    int version; /* 1 or 2; after a failed parse: what the signature said, 0 if none */
    bool local;  /* version 2 LOCAL command: the sender's own connection (a health check) */
    /* The original client (src) and the address it connected to (dst), both
     * AF_INET or both AF_INET6 (family, address and port set, the rest zero),
     * or both AF_UNSPEC: the header carries no address (v1 UNKNOWN, v2 LOCAL
     * or UNSPEC) and the connection's own addresses stand. */
    struct sockaddr_storage src, dst;
    /* Version 2 TLVs (ignored by the v1 builder, never set by the v1 parser). */
    struct tg_pp_str authority; /* PP2_TYPE_AUTHORITY: the SNI host name */
    struct tg_pp_str alpn;      /* PP2_TYPE_ALPN: the negotiated protocol, e.g. "h2" */
    struct tg_pp_ssl ssl;       /* PP2_TYPE_SSL */
};

/*
 * Parse the header at the start of buf[0..len). Strict: the exact signature,
 * a v1 line of at most TG_PP_V1_MAX bytes with canonical addresses and ports
 * and a CRLF, a v2 version of 2, a LOCAL or PROXY command, family TCP over
 * IPv4, TCP over IPv6 or UNSPEC (UDP and UNIX are refused), a length of at
 * most TG_PP_V2_MAX_LEN that holds the addresses, and well-formed TLVs (no
 * duplicate ALPN, AUTHORITY or SSL; unknown types are skipped). A LOCAL
 * command's address block is skipped unread, as the specification says.
 *
 * TG_OK: *out is the header and *used its length (<= len); the bytes after
 * it are not looked at. TG_EAGAIN: buf is a valid beginning of a header that
 * does not end yet (never once len reaches TG_PP_HDR_MAX). TG_EPROTO: not a
 * header; *why says why and out->version what the signature said (0: no
 * PROXY signature at all, e.g. a TLS ClientHello). *out is always written.
 */
int tg_pp_parse(const void *buf, size_t len, struct tg_pp_hdr *out, size_t *used,
                const char **why) TG_MUST_CHECK;

/*
 * Write the header h describes into out[0..cap): h->version 1 or 2.
 * Version 1: "PROXY TCP4|TCP6 src dst sport dport\r\n", or "PROXY UNKNOWN\r\n"
 * when the addresses are AF_UNSPEC, of different families, or h->local.
 * Version 2: h->local gives a LOCAL command with no address and no TLV; else
 * a PROXY command, the addresses (UNSPEC when they are not both IPv4 or both
 * IPv6), then the TLVs AUTHORITY, ALPN and SSL (with VERSION, CIPHER and CN
 * sub-TLVs) for those present (p != NULL; ssl.present).
 * TG_OK with *len; TG_EINVAL for a bad version or a header longer than
 * TG_PP_HDR_MAX; TG_ELIMIT when cap is too small (out is then unspecified).
 */
int tg_pp_build(const struct tg_pp_hdr *h, void *out, size_t cap, size_t *len) TG_MUST_CHECK;

/* "1.2.3.4:5678", "[2001:db8::1]:443", or "-" for anything else, into
 * buf[0..buflen) (truncated, always NUL-terminated when buflen > 0). For
 * logs. TG_PP_ADDR_TEXT bytes are always enough. Returns buf. */
#define TG_PP_ADDR_TEXT 56
const char *tg_pp_addr_text(const struct sockaddr_storage *ss, char *buf, size_t buflen);

#endif
