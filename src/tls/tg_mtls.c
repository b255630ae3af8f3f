/*
 * tg_mtls: client certificates (mutual TLS). Contract in tg_mtls.h.
 */
#include "tls/tg_mtls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tg_log.h"

struct tg_mtls {
    int mode;     /* enum tg_ccert_mode */
    int depth;    /* verify_depth */
    bool has_crl; /* CRLs are checked for every CA of the chain */
    X509_STORE *store;
    STACK_OF(X509_NAME) * names; /* the CAs named in the CertificateRequest */
    size_t n_ca, n_crl;
    unsigned char sid_ctx[SSL_MAX_SID_CTX_LENGTH];
};

/* ------------------------------------------------------------------------ */
/* Building                                                                 */

void tg_mtls_free(struct tg_mtls *m)
{
    if (m == NULL)
        return;
    X509_STORE_free(m->store);
    sk_X509_NAME_pop_free(m->names, X509_NAME_free);
    free(m);
}

int tg_mtls_mode(const struct tg_mtls *m)
{
    return m->mode;
}

size_t tg_mtls_ca_count(const struct tg_mtls *m)
{
    return m->n_ca;
}

size_t tg_mtls_crl_count(const struct tg_mtls *m)
{
    return m->n_crl;
}

/* The last OpenSSL error as text (and the queue cleared). */
static const char *tg_mtls_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0)
        snprintf(buf, len, "unknown error");
    else
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

/* A PEM read loop ends on "no start line" once the last block is read;
 * anything else (bad base64, bad DER) is a damaged block. The error stays
 * queued (for the message when nothing was read at all). */
static bool tg_mtls_pem_end(void)
{
    unsigned long e = ERR_peek_last_error();
    return ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
}

static void tg_mtls_name_text(const X509_NAME *n, char *buf, size_t len)
{
    BIO *b = BIO_new(BIO_s_mem());
    int w = b != NULL ? X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253) : -1;
    int r = w >= 0 ? BIO_read(b, buf, (int)len - 1) : -1;
    buf[r > 0 ? r : 0] = '\0';
    BIO_free(b);
    ERR_clear_error();
}

/* The CA certificates: trust anchors in the store, and their names for the
 * CertificateRequest. */
static int tg_mtls_load_cas(struct tg_mtls *m, const struct tg_conf_client_cert *conf, char *err,
                            size_t errlen)
{
    char why[256], path[512];
    snprintf(path, sizeof(path), "%s.ca", conf->path);
    BIO *bio = BIO_new_mem_buf(conf->ca.data, (int)conf->ca.data_len);
    if (bio == NULL)
        return TG_ENOMEM;
    int rc = TG_OK;
    X509 *x;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0) {
            /* Kept (the operator decides), but said: every client it
             * issued is now refused as "expired". */
            char subject[256], warn[TG_CONFIG_ERRLEN];
            tg_mtls_name_text(X509_get_subject_name(x), subject, sizeof(subject));
            tg_conf_error(warn, sizeof(warn), &conf->ca.mark, path,
                          "CA certificate %zu ('%s') has expired: the client certificates it "
                          "issued are refused",
                          m->n_ca + 1, subject);
            TG_WARN("%s", warn);
        }
        X509_NAME *name = X509_NAME_dup(X509_get_subject_name(x));
        if (X509_STORE_add_cert(m->store, x) != 1 || name == NULL ||
            !sk_X509_NAME_push(m->names, name)) {
            X509_NAME_free(name);
            X509_free(x);
            rc = TG_ENOMEM;
            goto out;
        }
        X509_free(x);
        m->n_ca++;
    }
    if (!tg_mtls_pem_end() || m->n_ca == 0) {
        tg_conf_error(err, errlen, &conf->ca.mark, path, "cannot parse CA certificate %zu: %s",
                      m->n_ca + 1, tg_mtls_reason(why, sizeof(why)));
        rc = TG_ECONFIG;
    }
out:
    BIO_free(bio);
    ERR_clear_error();
    return rc;
}

