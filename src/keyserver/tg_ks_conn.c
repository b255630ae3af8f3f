/*
 * One gateway connection of the key server: the peer check at accept
 * (SO_PEERCRED against the allow-list), frames in (tg_ksproto), SIGN
 * requests handed to the key providers (tg_keyop_start), replies out.
 *
 * Bounds: at most TG_KS_IN_MAX bytes of input are buffered; reading stops
 * while the connection has max_in_flight requests in the providers or
 * TG_KS_OUT_HIGH bytes of replies unwritten (the client then fills its own
 * socket buffer: backpressure, never unbounded memory); a frame begun must
 * be complete within request_timeout; the whole server holds at most
 * max_queue requests (more are answered BUSY at once). Bad bytes close the
 * connection (after an ERROR frame saying why) and are counted.
 *
 * Lifetime: tg_ks_conn_close closes the socket at once; the struct stays
 * until the providers have completed its pending requests (a provider
 * completes every op it took, and the op lives in the request record).
 * Replies are written from the server's prepare (tg_ks_conn_flush), never
 * from inside a provider's completion, so a provider is never re-entered.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/tg_log.h"
#include "core/tg_time.h"
#include "keyserver/tg_ks_internal.h"

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

/* Stop reading while this many reply bytes wait to be written. */
#define TG_KS_OUT_HIGH ((size_t)64 << 10)
/* Supplementary groups of a peer looked at. */
#define TG_KS_MAX_GROUPS 256

static void tg_ks_conn_process(struct tg_ks_conn *c);

/* A problem a peer caused: logged at most once a second (a flood of bad
 * peers must not flood the log); always counted by the caller. */
static void tg_ks_peer_warn(struct tg_ks *ks, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void tg_ks_peer_warn(struct tg_ks *ks, const char *fmt, ...)
{
    uint64_t now = tg_now_ns();
    if (now - ks->last_refuse_log_ns < TG_NS_PER_S && ks->last_refuse_log_ns != 0)
        return;
    ks->last_refuse_log_ns = now;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    TG_WARN("%s", line);
}

/* ---- the peer check ---- */

static bool tg_ks_listed(const uint32_t *v, size_t n, uint32_t id)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i] == id)
            return true;
    }
    return false;
}

/* Whether the peer of fd may use the keys; its credentials into peer. */
static bool tg_ks_peer_allowed(const struct tg_conf_keyserver *conf, int fd, char *peer, size_t len,
                               enum tg_ks_refuse *why)
{
    struct ucred cred;
    socklen_t cl = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0 || cl != sizeof(cred)) {
        snprintf(peer, len, "unknown peer");
        *why = TG_KS_REFUSE_NO_CREDENTIALS;
        return false;
    }
    snprintf(peer, len, "pid %d uid %u gid %u", (int)cred.pid, (unsigned)cred.uid,
             (unsigned)cred.gid);
    *why = TG_KS_REFUSE_NOT_ALLOWED;
    if (conf->n_allowed_uids == 0 && conf->n_allowed_gids == 0)
        return cred.uid == geteuid(); /* no list: the key server's own user only */
    if (tg_ks_listed(conf->allowed_uids, conf->n_allowed_uids, cred.uid) ||
        tg_ks_listed(conf->allowed_gids, conf->n_allowed_gids, cred.gid))
        return true;
    if (conf->n_allowed_gids == 0)
        return false;
    /* The peer's supplementary groups (Linux 4.13+); without them only
     * its primary group counts. */
    gid_t groups[TG_KS_MAX_GROUPS];
    socklen_t gl = sizeof(groups);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &gl) != 0)
        return false;
    for (size_t i = 0; i < gl / sizeof(gid_t); i++) {
        if (tg_ks_listed(conf->allowed_gids, conf->n_allowed_gids, (uint32_t)groups[i]))
            return true;
    }
    return false;
}

