/*
 * Tokens, their signing threads, queues and recovery. Contract in
 * tg_p11_pool.h.
 */
#include "providers/pkcs11/tg_p11_pool.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/tg_log.h"
#include "core/tg_time.h"

#define TG_P11_MAX_THREADS   64
#define TG_P11_BACKOFF_MIN   (100 * TG_NS_PER_MS)
#define TG_P11_BACKOFF_MAX   (5 * TG_NS_PER_S)
#define TG_P11_JOIN_DEADLINE (2 * TG_NS_PER_S)

/* Process-wide registry: written on the main thread at start-up, read-only
 * while workers run, torn down by tg_p11_pool_shutdown. */
struct tg_p11_modent {
    struct tg_p11_module *mod;
    bool stuck; /* a signing thread never returned: do not finalise or unload */
    struct tg_p11_modent *next;
};
static struct tg_p11_modent *tg_p11_mods;
static struct tg_p11_token *tg_p11_toks;

const char *tg_p11_result_name(enum tg_p11_result r)
{
    static const char *const names[] = {
#define TG_P11_RESULT_NAME(id, label) label,
        TG_P11_RESULTS(TG_P11_RESULT_NAME)
#undef TG_P11_RESULT_NAME
    };
    return (unsigned)r < TG_P11_R_COUNT ? names[r] : "unknown";
}

void tg_p11_key_unref(void *vk)
{
    struct tg_p11_key *k = vk;
    if (k == NULL || atomic_fetch_sub_explicit(&k->refs, 1, memory_order_acq_rel) != 1)
        return;
    EVP_PKEY_free(k->pub);
    free(k);
}

struct tg_p11_token *tg_p11_tokens(void)
{
    return tg_p11_toks;
}

/* ---- start-up ---- */

static int tg_p11_module_get(const char *path, struct tg_p11_module **out, char *why, size_t whylen)
{
    for (struct tg_p11_modent *e = tg_p11_mods; e != NULL; e = e->next) {
        if (strcmp(e->mod->path, path) == 0) {
            *out = e->mod;
            return TG_OK;
        }
    }
    struct tg_p11_modent *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return TG_ENOMEM;
    int rc = tg_p11_module_open(path, &e->mod, why, whylen);
    if (rc != TG_OK) {
        free(e);
        return rc;
    }
    /* The same file under another name: one module, initialised once. */
    for (struct tg_p11_modent *o = tg_p11_mods; o != NULL; o = o->next) {
        if (o->mod->f == e->mod->f) {
            e->mod->finalize = false;
            tg_p11_module_close(e->mod);
            free(e);
            *out = o->mod;
            return TG_OK;
        }
    }
    e->next = tg_p11_mods;
    tg_p11_mods = e;
    *out = e->mod;
    return TG_OK;
}

static void tg_p11_token_free(struct tg_p11_token *t)
{
    if (t == NULL)
        return;
    if (t->have_login_session)
        (void)t->mod->f->C_CloseSession(t->login_session);
    while (t->keys != NULL) {
        struct tg_p11_key *k = t->keys;
        t->keys = k->next;
        tg_p11_key_unref(k);
    }
    while (t->qhead != NULL) {
        struct tg_p11_req *r = t->qhead;
        t->qhead = r->next;
        free(r);
    }
    tg_p11_pin_clear(&t->pin);
    pthread_mutex_destroy(&t->lock);
    pthread_mutex_destroy(&t->login_lock);
    pthread_cond_destroy(&t->cond);
    free(t->threads);
    free(t);
}

