/*
 * tg_bench_libctx: a private OpenSSL library context for the load generator's
 * SSL_CTX, in which certificate parsing is cheap.
 *
 * Why: with OpenSSL 3.0 the client parses the server certificate on every
 * full handshake, and d2i_X509() decodes its public key with
 * OSSL_DECODER_CTX_new_for_pkey(), which walks every decoder of the library
 * context (40 in the default provider) under read locks, twice over. That
 * costs ~90 us per handshake here (measured: 88 us per d2i_X509 of an
 * RSA-2048 certificate), a third of the client's whole TLS cost, for a
 * result that is the same every time.
 *
 * How: the context holds one built-in provider, "tgbench", that forwards
 * every operation to the default provider of the process's default library
 * context (same implementations, same provider context pointer, so every
 * algorithm behaves exactly as in the default context), except that it
 * offers only the DER SubjectPublicKeyInfo decoders of the key types a
 * server certificate carries (RSA, RSA-PSS, EC, Ed25519, Ed448, DSA), and no
 * encoders or stores. The TLS capabilities (groups) are forwarded too, so
 * libssl sees the same groups. Decoding a certificate key then walks six
 * decoders instead of forty: the handshake costs ~45 us less on the client.
 * The same decoder set-up also builds a temporary method object for every
 * key manager (EVP_KEYMGMT_do_all_provided, ~9% of the client's CPU), so the
 * key managers, key exchanges and signatures that only wrap MACs and KDFs
 * for the legacy EVP_PKEY API (libssl 3.0 uses EVP_MAC and EVP_KDF for
 * those), and SM2, are left out as well; HMAC stays (CBC suites sign record
 * MACs through it). Nothing about the TLS handshake on the wire changes.
 *
 * Key share reuse (reuse_keyshare): the provider also wraps the X25519 and
 * X448 key generators so that the client's ephemeral key pair is generated
 * once and handed out (as a copy) to 1,024 handshakes before a new one is
 * made. The server's work does not change at all (it still makes its own
 * key pair and derives the shared secret with ours), and the client saves a
 * key generation per handshake (~25 us). The forward secrecy of a benchmark
 * connection is worth nothing; `--reuse-keyshare=false` turns it off.
 *
 * If anything fails, tg_bench_libctx_new() returns NULL and the caller uses
 * the default context (`--lean-libctx=false` does the same on purpose).
 *
 * Ownership: the returned context must be freed with tg_bench_libctx_free()
 * after every SSL_CTX made from it. One such context per process at a time;
 * the calling thread only.
 */
#include "bench/tg_bench_libctx.h"

#include <openssl/crypto.h>
#include <openssl/core_dispatch.h>
#include <openssl/provider.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const char *const tg_lean_keytypes[] = {"RSA", "RSA-PSS", "EC", "ED25519", "ED448", "DSA"};
/* Left out of KEYMGMT, KEYEXCH and SIGNATURE (first names). */
static const char *const tg_lean_unused[] = {"TLS1-PRF", "HKDF", "SCRYPT", "SIPHASH",
                                             "POLY1305", "CMAC", "SM2"};

static OSSL_PROVIDER *tg_lean_default; /* the forwarding target, one reference held */
static OSSL_ALGORITHM *tg_lean_decoders;
static OSSL_PROVIDER *tg_lean_self;

static bool tg_lean_first_name_is(const char *names, const char *name)
{
    size_t first = strcspn(names, ":");
    return strlen(name) == first && strncmp(names, name, first) == 0;
}

static bool tg_lean_is_unused(const char *names)
{
    for (size_t i = 0; i < sizeof(tg_lean_unused) / sizeof(tg_lean_unused[0]); i++) {
        if (tg_lean_first_name_is(names, tg_lean_unused[i]))
            return true;
    }
    return false;
}

/* A copy of the default provider's list for id without the unused entries. */
static OSSL_ALGORITHM *tg_lean_trimmed(int id)
{
    int no_cache = 0;
    const OSSL_ALGORITHM *all = OSSL_PROVIDER_query_operation(tg_lean_default, id, &no_cache);
    if (all == NULL)
        return NULL;
    size_t n = 0;
    while (all[n].algorithm_names != NULL)
        n++;
    OSSL_ALGORITHM *out = calloc(n + 1, sizeof(*out));
    if (out != NULL) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (!tg_lean_is_unused(all[i].algorithm_names))
                out[k++] = all[i];
        }
    }
    OSSL_PROVIDER_unquery_operation(tg_lean_default, id, all);
    return out;
}

/* ---- key share reuse ---- */

#define TG_LEAN_KEY_USES 1024

