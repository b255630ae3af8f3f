/*
 * Unit tests for the pure parts of `tlsgate bench` (src/bench/tg_bench_opts.c,
 * tg_bench_report.c): argument and duration parsing, targets, percentiles,
 * the fortio summary line, /proc/PID/stat parsing, and the reports.
 * The HTTP parser has its own file (test_bench_http.c).
 */
#include "tg_test_util.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/tg_bench_internal.h"

/* argv helper: "bench" + the given words. */
#define ARGS(...)                                                                                  \
    char *argv_[] = {"bench", __VA_ARGS__};                                                        \
    int argc_ = (int)(sizeof(argv_) / sizeof(argv_[0]))

static int parse(int argc, char **argv, struct tg_bench_opts *o, char *err)
{
    err[0] = '\0';
    return tg_bench_parse_args(argc, argv, o, err, TG_BENCH_ERRLEN);
}

/* ------------------------------------------------------------------------- */

static void test_duration_valid(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t ns;
    } ok[] = {
        {"5s", 5000000000ULL},    {"250ms", 250000000ULL},         {"1.5s", 1500000000ULL},
        {"100us", 100000ULL},     {"100\xc2\xb5s", 100000ULL},     {"2m", 120000000000ULL},
        {"1h", 3600000000000ULL}, {"1m30s", 90000000000ULL},       {"500ns", 500ULL},
        {"10", 10000000000ULL},   {"0.001s", 1000000ULL},          {"0", 0},
        {".5s", 500000000ULL},    {"1h1m1s1ms", 3661001000000ULL},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(ok); i++) {
        uint64_t v = 12345;
        assert_int_equal(tg_bench_parse_duration(ok[i].s, &v), TG_OK);
        assert_true(v == ok[i].ns);
    }
}

static void test_duration_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {"",
                                      "s",
                                      "5x",
                                      "-1s",
                                      "1m30",
                                      "1e3s",
                                      " 5s",
                                      "5s ",
                                      "5 s",
                                      ".s",
                                      "m",
                                      "99999999999999999999s",
                                      "9999999999h",
                                      "1..5s",
                                      "5S"};
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++) {
        uint64_t v = 7;
        assert_int_equal(tg_bench_parse_duration(bad[i], &v), TG_ECONFIG);
        assert_true(v == 7); /* untouched */
    }
    assert_int_equal(tg_bench_parse_duration(NULL, NULL), TG_ECONFIG);
}

static void test_u64(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(tg_bench_parse_u64("42", 0, 100, &v), TG_OK);
    assert_true(v == 42);
    assert_int_equal(tg_bench_parse_u64("18446744073709551615", 0, UINT64_MAX, &v), TG_OK);
    assert_true(v == UINT64_MAX);
    assert_int_equal(tg_bench_parse_u64("18446744073709551616", 0, UINT64_MAX, &v), TG_ECONFIG);
    assert_int_equal(tg_bench_parse_u64("101", 0, 100, &v), TG_ECONFIG);
    assert_int_equal(tg_bench_parse_u64("0", 1, 100, &v), TG_ECONFIG);
    assert_int_equal(tg_bench_parse_u64("-1", 0, 100, &v), TG_ECONFIG);
    assert_int_equal(tg_bench_parse_u64("+1", 0, 100, &v), TG_ECONFIG);
    assert_int_equal(tg_bench_parse_u64(" 1", 0, 100, &v), TG_ECONFIG);
    assert_int_equal(tg_bench_parse_u64("1k", 0, 100, &v), TG_ECONFIG);
    assert_int_equal(tg_bench_parse_u64("", 0, 100, &v), TG_ECONFIG);
}

/* ------------------------------------------------------------------------- */

