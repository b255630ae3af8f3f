/*
 * Unit tests for src/config/tg_conf_upstream.c (the upstream block with its
 * endpoints, load balancing, DNS, outlier detection and health check keys,
 * and the top-level dns block) and the host:port / resolver parsers it uses
 * (tg_conf_parse.c): defaults, every key, and the exact error messages with
 * FILE:LINE:COL.
 */
#include "tg_test_util.h"

#include "config/tg_conf_parse.h"
#include "config/tg_config.h"
#include "core/tg_time.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char g_cert[512], g_key[512];

static int setup(void **state)
{
    (void)state;
    char *cert, *key;
    tg_test_make_cert("EC:P-256", "a.test", &cert, &key);
    snprintf(g_cert, sizeof(g_cert), "%s", tg_test_write_file("c.pem", cert, strlen(cert)));
    snprintf(g_key, sizeof(g_key), "%s", tg_test_write_file("k.pem", key, strlen(key)));
    free(cert);
    free(key);
    return 0;
}

/* Lines 1..6 are the listener up to its upstream; the upstream mapping
 * starts on line 7 (text given), the rest follows it. */
static int load_up(const char *upstream, const char *after, struct tg_config **cfg, char *err,
                   size_t errlen)
{
    char yaml[4096];
    snprintf(yaml, sizeof(yaml),
             "listeners:\n"
             "  - address: 127.0.0.1:8443\n"
             "    tls:\n"
             "      certificates:\n"
             "        - certificate_chain: { filename: %s }\n"
             "          private_key: { filename: %s }\n"
             "    upstream: %s\n"
             "%s",
             g_cert, g_key, upstream, after != NULL ? after : "");
    return tg_config_load_buffer("gw.yaml", yaml, strlen(yaml), cfg, err, errlen);
}

static struct tg_config *ok_up(const char *upstream, const char *after)
{
    struct tg_config *cfg = NULL;
    char err[TG_CONFIG_ERRLEN] = "";
    int rc = load_up(upstream, after, &cfg, err, sizeof(err));
    if (rc != TG_OK)
        fail_msg("unexpected error: %s", err);
    return cfg;
}

static void err_up(const char *upstream, const char *after, const char *want)
{
    struct tg_config *cfg = NULL;
    char err[TG_CONFIG_ERRLEN] = "";
    int rc = load_up(upstream, after, &cfg, err, sizeof(err));
    if (rc == TG_OK || strcmp(err, want) != 0)
        fail_msg("upstream: %s\n got: %s\nwant: %s", upstream, rc == TG_OK ? "(ok)" : err, want);
    assert_null(cfg);
}

static void test_address_form(void **state)
{
    (void)state;
    struct tg_config *cfg = ok_up("{ address: 127.0.0.1:8080 }", NULL);
    const struct tg_conf_upstream *u = &cfg->listeners[0].upstream;
    assert_string_equal(u->addr.text, "127.0.0.1:8080");
    assert_int_equal(u->n_endpoints, 1);
    assert_string_equal(u->endpoints[0].text, "127.0.0.1:8080");
    assert_string_equal(u->endpoints[0].host, "127.0.0.1");
    assert_int_equal(u->endpoints[0].port, 8080);
    assert_false(u->endpoints[0].is_name);
    assert_int_equal(u->endpoints[0].weight, 1);
    assert_int_equal(u->endpoints[0].addr.ss.ss_family, AF_INET);
    assert_string_equal(u->text, "127.0.0.1:8080");
    /* defaults */
    assert_true(u->connect_timeout_ns == 5 * TG_NS_PER_S);
    assert_int_equal(u->max_connect_attempts, 3);
    assert_int_equal(u->lb_policy, TG_LB_ROUND_ROBIN);
    assert_int_equal(u->dns_lookup_family, TG_DNS_AUTO);
    assert_true(u->dns_refresh_rate_ns == 5 * TG_NS_PER_S);
    assert_false(u->respect_dns_ttl);
    assert_int_equal(u->outlier.consecutive_failures, 5);
    assert_true(u->outlier.base_ejection_time_ns == 30 * TG_NS_PER_S);
    assert_true(u->outlier.max_ejection_time_ns == 300 * TG_NS_PER_S);
    assert_int_equal(u->outlier.max_ejection_percent, 10);
    assert_false(u->health_check.enabled);
    assert_int_equal(cfg->dns.n_resolvers, 0);
    assert_true(cfg->dns.query_timeout_ns == 2 * TG_NS_PER_S);
    assert_int_equal(cfg->dns.query_attempts, 2);
    tg_config_free(cfg);
}

