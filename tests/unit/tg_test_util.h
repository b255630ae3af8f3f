/* Helpers shared by unit tests (cmocka). */
#ifndef TG_TEST_UTIL_H
#define TG_TEST_UTIL_H

#include <stddef.h>
#include <stdarg.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

/* A fresh private temporary directory (removed at exit). Never NULL. */
const char *tg_test_tmpdir(void);
/* Write data to <tmpdir>/name and return the full path (static storage, rotates 8). */
const char *tg_test_write_file(const char *name, const char *data, size_t len);
/* Path under tests/data (TG_TEST_DATA); static storage, rotates 8. */
const char *tg_test_data(const char *relpath);
/* Generate a PEM private key ("RSA:2048", "EC:P-256", ...) and a matching
 * self-signed certificate for CN=cn; return malloc'd PEM strings. */
void tg_test_make_cert(const char *alg, const char *cn, char **cert_pem, char **key_pem);

#endif
