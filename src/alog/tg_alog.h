/*
 * tg_alog: the access log. One line per client connection, written when it
 * closes (also for connections that never finished a handshake, and for
 * connections refused at accept), as key=value text or JSON lines, to
 * stdout or a file.
 *
 * Data path. A worker fills a compact binary record (struct tg_alog_rec plus
 * a few copied strings) and hands it to its own single-producer
 * single-consumer ring with tg_alog_emit(): no lock, no system call on the
 * common path, no formatting. One writer thread drains every ring, formats
 * the lines (tg_alog_format) into one output buffer and write()s it, about
 * every TG_ALOG_TICK_MS. A full ring drops the line and counts it: a slow or
 * blocked destination never stalls a worker. The writer takes no lock that a
 * worker waits for.
 *
 * Lifecycle (main thread): tg_alog_open (opens the destination; an error
 * names the config position) -> tg_alog_start (the writer thread) -> workers
 * emit into tg_alog_ring_of(a, i) -> the workers end -> tg_alog_stop (drains
 * every ring, flushes; bounded by TG_ALOG_STOP_FLUSH_MS when the destination
 * blocks) -> tg_alog_free. tg_alog_reopen (SIGUSR1) may be called from the
 * main thread at any time between start and stop.
 *
 * Record lifetime: a record outlives its connection, its SSL object and, with
 * a configuration reload, its configuration: every string it needs is copied
 * into the ring, except the two pointers documented as static.
 */
#ifndef TG_ALOG_H
#define TG_ALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/tg_config.h"
#include "core/tg_buf.h"
#include "core/tg_err.h"
#include "core/tg_stats.h"

/* A duration or time not known (handshake not finished, no upstream). */
#define TG_ALOG_NONE UINT64_MAX
/* How often the writer drains the rings while lines keep coming. */
#define TG_ALOG_TICK_MS 100
/* At stop, how long the writer keeps trying a destination that blocks. */
#define TG_ALOG_STOP_FLUSH_MS 5000
/* Longest string kept in a record (longer ones are cut). */
#define TG_ALOG_STR_MAX 255
/* Longest formatted line, '\n' included (every string escaped at worst). */
#define TG_ALOG_LINE_MAX 16384

/*
 * Termination codes: why a connection ended, two characters, one per line.
 * X(id, code, counter, detail, meaning): `counter` is the tg_core_stat the
 * connection's end was counted in (a TG_STAT_CLOSE_* reason, or
 * CONN_REJECTED_LIMIT), so that the lines of each code add up to exactly one
 * counter and no connection is in two; `detail` (ANY = every detail) splits
 * a reason by the finer counter the connection also bumped (handshake
 * result, upstream connect result). The first matching row wins.
 */
