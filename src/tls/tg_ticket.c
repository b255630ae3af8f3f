/*
 * The session ticket key ring (tg_ticket.h).
 */
#include "tls/tg_ticket.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/tg_log.h"
#include "core/tg_stats.h"
#include "core/tg_time.h"

struct tg_ticket_ring {
    pthread_mutex_t mu;
    struct tg_ticket_key cur, prev;
    bool has_cur;         /* false only when making a key failed */
    bool has_prev;        /* prev still decrypts */
    uint64_t cur_since;   /* when cur became current (ring clock, ns) */
    uint64_t interval_ns; /* > 0 */
    uint64_t (*clock)(void *);
    void *clock_arg;
    EVP_CIPHER *aes; /* AES-256-CBC, fetched once */
    struct tg_ticket_stats st;
};

static int tg_ticket_ex_idx = -1;
static pthread_once_t tg_ticket_ex_once = PTHREAD_ONCE_INIT;

static void tg_ticket_ex_init(void)
{
    tg_ticket_ex_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

uint64_t tg_ticket_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (uint64_t)ts.tv_sec * TG_NS_PER_S + (uint64_t)ts.tv_nsec;
}

static uint64_t tg_ticket_default_clock(void *arg)
{
    (void)arg;
    return tg_ticket_clock_ns();
}

/* A fresh random key into k; false (k wiped) when there is no randomness. */
static bool tg_ticket_key_make(struct tg_ticket_key *k)
{
    if (RAND_bytes((unsigned char *)k, (int)sizeof(*k)) == 1)
        return true;
    OPENSSL_cleanse(k, sizeof(*k));
    ERR_clear_error();
    return false;
}

/* Under r->mu: bring the keys to now. */
static void tg_ticket_advance_locked(struct tg_ticket_ring *r, uint64_t now)
{
    if (now < r->cur_since + r->interval_ns)
        return;
    uint64_t k = (now - r->cur_since) / r->interval_ns;
    if (k == 1 && r->has_cur) {
        /* The current key becomes the previous one; the previous one goes. */
        OPENSSL_cleanse(&r->prev, sizeof(r->prev));
        r->prev = r->cur;
        r->has_prev = true;
    } else {
        /* Two intervals or more passed unseen: both keys are past their
         * life. */
        OPENSSL_cleanse(&r->prev, sizeof(r->prev));
        r->has_prev = false;
    }
    OPENSSL_cleanse(&r->cur, sizeof(r->cur));
    r->has_cur = tg_ticket_key_make(&r->cur);
    r->cur_since += k * r->interval_ns;
    r->st.rotations++;
}

int tg_ticket_ring_new(uint64_t interval_ns, uint64_t now_ns, struct tg_ticket_ring **out)
{
    *out = NULL;
    TG_ENSURE(interval_ns > 0, TG_EINVAL);
    struct tg_ticket_ring *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return TG_ENOMEM;
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        free(r);
        return TG_ENOMEM;
    }
    r->interval_ns = interval_ns;
    r->cur_since = now_ns;
    r->clock = tg_ticket_default_clock;
    r->aes = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    r->has_cur = tg_ticket_key_make(&r->cur);
    if (r->aes == NULL || !r->has_cur) {
        ERR_clear_error();
        tg_ticket_ring_free(r);
        return TG_ECRYPTO;
    }
    *out = r;
    return TG_OK;
}

void tg_ticket_ring_free(struct tg_ticket_ring *r)
{
    if (r == NULL)
        return;
    EVP_CIPHER_free(r->aes);
    pthread_mutex_destroy(&r->mu);
    OPENSSL_cleanse(r, sizeof(*r));
    free(r);
}

void tg_ticket_ring_set_clock(struct tg_ticket_ring *r, uint64_t (*clock)(void *), void *arg)
{
    r->clock = clock != NULL ? clock : tg_ticket_default_clock;
    r->clock_arg = clock != NULL ? arg : NULL;
}

