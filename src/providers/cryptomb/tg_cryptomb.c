/*
 * The cryptomb provider: Intel ipp-crypto multi-buffer (AVX-512 IFMA) runs
 * up to 8 operations of one kind in a single pass. This file is the policy
 * and the ops table (prefix tg_cmb_); the layers under it, one module each:
 *   tg_cmb_kind    the operation kinds; classifies every submitted op
 *   tg_cmb_calib   the cost model and its start-up calibration
 *   tg_cmb_batch   the batch arithmetic
 *   tg_mbx         the shim in front of libcrypto_mb (dlopen)
 * and, for measuring only, tg_cmb_work (calibration workloads) and
 * tg_cmb_bench (the microbench hook of `tlsgate bench-crypto`).
 *
 * Queues: one per worker per operation kind (RSA-2048/3072/4096 sign, ECDSA
 * P-256/P-384 sign, X25519/P-256/P-384 keygen and derive), shared by every
 * certificate of that size. Batches run on the loop's own stack, never in an
 * ASYNC job (32 KiB stacks): from the worker's flush (the loop is about to
 * block) or from the poll_delay timer.
 *
 * Policy, per kind, with costs calibrated at start-up on this CPU:
 *  - every full batch of 8 runs at the next flush ("full");
 *  - a partial batch runs as one mb8 call when that is cheaper than running
 *    its ops one by one in OpenSSL ("idle"), else scalar ("scalar");
 *  - a partial batch smaller than the break-even point waits for company only
 *    while enough other handshakes are in flight on this worker to make it up,
 *    and at most until its oldest op's poll_delay deadline ("timer");
 *  - at submit, an op that would run alone anyway (empty queue, too few
 *    other handshakes in flight to reach the break-even point) is computed
 *    inline in software: no pause at all, so latency at low load equals the
 *    software provider's.
 * Ephemeral keys come from a per-worker pool of single-use key pairs, refilled
 * in mb8 batches from the flush; a keygen served from the pool never pauses.
 *
 * Settings are per binding: each op carries its binding, and whatever is
 * decided per op comes from it (the fault check of its lane, whether its
 * keygen uses the pool, how a partial batch holding it runs). What the
 * worker shares is sized from the bindings that use it (the pool: the
 * largest key_pool seen). An op of another provider's binding (a qat
 * spill) gets cryptomb's defaults (tg_cmb_foreign_settings).
 */
#include <ev.h>
#include <math.h>
#include <openssl/obj_mac.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tg_log.h"
#include "core/tg_time.h"
#include "keyprov/tg_keyprov.h"
#include "providers/cryptomb/tg_cmb_batch.h"
#include "providers/cryptomb/tg_cmb_bench.h"
#include "providers/cryptomb/tg_cmb_calib.h"
#include "providers/cryptomb/tg_cmb_kind.h"
#include "providers/cryptomb/tg_cmb_pool.h"
#include "providers/cryptomb/tg_cryptomb.h"
#include "providers/cryptomb/tg_mbx.h"

#define TG_CMB_LANES    TG_MBX_LANES
#define TG_CMB_POOL_MAX 1024

enum tg_cmb_partial { TG_CMB_PARTIAL_AUTO, TG_CMB_PARTIAL_MB, TG_CMB_PARTIAL_SCALAR };

/* One binding's settings (typed_config), read per operation: each op
 * carries its binding, and a batch may mix ops of several bindings. */
struct tg_cmb_settings {
    bool fault_check;  /* this binding's signatures are verified before release */
    uint64_t key_pool; /* its key exchanges use the pool; the pool holds at least this */
    enum tg_cmb_partial partial;
};

/* Process-wide, written at start-up (global_init); the cost model lives in
 * tg_cmb_calib.c. */
static struct {
    bool loaded;
    atomic_bool summary_logged; /* the first worker logs the calibration */
} tg_cmb;

struct tg_cmb_queue {
    struct tg_keyop *head, *tail;
    size_t n;
};

