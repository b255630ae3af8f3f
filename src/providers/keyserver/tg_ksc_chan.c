/*
 * The keyserver provider on a worker: one channel (a connection and its
 * requests) per key server socket, on the worker's loop, non-blocking.
 *
 *   submit   the op gets a slot (its request id) and waits on the channel's
 *            list; nothing is written inside libssl's ASYNC job
 *   flush    (the loop is about to block) every waiting request is encoded
 *            and the lot written in one send, up to what the key server
 *            granted in flight; more wait for replies to free room
 *   replies  read when the socket is readable, matched by id, completed
 *            with tg_keyop_complete on this thread
 *
 * A channel is DOWN (waiting for its back-off timer), HELLO (connected,
 * hello sent) or READY. It connects at worker start and again after any
 * loss, with a back-off from 10 ms doubling to 500 ms (with jitter), reset
 * by a successful hello. While it is not ready, requests wait — each at most
 * its `timeout` — and are sent once it is; when the key server has been
 * unreachable for longer than a request's timeout, new requests fail at
 * once (fail fast: waiting could not help them). Requests written to a
 * connection that is lost fail (they are not resent: a request that killed
 * the key server must not kill the next one); requests not yet written wait
 * for the next connection. Every failure is counted by reason
 * (tlsgate_keyserver_client_failures_total).
 *
 * Bounds: at most max_in_flight requests per channel (sent and waiting);
 * more fail at once (queue_full). The output buffer holds one frame per
 * slot, so it never grows.
 *
 * Threading: the worker's thread; the stats registry (read by the admin
 * thread) has a lock, the counters are tg_ctr.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/tg_log.h"
#include "core/tg_time.h"
#include "providers/keyserver/tg_ksc.h"
#include "providers/keyserver/tg_ksc_internal.h"

#define TG_KSC_BACKOFF_MIN (10 * TG_NS_PER_MS)
#define TG_KSC_BACKOFF_MAX (500 * TG_NS_PER_MS)
/* The largest frame a client writes: a SIGN with a SHA-512 digest. */
#define TG_KSC_SIGN_FRAME  (TG_KSP_HDR_LEN + 40 + TG_KSP_DIGEST)
#define TG_KSC_HELLO_FRAME (TG_KSP_HDR_LEN + 5 + TG_KSP_TEXT_MAX)

enum tg_ksc_state { TG_KSC_DOWN, TG_KSC_HELLO, TG_KSC_READY };

struct tg_ksc_slot {
    struct tg_keyop *op; /* NULL: free */
    uint32_t id;         /* generation << 16 | index: a late reply never matches a new op */
    bool sent;
    uint64_t deadline_ns;
    uint64_t t_sent_ns;
    uint64_t out_start; /* where its frame starts in the output stream */
    struct tg_ksc_slot *prev, *next;
};

struct tg_ksc_list {
    struct tg_ksc_slot *head, *tail;
    size_t n;
};

struct tg_ksc_worker;

struct tg_ksc_chan {
    struct tg_ksc_worker *w;
    int sock; /* index of the process's socket */
    const char *name;
    enum tg_ksc_state state;
    int fd;
    ev_io rio, wio;
    ev_timer retry;    /* DOWN: the next connect */
    ev_timer deadline; /* the earliest deadline of a request */
    uint64_t deadline_at;
    uint64_t backoff_ns;
    uint64_t down_since_ns; /* 0: not down */
    bool ever_ready;
    bool goodbye;     /* the key server said it answered every request it read */
    bool in_down;     /* tg_ksc_down is reading what the key server left */
    uint32_t cap;     /* slots */
    uint32_t granted; /* in flight the key server allows */
    struct tg_ksc_slot *slots;
    uint32_t *free_idx;
    uint32_t n_free;
    struct tg_ksc_list waiting, sent;
    uint8_t in[4 * TG_KSP_FRAME_MAX];
    size_t in_len;
    uint8_t *out;
    size_t out_len, out_off, out_cap;
    uint64_t out_total;   /* bytes ever appended to out */
    uint64_t out_written; /* bytes ever written */
    uint64_t last_warn_ns;
    struct tg_ksc_stats stats;
};

struct tg_ksc_worker {
    struct ev_loop *loop;
    int id;
    const size_t *handshaking;
    uint32_t rng;
    /* One channel per socket, made at worker start for the sockets known
     * then, and on first use for those a reload names later. Written on
     * the worker's thread under the registry lock (the admin thread reads
     * the stats through them). */
    size_t n; /* chans[0..n) may be set */
    struct tg_ksc_chan *chans[TG_KSC_MAX_SOCKETS];
    struct tg_ksc_worker *next; /* the stats registry */
};

/* ---- the stats registry ---- */

