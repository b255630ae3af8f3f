/*
 * The qat provider's operations against the fake qatlib
 * (src/providers/qat/tests/fake_*.c). Start-up, instances, keys and
 * configuration: test_qat.c; shared helpers: qat_test_util.h.
 *
 * Operations run the production way: tg_keyop_run() inside an OpenSSL ASYNC
 * job with a wait-context callback, so the job pauses while the request is
 * on the (fake) device and is resumed after the provider completes it from
 * a poll, a timer, a timeout or a drain. Every signature is verified with
 * OpenSSL and the public key.
 *
 * Covered: RSA 2048/3072/4096 PKCS#1 v1.5 and PSS, ECDSA P-256/P-384 with
 * digest truncation, completion only when polled and not before the
 * latency, the poll timer aimed at the expected completion, ring full ->
 * spill (to deferred, to cryptomb where it runs) -> software, device errors,
 * a device that dies (timeouts), late completions after a timeout (the op's
 * memory freed meanwhile: ASan/valgrind would see a touch), drain, workers
 * sharing an instance across threads (callbacks on the wrong thread go
 * through the owner's inbox).
 */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>

#include "config/tg_config.h"
#include "core/tg_time.h"
#include "keyprov/tg_keyprov.h"
#include "providers/qat/tg_qat_internal.h"
#include "qat_test_util.h"

/* ---- operations ---- */

static void sign_and_check(int key, const char *md, int pad)
{
    struct tg_conf_keyprov c;
    conf_init(&c, false);
    struct tg_keyprov_binding *b = bind_ok(&c, keys[key]);
    assert_string_equal(b->ops->name, "qat");
    struct world w;
    world_init(&w, 0);
    struct job j;
    job_start(&j, op_new(b, keys[key], md, pad));
    assert_false(j.finished); /* paused: the request is on the device */
    world_run(&w, &j, 1, 5.0);
    assert_int_equal(j.ret, TG_OK);
    assert_false(j.op->fell_back);
    if (!sig_ok(j.op))
        fail_msg("%s %s pad %d: signature does not verify", key_algs[key], md, pad);
    job_free(&j);
    world_free(&w);
    tg_keyprov_binding_free(b);
    tg_keyprov_shutdown();
}

static void test_rsa_signatures(void **state)
{
    (void)state;
    NEED_FAKE();
    static const struct {
        int key;
        const char *md;
        int pad;
    } cases[] = {
        {K_RSA2048, "SHA256", TG_RSA_PAD_PSS},   {K_RSA2048, "SHA256", TG_RSA_PAD_PKCS1},
        {K_RSA2048, "SHA384", TG_RSA_PAD_PSS},   {K_RSA2048, "SHA1", TG_RSA_PAD_PKCS1},
        {K_RSA3072, "SHA384", TG_RSA_PAD_PKCS1}, {K_RSA3072, "SHA512", TG_RSA_PAD_PSS},
        {K_RSA4096, "SHA512", TG_RSA_PAD_PSS},   {K_RSA4096, "SHA256", TG_RSA_PAD_PKCS1},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++)
        sign_and_check(cases[i].key, cases[i].md, cases[i].pad);
    assert_int_equal(fq_counter("rsa"), TG_ARRAY_LEN(cases));
    assert_int_equal(fq_counter("completed"), TG_ARRAY_LEN(cases));
    assert_int_equal(fq_counter("invalid"), 0);
}

static void test_ecdsa_signatures(void **state)
{
    (void)state;
    NEED_FAKE();
    /* Digest longer than the order (truncated) and shorter (padded). */
    sign_and_check(K_P256, "SHA256", 0);
    sign_and_check(K_P256, "SHA384", 0);
    sign_and_check(K_P384, "SHA384", 0);
    sign_and_check(K_P384, "SHA256", 0);
    sign_and_check(K_P384, "SHA512", 0);
    assert_int_equal(fq_counter("ecdsa"), 5);
    assert_int_equal(fq_counter("completed"), 5);
}

