/*
 * Unit tests for src/config's loader and schema: the error messages (exact
 * FILE:LINE:COL and key paths) of bad YAML, unknown keys, wrong types,
 * missing keys, bad values and unreadable sources; the known providers;
 * truncated error buffers; and robustness against mangled input. The
 * fixture: tg_test_config.h.
 */
#include "tg_test_config.h"

#include "core/tg_log.h"
#include "core/tg_time.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/prov_ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define A16  "aaaaaaaaaaaaaaaa"
#define A256 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */

static void test_err_yaml(void **state)
{
    (void)state;
    static const struct err_case cases[] = {
        {"", "gw.yaml: configuration is empty (expected a mapping with at least 'listeners')"},
        {"# nothing here\n\n",
         "gw.yaml: configuration is empty (expected a mapping with at least 'listeners')"},
        {"---\n...\n",
         "gw.yaml: configuration is empty (expected a mapping with at least 'listeners')"},
        {"~\n", "gw.yaml: configuration is empty (expected a mapping with at least 'listeners')"},
        {"listeners: [\n",
         "gw.yaml:2:1: invalid YAML: did not find expected node content (while parsing a flow "
         "node at line 2)"},
        {"a: b: c\n", "gw.yaml:1:5: invalid YAML: mapping values are not allowed in this context"},
        {"listeners:\n  - x\n bad: 1\n",
         "gw.yaml:3:2: invalid YAML: did not find expected key (while parsing a block mapping at "
         "line 1)"},
        {"a: \"unterminated\n",
         "gw.yaml:2:1: invalid YAML: found unexpected end of stream (while scanning a quoted "
         "scalar at line 1)"},
        {"a: 1\nb: \xff\n", "gw.yaml:2:4: invalid YAML: invalid leading UTF-8 octet (byte 0xFF)"},
        {"a:\t\x01\n", "gw.yaml:1:4: invalid YAML: control characters are not allowed (byte 0x01)"},
        {L0 "---\n" L0, "gw.yaml:8:1: only one YAML document is allowed in a configuration"},
        {"x: &a 1\n" L0, "gw.yaml:1:4: YAML anchors ('&name') are not supported"},
        {"listeners: &l\n  - address: 1\n",
         "gw.yaml:1:12: YAML anchors ('&name') are not supported"},
        {"admin: *x\n", "gw.yaml:1:8: YAML aliases ('*name') are not supported"},
        {"- a\n", "gw.yaml:1:1: expected a mapping at the top level, got a sequence"},
        {"hello\n", "gw.yaml:1:1: expected a mapping at the top level, got a scalar"},
        {"? [a]\n: 1\n", "gw.yaml:1:3: mapping keys must be scalars, got a sequence"},
        {"a: "
         "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]"
         "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
         "gw.yaml:1:67: YAML nesting is too deep"},
        {"concurrency: 1\nconcurrency: 2\n" L0,
         "gw.yaml:2:1: concurrency: duplicate key 'concurrency' (first given at line 1)"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    address: 127.0.0.1:8444\n",
         "gw.yaml:3:5: listeners[0].address: duplicate key 'address' (first given at line 2)"},
    };
    check_errors(cases, TG_ARRAY_LEN(cases));
}