struct tg_cmb_state {
    struct ev_loop *loop;
    struct tg_keyprov_stats *stats;
    const size_t *handshaking; /* the worker's connections in a handshake */
    struct tg_cmb_queue q[TG_CMB_KIND_COUNT];
    struct tg_cmb_pool pool[TG_GROUP_COUNT];
    size_t pending;
    ev_timer timer;
    uint64_t timer_at_ns;
    /* Keys per group pool: the largest key_pool of the cryptomb bindings
     * whose key exchanges this worker has served (0: no pool). */
    size_t pool_target;
};

/* ---- start-up ---- */

static int tg_cmb_configure(const struct tg_conf_keyprov *conf, void **settings, bool *kx,
                            char *err, size_t errlen)
{
    struct tg_cmb_settings *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return TG_ENOMEM;
    const struct tg_conf_params *p = &conf->typed_config;
    const char *partial = "auto";
    s->fault_check = true;
    s->key_pool = 64;
    *kx = true;
    int rc = tg_conf_params_bool(p, "key_exchange", kx, err, errlen);
    if (rc == TG_OK)
        rc = tg_conf_params_bool(p, "fault_check", &s->fault_check, err, errlen);
    if (rc == TG_OK)
        rc = tg_conf_params_u64(p, "key_pool", 0, TG_CMB_POOL_MAX, &s->key_pool, err, errlen);
    if (rc == TG_OK)
        rc = tg_conf_params_string(p, "partial_batch", &partial, err, errlen);
    if (rc == TG_OK) {
        if (strcmp(partial, "auto") == 0) {
            s->partial = TG_CMB_PARTIAL_AUTO;
        } else if (strcmp(partial, "mb") == 0) {
            s->partial = TG_CMB_PARTIAL_MB;
        } else if (strcmp(partial, "scalar") == 0) {
            s->partial = TG_CMB_PARTIAL_SCALAR;
        } else {
            const struct tg_conf_param *pp = tg_conf_params_get(p, "partial_batch");
            char path[512];
            snprintf(path, sizeof(path), "%s.partial_batch", p->path ? p->path : "typed_config");
            tg_conf_error(err, errlen, &pp->value_mark, path,
                          "expected 'auto', 'mb' or 'scalar', got '%s'", partial);
            rc = TG_ECONFIG;
        }
    }
    if (rc == TG_OK)
        rc = tg_conf_params_check_unused(p, "cryptomb", err, errlen);
    if (rc != TG_OK) {
        free(s);
        return rc;
    }
    *settings = s;
    return TG_OK;
}

static void tg_cmb_settings_free(void *settings)
{
    free(settings);
}

/*
 * An operation of another provider's binding (qat spills its overflow here
 * and the op keeps its qat binding): cryptomb reads no other provider's
 * settings, so it gets cryptomb's defaults for what it decides per op --
 * its signature is checked, its partial batches follow the cost model --
 * and takes no part in the key pool (qat does no key exchange; such a
 * keygen would neither be served from the pool nor size it).
 */
static const struct tg_cmb_settings tg_cmb_foreign_settings = {
    .fault_check = true,
    .key_pool = 0,
    .partial = TG_CMB_PARTIAL_AUTO,
};

/* The settings an operation is handled with: its own binding's. */
static const struct tg_cmb_settings *tg_cmb_settings_of(const struct tg_keyop *op)
{
    if (op->binding != NULL && op->binding->ops == &tg_cryptomb_provider &&
        op->binding->settings != NULL)
        return op->binding->settings;
    return &tg_cmb_foreign_settings;
}