static void test_every_key(void **state)
{
    (void)state;
    struct tg_config *cfg =
        ok_up("\n"
              "      endpoints:\n"
              "        - address: backend.default.svc.cluster.local:3000\n"
              "        - { address: 10.0.0.7:3000, weight: 2 }\n"
              "        - { address: \"[::1]:3001\", weight: 128 }\n"
              "        - { address: localhost:3002 }\n"
              "        - { address: \"Svc_1.ns.:80\" }\n"
              "      connect_timeout: 250ms\n"
              "      max_connect_attempts: 10\n"
              "      lb_policy: least_connections\n"
              "      dns_lookup_family: v6\n"
              "      dns_refresh_rate: 1s\n"
              "      respect_dns_ttl: true\n"
              "      outlier_detection: { consecutive_failures: 0, base_ejection_time: 2s,\n"
              "                           max_ejection_time: 10s, max_ejection_percent: 100 }\n"
              "      health_check: { interval: 1s, timeout: 100ms, unhealthy_threshold: 2,\n"
              "                      healthy_threshold: 3 }",
              "dns: { resolvers: [127.0.0.1:5353, \"::1\", 10.96.0.10, \"[fd00::10]:5300\"],\n"
              "       query_timeout: 500ms, query_attempts: 4 }\n");
    const struct tg_conf_upstream *u = &cfg->listeners[0].upstream;
    assert_null(u->addr.text);
    assert_int_equal(u->n_endpoints, 5);
    assert_string_equal(u->endpoints[0].host, "backend.default.svc.cluster.local");
    assert_true(u->endpoints[0].is_name);
    assert_int_equal(u->endpoints[0].port, 3000);
    assert_int_equal(u->endpoints[0].mark.line, 9);
    assert_int_equal(u->endpoints[0].mark.col, 20);
    assert_false(u->endpoints[1].is_name);
    assert_int_equal(u->endpoints[1].weight, 2);
    assert_false(u->endpoints[2].is_name);
    assert_string_equal(u->endpoints[2].host, "::1");
    assert_int_equal(u->endpoints[2].addr.ss.ss_family, AF_INET6);
    assert_int_equal(u->endpoints[2].weight, 128);
    assert_true(u->endpoints[3].is_name); /* localhost: the hosts file decides */
    assert_true(u->endpoints[4].is_name);
    assert_string_equal(u->endpoints[4].host, "Svc_1.ns.");
    assert_string_equal(u->text, "backend.default.svc.cluster.local:3000,10.0.0.7:3000,[::1]:3001,"
                                 "localhost:3002,Svc_1.ns.:80");
    assert_true(u->connect_timeout_ns == 250 * TG_NS_PER_MS);
    assert_int_equal(u->max_connect_attempts, 10);
    assert_int_equal(u->lb_policy, TG_LB_LEAST_CONNECTIONS);
    assert_int_equal(u->dns_lookup_family, TG_DNS_V6);
    assert_true(u->dns_refresh_rate_ns == TG_NS_PER_S);
    assert_true(u->respect_dns_ttl);
    assert_int_equal(u->outlier.consecutive_failures, 0);
    assert_true(u->outlier.base_ejection_time_ns == 2 * TG_NS_PER_S);
    assert_true(u->outlier.max_ejection_time_ns == 10 * TG_NS_PER_S);
    assert_int_equal(u->outlier.max_ejection_percent, 100);
    assert_true(u->health_check.enabled);
    assert_true(u->health_check.interval_ns == TG_NS_PER_S);
    assert_true(u->health_check.timeout_ns == 100 * TG_NS_PER_MS);
    assert_int_equal(u->health_check.unhealthy_threshold, 2);
    assert_int_equal(u->health_check.healthy_threshold, 3);
    assert_int_equal(cfg->dns.n_resolvers, 4);
    assert_string_equal(cfg->dns.resolvers[0], "127.0.0.1:5353");
    assert_string_equal(cfg->dns.resolvers[1], "[::1]:53");
    assert_string_equal(cfg->dns.resolvers[2], "10.96.0.10:53");
    assert_string_equal(cfg->dns.resolvers[3], "[fd00::10]:5300");
    assert_true(cfg->dns.query_timeout_ns == 500 * TG_NS_PER_MS);
    assert_int_equal(cfg->dns.query_attempts, 4);
    tg_config_free(cfg);
}

