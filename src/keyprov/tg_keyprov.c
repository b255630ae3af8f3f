/*
 * Provider registry, bindings (certificate -> provider decided at start-up),
 * per-worker instance sets and their statistics.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tg_log.h"
#include "keyprov/tg_keyprov.h"
#include "keyprov/tg_keyprov_internal.h"

/* The registry, filled once by tg_keyprov_register(). Index = slot in the
 * per-worker instance arrays. */
static const struct tg_keyprov_ops *tg_providers[TG_KEYPROV_MAX];
static size_t tg_nprov;
static int tg_software_slot = -1;
#define TG_NPROV tg_nprov

const char *tg_keyop_type_name(enum tg_keyop_type t)
{
    static const char *const names[] = {
#define TG_KEYOP_NAME(id, label) label,
        TG_KEYOP_TYPES(TG_KEYOP_NAME)
#undef TG_KEYOP_NAME
    };
    return (unsigned)t < TG_KEYOP_TYPE_COUNT ? names[t] : "unknown";
}

const struct tg_hist_spec tg_keyprov_batch_spec = {
    .name = "tlsgate_keyprov_batch_size",
    .help = "Operations run per batch (flush)",
    .scale = 1,
    .nbounds = 10,
    .bounds = {1, 2, 3, 4, 5, 6, 7, 8, 16, 64},
};

const struct tg_keyprov_ops *tg_keyprov_find(const char *name)
{
    for (size_t i = 0; i < TG_NPROV; i++) {
        if (strcmp(tg_providers[i]->name, name) == 0)
            return tg_providers[i];
    }
    return NULL;
}

const char *const *tg_keyprov_names(void)
{
    static const char *names[TG_KEYPROV_MAX + 1];
    for (size_t i = 0; i < TG_NPROV; i++)
        names[i] = tg_providers[i]->name;
    names[TG_NPROV] = NULL;
    return names;
}

const struct tg_keyprov_ops *const *tg_keyprov_all(size_t *n)
{
    *n = TG_NPROV;
    return tg_providers;
}

static const struct tg_config *tg_kp_doctor_cfg;

void tg_keyprov_set_doctor_config(const struct tg_config *cfg)
{
    tg_kp_doctor_cfg = cfg;
}

const struct tg_conf_keyprov *tg_keyprov_doctor_block(const char *name, size_t *it)
{
    const struct tg_config *cfg = tg_kp_doctor_cfg;
    if (cfg == NULL)
        return NULL;
    /* *it counts certificates across listeners, in file order. */
    size_t k = 0;
    for (size_t l = 0; l < cfg->n_listeners; l++) {
        const struct tg_conf_tls *tls = &cfg->listeners[l].tls;
        for (size_t c = 0; c < tls->n_certs; c++, k++) {
            if (k < *it)
                continue;
            const struct tg_conf_keyprov *kp = &tls->certs[c].keyprov;
            const char *pn = kp->provider_name ? kp->provider_name : TG_KEYPROV_FALLBACK;
            if (strcmp(pn, name) == 0) {
                *it = k + 1;
                return kp;
            }
        }
    }
    *it = k;
    return NULL;
}

static int tg_keyprov_slot(const struct tg_keyprov_ops *ops)
{
    for (size_t i = 0; i < TG_NPROV; i++) {
        if (tg_providers[i] == ops)
            return (int)i;
    }
    return -1;
}

/* The binding of inline software work; its ops are the registered
 * "software" provider (set by tg_keyprov_register). */
static struct tg_keyprov_binding tg_software_binding = {
    .ops = NULL,
    .configured = TG_KEYPROV_FALLBACK,
    .settings = NULL,
    .slot = -1,
    .poll_delay_ns = 0,
    .fallback = false,
    .kx = false,
};

struct tg_keyprov_set;
static struct tg_keyprov_set *tg_kp_sets; /* defined with the sets below */