/* The CA of `ca` that issued crl (by name), or NULL. */
static X509 *tg_mtls_crl_issuer(const struct tg_mtls *m, const X509_CRL *crl)
{
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(m->store);
    for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509 *ca = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        if (ca != NULL && X509_NAME_cmp(X509_get_subject_name(ca), X509_CRL_get_issuer(crl)) == 0)
            return ca;
    }
    return NULL;
}

/* One CRL: it must verify with its issuer when that issuer is in `ca`. */
static int tg_mtls_check_crl(const struct tg_mtls *m, const struct tg_conf_client_cert *conf,
                             X509_CRL *crl, const char *path, char *err, size_t errlen)
{
    char issuer[256], warn[TG_CONFIG_ERRLEN];
    tg_mtls_name_text(X509_CRL_get_issuer(crl), issuer, sizeof(issuer));
    X509 *ca = tg_mtls_crl_issuer(m, crl);
    if (ca == NULL) {
        tg_conf_error(warn, sizeof(warn), &conf->crl.mark, path,
                      "CRL %zu: its issuer '%s' is not in 'ca': it applies only to clients that "
                      "send that CA in their chain",
                      m->n_crl + 1, issuer);
        TG_WARN("%s", warn);
    } else if (X509_CRL_verify(crl, X509_get0_pubkey(ca)) != 1) {
        ERR_clear_error();
        tg_conf_error(err, errlen, &conf->crl.mark, path,
                      "CRL %zu: its signature does not verify with the key of '%s' in 'ca'",
                      m->n_crl + 1, issuer);
        return TG_ECONFIG;
    }
    const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
    if (next != NULL && X509_cmp_current_time(next) < 0) {
        /* Still loaded: a stale list refuses every client of that CA
         * (crl_error), which is safer than checking nothing. */
        tg_conf_error(warn, sizeof(warn), &conf->crl.mark, path,
                      "CRL %zu of '%s' is out of date (nextUpdate has passed): client "
                      "certificates of that CA are refused until a newer CRL is loaded",
                      m->n_crl + 1, issuer);
        TG_WARN("%s", warn);
    }
    ERR_clear_error();
    return TG_OK;
}

static int tg_mtls_load_crls(struct tg_mtls *m, const struct tg_conf_client_cert *conf, char *err,
                             size_t errlen)
{
    char why[256], path[512];
    snprintf(path, sizeof(path), "%s.crl", conf->path);
    BIO *bio = BIO_new_mem_buf(conf->crl.data, (int)conf->crl.data_len);
    if (bio == NULL)
        return TG_ENOMEM;
    int rc = TG_OK;
    X509_CRL *crl;
    while ((crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)) != NULL) {
        rc = tg_mtls_check_crl(m, conf, crl, path, err, errlen);
        if (rc == TG_OK && X509_STORE_add_crl(m->store, crl) != 1)
            rc = TG_ENOMEM;
        X509_CRL_free(crl);
        if (rc != TG_OK)
            goto out;
        m->n_crl++;
    }
    if (!tg_mtls_pem_end() || m->n_crl == 0) {
        tg_conf_error(err, errlen, &conf->crl.mark, path, "cannot parse CRL %zu: %s", m->n_crl + 1,
                      tg_mtls_reason(why, sizeof(why)));
        rc = TG_ECONFIG;
    }
out:
    BIO_free(bio);
    ERR_clear_error();
    return rc;
}

/* The session id context: sessions are resumed only where the same
 * verification would have accepted them. */
