#!/usr/bin/env bash
# bench/providers.sh: tlsgate's key providers side by side -- full TLS
# handshakes per proxy-CPU-second, wall rate and latency of `software`,
# `software` under scalar OpenSSL (AVX-512 masked: the seed's no-provider
# baseline), `cryptomb`, optionally `qat` against the fake qatlib and nginx
# as the reference, for RSA-2048 and ECDSA P-256 certificates, TLS 1.3 and
# 1.2, at several client concurrencies, in one interleaved run.
#
# Method as bench/compare.sh (docs/PERFORMANCE.md, "Key providers"; the
# shared machinery is bench/lib.sh): the proxy pinned to one CPU under a
# cgroup-v1 CPU quota, the client (`tlsgate bench --keepalive=false`) and the
# upstream on the other, proxy CPU from cpuacct, per-cell /stats deltas.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
PEER_DIR=$SCRIPT_DIR/peers
TG_LIB_PROG=providers.sh
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$SCRIPT_DIR/lib.sh"

MASK_AVX512=":~0x200000"
SUITE13=TLS_AES_128_GCM_SHA256
CIPHERS12="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
# Client groups. In TLS 1.2 a server may use an ECDSA certificate only on a
# curve the client lists in supported_groups (RFC 8422), so TLS 1.2 clients
# also list P-256; every server offers one group only (TG_PROV_KX, X25519 by
# default), so the key exchange is that group in every cell (check_proc and
# the client's report verify it).
KX=${TG_PROV_KX:-X25519}
case "$KX" in
  X25519) GROUPS12=X25519:P-256 KX_TEMPKEY='Server Temp Key: X25519' KX_SEEN=x25519 ;;
  P-256) GROUPS12=P-256 KX_TEMPKEY='Server Temp Key: ECDH, prime256v1' KX_SEEN=secp256r1 ;;
  *) echo "providers.sh: error: TG_PROV_KX must be X25519 or P-256" >&2; exit 1 ;;
esac
GROUPS13=$KX
KNOWN_VARIANTS="scalar software cryptomb qat nginx"
KNOWN_CERTS="rsa2048 rsa3072 rsa4096 ecdsa-p256"
# The headline cell of issue #3 / #4: RSA-2048, TLS 1.3 (X25519), -c 64.
HEAD_CERT=rsa2048
HEAD_TLS=1.3
HEAD_CONNS=64

usage() {
  cat <<EOF
usage: bench/providers.sh [-h|--help] [--quick] [path/to/tlsgate]
       bench/providers.sh --replot bench/results/providers-TS.json

Runs tlsgate's key providers side by side in one interleaved run and reports,
per certificate x TLS version x client concurrency and per variant: full
handshakes/s, handshakes per proxy-CPU-second, p50/p99 latency, whether the
proxy was saturated, and the providers' batch fill, flushes and fallbacks
from /stats. Writes bench/results/providers-<UTC timestamp>.md, .json and
.png (gnuplot), and prints the markdown.

Default tlsgate binary: \$TLSGATE, else $REPO/build/tlsgate. Needs root
(cgroup-v1 cpu + cpuacct), 2 CPUs, openssl, jq, curl, taskset, ss, gnuplot
(gnuplot-nox), and for the nginx variant nginx-light + libnginx-mod-stream.

Variants (names for TG_PROV_VARIANTS):
  scalar     tlsgate, provider software, under OPENSSL_ia32cap="$MASK_AVX512"
             (AVX-512 masked in OpenSSL: the scalar RSA path, the baseline)
  software   tlsgate, provider software (providers-software.yaml)
  cryptomb   tlsgate, provider cryptomb, fallback false (providers-cryptomb.yaml)
  qat        tlsgate, provider qat against the fake qatlib in
             \$TG_PROV_QAT_LIB_DIR (BUILD/fakes/libqat.so.4), with
             FAKE_QAT_LATENCY_US and FAKE_QAT_CAPACITY; the fake's compute
             thread is moved out of the proxy's cgroup and accounted apart
  nginx      nginx stream module, 1 worker ($PEER_DIR/nginx.conf, as compare.sh)
Default: scalar software cryptomb, plus qat when the fake library exists,
plus nginx when it is installed.

Environment (defaults in brackets; --quick changes the ones marked *):
  TG_PROV_VARIANTS        variants, space or comma separated [see above]
  TG_PROV_CERTS*          certificates: rsa2048 rsa3072 rsa4096 ecdsa-p256 [rsa2048 ecdsa-p256]
  TG_PROV_KX              the one key exchange group every server offers and
                          the client asks for: X25519 or P-256 [X25519]
  TG_PROV_TLS*            TLS versions the client pins: 1.3 1.2 [1.3 1.2]
  TG_PROV_CONNS*          client concurrencies [1 8 64 256]
  TG_PROV_SECONDS*        measured seconds per variant and cell [5]
  TG_PROV_WARMUP*         warmup seconds before each measurement, 0 = none [1]
  TG_PROV_ROUNDS*         interleaved rounds per cell [1]
  TG_PROV_HEADLINE_ROUNDS* rounds of the target cells ($HEAD_CERT, TLS $HEAD_TLS,
                          -c $HEAD_CONNS and -c 1) [3]
  TG_PROV_QUOTA_US        proxy CPU quota per period, 0 = no cap [50000]
  TG_PROV_PERIOD_US       CFS period [100000]
  TG_PROV_PROXY_CPU       CPU of the proxies [1]
  TG_PROV_CLIENT_CPU      CPU of the client and the upstream [0]
  TG_PROV_QAT_LIB_DIR     the fake qatlib [directory of tlsgate]/fakes
  TG_PROV_QAT_LATENCY_US  FAKE_QAT_LATENCY_US [50]
  TG_PROV_QAT_CAPACITY    FAKE_QAT_CAPACITY [64]
  TG_PROV_QAT_CPU         CPU(s) of the fake's compute thread (FAKE_QAT_CPU) [the proxy CPU]
  TG_PROV_CRYPTO*         1 = append 'tlsgate bench-crypto --quick' [1]
  TG_PROV_MAX_MINUTES     stop measuring after this long (the report is still
                          written, marked incomplete) [twice the estimate + 5]
  TG_PROV_OUT             where providers-<ts>.md/.json/.png go [$REPO/bench/results]
  TG_PROV_KEEP_TMP        1 = keep the temporary directory (configs, logs) [0]

--replot FILE.json redraws FILE.png from a report (after changing providers.gp).

--quick (CI smoke, ~1-2 min): TG_PROV_CERTS=rsa2048 TG_PROV_TLS=1.3
TG_PROV_CONNS="1 64" TG_PROV_SECONDS=2 TG_PROV_WARMUP=1 TG_PROV_ROUNDS=1
TG_PROV_HEADLINE_ROUNDS=1 TG_PROV_CRYPTO=0 (explicit settings still win).

Examples:
  bench/providers.sh --quick build-prov/tlsgate
  bench/providers.sh build-prov/tlsgate                      # full run, ~15 min
  TG_PROV_VARIANTS="software cryptomb" TG_PROV_CONNS="64" bench/providers.sh
EOF
}

cert_name() { case "$1" in rsa[0-9]*) echo "RSA-${1#rsa}" ;; ecdsa-p256) echo "ECDSA P-256" ;; *) echo "$1" ;; esac; }

# The plot: handshakes per proxy-CPU-second and p50 vs concurrency, one line
# per variant, one panel per certificate x TLS version, from SUMMARY (the
# "cells" of the JSON report) and VARIANTS, CERTS, TLSV, CONNS, START_UTC,
# PROXY_CPU, QUOTA_PCT. Returns 1 when gnuplot fails.
make_plot() { # OUT.png
  local png=$1 dat=$TMP/plot.dat c t v xvalues
  local -a titles=() colors=()
  : >"$dat"
  for c in "${CERTS[@]}"; do
    for t in "${TLSV[@]}"; do
      titles+=("$(cert_name "$c" | tr ' ' '-')/TLS$t")
      jq -r --arg c "$c" --arg t "$t" --argjson order "$(printf '%s\n' "${VARIANTS[@]}" | jq -R . | jq -s .)" '
        def q: if . == null then "?" else tostring end;
        "# \($c) TLS \($t): conns, hs/proxy-CPU-s x \($order | length), p50 ms x \($order | length), saturated x \($order | length)",
        (map(select(.cert == $c and .tls == $t)) | sort_by(.conns)[] | . as $cell
         | [.conns] + [$order[] | $cell.variants[.].hs_per_proxy_cpu_s | q]
                    + [$order[] | $cell.variants[.].p50_ms | q]
                    + [$order[] | $cell.variants[.] | if .rounds > 0 and .saturated_rounds == .rounds then 1 else 0 end]
         | map(tostring) | join(" "))' <<<"$SUMMARY" >>"$dat"
      printf '\n\n' >>"$dat"
    done
  done
  for v in "${VARIANTS[@]}"; do
    case "$v" in
      scalar) colors+=("#7f7f7f") ;; software) colors+=("#1f77b4") ;; cryptomb) colors+=("#d62728") ;;
      qat) colors+=("#2ca02c") ;; *) colors+=("#ff7f0e") ;;
    esac
  done
  xvalues=$(printf '%s\n' "${CONNS[@]}" | sort -n | paste -sd ' ')
  if ! timeout 60 gnuplot -e "datafile='$dat'; outfile='$png'; variants='${VARIANTS[*]}'; colors='${colors[*]}'; titles='${titles[*]}'; xvalues='$xvalues'; heading='tlsgate key providers: full TLS handshakes ($START_UTC)'; subheading='proxy on CPU $PROXY_CPU at a ${QUOTA_PCT}% quota; filled point = proxy saturated, open = not'" \
    "$SCRIPT_DIR/providers.gp" >"$TMP/gnuplot.log" 2>&1; then
    note "WARNING: gnuplot failed: $(tail -n 5 "$TMP/gnuplot.log")"
    return 1
  fi
}

