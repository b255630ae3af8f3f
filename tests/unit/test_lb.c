/*
 * Unit tests for src/upstream/tg_lb.c: the weighted ring, round robin,
 * least connections (scan and two choices), random, with degraded
 * (ejected or unhealthy) endpoints skipped, panic mode when nothing else is
 * left, and excluded (already tried) endpoints never chosen.
 */
#include "tg_test_util.h"

#include "config/tg_config.h"
#include "upstream/tg_lb.h"

#include <string.h>

#define NMAX 64

struct fake {
    enum tg_lb_state st[NMAX];
    uint32_t load[NMAX];
};

static enum tg_lb_state fake_state(void *arg, uint32_t i)
{
    return ((struct fake *)arg)->st[i];
}

static uint32_t fake_load(void *arg, uint32_t i)
{
    return ((struct fake *)arg)->load[i];
}

struct setup {
    uint32_t w[NMAX];
    uint32_t ring[NMAX * 128];
    struct fake f;
    struct tg_lb_view v;
    struct tg_lb_cursor c;
};

static void mk(struct setup *s, uint32_t n, const uint32_t *weights)
{
    memset(s, 0, sizeof(*s));
    for (uint32_t i = 0; i < n; i++)
        s->w[i] = weights != NULL ? weights[i] : 1;
    uint32_t len = tg_lb_ring_build(s->w, n, s->ring);
    assert_int_equal(len, tg_lb_ring_len(s->w, n));
    s->v = (struct tg_lb_view){n, s->w, s->ring, len, fake_state, fake_load, &s->f};
    tg_lb_cursor_init(&s->c, 42);
}

static void test_ring(void **state)
{
    (void)state;
    static struct setup s;
    mk(&s, 4, NULL);
    assert_int_equal(s.v.ring_len, 4);
    for (uint32_t i = 0; i < 4; i++)
        assert_int_equal(s.ring[i], i);
    /* Spread by the fraction (2k + 1) / 2w, ties by index. */
    const uint32_t w123[] = {1, 2, 3};
    mk(&s, 3, w123);
    const uint32_t want[] = {2, 1, 0, 2, 1, 2};
    assert_int_equal(s.v.ring_len, 6);
    assert_memory_equal(s.ring, want, sizeof(want));
    /* A common factor is divided out. */
    const uint32_t w24[] = {2, 4};
    mk(&s, 2, w24);
    const uint32_t want24[] = {1, 0, 1};
    assert_int_equal(s.v.ring_len, 3);
    assert_memory_equal(s.ring, want24, sizeof(want24));
    const uint32_t same[] = {7, 7, 7};
    mk(&s, 3, same);
    assert_int_equal(s.v.ring_len, 3);
    /* No endpoint twice in a row when another could come between. */
    const uint32_t w55[] = {5, 5, 1};
    mk(&s, 3, w55);
    for (uint32_t i = 0; i + 1 < s.v.ring_len; i++)
        assert_int_not_equal(s.ring[i], s.ring[i + 1]);
}

static void test_round_robin(void **state)
{
    (void)state;
    static struct setup s;
    mk(&s, 3, NULL);
    int64_t first = tg_lb_pick(TG_LB_ROUND_ROBIN, &s.v, &s.c, NULL);
    for (int k = 1; k < 9; k++)
        assert_int_equal(tg_lb_pick(TG_LB_ROUND_ROBIN, &s.v, &s.c, NULL), (first + k) % 3);
    /* Weighted: exact shares over whole turns of the ring. */
    const uint32_t w[] = {1, 2, 3};
    mk(&s, 3, w);
    unsigned cnt[3] = {0};
    for (int k = 0; k < 600; k++)
        cnt[tg_lb_pick(TG_LB_ROUND_ROBIN, &s.v, &s.c, NULL)]++;
    assert_int_equal(cnt[0], 100);
    assert_int_equal(cnt[1], 200);
    assert_int_equal(cnt[2], 300);
}

static void test_round_robin_skips_degraded(void **state)
{
    (void)state;
    static struct setup s;
    bool panic = true;
    mk(&s, 3, NULL);
    s.f.st[1] = TG_LB_DEGRADED;
    for (int k = 0; k < 10; k++) {
        int64_t i = tg_lb_pick(TG_LB_ROUND_ROBIN, &s.v, &s.c, &panic);
        assert_true(i == 0 || i == 2);
        assert_false(panic);
    }
    /* Every endpoint degraded: panic, and the choice still rotates. */
    s.f.st[0] = s.f.st[2] = TG_LB_DEGRADED;
    unsigned cnt[3] = {0};
    for (int k = 0; k < 30; k++) {
        int64_t i = tg_lb_pick(TG_LB_ROUND_ROBIN, &s.v, &s.c, &panic);
        assert_true(i >= 0);
        assert_true(panic);
        cnt[i]++;
    }
    assert_int_equal(cnt[0], 10);
    assert_int_equal(cnt[1], 10);
    assert_int_equal(cnt[2], 10);
    /* Excluded: never, even in panic; nothing left: -1. */
    s.f.st[0] = TG_LB_EXCLUDED;
    s.f.st[1] = TG_LB_EXCLUDED;
    for (int k = 0; k < 5; k++)
        assert_int_equal(tg_lb_pick(TG_LB_ROUND_ROBIN, &s.v, &s.c, &panic), 2);
    s.f.st[2] = TG_LB_EXCLUDED;
    assert_int_equal(tg_lb_pick(TG_LB_ROUND_ROBIN, &s.v, &s.c, &panic), -1);
    assert_false(panic);
    /* A usable one beats a degraded one wherever the cursor stands. */
    s.f.st[0] = TG_LB_DEGRADED;
    s.f.st[1] = TG_LB_EXCLUDED;
    s.f.st[2] = TG_LB_USABLE;
    for (int k = 0; k < 5; k++)
        assert_int_equal(tg_lb_pick(TG_LB_ROUND_ROBIN, &s.v, &s.c, &panic), 2);
}

