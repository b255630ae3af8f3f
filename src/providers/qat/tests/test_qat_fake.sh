#!/usr/bin/env bash
# The qat key provider end to end: the real tlsgate binary against the fake
# qatlib (src/providers/qat/tests/fake_*.c, built as $TG_BUILD_DIR/fakes/libqat.so.4 +
# libusdm.so.0) put in front of the real one with LD_LIBRARY_PATH, driven by
# real clients (openssl s_client, curl, tlsgate bench).
#
#   1. offload: RSA-2048 and ECDSA P-256 certificates, TLS 1.2 and 1.3,
#      fallback: false. Every signature goes through the fake device: the
#      fake's own counters (its stats file) and /stats agree, no fallback.
#   2. ring full: capacity 1 and 16 concurrent clients -> CPA_STATUS_RETRY,
#      operations spill to software (cryptomb first when it can run), counted;
#      no handshake fails.
#   3. device errors: every 3rd request fails in the device -> software.
#   4. device dies mid-run (FAKE_QAT_DIE_AFTER), fallback: true: requests in
#      flight time out, later submits fail; no handshake is lost.
# Cases that expect no fallback use timeout: 5s, so that a fake starved of
# CPU (its thread shares the machine with the clients) cannot cause one.
#   5. two workers sharing one instance (callbacks on the other worker's
#      thread), and two workers on two instances.
#   6. no device: fallback: false -> start-up fails with a clear message and
#      exit status 2 (run and check-config); fallback: true -> software.
# Every gateway must exit 0 on SIGTERM (and be sanitizer/valgrind clean).
. "${TG_SRC_DIR:-$(dirname "$0")/../../../..}/tests/integration/lib.sh"
tg_init 300

FAKES=${TG_BUILD_DIR:-$(dirname "$TLSGATE")}/fakes
[ -f "$FAKES/libqat.so.4" ] && [ -f "$FAKES/libusdm.so.0" ] ||
    tg_skip "no fake qatlib in $FAKES (built without the qatlib headers?)"
command -v curl > /dev/null || tg_skip "curl not installed"

read -r RSA_CERT RSA_KEY < <(tg_cert rsa a.test)
read -r EC_CERT EC_KEY < <(tg_cert ec a.test)
tg_bench_serve

REQ=$'GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n'
STATS=$TG_TMP/fake-qat.stats

# Under valgrind everything runs ~20x slower on one thread at a time: less
# load, fewer clients, and more time for a handshake.
DIV=1 CMAX=16 HS_TIMEOUT=10s
if [ -n "$TG_VALGRIND" ]; then DIV=5 CMAX=4 HS_TIMEOUT=120s; fi
n() { echo $(($1 / DIV)); }
c() { echo $(($1 < CMAX ? $1 : CMAX)); }

# start_gw NAME CONFIG [ENV=V ...]: tlsgate on the fake qatlib (LD_LIBRARY_PATH),
# with the fake's knobs in its environment only; sets RSA_PORT EC_PORT too.
start_gw() {
    local name=$1 cfg=$2
    shift 2
    rm -f "$STATS"
    local saved_ld=${LD_LIBRARY_PATH:-}
    export LD_LIBRARY_PATH="$FAKES${saved_ld:+:$saved_ld}" FAKE_QAT_STATS_FILE="$STATS"
    local kv
    for kv in "$@"; do export "${kv?}"; done
    tg_gateway "$cfg" "$name"
    for kv in "$@"; do unset "${kv%%=*}"; done
    unset FAKE_QAT_STATS_FILE
    if [ -n "$saved_ld" ]; then export LD_LIBRARY_PATH=$saved_ld; else unset LD_LIBRARY_PATH; fi
    RSA_PORT=$(tg_listener_port rsa)
    EC_PORT=$(tg_listener_port ec)
}

# fake NAME: a counter from the fake's stats file (waits for it to exist).
fake() {
    tg_wait_for 5 "the fake's stats file" test -s "$STATS"
    awk -v k="$1" '$1 == k { print $2; found = 1 } END { if (!found) print "missing" }' "$STATS"
}

# fake_at_least NAME VALUE (the fake rewrites its file at most every 20 ms).
fake_at_least() { [ "$(fake "$1")" != missing ] && [ "$(fake "$1")" -ge "$2" ]; }

# stat_or0 NAME [k=v ...]: like tg_stat, 0 when the series is absent.
stat_or0() { (tg_stat "$@") 2> /dev/null || echo 0; }

