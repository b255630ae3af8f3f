/*
 * Provider-held keys (tg_keyprov.h, "Provider-held keys"): a test provider
 * "holder" keeps the private key to itself, like an HSM, and hands tlsgate a
 * public-only struct tg_pkey. A libssl server whose key is that tg_pkey
 * handshakes with a plain libssl client over a BIO pair.
 *
 * Covers: libssl accepts the key (has/match: SSL_CTX_use_PrivateKey and
 * SSL_CTX_check_private_key), RSA (PSS and PKCS#1 v1.5) and ECDSA signatures
 * through the provider, no software computation ever (a failure fails the
 * handshake and is counted as unrecoverable, not as a fallback), the
 * synchronous path refused, and the start-up rules of tg_keyprov_bind_held.
 */
#include <ev.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>

#include "config/tg_config.h"
#include "keyprov/tg_keyprov.h"
#include "ossl/tg_ossl.h"
#include "tg_test_util.h"
#include "providers/software/tg_software.h"
#include "providers/deferred/tg_deferred.h"

/* ---- the "holder" test provider ---- */

static EVP_PKEY *g_secret; /* the key "in the HSM" (default provider) */
static X509 *g_cert;       /* its certificate "in the HSM" */
static bool g_unavailable; /* global_init fails */
static int g_frees;        /* prov_key_free calls */
static int g_signs;        /* signatures the holder made */

struct holder_settings {
    bool fail; /* every operation fails like a device error */
    bool no_key;
};

struct holder_state {
    struct tg_keyop *q[16];
    size_t n;
};

static int holder_configure(const struct tg_conf_keyprov *conf, void **settings, bool *kx,
                            char *err, size_t errlen)
{
    struct holder_settings *s = calloc(1, sizeof(*s));
    *kx = false;
    int rc = tg_conf_params_bool(&conf->typed_config, "fail", &s->fail, err, errlen);
    if (rc == TG_OK)
        rc = tg_conf_params_bool(&conf->typed_config, "no_key", &s->no_key, err, errlen);
    if (rc == TG_OK)
        rc = tg_conf_params_check_unused(&conf->typed_config, "holder", err, errlen);
    if (rc != TG_OK) {
        free(s);
        return rc;
    }
    *settings = s;
    return TG_OK;
}

static void holder_settings_free(void *s)
{
    free(s);
}

static int holder_global_init(char *why, size_t whylen)
{
    if (g_unavailable) {
        snprintf(why, whylen, "no holder device");
        return TG_EUNAVAIL;
    }
    return TG_OK;
}

static void holder_key_free(void *k)
{
    g_frees++;
    EVP_PKEY_free(k);
}

static int holder_load_key(void *settings, EVP_PKEY *cert_pub, struct tg_pkey **key, X509 **leaf,
                           char *err, size_t errlen)
{
    const struct holder_settings *s = settings;
    (void)cert_pub;
    if (s->no_key) {
        snprintf(err, errlen, "holder: no such key");
        return TG_ECONFIG;
    }
    EVP_PKEY_up_ref(g_secret);
    int rc = tg_pkey_from_public(g_secret, g_secret, holder_key_free, key, err, errlen);
    if (rc != TG_OK) {
        EVP_PKEY_free(g_secret);
        return rc;
    }
    if (leaf != NULL) {
        X509_up_ref(g_cert);
        *leaf = g_cert;
    }
    return TG_OK;
}

static int holder_worker_init(const struct tg_keyprov_worker *w, void **state)
{
    (void)w;
    *state = calloc(1, sizeof(struct holder_state));
    return *state ? TG_OK : TG_ENOMEM;
}

static void holder_worker_cleanup(void *state)
{
    free(state);
}

static int holder_submit(void *state, struct tg_keyop *op)
{
    struct holder_state *st = state;
    assert_true(st->n < TG_ARRAY_LEN(st->q));
    st->q[st->n++] = op;
    return TG_EPENDING;
}

