/*
 * tg_alog: the access-log writer: its destination, its thread, its counters.
 * Contract in tg_alog.h; the rings are tg_alog_ring.c, the lines
 * tg_alog_format.c.
 *
 * The writer thread sleeps until a worker's first record since the last
 * drain (the data eventfd), then drains every ring and writes once; while
 * lines keep coming it drains once per TG_ALOG_TICK_MS, so a busy gateway
 * makes about ten write(2) calls a second, whatever its rate. Only stop,
 * reopen and a half-full ring (the control eventfd) cut a tick short.
 *
 * A destination that is not a regular file (a pipe, a FIFO, a terminal, a
 * socket) may block: the writer waits for POLLOUT in slices of a tick and
 * writes at most PIPE_BUF bytes at a time, so it never sleeps in write(2)
 * and can always see a stop request. Meanwhile the rings fill and the
 * workers drop and count; they never wait.
 */
#include "alog/tg_alog.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alog/tg_alog_ring.h"
#include "core/tg_log.h"
#include "core/tg_time.h"

/* The writer's output buffer: several ticks' worth at a few thousand lines
 * a second; it is written out whenever a line might not fit. */
#define TG_ALOG_OUT_CAP ((size_t)128 << 10)
/* Records taken from one ring per drain round before the next ring's turn. */
#define TG_ALOG_DRAIN_MAX 65536
/* A repeated write error is logged at most this often. */
#define TG_ALOG_ERR_LOG_NS (10 * TG_NS_PER_S)

struct tg_alog {
    enum tg_conf_alog_dest dest;
    enum tg_conf_alog_format format;
    char *path; /* TG_CONF_ALOG_FILE */
    struct tg_alog_ring *rings;
    int n_rings;
    int data_fd; /* eventfd: a worker's first record since the last drain */
    int ctl_fd;  /* eventfd: stop, reopen, a ring half full */
    pthread_t thread;
    bool started, joined;
    _Atomic bool stop;
    _Atomic bool reopen;

    /* the writer thread's own (after start) */
    int fd;
    bool poll_first; /* not a regular file: wait for POLLOUT, write <= PIPE_BUF */
    char *out;
    size_t out_len;
    uint64_t out_lines;
    struct tg_alog_clock clk;
    uint64_t stop_deadline_ns; /* 0: not stopping */
    bool torn;                 /* the last write ended inside a line: end it first */
    int last_errno;
    uint64_t last_err_log_ns;

    /* counters, written by the writer thread */
    tg_ctr written, lost, write_errors, reopens, reopen_errors;
};

/* ---- destination ---- */

/* Open path for appending (created 0640); *poll_first: not a regular file.
 * O_NONBLOCK: a FIFO without a reader fails at once (ENXIO) instead of
 * hanging the start, and with one it never blocks the writer. Returns the
 * descriptor or -errno. */
static int tg_alog_open_file(const char *path, bool *poll_first)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0640);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return -EISDIR;
    }
    *poll_first = !S_ISREG(st.st_mode);
    return fd;
}

