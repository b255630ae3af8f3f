/*
 * tg_keyprov: the key-provider interface, the key-operation object and the
 * per-worker provider instances.
 *
 * A key provider performs private-key operations (RSA sign, ECDSA sign) and
 * ephemeral key exchange (keygen, derive) for the OpenSSL bridge (src/ossl).
 * It is a const table of function pointers (struct tg_keyprov_ops) looked up
 * by name. The providers themselves live in src/providers/<name>/; the
 * program registers the ones it is built with (tg_keyprov_register), so the
 * core knows none of them by name except "software", the fallback of all.
 *
 * Lifecycle of an operation (struct tg_keyop), enforced by one-shot guards
 * (misuse returns TG_ESTATE, never corrupts):
 *
 *   tg_keyop_init()       NEW        the bridge fills the inputs
 *   ops->submit()         QUEUED     provider owns it; may complete inline
 *   tg_keyop_complete()   DONE       provider hands back a result (loop thread)
 *   tg_keyop_consume()    CONSUMED   the bridge takes the output, exactly once
 *
 * The op lives in the memory of the code that awaits it (the ASYNC job's
 * stack in the bridge); the provider never frees it and never touches it after
 * tg_keyop_complete().
 *
 * Threading: a worker thread owns its provider instances; submit, flush and
 * complete run on that thread only. Provider-internal helper threads (a QAT
 * poller) must hand completions back through an ev_async, never complete an
 * op themselves.
 *
 * Provider-held keys. A provider may hold certificate private keys itself
 * (an HSM through PKCS#11, a remote key server): it implements load_key, and
 * a certificate that names it without `private_key` gets a public-only
 * struct tg_pkey (tg_pkey_is_held) carrying the provider's handle. The
 * tlsgate OpenSSL provider serves such a key like any other (it has a
 * private half as far as libssl is concerned, matches its certificate by the
 * public parts, refuses private export), but nothing can compute with it in
 * software, so for these keys:
 *   - there is no start-up fallback: a provider that cannot run or cannot
 *     load the key is a start-up error, and an explicit `fallback: true` is
 *     refused (tg_keyprov_bind_held);
 *   - there is no runtime fallback: tg_keyop_complete() with TG_EDEVICE,
 *     TG_ETIMEOUT or TG_ELIMIT fails the op (the handshake fails) and counts
 *     it in tlsgate_keyprov_unrecoverable_total{provider,reason};
 *   - outside an ASYNC job or a worker (no provider state) tg_keyop_run()
 *     fails with TG_EUNAVAIL instead of computing in software.
 */
#ifndef TG_KEYPROV_H
#define TG_KEYPROV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/x509.h>

#include "config/tg_config.h"
#include "core/tg_buf.h"
#include "core/tg_err.h"
#include "core/tg_stats.h"
#include "keyprov/tg_pkey.h"

struct ev_loop;

/* X(id, label): operation types. */
#define TG_KEYOP_TYPES(X)                                                                          \
    X(RSA_SIGN, "rsa_sign")                                                                        \
    X(ECDSA_SIGN, "ecdsa_sign")                                                                    \
    X(KX_KEYGEN, "kx_keygen")                                                                      \
    X(KX_DERIVE, "kx_derive")

enum tg_keyop_type {
#define TG_KEYOP_ENUM(id, label) TG_KEYOP_##id,
    TG_KEYOP_TYPES(TG_KEYOP_ENUM)
#undef TG_KEYOP_ENUM
        TG_KEYOP_TYPE_COUNT
};
const char *tg_keyop_type_name(enum tg_keyop_type t);

enum tg_keyop_state { TG_KEYOP_NEW, TG_KEYOP_QUEUED, TG_KEYOP_DONE, TG_KEYOP_CONSUMED };

/* RSA padding modes as OpenSSL numbers them (RSA_PKCS1_PADDING, RSA_PKCS1_PSS_PADDING). */
#define TG_RSA_PAD_PKCS1 1
#define TG_RSA_PAD_PSS   6

/* Largest output: the signature of the largest key tg_pkey accepts (RSA-8192,
 * 1024 bytes). Shared secrets and ECDSA signatures are far smaller. */
