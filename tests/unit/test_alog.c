/*
 * Unit tests for src/alog/tg_alog.c, the writer: lines reach a file (text
 * and JSON) and stdout; stop writes out everything still buffered; an
 * unopenable file is a configuration error with its position; SIGUSR1's
 * reopen after a rename keeps every line, and a failed reopen keeps the old
 * file; a destination that blocks (a FIFO nobody reads) never blocks the
 * producer, which drops and counts, and stop gives up on it in bounded
 * time; a full disk and a write cut inside a line; the Prometheus lines. The test thread is the
 * workers' stand-in.
 */
#include "tg_test_util.h"

#include "alog/tg_alog.h"
#include "core/tg_time.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static struct tg_conf_access_log conf_of(enum tg_conf_alog_dest dest, const char *path,
                                         enum tg_conf_alog_format fmt, size_t buffer)
{
    struct tg_conf_access_log c;
    memset(&c, 0, sizeof(c));
    c.dest = dest;
    c.path = (char *)path;
    c.format = fmt;
    c.buffer = buffer;
    c.mark = (struct tg_conf_mark){"gw.yaml", 2, 1};
    c.path_mark = (struct tg_conf_mark){"gw.yaml", 3, 9};
    return c;
}

static void emit_n(struct tg_alog_ring *r, uint64_t from, uint64_t n, size_t sni_len)
{
    char sni[TG_ALOG_STR_MAX];
    memset(sni, 's', sizeof(sni));
    for (uint64_t i = from; i < from + n; i++) {
        struct tg_alog_rec rec;
        struct tg_alog_strs s;
        memset(&rec, 0, sizeof(rec));
        memset(&s, 0, sizeof(s));
        rec.time_ns = 1700000000ULL * TG_NS_PER_S;
        rec.handshake_ns = rec.connect_ns = TG_ALOG_NONE;
        rec.cert_index = -1;
        rec.bytes_in = i;
        s.p[TG_ALOG_S_LISTENER] = "l0";
        s.len[TG_ALOG_S_LISTENER] = 2;
        s.p[TG_ALOG_S_SNI] = sni;
        s.len[TG_ALOG_S_SNI] = sni_len;
        (void)tg_alog_emit(r, &rec, &s);
    }
}

/* The whole file (malloc'd, NUL-terminated); *lines = its '\n' count. */
static char *slurp(const char *path, size_t *lines)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 65536) {
            cap = cap * 2 + 65536;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        if (n == 0)
            break;
        len += n;
    }
    fclose(f);
    buf[len] = '\0';
    *lines = 0;
    for (size_t i = 0; i < len; i++)
        *lines += buf[i] == '\n';
    return buf;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Poll the writer's counters until cond holds (bounded: 20 s). */
#define WAIT_FOR(a, c, cond)                                                                       \
    do {                                                                                           \
        uint64_t deadline_ = tg_now_ns() + 20 * TG_NS_PER_S;                                       \
        for (;;) {                                                                                 \
            tg_alog_counts((a), &(c));                                                             \
            if (cond)                                                                              \
                break;                                                                             \
            assert_true(tg_now_ns() < deadline_);                                                  \
            sleep_ms(5);                                                                           \
        }                                                                                          \
    } while (0)

static void test_file_text_and_stop_flushes(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof(path), "%s/text.log", tg_test_tmpdir());
    struct tg_conf_access_log c = conf_of(TG_CONF_ALOG_FILE, path, TG_CONF_ALOG_TEXT, 1 << 20);
    struct tg_alog *a = NULL;
    char err[512];
    assert_int_equal(tg_alog_open(&c, 2, &a, err, sizeof(err)), TG_OK);
    assert_int_equal(tg_alog_start(a), TG_OK);
    /* Two workers' rings; stop right away: nothing may be left behind. */
    emit_n(tg_alog_ring_of(a, 0), 0, 3000, 20);
    emit_n(tg_alog_ring_of(a, 1), 3000, 3000, 20);
    tg_alog_stop(a);
    struct tg_alog_counts k;
    tg_alog_counts(a, &k);
    assert_int_equal(k.queued, 6000);
    assert_int_equal(k.written, 6000);
    assert_int_equal(k.dropped_full + k.lost + k.write_errors, 0);
    tg_alog_stop(a); /* idempotent */
    tg_alog_free(a);

    size_t lines;
    char *text = slurp(path, &lines);
    assert_int_equal(lines, 6000);
    assert_memory_equal(text, "time=2023-11-14T22:13:20.000Z listener=l0 client=- peer=- sni=", 61);
    /* Every record once: look for a few. */
    assert_non_null(strstr(text, " bytes_in=0 "));
    assert_non_null(strstr(text, " bytes_in=2999 "));
    assert_non_null(strstr(text, " bytes_in=5999 "));
    free(text);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    mode_t mask = umask(0);
    umask(mask);
    assert_int_equal(st.st_mode & 0777, 0640 & ~mask);
}

