/*
 * The deferred provider: the reference asynchronous provider and the test
 * double of every real one. It queues each operation and completes it later
 * from the event loop, when the loop is about to block (delay 0) or after a
 * configurable delay (an ev_timer), so every handshake exercises the full
 * pause / wake-up / resume path. It can inject failures:
 *   fail_every: N   every Nth operation on a worker fails;
 *   fail_mode: error  the failure looks like a device error: the operation is
 *                     finished in software (runtime fallback) and counted;
 *   fail_mode: fatal  the operation fails: the handshake fails.
 *   fail_worker_init: N  the per-worker start of worker N fails (tests of
 *                     a gateway whose worker cannot start).
 * The computation itself is OpenSSL's (tg_keyop_compute_sw).
 */
#include <ev.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tg_time.h"
#include "keyprov/tg_keyprov.h"
#include "providers/deferred/tg_deferred.h"

enum tg_dp_fail_mode { TG_DP_FAIL_ERROR, TG_DP_FAIL_FATAL };

struct tg_dp_settings {
    uint64_t delay_ns;
    uint64_t fail_every;
    enum tg_dp_fail_mode fail_mode;
};

/* fail_worker_init: the worker whose start fails, -1 for none. Process-wide
 * (worker_init sees no binding): set while configuring, on the main thread
 * before any worker starts; back to -1 at global_cleanup. */
static _Atomic int tg_dp_fail_worker = -1;

struct tg_dp_state {
    struct ev_loop *loop;
    struct tg_keyprov_stats *stats;
    struct tg_keyop *head, *tail; /* ordered by deadline */
    size_t n;
    uint64_t count; /* operations seen, for fail_every */
    ev_timer timer;
};

static int tg_dp_configure(const struct tg_conf_keyprov *conf, void **settings, bool *kx, char *err,
                           size_t errlen)
{
    struct tg_dp_settings *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return TG_ENOMEM;
    const struct tg_conf_params *p = &conf->typed_config;
    const char *mode = "error";
    *kx = true;
    int rc = tg_conf_params_duration(p, "delay", &s->delay_ns, err, errlen);
    if (rc == TG_OK)
        rc = tg_conf_params_u64(p, "fail_every", 0, UINT32_MAX, &s->fail_every, err, errlen);
    if (rc == TG_OK)
        rc = tg_conf_params_string(p, "fail_mode", &mode, err, errlen);
    if (rc == TG_OK)
        rc = tg_conf_params_bool(p, "key_exchange", kx, err, errlen);
    uint64_t fail_worker = UINT64_MAX;
    if (rc == TG_OK)
        rc = tg_conf_params_u64(p, "fail_worker_init", 0, 255, &fail_worker, err, errlen);
    if (rc == TG_OK && fail_worker != UINT64_MAX)
        atomic_store(&tg_dp_fail_worker, (int)fail_worker);
    if (rc == TG_OK) {
        if (strcmp(mode, "error") == 0) {
            s->fail_mode = TG_DP_FAIL_ERROR;
        } else if (strcmp(mode, "fatal") == 0) {
            s->fail_mode = TG_DP_FAIL_FATAL;
        } else {
            const struct tg_conf_param *fm = tg_conf_params_get(p, "fail_mode");
            char path[512];
            snprintf(path, sizeof(path), "%s.fail_mode", p->path ? p->path : "typed_config");
            tg_conf_error(err, errlen, &fm->value_mark, path,
                          "expected 'error' or 'fatal', got '%s'", mode);
            rc = TG_ECONFIG;
        }
    }
    if (rc == TG_OK)
        rc = tg_conf_params_check_unused(p, "deferred", err, errlen);
    if (rc != TG_OK) {
        free(s);
        return rc;
    }
    *settings = s;
    return TG_OK;
}

static void tg_dp_settings_free(void *settings)
{
    free(settings);
}

/* The op's deferred settings, or NULL (no delay, no failures). An op another
 * provider spilled here (qat's ring was full) keeps that provider's binding:
 * only a deferred binding carries deferred settings. */
static const struct tg_dp_settings *tg_dp_settings_of(const struct tg_keyop *op)
{
    if (op->binding != NULL && op->binding->ops == &tg_deferred_provider)
        return op->binding->settings;
    return NULL;
}

static void tg_dp_finish(struct tg_dp_state *st, struct tg_keyop *op)
{
    const struct tg_dp_settings *s = tg_dp_settings_of(op);
    st->count++;
    if (s != NULL && s->fail_every != 0 && st->count % s->fail_every == 0) {
        if (s->fail_mode == TG_DP_FAIL_ERROR)
            tg_keyop_complete(op, TG_EDEVICE, TG_FALLBACK_INJECTED);
        else
            tg_keyop_complete(op, TG_ECRYPTO, TG_FALLBACK_INJECTED);
        return;
    }
    int rc = tg_keyop_compute_sw(op);
    tg_keyop_complete(op, rc, TG_FALLBACK_DEVICE_ERROR);
}

