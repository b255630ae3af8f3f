/*
 * `tlsgate bench-crypto`: operations per second per core for the private-key
 * operations of a handshake, three ways on one thread:
 *   - OpenSSL scalar (the software provider's path),
 *   - crypto_mb raw (full 8-lane batches through tg_mb_ops),
 *   - the full provider path: EVP_DigestSign on a key held by the tlsgate
 *     OpenSSL provider, bound to the cryptomb provider, inside ASYNC jobs
 *     that pause until a flush runs the batch — exactly what a handshake
 *     does, minus the network.
 * CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID): stable on a
 * shared machine where wall-clock rates are not.
 */
#include <ev.h>
#include <openssl/async.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/tg_bench_crypto.h"
#include "core/tg_buf.h"
#include "core/tg_log.h"
#include "keyprov/tg_keyprov.h"
#include "providers/cryptomb/tg_mbx.h"
#include "providers/cryptomb/tg_mb_bench.h"
#include "ossl/tg_ossl.h"

#define TG_BC_JOBS 64

static double tg_bc_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct tg_bc_job {
    ASYNC_JOB *job;
    ASYNC_WAIT_CTX *wctx;
    EVP_MD_CTX *md;
    int ret;
    bool active;
    bool woken;
};

struct tg_bc_arg {
    struct tg_bc_job *j;
    EVP_PKEY *key;
    bool rsa;
};

static int tg_bc_wake(void *arg)
{
    ((struct tg_bc_job *)arg)->woken = true;
    return 1;
}

/* One signature as libssl makes one for TLS 1.3 CertificateVerify. */
static int tg_bc_sign_fn(void *varg)
{
    struct tg_bc_arg *a = varg;
    static const unsigned char tbs[100] = {1, 2, 3};
    unsigned char sig[512];
    size_t siglen = sizeof(sig);
    EVP_PKEY_CTX *pctx = NULL;
    EVP_MD_CTX_reset(a->j->md);
    if (EVP_DigestSignInit_ex(a->j->md, &pctx, "SHA256", NULL, NULL, a->key, NULL) <= 0)
        return 0;
    if (a->rsa && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
                   EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) <= 0))
        return 0;
    return EVP_DigestSign(a->j->md, sig, &siglen, tbs, sizeof(tbs)) > 0;
}

/* Run (or resume) job j; true when it finished (ok or not). */
static bool tg_bc_step(struct tg_bc_job *j, EVP_PKEY *key, bool rsa, int *failures)
{
    struct tg_bc_arg arg = {j, key, rsa};
    int r = ASYNC_start_job(&j->job, j->wctx, &j->ret, tg_bc_sign_fn, &arg, sizeof(arg));
    if (r == ASYNC_PAUSE)
        return false;
    if (r != ASYNC_FINISH || j->ret != 1)
        (*failures)++;
    j->job = NULL;
    return true;
}

/* Signatures per CPU-second through the provider path, with up to
 * TG_BC_JOBS handshakes "in flight". */
static double tg_bc_provider_rate(EVP_PKEY *key, bool rsa, double seconds, int *failures)
{
    struct tg_bc_job jobs[TG_BC_JOBS];
    uint64_t done = 0;
    double t0 = 0, t1 = 0;
    memset(jobs, 0, sizeof(jobs));
    for (int i = 0; i < TG_BC_JOBS; i++) {
        jobs[i].wctx = ASYNC_WAIT_CTX_new();
        jobs[i].md = EVP_MD_CTX_new();
        if (jobs[i].wctx == NULL || jobs[i].md == NULL)
            goto out;
        ASYNC_WAIT_CTX_set_callback(jobs[i].wctx, tg_bc_wake, &jobs[i]);
    }
    t0 = t1 = tg_bc_cpu_s();
    while (t1 - t0 < seconds) {
        /* Start every idle job: each queues its operation and pauses. */
        for (int i = 0; i < TG_BC_JOBS; i++) {
            if (jobs[i].job == NULL && tg_bc_step(&jobs[i], key, rsa, failures))
                done++;
        }
        /* The loop is about to block: the provider runs its batches. */
        tg_keyprov_set_flush(tg_keyprov_set_current_get());
        for (int i = 0; i < TG_BC_JOBS; i++) {
            if (jobs[i].job != NULL && jobs[i].woken) {
                jobs[i].woken = false;
                if (tg_bc_step(&jobs[i], key, rsa, failures))
                    done++;
            }
        }
        t1 = tg_bc_cpu_s();
    }
    /* Let every job end before freeing its context. */
    for (int round = 0; round < 8; round++) {
        tg_keyprov_set_drain(tg_keyprov_set_current_get());
        for (int i = 0; i < TG_BC_JOBS; i++) {
            if (jobs[i].job != NULL)
                tg_bc_step(&jobs[i], key, rsa, failures);
        }
    }
out:
    for (int i = 0; i < TG_BC_JOBS; i++) {
        ASYNC_WAIT_CTX_free(jobs[i].wctx);
        EVP_MD_CTX_free(jobs[i].md);
    }
    return t1 > t0 ? (double)done / (t1 - t0) : 0.0;
}

static struct tg_keyprov_binding *tg_bc_bind(const char *provider, const struct tg_pkey *key,
                                             char *err, size_t errlen)
{
    struct tg_conf_keyprov conf;
    memset(&conf, 0, sizeof(conf));
    conf.provider_name = (char *)provider;
    conf.fallback = false;
    conf.poll_delay_ns = 1000000;
    conf.path = (char *)"bench-crypto.private_key_provider";
    conf.typed_config.path = (char *)"bench-crypto.private_key_provider.typed_config";
    struct tg_keyprov_binding *b = NULL;
    if (tg_keyprov_bind(&conf, key, &b, err, errlen) != TG_OK)
        return NULL;
    return b;
}

