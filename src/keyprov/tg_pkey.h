/*
 * tg_pkey: key material as the key providers see it.
 *
 * struct tg_pkey is a certificate's private key, in one of two kinds:
 *
 *  - a software key (tg_pkey_load_pem, tg_pkey_from_evp): the software
 *    EVP_PKEY (default provider; the software path and every fallback use it)
 *    plus the raw components batching/offload providers need (RSA CRT parts,
 *    EC scalar);
 *  - a provider-held key (tg_pkey_from_public): the private key lives outside
 *    this process (an HSM, a remote key server) and only the provider that
 *    made it can use it. It has the public half only: sw == NULL, every
 *    private component NULL, and prov_key is the provider's handle. Nothing
 *    can compute with it in software, so it never falls back (tg_keyprov.h).
 *
 * Either kind is immutable once built and shared, refcounted, by every
 * thread. Private components are wiped when the last reference goes.
 *
 * struct tg_kxkey is an ephemeral key-exchange key (X25519, P-256, P-384,
 * P-521) or a peer's public share. It belongs to one connection (one thread).
 */
#ifndef TG_PKEY_H
#define TG_PKEY_H

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/tg_err.h"

enum tg_pkey_type { TG_PKEY_RSA = 1, TG_PKEY_EC = 2 };

/* RSA modulus sizes a certificate's key may have. Every buffer that holds a
 * signature (TG_KEYOP_OUT_MAX) is sized from the largest. */
#define TG_PKEY_RSA_MIN_BITS 2048
#define TG_PKEY_RSA_MAX_BITS 8192
/* Largest signature of an accepted key, in bytes (RSA-8192). */
#define TG_PKEY_SIG_MAX (TG_PKEY_RSA_MAX_BITS / 8)

struct tg_keyprov_binding;

struct tg_pkey {
    _Atomic int refs;
    enum tg_pkey_type type;
    int bits;       /* modulus size (RSA) or field size (EC) */
    size_t sig_max; /* maximum signature length in bytes */
    EVP_PKEY *sw;   /* default provider, holds the private key; NULL: provider-held */
    EVP_PKEY *pub;  /* default provider, public half only (for checks) */
    /* RSA (NULL for EC): owned, private ones are BN_secure/clear-freed. */
    BIGNUM *n, *e, *d, *p, *q, *dmp1, *dmq1, *iqmp;
    /* EC (0/NULL for RSA). */
    int curve_nid;     /* NID_X9_62_prime256v1, NID_secp384r1, NID_secp521r1 */
    const char *group; /* "P-256", "P-384", "P-521" */
    BIGNUM *priv;
    unsigned char pub_point[133]; /* uncompressed point */
    size_t pub_point_len;
    /* Which key provider serves this key (set by the TLS layer at start). */
    const struct tg_keyprov_binding *binding;
    char *label; /* for logs: the config path of the certificate */
    /* Set once the configuration that served it is gone (tg_pkey_retire):
     * no new operation will name it, so per-worker caches of derived forms
     * (qat's device copies) may drop their entry. */
    _Atomic bool retired;
    /* Provider-held keys only: the provider's handle and how to release it.
     * prov_key_free runs once, on whichever thread drops the last reference,
     * possibly after the provider's global_cleanup: it must only free the
     * handle, never call into a library the cleanup may have unloaded. */
    void *prov_key;
    void (*prov_key_free)(void *prov_key);
};

/* Parse a PEM private key (RSA or EC; PKCS#1, SEC1 or PKCS#8). On failure
 * returns TG_ECONFIG (unsupported type/curve) or TG_ECRYPTO with a reason in
 * why. The PEM buffer is not retained. */
int tg_pkey_load_pem(const char *pem, size_t len, struct tg_pkey **out, char *why,
                     size_t whylen) TG_MUST_CHECK;
/* Wrap an existing default-provider EVP_PKEY (takes a reference). */
int tg_pkey_from_evp(EVP_PKEY *sw, struct tg_pkey **out, char *why, size_t whylen) TG_MUST_CHECK;
/*
 * A provider-held key (see above) from its public half.
 *   pub:       an RSA (2048..8192 bits) or EC (P-256, P-384, P-521) public key
 *              from any provider; only its public parts are read, no
 *              reference is kept (a key pair is accepted and its private
 *              half ignored).
 *   prov_key:  the provider's handle; prov_key_free (may be NULL) releases it
 *              with the last reference. Ownership passes to *out on success
 *              only: on failure the caller still owns prov_key.
 * Returns TG_OK, TG_ECONFIG (type, size or curve not supported) or TG_ECRYPTO,
 * with a reason in why. Any thread.
 */
int tg_pkey_from_public(EVP_PKEY *pub, void *prov_key, void (*prov_key_free)(void *),
                        struct tg_pkey **out, char *why, size_t whylen) TG_MUST_CHECK;
/* Whether the private key is held by a provider (no software copy). */
static inline bool tg_pkey_is_held(const struct tg_pkey *k)
{
    return k->sw == NULL;
}
struct tg_pkey *tg_pkey_ref(struct tg_pkey *k);
void tg_pkey_unref(struct tg_pkey *k);
/* Mark the key retired (any thread; NULL is fine), and read the mark. The
 * owner calls it when it stops serving the key, before dropping its
 * reference; caches that hold a reference check it to let the key go. */
void tg_pkey_retire(struct tg_pkey *k);
bool tg_pkey_is_retired(const struct tg_pkey *k);

enum tg_group {
    TG_GROUP_NONE = 0,
    TG_GROUP_X25519,
    TG_GROUP_P256,
    TG_GROUP_P384,
    TG_GROUP_P521,
    TG_GROUP_COUNT
};

/* OpenSSL short name ("X25519", "prime256v1", "secp384r1", ...); NULL for NONE. */
const char *tg_group_name(enum tg_group g);
/* Accepts OpenSSL names and aliases (X25519, P-256, prime256v1, secp256r1, ...). */
enum tg_group tg_group_from_name(const char *name);
size_t tg_group_privlen(enum tg_group g); /* 32, 32, 48, 66 */
size_t tg_group_publen(enum tg_group g);  /* 32, 65, 97, 133 (uncompressed) */
size_t tg_group_secretlen(enum tg_group g);

struct tg_kxkey {
    enum tg_group group;
    bool has_priv;
    bool has_pub;
    unsigned char priv[66]; /* big-endian scalar for EC; raw for X25519 */
    unsigned char pub[133]; /* X25519 raw u-coordinate; EC uncompressed point */
    size_t privlen;
    size_t publen;
    EVP_PKEY *sw; /* default-provider twin, built lazily by the software path; owned */
};

/* Wipes priv and frees sw; the struct itself is the caller's. */
void tg_kxkey_clear(struct tg_kxkey *k);
/* Set the public share from its TLS encoding; validates length and, for EC,
 * that the point is on the curve. */
int tg_kxkey_set_public(struct tg_kxkey *k, enum tg_group g, const unsigned char *pub,
                        size_t len) TG_MUST_CHECK;
/* Build (once) and return the software twin: private if has_priv, else public. */
EVP_PKEY *tg_kxkey_sw(struct tg_kxkey *k);
/* Free this thread's cached import contexts (call at thread exit). */
void tg_kxkey_thread_cleanup(void);

#endif
