/*
 * tg_conn_alog: a connection's access-log record (src/alog). The connection
 * gathers times, byte counts and addresses along the way (struct
 * tg_conn_alog in tg_conn.h); at close this fills one record from them,
 * from the SSL object (SNI, ALPN, version, cipher, group, resumption) and
 * from the key context (which certificate signed, fallbacks), and hands it
 * to the worker's ring. Nothing is formatted here.
 *
 * Worker thread; called only when the worker has a ring (w->alog != NULL).
 */
#ifndef TG_CONN_ALOG_H
#define TG_CONN_ALOG_H

#include "proxy/tg_conn.h"

/* At close, before the SSL object is freed: stat is the close reason. */
void tg_conn_alog_closed(struct tg_conn *c, int stat);
/* A connection refused at accept (limits.max_connections) from the TCP peer
 * `peer` (AF_UNSPEC: unknown): a line with term LR. */
void tg_conn_alog_rejected(struct tg_wlistener *l, const struct sockaddr_storage *peer,
                           enum tg_core_stat counter);

#endif
