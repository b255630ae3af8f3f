/*
 * tg_bench_internal: the pieces of `tlsgate bench` that are pure logic, shared
 * by the load generator (tg_bench_client.c), the upstream server
 * (tg_bench_serve.c), the report (tg_bench_report.c) and the unit tests.
 *
 * Nothing here touches the network or global state, so every function can be
 * tested on fixed inputs. Strings in struct tg_bench_opts point into argv (the
 * caller keeps argv alive for the whole run); nothing in this header allocates
 * except struct tg_bench_lat (freed by tg_bench_lat_free) and the tg_buf
 * outputs (freed by the caller with tg_buf_free).
 *
 * Threading: none of these functions keeps state between calls; use each
 * object from one thread.
 */
#ifndef TG_BENCH_INTERNAL_H
#define TG_BENCH_INTERNAL_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/tg_buf.h"
#include "core/tg_err.h"

#define TG_BENCH_ERRLEN 256

/* ------------------------------------------------------------------------- */
/* Options                                                                   */

enum tg_bench_mode {
    TG_BENCH_MODE_LOAD,  /* tlsgate bench [options] TARGET */
    TG_BENCH_MODE_SERVE, /* tlsgate bench --serve ADDR */
    TG_BENCH_MODE_HELP,  /* -h / --help: print usage, exit 0 */
};

/* A numeric socket address and its canonical text ("127.0.0.1:443", "[::1]:443"). */
struct tg_bench_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[64];
};

/* TARGET: https://HOST[:PORT][/path] or HOST:PORT. HOST is an IPv4 literal,
 * a bracketed IPv6 literal or "localhost" (127.0.0.1); no DNS. */
struct tg_bench_target {
    struct tg_bench_addr addr;
    char host[64];      /* as written, without brackets ("localhost", "::1") */
    char authority[80]; /* Host header value: "localhost:8443", "[::1]:8443" */
    char path[1024];    /* "" when TARGET has no path */
    bool host_is_ip;    /* false only for "localhost" */
};

#define TG_BENCH_RESPONSE_DEFAULT UINT64_MAX /* --response-size not given */

/* Who closes a connection after a "Connection: close" response (--close). */
enum tg_bench_close {
    TG_BENCH_CLOSE_AUTO,   /* wait for the server; if it never closes first, the client does */
    TG_BENCH_CLOSE_SERVER, /* always wait for the server (up to 1 s, then reset) */
    TG_BENCH_CLOSE_CLIENT, /* the client closes (FIN) right after the response */
};

struct tg_bench_opts {
    enum tg_bench_mode mode;

    /* load generator */
    uint32_t connections;     /* -c, >= 1, default 8 */
    double qps;               /* -qps, total target rate; 0 = as fast as possible */
    uint64_t duration_ns;     /* -t; 0 = until SIGINT/SIGTERM; ignored when num_calls > 0 */
    uint64_t num_calls;       /* -n; 0 = run for duration_ns */
    uint64_t warmup;          /* --warmup calls before the measured interval */
    bool keepalive;           /* --keepalive, default false: new TCP+TLS per call */
    bool insecure;            /* -k: no certificate verification */
    bool quiet;               /* --quiet: no per-second progress */
    bool ssl_reuse;           /* --ssl-reuse: SSL_clear() between calls (default true) */
    bool lean_libctx;         /* --lean-libctx: cheap certificate parsing (default true) */
    bool reuse_keyshare;      /* --reuse-keyshare: X25519 key pair for 1,024 calls (default true) */
    const char *cacert;       /* --cacert FILE */
    const char *sni;          /* --sni NAME; NULL = host when it is a name */
    int tls_version;          /* --tls-version: 0 (negotiate), 0x0303 or 0x0304 */
    const char *groups;       /* --groups, default "X25519" */
    const char *ciphers;      /* --ciphers (TLS <= 1.2 cipher list) */
    const char *ciphersuites; /* --ciphersuites (TLS 1.3); NULL = AES-128-GCM first */
    const char *alpn;         /* --alpn "h2,http/1.1" */
    uint64_t payload;         /* --payload N: POST body size; 0 = GET */
    const char *path;         /* --path; only when TARGET has none */
    uint64_t timeout_ns;      /* --timeout per call, default 10s, > 0 */
    long pid;                 /* --pid: proxy process whose CPU is read; 0 = none */
    const char *json;         /* --json FILE */
    uint32_t source_ips;      /* --source-ips N: bind 127.0.0.1..N round robin; 0 = no bind */
    int close_mode;           /* --close: enum tg_bench_close */
    struct tg_bench_target target;

