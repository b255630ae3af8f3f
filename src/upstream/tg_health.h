/*
 * tg_health: the optional active health check of an endpoint: a TCP connect
 * from the main thread's loop every `interval`, abandoned after `timeout`.
 * A probe succeeds when the connection is established (it is closed at
 * once; nothing is sent). An endpoint becomes unhealthy after
 * `unhealthy_threshold` failed probes in a row and healthy again after
 * `healthy_threshold` good ones in a row; it starts healthy.
 *
 * Ownership: tg_health_new creates a running check, tg_health_free stops
 * and frees it (its callback is not called after that).
 *
 * Threading: the loop's thread. tg_health_judge is pure.
 */
#ifndef TG_HEALTH_H
#define TG_HEALTH_H

#include <stdbool.h>
#include <stdint.h>

#include "config/tg_config.h"
#include "core/tg_err.h"
#include "upstream/tg_endpoint.h"

struct ev_loop;
struct tg_health;

/* Probes in a row with the same outcome. */
struct tg_health_run {
    uint32_t ok, failed;
};

/* Count one probe into run; returns the verdict after it, given the
 * verdict before (healthy). */
bool tg_health_judge(struct tg_health_run *run, const struct tg_conf_health_check *c, bool healthy,
                     bool probe_ok);

/* Called after every probe: ok, and the errno of a failure (ETIMEDOUT for
 * the timeout). */
typedef void (*tg_health_cb)(void *arg, bool ok, int err);

/* Start probing addr (port set) on loop, the first probe after first_s
 * seconds. TG_OK or TG_ENOMEM. */
int tg_health_new(struct ev_loop *loop, const struct tg_conf_health_check *conf,
                  const union tg_sockaddr *addr, socklen_t addrlen, double first_s, tg_health_cb cb,
                  void *arg, struct tg_health **out) TG_MUST_CHECK;
void tg_health_free(struct tg_health *h);

#endif
