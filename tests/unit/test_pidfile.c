/*
 * The pid file (src/core/tg_pidfile.c): creation, the lock that makes a
 * second instance refuse to start, stale files, removal at exit, and what
 * `tlsgate reload` learns from it. Open-file-description locks conflict
 * between two opens of the same file even in one process, so most cases need
 * no second process; one case forks to check the lock across processes.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/tg_pidfile.h"
#include "tg_test_util.h"

static char *path_of(const char *name)
{
    static char buf[4][600];
    static int i;
    char *p = buf[i++ % 4];
    snprintf(p, sizeof(buf[0]), "%s/%s", tg_test_tmpdir(), name);
    return p;
}

static pid_t file_pid(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int v = 0;
    assert_int_equal(fscanf(f, "%d", &v), 1);
    fclose(f);
    return (pid_t)v;
}

static void test_acquire_release(void **state)
{
    (void)state;
    const char *p = path_of("a.pid");
    char err[512] = "";
    struct tg_pidfile *pf = NULL;
    pid_t holder = -1;
    assert_int_equal(tg_pidfile_acquire(p, false, &pf, &holder, err, sizeof(err)), TG_OK);
    assert_non_null(pf);
    assert_int_equal(holder, 0);
    assert_int_equal(file_pid(p), getpid());
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);

    /* What `tlsgate reload` sees. */
    pid_t pid = 0;
    assert_int_equal(tg_pidfile_holder(p, &pid, err, sizeof(err)), TG_OK);
    assert_int_equal(pid, getpid());

    /* A second instance is refused and told who runs. */
    struct tg_pidfile *pf2 = NULL;
    assert_int_equal(tg_pidfile_acquire(p, false, &pf2, &holder, err, sizeof(err)), TG_EAGAIN);
    assert_null(pf2);
    assert_int_equal(holder, getpid());
    char want[700];
    snprintf(want, sizeof(want), "another tlsgate (pid %d) runs with pid file %s", (int)getpid(),
             p);
    assert_string_equal(err, want);

    /* Asking does not take the lock: the owner is undisturbed. */
    assert_int_equal(file_pid(p), getpid());

    tg_pidfile_release(pf);
    assert_int_equal(access(p, F_OK), -1);
    assert_int_equal(tg_pidfile_holder(p, &pid, err, sizeof(err)), TG_EUNAVAIL);
    assert_non_null(strstr(err, "No such file or directory"));
    tg_pidfile_release(NULL);
}

/* A pid file left by a killed process (nobody holds its lock) is stale,
 * whatever pid it names: reload refuses it, a new instance takes it over. */
static void test_stale_file(void **state)
{
    (void)state;
    const char *p = path_of("stale.pid");
    /* The pid of this very process: alive, yet the file is stale. */
    char line[32];
    int n = snprintf(line, sizeof(line), "%d\n", (int)getpid());
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, line, (size_t)n), n);
    close(fd);

    char err[512] = "";
    pid_t pid = 0;
    assert_int_equal(tg_pidfile_holder(p, &pid, err, sizeof(err)), TG_EUNAVAIL);
    assert_non_null(strstr(err, "is stale"));

    /* Garbage in it changes nothing. */
    fd = open(p, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, "garbage and more garbage\n", 25), 25);
    close(fd);
    struct tg_pidfile *pf = NULL;
    pid_t holder = -1;
    assert_int_equal(tg_pidfile_acquire(p, false, &pf, &holder, err, sizeof(err)), TG_OK);
    assert_int_equal(file_pid(p), getpid());
    tg_pidfile_release(pf);
}

/* The default pid file lives in the state directory, which may not exist
 * yet: created (0700) when asked, an error when not. */
