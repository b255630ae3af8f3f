#!/usr/bin/env bash
# Build tlsgate's OCI image from Debian packages, without a base image from a
# container registry:
#
#   scripts/image.sh [BUILD_DIR [OUTPUT.tar]]     (make image)
#
#   1. mmdebstrap --variant=extract: the runtime libraries of the build
#      (libc6, libssl3, libev4, libyaml-0-2, libc-ares2 and their dependencies) from the
#      bookworm suites of the mirror this machine's apt already uses;
#   2. prune what a gateway never runs (apt/dpkg state, gconv, docs but the
#      copyright files), add tlsgate, the crypto_mb and qatlib libraries that
#      scripts/setup.sh unpacked into .deps/root, a passwd/group with the
#      user tlsgate (65532:65532) and the documented directories;
#   3. one reproducible layer (sorted, numeric owners, mtimes clamped to the
#      commit's time) added with umoci to a fresh OCI layout, the image
#      configuration (user, entrypoint, environment, volume, labels) set with
#      umoci, and the layout packed as an OCI archive (podman load -i, skopeo
#      copy oci-archive:...);
#   4. loaded into podman as localhost/tlsgate:VERSION and :latest when podman
#      is installed (TG_IMAGE_LOAD=0 to skip).
#
# No shell, no package manager, no dpkg database in the image: `tlsgate
# doctor`, `check-config` and `version` are the tools inside. Debian package
# names and versions are recorded in /var/lib/dpkg/status.d/ (one stanza per
# package, as distroless images do) so that image scanners still see them.
#
# Environment: TG_IMAGE_SUITE (default bookworm: the suite the binary was
# built on; trixie also works: Debian 13, OpenSSL 3.5, the same binary),
# TG_IMAGE_PACKAGES (the runtime packages, space-separated; needed for any
# other suite, whose package names differ), TG_IMAGE_MIRROR (a Debian
# mirror URI; default: this machine's), TG_IMAGE_SECURITY_MIRROR,
# TG_IMAGE_NAME (default tlsgate), TG_IMAGE_LOAD.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
out=${2:-$build/tlsgate-image.tar}
suite=${TG_IMAGE_SUITE:-bookworm}
name=${TG_IMAGE_NAME:-tlsgate}
uid=65532
libdir=usr/lib/x86_64-linux-gnu
vendor_root=${TG_DEPS_ROOT:-$here/.deps/root}

log() { printf 'image: %s\n' "$*"; }
die() { printf 'image: error: %s\n' "$*" >&2; exit 1; }

for tool in mmdebstrap umoci tar objcopy jq; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found: run scripts/setup.sh"
done
[ -x "$build/tlsgate" ] || die "$build/tlsgate not built: make build"
[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap and the layer need real file owners)"

version=$("$build/tlsgate" version | awk '{print $2; exit}')
[ -n "$version" ] || die "cannot read the version of $build/tlsgate"
revision=$(git -C "$here" rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$revision" != unknown ] && [ -n "$(git -C "$here" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  revision="$revision-dirty"
fi
source_url=$(git -C "$here" remote get-url origin 2>/dev/null || true)
# Reproducible: every timestamp in the image is the commit's time.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$here" log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)

# The mirror: the one this machine's apt uses (deb822 or one-line sources).
apt_uris() {
  { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
    grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}'; } |
    grep -i debian || true
}
mirror=${TG_IMAGE_MIRROR:-$(apt_uris | grep -v -- '-security' | head -n1)}
security=${TG_IMAGE_SECURITY_MIRROR:-$(apt_uris | grep -- '-security' | head -n1)}
[ -n "$mirror" ] || die "no Debian mirror in this machine's apt sources (set TG_IMAGE_MIRROR)"

work=$(mktemp -d "${TMPDIR:-/tmp}/tlsgate-image-XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
{
  printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\n' "$mirror" "$suite" "$suite"
  printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
  if [ -n "$security" ]; then
    printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\n' "$security" "$suite"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
  fi
} >"$work/image.sources"

# ---- 1. the Debian runtime libraries ----
# The libraries tlsgate is linked with, by package (so a new NEEDED entry
# that no listed package provides is caught below, not at run time).
# Their names change between releases (Debian 13's 64-bit time_t rebuilds).
case "$suite" in
  bookworm) default_packages="libc6 libssl3 libev4 libyaml-0-2 libc-ares2" ;;
  trixie) default_packages="libc6 libssl3t64 libev4t64 libyaml-0-2 libcares2" ;;
  *) default_packages="" ;;
