/*
 * tg_log: leveled logging to stderr (or a file descriptor chosen at start).
 *
 * One write(2) per line, so lines from several worker threads never interleave.
 * Secrets must never be passed to these functions.
 */
#ifndef TG_LOG_H
#define TG_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/tg_err.h"

enum tg_log_level { TG_LOG_ERROR, TG_LOG_WARN, TG_LOG_INFO, TG_LOG_DEBUG };

/* Set the global threshold; callable any time (relaxed atomic). */
void tg_log_set_level(enum tg_log_level level);
enum tg_log_level tg_log_get_level(void);
/* Parse "error|warn|info|debug"; returns false on anything else. */
bool tg_log_parse_level(const char *s, enum tg_log_level *out);
/* Redirect output to fd (default 2). Not thread-safe: call before workers start. */
void tg_log_set_fd(int fd);
/* Tag this thread's lines ("main", "w0", "w1", ...). Copies at most 15 bytes. */
void tg_log_set_thread_tag(const char *tag);

void tg_log(enum tg_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Log and clear OpenSSL's error queue for this thread, each entry prefixed by
 * what. Returns the number of entries drained. */
int tg_log_openssl_errors(enum tg_log_level level, const char *what);

/*
 * Once per interval: for an event that can repeat thousands of times a
 * second (a connection refused at a limit, accept out of descriptors), log
 * one line per interval, process-wide, whichever thread sees it, and say in
 * that line how many were not logged. Any thread; zero-initialise (static
 * storage). Lock-free: one relaxed load on the quiet path.
 */
struct tg_log_every {
    _Atomic uint64_t next_ns;    /* monotonic time from which the next line may be logged */
    _Atomic uint64_t suppressed; /* events since the last line that was logged */
};
/* True when the caller should log now (the first event, or the first after
 * interval_ns since the last line); *missed is then the number of events
 * not logged since that last line. False otherwise (the event is counted).
 * now_ns: tg_now_ns() (tests pass their own clock). */
bool tg_log_every_due(struct tg_log_every *e, uint64_t interval_ns, uint64_t now_ns,
                      uint64_t *missed) TG_MUST_CHECK;

#define tg_log_enabled(level) ((level) <= tg_log_get_level())
#define TG_ERROR(...)         tg_log(TG_LOG_ERROR, __VA_ARGS__)
#define TG_WARN(...)          tg_log(TG_LOG_WARN, __VA_ARGS__)
#define TG_INFO(...)          tg_log(TG_LOG_INFO, __VA_ARGS__)
#define TG_DEBUG(...)                                                                              \
    do {                                                                                           \
        if (tg_log_enabled(TG_LOG_DEBUG))                                                          \
            tg_log(TG_LOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)

#endif