static void test_args_defaults(void **state)
{
    (void)state;
    struct tg_bench_opts o;
    char err[TG_BENCH_ERRLEN];
    ARGS("-k", "127.0.0.1:8443");
    assert_int_equal(parse(argc_, argv_, &o, err), TG_OK);
    assert_int_equal(o.mode, TG_BENCH_MODE_LOAD);
    assert_int_equal(o.connections, 8);
    assert_true(o.qps == 0);
    assert_true(o.duration_ns == 5000000000ULL);
    assert_true(o.num_calls == 0);
    assert_true(o.warmup == 0);
    assert_false(o.keepalive);
    assert_true(o.insecure);
    assert_string_equal(o.groups, "X25519");
    assert_null(o.ciphersuites);
    assert_true(o.timeout_ns == 10000000000ULL);
    assert_true(o.payload == 0);
    assert_int_equal(o.pid, 0);
    assert_int_equal(o.tls_version, 0);
    assert_int_equal(o.close_mode, TG_BENCH_CLOSE_AUTO);
    assert_true(o.ssl_reuse);
    assert_true(o.lean_libctx);
    assert_true(o.reuse_keyshare);
    assert_string_equal(o.target.path, "/");
    assert_string_equal(o.target.addr.text, "127.0.0.1:8443");
    assert_string_equal(o.target.authority, "127.0.0.1:8443");
}

static void test_args_spellings(void **state)
{
    (void)state;
    struct tg_bench_opts o;
    char err[TG_BENCH_ERRLEN];
    {
        ARGS("-c", "4", "-qps", "100", "-t", "2s", "--warmup", "10", "-k", "localhost:1");
        assert_int_equal(parse(argc_, argv_, &o, err), TG_OK);
        assert_int_equal(o.connections, 4);
        assert_true(o.qps == 100);
        assert_true(o.duration_ns == 2000000000ULL);
        assert_true(o.warmup == 10);
    }
    {
        ARGS("--c=5", "--qps=100.5", "--t=1m", "-warmup=3", "--k", "localhost:1");
        assert_int_equal(parse(argc_, argv_, &o, err), TG_OK);
        assert_int_equal(o.connections, 5);
        assert_true(o.qps == 100.5);
        assert_true(o.duration_ns == 60000000000ULL);
        assert_true(o.warmup == 3);
        assert_true(o.insecure);
    }
    {
        ARGS("-c=6", "--connections", "7", "-n", "50", "--insecure", "localhost:1");
        assert_int_equal(parse(argc_, argv_, &o, err), TG_OK);
        assert_int_equal(o.connections, 7); /* last one wins */
        assert_true(o.num_calls == 50);
    }
    {
        /* -n smaller than -c: only n slots are useful */
        ARGS("-c", "64", "-n", "10", "-k", "localhost:1");
        assert_int_equal(parse(argc_, argv_, &o, err), TG_OK);
        assert_int_equal(o.connections, 10);
    }
    {
        ARGS("--keepalive", "-k", "localhost:1");
        assert_int_equal(parse(argc_, argv_, &o, err), TG_OK);
        assert_true(o.keepalive);
    }
    {
        ARGS("--keepalive=false", "-k", "localhost:1");
        assert_int_equal(parse(argc_, argv_, &o, err), TG_OK);
        assert_false(o.keepalive);
    }
    {
        ARGS("-keepalive", "true", "-k", "localhost:1");
        assert_int_equal(parse(argc_, argv_, &o, err), TG_OK);
        assert_true(o.keepalive);
    }
    {
        ARGS("--keepalive", "false", "-k", "localhost:1");
        assert_int_equal(parse(argc_, argv_, &o, err), TG_OK);
        assert_false(o.keepalive);
    }
    {
        ARGS("--cacert", "/x/ca.pem", "--sni", "example.test", "--tls-version", "1.2", "--groups",
             "P-256:X25519", "--ciphers", "ECDHE-RSA-AES128-GCM-SHA256",
             "--ciphersuites=TLS_AES_256_GCM_SHA384", "--alpn", "h2,http/1.1", "--payload", "1024",
             "--timeout", "250ms", "--pid", "1234", "--json", "/tmp/x.json", "--quiet", "--close",
             "client", "--ssl-reuse=false", "--lean-libctx=false", "--reuse-keyshare=false",
             "--source-ips", "4", "https://127.0.0.1:8443/a/b?c=d");
        assert_int_equal(parse(argc_, argv_, &o, err), TG_OK);
        assert_string_equal(o.cacert, "/x/ca.pem");
        assert_false(o.insecure);
        assert_string_equal(o.sni, "example.test");
        assert_int_equal(o.tls_version, 0x0303);
        assert_string_equal(o.groups, "P-256:X25519");
        assert_string_equal(o.ciphers, "ECDHE-RSA-AES128-GCM-SHA256");
        assert_string_equal(o.ciphersuites, "TLS_AES_256_GCM_SHA384");
        assert_string_equal(o.alpn, "h2,http/1.1");
        assert_true(o.payload == 1024);
        assert_true(o.timeout_ns == 250000000ULL);
        assert_int_equal(o.pid, 1234);
        assert_string_equal(o.json, "/tmp/x.json");
        assert_true(o.quiet);
        assert_int_equal(o.close_mode, TG_BENCH_CLOSE_CLIENT);
        assert_false(o.ssl_reuse);
        assert_false(o.lean_libctx);
        assert_false(o.reuse_keyshare);
        assert_int_equal(o.source_ips, 4);
        assert_string_equal(o.target.path, "/a/b?c=d");
    }
    {
        ARGS("-k", "--path", "/p", "--", "[::1]:9443");
        assert_int_equal(parse(argc_, argv_, &o, err), TG_OK);
        assert_string_equal(o.target.path, "/p");
        assert_string_equal(o.target.addr.text, "[::1]:9443");
        assert_string_equal(o.target.authority, "[::1]:9443");
        assert_int_equal(o.target.addr.ss.ss_family, AF_INET6);
    }
}

