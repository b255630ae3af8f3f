#!/usr/bin/env bash
# test_image: the OCI image of `make image`, run with podman, with real
# handshakes through it (make test-image).
#
#   1. the archive loads; labels (version, git revision), user 65532, no
#      shell and no package manager inside, size;
#   2. `tlsgate doctor` and `check-config` inside the image, with the
#      certificate mounted the way the kubelet mounts a kubernetes.io/tls
#      Secret (..data -> ..<timestamp>/, tls.crt and tls.key -> ..data/...),
#      and the configurations of deploy/kubernetes/{software,cryptomb,qat};
#   3. tlsgate in the image (read-only root, all capabilities dropped, no
#      new privileges, no writable /tmp) terminating TLS for an upstream on
#      127.0.0.1 started here: curl and `tlsgate bench` through it, /ready,
#      /stats counting the key provider that served, SIGTERM drains, exit 0;
#   4. the embedded default configuration, in a network namespace of its
#      own (--network none), the state directory on a tmpfs, driven with the
#      image's own `tlsgate bench` through `podman exec`;
#   5. certificate rotation the kubelet's way (new timestamped directory,
#      atomic rename of ..data): the file watcher reloads with no signal,
#      the new serial is served, the reload counted; then SIGHUP reloads
#      once more (only when `tlsgate --help` lists a `reload` command).
#
# Containers are removed by ID at exit; processes are killed by PID (lib.sh).
# Environment: TG_IMAGE_ARCHIVE (default build/tlsgate-image.tar), TLSGATE
# (the host's tlsgate: upstream and load generator), TG_PODMAN_RUNTIME
# (default runc when installed: crun fails on hosts with hybrid cgroups).
TG_SRC_DIR=${TG_SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
export TG_SRC_DIR
# Absolute paths: the test runs in its own temp directory.
TG_IMAGE_ARCHIVE=$(realpath -m "${TG_IMAGE_ARCHIVE:-$TG_SRC_DIR/build/tlsgate-image.tar}")
export TG_IMAGE_ARCHIVE
[ -z "${TLSGATE:-}" ] || { TLSGATE=$(realpath -m "$TLSGATE"); export TLSGATE; }
. "$TG_SRC_DIR/tests/integration/lib.sh"
tg_init 300

command -v podman >/dev/null 2>&1 || tg_fail "podman not installed (scripts/setup.sh)"
[ "$(id -u)" = 0 ] || tg_fail "needs root: the image test uses rootful podman"
archive=$TG_IMAGE_ARCHIVE
[ -f "$archive" ] || tg_fail "no image archive $archive (make image)"

runtime=${TG_PODMAN_RUNTIME:-}
[ -n "$runtime" ] || ! command -v runc >/dev/null 2>&1 || runtime=runc
# Explicit limits, within this shell's hard limits (a container cannot raise them).
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] || [ "$nofile" -gt 65536 ] && nofile=65536
nproc=$(ulimit -Hu)
[ "$nproc" = unlimited ] || [ "$nproc" -gt 4096 ] && nproc=4096
PODMAN_RUN=(podman run ${runtime:+--runtime "$runtime"} --ulimit "nofile=$nofile:$nofile"
    --ulimit "nproc=$nproc:$nproc" --read-only --read-only-tmpfs=false --cap-drop ALL
    --security-opt no-new-privileges)

# Containers by ID, removed before lib.sh's cleanup (which keeps the exit status).
TG_CIDS=()
tg_img_exit() {
    local rc=$? c
    set +e
    for c in "${TG_CIDS[@]}"; do
        podman rm -f -t 2 "$c" >/dev/null 2>&1
    done
    (exit "$rc")
    tg_exit
}
trap tg_img_exit EXIT

# tg_container NAME PODMAN-RUN-ARGS...: start detached, follow its log into
# NAME.log; sets CID.
tg_container() {
    local name=$1
    shift
    CID=$(timeout 120 "${PODMAN_RUN[@]}" -d "$@") || tg_fail "podman run failed"
    TG_CIDS+=("$CID")
    tg_spawn "$name" podman logs -f "$CID"
}
tg_container_exit_code() { podman inspect --format '{{.State.ExitCode}}' "$1"; }
tg__container_done() { [ "$(podman inspect --format '{{.State.Running}}' "$1")" = false ]; }

# ---------------------------------------------------------------------------
tg_case "load $archive"
ref=$(tar -xOf "$archive" ./index.json | jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]')
[ -n "$ref" ] && [ "$ref" != null ] || tg_fail "index.json has no ref.name"
tg_run 120 podman load -q -i "$archive" >/dev/null
IMG=localhost/$ref
podman image exists "$IMG" || tg_fail "podman has no image $IMG after load"