int tg_p11_token_get(const char *module_path, const struct tg_p11_uri *u,
                     const struct tg_p11_pin *pin, struct tg_p11_token **out, char *why,
                     size_t whylen)
{
    *out = NULL;
    struct tg_p11_module *m = NULL;
    TG_GUARD(tg_p11_module_get(module_path, &m, why, whylen));
    CK_SLOT_ID slot;
    CK_TOKEN_INFO ti;
    TG_GUARD(tg_p11_find_slot(m, u, &slot, &ti, why, whylen));
    for (struct tg_p11_token *t = tg_p11_toks; t != NULL; t = t->next) {
        if (t->mod == m && t->slot == slot) {
            *out = t;
            return TG_OK;
        }
    }
    struct tg_p11_token *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return TG_ENOMEM;
    pthread_mutex_init(&t->lock, NULL);
    pthread_mutex_init(&t->login_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cond, &ca);
    pthread_condattr_destroy(&ca);
    t->mod = m;
    t->slot = slot;
    t->info = ti;
    t->uri = *u;
    t->uri.has_object = t->uri.has_id = false;
    t->uri.type = TG_P11_OBJ_ANY;
    tg_p11_token_label(&ti, t->label, sizeof(t->label));
    t->state = TG_P11_UP;
    t->backoff_ns = TG_P11_BACKOFF_MIN;
    t->threads = calloc(TG_P11_MAX_THREADS, sizeof(*t->threads));
    int rc = t->threads == NULL ? TG_ENOMEM : tg_p11_pin_copy(&t->pin, pin);
    if (rc != TG_OK)
        goto out;
    char name[40];
    CK_RV rv = m->f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &t->login_session);
    if (rv != CKR_OK) {
        snprintf(why, whylen, "token '%s': C_OpenSession failed: %s", t->label,
                 tg_p11_ckr_text(rv, name, sizeof(name)));
        rc = TG_EDEVICE;
        goto out;
    }
    t->have_login_session = true;
    atomic_fetch_add(&t->sessions_opened, 1);
    rv = tg_p11_login(m, t->login_session, &ti, &t->pin, why, whylen);
    if (rv != CKR_OK) {
        rc = TG_ECONFIG;
        goto out;
    }
    atomic_fetch_add(&t->logins, 1);
    t->next = tg_p11_toks;
    tg_p11_toks = t;
    *out = t;
    t = NULL;
out:
    tg_p11_token_free(t);
    return rc;
}

void tg_p11_token_add_key(struct tg_p11_token *t, struct tg_p11_key *k)
{
    k->token = t;
    k->next = t->keys;
    t->keys = k;
}

/* ---- signing ---- */

/* The token's answer to one C_SignInit + C_Sign of r on session s. */
static CK_RV tg_p11_sign_once(struct tg_p11_token *t, CK_SESSION_HANDLE s, struct tg_p11_req *r,
                              struct tg_hist *hist)
{
    struct tg_p11_key *k = r->key;
    pthread_mutex_lock(&t->lock);
    CK_OBJECT_HANDLE h = k->handle;
    pthread_mutex_unlock(&t->lock);
    struct tg_p11_call call;
    if (tg_p11_prepare(&r->sig, &k->plan, k->bits, &call) != TG_OK)
        return CKR_ARGUMENTS_BAD;
    unsigned char raw[512];
    CK_ULONG rawlen = sizeof(raw);
    uint64_t t0 = tg_now_ns();
    CK_RV rv = t->mod->f->C_SignInit(s, &call.mech, h);
    if (rv == CKR_OK)
        rv = t->mod->f->C_Sign(s, call.data, (CK_ULONG)call.datalen, raw, &rawlen);
    if (hist != NULL)
        tg_hist_record(hist, &tg_hist_latency_us, (tg_now_ns() - t0) / 1000);
    OPENSSL_cleanse(call.data, sizeof(call.data));
    if (rv != CKR_OK)
        return rv;
    if (tg_p11_finish(&r->sig, k->bits, raw, rawlen, r->out, sizeof(r->out), &r->outlen) != TG_OK)
        return CKR_FUNCTION_FAILED; /* an answer of the wrong shape */
    return CKR_OK;
}

static void tg_p11_count_error(struct tg_p11_token *t, CK_RV rv)
{
    atomic_fetch_add(&t->errors[tg_p11_ckr_index(rv)], 1);
}

/* First device/session error: every request fails at once until a signing
 * thread has found the token again. */
