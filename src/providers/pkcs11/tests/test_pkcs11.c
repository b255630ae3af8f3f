/*
 * The pkcs11 provider end to end in memory, against the fault-injecting fake
 * module (tests/fake_p11.c, loaded by path like any module; the test dlopens
 * the same instance to steer it): a libssl server whose key is held by the
 * token handshakes with a plain libssl client over a BIO pair, on an ev loop
 * that plays the worker's.
 *
 * Covers: RSA (PSS, PKCS#1 v1.5, native and raw mechanisms) and ECDSA; the
 * certificate read from the token; start-up errors (wrong PIN naming the
 * token, missing object, a library that is not a PKCS#11 module, typed_config
 * errors with positions); re-login after CKR_USER_NOT_LOGGED_IN; stale
 * handles found again; a token removed and put back (fail fast, recovery);
 * a PIN that changed (no more logins); a C_Sign that blocks (the loop keeps
 * running, the timeout fails the handshake, the thread's late answer is
 * dropped); the same race-free with no lock in common with the thread (for
 * ThreadSanitizer); a full queue; drain; the doctor's listing. Nothing here waits
 * for a duration: waits are bounded polls on a condition.
 */
#include <dlfcn.h>
#include <ev.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/tg_config.h"
#include "core/tg_time.h"
#include "keyprov/tg_keyprov.h"
#include "ossl/tg_ossl.h"
#include "tg_test_util.h"
#include "providers/deferred/tg_deferred.h"
#include "providers/pkcs11/tg_p11_pool.h"
#include "providers/pkcs11/tg_pkcs11.h"
#include "providers/software/tg_software.h"

static void (*fake_control)(const char *);
static unsigned long (*fake_stat)(const char *);
static void (*fake_hold)(int);
static unsigned long (*fake_hold_stat)(const char *);
static char g_rsa_cert[512], g_ec_cert[512];

/* ---- configuration ---- */

struct conf {
    struct tg_conf_keyprov kp;
    struct tg_conf_param p[12];
};

static void conf_init(struct conf *c, const char *key, const char *pin)
{
    memset(c, 0, sizeof(*c));
    c->kp.provider_name = (char *)"pkcs11";
    c->kp.fallback = true; /* the default, not written */
    c->kp.path = (char *)"tls.certificates[0].private_key_provider";
    c->kp.typed_config.path = (char *)"tls.certificates[0].private_key_provider.typed_config";
    c->kp.typed_config.v = c->p;
    c->kp.mark = (struct tg_conf_mark){"gw.yaml", 5, 11};
    struct tg_conf_param *q = c->p;
    q[0] = (struct tg_conf_param){.key = (char *)"module", .value = (char *)TG_FAKE_P11};
    q[1] = (struct tg_conf_param){.key = (char *)"key", .value = (char *)key};
    c->kp.typed_config.n = 2;
    if (pin != NULL)
        q[c->kp.typed_config.n++] =
            (struct tg_conf_param){.key = (char *)"pin.inline_string", .value = (char *)pin};
    for (size_t i = 0; i < c->kp.typed_config.n; i++)
        q[i].mark = q[i].value_mark = (struct tg_conf_mark){"gw.yaml", (int)(8 + i), 13};
}

static void conf_add(struct conf *c, const char *k, const char *v)
{
    size_t i = c->kp.typed_config.n++;
    c->p[i] = (struct tg_conf_param){.key = (char *)k, .value = (char *)v};
    c->p[i].mark = c->p[i].value_mark = (struct tg_conf_mark){"gw.yaml", (int)(8 + i), 13};
}

static void reset_fake(void)
{
    static const char *const kv[] = {"removed=0", "block=0",  "sign_delay_ms=0", "fail_sign=0",
                                     "pin=1234",  "no_pss=0", "no_x509=0",       "no_rsa_pkcs=0"};
    for (size_t i = 0; i < TG_ARRAY_LEN(kv); i++)
        fake_control(kv[i]);
}

/* ---- a server with a token key, a client, a loop ---- */

struct pair {
    SSL_CTX *sctx, *cctx;
    SSL *s, *c;
    struct tg_pkey *key;
    EVP_PKEY *wrapped;
    struct tg_keyprov_binding *b;
    struct tg_keyctx kctx; /* the connection's: outlives every SSL call */
    int wakeups;
};

static int async_cb(SSL *s, void *arg)
{
    (void)s;
    ((struct pair *)arg)->wakeups++;
    return 1;
}

static struct ev_loop *g_loop;
static struct tg_keyprov_set *g_set;

static void worker_start(void)
{
    g_loop = ev_loop_new(EVFLAG_AUTO);
    assert_int_equal(tg_keyprov_set_new(g_loop, 0, NULL, &g_set), TG_OK);
    tg_keyprov_set_current(g_set);
}

static void worker_stop(void)
{
    tg_keyprov_set_free(g_set);
    tg_keyprov_set_current(NULL);
    ev_loop_destroy(g_loop);
    g_set = NULL;
    g_loop = NULL;
}

