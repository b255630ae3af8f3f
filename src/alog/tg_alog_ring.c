/*
 * tg_alog_ring: the per-worker single-producer single-consumer ring of
 * access-log records. Layout and memory order in tg_alog_ring.h.
 */
#include "alog/tg_alog_ring.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TG_ALOG_HDR  8 /* u32 size, u32 reserved */
#define TG_ALOG_META (1 + TG_ALOG_S_COUNT)

static size_t tg_alog_align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

int tg_alog_ring_init(struct tg_alog_ring *r, size_t cap, int data_fd, int urgent_fd)
{
    size_t c = 4096;
    while (c < cap)
        c <<= 1;
    memset(r, 0, sizeof(*r));
    r->data = malloc(c);
    if (r->data == NULL)
        return TG_ENOMEM;
    r->cap = c;
    r->data_fd = data_fd;
    r->urgent_fd = urgent_fd;
    return TG_OK;
}

void tg_alog_ring_destroy(struct tg_alog_ring *r)
{
    if (r == NULL)
        return;
    free(r->data);
    r->data = NULL;
}

static void tg_alog_ring_kick(int fd)
{
    /* Non-blocking eventfd: a full counter (never in practice) just means a
     * wake-up is already pending. */
    uint64_t one = 1;
    ssize_t n = write(fd, &one, sizeof(one));
    (void)n;
}

bool tg_alog_emit(struct tg_alog_ring *r, const struct tg_alog_rec *rec,
                  const struct tg_alog_strs *s)
{
    unsigned char meta[TG_ALOG_META] = {0};
    size_t strbytes = 0;
    for (int i = 0; i < TG_ALOG_S_COUNT; i++) {
        if (s == NULL || s->p[i] == NULL)
            continue;
        size_t l = s->len[i] < TG_ALOG_STR_MAX ? s->len[i] : TG_ALOG_STR_MAX;
        meta[0] |= (unsigned char)(1u << i);
        meta[1 + i] = (unsigned char)l;
        strbytes += l;
    }
    size_t need = tg_alog_align8(TG_ALOG_HDR + sizeof(*rec) + sizeof(meta) + strbytes);
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    size_t idx = (size_t)(head & (r->cap - 1));
    size_t contig = r->cap - idx;
    /* A record that does not fit before the end skips the rest. */
    size_t total = need <= contig ? need : contig + need;
    if (r->cap - (head - r->tail_seen) < total) {
        r->tail_seen = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (r->cap - (head - r->tail_seen) < total) {
            tg_ctr_inc(&r->dropped);
            return false;
        }
    }
    if (need > contig) {
        uint32_t wrap = 0;
        memcpy(r->data + idx, &wrap, sizeof(wrap));
        head += contig;
        idx = 0;
    }
    unsigned char *p = r->data + idx;
    uint32_t hdr[2] = {(uint32_t)need, 0};
    memcpy(p, hdr, sizeof(hdr));
    p += TG_ALOG_HDR;
    memcpy(p, rec, sizeof(*rec));
    p += sizeof(*rec);
    memcpy(p, meta, sizeof(meta));
    p += sizeof(meta);
    for (int i = 0; i < TG_ALOG_S_COUNT; i++) {
        if (meta[0] & (1u << i)) {
            memcpy(p, s->p[i], meta[1 + i]);
            p += meta[1 + i];
        }
    }
    head += need;
    atomic_store_explicit(&r->head, head, memory_order_release);
    tg_ctr_inc(&r->queued);
    /* Store head, then look at kicked; the writer clears kicked, then looks
     * at head (tg_alog_ring_rearm): with a full fence on both sides one of
     * us sees the other, so no record waits for a wake-up that never comes. */
    atomic_thread_fence(memory_order_seq_cst);
    if (r->data_fd >= 0 && !atomic_load_explicit(&r->kicked, memory_order_relaxed) &&
        !atomic_exchange_explicit(&r->kicked, true, memory_order_relaxed))
        tg_alog_ring_kick(r->data_fd);
    if (r->urgent_fd >= 0 && head - r->tail_seen >= r->cap / 2 &&
        !atomic_load_explicit(&r->urgent, memory_order_relaxed) &&
        !atomic_exchange_explicit(&r->urgent, true, memory_order_relaxed))
        tg_alog_ring_kick(r->urgent_fd);
    return true;
}

bool tg_alog_ring_peek(struct tg_alog_ring *r, struct tg_alog_rec *rec, struct tg_alog_strs *s)
{
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    while (tail != head) {
        size_t idx = (size_t)(tail & (r->cap - 1));
        const unsigned char *p = r->data + idx;
        uint32_t size;
        memcpy(&size, p, sizeof(size));
        if (size == 0) {
            /* The producer continued at the start. */
            tail += r->cap - idx;
            continue;
        }
        p += TG_ALOG_HDR;
        memcpy(rec, p, sizeof(*rec));
        p += sizeof(*rec);
        unsigned char meta[TG_ALOG_META];
        memcpy(meta, p, sizeof(meta));
        p += sizeof(meta);
        for (int i = 0; i < TG_ALOG_S_COUNT; i++) {
            if (meta[0] & (1u << i)) {
                s->p[i] = (const char *)p;
                s->len[i] = meta[1 + i];
                p += meta[1 + i];
            } else {
                s->p[i] = NULL;
                s->len[i] = 0;
            }
        }
        r->next = tail + size;
        if (tail != atomic_load_explicit(&r->tail, memory_order_relaxed))
            atomic_store_explicit(&r->tail, tail, memory_order_release);
        return true;
    }
    if (tail != atomic_load_explicit(&r->tail, memory_order_relaxed))
        atomic_store_explicit(&r->tail, tail, memory_order_release);
    return false;
}

void tg_alog_ring_pop(struct tg_alog_ring *r)
{
    atomic_store_explicit(&r->tail, r->next, memory_order_release);
}

void tg_alog_ring_rearm(struct tg_alog_ring *r)
{
    atomic_store_explicit(&r->kicked, false, memory_order_relaxed);
    atomic_store_explicit(&r->urgent, false, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst); /* see tg_alog_emit */
}
