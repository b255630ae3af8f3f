/*
 * The qat provider: RSA (CRT) and ECDSA signatures offloaded to Intel
 * QuickAssist through qatlib (behind the tg_qat shim).
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
 * software]`) and is counted. Any other submit error, a failed callback, a
 * multiply failure, a result that fails the public-key check (`verify`) or a
 * timeout is finished in software by tg_keyop_complete: the handshake never
 * fails because of the device.
 */
#include <ev.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <openssl/rand.h>

#include "core/tg_log.h"
#include "core/tg_sysinfo.h"
#include "core/tg_time.h"
#include "keyprov/tg_keyprov.h"
#include "providers/qat/tg_qat.h"
#include "providers/qat/tg_qat_lib.h"
#include "keyprov/tg_rsa_pad.h"

/* ---- settings (one per certificate binding) ---- */

#define TG_QAT_SPILL_MAX       4
#define TG_QAT_DEFAULT_TIMEOUT (100 * TG_NS_PER_MS)
#define TG_QAT_SECTION_MAX     64

struct tg_qat_settings {
    uint64_t timeout_ns;
    bool verify; /* check each RSA result with the public key (Bellcore / Lenstra) */
    size_t nspill;
    char spill[TG_QAT_SPILL_MAX][16]; /* provider names, in order; "software" ends it */
    bool spill_ok[TG_QAT_SPILL_MAX];  /* target can run here (tg_keyprov_require) */
};

static const struct tg_qat_settings tg_qat_default_settings = {
    .timeout_ns = TG_QAT_DEFAULT_TIMEOUT,
    .verify = true,
    .nspill = 1,
    .spill = {"software"},
    .spill_ok = {true},
};

/* The qatlib section, process-wide (icp_sal_userStart runs once): the first
 * certificate's `section` wins; a different one on another certificate is a
 * configuration error. */
static char tg_qat_section[TG_QAT_SECTION_MAX] = "SSL";
static bool tg_qat_section_fixed;

static int tg_qat_conf_fail(const struct tg_conf_params *p, const struct tg_conf_param *q,
                            char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int tg_qat_conf_fail(const struct tg_conf_params *p, const struct tg_conf_param *q,
                            char *err, size_t errlen, const char *fmt, ...)
{
    char path[512], msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(path, sizeof(path), "%s.%s", p->path ? p->path : "typed_config", q->key);
    tg_conf_error(err, errlen, &q->value_mark, path, "%s", msg);
    return TG_ECONFIG;
}

static int tg_qat_conf_spill(const struct tg_conf_params *p, struct tg_qat_settings *s, char *err,
                             size_t errlen)
{
    const struct tg_conf_param *q = tg_conf_params_get(p, "spill");
    if (q == NULL)
        return TG_OK;
    const char *one[1];
    const char *const *items = (const char *const *)q->items;
    size_t n = q->nitems;
    if (q->value != NULL) { /* spill: software */
        one[0] = q->value;
        items = one;
        n = 1;
    }
    if (n == 0)
        return tg_qat_conf_fail(p, q, err, errlen, "%s",
                                "expected a list of providers, e.g. [cryptomb, software]");
    if (n > TG_QAT_SPILL_MAX)
        return tg_qat_conf_fail(p, q, err, errlen, "%s", "at most 4 providers");
    s->nspill = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = items[i];
        if (strcmp(name, "software") != 0 && strcmp(name, "cryptomb") != 0)
            return tg_qat_conf_fail(p, q, err, errlen,
                                    "unknown spill target '%s' (expected cryptomb or software)",
                                    name);
        for (size_t j = 0; j < s->nspill; j++) {
            if (strcmp(s->spill[j], name) == 0)
                return tg_qat_conf_fail(p, q, err, errlen, "'%s' is listed twice", name);
        }
        if (i > 0 && strcmp(items[i - 1], "software") == 0)
            return tg_qat_conf_fail(p, q, err, errlen,
                                    "'software' must be last (it always succeeds), not before "
                                    "'%s'",
                                    name);
        snprintf(s->spill[s->nspill], sizeof(s->spill[0]), "%s", name);
        s->spill_ok[s->nspill] = true;
        s->nspill++;
    }
    return TG_OK;
}

static int tg_qat_configure(const struct tg_conf_keyprov *conf, void **settings, bool *kx,
                            char *err, size_t errlen)
{
    const struct tg_conf_params *p = &conf->typed_config;
    struct tg_qat_settings *s = malloc(sizeof(*s));
    if (s == NULL)
        return TG_ENOMEM;
    *s = tg_qat_default_settings;
    const char *section = NULL;
    bool want_kx = false;
    *kx = false;
    int rc = tg_conf_params_duration(p, "timeout", &s->timeout_ns, err, errlen);
    if (rc == TG_OK && (s->timeout_ns < TG_NS_PER_MS || s->timeout_ns > 60 * TG_NS_PER_S))
        rc = tg_qat_conf_fail(p, tg_conf_params_get(p, "timeout"), err, errlen, "%s",
                              "expected a duration between 1ms and 60s");
    if (rc == TG_OK)
        rc = tg_conf_params_bool(p, "verify", &s->verify, err, errlen);
    if (rc == TG_OK)
        rc = tg_conf_params_bool(p, "key_exchange", &want_kx, err, errlen);
    if (rc == TG_OK && want_kx)
        rc = tg_qat_conf_fail(p, tg_conf_params_get(p, "key_exchange"), err, errlen, "%s",
                              "the qat provider does not do key exchange (X25519 / ECDH stay in "
                              "software); remove the key or set it to false");
    if (rc == TG_OK)
        rc = tg_conf_params_string(p, "section", &section, err, errlen);
    if (rc == TG_OK && section != NULL) {
        const struct tg_conf_param *q = tg_conf_params_get(p, "section");
        size_t len = strlen(section);
        bool ok = len > 0 && len < TG_QAT_SECTION_MAX;
        for (size_t i = 0; ok && i < len; i++) {
            char c = section[i];
            ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '-';
        }
        if (!ok)
            rc = tg_qat_conf_fail(p, q, err, errlen,
                                  "invalid qatlib section name '%s' (letters, digits, '_', '-'; "
                                  "at most 63)",
                                  section);
        else if (tg_qat_section_fixed && strcmp(section, tg_qat_section) != 0)
            rc = tg_qat_conf_fail(p, q, err, errlen,
                                  "section '%s' differs from the one another certificate set "
                                  "(qatlib starts once per process with one section)",
                                  section);
    }
    if (rc == TG_OK)
        rc = tg_qat_conf_spill(p, s, err, errlen);
    if (rc == TG_OK)
        rc = tg_conf_params_check_unused(p, "qat", err, errlen);
    if (rc != TG_OK) {
        free(s);
        return rc;
    }
    if (section != NULL) {
        snprintf(tg_qat_section, sizeof(tg_qat_section), "%s", section);
        tg_qat_section_fixed = true;
    }
    /* A spill target needs a per-worker state even if no certificate uses it. */
    for (size_t i = 0; i < s->nspill; i++) {
        char why[256] = "";
        if (strcmp(s->spill[i], "software") == 0)
            continue;
        if (tg_keyprov_require(s->spill[i], why, sizeof(why)) != TG_OK) {
            s->spill_ok[i] = false;
            TG_WARN("%s: spill target '%s' cannot run here (%s); ring-full operations go to "
                    "the next one",
                    conf->path ? conf->path : "private_key_provider", s->spill[i], why);
        }
    }
    *settings = s;
    return TG_OK;
}

