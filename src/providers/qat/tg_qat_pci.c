/*
 * QAT functions on the PCI bus: parsers over a sysfs root and a /dev root
 * (tg_qat_pci.h).
 */
#include "providers/qat/tg_qat_pci.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/tg_sysinfo.h"

struct tg_qat_pci_known {
    uint16_t device;
    bool vf;
    const char *family;
};

static const struct tg_qat_pci_known tg_qat_pci_ids[] = {
    {0x4940, false, "4xxx"},    {0x4941, true, "4xxx"},   {0x4942, false, "401xx"},
    {0x4943, true, "401xx"},    {0x4944, false, "402xx"}, {0x4945, true, "402xx"},
    {0x4946, false, "420xx"},   {0x4947, true, "420xx"},  {0x0435, false, "DH895xCC"},
    {0x0443, true, "DH895xCC"}, {0x37c8, false, "C62x"},  {0x37c9, true, "C62x"},
    {0x19e2, false, "C3xxx"},   {0x19e3, true, "C3xxx"},  {0x6f54, false, "D15xx"},
    {0x6f55, true, "D15xx"},    {0x18ee, false, "200xx"}, {0x18ef, true, "200xx"},
};

bool tg_qat_pci_id(uint16_t vendor, uint16_t device, bool *is_vf, const char **family)
{
    if (vendor != 0x8086)
        return false;
    for (size_t i = 0; i < TG_ARRAY_LEN(tg_qat_pci_ids); i++) {
        if (tg_qat_pci_ids[i].device == device) {
            if (is_vf)
                *is_vf = tg_qat_pci_ids[i].vf;
            if (family)
                *family = tg_qat_pci_ids[i].family;
            return true;
        }
    }
    return false;
}

/* Parse a sysfs hex id ("0x8086\n"); false unless it is a 16-bit number. */
static bool tg_qat_pci_hex16(const char *s, uint16_t *out)
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
static bool tg_qat_pci_link_base(const char *path, char *out, size_t outlen)
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

static int tg_qat_pci_int(const char *s, int *out)
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

static int tg_qat_pci_cmp(const void *a, const void *b)
{
    return strcmp(((const struct tg_qat_dev *)a)->bdf, ((const struct tg_qat_dev *)b)->bdf);
}

/* "<dir>/<dev>/<leaf>" into path; false when it does not fit. */
static bool tg_qat_pci_path(char *path, size_t len, const char *dir, const char *dev,
                            const char *leaf)
{
    int n = snprintf(path, len, "%s/%s/%s", dir, dev, leaf);
    return n > 0 && (size_t)n < len;
}

/* Read a sysfs attribute of dev into val; false if absent or unreadable. */
static bool tg_qat_pci_attr(const char *dir, const char *dev, const char *leaf, char *val,
                            size_t vallen)
{
    char path[PATH_MAX];
    return tg_qat_pci_path(path, sizeof(path), dir, dev, leaf) &&
           tg_sysinfo_read_small(path, val, vallen) >= 0;
}

/* Fill everything but bdf/id/family: driver, IOMMU group, VF count. */
static void tg_qat_pci_details(const char *dir, const char *dev, struct tg_qat_dev *q)
{
    char path[PATH_MAX], val[64];
    snprintf(q->driver, sizeof(q->driver), "none");
    if (tg_qat_pci_path(path, sizeof(path), dir, dev, "driver"))
        (void)tg_qat_pci_link_base(path, q->driver, sizeof(q->driver));
    if (q->driver[0] == '\0')
        snprintf(q->driver, sizeof(q->driver), "none");
    q->iommu_group = -1;
    if (tg_qat_pci_path(path, sizeof(path), dir, dev, "iommu_group") &&
        tg_qat_pci_link_base(path, val, sizeof(val)) &&
        tg_qat_pci_int(val, &q->iommu_group) != TG_OK)
        q->iommu_group = -1;
    q->sriov_numvfs = -1;
    if (tg_qat_pci_attr(dir, dev, "sriov_numvfs", val, sizeof(val)) &&
        tg_qat_pci_int(val, &q->sriov_numvfs) != TG_OK)
        q->sriov_numvfs = -1;
}

int tg_qat_pci_scan(const char *sysfs_root, struct tg_qat_dev *devs, size_t cap, size_t *n_stored,
                    size_t *n_found)
{
    char dirpath[PATH_MAX], val[64];
    size_t stored = 0, found = 0;
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
        if (!tg_qat_pci_attr(dirpath, e->d_name, "vendor", val, sizeof(val)) ||
            !tg_qat_pci_hex16(val, &vendor))
            continue;
        if (!tg_qat_pci_attr(dirpath, e->d_name, "device", val, sizeof(val)) ||
            !tg_qat_pci_hex16(val, &device))
            continue;
        bool vf = false;
        const char *family = NULL;
        if (!tg_qat_pci_id(vendor, device, &vf, &family))
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
        tg_qat_pci_details(dirpath, e->d_name, q);
    }
    closedir(d);
    /* readdir order is arbitrary; sort so reports and tests are stable. */
    if (stored > 1)
        qsort(devs, stored, sizeof(devs[0]), tg_qat_pci_cmp);
    *n_stored = stored;
    if (n_found)
        *n_found = found;
    return TG_OK;
}

int tg_qat_pci_iommu_groups(const char *sysfs_root)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/kernel/iommu_groups", sysfs_root);
    if (n < 0 || (size_t)n >= sizeof(path))
        return -1;
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    int groups = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && groups < INT_MAX)
            groups++;
    closedir(d);
    return groups;
}

enum tg_qat_vfio tg_qat_pci_vfio(const char *dev_root, const struct tg_qat_dev *q)
{
    char path[PATH_MAX];
    if (strcmp(q->driver, "vfio-pci") != 0 || q->iommu_group < 0)
        return TG_QAT_VFIO_NA;
    int n = snprintf(path, sizeof(path), "%s/vfio/%d", dev_root, q->iommu_group);
    if (n < 0 || (size_t)n >= sizeof(path))
        return TG_QAT_VFIO_MISSING;
    if (access(path, R_OK | W_OK) == 0)
        return TG_QAT_VFIO_RW;
    return errno == ENOENT ? TG_QAT_VFIO_MISSING : TG_QAT_VFIO_DENIED;
}

const char *tg_qat_pci_vfio_name(enum tg_qat_vfio v)
{
    switch (v) {
    case TG_QAT_VFIO_RW:
        return "rw";
    case TG_QAT_VFIO_DENIED:
        return "no-access";
    case TG_QAT_VFIO_MISSING:
        return "missing";
    case TG_QAT_VFIO_NA:
        break;
    }
    return "-";
}

const char *tg_qat_pci_hint(const struct tg_qat_dev *q, enum tg_qat_vfio v)
{
    if (!q->is_vf && q->sriov_numvfs == 0)
        return "no VFs: echo 16 > sriov_numvfs";
    if (q->is_vf && strcmp(q->driver, "vfio-pci") != 0)
        return "bind to vfio-pci for qatlib";
    if (q->is_vf && q->iommu_group < 0)
        return "no IOMMU group: enable the IOMMU";
    if (v == TG_QAT_VFIO_DENIED)
        return "chmod a+rw /dev/vfio/<group>";
    if (v == TG_QAT_VFIO_MISSING)
        return "/dev/vfio/<group> missing";
    return NULL;
}
