/*
 * Unit tests for src/config/tg_conf_parse.c: the scalar parsers (durations,
 * unsigned integers, booleans, socket addresses), on fixed strings.
 */
#include "tg_test_util.h"

#include "config/tg_conf_parse.h"
#include "config/tg_config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

static void test_parse_duration(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t ns;
    } ok[] = {
        {"2s", 2000000000ULL},
        {"0.001s", 1000000ULL},
        {"250ms", 250000000ULL},
        {"500us", 500000ULL},
        {"100ns", 100ULL},
        {"1m", 60000000000ULL},
        {"1h", 3600000000000ULL},
        {"1", 1000000000ULL},
        {"1.5", 1500000000ULL},
        {"0", 0},
        {"0s", 0},
        {"0.000s", 0},
        {"007ms", 7000000ULL},
        {"1.000000001s", 1000000001ULL},
        {"0.000000001s", 1ULL},
        {"1.500000000000000000000000s", 1500000000ULL},
        {"0.5ms", 500000ULL},
        {"0.25us", 250ULL},
        {"0.1m", 6000000000ULL},
        {"1.5h", 5400000000000ULL},
        {"0.0000000000025h", 9ULL},
        {"0.00000000005m", 3ULL},
        {"18446744073.709551615s", UINT64_MAX},
        {"18446744073709551615ns", UINT64_MAX},
    };
    static const char *const bad[] = {
        "",
        "-1s",
        "+1s",
        " 1s",
        "1s ",
        "1 s",
        "1.s",
        ".5s",
        "1x",
        "s",
        "ms",
        "1e3s",
        "1sec",
        "0x10s",
        "1.5.5s",
        "1h30m",
        "1.5ns",
        "0.0000000001s",
        "0.00000000001m",
        "18446744073.709551616s",
        "18446744074s",
        "18446744073709551616ns",
        "99999999999999999999999999s",
        "5124096h",
        "1S",
        "1MS",
        "inf",
        "nan",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(ok); i++) {
        uint64_t v = 12345;
        if (tg_conf_parse_duration(ok[i].s, &v) != TG_OK || v != ok[i].ns)
            print_error("duration '%s' -> %llu\n", ok[i].s, (unsigned long long)v);
        assert_int_equal(tg_conf_parse_duration(ok[i].s, &v), TG_OK);
        assert_true(v == ok[i].ns);
    }
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++) {
        uint64_t v = 12345;
        if (tg_conf_parse_duration(bad[i], &v) == TG_OK)
            print_error("duration '%s' accepted\n", bad[i]);
        assert_int_equal(tg_conf_parse_duration(bad[i], &v), TG_ECONFIG);
        assert_true(v == 12345);
    }
    uint64_t v;
    assert_int_equal(tg_conf_parse_duration(NULL, &v), TG_ECONFIG);
}

static void test_parse_u64_bool(void **state)
{
    (void)state;
    uint64_t v = 7;
    assert_int_equal(tg_conf_parse_u64("0", 0, 10, &v), TG_OK);
    assert_true(v == 0);
    assert_int_equal(tg_conf_parse_u64("042", 0, 100, &v), TG_OK);
    assert_true(v == 42);
    assert_int_equal(tg_conf_parse_u64("18446744073709551615", 0, UINT64_MAX, &v), TG_OK);
    assert_true(v == UINT64_MAX);
    v = 7;
    static const char *const bad[] = {"",     "-1",  "+1",  " 1",  "1 ",
                                      "0x10", "1e3", "1.0", "abc", "18446744073709551616"};
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++)
        assert_int_equal(tg_conf_parse_u64(bad[i], 0, UINT64_MAX, &v), TG_ECONFIG);
    assert_int_equal(tg_conf_parse_u64("11", 0, 10, &v), TG_ECONFIG);
    assert_int_equal(tg_conf_parse_u64("4", 5, 10, &v), TG_ECONFIG);
    assert_int_equal(tg_conf_parse_u64(NULL, 0, 10, &v), TG_ECONFIG);
    assert_true(v == 7);

    bool b = false;
    static const char *const yes[] = {"true", "True", "TRUE"};
    static const char *const no[] = {"false", "False", "FALSE"};
    for (size_t i = 0; i < 3; i++) {
        b = false;
        assert_int_equal(tg_conf_parse_bool(yes[i], &b), TG_OK);
        assert_true(b);
        assert_int_equal(tg_conf_parse_bool(no[i], &b), TG_OK);
        assert_false(b);
    }
    static const char *const badb[] = {"yes", "no", "on", "off", "1", "0", "", "tRue", "true "};
    b = true;
    for (size_t i = 0; i < TG_ARRAY_LEN(badb); i++)
        assert_int_equal(tg_conf_parse_bool(badb[i], &b), TG_ECONFIG);
    assert_int_equal(tg_conf_parse_bool(NULL, &b), TG_ECONFIG);
    assert_true(b);
}

