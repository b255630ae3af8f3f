/*
 * tg_p11_mech: what a PKCS#11 answer means, which mechanism signs what, and
 * the bytes that go in and out of C_Sign. Pure functions (no module calls,
 * no global state): any thread. The pool threads call them around C_Sign.
 *
 *   RSA PKCS#1 v1.5   CKM_RSA_PKCS on DigestInfo || digest (the token pads),
 *                     or CKM_RSA_X_509 on EMSA-PKCS1-v1_5(digest) (tlsgate pads)
 *   RSA-PSS           CKM_RSA_PKCS_PSS on the digest with {hash, MGF1 hash,
 *                     salt length}, or CKM_RSA_X_509 on EMSA-PSS(digest)
 *                     (tlsgate pads, src/keyprov/tg_rsa_pad.h)
 *   ECDSA             CKM_ECDSA on the digest (truncated to the order's
 *                     size), raw r || s converted to DER
 */
#ifndef TG_P11_MECH_H
#define TG_P11_MECH_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/tg_err.h"
#include "providers/pkcs11/tg_p11.h"

/* X(code): the return values tlsgate names (stats labels, messages). */
#define TG_P11_CKR_LIST(X)                                                                         \
    X(CKR_CANCEL)                                                                                  \
    X(CKR_HOST_MEMORY)                                                                             \
    X(CKR_SLOT_ID_INVALID)                                                                         \
    X(CKR_GENERAL_ERROR)                                                                           \
    X(CKR_FUNCTION_FAILED)                                                                         \
    X(CKR_ARGUMENTS_BAD)                                                                           \
    X(CKR_ATTRIBUTE_SENSITIVE)                                                                     \
    X(CKR_ATTRIBUTE_TYPE_INVALID)                                                                  \
    X(CKR_DATA_INVALID)                                                                            \
    X(CKR_DATA_LEN_RANGE)                                                                          \
    X(CKR_DEVICE_ERROR)                                                                            \
    X(CKR_DEVICE_MEMORY)                                                                           \
    X(CKR_DEVICE_REMOVED)                                                                          \
    X(CKR_FUNCTION_CANCELED)                                                                       \
    X(CKR_FUNCTION_NOT_SUPPORTED)                                                                  \
    X(CKR_KEY_HANDLE_INVALID)                                                                      \
    X(CKR_KEY_SIZE_RANGE)                                                                          \
    X(CKR_KEY_TYPE_INCONSISTENT)                                                                   \
    X(CKR_KEY_FUNCTION_NOT_PERMITTED)                                                              \
    X(CKR_MECHANISM_INVALID)                                                                       \
    X(CKR_MECHANISM_PARAM_INVALID)                                                                 \
    X(CKR_OBJECT_HANDLE_INVALID)                                                                   \
    X(CKR_OPERATION_ACTIVE)                                                                        \
    X(CKR_OPERATION_NOT_INITIALIZED)                                                               \
    X(CKR_PIN_INCORRECT)                                                                           \
    X(CKR_PIN_INVALID)                                                                             \
    X(CKR_PIN_LEN_RANGE)                                                                           \
    X(CKR_PIN_EXPIRED)                                                                             \
    X(CKR_PIN_LOCKED)                                                                              \
    X(CKR_SESSION_CLOSED)                                                                          \
    X(CKR_SESSION_COUNT)                                                                           \
    X(CKR_SESSION_HANDLE_INVALID)                                                                  \
    X(CKR_TOKEN_NOT_PRESENT)                                                                       \
    X(CKR_TOKEN_NOT_RECOGNIZED)                                                                    \
    X(CKR_USER_ALREADY_LOGGED_IN)                                                                  \
    X(CKR_USER_NOT_LOGGED_IN)                                                                      \
    X(CKR_USER_PIN_NOT_INITIALIZED)                                                                \
    X(CKR_USER_TYPE_INVALID)                                                                       \
    X(CKR_BUFFER_TOO_SMALL)                                                                        \
    X(CKR_CRYPTOKI_NOT_INITIALIZED)                                                                \
    X(CKR_CRYPTOKI_ALREADY_INITIALIZED)                                                            \
    X(CKR_CANT_LOCK)                                                                               \
    X(CKR_FUNCTION_REJECTED)

enum tg_p11_ckr {
#define TG_P11_CKR_ENUM(code) TG_P11_##code,
    TG_P11_CKR_LIST(TG_P11_CKR_ENUM)
#undef TG_P11_CKR_ENUM
        TG_P11_CKR_OTHER, /* any code not in the list */
    TG_P11_CKR_COUNT
};

/* Index of rv in the list (TG_P11_CKR_OTHER if absent; CKR_OK is absent). */
enum tg_p11_ckr tg_p11_ckr_index(CK_RV rv);
/* "CKR_PIN_INCORRECT", or NULL when not in the list. Index form: "other". */
const char *tg_p11_ckr_name(CK_RV rv);
const char *tg_p11_ckr_index_name(enum tg_p11_ckr i);
/* The name, or "CKR_0x%08lX" for others, into buf. Returns buf. */
const char *tg_p11_ckr_text(CK_RV rv, char *buf, size_t len);

