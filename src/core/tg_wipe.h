/*
 * tg_wipe: wipe what OpenSSL frees while a secret passes through it.
 *
 * OpenSSL 3.0 decodes a PEM private key through copies that it frees without
 * wiping them: the DER the PEM decoder produces, the DER reader's buffer,
 * ASN.1 temporaries. Those bytes are the private key; they would stay in
 * freed heap memory until reused. tg_wipe_install() gives OpenSSL allocation
 * functions that, on a thread between tg_wipe_begin() and tg_wipe_end(),
 * wipe (OPENSSL_cleanse) every block before it is freed, and every block a
 * realloc moves; outside such a section they cost one thread-local load per
 * call.
 *
 * Threading: tg_wipe_install once, first thing in main (OpenSSL refuses new
 * allocation functions once it has allocated anything). Sections are per
 * thread and nest.
 */
#ifndef TG_WIPE_H
#define TG_WIPE_H

#include <stdbool.h>

#include "core/tg_err.h"

/* TG_OK, or TG_ESTATE when OpenSSL has already allocated memory: then
 * nothing is wiped (sections still nest, harmlessly). */
int tg_wipe_install(void) TG_MUST_CHECK;
/* Whether tg_wipe_install succeeded in this process. */
bool tg_wipe_installed(void);

/* Open / close a section on the calling thread. */
void tg_wipe_begin(void);
void tg_wipe_end(void);

#endif
