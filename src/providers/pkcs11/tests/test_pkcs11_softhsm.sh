#!/usr/bin/env bash
# The pkcs11 key provider end to end: the real tlsgate binary with keys
# generated inside a SoftHSM2 token (in a temp dir, SOFTHSM2_CONF), driven
# by real clients (openssl s_client, curl, tlsgate bench).
#
#   1. RSA-2048 and P-256 keys made in the token with pkcs11-tool (or,
#      without opensc, imported with softhsm2-util), a P-384 key imported; the RSA and P-384
#      certificates given with certificate_chain, the P-256 one read from the
#      token (certificate_chain left out). TLS 1.2 and 1.3, RSA-PSS and
#      PKCS#1 v1.5, ECDSA; curl; tlsgate bench -n 200 -c 8 with 0 errors on
#      each; /stats agrees that the token made every signature.
#      `tlsgate doctor --config` lists the token, its keys, and what it can
#      tell of each configured key without logging in.
#   2. rsa_mechanism: raw (CKM_RSA_X_509, tlsgate's own PSS/PKCS#1 encoding).
#   3. Start-up errors, exit status 2, with check-config and run: a wrong PIN
#      (the message names the token and never shows the PIN), a missing
#      object, a library that is not a PKCS#11 module (libc), fallback: true.
#   4. The token removed mid-run (its directory deleted): handshakes on its
#      keys fail (clear errors, counted), a software listener keeps serving,
#      nothing crashes, SIGTERM exits 0.
. "${TG_SRC_DIR:-$(dirname "$0")/../../../..}/tests/integration/lib.sh"
tg_init 300

MODULE=""
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so; do
    [ -f "$m" ] && MODULE=$m && break
done
[ -n "$MODULE" ] || tg_skip "SoftHSM2 is not installed (scripts/setup.sh: softhsm2)"
command -v softhsm2-util > /dev/null || tg_skip "softhsm2-util not installed"
command -v curl > /dev/null || tg_skip "curl not installed"

DIV=1 HS_TIMEOUT=10s
if [ -n "$TG_VALGRIND" ]; then DIV=5 HS_TIMEOUT=120s; fi
n() { echo $(($1 / DIV)); }

# ---- the token ----
mkdir "$TG_TMP/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$TG_TMP" > "$TG_TMP/softhsm2.conf"
export SOFTHSM2_CONF=$TG_TMP/softhsm2.conf
PIN=246813
softhsm2-util --init-token --free --label tlsgate --so-pin 97531864 --pin "$PIN" \
    > "$TG_TMP/init.log" 2>&1 || { cat "$TG_TMP/init.log"; tg_fail "softhsm2-util --init-token"; }
printf '%s\n' "$PIN" > "$TG_TMP/pin"
chmod 600 "$TG_TMP/pin"

# A CA that signs certificates for the token's public keys.
openssl req -x509 -nodes -days 2 -subj /CN=tlsgate-test-ca -newkey ec \
    -pkeyopt ec_paramgen_curve:P-256 -keyout "$TG_TMP/ca.key" -out "$TG_TMP/ca.pem" \
    > "$TG_TMP/ca.log" 2>&1 || { cat "$TG_TMP/ca.log"; tg_fail "CA"; }

