#!/usr/bin/env bash
# bench/scaling.sh: one worker vs two (issue #11 item 1). For each peer,
# `concurrency: 1` on CPU 1 capped at QUOTA of a CPU, then `concurrency: 2`
# on CPUs 0-1 capped at twice that (the same share per CPU); nginx with
# worker_processes 1 and 2 the same way. The client (`tlsgate bench`, one
# thread, -c CONNS per worker) and the upstream run in their own uncapped
# cgroup on CPUs 0-1. Reports wall handshakes/s, handshakes per
# proxy-CPU-second, the 2-worker / 1-worker ratio of both, the proxy's CPU
# against its cap (saturated = >= 90%), and cryptomb's mean batch size (all
# workers' batches; each batch belongs to one worker). Interleaved rounds,
# medians.
#
#   bench/scaling.sh [TLSGATE]       (default build/tlsgate; needs root, cgroup v1)
#   env: TG_SCALE_PEERS ("software cryptomb nginx"), TG_SCALE_QUOTA_PCT (25: % of
#        one CPU per worker CPU), TG_SCALE_CONNS (64 per worker), TG_SCALE_ROUNDS (3),
#        TG_SCALE_SECONDS (8), TG_SCALE_WARMUP (2), TG_SCALE_OUT (bench/results)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
case "${1:-}" in -h | --help)
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 0
  ;;
esac
TLSGATE=$(realpath "${1:-${TLSGATE:-$here/../build/tlsgate}}")
PEERS=${TG_SCALE_PEERS:-software cryptomb nginx}
QUOTA_PCT=${TG_SCALE_QUOTA_PCT:-25}
CONNS=${TG_SCALE_CONNS:-64}
ROUNDS=${TG_SCALE_ROUNDS:-3}
SECS=${TG_SCALE_SECONDS:-8}
WARMUP=${TG_SCALE_WARMUP:-2}
OUT=${TG_SCALE_OUT:-$here/results}
PERIOD_US=100000
PEER_DIR=$here/peers
TG_LIB_PROG=scaling.sh
KEEP_TMP=${TG_SCALE_KEEP_TMP:-0}
RUN_ID=tgscale$$
. "$here/lib.sh"
. "$here/loadlib.sh"
lb_begin scaling

TS=$(date -u +%Y%m%dT%H%M%SZ)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
lb_setup 0-1
Q1=$((QUOTA_PCT * PERIOD_US / 100))
declare -a VARS=()
for p in $PEERS; do
  lb_start_peer "$p-1w" "$p" 1 1 "$Q1"
  lb_start_peer "$p-2w" "$p" 2 0-1 $((2 * Q1))
  VARS+=("$p-1w" "$p-2w")
done
note "peers: ${VARS[*]}; $ROUNDS rounds of ${SECS}s"
: >"$TMP/all.jsonl"
n=${#VARS[@]}
for ((r = 0; r < ROUNDS; r++)); do
  for ((i = 0; i < n; i++)); do
    v=${VARS[$(((i + r * 2) % n))]}
    w=${v##*-}
    w=${w%w}
    lb_measure "$v" "$SECS" $((CONNS * w)) 0 0-1 "$TMP/m.json"
    jq -c --argjson round "$r" --argjson workers "$w" --argjson cap_pct $((QUOTA_PCT * w)) \
      '. + {round: $round, workers: $workers, cap_pct: $cap_pct}' "$TMP/m.json" >>"$TMP/all.jsonl"
    note "round $((r + 1)) $v: $(jq -r '"\(.hs_per_s | floor) hs/s, \(.hs_per_cpu_s | floor) hs/CPU-s, CPU \(.proxy_cpu_pct | floor)%"' "$TMP/m.json")"
  done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
cp "$TMP/all.jsonl" "$OUT/scaling-$TS.jsonl"
{
  echo "### Scaling: 1 worker vs 2 ($TS)"
  echo
  echo "$(lb_machine); load average $LOAD0 at the start, $LOAD1 at the end; tlsgate $("$TLSGATE" version | cut -d' ' -f2)."
  echo "Command: \`TG_SCALE_PEERS=\"$PEERS\" TG_SCALE_QUOTA_PCT=$QUOTA_PCT TG_SCALE_CONNS=$CONNS TG_SCALE_ROUNDS=$ROUNDS TG_SCALE_SECONDS=$SECS bench/scaling.sh\`."
  echo "RSA-2048, TLS 1.3, X25519, TLS_AES_128_GCM_SHA256, a new connection and full handshake per call; 1 worker: CPU 1 capped at ${QUOTA_PCT}%; 2 workers: CPUs 0-1 capped at $((2 * QUOTA_PCT))% of one CPU in total; client -c $CONNS per worker on CPUs 0-1, uncapped. Medians of $ROUNDS interleaved rounds; saturated = proxy CPU >= 90% of its cap in every round."
  echo
  echo "| peer | workers | hs/s median [min-max] | hs/proxy-CPU-s median | proxy CPU % of one CPU (cap) | saturated | p50 / p99 ms | mean batch size | 2w / 1w hs/s | 2w / 1w hs/CPU-s |"
  echo "|---|---:|---:|---:|---:|---|---|---:|---:|---:|"
  jq -rs '
    def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def r0: if . == null then "-" else (. | round | tostring) end;
    def r2: if . == null then "-" else ((. * 100 | round) / 100 | tostring) end;
    group_by(.peer | sub("-[12]w$"; "")) | .[] |
    (map(select(.workers == 1)) ) as $a | (map(select(.workers == 2))) as $b |
    ($a | map(.hs_per_s) | median) as $a_hs | ($b | map(.hs_per_s) | median) as $b_hs |
    ($a | map(.hs_per_cpu_s) | median) as $a_c | ($b | map(.hs_per_cpu_s) | median) as $b_c |
    ([$a, $b] | .[] | . as $rows |
      ($rows[0].peer | sub("-[12]w$"; "")) as $p | ($rows[0].workers) as $w |
      "| \($p) | \($w) | \($rows | map(.hs_per_s) | median | r0) [\($rows | map(.hs_per_s) | min | r0)-\($rows | map(.hs_per_s) | max | r0)] | \($rows | map(.hs_per_cpu_s) | median | r0) | \($rows | map(.proxy_cpu_pct) | median | r0) (\($rows[0].cap_pct)) | \(if all($rows[]; .proxy_cpu_pct >= 0.9 * .cap_pct) then "yes" else "no (\($rows | map(select(.proxy_cpu_pct >= 0.9 * .cap_pct)) | length)/\($rows | length))" end) | \($rows | map(.p50_ms) | median | r2) / \($rows | map(.p99_ms) | median | r2) | \($rows | map(.batch_fill) | map(select(. != null)) | median | r2) | \(if $w == 2 then ($b_hs / $a_hs | r2) + "x" else "" end) | \(if $w == 2 then ($b_c / $a_c | r2) + "x" else "" end) |")
  ' "$TMP/all.jsonl"
  echo
  echo "Errors: $(jq -s 'map(.errors) | add' "$TMP/all.jsonl")."
} | tee "$OUT/scaling-$TS.md"