static void test_completion_only_on_poll(void **state)
{
    (void)state;
    NEED_FAKE();
    setenv("FAKE_QAT_LATENCY_US", "20000", 1); /* 20 ms */
    struct tg_conf_keyprov c;
    conf_init(&c, false);
    struct tg_keyprov_binding *b = bind_ok(&c, keys[K_RSA2048]);
    struct world w;
    world_init(&w, 0);
    struct job j;
    uint64_t t0 = tg_now_ns();
    job_start(&j, op_new(b, keys[K_RSA2048], "SHA256", TG_RSA_PAD_PSS));
    assert_false(j.finished);
    assert_int_equal(tg_keyprov_set_pending(w.set), 1);
    /* Before the latency: a poll finds nothing. (Only checked when this
     * thread got here in time: a loaded machine may stall it longer.) */
    tg_keyprov_set_flush(w.set);
    if (tg_now_ns() - t0 < 20 * TG_NS_PER_MS)
        assert_false(j.woken);
    if (!j.woken) {
        /* After it, but nobody polls: still nothing. */
        sleep_ms(40);
        assert_false(j.woken);
        assert_int_equal(fq_counter("completed"), 0);
        assert_int_equal(fq_inflight(), 1);
        /* The loop is about to block: flush polls, the op completes (once
         * the fake's own thread has computed it: poll until then). */
        for (uint64_t t1 = tg_now_ns(); !j.woken && tg_now_ns() - t1 < 10 * TG_NS_PER_S;) {
            tg_keyprov_set_flush(w.set);
            if (!j.woken)
                sleep_ms(1);
        }
        assert_true(j.woken);
    }
    assert_int_equal(fq_counter("completed"), 1);
    world_run(&w, &j, 1, 10.0);
    assert_int_equal(j.ret, TG_OK);
    assert_true(sig_ok(j.op));
    assert_true(tg_now_ns() - t0 >= 20 * TG_NS_PER_MS); /* never before the latency */
    job_free(&j);

    /* The timer alone (no flush) completes the next one, about one latency
     * later: the timer aims at the expected completion, not at poll_delay. */
    setenv("FAKE_QAT_LATENCY_US", "2000", 1);
    tg_keyprov_set_free(w.set);
    tg_keyprov_binding_free(b);
    ev_loop_destroy(w.loop);
    tg_keyprov_shutdown();
    conf_init(&c, false);
    c.poll_delay_ns = 50 * TG_NS_PER_MS;
    b = bind_ok(&c, keys[K_RSA2048]);
    world_init(&w, 0);
    for (int i = 0; i < 20; i++) {
        job_start(&j, op_new(b, keys[K_RSA2048], "SHA256", TG_RSA_PAD_PSS));
        t0 = tg_now_ns();
        while (!j.woken && tg_now_ns() - t0 < 10 * TG_NS_PER_S)
            loop_once(&w); /* timers only: no flush */
        assert_true(j.woken);
        j.woken = false;
        job_step(&j);
        assert_true(j.finished);
        assert_int_equal(j.ret, TG_OK);
        job_free(&j);
    }
    /* With poll_delay 50 ms, 20 ops took well under 20 x 50 ms. */
    assert_true(
        stat_value("tlsgate_qat_requests_completed_total{provider=\"qat\",instance=\"0\"}") == 20);
    world_free(&w);
    tg_keyprov_binding_free(b);
}

/*
 * The poll timer aims at the expected completion of the oldest request (a
 * running estimate of the device latency), not at poll_delay, and runs on a
 * timerfd (nanoseconds; libev's epoll timers round up to 1 ms). Checked on
 * what the provider armed, not on how late the kernel woke this thread: a
 * loaded machine may wake anyone late, and that is not the provider's doing.
 */