# sclient PORT VERSION OUT [ARGS...]: one HTTP request through openssl s_client.
sclient() {
    local port=$1 ver=$2 out=$3
    shift 3
    printf '%s' "$REQ" | tg_run 15 openssl s_client -connect "127.0.0.1:$port" -servername a.test \
        -brief -ign_eof "-tls${ver/./_}" "$@" > "$out" 2>&1 ||
        { cat "$out"; tg_fail "s_client $ver failed"; }
    set -- "$port" "$ver" "$out"
    tg_expect_grep '^hello from tlsgate upstream$' "$3" "upstream answer through TLS $2"
    tg_expect_grep "Protocol version: TLSv$2" "$3" "TLS $2 negotiated"
}

# bench PORT CONNS CALLS [ARGS...]: tlsgate bench, new TLS connection per
# call; every call must succeed. Sets BENCH_OK.
bench() {
    local port=$1 c=$2 n=$3 out
    shift 3
    out=$TG_TMP/bench-$port-$c-$n.json
    tg_run 120 "$TLSGATE" bench -k --quiet -c "$c" -n "$n" --json "$out" "$@" \
        "https://127.0.0.1:$port/" > "$out.log" 2>&1 || { cat "$out.log"; tg_fail "bench failed"; }
    BENCH_OK=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["ok"])' "$out")
    tg_expect_eq "$BENCH_OK" "$n" "bench calls that succeeded ($(grep -m1 '^Errors' "$out.log" || echo 'no errors'))"
}

# write_config FILE PROVIDER-BLOCK [CONCURRENCY]: an RSA and an EC listener.
write_config() {
    local file=$1 provider=$2 conc=${3:-1}
    tg_config "$file" <<EOF
concurrency: $conc
admin: { address: 127.0.0.1:0 }
limits: { handshake_timeout: $HS_TIMEOUT }
listeners:
  - name: rsa
    address: 127.0.0.1:0
    tls:
      certificates:
        - certificate_chain: { filename: $RSA_CERT }
          private_key: { filename: $RSA_KEY }
          private_key_provider: $provider
    upstream: { address: $UP_ADDR }
  - name: ec
    address: 127.0.0.1:0
    tls:
      certificates:
        - certificate_chain: { filename: $EC_CERT }
          private_key: { filename: $EC_KEY }
          private_key_provider: $provider
    upstream: { address: $UP_ADDR }
EOF
}

# ---------------------------------------------------------------------------
tg_case "offload: every signature on the fake device (fallback: false)"
write_config offload.yaml '{ provider_name: qat, fallback: false, typed_config: { timeout: 5s } }'
start_gw offload offload.yaml FAKE_QAT_LATENCY_US=50
tg_expect_grep 'qat: .*fakes/libqat.so.4: section "SSL", 2 crypto instance\(s\) started' "$GW_LOG" \
    "the fake was loaded through LD_LIBRARY_PATH"
for ver in 1.2 1.3; do
    sclient "$RSA_PORT" "$ver" "$TG_TMP/rsa-$ver.out"
    tg_expect_grep "^Signature type: $TG_SIG_RSA_PSS\$" "$TG_TMP/rsa-$ver.out" "RSA-PSS signature"
    sclient "$EC_PORT" "$ver" "$TG_TMP/ec-$ver.out"
    tg_expect_grep "^Signature type: $TG_SIG_ECDSA\$" "$TG_TMP/ec-$ver.out" "ECDSA signature"
done
# TLS 1.2 with a PKCS#1 v1.5 signature (the other RSA encoding).
sclient "$RSA_PORT" 1.2 "$TG_TMP/rsa-pkcs1.out" -sigalgs rsa_pkcs1_sha256
tg_expect_grep "^Signature type: $TG_SIG_RSA_PKCS1\$" "$TG_TMP/rsa-pkcs1.out" "RSA PKCS#1 v1.5 signature"
curl -sk --max-time "$(tg_s 10)" --resolve "a.test:$RSA_PORT:127.0.0.1" \
    "https://a.test:$RSA_PORT/" > "$TG_TMP/curl.out" || tg_fail "curl failed"
