/* Unit tests for src/core/tg_sysinfo.c: cpuinfo / CPUID decoding, the
 * OPENSSL_ia32cap model, QAT sysfs scan on a fake tree, memlock verdicts and
 * the /proc/PID/stat parser. */
#include "tg_test_util.h"

#include <errno.h>
#include <stdarg.h>
#include <limits.h>
#include <openssl/opensslv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/tg_sysinfo.h"

/* snprintf for paths: a test fixture path that does not fit is a test bug. */
static void pathf(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void pathf(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len)
        fail_msg("path too long: %s", buf);
}

/* ---- fixtures ---- */

/* Two processors; only the first block counts (the second lacks IFMA). */
static const char cpuinfo_ifma[] =
    "processor\t: 0\n"
    "vendor_id\t: GenuineIntel\n"
    "model name\t: Intel(R) Xeon(R) Platinum 8480+\n"
    "flags\t\t: fpu vme de sse sse2 aes avx avx2 bmi2 adx avx512f avx512dq avx512ifma "
    "avx512cd sha_ni avx512bw avx512vl avx512vbmi avx512_vbmi2 vaes vpclmulqdq "
    "avx512_fp16\n"
    "bogomips\t: 4000.00\n"
    "\n"
    "processor\t: 1\n"
    "model name\t: Something else\n"
    "flags\t\t: fpu sse sse2\n"
    "\n";

/* Skylake-SP: AVX-512 F/DQ/BW/VL but no IFMA, no VBMI2, no VAES, no SHA. */
static const char cpuinfo_skx[] = "processor\t: 0\r\n"
                                  "model name\t: Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz\r\n"
                                  "flags\t\t: fpu aes avx bmi2 adx avx512f avx512dq avx512cd "
                                  "avx512bw avx512vl\r\n";

static void test_cpuinfo_ifma(void **state)
{
    (void)state;
    struct tg_cpuinfo ci;
    assert_int_equal(tg_sysinfo_parse_cpuinfo(cpuinfo_ifma, strlen(cpuinfo_ifma), &ci), TG_OK);
    assert_true(ci.has_flags);
    assert_string_equal(ci.model, "Intel(R) Xeon(R) Platinum 8480+");
    for (int f = 0; f < TG_CPU_FEATURE_COUNT; f++)
        assert_true(ci.flag[f]); /* this fixture has all twelve */
    assert_string_equal(tg_cpu_feature_name(TG_CPU_AVX512VBMI2), "avx512_vbmi2");
    assert_string_equal(tg_cpu_feature_name(TG_CPU_FEATURE_COUNT), "?");
}

static void test_cpuinfo_no_ifma(void **state)
{
    (void)state;
    struct tg_cpuinfo ci;
    assert_int_equal(tg_sysinfo_parse_cpuinfo(cpuinfo_skx, strlen(cpuinfo_skx), &ci), TG_OK);
    assert_string_equal(ci.model, "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz");
    assert_true(ci.flag[TG_CPU_AVX512F]);
    assert_true(ci.flag[TG_CPU_AVX512VL]); /* last token, before \r\n */
    assert_true(ci.flag[TG_CPU_AES]);
    assert_false(ci.flag[TG_CPU_AVX512IFMA]);
    assert_false(ci.flag[TG_CPU_AVX512VBMI2]);
    assert_false(ci.flag[TG_CPU_VAES]);
    assert_false(ci.flag[TG_CPU_SHA_NI]);
}

static void test_cpuinfo_tokens(void **state)
{
    (void)state;
    struct tg_cpuinfo ci;
    /* Prefixes and near-names must not match; no trailing newline. */
    static const char t[] = "flags : avx512fp16 avx512vbmi2x avx512vbmi aesx xaes avx512ifma";
    assert_int_equal(tg_sysinfo_parse_cpuinfo(t, strlen(t), &ci), TG_OK);
    assert_false(ci.flag[TG_CPU_AVX512F]);
    assert_false(ci.flag[TG_CPU_AVX512VBMI2]);
    assert_false(ci.flag[TG_CPU_AES]);
    assert_true(ci.flag[TG_CPU_AVX512IFMA]);
    assert_string_equal(ci.model, "");

    /* The length bounds the parse: an embedded NUL and what follows len is ignored. */
    static const char nul[] = "flags : aes adx\0 avx512f\nmodel name : X\n";
    assert_int_equal(tg_sysinfo_parse_cpuinfo(nul, sizeof(nul) - 1, &ci), TG_OK);
    assert_true(ci.flag[TG_CPU_AES]);
    assert_false(ci.flag[TG_CPU_ADX]);    /* "adx\0" is not "adx" */
    assert_true(ci.flag[TG_CPU_AVX512F]); /* the NUL does not end the line */
    assert_string_equal(ci.model, "X");
    assert_int_equal(tg_sysinfo_parse_cpuinfo(nul, 11, &ci), TG_OK);
    assert_string_equal(ci.model, "");

    /* Non-printable model bytes are replaced. */
    static const char ctl[] = "model name : A\x01"
                              "B\x7f\nflags : aes\n";
    assert_int_equal(tg_sysinfo_parse_cpuinfo(ctl, strlen(ctl), &ci), TG_OK);
    assert_string_equal(ci.model, "A?B?");
}

