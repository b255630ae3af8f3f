/*
 * Workloads for measuring the cryptomb arithmetic (calibration and
 * microbenchmark).
 */
#include "providers/cryptomb/tg_cmb_work.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "providers/cryptomb/tg_cmb_batch.h"

double tg_cmb_work_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void tg_cmb_work_free(struct tg_cmb_work *w)
{
    if (w == NULL)
        return;
    for (size_t i = 0; i < TG_MBX_LANES; i++) {
        tg_kxkey_clear(&w->mine[i]);
        tg_kxkey_clear(&w->peers[i]);
    }
    tg_kxkey_clear(&w->scratch);
    OPENSSL_cleanse(w, sizeof(*w));
    free(w);
}

/* A fresh key pair of group g from OpenSSL (the software path). */
static int tg_cmb_work_keypair(struct tg_kxkey *into, enum tg_group g)
{
    struct tg_keyop op;
    memset(into, 0, sizeof(*into));
    into->group = g;
    tg_keyop_init(&op, TG_KEYOP_KX_KEYGEN);
    op.kx = into;
    return tg_keyop_compute_sw(&op);
}

/* One key pair and one peer share, replicated over the lanes. */
static int tg_cmb_work_derive_keys(struct tg_cmb_work *w, enum tg_group g)
{
    struct tg_kxkey peer;
    int rc = tg_cmb_work_keypair(&w->mine[0], g);
    if (rc == TG_OK)
        rc = tg_cmb_work_keypair(&peer, g);
    for (size_t i = 0; rc == TG_OK && i < TG_MBX_LANES; i++) {
        if (i > 0) {
            w->mine[i] = w->mine[0];
            w->mine[i].sw = NULL; /* built on demand */
        }
        rc = tg_kxkey_set_public(&w->peers[i], g, peer.pub, peer.publen);
    }
    tg_kxkey_clear(&peer);
    return rc;
}

struct tg_cmb_work *tg_cmb_work_new(enum tg_cmb_kind k, const struct tg_pkey *key)
{
    const struct tg_cmb_kind_info *info = tg_cmb_kind_info(k);
    if (info == NULL)
        return NULL;
    bool sign = info->type == TG_KEYOP_RSA_SIGN || info->type == TG_KEYOP_ECDSA_SIGN;
    if (sign && (key == NULL || tg_cmb_kind_for_key(key) != k))
        return NULL;
    struct tg_cmb_work *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->kind = k;
    w->info = info;
    w->key = sign ? key : NULL;
    w->fault_check = true;
    w->scratch.group = info->group;
    for (size_t i = 0; i < TG_MBX_LANES; i++) {
        struct tg_keyop *op = &w->ops[i];
        w->p[i] = op;
        tg_keyop_init(op, info->type);
        op->inlen = 32;
        if (RAND_bytes(op->in, 32) != 1)
            goto fail;
        switch (info->type) {
        case TG_KEYOP_RSA_SIGN:
            op->pkey = key;
            op->md = EVP_sha256();
            op->rsa_padding = TG_RSA_PAD_PKCS1;
            break;
        case TG_KEYOP_ECDSA_SIGN:
            op->pkey = key;
            break;
        case TG_KEYOP_KX_KEYGEN:
            op->kx = &w->scratch;
            break;
        default: /* TG_KEYOP_KX_DERIVE */
            op->kx = &w->mine[i];
            op->peer = &w->peers[i];
            break;
        }
    }
    if (info->type == TG_KEYOP_KX_DERIVE && tg_cmb_work_derive_keys(w, info->group) != TG_OK)
        goto fail;
    return w;
fail:
    tg_cmb_work_free(w);
    return NULL;
}

int tg_cmb_work_scalar(void *arg, size_t n)
{
    struct tg_cmb_work *w = arg;
    (void)n;
    struct tg_keyop *op = &w->ops[0];
    op->state = TG_KEYOP_NEW;
    int rc = tg_keyop_compute_sw(op);
    if (rc != TG_OK)
        w->errors++;
    return rc;
}

int tg_cmb_work_batch(void *arg, size_t n)
{
    struct tg_cmb_work *w = arg;
    int rc;
    bool check[TG_MBX_LANES];
    for (size_t i = 0; i < TG_MBX_LANES; i++)
        check[i] = w->fault_check;
    switch (w->info->type) {
    case TG_KEYOP_RSA_SIGN:
        rc = tg_cmb_batch_rsa_sign(w->p, n, w->res, w->why, check);
        break;
    case TG_KEYOP_ECDSA_SIGN:
        rc = tg_cmb_batch_ecdsa_sign(w->p, n, w->res, w->why, check);
        break;
    case TG_KEYOP_KX_KEYGEN: {
        struct tg_kxkey *keys[TG_MBX_LANES];
        for (size_t i = 0; i < n && i < TG_MBX_LANES; i++)
            keys[i] = &w->peers[i]; /* scratch keys: keygen workloads have no peers */
        rc = tg_cmb_batch_keygen(keys, n, w->info->group, w->res);
        break;
    }
    default:
        rc = tg_cmb_batch_derive(w->p, n, w->res, w->why);
        break;
    }
    for (size_t i = 0; i < n && i < TG_MBX_LANES; i++) {
        if (rc != TG_OK || w->res[i] != TG_OK)
            w->errors++;
    }
    return rc;
}