static int tg_cmb_global_init(char *why, size_t whylen)
{
    if (tg_mbx_load(why, whylen) != TG_OK)
        return TG_EUNAVAIL;
    tg_cmb.loaded = true;
    atomic_store(&tg_cmb.summary_logged, false);
    unsigned kx = 0;
    static const enum tg_group groups[] = {TG_GROUP_X25519, TG_GROUP_P256, TG_GROUP_P384};
    for (size_t i = 0; i < TG_ARRAY_LEN(groups); i++) {
        if (tg_cmb_batch_group_supported(groups[i]))
            kx |= TG_CMB_KIND_BIT(tg_cmb_kind_keygen(groups[i])) |
                  TG_CMB_KIND_BIT(tg_cmb_kind_derive(groups[i]));
    }
    /* Not logged here: `tlsgate doctor` runs this too, and prints a report.
     * The first worker logs the calibration (tg_cmb_worker_init). */
    if (kx != 0)
        tg_cmb_calib_learn(NULL, kx);
    return TG_OK;
}

static void tg_cmb_global_cleanup(void)
{
    tg_cmb.loaded = false;
    atomic_store(&tg_cmb.summary_logged, false);
    tg_cmb_calib_forget();
    tg_mbx_unload();
}

static int tg_cmb_supports_key(const struct tg_pkey *key, char *why, size_t whylen)
{
    if (tg_cmb_batch_key_supported(key, why, whylen) != TG_OK)
        return TG_EUNAVAIL;
    enum tg_cmb_kind k = tg_cmb_kind_for_key(key);
    if (k == TG_CMB_KIND_NONE) {
        snprintf(why, whylen, "%s keys are not batched (RSA-2048/3072/4096, P-256, P-384 are)",
                 key->type == TG_PKEY_RSA ? "this RSA size"
                 : key->group             ? key->group
                                          : "EC");
        return TG_EUNAVAIL;
    }
    tg_cmb_calib_learn(key, TG_CMB_KIND_BIT(k));
    return TG_OK;
}

/* ---- per worker ---- */

static void tg_cmb_timer_cb(struct ev_loop *loop, ev_timer *t, int revents);

/* The calibration, for the start-up log: one INFO line, the costs at DEBUG.
 * Not from global_init: `tlsgate doctor` runs that and prints a report. */
static void tg_cmb_log_calibration(void)
{
    const struct tg_cmb_calib *c = tg_cmb_calib_model();
    struct tg_buf line = TG_BUF_INIT;
    tg_cmb_calib_summary(&line);
    TG_INFO("cryptomb: batch vs OpenSSL, calibrated on this CPU: %s",
            tg_buf_failed(&line) || line.data == NULL ? "?" : line.data);
    tg_buf_free(&line);
    for (int k = 0; k < TG_CMB_KIND_COUNT; k++) {
        /* Not c->valid[k]: a reload may be writing it on the main thread. */
        if (tg_cmb_calib_known((enum tg_cmb_kind)k))
            TG_DEBUG("cryptomb: %-17s mb8 call %7.1f us (1 lane) %7.1f us (8 lanes), OpenSSL "
                     "%7.1f us/op: batch from %zu op(s)",
                     tg_cmb_kind_name((enum tg_cmb_kind)k), c->batch_us[k][1],
                     c->batch_us[k][TG_CMB_LANES], c->scalar_us[k],
                     tg_cmb_calib_batch_from((enum tg_cmb_kind)k));
    }
}

static int tg_cmb_worker_init(const struct tg_keyprov_worker *w, void **state)
{
    struct tg_cmb_state *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return TG_ENOMEM;
    st->loop = w->loop;
    st->stats = w->stats;
    st->handshaking = w->handshaking;
    ev_timer_init(&st->timer, tg_cmb_timer_cb, 0.0, 0.0);
    st->timer.data = st;
    *state = st;
    /* Start-up is over (every certificate bound, every kind calibrated):
     * one line for the operator, from whichever worker comes first. */
    if (!atomic_exchange(&tg_cmb.summary_logged, true))
        tg_cmb_log_calibration();
    return TG_OK;
}

static void tg_cmb_worker_cleanup(void *state)
{
    struct tg_cmb_state *st = state;
    if (st->loop != NULL)
        ev_timer_stop(st->loop, &st->timer);
    for (int g = 0; g < TG_GROUP_COUNT; g++)
        tg_cmb_pool_free(&st->pool[g]);
    free(st);
}

