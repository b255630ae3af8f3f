/*
 * The key server (src/keyserver) in one process: the server runs on a
 * thread of its own (tg_ks_new / tg_ks_run / tg_ks_request_stop), the test
 * speaks the protocol to it over its Unix socket with blocking sockets.
 *
 * Covers: signatures through the software provider (inline), the deferred
 * provider (completed later from the loop) and a runtime fallback, RSA
 * PKCS#1 v1.5 and PSS and ECDSA, each checked with the public key; lookups;
 * pipelined requests answered once each; unknown keys and mismatched
 * algorithms; max_queue (BUSY at once); stop with requests pending (each
 * answered, then the goodbye, then the close); the allow-list (a refused uid gets an ERROR
 * and the connection closes); max_connections; a socket file left by a dead
 * server (removed) and one with a live server on it (refused); start-up
 * errors (a certificate that does not match, the same key twice); /stats.
 * Waits are bounded reads (SO_RCVTIMEO), never sleeps.
 */
#include <errno.h>
#include <ev.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "config/tg_config.h"
#include "keyprov/tg_keyprov.h"
#include "keyserver/tg_keyserver.h"
#include "ksproto/tg_ksproto.h"
#include "providers/deferred/tg_deferred.h"
#include "providers/software/tg_software.h"
#include "tg_test_util.h"

static char g_ec_key[512], g_ec_cert[512], g_rsa_key[512], g_rsa_cert[512];
static uint8_t g_ec_id[32], g_rsa_id[32];
static EVP_PKEY *g_ec_pub, *g_rsa_pub;

/* ---- a server on a thread ---- */

struct server {
    struct tg_config *cfg;
    struct ev_loop *loop;
    struct tg_ks *ks;
    pthread_t thread;
    char sock[300];
};

static void *server_main(void *arg)
{
    struct server *s = arg;
    int rc = tg_ks_run(s->ks);
    assert_int_equal(rc, TG_OK);
    return NULL;
}

/* A server for the YAML in ks (socket and keys added). */
static int server_try(struct server *s, const char *extra, const char *keys, char *err,
                      size_t errlen)
{
    static int seq;
    memset(s, 0, sizeof(*s));
    snprintf(s->sock, sizeof(s->sock), "%s/ks%d.sock", tg_test_tmpdir(), seq++);
    char yaml[4096];
    snprintf(yaml, sizeof(yaml),
             "keyserver:\n  socket: %s\n%s"
             "keys:\n%s",
             s->sock, extra ? extra : "", keys);
    int rc = tg_config_load_keyserver_buffer("ks.yaml", yaml, strlen(yaml), &s->cfg, err, errlen);
    if (rc != TG_OK)
        return rc;
    s->loop = ev_loop_new(EVFLAG_AUTO);
    rc = tg_ks_new(s->cfg, s->loop, &s->ks, err, errlen);
    if (rc != TG_OK) {
        ev_loop_destroy(s->loop);
        tg_config_free(s->cfg);
    }
    return rc;
}

static const char *default_keys(void)
{
    static char keys[2048];
    snprintf(keys, sizeof(keys),
             "  - private_key: { filename: %s }\n"
             "    certificate_chain: { filename: %s }\n"
             "  - private_key: { filename: %s }\n"
             "    private_key_provider: { provider_name: deferred }\n",
             g_ec_key, g_ec_cert, g_rsa_key);
    return keys;
}

static void server_start(struct server *s, const char *extra, const char *keys)
{
    char err[TG_CONFIG_ERRLEN] = "";
    if (server_try(s, extra, keys ? keys : default_keys(), err, sizeof(err)) != TG_OK)
        fail_msg("key server: %s", err);
    assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
}

static void server_stop(struct server *s)
{
    tg_ks_request_stop(s->ks);
    assert_int_equal(pthread_join(s->thread, NULL), 0);
    tg_ks_free(s->ks);
    ev_loop_destroy(s->loop);
    tg_config_free(s->cfg);
    tg_keyprov_shutdown();
    /* The socket file goes with the server. */
    struct stat st;
    assert_int_not_equal(stat(s->sock, &st), 0);
}

/* ---- a blocking client ---- */

