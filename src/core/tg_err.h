/*
 * tg_err: status codes for every fallible tlsgate function.
 *
 * Functions return int: TG_OK (0) on success, a negative TG_E* code on failure.
 * Details (which key, which file, OpenSSL's queue) travel beside the status:
 * in the log, or in an error buffer the caller provides. Each code has a class
 * so callers can decide what to do without enumerating codes.
 */
#ifndef TG_ERR_H
#define TG_ERR_H

#include <stddef.h>

#define TG_MUST_CHECK __attribute__((warn_unused_result))

enum tg_err_class {
    TG_ECLASS_OK,
    TG_ECLASS_IO,       /* a system call failed; errno-like */
    TG_ECLASS_CLOSED,   /* the peer went away */
    TG_ECLASS_BLOCKED,  /* try again later (would block, pending) */
    TG_ECLASS_PROTOCOL, /* the peer sent something we refuse */
    TG_ECLASS_CONFIG,   /* configuration or input from the operator is wrong */
    TG_ECLASS_INTERNAL, /* a bug, an allocation failure, or a library failure */
};

/* X(name, value, class, text) */
#define TG_ERR_LIST(X)                                                                             \
    X(TG_OK, 0, TG_ECLASS_OK, "success")                                                           \
    X(TG_EIO, -1, TG_ECLASS_IO, "input/output error")                                              \
    X(TG_ECLOSED, -2, TG_ECLASS_CLOSED, "connection closed by peer")                               \
    X(TG_EAGAIN, -3, TG_ECLASS_BLOCKED, "operation would block")                                   \
    X(TG_EPENDING, -4, TG_ECLASS_BLOCKED, "operation pending")                                     \
    X(TG_EPROTO, -5, TG_ECLASS_PROTOCOL, "protocol error")                                         \
    X(TG_ECONFIG, -6, TG_ECLASS_CONFIG, "invalid configuration")                                   \
    X(TG_ENOMEM, -7, TG_ECLASS_INTERNAL, "out of memory")                                          \
    X(TG_EINVAL, -8, TG_ECLASS_INTERNAL, "invalid argument")                                       \
    X(TG_ECRYPTO, -9, TG_ECLASS_INTERNAL, "cryptographic library failure")                         \
    X(TG_EUNAVAIL, -10, TG_ECLASS_CONFIG, "not available on this machine")                         \
    X(TG_ESTATE, -11, TG_ECLASS_INTERNAL, "operation used in the wrong state")                     \
    X(TG_ETIMEOUT, -12, TG_ECLASS_IO, "timed out")                                                 \
    X(TG_ELIMIT, -13, TG_ECLASS_BLOCKED, "limit reached")                                          \
    X(TG_ECANCELED, -14, TG_ECLASS_CLOSED, "operation canceled")                                   \
    X(TG_EDEVICE, -15, TG_ECLASS_IO, "device or accelerator failure")

enum tg_err {
#define TG_ERR_ENUM(name, value, cls, text) name = value,
    TG_ERR_LIST(TG_ERR_ENUM)
#undef TG_ERR_ENUM
};

/* Human-readable text of a status code; never NULL. */
const char *tg_strerror(int err);
/* Symbolic name ("TG_EPROTO"); never NULL. */
const char *tg_errname(int err);
enum tg_err_class tg_errclass(int err);

/* Early return on failure: TG_GUARD(expr) returns expr's status if negative. */
#define TG_GUARD(expr)                                                                             \
    do {                                                                                           \
        int tg_guard_rc_ = (expr);                                                                 \
        if (tg_guard_rc_ < 0)                                                                      \
            return tg_guard_rc_;                                                                   \
    } while (0)

/* TG_ENSURE(cond, err): return err unless cond holds. */
#define TG_ENSURE(cond, err)                                                                       \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return (err);                                                                          \
    } while (0)

/* Internal invariants only; never for external input. */
void tg_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));
#define TG_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            tg_assert_fail(#cond, __FILE__, __LINE__);                                             \
    } while (0)

#define TG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
