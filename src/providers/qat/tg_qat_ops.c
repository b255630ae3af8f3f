/*
 * The qat provider's ops table (built with the qatlib headers), with what
 * belongs to no single stage: worker set-up and tear-down, /stats, and the
 * qatlib half of the doctor hook (tg_qat_internal.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tg_log.h"
#include "providers/qat/tg_qat_internal.h"

const struct tg_hist_spec tg_qat_latency_spec = {
    .name = "tlsgate_qat_latency_seconds",
    .help = "Device latency: submit to the poll that returned the request",
    .scale = 1e-6,
    .nbounds = 16,
    .bounds = {10, 25, 50, 75, 100, 150, 200, 300, 500, 1000, 2000, 5000, 10000, 50000, 100000,
               1000000},
};

/* ---- workers ---- */

static int tg_qat_worker_init(const struct tg_keyprov_worker *w, void **state)
{
    struct tg_qat_wstate *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return TG_ENOMEM;
    st->loop = w->loop;
    st->kstats = w->stats;
    st->worker_id = w->worker_id;
    st->ii = (unsigned)(w->worker_id < 0 ? 0 : w->worker_id) % tg_qat_g.ninst;
    st->inst = tg_qat_g.inst[st->ii].h;
    st->node = tg_qat_g.inst[st->ii].node;
    st->done_tail = &st->done;
    st->poll_ns = TG_NS_PER_MS;
    st->ewma_ns = 100 * TG_NS_PER_US;
    st->bn = BN_CTX_new();
    tg_qat_watchers_init(st);
    /* A small pool up front, so the first handshakes do not allocate. */
    struct tg_qat_req *pre = NULL;
    for (int i = 0; i < TG_QAT_POOL_INIT; i++) {
        struct tg_qat_req *r = tg_qat_req_get(st);
        if (r == NULL)
            break;
        r->next = pre;
        pre = r;
    }
    while (pre != NULL) {
        struct tg_qat_req *next = pre->next;
        tg_qat_req_put(st, pre);
        pre = next;
    }
    if (st->npool == 0 || st->bn == NULL) {
        st->broken = true;
        TG_WARN("qat: worker %d: cannot allocate pinned memory (qaeMemAllocNUMA; check memlock "
                "and the usdm driver); its operations run in software",
                w->worker_id);
    }
    pthread_mutex_lock(&tg_qat_g.lock);
    st->next = tg_qat_g.workers;
    tg_qat_g.workers = st;
    pthread_mutex_unlock(&tg_qat_g.lock);
    TG_DEBUG("qat: worker %d uses instance %u (%s)", w->worker_id, st->ii,
             tg_qat_g.inst[st->ii].name);
    *state = st;
    return TG_OK;
}

static void tg_qat_istats_merge(struct tg_qat_istats *dst, const struct tg_qat_istats *src)
{
    for (int i = 0; i < TG_QAT_STAT_COUNT; i++)
        tg_ctr_add(&dst->c[i], tg_ctr_get(&src->c[i]));
    for (int i = 0; i < TG_KEYPROV_MAX; i++)
        tg_ctr_add(&dst->spilled[i], tg_ctr_get(&src->spilled[i]));
    tg_ctr_add(&dst->inflight_up, tg_ctr_get(&src->inflight_up));
    tg_ctr_add(&dst->inflight_down, tg_ctr_get(&src->inflight_down));
    tg_hist_merge(&dst->latency_us, &src->latency_us);
}

/* Under tg_qat_g.lock: what the device still holds becomes an orphan (freed
 * after icp_sal_userStop), with the keys it reads; the worker's counters go
 * to the retired totals. */
static void tg_qat_worker_retire(struct tg_qat_wstate *st)
{
    for (struct tg_qat_wstate **pp = &tg_qat_g.workers; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == st) {
            *pp = st->next;
            break;
        }
    }
    struct tg_qat_req *r = st->dev_head;
    while (r != NULL) {
        struct tg_qat_req *next = r->next;
        atomic_store_explicit(&r->owner, NULL, memory_order_relaxed);
        r->next = tg_qat_g.orphans;
        tg_qat_g.orphans = r;
        r = next;
    }
    st->dev_head = st->dev_tail = NULL;
    struct tg_qat_key **kp = &st->keys;
    while (*kp != NULL) {
        struct tg_qat_key *k = *kp;
        if (k->refs > 0) {
            *kp = k->next;
            k->orphan_next = tg_qat_g.orphan_keys;
            tg_qat_g.orphan_keys = k;
        } else {
            kp = &k->next;
        }
    }
    if (tg_qat_g.retired != NULL && st->ii < tg_qat_g.ninst) {
        atomic_store_explicit(&st->st.inflight_down,
                              atomic_load_explicit(&st->st.inflight_up, memory_order_relaxed),
                              memory_order_relaxed);
        tg_qat_istats_merge(&tg_qat_g.retired[st->ii], &st->st);
    }
}