/* An ERROR frame sent without waiting (a refused or failing peer). */
static void tg_ks_send_error_now(int fd, enum tg_ksp_status st, const char *text)
{
    struct tg_ksp_msg m;
    memset(&m, 0, sizeof(m));
    m.type = TG_KSP_ERROR;
    m.status = (uint8_t)st;
    snprintf(m.text, sizeof(m.text), "%s", text);
    uint8_t buf[TG_KSP_FRAME_MAX];
    size_t n = tg_ksp_encode(&m, buf, sizeof(buf));
    if (n > 0 && send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        TG_DEBUG("keyserver: cannot tell a refused peer why: %s", strerror(errno));
}

/* ---- reading ---- */

static bool tg_ks_conn_may_read(const struct tg_ks_conn *c)
{
    if (c->closed)
        return false;
    if (c->hello_done && c->pending >= c->max_in_flight)
        return false;
    return c->out_len - c->out_off < TG_KS_OUT_HIGH;
}

static void tg_ks_conn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_ks_conn *c = w->data;
    size_t room = sizeof(c->in) - c->in_len;
    if (room == 0)
        return; /* cannot happen: complete frames are always taken */
    ssize_t n = recv(c->fd, c->in + c->in_len, room, 0);
    if (n > 0) {
        tg_ctr_add(&c->ks->stats.bytes_in, (uint64_t)n);
        c->in_len += (size_t)n;
        tg_ks_conn_process(c);
        return;
    }
    if (n == 0) {
        tg_ks_conn_close(c, TG_KS_CLOSE_PEER);
        return;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return;
    TG_DEBUG("keyserver: %s: read: %s", c->peer, strerror(errno));
    tg_ks_conn_close(c, TG_KS_CLOSE_IO);
}

static void tg_ks_conn_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_ks_conn *c = t->data;
    tg_ks_peer_warn(c->ks,
                    "keyserver: %s: a frame was not completed within request_timeout: "
                    "closing",
                    c->peer);
    tg_ks_send_error_now(c->fd, TG_KSP_ST_PROTOCOL, "request timeout: incomplete frame");
    tg_ks_conn_close(c, TG_KS_CLOSE_TIMEOUT);
}

static void tg_ks_conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    tg_ks_conn_flush(w->data);
}

/* ---- replies ---- */

/* Queue m for writing (at the next prepare). Closes c when out of memory. */
static void tg_ks_conn_send(struct tg_ks_conn *c, const struct tg_ksp_msg *m)
{
    if (c->closed)
        return;
    if (c->out_cap - c->out_len < TG_KSP_FRAME_MAX) {
        if (c->out_off > 0) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        if (c->out_cap - c->out_len < TG_KSP_FRAME_MAX) {
            size_t cap = c->out_cap ? 2 * c->out_cap : 4 * TG_KSP_FRAME_MAX;
            uint8_t *p = realloc(c->out, cap);
            if (p == NULL) {
                TG_ERROR("keyserver: %s: out of memory for replies: closing", c->peer);
                tg_ks_conn_close(c, TG_KS_CLOSE_IO);
                return;
            }
            c->out = p;
            c->out_cap = cap;
        }
    }
    size_t n = tg_ksp_encode(m, c->out + c->out_len, c->out_cap - c->out_len);
    TG_ASSERT(n > 0); /* the server only builds valid messages */
    c->out_len += n;
    tg_ks_mark_dirty(c->ks, c);
}

