/*
 * tg_wipe: inside a section, what OpenSSL frees or moves is wiped first;
 * sections nest and are per thread. Checked by reading the process's own
 * heap for a pattern (tg_test_memory_count).
 */
#include "tg_test_util.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <string.h>

#include "core/tg_wipe.h"

/* A pattern that occurs nowhere else: random, kept on the stack. */
static void pattern(unsigned char p[48])
{
    assert_int_equal(RAND_bytes(p, 48), 1);
}

static void test_installed(void **state)
{
    (void)state;
    assert_true(tg_wipe_installed());
    assert_int_equal(tg_wipe_install(), TG_OK); /* again: nothing to do */
}

static void test_free_wiped(void **state)
{
    (void)state;
    unsigned char p[48];
    pattern(p);
    tg_wipe_begin();
    tg_wipe_begin(); /* nested */
    unsigned char *b = OPENSSL_malloc(1000);
    assert_non_null(b);
    memcpy(b + 100, p, sizeof(p));
    assert_int_equal(tg_test_memory_count(p, sizeof(p)), 1);
    tg_wipe_end();
    OPENSSL_free(b); /* still inside the outer section */
    tg_wipe_end();
    assert_int_equal(tg_test_memory_count(p, sizeof(p)), 0);
}

static void test_realloc_moves_wiped(void **state)
{
    (void)state;
    unsigned char p[48];
    pattern(p);
    tg_wipe_begin();
    unsigned char *b = OPENSSL_malloc(64);
    assert_non_null(b);
    memcpy(b, p, sizeof(p));
    /* Much bigger: the block moves; the old place must not keep a copy. */
    b = OPENSSL_realloc(b, 1 << 20);
    assert_non_null(b);
    assert_memory_equal(b, p, sizeof(p));
    assert_int_equal(tg_test_memory_count(p, sizeof(p)), 1);
    b = OPENSSL_realloc(b, 0); /* frees */
    assert_null(b);
    assert_int_equal(tg_test_memory_count(p, sizeof(p)), 0);
    b = OPENSSL_realloc(NULL, 32); /* allocates */
    assert_non_null(b);
    OPENSSL_free(b);
    tg_wipe_end();
    tg_wipe_end(); /* unbalanced: harmless */
}

static void *other_thread(void *arg)
{
    /* No section here: this thread's frees are not this test's business,
     * but its sections must not leak into the main thread's. */
    (void)arg;
    tg_wipe_begin();
    void *b = OPENSSL_malloc(10);
    OPENSSL_free(b);
    tg_wipe_end();
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    pthread_t t;
    tg_wipe_begin();
    assert_int_equal(pthread_create(&t, NULL, other_thread, NULL), 0);
    pthread_join(t, NULL);
    unsigned char p[48];
    pattern(p);
    unsigned char *b = OPENSSL_malloc(256);
    assert_non_null(b);
    memcpy(b + 64, p, sizeof(p));
    OPENSSL_free(b);
    assert_int_equal(tg_test_memory_count(p, sizeof(p)), 0);
    tg_wipe_end();
}

int main(void)
{
    if (tg_wipe_install() != TG_OK) {
        fprintf(stderr, "tg_wipe_install failed: OpenSSL allocated already\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_installed),
        cmocka_unit_test(test_free_wiped),
        cmocka_unit_test(test_realloc_moves_wiped),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
