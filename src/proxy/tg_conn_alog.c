/*
 * tg_conn_alog: a connection -> an access-log record. Contract in
 * tg_conn_alog.h.
 */
#include "proxy/tg_conn_alog.h"

#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "core/tg_time.h"
#include "proxy/tg_worker.h"
#include "tls/tg_mtls.h"
#include "tls/tg_tls.h"

static uint64_t tg_conn_alog_realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * TG_NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void tg_conn_alog_str(struct tg_alog_strs *s, enum tg_alog_str i, const char *p, size_t n)
{
    s->p[i] = p;
    s->len[i] = n;
}

/* What the SSL object knows: SNI always (a failed handshake may have sent
 * one), the rest once the handshake finished. */
static void tg_conn_alog_ssl(SSL *ssl, bool established, struct tg_alog_rec *r,
                             struct tg_alog_strs *s)
{
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (sni != NULL)
        tg_conn_alog_str(s, TG_ALOG_S_SNI, sni, strlen(sni));
    if (!established)
        return;
    r->tls_version = (uint16_t)SSL_version(ssl);
    r->resumed = SSL_session_reused(ssl) != 0;
    const SSL_CIPHER *ci = SSL_get_current_cipher(ssl);
    r->cipher = ci != NULL ? SSL_CIPHER_get_name(ci) : NULL;
    const unsigned char *alpn = NULL;
    unsigned int alpn_len = 0;
    SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
    if (alpn != NULL && alpn_len > 0)
        tg_conn_alog_str(s, TG_ALOG_S_ALPN, (const char *)alpn, alpn_len);
    int nid = SSL_get_negotiated_group(ssl);
    const char *group = nid > 0 ? SSL_group_to_name(ssl, nid) : NULL;
    if (group != NULL)
        tg_conn_alog_str(s, TG_ALOG_S_GROUP, group, strlen(group));
}

void tg_conn_alog_closed(struct tg_conn *c, int stat)
{
    const struct tg_conn_alog *f = &c->alog;
    struct tg_alog_rec r;
    struct tg_alog_strs s;
    memset(&r, 0, sizeof(r));
    memset(&s, 0, sizeof(s));
    uint64_t now = tg_now_ns();
    r.time_ns = tg_conn_alog_realtime_ns();
    r.duration_ns = now - c->t_accept_ns;
    r.handshake_ns = f->t_handshake_ns != 0 ? f->t_handshake_ns - c->t_accept_ns : TG_ALOG_NONE;
    r.connect_ns = f->t_connected_ns != 0 ? f->t_connected_ns - f->t_connect_ns : TG_ALOG_NONE;
    r.bytes_in = f->bytes_in;
    r.bytes_out = f->bytes_out;
    tg_alog_addr_set(&r.client, (const struct sockaddr *)&c->client_addr, sizeof(c->client_addr));
    r.peer = f->peer;
    r.upstream = f->upstream;
    r.attempts = c->n_tried;
    r.term = (uint8_t)tg_alog_term_of(stat, f->detail);
    r.key_fallbacks =
        (uint16_t)(c->keyctx.fallbacks < UINT16_MAX ? c->keyctx.fallbacks : UINT16_MAX);
    const char *listener = c->l->conf->name;
    tg_conn_alog_str(&s, TG_ALOG_S_LISTENER, listener, strlen(listener));
    if (c->ssl != NULL)
        tg_conn_alog_ssl(c->ssl, f->t_handshake_ns != 0, &r, &s);
    const char *cert = NULL;
    r.cert_index =
        (int16_t)tg_tls_listener_cert_of(c->l->tls, c->keyctx.signer, &cert, &r.provider);
    if (cert != NULL)
        tg_conn_alog_str(&s, TG_ALOG_S_CERT, cert, strlen(cert));
    if (f->upstream_host != NULL)
        tg_conn_alog_str(&s, TG_ALOG_S_UPSTREAM_HOST, f->upstream_host, strlen(f->upstream_host));
    if (c->peer != NULL) { /* a verified client certificate */
        tg_conn_alog_str(&s, TG_ALOG_S_CLIENT_SUBJECT, c->peer->subject, strlen(c->peer->subject));
        if (c->peer->san[0] != '\0')
            tg_conn_alog_str(&s, TG_ALOG_S_CLIENT_SAN, c->peer->san, strlen(c->peer->san));
        memcpy(r.client_sha256, c->peer->sha256, sizeof(r.client_sha256));
    }
    (void)tg_alog_emit(c->w->alog, &r, &s);
}

void tg_conn_alog_rejected(struct tg_wlistener *l, const struct sockaddr_storage *peer,
                           enum tg_core_stat counter)
{
    struct tg_alog_rec r;
    struct tg_alog_strs s;
    memset(&r, 0, sizeof(r));
    memset(&s, 0, sizeof(s));
    r.time_ns = tg_conn_alog_realtime_ns();
    r.handshake_ns = TG_ALOG_NONE;
    r.connect_ns = TG_ALOG_NONE;
    r.cert_index = -1;
    r.term = (uint8_t)tg_alog_term_of(counter, 0);
    tg_alog_addr_set(&r.peer, (const struct sockaddr *)peer, sizeof(*peer));
    r.client = r.peer; /* a PROXY header is not read from a refused connection */
    const char *listener = l->conf->name;
    tg_conn_alog_str(&s, TG_ALOG_S_LISTENER, listener, strlen(listener));
    (void)tg_alog_emit(l->w->alog, &r, &s);
}