int tg_keyprov_register(const struct tg_keyprov_ops *const *ops, size_t n, char *why, size_t whylen)
{
    if (tg_kp_sets != NULL) {
        snprintf(why, whylen, "providers cannot change while workers run");
        return TG_ESTATE;
    }
    if (n > TG_KEYPROV_MAX) {
        snprintf(why, whylen, "%zu providers registered, at most %d fit", n, TG_KEYPROV_MAX);
        return TG_EINVAL;
    }
    int sw = -1;
    for (size_t i = 0; i < n; i++) {
        if (ops[i] == NULL || ops[i]->name == NULL || ops[i]->name[0] == '\0' ||
            ops[i]->submit == NULL) {
            snprintf(why, whylen, "provider #%zu has no name or no submit function", i);
            return TG_EINVAL;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(ops[i]->name, ops[j]->name) == 0) {
                snprintf(why, whylen, "provider '%s' registered twice", ops[i]->name);
                return TG_EINVAL;
            }
        }
        if (strcmp(ops[i]->name, TG_KEYPROV_FALLBACK) == 0)
            sw = (int)i;
    }
    if (sw < 0) {
        snprintf(why, whylen, "no '%s' provider: it is every other provider's fallback",
                 TG_KEYPROV_FALLBACK);
        return TG_EINVAL;
    }
    tg_keyprov_shutdown();
    for (size_t i = 0; i < n; i++)
        tg_providers[i] = ops[i];
    tg_nprov = n;
    tg_software_slot = sw;
    tg_software_binding.ops = ops[sw];
    tg_software_binding.slot = sw;
    return TG_OK;
}

/* ---- process-wide state (main thread at start-up; read-only afterwards) ---- */

enum tg_init_state { TG_INIT_NOT_TRIED, TG_INIT_OK, TG_INIT_FAILED };

static struct {
    enum tg_init_state init[TG_KEYPROV_MAX];
    char why[TG_KEYPROV_MAX][256];
    /* Some binding runs on it: workers create its state. Atomic: a reload
     * sets it on the main thread while a worker may be starting. */
    _Atomic bool used[TG_KEYPROV_MAX];
} tg_kp_global;

static int tg_keyprov_global_init(int slot, const char **why)
{
    if (tg_kp_global.init[slot] == TG_INIT_NOT_TRIED) {
        const struct tg_keyprov_ops *ops = tg_providers[slot];
        int rc = ops->global_init
                     ? ops->global_init(tg_kp_global.why[slot], sizeof(tg_kp_global.why[slot]))
                     : TG_OK;
        tg_kp_global.init[slot] = rc == TG_OK ? TG_INIT_OK : TG_INIT_FAILED;
        if (rc != TG_OK && tg_kp_global.why[slot][0] == '\0')
            snprintf(tg_kp_global.why[slot], sizeof(tg_kp_global.why[slot]), "%s", tg_strerror(rc));
    }
    *why = tg_kp_global.why[slot];
    return tg_kp_global.init[slot] == TG_INIT_OK ? TG_OK : TG_EUNAVAIL;
}

void tg_keyprov_shutdown(void)
{
    tg_keyop_sw_thread_cleanup(); /* the calling thread's cached contexts */
    for (size_t i = 0; i < TG_NPROV; i++) {
        if (tg_kp_global.init[i] == TG_INIT_OK && tg_providers[i]->global_cleanup)
            tg_providers[i]->global_cleanup();
        tg_kp_global.init[i] = TG_INIT_NOT_TRIED;
        tg_kp_global.why[i][0] = '\0';
        tg_kp_global.used[i] = false;
    }
}

const struct tg_keyprov_binding *tg_keyprov_software_binding(void)
{
    return &tg_software_binding;
}

void tg_keyprov_binding_free(struct tg_keyprov_binding *b)
{
    if (b == NULL || b == &tg_software_binding)
        return;
    if (b->settings != NULL && b->ops->settings_free != NULL)
        b->ops->settings_free(b->settings);
    free(b);
}

