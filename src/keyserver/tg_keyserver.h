/*
 * tg_keyserver: `tlsgate keyserver`, the process that holds certificate
 * private keys for gateways. Gateways (their `keyserver` key provider) hold
 * only certificates and send signing requests over a Unix socket in the
 * key server protocol (src/ksproto, docs/KEYSERVER-PROTOCOL.md); the key
 * server runs them through the same key providers as a gateway (software,
 * cryptomb, qat, pkcs11) on one event loop, so one cryptomb batch takes the
 * requests of every worker of every gateway connected to it.
 *
 * Peers are authenticated with SO_PEERCRED against the allow-list of uids
 * and gids; every bound is in the configuration (docs/CONFIG.md, "Key
 * server"). docs/KEY-PROVIDERS.md ("keyserver") says how it works and what
 * it protects against.
 *
 * The server runs on one libev loop; tests drive it on a thread of their
 * own (tg_ks_new, tg_ks_run, tg_ks_request_stop).
 */
#ifndef TG_KEYSERVER_H
#define TG_KEYSERVER_H

#include <stdbool.h>

#include "config/tg_config.h"
#include "core/tg_buf.h"
#include "core/tg_err.h"

struct ev_loop;
struct tg_ks;

/* Warnings about a valid but risky configuration (a key file others can
 * read, an exposed admin endpoint): main hands in tg_audit's, which this
 * module does not link. check: `--check` (print them) or a run (log them). */
typedef void (*tg_ks_audit_fn)(const struct tg_config *cfg, bool check);

/* `tlsgate keyserver --config FILE [--log-level LEVEL] [--check]`; the
 * exit status (0, 1 runtime failure, 2 usage or configuration error). The
 * key providers must be registered; audit may be NULL. */
int tg_keyserver_main(int argc, char **argv, tg_ks_audit_fn audit);

/*
 * Make a server for cfg (a key server's configuration, cfg->keyserver set;
 * it must outlive the server) that will run on loop: load and bind the keys,
 * open the socket, start the admin endpoint when configured. Main thread,
 * before any loop runs. On failure a one-line reason in err and TG_ECONFIG
 * (the configuration), TG_EUNAVAIL (a provider cannot run here), TG_EIO
 * (the socket), TG_ENOMEM.
 */
int tg_ks_new(const struct tg_config *cfg, struct ev_loop *loop, struct tg_ks **out, char *err,
              size_t errlen) TG_MUST_CHECK;
/* Serve until stopped, on the loop's thread (the providers' per-worker
 * state lives on this thread); then complete what is pending, answer it,
 * close every connection. TG_OK, or the error that kept it from starting. */
int tg_ks_run(struct tg_ks *ks) TG_MUST_CHECK;
/* Ask the server to stop (any thread, async-signal-unsafe). */
void tg_ks_request_stop(struct tg_ks *ks);
/* After tg_ks_run returned (or instead of it). NULL is fine. */
void tg_ks_free(struct tg_ks *ks);
/* The /stats body: the key server's series and its providers'. */
void tg_ks_render(struct tg_ks *ks, struct tg_buf *out);

#endif
