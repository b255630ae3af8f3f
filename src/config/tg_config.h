/*
 * tg_config: the YAML configuration, parsed (libyaml) and validated into
 * plain structs.
 *
 * Ownership: tg_config_load*() allocates a struct tg_config that the caller
 * frees with tg_config_free(). Every string and array inside is owned by it.
 * Inline PEM data (inline_string) is wiped before it is freed.
 *
 * Errors: on failure the functions return a negative tg_err code and write
 * exactly one line into err (when err != NULL) of the form
 *     FILE:LINE:COL: path.to.key: what is wrong
 * e.g.  "gw.yaml:12:9: listeners[0].tls.certificates[0].private_key_provider.provider_name:
 *        unknown provider 'foo' (known: software, deferred, cryptomb, qat)".
 * LINE and COL are 1-based and point at the offending key or value.
 *
 * Threading: load and validate on one thread; the result is read-only after
 * that and may be shared by all threads.
 */
#ifndef TG_CONFIG_H
#define TG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/tg_err.h"

#define TG_CONFIG_ERRLEN 1024

/* Where a node stood in the file, for error messages at validation time. */
struct tg_conf_mark {
    const char *file; /* points into tg_config.source_name */
    int line;         /* 1-based, 0 when unknown (embedded default built in code) */
    int col;          /* 1-based */
};

/* A resolved socket address plus the text it came from ("127.0.0.1:8080"). */
struct tg_conf_addr {
    char *text;
    struct sockaddr_storage ss;
    socklen_t len;
    struct tg_conf_mark mark; /* of the address value (line 0 when built in code) */
};

/*
 * A PEM source: exactly one of filename / inline_string (Envoy's DataSource).
 * After loading, `data`/`data_len` hold the bytes read (file content or the
 * inline string), so later stages never touch the file system again.
 */
struct tg_conf_datasource {
    char *filename; /* NULL when inline; as written (relative to the config file's dir) */
    char *data;     /* owned, NUL-terminated (data[data_len] == 0); wiped on free */
    size_t data_len;
    char *path;               /* the file actually read (filename resolved); NULL when inline */
    struct tg_conf_mark mark; /* of the filename / inline_string value */
};

/*
 * A provider's typed_config: kept as generic key/value pairs (scalars, or
 * sequences of scalars) so each key provider validates its own keys at start
 * (tg_keyprov_ops.configure). A mapping of scalars one level down is
 * flattened into dotted keys: `pin: { filename: f }` is the pair
 * "pin.filename" = "f" (marks point at "filename"). `used` is set by the
 * provider for every key it understands; tg_conf_params_check_unused() then
 * rejects the rest.
 */
struct tg_conf_param {
    char *key;
    char *value;  /* scalar text, NULL for a sequence */
    char **items; /* sequence of scalars (NULL for a scalar) */
    size_t nitems;
    struct tg_conf_mark mark; /* of the key */
    struct tg_conf_mark value_mark;
    bool used;
};

struct tg_conf_params {
    struct tg_conf_param *v;
    size_t n;
    char *path; /* "listeners[0].tls.certificates[1].private_key_provider.typed_config" */
};

struct tg_conf_keyprov {
    char *provider_name; /* "software" (default), "deferred", "cryptomb", "qat" */
    bool fallback;       /* default true: serve with software when the provider cannot run */
    bool fallback_set;   /* `fallback` was written in the file (fallback_mark is its value) */
    struct tg_conf_mark fallback_mark;
    uint64_t poll_delay_ns; /* typed_config.poll_delay, default 1ms; 0 = flush at once */
    struct tg_conf_params typed_config; /* all typed_config keys except poll_delay */
    char *path; /* "listeners[0].tls.certificates[0].private_key_provider" */
    struct tg_conf_mark mark;
};

