/*
 * tg_ppio (src/proxy/tg_ppio.c): reading a PROXY header off a real TCP
 * socket on 127.0.0.1 (whole, byte by byte, followed by data that must stay
 * in the socket; end of stream before and inside the header; refusals), and
 * building the upstream's header from a real TLS connection (libssl client
 * and server over a BIO pair): SNI, ALPN, version, cipher, client
 * certificate flags and verify result, the CN hook.
 *
 * Waits are bounded polls on the socket, never sleeps.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/tg_ppio.h"
#include "tg_test_util.h"

/* ---- a TCP connection on loopback: the test writes on cfd, reads sfd ---- */

static int cfd = -1, sfd = -1;

static int pair_setup(void **state)
{
    (void)state;
    tg_test_tcp_pair(&cfd, &sfd, true);
    return 0;
}

static int pair_teardown(void **state)
{
    (void)state;
    if (cfd >= 0)
        close(cfd);
    if (sfd >= 0)
        close(sfd);
    cfd = sfd = -1;
    return 0;
}

static void send_bytes(const void *p, size_t n)
{
    assert_int_equal(send(cfd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Bytes waiting on the server side now (peeked, not consumed). */
static size_t pending_now(void)
{
    char buf[4096];
    ssize_t n = recv(sfd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    assert_true(n >= 0);
    return (size_t)n;
}

/* Wait (bounded) until at least `atleast` bytes wait on the server side. */
static size_t waiting(size_t atleast)
{
    for (int i = 0; i < 5000; i++) {
        size_t n = pending_now();
        if (n >= atleast)
            return n;
        (void)poll(NULL, 0, 1);
    }
    fail_msg("bytes never arrived (want %zu)", atleast);
    return 0;
}

/* What remains in the server socket, consumed. */
static size_t drain(char *buf, size_t cap, size_t atleast)
{
    size_t n = waiting(atleast);
    assert_true(n <= cap);
    assert_int_equal(recv(sfd, buf, n, 0), (ssize_t)n);
    return n;
}

static void assert_addr(const struct sockaddr_storage *ss, const char *want)
{
    char buf[TG_PP_ADDR_TEXT];
    assert_string_equal(tg_pp_addr_text(ss, buf, sizeof(buf)), want);
}

/* ---- reading ---- */

static void test_recv_whole(void **state)
{
    (void)state;
    static const char msg[] = "PROXY TCP4 198.51.100.7 203.0.113.1 4242 443\r\n\x16\x03\x01rest";
    struct tg_ppio_rx *rx = NULL;
    struct tg_pp_hdr h;
    const char *why = "unset";
    /* Nothing yet: wait, without allocating. */
    assert_int_equal(tg_ppio_recv(sfd, &rx, &h, &why), TG_EAGAIN);
    assert_null(rx);
    send_bytes(msg, sizeof(msg) - 1);
    waiting(sizeof(msg) - 1);
    assert_int_equal(tg_ppio_recv(sfd, &rx, &h, &why), TG_OK);
    assert_null(rx);
    assert_null(why);
    assert_int_equal(h.version, 1);
    assert_addr(&h.src, "198.51.100.7:4242");
    assert_addr(&h.dst, "203.0.113.1:443");
    /* Exactly the header was taken: what follows is intact. */
    char rest[64];
    size_t n = drain(rest, sizeof(rest), 7);
    assert_int_equal(n, 7);
    assert_memory_equal(rest, "\x16\x03\x01rest", 7);
}

/* A v2 header with TLVs, one byte at a time: every byte is consumed as it
 * comes (the socket never stays readable on a partial header), the header
 * completes on its last byte, and the next byte stays in the socket. */
static void test_recv_in_pieces(void **state)
{
    (void)state;
    uint8_t msg[TG_PP_HDR_MAX];
    size_t len;
    struct tg_pp_hdr out;
    memset(&out, 0, sizeof(out));
    out.version = 2;
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out.src, *d = (struct sockaddr_in6 *)&out.dst;
    s->sin6_family = d->sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::7", &s->sin6_addr), 1);
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::1", &d->sin6_addr), 1);
    s->sin6_port = htons(50000);
    d->sin6_port = htons(443);
    out.authority = (struct tg_pp_str){"a.test", 6};
    out.ssl = (struct tg_pp_ssl){.present = true, .client = 1, .verify = 1};
    assert_int_equal(tg_pp_build(&out, msg, sizeof(msg), &len), TG_OK);

    struct tg_ppio_rx *rx = NULL;
    struct tg_pp_hdr h;
    const char *why;
    for (size_t i = 0; i + 1 < len; i++) {
        send_bytes(msg + i, 1);
        waiting(1);
        assert_int_equal(tg_ppio_recv(sfd, &rx, &h, &why), TG_EAGAIN);
        assert_non_null(rx);
        assert_int_equal(pending_now(), 0);
    }
    send_bytes(msg + len - 1, 1);
    send_bytes("X", 1);
    waiting(2);
    assert_int_equal(tg_ppio_recv(sfd, &rx, &h, &why), TG_OK);
    assert_null(rx);
    assert_int_equal(h.version, 2);
    assert_false(h.local);
    assert_addr(&h.src, "[2001:db8::7]:50000");
    assert_addr(&h.dst, "[2001:db8::1]:443");
    /* TLV strings pointed into a buffer that is gone: cleared. */
    assert_null(h.authority.p);
    assert_false(h.ssl.present);
    char rest[8];
    assert_int_equal(drain(rest, sizeof(rest), 1), 1);
    assert_int_equal(rest[0], 'X');
}

static void test_recv_eof(void **state)
{
    (void)state;
    struct tg_ppio_rx *rx = NULL;
    struct tg_pp_hdr h;
    const char *why = "unset";
    /* Closed before any byte. */
    assert_int_equal(shutdown(cfd, SHUT_WR), 0);
    for (int i = 0; i < 5000 && tg_ppio_recv(sfd, &rx, &h, &why) == TG_EAGAIN; i++)
        (void)poll(NULL, 0, 1);
    assert_int_equal(tg_ppio_recv(sfd, &rx, &h, &why), TG_ECLOSED);
    assert_null(why);
    assert_null(rx);
}

static void test_recv_truncated(void **state)
{
    (void)state;
    struct tg_ppio_rx *rx = NULL;
    struct tg_pp_hdr h;
    const char *why;
    send_bytes("PROXY TCP4 1.2.3.4 ", 19);
    waiting(19);
    assert_int_equal(tg_ppio_recv(sfd, &rx, &h, &why), TG_EAGAIN);
    assert_non_null(rx);
    assert_int_equal(shutdown(cfd, SHUT_WR), 0);
    int rc;
    for (int i = 0; i < 5000 && (rc = tg_ppio_recv(sfd, &rx, &h, &why)) == TG_EAGAIN; i++)
        (void)poll(NULL, 0, 1);
    assert_int_equal(rc, TG_ECLOSED);
    assert_string_equal(why, "closed inside the header");
    assert_null(rx);
}

/* The caller gives up on a partial header (timeout): freeing is its job. */
static void test_recv_abandoned(void **state)
{
    (void)state;
    struct tg_ppio_rx *rx = NULL;
    struct tg_pp_hdr h;
    const char *why;
    send_bytes("\r\n\r\n\0\r\n", 7);
    waiting(7);
    assert_int_equal(tg_ppio_recv(sfd, &rx, &h, &why), TG_EAGAIN);
    assert_non_null(rx);
    tg_ppio_rx_free(rx); /* under ASan: no leak */
    tg_ppio_rx_free(NULL);
}

static void test_recv_refused(void **state)
{
    (void)state;
    struct tg_ppio_rx *rx = NULL;
    struct tg_pp_hdr h;
    const char *why = NULL;
    /* A plain TLS ClientHello on a PROXY listener. */
    static const uint8_t hello[] = {0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4};
    send_bytes(hello, sizeof(hello));
    waiting(sizeof(hello));
    assert_int_equal(tg_ppio_recv(sfd, &rx, &h, &why), TG_EPROTO);
    assert_int_equal(h.version, 0);
    assert_string_equal(why, "no PROXY protocol signature");
    assert_null(rx);
}

static void test_recv_refused_later(void **state)
{
    (void)state;
    struct tg_ppio_rx *rx = NULL;
    struct tg_pp_hdr h;
    const char *why = NULL;
    /* A v2 header whose family is refused once that byte arrives. */
    static const uint8_t part1[] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49};
    static const uint8_t part2[] = {0x54, 0x0A, 0x21, 0x31, 0x00, 0x00};
    send_bytes(part1, sizeof(part1));
    waiting(sizeof(part1));
    assert_int_equal(tg_ppio_recv(sfd, &rx, &h, &why), TG_EAGAIN);
    send_bytes(part2, sizeof(part2));
    waiting(sizeof(part2));
    assert_int_equal(tg_ppio_recv(sfd, &rx, &h, &why), TG_EPROTO);
    assert_int_equal(h.version, 2);
    assert_non_null(strstr(why, "not TCP over IPv4 or IPv6"));
    assert_null(rx);
}

/* ---- building from a TLS connection ---- */

static SSL_CTX *sctx, *cctx;
static char *cert_pem, *key_pem;

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    static const unsigned char want[] = {2, 'h', '2'};
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, want, sizeof(want), in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static int accept_any(int ok, X509_STORE_CTX *x)
{
    (void)ok;
    (void)x;
    return 1;
}

static void use_pem(SSL_CTX *ctx)
{
    BIO *b = BIO_new_mem_buf(cert_pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    b = BIO_new_mem_buf(key_pem, -1);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, k), 1);
    X509_free(x);
    EVP_PKEY_free(k);
}

static int tls_setup(void **state)
{
    (void)state;
    tg_test_make_cert("EC:P-256", "a.test", &cert_pem, &key_pem);
    sctx = SSL_CTX_new(TLS_server_method());
    cctx = SSL_CTX_new(TLS_client_method());
    if (sctx == NULL || cctx == NULL)
        return -1;
    use_pem(sctx);
    SSL_CTX_set_alpn_select_cb(sctx, alpn_cb, NULL);
    SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
    return 0;
}

static int tls_teardown(void **state)
{
    (void)state;
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    free(cert_pem);
    free(key_pem);
    return 0;
}

struct tls_opts {
    const char *sni;
    bool alpn;
    bool tls12;
    bool client_cert;
};

/* A finished handshake between a fresh client and server; returns the
 * server's SSL (the client's in *client). */
static SSL *handshake(const struct tls_opts *o, SSL **client)
{
    SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
    assert_non_null(s);
    assert_non_null(c);
    BIO *bs, *bc;
    assert_int_equal(BIO_new_bio_pair(&bs, 0, &bc, 0), 1);
    SSL_set_bio(s, bs, bs);
    SSL_set_bio(c, bc, bc);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    if (o->sni != NULL)
        assert_int_equal(SSL_set_tlsext_host_name(c, o->sni), 1);
    if (o->alpn) {
        static const unsigned char protos[] = {8,   'h', 't', 't', 'p', '/',
                                               '1', '.', '1', 2,   'h', '2'};
        assert_int_equal(SSL_set_alpn_protos(c, protos, sizeof(protos)), 0);
    }
    if (o->tls12)
        assert_int_equal(SSL_set_max_proto_version(c, TLS1_2_VERSION), 1);
    if (o->client_cert) {
        SSL_set_verify(s, SSL_VERIFY_PEER, accept_any);
        BIO *b = BIO_new_mem_buf(cert_pem, -1);
        X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
        BIO_free(b);
        b = BIO_new_mem_buf(key_pem, -1);
        EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
        BIO_free(b);
        assert_int_equal(SSL_use_certificate(c, x), 1);
        assert_int_equal(SSL_use_PrivateKey(c, k), 1);
        X509_free(x);
        EVP_PKEY_free(k);
    }
    int cdone = 0, sdone = 0;
    for (int i = 0; i < 100 && (cdone != 1 || sdone != 1); i++) {
        if (cdone != 1)
            cdone = SSL_do_handshake(c);
        if (sdone != 1)
            sdone = SSL_do_handshake(s);
    }
    assert_int_equal(cdone, 1);
    assert_int_equal(sdone, 1);
    *client = c;
    return s;
}

static void assert_str(struct tg_pp_str s, const char *want)
{
    if (want == NULL) {
        assert_null(s.p);
        return;
    }
    assert_non_null(s.p);
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.p, want, s.len);
}

static struct sockaddr_storage ep(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *s = (struct sockaddr_in *)&ss;
    s->sin_family = AF_INET;
    s->sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, ip, &s->sin_addr), 1);
    return ss;
}

