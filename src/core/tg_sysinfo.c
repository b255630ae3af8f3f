#include "core/tg_sysinfo.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define TG_HAVE_CPUID 1
#endif

/* ---- feature table ---- */

struct tg_feature_def {
    const char *name;
    unsigned leaf, reg, bit, needs;
};

static const struct tg_feature_def tg_features[TG_CPU_FEATURE_COUNT] = {
#define TG_CPU_FEATURE_DEF(id, nm, lf, sub, rg, bt, nd) [TG_CPU_##id] = {nm, lf, rg, bt, nd},
    TG_CPU_FEATURES(TG_CPU_FEATURE_DEF)
#undef TG_CPU_FEATURE_DEF
};

const char *tg_cpu_feature_name(enum tg_cpu_feature f)
{
    if ((unsigned)f >= TG_CPU_FEATURE_COUNT)
        return "?";
    return tg_features[f].name;
}

/* ---- small file helpers ---- */

/* /proc and /sys files report size 0 in stat: read until EOF rather than
 * trusting st_size. */
ssize_t tg_sysinfo_read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return (ssize_t)len;
}

/* Read a whole file of unknown size into a malloc'd buffer (bounded). */
static int tg_read_all(const char *path, size_t max, char **out, size_t *outlen)
{
    int rc = TG_EIO;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        goto out;
    for (;;) {
        if (len == cap) {
            if (cap >= max)
                break; /* truncate: callers only need the beginning */
            size_t ncap = cap ? cap * 2 : 16384;
            if (ncap > max)
                ncap = max;
            char *p = realloc(buf, ncap);
            if (p == NULL) {
                rc = TG_ENOMEM;
                goto out;
            }
            buf = p;
            cap = ncap;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    *out = buf;
    *outlen = len;
    buf = NULL;
    rc = TG_OK;
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    return rc;
}

/* ---- /proc/cpuinfo ---- */

static bool tg_is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* Match every whole token of a flags value against the table. */
static void tg_cpuinfo_flags(const char *v, size_t vlen, struct tg_cpuinfo *out)
{
    size_t i = 0;
    while (i < vlen) {
        while (i < vlen && tg_is_blank(v[i]))
            i++;
        size_t start = i;
        while (i < vlen && !tg_is_blank(v[i]))
            i++;
        size_t tlen = i - start;
        if (tlen == 0)
            continue;
        for (size_t f = 0; f < TG_CPU_FEATURE_COUNT; f++) {
            const char *name = tg_features[f].name;
            if (strlen(name) == tlen && memcmp(name, v + start, tlen) == 0)
                out->flag[f] = true;
        }
    }
}

int tg_sysinfo_parse_cpuinfo(const char *text, size_t len, struct tg_cpuinfo *out)
{
    memset(out, 0, sizeof(*out));
    bool in_block = false;
    size_t pos = 0;
    while (pos < len) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t llen = nl ? (size_t)(nl - line) : len - pos;
        pos += llen + (nl ? 1 : 0);

        /* A blank line ends a processor block; only the first one counts. */
        size_t k = 0;
        while (k < llen && tg_is_blank(line[k]))
            k++;
        if (k == llen) {
            if (in_block)
                break;
            continue;
        }
        in_block = true;

        const char *colon = memchr(line, ':', llen);
        if (colon == NULL)
            continue;
        size_t klen = (size_t)(colon - line);
        while (klen > 0 && tg_is_blank(line[klen - 1]))
            klen--;
        const char *v = colon + 1;
        size_t vlen = llen - (size_t)(v - line);
        while (vlen > 0 && tg_is_blank(*v)) {
            v++;
            vlen--;
        }
        while (vlen > 0 && tg_is_blank(v[vlen - 1]))
            vlen--;

        if (klen == 10 && memcmp(line, "model name", 10) == 0 && out->model[0] == '\0') {
            size_t n = vlen < sizeof(out->model) - 1 ? vlen : sizeof(out->model) - 1;
            memcpy(out->model, v, n);
            out->model[n] = '\0';
            /* The model string comes from the CPU; keep it printable. */
            for (size_t j = 0; j < n; j++)
                if ((unsigned char)out->model[j] < 0x20 || (unsigned char)out->model[j] > 0x7e)
                    out->model[j] = '?';
        } else if (klen == 5 && memcmp(line, "flags", 5) == 0 && !out->has_flags) {
            out->has_flags = true;
            tg_cpuinfo_flags(v, vlen, out);
        }
    }
    return out->has_flags ? TG_OK : TG_EPROTO;
}

int tg_sysinfo_read_cpuinfo(const char *path, struct tg_cpuinfo *out)
{
    char *text = NULL;
    size_t len = 0;
    memset(out, 0, sizeof(*out));
    /* Only the first processor block (a few KiB) is parsed. Reading the whole
     * file costs milliseconds on large machines (the kernel samples every
     * CPU's frequency), so stop after 64 KiB. */
    int rc = tg_read_all(path ? path : "/proc/cpuinfo", 64u * 1024, &text, &len);
    if (rc != TG_OK)
        return rc;
    rc = tg_sysinfo_parse_cpuinfo(text, len, out);
    free(text);
    return rc;
}

long tg_sysinfo_cpus_online(void)
{
    return sysconf(_SC_NPROCESSORS_ONLN);
}

long tg_sysinfo_cpus_allowed(void)
{
    /* cpu_set_t holds 1024 CPUs; larger machines need a bigger mask
     * (sched_getaffinity fails with EINVAL when the mask is too small). */
    for (int ncpu = 1024; ncpu <= (1 << 20); ncpu *= 2) {
        cpu_set_t *set = CPU_ALLOC((size_t)ncpu);
        if (set == NULL)
            return -1;
        size_t sz = CPU_ALLOC_SIZE((size_t)ncpu);
        CPU_ZERO_S(sz, set);
        if (sched_getaffinity(0, sz, set) == 0) {
            long n = CPU_COUNT_S(sz, set);
            CPU_FREE(set);
            return n;
        }
        int err = errno;
        CPU_FREE(set);
        if (err != EINVAL)
            return -1;
    }
    return -1;
}

/* ---- cgroup CPU quota ---- */

/* The quota in CPUs (rounded down, at least 1) of one cgroup directory, or 0. */
static long tg_cgroup_dir_cpus(const char *dir, bool v2)
{
    char path[PATH_MAX], buf[128];
    long long quota = -1, period = 0;
    if (v2) {
        if (snprintf(path, sizeof(path), "%s/cpu.max", dir) >= (int)sizeof(path) ||
            tg_sysinfo_read_small(path, buf, sizeof(buf)) < 0)
            return 0;
        char q[32];
        if (sscanf(buf, "%31s %lld", q, &period) != 2 || strcmp(q, "max") == 0)
            return 0;
        char *end;
        errno = 0;
        quota = strtoll(q, &end, 10);
        if (errno != 0 || *end != '\0')
            return 0;
    } else {
        if (snprintf(path, sizeof(path), "%s/cpu.cfs_quota_us", dir) >= (int)sizeof(path) ||
            tg_sysinfo_read_small(path, buf, sizeof(buf)) < 0 || sscanf(buf, "%lld", &quota) != 1)
            return 0;
        if (snprintf(path, sizeof(path), "%s/cpu.cfs_period_us", dir) >= (int)sizeof(path) ||
            tg_sysinfo_read_small(path, buf, sizeof(buf)) < 0 || sscanf(buf, "%lld", &period) != 1)
            return 0;
    }
    if (quota <= 0 || period <= 0)
        return 0;
    long long n = quota / period;
    return n < 1 ? 1 : (n > LONG_MAX ? LONG_MAX : (long)n);
}

/* The smallest quota from the cgroup path up to the hierarchy's root. */
static long tg_cgroup_path_cpus(const char *mount, const char *cgpath, bool v2)
{
    char dir[PATH_MAX];
    long best = 0;
    if (snprintf(dir, sizeof(dir), "%s%s", mount, cgpath) >= (int)sizeof(dir))
        return 0;
    size_t floor_len = strlen(mount);
    for (;;) {
        long n = tg_cgroup_dir_cpus(dir, v2);
        if (n > 0 && (best == 0 || n < best))
            best = n;
        char *slash = strrchr(dir, '/');
        if (slash == NULL || (size_t)(slash - dir) < floor_len)
            break;
        *slash = '\0';
    }
    return best;
}

long tg_sysinfo_cpu_quota_cpus_at(const char *cgroup_file, const char *root)
{
    char text[4096], mount[PATH_MAX];
    long best = 0;
    if (tg_sysinfo_read_small(cgroup_file, text, sizeof(text)) < 0)
        return 0;
    /* Lines "ID:CONTROLLERS:PATH": "0::PATH" is the v2 hierarchy; a v1
     * hierarchy with the cpu controller is mounted as cpu, cpu,cpuacct or
     * cpuacct,cpu under root. */
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (c2 == NULL || c2[1] != '/')
            continue;
        *c1 = *c2 = '\0';
        const char *ctrl = c1 + 1, *cgpath = c2 + 1;
        if (strcmp(cgpath, "/") == 0)
            cgpath = "";
        long n = 0;
        if (strcmp(line, "0") == 0 && ctrl[0] == '\0') {
            n = tg_cgroup_path_cpus(root, cgpath, true);
        } else {
            bool has_cpu = false;
            char list[256];
            snprintf(list, sizeof(list), "%s", ctrl);
            for (char *s2 = NULL, *t = strtok_r(list, ",", &s2); t; t = strtok_r(NULL, ",", &s2))
                has_cpu = has_cpu || strcmp(t, "cpu") == 0;
            if (!has_cpu)
                continue;
            static const char *const names[] = {"cpu", "cpu,cpuacct", "cpuacct,cpu"};
            for (size_t i = 0; i < TG_ARRAY_LEN(names) && n == 0; i++) {
                if (snprintf(mount, sizeof(mount), "%s/%s", root, names[i]) < (int)sizeof(mount))
                    n = tg_cgroup_path_cpus(mount, cgpath, false);
            }
        }
        if (n > 0 && (best == 0 || n < best))
            best = n;
    }
    return best;
}

