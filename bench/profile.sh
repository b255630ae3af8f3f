#!/usr/bin/env bash
# bench/profile.sh: where one full handshake's CPU goes inside the gateway,
# by shared object and by symbol, from `perf record --call-graph dwarf`.
#
# The gateway (one worker, PROVIDER) runs pinned to CPU 1 in a cgroup-v1
# group capped at QUOTA (50% of a CPU by default, so it saturates before
# the client and batching providers fill their batches as in compare.sh);
# `tlsgate bench -c C` (TLS 1.3, X25519, RSA-2048, one request per new
# connection) and the upstream run on CPU 0. After a warmup, perf samples
# the gateway (every thread, kernel included) for SECONDS while the
# gateway's cgroup CPU and the client's handshakes are counted over the same
# window, so each share turns into microseconds per handshake:
#   µs/hs = share of samples x proxy CPU-seconds / handshakes.
#
#   bench/profile.sh [TLSGATE] [PROVIDER] [SECONDS]   (build/tlsgate, cryptomb, 10)
#   env: TG_PROF_CONNS (64), TG_PROF_QUOTA_US (50000), TG_PROF_OUT (bench/results),
#        TG_PROF_CERT (rsa:2048 | ec), TG_PROF_KEEP_TMP,
#        TG_PROF_WORKERS (1: the gateway's concurrency), TG_PROF_GW_CPUS (1),
#        TG_PROF_CLIENT_CPUS (0: the client's and the upstream's CPUs)
# Two workers, as bench/scaling.sh runs them (both CPUs, shared with the
# client, twice the quota): TG_PROF_WORKERS=2 TG_PROF_GW_CPUS=0-1
# TG_PROF_CLIENT_CPUS=0-1 TG_PROF_QUOTA_US=100000; two workers on CPU 1
# alone (what two loops cost without a second CPU): TG_PROF_WORKERS=2.
# Needs root (perf, cgroups), perf, jq, openssl. Writes
# profile-<ts>-<provider>.{data,dso.txt,sym.txt,md} into TG_PROF_OUT.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
case "${1:-}" in -h | --help)
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 0
  ;;
esac
TLSGATE=$(realpath "${1:-$here/../build/tlsgate}")
PROVIDER=${2:-cryptomb}
SECONDS_=${3:-10}
CONNS=${TG_PROF_CONNS:-64}
QUOTA_US=${TG_PROF_QUOTA_US:-50000}
PERIOD_US=100000
OUT=${TG_PROF_OUT:-$here/results}
CERT=${TG_PROF_CERT:-rsa:2048}
WORKERS=${TG_PROF_WORKERS:-1}
GW_CPUS=${TG_PROF_GW_CPUS:-1}
CL_CPUS=${TG_PROF_CLIENT_CPUS:-0}
TG_LIB_PROG=profile.sh
KEEP_TMP=${TG_PROF_KEEP_TMP:-0}
RUN_ID=tgprof$$
. "$here/lib.sh"
command -v perf >/dev/null || die "perf is not installed (linux-perf)"
command -v jq >/dev/null || die "jq is not installed"
require_cgroup_v1
require_cpus_online 0 1
mkdir -p "$OUT"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tg-profile.XXXXXX")
declare -a BG_PIDS=() CGROUPS=()
trap cleanup EXIT INT TERM

