#!/usr/bin/env bash
# The demo behind `make demo`: start the demo upstream and tlsgate with its
# embedded default configuration (a self-signed RSA-2048 certificate is
# created in .state/ on first run), send real TLS traffic with
# `tlsgate bench`, show what the admin endpoint reports, then stop
# everything this script started.
#
#   scripts/demo.sh [path/to/tlsgate]
#
# Ports (from the embedded default): 8443 gateway, 8080 upstream, 9901 admin.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
tlsgate=${1:-$here/build/tlsgate}
state=${TLSGATE_STATE_DIR:-$here/.state}
seconds=${DEMO_SECONDS:-5}
logdir=$(mktemp -d)
pids=()

cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ $rc -ne 0 ]; then
    echo "demo failed; logs:" >&2
    tail -n 20 "$logdir"/*.log >&2 || true
  fi
  rm -rf "$logdir"
}
trap cleanup EXIT

port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
for port in 8443 8080 9901; do
  if port_busy "$port"; then
    echo "demo: port $port on 127.0.0.1 is in use; stop what uses it and retry" >&2
    exit 1
  fi
done

wait_for() { # wait_for <description> <command...>
  local what=$1; shift
  for _ in $(seq 1 100); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "demo: timed out waiting for $what" >&2
  return 1
}

echo "== tlsgate demo =="
"$tlsgate" version

"$tlsgate" bench --serve 127.0.0.1:8080 >"$logdir/upstream.log" 2>&1 &
pids+=($!)
wait_for "the upstream" port_busy 8080

"$tlsgate" run --state-dir "$state" >"$logdir/tlsgate.log" 2>&1 &
pids+=($!)
wait_for "tlsgate" curl -sf http://127.0.0.1:9901/ready
sed -n 's/^[^ ]* //p' "$logdir/tlsgate.log"

echo
echo "== one request through the gateway (curl) =="
curl -s --cacert "$state/demo-cert.pem" --resolve localhost:8443:127.0.0.1 https://localhost:8443/

echo
echo "== ${seconds}s of new TLS connections (tlsgate bench, 16 connections, no keep-alive) =="
gw_pid=${pids[1]}
"$tlsgate" bench --quiet --cacert "$state/demo-cert.pem" --sni localhost -c 16 -t "${seconds}s" \
  --keepalive=false --pid "$gw_pid" https://127.0.0.1:8443/

echo
echo "== what the admin endpoint reports (http://127.0.0.1:9901/stats, excerpt) =="
curl -s http://127.0.0.1:9901/stats |
  grep -E '^tlsgate_(handshakes_total\{result="ok"|connections_closed_total\{reason="normal"|upstream_connects_total\{result="ok"|keyprov_operations_total\{provider="(software|cryptomb)",type="(rsa_sign|kx_derive)"|keyprov_flushes_total\{provider="cryptomb"|keyprov_batch_size_(sum|count)\{provider="cryptomb"|keyprov_key_pool_level\{provider="cryptomb")' |
  grep -v ' 0$' || true
echo
echo "(the key provider in use is in tlsgate's start-up lines above: cryptomb where this CPU"
echo " has AVX-512 IFMA, software otherwise; 'tlsgate doctor' says why)"

echo
echo "demo done: stopping the gateway and the upstream"
