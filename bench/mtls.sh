#!/usr/bin/env bash
# bench/mtls.sh: what client certificates cost per full handshake, tlsgate
# and nginx side by side.
#
# Each peer (tlsgate: one worker, software provider; nginx stream: one
# process) serves the same ECDSA P-256 certificate, session resumption off,
# on three ports: plain TLS, mutual TLS (tlsgate tls.client_certificate mode
# require; nginx ssl_verify_client on), and mutual TLS with a CRL of REVOKED
# entries. `openssl s_time -new` makes full handshakes against each port in
# turn (with a client certificate where one is asked for), ROUNDS rounds of
# SECONDS each, interleaved so that machine noise hits every variant alike.
# For each run: the peer's CPU time (utime + stime from /proc/PID/stat) over
# the handshakes s_time completed, so the client's speed does not enter the
# figure. Prints a markdown table: median CPU microseconds per handshake and
# the ratio to the same peer's plain TLS.
#
#   bench/mtls.sh [TLSGATE] [SECONDS] [ROUNDS]   (defaults: build/tlsgate, 5, 3)
#   PEERS="tlsgate nginx" REVOKED=1000 CLIENT_KEY=rsa:2048 bench/mtls.sh
#
# Loopback only; every process started here is stopped by PID at exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
TLSGATE=$(realpath "${1:-$here/../build/tlsgate}")
SECONDS_PER_RUN=${2:-5}
ROUNDS=${3:-3}
REVOKED=${REVOKED:-1000}
PEERS=${PEERS:-tlsgate nginx}
CLIENT_KEY=${CLIENT_KEY:-ec}
TG_LIB_PROG=mtls.sh
KEEP_TMP=${KEEP_TMP:-0}
. "$here/lib.sh"
[ -x "$TLSGATE" ] || die "no tlsgate binary at $TLSGATE"
is_uint "$SECONDS_PER_RUN" && is_uint "$ROUNDS" && is_uint "$REVOKED" ||
  die "SECONDS, ROUNDS and REVOKED are whole numbers"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tg-mtls.XXXXXX")
declare -a BG_PIDS=() CGROUPS=()
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

newkey() { # KIND
  if [ "$1" = ec ]; then echo "-newkey ec -pkeyopt ec_paramgen_curve:P-256"; else echo "-newkey $1"; fi
}

# ---- certificates: a CA (openssl ca, so that a CRL can list revocations) ----
ca=$TMP/ca
mkdir -p "$ca/issued"
: >"$ca/index.txt"
echo 1000 >"$ca/serial"
echo 01 >"$ca/crlnumber"
cat >"$ca/openssl.cnf" <<CNF
[ ca ]
default_ca = this
[ this ]
dir = $ca
database = \$dir/index.txt
new_certs_dir = \$dir/issued
serial = \$dir/serial
crlnumber = \$dir/crlnumber
certificate = \$dir/ca.pem
private_key = \$dir/ca.key
default_md = sha256
default_days = 2
default_crl_days = 2
policy = anything
unique_subject = no
[ anything ]
commonName = supplied
[ client ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
CNF
{
  # shellcheck disable=SC2046 # newkey's words are separate arguments
  openssl req -x509 -nodes -days 2 -subj "/CN=bench CA" $(newkey ec) \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$ca/ca.key" -out "$ca/ca.pem"
  # shellcheck disable=SC2046
  openssl req -new -nodes -subj /CN=client $(newkey "$CLIENT_KEY") \
    -keyout "$TMP/client.key" -out "$TMP/client.csr"
  openssl ca -batch -notext -config "$ca/openssl.cnf" -extensions client \
    -in "$TMP/client.csr" -out "$TMP/client.pem"
  # shellcheck disable=SC2046
  openssl req -x509 -nodes -days 2 -subj /CN=localhost $(newkey ec) \
    -keyout "$TMP/server.key" -out "$TMP/server.pem"
} >"$TMP/pki.log" 2>&1 || die "cannot make the certificates (see $TMP/pki.log; KEEP_TMP=1)"
# REVOKED entries in the CA's database (revoked serials that are not the
# client's), then the CRL: `openssl ca -gencrl` lists them all.
awk -v n="$REVOKED" 'BEGIN { for (i = 0; i < n; i++)
  printf "R\t301231000000Z\t240101000000Z\t%08X\tunknown\t/CN=gone%d\n", 1048576 + i, i }' \
  >>"$ca/index.txt"
