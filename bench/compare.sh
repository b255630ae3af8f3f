#!/usr/bin/env bash
# bench/compare.sh: side-by-side cost of a full TLS handshake in tlsgate,
# nginx, haproxy and hitch, measured as handshakes per proxy-CPU-second
# (docs/PERFORMANCE.md explains the method).
#
# Every peer terminates TLS 1.3 (X25519, one fresh RSA-2048 certificate, no
# tickets, no resumption) in front of the same plaintext upstream
# (`tlsgate bench --serve`). The proxy runs on one CPU under a cgroup-v1 CPU
# quota, the client and the upstream on another; peers are measured in
# interleaved rounds and the report gives the median and the range.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
PEER_DIR=$SCRIPT_DIR/peers
TG_LIB_PROG=compare.sh
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$SCRIPT_DIR/lib.sh"
ALL_PEERS="nginx haproxy hitch tlsgate-software tlsgate-deferred tlsgate-software-noavx512 nginx-noavx512"
MASK_AVX512=":~0x200000"
SUITE=TLS_AES_128_GCM_SHA256 # the one TLS 1.3 suite every peer config allows

usage() {
  cat <<EOF
usage: bench/compare.sh [-h|--help] [path/to/tlsgate]

Measures full TLS handshakes per proxy-CPU-second for each peer, side by
side, in one run. Default tlsgate binary: \$TLSGATE, else $REPO/build/tlsgate
(build it with 'make build'). Needs root (cgroup-v1 cpu + cpuacct), 2 CPUs,
openssl, jq, taskset, ss, and the peers: nginx-light + libnginx-mod-stream,
haproxy, hitch (scripts/setup.sh installs them).

Peers (names for TG_BENCH_PEERS):
  nginx                      nginx stream module, 1 worker ($PEER_DIR/nginx.conf)
  haproxy                    haproxy mode tcp, nbthread 1 (haproxy.cfg)
  hitch                      hitch, 1 worker (hitch.conf)
  tlsgate-software           tlsgate, provider software (tlsgate-software.yaml)
  tlsgate-deferred           tlsgate, provider deferred, delay 0 (tlsgate-deferred.yaml)
  tlsgate-cryptomb           tlsgate, provider cryptomb (tlsgate-cryptomb.yaml)
  tlsgate-software-alog      tlsgate-software + access log to a file, text (the log's cost)
  tlsgate-software-alog-json tlsgate-software + access log to a file, JSON
  tlsgate-<name>             any bench/peers/tlsgate-<name>.yaml
  tlsgate-software-noavx512  tlsgate software under OPENSSL_ia32cap="$MASK_AVX512"
  nginx-noavx512             nginx under OPENSSL_ia32cap="$MASK_AVX512"
  (any peer name + "-noavx512" masks AVX-512 for that peer)
  (any peer name + "-jemalloc" or "-tcmalloc" runs it with that allocator
   preloaded: LD_PRELOAD of libjemalloc2's or libtcmalloc-minimal4's library)
  (any peer name + "-env1" or "-env2", after those: with the space-separated
   VAR=value assignments in TG_BENCH_ENV1 or TG_BENCH_ENV2)
  (any tlsgate peer name + "-alt", last: run by the binary in TG_BENCH_ALT,
   e.g. a build of another commit, for an A/B of two builds in one run)

Environment (defaults in brackets):
  TG_BENCH_PEERS        space or comma separated peer list [all of the above]
  TG_BENCH_ROUNDS       interleaved rounds [3]
  TG_BENCH_SECONDS      measured seconds per peer and round [10]
  TG_BENCH_WARMUP       warmup seconds before each measurement, 0 = none [2]
  TG_BENCH_CONNS        client connections [64]
  TG_BENCH_QUOTA_US     proxy CPU quota per period, 0 = no cap [50000]
  TG_BENCH_PERIOD_US    CFS period [100000]
  TG_BENCH_PROXY_CPU    CPU the proxy is pinned to [1]
  TG_BENCH_CLIENT_CPU   CPU the client and the upstream are pinned to [0]
  TG_BENCH_CLIENT       tlsgate (tlsgate bench) or hey (hey -disable-keepalive) [tlsgate]
  TG_BENCH_OUT          where compare-<timestamp>.md/.json go [$REPO/bench/results]
  TG_BENCH_PERF         peers to profile after the rounds with 'perf record -g'
                        (one extra, unreported measurement each) []
  TG_BENCH_KEEP_TMP     1 = keep the temporary directory (configs, logs) [0]
  TG_BENCH_ALT          the tlsgate binary of the "-alt" peers []
  TG_BENCH_SHARES       cpu.shares of the benchmark's cgroups (bench/lib.sh; every
                        bench script): above 1024 on a machine shared with other
                        tenants, so the proxy gets its quota (which still caps it) []

Example (a quick check, then the full run):
  TG_BENCH_SECONDS=3 TG_BENCH_ROUNDS=1 bench/compare.sh build/tlsgate
  bench/compare.sh build/tlsgate
EOF
}

