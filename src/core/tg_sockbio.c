/*
 * tg_sockbio: libssl's BIO over a non-blocking TCP socket (contract in
 * tg_sockbio.h).
 */
#include "core/tg_sockbio.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>

static ssize_t tg_sb_send(const struct tg_sockbio *s, const char *data, size_t len)
{
    int flags = MSG_NOSIGNAL | (s->more ? MSG_MORE : 0);
    ssize_t n;
    do
        n = send(s->fd, data, len, flags);
    while (n < 0 && errno == EINTR);
    return n;
}

static bool tg_sb_would_block(void)
{
    return errno == EAGAIN || errno == EWOULDBLOCK;
}

int tg_sockbio_flush(struct tg_sockbio *s, size_t *sent)
{
    uint32_t off = 0;
    int rc = 0;
    while (off < s->olen) {
        ssize_t n = tg_sb_send(s, s->obuf + off, s->olen - off);
        if (n < 0) {
            rc = tg_sb_would_block() ? 1 : -1;
            break;
        }
        off += (uint32_t)n;
    }
    if (off > 0) {
        int saved = errno;
        memmove(s->obuf, s->obuf + off, s->olen - off);
        errno = saved;
        s->olen -= off;
    }
    if (sent != NULL)
        *sent = off;
    return rc;
}

static int tg_sb_write(BIO *bio, const char *data, int len)
{
    struct tg_sockbio *s = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    if (len <= 0)
        return 0;
    if (s->obuf != NULL) {
        if ((size_t)s->olen + (size_t)len <= s->ocap) {
            memcpy(s->obuf + s->olen, data, (size_t)len);
            s->olen += (uint32_t)len;
            return len;
        }
        /* Too big to collect: what is collected goes first, then this. */
        int r = tg_sockbio_flush(s, NULL);
        if (r < 0)
            return -1;
        if (r > 0) {
            BIO_set_retry_write(bio);
            return -1;
        }
    }
    ssize_t n = tg_sb_send(s, data, (size_t)len);
    if (n >= 0)
        return (int)n;
    if (tg_sb_would_block())
        BIO_set_retry_write(bio);
    return -1;
}

static int tg_sb_read(BIO *bio, char *out, int len)
{
    struct tg_sockbio *s = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    if (len <= 0)
        return 0;
    if (!s->readable) {
        /* Nothing reported since the last short read: recv could only
         * say EAGAIN. */
        BIO_set_retry_read(bio);
        return -1;
    }
    ssize_t n;
    do
        n = recv(s->fd, out, (size_t)len, 0);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        if (n < len)
            s->readable = false;
        return (int)n;
    }
    if (n == 0) {
        s->eof = true;
        return 0;
    }
    if (tg_sb_would_block()) {
        s->readable = false;
        BIO_set_retry_read(bio);
    }
    return -1;
}

static long tg_sb_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
    (void)num;
    const struct tg_sockbio *s = BIO_get_data(bio);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* collected output leaves with tg_sockbio_flush */
    case BIO_CTRL_EOF:
        return s != NULL && s->eof;
    case BIO_C_GET_FD:
        if (s == NULL)
            return -1;
        if (ptr != NULL)
            *(int *)ptr = s->fd;
        return s->fd;
    case BIO_CTRL_GET_CLOSE:
        return BIO_NOCLOSE;
    case BIO_CTRL_SET_CLOSE:
    case BIO_CTRL_DUP:
        return 1;
    default:
        return 0;
    }
}

static int tg_sb_create(BIO *bio)
{
    BIO_set_init(bio, 1);
    return 1;
}

static BIO_METHOD *tg_sb_method;
static pthread_once_t tg_sb_once = PTHREAD_ONCE_INIT;

static void tg_sb_make_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "tlsgate socket");
    if (m == NULL || BIO_meth_set_write(m, tg_sb_write) != 1 ||
        BIO_meth_set_read(m, tg_sb_read) != 1 || BIO_meth_set_ctrl(m, tg_sb_ctrl) != 1 ||
        BIO_meth_set_create(m, tg_sb_create) != 1) {
        BIO_meth_free(m);
        return;
    }
    tg_sb_method = m;
}

const BIO_METHOD *tg_sockbio_method(void)
{
    (void)pthread_once(&tg_sb_once, tg_sb_make_method);
    return tg_sb_method;
}

BIO *tg_sockbio_new(struct tg_sockbio *s)
{
    const BIO_METHOD *m = tg_sockbio_method();
    BIO *bio = m != NULL ? BIO_new(m) : NULL;
    if (bio != NULL)
        BIO_set_data(bio, s);
    return bio;
}
