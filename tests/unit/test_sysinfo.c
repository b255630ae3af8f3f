/* Unit tests for src/core/tg_sysinfo.c: cpuinfo / CPUID decoding, the
 * OPENSSL_ia32cap model, the sysfs / dev roots, small-file reads, byte
 * formatting and the /proc/PID/stat parser. (The QAT PCI scan and memlock
 * verdicts moved with the qat provider: src/providers/qat/tests.) */
#include "tg_test_util.h"

#include <stdarg.h>
#include <limits.h>
#include <openssl/crypto.h>
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
    /* The usual mask to turn the IFMA path off: only IFMA goes. */
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

/* ---- roots, small files, formatting ---- */

static void test_roots(void **state)
{
    (void)state;
    /* Defaults, an override (doctor --sysfs-root), and back. */
    assert_string_equal(tg_sysinfo_sysfs_root(), "/sys");
    assert_string_equal(tg_sysinfo_dev_root(), "/dev");
    tg_sysinfo_set_roots("/tmp/fake-sys", NULL);
    assert_string_equal(tg_sysinfo_sysfs_root(), "/tmp/fake-sys");
    assert_string_equal(tg_sysinfo_dev_root(), "/dev");
    tg_sysinfo_set_roots(NULL, "/tmp/fake-dev");
    assert_string_equal(tg_sysinfo_sysfs_root(), "/sys");
    assert_string_equal(tg_sysinfo_dev_root(), "/tmp/fake-dev");
    tg_sysinfo_set_roots(NULL, NULL);
    assert_string_equal(tg_sysinfo_dev_root(), "/dev");
}

static void test_read_small(void **state)
{
    (void)state;
    char buf[8], path[PATH_MAX];
    const char *p = tg_test_write_file("small", "0x8086\nrest", 11);
    assert_int_equal(tg_sysinfo_read_small(p, buf, sizeof(buf)), 7); /* bounded, terminated */
    assert_string_equal(buf, "0x8086\n");
    pathf(path, sizeof(path), "%s/does-not-exist", tg_test_tmpdir());
    assert_int_equal(tg_sysinfo_read_small(path, buf, sizeof(buf)), -1);
    /* A pseudo-file that reports size 0. */
    char big[4096];
    assert_true(tg_sysinfo_read_small("/proc/self/stat", big, sizeof(big)) > 0);
}

static void test_fmt_bytes(void **state)
{
    (void)state;
    char b[32];
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
    /* The running library's version number (an API of its own) through
     * the rule (test_openssl_compat_rule checks the rule itself). */
    unsigned long num = OpenSSL_version_num();
    assert_int_equal(tg_sysinfo_openssl_mismatch(),
                     tg_sysinfo_openssl_incompatible(num >> 28, (num >> 20) & 0xffUL,
                                                     OPENSSL_VERSION_MAJOR, OPENSSL_VERSION_MINOR));
}

static void test_openssl_compat_rule(void **state)
{
    (void)state;
    assert_false(tg_sysinfo_openssl_incompatible(3, 0, 3, 0));
    /* Built on Debian 12 (3.0), running on Debian 13 (3.5): fine. */
    assert_false(tg_sysinfo_openssl_incompatible(3, 5, 3, 0));
    /* Built against 3.5, running on 3.0: symbols may be missing. */
    assert_true(tg_sysinfo_openssl_incompatible(3, 0, 3, 5));
    assert_true(tg_sysinfo_openssl_incompatible(4, 0, 3, 0));
    assert_true(tg_sysinfo_openssl_incompatible(3, 0, 4, 0));
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
        cmocka_unit_test(test_roots),
        cmocka_unit_test(test_read_small),
        cmocka_unit_test(test_fmt_bytes),
        cmocka_unit_test(test_openssl_versions),
        cmocka_unit_test(test_openssl_compat_rule),
        cmocka_unit_test(test_stat_parse),
        cmocka_unit_test(test_proc_cpu_ns),
        cmocka_unit_test(test_cpu_quota_v2),
        cmocka_unit_test(test_cpu_quota_v1),
        cmocka_unit_test(test_cpu_quota_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
