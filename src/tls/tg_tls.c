#include "tls/tg_tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/tg_log.h"
#include "ossl/tg_ossl.h"
#include "tls/tg_mtls.h"

#define TG_DEFAULT_CIPHERS                                                                         \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TG_DEFAULT_GROUPS "X25519:P-256:P-384"
#define TG_MAX_NAMES      64

struct tg_tls_cert {
    X509 *leaf;
    STACK_OF(X509) * chain;
    struct tg_pkey *key;
    EVP_PKEY *wrapped;
    struct tg_keyprov_binding *binding;
    char *names[TG_MAX_NAMES];
    size_t n_names;
    const struct tg_conf_cert *conf;
};

struct tg_tls_ctx {
    SSL_CTX *ctx;
    struct tg_tls_cert **certs; /* the certificates it holds (not owned) */
    size_t n_certs;
};

struct tg_tls_listener {
    struct tg_tls_cert *certs;
    size_t n_certs;
    struct tg_tls_ctx *ctxs;
    size_t n_ctxs;
    unsigned char *alpn_wire; /* ALPN protocol list in wire format */
    size_t alpn_len;
    const struct tg_keyprov_binding *kx;
    struct tg_keyprov_binding *kx_own; /* from tls.key_exchange_provider */
    struct tg_mtls *mtls;              /* tls.client_certificate; NULL: none asked for */
};

bool tg_tls_name_matches(const char *pattern, const char *host)
{
    if (pattern == NULL || host == NULL)
        return false;
    if (strcasecmp(pattern, host) == 0)
        return true;
    if (pattern[0] != '*' || pattern[1] != '.')
        return false;
    const char *dot = strchr(host, '.');
    /* The wildcard stands for one non-empty label. */
    return dot != NULL && dot != host && strcasecmp(dot + 1, pattern + 2) == 0;
}

static void tg_cert_clear(struct tg_tls_cert *c)
{
    X509_free(c->leaf);
    sk_X509_pop_free(c->chain, X509_free);
    EVP_PKEY_free(c->wrapped);
    /* Nothing will name this key again: caches may let it go. */
    tg_pkey_retire(c->key);
    tg_pkey_unref(c->key);
    tg_keyprov_binding_free(c->binding);
    for (size_t i = 0; i < c->n_names; i++)
        free(c->names[i]);
    memset(c, 0, sizeof(*c));
}

void tg_tls_listener_free(struct tg_tls_listener *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n_ctxs; i++) {
        SSL_CTX_free(t->ctxs[i].ctx);
        free(t->ctxs[i].certs);
    }
    free(t->ctxs);
    for (size_t i = 0; i < t->n_certs; i++)
        tg_cert_clear(&t->certs[i]);
    free(t->certs);
    free(t->alpn_wire);
    tg_keyprov_binding_free(t->kx_own);
    tg_mtls_free(t->mtls);
    free(t);
}

SSL_CTX *tg_tls_listener_ctx(const struct tg_tls_listener *t)
{
    return t->ctxs[0].ctx;
}

const struct tg_keyprov_binding *tg_tls_listener_kx(const struct tg_tls_listener *t)
{
    return t->kx;
}

int tg_tls_listener_cert_of(const struct tg_tls_listener *t, const struct tg_pkey *key,
                            const char **name, const char **provider)
{
    *name = NULL;
    *provider = NULL;
    for (size_t i = 0; key != NULL && i < t->n_certs; i++) {
        if (t->certs[i].key == key) {
            *name = t->certs[i].n_names > 0 ? t->certs[i].names[0] : NULL;
            *provider = t->certs[i].binding->ops->name;
            return (int)i;
        }
    }
    return -1;
}

const struct tg_mtls *tg_tls_listener_mtls(const struct tg_tls_listener *t)
{
    return t->mtls;
}

/* The last OpenSSL error as text (and the queue cleared). */
static const char *tg_ossl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0)
        snprintf(buf, len, "unknown error");
    else
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

static int tg_cert_add_name(struct tg_tls_cert *c, const char *name, size_t len)
{
    if (c->n_names >= TG_MAX_NAMES || len == 0 || memchr(name, '\0', len) != NULL)
        return TG_OK; /* ignore extra or malformed names */
    char *s = strndup(name, len);
    if (s == NULL)
        return TG_ENOMEM;
    c->names[c->n_names++] = s;
    return TG_OK;
}