static void tg_p11_token_down(struct tg_p11_token *t, CK_RV rv)
{
    char name[40];
    pthread_mutex_lock(&t->lock);
    if (t->state == TG_P11_UP) {
        t->state = TG_P11_DOWN;
        t->down_rv = rv;
        t->gen++;
        t->backoff_ns = TG_P11_BACKOFF_MIN;
        t->retry_at_ns = tg_now_ns() + t->backoff_ns;
        atomic_fetch_add(&t->downs, 1);
        TG_WARN("pkcs11: token '%s': %s: token unavailable; handshakes with its keys fail until "
                "it is back (retrying every 0.1..5 s)",
                t->label, tg_p11_ckr_text(rv, name, sizeof(name)));
    }
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

/* A login refused for its PIN: never try again (the PIN would lock). */
static void tg_p11_token_failed(struct tg_p11_token *t, const char *why)
{
    pthread_mutex_lock(&t->lock);
    if (t->state != TG_P11_FAILED)
        TG_ERROR("pkcs11: %s; no further login will be attempted (that could lock the PIN): "
                 "handshakes with its keys fail until tlsgate restarts",
                 why);
    t->state = TG_P11_FAILED;
    t->gen++;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

/* Whether to log that the PIN could not be read (login_lock held): at most
 * once a second, however many requests try. */
static bool tg_p11_pin_warn_due(struct tg_p11_token *t)
{
    uint64_t now = tg_now_ns();
    if (t->pin_warn_ns != 0 && now - t->pin_warn_ns < TG_NS_PER_S)
        return false;
    t->pin_warn_ns = now;
    return true;
}

/* Log in again after CKR_USER_NOT_LOGGED_IN, on session s. */
static bool tg_p11_relogin(struct tg_p11_token *t, CK_SESSION_HANDLE s)
{
    char why[400] = "";
    pthread_mutex_lock(&t->login_lock);
    CK_RV rv = tg_p11_login(t->mod, s, &t->info, &t->pin, why, sizeof(why));
    bool warn = rv == CKR_ARGUMENTS_BAD && tg_p11_pin_warn_due(t);
    pthread_mutex_unlock(&t->login_lock);
    if (rv == CKR_ARGUMENTS_BAD) {
        /* The PIN could not be read (its file missing or being replaced):
         * the token was not asked, so nothing can lock. This request
         * fails; the next one tries again. */
        if (warn)
            TG_WARN("pkcs11: %s; not logged in: handshakes on the token's keys fail until it "
                    "can be read",
                    why);
        return false;
    }
    atomic_fetch_add(&t->logins, 1);
    if (rv == CKR_OK) {
        TG_INFO("pkcs11: token '%s': logged in again after CKR_USER_NOT_LOGGED_IN", t->label);
        return true;
    }
    tg_p11_count_error(t, rv);
    if (tg_p11_pin_refused(rv))
        tg_p11_token_failed(t, why);
    else
        TG_WARN("pkcs11: %s", why);
    return false;
}

/* The thread's session, (re)opened if the token's sessions were reset.
 * TG_P11_R_OK, TG_P11_R_TOKEN_DOWN (it was down already) or
 * TG_P11_R_TOKEN_ERROR (opening failed now: *rv). */
static enum tg_p11_result tg_p11_session(struct tg_p11_thread *th, CK_RV *rv)
{
    struct tg_p11_token *t = th->token;
    pthread_mutex_lock(&t->lock);
    unsigned gen = t->gen;
    CK_SLOT_ID slot = t->slot;
    enum tg_p11_token_state state = t->state;
    *rv = t->down_rv;
    pthread_mutex_unlock(&t->lock);
    if (state != TG_P11_UP)
        return TG_P11_R_TOKEN_DOWN;
    if (th->have_session && th->gen == gen)
        return TG_P11_R_OK;
    if (th->have_session)
        (void)t->mod->f->C_CloseSession(th->session);
    th->have_session = false;
    *rv = t->mod->f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &th->session);
    if (*rv != CKR_OK) {
        tg_p11_count_error(t, *rv);
        tg_p11_token_down(t, *rv);
        return TG_P11_R_TOKEN_ERROR;
    }
    atomic_fetch_add(&t->sessions_opened, 1);
    th->have_session = true;
    th->gen = gen;
    return TG_P11_R_OK;
}

/* Sign r on the thread's session: relogin or refind once, then give up. */
static void tg_p11_run(struct tg_p11_thread *th, struct tg_p11_req *r)
{
    struct tg_p11_token *t = th->token;
    for (int attempt = 0;; attempt++) {
        CK_RV rv;
        enum tg_p11_result sr = tg_p11_session(th, &rv);
        if (sr != TG_P11_R_OK) {
            r->result = sr;
            r->rv = rv;
            return;
        }
        rv = tg_p11_sign_once(t, th->session, r, &th->sign_us);
        enum tg_p11_action act = tg_p11_classify(rv);
        if (act == TG_P11_ACT_OK) {
            bool ok =
                !r->key->verify || tg_p11_verify(r->key->pub, &r->sig, r->out, r->outlen) == TG_OK;
            r->result = ok ? TG_P11_R_OK : TG_P11_R_VERIFY_FAILED;
            return;
        }
        tg_p11_count_error(t, rv);
        r->result = TG_P11_R_TOKEN_ERROR;
        r->rv = rv;
        if (attempt == 0 && act == TG_P11_ACT_RELOGIN && tg_p11_relogin(t, th->session))
            continue;
        if (attempt == 0 && act == TG_P11_ACT_REFIND) {
            CK_OBJECT_HANDLE h;
            CK_RV frv = tg_p11_find_again(t->mod, th->session, &r->key->ref, &h);
            if (frv == CKR_OK) {
                pthread_mutex_lock(&t->lock);
                r->key->handle = h;
                pthread_mutex_unlock(&t->lock);
                continue;
            }
            /* The object is gone (token re-initialised or removed). */
            act = TG_P11_ACT_TOKEN_DOWN;
        }
        if (act == TG_P11_ACT_TOKEN_DOWN)
            tg_p11_token_down(t, rv);
        return;
    }
}

void tg_p11_sign_now(struct tg_p11_token *t, struct tg_p11_req *r)
{
    pthread_mutex_lock(&t->login_lock);
    CK_RV rv = tg_p11_sign_once(t, t->login_session, r, NULL);
    pthread_mutex_unlock(&t->login_lock);
    r->rv = rv;
    if (rv != CKR_OK)
        r->result = TG_P11_R_TOKEN_ERROR;
    else if (tg_p11_verify(r->key->pub, &r->sig, r->out, r->outlen) != TG_OK)
        r->result = TG_P11_R_VERIFY_FAILED;
    else
        r->result = TG_P11_R_OK;
}

/* ---- recovery ---- */

/* Find the token again, open a login session, log in, find every key. */
static bool tg_p11_recover(struct tg_p11_token *t)
{
    char why[600] = "", name[40];
    CK_SLOT_ID slot;
    CK_TOKEN_INFO ti;
    if (tg_p11_find_slot(t->mod, &t->uri, &slot, &ti, why, sizeof(why)) != TG_OK) {
        TG_DEBUG("pkcs11: token '%s' not back yet: %s", t->label, why);
        return false;
    }
    bool ok = false;
    CK_OBJECT_HANDLE handles[64];
    size_t nk = 0;
    pthread_mutex_lock(&t->login_lock);
    if (t->have_login_session)
        (void)t->mod->f->C_CloseSession(t->login_session);
    t->have_login_session = false;
    CK_RV rv = t->mod->f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &t->login_session);
    if (rv != CKR_OK) {
        TG_DEBUG("pkcs11: token '%s' not back yet: C_OpenSession: %s", t->label,
                 tg_p11_ckr_text(rv, name, sizeof(name)));
        goto out;
    }
    t->have_login_session = true;
    atomic_fetch_add(&t->sessions_opened, 1);
    rv = tg_p11_login(t->mod, t->login_session, &ti, &t->pin, why, sizeof(why));
    if (rv == CKR_ARGUMENTS_BAD) {
        /* The PIN could not be read: C_Login was not called; try again. */
        if (tg_p11_pin_warn_due(t))
            TG_WARN("pkcs11: %s; the token stays down until it can be read", why);
        goto out;
    }
    atomic_fetch_add(&t->logins, 1);
    if (rv != CKR_OK) {
        tg_p11_count_error(t, rv);
        if (tg_p11_pin_refused(rv)) {
            pthread_mutex_unlock(&t->login_lock);
            tg_p11_token_failed(t, why);
            return false;
        }
        TG_DEBUG("pkcs11: token '%s' not back yet: %s", t->label, why);
        goto out;
    }
    for (struct tg_p11_key *k = t->keys; k != NULL && nk < TG_ARRAY_LEN(handles); k = k->next) {
        rv = tg_p11_find_again(t->mod, t->login_session, &k->ref, &handles[nk++]);
        if (rv != CKR_OK) {
            TG_DEBUG("pkcs11: token '%s' is back but key '%s' is not: %s", t->label, k->uri,
                     tg_p11_ckr_text(rv, name, sizeof(name)));
            goto out;
        }
    }
    ok = true;
out:
    pthread_mutex_unlock(&t->login_lock);
    if (!ok)
        return false;
    pthread_mutex_lock(&t->lock);
    t->slot = slot;
    t->info = ti;
    nk = 0;
    for (struct tg_p11_key *k = t->keys; k != NULL && nk < TG_ARRAY_LEN(handles); k = k->next)
        k->handle = handles[nk++];
    pthread_mutex_unlock(&t->lock);
    return true;
}

