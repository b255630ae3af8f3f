#include "tg_test_util.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tg_tmpdir[256];

static void tg_test_rm_tmpdir(void)
{
    char cmd[300];
    if (tg_tmpdir[0] == '\0')
        return;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tg_tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", tg_tmpdir);
}

const char *tg_test_tmpdir(void)
{
    if (tg_tmpdir[0] == '\0') {
        const char *base = getenv("TMPDIR");
        snprintf(tg_tmpdir, sizeof(tg_tmpdir), "%s/tgtest.XXXXXX", base ? base : "/tmp");
        if (mkdtemp(tg_tmpdir) == NULL)
            abort();
        atexit(tg_test_rm_tmpdir);
    }
    return tg_tmpdir;
}

static char *tg_rot(void)
{
    static char bufs[8][512];
    static int i;
    return bufs[i++ % 8];
}

const char *tg_test_write_file(const char *name, const char *data, size_t len)
{
    char *path = tg_rot();
    snprintf(path, 512, "%s/%s", tg_test_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len)
        abort();
    fclose(f);
    return path;
}

const char *tg_test_data(const char *relpath)
{
    char *path = tg_rot();
    const char *base = getenv("TG_TEST_DATA");
    snprintf(path, 512, "%s/%s", base ? base : "tests/data", relpath);
    return path;
}

static char *tg_bio_to_str(BIO *b)
{
    char *p;
    long n = BIO_get_mem_data(b, &p);
    char *s = malloc((size_t)n + 1);
    if (s == NULL)
        abort();
    memcpy(s, p, (size_t)n);
    s[n] = '\0';
    return s;
}

void tg_test_make_cert(const char *alg, const char *cn, char **cert_pem, char **key_pem)
{
    EVP_PKEY *pk = NULL;
    if (strncmp(alg, "RSA:", 4) == 0)
        pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)strtoul(alg + 4, NULL, 10));
    else if (strncmp(alg, "EC:", 3) == 0)
        pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", alg + 3);
    if (pk == NULL)
        abort();
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365);
    X509_set_pubkey(x, pk);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, nm);
    if (X509_sign(x, pk, EVP_sha256()) <= 0)
        abort();
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    *cert_pem = tg_bio_to_str(b);
    BIO_free(b);
    b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL);
    *key_pem = tg_bio_to_str(b);
    BIO_free(b);
    X509_free(x);
    EVP_PKEY_free(pk);
}
