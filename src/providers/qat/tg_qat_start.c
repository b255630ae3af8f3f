/*
 * qatlib start-up and shut-down (tg_qat_internal.h): load the library, start
 * the process section, discover and start the crypto instances, with what
 * qatlib prints captured; stop everything and free what the device held.
 * Main thread, no worker running (the keyprov contract for global_init /
 * global_cleanup).
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/obj_mac.h>

#include "core/tg_log.h"
#include "providers/qat/tg_qat_internal.h"

struct tg_qat_global tg_qat_g = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* ---- qatlib's own output ---- */

/*
 * qatlib and usdm print their errors ("Cannot open /dev/vfio" on stderr,
 * "ADF_UIO_PROXY err: ..." with printf on stdout). Around the start-up and
 * shut-down calls (main thread, no worker running) both descriptors point at
 * a memfd: the text becomes debug log lines, the first line goes into the
 * reason qat cannot run, and doctor shows all of it, instead of stray lines
 * that break `tlsgate doctor --json` and the one-line error of check-config.
 */
struct tg_qat_capture {
    int fd, saved_out, saved_err;
};

static void tg_qat_capture_begin(struct tg_qat_capture *c)
{
    fflush(stdout);
    fflush(stderr);
    c->saved_out = c->saved_err = -1;
    c->fd = memfd_create("tlsgate-qatlib-output", MFD_CLOEXEC);
    if (c->fd < 0)
        return; /* no capture: their text goes where it goes */
    c->saved_out = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    c->saved_err = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    if (c->saved_out < 0 || c->saved_err < 0 || dup2(c->fd, STDOUT_FILENO) < 0 ||
        dup2(c->fd, STDERR_FILENO) < 0) {
        if (c->saved_out >= 0)
            (void)dup2(c->saved_out, STDOUT_FILENO);
        if (c->saved_err >= 0)
            (void)dup2(c->saved_err, STDERR_FILENO);
    }
}

/* Restore the descriptors; what was printed goes to the debug log and, its
 * lines joined by " | ", into said. */
static void tg_qat_capture_end(struct tg_qat_capture *c, char *said, size_t saidlen)
{
    said[0] = '\0';
    if (c->fd < 0)
        return;
    fflush(stdout);
    fflush(stderr);
    if (c->saved_out >= 0) {
        (void)dup2(c->saved_out, STDOUT_FILENO);
        close(c->saved_out);
    }
    if (c->saved_err >= 0) {
        (void)dup2(c->saved_err, STDERR_FILENO);
        close(c->saved_err);
    }
    char buf[2048];
    ssize_t n = pread(c->fd, buf, sizeof(buf) - 1, 0);
    close(c->fd);
    buf[n > 0 ? n : 0] = '\0';
    size_t used = 0;
    for (char *line = buf; *line != '\0';) {
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        if (line[0] != '\0') {
            TG_DEBUG("qatlib: %s", line);
            int w = snprintf(said + used, saidlen - used, "%s%s", used ? " | " : "", line);
            if (w > 0)
                used = (size_t)w >= saidlen - used ? saidlen - 1 : used + (size_t)w;
        }
        if (nl == NULL)
            break;
        line = nl + 1;
    }
}

/* ---- start-up ---- */

static void tg_qat_copy_name(char *dst, size_t cap, const Cpa8U *src, size_t srclen)
{
    size_t n = 0;
    /* Printable, and safe inside a Prometheus label value. */
    while (n < srclen && n + 1 < cap && src[n] != 0) {
        char c = (src[n] >= 0x20 && src[n] < 0x7f) ? (char)src[n] : '?';
        dst[n] = (c == '"' || c == '\\') ? '_' : c;
        n++;
    }
    dst[n] = '\0';
}

static void tg_qat_stop_all(void)
{
    const struct tg_qat_api *api = tg_qat_g.api;
    for (unsigned i = 0; i < tg_qat_g.ninst; i++) {
        if (tg_qat_g.inst[i].started)
            (void)api->cpaCyStopInstance(tg_qat_g.inst[i].h);
        tg_qat_g.inst[i].started = false;
    }
    (void)api->icp_sal_userStop();
    /* The device can no longer reach any buffer: orphans go now. */
    while (tg_qat_g.orphans != NULL) {
        struct tg_qat_req *next = tg_qat_g.orphans->next;
        tg_qat_req_destroy(tg_qat_g.orphans);
        tg_qat_g.orphans = next;
    }
    while (tg_qat_g.orphan_keys != NULL) {
        struct tg_qat_key *next = tg_qat_g.orphan_keys->orphan_next;
        tg_qat_key_free(tg_qat_g.orphan_keys);
        tg_qat_g.orphan_keys = next;
    }
}

