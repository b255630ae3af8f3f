/* The qat key provider, for the program's provider table (src/main.c). */
#ifndef TG_QAT_H
#define TG_QAT_H

#include "keyprov/tg_keyprov.h"

extern const struct tg_keyprov_ops tg_qat_provider;

#endif
