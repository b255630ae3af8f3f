/*
 * What the qat provider reads from the machine, over fixture trees: the PCI
 * scan (ids, driver, IOMMU group, VF count), IOMMU groups, /dev/vfio access
 * and per-function advice, the memlock verdicts, and the doctor hook's text
 * and JSON (device table, IOMMU, memlock, verdict) with the sysfs root set
 * the way `tlsgate doctor --sysfs-root` sets it. Runs the same in a build
 * with and without the qatlib headers (the machine half is shared).
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/tg_sysinfo.h"
#include "keyprov/tg_keyprov.h"
#include "providers/deferred/tg_deferred.h"
#include "providers/qat/tg_qat.h"
#include "providers/qat/tg_qat_internal.h"
#include "providers/qat/tg_qat_lib.h"
#include "providers/qat/tg_qat_memlock.h"
#include "providers/qat/tg_qat_pci.h"
#include "providers/software/tg_software.h"
#include "tg_test_util.h"

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

/* ---- fixture trees ---- */

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

/* A mixed bus: QAT PFs and VFs of two generations, and things that are not
 * QAT or not parseable. */
static const char *mixed_sysfs(void)
{
    static char root[PATH_MAX];
    if (root[0] != '\0')
        return root;
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

/* A 4xxx host as qatlib wants it, almost: one PF without VFs enabled, VFs on
 * vfio-pci (one with its /dev node, one without), one VF on the kernel
 * driver. */
struct host {
    char sys[PATH_MAX], dev[PATH_MAX];
};

static const struct host *host_tree(void)
{
    static struct host h;
    if (h.sys[0] != '\0')
        return &h;
    pathf(h.sys, sizeof(h.sys), "%s/hsys", tg_test_tmpdir());
    pathf(h.dev, sizeof(h.dev), "%s/hdev", tg_test_tmpdir());
    fake_dev(h.sys, "0000:6b:00.0", "0x8086\n", "0x4940\n", "qat_4xxx", NULL, "0\n");
    fake_dev(h.sys, "0000:6b:00.1", "0x8086\n", "0x4941\n", "vfio-pci", "5", NULL);
    fake_dev(h.sys, "0000:6b:00.2", "0x8086\n", "0x4941\n", "4xxxvf", "6", NULL);
    fake_dev(h.sys, "0000:6b:00.3", "0x8086\n", "0x4941\n", "vfio-pci", "7", NULL);
    char vfio[PATH_MAX];
    pathf(vfio, sizeof(vfio), "%s/vfio", h.dev);
    mkdirs(vfio);
    put(vfio, "5", "");
    return &h;
}

/* A bus with no QAT and a kernel/iommu_groups directory that is empty. */
static const char *plain_sysfs(void)
{
    static char root[PATH_MAX];
    if (root[0] != '\0')
        return root;
    char d[PATH_MAX];
    pathf(root, sizeof(root), "%s/plain", tg_test_tmpdir());
    fake_dev(root, "0000:00:1f.0", "0x8086\n", "0x1234\n", "lpc_ich", NULL, NULL);
    pathf(d, sizeof(d), "%s/kernel/iommu_groups", root);
    mkdirs(d);
    return root;
}

/* ---- a minimal JSON validator (syntax only) ---- */

static const char *js_ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
        p++;
    return p;
}

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
                    if (p[i] == '\0' || !strchr("0123456789abcdefABCDEF", p[i]))
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

/* The hook writes members of one object: check them as that object. */
static void assert_json_members(const struct tg_buf *members)
{
    struct tg_buf obj = TG_BUF_INIT;
    tg_buf_puts(&obj, "{");
    tg_buf_append(&obj, members->data, members->len);
    tg_buf_puts(&obj, "}");
    const char *end = js_value(obj.data, 0);
    if (end == NULL || *js_ws(end) != '\0')
        fail_msg("invalid JSON near offset %ld: %.300s", end ? (long)(end - obj.data) : -1L,
                 obj.data);
    tg_buf_free(&obj);
}

/* ---- PCI ---- */

