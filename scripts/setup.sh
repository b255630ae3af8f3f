#!/usr/bin/env bash
# Install everything tlsgate needs to build, test, demo and benchmark on a
# Debian bookworm (or newer) machine. Idempotent: safe to run again.
#
#   scripts/setup.sh            install packages + vendor libraries
#   TG_SETUP_SKIP_VENDOR=1 ...  skip the crypto_mb / qatlib libraries
#
# Vendor libraries (Intel ipp-crypto multi-buffer "crypto_mb", qatlib) are
# Debian 13 packages. Where apt has them (trixie, Ubuntu 24.04+) they are
# installed as packages; on bookworm their .debs are fetched from the trixie
# suite of the mirror this system already uses (read from its own apt
# sources; no host is written here) and unpacked into .deps/root, a
# project-local prefix. tlsgate loads them at run time; without them it
# still builds and tests, and reports those providers as unavailable.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
deps="$here/.deps"
root="$deps/root"

log() { printf 'setup: %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    log "not root and no sudo: cannot install packages"; exit 1; fi
fi

# dnsmasq-base: the DNS server the upstream-cluster tests run on a loopback
# port (the binary alone; the `dnsmasq` package would add a system service).
packages=(
  build-essential cmake pkg-config clang clang-format libclang-rt-14-dev
  libssl-dev openssl libev-dev libyaml-dev libcmocka-dev libc-ares-dev
  valgrind curl python3 procps iproute2 psmisc jq linux-perf
  dnsmasq-base
  hey wrk gnuplot-nox
  # Allocators an operator may preload (docs/OPERATIONS.md); the tests check
  # that memory still returns under each, the benchmarks measure them.
  libtcmalloc-minimal4 libjemalloc2
  nginx-light libnginx-mod-stream haproxy hitch
  # pkcs11 provider: PKCS#11 header, SoftHSM2 token, p11-kit remoting, pkcs11-tool
  libp11-kit-dev p11-kit p11-kit-modules softhsm2 opensc
)
# Container image and Kubernetes manifests (make image, make test-image, the
# deploy tests): Debian's image tools, and Node.js for the schema checks
# unless a Node.js is installed already.
packages+=(mmdebstrap umoci podman runc)
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  # Package post-install scripts must not start the peers' daemons: the
  # benchmarks start their own instances on loopback.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    created_policy=1
  fi
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  [ "$created_policy" = 1 ] && $SUDO rm -f "$policy"
else
  log "packages: all present"
fi

# ---- npm packages of the manifest checks (deploy/package.json, pinned) ----
if [ -f "$here/deploy/package-lock.json" ]; then
  if [ ! -f "$here/deploy/node_modules/.package-lock.json" ] ||
     [ "$here/deploy/package-lock.json" -nt "$here/deploy/node_modules/.package-lock.json" ]; then
    log "npm ci in deploy/"
    (cd "$here/deploy" && npm ci --no-audit --no-fund --loglevel=error)
  else
    log "npm packages: present in deploy/node_modules"
  fi
fi

# ---- vendor libraries ----
if [ "${TG_SETUP_SKIP_VENDOR:-0}" = 1 ]; then
  log "vendor libraries: skipped (TG_SETUP_SKIP_VENDOR=1)"
  exit 0
fi

vendor_pkgs=(libcrypto-mb11 libcrypto-mb-dev libqat4 libqat-dev libusdm0 libusdm-dev)

if apt-cache show libcrypto-mb-dev >/dev/null 2>&1; then
  # A release that packages them: install normally.
  need=()
  for p in "${vendor_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then
    log "installing vendor packages: ${need[*]}"
    $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" ||
      log "warning: vendor packages could not be installed; cryptomb/qat will be unavailable"
  fi
  exit 0
fi

stamp="$root/.vendor-ok"
if [ -f "$stamp" ]; then
  log "vendor libraries: present in $root"
  exit 0
fi

# The mirror URI of this system's own Debian sources (deb822 or one-line).
mirror=$(
  { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}';
    grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}'; } |
  grep -v -- '-security' | grep -i debian | head -n1 || true)
if [ -z "$mirror" ]; then
  log "warning: no Debian mirror found in the apt sources; cryptomb/qat will be unavailable"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/debs" "$root"
cat >"$work/trixie.sources" <<EOF
Types: deb
URIs: $mirror
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
aptopts=(-o "Dir::Etc::sourcelist=$work/trixie.sources" -o "Dir::Etc::sourceparts=-"
         -o "Dir::State::Lists=$work/lists" -o "APT::Get::List-Cleanup=0"
         -o "Debug::NoLocking=1")
log "fetching vendor libraries from the trixie suite of $mirror"
if ! apt-get "${aptopts[@]}" update -q >"$work/update.log" 2>&1; then
  log "warning: cannot read the trixie index (see below); cryptomb/qat will be unavailable"
  tail -n 5 "$work/update.log" >&2 || true
  exit 0
fi
chmod 777 "$work/debs"
if ! (cd "$work/debs" && apt-get "${aptopts[@]}" download "${vendor_pkgs[@]}" >"$work/dl.log" 2>&1); then
  log "warning: download failed; cryptomb/qat will be unavailable"
  tail -n 5 "$work/dl.log" >&2 || true
  exit 0
fi
for deb in "$work"/debs/*.deb; do
  dpkg-deb -x "$deb" "$root"
  log "unpacked $(basename "$deb")"
done
touch "$stamp"
log "vendor libraries ready in $root"
