/*
 * Helpers shared by the qat provider's tests against the fake qatlib
 * (src/providers/qat/tests/fake_*.c), loaded through the shim from
 * $TG_BUILD_DIR/fakes (TG_QAT_LIB_DIR): the fake's side channel, test keys,
 * configurations, operations run as OpenSSL ASYNC jobs the production way,
 * a worker (event loop + provider set) on the calling thread, /stats, and
 * the per-test and per-group set-up.
 */
#ifndef QAT_TEST_UTIL_H
#define QAT_TEST_UTIL_H

#include <ev.h>
#include <openssl/async.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define UNDER_VALGRIND() (RUNNING_ON_VALGRIND != 0)
#else
#define UNDER_VALGRIND() 0
#endif

#include "config/tg_config.h"
#include "keyprov/tg_keyprov.h"
#include "providers/deferred/tg_deferred.h"
#include "providers/qat/tg_qat.h"
#include "providers/software/tg_software.h"
#ifdef TG_TEST_WITH_CRYPTOMB
#include "providers/cryptomb/tg_cryptomb.h"
#define TG_TEST_CRYPTOMB &tg_cryptomb_provider,
#else
#define TG_TEST_CRYPTOMB
#endif
#include "tg_test_util.h"

/* ---- the fake's side channel (set by group_setup when have_fake) ---- */

extern uint64_t (*fq_counter)(const char *);
extern unsigned (*fq_inflight)(void);
extern void (*fq_reset)(void);
extern size_t (*fu_live)(void);
extern size_t (*fu_dirty)(void);
/* The fake libraries are built and loaded (else the fake's tests skip). */
extern bool have_fake;

/* ---- keys (made by group_setup) ---- */

enum { K_RSA2048, K_RSA3072, K_RSA4096, K_RSA2560, K_P256, K_P384, K_P521, K_COUNT };
extern const char *const key_algs[K_COUNT];
extern struct tg_pkey *keys[K_COUNT];

/* ---- config ---- */

/* A private_key_provider for qat at gw.yaml:7:11, no typed_config keys. */
void conf_init(struct tg_conf_keyprov *c, bool fallback);
/* A scalar typed_config key at gw.yaml:9:13 (value at 9:20). */
void add_param(struct tg_conf_keyprov *c, const char *k, const char *v);
/* A sequence typed_config key of a, b (NULL: fewer) at gw.yaml:10:13 (10:20). */
void add_seq(struct tg_conf_keyprov *c, const char *k, const char *a, const char *b);
/* Bind; a test that is not about timeouts gets a long one, so a slow run
 * (valgrind, a loaded machine) does not turn into software fallbacks. */
struct tg_keyprov_binding *bind_ok(struct tg_conf_keyprov *c, const struct tg_pkey *k);

/* ---- jobs ---- */

struct job {
    ASYNC_JOB *job;
    ASYNC_WAIT_CTX *wctx;
    struct tg_keyop *op; /* heap: a test may free it once the job ended */
    int ret;
    bool woken, finished;
};

/* Start or resume the job. */
void job_step(struct job *j);
/* A signing op for key on binding b (digest of "tlsgate"). */
struct tg_keyop *op_new(const struct tg_keyprov_binding *b, struct tg_pkey *k, const char *md,
                        int pad);
/* Run op in a new job j, up to its first pause. */
void job_start(struct job *j, struct tg_keyop *op);
void job_free(struct job *j);
/* OpenSSL's verdict on the op's signature. */
bool sig_ok(const struct tg_keyop *op);

/* ---- a worker on this thread ---- */

struct world {
    struct ev_loop *loop;
    struct tg_keyprov_set *set;
    ev_timer guard;
};

void guard_cb(struct ev_loop *loop, ev_timer *w, int revents);
void world_init(struct world *w, int worker_id);
void world_free(struct world *w);
/* Wait for one event (timers, the provider's timerfd, at most 50 ms), no
 * flush: only what the provider's own watchers do happens. */
void loop_once(struct world *w);
/* One turn of a worker: wait for an event (at most 5 ms), flush the
 * providers ("about to block"), resume the jobs that were woken. */
void world_turn(struct world *w, struct job *jobs, size_t n);
bool all_done(const struct job *jobs, size_t n);
/* Turn until the n jobs finished; fails after max_s seconds. */
void world_run(struct world *w, struct job *jobs, size_t n, double max_s);
void sleep_ms(long ms);

/* ---- stats ---- */

uint64_t kp_stat(const struct tg_keyprov_binding *b, size_t off, int idx);
#define FALLBACKS(b, r) kp_stat(b, offsetof(struct tg_keyprov_stats, fallbacks), r)
/* The value of one /stats series (exact label set), or -1. */
long long stat_value(const char *series);

/* ---- set-up ---- */

/* Per test: no FAKE_* knobs, the fake in TG_QAT_LIB_DIR, its counters reset. */
int test_setup(void **state);
/* Per test: the providers shut down, every pinned buffer back and wiped. */
int test_teardown(void **state);
/* First thing in a test that needs the fake: skip it when it is not there. */
#define NEED_FAKE()                                                                                \
    do {                                                                                           \
        if (!have_fake)                                                                            \
            skip();                                                                                \
    } while (0)

/* Per group: open the fake, make the keys. */
int group_setup(void **state);
int group_teardown(void **state);

#endif
