/*
 * tg_bench_client: the load generator of `tlsgate bench` (tg_bench_run_load):
 * setup, scheduling, the books every call ends in, and the report.
 *
 * One libev loop (epoll) on the calling thread drives N connection slots.
 * Each slot runs calls one after the other: [TCP connect, TLS handshake,]
 * HTTP/1.1 request, response. The pieces, sharing tg_bench_client.h:
 *   tg_bench_client.c   this file: the run (setup, warmup, measured interval,
 *                       pacing, signals, progress, report) and the books;
 *   tg_bench_conn.c     one slot's state machine: connect, handshake,
 *                       request, response, close;
 *   (core/tg_sockbio.c  the BIO between libssl and a slot's socket, shared
 *                       with the gateway: output collected per step, reads
 *                       only after epoll said readable;)
 *   tg_bench_tlsctx.c   the run's one SSL_CTX and its certificate checks.
 *
 * Full handshakes on a 2-core machine: the client's CPU per handshake is the
 * limit, so this client is built to be cheap; each file says what it saves.
 * Here: no allocation of ours per call (the request is built once,
 * responses are parsed by a streaming parser straight out of one shared
 * 64 KiB read buffer, latencies go to a preallocated, doubling array), and
 * a heap that is not trimmed and regrown all the time (tg_bench_run_load).
 *
 * Measurement: the interval starts when the warmup calls are all done (or
 * at once) and ends when the last measured call completes. Calls in flight
 * when the duration ends are finished and counted, like fortio does.
 */
#include "bench/tg_bench_client.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/tg_bench_libctx.h"
#include "core/tg_time.h"

/* A paced call starts when its slot is due within this much. */
#define TG_BENCH_PACE_SLACK_NS (100ULL * TG_NS_PER_US)

static void bc_begin_measure(struct bench *b);
static void bc_end_measure(struct bench *b);

/* ------------------------------------------------------------------------- */
/* Small helpers                                                             */

