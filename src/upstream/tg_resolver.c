/*
 * tg_resolver: c-ares on a libev loop. Contract in tg_resolver.h.
 *
 * c-ares tells us which sockets it wants watched (sock_state_cb); each gets
 * an ev_io. After any activity, ares_timeout says when c-ares next needs
 * to run for its retransmissions; one ev_timer is armed for that. A query
 * is a small record passed to c-ares as the callback argument: cancelling
 * clears its callback, so whatever c-ares reports later is dropped.
 * Answers that arrive while ares_getaddrinfo is still running (the hosts
 * file, a malformed name) are kept and delivered from a zero-delay timer,
 * so a callback never runs inside tg_resolver_resolve.
 */
#include "upstream/tg_resolver.h"

#include <ares.h>
#include <ev.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tg_log.h"
#include "core/tg_time.h"

struct tg_resolver_io {
    struct tg_resolver *r;
    int fd;
    ev_io io;
};

struct tg_resolver_query {
    struct tg_resolver *r;
    tg_resolver_cb cb; /* NULL once cancelled */
    void *arg;
    int family;
    /* An answer kept for the deferred delivery. */
    int status;
    char why[64];
    union tg_sockaddr *addrs;
    size_t n;
    uint32_t ttl;
    struct tg_resolver_query *next_done;
};

struct tg_resolver {
    struct ev_loop *loop;
    ares_channel ch;
    bool ch_ok;
    ev_timer timer;   /* c-ares' next timeout */
    ev_timer deliver; /* answers that came during ares_getaddrinfo */
    struct tg_resolver_io **ios;
    size_t n_ios, cap_ios;
    size_t pending;
    bool in_call; /* inside ares_getaddrinfo */
    struct tg_resolver_query *done, *done_tail;
};

/* ---- sockets and timeouts ---- */

static void tg_resolver_rearm(struct tg_resolver *r)
{
    struct timeval tv, *tvp = ares_timeout(r->ch, NULL, &tv);
    ev_timer_stop(r->loop, &r->timer);
    if (tvp == NULL)
        return;
    ev_timer_set(&r->timer, (double)tvp->tv_sec + (double)tvp->tv_usec / 1e6, 0.0);
    ev_timer_start(r->loop, &r->timer);
}

static void tg_resolver_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct tg_resolver_io *io = w->data;
    struct tg_resolver *r = io->r;
    int fd = io->fd; /* io may be freed by the socket-state callback */
    ares_process_fd(r->ch, (revents & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (revents & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    tg_resolver_rearm(r);
}

static void tg_resolver_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_resolver *r = w->data;
    ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    tg_resolver_rearm(r);
}

static void tg_resolver_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct tg_resolver *r = data;
    size_t i;
    for (i = 0; i < r->n_ios && r->ios[i]->fd != fd; i++)
        ;
    if (!readable && !writable) {
        if (i == r->n_ios)
            return;
        struct tg_resolver_io *io = r->ios[i];
        ev_io_stop(r->loop, &io->io);
        free(io);
        r->ios[i] = r->ios[--r->n_ios];
        return;
    }
    int events = (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);
    if (i == r->n_ios) {
        if (r->n_ios == r->cap_ios) {
            size_t cap = r->cap_ios ? r->cap_ios * 2 : 8;
            struct tg_resolver_io **v = realloc(r->ios, cap * sizeof(*v));
            if (v == NULL)
                goto nomem;
            r->ios = v;
            r->cap_ios = cap;
        }
        struct tg_resolver_io *io = calloc(1, sizeof(*io));
        if (io == NULL)
            goto nomem;
        io->r = r;
        io->fd = fd;
        ev_io_init(&io->io, tg_resolver_io_cb, fd, events);
        io->io.data = io;
        ev_io_start(r->loop, &io->io);
        r->ios[r->n_ios++] = io;
        return;
    }
    struct tg_resolver_io *io = r->ios[i];
    ev_io_stop(r->loop, &io->io);
    ev_io_set(&io->io, fd, events);
    ev_io_start(r->loop, &io->io);
    return;
nomem:
    /* The query on that socket then ends by its timeout (the timer still
     * runs c-ares), which is counted as a failed look-up. */
    TG_WARN("resolver: out of memory watching a DNS socket");
}

/* ---- answers ---- */

static void tg_resolver_query_free(struct tg_resolver_query *q)
{
    free(q->addrs);
    free(q);
}

