/* The software key provider, for the program's provider table (src/main.c). */
#ifndef TG_SOFTWARE_H
#define TG_SOFTWARE_H

#include "keyprov/tg_keyprov.h"

extern const struct tg_keyprov_ops tg_software_provider;

#endif