#define TG_KEYOP_OUT_MAX TG_PKEY_SIG_MAX

/*
 * Per-connection key context. The connection sets it as the thread's current
 * context (tg_keyctx_set_current) around every SSL_* call; the bridge reads it
 * when an operation starts, so key exchange knows which provider to use and a
 * closing connection can cancel what it waits for.
 */
struct tg_keyctx {
    const struct tg_keyprov_binding *kx; /* NULL: key exchange inline in software */
    bool cancelled;                      /* connection closing: fail, do not wait */
    unsigned waits;                      /* ASYNC pauses so far (stats) */
    unsigned failures;                   /* operations that failed */
    unsigned fallbacks;                  /* operations finished in software (fell_back) */
    const struct tg_pkey *signer;        /* key of the last signature started (access log) */
};
void tg_keyctx_set_current(struct tg_keyctx *ctx);
struct tg_keyctx *tg_keyctx_current(void);

struct tg_keyop {
    /* -- inputs, set by the bridge before submit; read-only for providers -- */
    enum tg_keyop_type type;
    const struct tg_pkey *pkey;  /* RSA_SIGN, ECDSA_SIGN */
    struct tg_kxkey *kx;         /* KX_KEYGEN: filled in; KX_DERIVE: our private key */
    const struct tg_kxkey *peer; /* KX_DERIVE: peer public share */
    const EVP_MD *md;            /* RSA_SIGN: digest of the signature (DigestInfo, PSS) */
    int rsa_padding;             /* TG_RSA_PAD_PKCS1 or TG_RSA_PAD_PSS */
    int pss_saltlen;             /* resolved byte length */
    const EVP_MD *mgf1_md;       /* PSS */
    unsigned char in[64];        /* the message digest to sign */
    size_t inlen;
    const struct tg_keyprov_binding *binding; /* provider + per-certificate settings */
    struct tg_keyctx *ctx;                    /* requesting connection, may be NULL */

    /* -- outputs, written by whoever completes the op -- */
    unsigned char out[TG_KEYOP_OUT_MAX]; /* signature or shared secret */
    size_t outlen;
    int result;     /* TG_OK or negative tg_err */
    bool fell_back; /* finished in software after a provider failure */

    /* -- lifecycle and provider bookkeeping -- */
    enum tg_keyop_state state;
    int (*wake)(void *); /* ASYNC_WAIT_CTX callback; NULL when run synchronously */
    void *wake_arg;
    uint64_t t_submit_ns;
    uint64_t deadline_ns;           /* t_submit + poll_delay: latest flush time */
    struct tg_keyop *next;          /* provider queue link while QUEUED */
    void *prov_data;                /* provider's own per-op pointer */
    struct tg_keyprov_stats *stats; /* the provider's block on this worker (NULL: none) */
    bool in_submit;                 /* completing inside submit(): no wake-up needed */
};

/* Why a provider ran a batch (stats: tlsgate_keyprov_flushes_total{reason}). */
#define TG_FLUSH_REASONS(X)                                                                        \
    X(FULL, "full")                                                                                \
    X(IDLE, "idle")                                                                                \
    X(TIMER, "timer")                                                                              \
    X(SCALAR, "scalar")

enum tg_flush_reason {
#define TG_FLUSH_ENUM(id, label) TG_FLUSH_##id,
    TG_FLUSH_REASONS(TG_FLUSH_ENUM)
#undef TG_FLUSH_ENUM
        TG_FLUSH_REASON_COUNT
};

/* Why an operation finished in software after the provider took it. */
#define TG_FALLBACK_REASONS(X)                                                                     \
    X(DEVICE_ERROR, "device_error")                                                                \
    X(LANE_ERROR, "lane_error")                                                                    \
    X(RING_FULL, "ring_full")                                                                      \
    X(TIMEOUT, "timeout")                                                                          \
    X(FAULT_CHECK, "fault_check")                                                                  \
    X(INJECTED, "injected")

enum tg_fallback_reason {
#define TG_FALLBACK_ENUM(id, label) TG_FALLBACK_##id,
    TG_FALLBACK_REASONS(TG_FALLBACK_ENUM)
#undef TG_FALLBACK_ENUM
        TG_FALLBACK_REASON_COUNT
};