/* Complete every queued op whose deadline is <= now (all when now == max). */
static size_t tg_dp_run(struct tg_dp_state *st, uint64_t now)
{
    size_t done = 0;
    while (st->head != NULL && st->head->deadline_ns <= now) {
        struct tg_keyop *op = st->head;
        st->head = op->next;
        if (st->head == NULL)
            st->tail = NULL;
        st->n--;
        op->next = NULL;
        tg_dp_finish(st, op);
        done++;
    }
    return done;
}

static void tg_dp_arm(struct tg_dp_state *st)
{
    if (st->head == NULL) {
        ev_timer_stop(st->loop, &st->timer);
        return;
    }
    uint64_t now = tg_now_ns();
    double after = st->head->deadline_ns > now ? tg_ns_to_s(st->head->deadline_ns - now) : 0.0;
    ev_timer_stop(st->loop, &st->timer);
    ev_timer_set(&st->timer, after, 0.0);
    ev_timer_start(st->loop, &st->timer);
}

static void tg_dp_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_dp_state *st = w->data;
    size_t n = tg_dp_run(st, tg_now_ns());
    if (n > 0) {
        tg_ctr_inc(&st->stats->flushes[TG_FLUSH_TIMER]);
        tg_hist_record(&st->stats->batch_size, &tg_keyprov_batch_spec, n);
    }
    tg_dp_arm(st);
}

static void tg_dp_global_cleanup(void)
{
    atomic_store(&tg_dp_fail_worker, -1);
}

static int tg_dp_worker_init(const struct tg_keyprov_worker *w, void **state)
{
    if (w->worker_id == atomic_load(&tg_dp_fail_worker))
        return TG_EDEVICE; /* fail_worker_init */
    struct tg_dp_state *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return TG_ENOMEM;
    st->loop = w->loop;
    st->stats = w->stats;
    ev_timer_init(&st->timer, tg_dp_timer_cb, 0.0, 0.0);
    st->timer.data = st;
    *state = st;
    return TG_OK;
}

static void tg_dp_worker_cleanup(void *state)
{
    struct tg_dp_state *st = state;
    if (st->loop != NULL)
        ev_timer_stop(st->loop, &st->timer);
    free(st);
}

static int tg_dp_submit(void *state, struct tg_keyop *op)
{
    struct tg_dp_state *st = state;
    const struct tg_dp_settings *s = tg_dp_settings_of(op);
    op->deadline_ns = op->t_submit_ns + (s ? s->delay_ns : 0);
    /* Keep the queue ordered by deadline; with one delay per worker this is
     * an append. */
    if (st->tail == NULL || st->tail->deadline_ns <= op->deadline_ns) {
        op->next = NULL;
        if (st->tail)
            st->tail->next = op;
        else
            st->head = op;
        st->tail = op;
    } else {
        struct tg_keyop **pp = &st->head;
        while (*pp != NULL && (*pp)->deadline_ns <= op->deadline_ns)
            pp = &(*pp)->next;
        op->next = *pp;
        *pp = op;
    }
    st->n++;
    return TG_EPENDING;
}

static void tg_dp_flush(void *state)
{
    struct tg_dp_state *st = state;
    if (st->head == NULL)
        return;
    size_t n = tg_dp_run(st, tg_now_ns());
    if (n > 0) {
        tg_ctr_inc(&st->stats->flushes[TG_FLUSH_IDLE]);
        tg_hist_record(&st->stats->batch_size, &tg_keyprov_batch_spec, n);
    }
    tg_dp_arm(st);
}

static size_t tg_dp_pending(void *state)
{
    return ((struct tg_dp_state *)state)->n;
}

static void tg_dp_drain(void *state)
{
    struct tg_dp_state *st = state;
    tg_dp_run(st, UINT64_MAX);
    if (st->loop != NULL)
        ev_timer_stop(st->loop, &st->timer);
}

const struct tg_keyprov_ops tg_deferred_provider = {
    .name = "deferred",
    .description = "asynchronous reference provider: completes operations later from the "
                   "event loop (tests, fault injection)",
    .does_kx = true,
    .configure = tg_dp_configure,
    .settings_free = tg_dp_settings_free,
    .global_cleanup = tg_dp_global_cleanup,
    .worker_init = tg_dp_worker_init,
    .worker_cleanup = tg_dp_worker_cleanup,
    .submit = tg_dp_submit,
    .flush = tg_dp_flush,
    .pending = tg_dp_pending,
    .drain = tg_dp_drain,
};
