/*
 * tg_wipe: OpenSSL allocation functions that wipe on free inside a section
 * (tg_wipe.h).
 */
#include "core/tg_wipe.h"

#include <malloc.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

/* Sections open on this thread. */
static _Thread_local unsigned tg_wipe_depth;
static bool tg_wipe_ok;

static void *tg_wipe_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return malloc(n);
}

static void tg_wipe_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    /* OpenSSL frees NULL a lot: no call for those. */
    if (p == NULL)
        return;
    /* malloc_usable_size: the whole block, including the slack the caller
     * did not ask for but may have written. */
    if (tg_wipe_depth > 0)
        OPENSSL_cleanse(p, malloc_usable_size(p));
    free(p);
}

static void *tg_wipe_realloc(void *p, size_t n, const char *file, int line)
{
    if (tg_wipe_depth == 0)
        return realloc(p, n);
    if (p == NULL)
        return malloc(n);
    if (n == 0) {
        tg_wipe_free(p, file, line);
        return NULL;
    }
    /* realloc may move the block and free the old one unwiped: move it by
     * hand. */
    size_t old = malloc_usable_size(p);
    void *q = malloc(n);
    if (q == NULL)
        return NULL;
    memcpy(q, p, old < n ? old : n);
    OPENSSL_cleanse(p, old);
    free(p);
    return q;
}

int tg_wipe_install(void)
{
    if (tg_wipe_ok)
        return TG_OK;
    if (!CRYPTO_set_mem_functions(tg_wipe_malloc, tg_wipe_realloc, tg_wipe_free))
        return TG_ESTATE;
    tg_wipe_ok = true;
    return TG_OK;
}

bool tg_wipe_installed(void)
{
    return tg_wipe_ok;
}

void tg_wipe_begin(void)
{
    tg_wipe_depth++;
}

void tg_wipe_end(void)
{
    if (tg_wipe_depth > 0)
        tg_wipe_depth--;
}
