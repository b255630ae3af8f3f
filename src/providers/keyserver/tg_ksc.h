/*
 * The keyserver key provider, for the program's provider table
 * (src/main.c): certificate keys held by a key server (`tlsgate keyserver`)
 * and used over its Unix socket. tg_ksc_key_free releases the handle of
 * such a key (its tg_pkey.prov_key_free: how a key of this provider is
 * recognised).
 */
#ifndef TG_KSC_H
#define TG_KSC_H

#include "keyprov/tg_keyprov.h"

extern const struct tg_keyprov_ops tg_keyserver_provider;
void tg_ksc_key_free(void *handle);

#endif
