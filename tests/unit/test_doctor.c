/* Unit tests for src/doctor: provider probing against a fake provider table
 * (init / doctor hook / cleanup, the roots a hook sees), the text and JSON
 * reports over a cpuinfo fixture, and the command-line front end. The doctor
 * knows no provider's hardware: nothing here depends on QAT. */
#include "tg_test_util.h"

#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/tg_sysinfo.h"
#include "doctor/tg_doctor.h"
#include "doctor/tg_doctor_report.h"
#include "keyprov/tg_keyprov.h"
#include "providers/deferred/tg_deferred.h"
#include "providers/software/tg_software.h"

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

/* ---- fake providers ---- */

static int ok_inits, ok_cleanups, un_inits, un_cleanups, silent_cleanups;

static int ok_init(char *why, size_t whylen)
{
    (void)why;
    (void)whylen;
    ok_inits++;
    return TG_OK;
}
static void ok_cleanup(void)
{
    ok_cleanups++;
}
static void ok_doctor(struct tg_buf *out, struct tg_buf *json)
{
    (void)json;
    /* Only meaningful while initialised: the doctor runs before cleanup. */
    tg_buf_printf(out, "line one (initialised=%d)\n\nline two\n", ok_inits - ok_cleanups);
}

static int un_init(char *why, size_t whylen)
{
    un_inits++;
    snprintf(why, whylen, "no \"HW\" device\tfound");
    return TG_EUNAVAIL;
}
static void un_cleanup(void)
{
    un_cleanups++;
}
static void un_doctor(struct tg_buf *out, struct tg_buf *json)
{
    (void)json;
    tg_buf_puts(out, "checked \\sys"); /* no trailing newline */
}

static int silent_init(char *why, size_t whylen)
{
    (void)why;
    (void)whylen;
    return TG_EIO; /* and writes no reason */
}
static void silent_cleanup(void)
{
    silent_cleanups++;
}

/* A hook that reads devices: it reports the roots it sees, as text and as
 * JSON members (details). */
static void roots_doctor(struct tg_buf *out, struct tg_buf *json)
{
    tg_buf_printf(out, "sysfs root: %s\ndev root: %s\n", tg_sysinfo_sysfs_root(),
                  tg_sysinfo_dev_root());
    /* doctor --config: the blocks that name this provider. */
    size_t it = 0;
    const struct tg_conf_keyprov *kp;
    while ((kp = tg_keyprov_doctor_block("fake_roots", &it)) != NULL)
        tg_buf_printf(out, "configured: %s\n", kp->path);
    tg_buf_puts(json, "\"sysfs_root\":\"");
    tg_buf_puts(json, tg_sysinfo_sysfs_root());
    tg_buf_puts(json, "\",\"devices\":[1,2]");
}

/* Writes a reason longer than the buffer it was given, unterminated. */
static int long_init(char *why, size_t whylen)
{
    memset(why, 'x', whylen);
    return TG_EUNAVAIL;
}

static const struct tg_keyprov_ops fake_ok = {
    .name = "fake_ok",
    .description = "A provider that always works",
    .global_init = ok_init,
    .global_cleanup = ok_cleanup,
    .doctor = ok_doctor,
};
static const struct tg_keyprov_ops fake_un = {
    .name = "fake_hw",
    .description = "Needs hardware",
    .global_init = un_init,
    .global_cleanup = un_cleanup,
    .doctor = un_doctor,
};
static const struct tg_keyprov_ops fake_silent = {
    .name = "fake_silent",
    .description = "Fails without saying why",
    .global_init = silent_init,
    .global_cleanup = silent_cleanup,
};
static const struct tg_keyprov_ops fake_noinit = {
    .name = "fake_noinit", /* no description, no init: available */
};
static const struct tg_keyprov_ops fake_long = {
    .name = "fake_long",
    .description = "Overlong reason",
    .global_init = long_init,
};

/* The registry wants a submit function; the doctor never calls it. */
static int roots_submit(void *state, struct tg_keyop *op)
{
    (void)state;
    (void)op;
    return TG_EUNAVAIL;
}

