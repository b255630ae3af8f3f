#!/usr/bin/env bash
# bench/memory.sh: memory per connection, tlsgate vs nginx, side by side.
#
# For each peer (tlsgate with the software provider, nginx stream), with the
# same certificate and upstream, and for each kind of connection — N that
# have sent nothing (a flood that never starts a handshake), N mid-handshake
# (a ClientHello sent, the server's answer received, no Finished), and N
# established idle TLS connections (handshake done, upstream connected, no
# bytes) — in a fresh peer process: resident memory (VmRSS of every process
# of the peer, summed) idle after a warm-up, with the N connections held,
# after they closed, and the same a second time (does memory come back, does
# it grow?). Prints a markdown table: KiB per connection = (held - idle) / N.
#
#   bench/memory.sh [TLSGATE] [N]        (defaults: build/tlsgate, 10000)
#   PEERS="tlsgate nginx" MODES="tcp hello tls" bench/memory.sh
#
# Loopback only; every process started here is stopped by PID at exit. Needs
# python3 (bench/memhold.py holds the connections) and nginx with the stream
# module (scripts/setup.sh installs both).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
TLSGATE=$(realpath "${1:-$here/../build/tlsgate}")
N=${2:-10000}
PEERS=${PEERS:-tlsgate nginx}
MODES=${MODES:-tcp hello tls}
TG_LIB_PROG=memory.sh
KEEP_TMP=${KEEP_TMP:-0}
. "$here/lib.sh"
[ -x "$TLSGATE" ] || die "no tlsgate binary at $TLSGATE"
# Each process started here needs at most 2 descriptors per connection (the
# peer: client + upstream) and a few hundred more.
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=$((4 * N + 4096))
[ "$hard" -ge $((N + 256)) ] ||
  die "the descriptor limit ($hard) is below the $((N + 256)) that N = $N needs; lower N"
ulimit -n "$hard" 2>/dev/null || die "cannot raise the descriptor limit to $hard"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tg-memory.XXXXXX")
declare -a BG_PIDS=() CGROUPS=()
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 -subj /CN=localhost \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >"$TMP/req.log" 2>&1 || die "cannot make the certificate"
free_port
UP_PORT=$FREE_PORT
"$TLSGATE" bench --serve "127.0.0.1:$UP_PORT" --quiet --max-conns $((4 * N)) >"$TMP/upstream.log" 2>&1 &
BG_PIDS+=($!)

# Resident KiB of PID and its children (nginx: master + worker).
rss_kib() {
  local pids sum=0 p v
  pids="$1 $(pgrep -P "$1" 2>/dev/null | tr '\n' ' ')"
  for p in $pids; do
    v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
# Wait until the peer's RSS has not moved for 3 s (at most 60 s), print it:
# longer than tlsgate's housekeeping period (2 s), which gives the memory of
# closed connections back.
settle() {
  local pid=$1 last=-1 same=0 v i
  for ((i = 0; i < 120; i++)); do
    v=$(rss_kib "$pid")
    if [ "$v" = "$last" ]; then same=$((same + 1)); else same=0; fi
    [ "$same" -ge 6 ] && break
    last=$v
    sleep 0.5
  done
  echo "$v"
}

start_peer() { # NAME PORT -> PEER_PID
  local name=$1 port=$2 dir=$TMP/$1
  mkdir -p "$dir"
  case $name in
    tlsgate)
      cat >"$dir/tlsgate.yaml" <<YAML
concurrency: 1
log_level: warn
listeners:
  - name: bench
    address: 127.0.0.1:$port
    backlog: 4096
    tls:
      certificates:
        - certificate_chain: { filename: "$TMP/cert.pem" }
          private_key: { filename: "$TMP/key.pem" }
      session_resumption: false
      groups: [X25519]
    upstream: { address: 127.0.0.1:$UP_PORT }
limits: { max_connections: $((2 * N)), first_byte_timeout: 600s, handshake_timeout: 600s, idle_timeout: 600s }
YAML
      "$TLSGATE" run --config "$dir/tlsgate.yaml" --pid-file "$dir/tlsgate.pid" >"$dir/out.log" 2>&1 &
      ;;
    nginx)
      cat >"$dir/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile $hard;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $((2 * N + 128)); }
