/*
 * A worker's start (src/proxy/tg_worker.c): tg_worker_thread_start on the
 * test's own thread, no gateway. When the worker's key providers fail to
 * start (the deferred provider's fail_worker_init, the per-worker
 * initialisation a device provider can fail), the worker must close its
 * SO_REUSEPORT listening sockets at once (else the kernel keeps handing
 * them a share of the connections nobody accepts) and must not report
 * itself started; a worker that starts reports it once and keeps its
 * sockets.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/tg_config.h"
#include "core/tg_log.h"
#include "keyprov/tg_keyprov.h"
#include "ossl/tg_ossl.h"
#include "proxy/tg_gen.h"
#include "proxy/tg_worker.h"
#include "tls/tg_tls.h"
#include "tg_test_util.h"
#include "providers/software/tg_software.h"
#include "providers/deferred/tg_deferred.h"

static char cert_path[256], key_path[256];

static struct {
    struct tg_config *cfg;
    struct tg_gen *gen;
    struct tg_worker w;
    _Atomic uint64_t active;
    int started, exited;
    struct sockaddr_storage addr;
    socklen_t addrlen;
} T;

static void on_started(void *arg)
{
    (void)arg;
    T.started++;
}

static void on_exited(void *arg)
{
    (void)arg;
    T.exited++;
}

/* A worker with id `id` on one listener whose certificate uses the deferred
 * provider with the given typed_config; listening, not started. */
