/*
 * tlsgate: subcommand dispatch. Everything else lives in the core libraries.
 *
 *   tlsgate run [--config FILE] [--state-dir DIR] [--log-level LEVEL] [--pid-file PATH]
 *   tlsgate reload [--pid-file PATH] [--state-dir DIR]
 *   tlsgate check-config FILE
 *   tlsgate bench [options] TARGET        (tlsgate bench --help)
 *   tlsgate doctor [--config FILE] [--json]
 *   tlsgate gateway-api [options] FILE... (tlsgate gateway-api --help)
 *   tlsgate keyserver --config FILE       (hold the keys, sign for gateways)
 *   tlsgate version
 *
 * Exit status: 0 success, 1 runtime failure, 2 usage or configuration error.
 */
#include <errno.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/tg_bench.h"
#include "bench/tg_bench_crypto.h"
#include "config/tg_config.h"
#include "core/tg_heap.h"
#include "core/tg_log.h"
#include "core/tg_pidfile.h"
#include "core/tg_wipe.h"
#include "doctor/tg_doctor.h"
#include "k8s/tg_gwapi.h"
#include "keyprov/tg_keyprov.h"
#include "keyserver/tg_keyserver.h"
#include "proxy/tg_audit.h"
#include "proxy/tg_gateway.h"
#include "tls/tg_tls_demo.h"

/*
 * The key providers this program is built with, one folder each under
 * src/providers/. Adding a provider: its folder (see docs/KEY-PROVIDERS.md,
 * "Writing a provider") and one line here. "software" is required: it is
 * every other provider's fallback.
 */
#define TG_PROVIDERS(X)                                                                            \
    X(software)                                                                                    \
    X(deferred)                                                                                    \
    X(cryptomb)                                                                                    \
    X(qat)                                                                                         \
    X(pkcs11)                                                                                      \
    X(keyserver)

#define TG_PROVIDER_DECL(name) extern const struct tg_keyprov_ops tg_##name##_provider;
TG_PROVIDERS(TG_PROVIDER_DECL)
#undef TG_PROVIDER_DECL

static const struct tg_keyprov_ops *const tg_providers[] = {
#define TG_PROVIDER_REF(name) &tg_##name##_provider,
    TG_PROVIDERS(TG_PROVIDER_REF)
#undef TG_PROVIDER_REF
};

static void tg_usage(FILE *f)
{
    fprintf(f, "usage: tlsgate <command> [options]\n"
               "\n"
               "commands:\n"
               "  run [--config FILE] [--state-dir DIR] [--log-level LEVEL] [--pid-file PATH]\n"
               "                      run the gateway (without --config: the embedded default,\n"
               "                      a demo certificate is created in the state directory);\n"
               "                      SIGHUP reloads the configuration, certificates and keys\n"
               "  reload [--pid-file PATH] [--state-dir DIR]\n"
               "                      make the running gateway reload (SIGHUP to the pid in its\n"
               "                      pid file, by default STATE_DIR/tlsgate.pid)\n"
               "  check-config FILE   validate a configuration and exit (0 valid, 2 invalid)\n"
               "  bench [options] TARGET\n"
               "                      load generator; 'tlsgate bench --help' for options\n"
               "  bench-crypto [--seconds S] [--quick]\n"
               "                      private-key operations per second per core: OpenSSL,\n"
               "                      crypto_mb raw, and through the full provider path\n"
               "  doctor [--config FILE] [--json]\n"
               "                      what this machine offers to the key providers\n"
               "  gateway-api [options] FILE...\n"
               "                      Kubernetes Gateway API objects (and Envoy Gateway's\n"
               "                      private key provider patch) -> tlsgate configuration\n"
               "  keyserver --config FILE [--log-level LEVEL] [--check]\n"
               "                      hold private keys and sign for gateways over a Unix\n"
               "                      socket (provider_name: keyserver)\n"
               "  version             print versions\n");
}

