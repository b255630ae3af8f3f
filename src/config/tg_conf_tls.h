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

/*
 * The pieces of a certificate entry that the key server's keys share
 * (tg_conf_keyserver.c), with the same errors:
 *   tg_conf_tls_pem       a PEM data source { filename | inline_string } at
 *                         node n (the cursor on its key), read into *ds and
 *                         checked to hold a private key (key) or a certificate;
 *   tg_conf_tls_provider  the defaults of c->keyprov, then the
 *                         private_key_provider block of mapping `entry`, if
 *                         any (its typed_config may hold the private key:
 *                         cert_key_node is the entry's own private_key key
 *                         node, or NULL);
 *   tg_conf_tls_cert_free everything *c owns (wiped as by tg_conf_tls_free).
 */
int tg_conf_tls_pem(struct tg_cp *cp, const yaml_node_t *n, bool key,
                    struct tg_conf_datasource *ds);
int tg_conf_tls_provider(struct tg_cp *cp, const yaml_node_t *entry, struct tg_conf_cert *c,
                         const yaml_node_t *cert_key_node);
void tg_conf_tls_cert_free(struct tg_conf_cert *c);

#endif