/* Statistics of one provider on one worker (single writer: that worker). */
struct tg_keyprov_stats {
    tg_ctr ops[TG_KEYOP_TYPE_COUNT];       /* submitted */
    tg_ctr completed[TG_KEYOP_TYPE_COUNT]; /* completed successfully (incl. fallback) */
    tg_ctr failed[TG_KEYOP_TYPE_COUNT];    /* completed with an error */
    tg_ctr fallbacks[TG_FALLBACK_REASON_COUNT];
    /* Provider failures on provider-held keys: no software copy to finish
     * them, the operation (and its handshake) failed. By the same reasons. */
    tg_ctr unrecoverable[TG_FALLBACK_REASON_COUNT];
    tg_ctr flushes[TG_FLUSH_REASON_COUNT];
    tg_ctr inflight_up, inflight_down; /* gauge: queued or on the device */
    tg_ctr pool_level;                 /* gauge: ephemeral keys ready (last value) */
    struct tg_hist batch_size;         /* operations per batch */
    struct tg_hist wait_us;            /* submit to completion */
};
extern const struct tg_hist_spec tg_keyprov_batch_spec;

/* What a provider instance gets from its worker. */
struct tg_keyprov_worker {
    struct ev_loop *loop;
    int worker_id;
    struct tg_keyprov_stats *stats; /* this provider's block on this worker */
    /* Connections of this worker in a TLS handshake now (never NULL; points
     * at 0 outside a gateway). A batching provider waits for company only
     * while other handshakes are in flight to provide it. */
    const size_t *handshaking;
};

/*
 * `tlsgate bench-crypto` (src/bench) asks every provider that has a
 * microbench hook for the measurements only that provider can make. The
 * benchmark itself generates the keys and measures what is generic: OpenSSL's
 * scalar rate of every case and the rate through the full provider path.
 */
struct tg_keyprov_bench_case {
    const char *label;         /* "RSA-2048 sign", "X25519 derive", ... */
    enum tg_keyop_type type;   /* what to measure */
    const struct tg_pkey *key; /* RSA_SIGN (PKCS#1 v1.5, SHA-256), ECDSA_SIGN: the key */
    enum tg_group group;       /* KX_KEYGEN, KX_DERIVE: the group */
    /* OpenSSL's cost (tg_keyop_compute_sw), CPU us per operation; 0: unknown. */
    double scalar_us;
    /* Out: the provider's own best rate, CPU ops/s per core (e.g. full
     * batches, outside the provider path); 0: not measured. */
    double peak_ops;
};

struct tg_keyprov_bench {
    struct tg_keyprov_bench_case *cases;
    size_t ncases;
    double seconds; /* CPU time to spend per measurement */
    /* NULL: only fill peak_ops, cheaply (bench-crypto --quick); else also
     * append the provider's own markdown section(s) here. */
    struct tg_buf *report;
    /* Out: what peak_ops measures, a static string for a column heading
     * ("crypto_mb raw"); NULL: the provider's name. */
    const char *peak_label;
};

struct tg_keyprov_ops {
    const char *name;
    const char *description;
    bool does_kx; /* can take key-exchange operations */

    /* Validate one certificate's private_key_provider block (typed_config
     * keys, marking each used) and build its settings; set *kx when key
     * exchange should go through this provider too. Called at start-up on
     * the main thread, before global_init. NULL: no typed_config keys. */
    int (*configure)(const struct tg_conf_keyprov *conf, void **settings, bool *kx, char *err,
                     size_t errlen);
    void (*settings_free)(void *settings);

    /* Process-wide set-up, once, on the main thread. TG_EUNAVAIL + why when
     * the provider cannot run on this machine (no CPU support, no device,
     * library missing); the caller then applies `fallback`. */
    int (*global_init)(char *why, size_t whylen);
    void (*global_cleanup)(void);

    /* Can this provider serve this key? TG_EUNAVAIL + why if not. Optional.
     * Not called for the keys the provider itself made (load_key). */
    int (*supports_key)(const struct tg_pkey *key, char *why, size_t whylen);

