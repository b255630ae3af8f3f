#!/usr/bin/env bash
# The pkcs11 key provider's failure handling, end to end: the real tlsgate
# binary with the fault-injecting fake PKCS#11 module
# ($TG_BUILD_DIR/fakes/libtgfakep11.so, src/providers/pkcs11/tests/fake_p11.c),
# steered through its control file while real clients connect.
#
#   1. handshakes through the fake; the token logs the user out: tlsgate
#      logs in again and the handshake succeeds.
#   2. the token is removed mid-run: handshakes on its key fail (counted per
#      CKR code), then fail fast without asking the token; a software
#      listener on the same worker keeps serving; the token comes back: it is
#      found again with back-off and handshakes succeed.
#   3. a token whose C_Sign hangs: with one worker, a software listener keeps
#      serving a bench while the token's handshake waits; the request times
#      out (counted); released, the token signs again.
#   4. a full queue (1 thread, max_queue 1): the extra handshakes fail at
#      once, counted as queue_full; the others succeed.
#   5. a slow token (5 ms per C_Sign) with 4 signing threads under
#      tlsgate bench -c 16: every call succeeds.
# Every gateway exits 0 on SIGTERM (sanitizer and valgrind clean).
. "${TG_SRC_DIR:-$(dirname "$0")/../../../..}/tests/integration/lib.sh"
tg_init 300

FAKE=${TG_BUILD_DIR:-$(dirname "$TLSGATE")}/fakes/libtgfakep11.so
[ -f "$FAKE" ] || tg_skip "no fake PKCS#11 module at $FAKE (build the tg_fake_p11 target)"

read -r RSA_CERT RSA_KEY < <(tg_cert rsa a.test)
read -r EC_CERT EC_KEY < <(tg_cert ec a.test)
read -r SW_CERT SW_KEY < <(tg_cert rsa b.test)
export FAKE_P11_KEYS="rsa:01:$RSA_KEY:$RSA_CERT,ec:02:$EC_KEY:$EC_CERT"
export FAKE_P11_CONTROL=$TG_TMP/fake.ctl
: > "$FAKE_P11_CONTROL"
printf '1234\n' > "$TG_TMP/pin"
tg_bench_serve

REQ=$'GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n'
DIV=1 HS_TIMEOUT=10s
if [ -n "$TG_VALGRIND" ]; then DIV=5 HS_TIMEOUT=120s; fi
n() { echo $(($1 / DIV)); }

# ctl KEY=VALUE...: the fake's control file (read at every call).
ctl() { printf '%s\n' "$@" > "$FAKE_P11_CONTROL"; }

write_config() {
    local file=$1 conc=$2 extra=$3
    tg_config "$file" <<EOF
concurrency: $conc
admin: { address: 127.0.0.1:0 }
limits: { handshake_timeout: $HS_TIMEOUT }
listeners:
  - name: rsa
    address: 127.0.0.1:0
    tls:
      certificates:
        - private_key_provider:
            provider_name: pkcs11
            typed_config:
              module: $FAKE
              key: "pkcs11:token=fake;object=rsa"
              pin: { filename: $TG_TMP/pin }
              $extra
    upstream: { address: $UP_ADDR }
  - name: sw
    address: 127.0.0.1:0
    tls:
      certificates:
        - certificate_chain: { filename: $SW_CERT }
          private_key: { filename: $SW_KEY }
    upstream: { address: $UP_ADDR }
EOF
}

start_gw() {
    tg_gateway "$1" "$2"
    RSA_PORT=$(tg_listener_port rsa)
    SW_PORT=$(tg_listener_port sw)
}

# hs PORT OUT: one handshake + request; status 0 when the upstream answered.
hs() {
    printf '%s' "$REQ" | tg_run 30 openssl s_client -connect "127.0.0.1:$1" -servername a.test \
        -brief -ign_eof -tls1_3 > "$2" 2>&1 && grep -q '^hello from tlsgate upstream$' "$2"
}

bench() {
    local port=$1 c=$2 num=$3 out
    shift 3
    out=$TG_TMP/bench-$port-$c-$num-$RANDOM.json
    # Under valgrind everything is ~30x slower: fewer clients, more patience.
    [ -z "$TG_VALGRIND" ] || [ "$c" -le 4 ] || c=4
    tg_run 120 "$TLSGATE" bench -k --quiet --timeout "$(tg_s 10)s" -c "$c" -n "$num" --json "$out" "$@" \
        "https://127.0.0.1:$port/" > "$out.log" 2>&1 || { cat "$out.log"; tg_fail "bench failed"; }
    local ok
    ok=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["ok"])' "$out")
    tg_expect_eq "$ok" "$num" "bench calls that succeeded ($(grep -m1 '^Errors' "$out.log" || echo 'no errors'))"
}

ops() { tg_stat tlsgate_pkcs11_operations_total token=fake "result=$1"; }
stat_at_least() { [ "$(tg_stat "$1" "${@:3}")" -ge "$2" ]; }

# ---------------------------------------------------------------------------
tg_case "signing through the fake; the token forgets the login"
ctl
write_config basic.yaml 2 "threads: 2"
start_gw basic.yaml basic
tg_expect_grep "key 'pkcs11:token=fake;object=rsa': RSA 2048-bit" "$GW_LOG" "key found"
hs "$RSA_PORT" "$TG_TMP/basic.out" || { cat "$TG_TMP/basic.out"; tg_fail "handshake"; }
tg_expect_eq "$(tg_stat tlsgate_pkcs11_logins_total token=fake)" 1 "one login at start-up"
ctl logout=1
hs "$RSA_PORT" "$TG_TMP/relogin.out" || { cat "$TG_TMP/relogin.out"; tg_fail "handshake after logout"; }
tg_expect_eq "$(tg_stat tlsgate_pkcs11_logins_total token=fake)" 2 "logged in again"
tg_expect_eq "$(tg_stat tlsgate_pkcs11_errors_total token=fake code=CKR_USER_NOT_LOGGED_IN)" 1 \
    "CKR_USER_NOT_LOGGED_IN counted"
