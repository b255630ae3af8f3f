/*
 * Unit tests for src/tls/tg_mtls.c through the listener's real SSL_CTX
 * (tg_tls_listener_new with tls.client_certificate): in-memory handshakes
 * (BIO pairs) with client certificates made here with OpenSSL's API (a
 * root CA, another CA, an intermediate, CRLs, dates in the past and the
 * future), checking what the client is told (the alert), what tlsgate
 * counts (tg_mtls_failure / tg_mtls_outcome) and what it reports about the
 * client (tg_mtls_peer_get); session resumption keeping the identity; the
 * validity check of resumed sessions; and the errors of bad CA and CRL data.
 */
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config/tg_config.h"
#include "keyprov/tg_keyprov.h"
#include "ossl/tg_ossl.h"
#include "tls/tg_mtls.h"
#include "tls/tg_tls.h"
#include "tg_test_util.h"
#include "providers/software/tg_software.h"

/* ------------------------------------------------------------------------ */
/* A small PKI, in memory                                                   */

struct pki {
    X509 *x;
    EVP_PKEY *k;
};

static uint64_t g_serial = 1000;

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    assert_non_null(e);
    assert_int_equal(X509_add_ext(x, e, -1), 1);
    X509_EXTENSION_free(e);
}

struct spec {
    const char *cn;
    size_t cn_len; /* 0: strlen(cn) */
    bool ca;
    long from_days, to_days; /* validity, relative to now */
    const char *san;         /* X509v3 syntax, or NULL */
    const char *eku;         /* or NULL: clientAuth for leaves */
    GENERAL_NAMES *raw_sans; /* added as is (taken) */
};

static struct pki mk(const struct spec *sp, const struct pki *issuer)
{
    struct pki p = {X509_new(), EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")};
    assert_non_null(p.x);
    assert_non_null(p.k);
    assert_int_equal(X509_set_version(p.x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set_uint64(X509_get_serialNumber(p.x), g_serial++), 1);
    assert_non_null(X509_time_adj_ex(X509_getm_notBefore(p.x), (int)sp->from_days, 0, NULL));
    assert_non_null(X509_time_adj_ex(X509_getm_notAfter(p.x), (int)sp->to_days, 0, NULL));
    X509_NAME *n = X509_get_subject_name(p.x);
    assert_int_equal(X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC,
                                                (const unsigned char *)"tlsgate tests", -1, -1, 0),
                     1);
    int len = sp->cn_len ? (int)sp->cn_len : -1;
    assert_int_equal(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8,
                                                (const unsigned char *)sp->cn, len, -1, 0),
                     1);
    assert_int_equal(X509_set_issuer_name(p.x, issuer ? X509_get_subject_name(issuer->x) : n), 1);
    assert_int_equal(X509_set_pubkey(p.x, p.k), 1);
    X509 *ix = issuer ? issuer->x : p.x;
    add_ext(p.x, ix, NID_basic_constraints, sp->ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    add_ext(p.x, ix, NID_key_usage,
            sp->ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
    add_ext(p.x, ix, NID_subject_key_identifier, "hash");
    add_ext(p.x, ix, NID_authority_key_identifier, "keyid");
    if (sp->san != NULL)
        add_ext(p.x, ix, NID_subject_alt_name, sp->san);
    if (sp->raw_sans != NULL) {
        assert_int_equal(X509_add1_ext_i2d(p.x, NID_subject_alt_name, sp->raw_sans, 0, 0), 1);
        GENERAL_NAMES_free(sp->raw_sans);
    }
    if (!sp->ca)
        add_ext(p.x, ix, NID_ext_key_usage, sp->eku ? sp->eku : "clientAuth");
    assert_true(X509_sign(p.x, issuer ? issuer->k : p.k, EVP_sha256()) > 0);
    return p;
}

static void pki_free(struct pki *p)
{
    X509_free(p->x);
    EVP_PKEY_free(p->k);
}

static char *bio_text(BIO *b)
{
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    BIO_free(b);
    return s;
}

static char *pem_of(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_X509(b, x), 1);
    return bio_text(b);
}

/* A CRL issued under ca's name, signed by signer (ca's key unless a test
 * wants a bad signature), revoking `revoked`, its nextUpdate next_days from
 * now. */
static char *crl_pem(const struct pki *ca, EVP_PKEY *signer, X509 *const *revoked, size_t n,
                     long next_days)
{
    X509_CRL *crl = X509_CRL_new();
    assert_non_null(crl);
    assert_int_equal(X509_CRL_set_version(crl, 1), 1);
    assert_int_equal(X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca->x)), 1);
    ASN1_TIME *last = X509_time_adj_ex(NULL, next_days < 0 ? next_days - 2 : -1, 0, NULL);
    ASN1_TIME *next = X509_time_adj_ex(NULL, (int)next_days, 0, NULL);
    assert_int_equal(X509_CRL_set1_lastUpdate(crl, last), 1);
    assert_int_equal(X509_CRL_set1_nextUpdate(crl, next), 1);
    for (size_t i = 0; i < n; i++) {
        X509_REVOKED *r = X509_REVOKED_new();
        assert_int_equal(X509_REVOKED_set_serialNumber(r, X509_get_serialNumber(revoked[i])), 1);
        assert_int_equal(X509_REVOKED_set_revocationDate(r, last), 1);
        assert_int_equal(X509_CRL_add0_revoked(crl, r), 1);
    }
    ASN1_TIME_free(last);
    ASN1_TIME_free(next);
    assert_int_equal(X509_CRL_sort(crl), 1);
    assert_true(X509_CRL_sign(crl, signer, EVP_sha256()) > 0);
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_X509_CRL(b, crl), 1);
    X509_CRL_free(crl);
    return bio_text(b);
}

