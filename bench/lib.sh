# shellcheck shell=bash disable=SC2034 # (variables set here are read by the sourcing scripts)
# bench/lib.sh: shell functions shared by the benchmark scripts
# (bench/compare.sh, bench/providers.sh). Sourced, never run. It defines
# functions only; nothing runs at source time except reading CLK_TCK.
#
# The sourcing script sets, before calling them:
#   TG_LIB_PROG   its name, the prefix of every message ("compare.sh")
#   TMP           its temporary directory (removed by cleanup unless KEEP_TMP=1)
#   KEEP_TMP      1 = keep TMP at exit
#   RUN_ID        prefix of the cgroups it creates
#   PERIOD_US     CFS period of the cgroups it creates
# and uses these arrays, which the functions fill:
#   BG_PIDS       every process started in the background, by PID
#   CGROUPS       every cgroup directory created (removed by cleanup)
#   USED_PORTS    ports handed out by free_port
# Cleanup: `trap cleanup EXIT` once TMP exists; cleanup kills BG_PIDS (last
# first) by PID, then whatever is still in the cgroups, removes the cgroups
# and TMP, and exits with the script's status.

die() {
  echo "$TG_LIB_PROG: error: $*" >&2
  exit 1
}
note() { echo "$TG_LIB_PROG: $*" >&2; }

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

# check_cg_settings PREFIX: the quota / period / CPU pinning settings both
# benchmarks share (PERIOD_US, QUOTA_US, PROXY_CPU, CLIENT_CPU), named
# PREFIX_PERIOD_US etc. in the messages.
check_cg_settings() {
  if [ "$PERIOD_US" -lt 1000 ] || [ "$PERIOD_US" -gt 1000000 ]; then
    die "$1_PERIOD_US must be in 1000..1000000"
  fi
  [ "$QUOTA_US" -eq 0 ] || [ "$QUOTA_US" -ge 1000 ] || die "$1_QUOTA_US must be 0 or >= 1000"
  [ "$PROXY_CPU" != "$CLIENT_CPU" ] || die "the proxy and the client need different CPUs"
}

# The cgroup-v1 cpu and cpuacct controllers, writable (dies otherwise).
CG_CPU_ROOT=/sys/fs/cgroup/cpu
CG_ACCT_ROOT=/sys/fs/cgroup/cpuacct
require_cgroup_v1() {
  if [ ! -w "$CG_CPU_ROOT/cgroup.procs" ] || [ ! -e "$CG_CPU_ROOT/cpu.cfs_quota_us" ]; then
    die "no writable cgroup-v1 cpu controller at $CG_CPU_ROOT"
  fi
  if [ ! -w "$CG_ACCT_ROOT/cgroup.procs" ] || [ ! -e "$CG_ACCT_ROOT/cpuacct.usage" ]; then
    die "no writable cgroup-v1 cpuacct controller at $CG_ACCT_ROOT"
  fi
}
require_cpus_online() { # CPU...
  local c
  for c in "$@"; do
    if [ ! -d "/sys/devices/system/cpu/cpu$c" ] ||
      [ "$(cat "/sys/devices/system/cpu/cpu$c/online" 2>/dev/null || echo 1)" != 1 ]; then
      die "CPU $c is not online (this needs 2 CPUs)"
    fi
  done
}

