#!/usr/bin/env bash
# bench/alog-cost.sh: what the access log costs, in user-space instructions
# per connection, counted by callgrind -- counts that do not depend on what
# else the machine runs (docs/PERFORMANCE.md, "Access log").
#
# For each variant (off, text to a file, JSON to a file), tlsgate (provider
# software, one worker, TLS 1.3, X25519, no resumption: the compare.sh peer)
# runs under valgrind --tool=callgrind twice: for N_SMALL and for N_LARGE
# calls of `tlsgate bench`, each call a new connection and a full handshake.
#   - per handshake: the difference of the two totals over N_LARGE - N_SMALL
#     (start-up and shutdown cancel out), every thread counted;
#   - the log's own share: in the N_LARGE run, the inclusive instructions of
#     the writer thread (tg_alog_main) and of the per-connection hooks
#     (tg_conn_alog_*, tg_alog_addr_set), divided by the calls: an upper
#     bound (tg_alog_addr_set is also inside tg_conn_alog_accepted; the few
#     instructions tg_conn spends gathering times and byte counts are not
#     in it).
# The difference of two totals varies by a few thousand instructions per
# handshake from run to run (random blinding, loop timing), more than the
# log costs: the attributed share is the precise figure. Kernel work is not
# counted: the log adds one getpeername(2) per connection and a few
# write(2) / eventfd calls per 0.1 s. Under valgrind OpenSSL runs without
# AVX-512 (more instructions per handshake than natively), so the share is
# an estimate; bench/compare.sh measures the cost in CPU time at
# saturation (tlsgate-software-alog vs tlsgate-software). bench/callgrind.sh
# gives the whole per-handshake profile by object.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TG_LIB_PROG=alog-cost.sh
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$SCRIPT_DIR/lib.sh"

case "${1:-}" in
  -h | --help)
    echo "usage: bench/alog-cost.sh [path/to/tlsgate]   (env: TG_ALOG_N_SMALL [100], TG_ALOG_N_LARGE [500], TG_ALOG_VARIANTS [off text json])"
    exit 0
    ;;
esac
TLSGATE=${1:-${TLSGATE:-$SCRIPT_DIR/../build/tlsgate}}
[ -x "$TLSGATE" ] || die "no tlsgate binary at '$TLSGATE'"
TLSGATE=$(cd "$(dirname "$TLSGATE")" && pwd)/$(basename "$TLSGATE")
N_SMALL=${TG_ALOG_N_SMALL:-100}
N_LARGE=${TG_ALOG_N_LARGE:-500}
read -r -a VARIANTS <<<"${TG_ALOG_VARIANTS:-off text json}"
is_uint "$N_SMALL" && is_uint "$N_LARGE" && [ "$N_LARGE" -gt "$N_SMALL" ] ||
  die "need 0 <= TG_ALOG_N_SMALL < TG_ALOG_N_LARGE"
command -v valgrind >/dev/null || die "valgrind is not installed (Debian: valgrind)"

KEEP_TMP=${TG_BENCH_KEEP_TMP:-0}
RUN_ID="tg-alog-$$"
PERIOD_US=100000
declare -a BG_PIDS=() CGROUPS=()
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tg-alog-cost.XXXXXX")
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 -subj /CN=localhost \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >"$TMP/req.log" 2>&1 || die "openssl req failed"
# OpenSSL's ASYNC job stacks registered with valgrind (as bench/callgrind.sh).
cc -shared -fPIC -O2 -o "$TMP/vg_async_stacks.so" "$SCRIPT_DIR/../tests/integration/vg_async_stacks.c" -ldl ||
  die "cannot build vg_async_stacks.so"
free_port
UP_PORT=$FREE_PORT
"$TLSGATE" bench --serve "127.0.0.1:$UP_PORT" --quiet >"$TMP/upstream.log" 2>&1 &
BG_PIDS+=("$!")
wait_listening "$!" "$UP_PORT" "$TMP/upstream.log" "the upstream"

# Slow under callgrind: wait up to 2 minutes for the port (lib.sh waits 15 s).
wait_port() { # PID PORT LOG
  local i
  for ((i = 0; i < 1200; i++)); do
    kill -0 "$1" 2>/dev/null || { tail -n 20 "$3" >&2; die "tlsgate exited at start-up"; }
    port_listening "$2" && return 0
    sleep 0.1
  done
  die "tlsgate is not listening on 127.0.0.1:$2 after 2 minutes"
}

