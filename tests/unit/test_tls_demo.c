/*
 * Unit tests for src/tls/tg_tls_demo.c: the embedded default's demo
 * certificate (what is created, with which modes, reuse, repair of an
 * interrupted first run, concurrent first runs, errors), and that
 * tg_config_load_default serves what it created.
 */
#include "tg_test_util.h"

#include "config/tg_config.h"
#include "tls/tg_tls_demo.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[512];

static int group_setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "%s", tg_test_tmpdir());
    return 0;
}

/* Reads a whole small file into a malloc'd string. */
static char *slurp(const char *dir, const char *name)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, f);
    fclose(f);
    assert_true(n > 0);
    return buf;
}

/* The pair in dir is an RSA-2048 key and a self-signed localhost
 * certificate that belong together. */
static void check_demo_cert(const char *dir)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/demo-cert.pem", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    snprintf(path, sizeof(path), "%s/demo-key.pem", dir);
    f = fopen(path, "r");
    assert_non_null(f);
    EVP_PKEY *pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(pk);
    assert_int_equal(X509_check_private_key(x, pk), 1);
    assert_true(EVP_PKEY_is_a(pk, "RSA"));
    assert_int_equal(EVP_PKEY_get_bits(pk), 2048);
    char cn[64];
    assert_int_equal(
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn)), 9);
    assert_string_equal(cn, "localhost");
    assert_int_equal(X509_check_host(x, "localhost", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(x, "127.0.0.1", 0), 1);
    assert_int_equal(X509_get_signature_nid(x), NID_sha256WithRSAEncryption);
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)),
                     1);
    assert_true(days >= 365 && days <= 366);
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(x)), 0);
    assert_int_equal(X509_verify(x, pk), 1);
    EVP_PKEY_free(pk);
    X509_free(x);
}