/* A binding to the configured provider, with its settings (configure). */
static int tg_keyprov_binding_new(const struct tg_conf_keyprov *conf,
                                  struct tg_keyprov_binding **out, char *err, size_t errlen)
{
    *out = NULL;
    const char *name = conf->provider_name ? conf->provider_name : TG_KEYPROV_FALLBACK;
    const struct tg_keyprov_ops *ops = tg_keyprov_find(name);
    if (ops == NULL) {
        tg_conf_error(err, errlen, &conf->mark, conf->path, "unknown provider '%s'", name);
        return TG_ECONFIG;
    }
    struct tg_keyprov_binding *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return TG_ENOMEM;
    b->configured = ops->name;
    b->fallback = conf->fallback;
    b->poll_delay_ns = conf->poll_delay_ns;
    bool kx = false;
    int rc = TG_OK;
    if (ops->configure != NULL) {
        rc = ops->configure(conf, &b->settings, &kx, err, errlen);
    } else if (conf->typed_config.n > 0) {
        rc = tg_conf_params_check_unused(&conf->typed_config, ops->name, err, errlen);
    }
    if (rc != TG_OK) {
        free(b);
        return rc;
    }
    b->ops = ops;
    b->kx = kx && ops->does_kx;
    b->slot = tg_keyprov_slot(ops);
    *out = b;
    return TG_OK;
}

int tg_keyprov_bind(const struct tg_conf_keyprov *conf, const struct tg_pkey *key,
                    struct tg_keyprov_binding **out, char *err, size_t errlen)
{
    *out = NULL;
    const struct tg_keyprov_ops *held =
        tg_keyprov_find(conf->provider_name ? conf->provider_name : TG_KEYPROV_FALLBACK);
    if (key != NULL && held != NULL && held->load_key != NULL) {
        tg_conf_error(err, errlen, &conf->mark, conf->path,
                      "provider '%s' holds private keys itself: remove private_key from this "
                      "certificate",
                      held->name);
        return TG_ECONFIG;
    }
    struct tg_keyprov_binding *b = NULL;
    TG_GUARD(tg_keyprov_binding_new(conf, &b, err, errlen));
    const struct tg_keyprov_ops *ops = b->ops;
    const char *why = "";
    int slot = b->slot;
    int rc = tg_keyprov_global_init(slot, &why);
    char keywhy[256] = "";
    if (rc == TG_OK && key != NULL && ops->supports_key != NULL) {
        rc = ops->supports_key(key, keywhy, sizeof(keywhy));
        why = keywhy;
    }
    if (rc != TG_OK) {
        if (!conf->fallback) {
            tg_conf_error(err, errlen, &conf->mark, conf->path,
                          "provider '%s' cannot run here: %s (set fallback: true to serve "
                          "with the software provider instead)",
                          ops->name, why);
            tg_keyprov_binding_free(b);
            return TG_EUNAVAIL;
        }
        TG_WARN("%s: provider '%s' cannot run here: %s; serving with 'software' "
                "(fallback: true)",
                conf->path ? conf->path : "private_key_provider", ops->name, why);
        if (b->settings != NULL && ops->settings_free != NULL)
            ops->settings_free(b->settings);
        b->settings = NULL;
        b->ops = tg_software_binding.ops;
        b->kx = false;
        slot = tg_software_slot;
    }
    b->slot = slot;
    tg_kp_global.used[tg_software_slot] = true;
    tg_kp_global.used[slot] = true;
    *out = b;
    return TG_OK;
}

