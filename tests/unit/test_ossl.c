/*
 * The OpenSSL bridge, end to end in memory: a libssl server whose key lives
 * in the tlsgate provider handshakes with a plain libssl client over a BIO
 * pair. Covers the synchronous path (no ASYNC job), the asynchronous path
 * through the deferred provider (pause, wake-up, resume), key exchange routed
 * through the provider, cancellation, and fault injection.
 */
#include <ev.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>

#include "config/tg_config.h"
#include "keyprov/tg_keyprov.h"
#include "ossl/tg_ossl.h"
#include "tg_test_util.h"
#include "providers/software/tg_software.h"
#include "providers/deferred/tg_deferred.h"

struct pair {
    SSL_CTX *sctx, *cctx;
    SSL *s, *c;
    struct tg_pkey *key;
    EVP_PKEY *wrapped;
    int wakeups;
};

static int async_cb(SSL *s, void *arg)
{
    (void)s;
    ((struct pair *)arg)->wakeups++;
    return 1;
}

static void pair_init(struct pair *p, const char *alg, const char *server_propq,
                      const struct tg_keyprov_binding *b, bool async)
{
    memset(p, 0, sizeof(*p));
    char *cert_pem, *key_pem;
    tg_test_make_cert(alg, "localhost", &cert_pem, &key_pem);
    char why[256];
    assert_int_equal(tg_pkey_load_pem(key_pem, strlen(key_pem), &p->key, why, sizeof(why)), TG_OK);
    p->key->binding = b;
    p->wrapped = tg_ossl_wrap_pkey(p->key);
    assert_non_null(p->wrapped);
    BIO *bio = BIO_new_mem_buf(cert_pem, -1);
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    assert_non_null(x);

    p->sctx = SSL_CTX_new_ex(NULL, server_propq, TLS_server_method());
    assert_non_null(p->sctx);
    SSL_CTX_set_num_tickets(p->sctx, 0);
    assert_int_equal(SSL_CTX_set1_groups_list(p->sctx, "X25519:P-256:P-384"), 1);
    assert_int_equal(SSL_CTX_use_certificate(p->sctx, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(p->sctx, p->wrapped), 1);
    assert_int_equal(SSL_CTX_check_private_key(p->sctx), 1);
    if (async) {
        SSL_CTX_set_mode(p->sctx, SSL_MODE_ASYNC);
        SSL_CTX_set_async_callback(p->sctx, async_cb);
    }
    p->cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(p->cctx);
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
    X509_free(x);
    free(cert_pem);
    OPENSSL_clear_free(key_pem, strlen(key_pem));
}

static void pair_free(struct pair *p)
{
    SSL_free(p->s);
    SSL_free(p->c);
    SSL_CTX_free(p->sctx);
    SSL_CTX_free(p->cctx);
    EVP_PKEY_free(p->wrapped);
    tg_pkey_unref(p->key);
}

/* Drive both sides; `set` (may be NULL) is flushed when the server waits on
 * a key operation. Returns 1 when both finished, 0 on failure. */
static int pair_handshake(struct pair *p, struct tg_keyprov_set *set, struct tg_keyctx *kctx,
                          int *async_waits)
{
    int sdone = 0, cdone = 0;
    for (int i = 0; i < 200 && !(sdone && cdone); i++) {
        if (!cdone) {
            int r = SSL_do_handshake(p->c);
            if (r == 1)
                cdone = 1;
            else if (SSL_get_error(p->c, r) != SSL_ERROR_WANT_READ) {
                ERR_print_errors_fp(stderr);
                return 0;
            }
        }
        if (!sdone) {
            tg_keyctx_set_current(kctx);
            int r = SSL_do_handshake(p->s);
            int e = r == 1 ? 0 : SSL_get_error(p->s, r);
            tg_keyctx_set_current(NULL);
            if (r == 1) {
                sdone = 1;
            } else if (e == SSL_ERROR_WANT_ASYNC) {
                (*async_waits)++;
                int before = p->wakeups;
                assert_non_null(set);
                tg_keyprov_set_flush(set);
                assert_true(p->wakeups > before); /* the callback fired */
            } else if (e != SSL_ERROR_WANT_READ) {
                ERR_print_errors_fp(stderr);
                return 0;
            }
        }
    }
    return sdone && cdone;
}

static int roundtrip(struct pair *p)
{
    char buf[16];
    if (SSL_write(p->c, "ping", 4) != 4)
        return 0;
    return SSL_read(p->s, buf, sizeof(buf)) == 4 && memcmp(buf, "ping", 4) == 0;
}

static const struct tg_keyprov_binding *bind_provider(const char *name, const char *k1,
                                                      const char *v1)
{
    static struct tg_conf_param params[2];
    struct tg_conf_keyprov conf;
    memset(&conf, 0, sizeof(conf));
    memset(params, 0, sizeof(params));
    conf.provider_name = (char *)name;
    conf.fallback = false;
    conf.path = (char *)"test.private_key_provider";
    conf.typed_config.path = (char *)"test.private_key_provider.typed_config";
    if (k1 != NULL) {
        params[0].key = (char *)k1;
        params[0].value = (char *)v1;
        conf.typed_config.v = params;
        conf.typed_config.n = 1;
    }
    struct tg_keyprov_binding *b = NULL;
    char err[512];
    int rc = tg_keyprov_bind(&conf, NULL, &b, err, sizeof(err));
    if (rc != TG_OK)
        fail_msg("bind %s: %s", name, err);
    return b;
}

static void sync_case(const char *alg, int maxver, const char *groups, bool kx_via_provider)
{
    struct pair p;
    pair_init(&p, alg, kx_via_provider ? TG_OSSL_KX_PROPQ : NULL, tg_keyprov_software_binding(),
              false);
    SSL_set_max_proto_version(p.c, maxver);
    if (groups)
        assert_int_equal(SSL_set1_groups_list(p.c, groups), 1);
    int waits = 0;
    assert_int_equal(pair_handshake(&p, NULL, NULL, &waits), 1);
    assert_int_equal(waits, 0);
    assert_int_equal(SSL_version(p.s), maxver);
    assert_int_equal(roundtrip(&p), 1);
    pair_free(&p);
}

static void test_sync_rsa_tls13(void **state)
{
    (void)state;
    sync_case("RSA:2048", TLS1_3_VERSION, NULL, false);
}

static void test_sync_rsa_tls12_pkcs1(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p, "RSA:2048", NULL, tg_keyprov_software_binding(), false);
    SSL_set_max_proto_version(p.c, TLS1_2_VERSION);
    /* PKCS#1 v1.5 only: exercises the DigestInfo path. */
    assert_int_equal(SSL_set1_sigalgs_list(p.c, "RSA+SHA256"), 1);
    int waits = 0;
    assert_int_equal(pair_handshake(&p, NULL, NULL, &waits), 1);
    assert_int_equal(roundtrip(&p), 1);
    pair_free(&p);
}

