#include "core/tg_sysinfo.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
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

/*
 * Read up to cap-1 bytes of a (small, pseudo) file into buf, NUL-terminated.
 * Returns the length or -1. /proc and /sys files report size 0 in stat, so
 * read until EOF rather than trusting st_size.
 */
static ssize_t tg_read_small(const char *path, char *buf, size_t cap)
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
            tg_read_small(path, buf, sizeof(buf)) < 0)
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
            tg_read_small(path, buf, sizeof(buf)) < 0 || sscanf(buf, "%lld", &quota) != 1)
            return 0;
        if (snprintf(path, sizeof(path), "%s/cpu.cfs_period_us", dir) >= (int)sizeof(path) ||
            tg_read_small(path, buf, sizeof(buf)) < 0 || sscanf(buf, "%lld", &period) != 1)
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
    if (tg_read_small(cgroup_file, text, sizeof(text)) < 0)
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

/* ---- QAT ---- */

struct tg_qat_id {
    uint16_t device;
    bool vf;
    const char *family;
};

static const struct tg_qat_id tg_qat_ids[] = {
    {0x4940, false, "4xxx"},    {0x4941, true, "4xxx"},   {0x4942, false, "401xx"},
    {0x4943, true, "401xx"},    {0x4944, false, "402xx"}, {0x4945, true, "402xx"},
    {0x4946, false, "420xx"},   {0x4947, true, "420xx"},  {0x0435, false, "DH895xCC"},
    {0x0443, true, "DH895xCC"}, {0x37c8, false, "C62x"},  {0x37c9, true, "C62x"},
    {0x19e2, false, "C3xxx"},   {0x19e3, true, "C3xxx"},  {0x6f54, false, "D15xx"},
    {0x6f55, true, "D15xx"},    {0x18ee, false, "200xx"}, {0x18ef, true, "200xx"},
};

bool tg_sysinfo_qat_id(uint16_t vendor, uint16_t device, bool *is_vf, const char **family)
{
    if (vendor != 0x8086)
        return false;
    for (size_t i = 0; i < TG_ARRAY_LEN(tg_qat_ids); i++) {
        if (tg_qat_ids[i].device == device) {
            if (is_vf)
                *is_vf = tg_qat_ids[i].vf;
            if (family)
                *family = tg_qat_ids[i].family;
            return true;
        }
    }
    return false;
}

/* Parse a sysfs hex id ("0x8086\n"); false unless it is a 16-bit number. */
static bool tg_parse_hex16(const char *s, uint16_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(s, &end, 16);
    if (errno != 0 || end == s || v > 0xffff)
        return false;
    while (*end == '\n' || *end == ' ' || *end == '\t' || *end == '\r')
        end++;
    if (*end != '\0')
        return false;
    *out = (uint16_t)v;
    return true;
}

/* Basename of a symlink's target into out; false ("" in out) when path is
 * not a link or the name does not fit (no real driver or group name is that
 * long). */
static bool tg_link_base(const char *path, char *out, size_t outlen)
{
    char target[PATH_MAX];
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    if (n <= 0) {
        out[0] = '\0';
        return false;
    }
    target[n] = '\0';
    while (n > 1 && target[n - 1] == '/')
        target[--n] = '\0';
    const char *slash = strrchr(target, '/');
    int w = snprintf(out, outlen, "%s", slash ? slash + 1 : target);
    if (w < 0 || (size_t)w >= outlen) {
        out[0] = '\0';
        return false;
    }
    return true;
}

static int tg_parse_int(const char *s, int *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || v < INT_MIN || v > INT_MAX)
        return TG_EPROTO;
    while (*end == '\n' || *end == ' ')
        end++;
    if (*end != '\0')
        return TG_EPROTO;
    *out = (int)v;
    return TG_OK;
}

static int tg_qat_cmp(const void *a, const void *b)
{
    return strcmp(((const struct tg_qat_dev *)a)->bdf, ((const struct tg_qat_dev *)b)->bdf);
}

/* "<dir>/<dev>/<leaf>" into path; false when it does not fit. */
static bool tg_devfile(char *path, size_t len, const char *dir, const char *dev, const char *leaf)
{
    int n = snprintf(path, len, "%s/%s/%s", dir, dev, leaf);
    return n > 0 && (size_t)n < len;
}

/* Read a sysfs attribute of dev into val; false if absent or unreadable. */
static bool tg_devattr(const char *dir, const char *dev, const char *leaf, char *val, size_t vallen)
{
    char path[PATH_MAX];
    return tg_devfile(path, sizeof(path), dir, dev, leaf) && tg_read_small(path, val, vallen) >= 0;
}

/* Fill everything but bdf/id/family: driver, IOMMU group, VF count. */
static void tg_qat_details(const char *dir, const char *dev, struct tg_qat_dev *q)
{
    char path[PATH_MAX], val[64];
    snprintf(q->driver, sizeof(q->driver), "none");
    if (tg_devfile(path, sizeof(path), dir, dev, "driver"))
        (void)tg_link_base(path, q->driver, sizeof(q->driver));
    if (q->driver[0] == '\0')
        snprintf(q->driver, sizeof(q->driver), "none");
    q->iommu_group = -1;
    if (tg_devfile(path, sizeof(path), dir, dev, "iommu_group") &&
        tg_link_base(path, val, sizeof(val)) && tg_parse_int(val, &q->iommu_group) != TG_OK)
        q->iommu_group = -1;
    q->sriov_numvfs = -1;
    if (tg_devattr(dir, dev, "sriov_numvfs", val, sizeof(val)) &&
        tg_parse_int(val, &q->sriov_numvfs) != TG_OK)
        q->sriov_numvfs = -1;
}