# make_key TYPE LABEL ID: a key pair in the token and a certificate for it
# ($TG_TMP/LABEL.pem); generated inside the token when pkcs11-tool exists,
# except P-384: Debian 12's pkcs11-tool (OpenSC 0.23) cannot export a P-384
# public key ("cannot create EVP_PKEY"), so that one is always imported.
make_key() {
    local type=$1 label=$2 id=$3
    if command -v pkcs11-tool > /dev/null && [ "$type" != ec384 ]; then
        local spec=rsa:2048
        [ "$type" = ec ] && spec=EC:prime256v1
        pkcs11-tool --module "$MODULE" --token-label tlsgate --login --pin "$PIN" --keypairgen \
            --key-type "$spec" --label "$label" --id "$id" > "$TG_TMP/$label.gen.log" 2>&1 ||
            { cat "$TG_TMP/$label.gen.log"; tg_fail "pkcs11-tool --keypairgen $label"; }
        pkcs11-tool --module "$MODULE" --token-label tlsgate --read-object --type pubkey \
            --label "$label" -o "$TG_TMP/$label.pub.der" > /dev/null 2>&1 ||
            tg_fail "pkcs11-tool --read-object $label"
        openssl pkey -pubin -inform DER -in "$TG_TMP/$label.pub.der" -out "$TG_TMP/$label.pub"
    else
        local newkey=(-algorithm RSA -pkeyopt rsa_keygen_bits:2048)
        [ "$type" = ec ] && newkey=(-algorithm EC -pkeyopt ec_paramgen_curve:P-256)
        [ "$type" = ec384 ] && newkey=(-algorithm EC -pkeyopt ec_paramgen_curve:P-384)
        openssl genpkey "${newkey[@]}" -out "$TG_TMP/$label.key" 2> /dev/null
        openssl pkey -in "$TG_TMP/$label.key" -pubout -out "$TG_TMP/$label.pub"
        softhsm2-util --import "$TG_TMP/$label.key" --token tlsgate --label "$label" --id "$id" \
            --pin "$PIN" > "$TG_TMP/$label.gen.log" 2>&1 || tg_fail "softhsm2-util --import"
        rm -f "$TG_TMP/$label.key"
    fi
    openssl req -new -key "$TG_TMP/ca.key" -subj /CN=a.test 2> /dev/null |
        openssl x509 -req -CA "$TG_TMP/ca.pem" -CAkey "$TG_TMP/ca.key" -days 2 \
            -force_pubkey "$TG_TMP/$label.pub" -out "$TG_TMP/$label.pem" \
            -extfile <(printf 'subjectAltName=DNS:a.test') > /dev/null 2>&1 ||
        tg_fail "certificate for $label"
}
make_key rsa server-rsa 01
make_key ec server-ec 02
make_key ec384 server-ec384 03
# The EC certificate lives in the token too, next to its key.
if command -v pkcs11-tool > /dev/null; then
    openssl x509 -in "$TG_TMP/server-ec.pem" -outform DER -out "$TG_TMP/server-ec.der"
    pkcs11-tool --module "$MODULE" --token-label tlsgate --login --pin "$PIN" --write-object \
        "$TG_TMP/server-ec.der" --type cert --label server-ec --id 02 > /dev/null 2>&1 ||
        tg_fail "pkcs11-tool --write-object cert"
    EC_CHAIN=""
else
    EC_CHAIN="certificate_chain: { filename: $TG_TMP/server-ec.pem }"
fi
read -r SW_CERT SW_KEY < <(tg_cert rsa b.test)
tg_bench_serve

REQ=$'GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n'

# provider KEY [EXTRA]: a pkcs11 private_key_provider block (flow style).
provider() {
    printf '{ provider_name: pkcs11, typed_config: { module: %s, key: "%s", pin: { filename: %s }, threads: 2%s } }' \
        "$MODULE" "$1" "$TG_TMP/pin" "${2:+, $2}"
}

write_config() {
    local file=$1 extra=${2:-}
    tg_config "$file" <<EOF
concurrency: 2
admin: { address: 127.0.0.1:0 }
limits: { handshake_timeout: $HS_TIMEOUT }
listeners:
  - name: rsa
    address: 127.0.0.1:0
    tls:
      certificates:
        - certificate_chain: { filename: $TG_TMP/server-rsa.pem }
          private_key_provider: $(provider "pkcs11:token=tlsgate;object=server-rsa" "$extra")
    upstream: { address: $UP_ADDR }
  - name: ec
    address: 127.0.0.1:0
    tls:
      certificates:
        - $EC_CHAIN
          private_key_provider: $(provider "pkcs11:token=tlsgate;id=%02;type=private")
    upstream: { address: $UP_ADDR }
  - name: ec384
    address: 127.0.0.1:0
    tls:
      certificates:
        - certificate_chain: { filename: $TG_TMP/server-ec384.pem }
          private_key_provider: $(provider "pkcs11:token=tlsgate;object=server-ec384")
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
    tg_gateway "$1" "${2:-tlsgate}"
    RSA_PORT=$(tg_listener_port rsa)
    EC_PORT=$(tg_listener_port ec)
    EC384_PORT=$(tg_listener_port ec384)
    SW_PORT=$(tg_listener_port sw)
}

