/* The deferred key provider, for the program's provider table (src/main.c). */
#ifndef TG_DEFERRED_H
#define TG_DEFERRED_H

#include "keyprov/tg_keyprov.h"

extern const struct tg_keyprov_ops tg_deferred_provider;

#endif