tg_expect_grep '^hello from tlsgate upstream$' "$TG_TMP/curl.out" "curl through qat"
NR=$(n 300) NE=$(n 100)
bench "$RSA_PORT" "$(c 8)" "$NR" --tls-version 1.3
bench "$EC_PORT" "$(c 8)" "$NE" --tls-version 1.2 --groups X25519:P-256
# 3 + 2 s_client, 1 curl and the bench calls: one signature each.
TOTAL=$((6 + NR + NE))
tg_wait_for 5 "the fake to count $TOTAL completions" fake_at_least completed "$TOTAL"
tg_expect_eq "$(fake received)" "$TOTAL" "requests the fake device received"
tg_expect_eq "$(fake rsa)" "$((4 + NR))" "RSA requests on the device"
tg_expect_eq "$(fake ecdsa)" "$((2 + NE))" "ECDSA requests on the device"
tg_expect_eq "$(fake failed)" 0 "failed requests"
tg_expect_eq "$(fake invalid)" 0 "requests qatlib's checks would refuse"
tg_expect_eq "$(tg_stat tlsgate_qat_requests_submitted_total provider=qat)" "$TOTAL" "/stats: submitted"
tg_expect_eq "$(tg_stat tlsgate_qat_requests_completed_total provider=qat instance=0)" "$TOTAL" \
    "/stats: completed on instance 0"
tg_expect_eq "$(tg_stat tlsgate_keyprov_operations_completed_total provider=qat)" "$TOTAL" \
    "/stats: key operations completed by qat"
tg_expect_eq "$(tg_stat tlsgate_keyprov_fallbacks_total provider=qat)" 0 "/stats: fallbacks"
tg_expect_eq "$(tg_stat tlsgate_handshakes_total result=ok)" "$TOTAL" "/stats: handshakes ok"
tg_expect_eq "$(tg_stat tlsgate_qat_inflight)" 0 "/stats: nothing left on the device"
tg_expect_ge "$(tg_stat tlsgate_qat_polls_total)" 1 "/stats: polls"
tg_expect_ge "$(tg_stat tlsgate_qat_latency_seconds_count)" "$TOTAL" "/stats: latency histogram"
tg_gateway_stop
tg_expect_eq "$(fake running)" 0 "qatlib stopped at exit (icp_sal_userStop)"

# ---------------------------------------------------------------------------
tg_case "qat signs, tls.key_exchange_provider: cryptomb batches the key exchange"
tg_config kx.yaml <<EOF
concurrency: 1
admin: { address: 127.0.0.1:0 }
limits: { handshake_timeout: $HS_TIMEOUT }
listeners:
  - name: rsa
    address: 127.0.0.1:0
    tls:
      key_exchange_provider: { provider_name: cryptomb, fallback: true }
      certificates:
        - certificate_chain: { filename: $RSA_CERT }
          private_key: { filename: $RSA_KEY }
          private_key_provider: { provider_name: qat, fallback: false, typed_config: { timeout: 5s } }
    upstream: { address: $UP_ADDR }
EOF
start_gw kx kx.yaml FAKE_QAT_LATENCY_US=50
N=$(n 200)
bench "$RSA_PORT" "$(c 8)" "$N" --tls-version 1.3
tg_wait_for 5 "the fake to count $N completions" fake_at_least completed "$N"
tg_expect_eq "$(fake rsa)" "$N" "every signature on the fake device"
if grep -q 'key exchange: cryptomb' "$GW_LOG"; then
    tg_expect_eq "$(tg_stat tlsgate_keyprov_operations_total provider=cryptomb type=kx_derive)" "$N" \
        "every X25519 derive through cryptomb"
    tg_expect_eq "$(stat_or0 tlsgate_keyprov_operations_total provider=qat type=kx_derive)" 0 \
        "no key exchange offered to qat"
else
    tg_expect_grep 'key exchange: software' "$GW_LOG" "cryptomb cannot run here: OpenSSL does it"
fi
tg_gateway_stop

# ---------------------------------------------------------------------------
tg_case "ring full: capacity 1, 16 clients -> spill (cryptomb where it runs, else software), counted"
write_config spill.yaml '{ provider_name: qat, fallback: false, typed_config: { timeout: 5s, spill: [cryptomb, software] } }'
start_gw spill spill.yaml FAKE_QAT_CAPACITY=1 FAKE_QAT_LATENCY_US=3000 FAKE_QAT_INSTANCES=1
N=$(n 300)
bench "$RSA_PORT" "$(c 16)" "$N"
tg_wait_for 5 "the fake's counters" fake_at_least completed 1
retried=$(fake retried)
tg_expect_ge "$retried" 1 "the fake refused requests with CPA_STATUS_RETRY"
echo "ring full: $retried of $N refused with CPA_STATUS_RETRY and spilled; $(fake completed) on the device"
tg_expect_eq "$(tg_stat tlsgate_qat_requests_retried_total)" "$retried" "/stats: retried"
spilled=$(tg_stat tlsgate_qat_spilled_total)
tg_expect_eq "$spilled" "$retried" "/stats: every refused operation spilled"
if grep -q "spill target 'cryptomb' cannot run here" "$GW_LOG"; then
    tg_expect_eq "$(tg_stat tlsgate_qat_spilled_total to=software)" "$retried" "spilled to software"
    tg_expect_eq "$(tg_stat tlsgate_keyprov_fallbacks_total provider=qat reason=ring_full)" \
        "$retried" "/stats: ring_full fallbacks"