/* ---- running batches (loop stack only) ---- */

static void tg_cmb_finish(struct tg_cmb_state *st, struct tg_keyop *op, int result,
                          enum tg_fallback_reason reason)
{
    (void)st;
    if (result == TG_OK || result == TG_EPROTO) {
        tg_keyop_complete(op, result, reason);
    } else {
        /* The lane failed or its result did not verify: software finishes
         * it; never a failed handshake because of the batch. */
        if ((unsigned)reason >= TG_FALLBACK_REASON_COUNT)
            reason = TG_FALLBACK_LANE_ERROR;
        tg_keyop_complete(op, TG_EDEVICE, reason);
    }
}

static void tg_cmb_run_scalar(struct tg_cmb_state *st, struct tg_keyop *op)
{
    int rc = tg_keyop_compute_sw(op);
    tg_cmb_finish(st, op, rc, TG_FALLBACK_DEVICE_ERROR);
}

/* One mb8 call for ops[0..n). */
static void tg_cmb_run_mb(struct tg_cmb_state *st, enum tg_cmb_kind k, struct tg_keyop **ops,
                          size_t n)
{
    int results[TG_CMB_LANES];
    enum tg_fallback_reason reasons[TG_CMB_LANES];
    bool check[TG_CMB_LANES]; /* each lane's own binding decides */
    for (size_t i = 0; i < n; i++) {
        results[i] = TG_EDEVICE;
        reasons[i] = TG_FALLBACK_LANE_ERROR;
        check[i] = tg_cmb_settings_of(ops[i])->fault_check;
    }
    int rc;
    switch (ops[0]->type) {
    case TG_KEYOP_RSA_SIGN:
        rc = tg_cmb_batch_rsa_sign(ops, n, results, reasons, check);
        break;
    case TG_KEYOP_ECDSA_SIGN:
        rc = tg_cmb_batch_ecdsa_sign(ops, n, results, reasons, check);
        break;
    case TG_KEYOP_KX_KEYGEN: {
        struct tg_kxkey *keys[TG_CMB_LANES];
        for (size_t i = 0; i < n; i++)
            keys[i] = ops[i]->kx;
        rc = tg_cmb_batch_keygen(keys, n, ops[0]->kx->group, results);
        break;
    }
    default:
        rc = tg_cmb_batch_derive(ops, n, results, reasons);
        break;
    }
    if (rc != TG_OK && rc != TG_EUNAVAIL) {
        /* The batch as a whole was refused: software finishes every lane. */
        for (size_t i = 0; i < n; i++) {
            results[i] = TG_EDEVICE;
            reasons[i] = TG_FALLBACK_DEVICE_ERROR;
        }
    }
    (void)k;
    tg_hist_record(&st->stats->batch_size, &tg_keyprov_batch_spec, n);
    for (size_t i = 0; i < n; i++)
        tg_cmb_finish(st, ops[i], results[i], reasons[i]);
}

static size_t tg_cmb_take(struct tg_cmb_queue *q, struct tg_keyop **ops, size_t max)
{
    size_t n = 0;
    while (n < max && q->head != NULL) {
        struct tg_keyop *op = q->head;
        q->head = op->next;
        op->next = NULL;
        ops[n++] = op;
    }
    if (q->head == NULL)
        q->tail = NULL;
    q->n -= n;
    return n;
}

/* Handshakes in flight on this worker besides the `mine` ones already
 * counted: each may still bring an operation of any kind. */
static size_t tg_cmb_others(const struct tg_cmb_state *st, size_t mine)
{
    size_t busy = *st->handshaking;
    return busy > mine ? busy - mine : 0;
}

/*
 * How the partial batch in queue q runs, from its operations' bindings
 * (a queue is shared by every binding of the kind): one mb8 call when any of
 * them says `mb`, OpenSSL when all say `scalar`, else (`auto`) as the cost
 * model says, possibly after waiting for company.
 */
