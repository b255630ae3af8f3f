/*
 * fake_qat: a fake of the qatlib and usdm functions tlsgate calls, for tests
 * and benchmarks on machines without a QuickAssist device. Built twice from
 * this one file (tests/fakes/qat_fake.cmake):
 *   -DFAKE_QAT_PART_USDM  ->  libusdm.so.0: qaeMemAllocNUMA, qaeMemFreeNUMA,
 *                             qaeVirtToPhysNUMA (aligned heap memory with a
 *                             made-up physical address map)
 *   -DFAKE_QAT_PART_QAT   ->  libqat.so.4: instance discovery and start,
 *                             cpaCyRsaDecrypt, cpaCyEcdsaSignRS,
 *                             icp_sal_CyPollInstance
 * with the types of the real headers (qat/cpa*.h), so the compiler checks
 * every prototype against qatlib's.
 *
 * Faithful where it matters to tlsgate:
 *  - asynchronous only: a request completes ONLY inside
 *    icp_sal_CyPollInstance (on the polling thread), never by itself, and
 *    not before its simulated service latency has passed;
 *  - a ring of limited capacity per instance: a submit beyond it returns
 *    CPA_STATUS_RETRY;
 *  - qatlib's parameter checks for the CRT decrypt and ECDSA sign
 *    (lac_rsa_decrypt.c / lac_ecdsa.c: sizes, MSB/odd primes, 1 < dP < p-1,
 *    0 < k < n, output sizes...) -> CPA_STATUS_INVALID_PARAM, and every flat
 *    buffer must translate through the address translation function the
 *    application registered (cpaCySetAddressTranslation): memory that did
 *    not come from qaeMemAllocNUMA is refused, as a device could not DMA it;
 *  - the results are computed from the buffers the way the device does:
 *    RSA from the five CRT values only (m1 = c^dP mod p, m2 = c^dQ mod q,
 *    h = qInv (m1 - m2) mod p, m = m2 + h q; when the five values form a
 *    consistent key it is rebuilt once and OpenSSL's RSA code computes the
 *    same number faster), ECDSA with the curve given as (q, a, b, xG, yG, n)
 *    and the caller's nonce k; the input buffers are
 *    read and the output buffers written some time after the submit, from
 *    another thread, as DMA would.
 *
 * Knobs (environment, read by icp_sal_userStart; FAKE_USDM_LIMIT on every
 * allocation):
 *   FAKE_QAT_LATENCY_US=50     service latency, time-based (no CPU burnt)
 *   FAKE_QAT_CAPACITY=64       requests in flight per instance
 *   FAKE_QAT_INSTANCES=2       crypto instances (0..64)
 *   FAKE_QAT_FAIL_EVERY=N      every Nth request's callback gets CPA_STATUS_FAIL
 *   FAKE_QAT_START_FAIL=1      cpaCyStartInstance fails
 *   FAKE_QAT_NO_DEVICE=1       icp_sal_userStart fails (no instances)
 *   FAKE_QAT_DIE_AFTER=N       the device disappears when request N+1 arrives:
 *                              that and every later submit fail, polls fail,
 *                              and requests in flight never complete
 *   FAKE_QAT_NO_ECDSA=1        instances do not offer ECDSA
 *   FAKE_QAT_THREADS=1         compute threads (1..8)
 *   FAKE_QAT_CPU=list          CPU affinity of the compute threads ("1", "0,1")
 *   FAKE_QAT_STATS_FILE=path   counters, rewritten (atomically, by rename) at
 *                              most every 20 ms after a change, and at
 *                              icp_sal_userStop and process exit
 *   FAKE_USDM_LIMIT=N          qaeMemAllocNUMA fails beyond N live allocations
 *
 * CPU accounting: the fake runs inside the tlsgate process. Its latency
 * costs no CPU (a request's ready time is compared with the clock at poll
 * time), and the OpenSSL work runs on the fake's own compute threads, whose
 * kernel thread ids are exported (fake_qat_compute_tid, and "compute_tids"
 * in the stats file) so a benchmark can read /proc/PID/task/TID/stat and
 * subtract them from the process's CPU. What remains inside tlsgate's own
 * threads is the fake's submit and poll bookkeeping (parameter checks, a
 * mutex, list walks), comparable to what real qatlib does on those threads.
 *
 * Side channel for tests: fake_qat_counter("received"|"completed"|"failed"|
 * "retried"|"rejected"|"dropped"|"polls"|"empty_polls"|"rsa"|"ecdsa"|
 * "starts"|"invalid"), fake_qat_inflight(), fake_qat_reset(),
 * fake_qat_compute_tid(i); fake_usdm_live() (live allocations) and
 * fake_usdm_dirty_frees() (allocations freed without being wiped first) in
 * the usdm part.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cpa.h>
#include <cpa_cy_common.h>
#include <cpa_cy_ecdsa.h>
#include <cpa_cy_im.h>
#include <cpa_cy_rsa.h>
#include <icp_sal_poll.h>
#include <icp_sal_user.h>
#include <qae_mem.h>

static uint64_t fq_env_u64(const char *name, uint64_t def, uint64_t max)
{
    const char *s = getenv(name);
    if (s == NULL || s[0] == '\0')
        return def;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end != '\0') {
        fprintf(stderr, "fake_qat: ignoring %s=%s (not a number)\n", name, s);
        return def;
    }
    return v > max ? max : (uint64_t)v;
}

__attribute__((unused)) static uint64_t fq_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ======================================================================== */
#ifdef FAKE_QAT_PART_USDM

size_t fake_usdm_live(void);
size_t fake_usdm_dirty_frees(void);

struct fu_alloc {
    uintptr_t start;
    size_t len;
    uint64_t phys;
};

static pthread_mutex_t fu_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fu_alloc *fu_v; /* sorted by start */
static size_t fu_n, fu_cap;
static uint64_t fu_next_phys = 0x100000000ull;
static size_t fu_dirty_frees; /* freed while still holding non-zero bytes */

