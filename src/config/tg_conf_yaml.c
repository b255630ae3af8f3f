/*
 * tg_conf_yaml: drives libyaml for the configuration loader.
 *
 * Two passes over the text: an event pre-pass rejects what the document API
 * would silently accept or resolve (aliases and anchors, more than one
 * document, absurd nesting) and reports syntax errors with marks; then
 * yaml_parser_load() builds the node tree the schema walks. Contract in
 * tg_conf_yaml.h.
 */
#include "config/tg_conf_yaml.h"

#include "config/tg_config.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

/* Deepest nesting the pre-pass lets through (the schema needs 7). */
#define TG_CONF_MAX_DEPTH 64

/* Format libyaml's error; returns the status to give back. */
static int tg_conf_yaml_error(const yaml_parser_t *p, const char *file, const char *buf, size_t len,
                              char *err, size_t errlen)
{
    struct tg_conf_mark m = {file, 0, 0};
    if (p->error == YAML_MEMORY_ERROR) {
        tg_conf_error(err, errlen, &m, NULL, "out of memory while parsing YAML");
        return TG_ENOMEM;
    }
    const char *problem = p->problem != NULL ? p->problem : "unknown error";
    if (p->error == YAML_READER_ERROR) {
        /* The reader reports a byte offset, not a mark. */
        size_t off = p->problem_offset < len ? p->problem_offset : len;
        m.line = 1;
        m.col = 1;
        for (size_t i = 0; i < off; i++) {
            if (buf[i] == '\n') {
                m.line++;
                m.col = 1;
            } else {
                m.col++;
            }
        }
        if (p->problem_value != -1)
            tg_conf_error(err, errlen, &m, NULL, "invalid YAML: %s (byte 0x%02X)", problem,
                          (unsigned)p->problem_value & 0xffu);
        else
            tg_conf_error(err, errlen, &m, NULL, "invalid YAML: %s", problem);
        return TG_ECONFIG;
    }
    m.line = (int)(p->problem_mark.line < INT_MAX ? p->problem_mark.line + 1 : INT_MAX);
    m.col = (int)(p->problem_mark.column < INT_MAX ? p->problem_mark.column + 1 : INT_MAX);
    if (p->context != NULL)
        tg_conf_error(err, errlen, &m, NULL, "invalid YAML: %s (%s at line %zu)", problem,
                      p->context, p->context_mark.line + 1);
    else
        tg_conf_error(err, errlen, &m, NULL, "invalid YAML: %s", problem);
    return TG_ECONFIG;
}

/* libyaml frees its buffers without wiping them; inline private keys pass
 * through them. */
static void tg_conf_yaml_parser_wipe(yaml_parser_t *p)
{
    if (p->buffer.start != NULL)
        OPENSSL_cleanse(p->buffer.start, (size_t)(p->buffer.end - p->buffer.start));
    if (p->raw_buffer.start != NULL)
        OPENSSL_cleanse(p->raw_buffer.start, (size_t)(p->raw_buffer.end - p->raw_buffer.start));
}

static void tg_conf_yaml_event_wipe(yaml_event_t *ev)
{
    if (ev->type == YAML_SCALAR_EVENT && ev->data.scalar.value != NULL)
        OPENSSL_cleanse(ev->data.scalar.value, ev->data.scalar.length);
}

static int tg_conf_yaml_mark_error(const char *file, const yaml_mark_t *ym, char *err,
                                   size_t errlen, const char *msg)
{
    struct tg_conf_mark m = {file, (int)(ym->line < INT_MAX ? ym->line + 1 : INT_MAX),
                             (int)(ym->column < INT_MAX ? ym->column + 1 : INT_MAX)};
    tg_conf_error(err, errlen, &m, NULL, "%s", msg);
    return TG_ECONFIG;
}

/*
 * The event pre-pass: the document API resolves aliases silently (and a
 * self-referencing one would make the walk loop), so refuse them here, with
 * anchors, extra documents and excessive nesting. *ndocs tells whether there
 * is a document at all.
 */
static int tg_conf_yaml_prepass(const char *file, const char *buf, size_t len, int *ndocs,
                                char *err, size_t errlen)
{
    yaml_parser_t p;
    yaml_event_t ev;
    int depth = 0, rc = TG_OK;
    bool done = false;

    *ndocs = 0;
    if (!yaml_parser_initialize(&p)) {
        struct tg_conf_mark m = {file, 0, 0};
        tg_conf_error(err, errlen, &m, NULL, "out of memory");
        return TG_ENOMEM;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
    while (!done && rc == TG_OK) {
        if (!yaml_parser_parse(&p, &ev)) {
            rc = tg_conf_yaml_error(&p, file, buf, len, err, errlen);
            break;
        }
        const char *anchor = NULL;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++*ndocs > 1)
                rc =
                    tg_conf_yaml_mark_error(file, &ev.start_mark, err, errlen,
                                            "only one YAML document is allowed in a configuration");
            break;
        case YAML_ALIAS_EVENT:
            rc = tg_conf_yaml_mark_error(file, &ev.start_mark, err, errlen,
                                         "YAML aliases ('*name') are not supported");
            break;
        case YAML_SCALAR_EVENT:
            anchor = (const char *)ev.data.scalar.anchor;
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            anchor = ev.type == YAML_SEQUENCE_START_EVENT
                         ? (const char *)ev.data.sequence_start.anchor
                         : (const char *)ev.data.mapping_start.anchor;
            if (++depth > TG_CONF_MAX_DEPTH)
                rc = tg_conf_yaml_mark_error(file, &ev.start_mark, err, errlen,
                                             "YAML nesting is too deep");
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            depth--;
            break;
        default:
            break;
        }
        if (rc == TG_OK && anchor != NULL)
            rc = tg_conf_yaml_mark_error(file, &ev.start_mark, err, errlen,
                                         "YAML anchors ('&name') are not supported");
        tg_conf_yaml_event_wipe(&ev);
        yaml_event_delete(&ev);
    }
    tg_conf_yaml_parser_wipe(&p);
    yaml_parser_delete(&p);
    return rc;
}

static void tg_conf_yaml_document_wipe(yaml_document_t *doc)
{
    for (yaml_node_t *n = doc->nodes.start; n != NULL && n < doc->nodes.top; n++) {
        if (n->type == YAML_SCALAR_NODE && n->data.scalar.value != NULL)
            OPENSSL_cleanse(n->data.scalar.value, n->data.scalar.length);
    }
}

int tg_conf_yaml_load(const char *file, const char *buf, size_t len, yaml_document_t *doc,
                      bool *loaded, char *err, size_t errlen)
{
    yaml_parser_t parser;
    int ndocs = 0;
    int rc = tg_conf_yaml_prepass(file, buf, len, &ndocs, err, errlen);

    *loaded = false;
    if (rc != TG_OK || ndocs == 0)
        return rc;
    if (!yaml_parser_initialize(&parser))
        return TG_ENOMEM;
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    if (yaml_parser_load(&parser, doc))
        *loaded = true;
    else
        rc = tg_conf_yaml_error(&parser, file, buf, len, err, errlen);
    tg_conf_yaml_parser_wipe(&parser);
    yaml_parser_delete(&parser);
    return rc;
}

void tg_conf_yaml_free(yaml_document_t *doc)
{
    tg_conf_yaml_document_wipe(doc);
    yaml_document_delete(doc);
}
