/*
 * tg_ksproto: the key server protocol, version 1 — the bytes a gateway's
 * `keyserver` key provider and `tlsgate keyserver` exchange over a Unix
 * stream socket. docs/KEYSERVER-PROTOCOL.md is the specification; this
 * module is its only implementation, shared by both sides.
 *
 * Every message is one frame:
 *
 *   u32 length    bytes that follow this field (8 + body), big-endian
 *   u8  version   1
 *   u8  type      enum tg_ksp_type
 *   u16 flags     0 in version 1
 *   u32 id        request id (0 for HELLO, HELLO_REPLY and connection ERRORs)
 *   body          type-specific, at most TG_KSP_BODY_MAX bytes
 *
 * All integers are big-endian. Requests are pipelined: a client may send many
 * requests before any reply, the server answers each once, in any order, with
 * the request's id.
 *
 * The functions work on byte buffers only (no sockets, no allocation) and
 * never read outside what they are given: tg_ksp_frame_parse splits a stream
 * into frames, tg_ksp_decode checks and copies one frame's body into struct
 * tg_ksp_msg, tg_ksp_encode writes one. Input from the peer is never trusted:
 * every malformed input is TG_EPROTO with a static reason string.
 *
 * Threading: pure functions; any thread.
 */
#ifndef TG_KSPROTO_H
#define TG_KSPROTO_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tg_err.h"

#define TG_KSP_VERSION   1  /* the highest version this build speaks */
#define TG_KSP_HDR_LEN   12 /* length + version + type + flags + id */
#define TG_KSP_BODY_MAX  1024
#define TG_KSP_FRAME_MAX (TG_KSP_HDR_LEN + TG_KSP_BODY_MAX)
#define TG_KSP_KEY_ID    32  /* SHA-256 of the public key (SubjectPublicKeyInfo, DER) */
#define TG_KSP_DIGEST    64  /* longest digest a SIGN carries (SHA-512) */
#define TG_KSP_SIG_MAX   512 /* longest signature a SIGN_REPLY carries (RSA-4096) */
#define TG_KSP_TEXT_MAX  64  /* HELLO names and ERROR messages: printable ASCII */
/* Largest max_in_flight either side may announce. */
#define TG_KSP_INFLIGHT_MAX 65535

/* X(id, value, label) */
#define TG_KSP_TYPES(X)                                                                            \
    X(HELLO, 1, "hello")                                                                           \
    X(HELLO_REPLY, 2, "hello_reply")                                                               \
    X(LOOKUP, 3, "lookup")                                                                         \
    X(LOOKUP_REPLY, 4, "lookup_reply")                                                             \
    X(SIGN, 5, "sign")                                                                             \
    X(SIGN_REPLY, 6, "sign_reply")                                                                 \
    X(ERROR, 7, "error")

enum tg_ksp_type {
#define TG_KSP_TYPE_ENUM(id, v, label) TG_KSP_##id = v,
    TG_KSP_TYPES(TG_KSP_TYPE_ENUM)
#undef TG_KSP_TYPE_ENUM
};
#define TG_KSP_TYPE_MAX 7

/* X(id, value, label): the status of a reply or an ERROR. */
#define TG_KSP_STATUSES(X)                                                                         \
    X(OK, 0, "ok")                                                                                 \
    X(UNKNOWN_KEY, 1, "unknown_key")                                                               \
    X(BAD_REQUEST, 2, "bad_request")                                                               \
    X(BUSY, 3, "busy")                                                                             \
    X(FAILED, 4, "failed")                                                                         \
    X(SHUTTING_DOWN, 5, "shutting_down")                                                           \
    X(NOT_ALLOWED, 6, "not_allowed")                                                               \
    X(PROTOCOL, 7, "protocol_error")                                                               \
    X(VERSION, 8, "version")                                                                       \
    X(LIMIT, 9, "limit")

enum tg_ksp_status {
#define TG_KSP_STATUS_ENUM(id, v, label) TG_KSP_ST_##id = v,
    TG_KSP_STATUSES(TG_KSP_STATUS_ENUM)
#undef TG_KSP_STATUS_ENUM
};
#define TG_KSP_STATUS_COUNT 10

/* SIGN: the signature scheme. */
enum tg_ksp_alg { TG_KSP_ALG_RSA_PKCS1 = 1, TG_KSP_ALG_RSA_PSS = 2, TG_KSP_ALG_ECDSA = 3 };
/* SIGN: digests (0: none, ECDSA only). */
enum tg_ksp_md {
    TG_KSP_MD_NONE = 0,
    TG_KSP_MD_SHA1 = 1,
    TG_KSP_MD_SHA224 = 2,
    TG_KSP_MD_SHA256 = 3,
    TG_KSP_MD_SHA384 = 4,
    TG_KSP_MD_SHA512 = 5
};
#define TG_KSP_MD_MAX 5
/* LOOKUP_REPLY: the key's type. */
enum tg_ksp_key_type { TG_KSP_KEY_RSA = 1, TG_KSP_KEY_EC = 2 };

