/* The cryptomb key provider, for the program's provider table (src/main.c). */
#ifndef TG_CRYPTOMB_H
#define TG_CRYPTOMB_H

#include "keyprov/tg_keyprov.h"

extern const struct tg_keyprov_ops tg_cryptomb_provider;

#endif
