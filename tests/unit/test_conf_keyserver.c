/*
 * Unit tests for src/config/tg_conf_keyserver.c, a key server's
 * configuration: defaults, every key, user and group names and numbers,
 * socket names (paths relative to the file, abstract names), keys with and
 * without a provider, and the exact error messages with FILE:LINE:COL.
 */
#include "tg_test_util.h"

#include "config/tg_config.h"
#include "core/tg_time.h"

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_cert[512], g_key[512];

static int setup(void **state)
{
    (void)state;
    char *cert, *key;
    tg_test_make_cert("EC:P-256", "ks.test", &cert, &key);
    snprintf(g_cert, sizeof(g_cert), "%s", tg_test_write_file("c.pem", cert, strlen(cert)));
    snprintf(g_key, sizeof(g_key), "%s", tg_test_write_file("k.pem", key, strlen(key)));
    free(cert);
    free(key);
    return 0;
}

/* Line 1 "keyserver:", lines 2.. the block's keys (ks), then "keys:" and
 * one key (given, or the default entry). */
static int load(const char *ks, const char *keys, struct tg_config **cfg, char *err, size_t errlen)
{
    char yaml[4096], defkeys[1200];
    snprintf(defkeys, sizeof(defkeys),
             "keys:\n"
             "  - private_key: { filename: %s }\n",
             g_key);
    snprintf(yaml, sizeof(yaml), "keyserver:\n%s%s", ks, keys != NULL ? keys : defkeys);
    return tg_config_load_keyserver_buffer("ks.yaml", yaml, strlen(yaml), cfg, err, errlen);
}

static struct tg_config *ok(const char *ks, const char *keys)
{
    struct tg_config *cfg = NULL;
    char err[TG_CONFIG_ERRLEN] = "";
    if (load(ks, keys, &cfg, err, sizeof(err)) != TG_OK)
        fail_msg("unexpected error: %s", err);
    assert_non_null(cfg->keyserver);
    return cfg;
}

static void bad(const char *ks, const char *keys, const char *want)
{
    struct tg_config *cfg = NULL;
    char err[TG_CONFIG_ERRLEN] = "";
    assert_int_not_equal(load(ks, keys, &cfg, err, sizeof(err)), TG_OK);
    assert_null(cfg);
    if (strstr(err, want) == NULL)
        fail_msg("error '%s' does not contain '%s'", err, want);
}

static void test_defaults(void **state)
{
    (void)state;
    struct tg_config *cfg = ok("  socket: /run/tlsgate/keys.sock\n", NULL);
    const struct tg_conf_keyserver *ks = cfg->keyserver;
    assert_string_equal(ks->socket, "/run/tlsgate/keys.sock");
    assert_int_equal(ks->socket_mode, 0660);
    assert_false(ks->has_socket_group);
    assert_int_equal(ks->n_allowed_uids, 0);
    assert_int_equal(ks->n_allowed_gids, 0);
    assert_int_equal(ks->max_connections, 256);
    assert_int_equal(ks->max_in_flight, 1024);
    assert_int_equal(ks->max_queue, 8192);
    assert_int_equal(ks->request_timeout_ns, 10 * TG_NS_PER_S);
    assert_int_equal(ks->n_keys, 1);
    assert_non_null(ks->keys[0].private_key.data);
    assert_null(ks->keys[0].chain.data);
    assert_string_equal(ks->keys[0].keyprov.provider_name, "software");
    assert_string_equal(ks->keys[0].path, "keys[0]");
    assert_int_equal(cfg->n_listeners, 0);
    tg_config_free(cfg);
}

/* Once the key server has loaded its keys, their PEM text goes (and only
 * the text: where it came from stays for messages and warnings). */
static void test_wipe_keys(void **state)
{
    (void)state;
    struct tg_config *cfg = ok("  socket: /run/tlsgate/keys.sock\n", NULL);
    struct tg_conf_datasource *k = &cfg->keyserver->keys[0].private_key;
    assert_non_null(k->data);
    assert_true(k->data_len > 0);
    tg_config_wipe_keys(cfg);
    assert_null(k->data);
    assert_int_equal(k->data_len, 0);
    assert_string_equal(k->filename, g_key);
    assert_true(k->has_stat);
    tg_config_wipe_keys(cfg); /* twice is harmless */
    tg_config_free(cfg);
}

