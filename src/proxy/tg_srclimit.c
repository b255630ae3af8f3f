#include "proxy/tg_srclimit.h"

#include <netinet/in.h>
#include <openssl/rand.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct tg_srclimit {
    uint8_t key[16];
    _Atomic uint32_t rows[2][TG_SRCLIMIT_SLOTS];
};

/* ---- SipHash-2-4, written from its specification (Aumasson, Bernstein) ---- */

static inline uint64_t tg_rotl64(uint64_t x, unsigned b)
{
    return (x << b) | (x >> (64 - b));
}

static inline uint64_t tg_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

#define TG_SIPROUND(v0, v1, v2, v3)                                                                \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = tg_rotl64(v1, 13) ^ v0;                                                               \
        v0 = tg_rotl64(v0, 32);                                                                    \
        v2 += v3;                                                                                  \
        v3 = tg_rotl64(v3, 16) ^ v2;                                                               \
        v0 += v3;                                                                                  \
        v3 = tg_rotl64(v3, 21) ^ v0;                                                               \
        v2 += v1;                                                                                  \
        v1 = tg_rotl64(v1, 17) ^ v2;                                                               \
        v2 = tg_rotl64(v2, 32);                                                                    \
    } while (0)

uint64_t tg_siphash24(const uint8_t key[16], const void *in, size_t len)
{
    const uint8_t *p = in;
    uint64_t k0 = tg_le64(key), k1 = tg_le64(key + 8);
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
    size_t full = len & ~(size_t)7;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = tg_le64(p + i);
        v3 ^= m;
        TG_SIPROUND(v0, v1, v2, v3);
        TG_SIPROUND(v0, v1, v2, v3);
        v0 ^= m;
    }
    /* Last block: the bytes left, and the length's low byte on top. */
    uint64_t b = (uint64_t)(len & 0xff) << 56;
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)p[full + i] << (8 * i);
    v3 ^= b;
    TG_SIPROUND(v0, v1, v2, v3);
    TG_SIPROUND(v0, v1, v2, v3);
    v0 ^= b;
    v2 ^= 0xff;
    for (int i = 0; i < 4; i++)
        TG_SIPROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- the table ---- */

int tg_srclimit_new(struct tg_srclimit **out)
{
    *out = NULL;
    /* calloc: pages nobody counts in stay untouched (not resident). */
    struct tg_srclimit *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return TG_ENOMEM;
    if (RAND_bytes(s->key, sizeof(s->key)) != 1) {
        free(s);
        return TG_ECRYPTO;
    }
    *out = s;
    return TG_OK;
}

void tg_srclimit_free(struct tg_srclimit *s)
{
    free(s);
}

bool tg_srclimit_key(const struct sockaddr_storage *addr, unsigned ipv6_prefix, uint8_t out[16])
{
    memset(out, 0, 16);
    if (addr->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)addr;
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &sin->sin_addr, 4);
        return true;
    }
    if (addr->ss_family != AF_INET6)
        return false;
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)addr;
    memcpy(out, &sin6->sin6_addr, 16);
    if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
        return true; /* the IPv4 address, whole */
    unsigned bits = ipv6_prefix > 128 ? 128 : ipv6_prefix;
    for (unsigned i = 0; i < 16; i++) {
        unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ? bits - 8 * i : 0;
        out[i] &= (uint8_t)(0xff00u >> keep);
    }
    return true;
}

bool tg_srclimit_acquire(struct tg_srclimit *s, const struct sockaddr_storage *addr,
                         unsigned ipv6_prefix, uint64_t max, struct tg_srclimit_hold *hold)
{
    hold->held = false;
    uint8_t k[16];
    if (!tg_srclimit_key(addr, ipv6_prefix, k))
        return true;
    uint64_t h = tg_siphash24(s->key, k, sizeof(k));
    uint32_t i0 = (uint32_t)h & (TG_SRCLIMIT_SLOTS - 1);
    uint32_t i1 = (uint32_t)(h >> 32) & (TG_SRCLIMIT_SLOTS - 1);
    uint32_t a = atomic_fetch_add_explicit(&s->rows[0][i0], 1, memory_order_relaxed);
    uint32_t b = atomic_fetch_add_explicit(&s->rows[1][i1], 1, memory_order_relaxed);
    if (a >= max && b >= max) {
        atomic_fetch_sub_explicit(&s->rows[0][i0], 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&s->rows[1][i1], 1, memory_order_relaxed);
        return false;
    }
    hold->slot[0] = i0;
    hold->slot[1] = i1;
    hold->held = true;
    return true;
}

void tg_srclimit_release(struct tg_srclimit *s, struct tg_srclimit_hold *hold)
{
    if (!hold->held)
        return;
    atomic_fetch_sub_explicit(&s->rows[0][hold->slot[0]], 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&s->rows[1][hold->slot[1]], 1, memory_order_relaxed);
    hold->held = false;
}