/* Index of the allocation containing addr, or -1. Caller holds fu_lock. */
static long fu_find(uintptr_t addr)
{
    size_t lo = 0, hi = fu_n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (fu_v[mid].start <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return -1;
    const struct fu_alloc *a = &fu_v[lo - 1];
    return addr < a->start + a->len ? (long)(lo - 1) : -1;
}

void *qaeMemAllocNUMA(size_t size, int node, size_t phys_alignment_byte)
{
    (void)node;
    if (size == 0 || phys_alignment_byte == 0 ||
        (phys_alignment_byte & (phys_alignment_byte - 1)) != 0 ||
        phys_alignment_byte > 4u * 1024 * 1024)
        return NULL;
    size_t align = phys_alignment_byte < 64 ? 64 : phys_alignment_byte;
    size_t len = (size + align - 1) / align * align;
    uint64_t limit = fq_env_u64("FAKE_USDM_LIMIT", UINT64_MAX, UINT64_MAX);
    pthread_mutex_lock(&fu_lock);
    if (fu_n >= limit || (fu_n == fu_cap && fu_cap > SIZE_MAX / 2 / sizeof(*fu_v))) {
        pthread_mutex_unlock(&fu_lock);
        return NULL;
    }
    if (fu_n == fu_cap) {
        size_t cap = fu_cap ? fu_cap * 2 : 64;
        struct fu_alloc *v = realloc(fu_v, cap * sizeof(*v));
        if (v == NULL) {
            pthread_mutex_unlock(&fu_lock);
            return NULL;
        }
        fu_v = v;
        fu_cap = cap;
    }
    void *p = aligned_alloc(align, len);
    if (p == NULL) {
        pthread_mutex_unlock(&fu_lock);
        return NULL;
    }
    memset(p, 0, len);
    size_t i = fu_n;
    while (i > 0 && fu_v[i - 1].start > (uintptr_t)p)
        i--;
    memmove(&fu_v[i + 1], &fu_v[i], (fu_n - i) * sizeof(*fu_v));
    fu_v[i] = (struct fu_alloc){(uintptr_t)p, len, fu_next_phys};
    fu_next_phys += (len + 4095) / 4096 * 4096;
    fu_n++;
    pthread_mutex_unlock(&fu_lock);
    return p;
}

void qaeMemFreeNUMA(void **ptr)
{
    if (ptr == NULL || *ptr == NULL)
        return;
    pthread_mutex_lock(&fu_lock);
    long i = fu_find((uintptr_t)*ptr);
    if (i < 0 || fu_v[i].start != (uintptr_t)*ptr) {
        pthread_mutex_unlock(&fu_lock);
        fprintf(stderr, "fake usdm: qaeMemFreeNUMA(%p): not from qaeMemAllocNUMA\n", *ptr);
        abort();
    }
    size_t len = fu_v[i].len;
    memmove(&fu_v[i], &fu_v[i + 1], (fu_n - (size_t)i - 1) * sizeof(*fu_v));
    fu_n--;
    /* Tests check that the application wiped what it pinned (keys, nonces)
     * instead of relying on the driver to do it. */
    const unsigned char *b = *ptr;
    for (size_t j = 0; j < len; j++) {
        if (b[j] != 0) {
            fu_dirty_frees++;
            break;
        }
    }
    pthread_mutex_unlock(&fu_lock);
    /* The real one clears the memory before giving it back. */
    memset(*ptr, 0, len);
    free(*ptr);
    *ptr = NULL;
}

uint64_t qaeVirtToPhysNUMA(void *pVirtAddr)
{
    uint64_t phys = 0;
    pthread_mutex_lock(&fu_lock);
    long i = fu_find((uintptr_t)pVirtAddr);
    if (i >= 0)
        phys = fu_v[i].phys + ((uintptr_t)pVirtAddr - fu_v[i].start);
    pthread_mutex_unlock(&fu_lock);
    return phys;
}

size_t fake_usdm_live(void)
{
    pthread_mutex_lock(&fu_lock);
    size_t n = fu_n;
    pthread_mutex_unlock(&fu_lock);
    return n;
}

size_t fake_usdm_dirty_frees(void)
{
    pthread_mutex_lock(&fu_lock);
    size_t n = fu_dirty_frees;
    pthread_mutex_unlock(&fu_lock);
    return n;
}

#endif /* FAKE_QAT_PART_USDM */

/* ======================================================================== */
#ifdef FAKE_QAT_PART_QAT

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

uint64_t fake_qat_counter(const char *name);
unsigned fake_qat_inflight(void);
void fake_qat_reset(void);
long fake_qat_compute_tid(unsigned i);

#define FQ_MAX_INST    64
#define FQ_MAX_THREADS 8

/* X(id, name) */
#define FQ_COUNTERS(X)                                                                             \
    X(RECEIVED, "received")       /* requests accepted onto a ring */                              \
    X(COMPLETED, "completed")     /* returned by a poll with CPA_STATUS_SUCCESS */                 \
    X(FAILED, "failed")           /* returned by a poll with CPA_STATUS_FAIL */                    \
    X(RETRIED, "retried")         /* submits refused with CPA_STATUS_RETRY (ring full) */          \
    X(REJECTED, "rejected")       /* submits refused because the device is gone */                 \
    X(INVALID, "invalid")         /* submits refused with CPA_STATUS_INVALID_PARAM */              \
    X(DROPPED, "dropped")         /* requests lost when the device died or stopped */              \
    X(POLLS, "polls")             /* icp_sal_CyPollInstance calls */                               \
    X(EMPTY_POLLS, "empty_polls") /* polls that returned nothing */                                \
    X(RSA, "rsa")                 /* RSA requests received */                                      \
    X(ECDSA, "ecdsa")             /* ECDSA requests received */                                    \
    X(STARTS, "starts")           /* successful icp_sal_userStart calls */

enum {
#define FQ_ENUM(id, name) FQ_C_##id,
    FQ_COUNTERS(FQ_ENUM)
#undef FQ_ENUM
        FQ_NCOUNTERS
};
static const char *const fq_counter_names[] = {
#define FQ_NAME(id, name) name,
    FQ_COUNTERS(FQ_NAME)
#undef FQ_NAME
};

enum fq_kind { FQ_RSA, FQ_ECDSA };

struct fq_req {
    struct fq_req *next;
    enum fq_kind kind;
    unsigned inst;
    uint64_t epoch; /* fq.epoch at submit: a request of an older epoch is lost */
    void *tag;
    CpaCyGenFlatBufCbFunc rsa_cb;
    CpaCyEcdsaSignRSCbFunc ec_cb;
    void *opdata; /* the caller's op data, handed back in the callback */
    CpaFlatBuffer *out, *r, *s;
    uint64_t t_ready;
    bool inject_fail;
    CpaStatus status;
    CpaBoolean mult;
};

struct fq_inst {
    bool started;
    CpaVirtualToPhysical v2p;
    unsigned inflight; /* accepted, not yet returned by a poll */
    struct fq_req *done, **done_tail;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    bool running; /* between a successful icp_sal_userStart and icp_sal_userStop */
    bool dead;    /* FAKE_QAT_DIE_AFTER reached */
    bool stopping;
    uint64_t epoch;
    uint64_t accepted; /* requests accepted since icp_sal_userStart (FAKE_QAT_DIE_AFTER) */
    unsigned ninst;
    struct fq_inst inst[FQ_MAX_INST];
    /* knobs */
    uint64_t latency_ns, fail_every, die_after;
    unsigned capacity, nthreads;
    bool start_fail, no_ecdsa;
    cpu_set_t cpus;
    bool cpus_set;
    char stats_file[512];
    /* work for the compute threads */
    struct fq_req *todo, **todo_tail;
    pthread_t threads[FQ_MAX_THREADS];
    _Atomic long tids[FQ_MAX_THREADS];
    uint64_t c[FQ_NCOUNTERS];
    bool dirty;
} fq = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .cv = PTHREAD_COND_INITIALIZER,
};

static struct fq_inst *fq_inst(CpaInstanceHandle h)
{
    struct fq_inst *i = h;
    if (i < &fq.inst[0] || i >= &fq.inst[FQ_MAX_INST])
        return NULL;
    return i;
}

static unsigned fq_index(const struct fq_inst *i)
{
    return (unsigned)(i - &fq.inst[0]);
}

/* ---- stats side channel ---- */

