/*
 * The fixture the connection state machine's tests share (test_conn.c,
 * test_conn_relay.c): a real worker (src/proxy/tg_worker.c) whose loop runs
 * on the test's own thread: no gateway, no other thread. Real sockets on
 * 127.0.0.1: the worker's listening socket, an upstream the test plays, and
 * a libssl client on a non-blocking socket that the test steps between loop
 * turns.
 *
 * The certificate's key is served by the `deferred` provider. With a `delay`
 * of an hour its operations complete only when the test drains the worker's
 * provider set, so a connection stays in KEYOP_WAIT for as long as the test
 * wants; without a delay they complete when the loop is about to block, as
 * a real provider's would.
 *
 * Nothing waits for time to pass: every wait turns the loop until a
 * condition holds, at most TC_MAX_TURNS turns, each turn at most one
 * heartbeat (1 ms) long. A timeout under test is 1 ms; the others are an
 * hour, so a slow machine cannot make them fire.
 *
 * A test program registers the software and deferred providers, runs its
 * group with setup/teardown and each case with tc_teardown.
 */
#ifndef TG_TEST_CONN_H
#define TG_TEST_CONN_H

#include <ev.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/tg_stats.h"
#include "proxy/tg_conn.h"
#include "proxy/tg_gen.h"
#include "proxy/tg_srclimit.h"
#include "proxy/tg_worker.h"
#include "tg_test_util.h"

#define TC_MAX_TURNS 20000
#define HOUR         "1h"

/* ---- fixture: one worker, one listener, one upstream ---- */

enum upstream_kind {
    UP_LISTEN, /* a listening socket the test accepts from */
    UP_REFUSE, /* bound, not listening: connect is refused */
    UP_FULL,   /* listening with a full accept queue: a SYN goes unanswered */
};

struct opts {
    const char *delay; /* deferred provider delay; NULL: none */
    const char *handshake_timeout;
    const char *idle_timeout;
    const char *connect_timeout;
    uint64_t max_active;
    enum upstream_kind upstream;
    /* The whole upstream mapping instead of { address: <the upstream> }
     * (PORT, once: the upstream's port). */
    const char *upstream_yaml;
    const char *first_byte_timeout; /* NULL: an hour */
    uint64_t per_source;            /* limits.max_connections_per_source */
};

extern const struct opts default_opts;

struct tc_fixture {
    struct tg_gen *gen; /* the generation the worker starts with */
    struct tg_worker w;
    bool started;
    int exited;        /* tg_worker_host.exited calls */
    uint64_t switched; /* generation of the last tg_worker_host.switched call */
    _Atomic uint64_t active;
    struct tg_srclimit *sources;
    ev_timer heartbeat;
    struct sockaddr_storage addr; /* the worker's listener */
    socklen_t addrlen;
    int up_lfd;  /* upstream socket (see upstream_kind) */
    int up_fill; /* UP_FULL: the connection that fills the accept queue */
    int up_fd;   /* upstream end of the proxied connection, once accepted */
};
extern struct tc_fixture T;

extern SSL_CTX *client_ctx;

uint64_t st(enum tg_core_stat id);
/* One loop turn: whatever is ready, or at most one heartbeat of waiting. */
void turn(void);

/* Turn the loop until cond holds (cond may step the client or upstream). */
#define RUN_UNTIL(cond)                                                                            \
    do {                                                                                           \
        bool ok_ = false;                                                                          \
        for (int i_ = 0; i_ < TC_MAX_TURNS; i_++) {                                                \
            if ((ok_ = (cond)))                                                                    \
                break;                                                                             \
            turn();                                                                                \
        }                                                                                          \
        if (!ok_)                                                                                  \
            fail_msg("line %d: gave up waiting for %s", __LINE__, #cond);                          \
    } while (0)

/* A socket for the upstream the test plays (UP_LISTEN, UP_REFUSE; UP_FULL
 * listens with a backlog of 0) on 127.0.0.1, its port in *port. */
int upstream_socket(enum upstream_kind kind, int *port);
/* Start the worker with o's configuration. */
void tc_start(const struct opts *o);
/* End of a case: nothing may be left open, and the host hears the exit. */
void tc_finish(void);
/* Every case's teardown: whatever the case left is released. */
int tc_teardown(void **state);
/* Exactly n connections closed, all for reason `want`. */
void assert_closed_by(enum tg_core_stat want, uint64_t n);

/* ---- the client: libssl on a non-blocking socket, stepped by the test ---- */

struct client {
    int fd;
    SSL *ssl;
    char in[1024];
    size_t inlen;
    bool closed; /* close_notify received */
    bool failed; /* EOF without close_notify, reset, or a TLS error */
};

/* TCP connection only (it completes in the listener's queue, before the
 * worker accepts); no TLS byte sent yet. From 127.0.0.1, or from `from`. */
void client_connect_from(struct client *c, const char *from);
void client_connect(struct client *c);
void client_free(struct client *c);
/* One handshake step: 1 done, 0 in progress, -1 failed. */
int client_handshake(struct client *c);
/* Read whatever has arrived; returns true once the stream ended. */
bool client_read(struct client *c);
bool client_got(struct client *c, const char *s);
void client_write(struct client *c, const char *s);
/* A TCP-level end seen on the raw socket (before any TLS): EOF or reset. */
bool client_socket_ended(struct client *c);
/* Close with a reset, as a client that vanishes does. */
void client_abort(struct client *c);
/* The kernel acknowledged every byte the client sent: they wait in the
 * server socket, accepted or not. */
void client_wait_delivered(struct client *c);

/* ---- the upstream the test plays ---- */

struct sink {
    char data[1024];
    size_t len;
    bool eof;
    bool reset;
};

bool upstream_accept(void);
bool upstream_got(struct sink *s, const char *want);
bool upstream_ended(struct sink *s);
void upstream_send(const char *s);

/* Handshake through to PROXYING with the upstream connection accepted. */
void handshake_to_proxying(struct client *c);

/* ---- group ---- */

int setup(void **state);
int teardown(void **state);

#endif