static void test_err_unknown_keys(void **state)
{
    (void)state;
    static const struct err_case cases[] = {
        {"bogus: 1\n" L0, "gw.yaml:1:1: bogus: unknown key 'bogus' (allowed: concurrency, "
                          "log_level, admin, listeners, limits, reload, dns, access_log, "
                          "session_tickets, certificate_expiry_warning)"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    port: 1\n    tls:\n" CERTS UPSTREAM,
         "gw.yaml:3:5: listeners[0].port: unknown key 'port' (allowed: name, address, backlog, "
         "tls, upstream, proxy_protocol, proxy_protocol_timeout)"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      ciphers: x\n" CERTS UPSTREAM,
         "gw.yaml:4:7: listeners[0].tls.ciphers: unknown key 'ciphers' (allowed: certificates, "
         "min_version, max_version, alpn, session_resumption, session_timeout, tls13_tickets, "
         "cipher_list, cipher_suites, groups, key_exchange_provider, require_close_notify, "
         "client_certificate)"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "          chain: x\n" UPSTREAM,
         "gw.yaml:7:11: listeners[0].tls.certificates[0].chain: unknown key 'chain' (allowed: "
         "certificate_chain, private_key, server_names, private_key_provider)"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - certificate_chain: { file: x }\n" UPSTREAM,
         "gw.yaml:5:32: listeners[0].tls.certificates[0].certificate_chain.file: unknown key "
         "'file' (allowed: filename, inline_string)"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "          private_key_provider: { provider_name: software, poll_delay: 1ms }\n" UPSTREAM,
         "gw.yaml:7:60: " KP ".poll_delay: unknown key 'poll_delay' (allowed: provider_name, "
         "typed_config, fallback)"},
        {L0 "limits: { max_conns: 5 }\n",
         "gw.yaml:8:11: limits.max_conns: unknown key 'max_conns' (allowed: max_connections, "
         "max_connections_per_source, per_source_ipv6_prefix, first_byte_timeout, "
         "handshake_timeout, idle_timeout, drain_timeout, buffer_size)"},
        {"admin: { addr: 1 }\n" L0,
         "gw.yaml:1:10: admin.addr: unknown key 'addr' (allowed: address, allowed_sources)"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "    upstream: { address: 127.0.0.1:8080, timeout: 1s }\n",
         "gw.yaml:7:42: listeners[0].upstream.timeout: unknown key 'timeout' (allowed: address, "
         "endpoints, connect_timeout, max_connect_attempts, lb_policy, dns_lookup_family, "
         "dns_refresh_rate, respect_dns_ttl, outlier_detection, health_check, proxy_protocol)"},
    };
    check_errors(cases, TG_ARRAY_LEN(cases));
}

