/*
 * `tlsgate bench-crypto`: operations per second per core for the private-key
 * operations of a handshake, on one thread:
 *   - OpenSSL scalar (tg_keyop_compute_sw: the software provider's path and
 *     every fallback's), for every operation a handshake may need;
 *   - what each key provider with a microbench hook measures of its own
 *     (tg_keyprov_ops.microbench; cryptomb: crypto_mb through its batch
 *     layer and as the raw call);
 *   - the full provider path: EVP_DigestSign on a key held by the tlsgate
 *     OpenSSL provider, bound to that provider, inside ASYNC jobs that pause
 *     until a flush runs the batch: exactly what a handshake does, minus the
 *     network.
 * No provider is known here by name: a provider takes part through its hook.
 * CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID): stable on a
 * shared machine where wall-clock rates are not.
 */
#include <ev.h>
#include <openssl/async.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/tg_bench_crypto.h"
#include "core/tg_buf.h"
#include "core/tg_log.h"
#include "core/tg_sysinfo.h"
#include "keyprov/tg_keyprov.h"
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
    unsigned char sig[TG_KEYOP_OUT_MAX];
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

/* ---- the cases, and OpenSSL's rate for each ---- */

/* Every operation a handshake may need. The `path` ones also go through the
 * provider path, and are all that bench-crypto --quick measures. */
static const struct tg_bc_case_def {
    const char *label;
    enum tg_keyop_type type;
    const char *alg, *param; /* signing key: EVP_PKEY_Q_keygen arguments */
    enum tg_group group;     /* key exchange */
    bool path;
} tg_bc_case_defs[] = {
    {"RSA-2048 sign", TG_KEYOP_RSA_SIGN, "RSA", "2048", TG_GROUP_NONE, true},
    {"RSA-3072 sign", TG_KEYOP_RSA_SIGN, "RSA", "3072", TG_GROUP_NONE, false},
    {"RSA-4096 sign", TG_KEYOP_RSA_SIGN, "RSA", "4096", TG_GROUP_NONE, false},
    {"ECDSA P-256 sign", TG_KEYOP_ECDSA_SIGN, "EC", "P-256", TG_GROUP_NONE, true},
    {"ECDSA P-384 sign", TG_KEYOP_ECDSA_SIGN, "EC", "P-384", TG_GROUP_NONE, false},
    {"X25519 keygen", TG_KEYOP_KX_KEYGEN, NULL, NULL, TG_GROUP_X25519, false},
    {"X25519 derive", TG_KEYOP_KX_DERIVE, NULL, NULL, TG_GROUP_X25519, false},
    {"P-256 keygen", TG_KEYOP_KX_KEYGEN, NULL, NULL, TG_GROUP_P256, false},
    {"P-256 derive", TG_KEYOP_KX_DERIVE, NULL, NULL, TG_GROUP_P256, false},
    {"P-384 keygen", TG_KEYOP_KX_KEYGEN, NULL, NULL, TG_GROUP_P384, false},
    {"P-384 derive", TG_KEYOP_KX_DERIVE, NULL, NULL, TG_GROUP_P384, false},
};
#define TG_BC_NCASES TG_ARRAY_LEN(tg_bc_case_defs)

static struct tg_pkey *tg_bc_key(const struct tg_bc_case_def *d)
{
    EVP_PKEY *evp = strcmp(d->alg, "RSA") == 0
                        ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)strtoul(d->param, NULL, 10))
                        : EVP_PKEY_Q_keygen(NULL, NULL, "EC", d->param);
    struct tg_pkey *k = NULL;
    if (evp == NULL || tg_pkey_from_evp(evp, &k, NULL, 0) != TG_OK)
        k = NULL;
    EVP_PKEY_free(evp);
    return k;
}

/* One scalar operation of a case, ready to repeat. */
struct tg_bc_scalar {
    struct tg_keyop op;
    struct tg_kxkey mine, peer;
};

