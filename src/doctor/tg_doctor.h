/*
 * tg_doctor: `tlsgate doctor` — what this machine offers to the key
 * providers. The doctor reports generic facts itself and asks every
 * registered provider (global_init, then its doctor hook) for the rest; it
 * knows no provider's hardware.
 *
 * Generic options reach the providers through core, not through the hook's
 * signature: --sysfs-root DIR becomes the process's sysfs root
 * (tg_sysinfo_set_roots, src/core/tg_sysinfo.h) while the providers are
 * probed, so a hook that reads devices calls tg_sysinfo_sysfs_root() /
 * tg_sysinfo_dev_root() and sees the tree the operator named; --config FILE
 * is loaded and handed to src/keyprov (tg_keyprov_set_doctor_config) for
 * the duration of the report, so a hook can look at the blocks of FILE
 * that name its provider (tg_keyprov_doctor_block). A FILE that does not
 * load is exit status 2 with check-config's message.
 *
 * A hook's text lines are shown in a section of their own, indented by two
 * spaces (keep them within 98 columns); its JSON members go under
 * "details" of its entry in "key_providers".
 */
#ifndef TG_DOCTOR_H
#define TG_DOCTOR_H

/* argv[0] is "doctor". Returns 0 (the report is informational), 2 on usage
 * or a --config that does not load. */
int tg_doctor_main(int argc, char **argv);

#endif