static enum tg_cmb_partial tg_cmb_queue_partial(const struct tg_cmb_queue *q)
{
    bool all_scalar = true;
    for (const struct tg_keyop *op = q->head; op != NULL; op = op->next) {
        enum tg_cmb_partial p = tg_cmb_settings_of(op)->partial;
        if (p == TG_CMB_PARTIAL_MB)
            return TG_CMB_PARTIAL_MB;
        all_scalar = all_scalar && p == TG_CMB_PARTIAL_SCALAR;
    }
    return all_scalar ? TG_CMB_PARTIAL_SCALAR : TG_CMB_PARTIAL_AUTO;
}

/* Run queue k: full batches, then the remainder unless it should wait.
 * force: run everything now (timer expiry, drain). */
static void tg_cmb_run_queue(struct tg_cmb_state *st, enum tg_cmb_kind k, uint64_t now, bool force,
                             enum tg_flush_reason why)
{
    struct tg_cmb_queue *q = &st->q[k];
    struct tg_keyop *ops[TG_CMB_LANES];
    while (q->n >= TG_CMB_LANES) {
        size_t n = tg_cmb_take(q, ops, TG_CMB_LANES);
        st->pending -= n;
        tg_ctr_inc(&st->stats->flushes[TG_FLUSH_FULL]);
        tg_cmb_run_mb(st, k, ops, n);
    }
    if (q->n == 0)
        return;
    enum tg_cmb_partial partial = tg_cmb_queue_partial(q);
    size_t be = tg_cmb_calib_batch_from(k);
    bool mb = partial == TG_CMB_PARTIAL_MB || (partial == TG_CMB_PARTIAL_AUTO && q->n >= be);
    if (!mb && !force && partial == TG_CMB_PARTIAL_AUTO && q->head->deadline_ns > now &&
        be <= TG_CMB_LANES) {
        /* Too few to batch: wait (until the oldest op's deadline) only if
         * enough other handshakes are in flight to make up the batch. */
        size_t others = tg_cmb_others(st, q->n);
        if (others >= be - q->n)
            return;
    }
    size_t n = tg_cmb_take(q, ops, TG_CMB_LANES);
    st->pending -= n;
    if (mb) {
        tg_ctr_inc(&st->stats->flushes[why]);
        tg_cmb_run_mb(st, k, ops, n);
    } else {
        tg_ctr_inc(&st->stats->flushes[TG_FLUSH_SCALAR]);
        tg_hist_record(&st->stats->batch_size, &tg_keyprov_batch_spec, n);
        for (size_t i = 0; i < n; i++)
            tg_cmb_run_scalar(st, ops[i]);
    }
}

static void tg_cmb_arm_timer(struct tg_cmb_state *st)
{
    uint64_t earliest = UINT64_MAX;
    for (int k = 0; k < TG_CMB_KIND_COUNT; k++) {
        if (st->q[k].head != NULL && st->q[k].head->deadline_ns < earliest)
            earliest = st->q[k].head->deadline_ns;
    }
    if (earliest == UINT64_MAX) {
        ev_timer_stop(st->loop, &st->timer);
        st->timer_at_ns = 0;
        return;
    }
    if (ev_is_active(&st->timer) && st->timer_at_ns == earliest)
        return;
    uint64_t now = tg_now_ns();
    ev_timer_stop(st->loop, &st->timer);
    ev_timer_set(&st->timer, earliest > now ? tg_ns_to_s(earliest - now) : 0.0, 0.0);
    ev_timer_start(st->loop, &st->timer);
    st->timer_at_ns = earliest;
}

static void tg_cmb_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_cmb_state *st = t->data;
    uint64_t now = tg_now_ns();
    st->timer_at_ns = 0;
    for (int k = 0; k < TG_CMB_KIND_COUNT; k++) {
        if (st->q[k].head != NULL && st->q[k].head->deadline_ns <= now)
            tg_cmb_run_queue(st, (enum tg_cmb_kind)k, now, true, TG_FLUSH_TIMER);
    }
    tg_cmb_arm_timer(st);
}

