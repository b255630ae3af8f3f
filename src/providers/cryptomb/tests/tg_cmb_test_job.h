/*
 * Test fixture shared by this folder's tests: one key operation run the way
 * a handshake runs it, inside an OpenSSL ASYNC job. tg_test_job_step()
 * starts or resumes the job; a provider that pauses it wakes it through the
 * wait context's callback (j->woken), after which the test steps it again.
 */
#ifndef TG_CMB_TEST_JOB_H
#define TG_CMB_TEST_JOB_H

#include <openssl/async.h>
#include <stdbool.h>

#include "keyprov/tg_keyprov.h"

struct tg_test_job {
    ASYNC_JOB *job;
    ASYNC_WAIT_CTX *wctx;
    struct tg_keyop op; /* filled by the test before the first step */
    int ret;            /* tg_keyop_run's result once done */
    bool woken, done;
};

/* Start or resume j; true when the job has ended (then j->ret is set). */
bool tg_test_job_step(struct tg_test_job *j);

#endif