long tg_sysinfo_cpu_quota_cpus(void)
{
    return tg_sysinfo_cpu_quota_cpus_at("/proc/self/cgroup", "/sys/fs/cgroup");
}

long tg_sysinfo_cpus_auto(void)
{
    long n = tg_sysinfo_cpus_allowed();
    if (n < 1)
        n = tg_sysinfo_cpus_online();
    if (n < 1)
        n = 1;
    long q = tg_sysinfo_cpu_quota_cpus();
    return (q > 0 && q < n) ? q : n;
}

/* ---- CPUID + XGETBV ---- */

#define TG_XCR0_AVX_MASK    0x6ULL  /* XMM | YMM */
#define TG_XCR0_AVX512_MASK 0xe6ULL /* XMM | YMM | opmask | ZMM_Hi256 | Hi16_ZMM */

void tg_sysinfo_cpuid_decode(const struct tg_cpuid_regs *regs, struct tg_cpuid_info *out)
{
    memset(out, 0, sizeof(*out));
    out->valid = true;
    out->regs = *regs;
    out->os_xsave = (regs->l1_ecx >> 27) & 1u;
    uint64_t xcr0 = out->os_xsave ? regs->xcr0 : 0;
    out->os_avx = (xcr0 & TG_XCR0_AVX_MASK) == TG_XCR0_AVX_MASK;
    out->os_avx512 = (xcr0 & TG_XCR0_AVX512_MASK) == TG_XCR0_AVX512_MASK;
    for (size_t f = 0; f < TG_CPU_FEATURE_COUNT; f++) {
        const struct tg_feature_def *d = &tg_features[f];
        uint32_t word = 0;
        if (d->leaf == 1)
            word = regs->l1_ecx; /* only ECX is used from leaf 1 */
        else if (d->leaf == 7 && regs->max_leaf >= 7)
            word = d->reg == 0 ? regs->l7_ebx : regs->l7_ecx;
        out->cpu[f] = (word >> d->bit) & 1u;
        bool os = d->needs == TG_XSTATE_NONE  ? true
                  : d->needs == TG_XSTATE_AVX ? out->os_avx
                                              : out->os_avx512;
        out->usable[f] = out->cpu[f] && os;
    }
}