stream {
    server {
        listen 127.0.0.1:$port ssl backlog=4096;
        ssl_certificate     $TMP/cert.pem;
        ssl_certificate_key $TMP/key.pem;
        ssl_protocols       TLSv1.2 TLSv1.3;
        ssl_ecdh_curve      X25519;
        ssl_session_tickets off;
        ssl_session_cache   off;
        ssl_conf_command    NumTickets 0;
        ssl_handshake_timeout 600s;
        proxy_timeout       600s;
        proxy_pass 127.0.0.1:$UP_PORT;
    }
}
CONF
      nginx -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/out.log" 2>&1 &
      ;;
    *) die "unknown peer $name (tlsgate, nginx)" ;;
  esac
  PEER_PID=$!
  BG_PIDS+=("$PEER_PID")
  wait_listening "$PEER_PID" "$port" "$dir/out.log" "$name"
}

# hold MODE PORT: open N connections with memhold.py, print the settled RSS
# while they are held, close them, print the settled RSS after.
hold() {
  local mode=$1 port=$2 fifo=$TMP/hold.fifo out=$TMP/hold.out held after
  rm -f "$fifo" && mkfifo "$fifo"
  python3 "$here/memhold.py" "$mode" "$N" "$port" <"$fifo" >"$out" 2>&1 &
  local hp=$!
  exec 7>"$fifo"
  for ((i = 0; i < 600; i++)); do
    grep -q '^ready' "$out" 2>/dev/null && break
    kill -0 "$hp" 2>/dev/null || { cat "$out" >&2; die "memhold.py exited"; }
    sleep 0.2
  done
  grep -q '^ready' "$out" || die "memhold.py did not open $N connections in 120 s"
  grep -q "failed 0" "$out" || note "memhold $mode: $(cat "$out")"
  held=$(settle "$PEER_PID")
  exec 7>&-
  wait "$hp" 2>/dev/null || true
  after=$(settle "$PEER_PID")
  echo "$held $after"
}

warm_up() { # PORT: a few full handshakes so lazy start-up allocations are done
  "$TLSGATE" bench -n 200 -c 8 --quiet -k "https://127.0.0.1:$1/" >/dev/null 2>&1 ||
    die "warm-up handshakes failed on port $1"
}

kib() { awk -v a="$1" -v b="$2" -v n="$N" 'BEGIN { printf "%.1f", (a - b) / n }'; }
mib() { awk -v a="$1" 'BEGIN { printf "%.1f", a / 1024 }'; }

echo "memory per connection, N = $N, $(lscpu | sed -n 's/^Model name: *//p'), $(date -u +%F)"
echo
echo "| peer | connections | idle after warm-up | held | after they close | held again | after they close again | KiB per connection |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for peer in $PEERS; do
  for mode in $MODES; do
    if [ "$mode" = tls ] && [ "$hard" -lt $((2 * N + 256)) ]; then
      note "$peer, $mode: skipped: established connections need $((2 * N + 256)) descriptors, the limit is $hard"
      continue
    fi
    # A fresh process per kind, so one kind's freed heap does not hide the
    # other's cost.
    free_port
    port=$FREE_PORT
    start_peer "$peer" "$port"
    warm_up "$port"
    base=$(settle "$PEER_PID")
    read -r held after < <(hold "$mode" "$port")
    read -r held2 after2 < <(hold "$mode" "$port")
    case $mode in
      tcp) what="$N silent (no byte sent)" ;;
      hello) what="$N mid-handshake (ClientHello, no Finished)" ;;
      *) what="$N established idle" ;;
    esac
    echo "| $peer | $what | $(mib "$base") MiB | $(mib "$held") MiB | $(mib "$after") MiB | $(mib "$held2") MiB | $(mib "$after2") MiB | $(kib "$held" "$base") |"
    kill_pid "$PEER_PID"
  done
done
echo
echo "RSS: VmRSS of the peer's processes (nginx: master + worker), settled (unchanged for 3 s)."
echo "Mid-handshake = a TLS 1.3 ClientHello sent and the server's flight received (its RSA-2048"
echo "signature done), no Finished. Established = TLS 1.3 handshake done (RSA-2048, X25519),"
echo "upstream connected, no bytes sent."
