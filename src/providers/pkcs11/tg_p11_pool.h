/*
 * tg_p11_pool: the tokens the pkcs11 provider uses, their signing threads
 * and their queues.
 *
 * One struct tg_p11_token per (module, token), process-wide, made at
 * start-up by the first certificate that names it. It owns:
 *   - a login session, opened and logged in (CKU_USER) once at start-up;
 *     PKCS#11 login state is per application and token, so the signing
 *     threads' own sessions are user sessions too;
 *   - `threads` signing threads, each with its own session, because C_Sign
 *     blocks and a session is single-threaded;
 *   - a bounded FIFO of requests (max_queue), fed by the workers.
 *
 * A request (struct tg_p11_req) is the provider's record of one signature.
 * The worker allocates it, copies the inputs, queues it; a signing thread
 * takes it, signs, and appends it to the worker's inbox, then wakes the
 * worker's loop with ev_async_send. Only the worker completes the
 * tg_keyop, on its own thread (tg_keyprov.h threading rules). A request the
 * worker gave up on (its timeout passed, or the worker is draining) is
 * "abandoned": if still queued it is dropped, if a thread is signing it the
 * thread frees it when C_Sign returns. So the op, which lives on an ASYNC
 * job's stack, is never touched by a signing thread, and a request is never
 * freed twice.
 *
 * Token health (see docs/KEY-PROVIDERS.md, "pkcs11: when the token fails"):
 *   UP      requests are signed;
 *   DOWN    a device/session error was seen (tg_p11_classify): every
 *           request, queued or new, fails at once; one signing thread tries
 *           to find the token again, reopen the login session, log in and
 *           find every key again, after 100 ms, then doubling up to 5 s;
 *   FAILED  a login was refused with a PIN error: no further login is ever
 *           attempted (that would lock the PIN); requests fail at once until
 *           tlsgate restarts. A PIN that cannot be read (its file missing)
 *           is not that: the token was not asked; the request fails and the
 *           next login tries again.
 *
 * Locks: token->lock guards the queue, the token state, key handles and
 * every request state of the token; inbox->lock guards an inbox. Order:
 * token->lock, then inbox->lock. token->login_lock serialises logins and
 * is never taken with token->lock held.
 */
#ifndef TG_P11_POOL_H
#define TG_P11_POOL_H

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/tg_stats.h"
#include "providers/pkcs11/tg_p11_mech.h"
#include "providers/pkcs11/tg_p11_module.h"

/* X(id, label): how a request ended (tlsgate_pkcs11_operations_total). */
#define TG_P11_RESULTS(X)                                                                          \
    X(OK, "ok")                                                                                    \
    X(TOKEN_ERROR, "token_error")                                                                  \
    X(TOKEN_DOWN, "token_down")                                                                    \
    X(QUEUE_FULL, "queue_full")                                                                    \
    X(TIMEOUT, "timeout")                                                                          \
    X(VERIFY_FAILED, "verify_failed")                                                              \
    X(CANCELLED, "cancelled")

enum tg_p11_result {
#define TG_P11_RESULT_ENUM(id, label) TG_P11_R_##id,
    TG_P11_RESULTS(TG_P11_RESULT_ENUM)
#undef TG_P11_RESULT_ENUM
        TG_P11_R_COUNT
};
const char *tg_p11_result_name(enum tg_p11_result r);

enum tg_p11_token_state { TG_P11_UP, TG_P11_DOWN, TG_P11_FAILED };

struct tg_p11_token;

/* A key the provider holds: the prov_key of its struct tg_pkey.
 * Refcounted (the token's list, the tg_pkey); freeing never touches the
 * token or the module. */
struct tg_p11_key {
    _Atomic int refs;
    struct tg_p11_token *token;
    struct tg_p11_keyref ref;
    CK_OBJECT_HANDLE handle; /* token->lock */
    struct tg_p11_plan plan;
    int bits;      /* RSA modulus or EC order size */
    EVP_PKEY *pub; /* for `verify` */
    bool verify;
    uint64_t timeout_ns;
    char uri[320]; /* canonical key URI, for logs */
    struct tg_p11_key *next;
};
void tg_p11_key_unref(void *key); /* prov_key_free */

/* A worker's inbox of finished requests. */
struct tg_p11_inbox {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* signalled on every append (drain waits on it) */
    struct tg_p11_req *head, *tail;
    struct ev_loop *loop;
    ev_async async; /* started by the worker on its loop */
};

enum tg_p11_req_state { TG_P11_REQ_QUEUED, TG_P11_REQ_RUNNING, TG_P11_REQ_DONE };