/* A protocol violation: say why, close. */
static void tg_ks_conn_protocol_error(struct tg_ks_conn *c, const char *why)
{
    tg_ks_peer_warn(c->ks, "keyserver: %s%s%s: protocol error: %s: closing", c->peer,
                    c->name[0] ? ", " : "", c->name, why);
    /* The ERROR goes after the replies already queued, in one last write. */
    struct tg_ksp_msg m;
    memset(&m, 0, sizeof(m));
    m.type = TG_KSP_ERROR;
    m.status = TG_KSP_ST_PROTOCOL;
    snprintf(m.text, sizeof(m.text), "%s", why);
    tg_ks_conn_send(c, &m);
    if (!c->closed && c->out_len > c->out_off &&
        send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        TG_DEBUG("keyserver: %s: cannot send the error: %s", c->peer, strerror(errno));
    tg_ks_conn_close(c, TG_KS_CLOSE_PROTOCOL);
}

/* The reply to a SIGN. */
static void tg_ks_reply_sign(struct tg_ks_conn *c, uint32_t id, enum tg_ksp_status st,
                             const struct tg_keyop *op)
{
    struct tg_ksp_msg m;
    m.type = TG_KSP_SIGN_REPLY;
    m.version = 0;
    m.id = id;
    m.status = (uint8_t)st;
    m.text[0] = '\0';
    m.datalen = 0;
    if (st == TG_KSP_ST_OK) {
        memcpy(m.data, op->out, op->outlen);
        m.datalen = op->outlen;
    }
    tg_ctr_inc(&c->ks->stats.requests[TG_KS_REQ_SIGN][st]);
    tg_ks_conn_send(c, &m);
}

/* The status of a finished op (consumed here). */
static enum tg_ksp_status tg_ks_op_status(struct tg_keyop *op)
{
    int rc = tg_keyop_consume(op);
    if (rc == TG_OK && op->outlen >= 1 && op->outlen <= TG_KSP_SIG_MAX)
        return TG_KSP_ST_OK;
    return rc == TG_ELIMIT ? TG_KSP_ST_BUSY : TG_KSP_ST_FAILED;
}

/* The connection's share of ks->hint_sum: its hint while it has requests
 * pending. Call with delta -1 before a change of pending or hint, +1 after. */
static void tg_ks_conn_hint(struct tg_ks_conn *c, int delta)
{
    if (c->pending == 0)
        return;
    if (delta > 0)
        c->ks->hint_sum += c->hint;
    else
        c->ks->hint_sum -= c->hint;
}

/* Provider completion (the wait-up of tg_keyop_start), on the loop thread,
 * from inside the provider: only record the reply, write it at the next
 * prepare. */
static int tg_ks_req_wake(void *arg)
{
    struct tg_ks_req *r = arg;
    struct tg_ks_conn *c = r->conn;
    struct tg_ks *ks = c->ks;
    enum tg_ksp_status st = tg_ks_op_status(&r->op);
    tg_ks_conn_hint(c, -1);
    c->pending--;
    tg_ks_conn_hint(c, +1);
    ks->queued--;
    tg_ctr_sub(&ks->stats.queued, 1);
    tg_ks_update_handshaking(ks);
    if (!c->closed) {
        tg_hist_record(&ks->stats.latency_us, &tg_hist_latency_us,
                       (tg_now_ns() - r->t_recv_ns) / 1000);
        tg_ks_reply_sign(c, r->id, st, &r->op);
    } else {
        tg_ctr_inc(&ks->stats.requests[TG_KS_REQ_SIGN][st]);
    }
    tg_ks_req_put(ks, r);
    if (c->closed && c->pending == 0 && !c->dirty)
        tg_ks_conn_free(c);
    return 1;
}

/* ---- requests ---- */

static void tg_ks_conn_hello(struct tg_ks_conn *c, const struct tg_ksp_msg *in)
{
    const struct tg_conf_keyserver *conf = c->ks->conf;
    c->hello_done = true;
    c->max_in_flight =
        in->max_in_flight < conf->max_in_flight ? in->max_in_flight : (uint32_t)conf->max_in_flight;
    snprintf(c->name, sizeof(c->name), "%s", in->text);
    struct tg_ksp_msg m;
    memset(&m, 0, sizeof(m));
    m.type = TG_KSP_HELLO_REPLY;
    m.version = TG_KSP_VERSION; /* in->version >= 1: the lower of the two */
    m.status = TG_KSP_ST_OK;
    m.max_in_flight = c->max_in_flight;
    snprintf(m.text, sizeof(m.text), "tlsgate keyserver %s", TG_VERSION);
    TG_DEBUG("keyserver: %s (%s): hello, protocol %u, max_in_flight %u", c->peer, c->name,
             (unsigned)in->version, (unsigned)c->max_in_flight);
    tg_ks_conn_send(c, &m);
}

static void tg_ks_conn_lookup(struct tg_ks_conn *c, const struct tg_ksp_msg *in)
{
    const struct tg_ks_key *k = tg_ks_keys_find(c->ks->keys, in->key_id);
    struct tg_ksp_msg m;
    memset(&m, 0, sizeof(m));
    m.type = TG_KSP_LOOKUP_REPLY;
    m.id = in->id;
    m.status = k != NULL ? TG_KSP_ST_OK : TG_KSP_ST_UNKNOWN_KEY;
    if (k != NULL) {
        m.key_type = k->pkey->type == TG_PKEY_RSA ? TG_KSP_KEY_RSA : TG_KSP_KEY_EC;
        m.key_bits = (uint16_t)k->pkey->bits;
    } else {
        char hex[17];
        tg_ksp_key_id_hex(in->key_id, 8, hex);
        TG_DEBUG("keyserver: %s (%s): lookup of unknown key %s...", c->peer, c->name, hex);
    }
    tg_ctr_inc(&c->ks->stats.requests[TG_KS_REQ_LOOKUP][m.status]);
    tg_ks_conn_send(c, &m);
}

static void tg_ks_conn_sign(struct tg_ks_conn *c, const struct tg_ksp_msg *in)
{
    struct tg_ks *ks = c->ks;
    const struct tg_ks_key *k = tg_ks_keys_find(ks->keys, in->key_id);
    tg_ks_conn_hint(c, -1);
    c->hint = in->hint;
    tg_ks_conn_hint(c, +1);
    enum tg_ksp_status st = TG_KSP_ST_OK;
    if (k == NULL) {
        st = TG_KSP_ST_UNKNOWN_KEY;
    } else if ((in->alg == TG_KSP_ALG_ECDSA) != (k->pkey->type == TG_PKEY_EC)) {
        st = TG_KSP_ST_BAD_REQUEST;
    } else if (ks->stopping) {
        st = TG_KSP_ST_SHUTTING_DOWN;
    } else if (ks->queued >= ks->conf->max_queue) {
        st = TG_KSP_ST_BUSY;
    }
    if (st != TG_KSP_ST_OK) {
        tg_ks_update_handshaking(ks);
        tg_ks_reply_sign(c, in->id, st, NULL);
        return;
    }
    struct tg_ks_req *r = tg_ks_req_get(ks);
    if (r == NULL) {
        tg_ks_reply_sign(c, in->id, TG_KSP_ST_FAILED, NULL);
        return;
    }
    r->conn = c;
    r->id = in->id;
    r->t_recv_ns = tg_now_ns();
    struct tg_keyop *op = &r->op;
    tg_keyop_init(op, k->pkey->type == TG_PKEY_RSA ? TG_KEYOP_RSA_SIGN : TG_KEYOP_ECDSA_SIGN);
    op->pkey = k->pkey;
    op->binding = k->binding;
    op->md = in->md != TG_KSP_MD_NONE ? ks->keys->md[in->md] : NULL;
    op->rsa_padding = in->alg == TG_KSP_ALG_RSA_PSS ? TG_RSA_PAD_PSS : TG_RSA_PAD_PKCS1;
    op->pss_saltlen = in->saltlen;
    op->mgf1_md = in->mgf1 != TG_KSP_MD_NONE ? ks->keys->md[in->mgf1] : NULL;
    memcpy(op->in, in->data, in->datalen);
    op->inlen = in->datalen;
    /* Counted before submit: a provider may read it (handshaking). */
    tg_ks_conn_hint(c, -1);
    c->pending++;
    tg_ks_conn_hint(c, +1);
    ks->queued++;
    tg_ks_update_handshaking(ks);
    int rc = tg_keyop_start(op, tg_ks_req_wake, r);
    if (rc == TG_EPENDING) {
        tg_ctr_inc(&ks->stats.queued);
        return;
    }
    tg_ks_conn_hint(c, -1);
    c->pending--;
    tg_ks_conn_hint(c, +1);
    ks->queued--;
    tg_ks_update_handshaking(ks);
    st = rc == TG_OK ? tg_ks_op_status(op) : TG_KSP_ST_FAILED;
    if (rc != TG_OK)
        TG_ERROR("keyserver: key %s: cannot start a signature: %s", k->path, tg_strerror(rc));
    tg_hist_record(&ks->stats.latency_us, &tg_hist_latency_us, (tg_now_ns() - r->t_recv_ns) / 1000);
    tg_ks_reply_sign(c, in->id, st, op);
    tg_ks_req_put(ks, r);
}

/* One frame from the client. */
static void tg_ks_conn_frame(struct tg_ks_conn *c, const struct tg_ksp_frame *f)
{
    struct tg_ksp_msg m;
    const char *why = NULL;
    if (tg_ksp_decode(f, &m, &why) != TG_OK) {
        tg_ks_conn_protocol_error(c, why);
        return;
    }
    if (!c->hello_done) {
        if (m.type != TG_KSP_HELLO)
            tg_ks_conn_protocol_error(c, "expected hello first");
        else
            tg_ks_conn_hello(c, &m);
        return;
    }
    switch (m.type) {
    case TG_KSP_SIGN:
        tg_ks_conn_sign(c, &m);
        return;
    case TG_KSP_LOOKUP:
        tg_ks_conn_lookup(c, &m);
        return;
    case TG_KSP_HELLO:
        tg_ks_conn_protocol_error(c, "a second hello");
        return;
    default:
        tg_ks_conn_protocol_error(c, "a message only a key server sends");
        return;
    }
}

/* Take every complete frame the buffer holds, as far as the bounds allow. */
static void tg_ks_conn_process(struct tg_ks_conn *c)
{
    size_t off = 0;
    while (!c->closed) {
        if (!tg_ks_conn_may_read(c)) {
            if (!c->read_paused) {
                c->read_paused = true;
                ev_io_stop(c->ks->loop, &c->rio);
            }
            break;
        }
        struct tg_ksp_frame f;
        size_t used = 0;
        const char *why = NULL;
        int rc = tg_ksp_frame_parse(c->in + off, c->in_len - off, &f, &used, &why);
        if (rc == TG_EAGAIN)
            break;
        if (rc != TG_OK) {
            tg_ks_conn_protocol_error(c, why);
            return;
        }
        tg_ks_conn_frame(c, &f);
        off += used;
    }
    if (c->closed)
        return;
    if (off > 0) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    /* The timer runs while a frame has begun and we are waiting for the
     * peer to finish it (not while we hold frames back ourselves); each
     * frame has request_timeout from when it began (a frame completed
     * here means what is left began now). */
    bool partial = c->in_len > 0 && !c->read_paused;
    if (partial && (off > 0 || !ev_is_active(&c->frame_timer))) {
        ev_timer_stop(c->ks->loop, &c->frame_timer);
        ev_timer_set(&c->frame_timer, tg_ns_to_s(c->ks->conf->request_timeout_ns), 0.0);
        ev_timer_start(c->ks->loop, &c->frame_timer);
    } else if (!partial) {
        ev_timer_stop(c->ks->loop, &c->frame_timer);
    }
}

/* ---- writing, closing ---- */

void tg_ks_conn_flush(struct tg_ks_conn *c)
{
    struct tg_ks *ks = c->ks;
    while (!c->closed && c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            tg_ctr_add(&ks->stats.bytes_out, (uint64_t)n);
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(ks->loop, &c->wio);
            return;
        }
        TG_DEBUG("keyserver: %s: write: %s", c->peer, n < 0 ? strerror(errno) : "nothing written");
        tg_ks_conn_close(c,
                         errno == EPIPE || errno == ECONNRESET ? TG_KS_CLOSE_PEER : TG_KS_CLOSE_IO);
        return;
    }
    if (c->closed)
        return;
    c->out_off = c->out_len = 0;
    ev_io_stop(ks->loop, &c->wio);
    if (c->read_paused && !ks->stopping && tg_ks_conn_may_read(c)) {
        c->read_paused = false;
        ev_io_start(ks->loop, &c->rio);
        tg_ks_conn_process(c); /* what was held back */
    }
}