static int bind_key(struct conf *c, struct pair *p, X509 **leaf, char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    return tg_keyprov_bind_held(&c->kp, NULL, &p->b, &p->key, leaf, err, errlen);
}

static void pair_init(struct pair *p, struct conf *c)
{
    char err[1024] = "";
    X509 *leaf = NULL;
    if (bind_key(c, p, &leaf, err, sizeof(err)) != TG_OK)
        fail_msg("bind: %s", err);
    /* Like a gateway, the worker starts once its providers are bound. */
    if (g_set == NULL)
        worker_start();
    p->key->binding = p->b;
    p->wrapped = tg_ossl_wrap_pkey(p->key);
    assert_non_null(p->wrapped);
    p->sctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_num_tickets(p->sctx, 0);
    assert_int_equal(SSL_CTX_use_certificate(p->sctx, leaf), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(p->sctx, p->wrapped), 1);
    assert_int_equal(SSL_CTX_check_private_key(p->sctx), 1);
    SSL_CTX_set_mode(p->sctx, SSL_MODE_ASYNC);
    SSL_CTX_set_async_callback(p->sctx, async_cb);
    X509_free(leaf);
    p->cctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(p->cctx, SSL_VERIFY_NONE, NULL);
}

/* A new connection on the pair's contexts. */
static void conn_new(struct pair *p, int maxver, const char *sigalgs)
{
    SSL_free(p->s);
    SSL_free(p->c);
    memset(&p->kctx, 0, sizeof(p->kctx));
    p->s = SSL_new(p->sctx);
    p->c = SSL_new(p->cctx);
    SSL_set_async_callback_arg(p->s, p);
    BIO *b1, *b2;
    assert_int_equal(BIO_new_bio_pair(&b1, 0, &b2, 0), 1);
    SSL_set_bio(p->s, b1, b1);
    SSL_set_bio(p->c, b2, b2);
    SSL_set_accept_state(p->s);
    SSL_set_connect_state(p->c);
    SSL_set_max_proto_version(p->c, maxver);
    if (sigalgs != NULL)
        assert_int_equal(SSL_set1_sigalgs_list(p->c, sigalgs), 1);
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

static bool wait_ms(int ms, bool (*cond)(void *), void *arg)
{
    uint64_t end = tg_now_ns() + (uint64_t)ms * TG_NS_PER_MS;
    while (!cond(arg)) {
        if (tg_now_ns() > end)
            return false;
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return true;
}

/* Run the loop until the server's pending key operation woke it. */
static void loop_until_woken(struct pair *p, int before)
{
    uint64_t end = tg_now_ns() + 30 * TG_NS_PER_S;
    while (p->wakeups == before) {
        assert_true(tg_now_ns() < end);
        ev_run(g_loop, EVRUN_ONCE);
    }
}

/* Drive the server one step: 1 done, 0 failed, -1 waiting for the token. */
static int server_step(struct pair *p)
{
    tg_keyctx_set_current(&p->kctx);
    int r = SSL_do_handshake(p->s);
    int e = r == 1 ? 0 : SSL_get_error(p->s, r);
    tg_keyctx_set_current(NULL);
    if (r == 1)
        return 1;
    if (e == SSL_ERROR_WANT_ASYNC)
        return -1;
    if (e == SSL_ERROR_WANT_READ)
        return 2;
    if (getenv("TG_TEST_DEBUG"))
        ERR_print_errors_fp(stderr);
    ERR_clear_error();
    return 0;
}

/* A whole handshake; 1 when both sides finished. */
static int handshake(struct pair *p)
{
    int sdone = 0, cdone = 0;
    for (int i = 0; i < 100 && !(sdone && cdone); i++) {
        if (!cdone) {
            int r = SSL_do_handshake(p->c);
            if (r == 1)
                cdone = 1;
            else if (SSL_get_error(p->c, r) != SSL_ERROR_WANT_READ)
                return 0;
        }
        while (!sdone) {
            int before = p->wakeups;
            int st = server_step(p);
            if (st == 1)
                sdone = 1;
            else if (st == 0)
                return 0;
            else if (st == -1)
                loop_until_woken(p, before);
            else
                break;
        }
    }
    return sdone && cdone;
}

/* The value of a /stats series (-1: absent). */
static long long stat_value(const char *series)
{
    struct tg_buf out = TG_BUF_INIT;
    tg_keyprov_render_stats(&out);
    long long v = -1;
    char needle[300];
    snprintf(needle, sizeof(needle), "\n%s ", series);
    const char *at = strstr(out.data, needle);
    if (at != NULL)
        v = strtoll(at + strlen(needle), NULL, 10);
    tg_buf_free(&out);
    return v;
}

#define OPS(result)                                                                                \
    stat_value("tlsgate_pkcs11_operations_total{token=\"fake\",result=\"" result "\"}")

static bool token_up(void *arg)
{
    (void)arg;
    return stat_value("tlsgate_pkcs11_token_up{token=\"fake\"}") == 1;
}

static bool fake_idle(void *arg)
{
    (void)arg;
    return fake_stat("in_sign") == 0;
}

static bool fake_signing(void *arg)
{
    return fake_stat("in_sign") >= (unsigned long)(size_t)arg;
}

static bool fake_holding(void *arg)
{
    (void)arg;
    return fake_hold_stat("holding") >= 1;
}

static bool fake_held_returned(void *arg)
{
    return fake_hold_stat("returned") >= (unsigned long)(size_t)arg;
}

static int setup_each(void **state)
{
    (void)state;
    reset_fake();
    return 0;
}

static int teardown_each(void **state)
{
    (void)state;
    fake_hold(0); /* a failed test may leave a thread held */
    if (g_set != NULL)
        worker_stop();
    tg_keyprov_shutdown(); /* tokens, threads and the module go: the next test starts fresh */
    return 0;
}

/* ---- tests ---- */

static void test_signatures(void **state)
{
    (void)state;
    struct conf c;
    struct pair p;
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    pair_init(&p, &c);
    assert_true(p.b->held);
    assert_true(tg_pkey_is_held(p.key));
    unsigned long signs = fake_stat("signs");
    conn_new(&p, TLS1_3_VERSION, NULL); /* RSA-PSS, CKM_RSA_PKCS_PSS */
    assert_int_equal(handshake(&p), 1);
    conn_new(&p, TLS1_2_VERSION, "RSA+SHA256"); /* PKCS#1 v1.5, CKM_RSA_PKCS */
    assert_int_equal(handshake(&p), 1);
    conn_new(&p, TLS1_2_VERSION, "RSA-PSS+SHA512");
    assert_int_equal(handshake(&p), 1);
    assert_int_equal(fake_stat("signs"), signs + 3);
    assert_int_equal(OPS("ok"), 3); /* the start-up self-test is not counted */
    pair_free(&p);

    conf_init(&c, "pkcs11:object=ec;id=%02;type=private", "1234");
    pair_init(&p, &c);
    signs = fake_stat("signs");
    long long ec_before = stat_value("tlsgate_keyprov_operations_completed_total{provider="
                                     "\"pkcs11\",type=\"ecdsa_sign\"}");
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(handshake(&p), 1);
    conn_new(&p, TLS1_2_VERSION, "ECDSA+SHA384");
    assert_int_equal(handshake(&p), 1);
    assert_int_equal(fake_stat("signs"), signs + 2);
    assert_int_equal(stat_value("tlsgate_keyprov_operations_completed_total{provider=\"pkcs11\","
                                "type=\"ecdsa_sign\"}"),
                     ec_before + 2);
    assert_int_equal(stat_value("tlsgate_pkcs11_sign_seconds_count{token=\"fake\"}"), 5);
    pair_free(&p);
}

static void test_raw_mechanisms(void **state)
{
    (void)state;
    struct conf c;
    struct pair p;
    /* The token has no CKM_RSA_PKCS_PSS: tlsgate encodes PSS itself. */
    fake_control("no_pss=1");
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    pair_init(&p, &c);
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(handshake(&p), 1);
    pair_free(&p);
    /* rsa_mechanism: raw uses CKM_RSA_X_509 for both encodings. */
    fake_control("no_pss=0");
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    conf_add(&c, "rsa_mechanism", "raw");
    pair_init(&p, &c);
    conn_new(&p, TLS1_2_VERSION, "RSA+SHA384");
    assert_int_equal(handshake(&p), 1);
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(handshake(&p), 1);
    pair_free(&p);
    /* native without PSS on the token: refused at start-up. */
    fake_control("no_pss=1");
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    conf_add(&c, "rsa_mechanism", "native");
    char err[1024];
    assert_int_not_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_OK);
    assert_string_equal(err, "gw.yaml:5:11: tls.certificates[0].private_key_provider: token "
                             "'fake': key 'pkcs11:token=fake;object=rsa': TLS 1.3 needs RSA-PSS "
                             "signatures and the token offers no CKM_RSA_PKCS_PSS "
                             "(rsa_mechanism: native)");
}

static void test_startup_errors(void **state)
{
    (void)state;
    struct conf c;
    struct pair p;
    char err[1024];
    conf_init(&c, "pkcs11:token=fake;object=rsa", "0000");
    assert_int_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_ECONFIG);
    assert_string_equal(err, "gw.yaml:5:11: tls.certificates[0].private_key_provider: token "
                             "'fake': login failed: CKR_PIN_INCORRECT (wrong PIN)");
    tg_keyprov_shutdown();
    conf_init(&c, "pkcs11:token=fake;object=nope", "1234");
    assert_int_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_ECONFIG);
    assert_string_equal(err, "gw.yaml:5:11: tls.certificates[0].private_key_provider: no private "
                             "key 'pkcs11:token=fake;object=nope' on token 'fake'");
    conf_init(&c, "pkcs11:token=other;object=rsa", "1234");
    assert_int_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "no token matching 'pkcs11:token=other' in PKCS#11 module"));
    assert_non_null(strstr(err, "(tokens present: 'fake')"));
    /* No PIN for a token that needs one. */
    conf_init(&c, "pkcs11:token=fake;object=rsa", NULL);
    tg_keyprov_shutdown();
    assert_int_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "token 'fake' requires a login: set the provider's 'pin'"));
    /* A library that is not a PKCS#11 module, and no library at all. */
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    c.p[0].value = (char *)"libc.so.6";
    assert_int_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_EUNAVAIL);
    assert_string_equal(err, "gw.yaml:5:11: tls.certificates[0].private_key_provider: "
                             "'libc.so.6' is not a PKCS#11 module (it has no C_GetFunctionList)");
    c.p[0].value = (char *)"/nonexistent/module.so";
    assert_int_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_EUNAVAIL);
    assert_non_null(strstr(err, "cannot load PKCS#11 module '/nonexistent/module.so'"));
    /* The certificate must be on the token when certificate_chain is absent. */
    conf_init(&c, "pkcs11:token=fake;object=nocert", "1234");
    X509 *leaf = NULL;
    assert_int_equal(bind_key(&c, &p, &leaf, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "no certificate object with the key's id or label: give the "
                                "certificate with certificate_chain"));
    assert_null(leaf);
    /* ... but with certificate_chain the same key is fine. */
    assert_int_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_OK);
    tg_pkey_unref(p.key);
    tg_keyprov_binding_free(p.b);
}