int tg_keyprov_bind_held(const struct tg_conf_keyprov *conf, EVP_PKEY *cert_pub,
                         struct tg_keyprov_binding **out, struct tg_pkey **key, X509 **leaf,
                         char *err, size_t errlen)
{
    *out = NULL;
    *key = NULL;
    if (leaf != NULL)
        *leaf = NULL;
    const char *name = conf->provider_name ? conf->provider_name : TG_KEYPROV_FALLBACK;
    const struct tg_keyprov_ops *ops = tg_keyprov_find(name);
    if (ops != NULL && ops->load_key == NULL) {
        tg_conf_error(err, errlen, &conf->mark, conf->path,
                      "provider '%s' does not hold private keys: give the certificate's "
                      "private_key",
                      ops->name);
        return TG_ECONFIG;
    }
    if (conf->fallback_set && conf->fallback) {
        char path[512];
        snprintf(path, sizeof(path), "%s.fallback", conf->path ? conf->path : "");
        tg_conf_error(err, errlen, &conf->fallback_mark, path,
                      "provider '%s' holds this certificate's private key: there is no software "
                      "copy to fall back to (remove fallback or set it to false)",
                      name);
        return TG_ECONFIG;
    }
    struct tg_keyprov_binding *b = NULL;
    TG_GUARD(tg_keyprov_binding_new(conf, &b, err, errlen));
    b->fallback = false;
    b->held = true;
    const char *why = "";
    char lwhy[512] = "";
    int rc = tg_keyprov_global_init(b->slot, &why);
    if (rc != TG_OK) {
        tg_conf_error(err, errlen, &conf->mark, conf->path, "provider '%s' cannot run here: %s",
                      b->ops->name, why);
        goto out;
    }
    rc = b->ops->load_key(b->settings, cert_pub, key, leaf, lwhy, sizeof(lwhy));
    if (rc != TG_OK) {
        tg_conf_error(err, errlen, &conf->mark, conf->path, "%s", lwhy[0] ? lwhy : tg_strerror(rc));
        goto out;
    }
    if (*key == NULL || !tg_pkey_is_held(*key) || (leaf != NULL && *leaf == NULL)) {
        tg_conf_error(err, errlen, &conf->mark, conf->path,
                      "provider '%s' returned no usable key%s", b->ops->name,
                      leaf != NULL && *leaf == NULL ? " or no certificate" : "");
        rc = TG_EINVAL;
        goto out;
    }
    tg_kp_global.used[tg_software_slot] = true;
    tg_kp_global.used[b->slot] = true;
    *out = b;
    b = NULL;
out:
    if (b != NULL) {
        tg_pkey_unref(*key);
        *key = NULL;
        if (leaf != NULL) {
            X509_free(*leaf);
            *leaf = NULL;
        }
        tg_keyprov_binding_free(b);
    }
    return rc;
}

/* ---- per-worker instance sets ---- */

struct tg_keyprov_set {
    struct ev_loop *loop;
    int worker_id;
    const size_t *handshaking;
    void *state[TG_KEYPROV_MAX];
    struct tg_keyprov_stats stats[TG_KEYPROV_MAX];
    struct tg_keyprov_set *next; /* in tg_kp_sets, for /stats */
};

static pthread_mutex_t tg_kp_sets_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tg_keyprov_set *tg_kp_sets;
/* Stats of sets already freed, so counters survive a worker's exit. */
static struct tg_keyprov_stats tg_kp_retired[TG_KEYPROV_MAX];

static _Thread_local struct tg_keyprov_set *tg_kp_current_set;
static _Thread_local struct tg_keyctx *tg_kp_current_ctx;

void tg_keyctx_set_current(struct tg_keyctx *ctx)
{
    tg_kp_current_ctx = ctx;
}

struct tg_keyctx *tg_keyctx_current(void)
{
    return tg_kp_current_ctx;
}

void tg_keyprov_set_current(struct tg_keyprov_set *set)
{
    tg_kp_current_set = set;
}

struct tg_keyprov_set *tg_keyprov_set_current_get(void)
{
    return tg_kp_current_set;
}

