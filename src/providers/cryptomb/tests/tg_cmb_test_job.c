/* A key operation inside an ASYNC job, for tests (tg_cmb_test_job.h). */
#include <stddef.h>
#include <stdarg.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tg_cmb_test_job.h"

static int tg_test_job_wake(void *arg)
{
    ((struct tg_test_job *)arg)->woken = true;
    return 1;
}

static int tg_test_job_fn(void *arg)
{
    struct tg_test_job *j = *(struct tg_test_job **)arg;
    return tg_keyop_run(&j->op);
}

bool tg_test_job_step(struct tg_test_job *j)
{
    struct tg_test_job *arg = j;
    if (j->wctx == NULL) {
        j->wctx = ASYNC_WAIT_CTX_new();
        assert_non_null(j->wctx);
        ASYNC_WAIT_CTX_set_callback(j->wctx, tg_test_job_wake, j);
    }
    int r = ASYNC_start_job(&j->job, j->wctx, &j->ret, tg_test_job_fn, &arg, sizeof(arg));
    assert_true(r == ASYNC_PAUSE || r == ASYNC_FINISH);
    if (r == ASYNC_FINISH) {
        j->done = true;
        ASYNC_WAIT_CTX_free(j->wctx);
        j->wctx = NULL;
        j->job = NULL;
    }
    return j->done;
}
