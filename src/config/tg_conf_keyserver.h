/*
 * tg_conf_keyserver: the schema of a key server's configuration
 * (`tlsgate keyserver --config FILE`): the top level (keyserver, keys,
 * log_level, admin), walked with the tg_cp cursor like the gateway's
 * (tg_conf_schema). Fills cp->cfg->keyserver; the keys' PEM files are read
 * here, parsing them is the key server's job. User and group names in
 * allowed_uids, allowed_gids and socket_group are resolved here
 * (getpwnam_r / getgrnam_r), so an unknown name is reported with its
 * position. Errors: see tg_conf_cursor.h.
 *
 * Threading: one load on one thread.
 */
#ifndef TG_CONF_KEYSERVER_H
#define TG_CONF_KEYSERVER_H

#include "config/tg_conf_cursor.h"

int tg_conf_keyserver_root(struct tg_cp *cp, const yaml_node_t *root);
/* Free ks and everything it owns (key sources wiped). NULL is fine. */
void tg_conf_keyserver_free(struct tg_conf_keyserver *ks);

#endif