/* ---- the signing threads ---- */

/* Hand a finished request to its worker (token->lock held). */
static void tg_p11_deliver_locked(struct tg_p11_token *t, struct tg_p11_req *r)
{
    struct tg_p11_inbox *in = r->inbox;
    if (in == NULL) {
        OPENSSL_cleanse(r, sizeof(*r)); /* the worker gave up on it */
        free(r);
        return;
    }
    atomic_fetch_add(&t->results[r->result], 1);
    r->state = TG_P11_REQ_DONE;
    r->next = NULL;
    pthread_mutex_lock(&in->lock);
    if (in->tail != NULL)
        in->tail->next = r;
    else
        in->head = r;
    in->tail = r;
    pthread_cond_signal(&in->cond);
    /* Still under in->lock: once the worker has taken its last request
     * (under that lock) it may free the inbox, so nothing here may touch
     * `in` after the unlock. */
    ev_async_send(in->loop, &in->async);
    pthread_mutex_unlock(&in->lock);
}

static void tg_p11_wait_until(struct tg_p11_token *t, uint64_t at_ns)
{
    struct timespec ts = {(time_t)(at_ns / TG_NS_PER_S), (long)(at_ns % TG_NS_PER_S)};
    pthread_cond_timedwait(&t->cond, &t->lock, &ts);
}

