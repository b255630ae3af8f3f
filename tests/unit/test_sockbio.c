/*
 * tg_sockbio on a real loopback TCP pair: reads that skip the system call,
 * EOF, collected output and its flush, and MSG_MORE output that leaves with
 * the FIN in one segment (counted by the receiver's kernel, TCP_INFO).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/tg_sockbio.h"
#include "tg_test_util.h"

struct pair {
    int a, b; /* a: the BIO's side; b: the peer */
};

/* The BIO's side is the client of tg_test_tcp_pair (TCP_NODELAY, as the
 * gateway's sockets), made non-blocking. */
static struct pair tcp_pair(void)
{
    struct pair p;
    tg_test_tcp_pair(&p.a, &p.b, false);
    assert_int_equal(fcntl(p.a, F_SETFL, O_NONBLOCK), 0);
    return p;
}

static void pair_close(struct pair p)
{
    close(p.a);
    close(p.b);
}

/* Wait (blocking) until the peer's kernel has n bytes for b. */
static void peer_wait(int fd, size_t n)
{
    char buf[4096];
    while (recv(fd, buf, sizeof(buf), MSG_PEEK) < (ssize_t)n)
        usleep(1000);
}

static void test_read_skips_syscall_until_readable(void **state)
{
    (void)state;
    struct pair p = tcp_pair();
    struct tg_sockbio s = {.fd = p.a};
    BIO *bio = tg_sockbio_new(&s);
    assert_non_null(bio);
    assert_int_equal(send(p.b, "hello", 5, 0), 5);
    peer_wait(p.a, 5);
    char buf[64];
    /* Not said to be readable: no read, a retry, the bytes stay. */
    assert_int_equal(BIO_read(bio, buf, sizeof(buf)), -1);
    assert_true(BIO_should_retry(bio) && BIO_should_read(bio));
    assert_int_equal(recv(p.a, buf, sizeof(buf), MSG_PEEK), 5);
    /* Readable: a full read keeps the flag, a short one clears it. */
    s.readable = true;
    assert_int_equal(BIO_read(bio, buf, 2), 2);
    assert_true(s.readable);
    assert_int_equal(BIO_read(bio, buf, sizeof(buf)), 3);
    assert_memory_equal(buf, "llo", 3);
    assert_false(s.readable);
    /* Nothing there while readable: EAGAIN clears it too. */
    s.readable = true;
    assert_int_equal(BIO_read(bio, buf, sizeof(buf)), -1);
    assert_true(BIO_should_retry(bio));
    assert_false(s.readable);
    assert_false(BIO_eof(bio));
    BIO_free(bio);
    pair_close(p);
}

static void test_eof_and_fd(void **state)
{
    (void)state;
    struct pair p = tcp_pair();
    struct tg_sockbio s = {.fd = p.a, .readable = true};
    BIO *bio = tg_sockbio_new(&s);
    int fd = -1;
    assert_int_equal(BIO_get_fd(bio, &fd), p.a);
    assert_int_equal(fd, p.a);
    assert_int_equal(shutdown(p.b, SHUT_WR), 0);
    char buf[8];
    int n;
    while ((n = BIO_read(bio, buf, sizeof(buf))) < 0) {
        assert_true(BIO_should_retry(bio));
        s.readable = true;
        usleep(1000);
    }
    assert_int_equal(n, 0);
    assert_false(BIO_should_retry(bio));
    assert_true(BIO_eof(bio));
    BIO_free(bio); /* the descriptor stays open */
    assert_int_equal(send(p.a, "x", 1, MSG_NOSIGNAL), 1);
    pair_close(p);
}

static void test_collected_output(void **state)
{
    (void)state;
    struct pair p = tcp_pair();
    char obuf[16];
    struct tg_sockbio s = {.fd = p.a, .obuf = obuf, .ocap = sizeof(obuf)};
    BIO *bio = tg_sockbio_new(&s);
    assert_int_equal(BIO_write(bio, "0123456789", 10), 10);
    assert_int_equal(BIO_flush(bio), 1); /* libssl's flush leaves it to the caller */
    char buf[64];
    assert_int_equal(recv(p.b, buf, sizeof(buf), MSG_DONTWAIT), -1);
    assert_int_equal(errno, EAGAIN);
    /* Too big to collect: what is collected goes first, then the rest. */
    assert_int_equal(BIO_write(bio, "abcdefghij", 10), 10);
    assert_int_equal(s.olen, 0);
    peer_wait(p.b, 20);
    assert_int_equal(recv(p.b, buf, sizeof(buf), 0), 20);
    assert_memory_equal(buf, "0123456789abcdefghij", 20);
    /* Collected, then flushed by the caller. */
    assert_int_equal(BIO_write(bio, "xyz", 3), 3);
    size_t sent = 0;
    assert_int_equal(tg_sockbio_flush(&s, &sent), 0);
    assert_int_equal(sent, 3);
    assert_int_equal(s.olen, 0);
    peer_wait(p.b, 3);
    assert_int_equal(recv(p.b, buf, sizeof(buf), 0), 3);
    /* A broken connection is an error, not a retry. */
    close(p.b);
    p.b = -1;
    usleep(10000);
    assert_int_equal(BIO_write(bio, "x", 1), 1);
    int r;
    while ((r = tg_sockbio_flush(&s, NULL)) == 0) {
        /* the first send after the peer closed can still succeed (it draws
         * the RST); a later one fails */
        assert_int_equal(BIO_write(bio, "x", 1), 1);
        usleep(1000);
    }
    assert_int_equal(r, -1);
    assert_true(errno == EPIPE || errno == ECONNRESET);
    BIO_free(bio);
    close(p.a);
}

static uint32_t data_segs_in(int fd)
{
    struct tcp_info ti;
    socklen_t l = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l), 0);
    return ti.tcpi_data_segs_in;
}

static void test_more_leaves_with_the_fin(void **state)
{
    (void)state;
    struct pair p = tcp_pair();
    struct tg_sockbio s = {.fd = p.a};
    BIO *bio = tg_sockbio_new(&s);
    uint32_t segs0 = data_segs_in(p.b);
    s.more = true;
    assert_int_equal(BIO_write(bio, "last bytes", 10), 10);
    assert_int_equal(BIO_write(bio, "+alert", 6), 6);
    assert_int_equal(shutdown(p.a, SHUT_WR), 0);
    char buf[64];
    size_t got = 0;
    ssize_t n;
    while ((n = recv(p.b, buf + got, sizeof(buf) - got, 0)) > 0)
        got += (size_t)n;
    assert_int_equal(n, 0);
    assert_int_equal(got, 16);
    assert_memory_equal(buf, "last bytes+alert", 16);
    assert_int_equal(data_segs_in(p.b) - segs0, 1);
    BIO_free(bio);
    pair_close(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_skips_syscall_until_readable),
        cmocka_unit_test(test_eof_and_fd),
        cmocka_unit_test(test_collected_output),
        cmocka_unit_test(test_more_leaves_with_the_fin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
