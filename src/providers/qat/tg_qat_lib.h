/*
 * tg_qat: the shim in front of Intel's qatlib (libqat.so.4) and its memory
 * driver usdm (libusdm.so.0), for the qat key provider (tg_qat_*.c).
 *
 * tlsgate never links qatlib: it dlopen()s both libraries at run time and
 * calls them through struct tg_qat_api, a table of exactly the functions the
 * provider uses. Each member has the type of the real prototype
 * (__typeof__ of the function declared by qatlib's own headers), so a
 * mismatch with the headers cannot compile. The headers are needed at build
 * time (TG_HAVE_QAT_H, set by CMake when qat/cpa.h is found); without them
 * the provider reports "built without qatlib headers".
 *
 * Where the libraries come from (first hit wins; usdm is loaded before
 * libqat, from the same place, because libqat needs libusdm.so.0):
 *   1. $TG_QAT_LIB_DIR/libusdm.so.0 + libqat.so.4, when the variable is set
 *      (and only there: an explicit directory that fails is an error);
 *   2. the plain sonames, i.e. LD_LIBRARY_PATH, the ld.so cache and the
 *      system directories (a distribution's qatlib, or a fake library put in
 *      front with LD_LIBRARY_PATH);
 *   3. TG_DEPS_LIBDIR, the project-local prefix where scripts/setup.sh
 *      unpacks the Debian 13 packages on older systems.
 * The sonames come before the project prefix so that LD_LIBRARY_PATH and a
 * system installation (which matches the machine's driver and qatmgr) win
 * over the copy made for building.
 *
 * Tests can also bypass dlopen with tg_qat_install().
 *
 * The libraries are never dlclose()d: qatlib keeps device mappings and may
 * hold threads; unmapping its code under them is not safe.
 *
 * Threading: tg_qat_load / tg_qat_install / tg_qat_unload at start-up or
 * shut-down on one thread (the keyprov contract: global_init / cleanup on the
 * main thread). The returned table is immutable and may be used from any
 * thread; qatlib's own functions are thread-safe as documented by Intel.
 */
#ifndef TG_QAT_LIB_H
#define TG_QAT_LIB_H

#include <stdbool.h>
#include <stddef.h>

#include "core/tg_err.h"

/* Whether this build had the qatlib headers (TG_HAVE_QAT_H). */
bool tg_qat_have_headers(void);

#ifdef TG_HAVE_QAT_H

#include <cpa.h>
#include <cpa_cy_common.h>
#include <cpa_cy_ecdsa.h>
#include <cpa_cy_im.h>
#include <cpa_cy_rsa.h>
#include <icp_sal_poll.h>
#include <icp_sal_user.h>
#include <qae_mem.h>

#define TG_QAT_SONAME  "libqat.so.4"
#define TG_USDM_SONAME "libusdm.so.0"

/*
 * X(function, required): every qatlib function tlsgate calls. An optional
 * function that the library lacks is NULL in the table (cpaCyEcdsaSignRS:
 * then ECDSA keys are not offloaded).
 */
#define TG_QAT_LIB_FUNCS(X)                                                                        \
    X(icp_sal_userStart, 1)                                                                        \
    X(icp_sal_userStop, 1)                                                                         \
    X(cpaCyGetNumInstances, 1)                                                                     \
    X(cpaCyGetInstances, 1)                                                                        \
    X(cpaCyInstanceGetInfo2, 1)                                                                    \
    X(cpaCyQueryCapabilities, 1)                                                                   \
    X(cpaCySetAddressTranslation, 1)                                                               \
    X(cpaCyStartInstance, 1)                                                                       \
    X(cpaCyStopInstance, 1)                                                                        \
    X(cpaCyRsaDecrypt, 1)                                                                          \
    X(cpaCyEcdsaSignRS, 0)                                                                         \
    X(icp_sal_CyPollInstance, 1)

/* X(function, required): every usdm function tlsgate calls. */
#define TG_USDM_FUNCS(X)                                                                           \
    X(qaeMemAllocNUMA, 1)                                                                          \
    X(qaeMemFreeNUMA, 1)                                                                           \
    X(qaeVirtToPhysNUMA, 1)

struct tg_qat_api {
#define TG_QAT_API_FIELD(fn, required) __typeof__(&fn) fn;
    TG_QAT_LIB_FUNCS(TG_QAT_API_FIELD)
    TG_USDM_FUNCS(TG_QAT_API_FIELD)
#undef TG_QAT_API_FIELD
};

/*
 * Load the libraries (search order above) and resolve the table. Once a
 * load succeeded, later calls return the same table until tg_qat_unload().
 * Returns TG_OK with *api set, or TG_EUNAVAIL with a one-line reason in why
 * (which libraries were tried and what dlopen/dlsym said).
 */
int tg_qat_load(const struct tg_qat_api **api, char *why, size_t whylen) TG_MUST_CHECK;

/* Where libqat.so.4 was loaded from ("installed table" after
 * tg_qat_install); "" when nothing is loaded. Static storage. */
const char *tg_qat_lib_path(void);

/*
 * Tests: make tg_qat_load() return this table instead of loading anything
 * (NULL: back to dlopen). The table must outlive its use. Also forgets a
 * table loaded before.
 */
void tg_qat_install(const struct tg_qat_api *api);

/* Forget the loaded table so the next tg_qat_load() resolves again (the
 * libraries stay mapped). */
void tg_qat_unload(void);

/* "CPA_STATUS_RETRY", ...; "CPA_STATUS_<n>" for unknown values (static or
 * thread-local storage). */
const char *tg_qat_status_name(CpaStatus st);

#endif /* TG_HAVE_QAT_H */

#endif
