/*
 * The machine half of the qat provider's doctor hook (tg_qat_internal.h):
 * QAT functions on the PCI bus with their driver, IOMMU group and /dev/vfio
 * access, the IOMMU, RLIMIT_MEMLOCK, and the verdict. Both builds use it: a
 * tlsgate built without the qatlib headers still tells what the machine has.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tg_sysinfo.h"
#include "providers/qat/tg_qat_internal.h"
#include "providers/qat/tg_qat_memlock.h"
#include "providers/qat/tg_qat_pci.h"

/* Lines stay within this many columns where words allow (the doctor shows
 * them indented by two more). */
#define TG_QAT_TEXT_WIDTH 98

void tg_qat_json_str(struct tg_buf *out, const char *s)
{
    if (s == NULL) {
        tg_buf_puts(out, "null");
        return;
    }
    tg_buf_append(out, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            tg_buf_printf(out, "\\%c", *p);
        else if (*p == '\n')
            tg_buf_puts(out, "\\n");
        else if (*p == '\t')
            tg_buf_puts(out, "\\t");
        else if (*p < 0x20 || *p == 0x7f)
            tg_buf_printf(out, "\\u%04x", *p);
        else
            tg_buf_append(out, p, 1);
    }
    tg_buf_append(out, "\"", 1);
}

