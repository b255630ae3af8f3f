/*
 * tg_conf_tls: the tls block of a listener (listeners[i].tls), walked with
 * the tg_cp cursor positioned on it.
 *
 * tg_conf_tls_parse fills *t, which the caller has zeroed and given its
 * defaults (versions, session_resumption). It reads every PEM file named
 * (relative to cp->basedir) and checks that it holds the PEM block expected,
 * nothing more: parsing certificates and keys is the TLS layer's job.
 * Everything allocated is attached to *t at once; on failure the partial *t
 * is released with tg_conf_tls_free like a complete one. Errors: see
 * tg_conf_cursor.h.
 *
 * Threading: one load on one thread. Provider names are checked against
 * tg_config_set_known_providers' list.
 */
#ifndef TG_CONF_TLS_H
#define TG_CONF_TLS_H

#include "config/tg_conf_cursor.h"

int tg_conf_tls_parse(struct tg_cp *cp, const yaml_node_t *n, struct tg_conf_tls *t);

/* Free everything *t owns (inline PEM data and provider values are wiped). */
void tg_conf_tls_free(struct tg_conf_tls *t);

#endif