static void test_timer_latency(void **state)
{
    (void)state;
    NEED_FAKE();
#ifdef TG_HAVE_QAT_H /* have_fake implies it; this reads the provider's state */
    setenv("FAKE_QAT_LATENCY_US", "300", 1);
    struct tg_conf_keyprov c;
    conf_init(&c, false);
    c.poll_delay_ns = 50 * TG_NS_PER_MS;
    struct tg_keyprov_binding *b = bind_ok(&c, keys[K_P256]);
    struct world w;
    world_init(&w, 0);
    for (int i = 0; i < 30; i++) {
        struct job j;
        job_start(&j, op_new(b, keys[K_P256], "SHA256", 0));
        uint64_t after = tg_now_ns();
        const struct tg_qat_req *r = j.op->prov_data;
        assert_non_null(r);
        const struct tg_qat_wstate *st = atomic_load(&r->owner);
        assert_non_null(st);
        assert_true(st->tfd >= 0);
        assert_true(st->poll_at != 0);
        /* Armed for submit + estimate (or a fraction of it once passed, and
         * never under the floor): the first time from the initial 100 us. */
        uint64_t est = st->ewma_ns > TG_QAT_MIN_POLL_NS ? st->ewma_ns : TG_QAT_MIN_POLL_NS;
        if (i == 0)
            assert_true(est <= 100 * TG_NS_PER_US);
        if (st->poll_at > after + est)
            fail_msg("op %d: poll armed %llu us after submit, estimate %llu us", i,
                     (unsigned long long)((st->poll_at - r->t_submit) / 1000),
                     (unsigned long long)(est / 1000));
        /* The kernel timer holds that much, not poll_delay. */
        struct itimerspec its;
        assert_int_equal(timerfd_gettime(st->tfd, &its), 0);
        uint64_t left =
            (uint64_t)its.it_value.tv_sec * TG_NS_PER_S + (uint64_t)its.it_value.tv_nsec;
        assert_true(left <= est);
        /* The timer alone completes it: no flush. */
        uint64_t t0 = tg_now_ns();
        while (!j.woken && tg_now_ns() - t0 < 10 * TG_NS_PER_S)
            loop_once(&w);
        assert_true(j.woken);
        j.woken = false;
        job_step(&j);
        assert_true(j.finished && j.ret == TG_OK);
        job_free(&j);
    }
    /* Every completion came from a timer poll (flushes never ran). */
    assert_int_equal(
        stat_value("tlsgate_qat_requests_completed_total{provider=\"qat\",instance=\"0\"}"), 30);
    world_free(&w);
    tg_keyprov_binding_free(b);
#endif
}

/* Capacity 2 and five operations at once: two go to the device, three are
 * refused with CPA_STATUS_RETRY and spilled to `target` (then software;
 * NULL: the default list, software alone); taken: the target runs here and
 * took them. */
static void ring_full_case(const char *target, bool taken)
{
    fq_reset();
    setenv("FAKE_QAT_CAPACITY", "2", 1);
    setenv("FAKE_QAT_LATENCY_US", "5000", 1);
    struct tg_conf_keyprov c;
    conf_init(&c, false);
    if (target != NULL)
        add_seq(&c, "spill", target, "software");
    struct tg_keyprov_binding *b = bind_ok(&c, keys[K_RSA2048]);
    struct world w;
    world_init(&w, 0);
    struct job jobs[5];
    for (int i = 0; i < 5; i++)
        job_start(&jobs[i], op_new(b, keys[K_RSA2048], "SHA256", TG_RSA_PAD_PKCS1));
    assert_false(jobs[0].finished);
    assert_false(jobs[1].finished);
    if (!taken) {
        /* Software, at once, counted as ring_full fallbacks. */
        for (int i = 2; i < 5; i++) {
            assert_true(jobs[i].finished);
            assert_int_equal(jobs[i].ret, TG_OK);
            assert_true(jobs[i].op->fell_back);
        }
        assert_int_equal(FALLBACKS(b, TG_FALLBACK_RING_FULL), 3);
    }
    assert_int_equal(fq_counter("retried"), 3);
    world_run(&w, jobs, 5, 5.0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(jobs[i].ret, TG_OK);
        assert_true(sig_ok(jobs[i].op));
        if (taken)
            assert_false(jobs[i].op->fell_back); /* the target computed them */
        job_free(&jobs[i]);
    }
    assert_int_equal(
        stat_value("tlsgate_qat_requests_retried_total{provider=\"qat\",instance=\"0\"}"), 3);
    /* One series per provider a list may name, whether listed or not. */
    size_t np = 0;
    const struct tg_keyprov_ops *const *all = tg_keyprov_all(&np);
    for (size_t i = 0; i < np; i++) {
        char series[160];
        snprintf(series, sizeof(series),
                 "tlsgate_qat_spilled_total{provider=\"qat\",instance=\"0\",to=\"%s\"}",
                 all[i]->name);
        long long want = 0;
        if (strcmp(all[i]->name, "qat") == 0)
            want = -1; /* never a target: no series */
        else if (taken ? strcmp(all[i]->name, target) == 0 : strcmp(all[i]->name, "software") == 0)
            want = 3;
        if (stat_value(series) != want)
            fail_msg("%s: %lld, expected %lld", series, stat_value(series), want);
    }
    assert_int_equal(
        stat_value("tlsgate_qat_requests_submitted_total{provider=\"qat\",instance=\"0\"}"), 2);
    if (taken) {
        char series[160];
        snprintf(series, sizeof(series),
                 "tlsgate_keyprov_operations_total{provider=\"%s\",type=\"rsa_sign\"}", target);
        assert_true(stat_value(series) >= 3);
    }
    world_free(&w);
    tg_keyprov_binding_free(b);
    tg_keyprov_shutdown();
}

