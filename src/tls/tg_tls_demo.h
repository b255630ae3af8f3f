/*
 * tg_tls_demo: the self-signed demo certificate served by the embedded
 * default configuration (tg_config_load_default, which only reads it).
 *
 * tg_tls_demo_cert_ensure(state_dir) makes sure state_dir holds
 * TG_CONFIG_DEMO_KEY, an RSA-2048 private key (mode 0600), and
 * TG_CONFIG_DEMO_CERT, a certificate for CN=localhost (SAN DNS:localhost,
 * IP:127.0.0.1; SHA-256, valid 365 days) that matches it. The pair is created
 * on first use and reused afterwards; a lone file (an interrupted first run)
 * is replaced by a fresh pair. Missing directories are created with mode 0700
 * (they will hold a private key), like `mkdir -p`.
 *
 * Concurrency: processes calling it at once on the same directory serialise
 * on an exclusive flock() of state_dir/.demo.lock, so they never write a key
 * and a certificate that do not belong together; each file is written under
 * a temporary name and renamed, so no reader sees half a file.
 *
 * Errors: TG_OK, or a negative tg_err with one line in err (when err is not
 * NULL), e.g. "/x/state: cannot create directory: Permission denied". The
 * name is checked first with tg_config_check_state_dir (same messages as
 * tg_config_load_default; nothing is created for a refused name).
 *
 * Threading: blocking (file system, and generating the key takes tens of
 * milliseconds on first use); any thread. Call it before
 * tg_config_load_default.
 */
#ifndef TG_TLS_DEMO_H
#define TG_TLS_DEMO_H

#include <stddef.h>

#include "core/tg_err.h"

int tg_tls_demo_cert_ensure(const char *state_dir, char *err, size_t errlen) TG_MUST_CHECK;

#endif