static void test_sync_rsa3072_tls12_pss(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p, "RSA:3072", NULL, tg_keyprov_software_binding(), false);
    SSL_set_max_proto_version(p.c, TLS1_2_VERSION);
    assert_int_equal(SSL_set1_sigalgs_list(p.c, "rsa_pss_rsae_sha384"), 1);
    int waits = 0;
    assert_int_equal(pair_handshake(&p, NULL, NULL, &waits), 1);
    pair_free(&p);
}

static void test_sync_ecdsa(void **state)
{
    (void)state;
    sync_case("EC:P-256", TLS1_3_VERSION, NULL, false);
    sync_case("EC:P-384", TLS1_2_VERSION, NULL, false);
    sync_case("EC:P-521", TLS1_3_VERSION, NULL, false);
}

static void test_sync_kx_through_provider(void **state)
{
    (void)state;
    sync_case("RSA:2048", TLS1_3_VERSION, "X25519", true);
    sync_case("RSA:2048", TLS1_3_VERSION, "P-256", true);
    sync_case("EC:P-256", TLS1_3_VERSION, "P-384", true);
    sync_case("RSA:2048", TLS1_2_VERSION, "X25519", true);
    sync_case("RSA:2048", TLS1_2_VERSION, "P-256", true);
}

struct async_env {
    struct ev_loop *loop;
    struct tg_keyprov_set *set;
};

static void async_env_init(struct async_env *e)
{
    e->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(e->loop);
    assert_int_equal(tg_keyprov_set_new(e->loop, 0, NULL, &e->set), TG_OK);
    tg_keyprov_set_current(e->set);
}

static void async_env_free(struct async_env *e)
{
    tg_keyprov_set_free(e->set);
    tg_keyprov_set_current(NULL);
    ev_loop_destroy(e->loop);
}

static void async_case(const char *alg, int maxver, const char *groups, bool kx)
{
    const struct tg_keyprov_binding *b = bind_provider("deferred", NULL, NULL);
    struct async_env env;
    async_env_init(&env);
    struct pair p;
    pair_init(&p, alg, kx ? TG_OSSL_KX_PROPQ : NULL, b, true);
    SSL_set_max_proto_version(p.c, maxver);
    if (groups)
        assert_int_equal(SSL_set1_groups_list(p.c, groups), 1);
    struct tg_keyctx kctx = {.kx = kx ? b : NULL};
    int waits = 0;
    assert_int_equal(pair_handshake(&p, env.set, &kctx, &waits), 1);
    /* One pause per operation: the signature, plus keygen and derive. */
    assert_int_equal(waits, kx ? 3 : 1);
    assert_int_equal(kctx.waits, (unsigned)waits);
    assert_int_equal(roundtrip(&p), 1);
    pair_free(&p);
    async_env_free(&env);
    tg_keyprov_binding_free((struct tg_keyprov_binding *)b);
}

