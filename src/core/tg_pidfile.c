/*
 * Pid file with an open-file-description lock (tg_pidfile.h).
 */
#include "core/tg_pidfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A file that another process unlinks between our open and our lock is
 * retried; this bounds the retries (each needs another process to race). */
#define TG_PIDFILE_ATTEMPTS 8

struct tg_pidfile {
    char *path;
    int fd;
    dev_t dev;
    ino_t ino;
};

/* mkdir -p of the directory that holds path; directories we create are 0700. */
static int tg_pidfile_mkdir_parent(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (slash == NULL || slash == path)
        return 0;
    size_t len = (size_t)(slash - path);
    if (len >= sizeof(dir)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(dir, path, len);
    dir[len] = '\0';
    for (char *p = dir + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

/* The pid written in the file open on fd, or 0. */
static pid_t tg_pidfile_read_pid(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *end = NULL;
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (errno != 0 || end == buf || (*end != '\n' && *end != '\0') || v <= 0 || v > 0x7fffffff)
        return 0;
    return (pid_t)v;
}

static bool tg_pidfile_same_file(int fd, const char *path, struct stat *st)
{
    struct stat ps;
    return fstat(fd, st) == 0 && stat(path, &ps) == 0 && st->st_dev == ps.st_dev &&
           st->st_ino == ps.st_ino;
}

int tg_pidfile_acquire(const char *path, bool mkdir_parent, struct tg_pidfile **out, pid_t *holder,
                       char *err, size_t errlen)
{
    *out = NULL;
    *holder = 0;
    for (int attempt = 0; attempt < TG_PIDFILE_ATTEMPTS; attempt++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0 && errno == ENOENT && mkdir_parent) {
            if (tg_pidfile_mkdir_parent(path) != 0) {
                snprintf(err, errlen, "pid file %s: cannot create its directory: %s", path,
                         strerror(errno));
                return TG_EIO;
            }
            fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        }
        if (fd < 0) {
            snprintf(err, errlen, "pid file %s: %s", path, strerror(errno));
            return TG_EIO;
        }
        struct flock lk = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
        if (fcntl(fd, F_OFD_SETLK, &lk) != 0) {
            int e = errno;
            if (e == EAGAIN || e == EACCES) {
                *holder = tg_pidfile_read_pid(fd);
                close(fd);
                if (*holder > 0)
                    snprintf(err, errlen, "another tlsgate (pid %d) runs with pid file %s",
                             (int)*holder, path);
                else
                    snprintf(err, errlen, "another tlsgate runs with pid file %s", path);
                return TG_EAGAIN;
            }
            close(fd);
            snprintf(err, errlen, "pid file %s: cannot lock it: %s", path, strerror(e));
            return TG_EIO;
        }
        /* The previous owner may have removed the file between our open and
         * our lock: then we hold a lock on a file nobody can find. */
        struct stat st;
        if (!tg_pidfile_same_file(fd, path, &st)) {
            close(fd);
            continue;
        }
        char line[32];
        int n = snprintf(line, sizeof(line), "%d\n", (int)getpid());
        if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)n, 0) != n) {
            int e = errno;
            close(fd);
            snprintf(err, errlen, "pid file %s: cannot write it: %s", path, strerror(e));
            return TG_EIO;
        }
        struct tg_pidfile *pf = calloc(1, sizeof(*pf));
        char *copy = strdup(path);
        if (pf == NULL || copy == NULL) {
            free(pf);
            free(copy);
            close(fd);
            snprintf(err, errlen, "pid file %s: out of memory", path);
            return TG_EIO;
        }
        *pf = (struct tg_pidfile){copy, fd, st.st_dev, st.st_ino};
        *out = pf;
        return TG_OK;
    }
    snprintf(err, errlen, "pid file %s: replaced again and again while being locked", path);
    return TG_EIO;
}

void tg_pidfile_release(struct tg_pidfile *pf)
{
    if (pf == NULL)
        return;
    /* Only our own file: an operator may have removed it and started
     * another instance, whose file must stay. */
    struct stat ps;
    if (stat(pf->path, &ps) == 0 && ps.st_dev == pf->dev && ps.st_ino == pf->ino)
        (void)unlink(pf->path);
    close(pf->fd); /* drops the lock */
    free(pf->path);
    free(pf);
}

int tg_pidfile_holder(const char *path, pid_t *pid, char *err, size_t errlen)
{
    *pid = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "pid file %s: %s%s", path, strerror(e),
                 e == ENOENT ? " (is tlsgate running? see --pid-file)" : "");
        return e == ENOENT ? TG_EUNAVAIL : TG_EIO;
    }
    /* Asking does not take the lock, so a tlsgate starting at this moment
     * is not refused because of us. */
    struct flock lk = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_OFD_GETLK, &lk) != 0) {
        int e = errno;
        close(fd);
        snprintf(err, errlen, "pid file %s: cannot query its lock: %s", path, strerror(e));
        return TG_EIO;
    }
    if (lk.l_type == F_UNLCK) {
        close(fd);
        snprintf(err, errlen, "pid file %s is stale: no tlsgate holds it", path);
        return TG_EUNAVAIL;
    }
    *pid = tg_pidfile_read_pid(fd);
    close(fd);
    if (*pid <= 0) {
        snprintf(err, errlen, "pid file %s: held, but it names no valid pid", path);
        return TG_EIO;
    }
    return TG_OK;
}