static void test_parent_directory(void **state)
{
    (void)state;
    const char *p = path_of("state/deeper/tlsgate.pid");
    char err[512] = "";
    struct tg_pidfile *pf = NULL;
    pid_t holder;
    assert_int_equal(tg_pidfile_acquire(p, false, &pf, &holder, err, sizeof(err)), TG_EIO);
    assert_non_null(strstr(err, "No such file or directory"));
    assert_int_equal(tg_pidfile_acquire(p, true, &pf, &holder, err, sizeof(err)), TG_OK);
    struct stat st;
    assert_int_equal(stat(path_of("state/deeper"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    tg_pidfile_release(pf);
    assert_int_equal(access(p, F_OK), -1);
}

/* An operator removed the file and another instance created a new one:
 * releasing ours must not remove theirs. */
static void test_release_keeps_a_replacement(void **state)
{
    (void)state;
    const char *p = path_of("replaced.pid");
    char err[512] = "";
    struct tg_pidfile *a = NULL, *b = NULL;
    pid_t holder;
    assert_int_equal(tg_pidfile_acquire(p, false, &a, &holder, err, sizeof(err)), TG_OK);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(tg_pidfile_acquire(p, false, &b, &holder, err, sizeof(err)), TG_OK);
    tg_pidfile_release(a);
    assert_int_equal(access(p, F_OK), 0);
    pid_t pid = 0;
    assert_int_equal(tg_pidfile_holder(p, &pid, err, sizeof(err)), TG_OK);
    tg_pidfile_release(b);
    assert_int_equal(access(p, F_OK), -1);
}

/* Negative cases: a symlink is not followed; a path that cannot exist. */
static void test_refusals(void **state)
{
    (void)state;
    const char *target = path_of("target");
    const char *link = path_of("link.pid");
    assert_int_equal(symlink(target, link), 0);
    char err[512] = "";
    struct tg_pidfile *pf = NULL;
    pid_t holder;
    assert_int_equal(tg_pidfile_acquire(link, false, &pf, &holder, err, sizeof(err)), TG_EIO);
    assert_null(pf);
    assert_int_equal(access(target, F_OK), -1);
    pid_t pid;
    assert_int_equal(tg_pidfile_holder(link, &pid, err, sizeof(err)), TG_EIO);

    const char *under_file = path_of("a-file/x.pid");
    int fd = open(path_of("a-file"), O_WRONLY | O_CREAT, 0644);
    close(fd);
    assert_int_equal(tg_pidfile_acquire(under_file, true, &pf, &holder, err, sizeof(err)), TG_EIO);
    assert_non_null(strstr(err, "Not a directory"));

    /* Held, but not a pid in it: reload cannot tell whom to signal. */
    const char *p = path_of("empty.pid");
    assert_int_equal(tg_pidfile_acquire(p, false, &pf, &holder, err, sizeof(err)), TG_OK);
    assert_int_equal(truncate(p, 0), 0);
    assert_int_equal(tg_pidfile_holder(p, &pid, err, sizeof(err)), TG_EIO);
    assert_non_null(strstr(err, "names no valid pid"));
    tg_pidfile_release(pf);
}

/* Across processes: a child holds the file; the parent is refused; once the
 * child is gone (killed: no clean-up at all) the file is stale and taken. */
static void test_across_processes(void **state)
{
    (void)state;
    const char *p = path_of("child.pid");
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        char err[512];
        struct tg_pidfile *pf = NULL;
        pid_t h;
        char c = tg_pidfile_acquire(p, false, &pf, &h, err, sizeof(err)) == TG_OK ? 'y' : 'n';
        if (write(ready[1], &c, 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    char c = 0;
    assert_int_equal(read(ready[0], &c, 1), 1);
    assert_int_equal(c, 'y');
    char err[512] = "";
    pid_t pid = 0, holder = 0;
    assert_int_equal(tg_pidfile_holder(p, &pid, err, sizeof(err)), TG_OK);
    assert_int_equal(pid, child);
    struct tg_pidfile *pf = NULL;
    assert_int_equal(tg_pidfile_acquire(p, false, &pf, &holder, err, sizeof(err)), TG_EAGAIN);
    assert_int_equal(holder, child);

    assert_int_equal(kill(child, SIGKILL), 0);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_int_equal(access(p, F_OK), 0); /* left behind */
    assert_int_equal(tg_pidfile_holder(p, &pid, err, sizeof(err)), TG_EUNAVAIL);
    assert_int_equal(tg_pidfile_acquire(p, false, &pf, &holder, err, sizeof(err)), TG_OK);
    assert_int_equal(file_pid(p), getpid());
    tg_pidfile_release(pf);
    close(ready[0]);
    close(ready[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acquire_release),  cmocka_unit_test(test_stale_file),
        cmocka_unit_test(test_parent_directory), cmocka_unit_test(test_release_keeps_a_replacement),
        cmocka_unit_test(test_refusals),         cmocka_unit_test(test_across_processes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
