/*
 * Test fixture shared by this folder's tests: run a test against the real
 * crypto_mb (skipped where it cannot load: no IFMA, valgrind; a failure on an
 * IFMA CPU where the library is installed) and against the fake.
 *
 *   const struct CMUnitTest tests[] = { TG_MBX_BOTH(test_x), ... };
 *   static void test_x(void **state) { tg_mbx_use_backend(state); ... }
 *
 * A test that needs its own teardown (test_mbx, test_cmb_calib) calls
 * tg_mbx_backend_teardown() from it and lists its cases with
 * TG_MBX_BOTH_WITH(test, teardown).
 *
 * tg_mbx_use_injection() then makes the fake's knobs (lane errors, faults)
 * work on top of the real library too: the fake in passthrough mode over a
 * copy of the real table. tg_mbx_backend_teardown() unloads whichever was
 * installed.
 */
#ifndef TG_MBX_BACKEND_H
#define TG_MBX_BACKEND_H

#include <stdbool.h>

enum tg_mbx_backend { TG_MBX_REAL, TG_MBX_FAKE };

extern const enum tg_mbx_backend tg_mbx_be_real, tg_mbx_be_fake;

/* Installs the backend named by the test's state (cmocka skips when the
 * real library cannot load here). */
void tg_mbx_use_backend(void **state);
/* After tg_mbx_use_backend: the fake's knobs for either backend. */
void tg_mbx_use_injection(void **state);
bool tg_mbx_is_real(void **state);
/* The fake's knobs back to none, still over the real library when the
 * backend is real (tg_mbx_fake_reset() then tg_mbx_pass_through()). */
void tg_mbx_reset_knobs(void **state);
/* After tg_mbx_fake_reset(): the fake over the real library again when the
 * backend is real (tg_mbx_use_injection must have run). */
void tg_mbx_pass_through(void **state);
int tg_mbx_backend_teardown(void **state);

/* A test twice: (real) and (fake); _WITH: a teardown of the test's own
 * (which calls tg_mbx_backend_teardown). */
#define TG_MBX_BOTH_WITH(t, teardown)                                                              \
    {#t "(real)", t, NULL, teardown, (void *)&tg_mbx_be_real},                                     \
    {                                                                                              \
#t "(fake)", t, NULL, teardown, (void *)&tg_mbx_be_fake                                    \
    }
#define TG_MBX_BOTH(t) TG_MBX_BOTH_WITH(t, tg_mbx_backend_teardown)

#endif
