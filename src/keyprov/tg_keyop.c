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
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <string.h>

#include "core/tg_log.h"
#include "core/tg_time.h"
#include "keyprov/tg_keyprov.h"
#include "keyprov/tg_keyprov_internal.h"

#define TG_SW_PROPQ "provider=default"

const char *tg_keyop_type_name(enum tg_keyop_type t)
{
    static const char *const names[] = {
#define TG_KEYOP_NAME(id, label) label,
        TG_KEYOP_TYPES(TG_KEYOP_NAME)
#undef TG_KEYOP_NAME
    };
    return (unsigned)t < TG_KEYOP_TYPE_COUNT ? names[t] : "unknown";
}

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

/* ---- software computation (default provider) ---- */

/* Per-thread keygen contexts: EVP_PKEY_keygen may be called repeatedly on an
 * initialised context, which saves a fetch and an allocation per handshake. */
static _Thread_local EVP_PKEY_CTX *tg_sw_keygen_ctx[TG_GROUP_COUNT];

/* Per-thread signing contexts, by key and parameters: EVP_PKEY_sign may be
 * called again on an initialised context (PSS draws a fresh salt each time),
 * which saves the algorithm fetch, the property look-ups and two allocations
 * per signature. A handful of entries covers every certificate of a worker;
 * a miss simply builds a new context. */
#define TG_SW_SIGN_CACHE 8
struct tg_sw_sign_entry {
    EVP_PKEY *key; /* referenced by ctx */
    const EVP_MD *md;
    const EVP_MD *mgf1;
    int padding;
    int saltlen;
    EVP_PKEY_CTX *ctx;
};
static _Thread_local struct tg_sw_sign_entry tg_sw_sign_cache[TG_SW_SIGN_CACHE];
static _Thread_local unsigned tg_sw_sign_next;

void tg_keyop_sw_thread_cleanup(void)
{
    for (int g = 0; g < TG_GROUP_COUNT; g++) {
        EVP_PKEY_CTX_free(tg_sw_keygen_ctx[g]);
        tg_sw_keygen_ctx[g] = NULL;
    }
    for (int i = 0; i < TG_SW_SIGN_CACHE; i++) {
        EVP_PKEY_CTX_free(tg_sw_sign_cache[i].ctx);
        memset(&tg_sw_sign_cache[i], 0, sizeof(tg_sw_sign_cache[i]));
    }
}

static EVP_PKEY_CTX *tg_sw_sign_ctx(const struct tg_keyop *op)
{
    bool rsa = op->type == TG_KEYOP_RSA_SIGN;
    const EVP_MD *mgf1 =
        rsa && op->rsa_padding == TG_RSA_PAD_PSS ? (op->mgf1_md ? op->mgf1_md : op->md) : NULL;
    int saltlen = rsa && op->rsa_padding == TG_RSA_PAD_PSS ? op->pss_saltlen : 0;
    for (int i = 0; i < TG_SW_SIGN_CACHE; i++) {
        struct tg_sw_sign_entry *e = &tg_sw_sign_cache[i];
        if (e->ctx != NULL && e->key == op->pkey->sw && e->md == (rsa ? op->md : NULL) &&
            e->padding == (rsa ? op->rsa_padding : 0) && e->saltlen == saltlen && e->mgf1 == mgf1)
            return e->ctx;
    }
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, op->pkey->sw, TG_SW_PROPQ);
    if (ctx == NULL || EVP_PKEY_sign_init(ctx) <= 0)
        goto fail;
    if (rsa && (EVP_PKEY_CTX_set_rsa_padding(ctx, op->rsa_padding) <= 0 ||
                EVP_PKEY_CTX_set_signature_md(ctx, op->md) <= 0))
        goto fail;
    if (mgf1 != NULL && (EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, saltlen) <= 0 ||
                         EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, mgf1) <= 0))
        goto fail;
    struct tg_sw_sign_entry *e = &tg_sw_sign_cache[tg_sw_sign_next++ % TG_SW_SIGN_CACHE];
    EVP_PKEY_CTX_free(e->ctx);
    *e = (struct tg_sw_sign_entry){
        op->pkey->sw, rsa ? op->md : NULL, mgf1, rsa ? op->rsa_padding : 0, saltlen, ctx};
    return ctx;
fail:
    EVP_PKEY_CTX_free(ctx);
    return NULL;
}

static EVP_PKEY_CTX *tg_sw_keygen_ctx_get(enum tg_group g)
{
    if (tg_sw_keygen_ctx[g] != NULL)
        return tg_sw_keygen_ctx[g];
    EVP_PKEY_CTX *ctx =
        EVP_PKEY_CTX_new_from_name(NULL, g == TG_GROUP_X25519 ? "X25519" : "EC", TG_SW_PROPQ);
    if (ctx == NULL || EVP_PKEY_keygen_init(ctx) <= 0 ||
        (g != TG_GROUP_X25519 && EVP_PKEY_CTX_set_group_name(ctx, tg_group_name(g)) <= 0)) {
        EVP_PKEY_CTX_free(ctx);
        return NULL;
    }
    tg_sw_keygen_ctx[g] = ctx;
    return ctx;
}