static int tg_mtls_sid(struct tg_mtls *m, const struct tg_conf_client_cert *conf)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    /* The settings that are not bytes of the PEM data. */
    const unsigned char hdr[] = {(unsigned char)conf->mode, (unsigned char)conf->verify_depth,
                                 m->has_crl};
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    int ok = h != NULL && EVP_DigestInit_ex(h, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(h, "tlsgate-mtls", 12) && EVP_DigestUpdate(h, hdr, sizeof(hdr)) &&
             EVP_DigestUpdate(h, conf->ca.data, conf->ca.data_len) &&
             (conf->crl.data == NULL || EVP_DigestUpdate(h, conf->crl.data, conf->crl.data_len)) &&
             EVP_DigestFinal_ex(h, md, &n) && n >= sizeof(m->sid_ctx);
    EVP_MD_CTX_free(h);
    if (!ok) {
        ERR_clear_error();
        return TG_ECRYPTO;
    }
    memcpy(m->sid_ctx, md, sizeof(m->sid_ctx));
    return TG_OK;
}

int tg_mtls_new(const struct tg_conf_client_cert *conf, struct tg_mtls **out, char *err,
                size_t errlen)
{
    *out = NULL;
    TG_ENSURE(conf->mode != TG_CCERT_OFF && conf->ca.data != NULL, TG_EINVAL);
    int rc = TG_ENOMEM;
    struct tg_mtls *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return TG_ENOMEM;
    m->mode = conf->mode;
    m->depth = (int)conf->verify_depth;
    m->store = X509_STORE_new();
    m->names = sk_X509_NAME_new_null();
    if (m->store == NULL || m->names == NULL)
        goto out;
    rc = tg_mtls_load_cas(m, conf, err, errlen);
    if (rc != TG_OK)
        goto out;
    if (conf->crl.data != NULL) {
        m->has_crl = true;
        rc = tg_mtls_load_crls(m, conf, err, errlen);
        if (rc != TG_OK)
            goto out;
    }
    rc = tg_mtls_sid(m, conf);
    if (rc != TG_OK)
        goto out;
    *out = m;
    m = NULL;
out:
    if (rc == TG_ENOMEM)
        tg_conf_error(err, errlen, &conf->mark, conf->path, "out of memory");
    tg_mtls_free(m);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* On an SSL_CTX                                                            */

bool tg_mtls_session_usable(const SSL_SESSION *sess, time_t now)
{
    X509 *x = SSL_SESSION_get0_peer((SSL_SESSION *)sess);
    if (x == NULL)
        return true;
    time_t t = now;
    int after = X509_cmp_time(X509_get0_notAfter(x), &t);
    int before = X509_cmp_time(X509_get0_notBefore(x), &t);
    ERR_clear_error();
    /* 0 means the time could not be read: not usable either. */
    return after > 0 && before < 0;
}

/* TLS session tickets: what libssl would do by itself, except that a
 * session whose client certificate is no longer valid is not resumed. */
static SSL_TICKET_RETURN tg_mtls_ticket_cb(SSL *s, SSL_SESSION *ss, const unsigned char *keyname,
                                           size_t keyname_len, SSL_TICKET_STATUS status, void *arg)
{
    (void)s;
    (void)keyname;
    (void)keyname_len;
    (void)arg;
    switch (status) {
    case SSL_TICKET_SUCCESS:
    case SSL_TICKET_SUCCESS_RENEW:
        if (!tg_mtls_session_usable(ss, time(NULL)))
            return SSL_TICKET_RETURN_IGNORE_RENEW;
        return status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE : SSL_TICKET_RETURN_USE_RENEW;
    case SSL_TICKET_EMPTY:
    case SSL_TICKET_NO_DECRYPT:
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    default:
        return SSL_TICKET_RETURN_ABORT;
    }
}

int tg_mtls_apply(const struct tg_mtls *m, SSL_CTX *ctx)
{
    int mode = SSL_VERIFY_PEER;
    if (m->mode == TG_CCERT_REQUIRE)
        mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx, mode, NULL);
    SSL_CTX_set_verify_depth(ctx, m->depth);
    if (m->has_crl &&
        !X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx),
                                     X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL))
        goto fail;
    if (!SSL_CTX_set1_verify_cert_store(ctx, m->store))
        goto fail;
    STACK_OF(X509_NAME) *names = SSL_dup_CA_list(m->names);
    if (names == NULL)
        goto fail;
    SSL_CTX_set_client_CA_list(ctx, names);
    if (!SSL_CTX_set_session_id_context(ctx, m->sid_ctx, sizeof(m->sid_ctx)) ||
        !SSL_CTX_set_session_ticket_cb(ctx, NULL, tg_mtls_ticket_cb, NULL))
        goto fail;
    return TG_OK;
