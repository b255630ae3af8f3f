/*
 * Internal to the pkcs11 provider: its per-certificate settings and the
 * entry points its files share (tg_pkcs11.c: configuration, keys, stats;
 * tg_p11_worker.c: the worker side; tg_p11_doctor.c: `tlsgate doctor`).
 */
#ifndef TG_P11_INTERNAL_H
#define TG_P11_INTERNAL_H

#include "core/tg_buf.h"
#include "keyprov/tg_keyprov.h"
#include "providers/pkcs11/tg_p11_module.h"
#include "providers/pkcs11/tg_p11_pool.h"
#include "providers/pkcs11/tg_p11_uri.h"

/* typed_config of one certificate (docs/CONFIG.md, "pkcs11"). */
struct tg_p11_settings {
    char *module;          /* path of the PKCS#11 module */
    struct tg_p11_uri uri; /* key */
    struct tg_p11_pin pin; /* pin.filename / pin.environment_variable / pin.inline_string */
    size_t threads;        /* signing threads of the token (the largest asked) */
    size_t max_queue;      /* requests waiting for a thread, per token */
    uint64_t timeout_ns;   /* a request not signed by then fails */
    bool verify;           /* check each signature with the public key */
    enum tg_p11_rsa_mode rsa_mode;
};

/* Worker side (tg_p11_worker.c): the tg_keyprov_ops entries. */
int tg_p11_worker_init(const struct tg_keyprov_worker *w, void **state);
void tg_p11_worker_cleanup(void *state);
int tg_p11_submit(void *state, struct tg_keyop *op);
void tg_p11_flush(void *state);
size_t tg_p11_pending(void *state);
void tg_p11_drain(void *state);

/* `tlsgate doctor` (tg_p11_doctor.c): the modules of the configuration
 * given to `doctor --config`, and those named in the environment variable
 * TLSGATE_PKCS11_MODULE (colon-separated). */
void tg_p11_doctor(struct tg_buf *text, struct tg_buf *json);
/* Append s as a JSON string (quotes and escapes). */
void tg_p11_json_str(struct tg_buf *out, const char *s);

#endif