static void worker_prepare(int id, const char *typed_config)
{
    memset(&T, 0, sizeof(T));
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "listeners:\n"
             "  - name: t\n"
             "    address: 127.0.0.1:0\n"
             "    tls:\n"
             "      certificates:\n"
             "        - certificate_chain: { filename: %s }\n"
             "          private_key: { filename: %s }\n"
             "          private_key_provider:\n"
             "            provider_name: deferred\n"
             "            typed_config: %s\n"
             "    upstream: { address: 127.0.0.1:9 }\n",
             cert_path, key_path, typed_config);
    char err[1024] = "";
    struct tg_config *cfg = NULL;
    if (tg_config_load_buffer("t.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)) != TG_OK)
        fail_msg("config: %s", err);
    /* A generation for id + 1 workers: this worker takes socket `id`. */
    if (tg_gen_new(cfg, id + 1, tg_worker_ssl_async_cb, &T.gen, err, sizeof(err)) != TG_OK)
        fail_msg("tls: %s", err);
    if (tg_gen_open_sockets(T.gen, NULL, err, sizeof(err)) != TG_OK)
        fail_msg("listen: %s", err);
    if (tg_gen_upstreams(T.gen, NULL, NULL, err, sizeof(err)) != TG_OK)
        fail_msg("upstreams: %s", err);
    struct tg_worker_host host = {
        .active = &T.active,
        .exited = on_exited,
        .started = on_started,
    };
    assert_int_equal(tg_worker_init(&T.w, id, T.gen, &host), TG_OK);
    /* The other workers' sockets on the port: gone, so that only this
     * worker's socket can take a connection. */
    for (int other = 0; other < id; other++) {
        int fd = tg_gen_take_fd(T.gen, 0, other);
        if (fd >= 0)
            close(fd);
    }
    const struct tg_conf_listener *conf = T.gen->listeners[0].conf;
    T.addr = conf->addr.ss;
    T.addrlen = conf->addr.len;
}

/* errno of a blocking connect to the listener's address (0: connected). */
static int connect_errno(void)
{
    int fd = socket(T.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int rc = connect(fd, (struct sockaddr *)&T.addr, T.addrlen) == 0 ? 0 : errno;
    close(fd);
    return rc;
}

static int worker_teardown(void **state)
{
    (void)state;
    tg_worker_destroy(&T.w);
    if (T.gen != NULL) {
        tg_gen_retire(T.gen, NULL);
        tg_gen_unref(T.gen);
    }
    tg_config_free(T.cfg); /* the bad-value case's; a generation owns its own */
    tg_keyprov_shutdown(); /* also forgets fail_worker_init */
    memset(&T, 0, sizeof(T));
    return 0;
}

static void test_start_failure_closes_sockets(void **state)
{
    (void)state;
    worker_prepare(1, "{ fail_worker_init: 1 }");
    assert_true(T.w.listeners[0].fd >= 0);
    assert_int_equal(connect_errno(), 0); /* listening (the queue takes it) */

    assert_int_not_equal(tg_worker_thread_start(&T.w), TG_OK);
    /* Its only socket on that port is gone: the kernel refuses, rather than
     * queueing connections for a worker that will never accept them. */
    assert_int_equal(T.w.listeners[0].fd, -1);
    assert_int_equal(connect_errno(), ECONNREFUSED);
    assert_int_equal(T.started, 0);
    assert_null(T.w.kp);

    tg_worker_thread_end(&T.w);
    assert_int_equal(T.exited, 1);
    assert_int_equal(T.started, 0);
}

static void test_start_reports_started(void **state)
{
    (void)state;
    /* fail_worker_init names another worker: this one starts. */
    worker_prepare(0, "{ fail_worker_init: 1 }");
    assert_int_equal(tg_worker_thread_start(&T.w), TG_OK);
    assert_int_equal(T.started, 1);
    assert_true(T.w.listeners[0].fd >= 0);
    assert_int_equal(connect_errno(), 0);

    tg_worker_thread_end(&T.w);
    assert_int_equal(T.exited, 1);
    assert_int_equal(T.started, 1);
}

static void test_fail_worker_init_is_forgotten(void **state)
{
    (void)state;
    /* The previous case's setting went with tg_keyprov_shutdown. */
    worker_prepare(1, "{ delay: 0 }");
    assert_int_equal(tg_worker_thread_start(&T.w), TG_OK);
    assert_int_equal(T.started, 1);
    tg_worker_thread_end(&T.w);
    assert_int_equal(T.exited, 1);
}

static void test_fail_worker_init_bad_value(void **state)
{
    (void)state;
    memset(&T, 0, sizeof(T));
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "listeners:\n"
             "  - address: 127.0.0.1:0\n"
             "    tls:\n"
             "      certificates:\n"
             "        - certificate_chain: { filename: %s }\n"
             "          private_key: { filename: %s }\n"
             "          private_key_provider:\n"
             "            provider_name: deferred\n"
             "            typed_config: { fail_worker_init: 256 }\n"
             "    upstream: { address: 127.0.0.1:9 }\n",
             cert_path, key_path);
    char err[1024] = "";
    assert_int_equal(tg_config_load_buffer("t.yaml", yaml, strlen(yaml), &T.cfg, err, sizeof(err)),
                     TG_OK);
    struct tg_tls_listener *tls = NULL;
    assert_int_not_equal(
        tg_tls_listener_new(&T.cfg->listeners[0], tg_worker_ssl_async_cb, &tls, err, sizeof(err)),
        TG_OK);
    assert_null(tls);
    assert_non_null(strstr(err, "t.yaml:9:"));
    assert_non_null(strstr(err, "fail_worker_init"));
}

static int setup(void **state)
{
    (void)state;
    tg_log_set_level(TG_LOG_WARN);
    if (tg_ossl_init() != TG_OK)
        return -1;
    tg_config_set_known_providers(tg_keyprov_names());
    char *cert, *key;
    tg_test_make_cert("EC:P-256", "localhost", &cert, &key);
    snprintf(cert_path, sizeof(cert_path), "%s", tg_test_write_file("c.crt", cert, strlen(cert)));
    snprintf(key_path, sizeof(key_path), "%s", tg_test_write_file("c.key", key, strlen(key)));
    free(cert);
    free(key);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tg_keyprov_shutdown();
    tg_ossl_cleanup();
    return 0;
}

int main(void)
{
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider, &tg_deferred_provider);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_start_failure_closes_sockets, worker_teardown),
        cmocka_unit_test_teardown(test_start_reports_started, worker_teardown),
        cmocka_unit_test_teardown(test_fail_worker_init_is_forgotten, worker_teardown),
        cmocka_unit_test_teardown(test_fail_worker_init_bad_value, worker_teardown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
