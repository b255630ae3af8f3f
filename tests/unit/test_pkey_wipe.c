/*
 * Loading a private key leaves no copy of it in freed memory
 * (tg_pkey_load_pem inside a tg_wipe section). OpenSSL 3.0's PEM and DER
 * decoders copy the key into blocks they free without wiping; with the
 * allocation functions of tg_wipe installed, those blocks are wiped.
 *
 * The check reads the process's own heap (tg_test_memory_count) for a line
 * of the key's base64 text and 32 bytes of its DER, both from the middle of
 * the key (private material). The key itself lives only on this test's stack.
 */
#include "tg_test_util.h"

#include <openssl/crypto.h>
#include <string.h>

#include "core/tg_wipe.h"
#include "keyprov/tg_pkey.h"

/* The scanner finds what is there: a deliberate heap copy is seen once. */
static void test_scanner_sees_copies(void **state)
{
    (void)state;
    char pem[4096], line[65];
    unsigned char der[32];
    tg_test_key_pem_nocopy(pem, sizeof(pem), NULL);
    tg_test_key_needles(pem, line, der);
    assert_int_equal(tg_test_memory_count(der, sizeof(der)), 0);
    unsigned char *copy = malloc(sizeof(der));
    assert_non_null(copy);
    memcpy(copy, der, sizeof(der));
    assert_int_equal(tg_test_memory_count(der, sizeof(der)), 1);
    OPENSSL_cleanse(copy, sizeof(der));
    free(copy);
    assert_int_equal(tg_test_memory_count(der, sizeof(der)), 0);
    OPENSSL_cleanse(pem, sizeof(pem));
}

static void test_load_leaves_nothing(void **state)
{
    (void)state;
    char pem[4096], line[65];
    unsigned char der[32];
    size_t len = tg_test_key_pem_nocopy(pem, sizeof(pem), NULL);
    tg_test_key_needles(pem, line, der);
    assert_int_equal(tg_test_memory_count(line, 64), 0);
    assert_int_equal(tg_test_memory_count(der, sizeof(der)), 0);

    struct tg_pkey *k = NULL;
    char why[256];
    assert_int_equal(tg_pkey_load_pem(pem, len, &k, why, sizeof(why)), TG_OK);
    assert_int_equal(k->type, TG_PKEY_RSA);
    /* The key is loaded (its numbers are held as BIGNUMs, not as DER):
     * no copy of its text or its encoding is left anywhere. */
    assert_int_equal(tg_test_memory_count(line, 64), 0);
    assert_int_equal(tg_test_memory_count(der, sizeof(der)), 0);
    tg_pkey_unref(k);
    assert_int_equal(tg_test_memory_count(der, sizeof(der)), 0);

    /* A key that fails to load (cut short) leaves nothing either. */
    assert_int_not_equal(tg_pkey_load_pem(pem, len / 2, &k, why, sizeof(why)), TG_OK);
    assert_null(k);
    assert_int_equal(tg_test_memory_count(line, 64), 0);
    assert_int_equal(tg_test_memory_count(der, sizeof(der)), 0);
    OPENSSL_cleanse(pem, sizeof(pem));
}

int main(void)
{
    /* First, before OpenSSL allocates anything. */
    if (tg_wipe_install() != TG_OK) {
        fprintf(stderr, "tg_wipe_install failed: OpenSSL allocated already\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scanner_sees_copies),
        cmocka_unit_test(test_load_leaves_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