static pthread_mutex_t tg_ksc_reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tg_ksc_worker *tg_ksc_reg;
static struct tg_ksc_stats tg_ksc_retired[TG_KSC_MAX_SOCKETS];

void tg_ksc_stats_merge(struct tg_ksc_stats *dst, const struct tg_ksc_stats *src)
{
    tg_ctr_add(&dst->connects, tg_ctr_get(&src->connects));
    for (int i = 0; i < TG_KSC_DISC_COUNT; i++)
        tg_ctr_add(&dst->disconnects[i], tg_ctr_get(&src->disconnects[i]));
    tg_ctr_add(&dst->requests, tg_ctr_get(&src->requests));
    for (int i = 0; i < TG_KSC_FAIL_COUNT; i++)
        tg_ctr_add(&dst->failures[i], tg_ctr_get(&src->failures[i]));
    tg_ctr_add(&dst->late_replies, tg_ctr_get(&src->late_replies));
    tg_ctr_add(&dst->resent, tg_ctr_get(&src->resent));
    tg_ctr_add(&dst->connected, tg_ctr_get(&src->connected));
    tg_ctr_add(&dst->in_flight, tg_ctr_get(&src->in_flight));
    tg_ctr_add(&dst->waiting, tg_ctr_get(&src->waiting));
    tg_hist_merge(&dst->rtt_us, &src->rtt_us);
}

void tg_ksc_stats_forget(void)
{
    pthread_mutex_lock(&tg_ksc_reg_lock);
    memset(tg_ksc_retired, 0, sizeof(tg_ksc_retired));
    pthread_mutex_unlock(&tg_ksc_reg_lock);
}

void tg_ksc_stats_collect(struct tg_ksc_stats *out, size_t n)
{
    pthread_mutex_lock(&tg_ksc_reg_lock);
    for (size_t s = 0; s < n && s < TG_KSC_MAX_SOCKETS; s++)
        tg_ksc_stats_merge(&out[s], &tg_ksc_retired[s]);
    for (struct tg_ksc_worker *w = tg_ksc_reg; w != NULL; w = w->next) {
        for (size_t s = 0; s < w->n && s < n; s++) {
            if (w->chans[s] != NULL)
                tg_ksc_stats_merge(&out[s], &w->chans[s]->stats);
        }
    }
    pthread_mutex_unlock(&tg_ksc_reg_lock);
}

/* ---- slots and lists ---- */

static void tg_ksc_list_add(struct tg_ksc_list *l, struct tg_ksc_slot *s)
{
    s->next = NULL;
    s->prev = l->tail;
    if (l->tail != NULL)
        l->tail->next = s;
    else
        l->head = s;
    l->tail = s;
    l->n++;
}

static void tg_ksc_list_del(struct tg_ksc_list *l, struct tg_ksc_slot *s)
{
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        l->head = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    else
        l->tail = s->prev;
    s->prev = s->next = NULL;
    l->n--;
}

static void tg_ksc_gauges(struct tg_ksc_chan *ch)
{
    atomic_store_explicit(&ch->stats.in_flight, ch->sent.n, memory_order_relaxed);
    atomic_store_explicit(&ch->stats.waiting, ch->waiting.n, memory_order_relaxed);
}

static struct tg_ksc_slot *tg_ksc_slot_get(struct tg_ksc_chan *ch)
{
    if (ch->n_free == 0)
        return NULL;
    uint32_t idx = ch->free_idx[--ch->n_free];
    struct tg_ksc_slot *s = &ch->slots[idx];
    uint32_t gen = (s->id >> 16) + 1;
    if (gen > 0xffff)
        gen = 1;
    s->id = gen << 16 | idx;
    s->sent = false;
    return s;
}

/* Take the slot off its list and free it; returns its op. */
static struct tg_keyop *tg_ksc_slot_put(struct tg_ksc_chan *ch, struct tg_ksc_slot *s)
{
    struct tg_keyop *op = s->op;
    tg_ksc_list_del(s->sent ? &ch->sent : &ch->waiting, s);
    s->op = NULL;
    s->sent = false;
    ch->free_idx[ch->n_free++] = (uint32_t)(s - ch->slots);
    tg_ksc_gauges(ch);
    return op;
}

/* Finish a request without a signature: counted, then the op fails (its
 * key has no software copy) with `result`. */
static void tg_ksc_fail(struct tg_ksc_chan *ch, struct tg_ksc_slot *s, enum tg_ksc_failure why,
                        int result, enum tg_fallback_reason reason)
{
    struct tg_keyop *op = tg_ksc_slot_put(ch, s);
    tg_ctr_inc(&ch->stats.failures[why]);
    tg_keyop_complete(op, result, reason);
}