#ifdef TG_HAVE_CPUID
static uint64_t tg_xgetbv0(void)
{
    uint32_t lo, hi;
    /* Only called when OSXSAVE is set; otherwise XGETBV raises #UD. */
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

static struct tg_cpuid_info tg_cpuid_cache;
static pthread_once_t tg_cpuid_once = PTHREAD_ONCE_INIT;

static void tg_cpuid_probe(void)
{
#ifdef TG_HAVE_CPUID
    struct tg_cpuid_regs r;
    memset(&r, 0, sizeof(r));
    unsigned a, b, c, d;
    r.max_leaf = __get_cpuid_max(0, NULL);
    if (r.max_leaf >= 1 && __get_cpuid(1, &a, &b, &c, &d))
        r.l1_ecx = c;
    if (r.max_leaf >= 7 && __get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        r.l7_ebx = b;
        r.l7_ecx = c;
    }
    if ((r.l1_ecx >> 27) & 1u)
        r.xcr0 = tg_xgetbv0();
    tg_sysinfo_cpuid_decode(&r, &tg_cpuid_cache);
#else
    memset(&tg_cpuid_cache, 0, sizeof(tg_cpuid_cache));
#endif
}

void tg_sysinfo_cpuid(struct tg_cpuid_info *out)
{
    pthread_once(&tg_cpuid_once, tg_cpuid_probe);
    *out = tg_cpuid_cache;
}

bool tg_sysinfo_fake_no_ifma(void)
{
    const char *e = getenv("TG_FAKE_NO_IFMA");
    return e != NULL && e[0] != '\0' && strcmp(e, "0") != 0;
}

bool tg_sysinfo_cpu_has_avx512_ifma(void)
{
    if (tg_sysinfo_fake_no_ifma())
        return false;
    pthread_once(&tg_cpuid_once, tg_cpuid_probe);
    return tg_cpuid_cache.valid && tg_cpuid_cache.usable[TG_CPU_AVX512F] &&
           tg_cpuid_cache.usable[TG_CPU_AVX512IFMA];
}

/* OpenSSL's own number syntax for OPENSSL_ia32cap: decimal, 0-prefixed octal
 * or 0x hex; stops at the first character that is not a digit of the base. */
static uint64_t tg_ossl_strtou64(const char *s)
{
    uint64_t v = 0;
    unsigned base = 10;
    if (*s == '0') {
        base = 8;
        s++;
        if (*s == 'x' || *s == 'X') {
            base = 16;
            s++;
        }
    }
    for (;; s++) {
        unsigned digit;
        if (*s >= '0' && *s <= '9')
            digit = (unsigned)(*s - '0');
        else if (*s >= 'a' && *s <= 'z')
            digit = (unsigned)(*s - 'a') + 10;
        else if (*s >= 'A' && *s <= 'Z')
            digit = (unsigned)(*s - 'A') + 10;
        else
            break;
        if (digit >= base)
            break;
        v = v * base + digit; /* wraps like OpenSSL's */
    }
    return v;
}

uint64_t tg_sysinfo_ossl_leaf7(const char *env, uint64_t cpu_leaf7)
{
    if (env == NULL)
        return cpu_leaf7;
    /* OpenSSL runs its CPUID (filling the leaf-7 words) only for "~..." and ":..." */
    uint64_t base = (env[0] == '~' || env[0] == ':') ? cpu_leaf7 : 0;
    const char *colon = strchr(env, ':');
    if (colon == NULL)
        return 0;
    colon++;
    if (colon[0] == '~') {
        uint64_t mask = tg_ossl_strtou64(colon + 1);
        /* OpenSSL applies the two 32-bit halves separately; same result. */
        return base & ~mask;
    }
    return tg_ossl_strtou64(colon);
}

bool tg_sysinfo_ossl_rsaz_avx512_eligible(uint64_t leaf7)
{
    /* ossl_rsaz_avx512ifma_eligible(): AVX512F, DQ, IFMA, VL in leaf-7 EBX. */
    const uint32_t need = (1u << 16) | (1u << 17) | (1u << 21) | (1u << 31);
    return ((uint32_t)leaf7 & need) == need;
}

/* ---- roots ---- */

static const char *tg_sysfs_root_set, *tg_dev_root_set;

void tg_sysinfo_set_roots(const char *sysfs_root, const char *dev_root)
{
    tg_sysfs_root_set = sysfs_root;
    tg_dev_root_set = dev_root;
}

const char *tg_sysinfo_sysfs_root(void)
{
    return tg_sysfs_root_set != NULL ? tg_sysfs_root_set : "/sys";
}

const char *tg_sysinfo_dev_root(void)
{
    return tg_dev_root_set != NULL ? tg_dev_root_set : "/dev";
}

/* ---- formatting ---- */

const char *tg_sysinfo_fmt_bytes(bool unlimited, uint64_t bytes, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (unlimited) {
        snprintf(buf, len, "unlimited");
        return buf;
    }
    size_t u = 0;
    uint64_t whole = bytes;
    while (whole >= 1024 && u + 1 < TG_ARRAY_LEN(units)) {
        whole /= 1024;
        u++;
    }
    uint64_t unit = 1;
    for (size_t i = 0; i < u; i++)
        unit *= 1024;
    if (bytes % unit == 0) {
        snprintf(buf, len, "%llu %s", (unsigned long long)whole, units[u]);
    } else {
        /* One decimal, computed in integers (no float rounding surprises). */
        uint64_t tenths = (bytes % unit) * 10 / unit;
        snprintf(buf, len, "%llu.%llu %s", (unsigned long long)whole, (unsigned long long)tenths,
                 units[u]);
    }
    return buf;
}

/* ---- OpenSSL ---- */

const char *tg_sysinfo_openssl_runtime(void)
{
    return OpenSSL_version(OPENSSL_VERSION);
}

const char *tg_sysinfo_openssl_headers(void)
{
    return OPENSSL_VERSION_TEXT;
}

bool tg_sysinfo_openssl_incompatible(unsigned long run_major, unsigned long run_minor,
                                     unsigned long hdr_major, unsigned long hdr_minor)
{
    return run_major != hdr_major || run_minor < hdr_minor;
}

bool tg_sysinfo_openssl_mismatch(void)
{
    return tg_sysinfo_openssl_incompatible(OPENSSL_version_major(), OPENSSL_version_minor(),
                                           OPENSSL_VERSION_MAJOR, OPENSSL_VERSION_MINOR);
}

/* ---- /proc/PID/stat ---- */

int tg_sysinfo_parse_stat(const char *text, size_t len, uint64_t *utime_ticks,
                          uint64_t *stime_ticks)
{
    /* Find the last ')' within len: comm is "(...)" and may contain ") ". */
    const char *rparen = NULL;
    for (size_t i = len; i > 0; i--) {
        if (text[i - 1] == ')') {
            rparen = text + i - 1;
            break;
        }
    }
    if (rparen == NULL)
        return TG_EPROTO;
    const char *p = rparen + 1;
    const char *end = text + len;
    /* After ')': field 3 (state) is token 0, utime (14) is token 11, stime token 12. */
    uint64_t vals[2] = {0, 0};
    int tok = 0;
    while (p < end && tok <= 12) {
        if (*p != ' ')
            return TG_EPROTO;
        while (p < end && *p == ' ')
            p++;
        const char *start = p;
        while (p < end && *p != ' ' && *p != '\n' && *p != '\0')
            p++;
        if (p == start)
            return TG_EPROTO;
        if (tok == 11 || tok == 12) {
            uint64_t v = 0;
            for (const char *q = start; q < p; q++) {
                if (*q < '0' || *q > '9')
                    return TG_EPROTO;
                if (v > (UINT64_MAX - 9) / 10)
                    return TG_EPROTO;
                v = v * 10 + (uint64_t)(*q - '0');
            }
            vals[tok - 11] = v;
        }
        tok++;
        if (p < end && (*p == '\n' || *p == '\0'))
            break;
    }
    if (tok <= 12)
        return TG_EPROTO;
    *utime_ticks = vals[0];
    *stime_ticks = vals[1];
    return TG_OK;
}

int tg_sysinfo_proc_cpu_ns(pid_t pid, uint64_t *utime_stime_ns)
{
    /* 52 numeric fields: the line can exceed 1 KiB; 14 and 15 come early. */
    char path[64], buf[2048];
    if (pid == 0)
        snprintf(path, sizeof(path), "/proc/self/stat");
    else
        snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    ssize_t n = tg_sysinfo_read_small(path, buf, sizeof(buf));
    if (n <= 0)
        return TG_EIO;
    uint64_t ut, st;
    int rc = tg_sysinfo_parse_stat(buf, (size_t)n, &ut, &st);
    if (rc != TG_OK)
        return rc;
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0)
        hz = 100;
    uint64_t ticks = ut + st;
    /* ticks * 1e9 / hz without overflow for any realistic tick count. */
    *utime_stime_ns =
        ticks / (uint64_t)hz * 1000000000ULL + ticks % (uint64_t)hz * 1000000000ULL / (uint64_t)hz;
    return TG_OK;
}
