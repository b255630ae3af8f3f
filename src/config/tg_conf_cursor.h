/*
 * tg_conf_cursor: the generic cursor the schema walks a libyaml document
 * with. It knows where it stands (the key path "listeners[0].tls" and the
 * node's FILE:LINE:COL) and reads typed values out of nodes; it knows no key
 * of the schema.
 *
 * Contract shared by every tg_cp_* that returns int: TG_OK, or a negative
 * tg_err with exactly one line in cp->err ("FILE:LINE:COL: path: message",
 * the path being the cursor's current path). Outputs are written only on
 * success, except where said. Strings handed out are malloc'd copies owned
 * by the caller (in practice attached to cp->cfg at once); pointers into the
 * document (tg_cp_text, tg_cp_scalar) live as long as the document.
 *
 * Path stack: tg_cp_push_key / tg_cp_push_index append to the path and
 * return the old length, tg_cp_pop restores it; a path longer than
 * TG_CONF_PATHMAX is cut, never overrun.
 *
 * Threading: a cursor belongs to one load on one thread.
 */
#ifndef TG_CONF_CURSOR_H
#define TG_CONF_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "config/tg_config.h"
#include "config/tg_config_internal.h"

struct tg_cp {
    yaml_document_t *doc;
    struct tg_config *cfg; /* being filled; marks point into cfg->source_name */
    const char *basedir;   /* relative filenames are resolved here; NULL = as given */
    char *err;
    size_t errlen;
    size_t plen;
    char path[TG_CONF_PATHMAX]; /* "listeners[0].tls" while inside that node */
};

/* Position of node n (line 0 when n is NULL). */
struct tg_conf_mark tg_cp_mark(const struct tg_cp *cp, const yaml_node_t *n);
/* Report at node n under the current path; returns TG_ECONFIG. */
int tg_cp_fail(struct tg_cp *cp, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "FILE: out of memory"; returns TG_ENOMEM. */
int tg_cp_nomem(struct tg_cp *cp);

size_t tg_cp_push_key(struct tg_cp *cp, const char *key);
size_t tg_cp_push_index(struct tg_cp *cp, size_t i);
void tg_cp_pop(struct tg_cp *cp, size_t old);
/* A malloc'd copy of the current path (NULL when out of memory). */
char *tg_cp_path_dup(struct tg_cp *cp);

/* Nodes. */
yaml_node_t *tg_cp_node(struct tg_cp *cp, int idx);
const char *tg_cp_text(const yaml_node_t *n); /* a scalar's value */
/* A plain scalar spelling null: "", "~", "null", "Null", "NULL". */
bool tg_cp_is_null(const yaml_node_t *n);
/* "a mapping", "a sequence", "a scalar", "an empty value": for messages. */
const char *tg_cp_kind(const yaml_node_t *n);

/* Typed getters on a node. */
/* A string value (not null, no NUL bytes inside); *out points into the document. */
int tg_cp_scalar(struct tg_cp *cp, const yaml_node_t *n, const char *what, const char **out);
/* Replace *out (freed) with a copy of s. */
int tg_cp_strdup(struct tg_cp *cp, const char *s, char **out);
/* A non-empty string, copied into *out (the old value is freed). */
int tg_cp_string(struct tg_cp *cp, const yaml_node_t *n, char **out);
int tg_cp_u64(struct tg_cp *cp, const yaml_node_t *n, uint64_t min, uint64_t max, uint64_t *out);
int tg_cp_bool(struct tg_cp *cp, const yaml_node_t *n, bool *out);
int tg_cp_duration(struct tg_cp *cp, const yaml_node_t *n, bool allow_zero, uint64_t *out);
/* An address; the old *out is cleared on success and out->mark set to n. */
int tg_cp_addr(struct tg_cp *cp, const yaml_node_t *n, bool allow_port0, struct tg_conf_addr *out);
/* A sequence of distinct non-empty strings of at most maxlen bytes. The old
 * array is freed and the new one attached to *out / *nout before it is
 * filled, so on failure *out holds what was copied so far (free it with the
 * config). */
int tg_cp_strings(struct tg_cp *cp, const yaml_node_t *n, size_t maxlen, char ***out, size_t *nout);
/* Free n strings and the array (either may be NULL / 0). */
void tg_cp_strv_free(char **v, size_t n);

/* Mappings. */
/* n is a mapping with scalar keys, no duplicates and (when allowed is not
 * NULL) only the NULL-terminated keys listed. */
int tg_cp_check_map(struct tg_cp *cp, const yaml_node_t *n, const char *const *allowed);
/* The value of key in (checked) mapping n, or NULL; *keynode (if not NULL)
 * gets the key's node. */
const yaml_node_t *tg_cp_get(struct tg_cp *cp, const yaml_node_t *n, const char *key,
                             const yaml_node_t **keynode);
int tg_cp_require(struct tg_cp *cp, const yaml_node_t *n, const char *key, const yaml_node_t **out);
/* Optional fields of mapping map: an absent key leaves *out unchanged. */
int tg_cp_opt_u64(struct tg_cp *cp, const yaml_node_t *map, const char *key, uint64_t min,
                  uint64_t max, uint64_t *out);
int tg_cp_opt_bool(struct tg_cp *cp, const yaml_node_t *map, const char *key, bool *out);
int tg_cp_opt_duration(struct tg_cp *cp, const yaml_node_t *map, const char *key, bool allow_zero,
                       uint64_t *out);
int tg_cp_opt_string(struct tg_cp *cp, const yaml_node_t *map, const char *key, char **out);
int tg_cp_req_addr(struct tg_cp *cp, const yaml_node_t *map, const char *key, bool allow_port0,
                   struct tg_conf_addr *out);

#endif
