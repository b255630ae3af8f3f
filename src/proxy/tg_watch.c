/*
 * File watcher for reloads (tg_watch.h).
 */
#include "proxy/tg_watch.h"

#include <errno.h>
#include <ev.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/tg_log.h"

#define TG_WATCH_MASK                                                                              \
    (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_DELETE_SELF |       \
     IN_MOVE_SELF)

/* One watched directory and the names in it that matter. */
struct tg_watch_dir {
    int wd; /* -1 once the kernel dropped it (the directory went away) */
    char *dir;
    char **names;
    size_t n_names;
};

struct tg_watch {
    struct ev_loop *loop;
    int fd;
    ev_io io;
    ev_timer debounce;
    double debounce_s;
    tg_watch_fn fn;
    void *arg;
    struct tg_watch_dir *dirs;
    size_t n_dirs;
};

static void tg_watch_dirs_free(struct tg_watch_dir *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(d[i].dir);
        for (size_t k = 0; k < d[i].n_names; k++)
            free(d[i].names[k]);
        free(d[i].names);
    }
    free(d);
}

/* ---- building a set ---- */

struct tg_watch_set {
    struct tg_watch_dir *d;
    size_t n, cap;
};

static struct tg_watch_dir *tg_watch_set_dir(struct tg_watch_set *s, const char *dir)
{
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->d[i].dir, dir) == 0)
            return &s->d[i];
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 8;
        struct tg_watch_dir *nd = realloc(s->d, cap * sizeof(*nd));
        if (nd == NULL)
            return NULL;
        s->d = nd;
        s->cap = cap;
    }
    struct tg_watch_dir *d = &s->d[s->n];
    memset(d, 0, sizeof(*d));
    d->wd = -1;
    d->dir = strdup(dir);
    if (d->dir == NULL)
        return NULL;
    s->n++;
    return d;
}

/* Add (dir, name) to the set; false when out of memory. */
static bool tg_watch_set_add(struct tg_watch_set *s, const char *dir, const char *name)
{
    struct tg_watch_dir *d = tg_watch_set_dir(s, dir);
    if (d == NULL)
        return false;
    for (size_t i = 0; i < d->n_names; i++) {
        if (strcmp(d->names[i], name) == 0)
            return true;
    }
    char **nn = realloc(d->names, (d->n_names + 1) * sizeof(*nn));
    if (nn == NULL)
        return false;
    d->names = nn;
    if ((d->names[d->n_names] = strdup(name)) == NULL)
        return false;
    d->n_names++;
    return true;
}

/* Split path into its directory ("." when none) and last component. */
static void tg_watch_split(const char *path, char *dir, size_t dlen, const char **base)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        snprintf(dir, dlen, ".");
        *base = path;
    } else if (slash == path) {
        snprintf(dir, dlen, "/");
        *base = slash + 1;
    } else {
        snprintf(dir, dlen, "%.*s", (int)(slash - path), path);
        *base = slash + 1;
    }
}

static bool tg_watch_set_path(struct tg_watch_set *s, const char *path)
{
    char dir[PATH_MAX];
    const char *base;
    tg_watch_split(path, dir, sizeof(dir), &base);
    if (base[0] == '\0')
        return true; /* a directory: not a file we read */
    if (!tg_watch_set_add(s, dir, base))
        return false;
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        if (n > 0) {
            target[n] = '\0';
            /* `tls.crt -> ..data/tls.crt`: the link that is swapped is
             * `..data`, in the same directory. */
            char *slash = strchr(target, '/');
            if (target[0] != '/' && slash != NULL) {
                *slash = '\0';
                if (strcmp(target, ".") != 0 && strcmp(target, "..") != 0 &&
                    !tg_watch_set_add(s, dir, target))
                    return false;
            }
        }
    }
    char real[PATH_MAX];
    if (realpath(path, real) != NULL && strcmp(real, path) != 0) {
        char rdir[PATH_MAX];
        const char *rbase;
        tg_watch_split(real, rdir, sizeof(rdir), &rbase);
        if (rbase[0] != '\0' && !tg_watch_set_add(s, rdir, rbase))
            return false;
    }
    return true;
}

/* ---- events ---- */

static void tg_watch_changed(struct tg_watch *w, const char *what, const char *dir)
{
    TG_DEBUG("watch: %s%s%s changed", dir ? dir : "", dir ? "/" : "", what);
    ev_timer_stop(w->loop, &w->debounce);
    ev_timer_set(&w->debounce, w->debounce_s, 0.0);
    ev_timer_start(w->loop, &w->debounce);
}

static struct tg_watch_dir *tg_watch_find_wd(struct tg_watch *w, int wd)
{
    for (size_t i = 0; i < w->n_dirs; i++) {
        if (w->dirs[i].wd == wd)
            return &w->dirs[i];
    }
    return NULL;
}

