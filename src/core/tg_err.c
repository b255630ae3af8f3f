#include "core/tg_err.h"

#include <stdio.h>
#include <stdlib.h>

struct tg_err_info {
    int code;
    enum tg_err_class cls;
    const char *name;
    const char *text;
};

static const struct tg_err_info tg_err_table[] = {
#define TG_ERR_ROW(name, value, cls, text) {value, cls, #name, text},
    TG_ERR_LIST(TG_ERR_ROW)
#undef TG_ERR_ROW
};

static const struct tg_err_info *tg_err_lookup(int err)
{
    for (size_t i = 0; i < TG_ARRAY_LEN(tg_err_table); i++) {
        if (tg_err_table[i].code == err)
            return &tg_err_table[i];
    }
    return NULL;
}

const char *tg_strerror(int err)
{
    const struct tg_err_info *e = tg_err_lookup(err);
    return e ? e->text : "unknown error";
}

const char *tg_errname(int err)
{
    const struct tg_err_info *e = tg_err_lookup(err);
    return e ? e->name : "TG_E?";
}

enum tg_err_class tg_errclass(int err)
{
    const struct tg_err_info *e = tg_err_lookup(err);
    return e ? e->cls : TG_ECLASS_INTERNAL;
}

void tg_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "tlsgate: internal error: assertion '%s' failed at %s:%d\n", expr, file, line);
    abort();
}