    /* upstream server */
    struct tg_bench_addr serve;
    uint64_t response_size; /* TG_BENCH_RESPONSE_DEFAULT = built-in greeting */
    uint64_t max_conns;     /* --max-conns, default 100000 */
};

/* Defaults for everything (mode LOAD, no target). */
void tg_bench_opts_init(struct tg_bench_opts *o);

/*
 * Parse argv (argv[0] is "bench" and is skipped). Every option may be spelled
 * with one or two dashes, and a value may follow as "--opt=value" or as the
 * next argument. Returns TG_OK, or TG_ECONFIG with one line in err.
 */
int tg_bench_parse_args(int argc, char **argv, struct tg_bench_opts *o, char *err,
                        size_t errlen) TG_MUST_CHECK;

/* The usage text (static). */
const char *tg_bench_usage(void);

/*
 * "5s", "250ms", "1.5s", "100us", "2m", "1h", "1m30s", "500ns"; a bare
 * number is seconds. Returns TG_OK or TG_ECONFIG (empty, garbage, overflow).
 */
int tg_bench_parse_duration(const char *s, uint64_t *out_ns) TG_MUST_CHECK;

/* Decimal unsigned integer in [min, max]: digits only, no sign or spaces. */
int tg_bench_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out) TG_MUST_CHECK;

/* TARGET as described above. err gets one line on failure. */
int tg_bench_parse_target(const char *s, struct tg_bench_target *t, char *err,
                          size_t errlen) TG_MUST_CHECK;

/* "HOST:PORT" / "[V6]:PORT" with a numeric host or "localhost"; port may be 0. */
int tg_bench_parse_addr(const char *s, struct tg_bench_addr *a, char *err,
                        size_t errlen) TG_MUST_CHECK;

/* Canonical text of a socket address into a->text. */
void tg_bench_addr_format(struct tg_bench_addr *a);

/* ALPN list "h2,http/1.1" to wire format; returns length or -1 if invalid. */
int tg_bench_alpn_wire(const char *list, unsigned char *out, size_t outlen);

/* ------------------------------------------------------------------------- */
/* HTTP/1.x message parser                                                   */

/*
 * A streaming HTTP/1.x parser that never buffers: it walks the bytes once,
 * keeps only what framing needs (status, Content-Length, chunked, Connection)
 * and skips everything else. One parser serves both directions: responses
 * for the load generator, requests for the upstream server.
 *
 * Feed any split of the bytes (one byte at a time works); call
 * tg_http_eof() when the peer closed. Line endings may be CRLF or bare LF;
 * a CR not followed by LF is an error. obs-fold, Content-Length garbage or
 * conflicts, Content-Length together with Transfer-Encoding, and transfer
 * codings other than "chunked" are errors. Interim 1xx responses (except 101)
 * are skipped.
 */
enum tg_http_kind { TG_HTTP_REQUEST, TG_HTTP_RESPONSE };

enum tg_http_rc {
    TG_HTTP_MORE = 0,  /* message not complete; all bytes consumed */
    TG_HTTP_DONE = 1,  /* message complete; *used says how many bytes it took */
    TG_HTTP_ERROR = -1 /* malformed; see parser.error */
};

enum tg_http_error {
    TG_HTTP_OK = 0,
    TG_HTTP_E_START_LINE,      /* bad status line / request line */
    TG_HTTP_E_HEADER,          /* bad header syntax */
    TG_HTTP_E_CONTENT_LENGTH,  /* garbage, overflow, or two different values */
    TG_HTTP_E_TRANSFER_CODING, /* unsupported coding, or together with Content-Length */
    TG_HTTP_E_TOO_LARGE,       /* head (start line + headers, or trailers) over the limit */
    TG_HTTP_E_CHUNK,           /* bad chunk framing */
    TG_HTTP_E_TRUNCATED,       /* EOF inside the message */
    TG_HTTP_E_EMPTY,           /* EOF before the first byte */
    TG_HTTP_E_STATUS,          /* response status the client never asked for (101) */
};