static int tg_qat_fail(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int tg_qat_fail(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    snprintf(tg_qat_g.last_why, sizeof(tg_qat_g.last_why), "%s", why);
    tg_qat_section_reset();
    return TG_EUNAVAIL;
}

/* Query, configure and start instance hs[i] into slot in; false (with the
 * first problem noted in first_err) when it cannot be used. */
static bool tg_qat_start_instance(const struct tg_qat_api *api, CpaInstanceHandle h, unsigned i,
                                  struct tg_qat_inst *in, char *first_err, size_t errlen)
{
    memset(in, 0, sizeof(*in));
    in->h = h;
    CpaInstanceInfo2 info;
    memset(&info, 0, sizeof(info));
    if (api->cpaCyInstanceGetInfo2(h, &info) == CPA_STATUS_SUCCESS) {
        tg_qat_copy_name(in->name, sizeof(in->name), info.instName, sizeof(info.instName));
        tg_qat_copy_name(in->part, sizeof(in->part), info.partName, sizeof(info.partName));
        in->node = (int)info.nodeAffinity;
    } else {
        snprintf(in->name, sizeof(in->name), "cy%u", i);
        in->node = NUMA_ANY_NODE;
    }
    CpaCyCapabilitiesInfo caps;
    memset(&caps, 0, sizeof(caps));
    CpaStatus cs = api->cpaCyQueryCapabilities(h, &caps);
    if (cs != CPA_STATUS_SUCCESS || !caps.rsaSupported) {
        if (first_err[0] == '\0')
            snprintf(first_err, errlen, "instance %u (%s) offers no RSA", i, in->name);
        return false;
    }
    in->ecdsa = caps.ecdsaSupported == CPA_TRUE;
    cs = api->cpaCySetAddressTranslation(h, api->qaeVirtToPhysNUMA);
    if (cs == CPA_STATUS_SUCCESS)
        cs = api->cpaCyStartInstance(h);
    if (cs != CPA_STATUS_SUCCESS) {
        if (first_err[0] == '\0')
            snprintf(first_err, errlen, "cpaCyStartInstance(%s) failed (%s)", in->name,
                     tg_qat_status_name(cs));
        if (tg_qat_g.nwarned < TG_ARRAY_LEN(tg_qat_g.warned)) {
            /* Logged after the capture ends: stderr is the memfd now. */
            char msg[sizeof(tg_qat_g.warned[0])];
            snprintf(msg, sizeof(msg), "qat: instance %u (%s) does not start (%s); not used", i,
                     in->name, tg_qat_status_name(cs));
            memcpy(tg_qat_g.warned[tg_qat_g.nwarned++], msg, sizeof(msg));
        }
        return false;
    }
    in->started = true;
    return true;
}

static int tg_qat_start(char *why, size_t whylen)
{
    const struct tg_qat_api *api = NULL;
    char lwhy[256] = "";
    tg_qat_g.last_why[0] = '\0';
    tg_qat_g.start_tried = false;
    tg_qat_g.seen_inst = 0;
    tg_qat_g.ninst = 0;
    /* Resolve afresh: a failed earlier start-up never ran global_cleanup. */
    tg_qat_unload();
    if (tg_qat_load(&api, lwhy, sizeof(lwhy)) != TG_OK)
        return tg_qat_fail(why, whylen, "%s", lwhy);
    tg_qat_g.api = api;
    tg_qat_g.start_tried = true;
    tg_qat_g.start_status = api->icp_sal_userStart(tg_qat_section());
    if (tg_qat_g.start_status != CPA_STATUS_SUCCESS) {
        return tg_qat_fail(why, whylen,
                           "icp_sal_userStart(\"%s\") failed (%s): no QAT device this process "
                           "can use (run `tlsgate doctor`)",
                           tg_qat_section(), tg_qat_status_name(tg_qat_g.start_status));
    }
    Cpa16U n = 0;
    CpaInstanceHandle hs[TG_QAT_MAX_INSTANCES];
    CpaStatus cs = api->cpaCyGetNumInstances(&n);
    if (cs != CPA_STATUS_SUCCESS || n == 0) {
        (void)api->icp_sal_userStop();
        return tg_qat_fail(
            why, whylen, "qatlib started but offers no crypto instance in section \"%s\" (%s)",
            tg_qat_section(), cs != CPA_STATUS_SUCCESS ? tg_qat_status_name(cs) : "0 instances");
    }
    if (n > TG_QAT_MAX_INSTANCES)
        n = TG_QAT_MAX_INSTANCES;
    tg_qat_g.seen_inst = n;
    cs = api->cpaCyGetInstances(n, hs);
    if (cs != CPA_STATUS_SUCCESS) {
        (void)api->icp_sal_userStop();
        return tg_qat_fail(why, whylen, "cpaCyGetInstances(%u) failed (%s)", (unsigned)n,
                           tg_qat_status_name(cs));
    }
    bool ecdsa = api->cpaCyEcdsaSignRS != NULL;
    char first_err[160] = "";
    unsigned ok = 0;
    for (unsigned i = 0; i < n; i++) {
        struct tg_qat_inst *in = &tg_qat_g.inst[ok];
        if (!tg_qat_start_instance(api, hs[i], i, in, first_err, sizeof(first_err)))
            continue;
        ecdsa = ecdsa && in->ecdsa;
        ok++;
    }
    tg_qat_g.ninst = ok;
    if (ok == 0) {
        (void)api->icp_sal_userStop();
        return tg_qat_fail(why, whylen, "no usable QAT crypto instance: %s", first_err);
    }
    tg_qat_g.ecdsa = ecdsa;
    tg_qat_g.retired = calloc(ok, sizeof(*tg_qat_g.retired));
    if (tg_qat_g.retired == NULL) {
        tg_qat_stop_all();
        tg_qat_g.ninst = 0;
        return tg_qat_fail(why, whylen, "out of memory");
    }
    tg_qat_g.up = true;
    return TG_OK;
}

int tg_qat_global_init(char *why, size_t whylen)
{
    struct tg_qat_capture cap;
    tg_qat_g.nwarned = 0;
    tg_qat_capture_begin(&cap);
    int rc = tg_qat_start(why, whylen);
    tg_qat_capture_end(&cap, tg_qat_g.said, sizeof(tg_qat_g.said));
    for (unsigned i = 0; i < tg_qat_g.nwarned; i++)
        TG_WARN("%s", tg_qat_g.warned[i]);
    if (rc != TG_OK && tg_qat_g.said[0] != '\0') {
        /* qatlib's first line usually names the cause (no /dev/vfio, ...). */
        size_t len = strlen(why), first = strcspn(tg_qat_g.said, "|");
        while (first > 0 && tg_qat_g.said[first - 1] == ' ')
            first--;
        if (len + 12 < whylen)
            snprintf(why + len, whylen - len, "; qatlib: %.*s", (int)first, tg_qat_g.said);
        snprintf(tg_qat_g.last_why, sizeof(tg_qat_g.last_why), "%s", why);
    }
    if (rc == TG_OK)
        TG_INFO("qat: %s: section \"%s\", %u crypto instance(s) started (%s)%s", tg_qat_lib_path(),
                tg_qat_section(), tg_qat_g.ninst, tg_qat_g.inst[0].part,
                tg_qat_g.ecdsa ? "" : "; ECDSA not offered: EC keys stay in software");
    return rc;
}

void tg_qat_global_cleanup(void)
{
    if (!tg_qat_g.up)
        return;
    pthread_mutex_lock(&tg_qat_g.lock);
    bool workers_left = tg_qat_g.workers != NULL;
    pthread_mutex_unlock(&tg_qat_g.lock);
    if (workers_left)
        TG_ERROR("qat: global cleanup while workers still run");
    struct tg_qat_capture cap;
    char said[512];
    tg_qat_capture_begin(&cap);
    tg_qat_stop_all();
    tg_qat_capture_end(&cap, said, sizeof(said));
    free(tg_qat_g.retired);
    tg_qat_g.retired = NULL;
    tg_qat_g.ninst = 0;
    tg_qat_g.up = false;
    tg_qat_g.ecdsa = false;
    tg_qat_section_reset();
    tg_qat_unload();
}

int tg_qat_supports_key(const struct tg_pkey *key, char *why, size_t whylen)
{
    if (key->type == TG_PKEY_RSA) {
        int pb = key->p ? BN_num_bits(key->p) : 0, qb = key->q ? BN_num_bits(key->q) : 0;
        if (key->bits != 2048 && key->bits != 3072 && key->bits != 4096) {
            snprintf(why, whylen, "RSA-%d: qat takes 2048, 3072 and 4096-bit RSA keys", key->bits);
            return TG_EUNAVAIL;
        }
        if (key->dmp1 == NULL || key->dmq1 == NULL || key->iqmp == NULL || pb != key->bits / 2 ||
            qb != key->bits / 2) {
            snprintf(why, whylen,
                     "RSA-%d key without two %d-bit primes and CRT parameters (primes of %d and "
                     "%d bits)",
                     key->bits, key->bits / 2, pb, qb);
            return TG_EUNAVAIL;
        }
        return TG_OK;
    }
    if (key->curve_nid != NID_X9_62_prime256v1 && key->curve_nid != NID_secp384r1) {
        snprintf(why, whylen, "%s: qat signs with P-256 and P-384 keys only",
                 key->group ? key->group : "this curve");
        return TG_EUNAVAIL;
    }
    if (!tg_qat_g.ecdsa) {
        snprintf(why, whylen, "%s",
                 tg_qat_g.api != NULL && tg_qat_g.api->cpaCyEcdsaSignRS == NULL
                     ? "this qatlib has no cpaCyEcdsaSignRS"
                     : "the QAT instances do not offer ECDSA");
        return TG_EUNAVAIL;
    }
    return TG_OK;
}
