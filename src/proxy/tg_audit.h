/*
 * tg_audit: what an operator should be told about a configuration that is
 * valid but risky: a private key file others can read, a certificate that
 * has expired or expires soon, an admin endpoint anyone can reach, session
 * tickets announced for longer than their key lives.
 *
 * Each finding is one line "FILE:LINE:COL: path: message" (the position of
 * the setting concerned) handed to a callback: the gateway logs it as a
 * warning at start-up and at each reload (certificates also once a day),
 * `tlsgate check-config` prints it. Findings never stop anything.
 *
 * Pure apart from the identity of the process (tg_audit_ids_self) and group
 * names (getgrgid_r): any thread.
 */
#ifndef TG_AUDIT_H
#define TG_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "config/tg_config.h"
#include "proxy/tg_gen.h"

typedef void (*tg_audit_emit_fn)(void *arg, const char *line);

/* Who the process is, for judging file permissions. */
#define TG_AUDIT_MAX_GROUPS 64
struct tg_audit_ids {
    uint32_t euid;
    uint32_t groups[TG_AUDIT_MAX_GROUPS]; /* effective gid first, then supplementary */
    size_t n_groups;
};
void tg_audit_ids_self(struct tg_audit_ids *ids);

/* Emitters: a warning in the log; "tlsgate: warning: LINE" on stderr (for
 * check-config and --check). */
void tg_audit_emit_log(void *arg, const char *line);
void tg_audit_emit_stderr(void *arg, const char *line);

/* Who besides the owner can read a file of these mode bits, owner and group.
 * Group read is not counted when it is how this process reads the file (the
 * file's group is one of the process's groups and the process does not own
 * the file: a Kubernetes secret volume with fsGroup and mode 0440, a key
 * shared with a service group on purpose). */
enum tg_audit_exposure { TG_AUDIT_PRIVATE = 0, TG_AUDIT_GROUP, TG_AUDIT_OTHERS };
enum tg_audit_exposure tg_audit_key_exposure(uint32_t mode, uint32_t uid, uint32_t gid,
                                             const struct tg_audit_ids *ids);

/* Findings in cfg (a gateway's or a key server's): private key files (as
 * read at load time), the admin endpoint, session timeouts longer than the
 * ticket key interval. Returns how many. */
size_t tg_audit_config(const struct tg_config *cfg, const struct tg_audit_ids *ids,
                       tg_audit_emit_fn emit, void *arg);

/* Findings about g's certificates at now (Unix time, seconds): expired, or
 * expiring within cfg->cert_expiry_warning_ns. Returns how many. */
size_t tg_audit_certs(const struct tg_gen *g, int64_t now, tg_audit_emit_fn emit, void *arg);

/* Whether the admin endpoint's address is a loopback one (127.0.0.0/8,
 * ::1, ::ffff:127.0.0.0/104). */
bool tg_audit_is_loopback(const struct tg_conf_addr *a);

#endif