# ---------------------------------------------------------------------------
# Arguments and settings

QUICK=0
TLSGATE_ARG=""
REPLOT=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --quick) QUICK=1 ;;
    --replot)
      [ $# -ge 2 ] || { usage >&2; exit 2; }
      REPLOT=$2
      shift
      ;;
    -*) usage >&2; exit 2 ;;
    *) [ -z "$TLSGATE_ARG" ] || { usage >&2; exit 2; }; TLSGATE_ARG=$1 ;;
  esac
  shift
done
TLSGATE=${TLSGATE_ARG:-${TLSGATE:-$REPO/build/tlsgate}}

# --replot FILE.json: redraw FILE.png from a report's JSON (no measurement).
if [ -n "$REPLOT" ]; then
  command -v gnuplot >/dev/null || die "'gnuplot' is not installed (Debian: gnuplot-nox)"
  jq -e '.tool == "bench/providers.sh"' "$REPLOT" >/dev/null 2>&1 || die "$REPLOT: not a bench/providers.sh JSON report"
  KEEP_TMP=0 BG_PIDS=() CGROUPS=()
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/tg-providers.XXXXXX")
  trap cleanup EXIT
  read -r -a VARIANTS <<<"$(jq -r '.variants | join(" ")' "$REPLOT")"
  read -r -a CERTS <<<"$(jq -r '.settings.certs | join(" ")' "$REPLOT")"
  read -r -a TLSV <<<"$(jq -r '.settings.tls | join(" ")' "$REPLOT")"
  read -r -a CONNS <<<"$(jq -r '.settings.conns | map(tostring) | join(" ")' "$REPLOT")"
  SUMMARY=$(jq '.cells' "$REPLOT")
  START_UTC=$(jq -r '.start_time' "$REPLOT")
  PROXY_CPU=$(jq -r '.settings.proxy_cpu' "$REPLOT")
  QUOTA_PCT=$(jq -r '.settings | if .quota_us > 0 then 100 * .quota_us / .period_us | round else 100 end' "$REPLOT")
  make_plot "${REPLOT%.json}.png" || exit 1
  note "wrote ${REPLOT%.json}.png"
  exit 0
fi

if [ "$QUICK" = 1 ]; then
  d_certs=rsa2048 d_tls=1.3 d_conns="1 64" d_secs=2 d_warm=1 d_rounds=1 d_head=1 d_crypto=0
else
  d_certs="rsa2048 ecdsa-p256" d_tls="1.3 1.2" d_conns="1 8 64 256" d_secs=5 d_warm=1 d_rounds=1 d_head=3 d_crypto=1
fi
read -r -a CERTS <<<"$(echo "${TG_PROV_CERTS:-$d_certs}" | tr ',' ' ')"
read -r -a TLSV <<<"$(echo "${TG_PROV_TLS:-$d_tls}" | tr ',' ' ')"
read -r -a CONNS <<<"$(echo "${TG_PROV_CONNS:-$d_conns}" | tr ',' ' ')"
MEASURE_S=${TG_PROV_SECONDS:-$d_secs}
WARMUP_S=${TG_PROV_WARMUP:-$d_warm}
ROUNDS=${TG_PROV_ROUNDS:-$d_rounds}
HEAD_ROUNDS=${TG_PROV_HEADLINE_ROUNDS:-$d_head}
CRYPTO=${TG_PROV_CRYPTO:-$d_crypto}
QUOTA_US=${TG_PROV_QUOTA_US:-50000}
PERIOD_US=${TG_PROV_PERIOD_US:-100000}
PROXY_CPU=${TG_PROV_PROXY_CPU:-1}
CLIENT_CPU=${TG_PROV_CLIENT_CPU:-0}
QAT_LATENCY_US=${TG_PROV_QAT_LATENCY_US:-50}
QAT_CAPACITY=${TG_PROV_QAT_CAPACITY:-64}
QAT_CPU=${TG_PROV_QAT_CPU:-$PROXY_CPU}
OUT_DIR=${TG_PROV_OUT:-$REPO/bench/results}
KEEP_TMP=${TG_PROV_KEEP_TMP:-0}

for pair in TG_PROV_SECONDS:MEASURE_S TG_PROV_WARMUP:WARMUP_S TG_PROV_ROUNDS:ROUNDS \
  TG_PROV_HEADLINE_ROUNDS:HEAD_ROUNDS TG_PROV_QUOTA_US:QUOTA_US TG_PROV_PERIOD_US:PERIOD_US \
  TG_PROV_PROXY_CPU:PROXY_CPU TG_PROV_CLIENT_CPU:CLIENT_CPU \
  TG_PROV_QAT_LATENCY_US:QAT_LATENCY_US TG_PROV_QAT_CAPACITY:QAT_CAPACITY; do
  v=${pair#*:}
  is_uint "${!v}" || die "${pair%%:*} must be a non-negative integer, got '${!v}'"
done
[ "$MEASURE_S" -ge 1 ] || die "TG_PROV_SECONDS must be >= 1"
[ "$ROUNDS" -ge 1 ] || die "TG_PROV_ROUNDS must be >= 1"
[ "$HEAD_ROUNDS" -ge 1 ] || die "TG_PROV_HEADLINE_ROUNDS must be >= 1"
check_cg_settings TG_PROV
[[ $QAT_CPU =~ ^[0-9]+(,[0-9]+)*$ ]] || die "TG_PROV_QAT_CPU must be a CPU list such as 1 or 0,1"
case "$CRYPTO" in 0 | 1) ;; *) die "TG_PROV_CRYPTO must be 0 or 1" ;; esac
if [ "${#CERTS[@]}" -eq 0 ] || [ "${#TLSV[@]}" -eq 0 ] || [ "${#CONNS[@]}" -eq 0 ]; then
  die "TG_PROV_CERTS, TG_PROV_TLS and TG_PROV_CONNS must not be empty"
fi
for c in "${CERTS[@]}"; do
  case " $KNOWN_CERTS " in *" $c "*) ;; *) die "unknown certificate '$c' (known: $KNOWN_CERTS)" ;; esac
done
for t in "${TLSV[@]}"; do
  case "$t" in 1.2 | 1.3) ;; *) die "unknown TLS version '$t' (1.2 or 1.3)" ;; esac
done
for c in "${CONNS[@]}"; do
  if ! is_uint "$c" || [ "$c" -lt 1 ] || [ "$c" -gt 10000 ]; then
    die "bad concurrency '$c' in TG_PROV_CONNS (1..10000)"
  fi
done

# ---------------------------------------------------------------------------
# Preflight: fail loudly, before anything is started

[ "$(id -u)" -eq 0 ] || die "needs root (cgroup-v1 CPU quota under /sys/fs/cgroup)"
for t in jq:jq openssl:openssl curl:curl taskset:util-linux ss:iproute2 awk:mawk \
  getconf:libc-bin gnuplot:gnuplot-nox timeout:coreutils; do
  command -v "${t%%:*}" >/dev/null || die "'${t%%:*}' is not installed (Debian: ${t#*:})"
done
[ -x "$TLSGATE" ] || die "no tlsgate binary at '$TLSGATE' (build it, or give the path)"
TLSGATE=$(cd "$(dirname "$TLSGATE")" && pwd)/$(basename "$TLSGATE")
BUILD_DIR=$(dirname "$TLSGATE")
QAT_LIB_DIR=${TG_PROV_QAT_LIB_DIR:-$BUILD_DIR/fakes}
require_cgroup_v1
require_cpus_online "$PROXY_CPU" "$CLIENT_CPU"

have_nginx() { command -v nginx >/dev/null && [ -e /usr/lib/nginx/modules/ngx_stream_module.so ]; }
have_fake_qat() { [ -e "$QAT_LIB_DIR/libqat.so.4" ] && [ -e "$QAT_LIB_DIR/libusdm.so.0" ]; }
declare -a SKIPPED_NOTES=()
if [ -n "${TG_PROV_VARIANTS:-}" ]; then
  read -r -a VARIANTS <<<"$(echo "$TG_PROV_VARIANTS" | tr ',' ' ')"
else
  VARIANTS=(scalar software cryptomb)
  if have_fake_qat; then VARIANTS+=(qat); else
    SKIPPED_NOTES+=("qat: no fake qatlib at $QAT_LIB_DIR (libqat.so.4 + libusdm.so.0; build the fake, or set TG_PROV_QAT_LIB_DIR)")
  fi
  if have_nginx; then VARIANTS+=(nginx); else
    SKIPPED_NOTES+=("nginx: not installed (Debian: nginx-light libnginx-mod-stream)")
  fi
