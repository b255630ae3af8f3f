#!/usr/bin/env bash
# bench/syscalls.sh: system calls per full TLS handshake, side by side, counted
# by `strace -c` on the proxy (every thread) while `tlsgate bench` runs a fixed
# number of calls through it. A count, not a time: it moves little with the
# machine's load, so it can show a change of one system call per handshake
# that a timed benchmark cannot resolve. strace slows the proxy down a lot,
# which keeps it the bottleneck (as at saturation): a ClientHello or a
# response is usually there when the proxy looks. The counts are what to
# read, not the rates.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
PEER_DIR=$SCRIPT_DIR/peers
TG_LIB_PROG=syscalls.sh
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$SCRIPT_DIR/lib.sh"

usage() {
  cat <<EOF
usage: bench/syscalls.sh [-h|--help] [path/to/tlsgate]

Counts the proxy's system calls per full handshake (TLS 1.3, X25519, RSA-2048,
one request per new connection, as bench/compare.sh) with strace -c -f, for
each peer in turn, and prints one table: a row per system call, a column per
peer. Needs strace, openssl, ss, taskset; nginx (nginx-light +
libnginx-mod-stream) for the nginx peer. Default binary: \$TLSGATE, else
$REPO/build/tlsgate.

Environment (defaults in brackets):
  TG_SYS_PEERS   nginx and/or tlsgate-<name> of bench/peers [nginx tlsgate-software tlsgate-cryptomb]
  TG_SYS_CALLS   handshakes counted per peer [3000]
  TG_SYS_CONNS   client connections [64]
  TG_SYS_OUT     where syscalls-<timestamp>.md goes [$REPO/bench/results]
EOF
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  -*) usage >&2; exit 2 ;;
esac
TLSGATE=${1:-${TLSGATE:-$REPO/build/tlsgate}}
CALLS=${TG_SYS_CALLS:-3000}
CONNS=${TG_SYS_CONNS:-64}
OUT_DIR=${TG_SYS_OUT:-$REPO/bench/results}
read -r -a PEERS <<<"$(echo "${TG_SYS_PEERS:-nginx tlsgate-software tlsgate-cryptomb}" | tr ',' ' ')"
if ! is_uint "$CALLS" || [ "$CALLS" -lt 100 ]; then die "TG_SYS_CALLS must be an integer >= 100"; fi
if ! is_uint "$CONNS" || [ "$CONNS" -lt 1 ]; then die "TG_SYS_CONNS must be a positive integer"; fi
for t in strace openssl ss taskset awk; do command -v "$t" >/dev/null || die "'$t' is not installed"; done
[ -x "$TLSGATE" ] || die "no tlsgate binary at '$TLSGATE' (make build)"
for p in "${PEERS[@]}"; do
  case "$p" in
    nginx) command -v nginx >/dev/null || die "peer nginx: nginx is not installed" ;;
    tlsgate-*) [ -f "$PEER_DIR/$p.yaml" ] || die "unknown peer '$p' (no $PEER_DIR/$p.yaml)" ;;
    *) die "unknown peer '$p'" ;;
  esac
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tg-syscalls.XXXXXX")
KEEP_TMP=0
RUN_ID="tg-sys-$$"
declare -a BG_PIDS=() CGROUPS=() USED_PORTS=()
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 -subj /CN=localhost \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >"$TMP/req.log" 2>&1 || die "cannot make a certificate"
free_port
UP_PORT=$FREE_PORT
taskset -c 0 "$TLSGATE" bench --serve "127.0.0.1:$UP_PORT" --quiet >"$TMP/upstream.log" 2>&1 &
BG_PIDS+=("$!")
wait_listening "$!" "$UP_PORT" "$TMP/upstream.log" "the upstream"

client() { # PORT CALLS
  taskset -c 0 "$TLSGATE" bench -k -c "$CONNS" -n "$2" --keepalive=false --tls-version 1.3 \
    --groups X25519 --quiet "https://127.0.0.1:$1/" >"$TMP/client.log" 2>&1 ||
    { cat "$TMP/client.log" >&2; die "the client failed"; }
  grep -q "($2 ok, 0 errors)" "$TMP/client.log" || { cat "$TMP/client.log" >&2; die "calls failed"; }
}