if [ "$CERT" = ec ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 2 \
    -subj /CN=localhost -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >"$TMP/req.log" 2>&1
else
  openssl req -x509 -newkey "$CERT" -nodes -sha256 -days 2 -subj /CN=localhost \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >"$TMP/req.log" 2>&1
fi
free_port
UP_PORT=$FREE_PORT
taskset -c "$CL_CPUS" "$TLSGATE" bench --serve "127.0.0.1:$UP_PORT" --quiet >"$TMP/upstream.log" 2>&1 &
BG_PIDS+=($!)
free_port
PORT=$FREE_PORT
free_port
ADMIN_PORT=$FREE_PORT
cat >"$TMP/gw.yaml" <<YAML
concurrency: $WORKERS
log_level: warn
admin: { address: 127.0.0.1:$ADMIN_PORT }
listeners:
  - name: bench
    address: 127.0.0.1:$PORT
    backlog: 4096
    tls:
      certificates:
        - certificate_chain: { filename: "$TMP/cert.pem" }
          private_key: { filename: "$TMP/key.pem" }
          private_key_provider: { provider_name: $PROVIDER, fallback: false }
      session_resumption: false
      groups: [X25519]
      cipher_suites: TLS_AES_128_GCM_SHA256
    upstream: { address: 127.0.0.1:$UP_PORT }
YAML
cg_make proxy "$( [ "$QUOTA_US" -gt 0 ] && echo "$QUOTA_US" || echo -1)"
CG=$CG_MADE
start_in_cg "$CG" "$GW_CPUS" "$TMP/gw.log" "$TLSGATE" run --config "$TMP/gw.yaml"
GW=$STARTED_PID
BG_PIDS+=("$GW")
wait_listening "$GW" "$PORT" "$TMP/gw.log" "tlsgate"

client() { # SECONDS JSON
  taskset -c "$CL_CPUS" "$TLSGATE" bench -k -c "$CONNS" -t "${1}s" --keepalive=false --tls-version 1.3 \
    --groups X25519 --quiet --json "$2" "https://127.0.0.1:$PORT/" >"$TMP/client.log" 2>&1 ||
    { cat "$TMP/client.log" >&2; die "the client failed"; }
}
client 2 "$TMP/warm.json"
TS=$(date -u +%Y%m%dT%H%M%SZ)
BASE=$OUT/profile-$TS-$PROVIDER-w$WORKERS
curl -fsS "http://127.0.0.1:$ADMIN_PORT/stats" >"$TMP/stats0" 2>/dev/null || true
u0=$(cg_usage_ns "$CG")
perf record -q -F 1999 --call-graph dwarf,16384 -p "$GW" -o "$BASE.data" -- sleep $((SECONDS_ + 1)) \
  >"$TMP/perf.log" 2>&1 &
PERF=$!
BG_PIDS+=("$PERF")
sleep 0.5
client "$SECONDS_" "$TMP/run.json"
u1=$(cg_usage_ns "$CG")
curl -fsS "http://127.0.0.1:$ADMIN_PORT/stats" >"$TMP/stats1" 2>/dev/null || true
wait "$PERF" || true
HS=$(jq '.handshakes.full // .calls.ok // 0' "$TMP/run.json")
CPU_S=$(awk -v a="$u0" -v b="$u1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
US_HS=$(awk -v c="$CPU_S" -v h="$HS" 'BEGIN { printf "%.1f", (h > 0 ? c * 1e6 / h : 0) }')
batch() { # mean batch size from the /stats deltas (Prometheus text)
  awk '/^tlsgate_keyprov_batch_size_sum/ { s += $NF } /^tlsgate_keyprov_batch_size_count/ { c += $NF }
       END { printf "%.6f %.6f\n", s, c }' "$1" 2>/dev/null || echo "0 0"
}
read -r s0 c0 < <(batch "$TMP/stats0")
read -r s1 c1 < <(batch "$TMP/stats1")
FILL=$(awk -v a="$s0" -v b="$s1" -v c="$c0" -v d="$c1" 'BEGIN { printf "%.2f", (d > c ? (b - a) / (d - c) : 0) }')

perf report -i "$BASE.data" --no-children --sort dso --stdio -q 2>/dev/null |
  awk 'NF >= 2 && $1 ~ /%$/ { p = $1; sub("%", "", p); $1 = ""; sub(/^ /, ""); print p "\t" $0 }' >"$BASE.dso.txt"
perf report -i "$BASE.data" --no-children --sort dso,sym --stdio -q 2>/dev/null |
  awk 'NF >= 2 && $1 ~ /%$/ && n++ < 80' >"$BASE.sym.txt"
# Inclusive (children) view of a few libssl/libcrypto entry points, for the
# "what calls what" part of the breakdown.
perf report -i "$BASE.data" --children --sort sym --stdio -q 2>/dev/null |
  awk 'NF >= 3 && $1 ~ /%$/' >"$TMP/children.all"
awk 'n++ < 150' "$TMP/children.all" >"$BASE.children.txt"
# Inclusive cost of named entry points (they overlap: a row includes what it
# calls; e.g. SSL_do_handshake includes the fetches below it).
ACTIVITIES="tg_accept_cb tg_conn_hello_wait SSL_new SSL_do_handshake tg_keyprov_set_flush
tg_cmb_run_queue SSL_read SSL_write tg_conn_connect tg_conn_upstream_cb tg_conn_finalize SSL_free
epoll_wait __GI_epoll_ctl EVP_MD_fetch EVP_KDF_fetch EVP_MAC_fetch EVP_CIPHER_fetch EVP_Q_mac
OPENSSL_LH_doall_arg CRYPTO_THREAD_read_lock CRYPTO_THREAD_unlock OPENSSL_cleanse
tg_keyop_compute_sw __GI___libc_malloc __GI___libc_free"

{
  echo "provider $PROVIDER, $WORKERS worker(s) on CPU $GW_CPUS, client on CPU $CL_CPUS, -c $CONNS, quota $QUOTA_US/$PERIOD_US us, $SECONDS_ s; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "handshakes $HS, proxy CPU ${CPU_S} s, ${US_HS} us per handshake, mean batch size $FILL"
  echo
  echo "| shared object | share | µs per handshake |"
  echo "|---|---:|---:|"
  awk -F'\t' -v u="$US_HS" '$1 >= 0.2 { printf "| %s | %.1f%% | %.1f |\n", $2, $1, $1 * u / 100 }' "$BASE.dso.txt"
  echo
  echo "| entry point (inclusive: with what it calls) | share | µs per handshake |"
  echo "|---|---:|---:|"
  for a in $ACTIVITIES; do
    awk -v a="$a" -v u="$US_HS" '$NF == a || $NF == a "@plt" { p = $1; sub("%", "", p); if (p > best) best = p }
      END { if (best > 0) printf "| %s | %.2f%% | %.1f |\n", a, best, best * u / 100 }' "$TMP/children.all"
  done
} >"$BASE.md"
cat "$BASE.md"
echo
echo "symbols: $BASE.sym.txt (self), $BASE.children.txt (inclusive); data: $BASE.data"
