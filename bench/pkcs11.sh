#!/usr/bin/env bash
# bench/pkcs11.sh: the pkcs11 key provider against SoftHSM2 next to the
# software provider, in one tlsgate and one interleaved run: full TLS 1.3
# handshakes per second and latency (p50, p99) from `tlsgate bench` with a
# new connection per request, at -c 1 and -c 32, for RSA-2048 and ECDSA
# P-256 keys.
#
#   software   the key in tlsgate (OpenSSL inline)
#   pkcs11     the key in a SoftHSM2 token loaded into tlsgate (in process)
#   pkcs11-rpc the key in a SoftHSM2 token behind `p11-kit server`; tlsgate
#              loads p11-kit-client.so (out of process, like a network HSM)
#
# SoftHSM2 is a software token: these numbers measure tlsgate's path to a
# token (threads, queue, completion) plus SoftHSM2's own cost, not an HSM.
# The machine is whatever this runs on (the script prints lscpu's model).
#
#   bench/pkcs11.sh [path/to/tlsgate]
#   TG_P11_BENCH_SECONDS (default 5) per cell, TG_P11_BENCH_ROUNDS (default 3)
#   interleaved rounds; each cell reports the median round (by handshakes/s).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TLSGATE=${1:-$REPO/build/tlsgate}
SECONDS_PER=${TG_P11_BENCH_SECONDS:-5}
ROUNDS=${TG_P11_BENCH_ROUNDS:-3}
THREADS=${TG_P11_BENCH_THREADS:-2}
MODULE=/usr/lib/softhsm/libsofthsm2.so
CLIENT=/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so
for f in "$TLSGATE" "$MODULE" "$CLIENT"; do
    [ -e "$f" ] || { echo "missing $f (scripts/setup.sh)" >&2; exit 1; }
