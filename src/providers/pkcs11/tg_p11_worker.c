/*
 * The pkcs11 provider on a worker: submit hands a request to the token's
 * signing threads and returns at once (TG_EPENDING); the threads put
 * finished requests in this worker's inbox and wake its loop with an
 * ev_async; the async callback completes the ops, on this thread. A timer
 * fails requests that outlive their `timeout`. Nothing here blocks on the
 * token: a slow or hung token delays only the handshakes that need it.
 *
 * Threading: every function runs on the worker's thread, except that the
 * signing threads append to the inbox (under its lock).
 */
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "core/tg_log.h"
#include "core/tg_time.h"
#include "providers/pkcs11/tg_p11_internal.h"

struct tg_p11_wstate {
    struct ev_loop *loop;
    int worker_id;
    struct tg_p11_inbox inbox;
    ev_timer timer;                 /* the earliest deadline of an outstanding request */
    uint64_t timer_at_ns;           /* when it fires (UINT64_MAX: stopped) */
    struct tg_p11_req *head, *tail; /* outstanding requests, in submit order */
    size_t outstanding;
    uint64_t last_warn_ns; /* token errors are logged at most once a second */
};

static void tg_p11_out_add(struct tg_p11_wstate *w, struct tg_p11_req *r)
{
    r->wnext = NULL;
    r->wprev = w->tail;
    if (w->tail != NULL)
        w->tail->wnext = r;
    else
        w->head = r;
    w->tail = r;
    w->outstanding++;
}

static void tg_p11_out_del(struct tg_p11_wstate *w, struct tg_p11_req *r)
{
    if (r->wprev != NULL)
        r->wprev->wnext = r->wnext;
    else
        w->head = r->wnext;
    if (r->wnext != NULL)
        r->wnext->wprev = r->wprev;
    else
        w->tail = r->wprev;
    r->wprev = r->wnext = NULL;
    w->outstanding--;
}

/* Complete op with a result (worker thread). out/outlen: the signature,
 * when result is OK. */
static void tg_p11_complete_op(struct tg_p11_wstate *w, struct tg_keyop *op,
                               const struct tg_p11_key *key, enum tg_p11_result result, CK_RV rv,
                               const unsigned char *out, size_t outlen)
{
    char name[40];
    switch (result) {
    case TG_P11_R_OK:
        memcpy(op->out, out, outlen);
        op->outlen = outlen;
        tg_keyop_complete(op, TG_OK, TG_FALLBACK_DEVICE_ERROR);
        return;
    case TG_P11_R_VERIFY_FAILED:
        TG_WARN("pkcs11: key '%s': the token returned a signature that does not verify", key->uri);
        tg_keyop_complete(op, TG_EDEVICE, TG_FALLBACK_FAULT_CHECK);
        return;
    case TG_P11_R_TOKEN_ERROR: {
        uint64_t now = tg_now_ns();
        if (now - w->last_warn_ns >= TG_NS_PER_S) {
            w->last_warn_ns = now;
            TG_WARN("pkcs11: key '%s': signing failed: %s", key->uri,
                    tg_p11_ckr_text(rv, name, sizeof(name)));
        }
        tg_keyop_complete(op, TG_EDEVICE, TG_FALLBACK_DEVICE_ERROR);
        return;
    }
    case TG_P11_R_QUEUE_FULL:
        tg_keyop_complete(op, TG_ELIMIT, TG_FALLBACK_RING_FULL);
        return;
    case TG_P11_R_TIMEOUT:
        tg_keyop_complete(op, TG_ETIMEOUT, TG_FALLBACK_TIMEOUT);
        return;
    case TG_P11_R_CANCELLED:
        tg_keyop_complete(op, TG_ECANCELED, TG_FALLBACK_DEVICE_ERROR);
        return;
    default: /* TOKEN_DOWN */
        tg_keyop_complete(op, TG_EDEVICE, TG_FALLBACK_DEVICE_ERROR);
        return;
    }
}

