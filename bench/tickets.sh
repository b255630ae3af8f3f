#!/usr/bin/env bash
# bench/tickets.sh: what session ticket key rotation and key wiping cost, a
# tlsgate build against another one (e.g. before and after), side by side.
#
# For each build, in interleaved rounds (the order alternates, so drift on a
# shared machine hits both), a fresh gateway (one worker, software provider,
# RSA-2048, TLS 1.2 so that every resumption opens a ticket) takes:
#   full     `tlsgate bench -c 4` (a new TCP + TLS connection per call, no
#            resumption): full handshakes, each issuing a ticket;
#   resumed  `openssl s_time -reuse` (one client, the same ticket over and
#            over): resumed handshakes, each opening a ticket.
# Handshakes are counted by the gateway (/stats), its CPU time from
# /proc/PID/stat. Prints a markdown table of medians: handshakes per second
# and gateway CPU microseconds per handshake, and the ratio B/A.
#
# MODE=instructions: the same two workloads with the gateway under
# valgrind's callgrind, two sizes each per build; prints user-space
# instructions per full and per resumed handshake (the difference of the two
# sizes, so start-up and fixed costs cancel). Instruction counts do not
# depend on the machine's load: the comparison to trust on a busy machine.
#
#   bench/tickets.sh A_TLSGATE B_TLSGATE [ROUNDS] [SECONDS]   (3 rounds, 5 s)
#   MODE=instructions bench/tickets.sh A_TLSGATE B_TLSGATE [N] [SECONDS]
#                     (N and 3N full handshakes, N = 400; s_time T and 3T, T = 10 s)
#
# Loopback only; every process started here is stopped by PID at exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 2 ] || { echo "usage: $0 A_TLSGATE B_TLSGATE [ROUNDS] [SECONDS]" >&2; exit 2; }
A=$(realpath "$1")
B=$(realpath "$2")
ROUNDS=${3:-3}
SECS=${4:-5}
TG_LIB_PROG=tickets.sh
KEEP_TMP=${KEEP_TMP:-0}
. "$here/lib.sh"
[ -x "$A" ] && [ -x "$B" ] || die "both tlsgate binaries must exist"
is_uint "$ROUNDS" && is_uint "$SECS" || die "ROUNDS and SECONDS are whole numbers"
CLK_TCK=$(getconf CLK_TCK)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tg-tickets.XXXXXX")
declare -a BG_PIDS=() CGROUPS=()
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >"$TMP/req.log" 2>&1 || die "cannot make the certificate"
free_port
UP_PORT=$FREE_PORT
"$B" bench --serve "127.0.0.1:$UP_PORT" --quiet >"$TMP/upstream.log" 2>&1 &
BG_PIDS+=($!)
wait_listening "${BG_PIDS[-1]}" "$UP_PORT" "$TMP/upstream.log" "the upstream"

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
stat_sum() { # ADMIN_PORT METRIC [LABEL FILTER]: sum of the series
  curl -sf "http://127.0.0.1:$1/stats" | awk -v m="$2" -v f="${3:-}" \
    'index($1, m) == 1 && (f == "" || index($1, f) > 0) && (substr($1, length(m) + 1, 1) == "{" || substr($1, length(m) + 1, 1) == "") { s += $2 } END { printf "%d\n", s }'
}

