#include <string.h>

#include "core/tg_buf.h"
#include "tg_test_util.h"

static void test_append_printf(void **state)
{
    (void)state;
    struct tg_buf b = TG_BUF_INIT;
    tg_buf_puts(&b, "hello");
    tg_buf_append(&b, ", ", 2);
    tg_buf_printf(&b, "%s %d", "world", 42);
    assert_false(tg_buf_failed(&b));
    assert_string_equal(b.data, "hello, world 42");
    assert_int_equal(b.len, strlen("hello, world 42"));
    tg_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    tg_buf_free(&b);
    assert_null(b.data);
}

static void test_growth(void **state)
{
    (void)state;
    struct tg_buf b = TG_BUF_INIT;
    for (int i = 0; i < 10000; i++)
        tg_buf_printf(&b, "%04d\n", i % 10000);
    assert_int_equal(b.len, 50000);
    assert_memory_equal(b.data + 49995, "9999\n", 5);
    assert_true(b.cap > b.len);
    tg_buf_free(&b);
}

static void test_binary_and_empty(void **state)
{
    (void)state;
    struct tg_buf b = TG_BUF_INIT;
    tg_buf_append(&b, "a\0b", 3);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "a\0b", 3);
    tg_buf_append(&b, "", 0);
    assert_int_equal(b.len, 3);
    tg_buf_free(&b);
    tg_buf_free(&b); /* twice is harmless */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_printf),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_binary_and_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
