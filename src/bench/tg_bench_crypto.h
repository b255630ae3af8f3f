/* tg_bench_crypto: `tlsgate bench-crypto`, the private-key microbenchmark. */
#ifndef TG_BENCH_CRYPTO_H
#define TG_BENCH_CRYPTO_H

/* argv[0] is "bench-crypto". Returns 0, 1 if an operation failed, 2 on usage. */
int tg_bench_crypto_main(int argc, char **argv);

#endif
