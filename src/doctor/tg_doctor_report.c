#include "doctor/tg_doctor_report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tg_err.h"
#include "keyprov/tg_keyprov.h"

#ifndef TG_VERSION
#define TG_VERSION "unknown"
#endif

/* Width of the label column of the text report. */
#define W "24"

/* Leaf-7 EBX bits OpenSSL clears when the OS does not save ZMM/opmask state
 * (AVX512F, DQ, IFMA, PF, ER, CD, BW, VL). */
#define TG_OSSL_AVX512_EBX 0xdc230000u

/* ---- collect ---- */

static void tg_doctor_probe(const struct tg_keyprov_ops *ops, struct tg_doctor_prov *p)
{
    p->name = ops->name ? ops->name : "?";
    p->description = ops->description ? ops->description : "";
    p->lines = (struct tg_buf)TG_BUF_INIT;
    p->json = (struct tg_buf)TG_BUF_INIT;
    p->why[0] = '\0';
    p->rc = ops->global_init ? ops->global_init(p->why, sizeof(p->why)) : TG_OK;
    p->why[sizeof(p->why) - 1] = '\0'; /* whatever the provider wrote */
    if (p->rc != TG_OK && p->why[0] == '\0')
        snprintf(p->why, sizeof(p->why), "%s", tg_strerror(p->rc));
    if (ops->doctor)
        ops->doctor(&p->lines, &p->json);
    if (p->rc == TG_OK && ops->global_cleanup)
        ops->global_cleanup();
}

int tg_doctor_collect(const struct tg_doctor_opts *opts, const struct tg_keyprov_ops *const *provs,
                      size_t n, struct tg_doctor_facts *f)
{
    static const struct tg_doctor_opts defaults = {NULL, NULL, NULL};
    if (opts == NULL)
        opts = &defaults;
    memset(f, 0, sizeof(*f));

    f->version = TG_VERSION;
    f->ossl_runtime = tg_sysinfo_openssl_runtime();
    f->ossl_headers = tg_sysinfo_openssl_headers();
    f->ossl_mismatch = tg_sysinfo_openssl_mismatch();

    f->cpuinfo_rc = tg_sysinfo_read_cpuinfo(opts->cpuinfo_path, &f->cpuinfo);
    tg_sysinfo_cpuid(&f->cpuid);
    f->cpus_online = tg_sysinfo_cpus_online();
    f->cpus_allowed = tg_sysinfo_cpus_allowed();
    f->fake_no_ifma = tg_sysinfo_fake_no_ifma();
    f->ifma_gate = tg_sysinfo_cpu_has_avx512_ifma();

    /* What OpenSSL itself sees: it also drops AVX-512 bits the OS does not
     * enable, then applies OPENSSL_ia32cap. */
    uint64_t leaf7 = 0;
    if (f->cpuid.valid) {
        leaf7 = f->cpuid.regs.l7_ebx | ((uint64_t)f->cpuid.regs.l7_ecx << 32);
        if (!f->cpuid.os_avx512)
            leaf7 &= ~(uint64_t)TG_OSSL_AVX512_EBX;
    }
    const char *cap = getenv("OPENSSL_ia32cap");
    f->ia32cap_set = cap != NULL;
    if (cap)
        snprintf(f->ia32cap, sizeof(f->ia32cap), "%s", cap);
    f->ossl_rsaz_cpu = tg_sysinfo_ossl_rsaz_avx512_eligible(leaf7);
    f->ossl_rsaz_eff = tg_sysinfo_ossl_rsaz_avx512_eligible(tg_sysinfo_ossl_leaf7(cap, leaf7));

    if (n > 0) {
        f->provs = calloc(n, sizeof(*f->provs));
        if (f->provs == NULL)
            return TG_ENOMEM;
    }
    /* The roots are how the providers' hooks learn --sysfs-root: the hook
     * signature has no options, and the doctor knows no provider's devices. */
    const char *saved_sysfs = tg_sysinfo_sysfs_root(), *saved_dev = tg_sysinfo_dev_root();
    tg_sysinfo_set_roots(opts->sysfs_root ? opts->sysfs_root : saved_sysfs,
                         opts->dev_root ? opts->dev_root : saved_dev);
    for (size_t i = 0; i < n; i++) {
        if (provs[i] == NULL)
            continue;
        tg_doctor_probe(provs[i], &f->provs[f->n_provs++]);
    }
    tg_sysinfo_set_roots(saved_sysfs, saved_dev);
    return TG_OK;
}

