/*
 * The key server protocol (src/ksproto/tg_ksproto.c): the exact bytes of
 * every message as docs/KEYSERVER-PROTOCOL.md specifies them (written out
 * here byte by byte, with the numbers as plain numbers, so the test does not
 * borrow the code's constants), round trips, stream splitting (pipelined
 * frames, every prefix of a frame), and the refusals: bad lengths, versions,
 * types, flags, ids, parameters, texts.
 */
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <string.h>

#include "ksproto/tg_ksproto.h"
#include "tg_test_util.h"

/* Encode m, parse and decode the result: the frame is `size` bytes and the
 * decoded message is returned in *back. */
static size_t round_trip(const struct tg_ksp_msg *m, struct tg_ksp_msg *back, uint8_t *buf)
{
    size_t n = tg_ksp_encode(m, buf, TG_KSP_FRAME_MAX);
    assert_true(n >= TG_KSP_HDR_LEN);
    struct tg_ksp_frame f;
    size_t used = 0;
    const char *why = NULL;
    assert_int_equal(tg_ksp_frame_parse(buf, n, &f, &used, &why), TG_OK);
    assert_int_equal(used, n);
    assert_int_equal(tg_ksp_decode(&f, back, &why), TG_OK);
    return n;
}

static int decode_bytes(const uint8_t *buf, size_t len, struct tg_ksp_msg *m, const char **why)
{
    struct tg_ksp_frame f;
    size_t used = 0;
    int rc = tg_ksp_frame_parse(buf, len, &f, &used, why);
    if (rc != TG_OK)
        return rc;
    assert_int_equal(used, len);
    return tg_ksp_decode(&f, m, why);
}

