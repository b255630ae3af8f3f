/*
 * The cryptomb microbenchmark (`tlsgate bench-crypto`, through the
 * provider's microbench hook).
 */
#include "providers/cryptomb/tg_cmb_bench.h"

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "keyprov/tg_rsa_pad.h"
#include "providers/cryptomb/tg_cmb_batch.h"
#include "providers/cryptomb/tg_cmb_calib.h"
#include "providers/cryptomb/tg_cmb_kind.h"
#include "providers/cryptomb/tg_cmb_work.h"
#include "providers/cryptomb/tg_mbx.h"

/* A workload plus the raw inputs of the mbx call that tg_cmb_batch would
 * make from it: the same arithmetic without the batch layer's encoding,
 * checks and wiping. */
struct tg_cmb_bench_raw {
    struct tg_cmb_work *w;
    unsigned char in[TG_MBX_LANES][512], out[TG_MBX_LANES][512], out2[TG_MBX_LANES][512];
    BIGNUM *a[TG_MBX_LANES], *b[TG_MBX_LANES], *c[TG_MBX_LANES];
    unsigned errors; /* lanes the library refused */
};

static void tg_cmb_bench_raw_free(struct tg_cmb_bench_raw *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < TG_MBX_LANES; i++) {
        BN_clear_free(r->a[i]); /* private scalars and nonces */
        BN_free(r->b[i]);
        BN_free(r->c[i]);
    }
    tg_cmb_work_free(r->w);
    OPENSSL_cleanse(r, sizeof(*r));
    free(r);
}

static int tg_cmb_bench_curve_nid(enum tg_group g)
{
    return g == TG_GROUP_P256 ? NID_X9_62_prime256v1 : NID_secp384r1;
}

static size_t tg_cmb_bench_flen(int nid)
{
    return nid == NID_X9_62_prime256v1 ? 32 : 48;
}

/* A private scalar in [1, n-1] of curve nid into *k (BN_secure). */
static bool tg_cmb_bench_scalar(int nid, BIGNUM **k)
{
    EC_GROUP *grp = EC_GROUP_new_by_curve_name_ex(NULL, NULL, nid);
    const BIGNUM *order = grp ? EC_GROUP_get0_order(grp) : NULL;
    *k = BN_secure_new();
    bool ok = order != NULL && *k != NULL && BN_priv_rand_range(*k, order) && !BN_is_zero(*k);
    EC_GROUP_free(grp);
    return ok;
}

/* The raw call's inputs for lane i of w. */
static bool tg_cmb_bench_raw_lane(struct tg_cmb_bench_raw *r, size_t i)
{
    struct tg_cmb_work *w = r->w;
    const struct tg_keyop *op = &w->ops[i];
    switch (w->info->type) {
    case TG_KEYOP_RSA_SIGN:
        return tg_rsa_pad_pkcs1(r->in[i], (size_t)w->key->bits / 8, w->key->bits, op->md, op->in,
                                op->inlen) == TG_OK;
    case TG_KEYOP_ECDSA_SIGN: {
        size_t olen = tg_cmb_bench_flen(w->key->curve_nid);
        memset(r->in[i], 0, olen);
        memcpy(r->in[i] + olen - 32, op->in, 32);
        r->in[i][0] &= 0x7f; /* below the order */
        return tg_cmb_bench_scalar(w->key->curve_nid, &r->a[i]);
    }
    case TG_KEYOP_KX_KEYGEN:
        if (w->info->group == TG_GROUP_X25519)
            return RAND_priv_bytes(r->in[i], 32) == 1;
        r->b[i] = BN_new();
        r->c[i] = BN_new();
        return r->b[i] != NULL && r->c[i] != NULL &&
               tg_cmb_bench_scalar(tg_cmb_bench_curve_nid(w->info->group), &r->a[i]);
    default: { /* TG_KEYOP_KX_DERIVE */
        if (w->info->group == TG_GROUP_X25519)
            return true; /* straight from the workload's keys */
        size_t flen = tg_cmb_bench_flen(tg_cmb_bench_curve_nid(w->info->group));
        const struct tg_kxkey *peer = &w->peers[i], *mine = &w->mine[i];
        r->a[i] = BN_secure_new();
        r->b[i] = BN_bin2bn(peer->pub + 1, (int)flen, NULL);
        r->c[i] = BN_bin2bn(peer->pub + 1 + flen, (int)flen, NULL);
        return r->a[i] != NULL && r->b[i] != NULL && r->c[i] != NULL &&
               BN_bin2bn(mine->priv, (int)mine->privlen, r->a[i]) != NULL;
    }
    }
}