sclient() {
    local port=$1 ver=$2 out=$3
    shift 3
    printf '%s' "$REQ" | tg_run 15 openssl s_client -connect "127.0.0.1:$port" -servername a.test \
        -brief -ign_eof "-tls${ver/./_}" "$@" > "$out" 2>&1 ||
        { cat "$out"; tg_fail "s_client $ver failed"; }
    tg_expect_grep '^hello from tlsgate upstream$' "$out" "upstream answer through TLS $ver"
}

bench() {
    local port=$1 c=$2 n=$3 out
    shift 3
    out=$TG_TMP/bench-$port-$c-$n.json
    # Under valgrind everything is ~30x slower: fewer clients, more patience.
    [ -z "$TG_VALGRIND" ] || [ "$c" -le 4 ] || c=4
    tg_run 120 "$TLSGATE" bench -k --quiet --timeout "$(tg_s 10)s" -c "$c" -n "$n" --json "$out" "$@" \
        "https://127.0.0.1:$port/" > "$out.log" 2>&1 || { cat "$out.log"; tg_fail "bench failed"; }
    local ok
    ok=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["ok"])' "$out")
    tg_expect_eq "$ok" "$n" "bench calls that succeeded ($(grep -m1 '^Errors' "$out.log" || echo 'no errors'))"
}

# ---------------------------------------------------------------------------
tg_case "RSA-2048, P-256 and P-384 keys in SoftHSM2: s_client, curl, bench"
write_config gw.yaml
start_gw gw.yaml
tg_expect_grep "pkcs11: token 'tlsgate' \\($MODULE\\): key 'pkcs11:token=tlsgate;object=server-rsa': RSA 2048-bit" \
    "$GW_LOG" "the RSA key was found in the token"
tg_expect_grep "key provider 'pkcs11' \\(private key held by the provider\\)" "$GW_LOG" "held key"
for ver in 1.2 1.3; do
    sclient "$RSA_PORT" "$ver" "$TG_TMP/rsa-$ver.out"
    tg_expect_grep "^Signature type: $TG_SIG_RSA_PSS\$" "$TG_TMP/rsa-$ver.out" "RSA-PSS signature"
    sclient "$EC_PORT" "$ver" "$TG_TMP/ec-$ver.out"
    tg_expect_grep "^Signature type: $TG_SIG_ECDSA\$" "$TG_TMP/ec-$ver.out" "ECDSA signature"
    sclient "$EC384_PORT" "$ver" "$TG_TMP/ec384-$ver.out"
    tg_expect_grep "^Signature type: $TG_SIG_ECDSA\$" "$TG_TMP/ec384-$ver.out" "ECDSA P-384 signature"
done
tg_expect_grep "key 'pkcs11:token=tlsgate;object=server-ec384': EC 384-bit" "$GW_LOG" \
    "the P-384 key was found in the token"
sclient "$RSA_PORT" 1.2 "$TG_TMP/rsa-pkcs1.out" -sigalgs rsa_pkcs1_sha256
tg_expect_grep "^Signature type: $TG_SIG_RSA_PKCS1\$" "$TG_TMP/rsa-pkcs1.out" "RSA PKCS#1 v1.5 signature"
for port in "$RSA_PORT" "$EC_PORT"; do
    curl -sk --max-time "$(tg_s 10)" --resolve "a.test:$port:127.0.0.1" "https://a.test:$port/" \
        > "$TG_TMP/curl.out" || tg_fail "curl failed"
    tg_expect_grep '^hello from tlsgate upstream$' "$TG_TMP/curl.out" "curl through pkcs11"
