#!/usr/bin/env bash
# Load through tlsgate with real load generators, for every key provider
# variant (functional checks only: no timing assertions):
#   - hey -n 500 -c 20 -disable-keepalive: every response 200, and /stats
#     counts >= 500 more successful handshakes and no failed one;
#   - tlsgate bench (TLS 1.3 and 1.2, new connection per call; keep-alive with
#     a POST payload) --json: 0 errors, every call ok;
#   - concurrency: 2 workers: both accept connections (debug log per worker
#     thread), and /stats aggregates both (handshakes = calls made).
# TG_WORKER_PROVIDERS (default "software deferred") names the providers of
# the 2-worker case; TG_LOAD_WORKERS_ONLY=1 runs that case alone (make
# test-tsan: two workers under ThreadSanitizer with deferred and cryptomb).
. "$(dirname "$0")/lib.sh"
tg_init 240

read -r CERT KEY < <(tg_cert rsa a.test)
read -r EC_CERT EC_KEY < <(tg_cert ec a.test)
tg_bench_serve

# Under valgrind (~30x slower) the same cases run with a fifth of the calls.
HEY_N=${TG_HEY_N:-500}
DIV=1
if [ -n "$TG_VALGRIND" ]; then HEY_N=${TG_HEY_N:-100}; DIV=5; fi
n() { echo $(($1 / DIV)); }

gateway() { # PROVIDER CONCURRENCY [LOG LEVEL]
    tg_config gw.yaml <<EOF
concurrency: $2
admin: { address: 127.0.0.1:0 }
listeners:
  - name: rsa
    address: 127.0.0.1:0
    tls:
      certificates:
        - certificate_chain: { filename: $CERT }
          private_key: { filename: $KEY }
$(tg_provider_yaml "$1" 10)
    upstream: { address: $UP_ADDR }
  - name: ec
    address: 127.0.0.1:0
    tls:
      certificates:
        - certificate_chain: { filename: $EC_CERT }
          private_key: { filename: $EC_KEY }
$(tg_provider_yaml "$1" 10)
    upstream: { address: $UP_ADDR }
EOF
    TG_LOG_LEVEL=${3:-$TG_LOG_LEVEL} tg_gateway gw.yaml
}

# bench NAME N ARGS...: tlsgate bench --json; 0 errors and N ok calls.
bench() {
    local name=$1 n=$2 j
    shift 2
    j=$TG_TMP/$name.json
    tg_run 120 "$TLSGATE" bench -k --quiet -n "$n" --json "$j" "$@" > "$TG_TMP/$name.out" 2>&1 ||
        { cat "$TG_TMP/$name.out"; tg_fail "tlsgate bench $* failed"; }
    tg_expect_grep "^All done $n calls" "$TG_TMP/$name.out" "bench summary"
    local got
    got=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["errors"]["total"], j["ok"], j["calls"])' "$j")
    if [ "$got" != "0 $n $n" ]; then
        cat "$TG_TMP/$name.out"
        python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("errors:", j["errors"], "first:", j["first_errors"], "latency:", j["latency_ms"])' "$j"
    fi
    tg_expect_eq "$got" "0 $n $n" "bench errors / ok / calls ($name)"
}

tg__idle() { [ "$(tg_stat tlsgate_connections_active)" = 0 ]; }

if command -v hey > /dev/null; then HAVE_HEY=1; else HAVE_HEY=; echo "NOTE: hey not installed: hey cases skipped"; fi