fail:
    ERR_clear_error();
    return TG_ECRYPTO;
}

/* ------------------------------------------------------------------------ */
/* Outcomes                                                                 */

/* Why a chain did not verify, as a TG_STAT_CCERT_* reason. */
static int tg_mtls_reason_of(long v)
{
    switch (v) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_REJECTED:
        return TG_STAT_CCERT_UNKNOWN_CA;
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return TG_STAT_CCERT_EXPIRED;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return TG_STAT_CCERT_NOT_YET_VALID;
    case X509_V_ERR_CERT_REVOKED:
        return TG_STAT_CCERT_REVOKED;
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_CRL_NOT_YET_VALID:
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
    case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
    case X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
    case X509_V_ERR_DIFFERENT_CRL_SCOPE:
    case X509_V_ERR_CRL_PATH_VALIDATION_ERROR:
        return TG_STAT_CCERT_CRL;
    case X509_V_ERR_CERT_CHAIN_TOO_LONG:
        return TG_STAT_CCERT_DEPTH;
    case X509_V_ERR_INVALID_PURPOSE:
        return TG_STAT_CCERT_PURPOSE;
    default:
        return TG_STAT_CCERT_INVALID;
    }
}

static bool tg_mtls_is_no_cert(unsigned long e)
{
    return e != 0 && ERR_GET_LIB(e) == ERR_LIB_SSL &&
           ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE;
}

int tg_mtls_failure(const SSL *ssl)
{
    long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK)
        return tg_mtls_reason_of(v);
    /* libssl raises exactly this error, and fails at once, when a required
     * certificate is missing; look at both ends of the queue. */
    if (tg_mtls_is_no_cert(ERR_peek_error()) || tg_mtls_is_no_cert(ERR_peek_last_error()))
        return TG_STAT_CCERT_MISSING;
    return -1;
}

const char *tg_mtls_why(const SSL *ssl)
{
    long v = SSL_get_verify_result(ssl);
    return v != X509_V_OK ? X509_verify_cert_error_string(v) : "none sent";
}

int tg_mtls_outcome(const SSL *ssl)
{
    return SSL_get0_peer_certificate(ssl) != NULL ? TG_STAT_CCERT_VERIFIED : TG_STAT_CCERT_ABSENT;
}

/* ------------------------------------------------------------------------ */
/* The peer's identity                                                      */

/* Append to buf[0..cap) at *off, cutting (never overrunning). */
static void tg_mtls_put(char *buf, size_t cap, size_t *off, const char *s, size_t n)
{
    if (*off + 1 >= cap)
        return;
    if (n > cap - 1 - *off)
        n = cap - 1 - *off;
    memcpy(buf + *off, s, n);
    *off += n;
    buf[*off] = '\0';
}

/* A SAN value: printable ASCII as is, the rest (and the separator) \xHH. */
static void tg_mtls_put_escaped(char *buf, size_t cap, size_t *off, const unsigned char *v,
                                size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = v[i];
        if (ch > 0x20 && ch < 0x7f && ch != ',' && ch != '\\') {
            tg_mtls_put(buf, cap, off, (const char *)&ch, 1);
        } else {
            char esc[5];
            snprintf(esc, sizeof(esc), "\\x%02x", ch);
            /* An escape is written whole or not at all. */
            if (*off + 4 < cap)
                tg_mtls_put(buf, cap, off, esc, 4);
            else
                *off = cap; /* full */
        }
    }
}

