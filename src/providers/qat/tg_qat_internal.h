/*
 * tg_qat_internal.h: what the files of the qat provider share. Not for use
 * outside src/providers/qat (tests of the folder excepted).
 *
 * The provider offloads RSA (CRT) and ECDSA signatures to Intel QuickAssist
 * through qatlib (behind the tg_qat_lib shim). Its files:
 *
 *   both builds        tg_qat_config.c   typed_config -> settings; the qatlib section
 *                      tg_qat_doctor.c   the machine half of the doctor hook
 *                      tg_qat_pci.c      QAT functions in PCI sysfs, /dev/vfio (own header)
 *                      tg_qat_memlock.c  RLIMIT_MEMLOCK against qatlib's needs (own header)
 *                      tg_qat_lib.c      the qatlib shim (own header)
 *   qatlib headers     tg_qat_mem.c      pinned memory; keys in device form
 *   (TG_HAVE_QAT_H)    tg_qat_req.c      request records, completion, polling, timers
 *                      tg_qat_submit.c   submit, ring-full spill, flush, drain
 *                      tg_qat_start.c    qatlib start-up / shut-down, instance discovery
 *                      tg_qat_ops.c      workers, /stats, doctor, the ops table
 *   no headers         tg_qat_stub.c     validates configurations, never runs
 * CMake (CMakeLists.txt of this folder) compiles one of the last two groups.
 *
 * Start-up (global_init, main thread): icp_sal_userStart(section), instance
 * discovery, cpaCySetAddressTranslation(qaeVirtToPhysNUMA), cpaCyStartInstance.
 * No library, no device, no instance or no instance that starts: TG_EUNAVAIL
 * with the reason, and the binding applies `fallback`. Worker i uses
 * instance i % n.
 *
 * Memory: every flat buffer handed to the device lives in pinned DMA memory
 * from qaeMemAllocNUMA: one slab per request (input, output, nonce), reused
 * from a per-worker pool, and one slab per (key, worker) holding the key in
 * the form the device takes (CRT quintuple, or curve + scalar), converted
 * once and wiped before it is freed.
 *
 * Completion is polled, never interrupt- or pipe-driven: icp_sal_CyPollInstance
 * runs (a) in flush, i.e. whenever the worker loop is about to block, and
 * (b) from a per-worker timerfd while requests are on the device. libev's
 * epoll backend rounds timer waits up to 1 ms, so a timerfd (nanosecond
 * resolution, one per worker) gives poll_delay its sub-millisecond meaning.
 * The timer is armed only while something is in flight, at the expected
 * completion time of the oldest request (a running average of the device
 * latency), never later than poll_delay after now: at low load an operation
 * waits about one device latency instead of a whole poll_delay.
 *
 * qatlib calls the completion callback inside icp_sal_CyPollInstance, on the
 * polling thread. The callback does no work: it puts the request on the
 * owner worker's done list (same thread: the common case, no lock) or, when
 * several workers share an instance and another one polled, on the owner's
 * inbox under a mutex with an ev_async wake-up. Results are then copied out
 * of the pinned buffers and the key operations completed on their own worker.
 *
 * Requests are records owned by the provider, not pointers into the key
 * operation: an operation that times out (typed_config `timeout`) or is
 * drained is finished in software and its record is only marked abandoned
 * (op = NULL). When the device later returns it, the record is recycled and
 * nothing else happens (counted as a late completion). Buffers the device
 * may still write are never freed: a worker that ends with requests still on
 * the device leaves them on a global orphan list, freed after
 * icp_sal_userStop (when the device can no longer reach them).
 *
 * Backpressure: CPA_STATUS_RETRY (ring full) is never retried in a loop; the
 * operation goes down the configured spill list (`spill: [cryptomb,
 * software]`, any registered provider but qat) and is counted per target.
 * Any other submit error, a failed callback, a multiply failure, a result
 * that fails the public-key check (`verify`) or a timeout is finished in
 * software by tg_keyop_complete: the handshake never fails because of the
 * device.
 *
 * Threading: as the keyprov contract (tg_keyprov.h); the shared globals
 * below say which lock or thread guards them.
 */
#ifndef TG_QAT_INTERNAL_H
#define TG_QAT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tg_buf.h"
#include "core/tg_time.h"
#include "keyprov/tg_keyprov.h"
#include "providers/qat/tg_qat.h"