/* Snapshot under the lock, write outside it. */
static void fq_write_stats(void)
{
    uint64_t c[FQ_NCOUNTERS];
    long tids[FQ_MAX_THREADS];
    char path[512], tmp[560];
    unsigned inflight = 0, nthreads;
    bool running, dead;
    pthread_mutex_lock(&fq.lock);
    memcpy(c, fq.c, sizeof(c));
    snprintf(path, sizeof(path), "%s", fq.stats_file);
    for (unsigned i = 0; i < fq.ninst; i++)
        inflight += fq.inst[i].inflight;
    nthreads = fq.nthreads;
    running = fq.running;
    dead = fq.dead;
    fq.dirty = false;
    pthread_mutex_unlock(&fq.lock);
    for (unsigned i = 0; i < FQ_MAX_THREADS; i++)
        tids[i] = atomic_load(&fq.tids[i]);
    if (path[0] == '\0')
        return;
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return;
    for (int i = 0; i < FQ_NCOUNTERS; i++)
        fprintf(f, "%s %llu\n", fq_counter_names[i], (unsigned long long)c[i]);
    fprintf(f, "inflight %u\nrunning %d\ndead %d\npid %ld\ncompute_tids ", inflight, running, dead,
            (long)getpid());
    for (unsigned i = 0; i < nthreads; i++)
        fprintf(f, "%s%ld", i ? "," : "", tids[i]);
    fputc('\n', f);
    if (fclose(f) == 0)
        rename(tmp, path);
    else
        unlink(tmp);
}

__attribute__((destructor)) static void fq_at_exit(void)
{
    if (fq.stats_file[0] != '\0')
        fq_write_stats();
}

uint64_t fake_qat_counter(const char *name)
{
    uint64_t v = UINT64_MAX;
    pthread_mutex_lock(&fq.lock);
    for (int i = 0; i < FQ_NCOUNTERS; i++) {
        if (strcmp(name, fq_counter_names[i]) == 0)
            v = fq.c[i];
    }
    pthread_mutex_unlock(&fq.lock);
    return v;
}

unsigned fake_qat_inflight(void)
{
    unsigned n = 0;
    pthread_mutex_lock(&fq.lock);
    for (unsigned i = 0; i < fq.ninst; i++)
        n += fq.inst[i].inflight;
    pthread_mutex_unlock(&fq.lock);
    return n;
}

void fake_qat_reset(void)
{
    pthread_mutex_lock(&fq.lock);
    memset(fq.c, 0, sizeof(fq.c));
    pthread_mutex_unlock(&fq.lock);
}

long fake_qat_compute_tid(unsigned i)
{
    return i < FQ_MAX_THREADS ? atomic_load(&fq.tids[i]) : 0;
}

/* ---- big-endian helpers (no BIGNUM on the submitting thread) ---- */

/* Significant bytes: length without leading zero octets. */
static size_t fq_minbytes(const CpaFlatBuffer *b)
{
    size_t i = 0;
    while (i < b->dataLenInBytes && b->pData[i] == 0)
        i++;
    return b->dataLenInBytes - i;
}

/* Compare unsigned big-endian a and b; with b_minus_1, b - 1 for an odd b
 * (its lowest bit cleared). */
static int fq_cmp(const CpaFlatBuffer *a, const CpaFlatBuffer *b, bool b_minus_1)
{
    size_t la = fq_minbytes(a), lb = fq_minbytes(b);
    const Cpa8U *pa = a->pData + (a->dataLenInBytes - la);
    const Cpa8U *pb = b->pData + (b->dataLenInBytes - lb);
    if (b_minus_1 && lb == 1 && pb[0] == 1)
        lb = 0; /* b - 1 == 0 */
    if (la != lb)
        return la < lb ? -1 : 1;
    for (size_t i = 0; i < la; i++) {
        unsigned vb = pb[i];
        if (b_minus_1 && i == lb - 1)
            vb &= 0xfeu;
        if (pa[i] != vb)
            return pa[i] < vb ? -1 : 1;
    }
    return 0;
}

static bool fq_is_one_or_zero(const CpaFlatBuffer *b)
{
    size_t l = fq_minbytes(b);
    return l == 0 || (l == 1 && b->pData[b->dataLenInBytes - 1] == 1);
}

static bool fq_present(const CpaFlatBuffer *b)
{
    return b != NULL && b->pData != NULL && b->dataLenInBytes > 0;
}

/* DMA-able: the whole buffer translates, contiguously, through the
 * application's translation function (memory from qaeMemAllocNUMA). */
static bool fq_pinned(const struct fq_inst *inst, const CpaFlatBuffer *b)
{
    CpaPhysicalAddr a = inst->v2p(b->pData);
    CpaPhysicalAddr z = inst->v2p(b->pData + b->dataLenInBytes - 1);
    return a != 0 && z == a + b->dataLenInBytes - 1;
}

static bool fq_valid_rsa_size(size_t bytes)
{
    static const size_t sizes[] = {64, 128, 192, 256, 384, 512, 1024};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        if (sizes[i] == bytes)
            return true;
    }
    return false;
}

/* qatlib's LAC_CHECK_FLAT_BUFFER_MSB_LSB for a CRT prime of len bytes. */
static bool fq_prime_ok(const CpaFlatBuffer *p, size_t len)
{
    return p->dataLenInBytes >= len && (p->pData[p->dataLenInBytes - len] & 0x80) &&
           (p->pData[p->dataLenInBytes - 1] & 1);
}

/* ---- submit side ---- */

static CpaStatus fq_count(int counter, CpaStatus st)
{
    pthread_mutex_lock(&fq.lock);
    fq.c[counter]++;
    pthread_mutex_unlock(&fq.lock);
    return st;
}

/* Requests of the current epoch that will never come back. Caller holds the lock. */
static void fq_drop_all(void)
{
    for (struct fq_req *r = fq.todo; r != NULL;) {
        struct fq_req *n = r->next;
        free(r);
        fq.c[FQ_C_DROPPED]++;
        r = n;
    }
    fq.todo = NULL;
    fq.todo_tail = &fq.todo;
    for (unsigned i = 0; i < FQ_MAX_INST; i++) {
        for (struct fq_req *r = fq.inst[i].done; r != NULL;) {
            struct fq_req *n = r->next;
            free(r);
            fq.c[FQ_C_DROPPED]++;
            r = n;
        }
        fq.inst[i].done = NULL;
        fq.inst[i].done_tail = &fq.inst[i].done;
        fq.inst[i].inflight = 0;
    }
    fq.epoch++; /* what a compute thread holds now is lost too */
    fq.dirty = true;
}

static CpaStatus fq_enqueue(struct fq_inst *inst, struct fq_req *tmpl)
{
    pthread_mutex_lock(&fq.lock);
    CpaStatus st = CPA_STATUS_SUCCESS;
    if (!fq.running || !inst->started) {
        st = CPA_STATUS_FAIL;
    } else if (!fq.dead && fq.die_after != 0 && fq.accepted >= fq.die_after) {
        fq.dead = true;
        fq_drop_all();
        fprintf(stderr, "fake_qat: device gone after %llu requests (FAKE_QAT_DIE_AFTER)\n",
                (unsigned long long)fq.die_after);
    }
    if (st == CPA_STATUS_SUCCESS && fq.dead) {
        fq.c[FQ_C_REJECTED]++;
        fq.dirty = true;
        st = CPA_STATUS_FAIL;
    } else if (st == CPA_STATUS_SUCCESS && inst->inflight >= fq.capacity) {
        fq.c[FQ_C_RETRIED]++;
        fq.dirty = true;
        st = CPA_STATUS_RETRY;
    }
    if (st != CPA_STATUS_SUCCESS) {
        pthread_mutex_unlock(&fq.lock);
        return st;
    }
    struct fq_req *r = malloc(sizeof(*r));
    if (r == NULL) {
        pthread_mutex_unlock(&fq.lock);
        return CPA_STATUS_RESOURCE;
    }
    *r = *tmpl;
    r->next = NULL;
    r->inst = fq_index(inst);
    r->epoch = fq.epoch;
    uint64_t seq = ++fq.c[FQ_C_RECEIVED];
    fq.accepted++;
    fq.c[r->kind == FQ_RSA ? FQ_C_RSA : FQ_C_ECDSA]++;
    r->inject_fail = fq.fail_every != 0 && seq % fq.fail_every == 0;
    r->t_ready = fq_now_ns() + fq.latency_ns;
    inst->inflight++;
    *fq.todo_tail = r;
    fq.todo_tail = &r->next;
    fq.dirty = true;
    pthread_cond_signal(&fq.cv);
    pthread_mutex_unlock(&fq.lock);
    return CPA_STATUS_SUCCESS;
}