/*
 * certificate_chain and private_key are required, except with a
 * private_key_provider block: then private_key may be absent (a provider
 * that holds keys itself; the TLS layer refuses the others), and
 * certificate_chain too when private_key is (the provider reads the
 * certificate next to its key). Absent sources have data == NULL.
 */
struct tg_conf_cert {
    struct tg_conf_datasource chain;       /* certificate_chain */
    struct tg_conf_datasource private_key; /* private_key (or typed_config.private_key) */
    char **server_names;                   /* optional SNI names overriding the certificate's own */
    size_t n_server_names;
    struct tg_conf_keyprov keyprov;
    char *path; /* "listeners[0].tls.certificates[0]" */
    struct tg_conf_mark mark;
};

/* tls.client_certificate: mutual TLS. mode is TG_CCERT_OFF when the block
 * is absent (no certificate is asked for). */
enum tg_ccert_mode { TG_CCERT_OFF, TG_CCERT_REQUIRE, TG_CCERT_OPTIONAL };
struct tg_conf_client_cert {
    int mode;                      /* enum tg_ccert_mode; require when the block is given */
    struct tg_conf_datasource ca;  /* PEM CA certificates: the trust anchors */
    struct tg_conf_datasource crl; /* PEM CRLs; data NULL when not given */
    uint32_t verify_depth;         /* intermediates allowed below a CA of `ca`, default 4 */
    char *path;                    /* "listeners[0].tls.client_certificate" */
    struct tg_conf_mark mark;
};

struct tg_conf_tls {
    struct tg_conf_cert *certs; /* at least one */
    size_t n_certs;
    int min_version; /* TLS1_2_VERSION (default) or TLS1_3_VERSION */
    int max_version; /* TLS1_3_VERSION (default) */
    char **alpn;     /* protocols offered, in server preference order */
    size_t n_alpn;
    bool session_resumption;   /* default true: tickets + server session cache */
    bool require_close_notify; /* default false; true: a FIN without close_notify resets */
    char *cipher_list;         /* TLS 1.2 ciphers; NULL = tlsgate default (ECDHE only) */
    char *cipher_suites;       /* TLS 1.3 suites; NULL = OpenSSL default */
    char *groups;              /* key exchange groups; NULL = "X25519:P-256:P-384" */
    /* Where cipher_list, cipher_suites and groups stood (for errors found later). */
    struct tg_conf_mark cipher_list_mark, cipher_suites_mark, groups_mark;
    /* key_exchange_provider: who does the listener's ephemeral key exchange.
     * Absent: the first certificate's provider if it takes key exchange
     * (its typed_config key_exchange), else OpenSSL inline. */
    bool has_kx_provider;
    struct tg_conf_keyprov kx_provider;
    struct tg_conf_client_cert client_cert;
    struct tg_conf_mark mark;
};

/* upstream.lb_policy */
enum tg_lb_policy { TG_LB_ROUND_ROBIN, TG_LB_LEAST_CONNECTIONS, TG_LB_RANDOM };
/* upstream.dns_lookup_family: auto = every A and AAAA record */
enum tg_dns_family { TG_DNS_AUTO, TG_DNS_V4, TG_DNS_V6 };

/* One entry of upstream.endpoints (or the one made from upstream.address). */
struct tg_conf_endpoint {
    char *text;               /* "backend.default.svc.cluster.local:3000", as written */
    char *host;               /* the host part: a name, or an IP literal without brackets */
    uint16_t port;            /* 1..65535 */
    bool is_name;             /* host is resolved (DNS, /etc/hosts); else addr holds it */
    struct tg_conf_addr addr; /* !is_name: the numeric address (addr.text = a copy of text) */
    uint32_t weight;          /* 1..128, default 1 */
    struct tg_conf_mark mark; /* of the address value */
};

/* upstream.outlier_detection: passive health from connect results. */
struct tg_conf_outlier {
    uint32_t consecutive_failures;  /* default 5; 0 = never eject */
    uint64_t base_ejection_time_ns; /* default 30s: the first ejection's length */
    uint64_t max_ejection_time_ns;  /* default 300s: the longest ejection */
    uint32_t max_ejection_percent;  /* default 10 (at least one endpoint may be ejected) */
};