tg_case "image metadata"
version=$("$TLSGATE" version | awk '{print $2; exit}')
tg_expect_eq "$(podman image inspect --format '{{index .Labels "org.opencontainers.image.version"}}' "$IMG")" \
    "$version" "label org.opencontainers.image.version"
rev=$(podman image inspect --format '{{index .Labels "org.opencontainers.image.revision"}}' "$IMG")
if head=$(git -C "$TG_SRC_DIR" rev-parse HEAD 2>/dev/null); then
    [[ "$rev" == "$head" || "$rev" == "$head-dirty" ]] ||
        tg_fail "label org.opencontainers.image.revision: got '$rev', want $head (make image again)"
fi
tg_expect_eq "$(podman image inspect --format '{{.Config.User}}' "$IMG")" 65532:65532 "image user"
size=$(podman image inspect --format '{{.Size}}' "$IMG")
tg_expect_ge $((60 * 1024 * 1024)) "$size" "image size (bytes) is at most 60 MiB"
echo "image $IMG: $((size / 1024 / 1024)) MiB unpacked, revision $rev"

podman create ${runtime:+--runtime "$runtime"} "$IMG" >"$TG_TMP/create.cid"
cid=$(cat "$TG_TMP/create.cid")
TG_CIDS+=("$cid")
podman export "$cid" | tar -t | sed 's|^\./||' | sort >"$TG_TMP/files.txt"
for f in usr/bin/tlsgate usr/lib/x86_64-linux-gnu/libcrypto_mb.so.11 usr/lib/x86_64-linux-gnu/libqat.so.4 \
    usr/lib/x86_64-linux-gnu/libusdm.so.0 etc/passwd var/lib/tlsgate/ etc/tlsgate/; do
    grep -qx "$f" "$TG_TMP/files.txt" || tg_fail "$f missing from the image"
done
tg_expect_nogrep '^(usr/)?s?bin/(sh|bash|dash|busybox|apt|apt-get|dpkg)$' "$TG_TMP/files.txt" \
    "no shell or package manager in the image"
tg_expect_nogrep '^var/lib/dpkg/status$|^var/lib/apt/|^var/cache/apt/' "$TG_TMP/files.txt" \
    "no dpkg/apt database"

# ---------------------------------------------------------------------------
tg_case "tlsgate doctor inside the image"
tg_run 120 "${PODMAN_RUN[@]}" --rm --network none "$IMG" doctor \
    >"$TG_TMP/doctor.txt" 2>"$TG_TMP/doctor.err" || { cat "$TG_TMP/doctor.err"; tg_fail "doctor failed"; }
tg_expect_grep '^Key providers' "$TG_TMP/doctor.txt" "doctor report"
tg_expect_grep '^ *memlock \(RLIMIT_MEMLOCK\)' "$TG_TMP/doctor.txt" "doctor reports memlock"
tg_run 120 "${PODMAN_RUN[@]}" --rm --network none "$IMG" doctor --json >"$TG_TMP/doctor.json" 2>/dev/null ||
    tg_fail "doctor --json failed"
tg_expect_eq "$(jq -r '.key_providers[] | select(.name == "software") | .available' "$TG_TMP/doctor.json")" \
    true "doctor --json: software available"
mb=$(jq -r '.key_providers[] | select(.name == "cryptomb") | .available' "$TG_TMP/doctor.json")
echo "doctor: cryptomb available in the image: $mb"
if [ "$("$TLSGATE" doctor --json 2>/dev/null | jq -r '.key_providers[] | select(.name == "cryptomb") | .available')" = true ]; then
    tg_expect_eq "$mb" true "cryptomb runs in the image where it runs on the host (library in the image)"
fi

