/*
 * tg_heap: which malloc the process runs on, and giving freed memory back
 * to the system with that allocator's own call.
 *
 * tlsgate is linked against glibc's malloc; an operator may preload another
 * (LD_PRELOAD of tcmalloc-minimal or jemalloc: docs/OPERATIONS.md says what
 * each was measured to give). The workers return memory after a burst of
 * connections (tg_worker's housekeeping): glibc needs malloc_trim(0) for
 * the free pages inside its heaps; tcmalloc gives back the calling thread's
 * cache (MallocExtension_MarkThreadIdle) and releases its page heap
 * (MallocExtension_ReleaseFreeMemory); jemalloc flushes the thread's cache
 * and purges every arena through mallctl. The preloaded allocator's entry points are
 * found with dlsym at tg_heap_init, so nothing links against them.
 *
 * Threading: tg_heap_init once on the main thread before the workers start;
 * tg_heap_release from any thread.
 */
#ifndef TG_HEAP_H
#define TG_HEAP_H

enum tg_heap_kind { TG_HEAP_GLIBC = 0, TG_HEAP_TCMALLOC, TG_HEAP_JEMALLOC, TG_HEAP_OTHER };

void tg_heap_init(void);
enum tg_heap_kind tg_heap_kind(void);
/* "glibc", "tcmalloc", "jemalloc", "unknown". */
const char *tg_heap_name(void);
/* Give the memory the allocator holds free back to the system (and the
 * calling thread's cache: call it from the thread that freed). */
void tg_heap_release(void);

#endif
