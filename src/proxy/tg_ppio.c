/*
 * tg_ppio: reading a PROXY header off a socket, writing one for an upstream.
 * Contract in tg_ppio.h.
 */
#include "proxy/tg_ppio.h"

#include <errno.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

struct tg_ppio_rx {
    size_t len; /* header bytes consumed so far */
    uint8_t buf[TG_PP_HDR_MAX];
};

void tg_ppio_rx_free(struct tg_ppio_rx *rx)
{
    free(rx);
}

/* Receive exactly n bytes the peek saw: they are in the socket already. */
static int tg_ppio_take(int fd, uint8_t *to, size_t n, const char **why)
{
    while (n > 0) {
        ssize_t r = recv(fd, to, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || (size_t)r > n) {
            *why = "bytes seen by MSG_PEEK could not be received";
            return TG_EIO;
        }
        to += r;
        n -= (size_t)r;
    }
    return TG_OK;
}

static int tg_ppio_recv_once(int fd, struct tg_ppio_rx **rxp, uint8_t *stackbuf,
                             struct tg_pp_hdr *out, const char **why)
{
    struct tg_ppio_rx *rx = *rxp;
    uint8_t *buf = rx != NULL ? rx->buf : stackbuf;
    size_t have = rx != NULL ? rx->len : 0;
    ssize_t n;
    do
        n = recv(fd, buf + have, TG_PP_HDR_MAX - have, MSG_PEEK);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return TG_EAGAIN;
    if (n <= 0) {
        /* EOF, or a reset or other error on the connection. */
        *why = have > 0 ? "closed inside the header" : NULL;
        return TG_ECLOSED;
    }
    size_t used;
    int rc = tg_pp_parse(buf, have + (size_t)n, out, &used, why);
    if (rc == TG_OK) {
        TG_ASSERT(used > have);
        TG_GUARD(tg_ppio_take(fd, buf + have, used - have, why));
        /* The TLVs point into buf: not for the caller. */
        memset(&out->authority, 0, sizeof(out->authority));
        memset(&out->alpn, 0, sizeof(out->alpn));
        memset(&out->ssl, 0, sizeof(out->ssl));
        return TG_OK;
    }
    if (rc != TG_EAGAIN)
        return rc;
    /* Every byte so far is part of the header (or the header is invalid
     * and the connection closes): take them, so the socket stops reading
     * as readable until more arrive. */
    if (rx == NULL) {
        rx = malloc(sizeof(*rx));
        if (rx == NULL) {
            *why = "out of memory";
            return TG_ENOMEM;
        }
        rx->len = 0;
        *rxp = rx;
    }
    TG_GUARD(tg_ppio_take(fd, rx->buf + have, (size_t)n, why));
    rx->len = have + (size_t)n;
    return TG_EAGAIN;
}

int tg_ppio_recv(int fd, struct tg_ppio_rx **rx, struct tg_pp_hdr *out, const char **why)
{
    uint8_t stackbuf[TG_PP_HDR_MAX];
    *why = NULL;
    memset(out, 0, sizeof(*out));
    int rc = tg_ppio_recv_once(fd, rx, stackbuf, out, why);
    if (rc != TG_EAGAIN) {
        tg_ppio_rx_free(*rx);
        *rx = NULL;
    }
    return rc;
}

static struct tg_pp_str tg_ppio_str(const char *s)
{
    return (struct tg_pp_str){s, s != NULL ? strlen(s) : 0};
}

int tg_ppio_build(int version, SSL *ssl, const struct sockaddr_storage *src,
                  const struct sockaddr_storage *dst, const char *cn, void *out, size_t cap,
                  size_t *len)
{
    struct tg_pp_hdr h;
    memset(&h, 0, sizeof(h));
    h.version = version;
    h.src = *src;
    h.dst = *dst;
    if (version == 2 && ssl != NULL) {
        h.authority = tg_ppio_str(SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
        const unsigned char *alpn = NULL;
        unsigned alpn_len = 0;
        SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
        if (alpn != NULL && alpn_len > 0)
            h.alpn = (struct tg_pp_str){(const char *)alpn, alpn_len};
        h.ssl.present = true;
        h.ssl.client = TG_PP2_CLIENT_SSL;
        h.ssl.verify = X509_V_ERR_UNSPECIFIED;
        if (SSL_get0_peer_certificate(ssl) != NULL) {
            h.ssl.client |= TG_PP2_CLIENT_CERT_SESS;
            if (!SSL_session_reused(ssl))
                h.ssl.client |= TG_PP2_CLIENT_CERT_CONN;
            h.ssl.verify = (uint32_t)SSL_get_verify_result(ssl);
        }
        h.ssl.version = tg_ppio_str(SSL_get_version(ssl));
        h.ssl.cipher = tg_ppio_str(SSL_get_cipher_name(ssl));
        /* The client-certificate feature passes the verified subject's CN. */
        h.ssl.cn = tg_ppio_str(cn);
    }
    return tg_pp_build(&h, out, cap, len);
}
