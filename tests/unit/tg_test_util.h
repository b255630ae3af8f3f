/* Helpers shared by unit tests (cmocka). */
#ifndef TG_TEST_UTIL_H
#define TG_TEST_UTIL_H

#include <stddef.h>
#include <stdarg.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>

/* A fresh private temporary directory (removed at exit). Never NULL. */
const char *tg_test_tmpdir(void);
/* Write data to <tmpdir>/name and return the full path (static storage, rotates 8). */
const char *tg_test_write_file(const char *name, const char *data, size_t len);
/* Path under tests/data (TG_TEST_DATA); static storage, rotates 8. */
const char *tg_test_data(const char *relpath);
/* Generate a PEM private key ("RSA:2048", "EC:P-256", ...) and a matching
 * self-signed certificate for CN=cn; return malloc'd PEM strings. */
void tg_test_make_cert(const char *alg, const char *cn, char **cert_pem, char **key_pem);

/* Register the key providers a test uses (the program's table lives in
 * src/main.c; tests make their own). Aborts on a bad table. Include
 * keyprov/tg_keyprov.h and the providers' headers first. */
#define TG_TEST_REGISTER_PROVIDERS(...)                                                            \
    do {                                                                                           \
        static const struct tg_keyprov_ops *const tg_test_provs_[] = {__VA_ARGS__};                \
        char tg_test_why_[256];                                                                    \
        if (tg_keyprov_register(tg_test_provs_,                                                    \
                                sizeof(tg_test_provs_) / sizeof(tg_test_provs_[0]), tg_test_why_,  \
                                sizeof(tg_test_why_)) != 0) {                                      \
            fprintf(stderr, "registering providers: %s\n", tg_test_why_);                          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* An RSA key (default provider) from fresh primes of pbits and qbits bits
 * (top two bits set, so n has exactly pbits + qbits bits) and public exponent
 * e. Lets tests make keys OpenSSL's generator will not: odd sizes (2049
 * bits), unbalanced primes, e = 3. NULL on failure. */
EVP_PKEY *tg_test_rsa_key(int pbits, int qbits, unsigned long e);

#endif