esac
read -r -a packages <<<"${TG_IMAGE_PACKAGES:-$default_packages}"
[ "${#packages[@]}" -gt 0 ] ||
  die "no package list for suite '$suite': set TG_IMAGE_PACKAGES (the libc, OpenSSL, libev, libyaml and c-ares runtime packages)"
log "mmdebstrap $suite (${packages[*]}) from $mirror"
if ! mmdebstrap --variant=extract --format=directory --skip=cleanup/apt/cache \
     --include="$(IFS=,; echo "${packages[*]}")" \
     "$suite" "$root" "$work/image.sources" >"$work/mmdebstrap.log" 2>&1; then
  tail -n 20 "$work/mmdebstrap.log" >&2
  die "mmdebstrap failed"
fi

# Package records for scanners: one control stanza per package.
mkdir -p "$work/status.d"
for deb in "$root"/var/cache/apt/archives/*.deb; do
  pkg=$(dpkg-deb -f "$deb" Package)
  { dpkg-deb -f "$deb" Package Version Architecture Source Maintainer Homepage
    echo "Status: install ok installed"; } >"$work/status.d/$pkg"
done
[ -n "$(ls "$work/status.d")" ] || die "no package was downloaded"

# ---- 2. prune, then add tlsgate and the vendor libraries ----
rm -rf "${root:?}"/dev/* "$root"/etc/apt "$root"/etc/dpkg "$root"/var/lib/apt "$root"/var/lib/dpkg \
       "$root"/var/cache "$root"/var/log "$root"/etc/resolv.conf "$root"/etc/hostname \
       "$root"/etc/fstab "$root"/usr/share/lintian "$root/$libdir/gconv"
find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
mkdir -p "$root/var/lib/dpkg/status.d"
cp "$work"/status.d/* "$root/var/lib/dpkg/status.d/"

# Merged /usr: from Debian 13 the packages ship only under /usr and the
# top-level links (/lib64 holds the program loader's path) come from
# base-files, which an extract-only root lacks. Make them as Debian does.
for d in bin sbin lib lib64; do
  if [ ! -e "$root/$d" ] && [ ! -L "$root/$d" ] && [ -d "$root/usr/$d" ]; then
    ln -s "usr/$d" "$root/$d"
  fi
done
install -d -m 0755 "$root/usr/bin" "$root/etc/tlsgate" "$root/$libdir"
objcopy --strip-debug "$build/tlsgate" "$root/usr/bin/tlsgate"
chmod 0755 "$root/usr/bin/tlsgate"

vendor="none"
if [ -f "$vendor_root/$libdir/libcrypto_mb.so.11" ] || [ -f "$vendor_root/$libdir/libqat.so.4" ]; then
  vendor=""
  for soname in libcrypto_mb.so.11 libusdm.so.0 libqat.so.4; do
    src="$vendor_root/$libdir/$soname"
    if [ ! -e "$src" ]; then
      log "warning: $soname not in $vendor_root: its provider will fall back to software"
      continue
    fi
    real=$(readlink -f "$src")
    cp "$real" "$root/$libdir/"
    ln -sf "$(basename "$real")" "$root/$libdir/$soname"
    vendor="$vendor${vendor:+ }$soname"
  done
  for pkg in libcrypto-mb11 libqat4 libusdm0; do
    if [ -f "$vendor_root/usr/share/doc/$pkg/copyright" ]; then
      install -D -m 0644 "$vendor_root/usr/share/doc/$pkg/copyright" \
        "$root/usr/share/doc/$pkg/copyright"
      v=$(zcat "$vendor_root/usr/share/doc/$pkg/changelog.Debian.gz" 2>/dev/null |
          sed -n '1s/^[^ ]* (\([^)]*\)).*/\1/p')
      printf 'Package: %s\nVersion: %s\nArchitecture: amd64\nStatus: install ok installed\n' \
        "$pkg" "${v:-unknown}" >"$root/var/lib/dpkg/status.d/$pkg"
    fi
  done
else
  log "warning: no crypto_mb/qatlib in $vendor_root (scripts/setup.sh): cryptomb and qat will fall back to software"
fi

