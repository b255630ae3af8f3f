/*
 * tg_qat_pci: the QAT functions a machine has, as PCI sysfs and /dev/vfio
 * show them (for the qat provider's doctor hook and its start-up hints).
 *
 * Every function takes the directory roots it reads as arguments ("/sys",
 * "/dev" on a real machine; tg_sysinfo_sysfs_root() / tg_sysinfo_dev_root()
 * give the process's choice), so tests feed fixture trees. Nothing here
 * needs qatlib or its headers: both builds of the provider use it.
 *
 * Threading: every function is thread-safe (no shared state).
 */
#ifndef TG_QAT_PCI_H
#define TG_QAT_PCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tg_err.h"

/* Most functions one scan stores. */
#define TG_QAT_MAX_DEVICES 256

struct tg_qat_dev {
    char bdf[32];       /* "0000:6b:00.0" (directory name under bus/pci/devices) */
    uint16_t device_id; /* vendor is always 0x8086 */
    bool is_vf;         /* virtual function (the id tells) */
    const char *family; /* "4xxx", "401xx", "402xx", "420xx", "DH895xCC", "C62x", "C3xxx",
                           "D15xx", "200xx" (static string) */
    char driver[64];    /* basename of the driver symlink, "none" if unbound */
    int iommu_group;    /* -1 when there is no iommu_group link */
    int sriov_numvfs;   /* PF: VFs enabled (sriov_numvfs); -1 when absent */
};

/*
 * Is (vendor, device) a QAT endpoint we know? Sets *is_vf and *family.
 * Pure; NULL out-pointers are allowed.
 */
bool tg_qat_pci_id(uint16_t vendor, uint16_t device, bool *is_vf, const char **family);

/*
 * Scan <sysfs_root>/bus/pci/devices/ for QAT functions. Stores at most cap
 * entries into devs, sorted by BDF; *n_stored gets the number stored and
 * *n_found (may be NULL) the number present. Returns TG_OK, TG_EINVAL when
 * the path does not fit, or TG_EUNAVAIL when the PCI directory cannot be
 * opened (no sysfs in this container). Unreadable device entries are skipped.
 */
int tg_qat_pci_scan(const char *sysfs_root, struct tg_qat_dev *devs, size_t cap, size_t *n_stored,
                    size_t *n_found) TG_MUST_CHECK;

/* Entries under <sysfs_root>/kernel/iommu_groups: 0 means the IOMMU is off
 * (vfio-pci cannot take a device); -1 when the directory cannot be read. */
int tg_qat_pci_iommu_groups(const char *sysfs_root);

/* Access to <dev_root>/vfio/<group> for a function bound to vfio-pci. */
enum tg_qat_vfio {
    TG_QAT_VFIO_NA,      /* not bound to vfio-pci, or no IOMMU group */
    TG_QAT_VFIO_RW,      /* exists and is read-write for us */
    TG_QAT_VFIO_DENIED,  /* exists, no access (chmod a+rw /dev/vfio/N, or run as its owner) */
    TG_QAT_VFIO_MISSING, /* no device node */
};
enum tg_qat_vfio tg_qat_pci_vfio(const char *dev_root, const struct tg_qat_dev *q);
/* "rw", "no-access", "missing", "-". Static. */
const char *tg_qat_pci_vfio_name(enum tg_qat_vfio v);

/* One line of advice for a function in this state, or NULL when it looks
 * ready for qatlib. Static. */
const char *tg_qat_pci_hint(const struct tg_qat_dev *q, enum tg_qat_vfio v);

#endif