static void test_scan(void **state)
{
    (void)state;
    const char *root = mixed_sysfs();
    struct tg_qat_dev devs[TG_QAT_MAX_DEVICES];
    size_t n = 99, found = 99;
    assert_int_equal(tg_qat_pci_scan(root, devs, TG_ARRAY_LEN(devs), &n, &found), TG_OK);
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
    assert_int_equal(tg_qat_pci_scan(root, devs, 2, &n, &found), TG_OK);
    assert_int_equal(n, 2);
    assert_int_equal(found, 4);
    assert_int_equal(tg_qat_pci_scan(root, devs, 0, &n, NULL), TG_OK);
    assert_int_equal(n, 0);

    assert_int_equal(tg_qat_pci_iommu_groups(root), 3); /* 42, 43, 7 */

    /* No PCI bus at all (container without /sys). */
    char empty[PATH_MAX];
    pathf(empty, sizeof(empty), "%s/nosys", tg_test_tmpdir());
    mkdirs(empty);
    assert_int_equal(tg_qat_pci_scan(empty, devs, 4, &n, &found), TG_EUNAVAIL);
    assert_int_equal(n, 0);
    assert_int_equal(found, 0);
    assert_int_equal(tg_qat_pci_iommu_groups(empty), -1);

    /* The real /sys must not fail (it may simply have no QAT). */
    int rc = tg_qat_pci_scan("/sys", devs, TG_ARRAY_LEN(devs), &n, &found);
    assert_true(rc == TG_OK || rc == TG_EUNAVAIL);
}

static void test_ids(void **state)
{
    (void)state;
    bool vf = true;
    const char *fam = NULL;
    static const uint16_t pf[] = {0x4940, 0x4942, 0x4944, 0x4946, 0x0435,
                                  0x37c8, 0x19e2, 0x6f54, 0x18ee};
    static const uint16_t vfs[] = {0x4941, 0x4943, 0x4945, 0x4947, 0x0443,
                                   0x37c9, 0x19e3, 0x6f55, 0x18ef};
    for (size_t i = 0; i < TG_ARRAY_LEN(pf); i++) {
        assert_true(tg_qat_pci_id(0x8086, pf[i], &vf, &fam));
        assert_false(vf);
        assert_non_null(fam);
        assert_true(tg_qat_pci_id(0x8086, vfs[i], &vf, NULL));
        assert_true(vf);
    }
    assert_false(tg_qat_pci_id(0x8086, 0x4948, NULL, NULL));
    assert_false(tg_qat_pci_id(0x1022, 0x4940, NULL, NULL));
    assert_true(tg_qat_pci_id(0x8086, 0x4946, NULL, &fam));
    assert_string_equal(fam, "420xx");
}

static void test_vfio_and_hints(void **state)
{
    (void)state;
    const struct host *h = host_tree();
    struct tg_qat_dev d[8];
    size_t n = 0;
    assert_int_equal(tg_qat_pci_scan(h->sys, d, TG_ARRAY_LEN(d), &n, NULL), TG_OK);
    assert_int_equal(n, 4);
    enum tg_qat_vfio v[4];
    for (size_t i = 0; i < n; i++)
        v[i] = tg_qat_pci_vfio(h->dev, &d[i]);
    assert_int_equal(v[0], TG_QAT_VFIO_NA); /* PF */
    assert_int_equal(v[1], TG_QAT_VFIO_RW);
    assert_int_equal(v[2], TG_QAT_VFIO_NA); /* not on vfio-pci */
    assert_int_equal(v[3], TG_QAT_VFIO_MISSING);
    assert_string_equal(tg_qat_pci_vfio_name(v[1]), "rw");
    assert_string_equal(tg_qat_pci_vfio_name(v[3]), "missing");
    assert_string_equal(tg_qat_pci_vfio_name(TG_QAT_VFIO_DENIED), "no-access");
    assert_string_equal(tg_qat_pci_vfio_name(v[0]), "-");

    assert_string_equal(tg_qat_pci_hint(&d[0], v[0]), "no VFs: echo 16 > sriov_numvfs");
    assert_null(tg_qat_pci_hint(&d[1], v[1]));
    assert_string_equal(tg_qat_pci_hint(&d[2], v[2]), "bind to vfio-pci for qatlib");
    assert_string_equal(tg_qat_pci_hint(&d[3], v[3]), "/dev/vfio/<group> missing");
    assert_string_equal(tg_qat_pci_hint(&d[1], TG_QAT_VFIO_DENIED), "chmod a+rw /dev/vfio/<group>");
    struct tg_qat_dev nogroup = d[1];
    nogroup.iommu_group = -1;
    assert_int_equal(tg_qat_pci_vfio(h->dev, &nogroup), TG_QAT_VFIO_NA);
    assert_string_equal(tg_qat_pci_hint(&nogroup, TG_QAT_VFIO_NA),
                        "no IOMMU group: enable the IOMMU");

    /* A node we may not open (meaningless as root, who may open anything). */
    if (geteuid() != 0) {
        char node[PATH_MAX];
        pathf(node, sizeof(node), "%s/vfio/5", h->dev);
        assert_int_equal(chmod(node, 0), 0);
        assert_int_equal(tg_qat_pci_vfio(h->dev, &d[1]), TG_QAT_VFIO_DENIED);
        assert_int_equal(chmod(node, 0644), 0);
    }
}