static int tg_bc_keypair(struct tg_kxkey *k, enum tg_group g)
{
    struct tg_keyop op;
    memset(k, 0, sizeof(*k));
    k->group = g;
    tg_keyop_init(&op, TG_KEYOP_KX_KEYGEN);
    op.kx = k;
    return tg_keyop_compute_sw(&op);
}

static int tg_bc_scalar_init(struct tg_bc_scalar *s, const struct tg_keyprov_bench_case *c)
{
    memset(s, 0, sizeof(*s));
    tg_keyop_init(&s->op, c->type);
    s->op.inlen = 32;
    memset(s->op.in, 0x5a, 32);
    switch (c->type) {
    case TG_KEYOP_RSA_SIGN:
        s->op.md = EVP_sha256();
        s->op.rsa_padding = TG_RSA_PAD_PKCS1;
        s->op.pkey = c->key;
        return c->key != NULL ? TG_OK : TG_EINVAL;
    case TG_KEYOP_ECDSA_SIGN:
        s->op.pkey = c->key;
        return c->key != NULL ? TG_OK : TG_EINVAL;
    case TG_KEYOP_KX_KEYGEN:
        s->mine.group = c->group;
        s->op.kx = &s->mine;
        return TG_OK;
    default: { /* derive: our pair and a peer's share, from OpenSSL */
        struct tg_kxkey other;
        s->op.kx = &s->mine;
        s->op.peer = &s->peer;
        int rc = tg_bc_keypair(&s->mine, c->group);
        if (rc != TG_OK)
            return rc;
        rc = tg_bc_keypair(&other, c->group);
        if (rc == TG_OK)
            rc = tg_kxkey_set_public(&s->peer, c->group, other.pub, other.publen);
        tg_kxkey_clear(&other);
        return rc;
    }
    }
}

/* CPU microseconds per scalar operation of case c, over `seconds` (at least
 * two operations, after a warm-up one); 0 when the operation fails. */
static double tg_bc_scalar_us(const struct tg_keyprov_bench_case *c, double seconds)
{
    struct tg_bc_scalar s;
    double us = 0;
    if (tg_bc_scalar_init(&s, c) == TG_OK && tg_keyop_compute_sw(&s.op) == TG_OK) {
        unsigned long calls = 0;
        double t0 = tg_bc_cpu_s(), t = t0;
        int rc = TG_OK;
        while (rc == TG_OK && (calls < 2 || t - t0 < seconds)) {
            s.op.state = TG_KEYOP_NEW;
            rc = tg_keyop_compute_sw(&s.op);
            calls++;
            t = tg_bc_cpu_s();
        }
        us = rc == TG_OK ? (t - t0) * 1e6 / (double)calls : 0;
    }
    tg_kxkey_clear(&s.mine);
    tg_kxkey_clear(&s.peer);
    OPENSSL_cleanse(&s, sizeof(s));
    return us;
}

/* ---- the report ---- */

static void tg_bc_preamble(struct tg_buf *out, double seconds)
{
    struct tg_cpuinfo cpu;
    if (tg_sysinfo_read_cpuinfo(NULL, &cpu) != TG_OK)
        cpu.model[0] = '\0';
    tg_buf_printf(out,
                  "## bench-crypto\n\n- CPU: %s\n- OpenSSL: %s\n"
                  "- one thread, CPU time of that thread (ops/s per core), %.2f s per case; "
                  "scalar = tg_keyop_compute_sw (OpenSSL EVP, default provider); RSA = PKCS#1 "
                  "v1.5 SHA-256\n\n",
                  cpu.model[0] ? cpu.model : "?", tg_sysinfo_openssl_runtime(), seconds);
}

/* When no provider had measurements of its own: OpenSSL's rates alone. */
static void tg_bc_scalar_table(struct tg_buf *out, const struct tg_keyprov_bench_case *cases,
                               size_t n)
{
    tg_buf_puts(out, "| operation | OpenSSL scalar ops/s |\n|---|---:|\n");
    for (size_t i = 0; i < n; i++) {
        if (cases[i].scalar_us > 0)
            tg_buf_printf(out, "| %s | %.0f |\n", cases[i].label, 1e6 / cases[i].scalar_us);
        else
            tg_buf_printf(out, "| %s | (failed) |\n", cases[i].label);
    }
}

