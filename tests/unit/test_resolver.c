/*
 * Unit tests for src/upstream/tg_resolver.c against a real DNS server:
 * Debian's dnsmasq on a loopback port, answering from a hosts file the test
 * rewrites (SIGHUP re-reads it). A and AAAA records, the family filters,
 * TTLs, NXDOMAIN, an answer that changes, the hosts file read before DNS
 * ($CARES_HOSTS), a server that never answers (query timeout), cancelled
 * queries, and answers that come while ares_getaddrinfo is still running
 * delivered later. Skipped (with a message) where dnsmasq is not installed.
 *
 * Every wait turns the loop until a condition holds, bounded.
 */
#include "tg_test_util.h"

#include "core/tg_log.h"
#include "core/tg_time.h"
#include "upstream/tg_resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define DNSMASQ "/usr/sbin/dnsmasq"

static struct {
    struct ev_loop *loop;
    pid_t dns_pid;
    int dns_port;
    char hosts[512], log[512];
} G;

struct answer {
    int calls;
    int status;
    char why[64];
    char addrs[8][64];
    size_t n;
    uint32_t ttl;
};

static void answer_cb(void *arg, int status, const char *why, const union tg_sockaddr *addrs,
                      size_t n, uint32_t ttl)
{
    struct answer *a = arg;
    a->calls++;
    a->status = status;
    snprintf(a->why, sizeof(a->why), "%s", why != NULL ? why : "");
    a->n = n;
    a->ttl = ttl;
    for (size_t i = 0; i < n && i < 8; i++)
        tg_sockaddr_text(&addrs[i], a->addrs[i], sizeof(a->addrs[i]));
}

static bool has(const struct answer *a, const char *text)
{
    for (size_t i = 0; i < a->n && i < 8; i++) {
        if (strcmp(a->addrs[i], text) == 0)
            return true;
    }
    return false;
}

static void turn_until(const int *calls, int want)
{
    uint64_t end = tg_now_ns() + 30 * TG_NS_PER_S;
    while (*calls < want) {
        if (tg_now_ns() > end)
            fail_msg("no answer within 30s");
        ev_run(G.loop, EVRUN_ONCE);
    }
}

static void write_hosts(const char *text)
{
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s.tmp", G.hosts);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(rename(tmp, G.hosts), 0);
}

static bool log_has(const char *what)
{
    FILE *f = fopen(G.log, "r");
    if (f == NULL)
        return false;
    char line[512];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, what) != NULL;
    fclose(f);
    return found;
}

/* A UDP socket bound to a free port of 127.0.0.1; *port: that port. */
static int bound_udp(int *port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

/* A UDP port free a moment ago (dnsmasq cannot be told to pick one). */
static int free_udp_port(void)
{
    int port;
    close(bound_udp(&port));
    return port;
}

/* A DNS server that never answers: the socket (close it at the end), and
 * its "127.0.0.1:PORT" in server. */
static int silent_dns(char *server, size_t len)
{
    int port;
    int fd = bound_udp(&port);
    snprintf(server, len, "127.0.0.1:%d", port);
    return fd;
}

static bool start_dnsmasq(void)
{
    char port[32], hosts[600], user[64];
    snprintf(G.hosts, sizeof(G.hosts), "%s/hosts", tg_test_tmpdir());
    snprintf(G.log, sizeof(G.log), "%s/dnsmasq.log", tg_test_tmpdir());
    write_hosts("10.1.0.1 two.test\n10.1.0.2 two.test\nfd00::7 six.test\n"
                "10.1.0.9 move.test\n");
    snprintf(hosts, sizeof(hosts), "--addn-hosts=%s", G.hosts);
    snprintf(user, sizeof(user), "--user=root");
    for (int attempt = 0; attempt < 5; attempt++) {
        G.dns_port = free_udp_port();
        snprintf(port, sizeof(port), "--port=%d", G.dns_port);
        unlink(G.log);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            FILE *f = freopen(G.log, "w", stderr);
            (void)f;
            dup2(2, 1);
            /* As root it would switch to an account that cannot read the
             * test's private directory when SIGHUP makes it re-read. */
            char *argv[] = {"dnsmasq",
                            "--no-daemon",
                            "--listen-address=127.0.0.1",
                            "--bind-interfaces",
                            "--no-resolv",
                            "--no-hosts",
                            "--local=/test/",
                            "--local-ttl=7",
                            "--log-queries",
                            "--pid-file=",
                            "--cache-size=0",
                            "--log-facility=-",
                            port,
                            hosts,
                            getuid() == 0 ? user : NULL,
                            NULL};
            execv(DNSMASQ, argv);
            _exit(127);
        }
        G.dns_pid = pid;
        uint64_t end = tg_now_ns() + 10 * TG_NS_PER_S;
        while (tg_now_ns() < end) {
            int st;
            if (waitpid(pid, &st, WNOHANG) == pid) {
                G.dns_pid = 0;
                break; /* the port was taken meanwhile: another one */
            }
            if (log_has("read ") && log_has(G.hosts))
                return true;
            usleep(10000);
        }
        if (G.dns_pid != 0) {
            kill(G.dns_pid, SIGKILL);
            waitpid(G.dns_pid, NULL, 0);
            G.dns_pid = 0;
        }
    }
    fail_msg("dnsmasq did not start");
    return false;
}