/* A warning about the key server, at most once a second per channel. */
static void tg_ksc_warn(struct tg_ksc_chan *ch, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void tg_ksc_warn(struct tg_ksc_chan *ch, const char *fmt, ...)
{
    uint64_t now = tg_now_ns();
    if (ch->last_warn_ns != 0 && now - ch->last_warn_ns < TG_NS_PER_S)
        return;
    ch->last_warn_ns = now;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    TG_WARN("keyserver %s: %s", ch->name, line);
}

/* ---- timers ---- */

static void tg_ksc_arm_deadline(struct tg_ksc_chan *ch, uint64_t at)
{
    ev_timer_stop(ch->w->loop, &ch->deadline);
    ch->deadline_at = at;
    if (at == UINT64_MAX)
        return;
    uint64_t now = tg_now_ns();
    ev_timer_set(&ch->deadline, at > now ? tg_ns_to_s(at - now) : 0.0, 0.0);
    ev_timer_start(ch->w->loop, &ch->deadline);
}

/* Fail every request of list l whose deadline is past; the earliest left. */
static uint64_t tg_ksc_expire_list(struct tg_ksc_chan *ch, struct tg_ksc_list *l, uint64_t now)
{
    uint64_t next = UINT64_MAX;
    struct tg_ksc_slot *s = l->head;
    while (s != NULL) {
        struct tg_ksc_slot *n = s->next;
        if (s->deadline_ns <= now)
            tg_ksc_fail(ch, s, TG_KSC_FAIL_TIMEOUT, TG_ETIMEOUT, TG_FALLBACK_TIMEOUT);
        else if (s->deadline_ns < next)
            next = s->deadline_ns;
        s = n;
    }
    return next;
}

static void tg_ksc_deadline_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_ksc_chan *ch = t->data;
    uint64_t now = tg_now_ns();
    uint64_t a = tg_ksc_expire_list(ch, &ch->waiting, now);
    uint64_t b = tg_ksc_expire_list(ch, &ch->sent, now);
    tg_ksc_arm_deadline(ch, a < b ? a : b);
}

/* ---- the connection ---- */

int tg_ksc_connect(const char *name, bool nonblock)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0)
        return -1;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    size_t len = strlen(name);
    if (len > sizeof(sa.sun_path) - 1) {
        close(fd);
        errno = ENAMETOOLONG;
        return -1;
    }
    socklen_t sl;
    if (name[0] == '@') {
        memcpy(sa.sun_path + 1, name + 1, len - 1);
        sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    } else {
        memcpy(sa.sun_path, name, len);
        sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    }
    if (connect(fd, (struct sockaddr *)&sa, sl) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static void tg_ksc_connect_now(struct tg_ksc_chan *ch);

static void tg_ksc_retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    tg_ksc_connect_now(t->data);
}

/* The connection is gone (or never came): fail what the key server had,
 * keep what it never saw, and try again after the back-off. */
static bool tg_ksc_take_frames(struct tg_ksc_chan *ch);

