/* Helpers shared by unit tests (cmocka). */
#ifndef TG_TEST_UTIL_H
#define TG_TEST_UTIL_H

#include <stddef.h>
#include <stdarg.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Text checks that print the whole text on failure (at the caller's line);
 * a NULL text counts as missing everything. */
#define assert_has(hay, needle)                                                                    \
    do {                                                                                           \
        const char *tg_hay_ = (hay);                                                               \
        if (tg_hay_ == NULL || strstr(tg_hay_, (needle)) == NULL)                                  \
            fail_msg("missing '%s' in:\n%s", (needle), tg_hay_ ? tg_hay_ : "(null)");              \
    } while (0)
#define assert_lacks(hay, needle)                                                                  \
    do {                                                                                           \
        const char *tg_hay_ = (hay);                                                               \
        if (tg_hay_ != NULL && strstr(tg_hay_, (needle)) != NULL)                                  \
            fail_msg("unexpected '%s' in:\n%s", (needle), tg_hay_);                                \
    } while (0)

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

/* How many times needle (len bytes, 1..256) occurs in the process's
 * anonymous writable memory: the heap, mmap'd blocks, freed blocks not yet
 * reused (read through /proc/self/mem, so sanitizers do not object; thread
 * stacks, the main stack and mappings over 1 GiB, i.e. sanitizer shadow, are
 * skipped). Allocates nothing. For tests that a secret left no copy. */
size_t tg_test_memory_count(const void *needle, size_t len);

/* A fresh RSA-2048 private key as PKCS#8 PEM into pem (cap bytes, e.g. on
 * the caller's stack), made inside a tg_wipe section so that OpenSSL's
 * temporary copies are wiped (the test must have called tg_wipe_install).
 * With cert_pem, also a self-signed certificate for CN=w.test (malloc'd).
 * Returns the PEM length. */
size_t tg_test_key_pem_nocopy(char *pem, size_t cap, char **cert_pem);
/* From such a PEM: a 64-character base64 line of the key body (line, 65
 * bytes with the NUL) and 32 bytes of the DER it decodes to (der), both
 * from the middle of the key, i.e. private material. */
void tg_test_key_needles(const char *pem, char line[65], unsigned char der[32]);

/* A connected TCP pair on loopback: *cfd the client (blocking, TCP_NODELAY:
 * each send leaves at once), *sfd the accepted side, non-blocking when
 * sfd_nonblock. */
void tg_test_tcp_pair(int *cfd, int *sfd, bool sfd_nonblock);

#endif