void tg_qat_doctor_line(struct tg_buf *out, const char *label, const char *text)
{
    const size_t col = 25; /* label column + one space */
    const size_t room = TG_QAT_TEXT_WIDTH - col;
    tg_buf_printf(out, "%-" TG_QAT_DOCTOR_W "s ", label);
    const char *s = text;
    while (*s == ' ')
        s++;
    if (*s == '\0')
        tg_buf_append(out, "\n", 1);
    while (*s) {
        size_t len = strlen(s), take = len;
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
}

/* What the machine offers qatlib. */
struct tg_qat_machine {
    const char *sysfs_root, *dev_root;
    int pci_rc;
    struct tg_qat_dev *devs;
    enum tg_qat_vfio *vfio; /* parallel to devs */
    size_t n, found, pf, vf, vf_vfio;
    int iommu_groups;
    int memlock_rc;
    struct tg_qat_memlock memlock;
    enum tg_qat_memlock_verdict memlock_verdict;
    char memlock_advice[512];
};

static void tg_qat_machine_collect(struct tg_qat_machine *m)
{
    memset(m, 0, sizeof(*m));
    m->sysfs_root = tg_sysinfo_sysfs_root();
    m->dev_root = tg_sysinfo_dev_root();
    m->devs = calloc(TG_QAT_MAX_DEVICES, sizeof(*m->devs));
    m->vfio = calloc(TG_QAT_MAX_DEVICES, sizeof(*m->vfio));
    if (m->devs == NULL || m->vfio == NULL)
        m->pci_rc = TG_ENOMEM;
    else
        m->pci_rc = tg_qat_pci_scan(m->sysfs_root, m->devs, TG_QAT_MAX_DEVICES, &m->n, &m->found);
    for (size_t i = 0; i < m->n; i++) {
        m->vfio[i] = tg_qat_pci_vfio(m->dev_root, &m->devs[i]);
        if (!m->devs[i].is_vf) {
            m->pf++;
        } else {
            m->vf++;
            m->vf_vfio += strcmp(m->devs[i].driver, "vfio-pci") == 0;
        }
    }
    m->iommu_groups = tg_qat_pci_iommu_groups(m->sysfs_root);
    m->memlock_rc = tg_qat_memlock_read(&m->memlock);
    if (m->memlock_rc == TG_OK)
        m->memlock_verdict =
            tg_qat_memlock_verdict(&m->memlock, m->memlock_advice, sizeof(m->memlock_advice));
}

static void tg_qat_machine_free(struct tg_qat_machine *m)
{
    free(m->devs);
    free(m->vfio);
    memset(m, 0, sizeof(*m));
}

static void tg_qat_machine_text(const struct tg_qat_machine *m, struct tg_buf *out)
{
    char b1[32], b2[32], line[160];
    tg_buf_printf(out, "QAT devices (%s/bus/pci/devices)\n", m->sysfs_root);
    if (m->pci_rc != TG_OK) {
        tg_buf_printf(out, "  cannot read %s/bus/pci/devices (%s)\n", m->sysfs_root,
                      m->pci_rc == TG_EUNAVAIL ? "no PCI sysfs here" : tg_strerror(m->pci_rc));
    } else if (m->n == 0) {
        tg_buf_puts(out, "  none found (PCI vendor 8086, devices 4940-4947)\n");
    } else {
        tg_buf_printf(out, "  %-14s %-5s %-3s %-9s %-13s %-6s %-10s %s\n", "BDF", "ID", "FN",
                      "FAMILY", "DRIVER", "IOMMU", "VFIO", "NOTE");
        for (size_t i = 0; i < m->n; i++) {
            const struct tg_qat_dev *q = &m->devs[i];
            char grp[16];
            if (q->iommu_group >= 0)
                snprintf(grp, sizeof(grp), "%d", q->iommu_group);
            else
                snprintf(grp, sizeof(grp), "-");
            const char *hint = tg_qat_pci_hint(q, m->vfio[i]);
            tg_buf_printf(out, "  %-14s %04x  %-3s %-9s %-13s %-6s %-10s", q->bdf, q->device_id,
                          q->is_vf ? "VF" : "PF", q->family, q->driver, grp,
                          tg_qat_pci_vfio_name(m->vfio[i]));
            if (!q->is_vf && q->sriov_numvfs >= 0)
                tg_buf_printf(out, " %d VFs", q->sriov_numvfs);
            tg_buf_printf(out, "%s%s\n", hint ? " " : "", hint ? hint : "");
        }
        if (m->found > m->n)
            tg_buf_printf(out, "  ... and %zu more\n", m->found - m->n);
    }
    if (m->iommu_groups > 0)
        snprintf(line, sizeof(line), "on (%d groups)", m->iommu_groups);
    else if (m->iommu_groups == 0)
        snprintf(line, sizeof(line), "off (vfio-pci needs it: boot with intel_iommu=on)");
    else
        snprintf(line, sizeof(line), "unknown (%s/kernel/iommu_groups unreadable)", m->sysfs_root);
    tg_qat_doctor_line(out, "IOMMU", line);
    if (m->memlock_rc == TG_OK) {
        snprintf(line, sizeof(line), "soft %s, hard %s",
                 tg_sysinfo_fmt_bytes(m->memlock.soft_unlimited, m->memlock.soft, b1, sizeof(b1)),
                 tg_sysinfo_fmt_bytes(m->memlock.hard_unlimited, m->memlock.hard, b2, sizeof(b2)));
        tg_qat_doctor_line(out, "memlock (RLIMIT_MEMLOCK)", line);
        tg_qat_doctor_line(out, "", m->memlock_advice);
    } else {
        snprintf(line, sizeof(line), "unknown (%s)", tg_strerror(m->memlock_rc));
        tg_qat_doctor_line(out, "memlock (RLIMIT_MEMLOCK)", line);
    }
}

static void tg_qat_json_int_or_null(struct tg_buf *out, const char *key, int v)
{
    tg_buf_printf(out, "\"%s\":", key);
    if (v >= 0)
        tg_buf_printf(out, "%d", v);
    else
        tg_buf_puts(out, "null");
}

static void tg_qat_json_bytes(struct tg_buf *out, const char *key, bool unlimited, uint64_t v)
{
    if (unlimited)
        tg_buf_printf(out, "\"%s\":\"unlimited\"", key);
    else
        tg_buf_printf(out, "\"%s\":%llu", key, (unsigned long long)v);
}

/* "pci":{...},"memlock":{...} (the shapes of the doctor's former top-level
 * "qat" and "memlock" objects). */
static void tg_qat_machine_json(const struct tg_qat_machine *m, struct tg_buf *out)
{
    tg_buf_puts(out, "\"pci\":{\"sysfs_root\":");
    tg_qat_json_str(out, m->sysfs_root);
    tg_buf_printf(out, ",\"pci_readable\":%s,\"found\":%zu,", m->pci_rc == TG_OK ? "true" : "false",
                  m->found);
    tg_qat_json_int_or_null(out, "iommu_groups", m->iommu_groups);
    tg_buf_puts(out, ",\"devices\":[");
    for (size_t i = 0; i < m->n; i++) {
        const struct tg_qat_dev *q = &m->devs[i];
        tg_buf_printf(out, "%s{\"bdf\":", i ? "," : "");
        tg_qat_json_str(out, q->bdf);
        tg_buf_printf(out, ",\"device_id\":\"%04x\",\"function\":\"%s\",\"family\":", q->device_id,
                      q->is_vf ? "VF" : "PF");
        tg_qat_json_str(out, q->family);
        tg_buf_puts(out, ",\"driver\":");
        tg_qat_json_str(out, q->driver);
        tg_buf_puts(out, ",");
        tg_qat_json_int_or_null(out, "iommu_group", q->iommu_group);
        tg_buf_puts(out, ",");
        tg_qat_json_int_or_null(out, "sriov_numvfs", q->sriov_numvfs);
        tg_buf_puts(out, ",\"vfio\":");
        tg_qat_json_str(out, tg_qat_pci_vfio_name(m->vfio[i]));
        tg_buf_puts(out, ",\"hint\":");
        tg_qat_json_str(out, tg_qat_pci_hint(q, m->vfio[i]));
        tg_buf_puts(out, "}");
    }
    tg_buf_puts(out, "]},\"memlock\":{");
    tg_buf_printf(out, "\"readable\":%s,", m->memlock_rc == TG_OK ? "true" : "false");
    tg_qat_json_bytes(out, "soft", m->memlock.soft_unlimited, m->memlock.soft);
    tg_buf_puts(out, ",");
    tg_qat_json_bytes(out, "hard", m->memlock.hard_unlimited, m->memlock.hard);
    tg_buf_printf(out, ",\"recommended_for_qat\":%llu,\"ok_for_qat\":%s,\"verdict\":",
                  (unsigned long long)TG_QAT_MEMLOCK_RECOMMENDED,
                  m->memlock_rc == TG_OK && m->memlock_verdict == TG_QAT_MEMLOCK_OK ? "true"
                                                                                    : "false");
    tg_qat_json_str(out, m->memlock_rc == TG_OK ? m->memlock_advice : NULL);
    tg_buf_puts(out, "}");
}

/* The machine's likeliest reason qatlib finds no device. */
static const char *tg_qat_machine_hint(const struct tg_qat_machine *m)
{
    if (m->pci_rc != TG_OK || m->found == 0)
        return "no QAT PCI device on this machine";
    if (m->vf == 0)
        return "no QAT virtual function: enable SR-IOV (sriov_numvfs) on the PFs";
    if (m->vf_vfio == 0)
        return "no QAT VF is bound to vfio-pci";
    return "see the reason above";
}

void tg_qat_doctor_machine(struct tg_buf *text, struct tg_buf *json, const char *usable,
                           const char *why_not)
{
    struct tg_qat_machine m;
    char verdict[256];
    tg_qat_machine_collect(&m);
    tg_qat_machine_text(&m, text);
    if (json->len > 0)
        tg_buf_puts(json, ",");
    tg_qat_machine_json(&m, json);
    if (usable != NULL)
        snprintf(verdict, sizeof(verdict), "usable (%s)", usable);
    else
        snprintf(verdict, sizeof(verdict), "not usable: %s",
                 why_not != NULL ? why_not : tg_qat_machine_hint(&m));
    tg_qat_doctor_line(text, "verdict", verdict);
    tg_buf_printf(json, ",\"usable\":%s,\"verdict\":", usable != NULL ? "true" : "false");
    tg_qat_json_str(json, verdict);
    tg_qat_machine_free(&m);
}