/* ---- memlock ---- */

static void test_memlock(void **state)
{
    (void)state;
    struct tg_qat_memlock m;
    char adv[512];
    assert_int_equal(tg_qat_memlock_read(&m), TG_OK);
    (void)tg_qat_memlock_verdict(&m, adv, sizeof(adv));
    assert_true(strlen(adv) > 0);

    struct tg_qat_memlock unl = {.soft_unlimited = true, .hard_unlimited = true};
    assert_int_equal(tg_qat_memlock_verdict(&unl, adv, sizeof(adv)), TG_QAT_MEMLOCK_OK);
    assert_non_null(strstr(adv, "ok for qat"));

    struct tg_qat_memlock raisable = {.soft = 8ULL << 20, .hard_unlimited = true};
    assert_int_equal(tg_qat_memlock_verdict(&raisable, adv, sizeof(adv)), TG_QAT_MEMLOCK_RAISABLE);
    assert_non_null(strstr(adv, "ulimit -l"));

    struct tg_qat_memlock low = {.soft = 64 << 10, .hard = 64 << 10};
    assert_int_equal(tg_qat_memlock_verdict(&low, adv, sizeof(adv)), TG_QAT_MEMLOCK_LOW);
    assert_non_null(strstr(adv, "LimitMEMLOCK"));
    assert_non_null(strstr(adv, "128 MiB"));
    assert_int_equal(tg_qat_memlock_verdict(&low, NULL, 0), TG_QAT_MEMLOCK_LOW);

    struct tg_qat_memlock exact = {.soft = TG_QAT_MEMLOCK_RECOMMENDED,
                                   .hard = TG_QAT_MEMLOCK_RECOMMENDED};
    assert_int_equal(tg_qat_memlock_verdict(&exact, NULL, 0), TG_QAT_MEMLOCK_OK);
    struct tg_qat_memlock just_below = {.soft = TG_QAT_MEMLOCK_RECOMMENDED - 1,
                                        .hard = TG_QAT_MEMLOCK_RECOMMENDED - 1};
    assert_int_equal(tg_qat_memlock_verdict(&just_below, NULL, 0), TG_QAT_MEMLOCK_LOW);
}

/* ---- the doctor hook ---- */

/* The hook with the roots doctor --sysfs-root would set. */
static void run_doctor(const char *sys, const char *dev, struct tg_buf *text, struct tg_buf *json)
{
    tg_sysinfo_set_roots(sys, dev);
    tg_qat_provider.doctor(text, json);
    tg_sysinfo_set_roots(NULL, NULL);
    assert_false(tg_buf_failed(text));
    assert_false(tg_buf_failed(json));
    assert_json_members(json);
}