/* ---- ephemeral key pool (the policy; the pool itself: tg_cmb_pool.c) ---- */

static bool tg_cmb_pool_serve(struct tg_cmb_state *st, struct tg_kxkey *into)
{
    if (!tg_cmb_pool_take(&st->pool[into->group], into))
        return false;
    atomic_store_explicit(&st->stats->pool_level, tg_ctr_get(&st->stats->pool_level) - 1,
                          memory_order_relaxed);
    return true;
}

/* Top up the pools by one mb8 batch per group that is below target. */
static void tg_cmb_pool_top_up(struct tg_cmb_state *st)
{
    if (st->pool_target == 0)
        return;
    static const enum tg_group groups[] = {TG_GROUP_X25519, TG_GROUP_P256, TG_GROUP_P384};
    for (size_t gi = 0; gi < TG_ARRAY_LEN(groups); gi++) {
        struct tg_cmb_pool *p = &st->pool[groups[gi]];
        /* Only groups that clients actually used get a pool. */
        if (p->keys == NULL || p->n >= st->pool_target)
            continue;
        if (p->n >= st->pool_target / 2 && st->pending > 0)
            continue; /* busy: refill later, the pool still covers demand */
        tg_ctr_add(&st->stats->pool_level, tg_cmb_pool_refill(p));
    }
}

/* A key exchange of group g arrived: give the group a pool (its first
 * use on this worker), or more room when the target grew. */
static void tg_cmb_pool_enable(struct tg_cmb_state *st, enum tg_group g)
{
    if (st->pool_target == 0)
        return;
    if (tg_cmb_pool_reserve(&st->pool[g], g, st->pool_target + TG_CMB_LANES) != TG_OK)
        TG_DEBUG("cryptomb: no memory for a %s key pool; keys made on demand", tg_group_name(g));
}

/* ---- interface ---- */

static int tg_cmb_submit(void *state, struct tg_keyop *op)
{
    struct tg_cmb_state *st = state;
    const struct tg_cmb_settings *s = tg_cmb_settings_of(op);
    enum tg_cmb_kind k = tg_cmb_kind_for_op(op);
    if (k == TG_CMB_KIND_NONE) {
        /* A group or size not batched (P-521): software, inline. */
        tg_cmb_run_scalar(st, op);
        return TG_OK;
    }
    if (op->type == TG_KEYOP_KX_KEYGEN && s->key_pool > 0) {
        /* The pool is per worker and group, for every binding that wants
         * one; it holds the largest key_pool of those bindings. A binding
         * with key_pool 0 makes its keys on demand. */
        if (s->key_pool > st->pool_target)
            st->pool_target = (size_t)s->key_pool;
        tg_cmb_pool_enable(st, op->kx->group);
        if (tg_cmb_pool_serve(st, op->kx)) {
            tg_keyop_complete(op, TG_OK, TG_FALLBACK_DEVICE_ERROR);
            return TG_OK;
        }
    }
    struct tg_cmb_queue *q = &st->q[k];
    if (q->n == 0 && s->partial == TG_CMB_PARTIAL_AUTO) {
        /* Alone, and not enough other handshakes in flight (this one is
         * counted too) to make a batch worth it: compute it now, without a
         * pause, so low load sees the software provider's latency. */
        size_t be = tg_cmb_calib_batch_from(k);
        if (be > TG_CMB_LANES || (be > 1 && tg_cmb_others(st, 1) < be - 1)) {
            tg_ctr_inc(&st->stats->flushes[TG_FLUSH_SCALAR]);
            tg_hist_record(&st->stats->batch_size, &tg_keyprov_batch_spec, 1);
            tg_cmb_run_scalar(st, op);
            return TG_OK;
        }
    }
    op->next = NULL;
    if (q->tail)
        q->tail->next = op;
    else
        q->head = op;
    q->tail = op;
    q->n++;
    st->pending++;
    return TG_EPENDING;
}

