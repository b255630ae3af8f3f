/*
 * fake_usdm: the usdm functions tlsgate calls, the libusdm.so.0 half of the
 * fake qatlib (fake_qat.c describes the whole): qaeMemAllocNUMA,
 * qaeMemFreeNUMA and qaeVirtToPhysNUMA, as aligned heap memory with a
 * made-up physical address map. The fake libqat.so.4 refuses any buffer that
 * does not translate through it, as a device could not DMA it.
 *
 * Knob (environment, read on every allocation):
 *   FAKE_USDM_LIMIT=N          qaeMemAllocNUMA fails beyond N live allocations
 *
 * Side channel for tests: fake_usdm_live() (live allocations) and
 * fake_usdm_dirty_frees() (allocations freed without being wiped first).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qae_mem.h>

#include "fake_qat_internal.h"

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