static void tg_qat_settings_free(void *settings)
{
    free(settings);
}

#ifndef TG_HAVE_QAT_H

/* ======================================================================== */
/* Built without the qatlib headers: the provider exists (configs stay      */
/* portable and are validated) but never runs.                              */
/* ======================================================================== */

static int tg_qat_global_init(char *why, size_t whylen)
{
    snprintf(why, whylen,
             "built without qatlib headers (install libqat-dev or run scripts/setup.sh, then "
             "rebuild)");
    return TG_EUNAVAIL;
}

static int tg_qat_worker_init(const struct tg_keyprov_worker *w, void **state)
{
    *state = w->stats;
    return TG_OK;
}

static int tg_qat_submit(void *state, struct tg_keyop *op)
{
    (void)state;
    (void)tg_keyop_complete(op, tg_keyop_compute_sw(op), TG_FALLBACK_DEVICE_ERROR);
    return TG_OK;
}

static void tg_qat_doctor(struct tg_buf *out, struct tg_buf *json)
{
    (void)json;
    tg_buf_puts(out, "this tlsgate was built without the qatlib headers (qat/cpa.h)\n");
}

const struct tg_keyprov_ops tg_qat_provider = {
    .name = "qat",
    .description = "Intel QuickAssist offload through qatlib: RSA (CRT) and ECDSA signatures",
    .does_kx = false,
    .configure = tg_qat_configure,
    .settings_free = tg_qat_settings_free,
    .global_init = tg_qat_global_init,
    .worker_init = tg_qat_worker_init,
    .submit = tg_qat_submit,
    .doctor = tg_qat_doctor,
};

#else /* TG_HAVE_QAT_H */

/* ======================================================================== */
/* The real provider                                                        */
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

/* X(id, metric, labels, help): per-instance counters. Rows with the same
 * metric are adjacent; the first row of a metric carries its help. */
#define TG_QAT_STATS(X)                                                                            \
    X(SUBMITTED, "tlsgate_qat_requests_submitted_total", "",                                       \
      "Requests a QAT instance accepted (RSA decrypt / ECDSA sign)")                               \
    X(COMPLETED, "tlsgate_qat_requests_completed_total", "",                                       \
      "Requests the device returned with a result")                                                \
    X(RETRIED, "tlsgate_qat_requests_retried_total", "",                                           \
      "Submissions refused with CPA_STATUS_RETRY (ring full)")                                     \
    X(SPILL_CRYPTOMB, "tlsgate_qat_spilled_total", "to=\"cryptomb\"",                              \
      "Operations sent elsewhere because the ring was full, by target")                            \
    X(SPILL_SOFTWARE, "tlsgate_qat_spilled_total", "to=\"software\"", "")                          \
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

static const struct tg_hist_spec tg_qat_latency_spec = {
    .name = "tlsgate_qat_latency_seconds",
    .help = "Device latency: submit to the poll that returned the request",
    .scale = 1e-6,
    .nbounds = 16,
    .bounds = {10, 25, 50, 75, 100, 150, 200, 300, 500, 1000, 2000, 5000, 10000, 50000, 100000,
               1000000},
};