typedef void *(tg_gen_init_fn)(void *provctx, int selection, const OSSL_PARAM params[]);
typedef void(tg_gen_cleanup_fn)(void *genctx);
typedef void *(tg_gen_fn)(void *genctx, OSSL_CALLBACK *cb, void *cbarg);
typedef void *(tg_dup_fn)(const void *keydata, int selection);
typedef void(tg_free_fn)(void *keydata);

struct tg_lean_keycache {
    const char *name;         /* first name of the keymgmt */
    tg_gen_init_fn *gen_init; /* the default provider's functions */
    tg_gen_cleanup_fn *gen_cleanup;
    tg_gen_fn *gen;
    tg_dup_fn *dup;
    tg_free_fn *free;
    void *key; /* the cached key pair (keydata of the default provider) */
    unsigned uses;
    OSSL_DISPATCH *dispatch; /* copy of the keymgmt's table with our gen */
};

static struct tg_lean_keycache tg_lean_keys[2] = {{.name = "X25519"}, {.name = "X448"}};
static OSSL_ALGORITHM *tg_lean_keymgmt; /* the default list, trimmed, two entries wrapped */
static OSSL_ALGORITHM *tg_lean_keyexch; /* trimmed */
static OSSL_ALGORITHM *tg_lean_signature;

/*
 * The same gen function also serves parameter generation (TLS 1.2 makes the
 * server's key object that way), so remember what each generation context
 * was opened for and serve only key pairs from the cache. A handful of
 * contexts are open at a time, on one thread.
 */
static struct {
    void *genctx;
    int selection;
} tg_lean_genctx[16];

static void *tg_lean_gen_init(struct tg_lean_keycache *kc, void *provctx, int selection,
                              const OSSL_PARAM params[])
{
    void *g = kc->gen_init(provctx, selection, params);
    if (g == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof(tg_lean_genctx) / sizeof(tg_lean_genctx[0]); i++) {
        if (tg_lean_genctx[i].genctx == NULL) {
            tg_lean_genctx[i].genctx = g;
            tg_lean_genctx[i].selection = selection;
            break;
        }
    }
    return g; /* not recorded when the table is full: generated normally */
}

static void tg_lean_gen_cleanup(struct tg_lean_keycache *kc, void *genctx)
{
    for (size_t i = 0; i < sizeof(tg_lean_genctx) / sizeof(tg_lean_genctx[0]); i++) {
        if (tg_lean_genctx[i].genctx == genctx)
            tg_lean_genctx[i].genctx = NULL;
    }
    kc->gen_cleanup(genctx);
}

static bool tg_lean_wants_keypair(void *genctx)
{
    for (size_t i = 0; i < sizeof(tg_lean_genctx) / sizeof(tg_lean_genctx[0]); i++) {
        if (tg_lean_genctx[i].genctx == genctx)
            return (tg_lean_genctx[i].selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0;
    }
    return false;
}

static void *tg_lean_gen(struct tg_lean_keycache *kc, void *genctx, OSSL_CALLBACK *cb, void *cbarg)
{
    if (!tg_lean_wants_keypair(genctx))
        return kc->gen(genctx, cb, cbarg);
    if (kc->key == NULL || kc->uses >= TG_LEAN_KEY_USES) {
        void *fresh = kc->gen(genctx, cb, cbarg);
        if (fresh == NULL)
            return NULL;
        if (kc->key != NULL)
            kc->free(kc->key);
        kc->key = fresh;
        kc->uses = 0;
    }
    kc->uses++;
    return kc->dup(kc->key, OSSL_KEYMGMT_SELECT_ALL);
}

/* One set of entry points per key type (the functions get no other way to
 * tell which cache is theirs). */
#define TG_LEAN_WRAP(suffix, idx)                                                                  \
    static void *tg_lean_gen_init_##suffix(void *provctx, int selection,                           \
                                           const OSSL_PARAM params[])                              \
    {                                                                                              \
        return tg_lean_gen_init(&tg_lean_keys[idx], provctx, selection, params);                   \
    }                                                                                              \
    static void tg_lean_gen_cleanup_##suffix(void *genctx)                                         \
    {                                                                                              \
        tg_lean_gen_cleanup(&tg_lean_keys[idx], genctx);                                           \
    }                                                                                              \
    static void *tg_lean_gen_##suffix(void *genctx, OSSL_CALLBACK *cb, void *cbarg)                \
    {                                                                                              \
        return tg_lean_gen(&tg_lean_keys[idx], genctx, cb, cbarg);                                 \
    }
TG_LEAN_WRAP(x25519, 0)
TG_LEAN_WRAP(x448, 1)