void *tg_keyprov_state_for(const struct tg_keyprov_binding *b)
{
    struct tg_keyprov_set *set = tg_kp_current_set;
    if (set == NULL || b == NULL || b->slot < 0 || (size_t)b->slot >= TG_NPROV)
        return NULL;
    return set->state[b->slot];
}

struct tg_keyprov_stats *tg_keyprov_current_stats(const struct tg_keyprov_binding *b)
{
    struct tg_keyprov_set *set = tg_kp_current_set;
    if (set == NULL || b == NULL || b->slot < 0 || (size_t)b->slot >= TG_NPROV)
        return NULL;
    return &set->stats[b->slot];
}

static const size_t tg_kp_no_handshakes = 0;

uint32_t tg_keyprov_slots_used(void)
{
    uint32_t slots = 0;
    for (size_t i = 0; i < TG_NPROV; i++) {
        if (tg_kp_global.used[i])
            slots |= 1u << i;
    }
    return slots;
}

int tg_keyprov_set_add_slots(struct tg_keyprov_set *set, uint32_t slots)
{
    int first = TG_OK;
    for (size_t i = 0; i < TG_NPROV; i++) {
        if ((slots & (1u << i)) == 0 || set->state[i] != NULL ||
            tg_providers[i]->worker_init == NULL)
            continue;
        struct tg_keyprov_worker w = {set->loop, set->worker_id, &set->stats[i], set->handshaking};
        int rc = tg_providers[i]->worker_init(&w, &set->state[i]);
        if (rc != TG_OK) {
            TG_ERROR("worker %d: provider '%s' failed to start: %s", set->worker_id,
                     tg_providers[i]->name, tg_strerror(rc));
            set->state[i] = NULL;
            if (first == TG_OK)
                first = rc;
        }
    }
    return first;
}

void tg_keyprov_forget_keys(void)
{
    tg_keyop_sw_forget_keys();
}

int tg_keyprov_set_new(struct ev_loop *loop, int worker_id, const size_t *handshaking,
                       struct tg_keyprov_set **out)
{
    *out = NULL;
    struct tg_keyprov_set *set = calloc(1, sizeof(*set));
    if (set == NULL)
        return TG_ENOMEM;
    set->loop = loop;
    set->worker_id = worker_id;
    set->handshaking = handshaking ? handshaking : &tg_kp_no_handshakes;
    /* Every worker has the software state (the fallback of every provider).
     * Binding a certificate already marked it on the main thread before the
     * workers started: then they only read it. */
    if (tg_software_slot >= 0 && !tg_kp_global.used[tg_software_slot])
        tg_kp_global.used[tg_software_slot] = true;
    int rc = tg_keyprov_set_add_slots(set, tg_keyprov_slots_used());
    if (rc != TG_OK) {
        tg_keyprov_set_free(set);
        return rc;
    }
    pthread_mutex_lock(&tg_kp_sets_lock);
    set->next = tg_kp_sets;
    tg_kp_sets = set;
    pthread_mutex_unlock(&tg_kp_sets_lock);
    *out = set;
    return TG_OK;
}

static void tg_keyprov_stats_merge(struct tg_keyprov_stats *dst, const struct tg_keyprov_stats *src)
{
    for (int t = 0; t < TG_KEYOP_TYPE_COUNT; t++) {
        tg_ctr_add(&dst->ops[t], tg_ctr_get(&src->ops[t]));
        tg_ctr_add(&dst->completed[t], tg_ctr_get(&src->completed[t]));
        tg_ctr_add(&dst->failed[t], tg_ctr_get(&src->failed[t]));
    }
    for (int r = 0; r < TG_FALLBACK_REASON_COUNT; r++) {
        tg_ctr_add(&dst->fallbacks[r], tg_ctr_get(&src->fallbacks[r]));
        tg_ctr_add(&dst->unrecoverable[r], tg_ctr_get(&src->unrecoverable[r]));
    }
    for (int r = 0; r < TG_FLUSH_REASON_COUNT; r++)
        tg_ctr_add(&dst->flushes[r], tg_ctr_get(&src->flushes[r]));
    tg_ctr_add(&dst->inflight_up, tg_ctr_get(&src->inflight_up));
    tg_ctr_add(&dst->inflight_down, tg_ctr_get(&src->inflight_down));
    tg_ctr_add(&dst->pool_level, tg_ctr_get(&src->pool_level));
    tg_hist_merge(&dst->batch_size, &src->batch_size);
    tg_hist_merge(&dst->wait_us, &src->wait_us);
}

