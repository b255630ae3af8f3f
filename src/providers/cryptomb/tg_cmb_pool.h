/*
 * tg_cmb_pool: a pool of pre-generated, single-use ephemeral key pairs of
 * one group (X25519, P-256, P-384), filled by crypto_mb keygen batches, for
 * the cryptomb provider (the policy -- which groups, how many, when to
 * refill -- is in tg_cryptomb.c).
 *
 * The pool owns private keys: every slot that does not hold a ready key is
 * all zero. A key taken moves to the caller and its slot is wiped; a key
 * moved inside the pool (compaction after failed lanes) leaves a wiped
 * slot; growing wipes the old storage; freeing wipes everything.
 *
 * Internal to src/providers/cryptomb. One worker thread owns a pool; refill
 * runs crypto_mb on that thread's normal stack (never in an ASYNC job).
 */
#ifndef TG_CMB_POOL_H
#define TG_CMB_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include "core/tg_err.h"
#include "keyprov/tg_pkey.h"

struct tg_cmb_pool {
    enum tg_group group;
    struct tg_kxkey *keys; /* [cap]: [0, n) ready, [n, cap) all zero */
    size_t n, cap;
};

/* Room for cap keys of group g (first call), or more room (a larger cap
 * later: the ready keys move, the old storage is wiped; g is ignored then).
 * Never shrinks. TG_OK or TG_ENOMEM (the pool is unchanged). */
int tg_cmb_pool_reserve(struct tg_cmb_pool *p, enum tg_group g, size_t cap) TG_MUST_CHECK;

/* Move the newest ready key into *into (its previous software twin freed);
 * the slot is wiped. false when the pool is empty. */
bool tg_cmb_pool_take(struct tg_cmb_pool *p, struct tg_kxkey *into);

/* One crypto_mb keygen batch (TG_MBX_LANES keys) into the free slots after
 * the ready ones; lanes that failed are dropped and the rest packed at the
 * front. Returns how many keys were added (0 when there is no room for a
 * whole batch, crypto_mb is not loaded, or every lane failed). */
size_t tg_cmb_pool_refill(struct tg_cmb_pool *p);

/* Wipe and free every key and the storage; the pool is zeroed (reusable). */
void tg_cmb_pool_free(struct tg_cmb_pool *p);

#endif