static void tg_ksc_down(struct tg_ksc_chan *ch, enum tg_ksc_disconnect why, const char *detail)
{
    struct ev_loop *loop = ch->w->loop;
    if (ch->fd >= 0 && !ch->in_down) {
        /* What the key server wrote before it went (answers, its goodbye)
         * is still there to read: a closing Unix socket delivers its data
         * before the end or the error. */
        ch->in_down = true;
        for (;;) {
            ssize_t n = recv(ch->fd, ch->in + ch->in_len, sizeof(ch->in) - ch->in_len, 0);
            if (n <= 0)
                break;
            ch->in_len += (size_t)n;
            if (!tg_ksc_take_frames(ch)) {
                ch->in_down = false;
                return; /* it went down in there (a goodbye, garbage) */
            }
        }
        ch->in_down = false;
    }
    bool was_ready = ch->state == TG_KSC_READY;
    if (ch->fd >= 0) {
        ev_io_stop(loop, &ch->rio);
        ev_io_stop(loop, &ch->wio);
        close(ch->fd);
        ch->fd = -1;
    }
    tg_ctr_inc(&ch->stats.disconnects[why]);
    atomic_store_explicit(&ch->stats.connected, 0, memory_order_relaxed);
    /* Requests whose frame was written (even in part) may be in the key
     * server: they fail. The others go back to wait for the next one. */
    size_t lost = 0;
    struct tg_ksc_slot *s = ch->sent.head;
    while (s != NULL) {
        struct tg_ksc_slot *n = s->next;
        if (ch->goodbye && s->out_start < ch->out_written)
            tg_ctr_inc(&ch->stats.resent); /* never read: safe to send again */
        if (!ch->goodbye && s->out_start < ch->out_written) {
            tg_ksc_fail(ch, s, TG_KSC_FAIL_CONNECTION_LOST, TG_EDEVICE, TG_FALLBACK_DEVICE_ERROR);
            lost++;
        } else {
            tg_ksc_list_del(&ch->sent, s);
            s->sent = false;
            tg_ksc_list_add(&ch->waiting, s);
        }
        s = n;
    }
    tg_ksc_gauges(ch);
    ch->goodbye = false;
    ch->out_len = ch->out_off = 0;
    ch->out_total = ch->out_written = 0;
    ch->in_len = 0;
    ch->state = TG_KSC_DOWN;
    uint64_t now = tg_now_ns();
    if (ch->down_since_ns == 0)
        ch->down_since_ns = now;
    if (was_ready)
        tg_ksc_warn(ch,
                    "connection lost (%s%s%s): %zu request(s) in flight failed, %zu wait; "
                    "reconnecting",
                    why == TG_KSC_DISC_PEER_CLOSED ? "closed by the key server"
                    : why == TG_KSC_DISC_PROTOCOL  ? "protocol error"
                    : why == TG_KSC_DISC_REFUSED   ? "refused"
                    : why == TG_KSC_DISC_GOODBYE   ? "the key server shut down"
                                                   : "i/o error",
                    detail ? ": " : "", detail ? detail : "", lost, ch->waiting.n);
    else if (detail != NULL)
        tg_ksc_warn(ch, "cannot connect: %s; retrying", detail);
    /* Back-off with +-25% jitter, so workers and gateways do not knock in
     * step. */
    ch->backoff_ns = ch->backoff_ns == 0 ? TG_KSC_BACKOFF_MIN : 2 * ch->backoff_ns;
    if (ch->backoff_ns > TG_KSC_BACKOFF_MAX)
        ch->backoff_ns = TG_KSC_BACKOFF_MAX;
    struct tg_ksc_worker *w = ch->w;
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 17;
    w->rng ^= w->rng << 5;
    uint64_t wait = ch->backoff_ns * 3 / 4 + (w->rng % (ch->backoff_ns / 2 + 1));
    ev_timer_stop(loop, &ch->retry);
    ev_timer_set(&ch->retry, tg_ns_to_s(wait), 0.0);
    ev_timer_start(loop, &ch->retry);
}

/* Write what the output buffer holds, as far as the socket takes it. */
static void tg_ksc_write(struct tg_ksc_chan *ch)
{
    while (ch->out_off < ch->out_len) {
        ssize_t n = send(ch->fd, ch->out + ch->out_off, ch->out_len - ch->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            ch->out_off += (size_t)n;
            ch->out_written += (uint64_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(ch->w->loop, &ch->wio);
            return;
        }
        tg_ksc_down(
            ch, errno == EPIPE || errno == ECONNRESET ? TG_KSC_DISC_PEER_CLOSED : TG_KSC_DISC_IO,
            n < 0 ? strerror(errno) : "nothing written");
        return;
    }
    ch->out_off = ch->out_len = 0;
    ev_io_stop(ch->w->loop, &ch->wio);
}

static void tg_ksc_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    tg_ksc_write(w->data);
}

/* Append one frame to the output buffer (room is reserved per slot). */
static void tg_ksc_append(struct tg_ksc_chan *ch, const struct tg_ksp_msg *m)
{
    size_t n = tg_ksp_encode(m, ch->out + ch->out_len, ch->out_cap - ch->out_len);
    TG_ASSERT(n > 0);
    ch->out_len += n;
    ch->out_total += n;
}

/* Encode every waiting request the key server has room for; complete the
 * cancelled ones instead (their connection is closing). */