void tg_doctor_facts_free(struct tg_doctor_facts *f)
{
    for (size_t i = 0; i < f->n_provs; i++) {
        tg_buf_free(&f->provs[i].lines);
        tg_buf_free(&f->provs[i].json);
    }
    free(f->provs);
    memset(f, 0, sizeof(*f));
}

/* ---- shared wording ---- */

static const char *tg_yn(bool b)
{
    return b ? "yes" : "no";
}

static bool tg_feature_mismatch(const struct tg_doctor_facts *f, size_t i)
{
    return f->cpuinfo_rc == TG_OK && f->cpuid.valid && f->cpuinfo.flag[i] != f->cpuid.usable[i];
}

static size_t tg_mismatches(const struct tg_doctor_facts *f)
{
    size_t n = 0;
    for (size_t i = 0; i < TG_CPU_FEATURE_COUNT; i++)
        n += tg_feature_mismatch(f, i);
    return n;
}

/* One sentence on OpenSSL's own AVX-512 RSA path. */
static void tg_rsaz_text(const struct tg_doctor_facts *f, char *buf, size_t len)
{
    if (!f->ossl_rsaz_cpu)
        snprintf(buf, len, "not available (needs AVX512F+DQ+IFMA+VL enabled by the OS)");
    else if (f->ossl_rsaz_eff && !f->ia32cap_set)
        snprintf(buf, len, "used (RSA-2048..4096 sign on the AVX-512 IFMA path)");
    else if (f->ossl_rsaz_eff)
        snprintf(buf, len, "used (OPENSSL_ia32cap=\"%s\" leaves it on)", f->ia32cap);
    else
        snprintf(buf, len, "MASKED by OPENSSL_ia32cap=\"%s\" (scalar RSA, ~2x slower)", f->ia32cap);
}

/* ---- text ---- */

/* Lines of the text report stay within this many columns where words allow. */
#define TG_TEXT_WIDTH 100

/*
 * Append text, the cursor being at column col (the prefix is already out),
 * wrapping on spaces at TG_TEXT_WIDTH; continuation lines are indented to
 * col. Ends with a newline. A word longer than the room is not split.
 */
static void tg_text_wrap(struct tg_buf *out, size_t col, const char *text)
{
    size_t room = col < TG_TEXT_WIDTH - 20 ? TG_TEXT_WIDTH - col : 20;
    const char *s = text;
    while (*s == ' ')
        s++;
    while (*s) {
        size_t len = strlen(s);
        size_t take = len;
        if (len > room) {
            /* Last space within the room, else the first one after it. */
            take = room;
            while (take > 0 && s[take] != ' ')
                take--;
            if (take == 0) {
                const char *sp = strchr(s + room, ' ');
                take = sp ? (size_t)(sp - s) : len;
            }
        }
        tg_buf_append(out, s, take);
        tg_buf_append(out, "\n", 1);
        s += take;
        while (*s == ' ')
            s++;
        if (*s)
            tg_buf_printf(out, "%*s", (int)col, "");
    }
    if (*text == '\0')
        tg_buf_append(out, "\n", 1);
}

static void tg_text_provider(const struct tg_doctor_prov *p, struct tg_buf *out)
{
    /* Name column: 2 + 24 + 1 characters. */
    if (p->rc == TG_OK) {
        tg_buf_printf(out, "  %-" W "s available\n", p->name);
    } else {
        tg_buf_printf(out, "  %-" W "s unavailable: ", p->name);
        tg_text_wrap(out, 27 + strlen("unavailable: "), p->why);
    }
    if (p->description[0]) {
        tg_buf_printf(out, "  %-" W "s ", "");
        tg_text_wrap(out, 27, p->description);
    }
}