static double bc_tv(const struct timeval *tv)
{
    return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

/* ------------------------------------------------------------------------- */
/* Call bookkeeping                                                          */

static void bc_note_error(struct bench *b, enum tg_bench_errkind kind, const char *msg)
{
    if (b->res.first_error[kind][0] == '\0' && msg != NULL)
        snprintf(b->res.first_error[kind], sizeof(b->res.first_error[kind]), "%s", msg);
}

/* Record the end of the current call. kind is TG_BENCH_OK on success. */
void bc_call_end(struct bc_conn *c, enum tg_bench_errkind kind, const char *msg)
{
    struct bench *b = c->b;
    uint64_t now = tg_now_ns();
    ev_timer_stop(b->loop, &c->timer);
    if (c->call_warmup) {
        b->warm_done++;
        b->res.warmup_done++;
        if (kind == TG_BENCH_OK)
            b->res.total_ok++;
        else
            bc_note_error(b, kind, msg);
        /* The slot finishing the last warmup call goes on with bc_next()
         * right after this, already in the measured phase. */
        if (b->phase == PH_WARMUP && b->warm_done == b->o->warmup)
            bc_begin_measure(b);
        return;
    }
    b->res.calls++;
    b->sec_calls++;
    b->last_done = now;
    tg_bench_lat_add(&b->lat, (now - c->call_start) / TG_NS_PER_US);
    if (kind == TG_BENCH_OK) {
        b->res.ok++;
        b->res.total_ok++;
        if (c->call_hs)
            b->res.handshakes_full++;
    } else {
        b->res.errors[kind]++;
        b->sec_errors++;
        bc_note_error(b, kind, msg);
    }
}

void bc_record_tls(struct bc_conn *c)
{
    struct tg_bench_result *r = &c->b->res;
    const char *ver = SSL_get_version(c->ssl);
    const char *cip = SSL_CIPHER_get_name(SSL_get_current_cipher(c->ssl));
    int gid = SSL_get_negotiated_group(c->ssl);
    for (size_t i = 0; i < r->ntls; i++) {
        /* version and cipher names are static strings inside libssl */
        if (r->tls[i].version == ver && r->tls[i].cipher == cip && r->tls[i].group_id == gid) {
            r->tls[i].count++;
            return;
        }
    }
    if (r->ntls == TG_BENCH_MAX_TLS_COMBOS) {
        r->tls_other++;
        return;
    }
    struct tg_bench_tls_combo *t = &r->tls[r->ntls++];
    const char *gname = gid ? SSL_group_to_name(c->ssl, gid) : NULL;
    t->version = ver;
    t->cipher = cip ? cip : "?";
    t->group_id = gid;
    snprintf(t->group, sizeof(t->group), "%s", gname ? gname : "");
    t->count = 1;
}

/* The TCP connection is established (counted once per connection). */
void bc_tcp_up(struct bc_conn *c)
{
    if (!c->tcp_up) {
        c->tcp_up = true;
        if (!c->call_warmup)
            c->b->res.connections++;
    }
}

/* ------------------------------------------------------------------------- */
/* Scheduling                                                                */

static void bc_start_call(struct bc_conn *c, bool warmup)
{
    struct bench *b = c->b;
    c->call_warmup = warmup;
    c->call_hs = false;
    if (warmup) {
        b->warm_issued++;
    } else {
        b->issued++;
        c->k++;
    }
    c->call_start = tg_now_ns();
    bconn_timer(c, b->o->timeout_ns);
    if (c->tls_up) {
        c->state = BC_SEND;
        c->wpos = 0;
        bconn_send(c);
    } else {
        bconn_close(c, false);
        bconn_connect(c);
    }
}

static void bc_finish(struct bc_conn *c)
{
    struct bench *b = c->b;
    if (c->state == BC_FINISHED)
        return;
    ev_timer_stop(b->loop, &c->timer);
    bconn_close(c, false);
    c->state = BC_FINISHED;
    if (--b->active == 0)
        bc_end_measure(b);
}

/* Idle slot: watch a kept-alive connection for the server closing it. */
static void bc_idle_watch(struct bc_conn *c)
{
    if (c->sb.fd >= 0)
        bconn_want(c, EV_READ);
    else
        ev_io_stop(c->b->loop, &c->io);
}

static void bc_next_now(struct bc_conn *c)
{
    struct bench *b = c->b;
    const struct tg_bench_opts *o = b->o;
    if (b->phase == PH_END) {
        bc_finish(c);
        return;
    }
    if (b->phase == PH_WARMUP) {
        if (b->warm_issued < o->warmup) {
            bc_start_call(c, true);
            return;
        }
        c->state = BC_PARKED;
        ev_timer_stop(b->loop, &c->timer);
        bc_idle_watch(c);
        return;
    }
    if (b->stopping || (o->num_calls > 0 && b->issued >= o->num_calls)) {
        bc_finish(c);
        return;
    }
    if (o->qps > 0) {
        uint64_t due = b->t0 + c->pace_offset + (uint64_t)((double)c->k * b->interval_ns);
        uint64_t now = tg_now_ns();
        if (due > now + TG_BENCH_PACE_SLACK_NS) {
            c->state = BC_PACING;
            bconn_timer(c, due - now);
            bc_idle_watch(c);
            return;
        }
    }
    bc_start_call(c, false);
}

/* The slot has no call in flight: start the next one, wait, or finish.
 * A call can fail synchronously (connection refused) and call this again;
 * past a small depth the next call goes through the loop (a zero timer), so
 * a dead target costs no stack. */
void bc_next(struct bc_conn *c)
{
    struct bench *b = c->b;
    if (b->depth >= 4 && b->phase != PH_END) {
        c->state = BC_PACING;
        bconn_timer(c, 0);
        bc_idle_watch(c);
        return;
    }
    b->depth++;
    bc_next_now(c);
    b->depth--;
}

/* ------------------------------------------------------------------------- */
/* Measured interval                                                         */

static void bc_progress_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct bench *b = w->data;
    uint64_t now = tg_now_ns();
    char hms[16], line[160];
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(hms, sizeof(hms), "%H:%M:%S", &tm);
    b->sec_index++;
    double dt = tg_ns_to_s(now - b->sec_start);
    tg_bench_format_progress(line, sizeof(line), hms, b->sec_index, b->sec_calls,
                             dt > 0 ? (double)b->sec_calls / dt : 0, b->sec_errors);
    fprintf(stderr, "%s\n", line);
    b->sec_calls = b->sec_errors = 0;
    b->sec_start = now;
}

static void bc_stop(struct bench *b)
{
    b->stopping = true;
    if (b->phase == PH_WARMUP) {
        b->phase = PH_END; /* nothing measured; finish every slot */
    }
    for (uint32_t i = 0; i < b->nconns; i++) {
        struct bc_conn *c = &b->conns[i];
        if (c->state == BC_PACING || c->state == BC_PARKED)
            bc_finish(c);
    }
}

static void bc_deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    bc_stop(w->data);
}

static void bc_signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    struct bench *b = w->data;
    b->res.interrupted = true;
    if (++b->nsignals == 1) {
        fprintf(stderr, "interrupted: finishing the calls in flight (again to abort them)\n");
        bc_stop(b);
    } else {
        b->phase = PH_END;
        bc_end_measure(b);
    }
}

