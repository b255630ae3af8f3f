/*
 * Unit tests for src/upstream/tg_outlier.c: the ejection length (doubling,
 * capped), the cluster-wide limit, the failure run, renewals, returns by
 * time and by health check, retirement, and the count of ejected endpoints
 * staying exact while threads race on the same endpoints.
 */
#include "tg_test_util.h"

#include "core/tg_time.h"
#include "upstream/tg_outlier.h"

#include <pthread.h>
#include <string.h>

#define S TG_NS_PER_S

static struct tg_conf_outlier conf(uint32_t failures, uint32_t pct)
{
    struct tg_conf_outlier c = {failures, 30 * S, 300 * S, pct};
    return c;
}

static void test_ejection_length(void **state)
{
    (void)state;
    struct tg_conf_outlier c = conf(5, 10);
    assert_true(tg_outlier_ejection_ns(&c, 1) == 30 * S);
    assert_true(tg_outlier_ejection_ns(&c, 2) == 60 * S);
    assert_true(tg_outlier_ejection_ns(&c, 3) == 120 * S);
    assert_true(tg_outlier_ejection_ns(&c, 4) == 240 * S);
    assert_true(tg_outlier_ejection_ns(&c, 5) == 300 * S);
    assert_true(tg_outlier_ejection_ns(&c, UINT32_MAX) == 300 * S);
    c.max_ejection_time_ns = UINT64_MAX;
    assert_true(tg_outlier_ejection_ns(&c, 200) == UINT64_MAX); /* no overflow */
    assert_int_equal(tg_outlier_max_ejected(3, 10), 1);
    assert_int_equal(tg_outlier_max_ejected(0, 10), 1);
    assert_int_equal(tg_outlier_max_ejected(20, 10), 2);
    assert_int_equal(tg_outlier_max_ejected(10, 100), 10);
    assert_int_equal(tg_outlier_max_ejected(3, 50), 1);
    assert_int_equal(tg_outlier_max_ejected(4, 50), 2);
}

static void test_run_and_streak(void **state)
{
    (void)state;
    struct tg_conf_outlier c = conf(3, 100);
    struct tg_outlier o;
    _Atomic uint32_t n = 0;
    memset(&o, 0, sizeof(o));
    uint64_t t = 1000 * S;
    assert_true(tg_outlier_failure(&o, &c, &n, 3, t) == 0);
    assert_true(tg_outlier_failure(&o, &c, &n, 3, t) == 0);
    /* A success ends the run. */
    tg_outlier_success(&o);
    assert_true(tg_outlier_failure(&o, &c, &n, 3, t) == 0);
    assert_true(tg_outlier_failure(&o, &c, &n, 3, t) == 0);
    assert_true(tg_outlier_failure(&o, &c, &n, 3, t) == 30 * S);
    assert_int_equal(n, 1);
    assert_true(tg_outlier_ejected(&o, t));
    assert_true(tg_outlier_ejected(&o, t + 30 * S - 1));
    assert_false(tg_outlier_ejected(&o, t + 30 * S));
    /* Late failures of connections started before: no second ejection. */
    for (int i = 0; i < 10; i++)
        assert_true(tg_outlier_failure(&o, &c, &n, 3, t + 1) == 0);
    assert_int_equal(n, 1);
    /* Not yet: the tick before the end changes nothing. */
    assert_false(tg_outlier_expire(&o, &n, t + 30 * S - 1));
    t += 30 * S;
    assert_true(tg_outlier_expire(&o, &n, t));
    assert_false(tg_outlier_expire(&o, &n, t));
    assert_int_equal(n, 0);
    assert_false(tg_outlier_ejected(&o, t));
    /* Ejected again without a success: twice as long. */
    for (int i = 0; i < 2; i++)
        assert_true(tg_outlier_failure(&o, &c, &n, 3, t) == 0);
    assert_true(tg_outlier_failure(&o, &c, &n, 3, t) == 60 * S);
    t += 60 * S;
    assert_true(tg_outlier_expire(&o, &n, t));
    /* A success between ejections starts the streak over. */
    tg_outlier_success(&o);
    for (int i = 0; i < 2; i++)
        assert_true(tg_outlier_failure(&o, &c, &n, 3, t) == 0);
    assert_true(tg_outlier_failure(&o, &c, &n, 3, t) == 30 * S);
    assert_int_equal(n, 1);
}

static void test_renewal_before_sweep(void **state)
{
    (void)state;
    struct tg_conf_outlier c = conf(1, 100);
    struct tg_outlier o;
    _Atomic uint32_t n = 0;
    memset(&o, 0, sizeof(o));
    uint64_t t = 5 * S;
    assert_true(tg_outlier_failure(&o, &c, &n, 1, t) == 30 * S);
    /* Its time passed but the main thread has not swept it: a new
     * failure renews it in place, without counting it twice. */
    assert_true(tg_outlier_failure(&o, &c, &n, 1, t + 31 * S) == 60 * S);
    assert_int_equal(n, 1);
    assert_true(tg_outlier_ejected(&o, t + 31 * S + 59 * S));
    assert_false(tg_outlier_expire(&o, &n, t + 32 * S));
    assert_true(tg_outlier_expire(&o, &n, t + 91 * S));
    assert_int_equal(n, 0);
}