static void tg_cmb_flush(void *state)
{
    struct tg_cmb_state *st = state;
    if (st->pending > 0) {
        uint64_t now = tg_now_ns();
        for (int k = 0; k < TG_CMB_KIND_COUNT; k++) {
            if (st->q[k].n > 0)
                tg_cmb_run_queue(st, (enum tg_cmb_kind)k, now, false, TG_FLUSH_IDLE);
        }
        tg_cmb_arm_timer(st);
    }
    tg_cmb_pool_top_up(st);
}

static size_t tg_cmb_pending(void *state)
{
    return ((struct tg_cmb_state *)state)->pending;
}

static void tg_cmb_drain(void *state)
{
    struct tg_cmb_state *st = state;
    uint64_t now = tg_now_ns();
    for (int k = 0; k < TG_CMB_KIND_COUNT; k++) {
        while (st->q[k].n > 0)
            tg_cmb_run_queue(st, (enum tg_cmb_kind)k, now, true, TG_FLUSH_TIMER);
    }
    if (st->loop != NULL)
        ev_timer_stop(st->loop, &st->timer);
}

static void tg_cmb_render_stats(struct tg_buf *out)
{
    if (!tg_cmb.loaded)
        return;
    const struct tg_cmb_calib *c = tg_cmb_calib_model();
    tg_prom_header(out, "tlsgate_cryptomb_cost_microseconds", "gauge",
                   "Start-up calibration on this CPU: one mb8 call (1 or 8 lanes) vs one "
                   "OpenSSL operation");
    for (int k = 0; k < TG_CMB_KIND_COUNT; k++) {
        if (!c->valid[k])
            continue;
        const char *name = tg_cmb_kind_name((enum tg_cmb_kind)k);
        tg_buf_printf(out,
                      "tlsgate_cryptomb_cost_microseconds{op=\"%s\",mode=\"mb8_1lane\"} %.1f\n"
                      "tlsgate_cryptomb_cost_microseconds{op=\"%s\",mode=\"mb8_8lanes\"} %.1f\n"
                      "tlsgate_cryptomb_cost_microseconds{op=\"%s\",mode=\"openssl\"} %.1f\n",
                      name, c->batch_us[k][1], name, c->batch_us[k][8], name, c->scalar_us[k]);
    }
}

/* ---- tlsgate doctor ---- */

/* A JSON string (the doctor's JSON helpers live in src/doctor, which a
 * provider does not depend on). */
