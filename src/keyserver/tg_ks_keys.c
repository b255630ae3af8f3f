/*
 * The key server's key table: every key of the configuration, loaded (or
 * loaded by the provider that holds it), checked against its certificate
 * when one is given, bound to its provider, and found by its key id, the
 * SHA-256 of its public key (tg_ksp_key_id), which is all a gateway sends.
 */
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tg_log.h"
#include "keyserver/tg_ks_internal.h"

void tg_ks_keys_free(struct tg_ks_keys *keys)
{
    if (keys == NULL)
        return;
    for (size_t i = 0; keys->v != NULL && i < keys->n; i++) {
        tg_pkey_unref(keys->v[i].pkey);
        tg_keyprov_binding_free(keys->v[i].binding);
    }
    free(keys->v);
    for (size_t i = 0; i <= TG_KSP_MD_MAX; i++)
        EVP_MD_free(keys->md[i]);
    free(keys);
}

/* The leaf of a certificate_chain, or NULL with err written. */
static X509 *tg_ks_leaf(const struct tg_conf_cert *c, char *err, size_t errlen)
{
    char path[600];
    snprintf(path, sizeof(path), "%s.certificate_chain", c->path);
    BIO *bio = BIO_new_mem_buf(c->chain.data, (int)c->chain.data_len);
    X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (x == NULL) {
        unsigned long e = ERR_peek_last_error();
        char why[256];
        ERR_error_string_n(e, why, sizeof(why));
        ERR_clear_error();
        tg_conf_error(err, errlen, &c->chain.mark, path, "cannot parse the certificate: %s",
                      e != 0 ? why : "no certificate");
    }
    return x;
}

/* One key: into k (zeroed); on failure k holds what to free. */
static int tg_ks_key_load(const struct tg_conf_cert *c, struct tg_ks_key *k, char *err,
                          size_t errlen)
{
    X509 *leaf = NULL, *found = NULL;
    int rc = TG_OK;
    char why[256], path[600];
    k->path = c->path;
    if (c->chain.data != NULL && (leaf = tg_ks_leaf(c, err, errlen)) == NULL)
        return TG_ECONFIG;
    if (c->private_key.data != NULL) {
        snprintf(path, sizeof(path), "%s.private_key", c->path);
        rc = tg_pkey_load_pem(c->private_key.data, c->private_key.data_len, &k->pkey, why,
                              sizeof(why));
        if (rc != TG_OK) {
            tg_conf_error(err, errlen, &c->private_key.mark, path, "%s", why);
            rc = TG_ECONFIG;
            goto out;
        }
        rc = tg_keyprov_bind(&c->keyprov, k->pkey, &k->binding, err, errlen);
    } else {
        /* The provider holds the key (pkcs11): it gives the public half,
         * and the certificate when none is configured (not needed here). */
        rc = tg_keyprov_bind_held(&c->keyprov, leaf != NULL ? X509_get0_pubkey(leaf) : NULL,
                                  &k->binding, &k->pkey, leaf != NULL ? NULL : &found, err, errlen);
    }
    if (rc != TG_OK) {
        rc = rc == TG_ENOMEM || rc == TG_EUNAVAIL ? rc : TG_ECONFIG;
        goto out;
    }
    if (leaf != NULL && EVP_PKEY_eq(X509_get0_pubkey(leaf), k->pkey->pub) != 1) {
        ERR_clear_error();
        snprintf(path, sizeof(path), "%s.certificate_chain", c->path);
        tg_conf_error(err, errlen, &c->chain.mark, path,
                      "the certificate does not match the private key");
        rc = TG_ECONFIG;
        goto out;
    }
    k->pkey->binding = k->binding;
    k->pkey->label = strdup(c->path);
    if (k->pkey->label == NULL) {
        rc = TG_ENOMEM;
        goto out;
    }
    if (tg_ksp_key_id(k->pkey->pub, k->id) != TG_OK) {
        tg_conf_error(err, errlen, &c->mark, c->path, "cannot encode the public key");
        rc = TG_ECRYPTO;
        goto out;
    }
    tg_ksp_key_id_hex(k->id, 8, k->id_hex);
out:
    X509_free(leaf);
    X509_free(found);
    return rc;
}

static int tg_ks_key_cmp(const void *a, const void *b)
{
    return memcmp(((const struct tg_ks_key *)a)->id, ((const struct tg_ks_key *)b)->id,
                  TG_KSP_KEY_ID);
}

int tg_ks_keys_load(const struct tg_conf_keyserver *conf, struct tg_ks_keys **out, char *err,
                    size_t errlen)
{
    *out = NULL;
    struct tg_ks_keys *keys = calloc(1, sizeof(*keys));
    if (keys == NULL)
        return TG_ENOMEM;
    int rc = TG_OK;
    keys->v = calloc(conf->n_keys, sizeof(*keys->v));
    if (keys->v == NULL) {
        rc = TG_ENOMEM;
        goto out;
    }
    for (unsigned c = 1; c <= TG_KSP_MD_MAX; c++) {
        keys->md[c] = EVP_MD_fetch(NULL, tg_ksp_md_name(c), "provider=default");
        if (keys->md[c] == NULL) {
            snprintf(err, errlen, "OpenSSL has no %s digest", tg_ksp_md_name(c));
            rc = TG_ECRYPTO;
            goto out;
        }
    }
    for (size_t i = 0; i < conf->n_keys; i++) {
        keys->n = i + 1;
        rc = tg_ks_key_load(&conf->keys[i], &keys->v[i], err, errlen);
        if (rc != TG_OK)
            goto out;
        for (size_t j = 0; j < i; j++) {
            if (memcmp(keys->v[j].id, keys->v[i].id, TG_KSP_KEY_ID) == 0) {
                tg_conf_error(err, errlen, &conf->keys[i].mark, conf->keys[i].path,
                              "the same key as %s (one entry per key)", keys->v[j].path);
                rc = TG_ECONFIG;
                goto out;
            }
        }
        const struct tg_ks_key *k = &keys->v[i];
        TG_INFO("key %s: %s %d-bit, id %s..., provider %s", k->path,
                k->pkey->type == TG_PKEY_RSA ? "RSA" : "EC", k->pkey->bits, k->id_hex,
                k->binding->ops->name);
    }
    qsort(keys->v, keys->n, sizeof(*keys->v), tg_ks_key_cmp);
    *out = keys;
    keys = NULL;
out:
    tg_ks_keys_free(keys);
    return rc;
}

const struct tg_ks_key *tg_ks_keys_find(const struct tg_ks_keys *keys,
                                        const uint8_t id[TG_KSP_KEY_ID])
{
    struct tg_ks_key probe;
    memcpy(probe.id, id, TG_KSP_KEY_ID);
    return bsearch(&probe, keys->v, keys->n, sizeof(*keys->v), tg_ks_key_cmp);
}
