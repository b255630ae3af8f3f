/*
 * tg_alog_ring: one worker's buffer of access-log records, a single-producer
 * single-consumer byte ring (what tg_alog_emit writes and the writer thread
 * reads). Internal to src/alog (and its tests).
 *
 * Layout: records one after the other, each [u32 size][u32 0][struct
 * tg_alog_rec][u8 present][u8 len[TG_ALOG_S_COUNT]][string bytes], padded to
 * 8 bytes; a record never wraps: when it does not fit before the end, the
 * producer writes a size of 0 there ("continue at the start") and the record
 * goes at offset 0. head and tail count bytes since the start (they never
 * wrap around 2^64 in practice); head - tail <= cap.
 *
 * Memory order: the producer writes the bytes, then publishes head with a
 * release store; the consumer loads head with acquire, reads, then gives the
 * space back with a release store of tail, which the producer loads with
 * acquire before reusing it. Counters are single-writer (tg_ctr).
 *
 * Wake-ups: the producer writes the data eventfd on the first record after
 * the writer last looked (kicked), and the urgent eventfd once when the ring
 * passes half full (urgent); the writer clears both flags before it drains.
 * So a worker makes at most two write(2) calls per drain, usually one.
 */
#ifndef TG_ALOG_RING_H
#define TG_ALOG_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alog/tg_alog.h"

struct tg_alog_ring {
    /* producer (worker) */
    _Alignas(64) _Atomic uint64_t head;
    uint64_t tail_seen; /* the producer's last look at tail */
    tg_ctr queued;      /* records accepted */
    tg_ctr dropped;     /* records refused: ring full */
    _Atomic bool kicked;
    _Atomic bool urgent;
    /* consumer (writer) */
    _Alignas(64) _Atomic uint64_t tail;
    uint64_t next; /* tail after the record last peeked */
    /* fixed after init */
    _Alignas(64) unsigned char *data;
    size_t cap;    /* a power of two */
    int data_fd;   /* eventfd to write on the first record; -1: none */
    int urgent_fd; /* eventfd to write at half full; -1: none */
};

/* cap: rounded up to a power of two, at least 4 KiB. TG_OK or TG_ENOMEM. */
int tg_alog_ring_init(struct tg_alog_ring *r, size_t cap, int data_fd, int urgent_fd) TG_MUST_CHECK;
void tg_alog_ring_destroy(struct tg_alog_ring *r);

/* Consumer: the oldest record, without removing it (false: empty). The
 * pointers in *s point into the ring and stay valid until tg_alog_ring_pop. */
bool tg_alog_ring_peek(struct tg_alog_ring *r, struct tg_alog_rec *rec, struct tg_alog_strs *s);
/* Consumer: remove the record last peeked. */
void tg_alog_ring_pop(struct tg_alog_ring *r);
/* Consumer: clear the wake-up flags before draining. */
void tg_alog_ring_rearm(struct tg_alog_ring *r);

#endif