struct client {
    int fd;
    uint8_t buf[8 * TG_KSP_FRAME_MAX];
    size_t have;
};

static int client_connect(struct client *c, const char *path)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c->fd >= 0);
    struct timeval tv = {30, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    return connect(c->fd, (struct sockaddr *)&sa, sizeof(sa));
}

static void client_send(struct client *c, const struct tg_ksp_msg *m)
{
    uint8_t out[TG_KSP_FRAME_MAX];
    size_t n = tg_ksp_encode(m, out, sizeof(out));
    assert_true(n > 0);
    assert_int_equal(send(c->fd, out, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* The next message; false at EOF. */
static bool client_read(struct client *c, struct tg_ksp_msg *m)
{
    for (;;) {
        struct tg_ksp_frame f;
        size_t used;
        const char *why;
        int rc = tg_ksp_frame_parse(c->buf, c->have, &f, &used, &why);
        if (rc == TG_OK) {
            assert_int_equal(tg_ksp_decode(&f, m, &why), TG_OK);
            memmove(c->buf, c->buf + used, c->have - used);
            c->have -= used;
            return true;
        }
        assert_int_equal(rc, TG_EAGAIN);
        ssize_t n = recv(c->fd, c->buf + c->have, sizeof(c->buf) - c->have, 0);
        if (n <= 0) {
            assert_true(n == 0 || errno == ECONNRESET); /* not a timeout */
            return false;
        }
        c->have += (size_t)n;
    }
}

static void client_hello(struct client *c, uint32_t mif)
{
    struct tg_ksp_msg m = {.type = TG_KSP_HELLO, .max_in_flight = mif};
    snprintf(m.text, sizeof(m.text), "unit test");
    client_send(c, &m);
    assert_true(client_read(c, &m));
    assert_int_equal(m.type, TG_KSP_HELLO_REPLY);
    assert_int_equal(m.status, TG_KSP_ST_OK);
}

static void send_sign(struct client *c, uint32_t id, const uint8_t *key_id, uint8_t alg,
                      const uint8_t *digest)
{
    struct tg_ksp_msg m = {.type = TG_KSP_SIGN, .id = id, .alg = alg, .datalen = 32, .hint = 3};
    memcpy(m.key_id, key_id, 32);
    if (alg != TG_KSP_ALG_ECDSA)
        m.md = TG_KSP_MD_SHA256;
    if (alg == TG_KSP_ALG_RSA_PSS) {
        m.mgf1 = TG_KSP_MD_SHA256;
        m.saltlen = 32;
    }
    memcpy(m.data, digest, 32);
    client_send(c, &m);
}

static void verify(EVP_PKEY *pub, uint8_t alg, const uint8_t *digest, const uint8_t *sig,
                   size_t siglen)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pub, NULL);
    assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
    if (alg != TG_KSP_ALG_ECDSA) {
        assert_true(EVP_PKEY_CTX_set_rsa_padding(ctx, alg == TG_KSP_ALG_RSA_PSS
                                                          ? RSA_PKCS1_PSS_PADDING
                                                          : RSA_PKCS1_PADDING) > 0);
        assert_true(EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) > 0);
        if (alg == TG_KSP_ALG_RSA_PSS)
            assert_true(EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, 32) > 0);
    }
    assert_int_equal(EVP_PKEY_verify(ctx, sig, siglen, digest, 32), 1);
    EVP_PKEY_CTX_free(ctx);
}

/* ---- set-up ---- */

