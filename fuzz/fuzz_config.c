/*
 * libFuzzer target: the configuration loader. Any byte string must produce
 * either a valid config or exactly one error line, never a crash or a leak.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "config/tg_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tg_config *cfg = NULL;
    char err[TG_CONFIG_ERRLEN];
    err[0] = '\0';
    int rc = tg_config_load_buffer("fuzz.yaml", (const char *)data, size, &cfg, err, sizeof(err));
    if (rc == TG_OK) {
        if (cfg == NULL || cfg->n_listeners == 0)
            __builtin_trap();
        tg_config_free(cfg);
    } else {
        /* One line, always said. */
        if (cfg != NULL || err[0] == '\0' || strchr(err, '\n') != NULL)
            __builtin_trap();
    }
    return 0;
}
