/*
 * The harness of the pkcs11 provider's unit tests (test_pkcs11.c,
 * test_pkcs11_faults.c) against the fault-injecting fake module
 * (fake_p11.c, loaded by path like any module; the harness dlopens the same
 * instance to steer it): typed_config blocks, a libssl server whose key is
 * held by the token handshaking with a plain libssl client over a BIO pair
 * on an ev loop that plays the worker's, /stats, bounded waits on
 * conditions (never a duration), the per-test set-up and the main.
 */
#ifndef P11_TEST_UTIL_H
#define P11_TEST_UTIL_H

#include <ev.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

#include "config/tg_config.h"
#include "keyprov/tg_keyprov.h"
#include "tg_test_util.h"

/* The fake's controls (fake_p11.h), from the instance tlsgate loaded. */
extern void (*fake_control)(const char *);
extern unsigned long (*fake_stat)(const char *);
extern void (*fake_hold)(int);
extern unsigned long (*fake_hold_stat)(const char *);
/* The certificates of the fake's "rsa" and "ec" keys (PEM files). */
extern char g_rsa_cert[512], g_ec_cert[512];

/* ---- configuration: a private_key_provider block for the fake ---- */

struct conf {
    struct tg_conf_keyprov kp;
    struct tg_conf_param p[12];
};

/* module = the fake, key, and pin.inline_string when pin != NULL; marks at
 * gw.yaml:8.. */
void conf_init(struct conf *c, const char *key, const char *pin);
void conf_add(struct conf *c, const char *k, const char *v);
void reset_fake(void);

/* ---- a server with a token key, a client, a loop ---- */

struct pair {
    SSL_CTX *sctx, *cctx;
    SSL *s, *c;
    struct tg_pkey *key;
    EVP_PKEY *wrapped;
    struct tg_keyprov_binding *b;
    struct tg_keyctx kctx; /* the connection's: outlives every SSL call */
    int wakeups;
};

/* The worker: a loop and its provider set (made by pair_init). */
extern struct ev_loop *g_loop;
extern struct tg_keyprov_set *g_set;
void worker_start(void);
void worker_stop(void);
/* tg_keyprov_bind_held for c (leaf NULL: as with certificate_chain). */
int bind_key(struct conf *c, struct pair *p, X509 **leaf, char *err, size_t errlen);
void pair_init(struct pair *p, struct conf *c);
/* A new connection on the pair's contexts. */
void conn_new(struct pair *p, int maxver, const char *sigalgs);
void pair_free(struct pair *p);
/* Poll cond every 2 ms, at most ms: whether it became true. */
bool wait_ms(int ms, bool (*cond)(void *), void *arg);
/* Run the loop until the server's pending key operation woke it. */
void loop_until_woken(struct pair *p, int before);
/* Drive the server one step: 1 done, 0 failed, -1 waiting for the token,
 * 2 waiting for the client. */
int server_step(struct pair *p);
/* A whole handshake; 1 when both sides finished. */
int handshake(struct pair *p);
/* The value of a /stats series (-1: absent). */
long long stat_value(const char *series);
#define OPS(result)                                                                                \
    stat_value("tlsgate_pkcs11_operations_total{token=\"fake\",result=\"" result "\"}")

/* Conditions for wait_ms. */
bool token_up(void *arg);
bool fake_idle(void *arg);
bool fake_signing(void *arg);       /* arg: at least that many in C_Sign */
bool fake_holding(void *arg);       /* a C_Sign waits on the fake's hold */
bool fake_held_returned(void *arg); /* arg: that many held calls returned */

int setup_each(void **state);
int teardown_each(void **state);
/* Keys and certificates for the fake, the fake's controls, the providers,
 * then the tests. Returns the failures. */
int p11_test_run(const char *group, const struct CMUnitTest *tests, size_t n);

#endif