struct tg_http_parser {
    uint8_t kind;       /* enum tg_http_kind */
    uint8_t state;      /* private */
    uint8_t hdr;        /* private: which interesting header the current line is */
    uint8_t pos;        /* private: match position within a literal */
    uint8_t toklen;     /* private: token accumulator length */
    char tok[16];       /* private: lower-cased token of Connection / Transfer-Encoding */
    bool tok_overflow;  /* private */
    bool cl_seen_digit; /* private */
    bool no_body;       /* set by the caller for responses to HEAD */
    uint8_t http_minor; /* 0 or 1 */
    uint16_t status;    /* response status code */
    bool has_cl;
    bool chunked;
    bool te_other;       /* a transfer coding other than chunked was named */
    bool conn_close;     /* "Connection: close" */
    bool conn_keepalive; /* "Connection: keep-alive" */
    bool until_eof;      /* response body delimited by the connection close */
    enum tg_http_error error;
    uint32_t head_bytes; /* bytes of the current head (or trailers) */
    uint32_t head_limit; /* 0 = 64 KiB */
    uint64_t content_length;
    uint64_t cur_cl;     /* private: value of the Content-Length being parsed */
    uint64_t remaining;  /* body bytes left (Content-Length or current chunk) */
    uint64_t body_bytes; /* body bytes seen (payload, without chunk framing) */
};

/* Reset for a new message. head_limit 0 means 64 KiB. */
void tg_http_init(struct tg_http_parser *p, enum tg_http_kind kind, uint32_t head_limit);
/* Feed n bytes; on DONE *used is the number of bytes that belonged to this
 * message (the rest is the start of the next one); on MORE *used == n. */
int tg_http_feed(struct tg_http_parser *p, const char *data, size_t n, size_t *used);
/* The peer closed: DONE when the message is complete (body until EOF), else
 * ERROR with TG_HTTP_E_TRUNCATED or TG_HTTP_E_EMPTY. */
int tg_http_eof(struct tg_http_parser *p);
/* After DONE: may the connection carry another message? (HTTP/1.1 default
 * keep-alive, HTTP/1.0 only with "Connection: keep-alive", never for a body
 * delimited by EOF). */
bool tg_http_keep_alive(const struct tg_http_parser *p);
/* Has the parser seen any byte of the current message? */
bool tg_http_started(const struct tg_http_parser *p);
const char *tg_http_strerror(enum tg_http_error e);

/* ------------------------------------------------------------------------- */
/* Latencies and results                                                     */

/*
 * Every latency is kept exactly, as uint32 microseconds in a growable array
 * (4 bytes per call: 10,000 calls/s for 10 minutes is 24 MB), and the
 * percentiles are computed by sorting once at the end. Why not an HDR-style
 * histogram: the runs here are short (seconds to minutes), the array costs
 * one amortised store per call (the same order as a bucket increment) and no
 * calibration, and the report is exact, so two runs differ only by what was
 * measured. If memory runs out the array stops growing, `truncated` is set and
 * the report says so.
 */
struct tg_bench_lat {
    uint32_t *v;
    size_t n;
    size_t cap;
    uint64_t sum_us; /* of every recorded value, also past truncation */
    uint64_t count;  /* values offered, also past truncation */
    uint32_t max_us;
    bool truncated;
};

void tg_bench_lat_init(struct tg_bench_lat *l, size_t initial_cap);
/* Record one latency (clamped to UINT32_MAX us). */
void tg_bench_lat_add(struct tg_bench_lat *l, uint64_t us);
void tg_bench_lat_free(struct tg_bench_lat *l);

struct tg_bench_latsum {
    uint64_t count;
    double avg_ms;
    double p50_ms, p90_ms, p99_ms, p999_ms;
    double min_ms, max_ms;
};

/* Sorts l->v in place, then fills out (all zero when empty). */
void tg_bench_lat_summarize(struct tg_bench_lat *l, struct tg_bench_latsum *out);

/* Nearest-rank percentile of a sorted array: the value at rank
 * ceil(p/100 * n) (1-based, at least 1). n == 0 gives 0. */
uint32_t tg_bench_percentile(const uint32_t *sorted, size_t n, double p);

/* Error kinds, counted separately. X(id, name) */
#define TG_BENCH_ERRKINDS(X)                                                                       \
    X(CONNECT, "connect")                                                                          \
    X(TLS_HANDSHAKE, "tls_handshake")                                                              \
    X(TIMEOUT, "timeout")                                                                          \
    X(READ, "read")                                                                                \
    X(WRITE, "write")                                                                              \
    X(HTTP_STATUS, "http_status")                                                                  \
    X(BAD_RESPONSE, "bad_response")

