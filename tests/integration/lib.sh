# lib.sh: the shared harness of the shell integration tests (bash).
#
#   #!/usr/bin/env bash
#   . "$(dirname "$0")/lib.sh"
#   tg_init 60                      # per-test temp dir, EXIT trap, 60 s limit
#   read -r CERT KEY < <(tg_cert rsa a.test)
#   tg_bench_serve                  # upstream: sets UP_ADDR
#   tg_config gw.yaml <<EOF ... EOF # write a config into the temp dir
#   tg_gateway gw.yaml              # start, wait for ready: GW_PID GW_PORT GW_ADMIN GW_LOG
#   tg_expect_eq "$(tg_stat tlsgate_handshakes_total result=ok)" 1 "handshakes"
#   tg_gateway_stop                 # SIGTERM, exit status must be 0
#
# Guarantees: every process started through tg_spawn / tg_gateway /
# tg_bench_serve / tg_upstream is killed BY PID at exit (SIGTERM, then
# SIGKILL); the temp dir is removed; on failure the log of every process is
# printed. Every listener binds port 0; ports are read back from the logs, so
# tests can run in parallel (ctest -j). The whole script runs under
# `timeout` (the limit given to tg_init, scaled by TG_TIMEOUT_SCALE).
#
# Environment: TLSGATE (binary; ctest sets it), TG_VALGRIND=1 (run tlsgate
# under valgrind: errors or definite leaks at exit fail the test),
# TG_TIMEOUT_SCALE (default 1, 10 under valgrind), TG_LOG_LEVEL (default
# info), TG_KEEP_TMP=1.

set -euo pipefail

TG_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TG_NAME=$(basename "$0" .sh)
TG_VALGRIND=${TG_VALGRIND:-0}
[ "$TG_VALGRIND" = 0 ] && TG_VALGRIND=
if [ -n "${TG_TIMEOUT_SCALE:-}" ]; then
    TG_SCALE=$TG_TIMEOUT_SCALE
elif [ -n "$TG_VALGRIND" ]; then
    TG_SCALE=10
else
    TG_SCALE=1
fi
TG_LOG_LEVEL=${TG_LOG_LEVEL:-info}
# What a sanitizer (ASan, UBSan, LSan, TSan) prints when it finds something.
TG_SANITIZER_RE='(ERROR|WARNING): (Address|Leak|Thread)Sanitizer|runtime error: '

if [ -z "${TLSGATE:-}" ]; then
    for d in "${TG_BUILD_DIR:-}" "$TG_LIB_DIR/../../build-integ" "$TG_LIB_DIR/../../build"; do
        if [ -n "$d" ] && [ -x "$d/tlsgate" ]; then
            TLSGATE=$(cd "$d" && pwd)/tlsgate
            break
        fi
    done
fi
[ -n "${TLSGATE:-}" ] || { echo "FAIL: no tlsgate binary (set TLSGATE)" >&2; exit 1; }
export TLSGATE

TG_VG=()     # valgrind prefix (tg_valgrind_init)
TG_PIDS=()   # every background process, by PID
TG_NAMES=()  # its name (log file: $TG_TMP/NAME.log)
TG_FAILED=1  # cleared by tg_pass
TG_T0=$(date +%s.%N)

# Scale a number of seconds by TG_SCALE (integer result, at least 1).
tg_s() { awk -v a="$1" -v s="$TG_SCALE" 'BEGIN { v = a * s; printf "%d\n", (v < 1 ? 1 : v + 0.999) }'; }

tg_init() {
    local limit
    limit=$(tg_s "${1:-60}")
    # Below ctest's TIMEOUT (600 s), which kills without any cleanup.
    [ "$limit" -le 570 ] || limit=570
    if [ -z "${TG_UNDER_TIMEOUT:-}" ]; then
        # Bound the whole script; TERM runs the EXIT trap (cleanup + logs).
        export TG_UNDER_TIMEOUT=1
        exec timeout -s TERM -k 20 "${TG_TEST_TIMEOUT:-$limit}" bash "$0"
    fi
    TG_TMP=$(mktemp -d "${TMPDIR:-/tmp}/tg-$TG_NAME-XXXXXX")
    # tlsgate's state directory (default pid file, demo certificate): this
    # test's own, so that tests running side by side do not meet.
    export TLSGATE_STATE_DIR=$TG_TMP/state
    trap tg_exit EXIT
    trap 'echo "FAIL: $TG_NAME: interrupted or timed out" >&2; exit 124' TERM INT
    cd "$TG_TMP"
    [ -z "$TG_VALGRIND" ] || tg_valgrind_init
}