/* Sign with the key only the holder has. */
static int holder_sign(struct tg_keyop *op)
{
    EVP_PKEY *k = op->pkey->prov_key;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, k, "provider=default");
    size_t outlen = sizeof(op->out);
    int ok = ctx != NULL && EVP_PKEY_sign_init(ctx) > 0;
    if (ok && op->type == TG_KEYOP_RSA_SIGN) {
        ok = EVP_PKEY_CTX_set_rsa_padding(ctx, op->rsa_padding) > 0 &&
             EVP_PKEY_CTX_set_signature_md(ctx, op->md) > 0;
        if (ok && op->rsa_padding == TG_RSA_PAD_PSS)
            ok = EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, op->pss_saltlen) > 0 &&
                 EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, op->mgf1_md) > 0;
    }
    ok = ok && EVP_PKEY_sign(ctx, op->out, &outlen, op->in, op->inlen) > 0;
    EVP_PKEY_CTX_free(ctx);
    op->outlen = outlen;
    g_signs += ok;
    return ok ? TG_OK : TG_ECRYPTO;
}

static void holder_flush(void *state)
{
    struct holder_state *st = state;
    size_t n = st->n;
    st->n = 0;
    for (size_t i = 0; i < n; i++) {
        struct tg_keyop *op = st->q[i];
        const struct holder_settings *s = op->binding->settings;
        if (s->fail)
            tg_keyop_complete(op, TG_EDEVICE, TG_FALLBACK_DEVICE_ERROR);
        else
            tg_keyop_complete(op, holder_sign(op), TG_FALLBACK_DEVICE_ERROR);
    }
}

static size_t holder_pending(void *state)
{
    return ((struct holder_state *)state)->n;
}

static void holder_drain(void *state)
{
    holder_flush(state);
}

static const struct tg_keyprov_ops holder_provider = {
    .name = "holder",
    .description = "test: holds its keys",
    .configure = holder_configure,
    .settings_free = holder_settings_free,
    .global_init = holder_global_init,
    .load_key = holder_load_key,
    .worker_init = holder_worker_init,
    .worker_cleanup = holder_worker_cleanup,
    .submit = holder_submit,
    .flush = holder_flush,
    .pending = holder_pending,
    .drain = holder_drain,
};

/* ---- helpers ---- */

static struct tg_conf_param g_params[4];

static void conf_init(struct tg_conf_keyprov *c, const char *provider)
{
    memset(c, 0, sizeof(*c));
    memset(g_params, 0, sizeof(g_params));
    c->provider_name = (char *)provider;
    c->fallback = true; /* the default */
    c->path = (char *)"tls.certificates[0].private_key_provider";
    c->typed_config.path = (char *)"tls.certificates[0].private_key_provider.typed_config";
    c->typed_config.v = g_params;
    c->mark = (struct tg_conf_mark){"gw.yaml", 7, 11};
}

static void add_param(struct tg_conf_keyprov *c, const char *k, const char *v)
{
    struct tg_conf_param *p = &g_params[c->typed_config.n++];
    p->key = (char *)k;
    p->value = (char *)v;
    p->mark = (struct tg_conf_mark){"gw.yaml", 9, 13};
    p->value_mark = p->mark;
}

static void make_secret(const char *alg)
{
    EVP_PKEY_free(g_secret);
    X509_free(g_cert);
    char *cert_pem, *key_pem;
    tg_test_make_cert(alg, "localhost", &cert_pem, &key_pem);
    BIO *bio = BIO_new_mem_buf(key_pem, -1);
    g_secret = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    bio = BIO_new_mem_buf(cert_pem, -1);
    g_cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    assert_non_null(g_secret);
    assert_non_null(g_cert);
    free(cert_pem);
    OPENSSL_clear_free(key_pem, strlen(key_pem));
}

struct pair {
    SSL_CTX *sctx, *cctx;
    SSL *s, *c;
    struct tg_pkey *key;
    EVP_PKEY *wrapped;
    struct tg_keyprov_binding *b;
    int wakeups;
};

static int async_cb(SSL *s, void *arg)
{
    (void)s;
    ((struct pair *)arg)->wakeups++;
    return 1;
}

/* A server whose key the holder loaded (through tg_keyprov_bind_held, with
 * the certificate from the holder: certificate_chain left out). */