/* One worker's counters for its instance (single writer: that worker). */
struct tg_qat_istats {
    tg_ctr c[TG_QAT_STAT_COUNT];
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

static struct {
    pthread_mutex_t lock; /* workers, inboxes, owners, orphans, retired */
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
} tg_qat_g = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* The worker whose poll is running on this thread (for the callbacks). */
static _Thread_local struct tg_qat_wstate *tg_qat_polling;

static const struct tg_qat_settings *tg_qat_settings_of(const struct tg_keyop *op)
{
    /* A spilled op keeps its binding: only our own bindings carry our settings. */
    if (op->binding != NULL && op->binding->ops == &tg_qat_provider &&
        op->binding->settings != NULL)
        return op->binding->settings;
    return &tg_qat_default_settings;
}

/* ---- pinned memory ---- */

static Cpa8U *tg_qat_pin_alloc(size_t len, int node)
{
    void *p = tg_qat_g.api->qaeMemAllocNUMA(len, node, TG_QAT_ALIGN);
    if (p == NULL && node != NUMA_ANY_NODE)
        p = tg_qat_g.api->qaeMemAllocNUMA(len, NUMA_ANY_NODE, TG_QAT_ALIGN);
    return p;
}

static void tg_qat_pin_free(Cpa8U **p, size_t len)
{
    if (*p == NULL)
        return;
    OPENSSL_cleanse(*p, len);
    void *v = *p;
    tg_qat_g.api->qaeMemFreeNUMA(&v);
    *p = NULL;
}

/* ---- keys ---- */

static void tg_qat_key_free(struct tg_qat_key *k)
{
    if (k == NULL)
        return;
    tg_qat_pin_free(&k->pin, k->pinlen);
    BN_free(k->n);
    BN_free(k->e);
    BN_MONT_CTX_free(k->mont);
    tg_pkey_unref(k->pkey);
    free(k);
}

static bool tg_qat_put_bn(const BIGNUM *v, Cpa8U *at, size_t len, CpaFlatBuffer *fb)
{
    if (v == NULL || BN_bn2binpad(v, at, (int)len) < 0)
        return false;
    fb->pData = at;
    fb->dataLenInBytes = (Cpa32U)len;
    return true;
}

static int tg_qat_key_rsa(struct tg_qat_wstate *st, struct tg_qat_key *k)
{
    const struct tg_pkey *pk = k->pkey;
    size_t half = k->nbytes / 2;
    k->pinlen = 5 * half;
    k->pin = tg_qat_pin_alloc(k->pinlen, st->node);
    if (k->pin == NULL)
        return TG_ENOMEM;
    CpaCyRsaPrivateKeyRep2 *r2 = &k->rsa.privateKeyRep2;
    k->rsa.version = CPA_CY_RSA_VERSION_TWO_PRIME;
    k->rsa.privateKeyRepType = CPA_CY_RSA_PRIVATE_KEY_REP_TYPE_2;
    /* Every component padded to half the modulus: qatlib takes the
     * operation size from p and checks p's top bit at that width. */
    if (!tg_qat_put_bn(pk->p, k->pin, half, &r2->prime1P) ||
        !tg_qat_put_bn(pk->q, k->pin + half, half, &r2->prime2Q) ||
        !tg_qat_put_bn(pk->dmp1, k->pin + 2 * half, half, &r2->exponent1Dp) ||
        !tg_qat_put_bn(pk->dmq1, k->pin + 3 * half, half, &r2->exponent2Dq) ||
        !tg_qat_put_bn(pk->iqmp, k->pin + 4 * half, half, &r2->coefficientQInv))
        return TG_ECRYPTO;
    k->n = BN_dup(pk->n);
    k->e = BN_dup(pk->e);
    k->mont = BN_MONT_CTX_new();
    if (k->n == NULL || k->e == NULL || k->mont == NULL || !BN_MONT_CTX_set(k->mont, k->n, st->bn))
        return TG_ENOMEM;
    return TG_OK;
}

static int tg_qat_key_ec(struct tg_qat_wstate *st, struct tg_qat_key *k)
{
    const struct tg_pkey *pk = k->pkey;
    int rc = TG_ECRYPTO;
    EC_GROUP *g = EC_GROUP_new_by_curve_name(pk->curve_nid);
    BN_CTX_start(st->bn);
    BIGNUM *q = BN_CTX_get(st->bn), *a = BN_CTX_get(st->bn), *b = BN_CTX_get(st->bn);
    BIGNUM *x = BN_CTX_get(st->bn), *y = BN_CTX_get(st->bn);
    size_t nb = k->nbytes;
    if (g == NULL || y == NULL || !EC_GROUP_get_curve(g, q, a, b, st->bn) ||
        !EC_POINT_get_affine_coordinates(g, EC_GROUP_get0_generator(g), x, y, st->bn))
        goto out;
    /* a, b, q, xg, yg, n, d: seven order-sized numbers. */
    k->pinlen = 7 * nb;
    k->pin = tg_qat_pin_alloc(k->pinlen, st->node);
    if (k->pin == NULL) {
        rc = TG_ENOMEM;
        goto out;
    }
    CpaCyEcdsaSignRSOpData *ec = &k->ec;
    ec->fieldType = CPA_CY_EC_FIELD_TYPE_PRIME;
    if (!tg_qat_put_bn(x, k->pin, nb, &ec->xg) || !tg_qat_put_bn(y, k->pin + nb, nb, &ec->yg) ||
        !tg_qat_put_bn(EC_GROUP_get0_order(g), k->pin + 2 * nb, nb, &ec->n) ||
        !tg_qat_put_bn(q, k->pin + 3 * nb, nb, &ec->q) ||
        !tg_qat_put_bn(a, k->pin + 4 * nb, nb, &ec->a) ||
        !tg_qat_put_bn(b, k->pin + 5 * nb, nb, &ec->b) ||
        !tg_qat_put_bn(pk->priv, k->pin + 6 * nb, nb, &ec->d))
        goto out;
    rc = TG_OK;
out:
    BN_CTX_end(st->bn);
    EC_GROUP_free(g);
    return rc;
}

/* The worker's device form of pkey, converted on first use. TG_EUNAVAIL:
 * not a key qat takes; TG_ENOMEM: no pinned memory. */
static int tg_qat_key_get(struct tg_qat_wstate *st, const struct tg_pkey *pkey,
                          struct tg_qat_key **out)
{
    for (struct tg_qat_key *k = st->keys; k != NULL; k = k->next) {
        if (k->pkey == pkey) {
            *out = k;
            return TG_OK;
        }
    }
    if (pkey == NULL)
        return TG_EUNAVAIL;
    struct tg_qat_key *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return TG_ENOMEM;
    k->pkey = tg_pkey_ref((struct tg_pkey *)pkey);
    k->bits = pkey->bits;
    int rc;
    if (pkey->type == TG_PKEY_RSA) {
        k->kind = TG_QAT_RSA;
        k->nbytes = (size_t)(pkey->bits + 7) / 8;
        rc = tg_qat_key_rsa(st, k);
    } else if (tg_qat_g.ecdsa &&
               (pkey->curve_nid == NID_X9_62_prime256v1 || pkey->curve_nid == NID_secp384r1)) {
        k->kind = TG_QAT_ECDSA;
        k->nbytes = (size_t)(pkey->bits + 7) / 8;
        rc = tg_qat_key_ec(st, k);
    } else {
        rc = TG_EUNAVAIL;
    }
    if (rc != TG_OK) {
        tg_qat_key_free(k);
        return rc;
    }
    k->next = st->keys;
    st->keys = k;
    *out = k;
    return TG_OK;
}

/* ---- requests ---- */

static struct tg_qat_req *tg_qat_req_get(struct tg_qat_wstate *st)
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

static void tg_qat_req_destroy(struct tg_qat_req *r)
{
    tg_qat_pin_free(&r->pin, TG_QAT_SLAB);
    free(r);
}

/* Back to the pool; the nonce and results are wiped. */
static void tg_qat_req_put(struct tg_qat_wstate *st, struct tg_qat_req *r)
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

static void tg_qat_dev_link(struct tg_qat_wstate *st, struct tg_qat_req *r)
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

static void tg_qat_dev_unlink(struct tg_qat_wstate *st, struct tg_qat_req *r)
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

static void tg_qat_rsa_cb(void *tag, CpaStatus status, void *opdata, CpaFlatBuffer *out)
{
    (void)opdata;
    (void)out;
    struct tg_qat_req *r = tag;
    r->status = status;
    r->mult = CPA_TRUE;
    tg_qat_returned(r);
}

static void tg_qat_ecdsa_cb(void *tag, CpaStatus status, void *opdata, CpaBoolean mult,
                            CpaFlatBuffer *pr, CpaFlatBuffer *ps)
{
    (void)opdata;
    (void)pr;
    (void)ps;
    struct tg_qat_req *r = tag;
    r->status = status;
    r->mult = mult;
    tg_qat_returned(r);
}

/* ---- results ---- */

/* s^e mod n == em: the signature is what the key makes (a faulty device
 * result from a CRT computation would leak a prime: Bellcore/Lenstra). */
static bool tg_qat_rsa_check(struct tg_qat_wstate *st, const struct tg_qat_key *k, const Cpa8U *sig,
                             const Cpa8U *em)
{
    bool ok = false;
    unsigned char back[TG_KEYOP_OUT_MAX];
    BN_CTX_start(st->bn);
    BIGNUM *s = BN_CTX_get(st->bn), *m = BN_CTX_get(st->bn);
    if (m != NULL && BN_bin2bn(sig, (int)k->nbytes, s) != NULL && BN_cmp(s, k->n) < 0 &&
        BN_mod_exp_mont(m, s, k->e, k->n, st->bn, k->mont) &&
        BN_bn2binpad(m, back, (int)k->nbytes) >= 0)
        ok = CRYPTO_memcmp(back, em, k->nbytes) == 0;
    BN_CTX_end(st->bn);
    return ok;
}

/* DER of an ECDSA-Sig-Value from r, s (big-endian, len bytes each). */
static size_t tg_qat_der_int(unsigned char *out, const Cpa8U *v, size_t len)
{
    while (len > 1 && v[0] == 0) {
        v++;
        len--;
    }
    size_t pad = (v[0] & 0x80) ? 1 : 0;
    out[0] = 0x02;
    out[1] = (unsigned char)(len + pad);
    if (pad)
        out[2] = 0;
    memcpy(out + 2 + pad, v, len);
    return 2 + pad + len;
}

static size_t tg_qat_der_sig(unsigned char *out, const Cpa8U *r, const Cpa8U *s, size_t len)
{
    unsigned char body[2 * (2 + 1 + 66)];
    size_t n = tg_qat_der_int(body, r, len);
    n += tg_qat_der_int(body + n, s, len);
    size_t o = 0;
    out[o++] = 0x30;
    if (n >= 0x80)
        out[o++] = 0x81;
    out[o++] = (unsigned char)n;
    memcpy(out + o, body, n);
    return o + n;
}

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
    if (r->kind == TG_QAT_RSA) {
        if (tg_qat_settings_of(op)->verify && !tg_qat_rsa_check(st, k, r->out.pData, r->pin)) {
            tg_ctr_inc(&st->st.c[TG_QAT_FAIL_VERIFY]);
            TG_WARN("qat: instance %u returned an RSA signature that does not verify; "
                    "finishing in software",
                    st->ii);
            tg_qat_req_put(st, r);
            (void)tg_keyop_complete(op, TG_EDEVICE, TG_FALLBACK_FAULT_CHECK);
            return;
        }
        memcpy(op->out, r->out.pData, k->nbytes);
        op->outlen = k->nbytes;
    } else {
        op->outlen = tg_qat_der_sig(op->out, r->out.pData, r->s.pData, k->nbytes);
    }
    tg_qat_req_put(st, r);
    (void)tg_keyop_complete(op, TG_OK, TG_FALLBACK_DEVICE_ERROR);
}

