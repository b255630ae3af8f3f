/*
 * The cryptomb cost model and its start-up calibration.
 */
#include "providers/cryptomb/tg_cmb_calib.h"

#include <stdatomic.h>
#include <string.h>

#include "providers/cryptomb/tg_cmb_batch.h"
#include "providers/cryptomb/tg_cmb_work.h"

/* ---- the model ---- */

void tg_cmb_calib_set(struct tg_cmb_calib *c, enum tg_cmb_kind k, double scalar_us,
                      double batch1_us, double batch8_us)
{
    if ((unsigned)k >= TG_CMB_KIND_COUNT)
        return;
    c->valid[k] = true;
    c->scalar_us[k] = scalar_us;
    c->batch_us[k][0] = 0;
    for (size_t n = 1; n <= TG_MBX_LANES; n++)
        c->batch_us[k][n] =
            batch1_us + (batch8_us - batch1_us) * (double)(n - 1) / (TG_MBX_LANES - 1);
}

bool tg_cmb_calib_prefer_batch(const struct tg_cmb_calib *c, enum tg_cmb_kind k, size_t n)
{
    if (c == NULL || (unsigned)k >= TG_CMB_KIND_COUNT || !c->valid[k] || n > TG_MBX_LANES)
        return true;
    if (n == 0)
        return false;
    return c->batch_us[k][n] < (double)n * c->scalar_us[k];
}

size_t tg_cmb_calib_breakeven(const struct tg_cmb_calib *c, enum tg_cmb_kind k)
{
    for (size_t n = 1; n <= TG_MBX_LANES; n++) {
        if (tg_cmb_calib_prefer_batch(c, k, n))
            return n;
    }
    return TG_MBX_LANES + 1;
}

/* ---- measuring ---- */

/* Minimum over a few single calls (cheap, robust to noise): three samples,
 * two when a call is expensive. */
static double tg_cmb_calib_min_us(tg_cmb_work_fn fn, struct tg_cmb_work *w, size_t n)
{
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = tg_cmb_work_cpu_s();
        (void)fn(w, n);
        double us = (tg_cmb_work_cpu_s() - t0) * 1e6;
        if (rep == 0 || us < best)
            best = us;
        if (rep >= 1 && best > 200.0)
            break;
    }
    return best;
}

/* The first key of kind k that crypto_mb can take, or NULL. */
static const struct tg_pkey *tg_cmb_calib_key_for(const struct tg_pkey *const keys[], size_t nkeys,
                                                  enum tg_cmb_kind k)
{
    for (size_t i = 0; keys != NULL && i < nkeys; i++) {
        if (keys[i] != NULL && tg_cmb_kind_for_key(keys[i]) == k &&
            tg_cmb_batch_key_supported(keys[i], NULL, 0) == TG_OK)
            return keys[i];
    }
    return NULL;
}

int tg_cmb_calib_measure(const struct tg_pkey *const keys[], size_t nkeys, unsigned kinds,
                         struct tg_cmb_calib *out)
{
    memset(out, 0, sizeof(*out));
    if (tg_mbx_api() == NULL)
        return TG_EUNAVAIL;
    if (kinds == 0)
        kinds = TG_CMB_KIND_ALL;
    bool any = false;
    for (int k = 0; k < TG_CMB_KIND_COUNT; k++) {
        if (!(kinds & TG_CMB_KIND_BIT(k)))
            continue;
        const struct tg_cmb_kind_info *info = tg_cmb_kind_info((enum tg_cmb_kind)k);
        const struct tg_pkey *key = NULL;
        if (info->type == TG_KEYOP_RSA_SIGN || info->type == TG_KEYOP_ECDSA_SIGN) {
            key = tg_cmb_calib_key_for(keys, nkeys, (enum tg_cmb_kind)k);
            if (key == NULL)
                continue;
        } else if (!tg_cmb_batch_group_supported(info->group)) {
            continue;
        }
        struct tg_cmb_work *w = tg_cmb_work_new((enum tg_cmb_kind)k, key);
        if (w == NULL)
            continue;
        double one = tg_cmb_calib_min_us(tg_cmb_work_batch, w, 1);
        double eight = tg_cmb_calib_min_us(tg_cmb_work_batch, w, TG_MBX_LANES);
        double scalar = tg_cmb_calib_min_us(tg_cmb_work_scalar, w, 1);
        if (w->errors == 0) {
            tg_cmb_calib_set(out, (enum tg_cmb_kind)k, scalar, one, eight);
            any = true;
        }
        tg_cmb_work_free(w);
    }
    return any ? TG_OK : TG_EUNAVAIL;
}