uint64_t tg_ticket_ring_now(const struct tg_ticket_ring *r)
{
    return r->clock(r->clock_arg);
}

void tg_ticket_ring_set_interval(struct tg_ticket_ring *r, uint64_t interval_ns, uint64_t now_ns)
{
    if (interval_ns == 0)
        return;
    pthread_mutex_lock(&r->mu);
    tg_ticket_advance_locked(r, now_ns);
    r->interval_ns = interval_ns;
    if (now_ns >= r->cur_since + interval_ns) {
        /* Shorter than the current key's age: it stops encrypting now and
         * still decrypts for one new interval (not wiped at once: its
         * tickets were issued under the old rule). */
        struct tg_ticket_key k;
        if (tg_ticket_key_make(&k)) {
            OPENSSL_cleanse(&r->prev, sizeof(r->prev));
            r->prev = r->cur;
            r->has_prev = r->has_cur;
            r->cur = k;
            r->has_cur = true;
            OPENSSL_cleanse(&k, sizeof(k));
            r->st.rotations++;
        }
        r->cur_since = now_ns;
    }
    pthread_mutex_unlock(&r->mu);
}

uint64_t tg_ticket_ring_interval(struct tg_ticket_ring *r)
{
    pthread_mutex_lock(&r->mu);
    uint64_t v = r->interval_ns;
    pthread_mutex_unlock(&r->mu);
    return v;
}

uint64_t tg_ticket_ring_advance(struct tg_ticket_ring *r, uint64_t now_ns)
{
    pthread_mutex_lock(&r->mu);
    tg_ticket_advance_locked(r, now_ns);
    /* advance leaves cur_since <= now < cur_since + interval. */
    uint64_t left = r->cur_since + r->interval_ns - now_ns;
    pthread_mutex_unlock(&r->mu);
    return left;
}

int tg_ticket_ring_encrypt_key(struct tg_ticket_ring *r, uint64_t now_ns, struct tg_ticket_key *out)
{
    pthread_mutex_lock(&r->mu);
    tg_ticket_advance_locked(r, now_ns);
    if (!r->has_cur) {
        /* The last rotation found no randomness: try again now. */
        r->has_cur = tg_ticket_key_make(&r->cur);
    }
    bool ok = r->has_cur;
    if (ok) {
        *out = r->cur;
        r->st.issued++;
    }
    pthread_mutex_unlock(&r->mu);
    return ok ? TG_OK : TG_ECRYPTO;
}

enum tg_ticket_which tg_ticket_ring_decrypt_key(struct tg_ticket_ring *r, uint64_t now_ns,
                                                const unsigned char name[TG_TICKET_NAME_LEN],
                                                struct tg_ticket_key *out)
{
    enum tg_ticket_which w = TG_TICKET_NONE;
    pthread_mutex_lock(&r->mu);
    tg_ticket_advance_locked(r, now_ns);
    /* Names are not secret: a plain comparison is fine. */
    if (r->has_cur && memcmp(name, r->cur.name, TG_TICKET_NAME_LEN) == 0) {
        *out = r->cur;
        w = TG_TICKET_CURRENT;
        r->st.resumed_current++;
    } else if (r->has_prev && memcmp(name, r->prev.name, TG_TICKET_NAME_LEN) == 0) {
        *out = r->prev;
        w = TG_TICKET_PREVIOUS;
        r->st.resumed_previous++;
    } else {
        r->st.unknown_key++;
    }
    pthread_mutex_unlock(&r->mu);
    return w;
}

void tg_ticket_ring_stats(struct tg_ticket_ring *r, struct tg_ticket_stats *out)
{
    pthread_mutex_lock(&r->mu);
    *out = r->st;
    pthread_mutex_unlock(&r->mu);
}

