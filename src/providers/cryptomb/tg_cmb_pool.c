/*
 * The ephemeral key pool of the cryptomb provider (tg_cmb_pool.h).
 */
#include "providers/cryptomb/tg_cmb_pool.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "providers/cryptomb/tg_cmb_batch.h"

int tg_cmb_pool_reserve(struct tg_cmb_pool *p, enum tg_group g, size_t cap)
{
    if (p->keys != NULL && cap <= p->cap)
        return TG_OK;
    struct tg_kxkey *keys = calloc(cap, sizeof(*keys));
    if (keys == NULL)
        return TG_ENOMEM;
    if (p->keys != NULL) {
        /* Not realloc: the old storage must be wiped before it is freed. */
        memcpy(keys, p->keys, p->n * sizeof(*keys));
        OPENSSL_cleanse(p->keys, p->cap * sizeof(*p->keys));
        free(p->keys);
    } else {
        p->group = g;
        p->n = 0;
    }
    p->keys = keys;
    p->cap = cap;
    return TG_OK;
}

bool tg_cmb_pool_take(struct tg_cmb_pool *p, struct tg_kxkey *into)
{
    if (p->n == 0)
        return false;
    struct tg_kxkey *k = &p->keys[--p->n];
    EVP_PKEY_free(into->sw);
    *into = *k; /* takes ownership of any software twin */
    OPENSSL_cleanse(k, sizeof(*k));
    return true;
}

size_t tg_cmb_pool_refill(struct tg_cmb_pool *p)
{
    if (p->keys == NULL || p->n + TG_MBX_LANES > p->cap)
        return 0;
    struct tg_kxkey *keys[TG_MBX_LANES];
    int results[TG_MBX_LANES];
    for (size_t i = 0; i < TG_MBX_LANES; i++)
        keys[i] = &p->keys[p->n + i]; /* all zero: free slots */
    if (tg_cmb_batch_keygen(keys, TG_MBX_LANES, p->group, results) != TG_OK) {
        for (size_t i = 0; i < TG_MBX_LANES; i++)
            tg_kxkey_clear(keys[i]);
        return 0;
    }
    size_t added = 0;
    for (size_t i = 0; i < TG_MBX_LANES; i++) {
        if (results[i] != TG_OK) {
            tg_kxkey_clear(keys[i]);
            continue;
        }
        if (added != i) {
            /* Pack the good keys at the front; the slot a key leaves is
             * wiped, or a copy of its private half would stay behind. */
            *keys[added] = *keys[i];
            OPENSSL_cleanse(keys[i], sizeof(*keys[i]));
        }
        added++;
    }
    p->n += added;
    return added;
}

void tg_cmb_pool_free(struct tg_cmb_pool *p)
{
    for (size_t i = 0; i < p->n; i++)
        tg_kxkey_clear(&p->keys[i]);
    if (p->keys != NULL)
        OPENSSL_cleanse(p->keys, p->cap * sizeof(*p->keys));
    free(p->keys);
    memset(p, 0, sizeof(*p));
}