static const struct tg_keyprov_ops fake_roots = {
    .name = "fake_roots",
    .description = "Reads devices",
    .submit = roots_submit,
    .doctor = roots_doctor,
};

static const struct tg_keyprov_ops *const fakes[] = {
    &fake_ok, &fake_un, NULL, &fake_silent, &fake_noinit, &fake_long, &fake_roots};

/* ---- fixtures ---- */

static const char cpuinfo_no_ifma[] = "processor\t: 0\n"
                                      "model name\t: Test CPU \"quoted\"\n"
                                      "flags\t\t: fpu aes avx bmi2 adx avx512f avx512dq avx512bw "
                                      "avx512vl\n\n";

struct env {
    char sys[PATH_MAX], dev[PATH_MAX];
    const char *cpuinfo;
};

/* The roots only need to be names: the doctor passes them on, the fake
 * provider prints them. */
static struct env *fixture(void)
{
    static struct env e;
    static bool built;
    if (built)
        return &e;
    const char *tmp = tg_test_tmpdir();
    pathf(e.sys, sizeof(e.sys), "%s/dsys", tmp);
    pathf(e.dev, sizeof(e.dev), "%s/ddev", tmp);
    e.cpuinfo = tg_test_write_file("doctor_cpuinfo", cpuinfo_no_ifma, strlen(cpuinfo_no_ifma));
    built = true;
    return &e;
}

/* ---- a minimal JSON validator (syntax only) ---- */

static const char *js_ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
        p++;
    return p;
}

static const char *js_value(const char *p, int depth);

static const char *js_string(const char *p)
{
    if (*p != '"')
        return NULL;
    for (p++; *p != '"'; p++) {
        if ((unsigned char)*p < 0x20)
            return NULL;
        if (*p == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!strchr("0123456789abcdefABCDEF", p[i]) || p[i] == '\0')
                        return NULL;
                p += 4;
            } else if (!*p || !strchr("\"\\/bfnrt", *p)) {
                return NULL;
            }
        }
    }
    return p + 1;
}

static const char *js_value(const char *p, int depth)
{
    if (depth > 32)
        return NULL;
    p = js_ws(p);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        bool obj = *p == '{';
        p = js_ws(p + 1);
        if (*p == close)
            return p + 1;
        for (;;) {
            if (obj) {
                p = js_string(js_ws(p));
                if (p == NULL)
                    return NULL;
                p = js_ws(p);
                if (*p++ != ':')
                    return NULL;
            }
            p = js_value(p, depth + 1);
            if (p == NULL)
                return NULL;
            p = js_ws(p);
            if (*p == ',') {
                p++;
                continue;
            }
            return *p == close ? p + 1 : NULL;
        }
    }
    if (*p == '"')
        return js_string(p);
    if (strncmp(p, "true", 4) == 0)
        return p + 4;
    if (strncmp(p, "false", 5) == 0)
        return p + 5;
    if (strncmp(p, "null", 4) == 0)
        return p + 4;
    const char *s = p;
    if (*p == '-')
        p++;
    while (*p >= '0' && *p <= '9')
        p++;
    return p > s ? p : NULL;
}

static void assert_json(const char *text)
{
    const char *end = js_value(text, 0);
    if (end == NULL || *js_ws(end) != '\0')
        fail_msg("invalid JSON near offset %ld: %.200s", end ? (long)(end - text) : -1L, text);
}

/* ---- tests ---- */