static void tg_resolver_finish(struct tg_resolver_query *q)
{
    struct tg_resolver *r = q->r;
    r->pending--;
    if (q->cb != NULL)
        q->cb(q->arg, q->status, q->why, q->addrs, q->n, q->ttl);
    tg_resolver_query_free(q);
}

static void tg_resolver_deliver_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_resolver *r = w->data;
    struct tg_resolver_query *list = r->done;
    r->done = r->done_tail = NULL;
    while (list != NULL) {
        struct tg_resolver_query *q = list;
        list = q->next_done;
        tg_resolver_finish(q);
    }
}

static bool tg_resolver_has(const union tg_sockaddr *v, size_t n, const union tg_sockaddr *a)
{
    for (size_t i = 0; i < n; i++) {
        if (tg_sockaddr_equal(&v[i], a))
            return true;
    }
    return false;
}

/* Copy the addresses of the family asked, without duplicates. */
static void tg_resolver_collect(struct tg_resolver_query *q, const struct ares_addrinfo *ai)
{
    size_t cnt = 0;
    for (const struct ares_addrinfo_node *n = ai->nodes; n != NULL; n = n->ai_next)
        cnt++;
    if (cnt > TG_RESOLVER_MAX_ADDRS)
        cnt = TG_RESOLVER_MAX_ADDRS;
    q->addrs = cnt > 0 ? calloc(cnt, sizeof(*q->addrs)) : NULL;
    if (q->addrs == NULL) {
        q->status = TG_EIO;
        snprintf(q->why, sizeof(q->why), cnt > 0 ? "out of memory" : "no address in the answer");
        return;
    }
    uint32_t ttl = UINT32_MAX;
    for (const struct ares_addrinfo_node *n = ai->nodes; n != NULL && q->n < cnt; n = n->ai_next) {
        union tg_sockaddr a;
        memset(&a, 0, sizeof(a));
        if (n->ai_family == AF_INET && n->ai_addrlen >= sizeof(a.sin) && q->family != AF_INET6) {
            memcpy(&a.sin, n->ai_addr, sizeof(a.sin));
            a.sin.sin_port = 0;
        } else if (n->ai_family == AF_INET6 && n->ai_addrlen >= sizeof(a.sin6) &&
                   q->family != AF_INET) {
            memcpy(&a.sin6, n->ai_addr, sizeof(a.sin6));
            a.sin6.sin6_port = 0;
        } else {
            continue;
        }
        if (tg_resolver_has(q->addrs, q->n, &a))
            continue;
        q->addrs[q->n++] = a;
        if (n->ai_ttl >= 0 && (uint32_t)n->ai_ttl < ttl)
            ttl = (uint32_t)n->ai_ttl;
    }
    if (q->n == 0) {
        q->status = TG_EIO;
        snprintf(q->why, sizeof(q->why), "no address of the family asked");
        return;
    }
    q->status = TG_OK;
    q->ttl = ttl == UINT32_MAX ? 0 : ttl;
}

static void tg_resolver_gai_cb(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
    (void)timeouts;
    struct tg_resolver_query *q = arg;
    struct tg_resolver *r = q->r;
    if (status == ARES_SUCCESS && ai != NULL) {
        tg_resolver_collect(q, ai);
    } else {
        q->status = TG_EIO;
        snprintf(q->why, sizeof(q->why), "%s", ares_strerror(status));
    }
    if (ai != NULL)
        ares_freeaddrinfo(ai);
    if (status == ARES_EDESTRUCTION) {
        /* tg_resolver_free: nobody may be called any more. */
        r->pending--;
        tg_resolver_query_free(q);
        return;
    }
    if (r->in_call) {
        q->next_done = NULL;
        if (r->done_tail != NULL)
            r->done_tail->next_done = q;
        else
            r->done = q;
        r->done_tail = q;
        if (!ev_is_active(&r->deliver)) {
            ev_timer_set(&r->deliver, 0.0, 0.0);
            ev_timer_start(r->loop, &r->deliver);
        }
        return;
    }
    tg_resolver_finish(q);
}

/* ---- the public side ---- */

int tg_resolver_ai_flags(const char *cares_hosts)
{
    /* ARES_AI_ENVHOSTS only when $CARES_HOSTS names a file: c-ares 1.18
     * (Debian 12) then falls back to /etc/hosts, but later releases (1.34
     * in Debian 13) fail the hosts-file look-up outright, and every name
     * of /etc/hosts, "localhost" included, would go to DNS. */
    int flags = ARES_AI_NOSORT;
    if (cares_hosts != NULL && cares_hosts[0] != '\0')
        flags |= ARES_AI_ENVHOSTS;
    return flags;
}

