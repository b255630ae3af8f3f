/*
 * qatlib shim: dlopen both libraries in the documented order (tg_qat_lib.h) and
 * resolve exactly the functions the qat provider calls.
 */
#include "providers/qat/tg_qat_lib.h"

bool tg_qat_have_headers(void)
{
#ifdef TG_HAVE_QAT_H
    return true;
#else
    return false;
#endif
}

#ifdef TG_HAVE_QAT_H

#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TG_DEPS_LIBDIR
#define TG_DEPS_LIBDIR ""
#endif

static struct tg_qat_api tg_qat_table;
static const struct tg_qat_api *tg_qat_loaded;    /* NULL: not loaded */
static const struct tg_qat_api *tg_qat_installed; /* tests */
static char tg_qat_path[512];

const char *tg_qat_lib_path(void)
{
    return tg_qat_loaded != NULL ? tg_qat_path : "";
}

void tg_qat_install(const struct tg_qat_api *api)
{
    tg_qat_installed = api;
    tg_qat_loaded = NULL;
    tg_qat_path[0] = '\0';
}

void tg_qat_unload(void)
{
    tg_qat_loaded = NULL;
    tg_qat_path[0] = '\0';
}

const char *tg_qat_status_name(CpaStatus st)
{
    switch (st) {
    case CPA_STATUS_SUCCESS:
        return "CPA_STATUS_SUCCESS";
    case CPA_STATUS_FAIL:
        return "CPA_STATUS_FAIL";
    case CPA_STATUS_RETRY:
        return "CPA_STATUS_RETRY";
    case CPA_STATUS_RESOURCE:
        return "CPA_STATUS_RESOURCE";
    case CPA_STATUS_INVALID_PARAM:
        return "CPA_STATUS_INVALID_PARAM";
    case CPA_STATUS_FATAL:
        return "CPA_STATUS_FATAL";
    case CPA_STATUS_UNSUPPORTED:
        return "CPA_STATUS_UNSUPPORTED";
    case CPA_STATUS_RESTARTING:
        return "CPA_STATUS_RESTARTING";
    default: {
        static _Thread_local char buf[32];
        snprintf(buf, sizeof(buf), "CPA_STATUS_%d", (int)st);
        return buf;
    }
    }
}

/* dlopen usdm then libqat from dir ("" = by soname). On failure writes what
 * dlopen said into why and returns false; nothing stays half-loaded in the
 * table (handles are not closed: see tg_qat_lib.h). */
static bool tg_qat_open(const char *dir, void **usdm, void **qat, char *why, size_t whylen)
{
    char upath[512], qpath[512];
    if (dir[0] != '\0') {
        snprintf(upath, sizeof(upath), "%s/%s", dir, TG_USDM_SONAME);
        snprintf(qpath, sizeof(qpath), "%s/%s", dir, TG_QAT_SONAME);
    } else {
        snprintf(upath, sizeof(upath), "%s", TG_USDM_SONAME);
        snprintf(qpath, sizeof(qpath), "%s", TG_QAT_SONAME);
    }
    /* usdm first: libqat's DT_NEEDED libusdm.so.0 is then satisfied by the
     * copy already mapped (matched by soname), whatever the search path. */
    *usdm = dlopen(upath, RTLD_NOW | RTLD_LOCAL);
    if (*usdm == NULL) {
        const char *e = dlerror();
        snprintf(why, whylen, "%.240s", e ? e : upath);
        return false;
    }
    *qat = dlopen(qpath, RTLD_NOW | RTLD_LOCAL);
    if (*qat == NULL) {
        const char *e = dlerror();
        snprintf(why, whylen, "%.240s", e ? e : qpath);
        return false;
    }
    /* The file the dynamic linker actually chose, for logs and doctor. */
    struct link_map *lm = NULL;
    if (dlinfo(*qat, RTLD_DI_LINKMAP, &lm) == 0 && lm != NULL && lm->l_name != NULL &&
        lm->l_name[0] != '\0')
        snprintf(tg_qat_path, sizeof(tg_qat_path), "%s", lm->l_name);
    else
        snprintf(tg_qat_path, sizeof(tg_qat_path), "%s", qpath);
    return true;
}

static bool tg_qat_resolve(void *usdm, void *qat, char *why, size_t whylen)
{
    struct tg_qat_api t;
    memset(&t, 0, sizeof(t));
    void *sym;
    /* POSIX: a void * from dlsym converts to a function pointer; the copy
     * through memcpy keeps -Wpedantic quiet about object/function casts. */
#define TG_QAT_RESOLVE(handle, fn, required)                                                       \
    sym = dlsym(handle, #fn);                                                                      \
    if (sym == NULL && (required)) {                                                               \
        snprintf(why, whylen, "%s lacks %s", tg_qat_path, #fn);                                    \
        return false;                                                                              \
    }                                                                                              \
    memcpy(&t.fn, &sym, sizeof(sym));
#define TG_QAT_RESOLVE_QAT(fn, required)  TG_QAT_RESOLVE(qat, fn, required)
#define TG_QAT_RESOLVE_USDM(fn, required) TG_QAT_RESOLVE(usdm, fn, required)
    TG_QAT_LIB_FUNCS(TG_QAT_RESOLVE_QAT)
    TG_USDM_FUNCS(TG_QAT_RESOLVE_USDM)
#undef TG_QAT_RESOLVE_USDM
#undef TG_QAT_RESOLVE_QAT
#undef TG_QAT_RESOLVE
    tg_qat_table = t;
    return true;
}

int tg_qat_load(const struct tg_qat_api **api, char *why, size_t whylen)
{
    *api = NULL;
    if (tg_qat_loaded != NULL) {
        *api = tg_qat_loaded;
        return TG_OK;
    }
    if (tg_qat_installed != NULL) {
        snprintf(tg_qat_path, sizeof(tg_qat_path), "installed table");
        *api = tg_qat_loaded = tg_qat_installed;
        return TG_OK;
    }
    void *usdm = NULL, *qat = NULL;
    char e1[256] = "", e2[256] = "";
    const char *env = getenv("TG_QAT_LIB_DIR");
    bool ok;
    if (env != NULL && env[0] != '\0') {
        ok = tg_qat_open(env, &usdm, &qat, e1, sizeof(e1));
        if (!ok) {
            snprintf(why, whylen, "cannot load qatlib from TG_QAT_LIB_DIR=%s: %s", env, e1);
            return TG_EUNAVAIL;
        }
    } else {
        ok = tg_qat_open("", &usdm, &qat, e1, sizeof(e1));
        if (!ok && TG_DEPS_LIBDIR[0] != '\0')
            ok = tg_qat_open(TG_DEPS_LIBDIR, &usdm, &qat, e2, sizeof(e2));
        if (!ok) {
            snprintf(why, whylen,
                     "qatlib not installed (%s%s%s); install libqat4 + libusdm0 or run "
                     "scripts/setup.sh",
                     e1, e2[0] ? "; " : "", e2);
            return TG_EUNAVAIL;
        }
    }
    if (!tg_qat_resolve(usdm, qat, why, whylen)) {
        tg_qat_path[0] = '\0';
        return TG_EUNAVAIL;
    }
    *api = tg_qat_loaded = &tg_qat_table;
    return TG_OK;
}

#endif /* TG_HAVE_QAT_H */
