#include <string.h>

#include "core/tg_err.h"
#include "tg_test_util.h"

static int guarded(int rc)
{
    TG_GUARD(rc);
    return 42;
}

static int ensured(int ok)
{
    TG_ENSURE(ok, TG_EINVAL);
    return TG_OK;
}

static void test_table(void **state)
{
    (void)state;
    assert_string_equal(tg_errname(TG_OK), "TG_OK");
    assert_string_equal(tg_errname(TG_EPROTO), "TG_EPROTO");
    assert_string_equal(tg_strerror(TG_ECONFIG), "invalid configuration");
    assert_int_equal(tg_errclass(TG_EAGAIN), TG_ECLASS_BLOCKED);
    assert_int_equal(tg_errclass(TG_EPENDING), TG_ECLASS_BLOCKED);
    assert_int_equal(tg_errclass(TG_ECONFIG), TG_ECLASS_CONFIG);
    assert_int_equal(tg_errclass(TG_ECLOSED), TG_ECLASS_CLOSED);
    /* Unknown codes are reported, not crashed on. */
    assert_string_equal(tg_strerror(-12345), "unknown error");
    assert_string_equal(tg_errname(12345), "TG_E?");
    assert_int_equal(tg_errclass(-999), TG_ECLASS_INTERNAL);
}

static void test_macros(void **state)
{
    (void)state;
    assert_int_equal(guarded(TG_OK), 42);
    assert_int_equal(guarded(TG_EIO), TG_EIO);
    assert_int_equal(ensured(1), TG_OK);
    assert_int_equal(ensured(0), TG_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_macros),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
