/*
 * tg_gateway: `tlsgate run` — builds the TLS contexts, opens the listeners,
 * starts one worker thread per `concurrency`, serves the admin endpoint on
 * the main thread, and drains on SIGTERM / SIGINT.
 */
#ifndef TG_GATEWAY_H
#define TG_GATEWAY_H

#include "config/tg_config.h"

/* Run until a signal; returns the process exit status (0 after a clean
 * drain, 1 on a runtime failure, 2 on a configuration error found while
 * building TLS contexts, such as a key that does not match its certificate).
 * cfg may be updated with the addresses actually bound (port 0). */
int tg_gateway_run(struct tg_config *cfg);

/* `tlsgate check-config`: everything run does before binding sockets.
 * Prints "configuration OK" and returns 0, or prints the error and returns 2. */
int tg_gateway_check(struct tg_config *cfg);

#endif