static void conf_err(struct conf *c, const char *want)
{
    struct pair p;
    char err[1024] = "";
    assert_int_equal(bind_key(c, &p, NULL, err, sizeof(err)), TG_ECONFIG);
    if (strcmp(err, want) != 0)
        fail_msg("\n got: %s\nwant: %s", err, want);
}

#define TC "gw.yaml:5:11: tls.certificates[0].private_key_provider.typed_config"

static void test_config_errors(void **state)
{
    (void)state;
    struct conf c;
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    c.kp.typed_config.n = 1;
    conf_err(&c, TC ": missing required key 'key' (a PKCS#11 URI, e.g. "
                    "\"pkcs11:token=NAME;object=LABEL\")");
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    c.p[0].key = (char *)"modul";
    conf_err(&c, "gw.yaml:8:13: tls.certificates[0].private_key_provider.typed_config.modul: "
                 "unknown key 'modul' for provider 'pkcs11'");
    conf_init(&c, "pkcs11:token=my token", "1234");
    conf_err(&c, "gw.yaml:9:13: tls.certificates[0].private_key_provider.typed_config.key: "
                 "token: ' ' must be percent-encoded as %20");
    conf_init(&c, "pkcs11:token=fake", "1234");
    conf_err(&c, "gw.yaml:9:13: tls.certificates[0].private_key_provider.typed_config.key: the "
                 "URI names no object: add object=LABEL and/or id=ID");
    conf_init(&c, "pkcs11:token=fake;object=rsa;type=cert", "1234");
    conf_err(&c, "gw.yaml:9:13: tls.certificates[0].private_key_provider.typed_config.key: type "
                 "must be 'private' (the private key object)");
    conf_init(&c, "pkcs11:token=fake;object=rsa?pin-value=1234", "1234");
    conf_err(&c, "gw.yaml:9:13: tls.certificates[0].private_key_provider.typed_config.key: "
                 "'pin-value' is not accepted in the key URI: give the PIN with the provider's "
                 "'pin' setting (a key URI is logged, a PIN never is)");
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    conf_add(&c, "pin.filename", "/run/pin");
    conf_err(&c, "gw.yaml:11:13: tls.certificates[0].private_key_provider.typed_config."
                 "pin.filename: give only one of pin.filename, pin.environment_variable and "
                 "pin.inline_string");
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    conf_add(&c, "pin.file", "/run/pin");
    conf_err(&c, "gw.yaml:11:13: tls.certificates[0].private_key_provider.typed_config.pin.file: "
                 "unknown key 'pin.file' for provider 'pkcs11'");
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    conf_add(&c, "threads", "0");
    conf_err(&c, "gw.yaml:11:13: tls.certificates[0].private_key_provider.typed_config.threads: "
                 "expected an integer in 1..64, got '0'");
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    conf_add(&c, "timeout", "2m");
    conf_err(&c, "gw.yaml:11:13: tls.certificates[0].private_key_provider.typed_config.timeout: "
                 "expected a duration from 1ms to 60s");
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    conf_add(&c, "rsa_mechanism", "fast");
    conf_err(&c, "gw.yaml:11:13: tls.certificates[0].private_key_provider.typed_config."
                 "rsa_mechanism: expected auto, native or raw, got 'fast'");
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    conf_add(&c, "key_exchange", "true");
    conf_err(&c, "gw.yaml:11:13: tls.certificates[0].private_key_provider.typed_config."
                 "key_exchange: pkcs11 does not do key exchange (the token only signs)");
    /* fallback: true written out is refused: no software copy. */
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    c.kp.fallback_set = true;
    c.kp.fallback_mark = (struct tg_conf_mark){"gw.yaml", 6, 23};
    conf_err(&c, "gw.yaml:6:23: tls.certificates[0].private_key_provider.fallback: provider "
                 "'pkcs11' holds this certificate's private key: there is no software copy to "
                 "fall back to (remove fallback or set it to false)");
}

