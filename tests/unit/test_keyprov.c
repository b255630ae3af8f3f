/* The provider registry, start-up binding with fallback, typed_config
 * validation, per-worker sets and the deferred provider's queue. */
#include <ev.h>
#include <string.h>

#include "config/tg_config.h"
#include "keyprov/tg_keyprov.h"
#include "keyprov/tg_keyprov_internal.h"
#include "tg_test_util.h"
#include "providers/software/tg_software.h"
#include "providers/deferred/tg_deferred.h"

static struct tg_conf_param params[4];

static void conf_init(struct tg_conf_keyprov *c, const char *name, bool fallback)
{
    memset(c, 0, sizeof(*c));
    memset(params, 0, sizeof(params));
    c->provider_name = (char *)name;
    c->fallback = fallback;
    c->path = (char *)"listeners[0].tls.certificates[0].private_key_provider";
    c->typed_config.path =
        (char *)"listeners[0].tls.certificates[0].private_key_provider.typed_config";
    c->typed_config.v = params;
    c->mark.file = "gw.yaml";
    c->mark.line = 7;
    c->mark.col = 11;
}

static void add_param(struct tg_conf_keyprov *c, const char *k, const char *v)
{
    struct tg_conf_param *p = &params[c->typed_config.n++];
    p->key = (char *)k;
    p->value = (char *)v;
    p->mark = (struct tg_conf_mark){"gw.yaml", 9, 13};
    p->value_mark = (struct tg_conf_mark){"gw.yaml", 9, 20};
}

static void test_registry(void **state)
{
    (void)state;
    assert_non_null(tg_keyprov_find("software"));
    assert_non_null(tg_keyprov_find("deferred"));
    assert_null(tg_keyprov_find("nope"));
    const char *const *names = tg_keyprov_names();
    assert_string_equal(names[0], "software");
    size_t n = 0;
    const struct tg_keyprov_ops *const *all = tg_keyprov_all(&n);
    assert_true(n >= 2);
    for (size_t i = 0; i < n; i++) {
        assert_non_null(all[i]->name);
        assert_non_null(all[i]->description);
        assert_non_null(all[i]->submit);
    }
    assert_string_equal(tg_keyop_type_name(TG_KEYOP_RSA_SIGN), "rsa_sign");
    assert_string_equal(tg_keyop_type_name(TG_KEYOP_KX_DERIVE), "kx_derive");
    assert_string_equal(tg_keyop_type_name((enum tg_keyop_type)99), "unknown");
}

static void test_bind_deferred_params(void **state)
{
    (void)state;
    struct tg_conf_keyprov c;
    char err[512] = "";
    struct tg_keyprov_binding *b = NULL;
    conf_init(&c, "deferred", false);
    add_param(&c, "delay", "5ms");
    add_param(&c, "key_exchange", "false");
    c.poll_delay_ns = 250000;
    assert_int_equal(tg_keyprov_bind(&c, NULL, &b, err, sizeof(err)), TG_OK);
    assert_string_equal(b->ops->name, "deferred");
    assert_false(b->kx);
    assert_int_equal(b->poll_delay_ns, 250000);
    tg_keyprov_binding_free(b);

    conf_init(&c, "deferred", false);
    add_param(&c, "delay", "soon");
    assert_int_equal(tg_keyprov_bind(&c, NULL, &b, err, sizeof(err)), TG_ECONFIG);
    assert_null(b);
    assert_non_null(strstr(err, "gw.yaml:9:20: "));
    assert_non_null(strstr(err, "typed_config.delay"));

    conf_init(&c, "deferred", false);
    add_param(&c, "fail_mode", "sometimes");
    assert_int_equal(tg_keyprov_bind(&c, NULL, &b, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "fail_mode"));

    conf_init(&c, "deferred", false);
    add_param(&c, "colour", "blue");
    assert_int_equal(tg_keyprov_bind(&c, NULL, &b, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "colour"));

    /* software takes no typed_config keys. */
    conf_init(&c, "software", false);
    add_param(&c, "delay", "1ms");
    assert_int_equal(tg_keyprov_bind(&c, NULL, &b, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "delay"));
}