static const char *tg_default_state_dir(char *buf, size_t len)
{
    const char *env = getenv("TLSGATE_STATE_DIR");
    if (env != NULL && env[0] != '\0')
        return env;
    const char *xdg = getenv("XDG_STATE_HOME");
    if (xdg != NULL && xdg[0] != '\0') {
        snprintf(buf, len, "%s/tlsgate", xdg);
        return buf;
    }
    const char *home = getenv("HOME");
    if (home != NULL && home[0] != '\0') {
        snprintf(buf, len, "%s/.local/state/tlsgate", home);
        return buf;
    }
    return ".tlsgate-state";
}

/* Where the configuration comes from, at start and at every reload. */
struct tg_source {
    const char *path;      /* NULL: the embedded default */
    const char *state_dir; /* where the default's demo certificate lives */
};

static int tg_source_load(void *arg, struct tg_config **cfg, char *err, size_t errlen)
{
    const struct tg_source *src = arg;
    if (src->path != NULL)
        return tg_config_load_file(src->path, cfg, err, errlen);
    /* The embedded default serves a demo certificate from the state
     * directory: create it (first run only) before the YAML names it. */
    int rc = tg_tls_demo_cert_ensure(src->state_dir, err, errlen);
    if (rc == TG_OK)
        rc = tg_config_load_default(src->state_dir, cfg, err, errlen);
    return rc;
}

/* Load the config named on the command line (or the embedded default). */
static int tg_load_config(const struct tg_source *src, struct tg_config **cfg)
{
    char err[TG_CONFIG_ERRLEN] = "";
    tg_config_set_known_providers(tg_keyprov_names());
    int rc = tg_source_load((void *)src, cfg, err, sizeof(err));
    if (rc != TG_OK) {
        fprintf(stderr, "tlsgate: %s\n", err[0] ? err : tg_strerror(rc));
        return 2;
    }
    return 0;
}

#define TG_PID_FILE_NAME "tlsgate.pid"

static int tg_cmd_run(int argc, char **argv, bool check_only)
{
    const char *config = NULL, *level = NULL, *pid_file = NULL;
    char sdbuf[512], pidbuf[600];
    const char *state_dir = tg_default_state_dir(sdbuf, sizeof(sdbuf));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) && i + 1 < argc) {
            config = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            config = a + 9;
        } else if (strcmp(a, "--state-dir") == 0 && i + 1 < argc) {
            state_dir = argv[++i];
        } else if (strcmp(a, "--log-level") == 0 && i + 1 < argc) {
            level = argv[++i];
        } else if (!check_only && strcmp(a, "--pid-file") == 0 && i + 1 < argc) {
            pid_file = argv[++i];
        } else if (check_only && config == NULL && a[0] != '-') {
            config = a;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            tg_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "tlsgate %s: unexpected argument '%s'\n", argv[0], a);
            tg_usage(stderr);
            return 2;
        }
    }
    if (check_only && config == NULL) {
        fprintf(stderr, "tlsgate check-config: missing FILE\n");
        return 2;
    }
    int log_level = -1;
    if (level != NULL) {
        enum tg_log_level lv;
        if (!tg_log_parse_level(level, &lv)) {
            fprintf(stderr, "tlsgate: --log-level: expected error|warn|info|debug\n");
            return 2;
        }
        log_level = (int)lv;
    }
    struct tg_source src = {config, state_dir};
    struct tg_config *cfg = NULL;
    int rc = tg_load_config(&src, &cfg);
    if (rc != 0)
        return rc;
    if (log_level >= 0)
        cfg->log_level = log_level;
    if (check_only)
        return tg_gateway_check(cfg);
    struct tg_gateway_opts opts = {
        .load = tg_source_load,
        .load_arg = &src,
        .log_level = log_level,
        .pid_file = pid_file,
        .pid_file_explicit = pid_file != NULL,
    };
    if (pid_file == NULL) {
        snprintf(pidbuf, sizeof(pidbuf), "%s/%s", state_dir, TG_PID_FILE_NAME);
        opts.pid_file = pidbuf;
    }
    return tg_gateway_run(cfg, &opts);
}