static void bc_begin_measure(struct bench *b)
{
    const struct tg_bench_opts *o = b->o;
    b->phase = PH_MEASURE;
    b->measuring_started = true;
    getrusage(RUSAGE_SELF, &b->ru0);
    if (o->pid > 0)
        b->proxy0_ok = tg_bench_proc_cpu(o->pid, &b->proxy0) == TG_OK;
    b->t0 = b->sec_start = b->last_done = tg_now_ns();
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(b->res.start_time, sizeof(b->res.start_time), "%Y-%m-%dT%H:%M:%S%z", &tm);
    if (o->num_calls == 0 && o->duration_ns > 0) {
        ev_timer_set(&b->deadline, (double)o->duration_ns / 1e9, 0.0);
        ev_timer_start(b->loop, &b->deadline);
    }
    if (!o->quiet) {
        ev_timer_set(&b->progress, 1.0, 1.0);
        ev_timer_start(b->loop, &b->progress);
    }
    for (uint32_t i = 0; i < b->nconns; i++) {
        if (b->conns[i].state == BC_PARKED)
            bc_next(&b->conns[i]);
    }
}

static void bc_end_measure(struct bench *b)
{
    if (b->ended)
        return;
    b->ended = true;
    b->phase = PH_END;
    if (b->measuring_started) {
        struct rusage ru1;
        getrusage(RUSAGE_SELF, &ru1);
        b->res.client_cpu_s = bc_tv(&ru1.ru_utime) + bc_tv(&ru1.ru_stime) -
                              bc_tv(&b->ru0.ru_utime) - bc_tv(&b->ru0.ru_stime);
        b->res.elapsed_s = tg_ns_to_s(b->last_done - b->t0);
        double p1;
        if (b->o->pid > 0 && b->proxy0_ok && tg_bench_proc_cpu(b->o->pid, &p1) == TG_OK) {
            b->res.have_proxy_cpu = true;
            b->res.proxy_cpu_s = p1 - b->proxy0;
        }
    }
    ev_timer_stop(b->loop, &b->progress);
    ev_timer_stop(b->loop, &b->deadline);
    ev_signal_stop(b->loop, &b->sigint);
    ev_signal_stop(b->loop, &b->sigterm);
    ev_break(b->loop, EVBREAK_ALL);
}

/* ------------------------------------------------------------------------- */
/* Setup                                                                     */

static int bc_make_request(struct bench *b)
{
    const struct tg_bench_opts *o = b->o;
    struct tg_buf req = TG_BUF_INIT;
    tg_buf_printf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tlsgate-bench\r\n",
                  o->payload ? "POST" : "GET", o->target.path, o->target.authority);
    if (o->payload)
        tg_buf_printf(&req,
                      "Content-Type: application/octet-stream\r\nContent-Length: %" PRIu64 "\r\n",
                      o->payload);
    if (!o->keepalive)
        tg_buf_puts(&req, "Connection: close\r\n");
    tg_buf_puts(&req, "\r\n");
    size_t head = req.len;
    for (uint64_t i = 0; i < o->payload && !tg_buf_failed(&req); i += 4096) {
        static const char chunk[4096] = {0};
        size_t n = o->payload - i < sizeof(chunk) ? (size_t)(o->payload - i) : sizeof(chunk);
        tg_buf_append(&req, chunk, n);
    }
    if (tg_buf_failed(&req)) {
        tg_buf_free(&req);
        return TG_ENOMEM;
    }
    memset(req.data + head, 'x', req.len - head);
    b->req = req.data;
    b->reqlen = req.len;
    return TG_OK;
}

/* Room for the connections in the open-file limit. */
static int bc_raise_nofile(uint32_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return TG_OK;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)need + 32 ? TG_ELIMIT : TG_OK;
}