static void tg_ksc_send_waiting(struct tg_ksc_chan *ch)
{
    if (ch->state != TG_KSC_READY || ch->waiting.head == NULL)
        return;
    struct tg_ksp_msg m;
    m.type = TG_KSP_SIGN;
    m.version = 0;
    m.text[0] = '\0';
    size_t busy = *ch->w->handshaking;
    m.hint = (uint16_t)(busy > 0xffff ? 0xffff : busy);
    uint64_t now = tg_now_ns();
    while (ch->waiting.head != NULL && ch->sent.n < ch->granted) {
        struct tg_ksc_slot *s = ch->waiting.head;
        struct tg_keyop *op = s->op;
        if (op->ctx != NULL && op->ctx->cancelled) {
            tg_ksc_slot_put(ch, s);
            tg_keyop_complete(op, TG_ECANCELED, TG_FALLBACK_DEVICE_ERROR);
            continue;
        }
        const struct tg_ksc_key *k = op->pkey->prov_key;
        m.id = s->id;
        memcpy(m.key_id, k->id, TG_KSP_KEY_ID);
        if (op->type == TG_KEYOP_ECDSA_SIGN) {
            m.alg = TG_KSP_ALG_ECDSA;
            m.md = TG_KSP_MD_NONE;
            m.mgf1 = TG_KSP_MD_NONE;
            m.saltlen = 0;
        } else {
            m.alg = op->rsa_padding == TG_RSA_PAD_PSS ? TG_KSP_ALG_RSA_PSS : TG_KSP_ALG_RSA_PKCS1;
            m.md = (uint8_t)tg_ksp_md_code(op->md);
            m.mgf1 = m.alg == TG_KSP_ALG_RSA_PSS
                         ? (uint8_t)tg_ksp_md_code(op->mgf1_md ? op->mgf1_md : op->md)
                         : TG_KSP_MD_NONE;
            m.saltlen = m.alg == TG_KSP_ALG_RSA_PSS ? (uint16_t)op->pss_saltlen : 0;
        }
        m.datalen = op->inlen;
        memcpy(m.data, op->in, op->inlen);
        tg_ksc_list_del(&ch->waiting, s);
        s->out_start = ch->out_total;
        tg_ksc_append(ch, &m);
        s->sent = true;
        s->t_sent_ns = now;
        tg_ksc_list_add(&ch->sent, s);
        tg_ctr_inc(&ch->stats.requests);
    }
    tg_ksc_gauges(ch);
}

static void tg_ksc_hello_reply(struct tg_ksc_chan *ch, const struct tg_ksp_msg *m)
{
    if (m->status != TG_KSP_ST_OK) {
        tg_ksc_warn(ch, "the key server refused the hello: %s", tg_ksp_status_name(m->status));
        tg_ksc_down(ch, TG_KSC_DISC_REFUSED, tg_ksp_status_name(m->status));
        return;
    }
    ch->granted = m->max_in_flight < ch->cap ? m->max_in_flight : ch->cap;
    ch->state = TG_KSC_READY;
    tg_ctr_inc(&ch->stats.connects);
    atomic_store_explicit(&ch->stats.connected, 1, memory_order_relaxed);
    uint64_t now = tg_now_ns();
    if (!ch->ever_ready)
        TG_INFO("keyserver %s: worker %d connected (%s, %u in flight)", ch->name, ch->w->id,
                m->text, (unsigned)ch->granted);
    else
        TG_INFO("keyserver %s: worker %d reconnected after %.0f ms (%zu request(s) waited)",
                ch->name, ch->w->id, (double)(now - ch->down_since_ns) / 1e6, ch->waiting.n);
    ch->ever_ready = true;
    ch->down_since_ns = 0;
    ch->backoff_ns = 0;
    tg_ksc_send_waiting(ch);
    tg_ksc_write(ch);
}

static void tg_ksc_sign_reply(struct tg_ksc_chan *ch, const struct tg_ksp_msg *m)
{
    uint32_t idx = m->id & 0xffff;
    struct tg_ksc_slot *s = idx < ch->cap ? &ch->slots[idx] : NULL;
    if (s == NULL || s->op == NULL || !s->sent || s->id != m->id) {
        /* A request given up (timeout) whose answer came after all. */
        tg_ctr_inc(&ch->stats.late_replies);
        return;
    }
    tg_hist_record(&ch->stats.rtt_us, &tg_hist_latency_us, (tg_now_ns() - s->t_sent_ns) / 1000);
    struct tg_keyop *op = s->op;
    const struct tg_ksc_key *k = op->pkey->prov_key;
    switch (m->status) {
    case TG_KSP_ST_OK:
        if (m->datalen > sizeof(op->out) || m->datalen > op->pkey->sig_max) {
            tg_ksc_warn(ch, "a signature of %zu bytes for key %s...: not this key's", m->datalen,
                        k->id_hex);
            tg_ksc_fail(ch, s, TG_KSC_FAIL_SERVER_ERROR, TG_EDEVICE, TG_FALLBACK_LANE_ERROR);
            return;
        }
        tg_ksc_slot_put(ch, s);
        memcpy(op->out, m->data, m->datalen);
        op->outlen = m->datalen;
        tg_keyop_complete(op, TG_OK, TG_FALLBACK_DEVICE_ERROR);
        return;
    case TG_KSP_ST_UNKNOWN_KEY:
        tg_ksc_warn(ch, "the key server does not hold key %s... (%s)", k->id_hex,
                    op->pkey->label ? op->pkey->label : "a certificate");
        tg_ksc_fail(ch, s, TG_KSC_FAIL_UNKNOWN_KEY, TG_EDEVICE, TG_FALLBACK_DEVICE_ERROR);
        return;
    case TG_KSP_ST_BUSY:
        tg_ksc_fail(ch, s, TG_KSC_FAIL_BUSY, TG_ELIMIT, TG_FALLBACK_RING_FULL);
        return;
    case TG_KSP_ST_SHUTTING_DOWN:
        tg_ksc_fail(ch, s, TG_KSC_FAIL_SHUTDOWN, TG_EDEVICE, TG_FALLBACK_DEVICE_ERROR);
        return;
    default:
        tg_ksc_warn(ch, "key %s...: the key server answered %s", k->id_hex,
                    tg_ksp_status_name(m->status));
        tg_ksc_fail(ch, s, TG_KSC_FAIL_SERVER_ERROR, TG_EDEVICE, TG_FALLBACK_DEVICE_ERROR);
        return;
    }
}