openssl ca -batch -config "$ca/openssl.cnf" -gencrl -out "$TMP/ca.crl" >>"$TMP/pki.log" 2>&1 ||
  die "cannot make the CRL (see $TMP/pki.log)"

# ---- the upstream and the peers ----
free_port
UP_PORT=$FREE_PORT
"$TLSGATE" bench --serve "127.0.0.1:$UP_PORT" --quiet >"$TMP/upstream.log" 2>&1 &
BG_PIDS+=($!)
wait_listening "${BG_PIDS[-1]}" "$UP_PORT" "$TMP/upstream.log" "the upstream"

tg_listener() { # NAME PORT CLIENT_CERTIFICATE_BLOCK
  cat <<YAML
  - name: $1
    address: 127.0.0.1:$2
    tls:
      certificates:
        - certificate_chain: { filename: "$TMP/server.pem" }
          private_key: { filename: "$TMP/server.key" }
      session_resumption: false
      groups: [X25519, P-256]$3
    upstream: { address: 127.0.0.1:$UP_PORT }
YAML
}
ng_server() { # PORT EXTRA
  cat <<CONF
    server {
        listen 127.0.0.1:$1 ssl backlog=4096;
        ssl_certificate     $TMP/server.pem;
        ssl_certificate_key $TMP/server.key;
        ssl_protocols       TLSv1.2 TLSv1.3;
        ssl_ecdh_curve      X25519:prime256v1;
        ssl_session_tickets off;
        ssl_session_cache   off;
        ssl_conf_command    NumTickets 0;
        proxy_pass 127.0.0.1:$UP_PORT;$2
    }
CONF
}