static void test_limit(void **state)
{
    (void)state;
    struct tg_conf_outlier c = conf(1, 10);
    struct tg_outlier a, b;
    _Atomic uint32_t n = 0;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    /* 2 endpoints at 10%: one may be out. */
    assert_true(tg_outlier_failure(&a, &c, &n, 2, S) != 0);
    assert_true(tg_outlier_failure(&b, &c, &n, 2, S) == 0);
    assert_false(tg_outlier_ejected(&b, S));
    assert_int_equal(n, 1);
    /* Once a is back, b's next failure ejects it. */
    assert_true(tg_outlier_clear(&a, &n));
    assert_int_equal(n, 0);
    assert_true(tg_outlier_failure(&b, &c, &n, 2, S) != 0);
    assert_int_equal(n, 1);
    assert_false(tg_outlier_clear(&a, &n));
}

static void test_off_clear_retire(void **state)
{
    (void)state;
    struct tg_conf_outlier off = conf(0, 100), c = conf(2, 100);
    struct tg_outlier o;
    _Atomic uint32_t n = 0;
    memset(&o, 0, sizeof(o));
    for (int i = 0; i < 100; i++)
        assert_true(tg_outlier_failure(&o, &off, &n, 1, S) == 0);
    assert_false(tg_outlier_ejected(&o, S));
    memset(&o, 0, sizeof(o));
    tg_outlier_failure(&o, &c, &n, 1, S);
    assert_true(tg_outlier_failure(&o, &c, &n, 1, S) != 0);
    assert_int_equal(n, 1);
    /* Retiring an ejected endpoint gives its place back, once. */
    tg_outlier_retire(&o, &n);
    assert_int_equal(n, 0);
    tg_outlier_retire(&o, &n);
    assert_int_equal(n, 0);
    assert_true(tg_outlier_ejected(&o, UINT64_MAX - 1)); /* skipped by old snapshots */
    for (int i = 0; i < 10; i++)
        assert_true(tg_outlier_failure(&o, &c, &n, 1, 2 * S) == 0);
    assert_false(tg_outlier_clear(&o, &n));
    assert_false(tg_outlier_expire(&o, &n, UINT64_MAX - 1));
    assert_int_equal(n, 0);
}

/* Workers fail endpoints while the main thread sweeps, clears and finally
 * retires them: the count must equal the endpoints really out. */
#define NE 8
static struct tg_outlier race_o[NE];
static _Atomic uint32_t race_n;
static _Atomic bool race_stop;
static struct tg_conf_outlier race_c;

static void *race_worker(void *arg)
{
    uint64_t x = (uintptr_t)arg * 2654435761u + 1;
    while (!atomic_load(&race_stop)) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        struct tg_outlier *o = &race_o[x % NE];
        if (x % 5 == 0)
            tg_outlier_success(o);
        else
            (void)tg_outlier_failure(o, &race_c, &race_n, NE, tg_now_ns());
    }
    return NULL;
}

static uint32_t really_out(void)
{
    uint32_t k = 0;
    for (int i = 0; i < NE; i++) {
        uint64_t u = atomic_load(&race_o[i].until_ns);
        k += u != 0 && u != TG_OUTLIER_RETIRED;
    }
    return k;
}

static void test_race(void **state)
{
    (void)state;
    race_c = (struct tg_conf_outlier){2, 1000, 4000, 50}; /* microsecond ejections */
    memset(race_o, 0, sizeof(race_o));
    atomic_store(&race_n, 0);
    atomic_store(&race_stop, false);
    pthread_t th[3];
    for (uintptr_t i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&th[i], NULL, race_worker, (void *)(i + 1)), 0);
    for (int round = 0; round < 20000; round++) {
        struct tg_outlier *o = &race_o[round % NE];
        if (round % 7 == 0)
            (void)tg_outlier_clear(o, &race_n);
        else
            (void)tg_outlier_expire(o, &race_n, tg_now_ns());
        assert_true(atomic_load(&race_n) <= tg_outlier_max_ejected(NE, 50));
    }
    for (int i = 0; i < NE; i++)
        tg_outlier_retire(&race_o[i], &race_n);
    atomic_store(&race_stop, true);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&race_n), really_out());
    assert_int_equal(atomic_load(&race_n), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ejection_length),      cmocka_unit_test(test_run_and_streak),
        cmocka_unit_test(test_renewal_before_sweep), cmocka_unit_test(test_limit),
        cmocka_unit_test(test_off_clear_retire),     cmocka_unit_test(test_race),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
