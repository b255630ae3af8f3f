/*
 * tg_stats: counters, gauges and histograms, exported in Prometheus text format.
 *
 * Threading: every counter has exactly one writer thread (the worker that owns
 * it) and any number of readers (the admin thread). Writers use tg_ctr_add(),
 * a relaxed load + store (no lock, no read-modify-write instruction); readers
 * use tg_ctr_get(). Gauges that several threads change (active connections)
 * live per worker as a signed up/down pair and are summed by the reader.
 *
 * The core metrics are declared once in TG_CORE_STATS below; the same list
 * yields the enum, the storage and the exported names, so a metric is
 * declared in exactly one place.
 */
#ifndef TG_STATS_H
#define TG_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tg_buf.h"

typedef _Atomic uint64_t tg_ctr;

static inline void tg_ctr_add(tg_ctr *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}
static inline void tg_ctr_inc(tg_ctr *c)
{
    tg_ctr_add(c, 1);
}
static inline void tg_ctr_sub(tg_ctr *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - n,
                          memory_order_relaxed);
}
static inline uint64_t tg_ctr_get(const tg_ctr *c)
{
    return atomic_load_explicit((tg_ctr *)c, memory_order_relaxed);
}

/*
 * Histogram with fixed upper bounds. Values are recorded in the unit of the
 * bounds (microseconds for latencies, plain counts for batch sizes); the
 * exported bucket labels are scaled by `scale` (1e-6 turns us into seconds).
 */
#define TG_HIST_MAX_BUCKETS 24
struct tg_hist_spec {
    const char *name; /* metric name without _bucket/_sum/_count */
    const char *help;
    double scale;
    size_t nbounds;
    uint64_t bounds[TG_HIST_MAX_BUCKETS]; /* ascending; +Inf is implicit */
};

struct tg_hist {
    tg_ctr buckets[TG_HIST_MAX_BUCKETS + 1]; /* last one is +Inf */
    tg_ctr sum;
    tg_ctr count;
};

void tg_hist_record(struct tg_hist *h, const struct tg_hist_spec *spec, uint64_t value);
/* Sum src into dst (reader side, for aggregation across workers). */
void tg_hist_merge(struct tg_hist *dst, const struct tg_hist *src);
/* Quantile estimate (0..1) from the buckets, in the recorded unit. */
uint64_t tg_hist_quantile(const struct tg_hist *h, const struct tg_hist_spec *spec, double q);

/* Latency buckets in microseconds: 50us .. 10s. */
extern const struct tg_hist_spec tg_hist_latency_us;