# ---------------------------------------------------------------------------
# Arguments and settings

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  -*) usage >&2; exit 2 ;;
esac
[ $# -le 1 ] || { usage >&2; exit 2; }
TLSGATE=${1:-${TLSGATE:-$REPO/build/tlsgate}}
ALT_TLSGATE=${TG_BENCH_ALT:-}

ROUNDS=${TG_BENCH_ROUNDS:-3}
MEASURE_S=${TG_BENCH_SECONDS:-10}
WARMUP_S=${TG_BENCH_WARMUP:-2}
CONNS=${TG_BENCH_CONNS:-64}
QUOTA_US=${TG_BENCH_QUOTA_US:-50000}
PERIOD_US=${TG_BENCH_PERIOD_US:-100000}
PROXY_CPU=${TG_BENCH_PROXY_CPU:-1}
CLIENT_CPU=${TG_BENCH_CLIENT_CPU:-0}
CLIENT=${TG_BENCH_CLIENT:-tlsgate}
OUT_DIR=${TG_BENCH_OUT:-$REPO/bench/results}
PERF_PEERS=${TG_BENCH_PERF:-}
KEEP_TMP=${TG_BENCH_KEEP_TMP:-0}
read -r -a PEERS <<<"$(echo "${TG_BENCH_PEERS:-$ALL_PEERS}" | tr ',' ' ')"
read -r -a PERF_LIST <<<"$(echo "$PERF_PEERS" | tr ',' ' ')"

for pair in TG_BENCH_ROUNDS:ROUNDS TG_BENCH_SECONDS:MEASURE_S TG_BENCH_WARMUP:WARMUP_S \
  TG_BENCH_CONNS:CONNS TG_BENCH_QUOTA_US:QUOTA_US TG_BENCH_PERIOD_US:PERIOD_US \
  TG_BENCH_PROXY_CPU:PROXY_CPU TG_BENCH_CLIENT_CPU:CLIENT_CPU; do
  v=${pair#*:}
  is_uint "${!v}" || die "${pair%%:*} must be a non-negative integer, got '${!v}'"
done
[ "$ROUNDS" -ge 1 ] || die "TG_BENCH_ROUNDS must be >= 1"
[ "$MEASURE_S" -ge 1 ] || die "TG_BENCH_SECONDS must be >= 1"
[ "$CONNS" -ge 1 ] || die "TG_BENCH_CONNS must be >= 1"
check_cg_settings TG_BENCH
case "$CLIENT" in tlsgate | hey) ;; *) die "TG_BENCH_CLIENT must be tlsgate or hey" ;; esac
[ "${#PEERS[@]}" -ge 1 ] || die "TG_BENCH_PEERS is empty"

# Suffixes, in this order: -noavx512 (AVX-512 masked), then -jemalloc or
# -tcmalloc (that allocator preloaded, the libjemalloc2 / libtcmalloc-minimal4
# packages), then -env1 / -env2 (with the environment assignments in
# TG_BENCH_ENV1 / _ENV2, e.g. GLIBC_TUNABLES=..., for experiments), then
# -alt (tlsgate peers: the binary in TG_BENCH_ALT).
peer_alt() { [ "${1%-alt}" != "$1" ]; }
peer_bin() { if peer_alt "$1"; then echo "$ALT_TLSGATE"; else echo "$TLSGATE"; fi; }
peer_alloc() { local n=${1%-alt}; case "${n%-env[12]}" in *-jemalloc) echo jemalloc ;; *-tcmalloc) echo tcmalloc ;; esac; }
peer_envs() { case "${1%-alt}" in *-env1) echo "${TG_BENCH_ENV1:-}" ;; *-env2) echo "${TG_BENCH_ENV2:-}" ;; esac; }
# The name without its -alt, -env1/-env2 and allocator suffixes.
peer_unvaried() { local n=${1%-alt}; n=${n%-env1}; n=${n%-env2}; n=${n%-jemalloc}; echo "${n%-tcmalloc}"; }
peer_base() { local n; n=$(peer_unvaried "$1"); echo "${n%-noavx512}"; }
peer_masked() { local n; n=$(peer_unvaried "$1"); [ "${n%-noavx512}" != "$n" ]; }
alloc_lib() { # jemalloc|tcmalloc -> the shared object to preload
  local f
  case "$1" in
    jemalloc) f=libjemalloc.so.2 ;;
    tcmalloc) f=libtcmalloc_minimal.so.4 ;;
  esac
  f=$(ldconfig -p | awk -v f="$f" '$1 == f { print $NF; exit }')
  [ -n "$f" ] || die "peer suffix -$1: the library is not installed (apt-get install libjemalloc2 / libtcmalloc-minimal4)"
  echo "$f"
}
peer_kind() {
  case "$(peer_base "$1")" in
    nginx | haproxy | hitch) peer_base "$1" ;;
    tlsgate-*) [ -f "$PEER_DIR/$(peer_base "$1").yaml" ] && echo tlsgate ;;
    *) return 1 ;;
  esac
}

# ---------------------------------------------------------------------------
# Preflight: fail loudly, before anything is started

[ "$(id -u)" -eq 0 ] || die "needs root (cgroup-v1 CPU quota under /sys/fs/cgroup)"
for t in jq:jq openssl:openssl taskset:util-linux ss:iproute2 awk:mawk getconf:libc-bin; do
  command -v "${t%%:*}" >/dev/null || die "'${t%%:*}' is not installed (Debian: ${t#*:})"
done
[ -x "$TLSGATE" ] || die "no tlsgate binary at '$TLSGATE' (build it: make build, or give the path)"
TLSGATE=$(cd "$(dirname "$TLSGATE")" && pwd)/$(basename "$TLSGATE")
require_cgroup_v1
require_cpus_online "$PROXY_CPU" "$CLIENT_CPU"
if [ "$CLIENT" = hey ]; then command -v hey >/dev/null || die "TG_BENCH_CLIENT=hey but hey is not installed"; fi

