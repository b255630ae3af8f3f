/*
 * Submission (tg_qat_internal.h): an operation becomes a request on the
 * worker's instance, or goes down the spill list when the ring is full, or
 * is finished in software when the device cannot take it. Also flush,
 * pending and drain of the keyprov contract. Worker thread only.
 */
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "core/tg_log.h"
#include "keyprov/tg_rsa_pad.h"
#include "providers/qat/tg_qat_internal.h"

static void tg_qat_count_spill(struct tg_qat_wstate *st, const struct tg_keyprov_ops *to)
{
    int slot = to != NULL ? tg_qat_registry_slot(to) : -1;
    if (slot >= 0)
        tg_ctr_inc(&st->st.spilled[slot]);
}

/* The ring is full: the first spill target that runs here takes the op;
 * software (tg_keyop_complete's fallback) when none does. */
static int tg_qat_spill(struct tg_qat_wstate *st, struct tg_keyop *op)
{
    const struct tg_qat_settings *s = tg_qat_settings_of(op);
    for (size_t i = 0; i < s->nspill; i++) {
        if (!s->spill_ok[i])
            continue;
        if (tg_keyprov_spill(op, s->spill[i]->name) == TG_OK) {
            tg_qat_count_spill(st, s->spill[i]);
            return op->state == TG_KEYOP_DONE ? TG_OK : TG_EPENDING;
        }
        if (op->state == TG_KEYOP_DONE)
            return TG_OK;
    }
    tg_qat_count_spill(st, tg_keyprov_find(TG_KEYPROV_FALLBACK));
    (void)tg_keyop_complete(op, TG_ELIMIT, TG_FALLBACK_RING_FULL);
    return TG_OK;
}

/* Not something the device does (or no key form for it): software, inline,
 * without calling it a fallback. */
static int tg_qat_inline_sw(struct tg_keyop *op)
{
    (void)tg_keyop_complete(op, tg_keyop_compute_sw(op), TG_FALLBACK_DEVICE_ERROR);
    return TG_OK;
}

/* The device could not take it: software, counted as a failed submit. */
static int tg_qat_submit_failed(struct tg_qat_wstate *st, struct tg_keyop *op)
{
    tg_ctr_inc(&st->st.c[TG_QAT_FAIL_SUBMIT]);
    (void)tg_keyop_complete(op, TG_EDEVICE, TG_FALLBACK_DEVICE_ERROR);
    return TG_OK;
}

/* A uniformly random nonce 0 < k < n, big-endian, nb bytes. */
static bool tg_qat_nonce(Cpa8U *k, const CpaFlatBuffer *n, size_t nb)
{
    for (int tries = 0; tries < 64; tries++) {
        if (RAND_priv_bytes(k, (int)nb) != 1)
            return false;
        bool zero = true;
        for (size_t i = 0; i < nb && zero; i++)
            zero = k[i] == 0;
        if (!zero && memcmp(k, n->pData, nb) < 0)
            return true;
    }
    return false;
}

/* Fill r's request data for op with key (r->pin holds the slab). TG_EUNAVAIL:
 * the encoder does not take this digest or salt, or no nonce: software. */
static int tg_qat_prepare(struct tg_qat_req *r, struct tg_qat_key *key, const struct tg_keyop *op)
{
    size_t nb = key->nbytes;
    r->kind = key->kind;
    r->status = CPA_STATUS_FAIL;
    r->mult = CPA_FALSE;
    if (key->kind == TG_QAT_RSA) {
        if (tg_rsa_pad_encode(r->pin, nb, key->bits, op->rsa_padding, op->md, op->mgf1_md,
                              op->pss_saltlen, op->in, op->inlen) != TG_OK)
            return TG_EUNAVAIL;
        r->od.rsa.pRecipientPrivateKey = &key->rsa;
        r->od.rsa.inputData.pData = r->pin;
        r->od.rsa.inputData.dataLenInBytes = (Cpa32U)nb;
        r->out.pData = r->pin + TG_QAT_OUT_OFF;
        r->out.dataLenInBytes = (Cpa32U)nb;
        return TG_OK;
    }
    /* X9.62: the leftmost order-length bytes of the digest (P-256 and P-384
     * orders are whole bytes), right-aligned when shorter. */
    size_t ml = op->inlen < nb ? op->inlen : nb;
    memset(r->pin, 0, nb);
    memcpy(r->pin + (nb - ml), op->in, ml);
    r->od.ec = key->ec;
    r->od.ec.m.pData = r->pin;
    r->od.ec.m.dataLenInBytes = (Cpa32U)nb;
    if (!tg_qat_nonce(r->pin + TG_QAT_K_OFF, &key->ec.n, nb))
        return TG_EUNAVAIL;
    r->od.ec.k.pData = r->pin + TG_QAT_K_OFF;
    r->od.ec.k.dataLenInBytes = (Cpa32U)nb;
    r->out.pData = r->pin + TG_QAT_OUT_OFF;
    r->out.dataLenInBytes = (Cpa32U)nb;
    r->s.pData = r->pin + TG_QAT_S_OFF;
    r->s.dataLenInBytes = (Cpa32U)nb;
    return TG_OK;
}