static void test_hello_bytes(void **state)
{
    (void)state;
    struct tg_ksp_msg m = {.type = TG_KSP_HELLO, .max_in_flight = 300};
    snprintf(m.text, sizeof(m.text), "gw");
    uint8_t buf[TG_KSP_FRAME_MAX];
    size_t n = tg_ksp_encode(&m, buf, sizeof(buf));
    static const uint8_t want[] = {0, 0,   0,  15, 1, 1, 0, 0, 0, 0, 0, 0, /* header */
                                   0, 0,   1,  44,                         /* 300 */
                                   2, 'g', 'w'};
    assert_int_equal(n, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
    struct tg_ksp_msg back;
    const char *why;
    assert_int_equal(decode_bytes(want, sizeof(want), &back, &why), TG_OK);
    assert_int_equal(back.type, TG_KSP_HELLO);
    assert_int_equal(back.version, 1);
    assert_int_equal(back.max_in_flight, 300);
    assert_string_equal(back.text, "gw");
}

static void test_hello_future_version(void **state)
{
    (void)state;
    /* A version 3 client's HELLO with two appended bytes: a version 1
     * server reads the version 1 fields and the version. */
    static const uint8_t v3[] = {0, 0, 0, 16, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 1, 'x', 9, 9};
    struct tg_ksp_msg m;
    const char *why;
    assert_int_equal(decode_bytes(v3, sizeof(v3), &m, &why), TG_OK);
    assert_int_equal(m.version, 3);
    assert_int_equal(m.max_in_flight, 8);
    assert_string_equal(m.text, "x");
    /* The same trailing bytes in version 1 are an error. */
    uint8_t v1[sizeof(v3)];
    memcpy(v1, v3, sizeof(v3));
    v1[4] = 1;
    assert_int_equal(decode_bytes(v1, sizeof(v1), &m, &why), TG_EPROTO);
    assert_non_null(why);
    /* Any other message in another version is refused. */
    static const uint8_t lookup_v2[] = {0, 0, 0, 8, 2, 3, 0, 0, 0, 0, 0, 1};
    assert_int_equal(decode_bytes(lookup_v2, sizeof(lookup_v2), &m, &why), TG_EPROTO);
}

static void test_sign_bytes(void **state)
{
    (void)state;
    struct tg_ksp_msg m = {.type = TG_KSP_SIGN,
                           .id = 0x01020304,
                           .alg = TG_KSP_ALG_RSA_PSS,
                           .md = TG_KSP_MD_SHA256,
                           .mgf1 = TG_KSP_MD_SHA256,
                           .saltlen = 32,
                           .hint = 7,
                           .datalen = 32};
    for (int i = 0; i < 32; i++) {
        m.key_id[i] = (uint8_t)(0xa0 + i);
        m.data[i] = (uint8_t)i;
    }
    uint8_t buf[TG_KSP_FRAME_MAX];
    size_t n = tg_ksp_encode(&m, buf, sizeof(buf));
    assert_int_equal(n, 12 + 40 + 32);
    static const uint8_t head[] = {0, 0, 0, 80, 1, 5, 0, 0, 1, 2, 3, 4};
    assert_memory_equal(buf, head, sizeof(head));
    assert_int_equal(buf[12], 0xa0);
    assert_int_equal(buf[12 + 31], 0xa0 + 31);
    static const uint8_t params[] = {2, 3, 3, 32, 0, 32, 0, 7};
    assert_memory_equal(buf + 44, params, sizeof(params));
    assert_int_equal(buf[52], 0);
    assert_int_equal(buf[83], 31);
    struct tg_ksp_msg back;
    round_trip(&m, &back, buf);
    assert_int_equal(back.id, 0x01020304);
    assert_memory_equal(back.key_id, m.key_id, 32);
    assert_int_equal(back.alg, TG_KSP_ALG_RSA_PSS);
    assert_int_equal(back.md, TG_KSP_MD_SHA256);
    assert_int_equal(back.mgf1, TG_KSP_MD_SHA256);
    assert_int_equal(back.saltlen, 32);
    assert_int_equal(back.hint, 7);
    assert_int_equal(back.datalen, 32);
    assert_memory_equal(back.data, m.data, 32);
}

static void test_replies_bytes(void **state)
{
    (void)state;
    uint8_t buf[TG_KSP_FRAME_MAX];
    struct tg_ksp_msg back;
    /* HELLO_REPLY */
    struct tg_ksp_msg hr = {.type = TG_KSP_HELLO_REPLY, .max_in_flight = 256};
    snprintf(hr.text, sizeof(hr.text), "ks");
    static const uint8_t hr_want[] = {0, 0, 0, 16, 1, 2, 0, 0, 0,   0,
                                      0, 0, 0, 0,  0, 1, 0, 2, 'k', 's'};
    assert_int_equal(tg_ksp_encode(&hr, buf, sizeof(buf)), sizeof(hr_want));
    assert_memory_equal(buf, hr_want, sizeof(hr_want));
    round_trip(&hr, &back, buf);
    assert_int_equal(back.max_in_flight, 256);
    /* LOOKUP_REPLY */
    struct tg_ksp_msg lr = {
        .type = TG_KSP_LOOKUP_REPLY, .id = 9, .key_type = TG_KSP_KEY_EC, .key_bits = 256};
    static const uint8_t lr_want[] = {0, 0, 0, 12, 1, 4, 0, 0, 0, 0, 0, 9, 0, 2, 1, 0};
    assert_int_equal(tg_ksp_encode(&lr, buf, sizeof(buf)), sizeof(lr_want));
    assert_memory_equal(buf, lr_want, sizeof(lr_want));
    /* A failed lookup carries no key details, whatever the struct held. */
    lr.status = TG_KSP_ST_UNKNOWN_KEY;
    assert_int_equal(tg_ksp_encode(&lr, buf, sizeof(buf)), 16);
    assert_int_equal(buf[12], 1);
    assert_int_equal(buf[13], 0);
    round_trip(&lr, &back, buf);
    assert_int_equal(back.status, TG_KSP_ST_UNKNOWN_KEY);
    /* SIGN_REPLY, a signature and a failure */
    struct tg_ksp_msg sr = {.type = TG_KSP_SIGN_REPLY, .id = 5, .datalen = 3};
    memcpy(sr.data, "\x01\x02\x03", 3);
    static const uint8_t sr_want[] = {0, 0, 0, 14, 1, 6, 0, 0, 0, 0, 0, 5, 0, 0, 3, 1, 2, 3};
    assert_int_equal(tg_ksp_encode(&sr, buf, sizeof(buf)), sizeof(sr_want));
    assert_memory_equal(buf, sr_want, sizeof(sr_want));
    sr.status = TG_KSP_ST_BUSY;
    static const uint8_t busy_want[] = {0, 0, 0, 11, 1, 6, 0, 0, 0, 0, 0, 5, 3, 0, 0};
    assert_int_equal(tg_ksp_encode(&sr, buf, sizeof(buf)), sizeof(busy_want));
    assert_memory_equal(buf, busy_want, sizeof(busy_want));
    /* ERROR */
    struct tg_ksp_msg er = {.type = TG_KSP_ERROR, .status = TG_KSP_ST_NOT_ALLOWED};
    snprintf(er.text, sizeof(er.text), "uid 7");
    static const uint8_t er_want[] = {0, 0, 0, 15, 1,   7,   0,   0,   0,  0,
                                      0, 0, 6, 5,  'u', 'i', 'd', ' ', '7'};
    assert_int_equal(tg_ksp_encode(&er, buf, sizeof(buf)), sizeof(er_want));
    assert_memory_equal(buf, er_want, sizeof(er_want));
    round_trip(&er, &back, buf);
    assert_string_equal(back.text, "uid 7");
    assert_int_equal(back.status, TG_KSP_ST_NOT_ALLOWED);
}

static void test_stream(void **state)
{
    (void)state;
    /* Three pipelined frames in one buffer; every prefix of the stream
     * yields exactly the frames complete in it. */
    uint8_t buf[3 * TG_KSP_FRAME_MAX];
    size_t len = 0, ends[3];
    for (uint32_t i = 0; i < 3; i++) {
        struct tg_ksp_msg m = {
            .type = TG_KSP_SIGN, .id = i + 1, .alg = TG_KSP_ALG_ECDSA, .datalen = 20 + i};
        len += tg_ksp_encode(&m, buf + len, sizeof(buf) - len);
        ends[i] = len;
    }
    for (size_t cut = 0; cut <= len; cut++) {
        size_t off = 0, got = 0;
        for (;;) {
            struct tg_ksp_frame f;
            size_t used;
            const char *why;
            int rc = tg_ksp_frame_parse(buf + off, cut - off, &f, &used, &why);
            if (rc == TG_EAGAIN) {
                assert_int_equal(used, 0);
                break;
            }
            assert_int_equal(rc, TG_OK);
            struct tg_ksp_msg m;
            assert_int_equal(tg_ksp_decode(&f, &m, &why), TG_OK);
            assert_int_equal(m.id, got + 1);
            assert_int_equal(m.datalen, 20 + got);
            off += used;
            assert_int_equal(off, ends[got]);
            got++;
        }
        size_t want = 0;
        while (want < 3 && ends[want] <= cut)
            want++;
        assert_int_equal(got, want);
    }
}

static void test_frame_refused(void **state)
{
    (void)state;
    struct tg_ksp_frame f;
    size_t used;
    const char *why;
    /* Length below the header, above the largest frame. */
    static const uint8_t small[] = {0, 0, 0, 7};
    assert_int_equal(tg_ksp_frame_parse(small, sizeof(small), &f, &used, &why), TG_EPROTO);
    assert_non_null(why);
    static const uint8_t big[] = {0, 0, 4, 9};
    assert_int_equal(tg_ksp_frame_parse(big, sizeof(big), &f, &used, &why), TG_EPROTO);
    static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 1, 5};
    assert_int_equal(tg_ksp_frame_parse(huge, sizeof(huge), &f, &used, &why), TG_EPROTO);
    /* The largest frame is fine (body not checked here). */
    static const uint8_t max[] = {0, 0, 4, 8, 1, 5, 0, 0};
    assert_int_equal(tg_ksp_frame_parse(max, sizeof(max), &f, &used, &why), TG_EAGAIN);
    /* Garbage is refused as soon as the header shows it, without waiting
     * for the body it announces. */
    static const uint8_t v0[] = {0, 0, 0, 100, 0};
    assert_int_equal(tg_ksp_frame_parse(v0, sizeof(v0), &f, &used, &why), TG_EPROTO);
    static const uint8_t type0[] = {0, 0, 0, 100, 1, 0};
    assert_int_equal(tg_ksp_frame_parse(type0, sizeof(type0), &f, &used, &why), TG_EPROTO);
    static const uint8_t type8[] = {0, 0, 0, 100, 1, 8};
    assert_int_equal(tg_ksp_frame_parse(type8, sizeof(type8), &f, &used, &why), TG_EPROTO);
    static const uint8_t flags[] = {0, 0, 0, 100, 1, 5, 0, 1};
    assert_int_equal(tg_ksp_frame_parse(flags, sizeof(flags), &f, &used, &why), TG_EPROTO);
    static const uint8_t http[] = "GET / HTTP/1.1\r\n";
    assert_int_equal(tg_ksp_frame_parse(http, sizeof(http) - 1, &f, &used, &why), TG_EPROTO);
    /* Nothing or a partial length: more. */
    assert_int_equal(tg_ksp_frame_parse(small, 0, &f, &used, &why), TG_EAGAIN);
    assert_int_equal(tg_ksp_frame_parse(small, 3, &f, &used, &why), TG_EAGAIN);
}

