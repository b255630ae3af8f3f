/*
 * libFuzzer target: the admin endpoint's request-head parser
 * (src/admin/tg_admin_http.h). Besides "no crash, no sanitizer report" it
 * checks the parser's contract, so a logic slip aborts too:
 *   - the result is one of ERROR / NEED_MORE / COMPLETE, and deterministic;
 *   - COMPLETE: 0 < head_len <= min(size, TG_ADMIN_HEAD_MAX), every field in
 *     range, the head alone parses the same, and the head minus its last byte
 *     needs more (no early completion);
 *   - ERROR: status is 400, 431 or 505; 431 only at the size limit;
 *   - NEED_MORE only below the size limit.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "admin/tg_admin_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct tg_admin_req req, again;
    int rc = tg_admin_parse_request(buf, size, &req);
    CHECK(rc == TG_ADMIN_PARSE_ERROR || rc == TG_ADMIN_PARSE_NEED_MORE ||
          rc == TG_ADMIN_PARSE_COMPLETE);
    CHECK(tg_admin_parse_request(buf, size, &again) == rc);
    CHECK(memcmp(&req, &again, sizeof(req)) == 0);

    switch (rc) {
    case TG_ADMIN_PARSE_COMPLETE:
        CHECK(req.head_len > 0 && req.head_len <= size && req.head_len <= TG_ADMIN_HEAD_MAX);
        CHECK(req.status == 0 && req.error == NULL);
        CHECK(req.version_minor == 0 || req.version_minor == 1);
        CHECK(req.method == TG_ADMIN_M_GET || req.method == TG_ADMIN_M_HEAD ||
              req.method == TG_ADMIN_M_OTHER);
        CHECK(req.route >= TG_ADMIN_R_INDEX && req.route <= TG_ADMIN_R_UNKNOWN);
        CHECK(tg_admin_parse_request(buf, req.head_len, &again) == TG_ADMIN_PARSE_COMPLETE);
        CHECK(again.head_len == req.head_len && again.method == req.method &&
              again.route == req.route);
        CHECK(tg_admin_parse_request(buf, req.head_len - 1, &again) == TG_ADMIN_PARSE_NEED_MORE);
        break;
    case TG_ADMIN_PARSE_ERROR:
        CHECK(req.status == 400 || req.status == 431 || req.status == 505);
        CHECK(req.error != NULL);
        CHECK(req.status != 431 || size >= TG_ADMIN_HEAD_MAX);
        break;
    default:
        CHECK(size < TG_ADMIN_HEAD_MAX);
        break;
    }
    (void)tg_admin_method_name(req.method);
    (void)tg_admin_route_name(req.route);
    return 0;
}
