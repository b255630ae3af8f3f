/*
 * tg_bench: `tlsgate bench`, the load generator (fortio-like), and
 * `tlsgate bench --serve ADDR`, the trivial HTTP/1.1 upstream used by the demo
 * and the tests. Both run one libev loop on the calling thread.
 */
#ifndef TG_BENCH_H
#define TG_BENCH_H

/* argv[0] is "bench". Returns the process exit status: 0 the run completed
 * (even if some calls failed) or the server was stopped by SIGINT/SIGTERM;
 * 1 not a single call succeeded (e.g. the target is unreachable), or a fatal
 * error (cannot listen, cannot write --json); 2 usage error (message and
 * usage on stderr). Output format: docs/BENCH.md. */
int tg_bench_main(int argc, char **argv);

#endif