/* What one provider with a microbench hook contributes. */
struct tg_bc_prov {
    const struct tg_keyprov_ops *ops;
    const char *peak_label;
    double peak_ops[TG_BC_NCASES];
    struct tg_keyprov_binding *bindings[TG_BC_NCASES];
};

/* The provider-path table of one provider over the cases marked in path[]
 * (keys[i]: cases[i]'s key, whose binding it sets). Returns the number of
 * signatures that failed. */
static int tg_bc_path_table(struct tg_buf *out, struct tg_bc_prov *p,
                            const struct tg_keyprov_bench_case *cases, struct tg_pkey *const keys[],
                            const bool path[], size_t n, double seconds)
{
    static size_t in_flight = TG_BC_JOBS;
    int failures = 0;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct tg_keyprov_set *set = NULL;
    tg_buf_printf(out,
                  "\n## Through the full provider path\n\n"
                  "EVP_DigestSign on a key held by the tlsgate OpenSSL provider, bound to "
                  "%s, %d ASYNC jobs in flight, flushed as the event loop would. "
                  "%s = the provider's own rate outside that path (its microbench hook).\n\n"
                  "| operation | OpenSSL scalar ops/s | %s ops/s | provider path "
                  "ops/s | provider / raw |\n|---|---:|---:|---:|---:|\n",
                  p->ops->name, TG_BC_JOBS, p->peak_label, p->peak_label);
    for (size_t c = 0; c < n; c++) {
        char err[512] = "";
        bool rsa = cases[c].type == TG_KEYOP_RSA_SIGN;
        const char *pss = rsa ? " (PSS)" : "";
        struct tg_pkey *key = keys[c];
        if (!path[c] || key == NULL)
            continue;
        struct tg_keyprov_binding *b = tg_bc_bind(p->ops->name, key, err, sizeof(err));
        if (b == NULL) {
            tg_buf_printf(out, "| %s%s | | | %s unavailable: %s | |\n", cases[c].label, pss,
                          p->ops->name, err);
            continue;
        }
        key->binding = b;
        p->bindings[c] = b;
        if (set == NULL && (loop == NULL || tg_keyprov_set_new(loop, 0, &in_flight, &set) != 0))
            break;
        tg_keyprov_set_current(set);
        EVP_PKEY *wrapped = tg_ossl_wrap_pkey(key);
        int failed = 0;
        double prov = wrapped ? tg_bc_provider_rate(wrapped, rsa, seconds, &failed) : 0;
        EVP_PKEY_free(wrapped);
        double scalar = cases[c].scalar_us > 0 ? 1e6 / cases[c].scalar_us : 0;
        double raw = p->peak_ops[c];
        tg_buf_printf(out, "| %s%s | %.0f | %.0f | %.0f | %.0f%% |\n", cases[c].label, pss, scalar,
                      raw, prov, raw > 0 ? 100.0 * prov / raw : 0.0);
        if (failed > 0)
            tg_buf_printf(out, "\n%d signature(s) failed on the provider path\n", failed);
        failures += failed;
    }
    tg_keyprov_set_free(set);
    tg_keyprov_set_current(NULL);
    if (loop != NULL)
        ev_loop_destroy(loop);
    return failures;
}

/* Ask provider p for its own measurements (its section goes to out when not
 * quick); notes gets why when it has none. */
static void tg_bc_microbench(struct tg_bc_prov *p, struct tg_keyprov_bench_case *cases, size_t n,
                             double seconds, bool quick, struct tg_buf *out, struct tg_buf *notes,
                             size_t *sections)
{
    struct tg_buf section = TG_BUF_INIT;
    struct tg_keyprov_bench req = {cases, n, seconds, quick ? NULL : &section, NULL};
    for (size_t i = 0; i < n; i++)
        cases[i].peak_ops = 0;
    int rc = p->ops->microbench(&req);
    if (rc == TG_OK && section.len > 0 && !tg_buf_failed(&section)) {
        tg_buf_append(out, section.data, section.len);
        (*sections)++;
    } else if (!quick) {
        tg_buf_printf(notes, "\n(%s: no measurements of its own: %s)\n", p->ops->name,
                      tg_strerror(rc));
    }
    tg_buf_free(&section);
    p->peak_label = req.peak_label ? req.peak_label : p->ops->name;
    for (size_t i = 0; i < n && i < TG_BC_NCASES; i++)
        p->peak_ops[i] = cases[i].peak_ops;
}