/* upstream.health_check: an active TCP connect probe per endpoint. */
struct tg_conf_health_check {
    bool enabled;                 /* the block is present */
    uint64_t interval_ns;         /* default 5s */
    uint64_t timeout_ns;          /* default 1s */
    uint32_t unhealthy_threshold; /* default 3 failed probes in a row */
    uint32_t healthy_threshold;   /* default 1 good probe */
};

struct tg_conf_upstream {
    struct tg_conf_addr addr;           /* the `address` form; text NULL with `endpoints` */
    struct tg_conf_endpoint *endpoints; /* never empty after a load (`address` is endpoints[0]) */
    size_t n_endpoints;
    uint64_t connect_timeout_ns;   /* default 5s, per attempt */
    int proxy_protocol;            /* PROXY header sent first: 0 none (default), 1 or 2 */
    uint32_t max_connect_attempts; /* default 3: endpoints tried per connection, 1..10 */
    int lb_policy;                 /* enum tg_lb_policy, default round_robin */
    int dns_lookup_family;         /* enum tg_dns_family, default auto */
    uint64_t dns_refresh_rate_ns;  /* default 5s */
    bool respect_dns_ttl;          /* default false: refresh after the answer's TTL */
    struct tg_conf_outlier outlier;
    struct tg_conf_health_check health_check;
    char *text; /* for logs: the address, or the endpoints joined with ", " */
    struct tg_conf_mark mark;
};

/* The top-level dns block: the resolver of upstream host names. */
struct tg_conf_dns {
    char **resolvers; /* "IP:PORT" (port 53 added when absent); none = /etc/resolv.conf */
    size_t n_resolvers;
    uint64_t query_timeout_ns; /* default 2s: first try of a query */
    uint32_t query_attempts;   /* default 2: tries per server */
    struct tg_conf_mark mark;
};

struct tg_conf_listener {
    char *name; /* default "listener<N>" */
    struct tg_conf_addr addr;
    int backlog; /* default 4096 */
    /* proxy_protocol: every connection starts with a PROXY header (v1 or v2,
     * either accepted) from a load balancer, awaited for at most
     * proxy_protocol_timeout_ns (default 3s) before the TLS handshake. */
    bool proxy_protocol;
    uint64_t proxy_protocol_timeout_ns;
    struct tg_conf_tls tls;
    struct tg_conf_upstream upstream;
    char *path; /* "listeners[0]" */
    struct tg_conf_mark mark;
};

struct tg_conf_limits {
    uint64_t max_connections; /* default 50000 (whole process) */
    /* Open client connections from one source address (process-wide; on a
     * proxy_protocol listener, the header's source). 0 (default): no limit. */
    uint64_t max_connections_per_source;
    unsigned per_source_ipv6_prefix; /* default 64: IPv6 sources counted per /64 */
    uint64_t first_byte_timeout_ns;  /* default 5s: accept to the ClientHello's first byte */
    uint64_t handshake_timeout_ns;   /* default 10s */
    uint64_t idle_timeout_ns;        /* default 300s */
    uint64_t drain_timeout_ns;       /* default 30s: SIGTERM waits this long for connections */
    size_t buffer_size;              /* per direction per connection, default 16384 */
};

/* access_log: one line per connection (src/alog). */
enum tg_conf_alog_dest {
    TG_CONF_ALOG_OFF,    /* no access log (the default when the block is absent) */
    TG_CONF_ALOG_STDOUT, /* file descriptor 1 (the default when the block is present) */
    TG_CONF_ALOG_FILE,   /* path, opened O_APPEND, reopened on SIGUSR1 */
};
enum tg_conf_alog_format { TG_CONF_ALOG_TEXT, TG_CONF_ALOG_JSON };