/* RSA (PKCS#1 v1.5 or PSS) and ECDSA signatures of op->in. */
static int tg_sw_sign(struct tg_keyop *op)
{
    EVP_PKEY_CTX *ctx = tg_sw_sign_ctx(op);
    size_t outlen = sizeof(op->out);
    if (ctx == NULL || EVP_PKEY_sign(ctx, op->out, &outlen, op->in, op->inlen) <= 0)
        return TG_ECRYPTO;
    op->outlen = outlen;
    return TG_OK;
}

static int tg_sw_kx_keygen(struct tg_keyop *op)
{
    struct tg_kxkey *k = op->kx;
    EVP_PKEY *pk = NULL;
    BIGNUM *priv = NULL;
    int rc = TG_ECRYPTO;
    EVP_PKEY_CTX *ctx = tg_sw_keygen_ctx_get(k->group);
    if (ctx == NULL || EVP_PKEY_keygen(ctx, &pk) <= 0)
        goto out;
    k->privlen = tg_group_privlen(k->group);
    if (k->group == TG_GROUP_X25519) {
        size_t pl = 32, ql = 32;
        if (!EVP_PKEY_get_raw_private_key(pk, k->priv, &pl) ||
            !EVP_PKEY_get_raw_public_key(pk, k->pub, &ql) || pl != 32 || ql != 32)
            goto out;
        k->publen = 32;
    } else {
        if (!EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_PRIV_KEY, &priv) ||
            BN_bn2binpad(priv, k->priv, (int)k->privlen) < 0 ||
            !EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, k->pub,
                                             sizeof(k->pub), &k->publen) ||
            k->publen != tg_group_publen(k->group))
            goto out;
    }
    EVP_PKEY_free(k->sw);
    k->sw = pk; /* keep the twin: derive needs it and rebuilding costs a scalar mult */
    pk = NULL;
    k->has_priv = k->has_pub = true;
    rc = TG_OK;
out:
    BN_clear_free(priv);
    EVP_PKEY_free(pk);
    return rc;
}

static int tg_sw_kx_derive(struct tg_keyop *op)
{
    int rc = TG_ECRYPTO;
    EVP_PKEY *mine = tg_kxkey_sw(op->kx);
    EVP_PKEY *peer = tg_kxkey_sw((struct tg_kxkey *)op->peer);
    EVP_PKEY_CTX *ctx = NULL;
    size_t outlen = sizeof(op->out);
    if (mine == NULL || peer == NULL)
        goto out;
    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, mine, TG_SW_PROPQ);
    /* The peer share was validated when it was set (tg_kxkey_set_public);
     * skip the second, costlier public-key check. */
    if (ctx == NULL || EVP_PKEY_derive_init(ctx) <= 0 ||
        EVP_PKEY_derive_set_peer_ex(ctx, peer, 0) <= 0 ||
        EVP_PKEY_derive(ctx, op->out, &outlen) <= 0) {
        rc = TG_EPROTO; /* e.g. an all-zero X25519 result from a low-order point */
        goto out;
    }
    op->outlen = outlen;
    rc = TG_OK;
out:
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

int tg_keyop_compute_sw(struct tg_keyop *op)
{
    int rc;
    switch (op->type) {
    case TG_KEYOP_RSA_SIGN:
        rc = op->pkey && op->pkey->type == TG_PKEY_RSA && op->md ? tg_sw_sign(op) : TG_EINVAL;
        break;
    case TG_KEYOP_ECDSA_SIGN:
        rc = op->pkey && op->pkey->type == TG_PKEY_EC ? tg_sw_sign(op) : TG_EINVAL;
        break;
    case TG_KEYOP_KX_KEYGEN:
        rc = op->kx ? tg_sw_kx_keygen(op) : TG_EINVAL;
        break;
    case TG_KEYOP_KX_DERIVE:
        rc = op->kx && op->peer ? tg_sw_kx_derive(op) : TG_EINVAL;
        break;
    default:
        rc = TG_EINVAL;
    }
    if (rc != TG_OK) {
        op->outlen = 0;
        tg_log_openssl_errors(TG_LOG_DEBUG, "software key operation");
    }
    op->result = rc;
    return rc;
}

/* ---- lifecycle ---- */

static bool tg_keyop_is_provider_failure(int result)
{
    return result == TG_EDEVICE || result == TG_ETIMEOUT || result == TG_ELIMIT;
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
    if (result != TG_OK && tg_keyop_is_provider_failure(result)) {
        /* Runtime fallback: the software key is always at hand. */
        if (op->stats != NULL && (unsigned)reason < TG_FALLBACK_REASON_COUNT)
            tg_ctr_inc(&op->stats->fallbacks[reason]);
        TG_DEBUG("key operation %s: provider failed (%s), finishing in software",
                 tg_keyop_type_name(op->type), tg_strerror(result));
        result = tg_keyop_compute_sw(op);
        op->fell_back = true;
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
