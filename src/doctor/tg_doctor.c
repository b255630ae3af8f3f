#include "doctor/tg_doctor.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/tg_buf.h"
#include "core/tg_err.h"
#include "doctor/tg_doctor_report.h"
#include "keyprov/tg_keyprov.h"

static void tg_doctor_usage(FILE *to)
{
    fputs("usage: tlsgate doctor [--sysfs-root DIR] [--json]\n"
          "\n"
          "Report what this machine offers to the key providers: OpenSSL versions, CPU\n"
          "features (/proc/cpuinfo and CPUID side by side), whether OpenSSL's own AVX-512\n"
          "RSA path is active, which key providers can run here and why not, and what\n"
          "each provider sees (qat: QAT devices with their driver / vfio / IOMMU binding\n"
          "and the memlock limit qatlib needs).\n"
          "\n"
          "  --sysfs-root DIR   providers read devices under DIR instead of /sys\n"
          "                     (e.g. DIR/bus/pci/devices)\n"
          "  --json             one JSON object instead of the table\n",
          to);
}

int tg_doctor_main(int argc, char **argv)
{
    struct tg_doctor_opts opts = {NULL, NULL, NULL};
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (strcmp(a, "--sysfs-root") == 0) {
            if (i + 1 >= argc || argv[i + 1][0] == '\0') {
                fputs("tlsgate doctor: --sysfs-root needs a directory\n", stderr);
                tg_doctor_usage(stderr);
                return 2;
            }
            opts.sysfs_root = argv[++i];
        } else if (strncmp(a, "--sysfs-root=", 13) == 0 && a[13] != '\0') {
            opts.sysfs_root = a + 13;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            tg_doctor_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "tlsgate doctor: unknown argument '%s'\n", a);
            tg_doctor_usage(stderr);
            return 2;
        }
    }

    size_t n = 0;
    const struct tg_keyprov_ops *const *provs = tg_keyprov_all(&n);
    struct tg_buf out = TG_BUF_INIT;
    int rc = tg_doctor_report(&opts, provs, provs ? n : 0, json, &out);
    if (rc != TG_OK) {
        fprintf(stderr, "tlsgate doctor: %s\n", tg_strerror(rc));
    } else {
        fwrite(out.data, 1, out.len, stdout);
        fflush(stdout);
    }
    tg_buf_free(&out);
    /* Informational: the report itself never fails the command. */
    return 0;
}