# ---------------------------------------------------------------------------
# A kubernetes.io/tls Secret as the kubelet lays it out in a volume.
# tg_secret_dir DIR CERT KEY: (re)point DIR/..data at a new timestamped
# directory holding CERT and KEY, atomically, as the kubelet's atomic writer
# does; mode 0440 group 65532 (defaultMode 0440 + fsGroup in the manifests).
tg_secret_seq=0
tg_secret_dir() {
    local dir=$1 cert=$2 key=$3 ts old=
    tg_secret_seq=$((tg_secret_seq + 1))
    ts="..2026_01_01_00_00_0${tg_secret_seq}.00000000${tg_secret_seq}"
    mkdir -p "$dir/$ts"
    chmod 0755 "$dir" "$dir/$ts"
    cp "$cert" "$dir/$ts/tls.crt"
    cp "$key" "$dir/$ts/tls.key"
    chgrp 65532 "$dir/$ts/tls.crt" "$dir/$ts/tls.key"
    chmod 0440 "$dir/$ts/tls.crt" "$dir/$ts/tls.key"
    [ -L "$dir/..data" ] && old=$(readlink "$dir/..data")
    ln -s "$ts" "$dir/..data_tmp"
    mv -T "$dir/..data_tmp" "$dir/..data"
    [ -L "$dir/tls.crt" ] || ln -s ..data/tls.crt "$dir/tls.crt"
    [ -L "$dir/tls.key" ] || ln -s ..data/tls.key "$dir/tls.key"
    [ -z "$old" ] || rm -rf "${dir:?}/$old"
}
read -r CERT KEY < <(tg_cert rsa www.example.com)
SECRET=$TG_TMP/secret-example-cert
tg_secret_dir "$SECRET" "$CERT" "$KEY"
certdir=/etc/tlsgate/certs/default/example-cert
MOUNTS=(-v "$SECRET:$certdir:ro" -v "$SECRET:/etc/tlsgate/certs/tlsgate/example-cert:ro")

tg_bench_serve upstream
tg_config tlsgate.yaml <<EOF
concurrency: 1
admin: { address: 127.0.0.1:0 }
listeners:
  - name: https
    address: 127.0.0.1:0
    tls:
      certificates:
        - certificate_chain: { filename: $certdir/tls.crt }
          private_key: { filename: $certdir/tls.key }
          private_key_provider:
            provider_name: cryptomb
            typed_config: { poll_delay: 0.001s }
            fallback: true
      session_resumption: false
    upstream: { address: $UP_ADDR }
EOF
chmod 0644 "$TG_TMP/tlsgate.yaml"
CONF=(-v "$TG_TMP/tlsgate.yaml:/etc/tlsgate/tlsgate.yaml:ro")

tg_case "check-config inside the image, certificate from a Secret-style mount"
tg_run 120 "${PODMAN_RUN[@]}" --rm --network none "${CONF[@]}" "${MOUNTS[@]}" "$IMG" \
    check-config /etc/tlsgate/tlsgate.yaml >"$TG_TMP/check.log" 2>&1 ||
    { cat "$TG_TMP/check.log"; tg_fail "check-config of a valid configuration failed"; }
sed "s|$certdir/tls.key|/etc/tlsgate/certs/default/missing/tls.key|" "$TG_TMP/tlsgate.yaml" >"$TG_TMP/bad.yaml"
chmod 0644 "$TG_TMP/bad.yaml"
rc=0
tg_run 120 "${PODMAN_RUN[@]}" --rm --network none -v "$TG_TMP/bad.yaml:/etc/tlsgate/tlsgate.yaml:ro" \
    "${MOUNTS[@]}" "$IMG" check-config /etc/tlsgate/tlsgate.yaml >"$TG_TMP/check-bad.log" 2>&1 || rc=$?
tg_expect_eq "$rc" 2 "check-config exit status for a missing key file"
tg_expect_grep '/etc/tlsgate/tlsgate.yaml:[0-9]+:[0-9]+: .*private_key.filename: cannot read' \
    "$TG_TMP/check-bad.log" "check-config names the file, line and key"

tg_case "check-config of deploy/kubernetes/{software,cryptomb,qat} inside the image"
if command -v node >/dev/null 2>&1 && [ -d "$TG_SRC_DIR/deploy/node_modules" ]; then
    for variant in software cryptomb qat; do
        cm=$TG_SRC_DIR/deploy/kubernetes/$variant/configmap.yaml
        [ -f "$cm" ] || tg_fail "$cm missing"
        node "$TG_SRC_DIR/deploy/validate.mjs" --print-config "$cm" >"$TG_TMP/$variant.yaml" ||
            tg_fail "cannot extract tlsgate.yaml from $cm"
        # The upstream stays a host name: check-config validates it, the
        # cluster resolves it at run time (no network needed here).
        chmod 0644 "$TG_TMP/$variant.yaml"
        tg_run 120 "${PODMAN_RUN[@]}" --rm --network none \
            -v "$TG_TMP/$variant.yaml:/etc/tlsgate/tlsgate.yaml:ro" "${MOUNTS[@]}" "$IMG" \
            check-config /etc/tlsgate/tlsgate.yaml >"$TG_TMP/check-$variant.log" 2>&1 ||
            { cat "$TG_TMP/check-$variant.log"; tg_fail "check-config of the $variant ConfigMap failed"; }
        tg_expect_grep 'configuration OK' "$TG_TMP/check-$variant.log" "check-config of the $variant ConfigMap"
        echo "$variant: OK$(sed -n "s/.*\(provider '[a-z]*' cannot run here\).*\(serving with '[a-z]*'\).*/: \1, \2/p" \
            "$TG_TMP/check-$variant.log" | head -n1)"
    done
