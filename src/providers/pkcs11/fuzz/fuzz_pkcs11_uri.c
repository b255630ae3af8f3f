/*
 * libFuzzer target: the RFC 7512 PKCS#11 URI parser of the pkcs11 provider
 * (src/providers/pkcs11/tg_p11_uri.c), which reads the `key` setting of the
 * configuration. Invariants: no crash or sanitizer report; a refusal is
 * TG_ECONFIG with a non-empty one-line reason; an accepted URI prints in
 * canonical form, and that text parses back to the same URI and prints the
 * same again (format and parse agree); matching against arbitrary token,
 * library and slot information never reads out of bounds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "providers/pkcs11/tg_p11_uri.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > TG_P11_URI_TEXT_MAX + 64)
        return 0;
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    struct tg_p11_uri u, v;
    char why[256] = "";
    int rc = tg_p11_uri_parse(s, &u, why, sizeof(why));
    if (rc != TG_OK) {
        if (rc != TG_ECONFIG || why[0] == '\0' || strchr(why, '\n') != NULL)
            abort();
        free(s);
        return 0;
    }
    /* Every byte of every value may need %XX: 3x plus the names. */
    static char text[4 * TG_P11_URI_TEXT_MAX], again[4 * TG_P11_URI_TEXT_MAX];
    tg_p11_uri_format(&u, text, sizeof(text));
    if (tg_p11_uri_parse(text, &v, why, sizeof(why)) != TG_OK)
        abort();
    if (memcmp(&u, &v, sizeof(u)) != 0)
        abort();
    tg_p11_uri_format(&v, again, sizeof(again));
    if (strcmp(text, again) != 0)
        abort();

    CK_TOKEN_INFO ti;
    CK_INFO li;
    CK_SLOT_INFO si;
    memset(&ti, 0, sizeof(ti));
    memset(&li, 0, sizeof(li));
    memset(&si, 0, sizeof(si));
    size_t n = size < sizeof(ti.label) ? size : sizeof(ti.label);
    memcpy(ti.label, data, n);
    memcpy(ti.serialNumber, data, size < sizeof(ti.serialNumber) ? size : sizeof(ti.serialNumber));
    memcpy(li.manufacturerID, data, n);
    memcpy(si.slotDescription, data,
           size < sizeof(si.slotDescription) ? size : sizeof(si.slotDescription));
    (void)tg_p11_uri_match_token(&u, &ti);
    (void)tg_p11_uri_match_library(&u, &li);
    (void)tg_p11_uri_match_slot(&u, (CK_SLOT_ID)size, &si);
    free(s);
    return 0;
}
