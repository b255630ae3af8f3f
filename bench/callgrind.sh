#!/usr/bin/env bash
# bench/callgrind.sh: user-space instructions per full TLS handshake inside
# the gateway, by shared object, counted by valgrind's callgrind.
#
# Instruction counts do not depend on the machine's load, so this compares
# code changes on a shared machine where wall-clock rates cannot (it does not
# see the kernel, and AVX-512 code such as crypto_mb cannot run under
# valgrind: use the software or deferred provider). Each run: start tlsgate
# under callgrind, N full handshakes (TLS 1.3, X25519, RSA-2048, a new
# connection each, one HTTP request) with `tlsgate bench`, stop it, and
# divide the counts of the whole run (start-up included, minus the same run
# with 0 handshakes) by N.
#
#   bench/callgrind.sh [TLSGATE] [N] [PROVIDER]   (build/tlsgate, 2000, software)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
TLSGATE=$(realpath "${1:-$here/../build/tlsgate}")
N=${2:-2000}
PROVIDER=${3:-software}
TG_LIB_PROG=callgrind.sh
KEEP_TMP=${KEEP_TMP:-0}
. "$here/lib.sh"
command -v valgrind >/dev/null || die "valgrind is not installed"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tg-callgrind.XXXXXX")
declare -a BG_PIDS=() CGROUPS=()
trap cleanup EXIT

openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 -subj /CN=localhost \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >"$TMP/req.log" 2>&1 || die "cannot make the certificate"
cc -shared -fPIC -O2 -o "$TMP/vg_async_stacks.so" "$here/../tests/integration/vg_async_stacks.c" -ldl ||
  die "cannot build vg_async_stacks.so"
free_port
UP_PORT=$FREE_PORT
"$TLSGATE" bench --serve "127.0.0.1:$UP_PORT" --quiet >"$TMP/upstream.log" 2>&1 &
BG_PIDS+=($!)

# run N: total Ir by object, into $TMP/objs.N
run() {
  local n=$1 port out=$TMP/cg.$1
  free_port
  port=$FREE_PORT
  cat >"$TMP/gw.yaml" <<YAML
concurrency: 1
log_level: warn
listeners:
  - name: bench
    address: 127.0.0.1:$port
    tls:
      certificates:
        - certificate_chain: { filename: "$TMP/cert.pem" }
          private_key: { filename: "$TMP/key.pem" }
          private_key_provider: { provider_name: $PROVIDER, fallback: true }
      session_resumption: false
      groups: [X25519]
      cipher_suites: TLS_AES_128_GCM_SHA256
    upstream: { address: 127.0.0.1:$UP_PORT }
YAML
  LD_PRELOAD=$TMP/vg_async_stacks.so valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$TLSGATE" run --config "$TMP/gw.yaml" --pid-file "$TMP/gw.$n.pid" >"$TMP/gw.$n.log" 2>&1 &
  local pid=$!
  BG_PIDS+=("$pid")
  wait_listening "$pid" "$port" "$TMP/gw.$n.log" "tlsgate under callgrind"
  if [ "$n" -gt 0 ]; then
    "$TLSGATE" bench -n "$n" -c 8 -k --quiet --tls-version 1.3 "https://127.0.0.1:$port/" \
      >"$TMP/bench.$n.log" 2>&1 || { cat "$TMP/bench.$n.log" >&2; die "bench failed"; }
  fi
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  # Self cost per object: callgrind_annotate prints "Ir  file:function [object]".
  callgrind_annotate --inclusive=no --auto=no --threshold=100 "$out" 2>/dev/null |
    awk '/PROGRAM TOTALS/ { next }
         /^ *[0-9,]+ / {
           ir = $1; gsub(",", "", ir)
           obj = "tlsgate"
           last = $NF
           if (substr(last, 1, 1) == "[") { obj = substr(last, 2, length(last) - 2); sub(".*/", "", obj) }
           s[obj] += ir; t += ir
         }
         END { for (o in s) print o, s[o]; print "TOTAL", t }' >"$TMP/objs.$n"
}

run 0
run "$N"
echo "instructions per handshake in the gateway (user space), provider $PROVIDER, N = $N, $("$TLSGATE" version | cut -d' ' -f1-2)"
echo
echo "| object | instructions per handshake | share |"
echo "|---|---:|---:|"
awk -v n="$N" '
  FNR == NR { base[$1] = $2; next }
  { d[$1] = $2 - base[$1] }
  END {
    tot = d["TOTAL"]
    for (o in d) if (o != "TOTAL" && d[o] / n >= 100) printf "| %s | %d | %.1f%% |\n", o, d[o] / n, 100 * d[o] / tot
    printf "| **total** | **%d** | 100%% |\n", tot / n
  }' "$TMP/objs.0" "$TMP/objs.$N" | sort -t'|' -k3 -rn