void tg_ks_conn_goodbye(struct tg_ks_conn *c)
{
    if (c->closed)
        return;
    ev_io_stop(c->ks->loop, &c->rio);
    ev_timer_stop(c->ks->loop, &c->frame_timer);
    c->read_paused = true;
    struct tg_ksp_msg m;
    memset(&m, 0, sizeof(m));
    m.type = TG_KSP_ERROR;
    m.status = TG_KSP_ST_SHUTTING_DOWN;
    snprintf(m.text, sizeof(m.text), "shutting down: requests not answered were not read");
    tg_ks_conn_send(c, &m);
}

void tg_ks_conn_flush_wait(struct tg_ks_conn *c, uint64_t deadline_ns)
{
    for (;;) {
        tg_ks_conn_flush(c);
        if (c->closed || c->out_off >= c->out_len)
            return;
        uint64_t now = tg_now_ns();
        if (now >= deadline_ns)
            return;
        struct pollfd p = {c->fd, POLLOUT, 0};
        if (poll(&p, 1, (int)((deadline_ns - now) / TG_NS_PER_MS) + 1) <= 0)
            return;
    }
}

void tg_ks_conn_free(struct tg_ks_conn *c)
{
    free(c->out);
    free(c);
}

void tg_ks_conn_close(struct tg_ks_conn *c, enum tg_ks_close why)
{
    if (c->closed)
        return;
    struct tg_ks *ks = c->ks;
    tg_ctr_inc(&ks->stats.closed[why]);
    tg_ctr_sub(&ks->stats.active, 1);
    TG_DEBUG("keyserver: %s%s%s: closed (%d pending)", c->peer, c->name[0] ? ", " : "", c->name,
             (int)c->pending);
    tg_ks_conn_hint(c, -1);
    c->closed = true;
    c->hint = 0;
    tg_ks_update_handshaking(ks);
    ev_io_stop(ks->loop, &c->rio);
    ev_io_stop(ks->loop, &c->wio);
    ev_timer_stop(ks->loop, &c->frame_timer);
    close(c->fd);
    c->fd = -1;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        ks->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    ks->n_conns--;
    /* On the list to write, or with requests in a provider: freed later. */
    if (c->pending == 0 && !c->dirty)
        tg_ks_conn_free(c);
}

