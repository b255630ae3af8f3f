/*
 * tg_conf_schema: what a configuration may contain, and the walk that copies
 * a libyaml document into struct tg_config.
 *
 * tg_conf_schema_defaults gives a fresh (zeroed) config its defaults;
 * tg_conf_schema_root then fills it from the document's root node, with the
 * cursor cp (cp->cfg is that config) for positions and errors (see
 * tg_conf_cursor.h). On failure the config holds whatever was copied so far,
 * every piece attached: tg_conf_schema_free releases a partial config like
 * a complete one (NULL is fine).
 *
 * Threading: one load on one thread.
 */
#ifndef TG_CONF_SCHEMA_H
#define TG_CONF_SCHEMA_H

#include "config/tg_conf_cursor.h"

void tg_conf_schema_defaults(struct tg_config *cfg);
int tg_conf_schema_root(struct tg_cp *cp, const yaml_node_t *root);
void tg_conf_schema_free(struct tg_config *cfg);
/* The top-level keys every configuration kind has, log_level and admin,
 * from the (checked) root mapping; the key server's schema uses it too. */
int tg_conf_schema_common(struct tg_cp *cp, const yaml_node_t *root);

#endif