static int setup(void **state)
{
    (void)state;
    tg_log_set_level(TG_LOG_WARN);
    G.loop = ev_loop_new(EVFLAG_AUTO);
    if (access(DNSMASQ, X_OK) == 0)
        start_dnsmasq();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (G.dns_pid > 0) {
        kill(G.dns_pid, SIGTERM);
        waitpid(G.dns_pid, NULL, 0);
    }
    ev_loop_destroy(G.loop);
    return 0;
}

static struct tg_resolver *resolver_at(const char *server, uint64_t timeout_ns, uint32_t attempts)
{
    char *v[] = {(char *)server};
    struct tg_conf_dns d = {v, 1, timeout_ns, attempts, {NULL, 0, 0}};
    struct tg_resolver *r = NULL;
    char err[256] = "";
    if (tg_resolver_new(G.loop, &d, &r, err, sizeof(err)) != TG_OK)
        fail_msg("resolver: %s", err);
    return r;
}

static struct tg_resolver *resolver(void)
{
    char server[64];
    snprintf(server, sizeof(server), "127.0.0.1:%d", G.dns_port);
    return resolver_at(server, 2 * TG_NS_PER_S, 2);
}

static void lookup(struct tg_resolver *r, const char *name, int family, struct answer *a)
{
    struct tg_resolver_query *q = NULL;
    memset(a, 0, sizeof(*a));
    assert_int_equal(tg_resolver_resolve(r, name, family, answer_cb, a, &q), TG_OK);
    assert_int_equal(a->calls, 0); /* never from inside resolve */
    turn_until(&a->calls, 1);
}

