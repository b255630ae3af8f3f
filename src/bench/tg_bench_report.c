/*
 * tg_bench_report: latency bookkeeping, percentiles, /proc/PID/stat, and the
 * text and JSON reports of `tlsgate bench` (contracts in tg_bench_internal.h,
 * the format is documented in docs/BENCH.md and must stay stable: scripts and
 * the integration tests parse it).
 */
#include "bench/tg_bench_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const tg_bench_errkind_names[] = {
#define TG_BENCH_EK_NAME(id, name) name,
    TG_BENCH_ERRKINDS(TG_BENCH_EK_NAME)
#undef TG_BENCH_EK_NAME
};

const char *tg_bench_errkind_name(enum tg_bench_errkind k)
{
    return (unsigned)k < TG_BENCH_ERR_COUNT ? tg_bench_errkind_names[k] : "ok";
}

/* ------------------------------------------------------------------------- */
/* Latencies                                                                 */

void tg_bench_lat_init(struct tg_bench_lat *l, size_t initial_cap)
{
    memset(l, 0, sizeof(*l));
    if (initial_cap > 0) {
        l->v = malloc(initial_cap * sizeof(*l->v));
        if (l->v != NULL)
            l->cap = initial_cap;
    }
}

void tg_bench_lat_add(struct tg_bench_lat *l, uint64_t us)
{
    uint32_t v = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    l->sum_us += v;
    l->count++;
    if (v > l->max_us)
        l->max_us = v;
    if (l->n == l->cap) {
        if (l->truncated)
            return;
        /* Doubling keeps the cost at one amortised store per call. */
        size_t ncap = l->cap ? l->cap * 2 : 4096;
        uint32_t *nv = ncap > SIZE_MAX / sizeof(*nv) ? NULL : realloc(l->v, ncap * sizeof(*nv));
        if (nv == NULL) {
            l->truncated = true;
            return;
        }
        l->v = nv;
        l->cap = ncap;
    }
    l->v[l->n++] = v;
}