/* ======================================================================== */
/* Both builds: configuration (tg_qat_config.c)                             */
/* ======================================================================== */

#define TG_QAT_SPILL_MAX       4
#define TG_QAT_DEFAULT_TIMEOUT (100 * TG_NS_PER_MS)
#define TG_QAT_SECTION_MAX     64

/* One certificate binding's settings. Immutable after configure. */
struct tg_qat_settings {
    uint64_t timeout_ns;
    bool verify; /* check each result with the public key (RSA: Bellcore / Lenstra; ECDSA) */
    /* Spill targets before the implied final "software", in order: registry
     * entries (static), never qat itself nor software. */
    size_t nspill;
    const struct tg_keyprov_ops *spill[TG_QAT_SPILL_MAX];
    bool spill_ok[TG_QAT_SPILL_MAX]; /* target can run here (tg_keyprov_require) */
};

/* tg_keyprov_ops.configure / settings_free. Spill targets are checked
 * against the provider registry (tg_keyprov_find), so it must be set. */
int tg_qat_configure(const struct tg_conf_keyprov *conf, void **settings, bool *kx, char *err,
                     size_t errlen);
void tg_qat_settings_free(void *settings);
/* The op's qat settings. An op another provider spilled here keeps its own
 * binding: only qat bindings carry qat settings, others get the defaults. */
const struct tg_qat_settings *tg_qat_settings_of(const struct tg_keyop *op);

/* The qatlib section, process-wide (icp_sal_userStart runs once): the first
 * certificate's `section` wins; a different one on another certificate is a
 * configuration error. Main thread. */
const char *tg_qat_section(void);
/* qatlib is not running (failed start-up, cleanup): the next configuration
 * may name its section afresh ("SSL" until then). */
void tg_qat_section_reset(void);

/* Index of a provider in tg_keyprov_all() (the spill counters' slot), or -1. */
int tg_qat_registry_slot(const struct tg_keyprov_ops *ops);

/* ======================================================================== */
/* Both builds: the machine half of the doctor hook (tg_qat_doctor.c)       */
/* ======================================================================== */

/* Width of the label column of the doctor text (as the doctor's own). */
#define TG_QAT_DOCTOR_W "24"

/* Append s as a JSON string literal (NULL: null). */
void tg_qat_json_str(struct tg_buf *out, const char *s);
/* Append "label  text\n", the text wrapped on spaces under its column. */
void tg_qat_doctor_line(struct tg_buf *out, const char *label, const char *text);

/*
 * What the machine offers qatlib, read under tg_sysinfo_sysfs_root() and
 * tg_sysinfo_dev_root(): QAT functions with driver / IOMMU / vfio access, the
 * IOMMU, memlock; then the verdict line. Text lines into text, JSON members
 * ("pci", "memlock", "usable", "verdict") into json, after a comma when json
 * already holds members. usable: what runs ("2 instance(s); ..."), NULL when
 * qat cannot run; then why_not names the build's reason if it has one (no
 * headers, no library), else the machine's likeliest cause is given.
 */
void tg_qat_doctor_machine(struct tg_buf *text, struct tg_buf *json, const char *usable,
                           const char *why_not);

#ifdef TG_HAVE_QAT_H

#include <pthread.h>
#include <stdatomic.h>

#include <ev.h>
#include <openssl/bn.h>

#include "providers/qat/tg_qat_lib.h"

/* ======================================================================== */
/* The real provider: shared types and state                                */
/* ======================================================================== */

#define TG_QAT_MAX_INSTANCES 256
#define TG_QAT_SLAB          1024 /* pinned bytes per request */
#define TG_QAT_OUT_OFF       512  /* RSA output / ECDSA r at this offset */
#define TG_QAT_S_OFF         768  /* ECDSA s */
#define TG_QAT_K_OFF         128  /* ECDSA nonce k (m at 0) */
#define TG_QAT_ALIGN         64
#define TG_QAT_POOL_INIT     16
#define TG_QAT_MAX_INFLIGHT  1024                 /* per worker, abandoned requests included */
#define TG_QAT_MIN_POLL_NS   (20 * TG_NS_PER_US)  /* shortest timer wait */
#define TG_QAT_DRAIN_MAX_NS  (200 * TG_NS_PER_MS) /* wait for abandoned requests at exit */
#define TG_QAT_RECLAIM_NS    (100 * TG_NS_PER_MS) /* poll for abandoned requests only */

