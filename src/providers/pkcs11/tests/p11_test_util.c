/*
 * The pkcs11 provider's unit tests against the fake module: the harness
 * they share (p11_test_util.h).
 */
#include "p11_test_util.h"

#include <dlfcn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/tg_time.h"
#include "ossl/tg_ossl.h"
#include "providers/deferred/tg_deferred.h"
#include "providers/pkcs11/tg_pkcs11.h"
#include "providers/software/tg_software.h"

void (*fake_control)(const char *);
unsigned long (*fake_stat)(const char *);
void (*fake_hold)(int);
unsigned long (*fake_hold_stat)(const char *);
char g_rsa_cert[512], g_ec_cert[512];

void conf_init(struct conf *c, const char *key, const char *pin)
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

void conf_add(struct conf *c, const char *k, const char *v)
{
    size_t i = c->kp.typed_config.n++;
    c->p[i] = (struct tg_conf_param){.key = (char *)k, .value = (char *)v};
    c->p[i].mark = c->p[i].value_mark = (struct tg_conf_mark){"gw.yaml", (int)(8 + i), 13};
}

void reset_fake(void)
{
    static const char *const kv[] = {"removed=0", "block=0",  "sign_delay_ms=0", "fail_sign=0",
                                     "pin=1234",  "no_pss=0", "no_x509=0",       "no_rsa_pkcs=0"};
    for (size_t i = 0; i < TG_ARRAY_LEN(kv); i++)
        fake_control(kv[i]);
}

/* ---- a server with a token key, a client, a loop ---- */

static int async_cb(SSL *s, void *arg)
{
    (void)s;
    ((struct pair *)arg)->wakeups++;
    return 1;
}

struct ev_loop *g_loop;
struct tg_keyprov_set *g_set;

void worker_start(void)
{
    g_loop = ev_loop_new(EVFLAG_AUTO);
    assert_int_equal(tg_keyprov_set_new(g_loop, 0, NULL, &g_set), TG_OK);
    tg_keyprov_set_current(g_set);
}

void worker_stop(void)
{
    tg_keyprov_set_free(g_set);
    tg_keyprov_set_current(NULL);
    ev_loop_destroy(g_loop);
    g_set = NULL;
    g_loop = NULL;
}

int bind_key(struct conf *c, struct pair *p, X509 **leaf, char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    return tg_keyprov_bind_held(&c->kp, NULL, &p->b, &p->key, leaf, err, errlen);
}

void pair_init(struct pair *p, struct conf *c)
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
void conn_new(struct pair *p, int maxver, const char *sigalgs)
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

void pair_free(struct pair *p)
{
    SSL_free(p->s);
    SSL_free(p->c);
    SSL_CTX_free(p->sctx);
    SSL_CTX_free(p->cctx);
    EVP_PKEY_free(p->wrapped);
    tg_pkey_unref(p->key);
    tg_keyprov_binding_free(p->b);
}

bool wait_ms(int ms, bool (*cond)(void *), void *arg)
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
void loop_until_woken(struct pair *p, int before)
{
    uint64_t end = tg_now_ns() + 30 * TG_NS_PER_S;
    while (p->wakeups == before) {
        assert_true(tg_now_ns() < end);
        ev_run(g_loop, EVRUN_ONCE);
    }
}

/* Drive the server one step: 1 done, 0 failed, -1 waiting for the token. */
int server_step(struct pair *p)
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
int handshake(struct pair *p)
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
long long stat_value(const char *series)
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

bool token_up(void *arg)
{
    (void)arg;
    return stat_value("tlsgate_pkcs11_token_up{token=\"fake\"}") == 1;
}

bool fake_idle(void *arg)
{
    (void)arg;
    return fake_stat("in_sign") == 0;
}

bool fake_signing(void *arg)
{
    return fake_stat("in_sign") >= (unsigned long)(size_t)arg;
}

bool fake_holding(void *arg)
{
    (void)arg;
    return fake_hold_stat("holding") >= 1;
}

bool fake_held_returned(void *arg)
{
    return fake_hold_stat("returned") >= (unsigned long)(size_t)arg;
}

int setup_each(void **state)
{
    (void)state;
    reset_fake();
    return 0;
}

int teardown_each(void **state)
{
    (void)state;
    fake_hold(0); /* a failed test may leave a thread held */
    if (g_set != NULL)
        worker_stop();
    tg_keyprov_shutdown(); /* tokens, threads and the module go: the next test starts fresh */
    return 0;
}

/* ---- set-up ---- */

static const char *write_pem(const char *name, const char *pem)
{
    return tg_test_write_file(name, pem, strlen(pem));
}

int p11_test_run(const char *group, const struct CMUnitTest *tests, size_t n)
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
    int rc = _cmocka_run_group_tests(group, tests, n, NULL, NULL);
    tg_ossl_cleanup();
    dlclose(fake);
    return rc;
}
