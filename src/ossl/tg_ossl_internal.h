/* Internal to src/ossl. */
#ifndef TG_OSSL_INTERNAL_H
#define TG_OSSL_INTERNAL_H

#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/evp.h>

#include "keyprov/tg_keyprov.h"
#include "keyprov/tg_pkey.h"

enum tg_okey_type { TG_OKEY_RSA = 1, TG_OKEY_EC, TG_OKEY_X25519 };

/* The provider's key object (keydata). */
struct tg_okey {
    enum tg_okey_type type;
    struct tg_pkey *cert; /* certificate private key (RSA or EC), referenced */
    BIGNUM *n, *e;        /* RSA public-only key (imported for comparisons) */
    struct tg_kxkey kx;   /* EC / X25519: group, public point, ephemeral private */
};

struct tg_provctx {
    OSSL_LIB_CTX *libctx;
    const OSSL_CORE_HANDLE *handle;
};

/* Digests usable in signatures, fetched once from the default provider. */
const EVP_MD *tg_ossl_md(const char *name);

/* Import parameter carrying a registered tg_pkey (see tg_ossl.c). */
#define TG_OSSL_PARAM_PKEY "tlsgate-pkey-ref"
struct tg_pkey *tg_ossl_pkey_from_param(const OSSL_PARAM *p);

/* The binding for key exchange on the current thread's connection. */
const struct tg_keyprov_binding *tg_ossl_kx_binding(void);

extern const OSSL_DISPATCH tg_ossl_rsa_keymgmt[];
extern const OSSL_DISPATCH tg_ossl_ec_keymgmt[];
extern const OSSL_DISPATCH tg_ossl_x25519_keymgmt[];
extern const OSSL_DISPATCH tg_ossl_rsa_signature[];
extern const OSSL_DISPATCH tg_ossl_ecdsa_signature[];
extern const OSSL_DISPATCH tg_ossl_ecdh_keyexch[];
extern const OSSL_DISPATCH tg_ossl_x25519_keyexch[];

#endif