struct tg_conf_access_log {
    enum tg_conf_alog_dest dest;
    enum tg_conf_alog_format format; /* default text (key=value) */
    size_t buffer;                   /* bytes per worker, default 256 KiB */
    char *path;                      /* TG_CONF_ALOG_FILE: resolved against the config's dir */
    struct tg_conf_mark path_mark;   /* of the path value (line 0 when absent) */
    struct tg_conf_mark mark;        /* of the access_log block */
};

/* reload: what starts a reload besides SIGHUP / `tlsgate reload`. */
struct tg_conf_reload {
    bool watch;           /* default true: watch certificate and key files (inotify) */
    uint64_t debounce_ns; /* default 200ms: quiet time after the last change before reloading */
};

struct tg_config {
    char *source_name;                    /* file path, or "<embedded default>" */
    int concurrency;                      /* worker threads, default 1; "auto" = number of CPUs */
    struct tg_conf_mark concurrency_mark; /* of its value (line 0 when not given) */
    bool has_admin;
    struct tg_conf_addr admin;          /* admin.address */
    struct tg_conf_listener *listeners; /* at least one */
    size_t n_listeners;
    struct tg_conf_limits limits;
    struct tg_conf_access_log access_log;
    struct tg_conf_reload reload;
    struct tg_conf_dns dns;
    int log_level;   /* enum tg_log_level, default info */
    char *state_dir; /* for the embedded default: where the demo certificate lives */
};

/* Load and validate a YAML file. Reads every referenced file (certificates,
 * keys) into memory; relative filenames are resolved against the directory
 * of path. Does not check that keys match certificates: that needs
 * OpenSSL and is done by tg_tls (which reports with the same marks).
 * *out is NULL on failure. */
int tg_config_load_file(const char *path, struct tg_config **out, char *err,
                        size_t errlen) TG_MUST_CHECK;
/* Same, from a buffer; name is used in messages (and as source_name);
 * relative filenames are resolved against the current directory. */
int tg_config_load_buffer(const char *name, const char *yaml, size_t len, struct tg_config **out,
                          char *err, size_t errlen) TG_MUST_CHECK;
void tg_config_free(struct tg_config *cfg);

/* Whether two upstream blocks make the same cluster: the same endpoints (as
 * written, with their weights, in the same order), load balancing, connect
 * timeout and attempts, DNS family and refresh, outlier detection and
 * health check. proxy_protocol and the marks do not count. (A reload keeps
 * a listener's cluster when they are equal.) */
bool tg_conf_upstream_same_cluster(const struct tg_conf_upstream *a,
                                   const struct tg_conf_upstream *b);
/* Whether two dns blocks configure the same resolver (marks aside). */
bool tg_conf_dns_equal(const struct tg_conf_dns *a, const struct tg_conf_dns *b);
/* Whether an upstream block has host names to resolve. */
bool tg_conf_upstream_has_names(const struct tg_conf_upstream *u);

/* Format "FILE:LINE:COL: path: message" into err. path may be NULL. */
void tg_conf_error(char *err, size_t errlen, const struct tg_conf_mark *mark, const char *path,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Value parsers shared with key providers (return TG_OK or TG_ECONFIG). */
/* "2s", "0.001s", "250ms", "500us", "1m", "1h", "100ns"; a bare number is seconds. */
int tg_conf_parse_duration(const char *s, uint64_t *out_ns) TG_MUST_CHECK;
/* "yes"/"no" are not accepted: true/false/True/False/TRUE/FALSE only. */
int tg_conf_parse_bool(const char *s, bool *out) TG_MUST_CHECK;
/* Decimal unsigned integer within [min, max]. */
int tg_conf_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out) TG_MUST_CHECK;
/* "host:port", "[v6]:port"; host must be a numeric address or "localhost".
 * Port 0..65535: port 0 ("any free port") is accepted here and refused by
 * the callers that need a real port (upstream). On success out->text is a
 * malloc'd copy of s (release with tg_conf_addr_clear); on failure *out is
 * untouched. No DNS look-ups. */
