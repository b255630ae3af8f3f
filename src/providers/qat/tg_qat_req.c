/*
 * Request records, their completion, and poll scheduling (tg_qat_internal.h):
 * the pool of pinned request slabs, the on-device list, the callbacks qatlib
 * calls inside icp_sal_CyPollInstance, the poll itself, and the two timers of
 * a worker (the poll timer, a timerfd for sub-millisecond waits, and the
 * timeout timer). Everything runs on the owning worker's thread except the
 * hand-over of a request another worker's poll returned (tg_qat_returned).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "core/tg_log.h"
#include "providers/qat/tg_qat_internal.h"

/* The worker whose poll is running on this thread (for the callbacks). */
static _Thread_local struct tg_qat_wstate *tg_qat_polling;

/* ---- records ---- */

struct tg_qat_req *tg_qat_req_get(struct tg_qat_wstate *st)
{
    struct tg_qat_req *r = st->free;
    if (r != NULL) {
        st->free = r->next;
        r->next = NULL;
        return r;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->pin = tg_qat_pin_alloc(TG_QAT_SLAB, st->node);
    if (r->pin == NULL) {
        free(r);
        return NULL;
    }
    atomic_store_explicit(&r->owner, st, memory_order_relaxed);
    st->npool++;
    return r;
}

void tg_qat_req_destroy(struct tg_qat_req *r)
{
    tg_qat_pin_free(&r->pin, TG_QAT_SLAB);
    free(r);
}

void tg_qat_req_put(struct tg_qat_wstate *st, struct tg_qat_req *r)
{
    if (r->key != NULL) {
        r->key->refs--;
        r->key = NULL;
    }
    r->op = NULL;
    OPENSSL_cleanse(r->pin, TG_QAT_SLAB);
    r->next = st->free;
    r->prev = NULL;
    st->free = r;
}

void tg_qat_dev_link(struct tg_qat_wstate *st, struct tg_qat_req *r)
{
    r->next = NULL;
    r->prev = st->dev_tail;
    if (st->dev_tail != NULL)
        st->dev_tail->next = r;
    else
        st->dev_head = r;
    st->dev_tail = r;
    st->ondev++;
}

void tg_qat_dev_unlink(struct tg_qat_wstate *st, struct tg_qat_req *r)
{
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        st->dev_head = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    else
        st->dev_tail = r->prev;
    r->next = r->prev = NULL;
    st->ondev--;
}

/* ---- the qatlib callbacks (inside icp_sal_CyPollInstance) ---- */

static void tg_qat_returned(struct tg_qat_req *r)
{
    struct tg_qat_wstate *me = tg_qat_polling;
    if (me != NULL && atomic_load_explicit(&r->owner, memory_order_relaxed) == me) {
        r->done_next = NULL;
        *me->done_tail = r;
        me->done_tail = &r->done_next;
        return;
    }
    /* Another worker's request (shared instance), or an orphan. */
    pthread_mutex_lock(&tg_qat_g.lock);
    struct tg_qat_wstate *owner = atomic_load_explicit(&r->owner, memory_order_relaxed);
    if (owner != NULL) {
        r->done_next = owner->inbox;
        owner->inbox = r;
        ev_async_send(owner->loop, &owner->wake);
    }
    /* else an orphan: its worker is gone; freed after icp_sal_userStop. */
    pthread_mutex_unlock(&tg_qat_g.lock);
}

void tg_qat_rsa_cb(void *tag, CpaStatus status, void *opdata, CpaFlatBuffer *out)
{
    (void)opdata;
    (void)out;
    struct tg_qat_req *r = tag;
    r->status = status;
    r->mult = CPA_TRUE;
    tg_qat_returned(r);
}

void tg_qat_ecdsa_cb(void *tag, CpaStatus status, void *opdata, CpaBoolean mult, CpaFlatBuffer *pr,
                     CpaFlatBuffer *ps)
{
    (void)opdata;
    (void)pr;
    (void)ps;
    struct tg_qat_req *r = tag;
    r->status = status;
    r->mult = mult;
    tg_qat_returned(r);
}

/* ---- completion ---- */

/* A request came back to its worker: account, and complete its op. */
static void tg_qat_finish(struct tg_qat_wstate *st, struct tg_qat_req *r)
{
    uint64_t now = tg_now_ns();
    uint64_t lat = now - r->t_submit;
    tg_qat_dev_unlink(st, r);
    tg_ctr_inc(&st->st.inflight_down);
    tg_hist_record(&st->st.latency_us, &tg_qat_latency_spec, lat / 1000);
    struct tg_keyop *op = r->op;
    if (op == NULL) {
        tg_ctr_inc(&st->st.c[TG_QAT_LATE]);
        tg_qat_req_put(st, r);
        return;
    }
    /* Running estimate of the device latency (1/8 weight), for the timer;
     * late returns (a stall, a device coming back) do not teach it. A
     * request returned by the first poll after its submission may have been
     * ready long before: what we saw is only an upper bound, so learn half
     * of it and probe earlier next time. Otherwise, on an idle loop that
     * polls only at the estimate, the estimate could only grow (up to
     * poll_delay); a request that needed more polls shows it was short. */
    uint64_t sample = st->poll_seq - r->poll_seq <= 1 ? lat / 2 : lat;
    st->ewma_ns = st->ewma_ns - st->ewma_ns / 8 + sample / 8;
    st->live--;
    r->op = NULL;
    op->prov_data = NULL;
    if (r->status != CPA_STATUS_SUCCESS || r->mult != CPA_TRUE) {
        tg_ctr_inc(&st->st.c[TG_QAT_FAIL_DEVICE]);
        TG_DEBUG("qat: instance %u returned %s%s; finishing in software", st->ii,
                 tg_qat_status_name(r->status), r->mult != CPA_TRUE ? " (multiply failed)" : "");
        tg_qat_req_put(st, r);
        (void)tg_keyop_complete(op, TG_EDEVICE, TG_FALLBACK_DEVICE_ERROR);
        return;
    }
    tg_ctr_inc(&st->st.c[TG_QAT_COMPLETED]);
    const struct tg_qat_key *k = r->key;
    bool verify = tg_qat_settings_of(op)->verify;
    bool rsa = r->kind == TG_QAT_RSA, good;
    if (rsa) {
        good = !verify || tg_qat_rsa_check(st, k, r->out.pData, r->pin);
        if (good) {
            memcpy(op->out, r->out.pData, k->nbytes);
            op->outlen = k->nbytes;
        }
    } else {
        /* The device's (r, s) checked with the public key, as any verifier
         * will: a wrong signature fails the handshake, and faulty ECDSA
         * signatures can leak the key. */
        op->outlen = tg_qat_der_sig(op->out, r->out.pData, r->s.pData, k->nbytes);
        good = !verify || tg_keyop_verify_sw(op, op->out, op->outlen) == TG_OK;
        if (!good) {
            OPENSSL_cleanse(op->out, op->outlen);
            op->outlen = 0;
        }
    }
    tg_qat_req_put(st, r);
    if (!good) {
        tg_ctr_inc(&st->st.c[TG_QAT_FAIL_VERIFY]);
        TG_WARN("qat: instance %u returned an %s signature that does not verify; "
                "finishing in software",
                st->ii, rsa ? "RSA" : "ECDSA");
        (void)tg_keyop_complete(op, TG_EDEVICE, TG_FALLBACK_FAULT_CHECK);
        return;
    }
    (void)tg_keyop_complete(op, TG_OK, TG_FALLBACK_DEVICE_ERROR);
}

/* The device misbehaves (a failed poll or submit): say it once per worker,
 * loudly, then keep quiet until it works again; every affected operation is
 * finished in software and counted anyway. */
void tg_qat_device_trouble(struct tg_qat_wstate *st, const char *what, CpaStatus rc)
{
    if (st->dev_failing) {
        TG_DEBUG("qat: %s(instance %u): %s", what, st->ii, tg_qat_status_name(rc));
        return;
    }
    st->dev_failing = true;
    TG_WARN("qat: worker %d: %s on instance %u (%s) failed: %s; operations fall back to "
            "software until it works again",
            st->worker_id, what, st->ii, tg_qat_g.inst[st->ii].name, tg_qat_status_name(rc));
}

void tg_qat_device_ok(struct tg_qat_wstate *st)
{
    if (st->dev_failing) {
        st->dev_failing = false;
        TG_INFO("qat: worker %d: instance %u works again", st->worker_id, st->ii);
    }
}

/* ---- polling ---- */

size_t tg_qat_poll(struct tg_qat_wstate *st, CpaStatus *status)
{
    st->done = NULL;
    st->done_tail = &st->done;
    tg_qat_polling = st;
    CpaStatus rc = tg_qat_g.api->icp_sal_CyPollInstance(st->inst, 0);
    tg_qat_polling = NULL;
    st->poll_seq++;
    tg_ctr_inc(&st->st.c[TG_QAT_POLLS]);
    if (rc != CPA_STATUS_SUCCESS && rc != CPA_STATUS_RETRY)
        tg_qat_device_trouble(st, "icp_sal_CyPollInstance", rc);
    else if (rc == CPA_STATUS_SUCCESS)
        tg_qat_device_ok(st);
    size_t n = 0;
    struct tg_qat_req *r = st->done;
    st->done = NULL;
    st->done_tail = &st->done;
    while (r != NULL) {
        struct tg_qat_req *next = r->done_next;
        tg_qat_finish(st, r);
        n++;
        r = next;
    }
    if (n == 0)
        tg_ctr_inc(&st->st.c[TG_QAT_EMPTY_POLLS]);
    if (status != NULL)
        *status = rc;
    return n;
}

size_t tg_qat_take_inbox(struct tg_qat_wstate *st)
{
    pthread_mutex_lock(&tg_qat_g.lock);
    struct tg_qat_req *r = st->inbox;
    st->inbox = NULL;
    pthread_mutex_unlock(&tg_qat_g.lock);
    size_t n = 0;
    while (r != NULL) {
        struct tg_qat_req *next = r->done_next;
        tg_qat_finish(st, r);
        n++;
        r = next;
    }
    return n;
}

void tg_qat_count_batch(struct tg_qat_wstate *st, size_t n, enum tg_flush_reason why)
{
    if (n == 0 || st->kstats == NULL)
        return;
    tg_ctr_inc(&st->kstats->flushes[why]);
    tg_hist_record(&st->kstats->batch_size, &tg_keyprov_batch_spec, n);
}

/* ---- timers ---- */

static void tg_qat_timer_set(struct tg_qat_wstate *st, uint64_t at, uint64_t now)
{
    if (st->tfd >= 0) {
        struct itimerspec its;
        memset(&its, 0, sizeof(its));
        uint64_t d = at > now ? at - now : 1;
        its.it_value.tv_sec = (time_t)(d / TG_NS_PER_S);
        its.it_value.tv_nsec = (long)(d % TG_NS_PER_S);
        if (timerfd_settime(st->tfd, 0, &its, NULL) != 0)
            TG_DEBUG("qat: timerfd_settime failed");
    } else {
        ev_timer_stop(st->loop, &st->poll_timer);
        ev_timer_set(&st->poll_timer, at > now ? tg_ns_to_s(at - now) : 0.0, 0.0);
        ev_timer_start(st->loop, &st->poll_timer);
    }
    st->poll_at = at;
}

void tg_qat_timer_clear(struct tg_qat_wstate *st)
{
    if (st->poll_at == 0)
        return;
    if (st->tfd >= 0) {
        struct itimerspec its;
        memset(&its, 0, sizeof(its));
        (void)timerfd_settime(st->tfd, 0, &its, NULL);
    } else {
        ev_timer_stop(st->loop, &st->poll_timer);
    }
    st->poll_at = 0;
}

void tg_qat_timeout_watch(struct tg_qat_wstate *st, uint64_t deadline, uint64_t now)
{
    if (st->timeout_at != 0 && deadline >= st->timeout_at)
        return;
    ev_timer_stop(st->loop, &st->timeout_timer);
    ev_timer_set(&st->timeout_timer, tg_ns_to_s(deadline - now) + 0.0005, 0.0);
    ev_timer_start(st->loop, &st->timeout_timer);
    st->timeout_at = deadline;
}

void tg_qat_expire(struct tg_qat_wstate *st, uint64_t now)
{
    uint64_t next = 0;
    for (struct tg_qat_req *r = st->dev_head; r != NULL; r = r->next) {
        struct tg_keyop *op = r->op;
        if (op == NULL)
            continue;
        if (r->deadline > now) {
            if (next == 0 || r->deadline < next)
                next = r->deadline;
            continue;
        }
        /* The record stays on the device list (the device may still write
         * its buffers); only the op is taken away from it. */
        r->op = NULL;
        op->prov_data = NULL;
        st->live--;
        tg_ctr_inc(&st->st.c[TG_QAT_FAIL_TIMEOUT]);
        TG_DEBUG("qat: request on instance %u timed out; finishing in software", st->ii);
        (void)tg_keyop_complete(op, TG_ETIMEOUT, TG_FALLBACK_TIMEOUT);
    }
    ev_timer_stop(st->loop, &st->timeout_timer);
    st->timeout_at = 0;
    if (next != 0)
        tg_qat_timeout_watch(st, next, now);
}

/*
 * Schedule the next poll while requests are on the device: at the expected
 * completion of the oldest one (submit + latency estimate); once that has
 * passed, every quarter of the estimate; never sooner than
 * TG_QAT_MIN_POLL_NS, never later than poll_delay. Keeps an earlier arming.
 */
void tg_qat_arm(struct tg_qat_wstate *st)
{
    if (st->ondev == 0) {
        tg_qat_timer_clear(st);
        return;
    }
    uint64_t now = tg_now_ns();
    uint64_t d;
    if (st->live == 0) {
        /* Only abandoned requests (timed out; maybe a dead device): polled
         * slowly, just to get their buffers back. */
        d = TG_QAT_RECLAIM_NS;
    } else {
        uint64_t expect = st->dev_head->t_submit + st->ewma_ns;
        d = expect > now ? expect - now : st->ewma_ns / 4;
        if (d < TG_QAT_MIN_POLL_NS)
            d = TG_QAT_MIN_POLL_NS;
        if (d > st->poll_ns)
            d = st->poll_ns;
    }
    uint64_t at = now + d;
    if (st->poll_at != 0 && st->poll_at <= at && st->poll_at > now)
        return;
    tg_qat_timer_set(st, at, now);
}

static void tg_qat_tick(struct tg_qat_wstate *st)
{
    st->poll_at = 0;
    size_t n = tg_qat_poll(st, NULL);
    tg_qat_count_batch(st, n, TG_FLUSH_TIMER);
    tg_qat_arm(st);
}

static void tg_qat_poll_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_qat_wstate *st = w->data;
    uint64_t expirations;
    if (read(st->tfd, &expirations, sizeof(expirations)) != (ssize_t)sizeof(expirations))
        return; /* spurious: disarmed meanwhile */
    tg_qat_tick(st);
}

