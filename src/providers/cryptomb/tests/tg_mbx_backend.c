/* Real or fake crypto_mb for a test (tg_mbx_backend.h). */
#include <stddef.h>
#include <stdarg.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <dlfcn.h>
#include <openssl/err.h>
#include <string.h>

#include "core/tg_sysinfo.h"
#include "providers/cryptomb/tg_mbx.h"
#include "tg_mbx_backend.h"
#include "tg_mbx_fake.h"

const enum tg_mbx_backend tg_mbx_be_real = TG_MBX_REAL, tg_mbx_be_fake = TG_MBX_FAKE;

/* The real table while the fake passes through to it, and a reference that
 * keeps the library loaded meanwhile. */
static struct tg_mbx_api tg_mbx_real_copy;
static void *tg_mbx_real_hold;

bool tg_mbx_is_real(void **state)
{
    return *(const enum tg_mbx_backend *)*state == TG_MBX_REAL;
}

void tg_mbx_use_backend(void **state)
{
    tg_mbx_unload();
    tg_mbx_fake_reset();
    if (!tg_mbx_is_real(state)) {
        assert_int_equal(tg_mbx_install(tg_mbx_fake_api()), TG_OK);
        return;
    }
    char why[256];
    if (tg_mbx_load(why, sizeof(why)) != TG_OK) {
        print_message("real crypto_mb unavailable: %s\n", why);
        if (tg_sysinfo_cpu_has_avx512_ifma() && strstr(why, "not found") == NULL)
            fail_msg("crypto_mb failed to load on an IFMA CPU: %s", why);
        skip();
    }
}

void tg_mbx_use_injection(void **state)
{
    if (!tg_mbx_is_real(state))
        return;
    struct tg_mbx_info info;
    tg_mbx_get_info(&info);
    tg_mbx_real_copy = *tg_mbx_api();
    tg_mbx_real_hold = dlopen(info.path, RTLD_NOW | RTLD_NOLOAD);
    assert_non_null(tg_mbx_real_hold);
    tg_mbx_fake_reset();
    tg_mbx_fake_set_inner(&tg_mbx_real_copy);
    assert_int_equal(tg_mbx_install(tg_mbx_fake_api()), TG_OK);
}

void tg_mbx_pass_through(void **state)
{
    if (tg_mbx_is_real(state))
        tg_mbx_fake_set_inner(&tg_mbx_real_copy);
}

void tg_mbx_reset_knobs(void **state)
{
    tg_mbx_fake_reset();
    tg_mbx_pass_through(state);
}

int tg_mbx_backend_teardown(void **state)
{
    (void)state;
    tg_mbx_unload();
    tg_mbx_fake_reset();
    if (tg_mbx_real_hold != NULL)
        dlclose(tg_mbx_real_hold);
    tg_mbx_real_hold = NULL;
    ERR_clear_error();
    return 0;
}
