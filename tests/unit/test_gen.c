/*
 * Configuration generations (src/proxy/tg_gen.c): building one (and failing
 * to, leaving nothing behind), reference counting from several threads,
 * which listening sockets a new generation keeps or opens, the settings a
 * reload refuses to change, and the certificate metric.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/tg_config.h"
#include "core/tg_buf.h"
#include "keyprov/tg_keyprov.h"
#include "ossl/tg_ossl.h"
#include "proxy/tg_gen.h"
#include "tg_test_util.h"
#include "providers/software/tg_software.h"
#include "providers/deferred/tg_deferred.h"

static char cert_a[256], key_a[256], cert_b[256], key_b[256];

static int dummy_async_cb(SSL *s, void *arg)
{
    (void)s;
    (void)arg;
    return 1;
}

static void make(const char *cn, char *cpath, char *kpath)
{
    char *c, *k, name[64];
    tg_test_make_cert("EC:P-256", cn, &c, &k);
    snprintf(name, sizeof(name), "%s.crt", cn);
    snprintf(cpath, 256, "%s", tg_test_write_file(name, c, strlen(c)));
    snprintf(name, sizeof(name), "%s.key", cn);
    snprintf(kpath, 256, "%s", tg_test_write_file(name, k, strlen(k)));
    free(c);
    free(k);
}

static int setup(void **state)
{
    (void)state;
    if (tg_ossl_init() != TG_OK)
        return -1;
    tg_config_set_known_providers(tg_keyprov_names());
    make("a.test", cert_a, key_a);
    make("b.test", cert_b, key_b);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tg_keyprov_shutdown();
    tg_ossl_cleanup();
    return 0;
}

/* A listener block: name, address, certificate and key paths. */
static int listener_yaml(char *out, size_t len, const char *name, const char *addr,
                         const char *cert, const char *key)
{
    return snprintf(out, len,
                    "  - name: %s\n"
                    "    address: %s\n"
                    "    tls:\n"
                    "      certificates:\n"
                    "        - certificate_chain: { filename: %s }\n"
                    "          private_key: { filename: %s }\n"
                    "    upstream: { address: 127.0.0.1:9 }\n",
                    name, addr, cert, key);
}

static struct tg_config *load(const char *head, const char *listeners)
{
    char yaml[4096], err[TG_CONFIG_ERRLEN] = "";
    snprintf(yaml, sizeof(yaml), "%slisteners:\n%s", head, listeners);
    struct tg_config *cfg = NULL;
    if (tg_config_load_buffer("gw.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)) != TG_OK)
        fail_msg("config: %s", err);
    return cfg;
}

/* Two listeners l0 (a.test) and l1 (b.test), both on 127.0.0.1 port 0. */
static struct tg_gen *two_listeners(int n_workers)
{
    char l[2048];
    int off = listener_yaml(l, sizeof(l), "l0", "127.0.0.1:0", cert_a, key_a);
    listener_yaml(l + off, sizeof(l) - (size_t)off, "l1", "127.0.0.1:0", cert_b, key_b);
    struct tg_gen *g = NULL;
    char err[TG_CONFIG_ERRLEN] = "";
    if (tg_gen_new(load("", l), n_workers, dummy_async_cb, &g, err, sizeof(err)) != TG_OK)
        fail_msg("gen: %s", err);
    return g;
}

static int port_of(const struct tg_gen_listener *l)
{
    return ntohs(((const struct sockaddr_in *)&l->conf->addr.ss)->sin_port);
}

static bool fd_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1;
}

static void test_build_and_free(void **state)
{
    (void)state;
    unsigned long alive = tg_gen_alive();
    struct tg_gen *g = two_listeners(2);
    assert_int_equal(tg_gen_alive(), alive + 1);
    assert_true(g->id > 0);
    assert_int_equal(g->n_listeners, 2);
    assert_int_equal(g->n_workers, 2);
    assert_string_equal(g->listeners[1].conf->name, "l1");
    assert_non_null(g->listeners[1].tls);
    assert_true(g->kp_slots & (1u << tg_keyprov_software_binding()->slot));
    assert_ptr_equal(tg_gen_find(g, "l1"), &g->listeners[1]);
    assert_null(tg_gen_find(g, "nope"));
    /* The next one gets the next id. */
    struct tg_gen *h = two_listeners(2);
    assert_int_equal(h->id, g->id + 1);
    tg_gen_unref(h);
    tg_gen_unref(g);
    assert_int_equal(tg_gen_alive(), alive);
    tg_gen_unref(NULL);
}

/* A generation that cannot be built leaves nothing: its configuration is
 * freed (the function owns it), no generation stays alive, and the error
 * names the place. */
static void test_build_fails(void **state)
{
    (void)state;
    unsigned long alive = tg_gen_alive();
    char l[1024], err[TG_CONFIG_ERRLEN] = "";
    listener_yaml(l, sizeof(l), "l0", "127.0.0.1:0", cert_a, key_b); /* key of b.test */
    struct tg_gen *g = (struct tg_gen *)1;
    assert_int_equal(tg_gen_new(load("", l), 1, dummy_async_cb, &g, err, sizeof(err)), TG_ECONFIG);
    assert_null(g);
    assert_int_equal(tg_gen_alive(), alive);
    assert_non_null(strstr(err, "gw.yaml:"));
    assert_non_null(strstr(err, "listeners[0].tls.certificates[0].private_key: does not match"));
}

struct hammer {
    struct tg_gen *g;
    int rounds;
};

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    for (int i = 0; i < h->rounds; i++) {
        struct tg_gen *r = tg_gen_ref(h->g);
        tg_gen_unref(r);
    }
    /* Each thread was handed one reference: drop it. The last of them
     * frees the generation, on whichever thread that is. */
    tg_gen_unref(h->g);
    return NULL;
}