static void *tg_p11_thread_main(void *arg)
{
    struct tg_p11_thread *th = arg;
    struct tg_p11_token *t = th->token;
    char tag[16];
    snprintf(tag, sizeof(tag), "p11-%zu", (size_t)(th - t->threads));
    tg_log_set_thread_tag(tag);
    pthread_mutex_lock(&t->lock);
    while (!t->stop) {
        uint64_t now = tg_now_ns();
        if (t->state == TG_P11_DOWN && !t->recovering && now >= t->retry_at_ns) {
            t->recovering = true;
            pthread_mutex_unlock(&t->lock);
            bool ok = tg_p11_recover(t);
            pthread_mutex_lock(&t->lock);
            t->recovering = false;
            if (ok && t->state == TG_P11_DOWN) {
                t->state = TG_P11_UP;
                t->gen++;
                t->backoff_ns = TG_P11_BACKOFF_MIN;
                atomic_fetch_add(&t->recoveries, 1);
                TG_INFO("pkcs11: token '%s' is back: sessions reopened, keys found again",
                        t->label);
            } else if (t->state == TG_P11_DOWN) {
                t->backoff_ns =
                    t->backoff_ns * 2 > TG_P11_BACKOFF_MAX ? TG_P11_BACKOFF_MAX : t->backoff_ns * 2;
                t->retry_at_ns = tg_now_ns() + t->backoff_ns;
            }
            pthread_cond_broadcast(&t->cond);
            continue;
        }
        struct tg_p11_req *r = t->qhead;
        if (r != NULL) {
            t->qhead = r->next;
            if (t->qhead == NULL)
                t->qtail = NULL;
            t->queued--;
            if (t->state != TG_P11_UP) {
                r->result = TG_P11_R_TOKEN_DOWN;
                r->rv = t->down_rv;
                tg_p11_deliver_locked(t, r);
                continue;
            }
            r->state = TG_P11_REQ_RUNNING;
            t->signing++;
            pthread_mutex_unlock(&t->lock);
            tg_p11_run(th, r);
            pthread_mutex_lock(&t->lock);
            t->signing--;
            tg_p11_deliver_locked(t, r);
            continue;
        }
        if (t->state == TG_P11_DOWN && !t->recovering)
            tg_p11_wait_until(t, t->retry_at_ns);
        else
            pthread_cond_wait(&t->cond, &t->lock);
    }
    pthread_mutex_unlock(&t->lock);
    if (th->have_session)
        (void)t->mod->f->C_CloseSession(th->session);
    th->have_session = false;
    return NULL;
}

