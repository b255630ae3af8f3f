#include "doctor/tg_doctor.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "config/tg_config.h"
#include "core/tg_buf.h"
#include "core/tg_err.h"
#include "doctor/tg_doctor_report.h"
#include "keyprov/tg_keyprov.h"

static void tg_doctor_usage(FILE *to)
{
    fputs("usage: tlsgate doctor [--config FILE] [--sysfs-root DIR] [--json]\n"
          "\n"
          "Report what this machine offers to the key providers: OpenSSL versions, CPU\n"
          "features (/proc/cpuinfo and CPUID side by side), whether OpenSSL's own AVX-512\n"
          "RSA path is active, which key providers can run here and why not, and what\n"
          "each provider sees (qat: QAT devices with their driver / vfio / IOMMU binding\n"
          "and the memlock limit qatlib needs; pkcs11: the tokens, mechanisms and keys\n"
          "of the configured modules).\n"
          "\n"
          "  --config FILE      also look at what FILE configures the providers with\n"
          "                     (pkcs11: the modules it names); nothing is logged in to\n"
          "  --sysfs-root DIR   providers read devices under DIR instead of /sys\n"
          "                     (e.g. DIR/bus/pci/devices)\n"
          "  --json             one JSON object instead of the table\n",
          to);
}

int tg_doctor_main(int argc, char **argv)
{
    struct tg_doctor_opts opts = {NULL, NULL, NULL};
    const char *config = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) {
            if (i + 1 >= argc || argv[i + 1][0] == '\0') {
                fputs("tlsgate doctor: --config needs a file\n", stderr);
                tg_doctor_usage(stderr);
                return 2;
            }
            config = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0 && a[9] != '\0') {
            config = a + 9;
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

    /* A configuration that does not load is an error like check-config's:
     * the report would not describe what the operator asked about. */
    struct tg_config *cfg = NULL;
    if (config != NULL) {
        char err[TG_CONFIG_ERRLEN] = "";
        tg_config_set_known_providers(tg_keyprov_names());
        int lrc = tg_config_load_file(config, &cfg, err, sizeof(err));
        if (lrc != TG_OK) {
            fprintf(stderr, "tlsgate doctor: %s\n", err[0] ? err : tg_strerror(lrc));
            return 2;
        }
    }
    size_t n = 0;
    const struct tg_keyprov_ops *const *provs = tg_keyprov_all(&n);
    struct tg_buf out = TG_BUF_INIT;
    tg_keyprov_set_doctor_config(cfg);
    int rc = tg_doctor_report(&opts, provs, provs ? n : 0, json, &out);
    tg_keyprov_set_doctor_config(NULL);
    tg_config_free(cfg);
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