void tg_ks_conn_accept(struct tg_ks *ks, int fd)
{
    char peer[80];
    enum tg_ks_refuse why = TG_KS_REFUSE_NOT_ALLOWED;
    if (!tg_ks_peer_allowed(ks->conf, fd, peer, sizeof(peer), &why)) {
        tg_ctr_inc(&ks->stats.refused[why]);
        tg_ks_peer_warn(ks,
                        "keyserver: refused a connection from %s: %s (keyserver.allowed_uids, "
                        "allowed_gids)",
                        peer,
                        why == TG_KS_REFUSE_NO_CREDENTIALS ? "no peer credentials" : "not allowed");
        char text[TG_KSP_TEXT_MAX + 1 + 80];
        snprintf(text, sizeof(text), "%s not allowed", peer);
        text[TG_KSP_TEXT_MAX] = '\0';
        tg_ks_send_error_now(fd, TG_KSP_ST_NOT_ALLOWED, text);
        close(fd);
        return;
    }
    if (ks->n_conns >= ks->conf->max_connections || ks->stopping) {
        tg_ctr_inc(&ks->stats.refused[TG_KS_REFUSE_LIMIT]);
        tg_ks_peer_warn(ks, "keyserver: refused a connection from %s: max_connections (%u) reached",
                        peer, (unsigned)ks->conf->max_connections);
        tg_ks_send_error_now(fd, ks->stopping ? TG_KSP_ST_SHUTTING_DOWN : TG_KSP_ST_LIMIT,
                             ks->stopping ? "shutting down" : "max_connections reached");
        close(fd);
        return;
    }
    struct tg_ks_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        tg_ctr_inc(&ks->stats.refused[TG_KS_REFUSE_NO_MEMORY]);
        close(fd);
        return;
    }
    c->ks = ks;
    c->fd = fd;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    ev_io_init(&c->rio, tg_ks_conn_read_cb, fd, EV_READ);
    c->rio.data = c;
    ev_io_init(&c->wio, tg_ks_conn_write_cb, fd, EV_WRITE);
    c->wio.data = c;
    ev_timer_init(&c->frame_timer, tg_ks_conn_timer_cb, 0.0, 0.0);
    c->frame_timer.data = c;
    c->next = ks->conns;
    if (ks->conns != NULL)
        ks->conns->prev = c;
    ks->conns = c;
    ks->n_conns++;
    tg_ctr_inc(&ks->stats.accepted);
    tg_ctr_inc(&ks->stats.active);
    TG_DEBUG("keyserver: connection from %s", peer);
    ev_io_start(ks->loop, &c->rio);
}