int tg_conf_parse_addr(const char *s, struct tg_conf_addr *out) TG_MUST_CHECK;
void tg_conf_addr_clear(struct tg_conf_addr *a);

/*
 * typed_config helpers for key providers. Each looks up key, marks it used
 * (tg_conf_params_get too), parses it and on a parse error writes a full
 * "FILE:LINE:COL: path.key: ..." line into err. A missing key leaves *out
 * unchanged and returns TG_OK. A sequence where a scalar is expected is an
 * error. Marking writes into the config: call them while configuring, on one
 * thread, before the config is shared.
 */
const struct tg_conf_param *tg_conf_params_get(const struct tg_conf_params *p, const char *key);
int tg_conf_params_duration(const struct tg_conf_params *p, const char *key, uint64_t *out_ns,
                            char *err, size_t errlen) TG_MUST_CHECK;
int tg_conf_params_bool(const struct tg_conf_params *p, const char *key, bool *out, char *err,
                        size_t errlen) TG_MUST_CHECK;
int tg_conf_params_u64(const struct tg_conf_params *p, const char *key, uint64_t min, uint64_t max,
                       uint64_t *out, char *err, size_t errlen) TG_MUST_CHECK;
int tg_conf_params_double(const struct tg_conf_params *p, const char *key, double min, double max,
                          double *out, char *err, size_t errlen) TG_MUST_CHECK;
/* A scalar string; *out points into p (valid as long as the config lives). */
int tg_conf_params_string(const struct tg_conf_params *p, const char *key, const char **out,
                          char *err, size_t errlen) TG_MUST_CHECK;
/* Rejects the first key no provider marked used: "unknown key 'x' for provider 'y'". */
int tg_conf_params_check_unused(const struct tg_conf_params *p, const char *provider_name,
                                char *err, size_t errlen) TG_MUST_CHECK;

/* The embedded default configuration (YAML text) used by `tlsgate run` without
 * --config and by `make demo`; its source_name is TG_CONFIG_DEFAULT_NAME. It
 * refers to ${STATE_DIR}/TG_CONFIG_DEMO_CERT and ${STATE_DIR}/TG_CONFIG_DEMO_KEY,
 * a self-signed demo certificate that the caller makes sure exists first
 * (tg_tls_demo_cert_ensure, src/tls): tg_config_load_default only reads the
 * files, like those of any configuration, and creates nothing. */
#define TG_CONFIG_DEFAULT_NAME "<embedded default>"
#define TG_CONFIG_DEMO_CERT    "demo-cert.pem"
#define TG_CONFIG_DEMO_KEY     "demo-key.pem"
extern const char tg_config_default_yaml[];
/* Loads the default with ${STATE_DIR} = state_dir (checked with
 * tg_config_check_state_dir); cfg->state_dir is a copy of state_dir. */
int tg_config_load_default(const char *state_dir, struct tg_config **out, char *err,
                           size_t errlen) TG_MUST_CHECK;
/* Whether state_dir can stand in the default YAML: not NULL or empty
 * (TG_EINVAL, "<embedded default>: no state directory given"), no control
 * characters (TG_ECONFIG). For callers that prepare the directory before
 * loading, so that a bad name is refused with the same line before anything
 * is created. */
int tg_config_check_state_dir(const char *state_dir, char *err, size_t errlen) TG_MUST_CHECK;

/* Names of the key providers the program is built with (the key-provider
 * registry's list), so that an unknown provider_name is reported with the
 * file position at load time. NULL-terminated; not copied: it must outlive
 * every later load. NULL (the default): names are not checked here (the
 * registry refuses an unknown one when the certificate is bound). The config
 * module knows no provider by name. Not thread-safe. */
void tg_config_set_known_providers(const char *const *names);

#endif
