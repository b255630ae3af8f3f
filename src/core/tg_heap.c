/*
 * tg_heap: the allocator in use and its memory release (tg_heap.h).
 */
#include "core/tg_heap.h"

#include <dlfcn.h>
#include <stddef.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

typedef void (*tg_heap_tc_release_fn)(void);
typedef int (*tg_heap_je_mallctl_fn)(const char *, void *, size_t *, void *, size_t);

static enum tg_heap_kind tg_heap_k = TG_HEAP_GLIBC;
static tg_heap_tc_release_fn tg_heap_tc_release;
static tg_heap_tc_release_fn tg_heap_tc_idle;
static tg_heap_je_mallctl_fn tg_heap_je_mallctl;

void tg_heap_init(void)
{
    /* The first definition in the search order is the malloc in use: a
     * preloaded library comes before libc. */
    void *tc = dlsym(RTLD_DEFAULT, "MallocExtension_ReleaseFreeMemory");
    void *je = dlsym(RTLD_DEFAULT, "mallctl");
    if (tc != NULL) {
        tg_heap_k = TG_HEAP_TCMALLOC;
        *(void **)&tg_heap_tc_release = tc;
        *(void **)&tg_heap_tc_idle = dlsym(RTLD_DEFAULT, "MallocExtension_MarkThreadIdle");
    } else if (je != NULL) {
        tg_heap_k = TG_HEAP_JEMALLOC;
        *(void **)&tg_heap_je_mallctl = je;
    } else {
#ifdef __GLIBC__
        tg_heap_k = TG_HEAP_GLIBC;
#else
        tg_heap_k = TG_HEAP_OTHER;
#endif
    }
}

enum tg_heap_kind tg_heap_kind(void)
{
    return tg_heap_k;
}

const char *tg_heap_name(void)
{
    switch (tg_heap_k) {
    case TG_HEAP_GLIBC:
        return "glibc";
    case TG_HEAP_TCMALLOC:
        return "tcmalloc";
    case TG_HEAP_JEMALLOC:
        return "jemalloc";
    case TG_HEAP_OTHER:
        break;
    }
    return "unknown";
}

void tg_heap_release(void)
{
    switch (tg_heap_k) {
    case TG_HEAP_TCMALLOC:
        /* The calling thread's cache back to the central lists (the thread
         * gets a new one at its next malloc), then the free spans to the
         * system. */
        if (tg_heap_tc_idle != NULL)
            tg_heap_tc_idle();
        tg_heap_tc_release();
        break;
    case TG_HEAP_JEMALLOC:
        /* The calling thread's cache, then every arena (MALLCTL_ARENAS_ALL
         * is 4096). */
        (void)tg_heap_je_mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
        (void)tg_heap_je_mallctl("arena.4096.purge", NULL, NULL, NULL, 0);
        break;
    case TG_HEAP_GLIBC:
#ifdef __GLIBC__
        (void)malloc_trim(0);
#endif
        break;
    case TG_HEAP_OTHER:
        break;
    }
}