/* The slab holds an RSA-4096 result at TG_QAT_OUT_OFF: larger keys (RSA-8192)
 * are refused by tg_qat_supports_key and served in software. */
_Static_assert(TG_QAT_OUT_OFF + 4096 / 8 <= TG_QAT_SLAB, "RSA-4096 output fits the slab");
_Static_assert(4096 / 8 <= TG_KEYOP_OUT_MAX, "op->out holds an RSA-4096 signature");

/* X(id, metric, labels, help): per-instance counters. Rows with the same
 * metric are adjacent; the first row of a metric carries its help. The
 * spilled counter is not a row: it has one series per spill target
 * (tg_qat_istats.spilled), rendered after RETRIED. */
#define TG_QAT_STATS(X)                                                                            \
    X(SUBMITTED, "tlsgate_qat_requests_submitted_total", "",                                       \
      "Requests a QAT instance accepted (RSA decrypt / ECDSA sign)")                               \
    X(COMPLETED, "tlsgate_qat_requests_completed_total", "",                                       \
      "Requests the device returned with a result")                                                \
    X(RETRIED, "tlsgate_qat_requests_retried_total", "",                                           \
      "Submissions refused with CPA_STATUS_RETRY (ring full)")                                     \
    X(FAIL_SUBMIT, "tlsgate_qat_requests_failed_total", "stage=\"submit\"",                        \
      "Operations the device did not do (finished in software), by stage")                         \
    X(FAIL_DEVICE, "tlsgate_qat_requests_failed_total", "stage=\"device\"", "")                    \
    X(FAIL_TIMEOUT, "tlsgate_qat_requests_failed_total", "stage=\"timeout\"", "")                  \
    X(FAIL_VERIFY, "tlsgate_qat_requests_failed_total", "stage=\"verify\"", "")                    \
    X(LATE, "tlsgate_qat_late_completions_total", "",                                              \
      "Requests the device returned after their operation was finished in software")               \
    X(POLLS, "tlsgate_qat_polls_total", "", "icp_sal_CyPollInstance calls")                        \
    X(EMPTY_POLLS, "tlsgate_qat_polls_empty_total", "", "Polls that returned nothing")

enum tg_qat_stat {
#define TG_QAT_STAT_ENUM(id, metric, labels, help) TG_QAT_##id,
    TG_QAT_STATS(TG_QAT_STAT_ENUM)
#undef TG_QAT_STAT_ENUM
        TG_QAT_STAT_COUNT
};

extern const struct tg_hist_spec tg_qat_latency_spec;

/* One worker's counters for its instance (single writer: that worker). */
struct tg_qat_istats {
    tg_ctr c[TG_QAT_STAT_COUNT];
    /* tlsgate_qat_spilled_total{to}: by the target's slot in the provider
     * registry (tg_qat_registry_slot), software included. */
    tg_ctr spilled[TG_KEYPROV_MAX];
    tg_ctr inflight_up, inflight_down; /* gauge: requests on the device */
    struct tg_hist latency_us;
};

struct tg_qat_inst {
    CpaInstanceHandle h;
    bool started;
    bool ecdsa;
    int node;
    char name[CPA_INST_NAME_SIZE + 1];
    char part[CPA_INST_PART_NAME_SIZE + 1];
};

enum tg_qat_kind { TG_QAT_RSA, TG_QAT_ECDSA };

struct tg_qat_wstate;

/* A key converted for the device, per worker. */
struct tg_qat_key {
    struct tg_qat_key *next;
    struct tg_pkey *pkey; /* referenced: the pointer stays this key's */
    enum tg_qat_kind kind;
    unsigned refs; /* requests on the device reading it */
    size_t nbytes; /* RSA modulus bytes, EC order bytes */
    int bits;
    Cpa8U *pin; /* pinned private material (wiped before it is freed) */
    size_t pinlen;
    CpaCyRsaPrivateKey rsa;    /* flat buffers point into pin */
    CpaCyEcdsaSignRSOpData ec; /* curve and d point into pin; m, k per request */
    BIGNUM *n, *e;             /* RSA public key, for the result check */
    BN_MONT_CTX *mont;
    struct tg_qat_key *orphan_next;
};