static void tg_qat_poll_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    tg_qat_tick(w->data);
}

static void tg_qat_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_qat_wstate *st = w->data;
    tg_qat_expire(st, tg_now_ns());
    tg_qat_arm(st);
}

static void tg_qat_wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_qat_wstate *st = w->data;
    tg_qat_count_batch(st, tg_qat_take_inbox(st), TG_FLUSH_TIMER);
    tg_qat_arm(st);
}

void tg_qat_watchers_init(struct tg_qat_wstate *st)
{
    ev_async_init(&st->wake, tg_qat_wake_cb);
    st->wake.data = st;
    ev_async_start(st->loop, &st->wake);
    ev_timer_init(&st->timeout_timer, tg_qat_timeout_cb, 0.0, 0.0);
    st->timeout_timer.data = st;
    ev_timer_init(&st->poll_timer, tg_qat_poll_timer_cb, 0.0, 0.0);
    st->poll_timer.data = st;
    st->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (st->tfd >= 0) {
        ev_io_init(&st->poll_io, tg_qat_poll_io_cb, st->tfd, EV_READ);
        st->poll_io.data = st;
        ev_io_start(st->loop, &st->poll_io);
    } else {
        TG_WARN("qat: worker %d: no timerfd; polling with millisecond resolution", st->worker_id);
    }
}

void tg_qat_watchers_stop(struct tg_qat_wstate *st)
{
    ev_async_stop(st->loop, &st->wake);
    ev_timer_stop(st->loop, &st->timeout_timer);
    ev_timer_stop(st->loop, &st->poll_timer);
    if (st->tfd >= 0) {
        ev_io_stop(st->loop, &st->poll_io);
        close(st->tfd);
        st->tfd = -1;
    }
}