static void test_args_invalid(void **state)
{
    (void)state;
    static const struct {
        const char *argv[8];
        const char *msg; /* substring of the error */
    } bad[] = {
        {{"-k"}, "missing TARGET"},
        {{"localhost:1"}, "--cacert"},
        {{"-k", "--cacert", "x", "localhost:1"}, "exclusive"},
        {{"-k", "-t", "1s", "-n", "5", "localhost:1"}, "exclusive"},
        {{"-k", "--bogus", "localhost:1"}, "unknown option '--bogus'"},
        {{"-k", "--bogus=1", "localhost:1"}, "unknown option '--bogus'"},
        {{"-k", "localhost:1", "-c"}, "needs a value"},
        {{"-k", "-c", "0", "localhost:1"}, "-c"},
        {{"-k", "-c", "x", "localhost:1"}, "-c"},
        {{"-k", "-qps", "-5", "localhost:1"}, "-qps"},
        {{"-k", "-qps", "1.", "localhost:1"}, "-qps"},
        {{"-k", "-t", "5", "-t", "soon", "localhost:1"}, "bad duration"},
        {{"-k", "-n", "0", "localhost:1"}, "-n"},
        {{"-k", "--keepalive=maybe", "localhost:1"}, "true or false"},
        {{"-k", "--tls-version", "1.1", "localhost:1"}, "1.2 or 1.3"},
        {{"-k", "--alpn", "h2,,x", "localhost:1"}, "--alpn"},
        {{"-k", "--payload", "99999999999", "localhost:1"}, "--payload"},
        {{"-k", "--path", "nope", "localhost:1"}, "must start with '/'"},
        {{"-k", "--path", "/a b", "localhost:1"}, "invalid character"},
        {{"-k", "--path", "/p", "https://localhost:1/q"}, "already has path"},
        {{"-k", "--timeout", "0", "localhost:1"}, "--timeout"},
        {{"-k", "--pid", "abc", "localhost:1"}, "--pid"},
        {{"-k", "--close", "never", "localhost:1"}, "auto, server or client"},
        {{"-k", "--source-ips", "2", "[::1]:1"}, "IPv4"},
        {{"-k", "localhost:1", "localhost:2"}, "more than one target"},
        {{"-k", "-", "localhost:1"}, "unexpected argument"},
        {{"-k", "--response-size", "5", "localhost:1"}, "only applies to --serve"},
        {{"--serve", "127.0.0.1:0", "-c", "4"}, "does not apply to --serve"},
        {{"--serve", "127.0.0.1:0", "localhost:1"}, "no target"},
        {{"--serve", "example.com:80"}, "no DNS"},
        {{"--serve", "127.0.0.1"}, "HOST:PORT"},
        {{"-k", "http://localhost:1/"}, "https:// only"},
        {{"-k", "localhost"}, "missing port"},
        {{"-k", "localhost:0"}, "port 0"},
        {{"-k", "localhost:70000"}, "bad port"},
        {{"-k", "example.com:443"}, "no DNS"},
        {{"-k", "::1:443"}, "brackets"},
        {{"-k", "[::1:443"}, "missing ']'"},
        {{"-k", "[127.0.0.1]:443"}, "not an IPv6"},
        {{"-k", "localhost:1/path"}, "https://"},
        {{"-k", "https://localhost:1/a b"}, "invalid character"},
        {{"-k", "https://[::1]?q"}, "unexpected"},
        {{"-k", "https://localhost:1x"}, "bad port"},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++) {
        char *argv[10] = {"bench"};
        int argc = 1;
        for (int k = 0; k < 8 && bad[i].argv[k] != NULL; k++)
            argv[argc++] = (char *)bad[i].argv[k];
        struct tg_bench_opts o;
        char err[TG_BENCH_ERRLEN];
        int rc = parse(argc, argv, &o, err);
        if (rc != TG_ECONFIG || strstr(err, bad[i].msg) == NULL)
            fail_msg("case %zu (%s ...): rc=%d err='%s', expected '%s'", i, bad[i].argv[0], rc, err,
                     bad[i].msg);
    }
}