static void make_key(const char *alg, const char *name, char *key_path, char *cert_path,
                     uint8_t *id, EVP_PKEY **pub)
{
    char *cert, *key, n[64];
    tg_test_make_cert(alg, "ks.test", &cert, &key);
    snprintf(n, sizeof(n), "%s.key", name);
    snprintf(key_path, 512, "%s", tg_test_write_file(n, key, strlen(key)));
    snprintf(n, sizeof(n), "%s.pem", name);
    snprintf(cert_path, 512, "%s", tg_test_write_file(n, cert, strlen(cert)));
    BIO *b = BIO_new_mem_buf(cert, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    *pub = X509_get_pubkey(x);
    assert_int_equal(tg_ksp_key_id(*pub, id), TG_OK);
    X509_free(x);
    free(cert);
    free(key);
}

static int setup(void **state)
{
    (void)state;
    make_key("EC:P-256", "ec", g_ec_key, g_ec_cert, g_ec_id, &g_ec_pub);
    make_key("RSA:2048", "rsa", g_rsa_key, g_rsa_cert, g_rsa_id, &g_rsa_pub);
    tg_config_set_known_providers(tg_keyprov_names());
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(g_ec_pub);
    EVP_PKEY_free(g_rsa_pub);
    return 0;
}

/* ---- tests ---- */

static void test_sign_and_lookup(void **state)
{
    (void)state;
    struct server s;
    server_start(&s, NULL, NULL);
    struct client c;
    assert_int_equal(client_connect(&c, s.sock), 0);
    client_hello(&c, 64);
    uint8_t digest[32];
    memset(digest, 0x17, sizeof(digest));
    /* ECDSA inline (software), RSA PSS and PKCS#1 later (deferred). */
    send_sign(&c, 1, g_ec_id, TG_KSP_ALG_ECDSA, digest);
    send_sign(&c, 2, g_rsa_id, TG_KSP_ALG_RSA_PSS, digest);
    send_sign(&c, 3, g_rsa_id, TG_KSP_ALG_RSA_PKCS1, digest);
    uint8_t unknown[32] = {1, 2, 3};
    send_sign(&c, 4, unknown, TG_KSP_ALG_ECDSA, digest);
    send_sign(&c, 5, g_rsa_id, TG_KSP_ALG_ECDSA, digest); /* not an EC key */
    bool seen[6] = {false};
    for (int i = 0; i < 5; i++) {
        struct tg_ksp_msg m;
        assert_true(client_read(&c, &m));
        assert_int_equal(m.type, TG_KSP_SIGN_REPLY);
        assert_true(m.id >= 1 && m.id <= 5 && !seen[m.id]);
        seen[m.id] = true;
        if (m.id == 1)
            verify(g_ec_pub, TG_KSP_ALG_ECDSA, digest, m.data, m.datalen);
        if (m.id == 2)
            verify(g_rsa_pub, TG_KSP_ALG_RSA_PSS, digest, m.data, m.datalen);
        if (m.id == 3)
            verify(g_rsa_pub, TG_KSP_ALG_RSA_PKCS1, digest, m.data, m.datalen);
        assert_int_equal(m.status, m.id == 4   ? TG_KSP_ST_UNKNOWN_KEY
                                   : m.id == 5 ? TG_KSP_ST_BAD_REQUEST
                                               : TG_KSP_ST_OK);
    }
    /* Lookups. */
    struct tg_ksp_msg m = {.type = TG_KSP_LOOKUP, .id = 9};
    memcpy(m.key_id, g_rsa_id, 32);
    client_send(&c, &m);
    assert_true(client_read(&c, &m));
    assert_int_equal(m.type, TG_KSP_LOOKUP_REPLY);
    assert_int_equal(m.status, TG_KSP_ST_OK);
    assert_int_equal(m.key_type, TG_KSP_KEY_RSA);
    assert_int_equal(m.key_bits, 2048);
    m = (struct tg_ksp_msg){.type = TG_KSP_LOOKUP, .id = 10};
    client_send(&c, &m);
    assert_true(client_read(&c, &m));
    assert_int_equal(m.status, TG_KSP_ST_UNKNOWN_KEY);
    /* Stats. */
    struct tg_buf out = TG_BUF_INIT;
    tg_ks_render(s.ks, &out);
    assert_non_null(
        strstr(out.data, "tlsgate_keyserver_requests_total{type=\"sign\",status=\"ok\"} 3"));
    assert_non_null(strstr(
        out.data, "tlsgate_keyserver_requests_total{type=\"sign\",status=\"unknown_key\"} 1"));
    assert_non_null(strstr(
        out.data, "tlsgate_keyserver_requests_total{type=\"sign\",status=\"bad_request\"} 1"));
    assert_non_null(
        strstr(out.data, "tlsgate_keyserver_requests_total{type=\"lookup\",status=\"ok\"} 1"));
    assert_non_null(strstr(out.data, "tlsgate_keyserver_connections_active 1"));
    assert_non_null(strstr(out.data, "tlsgate_keyserver_info{version="));
    assert_non_null(strstr(out.data, "tlsgate_keyprov_operations_total{provider=\"deferred\""));
    tg_buf_free(&out);
    close(c.fd);
    server_stop(&s);
}

static void test_pipelined(void **state)
{
    (void)state;
    struct server s;
    server_start(&s, "  max_in_flight: 8\n", NULL);
    struct client c;
    assert_int_equal(client_connect(&c, s.sock), 0);
    client_hello(&c, 1000); /* granted: 8 */
    uint8_t digest[32];
    memset(digest, 0x33, sizeof(digest));
    /* 300 requests in one go, more than may be in flight: the server reads
     * them as room frees, and answers each once. */
    enum { N = 300 };
    uint8_t *burst = malloc(N * TG_KSP_FRAME_MAX);
    size_t len = 0;
    for (uint32_t i = 1; i <= N; i++) {
        struct tg_ksp_msg m = {
            .type = TG_KSP_SIGN, .id = i, .alg = TG_KSP_ALG_ECDSA, .datalen = 32};
        memcpy(m.key_id, i % 2 ? g_ec_id : g_rsa_id, 32);
        if (i % 2 == 0) {
            m.alg = TG_KSP_ALG_RSA_PKCS1;
            m.md = TG_KSP_MD_SHA256;
        }
        memcpy(m.data, digest, 32);
        len += tg_ksp_encode(&m, burst + len, TG_KSP_FRAME_MAX);
    }
    assert_int_equal(send(c.fd, burst, len, MSG_NOSIGNAL), (ssize_t)len);
    free(burst);
    static bool seen[N + 1];
    memset(seen, 0, sizeof(seen));
    for (int i = 0; i < N; i++) {
        struct tg_ksp_msg m;
        assert_true(client_read(&c, &m));
        assert_int_equal(m.status, TG_KSP_ST_OK);
        assert_true(m.id >= 1 && m.id <= N && !seen[m.id]);
        seen[m.id] = true;
    }
    close(c.fd);
    server_stop(&s);
}

static void test_busy_and_stop_answers_pending(void **state)
{
    (void)state;
    struct server s;
    char keys[1024];
    /* A deferred provider that holds every request for an hour: only the
     * stop completes them. */
    snprintf(keys, sizeof(keys),
             "  - private_key: { filename: %s }\n"
             "    private_key_provider: { provider_name: deferred, typed_config: { delay: 1h } }\n",
             g_ec_key);
    server_start(&s, "  max_queue: 4\n", keys);
    struct client c;
    assert_int_equal(client_connect(&c, s.sock), 0);
    client_hello(&c, 64);
    uint8_t digest[32] = {9};
    for (uint32_t i = 1; i <= 6; i++)
        send_sign(&c, i, g_ec_id, TG_KSP_ALG_ECDSA, digest);
    /* Two over max_queue: BUSY at once. */
    for (int i = 0; i < 2; i++) {
        struct tg_ksp_msg m;
        assert_true(client_read(&c, &m));
        assert_int_equal(m.status, TG_KSP_ST_BUSY);
        assert_true(m.id == 5 || m.id == 6);
    }
    /* Stop: the four are completed and answered before the close. */
    tg_ks_request_stop(s.ks);
    for (int i = 0; i < 4; i++) {
        struct tg_ksp_msg m;
        assert_true(client_read(&c, &m));
        assert_int_equal(m.type, TG_KSP_SIGN_REPLY);
        assert_int_equal(m.status, TG_KSP_ST_OK);
        verify(g_ec_pub, TG_KSP_ALG_ECDSA, digest, m.data, m.datalen);
    }
    /* Then the goodbye: every request read was answered. */
    struct tg_ksp_msg m;
    assert_true(client_read(&c, &m));
    assert_int_equal(m.type, TG_KSP_ERROR);
    assert_int_equal(m.status, TG_KSP_ST_SHUTTING_DOWN);
    assert_int_equal(m.id, 0);
    assert_false(client_read(&c, &m));
    close(c.fd);
    server_stop(&s);
}

static void test_protocol_errors(void **state)
{
    (void)state;
    struct server s;
    server_start(&s, NULL, NULL);
    struct client c;
    struct tg_ksp_msg m;
    /* Not a hello first. */
    assert_int_equal(client_connect(&c, s.sock), 0);
    m = (struct tg_ksp_msg){.type = TG_KSP_LOOKUP, .id = 1};
    client_send(&c, &m);
    assert_true(client_read(&c, &m));
    assert_int_equal(m.type, TG_KSP_ERROR);
    assert_int_equal(m.status, TG_KSP_ST_PROTOCOL);
    assert_string_equal(m.text, "expected hello first");
    assert_false(client_read(&c, &m));
    close(c.fd);
    /* Garbage after a good hello. */
    assert_int_equal(client_connect(&c, s.sock), 0);
    client_hello(&c, 4);
    assert_int_equal(send(c.fd, "\0\0\0\x10garbage!", 12, MSG_NOSIGNAL), 12);
    assert_true(client_read(&c, &m));
    assert_int_equal(m.type, TG_KSP_ERROR);
    assert_false(client_read(&c, &m));
    close(c.fd);
    /* A reply type from a client. */
    assert_int_equal(client_connect(&c, s.sock), 0);
    client_hello(&c, 4);
    m = (struct tg_ksp_msg){.type = TG_KSP_SIGN_REPLY, .id = 3, .status = TG_KSP_ST_BUSY};
    client_send(&c, &m);
    assert_true(client_read(&c, &m));
    assert_int_equal(m.type, TG_KSP_ERROR);
    close(c.fd);
    /* The server still serves. */
    assert_int_equal(client_connect(&c, s.sock), 0);
    client_hello(&c, 4);
    uint8_t digest[32] = {1};
    send_sign(&c, 1, g_ec_id, TG_KSP_ALG_ECDSA, digest);
    assert_true(client_read(&c, &m));
    assert_int_equal(m.status, TG_KSP_ST_OK);
    close(c.fd);
    struct tg_buf out = TG_BUF_INIT;
    tg_ks_render(s.ks, &out);
    assert_non_null(strstr(
        out.data, "tlsgate_keyserver_connections_closed_total{reason=\"protocol_error\"} 3"));
    tg_buf_free(&out);
    server_stop(&s);
}

static void test_half_frame_times_out(void **state)
{
    (void)state;
    struct server s;
    server_start(&s, "  request_timeout: 50ms\n", NULL);
    struct client c;
    assert_int_equal(client_connect(&c, s.sock), 0);
    client_hello(&c, 4);
    /* Half a SIGN, then nothing: the server gives up on it. */
    assert_int_equal(send(c.fd, "\0\0\0\x48\x01\x05\0\0\0\0\0\x01", 12, MSG_NOSIGNAL), 12);
    struct tg_ksp_msg m;
    assert_true(client_read(&c, &m));
    assert_int_equal(m.type, TG_KSP_ERROR);
    assert_non_null(strstr(m.text, "timeout"));
    assert_false(client_read(&c, &m));
    close(c.fd);
    server_stop(&s);
}

static void test_allow_list_and_limits(void **state)
{
    (void)state;
    struct server s;
    /* Only uid 4242 may connect: this process is refused. */
    server_start(&s, "  allowed_uids: [4242]\n", NULL);
    struct client c;
    assert_int_equal(client_connect(&c, s.sock), 0);
    struct tg_ksp_msg m;
    assert_true(client_read(&c, &m));
    assert_int_equal(m.type, TG_KSP_ERROR);
    assert_int_equal(m.status, TG_KSP_ST_NOT_ALLOWED);
    assert_non_null(strstr(m.text, "not allowed"));
    assert_false(client_read(&c, &m));
    close(c.fd);
    struct tg_buf out = TG_BUF_INIT;
    tg_ks_render(s.ks, &out);
    assert_non_null(
        strstr(out.data, "tlsgate_keyserver_connections_refused_total{reason=\"not_allowed\"} 1"));
    tg_buf_free(&out);
    server_stop(&s);

    /* This process's gid in allowed_gids is enough. */
    char extra[128];
    snprintf(extra, sizeof(extra), "  allowed_uids: [4242]\n  allowed_gids: [%u]\n",
             (unsigned)getegid());
    server_start(&s, extra, NULL);
    assert_int_equal(client_connect(&c, s.sock), 0);
    client_hello(&c, 4);
    close(c.fd);
    server_stop(&s);

    /* max_connections: the second one is told so and closed. */
    server_start(&s, "  max_connections: 1\n", NULL);
    struct client a;
    assert_int_equal(client_connect(&a, s.sock), 0);
    client_hello(&a, 4);
    assert_int_equal(client_connect(&c, s.sock), 0);
    assert_true(client_read(&c, &m));
    assert_int_equal(m.type, TG_KSP_ERROR);
    assert_int_equal(m.status, TG_KSP_ST_LIMIT);
    close(c.fd);
    close(a.fd);
    server_stop(&s);
}

static void test_socket_file(void **state)
{
    (void)state;
    char err[TG_CONFIG_ERRLEN];
    /* A stale socket file (nobody listens on it) is replaced. */
    struct server s;
    server_start(&s, NULL, NULL);
    char path[300];
    snprintf(path, sizeof(path), "%s", s.sock);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0660);
    /* A second server on the same socket is refused while the first runs. */
    struct tg_config *cfg = NULL;
    char yaml[4096];
    snprintf(yaml, sizeof(yaml), "keyserver: { socket: %s }\nkeys:\n%s", path, default_keys());
    assert_int_equal(
        tg_config_load_keyserver_buffer("ks.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)),
        TG_OK);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct tg_ks *ks = NULL;
    assert_int_equal(tg_ks_new(cfg, loop, &ks, err, sizeof(err)), TG_EIO);
    assert_non_null(strstr(err, "another key server is running on it"));
    server_stop(&s);
    /* Left behind by a server that died: a socket nobody listens on. */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);
    assert_int_equal(tg_ks_new(cfg, loop, &ks, err, sizeof(err)), TG_OK);
    tg_ks_free(ks);
    tg_keyprov_shutdown();
    /* Not a socket. */
    FILE *f = fopen(path, "w");
    fclose(f);
    assert_int_equal(tg_ks_new(cfg, loop, &ks, err, sizeof(err)), TG_EIO);
    assert_non_null(strstr(err, "exists and is not a socket"));
    unlink(path);
    tg_keyprov_shutdown();
    ev_loop_destroy(loop);
    tg_config_free(cfg);
}

