/*
 * tg_audit: the warnings about a valid but risky configuration. Key file
 * exposure as a pure function of mode, owner, group and who we are; the
 * findings of a configuration (keys, admin endpoint, session timeouts) with
 * exact messages; certificate expiry at given times (never the wall clock).
 */
#include "tg_test_util.h"

#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/tg_config.h"
#include "core/tg_time.h"
#include "keyprov/tg_keyprov.h"
#include "ossl/tg_ossl.h"
#include "proxy/tg_audit.h"
#include "proxy/tg_gen.h"
#include "providers/software/tg_software.h"

static char cert_path[256], key_path[256];

static int dummy_async_cb(SSL *s, void *arg)
{
    (void)s;
    (void)arg;
    return 1;
}

/* The findings, one line each. */
struct lines {
    char v[8][1400];
    size_t n;
};

static void collect(void *arg, const char *line)
{
    struct lines *l = arg;
    assert_true(l->n < 8);
    snprintf(l->v[l->n++], sizeof(l->v[0]), "%s", line);
}

static struct tg_config *load(const char *head, const char *tls_extra)
{
    char yaml[4096], err[TG_CONFIG_ERRLEN] = "";
    snprintf(yaml, sizeof(yaml),
             "%slisteners:\n"
             "  - name: l0\n"
             "    address: 127.0.0.1:0\n"
             "    tls:\n"
             "      certificates:\n"
             "        - certificate_chain: { filename: %s }\n"
             "          private_key: { filename: %s }\n"
             "%s"
             "    upstream: { address: 127.0.0.1:9 }\n",
             head, cert_path, key_path, tls_extra);
    struct tg_config *cfg = NULL;
    if (tg_config_load_buffer("gw.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)) != TG_OK)
        fail_msg("config: %s", err);
    return cfg;
}

static int setup(void **state)
{
    (void)state;
    if (tg_ossl_init() != TG_OK)
        return -1;
    char *c, *k;
    tg_test_make_cert("EC:P-256", "a.test", &c, &k);
    snprintf(cert_path, sizeof(cert_path), "%s", tg_test_write_file("a.crt", c, strlen(c)));
    snprintf(key_path, sizeof(key_path), "%s", tg_test_write_file("a.key", k, strlen(k)));
    free(c);
    free(k);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tg_keyprov_shutdown();
    tg_ossl_cleanup();
    return 0;
}

static void test_exposure(void **state)
{
    (void)state;
    struct tg_audit_ids me = {.euid = 1000, .groups = {1000, 27}, .n_groups = 2};
    /* Owner only. */
    assert_int_equal(tg_audit_key_exposure(0600, 1000, 1000, &me), TG_AUDIT_PRIVATE);
    assert_int_equal(tg_audit_key_exposure(0400, 0, 0, &me), TG_AUDIT_PRIVATE);
    /* Others can read: always. */
    assert_int_equal(tg_audit_key_exposure(0644, 1000, 1000, &me), TG_AUDIT_OTHERS);
    assert_int_equal(tg_audit_key_exposure(0604, 0, 27, &me), TG_AUDIT_OTHERS);
    /* Group read we do not need: we own the file. */
    assert_int_equal(tg_audit_key_exposure(0640, 1000, 1000, &me), TG_AUDIT_GROUP);
    /* Group read of a group we are not in. */
    assert_int_equal(tg_audit_key_exposure(0640, 0, 50, &me), TG_AUDIT_GROUP);
    /* Group read is how we get in (Kubernetes fsGroup, mode 0440). */
    assert_int_equal(tg_audit_key_exposure(0440, 0, 27, &me), TG_AUDIT_PRIVATE);
    assert_int_equal(tg_audit_key_exposure(0640, 0, 1000, &me), TG_AUDIT_PRIVATE);
    /* Write or execute bits without read are not a disclosure. */
    assert_int_equal(tg_audit_key_exposure(0620, 1000, 1000, &me), TG_AUDIT_PRIVATE);
    assert_int_equal(tg_audit_key_exposure(0602, 1000, 1000, &me), TG_AUDIT_PRIVATE);

    struct tg_audit_ids self;
    tg_audit_ids_self(&self);
    assert_true(self.n_groups >= 1);
    assert_int_equal(self.euid, (uint32_t)geteuid());
    assert_int_equal(self.groups[0], (uint32_t)getegid());
}

static void test_loopback(void **state)
{
    (void)state;
    static const struct {
        const char *addr;
        bool lo;
    } cases[] = {
        {"127.0.0.1:1", true},          {"127.8.9.10:1", true},
        {"localhost:1", true},          {"[::1]:1", true},
        {"[::ffff:127.0.0.1]:1", true}, {"0.0.0.0:1", false},
        {"10.0.0.1:1", false},          {"[::]:1", false},
        {"[::ffff:10.0.0.1]:1", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tg_conf_addr a;
        assert_int_equal(tg_conf_parse_addr(cases[i].addr, &a), TG_OK);
        if (tg_audit_is_loopback(&a) != cases[i].lo)
            fail_msg("%s", cases[i].addr);
        tg_conf_addr_clear(&a);
    }
}

static void test_config_findings(void **state)
{
    (void)state;
    struct tg_audit_ids me = {.euid = 4242, .groups = {4242}, .n_groups = 1};
    struct lines l = {.n = 0};

    /* Nothing to say: key 0600 (as read), loopback admin, default timeout. */
    struct tg_config *cfg = load("admin: { address: 127.0.0.1:0 }\n", "");
    struct tg_conf_datasource *k = &cfg->listeners[0].tls.certs[0].private_key;
    assert_true(k->has_stat);
    k->mode = 0600;
    k->uid = 4242;
    assert_int_equal(tg_audit_config(cfg, &me, collect, &l), 0);

    /* A key every user can read. */
    k->mode = 0644;
    assert_int_equal(tg_audit_config(cfg, &me, collect, &l), 1);
    char want[1400];
    snprintf(want, sizeof(want),
             "gw.yaml:8:36: listeners[0].tls.certificates[0].private_key: '%s' (mode 0644) can "
             "be read by every user of this machine: make the private key readable by the user "
             "tlsgate runs as only (chmod 0600 or 0400; under systemd, LoadCredential=, see "
             "docs/OPERATIONS.md)",
             key_path);
    assert_string_equal(l.v[0], want);
    /* By a group we do not need (a gid no system has a name for). */
    l.n = 0;
    k->mode = 0640;
    k->gid = 3999999;
    assert_int_equal(tg_audit_config(cfg, &me, collect, &l), 1);
    assert_non_null(strstr(l.v[0], "(mode 0640) can be read by group 3999999:"));
    /* An inline key has no file mode. */
    k->has_stat = false;
    l.n = 0;
    assert_int_equal(tg_audit_config(cfg, &me, collect, &l), 0);
    tg_config_free(cfg);

    /* The admin endpoint on every address, without allowed_sources. */
    l.n = 0;
    cfg = load("admin: { address: 0.0.0.0:9901 }\n", "");
    cfg->listeners[0].tls.certs[0].private_key.has_stat = false;
    assert_int_equal(tg_audit_config(cfg, &me, collect, &l), 1);
    assert_string_equal(
        l.v[0], "gw.yaml:1:19: admin.address: 0.0.0.0:9901 is not a loopback address and "
                "admin.allowed_sources is not set: anyone who can reach this port reads /stats "
                "(certificate names, upstream addresses, traffic) without authentication; bind "
                "it to 127.0.0.1 or [::1], or list the networks that may use it in "
                "admin.allowed_sources");
    tg_config_free(cfg);
    /* With allowed_sources: said to be protected. */
    l.n = 0;
    cfg = load("admin: { address: \"[::]:9901\", allowed_sources: [10.0.0.0/8] }\n", "");
    cfg->listeners[0].tls.certs[0].private_key.has_stat = false;
    assert_int_equal(tg_audit_config(cfg, &me, collect, &l), 0);
    tg_config_free(cfg);

    /* A session timeout longer than the key interval (set explicitly). */
    l.n = 0;
    cfg = load("session_tickets: { key_rotation_interval: 30m }\n", "      session_timeout: 2h\n");
    cfg->listeners[0].tls.certs[0].private_key.has_stat = false;
    assert_int_equal(tg_audit_config(cfg, &me, collect, &l), 1);
    assert_string_equal(
        l.v[0], "gw.yaml:9:24: listeners[0].tls.session_timeout: 2h is longer than "
                "session_tickets.key_rotation_interval (30m): a ticket's key is wiped one to two "
                "intervals after the ticket was issued, so clients may hold tickets that no "
                "longer resume (a full handshake then)");
    tg_config_free(cfg);
    /* Equal, or resumption off: nothing. */
    l.n = 0;
    cfg = load("session_tickets: { key_rotation_interval: 2h }\n", "      session_timeout: 2h\n");
    cfg->listeners[0].tls.certs[0].private_key.has_stat = false;
    assert_int_equal(tg_audit_config(cfg, &me, collect, &l), 0);
    tg_config_free(cfg);
    cfg = load("", "      session_timeout: 2h\n      session_resumption: false\n");
    cfg->listeners[0].tls.certs[0].private_key.has_stat = false;
    assert_int_equal(tg_audit_config(cfg, &me, collect, &l), 0);
    tg_config_free(cfg);
}

/* A key server's file: its keys and its admin endpoint, as a gateway's. */
static void test_keyserver_findings(void **state)
{
    (void)state;
    struct tg_audit_ids me = {.euid = 4242, .groups = {4242}, .n_groups = 1};
    struct lines l = {.n = 0};
    char yaml[2048], err[TG_CONFIG_ERRLEN] = "";
    snprintf(yaml, sizeof(yaml),
             "admin: { address: 0.0.0.0:9902 }\n"
             "keyserver: { socket: /run/k.sock }\n"
             "keys:\n"
             "  - private_key: { filename: %s }\n",
             key_path);
    struct tg_config *cfg = NULL;
    if (tg_config_load_keyserver_buffer("ks.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)) !=
        TG_OK)
        fail_msg("config: %s", err);
    struct tg_conf_datasource *k = &cfg->keyserver->keys[0].private_key;
    assert_true(k->has_stat);
    k->mode = 0600;
    k->uid = 4242;
    /* Only the admin endpoint. */
    assert_int_equal(tg_audit_config(cfg, &me, collect, &l), 1);
    assert_non_null(strstr(l.v[0], "ks.yaml:1:19: admin.address: 0.0.0.0:9902 is not a loopback"));
    l.n = 0;
    k->mode = 0604;
    assert_int_equal(tg_audit_config(cfg, &me, collect, &l), 2);
    char want[1400];
    snprintf(want, sizeof(want),
             "ks.yaml:4:30: keys[0].private_key: '%s' (mode 0604) can be read by every user of "
             "this machine:",
             key_path);
    if (strncmp(l.v[0], want, strlen(want)) != 0)
        fail_msg("got '%s', want '%s...'", l.v[0], want);
    tg_config_free(cfg);
}

static void test_cert_findings(void **state)
{
    (void)state;
    struct tg_gen *g = NULL;
    char err[TG_CONFIG_ERRLEN] = "";
    assert_int_equal(tg_gen_new(load("certificate_expiry_warning: 14d\n", ""), 1, dummy_async_cb,
                                &g, err, sizeof(err)),
                     TG_OK);
    struct tg_tls_cert_info info;
    tg_tls_listener_cert_info(g->listeners[0].tls, 0, &info);
    assert_true(info.not_after > 0);
    int64_t na = info.not_after;
    struct lines l = {.n = 0};

    /* Far from expiry, and just outside the window: nothing. */
    assert_int_equal(tg_audit_certs(g, na - 100 * 86400, collect, &l), 0);
    assert_int_equal(tg_audit_certs(g, na - 14 * 86400 - 1, collect, &l), 0);
    /* Inside the window. */
    assert_int_equal(tg_audit_certs(g, na - 10 * 86400 - 5, collect, &l), 1);
    assert_non_null(strstr(l.v[0], "gw.yaml:7:42: listeners[0].tls.certificates[0]."
                                   "certificate_chain: the certificate for [a.test] (serial "
                                   "01) expires in 10 days (not after "));
    assert_non_null(strstr(l.v[0], " UTC, certificate_expiry_warning: 14d): renew it"));
    /* Less than two days: in hours. */
    l.n = 0;
    assert_int_equal(tg_audit_certs(g, na - 5 * 3600, collect, &l), 1);
    assert_non_null(strstr(l.v[0], "expires in 5 hours"));
    /* Expired. */
    l.n = 0;
    assert_int_equal(tg_audit_certs(g, na, collect, &l), 1);
    assert_non_null(strstr(l.v[0], "has EXPIRED, 0 hours ago"));
    l.n = 0;
    assert_int_equal(tg_audit_certs(g, na + 3 * 86400, collect, &l), 1);
    assert_non_null(strstr(l.v[0], "has EXPIRED, 3 days ago (not after "));
    assert_non_null(strstr(l.v[0], "): clients refuse it; renew it"));
    tg_gen_unref(g);

    /* certificate_expiry_warning: 0 — only once expired. */
    assert_int_equal(tg_gen_new(load("certificate_expiry_warning: 0s\n", ""), 1, dummy_async_cb, &g,
                                err, sizeof(err)),
                     TG_OK);
    l.n = 0;
    assert_int_equal(tg_audit_certs(g, na - 60, collect, &l), 0);
    assert_int_equal(tg_audit_certs(g, na + 1, collect, &l), 1);
    tg_gen_unref(g);
}

int main(void)
{
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exposure),        cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_config_findings), cmocka_unit_test(test_keyserver_findings),
        cmocka_unit_test(test_cert_findings),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
