/* RFC 7512 PKCS#11 URIs: parsing, refusals with their messages, matching
 * against token / library / slot information, and the canonical form. */
#include <string.h>

#include "tg_test_util.h"
#include "providers/pkcs11/tg_p11_uri.h"

static void parse_ok(const char *s, struct tg_p11_uri *u)
{
    char why[256] = "";
    int rc = tg_p11_uri_parse(s, u, why, sizeof(why));
    if (rc != TG_OK)
        fail_msg("'%s': %s", s, why);
}

static void parse_err(const char *s, const char *want)
{
    struct tg_p11_uri u;
    char why[256] = "";
    assert_int_equal(tg_p11_uri_parse(s, &u, why, sizeof(why)), TG_ECONFIG);
    if (strcmp(why, want) != 0)
        fail_msg("'%s':\n got: %s\nwant: %s", s, why, want);
}

static void test_basic(void **state)
{
    (void)state;
    struct tg_p11_uri u;
    parse_ok("pkcs11:token=tlsgate;object=server-rsa", &u);
    assert_true(u.has_token);
    assert_string_equal(u.token, "tlsgate");
    assert_true(u.has_object);
    assert_string_equal(u.object, "server-rsa");
    assert_false(u.has_id);
    assert_int_equal(u.type, TG_P11_OBJ_ANY);

    parse_ok("PKCS11:model=SoftHSM%20v2;manufacturer=SoftHSM%20project;serial=c923d285853d2232;"
             "id=%01%02%ff;type=private",
             &u);
    assert_string_equal(u.model, "SoftHSM v2");
    assert_string_equal(u.manufacturer, "SoftHSM project");
    assert_string_equal(u.serial, "c923d285853d2232");
    assert_int_equal(u.id_len, 3);
    assert_memory_equal(u.id, "\x01\x02\xff", 3);
    assert_int_equal(u.type, TG_P11_OBJ_PRIVATE);
    assert_false(u.has_token);

    parse_ok("pkcs11:library-manufacturer=OpenSC%20Project;library-description=x;"
             "library-version=2.6;slot-description=slot%200;slot-manufacturer=m;slot-id=42",
             &u);
    assert_string_equal(u.lib_manufacturer, "OpenSC Project");
    assert_true(u.has_lib_version);
    assert_int_equal(u.lib_ver_major, 2);
    assert_int_equal(u.lib_ver_minor, 6);
    assert_true(u.lib_ver_has_minor);
    assert_string_equal(u.slot_description, "slot 0");
    assert_true(u.has_slot_id);
    assert_int_equal(u.slot_id, 42);

    /* The empty URI matches everything; reserved characters allowed raw. */
    parse_ok("pkcs11:", &u);
    assert_false(u.has_token || u.has_object || u.has_id);
    parse_ok("pkcs11:object=a:b@c!$'()*+,=&~.-_;token=", &u);
    assert_string_equal(u.object, "a:b@c!$'()*+,=&~.-_");
    assert_true(u.has_token);
    assert_string_equal(u.token, "");
    /* An empty id is an id of zero bytes. */
    parse_ok("pkcs11:id=", &u);
    assert_true(u.has_id);
    assert_int_equal(u.id_len, 0);
    /* Lower-case hex, a whole 32-byte label, an empty query. */
    parse_ok("pkcs11:token=abcdefghijklmnopqrstuvwxyz012345;id=%aB?", &u);
    assert_string_equal(u.token, "abcdefghijklmnopqrstuvwxyz012345");
    assert_int_equal(u.id[0], 0xab);
    parse_ok("pkcs11:library-version=3", &u);
    assert_false(u.lib_ver_has_minor);
}