/* SNI names: the configured server_names, else the certificate's DNS SANs,
 * else its subject CN. */
static int tg_cert_names(struct tg_tls_cert *c)
{
    const struct tg_conf_cert *conf = c->conf;
    if (conf->n_server_names > 0) {
        for (size_t i = 0; i < conf->n_server_names; i++)
            TG_GUARD(tg_cert_add_name(c, conf->server_names[i], strlen(conf->server_names[i])));
        return TG_OK;
    }
    GENERAL_NAMES *sans = X509_get_ext_d2i(c->leaf, NID_subject_alt_name, NULL, NULL);
    int rc = TG_OK;
    for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans) && rc == TG_OK; i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        if (gn->type == GEN_DNS)
            rc = tg_cert_add_name(c, (const char *)ASN1_STRING_get0_data(gn->d.dNSName),
                                  (size_t)ASN1_STRING_length(gn->d.dNSName));
    }
    GENERAL_NAMES_free(sans);
    if (rc == TG_OK && c->n_names == 0) {
        char cn[256];
        int n = X509_NAME_get_text_by_NID(X509_get_subject_name(c->leaf), NID_commonName, cn,
                                          sizeof(cn));
        if (n > 0)
            rc = tg_cert_add_name(c, cn, (size_t)n);
    }
    return rc;
}

/* The mark of a key when it was set in the file, else its parent's. */
static const struct tg_conf_mark *tg_mark_or(const struct tg_conf_mark *m,
                                             const struct tg_conf_mark *parent)
{
    return m->line > 0 ? m : parent;
}

/* certificate_chain: the leaf first, then intermediates. */
static int tg_cert_load_chain(struct tg_tls_cert *c, const struct tg_conf_cert *conf, char *err,
                              size_t errlen)
{
    char why[256], path[512];
    snprintf(path, sizeof(path), "%s.certificate_chain", conf->path);
    BIO *bio = BIO_new_mem_buf(conf->chain.data, (int)conf->chain.data_len);
    if (bio == NULL)
        return TG_ENOMEM;
    c->leaf = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    if (c->leaf == NULL) {
        BIO_free(bio);
        tg_conf_error(err, errlen, &conf->chain.mark, path, "cannot parse the certificate: %s",
                      tg_ossl_reason(why, sizeof(why)));
        return TG_ECONFIG;
    }
    c->chain = sk_X509_new_null();
    X509 *x;
    while (c->chain != NULL && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (!sk_X509_push(c->chain, x)) {
            X509_free(x);
            BIO_free(bio);
            return TG_ENOMEM;
        }
    }
    BIO_free(bio);
    /* The loop ends on "no more PEM": that is not an error. */
    ERR_clear_error();
    return c->chain == NULL ? TG_ENOMEM : TG_OK;
}

/* private_key from the configuration, and its provider (decided here). */
static int tg_cert_load_key(struct tg_tls_cert *c, const struct tg_conf_cert *conf, char *err,
                            size_t errlen)
{
    char why[256], path[512];
    snprintf(path, sizeof(path), "%s.private_key", conf->path);
    int rc = tg_pkey_load_pem(conf->private_key.data, conf->private_key.data_len, &c->key, why,
                              sizeof(why));
    if (rc != TG_OK) {
        tg_conf_error(err, errlen, &conf->private_key.mark, path, "%s", why);
        return TG_ECONFIG;
    }
    EVP_PKEY *leaf_pub = X509_get0_pubkey(c->leaf);
    if (leaf_pub == NULL || EVP_PKEY_eq(leaf_pub, c->key->pub) != 1) {
        ERR_clear_error();
        tg_conf_error(err, errlen, &conf->private_key.mark, path,
                      "does not match the certificate in certificate_chain (%s)",
                      conf->chain.filename ? conf->chain.filename : "inline");
        return TG_ECONFIG;
    }
    rc = tg_keyprov_bind(&conf->keyprov, c->key, &c->binding, err, errlen);
    return rc == TG_OK || rc == TG_ENOMEM ? rc : TG_ECONFIG;
}

/* No private_key: the provider holds the key (and, without
 * certificate_chain, gives the certificate too). */
