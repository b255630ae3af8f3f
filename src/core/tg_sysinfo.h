/*
 * tg_sysinfo: generic facts about this machine (CPU features, OpenSSL's view
 * of them, CPUs, process CPU time) used by `tlsgate doctor`, by providers
 * (cryptomb's CPU check) and by benchmarks. Facts only one provider needs
 * live with that provider (QAT devices and memlock: src/providers/qat).
 *
 * Design: every parser takes text (or a directory root) as input so tests
 * feed fixtures; the functions that read /proc, /sys or execute CPUID are thin
 * wrappers around them.
 *
 * Threading: every function is thread-safe except tg_sysinfo_set_roots()
 * (see there). tg_sysinfo_cpu_has_avx512_ifma() and tg_sysinfo_cpuid() cache
 * the CPUID result after the first call (pthread_once).
 */
#ifndef TG_SYSINFO_H
#define TG_SYSINFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/tg_err.h"

/*
 * CPU features that matter to the TLS providers.
 * X(id, cpuinfo name, cpuid leaf, subleaf, register (0=EBX 1=ECX 2=EDX), bit, needs)
 * `needs` is the OS register state the instruction set needs enabled in XCR0
 * (TG_XSTATE_*): a CPU bit without that state is not usable.
 * The cpuinfo names are the Linux kernel's (arch/x86/include/asm/cpufeatures.h):
 * note "avx512_vbmi2" and "sha_ni" carry underscores, "avx512ifma" does not.
 */
#define TG_XSTATE_NONE   0u /* general-purpose or legacy SSE registers: always saved */
#define TG_XSTATE_AVX    1u /* XCR0 bits 1,2 (XMM, YMM) */
#define TG_XSTATE_AVX512 2u /* XCR0 bits 1,2,5,6,7 (plus opmask, ZMM_Hi256, Hi16_ZMM) */

#define TG_CPU_FEATURES(X)                                                                         \
    X(AVX512F, "avx512f", 7, 0, 0, 16, TG_XSTATE_AVX512)                                           \
    X(AVX512DQ, "avx512dq", 7, 0, 0, 17, TG_XSTATE_AVX512)                                         \
    X(AVX512BW, "avx512bw", 7, 0, 0, 30, TG_XSTATE_AVX512)                                         \
    X(AVX512VL, "avx512vl", 7, 0, 0, 31, TG_XSTATE_AVX512)                                         \
    X(AVX512IFMA, "avx512ifma", 7, 0, 0, 21, TG_XSTATE_AVX512)                                     \
    X(AVX512VBMI2, "avx512_vbmi2", 7, 0, 1, 6, TG_XSTATE_AVX512)                                   \
    X(AES, "aes", 1, 0, 1, 25, TG_XSTATE_NONE)                                                     \
    X(VAES, "vaes", 7, 0, 1, 9, TG_XSTATE_AVX)                                                     \
    X(VPCLMULQDQ, "vpclmulqdq", 7, 0, 1, 10, TG_XSTATE_AVX)                                        \
    X(SHA_NI, "sha_ni", 7, 0, 0, 29, TG_XSTATE_NONE)                                               \
    X(BMI2, "bmi2", 7, 0, 0, 8, TG_XSTATE_NONE)                                                    \
    X(ADX, "adx", 7, 0, 0, 19, TG_XSTATE_NONE)

enum tg_cpu_feature {
#define TG_CPU_FEATURE_ENUM(id, name, leaf, sub, reg, bit, needs) TG_CPU_##id,
    TG_CPU_FEATURES(TG_CPU_FEATURE_ENUM)
#undef TG_CPU_FEATURE_ENUM
        TG_CPU_FEATURE_COUNT
};

/* The feature's /proc/cpuinfo flag name; "?" for an out-of-range value. */
const char *tg_cpu_feature_name(enum tg_cpu_feature f);

/* ---- /proc/cpuinfo ---- */

struct tg_cpuinfo {
    char model[128]; /* "model name" of the first processor, "" if absent */
    bool has_flags;  /* a "flags" line was found */
    bool flag[TG_CPU_FEATURE_COUNT];
};