void tg_keyprov_set_free(struct tg_keyprov_set *set)
{
    if (set == NULL)
        return;
    pthread_mutex_lock(&tg_kp_sets_lock);
    for (struct tg_keyprov_set **pp = &tg_kp_sets; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == set) {
            *pp = set->next;
            break;
        }
    }
    pthread_mutex_unlock(&tg_kp_sets_lock);
    tg_keyprov_set_drain(set);
    for (size_t i = 0; i < TG_NPROV; i++) {
        if (set->state[i] == NULL)
            continue;
        if (tg_providers[i]->worker_cleanup != NULL)
            tg_providers[i]->worker_cleanup(set->state[i]);
        set->state[i] = NULL;
    }
    pthread_mutex_lock(&tg_kp_sets_lock);
    for (size_t i = 0; i < TG_NPROV; i++) {
        /* Pool level is a gauge of a worker that no longer exists. */
        atomic_store_explicit(&set->stats[i].pool_level, 0, memory_order_relaxed);
        tg_keyprov_stats_merge(&tg_kp_retired[i], &set->stats[i]);
    }
    pthread_mutex_unlock(&tg_kp_sets_lock);
    if (tg_kp_current_set == set)
        tg_kp_current_set = NULL;
    tg_keyop_sw_thread_cleanup();
    free(set);
}

int tg_keyprov_require(const char *provider, char *why, size_t whylen)
{
    const struct tg_keyprov_ops *ops = tg_keyprov_find(provider);
    if (ops == NULL) {
        snprintf(why, whylen, "unknown provider '%s'", provider);
        return TG_EUNAVAIL;
    }
    int slot = tg_keyprov_slot(ops);
    const char *reason = "";
    if (tg_keyprov_global_init(slot, &reason) != TG_OK) {
        snprintf(why, whylen, "%s", reason);
        return TG_EUNAVAIL;
    }
    tg_kp_global.used[slot] = true;
    return TG_OK;
}

int tg_keyprov_spill(struct tg_keyop *op, const char *provider)
{
    struct tg_keyprov_set *set = tg_kp_current_set;
    const struct tg_keyprov_ops *ops = tg_keyprov_find(provider);
    if (set == NULL || ops == NULL || op->state != TG_KEYOP_QUEUED)
        return TG_EUNAVAIL;
    int slot = tg_keyprov_slot(ops);
    if (set->state[slot] == NULL)
        return TG_EUNAVAIL;
    /* Move the op's accounting to the provider that will finish it. */
    if (op->stats != NULL)
        tg_ctr_inc(&op->stats->inflight_down);
    op->stats = &set->stats[slot];
    tg_ctr_inc(&op->stats->ops[op->type]);
    tg_ctr_inc(&op->stats->inflight_up);
    op->next = NULL;
    bool was_in_submit = op->in_submit;
    int rc = ops->submit(set->state[slot], op);
    op->in_submit = was_in_submit;
    if (rc == TG_EPENDING || op->state == TG_KEYOP_DONE)
        return TG_OK;
    /* The target refused too: the caller falls back to software. */
    return rc < 0 ? rc : TG_EUNAVAIL;
}

