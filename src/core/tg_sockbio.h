/*
 * tg_sockbio: the BIO libssl reads and writes a non-blocking TCP socket
 * through, in a program whose event loop knows more than the socket does.
 *
 * The caller owns a struct tg_sockbio (one per connection) and points the BIO
 * at it; the BIO works on whatever descriptor the struct holds. Compared with
 * OpenSSL's socket BIO it saves system calls and packets:
 *
 *  - Reads skip the system call when it could only say EAGAIN: `readable`
 *    is set by the caller when its loop reports the socket readable, and
 *    cleared by a read that came back short (TCP returns less than asked
 *    only when its receive queue is empty) or would block. A stale false
 *    costs one loop turn, never a hang, as long as the caller waits for
 *    readability whenever libssl says SSL_ERROR_WANT_READ (level-triggered
 *    polling reports data that is already there).
 *  - Writes may be collected in the caller's buffer (`obuf`, optional) and
 *    sent once per step (tg_sockbio_flush): the bench client sends its TLS
 *    Finished and its request in one segment.
 *  - `more` marks output that is followed at once by more output or by the
 *    end of the stream: sends carry MSG_MORE, so the kernel holds a partial
 *    segment until the next send or shutdown(SHUT_WR), which then leave
 *    together (the gateway's last response bytes, its close_notify and its
 *    FIN in one packet). Whoever sets it must end with a send without it,
 *    shutdown() or close(); with TCP_NODELAY, data already in flight is
 *    pushed by the next ACK anyway.
 *
 * Sends use MSG_NOSIGNAL. The BIO never closes the descriptor.
 *
 * Threading: the struct and its BIO belong to one thread; tg_sockbio_method
 * may be called from any thread (the method is made once).
 */
#ifndef TG_SOCKBIO_H
#define TG_SOCKBIO_H

#include <openssl/bio.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tg_sockbio {
    int fd;
    bool readable; /* the loop said readable, and no read came back short since */
    bool eof;      /* a read returned 0 */
    bool more;     /* more output follows at once: sends carry MSG_MORE */
    char *obuf;    /* optional: output collected until tg_sockbio_flush */
    uint32_t olen, ocap;
};

/* The method (process-wide, made on first use); NULL when out of memory. */
const BIO_METHOD *tg_sockbio_method(void);

/* A BIO working on s (s must outlive it); NULL when out of memory. */
BIO *tg_sockbio_new(struct tg_sockbio *s);

/* Send what obuf holds. 0: all sent; 1: would block (the rest stays, wait
 * for writability); -1: error, errno set. *sent (may be NULL): bytes that
 * left in this call. */
int tg_sockbio_flush(struct tg_sockbio *s, size_t *sent);

#endif