/* Build from the server side, parse back. */
static void build_parse(SSL *s, int version, const char *cn, uint8_t *buf, struct tg_pp_hdr *h)
{
    struct sockaddr_storage src = ep("192.0.2.10", 51000), dst = ep("192.0.2.1", 443);
    size_t len = 0, used = 0;
    const char *why = NULL;
    assert_int_equal(tg_ppio_build(version, s, &src, &dst, cn, buf, TG_PP_HDR_MAX, &len), TG_OK);
    assert_int_equal(tg_pp_parse(buf, len, h, &used, &why), TG_OK);
    assert_int_equal(used, len);
    assert_int_equal(h->version, version);
    assert_addr(&h->src, "192.0.2.10:51000");
    assert_addr(&h->dst, "192.0.2.1:443");
}

static void test_build_tls13(void **state)
{
    (void)state;
    struct tls_opts o = {.sni = "a.test", .alpn = true};
    SSL *c, *s = handshake(&o, &c);
    uint8_t buf[TG_PP_HDR_MAX];
    struct tg_pp_hdr h;
    build_parse(s, 2, NULL, buf, &h);
    assert_str(h.authority, "a.test");
    assert_str(h.alpn, "h2");
    assert_true(h.ssl.present);
    assert_int_equal(h.ssl.client, 0x01); /* PP2_CLIENT_SSL only */
    assert_int_equal(h.ssl.verify, 1);    /* no client certificate */
    assert_str(h.ssl.version, "TLSv1.3");
    assert_str(h.ssl.cipher, SSL_get_cipher_name(c));
    assert_str(h.ssl.cn, NULL);
    /* The CN hook. */
    build_parse(s, 2, "client.example", buf, &h);
    assert_str(h.ssl.cn, "client.example");
    /* Version 1: the line only. */
    build_parse(s, 1, NULL, buf, &h);
    assert_memory_equal(buf, "PROXY TCP4 192.0.2.10 192.0.2.1 51000 443\r\n", 43);
    assert_false(h.ssl.present);
    SSL_free(s);
    SSL_free(c);
}