missing=()
seen=" "
for p in "${PEERS[@]}"; do
  kind=$(peer_kind "$p") || die "unknown peer '$p' (see --help)"
  case "$seen" in *" $p "*) die "peer '$p' given twice" ;; esac
  seen="$seen$p "
  case "$kind" in
    nginx)
      command -v nginx >/dev/null || missing+=("$p: nginx (Debian: nginx-light)")
      [ -e /usr/lib/nginx/modules/ngx_stream_module.so ] ||
        missing+=("$p: nginx stream module (Debian: libnginx-mod-stream)")
      ;;
    haproxy | hitch) command -v "$kind" >/dev/null || missing+=("$p: $kind (Debian: $kind)") ;;
    tlsgate)
      if peer_alt "$p"; then
        [ -x "${ALT_TLSGATE:-/nonexistent}" ] ||
          die "$p: TG_BENCH_ALT must name the other tlsgate binary (got '$ALT_TLSGATE')"
      fi
      ;;
    *) peer_alt "$p" && die "$p: -alt is for tlsgate peers only" ;;
  esac
done
if [ "${#missing[@]}" -gt 0 ]; then
  printf 'compare.sh: error: not installed:\n' >&2
  printf '  %s\n' "${missing[@]}" >&2
  die "install them (scripts/setup.sh) or leave those peers out with TG_BENCH_PEERS"
fi
for p in "${PERF_LIST[@]}"; do
  case " ${PEERS[*]} " in *" $p "*) ;; *) die "TG_BENCH_PERF: '$p' is not among the peers" ;; esac
done
if [ "${#PERF_LIST[@]}" -gt 0 ]; then
  command -v perf >/dev/null || die "TG_BENCH_PERF needs perf (Debian: linux-perf)"
fi

# ---------------------------------------------------------------------------
# State and cleanup

RUN_ID="tg-bench-$$"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tg-compare.XXXXXX")
chmod 755 "$TMP" # hitch workers run as nobody
declare -a BG_PIDS=()      # everything started in the background, by PID
declare -a CGROUPS=()      # cgroup directories created by this run
declare -A PEER_PID=() PEER_PORT=() PEER_CG=() PEER_TICKETS=()
CLIENT_CG=""

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
# Certificate, upstream

note "temporary directory $TMP"
openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >"$TMP/openssl-req.log" 2>&1 ||
  { cat "$TMP/openssl-req.log" >&2; die "cannot make the certificate"; }
cat "$TMP/cert.pem" "$TMP/key.pem" >"$TMP/bundle.pem"
chmod 644 "$TMP/key.pem" "$TMP/bundle.pem" # a throwaway key; hitch workers run as nobody

# hitch has no switch for TLS 1.3 tickets, and haproxy 2.6's no-tls-tickets
# leaves libssl's two (stateful) TLS 1.3 tickets: OpenSSL's system_default
# section turns them off (check_peer verifies it for every peer).
cat >"$TMP/openssl-notickets.cnf" <<'EOF'
openssl_conf = tg_bench_init
[tg_bench_init]
ssl_conf = tg_bench_ssl
[tg_bench_ssl]
system_default = tg_bench_sysdef
[tg_bench_sysdef]
NumTickets = 0
EOF

free_port
UPSTREAM_PORT=$FREE_PORT
cg_make upstream -1
UPSTREAM_CG=$CG_MADE
start_in_cg "$UPSTREAM_CG" "$CLIENT_CPU" "$TMP/upstream.log" \
  "$TLSGATE" bench --serve "127.0.0.1:$UPSTREAM_PORT" --quiet
BG_PIDS+=("$STARTED_PID")
wait_listening "$STARTED_PID" "$UPSTREAM_PORT" "$TMP/upstream.log" "the upstream (tlsgate bench --serve)"

cg_make client -1
CLIENT_CG=$CG_MADE

# ---------------------------------------------------------------------------
# Peers

render() { # TEMPLATE OUT DIR PORT
  sed -e "s|@DIR@|$3|g" -e "s|@PORT@|$4|g" -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" \
    -e "s|@CERT@|$TMP/cert.pem|g" -e "s|@KEY@|$TMP/key.pem|g" -e "s|@PEM@|$TMP/bundle.pem|g" \
    "$1" >"$2"
  if grep -q '@[A-Z_]*@' "$2"; then die "unfilled placeholder in $2"; fi
}

start_peer() {
  local name=$1 kind dir port conf quota=-1
  kind=$(peer_kind "$name")
  dir=$TMP/peers/$name
  mkdir -p "$dir"
  chmod 755 "$dir"
  free_port
  port=$FREE_PORT
  [ "$QUOTA_US" -eq 0 ] || quota=$QUOTA_US
  cg_make "$name" "$quota"
  local -a env_args=() cmd=()
  if peer_masked "$name"; then env_args+=("OPENSSL_ia32cap=$MASK_AVX512"); fi
  if [ -n "$(peer_alloc "$name")" ]; then env_args+=("LD_PRELOAD=$(alloc_lib "$(peer_alloc "$name")")"); fi
  local e
  for e in $(peer_envs "$name"); do env_args+=("$e"); done
  case "$kind" in
    nginx)
      conf=$dir/nginx.conf
      render "$PEER_DIR/nginx.conf" "$conf" "$dir" "$port"
      cmd=(nginx -p "$dir/" -e "$dir/nginx-error.log" -c "$conf")
      ;;
    haproxy)
      conf=$dir/haproxy.cfg
      render "$PEER_DIR/haproxy.cfg" "$conf" "$dir" "$port"
      # no-tls-tickets still leaves libssl's two stateful TLS 1.3 tickets.
      env_args+=("OPENSSL_CONF=$TMP/openssl-notickets.cnf")
      cmd=(haproxy -db -f "$conf")
      ;;
    hitch)
      conf=$dir/hitch.conf
      mkdir -p "$dir/hitch-ocsp"
      render "$PEER_DIR/hitch.conf" "$conf" "$dir" "$port"
      env_args+=("OPENSSL_CONF=$TMP/openssl-notickets.cnf")
      cmd=(hitch --config="$conf")
      ;;
    tlsgate)
      conf=$dir/tlsgate.yaml
      render "$PEER_DIR/$(peer_base "$name").yaml" "$conf" "$dir" "$port"
      local bin
      bin=$(peer_bin "$name")
      "$bin" check-config "$conf" >"$dir/check-config.log" 2>&1 ||
        { cat "$dir/check-config.log" >&2; die "$name: invalid configuration"; }
      cmd=("$bin" run --config "$conf" --pid-file "$dir/tlsgate.pid")
      ;;
  esac
  start_in_cg "$CG_MADE" "$PROXY_CPU" "$dir/output.log" env "${env_args[@]}" "${cmd[@]}"
  BG_PIDS+=("$STARTED_PID")
  PEER_PID[$name]=$STARTED_PID
  PEER_PORT[$name]=$port
  PEER_CG[$name]=$CG_MADE
  wait_listening "$STARTED_PID" "$port" "$dir/output.log" "$name"
}