    /*
     * Optional: the provider holds private keys itself (see "Provider-held
     * keys" above). Called at start-up on the main thread, after configure
     * and global_init succeeded, for a certificate without `private_key`.
     *   settings:  this certificate's configure() result.
     *   cert_pub:  the public key of the leaf of certificate_chain, or NULL
     *              when the configuration gave no certificate_chain.
     *   leaf:      NULL when certificate_chain was given; otherwise the
     *              provider must set *leaf to the certificate it found with
     *              the key (the caller owns it) or fail.
     * On success *key is a new reference to a key made with
     * tg_pkey_from_public(), whose prov_key is the provider's handle; the
     * caller checks that it matches the certificate. On failure returns
     * TG_ECONFIG, TG_EUNAVAIL or TG_ECRYPTO with a one-line reason in err
     * (no file position: the caller adds it) and leaves *key and *leaf NULL.
     * May block (it talks to a device): it runs before any worker starts.
     */
    int (*load_key)(void *settings, EVP_PKEY *cert_pub, struct tg_pkey **key, X509 **leaf,
                    char *err, size_t errlen);

    /* Per worker thread, on that thread. */
    int (*worker_init)(const struct tg_keyprov_worker *w, void **state);
    void (*worker_cleanup)(void *state);

    /* Take an operation. Returns TG_OK if it completed inline (op DONE), or
     * TG_EPENDING if queued; the provider then calls tg_keyop_complete()
     * later, from this worker's loop. Must not block. */
    int (*submit)(void *state, struct tg_keyop *op);
    /* The loop is about to block: run what should not wait any longer. */
    void (*flush)(void *state);
    /* Operations taken and not yet completed. */
    size_t (*pending)(void *state);
    /* Called once per worker after the loop stopped: complete every pending
     * op (cancelled ops complete with TG_ECANCELED). */
    void (*drain)(void *state);

    /* Optional: extra Prometheus lines (already aggregated across workers). */
    void (*render_stats)(struct tg_buf *out);
    /* Optional: what the provider sees on this machine, for `tlsgate
     * doctor`: text lines (shown indented under the provider) and, for
     * --json, members of one JSON object ("key": value, comma-separated;
     * may stay empty). Called on the main thread after global_init, whether
     * it succeeded or not. Must not log: a report command prints the report.
     * With `doctor --config FILE` the hook may also look at the blocks of
     * that configuration which name it (tg_keyprov_doctor_block). */
    void (*doctor)(struct tg_buf *text, struct tg_buf *json);
    /* Optional: provider-specific measurements for `tlsgate bench-crypto`
     * (struct tg_keyprov_bench above). Called on the main thread after
     * global_init succeeded, never while serving; may take seconds. Skips
     * the cases it cannot run (their peak_ops stay 0). Must not log.
     * Returns TG_OK, or a negative tg_err (the report may say why). */
    int (*microbench)(struct tg_keyprov_bench *b);
};

/* Most providers one program can register. */
#define TG_KEYPROV_MAX 16
/* The provider every other one falls back to; it must be registered. */
#define TG_KEYPROV_FALLBACK "software"

/*
 * Registry. tg_keyprov_register() installs the program's providers (main.c
 * hands its table; tests hand theirs): the array is copied, its entries must
 * be static. Names must be unique and one must be TG_KEYPROV_FALLBACK.
 * Registering again replaces the table (and shuts down every provider that
 * was initialised); TG_ESTATE while worker sets exist. Main thread only.
 * Returns TG_OK, or TG_EINVAL / TG_ESTATE with the reason in why.
 */
int tg_keyprov_register(const struct tg_keyprov_ops *const *ops, size_t n, char *why,
                        size_t whylen) TG_MUST_CHECK;
const struct tg_keyprov_ops *tg_keyprov_find(const char *name);
/* NULL-terminated list of names. */
const char *const *tg_keyprov_names(void);
const struct tg_keyprov_ops *const *tg_keyprov_all(size_t *n);

