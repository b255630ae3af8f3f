/*
 * tg_bench_sockbio: the BIO libssl reads and writes a slot's socket through
 * (one per SSL object; its data is the struct bc_conn, so it works on
 * whatever connection the slot holds: c->fd, c->obuf).
 *
 * Writes: what libssl writes is collected in the slot's small output buffer
 * and sent once per step (bbio_flush, when the slot goes back to waiting,
 * bconn_wait), so the TLS Finished and the HTTP request leave in one segment:
 * one write instead of two, and one wake-up less for the server. A write too
 * big for the buffer (a large payload) goes to the socket directly.
 *
 * Reads: the BIO knows from epoll whether the socket is readable
 * (c->readable, set by the io watcher, cleared by a short read), so libssl's
 * read right after the ClientHello costs no system call.
 *
 * Threading: the loop's thread only.
 */
#include "bench/tg_bench_client.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

/* Send the buffered TLS output. 0: all sent; 1: would block (the rest stays
 * buffered, wait for EV_WRITE); -1: error, errno set. */
int bbio_flush(struct bc_conn *c)
{
    uint32_t off = 0;
    while (off < c->olen) {
        ssize_t n = send(c->fd, c->obuf + off, c->olen - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -1;
            break;
        }
        off += (uint32_t)n;
    }
    if (off > 0) {
        bc_tcp_up(c); /* bytes went out: the TCP connection is established */
        memmove(c->obuf, c->obuf + off, c->olen - off);
        c->olen -= off;
    }
    return c->olen > 0 ? 1 : 0;
}

static int bbio_write(BIO *bio, const char *data, int len)
{
    struct bc_conn *c = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    if (len <= 0)
        return 0;
    if ((size_t)c->olen + (size_t)len <= TG_BENCH_OBUF_SIZE) {
        memcpy(c->obuf + c->olen, data, (size_t)len);
        c->olen += (uint32_t)len;
        return len;
    }
    /* Too big to collect: what is buffered goes first, then this directly. */
    int r = bbio_flush(c);
    if (r < 0)
        return -1;
    if (r == 0) {
        ssize_t n = send(c->fd, data, (size_t)len, MSG_NOSIGNAL);
        if (n >= 0)
            return (int)n;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
    }
    BIO_set_retry_write(bio);
    return -1;
}

static int bbio_read(BIO *bio, char *out, int len)
{
    struct bc_conn *c = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    if (!c->readable) {
        /* epoll has not reported data since the last short read: read(2)
         * could only say EAGAIN. */
        BIO_set_retry_read(bio);
        return -1;
    }
    ssize_t n = recv(c->fd, out, (size_t)len, 0);
    if (n > 0) {
        if (n < len)
            c->readable = false;
        return (int)n;
    }
    if (n == 0) {
        c->peer_eof = true;
        return 0;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        c->readable = false;
        BIO_set_retry_read(bio);
    }
    return -1;
}

static long bbio_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    struct bc_conn *c = BIO_get_data(bio);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* sent at the end of the step (bconn_wait), not per flight */
    case BIO_CTRL_EOF:
        return c != NULL && c->peer_eof;
    case BIO_CTRL_GET_CLOSE:
    case BIO_CTRL_SET_CLOSE:
    case BIO_CTRL_DUP:
        return 1;
    default:
        return 0;
    }
}

static int bbio_create(BIO *bio)
{
    BIO_set_init(bio, 1);
    return 1;
}

BIO_METHOD *bbio_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tgbench");
    if (m == NULL || BIO_meth_set_write(m, bbio_write) != 1 ||
        BIO_meth_set_read(m, bbio_read) != 1 || BIO_meth_set_ctrl(m, bbio_ctrl) != 1 ||
        BIO_meth_set_create(m, bbio_create) != 1) {
        BIO_meth_free(m);
        return NULL;
    }
    return m;
}