kill_pid() { # PID: TERM, wait up to 5 s, then KILL
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? pid cg i
  trap - EXIT INT TERM
  for ((i = ${#BG_PIDS[@]} - 1; i >= 0; i--)); do kill_pid "${BG_PIDS[$i]}"; done
  # Children of the proxies (nginx worker, hitch workers) live in our groups.
  for cg in "${CGROUPS[@]}"; do
    [ -e "$cg/cgroup.procs" ] || continue
    while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done <"$cg/cgroup.procs"
  done
  for cg in "${CGROUPS[@]}"; do
    for ((i = 0; i < 50; i++)); do
      [ -d "$cg" ] || break
      rmdir "$cg" 2>/dev/null && break
      sleep 0.1
    done
    [ ! -d "$cg" ] || echo "$TG_LIB_PROG: warning: could not remove cgroup $cg" >&2
  done
  if [ "$KEEP_TMP" = 1 ]; then
    echo "$TG_LIB_PROG: kept $TMP" >&2
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}

cg_make() { # NAME QUOTA_US(-1 = none) -> sets CG_MADE to the name
  local name="$RUN_ID-$1" quota=$2
  mkdir "$CG_CPU_ROOT/$name" "$CG_ACCT_ROOT/$name"
  CGROUPS+=("$CG_CPU_ROOT/$name" "$CG_ACCT_ROOT/$name")
  echo "$PERIOD_US" >"$CG_CPU_ROOT/$name/cpu.cfs_period_us"
  echo "$quota" >"$CG_CPU_ROOT/$name/cpu.cfs_quota_us"
  # TG_BENCH_SHARES (cpu.shares, default 1024 = the kernel's): on a machine
  # shared with other tenants, a higher weight lets the benchmark's groups get
  # their quota (which still caps the proxy) instead of being crowded out.
  if [ -n "${TG_BENCH_SHARES:-}" ]; then echo "$TG_BENCH_SHARES" >"$CG_CPU_ROOT/$name/cpu.shares"; fi
  CG_MADE=$name
}
cg_usage_ns() { cat "$CG_ACCT_ROOT/$1/cpuacct.usage"; }
cg_stat() { awk -v k="$2" '$1 == k { print $2 }' "$CG_CPU_ROOT/$1/cpu.stat"; }
# utime + stime of every process in the group, in clock ticks (the /proc view).
CLK_TCK=$(getconf CLK_TCK)
cg_proc_ticks() {
  local pid sum=0 t
  while read -r pid; do
    t=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }') || t=0
    sum=$((sum + ${t:-0}))
  done <"$CG_ACCT_ROOT/$1/cgroup.procs"
  echo "$sum"
}
now_ns() { date +%s%N; }
# Busy time of one CPU in clock ticks from /proc/stat (user nice system irq
# softirq steal), all tasks: on a shared machine it tells whether a proxy
# below its quota was crowded out (its CPU full) or the client side was full.
cpu_busy_ticks() { awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

# Start "$@" in the background inside cgroup $1 (both controllers), pinned to
# CPU $2; the PID is the process itself (the subshell joins then execs).
# Sets STARTED_PID.
start_in_cg() {
  local cg=$1 cpu=$2 out=$3
  shift 3
  (
    echo "$BASHPID" >"$CG_CPU_ROOT/$cg/cgroup.procs"
    echo "$BASHPID" >"$CG_ACCT_ROOT/$cg/cgroup.procs"
    exec taskset -c "$cpu" "$@"
  ) >"$out" 2>&1 </dev/null &
  STARTED_PID=$!
}

port_listening() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }
# Sets FREE_PORT to a port nobody listens on, below the ephemeral range (the
# client's connections must never collide with a listener).
free_port() {
  local p i low
  low=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  [ "$low" -gt 12000 ] || low=32768
  for ((i = 0; i < 200; i++)); do
    p=$((10000 + RANDOM % (low - 10000)))
    case " ${USED_PORTS:-} " in *" $p "*) continue ;; esac
    if ! port_listening "$p" && [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ]; then
      USED_PORTS="${USED_PORTS:-} $p"
      FREE_PORT=$p
      return 0
    fi
  done
  die "no free port found"
}
wait_listening() { # PID PORT LOG WHAT
  local i
  for ((i = 0; i < 150; i++)); do
    kill -0 "$1" 2>/dev/null || { tail -n 20 "$3" >&2 || true; die "$4 exited at start-up (log above)"; }
    port_listening "$2" && return 0
    sleep 0.1
  done
  tail -n 20 "$3" >&2 || true
  die "$4 is not listening on 127.0.0.1:$2 after 15 s"
}