/* ---- polling ---- */

static void tg_qat_arm(struct tg_qat_wstate *st);

/* The device misbehaves (a failed poll or submit): say it once per worker,
 * loudly, then keep quiet until it works again; every affected operation is
 * finished in software and counted anyway. */
static void tg_qat_device_trouble(struct tg_qat_wstate *st, const char *what, CpaStatus rc)
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

static void tg_qat_device_ok(struct tg_qat_wstate *st)
{
    if (st->dev_failing) {
        st->dev_failing = false;
        TG_INFO("qat: worker %d: instance %u works again", st->worker_id, st->ii);
    }
}

/* Poll the instance once and finish what came back. Returns how many of our
 * requests returned; *status (may be NULL) gets qatlib's answer. */
static size_t tg_qat_poll_st(struct tg_qat_wstate *st, CpaStatus *status)
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

static size_t tg_qat_poll(struct tg_qat_wstate *st)
{
    return tg_qat_poll_st(st, NULL);
}

static void tg_qat_count_batch(struct tg_qat_wstate *st, size_t n, enum tg_flush_reason why)
{
    if (n == 0 || st->kstats == NULL)
        return;
    tg_ctr_inc(&st->kstats->flushes[why]);
    tg_hist_record(&st->kstats->batch_size, &tg_keyprov_batch_spec, n);
}

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

static void tg_qat_timer_clear(struct tg_qat_wstate *st)
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

/* Timeout scan: finish in software every live op past its deadline. */
static void tg_qat_expire(struct tg_qat_wstate *st, uint64_t now)
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
    st->timeout_at = next;
    if (next != 0) {
        ev_timer_set(&st->timeout_timer, tg_ns_to_s(next - now) + 0.0005, 0.0);
        ev_timer_start(st->loop, &st->timeout_timer);
    }
}

/*
 * Schedule the next poll while requests are on the device: at the expected
 * completion of the oldest one (submit + latency estimate); once that has
 * passed, every quarter of the estimate; never sooner than
 * TG_QAT_MIN_POLL_NS, never later than poll_delay. Keeps an earlier arming.
 */
static void tg_qat_arm(struct tg_qat_wstate *st)
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
    size_t n = tg_qat_poll(st);
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

/* Requests other workers' polls returned to us. */
static size_t tg_qat_take_inbox(struct tg_qat_wstate *st)
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

static void tg_qat_wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_qat_wstate *st = w->data;
    tg_qat_count_batch(st, tg_qat_take_inbox(st), TG_FLUSH_TIMER);
    tg_qat_arm(st);
}

/* ---- submit ---- */

static int tg_qat_spill(struct tg_qat_wstate *st, struct tg_keyop *op)
{
    const struct tg_qat_settings *s = tg_qat_settings_of(op);
    for (size_t i = 0; i < s->nspill; i++) {
        if (strcmp(s->spill[i], "software") == 0)
            break;
        if (!s->spill_ok[i])
            continue;
        if (tg_keyprov_spill(op, s->spill[i]) == TG_OK) {
            tg_ctr_inc(&st->st.c[TG_QAT_SPILL_CRYPTOMB]);
            return op->state == TG_KEYOP_DONE ? TG_OK : TG_EPENDING;
        }
        if (op->state == TG_KEYOP_DONE)
            return TG_OK;
    }
    tg_ctr_inc(&st->st.c[TG_QAT_SPILL_SOFTWARE]);
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

static int tg_qat_submit(void *state, struct tg_keyop *op)
{
    struct tg_qat_wstate *st = state;
    const struct tg_qat_settings *s = tg_qat_settings_of(op);
    if (op->type != TG_KEYOP_RSA_SIGN && op->type != TG_KEYOP_ECDSA_SIGN)
        return tg_qat_inline_sw(op);
    if (st->broken) {
        tg_ctr_inc(&st->st.c[TG_QAT_FAIL_SUBMIT]);
        (void)tg_keyop_complete(op, TG_EDEVICE, TG_FALLBACK_DEVICE_ERROR);
        return TG_OK;
    }
    if (op->binding != NULL && op->binding->poll_delay_ns < st->poll_ns)
        st->poll_ns = op->binding->poll_delay_ns < TG_QAT_MIN_POLL_NS ? TG_QAT_MIN_POLL_NS
                                                                      : op->binding->poll_delay_ns;
    struct tg_qat_key *key = NULL;
    int rc = tg_qat_key_get(st, op->pkey, &key);
    if (rc == TG_EUNAVAIL)
        return tg_qat_inline_sw(op);
    if (rc != TG_OK || (key->kind == TG_QAT_RSA) != (op->type == TG_KEYOP_RSA_SIGN)) {
        tg_ctr_inc(&st->st.c[TG_QAT_FAIL_SUBMIT]);
        (void)tg_keyop_complete(op, TG_EDEVICE, TG_FALLBACK_DEVICE_ERROR);
        return TG_OK;
    }
    if (st->ondev >= TG_QAT_MAX_INFLIGHT) {
        /* Our own bound (a device that keeps requests and never answers
         * must not grow the pool without limit): as good as a full ring. */
        tg_ctr_inc(&st->st.c[TG_QAT_RETRIED]);
        return tg_qat_spill(st, op);
    }
    struct tg_qat_req *r = tg_qat_req_get(st);
    if (r == NULL) {
        tg_ctr_inc(&st->st.c[TG_QAT_FAIL_SUBMIT]);
        (void)tg_keyop_complete(op, TG_EDEVICE, TG_FALLBACK_DEVICE_ERROR);
        return TG_OK;
    }
    size_t nb = key->nbytes;
    CpaStatus cs;
    r->kind = key->kind;
    r->status = CPA_STATUS_FAIL;
    r->mult = CPA_FALSE;
    if (key->kind == TG_QAT_RSA) {
        rc = tg_rsa_pad_encode(r->pin, nb, key->bits, op->rsa_padding, op->md, op->mgf1_md,
                               op->pss_saltlen, op->in, op->inlen);
        if (rc != TG_OK) {
            /* A digest or salt the encoder does not take: software decides. */
            tg_qat_req_put(st, r);
            return tg_qat_inline_sw(op);
        }
        r->od.rsa.pRecipientPrivateKey = &key->rsa;
        r->od.rsa.inputData.pData = r->pin;
        r->od.rsa.inputData.dataLenInBytes = (Cpa32U)nb;
        r->out.pData = r->pin + TG_QAT_OUT_OFF;
        r->out.dataLenInBytes = (Cpa32U)nb;
    } else {
        /* X9.62: the leftmost order-length bytes of the digest (P-256 and
         * P-384 orders are whole bytes), right-aligned when shorter. */
        size_t ml = op->inlen < nb ? op->inlen : nb;
        memset(r->pin, 0, nb);
        memcpy(r->pin + (nb - ml), op->in, ml);
        r->od.ec = key->ec;
        r->od.ec.m.pData = r->pin;
        r->od.ec.m.dataLenInBytes = (Cpa32U)nb;
        if (!tg_qat_nonce(r->pin + TG_QAT_K_OFF, &key->ec.n, nb)) {
            tg_qat_req_put(st, r);
            return tg_qat_inline_sw(op);
        }
        r->od.ec.k.pData = r->pin + TG_QAT_K_OFF;
        r->od.ec.k.dataLenInBytes = (Cpa32U)nb;
        r->out.pData = r->pin + TG_QAT_OUT_OFF;
        r->out.dataLenInBytes = (Cpa32U)nb;
        r->s.pData = r->pin + TG_QAT_S_OFF;
        r->s.dataLenInBytes = (Cpa32U)nb;
    }
    r->key = key;
    key->refs++;
    r->op = op;
    r->t_submit = tg_now_ns();
    r->poll_seq = st->poll_seq;
    r->deadline = r->t_submit + s->timeout_ns;
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
        if (st->timeout_at == 0 || r->deadline < st->timeout_at) {
            uint64_t now = r->t_submit;
            ev_timer_stop(st->loop, &st->timeout_timer);
            ev_timer_set(&st->timeout_timer, tg_ns_to_s(r->deadline - now) + 0.0005, 0.0);
            ev_timer_start(st->loop, &st->timeout_timer);
            st->timeout_at = r->deadline;
        }
        tg_qat_arm(st);
        return TG_EPENDING;
    }
    tg_qat_req_put(st, r);
    if (cs == CPA_STATUS_RETRY) {
        tg_ctr_inc(&st->st.c[TG_QAT_RETRIED]);
        return tg_qat_spill(st, op);
    }
    tg_ctr_inc(&st->st.c[TG_QAT_FAIL_SUBMIT]);
    tg_qat_device_trouble(st, key->kind == TG_QAT_RSA ? "cpaCyRsaDecrypt" : "cpaCyEcdsaSignRS", cs);
    (void)tg_keyop_complete(op, TG_EDEVICE, TG_FALLBACK_DEVICE_ERROR);
    return TG_OK;
}

