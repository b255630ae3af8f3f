/*
 * tg_tls: the SSL_CTXs of a listener, built once at start-up from its config
 * and shared read-only by every worker.
 *
 * Certificates with the same server names share one SSL_CTX (so an RSA and an
 * ECDSA certificate for the same names are both offered and libssl picks by
 * the client's signature algorithms). SNI selects the SSL_CTX; an unknown or
 * absent name gets the first certificate's. Every private key is held by the
 * tlsgate OpenSSL provider and bound to its key provider.
 *
 * With tls.client_certificate every SSL_CTX of the listener asks for and
 * verifies a client certificate the same way (tg_mtls).
 *
 * Key exchange goes through the tlsgate provider when the listener's first
 * certificate's provider takes key exchange (binding->kx); then every SSL_CTX
 * of the listener is created with the "?provider=tlsgate" property query.
 */
#ifndef TG_TLS_H
#define TG_TLS_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/tg_config.h"
#include "core/tg_err.h"
#include "keyprov/tg_keyprov.h"

struct tg_tls_listener;

/* Build the listener's contexts. async_cb is installed on every SSL_CTX
 * (SSL_CTX_set_async_callback): libssl calls it when a paused key operation
 * completes. Errors are written as "FILE:LINE:COL: path: ..." into err. */
int tg_tls_listener_new(const struct tg_conf_listener *conf, SSL_async_callback_fn async_cb,
                        struct tg_tls_listener **out, char *err, size_t errlen) TG_MUST_CHECK;
void tg_tls_listener_free(struct tg_tls_listener *t);

/* The context new connections start with (SNI may switch it). */
SSL_CTX *tg_tls_listener_ctx(const struct tg_tls_listener *t);
/* Key-exchange binding for the listener's connections (NULL: inline software). */
const struct tg_keyprov_binding *tg_tls_listener_kx(const struct tg_tls_listener *t);
/* Which of the listener's certificates a key belongs to (the key a
 * connection signed with: tg_keyctx.signer): its index in
 * tls.certificates, its first name (NULL when it has none) and the key
 * provider that runs for it; -1 (and both NULL) when key is NULL or not the
 * listener's. The strings live as long as t. Any thread. */
int tg_tls_listener_cert_of(const struct tg_tls_listener *t, const struct tg_pkey *key,
                            const char **name, const char **provider);
/* The listener's client-certificate verification (tls.client_certificate),
 * NULL when it asks for none. Lives as long as t. */
struct tg_mtls;
const struct tg_mtls *tg_tls_listener_mtls(const struct tg_tls_listener *t);
/* What /stats says about one certificate a listener serves. */
struct tg_tls_cert_info {
    char names[512];   /* its SNI names, comma-separated (cut if very long) */
    char serial[96];   /* hex, upper case, as `openssl x509 -serial` prints it */
    int64_t not_after; /* Unix time; 0 if unreadable */
};
size_t tg_tls_listener_cert_count(const struct tg_tls_listener *t);
/* Certificate i (< cert_count), in configuration order. Any thread. */
void tg_tls_listener_cert_info(const struct tg_tls_listener *t, size_t i,
                               struct tg_tls_cert_info *out);
/* One line per certificate for the start-up log: names, key, provider. */
void tg_tls_listener_describe(const struct tg_tls_listener *t, const char *listener_name);

/* Host-name match used for SNI: exact (case-insensitive) or a "*.domain"
 * wildcard covering exactly one left-most label. Exposed for tests. */
bool tg_tls_name_matches(const char *pattern, const char *host);

#endif