static void test_cpuinfo_errors(void **state)
{
    (void)state;
    struct tg_cpuinfo ci;
    assert_int_equal(tg_sysinfo_parse_cpuinfo("", 0, &ci), TG_EPROTO);
    static const char arm[] = "processor : 0\nFeatures : fp asimd aes\n\n";
    assert_int_equal(tg_sysinfo_parse_cpuinfo(arm, strlen(arm), &ci), TG_EPROTO);
    /* flags only in the second block: not ours. */
    static const char second[] = "processor : 0\n\nprocessor : 1\nflags : aes\n";
    assert_int_equal(tg_sysinfo_parse_cpuinfo(second, strlen(second), &ci), TG_EPROTO);
    /* Leading blank lines do not end the (not yet started) first block. */
    static const char lead[] = "\n\n  \nflags : adx\n";
    assert_int_equal(tg_sysinfo_parse_cpuinfo(lead, strlen(lead), &ci), TG_OK);
    assert_true(ci.flag[TG_CPU_ADX]);
    /* Garbage without colons or newlines. */
    static const char junk[] = "\xff\xfe\x00\x01::::\t\t\r";
    assert_int_equal(tg_sysinfo_parse_cpuinfo(junk, sizeof(junk) - 1, &ci), TG_EPROTO);

    const char *p = tg_test_write_file("cpuinfo_ifma", cpuinfo_ifma, strlen(cpuinfo_ifma));
    assert_int_equal(tg_sysinfo_read_cpuinfo(p, &ci), TG_OK);
    assert_true(ci.flag[TG_CPU_AVX512IFMA]);
    assert_int_equal(tg_sysinfo_read_cpuinfo("/nonexistent/cpuinfo", &ci), TG_EIO);
}

/* ---- CPUID ---- */

#define L7B(bit) (1u << (bit))

static void test_cpuid_decode(void **state)
{
    (void)state;
    struct tg_cpuid_info ci;
    struct tg_cpuid_regs r = {
        .max_leaf = 0x20,
        .l1_ecx = (1u << 25) | (1u << 27), /* AES, OSXSAVE */
        .l7_ebx = L7B(16) | L7B(17) | L7B(21) | L7B(30) | L7B(31) | L7B(8) | L7B(19) | L7B(29),
        .l7_ecx = L7B(6) | L7B(9) | L7B(10),
        .xcr0 = 0xe7,
    };
    tg_sysinfo_cpuid_decode(&r, &ci);
    assert_true(ci.valid && ci.os_xsave && ci.os_avx && ci.os_avx512);
    for (int f = 0; f < TG_CPU_FEATURE_COUNT; f++) {
        assert_true(ci.cpu[f]);
        assert_true(ci.usable[f]);
    }

    /* The OS does not save ZMM/opmask state: AVX-512 implemented but unusable;
     * VAES (AVX state) stays usable. */
    r.xcr0 = 0x07;
    tg_sysinfo_cpuid_decode(&r, &ci);
    assert_true(ci.os_avx);
    assert_false(ci.os_avx512);
    assert_true(ci.cpu[TG_CPU_AVX512IFMA]);
    assert_false(ci.usable[TG_CPU_AVX512IFMA]);
    assert_false(ci.usable[TG_CPU_AVX512F]);
    assert_true(ci.usable[TG_CPU_VAES]);
    assert_true(ci.usable[TG_CPU_BMI2]);

    /* OSXSAVE clear: XCR0 must be ignored even if a value was passed. */
    r.l1_ecx = 1u << 25;
    r.xcr0 = 0xe7;
    tg_sysinfo_cpuid_decode(&r, &ci);
    assert_false(ci.os_xsave);
    assert_false(ci.os_avx512);
    assert_false(ci.usable[TG_CPU_AVX512F]);
    assert_false(ci.usable[TG_CPU_VAES]);
    assert_true(ci.usable[TG_CPU_AES]); /* legacy SSE state needs no XCR0 */
    assert_true(ci.usable[TG_CPU_SHA_NI]);

    /* max_leaf < 7: leaf-7 words are stale garbage and must be ignored. */
    r.max_leaf = 6;
    tg_sysinfo_cpuid_decode(&r, &ci);
    assert_false(ci.cpu[TG_CPU_AVX512F]);
    assert_false(ci.cpu[TG_CPU_ADX]);
    assert_true(ci.cpu[TG_CPU_AES]);

    /* IFMA alone (ICL without VBMI2 is not a thing, but decode bit by bit). */
    struct tg_cpuid_regs only = {
        .max_leaf = 7, .l1_ecx = 1u << 27, .l7_ebx = L7B(21), .xcr0 = 0xe6};
    tg_sysinfo_cpuid_decode(&only, &ci);
    assert_true(ci.usable[TG_CPU_AVX512IFMA]);
    assert_false(ci.cpu[TG_CPU_AVX512F]);
    assert_false(ci.cpu[TG_CPU_AVX512VBMI2]);
}