static void pair_init(struct pair *p, const struct tg_conf_keyprov *conf, bool async)
{
    memset(p, 0, sizeof(*p));
    char err[512] = "";
    X509 *leaf = NULL;
    int rc = tg_keyprov_bind_held(conf, NULL, &p->b, &p->key, &leaf, err, sizeof(err));
    if (rc != TG_OK)
        fail_msg("bind_held: %s", err);
    assert_true(p->b->held);
    assert_false(p->b->fallback);
    assert_true(tg_pkey_is_held(p->key));
    assert_null(p->key->sw);
    assert_null(p->key->d);
    assert_null(p->key->p);
    assert_null(p->key->priv);
    assert_non_null(p->key->pub);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(leaf), p->key->pub), 1);
    p->key->binding = p->b;
    p->wrapped = tg_ossl_wrap_pkey(p->key);
    assert_non_null(p->wrapped);

    p->sctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(p->sctx);
    SSL_CTX_set_num_tickets(p->sctx, 0);
    assert_int_equal(SSL_CTX_use_certificate(p->sctx, leaf), 1);
    /* has(private) and match: libssl takes the public-only key as the
     * certificate's private key. */
    assert_int_equal(SSL_CTX_use_PrivateKey(p->sctx, p->wrapped), 1);
    assert_int_equal(SSL_CTX_check_private_key(p->sctx), 1);
    X509_free(leaf);
    if (async) {
        SSL_CTX_set_mode(p->sctx, SSL_MODE_ASYNC);
        SSL_CTX_set_async_callback(p->sctx, async_cb);
    }
    p->cctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(p->cctx, SSL_VERIFY_NONE, NULL);
    p->s = SSL_new(p->sctx);
    p->c = SSL_new(p->cctx);
    SSL_set_async_callback_arg(p->s, p);
    BIO *b1, *b2;
    assert_int_equal(BIO_new_bio_pair(&b1, 0, &b2, 0), 1);
    SSL_set_bio(p->s, b1, b1);
    SSL_set_bio(p->c, b2, b2);
    SSL_set_accept_state(p->s);
    SSL_set_connect_state(p->c);
}

static void pair_free(struct pair *p)
{
    SSL_free(p->s);
    SSL_free(p->c);
    SSL_CTX_free(p->sctx);
    SSL_CTX_free(p->cctx);
    EVP_PKEY_free(p->wrapped);
    tg_pkey_unref(p->key);
    tg_keyprov_binding_free(p->b);
}

/* 1: both sides finished; 0: the handshake failed. */
static int pair_handshake(struct pair *p, struct tg_keyprov_set *set, struct tg_keyctx *kctx)
{
    int sdone = 0, cdone = 0;
    for (int i = 0; i < 200 && !(sdone && cdone); i++) {
        if (!cdone) {
            int r = SSL_do_handshake(p->c);
            if (r == 1)
                cdone = 1;
            else if (SSL_get_error(p->c, r) != SSL_ERROR_WANT_READ)
                return 0;
        }
        if (!sdone) {
            tg_keyctx_set_current(kctx);
            int r = SSL_do_handshake(p->s);
            int e = r == 1 ? 0 : SSL_get_error(p->s, r);
            tg_keyctx_set_current(NULL);
            if (r == 1) {
                sdone = 1;
            } else if (e == SSL_ERROR_WANT_ASYNC) {
                assert_non_null(set);
                tg_keyprov_set_flush(set);
            } else if (e != SSL_ERROR_WANT_READ) {
                return 0;
            }
        }
    }
    return sdone && cdone;
}

struct env {
    struct ev_loop *loop;
    struct tg_keyprov_set *set;
};

static void env_init(struct env *e)
{
    e->loop = ev_loop_new(EVFLAG_AUTO);
    assert_int_equal(tg_keyprov_set_new(e->loop, 0, NULL, &e->set), TG_OK);
    tg_keyprov_set_current(e->set);
}

static void env_free(struct env *e)
{
    tg_keyprov_set_free(e->set);
    tg_keyprov_set_current(NULL);
    ev_loop_destroy(e->loop);
}

static bool stats_have(const char *needle)
{
    struct tg_buf out = TG_BUF_INIT;
    tg_keyprov_render_stats(&out);
    bool found = strstr(out.data, needle) != NULL;
    if (!found)
        print_message("no '%s' in:\n%s\n", needle, out.data);
    tg_buf_free(&out);
    return found;
}

/* ---- tests ---- */