static void tg_qat_worker_cleanup(void *state)
{
    struct tg_qat_wstate *st = state;
    tg_qat_take_inbox(st);
    tg_qat_watchers_stop(st);
    /* Ops still waiting (cleanup without drain): software, now. */
    for (struct tg_qat_req *r = st->dev_head; r != NULL; r = r->next) {
        struct tg_keyop *op = r->op;
        if (op != NULL) {
            r->op = NULL;
            op->prov_data = NULL;
            st->live--;
            (void)tg_keyop_complete(op, TG_ETIMEOUT, TG_FALLBACK_TIMEOUT);
        }
    }
    pthread_mutex_lock(&tg_qat_g.lock);
    tg_qat_worker_retire(st);
    pthread_mutex_unlock(&tg_qat_g.lock);
    while (st->free != NULL) {
        struct tg_qat_req *next = st->free->next;
        tg_qat_req_destroy(st->free);
        st->free = next;
    }
    while (st->keys != NULL) {
        struct tg_qat_key *next = st->keys->next;
        tg_qat_key_free(st->keys);
        st->keys = next;
    }
    BN_CTX_free(st->bn);
    free(st);
}

/* ---- /stats ---- */

/* tlsgate_qat_spilled_total{to}: one series per provider a spill list may
 * name (every registered one but qat), whether a list names it or not, so
 * the set of series does not depend on the configuration. */
static void tg_qat_render_spilled(struct tg_buf *out, const struct tg_qat_istats *agg, unsigned n)
{
    static const char metric[] = "tlsgate_qat_spilled_total";
    char lab[192];
    size_t np = 0;
    const struct tg_keyprov_ops *const *all = tg_keyprov_all(&np);
    tg_prom_header(out, metric, "counter",
                   "Operations sent elsewhere because the ring was full, by target");
    for (size_t p = 0; all != NULL && p < np && p < TG_KEYPROV_MAX; p++) {
        if (all[p] == &tg_qat_provider)
            continue;
        for (unsigned i = 0; i < n; i++) {
            snprintf(lab, sizeof(lab), "provider=\"qat\",instance=\"%u\",to=\"%.32s\"", i,
                     all[p]->name);
            tg_prom_value(out, metric, lab, tg_ctr_get(&agg[i].spilled[p]));
        }
    }
}

static void tg_qat_render_stats(struct tg_buf *out)
{
    pthread_mutex_lock(&tg_qat_g.lock);
    unsigned n = tg_qat_g.ninst;
    if (n == 0 || tg_qat_g.retired == NULL) {
        pthread_mutex_unlock(&tg_qat_g.lock);
        return;
    }
    struct tg_qat_istats *agg = calloc(n, sizeof(*agg));
    if (agg == NULL) {
        pthread_mutex_unlock(&tg_qat_g.lock);
        return;
    }
    for (unsigned i = 0; i < n; i++)
        tg_qat_istats_merge(&agg[i], &tg_qat_g.retired[i]);
    for (struct tg_qat_wstate *w = tg_qat_g.workers; w != NULL; w = w->next) {
        if (w->ii < n)
            tg_qat_istats_merge(&agg[w->ii], &w->st);
    }
    char names[TG_QAT_MAX_INSTANCES][CPA_INST_NAME_SIZE + 1];
    for (unsigned i = 0; i < n; i++)
        snprintf(names[i], sizeof(names[i]), "%s", tg_qat_g.inst[i].name);
    pthread_mutex_unlock(&tg_qat_g.lock);

    char lab[192];
    tg_prom_header(out, "tlsgate_qat_instance_info", "gauge",
                   "QAT crypto instances in use (value 1), with qatlib's name");
    for (unsigned i = 0; i < n; i++) {
        snprintf(lab, sizeof(lab), "provider=\"qat\",instance=\"%u\",name=\"%.64s\"", i, names[i]);
        tg_prom_value(out, "tlsgate_qat_instance_info", lab, 1);
    }
    static const struct {
        const char *metric, *labels, *help;
    } rows[] = {
#define TG_QAT_STAT_ROW(id, metric, labels, help) {metric, labels, help},
        TG_QAT_STATS(TG_QAT_STAT_ROW)
#undef TG_QAT_STAT_ROW
    };
    for (int s = 0; s < TG_QAT_STAT_COUNT; s++) {
        if (s == TG_QAT_FAIL_SUBMIT) /* where the spilled rows always were */
            tg_qat_render_spilled(out, agg, n);
        if (rows[s].help[0] != '\0')
            tg_prom_header(out, rows[s].metric, "counter", rows[s].help);
        for (unsigned i = 0; i < n; i++) {
            snprintf(lab, sizeof(lab), "provider=\"qat\",instance=\"%u\"%s%s", i,
                     rows[s].labels[0] ? "," : "", rows[s].labels);
            tg_prom_value(out, rows[s].metric, lab, tg_ctr_get(&agg[i].c[s]));
        }
    }
    tg_prom_header(out, "tlsgate_qat_inflight", "gauge", "Requests on the device now");
    for (unsigned i = 0; i < n; i++) {
        uint64_t up = tg_ctr_get(&agg[i].inflight_up), down = tg_ctr_get(&agg[i].inflight_down);
        snprintf(lab, sizeof(lab), "provider=\"qat\",instance=\"%u\"", i);
        tg_prom_value(out, "tlsgate_qat_inflight", lab, up >= down ? up - down : 0);
    }
    for (unsigned i = 0; i < n; i++) {
        snprintf(lab, sizeof(lab), "provider=\"qat\",instance=\"%u\"", i);
        tg_prom_hist(out, &tg_qat_latency_spec, lab, &agg[i].latency_us, i == 0);
    }
    free(agg);
}