/*
 * Parse /proc/cpuinfo text (len bytes, NUL not required). Only the first
 * processor block is read (the kernel reports the boot CPU's features there;
 * hybrid parts differ only in frequencies). Flags match whole tokens
 * ("avx512f" does not match "avx512fp16").
 * Returns TG_OK, or TG_EPROTO when the first block has no "flags" line.
 */
int tg_sysinfo_parse_cpuinfo(const char *text, size_t len, struct tg_cpuinfo *out) TG_MUST_CHECK;
/* Read and parse path (NULL: /proc/cpuinfo). TG_EIO if it cannot be read. */
int tg_sysinfo_read_cpuinfo(const char *path, struct tg_cpuinfo *out) TG_MUST_CHECK;

/* Online CPUs (sysconf), and CPUs this process may run on (affinity mask). */
long tg_sysinfo_cpus_online(void);
long tg_sysinfo_cpus_allowed(void);

/*
 * Whole CPUs the cgroup CPU bandwidth limit of this process grants: the
 * smallest quota/period along its cgroup path (v2 cpu.max, v1
 * cpu.cfs_quota_us / cpu.cfs_period_us), rounded down, at least 1; 0 when
 * there is no limit or none can be read. cgroup_file is /proc/self/cgroup
 * and root /sys/fs/cgroup; the _at form lets tests give fixtures.
 */
long tg_sysinfo_cpu_quota_cpus_at(const char *cgroup_file, const char *root);
long tg_sysinfo_cpu_quota_cpus(void);
/* What `concurrency: auto` uses: the CPUs of the affinity mask (online CPUs
 * when it cannot be read), capped by the cgroup CPU quota. At least 1. */
long tg_sysinfo_cpus_auto(void);

/* ---- CPUID + XGETBV ---- */

/* Raw register values; the decoder is pure so tests can feed any CPU. */
struct tg_cpuid_regs {
    uint32_t max_leaf; /* leaf 0 EAX */
    uint32_t l1_ecx;   /* leaf 1 ECX (AES bit 25, OSXSAVE bit 27) */
    uint32_t l7_ebx;   /* leaf 7 subleaf 0 EBX (0 when max_leaf < 7) */
    uint32_t l7_ecx;   /* leaf 7 subleaf 0 ECX */
    uint64_t xcr0;     /* XGETBV(0); 0 when OSXSAVE is clear */
};

struct tg_cpuid_info {
    bool valid; /* CPUID was executed (x86 only) */
    struct tg_cpuid_regs regs;
    bool os_xsave;                     /* OSXSAVE: XGETBV may be executed */
    bool os_avx;                       /* XCR0 bits 1,2 (SSE, YMM) */
    bool os_avx512;                    /* plus bits 5,6,7 (opmask, ZMM_Hi256, Hi16_ZMM) */
    bool cpu[TG_CPU_FEATURE_COUNT];    /* the CPU implements it */
    bool usable[TG_CPU_FEATURE_COUNT]; /* implemented and its register state enabled by the OS */
};

/* Decode registers into features (pure). */
void tg_sysinfo_cpuid_decode(const struct tg_cpuid_regs *regs, struct tg_cpuid_info *out);
/* Execute CPUID/XGETBV on this CPU (cached). valid=false on non-x86. */
void tg_sysinfo_cpuid(struct tg_cpuid_info *out);

/*
 * The cryptomb gate: AVX512F + AVX512IFMA implemented and the OS saves
 * opmask/ZMM state. CPUID + XGETBV only (cached; no file is read), so it is
 * cheap enough for any path. Returns false when the environment variable
 * TG_FAKE_NO_IFMA is set to anything but "" or "0" (tests pretend the CPU
 * lacks IFMA); the variable is read on every call so tests may toggle it.
 */
bool tg_sysinfo_cpu_has_avx512_ifma(void);
/* Whether TG_FAKE_NO_IFMA is in effect. */
bool tg_sysinfo_fake_no_ifma(void);

