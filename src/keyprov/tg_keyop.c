/*
 * Key-operation lifecycle and the asynchronous wait.
 *
 * tg_keyop_run() is called by the OpenSSL bridge from inside libssl, which
 * (with SSL_MODE_ASYNC) runs the handshake in an ASYNC job. When the provider
 * answers "pending", the job pauses: SSL_do_handshake() returns
 * SSL_ERROR_WANT_ASYNC to the event loop, which serves other connections.
 * When the provider completes the op (from the loop: a flush, a timer, a
 * device poll), tg_keyop_complete() calls the wait context's callback, which
 * libssl forwards to the SSL_CTX async callback; the connection is queued and
 * SSL_do_handshake() resumes the job right after ASYNC_pause_job().
 */
#include <openssl/async.h>
#include <openssl/err.h>
#include <string.h>

#include "core/tg_log.h"
#include "core/tg_time.h"
#include "keyprov/tg_keyprov.h"
#include "keyprov/tg_keyprov_internal.h"

void tg_keyop_init(struct tg_keyop *op, enum tg_keyop_type type)
{
    /* Only the header is cleared: out[] is written before it is read. */
    memset(op, 0, offsetof(struct tg_keyop, out));
    op->type = type;
    op->outlen = 0;
    op->result = TG_EPENDING;
    op->fell_back = false;
    op->state = TG_KEYOP_NEW;
    op->wake = NULL;
    op->wake_arg = NULL;
    op->next = NULL;
    op->prov_data = NULL;
    op->stats = NULL;
    op->in_submit = false;
    op->t_submit_ns = 0;
    op->deadline_ns = 0;
}

/* ---- lifecycle ---- */

static bool tg_keyop_is_provider_failure(int result)
{
    return result == TG_EDEVICE || result == TG_ETIMEOUT || result == TG_ELIMIT;
}

/* A signature with a provider-held key: no software copy exists. */
static bool tg_keyop_key_held(const struct tg_keyop *op)
{
    return (op->type == TG_KEYOP_RSA_SIGN || op->type == TG_KEYOP_ECDSA_SIGN) && op->pkey != NULL &&
           tg_pkey_is_held(op->pkey);
}

static void tg_keyop_account(struct tg_keyop *op)
{
    struct tg_keyprov_stats *st = op->stats;
    if (st == NULL)
        return;
    if (op->result == TG_OK)
        tg_ctr_inc(&st->completed[op->type]);
    else
        tg_ctr_inc(&st->failed[op->type]);
    tg_ctr_inc(&st->inflight_down);
    uint64_t waited = tg_now_ns() - op->t_submit_ns;
    tg_hist_record(&st->wait_us, &tg_hist_latency_us, waited / 1000);
}

int tg_keyop_complete(struct tg_keyop *op, int result, enum tg_fallback_reason reason)
{
    if (op->state != TG_KEYOP_QUEUED)
        return TG_ESTATE;
    if (result != TG_OK && tg_keyop_is_provider_failure(result) && tg_keyop_key_held(op)) {
        /* No software copy of the key: the operation fails. */
        if (op->stats != NULL && (unsigned)reason < TG_FALLBACK_REASON_COUNT)
            tg_ctr_inc(&op->stats->unrecoverable[reason]);
        TG_DEBUG("key operation %s: provider failed (%s) on a provider-held key: no fallback",
                 tg_keyop_type_name(op->type), tg_strerror(result));
    } else if (result != TG_OK && tg_keyop_is_provider_failure(result)) {
        /* Runtime fallback: the software key is always at hand. */
        if (op->stats != NULL && (unsigned)reason < TG_FALLBACK_REASON_COUNT)
            tg_ctr_inc(&op->stats->fallbacks[reason]);
        TG_DEBUG("key operation %s: provider failed (%s), finishing in software",
                 tg_keyop_type_name(op->type), tg_strerror(result));
        result = tg_keyop_compute_sw(op);
        op->fell_back = true;
        if (op->ctx != NULL)
            op->ctx->fallbacks++;
    }
    op->result = result;
    if (result != TG_OK)
        op->outlen = 0;
    op->state = TG_KEYOP_DONE;
    tg_keyop_account(op);
    if (!op->in_submit && op->wake != NULL)
        (void)op->wake(op->wake_arg);
    return TG_OK;
}

