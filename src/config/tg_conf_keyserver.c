/*
 * tg_conf_keyserver: the schema of a key server's configuration. Contract
 * in tg_conf_keyserver.h; every key in docs/CONFIG.md ("Key server").
 *
 *   log_level: info
 *   admin: { address: 127.0.0.1:9902 }
 *   keyserver:
 *     socket: /run/tlsgate/keys.sock
 *     socket_mode: "0660"
 *     socket_group: tlsgate
 *     allowed_uids: [tlsgate]
 *     allowed_gids: []
 *     max_connections: 256
 *     max_in_flight: 1024
 *     max_queue: 8192
 *     request_timeout: 10s
 *   keys:
 *     - private_key: { filename: rsa.key }
 *       certificate_chain: { filename: rsa.pem }      # optional, checked
 *       private_key_provider: { provider_name: cryptomb }
 */
#include "config/tg_conf_keyserver.h"

#include "config/tg_conf_parse.h"
#include "config/tg_conf_schema.h"
#include "config/tg_conf_tls.h"
#include "core/tg_time.h"

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

/* Longest socket name: sun_path less its NUL (a path) or its leading NUL
 * (an abstract name, written here with '@'). */
#define TG_CONF_KS_SOCKET_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

void tg_conf_keyserver_free(struct tg_conf_keyserver *ks)
{
    if (ks == NULL)
        return;
    free(ks->socket);
    free(ks->allowed_uids);
    free(ks->allowed_gids);
    for (size_t i = 0; ks->keys != NULL && i < ks->n_keys; i++)
        tg_conf_tls_cert_free(&ks->keys[i]);
    free(ks->keys);
    free(ks);
}

/* A user (group) name or number into *id. NULL on success, else why not. */
static const char *tg_conf_ks_id(const char *s, bool group, uint32_t *id)
{
    uint64_t u;
    if (tg_conf_parse_is_digit(s[0])) {
        if (tg_conf_parse_u64(s, 0, UINT32_MAX - 1, &u) != TG_OK)
            return group ? "not a group id (0..4294967294)" : "not a user id (0..4294967294)";
        *id = (uint32_t)u;
        return NULL;
    }
    char buf[4096];
    if (group) {
        struct group g, *res = NULL;
        if (getgrnam_r(s, &g, buf, sizeof(buf), &res) != 0 || res == NULL)
            return "no such group on this system";
        *id = (uint32_t)res->gr_gid;
    } else {
        struct passwd p, *res = NULL;
        if (getpwnam_r(s, &p, buf, sizeof(buf), &res) != 0 || res == NULL)
            return "no such user on this system";
        *id = (uint32_t)res->pw_uid;
    }
    return NULL;
}

/* allowed_uids / allowed_gids: a sequence of names or numbers. */
static int tg_conf_ks_ids(struct tg_cp *cp, const yaml_node_t *n, bool group, uint32_t **out,
                          size_t *nout)
{
    char **names = NULL;
    size_t cnt = 0;
    int rc = tg_cp_strings(cp, n, 255, &names, &cnt);
    if (rc == TG_OK && cnt > 0) {
        *out = calloc(cnt, sizeof(**out));
        rc = *out == NULL ? tg_cp_nomem(cp) : TG_OK;
    }
    for (size_t i = 0; rc == TG_OK && i < cnt; i++) {
        const char *why = tg_conf_ks_id(names[i], group, &(*out)[i]);
        if (why != NULL) {
            char ex[TG_CONF_EXCERPT];
            size_t o = tg_cp_push_index(cp, i);
            rc = tg_cp_fail(cp, tg_cp_node(cp, n->data.sequence.items.start[i]), "'%s': %s",
                            tg_config_excerpt(names[i], ex, sizeof(ex)), why);
            tg_cp_pop(cp, o);
        }
        *nout = i + 1;
    }
    tg_cp_strv_free(names, cnt);
    return rc;
}

/* socket_mode: octal permission bits as a string ("0660", "660"). */
static int tg_conf_ks_mode(struct tg_cp *cp, const yaml_node_t *n, uint32_t *out)
{
    const char *s;
    char ex[TG_CONF_EXCERPT];
    TG_GUARD(tg_cp_scalar(cp, n, "an octal mode", &s));
    uint32_t m = 0;
    size_t len = strlen(s);
    bool ok = len >= 3 && len <= 4;
    for (size_t i = 0; ok && i < len; i++) {
        ok = s[i] >= '0' && s[i] <= '7';
        m = m * 8 + (uint32_t)(s[i] - '0');
    }
    if (!ok || m > 0777)
        return tg_cp_fail(cp, n, "expected octal permission bits like \"0660\", got '%s'",
                          tg_config_excerpt(s, ex, sizeof(ex)));
    if ((m & 0200) == 0)
        return tg_cp_fail(cp, n,
                          "mode %04o does not let the key server's own user connect (a Unix "
                          "socket needs write permission)",
                          m);
    *out = m;
    return TG_OK;
}

