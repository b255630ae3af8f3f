/*
 * tg_mbx: the shim in front of Intel's ipp-crypto multi-buffer library
 * ("crypto_mb", libcrypto_mb.so.11).
 *
 * tlsgate never links crypto_mb: it dlopen()s the library at run time and
 * calls it through struct tg_mbx_api, a table of exactly the functions it
 * uses, typed with our own function-pointer types. So tlsgate builds and
 * tests on machines without the library or its headers, and tests install a
 * fake table (tests/tg_mbx_fake.h) computed with scalar OpenSSL.
 * When the headers are present (TG_HAVE_CRYPTO_MB_H), tg_mbx.c checks at
 * compile time that every type here matches the real prototype.
 *
 * Calling conventions of crypto_mb (as read in its source and checked by
 * test_mbx against the real library):
 *  - every *_mb8 function takes arrays of 8 lane pointers and returns an
 *    mbx_status: 4 bits per lane (lane i = bits 4i..4i+3), 0 = OK;
 *  - a lane whose pointers are NULL gets MBX_STATUS_NULL_PARAM_ERR and is not
 *    written; the other lanes are computed normally (partial batches);
 *  - a lane that fails a parameter check may still have its output buffer
 *    written with garbage: a non-zero lane status means "discard the output";
 *  - byte strings are big-endian and exactly the operand size (RSA: modulus
 *    bytes; EC: field/order bytes) except X25519, which is little-endian
 *    32 bytes as in RFC 7748;
 *  - BIGNUM inputs must fit the operand size (the library converts them with
 *    BN_bn2lebinpad and does not check the result);
 *  - the RSA functions need ~110 KiB of stack (RSA-4096): never call them on
 *    an ASYNC job's 32 KiB stack;
 *  - the `int8u *pBuffer` scratch argument of the EC functions is unused;
 *    pass NULL.
 *
 * Threading: tg_mbx_load()/tg_mbx_install()/tg_mbx_unload() serialise on a
 * mutex. Once loaded, tg_mbx_api() and the availability queries are lock-free
 * and callable from any thread. tg_mbx_unload() must not race with users of
 * the table (shutdown, tests).
 */
#ifndef TG_MBX_H
#define TG_MBX_H

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tg_err.h"
#include "keyprov/tg_pkey.h"

/* ---- crypto_mb types, mirrored ---- */

/* Lanes of every *_mb8 call: one batch holds at most this many operations. */
#define TG_MBX_LANES 8

typedef uint32_t tg_mbx_status;        /* mbx_status (int32u): 4 status bits per lane */
typedef unsigned long long tg_mbx_u64; /* int64u */

/* Per-lane status values (MBX_STATUS_*). */
#define TG_MBX_STATUS_OK                 0u
#define TG_MBX_STATUS_MISMATCH_PARAM_ERR 1u
#define TG_MBX_STATUS_NULL_PARAM_ERR     2u
#define TG_MBX_STATUS_LOW_ORDER_ERR      4u
#define TG_MBX_STATUS_SIGNATURE_ERR      8u

static inline unsigned tg_mbx_lane_status(tg_mbx_status st, unsigned lane)
{
    return (unsigned)(st >> (4u * lane)) & 0xFu;
}
static inline tg_mbx_status tg_mbx_set_lane_status(tg_mbx_status st, unsigned lane, unsigned v)
{
    st &= ~((tg_mbx_status)0xFu << (4u * lane));
    return st | ((tg_mbx_status)(v & 0xFu) << (4u * lane));
}

/* enum MBX_ALGO values that tlsgate asks about (mbx_get_algo_info). */
#define TG_MBX_ALGO_RSA_2K       1
#define TG_MBX_ALGO_RSA_3K       2
#define TG_MBX_ALGO_RSA_4K       3
#define TG_MBX_ALGO_X25519       4
#define TG_MBX_ALGO_EC_NIST_P256 5
#define TG_MBX_ALGO_EC_NIST_P384 6
#define TG_MBX_ALGO_EC_NIST_P521 7
#define TG_MBX_WIDTH_MB8         8 /* bit in mbx_get_algo_info()'s result */

/* mbxVersion */
struct tg_mbx_version {
    int major;
    int minor;
    int revision;
    const char *name;
    const char *build_date;
    const char *str_version;
};

typedef tg_mbx_u64 (*tg_mbx_get_cpu_features_fn)(void);
typedef int (*tg_mbx_is_crypto_mb_applicable_fn)(tg_mbx_u64 cpu_features);
/* The argument is enum MBX_ALGO (unsigned int in GCC/clang's ABI for it). */
typedef tg_mbx_u64 (*tg_mbx_get_algo_info_fn)(unsigned int algo);
typedef const struct tg_mbx_version *(*tg_mbx_getversion_fn)(void);

/* y = x^d mod n with CRT; from/to: modulus-size big-endian; p,q must each
 * have exactly expected_bits/2 bits. */