static struct tg_cmb_bench_raw *tg_cmb_bench_raw_new(enum tg_cmb_kind k, const struct tg_pkey *key)
{
    struct tg_cmb_bench_raw *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->w = tg_cmb_work_new(k, key);
    for (size_t i = 0; r->w != NULL && i < TG_MBX_LANES; i++) {
        if (!tg_cmb_bench_raw_lane(r, i)) {
            tg_cmb_bench_raw_free(r);
            return NULL;
        }
    }
    if (r->w == NULL) {
        tg_cmb_bench_raw_free(r);
        return NULL;
    }
    return r;
}

/* A runner (tg_cmb_work_fn): one raw mbx call with n lanes filled. */
static int tg_cmb_bench_raw_call(void *arg, size_t n)
{
    struct tg_cmb_bench_raw *r = arg;
    const struct tg_cmb_work *w = r->w;
    const struct tg_mbx_api *api = tg_mbx_api();
    tg_mbx_status st;
    const unsigned char *in[TG_MBX_LANES] = {NULL};
    unsigned char *out[TG_MBX_LANES] = {NULL}, *out2[TG_MBX_LANES] = {NULL};
    const BIGNUM *a[TG_MBX_LANES] = {NULL}, *b[TG_MBX_LANES] = {NULL}, *c[TG_MBX_LANES] = {NULL};
    const BIGNUM *d[TG_MBX_LANES] = {NULL}, *e[TG_MBX_LANES] = {NULL};
    BIGNUM *x[TG_MBX_LANES] = {NULL}, *y[TG_MBX_LANES] = {NULL};
    if (api == NULL)
        return TG_EUNAVAIL;
    for (size_t i = 0; i < n; i++) {
        in[i] = r->in[i];
        out[i] = r->out[i];
        out2[i] = r->out2[i];
    }
    switch (w->kind) {
    case TG_CMB_KIND_RSA2048:
    case TG_CMB_KIND_RSA3072:
    case TG_CMB_KIND_RSA4096:
        for (size_t i = 0; i < n; i++) {
            a[i] = w->key->p;
            b[i] = w->key->q;
            c[i] = w->key->dmp1;
            d[i] = w->key->dmq1;
            e[i] = w->key->iqmp;
        }
        st = api->rsa_private_crt_ssl_mb8(in, out, a, b, c, d, e, w->key->bits);
        break;
    case TG_CMB_KIND_ECDSA_P256:
    case TG_CMB_KIND_ECDSA_P384:
        for (size_t i = 0; i < n; i++) {
            a[i] = r->a[i];
            b[i] = w->key->priv;
        }
        st = (w->kind == TG_CMB_KIND_ECDSA_P256
                  ? api->nistp256_ecdsa_sign_ssl_mb8
                  : api->nistp384_ecdsa_sign_ssl_mb8)(out, out2, in, a, b, NULL);
        break;
    case TG_CMB_KIND_X25519_KEYGEN:
        st = api->x25519_public_key_mb8(out, in);
        break;
    case TG_CMB_KIND_P256_KEYGEN:
    case TG_CMB_KIND_P384_KEYGEN:
        for (size_t i = 0; i < n; i++) {
            a[i] = r->a[i];
            x[i] = r->b[i];
            y[i] = r->c[i];
        }
        st = (w->kind == TG_CMB_KIND_P256_KEYGEN
                  ? api->nistp256_ecpublic_key_ssl_mb8
                  : api->nistp384_ecpublic_key_ssl_mb8)(x, y, NULL, a, NULL);
        break;
    case TG_CMB_KIND_X25519_DERIVE: {
        const unsigned char *peer[TG_MBX_LANES] = {NULL};
        for (size_t i = 0; i < n; i++) {
            in[i] = w->mine[i].priv;
            peer[i] = w->peers[i].pub;
        }
        st = api->x25519_mb8(out, in, peer);
        break;
    }
    default: /* P-256 / P-384 derive */
        for (size_t i = 0; i < n; i++) {
            a[i] = r->a[i];
            b[i] = r->b[i];
            c[i] = r->c[i];
        }
        st = (w->kind == TG_CMB_KIND_P256_DERIVE
                  ? api->nistp256_ecdh_ssl_mb8
                  : api->nistp384_ecdh_ssl_mb8)(out, a, b, c, NULL, NULL);
        break;
    }
    for (size_t i = 0; i < n; i++) {
        if (tg_mbx_lane_status(st, (unsigned)i) != 0)
            r->errors++;
    }
    return TG_OK;
}

/* CPU microseconds per call of fn: run it for `seconds` (at least 2 calls,
 * after one warm-up call that pages in tables and fills caches). */
