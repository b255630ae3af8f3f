# shellcheck shell=bash disable=SC2034 # (variables set here are read by the sourcing scripts)
# bench/loadlib.sh: peers and measurements shared by bench/scaling.sh and
# bench/latency.sh. Sourced after bench/lib.sh, never run.
#
# The sourcing script sets TLSGATE, OUT, RUN_ID, PERIOD_US, PEER_DIR, calls
# lb_begin NAME (checks, TMP, cleanup traps) and lb_setup once (certificate,
# upstream, client cgroup); then
# lb_start_peer NAME KIND WORKERS CPUS QUOTA_US starts a peer, and
# lb_measure NAME SECONDS CONNS QPS CLIENT_CPUS OUT_JSON measures one run.
#
# Kinds: software | cryptomb (tlsgate with bench/peers/tlsgate-KIND.yaml,
# `concurrency` set to WORKERS) and nginx (bench/peers/nginx.conf,
# `worker_processes` set to WORKERS). Every peer: RSA-2048 (one certificate
# per run), TLS 1.3, X25519, TLS_AES_128_GCM_SHA256, no tickets, no cache.

declare -A LB_PID=() LB_PORT=() LB_CG=() LB_ADMIN=() LB_KIND=()

# The start every load script shares: cgroup v1, both CPUs, the tools, the
# output folder, TMP (tg-NAME.XXXXXX, readable by the peers' users) and the
# traps that stop every process started and remove every cgroup made.
lb_begin() { # NAME
  require_cgroup_v1
  require_cpus_online 0 1
  local t
  for t in jq curl openssl nginx; do command -v "$t" >/dev/null || die "$t is not installed"; done
  mkdir -p "$OUT"
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/tg-$1.XXXXXX")
  chmod 755 "$TMP"
  declare -ga BG_PIDS=() CGROUPS=()
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

lb_setup() {
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >"$TMP/openssl-req.log" 2>&1 ||
    die "cannot make the certificate"
  free_port
  UPSTREAM_PORT=$FREE_PORT
  cg_make upstream -1
  start_in_cg "$CG_MADE" "$1" "$TMP/upstream.log" "$TLSGATE" bench --serve "127.0.0.1:$UPSTREAM_PORT" --quiet
  BG_PIDS+=("$STARTED_PID")
  wait_listening "$STARTED_PID" "$UPSTREAM_PORT" "$TMP/upstream.log" "the upstream"
  cg_make client -1
  LB_CLIENT_CG=$CG_MADE
}

lb_start_peer() { # NAME KIND WORKERS CPUS QUOTA_US
  local name=$1 kind=$2 workers=$3 cpus=$4 quota=$5 dir=$TMP/peers/$1 port conf
  mkdir -p "$dir"
  free_port
  port=$FREE_PORT
  cg_make "$name" "$quota"
  local -a cmd=()
  case "$kind" in
    nginx)
      conf=$dir/nginx.conf
      sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" \
        -e "s|@CERT@|$TMP/cert.pem|g" -e "s|@KEY@|$TMP/key.pem|g" \
        -e "s|^worker_processes .*|worker_processes $workers;|" "$PEER_DIR/nginx.conf" >"$conf"
      cmd=(nginx -p "$dir/" -e "$dir/nginx-error.log" -c "$conf")
      ;;
    software | cryptomb)
      free_port
      LB_ADMIN[$name]=$FREE_PORT
      conf=$dir/tlsgate.yaml
      sed -e "s|@PORT@|$port|g" -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" \
        -e "s|@CERT@|$TMP/cert.pem|g" -e "s|@KEY@|$TMP/key.pem|g" \
        -e "s|^concurrency: .*|concurrency: $workers|" "$PEER_DIR/tlsgate-$kind.yaml" >"$conf"
      printf 'admin: { address: "127.0.0.1:%s" }\n' "${LB_ADMIN[$name]}" >>"$conf"
      "$TLSGATE" check-config "$conf" >"$dir/check.log" 2>&1 || { cat "$dir/check.log" >&2; die "$name: bad config"; }
      cmd=("$TLSGATE" run --config "$conf" --pid-file "$dir/tlsgate.pid")
      ;;
    *) die "unknown peer kind $kind" ;;
  esac
  if grep -q '@[A-Z_]*@' "$conf"; then die "unfilled placeholder in $conf"; fi
  start_in_cg "$CG_MADE" "$cpus" "$dir/output.log" "${cmd[@]}"
  BG_PIDS+=("$STARTED_PID")
  LB_PID[$name]=$STARTED_PID
  LB_PORT[$name]=$port
  LB_CG[$name]=$CG_MADE
  LB_KIND[$name]=$kind
  wait_listening "$STARTED_PID" "$port" "$dir/output.log" "$name"
  # One request: HTTP 200 over TLS 1.3 / X25519.
  printf 'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
    timeout 10 openssl s_client -connect "127.0.0.1:$port" -tls1_3 -groups X25519 -ign_eof \
      >"$dir/s_client.log" 2>&1 || true
  grep -q '^HTTP/1.1 200' "$dir/s_client.log" || die "$name: no HTTP 200 ($dir/s_client.log)"
}