# count PEER: start it, warm up, strace -c over CALLS handshakes, stop it;
# leaves "syscall calls" lines in $TMP/PEER.counts.
count() {
  local p=$1 dir=$TMP/$1 port pid target
  mkdir -p "$dir"
  free_port
  port=$FREE_PORT
  if [ "$p" = nginx ]; then
    sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@UPSTREAM_PORT@|$UP_PORT|g" \
      -e "s|@CERT@|$TMP/cert.pem|g" -e "s|@KEY@|$TMP/key.pem|g" "$PEER_DIR/nginx.conf" >"$dir/nginx.conf"
    taskset -c 1 nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/out.log" 2>&1 &
  else
    sed -e "s|@PORT@|$port|g" -e "s|@UPSTREAM_PORT@|$UP_PORT|g" -e "s|@CERT@|$TMP/cert.pem|g" \
      -e "s|@KEY@|$TMP/key.pem|g" "$PEER_DIR/$p.yaml" >"$dir/tlsgate.yaml"
    taskset -c 1 "$TLSGATE" run --config "$dir/tlsgate.yaml" >"$dir/out.log" 2>&1 &
  fi
  pid=$!
  BG_PIDS+=("$pid")
  wait_listening "$pid" "$port" "$dir/out.log" "$p"
  target=$pid
  if [ "$p" = nginx ]; then # the worker does the work
    target=$(pgrep -P "$pid" | head -n 1)
    [ -n "$target" ] || die "nginx: no worker process"
  fi
  client "$port" 200
  strace -c -f -q -p "$target" -o "$dir/strace.txt" &
  local st=$!
  sleep 0.5
  client "$port" "$CALLS"
  kill -INT "$st"
  wait "$st" || true
  kill_pid "$pid"
  # "% time seconds usecs/call calls [errors] syscall": the name is last,
  # the count fourth.
  awk '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" { print $NF, $4 }' \
    "$dir/strace.txt" >"$TMP/$p.counts"
}

for p in "${PEERS[@]}"; do
  note "counting $p ($CALLS handshakes, -c $CONNS)"
  count "$p"
done

mkdir -p "$OUT_DIR"
REPORT=$OUT_DIR/syscalls-$(date -u +%Y%m%dT%H%M%SZ).md
{
  echo "# System calls per full handshake (bench/syscalls.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ))"
  echo
  echo "Command: \`TG_SYS_PEERS=\"${PEERS[*]}\" TG_SYS_CALLS=$CALLS TG_SYS_CONNS=$CONNS bench/syscalls.sh $TLSGATE\`"
  echo "tlsgate: $("$TLSGATE" version 2>&1 | head -n 1) (git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo ?))"
  echo
  echo "strace -c -f on the proxy (nginx: its worker) over $CALLS handshakes at -c $CONNS,"
  echo "TLS 1.3, X25519, RSA-2048, one request per new connection; calls per handshake."
  echo "epoll_wait depends on how many events each wait returns (strace slows"
  echo "the proxy, so waits return more events than at full speed): it is left out"
  echo "of the total, like the one-off calls of start-up (mprotect, madvise, brk, ...)."
  echo
  awk -v calls="$CALLS" -v peers="${PEERS[*]}" -v tmp="$TMP" '
    BEGIN {
      n = split(peers, P, " ")
      oneoff["mprotect"] = oneoff["madvise"] = oneoff["brk"] = oneoff["mmap"] = oneoff["munmap"] = 1
      oneoff["openat"] = oneoff["futex"] = oneoff["rt_sigprocmask"] = oneoff["getrandom"] = 1
      for (i = 1; i <= n; i++) {
        f = tmp "/" P[i] ".counts"
        while ((getline line < f) > 0) {
          split(line, a, " ")
          c[a[1], i] = a[2]
          if (!(a[1] in seen)) { seen[a[1]] = 1; names[++k] = a[1] }
        }
        close(f)
      }
      hdr = "| system call |"; sep = "|---|"
      for (i = 1; i <= n; i++) { hdr = hdr " " P[i] " |"; sep = sep "---:|" }
      print hdr; print sep
      for (j = 1; j <= k; j++) {
        nm = names[j]
        if (nm in oneoff) continue
        row = "| " nm " |"
        for (i = 1; i <= n; i++) {
          v = (c[nm, i] == "" ? 0 : c[nm, i]) / calls
          row = row sprintf(" %.2f |", v)
          if (nm != "epoll_wait") tot[i] += v
        }
        print row
      }
      row = "| **total (without epoll_wait)** |"
      for (i = 1; i <= n; i++) row = row sprintf(" **%.2f** |", tot[i])
      print row
    }'
} >"$REPORT"
cat "$REPORT"
note "wrote $REPORT"
