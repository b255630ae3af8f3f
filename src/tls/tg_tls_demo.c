/*
 * tg_tls_demo: the embedded default's self-signed demo certificate.
 * Contract in tg_tls_demo.h.
 */
#include "tls/tg_tls_demo.h"

#include "config/tg_config.h"
#include "core/tg_wipe.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define TG_TLS_DEMO_DAYS 365

static int tg_tls_demo_fail_errno(char *err, size_t errlen, const char *file, const char *what,
                                  int e)
{
    struct tg_conf_mark m = {file, 0, 0};
    tg_conf_error(err, errlen, &m, NULL, "%s: %s", what, strerror(e));
    return TG_EIO;
}

static int tg_tls_demo_fail_ssl(char *err, size_t errlen, const char *file, const char *what)
{
    char buf[256];
    struct tg_conf_mark m = {file, 0, 0};
    unsigned long e = ERR_peek_last_error();
    if (e != 0)
        ERR_error_string_n(e, buf, sizeof(buf));
    else
        snprintf(buf, sizeof(buf), "unknown error");
    ERR_clear_error();
    tg_conf_error(err, errlen, &m, NULL, "%s: %s", what, buf);
    return TG_ECRYPTO;
}

/* mkdir -p; directories we create are 0700 (they will hold a private key). */
static int tg_tls_demo_mkdir_p(const char *dir, char *err, size_t errlen)
{
    char *p = strdup(dir);
    int rc = TG_OK;
    if (p == NULL)
        return TG_ENOMEM;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char saved = *s;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            rc = tg_tls_demo_fail_errno(err, errlen, p, "cannot create directory", errno);
            break;
        }
        *s = saved;
        if (saved == '\0')
            break;
    }
    if (rc == TG_OK) {
        struct stat st;
        if (stat(dir, &st) != 0)
            rc = tg_tls_demo_fail_errno(err, errlen, dir, "cannot create directory", errno);
        else if (!S_ISDIR(st.st_mode))
            rc = tg_tls_demo_fail_errno(err, errlen, dir, "cannot create directory", ENOTDIR);
    }
    free(p);
    return rc;
}

static char *tg_tls_demo_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *s = malloc(n);
    if (s != NULL)
        snprintf(s, n, "%s/%s", dir, name);
    return s;
}

/* Write data to dir/name through a temporary file and rename(), so a reader
 * never sees a half-written key and a crash leaves no partial file. */
static int tg_tls_demo_write_atomic(const char *dir, const char *name, const char *data, size_t len,
                                    mode_t mode, char *err, size_t errlen)
{
    char *final = tg_tls_demo_join(dir, name);
    char *tmp = NULL;
    int fd = -1, rc = TG_OK;
    size_t tl;

    if (final == NULL) {
        rc = TG_ENOMEM;
        goto out;
    }
    tl = strlen(dir) + strlen(name) + 16;
    tmp = malloc(tl);
    if (tmp == NULL) {
        rc = TG_ENOMEM;
        goto out;
    }
    snprintf(tmp, tl, "%s/.%s.XXXXXX", dir, name);
    fd = mkstemp(tmp); /* created 0600 */
    if (fd < 0) {
        rc = tg_tls_demo_fail_errno(err, errlen, final, "cannot write", errno);
        free(tmp);
        tmp = NULL;
        goto out;
    }
    if (fchmod(fd, mode) != 0) {
        rc = tg_tls_demo_fail_errno(err, errlen, final, "cannot write", errno);
        goto out;
    }
    for (size_t off = 0; off < len;) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = tg_tls_demo_fail_errno(err, errlen, final, "cannot write", n < 0 ? errno : EIO);
            goto out;
        }
        off += (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        fd = -1;
        rc = tg_tls_demo_fail_errno(err, errlen, final, "cannot write", errno);
        goto out;
    }
    fd = -1;
    if (rename(tmp, final) != 0) {
        rc = tg_tls_demo_fail_errno(err, errlen, final, "cannot write", errno);
        goto out;
    }
    free(tmp);
    tmp = NULL;
out:
    if (fd >= 0)
        close(fd);
    if (tmp != NULL) {
        unlink(tmp);
        free(tmp);
    }
    free(final);
    return rc;
}

static int tg_tls_demo_add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL)
        return 0;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* PEM text of a BIO; the BIO stays the owner. */
static const char *tg_tls_demo_bio_text(BIO *b, size_t *len)
{
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    *len = n > 0 ? (size_t)n : 0;
    return p;
}

/* Generate the RSA-2048 key and a self-signed certificate for localhost and
 * write both (key first: a crash in between leaves a lone key, which the next
 * start treats as "missing" and replaces). */