int tg_resolver_resolve(struct tg_resolver *r, const char *name, int family, tg_resolver_cb cb,
                        void *arg, struct tg_resolver_query **out)
{
    struct tg_resolver_query *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return TG_ENOMEM;
    q->r = r;
    q->cb = cb;
    q->arg = arg;
    q->family = family;
    *out = q;
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof(hints));
    /* Our own order (tg_cluster sorts); the environment's hosts file. */
    hints.ai_flags = tg_resolver_ai_flags(getenv("CARES_HOSTS"));
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    r->pending++;
    r->in_call = true;
    ares_getaddrinfo(r->ch, name, NULL, &hints, tg_resolver_gai_cb, q);
    r->in_call = false;
    tg_resolver_rearm(r);
    return TG_OK;
}

void tg_resolver_cancel(struct tg_resolver_query *q)
{
    if (q != NULL)
        q->cb = NULL;
}

size_t tg_resolver_pending(const struct tg_resolver *r)
{
    return r->pending;
}

int tg_resolver_new(struct ev_loop *loop, const struct tg_conf_dns *conf, struct tg_resolver **out,
                    char *err, size_t errlen)
{
    static char lookups[] = "fb"; /* hosts file, then DNS */
    *out = NULL;
    struct tg_resolver *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return TG_ENOMEM;
    r->loop = loop;
    ev_timer_init(&r->timer, tg_resolver_timer_cb, 0.0, 0.0);
    r->timer.data = r;
    ev_timer_init(&r->deliver, tg_resolver_deliver_cb, 0.0, 0.0);
    r->deliver.data = r;
    int rc = ares_library_init(ARES_LIB_INIT_ALL);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "dns: cannot initialise c-ares: %s", ares_strerror(rc));
        free(r);
        return TG_EIO;
    }
    struct ares_options o;
    memset(&o, 0, sizeof(o));
    o.lookups = lookups;
    o.sock_state_cb = tg_resolver_sock_state;
    o.sock_state_cb_data = r;
    uint64_t ms = conf->query_timeout_ns / TG_NS_PER_MS;
    o.timeout = ms < 1 ? 1 : ms > 600000 ? 600000 : (int)ms;
    o.tries = (int)conf->query_attempts;
    int mask = ARES_OPT_LOOKUPS | ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
    rc = ares_init_options(&r->ch, &o, mask);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "dns: cannot create a resolver: %s", ares_strerror(rc));
        ares_library_cleanup();
        free(r);
        return rc == ARES_ENOMEM ? TG_ENOMEM : TG_EIO;
    }
    r->ch_ok = true;
    if (conf->n_resolvers > 0) {
        char csv[1024];
        size_t off = 0;
        csv[0] = '\0';
        for (size_t i = 0; i < conf->n_resolvers; i++) {
            int w =
                snprintf(csv + off, sizeof(csv) - off, "%s%s", i ? "," : "", conf->resolvers[i]);
            if (w > 0 && (size_t)w < sizeof(csv) - off)
                off += (size_t)w;
        }
        rc = ares_set_servers_ports_csv(r->ch, csv);
        if (rc != ARES_SUCCESS) {
            tg_conf_error(err, errlen, &conf->mark, "dns.resolvers", "c-ares refuses '%s': %s", csv,
                          ares_strerror(rc));
            tg_resolver_free(r);
            return TG_EIO;
        }
    }
    *out = r;
    return TG_OK;
}

void tg_resolver_free(struct tg_resolver *r)
{
    if (r == NULL)
        return;
    /* Answers waiting for delivery belong to cancelled queries by contract. */
    while (r->done != NULL) {
        struct tg_resolver_query *q = r->done;
        r->done = q->next_done;
        r->pending--;
        tg_resolver_query_free(q);
    }
    if (r->ch_ok) {
        ares_destroy(r->ch); /* EDESTRUCTION for every query left */
        ares_library_cleanup();
    }
    ev_timer_stop(r->loop, &r->timer);
    ev_timer_stop(r->loop, &r->deliver);
    for (size_t i = 0; i < r->n_ios; i++) {
        ev_io_stop(r->loop, &r->ios[i]->io);
        free(r->ios[i]);
    }
    free(r->ios);
    free(r);
}