/* ---- the process-wide model ---- */

/* Break-evens are computed when asked (at most 8 comparisons), never
 * cached: one source of truth, and nothing to keep in step with the model. */
static struct {
    struct tg_cmb_calib model;
    bool pinned;
    /* Kinds whose entry in model is complete (bit k): set with release once
     * the entry is written, read with acquire, so a kind learned on the main
     * thread while workers run (a reload adding a key type) is never read
     * half-written. model.valid is the writer's own view. */
    _Atomic unsigned known;
} tg_cmb_calib_g;

bool tg_cmb_calib_known(enum tg_cmb_kind k)
{
    return (unsigned)k < TG_CMB_KIND_COUNT &&
           (atomic_load_explicit(&tg_cmb_calib_g.known, memory_order_acquire) &
            TG_CMB_KIND_BIT(k)) != 0;
}

void tg_cmb_calib_learn(const struct tg_pkey *key, unsigned kinds)
{
    if (tg_cmb_calib_g.pinned)
        return;
    for (int k = 0; k < TG_CMB_KIND_COUNT; k++) {
        if (tg_cmb_calib_g.model.valid[k])
            kinds &= ~TG_CMB_KIND_BIT(k);
    }
    if (kinds == 0)
        return;
    struct tg_cmb_calib c;
    const struct tg_pkey *keys[1] = {key};
    if (tg_cmb_calib_measure(key ? keys : NULL, key ? 1 : 0, kinds, &c) != TG_OK)
        return;
    for (int k = 0; k < TG_CMB_KIND_COUNT; k++) {
        if (!c.valid[k])
            continue;
        tg_cmb_calib_g.model.valid[k] = true;
        tg_cmb_calib_g.model.scalar_us[k] = c.scalar_us[k];
        memcpy(tg_cmb_calib_g.model.batch_us[k], c.batch_us[k], sizeof(c.batch_us[k]));
        atomic_fetch_or_explicit(&tg_cmb_calib_g.known, TG_CMB_KIND_BIT(k), memory_order_release);
    }
}

const struct tg_cmb_calib *tg_cmb_calib_model(void)
{
    return &tg_cmb_calib_g.model;
}

size_t tg_cmb_calib_batch_from(enum tg_cmb_kind k)
{
    if ((unsigned)k >= TG_CMB_KIND_COUNT || !tg_cmb_calib_known(k))
        return TG_CMB_CALIB_DEFAULT_BATCH_FROM;
    return tg_cmb_calib_breakeven(&tg_cmb_calib_g.model, k);
}

void tg_cmb_calib_summary(struct tg_buf *out)
{
    bool any = false;
    for (int k = 0; k < TG_CMB_KIND_COUNT; k++) {
        if (!tg_cmb_calib_known((enum tg_cmb_kind)k))
            continue;
        size_t from = tg_cmb_calib_batch_from((enum tg_cmb_kind)k);
        tg_buf_printf(out, "%s%s ", any ? ", " : "", tg_cmb_kind_name((enum tg_cmb_kind)k));
        if (from > TG_MBX_LANES)
            tg_buf_puts(out, "never");
        else
            tg_buf_printf(out, "from %zu", from);
        any = true;
    }
    if (!any)
        tg_buf_puts(out, "no kind measured");
}

void tg_cmb_calib_forget(void)
{
    if (tg_cmb_calib_g.pinned)
        return;
    memset(&tg_cmb_calib_g, 0, sizeof(tg_cmb_calib_g));
}

void tg_cmb_calib_pin(const struct tg_cmb_calib *c)
{
    memset(&tg_cmb_calib_g, 0, sizeof(tg_cmb_calib_g));
    if (c == NULL)
        return;
    tg_cmb_calib_g.model = *c;
    tg_cmb_calib_g.pinned = true;
    unsigned known = 0;
    for (int k = 0; k < TG_CMB_KIND_COUNT; k++) {
        if (c->valid[k])
            known |= TG_CMB_KIND_BIT(k);
    }
    atomic_store_explicit(&tg_cmb_calib_g.known, known, memory_order_release);
}