/* References taken and dropped from many threads at once: freed exactly
 * once, after the last one (alive count back; ASan/TSan/valgrind see any
 * double free or race). */
static void test_refcount_threads(void **state)
{
    (void)state;
    unsigned long alive = tg_gen_alive();
    struct tg_gen *g = two_listeners(1);
    enum { N = 8 };
    pthread_t th[N];
    struct hammer h = {g, 20000};
    for (int i = 0; i < N; i++)
        tg_gen_ref(g);
    assert_int_equal(atomic_load(&g->refs), N + 1);
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer_main, &h), 0);
    tg_gen_unref(g); /* ours: the threads' references keep it */
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(tg_gen_alive(), alive);
}

/* First generation: one socket per worker per listener, all on the port
 * the first bind chose, recorded in the configuration. A socket no worker
 * took is closed with the generation. */
static void test_sockets_fresh(void **state)
{
    (void)state;
    char err[TG_CONFIG_ERRLEN] = "";
    struct tg_gen *g = two_listeners(2);
    assert_int_equal(tg_gen_open_sockets(g, NULL, err, sizeof(err)), TG_OK);
    for (size_t i = 0; i < 2; i++) {
        const struct tg_gen_listener *l = &g->listeners[i];
        assert_false(l->inherited);
        assert_true(port_of(l) > 0);
        for (int w = 0; w < 2; w++) {
            struct sockaddr_in sin;
            socklen_t sl = sizeof(sin);
            assert_true(l->fds[w] >= 0);
            assert_int_equal(getsockname(l->fds[w], (struct sockaddr *)&sin, &sl), 0);
            assert_int_equal(ntohs(sin.sin_port), port_of(l));
        }
    }
    assert_int_not_equal(port_of(&g->listeners[0]), port_of(&g->listeners[1]));
    assert_int_not_equal(g->listeners[0].sock_id, g->listeners[1].sock_id);
    int taken = tg_gen_take_fd(g, 0, 1);
    assert_true(taken >= 0);
    assert_int_equal(tg_gen_take_fd(g, 0, 1), -1);
    assert_int_equal(tg_gen_take_fd(g, 0, 7), -1);
    int left = g->listeners[1].fds[0];
    tg_gen_unref(g);
    assert_false(fd_open(left));
    assert_true(fd_open(taken)); /* the taker's */
    close(taken);
}

/* The next generation keeps the sockets of every listener whose address did
 * not change (by name, else by address: a renamed listener), and opens new
 * ones for a changed address. */