/*
 * `tlsgate doctor --config FILE`: the configuration being diagnosed, so that
 * a provider's doctor hook can look at what it is configured with (the
 * modules, devices or sockets it would use) without the hook's signature
 * knowing about configurations. tg_keyprov_set_doctor_config(cfg) before the
 * report, (NULL) after; cfg must outlive the report. Main thread only.
 *
 * tg_keyprov_doctor_block(name, &it): the next certificate
 * private_key_provider block of that configuration whose provider_name is
 * `name`, in file order, or NULL (also without a configuration). *it starts
 * at 0. The block is what configure() takes; a hook that calls configure()
 * must free the settings and must not touch a device with side effects (no
 * login).
 */
void tg_keyprov_set_doctor_config(const struct tg_config *cfg);
const struct tg_conf_keyprov *tg_keyprov_doctor_block(const char *name, size_t *it);

/*
 * A binding: one configured provider for one certificate (or a listener's key
 * exchange), after start-up decided what actually runs. Immutable after
 * start-up; shared by all workers.
 */
struct tg_keyprov_binding {
    const struct tg_keyprov_ops *ops; /* what runs (software after a start-up fallback) */
    const char *configured;           /* what the config asked for */
    void *settings;                   /* ops->configure() result for `ops` */
    int slot;                         /* index of ops in the per-worker instance array */
    uint64_t poll_delay_ns;
    bool fallback;
    bool kx;   /* also route key exchange through it */
    bool held; /* the provider holds the certificate's key (load_key) */
};

/*
 * Start-up: resolve a certificate's provider config into a binding, applying
 * `fallback` when the provider or the key is unsupported (warning logged with
 * the reason). A software key (key != NULL) given to a provider that holds
 * keys itself (load_key) is refused. On error writes "FILE:LINE:COL: path:
 * ..." into err.
 */
int tg_keyprov_bind(const struct tg_conf_keyprov *conf, const struct tg_pkey *key,
                    struct tg_keyprov_binding **out, char *err, size_t errlen) TG_MUST_CHECK;
void tg_keyprov_binding_free(struct tg_keyprov_binding *b);
/*
 * Start-up, for a certificate without private_key: bind its provider, which
 * must hold keys (ops->load_key; else TG_ECONFIG), and have it load the key.
 * Never falls back: a provider that cannot run here is an error whatever
 * `fallback` says, and an explicit `fallback: true` is refused (there is no
 * software copy of the key to fall back to). cert_pub and leaf as for
 * load_key. On success *out (binding, held = true) and *key (a reference)
 * are the caller's, and key->binding is NOT set (the caller sets it). On
 * error writes "FILE:LINE:COL: path: ..." into err.
 */
int tg_keyprov_bind_held(const struct tg_conf_keyprov *conf, EVP_PKEY *cert_pub,
                         struct tg_keyprov_binding **out, struct tg_pkey **key, X509 **leaf,
                         char *err, size_t errlen) TG_MUST_CHECK;
/* The software binding used when nothing else is configured. Static. */
const struct tg_keyprov_binding *tg_keyprov_software_binding(void);
/* Global cleanup of every provider whose global_init ran. */
void tg_keyprov_shutdown(void);

/*
 * Per-worker instance set: one state per provider that some binding uses.
 * Created by the worker on its own thread and installed as the thread's
 * current set; the bridge finds a binding's state through it.
 */
struct tg_keyprov_set;
/* handshaking: the worker's count of connections in a handshake (may be
 * NULL: then providers see 0 and never wait for company). */
int tg_keyprov_set_new(struct ev_loop *loop, int worker_id, const size_t *handshaking,
                       struct tg_keyprov_set **out) TG_MUST_CHECK;
/* Slots (bit i = registry index i) of the providers some binding made so
 * far runs on: what a worker set needs a state for. Main thread. */
uint32_t tg_keyprov_slots_used(void);
/* On the set's worker thread, when a new configuration takes effect: create
 * the per-worker state of every provider in slots that has none yet (one
 * first used by that configuration, e.g. software -> cryptomb on a reload).
 * TG_OK, or the first provider's error (logged); the providers that failed
 * have no state, so their bindings run in software on this worker. */
int tg_keyprov_set_add_slots(struct tg_keyprov_set *set, uint32_t slots) TG_MUST_CHECK;
/* Drop this thread's cached software signing contexts: they hold references
 * to keys of configurations that may no longer be served. Any thread. */