static void tg_qat_flush(void *state)
{
    struct tg_qat_wstate *st = state;
    if (st->live == 0)
        return; /* nothing waits; abandoned requests are the timer's */
    tg_qat_count_batch(st, tg_qat_poll(st), TG_FLUSH_IDLE);
    tg_qat_arm(st);
}

static size_t tg_qat_pending(void *state)
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
static void tg_qat_drain(void *state)
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
        tg_qat_poll(st);
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
        tg_qat_poll_st(st, &ps);
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

/* ---- workers ---- */

static int tg_qat_worker_init(const struct tg_keyprov_worker *w, void **state)
{
    struct tg_qat_wstate *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return TG_ENOMEM;
    st->loop = w->loop;
    st->kstats = w->stats;
    st->worker_id = w->worker_id;
    st->ii = (unsigned)(w->worker_id < 0 ? 0 : w->worker_id) % tg_qat_g.ninst;
    st->inst = tg_qat_g.inst[st->ii].h;
    st->node = tg_qat_g.inst[st->ii].node;
    st->done_tail = &st->done;
    st->poll_ns = TG_NS_PER_MS;
    st->ewma_ns = 100 * TG_NS_PER_US;
    st->bn = BN_CTX_new();
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
        TG_WARN("qat: worker %d: no timerfd; polling with millisecond resolution", w->worker_id);
    }
    /* A small pool up front, so the first handshakes do not allocate. */
    struct tg_qat_req *pre = NULL;
    for (int i = 0; i < TG_QAT_POOL_INIT; i++) {
        struct tg_qat_req *r = tg_qat_req_get(st);
        if (r == NULL)
            break;
        r->next = pre;
        pre = r;
    }
    while (pre != NULL) {
        struct tg_qat_req *next = pre->next;
        tg_qat_req_put(st, pre);
        pre = next;
    }
    if (st->npool == 0 || st->bn == NULL) {
        st->broken = true;
        TG_WARN("qat: worker %d: cannot allocate pinned memory (qaeMemAllocNUMA; check memlock "
                "and the usdm driver); its operations run in software",
                w->worker_id);
    }
    pthread_mutex_lock(&tg_qat_g.lock);
    st->next = tg_qat_g.workers;
    tg_qat_g.workers = st;
    pthread_mutex_unlock(&tg_qat_g.lock);
    TG_DEBUG("qat: worker %d uses instance %u (%s)", w->worker_id, st->ii,
             tg_qat_g.inst[st->ii].name);
    *state = st;
    return TG_OK;
}

static void tg_qat_istats_merge(struct tg_qat_istats *dst, const struct tg_qat_istats *src)
{
    for (int i = 0; i < TG_QAT_STAT_COUNT; i++)
        tg_ctr_add(&dst->c[i], tg_ctr_get(&src->c[i]));
    tg_ctr_add(&dst->inflight_up, tg_ctr_get(&src->inflight_up));
    tg_ctr_add(&dst->inflight_down, tg_ctr_get(&src->inflight_down));
    tg_hist_merge(&dst->latency_us, &src->latency_us);
}

static void tg_qat_worker_cleanup(void *state)
{
    struct tg_qat_wstate *st = state;
    tg_qat_take_inbox(st);
    ev_async_stop(st->loop, &st->wake);
    ev_timer_stop(st->loop, &st->timeout_timer);
    ev_timer_stop(st->loop, &st->poll_timer);
    if (st->tfd >= 0) {
        ev_io_stop(st->loop, &st->poll_io);
        close(st->tfd);
    }
    /* Ops still waiting (cleanup without drain): software, now. */
    for (struct tg_qat_req *r = st->dev_head; r != NULL; r = r->next) {
        struct tg_keyop *op = r->op;
        if (op != NULL) {
            r->op = NULL;
            op->prov_data = NULL;
            st->live--;
            (void)tg_keyop_complete(op, TG_ETIMEOUT, TG_FALLBACK_TIMEOUT);
        }
    }
    pthread_mutex_lock(&tg_qat_g.lock);
    for (struct tg_qat_wstate **pp = &tg_qat_g.workers; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == st) {
            *pp = st->next;
            break;
        }
    }
    /* What the device still holds becomes an orphan (freed after
     * icp_sal_userStop), with the keys it reads. */
    struct tg_qat_req *r = st->dev_head;
    while (r != NULL) {
        struct tg_qat_req *next = r->next;
        atomic_store_explicit(&r->owner, NULL, memory_order_relaxed);
        r->next = tg_qat_g.orphans;
        tg_qat_g.orphans = r;
        r = next;
    }
    st->dev_head = st->dev_tail = NULL;
    struct tg_qat_key **kp = &st->keys;
    while (*kp != NULL) {
        struct tg_qat_key *k = *kp;
        if (k->refs > 0) {
            *kp = k->next;
            k->orphan_next = tg_qat_g.orphan_keys;
            tg_qat_g.orphan_keys = k;
        } else {
            kp = &k->next;
        }
    }
    if (tg_qat_g.retired != NULL && st->ii < tg_qat_g.ninst) {
        atomic_store_explicit(&st->st.inflight_down,
                              atomic_load_explicit(&st->st.inflight_up, memory_order_relaxed),
                              memory_order_relaxed);
        tg_qat_istats_merge(&tg_qat_g.retired[st->ii], &st->st);
    }
    pthread_mutex_unlock(&tg_qat_g.lock);
    while (st->free != NULL) {
        struct tg_qat_req *next = st->free->next;
        tg_qat_req_destroy(st->free);
        st->free = next;
    }
    while (st->keys != NULL) {
        struct tg_qat_key *next = st->keys->next;
        tg_qat_key_free(st->keys);
        st->keys = next;
    }
    BN_CTX_free(st->bn);
    free(st);
}