# run VARIANT CALLS -> COLLECTED: the instructions callgrind counted
run() {
  local variant=$1 calls=$2 dir=$TMP/$1-$2 port pid
  mkdir -p "$dir"
  free_port
  port=$FREE_PORT
  {
    printf 'concurrency: 1\nlog_level: warn\nlisteners:\n  - name: bench\n'
    printf '    address: 127.0.0.1:%s\n    tls:\n      certificates:\n' "$port"
    printf '        - certificate_chain: { filename: "%s" }\n' "$TMP/cert.pem"
    printf '          private_key: { filename: "%s" }\n' "$TMP/key.pem"
    printf '      session_resumption: false\n      groups: [X25519]\n'
    printf '      cipher_suites: TLS_AES_128_GCM_SHA256\n'
    printf '    upstream: { address: 127.0.0.1:%s }\n' "$UP_PORT"
    [ "$variant" = off ] || printf 'access_log: { path: "%s/access.log", format: %s }\n' "$dir" "$variant"
  } >"$dir/tlsgate.yaml"
  LD_PRELOAD=$TMP/vg_async_stacks.so valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
    "$TLSGATE" run --config "$dir/tlsgate.yaml" >"$dir/tlsgate.log" 2>&1 &
  pid=$!
  BG_PIDS+=("$pid")
  wait_port "$pid" "$port" "$dir/tlsgate.log"
  "$TLSGATE" bench -k -n "$calls" -c 8 --timeout 60s --tls-version 1.3 --groups X25519 --quiet \
    "https://127.0.0.1:$port/" >"$dir/bench.log" 2>&1 || { cat "$dir/bench.log" >&2; die "bench failed"; }
  grep -q "Calls: $calls ($calls ok, 0 errors)" "$dir/bench.log" || { cat "$dir/bench.log" >&2; die "bench errors"; }
  kill -TERM "$pid"
  wait "$pid" || die "tlsgate ($variant) exited with an error (log: $dir/tlsgate.log)"
  unset 'BG_PIDS[${#BG_PIDS[@]}-1]'
  if [ "$variant" != off ]; then
    local lines
    lines=$(wc -l <"$dir/access.log")
    [ "$lines" -eq "$calls" ] || die "$variant: $lines access-log lines for $calls connections"
  fi
  COLLECTED=$(awk '/Collected :/ { print $NF }' "$dir/tlsgate.log")
  is_uint "$COLLECTED" || die "no callgrind total in $dir/tlsgate.log"
}

# The log's own instructions in a callgrind output (inclusive). A function
# may be listed more than once (with and without its object, code inlined
# from headers apart): take each function's largest entry.
log_share() { # CALLGRIND_OUT
  (cd "$TMP" && callgrind_annotate --inclusive=yes --auto=no --threshold=100 "$1" 2>/dev/null) |
    awk 'match($0, /:(tg_alog_main|tg_conn_alog_closed|tg_conn_alog_accepted|tg_conn_alog_rejected|tg_alog_addr_set)( |$)/) {
           fn = substr($0, RSTART + 1, RLENGTH - 1); sub(/ $/, "", fn)
           v = $1; gsub(",", "", v); if (v + 0 > max[fn]) max[fn] = v + 0 }
         END { for (f in max) sum += max[f]; print sum + 0 }'
}

declare -A PER_HS=() OWN=()
for v in "${VARIANTS[@]}"; do
  case "$v" in off | text | json) ;; *) die "unknown variant '$v' (off, text, json)" ;; esac
  run "$v" "$N_SMALL"
  small=$COLLECTED
  run "$v" "$N_LARGE"
  large=$COLLECTED
  PER_HS[$v]=$(((large - small) / (N_LARGE - N_SMALL)))
  own=$(log_share "$TMP/$v-$N_LARGE/callgrind.out")
  OWN[$v]=$((own / N_LARGE))
  note "$v: $small instructions for $N_SMALL calls, $large for $N_LARGE: ${PER_HS[$v]} per handshake; the log's own: ${OWN[$v]} per connection"
done

ref=${PER_HS[off]:-${PER_HS[${VARIANTS[0]}]}}
echo "| access log | instructions per full handshake (all threads, user space) | the log's own, per connection | share |"
echo "|---|---:|---:|---:|"
for v in "${VARIANTS[@]}"; do
  share=$(awk -v a="${OWN[$v]}" -v b="$ref" 'BEGIN { printf "%.3f%%", 100 * a / b }')
  printf '| %s | %s | %s | %s |\n' "$v" "${PER_HS[$v]}" "${OWN[$v]}" "$share"
done
