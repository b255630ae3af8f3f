/*
 * tg_resolver: asynchronous host-name resolution with c-ares, driven by a
 * libev loop (c-ares' sockets become ev_io watchers through its socket-state
 * callback; its retransmission timeouts an ev_timer). Nothing blocks on the
 * network: the only synchronous work is c-ares reading the hosts file.
 *
 * Look-ups go to the hosts file first (/etc/hosts, or the file named by
 * $CARES_HOSTS), then to DNS ("fb"); DNS servers are those of
 * /etc/resolv.conf unless the dns block names resolvers. Search domains and
 * ndots come from /etc/resolv.conf as for any program (in Kubernetes,
 * "backend" and "backend.default" resolve like in the pod's shell).
 *
 * Ownership: tg_resolver_new creates, tg_resolver_free destroys (every
 * query must have been cancelled or completed first). A query handle is
 * valid until its callback has run or tg_resolver_cancel was called.
 *
 * Threading: everything on the thread that runs the loop.
 */
#ifndef TG_RESOLVER_H
#define TG_RESOLVER_H

#include <stddef.h>
#include <stdint.h>

#include "config/tg_config.h"
#include "core/tg_err.h"
#include "upstream/tg_endpoint.h"

struct ev_loop;
struct tg_resolver;
struct tg_resolver_query;

/* Most addresses kept from one answer. */
#define TG_RESOLVER_MAX_ADDRS 256

/*
 * The outcome of one look-up. status TG_OK: addrs holds n >= 1 distinct
 * addresses (port 0) and ttl_s the smallest TTL of the answer (0 when it
 * carried none, as for the hosts file). Otherwise (TG_EIO: no such name,
 * no address of the family asked, server failure, timeout) n is 0 and why
 * says what c-ares said. The arrays live only during the call.
 * Never called from inside tg_resolver_resolve.
 */
typedef void (*tg_resolver_cb)(void *arg, int status, const char *why,
                               const union tg_sockaddr *addrs, size_t n, uint32_t ttl_s);

/* A resolver on loop with the dns block's settings (resolvers, query timeout
 * and attempts). TG_OK, TG_ENOMEM, or TG_EIO with a message in err. */
int tg_resolver_new(struct ev_loop *loop, const struct tg_conf_dns *conf, struct tg_resolver **out,
                    char *err, size_t errlen) TG_MUST_CHECK;
/* Cancel nothing, free everything; queries still in flight must have been
 * cancelled (their callbacks are then never called). NULL is fine. */
void tg_resolver_free(struct tg_resolver *r);

/* Start resolving name; family AF_UNSPEC (A and AAAA), AF_INET or AF_INET6.
 * *q identifies the query until cb runs. TG_OK or TG_ENOMEM. */
int tg_resolver_resolve(struct tg_resolver *r, const char *name, int family, tg_resolver_cb cb,
                        void *arg, struct tg_resolver_query **q) TG_MUST_CHECK;
/* The callback of q will not be called; q is invalid afterwards. */
void tg_resolver_cancel(struct tg_resolver_query *q);

/* Queries in flight (cancelled ones included until c-ares lets go). */
size_t tg_resolver_pending(const struct tg_resolver *r);

/* The c-ares hints flags of a look-up, given $CARES_HOSTS (NULL when
 * unset): the hosts file it names when it names one, else the system's. */
int tg_resolver_ai_flags(const char *cares_hosts);

#endif