static void test_args_serve_help(void **state)
{
    (void)state;
    struct tg_bench_opts o;
    char err[TG_BENCH_ERRLEN];
    {
        ARGS("--serve", "127.0.0.1:0");
        assert_int_equal(parse(argc_, argv_, &o, err), TG_OK);
        assert_int_equal(o.mode, TG_BENCH_MODE_SERVE);
        assert_string_equal(o.serve.text, "127.0.0.1:0");
        assert_true(o.response_size == TG_BENCH_RESPONSE_DEFAULT);
        assert_true(o.max_conns == 100000);
    }
    {
        ARGS("-serve=[::1]:8080", "--response-size", "0", "--max-conns=10", "-quiet");
        assert_int_equal(parse(argc_, argv_, &o, err), TG_OK);
        assert_int_equal(o.mode, TG_BENCH_MODE_SERVE);
        assert_string_equal(o.serve.text, "[::1]:8080");
        assert_true(o.response_size == 0);
        assert_true(o.max_conns == 10);
        assert_true(o.quiet);
    }
    {
        ARGS("--help");
        assert_int_equal(parse(argc_, argv_, &o, err), TG_OK);
        assert_int_equal(o.mode, TG_BENCH_MODE_HELP);
    }
    {
        ARGS("-c", "3", "-h", "--bogus-after-help-is-still-unknown");
        assert_int_equal(parse(argc_, argv_, &o, err), TG_ECONFIG);
    }
    assert_non_null(strstr(tg_bench_usage(), "usage: tlsgate bench"));
}

static void test_target(void **state)
{
    (void)state;
    struct tg_bench_target t;
    char err[TG_BENCH_ERRLEN];
    assert_int_equal(tg_bench_parse_target("https://localhost/x", &t, err, sizeof(err)), TG_OK);
    assert_string_equal(t.host, "localhost");
    assert_false(t.host_is_ip);
    assert_string_equal(t.authority, "localhost"); /* default port: no port in Host */
    assert_string_equal(t.addr.text, "127.0.0.1:443");
    assert_string_equal(t.path, "/x");
    assert_int_equal(tg_bench_parse_target("HTTPS://[::1]:8443", &t, err, sizeof(err)), TG_OK);
    assert_string_equal(t.host, "::1");
    assert_true(t.host_is_ip);
    assert_string_equal(t.authority, "[::1]:8443");
    assert_string_equal(t.path, "");
    assert_int_equal(tg_bench_parse_target("10.1.2.3:99", &t, err, sizeof(err)), TG_OK);
    assert_string_equal(t.addr.text, "10.1.2.3:99");
}