/* Common entry checks of an asynchronous request. */
static CpaStatus fq_entry(CpaInstanceHandle h, const void *cb, struct fq_inst **out)
{
    struct fq_inst *inst = fq_inst(h);
    if (inst == NULL)
        return CPA_STATUS_INVALID_PARAM;
    if (cb == NULL)
        return CPA_STATUS_UNSUPPORTED; /* synchronous mode is not faked */
    pthread_mutex_lock(&fq.lock);
    bool up = fq.running && inst->started && inst->v2p != NULL;
    pthread_mutex_unlock(&fq.lock);
    if (!up)
        return CPA_STATUS_FAIL; /* not started, or no address translation set */
    *out = inst;
    return CPA_STATUS_SUCCESS;
}

CpaStatus cpaCyRsaDecrypt(const CpaInstanceHandle instanceHandle,
                          const CpaCyGenFlatBufCbFunc pRsaDecryptCb, void *pCallbackTag,
                          const CpaCyRsaDecryptOpData *pDecryptOpData, CpaFlatBuffer *pOutputData)
{
    struct fq_inst *inst = NULL;
    CpaStatus st = fq_entry(instanceHandle, (const void *)pRsaDecryptCb, &inst);
    if (st != CPA_STATUS_SUCCESS)
        return st;
    const CpaCyRsaDecryptOpData *od = pDecryptOpData;
    if (od == NULL || od->pRecipientPrivateKey == NULL || pOutputData == NULL ||
        pOutputData->pData == NULL)
        return fq_count(FQ_C_INVALID, CPA_STATUS_INVALID_PARAM);
    const CpaCyRsaPrivateKey *k = od->pRecipientPrivateKey;
    if (k->version != CPA_CY_RSA_VERSION_TWO_PRIME)
        return fq_count(FQ_C_INVALID, CPA_STATUS_INVALID_PARAM);
    if (k->privateKeyRepType != CPA_CY_RSA_PRIVATE_KEY_REP_TYPE_2)
        return CPA_STATUS_UNSUPPORTED; /* representation 1 is not faked */
    const CpaCyRsaPrivateKeyRep2 *r2 = &k->privateKeyRep2;
    const CpaFlatBuffer *bufs[] = {&r2->prime1P,     &r2->prime2Q,         &r2->exponent1Dp,
                                   &r2->exponent2Dq, &r2->coefficientQInv, &od->inputData,
                                   pOutputData};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
        if (!fq_present(bufs[i]))
            return fq_count(FQ_C_INVALID, CPA_STATUS_INVALID_PARAM);
    }
    size_t half = fq_minbytes(&r2->prime1P);
    size_t op = 2 * half;
    if (half != fq_minbytes(&r2->prime2Q) || !fq_valid_rsa_size(op) ||
        od->inputData.dataLenInBytes > op || pOutputData->dataLenInBytes < op ||
        !fq_prime_ok(&r2->prime1P, half) || !fq_prime_ok(&r2->prime2Q, half) ||
        /* qatlib's LacRsa_Type2StdsCheck */
        fq_is_one_or_zero(&r2->exponent1Dp) || fq_cmp(&r2->exponent1Dp, &r2->prime1P, true) >= 0 ||
        fq_is_one_or_zero(&r2->exponent2Dq) || fq_cmp(&r2->exponent2Dq, &r2->prime2Q, true) >= 0 ||
        fq_minbytes(&r2->coefficientQInv) == 0 ||
        fq_cmp(&r2->coefficientQInv, &r2->prime1P, false) >= 0)
        return fq_count(FQ_C_INVALID, CPA_STATUS_INVALID_PARAM);
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
        if (!fq_pinned(inst, bufs[i]))
            return fq_count(FQ_C_INVALID, CPA_STATUS_INVALID_PARAM);
    }
    struct fq_req t;
    memset(&t, 0, sizeof(t));
    t.kind = FQ_RSA;
    t.tag = pCallbackTag;
    t.rsa_cb = pRsaDecryptCb;
    t.opdata = (void *)pDecryptOpData;
    t.out = pOutputData;
    return fq_enqueue(inst, &t);
}

CpaStatus cpaCyEcdsaSignRS(const CpaInstanceHandle instanceHandle, const CpaCyEcdsaSignRSCbFunc pCb,
                           void *pCallbackTag, const CpaCyEcdsaSignRSOpData *pOpData,
                           CpaBoolean *pSignStatus, CpaFlatBuffer *pR, CpaFlatBuffer *pS)
{
    struct fq_inst *inst = NULL;
    CpaStatus st = fq_entry(instanceHandle, (const void *)pCb, &inst);
    if (st != CPA_STATUS_SUCCESS)
        return st;
    if (fq.no_ecdsa)
        return CPA_STATUS_UNSUPPORTED;
    const CpaCyEcdsaSignRSOpData *od = pOpData;
    if (od == NULL || pSignStatus == NULL || pR == NULL || pS == NULL)
        return fq_count(FQ_C_INVALID, CPA_STATUS_INVALID_PARAM);
    const CpaFlatBuffer *bufs[] = {&od->xg, &od->yg, &od->n, &od->q, &od->a, &od->b,
                                   &od->k,  &od->m,  &od->d, pR,     pS};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
        if (!fq_present(bufs[i]))
            return fq_count(FQ_C_INVALID, CPA_STATUS_INVALID_PARAM);
    }
    if (od->fieldType == CPA_CY_EC_FIELD_TYPE_BINARY)
        return CPA_STATUS_UNSUPPORTED; /* binary curves are not faked */
    size_t nlen = fq_minbytes(&od->n);
    if (od->fieldType != CPA_CY_EC_FIELD_TYPE_PRIME ||
        !(od->q.pData[od->q.dataLenInBytes - 1] & 1) ||
        !(od->n.pData[od->n.dataLenInBytes - 1] & 1) || fq_minbytes(&od->k) == 0 ||
        fq_cmp(&od->k, &od->n, false) >= 0 || fq_minbytes(&od->d) == 0 ||
        fq_cmp(&od->d, &od->n, false) >= 0 || pR->dataLenInBytes < nlen ||
        pS->dataLenInBytes < nlen)
        return fq_count(FQ_C_INVALID, CPA_STATUS_INVALID_PARAM);
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
        if (!fq_pinned(inst, bufs[i]))
            return fq_count(FQ_C_INVALID, CPA_STATUS_INVALID_PARAM);
    }
    struct fq_req t;
    memset(&t, 0, sizeof(t));
    t.kind = FQ_ECDSA;
    t.tag = pCallbackTag;
    t.ec_cb = pCb;
    t.opdata = (void *)pOpData;
    t.r = pR;
    t.s = pS;
    return fq_enqueue(inst, &t);
}