static double tg_cmb_bench_rate(tg_cmb_work_fn fn, void *arg, size_t n, double seconds)
{
    (void)fn(arg, n);
    unsigned long calls = 0;
    double t0 = tg_cmb_work_cpu_s(), t = t0;
    while (calls < 2 || t - t0 < seconds) {
        (void)fn(arg, n);
        calls++;
        t = tg_cmb_work_cpu_s();
    }
    return (t - t0) * 1e6 / (double)calls;
}

/* The kind of a case, if crypto_mb can run it here. */
static enum tg_cmb_kind tg_cmb_bench_kind(const struct tg_keyprov_bench_case *bc)
{
    enum tg_cmb_kind k = TG_CMB_KIND_NONE;
    switch (bc->type) {
    case TG_KEYOP_RSA_SIGN:
    case TG_KEYOP_ECDSA_SIGN:
        k = tg_cmb_kind_for_key(bc->key);
        if (k != TG_CMB_KIND_NONE && (tg_cmb_kind_info(k)->type != bc->type ||
                                      tg_cmb_batch_key_supported(bc->key, NULL, 0) != TG_OK))
            k = TG_CMB_KIND_NONE;
        break;
    case TG_KEYOP_KX_KEYGEN:
    case TG_KEYOP_KX_DERIVE:
        k = bc->type == TG_KEYOP_KX_KEYGEN ? tg_cmb_kind_keygen(bc->group)
                                           : tg_cmb_kind_derive(bc->group);
        if (k != TG_CMB_KIND_NONE && !tg_cmb_batch_group_supported(bc->group))
            k = TG_CMB_KIND_NONE;
        break;
    default:
        break;
    }
    return k;
}

/* bench-crypto --quick: the start-up calibration's numbers. */
static void tg_cmb_bench_quick(struct tg_keyprov_bench *b)
{
    for (size_t i = 0; i < b->ncases; i++) {
        struct tg_keyprov_bench_case *bc = &b->cases[i];
        enum tg_cmb_kind k = tg_cmb_bench_kind(bc);
        struct tg_cmb_calib cal;
        if (k == TG_CMB_KIND_NONE)
            continue;
        if (tg_cmb_calib_measure(&bc->key, bc->key ? 1 : 0, TG_CMB_KIND_BIT(k), &cal) == TG_OK &&
            cal.valid[k] && cal.batch_us[k][TG_MBX_LANES] > 0)
            bc->peak_ops = 1e6 * TG_MBX_LANES / cal.batch_us[k][TG_MBX_LANES];
    }
}

static void tg_cmb_bench_ops_cell(struct tg_buf *out, double scalar_us)
{
    if (scalar_us > 0)
        tg_buf_printf(out, " %.0f |", 1e6 / scalar_us);
    else
        tg_buf_puts(out, " - |");
}

static void tg_cmb_bench_speedup_cell(struct tg_buf *out, double scalar_us, double batch8_us)
{
    if (scalar_us > 0 && batch8_us > 0)
        tg_buf_printf(out, " %.2fx |\n", scalar_us * TG_MBX_LANES / batch8_us);
    else
        tg_buf_puts(out, " - |\n");
}

/* The raw call's cost by lanes filled, and the break-even the cost model
 * decides from those costs. */
static void tg_cmb_bench_cost_table(struct tg_buf *out, const struct tg_keyprov_bench *b,
                                    const struct tg_cmb_calib *raw, const enum tg_cmb_kind *kinds)
{
    tg_buf_puts(out, "\n### Cost of one raw mbx call by lanes filled (us of CPU per call)\n\n"
                     "The provider's cost model: a partial batch of n is worth running "
                     "when mb8(n) < n x scalar (break-even n below).\n\n"
                     "| operation | scalar us/op |");
    for (size_t n = 1; n <= TG_MBX_LANES; n++)
        tg_buf_printf(out, " n=%zu |", n);
    tg_buf_puts(out, " break-even n |\n|---|---:|");
    for (size_t n = 1; n <= TG_MBX_LANES; n++)
        tg_buf_puts(out, "---:|");
    tg_buf_puts(out, "---:|\n");
    for (size_t i = 0; i < b->ncases; i++) {
        enum tg_cmb_kind k = kinds[i];
        if (k == TG_CMB_KIND_NONE || !raw->valid[k])
            continue;
        tg_buf_printf(out, "| %s | %.1f |", b->cases[i].label, raw->scalar_us[k]);
        for (size_t n = 1; n <= TG_MBX_LANES; n++)
            tg_buf_printf(out, " %.1f |", raw->batch_us[k][n]);
        size_t be = tg_cmb_calib_breakeven(raw, k);
        if (be <= TG_MBX_LANES)
            tg_buf_printf(out, " %zu |\n", be);
        else
            tg_buf_puts(out, " never |\n");
    }
}