int tg_sysinfo_qat_scan(const char *sysfs_root, struct tg_qat_dev *devs, size_t cap,
                        size_t *n_stored, size_t *n_found)
{
    char dirpath[PATH_MAX], val[64];
    size_t stored = 0, found = 0;
    if (sysfs_root == NULL)
        sysfs_root = "/sys";
    *n_stored = 0;
    if (n_found)
        *n_found = 0;
    int n = snprintf(dirpath, sizeof(dirpath), "%s/bus/pci/devices", sysfs_root);
    if (n < 0 || (size_t)n >= sizeof(dirpath))
        return TG_EINVAL;
    DIR *d = opendir(dirpath);
    if (d == NULL)
        return TG_EUNAVAIL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t nlen = strlen(e->d_name);
        if (e->d_name[0] == '.' || nlen >= sizeof(devs[0].bdf))
            continue; /* not a BDF */
        uint16_t vendor, device;
        if (!tg_devattr(dirpath, e->d_name, "vendor", val, sizeof(val)) ||
            !tg_parse_hex16(val, &vendor))
            continue;
        if (!tg_devattr(dirpath, e->d_name, "device", val, sizeof(val)) ||
            !tg_parse_hex16(val, &device))
            continue;
        bool vf = false;
        const char *family = NULL;
        if (!tg_sysinfo_qat_id(vendor, device, &vf, &family))
            continue;
        found++;
        if (stored >= cap)
            continue; /* keep counting */
        struct tg_qat_dev *q = &devs[stored++];
        memset(q, 0, sizeof(*q));
        memcpy(q->bdf, e->d_name, nlen + 1);
        q->device_id = device;
        q->is_vf = vf;
        q->family = family;
        tg_qat_details(dirpath, e->d_name, q);
    }
    closedir(d);
    /* readdir order is arbitrary; sort so reports and tests are stable. */
    if (stored > 1)
        qsort(devs, stored, sizeof(devs[0]), tg_qat_cmp);
    *n_stored = stored;
    if (n_found)
        *n_found = found;
    return TG_OK;
}

int tg_sysinfo_iommu_groups(const char *sysfs_root)
{
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof(path), "%s/kernel/iommu_groups",
                         sysfs_root ? sysfs_root : "/sys") >= sizeof(path))
        return -1;
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && n < INT_MAX)
            n++;
    closedir(d);
    return n;
}

/* ---- memlock ---- */

int tg_sysinfo_memlock(struct tg_memlock *out)
{
    struct rlimit rl;
    memset(out, 0, sizeof(*out));
    if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0)
        return TG_EIO;
    out->soft_unlimited = rl.rlim_cur == RLIM_INFINITY;
    out->hard_unlimited = rl.rlim_max == RLIM_INFINITY;
    out->soft = out->soft_unlimited ? 0 : (uint64_t)rl.rlim_cur;
    out->hard = out->hard_unlimited ? 0 : (uint64_t)rl.rlim_max;
    return TG_OK;
}

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

enum tg_memlock_verdict tg_sysinfo_memlock_verdict(const struct tg_memlock *m, char *advice,
                                                   size_t advicelen)
{
    char rec[32];
    tg_sysinfo_fmt_bytes(false, TG_QAT_MEMLOCK_RECOMMENDED, rec, sizeof(rec));
    bool soft_ok = m->soft_unlimited || m->soft >= TG_QAT_MEMLOCK_RECOMMENDED;
    bool hard_ok = m->hard_unlimited || m->hard >= TG_QAT_MEMLOCK_RECOMMENDED;
    enum tg_memlock_verdict v = soft_ok   ? TG_MEMLOCK_OK
                                : hard_ok ? TG_MEMLOCK_RAISABLE
                                          : TG_MEMLOCK_LOW;
    if (advice == NULL || advicelen == 0)
        return v;
    switch (v) {
    case TG_MEMLOCK_OK:
        snprintf(advice, advicelen, "ok for qat (needs >= %s or unlimited)", rec);
        break;
    case TG_MEMLOCK_RAISABLE:
        snprintf(advice, advicelen,
                 "too low for qat: qatlib pins its DMA memory against RLIMIT_MEMLOCK; the hard "
                 "limit allows raising it: `ulimit -l unlimited` (or >= %s) before starting",
                 rec);
        break;
    case TG_MEMLOCK_LOW:
        snprintf(advice, advicelen,
                 "too low for qat: qatlib pins its DMA memory against RLIMIT_MEMLOCK; set "
                 ">= %s or unlimited in the service manager (systemd LimitMEMLOCK=134217728 or "
                 "infinity, the container runtime's memlock ulimit, /etc/security/limits.conf)",
                 rec);
        break;
    }
    return v;
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

bool tg_sysinfo_openssl_mismatch(void)
{
    return OPENSSL_version_major() != OPENSSL_VERSION_MAJOR ||
           OPENSSL_version_minor() != OPENSSL_VERSION_MINOR;
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
    ssize_t n = tg_read_small(path, buf, sizeof(buf));
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