else
    # cryptomb runs here (AVX-512 IFMA): it took the overflow.
    tg_expect_eq "$(tg_stat tlsgate_qat_spilled_total to=cryptomb)" "$retried" "spilled to cryptomb"
    tg_expect_ge "$(tg_stat tlsgate_keyprov_operations_completed_total provider=cryptomb type=rsa_sign)" \
        "$retried" "/stats: cryptomb signed the overflow"
    tg_expect_eq "$(stat_or0 tlsgate_keyprov_fallbacks_total provider=qat reason=ring_full)" 0 \
        "/stats: no ring_full fallback to software"
fi
tg_expect_eq "$(tg_stat tlsgate_handshakes_total result=ok)" "$N" "handshakes ok"
tg_expect_eq "$(stat_or0 tlsgate_handshakes_total result=key_operation_failed)" 0 \
    "handshakes failed by a key operation"
tg_gateway_stop

# ---------------------------------------------------------------------------
tg_case "device errors: every 3rd request fails -> software"
write_config errors.yaml '{ provider_name: qat, fallback: false, typed_config: { timeout: 5s } }'
start_gw errors errors.yaml FAKE_QAT_FAIL_EVERY=3
NR=$(n 150) NE=$(n 60)
bench "$RSA_PORT" 4 "$NR"
bench "$EC_PORT" 4 "$NE" --groups X25519:P-256
NF=$(((NR + NE) / 3))
tg_wait_for 5 "the fake to count its failures" fake_at_least failed "$NF"
tg_expect_eq "$(fake failed)" "$NF" "requests the device failed (1 in 3)"
tg_expect_eq "$(tg_stat tlsgate_keyprov_fallbacks_total provider=qat reason=device_error)" "$NF" \
    "/stats: device_error fallbacks"
tg_expect_eq "$(tg_stat tlsgate_qat_requests_failed_total stage=device)" "$NF" \
    "/stats: failed in the device"
tg_expect_eq "$(tg_stat tlsgate_handshakes_total result=ok)" "$((NR + NE))" "handshakes ok"
tg_gateway_stop

# ---------------------------------------------------------------------------
tg_case "device dies mid-run (fallback: true): no handshake lost"
write_config dies.yaml '{ provider_name: qat, fallback: true, typed_config: { timeout: 20ms } }'
DIE=$(n 60) N=$(n 300)
start_gw dies dies.yaml FAKE_QAT_DIE_AFTER="$DIE" FAKE_QAT_LATENCY_US=2000 FAKE_QAT_INSTANCES=1
bench "$RSA_PORT" "$(c 8)" "$N"
tg_wait_for 5 "the fake to report its death" fake_at_least dead 1
tg_expect_eq "$(fake received)" "$DIE" "requests the device took before it died"
tg_expect_ge "$(fake rejected)" 1 "submits refused after the death"
# Every request lost with the device times out; a request that was only
# slow (the fake's thread starved on a busy machine) times out too and comes
# back later as a late completion: timeouts = lost + late, once settled.
death_settled() {
    [ "$(tg_stat tlsgate_keyprov_fallbacks_total provider=qat reason=timeout)" = \
        "$(($(fake dropped) + $(tg_stat tlsgate_qat_late_completions_total)))" ]
}
tg_wait_for 5 "timeouts = requests lost with the device + late completions" death_settled
echo "device death: $DIE accepted, $(fake dropped) lost in flight (timed out)," \
    "$(tg_stat tlsgate_qat_late_completions_total) late, $(fake rejected) submits refused"
tg_expect_eq "$(tg_stat tlsgate_qat_requests_failed_total stage=submit)" "$(fake rejected)" \
    "/stats: failed submits"
tg_expect_eq "$(tg_stat tlsgate_handshakes_total result=ok)" "$N" "handshakes ok"
tg_expect_eq "$(stat_or0 tlsgate_handshakes_total result=key_operation_failed)" 0 \
    "handshakes failed by a key operation"