tg_expect_grep "logged in again after CKR_USER_NOT_LOGGED_IN" "$GW_LOG" "logged"
tg_expect_eq "$(ops ok)" 2 "signatures"
tg_gateway_stop

# ---------------------------------------------------------------------------
tg_case "the token is removed mid-run, then comes back"
ctl
write_config removed.yaml 1 "threads: 1"
start_gw removed.yaml removed
hs "$RSA_PORT" "$TG_TMP/before.out" || tg_fail "handshake before removal"
ctl removed=1
for i in 1 2 3 4; do
    ! hs "$RSA_PORT" "$TG_TMP/gone-$i.out" || tg_fail "a handshake succeeded without the token"
done
tg_expect_eq "$(tg_stat tlsgate_handshakes_total result=key_operation_failed)" 4 "failed handshakes"
tg_expect_eq "$(tg_stat tlsgate_pkcs11_errors_total token=fake code=CKR_DEVICE_REMOVED)" 1 \
    "CKR_DEVICE_REMOVED counted once (then tlsgate stops asking)"
tg_expect_eq "$(ops token_down)" 3 "failed fast while down"
tg_expect_eq "$(tg_stat tlsgate_pkcs11_token_up token=fake)" 0 "token down"
tg_expect_grep "token 'fake': CKR_DEVICE_REMOVED: token unavailable" "$GW_LOG" "the log says why"
bench "$SW_PORT" 4 "$(n 40)" --tls-version 1.3 # the software listener does not care
ctl removed=0
tg_wait_for 30 "the token to come back" stat_at_least tlsgate_pkcs11_token_up 1 token=fake
tg_expect_grep "token 'fake' is back" "$GW_LOG" "recovery logged"
hs "$RSA_PORT" "$TG_TMP/back.out" || { cat "$TG_TMP/back.out"; tg_fail "handshake after recovery"; }
tg_expect_eq "$(tg_stat tlsgate_pkcs11_recoveries_total token=fake)" 1 "one recovery"
tg_gateway_stop

# ---------------------------------------------------------------------------
tg_case "a hung C_Sign stalls no worker loop; its request times out"
ctl
write_config slow.yaml 1 "timeout: 1s"
start_gw slow.yaml slow
ctl block=1
hs "$RSA_PORT" "$TG_TMP/hung.out" &
HS_PID=$!
tg_wait_for 30 "the request to reach the token" stat_at_least tlsgate_keyprov_operations_total 1 provider=pkcs11
# One worker serves both listeners: it must keep serving the other one.
bench "$SW_PORT" 4 "$(n 100)" --tls-version 1.3
tg_expect_eq "$(tg_admin_status /ready)" 200 "the admin endpoint answers"
tg_wait_for 30 "the timeout" stat_at_least tlsgate_pkcs11_operations_total 1 token=fake result=timeout
rc=0
wait "$HS_PID" || rc=$?
[ "$rc" != 0 ] || tg_fail "the handshake waiting on a hung token succeeded"
tg_expect_eq "$(tg_stat tlsgate_keyprov_unrecoverable_total provider=pkcs11 reason=timeout)" 1 \
    "counted as a timeout"
ctl block=0
hs "$RSA_PORT" "$TG_TMP/unhung.out" || { cat "$TG_TMP/unhung.out"; tg_fail "handshake after release"; }
tg_gateway_stop

# ---------------------------------------------------------------------------
tg_case "a full queue fails fast"
ctl
write_config queue.yaml 1 "threads: 1, max_queue: 1"
sed -i 's/threads: 1, max_queue: 1/threads: 1\n              max_queue: 1/' "$TG_TMP/queue.yaml"
start_gw queue.yaml queue
ctl block=1
PIDS=()
for i in 1 2 3 4; do
    hs "$RSA_PORT" "$TG_TMP/q-$i.out" &
    PIDS+=($!)
done
# All four arrived: one held by the thread, one queued, two refused.
all_placed() {
    [ "$(tg_stat tlsgate_pkcs11_signing token=fake)" = 1 ] &&
        [ "$(tg_stat tlsgate_pkcs11_queue_depth token=fake)" = 1 ] &&
        [ "$(ops queue_full)" = 2 ]
}
tg_wait_for 30 "one signing, one queued, two refused" all_placed
ctl block=0
OKS=0
for pid in "${PIDS[@]}"; do
    if wait "$pid"; then OKS=$((OKS + 1)); fi
done
tg_expect_eq "$OKS" 2 "handshakes that got a signature (one signing, one queued)"
tg_expect_eq "$(ops queue_full)" 2 "refused: queue full"
tg_expect_eq "$(tg_stat tlsgate_keyprov_unrecoverable_total provider=pkcs11 reason=ring_full)" 2 \
    "counted as unrecoverable (ring_full)"
tg_gateway_stop

# ---------------------------------------------------------------------------
tg_case "a slow token with 4 signing threads under load"
ctl sign_delay_ms=5
write_config load.yaml 2 "threads: 4"
start_gw load.yaml load
bench "$RSA_PORT" 16 "$(n 200)" --tls-version 1.3
tg_expect_eq "$(ops ok)" "$(n 200)" "signatures"
tg_expect_eq "$(tg_stat tlsgate_pkcs11_threads token=fake)" 4 "threads"
tg_gateway_stop

tg_pass
