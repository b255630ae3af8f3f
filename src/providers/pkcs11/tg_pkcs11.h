/* The pkcs11 key provider, for the program's provider table (src/main.c). */
#ifndef TG_PKCS11_H
#define TG_PKCS11_H

#include "keyprov/tg_keyprov.h"

extern const struct tg_keyprov_ops tg_pkcs11_provider;

#endif
