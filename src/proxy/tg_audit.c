/*
 * Warnings about a valid but risky configuration (tg_audit.h).
 */
#include "proxy/tg_audit.h"

#include <grp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/tg_log.h"
#include "core/tg_time.h"
#include "tls/tg_tls.h"

#define TG_AUDIT_LINE 1400

void tg_audit_ids_self(struct tg_audit_ids *ids)
{
    memset(ids, 0, sizeof(*ids));
    ids->euid = (uint32_t)geteuid();
    ids->groups[ids->n_groups++] = (uint32_t)getegid();
    gid_t g[TG_AUDIT_MAX_GROUPS];
    int n = getgroups(TG_AUDIT_MAX_GROUPS, g);
    for (int i = 0; i < n && ids->n_groups < TG_AUDIT_MAX_GROUPS; i++)
        ids->groups[ids->n_groups++] = (uint32_t)g[i];
}

enum tg_audit_exposure tg_audit_key_exposure(uint32_t mode, uint32_t uid, uint32_t gid,
                                             const struct tg_audit_ids *ids)
{
    if (mode & 0004)
        return TG_AUDIT_OTHERS;
    if (!(mode & 0040))
        return TG_AUDIT_PRIVATE;
    if (uid != ids->euid) {
        for (size_t i = 0; i < ids->n_groups; i++) {
            if (ids->groups[i] == gid)
                return TG_AUDIT_PRIVATE; /* group read is how we get in */
        }
    }
    return TG_AUDIT_GROUP;
}

bool tg_audit_is_loopback(const struct tg_conf_addr *a)
{
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->ss;
        return (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct in6_addr *v6 = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(v6))
            return true;
        return IN6_IS_ADDR_V4MAPPED(v6) && v6->s6_addr[12] == 127;
    }
    return false;
}

/* A duration as the configuration would write it ("30d", "2h", "90s"). */
static const char *tg_audit_duration(uint64_t ns, char *buf, size_t len)
{
    uint64_t s = ns / TG_NS_PER_S;
    if (s > 0 && s % 86400 == 0)
        snprintf(buf, len, "%llud", (unsigned long long)(s / 86400));
    else if (s > 0 && s % 3600 == 0)
        snprintf(buf, len, "%lluh", (unsigned long long)(s / 3600));
    else if (s > 0 && s % 60 == 0)
        snprintf(buf, len, "%llum", (unsigned long long)(s / 60));
    else
        snprintf(buf, len, "%llus", (unsigned long long)s);
    return buf;
}

static void tg_audit_key(const struct tg_conf_cert *c, const struct tg_audit_ids *ids,
                         tg_audit_emit_fn emit, void *arg, size_t *n)
{
    const struct tg_conf_datasource *ds = &c->private_key;
    if (!ds->has_stat)
        return;
    enum tg_audit_exposure e = tg_audit_key_exposure(ds->mode, ds->uid, ds->gid, ids);
    if (e == TG_AUDIT_PRIVATE)
        return;
    char who[160], path[600], line[TG_AUDIT_LINE];
    if (e == TG_AUDIT_OTHERS) {
        snprintf(who, sizeof(who), "every user of this machine");
    } else {
        struct group gr, *res = NULL;
        char gbuf[1024];
        if (getgrgid_r((gid_t)ds->gid, &gr, gbuf, sizeof(gbuf), &res) == 0 && res != NULL)
            snprintf(who, sizeof(who), "group '%s' (gid %u)", gr.gr_name, ds->gid);
        else
            snprintf(who, sizeof(who), "group %u", ds->gid);
    }
    snprintf(path, sizeof(path), "%s.private_key", c->path);
    tg_conf_error(line, sizeof(line), &ds->mark, path,
                  "'%s' (mode %04o) can be read by %s: make the private key readable by the "
                  "user tlsgate runs as only (chmod 0600 or 0400; under systemd, "
                  "LoadCredential=, see docs/OPERATIONS.md)",
                  ds->path != NULL ? ds->path : ds->filename, ds->mode, who);
    emit(arg, line);
    (*n)++;
}

void tg_audit_emit_log(void *arg, const char *line)
{
    (void)arg;
    TG_WARN("%s", line);
}

void tg_audit_emit_stderr(void *arg, const char *line)
{
    (void)arg;
    fprintf(stderr, "tlsgate: warning: %s\n", line);
}