enum tg_bench_errkind {
#define TG_BENCH_EK_ENUM(id, name) TG_BENCH_ERR_##id,
    TG_BENCH_ERRKINDS(TG_BENCH_EK_ENUM)
#undef TG_BENCH_EK_ENUM
        TG_BENCH_ERR_COUNT,
    TG_BENCH_OK = TG_BENCH_ERR_COUNT /* used as "no error" */
};

const char *tg_bench_errkind_name(enum tg_bench_errkind k);

#define TG_BENCH_MAX_TLS_COMBOS 4
struct tg_bench_tls_combo {
    const char *version; /* static strings from OpenSSL */
    const char *cipher;
    char group[32];
    int group_id; /* SSL_get_negotiated_group() */
    uint64_t count;
};

/* Everything the report prints; filled by the client, read by the report. */
struct tg_bench_result {
    uint64_t calls; /* measured calls, ok + errors */
    uint64_t ok;
    uint64_t errors[TG_BENCH_ERR_COUNT];
    char first_error[TG_BENCH_ERR_COUNT][160]; /* first message seen per kind */
    uint64_t warmup_done;                      /* warmup calls completed (any outcome) */
    uint64_t total_ok;                         /* ok calls including warmup (for the exit status) */
    uint64_t handshakes_full;                  /* measured ok calls that did a full handshake */
    uint64_t handshakes_resumed; /* measured calls whose handshake resumed (should be 0) */
    uint64_t connections;        /* TCP connections established in the measured interval */
    uint64_t server_no_close;    /* the server had not closed within the wait; the client did */
    uint64_t close_server;       /* connections the server closed first */
    uint64_t close_client;       /* connections the client closed first at once (--close / auto) */
    bool close_switched;         /* auto: the server never closed first, the client took over */
    double elapsed_s;            /* measured interval, first call issued to last completed */
    double client_cpu_s;         /* getrusage(RUSAGE_SELF) over the interval */
    bool have_proxy_cpu;
    double proxy_cpu_s; /* --pid: utime + stime over the interval */
    struct tg_bench_latsum lat;
    bool lat_truncated;
    size_t ntls;
    struct tg_bench_tls_combo tls[TG_BENCH_MAX_TLS_COMBOS];
    uint64_t tls_other;  /* calls whose combo did not fit in tls[] */
    bool interrupted;    /* stopped by a signal */
    char start_time[32]; /* ISO 8601 local time of the measured start */
};

/* The exact fortio-style last line, without newline:
 * "All done 43069 calls (plus 10 warmup) 6.966 ms avg, 1435.4 qps". */
int tg_bench_format_done(char *buf, size_t len, uint64_t calls, uint64_t warmup, double avg_ms,
                         double qps);

/* The per-second progress line, without newline:
 * "12:00:01 1s: 1435 calls, 1435 qps, 0 errors". */
int tg_bench_format_progress(char *buf, size_t len, const char *hhmmss, uint64_t second,
                             uint64_t calls, double qps, uint64_t errors);

/* Human summary (several lines, each ending in \n; the fortio line is last). */
void tg_bench_report_text(struct tg_buf *out, const struct tg_bench_opts *o,
                          const struct tg_bench_result *r);
/* JSON document with the options and the results. */
void tg_bench_report_json(struct tg_buf *out, const struct tg_bench_opts *o,
                          const struct tg_bench_result *r);
/* Append s as a JSON string literal (quotes included). */
void tg_bench_json_string(struct tg_buf *out, const char *s);

/* ------------------------------------------------------------------------- */
/* /proc/PID/stat                                                            */

/* Parse utime (field 14) and stime (field 15), in clock ticks, from the text
 * of /proc/PID/stat. comm (field 2) may contain spaces and parentheses: the
 * fields are counted after the LAST ')'. Returns TG_OK or TG_EPROTO. */
int tg_bench_parse_proc_stat(const char *text, uint64_t *utime, uint64_t *stime) TG_MUST_CHECK;
/* Read /proc/PID/stat and return utime + stime in seconds. TG_EIO if the
 * process is gone or unreadable. */
int tg_bench_proc_cpu(long pid, double *seconds) TG_MUST_CHECK;

/* ------------------------------------------------------------------------- */
/* The two modes (tg_bench_client.c, tg_bench_serve.c); return exit status.  */

int tg_bench_run_load(const struct tg_bench_opts *o);
int tg_bench_run_serve(const struct tg_bench_opts *o);

#endif