static void test_parse_size(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t want;
    } ok[] = {{"0", 0},           {"4096", 4096},    {"12B", 12},          {"1KiB", 1024},
              {"256KiB", 262144}, {"3MiB", 3 << 20}, {"2GiB", 2ULL << 30}, {"0042KiB", 42 << 10}};
    uint64_t v = 7;
    for (size_t i = 0; i < TG_ARRAY_LEN(ok); i++) {
        assert_int_equal(tg_conf_parse_size(ok[i].s, 0, UINT64_MAX, &v), TG_OK);
        assert_true(v == ok[i].want);
    }
    v = 7;
    static const char *const bad[] = {"",
                                      "KiB",
                                      "1 KiB",
                                      "1kib",
                                      "1KB",
                                      "1K",
                                      "1.5MiB",
                                      "-1KiB",
                                      "+1",
                                      "1KiB ",
                                      "0x10",
                                      "1TiB",
                                      "1MiBx",
                                      "99999999999999999999",
                                      "18014398509481984KiB"};
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++)
        assert_int_equal(tg_conf_parse_size(bad[i], 0, UINT64_MAX, &v), TG_ECONFIG);
    assert_int_equal(tg_conf_parse_size("4KiB", 4097, 8192, &v), TG_ECONFIG);
    assert_int_equal(tg_conf_parse_size("9KiB", 4096, 8192, &v), TG_ECONFIG);
    assert_int_equal(tg_conf_parse_size(NULL, 0, 10, &v), TG_ECONFIG);
    assert_true(v == 7);
}

static void test_parse_addr(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int family;
        const char *host;
        uint16_t port;
    } ok[] = {
        {"127.0.0.1:80", AF_INET, "127.0.0.1", 80},
        {"0.0.0.0:0", AF_INET, "0.0.0.0", 0},
        {"localhost:8080", AF_INET, "127.0.0.1", 8080},
        {"10.1.2.3:65535", AF_INET, "10.1.2.3", 65535},
        {"[::1]:443", AF_INET6, "::1", 443},
        {"[::]:0", AF_INET6, "::", 0},
        {"[2001:db8::1]:8443", AF_INET6, "2001:db8::1", 8443},
        {"[::ffff:127.0.0.1]:1", AF_INET6, "::ffff:127.0.0.1", 1},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(ok); i++) {
        struct tg_conf_addr a;
        memset(&a, 0, sizeof(a));
        assert_int_equal(tg_conf_parse_addr(ok[i].s, &a), TG_OK);
        assert_string_equal(a.text, ok[i].s);
        assert_int_equal(a.ss.ss_family, ok[i].family);
        char host[64];
        if (ok[i].family == AF_INET) {
            const struct sockaddr_in *sin = (const struct sockaddr_in *)&a.ss;
            assert_int_equal(a.len, sizeof(*sin));
            assert_int_equal(ntohs(sin->sin_port), ok[i].port);
            assert_non_null(inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host)));
        } else {
            const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a.ss;
            assert_int_equal(a.len, sizeof(*sin6));
            assert_int_equal(ntohs(sin6->sin6_port), ok[i].port);
            assert_non_null(inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host)));
        }
        assert_string_equal(host, ok[i].host);
        tg_conf_addr_clear(&a);
        assert_null(a.text);
    }
    static const char *const bad[] = {
        "",
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "127.0.0.1:80 ",
        " 127.0.0.1:80",
        "127.0.0.1:0x50",
        ":80",
        "[::1]",
        "[::1]80",
        "[::1:80",
        "::1:80",
        "[]:80",
        "example.com:80",
        "localhost.:80",
        "1.2.3:80",
        "256.1.1.1:80",
        "[1.2.3.4]:80",
        "[::1%lo]:80",
        "[fe80::zz]:80",
        "*:80",
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++) {
        struct tg_conf_addr a;
        memset(&a, 0, sizeof(a));
        if (tg_conf_parse_addr(bad[i], &a) == TG_OK)
            print_error("address '%s' accepted\n", bad[i]);
        assert_int_equal(tg_conf_parse_addr(bad[i], &a), TG_ECONFIG);
        assert_null(a.text);
    }
    struct tg_conf_addr a;
    memset(&a, 0, sizeof(a));
    assert_int_equal(tg_conf_parse_addr(NULL, &a), TG_ECONFIG);
    tg_conf_addr_clear(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_u64_bool),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_addr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