size_t tg_audit_config(const struct tg_config *cfg, const struct tg_audit_ids *ids,
                       tg_audit_emit_fn emit, void *arg)
{
    size_t n = 0;
    char line[TG_AUDIT_LINE], a[32], b[32];
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct tg_conf_listener *l = &cfg->listeners[i];
        for (size_t c = 0; c < l->tls.n_certs; c++)
            tg_audit_key(&l->tls.certs[c], ids, emit, arg, &n);
        /* A ticket stops resuming when its key is wiped, one to two
         * intervals after it was issued. */
        if (l->tls.session_resumption && l->tls.session_timeout_mark.line > 0 &&
            l->tls.session_timeout_ns > cfg->tickets.rotation_ns) {
            char path[600];
            snprintf(path, sizeof(path), "%s.tls.session_timeout", l->path);
            tg_conf_error(line, sizeof(line), &l->tls.session_timeout_mark, path,
                          "%s is longer than session_tickets.key_rotation_interval (%s): a "
                          "ticket's key is wiped one to two intervals after the ticket was "
                          "issued, so clients may hold tickets that no longer resume (a full "
                          "handshake then)",
                          tg_audit_duration(l->tls.session_timeout_ns, a, sizeof(a)),
                          tg_audit_duration(cfg->tickets.rotation_ns, b, sizeof(b)));
            emit(arg, line);
            n++;
        }
    }
    /* A key server's file: its keys are why it exists. */
    for (size_t i = 0; cfg->keyserver != NULL && i < cfg->keyserver->n_keys; i++)
        tg_audit_key(&cfg->keyserver->keys[i], ids, emit, arg, &n);
    if (cfg->has_admin && cfg->n_admin_allowed == 0 && !tg_audit_is_loopback(&cfg->admin)) {
        tg_conf_error(line, sizeof(line), &cfg->admin.mark, "admin.address",
                      "%s is not a loopback address and admin.allowed_sources is not set: "
                      "anyone who can reach this port reads /stats (certificate names, "
                      "upstream addresses, traffic) without authentication; bind it to "
                      "127.0.0.1 or [::1], or list the networks that may use it in "
                      "admin.allowed_sources",
                      cfg->admin.text);
        emit(arg, line);
        n++;
    }
    return n;
}

/* "in 12 days" / "3 hours ago": whole days from two days on, else hours. */
static void tg_audit_span(int64_t secs, bool past, char *buf, size_t len)
{
    long long v = secs >= 2 * 86400 ? (long long)(secs / 86400) : (long long)(secs / 3600);
    const char *unit = secs >= 2 * 86400 ? "days" : v == 1 ? "hour" : "hours";
    if (past)
        snprintf(buf, len, "%lld %s ago", v, unit);
    else
        snprintf(buf, len, "in %lld %s", v, unit);
}

size_t tg_audit_certs(const struct tg_gen *g, int64_t now, tg_audit_emit_fn emit, void *arg)
{
    size_t n = 0;
    int64_t window = (int64_t)(g->cfg->cert_expiry_warning_ns / TG_NS_PER_S);
    char line[TG_AUDIT_LINE], span[64], when[64], win[32], path[600];
    for (size_t i = 0; i < g->n_listeners; i++) {
        const struct tg_gen_listener *l = &g->listeners[i];
        for (size_t c = 0; c < tg_tls_listener_cert_count(l->tls); c++) {
            struct tg_tls_cert_info info;
            tg_tls_listener_cert_info(l->tls, c, &info);
            if (info.not_after <= 0 || info.not_after - now > window)
                continue;
            const struct tg_conf_cert *cc = &l->conf->tls.certs[c];
            struct tm tm;
            time_t na = (time_t)info.not_after;
            if (gmtime_r(&na, &tm) == NULL ||
                strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
                snprintf(when, sizeof(when), "%lld", (long long)info.not_after);
            bool expired = info.not_after <= now;
            tg_audit_span(expired ? now - info.not_after : info.not_after - now, expired, span,
                          sizeof(span));
            snprintf(path, sizeof(path), "%s.certificate_chain", cc->path);
            if (expired)
                tg_conf_error(line, sizeof(line), &cc->chain.mark, path,
                              "the certificate for [%s] (serial %s) has EXPIRED, %s (not "
                              "after %s): clients refuse it; renew it",
                              info.names, info.serial, span, when);
            else
                tg_conf_error(line, sizeof(line), &cc->chain.mark, path,
                              "the certificate for [%s] (serial %s) expires %s (not after %s, "
                              "certificate_expiry_warning: %s): renew it",
                              info.names, info.serial, span, when,
                              tg_audit_duration(g->cfg->cert_expiry_warning_ns, win, sizeof(win)));
            emit(arg, line);
            n++;
        }
    }
    return n;
}