for prov in $TG_PROVIDERS; do
    [ "${TG_LOAD_WORKERS_ONLY:-0}" = 1 ] && break
    gateway "$prov" 1
    rsa=$(tg_listener_port rsa) ec=$(tg_listener_port ec)
    if [ -n "$HAVE_HEY" ]; then
        tg_case "$prov: hey -n $HEY_N -c 20 -disable-keepalive"
        hs0=$(tg_stat tlsgate_handshakes_total result=ok)
        tg_run 120 hey -n "$HEY_N" -c 20 -disable-keepalive "https://127.0.0.1:$rsa/" > "$TG_TMP/hey.out" 2>&1 ||
            { cat "$TG_TMP/hey.out"; tg_fail "hey failed"; }
        tg_expect_grep "^  \[200\][[:space:]]+$HEY_N responses" "$TG_TMP/hey.out" "all $HEY_N responses are 200"
        tg_expect_nogrep '^Error distribution' "$TG_TMP/hey.out" "hey errors"
        tg_expect_ge "$(tg_stat tlsgate_handshakes_total result=ok)" $((hs0 + HEY_N)) "handshakes ok after hey"
    fi

    tg_case "$prov: tlsgate bench, RSA + ECDSA, TLS 1.3 + 1.2, keep-alive POST"
    hs0=$(tg_stat tlsgate_handshakes_total result=ok)
    bench "$prov-rsa13" "$(n 300)" -c 8 --tls-version 1.3 "https://127.0.0.1:$rsa/"
    bench "$prov-rsa12" "$(n 200)" -c 8 --tls-version 1.2 "https://127.0.0.1:$rsa/"
    bench "$prov-ec13" "$(n 200)" -c 8 --groups P-256 "https://127.0.0.1:$ec/"
    bench "$prov-ka" "$(n 300)" -c 4 --keepalive=true --payload 20000 "https://127.0.0.1:$rsa/"
    tg_expect_eq "$(tg_stat tlsgate_handshakes_total result=ok)" $((hs0 + $(n 700) + 4)) "handshakes ok (new connections + 4 kept alive)"
    tg_expect_eq "$(tg_stat tlsgate_handshakes_total result=protocol_error)" 0 "protocol errors"
    tg_expect_eq "$(tg_stat tlsgate_handshakes_total result=key_operation_failed)" 0 "key operation failures"
    tg_expect_ge "$(tg_stat tlsgate_bytes_total direction=client_to_upstream)" $(($(n 300) * 20000)) "POST bytes forwarded"
    tg_wait_for 10 "connections_active back to 0" tg__idle
    tg_gateway_stop
done
for prov in ${TG_WORKER_PROVIDERS:-software deferred}; do
    tg_case "$prov: concurrency 2: both workers serve, /stats aggregates"
    gateway "$prov" 2 debug
    rsa=$(tg_listener_port rsa)
    tg_expect_grep '^tlsgate_info\{.*workers="2"' <(tg_stats) "tlsgate_info workers"
    bench "$prov-w2" "$(n 400)" -c 16 "https://127.0.0.1:$rsa/"
    want=$(n 400)
    if [ -n "$HAVE_HEY" ]; then
        tg_run 60 hey -n "$(n 200)" -c 10 -disable-keepalive "https://127.0.0.1:$rsa/" > "$TG_TMP/hey2.out" 2>&1 ||
            { cat "$TG_TMP/hey2.out"; tg_fail "hey failed"; }
        tg_expect_grep "^  \[200\][[:space:]]+$(n 200) responses" "$TG_TMP/hey2.out" "hey with 2 workers"
        want=$((want + $(n 200)))
    fi
    tg_expect_eq "$(tg_stat tlsgate_handshakes_total result=ok)" "$want" "aggregated handshakes"
    tg_expect_eq "$(tg_stat tlsgate_connections_accepted_total)" "$want" "aggregated accepts"
    w0=$(grep -c ' w0 debug: conn .*: accepted -> ' "$GW_LOG" || true)
    w1=$(grep -c ' w1 debug: conn .*: accepted -> ' "$GW_LOG" || true)
    echo "    accepted per worker: w0=$w0 w1=$w1"
    tg_expect_eq "$((w0 + w1))" "$want" "accepts logged by the two workers"
    tg_expect_ge "$w0" 1 "worker 0 served connections"
    tg_expect_ge "$w1" 1 "worker 1 served connections"
    if [ "$prov" = deferred ]; then
        tg_expect_eq "$(tg_stat tlsgate_keyprov_operations_total provider=deferred type=rsa_sign)" "$want" "deferred rsa_sign, both workers"
    fi
    if [ "$prov" = cryptomb ]; then
        # cryptomb, or software where cryptomb cannot run (fallback: true)
        ops=$(($(tg_stat tlsgate_keyprov_operations_total provider=cryptomb type=rsa_sign || echo 0) +
            $(tg_stat tlsgate_keyprov_operations_total provider=software type=rsa_sign || echo 0)))
        tg_expect_eq "$ops" "$want" "rsa_sign operations, both workers"
    fi
    tg_gateway_stop
done

tg_pass
