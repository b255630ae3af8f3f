/*
 * tg_admin: the admin HTTP endpoint (GET /stats in Prometheus text format,
 * GET /ready). Runs on the main thread's libev loop.
 *
 * The server is deliberately small: HTTP/1.0 and 1.1 GET/HEAD only, one
 * request per connection (Connection: close), request head bounded (8 KiB),
 * a per-connection timeout, at most 64 concurrent admin connections.
 * Anything else gets a 4xx and a close; bad bytes never crash it.
 */
#ifndef TG_ADMIN_H
#define TG_ADMIN_H

#include <stdbool.h>
#include <stdint.h>

#include "core/tg_buf.h"
#include "core/tg_err.h"

struct ev_loop;
struct tg_conf_addr;
struct tg_conf_cidr;
struct tg_admin;

struct tg_admin_callbacks {
    /* Append the full /stats body (Prometheus text exposition). */
    void (*render_stats)(struct tg_buf *out, void *arg);
    /* true when the gateway serves traffic (listeners open, not draining). */
    bool (*ready)(void *arg);
    void *arg;
};

/* Bind and listen on addr, serve on loop. */
int tg_admin_start(struct ev_loop *loop, const struct tg_conf_addr *addr,
                   const struct tg_admin_callbacks *cb, struct tg_admin **out) TG_MUST_CHECK;
/* Serve only clients whose address lies in one of the n networks of v
 * (admin.allowed_sources; copied); n = 0: everyone. Others are closed at
 * accept, before a byte is read. Loop thread. TG_ENOMEM leaves the list as
 * it was. */
int tg_admin_set_allowed(struct tg_admin *a, const struct tg_conf_cidr *v, size_t n) TG_MUST_CHECK;
/* Connections closed because of it since start. Loop thread. */
uint64_t tg_admin_refused(const struct tg_admin *a);

/* The port actually bound (useful with port 0). */
int tg_admin_port(const struct tg_admin *a);
/* Close the listener and every admin connection; frees a. NULL is fine. */
void tg_admin_stop(struct tg_admin *a);

#endif