static void tg_bc_usage(FILE *f)
{
    fprintf(f, "usage: tlsgate bench-crypto [--seconds S] [--quick]\n"
               "  ops/s per core: OpenSSL scalar, crypto_mb raw, and through the full\n"
               "  provider path (EVP_DigestSign on a tlsgate key bound to cryptomb).\n"
               "  --seconds S  time per measurement (default 1)\n"
               "  --quick      skip the full crypto_mb tables (RSA-3072/4096 key generation)\n");
}

int tg_bench_crypto_main(int argc, char **argv)
{
    double seconds = 1.0;
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            char *end;
            seconds = strtod(argv[++i], &end);
            if (*end != '\0' || seconds <= 0 || seconds > 600) {
                fprintf(stderr, "tlsgate bench-crypto: --seconds: expected 0 < S <= 600\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--quick") == 0) {
            quick = true;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            tg_bc_usage(stdout);
            return 0;
        } else {
            tg_bc_usage(stderr);
            return 2;
        }
    }
    tg_log_set_level(TG_LOG_WARN);
    if (tg_ossl_init() != TG_OK)
        return 1;
    int rc = 0;
    struct tg_buf out = TG_BUF_INIT;
    struct tg_keyprov_binding *bindings[2] = {NULL, NULL};
    if (!quick && tg_mb_bench_run(&out, seconds) != TG_OK)
        tg_buf_puts(&out, "\n(crypto_mb is not available: scalar column only)\n");

    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct tg_keyprov_set *set = NULL;
    static size_t in_flight = TG_BC_JOBS;
    static const struct {
        const char *label, *alg, *param;
        enum tg_mb_kind kind;
    } cases[] = {
        {"RSA-2048 sign (PSS)", "RSA", "2048", TG_MB_KIND_RSA2048},
        {"ECDSA P-256 sign", "EC", "P-256", TG_MB_KIND_ECDSA_P256},
    };
    tg_buf_puts(&out, "\n## Through the full provider path\n\n"
                      "EVP_DigestSign on a key held by the tlsgate OpenSSL provider, bound to "
                      "cryptomb, 64 ASYNC jobs in flight, flushed as the event loop would. "
                      "crypto_mb raw = 8-lane batches through tg_mb_ops (start-up calibration).\n\n"
                      "| operation | OpenSSL scalar ops/s | crypto_mb raw ops/s | provider path "
                      "ops/s | provider / raw |\n|---|---:|---:|---:|---:|\n");
    for (size_t c = 0; c < TG_ARRAY_LEN(cases); c++) {
        char err[512] = "";
        EVP_PKEY *sw = strcmp(cases[c].alg, "RSA") == 0
                           ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
                           : EVP_PKEY_Q_keygen(NULL, NULL, "EC", cases[c].param);
        struct tg_pkey *key = NULL;
        struct tg_keyprov_binding *b = NULL;
        EVP_PKEY *wrapped = NULL;
        struct tg_mb_calib cal;
        const struct tg_pkey *keys[1];
        int failures = 0;
        if (sw == NULL || tg_pkey_from_evp(sw, &key, err, sizeof(err)) != TG_OK)
            goto next;
        b = tg_bc_bind("cryptomb", key, err, sizeof(err));
        if (b == NULL) {
            tg_buf_printf(&out, "| %s | | | cryptomb unavailable: %s | |\n", cases[c].label, err);
            goto next;
        }
        key->binding = b;
        bindings[c] = b;
        wrapped = tg_ossl_wrap_pkey(key);
        if (set == NULL && (loop == NULL || tg_keyprov_set_new(loop, 0, &in_flight, &set) != 0))
            goto next;
        tg_keyprov_set_current(set);
        keys[0] = key;
        double raw = 0, scalar = 0;
        if (tg_mb_calibrate(keys, 1, TG_MB_KIND_BIT(cases[c].kind), &cal) == TG_OK &&
            cal.valid[cases[c].kind]) {
            raw = 8e6 / cal.batch_us[cases[c].kind][8];
            scalar = 1e6 / cal.scalar_us[cases[c].kind];
        }
        double prov =
            wrapped ? tg_bc_provider_rate(wrapped, key->type == TG_PKEY_RSA, seconds, &failures)
                    : 0;
        tg_buf_printf(&out, "| %s | %.0f | %.0f | %.0f | %.0f%% |\n", cases[c].label, scalar, raw,
                      prov, raw > 0 ? 100.0 * prov / raw : 0.0);
        if (failures > 0) {
            tg_buf_printf(&out, "\n%d signature(s) failed on the provider path\n", failures);
            rc = 1;
        }
    next:
        EVP_PKEY_free(wrapped);
        EVP_PKEY_free(sw);
        tg_pkey_unref(key);
    }
    tg_keyprov_set_free(set);
    tg_keyprov_set_current(NULL);
    if (loop != NULL)
        ev_loop_destroy(loop);
    fwrite(out.data, 1, out.len, stdout);
    tg_buf_free(&out);
    tg_ossl_cleanup(); /* releases the keys, which refer to the bindings */
    for (size_t c = 0; c < TG_ARRAY_LEN(bindings); c++)
        tg_keyprov_binding_free(bindings[c]);
    tg_keyprov_shutdown();
    return rc;
}