static void test_async_deferred(void **state)
{
    (void)state;
    async_case("RSA:2048", TLS1_3_VERSION, NULL, false);
    async_case("RSA:2048", TLS1_2_VERSION, NULL, false);
    async_case("EC:P-256", TLS1_3_VERSION, NULL, false);
    async_case("RSA:2048", TLS1_3_VERSION, "X25519", true);
    async_case("EC:P-256", TLS1_3_VERSION, "P-256", true);
    async_case("RSA:2048", TLS1_2_VERSION, "P-384", true);
}

static void test_async_cancelled(void **state)
{
    (void)state;
    const struct tg_keyprov_binding *b = bind_provider("deferred", NULL, NULL);
    struct async_env env;
    async_env_init(&env);
    struct pair p;
    pair_init(&p, "RSA:2048", NULL, b, true);
    struct tg_keyctx kctx = {0};
    SSL_do_handshake(p.c);
    tg_keyctx_set_current(&kctx);
    int r = SSL_do_handshake(p.s);
    assert_int_equal(SSL_get_error(p.s, r), SSL_ERROR_WANT_ASYNC);
    /* The connection closes while its signature is pending. */
    kctx.cancelled = true;
    tg_keyprov_set_flush(&*env.set);
    r = SSL_do_handshake(p.s);
    tg_keyctx_set_current(NULL);
    assert_true(r <= 0);
    assert_int_equal(SSL_get_error(p.s, r), SSL_ERROR_SSL);
    assert_int_equal(SSL_waiting_for_async(p.s), 0);
    ERR_clear_error();
    pair_free(&p);
    async_env_free(&env);
    tg_keyprov_binding_free((struct tg_keyprov_binding *)b);
}

static void fault_case(const char *mode, int expect_ok)
{
    static struct tg_conf_param params[2];
    struct tg_conf_keyprov conf;
    memset(&conf, 0, sizeof(conf));
    memset(params, 0, sizeof(params));
    conf.provider_name = (char *)"deferred";
    conf.path = (char *)"t";
    conf.typed_config.path = (char *)"t.typed_config";
    params[0].key = (char *)"fail_every";
    params[0].value = (char *)"1";
    params[1].key = (char *)"fail_mode";
    params[1].value = (char *)mode;
    conf.typed_config.v = params;
    conf.typed_config.n = 2;
    struct tg_keyprov_binding *b = NULL;
    char err[512];
    assert_int_equal(tg_keyprov_bind(&conf, NULL, &b, err, sizeof(err)), TG_OK);
    struct async_env env;
    async_env_init(&env);
    struct pair p;
    pair_init(&p, "RSA:2048", NULL, b, true);
    struct tg_keyctx kctx = {0};
    int waits = 0;
    assert_int_equal(pair_handshake(&p, env.set, &kctx, &waits), expect_ok);
    assert_int_equal(kctx.failures, expect_ok ? 0 : 1);
    ERR_clear_error();
    pair_free(&p);
    struct tg_buf out = TG_BUF_INIT;
    tg_keyprov_render_stats(&out);
    if (expect_ok)
        assert_non_null(strstr(out.data, "tlsgate_keyprov_fallbacks_total{provider=\"deferred\","
                                         "reason=\"injected\"} 1"));
    else
        assert_non_null(strstr(out.data, "tlsgate_keyprov_operations_failed_total{provider="
                                         "\"deferred\",type=\"rsa_sign\"} 1"));
    tg_buf_free(&out);
    async_env_free(&env);
    tg_keyprov_binding_free(b);
}

static void test_fault_injection_fallback(void **state)
{
    (void)state;
    fault_case("error", 1);
}

static void test_fault_injection_fatal(void **state)
{
    (void)state;
    tg_keyprov_shutdown(); /* fresh retired stats are not needed: counts are cumulative */
    fault_case("fatal", 0);
}

