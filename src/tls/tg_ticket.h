/*
 * tg_ticket: the session ticket key ring, one per process.
 *
 * Every SSL_CTX of every listener and of every configuration generation
 * encrypts and decrypts its session tickets (TLS 1.2 tickets and TLS 1.3
 * stateless PSKs) with the keys of one ring (tg_ticket_ring_attach), so a
 * ticket issued by one worker resumes on any other, and a ticket issued
 * before a reload resumes after it.
 *
 * Rotation: a key is *current* (encrypts new tickets, decrypts) for one
 * interval, then *previous* (only decrypts) for one more interval, then it is
 * wiped (OPENSSL_cleanse). A ticket therefore resumes for at least one and at
 * most two intervals after it was issued, and a key found in memory at time
 * t opens only the tickets issued in the two intervals before t: that bounds
 * what a leaked ticket key exposes (see docs/OPERATIONS.md, "Session
 * tickets"). Rotation is decided from a clock value the caller passes in
 * (tg_ticket_ring_advance and the key lookups), so tests drive time; the
 * OpenSSL callback reads the ring's clock (CLOCK_BOOTTIME unless a test sets
 * another), and the gateway's main loop calls tg_ticket_ring_advance when a
 * rotation is due, so retired keys are wiped on time even without traffic.
 * If more than one interval passed unseen, both keys are wiped and a new
 * one starts.
 *
 * A key: a random 16-byte name (the first 16 bytes of every ticket it
 * encrypts), an AES-256-CBC key and an HMAC-SHA256 key, all from
 * RAND_bytes.
 *
 * Threading: every function may be called from any thread; the ring's state
 * is behind a mutex (one short critical section per ticket issued or
 * presented, no allocation inside). The ring must outlive every SSL_CTX it
 * is attached to.
 */
#ifndef TG_TICKET_H
#define TG_TICKET_H

#include <openssl/ssl.h>
#include <stdint.h>

#include "core/tg_buf.h"
#include "core/tg_err.h"

#define TG_TICKET_NAME_LEN 16

struct tg_ticket_ring;

/* One key; copies handed out are wiped by whoever holds them. */
struct tg_ticket_key {
    unsigned char name[TG_TICKET_NAME_LEN];
    unsigned char aes[32];
    unsigned char hmac[32];
};

/* What the ring has done since it was made. */
struct tg_ticket_stats {
    uint64_t rotations;        /* keys made after the first */
    uint64_t issued;           /* tickets encrypted */
    uint64_t resumed_current;  /* tickets decrypted with the current key */
    uint64_t resumed_previous; /* with the previous key (a fresh ticket replaces it) */
    uint64_t unknown_key;      /* tickets whose key is gone or never was ours */
};

/* Which key a ticket name belongs to. */
enum tg_ticket_which { TG_TICKET_NONE = 0, TG_TICKET_CURRENT = 1, TG_TICKET_PREVIOUS = 2 };

/* The clock rotation follows by default: CLOCK_BOOTTIME (it counts time the
 * machine was suspended, which a key's age must), in ns. */
uint64_t tg_ticket_clock_ns(void);

/* A ring with a first key, current from now_ns, rotating every interval_ns
 * (> 0). TG_ENOMEM, or TG_ECRYPTO when no random bytes or no AES-256-CBC. */
int tg_ticket_ring_new(uint64_t interval_ns, uint64_t now_ns,
                       struct tg_ticket_ring **out) TG_MUST_CHECK;
/* Wipes every key. NULL is fine. */
void tg_ticket_ring_free(struct tg_ticket_ring *r);

/* The clock the OpenSSL callback reads (tests); NULL restores the default.
 * Before the ring is attached to a context in use: it is read unlocked. */
void tg_ticket_ring_set_clock(struct tg_ticket_ring *r, uint64_t (*clock)(void *), void *arg);
/* The ring's clock now (any thread). */
uint64_t tg_ticket_ring_now(const struct tg_ticket_ring *r);

/* A new interval (> 0; a reload): the current key stays current until its
 * start + interval_ns, then rotation goes on at that pace. When the current
 * key is already older than that, it becomes the previous key at once (its
 * tickets still resume for one new interval), the previous one is wiped and
 * a new key starts. */
void tg_ticket_ring_set_interval(struct tg_ticket_ring *r, uint64_t interval_ns, uint64_t now_ns);
uint64_t tg_ticket_ring_interval(struct tg_ticket_ring *r);

/* Rotate as due at now_ns; returns the time until the next rotation (ns,
 * > 0). */
uint64_t tg_ticket_ring_advance(struct tg_ticket_ring *r, uint64_t now_ns);

/* The key to encrypt a new ticket with at now_ns (after advancing): TG_OK,
 * or TG_ECRYPTO when no key could be made (then no ticket is issued). */
int tg_ticket_ring_encrypt_key(struct tg_ticket_ring *r, uint64_t now_ns,
                               struct tg_ticket_key *out) TG_MUST_CHECK;
/* The key named name at now_ns (after advancing), copied into *out when
 * found. Counts the outcome. */
enum tg_ticket_which tg_ticket_ring_decrypt_key(struct tg_ticket_ring *r, uint64_t now_ns,
                                                const unsigned char name[TG_TICKET_NAME_LEN],
                                                struct tg_ticket_key *out);

void tg_ticket_ring_stats(struct tg_ticket_ring *r, struct tg_ticket_stats *out);
/* tlsgate_session_ticket_* series, headers included. */
void tg_ticket_ring_render(struct tg_ticket_ring *r, struct tg_buf *out);

/* Make ctx encrypt and decrypt its tickets with r (the ticket key callback
 * and a pointer to r in the context's ex_data). Before ctx is shared.
 * TG_ECRYPTO when OpenSSL refuses. */
int tg_ticket_ring_attach(struct tg_ticket_ring *r, SSL_CTX *ctx) TG_MUST_CHECK;

#endif
