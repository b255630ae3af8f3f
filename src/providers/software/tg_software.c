/*
 * The software provider: OpenSSL's default implementation, run inline.
 * The baseline of every benchmark and the fallback of every other provider.
 */
#include "keyprov/tg_keyprov.h"
#include "providers/software/tg_software.h"

/* The state only has to be non-NULL: there is nothing per worker. */
static int tg_sw_worker_init(const struct tg_keyprov_worker *w, void **state)
{
    *state = w->stats;
    return TG_OK;
}

static int tg_sw_submit(void *state, struct tg_keyop *op)
{
    (void)state;
    int rc = tg_keyop_compute_sw(op);
    (void)tg_keyop_complete(op, rc, TG_FALLBACK_DEVICE_ERROR);
    return TG_OK;
}

const struct tg_keyprov_ops tg_software_provider = {
    .name = "software",
    .description = "OpenSSL default provider, inline (baseline and fallback)",
    .does_kx = false,
    .worker_init = tg_sw_worker_init,
    .submit = tg_sw_submit,
};