/* ---- start-up ---- */

static void tg_qat_copy_name(char *dst, size_t cap, const Cpa8U *src, size_t srclen)
{
    size_t n = 0;
    /* Printable, and safe inside a Prometheus label value. */
    while (n < srclen && n + 1 < cap && src[n] != 0) {
        char c = (src[n] >= 0x20 && src[n] < 0x7f) ? (char)src[n] : '?';
        dst[n] = (c == '"' || c == '\\') ? '_' : c;
        n++;
    }
    dst[n] = '\0';
}

/*
 * qatlib and usdm print their errors ("Cannot open /dev/vfio" on stderr,
 * "ADF_UIO_PROXY err: ..." with printf on stdout). Around the start-up and
 * shut-down calls (main thread, no worker running) both descriptors point at
 * a memfd: the text becomes debug log lines, the first line goes into the
 * reason qat cannot run, and doctor shows all of it, instead of stray lines
 * that break `tlsgate doctor --json` and the one-line error of check-config.
 */
struct tg_qat_capture {
    int fd, saved_out, saved_err;
};

static void tg_qat_capture_begin(struct tg_qat_capture *c)
{
    fflush(stdout);
    fflush(stderr);
    c->saved_out = c->saved_err = -1;
    c->fd = memfd_create("tlsgate-qatlib-output", MFD_CLOEXEC);
    if (c->fd < 0)
        return; /* no capture: their text goes where it goes */
    c->saved_out = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    c->saved_err = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    if (c->saved_out < 0 || c->saved_err < 0 || dup2(c->fd, STDOUT_FILENO) < 0 ||
        dup2(c->fd, STDERR_FILENO) < 0) {
        if (c->saved_out >= 0)
            (void)dup2(c->saved_out, STDOUT_FILENO);
        if (c->saved_err >= 0)
            (void)dup2(c->saved_err, STDERR_FILENO);
    }
}

/* Restore the descriptors; what was printed goes to the debug log and, its
 * lines joined by " | ", into said. */
static void tg_qat_capture_end(struct tg_qat_capture *c, char *said, size_t saidlen)
{
    said[0] = '\0';
    if (c->fd < 0)
        return;
    fflush(stdout);
    fflush(stderr);
    if (c->saved_out >= 0) {
        (void)dup2(c->saved_out, STDOUT_FILENO);
        close(c->saved_out);
    }
    if (c->saved_err >= 0) {
        (void)dup2(c->saved_err, STDERR_FILENO);
        close(c->saved_err);
    }
    char buf[2048];
    ssize_t n = pread(c->fd, buf, sizeof(buf) - 1, 0);
    close(c->fd);
    buf[n > 0 ? n : 0] = '\0';
    size_t used = 0;
    for (char *line = buf; *line != '\0';) {
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        if (line[0] != '\0') {
            TG_DEBUG("qatlib: %s", line);
            int w = snprintf(said + used, saidlen - used, "%s%s", used ? " | " : "", line);
            if (w > 0)
                used = (size_t)w >= saidlen - used ? saidlen - 1 : used + (size_t)w;
        }
        if (nl == NULL)
            break;
        line = nl + 1;
    }
}

static void tg_qat_stop_all(void)
{
    const struct tg_qat_api *api = tg_qat_g.api;
    for (unsigned i = 0; i < tg_qat_g.ninst; i++) {
        if (tg_qat_g.inst[i].started)
            (void)api->cpaCyStopInstance(tg_qat_g.inst[i].h);
        tg_qat_g.inst[i].started = false;
    }
    (void)api->icp_sal_userStop();
    /* The device can no longer reach any buffer: orphans go now. */
    while (tg_qat_g.orphans != NULL) {
        struct tg_qat_req *next = tg_qat_g.orphans->next;
        tg_qat_req_destroy(tg_qat_g.orphans);
        tg_qat_g.orphans = next;
    }
    while (tg_qat_g.orphan_keys != NULL) {
        struct tg_qat_key *next = tg_qat_g.orphan_keys->orphan_next;
        tg_qat_key_free(tg_qat_g.orphan_keys);
        tg_qat_g.orphan_keys = next;
    }
}