struct tg_p11_req {
    struct tg_p11_req *next;          /* token queue, then inbox */
    struct tg_p11_req *wprev, *wnext; /* the worker's outstanding list (worker only) */
    struct tg_p11_inbox *inbox;       /* where it goes when done; NULL: abandoned */
    struct tg_keyop *op;              /* worker only */
    struct tg_p11_key *key;
    enum tg_p11_req_state state; /* token->lock */
    struct tg_p11_sig sig;       /* input */
    unsigned char out[512];      /* output, valid when result == OK */
    size_t outlen;
    enum tg_p11_result result;
    CK_RV rv; /* the token's answer when result == TOKEN_ERROR/TOKEN_DOWN */
    uint64_t t_submit_ns, deadline_ns;
};

/* Signing thread. */
struct tg_p11_thread {
    struct tg_p11_token *token;
    pthread_t tid;
    bool started;
    CK_SESSION_HANDLE session;
    bool have_session;
    unsigned gen;           /* token->gen when the session was opened */
    struct tg_hist sign_us; /* C_SignInit + C_Sign time (single writer: this thread) */
};

struct tg_p11_token {
    struct tg_p11_module *mod;
    struct tg_p11_uri uri; /* the token part of the first key URI (to find it again) */
    char label[40];
    CK_SLOT_ID slot; /* token->lock after start-up */
    CK_TOKEN_INFO info;
    struct tg_p11_pin pin;
    CK_SESSION_HANDLE login_session; /* login_lock */
    bool have_login_session;
    uint64_t pin_warn_ns; /* login_lock: last "cannot read the PIN" warning */
    pthread_mutex_t login_lock;

    pthread_mutex_t lock;
    pthread_cond_t cond; /* signing threads wait for work or for stop */
    struct tg_p11_req *qhead, *qtail;
    size_t queued, max_queue;
    size_t signing; /* requests a signing thread holds now */
    enum tg_p11_token_state state;
    CK_RV down_rv;
    uint64_t retry_at_ns, backoff_ns;
    unsigned gen; /* bumped when sessions must be reopened */
    bool recovering, stop;

    struct tg_p11_thread *threads;
    size_t nthreads;
    struct tg_p11_key *keys;

    /* Statistics: several writers (workers and signing threads), hence
     * atomic adds; read by the admin thread. */
    _Atomic uint64_t results[TG_P11_R_COUNT];
    _Atomic uint64_t errors[TG_P11_CKR_COUNT];
    _Atomic uint64_t logins, sessions_opened, downs, recoveries;

    struct tg_p11_token *next;
};

/*
 * Start-up (main thread): the token of module_path that u names, made on
 * first use: module loaded (once per module), slot found, login session
 * opened and logged in with pin. TG_ECONFIG / TG_EUNAVAIL / TG_EDEVICE +
 * why. The token lives until tg_p11_pool_shutdown.
 */
int tg_p11_token_get(const char *module_path, const struct tg_p11_uri *u,
                     const struct tg_p11_pin *pin, struct tg_p11_token **out, char *why,
                     size_t whylen) TG_MUST_CHECK;
/* Start-up: make sure the token has at least `threads` signing threads and
 * a queue of at least max_queue. */
int tg_p11_token_start(struct tg_p11_token *t, size_t threads, size_t max_queue, char *why,
                       size_t whylen) TG_MUST_CHECK;
/* Start-up: a key of the token (takes the token's reference on it). */
void tg_p11_token_add_key(struct tg_p11_token *t, struct tg_p11_key *k);

/*
 * Sign synchronously on the token's login session (start-up self-test,
 * main thread). Fills r->out / r->result / r->rv like a signing thread.
 */
void tg_p11_sign_now(struct tg_p11_token *t, struct tg_p11_req *r);

/*
 * Worker side. Queue r for signing: TG_OK, or (without queuing) TG_ELIMIT
 * when the queue is full, TG_EDEVICE when the token is down or failed
 * (r->result says which).
 */
int tg_p11_enqueue(struct tg_p11_req *r) TG_MUST_CHECK;
/* Give up on r (timeout, drain), worker side. */
enum tg_p11_abandon {
    TG_P11_DROPPED,      /* it was still queued: removed; the caller frees it */
    TG_P11_DETACHED,     /* a signing thread holds it: that thread frees it */
    TG_P11_ALREADY_DONE, /* it is in the inbox: nothing changed, deliver it */
};
/* After DROPPED or DETACHED no signing thread touches r->inbox again. */
enum tg_p11_abandon tg_p11_abandon(struct tg_p11_req *r);

/* Every token, for stats and the doctor (immutable after start-up). */
struct tg_p11_token *tg_p11_tokens(void);
/* Stop every signing thread (bounded wait), close sessions, finalise and
 * unload the modules. Main thread, after the workers are gone. */
void tg_p11_pool_shutdown(void);

#endif
