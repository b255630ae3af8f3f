/*
 * tg_heap: the allocator in use is recognised, and its release call runs.
 * This test program itself runs on glibc's malloc; with tcmalloc-minimal or
 * jemalloc installed (scripts/setup.sh installs both), it runs itself again
 * with each preloaded and checks what the child recognises and that a
 * release there works (skipped when a library is missing).
 */
#include "tg_test_util.h"

#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/tg_heap.h"

extern char **environ;

static void test_glibc(void **state)
{
    (void)state;
    tg_heap_init();
    assert_int_equal(tg_heap_kind(), TG_HEAP_GLIBC);
    assert_string_equal(tg_heap_name(), "glibc");
    /* Memory freed, then given back: no crash, the heap still works. */
    void *v[256];
    for (size_t i = 0; i < 256; i++)
        assert_non_null(v[i] = malloc(4096 + i));
    for (size_t i = 0; i < 256; i++)
        free(v[i]);
    tg_heap_release();
    void *p = malloc(100);
    assert_non_null(p);
    free(p);
}

/* The library's path, or NULL when it is not installed. */
static const char *tg_test_find_lib(const char *file)
{
    static char path[512];
    static const char *const dirs[] = {"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
                                       "/usr/lib64", "/usr/lib", "/lib/x86_64-linux-gnu"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dirs[i], file);
        if (access(path, R_OK) == 0)
            return path;
    }
    return NULL;
}

/* Run this program with lib preloaded in child mode; its stdout. */
static void tg_test_child(const char *lib, char *out, size_t outlen)
{
    char exe[512];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    assert_true(n > 0);
    exe[n] = '\0';
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    char pre[600];
    snprintf(pre, sizeof(pre), "LD_PRELOAD=%s", lib);
    char *envp[] = {pre, NULL};
    char *argv[] = {exe, (char *)"--heap-child", NULL};
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, exe, &fa, NULL, argv, envp), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < outlen && (r = read(fds[0], out + got, outlen - 1 - got)) > 0)
        got += (size_t)r;
    out[got] = '\0';
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("child with %s: status %d, output '%s'", lib, status, out);
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TG_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define TG_TEST_SANITIZED 1
#endif
#endif

static void tg_test_preloaded(const char *file, const char *want)
{
#ifdef TG_TEST_SANITIZED
    /* A sanitizer's runtime must come first; nothing else may be preloaded. */
    (void)file;
    (void)want;
    skip();
#endif
    const char *lib = tg_test_find_lib(file);
    if (lib == NULL) {
        printf("    %s is not installed: not checked\n", file);
        skip();
    }
    char out[256];
    tg_test_child(lib, out, sizeof(out));
    char expect[64];
    snprintf(expect, sizeof(expect), "%s released\n", want);
    assert_string_equal(out, expect);
}

static void test_tcmalloc(void **state)
{
    (void)state;
    tg_test_preloaded("libtcmalloc_minimal.so.4", "tcmalloc");
}

static void test_jemalloc(void **state)
{
    (void)state;
    tg_test_preloaded("libjemalloc.so.2", "jemalloc");
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--heap-child") == 0) {
        tg_heap_init();
        void *v[64];
        for (size_t i = 0; i < 64; i++)
            v[i] = malloc(65536);
        for (size_t i = 0; i < 64; i++)
            free(v[i]);
        tg_heap_release();
        printf("%s released\n", tg_heap_name());
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_glibc),
        cmocka_unit_test(test_tcmalloc),
        cmocka_unit_test(test_jemalloc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