/* The provider's own lines (its doctor hook), under a heading of their own:
 * indented by two, so a provider's table keeps its width. */
static void tg_text_provider_details(const struct tg_doctor_prov *p, struct tg_buf *out)
{
    bool heading = false;
    const char *s = p->lines.len ? p->lines.data : "";
    while (*s) {
        const char *nl = strchr(s, '\n');
        size_t l = nl ? (size_t)(nl - s) : strlen(s);
        if (l > 0) {
            if (!heading)
                tg_buf_printf(out, "\n%s provider\n", p->name);
            heading = true;
            tg_buf_printf(out, "  %.*s\n", (int)l, s);
        }
        s += l + (nl ? 1 : 0);
    }
}

void tg_doctor_render_text(const struct tg_doctor_facts *f, struct tg_buf *out)
{
    char line[256];

    tg_buf_puts(out, "tlsgate doctor: what this machine offers to the key providers\n\n");
    tg_buf_printf(out, "%-" W "s %s\n", "tlsgate", f->version);
    tg_buf_printf(out, "%-" W "s %s\n", "OpenSSL (runtime)", f->ossl_runtime);
    tg_buf_printf(out, "%-" W "s %s%s\n", "OpenSSL (headers)", f->ossl_headers,
                  f->ossl_mismatch ? "   <-- MISMATCH: rebuild against the runtime" : "");
    tg_buf_printf(out, "%-" W "s %s\n", "CPU model",
                  f->cpuinfo.model[0] ? f->cpuinfo.model : "(unknown)");
    tg_buf_printf(out, "%-" W "s %ld online, %ld usable by this process\n", "CPUs", f->cpus_online,
                  f->cpus_allowed);

    tg_buf_printf(out, "\n%-" W "s %-9s %s\n", "CPU feature", "cpuinfo", "cpuid");
    for (size_t i = 0; i < TG_CPU_FEATURE_COUNT; i++) {
        const char *ci = f->cpuinfo_rc == TG_OK ? tg_yn(f->cpuinfo.flag[i]) : "?";
        const char *id = f->cpuid.valid ? tg_yn(f->cpuid.usable[i]) : "?";
        const char *note = "";
        if (tg_feature_mismatch(f, i))
            note = f->cpuid.usable[i] ? "    <-- MISMATCH" : "     <-- MISMATCH";
        else if (f->cpuid.valid && f->cpuid.cpu[i] && !f->cpuid.usable[i])
            note = "     (CPU has it; the OS does not enable its registers)";
        tg_buf_printf(out, "  %-22s %-9s %s%s\n", tg_cpu_feature_name((enum tg_cpu_feature)i), ci,
                      id, note);
    }
    if (f->cpuinfo_rc != TG_OK)
        tg_buf_printf(out, "  (cpuinfo: %s)\n", tg_strerror(f->cpuinfo_rc));
    if (tg_mismatches(f) > 0) {
        tg_buf_puts(out, "  ");
        tg_text_wrap(out, 2,
                     "cpuinfo and CPUID disagree: a hypervisor or emulator (valgrind, QEMU) "
                     "masks CPUID, or the kernel cleared a feature (clearcpuid=); tlsgate "
                     "trusts CPUID+XGETBV");
    }
    if (f->cpuid.valid)
        tg_buf_printf(out, "%-" W "s %s (XCR0 0x%llx)\n", "OS AVX-512 state",
                      f->cpuid.os_avx512 ? "enabled" : "NOT enabled",
                      (unsigned long long)(f->cpuid.os_xsave ? f->cpuid.regs.xcr0 : 0));
    tg_buf_printf(out, "%-" W "s %s%s\n", "AVX-512 IFMA (cryptomb)", tg_yn(f->ifma_gate),
                  f->fake_no_ifma ? " (TG_FAKE_NO_IFMA is set: pretending there is none)" : "");
    tg_rsaz_text(f, line, sizeof(line));
    tg_buf_printf(out, "%-" W "s %s\n", "OpenSSL AVX-512 RSA", line);
    if (f->ia32cap_set && f->ossl_rsaz_eff)
        tg_buf_printf(out, "%-" W "s OPENSSL_ia32cap=\"%s\" is set\n", "", f->ia32cap);

    tg_buf_puts(out, "\nKey providers (which can run here)\n");
    if (f->n_provs == 0)
        tg_buf_puts(out, "  (none registered)\n");
    for (size_t i = 0; i < f->n_provs; i++)
        tg_text_provider(&f->provs[i], out);
    for (size_t i = 0; i < f->n_provs; i++)
        tg_text_provider_details(&f->provs[i], out);
}

