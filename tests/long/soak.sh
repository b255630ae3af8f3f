#!/usr/bin/env bash
# tests/long/soak.sh: a soak at saturation (make test-long, run by .ci/run).
#
# One gateway (cryptomb where the CPU has AVX-512 IFMA, software elsewhere:
# fallback on), `tlsgate bench -c 256` with a new TLS connection per call
# for TG_SOAK_SECONDS (60), while the gateway's RSS and open descriptors
# are sampled every 2 s. Checks, none of them about speed:
#   - every call succeeded (the bench reports 0 errors) and /stats counts
#     no failed handshake;
#   - the gateway is back to 0 connections and to the descriptors it had
#     before the soak (no descriptor leak);
#   - RSS is flat: the largest sample of the last third of the soak is at
#     most 25% + 16 MiB above the largest of its first third (a per-
#     handshake leak of even 1 KiB grows RSS by tens of MiB in 40 s).
# The samples are printed, so a failure shows the curve.
. "$(dirname "$0")/../integration/lib.sh"
SECS=${TG_SOAK_SECONDS:-60}
tg_init $((SECS + 120))
[ -z "$TG_VALGRIND" ] || tg_skip "a soak at saturation under valgrind measures valgrind"

read -r CERT KEY < <(tg_cert rsa soak.test)
tg_bench_serve
tg_config gw.yaml <<EOF
concurrency: 1
admin: { address: 127.0.0.1:0 }
limits: { max_connections: 4096 }
listeners:
  - name: soak
    address: 127.0.0.1:0
    tls:
      certificates:
        - certificate_chain: { filename: $CERT }
          private_key: { filename: $KEY }
$(tg_provider_yaml cryptomb 10)
    upstream: { address: $UP_ADDR }
EOF
tg_gateway gw.yaml
port=$(tg_listener_port soak)

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$GW_PID/status"; }
nfds() { find "/proc/$GW_PID/fd" -mindepth 1 -maxdepth 1 | wc -l; }

# Warm up (the first handshakes fill caches and key pools), then count.
tg_run 60 "$TLSGATE" bench -k --quiet -n 500 -c 32 "https://127.0.0.1:$port/" >"$TG_TMP/warm.out" 2>&1 ||
    { cat "$TG_TMP/warm.out"; tg_fail "warm-up failed"; }
tg_settle
fd0=$(nfds)
hs0=$(tg_stat tlsgate_handshakes_total result=ok)

tg_case "tlsgate bench -c 256 for ${SECS}s, new connection per call; RSS and descriptors sampled"
"$TLSGATE" bench -k --quiet -c 256 -t "${SECS}s" --json "$TG_TMP/soak.json" \
    "https://127.0.0.1:$port/" >"$TG_TMP/soak.out" 2>&1 &
BENCH=$!
TG_PIDS+=("$BENCH")
TG_NAMES+=(soak-bench)
samples=()
while tg_alive "$BENCH"; do
    tg_alive "$GW_PID" || tg_fail "the gateway died during the soak"
    samples+=("$(rss_kib)")
    printf '    t=%3ds rss=%6d KiB fds=%d\n' $((${#samples[@]} * 2 - 2)) "${samples[-1]}" "$(nfds)"
    sleep 2
done
rc=0
wait "$BENCH" || rc=$?
[ "$rc" = 0 ] || { cat "$TG_TMP/soak.out"; tg_fail "tlsgate bench exited $rc"; }

read -r errors ok < <(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["errors"]["total"], j["ok"])' \
    "$TG_TMP/soak.json")
echo "    calls ok: $ok, errors: $errors"
tg_expect_eq "$errors" 0 "bench errors during the soak"
tg_expect_ge "$ok" 1000 "calls made during the soak"
tg_settle
tg_expect_eq "$(tg_stat tlsgate_handshakes_total result=protocol_error)" 0 "protocol errors"
tg_expect_eq "$(tg_stat tlsgate_handshakes_total result=key_operation_failed)" 0 "key operation failures"
tg_expect_ge "$(tg_stat tlsgate_handshakes_total result=ok)" $((hs0 + ok)) "handshakes counted"

tg_case "no descriptor leak, flat RSS"
tg_expect_eq "$(nfds)" "$fd0" "open descriptors after the soak (before: $fd0)"
n=${#samples[@]}
[ "$n" -ge 6 ] || tg_fail "only $n RSS samples"
third=$((n / 3))
first=$(printf '%s\n' "${samples[@]:0:third}" | sort -n | tail -n1)
last=$(printf '%s\n' "${samples[@]:n-third}" | sort -n | tail -n1)
limit=$((first * 125 / 100 + 16384))
echo "    RSS peak, first third: $first KiB; last third: $last KiB (limit $limit KiB)"
[ "$last" -le "$limit" ] || tg_fail "RSS grew during the soak: $first -> $last KiB"
tg_gateway_stop
tg_pass
