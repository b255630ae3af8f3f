/*
 * tg_keyop_start (src/keyprov/tg_keyop.c): key operations for a waiter that
 * is not an ASYNC job (the key server). Inline completion (software), a
 * later completion with exactly one wake-up (deferred, from the flush),
 * runtime fallback and failure, and the refusals: no provider state on this
 * thread, an op that is not NEW, no wake-up.
 */
#include <ev.h>
#include <openssl/pem.h>
#include <string.h>

#include "config/tg_config.h"
#include "keyprov/tg_keyprov.h"
#include "providers/deferred/tg_deferred.h"
#include "providers/software/tg_software.h"
#include "tg_test_util.h"

static struct tg_pkey *g_key;
static EVP_PKEY *g_pub;
static struct ev_loop *g_loop;
static struct tg_keyprov_set *g_set;
static int g_wakes;
static void *g_wake_arg;

static int wake(void *arg)
{
    g_wakes++;
    g_wake_arg = arg;
    return 1;
}

static struct tg_keyprov_binding *bind_prov(const char *name, const char *fail_every,
                                            const char *fail_mode)
{
    static struct tg_conf_param params[2];
    struct tg_conf_keyprov c;
    memset(&c, 0, sizeof(c));
    memset(params, 0, sizeof(params));
    c.provider_name = (char *)name;
    c.path = (char *)"keys[0].private_key_provider";
    c.typed_config.path = (char *)"keys[0].private_key_provider.typed_config";
    c.typed_config.v = params;
    if (fail_every != NULL) {
        params[0] =
            (struct tg_conf_param){.key = (char *)"fail_every", .value = (char *)fail_every};
        params[1] = (struct tg_conf_param){.key = (char *)"fail_mode", .value = (char *)fail_mode};
        c.typed_config.n = 2;
    }
    struct tg_keyprov_binding *b = NULL;
    char err[512];
    assert_int_equal(tg_keyprov_bind(&c, g_key, &b, err, sizeof(err)), TG_OK);
    return b;
}

static int setup(void **state)
{
    (void)state;
    char *cert = NULL, *pem = NULL, why[256];
    tg_test_make_cert("EC:P-256", "start.test", &cert, &pem);
    assert_int_equal(tg_pkey_load_pem(pem, strlen(pem), &g_key, why, sizeof(why)), TG_OK);
    BIO *b = BIO_new_mem_buf(cert, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    g_pub = X509_get_pubkey(x);
    X509_free(x);
    free(cert);
    free(pem);
    g_loop = ev_loop_new(EVFLAG_AUTO);
    /* Bind before the set exists: the set makes state for used providers. */
    tg_keyprov_binding_free(bind_prov("deferred", NULL, NULL));
    assert_int_equal(tg_keyprov_set_new(g_loop, 0, NULL, &g_set), TG_OK);
    tg_keyprov_set_current(g_set);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tg_keyprov_set_free(g_set);
    ev_loop_destroy(g_loop);
    tg_pkey_unref(g_key);
    EVP_PKEY_free(g_pub);
    tg_keyprov_shutdown();
    return 0;
}

static void sign_op(struct tg_keyop *op, const struct tg_keyprov_binding *b)
{
    tg_keyop_init(op, TG_KEYOP_ECDSA_SIGN);
    op->pkey = g_key;
    op->binding = b;
    op->inlen = 32;
    memset(op->in, 0x42, 32);
}

static void assert_verifies(const struct tg_keyop *op)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(g_pub, NULL);
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
    assert_int_equal(EVP_PKEY_verify(ctx, op->out, op->outlen, op->in, op->inlen), 1);
    EVP_PKEY_CTX_free(ctx);
}

static void test_inline(void **state)
{
    (void)state;
    struct tg_keyop op;
    g_wakes = 0;
    sign_op(&op, NULL); /* software */
    assert_int_equal(tg_keyop_start(&op, wake, &op), TG_OK);
    assert_int_equal(g_wakes, 0);
    assert_int_equal(tg_keyop_consume(&op), TG_OK);
    assert_verifies(&op);
    /* Taken once. */
    assert_int_equal(tg_keyop_consume(&op), TG_ESTATE);
}