static void write_pem(const char *name, char *pem)
{
    tg_test_write_file(name, pem, strlen(pem));
    free(pem);
}

/* ------------------------------------------------------------------------ */
/* Fixture                                                                  */

static struct pki g_root, g_other, g_inter, g_expired_ca, g_orphan;
static struct pki g_alice, g_eve, g_old, g_future, g_mallory, g_bob, g_server_only, g_weird;
static char g_srv_cert[256], g_srv_key[256];
static SSL_CTX *g_cctx;
static int g_alert;      /* the last alert the client received */
static bool g_no_ticket; /* clients ask for session-id resumption, no tickets */

static int dummy_async_cb(SSL *s, void *arg)
{
    (void)s;
    (void)arg;
    return 1;
}

static void client_info_cb(const SSL *ssl, int where, int ret)
{
    (void)ssl;
    if (where & SSL_CB_READ_ALERT)
        g_alert = ret & 0xff;
}

static int setup(void **state)
{
    (void)state;
    if (tg_ossl_init() != TG_OK)
        return -1;
    tg_config_set_known_providers(tg_keyprov_names());
    char *c, *k;
    tg_test_make_cert("EC:P-256", "gw.example", &c, &k);
    snprintf(g_srv_cert, sizeof(g_srv_cert), "%s", tg_test_write_file("srv.pem", c, strlen(c)));
    snprintf(g_srv_key, sizeof(g_srv_key), "%s", tg_test_write_file("srv.key", k, strlen(k)));
    free(c);
    free(k);

    g_root = mk(&(struct spec){.cn = "Root CA", .ca = true, .from_days = -30, .to_days = 30}, NULL);
    g_other =
        mk(&(struct spec){.cn = "Other CA", .ca = true, .from_days = -30, .to_days = 30}, NULL);
    g_inter =
        mk(&(struct spec){.cn = "Inter CA", .ca = true, .from_days = -30, .to_days = 30}, &g_root);
    g_expired_ca =
        mk(&(struct spec){.cn = "Expired CA", .ca = true, .from_days = -30, .to_days = -1}, NULL);
    g_orphan = mk(&(struct spec){.cn = "orphan", .from_days = -1, .to_days = 1}, &g_expired_ca);
    g_alice = mk(&(struct spec){.cn = "alice",
                                .from_days = -1,
                                .to_days = 1,
                                .san = "DNS:alice.test,IP:192.0.2.7,IP:2001:db8::1,"
                                       "URI:spiffe://t/alice,email:alice@example.com"},
                 &g_root);
    g_eve = mk(&(struct spec){.cn = "eve", .from_days = -1, .to_days = 1}, &g_other);
    g_old = mk(&(struct spec){.cn = "old", .from_days = -10, .to_days = -5}, &g_root);
    g_future = mk(&(struct spec){.cn = "future", .from_days = 5, .to_days = 10}, &g_root);
    g_mallory = mk(&(struct spec){.cn = "mallory", .from_days = -1, .to_days = 1}, &g_root);
    g_bob = mk(&(struct spec){.cn = "bob", .from_days = -1, .to_days = 1}, &g_inter);
    g_server_only = mk(
        &(struct spec){.cn = "srv", .from_days = -1, .to_days = 1, .eku = "serverAuth"}, &g_root);
    /* A CN with a NUL inside, and a URI with a comma, a blank and a byte
     * above 0x7f: reported escaped, never cut into another name. */
    GENERAL_NAMES *raw = GENERAL_NAMES_new();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *uri = ASN1_IA5STRING_new();
    assert_int_equal(ASN1_STRING_set(uri, "spiffe://t/a,b c\xff", 17), 1);
    GENERAL_NAME_set0_value(gn, GEN_URI, uri);
    assert_int_equal(sk_GENERAL_NAME_push(raw, gn), 1);
    g_weird = mk(
        &(struct spec){
            .cn = "admin\0evil", .cn_len = 10, .from_days = -1, .to_days = 1, .raw_sans = raw},
        &g_root);

    write_pem("root.pem", pem_of(g_root.x));
    write_pem("other.pem", pem_of(g_other.x));
    write_pem("inter.pem", pem_of(g_inter.x));
    write_pem("expired_ca.pem", pem_of(g_expired_ca.x));
    X509 *rev[] = {g_mallory.x};
    write_pem("crl.pem", crl_pem(&g_root, g_root.k, rev, 1, 2));
    write_pem("crl_old.pem", crl_pem(&g_root, g_root.k, rev, 1, -1));
    write_pem("crl_badsig.pem", crl_pem(&g_root, g_other.k, rev, 1, 2));
    write_pem("crl_other.pem", crl_pem(&g_other, g_other.k, NULL, 0, 2));
    /* Both CAs in one file; the CRLs of both in another. */
    char *a = pem_of(g_root.x), *b = pem_of(g_other.x);
    size_t la = strlen(a), lb = strlen(b);
    a = realloc(a, la + lb + 1);
    memcpy(a + la, b, lb + 1);
    write_pem("both.pem", a);
    free(b);
    static const char garbage[] = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    tg_test_write_file("garbage.pem", garbage, sizeof(garbage) - 1);
    static const char garbage_crl[] = "-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n";
    tg_test_write_file("garbage_crl.pem", garbage_crl, sizeof(garbage_crl) - 1);

    g_cctx = SSL_CTX_new(TLS_client_method());
    if (g_cctx == NULL)
        return -1;
    SSL_CTX_set_verify(g_cctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_info_callback(g_cctx, client_info_cb);
    SSL_CTX_set_session_cache_mode(g_cctx, SSL_SESS_CACHE_CLIENT);
    return chdir(tg_test_tmpdir());
}

static int teardown(void **state)
{
    (void)state;
    struct pki *all[] = {&g_expired_ca, &g_orphan,      &g_root, &g_other,  &g_inter,
                         &g_alice,      &g_eve,         &g_old,  &g_future, &g_mallory,
                         &g_bob,        &g_server_only, &g_weird};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        pki_free(all[i]);
    SSL_CTX_free(g_cctx);
    tg_keyprov_shutdown();
    tg_ossl_cleanup();
    return 0;
}

/* A listener whose tls block ends with `client_certificate: <cc>`. */
static struct tg_tls_listener *listener(const char *cc, struct tg_config **cfgp, char *err,
                                        size_t errlen, int *rc)
{
    char yaml[4096];
    snprintf(yaml, sizeof(yaml),
             "listeners:\n"
             "  - name: t\n"
             "    address: 127.0.0.1:0\n"
             "    upstream: { address: 127.0.0.1:9 }\n"
             "    tls:\n"
             "      certificates:\n"
             "        - certificate_chain: { filename: %s }\n"
             "          private_key: { filename: %s }\n"
             "      client_certificate: %s\n",
             g_srv_cert, g_srv_key, cc);
    *cfgp = NULL;
    *rc = tg_config_load_buffer("t.yaml", yaml, strlen(yaml), cfgp, err, errlen);
    if (*rc != TG_OK)
        return NULL;
    struct tg_tls_listener *t = NULL;
    *rc = tg_tls_listener_new(&(*cfgp)->listeners[0], dummy_async_cb, &t, err, errlen);
    return t;
}

struct lst {
    struct tg_config *cfg;
    struct tg_tls_listener *t;
};

static struct lst lst_ok(const char *cc)
{
    struct lst l;
    char err[1024] = "";
    int rc;
    l.t = listener(cc, &l.cfg, err, sizeof(err), &rc);
    if (rc != TG_OK)
        fail_msg("listener: %s", err);
    assert_non_null(tg_tls_listener_mtls(l.t));
    return l;
}

static void lst_free(struct lst *l)
{
    tg_tls_listener_free(l->t);
    tg_config_free(l->cfg);
}

struct hs {
    SSL *s, *c;
    bool ok;    /* the server finished its handshake */
    int alert;  /* the alert the client received, -1: none */
    int reason; /* tg_mtls_failure right after the server's failure */
};

/* A handshake: client cert (NULL: none), extra chain certificate, maximum
 * version, a session to resume. The client reads once more afterwards (TLS
 * 1.3: the server's verdict comes after the client's Finished). */
static struct hs handshake(const struct lst *l, const struct pki *cert, const struct pki *chain,
                           int maxver, SSL_SESSION *sess)
{
    struct hs h = {SSL_new(tg_tls_listener_ctx(l->t)), SSL_new(g_cctx), false, -1, -1};
    assert_non_null(h.s);
    assert_non_null(h.c);
    BIO *bs, *bc;
    assert_int_equal(BIO_new_bio_pair(&bs, 0, &bc, 0), 1);
    SSL_set_bio(h.s, bs, bs);
    SSL_set_bio(h.c, bc, bc);
    SSL_set_accept_state(h.s);
    SSL_set_connect_state(h.c);
    if (maxver != 0)
        assert_int_equal(SSL_set_max_proto_version(h.c, maxver), 1);
    if (g_no_ticket)
        SSL_set_options(h.c, SSL_OP_NO_TICKET);
    if (cert != NULL) {
        assert_int_equal(SSL_use_certificate(h.c, cert->x), 1);
        assert_int_equal(SSL_use_PrivateKey(h.c, cert->k), 1);
    }
    if (chain != NULL)
        assert_int_equal(SSL_add1_chain_cert(h.c, chain->x), 1);
    if (sess != NULL)
        assert_int_equal(SSL_set_session(h.c, sess), 1);
    g_alert = -1;
    int cr = 0, sr = 0;
    bool cfail = false, sfail = false;
    for (int i = 0; i < 50 && !(cr == 1 && sr == 1) && !sfail && !cfail; i++) {
        if (cr != 1) {
            cr = SSL_do_handshake(h.c);
            int e = SSL_get_error(h.c, cr);
            cfail = cr != 1 && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE;
        }
        if (sr != 1) {
            ERR_clear_error();
            sr = SSL_do_handshake(h.s);
            int e = SSL_get_error(h.s, sr);
            sfail = sr != 1 && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE &&
                    e != SSL_ERROR_WANT_ASYNC;
            /* Before the client adds errors of its own to the queue. */
            if (sfail)
                h.reason = tg_mtls_failure(h.s);
        }
    }
    h.ok = sr == 1;
    char b;
    for (int i = 0; i < 3 && !cfail; i++)
        (void)SSL_read(h.c, &b, 1); /* tickets, or the alert */
    h.alert = g_alert;
    return h;
}

static void hs_free(struct hs *h)
{
    SSL_free(h->s);
    SSL_free(h->c);
    ERR_clear_error();
}

/* The handshake fails with `alert` at the client and `reason` counted. */
static void refused(const struct lst *l, const struct pki *cert, const struct pki *chain,
                    int maxver, int alert, int reason)
{
    struct hs h = handshake(l, cert, chain, maxver, NULL);
    assert_false(h.ok);
    if (h.alert != alert)
        fail_msg("alert %d, want %d", h.alert, alert);
    int got = h.reason;
    if (got != reason)
        fail_msg("reason %d, want %d (verify result: %s)", got, reason,
                 X509_verify_cert_error_string(SSL_get_verify_result(h.s)));
    hs_free(&h);
}

static void accepted(const struct lst *l, const struct pki *cert, const struct pki *chain,
                     int maxver, int outcome)
{
    struct hs h = handshake(l, cert, chain, maxver, NULL);
    if (!h.ok)
        fail_msg("refused (alert %d, verify result: %s)", h.alert,
                 X509_verify_cert_error_string(SSL_get_verify_result(h.s)));
    assert_int_equal(h.alert, -1);
    assert_int_equal(tg_mtls_outcome(h.s), outcome);
    hs_free(&h);
}

static void fingerprint_of(X509 *x, char *hex)
{
    unsigned char md[32];
    unsigned int n = 0;
    assert_int_equal(X509_digest(x, EVP_sha256(), md, &n), 1);
    for (unsigned i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                    */

static void test_require(void **state)
{
    (void)state;
    struct lst l = lst_ok("{ ca: { filename: root.pem } }");
    for (int v = TLS1_2_VERSION; v <= TLS1_3_VERSION; v++) {
        accepted(&l, &g_alice, NULL, v, TG_STAT_CCERT_VERIFIED);
        refused(&l, NULL, NULL, v,
                v == TLS1_3_VERSION ? SSL_AD_CERTIFICATE_REQUIRED : SSL_AD_HANDSHAKE_FAILURE,
                TG_STAT_CCERT_MISSING);
        refused(&l, &g_eve, NULL, v, SSL_AD_UNKNOWN_CA, TG_STAT_CCERT_UNKNOWN_CA);
        refused(&l, &g_old, NULL, v, SSL_AD_CERTIFICATE_EXPIRED, TG_STAT_CCERT_EXPIRED);
        refused(&l, &g_future, NULL, v, SSL_AD_BAD_CERTIFICATE, TG_STAT_CCERT_NOT_YET_VALID);
        refused(&l, &g_server_only, NULL, v, SSL_AD_UNSUPPORTED_CERTIFICATE, TG_STAT_CCERT_PURPOSE);
        /* The intermediate's certificate: refused when the client does not
         * send it, accepted when it does (verify_depth 4). */
        refused(&l, &g_bob, NULL, v, SSL_AD_UNKNOWN_CA, TG_STAT_CCERT_UNKNOWN_CA);
        accepted(&l, &g_bob, &g_inter, v, TG_STAT_CCERT_VERIFIED);
    }
    lst_free(&l);
}

static void test_optional(void **state)
{
    (void)state;
    struct lst l = lst_ok("{ ca: { filename: root.pem }, mode: optional }");
    for (int v = TLS1_2_VERSION; v <= TLS1_3_VERSION; v++) {
        accepted(&l, NULL, NULL, v, TG_STAT_CCERT_ABSENT);
        accepted(&l, &g_alice, NULL, v, TG_STAT_CCERT_VERIFIED);
        /* A certificate that does not verify is refused in this mode too. */
        refused(&l, &g_eve, NULL, v, SSL_AD_UNKNOWN_CA, TG_STAT_CCERT_UNKNOWN_CA);
        refused(&l, &g_old, NULL, v, SSL_AD_CERTIFICATE_EXPIRED, TG_STAT_CCERT_EXPIRED);
    }
    struct hs h = handshake(&l, NULL, NULL, 0, NULL);
    assert_true(h.ok);
    struct tg_tls_peer p;
    assert_int_equal(tg_mtls_peer_get(h.s, &p), TG_EINVAL);
    assert_string_equal(p.subject, "");
    hs_free(&h);
    lst_free(&l);
}

static void test_crl(void **state)
{
    (void)state;
    struct lst l = lst_ok("{ ca: { filename: root.pem }, crl: { filename: crl.pem } }");
    assert_int_equal(tg_mtls_crl_count(tg_tls_listener_mtls(l.t)), 1);
    for (int v = TLS1_2_VERSION; v <= TLS1_3_VERSION; v++) {
        accepted(&l, &g_alice, NULL, v, TG_STAT_CCERT_VERIFIED);
        refused(&l, &g_mallory, NULL, v, SSL_AD_CERTIFICATE_REVOKED, TG_STAT_CCERT_REVOKED);
        /* Every CA of the chain needs its CRL: the intermediate has none. */
        refused(&l, &g_bob, &g_inter, v, SSL_AD_UNKNOWN_CA, TG_STAT_CCERT_CRL);
    }
    lst_free(&l);

    /* An out-of-date CRL is loaded (with a warning) and refuses everyone
     * of its CA: fail closed. */
    l = lst_ok("{ ca: { filename: root.pem }, crl: { filename: crl_old.pem } }");
    refused(&l, &g_alice, NULL, 0, SSL_AD_CERTIFICATE_EXPIRED, TG_STAT_CCERT_CRL);
    lst_free(&l);

    /* Two CAs, the CRL of each. */
    char *a = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&a, &n);
    assert_non_null(f);
    for (const char *name = "crl.pem"; name != NULL;
         name = strcmp(name, "crl.pem") == 0 ? "crl_other.pem" : NULL) {
        FILE *in = fopen(name, "r");
        assert_non_null(in);
        int ch;
        while ((ch = fgetc(in)) != EOF)
            fputc(ch, f);
        fclose(in);
    }
    fclose(f);
    tg_test_write_file("crls.pem", a, n);
    free(a);
    l = lst_ok("{ ca: { filename: both.pem }, crl: { filename: crls.pem } }");
    assert_int_equal(tg_mtls_ca_count(tg_tls_listener_mtls(l.t)), 2);
    assert_int_equal(tg_mtls_crl_count(tg_tls_listener_mtls(l.t)), 2);
    accepted(&l, &g_alice, NULL, 0, TG_STAT_CCERT_VERIFIED);
    accepted(&l, &g_eve, NULL, 0, TG_STAT_CCERT_VERIFIED);
    refused(&l, &g_mallory, NULL, 0, SSL_AD_CERTIFICATE_REVOKED, TG_STAT_CCERT_REVOKED);
    lst_free(&l);
}

static void test_depth(void **state)
{
    (void)state;
    struct lst l = lst_ok("{ ca: { filename: root.pem }, verify_depth: 0 }");
    accepted(&l, &g_alice, NULL, 0, TG_STAT_CCERT_VERIFIED);
    refused(&l, &g_bob, &g_inter, 0, SSL_AD_UNKNOWN_CA, TG_STAT_CCERT_DEPTH);
    lst_free(&l);
    l = lst_ok("{ ca: { filename: root.pem }, verify_depth: 1 }");
    accepted(&l, &g_bob, &g_inter, 0, TG_STAT_CCERT_VERIFIED);
    lst_free(&l);
}

static void test_peer(void **state)
{
    (void)state;
    struct lst l = lst_ok("{ ca: { filename: root.pem } }");
    struct hs h = handshake(&l, &g_alice, NULL, 0, NULL);
    assert_true(h.ok);
    struct tg_tls_peer p;
    assert_int_equal(tg_mtls_peer_get(h.s, &p), TG_OK);
    assert_string_equal(p.subject, "CN=alice,O=tlsgate tests");
    assert_string_equal(p.cn, "alice");
    assert_string_equal(p.san, "DNS:alice.test,IP:192.0.2.7,IP:2001:db8::1,URI:spiffe://t/alice,"
                               "email:alice@example.com");
    char fp[65];
    fingerprint_of(g_alice.x, fp);
    assert_string_equal(p.sha256, fp);
    assert_false(p.resumed);
    hs_free(&h);

    h = handshake(&l, &g_weird, NULL, 0, NULL);
    assert_true(h.ok);
    assert_int_equal(tg_mtls_peer_get(h.s, &p), TG_OK);
    assert_string_equal(p.cn, "");
    assert_string_equal(p.subject, "CN=admin\\00evil,O=tlsgate tests");
    assert_string_equal(p.san, "URI:spiffe://t/a\\x2cb\\x20c\\xff");
    hs_free(&h);
    lst_free(&l);
}

/* A session from a full handshake with alice (the client read the
 * tickets), and the server's side of it in *server; the caller frees both. */
static SSL_SESSION *session_of(const struct lst *l, int v, SSL_SESSION **server)
{
    struct hs h = handshake(l, &g_alice, NULL, v, NULL);
    assert_true(h.ok);
    SSL_SESSION *s = SSL_get1_session(h.c);
    assert_non_null(s);
    assert_int_equal(SSL_SESSION_is_resumable(s), 1);
    *server = SSL_get1_session(h.s);
    assert_non_null(*server);
    /* Closed cleanly: SSL_free of a connection that was not shut down
     * marks its session as not to be resumed. */
    SSL_set_shutdown(h.c, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_set_shutdown(h.s, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    hs_free(&h);
    return s;
}

static void test_resumption(void **state)
{
    (void)state;
    struct lst l = lst_ok("{ ca: { filename: root.pem } }");
    struct lst other = lst_ok("{ ca: { filename: root.pem }, mode: optional }");
    char fp[65];
    fingerprint_of(g_alice.x, fp);
    for (int v = TLS1_2_VERSION; v <= TLS1_3_VERSION; v++) {
        SSL_SESSION *srv;
        SSL_SESSION *sess = session_of(&l, v, &srv);
        /* Resumed without sending a certificate: the identity is the
         * session's. */
        struct hs h = handshake(&l, NULL, NULL, v, sess);
        if (!h.ok)
            fail_msg("TLS %x: resumption refused (alert %d, reason %d)", v, h.alert, h.reason);
        assert_int_equal(SSL_session_reused(h.s), 1);
        struct tg_tls_peer p;
        assert_int_equal(tg_mtls_peer_get(h.s, &p), TG_OK);
        assert_true(p.resumed);
        assert_string_equal(p.sha256, fp);
        assert_string_equal(p.cn, "alice");
        assert_int_equal(SSL_get_verify_result(h.s), X509_V_OK);
        hs_free(&h);
        /* Another listener (other settings, other contexts): no
         * resumption, a full handshake. */
        h = handshake(&other, NULL, NULL, v, sess);
        assert_true(h.ok);
        assert_int_equal(SSL_session_reused(h.s), 0);
        assert_int_equal(tg_mtls_outcome(h.s), TG_STAT_CCERT_ABSENT);
        hs_free(&h);

        /* The session's client certificate is checked for its dates. */
        time_t now = time(NULL);
        assert_true(tg_mtls_session_usable(srv, now));
        assert_false(tg_mtls_session_usable(srv, now + 3 * 86400));
        assert_false(tg_mtls_session_usable(srv, now - 3 * 86400));
        SSL_SESSION_free(srv);
        SSL_SESSION_free(sess);
    }
    /* A session without a client certificate is always usable. */
    SSL_SESSION *none = SSL_SESSION_new();
    assert_true(tg_mtls_session_usable(none, time(NULL)));
    SSL_SESSION_free(none);
    lst_free(&other);
    lst_free(&l);
}

/* The connection's one call after its handshake. */
static void test_handshake_done(void **state)
{
    (void)state;
    struct lst l = lst_ok("{ ca: { filename: root.pem }, mode: optional }");
    SSL_CTX *sctx = tg_tls_listener_ctx(l.t);
    struct tg_tls_peer *p = (struct tg_tls_peer *)1;
    int count = 0;
    time_t now = time(NULL);
    char fp[65];
    fingerprint_of(g_alice.x, fp);

    struct hs h = handshake(&l, NULL, NULL, 0, NULL);
    assert_true(h.ok);
    assert_int_equal(tg_mtls_handshake_done(h.s, sctx, now, &p, &count), TG_OK);
    assert_null(p);
    assert_int_equal(count, TG_STAT_CCERT_ABSENT);
    hs_free(&h);

    /* Tickets (TLS 1.2 and 1.3), then session ids (TLS 1.2). */
    for (int i = 0; i < 3; i++) {
        int v = i == 1 ? TLS1_3_VERSION : TLS1_2_VERSION;
        g_no_ticket = i == 2;
        h = handshake(&l, &g_alice, NULL, v, NULL);
        assert_true(h.ok);
        assert_int_equal(tg_mtls_handshake_done(h.s, sctx, now, &p, &count), TG_OK);
        assert_non_null(p);
        assert_int_equal(count, TG_STAT_CCERT_VERIFIED);
        assert_string_equal(p->sha256, fp);
        assert_false(p->resumed);
        free(p);
        SSL_SESSION *sess = SSL_get1_session(h.c);
        SSL_set_shutdown(h.c, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_set_shutdown(h.s, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        hs_free(&h);

        /* Resumed, now: the session's identity, nothing counted. */
        h = handshake(&l, NULL, NULL, v, sess);
        assert_true(h.ok);
        assert_int_equal(SSL_session_reused(h.s), 1);
        assert_int_equal(tg_mtls_handshake_done(h.s, sctx, now, &p, &count), TG_OK);
        assert_int_equal(count, -1);
        assert_non_null(p);
        assert_true(p->resumed);
        assert_string_equal(p->sha256, fp);
        free(p);
        /* The same three days later: the certificate has expired since. */
        long cached = SSL_CTX_sess_number(sctx);
        assert_int_equal(tg_mtls_handshake_done(h.s, sctx, now + 3 * 86400, &p, &count), TG_EPROTO);
        assert_null(p);
        assert_int_equal(count, TG_STAT_CCERT_EXPIRED);
        SSL_set_shutdown(h.c, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_set_shutdown(h.s, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        hs_free(&h);
        if (g_no_ticket) {
            /* Out of the server's cache: the next attempt is a full
             * handshake (no certificate sent: absent, mode optional). */
            assert_int_equal(SSL_CTX_sess_number(sctx), cached - 1);
            h = handshake(&l, NULL, NULL, v, sess);
            assert_true(h.ok);
            assert_int_equal(SSL_session_reused(h.s), 0);
            assert_int_equal(tg_mtls_outcome(h.s), TG_STAT_CCERT_ABSENT);
            hs_free(&h);
        }
        SSL_SESSION_free(sess);
    }
    g_no_ticket = false;
    lst_free(&l);
}

static void test_not_a_cert_failure(void **state)
{
    (void)state;
    struct lst l = lst_ok("{ ca: { filename: root.pem } }");
    SSL *s = SSL_new(tg_tls_listener_ctx(l.t));
    assert_non_null(s);
    ERR_clear_error();
    assert_int_equal(tg_mtls_failure(s), -1);
    SSL_free(s);
    lst_free(&l);
}

static void bad(const char *cc, const char *want)
{
    struct tg_config *cfg;
    char err[1024] = "";
    int rc;
    struct tg_tls_listener *t = listener(cc, &cfg, err, sizeof(err), &rc);
    assert_null(t);
    assert_int_equal(rc, TG_ECONFIG);
    if (strstr(err, want) == NULL)
        fail_msg("got '%s', want '%s'", err, want);
    assert_null(strchr(err, '\n'));
    tg_config_free(cfg);
}

static void test_errors(void **state)
{
    (void)state;
    bad("{ ca: { filename: garbage.pem } }",
        "t.yaml:9:45: listeners[0].tls.client_certificate.ca: cannot parse CA certificate 1: ");
    bad("{ ca: { filename: root.pem }, crl: { filename: garbage_crl.pem } }",
        "t.yaml:9:74: listeners[0].tls.client_certificate.crl: cannot parse CRL 1: ");
    bad("{ ca: { filename: root.pem }, crl: { filename: crl_badsig.pem } }",
        "t.yaml:9:74: listeners[0].tls.client_certificate.crl: CRL 1: its signature does not "
        "verify with the key of 'CN=Root CA,O=tlsgate tests' in 'ca'");
    /* A CRL of a CA not in `ca`: a warning, not an error. */
    struct lst l = lst_ok("{ ca: { filename: root.pem }, crl: { filename: crl_other.pem } }");
    lst_free(&l);
    /* An expired CA: a warning; its clients are refused as expired. */
    l = lst_ok("{ ca: { filename: expired_ca.pem } }");
    refused(&l, &g_orphan, NULL, 0, SSL_AD_CERTIFICATE_EXPIRED, TG_STAT_CCERT_EXPIRED);
    lst_free(&l);
}

int main(void)
{
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_require),
        cmocka_unit_test(test_optional),
        cmocka_unit_test(test_crl),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_peer),
        cmocka_unit_test(test_resumption),
        cmocka_unit_test(test_handshake_done),
        cmocka_unit_test(test_not_a_cert_failure),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