static void test_errors(void **state)
{
    (void)state;
    parse_err("token=x", "expected a PKCS#11 URI starting with 'pkcs11:'");
    parse_err("pkcs1:token=x", "expected a PKCS#11 URI starting with 'pkcs11:'");
    parse_err("pkcs11:token=my token", "token: ' ' must be percent-encoded as %20");
    parse_err("pkcs11:object=a/b", "object: '/' must be percent-encoded as %2F");
    parse_err("pkcs11:object=\xc3\xa9", "object: byte 0xC3 must be percent-encoded as %C3");
    parse_err("pkcs11:object=a%2", "object: '%' must start a percent-encoded byte (%XX)");
    parse_err("pkcs11:object=a%zz", "object: '%' must start a percent-encoded byte (%XX)");
    parse_err("pkcs11:object=a%00b", "object: a NUL byte (%00) cannot be part of a label");
    parse_err("pkcs11:token=abcdefghijklmnopqrstuvwxyz0123456",
              "token: longer than the 32 bytes PKCS#11 allows");
    parse_err("pkcs11:model=12345678901234567", "model: longer than the 16 bytes PKCS#11 allows");
    parse_err("pkcs11:token=a;token=b", "attribute 'token' given twice");
    parse_err("pkcs11:type=private;type=cert", "attribute 'type' given twice");
    parse_err("pkcs11:colour=blue", "unknown attribute 'colour'");
    /* Names are echoed printable and on one line. */
    parse_err("pkcs11:to\nken=a", "unknown attribute 'to%0Aken'");
    parse_err("pkcs11:t\xe9%=a", "unknown attribute 't%E9%25'");
    parse_err("pkcs11:?p\tin=1", "query: byte 0x09 must be percent-encoded as %09");
    parse_err("pkcs11:x-vendor=1", "vendor attribute 'x-vendor' is not supported");
    parse_err("pkcs11:token", "'token': expected NAME=VALUE");
    parse_err("pkcs11:=x", "empty attribute name before '='");
    parse_err("pkcs11:token=a;;object=b", "empty attribute (';;' or a trailing ';')");
    parse_err("pkcs11:token=a;", "empty attribute (';;' or a trailing ';')");
    parse_err("pkcs11:type=secret", "type: expected public, private, cert, secret-key or data");
    parse_err("pkcs11:library-version=1.x",
              "library-version: expected MAJOR or MAJOR.MINOR (0..255 each)");
    parse_err("pkcs11:library-version=256",
              "library-version: expected MAJOR or MAJOR.MINOR (0..255 each)");
    parse_err("pkcs11:library-version=",
              "library-version: expected MAJOR or MAJOR.MINOR (0..255 each)");
    parse_err("pkcs11:slot-id=-1", "slot-id: expected a decimal number");
    parse_err("pkcs11:slot-id=99999999999999999999999", "slot-id: expected a decimal number");
    /* Secrets and modules have their own settings; a PIN is never echoed. */
    parse_err("pkcs11:token=a?pin-value=1234",
              "'pin-value' is not accepted in the key URI: give the PIN with the provider's "
              "'pin' setting (a key URI is logged, a PIN never is)");
    parse_err("pkcs11:token=a?pin-source=file:/p",
              "'pin-source' is not accepted in the key URI: give the PIN with the provider's "
              "'pin' setting (a key URI is logged, a PIN never is)");
    parse_err("pkcs11:?module-path=/usr/lib/x.so",
              "'module-path' is not accepted in the key URI: name the module with the "
              "provider's 'module' setting");
    parse_err("pkcs11:?module-name=softhsm2",
              "'module-name' is not accepted in the key URI: name the module with the "
              "provider's 'module' setting");
    parse_err("pkcs11:?x-foo=1", "query attribute 'x-foo' is not supported");
    parse_err("pkcs11:?a b=1", "query: ' ' must be percent-encoded as %20");
    parse_err("pkcs11:?novalue", "query 'novalue': expected NAME=VALUE");

    char big[TG_P11_URI_TEXT_MAX + 16];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big, "pkcs11:object=", 14);
    parse_err(big, "URI longer than 2048 bytes");
    /* An id longer than 128 bytes. */
    char id[7 + 3 + 129 * 3 + 1] = "pkcs11:id=";
    for (int i = 0; i < 129; i++)
        memcpy(id + 10 + 3 * i, "%41", 4);
    parse_err(id, "id: value too long");
    struct tg_p11_uri u;
    char why[64];
    assert_int_equal(tg_p11_uri_parse(NULL, &u, why, sizeof(why)), TG_ECONFIG);
}

static void pad(unsigned char *f, size_t n, const char *s)
{
    memset(f, ' ', n);
    memcpy(f, s, strlen(s));
}