/* ---- the "device": compute threads ---- */

#define FQ_GROUPS   4
#define FQ_RSA_KEYS 8
struct fq_rsakey {
    unsigned char *crt; /* p|q|dP|dQ|qInv as given */
    size_t crtlen;
    EVP_PKEY_CTX *ctx; /* raw private decrypt with the rebuilt key; NULL: BN path */
};

struct fq_group {
    unsigned char *key; /* q|a|b|xg|yg|n as given, to recognise the curve */
    size_t keylen;
    EC_GROUP *group;
};

struct fq_thread {
    BN_CTX *bn;
    struct fq_group groups[FQ_GROUPS];
    struct fq_rsakey rsakeys[FQ_RSA_KEYS];
    unsigned next_rsakey;
};

static BIGNUM *fq_bn(const CpaFlatBuffer *b, BN_CTX *ctx)
{
    BIGNUM *v = BN_CTX_get(ctx);
    return v != NULL ? BN_bin2bn(b->pData, (int)b->dataLenInBytes, v) : NULL;
}

/* Write v right-aligned into b, zero-filled in front. */
static bool fq_put(CpaFlatBuffer *b, const BIGNUM *v)
{
    return BN_bn2binpad(v, b->pData, (int)b->dataLenInBytes) >= 0;
}

/*
 * The fast way to the same number: when the five CRT values form a real key
 * (e = dP^-1 mod (p-1) is small and consistent with dQ and qInv), rebuild it
 * once and let OpenSSL's RSA code (its AVX-512 CRT where the CPU has it) do
 * the raw private operation, so the fake's thread keeps up with a benchmark.
 * Inconsistent values, as a buggy caller might send, go through the plain
 * CRT formula below and yield what a device would compute from them.
 */
static EVP_PKEY_CTX *fq_rsa_rebuild(struct fq_thread *t, const CpaCyRsaPrivateKeyRep2 *k)
{
    EVP_PKEY_CTX *kctx = NULL, *ctx = NULL;
    EVP_PKEY *pk = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    BN_CTX_start(t->bn);
    BIGNUM *p = fq_bn(&k->prime1P, t->bn), *q = fq_bn(&k->prime2Q, t->bn);
    BIGNUM *dp = fq_bn(&k->exponent1Dp, t->bn), *dq = fq_bn(&k->exponent2Dq, t->bn);
    BIGNUM *qinv = fq_bn(&k->coefficientQInv, t->bn);
    BIGNUM *n = BN_CTX_get(t->bn), *e = BN_CTX_get(t->bn), *d = BN_CTX_get(t->bn);
    BIGNUM *p1 = BN_CTX_get(t->bn), *q1 = BN_CTX_get(t->bn), *x = BN_CTX_get(t->bn);
    if (x == NULL || p == NULL || q == NULL || dp == NULL || dq == NULL || qinv == NULL ||
        !BN_mul(n, p, q, t->bn) || !BN_sub(p1, p, BN_value_one()) ||
        !BN_sub(q1, q, BN_value_one()) || BN_mod_inverse(e, dp, p1, t->bn) == NULL ||
        BN_num_bits(e) > 32 || !BN_mod_mul(x, e, dq, q1, t->bn) || !BN_is_one(x) ||
        !BN_mod_mul(x, qinv, q, p, t->bn) || !BN_is_one(x))
        goto out;
    /* d = e^-1 mod lcm(p-1, q-1) */
    if (!BN_gcd(x, p1, q1, t->bn) || !BN_mul(d, p1, q1, t->bn) || !BN_div(d, NULL, d, x, t->bn) ||
        BN_mod_inverse(d, e, d, t->bn) == NULL)
        goto out;
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_D, d) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR1, p) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR2, q) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT1, dp) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT2, dq) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, qinv) ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL)
        goto out;
    kctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (kctx == NULL || EVP_PKEY_fromdata_init(kctx) <= 0 ||
        EVP_PKEY_fromdata(kctx, &pk, EVP_PKEY_KEYPAIR, params) <= 0)
        goto out;
    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
    if (ctx == NULL || EVP_PKEY_decrypt_init(ctx) <= 0 ||
        EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING) <= 0) {
        EVP_PKEY_CTX_free(ctx);
        ctx = NULL;
    }
out:
    BN_CTX_end(t->bn);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(kctx);
    EVP_PKEY_free(pk);
    return ctx;
}

static struct fq_rsakey *fq_rsakey(struct fq_thread *t, const CpaCyRsaPrivateKeyRep2 *k)
{
    const CpaFlatBuffer *parts[] = {&k->prime1P, &k->prime2Q, &k->exponent1Dp, &k->exponent2Dq,
                                    &k->coefficientQInv};
    size_t len = 0;
    for (size_t i = 0; i < 5; i++)
        len += parts[i]->dataLenInBytes + 1;
    for (unsigned i = 0; i < FQ_RSA_KEYS; i++) {
        struct fq_rsakey *c = &t->rsakeys[i];
        if (c->crt == NULL || c->crtlen != len)
            continue;
        size_t o = 0;
        bool same = true;
        for (size_t j = 0; j < 5 && same; j++) {
            same = memcmp(c->crt + o, parts[j]->pData, parts[j]->dataLenInBytes) == 0;
            o += parts[j]->dataLenInBytes + 1;
        }
        if (same)
            return c;
    }
    struct fq_rsakey *c = &t->rsakeys[t->next_rsakey++ % FQ_RSA_KEYS];
    free(c->crt);
    EVP_PKEY_CTX_free(c->ctx);
    c->ctx = NULL;
    c->crt = malloc(len);
    if (c->crt == NULL)
        return NULL;
    c->crtlen = len;
    size_t o = 0;
    for (size_t j = 0; j < 5; j++) {
        memcpy(c->crt + o, parts[j]->pData, parts[j]->dataLenInBytes);
        o += parts[j]->dataLenInBytes;
        c->crt[o++] = '|';
    }
    c->ctx = fq_rsa_rebuild(t, k);
    return c;
}

