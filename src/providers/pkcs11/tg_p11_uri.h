/*
 * tg_p11_uri: PKCS#11 URIs (RFC 7512) naming a token and a key object.
 *
 *   pkcs11:token=tlsgate;object=server-rsa
 *   pkcs11:model=SoftHSM%20v2;manufacturer=SoftHSM%20project;id=%01%02;type=private
 *
 * Path attributes (each at most once; values percent-decoded):
 *   token, manufacturer, serial, model           match CK_TOKEN_INFO
 *   library-manufacturer, library-description,
 *   library-version ("M" or "M.N")               match CK_INFO
 *   slot-description, slot-manufacturer,
 *   slot-id (decimal)                            match the slot
 *   object (CKA_LABEL), id (CKA_ID, any bytes),
 *   type (public, private, cert, secret-key, data)
 * An absent attribute matches anything. Text attributes longer than their
 * PKCS#11 field (token label 32 bytes, model 16, ...) could never match and
 * are refused, as are NUL bytes in them.
 *
 * Refused on purpose, with a message saying what to use instead:
 *   - the query attributes pin-value and pin-source: the PIN has one place,
 *     the provider's `pin` setting, and a key URI (which tlsgate logs)
 *     never carries a secret;
 *   - module-name and module-path: the module is the provider's `module`;
 *   - vendor attributes (x-...), unknown attributes, empty attribute names.
 * Characters outside RFC 7512's pchar set must be percent-encoded (a space
 * is %20); the message names the character and its encoding.
 *
 * Pure functions, no global state: any thread.
 */
#ifndef TG_P11_URI_H
#define TG_P11_URI_H

#include <stdbool.h>
#include <stddef.h>

#include "core/tg_err.h"
#include "providers/pkcs11/tg_p11.h"

/* Longest URI text accepted, and longest decoded object label / id. */
#define TG_P11_URI_TEXT_MAX  2048
#define TG_P11_URI_LABEL_MAX 255
#define TG_P11_URI_ID_MAX    128

enum tg_p11_obj_type {
    TG_P11_OBJ_ANY = 0,
    TG_P11_OBJ_PUBLIC,
    TG_P11_OBJ_PRIVATE,
    TG_P11_OBJ_CERT,
    TG_P11_OBJ_SECRET_KEY,
    TG_P11_OBJ_DATA,
};

struct tg_p11_uri {
    /* token (CK_TOKEN_INFO) */
    bool has_token, has_manufacturer, has_serial, has_model;
    char token[33], manufacturer[33], serial[17], model[17];
    /* library (CK_INFO) */
    bool has_lib_manufacturer, has_lib_description, has_lib_version;
    char lib_manufacturer[33], lib_description[33];
    unsigned lib_ver_major, lib_ver_minor; /* minor only when lib_ver_has_minor */
    bool lib_ver_has_minor;
    /* slot (CK_SLOT_INFO and its id) */
    bool has_slot_description, has_slot_manufacturer, has_slot_id;
    char slot_description[65], slot_manufacturer[33];
    unsigned long slot_id;
    /* object */
    bool has_object, has_id;
    char object[TG_P11_URI_LABEL_MAX + 1]; /* CKA_LABEL, NUL-terminated */
    unsigned char id[TG_P11_URI_ID_MAX];   /* CKA_ID */
    size_t id_len;
    enum tg_p11_obj_type type;
};

/*
 * Parse s into *out (zeroed first). Returns TG_OK, or TG_ECONFIG with a
 * one-line reason in why (never quoting a secret: pin-value is refused
 * without echoing it).
 */
int tg_p11_uri_parse(const char *s, struct tg_p11_uri *out, char *why, size_t whylen) TG_MUST_CHECK;

/* Whether the URI's token / library / slot attributes match. */
bool tg_p11_uri_match_token(const struct tg_p11_uri *u, const CK_TOKEN_INFO *ti);
bool tg_p11_uri_match_library(const struct tg_p11_uri *u, const CK_INFO *li);
bool tg_p11_uri_match_slot(const struct tg_p11_uri *u, CK_SLOT_ID id, const CK_SLOT_INFO *si);

/*
 * Canonical text of the URI (attributes in RFC order, values percent-encoded
 * where needed), for logs and error messages. Truncated to len - 1 bytes
 * (always NUL-terminated). Returns buf.
 */
const char *tg_p11_uri_format(const struct tg_p11_uri *u, char *buf, size_t len);

/*
 * Append ";name=value" (or "name=value" when *off == 0 after "pkcs11:")
 * with value percent-encoded as RFC 7512 requires, at buf + *off; advances
 * *off, never past len - 1 (truncation keeps buf NUL-terminated).
 */
void tg_p11_uri_append(char *buf, size_t len, size_t *off, const char *name,
                       const unsigned char *value, size_t vlen);

/* A blank-padded PKCS#11 text field (CK_TOKEN_INFO.label, ...) as a C
 * string without the padding, into out (cap >= n + 1). Returns out. */
char *tg_p11_field(const unsigned char *field, size_t n, char *out, size_t cap);

#endif