done
for c in softhsm2-util pkcs11-tool p11-kit; do
    command -v "$c" > /dev/null || { echo "missing $c (scripts/setup.sh)" >&2; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tg-p11-bench-XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2> /dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
PIN=135790

# token DIR: a token "tlsgate" with an RSA-2048 and a P-256 key made inside
# it, and certificates for them signed by a throwaway CA.
token() {
    local dir=$1
    mkdir -p "$dir/tokens"
    printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
        "$dir" > "$dir/softhsm2.conf"
    SOFTHSM2_CONF=$dir/softhsm2.conf softhsm2-util --init-token --free --label tlsgate \
        --so-pin 97531864 --pin "$PIN" > /dev/null
    local spec label
    for spec in rsa:2048:rsa EC:prime256v1:ec; do
        label=${spec##*:}
        SOFTHSM2_CONF=$dir/softhsm2.conf pkcs11-tool --module "$MODULE" --token-label tlsgate \
            --login --pin "$PIN" --keypairgen --key-type "${spec%:*}" --label "$label" > /dev/null 2>&1
        SOFTHSM2_CONF=$dir/softhsm2.conf pkcs11-tool --module "$MODULE" --token-label tlsgate \
            --read-object --type pubkey --label "$label" -o "$dir/$label.der" > /dev/null 2>&1
        openssl pkey -pubin -inform DER -in "$dir/$label.der" -out "$dir/$label.pub"
        openssl req -new -key "$TMP/ca.key" -subj /CN=bench.test 2> /dev/null |
            openssl x509 -req -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" -days 2 \
                -force_pubkey "$dir/$label.pub" -out "$dir/$label.pem" 2> /dev/null
    done
}
openssl req -x509 -nodes -days 2 -subj /CN=bench-ca -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$TMP/ca.key" -out "$TMP/ca.pem" 2> /dev/null
token "$TMP/local"
token "$TMP/remote"
printf '%s\n' "$PIN" > "$TMP/pin"
for kind in rsa ec; do
    newkey=(-newkey rsa:2048)
    [ "$kind" = ec ] && newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
    openssl req -x509 -nodes -days 2 -subj /CN=bench.test "${newkey[@]}" \
        -keyout "$TMP/sw-$kind.key" -out "$TMP/sw-$kind.pem" 2> /dev/null
done

SOCK=$TMP/p11.sock
SOFTHSM2_CONF=$TMP/remote/softhsm2.conf p11-kit server -f --provider "$MODULE" -n "$SOCK" \
    "pkcs11:token=tlsgate" > "$TMP/server.log" 2>&1 &
PIDS+=($!)
"$TLSGATE" bench --serve 127.0.0.1:0 > "$TMP/upstream.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    [ -S "$SOCK" ] && grep -q 'serving on' "$TMP/upstream.log" && break
    sleep 0.1
done
UP=$(grep -o 'serving on [^ ]*' "$TMP/upstream.log" | awk '{print $3}')

listener() { # NAME CERT-BLOCK
    printf '  - name: %s\n    address: 127.0.0.1:0\n    tls:\n      certificates:\n        - %s\n    upstream: { address: %s }\n' \
        "$1" "$2" "$UP"
}
p11() { # MODULE CERT KEYLABEL
    printf 'certificate_chain: { filename: %s }\n          private_key_provider: { provider_name: pkcs11, typed_config: { module: %s, key: "pkcs11:token=tlsgate;object=%s", pin: { filename: %s }, threads: %s } }' \
        "$2" "$1" "$3" "$TMP/pin" "$THREADS"
}
{
    printf 'concurrency: 1\nlog_level: warn\nlisteners:\n'
    for kind in rsa ec; do
        listener "software-$kind" "certificate_chain: { filename: $TMP/sw-$kind.pem }
          private_key: { filename: $TMP/sw-$kind.key }"
        listener "pkcs11-$kind" "$(p11 "$MODULE" "$TMP/local/$kind.pem" "$kind")"
        listener "pkcs11-rpc-$kind" "$(p11 "$CLIENT" "$TMP/remote/$kind.pem" "$kind")"
    done
} > "$TMP/gw.yaml"
SOFTHSM2_CONF=$TMP/local/softhsm2.conf P11_KIT_SERVER_ADDRESS=unix:path=$SOCK \
    "$TLSGATE" run --config "$TMP/gw.yaml" --log-level info > "$TMP/gw.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q 'ready' "$TMP/gw.log" && break; sleep 0.1; done
grep -q 'ready' "$TMP/gw.log" || { cat "$TMP/gw.log"; exit 1; }
port() { sed -n "s/.*listener $1: listening on [^ ]*:\\([0-9]*\\),.*/\\1/p" "$TMP/gw.log"; }

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq "$ROUNDS"); do
    for kind in rsa ec; do
        for c in 1 32; do
            for v in software pkcs11 pkcs11-rpc; do
                "$TLSGATE" bench -k --quiet --tls-version 1.3 -c "$c" -t "${SECONDS_PER}s" \
                    --json "$TMP/$v-$kind-$c-$r.json" "https://127.0.0.1:$(port "$v-$kind")/" \
                    > /dev/null 2>&1 || true
            done
        done
    done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

echo "# $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs, load average $LOAD0 before, $LOAD1 after;"
echo "# tlsgate: 1 worker, pkcs11 threads: $THREADS; tlsgate bench -k --tls-version 1.3 -c C -t ${SECONDS_PER}s,"
echo "# new connection per request; $ROUNDS interleaved rounds, the median round shown"
echo
echo "| key | provider | -c | handshakes/s | p50 ms | p99 ms | errors |"
echo "|---|---|---:|---:|---:|---:|---:|"
python3 - "$TMP" "$ROUNDS" <<'EOF'
import json, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
keys = {"rsa": "RSA-2048", "ec": "ECDSA P-256"}
provs = {"software": "software", "pkcs11": "pkcs11, SoftHSM2 in process",
         "pkcs11-rpc": "pkcs11, SoftHSM2 via p11-kit server"}
for kind in ("rsa", "ec"):
    for c in (1, 32):
        for v in provs:
            runs = []
            for r in range(1, rounds + 1):
                try:
                    runs.append(json.load(open(f"{tmp}/{v}-{kind}-{c}-{r}.json")))
                except (OSError, ValueError):
                    pass
            if not runs:
                print(f"| {keys[kind]} | {provs[v]} | {c} | - | - | - | no result |")
                continue
            runs.sort(key=lambda d: d["handshakes"]["per_second"])
            d = runs[len(runs) // 2]
            errors = sum(x["calls"] - x["ok"] for x in runs)
            lat = d["latency_ms"]
            print(f"| {keys[kind]} | {provs[v]} | {c} | {d['handshakes']['per_second']:.0f} | "
                  f"{lat['p50']:.2f} | {lat['p99']:.2f} | {errors} |")
EOF
