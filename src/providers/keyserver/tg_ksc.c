/*
 * The keyserver provider: a gateway's certificate keys held by a key server
 * (`tlsgate keyserver`, src/keyserver), used over its Unix socket in the key
 * server protocol (src/ksproto). The gateway holds only the certificate:
 * the key is asked for by the SHA-256 of the certificate's public key, never
 * by a file name.
 *
 *   private_key_provider:
 *     provider_name: keyserver
 *     typed_config:
 *       socket: /run/tlsgate/keys.sock
 *       timeout: 1s
 *       max_in_flight: 256
 *
 * This file: configuration, loading keys (with a check against the key
 * server at start-up), statistics, the ops table; the worker side is
 * tg_ksc_chan.c. Settings are documented in docs/CONFIG.md and
 * docs/KEY-PROVIDERS.md ("keyserver").
 */
#include <errno.h>
#include <stdatomic.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/tg_log.h"
#include "core/tg_time.h"
#include "providers/keyserver/tg_ksc.h"
#include "providers/keyserver/tg_ksc_internal.h"

/* ---- the sockets the configuration names (main thread, start-up) ---- */

static struct tg_ksc_socket tg_ksc_socks[TG_KSC_MAX_SOCKETS];
static _Atomic size_t tg_ksc_nsocks;

struct tg_ksc_socket *tg_ksc_sockets(size_t *n)
{
    *n = atomic_load_explicit(&tg_ksc_nsocks, memory_order_acquire);
    return tg_ksc_socks;
}

/* The index of socket name (added when new), or -1 when too many. Main
 * thread (start-up, reloads): workers may be reading the table meanwhile,
 * so an entry is complete before the count publishes it. */
static int tg_ksc_socket_index(const char *name, uint32_t max_in_flight)
{
    size_t n = atomic_load_explicit(&tg_ksc_nsocks, memory_order_relaxed);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(tg_ksc_socks[i].name, name) == 0) {
            if (max_in_flight > atomic_load(&tg_ksc_socks[i].max_in_flight))
                atomic_store(&tg_ksc_socks[i].max_in_flight, max_in_flight);
            return (int)i;
        }
    }
    if (n == TG_KSC_MAX_SOCKETS)
        return -1;
    char *copy = strdup(name);
    if (copy == NULL)
        return -1;
    tg_ksc_socks[n].name = copy;
    atomic_store(&tg_ksc_socks[n].max_in_flight, max_in_flight);
    atomic_store_explicit(&tg_ksc_nsocks, n + 1, memory_order_release);
    return (int)n;
}

static void tg_ksc_global_cleanup(void)
{
    tg_ksc_stats_forget();
    size_t n = atomic_load(&tg_ksc_nsocks);
    atomic_store(&tg_ksc_nsocks, 0);
    for (size_t i = 0; i < n; i++) {
        free(tg_ksc_socks[i].name);
        tg_ksc_socks[i].name = NULL;
    }
}

/* ---- configuration ---- */

static void tg_ksc_settings_free(void *vs)
{
    struct tg_ksc_settings *s = vs;
    if (s == NULL)
        return;
    free(s->socket);
    free(s);
}

static int tg_ksc_conf_fail(const struct tg_conf_params *p, const char *key, char *err,
                            size_t errlen, const char *msg)
{
    const struct tg_conf_param *q = tg_conf_params_get(p, key);
    char path[600];
    snprintf(path, sizeof(path), "%s.%s", p->path ? p->path : "typed_config", key);
    tg_conf_error(err, errlen, &q->value_mark, path, "%s", msg);
    return TG_ECONFIG;
}