# Users: root (no login) and the unprivileged user tlsgate runs as.
cat >"$root/etc/passwd" <<EOF
root:x:0:0:root:/root:/usr/sbin/nologin
tlsgate:x:$uid:$uid:tlsgate:/var/lib/tlsgate:/usr/sbin/nologin
EOF
cat >"$root/etc/group" <<EOF
root:x:0:
tlsgate:x:$uid:
EOF
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf"
install -d -m 0700 -o "$uid" -g "$uid" "$root/var/lib/tlsgate"
install -d -m 1777 "$root/tmp"
install -d -m 0755 "$root/dev" "$root/proc" "$root/sys" "$root/run"

# Every library tlsgate (and each vendor library) needs must be in the image.
missing=$(for f in "$root/usr/bin/tlsgate" "$root/$libdir"/lib{crypto_mb,qat,usdm}.so.*; do
            [ -f "$f" ] && objdump -p "$f" | awk '/NEEDED/ {print $2}'
          done | sort -u | while read -r lib; do
            [ -e "$root/lib/x86_64-linux-gnu/$lib" ] || [ -e "$root/$libdir/$lib" ] || echo "$lib"
          done)
[ -z "$missing" ] || die "libraries missing from the image: $missing"

# ---- 3. the OCI layout and archive ----
tar --sort=name --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$root" -cf "$work/layer.tar" .
layout=$work/oci
umoci init --layout "$layout"
umoci new --image "$layout:$version"
umoci raw add-layer --image "$layout:$version" --history.created "$created" \
  --history.created_by "scripts/image.sh: mmdebstrap $suite ${packages[*]}; tlsgate $version; $vendor" \
  "$work/layer.tar"
labels=(
  --config.label "org.opencontainers.image.title=tlsgate"
  --config.label "org.opencontainers.image.description=TLS-terminating TCP gateway with asynchronous private-key providers"
  --config.label "org.opencontainers.image.version=$version"
  --config.label "org.opencontainers.image.revision=$revision"
  --config.label "org.opencontainers.image.created=$created"
  --config.label "org.opencontainers.image.base.name=debian:$suite (mmdebstrap, packages only)"
  --config.label "io.tlsgate.vendor-libraries=$vendor"
)
[ -z "$source_url" ] || labels+=(--config.label "org.opencontainers.image.source=$source_url")
umoci config --image "$layout:$version" --no-history --created "$created" \
  --architecture amd64 --os linux \
  --config.user "$uid:$uid" \
  --config.entrypoint /usr/bin/tlsgate --config.cmd run \
  --config.workingdir / \
  --config.env PATH=/usr/bin \
  --config.env TLSGATE_STATE_DIR=/var/lib/tlsgate \
  --config.env "TG_CRYPTO_MB_LIB=/$libdir/libcrypto_mb.so.11" \
  --config.env "TG_QAT_LIB_DIR=/$libdir" \
  --config.volume /var/lib/tlsgate \
  --config.exposedports 8443/tcp --config.exposedports 9901/tcp \
  --config.stopsignal SIGTERM \
  "${labels[@]}" \
  --manifest.annotation "org.opencontainers.image.version=$version" \
  --manifest.annotation "org.opencontainers.image.revision=$revision"
umoci gc --layout "$layout"
# The reference name an OCI-archive consumer gives the image (podman load):
# the full name, not only umoci's tag.
jq --arg ref "$name:$version" \
  '.manifests[0].annotations["org.opencontainers.image.ref.name"] = $ref' \
  "$layout/index.json" >"$work/index.json"
mv "$work/index.json" "$layout/index.json"

mkdir -p "$(dirname "$out")"
tar --sort=name --numeric-owner --owner=0 --group=0 --mtime="@$SOURCE_DATE_EPOCH" \
    -C "$layout" -cf "$out.tmp" .
mv "$out.tmp" "$out"
log "wrote $out ($(du -h "$out" | cut -f1) archive; $(du -sh "$root" | cut -f1) unpacked)"
log "labels: version=$version revision=$revision vendor=[$vendor]"

# ---- 4. load into podman ----
if [ "${TG_IMAGE_LOAD:-1}" != 0 ] && command -v podman >/dev/null 2>&1; then
  podman load -q -i "$out" >/dev/null
  podman tag "localhost/$name:$version" "localhost/$name:latest"
  log "loaded into podman: localhost/$name:$version (also :latest)"
fi