int tg_qat_submit(void *state, struct tg_keyop *op)
{
    struct tg_qat_wstate *st = state;
    const struct tg_qat_settings *s = tg_qat_settings_of(op);
    if (op->type != TG_KEYOP_RSA_SIGN && op->type != TG_KEYOP_ECDSA_SIGN)
        return tg_qat_inline_sw(op);
    if (st->broken)
        return tg_qat_submit_failed(st, op);
    if (op->binding != NULL && op->binding->poll_delay_ns < st->poll_ns)
        st->poll_ns = op->binding->poll_delay_ns < TG_QAT_MIN_POLL_NS ? TG_QAT_MIN_POLL_NS
                                                                      : op->binding->poll_delay_ns;
    struct tg_qat_key *key = NULL;
    int rc = tg_qat_key_get(st, op->pkey, &key);
    if (rc == TG_EUNAVAIL)
        return tg_qat_inline_sw(op);
    if (rc != TG_OK || (key->kind == TG_QAT_RSA) != (op->type == TG_KEYOP_RSA_SIGN))
        return tg_qat_submit_failed(st, op);
    if (st->ondev >= TG_QAT_MAX_INFLIGHT) {
        /* Our own bound (a device that keeps requests and never answers
         * must not grow the pool without limit): as good as a full ring. */
        tg_ctr_inc(&st->st.c[TG_QAT_RETRIED]);
        return tg_qat_spill(st, op);
    }
    struct tg_qat_req *r = tg_qat_req_get(st);
    if (r == NULL)
        return tg_qat_submit_failed(st, op);
    if (tg_qat_prepare(r, key, op) != TG_OK) {
        tg_qat_req_put(st, r);
        return tg_qat_inline_sw(op);
    }
    r->key = key;
    key->refs++;
    r->op = op;
    r->t_submit = tg_now_ns();
    r->poll_seq = st->poll_seq;
    r->deadline = r->t_submit + s->timeout_ns;
    CpaStatus cs;
    if (key->kind == TG_QAT_RSA)
        cs = tg_qat_g.api->cpaCyRsaDecrypt(st->inst, tg_qat_rsa_cb, r, &r->od.rsa, &r->out);
    else
        cs = tg_qat_g.api->cpaCyEcdsaSignRS(st->inst, tg_qat_ecdsa_cb, r, &r->od.ec,
                                            &r->sync_status, &r->out, &r->s);
    if (cs == CPA_STATUS_SUCCESS) {
        tg_qat_device_ok(st);
        tg_qat_dev_link(st, r);
        st->live++;
        op->prov_data = r;
        tg_ctr_inc(&st->st.c[TG_QAT_SUBMITTED]);
        tg_ctr_inc(&st->st.inflight_up);
        tg_qat_timeout_watch(st, r->deadline, r->t_submit);
        tg_qat_arm(st);
        return TG_EPENDING;
    }
    tg_qat_req_put(st, r);
    if (cs == CPA_STATUS_RETRY) {
        tg_ctr_inc(&st->st.c[TG_QAT_RETRIED]);
        return tg_qat_spill(st, op);
    }
    tg_qat_device_trouble(st, key->kind == TG_QAT_RSA ? "cpaCyRsaDecrypt" : "cpaCyEcdsaSignRS", cs);
    return tg_qat_submit_failed(st, op);
}

void tg_qat_flush(void *state)
{
    struct tg_qat_wstate *st = state;
    if (st->live == 0)
        return; /* nothing waits; abandoned requests are the timer's */
    tg_qat_count_batch(st, tg_qat_poll(st, NULL), TG_FLUSH_IDLE);
    tg_qat_arm(st);
}

size_t tg_qat_pending(void *state)
{
    return ((struct tg_qat_wstate *)state)->live;
}

static void tg_qat_sleep_us(long us)
{
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

/*
 * Shutdown (the loop has stopped): give the device until each op's own
 * deadline, polling, then finish what is left in software; cancelled ops end
 * at once. Then keep polling (bounded) so that abandoned requests come back
 * and their buffers can be reused or freed.
 */
void tg_qat_drain(void *state)
{
    struct tg_qat_wstate *st = state;
    tg_qat_take_inbox(st);
    for (struct tg_qat_req *r = st->dev_head; r != NULL; r = r->next) {
        struct tg_keyop *op = r->op;
        if (op != NULL && op->ctx != NULL && op->ctx->cancelled) {
            r->op = NULL;
            op->prov_data = NULL;
            st->live--;
            (void)tg_keyop_complete(op, TG_ECANCELED, TG_FALLBACK_TIMEOUT);
        }
    }
    while (st->live > 0) {
        tg_qat_poll(st, NULL);
        tg_qat_take_inbox(st);
        tg_qat_expire(st, tg_now_ns());
        if (st->live > 0)
            tg_qat_sleep_us(20);
    }
    /* A device that answers polls with an error has let go of its
     * requests' fate: no point waiting; they stay owned until qatlib stops. */
    uint64_t until = tg_now_ns() + TG_QAT_DRAIN_MAX_NS;
    while (st->ondev > 0 && tg_now_ns() < until) {
        CpaStatus ps = CPA_STATUS_SUCCESS;
        tg_qat_poll(st, &ps);
        tg_qat_take_inbox(st);
        if (ps != CPA_STATUS_SUCCESS && ps != CPA_STATUS_RETRY)
            break;
        if (st->ondev > 0)
            tg_qat_sleep_us(50);
    }
    ev_timer_stop(st->loop, &st->timeout_timer);
    st->timeout_at = 0;
    tg_qat_timer_clear(st);
}