static void test_ring_full_spill(void **state)
{
    (void)state;
    NEED_FAKE();
    /* Default spill list: software. */
    ring_full_case(NULL, false);
    /* [deferred, software]: any registered provider takes the overflow,
     * none is known to qat by name. */
    ring_full_case("deferred", true);
    if (tg_keyprov_find("cryptomb") == NULL)
        return;
    /* [cryptomb, software]: cryptomb takes them where it can run. */
    char why[256];
    bool mb = tg_keyprov_require("cryptomb", why, sizeof(why)) == TG_OK;
    tg_keyprov_shutdown();
    ring_full_case("cryptomb", mb);
    /* A cryptomb that cannot run (no AVX-512 IFMA) is skipped: software. */
    setenv("TG_FAKE_NO_IFMA", "1", 1);
    ring_full_case("cryptomb", false);
    unsetenv("TG_FAKE_NO_IFMA");
}

static void test_device_errors(void **state)
{
    (void)state;
    NEED_FAKE();
    setenv("FAKE_QAT_FAIL_EVERY", "2", 1);
    struct tg_conf_keyprov c;
    conf_init(&c, false);
    struct tg_keyprov_binding *b = bind_ok(&c, keys[K_RSA2048]);
    struct world w;
    world_init(&w, 0);
    struct job jobs[4];
    for (int i = 0; i < 4; i++)
        job_start(&jobs[i], op_new(b, keys[K_RSA2048], "SHA256", TG_RSA_PAD_PSS));
    world_run(&w, jobs, 4, 5.0);
    int fell = 0;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(jobs[i].ret, TG_OK);
        assert_true(sig_ok(jobs[i].op));
        fell += jobs[i].op->fell_back;
        job_free(&jobs[i]);
    }
    assert_int_equal(fell, 2);
    assert_int_equal(FALLBACKS(b, TG_FALLBACK_DEVICE_ERROR), 2);
    assert_int_equal(fq_counter("failed"), 2);
    assert_int_equal(
        stat_value(
            "tlsgate_qat_requests_failed_total{provider=\"qat\",instance=\"0\",stage=\"device\"}"),
        2);
    world_free(&w);
    tg_keyprov_binding_free(b);
}

static void test_device_dies(void **state)
{
    (void)state;
    NEED_FAKE();
    setenv("FAKE_QAT_DIE_AFTER", "2", 1);
    setenv("FAKE_QAT_LATENCY_US", "100000", 1); /* nothing returns before it dies */
    struct tg_conf_keyprov c;
    conf_init(&c, false);
    add_param(&c, "timeout", "20ms");
    struct tg_keyprov_binding *b = bind_ok(&c, keys[K_P384]);
    struct world w;
    world_init(&w, 0);
    struct job jobs[4];
    uint64_t t0 = tg_now_ns();
    for (int i = 0; i < 4; i++)
        job_start(&jobs[i], op_new(b, keys[K_P384], "SHA384", 0));
    /* The third submit finds the device gone: software at once, like the 4th. */
    assert_true(jobs[2].finished && jobs[3].finished);
    assert_false(jobs[0].finished || jobs[1].finished);
    world_run(&w, jobs, 4, 5.0);
    assert_true(tg_now_ns() - t0 >= 20 * TG_NS_PER_MS);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(jobs[i].ret, TG_OK);
        assert_true(jobs[i].op->fell_back);
        assert_true(sig_ok(jobs[i].op));
        job_free(&jobs[i]);
    }
    assert_int_equal(FALLBACKS(b, TG_FALLBACK_TIMEOUT), 2);
    assert_int_equal(FALLBACKS(b, TG_FALLBACK_DEVICE_ERROR), 2);
    assert_int_equal(fq_counter("rejected"), 2);
    assert_int_equal(fq_counter("dropped"), 2);
    assert_int_equal(
        stat_value(
            "tlsgate_qat_requests_failed_total{provider=\"qat\",instance=\"0\",stage=\"timeout\"}"),
        2);
    /* The two requests stay owned by the provider (the device could still
     * write them) until qatlib stops: the teardown checks they are freed. */
    assert_int_equal(stat_value("tlsgate_qat_inflight{provider=\"qat\",instance=\"0\"}"), 2);
    world_free(&w);
    tg_keyprov_binding_free(b);
}

