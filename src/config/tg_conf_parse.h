/*
 * tg_conf_parse: scalar value parsers of the configuration (integers,
 * durations, booleans, socket addresses). The public ones are declared in
 * config/tg_config.h (key providers use them too); this header adds what the
 * rest of src/config needs beyond them.
 *
 * Pure functions: no I/O, no global state, no message formatting (callers
 * word the error, with the file position they know). Any thread.
 */
#ifndef TG_CONF_PARSE_H
#define TG_CONF_PARSE_H

#include <stdbool.h>
#include <stdint.h>

#include "config/tg_config.h"

/* '0'..'9' only, whatever the locale. */
bool tg_conf_parse_is_digit(char c);

/* Like tg_conf_parse_addr, but says why s is not an address: NULL on success
 * (out->text is then a malloc'd copy of s), else a static English phrase
 * ("missing ':port'") and *out untouched. */
const char *tg_conf_parse_addr_why(const char *s, struct tg_conf_addr *out);

/* A byte size: decimal digits, optionally followed by a unit B, KiB, MiB or
 * GiB ("256KiB", "1MiB", "65536"); within [min, max] bytes. */
int tg_conf_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out) TG_MUST_CHECK;
/* An upstream endpoint "HOST:PORT": HOST is an IPv4 literal, a bracketed
 * IPv6 literal, or a DNS name (letters, digits, '-', '_', dots; labels of
 * 1..63 bytes, 253 in all, an optional final dot) that is resolved later;
 * "localhost" is a name here (the hosts file decides). PORT is 1..65535.
 * NULL on success: *host is a malloc'd copy of HOST (no brackets), *port
 * and *is_name are set, and for a literal *addr is filled as by
 * tg_conf_parse_addr (addr->text a malloc'd copy of s). Else a static
 * English phrase and nothing written. */
const char *tg_conf_parse_hostport(const char *s, char **host, uint16_t *port, bool *is_name,
                                   struct tg_conf_addr *addr);

/* A DNS resolver "IP", "IP:PORT", "[IPv6]" or "[IPv6]:PORT" (port 53 when
 * absent), written back as "IP:PORT" / "[IPv6]:PORT" into buf (at least 64
 * bytes). NULL on success, else why not. */
const char *tg_conf_parse_resolver(const char *s, char *buf, size_t len);

/* Port of a parsed address (host order); 0 for "any free port". */
uint16_t tg_conf_parse_port(const struct tg_conf_addr *a);

/* Same family, address and port. */
bool tg_conf_parse_same_addr(const struct tg_conf_addr *a, const struct tg_conf_addr *b);

#endif
