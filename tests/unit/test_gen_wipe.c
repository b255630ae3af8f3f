/*
 * Building a configuration generation leaves no copy of a private key in
 * memory: the file is read into a buffer that is wiped when the key is
 * loaded (tg_config_wipe_keys from tg_gen_new), and OpenSSL's decoding copies
 * are wiped by tg_wipe. Checked by reading the process's own heap
 * (tg_test_memory_count) for a line of the key's base64 text and 32 bytes of
 * its DER. The key reaches the file from this test's stack only.
 */
#include "tg_test_util.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <string.h>
#include <unistd.h>

#include "config/tg_config.h"
#include "core/tg_wipe.h"
#include "keyprov/tg_keyprov.h"
#include "ossl/tg_ossl.h"
#include "proxy/tg_gen.h"
#include "providers/software/tg_software.h"

static int dummy_async_cb(SSL *s, void *arg)
{
    (void)s;
    (void)arg;
    return 1;
}

/* Write without stdio (whose buffer would be freed unwiped). */
static void write_raw(const char *path, const char *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void test_gen_wipes_keys(void **state)
{
    (void)state;
    char pem[4096], line[65], kpath[512], cpath[512], cfgpath[512], yaml[2048];
    unsigned char der[32];
    char *cert = NULL;
    size_t len = tg_test_key_pem_nocopy(pem, sizeof(pem), &cert);
    tg_test_key_needles(pem, line, der);
    snprintf(kpath, sizeof(kpath), "%s/w.key", tg_test_tmpdir());
    snprintf(cpath, sizeof(cpath), "%s/w.crt", tg_test_tmpdir());
    snprintf(cfgpath, sizeof(cfgpath), "%s/gw.yaml", tg_test_tmpdir());
    write_raw(kpath, pem, len, 0600);
    write_raw(cpath, cert, strlen(cert), 0644);
    free(cert);
    OPENSSL_cleanse(pem, sizeof(pem));
    int n = snprintf(yaml, sizeof(yaml),
                     "listeners:\n"
                     "  - address: 127.0.0.1:0\n"
                     "    tls:\n"
                     "      certificates:\n"
                     "        - certificate_chain: { filename: %s }\n"
                     "          private_key: { filename: %s }\n"
                     "    upstream: { address: 127.0.0.1:9 }\n",
                     cpath, kpath);
    write_raw(cfgpath, yaml, (size_t)n, 0600);
    assert_int_equal(tg_test_memory_count(line, 64), 0);
    assert_int_equal(tg_test_memory_count(der, sizeof(der)), 0);

    struct tg_config *cfg = NULL;
    char err[TG_CONFIG_ERRLEN] = "";
    assert_int_equal(tg_config_load_file(cfgpath, &cfg, err, sizeof(err)), TG_OK);
    /* Loaded, not yet used: the PEM text is in the configuration. */
    const struct tg_conf_datasource *ds = &cfg->listeners[0].tls.certs[0].private_key;
    assert_non_null(ds->data);
    assert_int_equal(tg_test_memory_count(line, 64), 1);
    assert_true(ds->has_stat);
    assert_int_equal(ds->mode, 0600);

    struct tg_gen *g = NULL;
    assert_int_equal(tg_gen_new(cfg, 1, dummy_async_cb, &g, err, sizeof(err)), TG_OK);
    ds = &g->cfg->listeners[0].tls.certs[0].private_key;
    assert_null(ds->data);
    assert_int_equal(ds->data_len, 0);
    assert_non_null(ds->path); /* still known, for the file watcher */
    assert_int_equal(tg_test_memory_count(line, 64), 0);
    assert_int_equal(tg_test_memory_count(der, sizeof(der)), 0);
    tg_gen_unref(g);
    assert_int_equal(tg_test_memory_count(line, 64), 0);
    assert_int_equal(tg_test_memory_count(der, sizeof(der)), 0);
}

int main(void)
{
    if (tg_wipe_install() != TG_OK) {
        fprintf(stderr, "tg_wipe_install failed: OpenSSL allocated already\n");
        return 1;
    }
    TG_TEST_REGISTER_PROVIDERS(&tg_software_provider);
    if (tg_ossl_init() != TG_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gen_wipes_keys),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tg_keyprov_shutdown();
    tg_ossl_cleanup();
    return rc;
}