int tg_keyop_consume(struct tg_keyop *op)
{
    if (op->state != TG_KEYOP_DONE)
        return TG_ESTATE;
    op->state = TG_KEYOP_CONSUMED;
    return op->result;
}

/* Synchronous path: no job to pause (tests, tools, a client-side handshake)
 * or no wake-up callback. The provider is bypassed; its stats still count. */
static int tg_keyop_run_sync(struct tg_keyop *op)
{
    if (op->stats != NULL) {
        tg_ctr_inc(&op->stats->ops[op->type]);
        tg_ctr_inc(&op->stats->inflight_up);
        op->t_submit_ns = tg_now_ns();
    }
    tg_keyop_compute_sw(op);
    op->state = TG_KEYOP_DONE;
    tg_keyop_account(op);
    return tg_keyop_consume(op);
}

int tg_keyop_run(struct tg_keyop *op)
{
    if (op->state != TG_KEYOP_NEW)
        return TG_ESTATE;
    op->ctx = tg_keyctx_current();
    if (op->ctx != NULL && op->pkey != NULL)
        op->ctx->signer = op->pkey;
    if (op->ctx != NULL && op->ctx->cancelled) {
        op->state = TG_KEYOP_CONSUMED;
        return TG_ECANCELED;
    }
    const struct tg_keyprov_binding *b = op->binding;
    if (b == NULL)
        b = op->binding = tg_keyprov_software_binding();
    void *state = tg_keyprov_state_for(b);
    op->stats = tg_keyprov_current_stats(b);

    ASYNC_JOB *job = ASYNC_get_current_job();
    ASYNC_callback_fn cb = NULL;
    void *cbarg = NULL;
    if (job != NULL) {
        ASYNC_WAIT_CTX *wctx = ASYNC_get_wait_ctx(job);
        if (wctx == NULL || !ASYNC_WAIT_CTX_get_callback(wctx, &cb, &cbarg))
            cb = NULL;
    }
    if ((state == NULL || cb == NULL) && tg_keyop_key_held(op)) {
        /* Only the provider can use the key, and only from a worker's loop. */
        TG_DEBUG("key operation %s: provider-held key used outside a worker's ASYNC job",
                 tg_keyop_type_name(op->type));
        op->state = TG_KEYOP_CONSUMED;
        if (op->ctx != NULL)
            op->ctx->failures++;
        return TG_EUNAVAIL;
    }
    if (state == NULL || cb == NULL)
        return tg_keyop_run_sync(op);

    op->wake = cb;
    op->wake_arg = cbarg;
    op->t_submit_ns = tg_now_ns();
    op->deadline_ns = op->t_submit_ns + b->poll_delay_ns;
    op->state = TG_KEYOP_QUEUED;
    if (op->stats != NULL) {
        tg_ctr_inc(&op->stats->ops[op->type]);
        tg_ctr_inc(&op->stats->inflight_up);
    }
    op->in_submit = true;
    int rc = b->ops->submit(state, op);
    if (rc != TG_EPENDING && op->state != TG_KEYOP_DONE) {
        /* The provider refused the op without taking it (e.g. queue full):
         * complete it here, in software. */
        tg_keyop_complete(op, rc < 0 ? rc : TG_EDEVICE,
                          rc == TG_ELIMIT ? TG_FALLBACK_RING_FULL : TG_FALLBACK_DEVICE_ERROR);
    }
    op->in_submit = false;
    if (rc == TG_EPENDING) {
        if (op->ctx != NULL)
            op->ctx->waits++;
        /* A job can be resumed before its op is done (a spurious wake-up);
         * only the op's state says when to go on. */
        while (op->state != TG_KEYOP_DONE) {
            if (!ASYNC_pause_job()) {
                /* Cannot happen inside a job; treat as fatal for this op. */
                TG_ERROR("ASYNC_pause_job failed inside a job");
                TG_ASSERT(0);
            }
        }
    }
    int result = tg_keyop_consume(op);
    if (result == TG_OK && op->ctx != NULL && op->ctx->cancelled)
        result = TG_ECANCELED;
    if (result != TG_OK && op->ctx != NULL)
        op->ctx->failures++;
    return result;
}