/* X(id, type, name, labels, help). Rows with the same name must be adjacent. */
#define TG_CORE_STATS(X)                                                                           \
    X(CONN_ACCEPTED, counter, "tlsgate_connections_accepted_total", "",                            \
      "Client connections accepted")                                                               \
    X(CONN_REJECTED_LIMIT, counter, "tlsgate_connections_rejected_total",                          \
      "reason=\"max_connections\"", "Client connections refused at accept")                        \
    X(CONN_REJECTED_PER_SOURCE, counter, "tlsgate_connections_rejected_total",                     \
      "reason=\"max_connections_per_source\"", "")                                                 \
    X(CONN_OPENED, gauge_up, "tlsgate_connections_active", "", "Client connections open now")      \
    X(CONN_CLOSED_ACTIVE, gauge_down, "tlsgate_connections_active", "", "")                        \
    X(CLOSE_NORMAL, counter, "tlsgate_connections_closed_total", "reason=\"normal\"",              \
      "Client connections closed, by reason")                                                      \
    X(CLOSE_CLIENT_ERROR, counter, "tlsgate_connections_closed_total", "reason=\"client_error\"",  \
      "")                                                                                          \
    X(CLOSE_CLIENT_TRUNCATED, counter, "tlsgate_connections_closed_total",                         \
      "reason=\"client_truncated\"", "")                                                           \
    X(CLOSE_HANDSHAKE_FAILED, counter, "tlsgate_connections_closed_total",                         \
      "reason=\"handshake_failed\"", "")                                                           \
    X(CLOSE_HANDSHAKE_TIMEOUT, counter, "tlsgate_connections_closed_total",                        \
      "reason=\"handshake_timeout\"", "")                                                          \
    X(CLOSE_FIRST_BYTE_TIMEOUT, counter, "tlsgate_connections_closed_total",                       \
      "reason=\"first_byte_timeout\"", "")                                                         \
    X(CLOSE_EVICTED, counter, "tlsgate_connections_closed_total", "reason=\"evicted\"", "")        \
    X(CLOSE_PER_SOURCE, counter, "tlsgate_connections_closed_total",                               \
      "reason=\"max_connections_per_source\"", "")                                                 \
    X(CLOSE_PROXY_PROTOCOL, counter, "tlsgate_connections_closed_total",                           \
      "reason=\"proxy_protocol\"", "")                                                             \
    X(CLOSE_UPSTREAM_CONNECT, counter, "tlsgate_connections_closed_total",                         \
      "reason=\"upstream_connect_failed\"", "")                                                    \
    X(CLOSE_UPSTREAM_ERROR, counter, "tlsgate_connections_closed_total",                           \
      "reason=\"upstream_error\"", "")                                                             \
    X(CLOSE_NO_HEALTHY, counter, "tlsgate_connections_closed_total",                               \
      "reason=\"no_healthy_upstream\"", "")                                                        \
    X(CLOSE_IDLE_TIMEOUT, counter, "tlsgate_connections_closed_total", "reason=\"idle_timeout\"",  \
      "")                                                                                          \
    X(CLOSE_SHUTDOWN, counter, "tlsgate_connections_closed_total", "reason=\"shutdown\"", "")      \
    X(CLOSE_INTERNAL, counter, "tlsgate_connections_closed_total", "reason=\"internal\"", "")      \
    X(HS_OK, counter, "tlsgate_handshakes_total", "result=\"ok\"", "TLS handshakes, by result")    \
    X(HS_FAIL_PROTOCOL, counter, "tlsgate_handshakes_total", "result=\"protocol_error\"", "")      \
    X(HS_FAIL_TIMEOUT, counter, "tlsgate_handshakes_total", "result=\"timeout\"", "")              \
    X(HS_FAIL_CLOSED, counter, "tlsgate_handshakes_total", "result=\"client_closed\"", "")         \
    X(HS_FAIL_KEYOP, counter, "tlsgate_handshakes_total", "result=\"key_operation_failed\"", "")   \
    X(HS_FAIL_CCERT, counter, "tlsgate_handshakes_total", "result=\"client_certificate\"", "")     \
    X(HS_RESUMED, counter, "tlsgate_handshakes_resumed_total", "",                                 \
      "TLS handshakes that resumed a session")                                                     \
    X(HS_TLS12, counter, "tlsgate_handshakes_by_version_total", "version=\"TLSv1.2\"",             \
      "Successful TLS handshakes, by protocol version")                                            \
    X(HS_TLS13, counter, "tlsgate_handshakes_by_version_total", "version=\"TLSv1.3\"", "")         \
    X(BYTES_FROM_CLIENT, counter, "tlsgate_bytes_total", "direction=\"client_to_upstream\"",       \
      "Plaintext bytes forwarded, by direction")                                                   \
    X(BYTES_TO_CLIENT, counter, "tlsgate_bytes_total", "direction=\"upstream_to_client\"", "")     \
    X(UPSTREAM_CONNECT_OK, counter, "tlsgate_upstream_connects_total", "result=\"ok\"",            \
      "Upstream connection attempts, by result")                                                   \
    X(UPSTREAM_CONNECT_REFUSED, counter, "tlsgate_upstream_connects_total", "result=\"refused\"",  \
      "")                                                                                          \
    X(UPSTREAM_CONNECT_TIMEOUT, counter, "tlsgate_upstream_connects_total", "result=\"timeout\"",  \
      "")                                                                                          \
    X(UPSTREAM_CONNECT_ERROR, counter, "tlsgate_upstream_connects_total", "result=\"error\"", "")  \
    X(UPSTREAM_RETRY, counter, "tlsgate_upstream_connect_retries_total", "",                       \
      "Upstream connect attempts made after a failed one, on another endpoint")                    \
    X(UPSTREAM_RESET, counter, "tlsgate_upstream_resets_total", "",                                \
      "Upstream connections that failed after being established")                                  \
    X(KEYOP_WAITS, counter, "tlsgate_handshake_keyop_waits_total", "",                             \
      "Times a handshake paused waiting for an asynchronous key operation")                        \
    X(PP_HEADER_V1, counter, "tlsgate_proxy_protocol_headers_total", "version=\"1\"",              \
      "PROXY protocol headers accepted, by version")                                               \
    X(PP_HEADER_V2, counter, "tlsgate_proxy_protocol_headers_total", "version=\"2\"", "")          \
    X(PP_ERR_NOT_PROXY, counter, "tlsgate_proxy_protocol_errors_total", "reason=\"not_proxy\"",    \
      "Connections closed for a missing, invalid or late PROXY protocol header, by reason")        \
    X(PP_ERR_MALFORMED, counter, "tlsgate_proxy_protocol_errors_total", "reason=\"malformed\"",    \
      "")                                                                                          \
    X(PP_ERR_TRUNCATED, counter, "tlsgate_proxy_protocol_errors_total", "reason=\"truncated\"",    \
      "")                                                                                          \
    X(PP_ERR_TIMEOUT, counter, "tlsgate_proxy_protocol_errors_total", "reason=\"timeout\"", "")    \
    X(ACCEPT_PAUSED, counter, "tlsgate_accept_pauses_total", "",                                   \
      "Times a worker stopped accepting for 100 ms: out of file descriptors or memory")            \
    X(MEMORY_TRIMS, counter, "tlsgate_memory_trims_total", "",                                     \
      "Times a worker gave the heap's free memory back to the system after connections closed")    \
    TG_CCERT_STATS(X)

