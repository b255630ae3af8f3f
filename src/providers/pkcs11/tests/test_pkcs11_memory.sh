#!/usr/bin/env bash
# The private key is not in tlsgate's memory: after and during handshakes
# signed by an HSM, every readable mapping of the running gateway
# (/proc/PID/maps, read through /proc/PID/mem by p11_memscan.py) is searched
# for the RSA key's primes p and q, big-endian and little-endian. None may
# be found. The public modulus must be found (the scan's positive control).
#
# Setup: the token runs OUT OF PROCESS. SoftHSM2 is a library: loaded into
# tlsgate, its memory is tlsgate's memory, and it decrypts the key into it
# for every signature (a scan under load finds the primes then; see
# docs/KEY-PROVIDERS.md, "Protecting keys"). So, like a network HSM's
# client, tlsgate loads p11-kit's client module (p11-kit-client.so), which
# forwards PKCS#11 calls over a Unix socket to `p11-kit server`, which runs
# SoftHSM2 in its own process. The key is imported into the token from a
# PEM file (so that the test knows p); tlsgate is never given that file.
#
# TG_P11_MEMTEST_SOFTWARE=1 serves the same key with the software provider
# instead: the test must then FAIL (the primes are found) -- a check that
# the scan would see the key if it were there. It does: the first scan
# finds each prime three times, little-endian (OpenSSL's BIGNUM words), in
# the heap and an anonymous mapping, and the test fails there.
SCAN=$(cd "$(dirname "$0")" && pwd)/p11_memscan.py # before tg_init changes directory
. "${TG_SRC_DIR:-$(dirname "$0")/../../../..}/tests/integration/lib.sh"
tg_init 300

MODULE=""
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so; do
    [ -f "$m" ] && MODULE=$m && break
done
CLIENT=""
for m in /usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so /usr/lib/pkcs11/p11-kit-client.so; do
    [ -f "$m" ] && CLIENT=$m && break
done
[ -n "$MODULE" ] || tg_skip "SoftHSM2 is not installed (scripts/setup.sh: softhsm2)"
[ -n "$CLIENT" ] || tg_skip "p11-kit-client.so is not installed (scripts/setup.sh: p11-kit-modules)"
command -v p11-kit > /dev/null || tg_skip "p11-kit is not installed"
command -v softhsm2-util > /dev/null || tg_skip "softhsm2-util is not installed"

# ---- a token with an imported RSA key ----
mkdir "$TG_TMP/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$TG_TMP" > "$TG_TMP/softhsm2.conf"
PIN=864209
SOFTHSM2_CONF=$TG_TMP/softhsm2.conf softhsm2-util --init-token --free --label tlsgate \
    --so-pin 24681357 --pin "$PIN" > "$TG_TMP/init.log" 2>&1 || { cat "$TG_TMP/init.log"; tg_fail "init-token"; }
printf '%s\n' "$PIN" > "$TG_TMP/pin"
read -r CERT KEY < <(tg_cert rsa a.test)
openssl pkcs8 -topk8 -nocrypt -in "$KEY" -out "$TG_TMP/key.p8"
SOFTHSM2_CONF=$TG_TMP/softhsm2.conf softhsm2-util --import "$TG_TMP/key.p8" --token tlsgate \
    --label mem-rsa --id 0a --pin "$PIN" > "$TG_TMP/import.log" 2>&1 ||
    { cat "$TG_TMP/import.log"; tg_fail "softhsm2-util --import"; }
rm -f "$TG_TMP/key.p8"

# ---- the token's process: p11-kit server running SoftHSM2 ----
SOCK=$TG_TMP/p11.sock
tg_spawn p11-kit-server env SOFTHSM2_CONF="$TG_TMP/softhsm2.conf" \
    p11-kit server -f --provider "$MODULE" -n "$SOCK" "pkcs11:token=tlsgate"
SERVER_PID=$TG_LAST_PID
tg_wait_for 10 "p11-kit server's socket" test -S "$SOCK"
tg_alive "$SERVER_PID" || tg_fail "p11-kit server exited"
tg_bench_serve

if [ "${TG_P11_MEMTEST_SOFTWARE:-0}" = 1 ]; then
    echo "TG_P11_MEMTEST_SOFTWARE=1: the key is loaded with the software provider; this must FAIL"
    PROVIDER="private_key: { filename: $KEY }
          private_key_provider: { provider_name: software }"
else
    PROVIDER="private_key_provider:
            provider_name: pkcs11
            typed_config:
              module: $CLIENT
              key: \"pkcs11:token=tlsgate;object=mem-rsa\"
              pin: { filename: $TG_TMP/pin }
              threads: 2"
fi
tg_config gw.yaml <<EOF
concurrency: 2
admin: { address: 127.0.0.1:0 }
listeners:
  - name: rsa
    address: 127.0.0.1:0
    tls:
      certificates:
        - certificate_chain: { filename: $CERT }
          $PROVIDER
    upstream: { address: $UP_ADDR }
EOF
export P11_KIT_SERVER_ADDRESS=unix:path=$SOCK
unset SOFTHSM2_CONF
tg_gateway gw.yaml
PORT=$(tg_listener_port rsa)
tg_expect_nogrep 'softhsm' "/proc/$GW_PID/maps" "SoftHSM2 is not loaded into tlsgate"

# scan LABEL: the primes must not be in the gateway's memory.
SCANS=0
scan() {
    local rc=0
    python3 "$SCAN" "$GW_PID" "$KEY" > "$TG_TMP/scan-$1.out" 2>&1 || rc=$?
    cat "$TG_TMP/scan-$1.out"
    [ "$rc" != 3 ] || tg_skip "cannot read the gateway's memory (ptrace permission)"
    tg_expect_eq "$rc" 0 "memory scan ($1): 0 = modulus found, no prime"
    SCANS=$((SCANS + 1))
}

REQ=$'GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n'
for ver in 1.2 1.3; do
    printf '%s' "$REQ" | tg_run 15 openssl s_client -connect "127.0.0.1:$PORT" -brief -ign_eof \
        "-tls${ver/./_}" > "$TG_TMP/s-$ver.out" 2>&1 || { cat "$TG_TMP/s-$ver.out"; tg_fail "s_client"; }
    tg_expect_grep '^hello from tlsgate upstream$' "$TG_TMP/s-$ver.out" "handshake TLS $ver"
done
scan after-handshakes

# While signatures are being made: bench in the background, scans meanwhile.
N=2000 C=8
[ -z "$TG_VALGRIND" ] || N=200 C=4
tg_spawn bench "$TLSGATE" bench -k --quiet --timeout "$(tg_s 10)s" -c "$C" -n "$N" \
    --json "$TG_TMP/bench.json" \
    "https://127.0.0.1:$PORT/"
BENCH_PID=$TG_LAST_PID
I=0
while tg_alive "$BENCH_PID" && [ "$I" -lt 20 ]; do
    I=$((I + 1))
    scan "under-load-$I"
done
wait "$BENCH_PID" || tg_fail "bench failed"
OK=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ok"])' "$TG_TMP/bench.json")
tg_expect_eq "$OK" "$N" "bench calls that succeeded"
scan after-load
echo "scans: $SCANS ($I during load); signatures by the token: $(tg_stat tlsgate_pkcs11_operations_total result=ok 2> /dev/null || echo 0)"
tg_gateway_stop
tg_pass