# One request with openssl s_client: must answer 200 over TLS 1.3 / X25519 /
# $SUITE;
# counts the NewSessionTicket messages the peer sends (must be 0).
check_peer() {
  local name=$1 port=${PEER_PORT[$1]} log=$TMP/peers/$1/s_client.log
  printf 'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
    timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername localhost \
      -tls1_3 -groups X25519 -msg -ign_eof >"$log" 2>&1 || true
  grep -q '^HTTP/1.1 200' "$log" || { tail -n 30 "$log" >&2; die "$name: no HTTP 200 through the TLS port"; }
  # OpenSSL 3.0 s_client says "Server Temp Key: X25519", 3.5 "Peer Temp Key: X25519".
  grep -Eq '(Server|Peer) Temp Key: X25519' "$log" ||
    die "$name: did not negotiate X25519 ($log)"
  grep -q "Cipher is $SUITE" "$log" || die "$name: did not negotiate $SUITE ($log)"
  PEER_TICKETS[$name]=$(grep -c '^<<< .*NewSessionTicket' "$log" || true)
  if [ "${PEER_TICKETS[$name]}" -ne 0 ]; then
    note "WARNING: $name sends ${PEER_TICKETS[$name]} session ticket(s) per connection"
  fi
}

for p in "${PEERS[@]}"; do
  start_peer "$p"
  check_peer "$p"
  note "started $p: pid ${PEER_PID[$p]}, 127.0.0.1:${PEER_PORT[$p]}, tickets ${PEER_TICKETS[$p]}"
done

# ---------------------------------------------------------------------------
# Client runs

# hey's text summary -> the subset of tlsgate bench's JSON that we use.
hey_to_json() {
  awk '
    /^  Total:/ { total = $2 }
    /Requests\/sec:/ { qps = $2 }
    /^  50% in/ { p50 = $3 * 1000 }
    /^  99% in/ { p99 = $3 * 1000 }
    /^Status code distribution:/ { sec = "status"; next }
    /^Error distribution:/ { sec = "error"; next }
    sec == "status" && /^ *\[[0-9]+\]/ { code = $1; gsub(/[\[\]]/, "", code); if (code ~ /^2/) ok += $2; else bad += $2 }
    sec == "error" && /^ *\[[0-9]+\]/ { n = $1; gsub(/[\[\]]/, "", n); bad += n }
    END {
      printf "{\"calls\": %d, \"ok\": %d, \"errors\": {\"total\": %d}, \"elapsed_s\": %s, \"qps\": %s,", ok + bad, ok, bad, total + 0, qps + 0
      printf " \"latency_ms\": {\"p50\": %s, \"p99\": %s}, \"handshakes\": {\"full\": %d, \"resumed\": 0},", p50 + 0, p99 + 0, ok
      printf " \"tls\": [], \"client_cpu\": null}\n"
    }' "$1"
}

# run_client PORT SECONDS JSON_OUT LOG -> exit status of the client
run_client() {
  local port=$1 secs=$2 json=$3 log=$4 rc=0
  local url="https://127.0.0.1:$port/"
  if [ "$CLIENT" = tlsgate ]; then
    start_in_cg "$CLIENT_CG" "$CLIENT_CPU" "$log" timeout --kill-after=5 "$((secs + 60))" \
      "$TLSGATE" bench -k -c "$CONNS" -t "${secs}s" --keepalive=false --tls-version 1.3 \
      --groups X25519 --quiet --json "$json" "$url"
  else
    start_in_cg "$CLIENT_CG" "$CLIENT_CPU" "$log" timeout --kill-after=5 "$((secs + 60))" \
      hey -disable-keepalive -c "$CONNS" -z "${secs}s" "$url"
  fi
  BG_PIDS+=("$STARTED_PID")
  wait "$STARTED_PID" || rc=$?
  unset 'BG_PIDS[${#BG_PIDS[@]}-1]'
  if [ "$CLIENT" = hey ] && [ "$rc" -eq 0 ]; then
    hey_to_json "$log" >"$json"
    [ "$(jq .ok "$json")" -gt 0 ] || rc=1
  fi
  return "$rc"
}

ROUNDS_JSONL=$TMP/rounds.jsonl
: >"$ROUNDS_JSONL"
QUOTA_FRAC=$(awk -v q="$QUOTA_US" -v p="$PERIOD_US" 'BEGIN { print (q > 0 ? q / p : 1) }')

