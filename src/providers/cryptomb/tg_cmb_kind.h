/*
 * tg_cmb_kind: the operation kinds of the cryptomb provider and how an
 * operation or a key is classified into one.
 *
 * A kind is what crypto_mb batches together: one operation type on one key
 * size or curve (RSA-2048 sign, X25519 derive, ...). The provider keeps one
 * queue per kind per worker and one cost per kind (tg_cmb_calib.h); every
 * submitted operation is classified here first.
 *
 * Internal to src/providers/cryptomb. Pure functions over const tables:
 * callable from any thread.
 */
#ifndef TG_CMB_KIND_H
#define TG_CMB_KIND_H

#include "keyprov/tg_keyprov.h"
#include "keyprov/tg_pkey.h"

/* X(id, label): the kinds. The labels are also the `op` label of the
 * tlsgate_cryptomb_cost_microseconds metric: do not change them. */
#define TG_CMB_KINDS(X)                                                                            \
    X(RSA2048, "RSA-2048 sign")                                                                    \
    X(RSA3072, "RSA-3072 sign")                                                                    \
    X(RSA4096, "RSA-4096 sign")                                                                    \
    X(ECDSA_P256, "ECDSA P-256 sign")                                                              \
    X(ECDSA_P384, "ECDSA P-384 sign")                                                              \
    X(X25519_KEYGEN, "X25519 keygen")                                                              \
    X(X25519_DERIVE, "X25519 derive")                                                              \
    X(P256_KEYGEN, "P-256 keygen")                                                                 \
    X(P256_DERIVE, "P-256 derive")                                                                 \
    X(P384_KEYGEN, "P-384 keygen")                                                                 \
    X(P384_DERIVE, "P-384 derive")

enum tg_cmb_kind {
#define TG_CMB_KIND_ENUM(id, label) TG_CMB_KIND_##id,
    TG_CMB_KINDS(TG_CMB_KIND_ENUM)
#undef TG_CMB_KIND_ENUM
        TG_CMB_KIND_COUNT
};
/* "Not a kind": the classification of what the provider does not batch
 * (P-521, RSA-1024, ...); those operations run in software. */
#define TG_CMB_KIND_NONE   TG_CMB_KIND_COUNT
#define TG_CMB_KIND_BIT(k) (1u << (k))
#define TG_CMB_KIND_ALL    ((1u << TG_CMB_KIND_COUNT) - 1u)

/* What a kind is made of. */
struct tg_cmb_kind_info {
    enum tg_keyop_type type;
    int rsa_bits;        /* RSA_SIGN: modulus size; else 0 */
    int curve_nid;       /* ECDSA_SIGN: the curve; else 0 */
    enum tg_group group; /* KX_KEYGEN, KX_DERIVE: the group; else TG_GROUP_NONE */
};

/* The kind's description; NULL for TG_CMB_KIND_NONE or out of range. */
const struct tg_cmb_kind_info *tg_cmb_kind_info(enum tg_cmb_kind k);
/* Its label ("RSA-2048 sign"); "unknown" out of range. */
const char *tg_cmb_kind_name(enum tg_cmb_kind k);

/* The kind of a signing key (RSA 2048/3072/4096, EC P-256/P-384), of a
 * key-exchange group's keygen or derive, or of an operation (from its type
 * and its key or group). TG_CMB_KIND_NONE when not one of the kinds. NULL
 * keys, an op without its key: TG_CMB_KIND_NONE. */
enum tg_cmb_kind tg_cmb_kind_for_key(const struct tg_pkey *key);
enum tg_cmb_kind tg_cmb_kind_keygen(enum tg_group g);
enum tg_cmb_kind tg_cmb_kind_derive(enum tg_group g);
enum tg_cmb_kind tg_cmb_kind_for_op(const struct tg_keyop *op);

#endif
