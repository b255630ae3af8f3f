/* Internal to src/keyprov: shared between the registry and the op lifecycle. */
#ifndef TG_KEYPROV_INTERNAL_H
#define TG_KEYPROV_INTERNAL_H

#include "keyprov/tg_keyprov.h"

/* The binding's provider state on the current worker thread, or NULL when the
 * thread has no provider set (main thread, tests, tools). */
void *tg_keyprov_state_for(const struct tg_keyprov_binding *b);
/* Free this thread's cached software contexts (call at worker exit). */
void tg_keyop_sw_thread_cleanup(void);

extern const struct tg_keyprov_ops tg_kp_software_ops;
extern const struct tg_keyprov_ops tg_kp_deferred_ops;
extern const struct tg_keyprov_ops tg_kp_cryptomb_ops;
extern const struct tg_keyprov_ops tg_kp_qat_ops;

#endif