/* `tlsgate reload`: SIGHUP to the tlsgate that holds the pid file. */
static int tg_cmd_reload(int argc, char **argv)
{
    const char *pid_file = NULL;
    char sdbuf[512], pidbuf[600];
    const char *state_dir = tg_default_state_dir(sdbuf, sizeof(sdbuf));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--pid-file") == 0 && i + 1 < argc) {
            pid_file = argv[++i];
        } else if (strcmp(a, "--state-dir") == 0 && i + 1 < argc) {
            state_dir = argv[++i];
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            tg_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "tlsgate reload: unexpected argument '%s'\n", a);
            tg_usage(stderr);
            return 2;
        }
    }
    if (pid_file == NULL) {
        snprintf(pidbuf, sizeof(pidbuf), "%s/%s", state_dir, TG_PID_FILE_NAME);
        pid_file = pidbuf;
    }
    char err[700];
    pid_t pid = 0;
    if (tg_pidfile_holder(pid_file, &pid, err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "tlsgate reload: %s\n", err);
        return 1;
    }
    if (kill(pid, SIGHUP) != 0) {
        fprintf(stderr, "tlsgate reload: cannot signal pid %d: %s\n", (int)pid, strerror(errno));
        return 1;
    }
    printf("tlsgate reload: SIGHUP sent to pid %d; the log and /stats "
           "(tlsgate_config_reloads_total) tell the outcome\n",
           (int)pid);
    return 0;
}

/* tg_ks_audit_fn: the gateway's warnings, applied to a key server's file. */
static void tg_keyserver_audit(const struct tg_config *cfg, bool check)
{
    struct tg_audit_ids ids;
    tg_audit_ids_self(&ids);
    tg_audit_config(cfg, &ids, check ? tg_audit_emit_stderr : tg_audit_emit_log, NULL);
}

int main(int argc, char **argv)
{
    /* Before anything makes OpenSSL allocate: afterwards it refuses. */
    bool wipe_ok = tg_wipe_install() == TG_OK;
    tg_heap_init();
    if (argc < 2) {
        tg_usage(stderr);
        return 2;
    }
    if (!wipe_ok)
        fprintf(stderr, "tlsgate: warning: OpenSSL allocated memory before start-up; the "
                        "temporary copies it makes of private keys will not be wiped\n");
    char why[256];
    if (tg_keyprov_register(tg_providers, TG_ARRAY_LEN(tg_providers), why, sizeof(why)) != TG_OK) {
        fprintf(stderr, "tlsgate: key providers: %s\n", why);
        return 1;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0)
        return tg_cmd_run(argc - 1, argv + 1, false);
    if (strcmp(cmd, "check-config") == 0)
        return tg_cmd_run(argc - 1, argv + 1, true);
    if (strcmp(cmd, "reload") == 0)
        return tg_cmd_reload(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0)
        return tg_bench_main(argc - 1, argv + 1);
    if (strcmp(cmd, "bench-crypto") == 0)
        return tg_bench_crypto_main(argc - 1, argv + 1);
    if (strcmp(cmd, "doctor") == 0)
        return tg_doctor_main(argc - 1, argv + 1);
    if (strcmp(cmd, "keyserver") == 0)
        return tg_keyserver_main(argc - 1, argv + 1, tg_keyserver_audit);
    if (strcmp(cmd, "gateway-api") == 0)
        return tg_gwapi_main(argc - 1, argv + 1, tg_keyprov_names());
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("tlsgate %s (built with %s, running %s)\n", TG_VERSION, OPENSSL_VERSION_TEXT,
               OpenSSL_version(OPENSSL_VERSION));
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        tg_usage(stdout);
        return 0;
    }
    fprintf(stderr, "tlsgate: unknown command '%s'\n", cmd);
    tg_usage(stderr);
    return 2;
}
