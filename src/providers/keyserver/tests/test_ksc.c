/*
 * The keyserver provider (the gateway's side) against a scripted key server:
 * the test listens on the Unix socket itself, accepts the provider's
 * connections and reads and writes frames by hand, while an ev loop plays
 * the worker's (tg_keyprov_set_flush after each turn, as the worker's
 * prepare does). Operations go through tg_keyop_start, the provider's
 * submit/flush/completion path without an ASYNC job.
 *
 * Covers: typed_config errors; the start-up check (a key server that is not
 * there, one that does not hold the key, refuses this process, or holds a
 * key of another type); requests with every field as the protocol says
 * (ECDSA, RSA PKCS#1 v1.5 and PSS, the key id, the hint), pipelined and
 * answered out of order; the in-flight limit the server grants; a timeout
 * and the late reply after it; the connection lost with requests written
 * (they fail) and requests not written (they wait and go out on the next
 * connection); fail fast once the outage is older than the timeout; a full
 * queue; every failure status; garbage from the server; drain; a cancelled
 * request never sent. Waits are bounded polls on conditions.
 */
#include <errno.h>
#include <ev.h>
#include <openssl/pem.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config/tg_config.h"
#include "core/tg_time.h"
#include "keyprov/tg_keyprov.h"
#include "ksproto/tg_ksproto.h"
#include "providers/deferred/tg_deferred.h"
#include "providers/keyserver/tg_ksc.h"
#include "providers/keyserver/tg_ksc_internal.h"
#include "providers/software/tg_software.h"
#include "tg_test_util.h"

static EVP_PKEY *g_ec_pub, *g_rsa_pub;
static uint8_t g_ec_id[32], g_rsa_id[32];
static char g_sock[300];
static int g_seq;

/* ---- the worker's side ---- */

static struct ev_loop *g_loop;
static struct tg_keyprov_set *g_set;
static size_t g_handshaking = 5;
static ev_timer g_tick;

static void tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
}

/* One loop turn (at most ~5 ms: the tick) and the worker's flush. */
static void turn(void)
{
    ev_run(g_loop, EVRUN_ONCE);
    tg_keyprov_set_flush(g_set);
}

#define PUMP_UNTIL(cond)                                                                           \
    do {                                                                                           \
        uint64_t until_ = tg_now_ns() + 20 * TG_NS_PER_S;                                          \
        while (!(cond)) {                                                                          \
            if (tg_now_ns() > until_)                                                              \
                fail_msg("timed out waiting for %s", #cond);                                       \
            turn();                                                                                \
        }                                                                                          \
    } while (0)

static void worker_start(void)
{
    g_loop = ev_loop_new(EVFLAG_AUTO);
    ev_timer_init(&g_tick, tick_cb, 0.005, 0.005);
    ev_timer_start(g_loop, &g_tick);
    assert_int_equal(tg_keyprov_set_new(g_loop, 0, &g_handshaking, &g_set), TG_OK);
    tg_keyprov_set_current(g_set);
}

static void worker_stop(void)
{
    tg_keyprov_set_free(g_set);
    g_set = NULL;
    ev_timer_stop(g_loop, &g_tick);
    ev_loop_destroy(g_loop);
    g_loop = NULL;
}

/* ---- bindings ---- */

struct conf {
    struct tg_conf_keyprov kp;
    struct tg_conf_param p[6];
};

static void conf_init(struct conf *c, const char *sock)
{
    memset(c, 0, sizeof(*c));
    c->kp.provider_name = (char *)"keyserver";
    c->kp.fallback = true;
    c->kp.path = (char *)"tls.certificates[0].private_key_provider";
    c->kp.typed_config.path = (char *)"tls.certificates[0].private_key_provider.typed_config";
    c->kp.typed_config.v = c->p;
    c->kp.mark = (struct tg_conf_mark){"gw.yaml", 5, 11};
    if (sock != NULL) {
        c->p[0] = (struct tg_conf_param){
            .key = (char *)"socket", .value = (char *)sock, .value_mark = {"/etc/gw.yaml", 7, 19}};
        c->kp.typed_config.n = 1;
    }
}

static void conf_add(struct conf *c, const char *k, const char *v)
{
    c->p[c->kp.typed_config.n++] = (struct tg_conf_param){
        .key = (char *)k, .value = (char *)v, .value_mark = {"gw.yaml", 9, 20}};
}

struct held {
    struct tg_keyprov_binding *b;
    struct tg_pkey *key;
};

static int bind_held(struct conf *c, EVP_PKEY *pub, struct held *h, char *err, size_t errlen)
{
    memset(h, 0, sizeof(*h));
    int rc = tg_keyprov_bind_held(&c->kp, pub, &h->b, &h->key, NULL, err, errlen);
    if (rc == TG_OK)
        h->key->binding = h->b;
    return rc;
}

static void held_free(struct held *h)
{
    tg_pkey_unref(h->key);
    tg_keyprov_binding_free(h->b);
}

/* ---- the scripted key server ---- */

struct fake {
    int lfd, fd;
    uint8_t buf[16 * TG_KSP_FRAME_MAX];
    size_t have;
};

static void fake_listen(struct fake *f)
{
    memset(f, 0, sizeof(*f));
    f->fd = -1;
    f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, g_sock, strlen(g_sock) + 1);
    unlink(g_sock);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(f->lfd, 16), 0);
}