/* Client certificates (tls.client_certificate): one per full handshake on
 * such a listener, by outcome. verified and absent (mode optional, none
 * sent) went on; the others failed the handshake (HS_FAIL_CCERT). */
#define TG_CCERT_STATS(X)                                                                          \
    X(CCERT_VERIFIED, counter, "tlsgate_client_certificates_total", "result=\"verified\"",         \
      "Client certificates of full handshakes on listeners that ask for one, by outcome")          \
    X(CCERT_ABSENT, counter, "tlsgate_client_certificates_total", "result=\"absent\"", "")         \
    X(CCERT_MISSING, counter, "tlsgate_client_certificates_total", "result=\"missing\"", "")       \
    X(CCERT_UNKNOWN_CA, counter, "tlsgate_client_certificates_total", "result=\"unknown_ca\"", "") \
    X(CCERT_EXPIRED, counter, "tlsgate_client_certificates_total", "result=\"expired\"", "")       \
    X(CCERT_NOT_YET_VALID, counter, "tlsgate_client_certificates_total",                           \
      "result=\"not_yet_valid\"", "")                                                              \
    X(CCERT_REVOKED, counter, "tlsgate_client_certificates_total", "result=\"revoked\"", "")       \
    X(CCERT_CRL, counter, "tlsgate_client_certificates_total", "result=\"crl_error\"", "")         \
    X(CCERT_DEPTH, counter, "tlsgate_client_certificates_total", "result=\"chain_too_long\"", "")  \
    X(CCERT_PURPOSE, counter, "tlsgate_client_certificates_total", "result=\"bad_purpose\"", "")   \
    X(CCERT_INVALID, counter, "tlsgate_client_certificates_total", "result=\"invalid\"", "")

enum tg_core_stat {
#define TG_STAT_ENUM(id, type, name, labels, help) TG_STAT_##id,
    TG_CORE_STATS(TG_STAT_ENUM)
#undef TG_STAT_ENUM
        TG_STAT_COUNT
};

/* One per worker; written only by that worker. */
struct tg_core_stats {
    tg_ctr c[TG_STAT_COUNT];
    struct tg_hist handshake_us; /* handshake latency, accept to finished */
};

static inline void tg_stat_inc(struct tg_core_stats *s, enum tg_core_stat id)
{
    tg_ctr_inc(&s->c[id]);
}
static inline void tg_stat_add(struct tg_core_stats *s, enum tg_core_stat id, uint64_t n)
{
    tg_ctr_add(&s->c[id], n);
}

/* Sum of a core stat across n worker blocks (gauges: up minus down). */
uint64_t tg_core_stats_sum(struct tg_core_stats *const *workers, size_t n, enum tg_core_stat id);

/* Append the core metrics of n workers, aggregated, in Prometheus text format. */
void tg_core_stats_render(struct tg_buf *out, struct tg_core_stats *const *workers, size_t n);

/* Helpers for other modules' Prometheus output. */
void tg_prom_header(struct tg_buf *out, const char *name, const char *type, const char *help);
void tg_prom_value(struct tg_buf *out, const char *name, const char *labels, uint64_t value);
void tg_prom_hist(struct tg_buf *out, const struct tg_hist_spec *spec, const char *labels,
                  const struct tg_hist *h, int with_header);

#endif