static void test_pin_sources(void **state)
{
    (void)state;
    struct conf c;
    struct pair p;
    char err[1024];
    const char *file = tg_test_write_file("pin.txt", "1234\n", 5);
    conf_init(&c, "pkcs11:token=fake;object=ec", NULL);
    conf_add(&c, "pin.filename", file);
    assert_int_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_OK);
    tg_pkey_unref(p.key);
    tg_keyprov_binding_free(p.b);
    tg_keyprov_shutdown();
    setenv("TG_TEST_P11_PIN", "1234", 1);
    conf_init(&c, "pkcs11:token=fake;object=ec", NULL);
    conf_add(&c, "pin.environment_variable", "TG_TEST_P11_PIN");
    assert_int_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_OK);
    tg_pkey_unref(p.key);
    tg_keyprov_binding_free(p.b);
    tg_keyprov_shutdown();
    conf_init(&c, "pkcs11:token=fake;object=ec", NULL);
    conf_add(&c, "pin.environment_variable", "TG_TEST_P11_NO_SUCH_VAR");
    assert_int_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "token 'fake': PIN: environment variable TG_TEST_P11_NO_SUCH_VAR "
                                "is not set"));
    conf_init(&c, "pkcs11:token=fake;object=ec", NULL);
    conf_add(&c, "pin.filename", "/nonexistent/pin");
    assert_int_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "PIN: cannot read '/nonexistent/pin': No such file or directory"));
    /* A PIN never appears in a message. */
    conf_init(&c, "pkcs11:token=fake;object=ec", "s3cr3t-pin");
    assert_int_equal(bind_key(&c, &p, NULL, err, sizeof(err)), TG_ECONFIG);
    assert_null(strstr(err, "s3cr3t"));
}