static int tg_ksc_configure(const struct tg_conf_keyprov *conf, void **out, bool *kx, char *err,
                            size_t errlen)
{
    const struct tg_conf_params *p = &conf->typed_config;
    *kx = false;
    const char *sock = NULL;
    uint64_t timeout = TG_NS_PER_S, mif = 256;
    bool kxwant = false;
    TG_GUARD(tg_conf_params_string(p, "socket", &sock, err, errlen));
    TG_GUARD(tg_conf_params_duration(p, "timeout", &timeout, err, errlen));
    TG_GUARD(tg_conf_params_u64(p, "max_in_flight", 1, TG_KSP_INFLIGHT_MAX, &mif, err, errlen));
    TG_GUARD(tg_conf_params_bool(p, "key_exchange", &kxwant, err, errlen));
    TG_GUARD(tg_conf_params_check_unused(p, "keyserver", err, errlen));
    if (sock == NULL) {
        char path[600];
        snprintf(path, sizeof(path), "%s", p->path ? p->path : "typed_config");
        tg_conf_error(err, errlen, &conf->mark, path,
                      "missing required key 'socket' (the key server's Unix socket, e.g. "
                      "/run/tlsgate/keys.sock)");
        return TG_ECONFIG;
    }
    if (kxwant)
        return tg_ksc_conf_fail(p, "key_exchange", err, errlen,
                                "keyserver does not do key exchange (ephemeral keys stay in "
                                "the gateway)");
    if (timeout < TG_NS_PER_MS || timeout > 60 * TG_NS_PER_S)
        return tg_ksc_conf_fail(p, "timeout", err, errlen, "expected a duration from 1ms to 60s");
    const struct tg_conf_param *sq = tg_conf_params_get(p, "socket");
    struct tg_ksc_settings *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return TG_ENOMEM;
    if (sock[0] != '/' && sock[0] != '@' && sq->value_mark.file != NULL &&
        strchr(sq->value_mark.file, '/') != NULL) {
        /* Relative to the configuration file, like certificate files. */
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s", sq->value_mark.file);
        size_t len = strlen(dirname(dir)) + strlen(sock) + 2;
        s->socket = malloc(len);
        if (s->socket != NULL)
            snprintf(s->socket, len, "%s/%s", dir, sock);
    } else {
        s->socket = strdup(sock);
    }
    if (s->socket == NULL) {
        free(s);
        return TG_ENOMEM;
    }
    size_t len = strlen(s->socket);
    const char *bad = NULL;
    if (len == 0 || (s->socket[0] == '@' && len < 2))
        bad = "expected a socket path, or @name for an abstract socket";
    else if (len > sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
        bad = "the socket name is too long for a Unix socket address (at most 107 bytes)";
    if (bad != NULL) {
        tg_ksc_settings_free(s);
        return tg_ksc_conf_fail(p, "socket", err, errlen, bad);
    }
    s->timeout_ns = timeout;
    s->max_in_flight = (uint32_t)mif;
    *out = s;
    return TG_OK;
}

/* ---- keys ---- */

void tg_ksc_key_free(void *handle)
{
    free(handle);
}

/* Read one frame from a blocking socket (whose timeouts are set). */
static int tg_ksc_probe_read(int fd, uint8_t *buf, size_t cap, size_t *have, struct tg_ksp_msg *m,
                             const char **why)
{
    for (;;) {
        struct tg_ksp_frame f;
        size_t used = 0;
        int rc = tg_ksp_frame_parse(buf, *have, &f, &used, why);
        if (rc == TG_OK) {
            rc = tg_ksp_decode(&f, m, why);
            memmove(buf, buf + used, *have - used);
            *have -= used;
            return rc;
        }
        if (rc != TG_EAGAIN)
            return rc;
        ssize_t n = recv(fd, buf + *have, cap - *have, 0);
        if (n > 0) {
            *have += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        *why = n == 0 ? "the key server closed the connection" : strerror(errno);
        return n == 0 ? TG_ECLOSED : TG_EIO;
    }
}

/*
 * Ask the key server whether it holds key id (start-up, main thread): HELLO
 * then LOOKUP on a short blocking connection. TG_OK with *type and *bits;
 * TG_EUNAVAIL when it cannot be reached (why says why); TG_ECONFIG when it
 * refuses this process or does not hold the key (why says which).
 */
static int tg_ksc_probe(const char *sock, const uint8_t id[TG_KSP_KEY_ID], uint64_t timeout_ns,
                        uint8_t *type, uint16_t *bits, char *server, char *why, size_t whylen)
{
    int fd = tg_ksc_connect(sock, false);
    if (fd < 0) {
        snprintf(why, whylen, "%s", strerror(errno));
        return TG_EUNAVAIL;
    }
    struct timeval tv = {(time_t)(timeout_ns / TG_NS_PER_S),
                         (suseconds_t)(timeout_ns % TG_NS_PER_S / 1000)};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    uint8_t out[2 * TG_KSP_FRAME_MAX], in[2 * TG_KSP_FRAME_MAX];
    struct tg_ksp_msg m;
    memset(&m, 0, sizeof(m));
    m.type = TG_KSP_HELLO;
    m.max_in_flight = 1;
    snprintf(m.text, sizeof(m.text), "tlsgate %s pid %d start-up check", TG_VERSION, (int)getpid());
    size_t n = tg_ksp_encode(&m, out, sizeof(out));
    int wanted = 1;
    if (id != NULL) {
        memset(&m, 0, sizeof(m));
        m.type = TG_KSP_LOOKUP;
        m.id = 1;
        memcpy(m.key_id, id, TG_KSP_KEY_ID);
        n += tg_ksp_encode(&m, out + n, sizeof(out) - n);
        wanted = 2;
    }
    int rc = TG_OK;
    const char *w = NULL;
    size_t have = 0;
    /* A key server that refuses this process says so and closes at once:
     * the send may fail, the reason is still there to read. */
    bool sent = send(fd, out, n, MSG_NOSIGNAL) == (ssize_t)n;
    int send_errno = errno;
    for (int want = 0; want < wanted && rc == TG_OK; want++) {
        rc = tg_ksc_probe_read(fd, in, sizeof(in), &have, &m, &w);
        if (rc != TG_OK) {
            snprintf(why, whylen, "%s", w ? w : tg_strerror(rc));
            rc = rc == TG_EPROTO ? TG_ECONFIG : TG_EUNAVAIL;
        } else if (m.type == TG_KSP_ERROR) {
            snprintf(why, whylen, "the key server refuses this process (%s: %s)",
                     tg_ksp_status_name(m.status), m.text);
            rc = m.status == TG_KSP_ST_NOT_ALLOWED ? TG_ECONFIG : TG_EUNAVAIL;
        } else if (want == 0 && (m.type != TG_KSP_HELLO_REPLY || m.status != TG_KSP_ST_OK)) {
            snprintf(why, whylen, "the key server refused the hello (%s)",
                     tg_ksp_status_name(m.status));
            rc = TG_ECONFIG;
        } else if (want == 0 && server != NULL) {
            snprintf(server, TG_KSP_TEXT_MAX + 1, "%s", m.text);
        } else if (want == 1 && m.type != TG_KSP_LOOKUP_REPLY) {
            snprintf(why, whylen, "the key server answered a lookup with %s",
                     tg_ksp_type_name(m.type));
            rc = TG_ECONFIG;
        } else if (want == 1 && m.status != TG_KSP_ST_OK) {
            snprintf(why, whylen, "the key server does not hold this certificate's key (%s)",
                     tg_ksp_status_name(m.status));
            rc = TG_ECONFIG;
        } else if (!sent) {
            snprintf(why, whylen, "cannot send: %s", strerror(send_errno));
            rc = TG_EUNAVAIL;
        } else if (want == 1) {
            *type = m.key_type;
            *bits = m.key_bits;
        }
    }
    close(fd);
    return rc;
}

static int tg_ksc_load_key(void *vs, EVP_PKEY *cert_pub, struct tg_pkey **out, X509 **leaf,
                           char *err, size_t errlen)
{
    const struct tg_ksc_settings *s = vs;
    (void)leaf;
    if (cert_pub == NULL) {
        snprintf(err, errlen,
                 "keyserver needs the certificate (certificate_chain): the key server is asked "
                 "for the key by the certificate's public key");
        return TG_ECONFIG;
    }
    struct tg_ksc_key *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return TG_ENOMEM;
    int rc = TG_OK;
    k->timeout_ns = s->timeout_ns;
    k->sock = tg_ksc_socket_index(s->socket, s->max_in_flight);
    if (k->sock < 0) {
        snprintf(err, errlen, "more than %d key server sockets", TG_KSC_MAX_SOCKETS);
        rc = TG_ECONFIG;
        goto out;
    }
    if (tg_ksp_key_id(cert_pub, k->id) != TG_OK) {
        snprintf(err, errlen, "cannot encode the certificate's public key");
        rc = TG_ECRYPTO;
        goto out;
    }
    tg_ksp_key_id_hex(k->id, 8, k->id_hex);
    uint8_t type = 0;
    uint16_t bits = 0;
    char why[256] = "";
    rc = tg_ksc_probe(s->socket, k->id, s->timeout_ns, &type, &bits, NULL, why, sizeof(why));
    if (rc == TG_EUNAVAIL) {
        TG_WARN("keyserver %s: not reachable at start-up (%s): handshakes with key %s... wait "
                "for it (at most %.0f ms each) until it is",
                s->socket, why, k->id_hex, (double)s->timeout_ns / 1e6);
        rc = TG_OK;
    } else if (rc != TG_OK) {
        snprintf(err, errlen, "keyserver %s: key %s...: %s", s->socket, k->id_hex, why);
        goto out;
    } else {
        bool rsa = EVP_PKEY_get_base_id(cert_pub) == EVP_PKEY_RSA;
        if ((type == TG_KSP_KEY_RSA) != rsa || bits != EVP_PKEY_get_bits(cert_pub)) {
            snprintf(err, errlen,
                     "keyserver %s: key %s...: the key server's key is %s %u-bit, the "
                     "certificate's %s %d-bit",
                     s->socket, k->id_hex, type == TG_KSP_KEY_RSA ? "RSA" : "EC", (unsigned)bits,
                     rsa ? "RSA" : "EC", EVP_PKEY_get_bits(cert_pub));
            rc = TG_ECONFIG;
            goto out;
        }
        TG_INFO("keyserver %s: holds key %s... (%s %u-bit)", s->socket, k->id_hex,
                rsa ? "RSA" : "EC", (unsigned)bits);
    }
    rc = tg_pkey_from_public(cert_pub, k, tg_ksc_key_free, out, why, sizeof(why));
    if (rc != TG_OK) {
        snprintf(err, errlen, "%s", why);
        goto out;
    }
    k = NULL; /* the key's now */
out:
    free(k);
    return rc;
}

/* ---- statistics ---- */

/* A socket name as a Prometheus label value. */
static void tg_ksc_prom_label(const char *in, char *out, size_t len)
{
    size_t o = 0;
    for (; *in != '\0' && o + 3 < len; in++) {
        if (*in == '"' || *in == '\\')
            out[o++] = '\\';
        out[o++] = *in == '\n' ? ' ' : *in;
    }
    out[o] = '\0';
}

static void tg_ksc_render_stats(struct tg_buf *out)
{
    size_t n = 0;
    tg_ksc_sockets(&n);
    if (n == 0)
        return;
    struct tg_ksc_stats *agg = calloc(TG_KSC_MAX_SOCKETS, sizeof(*agg));
    if (agg == NULL)
        return;
    tg_ksc_stats_collect(agg, n);
    char sock[300], lab[400];
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } plain[] = {
        {"tlsgate_keyserver_client_connected", "gauge",
         "Worker connections to the key server ready now",
         offsetof(struct tg_ksc_stats, connected)},
        {"tlsgate_keyserver_client_connects_total", "counter",
         "Connections to the key server made (hello answered)",
         offsetof(struct tg_ksc_stats, connects)},
        {"tlsgate_keyserver_client_requests_total", "counter", "Signing requests sent",
         offsetof(struct tg_ksc_stats, requests)},
        {"tlsgate_keyserver_client_late_replies_total", "counter",
         "Replies that came after their request timed out",
         offsetof(struct tg_ksc_stats, late_replies)},
        {"tlsgate_keyserver_client_resent_total", "counter",
         "Requests sent again: the key server shut down without reading them",
         offsetof(struct tg_ksc_stats, resent)},
        {"tlsgate_keyserver_client_in_flight", "gauge", "Requests sent and not answered",
         offsetof(struct tg_ksc_stats, in_flight)},
        {"tlsgate_keyserver_client_waiting", "gauge",
         "Requests waiting to be sent (connecting, or at the key server's in-flight limit)",
         offsetof(struct tg_ksc_stats, waiting)},
    };
    for (size_t m = 0; m < TG_ARRAY_LEN(plain); m++) {
        tg_prom_header(out, plain[m].name, plain[m].type, plain[m].help);
        for (size_t i = 0; i < n; i++) {
            tg_ksc_prom_label(tg_ksc_socks[i].name, sock, sizeof(sock));
            snprintf(lab, sizeof(lab), "socket=\"%s\"", sock);
            tg_prom_value(out, plain[m].name, lab,
                          tg_ctr_get((const tg_ctr *)((const char *)&agg[i] + plain[m].off)));
        }
    }
    static const char *const fails[] = {
#define TG_KSC_FAIL_NAME(id, label) label,
        TG_KSC_FAILURES(TG_KSC_FAIL_NAME)
#undef TG_KSC_FAIL_NAME
    };
    tg_prom_header(out, "tlsgate_keyserver_client_failures_total", "counter",
                   "Signing requests that failed without a signature, by reason (each failed "
                   "its handshake)");
    for (size_t i = 0; i < n; i++) {
        tg_ksc_prom_label(tg_ksc_socks[i].name, sock, sizeof(sock));
        for (int r = 0; r < TG_KSC_FAIL_COUNT; r++) {
            snprintf(lab, sizeof(lab), "socket=\"%s\",reason=\"%s\"", sock, fails[r]);
            tg_prom_value(out, "tlsgate_keyserver_client_failures_total", lab,
                          tg_ctr_get(&agg[i].failures[r]));
        }
    }
    static const char *const discs[] = {
#define TG_KSC_DISC_NAME(id, label) label,
        TG_KSC_DISCONNECTS(TG_KSC_DISC_NAME)
#undef TG_KSC_DISC_NAME
    };
    tg_prom_header(out, "tlsgate_keyserver_client_disconnects_total", "counter",
                   "Connections to the key server lost or not made, by reason");
    for (size_t i = 0; i < n; i++) {
        tg_ksc_prom_label(tg_ksc_socks[i].name, sock, sizeof(sock));
        for (int r = 0; r < TG_KSC_DISC_COUNT; r++) {
            snprintf(lab, sizeof(lab), "socket=\"%s\",reason=\"%s\"", sock, discs[r]);
            tg_prom_value(out, "tlsgate_keyserver_client_disconnects_total", lab,
                          tg_ctr_get(&agg[i].disconnects[r]));
        }
    }
    struct tg_hist_spec spec = tg_hist_latency_us;
    spec.name = "tlsgate_keyserver_client_rtt_seconds";
    spec.help = "Time from a signing request written to its reply read";
    for (size_t i = 0; i < n; i++) {
        tg_ksc_prom_label(tg_ksc_socks[i].name, sock, sizeof(sock));
        snprintf(lab, sizeof(lab), "socket=\"%s\"", sock);
        tg_prom_hist(out, &spec, lab, &agg[i].rtt_us, i == 0);
    }
    free(agg);
}

/* ---- tlsgate doctor ---- */

/* s as a JSON string. */
static void tg_ksc_json_str(struct tg_buf *out, const char *s)
{
    tg_buf_puts(out, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            tg_buf_printf(out, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            tg_buf_printf(out, "\\u%04x", *p);
        else
            tg_buf_append(out, p, 1);
    }
    tg_buf_puts(out, "\"");
}

/* With `doctor --config FILE`: every key server FILE names, and whether it
 * answers this process (a HELLO; no key is looked up: the blocks carry no
 * certificate). */
static void tg_ksc_doctor(struct tg_buf *text, struct tg_buf *json)
{
    size_t it = 0, n = 0;
    const struct tg_conf_keyprov *kp;
    tg_buf_puts(json, "\"sockets\":[");
    while ((kp = tg_keyprov_doctor_block(tg_keyserver_provider.name, &it)) != NULL) {
        void *vs = NULL;
        bool kx = false;
        char err[TG_CONFIG_ERRLEN] = "", why[256] = "", server[TG_KSP_TEXT_MAX + 1] = "";
        if (tg_ksc_configure(kp, &vs, &kx, err, sizeof(err)) != TG_OK) {
            tg_buf_printf(text, "configured: %s: not usable: %s\n", kp->path, err);
            continue;
        }
        const struct tg_ksc_settings *s = vs;
        int rc = tg_ksc_probe(s->socket, NULL, s->timeout_ns, NULL, NULL, server, why, sizeof(why));
        if (rc == TG_OK)
            tg_buf_printf(text, "%s: %s answers (%s)\n", kp->path, s->socket, server);
        else
            tg_buf_printf(text, "%s: %s: %s%s\n", kp->path, s->socket,
                          rc == TG_EUNAVAIL ? "not reachable: " : "", why);
        tg_buf_puts(json, n++ ? ",{\"block\":" : "{\"block\":");
        tg_ksc_json_str(json, kp->path);
        tg_buf_puts(json, ",\"socket\":");
        tg_ksc_json_str(json, s->socket);
        tg_buf_printf(json, ",\"answers\":%s,\"detail\":", rc == TG_OK ? "true" : "false");
        tg_ksc_json_str(json, rc == TG_OK ? server : why);
        tg_buf_puts(json, "}");
        tg_ksc_settings_free(vs);
    }
    tg_buf_puts(json, "]");
    if (n == 0)
        tg_buf_puts(text, "key servers: none checked; `tlsgate doctor --config FILE` asks each "
                          "key server FILE names whether it answers this process\n");
}

/* ---- the provider ---- */

static int tg_ksc_supports_key(const struct tg_pkey *key, char *why, size_t whylen)
{
    (void)key;
    snprintf(why, whylen, "keyserver signs only with keys held by the key server");
    return TG_EUNAVAIL;
}

const struct tg_keyprov_ops tg_keyserver_provider = {
    .name = "keyserver",
    .description = "private keys held by a key server (tlsgate keyserver) over a Unix socket",
    .does_kx = false,
    .configure = tg_ksc_configure,
    .settings_free = tg_ksc_settings_free,
    .global_cleanup = tg_ksc_global_cleanup,
    .supports_key = tg_ksc_supports_key,
    .load_key = tg_ksc_load_key,
    .worker_init = tg_ksc_worker_init,
    .worker_cleanup = tg_ksc_worker_cleanup,
    .submit = tg_ksc_submit,
    .flush = tg_ksc_flush,
    .pending = tg_ksc_pending,
    .drain = tg_ksc_drain,
    .render_stats = tg_ksc_render_stats,
    .doctor = tg_ksc_doctor,
};