static void test_every_key(void **state)
{
    (void)state;
    struct passwd *me = getpwuid(getuid());
    struct group *gr = getgrgid(getgid());
    assert_non_null(me);
    assert_non_null(gr);
    char ks[1024], keys[4096];
    snprintf(ks, sizeof(ks),
             "  socket: \"@tlsgate-keys\"\n"
             "  socket_mode: \"0600\"\n"
             "  socket_group: %s\n"
             "  allowed_uids: [%s, 4242]\n"
             "  allowed_gids: [%u]\n"
             "  max_connections: 8\n"
             "  max_in_flight: 16\n"
             "  max_queue: 100\n"
             "  request_timeout: 2s\n",
             gr->gr_name, me->pw_name, (unsigned)getgid());
    snprintf(keys, sizeof(keys),
             "keys:\n"
             "  - private_key: { filename: %s }\n"
             "    certificate_chain: { filename: %s }\n"
             "    private_key_provider:\n"
             "      provider_name: cryptomb\n"
             "      typed_config: { poll_delay: 2ms, partial_batch: mb }\n"
             "  - certificate_chain: { filename: %s }\n"
             "    private_key_provider:\n"
             "      provider_name: deferred\n"
             "      typed_config: { private_key: { filename: %s } }\n"
             "  - private_key_provider: { provider_name: pkcs11, typed_config: { key: x } }\n",
             g_key, g_cert, g_cert, g_key);
    struct tg_config *cfg = ok(ks, keys);
    const struct tg_conf_keyserver *k = cfg->keyserver;
    assert_string_equal(k->socket, "@tlsgate-keys");
    assert_int_equal(k->socket_mode, 0600);
    assert_true(k->has_socket_group);
    assert_int_equal(k->socket_group, getgid());
    assert_int_equal(k->n_allowed_uids, 2);
    assert_int_equal(k->allowed_uids[0], getuid());
    assert_int_equal(k->allowed_uids[1], 4242);
    assert_int_equal(k->n_allowed_gids, 1);
    assert_int_equal(k->allowed_gids[0], getgid());
    assert_int_equal(k->max_connections, 8);
    assert_int_equal(k->max_in_flight, 16);
    assert_int_equal(k->max_queue, 100);
    assert_int_equal(k->request_timeout_ns, 2 * TG_NS_PER_S);
    assert_int_equal(k->n_keys, 3);
    assert_string_equal(k->keys[0].keyprov.provider_name, "cryptomb");
    assert_int_equal(k->keys[0].keyprov.poll_delay_ns, 2 * TG_NS_PER_MS);
    assert_int_equal(k->keys[0].keyprov.typed_config.n, 1);
    assert_non_null(k->keys[0].chain.data);
    /* Envoy's place for the key: inside typed_config. */
    assert_non_null(k->keys[1].private_key.data);
    assert_int_equal(k->keys[1].keyprov.typed_config.n, 0);
    /* A provider that holds the key: no private_key. */
    assert_null(k->keys[2].private_key.data);
    assert_string_equal(k->keys[2].keyprov.provider_name, "pkcs11");
    assert_string_equal(k->keys[2].keyprov.path, "keys[2].private_key_provider");
    tg_config_free(cfg);
}

static void test_socket_relative_to_file(void **state)
{
    (void)state;
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "keyserver: { socket: run/keys.sock }\n"
             "keys: [ { private_key: { filename: %s } } ]\n",
             g_key);
    const char *path = tg_test_write_file("ks.yaml", yaml, strlen(yaml));
    struct tg_config *cfg = NULL;
    char err[TG_CONFIG_ERRLEN] = "", want[600];
    assert_int_equal(tg_config_load_keyserver_file(path, &cfg, err, sizeof(err)), TG_OK);
    snprintf(want, sizeof(want), "%s/run/keys.sock", tg_test_tmpdir());
    assert_string_equal(cfg->keyserver->socket, want);
    tg_config_free(cfg);
}

