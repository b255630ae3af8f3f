/*
 * tg_conf_upstream: a listener's upstream block (listeners[i].upstream:
 * the address or the endpoints, load balancing, DNS refresh, outlier
 * detection, the active health check) and the top-level dns block (the
 * resolver of upstream host names), walked with the tg_cp cursor positioned
 * on them.
 *
 * The *_defaults functions give a zeroed struct its defaults; *_parse then
 * fills it. Everything allocated is attached to the struct at once, so on
 * failure the partial struct is released with *_free like a complete one.
 * After a successful parse the upstream has at least one endpoint: the
 * `address` form becomes endpoints[0]. Names are only checked for syntax:
 * nothing is resolved while loading. Errors: see tg_conf_cursor.h.
 *
 * Threading: one load on one thread.
 */
#ifndef TG_CONF_UPSTREAM_H
#define TG_CONF_UPSTREAM_H

#include "config/tg_conf_cursor.h"

void tg_conf_upstream_defaults(struct tg_conf_upstream *u);
int tg_conf_upstream_parse(struct tg_cp *cp, const yaml_node_t *n, struct tg_conf_upstream *u);
void tg_conf_upstream_free(struct tg_conf_upstream *u);

void tg_conf_dns_defaults(struct tg_conf_dns *d);
int tg_conf_dns_parse(struct tg_cp *cp, const yaml_node_t *n, struct tg_conf_dns *d);
void tg_conf_dns_free(struct tg_conf_dns *d);

#endif