int tg_p11_token_start(struct tg_p11_token *t, size_t threads, size_t max_queue, char *why,
                       size_t whylen)
{
    if (max_queue > t->max_queue)
        t->max_queue = max_queue;
    if (threads > TG_P11_MAX_THREADS)
        threads = TG_P11_MAX_THREADS;
    while (t->nthreads < threads) {
        struct tg_p11_thread *th = &t->threads[t->nthreads];
        th->token = t;
        int e = pthread_create(&th->tid, NULL, tg_p11_thread_main, th);
        if (e != 0) {
            snprintf(why, whylen, "token '%s': cannot start a signing thread: %s", t->label,
                     strerror(e));
            return TG_ENOMEM;
        }
        th->started = true;
        t->nthreads++;
    }
    return TG_OK;
}

/* ---- worker side ---- */

int tg_p11_enqueue(struct tg_p11_req *r)
{
    struct tg_p11_token *t = r->key->token;
    int rc = TG_OK;
    pthread_mutex_lock(&t->lock);
    if (t->state != TG_P11_UP) {
        r->result = TG_P11_R_TOKEN_DOWN;
        r->rv = t->down_rv;
        rc = TG_EDEVICE;
    } else if (t->queued >= t->max_queue) {
        r->result = TG_P11_R_QUEUE_FULL;
        rc = TG_ELIMIT;
    } else {
        r->state = TG_P11_REQ_QUEUED;
        r->next = NULL;
        if (t->qtail != NULL)
            t->qtail->next = r;
        else
            t->qhead = r;
        t->qtail = r;
        t->queued++;
        pthread_cond_signal(&t->cond);
    }
    if (rc != TG_OK)
        atomic_fetch_add(&t->results[r->result], 1);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

enum tg_p11_abandon tg_p11_abandon(struct tg_p11_req *r)
{
    struct tg_p11_token *t = r->key->token;
    enum tg_p11_abandon what;
    pthread_mutex_lock(&t->lock);
    switch (r->state) {
    case TG_P11_REQ_QUEUED: {
        struct tg_p11_req **pp = &t->qhead, *prev = NULL;
        while (*pp != NULL && *pp != r) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        if (*pp == r) {
            *pp = r->next;
            if (t->qtail == r)
                t->qtail = prev;
            t->queued--;
        }
        r->inbox = NULL;
        what = TG_P11_DROPPED;
        break;
    }
    case TG_P11_REQ_RUNNING:
        r->inbox = NULL;
        what = TG_P11_DETACHED;
        break;
    default:
        what = TG_P11_ALREADY_DONE;
        break;
    }
    pthread_mutex_unlock(&t->lock);
    return what;
}

/* ---- shutdown ---- */

void tg_p11_pool_shutdown(void)
{
    for (struct tg_p11_token *t = tg_p11_toks; t != NULL; t = t->next) {
        pthread_mutex_lock(&t->lock);
        t->stop = true;
        pthread_cond_broadcast(&t->cond);
        pthread_mutex_unlock(&t->lock);
    }
    /* pthread_timedjoin_np's deadline is on CLOCK_REALTIME; one for all. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(TG_P11_JOIN_DEADLINE / TG_NS_PER_S);
    while (tg_p11_toks != NULL) {
        struct tg_p11_token *t = tg_p11_toks;
        tg_p11_toks = t->next;
        bool stuck = false;
        for (size_t i = 0; i < t->nthreads; i++) {
            if (!t->threads[i].started)
                continue;
            int e = pthread_timedjoin_np(t->threads[i].tid, NULL, &ts);
            if (e != 0) {
                /* Blocked in the module: leave it be, and the module loaded. */
                TG_WARN("pkcs11: token '%s': a signing thread did not return from the module "
                        "within 2 s; leaving the module loaded",
                        t->label);
                pthread_detach(t->threads[i].tid);
                stuck = true;
            }
        }
        for (struct tg_p11_modent *e = tg_p11_mods; e != NULL && stuck; e = e->next)
            e->stuck = e->stuck || e->mod == t->mod;
        if (!stuck)
            tg_p11_token_free(t); /* else its memory stays with the thread */
    }
    while (tg_p11_mods != NULL) {
        struct tg_p11_modent *e = tg_p11_mods;
        tg_p11_mods = e->next;
        if (!e->stuck)
            tg_p11_module_close(e->mod);
        free(e);
    }
}