/* The full run of one case: a table row (two for signatures: with and
 * without the fault check) into out, the raw costs into *raw, peak_ops. */
static void tg_cmb_bench_case(struct tg_keyprov_bench *b, struct tg_keyprov_bench_case *bc,
                              enum tg_cmb_kind k, struct tg_cmb_calib *raw)
{
    struct tg_buf *out = b->report;
    struct tg_cmb_bench_raw *r = tg_cmb_bench_raw_new(k, bc->key);
    if (r == NULL) {
        tg_buf_printf(out, "| %s | (set-up failed) | | | |\n", bc->label);
        return;
    }
    bool sign = bc->type == TG_KEYOP_RSA_SIGN || bc->type == TG_KEYOP_ECDSA_SIGN;
    double ops_us = tg_cmb_bench_rate(tg_cmb_work_batch, r->w, TG_MBX_LANES, b->seconds);
    double raw_us = tg_cmb_bench_rate(tg_cmb_bench_raw_call, r, TG_MBX_LANES, b->seconds);
    bc->peak_ops = 1e6 * TG_MBX_LANES / ops_us;
    tg_buf_printf(out, "| %s%s |", bc->label, sign ? ", fault check on" : "");
    tg_cmb_bench_ops_cell(out, bc->scalar_us);
    tg_buf_printf(out, " %.0f | %.0f |", bc->peak_ops, 1e6 * TG_MBX_LANES / raw_us);
    tg_cmb_bench_speedup_cell(out, bc->scalar_us, ops_us);
    if (sign) {
        /* The same without the check: the difference is its cost. */
        r->w->fault_check = false;
        double nf_us = tg_cmb_bench_rate(tg_cmb_work_batch, r->w, TG_MBX_LANES, b->seconds);
        r->w->fault_check = true;
        tg_buf_printf(out, "| %s, fault check off | | %.0f | |", bc->label,
                      1e6 * TG_MBX_LANES / nf_us);
        tg_cmb_bench_speedup_cell(out, bc->scalar_us, nf_us);
    }
    if (bc->scalar_us > 0) {
        raw->valid[k] = true;
        raw->scalar_us[k] = bc->scalar_us;
        for (size_t n = 1; n <= TG_MBX_LANES; n++)
            raw->batch_us[k][n] = tg_cmb_bench_rate(tg_cmb_bench_raw_call, r, n, b->seconds / 4);
    }
    if (r->w->errors + r->errors != 0)
        tg_buf_printf(out, "| %s: %u lane errors during the run | | | | |\n", bc->label,
                      r->w->errors + r->errors);
    tg_cmb_bench_raw_free(r);
}

int tg_cmb_bench_run(struct tg_keyprov_bench *b)
{
    b->peak_label = "crypto_mb raw";
    if (tg_mbx_api() == NULL) {
        if (b->report != NULL)
            tg_buf_puts(b->report, "\n(crypto_mb is not loaded)\n");
        return TG_EUNAVAIL;
    }
    if (b->report == NULL) {
        tg_cmb_bench_quick(b);
        return TG_OK;
    }
    if (b->seconds <= 0)
        b->seconds = 1.0;
    struct tg_mbx_info info;
    tg_mbx_get_info(&info);
    enum tg_cmb_kind *kinds = calloc(b->ncases ? b->ncases : 1, sizeof(*kinds));
    struct tg_cmb_calib *raw = calloc(1, sizeof(*raw));
    int rc = TG_ENOMEM;
    if (kinds == NULL || raw == NULL)
        goto out;
    struct tg_buf *out = b->report;
    tg_buf_printf(out,
                  "## crypto_mb microbenchmark\n\n"
                  "- crypto_mb: %s, %s\n"
                  "- %.2f s of CPU per case; OpenSSL scalar as bench-crypto measured it\n\n",
                  info.version[0] ? info.version : "?", info.fake ? "fake" : info.path, b->seconds);
    tg_buf_puts(out, "| operation | OpenSSL scalar ops/s | crypto_mb via tg_cmb_batch, 8 lanes "
                     "ops/s | raw mbx call, 8 lanes ops/s | speed-up (tg_cmb_batch / scalar) |\n"
                     "|---|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < b->ncases; i++) {
        kinds[i] = tg_cmb_bench_kind(&b->cases[i]);
        if (kinds[i] != TG_CMB_KIND_NONE)
            tg_cmb_bench_case(b, &b->cases[i], kinds[i], raw);
    }
    tg_cmb_bench_cost_table(out, b, raw, kinds);
    rc = TG_OK;
out:
    free(kinds);
    free(raw);
    return rc;
}