static CpaStatus fq_rsa(struct fq_thread *t, const CpaCyRsaDecryptOpData *od, CpaFlatBuffer *out)
{
    const CpaCyRsaPrivateKeyRep2 *k = &od->pRecipientPrivateKey->privateKeyRep2;
    CpaStatus st = CPA_STATUS_FAIL;
    BN_CTX_start(t->bn);
    BIGNUM *p = fq_bn(&k->prime1P, t->bn), *q = fq_bn(&k->prime2Q, t->bn);
    BIGNUM *dp = fq_bn(&k->exponent1Dp, t->bn), *dq = fq_bn(&k->exponent2Dq, t->bn);
    BIGNUM *qinv = fq_bn(&k->coefficientQInv, t->bn), *c = fq_bn(&od->inputData, t->bn);
    BIGNUM *m1 = BN_CTX_get(t->bn), *m2 = BN_CTX_get(t->bn), *h = BN_CTX_get(t->bn);
    if (h == NULL || p == NULL || q == NULL || dp == NULL || dq == NULL || qinv == NULL ||
        c == NULL)
        goto out;
    size_t op = 2 * fq_minbytes(&k->prime1P);
    struct fq_rsakey *rk = fq_rsakey(t, k);
    if (rk != NULL && rk->ctx != NULL && op <= 1024 && od->inputData.dataLenInBytes <= op) {
        /* Raw RSA wants exactly the modulus length in and out. */
        unsigned char in[1024], res[1024];
        size_t inl = od->inputData.dataLenInBytes, outl = sizeof(res);
        memset(in, 0, op - inl);
        memcpy(in + (op - inl), od->inputData.pData, inl);
        if (EVP_PKEY_decrypt(rk->ctx, res, &outl, in, op) > 0 && outl == op) {
            memset(out->pData, 0, out->dataLenInBytes - op);
            memcpy(out->pData + (out->dataLenInBytes - op), res, op);
            st = CPA_STATUS_SUCCESS;
            goto out;
        }
        /* c >= n, for instance: the plain formula reduces it like a device. */
    }
    BN_set_flags(dp, BN_FLG_CONSTTIME);
    BN_set_flags(dq, BN_FLG_CONSTTIME);
    if (!BN_mod_exp_mont_consttime(m1, c, dp, p, t->bn, NULL) ||
        !BN_mod_exp_mont_consttime(m2, c, dq, q, t->bn, NULL) || !BN_mod_sub(h, m1, m2, p, t->bn) ||
        !BN_mod_mul(h, h, qinv, p, t->bn) || !BN_mul(h, h, q, t->bn) || !BN_add(h, h, m2) ||
        !fq_put(out, h))
        goto out;
    st = CPA_STATUS_SUCCESS;
out:
    BN_CTX_end(t->bn);
    return st;
}

static EC_GROUP *fq_group(struct fq_thread *t, const CpaCyEcdsaSignRSOpData *od)
{
    const CpaFlatBuffer *parts[] = {&od->q, &od->a, &od->b, &od->xg, &od->yg, &od->n};
    size_t len = 0;
    for (size_t i = 0; i < 6; i++)
        len += parts[i]->dataLenInBytes + 1;
    unsigned char *key = malloc(len);
    if (key == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < 6; i++) {
        memcpy(key + o, parts[i]->pData, parts[i]->dataLenInBytes);
        o += parts[i]->dataLenInBytes;
        key[o++] = '|';
    }
    struct fq_group *slot = NULL;
    for (int i = 0; i < FQ_GROUPS; i++) {
        struct fq_group *g = &t->groups[i];
        if (g->group != NULL && g->keylen == len && memcmp(g->key, key, len) == 0) {
            free(key);
            return g->group;
        }
        if (g->group == NULL && slot == NULL)
            slot = g;
    }
    if (slot == NULL) {
        slot = &t->groups[0];
        EC_GROUP_free(slot->group);
        free(slot->key);
        slot->group = NULL;
    }
    /* The curve exactly as given; a named group (faster code) only when it
     * is the very same curve. */
    EC_GROUP *g = NULL, *named = NULL;
    EC_POINT *gen = NULL;
    BN_CTX_start(t->bn);
    BIGNUM *q = fq_bn(&od->q, t->bn), *a = fq_bn(&od->a, t->bn), *b = fq_bn(&od->b, t->bn);
    BIGNUM *x = fq_bn(&od->xg, t->bn), *y = fq_bn(&od->yg, t->bn), *n = fq_bn(&od->n, t->bn);
    if (n == NULL || q == NULL || a == NULL || b == NULL || x == NULL || y == NULL)
        goto out;
    g = EC_GROUP_new_curve_GFp(q, a, b, t->bn);
    gen = g != NULL ? EC_POINT_new(g) : NULL;
    if (gen == NULL || !EC_POINT_set_affine_coordinates(g, gen, x, y, t->bn) ||
        !EC_GROUP_set_generator(g, gen, n, BN_value_one())) {
        EC_GROUP_free(g);
        g = NULL;
        goto out;
    }
    static const int nids[] = {NID_X9_62_prime256v1, NID_secp384r1, NID_secp521r1};
    for (size_t i = 0; i < 3 && named == NULL; i++) {
        named = EC_GROUP_new_by_curve_name(nids[i]);
        if (named != NULL && EC_GROUP_cmp(named, g, t->bn) != 0) {
            EC_GROUP_free(named);
            named = NULL;
        }
    }
    if (named != NULL) {
        EC_GROUP_free(g);
        g = named;
    }
out:
    BN_CTX_end(t->bn);
    EC_POINT_free(gen);
    if (g == NULL) {
        free(key);
        return NULL;
    }
    slot->group = g;
    slot->key = key;
    slot->keylen = len;
    return g;
}

static CpaStatus fq_ecdsa(struct fq_thread *t, const CpaCyEcdsaSignRSOpData *od, CpaFlatBuffer *pr,
                          CpaFlatBuffer *ps, CpaBoolean *mult)
{
    CpaStatus st = CPA_STATUS_FAIL;
    *mult = CPA_FALSE;
    EC_GROUP *g = fq_group(t, od);
    if (g == NULL)
        return CPA_STATUS_FAIL;
    EC_POINT *R = EC_POINT_new(g);
    BN_CTX_start(t->bn);
    BIGNUM *n = fq_bn(&od->n, t->bn), *k = fq_bn(&od->k, t->bn), *d = fq_bn(&od->d, t->bn);
    BIGNUM *e = fq_bn(&od->m, t->bn), *x = BN_CTX_get(t->bn), *r = BN_CTX_get(t->bn);
    BIGNUM *s = BN_CTX_get(t->bn), *kinv = BN_CTX_get(t->bn);
    if (R == NULL || s == NULL || kinv == NULL || n == NULL || k == NULL || d == NULL || e == NULL)
        goto out;
    /* X9.62: e is the leftmost bitlen(n) bits of the digest. */
    int nbits = BN_num_bits(n), mbits = (int)od->m.dataLenInBytes * 8;
    if (mbits > nbits && !BN_rshift(e, e, mbits - nbits))
        goto out;
    BN_set_flags(k, BN_FLG_CONSTTIME);
    if (!EC_POINT_mul(g, R, k, NULL, NULL, t->bn) ||
        !EC_POINT_get_affine_coordinates(g, R, x, NULL, t->bn) || !BN_nnmod(r, x, n, t->bn))
        goto out;
    st = CPA_STATUS_SUCCESS; /* from here on, a zero r or s is "multiply failed" */
    if (BN_is_zero(r))
        goto out;
    if (BN_mod_inverse(kinv, k, n, t->bn) == NULL || !BN_mod_mul(s, r, d, n, t->bn) ||
        !BN_mod_add(s, s, e, n, t->bn) || !BN_mod_mul(s, s, kinv, n, t->bn)) {
        st = CPA_STATUS_FAIL;
        goto out;
    }
    if (BN_is_zero(s))
        goto out;
    if (!fq_put(pr, r) || !fq_put(ps, s)) {
        st = CPA_STATUS_FAIL;
        goto out;
    }
    *mult = CPA_TRUE;
out:
    BN_CTX_end(t->bn);
    EC_POINT_free(R);
    return st;
}

static void fq_compute(struct fq_thread *t, struct fq_req *r)
{
    r->mult = CPA_TRUE;
    if (r->inject_fail) {
        r->status = CPA_STATUS_FAIL;
        return;
    }
    if (r->kind == FQ_RSA)
        r->status = fq_rsa(t, r->opdata, r->out);
    else
        r->status = fq_ecdsa(t, r->opdata, r->r, r->s, &r->mult);
}