static void test_late_completion(void **state)
{
    (void)state;
    NEED_FAKE();
    /* Much longer than the timeout and than the software fallback takes
     * (valgrind makes that slow), so the request comes back only after the
     * job ended and its op was freed. */
    setenv("FAKE_QAT_LATENCY_US", UNDER_VALGRIND() ? "3000000" : "60000", 1);
    struct tg_conf_keyprov c;
    conf_init(&c, false);
    add_param(&c, "timeout", "10ms");
    struct tg_keyprov_binding *b = bind_ok(&c, keys[K_RSA2048]);
    struct world w;
    world_init(&w, 0);
    struct job j;
    job_start(&j, op_new(b, keys[K_RSA2048], "SHA256", TG_RSA_PAD_PSS));
    world_run(&w, &j, 1, 5.0);
    assert_int_equal(j.ret, TG_OK);
    assert_true(j.op->fell_back);
    assert_true(sig_ok(j.op));
    /* The job is over and its op memory is gone; the device still has the
     * request. Its return must not touch the op (ASan/valgrind would see). */
    job_free(&j);
    assert_int_equal(fq_inflight(), 1);
    uint64_t t0 = tg_now_ns();
    while (fq_counter("completed") == 0 && tg_now_ns() - t0 < 10 * TG_NS_PER_S)
        world_turn(&w, NULL, 0);
    assert_int_equal(fq_counter("completed"), 1);
    assert_int_equal(
        stat_value("tlsgate_qat_late_completions_total{provider=\"qat\",instance=\"0\"}"), 1);
    assert_int_equal(stat_value("tlsgate_qat_inflight{provider=\"qat\",instance=\"0\"}"), 0);
    /* The recycled request serves the next operation: no new pinned memory. */
    size_t live = fu_live();
    job_start(&j, op_new(b, keys[K_RSA2048], "SHA256", TG_RSA_PAD_PSS));
    assert_int_equal(fu_live(), live);
    world_run(&w, &j, 1, 5.0);
    assert_int_equal(j.ret, TG_OK);
    assert_true(sig_ok(j.op));
    job_free(&j);
    world_free(&w);
    tg_keyprov_binding_free(b);
}

static void test_drain(void **state)
{
    (void)state;
    NEED_FAKE();
    setenv("FAKE_QAT_LATENCY_US", "30000", 1);
    struct tg_conf_keyprov c;
    conf_init(&c, false);
    add_param(&c, "timeout", "30s");
    struct tg_keyprov_binding *b = bind_ok(&c, keys[K_RSA2048]);
    struct world w;
    world_init(&w, 0);
    struct job jobs[3];
    for (int i = 0; i < 3; i++)
        job_start(&jobs[i], op_new(b, keys[K_RSA2048], "SHA256", TG_RSA_PAD_PKCS1));
    /* Shutdown: drain waits for the device (30 ms < timeout), not software. */
    tg_keyprov_set_drain(w.set);
    assert_int_equal(tg_keyprov_set_pending(w.set), 0);
    for (int i = 0; i < 3; i++) {
        assert_true(jobs[i].woken);
        jobs[i].woken = false;
        job_step(&jobs[i]);
        assert_true(jobs[i].finished);
        assert_int_equal(jobs[i].ret, TG_OK);
        assert_false(jobs[i].op->fell_back);
        assert_true(sig_ok(jobs[i].op));
        job_free(&jobs[i]);
    }
    assert_int_equal(fq_inflight(), 0);
    world_free(&w);
    tg_keyprov_binding_free(b);
    tg_keyprov_shutdown();

    /* A dead device: drain finishes in software at the deadline and keeps
     * the requests the device never returned until qatlib stops. */
    setenv("FAKE_QAT_DIE_AFTER", "1", 1);
    conf_init(&c, false);
    add_param(&c, "timeout", "15ms");
    b = bind_ok(&c, keys[K_RSA2048]);
    world_init(&w, 0);
    job_start(&jobs[0], op_new(b, keys[K_RSA2048], "SHA256", TG_RSA_PAD_PKCS1));
    job_start(&jobs[1], op_new(b, keys[K_RSA2048], "SHA256", TG_RSA_PAD_PKCS1));
    assert_true(jobs[1].finished); /* the device died at the second submit */
    uint64_t t0 = tg_now_ns();
    tg_keyprov_set_drain(w.set);
    assert_true(tg_now_ns() - t0 < 2 * TG_NS_PER_S);
    assert_true(jobs[0].woken);
    jobs[0].woken = false;
    job_step(&jobs[0]);
    assert_true(jobs[0].finished);
    assert_int_equal(jobs[0].ret, TG_OK);
    assert_true(jobs[0].op->fell_back);
    for (int i = 0; i < 2; i++) {
        assert_true(sig_ok(jobs[i].op));
        job_free(&jobs[i]);
    }
    world_free(&w); /* the never-returned request becomes an orphan */
    tg_keyprov_binding_free(b);
}