static void test_alpn(void **state)
{
    (void)state;
    unsigned char w[64];
    assert_int_equal(tg_bench_alpn_wire("h2,http/1.1", w, sizeof(w)), 12);
    assert_memory_equal(w, "\x02h2\x08http/1.1", 12);
    assert_int_equal(tg_bench_alpn_wire("x", w, sizeof(w)), 2);
    assert_int_equal(tg_bench_alpn_wire("", w, sizeof(w)), -1);
    assert_int_equal(tg_bench_alpn_wire("a,", w, sizeof(w)), -1);
    assert_int_equal(tg_bench_alpn_wire(",a", w, sizeof(w)), -1);
    assert_int_equal(tg_bench_alpn_wire("abcdef", w, 4), -1);
}

/* ------------------------------------------------------------------------- */

static void test_percentiles(void **state)
{
    (void)state;
    uint32_t v[1000];
    for (uint32_t i = 0; i < 100; i++)
        v[i] = i + 1; /* 1..100 */
    assert_int_equal(tg_bench_percentile(v, 100, 50), 50);
    assert_int_equal(tg_bench_percentile(v, 100, 90), 90);
    assert_int_equal(tg_bench_percentile(v, 100, 99), 99);
    assert_int_equal(tg_bench_percentile(v, 100, 99.9), 100);
    assert_int_equal(tg_bench_percentile(v, 100, 100), 100);
    assert_int_equal(tg_bench_percentile(v, 100, 0), 1);
    assert_int_equal(tg_bench_percentile(v, 100, 0.5), 1);
    assert_int_equal(tg_bench_percentile(v, 100, 1), 1);
    assert_int_equal(tg_bench_percentile(v, 100, 1.01), 2);
    /* 0.9 * 10 is 9.000000000000002 in binary floating point: rank 9, not 10 */
    assert_int_equal(tg_bench_percentile(v, 10, 90), 9);
    assert_int_equal(tg_bench_percentile(v, 1, 50), 1);
    assert_int_equal(tg_bench_percentile(v, 1, 99.9), 1);
    assert_int_equal(tg_bench_percentile(v, 0, 50), 0);
    for (uint32_t i = 0; i < 1000; i++)
        v[i] = i + 1;
    assert_int_equal(tg_bench_percentile(v, 1000, 99.9), 999);
    assert_int_equal(tg_bench_percentile(v, 1000, 99.99), 1000);
    assert_int_equal(tg_bench_percentile(v, 1000, 50), 500);
    assert_int_equal(tg_bench_percentile(v, 3, 50), 2);
    assert_int_equal(tg_bench_percentile(v, 2, 50), 1);
}

static void test_latency_summary(void **state)
{
    (void)state;
    struct tg_bench_lat l;
    struct tg_bench_latsum s;
    tg_bench_lat_init(&l, 2); /* forces growth */
    tg_bench_lat_summarize(&l, &s);
    assert_true(s.count == 0 && s.avg_ms == 0 && s.max_ms == 0);
    static const uint64_t in[] = {5000, 1000, 3000, 2000, 4000, 10000, 9000, 8000, 7000, 6000};
    for (size_t i = 0; i < TG_ARRAY_LEN(in); i++)
        tg_bench_lat_add(&l, in[i]);
    tg_bench_lat_add(&l, 1ULL << 40); /* clamped to UINT32_MAX us */
    tg_bench_lat_summarize(&l, &s);
    assert_true(s.count == 11);
    assert_true(s.min_ms == 1.0);
    assert_true(s.p50_ms == 6.0);
    assert_true(s.p90_ms == 10.0);
    assert_true(s.max_ms == UINT32_MAX / 1000.0);
    double avg = (55000.0 + UINT32_MAX) / 11 / 1000.0;
    assert_true(s.avg_ms > avg - 1e-9 && s.avg_ms < avg + 1e-9);
    assert_false(l.truncated);
    tg_bench_lat_free(&l);
}