static void *fq_thread_main(void *arg)
{
    unsigned idx = (unsigned)(uintptr_t)arg;
    struct fq_thread t;
    memset(&t, 0, sizeof(t));
    t.bn = BN_CTX_new();
    atomic_store(&fq.tids[idx], (long)syscall(SYS_gettid));
    pthread_mutex_lock(&fq.lock);
    if (fq.cpus_set)
        pthread_setaffinity_np(pthread_self(), sizeof(fq.cpus), &fq.cpus);
    uint64_t last_write = 0;
    while (!fq.stopping) {
        struct fq_req *r = fq.todo;
        if (r == NULL) {
            uint64_t now = fq_now_ns();
            if (idx == 0 && fq.dirty && fq.stats_file[0] != '\0' &&
                now - last_write >= 20000000ull) {
                pthread_mutex_unlock(&fq.lock);
                fq_write_stats();
                last_write = now;
                pthread_mutex_lock(&fq.lock);
                continue;
            }
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 20000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&fq.cv, &fq.lock, &ts);
            continue;
        }
        fq.todo = r->next;
        if (fq.todo == NULL)
            fq.todo_tail = &fq.todo;
        pthread_mutex_unlock(&fq.lock);
        if (t.bn != NULL)
            fq_compute(&t, r);
        else
            r->status = CPA_STATUS_RESOURCE;
        pthread_mutex_lock(&fq.lock);
        if (r->epoch != fq.epoch) {
            /* The device died (or stopped) meanwhile: it never answers. */
            free(r);
            fq.c[FQ_C_DROPPED]++;
            continue;
        }
        struct fq_inst *inst = &fq.inst[r->inst];
        r->next = NULL;
        *inst->done_tail = r;
        inst->done_tail = &r->next;
    }
    pthread_mutex_unlock(&fq.lock);
    for (int i = 0; i < FQ_GROUPS; i++) {
        EC_GROUP_free(t.groups[i].group);
        free(t.groups[i].key);
    }
    for (int i = 0; i < FQ_RSA_KEYS; i++) {
        EVP_PKEY_CTX_free(t.rsakeys[i].ctx);
        free(t.rsakeys[i].crt);
    }
    BN_CTX_free(t.bn);
    return NULL;
}

/* ---- polling: the only place where requests complete ---- */

CpaStatus icp_sal_CyPollInstance(CpaInstanceHandle instanceHandle, Cpa32U response_quota)
{
    struct fq_inst *inst = fq_inst(instanceHandle);
    if (inst == NULL)
        return CPA_STATUS_INVALID_PARAM;
    pthread_mutex_lock(&fq.lock);
    if (!fq.running || !inst->started || fq.dead) {
        if (fq.running)
            fq.c[FQ_C_POLLS]++;
        pthread_mutex_unlock(&fq.lock);
        return CPA_STATUS_FAIL;
    }
    fq.c[FQ_C_POLLS]++;
    uint64_t now = fq_now_ns();
    struct fq_req *ready = NULL, **tail = &ready;
    Cpa32U n = 0;
    for (struct fq_req **pp = &inst->done; *pp != NULL;) {
        struct fq_req *r = *pp;
        if (r->t_ready > now || (response_quota != 0 && n >= response_quota)) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        r->next = NULL;
        *tail = r;
        tail = &r->next;
        n++;
        fq.c[r->status == CPA_STATUS_SUCCESS ? FQ_C_COMPLETED : FQ_C_FAILED]++;
    }
    inst->done_tail = &inst->done;
    while (*inst->done_tail != NULL)
        inst->done_tail = &(*inst->done_tail)->next;
    inst->inflight -= n;
    if (n == 0)
        fq.c[FQ_C_EMPTY_POLLS]++;
    else
        fq.dirty = true;
    pthread_mutex_unlock(&fq.lock);
    /* Callbacks run on the polling thread, outside the fake's lock. */
    while (ready != NULL) {
        struct fq_req *r = ready;
        ready = r->next;
        if (r->kind == FQ_RSA)
            r->rsa_cb(r->tag, r->status, r->opdata, r->out);
        else
            r->ec_cb(r->tag, r->status, r->opdata, r->mult, r->r, r->s);
        free(r);
    }
    return n > 0 ? CPA_STATUS_SUCCESS : CPA_STATUS_RETRY;
}

/* ---- start-up, discovery, shut-down ---- */

static void fq_read_env(void)
{
    fq.latency_ns = fq_env_u64("FAKE_QAT_LATENCY_US", 50, 60000000) * 1000;
    fq.capacity = (unsigned)fq_env_u64("FAKE_QAT_CAPACITY", 64, 1u << 20);
    fq.ninst = (unsigned)fq_env_u64("FAKE_QAT_INSTANCES", 2, FQ_MAX_INST);
    fq.fail_every = fq_env_u64("FAKE_QAT_FAIL_EVERY", 0, UINT64_MAX);
    fq.die_after = fq_env_u64("FAKE_QAT_DIE_AFTER", 0, UINT64_MAX);
    fq.start_fail = fq_env_u64("FAKE_QAT_START_FAIL", 0, 1) != 0;
    fq.no_ecdsa = fq_env_u64("FAKE_QAT_NO_ECDSA", 0, 1) != 0;
    fq.nthreads = (unsigned)fq_env_u64("FAKE_QAT_THREADS", 1, FQ_MAX_THREADS);
    if (fq.nthreads == 0)
        fq.nthreads = 1;
    const char *sf = getenv("FAKE_QAT_STATS_FILE");
    snprintf(fq.stats_file, sizeof(fq.stats_file), "%s", sf ? sf : "");
    CPU_ZERO(&fq.cpus);
    fq.cpus_set = false;
    const char *cpus = getenv("FAKE_QAT_CPU");
    for (const char *s = cpus; s != NULL && *s != '\0';) {
        char *end = NULL;
        long c = strtol(s, &end, 10);
        if (end == s || c < 0 || c >= CPU_SETSIZE)
            break;
        CPU_SET((int)c, &fq.cpus);
        fq.cpus_set = true;
        s = *end == ',' ? end + 1 : end;
        if (*end != ',')
            break;
    }
}

CpaStatus icp_sal_userStart(const char *pProcessName)
{
    if (pProcessName == NULL || pProcessName[0] == '\0')
        return CPA_STATUS_INVALID_PARAM;
    pthread_mutex_lock(&fq.lock);
    if (fq.running) {
        pthread_mutex_unlock(&fq.lock);
        return CPA_STATUS_FAIL; /* once per process */
    }
    fq_read_env();
    if (fq_env_u64("FAKE_QAT_NO_DEVICE", 0, 1) != 0) {
        fq.ninst = 0;
        pthread_mutex_unlock(&fq.lock);
        fprintf(stderr, "fake_qat: icp_sal_userStart(%s): no device (FAKE_QAT_NO_DEVICE)\n",
                pProcessName);
        return CPA_STATUS_FAIL;
    }
    for (unsigned i = 0; i < FQ_MAX_INST; i++) {
        fq.inst[i].started = false;
        fq.inst[i].v2p = NULL;
        fq.inst[i].inflight = 0;
        fq.inst[i].done = NULL;
        fq.inst[i].done_tail = &fq.inst[i].done;
    }
    fq.todo = NULL;
    fq.todo_tail = &fq.todo;
    fq.dead = false;
    fq.stopping = false;
    fq.accepted = 0;
    fq.epoch++;
    unsigned started = 0;
    for (unsigned i = 0; i < fq.nthreads; i++) {
        if (pthread_create(&fq.threads[i], NULL, fq_thread_main, (void *)(uintptr_t)i) != 0)
            break;
        started++;
    }
    if (started < fq.nthreads) {
        fq.stopping = true;
        pthread_cond_broadcast(&fq.cv);
        pthread_mutex_unlock(&fq.lock);
        for (unsigned i = 0; i < started; i++)
            pthread_join(fq.threads[i], NULL);
        return CPA_STATUS_RESOURCE;
    }
    fq.running = true;
    fq.c[FQ_C_STARTS]++;
    fq.dirty = true;
    pthread_mutex_unlock(&fq.lock);
    return CPA_STATUS_SUCCESS;
}

