/*
 * tg_health: TCP connect probes on the main loop. Contract in tg_health.h.
 */
#include "upstream/tg_health.h"

#include <errno.h>
#include <ev.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/tg_time.h"

struct tg_health {
    struct ev_loop *loop;
    const struct tg_conf_health_check *conf; /* owned by the caller, outlives h */
    union tg_sockaddr addr;
    socklen_t addrlen;
    tg_health_cb cb;
    void *arg;
    int fd;
    ev_io io;       /* the probe's socket becomes writable */
    ev_timer timer; /* between probes: the next one; during one: its timeout */
};

bool tg_health_judge(struct tg_health_run *run, const struct tg_conf_health_check *c, bool healthy,
                     bool probe_ok)
{
    if (probe_ok) {
        run->failed = 0;
        if (run->ok < UINT32_MAX)
            run->ok++;
        return healthy || run->ok >= c->healthy_threshold;
    }
    run->ok = 0;
    if (run->failed < UINT32_MAX)
        run->failed++;
    return healthy && run->failed < c->unhealthy_threshold;
}

static void tg_health_after(struct tg_health *h, uint64_t ns)
{
    ev_timer_stop(h->loop, &h->timer);
    ev_timer_set(&h->timer, tg_ns_to_s(ns), 0.0);
    ev_timer_start(h->loop, &h->timer);
}

/* The probe ended: report, and wait for the next one. */
static void tg_health_done(struct tg_health *h, int err)
{
    ev_io_stop(h->loop, &h->io);
    if (h->fd >= 0) {
        close(h->fd);
        h->fd = -1;
    }
    tg_health_after(h, h->conf->interval_ns);
    h->cb(h->arg, err == 0, err);
}

static int tg_health_soerr(const struct tg_health *h)
{
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
        soerr = errno;
    return soerr;
}

static void tg_health_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_health *h = w->data;
    tg_health_done(h, tg_health_soerr(h));
}

static void tg_health_start_probe(struct tg_health *h)
{
    h->fd = socket(h->addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (h->fd < 0) {
        tg_health_done(h, errno);
        return;
    }
    if (connect(h->fd, &h->addr.sa, h->addrlen) == 0) {
        tg_health_done(h, 0);
        return;
    }
    if (errno != EINPROGRESS) {
        tg_health_done(h, errno);
        return;
    }
    ev_io_set(&h->io, h->fd, EV_WRITE);
    ev_io_start(h->loop, &h->io);
    tg_health_after(h, h->conf->timeout_ns);
}

static void tg_health_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_health *h = w->data;
    if (h->fd >= 0) {
        /* The connect may have ended in the same slow loop turn. */
        struct pollfd p = {.fd = h->fd, .events = POLLOUT};
        tg_health_done(h, poll(&p, 1, 0) == 1 ? tg_health_soerr(h) : ETIMEDOUT);
    } else
        tg_health_start_probe(h);
}

int tg_health_new(struct ev_loop *loop, const struct tg_conf_health_check *conf,
                  const union tg_sockaddr *addr, socklen_t addrlen, double first_s, tg_health_cb cb,
                  void *arg, struct tg_health **out)
{
    struct tg_health *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return TG_ENOMEM;
    h->loop = loop;
    h->conf = conf;
    h->addr = *addr;
    h->addrlen = addrlen;
    h->cb = cb;
    h->arg = arg;
    h->fd = -1;
    ev_init(&h->io, tg_health_io_cb);
    h->io.data = h;
    ev_timer_init(&h->timer, tg_health_timer_cb, first_s, 0.0);
    h->timer.data = h;
    ev_timer_start(loop, &h->timer);
    *out = h;
    return TG_OK;
}

void tg_health_free(struct tg_health *h)
{
    if (h == NULL)
        return;
    ev_io_stop(h->loop, &h->io);
    ev_timer_stop(h->loop, &h->timer);
    if (h->fd >= 0)
        close(h->fd);
    free(h);
}
