/*
 * tg_srclimit: open client connections per source address, process-wide
 * (limits.max_connections_per_source).
 *
 * SO_REUSEPORT hashes each connection (source port included) to a worker, so
 * one source's connections land on every worker: the count must be shared.
 * It is kept in a fixed table of atomic counters, allocated once, without a
 * lock and without an allocation per connection: a count-min sketch of two
 * rows. A source address (IPv4, or an IPv6 address cut to its first
 * per_source_ipv6_prefix bits; an IPv4-mapped IPv6 address counts as the
 * IPv4 one) is hashed with a keyed hash (SipHash-2-4, a random key per
 * process, so nobody outside can choose addresses that collide) to one
 * counter in each row; a connection is refused when both of its counters
 * have reached the limit. A source is therefore never let past its limit;
 * a source under it can be refused only when both of its counters are
 * shared with sources at their limit (with k such sources, probability
 * about (k / TG_SRCLIMIT_SLOTS)^2).
 *
 * Threads: tg_srclimit_new/free on one thread while no worker runs; acquire
 * and release from any thread.
 */
#ifndef TG_SRCLIMIT_H
#define TG_SRCLIMIT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/tg_err.h"

#define TG_SRCLIMIT_SLOTS 16384 /* counters per row (a power of two) */

struct tg_srclimit;

/* What a counted connection holds, to give back with tg_srclimit_release. */
struct tg_srclimit_hold {
    uint32_t slot[2];
    bool held;
};

/* TG_OK or TG_ENOMEM. The key comes from the system's random source. */
int tg_srclimit_new(struct tg_srclimit **out) TG_MUST_CHECK;
void tg_srclimit_free(struct tg_srclimit *s);

/* Count a connection from addr against max (> 0). True: counted, *hold
 * filled (release it once). False: the source has reached max; nothing is
 * counted and hold->held is false. An address that is neither IPv4 nor
 * IPv6 is not limited (true, nothing held). */
bool tg_srclimit_acquire(struct tg_srclimit *s, const struct sockaddr_storage *addr,
                         unsigned ipv6_prefix, uint64_t max, struct tg_srclimit_hold *hold);
/* Give back what acquire counted; a hold that holds nothing is ignored.
 * Clears hold->held. */
void tg_srclimit_release(struct tg_srclimit *s, struct tg_srclimit_hold *hold);

/* The 16 bytes an address is counted under (exposed for tests): IPv4 as
 * ::ffff:a.b.c.d, IPv6 with every bit past ipv6_prefix cleared. False for
 * another family. */
bool tg_srclimit_key(const struct sockaddr_storage *addr, unsigned ipv6_prefix, uint8_t out[16]);
/* SipHash-2-4 of in[0..len) under key (exposed for tests). */
uint64_t tg_siphash24(const uint8_t key[16], const void *in, size_t len);

#endif