measure() { # PEER ROUND
  local name=$1 round=$2 port=${PEER_PORT[$1]} cg=${PEER_CG[$1]}
  local base=$TMP/peers/$name/round$round rc=0
  if [ "$WARMUP_S" -gt 0 ]; then
    run_client "$port" "$WARMUP_S" "$base-warmup.json" "$base-warmup.log" ||
      { tail -n 20 "$base-warmup.log" >&2; die "$name: warmup run failed"; }
  fi
  local a0 a1 k0 k1 n0 n1 th0 th1 c0 c1 t0 t1 b0 b1 d0 d1
  a0=$(cg_usage_ns "$cg"); k0=$(cg_proc_ticks "$cg")
  n0=$(cg_stat "$cg" nr_periods); th0=$(cg_stat "$cg" nr_throttled)
  c0=$(cg_usage_ns "$CLIENT_CG"); b0=$(cpu_busy_ticks "$PROXY_CPU"); d0=$(cpu_busy_ticks "$CLIENT_CPU")
  t0=$(now_ns)
  run_client "$port" "$MEASURE_S" "$base.json" "$base.log" || rc=$?
  t1=$(now_ns); b1=$(cpu_busy_ticks "$PROXY_CPU"); d1=$(cpu_busy_ticks "$CLIENT_CPU")
  c1=$(cg_usage_ns "$CLIENT_CG")
  a1=$(cg_usage_ns "$cg"); k1=$(cg_proc_ticks "$cg")
  n1=$(cg_stat "$cg" nr_periods); th1=$(cg_stat "$cg" nr_throttled)
  if [ "$rc" -ne 0 ] || [ ! -s "$base.json" ]; then
    tail -n 20 "$base.log" >&2 || true
    note "WARNING: $name round $round: the client failed (exit $rc); the round is recorded as failed"
    jq -nc --arg peer "$name" --argjson round "$round" --argjson rc "$rc" \
      '{peer: $peer, round: $round, failed: true, client_exit: $rc}' >>"$ROUNDS_JSONL"
    return 0
  fi
  jq -c --arg peer "$name" --argjson round "$round" \
    --argjson cpu_ns "$((a1 - a0))" --argjson ticks "$((k1 - k0))" --argjson tck "$CLK_TCK" \
    --argjson wall_ns "$((t1 - t0))" --argjson client_ns "$((c1 - c0))" \
    --argjson periods "$((n1 - n0))" --argjson throttled "$((th1 - th0))" \
    --argjson busy1 "$((b1 - b0))" --argjson busy0 "$((d1 - d0))" \
    --argjson quota_frac "$QUOTA_FRAC" '
    (.handshakes.full) as $hs
    | ($cpu_ns / 1e9) as $cpu
    | ($wall_ns / 1e9) as $wall
    | {peer: $peer, round: $round, failed: false,
       calls: .calls, ok: .ok, errors: .errors.total,
       server_no_close: (.closes.client_after_wait // .server_no_close // 0),
       closes: (.closes // null),
       handshakes_full: $hs, handshakes_resumed: .handshakes.resumed,
       client_elapsed_s: .elapsed_s, wall_s: $wall, qps: .qps,
       p50_ms: .latency_ms.p50, p99_ms: .latency_ms.p99,
       proxy_cpu_s: $cpu, proxy_cpu_s_proc: ($ticks / $tck),
       hs_per_proxy_cpu_s: (if $cpu > 0 then $hs / $cpu else 0 end),
       proxy_cpu_pct: (100 * $cpu / $wall),
       quota_pct: (100 * $quota_frac),
       throttled_pct: (if $periods > 0 then 100 * $throttled / $periods else 0 end),
       saturated: ($cpu / $wall >= 0.9 * $quota_frac),
       client_cpu_pct: (100 * $client_ns / 1e9 / $wall),
       proxy_cpu_busy_all_pct: ([100, 100 * $busy1 / $tck / $wall] | min),
       client_cpu_busy_all_pct: ([100, 100 * $busy0 / $tck / $wall] | min),
       client_us_per_hs: (if $hs > 0 then 1e6 * $client_ns / 1e9 / $hs else 0 end),
       tls: ((.tls // []) | map("\(.version) \(.cipher) \(.group)") | join(", "))}
    ' "$base.json" >>"$ROUNDS_JSONL"
  jq -r 'select(.peer == $p and .round == ($r | tonumber))
         | "\(.peer) round \(.round): \(.handshakes_full) handshakes, \(.hs_per_proxy_cpu_s | floor) hs/proxy-CPU-s, proxy CPU \(.proxy_cpu_pct | floor)%, \(.qps | floor) qps, \(.errors) errors"' \
    --arg p "$name" --arg r "$round" "$ROUNDS_JSONL" >&2
}

START_UTC=$(date -u +%Y-%m-%dT%H:%M:%SZ)
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
npeers=${#PEERS[@]}
for ((r = 1; r <= ROUNDS; r++)); do
  # Round-robin, starting one peer further each round (no fixed position).
  for ((i = 0; i < npeers; i++)); do
    measure "${PEERS[$(((i + r - 1) % npeers))]}" "$r"
  done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------
# Optional profiles (not part of the table)

mkdir -p "$OUT_DIR"
PREFIX=$OUT_DIR/compare-$STAMP
declare -a PERF_FILES=()
for p in "${PERF_LIST[@]}"; do
  pids=$(paste -sd, "$CG_ACCT_ROOT/${PEER_CG[$p]}/cgroup.procs")
  data=$PREFIX-perf-$p.data
  note "profiling $p (pids $pids) for ${MEASURE_S}s"
  [ "$WARMUP_S" -eq 0 ] || run_client "${PEER_PORT[$p]}" "$WARMUP_S" "$TMP/perf-warm.json" "$TMP/perf-warm.log" || true
  perf record -g -o "$data" -p "$pids" -- sleep "$((MEASURE_S + 1))" >"$TMP/perf-$p.log" 2>&1 &
  BG_PIDS+=("$!")
  perf_pid=$!
  run_client "${PEER_PORT[$p]}" "$MEASURE_S" "$TMP/perf-run.json" "$TMP/perf-run.log" || true
  wait "$perf_pid" || note "WARNING: perf record for $p failed: $(tail -n 3 "$TMP/perf-$p.log")"
  unset 'BG_PIDS[${#BG_PIDS[@]}-1]'
  perf report -i "$data" --no-children --sort dso --stdio -g none --percent-limit 0.1 2>/dev/null |
    grep -v '^$' >"$PREFIX-perf-$p-dso.txt" || true
  perf report -i "$data" --no-children --sort dso,sym --stdio -g none --percent-limit 0.15 \
    2>/dev/null | grep -v '^$' >"$PREFIX-perf-$p-sym.txt" || true
  PERF_FILES+=("$PREFIX-perf-$p.data" "$PREFIX-perf-$p-dso.txt" "$PREFIX-perf-$p-sym.txt")
done

# ---------------------------------------------------------------------------
# Report

cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
ifma=$(grep -qw avx512ifma /proc/cpuinfo && echo yes || echo no)
ossl=$(openssl version)
tg_ver=$("$TLSGATE" version 2>&1 | tr '\n' ' ' | sed 's/ *$//')
nginx_ver=$(nginx -v 2>&1 || true)
haproxy_ver=$(haproxy -v 2>/dev/null | head -n 1 || true)
hitch_ver=$(hitch --version 2>&1 | head -n 1 || true)
git_rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "no commit")
if [ -n "$(git -C "$REPO" status --porcelain 2>/dev/null | head -n 1)" ]; then git_rev="$git_rev (dirty)"; fi
if [ "$QUOTA_US" -eq 0 ]; then quota_txt="none (proxy uncapped on CPU $PROXY_CPU)"; else
  quota_txt="$QUOTA_US us per $PERIOD_US us = $(awk -v f="$QUOTA_FRAC" 'BEGIN { printf "%.0f", 100 * f }')% of CPU $PROXY_CPU"
fi
CMDLINE="TG_BENCH_PEERS=\"${PEERS[*]}\" TG_BENCH_ROUNDS=$ROUNDS TG_BENCH_SECONDS=$MEASURE_S TG_BENCH_WARMUP=$WARMUP_S TG_BENCH_CONNS=$CONNS TG_BENCH_QUOTA_US=$QUOTA_US TG_BENCH_PERIOD_US=$PERIOD_US TG_BENCH_CLIENT=$CLIENT bench/compare.sh $TLSGATE"
if [ "$CLIENT" = tlsgate ]; then
  client_txt="tlsgate bench -k -c $CONNS -t ${MEASURE_S}s --keepalive=false --tls-version 1.3 --groups X25519 (pinned to CPU $CLIENT_CPU)"
else
  client_txt="hey -disable-keepalive -c $CONNS -z ${MEASURE_S}s (pinned to CPU $CLIENT_CPU)"
fi
tickets_json=$(for p in "${PEERS[@]}"; do printf '%s\t%s\n' "$p" "${PEER_TICKETS[$p]}"; done |
  jq -R -s 'split("\n") | map(select(length > 0) | split("\t") | {(.[0]): (.[1] | tonumber)}) | add')

# Per-peer summary: median and range over the rounds that did not fail.
SUMMARY=$(jq -s --argjson order "$(printf '%s\n' "${PEERS[@]}" | jq -R . | jq -s .)" \
  --argjson tickets "$tickets_json" '
  def median: sort | if length == 0 then null
    elif length % 2 == 1 then .[length / 2 | floor]
    else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  . as $all
  | [ $order[] as $p
      | ($all | map(select(.peer == $p and .failed == false))) as $ok
      | ($all | map(select(.peer == $p and .failed == true)) | length) as $nfail
      | {peer: $p, rounds: ($ok | length), failed_rounds: $nfail,
         tickets_per_connection: $tickets[$p],
         hs_per_proxy_cpu_s: {median: ($ok | map(.hs_per_proxy_cpu_s) | median),
                              min: ($ok | map(.hs_per_proxy_cpu_s) | min),
                              max: ($ok | map(.hs_per_proxy_cpu_s) | max)},
         hs_per_proxy_cpu_s_proc_median: ($ok | map(select(.proxy_cpu_s_proc > 0) | .handshakes_full / .proxy_cpu_s_proc) | median),
         qps_median: ($ok | map(.qps) | median),
         p50_ms_median: ($ok | map(.p50_ms) | median),
         p99_ms_median: ($ok | map(.p99_ms) | median),
         proxy_cpu_pct_median: ($ok | map(.proxy_cpu_pct) | median),
         throttled_pct_median: ($ok | map(.throttled_pct) | median),
         client_cpu_pct_median: ($ok | map(.client_cpu_pct) | median),
         proxy_cpu_busy_all_pct_median: ($ok | map(.proxy_cpu_busy_all_pct) | median),
         client_cpu_busy_all_pct_median: ($ok | map(.client_cpu_busy_all_pct) | median),
         unsaturated_rounds: ($ok | map(select(.saturated | not)
           | {round, calls, proxy_cpu_pct, proxy_cpu_busy_all_pct, client_cpu_busy_all_pct, server_no_close})),
         client_us_per_hs_median: ($ok | map(.client_us_per_hs) | median),
         saturated_rounds: ($ok | map(select(.saturated)) | length),
         errors: ($ok | map(.errors) | add),
         server_no_close: ($ok | map(.server_no_close) | add),
         calls: ($ok | map(.calls) | add),
         tls: ($ok | map(.tls) | unique | join("; "))} ]
  | (map(select(.peer == "nginx"))[0].hs_per_proxy_cpu_s.median) as $ref
  | map(. + {ratio_vs_nginx: (if $ref != null and $ref > 0 and .hs_per_proxy_cpu_s.median != null
                             then .hs_per_proxy_cpu_s.median / $ref else null end)})
  ' "$ROUNDS_JSONL")

table() {
  echo "| peer | hs/proxy-CPU-s median [min–max] | vs nginx | wall qps | p50 ms | p99 ms | proxy CPU % (quota $(awk -v f="$QUOTA_FRAC" 'BEGIN { printf "%.0f", 100 * f }')%) | saturated | CPU $PROXY_CPU / CPU $CLIENT_CPU busy % (all tasks) | client CPU % | tickets | errors |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  jq -r '.[] | [.peer, .rounds, .failed_rounds,
        (.hs_per_proxy_cpu_s.median // -1), (.hs_per_proxy_cpu_s.min // -1), (.hs_per_proxy_cpu_s.max // -1),
        (.ratio_vs_nginx // -1), (.qps_median // -1), (.p50_ms_median // -1), (.p99_ms_median // -1),
        (.proxy_cpu_pct_median // -1), .saturated_rounds, (.client_cpu_pct_median // -1),
        (.proxy_cpu_busy_all_pct_median // -1), (.client_cpu_busy_all_pct_median // -1),
        (.tickets_per_connection // -1), (.errors // 0)] | @tsv' <<<"$SUMMARY" |
    awk -F'\t' '{
      if ($2 == 0) { printf "| %s | all %d rounds failed | | | | | | | | | | |\n", $1, $3; next }
      ratio = ($7 < 0) ? "n/a" : sprintf("%.2f", $7)
      sat = ($12 == $2) ? "yes" : sprintf("no (%d/%d rounds)", $12, $2)
      fail = ($3 > 0) ? sprintf(" (%d failed)", $3) : ""
      printf "| %s | %.0f [%.0f–%.0f]%s | %s | %.0f | %.1f | %.1f | %.0f | %s | %.0f / %.0f | %.0f | %d | %d |\n",
        $1, $4, $5, $6, fail, ratio, $8, $9, $10, $11, sat, $14, $15, $13, $16, $17
    }'
}

target_line() { # PEER REF LIMIT_PCT LABEL
  jq -r --arg a "$1" --arg b "$2" --argjson lim "$3" --arg what "$4" '
    (map(select(.peer == $a))[0].hs_per_proxy_cpu_s.median) as $x
    | (map(select(.peer == $b))[0].hs_per_proxy_cpu_s.median) as $y
    | if $x == null or $y == null or $y == 0 then empty
      else (100 * ($x / $y - 1)) as $d
      | "- \($what): \($a) is \(if $d >= 0 then "+" else "" end)\($d * 10 | round / 10)% vs \($b) (target: no more than \($lim)% below): \(if $d >= -$lim then "MET" else "NOT MET" end)"
      end' <<<"$SUMMARY"
}

# A ratio read round by round: PEER / REF within each round both completed
# (interleaved rounds share the machine's state of the moment, so the
# per-round ratio is steadier than a ratio of medians). Median [min–max].
ratio_line() { # PEER REF GOAL LABEL
  jq -r -s --arg a "$1" --arg b "$2" --argjson goal "$3" --arg gs "$3" --arg what "$4" '
    def median: sort | if length % 2 == 1 then .[length / 2 | floor]
      else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    [group_by(.round)[]
      | (map(select(.peer == $a and .failed == false))[0].hs_per_proxy_cpu_s) as $x
      | (map(select(.peer == $b and .failed == false))[0].hs_per_proxy_cpu_s) as $y
      | select($x != null and $y != null and $y > 0) | $x / $y] as $r
    | if ($r | length) == 0 then empty
      else ($r | median) as $m
      | "- \($what): \($a) / \($b) per round: median \($m * 100 | round / 100)x [\($r | min * 100 | round / 100)–\($r | max * 100 | round / 100)] over \($r | length) rounds (target: >= \($gs)x): \(if $m >= $goal then "MET" else "NOT MET" end)"
      end' "$ROUNDS_JSONL"
}

{
  echo "# tlsgate side-by-side handshake benchmark ($START_UTC)"
  echo
  echo "Command: \`$CMDLINE\`"
  echo
  echo "- Machine: $cpu_model, $(nproc) CPUs, AVX-512 IFMA: $ifma, kernel $(uname -r)"
  echo "- OpenSSL: $ossl; tlsgate: $tg_ver (git $git_rev)"
  if [ -n "$ALT_TLSGATE" ]; then echo "- \"-alt\" peers: $ALT_TLSGATE ($("$ALT_TLSGATE" version 2>&1 | head -n 1))"; fi
  echo "- Peers: $nginx_ver; $haproxy_ver; $hitch_ver"
  echo "- Proxy: pinned to CPU $PROXY_CPU, cgroup-v1 CPU quota $quota_txt; client + upstream pinned to CPU $CLIENT_CPU"
  echo "- Client: $client_txt; TLS 1.3, $SUITE, X25519, RSA-2048 certificate made for this run, every call a new connection and a full handshake"
  echo "- Rounds: $ROUNDS interleaved rounds x ${MEASURE_S}s per peer (warmup ${WARMUP_S}s before each); median [min–max] over rounds"
  echo "- Load average (1/5/15 min): $LOAD_START at start, $LOAD_END at end"
  echo
  table
  echo
  echo "hs/proxy-CPU-s = full handshakes completed / CPU seconds of all the proxy's processes and threads"
  echo "(cgroup cpuacct.usage over the client's run). Saturated = proxy CPU >= 90% of the quota in every round."
  echo "CPU busy = median share of each CPU busy with anything (/proc/stat), the proxy and the client included:"
  echo "near 100% on CPU $PROXY_CPU with the proxy below its quota means other tenants crowded it out."
  echo "Tickets = NewSessionTicket messages per connection (openssl s_client check; must be 0)."
  echo
  echo "Targets:"
  target_line tlsgate-software nginx 10 "software vs nginx"
  target_line tlsgate-deferred tlsgate-software 10 "deferred vs software"
  target_line tlsgate-software-noavx512 nginx-noavx512 10 "masked software vs masked nginx"
  target_line tlsgate-software-alog tlsgate-software 3 "access log (text, to a file) vs none"
  target_line tlsgate-software-alog-json tlsgate-software 3 "access log (JSON, to a file) vs none"
  ratio_line tlsgate-cryptomb tlsgate-software-noavx512 3.0 "cryptomb vs scalar OpenSSL"
  ratio_line tlsgate-cryptomb nginx 2.2 "cryptomb vs nginx"
  unsat=$(jq -r '[.[] | select(.rounds > 0 and .saturated_rounds < .rounds) | .peer] | join(", ")' <<<"$SUMMARY")
  if [ -n "$unsat" ]; then
    echo
    echo "NOT saturated in every round: $unsat — their hs/proxy-CPU-s may be off (a batching provider fills smaller batches when idle). Rounds below 90% of the quota:"
    jq -r '.[] | .peer as $p | .unsaturated_rounds[]
      | "- \($p) round \(.round): proxy \(.proxy_cpu_pct | round)% of a CPU; CPU busy (all tasks) \(.proxy_cpu_busy_all_pct | round)% proxy side, \(.client_cpu_busy_all_pct | round)% client side: "
        + (if .server_no_close > 0.05 * .calls then "the peer held connections open after its response (see below)"
           elif .proxy_cpu_busy_all_pct >= 95 then "other tasks crowded the proxy CPU"
           elif .client_cpu_busy_all_pct >= 95 then "the client CPU was full (client-bound)"
           else "the load did not reach the quota (see the peer warnings)" end)' <<<"$SUMMARY"
  else
    echo
    echo "Every peer was saturated (proxy CPU at the quota) in every round."
  fi
  jq -r '.[] | select((.server_no_close // 0) > 0.05 * .calls)
    | "\nWARNING: \(.peer) did not close after its response in \(.server_no_close) of \(.calls) calls: the client waited for the close, then reset the connection, so \(.peer) was held below its quota (its wall rate and saturation are not comparable). nginx'"'"'s stream module waits for the client'"'"'s close_notify; tlsgate bench --close=auto (newer builds) or TG_BENCH_CLIENT=hey avoid this."' <<<"$SUMMARY"
  negotiated=$(jq -r '[.[] | select(.tls != "") | "\(.peer): \(.tls)"] | join("; ")' <<<"$SUMMARY")
  if [ -n "$negotiated" ]; then
    echo
    echo "Negotiated (as tlsgate bench saw it): $negotiated"
  fi
  if [ "${#PERF_FILES[@]}" -gt 0 ]; then
    echo
    echo "Profiles (extra unreported run each): ${PERF_FILES[*]}"
  fi
} >"$PREFIX.md"

jq -n --arg start "$START_UTC" --arg cmd "$CMDLINE" --arg cpu "$cpu_model" --arg ifma "$ifma" \
  --arg kernel "$(uname -r)" --arg openssl "$ossl" --arg tlsgate "$tg_ver" --arg git "$git_rev" \
  --arg nginx "$nginx_ver" --arg haproxy "$haproxy_ver" --arg hitch "$hitch_ver" \
  --arg client "$client_txt" --arg load_start "$LOAD_START" --arg load_end "$LOAD_END" \
  --argjson rounds "$ROUNDS" --argjson seconds "$MEASURE_S" --argjson warmup "$WARMUP_S" \
  --argjson conns "$CONNS" --argjson quota "$QUOTA_US" --argjson period "$PERIOD_US" \
  --argjson proxy_cpu "$PROXY_CPU" --argjson client_cpu "$CLIENT_CPU" \
  --argjson summary "$SUMMARY" --slurpfile runs "$ROUNDS_JSONL" '
  {tool: "bench/compare.sh", start_time: $start, command: $cmd,
   machine: {cpu: $cpu, avx512ifma: ($ifma == "yes"), kernel: $kernel, openssl: $openssl,
             loadavg_start: $load_start, loadavg_end: $load_end},
   versions: {tlsgate: $tlsgate, git: $git, nginx: $nginx, haproxy: $haproxy, hitch: $hitch},
   settings: {rounds: $rounds, seconds: $seconds, warmup_s: $warmup, connections: $conns,
              quota_us: $quota, period_us: $period, proxy_cpu: $proxy_cpu,
              client_cpu: $client_cpu, client: $client},
   peers: $summary, runs: $runs}' >"$PREFIX.json"

cat "$PREFIX.md"
echo
note "wrote $PREFIX.md and $PREFIX.json"
failed=$(jq '[.[] | select(.failed_rounds > 0)] | length' <<<"$SUMMARY")
[ "$failed" -eq 0 ] || die "$failed peer(s) had failed rounds (see above)"