/* A long base ejection without a maximum raises the maximum to it. */
static void test_outlier_max_follows_base(void **state)
{
    (void)state;
    struct tg_config *cfg =
        ok_up("{ address: 127.0.0.1:1, outlier_detection: { base_ejection_time: 10m } }", NULL);
    const struct tg_conf_outlier *o = &cfg->listeners[0].upstream.outlier;
    assert_true(o->base_ejection_time_ns == 600 * TG_NS_PER_S);
    assert_true(o->max_ejection_time_ns == 600 * TG_NS_PER_S);
    tg_config_free(cfg);
}

static void test_errors(void **state)
{
    (void)state;
    static const struct {
        const char *up, *after, *want;
    } cases[] = {
        {"{ connect_timeout: 1s }", NULL,
         "gw.yaml:7:15: listeners[0].upstream: missing required key 'address' (or 'endpoints')"},
        {"{ address: 127.0.0.1:1, endpoints: [ { address: a:1 } ] }", NULL,
         "gw.yaml:7:50: listeners[0].upstream.endpoints: give either 'address' or 'endpoints', "
         "not both"},
        {"{ endpoints: [] }", NULL,
         "gw.yaml:7:28: listeners[0].upstream.endpoints: at least one endpoint is required"},
        {"{ endpoints: { address: a:1 } }", NULL,
         "gw.yaml:7:28: listeners[0].upstream.endpoints: expected a sequence of endpoints, got a "
         "mapping"},
        {"{ endpoints: [ { weight: 2 } ] }", NULL,
         "gw.yaml:7:30: listeners[0].upstream.endpoints[0]: missing required key 'address'"},
        {"{ endpoints: [ { address: a:1, port: 2 } ] }", NULL,
         "gw.yaml:7:46: listeners[0].upstream.endpoints[0].port: unknown key 'port' (allowed: "
         "address, weight)"},
        {"{ endpoints: [ { address: web.test } ] }", NULL,
         "gw.yaml:7:41: listeners[0].upstream.endpoints[0].address: invalid address 'web.test': "
         "missing ':port'"},
        {"{ endpoints: [ { address: web.test:0 } ] }", NULL,
         "gw.yaml:7:41: listeners[0].upstream.endpoints[0].address: invalid address 'web.test:0': "
         "port must be a number in 1..65535"},
        {"{ endpoints: [ { address: \"web test:80\" } ] }", NULL,
         "gw.yaml:7:41: listeners[0].upstream.endpoints[0].address: invalid address 'web test:80': "
         "host must be an IPv4 address, [IPv6] or a host name (letters, digits, '-', '_', '.')"},
        {"{ endpoints: [ { address: a..b:80 } ] }", NULL,
         "gw.yaml:7:41: listeners[0].upstream.endpoints[0].address: invalid address 'a..b:80': "
         "empty label in host name"},
        {"{ endpoints: [ { address: -a.b:80 } ] }", NULL,
         "gw.yaml:7:41: listeners[0].upstream.endpoints[0].address: invalid address '-a.b:80': "
         "a host name label may not start with '-'"},
        {"{ endpoints: [ { address: 10.0.0.300:80 } ] }", NULL,
         "gw.yaml:7:41: listeners[0].upstream.endpoints[0].address: invalid address "
         "'10.0.0.300:80': not a valid IPv4 address"},
        {"{ endpoints: [ { address: \"::1:80\" } ] }", NULL,
         "gw.yaml:7:41: listeners[0].upstream.endpoints[0].address: invalid address '::1:80': IPv6 "
         "addresses must be written in brackets, e.g. [::1]:8443"},
        {"{ endpoints: [ { address: \"[::g]:80\" } ] }", NULL,
         "gw.yaml:7:41: listeners[0].upstream.endpoints[0].address: invalid address '[::g]:80': "
         "not a valid IPv6 address"},
        {"{ endpoints: [ { address: a:1, weight: 0 } ] }", NULL,
         "gw.yaml:7:54: listeners[0].upstream.endpoints[0].weight: expected an integer in 1..128, "
         "got '0'"},
        {"{ endpoints: [ { address: a:1 }, { address: a:1 } ] }", NULL,
         "gw.yaml:7:59: listeners[0].upstream.endpoints[1].address: duplicate endpoint 'a:1' (also "
         "endpoints[0]; use weight)"},
        {"{ address: 127.0.0.1:1, lb_policy: fastest }", NULL,
         "gw.yaml:7:50: listeners[0].upstream.lb_policy: invalid value 'fastest' (valid: "
         "round_robin, least_connections, random)"},
        {"{ address: 127.0.0.1:1, dns_lookup_family: v5 }", NULL,
         "gw.yaml:7:58: listeners[0].upstream.dns_lookup_family: invalid value 'v5' (valid: auto, "
         "v4, v6)"},
        {"{ address: 127.0.0.1:1, max_connect_attempts: 11 }", NULL,
         "gw.yaml:7:61: listeners[0].upstream.max_connect_attempts: expected an integer in "
         "1..10, got '11'"},
        {"{ address: 127.0.0.1:1, dns_refresh_rate: 0s }", NULL,
         "gw.yaml:7:57: listeners[0].upstream.dns_refresh_rate: must be greater than 0"},
        {"{ address: 127.0.0.1:1, respect_dns_ttl: yes }", NULL,
         "gw.yaml:7:56: listeners[0].upstream.respect_dns_ttl: expected true or false, got 'yes'"},
        {"{ address: 127.0.0.1:1, outlier_detection: { consecutive: 1 } }", NULL,
         "gw.yaml:7:60: listeners[0].upstream.outlier_detection.consecutive: unknown key "
         "'consecutive' (allowed: consecutive_failures, base_ejection_time, max_ejection_time, "
         "max_ejection_percent)"},
        {"{ address: 127.0.0.1:1, outlier_detection: { base_ejection_time: 5s, "
         "max_ejection_time: 1s } }",
         NULL,
         "gw.yaml:7:103: listeners[0].upstream.outlier_detection.max_ejection_time: must not be "
         "shorter than base_ejection_time"},
        {"{ address: 127.0.0.1:1, outlier_detection: { max_ejection_percent: 0 } }", NULL,
         "gw.yaml:7:82: listeners[0].upstream.outlier_detection.max_ejection_percent: expected an "
         "integer in 1..100, got '0'"},
        {"{ address: 127.0.0.1:1, health_check: { interval: 0s } }", NULL,
         "gw.yaml:7:65: listeners[0].upstream.health_check.interval: must be greater than 0"},
        {"{ address: 127.0.0.1:1, health_check: { healthy_threshold: 0 } }", NULL,
         "gw.yaml:7:74: listeners[0].upstream.health_check.healthy_threshold: expected an integer "
         "in 1..100, got '0'"},
        {"{ address: 127.0.0.1:1, health_check: [] }", NULL,
         "gw.yaml:7:53: listeners[0].upstream.health_check: expected a mapping, got a sequence"},
        {"{ address: 127.0.0.1:1 }", "dns: { resolvers: [dns.example:53] }\n",
         "gw.yaml:8:20: dns.resolvers[0]: invalid resolver 'dns.example:53': host must be an IPv4 "
         "address, [IPv6] or localhost (names are not resolved) (expected IP or IP:PORT)"},
        {"{ address: 127.0.0.1:1 }", "dns: { resolvers: [\"127.0.0.1:0\"] }\n",
         "gw.yaml:8:20: dns.resolvers[0]: invalid resolver '127.0.0.1:0': port must be in "
         "1..65535 (expected IP or IP:PORT)"},
        {"{ address: 127.0.0.1:1 }", "dns: { resolvers: [] }\n",
         "gw.yaml:8:19: dns.resolvers: must not be empty (leave the key out instead)"},
        {"{ address: 127.0.0.1:1 }", "dns: { servers: [] }\n",
         "gw.yaml:8:8: dns.servers: unknown key 'servers' (allowed: resolvers, query_timeout, "
         "query_attempts)"},
        {"{ address: 127.0.0.1:1 }", "dns: { query_attempts: 0 }\n",
         "gw.yaml:8:24: dns.query_attempts: expected an integer in 1..10, got '0'"},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++)
        err_up(cases[i].up, cases[i].after, cases[i].want);
}