static void tg_watch_event(struct tg_watch *w, const struct inotify_event *ev)
{
    if (ev->mask & IN_Q_OVERFLOW) {
        tg_watch_changed(w, "(event queue overflow)", NULL);
        return;
    }
    struct tg_watch_dir *d = tg_watch_find_wd(w, ev->wd);
    if (d == NULL)
        return;
    if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
        tg_watch_changed(w, "(the directory itself)", d->dir);
        return;
    }
    if (ev->mask & IN_IGNORED) {
        d->wd = -1; /* the kernel dropped it: nothing to remove later */
        return;
    }
    if (ev->len == 0)
        return;
    for (size_t i = 0; i < d->n_names; i++) {
        if (strcmp(d->names[i], ev->name) == 0) {
            tg_watch_changed(w, ev->name, d->dir);
            return;
        }
    }
}

static void tg_watch_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_watch *w = io->data;
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(w->fd, buf, sizeof(buf));
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            break;
        }
        for (ssize_t off = 0; off < n;) {
            const struct inotify_event *ev = (const struct inotify_event *)(buf + off);
            tg_watch_event(w, ev);
            off += (ssize_t)(sizeof(*ev) + ev->len);
        }
    }
}

static void tg_watch_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_watch *w = t->data;
    w->fn(w->arg);
}

/* ---- public ---- */

int tg_watch_new(struct ev_loop *loop, tg_watch_fn fn, void *arg, struct tg_watch **out)
{
    *out = NULL;
    struct tg_watch *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return TG_ENOMEM;
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd < 0) {
        TG_WARN("reload.watch: inotify: %s; certificate files are not watched", strerror(errno));
        free(w);
        return TG_EIO;
    }
    w->loop = loop;
    w->fn = fn;
    w->arg = arg;
    ev_io_init(&w->io, tg_watch_io_cb, w->fd, EV_READ);
    w->io.data = w;
    ev_io_start(loop, &w->io);
    ev_timer_init(&w->debounce, tg_watch_timer_cb, 0.0, 0.0);
    w->debounce.data = w;
    *out = w;
    return TG_OK;
}

void tg_watch_set(struct tg_watch *w, const char *const *paths, size_t n, uint64_t debounce_ns)
{
    w->debounce_s = (double)debounce_ns / 1e9;
    struct tg_watch_set s = {0};
    for (size_t i = 0; i < n; i++) {
        if (!tg_watch_set_path(&s, paths[i])) {
            TG_WARN("reload.watch: out of memory: %s is not watched", paths[i]);
            break;
        }
    }
    /* Watch the new directories first, so that nothing is missed between
     * the two sets; a directory both sets watch keeps its descriptor. */
    for (size_t i = 0; i < s.n; i++) {
        s.d[i].wd = inotify_add_watch(w->fd, s.d[i].dir, TG_WATCH_MASK | IN_ONLYDIR);
        if (s.d[i].wd < 0)
            TG_WARN("reload.watch: cannot watch %s: %s", s.d[i].dir, strerror(errno));
    }
    for (size_t i = 0; i < w->n_dirs; i++) {
        int wd = w->dirs[i].wd;
        bool kept = wd < 0;
        for (size_t j = 0; !kept && j < s.n; j++)
            kept = s.d[j].wd == wd;
        if (!kept)
            (void)inotify_rm_watch(w->fd, wd);
    }
    /* Two spellings of one directory share a descriptor: merge their names
     * into the first, so an event finds them all. */
    for (size_t i = 0; i < s.n; i++) {
        for (size_t j = i + 1; s.d[i].wd >= 0 && j < s.n; j++) {
            if (s.d[j].wd != s.d[i].wd)
                continue;
            for (size_t k = 0; k < s.d[j].n_names; k++)
                (void)tg_watch_set_add(&s, s.d[i].dir, s.d[j].names[k]);
        }
    }
    tg_watch_dirs_free(w->dirs, w->n_dirs);
    w->dirs = s.d;
    w->n_dirs = s.n;
}

size_t tg_watch_dirs(const struct tg_watch *w)
{
    size_t n = 0;
    for (size_t i = 0; i < w->n_dirs; i++) {
        bool first = w->dirs[i].wd >= 0;
        for (size_t j = 0; first && j < i; j++)
            first = w->dirs[j].wd != w->dirs[i].wd;
        n += first;
    }
    return n;
}

int tg_watch_pending(const struct tg_watch *w)
{
    return ev_is_active(&w->debounce);
}

void tg_watch_free(struct tg_watch *w)
{
    if (w == NULL)
        return;
    ev_io_stop(w->loop, &w->io);
    ev_timer_stop(w->loop, &w->debounce);
    close(w->fd);
    tg_watch_dirs_free(w->dirs, w->n_dirs);
    free(w);
}