/* One request to the device. Owned by the provider, never by the op. */
struct tg_qat_req {
    struct tg_qat_req *next, *prev; /* free list (next) / on-device list */
    struct tg_qat_req *done_next;   /* returned: done list or inbox */
    struct tg_qat_wstate *_Atomic owner;
    struct tg_keyop *op; /* NULL once abandoned (or not submitted) */
    struct tg_qat_key *key;
    enum tg_qat_kind kind;
    uint64_t t_submit, deadline;
    uint64_t poll_seq; /* the owner's poll count when submitted */
    CpaStatus status;  /* from the callback */
    CpaBoolean mult;
    CpaBoolean sync_status; /* cpaCyEcdsaSignRS wants the pointer even when async */
    union {
        CpaCyRsaDecryptOpData rsa;
        CpaCyEcdsaSignRSOpData ec;
    } od;
    CpaFlatBuffer out, s;
    Cpa8U *pin; /* TG_QAT_SLAB pinned bytes */
};

/* One worker's provider state (its thread only, except inbox: under
 * tg_qat_g.lock). */
struct tg_qat_wstate {
    struct tg_qat_wstate *next; /* tg_qat_g.workers */
    struct ev_loop *loop;
    uint64_t poll_seq; /* polls of this instance made by this worker */
    struct tg_keyprov_stats *kstats;
    int worker_id;
    unsigned ii; /* instance index */
    CpaInstanceHandle inst;
    int node;
    struct tg_qat_istats st;
    /* request pool and lists */
    struct tg_qat_req *free;
    size_t npool;
    struct tg_qat_req *dev_head, *dev_tail; /* on the device, in submit order */
    size_t ondev;                           /* on the device, abandoned ones included */
    size_t live;                            /* of those, operations still waiting */
    struct tg_qat_req *done, **done_tail;   /* returned during our own poll */
    struct tg_qat_req *inbox;               /* returned on another thread (tg_qat_g.lock) */
    ev_async wake;
    /* poll scheduling */
    int tfd; /* timerfd; -1: ev_timer fallback (millisecond resolution) */
    ev_io poll_io;
    ev_timer poll_timer;
    uint64_t poll_at; /* armed for this time; 0: not armed */
    uint64_t poll_ns; /* upper bound: smallest poll_delay seen */
    uint64_t ewma_ns; /* device latency estimate */
    ev_timer timeout_timer;
    uint64_t timeout_at;
    struct tg_qat_key *keys;
    BN_CTX *bn;
    bool broken;      /* no pinned memory at start: everything goes to software */
    bool dev_failing; /* submits or polls fail: warned once, until one succeeds */
};

/* Process-wide state. Written by start-up / cleanup on the main thread while
 * no worker runs; workers read api, inst and ecdsa. lock guards workers,
 * inboxes, request owners, orphans and retired. */
struct tg_qat_global {
    pthread_mutex_t lock;
    const struct tg_qat_api *api;
    bool up; /* global_init succeeded */
    unsigned ninst;
    struct tg_qat_inst inst[TG_QAT_MAX_INSTANCES];
    bool ecdsa; /* cpaCyEcdsaSignRS present and offered by every instance */
    struct tg_qat_wstate *workers;
    struct tg_qat_istats *retired; /* [ninst]: stats of workers that ended */
    struct tg_qat_req *orphans;    /* requests the device held when their worker ended */
    struct tg_qat_key *orphan_keys;
    /* for doctor */
    char said[512];      /* what qatlib printed during the last start-up */
    char warned[4][192]; /* warnings held back while qatlib's output is captured */
    unsigned nwarned;
    char last_why[256];
    unsigned seen_inst;
    CpaStatus start_status;
    bool start_tried;
};
extern struct tg_qat_global tg_qat_g;

/* ---- tg_qat_mem.c: pinned memory and keys (worker thread) ---- */

/* len pinned bytes on node (any node when that fails), or NULL. */
Cpa8U *tg_qat_pin_alloc(size_t len, int node);
/* Wipe len bytes, free, set *p to NULL. NULL *p is fine. */
void tg_qat_pin_free(Cpa8U **p, size_t len);
/* The worker's device form of pkey, converted on first use (cached in
 * st->keys). TG_EUNAVAIL: not a key qat takes; TG_ENOMEM: no pinned memory. */