static void test_probe_and_text(void **state)
{
    (void)state;
    struct env *e = fixture();
    struct tg_doctor_opts o = {
        .sysfs_root = e->sys, .dev_root = e->dev, .cpuinfo_path = e->cpuinfo};
    struct tg_doctor_facts f;
    ok_inits = ok_cleanups = un_inits = un_cleanups = silent_cleanups = 0;
    assert_int_equal(tg_doctor_collect(&o, fakes, TG_ARRAY_LEN(fakes), &f), TG_OK);

    /* Probing: init once each; cleanup only after a successful init. */
    assert_int_equal(ok_inits, 1);
    assert_int_equal(ok_cleanups, 1);
    assert_int_equal(un_inits, 1);
    assert_int_equal(un_cleanups, 0);
    assert_int_equal(silent_cleanups, 0);
    assert_int_equal(f.n_provs, 6); /* the NULL entry is skipped */
    assert_int_equal(f.provs[0].rc, TG_OK);
    assert_int_equal(f.provs[1].rc, TG_EUNAVAIL);
    assert_string_equal(f.provs[2].why, tg_strerror(TG_EIO));
    assert_int_equal(f.provs[3].rc, TG_OK);
    assert_string_equal(f.provs[3].description, "");
    assert_int_equal(strlen(f.provs[4].why), sizeof(f.provs[4].why) - 1);

    /* The hooks saw the roots of the options; afterwards they are back. */
    char want[PATH_MAX + 64];
    pathf(want, sizeof(want), "sysfs root: %s\ndev root: %s\n", e->sys, e->dev);
    assert_string_equal(f.provs[5].lines.data, want);
    assert_string_equal(tg_sysinfo_sysfs_root(), "/sys");
    assert_string_equal(tg_sysinfo_dev_root(), "/dev");

    struct tg_buf out = TG_BUF_INIT;
    tg_doctor_render_text(&f, &out);
    assert_false(tg_buf_failed(&out));
    const char *t = out.data;
    assert_has(t, "tlsgate                  ");
    assert_has(t, tg_sysinfo_openssl_runtime());
    assert_has(t, "CPU model                Test CPU \"quoted\"\n");
    /* The list: status and description per provider. */
    assert_has(t, "\nKey providers (which can run here)\n"
                  "  fake_ok                  available\n"
                  "                           A provider that always works\n"
                  "  fake_hw                  unavailable: no \"HW\" device\tfound\n"
                  "                           Needs hardware\n");
    assert_has(t, "  fake_silent              unavailable: input/output error\n");
    assert_has(t, "  fake_noinit              available\n  fake_long");
    /* Then each provider's own lines in a section of their own, empty
     * lines dropped, a missing final newline added. */
    assert_has(t, "\nfake_ok provider\n  line one (initialised=1)\n  line two\n");
    assert_has(t, "\nfake_hw provider\n  checked \\sys\n");
    assert_true(strstr(t, "fake_silent provider") == NULL); /* no lines: no section */
    char sect[PATH_MAX + 64];
    pathf(sect, sizeof(sect), "\nfake_roots provider\n  sysfs root: %s\n", e->sys);
    assert_has(t, sect);
    /* The sections come after the whole list. */
    assert_true(strstr(t, "fake_ok provider") > strstr(t, "  fake_roots "));
    /* The doctor itself names no device, driver or limit of any provider. */
    assert_true(strstr(t, "QAT") == NULL);
    assert_true(strstr(t, "memlock") == NULL);
    assert_true(strstr(t, "IOMMU") == NULL);
    /* The cpuinfo column comes from the fixture (no IFMA, no SHA). */
    assert_has(t, "  avx512ifma             no        ");
    tg_buf_free(&out);
    tg_doctor_facts_free(&f);
}

static void test_json(void **state)
{
    (void)state;
    struct env *e = fixture();
    struct tg_doctor_opts o = {
        .sysfs_root = e->sys, .dev_root = e->dev, .cpuinfo_path = e->cpuinfo};
    struct tg_buf out = TG_BUF_INIT;
    assert_int_equal(tg_doctor_report(&o, fakes, TG_ARRAY_LEN(fakes), true, &out), TG_OK);
    assert_json(out.data);
    const char *j = out.data;
    assert_has(j, "\"tlsgate_version\":\"");
    assert_has(j, "\"model\":\"Test CPU \\\"quoted\\\"\"");
    assert_has(j, "\"avx512ifma\":{\"cpuinfo\":false,");
    assert_has(j, "{\"name\":\"fake_ok\",\"description\":\"A provider that always works\","
                  "\"available\":true,\"why\":null,\"doctor\":[\"line one (initialised=1)\","
                  "\"line two\"]}");
    assert_has(j, "\"available\":false,\"why\":\"no \\\"HW\\\" device\\tfound\","
                  "\"doctor\":[\"checked \\\\sys\"]");
    /* A hook's JSON members become its "details" object. */
    char details[PATH_MAX + 64];
    pathf(details, sizeof(details), "\"details\":{\"sysfs_root\":\"%s\",\"devices\":[1,2]}}",
          e->sys);
    assert_has(j, details);
    /* Top level: generic facts and the providers, nothing provider-specific. */
    assert_true(strstr(j, "\"qat\"") == NULL);
    assert_true(strstr(j, "\"memlock\"") == NULL);
    assert_int_equal(j[out.len - 1], '\n');
    tg_buf_free(&out);

    /* No providers: still a valid object. */
    assert_int_equal(tg_doctor_report(&o, NULL, 0, true, &out), TG_OK);
    assert_json(out.data);
    assert_has(out.data, "\"key_providers\":[]");
    tg_buf_free(&out);

    /* Escaping of every control byte. */
    tg_doctor_json_str(&out, "a\x01\x1f\x7f\"\\\r\n\tz\xc3\xa9");
    assert_string_equal(out.data, "\"a\\u0001\\u001f\\u007f\\\"\\\\\\r\\n\\tz\xc3\xa9\"");
    tg_buf_free(&out);
}