/* On x86 the kernel's flags and our CPUID decoding must agree for every feature. */
static void test_cpuid_matches_cpuinfo(void **state)
{
    (void)state;
    struct tg_cpuid_info id;
    struct tg_cpuinfo ci;
    tg_sysinfo_cpuid(&id);
    if (!id.valid || tg_sysinfo_read_cpuinfo(NULL, &ci) != TG_OK) {
        skip();
        return;
    }
    /* Valgrind executes CPUID itself and reports a CPU without AVX-512 (it
     * cannot run those instructions): a real mismatch, but not a bug here. */
    const char *pre = getenv("LD_PRELOAD");
    if (pre != NULL && strstr(pre, "vgpreload") != NULL) {
        skip();
        return;
    }
    for (int f = 0; f < TG_CPU_FEATURE_COUNT; f++) {
        if (ci.flag[f] != id.usable[f])
            fail_msg("%s: /proc/cpuinfo says %d, CPUID+XGETBV says %d",
                     tg_cpu_feature_name((enum tg_cpu_feature)f), ci.flag[f], id.usable[f]);
    }
    assert_true(tg_sysinfo_cpus_online() >= 1);
    assert_true(tg_sysinfo_cpus_allowed() >= 1);
    assert_true(tg_sysinfo_cpus_allowed() <= tg_sysinfo_cpus_online() ||
                tg_sysinfo_cpus_online() < 0);
}

/* ---- cgroup CPU quota (concurrency: auto) ---- */

/* Write text to <tmpdir>/<rel>, creating the directories on the way. */
static void cg_write(const char *rel, const char *text)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", tg_test_tmpdir(), rel);
    for (char *p = path + strlen(tg_test_tmpdir()) + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0755);
            *p = '/';
        }
    }
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static long cg_quota(const char *cgroup_rel, const char *root_rel)
{
    char cg[1024], root[1024];
    snprintf(cg, sizeof(cg), "%s/%s", tg_test_tmpdir(), cgroup_rel);
    snprintf(root, sizeof(root), "%s/%s", tg_test_tmpdir(), root_rel);
    return tg_sysinfo_cpu_quota_cpus_at(cg, root);
}

static void test_cpu_quota_v2(void **state)
{
    (void)state;
    /* A Kubernetes container: no limit of its own, 1.5 CPUs on the pod, 4 above. */
    cg_write("v2/cgroup", "0::/kubepods/pod1/ctr\n");
    cg_write("v2/fs/kubepods/pod1/ctr/cpu.max", "max 100000\n");
    cg_write("v2/fs/kubepods/pod1/cpu.max", "150000 100000\n");
    cg_write("v2/fs/kubepods/cpu.max", "400000 100000\n");
    assert_int_equal(cg_quota("v2/cgroup", "v2/fs"), 1); /* rounded down */
    cg_write("v2/fs/kubepods/pod1/cpu.max", "250000 100000\n");
    assert_int_equal(cg_quota("v2/cgroup", "v2/fs"), 2);
    cg_write("v2/fs/kubepods/pod1/ctr/cpu.max", "50000 100000\n");
    assert_int_equal(cg_quota("v2/cgroup", "v2/fs"), 1); /* less than a CPU: still one */
    /* No limit anywhere. */
    cg_write("v2/fs/kubepods/pod1/ctr/cpu.max", "max 100000\n");
    cg_write("v2/fs/kubepods/pod1/cpu.max", "max 100000\n");
    cg_write("v2/fs/kubepods/cpu.max", "max\n");
    assert_int_equal(cg_quota("v2/cgroup", "v2/fs"), 0);
    /* A cgroup namespace: the process sits at "/", its limit at the root. */
    cg_write("v2ns/cgroup", "0::/\n");
    cg_write("v2ns/fs/cpu.max", "300000 100000\n");
    assert_int_equal(cg_quota("v2ns/cgroup", "v2ns/fs"), 3);
}

