/*
 * Unit tests for src/upstream/tg_health.c: the thresholds (pure), and real
 * TCP probes on loopback from a libev loop: a listening port (ok), a closed
 * one (refused), a full accept queue (timeout), and a check freed with a
 * probe in flight.
 */
#include "tg_test_util.h"

#include "core/tg_time.h"
#include "upstream/tg_health.h"

#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void test_judge(void **state)
{
    (void)state;
    struct tg_conf_health_check c = {true, 1, 1, 3, 2};
    struct tg_health_run r = {0, 0};
    bool h = true;
    h = tg_health_judge(&r, &c, h, false);
    h = tg_health_judge(&r, &c, h, false);
    assert_true(h);
    h = tg_health_judge(&r, &c, h, true); /* the run is broken */
    h = tg_health_judge(&r, &c, h, false);
    h = tg_health_judge(&r, &c, h, false);
    assert_true(h);
    h = tg_health_judge(&r, &c, h, false);
    assert_false(h);
    h = tg_health_judge(&r, &c, h, true);
    assert_false(h);
    h = tg_health_judge(&r, &c, h, false);
    h = tg_health_judge(&r, &c, h, true);
    assert_false(h);
    h = tg_health_judge(&r, &c, h, true);
    assert_true(h);
    /* healthy_threshold 1: one good probe is enough. */
    c.healthy_threshold = 1;
    c.unhealthy_threshold = 1;
    h = tg_health_judge(&r, &c, h, false);
    assert_false(h);
    h = tg_health_judge(&r, &c, h, true);
    assert_true(h);
}

struct probe {
    int n, ok, err;
};

static void probe_cb(void *arg, bool ok, int err)
{
    struct probe *p = arg;
    p->n++;
    p->ok = ok;
    p->err = err;
}

static int listen_port(int backlog, bool do_listen, int *fd)
{
    *fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(*fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    if (do_listen)
        assert_int_equal(listen(*fd, backlog), 0);
    assert_int_equal(getsockname(*fd, (struct sockaddr *)&sin, &len), 0);
    return ntohs(sin.sin_port);
}

/* Run the loop until the check has reported `want` probes (bounded). */
static void run_probes(struct ev_loop *loop, int port, const struct tg_conf_health_check *c,
                       struct probe *p, int want)
{
    union tg_sockaddr a;
    memset(&a, 0, sizeof(a));
    a.sin.sin_family = AF_INET;
    a.sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin.sin_port = htons((uint16_t)port);
    struct tg_health *h = NULL;
    assert_int_equal(tg_health_new(loop, c, &a, sizeof(a.sin), 0.0, probe_cb, p, &h), TG_OK);
    uint64_t end = tg_now_ns() + 30 * TG_NS_PER_S;
    while (p->n < want) {
        assert_true(tg_now_ns() < end);
        ev_run(loop, EVRUN_ONCE);
    }
    tg_health_free(h);
}

static void test_probes(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct tg_conf_health_check c = {true, 1 * TG_NS_PER_MS, 200 * TG_NS_PER_MS, 1, 1};
    int fd, port;
    struct probe p = {0, 0, 0};

    port = listen_port(16, true, &fd);
    run_probes(loop, port, &c, &p, 3);
    assert_true(p.ok);
    close(fd);

    memset(&p, 0, sizeof(p));
    port = listen_port(0, false, &fd); /* bound, not listening */
    run_probes(loop, port, &c, &p, 2);
    assert_false(p.ok);
    assert_int_equal(p.err, ECONNREFUSED);
    close(fd);

    /* A full accept queue: the SYN goes unanswered until the timeout. */
    memset(&p, 0, sizeof(p));
    port = listen_port(0, true, &fd);
    int filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                              .sin_port = htons((uint16_t)port)};
    assert_int_equal(connect(filler, (struct sockaddr *)&sin, sizeof(sin)), 0);
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pf, 1, -1), 1);
    run_probes(loop, port, &c, &p, 1);
    if (p.ok) {
        print_message("the kernel accepted on a full queue: no timeout case here\n");
    } else {
        assert_int_equal(p.err, ETIMEDOUT);
        /* Freed with the next probe in flight: no callback, no leak. */
        union tg_sockaddr a;
        memset(&a, 0, sizeof(a));
        a.sin = sin;
        struct tg_health *h = NULL;
        struct probe q = {0, 0, 0};
        assert_int_equal(tg_health_new(loop, &c, &a, sizeof(a.sin), 0.0, probe_cb, &q, &h), TG_OK);
        ev_run(loop, EVRUN_NOWAIT); /* the probe starts */
        tg_health_free(h);
        ev_run(loop, EVRUN_NOWAIT);
        assert_int_equal(q.n, 0);
    }
    close(filler);
    close(fd);
    ev_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_judge),
        cmocka_unit_test(test_probes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