static void test_doctor_device_table(void **state)
{
    (void)state;
    const struct host *h = host_tree();
    struct tg_buf text = TG_BUF_INIT, json = TG_BUF_INIT;
    run_doctor(h->sys, h->dev, &text, &json);
    const char *t = text.data;
    char line[PATH_MAX + 64];
    pathf(line, sizeof(line), "QAT devices (%s/bus/pci/devices)\n", h->sys);
    assert_has(t, line);
    assert_has(t, "  BDF            ID    FN  FAMILY    DRIVER        IOMMU  VFIO       NOTE\n");
    assert_has(t, "  0000:6b:00.0   4940  PF  4xxx      qat_4xxx      -      -          0 VFs "
                  "no VFs: echo 16 > sriov_numvfs\n");
    assert_has(t, "  0000:6b:00.1   4941  VF  4xxx      vfio-pci      5      rw        \n");
    assert_has(t, "  0000:6b:00.2   4941  VF  4xxx      4xxxvf        6      -          "
                  "bind to vfio-pci for qatlib\n");
    assert_has(t, "  0000:6b:00.3   4941  VF  4xxx      vfio-pci      7      missing    "
                  "/dev/vfio/<group> missing\n");
    assert_has(t, "IOMMU                    on (3 groups)\n");
    assert_has(t, "memlock (RLIMIT_MEMLOCK) soft ");
    assert_has(t, "\nverdict                  not usable: ");
    /* Lines stay narrow enough for the doctor's two-space indent, except
     * table rows, which are never wrapped. */
    for (const char *l = t; *l;) {
        const char *nl = strchr(l, '\n');
        assert_non_null(nl);
        if (nl - l > 98 && strncmp(l, "  0000:", 7) != 0)
            fail_msg("line too wide: %.*s", (int)(nl - l), l);
        l = nl + 1;
    }

    const char *j = json.data;
    pathf(line, sizeof(line),
          "\"pci\":{\"sysfs_root\":\"%s\",\"pci_readable\":true,\"found\":4,"
          "\"iommu_groups\":3,\"devices\":[",
          h->sys);
    assert_has(j, line);
    assert_has(j, "{\"bdf\":\"0000:6b:00.1\",\"device_id\":\"4941\",\"function\":\"VF\","
                  "\"family\":\"4xxx\",\"driver\":\"vfio-pci\",\"iommu_group\":5,"
                  "\"sriov_numvfs\":null,\"vfio\":\"rw\",\"hint\":null}");
    assert_has(j, "{\"bdf\":\"0000:6b:00.0\",\"device_id\":\"4940\",\"function\":\"PF\","
                  "\"family\":\"4xxx\",\"driver\":\"qat_4xxx\",\"iommu_group\":null,"
                  "\"sriov_numvfs\":0,\"vfio\":\"-\",\"hint\":\"no VFs: echo 16 > sriov_numvfs\"}");
    assert_has(j, "\"memlock\":{\"readable\":true,");
    assert_has(j, "\"recommended_for_qat\":134217728,\"ok_for_qat\":");
    assert_has(j, ",\"usable\":false,\"verdict\":\"not usable: ");
    assert_has(j, tg_qat_have_headers() ? "\"headers\":true" : "\"headers\":false");
    tg_buf_free(&text);
    tg_buf_free(&json);
}

static void test_doctor_no_devices(void **state)
{
    (void)state;
    char missing[PATH_MAX];
    pathf(missing, sizeof(missing), "%s/does-not-exist", tg_test_tmpdir());
    struct tg_buf text = TG_BUF_INIT, json = TG_BUF_INIT;
    run_doctor(plain_sysfs(), missing, &text, &json);
    assert_has(text.data, "  none found (PCI vendor 8086, devices 4940-4947)\n");
    assert_has(text.data, "IOMMU                    off (vfio-pci needs it");
    assert_has(json.data, "\"found\":0,\"iommu_groups\":0,\"devices\":[]}");
    tg_buf_free(&text);
    tg_buf_free(&json);

    run_doctor(missing, missing, &text, &json);
    assert_has(text.data, "  cannot read ");
    assert_has(text.data, "(no PCI sysfs here)\n");
    assert_has(text.data, "IOMMU                    unknown (");
    assert_has(json.data, "\"pci_readable\":false,\"found\":0,\"iommu_groups\":null");
    tg_buf_free(&text);
    tg_buf_free(&json);
}