static void test_cpu_quota_v1(void **state)
{
    (void)state;
    /* Hybrid hierarchy, cpu controller mounted alone. */
    cg_write("v1/cgroup", "9:name=systemd:/\n4:memory:/x\n1:cpu:/\n0::/\n");
    cg_write("v1/fs/cpu/cpu.cfs_quota_us", "-1\n");
    cg_write("v1/fs/cpu/cpu.cfs_period_us", "100000\n");
    assert_int_equal(cg_quota("v1/cgroup", "v1/fs"), 0);
    cg_write("v1/fs/cpu/cpu.cfs_quota_us", "200000\n");
    assert_int_equal(cg_quota("v1/cgroup", "v1/fs"), 2);
    /* cpu,cpuacct mount; the container's path does not exist inside it (its
     * own cgroup is mounted at the root): the walk up finds the root's limit. */
    cg_write("v1b/cgroup", "3:cpu,cpuacct:/docker/abc\n");
    cg_write("v1b/fs/cpu,cpuacct/cpu.cfs_quota_us", "100000\n");
    cg_write("v1b/fs/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    assert_int_equal(cg_quota("v1b/cgroup", "v1b/fs"), 1);
}

static void test_cpu_quota_bad_input(void **state)
{
    (void)state;
    assert_int_equal(cg_quota("nonexistent/cgroup", "nonexistent"), 0);
    cg_write("bad/cgroup", "garbage\n::\n0::relative\n1:cpu\n");
    assert_int_equal(cg_quota("bad/cgroup", "bad/fs"), 0);
    cg_write("bad2/cgroup", "0::/\n");
    cg_write("bad2/fs/cpu.max", "abc 100000\n");
    assert_int_equal(cg_quota("bad2/cgroup", "bad2/fs"), 0);
    cg_write("bad2/fs/cpu.max", "100000 0\n");
    assert_int_equal(cg_quota("bad2/cgroup", "bad2/fs"), 0);
    cg_write("bad2/fs/cpu.max", "-5 100000\n");
    assert_int_equal(cg_quota("bad2/cgroup", "bad2/fs"), 0);
    cg_write("bad2/fs/cpu.max", "");
    assert_int_equal(cg_quota("bad2/cgroup", "bad2/fs"), 0);
    /* The real machine: whatever it is, auto is within 1..allowed. */
    long n = tg_sysinfo_cpus_auto();
    assert_true(n >= 1);
    assert_true(n <= tg_sysinfo_cpus_allowed() || tg_sysinfo_cpus_allowed() < 1);
}

static void test_fake_no_ifma(void **state)
{
    (void)state;
    struct tg_cpuid_info id;
    tg_sysinfo_cpuid(&id);
    bool real = id.valid && id.usable[TG_CPU_AVX512F] && id.usable[TG_CPU_AVX512IFMA];

    unsetenv("TG_FAKE_NO_IFMA");
    assert_false(tg_sysinfo_fake_no_ifma());
    assert_int_equal(tg_sysinfo_cpu_has_avx512_ifma(), real);
    setenv("TG_FAKE_NO_IFMA", "1", 1);
    assert_true(tg_sysinfo_fake_no_ifma());
    assert_false(tg_sysinfo_cpu_has_avx512_ifma());
    setenv("TG_FAKE_NO_IFMA", "0", 1);
    assert_int_equal(tg_sysinfo_cpu_has_avx512_ifma(), real);
    setenv("TG_FAKE_NO_IFMA", "", 1);
    assert_int_equal(tg_sysinfo_cpu_has_avx512_ifma(), real);
    setenv("TG_FAKE_NO_IFMA", "yes", 1);
    assert_false(tg_sysinfo_cpu_has_avx512_ifma());
    unsetenv("TG_FAKE_NO_IFMA");
    assert_int_equal(tg_sysinfo_cpu_has_avx512_ifma(), real);
}

static void test_ossl_ia32cap(void **state)
{
    (void)state;
    const uint64_t icl = L7B(16) | L7B(17) | L7B(21) | L7B(30) | L7B(31) | ((uint64_t)L7B(6) << 32);
    assert_true(tg_sysinfo_ossl_rsaz_avx512_eligible(icl));
    assert_false(tg_sysinfo_ossl_rsaz_avx512_eligible(icl & ~(uint64_t)L7B(21)));
    assert_false(tg_sysinfo_ossl_rsaz_avx512_eligible(icl & ~(uint64_t)L7B(31)));
    assert_true(tg_sysinfo_ossl_rsaz_avx512_eligible(icl & ~(uint64_t)L7B(30))); /* BW unused */

    assert_int_equal(tg_sysinfo_ossl_leaf7(NULL, icl), icl);
    /* DESIGN.md's mask: only IFMA goes. */
    assert_int_equal(tg_sysinfo_ossl_leaf7(":~0x200000", icl), icl & ~(uint64_t)L7B(21));
    assert_false(tg_sysinfo_ossl_rsaz_avx512_eligible(tg_sysinfo_ossl_leaf7(":~0x200000", icl)));
    /* No ':' part: OpenSSL zeroes the leaf-7 words. */
    assert_int_equal(tg_sysinfo_ossl_leaf7("~0x200000", icl), 0);
    assert_int_equal(tg_sysinfo_ossl_leaf7("", icl), 0);
    /* "~A:~B" masks from the CPU's words; "~0:~0" changes nothing. */
    assert_int_equal(tg_sysinfo_ossl_leaf7("~0:~0", icl), icl);
    /* A plain first part skips OpenSSL's CPUID: masking starts from zero. */
    assert_int_equal(tg_sysinfo_ossl_leaf7("0x4:~0", icl), 0);
    /* ":B" replaces; decimal, octal and hex as OpenSSL parses them. */
    assert_int_equal(tg_sysinfo_ossl_leaf7(":0x80230000", 0), 0x80230000u);
    assert_true(tg_sysinfo_ossl_rsaz_avx512_eligible(0x80230000u));
    assert_int_equal(tg_sysinfo_ossl_leaf7(":16", icl), 16);
    assert_int_equal(tg_sysinfo_ossl_leaf7(":020", icl), 16);
    assert_int_equal(tg_sysinfo_ossl_leaf7(":0x10zz", icl), 16); /* stops at 'z' */
    assert_int_equal(tg_sysinfo_ossl_leaf7(":~0x100000000", icl), icl & ~((uint64_t)1 << 32));
    assert_int_equal(tg_sysinfo_ossl_leaf7(":", icl), 0);
}

/* ---- QAT on a fake sysfs tree ---- */

static void mkdirs(const char *path)
{
    char tmp[PATH_MAX];
    pathf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                fail_msg("mkdir %s: %s", tmp, strerror(errno));
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        fail_msg("mkdir %s: %s", tmp, strerror(errno));
}

static void put(const char *dir, const char *name, const char *content)
{
    char path[PATH_MAX];
    pathf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
}

static void link_to(const char *target, const char *dir, const char *name)
{
    char path[PATH_MAX];
    pathf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(symlink(target, path), 0);
}

/* root/bus/pci/devices/<bdf> with vendor/device files and optional links. */
static void fake_dev(const char *root, const char *bdf, const char *vendor, const char *device,
                     const char *driver, const char *group, const char *numvfs)
{
    char dir[PATH_MAX], target[PATH_MAX];
    pathf(dir, sizeof(dir), "%s/bus/pci/devices/%s", root, bdf);
    mkdirs(dir);
    if (vendor)
        put(dir, "vendor", vendor);
    if (device)
        put(dir, "device", device);
    if (driver) {
        pathf(target, sizeof(target), "../../../../bus/pci/drivers/%s", driver);
        link_to(target, dir, "driver");
    }
    if (group) {
        pathf(target, sizeof(target), "../../../../kernel/iommu_groups/%s", group);
        link_to(target, dir, "iommu_group");
        pathf(target, sizeof(target), "%s/kernel/iommu_groups/%s", root, group);
        mkdirs(target);
    }
    if (numvfs)
        put(dir, "sriov_numvfs", numvfs);
}

static const char *fake_sysfs(void)
{
    static char root[PATH_MAX];
    pathf(root, sizeof(root), "%s/sys1", tg_test_tmpdir());
    fake_dev(root, "0000:6b:00.0", "0x8086\n", "0x4940\n", "qat_4xxx", NULL, "16\n");
    fake_dev(root, "0000:6b:00.1", "0x8086\n", "0x4941\n", "vfio-pci", "42", NULL);
    fake_dev(root, "0000:6b:00.2", "0x8086\n", "0x4941\n", NULL, "43", NULL);
    fake_dev(root, "0000:3d:00.0", "0x8086\n", "0x37c9\n", "c6xxvf", NULL, NULL);
    /* Not QAT: other Intel device, another vendor with a QAT-like id, garbage. */
    fake_dev(root, "0000:00:1f.0", "0x8086\n", "0x1234\n", "lpc_ich", NULL, NULL);
    fake_dev(root, "0000:01:00.0", "0x10de\n", "0x4940\n", "nvidia", "7", NULL);
    fake_dev(root, "0000:02:00.0", "0x8086junk\n", "0x4940\n", NULL, NULL, NULL);
    fake_dev(root, "0000:03:00.0", "0x18086\n", "0x4940\n", NULL, NULL, NULL);
    fake_dev(root, "0000:04:00.0", "0x8086\n", NULL, NULL, NULL, NULL);
    fake_dev(root, "0000:05:00.0", "", "", NULL, NULL, NULL);
    return root;
}

static void test_qat_scan(void **state)
{
    (void)state;
    const char *root = fake_sysfs();
    struct tg_qat_dev devs[TG_QAT_MAX_DEVICES];
    size_t n = 99, found = 99;
    assert_int_equal(tg_sysinfo_qat_scan(root, devs, TG_ARRAY_LEN(devs), &n, &found), TG_OK);
    assert_int_equal(n, 4);
    assert_int_equal(found, 4);
    /* Sorted by BDF. */
    assert_string_equal(devs[0].bdf, "0000:3d:00.0");
    assert_int_equal(devs[0].device_id, 0x37c9);
    assert_true(devs[0].is_vf);
    assert_string_equal(devs[0].family, "C62x");
    assert_string_equal(devs[0].driver, "c6xxvf");
    assert_int_equal(devs[0].iommu_group, -1);

    assert_string_equal(devs[1].bdf, "0000:6b:00.0");
    assert_int_equal(devs[1].device_id, 0x4940);
    assert_false(devs[1].is_vf);
    assert_string_equal(devs[1].family, "4xxx");
    assert_string_equal(devs[1].driver, "qat_4xxx");
    assert_int_equal(devs[1].sriov_numvfs, 16);

    assert_string_equal(devs[2].bdf, "0000:6b:00.1");
    assert_true(devs[2].is_vf);
    assert_string_equal(devs[2].driver, "vfio-pci");
    assert_int_equal(devs[2].iommu_group, 42);
    assert_int_equal(devs[2].sriov_numvfs, -1);

    assert_string_equal(devs[3].driver, "none");
    assert_int_equal(devs[3].iommu_group, 43);

    /* Bounded output: the count keeps going past cap. */
    assert_int_equal(tg_sysinfo_qat_scan(root, devs, 2, &n, &found), TG_OK);
    assert_int_equal(n, 2);
    assert_int_equal(found, 4);
    assert_int_equal(tg_sysinfo_qat_scan(root, devs, 0, &n, NULL), TG_OK);
    assert_int_equal(n, 0);

    assert_int_equal(tg_sysinfo_iommu_groups(root), 3); /* 42, 43, 7 */

    /* No PCI bus at all (container without /sys). */
    char empty[PATH_MAX];
    pathf(empty, sizeof(empty), "%s/nosys", tg_test_tmpdir());
    mkdirs(empty);
    assert_int_equal(tg_sysinfo_qat_scan(empty, devs, 4, &n, &found), TG_EUNAVAIL);
    assert_int_equal(n, 0);
    assert_int_equal(found, 0);
    assert_int_equal(tg_sysinfo_iommu_groups(empty), -1);

    /* The real /sys must not fail (it may simply have no QAT). */
    int rc = tg_sysinfo_qat_scan(NULL, devs, TG_ARRAY_LEN(devs), &n, &found);
    assert_true(rc == TG_OK || rc == TG_EUNAVAIL);
}

static void test_qat_ids(void **state)
{
    (void)state;
    bool vf = true;
    const char *fam = NULL;
    static const uint16_t pf[] = {0x4940, 0x4942, 0x4944, 0x4946, 0x0435,
                                  0x37c8, 0x19e2, 0x6f54, 0x18ee};
    static const uint16_t vfs[] = {0x4941, 0x4943, 0x4945, 0x4947, 0x0443,
                                   0x37c9, 0x19e3, 0x6f55, 0x18ef};
    for (size_t i = 0; i < TG_ARRAY_LEN(pf); i++) {
        assert_true(tg_sysinfo_qat_id(0x8086, pf[i], &vf, &fam));
        assert_false(vf);
        assert_non_null(fam);
        assert_true(tg_sysinfo_qat_id(0x8086, vfs[i], &vf, NULL));
        assert_true(vf);
    }
    assert_false(tg_sysinfo_qat_id(0x8086, 0x4948, NULL, NULL));
    assert_false(tg_sysinfo_qat_id(0x1022, 0x4940, NULL, NULL));
    assert_true(tg_sysinfo_qat_id(0x8086, 0x4946, NULL, &fam));
    assert_string_equal(fam, "420xx");
}

/* ---- memlock ---- */

static void test_memlock(void **state)
{
    (void)state;
    struct tg_memlock m;
    char adv[512], b[32];
    assert_int_equal(tg_sysinfo_memlock(&m), TG_OK);
    (void)tg_sysinfo_memlock_verdict(&m, adv, sizeof(adv));
    assert_true(strlen(adv) > 0);

    struct tg_memlock unl = {.soft_unlimited = true, .hard_unlimited = true};
    assert_int_equal(tg_sysinfo_memlock_verdict(&unl, adv, sizeof(adv)), TG_MEMLOCK_OK);
    assert_non_null(strstr(adv, "ok for qat"));

    struct tg_memlock raisable = {.soft = 8ULL << 20, .hard_unlimited = true};
    assert_int_equal(tg_sysinfo_memlock_verdict(&raisable, adv, sizeof(adv)), TG_MEMLOCK_RAISABLE);
    assert_non_null(strstr(adv, "ulimit -l"));

    struct tg_memlock low = {.soft = 64 << 10, .hard = 64 << 10};
    assert_int_equal(tg_sysinfo_memlock_verdict(&low, adv, sizeof(adv)), TG_MEMLOCK_LOW);
    assert_non_null(strstr(adv, "LimitMEMLOCK"));
    assert_non_null(strstr(adv, "128 MiB"));
    assert_int_equal(tg_sysinfo_memlock_verdict(&low, NULL, 0), TG_MEMLOCK_LOW);

    struct tg_memlock exact = {.soft = TG_QAT_MEMLOCK_RECOMMENDED,
                               .hard = TG_QAT_MEMLOCK_RECOMMENDED};
    assert_int_equal(tg_sysinfo_memlock_verdict(&exact, NULL, 0), TG_MEMLOCK_OK);
    struct tg_memlock just_below = {.soft = TG_QAT_MEMLOCK_RECOMMENDED - 1,
                                    .hard = TG_QAT_MEMLOCK_RECOMMENDED - 1};
    assert_int_equal(tg_sysinfo_memlock_verdict(&just_below, NULL, 0), TG_MEMLOCK_LOW);

    assert_string_equal(tg_sysinfo_fmt_bytes(true, 5, b, sizeof(b)), "unlimited");
    assert_string_equal(tg_sysinfo_fmt_bytes(false, 0, b, sizeof(b)), "0 B");
    assert_string_equal(tg_sysinfo_fmt_bytes(false, 1023, b, sizeof(b)), "1023 B");
    assert_string_equal(tg_sysinfo_fmt_bytes(false, 65536, b, sizeof(b)), "64 KiB");
    assert_string_equal(tg_sysinfo_fmt_bytes(false, 134217728, b, sizeof(b)), "128 MiB");
    assert_string_equal(tg_sysinfo_fmt_bytes(false, 1536ULL << 20, b, sizeof(b)), "1.5 GiB");
    assert_string_equal(tg_sysinfo_fmt_bytes(false, UINT64_MAX, b, sizeof(b)), "15.9 EiB");
}

static void test_openssl_versions(void **state)
{
    (void)state;
    assert_string_equal(tg_sysinfo_openssl_headers(), OPENSSL_VERSION_TEXT);
    assert_non_null(strstr(tg_sysinfo_openssl_runtime(), "OpenSSL 3."));
    assert_false(tg_sysinfo_openssl_mismatch());
}

/* ---- /proc/PID/stat ---- */

static void test_stat_parse(void **state)
{
    (void)state;
    uint64_t ut = 0, st = 0;
    static const char plain[] = "1234 (tlsgate) S 1 1234 1234 0 -1 4194560 1000 0 0 0 "
                                "157 42 0 0 20 0 3 0 12345 1000000 500 18446744073709551615\n";
    assert_int_equal(tg_sysinfo_parse_stat(plain, strlen(plain), &ut, &st), TG_OK);
    assert_int_equal(ut, 157);
    assert_int_equal(st, 42);

    /* comm with spaces and parentheses: only the last ')' ends it. */
    static const char tricky[] = "77 (a) b (c) d) R 1 2 3 4 5 6 7 8 9 10 1111 2222 0 0\n";
    assert_int_equal(tg_sysinfo_parse_stat(tricky, strlen(tricky), &ut, &st), TG_OK);
    assert_int_equal(ut, 1111);
    assert_int_equal(st, 2222);
    /* A comm that looks like fields. */
    static const char fake[] = "9 (x) S 1 1 1 1 1 1 1 1 1 1 9 9 ) S 0 0 0 0 0 0 0 0 0 0 5 6 7\n";
    assert_int_equal(tg_sysinfo_parse_stat(fake, strlen(fake), &ut, &st), TG_OK);
    assert_int_equal(ut, 5);
    assert_int_equal(st, 6);
    /* stime is the last field present (no trailing newline). */
    static const char shortest[] = "1 (x) S 0 0 0 0 0 0 0 0 0 0 3 4";
    assert_int_equal(tg_sysinfo_parse_stat(shortest, strlen(shortest), &ut, &st), TG_OK);
    assert_int_equal(st, 4);

    static const char *const bad[] = {
        "",
        "1234 tlsgate S 1",                                   /* no parens */
        "1 (x) S 0 0 0 0 0 0 0 0 0 0 3",                      /* stime missing */
        "1 (x) S 0 0 0 0 0 0 0 0 0 0 3\n4",                   /* newline ends the record */
        "1 (x) S 0 0 0 0 0 0 0 0 0 0 -3 4",                   /* negative */
        "1 (x) S 0 0 0 0 0 0 0 0 0 0 3x 4",                   /* junk */
        "1 (x) S 0 0 0 0 0 0 0 0 0 0 99999999999999999999 4", /* overflow */
        "1 (x)S 0 0 0 0 0 0 0 0 0 0 3 4",                     /* no space after ')' */
        "1 (x)",                                              /* nothing after comm */
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++)
        assert_int_equal(tg_sysinfo_parse_stat(bad[i], strlen(bad[i]), &ut, &st), TG_EPROTO);
    /* Length bounds the parse. */
    assert_int_equal(tg_sysinfo_parse_stat(plain, 40, &ut, &st), TG_EPROTO);
}

static void test_proc_cpu_ns(void **state)
{
    (void)state;
    uint64_t a = 0, b = 0, c = 0;
    assert_int_equal(tg_sysinfo_proc_cpu_ns(0, &a), TG_OK);
    /* Burn ~50 ms of CPU so the tick counter must move. */
    volatile uint64_t x = 0;
    uint64_t t0 = 0;
    do {
        for (int i = 0; i < 1000000; i++)
            x += (uint64_t)i;
        assert_int_equal(tg_sysinfo_proc_cpu_ns(getpid(), &b), TG_OK);
        t0++;
    } while (b < a + 50000000ULL && t0 < 100000);
    assert_true(b >= a + 50000000ULL);
    assert_true(x > 0); /* keeps the busy loop observable */
    assert_int_equal(tg_sysinfo_proc_cpu_ns(getppid(), &c), TG_OK);
    assert_int_equal(tg_sysinfo_proc_cpu_ns((pid_t)INT_MAX, &c), TG_EIO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpuinfo_ifma),
        cmocka_unit_test(test_cpuinfo_no_ifma),
        cmocka_unit_test(test_cpuinfo_tokens),
        cmocka_unit_test(test_cpuinfo_errors),
        cmocka_unit_test(test_cpuid_decode),
        cmocka_unit_test(test_cpuid_matches_cpuinfo),
        cmocka_unit_test(test_fake_no_ifma),
        cmocka_unit_test(test_ossl_ia32cap),
        cmocka_unit_test(test_qat_scan),
        cmocka_unit_test(test_qat_ids),
        cmocka_unit_test(test_memlock),
        cmocka_unit_test(test_openssl_versions),
        cmocka_unit_test(test_stat_parse),
        cmocka_unit_test(test_proc_cpu_ns),
        cmocka_unit_test(test_cpu_quota_v2),
        cmocka_unit_test(test_cpu_quota_v1),
        cmocka_unit_test(test_cpu_quota_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