done
NB=$(n 200)
bench "$RSA_PORT" 8 "$NB" --tls-version 1.3
bench "$EC_PORT" 8 "$NB" --tls-version 1.2 --groups X25519:P-256
TOTAL=$((7 + 2 + 2 * NB)) # s_client, curl, bench
tg_expect_eq "$(tg_stat tlsgate_pkcs11_operations_total token=tlsgate result=ok)" "$TOTAL" \
    "signatures the token made"
tg_expect_eq "$(tg_stat tlsgate_keyprov_operations_completed_total provider=pkcs11)" "$TOTAL" \
    "key operations completed by pkcs11"
tg_expect_eq "$(tg_stat tlsgate_keyprov_operations_failed_total provider=pkcs11)" 0 "failed"
tg_expect_eq "$(tg_stat tlsgate_pkcs11_errors_total token=tlsgate)" 0 "token errors"
tg_expect_eq "$(tg_stat tlsgate_handshakes_total result=ok)" "$TOTAL" "handshakes ok"
tg_expect_ge "$(tg_stat tlsgate_pkcs11_sign_seconds_count token=tlsgate)" "$TOTAL" "latency histogram"
tg_expect_eq "$(tg_stat tlsgate_pkcs11_token_up token=tlsgate)" 1 "token up"
tg_gateway_stop
tg_expect_nogrep "$PIN" "$GW_LOG" "the PIN is never logged"

# The doctor, on the same configuration: the module, its token and keys, and
# each configured key -- without logging in (the PIN file is never read).
chmod 000 "$TG_TMP/pin"
tg_run 60 "$TLSGATE" doctor --config "$TG_TMP/gw.yaml" > "$TG_TMP/doctor.out" 2>&1 ||
    { cat "$TG_TMP/doctor.out"; tg_fail "tlsgate doctor --config"; }
chmod 600 "$TG_TMP/pin"
tg_expect_grep "^  module $MODULE: SoftHSM" "$TG_TMP/doctor.out" "doctor: the configured module"
tg_expect_grep "configured: listeners\\[0\\].tls.certificates\\[0\\].private_key_provider: pkcs11:token=tlsgate;object=server-rsa$" \
    "$TG_TMP/doctor.out" "doctor: the configured RSA key"
tg_expect_grep "token 'tlsgate' found; without login: 0 private key\\(s\\), 1 public key\\(s\\)" \
    "$TG_TMP/doctor.out" "doctor: what is visible of it without login"
tg_expect_grep "pkcs11:token=tlsgate;object=server-ec384;id=%03;type=public  EC P-384" \
    "$TG_TMP/doctor.out" "doctor: the P-384 key listed"
tg_expect_eq "$(grep -c "^  module $MODULE:" "$TG_TMP/doctor.out")" 1 "doctor: the module once"
tg_expect_nogrep "$PIN" "$TG_TMP/doctor.out" "doctor: no PIN"

# ---------------------------------------------------------------------------
tg_case "rsa_mechanism: raw (CKM_RSA_X_509 with tlsgate's encodings)"
write_config raw.yaml "rsa_mechanism: raw"
start_gw raw.yaml raw
tg_expect_grep "RSA 2048-bit, CKM_RSA_X_509 \\+ CKM_RSA_X_509" "$GW_LOG" "raw mechanisms"
sclient "$RSA_PORT" 1.3 "$TG_TMP/raw-1.3.out"
sclient "$RSA_PORT" 1.2 "$TG_TMP/raw-1.2.out" -sigalgs rsa_pkcs1_sha384
bench "$RSA_PORT" 4 "$(n 50)" --tls-version 1.3
tg_gateway_stop