static void test_match(void **state)
{
    (void)state;
    CK_TOKEN_INFO ti;
    memset(&ti, 0, sizeof(ti));
    pad(ti.label, sizeof(ti.label), "tlsgate");
    pad(ti.manufacturerID, sizeof(ti.manufacturerID), "SoftHSM project");
    pad(ti.model, sizeof(ti.model), "SoftHSM v2");
    pad(ti.serialNumber, sizeof(ti.serialNumber), "c923d285853d2232");
    struct tg_p11_uri u;
    parse_ok("pkcs11:token=tlsgate;object=k", &u);
    assert_true(tg_p11_uri_match_token(&u, &ti));
    parse_ok("pkcs11:token=tlsgat", &u);
    assert_false(tg_p11_uri_match_token(&u, &ti));
    parse_ok("pkcs11:token=tlsgate%20", &u); /* padding is not part of the label */
    assert_false(tg_p11_uri_match_token(&u, &ti));
    parse_ok("pkcs11:model=SoftHSM%20v2;manufacturer=SoftHSM%20project;serial=c923d285853d2232",
             &u);
    assert_true(tg_p11_uri_match_token(&u, &ti));
    parse_ok("pkcs11:serial=0000", &u);
    assert_false(tg_p11_uri_match_token(&u, &ti));
    parse_ok("pkcs11:", &u);
    assert_true(tg_p11_uri_match_token(&u, &ti));

    CK_INFO li;
    memset(&li, 0, sizeof(li));
    pad(li.manufacturerID, sizeof(li.manufacturerID), "SoftHSM");
    pad(li.libraryDescription, sizeof(li.libraryDescription), "Implementation of PKCS11");
    li.libraryVersion.major = 2;
    li.libraryVersion.minor = 6;
    parse_ok("pkcs11:library-manufacturer=SoftHSM;library-version=2.6", &u);
    assert_true(tg_p11_uri_match_library(&u, &li));
    parse_ok("pkcs11:library-version=2", &u); /* "2" is 2.0 */
    assert_false(tg_p11_uri_match_library(&u, &li));
    parse_ok("pkcs11:library-description=Implementation%20of%20PKCS11", &u);
    assert_true(tg_p11_uri_match_library(&u, &li));

    CK_SLOT_INFO si;
    memset(&si, 0, sizeof(si));
    pad(si.slotDescription, sizeof(si.slotDescription), "SoftHSM slot ID 0x1");
    pad(si.manufacturerID, sizeof(si.manufacturerID), "SoftHSM project");
    parse_ok("pkcs11:slot-id=7;slot-description=SoftHSM%20slot%20ID%200x1", &u);
    assert_true(tg_p11_uri_match_slot(&u, 7, &si));
    assert_false(tg_p11_uri_match_slot(&u, 8, &si));
    parse_ok("pkcs11:slot-manufacturer=other", &u);
    assert_false(tg_p11_uri_match_slot(&u, 7, &si));
}

static void test_format(void **state)
{
    (void)state;
    struct tg_p11_uri u;
    char buf[256];
    parse_ok("pkcs11:type=private;id=%01%ff;object=my%20key;token=tlsgate;slot-id=3;"
             "library-version=1.2",
             &u);
    assert_string_equal(tg_p11_uri_format(&u, buf, sizeof(buf)),
                        "pkcs11:library-version=1.2;slot-id=3;token=tlsgate;object=my%20key;"
                        "id=%01%FF;type=private");
    /* The canonical form parses back to the same URI. */
    struct tg_p11_uri v;
    parse_ok(buf, &v);
    assert_memory_equal(&u, &v, sizeof(u));
    /* Separators inside values are encoded. */
    parse_ok("pkcs11:object=a%3Bb%3Fc%25d%26e", &u);
    assert_string_equal(u.object, "a;b?c%d&e");
    assert_string_equal(tg_p11_uri_format(&u, buf, sizeof(buf)), "pkcs11:object=a%3Bb%3Fc%25d%26e");
    /* Truncation keeps the buffer terminated. */
    assert_string_equal(tg_p11_uri_format(&u, buf, 12), "pkcs11:obje");
    parse_ok("pkcs11:", &u);
    assert_string_equal(tg_p11_uri_format(&u, buf, sizeof(buf)), "pkcs11:");

    char field[8];
    assert_string_equal(tg_p11_field((const unsigned char *)"ab  ", 4, field, sizeof(field)), "ab");
    assert_string_equal(tg_p11_field((const unsigned char *)"abcdefghij", 10, field, sizeof(field)),
                        "abcdefg");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