/* Complete the op of a request the worker owns (in its inbox, or never
 * queued). */
static void tg_p11_complete(struct tg_p11_wstate *w, struct tg_p11_req *r)
{
    tg_p11_complete_op(w, r->op, r->key, r->result, r->rv, r->out, r->outlen);
}

/* Complete every request the signing threads handed back. */
static size_t tg_p11_take_inbox(struct tg_p11_wstate *w)
{
    pthread_mutex_lock(&w->inbox.lock);
    struct tg_p11_req *r = w->inbox.head;
    w->inbox.head = w->inbox.tail = NULL;
    pthread_mutex_unlock(&w->inbox.lock);
    size_t n = 0;
    while (r != NULL) {
        struct tg_p11_req *next = r->next;
        tg_p11_out_del(w, r);
        tg_p11_complete(w, r);
        OPENSSL_cleanse(r, sizeof(*r));
        free(r);
        r = next;
        n++;
    }
    return n;
}

static void tg_p11_async_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)loop;
    (void)revents;
    tg_p11_take_inbox(a->data);
}

/* Give up on every outstanding request whose deadline is before `now`
 * (everything when all), with `result`; returns the earliest deadline left
 * (UINT64_MAX: none). A request a signing thread holds becomes that
 * thread's to free the moment it is abandoned: everything needed is read,
 * and the request unlinked, before. */
static uint64_t tg_p11_expire(struct tg_p11_wstate *w, uint64_t now, enum tg_p11_result result)
{
    uint64_t next = UINT64_MAX;
    struct tg_p11_req *r = w->head;
    while (r != NULL) {
        struct tg_p11_req *wnext = r->wnext, *wprev = r->wprev;
        if (r->deadline_ns > now) {
            next = r->deadline_ns < next ? r->deadline_ns : next;
            r = wnext;
            continue;
        }
        struct tg_keyop *op = r->op;
        const struct tg_p11_key *key = r->key;
        tg_p11_out_del(w, r);
        enum tg_p11_abandon what = tg_p11_abandon(r);
        if (what == TG_P11_ALREADY_DONE) {
            /* In the inbox: delivered with its real result. Back in place. */
            r->wprev = wprev;
            r->wnext = wnext;
            if (wprev != NULL)
                wprev->wnext = r;
            else
                w->head = r;
            if (wnext != NULL)
                wnext->wprev = r;
            else
                w->tail = r;
            w->outstanding++;
            r = wnext;
            continue;
        }
        if (what == TG_P11_DROPPED) {
            OPENSSL_cleanse(r, sizeof(*r));
            free(r);
        } /* else (DETACHED) r is the signing thread's now: not touched again */
        atomic_fetch_add(&key->token->results[result], 1);
        tg_p11_complete_op(w, op, key, result, CKR_OK, NULL, 0);
        r = wnext;
    }
    return next;
}

static void tg_p11_arm(struct tg_p11_wstate *w, uint64_t at)
{
    ev_timer_stop(w->loop, &w->timer);
    w->timer_at_ns = at;
    if (at == UINT64_MAX)
        return;
    uint64_t now = tg_now_ns();
    ev_timer_set(&w->timer, at > now ? tg_ns_to_s(at - now) : 0.0, 0.0);
    ev_timer_start(w->loop, &w->timer);
}

static void tg_p11_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_p11_wstate *w = t->data;
    /* Results that arrived just in time win over the timeout. */
    tg_p11_take_inbox(w);
    tg_p11_arm(w, tg_p11_expire(w, tg_now_ns(), TG_P11_R_TIMEOUT));
}

int tg_p11_worker_init(const struct tg_keyprov_worker *kw, void **state)
{
    struct tg_p11_wstate *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return TG_ENOMEM;
    w->loop = kw->loop;
    w->worker_id = kw->worker_id;
    pthread_mutex_init(&w->inbox.lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->inbox.cond, &ca);
    pthread_condattr_destroy(&ca);
    w->inbox.loop = kw->loop;
    ev_async_init(&w->inbox.async, tg_p11_async_cb);
    w->inbox.async.data = w;
    ev_async_start(kw->loop, &w->inbox.async);
    ev_timer_init(&w->timer, tg_p11_timer_cb, 0.0, 0.0);
    w->timer.data = w;
    w->timer_at_ns = UINT64_MAX;
    *state = w;
    return TG_OK;
}