tg_dump_logs() {
    local i f n
    for i in "${!TG_PIDS[@]}"; do
        f="$TG_TMP/${TG_NAMES[$i]}.log"
        [ -f "$f" ] || continue
        n=$(wc -l < "$f")
        echo "===== log of ${TG_NAMES[$i]} (pid ${TG_PIDS[$i]}, $n lines) ====="
        if [ "$n" -gt 600 ]; then
            head -n 100 "$f"; echo "[... $((n - 400)) lines ...]"; tail -n 300 "$f"
        else
            cat "$f"
        fi
    done
    echo "===== end of logs ====="
}

tg_exit() {
    local rc=$? i pid
    set +e
    trap - TERM INT
    if [ "$TG_FAILED" = 1 ] || [ "$rc" != 0 ]; then
        [ "$rc" = 0 ] && rc=1
        echo "FAIL: $TG_NAME (exit $rc)" >&2
        if [ -n "${GW_ADMIN:-}" ] && [ -n "${GW_PID:-}" ] && tg_alive "$GW_PID"; then
            echo "===== /stats of $GW_NAME (non-zero counters) =====" >&2
            curl -s --max-time 5 "http://127.0.0.1:$GW_ADMIN/stats" |
                grep -E '^tlsgate_[a-z_]*(_total|_active|_pending)(\{| )' | grep -v ' 0$' >&2
        fi
        tg_dump_logs >&2
    fi
    for pid in "${TG_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${TG_PIDS[@]}"; do
        for _ in $(seq 1 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    # A sanitizer report in any process's log fails the test, even when
    # every check passed (a race or leak seen at exit is still a bug).
    local reports
    reports=$(grep -lE "$TG_SANITIZER_RE" "$TG_TMP"/*.log 2>/dev/null || true)
    if [ -n "$reports" ]; then
        echo "FAIL: $TG_NAME: sanitizer report(s) in: $reports" >&2
        grep -hE -A30 "$TG_SANITIZER_RE" $reports | head -n 120 >&2
        [ "$rc" = 0 ] && rc=1
    fi
    cd /
    if [ -n "${TG_KEEP_TMP:-}" ]; then
        echo "temp dir kept: $TG_TMP"
    else
        rm -rf "$TG_TMP"
    fi
    exit "$rc"
}

tg_pass() {
    TG_FAILED=0
    echo "PASS $TG_NAME ($(awk -v a="$TG_T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s)"
}

tg_skip() {
    echo "SKIP $TG_NAME: $*"
    TG_FAILED=0
    exit 0
}

tg_fail() {
    echo "FAIL: $*" >&2
    exit 1
}

tg_case() { echo "--- $*"; }

tg_expect_eq() { [ "$1" = "$2" ] || tg_fail "$3: got '$1', want '$2'"; }
tg_expect_ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }' || tg_fail "$3: got '$1', want >= '$2'"; }
tg_expect_grep() { grep -Eq -- "$1" "$2" || { echo "--- $2:"; cat "$2"; tg_fail "$3: /$1/ not found"; }; }
tg_expect_nogrep() { ! grep -Eq -- "$1" "$2" || { echo "--- $2:"; cat "$2"; tg_fail "$3: /$1/ found"; }; }

# What `openssl s_client` and curl print, as grep -E pieces that accept the
# form of Debian 12 (OpenSSL 3.0, curl 7.88) and of Debian 13 (OpenSSL 3.5,
# curl 8); the caller anchors them, e.g. "^Signature type: $TG_SIG_ECDSA\$".
# shellcheck disable=SC2034 # for the tests
{
    # Signature type ("Signature type:" with -brief, else "Peer signature type:"):
    # 3.0 prints RSA-PSS / RSA / ECDSA, 3.5 rsa_pss_rsae_sha256 / rsa_pkcs1_sha256 / ecdsa_secp256r1_sha256.
    TG_SIG_RSA_PSS='(RSA-PSS|rsa_pss_(rsae|pss)_sha(256|384|512))'
    TG_SIG_RSA_PKCS1='(RSA|rsa_pkcs1_sha(1|224|256|384|512))'
    TG_SIG_RSA="($TG_SIG_RSA_PSS|$TG_SIG_RSA_PKCS1)" # either RSA encoding
    TG_SIG_ECDSA='(ECDSA|ecdsa_[A-Za-z0-9_]+)'
    # The key exchange: 3.0 "Server Temp Key: X25519, 253 bits", 3.5 "Peer Temp Key: X25519, 253 bits".
    TG_TEMP_KEY='(Server|Peer) Temp Key'
    # A TLS 1.3 server refusing curl for lack of a client certificate: curl 7.88 (3.0)
    # always reads the alert; curl 8 (3.5) often sends its request first and gets
    # the reset that follows the alert (only a counter can tell why: check one too).
    TG_CURL_CERT_REQUIRED='alert certificate required|^curl: \((55|56)\) (Send|Recv) failure: Connection reset by peer'
}
# tg_cn_re CN: a name of one CN as s_client prints it ("subject=", "Peer
# certificate:"), dots escaped: 3.0 prints "CN = a.test", 3.5 "CN=a.test".
tg_cn_re() { printf 'CN( = |=)%s' "${1//./\\.}"; }

# tg_wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds.
tg_wait_for() {
    local t=$1 what=$2 end
    shift 2
    end=$(( $(date +%s%N) / 1000000 + $(tg_s "$t") * 1000 ))
    until "$@"; do
        [ $(( $(date +%s%N) / 1000000 )) -lt "$end" ] || tg_fail "timed out waiting for $what"
        sleep 0.05
    done
}

# tg_spawn NAME CMD...: start CMD in the background (output to NAME.log); sets TG_LAST_PID.
tg_spawn() {
    local name=$1
    shift
    "$@" > "$TG_TMP/$name.log" 2>&1 < /dev/null &
    TG_LAST_PID=$!
    TG_PIDS+=("$TG_LAST_PID")
    TG_NAMES+=("$name")
}

tg_alive() { kill -0 "$1" 2>/dev/null; }

# tg_run SECONDS CMD...: run a client command with a (scaled) time limit.
tg_run() {
    local t=$1
    shift
    timeout -k 5 "$(tg_s "$t")" "$@"
}

# tg_cert KIND CN [SAN...]: self-signed certificate (rsa = RSA-2048, ec = P-256);
# prints "CERT KEY". SANs default to CN.
tg_cert() {
    local kind=$1 cn=$2 base san
    shift 2
    base="$TG_TMP/$kind-${cn//\*/star}"
    [ $# -gt 0 ] || set -- "$cn"
    san=$(printf 'DNS:%s,' "$@")
    if [ ! -f "$base.pem" ]; then
        local newkey=(-newkey rsa:2048)
        [ "$kind" = ec ] && newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
        openssl req -x509 -nodes -days 2 -subj "/CN=$cn" -addext "subjectAltName=${san%,}" \
            "${newkey[@]}" -keyout "$base.key" -out "$base.pem" > "$base.req.log" 2>&1 ||
            { cat "$base.req.log"; tg_fail "openssl req failed"; }
    fi
    echo "$base.pem $base.key"
}

# Wait for "serving on ADDR" in NAME.log; sets UP_ADDR.
tg_wait_serving() {
    local name=$1 pid=$2
    tg_wait_for 10 "$name to listen" tg__serving "$name" "$pid"
    UP_ADDR=$(grep -o 'serving on [^ ]*' "$TG_TMP/$name.log" | head -n1 | awk '{print $3}')
    # shellcheck disable=SC2034 # for the tests
    UP_PORT=${UP_ADDR##*:}
}
tg__serving() {
    tg_alive "$2" || tg_fail "$1 exited early"
    grep -q 'serving on ' "$TG_TMP/$1.log"
}

# tg_free_port: sets FREE_PORT to a TCP port no socket uses now (ss), below
# the ephemeral range (so no client connection takes it meanwhile) and not
# handed out before in this test. Only for peers that cannot listen on port 0
# and say which port they got (haproxy, nginx); tlsgate and the Python
# upstreams use port 0.
TG_USED_PORTS=" "
tg_free_port() {
    local low p i
    low=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    [ "$low" -gt 12000 ] || low=32768
    for ((i = 0; i < 200; i++)); do
        p=$((10000 + RANDOM % (low - 10000)))
        case $TG_USED_PORTS in *" $p "*) continue ;; esac
        if [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ]; then
            TG_USED_PORTS="$TG_USED_PORTS$p "
            FREE_PORT=$p
            return 0
        fi
    done
    tg_fail "no free port found"
}

# tg_wait_listening NAME PID PORT...: wait until every PORT has a listening
# socket (ss), failing at once if PID exits (its log is printed at exit).
tg_wait_listening() {
    local name=$1 pid=$2
    shift 2
    tg_wait_for 15 "$name to listen on $*" tg__listening "$name" "$pid" "$@"
}
tg__listening() {
    local name=$1 pid=$2 p
    shift 2
    tg_alive "$pid" || tg_fail "$name exited early"
    for p in "$@"; do
        [ -n "$(ss -Hltn "sport = :$p" 2>/dev/null)" ] || return 1
    done
}

# tg_bench_serve [NAME] [ARGS...]: `tlsgate bench --serve 127.0.0.1:0 ARGS`; sets UP_ADDR UP_PORT UP_PID.
tg_bench_serve() {
    local name=${1:-upstream}
    shift || true
    tg_spawn "$name" "$TLSGATE" bench --serve 127.0.0.1:0 "$@"
    UP_PID=$TG_LAST_PID
    tg_wait_serving "$name" "$UP_PID"
}

# tg_upstream MODE [NAME]: a tg_upstream.py server (modes: see that file); sets UP_ADDR UP_PORT UP_PID.
tg_upstream() {
    local mode=$1 name=${2:-upstream-$1}
    tg_spawn "$name" python3 -u "$TG_LIB_DIR/tg_upstream.py" "$mode"
    UP_PID=$TG_LAST_PID
    tg_wait_serving "$name" "$UP_PID"
}

# tg_config FILE: write stdin to $TG_TMP/FILE.
tg_config() { cat > "$TG_TMP/$1"; }

# tg_provider_yaml VARIANT INDENT: the private_key_provider block of a variant
# (software | deferred | deferred-5ms | any other provider name, e.g.
# cryptomb), indented by INDENT spaces. TG_PROVIDERS (environment) replaces
# the list of variants the handshake tests loop over.
TG_PROVIDERS=${TG_PROVIDERS:-software deferred deferred-5ms cryptomb}
tg_provider_yaml() {
    local p
    p=$(printf '%*s' "$2" '')
    case $1 in
    software) printf '%sprivate_key_provider: { provider_name: software }\n' "$p" ;;
    deferred) printf '%sprivate_key_provider: { provider_name: deferred }\n' "$p" ;;
    deferred-5ms) printf '%sprivate_key_provider: { provider_name: deferred, typed_config: { delay: 5ms } }\n' "$p" ;;
    # batches where the CPU has AVX-512 IFMA, software elsewhere (and under valgrind)
    cryptomb) printf '%sprivate_key_provider: { provider_name: cryptomb, fallback: true }\n' "$p" ;;
    *) printf '%sprivate_key_provider: { provider_name: %s, fallback: false }\n' "$p" "$1" ;;
    esac
}