static void test_errors(void **state)
{
    (void)state;
    bad("  socket: /x\n  colour: blue\n", NULL,
        "ks.yaml:3:3: keyserver.colour: unknown key 'colour'");
    bad("  socket_mode: \"0600\"\n", NULL, "ks.yaml:2:3: keyserver: missing required key 'socket'");
    bad("  socket: \"\"\n", NULL, "ks.yaml:2:11: keyserver.socket:");
    bad("  socket: \"@\"\n", NULL, "keyserver.socket: an abstract socket needs a name after '@'");
    char longname[300];
    memset(longname, 'a', sizeof(longname));
    longname[0] = '/';
    longname[200] = '\0';
    char ks[600];
    snprintf(ks, sizeof(ks), "  socket: %s\n", longname);
    bad(ks, NULL, "keyserver.socket: socket name of 200 bytes; at most 107 fit");
    bad("  socket: /x\n  socket_mode: \"0999\"\n", NULL,
        "ks.yaml:3:16: keyserver.socket_mode: expected octal permission bits like \"0660\", got "
        "'0999'");
    bad("  socket: /x\n  socket_mode: \"7777\"\n", NULL, "got '7777'");
    bad("  socket: /x\n  socket_mode: \"0444\"\n", NULL,
        "keyserver.socket_mode: mode 0444 does not let the key server's own user connect");
    bad("  socket: /x\n  allowed_uids: [no-such-user-tlsgate]\n", NULL,
        "ks.yaml:3:18: keyserver.allowed_uids[0]: 'no-such-user-tlsgate': no such user on this "
        "system");
    bad("  socket: /x\n  allowed_gids: [0, no-such-group-tlsgate]\n", NULL,
        "keyserver.allowed_gids[1]: 'no-such-group-tlsgate': no such group");
    bad("  socket: /x\n  allowed_uids: [4294967295]\n", NULL, "not a user id");
    bad("  socket: /x\n  allowed_uids: 0\n", NULL, "keyserver.allowed_uids:");
    bad("  socket: /x\n  socket_group: no-such-group-tlsgate\n", NULL,
        "keyserver.socket_group: 'no-such-group-tlsgate': no such group");
    bad("  socket: /x\n  max_in_flight: 0\n", NULL, "keyserver.max_in_flight:");
    bad("  socket: /x\n  max_in_flight: 65536\n", NULL, "keyserver.max_in_flight:");
    bad("  socket: /x\n  request_timeout: 0s\n", NULL, "keyserver.request_timeout:");
    bad("  socket: /x\n", "keys: []\n", "ks.yaml:3:7: keys: at least one key is required");
    bad("  socket: /x\n", "keys: {}\n", "keys: expected a sequence of keys");
    bad("  socket: /x\n", "keys:\n  - certificate_chain: { filename: /nonexistent.pem }\n",
        "ks.yaml:4:36: keys[0].certificate_chain.filename: cannot read '/nonexistent.pem'");
    char keys[2048];
    snprintf(keys, sizeof(keys), "keys:\n  - certificate_chain: { filename: %s }\n", g_cert);
    bad("  socket: /x\n", keys,
        "ks.yaml:4:5: keys[0]: missing required key 'private_key' (or a private_key_provider");
    snprintf(keys, sizeof(keys),
             "keys:\n  - private_key: { filename: %s }\n    server_names: [a]\n", g_key);
    bad("  socket: /x\n", keys, "ks.yaml:5:5: keys[0].server_names: unknown key 'server_names'");
    /* The key where a certificate should be. */
    snprintf(keys, sizeof(keys), "keys:\n  - private_key: { filename: %s }\n", g_cert);
    bad("  socket: /x\n", keys, "contains no PEM private key");
    /* Both places for the key. */
    snprintf(keys, sizeof(keys),
             "keys:\n  - private_key: { filename: %s }\n"
             "    private_key_provider: { provider_name: software, typed_config: { private_key: "
             "{ filename: %s } } }\n",
             g_key, g_key);
    bad("  socket: /x\n", keys, "give it only once");
}

static void test_top_level(void **state)
{
    (void)state;
    struct tg_config *cfg = NULL;
    char err[TG_CONFIG_ERRLEN] = "";
    const char *gw = "listeners: []\n";
    assert_int_equal(
        tg_config_load_keyserver_buffer("gw.yaml", gw, strlen(gw), &cfg, err, sizeof(err)),
        TG_ECONFIG);
    assert_non_null(strstr(err, "gw.yaml:1:1: listeners: this is a gateway's configuration"));
    const char *empty = "";
    assert_int_equal(tg_config_load_keyserver_buffer("ks.yaml", empty, 0, &cfg, err, sizeof(err)),
                     TG_ECONFIG);
    assert_non_null(strstr(err, "expected a mapping with at least 'keyserver' and 'keys'"));
    const char *nokeys = "keyserver: { socket: /x }\nlog_level: debug\nadmin: { address: "
                         "127.0.0.1:0 }\n";
    assert_int_equal(
        tg_config_load_keyserver_buffer("ks.yaml", nokeys, strlen(nokeys), &cfg, err, sizeof(err)),
        TG_ECONFIG);
    assert_non_null(strstr(err, "missing required key 'keys'"));
    const char *conc = "concurrency: 2\nkeyserver: { socket: /x }\n";
    assert_int_equal(
        tg_config_load_keyserver_buffer("ks.yaml", conc, strlen(conc), &cfg, err, sizeof(err)),
        TG_ECONFIG);
    assert_non_null(strstr(err, "ks.yaml:1:1: concurrency: unknown key 'concurrency'"));
    /* A key server's file given to the gateway. */
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "keyserver: { socket: /x }\nkeys: [ { private_key: { filename: %s } } ]\n", g_key);
    assert_int_equal(tg_config_load_buffer("ks.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)),
                     TG_ECONFIG);
    assert_non_null(strstr(err, "unknown key 'keyserver'"));
    /* log_level and admin are read as in a gateway's. */
    snprintf(yaml, sizeof(yaml),
             "log_level: debug\nadmin: { address: 127.0.0.1:0 }\nkeyserver: { socket: /x }\n"
             "keys: [ { private_key: { filename: %s } } ]\n",
             g_key);
    assert_int_equal(
        tg_config_load_keyserver_buffer("ks.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)),
        TG_OK);
    assert_true(cfg->has_admin);
    assert_int_equal(cfg->log_level, 3);
    tg_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),  cmocka_unit_test(test_wipe_keys),
        cmocka_unit_test(test_every_key), cmocka_unit_test(test_socket_relative_to_file),
        cmocka_unit_test(test_errors),    cmocka_unit_test(test_top_level),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
