#include "core/tg_log.h"

#include <openssl/err.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static _Atomic int tg_log_level_v = TG_LOG_INFO;
static int tg_log_fd = 2;
static _Thread_local char tg_log_tag[16] = "main";

static const char *const tg_level_names[] = {"error", "warn", "info", "debug"};

void tg_log_set_level(enum tg_log_level level)
{
    atomic_store_explicit(&tg_log_level_v, (int)level, memory_order_relaxed);
}

enum tg_log_level tg_log_get_level(void)
{
    return (enum tg_log_level)atomic_load_explicit(&tg_log_level_v, memory_order_relaxed);
}

bool tg_log_parse_level(const char *s, enum tg_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, tg_level_names[i]) == 0) {
            *out = (enum tg_log_level)i;
            return true;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = TG_LOG_WARN;
        return true;
    }
    return false;
}

void tg_log_set_fd(int fd)
{
    tg_log_fd = fd;
}

void tg_log_set_thread_tag(const char *tag)
{
    snprintf(tg_log_tag, sizeof(tg_log_tag), "%s", tag);
}

void tg_log(enum tg_log_level level, const char *fmt, ...)
{
    if (!tg_log_enabled(level))
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, tg_log_tag, tg_level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    ssize_t w = write(tg_log_fd, line, len);
    (void)w;
}

int tg_log_openssl_errors(enum tg_log_level level, const char *what)
{
    int n = 0;
    unsigned long e;
    const char *file, *data;
    int line, flags;
    while ((e = ERR_get_error_all(&file, &line, NULL, &data, &flags)) != 0) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof(buf));
        tg_log(level, "%s: %s%s%s", what, buf, (flags & ERR_TXT_STRING) ? ": " : "",
               (flags & ERR_TXT_STRING) ? data : "");
        n++;
    }
    return n;
}

bool tg_log_every_due(struct tg_log_every *e, uint64_t interval_ns, uint64_t now_ns,
                      uint64_t *missed)
{
    uint64_t next = atomic_load_explicit(&e->next_ns, memory_order_relaxed);
    /* One thread wins the interval; the others count their event. */
    if (now_ns < next ||
        !atomic_compare_exchange_strong_explicit(&e->next_ns, &next, now_ns + interval_ns,
                                                 memory_order_relaxed, memory_order_relaxed)) {
        atomic_fetch_add_explicit(&e->suppressed, 1, memory_order_relaxed);
        return false;
    }
    *missed = atomic_exchange_explicit(&e->suppressed, 0, memory_order_relaxed);
    return true;
}
