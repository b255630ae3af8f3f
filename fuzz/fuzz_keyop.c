/*
 * libFuzzer target: key-operation call sequences against the asynchronous
 * (deferred) provider, driven through real ASYNC jobs the way libssl drives
 * them. The input is a program: start an operation in a job, flush the
 * provider, resume a job (early, late, twice), cancel a connection's context,
 * drain, misuse the lifecycle API. Invariants: no crash, no sanitizer report,
 * every job finishes once the provider is drained, a cancelled job never
 * reports success, misuse is refused with TG_ESTATE.
 */
#include <ev.h>
#include <openssl/async.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "keyprov/tg_keyprov.h"
#include "providers/deferred/tg_deferred.h"
#include "providers/software/tg_software.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SLOTS 6

struct slot {
    bool busy;
    ASYNC_JOB *job;
    ASYNC_WAIT_CTX *wctx;
    struct tg_keyctx kctx;
    int type; /* 0 ECDSA sign, 1 X25519 keygen, 2 X25519 derive */
    int ret;
    int woken;
    struct tg_kxkey mine, peer;
};

static struct tg_pkey *g_key;
static struct tg_kxkey g_peer;
static struct ev_loop *g_loop;
static const struct tg_keyprov_binding *g_binding;

static void fatal_if(bool cond)
{
    if (cond)
        __builtin_trap();
}

static int wake_cb(void *arg)
{
    ((struct slot *)arg)->woken++;
    return 1;
}

static int job_fn(void *arg)
{
    struct slot *s = *(struct slot **)arg;
    struct tg_keyop op;
    if (s->type == 0) {
        tg_keyop_init(&op, TG_KEYOP_ECDSA_SIGN);
        op.pkey = g_key;
        memset(op.in, 0x5a, 32);
        op.inlen = 32;
        op.binding = g_binding;
    } else if (s->type == 1) {
        tg_keyop_init(&op, TG_KEYOP_KX_KEYGEN);
        memset(&s->mine, 0, sizeof(s->mine));
        s->mine.group = TG_GROUP_X25519;
        op.kx = &s->mine;
        op.binding = g_binding;
    } else {
        tg_keyop_init(&op, TG_KEYOP_KX_DERIVE);
        op.kx = &s->mine;
        op.peer = &g_peer;
        op.binding = g_binding;
    }
    return tg_keyop_run(&op);
}

static void init_once(void)
{
    if (g_key != NULL)
        return;
    static const struct tg_keyprov_ops *const provs[] = {&tg_software_provider,
                                                         &tg_deferred_provider};
    char rwhy[256];
    fatal_if(tg_keyprov_register(provs, 2, rwhy, sizeof(rwhy)) != TG_OK);
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    char why[128];
    fatal_if(pk == NULL || tg_pkey_from_evp(pk, &g_key, why, sizeof(why)) != TG_OK);
    EVP_PKEY_free(pk);
    /* A valid peer share and a valid private key for derive jobs. */
    struct tg_keyop op;
    memset(&g_peer, 0, sizeof(g_peer));
    g_peer.group = TG_GROUP_X25519;
    tg_keyop_init(&op, TG_KEYOP_KX_KEYGEN);
    op.kx = &g_peer;
    fatal_if(tg_keyop_compute_sw(&op) != TG_OK);
    g_peer.has_priv = false;
    EVP_PKEY_free(g_peer.sw);
    g_peer.sw = NULL;

    struct tg_conf_keyprov conf;
    memset(&conf, 0, sizeof(conf));
    conf.provider_name = (char *)"deferred";
    conf.path = (char *)"fuzz";
    conf.typed_config.path = (char *)"fuzz.typed_config";
    struct tg_keyprov_binding *b = NULL;
    char err[256];
    fatal_if(tg_keyprov_bind(&conf, NULL, &b, err, sizeof(err)) != TG_OK);
    g_binding = b;
    g_loop = ev_loop_new(EVFLAG_AUTO);
    fatal_if(!ASYNC_init_thread(0, 0));
}

static void start(struct slot *s, int type)
{
    memset(s, 0, sizeof(*s));
    s->busy = true;
    s->type = type;
    if (type == 2) {
        /* derive needs a private key of ours */
        struct tg_keyop op;
        s->mine.group = TG_GROUP_X25519;
        tg_keyop_init(&op, TG_KEYOP_KX_KEYGEN);
        op.kx = &s->mine;
        fatal_if(tg_keyop_compute_sw(&op) != TG_OK);
    }
    s->wctx = ASYNC_WAIT_CTX_new();
    fatal_if(s->wctx == NULL || !ASYNC_WAIT_CTX_set_callback(s->wctx, wake_cb, s));
}

/* Run or resume s's job once; returns true when the job finished. */
static bool step(struct slot *s)
{
    struct slot *arg = s;
    tg_keyctx_set_current(&s->kctx);
    int r = ASYNC_start_job(&s->job, s->wctx, &s->ret, job_fn, &arg, sizeof(arg));
    tg_keyctx_set_current(NULL);
    fatal_if(r == ASYNC_ERR || r == ASYNC_NO_JOBS);
    if (r == ASYNC_PAUSE)
        return false;
    /* ASYNC_FINISH */
    if (s->kctx.cancelled)
        fatal_if(s->ret == TG_OK);
    tg_kxkey_clear(&s->mine);
    ASYNC_WAIT_CTX_free(s->wctx);
    s->wctx = NULL;
    s->job = NULL;
    s->busy = false;
    return true;
}

static void misuse(void)
{
    struct tg_keyop op;
    tg_keyop_init(&op, TG_KEYOP_RSA_SIGN);
    fatal_if(tg_keyop_consume(&op) != TG_ESTATE);
    fatal_if(tg_keyop_complete(&op, TG_OK, TG_FALLBACK_DEVICE_ERROR) != TG_ESTATE);
    op.pkey = NULL;
    fatal_if(tg_keyop_run(&op) != TG_EINVAL); /* no key: refused, consumed */
    fatal_if(tg_keyop_run(&op) != TG_ESTATE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_once();
    struct tg_keyprov_set *set = NULL;
    fatal_if(tg_keyprov_set_new(g_loop, 0, NULL, &set) != TG_OK);
    tg_keyprov_set_current(set);
    struct slot slots[SLOTS];
    memset(slots, 0, sizeof(slots));
    for (size_t i = 0; i < size && i < 256; i++) {
        uint8_t b = data[i];
        struct slot *s = &slots[(b >> 3) % SLOTS];
        switch (b & 7) {
        case 0:
        case 1:
            if (!s->busy) {
                start(s, (b >> 6) % 3);
                step(s);
            }
            break;
        case 2:
            tg_keyprov_set_flush(set);
            break;
        case 3: /* resume, woken or not (a spurious wake-up must re-pause) */
            if (s->busy && s->job != NULL)
                step(s);
            break;
        case 4:
            if (s->busy)
                s->kctx.cancelled = true;
            break;
        case 5:
            tg_keyprov_set_drain(set);
            break;
        case 6:
            misuse();
            break;
        default:
            ev_run(g_loop, EVRUN_NOWAIT);
            break;
        }
    }
    /* Everything must end once the provider is drained. */
    tg_keyprov_set_drain(set);
    for (int s = 0; s < SLOTS; s++) {
        for (int tries = 0; slots[s].busy && tries < 4; tries++) {
            if (!step(&slots[s]))
                tg_keyprov_set_drain(set);
        }
        fatal_if(slots[s].busy);
    }
    fatal_if(tg_keyprov_set_pending(set) != 0);
    tg_keyprov_set_free(set);
    return 0;
}
