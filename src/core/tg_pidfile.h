/*
 * tg_pidfile: the pid file of a running `tlsgate run`, so that `tlsgate
 * reload` can find it and a second instance refuses to start.
 *
 * The owner holds an open-file-description write lock (F_OFD_SETLK) on the
 * whole file for as long as it runs: a pid file nobody holds a lock on is
 * stale, whatever pid it names (the process was killed, or the pid was
 * reused), and is taken over. The kernel drops the lock when the process
 * dies, so no clean-up is needed after a crash.
 *
 * Threading: main thread; no state besides the returned object.
 */
#ifndef TG_PIDFILE_H
#define TG_PIDFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "core/tg_err.h"

struct tg_pidfile;

/*
 * Create PATH (mode 0644) or take over a stale one, lock it and write the
 * calling process's pid into it. mkdir_parent: create the directory that
 * holds it (mode 0700, with parents) when it is missing.
 * Returns TG_OK and *out; TG_EAGAIN when a live process holds it (its pid in
 * *holder when it could be read, else 0, and "another tlsgate (pid N) runs
 * with pid file PATH" in err); TG_EIO with the reason in err otherwise.
 * Release with tg_pidfile_release().
 */
int tg_pidfile_acquire(const char *path, bool mkdir_parent, struct tg_pidfile **out, pid_t *holder,
                       char *err, size_t errlen) TG_MUST_CHECK;

/* Remove the file (when PATH still names the file we locked) and drop the
 * lock; frees pf. NULL is fine. */
void tg_pidfile_release(struct tg_pidfile *pf);

/*
 * The pid of the live process that holds PATH: TG_OK and *pid. TG_EUNAVAIL
 * when no process holds it (no file, or a stale one), TG_EIO when it cannot
 * be read or names no valid pid; the reason in err either way.
 */
int tg_pidfile_holder(const char *path, pid_t *pid, char *err, size_t errlen) TG_MUST_CHECK;

#endif