/* A valid SIGN frame in buf (returns its size) to mutate. */
static size_t sign_frame(uint8_t *buf, uint8_t alg, uint8_t md, uint8_t mgf1, uint16_t salt,
                         size_t dlen)
{
    struct tg_ksp_msg m = {.type = TG_KSP_SIGN,
                           .id = 1,
                           .alg = alg,
                           .md = md,
                           .mgf1 = mgf1,
                           .saltlen = salt,
                           .datalen = dlen};
    return tg_ksp_encode(&m, buf, TG_KSP_FRAME_MAX);
}

static void test_sign_refused(void **state)
{
    (void)state;
    uint8_t buf[TG_KSP_FRAME_MAX];
    struct tg_ksp_msg m;
    const char *why;
    /* The encoder refuses what the decoder would. */
    assert_int_equal(sign_frame(buf, 0, 3, 0, 0, 32), 0);     /* no algorithm */
    assert_int_equal(sign_frame(buf, 4, 3, 0, 0, 32), 0);     /* unknown algorithm */
    assert_int_equal(sign_frame(buf, 1, 0, 0, 0, 32), 0);     /* RSA without digest */
    assert_int_equal(sign_frame(buf, 1, 3, 0, 0, 48), 0);     /* length != SHA-256 */
    assert_int_equal(sign_frame(buf, 1, 3, 3, 0, 32), 0);     /* MGF1 outside PSS */
    assert_int_equal(sign_frame(buf, 1, 3, 0, 20, 32), 0);    /* salt outside PSS */
    assert_int_equal(sign_frame(buf, 2, 3, 0, 32, 32), 0);    /* PSS without MGF1 */
    assert_int_equal(sign_frame(buf, 3, 6, 0, 0, 32), 0);     /* unknown digest */
    assert_int_equal(sign_frame(buf, 3, 0, 0, 0, 0), 0);      /* empty digest */
    assert_int_equal(sign_frame(buf, 3, 0, 0, 0, 65), 0);     /* digest too long */
    assert_int_not_equal(sign_frame(buf, 3, 0, 0, 0, 64), 0); /* ECDSA, any length */
    assert_int_not_equal(sign_frame(buf, 1, 1, 0, 0, 20), 0); /* SHA-1 */
    assert_int_not_equal(sign_frame(buf, 2, 5, 4, 0, 64), 0); /* PSS, mixed digests */
    /* The decoder refuses mutations of a good frame. */
    size_t n = sign_frame(buf, 2, 3, 3, 32, 32);
    assert_int_equal(decode_bytes(buf, n, &m, &why), TG_OK);
    uint8_t bad[TG_KSP_FRAME_MAX];
    static const struct {
        size_t off;
        uint8_t val;
    } muts[] = {
        {44, 0}, {44, 9}, {45, 0}, {45, 6}, {46, 0}, {46, 7}, {47, 31}, {47, 200}, {11, 0},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(muts); i++) {
        memcpy(bad, buf, n);
        bad[muts[i].off] = muts[i].val;
        assert_int_equal(decode_bytes(bad, n, &m, &why), TG_EPROTO);
        assert_non_null(why);
    }
    /* A body one byte shorter or longer than its digest length says. */
    memcpy(bad, buf, n);
    bad[3]--;
    assert_int_equal(decode_bytes(bad, n - 1, &m, &why), TG_EPROTO);
    memcpy(bad, buf, n);
    bad[3]++;
    bad[n] = 0;
    assert_int_equal(decode_bytes(bad, n + 1, &m, &why), TG_EPROTO);
}

