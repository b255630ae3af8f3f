/*
 * tg_conf_alog: the top-level access_log block, walked with the tg_cp cursor
 * positioned on it.
 *
 * tg_conf_alog_parse fills *a, which holds its defaults (tg_conf_schema_defaults:
 * off, text, 256 KiB). A block that is present turns the log on (stdout
 * unless path says otherwise). A file path is resolved against cp->basedir;
 * its directory must exist now (the file itself is opened when tlsgate
 * starts serving). Errors: see tg_conf_cursor.h; on failure *a may hold a
 * path, released with the config.
 *
 * Threading: one load on one thread.
 */
#ifndef TG_CONF_ALOG_H
#define TG_CONF_ALOG_H

#include "config/tg_conf_cursor.h"

/* Smallest and largest access_log.buffer. */
#define TG_CONF_ALOG_BUFFER_MIN ((uint64_t)4 << 10)
#define TG_CONF_ALOG_BUFFER_MAX ((uint64_t)256 << 20)

int tg_conf_alog_parse(struct tg_cp *cp, const yaml_node_t *n, struct tg_conf_access_log *a);

#endif