static void test_format_done(void **state)
{
    (void)state;
    char buf[128];
    tg_bench_format_done(buf, sizeof(buf), 43069, 10, 6.9664, 1435.44);
    assert_string_equal(buf, "All done 43069 calls (plus 10 warmup) 6.966 ms avg, 1435.4 qps");
    tg_bench_format_done(buf, sizeof(buf), 0, 0, 0, 0);
    assert_string_equal(buf, "All done 0 calls (plus 0 warmup) 0.000 ms avg, 0.0 qps");
    tg_bench_format_progress(buf, sizeof(buf), "12:00:01", 1, 1435, 1435.2, 0);
    assert_string_equal(buf, "12:00:01 1s: 1435 calls, 1435 qps, 0 errors");
}

static void test_proc_stat(void **state)
{
    (void)state;
    uint64_t ut = 0, st = 0;
    const char *plain = "1234 (nginx) S 1 1234 1234 0 -1 4194560 1234 0 0 0 4711 815 0 0 20 0 1 "
                        "0 100 1000000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0\n";
    assert_int_equal(tg_bench_parse_proc_stat(plain, &ut, &st), TG_OK);
    assert_true(ut == 4711 && st == 815);
    /* comm with spaces and parentheses: only the last ')' ends it */
    const char *weird = "77 (a b) (c) ) x) R 1 77 77 0 -1 0 0 0 0 0 12 34 0 0 20 0 1 0 5 0 0\n";
    assert_int_equal(tg_bench_parse_proc_stat(weird, &ut, &st), TG_OK);
    assert_true(ut == 12 && st == 34);
    assert_int_equal(tg_bench_parse_proc_stat("1 (x) S 1 2 3", &ut, &st), TG_EPROTO);
    assert_int_equal(tg_bench_parse_proc_stat("no parenthesis at all", &ut, &st), TG_EPROTO);
    assert_int_equal(tg_bench_parse_proc_stat("1 (x) S 1 1 1 0 -1 0 0 0 0 0 1x 2 0", &ut, &st),
                     TG_EPROTO);
    /* and a real one */
    double cpu = -1;
    assert_int_equal(tg_bench_proc_cpu((long)getpid(), &cpu), TG_OK);
    assert_true(cpu >= 0);
    assert_int_equal(tg_bench_proc_cpu(0x7ffffffe, &cpu), TG_EIO);
}

/* ------------------------------------------------------------------------- */

static void fill_result(struct tg_bench_result *r)
{
    memset(r, 0, sizeof(*r));
    r->calls = 1000;
    r->ok = 990;
    r->errors[TG_BENCH_ERR_TIMEOUT] = 7;
    r->errors[TG_BENCH_ERR_HTTP_STATUS] = 3;
    snprintf(r->first_error[TG_BENCH_ERR_TIMEOUT], sizeof(r->first_error[0]),
             "no response within 10 s \"quoted\"\n");
    r->warmup_done = 10;
    r->handshakes_full = 990;
    r->connections = 1000;
    r->elapsed_s = 2.0;
    r->client_cpu_s = 0.25;
    r->have_proxy_cpu = true;
    r->proxy_cpu_s = 0.5;
    r->lat.count = 1000;
    r->lat.avg_ms = 6.9664;
    r->lat.p50_ms = 6;
    r->lat.max_ms = 50;
    r->ntls = 1;
    r->tls[0].version = "TLSv1.3";
    r->tls[0].cipher = "TLS_AES_128_GCM_SHA256";
    snprintf(r->tls[0].group, sizeof(r->tls[0].group), "x25519");
    r->tls[0].count = 990;
    r->close_server = 990;
    snprintf(r->start_time, sizeof(r->start_time), "2030-01-01T00:00:00+0000");
}

