#include "core/tg_stats.h"

#include <string.h>

const struct tg_hist_spec tg_hist_latency_us = {
    .name = "",
    .help = "",
    .scale = 1e-6,
    .nbounds = 17,
    .bounds = {50, 100, 250, 500, 1000, 2000, 3000, 5000, 7500, 10000, 25000, 50000, 100000, 250000,
               1000000, 2500000, 10000000},
};

void tg_hist_record(struct tg_hist *h, const struct tg_hist_spec *spec, uint64_t value)
{
    size_t i = 0;
    while (i < spec->nbounds && value > spec->bounds[i])
        i++;
    tg_ctr_inc(&h->buckets[i]);
    tg_ctr_add(&h->sum, value);
    tg_ctr_inc(&h->count);
}

void tg_hist_merge(struct tg_hist *dst, const struct tg_hist *src)
{
    for (size_t i = 0; i <= TG_HIST_MAX_BUCKETS; i++)
        tg_ctr_add(&dst->buckets[i], tg_ctr_get(&src->buckets[i]));
    tg_ctr_add(&dst->sum, tg_ctr_get(&src->sum));
    tg_ctr_add(&dst->count, tg_ctr_get(&src->count));
}

uint64_t tg_hist_quantile(const struct tg_hist *h, const struct tg_hist_spec *spec, double q)
{
    uint64_t total = tg_ctr_get(&h->count);
    if (total == 0)
        return 0;
    uint64_t want = (uint64_t)(q * (double)total);
    if (want == 0)
        want = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < spec->nbounds; i++) {
        seen += tg_ctr_get(&h->buckets[i]);
        if (seen >= want)
            return spec->bounds[i];
    }
    return spec->nbounds ? spec->bounds[spec->nbounds - 1] : 0;
}

struct tg_stat_row {
    const char *type;
    const char *name;
    const char *labels;
    const char *help;
};

static const struct tg_stat_row tg_core_rows[TG_STAT_COUNT] = {
#define TG_STAT_ROW(id, type, name, labels, help) [TG_STAT_##id] = {#type, name, labels, help},
    TG_CORE_STATS(TG_STAT_ROW)
#undef TG_STAT_ROW
};

uint64_t tg_core_stats_sum(struct tg_core_stats *const *workers, size_t n, enum tg_core_stat id)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v += tg_ctr_get(&workers[i]->c[id]);
    return v;
}

void tg_prom_header(struct tg_buf *out, const char *name, const char *type, const char *help)
{
    tg_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void tg_prom_value(struct tg_buf *out, const char *name, const char *labels, uint64_t value)
{
    if (labels != NULL && labels[0] != '\0')
        tg_buf_printf(out, "%s{%s} %llu\n", name, labels, (unsigned long long)value);
    else
        tg_buf_printf(out, "%s %llu\n", name, (unsigned long long)value);
}

void tg_prom_hist(struct tg_buf *out, const struct tg_hist_spec *spec, const char *labels,
                  const struct tg_hist *h, int with_header)
{
    const char *sep = (labels && labels[0]) ? "," : "";
    const char *lab = labels ? labels : "";
    if (with_header)
        tg_prom_header(out, spec->name, "histogram", spec->help);
    uint64_t cum = 0;
    for (size_t i = 0; i < spec->nbounds; i++) {
        cum += tg_ctr_get(&h->buckets[i]);
        tg_buf_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", spec->name, lab, sep,
                      (double)spec->bounds[i] * spec->scale, (unsigned long long)cum);
    }
    cum += tg_ctr_get(&h->buckets[spec->nbounds]);
    tg_buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", spec->name, lab, sep,
                  (unsigned long long)cum);
    if (lab[0])
        tg_buf_printf(out, "%s_sum{%s} %g\n%s_count{%s} %llu\n", spec->name, lab,
                      (double)tg_ctr_get(&h->sum) * spec->scale, spec->name, lab,
                      (unsigned long long)tg_ctr_get(&h->count));
    else
        tg_buf_printf(out, "%s_sum %g\n%s_count %llu\n", spec->name,
                      (double)tg_ctr_get(&h->sum) * spec->scale, spec->name,
                      (unsigned long long)tg_ctr_get(&h->count));
}

void tg_core_stats_render(struct tg_buf *out, struct tg_core_stats *const *workers, size_t n)
{
    const char *prev = NULL;
    for (int id = 0; id < TG_STAT_COUNT; id++) {
        const struct tg_stat_row *r = &tg_core_rows[id];
        if (strcmp(r->type, "gauge_down") == 0)
            continue; /* folded into its gauge_up row */
        int is_gauge = strcmp(r->type, "gauge_up") == 0;
        if (prev == NULL || strcmp(prev, r->name) != 0)
            tg_prom_header(out, r->name, is_gauge ? "gauge" : "counter", r->help);
        prev = r->name;
        uint64_t v = tg_core_stats_sum(workers, n, (enum tg_core_stat)id);
        if (is_gauge) {
            /* The matching gauge_down row follows immediately in the list. */
            uint64_t down = tg_core_stats_sum(workers, n, (enum tg_core_stat)(id + 1));
            v = v >= down ? v - down : 0;
        }
        tg_prom_value(out, r->name, r->labels, v);
    }
    struct tg_hist agg;
    memset(&agg, 0, sizeof(agg));
    for (size_t i = 0; i < n; i++)
        tg_hist_merge(&agg, &workers[i]->handshake_us);
    struct tg_hist_spec spec = tg_hist_latency_us;
    spec.name = "tlsgate_handshake_duration_seconds";
    spec.help = "Time from accept to a finished TLS handshake";
    tg_prom_hist(out, &spec, "", &agg, 1);
}