static void test_parse_hostport(void **state)
{
    (void)state;
    char *host = NULL;
    uint16_t port = 0;
    bool is_name = false;
    struct tg_conf_addr a;
    memset(&a, 0, sizeof(a));
    assert_null(tg_conf_parse_hostport("10.1.2.3:99", &host, &port, &is_name, &a));
    assert_string_equal(host, "10.1.2.3");
    assert_int_equal(port, 99);
    assert_false(is_name);
    assert_string_equal(a.text, "10.1.2.3:99");
    free(host);
    tg_conf_addr_clear(&a);
    assert_null(tg_conf_parse_hostport("[fe80::1]:1", &host, &port, &is_name, &a));
    assert_string_equal(host, "fe80::1");
    assert_int_equal(a.ss.ss_family, AF_INET6);
    free(host);
    tg_conf_addr_clear(&a);
    assert_null(
        tg_conf_parse_hostport("my-svc.ns.svc.cluster.local.:65535", &host, &port, &is_name, &a));
    assert_true(is_name);
    assert_int_equal(port, 65535);
    assert_null(a.text);
    free(host);
    /* A label of 63 is fine, 64 is not; 253 in all. */
    char name[300];
    memset(name, 'a', 63);
    snprintf(name + 63, sizeof(name) - 63, ".b:1");
    assert_null(tg_conf_parse_hostport(name, &host, &port, &is_name, &a));
    free(host);
    memset(name, 'a', 64);
    snprintf(name + 64, sizeof(name) - 64, ".b:1");
    assert_string_equal(tg_conf_parse_hostport(name, &host, &port, &is_name, &a),
                        "host name label longer than 63 characters");
    for (int i = 0; i < 254; i++)
        name[i] = (i % 2) ? '.' : 'a';
    snprintf(name + 254, sizeof(name) - 254, "b:1");
    assert_string_equal(tg_conf_parse_hostport(name, &host, &port, &is_name, &a),
                        "host name longer than 253 characters");
    assert_string_equal(tg_conf_parse_hostport("a-.b:1", &host, &port, &is_name, &a),
                        "a host name label may not end with '-'");
    assert_string_equal(tg_conf_parse_hostport(":1", &host, &port, &is_name, &a), "missing host");
    assert_string_equal(tg_conf_parse_hostport("", &host, &port, &is_name, &a), "empty address");
    assert_string_equal(tg_conf_parse_hostport("[::1]", &host, &port, &is_name, &a),
                        "missing ':port' after ']'");
}