void tg_bench_lat_free(struct tg_bench_lat *l)
{
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static int tg_u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

uint32_t tg_bench_percentile(const uint32_t *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    if (p <= 0)
        return sorted[0];
    if (p >= 100)
        return sorted[n - 1];
    /* rank = ceil(p/100 * n), computed in integers with p in parts per
     * million (99.9 -> 999000): in floating point 0.9 * 10 is
     * 9.000000000000002, whose ceiling would wrongly be 10. */
    uint64_t ppm = (uint64_t)llround(p * 10000.0);
    unsigned __int128 num = (unsigned __int128)ppm * n + 999999;
    size_t rank = (size_t)(num / 1000000);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

void tg_bench_lat_summarize(struct tg_bench_lat *l, struct tg_bench_latsum *out)
{
    memset(out, 0, sizeof(*out));
    out->count = l->count;
    if (l->count == 0)
        return;
    out->avg_ms = (double)l->sum_us / (double)l->count / 1000.0;
    out->max_ms = l->max_us / 1000.0;
    if (l->n == 0)
        return;
    qsort(l->v, l->n, sizeof(*l->v), tg_u32_cmp);
    out->min_ms = l->v[0] / 1000.0;
    out->p50_ms = tg_bench_percentile(l->v, l->n, 50) / 1000.0;
    out->p90_ms = tg_bench_percentile(l->v, l->n, 90) / 1000.0;
    out->p99_ms = tg_bench_percentile(l->v, l->n, 99) / 1000.0;
    out->p999_ms = tg_bench_percentile(l->v, l->n, 99.9) / 1000.0;
}

/* ------------------------------------------------------------------------- */
/* /proc/PID/stat                                                            */

int tg_bench_parse_proc_stat(const char *text, uint64_t *utime, uint64_t *stime)
{
    /* "pid (comm) state ppid ...": comm is free text, so count from the last
     * ')'. Field 3 (state) follows it; utime and stime are fields 14 and 15. */
    const char *p = strrchr(text, ')');
    if (p == NULL)
        return TG_EPROTO;
    p++;
    uint64_t v[15] = {0};
    for (int field = 3; field <= 15; field++) {
        while (*p == ' ')
            p++;
        if (*p == '\0' || *p == '\n')
            return TG_EPROTO;
        const char *start = p;
        while (*p != ' ' && *p != '\0' && *p != '\n')
            p++;
        if (field >= 14) {
            uint64_t x = 0;
            for (const char *q = start; q < p; q++) {
                if (*q < '0' || *q > '9' || x > (UINT64_MAX - 9) / 10)
                    return TG_EPROTO;
                x = x * 10 + (uint64_t)(*q - '0');
            }
            v[field - 1] = x;
        }
    }
    *utime = v[13];
    *stime = v[14];
    return TG_OK;
}

int tg_bench_proc_cpu(long pid, double *seconds)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return TG_EIO;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    int saved = errno;
    close(fd);
    if (n <= 0) {
        errno = saved;
        return TG_EIO;
    }
    buf[n] = '\0';
    uint64_t ut, st;
    if (tg_bench_parse_proc_stat(buf, &ut, &st) != TG_OK)
        return TG_EIO;
    long tck = sysconf(_SC_CLK_TCK);
    if (tck <= 0)
        tck = 100;
    *seconds = (double)(ut + st) / (double)tck;
    return TG_OK;
}

/* ------------------------------------------------------------------------- */
/* Text                                                                      */

int tg_bench_format_done(char *buf, size_t len, uint64_t calls, uint64_t warmup, double avg_ms,
                         double qps)
{
    return snprintf(buf, len,
                    "All done %" PRIu64 " calls (plus %" PRIu64 " warmup) %.3f ms avg, %.1f qps",
                    calls, warmup, avg_ms, qps);
}

int tg_bench_format_progress(char *buf, size_t len, const char *hhmmss, uint64_t second,
                             uint64_t calls, double qps, uint64_t errors)
{
    return snprintf(buf, len, "%s %" PRIu64 "s: %" PRIu64 " calls, %.0f qps, %" PRIu64 " errors",
                    hhmmss, second, calls, qps, errors);
}

static double tg_div(double a, double b)
{
    return b > 0 ? a / b : 0.0;
}

static uint64_t tg_bench_errors_total(const struct tg_bench_result *r)
{
    uint64_t t = 0;
    for (int k = 0; k < TG_BENCH_ERR_COUNT; k++)
        t += r->errors[k];
    return t;
}

static void tg_bench_describe_rate(char *buf, size_t len, const struct tg_bench_opts *o)
{
    if (o->qps > 0)
        snprintf(buf, len, "%.1f qps target", o->qps);
    else
        snprintf(buf, len, "max qps");
}

static void tg_bench_describe_amount(char *buf, size_t len, const struct tg_bench_opts *o)
{
    if (o->num_calls > 0)
        snprintf(buf, len, "%" PRIu64 " calls", o->num_calls);
    else if (o->duration_ns == 0)
        snprintf(buf, len, "until interrupted");
    else
        snprintf(buf, len, "%.3gs", (double)o->duration_ns / 1e9);
}

void tg_bench_report_text(struct tg_buf *out, const struct tg_bench_opts *o,
                          const struct tg_bench_result *r)
{
    char rate[48], amount[48], line[256];
    tg_bench_describe_rate(rate, sizeof(rate), o);
    tg_bench_describe_amount(amount, sizeof(amount), o);
    tg_buf_printf(out, "Target: https://%s%s (%s), %u connections, keepalive=%s, %s, %s\n",
                  o->target.authority, o->target.path, o->target.addr.text, o->connections,
                  o->keepalive ? "true" : "false", rate, amount);
    uint64_t nerr = tg_bench_errors_total(r);
    tg_buf_printf(out,
                  "Calls: %" PRIu64 " (%" PRIu64 " ok, %" PRIu64 " errors) in %.3f s (plus %" PRIu64
                  " warmup)%s\n",
                  r->calls, r->ok, nerr, r->elapsed_s, r->warmup_done,
                  r->interrupted ? ", interrupted" : "");
    tg_buf_printf(out, "Errors: %" PRIu64 " (", nerr);
    for (int k = 0; k < TG_BENCH_ERR_COUNT; k++)
        tg_buf_printf(out, "%s%s %" PRIu64, k ? ", " : "", tg_bench_errkind_name(k), r->errors[k]);
    tg_buf_puts(out, ")\n");
    for (int k = 0; k < TG_BENCH_ERR_COUNT; k++) {
        if (r->errors[k] > 0 && r->first_error[k][0] != '\0')
            tg_buf_printf(out, "  first %s error: %s\n", tg_bench_errkind_name(k),
                          r->first_error[k]);
    }
    if (r->close_server + r->server_no_close + r->close_client > 0)
        tg_buf_printf(out,
                      "Closes: %" PRIu64 " by the server first, %" PRIu64
                      " by the client after waiting, %" PRIu64 " by the client at once%s\n",
                      r->close_server, r->server_no_close, r->close_client,
                      r->close_switched ? " (the server never closed first: the client took over)"
                                        : "");
    const struct tg_bench_latsum *l = &r->lat;
    tg_buf_printf(
        out, "Latency ms: avg %.3f p50 %.3f p90 %.3f p99 %.3f p99.9 %.3f min %.3f max %.3f%s\n",
        l->avg_ms, l->p50_ms, l->p90_ms, l->p99_ms, l->p999_ms, l->min_ms, l->max_ms,
        r->lat_truncated ? " (percentiles from a truncated sample: out of memory)" : "");
    tg_buf_printf(out,
                  "Handshakes: %" PRIu64 " full (%.1f/s), %" PRIu64 " resumed, %" PRIu64
                  " connections\n",
                  r->handshakes_full, tg_div((double)r->handshakes_full, r->elapsed_s),
                  r->handshakes_resumed, r->connections);
    if (r->ntls == 0)
        tg_buf_puts(out, "TLS: no handshake completed\n");
    for (size_t i = 0; i < r->ntls; i++)
        tg_buf_printf(out, "TLS: %s %s %s (%" PRIu64 " handshakes)\n", r->tls[i].version,
                      r->tls[i].cipher, r->tls[i].group[0] ? r->tls[i].group : "-",
                      r->tls[i].count);
    if (r->tls_other > 0)
        tg_buf_printf(out, "TLS: other combinations (%" PRIu64 " handshakes)\n", r->tls_other);
    tg_buf_printf(out,
                  "Client CPU: %.3f s (%.1f%% of a core), %.1f us per call, %.1f us per full "
                  "handshake\n",
                  r->client_cpu_s, 100.0 * tg_div(r->client_cpu_s, r->elapsed_s),
                  1e6 * tg_div(r->client_cpu_s, (double)r->calls),
                  1e6 * tg_div(r->client_cpu_s, (double)r->handshakes_full));
    if (o->pid > 0) {
        if (r->have_proxy_cpu)
            tg_buf_printf(out,
                          "Proxy CPU: pid %ld used %.3f s (%.1f%% of a core), %.1f handshakes "
                          "per proxy-CPU-second\n",
                          o->pid, r->proxy_cpu_s, 100.0 * tg_div(r->proxy_cpu_s, r->elapsed_s),
                          tg_div((double)r->handshakes_full, r->proxy_cpu_s));
        else
            tg_buf_printf(out, "Proxy CPU: pid %ld could not be read\n", o->pid);
    }
    tg_bench_format_done(line, sizeof(line), r->calls, r->warmup_done, l->avg_ms,
                         tg_div((double)r->calls, r->elapsed_s));
    tg_buf_printf(out, "%s\n", line);
}

/* ------------------------------------------------------------------------- */
/* JSON                                                                      */

void tg_bench_json_string(struct tg_buf *out, const char *s)
{
    if (s == NULL) {
        tg_buf_puts(out, "null");
        return;
    }
    tg_buf_puts(out, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            tg_buf_printf(out, "\\%c", *p);
        else if (*p < 0x20)
            tg_buf_printf(out, "\\u%04x", *p);
        else
            tg_buf_append(out, p, 1);
    }
    tg_buf_puts(out, "\"");
}

static void tg_json_key(struct tg_buf *out, const char *indent, const char *key)
{
    tg_buf_printf(out, "%s\"%s\": ", indent, key);
}

static void tg_json_num(struct tg_buf *out, double v)
{
    if (!isfinite(v))
        v = 0;
    tg_buf_printf(out, "%.6g", v);
}

void tg_bench_report_json(struct tg_buf *out, const struct tg_bench_opts *o,
                          const struct tg_bench_result *r)
{
    char url[1200];
    snprintf(url, sizeof(url), "https://%s%s", o->target.authority, o->target.path);
    tg_buf_puts(out, "{\n  \"tool\": \"tlsgate bench\",\n");
#ifdef TG_VERSION
    tg_buf_puts(out, "  \"version\": \"" TG_VERSION "\",\n");
#endif
    tg_json_key(out, "  ", "start_time");
    tg_bench_json_string(out, r->start_time);
    tg_buf_puts(out, ",\n  \"options\": {\n");
    tg_json_key(out, "    ", "target");
    tg_bench_json_string(out, url);
    tg_buf_puts(out, ",\n");
    tg_json_key(out, "    ", "address");
    tg_bench_json_string(out, o->target.addr.text);
    tg_buf_printf(out, ",\n    \"connections\": %u,\n    \"qps\": ", o->connections);
    tg_json_num(out, o->qps);
    tg_buf_puts(out, ",\n    \"duration_s\": ");
    tg_json_num(out, o->num_calls ? 0 : (double)o->duration_ns / 1e9);
    tg_buf_printf(out,
                  ",\n    \"num_calls\": %" PRIu64 ",\n    \"warmup\": %" PRIu64
                  ",\n    \"keepalive\": %s,\n    \"insecure\": %s,\n",
                  o->num_calls, o->warmup, o->keepalive ? "true" : "false",
                  o->insecure ? "true" : "false");
    tg_json_key(out, "    ", "cacert");
    tg_bench_json_string(out, o->cacert);
    tg_buf_puts(out, ",\n");
    tg_json_key(out, "    ", "sni");
    tg_bench_json_string(out, o->sni);
    tg_buf_puts(out, ",\n");
    tg_json_key(out, "    ", "tls_version");
    tg_bench_json_string(out, o->tls_version == 0x0303   ? "1.2"
                              : o->tls_version == 0x0304 ? "1.3"
                                                         : "any");
    tg_buf_puts(out, ",\n");
    tg_json_key(out, "    ", "groups");
    tg_bench_json_string(out, o->groups);
    tg_buf_puts(out, ",\n");
    tg_json_key(out, "    ", "ciphers");
    tg_bench_json_string(out, o->ciphers);
    tg_buf_puts(out, ",\n");
    tg_json_key(out, "    ", "ciphersuites");
    tg_bench_json_string(out, o->ciphersuites);
    tg_buf_puts(out, ",\n");
    tg_json_key(out, "    ", "alpn");
    tg_bench_json_string(out, o->alpn);
    tg_buf_printf(out, ",\n    \"payload\": %" PRIu64 ",\n    \"timeout_s\": ", o->payload);
    tg_json_num(out, (double)o->timeout_ns / 1e9);
    if (o->pid > 0)
        tg_buf_printf(out, ",\n    \"pid\": %ld", o->pid);
    else
        tg_buf_puts(out, ",\n    \"pid\": null");
    static const char *const close_names[] = {"auto", "server", "client"};
    tg_buf_printf(out,
                  ",\n    \"source_ips\": %u,\n    \"close\": \"%s\",\n    \"ssl_reuse\": %s,\n"
                  "    \"lean_libctx\": %s,\n    \"reuse_keyshare\": %s\n  },\n",
                  o->source_ips, close_names[o->close_mode % 3], o->ssl_reuse ? "true" : "false",
                  o->lean_libctx ? "true" : "false", o->reuse_keyshare ? "true" : "false");

    uint64_t nerr = tg_bench_errors_total(r);
    tg_buf_printf(out,
                  "  \"calls\": %" PRIu64 ",\n  \"ok\": %" PRIu64 ",\n  \"warmup\": %" PRIu64
                  ",\n  \"interrupted\": %s,\n  \"elapsed_s\": ",
                  r->calls, r->ok, r->warmup_done, r->interrupted ? "true" : "false");
    tg_json_num(out, r->elapsed_s);
    tg_buf_puts(out, ",\n  \"qps\": ");
    tg_json_num(out, tg_div((double)r->calls, r->elapsed_s));
    tg_buf_printf(out, ",\n  \"errors\": {\n    \"total\": %" PRIu64, nerr);
    for (int k = 0; k < TG_BENCH_ERR_COUNT; k++)
        tg_buf_printf(out, ",\n    \"%s\": %" PRIu64, tg_bench_errkind_name(k), r->errors[k]);
    tg_buf_puts(out, "\n  },\n  \"first_errors\": {");
    bool first = true;
    for (int k = 0; k < TG_BENCH_ERR_COUNT; k++) {
        if (r->errors[k] == 0 || r->first_error[k][0] == '\0')
            continue;
        tg_buf_printf(out, "%s\n    \"%s\": ", first ? "" : ",", tg_bench_errkind_name(k));
        tg_bench_json_string(out, r->first_error[k]);
        first = false;
    }
    tg_buf_puts(out, first ? "},\n" : "\n  },\n");
    tg_buf_printf(
        out,
        "  \"closes\": {\n    \"server_first\": %" PRIu64 ",\n    \"client_after_wait\": %" PRIu64
        ",\n    \"client_first\": %" PRIu64 ",\n    \"client_took_over\": %s\n  },\n",
        r->close_server, r->server_no_close, r->close_client, r->close_switched ? "true" : "false");

    const struct tg_bench_latsum *l = &r->lat;
    const struct {
        const char *k;
        double v;
    } lat[] = {{"avg", l->avg_ms},    {"p50", l->p50_ms}, {"p90", l->p90_ms}, {"p99", l->p99_ms},
               {"p99.9", l->p999_ms}, {"min", l->min_ms}, {"max", l->max_ms}};
    tg_buf_printf(out, "  \"latency_ms\": {\n    \"count\": %" PRIu64, l->count);
    for (size_t i = 0; i < TG_ARRAY_LEN(lat); i++) {
        tg_buf_printf(out, ",\n    \"%s\": ", lat[i].k);
        tg_json_num(out, lat[i].v);
    }
    tg_buf_printf(out, "\n  },\n  \"latency_truncated\": %s,\n",
                  r->lat_truncated ? "true" : "false");
    tg_buf_printf(out,
                  "  \"handshakes\": {\n    \"full\": %" PRIu64 ",\n    \"resumed\": %" PRIu64
                  ",\n    \"per_second\": ",
                  r->handshakes_full, r->handshakes_resumed);
    tg_json_num(out, tg_div((double)r->handshakes_full, r->elapsed_s));
    tg_buf_printf(out, "\n  },\n  \"connections\": %" PRIu64 ",\n  \"tls\": [", r->connections);
    for (size_t i = 0; i < r->ntls; i++) {
        tg_buf_printf(out, "%s\n    {\"version\": ", i ? "," : "");
        tg_bench_json_string(out, r->tls[i].version);
        tg_buf_puts(out, ", \"cipher\": ");
        tg_bench_json_string(out, r->tls[i].cipher);
        tg_buf_puts(out, ", \"group\": ");
        tg_bench_json_string(out, r->tls[i].group);
        tg_buf_printf(out, ", \"count\": %" PRIu64 "}", r->tls[i].count);
    }
    tg_buf_puts(out, r->ntls ? "\n  ],\n" : "],\n");
    tg_buf_puts(out, "  \"client_cpu\": {\n    \"seconds\": ");
    tg_json_num(out, r->client_cpu_s);
    tg_buf_puts(out, ",\n    \"us_per_call\": ");
    tg_json_num(out, 1e6 * tg_div(r->client_cpu_s, (double)r->calls));
    tg_buf_puts(out, ",\n    \"us_per_handshake\": ");
    tg_json_num(out, 1e6 * tg_div(r->client_cpu_s, (double)r->handshakes_full));
    tg_buf_puts(out, "\n  },\n  \"proxy_cpu\": ");
    if (o->pid > 0 && r->have_proxy_cpu) {
        tg_buf_printf(out, "{\n    \"pid\": %ld,\n    \"seconds\": ", o->pid);
        tg_json_num(out, r->proxy_cpu_s);
        tg_buf_puts(out, ",\n    \"handshakes_per_cpu_second\": ");
        tg_json_num(out, tg_div((double)r->handshakes_full, r->proxy_cpu_s));
        tg_buf_puts(out, "\n  },\n");
    } else {
        tg_buf_puts(out, "null,\n");
    }
    char line[256];
    tg_bench_format_done(line, sizeof(line), r->calls, r->warmup_done, l->avg_ms,
                         tg_div((double)r->calls, r->elapsed_s));
    tg_json_key(out, "  ", "summary");
    tg_bench_json_string(out, line);
    tg_buf_puts(out, "\n}\n");
}