int tg_alog_open(const struct tg_conf_access_log *conf, int n_rings, struct tg_alog **out,
                 char *err, size_t errlen)
{
    const struct tg_conf_mark *mark = conf->path_mark.line > 0 ? &conf->path_mark : &conf->mark;
    struct tg_alog *a = NULL;
    int rc = TG_ENOMEM;
    *out = NULL;
    if (conf->dest == TG_CONF_ALOG_OFF || n_rings < 1)
        return TG_EINVAL;
    a = calloc(1, sizeof(*a));
    if (a == NULL)
        goto out;
    a->fd = a->data_fd = a->ctl_fd = -1;
    a->dest = conf->dest;
    a->format = conf->format;
    tg_alog_clock_init(&a->clk);
    a->out = malloc(TG_ALOG_OUT_CAP);
    a->rings = aligned_alloc(64, sizeof(*a->rings) * (size_t)n_rings);
    if (a->out == NULL || a->rings == NULL)
        goto out;
    memset(a->rings, 0, sizeof(*a->rings) * (size_t)n_rings);
    a->data_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    a->ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (a->data_fd < 0 || a->ctl_fd < 0) {
        tg_conf_error(err, errlen, mark, "access_log", "cannot create an eventfd: %s",
                      strerror(errno));
        rc = TG_EIO;
        goto out;
    }
    for (int i = 0; i < n_rings; i++) {
        rc = tg_alog_ring_init(&a->rings[i], conf->buffer, a->data_fd, a->ctl_fd);
        if (rc != TG_OK)
            goto out;
        a->n_rings = i + 1;
    }
    if (conf->dest == TG_CONF_ALOG_STDOUT) {
        struct stat st;
        if (fstat(STDOUT_FILENO, &st) != 0) {
            tg_conf_error(err, errlen, mark, "access_log.path", "stdout is not open: %s",
                          strerror(errno));
            rc = TG_ECONFIG;
            goto out;
        }
        a->fd = STDOUT_FILENO;
        a->poll_first = !S_ISREG(st.st_mode);
    } else {
        a->path = strdup(conf->path != NULL ? conf->path : "");
        if (a->path == NULL)
            goto out;
        int fd = tg_alog_open_file(a->path, &a->poll_first);
        if (fd < 0) {
            tg_conf_error(err, errlen, mark, "access_log.path", "cannot open '%s': %s", a->path,
                          strerror(-fd));
            rc = TG_ECONFIG;
            goto out;
        }
        a->fd = fd;
    }
    *out = a;
    a = NULL;
    rc = TG_OK;
out:
    if (rc == TG_ENOMEM && err != NULL && errlen > 0)
        tg_conf_error(err, errlen, mark, "access_log", "out of memory");
    tg_alog_free(a);
    return rc;
}

struct tg_alog_ring *tg_alog_ring_of(struct tg_alog *a, int i)
{
    TG_ASSERT(a != NULL && i >= 0 && i < a->n_rings);
    return &a->rings[i];
}

static void tg_alog_kick(int fd)
{
    uint64_t one = 1;
    ssize_t n = write(fd, &one, sizeof(one));
    (void)n;
}

static void tg_alog_clear(int fd)
{
    uint64_t v;
    ssize_t n = read(fd, &v, sizeof(v));
    (void)n;
}

/* ---- the writer thread ---- */

static void tg_alog_note_stop(struct tg_alog *a)
{
    if (a->stop_deadline_ns == 0 && atomic_load_explicit(&a->stop, memory_order_acquire))
        a->stop_deadline_ns = tg_now_ns() + TG_ALOG_STOP_FLUSH_MS * TG_NS_PER_MS;
}

/* Wait (at most a tick) until the destination takes bytes; a stop request
 * also ends the wait. */
static bool tg_alog_writable(struct tg_alog *a)
{
    struct pollfd p[2] = {{a->fd, POLLOUT, 0}, {a->ctl_fd, POLLIN, 0}};
    int r = poll(p, 2, TG_ALOG_TICK_MS);
    if (r > 0 && (p[1].revents & POLLIN))
        tg_alog_clear(a->ctl_fd);
    tg_alog_note_stop(a);
    return r > 0 && (p[0].revents & (POLLOUT | POLLERR | POLLHUP)) != 0;
}

static void tg_alog_write_error(struct tg_alog *a, int e)
{
    uint64_t now = tg_now_ns();
    tg_ctr_inc(&a->write_errors);
    if (e != a->last_errno || now - a->last_err_log_ns >= TG_ALOG_ERR_LOG_NS) {
        TG_WARN("access log: cannot write to %s: %s (lines dropped)",
                a->dest == TG_CONF_ALOG_FILE ? a->path : "stdout", strerror(e));
        a->last_errno = e;
        a->last_err_log_ns = now;
    }
}

/* The lines (their '\n') in p[0..n). */
static uint64_t tg_alog_lines_in(const char *p, size_t n)
{
    uint64_t lines = 0;
    const char *end = p + n;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        lines++;
        p++;
    }
    return lines;
}

/* How much of out[off..len) to hand to one write(2) on a destination that
 * may block: at most PIPE_BUF (atomic, never blocks after POLLOUT), ending
 * at a line's end when one does, so that giving up between two writes
 * leaves whole lines. */
static size_t tg_alog_chunk(const char *out, size_t off, size_t len)
{
    size_t chunk = len - off;
    if (chunk <= PIPE_BUF)
        return chunk;
    const char *nl = memrchr(out + off, '\n', PIPE_BUF);
    return nl != NULL ? (size_t)(nl - (out + off)) + 1 : PIPE_BUF;
}

