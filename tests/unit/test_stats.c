#include <string.h>

#include "core/tg_stats.h"
#include "tg_test_util.h"

static void test_counters_and_gauge(void **state)
{
    (void)state;
    struct tg_core_stats a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    tg_stat_inc(&a, TG_STAT_CONN_ACCEPTED);
    tg_stat_add(&b, TG_STAT_CONN_ACCEPTED, 4);
    tg_stat_add(&a, TG_STAT_CONN_OPENED, 3);
    tg_stat_add(&b, TG_STAT_CONN_OPENED, 2);
    tg_stat_inc(&a, TG_STAT_CONN_CLOSED_ACTIVE);
    struct tg_core_stats *w[] = {&a, &b};
    assert_int_equal(tg_core_stats_sum(w, 2, TG_STAT_CONN_ACCEPTED), 5);
    struct tg_buf out = TG_BUF_INIT;
    tg_core_stats_render(&out, w, 2);
    assert_non_null(strstr(out.data, "# TYPE tlsgate_connections_accepted_total counter\n"
                                     "tlsgate_connections_accepted_total 5\n"));
    /* Gauge: opened minus closed, one row, typed gauge. */
    assert_non_null(strstr(out.data, "# TYPE tlsgate_connections_active gauge\n"
                                     "tlsgate_connections_active 4\n"));
    /* Labelled rows share one HELP/TYPE header. */
    const char *h = strstr(out.data, "# TYPE tlsgate_connections_closed_total counter");
    assert_non_null(h);
    assert_null(strstr(h + 1, "# TYPE tlsgate_connections_closed_total counter"));
    assert_non_null(strstr(out.data, "tlsgate_connections_closed_total{reason=\"normal\"} 0\n"));
    tg_buf_free(&out);
}

static void test_histogram(void **state)
{
    (void)state;
    struct tg_hist h;
    memset(&h, 0, sizeof(h));
    struct tg_hist_spec spec = tg_hist_latency_us;
    spec.name = "x_seconds";
    spec.help = "x";
    for (int i = 0; i < 90; i++)
        tg_hist_record(&h, &spec, 80); /* le 100us */
    for (int i = 0; i < 10; i++)
        tg_hist_record(&h, &spec, 20000000); /* beyond the last bound */
    assert_int_equal(tg_hist_quantile(&h, &spec, 0.5), 100);
    assert_int_equal(tg_hist_quantile(&h, &spec, 0.9), 100);
    assert_int_equal(tg_hist_quantile(&h, &spec, 0.99), 10000000);
    struct tg_buf out = TG_BUF_INIT;
    tg_prom_hist(&out, &spec, "k=\"v\"", &h, 1);
    assert_non_null(strstr(out.data, "x_seconds_bucket{k=\"v\",le=\"5e-05\"} 0\n"));
    assert_non_null(strstr(out.data, "x_seconds_bucket{k=\"v\",le=\"0.0001\"} 90\n"));
    assert_non_null(strstr(out.data, "x_seconds_bucket{k=\"v\",le=\"+Inf\"} 100\n"));
    assert_non_null(strstr(out.data, "x_seconds_count{k=\"v\"} 100\n"));
    tg_buf_free(&out);
    struct tg_hist m;
    memset(&m, 0, sizeof(m));
    tg_hist_merge(&m, &h);
    tg_hist_merge(&m, &h);
    assert_int_equal(tg_ctr_get(&m.count), 200);
    struct tg_hist empty;
    memset(&empty, 0, sizeof(empty));
    assert_int_equal(tg_hist_quantile(&empty, &spec, 0.5), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_and_gauge),
        cmocka_unit_test(test_histogram),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