static void test_private_export_refused(void **state)
{
    (void)state;
    char *cert_pem, *key_pem;
    tg_test_make_cert("RSA:2048", "x", &cert_pem, &key_pem);
    struct tg_pkey *k;
    char why[256];
    assert_int_equal(tg_pkey_load_pem(key_pem, strlen(key_pem), &k, why, sizeof(why)), TG_OK);
    EVP_PKEY *w = tg_ossl_wrap_pkey(k);
    assert_non_null(w);
    OSSL_PARAM *params = NULL;
    assert_int_equal(EVP_PKEY_todata(w, EVP_PKEY_KEYPAIR, &params), 0);
    ERR_clear_error();
    assert_int_equal(EVP_PKEY_todata(w, EVP_PKEY_PUBLIC_KEY, &params), 1);
    OSSL_PARAM_free(params);
    assert_true(EVP_PKEY_is_a(w, "RSA"));
    assert_int_equal(EVP_PKEY_get_bits(w), 2048);
    assert_int_equal(EVP_PKEY_eq(w, k->pub), 1);
    /* A different key does not match. */
    struct tg_pkey *k2;
    char *c2, *p2;
    tg_test_make_cert("RSA:2048", "y", &c2, &p2);
    assert_int_equal(tg_pkey_load_pem(p2, strlen(p2), &k2, why, sizeof(why)), TG_OK);
    assert_int_not_equal(EVP_PKEY_eq(w, k2->pub), 1);
    ERR_clear_error();
    EVP_PKEY_free(w);
    tg_pkey_unref(k);
    tg_pkey_unref(k2);
    free(cert_pem);
    free(key_pem);
    free(c2);
    free(p2);
}

static void test_pkey_rejects(void **state)
{
    (void)state;
    struct tg_pkey *k = NULL;
    char why[256] = "";
    assert_int_not_equal(tg_pkey_load_pem("garbage", 7, &k, why, sizeof(why)), TG_OK);
    assert_null(k);
    assert_true(strlen(why) > 0);
    char *c, *p;
    tg_test_make_cert("RSA:1024", "small", &c, &p);
    assert_int_equal(tg_pkey_load_pem(p, strlen(p), &k, why, sizeof(why)), TG_ECONFIG);
    assert_non_null(strstr(why, "too small"));
    free(c);
    free(p);
    tg_test_make_cert("EC:secp256k1", "k1", &c, &p);
    assert_int_equal(tg_pkey_load_pem(p, strlen(p), &k, why, sizeof(why)), TG_ECONFIG);
    assert_non_null(strstr(why, "not supported"));
    free(c);
    free(p);
}

static void test_keyop_lifecycle_guards(void **state)
{
    (void)state;
    struct tg_keyop op;
    tg_keyop_init(&op, TG_KEYOP_RSA_SIGN);
    assert_int_equal(tg_keyop_consume(&op), TG_ESTATE);
    assert_int_equal(tg_keyop_complete(&op, TG_OK, TG_FALLBACK_DEVICE_ERROR), TG_ESTATE);
    /* Wrong key type for the op: a distinct error, no crash. */
    op.pkey = NULL;
    assert_int_equal(tg_keyop_compute_sw(&op), TG_EINVAL);
    assert_int_equal(tg_keyop_run(&op), TG_EINVAL);
    assert_int_equal(op.state, TG_KEYOP_CONSUMED);
    assert_int_equal(tg_keyop_run(&op), TG_ESTATE);
    assert_int_equal(tg_keyop_consume(&op), TG_ESTATE);
}

static void test_kxkey_rejects_bad_points(void **state)
{
    (void)state;
    struct tg_kxkey k;
    memset(&k, 0, sizeof(k));
    unsigned char bad[65];
    memset(bad, 0x11, sizeof(bad));
    bad[0] = 0x04;
    assert_int_equal(tg_kxkey_set_public(&k, TG_GROUP_P256, bad, sizeof(bad)), TG_EPROTO);
    assert_int_equal(tg_kxkey_set_public(&k, TG_GROUP_P256, bad, 33), TG_EPROTO);
    assert_int_equal(tg_kxkey_set_public(&k, TG_GROUP_X25519, bad, 31), TG_EPROTO);
    assert_int_equal(tg_kxkey_set_public(&k, TG_GROUP_X25519, bad, 32), TG_OK);
    tg_kxkey_clear(&k);
    ERR_clear_error();
}

static int setup(void **state)
{
    (void)state;
    return tg_ossl_init() == TG_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tg_keyprov_shutdown();
    tg_ossl_cleanup();
    return 0;
}

int main(void)
{
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider, &tg_deferred_provider);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_rsa_tls13),
        cmocka_unit_test(test_sync_rsa_tls12_pkcs1),
        cmocka_unit_test(test_sync_rsa3072_tls12_pss),
        cmocka_unit_test(test_sync_ecdsa),
        cmocka_unit_test(test_sync_kx_through_provider),
        cmocka_unit_test(test_async_deferred),
        cmocka_unit_test(test_async_cancelled),
        cmocka_unit_test(test_fault_injection_fallback),
        cmocka_unit_test(test_fault_injection_fatal),
        cmocka_unit_test(test_private_export_refused),
        cmocka_unit_test(test_pkey_rejects),
        cmocka_unit_test(test_keyop_lifecycle_guards),
        cmocka_unit_test(test_kxkey_rejects_bad_points),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