static void test_demo_first_run(void **state)
{
    (void)state;
    char dir[600], path[700], err[TG_CONFIG_ERRLEN] = "";
    struct stat st, st2;
    snprintf(dir, sizeof(dir), "%s/state/a/b", g_dir);
    int rc = tg_tls_demo_cert_ensure(dir, err, sizeof(err));
    if (rc != TG_OK)
        print_error("%s\n", err);
    assert_int_equal(rc, TG_OK);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(path, sizeof(path), "%s/state", g_dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(path, sizeof(path), "%s/demo-key.pem", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    check_demo_cert(dir);
    char *key1 = slurp(dir, "demo-key.pem");

    /* The embedded default serves exactly these files. */
    struct tg_config *cfg = NULL;
    assert_int_equal(tg_config_load_default(dir, &cfg, err, sizeof(err)), TG_OK);
    assert_string_equal(cfg->listeners[0].tls.certs[0].private_key.data, key1);
    tg_config_free(cfg);

    /* Second call: reuses the same files. */
    assert_int_equal(tg_tls_demo_cert_ensure(dir, err, sizeof(err)), TG_OK);
    assert_int_equal(stat(path, &st2), 0);
    assert_true(st.st_ino == st2.st_ino);
    char *key2 = slurp(dir, "demo-key.pem");
    assert_string_equal(key2, key1);
    free(key2);

    /* A lone key (interrupted generation) is replaced by a fresh pair. */
    snprintf(path, sizeof(path), "%s/demo-cert.pem", dir);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(tg_tls_demo_cert_ensure(dir, err, sizeof(err)), TG_OK);
    key2 = slurp(dir, "demo-key.pem");
    assert_string_not_equal(key2, key1);
    check_demo_cert(dir);
    free(key2);
    free(key1);

    /* No temporary files left behind. */
    char cmd[800];
    snprintf(cmd, sizeof(cmd),
             "test -z \"$(ls -A '%s' | grep -v -e '^demo-cert.pem$' -e "
             "'^demo-key.pem$' -e '^.demo.lock$')\"",
             dir);
    assert_int_equal(system(cmd), 0);
}

/* Processes starting at once on an empty state directory: one of them
 * creates the pair, the others wait on the lock and find it, so every one
 * comes back with the same key, which is the one left on disk (without the
 * lock each would generate its own, and a key from one and a certificate
 * from another could be left). */
static void test_demo_concurrent_first_run(void **state)
{
    (void)state;
    enum { NPROC = 4 };
    char dir[600];
    pid_t pids[NPROC];
    int fds[NPROC][2];
    snprintf(dir, sizeof(dir), "%s/concurrent", g_dir);
    for (int i = 0; i < NPROC; i++) {
        assert_int_equal(pipe(fds[i]), 0);
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            char err[TG_CONFIG_ERRLEN] = "";
            int rc = tg_tls_demo_cert_ensure(dir, err, sizeof(err));
            if (rc != TG_OK) {
                fprintf(stderr, "child %d: %s\n", i, err);
            } else {
                /* The key this process would serve (a PEM key fits in
                 * the pipe's buffer). */
                char *key = slurp(dir, "demo-key.pem");
                size_t len = strlen(key);
                if (write(fds[i][1], key, len) != (ssize_t)len)
                    rc = TG_EIO;
                free(key);
            }
            /* _exit: the parent owns the temporary directory's cleanup. */
            _exit(rc == TG_OK ? 0 : 1);
        }
        close(fds[i][1]);
    }
    for (int i = 0; i < NPROC; i++) {
        int status = 0;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    check_demo_cert(dir);
    char *final = slurp(dir, "demo-key.pem");
    for (int i = 0; i < NPROC; i++) {
        char seen[65536];
        size_t len = 0;
        ssize_t n;
        while ((n = read(fds[i][0], seen + len, sizeof(seen) - 1 - len)) > 0)
            len += (size_t)n;
        close(fds[i][0]);
        seen[len] = '\0';
        assert_string_equal(seen, final);
    }
    free(final);
}

static void test_demo_errors(void **state)
{
    (void)state;
    char dir[600], err[TG_CONFIG_ERRLEN], want[800];
    struct stat st;

    /* Quotes and backslashes in the name: created, then loaded. */
    snprintf(dir, sizeof(dir), "%s/st\"a\\te: #x", g_dir);
    assert_int_equal(tg_tls_demo_cert_ensure(dir, err, sizeof(err)), TG_OK);
    struct tg_config *cfg = NULL;
    assert_int_equal(tg_config_load_default(dir, &cfg, err, sizeof(err)), TG_OK);
    assert_string_equal(cfg->state_dir, dir);
    tg_config_free(cfg);

    /* A path through a regular file. */
    char file[600];
    const char *f = tg_test_write_file("plain-file", "x", 1);
    snprintf(file, sizeof(file), "%s/x", f);
    assert_int_not_equal(tg_tls_demo_cert_ensure(file, err, sizeof(err)), TG_OK);
    snprintf(want, sizeof(want), "%s: cannot create directory: Not a directory", file);
    assert_string_equal(err, want);

    /* Names the embedded default refuses: same lines, nothing created. */
    assert_int_equal(tg_tls_demo_cert_ensure("", err, sizeof(err)), TG_EINVAL);
    assert_string_equal(err, "<embedded default>: no state directory given");
    assert_int_equal(tg_tls_demo_cert_ensure(NULL, NULL, 0), TG_EINVAL);
    snprintf(dir, sizeof(dir), "%s/a\nb", g_dir);
    assert_int_equal(tg_tls_demo_cert_ensure(dir, err, sizeof(err)), TG_ECONFIG);
    assert_string_equal(err,
                        "<embedded default>: the state directory name contains control characters");
    assert_int_not_equal(stat(dir, &st), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_demo_first_run),
        cmocka_unit_test(test_demo_concurrent_first_run),
        cmocka_unit_test(test_demo_errors),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