/* Accept the provider's next connection, turning the loop meanwhile. */
static void fake_accept(struct fake *f)
{
    uint64_t until = tg_now_ns() + 20 * TG_NS_PER_S;
    for (;;) {
        struct pollfd p = {f->lfd, POLLIN, 0};
        if (poll(&p, 1, 0) == 1)
            break;
        if (tg_now_ns() > until)
            fail_msg("the provider did not connect");
        turn();
    }
    if (f->fd >= 0)
        close(f->fd);
    f->fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(f->fd >= 0);
    f->have = 0;
}

/* The next frame from the provider, turning the loop while there is none. */
static void fake_read(struct fake *f, struct tg_ksp_msg *m)
{
    uint64_t until = tg_now_ns() + 20 * TG_NS_PER_S;
    for (;;) {
        struct tg_ksp_frame fr;
        size_t used;
        const char *why;
        int rc = tg_ksp_frame_parse(f->buf, f->have, &fr, &used, &why);
        if (rc == TG_OK) {
            assert_int_equal(tg_ksp_decode(&fr, m, &why), TG_OK);
            memmove(f->buf, f->buf + used, f->have - used);
            f->have -= used;
            return;
        }
        assert_int_equal(rc, TG_EAGAIN);
        struct pollfd p = {f->fd, POLLIN, 0};
        if (poll(&p, 1, 0) == 1) {
            ssize_t n = recv(f->fd, f->buf + f->have, sizeof(f->buf) - f->have, 0);
            assert_true(n > 0);
            f->have += (size_t)n;
            continue;
        }
        if (tg_now_ns() > until)
            fail_msg("no frame from the provider");
        turn();
    }
}

