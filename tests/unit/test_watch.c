/*
 * The file watcher behind reload.watch (src/proxy/tg_watch.c): the ways
 * certificates get replaced (rename over the file, a Kubernetes `..data`
 * symlink swap, an edit in place, a symlinked target rewritten), what must
 * not trigger (other files in the same directory, directories no longer
 * watched), and the debounce.
 *
 * No test waits for time: inotify queues an event during the system call
 * that causes it, so one non-blocking loop turn afterwards sees it (the
 * watcher's descriptor is readable); a debounce of 0 then fires on the next
 * turn. "Nothing happened" is checked the same way: after the turn, no
 * change is pending.
 */
#include <ev.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/tg_log.h"
#include "proxy/tg_watch.h"
#include "tg_test_util.h"

#define MAX_TURNS 1000

static struct {
    struct ev_loop *loop;
    struct tg_watch *w;
    int calls;
} W;

static void on_change(void *arg)
{
    (void)arg;
    W.calls++;
}

static char *p(const char *rel)
{
    static char buf[8][600];
    static int i;
    char *s = buf[i++ % 8];
    snprintf(s, sizeof(buf[0]), "%s/%s", tg_test_tmpdir(), rel);
    return s;
}

static void put(const char *rel, const char *text)
{
    FILE *f = fopen(p(rel), "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Let the loop see what is queued now (never blocks). */
static void settle(void)
{
    ev_run(W.loop, EVRUN_NOWAIT);
    ev_run(W.loop, EVRUN_NOWAIT);
}

/* Turn until the callback ran `want` times in all. */
static void expect_calls(int want)
{
    for (int i = 0; i < MAX_TURNS && W.calls < want; i++)
        ev_run(W.loop, EVRUN_ONCE);
    assert_int_equal(W.calls, want);
    settle();
    assert_int_equal(W.calls, want);
    assert_false(tg_watch_pending(W.w));
}

static void expect_nothing(void)
{
    int before = W.calls;
    settle();
    assert_false(tg_watch_pending(W.w));
    assert_int_equal(W.calls, before);
}

static int setup(void **state)
{
    (void)state;
    memset(&W, 0, sizeof(W));
    W.loop = ev_loop_new(EVFLAG_AUTO);
    assert_int_equal(tg_watch_new(W.loop, on_change, NULL, &W.w), TG_OK);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tg_watch_free(W.w);
    ev_loop_destroy(W.loop);
    return 0;
}

static void watch1(const char *rel, uint64_t debounce_ns)
{
    const char *paths[] = {p(rel)};
    tg_watch_set(W.w, paths, 1, debounce_ns);
}

/* certbot / cert-manager / mv: a new file renamed over the old one. Files
 * beside it, and the temporary file itself, do not count. */
static void test_rename_over(void **state)
{
    (void)state;
    assert_int_equal(mkdir(p("r"), 0700), 0);
    put("r/tls.pem", "one");
    watch1("r/tls.pem", 0);
    assert_int_equal(tg_watch_dirs(W.w), 1);
    put("r/other.pem", "x");
    put("r/.tls.pem.tmp", "two");
    expect_nothing();
    assert_int_equal(rename(p("r/.tls.pem.tmp"), p("r/tls.pem")), 0);
    expect_calls(1);
    /* Written in place (truncated and rewritten) counts too, once closed. */
    put("r/tls.pem", "three");
    expect_calls(2);
    /* Removed. */
    assert_int_equal(unlink(p("r/tls.pem")), 0);
    expect_calls(3);
}

/* A Kubernetes Secret volume: tls.crt -> ..data/tls.crt, ..data -> a
 * timestamped directory; an update writes a new directory and renames a
 * new ..data link over the old one. The files tlsgate opened never change. */
static void test_kubernetes_data_swap(void **state)
{
    (void)state;
    assert_int_equal(mkdir(p("k"), 0700), 0);
    assert_int_equal(mkdir(p("k/..2026_01"), 0700), 0);
    put("k/..2026_01/tls.crt", "one");
    assert_int_equal(symlink("..2026_01", p("k/..data")), 0);
    assert_int_equal(symlink("..data/tls.crt", p("k/tls.crt")), 0);
    watch1("k/tls.crt", 0);
    /* The new version, written beside the old: nothing the watcher cares
     * about yet. */
    assert_int_equal(mkdir(p("k/..2026_02"), 0700), 0);
    put("k/..2026_02/tls.crt", "two");
    assert_int_equal(symlink("..2026_02", p("k/..data_tmp")), 0);
    expect_nothing();
    assert_int_equal(rename(p("k/..data_tmp"), p("k/..data")), 0);
    expect_calls(1);
    /* After the reload, the set is made again from the new state. */
    watch1("k/tls.crt", 0);
    assert_int_equal(unlink(p("k/..2026_01/tls.crt")), 0);
    assert_int_equal(rmdir(p("k/..2026_01")), 0);
    expect_nothing();
}

/* A symlink to a file elsewhere, and that file rewritten in place. */
static void test_symlink_target_edited(void **state)
{
    (void)state;
    assert_int_equal(mkdir(p("s"), 0700), 0);
    assert_int_equal(mkdir(p("s/store"), 0700), 0);
    put("s/store/current.pem", "one");
    assert_int_equal(symlink(p("s/store/current.pem"), p("s/tls.pem")), 0);
    watch1("s/tls.pem", 0);
    assert_int_equal(tg_watch_dirs(W.w), 2);
    put("s/store/unrelated.pem", "x");
    expect_nothing();
    put("s/store/current.pem", "two");
    expect_calls(1);
}

/* Changes close together make one callback, after the quiet time: each
 * change starts the wait again. (A debounce of an hour cannot end during the
 * test; shortening it to 0 and changing once more shows that everything
 * before is folded into a single call.) */
static void test_debounce(void **state)
{
    (void)state;
    assert_int_equal(mkdir(p("d"), 0700), 0);
    put("d/cert.pem", "c");
    put("d/key.pem", "k");
    const char *paths[] = {p("d/cert.pem"), p("d/key.pem")};
    tg_watch_set(W.w, paths, 2, 3600ULL * 1000 * 1000 * 1000);
    put("d/key.pem", "k2");
    settle();
    assert_true(tg_watch_pending(W.w));
    put("d/cert.pem", "c2");
    settle();
    assert_true(tg_watch_pending(W.w));
    assert_int_equal(W.calls, 0);
    tg_watch_set(W.w, paths, 2, 0);
    assert_true(tg_watch_pending(W.w)); /* a new set keeps what is pending */
    put("d/cert.pem", "c3");
    expect_calls(1);
}

/* A new set replaces the old: the directory no longer named is not watched,
 * one named in both keeps its watch. Watching nothing is allowed. */
static void test_set_replaced(void **state)
{
    (void)state;
    assert_int_equal(mkdir(p("a"), 0700), 0);
    assert_int_equal(mkdir(p("b"), 0700), 0);
    put("a/x.pem", "x");
    put("b/y.pem", "y");
    const char *both[] = {p("a/x.pem"), p("b/y.pem")};
    tg_watch_set(W.w, both, 2, 0);
    assert_int_equal(tg_watch_dirs(W.w), 2);
    watch1("b/y.pem", 0);
    assert_int_equal(tg_watch_dirs(W.w), 1);
    put("a/x.pem", "x2");
    expect_nothing();
    put("b/y.pem", "y2");
    expect_calls(1);
    tg_watch_set(W.w, NULL, 0, 0);
    assert_int_equal(tg_watch_dirs(W.w), 0);
    put("b/y.pem", "y3");
    expect_nothing();
}

/* A directory that does not exist is skipped with a warning; the rest is
 * watched. */
static void test_missing_directory(void **state)
{
    (void)state;
    assert_int_equal(mkdir(p("m"), 0700), 0);
    put("m/ok.pem", "x");
    const char *paths[] = {p("nowhere/cert.pem"), p("m/ok.pem")};
    tg_log_set_level(TG_LOG_ERROR); /* the expected warning */
    tg_watch_set(W.w, paths, 2, 0);
    tg_log_set_level(TG_LOG_WARN);
    assert_int_equal(tg_watch_dirs(W.w), 1);
    put("m/ok.pem", "y");
    expect_calls(1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rename_over, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kubernetes_data_swap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_target_edited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_debounce, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_directory, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