static int tg_cert_load_held(struct tg_tls_cert *c, const struct tg_conf_cert *conf, char *err,
                             size_t errlen)
{
    X509 *leaf = NULL;
    int rc = tg_keyprov_bind_held(&conf->keyprov, c->leaf ? X509_get0_pubkey(c->leaf) : NULL,
                                  &c->binding, &c->key, c->leaf ? NULL : &leaf, err, errlen);
    if (rc != TG_OK)
        return rc == TG_ENOMEM ? rc : TG_ECONFIG;
    if (leaf != NULL) {
        c->leaf = leaf;
        c->chain = sk_X509_new_null();
        if (c->chain == NULL)
            return TG_ENOMEM;
    }
    EVP_PKEY *leaf_pub = X509_get0_pubkey(c->leaf);
    if (leaf_pub == NULL || EVP_PKEY_eq(leaf_pub, c->key->pub) != 1) {
        ERR_clear_error();
        tg_conf_error(err, errlen, &conf->keyprov.mark, conf->keyprov.path,
                      "the key provider '%s' holds does not match the certificate %s",
                      c->binding->ops->name,
                      leaf != NULL           ? "it found with the key"
                      : conf->chain.filename ? conf->chain.filename
                                             : "in certificate_chain (inline)");
        return TG_ECONFIG;
    }
    return TG_OK;
}

static int tg_cert_load(struct tg_tls_cert *c, const struct tg_conf_cert *conf, char *err,
                        size_t errlen)
{
    c->conf = conf;
    if (conf->chain.data != NULL)
        TG_GUARD(tg_cert_load_chain(c, conf, err, errlen));
    TG_GUARD(conf->private_key.data != NULL ? tg_cert_load_key(c, conf, err, errlen)
                                            : tg_cert_load_held(c, conf, err, errlen));
    c->key->binding = c->binding;
    c->key->label = strdup(conf->path);
    if (c->key->label == NULL)
        return TG_ENOMEM;

    c->wrapped = tg_ossl_wrap_pkey(c->key);
    if (c->wrapped == NULL) {
        char path[512];
        snprintf(path, sizeof(path), "%s.private_key", conf->path);
        tg_conf_error(err, errlen, tg_mark_or(&conf->private_key.mark, &conf->mark), path,
                      "the tlsgate provider cannot hold this key");
        return TG_ECRYPTO;
    }
    return tg_cert_names(c);
}

static bool tg_same_names(const struct tg_tls_cert *a, const struct tg_tls_cert *b)
{
    if (a->n_names != b->n_names)
        return false;
    for (size_t i = 0; i < a->n_names; i++) {
        if (strcasecmp(a->names[i], b->names[i]) != 0)
            return false;
    }
    return true;
}

static int tg_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    const struct tg_tls_listener *t = arg;
    unsigned char *sel = NULL;
    /* Server preference: the configured order wins. */
    if (SSL_select_next_proto(&sel, outlen, t->alpn_wire, (unsigned int)t->alpn_len, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED) {
        *out = sel;
        return SSL_TLSEXT_ERR_OK;
    }
    /* No common protocol: carry on without ALPN rather than failing; the
     * upstream decides what it speaks. */
    return SSL_TLSEXT_ERR_NOACK;
}

static int tg_sni_cb(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    const struct tg_tls_listener *t = arg;
    const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (host == NULL || t->n_ctxs < 2)
        return SSL_TLSEXT_ERR_OK;
    for (size_t i = 0; i < t->n_ctxs; i++) {
        const struct tg_tls_ctx *c = &t->ctxs[i];
        const struct tg_tls_cert *cert = c->certs[0];
        for (size_t n = 0; n < cert->n_names; n++) {
            if (tg_tls_name_matches(cert->names[n], host)) {
                if (i != 0 && SSL_set_SSL_CTX(ssl, c->ctx) == NULL)
                    return SSL_TLSEXT_ERR_ALERT_FATAL;
                return SSL_TLSEXT_ERR_OK;
            }
        }
    }
    return SSL_TLSEXT_ERR_OK; /* unknown name: the default certificate */
}