# run_one BUILD NAME -> appends "full_hs_s full_us resumed_hs_s resumed_us" to $TMP/NAME.txt
run_one() {
  local bin=$1 name=$2 port admin pid dir=$TMP/gw-$2
  mkdir -p "$dir"
  free_port
  port=$FREE_PORT
  free_port
  admin=$FREE_PORT
  cat >"$dir/gw.yaml" <<YAML
concurrency: 1
log_level: warn
admin: { address: 127.0.0.1:$admin }
listeners:
  - name: bench
    address: 127.0.0.1:$port
    tls:
      certificates:
        - certificate_chain: { filename: "$TMP/cert.pem" }
          private_key: { filename: "$TMP/key.pem" }
      min_version: TLSv1.2
      max_version: TLSv1.2
    upstream: { address: 127.0.0.1:$UP_PORT }
YAML
  chmod 600 "$TMP/key.pem"
  "$bin" run --config "$dir/gw.yaml" --pid-file "$dir/pid" >"$dir/log" 2>&1 &
  pid=$!
  BG_PIDS+=("$pid")
  wait_listening "$pid" "$port" "$dir/log" "tlsgate ($name)"
  wait_listening "$pid" "$admin" "$dir/log" "tlsgate admin ($name)"

  local h0 t0 w0 h1 t1 w1 full_rate full_us r0 res_rate res_us
  h0=$(stat_sum "$admin" tlsgate_handshakes_total 'result="ok"')
  t0=$(ticks "$pid")
  w0=$(now_ns)
  "$B" bench -k -c 4 -t "${SECS}s" --tls-version 1.2 --quiet "127.0.0.1:$port" >"$dir/bench.log" 2>&1 ||
    { cat "$dir/bench.log" >&2; die "bench failed ($name)"; }
  h1=$(stat_sum "$admin" tlsgate_handshakes_total 'result="ok"')
  t1=$(ticks "$pid")
  w1=$(now_ns)
  full_rate=$(awk -v h=$((h1 - h0)) -v w=$((w1 - w0)) 'BEGIN { printf "%.0f", h / (w / 1e9) }')
  full_us=$(awk -v h=$((h1 - h0)) -v t=$((t1 - t0)) -v k="$CLK_TCK" 'BEGIN { printf "%.1f", t / k * 1e6 / h }')

  r0=$(stat_sum "$admin" tlsgate_handshakes_resumed_total)
  h0=$(stat_sum "$admin" tlsgate_handshakes_total 'result="ok"')
  t0=$(ticks "$pid")
  w0=$(now_ns)
  openssl s_time -connect "127.0.0.1:$port" -reuse -tls1_2 -time "$SECS" >"$dir/s_time.log" 2>&1 ||
    { tail -n 5 "$dir/s_time.log" >&2; die "s_time failed ($name)"; }
  h1=$(stat_sum "$admin" tlsgate_handshakes_resumed_total)
  t1=$(ticks "$pid")
  w1=$(now_ns)
  local full_during=$(($(stat_sum "$admin" tlsgate_handshakes_total 'result="ok"') - h0 - (h1 - r0)))
  [ $((h1 - r0)) -gt 0 ] || die "no resumed handshake ($name): $(tail -n 3 "$dir/s_time.log")"
  res_rate=$(awk -v h=$((h1 - r0)) -v w=$((w1 - w0)) 'BEGIN { printf "%.0f", h / (w / 1e9) }')
  res_us=$(awk -v h=$((h1 - r0)) -v t=$((t1 - t0)) -v k="$CLK_TCK" 'BEGIN { printf "%.1f", t / k * 1e6 / h }')
  [ "$full_during" -le 2 ] || note "$name: $full_during full handshakes during the resumption run"
  echo "$full_rate $full_us $res_rate $res_us" >>"$TMP/$name.txt"
  kill_pid "$pid"
}

# cg_run BUILD NAME WORK SIZE: the gateway under callgrind; WORK = full
# (SIZE full handshakes with bench) or resumed (s_time -reuse for SIZE
# seconds); prints "instructions handshakes" (the handshakes of that kind,
# counted by the gateway).
cg_run() {
  local bin=$1 name=$2 work=$3 size=$4 port admin pid dir=$TMP/cg-$2-$3-$4 hs ir
  mkdir -p "$dir"
  free_port
  port=$FREE_PORT
  free_port
  admin=$FREE_PORT
  cat >"$dir/gw.yaml" <<YAML
concurrency: 1
log_level: warn
admin: { address: 127.0.0.1:$admin }
listeners:
  - name: bench
    address: 127.0.0.1:$port
    tls:
      certificates:
        - certificate_chain: { filename: "$TMP/cert.pem" }
          private_key: { filename: "$TMP/key.pem" }
      min_version: TLSv1.2
      max_version: TLSv1.2
    upstream: { address: 127.0.0.1:$UP_PORT }
YAML
  LD_PRELOAD=$TMP/vg_async_stacks.so valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
    "$bin" run --config "$dir/gw.yaml" --pid-file "$dir/pid" >"$dir/log" 2>&1 &
  pid=$!
  BG_PIDS+=("$pid")
  wait_listening "$pid" "$port" "$dir/log" "tlsgate under callgrind ($name)"
  wait_listening "$pid" "$admin" "$dir/log" "tlsgate admin ($name)"
  if [ "$work" = full ]; then
    "$B" bench -k -n "$size" -c 4 --tls-version 1.2 --quiet "127.0.0.1:$port" >"$dir/bench.log" 2>&1 ||
      { cat "$dir/bench.log" >&2; die "bench failed ($name)"; }
    hs=$(stat_sum "$admin" tlsgate_handshakes_total 'result="ok"')
  else
    openssl s_time -connect "127.0.0.1:$port" -reuse -tls1_2 -time "$size" >"$dir/s_time.log" 2>&1 ||
      { tail -n 5 "$dir/s_time.log" >&2; die "s_time failed ($name)"; }
    hs=$(stat_sum "$admin" tlsgate_handshakes_resumed_total)
  fi
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$dir/cg.out")
  echo "$ir $hs"
}