static void test_parse_resolver(void **state)
{
    (void)state;
    char buf[80];
    assert_null(tg_conf_parse_resolver("127.0.0.1", buf, sizeof(buf)));
    assert_string_equal(buf, "127.0.0.1:53");
    assert_null(tg_conf_parse_resolver("[::1]", buf, sizeof(buf)));
    assert_string_equal(buf, "[::1]:53");
    assert_null(tg_conf_parse_resolver("[0:0::1]:5353", buf, sizeof(buf)));
    assert_string_equal(buf, "[::1]:5353");
    assert_null(tg_conf_parse_resolver("localhost:5353", buf, sizeof(buf)));
    assert_string_equal(buf, "127.0.0.1:5353");
    assert_non_null(tg_conf_parse_resolver("", buf, sizeof(buf)));
    assert_non_null(tg_conf_parse_resolver("1.2.3.4:99999", buf, sizeof(buf)));
    assert_non_null(tg_conf_parse_resolver("[::1", buf, sizeof(buf)));
}

/* Whether a reload may keep a listener's cluster: every key the cluster is
 * built from counts, proxy_protocol and the way it is written do not. */
static void expect_same(const char *a, const char *b, bool want)
{
    struct tg_config *x = ok_up(a, NULL), *y = ok_up(b, NULL);
    bool got = tg_conf_upstream_same_cluster(&x->listeners[0].upstream, &y->listeners[0].upstream);
    if (got != want)
        fail_msg("%s\n vs %s: same cluster %d, want %d", a, b, got, want);
    assert_int_equal(
        tg_conf_upstream_same_cluster(&y->listeners[0].upstream, &x->listeners[0].upstream), want);
    tg_config_free(x);
    tg_config_free(y);
}

