/*
 * tg_srclimit: the keyed hash against its published test vectors, the key
 * an address is counted under (IPv4, IPv6 prefixes, IPv4-mapped), and the
 * counting: a source stops at its limit, others are unaffected, released
 * connections make room, and many sources at once stay exact when their
 * counters do not collide.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "proxy/tg_srclimit.h"
#include "tg_test_util.h"

static struct sockaddr_storage addr(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(1234);
    } else {
        assert_int_equal(inet_pton(AF_INET6, text, &sin6->sin6_addr), 1);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(1234);
    }
    return ss;
}

/* The vectors of the SipHash paper's appendix and reference code: key
 * 00..0f, message 00..(len-1). */
static void test_siphash_vectors(void **state)
{
    (void)state;
    uint8_t key[16], msg[64];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++)
        msg[i] = (uint8_t)i;
    assert_int_equal(tg_siphash24(key, msg, 15), 0xa129ca6149be45e5ULL);
    assert_int_equal(tg_siphash24(key, msg, 0), 0x726fdb47dd0e0e31ULL);
    /* Another key gives another hash. */
    key[0] ^= 1;
    assert_true(tg_siphash24(key, msg, 15) != 0xa129ca6149be45e5ULL);
}

static void test_keys(void **state)
{
    (void)state;
    uint8_t a[16], b[16];
    struct sockaddr_storage v4 = addr("192.0.2.7");
    assert_true(tg_srclimit_key(&v4, 64, a));
    static const uint8_t want4[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 7};
    assert_memory_equal(a, want4, 16);
    /* The same IPv4 address mapped into IPv6: the same key, whatever the prefix. */
    struct sockaddr_storage mapped = addr("::ffff:192.0.2.7");
    assert_true(tg_srclimit_key(&mapped, 8, b));
    assert_memory_equal(a, b, 16);
    /* IPv6: two addresses of one /64 share a key at 64, not at 128. */
    struct sockaddr_storage x = addr("2001:db8:1:2:aaaa::1"), y = addr("2001:db8:1:2:bbbb::2");
    assert_true(tg_srclimit_key(&x, 64, a));
    assert_true(tg_srclimit_key(&y, 64, b));
    assert_memory_equal(a, b, 16);
    assert_true(tg_srclimit_key(&x, 128, a));
    assert_true(tg_srclimit_key(&y, 128, b));
    assert_memory_not_equal(a, b, 16);
    /* A prefix that is not a multiple of 8 cuts inside a byte. */
    struct sockaddr_storage p = addr("2001:db8:ffff::"), q = addr("2001:db8:f000::");
    assert_true(tg_srclimit_key(&p, 36, a));
    assert_true(tg_srclimit_key(&q, 36, b));
    assert_memory_equal(a, b, 16);
    assert_true(tg_srclimit_key(&p, 37, a));
    assert_true(tg_srclimit_key(&q, 37, b));
    assert_memory_not_equal(a, b, 16);
    /* Another family is not limited. */
    struct sockaddr_storage none;
    memset(&none, 0, sizeof(none));
    assert_false(tg_srclimit_key(&none, 64, a));
}

static void test_limit(void **state)
{
    (void)state;
    struct tg_srclimit *s = NULL;
    assert_int_equal(tg_srclimit_new(&s), TG_OK);
    struct sockaddr_storage a = addr("127.0.0.2"), b = addr("127.0.0.1");
    struct tg_srclimit_hold h[4], hb;
    for (int i = 0; i < 3; i++) {
        assert_true(tg_srclimit_acquire(s, &a, 64, 3, &h[i]));
        assert_true(h[i].held);
    }
    assert_false(tg_srclimit_acquire(s, &a, 64, 3, &h[3]));
    assert_false(h[3].held);
    tg_srclimit_release(s, &h[3]); /* holds nothing: ignored */
    /* Another source is not affected. */
    assert_true(tg_srclimit_acquire(s, &b, 64, 3, &hb));
    /* One closes: one more fits, and no more. */
    tg_srclimit_release(s, &h[1]);
    assert_false(h[1].held);
    tg_srclimit_release(s, &h[1]); /* twice: no effect */
    assert_true(tg_srclimit_acquire(s, &a, 64, 3, &h[1]));
    assert_false(tg_srclimit_acquire(s, &a, 64, 3, &h[3]));
    /* A higher limit (a reload) applies at once. */
    assert_true(tg_srclimit_acquire(s, &a, 64, 4, &h[3]));
    for (int i = 0; i < 4; i++)
        tg_srclimit_release(s, &h[i]);
    tg_srclimit_release(s, &hb);
    /* Everything given back: the source starts again from zero. */
    for (int i = 0; i < 3; i++)
        assert_true(tg_srclimit_acquire(s, &a, 64, 3, &h[i]));
    assert_false(tg_srclimit_acquire(s, &a, 64, 3, &h[3]));
    for (int i = 0; i < 3; i++)
        tg_srclimit_release(s, &h[i]);
    /* A family without addresses is never limited and holds nothing. */
    struct sockaddr_storage none;
    memset(&none, 0, sizeof(none));
    assert_true(tg_srclimit_acquire(s, &none, 64, 1, &h[0]));
    assert_false(h[0].held);
    tg_srclimit_free(s);
}

/* 1000 sources with 2 connections each, limit 2: every source gets exactly
 * its 2 (the counters of 1000 sources out of 16384 per row only rarely
 * share both slots; a source refused early would show here). */
static void test_many_sources(void **state)
{
    (void)state;
    struct tg_srclimit *s = NULL;
    assert_int_equal(tg_srclimit_new(&s), TG_OK);
    static struct tg_srclimit_hold h[1000][3];
    unsigned refused_early = 0;
    for (int i = 0; i < 1000; i++) {
        char text[64];
        snprintf(text, sizeof(text), "10.%d.%d.1", i / 250, i % 250);
        struct sockaddr_storage a = addr(text);
        for (int j = 0; j < 2; j++)
            refused_early += !tg_srclimit_acquire(s, &a, 64, 2, &h[i][j]);
        assert_false(tg_srclimit_acquire(s, &a, 64, 2, &h[i][2]));
    }
    /* Both counters shared with a full source: about 1000 * (1000/16384)^2
     * = 4 expected in the worst case of all sources full; allow a few. */
    assert_true(refused_early <= 20);
    for (int i = 0; i < 1000; i++) {
        for (int j = 0; j < 3; j++)
            tg_srclimit_release(s, &h[i][j]);
    }
    tg_srclimit_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_siphash_vectors),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_many_sources),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