static void held_case(const char *alg, int maxver, const char *sigalgs)
{
    make_secret(alg);
    struct tg_conf_keyprov conf;
    conf_init(&conf, "holder");
    struct env env;
    struct pair p;
    pair_init(&p, &conf, true);
    env_init(&env);
    SSL_set_max_proto_version(p.c, maxver);
    if (sigalgs != NULL)
        assert_int_equal(SSL_set1_sigalgs_list(p.c, sigalgs), 1);
    struct tg_keyctx kctx = {0};
    int signs = g_signs;
    assert_int_equal(pair_handshake(&p, env.set, &kctx), 1);
    assert_int_equal(kctx.waits, 1);
    assert_int_equal(kctx.failures, 0);
    assert_int_equal(g_signs, signs + 1); /* the holder signed, nobody else */
    env_free(&env);
    int frees = g_frees;
    pair_free(&p);
    /* The key's handle goes with its last user, the SSL_CTX (the tlsgate
     * provider's registry holds a key only while it is imported). */
    assert_int_equal(g_frees, frees + 1);
}

static void test_held_handshakes(void **state)
{
    (void)state;
    held_case("RSA:2048", TLS1_3_VERSION, NULL);             /* RSA-PSS */
    held_case("RSA:2048", TLS1_2_VERSION, "RSA+SHA256");     /* PKCS#1 v1.5 */
    held_case("RSA:3072", TLS1_2_VERSION, "RSA-PSS+SHA384"); /* PSS, SHA-384 */
    held_case("EC:P-256", TLS1_3_VERSION, NULL);             /* ECDSA */
    held_case("EC:P-384", TLS1_2_VERSION, "ECDSA+SHA384");   /* ECDSA P-384 */
}

static void test_held_failure_is_not_a_fallback(void **state)
{
    (void)state;
    make_secret("RSA:2048");
    struct tg_conf_keyprov conf;
    conf_init(&conf, "holder");
    add_param(&conf, "fail", "true");
    struct env env;
    struct pair p;
    pair_init(&p, &conf, true);
    env_init(&env);
    struct tg_keyctx kctx = {0};
    int signs = g_signs;
    assert_int_equal(pair_handshake(&p, env.set, &kctx), 0);
    ERR_clear_error();
    assert_int_equal(kctx.failures, 1);
    assert_int_equal(g_signs, signs);
    assert_true(stats_have(
        "tlsgate_keyprov_unrecoverable_total{provider=\"holder\",reason=\"device_error\"} 1"));
    assert_true(stats_have(
        "tlsgate_keyprov_fallbacks_total{provider=\"holder\",reason=\"device_error\"} 0"));
    assert_true(stats_have(
        "tlsgate_keyprov_operations_failed_total{provider=\"holder\",type=\"rsa_sign\"} 1"));
    env_free(&env);
    pair_free(&p);
}

static void test_held_sync_refused(void **state)
{
    (void)state;
    make_secret("EC:P-256");
    struct tg_conf_keyprov conf;
    conf_init(&conf, "holder");
    struct pair p;
    pair_init(&p, &conf, false); /* no ASYNC job, no worker */
    assert_int_equal(pair_handshake(&p, NULL, NULL), 0);
    ERR_clear_error();

    struct tg_keyop op;
    tg_keyop_init(&op, TG_KEYOP_ECDSA_SIGN);
    op.pkey = p.key;
    op.binding = p.b;
    op.inlen = 32;
    memset(op.in, 1, 32);
    assert_int_equal(tg_keyop_run(&op), TG_EUNAVAIL);
    /* Nothing computes with it in software either. */
    tg_keyop_init(&op, TG_KEYOP_ECDSA_SIGN);
    op.pkey = p.key;
    op.inlen = 32;
    assert_int_equal(tg_keyop_compute_sw(&op), TG_EUNAVAIL);
    assert_int_equal(op.outlen, 0);

    /* The private half cannot be exported from the tlsgate provider. */
    EVP_PKEY *copy = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", "provider=default");
    OSSL_PARAM *params = NULL;
    assert_int_equal(EVP_PKEY_todata(p.wrapped, EVP_PKEY_KEYPAIR, &params), 0);
    assert_int_equal(EVP_PKEY_todata(p.wrapped, EVP_PKEY_PUBLIC_KEY, &params), 1);
    OSSL_PARAM_free(params);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(copy);
    ERR_clear_error();
    pair_free(&p);
}

