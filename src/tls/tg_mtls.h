/*
 * tg_mtls: client certificates (mutual TLS) of a listener,
 * tls.client_certificate.
 *
 *   - tg_mtls_new parses the block's CA certificates and CRLs once per
 *     configuration generation into one X509_STORE; tg_mtls_apply makes an
 *     SSL_CTX ask for a client certificate (mode require or optional),
 *     verify it against that store (CRLs of every CA in the chain when a
 *     crl is given; verify_depth), name the CAs in its CertificateRequest,
 *     and refuse to resume a session whose client certificate has expired
 *     since (a full handshake, and its verification, happen instead).
 *   - tg_mtls_failure tells, after a failed handshake, whether and why the
 *     client's certificate was refused; tg_mtls_outcome, after a finished
 *     one, what it presented.
 *   - tg_mtls_peer_get describes the client's certificate of an established
 *     connection (struct tg_tls_peer): what the access log and the PROXY
 *     protocol header pass on.
 *
 * What OpenSSL does by itself, and tlsgate relies on: a certificate that
 * does not verify fails the handshake with the alert its error maps to
 * (unknown_ca, certificate_expired, certificate_revoked, bad_certificate,
 * ...), in either mode; a missing one in mode require fails it with
 * certificate_required (TLS 1.3) or handshake_failure (TLS 1.2). A resumed
 * session keeps the client certificate verified when it was made (and
 * SSL_get0_peer_certificate returns it); the session id context ties a
 * session to the listener's verification settings.
 *
 * Ownership: tg_mtls_new allocates, tg_mtls_free frees; an SSL_CTX given to
 * tg_mtls_apply holds its own references (store, CA names) and may outlive
 * the struct. Threading: built on one thread; read-only afterwards, any
 * thread (OpenSSL locks the store's look-ups).
 */
#ifndef TG_MTLS_H
#define TG_MTLS_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "config/tg_config.h"
#include "core/tg_err.h"
#include "core/tg_stats.h"

struct tg_mtls;

/* From conf (mode not OFF): every PEM certificate of conf->ca, every CRL of
 * conf->crl. Errors "FILE:LINE:COL: path.ca.filename: ..." into err: no
 * certificate, unparsable PEM, a CRL whose signature does not verify with
 * the CA of its issuer's name. An expired CA certificate, a CRL whose
 * issuer is not in `ca`, or whose nextUpdate has passed, is logged as a
 * warning (it is still used). */
int tg_mtls_new(const struct tg_conf_client_cert *conf, struct tg_mtls **out, char *err,
                size_t errlen) TG_MUST_CHECK;
void tg_mtls_free(struct tg_mtls *m);
/* Install the verification on ctx (see above), and a session id context
 * derived from the settings (mode, depth, CA and CRL bytes). TG_ENOMEM or
 * TG_ECRYPTO when OpenSSL refuses. */
int tg_mtls_apply(const struct tg_mtls *m, SSL_CTX *ctx) TG_MUST_CHECK;
int tg_mtls_mode(const struct tg_mtls *m); /* enum tg_ccert_mode */
size_t tg_mtls_ca_count(const struct tg_mtls *m);
size_t tg_mtls_crl_count(const struct tg_mtls *m);

/* After a failed server handshake on a listener with client certificates:
 * the TG_STAT_CCERT_* reason when the client's certificate was refused
 * (from the verify result, or the error queue's "peer did not return a
 * certificate", which is read, not consumed), else -1. */
int tg_mtls_failure(const SSL *ssl);
/* Why it was refused, for the debug log: OpenSSL's text of the verify
 * result, or "none sent". Static strings. */
const char *tg_mtls_why(const SSL *ssl);
/* After a finished full handshake: TG_STAT_CCERT_VERIFIED or
 * TG_STAT_CCERT_ABSENT. */
int tg_mtls_outcome(const SSL *ssl);
/* Whether a session's client certificate (if any) is within its validity
 * at `now`: a session made with a certificate that has expired since is
 * not resumed. Exposed for tests. */
bool tg_mtls_session_usable(const SSL_SESSION *sess, time_t now);

/*
 * The client certificate of an established connection, as the access log
 * and the PROXY protocol header pass it on. Filled once after the handshake
 * (the connection keeps it: struct tg_conn.peer); plain text, NUL-ended,
 * cut (never overrun) when longer than its array.
 *
 *   subject  the subject DN, RFC 2253 ("CN=alice,O=Example"), as
 *            `openssl x509 -nameopt RFC2253` and nginx's $ssl_client_s_dn
 *            print it: non-ASCII escaped as \XX
 *   cn       the subject's first commonName, UTF-8 ("" when it has none,
 *            or when it holds a NUL byte); PROXY v2's PP2_SUBTYPE_SSL_CN
 *   san      the subjectAltName entries, comma-separated, each TYPE:VALUE:
 *            DNS:, IP: (IPv4 dotted, IPv6 RFC 5952), URI:, email: (others
 *            are left out); inside a value, bytes outside 0x21..0x7e and
 *            ',' '\' are written \xHH ("" when there are none)
 *   sha256   the SHA-256 of the certificate (DER), 64 lower-case hex digits,
 *            as `openssl x509 -fingerprint -sha256` prints it without colons
 *   resumed  the certificate comes from the resumed session (it was
 *            verified on the connection that made the session)
 */
#define TG_TLS_PEER_SUBJECT_MAX 512
#define TG_TLS_PEER_CN_MAX      256
#define TG_TLS_PEER_SAN_MAX     1024
struct tg_tls_peer {
    char subject[TG_TLS_PEER_SUBJECT_MAX];
    char cn[TG_TLS_PEER_CN_MAX];
    char san[TG_TLS_PEER_SAN_MAX];
    char sha256[65];
    bool resumed;
};
/* TG_OK with *out filled when ssl's session holds a client certificate;
 * TG_EINVAL (and *out zeroed) when it has none; TG_ECRYPTO when the
 * digest fails. Any thread that owns ssl. */
int tg_mtls_peer_get(const SSL *ssl, struct tg_tls_peer *out) TG_MUST_CHECK;

/*
 * After a finished server handshake on a listener with client certificates
 * (the connection's one call): what to count, and the client's identity.
 *   TG_OK       *count: TG_STAT_CCERT_VERIFIED or _ABSENT after a full
 *               handshake, -1 after a resumed one (nothing verified now);
 *               *peer: the client's certificate described (malloc'd, the
 *               caller frees it), NULL when there is none.
 *   TG_EPROTO   a resumed session whose certificate is not valid at `now`
 *               (libssl resumes without looking at it again; tickets are
 *               refused before, this catches session-id resumption): the
 *               session is removed from session_ctx's cache, so that the
 *               client's next attempt is a full handshake that tells it why;
 *               *count: TG_STAT_CCERT_EXPIRED. The connection must not go on.
 *   TG_ENOMEM, TG_ECRYPTO  the description could not be made; the
 *               connection must not go on without the identity it proved.
 * *peer is NULL unless TG_OK.
 */
int tg_mtls_handshake_done(SSL *ssl, SSL_CTX *session_ctx, time_t now, struct tg_tls_peer **peer,
                           int *count) TG_MUST_CHECK;

#endif