static void tg_mtls_peer_san(X509 *x, struct tg_tls_peer *out)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    size_t off = 0, cap = sizeof(out->san);
    for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        const char *type;
        const ASN1_STRING *s;
        switch (gn->type) {
        case GEN_DNS:
            type = "DNS:", s = gn->d.dNSName;
            break;
        case GEN_URI:
            type = "URI:", s = gn->d.uniformResourceIdentifier;
            break;
        case GEN_EMAIL:
            type = "email:", s = gn->d.rfc822Name;
            break;
        case GEN_IPADD:
            type = "IP:", s = gn->d.iPAddress;
            break;
        default:
            continue;
        }
        const unsigned char *p = ASN1_STRING_get0_data(s);
        size_t n = (size_t)ASN1_STRING_length(s);
        char ip[INET6_ADDRSTRLEN];
        if (gn->type == GEN_IPADD) {
            int af = n == 4 ? AF_INET : n == 16 ? AF_INET6 : 0;
            if (af == 0 || inet_ntop(af, p, ip, sizeof(ip)) == NULL)
                continue;
            p = (const unsigned char *)ip;
            n = strlen(ip);
        }
        if (off > 0)
            tg_mtls_put(out->san, cap, &off, ",", 1);
        tg_mtls_put(out->san, cap, &off, type, strlen(type));
        tg_mtls_put_escaped(out->san, cap, &off, p, n);
    }
    if (off >= cap)
        out->san[cap - 1] = '\0';
    GENERAL_NAMES_free(sans);
}

static void tg_mtls_peer_cn(const X509_NAME *name, struct tg_tls_peer *out)
{
    int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (idx < 0)
        return;
    const ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, d);
    /* A NUL inside would make the name another one once cut there. */
    if (n > 0 && memchr(utf8, '\0', (size_t)n) == NULL) {
        size_t len = (size_t)n;
        if (len >= sizeof(out->cn)) {
            len = sizeof(out->cn) - 1;
            while (len > 0 && (utf8[len] & 0xC0) == 0x80)
                len--; /* cut at a character boundary */
        }
        memcpy(out->cn, utf8, len);
        out->cn[len] = '\0';
    }
    OPENSSL_free(utf8);
}

int tg_mtls_peer_get(const SSL *ssl, struct tg_tls_peer *out)
{
    memset(out, 0, sizeof(*out));
    X509 *x = SSL_get0_peer_certificate(ssl);
    if (x == NULL)
        return TG_EINVAL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (X509_digest(x, EVP_sha256(), md, &n) != 1 || n != 32) {
        ERR_clear_error();
        return TG_ECRYPTO;
    }
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < n; i++) {
        out->sha256[2 * i] = hex[md[i] >> 4];
        out->sha256[2 * i + 1] = hex[md[i] & 15];
    }
    const X509_NAME *name = X509_get_subject_name(x);
    tg_mtls_name_text(name, out->subject, sizeof(out->subject));
    tg_mtls_peer_cn(name, out);
    tg_mtls_peer_san(x, out);
    out->resumed = SSL_session_reused(ssl) != 0;
    ERR_clear_error();
    return TG_OK;
}

int tg_mtls_handshake_done(SSL *ssl, SSL_CTX *session_ctx, time_t now, struct tg_tls_peer **peer,
                           int *count)
{
    *peer = NULL;
    *count = -1;
    if (SSL_session_reused(ssl)) {
        SSL_SESSION *sess = SSL_get0_session(ssl);
        if (!tg_mtls_session_usable(sess, now)) {
            SSL_CTX_remove_session(session_ctx, sess);
            *count = TG_STAT_CCERT_EXPIRED;
            return TG_EPROTO;
        }
    } else {
        *count = tg_mtls_outcome(ssl);
    }
    if (SSL_get0_peer_certificate(ssl) == NULL)
        return TG_OK;
    struct tg_tls_peer *p = malloc(sizeof(*p));
    if (p == NULL)
        return TG_ENOMEM;
    int rc = tg_mtls_peer_get(ssl, p);
    if (rc != TG_OK) {
        free(p);
        return rc == TG_EINVAL ? TG_ECRYPTO : rc;
    }
    *peer = p;
    return TG_OK;
}
