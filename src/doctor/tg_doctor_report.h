/*
 * tg_doctor_report: the machinery behind `tlsgate doctor` (internal to
 * src/doctor; used by tg_doctor.c and tests/unit/test_doctor.c).
 *
 * Two steps, so tests can check the formatting without the real machine or
 * the real provider registry:
 *   tg_doctor_collect()  gathers generic facts (sysinfo: versions, CPU
 *                        features, OpenSSL's own AVX-512 path, CPUs) and
 *                        probes the providers it is given (global_init /
 *                        doctor / global_cleanup);
 *   tg_doctor_render_*() turn facts into text or JSON, pure functions.
 * Hardware one provider needs (QAT devices, vfio, memlock for qatlib) is
 * that provider's to report, through its doctor hook.
 *
 * Threading: main thread, before any worker starts (provider global_init and
 * global_cleanup are main-thread-only by the keyprov contract).
 */
#ifndef TG_DOCTOR_REPORT_H
#define TG_DOCTOR_REPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/tg_buf.h"
#include "core/tg_sysinfo.h"

struct tg_keyprov_ops;

struct tg_doctor_opts {
    /* Roots the providers' device probes read (NULL: "/sys", "/dev"): set
     * with tg_sysinfo_set_roots() while the providers are probed, restored
     * afterwards (see tg_sysinfo.h). */
    const char *sysfs_root;
    const char *dev_root;
    const char *cpuinfo_path; /* NULL: "/proc/cpuinfo" */
};

struct tg_doctor_prov {
    const char *name;        /* static, from the ops table */
    const char *description; /* static, "" when the table has none */
    int rc;                  /* global_init result; TG_OK = available */
    char why[256];           /* reason when rc != TG_OK (never empty then) */
    struct tg_buf lines;     /* ops->doctor text output, possibly empty */
    struct tg_buf json;      /* ops->doctor JSON members, possibly empty */
};

struct tg_doctor_facts {
    const char *version; /* TG_VERSION */
    const char *ossl_runtime;
    const char *ossl_headers;
    bool ossl_mismatch;

    int cpuinfo_rc; /* TG_OK, or why the cpuinfo columns are empty */
    struct tg_cpuinfo cpuinfo;
    struct tg_cpuid_info cpuid;
    long cpus_online, cpus_allowed;
    bool fake_no_ifma; /* TG_FAKE_NO_IFMA in effect */
    bool ifma_gate;    /* tg_sysinfo_cpu_has_avx512_ifma() */

    bool ia32cap_set;   /* OPENSSL_ia32cap in the environment */
    char ia32cap[128];  /* its value (truncated) */
    bool ossl_rsaz_cpu; /* OpenSSL would take its AVX-512 RSA path on this CPU... */
    bool ossl_rsaz_eff; /* ...and still does with OPENSSL_ia32cap applied */

    struct tg_doctor_prov *provs;
    size_t n_provs;
};

/*
 * Fill f. provs[0..n) are probed in order: global_init (TG_OK = available),
 * then ops->doctor (while initialised, so it can describe what it found),
 * then global_cleanup only if global_init succeeded; opts->sysfs_root and
 * dev_root are the process's roots (tg_sysinfo_set_roots) meanwhile, so a
 * hook reads the tree the operator named. opts may be NULL.
 * Returns TG_OK or TG_ENOMEM; on failure f is still safe to free.
 * Free with tg_doctor_facts_free().
 */
int tg_doctor_collect(const struct tg_doctor_opts *opts, const struct tg_keyprov_ops *const *provs,
                      size_t n, struct tg_doctor_facts *f) TG_MUST_CHECK;
void tg_doctor_facts_free(struct tg_doctor_facts *f);

/* Human-readable report, fixed-width columns: the generic facts, the
 * provider list, then one section per provider whose doctor hook wrote
 * lines (shown indented by two spaces). Appends to out. */
void tg_doctor_render_text(const struct tg_doctor_facts *f, struct tg_buf *out);
/* The same facts as one JSON object (and a trailing newline). Appends to out. */
void tg_doctor_render_json(const struct tg_doctor_facts *f, struct tg_buf *out);

/* collect + render + free. Returns TG_OK or TG_ENOMEM. */
int tg_doctor_report(const struct tg_doctor_opts *opts, const struct tg_keyprov_ops *const *provs,
                     size_t n, bool json, struct tg_buf *out) TG_MUST_CHECK;

/* Append s as a JSON string literal (quotes included). */
void tg_doctor_json_str(struct tg_buf *out, const char *s);

#endif
