/*
 * tg_watch: calls back when certificate or key files change, so that a
 * reload picks up a renewed certificate without a signal.
 *
 * It watches the *directories* holding the files (inotify), not the files:
 * tools replace a certificate by renaming a new file over it (certbot,
 * cert-manager, `mv`), and a Kubernetes Secret volume swaps its `..data`
 * symlink to a new directory; in both cases the file tlsgate once opened
 * never changes. In each directory it reacts to the names that matter:
 *
 *   - the file's own name (written and closed, renamed over, created,
 *     removed);
 *   - when the file is a symbolic link with a relative target, the target's
 *     first component in the same directory (`tls.crt -> ..data/tls.crt`:
 *     `..data`, which Kubernetes renames atomically);
 *   - the name of the file the path resolves to, in its own directory (an
 *     edit of a symlink's target).
 *
 * Events are debounced: the callback runs once the files have been quiet for
 * the debounce time, so a certificate and its key replaced one after the
 * other give one reload. A queue overflow counts as a change.
 *
 * Threading: the loop's thread (the main thread).
 */
#ifndef TG_WATCH_H
#define TG_WATCH_H

#include <stddef.h>
#include <stdint.h>

#include "core/tg_err.h"

struct ev_loop;
struct tg_watch;

typedef void (*tg_watch_fn)(void *arg);

/* A watcher on loop that calls fn(arg) after changes. TG_EIO (logged) when
 * inotify is not available. */
int tg_watch_new(struct ev_loop *loop, tg_watch_fn fn, void *arg,
                 struct tg_watch **out) TG_MUST_CHECK;

/* Watch these files from now on (replacing the previous set; n = 0 watches
 * nothing), with this debounce. paths are as the configuration resolved
 * them (absolute, or relative to the working directory). A directory that
 * cannot be watched is logged as a warning and skipped. A change pending
 * from the previous set still calls back. */
void tg_watch_set(struct tg_watch *w, const char *const *paths, size_t n, uint64_t debounce_ns);

/* Directories watched now (tests, logs). */
size_t tg_watch_dirs(const struct tg_watch *w);
/* Whether a change waits for its debounce to end (tests). */
int tg_watch_pending(const struct tg_watch *w);

/* Stop and free; NULL is fine. */
void tg_watch_free(struct tg_watch *w);

#endif