void tg_keyprov_set_drain(struct tg_keyprov_set *set)
{
    for (size_t i = 0; i < TG_NPROV; i++) {
        if (set->state[i] != NULL && tg_providers[i]->drain != NULL)
            tg_providers[i]->drain(set->state[i]);
    }
}

void tg_keyprov_set_flush(struct tg_keyprov_set *set)
{
    for (size_t i = 0; i < TG_NPROV; i++) {
        if (set->state[i] != NULL && tg_providers[i]->flush != NULL)
            tg_providers[i]->flush(set->state[i]);
    }
}

size_t tg_keyprov_set_pending(struct tg_keyprov_set *set)
{
    size_t n = 0;
    for (size_t i = 0; i < TG_NPROV; i++) {
        if (set->state[i] != NULL && tg_providers[i]->pending != NULL)
            n += tg_providers[i]->pending(set->state[i]);
    }
    return n;
}

void tg_keyprov_render_stats(struct tg_buf *out)
{
    struct tg_keyprov_stats agg[TG_KEYPROV_MAX];
    memset(agg, 0, sizeof(agg));
    pthread_mutex_lock(&tg_kp_sets_lock);
    for (size_t i = 0; i < TG_NPROV; i++) {
        tg_keyprov_stats_merge(&agg[i], &tg_kp_retired[i]);
        for (struct tg_keyprov_set *s = tg_kp_sets; s != NULL; s = s->next)
            tg_keyprov_stats_merge(&agg[i], &s->stats[i]);
    }
    pthread_mutex_unlock(&tg_kp_sets_lock);

    static const char *const flush_names[] = {
#define TG_FLUSH_NAME(id, label) label,
        TG_FLUSH_REASONS(TG_FLUSH_NAME)
#undef TG_FLUSH_NAME
    };
    static const char *const fb_names[] = {
#define TG_FB_NAME(id, label) label,
        TG_FALLBACK_REASONS(TG_FB_NAME)
#undef TG_FB_NAME
    };
    char lab[128];
    static const struct {
        const char *name, *help;
        size_t off;
    } per_type[] = {
        {"tlsgate_keyprov_operations_total", "Key operations submitted, by provider and type",
         offsetof(struct tg_keyprov_stats, ops)},
        {"tlsgate_keyprov_operations_completed_total",
         "Key operations completed successfully (including software fallbacks)",
         offsetof(struct tg_keyprov_stats, completed)},
        {"tlsgate_keyprov_operations_failed_total", "Key operations that failed",
         offsetof(struct tg_keyprov_stats, failed)},
    };
    for (size_t m = 0; m < TG_ARRAY_LEN(per_type); m++) {
        tg_prom_header(out, per_type[m].name, "counter", per_type[m].help);
        for (size_t i = 0; i < TG_NPROV; i++) {
            if (!tg_kp_global.used[i])
                continue;
            const tg_ctr *arr = (const tg_ctr *)((const char *)&agg[i] + per_type[m].off);
            for (int t = 0; t < TG_KEYOP_TYPE_COUNT; t++) {
                snprintf(lab, sizeof(lab), "provider=\"%s\",type=\"%s\"", tg_providers[i]->name,
                         tg_keyop_type_name((enum tg_keyop_type)t));
                tg_prom_value(out, per_type[m].name, lab, tg_ctr_get(&arr[t]));
            }
        }
    }
    tg_prom_header(out, "tlsgate_keyprov_fallbacks_total", "counter",
                   "Operations a provider took but software finished, by reason");
    for (size_t i = 0; i < TG_NPROV; i++) {
        if (!tg_kp_global.used[i])
            continue;
        for (int r = 0; r < TG_FALLBACK_REASON_COUNT; r++) {
            snprintf(lab, sizeof(lab), "provider=\"%s\",reason=\"%s\"", tg_providers[i]->name,
                     fb_names[r]);
            tg_prom_value(out, "tlsgate_keyprov_fallbacks_total", lab,
                          tg_ctr_get(&agg[i].fallbacks[r]));
        }
    }
    bool any_held = false;
    for (size_t i = 0; i < TG_NPROV; i++)
        any_held = any_held || (tg_kp_global.used[i] && tg_providers[i]->load_key != NULL);
    if (any_held)
        tg_prom_header(out, "tlsgate_keyprov_unrecoverable_total", "counter",
                       "Operations on provider-held keys the provider failed, by reason: no "
                       "software copy, the handshake failed");
    for (size_t i = 0; i < TG_NPROV; i++) {
        if (!tg_kp_global.used[i] || tg_providers[i]->load_key == NULL)
            continue;
        for (int r = 0; r < TG_FALLBACK_REASON_COUNT; r++) {
            snprintf(lab, sizeof(lab), "provider=\"%s\",reason=\"%s\"", tg_providers[i]->name,
                     fb_names[r]);
            tg_prom_value(out, "tlsgate_keyprov_unrecoverable_total", lab,
                          tg_ctr_get(&agg[i].unrecoverable[r]));
        }
    }
    tg_prom_header(out, "tlsgate_keyprov_flushes_total", "counter",
                   "Batches run, by what triggered them");
    for (size_t i = 0; i < TG_NPROV; i++) {
        if (!tg_kp_global.used[i])
            continue;
        for (int r = 0; r < TG_FLUSH_REASON_COUNT; r++) {
            snprintf(lab, sizeof(lab), "provider=\"%s\",reason=\"%s\"", tg_providers[i]->name,
                     flush_names[r]);
            tg_prom_value(out, "tlsgate_keyprov_flushes_total", lab,
                          tg_ctr_get(&agg[i].flushes[r]));
        }
    }
    tg_prom_header(out, "tlsgate_keyprov_pending", "gauge", "Operations queued or in flight now");
    for (size_t i = 0; i < TG_NPROV; i++) {
        if (!tg_kp_global.used[i])
            continue;
        uint64_t up = tg_ctr_get(&agg[i].inflight_up), down = tg_ctr_get(&agg[i].inflight_down);
        snprintf(lab, sizeof(lab), "provider=\"%s\"", tg_providers[i]->name);
        tg_prom_value(out, "tlsgate_keyprov_pending", lab, up >= down ? up - down : 0);
    }
    tg_prom_header(out, "tlsgate_keyprov_key_pool_level", "gauge",
                   "Pre-generated ephemeral key pairs ready, all workers");
    for (size_t i = 0; i < TG_NPROV; i++) {
        if (!tg_kp_global.used[i])
            continue;
        snprintf(lab, sizeof(lab), "provider=\"%s\"", tg_providers[i]->name);
        tg_prom_value(out, "tlsgate_keyprov_key_pool_level", lab, tg_ctr_get(&agg[i].pool_level));
    }
    struct tg_hist_spec wait = tg_hist_latency_us;
    wait.name = "tlsgate_keyprov_queue_wait_seconds";
    wait.help = "Time from submit to completion of a key operation";
    int first = 1;
    for (size_t i = 0; i < TG_NPROV; i++) {
        if (!tg_kp_global.used[i])
            continue;
        snprintf(lab, sizeof(lab), "provider=\"%s\"", tg_providers[i]->name);
        tg_prom_hist(out, &wait, lab, &agg[i].wait_us, first);
        first = 0;
    }
    first = 1;
    for (size_t i = 0; i < TG_NPROV; i++) {
        if (!tg_kp_global.used[i])
            continue;
        snprintf(lab, sizeof(lab), "provider=\"%s\"", tg_providers[i]->name);
        tg_prom_hist(out, &tg_keyprov_batch_spec, lab, &agg[i].batch_size, first);
        first = 0;
    }
    for (size_t i = 0; i < TG_NPROV; i++) {
        if (tg_kp_global.used[i] && tg_providers[i]->render_stats != NULL)
            tg_providers[i]->render_stats(out);
    }
}