static void tg_cmb_json_str(struct tg_buf *out, const char *s)
{
    tg_buf_puts(out, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            tg_buf_printf(out, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            tg_buf_printf(out, "\\u%04x", *p);
        else
            tg_buf_append(out, p, 1);
    }
    tg_buf_puts(out, "\"");
}

/* A JSON number with one decimal (costs are finite; null otherwise). */
static void tg_cmb_json_us(struct tg_buf *out, const char *key, double us)
{
    tg_buf_printf(out, "\"%s\":", key);
    if (isfinite(us))
        tg_buf_printf(out, "%.1f", us);
    else
        tg_buf_puts(out, "null");
}

/* "library", "version", "batches" (algorithms crypto_mb runs here) and
 * "costs" (the calibration, per kind: OpenSSL vs one mb8 call, and the
 * break-even batch size; null: scalar always). */
static void tg_cmb_doctor_json(const struct tg_mbx_info *info, struct tg_buf *json)
{
    const struct tg_cmb_calib *c = tg_cmb_calib_model();
    tg_buf_puts(json, "\"library\":");
    if (info->loaded)
        tg_cmb_json_str(json, info->fake ? "fake" : info->path);
    else
        tg_buf_puts(json, "null");
    tg_buf_puts(json, ",\"version\":");
    if (info->version[0] != '\0')
        tg_cmb_json_str(json, info->version);
    else
        tg_buf_puts(json, "null");
    tg_buf_puts(json, ",\"batches\":[");
    bool first = true;
    for (int a = 0; a < TG_MBX_ALG_COUNT; a++) {
        if (!info->alg[a])
            continue;
        if (!first)
            tg_buf_puts(json, ",");
        tg_cmb_json_str(json, tg_mbx_alg_name((enum tg_mbx_alg)a));
        first = false;
    }
    tg_buf_puts(json, "],\"costs\":{");
    first = true;
    for (int k = 0; k < TG_CMB_KIND_COUNT; k++) {
        if (!c->valid[k])
            continue;
        if (!first)
            tg_buf_puts(json, ",");
        tg_cmb_json_str(json, tg_cmb_kind_name((enum tg_cmb_kind)k));
        tg_buf_puts(json, ":{");
        tg_cmb_json_us(json, "openssl_us", c->scalar_us[k]);
        tg_buf_puts(json, ",");
        tg_cmb_json_us(json, "mb8_1lane_us", c->batch_us[k][1]);
        tg_buf_puts(json, ",");
        tg_cmb_json_us(json, "mb8_8lanes_us", c->batch_us[k][TG_CMB_LANES]);
        size_t be = tg_cmb_calib_batch_from((enum tg_cmb_kind)k);
        if (be > TG_CMB_LANES)
            tg_buf_puts(json, ",\"batch_from\":null}");
        else
            tg_buf_printf(json, ",\"batch_from\":%zu}", be);
        first = false;
    }
    tg_buf_puts(json, "}");
}

static void tg_cmb_doctor(struct tg_buf *out, struct tg_buf *json)
{
    struct tg_mbx_info info;
    tg_mbx_get_info(&info);
    tg_buf_printf(out, "library %s, version %s\n", info.path[0] ? info.path : "(none)",
                  info.version[0] ? info.version : "?");
    tg_buf_puts(out, "batches:");
    for (int a = 0; a < TG_MBX_ALG_COUNT; a++) {
        if (info.alg[a])
            tg_buf_printf(out, " %s", tg_mbx_alg_name((enum tg_mbx_alg)a));
    }
    tg_buf_puts(out, "\n");
    tg_cmb_calib_learn(NULL, TG_CMB_KIND_ALL); /* kinds measurable without keys */
    const struct tg_cmb_calib *c = tg_cmb_calib_model();
    for (int k = 0; k < TG_CMB_KIND_COUNT; k++) {
        if (!c->valid[k])
            continue;
        const char *name = tg_cmb_kind_name((enum tg_cmb_kind)k);
        size_t be = tg_cmb_calib_batch_from((enum tg_cmb_kind)k);
        if (be > TG_CMB_LANES)
            tg_buf_printf(out, "%-17s OpenSSL %.1f us/op, mb8 %.1f us/call: scalar always\n", name,
                          c->scalar_us[k], c->batch_us[k][8]);
        else
            tg_buf_printf(out, "%-17s OpenSSL %.1f us/op, mb8 %.1f us/call: batch from %zu op(s)\n",
                          name, c->scalar_us[k], c->batch_us[k][8], be);
    }
    tg_cmb_doctor_json(&info, json);
}

const struct tg_keyprov_ops tg_cryptomb_provider = {
    .name = "cryptomb",
    .description = "Intel ipp-crypto multi-buffer (AVX-512 IFMA): 8 operations per pass",
    .does_kx = true,
    .configure = tg_cmb_configure,
    .settings_free = tg_cmb_settings_free,
    .global_init = tg_cmb_global_init,
    .global_cleanup = tg_cmb_global_cleanup,
    .supports_key = tg_cmb_supports_key,
    .worker_init = tg_cmb_worker_init,
    .worker_cleanup = tg_cmb_worker_cleanup,
    .submit = tg_cmb_submit,
    .flush = tg_cmb_flush,
    .pending = tg_cmb_pending,
    .drain = tg_cmb_drain,
    .render_stats = tg_cmb_render_stats,
    .doctor = tg_cmb_doctor,
    .microbench = tg_cmb_bench_run,
};