static void test_same_cluster(void **state)
{
    (void)state;
    const char *base = "{ endpoints: [ { address: 127.0.0.1:8080 }, { address: web.test:80 } ] }";
    expect_same(base, base, true);
    expect_same("{ address: 127.0.0.1:8080 }", "{ endpoints: [ { address: 127.0.0.1:8080 } ] }",
                true);
    expect_same("{ address: 127.0.0.1:8080 }", "{ address: 127.0.0.1:8080, proxy_protocol: v2 }",
                true);
    expect_same(base,
                "{ endpoints: [ { address: 127.0.0.1:8080, weight: 1 }, { address: web.test:80 } "
                "], lb_policy: round_robin, connect_timeout: 5s, max_connect_attempts: 3 }",
                true);
    static const char *const differ[] = {
        "{ endpoints: [ { address: 127.0.0.1:8080 } ] }",
        "{ endpoints: [ { address: web.test:80 }, { address: 127.0.0.1:8080 } ] }",
        "{ endpoints: [ { address: 127.0.0.1:8081 }, { address: web.test:80 } ] }",
        "{ endpoints: [ { address: 127.0.0.1:8080 }, { address: web2.test:80 } ] }",
        "{ endpoints: [ { address: 127.0.0.1:8080, weight: 2 }, { address: web.test:80 } ] }",
        "{ endpoints: [ { address: 127.0.0.1:8080 }, { address: web.test:80 } ], "
        "lb_policy: random }",
        "{ endpoints: [ { address: 127.0.0.1:8080 }, { address: web.test:80 } ], "
        "connect_timeout: 1s }",
        "{ endpoints: [ { address: 127.0.0.1:8080 }, { address: web.test:80 } ], "
        "max_connect_attempts: 1 }",
        "{ endpoints: [ { address: 127.0.0.1:8080 }, { address: web.test:80 } ], "
        "dns_lookup_family: v4 }",
        "{ endpoints: [ { address: 127.0.0.1:8080 }, { address: web.test:80 } ], "
        "dns_refresh_rate: 1s }",
        "{ endpoints: [ { address: 127.0.0.1:8080 }, { address: web.test:80 } ], "
        "respect_dns_ttl: true }",
        "{ endpoints: [ { address: 127.0.0.1:8080 }, { address: web.test:80 } ], "
        "outlier_detection: { consecutive_failures: 2 } }",
        "{ endpoints: [ { address: 127.0.0.1:8080 }, { address: web.test:80 } ], "
        "health_check: {} }",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(differ); i++)
        expect_same(base, differ[i], false);
    expect_same("{ address: 127.0.0.1:1, health_check: { interval: 1s } }",
                "{ address: 127.0.0.1:1, health_check: { interval: 2s } }", false);
    expect_same("{ address: 127.0.0.1:1, health_check: { interval: 1s } }",
                "{ address: 127.0.0.1:1, health_check: { interval: 1s, healthy_threshold: 1 } }",
                true);

    struct tg_config *n = ok_up(base, NULL), *l = ok_up("{ address: 127.0.0.1:1 }", NULL);
    assert_true(tg_conf_upstream_has_names(&n->listeners[0].upstream));
    assert_false(tg_conf_upstream_has_names(&l->listeners[0].upstream));
    tg_config_free(n);
    tg_config_free(l);
}

static void expect_dns(const char *a, const char *b, bool want)
{
    struct tg_config *x = ok_up("{ address: 127.0.0.1:1 }", a);
    struct tg_config *y = ok_up("{ address: 127.0.0.1:1 }", b);
    if (tg_conf_dns_equal(&x->dns, &y->dns) != want)
        fail_msg("%s vs %s: want %d", a, b, want);
    tg_config_free(x);
    tg_config_free(y);
}

static void test_dns_equal(void **state)
{
    (void)state;
    expect_dns("", "", true);
    expect_dns("", "dns: { query_timeout: 2s, query_attempts: 2 }\n", true);
    expect_dns("dns: { resolvers: [127.0.0.1] }\n", "dns: { resolvers: [\"127.0.0.1:53\"] }\n",
               true);
    expect_dns("", "dns: { resolvers: [127.0.0.1] }\n", false);
    expect_dns("dns: { resolvers: [127.0.0.1, 127.0.0.2] }\n",
               "dns: { resolvers: [127.0.0.2, 127.0.0.1] }\n", false);
    expect_dns("", "dns: { query_timeout: 1s }\n", false);
    expect_dns("", "dns: { query_attempts: 3 }\n", false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_address_form),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_outlier_max_follows_base),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_parse_hostport),
        cmocka_unit_test(test_parse_resolver),
        cmocka_unit_test(test_same_cluster),
        cmocka_unit_test(test_dns_equal),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
