/*
 * tg_conf_yaml: configuration text -> libyaml document, with the YAML-level
 * checks and errors (syntax with FILE:LINE:COL, aliases, anchors, several
 * documents, nesting depth).
 *
 * Secrets: inline private keys pass through libyaml's buffers, events and
 * nodes, which libyaml frees without wiping; everything this file lets go of
 * is wiped first, and tg_conf_yaml_free wipes the document.
 *
 * Threading: no global state; one document on one thread.
 */
#ifndef TG_CONF_YAML_H
#define TG_CONF_YAML_H

#include <stdbool.h>
#include <stddef.h>
#include <yaml.h>

/*
 * Parse buf (len bytes; need not be NUL-terminated) into *doc. file names
 * the source in messages. Returns TG_OK with *loaded true when *doc holds a
 * document (release it with tg_conf_yaml_free), TG_OK with *loaded false
 * when the stream holds no document at all (only blanks or comments), or a
 * negative tg_err with one line in err (*loaded false). TG_ENOMEM may come
 * without a message.
 */
int tg_conf_yaml_load(const char *file, const char *buf, size_t len, yaml_document_t *doc,
                      bool *loaded, char *err, size_t errlen);

/* Wipe every scalar of doc, then delete it. */
void tg_conf_yaml_free(yaml_document_t *doc);

#endif
