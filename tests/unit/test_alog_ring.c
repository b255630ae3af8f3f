/*
 * Unit tests for src/alog/tg_alog_ring.c: records and their strings round
 * trip; a full ring drops and counts, and frees up when read; records that
 * do not fit before the end continue at the start, in order; the wake-up
 * eventfds are written once per drain; and one producer thread against one
 * consumer thread loses nothing it did not count.
 */
#include "tg_test_util.h"

#include "alog/tg_alog_ring.h"

#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static struct tg_alog_rec rec_n(uint64_t n)
{
    struct tg_alog_rec r;
    memset(&r, 0, sizeof(r));
    r.bytes_in = n;
    r.bytes_out = ~n;
    r.handshake_ns = TG_ALOG_NONE;
    r.cert_index = -1;
    r.term = (uint8_t)(n % TG_ALOG_TERM_COUNT);
    return r;
}

/* A string of len bytes derived from n. */
static void str_n(uint64_t n, char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)('a' + (n + i) % 26);
}

static void test_roundtrip(void **state)
{
    (void)state;
    struct tg_alog_ring r;
    assert_int_equal(tg_alog_ring_init(&r, 1000, -1, -1), TG_OK);
    assert_int_equal(r.cap, 4096); /* at least 4 KiB, a power of two */
    struct tg_alog_rec in = rec_n(7), out;
    struct tg_alog_strs s, got;
    memset(&s, 0, sizeof(s));
    char longname[400];
    memset(longname, 'x', sizeof(longname));
    s.p[TG_ALOG_S_LISTENER] = "https";
    s.len[TG_ALOG_S_LISTENER] = 5;
    s.p[TG_ALOG_S_SNI] = "a\x01\xff"; /* any byte */
    s.len[TG_ALOG_S_SNI] = 3;
    s.p[TG_ALOG_S_CERT] = longname; /* cut at TG_ALOG_STR_MAX */
    s.len[TG_ALOG_S_CERT] = sizeof(longname);
    s.p[TG_ALOG_S_ALPN] = ""; /* present but empty: not absent */
    s.len[TG_ALOG_S_ALPN] = 0;
    assert_false(tg_alog_ring_peek(&r, &out, &got));
    assert_true(tg_alog_emit(&r, &in, &s));
    assert_true(tg_alog_ring_peek(&r, &out, &got));
    assert_memory_equal(&out, &in, sizeof(in));
    assert_int_equal(got.len[TG_ALOG_S_LISTENER], 5);
    assert_memory_equal(got.p[TG_ALOG_S_LISTENER], "https", 5);
    assert_int_equal(got.len[TG_ALOG_S_SNI], 3);
    assert_memory_equal(got.p[TG_ALOG_S_SNI], "a\x01\xff", 3);
    assert_int_equal(got.len[TG_ALOG_S_CERT], TG_ALOG_STR_MAX);
    assert_memory_equal(got.p[TG_ALOG_S_CERT], longname, TG_ALOG_STR_MAX);
    assert_non_null(got.p[TG_ALOG_S_ALPN]);
    assert_int_equal(got.len[TG_ALOG_S_ALPN], 0);
    assert_null(got.p[TG_ALOG_S_GROUP]);
    /* Peeking again without popping gives the same record. */
    assert_true(tg_alog_ring_peek(&r, &out, &got));
    assert_int_equal(out.bytes_in, 7);
    tg_alog_ring_pop(&r);
    assert_false(tg_alog_ring_peek(&r, &out, &got));
    /* No strings at all is fine too. */
    assert_true(tg_alog_emit(&r, &in, NULL));
    assert_true(tg_alog_ring_peek(&r, &out, &got));
    for (int i = 0; i < TG_ALOG_S_COUNT; i++)
        assert_null(got.p[i]);
    tg_alog_ring_pop(&r);
    assert_int_equal(tg_ctr_get(&r.queued), 2);
    assert_int_equal(tg_ctr_get(&r.dropped), 0);
    tg_alog_ring_destroy(&r);
}

