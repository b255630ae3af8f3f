/*
 * tg_gateway: `tlsgate run` — builds the first configuration generation (TLS
 * contexts, listeners), starts one worker thread per `concurrency`, serves
 * the admin endpoint on the main thread, reloads on SIGHUP (and when
 * certificate files change), and drains on SIGTERM / SIGINT.
 *
 * Reload: the configuration is read again and a new generation (tg_gen.h) is
 * built and fully validated on the main thread while the workers serve; then
 * every worker switches to it from its own loop (tg_worker_offer). A reload
 * applies entirely or not at all: any error (YAML, a certificate, a key that
 * does not match, a port, a setting that needs a restart) is logged as
 * "FILE:LINE:COL: path: message", counted, and the running generation keeps
 * serving.
 */
#ifndef TG_GATEWAY_H
#define TG_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>

#include "config/tg_config.h"

struct tg_gateway_opts {
    /* Read the configuration again, for a reload (the file named at start,
     * or the embedded default): TG_OK and *out, or an error with
     * "FILE:LINE:COL: path: message" in err. Main thread. */
    int (*load)(void *arg, struct tg_config **out, char *err, size_t errlen);
    void *load_arg;
    /* --log-level: applied over every configuration's log_level; -1: none. */
    int log_level;
    /* The pid file (tg_pidfile.h); NULL: none. explicit: named on the
     * command line, so failing to write it stops the start (else a warning:
     * `tlsgate reload` then cannot find us, SIGHUP still works). */
    const char *pid_file;
    bool pid_file_explicit;
};

/* Run until a signal; returns the process exit status (0 after a clean
 * drain, 1 on a runtime failure, 2 on a configuration error found while
 * building TLS contexts, such as a key that does not match its certificate).
 * Takes ownership of cfg (freed with the generation that holds it). */
int tg_gateway_run(struct tg_config *cfg, const struct tg_gateway_opts *opts);

/* `tlsgate check-config`: everything run does before binding sockets.
 * Prints "configuration OK" and returns 0, or prints the error and returns 2.
 * Takes ownership of cfg. */
int tg_gateway_check(struct tg_config *cfg);

#endif