static void test_bind_held_rules(void **state)
{
    (void)state;
    make_secret("RSA:2048");
    struct tg_conf_keyprov conf;
    struct tg_keyprov_binding *b = (struct tg_keyprov_binding *)1;
    struct tg_pkey *key = (struct tg_pkey *)1;
    X509 *leaf = (X509 *)1;
    char err[512];

    /* An explicit fallback: true is refused, at its own position. */
    conf_init(&conf, "holder");
    conf.fallback_set = true;
    conf.fallback_mark = (struct tg_conf_mark){"gw.yaml", 8, 23};
    assert_int_equal(tg_keyprov_bind_held(&conf, NULL, &b, &key, &leaf, err, sizeof(err)),
                     TG_ECONFIG);
    assert_null(b);
    assert_null(key);
    assert_null(leaf);
    assert_string_equal(err, "gw.yaml:8:23: tls.certificates[0].private_key_provider.fallback: "
                             "provider 'holder' holds this certificate's private key: there is no "
                             "software copy to fall back to (remove fallback or set it to false)");
    /* fallback: false written out is fine. */
    conf.fallback = false;
    assert_int_equal(tg_keyprov_bind_held(&conf, NULL, &b, &key, &leaf, err, sizeof(err)), TG_OK);
    tg_pkey_unref(key);
    X509_free(leaf);
    tg_keyprov_binding_free(b);

    /* A provider that does not hold keys. */
    conf_init(&conf, "deferred");
    assert_int_equal(tg_keyprov_bind_held(&conf, NULL, &b, &key, &leaf, err, sizeof(err)),
                     TG_ECONFIG);
    assert_string_equal(err, "gw.yaml:7:11: tls.certificates[0].private_key_provider: provider "
                             "'deferred' does not hold private keys: give the certificate's "
                             "private_key");

    /* Cannot run here: an error even though fallback defaults to true. */
    tg_keyprov_shutdown();
    g_unavailable = true;
    conf_init(&conf, "holder");
    assert_int_equal(tg_keyprov_bind_held(&conf, NULL, &b, &key, &leaf, err, sizeof(err)),
                     TG_EUNAVAIL);
    assert_string_equal(err, "gw.yaml:7:11: tls.certificates[0].private_key_provider: provider "
                             "'holder' cannot run here: no holder device");
    tg_keyprov_shutdown();
    g_unavailable = false;

    /* The provider cannot find the key: its reason, at the block. */
    conf_init(&conf, "holder");
    add_param(&conf, "no_key", "true");
    assert_int_equal(tg_keyprov_bind_held(&conf, NULL, &b, &key, NULL, err, sizeof(err)),
                     TG_ECONFIG);
    assert_null(b);
    assert_string_equal(
        err, "gw.yaml:7:11: tls.certificates[0].private_key_provider: holder: no such key");

    /* Its own typed_config errors. */
    conf_init(&conf, "holder");
    add_param(&conf, "colour", "blue");
    assert_int_equal(tg_keyprov_bind_held(&conf, NULL, &b, &key, NULL, err, sizeof(err)),
                     TG_ECONFIG);
    assert_non_null(strstr(err, "unknown key 'colour'"));
}

static void test_pkey_from_public_rejects(void **state)
{
    (void)state;
    struct tg_pkey *k = (struct tg_pkey *)1;
    char why[256];
    EVP_PKEY *small = tg_test_rsa_key(512, 512, 65537);
    assert_non_null(small);
    int token = 0;
    assert_int_equal(tg_pkey_from_public(small, &token, NULL, &k, why, sizeof(why)), TG_ECONFIG);
    assert_null(k);
    assert_string_equal(why, "RSA key of 1024 bits is too small (minimum 2048)");
    EVP_PKEY_free(small);
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_int_equal(tg_pkey_from_public(ed, &token, NULL, &k, why, sizeof(why)), TG_ECONFIG);
    assert_non_null(strstr(why, "unsupported key type"));
    EVP_PKEY_free(ed);
    ERR_clear_error();
}

static int teardown(void **state)
{
    (void)state;
    return 0;
}

int main(void)
{
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider, &tg_deferred_provider, &holder_provider);
    assert_int_equal(tg_ossl_init(), TG_OK);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_held_handshakes),
        cmocka_unit_test(test_held_failure_is_not_a_fallback),
        cmocka_unit_test(test_held_sync_refused),
        cmocka_unit_test(test_bind_held_rules),
        cmocka_unit_test(test_pkey_from_public_rejects),
    };
    int rc = cmocka_run_group_tests(tests, NULL, teardown);
    tg_keyprov_shutdown();
    tg_ossl_cleanup();
    EVP_PKEY_free(g_secret);
    X509_free(g_cert);
    return rc;
}
