/*
 * tg_config_internal: what tg_conf_util.c provides to the other files of
 * src/config (not to other modules): message formatting, whole-file reads,
 * wiping, and the program's provider names.
 *
 * Threading: as tg_config.h (load on one thread).
 */
#ifndef TG_CONFIG_INTERNAL_H
#define TG_CONFIG_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "config/tg_config.h"

/* Largest config file and largest referenced PEM file we read. */
#define TG_CONF_MAX_FILE ((size_t)16 << 20)
/* Longest key path in a message ("listeners[0].tls.certificates[1]..."). */
#define TG_CONF_PATHMAX 512
/* Room for a user value quoted in a message. */
#define TG_CONF_EXCERPT 72

/* tg_conf_error with a va_list. */
void tg_config_verror(char *err, size_t errlen, const struct tg_conf_mark *mark, const char *path,
                      const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));

/* s, or its first n - 4 bytes and "...", copied into buf (n bytes); returns buf. */
const char *tg_config_excerpt(const char *s, char *buf, size_t n);

/* Read a whole file (at most TG_CONF_MAX_FILE bytes) into a malloc'd,
 * NUL-terminated buffer the caller releases with tg_config_free_secret
 * (it may be a private key). Every buffer given up on the way is wiped.
 * Returns 0 or an errno value; *out is written only on success. */
int tg_config_read_file(const char *path, char **out, size_t *outlen);

/* Wipe len bytes of p, then free it. p may be NULL. */
void tg_config_free_secret(char *p, size_t len);

/* Is name one of the names given to tg_config_set_known_providers (always
 * true when none were given)? */
bool tg_config_provider_known(const char *name);

/* The known names as "a, b, c" into buf (cut at a whole name when too long). */
void tg_config_provider_list(char *buf, size_t len);

#endif