typedef tg_mbx_status (*tg_mbx_rsa_private_crt_ssl_mb8_fn)(
    const unsigned char *const from[8], unsigned char *const to[8], const BIGNUM *const p[8],
    const BIGNUM *const q[8], const BIGNUM *const dp[8], const BIGNUM *const dq[8],
    const BIGNUM *const iq[8], int expected_bits);
/* y = x^65537 mod n: lanes whose e is not 65537 get MISMATCH_PARAM_ERR. */
typedef tg_mbx_status (*tg_mbx_rsa_public_ssl_mb8_fn)(const unsigned char *const from[8],
                                                      unsigned char *const to[8],
                                                      const BIGNUM *const e[8],
                                                      const BIGNUM *const n[8], int expected_bits);
/* ECDSA: r,s out (order-size big-endian); msg: order-size big-endian, must
 * be in [1, n-1] (0 or >= n -> MISMATCH); k: nonce; d: private key. */
typedef tg_mbx_status (*tg_mbx_ecdsa_sign_ssl_mb8_fn)(unsigned char *r[8], unsigned char *s[8],
                                                      const unsigned char *const msg[8],
                                                      const BIGNUM *const k[8],
                                                      const BIGNUM *const d[8],
                                                      unsigned char *scratch);
/* ECDSA verification: sig (r, s), msg as for signing (order-size
 * big-endian, in [0, n-1]), public key affine when z == NULL. A lane whose
 * signature does not verify gets SIGNATURE_ERR; r, s, msg or the key out of
 * range: MISMATCH_PARAM_ERR. */
typedef tg_mbx_status (*tg_mbx_ecdsa_verify_ssl_mb8_fn)(
    const ECDSA_SIG *const sig[8], const unsigned char *const msg[8], const BIGNUM *const x[8],
    const BIGNUM *const y[8], const BIGNUM *const z[8], unsigned char *scratch);
/* Public key d*G: affine (x, y) when z == NULL, else Jacobian (X:Y:Z).
 * Beware: results are stored only up to the first lane with a non-OK
 * status; later lanes keep their previous BIGNUM value. */
typedef tg_mbx_status (*tg_mbx_ecpublic_key_ssl_mb8_fn)(BIGNUM *x[8], BIGNUM *y[8], BIGNUM *z[8],
                                                        const BIGNUM *const d[8],
                                                        unsigned char *scratch);
/* ECDH: shared x-coordinate (field-size big-endian); peer affine when
 * z == NULL; points not on the curve -> MISMATCH. */
typedef tg_mbx_status (*tg_mbx_ecdh_ssl_mb8_fn)(unsigned char *shared[8], const BIGNUM *const d[8],
                                                const BIGNUM *const x[8], const BIGNUM *const y[8],
                                                const BIGNUM *const z[8], unsigned char *scratch);
/* X25519 (RFC 7748): the library clamps the private key itself. */
typedef tg_mbx_status (*tg_mbx_x25519_public_key_mb8_fn)(unsigned char *const pub[8],
                                                         const unsigned char *const priv[8]);
/* All-zero shared secret (low-order peer point) -> LOW_ORDER_ERR (the
 * zeros are still written). The peer's top bit is masked. */
typedef tg_mbx_status (*tg_mbx_x25519_mb8_fn)(unsigned char *const shared[8],
                                              const unsigned char *const priv[8],
                                              const unsigned char *const pub[8]);

/*
 * The table. Every member is required except the P-521 ones (older builds
 * of the library lack them; NULL then means "P-521 not available") and the
 * ECDSA verifications (NULL: the batch layer checks signatures with
 * OpenSSL instead).
 */
struct tg_mbx_api {
    const char *name; /* "libcrypto_mb.so.11" or "fake", for logs */
    tg_mbx_get_cpu_features_fn get_cpu_features;
    tg_mbx_is_crypto_mb_applicable_fn is_crypto_mb_applicable;
    tg_mbx_get_algo_info_fn get_algo_info;
    tg_mbx_getversion_fn getversion;
    tg_mbx_rsa_private_crt_ssl_mb8_fn rsa_private_crt_ssl_mb8;
    tg_mbx_rsa_public_ssl_mb8_fn rsa_public_ssl_mb8;
    tg_mbx_ecdsa_sign_ssl_mb8_fn nistp256_ecdsa_sign_ssl_mb8;
    tg_mbx_ecdsa_sign_ssl_mb8_fn nistp384_ecdsa_sign_ssl_mb8;
    tg_mbx_ecdsa_sign_ssl_mb8_fn nistp521_ecdsa_sign_ssl_mb8;     /* optional */
    tg_mbx_ecdsa_verify_ssl_mb8_fn nistp256_ecdsa_verify_ssl_mb8; /* optional */
    tg_mbx_ecdsa_verify_ssl_mb8_fn nistp384_ecdsa_verify_ssl_mb8; /* optional */
    tg_mbx_ecdsa_verify_ssl_mb8_fn nistp521_ecdsa_verify_ssl_mb8; /* optional */
    tg_mbx_ecpublic_key_ssl_mb8_fn nistp256_ecpublic_key_ssl_mb8;
    tg_mbx_ecpublic_key_ssl_mb8_fn nistp384_ecpublic_key_ssl_mb8;
    tg_mbx_ecpublic_key_ssl_mb8_fn nistp521_ecpublic_key_ssl_mb8; /* optional */
    tg_mbx_ecdh_ssl_mb8_fn nistp256_ecdh_ssl_mb8;
    tg_mbx_ecdh_ssl_mb8_fn nistp384_ecdh_ssl_mb8;
    tg_mbx_ecdh_ssl_mb8_fn nistp521_ecdh_ssl_mb8; /* optional */
    tg_mbx_x25519_public_key_mb8_fn x25519_public_key_mb8;
    tg_mbx_x25519_mb8_fn x25519_mb8;
};