void tg_p11_worker_cleanup(void *state)
{
    struct tg_p11_wstate *w = state;
    if (w == NULL)
        return;
    tg_p11_drain(w); /* normally done already: nothing left */
    ev_timer_stop(w->loop, &w->timer);
    ev_async_stop(w->loop, &w->inbox.async);
    pthread_mutex_destroy(&w->inbox.lock);
    pthread_cond_destroy(&w->inbox.cond);
    free(w);
}

int tg_p11_submit(void *state, struct tg_keyop *op)
{
    struct tg_p11_wstate *w = state;
    if ((op->type != TG_KEYOP_RSA_SIGN && op->type != TG_KEYOP_ECDSA_SIGN) || op->pkey == NULL ||
        !tg_pkey_is_held(op->pkey) || op->pkey->prov_key_free != tg_p11_key_unref ||
        op->inlen == 0 || op->inlen > sizeof(((struct tg_p11_sig *)0)->digest))
        return TG_EINVAL; /* not a key this provider made */
    struct tg_p11_req *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return TG_ENOMEM;
    r->op = op;
    r->key = op->pkey->prov_key;
    r->inbox = &w->inbox;
    r->sig.rsa = op->type == TG_KEYOP_RSA_SIGN;
    r->sig.padding = op->rsa_padding;
    r->sig.md = op->md;
    r->sig.mgf1 = op->mgf1_md;
    r->sig.saltlen = op->pss_saltlen;
    memcpy(r->sig.digest, op->in, op->inlen);
    r->sig.dlen = op->inlen;
    r->t_submit_ns = op->t_submit_ns;
    r->deadline_ns = tg_now_ns() + r->key->timeout_ns;
    int rc = tg_p11_enqueue(r);
    if (rc != TG_OK) {
        /* Queue full or token down: fail fast, on this thread, now. */
        tg_p11_complete(w, r);
        OPENSSL_cleanse(r, sizeof(*r));
        free(r);
        return TG_OK;
    }
    tg_p11_out_add(w, r);
    if (r->deadline_ns < w->timer_at_ns)
        tg_p11_arm(w, r->deadline_ns);
    return TG_EPENDING;
}

void tg_p11_flush(void *state)
{
    /* Completions arrive through the ev_async; nothing waits for a flush. */
    (void)state;
}

size_t tg_p11_pending(void *state)
{
    return ((struct tg_p11_wstate *)state)->outstanding;
}

void tg_p11_drain(void *state)
{
    struct tg_p11_wstate *w = state;
    /* The loop has stopped: wait here for what the tokens still sign, each
     * request at most until its own deadline. */
    for (;;) {
        tg_p11_take_inbox(w);
        uint64_t next = tg_p11_expire(w, tg_now_ns(), TG_P11_R_TIMEOUT);
        if (w->outstanding == 0)
            break;
        pthread_mutex_lock(&w->inbox.lock);
        if (w->inbox.head == NULL && next != UINT64_MAX) {
            struct timespec ts = {(time_t)(next / TG_NS_PER_S), (long)(next % TG_NS_PER_S)};
            pthread_cond_timedwait(&w->inbox.cond, &w->inbox.lock, &ts);
        } else if (w->inbox.head == NULL) {
            /* Only requests already in the inbox are left, but it is empty:
             * cannot happen; do not spin. */
            pthread_mutex_unlock(&w->inbox.lock);
            tg_p11_expire(w, UINT64_MAX, TG_P11_R_CANCELLED);
            break;
        }
        pthread_mutex_unlock(&w->inbox.lock);
    }
    ev_timer_stop(w->loop, &w->timer);
    w->timer_at_ns = UINT64_MAX;
}