fi
[ "${#VARIANTS[@]}" -ge 1 ] || die "TG_PROV_VARIANTS is empty"
seen=" "
for v in "${VARIANTS[@]}"; do
  case " $KNOWN_VARIANTS " in *" $v "*) ;; *) die "unknown variant '$v' (known: $KNOWN_VARIANTS)" ;; esac
  case "$seen" in *" $v "*) die "variant '$v' given twice" ;; esac
  seen="$seen$v "
  case "$v" in
    nginx) have_nginx || die "nginx: not installed (Debian: nginx-light libnginx-mod-stream)" ;;
    qat) have_fake_qat || die "qat: no fake qatlib at $QAT_LIB_DIR (libqat.so.4, libusdm.so.0; set TG_PROV_QAT_LIB_DIR)" ;;
  esac
done
has_variant() { case " ${VARIANTS[*]} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
variant_kind() { case "$1" in nginx) echo nginx ;; *) echo tlsgate ;; esac; }
variant_provider() { # the provider label in /stats
  case "$1" in scalar | software) echo software ;; nginx) echo "" ;; *) echo "$1" ;; esac
}
variant_yaml() { case "$1" in scalar | software) echo providers-software.yaml ;; *) echo "providers-$1.yaml" ;; esac; }

# Cells: certificate x TLS version x concurrency, and their rounds.
declare -a CELLS=()
for c in "${CERTS[@]}"; do for t in "${TLSV[@]}"; do for n in "${CONNS[@]}"; do CELLS+=("$c/$t/$n"); done; done; done
# The target cells (the headline and its -c 1 latency cell) get more rounds.
cell_rounds() {
  if { [ "$1" = "$HEAD_CERT/$HEAD_TLS/$HEAD_CONNS" ] || [ "$1" = "$HEAD_CERT/$HEAD_TLS/1" ]; } &&
    [ "$HEAD_ROUNDS" -gt "$ROUNDS" ]; then
    echo "$HEAD_ROUNDS"
  else echo "$ROUNDS"; fi
}
NMEAS=0
for cell in "${CELLS[@]}"; do NMEAS=$((NMEAS + $(cell_rounds "$cell") * ${#VARIANTS[@]})); done
# ~1 s per measurement for the client start, the scrapes and the bookkeeping.
EST_S=$((NMEAS * (MEASURE_S + WARMUP_S + 1) + 10 * ${#VARIANTS[@]} * ${#CERTS[@]} / 3 + 15 * CRYPTO))
MAX_MIN=${TG_PROV_MAX_MINUTES:-$((2 * EST_S / 60 + 5))}
if ! is_uint "$MAX_MIN" || [ "$MAX_MIN" -lt 1 ]; then die "TG_PROV_MAX_MINUTES must be a positive integer"; fi

# ---------------------------------------------------------------------------
# State and cleanup (bench/lib.sh: cleanup kills every PID, empties and
# removes every cgroup, removes TMP)

RUN_ID="tg-prov-$$"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tg-providers.XXXXXX")
chmod 755 "$TMP"
declare -a BG_PIDS=() CGROUPS=()
declare -A PROC_PID=() PROC_PORT=() PROC_ADMIN=() PROC_CG=() PROC_FAKE_CG=() PROC_FAKE_TIDS=()
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

START_UTC=$(date -u +%Y-%m-%dT%H:%M:%SZ)
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
START_S=$(date +%s)
DEADLINE_S=$((START_S + MAX_MIN * 60))
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
note "temporary directory $TMP"
note "variants: ${VARIANTS[*]}; ${#CELLS[@]} cells, $NMEAS measurements, about $((EST_S / 60 + 1)) min (hard stop after $MAX_MIN min)"
for s in "${SKIPPED_NOTES[@]}"; do note "left out $s"; done

# ---------------------------------------------------------------------------
# Certificates (made for this run), upstream, client group

make_cert() { # NAME
  local name=$1 dir=$TMP/certs/$1
  mkdir -p "$dir"
  local -a keyopt
  case "$name" in
    rsa[0-9]*) keyopt=(-newkey "rsa:${name#rsa}") ;;
    ecdsa-p256) keyopt=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
  esac
  openssl req -x509 "${keyopt[@]}" -nodes -sha256 -days 2 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" >"$dir/req.log" 2>&1 ||
    { cat "$dir/req.log" >&2; die "cannot make the $name certificate"; }
  chmod 644 "$dir/key.pem" # a throwaway key; nginx's worker runs as nobody
}
for c in "${CERTS[@]}"; do make_cert "$c"; done
chmod -R a+rX "$TMP/certs"

free_port
UPSTREAM_PORT=$FREE_PORT
cg_make upstream -1
start_in_cg "$CG_MADE" "$CLIENT_CPU" "$TMP/upstream.log" \
  "$TLSGATE" bench --serve "127.0.0.1:$UPSTREAM_PORT" --quiet
BG_PIDS+=("$STARTED_PID")
wait_listening "$STARTED_PID" "$UPSTREAM_PORT" "$TMP/upstream.log" "the upstream (tlsgate bench --serve)"
cg_make client -1
CLIENT_CG=$CG_MADE

# ---------------------------------------------------------------------------
# Proxies: one process per variant and certificate, each in its own cgroup
# (quota), all running for the whole run (idle ones cost nothing).

render() { # TEMPLATE OUT DIR PORT ADMIN_PORT CERT
  sed -e "s|@DIR@|$3|g" -e "s|@PORT@|$4|g" -e "s|@ADMIN_PORT@|$5|g" \
    -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" \
    -e "s|@CERT@|$TMP/certs/$6/cert.pem|g" -e "s|@KEY@|$TMP/certs/$6/key.pem|g" \
    -e "s|groups: \[X25519\]|groups: [$KX]|" -e "s|ssl_ecdh_curve\( *\)X25519;|ssl_ecdh_curve\1$KX;|" "$1" >"$2"
  if grep -q '@[A-Z_]*@' "$2"; then die "unfilled placeholder in $2"; fi
}

# Per-thread CPU of a cgroup, in clock ticks: the threads in its `tasks`
# (/proc/TGID/task/TID/stat; /proc/TID/stat would count the whole process,
# the fake qatlib's thread included).
cg_task_ticks() { # CGROUP
  local tid tgid sum=0 t
  while read -r tid; do
    tgid=$(awk '$1 == "Tgid:" { print $2 }' "/proc/$tid/status" 2>/dev/null) || tgid=""
    [ -n "$tgid" ] || continue
    t=$(sed 's/^.*) //' "/proc/$tgid/task/$tid/stat" 2>/dev/null | awk '{ print $12 + $13 }') || t=0
    sum=$((sum + ${t:-0}))
  done <"$CG_ACCT_ROOT/$1/tasks"
  echo "$sum"
}

# The fake qatlib computes on its own thread(s) inside tlsgate; it writes
# their kernel thread ids to FAKE_QAT_STATS_FILE ("compute_tids 123,124").
# They go to a cgroup of their own, without a quota: the proxy's quota and
# cpuacct then hold only tlsgate's threads, and the fake's CPU is counted
# apart (cpuacct of its group, cross-checked with /proc/PID/task/TID/stat).
adopt_fake_threads() { # PROC STATSFILE
  local proc=$1 sf=$2 tids="" i tid
  for ((i = 0; i < 100; i++)); do
    tids=$(awk '$1 == "compute_tids" { print $2 }' "$sf" 2>/dev/null || true)
    [ -n "$tids" ] && break
    sleep 0.1
  done
  [ -n "$tids" ] || die "$proc: the fake qatlib wrote no compute_tids to $sf"
  cg_make "$proc-fake" -1
  PROC_FAKE_CG[$proc]=$CG_MADE
  PROC_FAKE_TIDS[$proc]=${tids//,/ }
  for tid in ${tids//,/ }; do
    [ -d "/proc/${PROC_PID[$proc]}/task/$tid" ] || die "$proc: fake compute thread $tid is not a thread of pid ${PROC_PID[$proc]}"
    echo "$tid" >"$CG_CPU_ROOT/$CG_MADE/tasks"
    echo "$tid" >"$CG_ACCT_ROOT/$CG_MADE/tasks"
  done
}
fake_ticks() { # PROC
  local tid sum=0 t
  for tid in ${PROC_FAKE_TIDS[$1]}; do
    t=$(sed 's/^.*) //' "/proc/${PROC_PID[$1]}/task/$tid/stat" 2>/dev/null | awk '{ print $12 + $13 }') || t=0
    sum=$((sum + ${t:-0}))
  done
  echo "$sum"
}

start_proc() { # VARIANT CERT
  local v=$1 cert=$2 proc="$1-$2" dir port admin=0 conf quota=-1
  dir=$TMP/proc/$proc
  mkdir -p "$dir"
  chmod 755 "$dir"
  free_port
  port=$FREE_PORT
  [ "$QUOTA_US" -eq 0 ] || quota=$QUOTA_US
  cg_make "$proc" "$quota"
  PROC_CG[$proc]=$CG_MADE
  local -a env_args=() cmd=()
  case "$(variant_kind "$v")" in
    nginx)
      conf=$dir/nginx.conf
      render "$PEER_DIR/nginx.conf" "$conf" "$dir" "$port" 0 "$cert"
      cmd=(nginx -p "$dir/" -e "$dir/nginx-error.log" -c "$conf")
      ;;
    tlsgate)
      free_port
      admin=$FREE_PORT
      conf=$dir/tlsgate.yaml
      render "$PEER_DIR/$(variant_yaml "$v")" "$conf" "$dir" "$port" "$admin" "$cert"
      [ "$v" != scalar ] || env_args+=("OPENSSL_ia32cap=$MASK_AVX512")
      if [ "$v" = qat ]; then
        env_args+=("LD_LIBRARY_PATH=$QAT_LIB_DIR" "FAKE_QAT_LATENCY_US=$QAT_LATENCY_US"
          "FAKE_QAT_CAPACITY=$QAT_CAPACITY" "FAKE_QAT_CPU=$QAT_CPU")
      fi
      env "${env_args[@]}" "$TLSGATE" check-config "$conf" >"$dir/check-config.log" 2>&1 ||
        { cat "$dir/check-config.log" >&2; die "$proc: invalid configuration, or the provider cannot run"; }
      [ "$v" != qat ] || env_args+=("FAKE_QAT_STATS_FILE=$dir/fake-qat.stats")
      cmd=("$TLSGATE" run --config "$conf" --pid-file "$dir/tlsgate.pid")
      ;;
  esac
  start_in_cg "$CG_MADE" "$PROXY_CPU" "$dir/output.log" env "${env_args[@]}" "${cmd[@]}"
  BG_PIDS+=("$STARTED_PID")
  PROC_PID[$proc]=$STARTED_PID
  PROC_PORT[$proc]=$port
  PROC_ADMIN[$proc]=$admin
  wait_listening "$STARTED_PID" "$port" "$dir/output.log" "$proc"
  [ "$v" != qat ] || adopt_fake_threads "$proc" "$dir/fake-qat.stats"
}

# One request per TLS version with openssl s_client: HTTP 200, X25519, the
# expected suite, and no session tickets.
check_proc() { # PROC CERT
  local proc=$1 cert=$2 port=${PROC_PORT[$1]} t log want
  local -a vopt
  for t in "${TLSV[@]}"; do
    log=$TMP/proc/$proc/s_client-$t.log
    if [ "$t" = 1.3 ]; then
      vopt=(-tls1_3 -ciphersuites "$SUITE13" -groups "$GROUPS13")
      want=$SUITE13
    else
      vopt=(-tls1_2 -cipher "$CIPHERS12" -groups "$GROUPS12")
      case "$cert" in rsa*) want=ECDHE-RSA-AES128-GCM-SHA256 ;; *) want=ECDHE-ECDSA-AES128-GCM-SHA256 ;; esac
    fi
    printf 'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
      timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername localhost \
        "${vopt[@]}" -msg -ign_eof >"$log" 2>&1 || true
    grep -q '^HTTP/1.1 200' "$log" || { tail -n 30 "$log" >&2; die "$proc: no HTTP 200 over TLS $t"; }
    grep -q "$KX_TEMPKEY" "$log" || die "$proc: TLS $t did not negotiate $KX ($log)"
    grep -q "Cipher is $want" "$log" || die "$proc: TLS $t did not negotiate $want ($log)"
    if grep -q '^<<< .*NewSessionTicket' "$log"; then die "$proc: sends session tickets over TLS $t ($log)"; fi
  done
}

for v in "${VARIANTS[@]}"; do
  for c in "${CERTS[@]}"; do
    start_proc "$v" "$c"
    check_proc "$v-$c" "$c"
    note "started $v-$c: pid ${PROC_PID[$v-$c]}, 127.0.0.1:${PROC_PORT[$v-$c]}$([ "${PROC_ADMIN[$v-$c]}" = 0 ] || echo ", admin :${PROC_ADMIN[$v-$c]}")$([ -z "${PROC_FAKE_TIDS[$v-$c]:-}" ] || echo ", fake qatlib thread(s) ${PROC_FAKE_TIDS[$v-$c]} in their own cgroup")"
  done
done

# ---------------------------------------------------------------------------
# Measurements

# nginx's stream module does not close first (it waits for the client's
# close_notify): there the client closes at once (--close=client, a plain FIN
# as hey does) instead of waiting 8 x 200 ms before switching (--close=auto),
# which would eat a third of a 5 s run at -c 1.
run_client() { # PORT TLS CONNS SECONDS JSON LOG CLOSE -> the client's exit status
  local port=$1 tls=$2 conns=$3 secs=$4 json=$5 log=$6 close=$7 rc=0
  local -a sopt
  if [ "$tls" = 1.3 ]; then
    sopt=(--groups "$GROUPS13" --ciphersuites "$SUITE13")
  else
    sopt=(--groups "$GROUPS12" --ciphers "$CIPHERS12")
  fi
  start_in_cg "$CLIENT_CG" "$CLIENT_CPU" "$log" timeout --kill-after=5 "$((secs + 60))" \
    "$TLSGATE" bench -k -c "$conns" -t "${secs}s" --keepalive=false --tls-version "$tls" \
    "${sopt[@]}" --close "$close" --quiet --json "$json" "https://127.0.0.1:$port/"
  BG_PIDS+=("$STARTED_PID")
  wait "$STARTED_PID" || rc=$?
  unset 'BG_PIDS[${#BG_PIDS[@]}-1]'
  return "$rc"
}

# /stats (Prometheus text) -> {"series{labels}": value} JSON.
scrape() { # PROC OUT
  local port=${PROC_ADMIN[$1]}
  if [ "$port" = 0 ]; then echo '{}' >"$2"; return 0; fi
  if ! curl -sS --max-time 5 "http://127.0.0.1:$port/stats" 2>"$2.err" |
    awk '!/^#/ && NF == 2 { print $1 "\t" $2 }' |
    jq -R -s 'split("\n") | map(select(length > 0) | split("\t")
              | {(.[0]): (.[1] | tonumber? // null)}) | add // {}' >"$2"; then
    note "WARNING: $1: /stats scrape failed: $(cat "$2.err")"
    echo '{}' >"$2"
  fi
}

# What a measurement's /stats deltas say (tlsgate variants), given the two
# scrapes as $a (before) and $b (after) and the provider label $p.
# shellcheck disable=SC2016 # a jq program: its $ are jq variables
STATS_JQ='
  def d($k): (($b[$k] // 0) - ($a[$k] // 0));
  def dsum(re): [$b | to_entries[] | select(.key | test(re)) | .value - ($a[.key] // 0)] | add // 0;
  if ($b | length) == 0 then null else
  ("{provider=\"" + $p + "\"") as $pl
  | {server_handshakes_ok: d("tlsgate_handshakes_total{result=\"ok\"}"),
     server_handshakes_failed: dsum("^tlsgate_handshakes_total\\{result=\"(?!ok\")"),
     ops_by_provider: ([$b | keys[] | select(startswith("tlsgate_keyprov_operations_total{"))
                        | capture("provider=\"(?<p>[^\"]+)\",type=\"(?<t>[^\"]+)\"") as $m
                        | {p: $m.p, v: d(.)}] | group_by(.p)
                        | map({(.[0].p): (map(.v) | add)}) | add // {}),
     batch_sum: d("tlsgate_keyprov_batch_size_sum" + $pl + "}"),
     batch_count: d("tlsgate_keyprov_batch_size_count" + $pl + "}"),
     flushes: ([$b | keys[] | select(startswith("tlsgate_keyprov_flushes_total" + $pl + ","))
                | capture("reason=\"(?<r>[^\"]+)\"").r as $r | {($r): d(.)}] | add // {}),
     fallbacks: ([$b | keys[] | select(startswith("tlsgate_keyprov_fallbacks_total{"))
                  | capture("provider=\"(?<p>[^\"]+)\",reason=\"(?<r>[^\"]+)\"") as $m
                  | select(d(.) != 0) | {("\($m.p):\($m.r)"): d(.)}] | add // {}),
     fallbacks_total: dsum("^tlsgate_keyprov_fallbacks_total\\{"),
     ops_failed: dsum("^tlsgate_keyprov_operations_failed_total\\{"),
     queue_wait_sum_s: d("tlsgate_keyprov_queue_wait_seconds_sum" + $pl + "}"),
     queue_wait_count: d("tlsgate_keyprov_queue_wait_seconds_count" + $pl + "}"),
     key_pool_level: ($b["tlsgate_keyprov_key_pool_level" + $pl + "}"] // null),
     qat: (if $p != "qat" then null else
       {submitted: dsum("^tlsgate_qat_requests_submitted_total\\{"),
        completed: dsum("^tlsgate_qat_requests_completed_total\\{"),
        retried: dsum("^tlsgate_qat_requests_retried_total\\{"),
        spilled: dsum("^tlsgate_qat_spilled_total\\{"),
        failed: dsum("^tlsgate_qat_requests_failed_total\\{"),
        late: dsum("^tlsgate_qat_late_completions_total\\{"),
        polls: dsum("^tlsgate_qat_polls_total\\{"),
        empty_polls: dsum("^tlsgate_qat_polls_empty_total\\{"),
        latency_sum_s: dsum("^tlsgate_qat_latency_seconds_sum\\{"),
        latency_count: dsum("^tlsgate_qat_latency_seconds_count\\{")} end)}
  end'

ROUNDS_JSONL=$TMP/runs.jsonl
: >"$ROUNDS_JSONL"
QUOTA_FRAC=$(awk -v q="$QUOTA_US" -v p="$PERIOD_US" 'BEGIN { print (q > 0 ? q / p : 1) }')
INCOMPLETE=""

measure() { # VARIANT CELL ROUND
  local v=$1 cell=$2 round=$3 cert tls conns proc cg fcg="" base rc=0 close=auto
  [ "$v" != nginx ] || close=client
  IFS=/ read -r cert tls conns <<<"$cell"
  proc="$v-$cert"
  cg=${PROC_CG[$proc]}
  fcg=${PROC_FAKE_CG[$proc]:-}
  base=$TMP/proc/$proc/$tls-c$conns-r$round
  if [ "$WARMUP_S" -gt 0 ]; then
    run_client "${PROC_PORT[$proc]}" "$tls" "$conns" "$WARMUP_S" "$base-warmup.json" "$base-warmup.log" "$close" ||
      { tail -n 20 "$base-warmup.log" >&2; die "$proc: warmup run failed ($cell)"; }
  fi
  scrape "$proc" "$base-stats0.json"
  local a0 a1 k0 k1 n0 n1 th0 th1 c0 c1 t0 t1 b0 b1 d0 d1 f0=0 f1=0 fk0=0 fk1=0
  a0=$(cg_usage_ns "$cg"); k0=$(cg_task_ticks "$cg")
  n0=$(cg_stat "$cg" nr_periods); th0=$(cg_stat "$cg" nr_throttled)
  if [ -n "$fcg" ]; then f0=$(cg_usage_ns "$fcg"); fk0=$(fake_ticks "$proc"); fi
  c0=$(cg_usage_ns "$CLIENT_CG"); b0=$(cpu_busy_ticks "$PROXY_CPU"); d0=$(cpu_busy_ticks "$CLIENT_CPU")
  t0=$(now_ns)
  run_client "${PROC_PORT[$proc]}" "$tls" "$conns" "$MEASURE_S" "$base.json" "$base.log" "$close" || rc=$?
  t1=$(now_ns); b1=$(cpu_busy_ticks "$PROXY_CPU"); d1=$(cpu_busy_ticks "$CLIENT_CPU")
  c1=$(cg_usage_ns "$CLIENT_CG")
  a1=$(cg_usage_ns "$cg"); k1=$(cg_task_ticks "$cg")
  n1=$(cg_stat "$cg" nr_periods); th1=$(cg_stat "$cg" nr_throttled)
  if [ -n "$fcg" ]; then f1=$(cg_usage_ns "$fcg"); fk1=$(fake_ticks "$proc"); fi
  scrape "$proc" "$base-stats1.json"
  if [ "$rc" -ne 0 ] || [ ! -s "$base.json" ]; then
    tail -n 20 "$base.log" >&2 || true
    note "WARNING: $proc $cell round $round: the client failed (exit $rc); recorded as failed"
    jq -nc --arg v "$v" --arg cert "$cert" --arg tls "$tls" --argjson conns "$conns" \
      --argjson round "$round" --argjson rc "$rc" \
      '{variant: $v, cert: $cert, tls: $tls, conns: $conns, round: $round, failed: true, client_exit: $rc}' \
      >>"$ROUNDS_JSONL"
    return 0
  fi
  jq -c --arg v "$v" --arg cert "$cert" --arg tls "$tls" --argjson conns "$conns" \
    --argjson round "$round" --arg p "$(variant_provider "$v")" \
    --argjson cpu_ns "$((a1 - a0))" --argjson ticks "$((k1 - k0))" --argjson tck "$CLK_TCK" \
    --argjson fake_ns "$((f1 - f0))" --argjson fake_ticks "$((fk1 - fk0))" \
    --argjson wall_ns "$((t1 - t0))" --argjson client_ns "$((c1 - c0))" \
    --argjson periods "$((n1 - n0))" --argjson throttled "$((th1 - th0))" \
    --argjson busy1 "$((b1 - b0))" --argjson busy0 "$((d1 - d0))" \
    --argjson quota_frac "$QUOTA_FRAC" \
    --slurpfile s0 "$base-stats0.json" --slurpfile s1 "$base-stats1.json" "
    (\$s0[0]) as \$a | (\$s1[0]) as \$b
    | (.handshakes.full) as \$hs
    | (\$cpu_ns / 1e9) as \$cpu | (\$fake_ns / 1e9) as \$fake | (\$wall_ns / 1e9) as \$wall
    | {variant: \$v, cert: \$cert, tls: \$tls, conns: \$conns, round: \$round, failed: false,
       calls: .calls, ok: .ok, errors: .errors.total, first_errors: (.first_errors // {}),
       handshakes_full: \$hs, handshakes_resumed: .handshakes.resumed,
       client_elapsed_s: .elapsed_s, wall_s: \$wall, qps: .qps, hs_per_s: (.handshakes.per_second // .qps),
       p50_ms: .latency_ms.p50, p99_ms: .latency_ms.p99,
       proxy_cpu_s: \$cpu, proxy_cpu_s_proc: (\$ticks / \$tck),
       fake_cpu_s: (if \$fake_ns > 0 then \$fake else null end),
       fake_cpu_s_proc: (if \$fake_ns > 0 then \$fake_ticks / \$tck else null end),
       hs_per_proxy_cpu_s: (if \$cpu > 0 then \$hs / \$cpu else 0 end),
       hs_per_cpu_s_incl_fake: (if \$fake_ns > 0 and (\$cpu + \$fake) > 0 then \$hs / (\$cpu + \$fake) else null end),
       proxy_cpu_pct: (100 * \$cpu / \$wall),
       fake_cpu_pct: (if \$fake_ns > 0 then 100 * \$fake / \$wall else null end),
       quota_pct: (100 * \$quota_frac),
       throttled_pct: (if \$periods > 0 then 100 * \$throttled / \$periods else 0 end),
       saturated: (\$cpu / \$wall >= 0.9 * \$quota_frac),
       client_cpu_pct: (100 * \$client_ns / 1e9 / \$wall),
       proxy_cpu_busy_all_pct: ([100, 100 * \$busy1 / \$tck / \$wall] | min),
       client_cpu_busy_all_pct: ([100, 100 * \$busy0 / \$tck / \$wall] | min),
       server_no_close: (.closes.client_after_wait // 0),
       tls_seen: ((.tls // []) | map(\"\(.version) \(.cipher) \(.group)\") | join(\", \")),
       stats: ($STATS_JQ)}
    " "$base.json" >>"$ROUNDS_JSONL"
  jq -r --arg v "$v" --arg cell "$cell" 'select(.variant == $v and "\(.cert)/\(.tls)/\(.conns)" == $cell) | select(.round == ($r | tonumber))
    | "\($v) \($cell) r\(.round): \(.handshakes_full) hs, \(.hs_per_proxy_cpu_s | floor) hs/proxy-CPU-s, \(.hs_per_s | floor) hs/s, p50 \(.p50_ms) ms, proxy CPU \(.proxy_cpu_pct | floor)%"
      + (if .fake_cpu_pct != null then " (+ fake \(.fake_cpu_pct | floor)%)" else "" end)
      + (if (.stats.batch_count // 0) > 0 then ", batch \(.stats.batch_sum / .stats.batch_count * 10 | round / 10)" else "" end)
      + (if .errors > 0 then ", \(.errors) ERRORS" else "" end)' \
    --arg r "$round" "$ROUNDS_JSONL" >&2
}

nvar=${#VARIANTS[@]}
ci=0
for cell in "${CELLS[@]}"; do
  nr=$(cell_rounds "$cell")
  for ((r = 1; r <= nr; r++)); do
    # Round-robin, starting one variant further each time (no fixed position).
    for ((i = 0; i < nvar; i++)); do
      if [ "$(date +%s)" -ge "$DEADLINE_S" ]; then
        INCOMPLETE="stopped after $MAX_MIN min (TG_PROV_MAX_MINUTES) before $cell round $r"
        break 3
      fi
      measure "${VARIANTS[$(((i + ci + r - 1) % nvar))]}" "$cell" "$r"
    done
  done
  ci=$((ci + 1))
done
[ -z "$INCOMPLETE" ] || note "WARNING: $INCOMPLETE"
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
END_UTC=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# The microbenchmark, on the proxy CPU (no quota), after the measurements.
CRYPTO_TXT=""
if [ "$CRYPTO" = 1 ]; then
  note "running tlsgate bench-crypto --quick on CPU $PROXY_CPU"
  if ! CRYPTO_TXT=$(timeout --kill-after=5 300 taskset -c "$PROXY_CPU" "$TLSGATE" bench-crypto --quick 2>"$TMP/bench-crypto.err"); then
    CRYPTO_TXT="(tlsgate bench-crypto --quick failed: $(tail -n 3 "$TMP/bench-crypto.err"))"
  fi
fi

# ---------------------------------------------------------------------------
# Summary per cell and variant: medians over the rounds that did not fail.

SUMMARY=$(jq -s --argjson order "$(printf '%s\n' "${VARIANTS[@]}" | jq -R . | jq -s .)" \
  --argjson cells "$(printf '%s\n' "${CELLS[@]}" | jq -R . | jq -s .)" '
  def median: sort | if length == 0 then null
    elif length % 2 == 1 then .[length / 2 | floor]
    else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def msum(f): map(f // 0) | add // 0;
  . as $all
  | [ $cells[] as $cell
      | ($cell | split("/")) as $c
      | {cert: $c[0], tls: $c[1], conns: ($c[2] | tonumber),
         variants: ([ $order[] as $v
           | ($all | map(select(.variant == $v and .cert == $c[0] and .tls == $c[1]
                               and .conns == ($c[2] | tonumber)))) as $mine
           | ($mine | map(select(.failed == false))) as $ok
           | {(($v)): {
               rounds: ($ok | length), failed_rounds: ($mine | map(select(.failed)) | length),
               hs_per_proxy_cpu_s: ($ok | map(.hs_per_proxy_cpu_s) | median),
               hs_per_proxy_cpu_s_min: ($ok | map(.hs_per_proxy_cpu_s) | min),
               hs_per_proxy_cpu_s_max: ($ok | map(.hs_per_proxy_cpu_s) | max),
               hs_per_proxy_cpu_s_proc: ($ok | map(select(.proxy_cpu_s_proc > 0) | .handshakes_full / .proxy_cpu_s_proc) | median),
               hs_per_cpu_s_incl_fake: ($ok | map(.hs_per_cpu_s_incl_fake | select(. != null)) | median),
               hs_per_s: ($ok | map(.hs_per_s) | median),
               p50_ms: ($ok | map(.p50_ms) | median), p99_ms: ($ok | map(.p99_ms) | median),
               proxy_cpu_pct: ($ok | map(.proxy_cpu_pct) | median),
               fake_cpu_pct: ($ok | map(.fake_cpu_pct | select(. != null)) | median),
               client_cpu_pct: ($ok | map(.client_cpu_pct) | median),
               proxy_cpu_busy_all_pct: ($ok | map(.proxy_cpu_busy_all_pct) | median),
               client_cpu_busy_all_pct: ($ok | map(.client_cpu_busy_all_pct) | median),
               throttled_pct: ($ok | map(.throttled_pct) | median),
               saturated_rounds: ($ok | map(select(.saturated)) | length),
               errors: ($ok | msum(.errors)), calls: ($ok | msum(.calls)),
               server_no_close: ($ok | msum(.server_no_close)),
               server_handshakes_failed: ($ok | msum(.stats.server_handshakes_failed)),
               batch_mean: (($ok | msum(.stats.batch_sum)) as $s | ($ok | msum(.stats.batch_count)) as $n
                            | if $n > 0 then $s / $n else null end),
               batches: ($ok | msum(.stats.batch_count)),
               flushes: ([$ok[] | .stats.flushes // {} | to_entries[]] | group_by(.key)
                         | map({(.[0].key): (map(.value) | add)}) | add // {}),
               fallbacks_total: ($ok | msum(.stats.fallbacks_total)),
               fallbacks: ([$ok[] | .stats.fallbacks // {} | to_entries[]] | group_by(.key)
                           | map({(.[0].key): (map(.value) | add)}) | add // {}),
               ops_by_provider: ([$ok[] | .stats.ops_by_provider // {} | to_entries[]] | group_by(.key)
                                 | map({(.[0].key): (map(.value) | add)}) | add // {}),
               queue_wait_mean_us: (($ok | msum(.stats.queue_wait_sum_s)) as $s | ($ok | msum(.stats.queue_wait_count)) as $n
                                    | if $n > 0 then 1e6 * $s / $n else null end),
               qat: (if $v != "qat" then null else
                 ([$ok[] | .stats.qat // {} | to_entries[]] | group_by(.key)
                  | map({(.[0].key): (map(.value) | add)}) | add // {}) end),
               unsaturated: ($ok | map(select(.saturated | not)
                 | {round, proxy_cpu_pct, proxy_cpu_busy_all_pct, client_cpu_busy_all_pct, fake_cpu_pct})),
               tls_seen: ($ok | map(.tls_seen) | unique | join("; "))}}
           ] | add)}
      | .variants as $vs
      | def r($x; $y): if $vs[$x].hs_per_proxy_cpu_s != null and $vs[$y].hs_per_proxy_cpu_s != null
                          and $vs[$y].hs_per_proxy_cpu_s > 0
                       then $vs[$x].hs_per_proxy_cpu_s / $vs[$y].hs_per_proxy_cpu_s else null end;
        . + {ratios: {cryptomb_scalar: r("cryptomb"; "scalar"), cryptomb_software: r("cryptomb"; "software"),
                      cryptomb_nginx: r("cryptomb"; "nginx"), qat_scalar: r("qat"; "scalar"),
                      qat_incl_fake_scalar: (if $vs.qat.hs_per_cpu_s_incl_fake != null and ($vs.scalar.hs_per_proxy_cpu_s // 0) > 0
                                             then $vs.qat.hs_per_cpu_s_incl_fake / $vs.scalar.hs_per_proxy_cpu_s else null end)}}
    ]' "$ROUNDS_JSONL")

# ---------------------------------------------------------------------------
# Report

cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
ifma=$(grep -qw avx512ifma /proc/cpuinfo && echo yes || echo no)
ossl=$(openssl version)
tg_ver=$("$TLSGATE" version 2>&1 | tr '\n' ' ' | sed 's/ *$//')
nginx_ver=$(if has_variant nginx; then nginx -v 2>&1; else echo "not run"; fi)
git_rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "no commit")
if [ -n "$(git -C "$REPO" status --porcelain 2>/dev/null | head -n 1)" ]; then git_rev="$git_rev (dirty)"; fi
if [ "$QUOTA_US" -eq 0 ]; then quota_txt="none (proxy uncapped on CPU $PROXY_CPU)"; else
  quota_txt="$QUOTA_US us per $PERIOD_US us = $(awk -v f="$QUOTA_FRAC" 'BEGIN { printf "%.0f", 100 * f }')% of CPU $PROXY_CPU"
fi
QUOTA_PCT=$(awk -v f="$QUOTA_FRAC" 'BEGIN { printf "%.0f", 100 * f }')
CMDLINE="TG_PROV_VARIANTS=\"${VARIANTS[*]}\" TG_PROV_CERTS=\"${CERTS[*]}\" TG_PROV_TLS=\"${TLSV[*]}\" TG_PROV_CONNS=\"${CONNS[*]}\" TG_PROV_SECONDS=$MEASURE_S TG_PROV_WARMUP=$WARMUP_S TG_PROV_ROUNDS=$ROUNDS TG_PROV_HEADLINE_ROUNDS=$HEAD_ROUNDS TG_PROV_QUOTA_US=$QUOTA_US TG_PROV_PERIOD_US=$PERIOD_US"
if has_variant qat; then
  CMDLINE="$CMDLINE TG_PROV_QAT_LIB_DIR=$QAT_LIB_DIR TG_PROV_QAT_LATENCY_US=$QAT_LATENCY_US TG_PROV_QAT_CAPACITY=$QAT_CAPACITY TG_PROV_QAT_CPU=$QAT_CPU"
fi
CMDLINE="$CMDLINE TG_PROV_CRYPTO=$CRYPTO bench/providers.sh $TLSGATE"

# jq helpers for the report: fixed decimals, thousands separators, ratios.
# shellcheck disable=SC2016 # jq programs: their $ are jq variables
JQ_FMT='
  def fixed($d): if . == null then "n/a" elif $d == 0 then (round | tostring)
    else ((. * pow(10; $d) | round) as $n | ($n | fabs | tostring) as $s
      | (if ($s | length) <= $d then ("0" * ($d + 1 - ($s | length))) + $s else $s end) as $q
      | (if $n < 0 then "-" else "" end) + $q[0:($q | length) - $d] + "." + $q[($q | length) - $d:]) end;
  def f($d): fixed($d);
  def grp: if . == null then "n/a" else (round | tostring
    | [explode | reverse | _nwise(3) | reverse | implode] | reverse | join(",")) end;
  def x: if . == null then "n/a" else fixed(2) + "x" end;
  def yn: if . == null then "n/a" elif . then "yes" else "no" end;
'

# One table over all cells: $1 = jq expression giving one string per variant.
variant_table() { # TITLE-OF-VALUES JQ-CELL-EXPR [EXTRA-HEADERS JQ-EXTRA-EXPR]
  local head="| cert | TLS | -c |" sep="|---|---|---:|" v
  for v in "${VARIANTS[@]}"; do head="$head $v |"; sep="$sep---:|"; done
  # shellcheck disable=SC2001 # a regex, not a plain substitution
  if [ -n "${3:-}" ]; then head="$head$3"; sep="$sep$(sed 's/[^|]*|/---:|/g' <<<"$3")"; fi # one ---: per extra column
  echo "$head"
  echo "$sep"
  jq -r --argjson order "$(printf '%s\n' "${VARIANTS[@]}" | jq -R . | jq -s .)" \
    --argjson quota "$QUOTA_FRAC" "$JQ_FMT
    def certname: if test(\"^rsa[0-9]+$\") then \"RSA-\" + ltrimstr(\"rsa\") elif . == \"ecdsa-p256\" then \"ECDSA P-256\" else . end;
    .[] | . as \$cell
    | \"| \(.cert | certname) | \(.tls) | \(.conns) | \"
      + ([\$order[] as \$v | \$cell.variants[\$v] | if .rounds == 0 then \"failed\" else ($2) end] | join(\" | \")) + \" |\"
      + (${4:-\"\"})
    " <<<"$SUMMARY"
}

write_report() {
  echo "# tlsgate key providers, side by side ($START_UTC)"
  echo
  echo "Command: \`$CMDLINE\`"
  echo
  echo "- Machine: $cpu_model, $(nproc) CPUs, AVX-512 IFMA: $ifma, kernel $(uname -r)"
  echo "- OpenSSL: $ossl; tlsgate: $tg_ver (git $git_rev); $nginx_ver"
  echo "- Proxy: one process per variant and certificate, pinned to CPU $PROXY_CPU, cgroup-v1 CPU quota $quota_txt; client + upstream pinned to CPU $CLIENT_CPU"
  echo "- Client: tlsgate bench -k -c N -t ${MEASURE_S}s --keepalive=false --tls-version V (TLS 1.3: --groups $GROUPS13 --ciphersuites $SUITE13; TLS 1.2: --groups $GROUPS12 --ciphers $CIPHERS12; the servers offer $KX only); every call a new connection and a full handshake; no tickets, no resumption"
  echo "- Rounds: $ROUNDS per cell ($HEAD_ROUNDS for the target cells $(cert_name "$HEAD_CERT") / TLS $HEAD_TLS / -c $HEAD_CONNS and -c 1), variants interleaved (rotated), ${MEASURE_S}s each after a ${WARMUP_S}s warmup; median over rounds"
  if has_variant qat; then
    echo "- qat: the fake qatlib ($QAT_LIB_DIR), FAKE_QAT_LATENCY_US=$QAT_LATENCY_US FAKE_QAT_CAPACITY=$QAT_CAPACITY, its compute thread on CPU $QAT_CPU in a cgroup of its own (no quota): proxy CPU excludes it; \"incl. fake\" adds it back"
  fi
  echo "- Load average (1/5/15 min): $LOAD_START at start ($START_UTC), $LOAD_END at end ($END_UTC); $(nproc) CPUs"
  for s in "${SKIPPED_NOTES[@]}"; do echo "- Left out: $s"; done
  [ -z "$INCOMPLETE" ] || echo "- **INCOMPLETE**: $INCOMPLETE"
  echo
  echo "## Handshakes per proxy-CPU-second"
  echo
  echo "Median over rounds; \`*\` = the proxy was not saturated (below 90% of its ${QUOTA_PCT}% quota) in every round of the cell. Batch fill = cryptomb's mean batch size over the cell (all operation kinds: RSA/ECDSA sign, X25519 keygen refills and derive), from /stats."
  echo
  local extra_h="" extra_e=""
  has_variant cryptomb && has_variant scalar && { extra_h="$extra_h cryptomb/scalar |"; extra_e="$extra_e + \" \(.ratios.cryptomb_scalar | x) |\""; }
  has_variant cryptomb && has_variant software && { extra_h="$extra_h cryptomb/software |"; extra_e="$extra_e + \" \(.ratios.cryptomb_software | x) |\""; }
  has_variant cryptomb && has_variant nginx && { extra_h="$extra_h cryptomb/nginx |"; extra_e="$extra_e + \" \(.ratios.cryptomb_nginx | x) |\""; }
  has_variant qat && has_variant scalar && { extra_h="$extra_h qat/scalar (incl. fake) |"; extra_e="$extra_e + \" \(.ratios.qat_scalar | x) (\(.ratios.qat_incl_fake_scalar | x)) |\""; }
  has_variant cryptomb && { extra_h="$extra_h cryptomb batch fill |"; extra_e="$extra_e + \" \(.variants.cryptomb.batch_mean | f(2)) |\""; }
  variant_table "hs/CPU-s" '(.hs_per_proxy_cpu_s | grp) + (if .saturated_rounds < .rounds then "*" else "" end)' \
    "$extra_h" "\"\"$extra_e"
  echo
  echo "## Wall-clock handshakes/s"
  echo
  variant_table "hs/s" '(.hs_per_s | grp) + (if .saturated_rounds < .rounds then "*" else "" end)'
  echo
  echo "## Latency p50 / p99, ms (connect + full handshake + request + response)"
  echo
  variant_table "p50 / p99" '"\(.p50_ms | f(2)) / \(.p99_ms | f(1))"'
  echo
  echo "## Proxy CPU, % of a core (quota ${QUOTA_PCT}%), and health"
  echo
  echo "Per variant: proxy CPU % (median) and the saturated rounds; then errors (client) + failed handshakes (server) + provider fallbacks, summed over the rounds. For qat, + the fake's compute thread."
  echo
  variant_table "cpu" '"\(.proxy_cpu_pct | f(0))%" + (if .fake_cpu_pct != null then " +\(.fake_cpu_pct | f(0))%" else "" end) + " \(.saturated_rounds)/\(.rounds)" + (if (.errors + .server_handshakes_failed + .fallbacks_total) > 0 then " **e\(.errors)/s\(.server_handshakes_failed)/f\(.fallbacks_total)**" else "" end)'
  echo
  targets_md
  echo
  unsat_md
  providers_md
  if [ -n "$CRYPTO_TXT" ]; then
    echo
    echo "## tlsgate bench-crypto --quick (CPU $PROXY_CPU, no quota, after the measurements)"
    echo
    # shellcheck disable=SC2001 # per line: demote its headings under ours
    sed 's/^## /### /' <<<"$CRYPTO_TXT"
  fi
}

# Targets (issue #3, #4), at the headline cell (and -c 1 for latency).
# The microbenchmark's "provider / raw" for RSA-2048 (issue #3: >= 85%).
MB_PCT=$(awk -F'|' '$2 ~ /^ *RSA-2048 sign/ { gsub(/[ %]/, "", $6); print $6; exit }' <<<"$CRYPTO_TXT")
is_uint "${MB_PCT:-x}" || MB_PCT=null
TARGETS_JSON=$(jq --arg hc "$HEAD_CERT" --arg ht "$HEAD_TLS" --argjson hn "$HEAD_CONNS" \
  --argjson mbpct "$MB_PCT" "$JQ_FMT"'
  def cell($n): map(select(.cert == $hc and .tls == $ht and .conns == $n))[0];
  def v($c; $x): if $c == null then null else $c.variants[$x] end;
  def sat($c; $x): if v($c; $x) == null then null else (v($c; $x).saturated_rounds == v($c; $x).rounds and v($c; $x).rounds > 0) end;
  def n: grp;
  def t($name; $val; $op; $lim; $note): {target: $name, measured: $val, limit: $lim, op: $op,
     verdict: (if $val == null then "NOT MEASURED" elif ($op == ">=" and $val >= $lim) or ($op == "<=" and $val <= $lim) then "MET" else "MISSED" end),
     note: $note};
  cell($hn) as $h | cell(1) as $one
  | [ t("issue #3: cryptomb hs/proxy-CPU-s >= 2.5x scalar (RSA-2048, TLS 1.3, X25519, -c 64)";
        ($h.ratios.cryptomb_scalar // null); ">="; 2.5;
        "cryptomb \(v($h; "cryptomb").hs_per_proxy_cpu_s | n) vs scalar \(v($h; "scalar").hs_per_proxy_cpu_s | n); saturated: cryptomb \(sat($h; "cryptomb") | yn), scalar \(sat($h; "scalar") | yn)"),
      t("issue #3: cryptomb hs/proxy-CPU-s >= 1.5x nginx (same cell)";
        ($h.ratios.cryptomb_nginx // null); ">="; 1.5;
        "nginx \(v($h; "nginx").hs_per_proxy_cpu_s | n); saturated: nginx \(sat($h; "nginx") | yn)"),
      t("issue #3: cryptomb p50 latency <= 1.10x software at -c 1 (RSA-2048, TLS 1.3)";
        (if v($one; "cryptomb").p50_ms != null and (v($one; "software").p50_ms // 0) > 0
         then v($one; "cryptomb").p50_ms / v($one; "software").p50_ms else null end); "<="; 1.10;
        "p50 cryptomb \(v($one; "cryptomb").p50_ms | fixed(3)) ms vs software \(v($one; "software").p50_ms | fixed(3)) ms"),
      t("issue #4: qat (fake, 50 us, capacity 64) hs/proxy-CPU-s >= 2.5x scalar, proxy CPU without the fake'"'"'s compute thread (headline cell)";
        ($h.ratios.qat_scalar // null); ">="; 2.5;
        "qat \(v($h; "qat").hs_per_proxy_cpu_s | n) hs/proxy-CPU-s; with the fake'"'"'s thread counted: \(v($h; "qat").hs_per_cpu_s_incl_fake | n) = \($h.ratios.qat_incl_fake_scalar | x) scalar; saturated: qat \(sat($h; "qat") | yn)"),
      t("issue #3: bench-crypto, provider path >= 85% of crypto_mb raw, RSA-2048 sign (ratio of the two rates)";
        (if $mbpct == null then null else $mbpct / 100 end); ">="; 0.85;
        "tlsgate bench-crypto --quick, provider / raw = \($mbpct // "n/a")%")
    ]' <<<"$SUMMARY")

targets_md() {
  echo "## Targets"
  echo
  jq -r "$JQ_FMT"'.[] | "- **\(.verdict)** \(.target): " +
    (if .measured == null then "not measured" else "\(.measured | x) (limit \(.op) \(.limit | fixed(2)))" end)
    + " — \(.note)"' <<<"$TARGETS_JSON"
}

unsat_md() {
  local lines
  lines=$(jq -r --argjson q "$QUOTA_FRAC" '.[] | . as $c | .variants | to_entries[] | .key as $v | .value.unsaturated[]
    | "- \($c.cert) TLS \($c.tls) -c \($c.conns) \($v) r\(.round): proxy \(.proxy_cpu_pct | round)%"
      + (if .fake_cpu_pct != null then " + fake \(.fake_cpu_pct | round)%" else "" end)
      + "; CPU busy (all tasks) \(.proxy_cpu_busy_all_pct | round)% proxy side, \(.client_cpu_busy_all_pct | round)% client side: "
      + (if .proxy_cpu_busy_all_pct >= 95 then "the proxy CPU was full (other tasks"
            + (if .fake_cpu_pct != null then ", the fake device thread" else "" end) + ")"
         elif .client_cpu_busy_all_pct >= 95 then "the client CPU was full (client-bound)"
         elif $c.conns <= 8 then "latency-bound (too few connections to load the proxy)"
         else "the load did not reach the quota" end)' <<<"$SUMMARY")
  if [ -z "$lines" ]; then
    echo "Every variant was saturated in every round of every cell."
  else
    echo "## Not saturated"
    echo
    echo "Rounds in which the proxy stayed below 90% of its quota. At -c 1 and -c 8 a provider that waits (for a device, or for a batch to fill) leaves the worker idle between answers: expected there. A batching provider that is not saturated fills smaller batches; compare hs/proxy-CPU-s only between saturated cells."
    echo
    echo "$lines"
  fi
}

providers_md() {
  local lines
  echo
  echo "## Provider counters (/stats deltas over the measured intervals)"
  echo
  echo "| cert | TLS | -c | variant | ops by provider | batches | mean batch | flushes full/idle/timer/scalar | queue wait mean us | fallbacks | server failed hs | qat submitted/retried/spilled/failed, polls (empty), mean latency us |"
  echo "|---|---|---:|---|---|---:|---:|---|---:|---|---:|---|"
  jq -r "$JQ_FMT"'.[] | . as $c | .variants | to_entries[] | select(.key != "nginx") | .key as $v | .value
    | "| \($c.cert) | \($c.tls) | \($c.conns) | \($v) | "
      + (.ops_by_provider | to_entries | map(select(.value != 0) | "\(.key) \(.value)") | join(", "))
      + " | \(.batches) | \(if .batch_mean == null then "" else (.batch_mean | fixed(2)) end)"
      + " | \(.flushes.full // 0)/\(.flushes.idle // 0)/\(.flushes.timer // 0)/\(.flushes.scalar // 0)"
      + " | \(if .queue_wait_mean_us == null then "" else (.queue_wait_mean_us | round | tostring) end)"
      + " | \(if .fallbacks_total == 0 then "0" else (.fallbacks | to_entries | map("\(.key) \(.value)") | join(", ")) end)"
      + " | \(.server_handshakes_failed)"
      + " | \(if .qat == null then "" else "\(.qat.submitted)/\(.qat.retried)/\(.qat.spilled)/\(.qat.failed), \(.qat.polls) (\(.qat.empty_polls)), \(if (.qat.latency_count // 0) > 0 then (1e6 * .qat.latency_sum_s / .qat.latency_count | round | tostring) else "n/a" end)" end) |"' <<<"$SUMMARY"
  lines=$(jq -r '.[] | . as $c | .variants | to_entries[] | .key as $v | .value
    | select(.errors > 0 or .server_handshakes_failed > 0 or .failed_rounds > 0 or .fallbacks_total > 0)
    | "- \($c.cert) TLS \($c.tls) -c \($c.conns) \($v): \(.errors) client errors of \(.calls) calls, \(.server_handshakes_failed) failed handshakes on the server, \(.fallbacks_total) fallbacks, \(.failed_rounds) failed rounds"' <<<"$SUMMARY")
  if [ -n "$lines" ]; then
    echo
    echo "Errors and fallbacks:"
    echo
    echo "$lines"
  fi
  lines=$(jq -r '.[] | . as $c | .variants | to_entries[] | select(.value.rounds > 0 and (.value.tls_seen | length) > 0) | "\(.value.tls_seen)"' <<<"$SUMMARY" | sort -u | paste -sd ';' | sed 's/;/; /g')
  echo
  echo "Negotiated (as the client saw it): $lines"
  if grep -Eq '(TLSv1\.[23] [A-Z0-9_-]+ )(x448|x25519|prime256v1|secp[0-9]+r1|ffdhe[0-9]+)' <<<"${lines//$KX_SEEN/}"; then
    echo
    echo "WARNING: a key exchange other than $KX was negotiated somewhere (see above)."
  fi
}

# ---------------------------------------------------------------------------
# Plot: handshakes per proxy-CPU-second and p50 vs concurrency, one line per
# variant, one panel per certificate x TLS version.

mkdir -p "$OUT_DIR"
PREFIX=$OUT_DIR/providers-$STAMP
PLOT_OK=1
make_plot "$PREFIX.png" || PLOT_OK=0

write_report >"$PREFIX.md"
if [ "$PLOT_OK" = 1 ]; then printf '\nPlot: %s\n' "$PREFIX.png" >>"$PREFIX.md"; fi

jq -n --arg start "$START_UTC" --arg endt "$END_UTC" --arg cmd "$CMDLINE" --arg cpu "$cpu_model" \
  --arg ifma "$ifma" --arg kernel "$(uname -r)" --arg openssl "$ossl" --arg tlsgate "$tg_ver" \
  --arg git "$git_rev" --arg nginx "$nginx_ver" --arg load_start "$LOAD_START" --arg load_end "$LOAD_END" \
  --arg incomplete "$INCOMPLETE" --arg crypto "$CRYPTO_TXT" --arg png "$([ "$PLOT_OK" = 1 ] && echo "$PREFIX.png")" \
  --argjson variants "$(printf '%s\n' "${VARIANTS[@]}" | jq -R . | jq -s .)" \
  --argjson settings "$(jq -n --argjson rounds "$ROUNDS" --argjson head_rounds "$HEAD_ROUNDS" \
    --argjson seconds "$MEASURE_S" --argjson warmup "$WARMUP_S" --argjson quota "$QUOTA_US" \
    --argjson period "$PERIOD_US" --argjson proxy_cpu "$PROXY_CPU" --argjson client_cpu "$CLIENT_CPU" \
    --arg certs "${CERTS[*]}" --arg tls "${TLSV[*]}" --arg conns "${CONNS[*]}" \
    --arg qat_dir "$QAT_LIB_DIR" --argjson qat_lat "$QAT_LATENCY_US" --argjson qat_cap "$QAT_CAPACITY" \
    --arg qat_cpu "$QAT_CPU" '{rounds: $rounds, headline_rounds: $head_rounds, seconds: $seconds,
      warmup_s: $warmup, quota_us: $quota, period_us: $period, proxy_cpu: $proxy_cpu, client_cpu: $client_cpu,
      certs: ($certs | split(" ")), tls: ($tls | split(" ")), conns: ($conns | split(" ") | map(tonumber)),
      qat: {lib_dir: $qat_dir, latency_us: $qat_lat, capacity: $qat_cap, compute_cpu: $qat_cpu}}')" \
  --argjson cells "$SUMMARY" --argjson targets "$TARGETS_JSON" --slurpfile runs "$ROUNDS_JSONL" '
  {tool: "bench/providers.sh", start_time: $start, end_time: $endt, command: $cmd,
   incomplete: (if $incomplete == "" then null else $incomplete end),
   machine: {cpu: $cpu, avx512ifma: ($ifma == "yes"), kernel: $kernel, openssl: $openssl,
             loadavg_start: $load_start, loadavg_end: $load_end},
   versions: {tlsgate: $tlsgate, git: $git, nginx: $nginx},
   variants: $variants, settings: $settings, targets: $targets, cells: $cells,
   plot: (if $png == "" then null else $png end), bench_crypto: $crypto, runs: $runs}' >"$PREFIX.json"

cat "$PREFIX.md"
echo
note "wrote $PREFIX.md, $PREFIX.json$([ "$PLOT_OK" = 1 ] && echo " and $PREFIX.png")"
failed=$(jq '[.[] | .variants[] | select(.failed_rounds > 0)] | length' <<<"$SUMMARY")
[ "$failed" -eq 0 ] || die "$failed variant cell(s) had failed rounds (see above)"
[ -z "$INCOMPLETE" ] || die "the run is incomplete: $INCOMPLETE"