/* Write the output buffer out, then empty it. Lines that could not be
 * written (an error such as a full disk, or a destination still blocked at
 * the stop deadline) are counted as lost; a line cut by the failure is
 * ended with a '\n' before the next write, so that it cannot run into the
 * next line. */
static void tg_alog_flush(struct tg_alog *a)
{
    size_t off = 0;
    bool failed = false;
    while (off < a->out_len) {
        if (a->stop_deadline_ns != 0 && tg_now_ns() >= a->stop_deadline_ns) {
            failed = true;
            break;
        }
        if (a->poll_first && !tg_alog_writable(a))
            continue;
        const char *p = a->out + off;
        size_t chunk = a->poll_first ? tg_alog_chunk(a->out, off, a->out_len) : a->out_len - off;
        if (a->torn) {
            p = "\n";
            chunk = 1;
        }
        ssize_t n = write(a->fd, p, chunk);
        if (n > 0) {
            if (a->torn)
                a->torn = false;
            else
                off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            a->poll_first = true; /* a non-blocking destination after all */
            continue;
        }
        tg_alog_write_error(a, n < 0 ? errno : EIO);
        failed = true;
        break;
    }
    if (!failed) {
        tg_ctr_add(&a->written, a->out_lines);
    } else {
        uint64_t done = tg_alog_lines_in(a->out, off);
        tg_ctr_add(&a->written, done);
        tg_ctr_add(&a->lost, a->out_lines - done);
        if (off > 0 && a->out[off - 1] != '\n')
            a->torn = true;
    }
    a->out_len = 0;
    a->out_lines = 0;
}

/* Format what the rings hold into the output buffer (written out whenever a
 * line might not fit). all: until every ring is empty (at stop); else at
 * most TG_ALOG_DRAIN_MAX records per ring. Returns the records taken. */
static size_t tg_alog_drain(struct tg_alog *a, bool all)
{
    size_t total = 0;
    for (int i = 0; i < a->n_rings; i++) {
        struct tg_alog_ring *r = &a->rings[i];
        struct tg_alog_rec rec;
        struct tg_alog_strs s;
        size_t n = 0;
        tg_alog_ring_rearm(r);
        while ((all || n < TG_ALOG_DRAIN_MAX) && tg_alog_ring_peek(r, &rec, &s)) {
            if (TG_ALOG_OUT_CAP - a->out_len < TG_ALOG_LINE_MAX)
                tg_alog_flush(a);
            a->out_len += tg_alog_format(a->format, &rec, &s, &a->clk, a->out + a->out_len);
            a->out_lines++;
            tg_alog_ring_pop(r);
            n++;
        }
        total += n;
    }
    return total;
}

static void tg_alog_do_reopen(struct tg_alog *a)
{
    if (a->dest != TG_CONF_ALOG_FILE) {
        TG_INFO("access log: SIGUSR1: the access log is not a file, nothing to reopen");
        return;
    }
    bool poll_first = false;
    int fd = tg_alog_open_file(a->path, &poll_first);
    if (fd < 0) {
        tg_ctr_inc(&a->reopen_errors);
        TG_WARN("access log: cannot reopen %s: %s; still writing to the file open before", a->path,
                strerror(-fd));
        return;
    }
    close(a->fd);
    a->fd = fd;
    a->poll_first = poll_first;
    a->torn = false; /* a new file starts with a whole line */
    tg_ctr_inc(&a->reopens);
    TG_INFO("access log: reopened %s", a->path);
}

/* Sleep until there is something to do. busy: lines keep coming, let them
 * gather for a tick (only the control eventfd cuts it short); idle: wait for
 * the first line. */
static void tg_alog_sleep(struct tg_alog *a, bool busy)
{
    struct pollfd p[2] = {{a->ctl_fd, POLLIN, 0}, {a->data_fd, POLLIN, 0}};
    int r = poll(p, busy ? 1 : 2, busy ? TG_ALOG_TICK_MS : 1000);
    if (r <= 0)
        return;
    if (p[0].revents & POLLIN)
        tg_alog_clear(a->ctl_fd);
    if (!busy && (p[1].revents & POLLIN))
        tg_alog_clear(a->data_fd);
}