/* ---- workers sharing an instance ---- */

/* Two worker threads sharing one instance: a poll on one thread returns the
 * other's requests, which must travel through its inbox. */
struct thread_arg {
    const struct tg_keyprov_binding *b;
    int worker_id;
    int ok;
};

#define SHARED_OPS 40

static void *shared_worker(void *arg)
{
    struct thread_arg *a = arg;
    struct world w;
    w.loop = ev_loop_new(EVBACKEND_EPOLL);
    if (tg_keyprov_set_new(w.loop, a->worker_id, NULL, &w.set) != TG_OK)
        return NULL;
    ev_timer_init(&w.guard, guard_cb, 0.0, 0.0);
    tg_keyprov_set_current(w.set);
    static const int kinds[] = {K_RSA2048, K_P256};
    struct job jobs[8];
    for (int round = 0; round < SHARED_OPS / 8; round++) {
        for (int i = 0; i < 8; i++) {
            int k = kinds[i % 2];
            job_start(&jobs[i], op_new(a->b, keys[k], "SHA256", TG_RSA_PAD_PSS));
        }
        uint64_t end = tg_now_ns() + 10 * TG_NS_PER_S;
        while (!all_done(jobs, 8) && tg_now_ns() < end)
            world_turn(&w, jobs, 8);
        for (int i = 0; i < 8; i++) {
            a->ok += jobs[i].finished && jobs[i].ret == TG_OK && sig_ok(jobs[i].op) &&
                     !jobs[i].op->fell_back;
            if (jobs[i].finished)
                job_free(&jobs[i]);
        }
    }
    ev_timer_stop(w.loop, &w.guard);
    tg_keyprov_set_free(w.set);
    ev_loop_destroy(w.loop);
    return NULL;
}

static void test_shared_instance_threads(void **state)
{
    (void)state;
    NEED_FAKE();
    /* valgrind loses track of a thread's stack (and the glibc thread block
     * at its top) once the thread runs OpenSSL ASYNC fibres, and reports
     * every later access, pthread_join included (a known false positive of
     * swapcontext off the main thread). ASan runs this test. */
    if (UNDER_VALGRIND())
        skip();
    setenv("FAKE_QAT_INSTANCES", "1", 1);
    setenv("FAKE_QAT_LATENCY_US", "200", 1);
    struct tg_conf_keyprov c;
    conf_init(&c, false);
    struct tg_keyprov_binding *b = bind_ok(&c, keys[K_RSA2048]);
    conf_init(&c, false);
    struct tg_keyprov_binding *be = bind_ok(&c, keys[K_P256]);
    (void)be; /* same provider: one binding serves both key types here */
    struct thread_arg args[2] = {{b, 0, 0}, {b, 1, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, shared_worker, &args[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(args[0].ok, SHARED_OPS);
    assert_int_equal(args[1].ok, SHARED_OPS);
    assert_int_equal(fq_counter("completed"), 2 * SHARED_OPS);
    assert_int_equal(
        stat_value("tlsgate_qat_requests_completed_total{provider=\"qat\",instance=\"0\"}"),
        2 * SHARED_OPS);
    tg_keyprov_binding_free(b);
    tg_keyprov_binding_free(be);
}

int main(void)
{
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider, &tg_deferred_provider,
                               TG_TEST_CRYPTOMB & tg_qat_provider);
#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)
    const struct CMUnitTest tests[] = {
        T(test_rsa_signatures),
        T(test_ecdsa_signatures),
        T(test_completion_only_on_poll),
        T(test_timer_latency),
        T(test_ring_full_spill),
        T(test_device_errors),
        T(test_device_dies),
        T(test_late_completion),
        T(test_drain),
        T(test_shared_instance_threads),
    };
#undef T
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