# tg_valgrind_init: TG_VG=(env LD_PRELOAD=... valgrind OPTIONS) to prefix a
# tlsgate command under TG_VALGRIND=1. The preloaded vg_async_stacks.so
# registers OpenSSL's ASYNC job stacks with valgrind (see that file): without
# it, paused handshakes produce floods of bogus errors.
tg_valgrind_init() {
    local so=$TG_TMP/vg_async_stacks.so
    [ -f "$so" ] || cc -shared -fPIC -O2 -o "$so" "$TG_LIB_DIR/vg_async_stacks.c" -ldl ||
        tg_fail "cannot build vg_async_stacks.so"
    # shellcheck disable=SC2206
    TG_VG=(env "LD_PRELOAD=$so${LD_PRELOAD:+ $LD_PRELOAD}" valgrind ${TG_VALGRIND_OPTS:-}
        --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
        --show-leak-kinds=definite --num-callers=30)
}

# tg_gateway CONFIG [NAME] [EXTRA ARGS...]: start `tlsgate run` and wait until
# it is ready; sets GW_PID GW_PORT (first listener) GW_ADMIN GW_LOG GW_NAME
# GW_PIDFILE (its --pid-file).
tg_gateway() {
    local cfg=$1 name=${2:-tlsgate}
    shift 2 || shift $#
    # A second gateway with the same name gets its own log and pid file.
    local n=1 base=$name
    while [ -e "$TG_TMP/$name.log" ]; do n=$((n + 1)); name=$base-$n; done
    GW_PIDFILE=$TG_TMP/$name.pid
    local cmd=("$TLSGATE" run --config "$TG_TMP/$cfg" --log-level "$TG_LOG_LEVEL"
        --pid-file "$GW_PIDFILE" "$@")
    [ -z "$TG_VALGRIND" ] || cmd=("${TG_VG[@]}" "${cmd[@]}")
    tg_spawn "$name" "${cmd[@]}"
    GW_PID=$TG_LAST_PID
    GW_NAME=$name
    GW_LOG=$TG_TMP/$name.log
    tg_wait_for 20 "$name to be ready" tg__gw_ready
    # shellcheck disable=SC2034 # for the tests
    GW_PORT=$(grep -o 'listening on [^ ]*, upstream' "$GW_LOG" | head -n1 | sed 's/.*:\([0-9]*\),.*/\1/')
    GW_ADMIN=$(sed -n 's/.*admin: listening on .* (port \([0-9]*\)).*/\1/p' "$GW_LOG" | head -n1)
    if [ -n "$GW_ADMIN" ]; then
        tg_wait_for 10 "/ready" tg__http_ok "/ready"
    fi
}
tg__gw_ready() {
    tg_alive "$GW_PID" || tg_fail "$GW_NAME exited before it was ready"
    grep -Eq 'tlsgate \S+ ready' "$GW_LOG"
}
tg__http_ok() { [ "$(tg_admin_status "$1")" = 200 ]; }