static void fake_send(struct fake *f, const struct tg_ksp_msg *m)
{
    uint8_t out[TG_KSP_FRAME_MAX];
    size_t n = tg_ksp_encode(m, out, sizeof(out));
    assert_true(n > 0);
    assert_int_equal(send(f->fd, out, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Accept and answer the hello, granting mif. */
static void fake_greet(struct fake *f, uint32_t mif)
{
    fake_accept(f);
    struct tg_ksp_msg m;
    fake_read(f, &m);
    assert_int_equal(m.type, TG_KSP_HELLO);
    assert_non_null(strstr(m.text, "worker 0"));
    struct tg_ksp_msg r = {.type = TG_KSP_HELLO_REPLY, .max_in_flight = mif};
    snprintf(r.text, sizeof(r.text), "fake");
    fake_send(f, &r);
}

static void fake_reply(struct fake *f, uint32_t id, uint8_t status, size_t siglen, uint8_t fill)
{
    struct tg_ksp_msg r = {.type = TG_KSP_SIGN_REPLY, .id = id, .status = status};
    if (status == TG_KSP_ST_OK) {
        r.datalen = siglen;
        memset(r.data, fill, siglen);
    }
    fake_send(f, &r);
}

static void fake_close(struct fake *f)
{
    if (f->fd >= 0)
        close(f->fd);
    if (f->lfd >= 0)
        close(f->lfd);
    f->fd = f->lfd = -1;
    unlink(g_sock);
}

/* A probe responder on a thread (load_key's start-up check blocks). */
enum probe_mode { PROBE_OK_EC, PROBE_UNKNOWN, PROBE_REFUSE, PROBE_RSA };
struct probe {
    struct fake f;
    enum probe_mode mode;
    pthread_t t;
};

static void *probe_main(void *arg)
{
    struct probe *p = arg;
    int fd = accept4(p->f.lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct tg_ksp_msg m = {.type = TG_KSP_ERROR, .status = TG_KSP_ST_NOT_ALLOWED};
    uint8_t out[2 * TG_KSP_FRAME_MAX], in[512];
    size_t n = 0;
    if (p->mode == PROBE_REFUSE) {
        snprintf(m.text, sizeof(m.text), "pid 1 uid 2 gid 3 not allowed");
        n = tg_ksp_encode(&m, out, sizeof(out));
    } else {
        (void)!recv(fd, in, sizeof(in), 0); /* hello and lookup, in one send */
        m = (struct tg_ksp_msg){.type = TG_KSP_HELLO_REPLY, .max_in_flight = 1};
        n = tg_ksp_encode(&m, out, sizeof(out));
        m = (struct tg_ksp_msg){.type = TG_KSP_LOOKUP_REPLY, .id = 1};
        m.status = p->mode == PROBE_UNKNOWN ? TG_KSP_ST_UNKNOWN_KEY : TG_KSP_ST_OK;
        m.key_type = p->mode == PROBE_RSA ? TG_KSP_KEY_RSA : TG_KSP_KEY_EC;
        m.key_bits = p->mode == PROBE_RSA ? 2048 : 256;
        n += tg_ksp_encode(&m, out + n, sizeof(out) - n);
    }
    (void)!send(fd, out, n, MSG_NOSIGNAL);
    close(fd);
    return NULL;
}

static void probe_start(struct probe *p, enum probe_mode mode)
{
    fake_listen(&p->f);
    p->mode = mode;
    assert_int_equal(pthread_create(&p->t, NULL, probe_main, p), 0);
}

static void probe_end(struct probe *p)
{
    pthread_join(p->t, NULL);
    fake_close(&p->f);
}

/* ---- operations ---- */

struct req {
    struct tg_keyop op;
    int wakes;
};

static int wake(void *arg)
{
    ((struct req *)arg)->wakes++;
    return 1;
}

static bool done(const struct req *r)
{
    return r->op.state == TG_KEYOP_DONE;
}

static void start(struct req *r, const struct held *h, int rsa_pad)
{
    memset(r, 0, sizeof(*r));
    struct tg_keyop *op = &r->op;
    bool rsa = h->key->type == TG_PKEY_RSA;
    tg_keyop_init(op, rsa ? TG_KEYOP_RSA_SIGN : TG_KEYOP_ECDSA_SIGN);
    op->pkey = h->key;
    op->binding = h->b;
    op->inlen = 32;
    memset(op->in, 0x5c, 32);
    if (rsa) {
        op->md = EVP_sha256();
        op->rsa_padding = rsa_pad;
        op->pss_saltlen = 32;
        op->mgf1_md = EVP_sha256();
    }
    int rc = tg_keyop_start(op, wake, r);
    assert_true(rc == TG_EPENDING || rc == TG_OK);
    /* As the worker's prepare would, right away: what can be written is in
     * the socket before any deadline can pass, however slow this machine. */
    tg_keyprov_set_flush(g_set);
}

static struct tg_ksc_stats *stats(void)
{
    static struct tg_ksc_stats s[TG_KSC_MAX_SOCKETS];
    memset(s, 0, sizeof(s));
    size_t n = 0;
    tg_ksc_sockets(&n);
    tg_ksc_stats_collect(s, n);
    return s;
}

static uint64_t failures(enum tg_ksc_failure why)
{
    return tg_ctr_get(&stats()[0].failures[why]);
}

/* ---- set-up ---- */

static void load_pub(const char *alg, EVP_PKEY **pub, uint8_t *id)
{
    char *cert, *key;
    tg_test_make_cert(alg, "ksc.test", &cert, &key);
    BIO *b = BIO_new_mem_buf(cert, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    *pub = X509_get_pubkey(x);
    assert_int_equal(tg_ksp_key_id(*pub, id), TG_OK);
    X509_free(x);
    free(cert);
    free(key);
}

static int setup(void **state)
{
    (void)state;
    load_pub("EC:P-256", &g_ec_pub, g_ec_id);
    load_pub("RSA:2048", &g_rsa_pub, g_rsa_id);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(g_ec_pub);
    EVP_PKEY_free(g_rsa_pub);
    return 0;
}

/* Every test gets its own socket name and a fresh provider registry. */
static int each_setup(void **state)
{
    (void)state;
    snprintf(g_sock, sizeof(g_sock), "%s/ksc%d.sock", tg_test_tmpdir(), g_seq++);
    return 0;
}

static int each_teardown(void **state)
{
    (void)state;
    unlink(g_sock);
    tg_keyprov_shutdown();
    return 0;
}

/* ---- tests ---- */

static void test_configure(void **state)
{
    (void)state;
    struct conf c;
    struct held h;
    char err[1024];
    conf_init(&c, NULL);
    assert_int_equal(bind_held(&c, g_ec_pub, &h, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "gw.yaml:5:11: "));
    assert_non_null(strstr(err, "missing required key 'socket'"));
    conf_init(&c, g_sock);
    conf_add(&c, "timeout", "0s");
    assert_int_equal(bind_held(&c, g_ec_pub, &h, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "gw.yaml:9:20: "));
    assert_non_null(strstr(err, "typed_config.timeout: expected a duration from 1ms to 60s"));
    conf_init(&c, g_sock);
    conf_add(&c, "max_in_flight", "0");
    assert_int_equal(bind_held(&c, g_ec_pub, &h, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "max_in_flight"));
    conf_init(&c, g_sock);
    conf_add(&c, "key_exchange", "true");
    assert_int_equal(bind_held(&c, g_ec_pub, &h, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "keyserver does not do key exchange"));
    conf_init(&c, g_sock);
    conf_add(&c, "colour", "blue");
    assert_int_equal(bind_held(&c, g_ec_pub, &h, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "colour"));
    conf_init(&c, "@");
    assert_int_equal(bind_held(&c, g_ec_pub, &h, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "/etc/gw.yaml:7:19: "));
    /* A relative socket is relative to the configuration file. */
    conf_init(&c, "keys.sock");
    assert_int_equal(bind_held(&c, g_ec_pub, &h, err, sizeof(err)), TG_OK);
    size_t n = 0;
    struct tg_ksc_socket *socks = tg_ksc_sockets(&n);
    assert_int_equal(n, 1);
    assert_string_equal(socks[0].name, "/etc/keys.sock");
    held_free(&h);
    /* No certificate: nothing to ask the key server for. */
    conf_init(&c, g_sock);
    assert_int_equal(bind_held(&c, NULL, &h, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "keyserver needs the certificate (certificate_chain)"));
    /* fallback: true is refused for a key the provider holds. */
    conf_init(&c, g_sock);
    c.kp.fallback_set = true;
    assert_int_equal(bind_held(&c, g_ec_pub, &h, err, sizeof(err)), TG_ECONFIG);
    assert_non_null(strstr(err, "no software copy"));
}

static void test_startup_check(void **state)
{
    (void)state;
    struct conf c;
    struct held h;
    char err[1024];
    /* Nobody there: a warning, and the gateway starts. */
    conf_init(&c, g_sock);
    assert_int_equal(bind_held(&c, g_ec_pub, &h, err, sizeof(err)), TG_OK);
    assert_true(tg_pkey_is_held(h.key));
    held_free(&h);
    struct probe p;
    probe_start(&p, PROBE_OK_EC);
    assert_int_equal(bind_held(&c, g_ec_pub, &h, err, sizeof(err)), TG_OK);
    probe_end(&p);
    held_free(&h);
    probe_start(&p, PROBE_UNKNOWN);
    assert_int_equal(bind_held(&c, g_ec_pub, &h, err, sizeof(err)), TG_ECONFIG);
    probe_end(&p);
    assert_non_null(strstr(err, "gw.yaml:5:11: "));
    assert_non_null(strstr(err, "the key server does not hold this certificate's key"));
    probe_start(&p, PROBE_REFUSE);
    assert_int_equal(bind_held(&c, g_ec_pub, &h, err, sizeof(err)), TG_ECONFIG);
    probe_end(&p);
    assert_non_null(strstr(err, "the key server refuses this process (not_allowed: pid 1 uid 2"));
    probe_start(&p, PROBE_RSA);
    assert_int_equal(bind_held(&c, g_ec_pub, &h, err, sizeof(err)), TG_ECONFIG);
    probe_end(&p);
    assert_non_null(
        strstr(err, "the key server's key is RSA 2048-bit, the certificate's EC 256-bit"));
}

/* A binding to the scripted server (not listening at bind time: the start-up
 * check only warns), the server listening, the worker started and greeted. */
static void up(struct conf *c, struct held *h, EVP_PKEY *pub, struct fake *f, uint32_t grant,
               const char *timeout, const char *mif)
{
    char err[1024];
    conf_init(c, g_sock);
    if (timeout != NULL)
        conf_add(c, "timeout", timeout);
    if (mif != NULL)
        conf_add(c, "max_in_flight", mif);
    assert_int_equal(bind_held(c, pub, h, err, sizeof(err)), TG_OK);
    fake_listen(f);
    worker_start();
    fake_greet(f, grant);
    PUMP_UNTIL(tg_ctr_get(&stats()[0].connected) == 1);
}

static void down(struct held *h, struct fake *f)
{
    worker_stop();
    fake_close(f);
    held_free(h);
}

static void test_requests(void **state)
{
    (void)state;
    struct conf c, c2;
    struct held h, hr;
    struct fake f;
    char err[1024];
    conf_init(&c2, g_sock);
    assert_int_equal(bind_held(&c2, g_rsa_pub, &hr, err, sizeof(err)), TG_OK);
    up(&c, &h, g_ec_pub, &f, 64, NULL, NULL);
    struct req r[3];
    start(&r[0], &h, 0);
    start(&r[1], &hr, TG_RSA_PAD_PSS);
    start(&r[2], &hr, TG_RSA_PAD_PKCS1);
    struct tg_ksp_msg m[3];
    for (int i = 0; i < 3; i++)
        fake_read(&f, &m[i]);
    /* Every field as the protocol says. */
    assert_int_equal(m[0].type, TG_KSP_SIGN);
    assert_memory_equal(m[0].key_id, g_ec_id, 32);
    assert_int_equal(m[0].alg, TG_KSP_ALG_ECDSA);
    assert_int_equal(m[0].md, TG_KSP_MD_NONE);
    assert_int_equal(m[0].datalen, 32);
    assert_int_equal(m[0].data[0], 0x5c);
    assert_int_equal(m[0].hint, 5);
    assert_memory_equal(m[1].key_id, g_rsa_id, 32);
    assert_int_equal(m[1].alg, TG_KSP_ALG_RSA_PSS);
    assert_int_equal(m[1].md, TG_KSP_MD_SHA256);
    assert_int_equal(m[1].mgf1, TG_KSP_MD_SHA256);
    assert_int_equal(m[1].saltlen, 32);
    assert_int_equal(m[2].alg, TG_KSP_ALG_RSA_PKCS1);
    assert_int_equal(m[2].mgf1, TG_KSP_MD_NONE);
    assert_int_equal(m[2].saltlen, 0);
    assert_true(m[0].id != m[1].id && m[1].id != m[2].id && m[0].id != 0);
    /* Answered out of order. */
    fake_reply(&f, m[2].id, TG_KSP_ST_OK, 256, 0x22);
    fake_reply(&f, m[0].id, TG_KSP_ST_OK, 71, 0x11);
    fake_reply(&f, m[1].id, TG_KSP_ST_OK, 256, 0x33);
    PUMP_UNTIL(done(&r[0]) && done(&r[1]) && done(&r[2]));
    static const uint8_t fills[] = {0x11, 0x33, 0x22};
    static const size_t lens[] = {71, 256, 256};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].wakes, 1);
        assert_int_equal(tg_keyop_consume(&r[i].op), TG_OK);
        assert_int_equal(r[i].op.outlen, lens[i]);
        assert_int_equal(r[i].op.out[0], fills[i]);
    }
    assert_int_equal(tg_ctr_get(&stats()[0].requests), 3);
    assert_int_equal(tg_ctr_get(&stats()[0].rtt_us.count), 3);
    /* A signature longer than the key's: refused. */
    start(&r[0], &h, 0);
    fake_read(&f, &m[0]);
    fake_reply(&f, m[0].id, TG_KSP_ST_OK, 200, 0x11);
    PUMP_UNTIL(done(&r[0]));
    assert_int_equal(tg_keyop_consume(&r[0].op), TG_EDEVICE);
    assert_int_equal(failures(TG_KSC_FAIL_SERVER_ERROR), 1);
    down(&h, &f);
    held_free(&hr);
}

static void test_granted_limit_and_statuses(void **state)
{
    (void)state;
    struct conf c;
    struct held h;
    struct fake f;
    up(&c, &h, g_ec_pub, &f, 2, NULL, NULL);
    struct req r[6];
    for (int i = 0; i < 6; i++)
        start(&r[i], &h, 0);
    /* Two in flight (granted), four wait. */
    struct tg_ksp_msg m[6];
    fake_read(&f, &m[0]);
    fake_read(&f, &m[1]);
    PUMP_UNTIL(tg_ctr_get(&stats()[0].waiting) == 4);
    assert_int_equal(tg_ctr_get(&stats()[0].in_flight), 2);
    static const uint8_t st[] = {TG_KSP_ST_BUSY,   TG_KSP_ST_UNKNOWN_KEY, TG_KSP_ST_SHUTTING_DOWN,
                                 TG_KSP_ST_FAILED, TG_KSP_ST_BAD_REQUEST, TG_KSP_ST_OK};
    static const int want[] = {TG_ELIMIT, TG_EDEVICE, TG_EDEVICE, TG_EDEVICE, TG_EDEVICE, TG_OK};
    for (int i = 0; i < 6; i++) {
        if (i >= 2)
            fake_read(&f, &m[i]);
        fake_reply(&f, m[i].id, st[i], 64, 1);
    }
    PUMP_UNTIL(done(&r[5]));
    for (int i = 0; i < 6; i++) {
        assert_true(done(&r[i]));
        assert_int_equal(tg_keyop_consume(&r[i].op), want[i]);
    }
    assert_int_equal(failures(TG_KSC_FAIL_BUSY), 1);
    assert_int_equal(failures(TG_KSC_FAIL_UNKNOWN_KEY), 1);
    assert_int_equal(failures(TG_KSC_FAIL_SHUTDOWN), 1);
    assert_int_equal(failures(TG_KSC_FAIL_SERVER_ERROR), 2);
    /* The core counted them as failures of a provider-held key. */
    struct tg_keyprov_stats *ks = tg_keyprov_current_stats(h.b);
    assert_int_equal(tg_ctr_get(&ks->unrecoverable[TG_FALLBACK_RING_FULL]), 1);
    assert_int_equal(tg_ctr_get(&ks->unrecoverable[TG_FALLBACK_DEVICE_ERROR]), 4);
    down(&h, &f);
}

static void test_timeout_and_late_reply(void **state)
{
    (void)state;
    struct conf c;
    struct held h;
    struct fake f;
    up(&c, &h, g_ec_pub, &f, 8, "30ms", NULL);
    struct req r;
    start(&r, &h, 0);
    struct tg_ksp_msg m;
    fake_read(&f, &m);
    PUMP_UNTIL(done(&r));
    assert_int_equal(tg_keyop_consume(&r.op), TG_ETIMEOUT);
    assert_int_equal(failures(TG_KSC_FAIL_TIMEOUT), 1);
    /* The answer after all: dropped, counted; the next request is fine. */
    fake_reply(&f, m.id, TG_KSP_ST_OK, 70, 1);
    PUMP_UNTIL(tg_ctr_get(&stats()[0].late_replies) == 1);
    start(&r, &h, 0);
    struct tg_ksp_msg m2;
    fake_read(&f, &m2);
    assert_int_not_equal(m2.id, m.id);
    fake_reply(&f, m2.id, TG_KSP_ST_OK, 70, 1);
    PUMP_UNTIL(done(&r));
    assert_int_equal(tg_keyop_consume(&r.op), TG_OK);
    down(&h, &f);
}

static void test_connection_lost(void **state)
{
    (void)state;
    struct conf c;
    struct held h;
    struct fake f;
    up(&c, &h, g_ec_pub, &f, 2, "20s", NULL);
    struct req r[3];
    for (int i = 0; i < 3; i++)
        start(&r[i], &h, 0);
    struct tg_ksp_msg m;
    fake_read(&f, &m);
    fake_read(&f, &m);
    PUMP_UNTIL(tg_ctr_get(&stats()[0].waiting) == 1);
    /* The key server goes away with two requests: they fail; the third
     * was never written: it waits and goes out on the next connection. */
    close(f.fd);
    f.fd = -1;
    PUMP_UNTIL(done(&r[0]) && done(&r[1]));
    assert_int_equal(tg_keyop_consume(&r[0].op), TG_EDEVICE);
    assert_int_equal(tg_keyop_consume(&r[1].op), TG_EDEVICE);
    assert_false(done(&r[2]));
    assert_int_equal(failures(TG_KSC_FAIL_CONNECTION_LOST), 2);
    assert_int_equal(tg_ctr_get(&stats()[0].disconnects[TG_KSC_DISC_PEER_CLOSED]), 1);
    fake_greet(&f, 2);
    fake_read(&f, &m);
    fake_reply(&f, m.id, TG_KSP_ST_OK, 70, 9);
    PUMP_UNTIL(done(&r[2]));
    assert_int_equal(tg_keyop_consume(&r[2].op), TG_OK);
    assert_int_equal(tg_ctr_get(&stats()[0].connects), 2);
    /* Garbage from the server: the connection goes, a new one comes. */
    start(&r[0], &h, 0);
    fake_read(&f, &m);
    assert_int_equal(send(f.fd, "\xff\xff\xff\xff", 4, MSG_NOSIGNAL), 4);
    PUMP_UNTIL(done(&r[0]));
    assert_int_equal(tg_keyop_consume(&r[0].op), TG_EDEVICE);
    assert_int_equal(tg_ctr_get(&stats()[0].disconnects[TG_KSC_DISC_PROTOCOL]), 1);
    fake_greet(&f, 2);
    /* An ERROR from the server: the connection is over. */
    struct tg_ksp_msg e = {.type = TG_KSP_ERROR, .status = TG_KSP_ST_LIMIT};
    fake_send(&f, &e);
    PUMP_UNTIL(tg_ctr_get(&stats()[0].disconnects[TG_KSC_DISC_REFUSED]) == 1);
    fake_greet(&f, 2);
    /* A goodbye (SHUTTING_DOWN, id 0) with two requests unanswered, and
     * the close: the key server did not read them, so they are sent again
     * on the next connection instead of failing. */
    start(&r[0], &h, 0);
    start(&r[1], &h, 0);
    fake_read(&f, &m);
    fake_read(&f, &m);
    e = (struct tg_ksp_msg){.type = TG_KSP_ERROR, .status = TG_KSP_ST_SHUTTING_DOWN};
    fake_send(&f, &e);
    close(f.fd);
    f.fd = -1;
    PUMP_UNTIL(tg_ctr_get(&stats()[0].disconnects[TG_KSC_DISC_GOODBYE]) == 1);
    assert_false(done(&r[0]) || done(&r[1]));
    assert_int_equal(tg_ctr_get(&stats()[0].resent), 2);
    fake_greet(&f, 2);
    struct tg_ksp_msg a, b;
    fake_read(&f, &a);
    fake_read(&f, &b);
    fake_reply(&f, a.id, TG_KSP_ST_OK, 70, 1);
    fake_reply(&f, b.id, TG_KSP_ST_OK, 70, 1);
    PUMP_UNTIL(done(&r[0]) && done(&r[1]));
    assert_int_equal(tg_keyop_consume(&r[0].op), TG_OK);
    assert_int_equal(tg_keyop_consume(&r[1].op), TG_OK);
    assert_int_equal(failures(TG_KSC_FAIL_CONNECTION_LOST), 3);
    down(&h, &f);
}

static void test_outage(void **state)
{
    (void)state;
    struct conf c;
    struct held h;
    struct fake f;
    up(&c, &h, g_ec_pub, &f, 4, "40ms", "3");
    /* The key server is gone for good. */
    fake_close(&f);
    PUMP_UNTIL(tg_ctr_get(&stats()[0].connected) == 0);
    /* A request waits for it, at most its timeout. */
    struct req r[4];
    start(&r[0], &h, 0);
    assert_false(done(&r[0]));
    PUMP_UNTIL(done(&r[0]));
    assert_int_equal(tg_keyop_consume(&r[0].op), TG_ETIMEOUT);
    /* Down for longer than a request would wait: fail at once. */
    start(&r[1], &h, 0);
    assert_true(done(&r[1]));
    assert_int_equal(tg_keyop_consume(&r[1].op), TG_EDEVICE);
    assert_int_equal(failures(TG_KSC_FAIL_UNAVAILABLE), 1);
    assert_true(tg_ctr_get(&stats()[0].disconnects[TG_KSC_DISC_CONNECT_FAILED]) >= 1);
    /* It comes back: the channel reconnects by itself and serves. */
    fake_listen(&f);
    fake_greet(&f, 4);
    PUMP_UNTIL(tg_ctr_get(&stats()[0].connected) == 1);
    start(&r[2], &h, 0);
    struct tg_ksp_msg m;
    fake_read(&f, &m);
    fake_reply(&f, m.id, TG_KSP_ST_OK, 70, 1);
    PUMP_UNTIL(done(&r[2]));
    assert_int_equal(tg_keyop_consume(&r[2].op), TG_OK);
    down(&h, &f);
}

static void test_queue_full_cancel_drain(void **state)
{
    (void)state;
    struct conf c;
    struct held h;
    struct fake f;
    up(&c, &h, g_ec_pub, &f, 1, "20s", "3");
    struct req r[4];
    for (int i = 0; i < 4; i++)
        start(&r[i], &h, 0);
    /* max_in_flight 3: the fourth fails at once. */
    assert_true(done(&r[3]));
    assert_int_equal(tg_keyop_consume(&r[3].op), TG_ELIMIT);
    assert_int_equal(failures(TG_KSC_FAIL_QUEUE_FULL), 1);
    /* One in flight (granted 1); of the two waiting, one is cancelled: it
     * completes without being sent. */
    struct tg_ksp_msg m;
    fake_read(&f, &m);
    struct tg_keyctx ctx = {.cancelled = true};
    r[1].op.ctx = &ctx;
    fake_reply(&f, m.id, TG_KSP_ST_OK, 70, 1);
    PUMP_UNTIL(done(&r[0]) && done(&r[1]));
    assert_int_equal(tg_keyop_consume(&r[1].op), TG_ECANCELED);
    fake_read(&f, &m); /* the third, not the cancelled second */
    assert_int_equal(tg_ctr_get(&stats()[0].requests), 2);
    /* Drain: what is left completes, cancelled. */
    assert_int_equal(tg_keyprov_set_pending(g_set), 1);
    tg_keyprov_set_drain(g_set);
    assert_true(done(&r[2]));
    assert_int_equal(tg_keyop_consume(&r[2].op), TG_ECANCELED);
    down(&h, &f);
}

int main(void)
{
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider, &tg_deferred_provider,
                               &tg_keyserver_provider);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_configure, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_startup_check, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_requests, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_granted_limit_and_statuses, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_timeout_and_late_reply, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_connection_lost, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_outage, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_queue_full_cancel_drain, each_setup, each_teardown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