static void test_bind_unknown(void **state)
{
    (void)state;
    struct tg_conf_keyprov c;
    char err[512] = "";
    struct tg_keyprov_binding *b = NULL;
    conf_init(&c, "nope", true);
    assert_int_equal(tg_keyprov_bind(&c, NULL, &b, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "gw.yaml:7:11: "));
    assert_non_null(strstr(err, "unknown provider 'nope'"));
}

static void test_set_lifecycle(void **state)
{
    (void)state;
    struct tg_conf_keyprov c;
    char err[512];
    struct tg_keyprov_binding *b = NULL;
    conf_init(&c, "deferred", false);
    assert_int_equal(tg_keyprov_bind(&c, NULL, &b, err, sizeof(err)), TG_OK);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct tg_keyprov_set *set = NULL;
    assert_int_equal(tg_keyprov_set_new(loop, 3, NULL, &set), TG_OK);
    tg_keyprov_set_current(set);
    assert_ptr_equal(tg_keyprov_set_current_get(), set);
    assert_non_null(tg_keyprov_current_stats(b));
    assert_int_equal(tg_keyprov_set_pending(set), 0);
    tg_keyprov_set_flush(set); /* nothing queued: harmless */
    tg_keyprov_set_free(set);
    assert_null(tg_keyprov_set_current_get());
    assert_null(tg_keyprov_current_stats(b));
    ev_loop_destroy(loop);
    tg_keyprov_binding_free(b);
}

/* A reload binds a provider no worker set has a state for yet (software ->
 * deferred): the set creates it when told the new slots. */
static void test_set_add_slots(void **state)
{
    (void)state;
    tg_keyprov_shutdown();
    assert_int_equal(tg_keyprov_slots_used(), 0);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct tg_keyprov_set *set = NULL;
    assert_int_equal(tg_keyprov_set_new(loop, 0, NULL, &set), TG_OK);
    tg_keyprov_set_current(set);
    uint32_t sw = 1u << tg_keyprov_software_binding()->slot;
    assert_int_equal(tg_keyprov_slots_used(), sw);

    struct tg_conf_keyprov c;
    char err[512];
    struct tg_keyprov_binding *b = NULL;
    conf_init(&c, "deferred", false);
    assert_int_equal(tg_keyprov_bind(&c, NULL, &b, err, sizeof(err)), TG_OK);
    uint32_t slots = tg_keyprov_slots_used();
    assert_int_equal(slots, sw | (1u << b->slot));
    assert_null(tg_keyprov_state_for(b)); /* made before the binding */
    assert_int_equal(tg_keyprov_set_add_slots(set, slots), TG_OK);
    void *st = tg_keyprov_state_for(b);
    assert_non_null(st);
    /* Idempotent: a state that exists is kept. */
    assert_int_equal(tg_keyprov_set_add_slots(set, slots), TG_OK);
    assert_ptr_equal(tg_keyprov_state_for(b), st);
    tg_keyprov_forget_keys(); /* no cached context: harmless */
    tg_keyprov_set_free(set);
    ev_loop_destroy(loop);
    tg_keyprov_binding_free(b);
}

static void test_software_binding_static(void **state)
{
    (void)state;
    const struct tg_keyprov_binding *sw = tg_keyprov_software_binding();
    assert_string_equal(sw->ops->name, "software");
    assert_false(sw->kx);
    tg_keyprov_binding_free((struct tg_keyprov_binding *)sw); /* no-op, no crash */
}

static int teardown(void **state)
{
    (void)state;
    tg_keyprov_shutdown();
    return 0;
}

int main(void)
{
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider, &tg_deferred_provider);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),      cmocka_unit_test(test_bind_deferred_params),
        cmocka_unit_test(test_bind_unknown),  cmocka_unit_test(test_set_lifecycle),
        cmocka_unit_test(test_set_add_slots), cmocka_unit_test(test_software_binding_static),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