# ---------------------------------------------------------------------------
tg_case "start-up errors: exit status 2 and a message naming what is wrong"
# expect_startup_error CONFIG REGEX: check-config and run both exit 2 with it.
expect_startup_error() {
    local cfg=$1 re=$2 rc
    for cmd in check-config run; do
        rc=0
        if [ "$cmd" = run ]; then
            tg_run 60 "${TG_VG[@]}" "$TLSGATE" run --config "$TG_TMP/$cfg" > "$TG_TMP/$cfg.$cmd.out" 2>&1 || rc=$?
        else
            tg_run 60 "${TG_VG[@]}" "$TLSGATE" check-config "$TG_TMP/$cfg" > "$TG_TMP/$cfg.$cmd.out" 2>&1 || rc=$?
        fi
        tg_expect_eq "$rc" 2 "$cfg: exit status of $cmd"
        tg_expect_grep "$re" "$TG_TMP/$cfg.$cmd.out" "$cfg: $cmd's message"
        tg_expect_nogrep "$PIN" "$TG_TMP/$cfg.$cmd.out" "$cfg: no PIN in the output"
        tg_expect_nogrep 'Sanitizer|runtime error' "$TG_TMP/$cfg.$cmd.out" "$cfg: sanitizers"
    done
}
printf '13579\n' > "$TG_TMP/wrong-pin"
sed "s|pin: { filename: $TG_TMP/pin }|pin: { filename: $TG_TMP/wrong-pin }|" "$TG_TMP/gw.yaml" > "$TG_TMP/wrong-pin.yaml"
expect_startup_error wrong-pin.yaml \
    "listeners\\[0\\].tls.certificates\\[0\\].private_key_provider: token 'tlsgate': login failed: CKR_PIN_INCORRECT \\(wrong PIN\\)"
sed 's/object=server-rsa/object=no-such-key/' "$TG_TMP/gw.yaml" > "$TG_TMP/missing.yaml"
expect_startup_error missing.yaml \
    "no private key 'pkcs11:token=tlsgate;object=no-such-key' on token 'tlsgate'"
LIBC=$(ldd "$TLSGATE" | awk '/libc\.so/ { print $3; exit }')
sed "0,\\|module: $MODULE|s||module: $LIBC|" "$TG_TMP/gw.yaml" > "$TG_TMP/libc.yaml"
expect_startup_error libc.yaml "'$LIBC' is not a PKCS#11 module \\(it has no C_GetFunctionList\\)"
sed 's/{ provider_name: pkcs11, typed_config/{ provider_name: pkcs11, fallback: true, typed_config/' \
    "$TG_TMP/gw.yaml" > "$TG_TMP/fallback.yaml"
expect_startup_error fallback.yaml \
    "private_key_provider.fallback: provider 'pkcs11' holds this certificate's private key: there is no software copy"

# ---------------------------------------------------------------------------
tg_case "the token disappears mid-run: clear errors, fail fast, nothing else affected"
write_config removed.yaml
start_gw removed.yaml removed
sclient "$RSA_PORT" 1.3 "$TG_TMP/before.out"
mv "$TG_TMP/tokens" "$TG_TMP/tokens.gone"
mkdir "$TG_TMP/tokens"
for i in 1 2 3; do
    printf '%s' "$REQ" | tg_run 15 openssl s_client -connect "127.0.0.1:$RSA_PORT" -brief -tls1_3 \
        > "$TG_TMP/gone-$i.out" 2>&1 && tg_fail "a handshake succeeded without the token"
    tg_expect_nogrep 'hello from tlsgate upstream' "$TG_TMP/gone-$i.out" "no answer without the token"
done
tg_wait_for 10 "the token marked down" test "$(tg_stat tlsgate_pkcs11_token_up token=tlsgate)" = 0
tg_expect_grep "pkcs11: token 'tlsgate': CKR_[A-Z_]*: token unavailable" "$GW_LOG" "the log says why"
tg_expect_eq "$(tg_stat tlsgate_handshakes_total result=key_operation_failed)" 3 "failed handshakes"
tg_expect_eq "$(tg_stat tlsgate_keyprov_unrecoverable_total provider=pkcs11)" 3 "counted as unrecoverable"
tg_expect_ge "$(tg_stat tlsgate_pkcs11_token_down_total token=tlsgate)" 1 "token down counted"
# The software listener does not care.
bench "$SW_PORT" 4 "$(n 40)" --tls-version 1.3
tg_gateway_stop

tg_pass