static void test_build_tls12_no_sni_no_alpn(void **state)
{
    (void)state;
    struct tls_opts o = {.tls12 = true};
    SSL *c, *s = handshake(&o, &c);
    uint8_t buf[TG_PP_HDR_MAX];
    struct tg_pp_hdr h;
    build_parse(s, 2, NULL, buf, &h);
    assert_str(h.authority, NULL);
    assert_str(h.alpn, NULL);
    assert_str(h.ssl.version, "TLSv1.2");
    assert_str(h.ssl.cipher, SSL_get_cipher_name(c));
    assert_non_null(strstr(SSL_get_cipher_name(c), "ECDHE"));
    SSL_free(s);
    SSL_free(c);
}

/* A client certificate (self-signed, accepted by the callback): both
 * certificate flags, and verify carries libssl's verdict (not 0). */
static void test_build_client_cert(void **state)
{
    (void)state;
    struct tls_opts o = {.sni = "a.test", .client_cert = true};
    SSL *c, *s = handshake(&o, &c);
    assert_non_null(SSL_get0_peer_certificate(s));
    uint8_t buf[TG_PP_HDR_MAX];
    struct tg_pp_hdr h;
    build_parse(s, 2, NULL, buf, &h);
    assert_int_equal(h.ssl.client, 0x01 | 0x02 | 0x04);
    assert_int_equal(h.ssl.verify, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT);
    SSL_free(s);
    SSL_free(c);
}

int main(void)
{
    const struct CMUnitTest recv_tests[] = {
        cmocka_unit_test_setup_teardown(test_recv_whole, pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown(test_recv_in_pieces, pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown(test_recv_eof, pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown(test_recv_truncated, pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown(test_recv_abandoned, pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown(test_recv_refused, pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown(test_recv_refused_later, pair_setup, pair_teardown),
    };
    const struct CMUnitTest build_tests[] = {
        cmocka_unit_test(test_build_tls13),
        cmocka_unit_test(test_build_tls12_no_sni_no_alpn),
        cmocka_unit_test(test_build_client_cert),
    };
    int fails = cmocka_run_group_tests_name("recv", recv_tests, NULL, NULL);
    fails += cmocka_run_group_tests_name("build", build_tests, tls_setup, tls_teardown);
    return fails;
}
