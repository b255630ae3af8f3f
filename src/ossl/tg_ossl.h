/*
 * tg_ossl: the in-process OpenSSL 3 provider "tlsgate".
 *
 * It holds certificate private keys (struct tg_pkey) behind OpenSSL's
 * provider key interface, and implements SIGNATURE (RSA with PKCS#1 v1.5 and
 * PSS, ECDSA) and KEYEXCH (X25519, ECDH on P-256/384/521) with their KEYMGMT.
 * Every private-key operation becomes a struct tg_keyop handed to a key
 * provider through tg_keyop_run(), which pauses libssl's ASYNC job while the
 * provider works. Private key material never leaves: export of private parts
 * is refused, so libssl cannot hand a copy to another provider.
 *
 * Threading: tg_ossl_init() once on the main thread before anything else uses
 * OpenSSL; the provider's functions are then called by OpenSSL on any thread.
 */
#ifndef TG_OSSL_H
#define TG_OSSL_H

#include <openssl/evp.h>

#include "core/tg_err.h"
#include "keyprov/tg_pkey.h"

#define TG_OSSL_PROVIDER_NAME "tlsgate"
/* Property query for an SSL_CTX whose key exchange goes through tlsgate. */
#define TG_OSSL_KX_PROPQ "?provider=tlsgate"

/* Load the default provider and the tlsgate provider into the default library
 * context, and make "?provider=default" the default property query so that
 * ordinary fetches stay with OpenSSL's implementations. Idempotent. */
int tg_ossl_init(void) TG_MUST_CHECK;
/* Unload (at exit; after every SSL_CTX and key is freed). */
void tg_ossl_cleanup(void);

/* An EVP_PKEY held by the tlsgate provider that refers to key (takes a
 * reference on it). Use it with SSL_CTX_use_PrivateKey. NULL on failure. */
EVP_PKEY *tg_ossl_wrap_pkey(struct tg_pkey *key);

#endif