/* The machine's likeliest cause, when the build and qatlib have none. */
static void machine_verdict(const char *sys, const char *dev, const char *want)
{
    struct tg_buf text = TG_BUF_INIT, json = TG_BUF_INIT;
    tg_sysinfo_set_roots(sys, dev);
    tg_qat_doctor_machine(&text, &json, NULL, NULL);
    tg_sysinfo_set_roots(NULL, NULL);
    assert_json_members(&json);
    /* The text may wrap the reason; the JSON member holds it in one piece. */
    char line[256];
    assert_has(text.data, "\nverdict                  not usable: ");
    pathf(line, sizeof(line), ",\"usable\":false,\"verdict\":\"not usable: %s\"", want);
    assert_has(json.data, line);
    tg_buf_free(&text);
    tg_buf_free(&json);
}

static void test_doctor_verdicts(void **state)
{
    (void)state;
    const struct host *h = host_tree();
    machine_verdict(plain_sysfs(), h->dev, "no QAT PCI device on this machine");
    machine_verdict(h->sys, h->dev, "see the reason above"); /* VFs on vfio-pci: ask qatlib */

    /* PFs only; VFs not on vfio-pci. */
    char root[PATH_MAX];
    pathf(root, sizeof(root), "%s/pfonly", tg_test_tmpdir());
    fake_dev(root, "0000:6b:00.0", "0x8086\n", "0x4940\n", "qat_4xxx", NULL, "0\n");
    machine_verdict(root, h->dev,
                    "no QAT virtual function: enable SR-IOV (sriov_numvfs) on the PFs");
    fake_dev(root, "0000:6b:00.1", "0x8086\n", "0x4941\n", "4xxxvf", "9", NULL);
    machine_verdict(root, h->dev, "no QAT VF is bound to vfio-pci");

    /* The build's or qatlib's own reason comes first; usable says what runs. */
    struct tg_buf text = TG_BUF_INIT, json = TG_BUF_INIT;
    tg_qat_doctor_machine(&text, &json, NULL, "rebuild with the qatlib headers");
    assert_has(text.data, "verdict                  not usable: rebuild with the qatlib headers\n");
    tg_buf_free(&text);
    tg_buf_free(&json);
    tg_buf_puts(&json, "\"first\":1");
    tg_qat_doctor_machine(&text, &json, "2 instance(s)", NULL);
    assert_has(text.data, "verdict                  usable (2 instance(s))\n");
    assert_has(json.data, "\"first\":1,\"pci\":{");
    assert_has(json.data, "\"usable\":true,\"verdict\":\"usable (2 instance(s))\"");
    assert_json_members(&json);
    tg_buf_free(&text);
    tg_buf_free(&json);

    /* Without global_init: what the build says before any start-up. */
    run_doctor(h->sys, h->dev, &text, &json);
    if (tg_qat_have_headers()) {
        assert_has(text.data, "qatlib                   not loaded\n");
        assert_has(text.data, "not usable: qatlib is not installed\n");
        assert_has(json.data, "\"library\":null");
    } else {
        assert_has(text.data, "built without the qatlib headers");
        assert_has(text.data, "not usable: rebuild with the qatlib headers\n");
    }
    tg_buf_free(&text);
    tg_buf_free(&json);
}

static void test_json_str(void **state)
{
    (void)state;
    struct tg_buf out = TG_BUF_INIT;
    tg_qat_json_str(&out, "a\x01\"\\\n\tz");
    tg_buf_puts(&out, ",");
    tg_qat_json_str(&out, NULL);
    assert_string_equal(out.data, "\"a\\u0001\\\"\\\\\\n\\tz\",null");
    tg_buf_free(&out);
    tg_qat_doctor_line(&out, "label", "");
    assert_string_equal(out.data, "label                    \n");
    tg_buf_free(&out);
}

int main(void)
{
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider, &tg_deferred_provider, &tg_qat_provider);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scan),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_vfio_and_hints),
        cmocka_unit_test(test_memlock),
        cmocka_unit_test(test_doctor_device_table),
        cmocka_unit_test(test_doctor_no_devices),
        cmocka_unit_test(test_doctor_verdicts),
        cmocka_unit_test(test_json_str),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
