#!/usr/bin/env bash
# RSA-8192 certificates: the largest RSA key tlsgate accepts. openssl
# genpkey takes seconds to minutes for such a key (a prime search: the time
# varies from run to run, and grows under load), so the key is made once per
# build tree ($TG_BUILD_DIR/test-keys/rsa8192.key, written atomically,
# checked before use) and reused by later runs; without TG_BUILD_DIR it is
# made in the test's temp dir. openssl s_client, TLS 1.2 and 1.3, through:
#   - software: OpenSSL signs (1024-byte signatures: TG_KEYOP_OUT_MAX);
#   - deferred: the same signature through the asynchronous path (the
#     handshake's ASYNC job pauses, the loop completes it);
#   - cryptomb: crypto_mb batches RSA-2048/3072/4096 only: the certificate
#     falls back to software at start-up, with a warning that says so;
#     with fallback: false the start is refused with that reason (exit 2).
# Checks the server key size s_client reports, that the request reaches the
# upstream, and the handshake counters. A key above the maximum (RSA-8193
# would need another minute: an RSA-1024 key checks the other bound) is
# refused with its size and the limit.
. "$(dirname "$0")/lib.sh"
tg_init 570

tg_case "an RSA-8192 key (made once per build tree) and its certificate"
keydir=$TG_TMP
[ -z "${TG_BUILD_DIR:-}" ] || keydir=$TG_BUILD_DIR/test-keys
mkdir -p "$keydir"
KEY=$keydir/rsa8192.key
CERT=$TG_TMP/rsa8192.pem
bits=$(openssl pkey -in "$KEY" -noout -text 2> /dev/null | sed -n 's/^Private-Key: (\([0-9]*\) bit.*/\1/p' || true)
if [ "$bits" != 8192 ]; then
    tmpkey=$(mktemp "$keydir/rsa8192.key.XXXXXX") # mode 0600
    tg_run 480 openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:8192 -out "$tmpkey" \
        > "$TG_TMP/genpkey.log" 2>&1 ||
        { rm -f "$tmpkey"; cat "$TG_TMP/genpkey.log"; tg_fail "openssl genpkey failed"; }
    mv -f "$tmpkey" "$KEY" # atomic: a concurrent run sees the old state or the whole key
fi
openssl req -x509 -key "$KEY" -sha256 -days 2 -subj /CN=a.test -addext subjectAltName=DNS:a.test \
    -out "$CERT" > "$TG_TMP/req.log" 2>&1 || { cat "$TG_TMP/req.log"; tg_fail "openssl req failed"; }
tg_bench_serve

REQ=$'GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n'

listener() { # NAME PROVIDER-YAML
    cat <<EOF
  - name: $1
    address: 127.0.0.1:0
    tls:
      certificates:
        - certificate_chain: { filename: $CERT }
          private_key: { filename: $KEY }
          private_key_provider: $2
    upstream: { address: $UP_ADDR }
EOF
}

tg_config gw.yaml <<EOF
admin: { address: 127.0.0.1:0 }
listeners:
$(listener software '{ provider_name: software }')
$(listener deferred '{ provider_name: deferred }')
$(listener cryptomb '{ provider_name: cryptomb, fallback: true }')
EOF
tg_gateway gw.yaml

tg_case "cryptomb: the RSA-8192 certificate is served by software, and the log says why"
why=$(sed -n "s/.*listeners\[2\]\.tls\.certificates\[0\]\.private_key_provider: provider 'cryptomb' cannot run here: \(.*\); serving with 'software'.*/\1/p" "$GW_LOG")
[ -n "$why" ] || { cat "$GW_LOG"; tg_fail "no fallback warning for the cryptomb certificate"; }
# Without AVX-512 IFMA (or under valgrind) crypto_mb does not run at all and
# the warning says that instead: the key size is then not what it is about.
case $why in
*RSA-8192*) ;;
*"signature size"*) tg_fail "unexpected fallback reason: $why" ;;
*) echo "    (cryptomb cannot run on this machine: $why)" ;;
esac
tg_expect_grep "listener cryptomb: certificate 0: RSA 8192-bit" "$GW_LOG" "certificate described"
tg_expect_nogrep "unexpected signature size" "$GW_LOG" "no signature size error"

n=0
for name in software deferred cryptomb; do
    port=$(tg_listener_port "$name")
    for ver in 1.2 1.3; do
        tg_case "$name: TLS $ver handshake with the RSA-8192 certificate"
        out=$TG_TMP/out-$name-$ver
        printf '%s' "$REQ" | tg_run 60 openssl s_client -connect "127.0.0.1:$port" -servername a.test \
            -ign_eof "-tls${ver/./_}" > "$out" 2>&1 || { cat "$out"; tg_fail "s_client failed"; }
        tg_expect_grep "Server public key is 8192 bit" "$out" "server key size"
        tg_expect_grep "Protocol *: TLSv$ver" "$out" "protocol"
        tg_expect_grep "^HTTP/1.1 200" "$out" "upstream answer"
        n=$((n + 1))
    done
done
tg_settle
tg_expect_eq "$(tg_stat tlsgate_handshakes_total result=ok)" "$n" "handshakes ok"
tg_expect_eq "$(tg_stat tlsgate_handshakes_total result=key_operation_failed)" 0 "key operation failures"
tg_expect_eq "$(tg_stat tlsgate_connections_closed_total reason=normal)" "$n" "closed normally"
tg_gateway_stop

tg_case "cryptomb with fallback: false refuses the RSA-8192 certificate, with the reason"
tg_config strict.yaml <<EOF
listeners:
$(listener strict '{ provider_name: cryptomb, fallback: false }')
EOF
rc=0
tg_run 60 "$TLSGATE" check-config --config "$TG_TMP/strict.yaml" > "$TG_TMP/strict.out" 2>&1 || rc=$?
tg_expect_eq "$rc" 2 "check-config exit status"
tg_expect_grep "strict.yaml:[0-9]+:[0-9]+: listeners\[0\]\.tls\.certificates\[0\]\.private_key_provider: provider 'cryptomb' cannot run here: " \
    "$TG_TMP/strict.out" "reason"
case $why in *RSA-8192*) tg_expect_grep "RSA-8192" "$TG_TMP/strict.out" "the key size in the reason" ;; esac

tg_case "an RSA key below the minimum is refused with its size and the limit"
openssl req -x509 -nodes -days 2 -subj /CN=a.test -newkey rsa:1024 -keyout "$TG_TMP/small.key" \
    -out "$TG_TMP/small.pem" > "$TG_TMP/small.log" 2>&1 || { cat "$TG_TMP/small.log"; tg_fail "openssl req"; }
tg_config small.yaml <<EOF
listeners:
  - name: small
    address: 127.0.0.1:0
    tls:
      certificates:
        - certificate_chain: { filename: $TG_TMP/small.pem }
          private_key: { filename: $TG_TMP/small.key }
    upstream: { address: $UP_ADDR }
EOF
rc=0
tg_run 60 "$TLSGATE" check-config --config "$TG_TMP/small.yaml" > "$TG_TMP/small.out" 2>&1 || rc=$?
tg_expect_eq "$rc" 2 "check-config exit status"
tg_expect_grep "RSA key of 1024 bits is too small \(minimum 2048\)" "$TG_TMP/small.out" "reason"

tg_pass