static void test_sockets_inherited(void **state)
{
    (void)state;
    char err[TG_CONFIG_ERRLEN] = "";
    struct tg_gen *g1 = two_listeners(1);
    assert_int_equal(tg_gen_open_sockets(g1, NULL, err, sizeof(err)), TG_OK);

    /* Same configuration: everything kept, nothing opened. */
    struct tg_gen *g2 = two_listeners(1);
    assert_int_equal(tg_gen_open_sockets(g2, g1, err, sizeof(err)), TG_OK);
    for (size_t i = 0; i < 2; i++) {
        assert_true(g2->listeners[i].inherited);
        assert_true(g2->listeners[i].sock_id == g1->listeners[i].sock_id);
        assert_int_equal(port_of(&g2->listeners[i]), port_of(&g1->listeners[i]));
        assert_int_equal(tg_gen_take_fd(g2, i, 0), -1);
    }

    /* l0 renamed (same address: its sockets), l1 moved to a port of our
     * choosing (held with SO_REUSEPORT and not listening, so nothing else
     * takes it meanwhile): new sockets there. */
    int hold = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    assert_int_equal(setsockopt(hold, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)), 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    assert_int_equal(bind(hold, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(hold, (struct sockaddr *)&sin, &sl), 0);
    char addr[64], l[2048];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sin.sin_port));
    int off = listener_yaml(l, sizeof(l), "renamed", "127.0.0.1:0", cert_a, key_a);
    listener_yaml(l + off, sizeof(l) - (size_t)off, "l1", addr, cert_b, key_b);
    struct tg_gen *g3 = NULL;
    assert_int_equal(tg_gen_new(load("", l), 1, dummy_async_cb, &g3, err, sizeof(err)), TG_OK);
    assert_int_equal(tg_gen_open_sockets(g3, g2, err, sizeof(err)), TG_OK);
    /* Port 0 is "the same address" as port 0: both of g2's listeners had
     * it, and by-name matching comes first, so the renamed one takes the
     * listener whose name is gone. */
    assert_true(g3->listeners[0].inherited);
    assert_true(g3->listeners[0].sock_id == g2->listeners[0].sock_id);
    assert_false(g3->listeners[1].inherited);
    assert_int_equal(port_of(&g3->listeners[1]), ntohs(sin.sin_port));
    int fd = tg_gen_take_fd(g3, 1, 0);
    assert_true(fd >= 0);
    close(fd);
    close(hold);
    tg_gen_unref(g3);
    tg_gen_unref(g2);
    tg_gen_unref(g1);
}

/* An address another process holds: the reload fails with the place. */
static void test_sockets_in_use(void **state)
{
    (void)state;
    int busy = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    assert_int_equal(bind(busy, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(busy, 1), 0);
    assert_int_equal(getsockname(busy, (struct sockaddr *)&sin, &sl), 0);
    char addr[64], l[1024], err[TG_CONFIG_ERRLEN] = "", want[256];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sin.sin_port));
    listener_yaml(l, sizeof(l), "l0", addr, cert_a, key_a);
    struct tg_gen *g = NULL;
    assert_int_equal(tg_gen_new(load("", l), 2, dummy_async_cb, &g, err, sizeof(err)), TG_OK);
    assert_int_equal(tg_gen_open_sockets(g, NULL, err, sizeof(err)), TG_EIO);
    snprintf(want, sizeof(want),
             "gw.yaml:3:14: listeners[0].address: cannot listen on %s: Address already in use",
             addr);
    assert_string_equal(err, want);
    tg_gen_unref(g);
    close(busy);
}

static void expect_refused(const char *old_head, const char *new_head, const char *want)
{
    char l[1024], err[TG_CONFIG_ERRLEN] = "";
    listener_yaml(l, sizeof(l), "l0", "127.0.0.1:0", cert_a, key_a);
    struct tg_config *a = load(old_head, l), *b = load(new_head, l);
    int rc = tg_gen_check_restart(a, b, err, sizeof(err));
    if (want == NULL) {
        assert_int_equal(rc, TG_OK);
    } else {
        assert_int_equal(rc, TG_ECONFIG);
        assert_string_equal(err, want);
    }
    tg_config_free(a);
    tg_config_free(b);
}

/* What needs a restart is refused with the place and the reason; the rest
 * passes (log level, limits, reload settings). */
