/*
 * libFuzzer target: the key server protocol (src/ksproto/tg_ksproto.h), the
 * parser a key server runs on every byte a gateway sends and a gateway on
 * every byte its key server sends. Besides "no crash, no sanitizer report"
 * it checks the contract, so a logic slip aborts too:
 *
 * The input as a byte stream, split into frames the way a connection reads
 * them (the first byte picks a chunk size, so frames arrive in pieces):
 *   - the frames found and where the stream fails are the same whatever the
 *     chunk size; TG_EAGAIN only for a prefix shorter than its frame;
 *   - a frame is 12..TG_KSP_FRAME_MAX bytes, its body inside it;
 *   - a version 1 frame that decodes re-encodes to exactly its bytes (one
 *     encoding per message), and a refusal always has a reason.
 * The input as fields (structured): whatever the encoder accepts decodes
 * back to the same fields.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ksproto/tg_ksproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* What one pass over the stream found. */
struct pass {
    size_t frames;
    size_t consumed; /* bytes of complete frames */
    int end;         /* TG_EAGAIN (ran out) or TG_EPROTO */
};

static void check_frame(const uint8_t *p, const struct tg_ksp_frame *f, size_t used)
{
    CHECK(used >= TG_KSP_HDR_LEN && used <= TG_KSP_FRAME_MAX);
    CHECK(f->body == p + TG_KSP_HDR_LEN && f->bodylen == used - TG_KSP_HDR_LEN);
    CHECK(f->version != 0 && f->type >= 1 && f->type <= TG_KSP_TYPE_MAX && f->flags == 0);
    struct tg_ksp_msg m;
    const char *why = NULL;
    int rc = tg_ksp_decode(f, &m, &why);
    CHECK(rc == TG_OK || rc == TG_EPROTO);
    if (rc != TG_OK) {
        CHECK(why != NULL);
        return;
    }
    CHECK(m.datalen <= sizeof(m.data));
    CHECK(strlen(m.text) <= TG_KSP_TEXT_MAX && tg_ksp_text_ok(m.text, strlen(m.text)));
    if (f->version != TG_KSP_VERSION)
        return; /* a later version's HELLO: its extra bytes are not re-encoded */
    static uint8_t again[TG_KSP_FRAME_MAX];
    size_t n = tg_ksp_encode(&m, again, sizeof(again));
    CHECK(n == used && memcmp(again, p, used) == 0);
}

/* Feed the stream in chunks of `chunk` bytes into a bounded buffer, as a
 * connection does: append what arrived, take every complete frame, keep
 * the rest. */
static struct pass run(const uint8_t *data, size_t size, size_t chunk)
{
    static uint8_t buf[2 * TG_KSP_FRAME_MAX];
    struct pass r = {0, 0, TG_EAGAIN};
    size_t have = 0, off = 0;
    while (off < size || have > 0) {
        size_t n = size - off < chunk ? size - off : chunk;
        if (n > sizeof(buf) - have)
            n = sizeof(buf) - have;
        memcpy(buf + have, data + off, n);
        have += n;
        off += n;
        size_t start = 0;
        for (;;) {
            struct tg_ksp_frame f;
            size_t used = 99;
            const char *why = NULL;
            int rc = tg_ksp_frame_parse(buf + start, have - start, &f, &used, &why);
            if (rc == TG_EAGAIN) {
                CHECK(used == 0);
                /* A frame that needs more never needs more than the
                 * largest frame: the buffer can always hold it. */
                CHECK(have - start < TG_KSP_FRAME_MAX);
                break;
            }
            if (rc == TG_EPROTO) {
                CHECK(why != NULL);
                r.end = TG_EPROTO;
                return r;
            }
            CHECK(rc == TG_OK);
            check_frame(buf + start, &f, used);
            start += used;
            r.frames++;
            r.consumed += used;
        }
        memmove(buf, buf + start, have - start);
        have -= start;
        if (n == 0)
            break; /* no more input and no complete frame left */
    }
    return r;
}