/* socket: a path (relative to the configuration's directory) or "@name". */
static int tg_conf_ks_socket(struct tg_cp *cp, const yaml_node_t *n, char **out)
{
    char *s = NULL;
    TG_GUARD(tg_cp_string(cp, n, &s));
    char *full = s;
    if (s[0] != '/' && s[0] != '@' && cp->basedir != NULL) {
        size_t fl = strlen(cp->basedir) + strlen(s) + 2;
        full = malloc(fl);
        if (full == NULL) {
            free(s);
            return tg_cp_nomem(cp);
        }
        snprintf(full, fl, "%s/%s", cp->basedir, s);
        free(s);
    }
    size_t len = strlen(full);
    int rc = TG_OK;
    if (full[0] == '@' && len < 2)
        rc = tg_cp_fail(cp, n, "an abstract socket needs a name after '@'");
    else if (len > TG_CONF_KS_SOCKET_MAX)
        rc = tg_cp_fail(cp, n, "socket name of %zu bytes; at most %zu fit in a Unix socket address",
                        len, (size_t)TG_CONF_KS_SOCKET_MAX);
    if (rc != TG_OK) {
        free(full);
        return rc;
    }
    free(*out);
    *out = full;
    return TG_OK;
}

/* One entry of keys. */
static int tg_conf_ks_key(struct tg_cp *cp, const yaml_node_t *n, struct tg_conf_cert *c)
{
    static const char *const keys[] = {"private_key", "certificate_chain", "private_key_provider",
                                       NULL};
    const yaml_node_t *v, *keynode = NULL;
    size_t o;
    int rc;

    c->path = tg_cp_path_dup(cp);
    if (c->path == NULL)
        return tg_cp_nomem(cp);
    c->mark = tg_cp_mark(cp, n);
    if (n->type != YAML_MAPPING_NODE)
        return tg_cp_fail(cp, n, "expected a mapping with private_key, got %s", tg_cp_kind(n));
    TG_GUARD(tg_cp_check_map(cp, n, keys));
    if ((v = tg_cp_get(cp, n, "private_key", &keynode)) != NULL) {
        o = tg_cp_push_key(cp, "private_key");
        rc = tg_conf_tls_pem(cp, v, true, &c->private_key);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    if ((v = tg_cp_get(cp, n, "certificate_chain", NULL)) != NULL) {
        o = tg_cp_push_key(cp, "certificate_chain");
        rc = tg_conf_tls_pem(cp, v, false, &c->chain);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    TG_GUARD(tg_conf_tls_provider(cp, n, c, keynode));
    if (c->private_key.data == NULL && tg_cp_get(cp, n, "private_key_provider", NULL) == NULL)
        return tg_cp_fail(cp, n,
                          "missing required key 'private_key' (or a private_key_provider that "
                          "holds the key, such as pkcs11)");
    return TG_OK;
}

static int tg_conf_ks_block(struct tg_cp *cp, const yaml_node_t *n, struct tg_conf_keyserver *ks)
{
    static const char *const keys[] = {
        "socket",          "socket_mode",   "socket_group", "allowed_uids",    "allowed_gids",
        "max_connections", "max_in_flight", "max_queue",    "request_timeout", NULL};
    const yaml_node_t *v;
    size_t o;
    int rc;

    ks->mark = tg_cp_mark(cp, n);
    if (n->type != YAML_MAPPING_NODE)
        return tg_cp_fail(cp, n, "expected a mapping with at least 'socket', got %s",
                          tg_cp_kind(n));
    TG_GUARD(tg_cp_check_map(cp, n, keys));
    TG_GUARD(tg_cp_require(cp, n, "socket", &v));
    o = tg_cp_push_key(cp, "socket");
    rc = tg_conf_ks_socket(cp, v, &ks->socket);
    tg_cp_pop(cp, o);
    TG_GUARD(rc);
    if ((v = tg_cp_get(cp, n, "socket_mode", NULL)) != NULL) {
        o = tg_cp_push_key(cp, "socket_mode");
        rc = tg_conf_ks_mode(cp, v, &ks->socket_mode);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    if ((v = tg_cp_get(cp, n, "socket_group", NULL)) != NULL) {
        const char *s, *why;
        char ex[TG_CONF_EXCERPT];
        o = tg_cp_push_key(cp, "socket_group");
        rc = tg_cp_scalar(cp, v, "a group name or id", &s);
        if (rc == TG_OK && (why = tg_conf_ks_id(s, true, &ks->socket_group)) != NULL)
            rc = tg_cp_fail(cp, v, "'%s': %s", tg_config_excerpt(s, ex, sizeof(ex)), why);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
        ks->has_socket_group = true;
    }
    static const struct {
        const char *key;
        bool group;
    } lists[] = {{"allowed_uids", false}, {"allowed_gids", true}};
    for (size_t i = 0; i < TG_ARRAY_LEN(lists); i++) {
        if ((v = tg_cp_get(cp, n, lists[i].key, NULL)) == NULL)
            continue;
        o = tg_cp_push_key(cp, lists[i].key);
        rc = lists[i].group ? tg_conf_ks_ids(cp, v, true, &ks->allowed_gids, &ks->n_allowed_gids)
                            : tg_conf_ks_ids(cp, v, false, &ks->allowed_uids, &ks->n_allowed_uids);
        tg_cp_pop(cp, o);
        TG_GUARD(rc);
    }
    TG_GUARD(tg_cp_opt_u64(cp, n, "max_connections", 1, 65536, &ks->max_connections));
    TG_GUARD(tg_cp_opt_u64(cp, n, "max_in_flight", 1, 65535, &ks->max_in_flight));
    TG_GUARD(tg_cp_opt_u64(cp, n, "max_queue", 1, 1048576, &ks->max_queue));
    return tg_cp_opt_duration(cp, n, "request_timeout", false, &ks->request_timeout_ns);
}

int tg_conf_keyserver_root(struct tg_cp *cp, const yaml_node_t *root)
{
    static const char *const keys[] = {"keyserver", "keys", "log_level", "admin", NULL};
    struct tg_config *cfg = cp->cfg;
    const yaml_node_t *v;
    size_t o;
    int rc;

    if (root->type != YAML_MAPPING_NODE)
        return tg_cp_fail(cp, root, "expected a mapping at the top level, got %s",
                          tg_cp_kind(root));
    const yaml_node_t *lk = NULL;
    if (tg_cp_get(cp, root, "listeners", &lk) != NULL) {
        o = tg_cp_push_key(cp, "listeners");
        rc = tg_cp_fail(cp, lk,
                        "this is a gateway's configuration: run it with `tlsgate run`; a key "
                        "server's has 'keyserver' and 'keys'");
        tg_cp_pop(cp, o);
        return rc;
    }
    TG_GUARD(tg_cp_check_map(cp, root, keys));
    TG_GUARD(tg_conf_schema_common(cp, root));

    struct tg_conf_keyserver *ks = calloc(1, sizeof(*ks));
    if (ks == NULL)
        return tg_cp_nomem(cp);
    cfg->keyserver = ks;
    ks->socket_mode = 0660;
    ks->max_connections = 256;
    ks->max_in_flight = 1024;
    ks->max_queue = 8192;
    ks->request_timeout_ns = 10 * TG_NS_PER_S;

    TG_GUARD(tg_cp_require(cp, root, "keyserver", &v));
    o = tg_cp_push_key(cp, "keyserver");
    rc = tg_conf_ks_block(cp, v, ks);
    tg_cp_pop(cp, o);
    TG_GUARD(rc);

    TG_GUARD(tg_cp_require(cp, root, "keys", &v));
    o = tg_cp_push_key(cp, "keys");
    if (v->type != YAML_SEQUENCE_NODE) {
        rc = tg_cp_fail(cp, v, "expected a sequence of keys, got %s", tg_cp_kind(v));
    } else if (v->data.sequence.items.top == v->data.sequence.items.start) {
        rc = tg_cp_fail(cp, v, "at least one key is required");
    } else {
        size_t cnt = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
        ks->keys = calloc(cnt, sizeof(*ks->keys));
        rc = ks->keys == NULL ? tg_cp_nomem(cp) : TG_OK;
        if (rc == TG_OK)
            ks->n_keys = cnt;
        for (size_t i = 0; rc == TG_OK && i < cnt; i++) {
            size_t o2 = tg_cp_push_index(cp, i);
            rc = tg_conf_ks_key(cp, tg_cp_node(cp, v->data.sequence.items.start[i]), &ks->keys[i]);
            tg_cp_pop(cp, o2);
        }
    }
    tg_cp_pop(cp, o);
    return rc;
}
