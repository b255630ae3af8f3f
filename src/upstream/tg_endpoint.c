/*
 * tg_endpoint: socket-address helpers for endpoints. Contract in
 * tg_endpoint.h; an endpoint's life is tg_cluster's.
 */
#include "upstream/tg_endpoint.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

void tg_sockaddr_text(const union tg_sockaddr *a, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (a->sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &a->sin6.sin6_addr, host, sizeof(host));
        snprintf(buf, len, "[%s]:%u", host, (unsigned)ntohs(a->sin6.sin6_port));
    } else {
        inet_ntop(AF_INET, &a->sin.sin_addr, host, sizeof(host));
        snprintf(buf, len, "%s:%u", host, (unsigned)ntohs(a->sin.sin_port));
    }
}

int tg_sockaddr_cmp(const union tg_sockaddr *a, const union tg_sockaddr *b)
{
    if (a->sa.sa_family != b->sa.sa_family)
        return a->sa.sa_family < b->sa.sa_family ? -1 : 1;
    int c;
    uint16_t pa, pb;
    if (a->sa.sa_family == AF_INET6) {
        c = memcmp(&a->sin6.sin6_addr, &b->sin6.sin6_addr, sizeof(a->sin6.sin6_addr));
        if (c == 0 && a->sin6.sin6_scope_id != b->sin6.sin6_scope_id)
            c = a->sin6.sin6_scope_id < b->sin6.sin6_scope_id ? -1 : 1;
        pa = ntohs(a->sin6.sin6_port);
        pb = ntohs(b->sin6.sin6_port);
    } else {
        c = memcmp(&a->sin.sin_addr, &b->sin.sin_addr, sizeof(a->sin.sin_addr));
        pa = ntohs(a->sin.sin_port);
        pb = ntohs(b->sin.sin_port);
    }
    if (c != 0)
        return c < 0 ? -1 : 1;
    return pa < pb ? -1 : pa > pb;
}

bool tg_sockaddr_equal(const union tg_sockaddr *a, const union tg_sockaddr *b)
{
    return tg_sockaddr_cmp(a, b) == 0;
}
