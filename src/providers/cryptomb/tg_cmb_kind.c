/*
 * Operation kinds of the cryptomb provider: the table and the classification
 * of keys and operations.
 */
#include "providers/cryptomb/tg_cmb_kind.h"

#include <openssl/obj_mac.h>

#define TG_CMB_KIND_LABEL(id, label) [TG_CMB_KIND_##id] = label,
static const char *const tg_cmb_kind_labels[TG_CMB_KIND_COUNT] = {TG_CMB_KINDS(TG_CMB_KIND_LABEL)};
#undef TG_CMB_KIND_LABEL

static const struct tg_cmb_kind_info tg_cmb_kind_table[TG_CMB_KIND_COUNT] = {
    [TG_CMB_KIND_RSA2048] = {TG_KEYOP_RSA_SIGN, 2048, 0, TG_GROUP_NONE},
    [TG_CMB_KIND_RSA3072] = {TG_KEYOP_RSA_SIGN, 3072, 0, TG_GROUP_NONE},
    [TG_CMB_KIND_RSA4096] = {TG_KEYOP_RSA_SIGN, 4096, 0, TG_GROUP_NONE},
    [TG_CMB_KIND_ECDSA_P256] = {TG_KEYOP_ECDSA_SIGN, 0, NID_X9_62_prime256v1, TG_GROUP_NONE},
    [TG_CMB_KIND_ECDSA_P384] = {TG_KEYOP_ECDSA_SIGN, 0, NID_secp384r1, TG_GROUP_NONE},
    [TG_CMB_KIND_X25519_KEYGEN] = {TG_KEYOP_KX_KEYGEN, 0, 0, TG_GROUP_X25519},
    [TG_CMB_KIND_X25519_DERIVE] = {TG_KEYOP_KX_DERIVE, 0, 0, TG_GROUP_X25519},
    [TG_CMB_KIND_P256_KEYGEN] = {TG_KEYOP_KX_KEYGEN, 0, 0, TG_GROUP_P256},
    [TG_CMB_KIND_P256_DERIVE] = {TG_KEYOP_KX_DERIVE, 0, 0, TG_GROUP_P256},
    [TG_CMB_KIND_P384_KEYGEN] = {TG_KEYOP_KX_KEYGEN, 0, 0, TG_GROUP_P384},
    [TG_CMB_KIND_P384_DERIVE] = {TG_KEYOP_KX_DERIVE, 0, 0, TG_GROUP_P384},
};

const struct tg_cmb_kind_info *tg_cmb_kind_info(enum tg_cmb_kind k)
{
    return (unsigned)k < TG_CMB_KIND_COUNT ? &tg_cmb_kind_table[k] : NULL;
}

const char *tg_cmb_kind_name(enum tg_cmb_kind k)
{
    return (unsigned)k < TG_CMB_KIND_COUNT ? tg_cmb_kind_labels[k] : "unknown";
}

enum tg_cmb_kind tg_cmb_kind_for_key(const struct tg_pkey *key)
{
    for (int k = 0; key != NULL && k < TG_CMB_KIND_COUNT; k++) {
        const struct tg_cmb_kind_info *i = &tg_cmb_kind_table[k];
        if ((key->type == TG_PKEY_RSA && i->type == TG_KEYOP_RSA_SIGN &&
             i->rsa_bits == key->bits) ||
            (key->type == TG_PKEY_EC && i->type == TG_KEYOP_ECDSA_SIGN &&
             i->curve_nid == key->curve_nid))
            return (enum tg_cmb_kind)k;
    }
    return TG_CMB_KIND_NONE;
}

static enum tg_cmb_kind tg_cmb_kind_kx(enum tg_group g, enum tg_keyop_type t)
{
    for (int k = 0; g != TG_GROUP_NONE && k < TG_CMB_KIND_COUNT; k++) {
        if (tg_cmb_kind_table[k].type == t && tg_cmb_kind_table[k].group == g)
            return (enum tg_cmb_kind)k;
    }
    return TG_CMB_KIND_NONE;
}

enum tg_cmb_kind tg_cmb_kind_keygen(enum tg_group g)
{
    return tg_cmb_kind_kx(g, TG_KEYOP_KX_KEYGEN);
}

enum tg_cmb_kind tg_cmb_kind_derive(enum tg_group g)
{
    return tg_cmb_kind_kx(g, TG_KEYOP_KX_DERIVE);
}

enum tg_cmb_kind tg_cmb_kind_for_op(const struct tg_keyop *op)
{
    switch (op->type) {
    case TG_KEYOP_RSA_SIGN:
    case TG_KEYOP_ECDSA_SIGN:
        return tg_cmb_kind_for_key(op->pkey);
    case TG_KEYOP_KX_KEYGEN:
        return op->kx != NULL ? tg_cmb_kind_keygen(op->kx->group) : TG_CMB_KIND_NONE;
    case TG_KEYOP_KX_DERIVE:
        return op->kx != NULL ? tg_cmb_kind_derive(op->kx->group) : TG_CMB_KIND_NONE;
    default:
        return TG_CMB_KIND_NONE;
    }
}