/* ---- tlsgate doctor ---- */

/* qatlib's view (library, start-up, instances), then the machine's
 * (tg_qat_doctor_machine) and the verdict. */
static void tg_qat_doctor(struct tg_buf *out, struct tg_buf *json)
{
    char label[96], line[256];
    const char *path = tg_qat_lib_path();
    tg_qat_doctor_line(out, "qatlib", path[0] ? path : "not loaded");
    tg_buf_puts(json, "\"headers\":true,\"library\":");
    tg_qat_json_str(json, path[0] ? path : NULL);
    tg_buf_puts(json, ",\"section\":");
    tg_qat_json_str(json, tg_qat_section());
    tg_buf_puts(json, ",\"start_status\":");
    tg_qat_json_str(json, tg_qat_g.start_tried ? tg_qat_status_name(tg_qat_g.start_status) : NULL);
    tg_buf_puts(json, ",\"qatlib_said\":");
    tg_qat_json_str(json, tg_qat_g.said[0] ? tg_qat_g.said : NULL);
    if (tg_qat_g.start_tried) {
        snprintf(label, sizeof(label), "icp_sal_userStart(\"%s\")", tg_qat_section());
        tg_qat_doctor_line(out, label, tg_qat_status_name(tg_qat_g.start_status));
    }
    if (tg_qat_g.said[0] != '\0')
        tg_qat_doctor_line(out, "qatlib said", tg_qat_g.said);
    if (tg_qat_g.seen_inst > 0) {
        snprintf(line, sizeof(line), "%u seen, %u started", tg_qat_g.seen_inst, tg_qat_g.ninst);
        tg_qat_doctor_line(out, "crypto instances", line);
    }
    tg_buf_printf(json, ",\"instances_seen\":%u,\"instances_started\":%u,\"instances\":[",
                  tg_qat_g.seen_inst, tg_qat_g.ninst);
    for (unsigned i = 0; i < tg_qat_g.ninst; i++) {
        const struct tg_qat_inst *in = &tg_qat_g.inst[i];
        snprintf(label, sizeof(label), "  instance %u", i);
        snprintf(line, sizeof(line), "%s (%s), NUMA node %d, RSA yes, ECDSA %s", in->name, in->part,
                 in->node, in->ecdsa ? "yes" : "no");
        tg_qat_doctor_line(out, label, line);
        tg_buf_printf(json, "%s{\"index\":%u,\"name\":", i ? "," : "", i);
        tg_qat_json_str(json, in->name);
        tg_buf_puts(json, ",\"part\":");
        tg_qat_json_str(json, in->part);
        tg_buf_printf(json, ",\"node\":%d,\"rsa\":true,\"ecdsa\":%s}", in->node,
                      in->ecdsa ? "true" : "false");
    }
    tg_buf_puts(json, "]");
    char usable[128];
    snprintf(usable, sizeof(usable), "%u instance(s); RSA 2048/3072/4096%s", tg_qat_g.ninst,
             tg_qat_g.ecdsa ? ", ECDSA P-256/P-384" : "");
    tg_qat_doctor_machine(out, json, tg_qat_g.up ? usable : NULL,
                          tg_qat_g.start_tried ? NULL : "qatlib is not installed");
}

const struct tg_keyprov_ops tg_qat_provider = {
    .name = "qat",
    .description = "Intel QuickAssist offload through qatlib: RSA (CRT) and ECDSA signatures",
    .does_kx = false,
    .configure = tg_qat_configure,
    .settings_free = tg_qat_settings_free,
    .global_init = tg_qat_global_init,
    .global_cleanup = tg_qat_global_cleanup,
    .supports_key = tg_qat_supports_key,
    .worker_init = tg_qat_worker_init,
    .worker_cleanup = tg_qat_worker_cleanup,
    .submit = tg_qat_submit,
    .flush = tg_qat_flush,
    .pending = tg_qat_pending,
    .drain = tg_qat_drain,
    .render_stats = tg_qat_render_stats,
    .doctor = tg_qat_doctor,
};