/* ---- JSON ---- */

void tg_doctor_json_str(struct tg_buf *out, const char *s)
{
    tg_buf_append(out, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            tg_buf_puts(out, "\\\"");
            break;
        case '\\':
            tg_buf_puts(out, "\\\\");
            break;
        case '\n':
            tg_buf_puts(out, "\\n");
            break;
        case '\r':
            tg_buf_puts(out, "\\r");
            break;
        case '\t':
            tg_buf_puts(out, "\\t");
            break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                tg_buf_printf(out, "\\u%04x", *p);
            else
                tg_buf_append(out, p, 1);
        }
    }
    tg_buf_append(out, "\"", 1);
}

/* "key": */
static void tg_jkey(struct tg_buf *out, const char *key)
{
    tg_doctor_json_str(out, key);
    tg_buf_append(out, ":", 1);
}

static const char *tg_jbool_text(bool v)
{
    return v ? "true" : "false";
}

static void tg_jbool(struct tg_buf *out, const char *key, bool v)
{
    tg_jkey(out, key);
    tg_buf_puts(out, tg_jbool_text(v));
}

static void tg_jstr(struct tg_buf *out, const char *key, const char *v)
{
    tg_jkey(out, key);
    if (v)
        tg_doctor_json_str(out, v);
    else
        tg_buf_puts(out, "null");
}

static void tg_jint(struct tg_buf *out, const char *key, long long v)
{
    tg_jkey(out, key);
    tg_buf_printf(out, "%lld", v);
}

static void tg_json_provider(const struct tg_doctor_prov *p, struct tg_buf *out)
{
    tg_buf_append(out, "{", 1);
    tg_jstr(out, "name", p->name);
    tg_buf_append(out, ",", 1);
    tg_jstr(out, "description", p->description);
    tg_buf_append(out, ",", 1);
    tg_jbool(out, "available", p->rc == TG_OK);
    tg_buf_append(out, ",", 1);
    tg_jstr(out, "why", p->rc == TG_OK ? NULL : p->why);
    tg_buf_append(out, ",", 1);
    tg_jkey(out, "doctor");
    tg_buf_append(out, "[", 1);
    const char *s = p->lines.len ? p->lines.data : "";
    bool first = true;
    while (*s) {
        const char *nl = strchr(s, '\n');
        size_t l = nl ? (size_t)(nl - s) : strlen(s);
        if (l > 0) {
            char *line = strndup(s, l);
            if (line == NULL) {
                out->failed = true;
                return;
            }
            if (!first)
                tg_buf_append(out, ",", 1);
            tg_doctor_json_str(out, line);
            free(line);
            first = false;
        }
        s += l + (nl ? 1 : 0);
    }
    tg_buf_puts(out, "]");
    if (p->json.len > 0) {
        /* The provider's own facts, as members of one object. */
        tg_buf_append(out, ",", 1);
        tg_jkey(out, "details");
        tg_buf_append(out, "{", 1);
        tg_buf_append(out, p->json.data, p->json.len);
        tg_buf_append(out, "}", 1);
    }
    tg_buf_puts(out, "}");
}