/*
 * OpenSSL's own AVX-512 RSA path (RSAZ, OpenSSL >= 3.0) runs when its
 * capability vector word 2 (CPUID leaf 7 EBX as OpenSSL sees it) has
 * AVX512F, AVX512DQ, AVX512IFMA and AVX512VL. The environment variable
 * OPENSSL_ia32cap changes that vector; this function predicts the effect the
 * way OpenSSL 3.0's OPENSSL_cpuid_setup() applies it:
 *   unset               -> the CPU's leaf-7 words
 *   "~A[:B]" / ":B"     -> CPU words, then ":~B" masks bits, ":B" replaces
 *   "A" without ':'     -> leaf-7 words are zeroed
 *   "A:..." (no '~')    -> leaf-7 words start from 0 (OpenSSL skips its CPUID)
 * cpu_leaf7 is EBX | (uint64_t)ECX << 32, already filtered by OS support.
 * Returns the effective leaf-7 vector.
 */
uint64_t tg_sysinfo_ossl_leaf7(const char *ia32cap_env, uint64_t cpu_leaf7);
/* Whether a leaf-7 vector enables OpenSSL's AVX-512 IFMA RSA path. */
bool tg_sysinfo_ossl_rsaz_avx512_eligible(uint64_t leaf7);

/* ---- where hardware facts are read from ---- */

/*
 * The sysfs and /dev roots this process reads device facts from: "/sys" and
 * "/dev" unless set. `tlsgate doctor --sysfs-root DIR` sets them while it
 * asks the key providers' doctor hooks, so a provider that probes devices
 * (qat's PCI scan, its /dev/vfio check) reads the tree the operator named
 * without the provider interface knowing any option; tests point them at
 * fixture trees. NULL means the default. The strings are not copied: they
 * must stay valid until the next call. Main thread only, while no worker
 * runs; the getters are safe wherever the setter cannot run concurrently.
 */
void tg_sysinfo_set_roots(const char *sysfs_root, const char *dev_root);
const char *tg_sysinfo_sysfs_root(void);
const char *tg_sysinfo_dev_root(void);

/*
 * Read up to cap-1 bytes of a small (pseudo) file into buf, NUL-terminated
 * (/proc and /sys files report size 0, so this reads until EOF). Returns the
 * length, or -1 when it cannot be read.
 */
ssize_t tg_sysinfo_read_small(const char *path, char *buf, size_t cap);

/* "unlimited", "64 KiB", "8 MiB", "1.5 GiB" into buf; returns buf. */
const char *tg_sysinfo_fmt_bytes(bool unlimited, uint64_t bytes, char *buf, size_t len);

/* ---- OpenSSL ---- */

/* OpenSSL_version(OPENSSL_VERSION): the library actually loaded. */
const char *tg_sysinfo_openssl_runtime(void);
/* OPENSSL_VERSION_TEXT: the headers tlsgate was compiled with. */
const char *tg_sysinfo_openssl_headers(void);
/* The runtime cannot be relied on to provide what the headers promised:
 * another major version, or an older minor one than the headers (OpenSSL 3
 * keeps its ABI across minor releases, so a newer 3.x runs a program built
 * against 3.0: Debian 13's 3.5 runs a Debian 12 build). */
bool tg_sysinfo_openssl_mismatch(void);
/* The rule above for given versions (pure; for tests). */
bool tg_sysinfo_openssl_incompatible(unsigned long run_major, unsigned long run_minor,
                                     unsigned long hdr_major, unsigned long hdr_minor);

/* ---- /proc/PID/stat ---- */

/*
 * Parse the text of /proc/PID/stat: utime and stime (fields 14, 15) in clock
 * ticks. Fields are counted after the LAST ')' because comm (field 2) may
 * contain spaces and parentheses. Returns TG_OK or TG_EPROTO.
 */
int tg_sysinfo_parse_stat(const char *text, size_t len, uint64_t *utime_ticks,
                          uint64_t *stime_ticks) TG_MUST_CHECK;
/*
 * utime + stime of process pid (0: this process), all threads, in
 * nanoseconds (tick resolution, usually 10 ms). TG_EIO if /proc/PID/stat
 * cannot be read, TG_EPROTO if it does not parse.
 */
int tg_sysinfo_proc_cpu_ns(pid_t pid, uint64_t *utime_stime_ns) TG_MUST_CHECK;

#endif