static int tg_ctx_configure(struct tg_tls_listener *t, struct tg_tls_ctx *tc,
                            const struct tg_conf_listener *conf, SSL_async_callback_fn async_cb,
                            char *err, size_t errlen)
{
    const struct tg_conf_tls *tls = &conf->tls;
    char why[256], path[512];
    const char *propq = t->kx != NULL ? TG_OSSL_KX_PROPQ : NULL;
    SSL_CTX *ctx = tc->ctx = SSL_CTX_new_ex(NULL, propq, TLS_server_method());
    if (ctx == NULL) {
        tg_conf_error(err, errlen, &tls->mark, conf->path, "cannot create a TLS context: %s",
                      tg_ossl_reason(why, sizeof(why)));
        return TG_ECRYPTO;
    }
    uint64_t opts = SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                    SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_IGNORE_UNEXPECTED_EOF;
    if (!tls->session_resumption)
        opts |= SSL_OP_NO_TICKET;
    SSL_CTX_set_options(ctx, opts);
    SSL_CTX_set_mode(ctx, SSL_MODE_ASYNC | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_NO_AUTO_CHAIN |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_async_callback(ctx, async_cb);
    /* Read whole socket buffers instead of a record header and then its
     * body: half the read(2) calls. The pump drains what OpenSSL buffered. */
    SSL_CTX_set_read_ahead(ctx, 1);
    if (!SSL_CTX_set_min_proto_version(ctx, tls->min_version) ||
        !SSL_CTX_set_max_proto_version(ctx, tls->max_version)) {
        tg_conf_error(err, errlen, &tls->mark, conf->path, "unsupported TLS version range");
        return TG_ECONFIG;
    }
    /* TLS 1.3 tickets are sent after the handshake; one is enough for a
     * client to resume, and none when resumption is off. */
    SSL_CTX_set_num_tickets(ctx, tls->session_resumption ? 1 : 0);
    if (tls->session_resumption) {
        static const unsigned char sid_ctx[] = "tlsgate";
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
        SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    snprintf(path, sizeof(path), "%s.tls.cipher_list", conf->path);
    if (!SSL_CTX_set_cipher_list(ctx, tls->cipher_list ? tls->cipher_list : TG_DEFAULT_CIPHERS)) {
        tg_conf_error(err, errlen, tg_mark_or(&tls->cipher_list_mark, &tls->mark), path,
                      "no usable cipher in '%s'",
                      tls->cipher_list ? tls->cipher_list : TG_DEFAULT_CIPHERS);
        ERR_clear_error();
        return TG_ECONFIG;
    }
    /* Static-RSA key exchange would need a private-key *decryption* from the
     * key providers, which tlsgate does not offer (and which gives no forward
     * secrecy): refuse such ciphers up front rather than failing handshakes. */
    STACK_OF(SSL_CIPHER) *ciphers = SSL_CTX_get_ciphers(ctx);
    for (int i = 0; i < sk_SSL_CIPHER_num(ciphers); i++) {
        const SSL_CIPHER *ci = sk_SSL_CIPHER_value(ciphers, i);
        if (SSL_CIPHER_get_kx_nid(ci) == NID_kx_rsa) {
            tg_conf_error(err, errlen, tg_mark_or(&tls->cipher_list_mark, &tls->mark), path,
                          "'%s' uses RSA key exchange, which tlsgate does not offer (no "
                          "forward secrecy); use ECDHE ciphers",
                          SSL_CIPHER_get_name(ci));
            return TG_ECONFIG;
        }
    }
    snprintf(path, sizeof(path), "%s.tls.cipher_suites", conf->path);
    if (tls->cipher_suites != NULL && !SSL_CTX_set_ciphersuites(ctx, tls->cipher_suites)) {
        tg_conf_error(err, errlen, tg_mark_or(&tls->cipher_suites_mark, &tls->mark), path,
                      "invalid TLS 1.3 cipher suites '%s'", tls->cipher_suites);
        ERR_clear_error();
        return TG_ECONFIG;
    }
    /* Explicit groups: a provider's TLS-GROUP list must not reorder them. */
    snprintf(path, sizeof(path), "%s.tls.groups", conf->path);
    if (!SSL_CTX_set1_groups_list(ctx, tls->groups ? tls->groups : TG_DEFAULT_GROUPS)) {
        tg_conf_error(err, errlen, tg_mark_or(&tls->groups_mark, &tls->mark), path,
                      "invalid or unsupported groups '%s'",
                      tls->groups ? tls->groups : TG_DEFAULT_GROUPS);
        ERR_clear_error();
        return TG_ECONFIG;
    }
    if (t->alpn_wire != NULL)
        SSL_CTX_set_alpn_select_cb(ctx, tg_alpn_select, t);
    for (size_t i = 0; i < tc->n_certs; i++) {
        struct tg_tls_cert *c = tc->certs[i];
        snprintf(path, sizeof(path), "%s.certificate_chain", c->conf->path);
        if (SSL_CTX_use_certificate(ctx, c->leaf) != 1 || SSL_CTX_set1_chain(ctx, c->chain) != 1) {
            tg_conf_error(err, errlen, tg_mark_or(&c->conf->chain.mark, &c->conf->mark), path,
                          "certificate refused: %s", tg_ossl_reason(why, sizeof(why)));
            return TG_ECONFIG;
        }
        snprintf(path, sizeof(path), "%s.private_key", c->conf->path);
        if (SSL_CTX_use_PrivateKey(ctx, c->wrapped) != 1) {
            tg_conf_error(err, errlen, tg_mark_or(&c->conf->private_key.mark, &c->conf->mark), path,
                          "key refused: %s", tg_ossl_reason(why, sizeof(why)));
            return TG_ECONFIG;
        }
    }
    /* After the session settings: it sets its own session id context. */
    if (t->mtls != NULL && tg_mtls_apply(t->mtls, ctx) != TG_OK) {
        tg_conf_error(err, errlen, &tls->client_cert.mark, tls->client_cert.path,
                      "cannot set up client certificate verification");
        return TG_ECRYPTO;
    }
    return TG_OK;
}

static int tg_alpn_build(struct tg_tls_listener *t, const struct tg_conf_tls *tls)
{
    if (tls->n_alpn == 0)
        return TG_OK;
    size_t len = 0;
    for (size_t i = 0; i < tls->n_alpn; i++)
        len += 1 + strlen(tls->alpn[i]);
    t->alpn_wire = malloc(len);
    if (t->alpn_wire == NULL)
        return TG_ENOMEM;
    size_t off = 0;
    for (size_t i = 0; i < tls->n_alpn; i++) {
        size_t n = strlen(tls->alpn[i]);
        if (n == 0 || n > 255)
            return TG_ECONFIG;
        t->alpn_wire[off++] = (unsigned char)n;
        memcpy(t->alpn_wire + off, tls->alpn[i], n);
        off += n;
    }
    t->alpn_len = off;
    return TG_OK;
}

int tg_tls_listener_new(const struct tg_conf_listener *conf, SSL_async_callback_fn async_cb,
                        struct tg_tls_listener **out, char *err, size_t errlen)
{
    *out = NULL;
    const struct tg_conf_tls *tls = &conf->tls;
    int rc = TG_ENOMEM;
    struct tg_tls_listener *t = calloc(1, sizeof(*t));
    if (t == NULL)
        goto out;
    t->certs = calloc(tls->n_certs, sizeof(*t->certs));
    t->ctxs = calloc(tls->n_certs, sizeof(*t->ctxs));
    if (t->certs == NULL || t->ctxs == NULL)
        goto out;
    for (size_t i = 0; i < tls->n_certs; i++) {
        t->n_certs = i + 1;
        rc = tg_cert_load(&t->certs[i], &tls->certs[i], err, errlen);
        if (rc != TG_OK)
            goto out;
    }
    if (tls->has_kx_provider) {
        /* An explicit choice, independent of the certificates. */
        const struct tg_conf_keyprov *kc = &tls->kx_provider;
        rc = tg_keyprov_bind(kc, NULL, &t->kx_own, err, errlen);
        if (rc != TG_OK) {
            rc = rc == TG_ENOMEM ? rc : TG_ECONFIG;
            goto out;
        }
        if (!t->kx_own->ops->does_kx && strcmp(t->kx_own->configured, "software") != 0 &&
            strcmp(t->kx_own->ops->name, t->kx_own->configured) == 0) {
            tg_conf_error(err, errlen, &kc->mark, kc->path,
                          "provider '%s' does not do key exchange (cryptomb and deferred do; "
                          "software keeps it in OpenSSL)",
                          t->kx_own->ops->name);
            rc = TG_ECONFIG;
            goto out;
        }
        if (t->kx_own->kx)
            t->kx = t->kx_own;
    } else if (t->certs[0].binding->kx) {
        t->kx = t->certs[0].binding;
    }
    rc = tg_alpn_build(t, tls);
    if (rc != TG_OK)
        goto out;
    if (tls->client_cert.mode != TG_CCERT_OFF) {
        rc = tg_mtls_new(&tls->client_cert, &t->mtls, err, errlen);
        if (rc != TG_OK)
            goto out;
    }
    /* Group certificates by name set, in configuration order. */
    for (size_t i = 0; i < t->n_certs; i++) {
        struct tg_tls_ctx *tc = NULL;
        for (size_t j = 0; j < t->n_ctxs; j++) {
            if (tg_same_names(t->ctxs[j].certs[0], &t->certs[i])) {
                tc = &t->ctxs[j];
                break;
            }
        }
        if (tc == NULL) {
            tc = &t->ctxs[t->n_ctxs++];
            tc->certs = calloc(t->n_certs, sizeof(*tc->certs));
            if (tc->certs == NULL) {
                rc = TG_ENOMEM;
                goto out;
            }
        }
        for (size_t j = 0; j < tc->n_certs; j++) {
            if (tc->certs[j]->key->type == t->certs[i].key->type) {
                tg_conf_error(err, errlen, &tls->certs[i].mark, tls->certs[i].path,
                              "another %s certificate already serves the same names",
                              t->certs[i].key->type == TG_PKEY_RSA ? "RSA" : "EC");
                rc = TG_ECONFIG;
                goto out;
            }
        }
        tc->certs[tc->n_certs++] = &t->certs[i];
    }
    for (size_t j = 0; j < t->n_ctxs; j++) {
        rc = tg_ctx_configure(t, &t->ctxs[j], conf, async_cb, err, errlen);
        if (rc != TG_OK)
            goto out;
    }
    SSL_CTX_set_tlsext_servername_callback(t->ctxs[0].ctx, tg_sni_cb);
    SSL_CTX_set_tlsext_servername_arg(t->ctxs[0].ctx, t);
    *out = t;
    t = NULL;
    rc = TG_OK;
out:
    tg_tls_listener_free(t);
    return rc;
}

size_t tg_tls_listener_cert_count(const struct tg_tls_listener *t)
{
    return t->n_certs;
}

void tg_tls_listener_cert_info(const struct tg_tls_listener *t, size_t i,
                               struct tg_tls_cert_info *out)
{
    memset(out, 0, sizeof(*out));
    const struct tg_tls_cert *c = &t->certs[i];
    size_t off = 0;
    for (size_t n = 0; n < c->n_names && off < sizeof(out->names) - 1; n++) {
        int w =
            snprintf(out->names + off, sizeof(out->names) - off, "%s%s", n ? "," : "", c->names[n]);
        if (w < 0)
            break;
        off += (size_t)w;
    }
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(c->leaf), NULL);
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    snprintf(out->serial, sizeof(out->serial), "%s", hex != NULL ? hex : "?");
    OPENSSL_free(hex);
    BN_free(bn);
    struct tm tm;
    if (ASN1_TIME_to_tm(X509_get0_notAfter(c->leaf), &tm) == 1)
        out->not_after = (int64_t)timegm(&tm);
    ERR_clear_error();
}

void tg_tls_listener_describe(const struct tg_tls_listener *t, const char *listener_name)
{
    for (size_t i = 0; i < t->n_certs; i++) {
        const struct tg_tls_cert *c = &t->certs[i];
        char names[256] = "";
        size_t off = 0;
        for (size_t n = 0; n < c->n_names && off < sizeof(names) - 1; n++)
            off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s", n ? "," : "",
                                    c->names[n]);
        char note[96] = "";
        if (strcmp(c->binding->configured, c->binding->ops->name) != 0)
            snprintf(note, sizeof(note), " (fallback from '%s')", c->binding->configured);
        else if (c->binding->held)
            snprintf(note, sizeof(note), " (private key held by the provider)");
        TG_INFO("listener %s: certificate %zu: %s %d-bit, names [%s], key provider '%s'%s",
                listener_name, i, c->key->type == TG_PKEY_RSA ? "RSA" : "EC", c->key->bits, names,
                c->binding->ops->name, note);
    }
    TG_INFO("listener %s: key exchange: %s", listener_name,
            t->kx ? t->kx->ops->name : "software (inline)");
    if (t->mtls != NULL)
        TG_INFO("listener %s: client certificates: %s, %zu CA certificate(s), %zu CRL(s)",
                listener_name, tg_mtls_mode(t->mtls) == TG_CCERT_REQUIRE ? "required" : "optional",
                tg_mtls_ca_count(t->mtls), tg_mtls_crl_count(t->mtls));
}