static void test_nothing_registered(void **state)
{
    (void)state;
    fixture();
    char missing[PATH_MAX];
    pathf(missing, sizeof(missing), "%s/does-not-exist", tg_test_tmpdir());
    struct tg_buf out = TG_BUF_INIT;
    assert_int_equal(tg_doctor_report(NULL, NULL, 0, false, &out), TG_OK);
    assert_has(out.data, "  (none registered)\n");
    assert_true(strstr(out.data, " provider\n") == NULL);
    tg_buf_free(&out);

    struct tg_doctor_opts o = {.cpuinfo_path = missing};
    assert_int_equal(tg_doctor_report(&o, NULL, 0, false, &out), TG_OK);
    assert_has(out.data, "(cpuinfo: input/output error)");
    tg_buf_free(&out);
    assert_int_equal(tg_doctor_report(&o, NULL, 0, true, &out), TG_OK);
    assert_json(out.data);
    assert_has(out.data, "\"cpuinfo_readable\":false");
    assert_has(out.data, "\"cpuinfo\":null");
    tg_buf_free(&out);
}

/* Pure rendering of hand-made facts: mismatch flags, OpenSSL masking, the
 * IFMA override, a long reason wrapped. */
static void test_render_cases(void **state)
{
    (void)state;
    struct tg_doctor_facts f;
    memset(&f, 0, sizeof(f));
    f.version = "9.9.9";
    f.ossl_runtime = "OpenSSL 3.0.19";
    f.ossl_headers = "OpenSSL 3.5.0";
    f.ossl_mismatch = true;
    f.cpuinfo_rc = TG_OK;
    f.cpuinfo.has_flags = true;
    f.cpuinfo.flag[TG_CPU_AVX512IFMA] = true;
    f.cpuinfo.flag[TG_CPU_AES] = true;
    f.cpuid.valid = true;
    f.cpuid.os_xsave = true;
    f.cpuid.regs.xcr0 = 0x7;
    f.cpuid.cpu[TG_CPU_AVX512F] = true; /* has it, OS does not enable it */
    f.cpuid.cpu[TG_CPU_AES] = f.cpuid.usable[TG_CPU_AES] = true;
    f.fake_no_ifma = true;
    f.ossl_rsaz_cpu = true;
    f.ossl_rsaz_eff = false;
    f.ia32cap_set = true;
    pathf(f.ia32cap, sizeof(f.ia32cap), ":~0x200000");
    /* A provider whose reason needs wrapping. */
    struct tg_doctor_prov prov = {.name = "wordy", .description = "", .rc = TG_EUNAVAIL};
    for (size_t i = 0; i + 6 < sizeof(prov.why); i += 6)
        memcpy(prov.why + i, "words ", 6);
    prov.why[sizeof(prov.why) - 1] = '\0';
    f.provs = &prov;
    f.n_provs = 1;

    struct tg_buf out = TG_BUF_INIT;
    tg_doctor_render_text(&f, &out);
    const char *t = out.data;
    assert_has(t, "OpenSSL (headers)        OpenSSL 3.5.0   <-- MISMATCH");
    assert_has(t, "  avx512ifma             yes       no     <-- MISMATCH\n");
    assert_has(t, "  avx512f                no        no     (CPU has it; the OS does not");
    assert_has(t, "  aes                    yes       yes\n");
    assert_has(t, "cpuinfo and CPUID disagree");
    assert_has(t, "OS AVX-512 state         NOT enabled (XCR0 0x7)\n");
    assert_has(t, "AVX-512 IFMA (cryptomb)  no (TG_FAKE_NO_IFMA is set");
    assert_has(t, "OpenSSL AVX-512 RSA      MASKED by OPENSSL_ia32cap=\":~0x200000\"");
    assert_has(t, "  wordy                    unavailable: words words");
    /* Wrapped: no line of this report is wider than 100 columns. */
    for (const char *l = t; *l;) {
        const char *nl = strchr(l, '\n');
        assert_non_null(nl);
        if (nl - l > 100)
            fail_msg("line too wide: %.*s", (int)(nl - l), l);
        l = nl + 1;
    }
    tg_buf_free(&out);

    f.ossl_rsaz_eff = true;
    f.ia32cap_set = false;
    tg_doctor_render_text(&f, &out);
    assert_has(out.data, "OpenSSL AVX-512 RSA      used (RSA-2048..4096");
    tg_buf_free(&out);
    f.ossl_rsaz_cpu = false;
    tg_doctor_render_json(&f, &out);
    assert_json(out.data);
    assert_has(out.data, "\"avx512_rsa_used\":true");
    assert_has(out.data, "\"mismatches\":1");
    assert_has(out.data, "{\"name\":\"wordy\",\"description\":\"\",\"available\":false,");
    tg_buf_free(&out);
}