/* One frame from the key server; false when the channel went down. */
static bool tg_ksc_frame(struct tg_ksc_chan *ch, const struct tg_ksp_frame *f)
{
    struct tg_ksp_msg m;
    const char *why = NULL;
    if (tg_ksp_decode(f, &m, &why) != TG_OK) {
        tg_ksc_down(ch, TG_KSC_DISC_PROTOCOL, why);
        return false;
    }
    if (m.type == TG_KSP_ERROR) {
        char detail[TG_KSP_TEXT_MAX + 40];
        snprintf(detail, sizeof(detail), "%s: %s", tg_ksp_status_name(m.status), m.text);
        if (m.status == TG_KSP_ST_SHUTTING_DOWN && m.id == 0) {
            /* Goodbye: what it has not answered, it has not read. */
            ch->goodbye = true;
            tg_ksc_down(ch, TG_KSC_DISC_GOODBYE, NULL);
            return false;
        }
        tg_ksc_down(ch, m.status == TG_KSP_ST_PROTOCOL ? TG_KSC_DISC_PROTOCOL : TG_KSC_DISC_REFUSED,
                    detail);
        return false;
    }
    if (ch->state == TG_KSC_HELLO) {
        if (m.type != TG_KSP_HELLO_REPLY) {
            tg_ksc_down(ch, TG_KSC_DISC_PROTOCOL, "expected a hello reply");
            return false;
        }
        tg_ksc_hello_reply(ch, &m);
        return ch->state == TG_KSC_READY;
    }
    if (m.type != TG_KSP_SIGN_REPLY) {
        tg_ksc_down(ch, TG_KSC_DISC_PROTOCOL, "unexpected message");
        return false;
    }
    tg_ksc_sign_reply(ch, &m);
    return true;
}

static void tg_ksc_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct tg_ksc_chan *ch = w->data;
    ssize_t n = recv(ch->fd, ch->in + ch->in_len, sizeof(ch->in) - ch->in_len, 0);
    if (n == 0) {
        tg_ksc_down(ch, TG_KSC_DISC_PEER_CLOSED, NULL);
        return;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        tg_ksc_down(ch, errno == ECONNRESET ? TG_KSC_DISC_PEER_CLOSED : TG_KSC_DISC_IO,
                    strerror(errno));
        return;
    }
    ch->in_len += (size_t)n;
    tg_ksc_take_frames(ch);
}

/* Handle every complete frame in the input buffer; false when the channel
 * went down (the buffer was reset). */
static bool tg_ksc_take_frames(struct tg_ksc_chan *ch)
{
    size_t off = 0;
    for (;;) {
        struct tg_ksp_frame f;
        size_t used = 0;
        const char *why = NULL;
        int rc = tg_ksp_frame_parse(ch->in + off, ch->in_len - off, &f, &used, &why);
        if (rc == TG_EAGAIN)
            break;
        if (rc != TG_OK) {
            tg_ksc_down(ch, TG_KSC_DISC_PROTOCOL, why);
            return false;
        }
        if (!tg_ksc_frame(ch, &f))
            return false;
        off += used;
    }
    memmove(ch->in, ch->in + off, ch->in_len - off);
    ch->in_len -= off;
    return true;
}

static void tg_ksc_connect_now(struct tg_ksc_chan *ch)
{
    int fd = tg_ksc_connect(ch->name, true);
    if (fd < 0) {
        char detail[128];
        snprintf(detail, sizeof(detail), "%s", strerror(errno));
        tg_ksc_down(ch, TG_KSC_DISC_CONNECT_FAILED, detail);
        return;
    }
    ch->fd = fd;
    ch->state = TG_KSC_HELLO;
    ev_io_set(&ch->rio, fd, EV_READ);
    ev_io_set(&ch->wio, fd, EV_WRITE);
    ev_io_start(ch->w->loop, &ch->rio);
    struct tg_ksp_msg m;
    memset(&m, 0, sizeof(m));
    m.type = TG_KSP_HELLO;
    m.max_in_flight = ch->cap;
    snprintf(m.text, sizeof(m.text), "tlsgate %s pid %d worker %d", TG_VERSION, (int)getpid(),
             ch->w->id);
    tg_ksc_append(ch, &m);
    tg_ksc_write(ch);
}

