#include "tg_test_util.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/tg_wipe.h"

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

EVP_PKEY *tg_test_rsa_key(int pbits, int qbits, unsigned long e)
{
    EVP_PKEY *pk = NULL;
    BN_CTX *ctx = BN_CTX_new();
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    if (ctx == NULL || bld == NULL)
        goto out;
    BN_CTX_start(ctx);
    BIGNUM *p = BN_CTX_get(ctx), *q = BN_CTX_get(ctx), *n = BN_CTX_get(ctx);
    BIGNUM *be = BN_CTX_get(ctx), *d = BN_CTX_get(ctx), *p1 = BN_CTX_get(ctx);
    BIGNUM *q1 = BN_CTX_get(ctx), *lcm = BN_CTX_get(ctx), *g = BN_CTX_get(ctx);
    BIGNUM *dp = BN_CTX_get(ctx), *dq = BN_CTX_get(ctx), *iq = BN_CTX_get(ctx);
    if (iq == NULL || !BN_set_word(be, e))
        goto out;
    for (int tries = 0; tries < 100; tries++) {
        /* gcd(e, p - 1) = gcd(e, q - 1) = 1 so that d exists. */
        if (!BN_generate_prime_ex2(p, pbits, 0, NULL, NULL, NULL, ctx) ||
            !BN_generate_prime_ex2(q, qbits, 0, NULL, NULL, NULL, ctx))
            goto out;
        if (BN_cmp(p, q) == 0 || !BN_sub(p1, p, BN_value_one()) || !BN_sub(q1, q, BN_value_one()) ||
            !BN_gcd(g, p1, be, ctx))
            goto out;
        if (!BN_is_one(g) || !BN_gcd(g, q1, be, ctx))
            continue;
        if (BN_is_one(g))
            break;
    }
    if (!BN_mul(n, p, q, ctx) || BN_num_bits(n) != pbits + qbits || !BN_gcd(g, p1, q1, ctx) ||
        !BN_mul(lcm, p1, q1, ctx) || !BN_div(lcm, NULL, lcm, g, ctx) ||
        BN_mod_inverse(d, be, lcm, ctx) == NULL || !BN_mod(dp, d, p1, ctx) ||
        !BN_mod(dq, d, q1, ctx) || BN_mod_inverse(iq, q, p, ctx) == NULL)
        goto out;
    if (!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_D, d) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR1, p) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR2, q) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT1, dp) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT2, dq) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, iq))
        goto out;
    params = OSSL_PARAM_BLD_to_param(bld);
    pctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (params == NULL || pctx == NULL || EVP_PKEY_fromdata_init(pctx) <= 0 ||
        EVP_PKEY_fromdata(pctx, &pk, EVP_PKEY_KEYPAIR, params) <= 0)
        pk = NULL;
out:
    EVP_PKEY_CTX_free(pctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    if (ctx != NULL)
        BN_CTX_end(ctx);
    BN_CTX_free(ctx);
    return pk;
}

/* ---- secrets left in memory ---- */

/* Count needle in [start, end) of this process, read through fd
 * (/proc/self/mem) in chunks with an overlap. */
static size_t tg_test_count_range(int fd, uint64_t start, uint64_t end, const void *needle,
                                  size_t len)
{
    unsigned char buf[65536 + 256];
    size_t keep = 0, hits = 0;
    for (uint64_t off = start; off < end;) {
        size_t want = sizeof(buf) - 256;
        if (end - off < want)
            want = (size_t)(end - off);
        ssize_t n = pread(fd, buf + keep, want, (off_t)off);
        if (n <= 0)
            break;
        size_t have = keep + (size_t)n;
        for (size_t i = 0; i + len <= have; i++) {
            if (buf[i] == *(const unsigned char *)needle && memcmp(buf + i, needle, len) == 0)
                hits++;
        }
        /* The last len - 1 bytes may start a match that ends in the next
         * chunk. */
        keep = have >= len - 1 ? len - 1 : have;
        memmove(buf, buf + have - keep, keep);
        off += (uint64_t)n;
    }
    return hits;
}

size_t tg_test_memory_count(const void *needle, size_t len)
{
    if (len == 0 || len > 256)
        abort();
    int maps = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    int mem = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
    if (maps < 0 || mem < 0)
        abort();
    char chunk[4096], line[1024];
    size_t ll = 0, hits = 0;
    uintptr_t sp = (uintptr_t)&ll;
    ssize_t n;
    while ((n = read(maps, chunk, sizeof(chunk))) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (chunk[i] != '\n') {
                if (ll < sizeof(line) - 1)
                    line[ll++] = chunk[i];
                continue;
            }
            line[ll] = '\0';
            ll = 0;
            unsigned long long a, b;
            char perms[8] = "", path[512] = "";
            if (sscanf(line, "%llx-%llx %7s %*s %*s %*s %511s", &a, &b, perms, path) < 3)
                continue;
            bool anon = path[0] == '\0' || strcmp(path, "[heap]") == 0;
            if (!anon || perms[0] != 'r' || perms[1] != 'w' || perms[3] != 'p' ||
                b - a > (1ULL << 30) || (sp >= a && sp < b))
                continue;
            hits += tg_test_count_range(mem, a, b, needle, len);
        }
    }
    close(maps);
    close(mem);
    return hits;
}

size_t tg_test_key_pem_nocopy(char *pem, size_t cap, char **cert_pem)
{
    tg_wipe_begin();
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    BIO *b = BIO_new(BIO_s_secmem());
    if (pk == NULL || b == NULL || !PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL))
        abort();
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    if (n <= 0 || (size_t)n >= cap)
        abort();
    memcpy(pem, p, (size_t)n);
    pem[n] = '\0';
    BIO_free(b);
    if (cert_pem != NULL) {
        X509 *x = X509_new();
        if (x == NULL)
            abort();
        X509_set_version(x, 2);
        ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
        X509_gmtime_adj(X509_getm_notBefore(x), -3600);
        X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365);
        X509_set_pubkey(x, pk);
        X509_NAME *nm = X509_get_subject_name(x);
        X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"w.test", -1, -1,
                                   0);
        X509_set_issuer_name(x, nm);
        if (X509_sign(x, pk, EVP_sha256()) <= 0)
            abort();
        b = BIO_new(BIO_s_mem());
        PEM_write_bio_X509(b, x);
        *cert_pem = tg_bio_to_str(b);
        BIO_free(b);
        X509_free(x);
    }
    EVP_PKEY_free(pk);
    tg_wipe_end();
    return (size_t)n;
}

void tg_test_key_needles(const char *pem, char line[65], unsigned char der[32])
{
    /* The body: 64-character lines between the BEGIN and END lines. */
    const char *body = strchr(pem, '\n');
    if (body == NULL)
        abort();
    body++;
    size_t nlines = 0;
    for (const char *q = body; *q != '\0' && *q != '-'; q = strchr(q, '\n') + 1)
        nlines++;
    const char *mid = body + (nlines / 2) * 65;
    memcpy(line, mid, 64);
    line[64] = '\0';
    unsigned char dec[48];
    if (EVP_DecodeBlock(dec, (const unsigned char *)line, 64) != 48)
        abort();
    memcpy(der, dec + 8, 32);
}

void tg_test_tcp_pair(int *cfd, int *sfd, bool sfd_nonblock)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(lfd, 1), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
    *cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(*cfd >= 0);
    int one = 1;
    assert_int_equal(setsockopt(*cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
    assert_int_equal(connect(*cfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    *sfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | (sfd_nonblock ? SOCK_NONBLOCK : 0));
    assert_true(*sfd >= 0);
    close(lfd);
}
