/* Internal to src/keyprov: shared between the registry, the op lifecycle and
 * the software computation. Providers do not include it. */
#ifndef TG_KEYPROV_INTERNAL_H
#define TG_KEYPROV_INTERNAL_H

#include "keyprov/tg_keyprov.h"

/* The binding's provider state on the current worker thread, or NULL when the
 * thread has no provider set (main thread, tests, tools). */
void *tg_keyprov_state_for(const struct tg_keyprov_binding *b);
/* Free this thread's cached software contexts (call at worker exit). */
void tg_keyop_sw_thread_cleanup(void);
/* Free this thread's cached signing contexts only (they reference keys). */
void tg_keyop_sw_forget_keys(void);

#endif
