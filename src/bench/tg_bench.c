/*
 * tg_bench: entry point of `tlsgate bench` (see tg_bench.h). Parses the
 * command line and runs the load generator (tg_bench_client.c) or the
 * upstream server (tg_bench_serve.c).
 */
#include "bench/tg_bench.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "bench/tg_bench_internal.h"

int tg_bench_main(int argc, char **argv)
{
    struct tg_bench_opts o;
    char err[TG_BENCH_ERRLEN];
    if (tg_bench_parse_args(argc, argv, &o, err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "tlsgate bench: %s\n\n%s", err, tg_bench_usage());
        return 2;
    }
    if (o.mode == TG_BENCH_MODE_HELP) {
        fputs(tg_bench_usage(), stdout);
        return 0;
    }
    /* libssl writes with write(2): a reset peer must not kill the process. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    return o.mode == TG_BENCH_MODE_SERVE ? tg_bench_run_serve(&o) : tg_bench_run_load(&o);
}