static void *tg_alog_main(void *arg)
{
    struct tg_alog *a = arg;
    sigset_t all;
    /* Signals belong to the main thread's loop; none should cut a write. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    /* Its own name in top -H and perf: what the log costs is visible. */
    (void)pthread_setname_np(pthread_self(), "tlsgate-alog");
    tg_log_set_thread_tag("alog");
    for (;;) {
        tg_alog_note_stop(a);
        bool stopping = a->stop_deadline_ns != 0;
        if (atomic_exchange_explicit(&a->reopen, false, memory_order_acq_rel))
            tg_alog_do_reopen(a);
        size_t n = tg_alog_drain(a, stopping);
        tg_alog_flush(a);
        if (stopping)
            break; /* every producer had ended: the rings are empty now */
        tg_alog_sleep(a, n > 0);
    }
    return NULL;
}

int tg_alog_start(struct tg_alog *a)
{
    TG_ENSURE(a != NULL && !a->started, TG_ESTATE);
    if (pthread_create(&a->thread, NULL, tg_alog_main, a) != 0)
        return TG_ENOMEM;
    a->started = true;
    return TG_OK;
}

void tg_alog_reopen(struct tg_alog *a)
{
    if (a == NULL)
        return;
    atomic_store_explicit(&a->reopen, true, memory_order_release);
    tg_alog_kick(a->ctl_fd);
}

void tg_alog_stop(struct tg_alog *a)
{
    if (a == NULL || !a->started || a->joined)
        return;
    atomic_store_explicit(&a->stop, true, memory_order_release);
    tg_alog_kick(a->ctl_fd);
    pthread_join(a->thread, NULL);
    a->joined = true;
    struct tg_alog_counts c;
    tg_alog_counts(a, &c);
    if (c.dropped_full > 0 || c.lost > 0)
        TG_WARN("access log: %llu line(s) written, %llu dropped (buffer full), %llu lost "
                "(destination failed or blocked)",
                (unsigned long long)c.written, (unsigned long long)c.dropped_full,
                (unsigned long long)c.lost);
}

void tg_alog_free(struct tg_alog *a)
{
    if (a == NULL)
        return;
    tg_alog_stop(a);
    for (int i = 0; a->rings != NULL && i < a->n_rings; i++)
        tg_alog_ring_destroy(&a->rings[i]);
    free(a->rings);
    if (a->fd >= 0 && a->fd != STDOUT_FILENO)
        close(a->fd);
    if (a->data_fd >= 0)
        close(a->data_fd);
    if (a->ctl_fd >= 0)
        close(a->ctl_fd);
    free(a->out);
    free(a->path);
    free(a);
}

/* ---- counters ---- */

void tg_alog_counts(const struct tg_alog *a, struct tg_alog_counts *c)
{
    memset(c, 0, sizeof(*c));
    if (a == NULL)
        return;
    for (int i = 0; i < a->n_rings; i++) {
        c->queued += tg_ctr_get(&a->rings[i].queued);
        c->dropped_full += tg_ctr_get(&a->rings[i].dropped);
    }
    c->written = tg_ctr_get(&a->written);
    c->lost = tg_ctr_get(&a->lost);
    c->write_errors = tg_ctr_get(&a->write_errors);
    c->reopens = tg_ctr_get(&a->reopens);
    c->reopen_errors = tg_ctr_get(&a->reopen_errors);
}

void tg_alog_render_stats(struct tg_buf *out, const struct tg_alog *a)
{
    struct tg_alog_counts c;
    tg_alog_counts(a, &c);
    tg_prom_header(out, "tlsgate_access_log_lines_total", "counter",
                   "Access-log lines written to the destination");
    tg_prom_value(out, "tlsgate_access_log_lines_total", "", c.written);
    tg_prom_header(out, "tlsgate_access_log_dropped_total", "counter",
                   "Access-log lines dropped, by reason");
    tg_prom_value(out, "tlsgate_access_log_dropped_total", "reason=\"buffer_full\"",
                  c.dropped_full);
    tg_prom_value(out, "tlsgate_access_log_dropped_total", "reason=\"write_error\"", c.lost);
    tg_prom_header(out, "tlsgate_access_log_write_errors_total", "counter",
                   "Failed writes to the access-log destination");
    tg_prom_value(out, "tlsgate_access_log_write_errors_total", "", c.write_errors);
    tg_prom_header(out, "tlsgate_access_log_reopens_total", "counter",
                   "Access-log file reopens (SIGUSR1), by result");
    tg_prom_value(out, "tlsgate_access_log_reopens_total", "result=\"ok\"", c.reopens);
    tg_prom_value(out, "tlsgate_access_log_reopens_total", "result=\"error\"", c.reopen_errors);
}
