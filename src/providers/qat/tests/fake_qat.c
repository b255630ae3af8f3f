/*
 * fake_qat: a fake of the qatlib and usdm functions tlsgate calls, for tests
 * and benchmarks on machines without a QuickAssist device. Built by
 * src/providers/qat/CMakeLists.txt as two shared libraries in BUILD/fakes:
 *   libusdm.so.0  fake_usdm.c: qaeMemAllocNUMA, qaeMemFreeNUMA,
 *                 qaeVirtToPhysNUMA (aligned heap memory with a made-up
 *                 physical address map)
 *   libqat.so.4   fake_qat.c (this file): instance discovery and start,
 *                 icp_sal_CyPollInstance, the rings and compute threads,
 *                 knobs and counters; fake_qat_crypto.c: cpaCyRsaDecrypt and
 *                 cpaCyEcdsaSignRS (parameter checks, results with OpenSSL);
 *                 fake_qat_internal.h: what the files share
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
 * libusdm.so.0.
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
#include <cpa_cy_im.h>
#include <icp_sal_poll.h>
#include <icp_sal_user.h>

#include "fake_qat_internal.h"

static uint64_t fq_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t fake_qat_counter(const char *name);
unsigned fake_qat_inflight(void);
void fake_qat_reset(void);
long fake_qat_compute_tid(unsigned i);

#define FQ_MAX_INST    64
#define FQ_MAX_THREADS 8

static const char *const fq_counter_names[] = {
#define FQ_NAME(id, name) name,
    FQ_COUNTERS(FQ_NAME)
#undef FQ_NAME
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

/* ---- submit side (the operations: fake_qat_crypto.c) ---- */

CpaStatus fq_count(int counter, CpaStatus st)
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

CpaStatus fq_enqueue(struct fq_inst *inst, struct fq_req *tmpl)
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
CpaStatus fq_entry(CpaInstanceHandle h, const void *cb, struct fq_inst **out)
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

bool fq_no_ecdsa(void)
{
    return fq.no_ecdsa;
}

/* ---- the "device": compute threads (fake_qat_crypto.c computes) ---- */

static void *fq_thread_main(void *arg)
{
    unsigned idx = (unsigned)(uintptr_t)arg;
    struct fq_thread *t = fq_thread_new();
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
        fq_compute(t, r);
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
    fq_thread_free(t);
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