static void test_relogin_and_refind(void **state)
{
    (void)state;
    struct conf c;
    struct pair p;
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    pair_init(&p, &c);
    unsigned long logins = fake_stat("logins");
    fake_control("logout=1"); /* the token forgets the login */
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(handshake(&p), 1);
    assert_int_equal(fake_stat("logins"), logins + 1);
    assert_int_equal(stat_value("tlsgate_pkcs11_errors_total{token=\"fake\",code="
                                "\"CKR_USER_NOT_LOGGED_IN\"}"),
                     1);
    fake_control("handles=1"); /* every object handle changes */
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(handshake(&p), 1);
    assert_int_equal(stat_value("tlsgate_pkcs11_errors_total{token=\"fake\",code="
                                "\"CKR_KEY_HANDLE_INVALID\"}"),
                     1);
    assert_int_equal(OPS("ok"), 2);
    pair_free(&p);
}

static void test_token_removed(void **state)
{
    (void)state;
    struct conf c;
    struct pair p;
    conf_init(&c, "pkcs11:token=fake;object=ec", "1234");
    pair_init(&p, &c);
    fake_control("removed=1");
    unsigned long signs = fake_stat("signs");
    long long unrec = stat_value("tlsgate_keyprov_unrecoverable_total{provider=\"pkcs11\","
                                 "reason=\"device_error\"}");
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(handshake(&p), 0);
    /* The thread's session answers CKR_DEVICE_REMOVED, or a thread without
     * a session yet cannot open one: CKR_TOKEN_NOT_PRESENT. */
    assert_int_equal(stat_value("tlsgate_pkcs11_errors_total{token=\"fake\",code="
                                "\"CKR_DEVICE_REMOVED\"}") +
                         stat_value("tlsgate_pkcs11_errors_total{token=\"fake\",code="
                                    "\"CKR_TOKEN_NOT_PRESENT\"}"),
                     1);
    assert_int_equal(stat_value("tlsgate_pkcs11_token_up{token=\"fake\"}"), 0);
    assert_int_equal(stat_value("tlsgate_keyprov_unrecoverable_total{provider=\"pkcs11\","
                                "reason=\"device_error\"}"),
                     unrec + 1);
    /* While it is down, handshakes fail at once, without asking it. */
    for (int i = 0; i < 3; i++) {
        conn_new(&p, TLS1_3_VERSION, NULL);
        assert_int_equal(handshake(&p), 0);
    }
    assert_int_equal(OPS("token_down"), 3);
    assert_int_equal(fake_stat("signs"), signs);
    /* Back: a signing thread finds it, logs in and finds the key again. */
    fake_control("removed=0");
    assert_true(wait_ms(30000, token_up, NULL));
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(handshake(&p), 1);
    assert_int_equal(stat_value("tlsgate_pkcs11_recoveries_total{token=\"fake\"}"), 1);
    assert_int_equal(stat_value("tlsgate_pkcs11_token_down_total{token=\"fake\"}"), 1);
    pair_free(&p);
}