# tg_listener_port NAME: port of listener NAME of the current gateway.
tg_listener_port() {
    sed -n "s/.*listener $1: listening on [^ ]*:\\([0-9]*\\),.*/\\1/p" "$GW_LOG" | head -n1
}

tg_admin_status() {
    curl -s -o /dev/null -w '%{http_code}' --max-time "$(tg_s 5)" "http://127.0.0.1:$GW_ADMIN$1" || true
}

tg_stats() { curl -sf --max-time "$(tg_s 5)" "http://127.0.0.1:$GW_ADMIN/stats"; }

# tg_stat NAME [k=v ...]: the sum of the series of NAME whose labels include
# every k="v" given (fails if there is none).
tg_stat() {
    local name=$1 out
    shift
    out=$(tg_stats | awk -v name="$name" -v want="$*" '
        BEGIN { n = split(want, w, " ") }
        /^#/ { next }
        {
            split($1, a, "{"); if (a[1] != name) next
            ok = 1
            for (i = 1; i <= n; i++) {
                split(w[i], kv, "="); pat = kv[1] "=\"" kv[2] "\""
                if (index($1, pat) == 0) ok = 0
            }
            if (ok) { s += $2; found = 1 }
        }
        END { if (found) printf "%d\n", s; else exit 1 }') || tg_fail "/stats has no series $name $*"
    echo "$out"
}

# tg_settle: wait until the gateway has no connection open (a client may
# exit before tlsgate has counted the close of its connection).
tg_settle() { tg_wait_for 10 "connections_active = 0" tg__no_conns; }
tg__no_conns() { [ "$(tg_stat tlsgate_connections_active)" = 0 ]; }

# tg_gateway_stop [SIGNAL]: signal the current gateway; it must exit 0 (and
# valgrind / the sanitizers must be clean).
tg_gateway_stop() {
    local sig=${1:-TERM} rc=0
    kill -"$sig" "$GW_PID"
    tg_wait_for 30 "$GW_NAME to exit after SIG$sig" tg__dead "$GW_PID"
    wait "$GW_PID" || rc=$?
    [ "$rc" != 99 ] || [ -z "$TG_VALGRIND" ] || tg_fail "valgrind reported errors or definite leaks"
    tg_expect_eq "$rc" 0 "$GW_NAME exit status after SIG$sig"
    tg_expect_nogrep 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$GW_LOG" "sanitizers"
}
tg__dead() { ! tg_alive "$1"; }