static void test_full_drops_and_counts(void **state)
{
    (void)state;
    struct tg_alog_ring r;
    assert_int_equal(tg_alog_ring_init(&r, 4096, -1, -1), TG_OK);
    struct tg_alog_rec in;
    struct tg_alog_strs s;
    memset(&s, 0, sizeof(s));
    char name[200];
    s.p[TG_ALOG_S_SNI] = name;
    s.len[TG_ALOG_S_SNI] = sizeof(name);
    uint64_t accepted = 0;
    for (uint64_t i = 0; i < 100; i++) {
        in = rec_n(i);
        str_n(i, name, sizeof(name));
        if (tg_alog_emit(&r, &in, &s))
            accepted++;
    }
    assert_true(accepted > 5 && accepted < 100);
    assert_int_equal(tg_ctr_get(&r.queued), accepted);
    assert_int_equal(tg_ctr_get(&r.dropped), 100 - accepted);
    /* What was accepted comes out, in order, intact. */
    struct tg_alog_rec out;
    struct tg_alog_strs got;
    for (uint64_t i = 0; i < accepted; i++) {
        assert_true(tg_alog_ring_peek(&r, &out, &got));
        assert_int_equal(out.bytes_in, i);
        str_n(i, name, sizeof(name));
        assert_memory_equal(got.p[TG_ALOG_S_SNI], name, sizeof(name));
        tg_alog_ring_pop(&r);
    }
    assert_false(tg_alog_ring_peek(&r, &out, &got));
    /* Read space is free again. */
    in = rec_n(1000);
    assert_true(tg_alog_emit(&r, &in, &s));
    assert_int_equal(tg_ctr_get(&r.dropped), 100 - accepted);
    tg_alog_ring_destroy(&r);
}

/* Records of varying sizes, the ring never emptied completely: many wraps,
 * every record intact and in order. */
static void test_wraps_in_order(void **state)
{
    (void)state;
    struct tg_alog_ring r;
    assert_int_equal(tg_alog_ring_init(&r, 4096, -1, -1), TG_OK);
    char name[TG_ALOG_STR_MAX];
    struct tg_alog_strs s, got;
    memset(&s, 0, sizeof(s));
    struct tg_alog_rec in, out;
    uint64_t next_in = 0, next_out = 0;
    for (int round = 0; round < 5000; round++) {
        /* Fill until full... */
        for (;;) {
            size_t len = (size_t)((next_in * 37) % TG_ALOG_STR_MAX);
            str_n(next_in, name, len);
            s.p[TG_ALOG_S_SNI] = name;
            s.len[TG_ALOG_S_SNI] = len;
            in = rec_n(next_in);
            if (!tg_alog_emit(&r, &in, &s))
                break;
            next_in++;
        }
        /* ...then read some, not all. */
        for (int k = 0; k < 3 && tg_alog_ring_peek(&r, &out, &got); k++) {
            assert_int_equal(out.bytes_in, next_out);
            assert_int_equal(out.bytes_out, ~next_out);
            size_t len = (size_t)((next_out * 37) % TG_ALOG_STR_MAX);
            str_n(next_out, name, len);
            assert_int_equal(got.len[TG_ALOG_S_SNI], len);
            assert_memory_equal(got.p[TG_ALOG_S_SNI], name, len);
            tg_alog_ring_pop(&r);
            next_out++;
        }
    }
    while (tg_alog_ring_peek(&r, &out, &got)) {
        assert_int_equal(out.bytes_in, next_out++);
        tg_alog_ring_pop(&r);
    }
    assert_int_equal(next_out, next_in);
    assert_int_equal(tg_ctr_get(&r.queued), next_in);
    assert_true(atomic_load(&r.head) > 100 * r.cap); /* it did wrap, many times */
    tg_alog_ring_destroy(&r);
}