static void test_later(void **state)
{
    (void)state;
    struct tg_keyprov_binding *b = bind_prov("deferred", NULL, NULL);
    struct tg_keyop ops[3];
    g_wakes = 0;
    for (int i = 0; i < 3; i++) {
        sign_op(&ops[i], b);
        assert_int_equal(tg_keyop_start(&ops[i], wake, &ops[i]), TG_EPENDING);
    }
    assert_int_equal(g_wakes, 0);
    assert_int_equal(tg_keyprov_set_pending(g_set), 3);
    assert_int_equal(tg_keyop_consume(&ops[0]), TG_ESTATE); /* not done yet */
    tg_keyprov_set_flush(g_set);
    assert_int_equal(g_wakes, 3);
    assert_ptr_equal(g_wake_arg, &ops[2]);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tg_keyop_consume(&ops[i]), TG_OK);
        assert_false(ops[i].fell_back);
        assert_verifies(&ops[i]);
    }
    struct tg_keyprov_stats *st = tg_keyprov_current_stats(b);
    assert_int_equal(tg_ctr_get(&st->completed[TG_KEYOP_ECDSA_SIGN]), 3);
    tg_keyprov_binding_free(b);
}

static void test_fallback_and_failure(void **state)
{
    (void)state;
    /* A device error on a software key: finished in software, counted. */
    struct tg_keyprov_binding *b = bind_prov("deferred", "1", "error");
    struct tg_keyop op;
    g_wakes = 0;
    sign_op(&op, b);
    assert_int_equal(tg_keyop_start(&op, wake, &op), TG_EPENDING);
    tg_keyprov_set_flush(g_set);
    assert_int_equal(g_wakes, 1);
    assert_int_equal(tg_keyop_consume(&op), TG_OK);
    assert_true(op.fell_back);
    assert_verifies(&op);
    tg_keyprov_binding_free(b);
    /* A fatal failure fails the op. */
    b = bind_prov("deferred", "1", "fatal");
    sign_op(&op, b);
    assert_int_equal(tg_keyop_start(&op, wake, &op), TG_EPENDING);
    tg_keyprov_set_flush(g_set);
    assert_int_equal(g_wakes, 2);
    assert_int_equal(tg_keyop_consume(&op), TG_ECRYPTO);
    assert_int_equal(op.outlen, 0);
    tg_keyprov_binding_free(b);
}

static void test_refused(void **state)
{
    (void)state;
    struct tg_keyop op;
    g_wakes = 0;
    /* No wake-up. */
    sign_op(&op, NULL);
    assert_int_equal(tg_keyop_start(&op, NULL, NULL), TG_ESTATE);
    /* Not NEW. */
    assert_int_equal(tg_keyop_start(&op, wake, NULL), TG_OK);
    assert_int_equal(tg_keyop_start(&op, wake, NULL), TG_ESTATE);
    assert_int_equal(tg_keyop_consume(&op), TG_OK);
    /* No provider set on this thread: nothing runs, the op stays NEW. */
    tg_keyprov_set_current(NULL);
    sign_op(&op, NULL);
    assert_int_equal(tg_keyop_start(&op, wake, NULL), TG_EUNAVAIL);
    assert_int_equal(op.state, TG_KEYOP_NEW);
    tg_keyprov_set_current(g_set);
    assert_int_equal(tg_keyop_start(&op, wake, NULL), TG_OK);
    assert_int_equal(tg_keyop_consume(&op), TG_OK);
    assert_int_equal(g_wakes, 0);
}

int main(void)
{
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider, &tg_deferred_provider);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inline),
        cmocka_unit_test(test_later),
        cmocka_unit_test(test_fallback_and_failure),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