static int tg_qat_fail(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int tg_qat_fail(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    snprintf(tg_qat_g.last_why, sizeof(tg_qat_g.last_why), "%s", why);
    /* qatlib is not running: the next start-up takes its section afresh. */
    tg_qat_section_fixed = false;
    snprintf(tg_qat_section, sizeof(tg_qat_section), "SSL");
    return TG_EUNAVAIL;
}

static int tg_qat_start(char *why, size_t whylen);

static int tg_qat_global_init(char *why, size_t whylen)
{
    struct tg_qat_capture cap;
    tg_qat_g.nwarned = 0;
    tg_qat_capture_begin(&cap);
    int rc = tg_qat_start(why, whylen);
    tg_qat_capture_end(&cap, tg_qat_g.said, sizeof(tg_qat_g.said));
    for (unsigned i = 0; i < tg_qat_g.nwarned; i++)
        TG_WARN("%s", tg_qat_g.warned[i]);
    if (rc != TG_OK && tg_qat_g.said[0] != '\0') {
        /* qatlib's first line usually names the cause (no /dev/vfio, ...). */
        size_t len = strlen(why), first = strcspn(tg_qat_g.said, "|");
        while (first > 0 && tg_qat_g.said[first - 1] == ' ')
            first--;
        if (len + 12 < whylen)
            snprintf(why + len, whylen - len, "; qatlib: %.*s", (int)first, tg_qat_g.said);
        snprintf(tg_qat_g.last_why, sizeof(tg_qat_g.last_why), "%s", why);
    }
    if (rc == TG_OK)
        TG_INFO("qat: %s: section \"%s\", %u crypto instance(s) started (%s)%s", tg_qat_lib_path(),
                tg_qat_section, tg_qat_g.ninst, tg_qat_g.inst[0].part,
                tg_qat_g.ecdsa ? "" : "; ECDSA not offered: EC keys stay in software");
    return rc;
}

static int tg_qat_start(char *why, size_t whylen)
{
    const struct tg_qat_api *api = NULL;
    char lwhy[256] = "";
    tg_qat_g.last_why[0] = '\0';
    tg_qat_g.start_tried = false;
    tg_qat_g.seen_inst = 0;
    tg_qat_g.ninst = 0;
    /* Resolve afresh: a failed earlier start-up never ran global_cleanup. */
    tg_qat_unload();
    if (tg_qat_load(&api, lwhy, sizeof(lwhy)) != TG_OK)
        return tg_qat_fail(why, whylen, "%s", lwhy);
    tg_qat_g.api = api;
    tg_qat_g.start_tried = true;
    tg_qat_g.start_status = api->icp_sal_userStart(tg_qat_section);
    if (tg_qat_g.start_status != CPA_STATUS_SUCCESS) {
        return tg_qat_fail(why, whylen,
                           "icp_sal_userStart(\"%s\") failed (%s): no QAT device this process "
                           "can use (run `tlsgate doctor`)",
                           tg_qat_section, tg_qat_status_name(tg_qat_g.start_status));
    }
    Cpa16U n = 0;
    CpaInstanceHandle hs[TG_QAT_MAX_INSTANCES];
    CpaStatus cs = api->cpaCyGetNumInstances(&n);
    if (cs != CPA_STATUS_SUCCESS || n == 0) {
        (void)api->icp_sal_userStop();
        return tg_qat_fail(
            why, whylen, "qatlib started but offers no crypto instance in section \"%s\" (%s)",
            tg_qat_section, cs != CPA_STATUS_SUCCESS ? tg_qat_status_name(cs) : "0 instances");
    }
    if (n > TG_QAT_MAX_INSTANCES)
        n = TG_QAT_MAX_INSTANCES;
    tg_qat_g.seen_inst = n;
    cs = api->cpaCyGetInstances(n, hs);
    if (cs != CPA_STATUS_SUCCESS) {
        (void)api->icp_sal_userStop();
        return tg_qat_fail(why, whylen, "cpaCyGetInstances(%u) failed (%s)", (unsigned)n,
                           tg_qat_status_name(cs));
    }
    bool ecdsa = api->cpaCyEcdsaSignRS != NULL;
    char first_err[160] = "";
    unsigned ok = 0;
    for (unsigned i = 0; i < n; i++) {
        struct tg_qat_inst *in = &tg_qat_g.inst[ok];
        memset(in, 0, sizeof(*in));
        in->h = hs[i];
        CpaInstanceInfo2 info;
        memset(&info, 0, sizeof(info));
        if (api->cpaCyInstanceGetInfo2(hs[i], &info) == CPA_STATUS_SUCCESS) {
            tg_qat_copy_name(in->name, sizeof(in->name), info.instName, sizeof(info.instName));
            tg_qat_copy_name(in->part, sizeof(in->part), info.partName, sizeof(info.partName));
            in->node = (int)info.nodeAffinity;
        } else {
            snprintf(in->name, sizeof(in->name), "cy%u", i);
            in->node = NUMA_ANY_NODE;
        }
        CpaCyCapabilitiesInfo caps;
        memset(&caps, 0, sizeof(caps));
        cs = api->cpaCyQueryCapabilities(hs[i], &caps);
        if (cs != CPA_STATUS_SUCCESS || !caps.rsaSupported) {
            if (first_err[0] == '\0')
                snprintf(first_err, sizeof(first_err), "instance %u (%s) offers no RSA", i,
                         in->name);
            continue;
        }
        in->ecdsa = caps.ecdsaSupported == CPA_TRUE;
        cs = api->cpaCySetAddressTranslation(hs[i], api->qaeVirtToPhysNUMA);
        if (cs == CPA_STATUS_SUCCESS)
            cs = api->cpaCyStartInstance(hs[i]);
        if (cs != CPA_STATUS_SUCCESS) {
            if (first_err[0] == '\0')
                snprintf(first_err, sizeof(first_err), "cpaCyStartInstance(%s) failed (%s)",
                         in->name, tg_qat_status_name(cs));
            if (tg_qat_g.nwarned < TG_ARRAY_LEN(tg_qat_g.warned)) {
                char msg[sizeof(tg_qat_g.warned[0])];
                snprintf(msg, sizeof(msg), "qat: instance %u (%s) does not start (%s); not used", i,
                         in->name, tg_qat_status_name(cs));
                memcpy(tg_qat_g.warned[tg_qat_g.nwarned++], msg, sizeof(msg));
            }
            continue;
        }
        in->started = true;
        ecdsa = ecdsa && in->ecdsa;
        ok++;
    }
    tg_qat_g.ninst = ok;
    if (ok == 0) {
        (void)api->icp_sal_userStop();
        return tg_qat_fail(why, whylen, "no usable QAT crypto instance: %s", first_err);
    }
    tg_qat_g.ecdsa = ecdsa;
    tg_qat_g.retired = calloc(ok, sizeof(*tg_qat_g.retired));
    if (tg_qat_g.retired == NULL) {
        tg_qat_stop_all();
        tg_qat_g.ninst = 0;
        return tg_qat_fail(why, whylen, "out of memory");
    }
    tg_qat_g.up = true;
    return TG_OK;
}

static void tg_qat_global_cleanup(void)
{
    if (!tg_qat_g.up)
        return;
    pthread_mutex_lock(&tg_qat_g.lock);
    bool workers_left = tg_qat_g.workers != NULL;
    pthread_mutex_unlock(&tg_qat_g.lock);
    if (workers_left)
        TG_ERROR("qat: global cleanup while workers still run");
    struct tg_qat_capture cap;
    char said[512];
    tg_qat_capture_begin(&cap);
    tg_qat_stop_all();
    tg_qat_capture_end(&cap, said, sizeof(said));
    free(tg_qat_g.retired);
    tg_qat_g.retired = NULL;
    tg_qat_g.ninst = 0;
    tg_qat_g.up = false;
    tg_qat_g.ecdsa = false;
    tg_qat_section_fixed = false;
    snprintf(tg_qat_section, sizeof(tg_qat_section), "SSL");
    tg_qat_unload();
}

static int tg_qat_supports_key(const struct tg_pkey *key, char *why, size_t whylen)
{
    if (key->type == TG_PKEY_RSA) {
        int pb = key->p ? BN_num_bits(key->p) : 0, qb = key->q ? BN_num_bits(key->q) : 0;
        if (key->bits != 2048 && key->bits != 3072 && key->bits != 4096) {
            snprintf(why, whylen, "RSA-%d: qat takes 2048, 3072 and 4096-bit RSA keys", key->bits);
            return TG_EUNAVAIL;
        }
        if (key->dmp1 == NULL || key->dmq1 == NULL || key->iqmp == NULL || pb != key->bits / 2 ||
            qb != key->bits / 2) {
            snprintf(why, whylen,
                     "RSA-%d key without two %d-bit primes and CRT parameters (primes of %d and "
                     "%d bits)",
                     key->bits, key->bits / 2, pb, qb);
            return TG_EUNAVAIL;
        }
        return TG_OK;
    }
    if (key->curve_nid != NID_X9_62_prime256v1 && key->curve_nid != NID_secp384r1) {
        snprintf(why, whylen, "%s: qat signs with P-256 and P-384 keys only",
                 key->group ? key->group : "this curve");
        return TG_EUNAVAIL;
    }
    if (!tg_qat_g.ecdsa) {
        snprintf(why, whylen, "%s",
                 tg_qat_g.api != NULL && tg_qat_g.api->cpaCyEcdsaSignRS == NULL
                     ? "this qatlib has no cpaCyEcdsaSignRS"
                     : "the QAT instances do not offer ECDSA");
        return TG_EUNAVAIL;
    }
    return TG_OK;
}

/* ---- /stats ---- */

static void tg_qat_render_stats(struct tg_buf *out)
{
    pthread_mutex_lock(&tg_qat_g.lock);
    unsigned n = tg_qat_g.ninst;
    if (n == 0 || tg_qat_g.retired == NULL) {
        pthread_mutex_unlock(&tg_qat_g.lock);
        return;
    }
    struct tg_qat_istats *agg = calloc(n, sizeof(*agg));
    if (agg == NULL) {
        pthread_mutex_unlock(&tg_qat_g.lock);
        return;
    }
    for (unsigned i = 0; i < n; i++)
        tg_qat_istats_merge(&agg[i], &tg_qat_g.retired[i]);
    for (struct tg_qat_wstate *w = tg_qat_g.workers; w != NULL; w = w->next) {
        if (w->ii < n)
            tg_qat_istats_merge(&agg[w->ii], &w->st);
    }
    char names[TG_QAT_MAX_INSTANCES][CPA_INST_NAME_SIZE + 1];
    for (unsigned i = 0; i < n; i++)
        snprintf(names[i], sizeof(names[i]), "%s", tg_qat_g.inst[i].name);
    pthread_mutex_unlock(&tg_qat_g.lock);

    char lab[192];
    tg_prom_header(out, "tlsgate_qat_instance_info", "gauge",
                   "QAT crypto instances in use (value 1), with qatlib's name");
    for (unsigned i = 0; i < n; i++) {
        snprintf(lab, sizeof(lab), "provider=\"qat\",instance=\"%u\",name=\"%.64s\"", i, names[i]);
        tg_prom_value(out, "tlsgate_qat_instance_info", lab, 1);
    }
    static const struct {
        const char *metric, *labels, *help;
    } rows[] = {
#define TG_QAT_STAT_ROW(id, metric, labels, help) {metric, labels, help},
        TG_QAT_STATS(TG_QAT_STAT_ROW)
#undef TG_QAT_STAT_ROW
    };
    for (int s = 0; s < TG_QAT_STAT_COUNT; s++) {
        if (rows[s].help[0] != '\0')
            tg_prom_header(out, rows[s].metric, "counter", rows[s].help);
        for (unsigned i = 0; i < n; i++) {
            snprintf(lab, sizeof(lab), "provider=\"qat\",instance=\"%u\"%s%s", i,
                     rows[s].labels[0] ? "," : "", rows[s].labels);
            tg_prom_value(out, rows[s].metric, lab, tg_ctr_get(&agg[i].c[s]));
        }
    }
    tg_prom_header(out, "tlsgate_qat_inflight", "gauge", "Requests on the device now");
    for (unsigned i = 0; i < n; i++) {
        uint64_t up = tg_ctr_get(&agg[i].inflight_up), down = tg_ctr_get(&agg[i].inflight_down);
        snprintf(lab, sizeof(lab), "provider=\"qat\",instance=\"%u\"", i);
        tg_prom_value(out, "tlsgate_qat_inflight", lab, up >= down ? up - down : 0);
    }
    for (unsigned i = 0; i < n; i++) {
        snprintf(lab, sizeof(lab), "provider=\"qat\",instance=\"%u\"", i);
        tg_prom_hist(out, &tg_qat_latency_spec, lab, &agg[i].latency_us, i == 0);
    }
    free(agg);
}

/* ---- tlsgate doctor ---- */

static void tg_qat_doctor(struct tg_buf *out, struct tg_buf *json)
{
    (void)json;
    const char *path = tg_qat_lib_path();
    tg_buf_printf(out, "qatlib: %s\n", path[0] ? path : "not loaded");
    if (tg_qat_g.start_tried)
        tg_buf_printf(out, "icp_sal_userStart(\"%s\"): %s\n", tg_qat_section,
                      tg_qat_status_name(tg_qat_g.start_status));
    if (tg_qat_g.said[0] != '\0')
        tg_buf_printf(out, "qatlib said: %s\n", tg_qat_g.said);
    if (tg_qat_g.seen_inst > 0)
        tg_buf_printf(out, "crypto instances seen: %u, started: %u\n", tg_qat_g.seen_inst,
                      tg_qat_g.ninst);
    for (unsigned i = 0; i < tg_qat_g.ninst; i++) {
        const struct tg_qat_inst *in = &tg_qat_g.inst[i];
        tg_buf_printf(out, "  instance %u: %s (%s), NUMA node %d, RSA yes, ECDSA %s\n", i, in->name,
                      in->part, in->node, in->ecdsa ? "yes" : "no");
    }
    /* The machine side of the prerequisites (the full table is above). */
    struct tg_qat_dev devs[TG_QAT_MAX_DEVICES];
    size_t nd = 0, found = 0, pf = 0, vf = 0, vfio = 0;
    if (tg_sysinfo_qat_scan(NULL, devs, TG_QAT_MAX_DEVICES, &nd, &found) == TG_OK) {
        for (size_t i = 0; i < nd; i++) {
            if (devs[i].is_vf) {
                vf++;
                vfio += strcmp(devs[i].driver, "vfio-pci") == 0;
            } else {
                pf++;
            }
        }
        tg_buf_printf(out, "PCI: %zu QAT physical function(s), %zu VF(s), %zu VF(s) on vfio-pci\n",
                      pf, vf, vfio);
    } else {
        tg_buf_puts(out, "PCI: /sys/bus/pci not readable here\n");
    }
    struct tg_memlock ml;
    if (tg_sysinfo_memlock(&ml) == TG_OK) {
        char advice[256] = "";
        enum tg_memlock_verdict v = tg_sysinfo_memlock_verdict(&ml, advice, sizeof(advice));
        tg_buf_printf(out, "memlock: %s\n", v == TG_MEMLOCK_OK ? "enough for qatlib" : advice);
    }
    if (tg_qat_g.up) {
        tg_buf_printf(out, "verdict: usable (%u instance(s); RSA 2048/3072/4096%s)\n",
                      tg_qat_g.ninst, tg_qat_g.ecdsa ? ", ECDSA P-256/P-384" : "");
    } else {
        /* The reason qatlib gave is printed with the provider's name; add
         * what the machine says about the likely cause. */
        const char *hint = "see the reason above";
        if (!tg_qat_have_headers())
            hint = "rebuild with the qatlib headers";
        else if (!tg_qat_g.start_tried)
            hint = "qatlib is not installed";
        else if (found == 0)
            hint = "no QAT PCI device on this machine";
        else if (vf == 0)
            hint = "no QAT virtual function: enable SR-IOV (sriov_numvfs) on the PFs";
        else if (vfio == 0)
            hint = "no QAT VF is bound to vfio-pci";
        tg_buf_printf(out, "verdict: not usable: %s\n", hint);
    }
}

const struct tg_keyprov_ops tg_qat_provider = {
    .name = "qat",
    .description = "Intel QuickAssist offload through qatlib: RSA (CRT) and ECDSA signatures",
    .does_kx = false,
    .configure = tg_qat_configure,
    .settings_free = tg_qat_settings_free,
    .global_init = tg_qat_global_init,
    .global_cleanup = tg_qat_global_cleanup,
    .supports_key = tg_qat_supports_key,
    .worker_init = tg_qat_worker_init,
    .worker_cleanup = tg_qat_worker_cleanup,
    .submit = tg_qat_submit,
    .flush = tg_qat_flush,
    .pending = tg_qat_pending,
    .drain = tg_qat_drain,
    .render_stats = tg_qat_render_stats,
    .doctor = tg_qat_doctor,
};

#endif /* TG_HAVE_QAT_H */