/*
 * What to do after a signing call returned rv (see docs/KEY-PROVIDERS.md,
 * "pkcs11: when the token fails"):
 */
enum tg_p11_action {
    TG_P11_ACT_OK,
    TG_P11_ACT_RELOGIN,    /* CKR_USER_NOT_LOGGED_IN: log in again, retry once */
    TG_P11_ACT_REFIND,     /* CKR_KEY/OBJECT_HANDLE_INVALID: find the key again, retry once */
    TG_P11_ACT_TOKEN_DOWN, /* device or session gone: token down, sessions reopened with back-off */
    TG_P11_ACT_FAIL,       /* anything else: this operation fails, the token stays up */
};
enum tg_p11_action tg_p11_classify(CK_RV rv);
/* A login answer that must never be retried automatically (the PIN would
 * get locked): CKR_PIN_INCORRECT, _INVALID, _LEN_RANGE, _EXPIRED, _LOCKED,
 * CKR_USER_PIN_NOT_INITIALIZED. */
bool tg_p11_pin_refused(CK_RV rv);

/* The signing mechanisms a token offers (CKF_SIGN in C_GetMechanismInfo). */
struct tg_p11_mechs {
    bool rsa_pkcs, rsa_pss, rsa_x509, ecdsa;
};

/* typed_config rsa_mechanism: which RSA mechanisms to use. */
enum tg_p11_rsa_mode {
    TG_P11_RSA_AUTO,   /* CKM_RSA_PKCS / CKM_RSA_PKCS_PSS when offered, else CKM_RSA_X_509 */
    TG_P11_RSA_NATIVE, /* CKM_RSA_PKCS and CKM_RSA_PKCS_PSS, nothing else */
    TG_P11_RSA_RAW,    /* CKM_RSA_X_509 for both, tlsgate pads */
};

/* The mechanisms one key signs with; CK_UNAVAILABLE_INFORMATION: none. */
struct tg_p11_plan {
    CK_MECHANISM_TYPE pkcs1; /* CKM_RSA_PKCS or CKM_RSA_X_509 */
    CK_MECHANISM_TYPE pss;   /* CKM_RSA_PKCS_PSS or CKM_RSA_X_509 */
    CK_MECHANISM_TYPE ecdsa; /* CKM_ECDSA */
};

/*
 * Choose the mechanisms of an RSA (rsa = true) or EC key. RSA needs both
 * encodings (TLS 1.3 signs with PSS only, TLS 1.2 clients may ask for
 * PKCS#1 v1.5). TG_EUNAVAIL with the reason (naming the mechanisms missing)
 * when the token cannot serve the key.
 */
int tg_p11_plan(bool rsa, const struct tg_p11_mechs *m, enum tg_p11_rsa_mode mode,
                struct tg_p11_plan *out, char *why, size_t whylen) TG_MUST_CHECK;

/* One signature to make (copied from the tg_keyop by the worker). */
struct tg_p11_sig {
    bool rsa;
    int padding;             /* TG_RSA_PAD_PKCS1 / TG_RSA_PAD_PSS (RSA) */
    const EVP_MD *md, *mgf1; /* RSA: digest and MGF1 digest (PSS) */
    int saltlen;             /* PSS: resolved salt length in bytes */
    unsigned char digest[64];
    size_t dlen;
};

/* The arguments of C_SignInit + C_Sign. mech.pParameter points into the
 * struct itself (pss): do not copy it after tg_p11_prepare. */
struct tg_p11_call {
    CK_MECHANISM mech;
    CK_RSA_PKCS_PSS_PARAMS pss;
    unsigned char data[512];
    size_t datalen;
};

/*
 * Build the call for s with plan. bits: RSA modulus size, or EC order size
 * (256, 384, 521). TG_EINVAL for inputs the plan cannot sign (no mechanism,
 * a digest without a PKCS#11 name, lengths); TG_ECRYPTO if the PSS salt
 * cannot be drawn.
 */
int tg_p11_prepare(const struct tg_p11_sig *s, const struct tg_p11_plan *plan, int bits,
                   struct tg_p11_call *c) TG_MUST_CHECK;

/*
 * Turn C_Sign's output into the TLS signature: RSA left-padded to the
 * modulus length; ECDSA raw r || s (exactly twice the field size) to DER.
 * TG_EPROTO when the token's output has the wrong shape.
 */
int tg_p11_finish(const struct tg_p11_sig *s, int bits, const unsigned char *raw, size_t rawlen,
                  unsigned char *out, size_t cap, size_t *outlen) TG_MUST_CHECK;

/* Verify a finished signature with the public key (the `verify` setting).
 * TG_OK or TG_ECRYPTO. */
int tg_p11_verify(EVP_PKEY *pub, const struct tg_p11_sig *s, const unsigned char *sig,
                  size_t siglen) TG_MUST_CHECK;

#endif