void tg_keyprov_forget_keys(void);
/* Complete every pending operation now (tg_keyprov_ops.drain); waiting jobs
 * get their wake-ups. The set stays usable. */
void tg_keyprov_set_drain(struct tg_keyprov_set *set);
/* Drains every instance, then frees. */
void tg_keyprov_set_free(struct tg_keyprov_set *set);
void tg_keyprov_set_current(struct tg_keyprov_set *set);
struct tg_keyprov_set *tg_keyprov_set_current_get(void);
/* Call every instance's flush (the worker's ev_prepare). */
void tg_keyprov_set_flush(struct tg_keyprov_set *set);
size_t tg_keyprov_set_pending(struct tg_keyprov_set *set);
/* Stats of every provider slot on every worker, aggregated, for /stats. */
void tg_keyprov_render_stats(struct tg_buf *out);

/* ---- Operation lifecycle ---- */

/* Zero the op and set its type; state NEW. */
void tg_keyop_init(struct tg_keyop *op, enum tg_keyop_type type);
/*
 * Run an operation through its binding's provider and wait for it: inside an
 * ASYNC job (libssl with SSL_MODE_ASYNC) the job pauses until the provider
 * completes it; outside a job, or without a wake-up callback, it runs
 * synchronously (software) -- except on a provider-held key, which then
 * fails with TG_EUNAVAIL. Returns the op's result; on TG_OK the output is in
 * op->out / op->outlen (consumed). Called by the bridge only.
 */
int tg_keyop_run(struct tg_keyop *op) TG_MUST_CHECK;
/*
 * Provider side: hand back a finished op (result TG_OK with out/outlen
 * written, or a negative error). TG_EDEVICE, TG_ETIMEOUT and TG_ELIMIT mean
 * "the provider could not do it": the op is then finished in software here,
 * counted as a fallback with `reason`, and succeeds -- unless its key is
 * provider-held (tg_pkey_is_held): then the op fails with that error and is
 * counted as unrecoverable with `reason`. Wakes the waiting job.
 * Returns TG_ESTATE if the op was not QUEUED.
 */
int tg_keyop_complete(struct tg_keyop *op, int result, enum tg_fallback_reason reason);
/* Bridge side: take the result once. TG_ESTATE on a second call or if not DONE. */
int tg_keyop_consume(struct tg_keyop *op) TG_MUST_CHECK;

/* Compute the op with OpenSSL's default provider, synchronously (software
 * provider, deferred completion, fallback, tests). Sets out/outlen/result;
 * does not change state. Returns result; TG_EUNAVAIL for a provider-held
 * key (no software copy). */
int tg_keyop_compute_sw(struct tg_keyop *op);

/*
 * Check a signature made for an ECDSA_SIGN op (over op->in, with the
 * public half of op->pkey) with OpenSSL's default provider: a provider's
 * result check before release. TG_OK if it verifies, TG_ECRYPTO if not (or
 * OpenSSL failed), TG_EINVAL for another op type. Any thread; the contexts
 * are cached per thread (freed with the thread's other software contexts).
 */
int tg_keyop_verify_sw(const struct tg_keyop *op, const unsigned char *sig,
                       size_t siglen) TG_MUST_CHECK;

/*
 * Provider side: hand a QUEUED op that this provider cannot take now (ring
 * full) to another provider on the same worker, by name. Returns TG_OK if
 * that provider took it (it will complete it), TG_EUNAVAIL if it does not run
 * on this worker. The op keeps its binding; its stats move to the new
 * provider. Call from the worker thread only.
 */
int tg_keyprov_spill(struct tg_keyop *op, const char *provider) TG_MUST_CHECK;
/* Make sure a provider gets a per-worker state even when no certificate is
 * bound to it (a spill target). Start-up only; TG_EUNAVAIL if it cannot run. */
int tg_keyprov_require(const char *provider, char *why, size_t whylen) TG_MUST_CHECK;

/* Stats of a binding's provider on the current worker (NULL off-worker). */
struct tg_keyprov_stats *tg_keyprov_current_stats(const struct tg_keyprov_binding *b);

#endif