int tg_bench_run_load(const struct tg_bench_opts *o)
{
    /* libssl allocates and frees ~1,600 blocks per handshake, some of 16 KiB
     * and more; with glibc's default (dynamic) thresholds the heap top is
     * trimmed and regrown hundreds of times a second, each regrowth paying
     * page faults. This process is ours alone: keep the memory. */
    (void)mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);
    (void)mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
    struct bench *b = calloc(1, sizeof(*b));
    int status = 1;
    struct tg_buf out = TG_BUF_INIT;
    if (b == NULL) {
        fprintf(stderr, "tlsgate bench: out of memory\n");
        return 1;
    }
    b->o = o;
    if (bc_raise_nofile(o->connections) != TG_OK) {
        fprintf(stderr, "tlsgate bench: -c %u exceeds the open-file limit (ulimit -n)\n",
                o->connections);
        status = 2;
        goto out;
    }
    status = bctx_make(b);
    if (status != 0)
        goto out;
    status = 1;
    b->loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
    b->nconns = o->connections;
    b->conns = calloc(b->nconns, sizeof(*b->conns));
    b->rbuf = malloc(TG_BENCH_RBUF_SIZE);
    b->obufs = malloc((size_t)b->nconns * TG_BENCH_OBUF_SIZE);
    if (b->loop == NULL || b->conns == NULL || b->rbuf == NULL || b->obufs == NULL ||
        tg_sockbio_method() == NULL || bc_make_request(b) != TG_OK) {
        fprintf(stderr, "tlsgate bench: cannot set up (out of memory or no epoll)\n");
        goto out;
    }
    size_t cap = 1 << 16;
    if (o->num_calls > 0)
        cap = o->num_calls < (64u << 20) ? (size_t)o->num_calls : (64u << 20);
    else if (o->qps > 0 && o->duration_ns > 0)
        cap = (size_t)(o->qps * ((double)o->duration_ns / 1e9) * 1.05) + 1024;
    tg_bench_lat_init(&b->lat, cap);

    double per_slot_qps = o->qps / b->nconns;
    b->interval_ns = o->qps > 0 ? 1e9 / per_slot_qps : 0;
    for (uint32_t i = 0; i < b->nconns; i++) {
        struct bc_conn *c = &b->conns[i];
        c->b = b;
        c->sb.fd = -1;
        c->state = BC_PARKED;
        c->sb.obuf = b->obufs + (size_t)i * TG_BENCH_OBUF_SIZE;
        c->sb.ocap = TG_BENCH_OBUF_SIZE;
        /* Stagger the slots so the paced starts are spread evenly. */
        c->pace_offset = (uint64_t)(b->interval_ns * i / b->nconns);
        ev_init(&c->io, bconn_io_cb);
        c->io.data = c;
        ev_init(&c->timer, bconn_timer_cb);
        c->timer.data = c;
    }
    b->active = b->nconns;
    ev_init(&b->progress, bc_progress_cb);
    b->progress.data = b;
    ev_init(&b->deadline, bc_deadline_cb);
    b->deadline.data = b;
    ev_signal_init(&b->sigint, bc_signal_cb, SIGINT);
    b->sigint.data = b;
    ev_signal_init(&b->sigterm, bc_signal_cb, SIGTERM);
    b->sigterm.data = b;
    ev_signal_start(b->loop, &b->sigint);
    ev_signal_start(b->loop, &b->sigterm);

    if (o->warmup > 0) {
        b->phase = PH_WARMUP;
        for (uint32_t i = 0; i < b->nconns && b->phase == PH_WARMUP; i++)
            bc_next(&b->conns[i]);
    } else {
        bc_begin_measure(b);
    }
    ev_run(b->loop, 0);

    b->res.lat_truncated = b->lat.truncated;
    tg_bench_lat_summarize(&b->lat, &b->res.lat);
    tg_bench_report_text(&out, o, &b->res);
    if (tg_buf_failed(&out)) {
        fprintf(stderr, "tlsgate bench: out of memory\n");
        goto out;
    }
    fwrite(out.data, 1, out.len, stdout);
    fflush(stdout);
    status = b->res.total_ok > 0 ? 0 : 1;
    if (status != 0)
        fprintf(stderr, "tlsgate bench: no call succeeded\n");
    if (o->json != NULL) {
        tg_buf_reset(&out);
        tg_bench_report_json(&out, o, &b->res);
        FILE *f = fopen(o->json, "w");
        if (f == NULL || tg_buf_failed(&out) || fwrite(out.data, 1, out.len, f) != out.len ||
            fclose(f) != 0) {
            fprintf(stderr, "tlsgate bench: cannot write --json %s: %s\n", o->json,
                    strerror(errno));
            status = 1;
        }
    }
out:
    tg_buf_free(&out);
    if (b->conns != NULL) {
        for (uint32_t i = 0; i < b->nconns; i++) {
            struct bc_conn *c = &b->conns[i];
            if (b->loop != NULL) {
                ev_io_stop(b->loop, &c->io);
                ev_timer_stop(b->loop, &c->timer);
            }
            if (c->sb.fd >= 0)
                close(c->sb.fd);
            SSL_free(c->ssl);
        }
        free(b->conns);
    }
    if (b->loop != NULL)
        ev_loop_destroy(b->loop);
    SSL_CTX_free(b->ctx);
    X509_free(b->verified_leaf);
    free(b->obufs);
    if (b->libctx != NULL)
        tg_bench_libctx_free(b->libctx);
    free(b->req);
    free(b->rbuf);
    tg_bench_lat_free(&b->lat);
    free(b);
    return status;
}