static void test_other_refused(void **state)
{
    (void)state;
    struct tg_ksp_msg m;
    const char *why;
    /* HELLO with an id, with max_in_flight 0, with a text running past
     * the body, with a control character. */
    static const uint8_t h_id[] = {0, 0, 0, 13, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 8, 0};
    assert_int_equal(decode_bytes(h_id, sizeof(h_id), &m, &why), TG_EPROTO);
    static const uint8_t h_zero[] = {0, 0, 0, 13, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(decode_bytes(h_zero, sizeof(h_zero), &m, &why), TG_EPROTO);
    static const uint8_t h_text[] = {0, 0, 0, 14, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 2, 'a'};
    assert_int_equal(decode_bytes(h_text, sizeof(h_text), &m, &why), TG_EPROTO);
    static const uint8_t h_ctl[] = {0, 0, 0, 14, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 1, '\n'};
    assert_int_equal(decode_bytes(h_ctl, sizeof(h_ctl), &m, &why), TG_EPROTO);
    /* LOOKUP with id 0, with a short key id. */
    uint8_t lk[12 + 32] = {0, 0, 0, 40, 1, 3, 0, 0, 0, 0, 0, 0};
    assert_int_equal(decode_bytes(lk, sizeof(lk), &m, &why), TG_EPROTO);
    lk[11] = 1;
    assert_int_equal(decode_bytes(lk, sizeof(lk), &m, &why), TG_OK);
    lk[3] = 39;
    assert_int_equal(decode_bytes(lk, sizeof(lk) - 1, &m, &why), TG_EPROTO);
    /* Replies: unknown status, signature in a failure, empty signature. */
    static const uint8_t sr_st[] = {0, 0, 0, 11, 1, 6, 0, 0, 0, 0, 0, 1, 10, 0, 0};
    assert_int_equal(decode_bytes(sr_st, sizeof(sr_st), &m, &why), TG_EPROTO);
    static const uint8_t sr_fail[] = {0, 0, 0, 12, 1, 6, 0, 0, 0, 0, 0, 1, 4, 0, 1, 7};
    assert_int_equal(decode_bytes(sr_fail, sizeof(sr_fail), &m, &why), TG_EPROTO);
    static const uint8_t sr_empty[] = {0, 0, 0, 11, 1, 6, 0, 0, 0, 0, 0, 1, 0, 0, 0};
    assert_int_equal(decode_bytes(sr_empty, sizeof(sr_empty), &m, &why), TG_EPROTO);
    static const uint8_t sr_id0[] = {0, 0, 0, 12, 1, 6, 0, 0, 0, 0, 0, 0, 0, 0, 1, 7};
    assert_int_equal(decode_bytes(sr_id0, sizeof(sr_id0), &m, &why), TG_EPROTO);
    /* ERROR with status OK. */
    static const uint8_t er_ok[] = {0, 0, 0, 10, 1, 7, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(decode_bytes(er_ok, sizeof(er_ok), &m, &why), TG_EPROTO);
    /* HELLO_REPLY OK granting nothing. */
    static const uint8_t hr_0[] = {0, 0, 0, 14, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(decode_bytes(hr_0, sizeof(hr_0), &m, &why), TG_EPROTO);
    /* The encoder: text too long or not printable, no room. */
    struct tg_ksp_msg e = {.type = TG_KSP_ERROR, .status = TG_KSP_ST_FAILED};
    uint8_t buf[TG_KSP_FRAME_MAX];
    snprintf(e.text, sizeof(e.text), "tab\there");
    assert_int_equal(tg_ksp_encode(&e, buf, sizeof(buf)), 0);
    memset(e.text, 'a', sizeof(e.text)); /* not terminated within the field */
    assert_int_equal(tg_ksp_encode(&e, buf, sizeof(buf)), 0);
    snprintf(e.text, sizeof(e.text), "fine");
    assert_int_equal(tg_ksp_encode(&e, buf, 17), 0);
    assert_int_equal(tg_ksp_encode(&e, buf, 18), 18);
    e.type = (enum tg_ksp_type)8;
    assert_int_equal(tg_ksp_encode(&e, buf, sizeof(buf)), 0);
}

static void test_digests_and_names(void **state)
{
    (void)state;
    assert_int_equal(tg_ksp_md_code(NULL), TG_KSP_MD_NONE);
    assert_int_equal(tg_ksp_md_code(EVP_sha256()), 3);
    assert_int_equal(tg_ksp_md_code(EVP_sha1()), 1);
    assert_int_equal(tg_ksp_md_code(EVP_sha512()), 5);
    assert_int_equal(tg_ksp_md_code(EVP_md5()), -1);
    assert_int_equal(tg_ksp_md_size(4), 48);
    assert_int_equal(tg_ksp_md_size(0), 0);
    assert_int_equal(tg_ksp_md_size(99), 0);
    assert_string_equal(tg_ksp_md_name(2), "SHA224");
    assert_null(tg_ksp_md_name(0));
    assert_string_equal(tg_ksp_type_name(5), "sign");
    assert_string_equal(tg_ksp_type_name(0), "unknown");
    assert_string_equal(tg_ksp_status_name(3), "busy");
    assert_string_equal(tg_ksp_status_name(200), "unknown");
}

static void test_key_id(void **state)
{
    (void)state;
    /* The key id is SHA-256 over the DER SubjectPublicKeyInfo, the same
     * for the key pair, its public half and its certificate's key. */
    char *cert_pem = NULL, *key_pem = NULL;
    tg_test_make_cert("EC:P-256", "id.test", &cert_pem, &key_pem);
    BIO *b = BIO_new_mem_buf(key_pem, -1);
    EVP_PKEY *pair = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    b = BIO_new_mem_buf(cert_pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(pair);
    assert_non_null(x);
    uint8_t a[32], c[32], want[32];
    assert_int_equal(tg_ksp_key_id(pair, a), TG_OK);
    assert_int_equal(tg_ksp_key_id(X509_get0_pubkey(x), c), TG_OK);
    assert_memory_equal(a, c, 32);
    unsigned char *der = NULL;
    int len = i2d_PUBKEY(pair, &der);
    assert_true(len > 0);
    SHA256(der, (size_t)len, want);
    OPENSSL_free(der);
    assert_memory_equal(a, want, 32);
    char hex[65];
    tg_ksp_key_id_hex(a, 32, hex);
    assert_int_equal(strlen(hex), 64);
    tg_ksp_key_id_hex(a, 4, hex);
    assert_int_equal(strlen(hex), 8);
    assert_int_equal(tg_ksp_key_id(NULL, a), TG_ECRYPTO);
    EVP_PKEY_free(pair);
    X509_free(x);
    free(cert_pem);
    free(key_pem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_bytes),
        cmocka_unit_test(test_hello_future_version),
        cmocka_unit_test(test_sign_bytes),
        cmocka_unit_test(test_replies_bytes),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_frame_refused),
        cmocka_unit_test(test_sign_refused),
        cmocka_unit_test(test_other_refused),
        cmocka_unit_test(test_digests_and_names),
        cmocka_unit_test(test_key_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
