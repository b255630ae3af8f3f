/*
 * vg_async_stacks.c: an LD_PRELOAD shim for running tlsgate under valgrind.
 *
 * OpenSSL's ASYNC jobs (SSL_MODE_ASYNC: every handshake runs in one) switch
 * between the thread's stack and a 32 KiB stack malloc'd per job, with
 * makecontext / setcontext / _longjmp. Valgrind cannot tell such a switch
 * from a large stack frame unless the stack is registered
 * (VALGRIND_STACK_REGISTER); it then guesses stack bounds and marks live heap
 * blocks and the thread's TLS as inaccessible, which floods the log with
 * bogus "Invalid read" / "uninitialised value" errors as soon as several
 * jobs are paused at once (the deferred provider). OpenSSL 3.0 has no hook
 * for job stacks (ASYNC_set_mem_functions came later), so this shim wraps
 * makecontext(), which OpenSSL calls once per new job with the job's stack
 * in ucp->uc_stack, and registers that stack. A stale registration whose
 * memory is reused for a new job stack is dropped first.
 *
 * Test-only: built by tglib.py / lib.sh into the test's temp dir and loaded
 * with LD_PRELOAD only when TG_VALGRIND=1. Outside valgrind the client
 * requests are no-ops.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <ucontext.h>
#include <valgrind/valgrind.h>

#define MAX_STACKS 4096

static struct {
    char *lo, *hi;
    unsigned id;
} stacks[MAX_STACKS];
static size_t nstacks;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void register_stack(char *lo, char *hi)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < nstacks;) {
        if (stacks[i].lo < hi && lo < stacks[i].hi) {
            VALGRIND_STACK_DEREGISTER(stacks[i].id);
            stacks[i] = stacks[--nstacks];
            continue;
        }
        i++;
    }
    if (nstacks < MAX_STACKS) {
        stacks[nstacks].lo = lo;
        stacks[nstacks].hi = hi;
        stacks[nstacks].id = VALGRIND_STACK_REGISTER(lo, hi);
        nstacks++;
    }
    pthread_mutex_unlock(&lock);
}

typedef void (*makecontext_fn)(ucontext_t *, void (*)(void), int, ...);

/* OpenSSL calls makecontext(ucp, async_start_func, 0): no extra arguments.
 * Up to 4 integer arguments are forwarded for other callers. */
void makecontext(ucontext_t *ucp, void (*func)(void), int argc, ...)
{
    static makecontext_fn real;
    if (real == NULL)
        real = (makecontext_fn)dlsym(RTLD_NEXT, "makecontext");
    if (ucp != NULL && ucp->uc_stack.ss_sp != NULL && ucp->uc_stack.ss_size > 0) {
        char *lo = ucp->uc_stack.ss_sp;
        register_stack(lo, lo + ucp->uc_stack.ss_size);
    }
    long a[4] = {0, 0, 0, 0};
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc && i < 4; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    real(ucp, func, argc, a[0], a[1], a[2], a[3]);
}
