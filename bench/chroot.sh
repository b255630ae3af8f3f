#!/usr/bin/env bash
# bench/chroot.sh: run a benchmark script inside a root file system of
# another Debian release (default: Debian 13 "trixie", OpenSSL 3.5), so that
# every peer of that run (nginx, haproxy, hitch, tlsgate and its bench
# client) links the other release's OpenSSL. The tlsgate binary built here
# is used as it is (OpenSSL 3.x keeps its ABI, and a newer glibc runs an
# older program); the repository is mounted at the same path inside.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
TG_LIB_PROG=chroot.sh
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$SCRIPT_DIR/lib.sh"

usage() {
  cat <<EOF
usage: bench/chroot.sh [-h|--help] COMMAND [ARG...]

Runs COMMAND (a path relative to the repository, e.g. bench/compare.sh) with
its arguments and the caller's TG_* environment inside a root file system of
another Debian suite, made once with mmdebstrap from the mirror this
system's apt already uses, and kept for later runs. Needs root and
mmdebstrap. Example, OpenSSL 3.5 side by side:

  TG_BENCH_PEERS="nginx tlsgate-software tlsgate-cryptomb tlsgate-software-noavx512" \\
    bench/chroot.sh bench/compare.sh build/tlsgate

Environment (defaults in brackets):
  TG_CHROOT_SUITE     Debian suite [trixie]
  TG_CHROOT_DIR       where the root lives [$REPO/.state/bench-root-<suite>]
  TG_CHROOT_PACKAGES  packages of the root, comma-separated [trixie's names of
                      what the bench scripts run: OpenSSL, nginx with its
                      stream module, haproxy, hitch, libcrypto-mb, tools]
EOF
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "" | -*) usage >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || die "needs root (mmdebstrap, mount, chroot)"
command -v mmdebstrap >/dev/null || die "'mmdebstrap' is not installed (Debian: mmdebstrap)"
[ -e "$REPO/$1" ] || die "no '$1' in $REPO (give a path relative to the repository)"

SUITE=${TG_CHROOT_SUITE:-trixie}
ROOT=${TG_CHROOT_DIR:-$REPO/.state/bench-root-$SUITE}
default_pkgs=libssl3t64,openssl,libev4t64,libyaml-0-2,libcares2,libcrypto-mb11
default_pkgs+=,nginx,libnginx-mod-stream,haproxy,hitch,hey
default_pkgs+=,jq,iproute2,procps,util-linux,mawk,strace,ca-certificates
PKGS=${TG_CHROOT_PACKAGES:-$default_pkgs}
if [ "$SUITE" != trixie ] && [ -z "${TG_CHROOT_PACKAGES:-}" ]; then
  die "TG_CHROOT_PACKAGES must name the packages for suite '$SUITE' (package names differ by release)"
fi

mirror=$(
  { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
    grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}'; } |
    grep -v -- '-security' | grep -i debian | head -n1 || true)

# Anything still mounted under the root (a run killed before its clean-up)
# would be removed with it, or mounted twice: refuse, name it.
left=$(awk -v r="$ROOT/" 'index($2, r) == 1 { print $2 }' /proc/self/mounts)
[ -z "$left" ] || die "still mounted under $ROOT (another chroot.sh running, or umount -R them): $left"

stamp=$ROOT/.tlsgate-root-ok
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$PKGS" ]; then
  [ -n "$mirror" ] || die "no Debian mirror in this system's apt sources"
  rm -rf "$ROOT"
  mkdir -p "$(dirname "$ROOT")"
  note "making a $SUITE root in $ROOT (mmdebstrap, about a minute)"
  # No daemon of those packages may start (policy-rc.d answers 101). The
  # hook is run by mmdebstrap, with the root as $1.
  # shellcheck disable=SC2016
  mmdebstrap --variant=minbase --include="$PKGS" \
    --customize-hook='printf "#!/bin/sh\nexit 101\n" >"$1/usr/sbin/policy-rc.d"; chmod +x "$1/usr/sbin/policy-rc.d"' \
    "$SUITE" "$ROOT" "$mirror" >"$ROOT.log" 2>&1 ||
    { tail -n 20 "$ROOT.log" >&2; die "mmdebstrap failed (log: $ROOT.log)"; }
  printf '%s' "$PKGS" >"$stamp"
fi

# Mounts: made here, undone at exit (last first). rslave: nothing unmounted
# inside can propagate back to this system's /sys or /dev.
MOUNTS=()
# shellcheck disable=SC2317 # (run by the EXIT trap)
unmount_all() {
  local i
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount -R "${MOUNTS[$i]}" 2>/dev/null || umount -lR "${MOUNTS[$i]}" 2>/dev/null || true
  done
}
trap unmount_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
bind() { # SRC DST [rbind]
  mkdir -p "$2"
  if [ "${3:-}" = rbind ]; then
    mount --rbind "$1" "$2" && mount --make-rslave "$2"
  else
    mount --bind "$1" "$2"
  fi
  MOUNTS+=("$2")
}
mount -t proc proc "$ROOT/proc"
MOUNTS+=("$ROOT/proc")
bind /sys "$ROOT/sys" rbind
bind /dev "$ROOT/dev" rbind
bind "$REPO" "$ROOT$REPO"

note "running $* inside $SUITE ($(chroot "$ROOT" openssl version))"
env_args=()
while IFS= read -r v; do env_args+=("$v"); done < <(env | grep -E '^TG_[A-Z0-9_]+=' || true)
set +e
# shellcheck disable=SC2016 # ($1 and $@ are the inner shell's)
chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
  "${env_args[@]}" /bin/bash -c 'cd "$1" && shift && exec "$@"' bash "$REPO" "$@"
rc=$?
set -e
exit "$rc"