static void test_report_text(void **state)
{
    (void)state;
    struct tg_bench_opts o;
    char err[TG_BENCH_ERRLEN];
    ARGS("-k", "--pid", "42", "https://127.0.0.1:8443/x");
    assert_int_equal(parse(argc_, argv_, &o, err), TG_OK);
    struct tg_bench_result r;
    fill_result(&r);
    struct tg_buf out = TG_BUF_INIT;
    tg_bench_report_text(&out, &o, &r);
    assert_false(tg_buf_failed(&out));
    assert_non_null(strstr(out.data, "Errors: 10 (connect 0, tls_handshake 0, timeout 7, read 0, "
                                     "write 0, http_status 3, bad_response 0)\n"));
    assert_non_null(strstr(out.data, "TLS: TLSv1.3 TLS_AES_128_GCM_SHA256 x25519 (990 "
                                     "handshakes)\n"));
    assert_non_null(strstr(out.data, "Handshakes: 990 full (495.0/s), 0 resumed"));
    assert_non_null(strstr(out.data, "250.0 us per call"));
    assert_non_null(strstr(out.data, "1980.0 handshakes per proxy-CPU-second"));
    /* the fortio line is the last line */
    const char *last = "All done 1000 calls (plus 10 warmup) 6.966 ms avg, 500.0 qps\n";
    size_t ll = strlen(last);
    assert_true(out.len > ll);
    assert_string_equal(out.data + out.len - ll, last);
    assert_true(out.data[out.len - ll - 1] == '\n');
    tg_buf_free(&out);
}

static void test_report_json(void **state)
{
    (void)state;
    struct tg_bench_opts o;
    char err[TG_BENCH_ERRLEN];
    ARGS("-k", "--pid", "42", "-qps", "10", "https://127.0.0.1:8443/x");
    assert_int_equal(parse(argc_, argv_, &o, err), TG_OK);
    struct tg_bench_result r;
    fill_result(&r);
    struct tg_buf out = TG_BUF_INIT;
    tg_bench_report_json(&out, &o, &r);
    assert_false(tg_buf_failed(&out));
    assert_true(out.data[0] == '{');
    assert_string_equal(out.data + out.len - 2, "}\n");
    assert_non_null(strstr(out.data, "\"target\": \"https://127.0.0.1:8443/x\""));
    assert_non_null(strstr(out.data, "\"calls\": 1000,"));
    assert_non_null(strstr(out.data, "\"timeout\": 7"));
    assert_non_null(
        strstr(out.data, "\"timeout\": \"no response within 10 s \\\"quoted\\\"\\u000a\""));
    assert_non_null(strstr(out.data, "\"handshakes_per_cpu_second\": 1980"));
    assert_non_null(strstr(out.data, "\"summary\": \"All done 1000 calls (plus 10 warmup) 6.966 ms "
                                     "avg, 500.0 qps\""));
    /* brackets balance outside strings */
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < out.len; i++) {
        char ch = out.data[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = false;
            continue;
        }
        if (ch == '"')
            in_str = true;
        else if (ch == '{' || ch == '[')
            depth++;
        else if (ch == '}' || ch == ']')
            depth--;
        assert_true(depth >= 0);
    }
    assert_int_equal(depth, 0);
    assert_false(in_str);
    tg_buf_free(&out);
}

static void test_json_string(void **state)
{
    (void)state;
    struct tg_buf out = TG_BUF_INIT;
    tg_bench_json_string(&out, "a\"b\\c\x01");
    tg_bench_json_string(&out, NULL);
    assert_string_equal(out.data, "\"a\\\"b\\\\c\\u0001\"null");
    tg_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration_valid),
        cmocka_unit_test(test_duration_invalid),
        cmocka_unit_test(test_u64),
        cmocka_unit_test(test_args_defaults),
        cmocka_unit_test(test_args_spellings),
        cmocka_unit_test(test_args_invalid),
        cmocka_unit_test(test_args_serve_help),
        cmocka_unit_test(test_target),
        cmocka_unit_test(test_alpn),
        cmocka_unit_test(test_percentiles),
        cmocka_unit_test(test_latency_summary),
        cmocka_unit_test(test_format_done),
        cmocka_unit_test(test_proc_stat),
        cmocka_unit_test(test_report_text),
        cmocka_unit_test(test_report_json),
        cmocka_unit_test(test_json_string),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