/* The live collection follows the environment variables. */
static void test_env_effects(void **state)
{
    (void)state;
    fixture();
    struct tg_doctor_facts f;
    setenv("TG_FAKE_NO_IFMA", "1", 1);
    setenv("OPENSSL_ia32cap", ":~0x200000", 1);
    assert_int_equal(tg_doctor_collect(NULL, NULL, 0, &f), TG_OK);
    assert_true(f.fake_no_ifma);
    assert_false(f.ifma_gate);
    assert_true(f.ia32cap_set);
    assert_string_equal(f.ia32cap, ":~0x200000");
    assert_false(f.ossl_rsaz_eff); /* IFMA masked for OpenSSL, whatever the CPU */
    tg_doctor_facts_free(&f);
    unsetenv("TG_FAKE_NO_IFMA");
    unsetenv("OPENSSL_ia32cap");
    assert_int_equal(tg_doctor_collect(NULL, NULL, 0, &f), TG_OK);
    assert_false(f.fake_no_ifma);
    assert_false(f.ia32cap_set);
    assert_int_equal(f.ossl_rsaz_eff, f.ossl_rsaz_cpu);
    assert_int_equal(f.ifma_gate, tg_sysinfo_cpu_has_avx512_ifma());
    tg_doctor_facts_free(&f);
}

/* Run tg_doctor_main with stdout captured into a file; returns its status. */
static int run_main(int argc, char **argv, struct tg_buf *captured)
{
    char path[PATH_MAX];
    pathf(path, sizeof(path), "%s/doctor_stdout", tg_test_tmpdir());
    fflush(stdout);
    int saved = dup(1);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 1);
    close(fd);
    int rc = tg_doctor_main(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        tg_buf_append(captured, buf, n);
    fclose(f);
    return rc;
}