else
    echo "SKIP: node or deploy/node_modules missing (scripts/setup.sh): ConfigMaps not checked"
fi

# ---------------------------------------------------------------------------
tg_case "serve: curl and tlsgate bench through the image"
tg_container gw --network host "${CONF[@]}" "${MOUNTS[@]}" "$IMG" run --config /etc/tlsgate/tlsgate.yaml
GW_CID=$CID
GW_LOG=$TG_TMP/gw.log
tg__img_ready() {
    tg__container_done "$GW_CID" && tg_fail "the container exited before it was ready"
    grep -Eq 'tlsgate \S+ ready' "$GW_LOG"
}
tg_wait_for 60 "the container to be ready" tg__img_ready
GW_PORT=$(grep -o 'listening on [^ ]*, upstream' "$GW_LOG" | head -n1 | sed 's/.*:\([0-9]*\),.*/\1/')
GW_ADMIN=$(sed -n 's/.*admin: listening on .* (port \([0-9]*\)).*/\1/p' "$GW_LOG" | head -n1)
provider=$(sed -n "s/.*certificate 0: .*key provider '\([a-z]*\)'.*/\1/p" "$GW_LOG" | head -n1)
echo "gateway in the image: port $GW_PORT, admin $GW_ADMIN, key provider $provider"
[ -n "$GW_PORT" ] && [ -n "$GW_ADMIN" ] && [ -n "$provider" ] || tg_fail "cannot read ports/provider from the log"
tg_wait_for 10 "/ready" tg__http_ok /ready

body=$(tg_run 30 curl -sS --cacert "$CERT" --resolve "www.example.com:$GW_PORT:127.0.0.1" \
    "https://www.example.com:$GW_PORT/")
tg_expect_eq "$body" "hello from tlsgate upstream" "curl through the image (certificate verified)"

tg_run 120 "$TLSGATE" bench -k -c 8 -n 400 "https://127.0.0.1:$GW_PORT/" >"$TG_TMP/bench.txt" 2>&1 ||
    { cat "$TG_TMP/bench.txt"; tg_fail "tlsgate bench failed"; }
tg_expect_grep '^Calls: 400 \(400 ok, 0 errors\)' "$TG_TMP/bench.txt" "bench: every call ok"
tg_expect_grep '^Handshakes: 400 full' "$TG_TMP/bench.txt" "bench: a full handshake per call"
tg_settle
tg_expect_ge "$(tg_stat tlsgate_handshakes_total result=ok)" 401 "handshakes ok"
tg_expect_ge "$(tg_stat tlsgate_keyprov_operations_total provider="$provider")" 401 \
    "key operations counted for provider $provider"

tg_case "SIGTERM drains and the container exits 0"
podman kill --signal TERM "$GW_CID" >/dev/null
tg_wait_for 45 "the container to exit" tg__container_done "$GW_CID"
tg_expect_eq "$(tg_container_exit_code "$GW_CID")" 0 "exit status after SIGTERM"
# The whole log from podman (the follower may not have written its last lines yet).
podman logs "$GW_CID" >"$TG_TMP/gw-final.log" 2>&1
tg_expect_grep 'drain' "$TG_TMP/gw-final.log" "the drain is logged"

# ---------------------------------------------------------------------------
tg_case "embedded default: own network namespace, state on a tmpfs"
tg_container default --network none --tmpfs /var/lib/tlsgate:rw,size=16m,mode=0700,U "$IMG"
DEF_CID=$CID
tg__def_ready() {
    tg__container_done "$DEF_CID" && tg_fail "the default container exited before it was ready"
    grep -Eq 'tlsgate \S+ ready' "$TG_TMP/default.log"
}
tg_wait_for 60 "the default configuration to be ready" tg__def_ready
tg_run 30 podman exec -d "$DEF_CID" tlsgate bench --serve 127.0.0.1:8080 >/dev/null
# Ready when one call gets through (the upstream may still be starting).
tg__def_upstream() {
    tg_run 10 podman exec "$DEF_CID" tlsgate bench -k -c 1 -n 1 --quiet https://127.0.0.1:8443/ 2>&1 |
        grep -q '^Calls: 1 (1 ok'
}
tg_wait_for 30 "the upstream inside the container" tg__def_upstream
tg_run 120 podman exec "$DEF_CID" tlsgate bench -k -c 4 -n 100 https://127.0.0.1:8443/ \
    >"$TG_TMP/bench-default.txt" 2>&1 || { cat "$TG_TMP/bench-default.txt"; tg_fail "bench in the container failed"; }