static void test_pin_changed(void **state)
{
    (void)state;
    struct conf c;
    struct pair p;
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    pair_init(&p, &c);
    unsigned long failures = fake_stat("login_failures");
    fake_control("pin=9999");
    fake_control("logout=2");
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(handshake(&p), 0);
    assert_int_equal(fake_stat("login_failures"), failures + 1);
    /* No further login: a PIN refused once is never tried again. */
    for (int i = 0; i < 3; i++) {
        conn_new(&p, TLS1_3_VERSION, NULL);
        assert_int_equal(handshake(&p), 0);
    }
    assert_int_equal(fake_stat("login_failures"), failures + 1);
    assert_int_equal(OPS("token_down"), 3);
    assert_int_equal(stat_value("tlsgate_pkcs11_token_up{token=\"fake\"}"), 0);
    pair_free(&p);
}

static void test_slow_token(void **state)
{
    (void)state;
    struct conf c;
    struct pair p;
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    conf_add(&c, "timeout", "50ms");
    pair_init(&p, &c);
    fake_control("block=1"); /* C_Sign hangs until released */
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(SSL_do_handshake(p.c), -1);
    int before = p.wakeups;
    /* The server does not block: the handshake waits, the loop runs. */
    assert_int_equal(server_step(&p), -1);
    assert_true(wait_ms(30000, fake_signing, (void *)1));
    loop_until_woken(&p, before); /* the timer, not the token */
    assert_int_equal(server_step(&p), 0);
    assert_int_equal(OPS("timeout"), 1);
    assert_int_equal(fake_stat("in_sign"), 1); /* still inside C_Sign */
    assert_int_equal(tg_keyprov_set_pending(g_set), 0);
    /* Its late answer is dropped by the thread (ASan/valgrind: no leak). */
    fake_control("block=0");
    assert_true(wait_ms(30000, fake_idle, NULL));
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(handshake(&p), 1);
    assert_int_equal(OPS("ok"), 1);
    pair_free(&p);
}

/*
 * The timeout gives up on a request while a signing thread is inside C_Sign
 * with it: from that moment the request is the thread's (it frees it when
 * C_Sign returns), so the worker must not touch it again. The thread is let
 * go with the fake's lock-free hold, and nothing here takes a lock the
 * thread takes before it writes the request's result and frees it: an
 * access of the worker's after tg_p11_abandon() would be a race with no
 * happens-before edge to hide it, which ThreadSanitizer reports whatever
 * the timing (and ASan when the thread wins).
 */
static void test_expire_while_signing(void **state)
{
    (void)state;
    struct conf c;
    struct pair p;
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    conf_add(&c, "timeout", "50ms");
    pair_init(&p, &c);
    unsigned long returned = fake_hold_stat("returned");
    fake_hold(1);
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(SSL_do_handshake(p.c), -1);
    int before = p.wakeups;
    assert_int_equal(server_step(&p), -1);
    assert_true(wait_ms(30000, fake_holding, NULL)); /* a thread holds it */
    loop_until_woken(&p, before);                    /* the timer: the request is abandoned */
    assert_int_equal(server_step(&p), 0);
    assert_int_equal(tg_keyprov_set_pending(g_set), 0);
    fake_hold(0);
    assert_true(wait_ms(30000, fake_held_returned, (void *)(size_t)(returned + 1)));
    /* Counted once, as a timeout; the late signature is dropped. */
    assert_int_equal(OPS("timeout"), 1);
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(handshake(&p), 1);
    assert_int_equal(OPS("ok"), 1);
    assert_int_equal(OPS("timeout"), 1);
    pair_free(&p);
}

static void test_queue_full(void **state)
{
    (void)state;
    struct conf c;
    struct pair a, b, d;
    conf_init(&c, "pkcs11:token=fake;object=ec", "1234");
    conf_add(&c, "threads", "1");
    conf_add(&c, "max_queue", "1");
    pair_init(&a, &c);
    pair_init(&b, &c);
    pair_init(&d, &c);
    long long unrec = stat_value("tlsgate_keyprov_unrecoverable_total{provider=\"pkcs11\","
                                 "reason=\"ring_full\"}");
    fake_control("block=1");
    conn_new(&a, TLS1_3_VERSION, NULL);
    assert_int_equal(SSL_do_handshake(a.c), -1);
    assert_int_equal(server_step(&a), -1);
    assert_true(wait_ms(30000, fake_signing, (void *)1)); /* the one thread holds it */
    conn_new(&b, TLS1_3_VERSION, NULL);
    assert_int_equal(SSL_do_handshake(b.c), -1);
    assert_int_equal(server_step(&b), -1); /* queued */
    assert_int_equal(stat_value("tlsgate_pkcs11_queue_depth{token=\"fake\"}"), 1);
    /* A third one finds the queue full: it fails now, not later. */
    conn_new(&d, TLS1_3_VERSION, NULL);
    assert_int_equal(SSL_do_handshake(d.c), -1);
    assert_int_equal(server_step(&d), 0);
    assert_int_equal(OPS("queue_full"), 1);
    assert_int_equal(stat_value("tlsgate_keyprov_unrecoverable_total{provider=\"pkcs11\","
                                "reason=\"ring_full\"}"),
                     unrec + 1);
    fake_control("block=0");
    assert_int_equal(handshake(&a), 1);
    assert_int_equal(handshake(&b), 1);
    assert_int_equal(OPS("ok"), 2);
    pair_free(&a);
    pair_free(&b);
    pair_free(&d);
}