#define NEED_DNSMASQ()                                                                             \
    do {                                                                                           \
        if (G.dns_pid <= 0) {                                                                      \
            print_message("SKIP: %s not installed\n", DNSMASQ);                                    \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static void test_records(void **state)
{
    (void)state;
    NEED_DNSMASQ();
    struct tg_resolver *r = resolver();
    struct answer a;
    lookup(r, "two.test", AF_UNSPEC, &a);
    assert_int_equal(a.status, TG_OK);
    assert_int_equal(a.n, 2);
    assert_true(has(&a, "10.1.0.1:0") && has(&a, "10.1.0.2:0"));
    assert_int_equal(a.ttl, 7);
    lookup(r, "six.test", AF_UNSPEC, &a);
    assert_int_equal(a.status, TG_OK);
    assert_int_equal(a.n, 1);
    assert_true(has(&a, "[fd00::7]:0"));
    lookup(r, "six.test", AF_INET6, &a);
    assert_int_equal(a.n, 1);
    /* Only AAAA: nothing for v4. */
    lookup(r, "six.test", AF_INET, &a);
    assert_int_equal(a.status, TG_EIO);
    assert_int_equal(a.n, 0);
    lookup(r, "two.test", AF_INET6, &a);
    assert_int_equal(a.status, TG_EIO);
    lookup(r, "nowhere.test", AF_UNSPEC, &a);
    assert_int_equal(a.status, TG_EIO);
    assert_true(a.why[0] != '\0');
    assert_int_equal(tg_resolver_pending(r), 0);
    tg_resolver_free(r);
}

static void test_answer_changes(void **state)
{
    (void)state;
    NEED_DNSMASQ();
    struct tg_resolver *r = resolver();
    struct answer a;
    lookup(r, "move.test", AF_UNSPEC, &a);
    assert_true(has(&a, "10.1.0.9:0"));
    write_hosts("10.1.0.1 two.test\n10.1.0.2 two.test\nfd00::7 six.test\n"
                "10.1.0.10 move.test\n");
    assert_int_equal(kill(G.dns_pid, SIGHUP), 0);
    /* dnsmasq re-reads the file when it gets to the signal. */
    uint64_t end = tg_now_ns() + 30 * TG_NS_PER_S;
    do {
        assert_true(tg_now_ns() < end);
        lookup(r, "move.test", AF_UNSPEC, &a);
    } while (!has(&a, "10.1.0.10:0"));
    assert_int_equal(a.n, 1);
    tg_resolver_free(r);
}

/* The hosts file comes first: a name there is answered without DNS (the
 * resolver points at a port where nobody answers). */
static void test_hosts_file(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof(path), "%s/cares-hosts", tg_test_tmpdir());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("10.7.7.7 filed.test\n::7 filed.test\n", f);
    fclose(f);
    setenv("CARES_HOSTS", path, 1);
    char server[64];
    int silent = silent_dns(server, sizeof(server));
    struct tg_resolver *r = resolver_at(server, 100 * TG_NS_PER_MS, 1);
    struct answer a;
    lookup(r, "filed.test", AF_UNSPEC, &a);
    assert_int_equal(a.status, TG_OK);
    assert_int_equal(a.n, 2);
    assert_true(has(&a, "10.7.7.7:0") && has(&a, "[::7]:0"));
    lookup(r, "filed.test", AF_INET, &a);
    assert_int_equal(a.n, 1);
    /* Not in the file: DNS, which never answers: a timeout. */
    uint64_t t0 = tg_now_ns();
    lookup(r, "other.test", AF_INET, &a);
    assert_int_equal(a.status, TG_EIO);
    assert_true(tg_now_ns() - t0 >= 50 * TG_NS_PER_MS);
    /* Cancelled: never called back, and freeing with it pending is fine. */
    struct answer b;
    memset(&b, 0, sizeof(b));
    struct tg_resolver_query *q = NULL;
    assert_int_equal(tg_resolver_resolve(r, "slow.test", AF_INET, answer_cb, &b, &q), TG_OK);
    tg_resolver_cancel(q);
    assert_int_equal(tg_resolver_resolve(r, "filed.test", AF_INET, answer_cb, &b, &q), TG_OK);
    tg_resolver_cancel(q); /* answered from the file, delivery pending */
    assert_int_equal(tg_resolver_pending(r), 2);
    ev_run(G.loop, EVRUN_NOWAIT);
    tg_resolver_free(r);
    ev_run(G.loop, EVRUN_NOWAIT);
    assert_int_equal(b.calls, 0);
    close(silent);
    unsetenv("CARES_HOSTS");
}

/* Without $CARES_HOSTS the system's hosts file answers (c-ares 1.34 fails
 * the hosts look-up when asked for the environment's file and none is
 * named: every name would go to DNS). DNS here never answers. */
static void test_system_hosts_file(void **state)
{
    (void)state;
    assert_int_equal(tg_resolver_ai_flags(NULL), ARES_AI_NOSORT);
    assert_int_equal(tg_resolver_ai_flags(""), ARES_AI_NOSORT);
    assert_int_equal(tg_resolver_ai_flags("/x/hosts"), ARES_AI_NOSORT | ARES_AI_ENVHOSTS);
    unsetenv("CARES_HOSTS");
    char server[64];
    int silent = silent_dns(server, sizeof(server));
    struct tg_resolver *r = resolver_at(server, 100 * TG_NS_PER_MS, 1);
    struct answer a;
    lookup(r, "localhost", AF_INET, &a); /* every Debian /etc/hosts has it */
    assert_int_equal(a.status, TG_OK);
    assert_true(has(&a, "127.0.0.1:0"));
    tg_resolver_free(r);
    ev_run(G.loop, EVRUN_NOWAIT);
    close(silent);
}

static void test_bad_config(void **state)
{
    (void)state;
    char *v[] = {(char *)"not-an-address"};
    struct tg_conf_dns d = {v, 1, TG_NS_PER_S, 1, {"gw.yaml", 3, 7}};
    struct tg_resolver *r = (struct tg_resolver *)1;
    char err[256] = "";
    assert_int_equal(tg_resolver_new(G.loop, &d, &r, err, sizeof(err)), TG_EIO);
    assert_null(r);
    assert_non_null(strstr(err, "gw.yaml:3:7: dns.resolvers: c-ares refuses"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_records),    cmocka_unit_test(test_answer_changes),
        cmocka_unit_test(test_hosts_file), cmocka_unit_test(test_system_hosts_file),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