/* One frame as it stands in the input buffer (body points into it). */
struct tg_ksp_frame {
    uint8_t version;
    uint8_t type;
    uint16_t flags;
    uint32_t id;
    const uint8_t *body;
    size_t bodylen;
};

/*
 * One message, decoded. Which fields mean something depends on type:
 *   HELLO         version (in the header: the highest the client speaks),
 *                 max_in_flight (requests it may pipeline), text (its name)
 *   HELLO_REPLY   version (the one both use from now on), status (OK,
 *                 VERSION, NOT_ALLOWED, LIMIT), max_in_flight (granted),
 *                 text (the server's name)
 *   LOOKUP        id, key_id
 *   LOOKUP_REPLY  id, status (OK, UNKNOWN_KEY), key_type, key_bits
 *   SIGN          id, key_id, alg, md, mgf1, saltlen (PSS), hint (the
 *                 sender's handshakes in flight), data = the digest (1..64)
 *   SIGN_REPLY    id, status, data = the signature (OK only; else empty)
 *   ERROR         id (0: about the connection), status, text (may be empty)
 */
struct tg_ksp_msg {
    enum tg_ksp_type type;
    uint8_t version;
    uint32_t id;
    uint8_t status;
    uint32_t max_in_flight;
    char text[TG_KSP_TEXT_MAX + 1]; /* NUL-terminated */
    uint8_t key_id[TG_KSP_KEY_ID];
    uint8_t key_type;
    uint16_t key_bits;
    uint8_t alg, md, mgf1;
    uint16_t saltlen;
    uint16_t hint;
    uint8_t data[TG_KSP_SIG_MAX];
    size_t datalen;
};

/*
 * Split the next frame off buf[0..len). TG_OK: *f describes it (its body
 * points into buf) and *used is its size. TG_EAGAIN: a frame has started
 * but is not complete (read more; *used = 0). TG_EPROTO: the bytes cannot
 * start a frame (length out of range, version 0, unknown type, flags set)
 * and *why says which; the stream cannot be resynchronised. Only the
 * header is checked here; bodies by tg_ksp_decode.
 */
int tg_ksp_frame_parse(const uint8_t *buf, size_t len, struct tg_ksp_frame *f, size_t *used,
                       const char **why) TG_MUST_CHECK;

/*
 * Check a frame's body against its type and copy it into *m (zeroed
 * first). A version other than TG_KSP_VERSION is refused except in a HELLO
 * (whose body every version starts the same way: bytes after the version 1
 * fields are ignored there). TG_OK or TG_EPROTO + *why.
 */
int tg_ksp_decode(const struct tg_ksp_frame *f, struct tg_ksp_msg *m,
                  const char **why) TG_MUST_CHECK;

/*
 * Encode m (m->version in the header; 0 means TG_KSP_VERSION) into out.
 * Returns the frame's size, or 0 when m is not valid to send (a field out of
 * range, text not printable) or does not fit in cap. TG_KSP_FRAME_MAX
 * bytes always fit any valid message.
 */
size_t tg_ksp_encode(const struct tg_ksp_msg *m, uint8_t *out, size_t cap);

/* Labels for logs and metrics ("sign", "unknown_key"); "unknown" if out of range. */
const char *tg_ksp_type_name(unsigned type);
const char *tg_ksp_status_name(unsigned status);

/* The digest code of an EVP_MD (TG_KSP_MD_NONE when md is NULL), or -1 if
 * the protocol has none for it; and the size in bytes a code's digest has
 * (0 for NONE or an unknown code). */
int tg_ksp_md_code(const EVP_MD *md);
size_t tg_ksp_md_size(unsigned code);
/* OpenSSL's name of a digest code ("SHA256"), NULL for NONE or unknown. */
const char *tg_ksp_md_name(unsigned code);

/* The key id of a public key (or a key pair: only the public half is
 * read): SHA-256 of its DER SubjectPublicKeyInfo. TG_OK or TG_ECRYPTO. */
int tg_ksp_key_id(EVP_PKEY *pub, uint8_t id[TG_KSP_KEY_ID]) TG_MUST_CHECK;
/* Lower-case hex of the first n bytes of id (n <= 32) into out (2n + 1). */
void tg_ksp_key_id_hex(const uint8_t id[TG_KSP_KEY_ID], size_t n, char *out);

/* Whether s (len bytes) is printable ASCII, as HELLO names and ERROR texts
 * must be. */
bool tg_ksp_text_ok(const char *s, size_t len);

#endif