static void test_main_cli(void **state)
{
    (void)state;
    struct env *e = fixture();
    struct tg_buf out = TG_BUF_INIT;
    char *a1[] = {"doctor", "--bogus", NULL};
    assert_int_equal(run_main(2, a1, &out), 2);
    char *a2[] = {"doctor", "--sysfs-root", NULL};
    assert_int_equal(run_main(2, a2, &out), 2);
    char *a3[] = {"doctor", "--sysfs-root=", NULL};
    assert_int_equal(run_main(2, a3, &out), 2);
    assert_int_equal(out.len, 0); /* usage errors go to stderr */
    char *a4[] = {"doctor", "--help", NULL};
    assert_int_equal(run_main(2, a4, &out), 0);
    assert_has(out.data, "usage: tlsgate doctor");
    tg_buf_free(&out);

    /* The real registry: --sysfs-root reaches a provider's hook. */
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider, &tg_deferred_provider, &fake_roots);
    char *a5[] = {"doctor", "--sysfs-root", e->sys, NULL};
    assert_int_equal(run_main(3, a5, &out), 0);
    assert_has(out.data, "Key providers (which can run here)\n");
    assert_has(out.data, "  software ");
    char want[PATH_MAX + 32];
    pathf(want, sizeof(want), "  sysfs root: %s\n  dev root: /dev\n", e->sys);
    assert_has(out.data, want);
    tg_buf_free(&out);
    char sysarg[PATH_MAX + 16];
    pathf(sysarg, sizeof(sysarg), "--sysfs-root=%s", e->sys);
    char *a6[] = {"doctor", "--json", sysarg, NULL};
    assert_int_equal(run_main(3, a6, &out), 0);
    assert_json(out.data);
    assert_has(out.data, "{\"name\":\"software\"");
    pathf(want, sizeof(want), "\"details\":{\"sysfs_root\":\"%s\"", e->sys);
    assert_has(out.data, want);
    tg_buf_free(&out);
    /* Without the flag: the real root. */
    char *a7[] = {"doctor", NULL};
    assert_int_equal(run_main(1, a7, &out), 0);
    assert_has(out.data, "  sysfs root: /sys\n");
    assert_null(strstr(out.data, "configured:"));
    tg_buf_free(&out);
    assert_string_equal(tg_sysinfo_sysfs_root(), "/sys");

    /* --config: a configuration that does not load is a usage error (2);
     * one that does reaches the hooks, for the blocks naming them only. */
    char *a8[] = {"doctor", "--config", NULL};
    assert_int_equal(run_main(2, a8, &out), 2);
    char *a9[] = {"doctor", "--config", "/nonexistent/gw.yaml", NULL};
    assert_int_equal(run_main(3, a9, &out), 2);
    char *a10[] = {"doctor", "--config=", NULL};
    assert_int_equal(run_main(2, a10, &out), 2);
    assert_int_equal(out.len, 0);
    char *cert, *key;
    tg_test_make_cert("EC:P-256", "doctor.test", &cert, &key);
    char certf[PATH_MAX], keyf[PATH_MAX], yaml[5 * PATH_MAX];
    pathf(certf, sizeof(certf), "%s", tg_test_write_file("doctor.crt", cert, strlen(cert)));
    pathf(keyf, sizeof(keyf), "%s", tg_test_write_file("doctor.key", key, strlen(key)));
    free(cert);
    free(key);
    snprintf(yaml, sizeof(yaml),
             "listeners:\n"
             "  - address: 127.0.0.1:0\n"
             "    tls:\n"
             "      certificates:\n"
             "        - { certificate_chain: { filename: %s }, private_key: { filename: %s } }\n"
             "        - certificate_chain: { filename: %s }\n"
             "          private_key: { filename: %s }\n"
             "          private_key_provider: { provider_name: fake_roots }\n"
             "    upstream: { address: 127.0.0.1:1 }\n",
             certf, keyf, certf, keyf);
    char cfgf[PATH_MAX];
    pathf(cfgf, sizeof(cfgf), "%s", tg_test_write_file("doctor.yaml", yaml, strlen(yaml)));
    char *a11[] = {"doctor", "--config", cfgf, NULL};
    assert_int_equal(run_main(3, a11, &out), 0);
    assert_has(out.data, "  configured: listeners[0].tls.certificates[1].private_key_provider\n");
    assert_null(strstr(out.data, "certificates[0]"));
    tg_buf_free(&out);
    /* The configuration is the report's only: nothing is left behind. */
    size_t it = 0;
    assert_null(tg_keyprov_doctor_block("fake_roots", &it));
}

int main(void)
{
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider, &tg_deferred_provider);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe_and_text),     cmocka_unit_test(test_json),
        cmocka_unit_test(test_nothing_registered), cmocka_unit_test(test_render_cases),
        cmocka_unit_test(test_env_effects),        cmocka_unit_test(test_main_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