static void test_drain(void **state)
{
    (void)state;
    struct conf c;
    struct pair p;
    conf_init(&c, "pkcs11:token=fake;object=ec", "1234");
    conf_add(&c, "timeout", "20ms");
    pair_init(&p, &c);
    fake_control("block=1");
    conn_new(&p, TLS1_3_VERSION, NULL);
    assert_int_equal(SSL_do_handshake(p.c), -1);
    assert_int_equal(server_step(&p), -1);
    assert_int_equal(tg_keyprov_set_pending(g_set), 1);
    /* Shutdown: drain completes it (at its deadline); the job can end. */
    tg_keyprov_set_drain(g_set);
    assert_int_equal(tg_keyprov_set_pending(g_set), 0);
    assert_int_equal(server_step(&p), 0);
    fake_control("block=0");
    assert_true(wait_ms(30000, fake_idle, NULL));
    pair_free(&p);
}

static void test_cert_from_token(void **state)
{
    (void)state;
    struct conf c;
    struct pair p;
    char err[1024];
    X509 *leaf = NULL;
    conf_init(&c, "pkcs11:token=fake;object=rsa", "1234");
    assert_int_equal(bind_key(&c, &p, &leaf, err, sizeof(err)), TG_OK);
    FILE *f = fopen(g_rsa_cert, "r");
    X509 *want = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_int_equal(X509_cmp(leaf, want), 0);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(leaf), p.key->pub), 1);
    X509_free(want);
    X509_free(leaf);
    tg_pkey_unref(p.key);
    tg_keyprov_binding_free(p.b);
}

