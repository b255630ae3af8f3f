/*
 * libFuzzer target: `tlsgate gateway-api`'s converter. Any byte string must
 * give either a configuration (no error) or at least one error diagnostic,
 * every diagnostic one line, never a crash or a leak.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "k8s/tg_gwapi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const providers[] = {"software", "deferred", "cryptomb", "qat", NULL};
    struct tg_gwapi_opts opts;
    tg_gwapi_opts_default(&opts);
    opts.providers = providers;
    opts.upstream =
        size > 0 && (data[0] & 1) ? TG_GWAPI_UPSTREAM_CLUSTER_IP : TG_GWAPI_UPSTREAM_DNS;
    struct tg_gwapi *g = NULL;
    if (tg_gwapi_new(&opts, &g) != TG_OK)
        return 0;
    struct tg_buf out = TG_BUF_INIT;
    int rc = tg_gwapi_add(g, "fuzz.yaml", (const char *)data, size);
    if (rc != TG_ENOMEM)
        rc = tg_gwapi_convert(g, &out);
    if (rc == TG_OK && (tg_gwapi_errors(g) != 0 || out.len == 0))
        __builtin_trap();
    if (rc == TG_ECONFIG && tg_gwapi_errors(g) == 0)
        __builtin_trap();
    /* Every diagnostic is one line ending in '\n'. */
    const char *d = tg_gwapi_diagnostics(g);
    size_t lines = 0;
    for (const char *p = d; *p != '\0'; p++)
        lines += *p == '\n';
    if (lines != tg_gwapi_warnings(g) + tg_gwapi_errors(g))
        __builtin_trap();
    tg_buf_free(&out);
    tg_gwapi_free(g);
    return 0;
}