/* ---- worker entries ---- */

static void tg_ksc_chan_free(struct tg_ksc_worker *w, struct tg_ksc_chan *ch)
{
    if (ch == NULL)
        return;
    if (ch->fd >= 0) {
        ev_io_stop(w->loop, &ch->rio);
        ev_io_stop(w->loop, &ch->wio);
        close(ch->fd);
    }
    ev_timer_stop(w->loop, &ch->retry);
    ev_timer_stop(w->loop, &ch->deadline);
    free(ch->slots);
    free(ch->free_idx);
    free(ch->out);
    free(ch);
}

/* The worker's channel to socket `sock`, made (and connecting) on first
 * use; NULL when out of memory or the socket is unknown. */
static struct tg_ksc_chan *tg_ksc_chan_get(struct tg_ksc_worker *w, int sock)
{
    if (sock < 0 || sock >= TG_KSC_MAX_SOCKETS)
        return NULL;
    if (w->chans[sock] != NULL)
        return w->chans[sock];
    size_t n = 0;
    struct tg_ksc_socket *socks = tg_ksc_sockets(&n);
    if ((size_t)sock >= n)
        return NULL;
    struct tg_ksc_chan *ch = calloc(1, sizeof(*ch));
    if (ch == NULL)
        return NULL;
    ch->w = w;
    ch->sock = sock;
    ch->name = socks[sock].name;
    ch->fd = -1;
    ch->cap = atomic_load(&socks[sock].max_in_flight);
    ch->slots = calloc(ch->cap, sizeof(*ch->slots));
    ch->free_idx = calloc(ch->cap, sizeof(*ch->free_idx));
    ch->out_cap = (size_t)ch->cap * TG_KSC_SIGN_FRAME + TG_KSC_HELLO_FRAME;
    ch->out = malloc(ch->out_cap);
    if (ch->slots == NULL || ch->free_idx == NULL || ch->out == NULL) {
        tg_ksc_chan_free(w, ch);
        return NULL;
    }
    for (uint32_t i = 0; i < ch->cap; i++)
        ch->free_idx[ch->n_free++] = ch->cap - 1 - i;
    ev_io_init(&ch->rio, tg_ksc_read_cb, 0, EV_READ);
    ch->rio.data = ch;
    ev_io_init(&ch->wio, tg_ksc_write_cb, 0, EV_WRITE);
    ch->wio.data = ch;
    ev_timer_init(&ch->retry, tg_ksc_retry_cb, 0.0, 0.0);
    ch->retry.data = ch;
    ev_timer_init(&ch->deadline, tg_ksc_deadline_cb, 0.0, 0.0);
    ch->deadline.data = ch;
    ch->deadline_at = UINT64_MAX;
    pthread_mutex_lock(&tg_ksc_reg_lock);
    w->chans[sock] = ch;
    if ((size_t)sock >= w->n)
        w->n = (size_t)sock + 1;
    pthread_mutex_unlock(&tg_ksc_reg_lock);
    tg_ksc_connect_now(ch);
    return ch;
}

int tg_ksc_worker_init(const struct tg_keyprov_worker *kw, void **state)
{
    struct tg_ksc_worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return TG_ENOMEM;
    w->loop = kw->loop;
    w->id = kw->worker_id;
    w->handshaking = kw->handshaking;
    w->rng = 2463534242u ^ (uint32_t)(kw->worker_id * 2654435761u) ^ (uint32_t)getpid();
    pthread_mutex_lock(&tg_ksc_reg_lock);
    w->next = tg_ksc_reg;
    tg_ksc_reg = w;
    pthread_mutex_unlock(&tg_ksc_reg_lock);
    /* Connect now to the key servers known: the first handshake should not
     * wait for it. */
    size_t n = 0;
    tg_ksc_sockets(&n);
    for (size_t i = 0; i < n; i++) {
        if (tg_ksc_chan_get(w, (int)i) == NULL) {
            tg_ksc_worker_cleanup(w);
            return TG_ENOMEM;
        }
    }
    *state = w;
    return TG_OK;
}