void tg_doctor_render_json(const struct tg_doctor_facts *f, struct tg_buf *out)
{
    char line[256];
    tg_buf_append(out, "{", 1);
    tg_jstr(out, "tlsgate_version", f->version);

    tg_buf_puts(out, ",\"openssl\":{");
    tg_jstr(out, "runtime", f->ossl_runtime);
    tg_buf_append(out, ",", 1);
    tg_jstr(out, "headers", f->ossl_headers);
    tg_buf_append(out, ",", 1);
    tg_jbool(out, "mismatch", f->ossl_mismatch);
    tg_buf_append(out, ",", 1);
    tg_jbool(out, "avx512_rsa_eligible", f->ossl_rsaz_cpu);
    tg_buf_append(out, ",", 1);
    tg_jbool(out, "avx512_rsa_used", f->ossl_rsaz_eff);
    tg_buf_append(out, ",", 1);
    tg_jstr(out, "ia32cap_env", f->ia32cap_set ? f->ia32cap : NULL);
    tg_buf_append(out, ",", 1);
    tg_rsaz_text(f, line, sizeof(line));
    tg_jstr(out, "avx512_rsa", line);
    tg_buf_append(out, "}", 1);

    tg_buf_puts(out, ",\"cpu\":{");
    tg_jstr(out, "model", f->cpuinfo.model);
    tg_buf_append(out, ",", 1);
    tg_jint(out, "online", f->cpus_online);
    tg_buf_append(out, ",", 1);
    tg_jint(out, "allowed", f->cpus_allowed);
    tg_buf_append(out, ",", 1);
    tg_jbool(out, "cpuinfo_readable", f->cpuinfo_rc == TG_OK);
    tg_buf_append(out, ",", 1);
    tg_jbool(out, "cpuid_available", f->cpuid.valid);
    tg_buf_append(out, ",", 1);
    tg_jbool(out, "os_avx512", f->cpuid.os_avx512);
    tg_buf_append(out, ",", 1);
    tg_jkey(out, "xcr0");
    tg_buf_printf(out, "\"0x%llx\"",
                  (unsigned long long)(f->cpuid.os_xsave ? f->cpuid.regs.xcr0 : 0));
    tg_buf_append(out, ",", 1);
    tg_jbool(out, "avx512_ifma_usable", f->ifma_gate);
    tg_buf_append(out, ",", 1);
    tg_jbool(out, "fake_no_ifma", f->fake_no_ifma);
    tg_buf_append(out, ",", 1);
    tg_jint(out, "mismatches", (long long)tg_mismatches(f));
    tg_buf_puts(out, ",\"features\":{");
    for (size_t i = 0; i < TG_CPU_FEATURE_COUNT; i++) {
        if (i)
            tg_buf_append(out, ",", 1);
        tg_jkey(out, tg_cpu_feature_name((enum tg_cpu_feature)i));
        tg_buf_append(out, "{", 1);
        tg_jkey(out, "cpuinfo");
        tg_buf_puts(out, f->cpuinfo_rc == TG_OK ? tg_jbool_text(f->cpuinfo.flag[i]) : "null");
        tg_buf_append(out, ",", 1);
        tg_jkey(out, "cpuid");
        tg_buf_puts(out, f->cpuid.valid ? tg_jbool_text(f->cpuid.usable[i]) : "null");
        tg_buf_append(out, ",", 1);
        tg_jbool(out, "mismatch", tg_feature_mismatch(f, i));
        tg_buf_append(out, "}", 1);
    }
    tg_buf_puts(out, "}}");

    tg_buf_puts(out, ",\"key_providers\":[");
    for (size_t i = 0; i < f->n_provs; i++) {
        if (i)
            tg_buf_append(out, ",", 1);
        tg_json_provider(&f->provs[i], out);
    }
    tg_buf_puts(out, "]}\n");
}

int tg_doctor_report(const struct tg_doctor_opts *opts, const struct tg_keyprov_ops *const *provs,
                     size_t n, bool json, struct tg_buf *out)
{
    struct tg_doctor_facts f;
    int rc = tg_doctor_collect(opts, provs, n, &f);
    if (rc == TG_OK) {
        if (json)
            tg_doctor_render_json(&f, out);
        else
            tg_doctor_render_text(&f, out);
        if (tg_buf_failed(out))
            rc = TG_ENOMEM;
    }
    tg_doctor_facts_free(&f);
    return rc;
}