/* Structured: the input as the fields of a message. */
static void fuzz_fields(const uint8_t *data, size_t size)
{
    struct tg_ksp_msg m;
    memset(&m, 0, sizeof(m));
    if (size < 48)
        return;
    m.type = (enum tg_ksp_type)(data[0] % 9);
    m.id = (uint32_t)data[1] << 8 | data[2];
    m.status = data[3] % 12;
    m.max_in_flight = (uint32_t)data[4] << 16 | (uint32_t)data[5] << 8 | data[6];
    m.key_type = data[7] % 4;
    m.key_bits = (uint16_t)(data[8] << 8 | data[9]);
    m.alg = data[10] % 5;
    m.md = data[11] % 7;
    m.mgf1 = data[12] % 7;
    m.saltlen = (uint16_t)(data[13] << 8 | data[14]);
    m.hint = (uint16_t)(data[15] << 8 | data[16]);
    size_t tl = data[17] % (TG_KSP_TEXT_MAX + 2);
    memcpy(m.key_id, data + 18, 30);
    size_t rest = size - 48;
    if (tl > rest)
        tl = rest;
    if (tl > TG_KSP_TEXT_MAX)
        tl = TG_KSP_TEXT_MAX;
    memcpy(m.text, data + 48, tl);
    m.text[tl] = '\0';
    rest -= tl;
    m.datalen = rest < sizeof(m.data) ? rest : sizeof(m.data);
    memcpy(m.data, data + 48 + tl, m.datalen);
    static uint8_t out[TG_KSP_FRAME_MAX];
    size_t n = tg_ksp_encode(&m, out, sizeof(out));
    if (n == 0)
        return;
    struct tg_ksp_frame f;
    size_t used;
    const char *why;
    CHECK(tg_ksp_frame_parse(out, n, &f, &used, &why) == TG_OK && used == n);
    struct tg_ksp_msg back;
    CHECK(tg_ksp_decode(&f, &back, &why) == TG_OK);
    CHECK(back.type == m.type && back.id == m.id && back.version == TG_KSP_VERSION);
    CHECK(strcmp(back.text, m.text) == 0 ||
          (m.type != TG_KSP_HELLO && m.type != TG_KSP_HELLO_REPLY && m.type != TG_KSP_ERROR));
    switch (m.type) {
    case TG_KSP_SIGN:
        CHECK(back.alg == m.alg && back.md == m.md && back.mgf1 == m.mgf1);
        CHECK(back.saltlen == m.saltlen && back.hint == m.hint && back.datalen == m.datalen);
        CHECK(memcmp(back.key_id, m.key_id, TG_KSP_KEY_ID) == 0);
        CHECK(memcmp(back.data, m.data, m.datalen) == 0);
        break;
    case TG_KSP_SIGN_REPLY:
        CHECK(back.status == m.status);
        CHECK(back.datalen == (m.status == TG_KSP_ST_OK ? m.datalen : 0));
        CHECK(memcmp(back.data, m.data, back.datalen) == 0);
        break;
    case TG_KSP_HELLO:
    case TG_KSP_HELLO_REPLY:
        CHECK(back.max_in_flight == m.max_in_flight);
        break;
    case TG_KSP_LOOKUP:
        CHECK(memcmp(back.key_id, m.key_id, TG_KSP_KEY_ID) == 0);
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] == 0xfe) {
        fuzz_fields(data + 1, size - 1);
        return 0;
    }
    size_t chunk = 1 + data[0] % 32;
    if (data[0] >= 0xc0)
        chunk = TG_KSP_FRAME_MAX; /* whole frames at once */
    struct pass whole = run(data + 1, size - 1, size);
    struct pass split = run(data + 1, size - 1, chunk);
    CHECK(whole.frames == split.frames && whole.consumed == split.consumed);
    CHECK(whole.end == split.end);
    return 0;
}