static void test_restart_only(void **state)
{
    (void)state;
    expect_refused("concurrency: 1\n", "concurrency: 1\nlog_level: debug\n", NULL);
    expect_refused("", "concurrency: 1\n", NULL);
    expect_refused("limits: { max_connections: 5 }\n", "reload: { watch: false }\n", NULL);
    expect_refused("admin: { address: 127.0.0.1:9901 }\n", "admin: { address: localhost:9901 }\n",
                   NULL);
    expect_refused("concurrency: 1\n", "concurrency: 2\n",
                   "gw.yaml:1:14: concurrency: changed from 1 to 2: the number of workers changes "
                   "only at a restart (nothing was reloaded)");
    expect_refused("concurrency: 2\n", "",
                   "gw.yaml: concurrency: changed from 2 to 1: the number of workers changes only "
                   "at a restart (nothing was reloaded)");
    expect_refused("admin: { address: 127.0.0.1:9901 }\n", "admin: { address: 127.0.0.1:9902 }\n",
                   "gw.yaml:1:19: admin.address: changed from 127.0.0.1:9901 to 127.0.0.1:9902: "
                   "the admin endpoint moves only at a restart (nothing was reloaded)");
    expect_refused("admin: { address: 127.0.0.1:9901 }\n", "",
                   "gw.yaml: admin: changed from 127.0.0.1:9901 to none: the admin endpoint moves "
                   "only at a restart (nothing was reloaded)");
    expect_refused("", "admin: { address: 127.0.0.1:9901 }\n",
                   "gw.yaml:1:19: admin.address: changed from none to 127.0.0.1:9901: the admin "
                   "endpoint moves only at a restart (nothing was reloaded)");
    /* The access log: the same block passes, any change is refused. */
#define ALOG(x) "access_log: { path: /tmp/tg-test-gen.log" x " }\n"
#define ALOG_WHY                                                                                   \
    "access_log: changed: the access log's path, format and buffer change only at a restart "      \
    "(nothing was reloaded; SIGUSR1 reopens the file)"
    expect_refused(ALOG(", format: json"), "log_level: debug\n" ALOG(", format: json"), NULL);
    expect_refused("access_log: {}\n", "access_log: { path: stdout }\n", NULL);
    expect_refused(ALOG(""), ALOG(", format: json"), "gw.yaml:1:13: " ALOG_WHY);
    expect_refused(ALOG(""), ALOG(", buffer: 1MiB"), "gw.yaml:1:13: " ALOG_WHY);
    expect_refused(ALOG(""), "access_log: { path: /tmp/tg-test-gen-2.log }\n",
                   "gw.yaml:1:13: " ALOG_WHY);
    expect_refused(ALOG(""), "access_log: { path: stdout }\n", "gw.yaml:1:13: " ALOG_WHY);
    expect_refused(ALOG(""), "", "gw.yaml: " ALOG_WHY);
    expect_refused("", "access_log: { path: off }\n", NULL);
#undef ALOG
#undef ALOG_WHY
}

static void test_render_certs(void **state)
{
    (void)state;
    struct tg_gen *g = two_listeners(1);
    struct tg_buf out = TG_BUF_INIT;
    tg_gen_render_certs(g, &out);
    assert_false(tg_buf_failed(&out));
    assert_non_null(
        strstr(out.data, "# TYPE tlsgate_certificate_expiry_timestamp_seconds gauge\n"));
    assert_non_null(strstr(out.data, "tlsgate_certificate_expiry_timestamp_seconds{listener=\"l0\","
                                     "names=\"a.test\",serial=\"01\"} "));
    assert_non_null(strstr(out.data, "{listener=\"l1\",names=\"b.test\",serial=\"01\"} "));
    tg_buf_free(&out);
    tg_gen_unref(g);
}

int main(void)
{
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider, &tg_deferred_provider);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_and_free),    cmocka_unit_test(test_build_fails),
        cmocka_unit_test(test_refcount_threads),  cmocka_unit_test(test_sockets_fresh),
        cmocka_unit_test(test_sockets_inherited), cmocka_unit_test(test_sockets_in_use),
        cmocka_unit_test(test_restart_only),      cmocka_unit_test(test_render_certs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