static int tg_tls_demo_generate(const char *dir, char *err, size_t errlen)
{
    EVP_PKEY *pk = NULL;
    X509 *x = NULL;
    BIO *kb = NULL, *cb = NULL;
    uint64_t serial = 0;
    const char *text;
    size_t len;
    int rc = TG_OK;

    pk = EVP_RSA_gen(2048);
    if (pk == NULL) {
        rc = tg_tls_demo_fail_ssl(err, errlen, dir, "cannot generate the demo key");
        goto out;
    }
    x = X509_new();
    if (x == NULL || RAND_bytes((unsigned char *)&serial, sizeof(serial)) != 1) {
        rc = tg_tls_demo_fail_ssl(err, errlen, dir, "cannot generate the demo certificate");
        goto out;
    }
    /* A positive, non-zero 63-bit serial. */
    serial = (serial >> 1) | 1;
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_set_version(x, 2) || !ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial) ||
        /* A few minutes back, for clients whose clock is slightly behind. */
        X509_gmtime_adj(X509_getm_notBefore(x), -300) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), (long)TG_TLS_DEMO_DAYS * 86400) == NULL ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost",
                                    -1, -1, 0) ||
        !X509_set_issuer_name(x, name) || !X509_set_pubkey(x, pk) ||
        !tg_tls_demo_add_ext(x, NID_basic_constraints, "critical,CA:FALSE") ||
        !tg_tls_demo_add_ext(x, NID_key_usage, "critical,digitalSignature,keyEncipherment") ||
        !tg_tls_demo_add_ext(x, NID_ext_key_usage, "serverAuth") ||
        !tg_tls_demo_add_ext(x, NID_subject_key_identifier, "hash") ||
        !tg_tls_demo_add_ext(x, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1") ||
        X509_sign(x, pk, EVP_sha256()) <= 0) {
        rc = tg_tls_demo_fail_ssl(err, errlen, dir, "cannot generate the demo certificate");
        goto out;
    }

    /* Secure-memory BIO: its buffer is wiped when freed. */
    kb = BIO_new(BIO_s_secmem());
    cb = BIO_new(BIO_s_mem());
    if (kb == NULL || cb == NULL || !PEM_write_bio_PrivateKey(kb, pk, NULL, NULL, 0, NULL, NULL) ||
        !PEM_write_bio_X509(cb, x)) {
        rc = tg_tls_demo_fail_ssl(err, errlen, dir, "cannot encode the demo certificate");
        goto out;
    }
    text = tg_tls_demo_bio_text(kb, &len);
    rc = tg_tls_demo_write_atomic(dir, TG_CONFIG_DEMO_KEY, text, len, 0600, err, errlen);
    if (rc != TG_OK)
        goto out;
    text = tg_tls_demo_bio_text(cb, &len);
    rc = tg_tls_demo_write_atomic(dir, TG_CONFIG_DEMO_CERT, text, len, 0644, err, errlen);
out:
    BIO_free(kb);
    BIO_free(cb);
    X509_free(x);
    EVP_PKEY_free(pk);
    return rc;
}

static bool tg_tls_demo_is_file(const char *dir, const char *name)
{
    char *p = tg_tls_demo_join(dir, name);
    struct stat st;
    bool ok = p != NULL && stat(p, &st) == 0 && S_ISREG(st.st_mode);
    free(p);
    return ok;
}

/* Create the demo certificate unless both files exist. A lock file keeps two
 * processes starting at once from writing a key and a certificate that do not
 * belong together. */
static int tg_tls_demo_lock_and_create(const char *dir, char *err, size_t errlen)
{
    char *lock = tg_tls_demo_join(dir, ".demo.lock");
    int fd = -1, rc = TG_OK;

    if (lock == NULL)
        return TG_ENOMEM;
    fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = tg_tls_demo_fail_errno(err, errlen, lock, "cannot open", errno);
        goto out;
    }
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            rc = tg_tls_demo_fail_errno(err, errlen, lock, "cannot lock", errno);
            goto out;
        }
    }
    if (!tg_tls_demo_is_file(dir, TG_CONFIG_DEMO_CERT) ||
        !tg_tls_demo_is_file(dir, TG_CONFIG_DEMO_KEY)) {
        /* Key generation and PEM encoding go through copies OpenSSL frees
         * unwiped. */
        tg_wipe_begin();
        rc = tg_tls_demo_generate(dir, err, errlen);
        tg_wipe_end();
    }
out:
    if (fd >= 0)
        close(fd); /* releases the lock */
    free(lock);
    return rc;
}

int tg_tls_demo_cert_ensure(const char *state_dir, char *err, size_t errlen)
{
    int rc;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    rc = tg_config_check_state_dir(state_dir, err, errlen);
    if (rc == TG_OK)
        rc = tg_tls_demo_mkdir_p(state_dir, err, errlen);
    if (rc == TG_OK)
        rc = tg_tls_demo_lock_and_create(state_dir, err, errlen);
    if (rc == TG_ENOMEM && err != NULL && errlen > 0 && err[0] == '\0') {
        struct tg_conf_mark m = {TG_CONFIG_DEFAULT_NAME, 0, 0};
        tg_conf_error(err, errlen, &m, NULL, "out of memory");
    }
    return rc;
}
