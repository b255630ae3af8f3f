#!/usr/bin/env bash
# bench/latency.sh: latency under load (issue #11 item 4). Each peer (one
# worker, pinned to CPU 1, capped at QUOTA of it as in compare.sh) is first
# driven closed-loop at -c CONNS to find its saturation rate (median wall
# handshakes/s over rounds); then open-loop at 50% and 90% of that rate
# (`tlsgate bench -qps`, -c CONNS slots), and closed-loop at -c 1. Reports
# p50 / p99 of each (connect + full TLS 1.3 handshake + request + response,
# as the client saw it), the rate reached and the proxy CPU. The client and
# the upstream run on CPU 0. Interleaved rounds, medians.
#
#   bench/latency.sh [TLSGATE]       (default build/tlsgate; needs root, cgroup v1)
#   env: TG_LAT_PEERS ("software cryptomb nginx"), TG_LAT_QUOTA_US (50000),
#        TG_LAT_CONNS (64), TG_LAT_ROUNDS (3), TG_LAT_SECONDS (8), TG_LAT_WARMUP (2),
#        TG_LAT_LEVELS ("50 90": % of saturation), TG_LAT_OUT (bench/results)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
case "${1:-}" in -h | --help)
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 0
  ;;
esac
TLSGATE=$(realpath "${1:-${TLSGATE:-$here/../build/tlsgate}}")
PEERS=${TG_LAT_PEERS:-software cryptomb nginx}
QUOTA_US=${TG_LAT_QUOTA_US:-50000}
CONNS=${TG_LAT_CONNS:-64}
ROUNDS=${TG_LAT_ROUNDS:-3}
SECS=${TG_LAT_SECONDS:-8}
WARMUP=${TG_LAT_WARMUP:-2}
LEVELS=${TG_LAT_LEVELS:-50 90}
OUT=${TG_LAT_OUT:-$here/results}
PERIOD_US=100000
PEER_DIR=$here/peers
TG_LIB_PROG=latency.sh
KEEP_TMP=${TG_LAT_KEEP_TMP:-0}
RUN_ID=tglat$$
. "$here/lib.sh"
. "$here/loadlib.sh"
lb_begin latency

TS=$(date -u +%Y%m%dT%H%M%SZ)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
lb_setup 0
read -ra P <<<"$PEERS"
for p in "${P[@]}"; do lb_start_peer "$p" "$p" 1 1 "$QUOTA_US"; done
: >"$TMP/all.jsonl"
n=${#P[@]}
run() { # PEER LEVEL CONNS QPS ROUND
  lb_measure "$1" "$SECS" "$3" "$4" 0 "$TMP/m.json"
  jq -c --arg level "$2" --argjson round "$5" '. + {level: $level, round: $round}' "$TMP/m.json" >>"$TMP/all.jsonl"
  note "round $(($5 + 1)) $1 $2: $(jq -r '"\(.hs_per_s | floor) hs/s, p50 \(.p50_ms) ms, p99 \(.p99_ms) ms, CPU \(.proxy_cpu_pct | floor)%"' "$TMP/m.json")"
}
# 1. Saturation rate per peer.
for ((r = 0; r < ROUNDS; r++)); do
  for ((i = 0; i < n; i++)); do run "${P[$(((i + r) % n))]}" sat "$CONNS" 0 "$r"; done
done
declare -A SAT=()
for p in "${P[@]}"; do
  SAT[$p]=$(jq -s --arg p "$p" '[.[] | select(.peer == $p and .level == "sat") | .hs_per_s] | sort | .[length / 2 | floor] | floor' "$TMP/all.jsonl")
done
# 2. Open loop at each level, and -c 1.
for ((r = 0; r < ROUNDS; r++)); do
  for ((i = 0; i < n; i++)); do
    p=${P[$(((i + r) % n))]}
    for l in $LEVELS; do run "$p" "$l%" "$CONNS" $((SAT[$p] * l / 100)) "$r"; done
    run "$p" "c1" 1 0 "$r"
  done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
cp "$TMP/all.jsonl" "$OUT/latency-$TS.jsonl"
{
  echo "### Latency under load ($TS)"
  echo
  echo "$(lb_machine); load average $LOAD0 at the start, $LOAD1 at the end; tlsgate $("$TLSGATE" version | cut -d' ' -f2)."
  echo "Command: \`TG_LAT_PEERS=\"$PEERS\" TG_LAT_QUOTA_US=$QUOTA_US TG_LAT_CONNS=$CONNS TG_LAT_ROUNDS=$ROUNDS TG_LAT_SECONDS=$SECS TG_LAT_LEVELS=\"$LEVELS\" bench/latency.sh\`."
  echo "RSA-2048, TLS 1.3, X25519, a new connection and full handshake per call; each peer one worker on CPU 1 capped at $((QUOTA_US * 100 / PERIOD_US))%, client and upstream on CPU 0. \"sat\": closed loop at -c $CONNS (the saturation rate); N%: open loop at N% of that peer's saturation rate (-qps, -c $CONNS slots); c1: closed loop, one connection at a time. Medians of $ROUNDS rounds; latency = connect + handshake + request + response at the client."
  echo
  echo "| peer | load | target qps | hs/s | p50 ms | p99 ms | proxy CPU % | hs/proxy-CPU-s | mean batch size |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
  jq -rs '
    def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def r0: if . == null then "-" else (. | round | tostring) end;
    def r2: if . == null then "-" else ((. * 100 | round) / 100 | tostring) end;
    group_by(.peer) | .[] | group_by(.level) | sort_by(.[0].level | if . == "sat" then 0 elif . == "c1" then 9 else (rtrimstr("%") | tonumber / 100) end) | .[] |
    "| \(.[0].peer) | \(.[0].level) | \(if .[0].qps_target > 0 then (.[0].qps_target | tostring) else "-" end) | \(map(.hs_per_s) | median | r0) | \(map(.p50_ms) | median | r2) | \(map(.p99_ms) | median | r2) | \(map(.proxy_cpu_pct) | median | r0) | \(map(.hs_per_cpu_s) | median | r0) | \(map(.batch_fill) | map(select(. != null)) | median | r2) |"
  ' "$TMP/all.jsonl"
  echo
  echo "Errors: $(jq -s 'map(.errors) | add' "$TMP/all.jsonl")."
} | tee "$OUT/latency-$TS.md"