static void test_file_json(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof(path), "%s/json.log", tg_test_tmpdir());
    struct tg_conf_access_log c = conf_of(TG_CONF_ALOG_FILE, path, TG_CONF_ALOG_JSON, 4096);
    struct tg_alog *a = NULL;
    char err[512];
    assert_int_equal(tg_alog_open(&c, 1, &a, err, sizeof(err)), TG_OK);
    assert_int_equal(tg_alog_start(a), TG_OK);
    emit_n(tg_alog_ring_of(a, 0), 0, 5, 3);
    tg_alog_free(a); /* stops, then frees */
    size_t lines;
    char *text = slurp(path, &lines);
    assert_int_equal(lines, 5);
    assert_memory_equal(text, "{\"time\":\"2023-11-14T22:13:20.000Z\",\"listener\":\"l0\",", 51);
    assert_non_null(strstr(text, "\"sni\":\"sss\""));
    free(text);
}

static void test_stdout(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(p[1], STDOUT_FILENO), STDOUT_FILENO);
    struct tg_conf_access_log c = conf_of(TG_CONF_ALOG_STDOUT, NULL, TG_CONF_ALOG_TEXT, 4096);
    struct tg_alog *a = NULL;
    char err[512];
    int rc = tg_alog_open(&c, 1, &a, err, sizeof(err));
    if (rc == TG_OK)
        rc = tg_alog_start(a);
    if (rc == TG_OK)
        emit_n(tg_alog_ring_of(a, 0), 0, 3, 1);
    tg_alog_free(a);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    close(p[1]);
    assert_int_equal(rc, TG_OK);
    char buf[4096];
    size_t len = 0;
    ssize_t n;
    while ((n = read(p[0], buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)n;
    close(p[0]);
    buf[len] = '\0';
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    assert_int_equal(lines, 3);
    assert_non_null(strstr(buf, " bytes_in=2 "));
}

static void test_open_errors(void **state)
{
    (void)state;
    struct tg_conf_access_log c =
        conf_of(TG_CONF_ALOG_FILE, "/nonexistent-tg-dir/a.log", TG_CONF_ALOG_TEXT, 4096);
    struct tg_alog *a = (struct tg_alog *)&c;
    char err[512];
    assert_int_equal(tg_alog_open(&c, 1, &a, err, sizeof(err)), TG_ECONFIG);
    assert_null(a);
    assert_string_equal(err, "gw.yaml:3:9: access_log.path: cannot open "
                             "'/nonexistent-tg-dir/a.log': No such file or directory");
    /* A directory. */
    c.path = (char *)tg_test_tmpdir();
    assert_int_equal(tg_alog_open(&c, 1, &a, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "Is a directory"));
    /* A FIFO nobody reads: refused at once rather than hanging the start. */
    char fifo[512];
    snprintf(fifo, sizeof(fifo), "%s/nobody.fifo", tg_test_tmpdir());
    assert_int_equal(mkfifo(fifo, 0600), 0);
    c.path = fifo;
    assert_int_equal(tg_alog_open(&c, 1, &a, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "No such device or address"));
    /* Off is not something to open. */
    c.dest = TG_CONF_ALOG_OFF;
    assert_int_equal(tg_alog_open(&c, 1, &a, err, sizeof(err)), TG_EINVAL);
    /* NULL everywhere is fine. */
    tg_alog_stop(NULL);
    tg_alog_free(NULL);
    tg_alog_reopen(NULL);
}

static void test_reopen_after_rename(void **state)
{
    (void)state;
    char path[512], old[512];
    snprintf(path, sizeof(path), "%s/rot.log", tg_test_tmpdir());
    snprintf(old, sizeof(old), "%s/rot.log.1", tg_test_tmpdir());
    struct tg_conf_access_log c = conf_of(TG_CONF_ALOG_FILE, path, TG_CONF_ALOG_TEXT, 65536);
    struct tg_alog *a = NULL;
    char err[512];
    struct tg_alog_counts k;
    assert_int_equal(tg_alog_open(&c, 1, &a, err, sizeof(err)), TG_OK);
    assert_int_equal(tg_alog_start(a), TG_OK);
    struct tg_alog_ring *r = tg_alog_ring_of(a, 0);
    emit_n(r, 0, 10, 4);
    WAIT_FOR(a, k, k.written == 10);
    /* logrotate: rename, then SIGUSR1. */
    assert_int_equal(rename(path, old), 0);
    emit_n(r, 10, 5, 4); /* may land in either file */
    tg_alog_reopen(a);
    WAIT_FOR(a, k, k.reopens == 1);
    emit_n(r, 15, 10, 4);
    /* A reopen that fails (the name is now a directory) keeps the file. */
    WAIT_FOR(a, k, k.written == 25);
    assert_int_equal(rename(path, old), 0); /* the new file replaces the old one */
    assert_int_equal(mkdir(path, 0700), 0);
    tg_alog_reopen(a);
    WAIT_FOR(a, k, k.reopen_errors == 1);
    emit_n(r, 25, 5, 4);
    tg_alog_stop(a);
    tg_alog_counts(a, &k);
    assert_int_equal(k.written, 30);
    assert_int_equal(k.reopens, 1);
    tg_alog_free(a);
    size_t lines;
    char *text = slurp(old, &lines);
    /* rot.log.1 now holds the second file: lines 10..29 but those of 10..14
     * that reached the first file before the reopen. */
    assert_non_null(strstr(text, " bytes_in=15 "));
    assert_non_null(strstr(text, " bytes_in=29 "));
    assert_null(strstr(text, " bytes_in=9 "));
    assert_true(lines >= 15 && lines <= 20);
    free(text);
    assert_int_equal(rmdir(path), 0);
}

static void test_blocked_destination(void **state)
{
    (void)state;
    char fifo[512];
    snprintf(fifo, sizeof(fifo), "%s/blocked.fifo", tg_test_tmpdir());
    assert_int_equal(mkfifo(fifo, 0600), 0);
    /* A reader that never reads: the pipe fills, then writes would block. */
    int rd = open(fifo, O_RDONLY | O_NONBLOCK);
    assert_true(rd >= 0);
    struct tg_conf_access_log c = conf_of(TG_CONF_ALOG_FILE, fifo, TG_CONF_ALOG_TEXT, 4096);
    struct tg_alog *a = NULL;
    char err[512];
    assert_int_equal(tg_alog_open(&c, 1, &a, err, sizeof(err)), TG_OK);
    assert_int_equal(tg_alog_start(a), TG_OK);
    struct tg_alog_ring *r = tg_alog_ring_of(a, 0);
    struct tg_alog_counts k;
    /* The producer goes on regardless: it never waits, it drops. Produce
     * slowly enough for the writer to keep up until the pipe is full (the
     * writer is then stuck: a probe descriptor on the FIFO is not writable),
     * then until the ring has overflowed many times. */
    int probe = open(fifo, O_WRONLY | O_NONBLOCK);
    assert_true(probe >= 0);
    uint64_t n = 0;
    bool full = false;
    do {
        emit_n(r, n, 10, 200);
        n += 10;
        tg_alog_counts(a, &k);
        struct pollfd pw = {probe, POLLOUT, 0};
        full = poll(&pw, 1, 0) == 0;
        if (!full)
            sleep_ms(1);
    } while (!full || k.dropped_full < 1000);
    close(probe);
    assert_true(k.queued + k.dropped_full == n);
    uint64_t t0 = tg_now_ns();
    tg_alog_stop(a);
    uint64_t took_ms = (tg_now_ns() - t0) / TG_NS_PER_MS;
    tg_alog_counts(a, &k);
    assert_true(took_ms < TG_ALOG_STOP_FLUSH_MS + 3000);
    assert_int_equal(k.written + k.lost, k.queued);
    assert_true(k.lost > 0);
    tg_alog_free(a);
    /* What did get through is whole lines (the writer wrote at most
     * PIPE_BUF at a time, after POLLOUT). */
    char buf[4096];
    uint64_t nl = 0;
    ssize_t got;
    while ((got = read(rd, buf, sizeof(buf))) > 0) {
        for (ssize_t i = 0; i < got; i++)
            nl += buf[i] == '\n';
    }
    close(rd);
    assert_true(nl >= k.written);
}

/* A full disk (/dev/full: every write fails with ENOSPC): the lines are
 * counted as lost, the errors counted, the producer never waits, and stop
 * returns at once. */
static void test_disk_full(void **state)
{
    (void)state;
    if (access("/dev/full", W_OK) != 0)
        skip();
    struct tg_conf_access_log c = conf_of(TG_CONF_ALOG_FILE, "/dev/full", TG_CONF_ALOG_TEXT, 65536);
    struct tg_alog *a = NULL;
    char err[512];
    struct tg_alog_counts k;
    assert_int_equal(tg_alog_open(&c, 1, &a, err, sizeof(err)), TG_OK);
    assert_int_equal(tg_alog_start(a), TG_OK);
    struct tg_alog_ring *r = tg_alog_ring_of(a, 0);
    emit_n(r, 0, 50, 10);
    WAIT_FOR(a, k, k.lost == 50);
    emit_n(r, 50, 50, 10);
    WAIT_FOR(a, k, k.lost == 100);
    assert_true(k.write_errors >= 2);
    assert_int_equal(k.written, 0);
    uint64_t t0 = tg_now_ns();
    tg_alog_stop(a);
    assert_true(tg_now_ns() - t0 < (uint64_t)TG_ALOG_STOP_FLUSH_MS * TG_NS_PER_MS);
    tg_alog_counts(a, &k);
    assert_int_equal(k.queued, 100);
    assert_int_equal(k.written + k.lost, 100);
    tg_alog_free(a);
}

/* A write cut short in the middle of a line (the file size limit, as a full
 * disk does it: a short write, then an error): the lines written whole are
 * counted as written, the rest lost, and the cut line is ended before the
 * next one, so that no line runs into another. */
static void test_torn_line(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof(path), "%s/torn.log", tg_test_tmpdir());
    struct tg_conf_access_log c = conf_of(TG_CONF_ALOG_FILE, path, TG_CONF_ALOG_TEXT, 1 << 20);
    struct tg_alog *a = NULL;
    char err[512];
    struct tg_alog_counts k;
    struct rlimit saved, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    void (*old)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(tg_alog_open(&c, 1, &a, err, sizeof(err)), TG_OK);
    lim = saved;
    lim.rlim_cur = 1000; /* inside the 3rd line (about 380 bytes each) */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    assert_int_equal(tg_alog_start(a), TG_OK);
    struct tg_alog_ring *r = tg_alog_ring_of(a, 0);
    emit_n(r, 0, 10, 100);
    WAIT_FOR(a, k, k.written + k.lost == 10);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    assert_true(k.written >= 1 && k.written < 10);
    assert_true(k.write_errors >= 1);
    uint64_t whole = k.written;
    emit_n(r, 10, 5, 100);
    tg_alog_stop(a);
    tg_alog_counts(a, &k);
    tg_alog_free(a);
    signal(SIGXFSZ, old);
    assert_int_equal(k.written, whole + 5);
    size_t lines;
    char *text = slurp(path, &lines);
    /* whole lines, the cut one (ended), then 10..14, each on its own line */
    assert_int_equal(lines, whole + 1 + 5);
    char *cut = text;
    for (uint64_t i = 0; i < whole + 1; i++)
        cut = strchr(cut, '\n') + 1;
    assert_memory_equal(cut, "time=", 5);
    assert_non_null(strstr(cut, " bytes_in=10 "));
    for (char *p = cut; *p != '\0'; p = strchr(p, '\n') + 1)
        assert_memory_equal(p, "time=", 5);
    free(text);
}

static void test_render(void **state)
{
    (void)state;
    struct tg_buf b = TG_BUF_INIT;
    tg_alog_render_stats(&b, NULL);
    assert_false(tg_buf_failed(&b));
    assert_non_null(strstr(b.data, "\ntlsgate_access_log_lines_total 0\n"));
    assert_non_null(
        strstr(b.data, "\ntlsgate_access_log_dropped_total{reason=\"buffer_full\"} 0\n"));
    assert_non_null(
        strstr(b.data, "\ntlsgate_access_log_dropped_total{reason=\"write_error\"} 0\n"));
    assert_non_null(strstr(b.data, "\ntlsgate_access_log_write_errors_total 0\n"));
    assert_non_null(strstr(b.data, "\ntlsgate_access_log_reopens_total{result=\"ok\"} 0\n"));
    tg_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_text_and_stop_flushes),
        cmocka_unit_test(test_file_json),
        cmocka_unit_test(test_stdout),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_reopen_after_rename),
        cmocka_unit_test(test_blocked_destination),
        cmocka_unit_test(test_disk_full),
        cmocka_unit_test(test_torn_line),
        cmocka_unit_test(test_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