static void test_startup_errors(void **state)
{
    (void)state;
    struct server s;
    char err[TG_CONFIG_ERRLEN] = "", keys[2048];
    /* The EC key with the RSA certificate. */
    snprintf(keys, sizeof(keys),
             "  - private_key: { filename: %s }\n    certificate_chain: { filename: %s }\n",
             g_ec_key, g_rsa_cert);
    assert_int_equal(server_try(&s, NULL, keys, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "keys[0].certificate_chain: the certificate does not match"));
    /* The same key twice. */
    snprintf(keys, sizeof(keys),
             "  - private_key: { filename: %s }\n  - private_key: { filename: %s }\n", g_ec_key,
             g_ec_key);
    assert_int_equal(server_try(&s, NULL, keys, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "keys[1]: the same key as keys[0]"));
    /* A provider that does not hold keys, without a key. */
    snprintf(keys, sizeof(keys),
             "  - certificate_chain: { filename: %s }\n"
             "    private_key_provider: { provider_name: deferred }\n",
             g_ec_cert);
    assert_int_equal(server_try(&s, NULL, keys, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "does not hold private keys"));
    tg_keyprov_shutdown();
    /* Nothing was left behind. */
    struct stat st;
    assert_int_not_equal(stat(s.sock, &st), 0);
}

int main(void)
{
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider, &tg_deferred_provider);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_and_lookup),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_busy_and_stop_answers_pending),
        cmocka_unit_test(test_protocol_errors),
        cmocka_unit_test(test_half_frame_times_out),
        cmocka_unit_test(test_allow_list_and_limits),
        cmocka_unit_test(test_socket_file),
        cmocka_unit_test(test_startup_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