# Sum and count of tlsgate_keyprov_batch_size (all providers, all workers).
lb_batch() {
  local a=${LB_ADMIN[$1]:-}
  [ -n "$a" ] || { echo "0 0"; return; }
  curl -fsS "http://127.0.0.1:$a/stats" 2>/dev/null |
    awk '/^tlsgate_keyprov_batch_size_sum/ { s += $NF } /^tlsgate_keyprov_batch_size_count/ { c += $NF }
         END { printf "%d %d\n", s, c }'
}

# One measurement: warmup (WARMUP s, not counted), then the client for SECONDS
# at -c CONNS (and -qps QPS when > 0), proxy CPU from its cgroup over the
# client's run. Writes a one-line JSON object to OUT.
lb_measure() { # NAME SECONDS CONNS QPS CLIENT_CPUS OUT
  local name=$1 secs=$2 conns=$3 qps=$4 ccpus=$5 out=$6 port=${LB_PORT[$1]} u0 u1 b0 b1 busy0 busy1 t0 t1
  local -a qopt=()
  [ "$qps" = 0 ] || qopt=(-qps "$qps")
  local -a cl=(taskset -c "$ccpus" "$TLSGATE" bench -k -c "$conns" --keepalive=false --tls-version 1.3
    --groups X25519 --quiet --close=client "${qopt[@]}")
  if [ "${WARMUP:-2}" -gt 0 ]; then
    (echo "$BASHPID" >"$CG_CPU_ROOT/$LB_CLIENT_CG/cgroup.procs" &&
      exec "${cl[@]}" -t "${WARMUP:-2}s" "https://127.0.0.1:$port/") >"$TMP/warm.log" 2>&1 || true
  fi
  read -r b0 < <(lb_batch "$name" | tr ' ' ,)
  u0=$(cg_usage_ns "${LB_CG[$name]}")
  t0=$(now_ns)
  (echo "$BASHPID" >"$CG_CPU_ROOT/$LB_CLIENT_CG/cgroup.procs" &&
    exec "${cl[@]}" -t "${secs}s" --json "$TMP/client.json" "https://127.0.0.1:$port/") >"$TMP/client.log" 2>&1 ||
    { cat "$TMP/client.log" >&2; die "$name: the client failed"; }
  u1=$(cg_usage_ns "${LB_CG[$name]}")
  t1=$(now_ns)
  read -r b1 < <(lb_batch "$name" | tr ' ' ,)
  jq -c --arg peer "$name" --argjson cpu_ns $((u1 - u0)) --argjson wall_ns $((t1 - t0)) \
    --arg b0 "$b0" --arg b1 "$b1" --argjson conns "$conns" --argjson qps_target "$qps" '
    ($b0 | split(",") | map(tonumber)) as $x | ($b1 | split(",") | map(tonumber)) as $y |
    { peer: $peer, conns: $conns, qps_target: $qps_target,
      hs: .handshakes.full, errors: .errors.total,
      proxy_cpu_s: ($cpu_ns / 1e9), wall_s: ($wall_ns / 1e9),
      hs_per_s: (.handshakes.full / ($wall_ns / 1e9)),
      hs_per_cpu_s: (if $cpu_ns > 0 then .handshakes.full / ($cpu_ns / 1e9) else 0 end),
      proxy_cpu_pct: (100 * $cpu_ns / $wall_ns),
      p50_ms: .latency_ms.p50, p99_ms: .latency_ms.p99,
      batch_fill: (if ($y[1] - $x[1]) > 0 then ($y[0] - $x[0]) / ($y[1] - $x[1]) else null end) }' \
    "$TMP/client.json" >"$out"
}

lb_machine() {
  echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs, $(uname -r), $(openssl version | cut -d' ' -f1-2), nginx $(nginx -v 2>&1 | sed 's|.*/||')"
}