start_peer() { # NAME -> PEER_PID, PORTS (plain mtls mtls_crl)
  local d=$TMP/$1
  mkdir -p "$d"
  free_port
  local p1=$FREE_PORT
  free_port
  local p2=$FREE_PORT
  free_port
  local p3=$FREE_PORT
  PORTS=("$p1" "$p2" "$p3")
  case $1 in
    tlsgate)
      {
        echo "concurrency: 1"
        echo "log_level: warn"
        echo "reload: { watch: false }"
        echo "listeners:"
        tg_listener plain "$p1" ""
        tg_listener mtls "$p2" "
      client_certificate: { ca: { filename: \"$ca/ca.pem\" } }"
        tg_listener mtls_crl "$p3" "
      client_certificate: { ca: { filename: \"$ca/ca.pem\" }, crl: { filename: \"$TMP/ca.crl\" } }"
      } >"$d/tlsgate.yaml"
      "$TLSGATE" run --config "$d/tlsgate.yaml" --pid-file "$d/tlsgate.pid" >"$d/out.log" 2>&1 &
      ;;
    nginx)
      command -v nginx >/dev/null || die "nginx is not installed (PEERS=tlsgate to skip it)"
      {
        echo "load_module /usr/lib/nginx/modules/ngx_stream_module.so;"
        echo "daemon off; master_process off; worker_processes 1;"
        echo "pid $d/nginx.pid; error_log $d/error.log warn;"
        echo "events { worker_connections 4096; }"
        echo "stream {"
        ng_server "$p1" ""
        ng_server "$p2" "
        ssl_verify_client on; ssl_verify_depth 4; ssl_client_certificate $ca/ca.pem;"
        ng_server "$p3" "
        ssl_verify_client on; ssl_verify_depth 4; ssl_client_certificate $ca/ca.pem;
        ssl_crl $TMP/ca.crl;"
        echo "}"
      } >"$d/nginx.conf"
      nginx -e "$d/error.log" -c "$d/nginx.conf" >"$d/out.log" 2>&1 &
      ;;
    *) die "unknown peer $1 (tlsgate, nginx)" ;;
  esac
  PEER_PID=$!
  BG_PIDS+=("$PEER_PID")
  wait_listening "$PEER_PID" "$p3" "$d/out.log" "$1"
}

peer_ticks() { sed 's/^.*) //' "/proc/$PEER_PID/stat" | awk '{ print $12 + $13 }'; }

# One run: PORT [s_time options] -> "cpu_us_per_handshake handshakes". The
# peer's CPU is read again once it has been still for 0.2 s (the last
# connections closing).
run_one() {
  local port=$1 t0 t1 out n
  shift
  t0=$(peer_ticks)
  out=$(timeout $((SECONDS_PER_RUN + 30)) openssl s_time -connect "127.0.0.1:$port" -new \
    -time "$SECONDS_PER_RUN" "$@" 2>&1) || die "s_time failed: $(echo "$out" | tail -n 3)"
  echo "$out" >>"$TMP/s_time.log"
  echo "$out" | grep -q "^ERROR" && die "s_time saw a failed handshake: $(echo "$out" | tail -n 3)"
  n=$(echo "$out" | awk '/connections in [0-9.]+s;/ { print $1; exit }')
  [ -n "$n" ] && [ "$n" -gt 0 ] || die "no handshake completed on port $port"
  local prev=-1 i
  for ((i = 0; i < 50; i++)); do
    t1=$(peer_ticks)
    [ "$t1" = "$prev" ] && break
    prev=$t1
    sleep 0.2
  done
  awk -v t=$((t1 - t0)) -v n="$n" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f %d\n", t * 1e6 / hz / n, n }'
}

CERT=(-cert "$TMP/client.pem" -key "$TMP/client.key")
VARIANTS=(plain mtls mtls_crl)
declare -A samples=() counts=()
for peer in $PEERS; do
  start_peer "$peer"
  for ((r = 1; r <= ROUNDS; r++)); do
    for i in 0 1 2; do
      v=${VARIANTS[$i]}
      if [ "$v" = plain ]; then out=$(run_one "${PORTS[$i]}"); else out=$(run_one "${PORTS[$i]}" "${CERT[@]}"); fi
      samples[$peer.$v]="${samples[$peer.$v]:-} ${out% *}"
      counts[$peer.$v]=$((${counts[$peer.$v]:-0} + ${out#* }))
      note "$peer round $r $v: ${out% *} us CPU per handshake (${out#* } handshakes)"
    done
  done
  kill_pid "$PEER_PID"
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo
echo "Command: PEERS=\"$PEERS\" bench/mtls.sh $TLSGATE $SECONDS_PER_RUN $ROUNDS (REVOKED=$REVOKED CLIENT_KEY=$CLIENT_KEY)"
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1); one worker / one process each, software"
echo "keys, server ECDSA P-256, X25519, TLS 1.3 (s_time's default), full handshakes only."
echo
echo "| peer | listener | CPU per handshake (median of $ROUNDS) | vs its plain TLS | handshakes |"
echo "|---|---|---|---|---|"
for peer in $PEERS; do
  base=$(echo "${samples[$peer.plain]}" | median)
  for v in "${VARIANTS[@]}"; do
    m=$(echo "${samples[$peer.$v]}" | median)
    label=$v
    [ "$v" = mtls ] && label="mutual TLS (client $CLIENT_KEY)"
    [ "$v" = mtls_crl ] && label="mutual TLS + CRL of $REVOKED"
    awk -v p="$peer" -v l="$label" -v m="$m" -v b="$base" -v n="${counts[$peer.$v]}" \
      'BEGIN { printf "| %s | %s | %.1f us | %.2f | %d |\n", p, l, m, m / b, n }'
  done
done