static void (*const tg_lean_wrappers[2][3])(void) = {
    {(void (*)(void))tg_lean_gen_init_x25519, (void (*)(void))tg_lean_gen_cleanup_x25519,
     (void (*)(void))tg_lean_gen_x25519},
    {(void (*)(void))tg_lean_gen_init_x448, (void (*)(void))tg_lean_gen_cleanup_x448,
     (void (*)(void))tg_lean_gen_x448},
};

/* Trim the key managers; when reuse_keyshare, give X25519 and X448 our
 * generator (if their table has every function it needs). */
static int tg_lean_pick_keymgmt(bool reuse_keyshare)
{
    OSSL_ALGORITHM *all = tg_lean_keymgmt = tg_lean_trimmed(OSSL_OP_KEYMGMT);
    if (all == NULL)
        return -1;
    for (size_t i = 0; reuse_keyshare && all[i].algorithm_names != NULL; i++) {
        const char *names = all[i].algorithm_names;
        for (size_t k = 0; k < 2; k++) {
            struct tg_lean_keycache *kc = &tg_lean_keys[k];
            if (!tg_lean_first_name_is(names, kc->name))
                continue;
            size_t nf = 0;
            while (all[i].implementation[nf].function_id != 0)
                nf++;
            for (size_t f = 0; f < nf; f++) {
                const OSSL_DISPATCH *d = &all[i].implementation[f];
                if (d->function_id == OSSL_FUNC_KEYMGMT_GEN_INIT)
                    kc->gen_init = (tg_gen_init_fn *)(void *)d->function;
                else if (d->function_id == OSSL_FUNC_KEYMGMT_GEN_CLEANUP)
                    kc->gen_cleanup = (tg_gen_cleanup_fn *)(void *)d->function;
                else if (d->function_id == OSSL_FUNC_KEYMGMT_GEN)
                    kc->gen = (tg_gen_fn *)(void *)d->function;
                else if (d->function_id == OSSL_FUNC_KEYMGMT_DUP)
                    kc->dup = (tg_dup_fn *)(void *)d->function;
                else if (d->function_id == OSSL_FUNC_KEYMGMT_FREE)
                    kc->free = (tg_free_fn *)(void *)d->function;
            }
            if (kc->gen_init == NULL || kc->gen_cleanup == NULL || kc->gen == NULL ||
                kc->dup == NULL || kc->free == NULL)
                continue; /* leave this one alone */
            kc->dispatch = calloc(nf + 1, sizeof(*kc->dispatch));
            if (kc->dispatch == NULL)
                return -1;
            memcpy(kc->dispatch, all[i].implementation, nf * sizeof(OSSL_DISPATCH));
            for (size_t f = 0; f < nf; f++) {
                int id = kc->dispatch[f].function_id;
                if (id == OSSL_FUNC_KEYMGMT_GEN_INIT)
                    kc->dispatch[f].function = tg_lean_wrappers[k][0];
                else if (id == OSSL_FUNC_KEYMGMT_GEN_CLEANUP)
                    kc->dispatch[f].function = tg_lean_wrappers[k][1];
                else if (id == OSSL_FUNC_KEYMGMT_GEN)
                    kc->dispatch[f].function = tg_lean_wrappers[k][2];
            }
            all[i].implementation = kc->dispatch;
        }
    }
    return 0;
}

static const OSSL_ALGORITHM *tg_lean_query(void *provctx, int id, int *no_cache)
{
    (void)provctx;
    switch (id) {
    case OSSL_OP_DECODER:
        *no_cache = 0;
        return tg_lean_decoders;
    case OSSL_OP_ENCODER:
    case OSSL_OP_STORE:
        *no_cache = 0;
        return NULL;
    case OSSL_OP_KEYMGMT:
        *no_cache = 0;
        return tg_lean_keymgmt;
    case OSSL_OP_KEYEXCH:
        *no_cache = 0;
        return tg_lean_keyexch;
    case OSSL_OP_SIGNATURE:
        *no_cache = 0;
        return tg_lean_signature;
    default:
        return OSSL_PROVIDER_query_operation(tg_lean_default, id, no_cache);
    }
}

static void tg_lean_unquery(void *provctx, int id, const OSSL_ALGORITHM *algs)
{
    (void)provctx;
    if (id != OSSL_OP_DECODER && id != OSSL_OP_ENCODER && id != OSSL_OP_STORE &&
        id != OSSL_OP_KEYMGMT && id != OSSL_OP_KEYEXCH && id != OSSL_OP_SIGNATURE)
        OSSL_PROVIDER_unquery_operation(tg_lean_default, id, algs);
}