static void test_doctor(void **state)
{
    (void)state;
    struct tg_buf text = TG_BUF_INIT, json = TG_BUF_INIT;
    unsetenv("TLSGATE_PKCS11_MODULE");
    tg_pkcs11_provider.doctor(&text, &json);
    assert_non_null(strstr(text.data, "TLSGATE_PKCS11_MODULE=/path/to/module.so"));
    tg_buf_reset(&text);
    tg_buf_reset(&json);
    setenv("TLSGATE_PKCS11_MODULE", TG_FAKE_P11 ":libc.so.6", 1);
    tg_pkcs11_provider.doctor(&text, &json);
    unsetenv("TLSGATE_PKCS11_MODULE");
    assert_non_null(strstr(text.data, "slot 7: token 'fake' (tlsgate tests fake, serial 0001): "
                                      "login required, user PIN set"));
    assert_non_null(strstr(text.data, "signing: CKM_RSA_PKCS yes, CKM_RSA_PKCS_PSS yes, "
                                      "CKM_RSA_X_509 yes, CKM_ECDSA yes"));
    assert_non_null(strstr(text.data, "pkcs11:token=fake;object=rsa;id=%01;type=public  RSA 2048"));
    assert_non_null(strstr(text.data, "pkcs11:token=fake;object=ec;id=%02;type=public  EC P-256"));
    assert_non_null(
        strstr(text.data, "pkcs11:token=fake;object=rsa;id=%01;type=cert  /CN=p11.test"));
    assert_non_null(strstr(text.data, "module libc.so.6: not usable: 'libc.so.6' is not a PKCS#11 "
                                      "module"));
    assert_non_null(strstr(json.data, "\"modules\":[{\"path\":"));
    assert_non_null(strstr(json.data, "\"label\":\"fake\""));
    assert_null(strstr(text.data, "1234"));
    tg_buf_reset(&text);
    tg_buf_reset(&json);

    /* doctor --config: the configuration's modules, and for each configured
     * key whether its token is there and what is visible without login. */
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "listeners:\n"
             "  - address: 127.0.0.1:0\n"
             "    tls:\n"
             "      certificates:\n"
             "        - private_key_provider:\n"
             "            provider_name: pkcs11\n"
             "            typed_config:\n"
             "              module: %s\n"
             "              key: \"pkcs11:token=fake;object=rsa\"\n"
             "              pin: { filename: /nonexistent/pin }\n"
             "        - private_key_provider:\n"
             "            provider_name: pkcs11\n"
             "            typed_config: { module: %s, key: \"pkcs11:token=other;id=%%01\" }\n"
             "        - private_key_provider:\n"
             "            provider_name: pkcs11\n"
             "            typed_config: { module: libc.so.6, key: \"pkcs11:object=x\" }\n"
             "        - private_key_provider:\n"
             "            provider_name: pkcs11\n"
             "            typed_config: { modul: %s, key: \"pkcs11:object=x\" }\n"
             "    upstream: { address: 127.0.0.1:1 }\n",
             TG_FAKE_P11, TG_FAKE_P11, TG_FAKE_P11);
    struct tg_config *cfg = NULL;
    char err[1024] = "";
    if (tg_config_load_buffer("doc.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)) != TG_OK)
        fail_msg("config: %s", err);
    unsigned long logins = fake_stat("logins");
    tg_keyprov_set_doctor_config(cfg);
    tg_pkcs11_provider.doctor(&text, &json);
    tg_keyprov_set_doctor_config(NULL);
    tg_config_free(cfg);
    if (getenv("TG_TEST_DEBUG"))
        fprintf(stderr, "%s\n%s\n", text.data, json.data);
    assert_non_null(strstr(text.data, "configured: listeners[0].tls.certificates[0]."
                                      "private_key_provider: pkcs11:token=fake;object=rsa\n"
                                      "    token 'fake' found; without login: 0 private key(s), "
                                      "1 public key(s), 1 certificate(s) match (private keys are "
                                      "hidden until login)\n"));
    assert_non_null(strstr(text.data, "configured: listeners[0].tls.certificates[1]."
                                      "private_key_provider: pkcs11:token=other;id=%01\n"));
    assert_non_null(strstr(text.data, "module libc.so.6: not usable: "));
    assert_non_null(strstr(text.data, "configured: listeners[0].tls.certificates[2]."
                                      "private_key_provider: pkcs11:object=x\n"
                                      "    the module is not usable (above)\n"));
    assert_non_null(strstr(text.data, "configured: listeners[0].tls.certificates[3]."
                                      "private_key_provider: not usable: doc.yaml:"));
    assert_non_null(strstr(text.data, "unknown key 'modul'"));
    /* Each module once, the configured ones first; the doctor never logs in. */
    const char *mod = strstr(text.data, "module " TG_FAKE_P11 ":");
    assert_non_null(mod);
    assert_null(strstr(mod + 1, "module " TG_FAKE_P11 ":"));
    assert_non_null(strstr(json.data, "\"configured\":[{\"path\":"));
    assert_int_equal(fake_stat("logins"), logins);
    tg_buf_free(&text);
    tg_buf_free(&json);
}

/* ---- set-up ---- */

static const char *write_pem(const char *name, const char *pem)
{
    return tg_test_write_file(name, pem, strlen(pem));
}

int main(void)
{
    char *rc_pem, *rk_pem, *ec_pem, *ek_pem, *nc_pem, *nk_pem;
    tg_test_make_cert("RSA:2048", "p11.test", &rc_pem, &rk_pem);
    tg_test_make_cert("EC:P-256", "p11.test", &ec_pem, &ek_pem);
    tg_test_make_cert("EC:P-256", "nocert.test", &nc_pem, &nk_pem);
    char keys[4096], rk[512], ek[512], nk[512];
    snprintf(g_rsa_cert, sizeof(g_rsa_cert), "%s", write_pem("rsa.crt", rc_pem));
    snprintf(g_ec_cert, sizeof(g_ec_cert), "%s", write_pem("ec.crt", ec_pem));
    snprintf(rk, sizeof(rk), "%s", write_pem("rsa.key", rk_pem));
    snprintf(ek, sizeof(ek), "%s", write_pem("ec.key", ek_pem));
    snprintf(nk, sizeof(nk), "%s", write_pem("nocert.key", nk_pem));
    snprintf(keys, sizeof(keys), "rsa:01:%s:%s,ec:02:%s:%s,nocert:03:%s", rk, g_rsa_cert, ek,
             g_ec_cert, nk);
    setenv("FAKE_P11_KEYS", keys, 1);
    unsetenv("FAKE_P11_CONTROL");
    free(rc_pem);
    free(rk_pem);
    free(ec_pem);
    free(ek_pem);
    free(nc_pem);
    free(nk_pem);

    void *fake = dlopen(TG_FAKE_P11, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(fake);
    *(void **)&fake_control = dlsym(fake, "fake_p11_control");
    *(void **)&fake_stat = dlsym(fake, "fake_p11_stat");
    *(void **)&fake_hold = dlsym(fake, "fake_p11_hold");
    *(void **)&fake_hold_stat = dlsym(fake, "fake_p11_hold_stat");
    assert_non_null(fake_control);
    assert_non_null(fake_stat);
    assert_non_null(fake_hold);
    assert_non_null(fake_hold_stat);

    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider, &tg_deferred_provider, &tg_pkcs11_provider);
    assert_int_equal(tg_ossl_init(), TG_OK);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_signatures, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_raw_mechanisms, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_startup_errors, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_config_errors, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_pin_sources, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_relogin_and_refind, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_token_removed, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_pin_changed, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_slow_token, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_expire_while_signing, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_queue_full, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_drain, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_cert_from_token, setup_each, teardown_each),
        cmocka_unit_test_setup_teardown(test_doctor, setup_each, teardown_each),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tg_ossl_cleanup();
    dlclose(fake);
    return rc;
}