static void test_empty(void **state)
{
    (void)state;
    static struct setup s;
    mk(&s, 0, NULL);
    bool panic = true;
    assert_int_equal(tg_lb_pick(TG_LB_ROUND_ROBIN, &s.v, &s.c, &panic), -1);
    assert_false(panic);
    assert_int_equal(tg_lb_pick(TG_LB_LEAST_CONNECTIONS, &s.v, &s.c, NULL), -1);
    assert_int_equal(tg_lb_pick(TG_LB_RANDOM, &s.v, &s.c, NULL), -1);
}

static void test_least_connections(void **state)
{
    (void)state;
    static struct setup s;
    mk(&s, 3, NULL);
    s.f.load[0] = 5;
    s.f.load[1] = 1;
    s.f.load[2] = 3;
    for (int k = 0; k < 5; k++)
        assert_int_equal(tg_lb_pick(TG_LB_LEAST_CONNECTIONS, &s.v, &s.c, NULL), 1);
    s.f.st[1] = TG_LB_DEGRADED;
    assert_int_equal(tg_lb_pick(TG_LB_LEAST_CONNECTIONS, &s.v, &s.c, NULL), 2);
    s.f.st[1] = TG_LB_EXCLUDED;
    s.f.st[0] = s.f.st[2] = TG_LB_DEGRADED;
    bool panic = false;
    assert_int_equal(tg_lb_pick(TG_LB_LEAST_CONNECTIONS, &s.v, &s.c, &panic), 2);
    assert_true(panic);
    /* Per unit of weight: 3 connections on weight 4 beat 1 on weight 1. */
    const uint32_t w[] = {1, 1, 4};
    mk(&s, 3, w);
    s.f.load[0] = s.f.load[1] = 1;
    s.f.load[2] = 3;
    assert_int_equal(tg_lb_pick(TG_LB_LEAST_CONNECTIONS, &s.v, &s.c, NULL), 2);
    /* Ties rotate. */
    mk(&s, 4, NULL);
    unsigned cnt[4] = {0};
    for (int k = 0; k < 40; k++)
        cnt[tg_lb_pick(TG_LB_LEAST_CONNECTIONS, &s.v, &s.c, NULL)]++;
    for (int i = 0; i < 4; i++)
        assert_int_equal(cnt[i], 10);
}

/* Beyond TG_LB_SCAN_MAX endpoints: the better of two random ones. */
static void test_least_connections_two_choices(void **state)
{
    (void)state;
    static struct setup s;
    mk(&s, 40, NULL);
    s.f.load[5] = 100;
    unsigned hit5 = 0;
    for (int k = 0; k < 8000; k++) {
        int64_t i = tg_lb_pick(TG_LB_LEAST_CONNECTIONS, &s.v, &s.c, NULL);
        assert_true(i >= 0 && i < 40);
        hit5 += i == 5;
    }
    /* Only when both draws are 5: 1 in 1600. */
    assert_true(hit5 < 30);
    /* Excluded ones never come back from the two draws or the scan. */
    for (int i = 0; i < 40; i++)
        s.f.st[i] = i == 33 ? TG_LB_USABLE : TG_LB_EXCLUDED;
    for (int k = 0; k < 200; k++)
        assert_int_equal(tg_lb_pick(TG_LB_LEAST_CONNECTIONS, &s.v, &s.c, NULL), 33);
}

static void test_random(void **state)
{
    (void)state;
    static struct setup s;
    const uint32_t w[] = {1, 3};
    mk(&s, 2, w);
    unsigned cnt[2] = {0};
    for (int k = 0; k < 40000; k++)
        cnt[tg_lb_pick(TG_LB_RANDOM, &s.v, &s.c, NULL)]++;
    assert_true(cnt[0] > 9000 && cnt[0] < 11000);
    mk(&s, 5, NULL);
    s.f.st[0] = s.f.st[1] = s.f.st[2] = s.f.st[3] = TG_LB_DEGRADED;
    bool panic = true;
    for (int k = 0; k < 100; k++) {
        assert_int_equal(tg_lb_pick(TG_LB_RANDOM, &s.v, &s.c, &panic), 4);
        assert_false(panic);
    }
    s.f.st[4] = TG_LB_EXCLUDED;
    assert_true(tg_lb_pick(TG_LB_RANDOM, &s.v, &s.c, &panic) < 4);
    assert_true(panic);
}

static void test_cursor(void **state)
{
    (void)state;
    struct tg_lb_cursor a, b;
    tg_lb_cursor_init(&a, 1);
    tg_lb_cursor_init(&b, 2);
    assert_true(a.rng != 0 && b.rng != 0);
    assert_true(tg_lb_rand(&a) != tg_lb_rand(&b));
    tg_lb_cursor_init(&a, 0);
    assert_true(a.rng != 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring),
        cmocka_unit_test(test_round_robin),
        cmocka_unit_test(test_round_robin_skips_degraded),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_least_connections),
        cmocka_unit_test(test_least_connections_two_choices),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_cursor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
