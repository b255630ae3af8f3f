/*
 * Internal to the fake PKCS#11 module (fake_p11.c: the module, sessions,
 * objects and faults; fake_p11_sign.c: C_SignInit and C_Sign). Its state
 * is one struct, fake_g, guarded by fake_g.lock.
 */
#ifndef FAKE_P11_H
#define FAKE_P11_H

#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "providers/pkcs11/tg_p11.h"

#define FAKE_SLOT     7
#define FAKE_SESSIONS 256
#define FAKE_KEYS     4

/* Exported for tests (default visibility). */
void fake_p11_control(const char *kv);
unsigned long fake_p11_stat(const char *name);
void fake_p11_hold(int on);
unsigned long fake_p11_hold_stat(const char *name);
CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list);

struct fake_key {
    char label[64];
    unsigned char id[32];
    size_t idlen;
    EVP_PKEY *key;
    unsigned char *cert_der;
    size_t cert_len;
};

struct fake_session {
    bool open;
    unsigned gen; /* g.insert_gen when opened */
    CK_OBJECT_HANDLE found[16];
    size_t nfound, pos;
    bool finding, signing;
    CK_MECHANISM_TYPE mech;
    CK_RSA_PKCS_PSS_PARAMS pss;
    size_t key;
};

struct fake_ctl {
    int removed, logout, handles, sign_delay_ms, block, no_pss, no_x509, no_rsa_pkcs;
    unsigned long fail_sign;
    char pin[64];
};

struct fake_state {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool init;
    struct fake_key keys[FAKE_KEYS];
    size_t nkeys;
    struct fake_session s[FAKE_SESSIONS];
    bool logged_in;
    unsigned insert_gen;
    struct fake_ctl mem, cur; /* from fake_p11_control; effective */
    int seen_logout, seen_removed;
    char label[33];
    unsigned long signs, logins, in_sign, sessions, login_failures;
    /* fake_p11_hold: lock-free on purpose (relaxed atomics, no fake_g.lock). */
    atomic_int hold;
    atomic_ulong holding, held_returned;
};
extern struct fake_state fake_g;

/* Shared helpers (fake_p11.c); lock held unless said otherwise. */
void fake_refresh(void);
CK_RV fake_session(CK_SESSION_HANDLE h, struct fake_session **out);
bool fake_object(CK_OBJECT_HANDLE h, size_t *key, CK_OBJECT_CLASS *cls);
bool fake_rsa(size_t k);
bool fake_mech_offered(CK_MECHANISM_TYPE m);
/* fake_p11_sign.c */
CK_RV fake_sign_init(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE o);
CK_RV fake_sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
                CK_ULONG_PTR siglen);

#endif