static void tg_bc_usage(FILE *f)
{
    fprintf(f, "usage: tlsgate bench-crypto [--seconds S] [--quick]\n"
               "  ops/s per core: OpenSSL scalar, what each key provider measures of its\n"
               "  own (its microbench hook), and through the full provider path\n"
               "  (EVP_DigestSign on a tlsgate key bound to that provider).\n"
               "  --seconds S  time per measurement (default 1)\n"
               "  --quick      the provider path only (RSA-2048, ECDSA P-256): no\n"
               "               RSA-3072/4096 key generation, no per-provider tables\n");
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
    struct tg_buf out = TG_BUF_INIT, notes = TG_BUF_INIT;
    struct tg_keyprov_bench_case cases[TG_BC_NCASES];
    struct tg_pkey *keys[TG_BC_NCASES] = {NULL};
    bool path[TG_BC_NCASES] = {false};
    size_t n = 0;
    memset(cases, 0, sizeof(cases));

    for (size_t i = 0; i < TG_BC_NCASES; i++) {
        const struct tg_bc_case_def *d = &tg_bc_case_defs[i];
        if (quick && !d->path)
            continue;
        struct tg_keyprov_bench_case *c = &cases[n];
        keys[n] = d->alg != NULL ? tg_bc_key(d) : NULL;
        path[n] = d->path;
        c->label = d->label;
        c->type = d->type;
        c->group = d->group;
        c->key = keys[n];
        if (d->alg == NULL || c->key != NULL)
            c->scalar_us = tg_bc_scalar_us(c, seconds);
        n++;
    }

    /* Every provider with a hook that can run here. */
    size_t nall = 0, nprov = 0, sections = 0;
    const struct tg_keyprov_ops *const *all = tg_keyprov_all(&nall);
    struct tg_bc_prov *provs = calloc(nall ? nall : 1, sizeof(*provs));
    if (provs == NULL) {
        rc = 1;
        goto out;
    }
    if (!quick)
        tg_bc_preamble(&out, seconds);
    for (size_t i = 0; i < nall; i++) {
        char why[256] = "";
        if (all[i]->microbench == NULL)
            continue;
        if (tg_keyprov_require(all[i]->name, why, sizeof(why)) != TG_OK) {
            tg_buf_printf(&notes, "\n(%s cannot run here: %s)\n", all[i]->name, why);
            continue;
        }
        provs[nprov].ops = all[i];
        tg_bc_microbench(&provs[nprov], cases, n, seconds, quick, &out, &notes, &sections);
        nprov++;
    }
    if (!quick && sections == 0)
        tg_bc_scalar_table(&out, cases, n);
    if (notes.len > 0)
        tg_buf_append(&out, notes.data, notes.len);
    for (size_t p = 0; p < nprov; p++) {
        if (tg_bc_path_table(&out, &provs[p], cases, keys, path, n, seconds) > 0)
            rc = 1;
    }

out:
    if (tg_buf_failed(&out))
        rc = 1;
    else if (out.len > 0)
        fwrite(out.data, 1, out.len, stdout);
    tg_buf_free(&out);
    tg_buf_free(&notes);
    for (size_t i = 0; i < n; i++)
        tg_pkey_unref(keys[i]);
    tg_ossl_cleanup(); /* releases the keys, which refer to the bindings */
    for (size_t p = 0; p < nprov; p++) {
        for (size_t c = 0; c < TG_BC_NCASES; c++)
            tg_keyprov_binding_free(provs[p].bindings[c]);
    }
    free(provs);
    tg_keyprov_shutdown();
    return rc;
}