static uint64_t efd_take(int fd)
{
    uint64_t v = 0;
    if (read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
        return 0;
    return v;
}

static void test_wakeups(void **state)
{
    (void)state;
    int data = eventfd(0, EFD_NONBLOCK), urgent = eventfd(0, EFD_NONBLOCK);
    assert_true(data >= 0 && urgent >= 0);
    struct tg_alog_ring r;
    assert_int_equal(tg_alog_ring_init(&r, 4096, data, urgent), TG_OK);
    struct tg_alog_rec in = rec_n(1), out;
    struct tg_alog_strs got;
    /* The first record kicks the writer, the next ones do not. */
    assert_true(tg_alog_emit(&r, &in, NULL));
    assert_true(tg_alog_emit(&r, &in, NULL));
    assert_int_equal(efd_take(data), 1);
    assert_int_equal(efd_take(urgent), 0);
    /* Half full: one urgent kick. */
    while (atomic_load(&r.head) - atomic_load(&r.tail) < r.cap / 2 + 256)
        assert_true(tg_alog_emit(&r, &in, NULL));
    assert_int_equal(efd_take(urgent), 1);
    assert_int_equal(efd_take(data), 0);
    /* The writer looks: flags re-armed, the next record kicks again. */
    tg_alog_ring_rearm(&r);
    while (tg_alog_ring_peek(&r, &out, &got))
        tg_alog_ring_pop(&r);
    assert_true(tg_alog_emit(&r, &in, NULL));
    assert_int_equal(efd_take(data), 1);
    tg_alog_ring_destroy(&r);
    close(data);
    close(urgent);
}

/* One producer thread, the test thread consuming: every record accepted
 * arrives once, in order; the rest were counted as dropped. */
#define SPSC_N 200000
static struct tg_alog_ring g_ring;

static void *producer(void *arg)
{
    (void)arg;
    char name[64];
    struct tg_alog_strs s;
    memset(&s, 0, sizeof(s));
    for (uint64_t i = 0; i < SPSC_N; i++) {
        struct tg_alog_rec in = rec_n(i);
        size_t len = (size_t)(i % sizeof(name));
        str_n(i, name, len);
        s.p[TG_ALOG_S_SNI] = name;
        s.len[TG_ALOG_S_SNI] = len;
        (void)tg_alog_emit(&g_ring, &in, &s);
    }
    return NULL;
}

static void test_two_threads(void **state)
{
    (void)state;
    int data = eventfd(0, EFD_NONBLOCK), urgent = eventfd(0, EFD_NONBLOCK);
    assert_int_equal(tg_alog_ring_init(&g_ring, 8192, data, urgent), TG_OK);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, producer, NULL), 0);
    uint64_t got_n = 0, last = 0;
    bool first = true;
    char name[64];
    struct tg_alog_rec out;
    struct tg_alog_strs got;
    bool joined = false;
    for (;;) {
        tg_alog_ring_rearm(&g_ring);
        bool any = false;
        while (tg_alog_ring_peek(&g_ring, &out, &got)) {
            assert_true(first || out.bytes_in > last);
            first = false;
            last = out.bytes_in;
            size_t len = (size_t)(out.bytes_in % sizeof(name));
            str_n(out.bytes_in, name, len);
            assert_int_equal(got.len[TG_ALOG_S_SNI], len);
            assert_memory_equal(got.p[TG_ALOG_S_SNI], name, len);
            tg_alog_ring_pop(&g_ring);
            got_n++;
            any = true;
        }
        if (joined)
            break; /* the producer had ended before that last drain */
        if (tg_ctr_get(&g_ring.queued) + tg_ctr_get(&g_ring.dropped) == SPSC_N) {
            assert_int_equal(pthread_join(t, NULL), 0);
            joined = true;
            continue;
        }
        if (!any) {
            struct pollfd p = {data, POLLIN, 0};
            (void)poll(&p, 1, 10);
            (void)efd_take(data);
        }
    }
    assert_int_equal(got_n, tg_ctr_get(&g_ring.queued));
    assert_int_equal(got_n + tg_ctr_get(&g_ring.dropped), SPSC_N);
    assert_true(got_n > 0);
    tg_alog_ring_destroy(&g_ring);
    close(data);
    close(urgent);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),      cmocka_unit_test(test_full_drops_and_counts),
        cmocka_unit_test(test_wraps_in_order), cmocka_unit_test(test_wakeups),
        cmocka_unit_test(test_two_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