grep -q "device gone after $DIE requests" "$GW_LOG" || tg_fail "the fake did not die"
tg_gateway_stop

# ---------------------------------------------------------------------------
tg_case "two workers, one shared instance / two instances"
write_config shared.yaml '{ provider_name: qat, fallback: false, typed_config: { timeout: 5s } }' 2
start_gw shared shared.yaml FAKE_QAT_INSTANCES=1 FAKE_QAT_LATENCY_US=200
NR=$(n 300) NE=$(n 200)
bench "$RSA_PORT" "$(c 16)" "$NR"
bench "$EC_PORT" "$(c 16)" "$NE" --groups X25519:P-256
tg_wait_for 5 "$((NR + NE)) completions" fake_at_least completed "$((NR + NE))"
tg_expect_eq "$(tg_stat tlsgate_qat_requests_completed_total instance=0)" "$((NR + NE))" \
    "all on instance 0"
tg_expect_eq "$(tg_stat tlsgate_keyprov_fallbacks_total provider=qat)" 0 "no fallback"
tg_gateway_stop
start_gw twoinst shared.yaml FAKE_QAT_INSTANCES=2
N=$(n 400)
bench "$RSA_PORT" "$(c 16)" "$N"
tg_expect_eq "$(tg_stat tlsgate_qat_requests_submitted_total)" "$N" "submitted"
inst0=$(stat_or0 tlsgate_qat_requests_submitted_total instance=0)
inst1=$(stat_or0 tlsgate_qat_requests_submitted_total instance=1)
echo "instance 0: $inst0, instance 1: $inst1"
tg_expect_eq "$((inst0 + inst1))" "$N" "worker i on instance i"
tg_gateway_stop

# ---------------------------------------------------------------------------
tg_case "no device: fallback: false refuses to start (exit 2), fallback: true serves"
write_config nodev.yaml '{ provider_name: qat, fallback: false }'
rc=0
LD_LIBRARY_PATH=$FAKES FAKE_QAT_NO_DEVICE=1 tg_run 30 "$TLSGATE" run --config "$TG_TMP/nodev.yaml" \
    > "$TG_TMP/nodev.out" 2>&1 || rc=$?
tg_expect_eq "$rc" 2 "exit status without a device"
tg_expect_grep "nodev.yaml:[0-9]+:[0-9]+: listeners\[0\]\.tls\.certificates\[0\]\.private_key_provider: provider 'qat' cannot run here: icp_sal_userStart\(\"SSL\"\) failed \(CPA_STATUS_FAIL\): no QAT device" \
    "$TG_TMP/nodev.out" "a clear start-up error"
tg_expect_grep 'set fallback: true' "$TG_TMP/nodev.out" "the way out"
tg_expect_grep 'qatlib: fake_qat: icp_sal_userStart\(SSL\): no device' "$TG_TMP/nodev.out" \
    "what the library said, quoted in the reason"
tg_expect_eq "$(grep -vc '^==[0-9]*==' "$TG_TMP/nodev.out" || true)" 1 \
    "one line of output (the library's own text is captured)"
rc=0
LD_LIBRARY_PATH=$FAKES FAKE_QAT_NO_DEVICE=1 tg_run 30 "$TLSGATE" check-config "$TG_TMP/nodev.yaml" \
    > "$TG_TMP/nodev-check.out" 2>&1 || rc=$?
tg_expect_eq "$rc" 2 "check-config exit status without a device"
tg_expect_grep "provider 'qat' cannot run here" "$TG_TMP/nodev-check.out" "check-config says why"
write_config nodev-fb.yaml '{ provider_name: qat, fallback: true }'
start_gw nodevfb nodev-fb.yaml FAKE_QAT_NO_DEVICE=1
tg_expect_grep "provider 'qat' cannot run here: icp_sal_userStart.*serving with 'software' \(fallback: true\)" \
    "$GW_LOG" "the fallback warning"
sclient "$RSA_PORT" 1.3 "$TG_TMP/nodevfb.out"
N=$(n 50)
bench "$EC_PORT" 4 "$N" --groups X25519:P-256
tg_expect_eq "$(tg_stat tlsgate_handshakes_total result=ok)" "$((N + 1))" "handshakes ok in software"
tg_expect_eq "$(stat_or0 tlsgate_qat_requests_submitted_total)" 0 "nothing sent to qat"
tg_gateway_stop

tg_pass
