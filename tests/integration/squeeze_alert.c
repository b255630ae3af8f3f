/*
 * squeeze_alert.so: preloaded into tlsgate by test_close_notify.py. It plays
 * a kernel whose send buffer is full at the moment the TLS alert is due:
 * the first write() or send() of an alert-sized TLS record on each TCP
 * socket fails with EAGAIN, as they do on a full non-blocking socket; the socket
 * stays writable, so the next attempt goes through. Everything else passes
 * untouched.
 *
 * On loopback the condition is a race the test cannot set up on purpose
 * (the alert follows the last data record within microseconds, and the
 * kernel refuses it only if that record filled the buffer exactly); on real
 * networks with slow readers it is common. This makes it happen every time.
 *
 * An alert-sized record (RFC 8446 5.2, RFC 5246 6.2.3.3): TLS 1.2 sends
 * alerts as content type 21 (0x15) records; TLS 1.3 encrypts them as
 * application_data (0x17) records of 2 + 1 + 16 = 19 bytes (AES-GCM,
 * ChaCha20-Poly1305), which the test's own data never produces (it never
 * sends 2-byte pieces).
 *
 * Built by the test with: cc -shared -fPIC -O2 -o squeeze_alert.so
 * squeeze_alert.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FD 65536

/* Per descriptor: 1 once its alert was refused (cleared when it closes). */
static _Atomic unsigned char refused[MAX_FD];
static _Atomic unsigned long n_refused;

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_send)(int, const void *, size_t, int);
static int (*real_close)(int);

static void resolve(void)
{
    if (real_write == NULL)
        *(void **)&real_write = dlsym(RTLD_NEXT, "write");
    if (real_send == NULL)
        *(void **)&real_send = dlsym(RTLD_NEXT, "send");
    if (real_close == NULL)
        *(void **)&real_close = dlsym(RTLD_NEXT, "close");
    if (real_write == NULL || real_send == NULL || real_close == NULL)
        abort();
}

static int is_alert_record(const unsigned char *b, size_t n)
{
    if (n < 5 || b[1] != 3)
        return 0;
    size_t len = ((size_t)b[3] << 8) | b[4];
    if (n != 5 + len)
        return 0;
    return b[0] == 0x15 || (b[0] == 0x17 && len == 19);
}

static int is_tcp(int fd)
{
    int type = 0, dom = 0;
    socklen_t l1 = sizeof(type), l2 = sizeof(dom);
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l1) == 0 && type == SOCK_STREAM &&
           getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l2) == 0 &&
           (dom == AF_INET || dom == AF_INET6);
}

/* True (and says so on stderr) when this write is the socket's first
 * alert: the caller fails it with EAGAIN. */
static int squeeze(int fd, const void *buf, size_t n)
{
    if (fd < 0 || fd >= MAX_FD || !is_alert_record(buf, n) || !is_tcp(fd) ||
        atomic_exchange(&refused[fd], 1) != 0)
        return 0;
    unsigned long k = atomic_fetch_add(&n_refused, 1) + 1;
    char line[96];
    int len =
        snprintf(line, sizeof(line), "squeeze_alert: fd %d: alert write refused (%lu)\n", fd, k);
    if (len > 0)
        (void)real_write(2, line, (size_t)len);
    return 1;
}

ssize_t write(int fd, const void *buf, size_t n)
{
    resolve();
    if (squeeze(fd, buf, n)) {
        errno = EAGAIN;
        return -1;
    }
    return real_write(fd, buf, n);
}

ssize_t send(int fd, const void *buf, size_t n, int flags)
{
    resolve();
    if (squeeze(fd, buf, n)) {
        errno = EAGAIN;
        return -1;
    }
    return real_send(fd, buf, n, flags);
}

int close(int fd)
{
    resolve();
    if (fd >= 0 && fd < MAX_FD)
        atomic_store(&refused[fd], 0);
    return real_close(fd);
}