/* ---- availability ---- */

/* X(id, label): what crypto_mb can do here. */
#define TG_MBX_ALGS(X)                                                                             \
    X(RSA2K, "rsa2048")                                                                            \
    X(RSA3K, "rsa3072")                                                                            \
    X(RSA4K, "rsa4096")                                                                            \
    X(X25519, "x25519")                                                                            \
    X(P256, "p256")                                                                                \
    X(P384, "p384")                                                                                \
    X(P521, "p521")

enum tg_mbx_alg {
#define TG_MBX_ALG_ENUM(id, label) TG_MBX_##id,
    TG_MBX_ALGS(TG_MBX_ALG_ENUM)
#undef TG_MBX_ALG_ENUM
        TG_MBX_ALG_COUNT,
    TG_MBX_ALG_NONE = -1
};

const char *tg_mbx_alg_name(enum tg_mbx_alg a); /* "rsa2048", ...; "none" */
/* Map a modulus size / key-exchange group / EC curve NID to its algorithm;
 * TG_MBX_ALG_NONE when crypto_mb has no such algorithm at all. */
enum tg_mbx_alg tg_mbx_alg_for_rsa_bits(int bits);
enum tg_mbx_alg tg_mbx_alg_for_group(enum tg_group g);
enum tg_mbx_alg tg_mbx_alg_for_curve_nid(int nid);

/* ---- loading ---- */

/*
 * Load the real library, once. Order: the CPU check
 * (tg_sysinfo_cpu_has_avx512_ifma(), which honours TG_FAKE_NO_IFMA=1), then
 * dlopen() of $TG_CRYPTO_MB_LIB if set (that path only), else
 * TG_DEPS_LIBDIR/libcrypto_mb.so.11, else libcrypto_mb.so.11 from the system
 * path; dlsym() of every function; mbx_is_crypto_mb_applicable(); per
 * algorithm mbx_get_algo_info(); the version.
 * Returns TG_OK (also when already loaded or a fake is installed), or
 * TG_EUNAVAIL with a short operator-readable reason in why (why may be NULL).
 * A failure is not cached: a later call tries again.
 */
int tg_mbx_load(char *why, size_t whylen) TG_MUST_CHECK;

/* The loaded (or installed) table; NULL when nothing is loaded. Lock-free. */
const struct tg_mbx_api *tg_mbx_api(void);

/*
 * Tests: install a table (a fake) in place of the library, or NULL to remove
 * whatever is installed/loaded (as tg_mbx_unload()). The table must outlive
 * its installation. The host CPU is not checked (a fake runs anywhere); the
 * table's own is_crypto_mb_applicable()/get_algo_info() decide, exactly as
 * for the real library. Returns TG_OK or TG_EUNAVAIL (nothing installed) with
 * the reason available from tg_mbx_info().
 */
int tg_mbx_install(const struct tg_mbx_api *api) TG_MUST_CHECK;

/* dlclose() the library / drop the installed table. Not concurrent with users. */
void tg_mbx_unload(void);

/* Whether an algorithm is usable now (loaded and the library supports it). */
bool tg_mbx_available(enum tg_mbx_alg a);

struct tg_mbx_info {
    bool loaded;                /* a table is in place */
    bool fake;                  /* installed with tg_mbx_install() */
    char path[256];             /* library path that was loaded ("" for a fake) */
    char version[128];          /* mbx_getversion()->str_version */
    tg_mbx_u64 cpu_features;    /* mbx_get_cpu_features() */
    bool alg[TG_MBX_ALG_COUNT]; /* availability, as tg_mbx_available() */
    char why[256];              /* last failure reason ("" if none) */
};
/* Snapshot of the state (for `tlsgate doctor` and logs). Takes the mutex. */
void tg_mbx_get_info(struct tg_mbx_info *out);

#endif