# slope BUILD NAME WORK SMALL LARGE: instructions per handshake from two runs
# of different sizes (start-up, stop, the /stats read and s_time's first,
# full, handshake cancel out).
slope() {
  local i1 n1 i2 n2
  read -r i1 n1 < <(cg_run "$1" "$2" "$3" "$4")
  read -r i2 n2 < <(cg_run "$1" "$2" "$3" "$5")
  [ "$n2" -gt "$n1" ] || die "$2 $3: $n2 handshakes in the long run, $n1 in the short one"
  note "$2 $3: $n1 and $n2 handshakes"
  awk -v a="$i2" -v b="$i1" -v n="$n2" -v m="$n1" 'BEGIN { printf "%.0f", (a - b) / (n - m) }'
}

if [ "${MODE:-}" = instructions ]; then
  command -v valgrind >/dev/null || die "valgrind is not installed"
  [ $# -ge 3 ] || ROUNDS=400
  [ $# -ge 4 ] || SECS=10
  cc -shared -fPIC -O2 -o "$TMP/vg_async_stacks.so" "$here/../tests/integration/vg_async_stacks.c" -ldl ||
    die "cannot build vg_async_stacks.so"
  declare -A IR
  for w in A B; do
    bin=$A
    [ "$w" = B ] && bin=$B
    IR[$w.full]=$(slope "$bin" "$w" full "$ROUNDS" $((3 * ROUNDS)))
    IR[$w.resumed]=$(slope "$bin" "$w" resumed "$SECS" $((3 * SECS)))
  done
  echo
  echo "User-space instructions in the gateway (callgrind), one worker, software provider, RSA-2048, TLS 1.2;"
  echo "per handshake, from runs of N and 3N full handshakes, and of s_time -reuse for T and 3T seconds."
  echo "Command: MODE=instructions bench/tickets.sh $1 $2 $ROUNDS $SECS"
  echo
  echo "| per handshake | A | B | B/A |"
  echo "|---|---:|---:|---:|"
  for k in full resumed; do
    echo "| $k | ${IR[A.$k]} | ${IR[B.$k]} | $(awk -v a="${IR[A.$k]}" -v b="${IR[B.$k]}" 'BEGIN { printf "%.4f", b / a }') |"
  done
  exit 0
fi

note "A = $A"
note "B = $B"
for ((r = 1; r <= ROUNDS; r++)); do
  if ((r % 2)); then order="A B"; else order="B A"; fi
  for w in $order; do
    if [ "$w" = A ]; then run_one "$A" A; else run_one "$B" B; fi
    note "round $r $w: $(tail -n 1 "$TMP/$w.txt")"
  done
done

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -v c="$2" '{ print $c }' "$TMP/$1.txt" | median; }
echo
echo "CPU: $(lscpu | awk -F: '/Model name/ { gsub(/^ +/, "", $2); print $2; exit }'), $(nproc) CPUs;" \
  "medians of $ROUNDS interleaved rounds of ${SECS} s; one worker, software provider, RSA-2048, TLS 1.2"
echo "Command: bench/tickets.sh $1 $2 $ROUNDS $SECS"
echo
echo "| | A | B | B/A |"
echo "|---|---:|---:|---:|"
for spec in "full handshakes/s:1" "gateway CPU µs per full handshake:2" \
  "resumed handshakes/s:3" "gateway CPU µs per resumed handshake:4"; do
  label=${spec%:*}
  c=${spec##*:}
  a=$(col A "$c")
  b=$(col B "$c")
  echo "| $label | $a | $b | $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b / a }') |"
done