static void test_err_types(void **state)
{
    (void)state;
    static const struct err_case cases[] = {
        {"listeners: {a: 1}\n",
         "gw.yaml:1:12: listeners: expected a sequence of listeners, got a mapping"},
        {"listeners: x\n",
         "gw.yaml:1:12: listeners: expected a sequence of listeners, got a scalar"},
        {"admin: [1]\n" L0, "gw.yaml:1:8: admin: expected a mapping, got a sequence"},
        {"admin:\n" L0, "gw.yaml:1:7: admin: expected a mapping, got an empty value"},
        {"listeners:\n  - 42\n", "gw.yaml:2:5: listeners[0]: expected a mapping, got a scalar"},
        {"concurrency: [1]\n" L0,
         "gw.yaml:1:14: concurrency: expected an integer or 'auto', got a sequence"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    backlog: abc\n    tls:\n" CERTS UPSTREAM,
         "gw.yaml:3:14: listeners[0].backlog: expected an integer in 1..65535, got 'abc'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls: yes\n" UPSTREAM,
         "gw.yaml:3:10: listeners[0].tls: expected a mapping, got a scalar"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates: {a: 1}\n" UPSTREAM,
         "gw.yaml:4:21: listeners[0].tls.certificates: expected a sequence of certificates, got a "
         "mapping"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - certificate_chain: { filename: @DIR@/certs/server.pem }\n"
         "          private_key: certs/server.key\n" UPSTREAM,
         "gw.yaml:6:24: listeners[0].tls.certificates[0].private_key: expected a mapping { "
         "filename: ... } or { inline_string: ... }, got a scalar"},
        {"listeners:\n  - address: [127.0.0.1]\n",
         "gw.yaml:2:14: listeners[0].address: expected an address 'host:port', got a sequence"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "      session_resumption: yes\n" UPSTREAM,
         "gw.yaml:7:27: listeners[0].tls.session_resumption: expected true or false, got 'yes'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "      require_close_notify: 1\n" UPSTREAM,
         "gw.yaml:7:29: listeners[0].tls.require_close_notify: expected true or false, got '1'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "          private_key_provider: { provider_name: deferred, typed_config: { a: { b: { c: "
         "1 } } } }\n" UPSTREAM,
         "gw.yaml:7:84: " KP ".typed_config.a.b: expected a scalar, a sequence of scalars or a "
         "mapping of scalars, got a mapping of mappings"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "          private_key_provider: { provider_name: deferred, typed_config: { a: {} } "
         "}\n" UPSTREAM,
         "gw.yaml:7:79: " KP ".typed_config.a: expected a mapping with at least one key"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "          private_key_provider: { provider_name: deferred, typed_config: { a: { b: 1, "
         "b: 2 } } }\n" UPSTREAM,
         "gw.yaml:7:87: " KP ".typed_config.a.b: duplicate key 'b' (first given at line 7)"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "          private_key_provider: { provider_name: deferred, typed_config: { a: [x, [y]] "
         "} }\n" UPSTREAM,
         "gw.yaml:7:83: " KP ".typed_config.a[1]: expected a scalar, got a sequence"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "          private_key_provider: { provider_name: deferred, typed_config: [1] "
         "}\n" UPSTREAM,
         "gw.yaml:7:74: " KP ".typed_config: expected a mapping, got a sequence"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "          private_key_provider: { provider_name: [software] }\n" UPSTREAM,
         "gw.yaml:7:50: " KP ".provider_name: expected a string, got a sequence"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS "      alpn: h2\n" UPSTREAM,
         "gw.yaml:7:13: listeners[0].tls.alpn: expected a sequence of strings, got a scalar"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "      groups: {a: b}\n" UPSTREAM,
         "gw.yaml:7:15: listeners[0].tls.groups: expected a string or a sequence of strings, got "
         "a mapping"},
        {"listeners:\n  - name: \"a\\0b\"\n",
         "gw.yaml:2:11: listeners[0].name: value contains a NUL character"},
        {"log_level:\n" L0, "gw.yaml:1:11: log_level: expected a log level, got an empty value"},
    };
    check_errors(cases, TG_ARRAY_LEN(cases));
}

static void test_err_missing(void **state)
{
    (void)state;
    static const struct err_case cases[] = {
        {"concurrency: 2\n", "gw.yaml:1:1: missing required key 'listeners'"},
        {"listeners:\n  - tls:\n" CERTS UPSTREAM,
         "gw.yaml:2:5: listeners[0]: missing required key 'address'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n" UPSTREAM,
         "gw.yaml:2:5: listeners[0]: missing required key 'tls'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS,
         "gw.yaml:2:5: listeners[0]: missing required key 'upstream'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "    upstream: { connect_timeout: 1s }\n",
         "gw.yaml:7:15: listeners[0].upstream: missing required key 'address' (or 'endpoints')"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls: { min_version: TLSv1.2 }\n" UPSTREAM,
         "gw.yaml:3:10: listeners[0].tls: missing required key 'certificates'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - private_key: { filename: @DIR@/certs/server.key }\n" UPSTREAM,
         "gw.yaml:5:11: listeners[0].tls.certificates[0]: missing required key "
         "'certificate_chain'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - certificate_chain: { filename: @DIR@/certs/server.pem }\n" UPSTREAM,
         "gw.yaml:5:11: listeners[0].tls.certificates[0]: missing required key 'private_key' (or "
         "private_key_provider.typed_config.private_key)"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - private_key: { filename: @DIR@/certs/server.key }\n"
         "          private_key_provider: { provider_name: deferred }\n" UPSTREAM,
         "gw.yaml:5:11: listeners[0].tls.certificates[0]: missing required key "
         "'certificate_chain'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "          private_key_provider: { fallback: false }\n" UPSTREAM,
         "gw.yaml:7:33: " KP ": missing required key 'provider_name'"},
        {"admin: {}\n" L0, "gw.yaml:1:8: admin: missing required key 'address'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - certificate_chain: {}\n" UPSTREAM,
         "gw.yaml:5:30: listeners[0].tls.certificates[0].certificate_chain: one of 'filename' or "
         "'inline_string' is required"},
        {"listeners: []\n", "gw.yaml:1:12: listeners: at least one listener is required"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates: []\n" UPSTREAM,
         "gw.yaml:4:21: listeners[0].tls.certificates: at least one certificate is required"},
    };
    check_errors(cases, TG_ARRAY_LEN(cases));
}

static void test_err_values(void **state)
{
    (void)state;
#define LST(extra) "listeners:\n  - address: 127.0.0.1:8443\n" extra "    tls:\n" CERTS UPSTREAM
#define TLS(extra) "listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS extra UPSTREAM
    static const struct err_case cases[] = {
        {"concurrency: 0\n" L0,
         "gw.yaml:1:14: concurrency: expected an integer in 1..256 or 'auto', got '0'"},
        {"concurrency: 257\n" L0,
         "gw.yaml:1:14: concurrency: expected an integer in 1..256 or 'auto', got '257'"},
        {"concurrency: -1\n" L0,
         "gw.yaml:1:14: concurrency: expected an integer in 1..256 or 'auto', got '-1'"},
        {"log_level: loud\n" L0,
         "gw.yaml:1:12: log_level: invalid log level 'loud' (valid: error, warn, info, debug)"},
        {LST("    backlog: 0\n"),
         "gw.yaml:3:14: listeners[0].backlog: expected an integer in 1..65535, got '0'"},
        {LST("    backlog: 65536\n"),
         "gw.yaml:3:14: listeners[0].backlog: expected an integer in 1..65535, got '65536'"},
        {LST("    name: \"\"\n"), "gw.yaml:3:11: listeners[0].name: must not be empty"},
        {LST("    name: a b\n"), "gw.yaml:3:11: listeners[0].name: invalid name 'a b' (1..64 "
                                 "characters of A-Z a-z 0-9 _ - .)"},
        {"listeners:\n  - address: example.com:80\n",
         "gw.yaml:2:14: listeners[0].address: invalid address 'example.com:80': host must be an "
         "IPv4 address, [IPv6] or localhost (names are not resolved)"},
        {"listeners:\n  - address: 127.0.0.1\n",
         "gw.yaml:2:14: listeners[0].address: invalid address '127.0.0.1': missing ':port'"},
        {"listeners:\n  - address: 127.0.0.1:99999\n",
         "gw.yaml:2:14: listeners[0].address: invalid address '127.0.0.1:99999': port must be a "
         "number in 0..65535"},
        {"listeners:\n  - address: ::1:80\n",
         "gw.yaml:2:14: listeners[0].address: invalid address '::1:80': IPv6 addresses must be "
         "written in brackets, e.g. [::1]:8443"},
        {"listeners:\n  - address: \"[::1:80\"\n",
         "gw.yaml:2:14: listeners[0].address: invalid address '[::1:80': missing ']' after the "
         "IPv6 address"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "    upstream: { address: 127.0.0.1:0 }\n",
         "gw.yaml:7:26: listeners[0].upstream.address: invalid address '127.0.0.1:0': port must "
         "be in 1..65535"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "    upstream: { address: 127.0.0.1:1, connect_timeout: 0s }\n",
         "gw.yaml:7:56: listeners[0].upstream.connect_timeout: must be greater than 0"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "    upstream: { address: 127.0.0.1:1, connect_timeout: 5 s }\n",
         "gw.yaml:7:56: listeners[0].upstream.connect_timeout: invalid duration '5 s' (expected a "
         "number and a unit ns, us, ms, s, m, h or d, e.g. 2s, 250ms, 0.001s; whole nanoseconds)"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "    upstream: { address: 127.0.0.1:1, proxy_protocol: v3 }\n",
         "gw.yaml:7:55: listeners[0].upstream.proxy_protocol: expected v1 or v2, got 'v3'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "    upstream: { address: 127.0.0.1:1, proxy_protocol: true }\n",
         "gw.yaml:7:55: listeners[0].upstream.proxy_protocol: expected v1 or v2, got 'true'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "    upstream: { address: 127.0.0.1:1, proxy_protocol: [v1] }\n",
         "gw.yaml:7:55: listeners[0].upstream.proxy_protocol: expected v1 or v2, got a sequence"},
        {LST("    proxy_protocol: v2\n"),
         "gw.yaml:3:21: listeners[0].proxy_protocol: expected true or false, got 'v2'"},
        {LST("    proxy_protocol: true\n    proxy_protocol_timeout: 0s\n"),
         "gw.yaml:4:29: listeners[0].proxy_protocol_timeout: must be greater than 0"},
        {L0 "limits: { idle_timeout: -1s }\n",
         "gw.yaml:8:25: limits.idle_timeout: invalid duration '-1s' (expected a number and a "
         "unit ns, us, ms, s, m, h or d, e.g. 2s, 250ms, 0.001s; whole nanoseconds)"},
        {L0 "limits: { handshake_timeout: 0 }\n",
         "gw.yaml:8:30: limits.handshake_timeout: must be greater than 0"},
        {L0 "limits: { drain_timeout: 0ms }\n",
         "gw.yaml:8:26: limits.drain_timeout: must be greater than 0"},
        {L0 "limits: { buffer_size: 1023 }\n",
         "gw.yaml:8:24: limits.buffer_size: expected an integer in 1024..1048576, got '1023'"},
        {L0 "limits: { buffer_size: 1048577 }\n",
         "gw.yaml:8:24: limits.buffer_size: expected an integer in 1024..1048576, got '1048577'"},
        {L0 "reload: { watch: yes }\n",
         "gw.yaml:8:18: reload.watch: expected true or false, got 'yes'"},
        {L0 "reload: { debounce: -1s }\n",
         "gw.yaml:8:21: reload.debounce: invalid duration '-1s' (expected a number and a unit ns, "
         "us, ms, s, m, h or d, e.g. 2s, 250ms, 0.001s; whole nanoseconds)"},
        {L0 "reload: { interval: 1s }\n",
         "gw.yaml:8:11: reload.interval: unknown key 'interval' (allowed: watch, debounce)"},
        {L0 "limits: { first_byte_timeout: 0s }\n",
         "gw.yaml:8:31: limits.first_byte_timeout: must be greater than 0"},
        {L0 "limits: { max_connections_per_source: -1 }\n",
         "gw.yaml:8:39: limits.max_connections_per_source: expected an integer in 0..10000000, "
         "got '-1'"},
        {L0 "limits: { per_source_ipv6_prefix: 0 }\n",
         "gw.yaml:8:35: limits.per_source_ipv6_prefix: expected an integer in 1..128, got '0'"},
        {L0 "limits: { per_source_ipv6_prefix: 129 }\n",
         "gw.yaml:8:35: limits.per_source_ipv6_prefix: expected an integer in 1..128, got '129'"},
        {L0 "limits: { max_connections: 0 }\n",
         "gw.yaml:8:28: limits.max_connections: expected an integer in 1..10000000, got '0'"},
        {L0 "limits: { max_connections: 10000001 }\n",
         "gw.yaml:8:28: limits.max_connections: expected an integer in 1..10000000, got "
         "'10000001'"},
        {TLS("      min_version: TLSv1.1\n"),
         "gw.yaml:7:20: listeners[0].tls.min_version: invalid TLS version 'TLSv1.1' (valid: "
         "TLSv1.2, TLSv1.3)"},
        {TLS("      min_version: TLSv1.3\n      max_version: TLSv1.2\n"),
         "gw.yaml:8:20: listeners[0].tls.max_version: min_version (TLSv1.3) is greater than "
         "max_version (TLSv1.2)"},
        {TLS("      alpn: [h2, \"\"]\n"),
         "gw.yaml:7:18: listeners[0].tls.alpn[1]: must not be empty"},
        {TLS("      alpn: [h2, h2]\n"),
         "gw.yaml:7:18: listeners[0].tls.alpn[1]: duplicate value 'h2'"},
        {TLS("      alpn: []\n"),
         "gw.yaml:7:13: listeners[0].tls.alpn: must not be empty (leave the key out instead)"},
        {TLS("      alpn: [" A256 "]\n"),
         "gw.yaml:7:14: listeners[0].tls.alpn[0]: too long (256 bytes, at most 255)"},
        {TLS("      cipher_list: \"\"\n"),
         "gw.yaml:7:20: listeners[0].tls.cipher_list: must not be empty"},
        {TLS("      groups: [X25519, \"P-256:P-384\"]\n"),
         "gw.yaml:7:24: listeners[0].tls.groups[1]: one group per item (no ':')"},
        {TLS("      groups: []\n"),
         "gw.yaml:7:15: listeners[0].tls.groups: must not be empty (leave the key out instead)"},
        {TLS("          server_names: [example.com, \"bad name\"]\n"),
         "gw.yaml:7:39: listeners[0].tls.certificates[0].server_names[1]: invalid server name "
         "'bad name' (expected a DNS name, optionally starting with '*.')"},
        {TLS("          server_names: [\"a.*.com\"]\n"),
         "gw.yaml:7:26: listeners[0].tls.certificates[0].server_names[0]: invalid server name "
         "'a.*.com' (expected a DNS name, optionally starting with '*.')"},
        {TLS("          private_key_provider: { provider_name: foo }\n"),
         "gw.yaml:7:50: " KP ".provider_name: unknown provider 'foo' (known: software, deferred, "
         "cryptomb, qat)"},
        {TLS("          private_key_provider: { provider_name: software, fallback: yes }\n"),
         "gw.yaml:7:70: " KP ".fallback: expected true or false, got 'yes'"},
        {TLS("          private_key_provider:\n"
             "            provider_name: cryptomb\n"
             "            typed_config: { poll_delay: 1.5ns }\n"),
         "gw.yaml:9:41: " KP ".typed_config.poll_delay: invalid duration '1.5ns' (expected a "
         "number and a unit ns, us, ms, s, m, h or d, e.g. 2s, 250ms, 0.001s; whole nanoseconds)"},
        {TLS("          private_key_provider:\n"
             "            provider_name: cryptomb\n"
             "            typed_config:\n"
             "              private_key: { filename: @DIR@/certs/server.key }\n"),
         "gw.yaml:10:15: " KP ".typed_config.private_key: the private key is also given at line "
         "6 (listeners[0].tls.certificates[0].private_key); give it only once"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS UPSTREAM
         "  - address: 127.0.0.1:8443\n    tls:\n" CERTS UPSTREAM,
         "gw.yaml:8:14: listeners[1].address: address '127.0.0.1:8443' is already used by "
         "listeners[0]"},
        {"listeners:\n  - name: a\n    address: 127.0.0.1:1\n    tls:\n" CERTS UPSTREAM
         "  - name: a\n    address: 127.0.0.1:2\n    tls:\n" CERTS UPSTREAM,
         "gw.yaml:9:11: listeners[1].name: duplicate listener name 'a' (also used by "
         "listeners[0])"},
        {"listeners:\n  - name: listener1\n    address: 127.0.0.1:1\n    tls:\n" CERTS UPSTREAM
         "  - address: 127.0.0.1:2\n    tls:\n" CERTS UPSTREAM,
         "gw.yaml:9:5: listeners[1].name: duplicate listener name 'listener1' (also used by "
         "listeners[0])"},
    };
#undef LST
#undef TLS
    check_errors(cases, TG_ARRAY_LEN(cases));
}

static void test_err_sources(void **state)
{
    (void)state;
    static const struct err_case cases[] = {
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - certificate_chain: { filename: @DIR@/certs/server.pem }\n"
         "          private_key: { filename: @DIR@/certs/missing.key }\n" UPSTREAM,
         "gw.yaml:6:36: listeners[0].tls.certificates[0].private_key.filename: cannot read "
         "'@DIR@/certs/missing.key': No such file or directory"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - certificate_chain: { filename: @DIR@/certs }\n"
         "          private_key: { filename: @DIR@/certs/server.key }\n" UPSTREAM,
         "gw.yaml:5:42: listeners[0].tls.certificates[0].certificate_chain.filename: cannot read "
         "'@DIR@/certs': Is a directory"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - certificate_chain: { filename: @DIR@/certs/server.key }\n"
         "          private_key: { filename: @DIR@/certs/server.key }\n" UPSTREAM,
         "gw.yaml:5:42: listeners[0].tls.certificates[0].certificate_chain.filename: "
         "'@DIR@/certs/server.key' contains no PEM certificate ('-----BEGIN CERTIFICATE-----')"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - certificate_chain: { filename: @DIR@/certs/server.pem }\n"
         "          private_key: { filename: @DIR@/certs/empty.pem }\n" UPSTREAM,
         "gw.yaml:6:36: listeners[0].tls.certificates[0].private_key.filename: "
         "'@DIR@/certs/empty.pem' contains no PEM private key ('PRIVATE KEY-----')"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - certificate_chain: { inline_string: hello }\n"
         "          private_key: { filename: @DIR@/certs/server.key }\n" UPSTREAM,
         "gw.yaml:5:47: listeners[0].tls.certificates[0].certificate_chain.inline_string: no PEM "
         "certificate ('-----BEGIN CERTIFICATE-----') in the string"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - certificate_chain: { filename: @DIR@/certs/server.pem }\n"
         "          private_key: { filename: x, inline_string: y }\n" UPSTREAM,
         "gw.yaml:6:39: listeners[0].tls.certificates[0].private_key.inline_string: give only one "
         "of 'filename' and 'inline_string'"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - certificate_chain: { filename: \"\" }\n" UPSTREAM,
         "gw.yaml:5:42: listeners[0].tls.certificates[0].certificate_chain.filename: must not be "
         "empty"},
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      certificates:\n"
         "        - certificate_chain: { inline_string: }\n" UPSTREAM,
         "gw.yaml:5:47: listeners[0].tls.certificates[0].certificate_chain.inline_string: expected "
         "a PEM string, got an empty value"},
    };
    check_errors(cases, TG_ARRAY_LEN(cases));
}

static void test_known_providers(void **state)
{
    (void)state;
    static const char *const names[] = {"software", "mine", NULL};
    tg_config_set_known_providers(names);
    static const struct err_case cases[] = {
        {"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
         "          private_key_provider: { provider_name: deferred }\n" UPSTREAM,
         "gw.yaml:7:50: " KP ".provider_name: unknown provider 'deferred' (known: software, mine)"},
    };
    check_errors(cases, TG_ARRAY_LEN(cases));
    struct tg_config *cfg =
        load_ok("listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
                "          private_key_provider: { provider_name: mine }\n" UPSTREAM);
    tg_config_free(cfg);
    tg_config_set_known_providers(NULL);
    /* No list: any name passes here (the registry judges it at start-up). */
    cfg = load_ok("listeners:\n  - address: 127.0.0.1:8443\n    tls:\n" CERTS
                  "          private_key_provider: { provider_name: anything }\n" UPSTREAM);
    tg_config_free(cfg);
    tg_config_set_known_providers(g_providers);
}

static void test_err_null_buffers(void **state)
{
    (void)state;
    struct tg_config *cfg = NULL;
    assert_int_equal(tg_config_load_buffer("x", "listeners: []\n", 14, &cfg, NULL, 0), TG_ECONFIG);
    assert_null(cfg);
    char small[16];
    assert_int_equal(tg_config_load_buffer("x", "listeners: []\n", 14, &cfg, small, sizeof(small)),
                     TG_ECONFIG);
    assert_string_equal(small, "x:1:12: listene");
    assert_int_equal(tg_config_load_buffer("x", NULL, 0, &cfg, small, sizeof(small)), TG_ECONFIG);
    assert_int_equal(tg_config_load_buffer(NULL, NULL, 0, &cfg, NULL, 0), TG_ECONFIG);
    assert_int_equal(tg_config_load_buffer("x", NULL, 0, NULL, NULL, 0), TG_EINVAL);
}

/* Every prefix and a few byte substitutions of a full config: must never
 * crash or leak (the sanitizer and valgrind builds check), and an error must
 * come with one message line. */
static void test_robustness(void **state)
{
    (void)state;
    char *y = subst("concurrency: 2\nlog_level: warn\nadmin: { address: 127.0.0.1:0 }\n"
                    "listeners:\n"
                    "  - name: https\n"
                    "    address: \"[::1]:0\"\n"
                    "    tls:\n"
                    "      certificates:\n" CERT_FILES "          server_names: [example.com]\n"
                    "          private_key_provider:\n"
                    "            provider_name: deferred\n"
                    "            typed_config: { poll_delay: 1ms, delay: 1ms, l: [a, b] }\n"
                    "      alpn: [h2]\n"
                    "      groups: [X25519]\n"
                    "    upstream: { address: 127.0.0.1:1, connect_timeout: 1s }\n"
                    "limits: { max_connections: 10, buffer_size: 2048 }\n");
    size_t len = strlen(y);
    char *m = malloc(len + 1);
    assert_non_null(m);
    static const char subs[] = {'[', ':', ' ', '\n', '&', '"', '{', '-', '\0'};
    size_t okcount = 0;
    for (size_t i = 0; i <= len; i++) {
        for (size_t s = 0; s <= TG_ARRAY_LEN(subs); s++) {
            size_t n = len;
            memcpy(m, y, len);
            if (s == TG_ARRAY_LEN(subs))
                n = i; /* prefix */
            else if (i < len)
                m[i] = subs[s];
            else
                continue;
            struct tg_config *cfg = NULL;
            char err[TG_CONFIG_ERRLEN] = "";
            int rc = tg_config_load_buffer("f.yaml", m, n, &cfg, err, sizeof(err));
            if (rc == TG_OK) {
                okcount++;
                assert_non_null(cfg);
                tg_config_free(cfg);
            } else {
                assert_null(cfg);
                assert_true(strncmp(err, "f.yaml", 6) == 0);
                assert_null(strchr(err, '\n'));
            }
        }
    }
    assert_true(okcount > 0);
    free(m);
    free(y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_yaml),        cmocka_unit_test(test_err_unknown_keys),
        cmocka_unit_test(test_err_types),       cmocka_unit_test(test_err_missing),
        cmocka_unit_test(test_err_values),      cmocka_unit_test(test_err_sources),
        cmocka_unit_test(test_known_providers), cmocka_unit_test(test_err_null_buffers),
        cmocka_unit_test(test_robustness),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