#define TG_ALOG_ANY (-1)
#define TG_ALOG_TERMS(X)                                                                           \
    X(NORMAL, "--", CLOSE_NORMAL, TG_ALOG_ANY, "both directions finished")                         \
    X(CLIENT_ERROR, "CD", CLOSE_CLIENT_ERROR, TG_ALOG_ANY,                                         \
      "client disconnected abnormally while proxying (reset, TLS error)")                          \
    X(CLIENT_TRUNCATED, "CT", CLOSE_CLIENT_TRUNCATED, TG_ALOG_ANY,                                 \
      "client ended its stream without close_notify (tls.require_close_notify)")                   \
    X(HS_CLOSED, "HC", CLOSE_HANDSHAKE_FAILED, TG_STAT_HS_FAIL_CLOSED,                             \
      "client closed during the handshake")                                                        \
    X(HS_KEYOP, "KF", CLOSE_HANDSHAKE_FAILED, TG_STAT_HS_FAIL_KEYOP,                               \
      "handshake failed: key operation failed")                                                    \
    X(HS_FAILED, "HF", CLOSE_HANDSHAKE_FAILED, TG_ALOG_ANY,                                        \
      "handshake failed: protocol error or alert")                                                 \
    X(HS_TIMEOUT, "HT", CLOSE_HANDSHAKE_TIMEOUT, TG_ALOG_ANY, "handshake timeout")                 \
    X(FIRST_BYTE_TIMEOUT, "FT", CLOSE_FIRST_BYTE_TIMEOUT, TG_ALOG_ANY,                             \
      "no byte of a ClientHello within limits.first_byte_timeout")                                 \
    X(EVICTED, "EV", CLOSE_EVICTED, TG_ALOG_ANY,                                                   \
      "closed in its handshake to make room at limits.max_connections")                            \
    X(PER_SOURCE, "SL", CLOSE_PER_SOURCE, TG_ALOG_ANY,                                             \
      "refused after its PROXY header: limits.max_connections_per_source")                         \
    X(PP_TIMEOUT, "PT", CLOSE_PROXY_PROTOCOL, TG_STAT_PP_ERR_TIMEOUT,                              \
      "no complete PROXY header within proxy_protocol_timeout")                                    \
    X(PP_REFUSED, "PH", CLOSE_PROXY_PROTOCOL, TG_ALOG_ANY,                                         \
      "PROXY header refused (not PROXY, malformed, truncated)")                                    \
    X(UP_TIMEOUT, "UT", CLOSE_UPSTREAM_CONNECT, TG_STAT_UPSTREAM_CONNECT_TIMEOUT,                  \
      "upstream connect timeout (the last attempt's)")                                             \
    X(UP_FAILED, "UF", CLOSE_UPSTREAM_CONNECT, TG_ALOG_ANY,                                        \
      "upstream connect failed (refused, error) on the last attempt")                              \
    X(NO_HEALTHY, "NH", CLOSE_NO_HEALTHY, TG_ALOG_ANY,                                             \
      "no upstream endpoint to try (none resolved, or all ejected or unhealthy)")                  \
    X(UP_RESET, "UR", CLOSE_UPSTREAM_ERROR, TG_ALOG_ANY,                                           \
      "upstream reset or failed after connecting")                                                 \
    X(IDLE, "IT", CLOSE_IDLE_TIMEOUT, TG_ALOG_ANY, "idle timeout")                                 \
    X(SHUTDOWN, "SD", CLOSE_SHUTDOWN, TG_ALOG_ANY, "closed by the shutdown (drain timeout)")       \
    X(INTERNAL, "IE", CLOSE_INTERNAL, TG_ALOG_ANY, "internal error (out of memory)")               \
    X(LIMIT, "LR", CONN_REJECTED_LIMIT, TG_ALOG_ANY, "refused at accept: limits.max_connections")  \
    X(SOURCE_LIMIT, "LS", CONN_REJECTED_PER_SOURCE, TG_ALOG_ANY,                                   \
      "refused at accept: limits.max_connections_per_source")

enum tg_alog_term {
#define TG_ALOG_TERM_ENUM(id, code, counter, detail, meaning) TG_ALOG_TERM_##id,
    TG_ALOG_TERMS(TG_ALOG_TERM_ENUM)
#undef TG_ALOG_TERM_ENUM
        TG_ALOG_TERM_COUNT
};

/* The two-character code ("--", "UF"); "??" out of range. */
const char *tg_alog_term_code(enum tg_alog_term t);
/* The code for a connection counted in `counter` (enum tg_core_stat) with the
 * finer result `detail` (enum tg_core_stat, or TG_ALOG_ANY when none).
 * TG_ALOG_TERM_INTERNAL for a counter that is not an end reason (a bug). */
enum tg_alog_term tg_alog_term_of(int counter, int detail);

/* An IPv4 or IPv6 address and port as the log shows it. */
struct tg_alog_addr {
    uint16_t family; /* 0 (none), AF_INET or AF_INET6 */
    uint16_t port;   /* host order */
    uint8_t ip[16];  /* network order; 4 bytes for AF_INET */
};
/* From a socket address; family 0 for anything but AF_INET / AF_INET6. */
void tg_alog_addr_set(struct tg_alog_addr *a, const struct sockaddr *sa, socklen_t len);

/* The fixed part of a record. Durations in nanoseconds. */
struct tg_alog_rec {
    uint64_t time_ns;             /* CLOCK_REALTIME when the connection closed */
    uint64_t duration_ns;         /* accept to close */
    uint64_t handshake_ns;        /* accept to handshake finished; TG_ALOG_NONE: not finished */
    uint64_t connect_ns;          /* first upstream connect() to connected or the last attempt
                                   * failed (every attempt); TG_ALOG_NONE: none */
    uint64_t bytes_in;            /* plaintext bytes forwarded client -> upstream */
    uint64_t bytes_out;           /* plaintext bytes forwarded upstream -> client */
    const char *cipher;           /* static (libssl's cipher table), or NULL */
    const char *provider;         /* static (a key provider's ops name), or NULL */
    struct tg_alog_addr client;   /* the PROXY header's source, else the TCP peer */
    struct tg_alog_addr peer;     /* the TCP peer (a load balancer on a PROXY listener) */
    struct tg_alog_addr upstream; /* the last endpoint tried; family 0: none */
    uint16_t tls_version;         /* TLS1_2_VERSION, TLS1_3_VERSION, 0: no handshake */
    uint16_t key_fallbacks;       /* key operations finished in software after a failure */
    int16_t cert_index;           /* the listener's certificates[i] that served; -1: none */
    uint8_t term;                 /* enum tg_alog_term */
    uint8_t attempts;             /* upstream connect attempts (endpoints tried) */
    bool resumed;                 /* session resumption (no private-key operation) */
    char client_sha256[65];       /* the client certificate's SHA-256, hex; "": none */
};

