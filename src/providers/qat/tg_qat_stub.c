/*
 * The qat provider built without the qatlib headers (qat/cpa.h): CMake
 * compiles this file instead of the real ones. The provider still exists, so
 * configurations stay portable and are validated the same way
 * (tg_qat_config.c), and `tlsgate doctor` still shows what the machine
 * offers (tg_qat_doctor.c); it never runs: global_init says why.
 */
#include <stdio.h>

#include "providers/qat/tg_qat_internal.h"

static int tg_qat_global_init(char *why, size_t whylen)
{
    snprintf(why, whylen,
             "built without qatlib headers (install libqat-dev or run scripts/setup.sh, then "
             "rebuild)");
    return TG_EUNAVAIL;
}

/* Never reached with a qat binding (global_init fails, so the binding falls
 * back or start-up stops); a spill target or a test may still get a state. */
static int tg_qat_worker_init(const struct tg_keyprov_worker *w, void **state)
{
    *state = w->stats;
    return TG_OK;
}

static int tg_qat_submit(void *state, struct tg_keyop *op)
{
    (void)state;
    (void)tg_keyop_complete(op, tg_keyop_compute_sw(op), TG_FALLBACK_DEVICE_ERROR);
    return TG_OK;
}

static void tg_qat_doctor(struct tg_buf *out, struct tg_buf *json)
{
    tg_buf_puts(out, "this tlsgate was built without the qatlib headers (qat/cpa.h)\n");
    tg_buf_puts(json, "\"headers\":false");
    tg_qat_doctor_machine(out, json, NULL, "rebuild with the qatlib headers");
}

const struct tg_keyprov_ops tg_qat_provider = {
    .name = "qat",
    .description = "Intel QuickAssist offload through qatlib: RSA (CRT) and ECDSA signatures",
    .does_kx = false,
    .configure = tg_qat_configure,
    .settings_free = tg_qat_settings_free,
    .global_init = tg_qat_global_init,
    .worker_init = tg_qat_worker_init,
    .submit = tg_qat_submit,
    .doctor = tg_qat_doctor,
};