void tg_ticket_ring_render(struct tg_ticket_ring *r, struct tg_buf *out)
{
    struct tg_ticket_stats st;
    tg_ticket_ring_stats(r, &st);
    uint64_t interval = tg_ticket_ring_interval(r);
    tg_prom_header(out, "tlsgate_session_ticket_key_rotations_total", "counter",
                   "Session ticket keys made after the first (session_tickets."
                   "key_rotation_interval)");
    tg_prom_value(out, "tlsgate_session_ticket_key_rotations_total", "", st.rotations);
    tg_prom_header(out, "tlsgate_session_ticket_key_rotation_interval_seconds", "gauge",
                   "How long a ticket key encrypts new tickets (it decrypts for one interval "
                   "more)");
    tg_prom_value(out, "tlsgate_session_ticket_key_rotation_interval_seconds", "",
                  interval / TG_NS_PER_S);
    static const char *const name = "tlsgate_session_tickets_total";
    tg_prom_header(out, name, "counter",
                   "Session tickets issued, and tickets presented by clients by the key that "
                   "opened them (unknown_key: expired or foreign, a full handshake follows)");
    tg_prom_value(out, name, "result=\"issued\"", st.issued);
    tg_prom_value(out, name, "result=\"resumed_current_key\"", st.resumed_current);
    tg_prom_value(out, name, "result=\"resumed_previous_key\"", st.resumed_previous);
    tg_prom_value(out, name, "result=\"unknown_key\"", st.unknown_key);
}

/* ---- OpenSSL ---- */

static int tg_ticket_mac_init(EVP_MAC_CTX *hctx, unsigned char *key, size_t len)
{
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, len);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    return EVP_MAC_CTX_set_params(hctx, params);
}

/*
 * SSL_CTX_set_tlsext_ticket_key_evp_cb: enc = 1, a new ticket: fill its
 * key name and IV and key both contexts (1 = done, 0 = issue no ticket,
 * -1 = error). enc = 0, a ticket presented: 0 = unknown name (full
 * handshake), 1 = current key, 2 = previous key (libssl then issues a fresh
 * ticket), -1 = error. Runs on a worker thread inside a handshake.
 */
static int tg_ticket_cb(SSL *s, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                        EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    struct tg_ticket_ring *r = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(s), tg_ticket_ex_idx);
    if (r == NULL)
        return 0;
    struct tg_ticket_key k;
    uint64_t now = tg_ticket_ring_now(r);
    int rc = -1;
    if (enc) {
        if (tg_ticket_ring_encrypt_key(r, now, &k) != TG_OK)
            return 0;
        int ivlen = EVP_CIPHER_get_iv_length(r->aes);
        if (ivlen <= 0 || ivlen > EVP_MAX_IV_LENGTH || RAND_bytes(iv, ivlen) != 1)
            goto out;
        memcpy(key_name, k.name, TG_TICKET_NAME_LEN);
        if (EVP_EncryptInit_ex2(cctx, r->aes, k.aes, iv, NULL) != 1 ||
            tg_ticket_mac_init(hctx, k.hmac, sizeof(k.hmac)) != 1)
            goto out;
        rc = 1;
    } else {
        enum tg_ticket_which w = tg_ticket_ring_decrypt_key(r, now, key_name, &k);
        if (w == TG_TICKET_NONE)
            return 0;
        if (EVP_DecryptInit_ex2(cctx, r->aes, k.aes, iv, NULL) != 1 ||
            tg_ticket_mac_init(hctx, k.hmac, sizeof(k.hmac)) != 1)
            goto out;
        rc = w == TG_TICKET_CURRENT ? 1 : 2;
    }
out:
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}

int tg_ticket_ring_attach(struct tg_ticket_ring *r, SSL_CTX *ctx)
{
    pthread_once(&tg_ticket_ex_once, tg_ticket_ex_init);
    if (tg_ticket_ex_idx < 0 || SSL_CTX_set_ex_data(ctx, tg_ticket_ex_idx, r) != 1 ||
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, tg_ticket_cb) != 1) {
        ERR_clear_error();
        return TG_ECRYPTO;
    }
    return TG_OK;
}
