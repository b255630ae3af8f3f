/*
 * tg_p11_module: one PKCS#11 module (a shared object loaded with dlopen and
 * called through its C_GetFunctionList table), and the start-up and
 * recovery steps done with it: find the token a URI names, log in, find the
 * key object, read its public half and the certificate next to it, list the
 * signing mechanisms.
 *
 * Threading: the module is initialised with CKF_OS_LOCKING_OK, so its
 * functions may be called from any thread; each session is used by one
 * thread at a time (the caller's discipline: a pool thread owns its
 * session). Open and close on the main thread, at start-up and exit.
 *
 * Errors: functions write a one-line reason into why, naming the module's
 * path or the token label and the CKR_ code. A PIN never appears in a
 * message.
 */
#ifndef TG_P11_MODULE_H
#define TG_P11_MODULE_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/tg_err.h"
#include "providers/pkcs11/tg_p11.h"
#include "providers/pkcs11/tg_p11_mech.h"
#include "providers/pkcs11/tg_p11_uri.h"

struct tg_p11_module {
    char *path;
    void *dl;
    CK_FUNCTION_LIST *f;
    CK_INFO info;
    bool finalize; /* we initialised it: C_Finalize at close */
};

/*
 * dlopen path (RTLD_NOW | RTLD_LOCAL), C_GetFunctionList, C_Initialize with
 * CKF_OS_LOCKING_OK (CKR_CRYPTOKI_ALREADY_INITIALIZED is accepted: someone
 * else in the process initialised it and will finalise it), C_GetInfo.
 * TG_EUNAVAIL when the file cannot be loaded or is not a PKCS#11 module
 * (no C_GetFunctionList), TG_EDEVICE when the module refuses to start.
 */
int tg_p11_module_open(const char *path, struct tg_p11_module **out, char *why,
                       size_t whylen) TG_MUST_CHECK;
/* C_Finalize (when we initialised it), dlclose, free. NULL is fine. The
 * caller closes every session first. */
void tg_p11_module_close(struct tg_p11_module *m);

/*
 * The one slot with a token matching u's library, slot and token
 * attributes (C_GetSlotList(CK_TRUE)). TG_ECONFIG when none or several
 * match (the message lists the token labels seen), TG_EDEVICE when the
 * module fails.
 */
int tg_p11_find_slot(struct tg_p11_module *m, const struct tg_p11_uri *u, CK_SLOT_ID *slot,
                     CK_TOKEN_INFO *ti, char *why, size_t whylen) TG_MUST_CHECK;

/* Where the PIN comes from (typed_config pin). */
enum tg_p11_pin_kind { TG_P11_PIN_NONE, TG_P11_PIN_FILE, TG_P11_PIN_ENV, TG_P11_PIN_INLINE };
struct tg_p11_pin {
    enum tg_p11_pin_kind kind;
    char *source;         /* FILE: absolute path; ENV: variable name */
    unsigned char *value; /* INLINE: a copy (wiped at clear) */
    size_t len;
};
#define TG_P11_PIN_MAX 256
/* Read the PIN into buf (cap >= TG_P11_PIN_MAX); a file's one trailing
 * newline (\n or \r\n) is dropped. The caller wipes buf (OPENSSL_cleanse)
 * as soon as it has logged in. TG_ECONFIG + why (never the PIN) when the
 * source cannot be read or is empty. */
int tg_p11_pin_read(const struct tg_p11_pin *p, unsigned char *buf, size_t cap, size_t *len,
                    char *why, size_t whylen) TG_MUST_CHECK;
int tg_p11_pin_copy(struct tg_p11_pin *dst, const struct tg_p11_pin *src) TG_MUST_CHECK;
void tg_p11_pin_clear(struct tg_p11_pin *p);

/*
 * Log in as CKU_USER on session s, which makes every session of this
 * process on the token a user session (PKCS#11 login state is per
 * application and token). Already logged in: CKR_OK. No PIN: a token with
 * CKF_PROTECTED_AUTHENTICATION_PATH gets C_Login(NULL); one without
 * CKF_LOGIN_REQUIRED is left alone; otherwise a configuration error. The
 * PIN is read from its source and wiped right after C_Login. Returns the
 * CK_RV of C_Login (CKR_ARGUMENTS_BAD when no PIN could be read) and why.
 */
CK_RV tg_p11_login(struct tg_p11_module *m, CK_SESSION_HANDLE s, const CK_TOKEN_INFO *ti,
                   const struct tg_p11_pin *pin, char *why, size_t whylen);

/* How a key object is found again after its handle went stale. */
struct tg_p11_keyref {
    CK_KEY_TYPE type; /* CKK_RSA or CKK_EC */
    bool has_id, has_label;
    unsigned char id[TG_P11_URI_ID_MAX];
    size_t id_len;
    char label[TG_P11_URI_LABEL_MAX + 1];
};

/*
 * The private key object u names (CKO_PRIVATE_KEY with u's object label
 * and/or id), which must be exactly one, of type RSA or EC, allowed to sign.
 * Fills *ref with its real CKA_ID and CKA_LABEL. TG_ECONFIG with a reason
 * otherwise ("no private key ... on token ...", "2 private keys match").
 */
int tg_p11_find_key(struct tg_p11_module *m, CK_SESSION_HANDLE s, const struct tg_p11_uri *u,
                    const char *token, CK_OBJECT_HANDLE *h, struct tg_p11_keyref *ref, char *why,
                    size_t whylen) TG_MUST_CHECK;
/* Find the same private key again (by CKA_ID and CKA_LABEL). Returns the
 * CK_RV of the search, CKR_OBJECT_HANDLE_INVALID when it is gone. */
CK_RV tg_p11_find_again(struct tg_p11_module *m, CK_SESSION_HANDLE s,
                        const struct tg_p11_keyref *ref, CK_OBJECT_HANDLE *h);

/*
 * The public half of key h: RSA modulus and exponent from the private key
 * object, else from the public key object with the same id/label; EC
 * parameters from the private key and the point from the public key
 * object. NULL (why set) when the token does not expose it; the caller may
 * use the certificate's key instead.
 */
EVP_PKEY *tg_p11_read_public(struct tg_p11_module *m, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                             const struct tg_p11_keyref *ref, char *why, size_t whylen);
/* The X.509 certificate object with the key's CKA_ID (else its label).
 * NULL + why when there is none or it does not parse. */
X509 *tg_p11_read_cert(struct tg_p11_module *m, CK_SESSION_HANDLE s,
                       const struct tg_p11_keyref *ref, char *why, size_t whylen);

/* The signing mechanisms of the slot (C_GetMechanismList + CKF_SIGN). */
CK_RV tg_p11_read_mechs(struct tg_p11_module *m, CK_SLOT_ID slot, struct tg_p11_mechs *out);

/* "label" of a token info, for messages (static-free: into buf). */
const char *tg_p11_token_label(const CK_TOKEN_INFO *ti, char *buf, size_t len);

#endif