int tg_qat_key_get(struct tg_qat_wstate *st, const struct tg_pkey *pkey, struct tg_qat_key **out);
/* Wipes and frees the key's pinned form; drops its pkey reference. */
void tg_qat_key_free(struct tg_qat_key *k);
/* s^e mod n == em for an RSA result sig (k->nbytes each). */
bool tg_qat_rsa_check(struct tg_qat_wstate *st, const struct tg_qat_key *k, const Cpa8U *sig,
                      const Cpa8U *em);
/* DER ECDSA-Sig-Value from r, s (big-endian, len bytes each) into out;
 * returns its length (at most 2 * (3 + 66) + 3 bytes). */
size_t tg_qat_der_sig(unsigned char *out, const Cpa8U *r, const Cpa8U *s, size_t len);

/* ---- tg_qat_req.c: requests, completion, polling, timers (worker thread) ---- */

/* A request from the pool (a new pinned slab when empty), or NULL. */
struct tg_qat_req *tg_qat_req_get(struct tg_qat_wstate *st);
/* Back to the pool; the slab (nonce, results) is wiped. */
void tg_qat_req_put(struct tg_qat_wstate *st, struct tg_qat_req *r);
/* Free a request no device can reach any more. */
void tg_qat_req_destroy(struct tg_qat_req *r);
/* Append to / remove from the worker's on-device list. */
void tg_qat_dev_link(struct tg_qat_wstate *st, struct tg_qat_req *r);
void tg_qat_dev_unlink(struct tg_qat_wstate *st, struct tg_qat_req *r);
/* The completion callbacks handed to qatlib with each request. */
void tg_qat_rsa_cb(void *tag, CpaStatus status, void *opdata, CpaFlatBuffer *out);
void tg_qat_ecdsa_cb(void *tag, CpaStatus status, void *opdata, CpaBoolean mult, CpaFlatBuffer *pr,
                     CpaFlatBuffer *ps);
/* A failed poll or submit: warned once per worker until tg_qat_device_ok. */
void tg_qat_device_trouble(struct tg_qat_wstate *st, const char *what, CpaStatus rc);
void tg_qat_device_ok(struct tg_qat_wstate *st);
/* Poll the instance once and finish what came back; returns how many of our
 * requests returned. *status (may be NULL) gets qatlib's answer. */
size_t tg_qat_poll(struct tg_qat_wstate *st, CpaStatus *status);
/* Finish the requests other workers' polls returned to us; returns how many. */
size_t tg_qat_take_inbox(struct tg_qat_wstate *st);
void tg_qat_count_batch(struct tg_qat_wstate *st, size_t n, enum tg_flush_reason why);
/* (Re)schedule the poll timer for what is on the device (cleared when
 * nothing is). */
void tg_qat_arm(struct tg_qat_wstate *st);
void tg_qat_timer_clear(struct tg_qat_wstate *st);
/* Finish in software every live op past its deadline; re-arm the timeout
 * timer for the next deadline. */
void tg_qat_expire(struct tg_qat_wstate *st, uint64_t now);
/* Start the timeout timer for deadline if it is the earliest. */
void tg_qat_timeout_watch(struct tg_qat_wstate *st, uint64_t deadline, uint64_t now);
/* Set up / stop the worker's watchers (async, timers, timerfd). */
void tg_qat_watchers_init(struct tg_qat_wstate *st);
void tg_qat_watchers_stop(struct tg_qat_wstate *st);

/* ---- tg_qat_submit.c: keyprov submit / flush / pending / drain ---- */

int tg_qat_submit(void *state, struct tg_keyop *op);
void tg_qat_flush(void *state);
size_t tg_qat_pending(void *state);
void tg_qat_drain(void *state);

/* ---- tg_qat_start.c: process start-up and shut-down (main thread) ---- */

int tg_qat_global_init(char *why, size_t whylen);
void tg_qat_global_cleanup(void);
int tg_qat_supports_key(const struct tg_pkey *key, char *why, size_t whylen);

#endif /* TG_HAVE_QAT_H */

#endif
