/*
 * tg_ppio: the PROXY protocol where it meets a socket and a TLS connection.
 *
 *   - tg_ppio_recv reads the header a load balancer sent at the head of a
 *     non-blocking socket, and exactly its bytes: it peeks (MSG_PEEK) to
 *     find where the header ends, then receives that many, so the TLS
 *     ClientHello that follows stays in the socket for libssl.
 *   - tg_ppio_build writes the header tlsgate sends its upstream, from the
 *     client's addresses and the established TLS connection.
 *
 * The bytes are parsed and written by tg_proxyproto; this module adds the
 * system calls and the OpenSSL queries. Owner: the connection's worker
 * thread; no global state.
 */
#ifndef TG_PPIO_H
#define TG_PPIO_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <sys/socket.h>

#include "core/tg_err.h"
#include "proxy/tg_proxyproto.h"

/* The bytes of a header that is arriving in pieces (opaque). */
struct tg_ppio_rx;

/*
 * Read the PROXY header at the head of fd (non-blocking). *rx is NULL the
 * first time. When the bytes so far are only the beginning of a header they
 * are consumed (all of them belong to the header, or it is invalid anyway)
 * into a buffer allocated here and kept in *rx until the call that finishes;
 * a header that comes in one piece needs no allocation. *rx is freed and set
 * to NULL whenever the result is not TG_EAGAIN; tg_ppio_rx_free drops it
 * when the caller gives up first (timeout, shutdown).
 *
 *   TG_OK       *out holds the header's version, command and addresses (its
 *               TLV strings are cleared: they pointed into a buffer that is
 *               gone); exactly the header's bytes were consumed.
 *   TG_EAGAIN   wait until fd is readable and call again.
 *   TG_ECLOSED  end of stream or reset: *why is NULL when it came before any
 *               byte (a TCP health check), else "closed inside the header".
 *   TG_EPROTO   not a valid header (tg_pp_parse): *why says why,
 *               out->version what the signature said (0: none at all).
 *   TG_ENOMEM, TG_EIO  (*why says which).
 */
int tg_ppio_recv(int fd, struct tg_ppio_rx **rx, struct tg_pp_hdr *out,
                 const char **why) TG_MUST_CHECK;
void tg_ppio_rx_free(struct tg_ppio_rx *rx);

/*
 * The header for an upstream, into out[0..cap): version 1 or 2, src the
 * client and dst the address it connected to (both AF_INET or both AF_INET6,
 * else v1 UNKNOWN / v2 UNSPEC). Version 2 adds, from ssl (an established
 * server-side connection):
 *   PP2_TYPE_AUTHORITY  the SNI host name, when the client sent one;
 *   PP2_TYPE_ALPN       the negotiated protocol, when there is one;
 *   PP2_TYPE_SSL        client = PP2_CLIENT_SSL, plus PP2_CLIENT_CERT_SESS
 *                       when the session holds a client certificate and
 *                       PP2_CLIENT_CERT_CONN when it was presented on this
 *                       connection (not resumed); verify = 0 when that
 *                       certificate verified, its X509_V_ERR_* code when not,
 *                       1 (X509_V_ERR_UNSPECIFIED) without one; sub-TLVs
 *                       PP2_SUBTYPE_SSL_VERSION ("TLSv1.3") and
 *                       PP2_SUBTYPE_SSL_CIPHER (OpenSSL's name).
 * cn: the verified client certificate's subject CN for PP2_SUBTYPE_SSL_CN,
 * or NULL (what tlsgate passes until it verifies client certificates).
 * Errors as tg_pp_build's.
 */
int tg_ppio_build(int version, SSL *ssl, const struct sockaddr_storage *src,
                  const struct sockaddr_storage *dst, const char *cn, void *out, size_t cap,
                  size_t *len) TG_MUST_CHECK;

#endif