/* The copied strings of a record. p[i] NULL: absent (shown as - / null). */
enum tg_alog_str {
    TG_ALOG_S_LISTENER,
    TG_ALOG_S_SNI,
    TG_ALOG_S_ALPN,
    TG_ALOG_S_GROUP,
    TG_ALOG_S_CERT,           /* the certificate's first name */
    TG_ALOG_S_UPSTREAM_HOST,  /* the endpoint's entry in upstream (a host name or an address) */
    TG_ALOG_S_CLIENT_SUBJECT, /* the verified client certificate's subject DN (RFC 2253) */
    TG_ALOG_S_CLIENT_SAN,     /* its subjectAltName entries (TYPE:VALUE, comma-separated) */
    TG_ALOG_S_COUNT           /* at most 8 (a bit each in the ring's record) */
};
struct tg_alog_strs {
    const char *p[TG_ALOG_S_COUNT];
    size_t len[TG_ALOG_S_COUNT]; /* bytes (any byte but NUL may occur); cut at TG_ALOG_STR_MAX */
};

/* ---- producer side: a worker thread ---- */

struct tg_alog_ring;
/* Copy one record into the ring (worker thread, the ring's only producer).
 * Never blocks: false when the ring is full (the line is dropped and
 * counted). May write the writer's eventfd (non-blocking) when the ring
 * needs draining. */
bool tg_alog_emit(struct tg_alog_ring *r, const struct tg_alog_rec *rec,
                  const struct tg_alog_strs *s);

/* ---- formatting: the writer thread (pure functions, any thread) ---- */

/* The date part of the last second formatted (a cache, one per thread). */
struct tg_alog_clock {
    int64_t sec; /* -1: empty */
    char ymdhms[24];
};
void tg_alog_clock_init(struct tg_alog_clock *c);
/* One line, '\n' included, into out (TG_ALOG_LINE_MAX bytes); returns its
 * length. Text: key=value pairs separated by one space; a value that is
 * empty, "-", or holds anything but printable ASCII other than '"', '\\', '='
 * is double-quoted with \" \\ and \xHH escapes; absent values are "-". JSON:
 * one object, ASCII only: control characters, DEL and every byte >= 0x80 are
 * \u00XX (one per byte); absent values are null. */
size_t tg_alog_format(enum tg_conf_alog_format fmt, const struct tg_alog_rec *rec,
                      const struct tg_alog_strs *s, struct tg_alog_clock *clk, char *out);

/* ---- the writer (main thread, unless said otherwise) ---- */

struct tg_alog;
/* Open the destination of conf (not OFF) and make n_rings rings of
 * conf->buffer bytes each (rounded up to a power of two). On failure writes
 * "FILE:LINE:COL: access_log.path: cannot open ..." into err. */
int tg_alog_open(const struct tg_conf_access_log *conf, int n_rings, struct tg_alog **out,
                 char *err, size_t errlen) TG_MUST_CHECK;
/* Start the writer thread. */
int tg_alog_start(struct tg_alog *a) TG_MUST_CHECK;
/* Worker i's ring (0 <= i < n_rings). */
struct tg_alog_ring *tg_alog_ring_of(struct tg_alog *a, int i);
/* Ask the writer to reopen its file (logrotate's postrotate: SIGUSR1). Lines
 * not yet written go to the new file. No effect for stdout. Any thread. */
void tg_alog_reopen(struct tg_alog *a);
/* After every producer has stopped: the writer drains every ring, writes
 * everything out and ends; the thread is joined. Bounded: a destination
 * that accepts nothing for TG_ALOG_STOP_FLUSH_MS is given up (the lines are
 * counted as dropped). Idempotent; NULL is fine. */
void tg_alog_stop(struct tg_alog *a);
/* Stops if needed, closes the file, frees. NULL is fine. */
void tg_alog_free(struct tg_alog *a);
/* Prometheus lines (any thread; a may be NULL: every counter 0). */
void tg_alog_render_stats(struct tg_buf *out, const struct tg_alog *a);

/* Counters, for tests and the render above. */
struct tg_alog_counts {
    uint64_t queued;       /* records accepted by the rings */
    uint64_t dropped_full; /* records refused by a full ring */
    uint64_t written;      /* lines written to the destination */
    uint64_t lost;         /* lines given up: write error, or blocked at stop */
    uint64_t write_errors; /* failed write() calls */
    uint64_t reopens, reopen_errors;
};
void tg_alog_counts(const struct tg_alog *a, struct tg_alog_counts *c);

#endif
