#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <openssl/err.h>

#include "core/tg_log.h"
#include "tg_test_util.h"

static void read_all(int fd, char *buf, size_t len)
{
    ssize_t n = read(fd, buf, len - 1);
    buf[n > 0 ? n : 0] = '\0';
}

static void test_levels_and_format(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    tg_log_set_fd(p[1]);
    tg_log_set_level(TG_LOG_INFO);
    tg_log_set_thread_tag("w7");
    TG_DEBUG("hidden %d", 1);
    TG_INFO("shown %d", 2);
    char buf[4096];
    read_all(p[0], buf, sizeof(buf));
    assert_null(strstr(buf, "hidden"));
    assert_non_null(strstr(buf, " w7 info: shown 2\n"));
    tg_log_set_level(TG_LOG_DEBUG);
    TG_DEBUG("now %s", "visible");
    read_all(p[0], buf, sizeof(buf));
    assert_non_null(strstr(buf, "debug: now visible"));
    /* Very long lines are cut, still one line. */
    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    TG_WARN("%s", big);
    read_all(p[0], buf, sizeof(buf));
    assert_true(strlen(buf) < 2100);
    assert_int_equal(buf[strlen(buf) - 1], '\n');
    tg_log_set_fd(2);
    close(p[0]);
    close(p[1]);
}

static void test_parse_level(void **state)
{
    (void)state;
    enum tg_log_level l;
    assert_true(tg_log_parse_level("debug", &l));
    assert_int_equal(l, TG_LOG_DEBUG);
    assert_true(tg_log_parse_level("WARN", &l));
    assert_int_equal(l, TG_LOG_WARN);
    assert_true(tg_log_parse_level("warning", &l));
    assert_false(tg_log_parse_level("verbose", &l));
    assert_false(tg_log_parse_level("", &l));
}

static void test_openssl_errors_drained(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    tg_log_set_fd(p[1]);
    tg_log_set_level(TG_LOG_INFO);
    ERR_raise_data(ERR_LIB_SSL, ERR_R_INTERNAL_ERROR, "detail %d", 5);
    assert_int_equal(tg_log_openssl_errors(TG_LOG_ERROR, "ctx"), 1);
    assert_int_equal(ERR_peek_error(), 0);
    char buf[4096];
    read_all(p[0], buf, sizeof(buf));
    assert_non_null(strstr(buf, "ctx: "));
    assert_non_null(strstr(buf, "detail 5"));
    tg_log_set_fd(2);
    close(p[0]);
    close(p[1]);
}

/* Once per interval, whatever the clock does between calls: the first event
 * logs, the next ones within the interval are counted, the first after it
 * logs with the count, and a clock that stands still logs nothing more. */
static void test_every(void **state)
{
    (void)state;
    static struct tg_log_every e;
    const uint64_t s = 1000000000ULL, t0 = 5 * s;
    uint64_t missed = 99;
    assert_true(tg_log_every_due(&e, 10 * s, t0, &missed));
    assert_int_equal(missed, 0);
    for (int i = 0; i < 7; i++)
        assert_false(tg_log_every_due(&e, 10 * s, t0 + (uint64_t)i * s, &missed));
    assert_false(tg_log_every_due(&e, 10 * s, t0 + 10 * s - 1, &missed));
    assert_true(tg_log_every_due(&e, 10 * s, t0 + 10 * s, &missed));
    assert_int_equal(missed, 8);
    /* The interval counts from the last line, not from the first event. */
    assert_false(tg_log_every_due(&e, 10 * s, t0 + 19 * s, &missed));
    assert_true(tg_log_every_due(&e, 10 * s, t0 + 60 * s, &missed));
    assert_int_equal(missed, 1);
    /* A second limiter is independent. */
    static struct tg_log_every other;
    assert_true(tg_log_every_due(&other, 10 * s, t0 + 60 * s, &missed));
    assert_int_equal(missed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_levels_and_format),
        cmocka_unit_test(test_parse_level),
        cmocka_unit_test(test_openssl_errors_drained),
        cmocka_unit_test(test_every),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
