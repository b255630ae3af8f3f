/*
 * tg_buf: a growable byte/string builder (admin output, JSON, messages).
 * Owner: whoever declares it; tg_buf_free releases the storage.
 * Not thread-safe. On allocation failure the buffer is marked failed and
 * further appends are ignored; check tg_buf_failed before using the result.
 */
#ifndef TG_BUF_H
#define TG_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct tg_buf {
    char *data; /* always NUL-terminated when len > 0 */
    size_t len;
    size_t cap;
    bool failed;
};

#define TG_BUF_INIT                                                                                \
    {                                                                                              \
        NULL, 0, 0, false                                                                          \
    }

void tg_buf_append(struct tg_buf *b, const void *p, size_t n);
void tg_buf_puts(struct tg_buf *b, const char *s);
void tg_buf_printf(struct tg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tg_buf_reset(struct tg_buf *b);
void tg_buf_free(struct tg_buf *b);
static inline bool tg_buf_failed(const struct tg_buf *b)
{
    return b->failed;
}

#endif