CpaStatus icp_sal_userStop(void)
{
    pthread_mutex_lock(&fq.lock);
    if (!fq.running) {
        pthread_mutex_unlock(&fq.lock);
        return CPA_STATUS_FAIL;
    }
    fq.stopping = true;
    pthread_cond_broadcast(&fq.cv);
    unsigned n = fq.nthreads;
    pthread_mutex_unlock(&fq.lock);
    for (unsigned i = 0; i < n; i++)
        pthread_join(fq.threads[i], NULL);
    pthread_mutex_lock(&fq.lock);
    /* Whatever the device still held is gone with it; from now on it never
     * touches the application's buffers again. */
    fq_drop_all();
    fq.running = false;
    fq.stopping = false;
    for (unsigned i = 0; i < FQ_MAX_INST; i++)
        fq.inst[i].started = false;
    for (unsigned i = 0; i < FQ_MAX_THREADS; i++)
        atomic_store(&fq.tids[i], 0);
    pthread_mutex_unlock(&fq.lock);
    fq_write_stats();
    return CPA_STATUS_SUCCESS;
}

CpaStatus cpaCyGetNumInstances(Cpa16U *pNumInstances)
{
    if (pNumInstances == NULL)
        return CPA_STATUS_INVALID_PARAM;
    pthread_mutex_lock(&fq.lock);
    *pNumInstances = (Cpa16U)(fq.running ? fq.ninst : 0);
    pthread_mutex_unlock(&fq.lock);
    return CPA_STATUS_SUCCESS;
}

CpaStatus cpaCyGetInstances(Cpa16U numInstances, CpaInstanceHandle *cyInstances)
{
    if (cyInstances == NULL)
        return CPA_STATUS_INVALID_PARAM;
    pthread_mutex_lock(&fq.lock);
    bool ok = fq.running && numInstances > 0 && numInstances <= fq.ninst;
    pthread_mutex_unlock(&fq.lock);
    if (!ok)
        return CPA_STATUS_INVALID_PARAM;
    for (Cpa16U i = 0; i < numInstances; i++)
        cyInstances[i] = &fq.inst[i];
    return CPA_STATUS_SUCCESS;
}

CpaStatus cpaCyInstanceGetInfo2(const CpaInstanceHandle instanceHandle,
                                CpaInstanceInfo2 *pInstanceInfo2)
{
    struct fq_inst *inst = fq_inst(instanceHandle);
    if (inst == NULL || pInstanceInfo2 == NULL)
        return CPA_STATUS_INVALID_PARAM;
    unsigned i = fq_index(inst);
    CpaInstanceInfo2 *info = pInstanceInfo2;
    memset(info, 0, sizeof(*info));
    info->accelerationServiceType = CPA_ACC_SVC_TYPE_CRYPTO;
    snprintf((char *)info->vendorName, sizeof(info->vendorName), "Intel(R)");
    snprintf((char *)info->partName, sizeof(info->partName), "fake-qat (tlsgate tests)");
    snprintf((char *)info->swVersion, sizeof(info->swVersion), "24.02-fake");
    snprintf((char *)info->instName, sizeof(info->instName), "SSL_CY%u", i);
    snprintf((char *)info->instID, sizeof(info->instID), "fake_qat_dev0_cy%u", i);
    info->physInstId.packageId = 0;
    info->physInstId.acceleratorId = 0;
    info->physInstId.executionEngineId = (Cpa16U)i;
    info->nodeAffinity = 0;
    pthread_mutex_lock(&fq.lock);
    info->operState = inst->started ? CPA_OPER_STATE_UP : CPA_OPER_STATE_DOWN;
    pthread_mutex_unlock(&fq.lock);
    info->requiresPhysicallyContiguousMemory = CPA_TRUE;
    info->isPolled = CPA_TRUE;
    info->isOffloaded = CPA_TRUE;
    return CPA_STATUS_SUCCESS;
}

CpaStatus cpaCyQueryCapabilities(const CpaInstanceHandle instanceHandle,
                                 CpaCyCapabilitiesInfo *pCapInfo)
{
    if (fq_inst(instanceHandle) == NULL || pCapInfo == NULL)
        return CPA_STATUS_INVALID_PARAM;
    memset(pCapInfo, 0, sizeof(*pCapInfo));
    pCapInfo->rsaSupported = CPA_TRUE;
    pCapInfo->ecSupported = CPA_TRUE;
    pCapInfo->ecdhSupported = CPA_TRUE;
    pCapInfo->ecdsaSupported = fq.no_ecdsa ? CPA_FALSE : CPA_TRUE;
    pCapInfo->dhSupported = CPA_TRUE;
    pCapInfo->lnSupported = CPA_TRUE;
    pCapInfo->primeSupported = CPA_TRUE;
    return CPA_STATUS_SUCCESS;
}

CpaStatus cpaCySetAddressTranslation(const CpaInstanceHandle instanceHandle,
                                     CpaVirtualToPhysical virtual2Physical)
{
    struct fq_inst *inst = fq_inst(instanceHandle);
    if (inst == NULL || virtual2Physical == NULL)
        return CPA_STATUS_INVALID_PARAM;
    pthread_mutex_lock(&fq.lock);
    inst->v2p = virtual2Physical;
    pthread_mutex_unlock(&fq.lock);
    return CPA_STATUS_SUCCESS;
}

CpaStatus cpaCyStartInstance(CpaInstanceHandle instanceHandle)
{
    struct fq_inst *inst = fq_inst(instanceHandle);
    if (inst == NULL)
        return CPA_STATUS_INVALID_PARAM;
    pthread_mutex_lock(&fq.lock);
    CpaStatus st = CPA_STATUS_SUCCESS;
    if (!fq.running || fq_index(inst) >= fq.ninst || fq.start_fail)
        st = CPA_STATUS_FAIL;
    else
        inst->started = true;
    pthread_mutex_unlock(&fq.lock);
    return st;
}

CpaStatus cpaCyStopInstance(CpaInstanceHandle instanceHandle)
{
    struct fq_inst *inst = fq_inst(instanceHandle);
    if (inst == NULL)
        return CPA_STATUS_INVALID_PARAM;
    pthread_mutex_lock(&fq.lock);
    inst->started = false;
    pthread_mutex_unlock(&fq.lock);
    return CPA_STATUS_SUCCESS;
}

#endif /* FAKE_QAT_PART_QAT */