static int tg_lean_caps(void *provctx, const char *capability, OSSL_CALLBACK *cb, void *arg)
{
    (void)provctx;
    return OSSL_PROVIDER_get_capabilities(tg_lean_default, capability, cb, arg);
}

static const OSSL_DISPATCH tg_lean_dispatch[] = {
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))tg_lean_query},
    {OSSL_FUNC_PROVIDER_UNQUERY_OPERATION, (void (*)(void))tg_lean_unquery},
    {OSSL_FUNC_PROVIDER_GET_CAPABILITIES, (void (*)(void))tg_lean_caps},
    {0, NULL},
};

static int tg_lean_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                        const OSSL_DISPATCH **out, void **provctx)
{
    (void)handle;
    (void)in;
    /* The forwarded implementations get the provider context they were
     * written for: the default provider's own. */
    *provctx = OSSL_PROVIDER_get0_provider_ctx(tg_lean_default);
    *out = tg_lean_dispatch;
    return *provctx != NULL;
}

/* Keep the DER SubjectPublicKeyInfo decoders of the listed key types. */
static int tg_lean_pick_decoders(void)
{
    int no_cache = 0;
    const OSSL_ALGORITHM *all =
        OSSL_PROVIDER_query_operation(tg_lean_default, OSSL_OP_DECODER, &no_cache);
    if (all == NULL)
        return -1;
    size_t n = 0;
    while (all[n].algorithm_names != NULL)
        n++;
    tg_lean_decoders = calloc(n + 1, sizeof(*tg_lean_decoders));
    if (tg_lean_decoders == NULL)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *names = all[i].algorithm_names, *props = all[i].property_definition;
        if (props == NULL || strstr(props, "input=der") == NULL ||
            strstr(props, "structure=SubjectPublicKeyInfo") == NULL)
            continue;
        for (size_t t = 0; t < sizeof(tg_lean_keytypes) / sizeof(tg_lean_keytypes[0]); t++) {
            if (tg_lean_first_name_is(names, tg_lean_keytypes[t])) {
                tg_lean_decoders[k++] = all[i];
                break;
            }
        }
    }
    OSSL_PROVIDER_unquery_operation(tg_lean_default, OSSL_OP_DECODER, all);
    return k > 0 ? 0 : -1;
}

OSSL_LIB_CTX *tg_bench_libctx_new(bool reuse_keyshare)
{
    OSSL_LIB_CTX *ctx = NULL;
    if (tg_lean_default != NULL)
        return NULL; /* one at a time */
    tg_lean_default = OSSL_PROVIDER_load(NULL, "default");
    if (tg_lean_default == NULL || tg_lean_pick_decoders() != 0)
        goto fail;
    if (tg_lean_pick_keymgmt(reuse_keyshare) != 0)
        goto fail;
    tg_lean_keyexch = tg_lean_trimmed(OSSL_OP_KEYEXCH);
    tg_lean_signature = tg_lean_trimmed(OSSL_OP_SIGNATURE);
    if (tg_lean_keyexch == NULL || tg_lean_signature == NULL)
        goto fail;
    ctx = OSSL_LIB_CTX_new();
    if (ctx == NULL || OSSL_PROVIDER_add_builtin(ctx, "tgbench", tg_lean_init) != 1)
        goto fail;
    tg_lean_self = OSSL_PROVIDER_load(ctx, "tgbench");
    if (tg_lean_self == NULL)
        goto fail;
    return ctx;
fail:
    OSSL_LIB_CTX_free(ctx);
    tg_bench_libctx_free(NULL);
    return NULL;
}

void tg_bench_libctx_free(OSSL_LIB_CTX *ctx)
{
    if (tg_lean_self != NULL) {
        OSSL_PROVIDER_unload(tg_lean_self);
        tg_lean_self = NULL;
    }
    OSSL_LIB_CTX_free(ctx);
    for (size_t k = 0; k < 2; k++) {
        struct tg_lean_keycache *kc = &tg_lean_keys[k];
        if (kc->key != NULL)
            kc->free(kc->key);
        free(kc->dispatch);
        kc->key = NULL;
        kc->dispatch = NULL;
        kc->gen_init = NULL;
        kc->gen_cleanup = NULL;
        kc->gen = NULL;
        kc->dup = NULL;
        kc->free = NULL;
        kc->uses = 0;
    }
    free(tg_lean_keymgmt);
    free(tg_lean_keyexch);
    free(tg_lean_signature);
    tg_lean_keymgmt = tg_lean_keyexch = tg_lean_signature = NULL;
    if (tg_lean_default != NULL) {
        OSSL_PROVIDER_unload(tg_lean_default);
        tg_lean_default = NULL;
    }
    free(tg_lean_decoders);
    tg_lean_decoders = NULL;
}