tg_expect_grep '^Calls: 100 \(100 ok, 0 errors\)' "$TG_TMP/bench-default.txt" "embedded default serves"
podman kill --signal TERM "$DEF_CID" >/dev/null
tg_wait_for 45 "the default container to exit" tg__container_done "$DEF_CID"
tg_expect_eq "$(tg_container_exit_code "$DEF_CID")" 0 "embedded default: exit status after SIGTERM"

# ---------------------------------------------------------------------------
tg_case "certificate rotation the kubelet's way"
if ! "$TLSGATE" --help 2>&1 | grep -Eq '^\s+reload\b'; then
    echo "SKIP rotation: this tlsgate has no hot reload ('reload' is not in 'tlsgate --help');"
    echo "     the case turns on by itself once it has"
else
    tg_container gw2 --network host "${CONF[@]}" "${MOUNTS[@]}" "$IMG" run --config /etc/tlsgate/tlsgate.yaml
    GW_CID=$CID
    GW_LOG=$TG_TMP/gw2.log
    tg_wait_for 60 "the container to be ready" tg__img_ready
    GW_PORT=$(grep -o 'listening on [^ ]*, upstream' "$GW_LOG" | head -n1 | sed 's/.*:\([0-9]*\),.*/\1/')
    GW_ADMIN=$(sed -n 's/.*admin: listening on .* (port \([0-9]*\)).*/\1/p' "$GW_LOG" | head -n1)
    served_serial() {
        timeout 10 openssl s_client -connect "127.0.0.1:$GW_PORT" -servername www.example.com \
            </dev/null 2>/dev/null | openssl x509 -noout -serial 2>/dev/null
    }
    old=$(served_serial)
    # Before tg_cert writes the new pair over the old one's files.
    [ "$old" = "$(openssl x509 -noout -serial -in "$CERT")" ] || tg_fail "served '$old' before rotation"
    rm -f "$TG_TMP/rsa-www.example.com.pem" "$TG_TMP/rsa-www.example.com.key"
    read -r CERT2 KEY2 < <(tg_cert rsa www.example.com)
    new=$(openssl x509 -noout -serial -in "$CERT2")
    reloads=$(tg_stat tlsgate_config_reloads_total result=ok)
    # No signal: reload.watch (on by default) sees the ..data swap through
    # the read-only bind mount.
    tg_secret_dir "$SECRET" "$CERT2" "$KEY2"
    tg__rotated() { [ "$(served_serial)" = "$new" ]; }
    tg_wait_for 60 "the rotated certificate to be served" tg__rotated
    tg_expect_grep 'reload \(certificate or key files changed\)' "$GW_LOG" "reloaded by the file watcher"
    # At least one: the old version's removal right after the swap (as the
    # kubelet does) usually falls within the debounce time, not always.
    tg_expect_ge "$(tg_stat tlsgate_config_reloads_total result=ok)" "$((reloads + 1))" "reloads ok"
    # And with SIGHUP, the way an operator asks: a reload that completes
    # after the signal was taken (the same certificate).
    podman kill --signal HUP "$GW_CID" >/dev/null
    tg__hup_done() {
        awk '/reload \(SIGHUP\)/ { hup = 1 } hup && /serves new connections/ { ok = 1 }
             END { exit !ok }' "$GW_LOG"
    }
    tg_wait_for 60 "a reload after SIGHUP" tg__hup_done
    tg_expect_eq "$(served_serial)" "$new" "the same certificate after SIGHUP"
    tg_expect_eq "$(tg_stat tlsgate_config_reloads_total result=error)" 0 "reloads failed"
    echo "rotation: ${old#serial=} -> ${new#serial=} by the file watcher (..data swap), then SIGHUP"
    tg_run 120 "$TLSGATE" bench -k -c 4 -n 100 "https://127.0.0.1:$GW_PORT/" >"$TG_TMP/bench-rot.txt" 2>&1 ||
        { cat "$TG_TMP/bench-rot.txt"; tg_fail "bench after rotation failed"; }
    tg_expect_grep '^Calls: 100 \(100 ok, 0 errors\)' "$TG_TMP/bench-rot.txt" "serving after rotation"
    podman kill --signal TERM "$GW_CID" >/dev/null
    tg_wait_for 45 "the container to exit" tg__container_done "$GW_CID"
    tg_expect_eq "$(tg_container_exit_code "$GW_CID")" 0 "exit status after rotation and SIGTERM"
fi

tg_pass