void tg_ksc_worker_cleanup(void *state)
{
    struct tg_ksc_worker *w = state;
    if (w == NULL)
        return;
    tg_ksc_drain(w);
    pthread_mutex_lock(&tg_ksc_reg_lock);
    struct tg_ksc_worker **pp = &tg_ksc_reg;
    while (*pp != NULL && *pp != w)
        pp = &(*pp)->next;
    if (*pp == w)
        *pp = w->next;
    for (size_t i = 0; i < w->n; i++) {
        struct tg_ksc_chan *ch = w->chans[i];
        if (ch == NULL)
            continue;
        atomic_store_explicit(&ch->stats.connected, 0, memory_order_relaxed);
        tg_ksc_stats_merge(&tg_ksc_retired[i], &ch->stats);
    }
    pthread_mutex_unlock(&tg_ksc_reg_lock);
    for (size_t i = 0; i < w->n; i++)
        tg_ksc_chan_free(w, w->chans[i]);
    free(w);
}

int tg_ksc_submit(void *state, struct tg_keyop *op)
{
    struct tg_ksc_worker *w = state;
    if ((op->type != TG_KEYOP_RSA_SIGN && op->type != TG_KEYOP_ECDSA_SIGN) || op->pkey == NULL ||
        !tg_pkey_is_held(op->pkey) || op->pkey->prov_key_free != tg_ksc_key_free ||
        op->inlen == 0 || op->inlen > TG_KSP_DIGEST)
        return TG_EINVAL; /* not a key this provider made */
    const struct tg_ksc_key *k = op->pkey->prov_key;
    if (op->type == TG_KEYOP_RSA_SIGN &&
        (tg_ksp_md_code(op->md) <= 0 || (op->rsa_padding == TG_RSA_PAD_PSS &&
                                         tg_ksp_md_code(op->mgf1_md ? op->mgf1_md : op->md) <= 0)))
        return TG_EINVAL; /* a digest the protocol cannot name */
    struct tg_ksc_chan *ch = tg_ksc_chan_get(w, k->sock);
    if (ch == NULL)
        return TG_ENOMEM; /* the op fails: no software copy of the key */
    uint64_t now = tg_now_ns();
    struct tg_ksc_slot *s = NULL;
    if (ch->state == TG_KSC_DOWN && ch->down_since_ns != 0 &&
        now - ch->down_since_ns >= k->timeout_ns) {
        /* Down for longer than this request would wait: fail now. */
        tg_ctr_inc(&ch->stats.failures[TG_KSC_FAIL_UNAVAILABLE]);
        tg_keyop_complete(op, TG_EDEVICE, TG_FALLBACK_DEVICE_ERROR);
        return TG_OK;
    }
    if ((s = tg_ksc_slot_get(ch)) == NULL) {
        tg_ctr_inc(&ch->stats.failures[TG_KSC_FAIL_QUEUE_FULL]);
        tg_keyop_complete(op, TG_ELIMIT, TG_FALLBACK_RING_FULL);
        return TG_OK;
    }
    s->op = op;
    s->deadline_ns = now + k->timeout_ns;
    tg_ksc_list_add(&ch->waiting, s);
    tg_ksc_gauges(ch);
    if (s->deadline_ns < ch->deadline_at)
        tg_ksc_arm_deadline(ch, s->deadline_ns);
    return TG_EPENDING;
}

void tg_ksc_flush(void *state)
{
    struct tg_ksc_worker *w = state;
    for (size_t i = 0; i < w->n; i++) {
        struct tg_ksc_chan *ch = w->chans[i];
        if (ch == NULL || ch->state != TG_KSC_READY || ch->waiting.head == NULL)
            continue;
        tg_ksc_send_waiting(ch);
        tg_ksc_write(ch);
    }
}

size_t tg_ksc_pending(void *state)
{
    struct tg_ksc_worker *w = state;
    size_t n = 0;
    for (size_t i = 0; i < w->n; i++) {
        if (w->chans[i] != NULL)
            n += w->chans[i]->waiting.n + w->chans[i]->sent.n;
    }
    return n;
}

void tg_ksc_drain(void *state)
{
    struct tg_ksc_worker *w = state;
    /* The loop has stopped: nothing more will be read. */
    for (size_t i = 0; i < w->n; i++) {
        struct tg_ksc_chan *ch = w->chans[i];
        if (ch == NULL)
            continue;
        while (ch->waiting.head != NULL)
            tg_ksc_fail(ch, ch->waiting.head, TG_KSC_FAIL_SHUTDOWN, TG_ECANCELED,
                        TG_FALLBACK_DEVICE_ERROR);
        while (ch->sent.head != NULL)
            tg_ksc_fail(ch, ch->sent.head, TG_KSC_FAIL_SHUTDOWN, TG_ECANCELED,
                        TG_FALLBACK_DEVICE_ERROR);
        tg_ksc_arm_deadline(ch, UINT64_MAX);
    }
}
