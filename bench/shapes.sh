#!/usr/bin/env bash
# bench/shapes.sh: the other shapes users run (issue #11 item 3), through
# bench/providers.sh: tlsgate software and cryptomb against nginx, -c 64,
# one worker at 50% of CPU 1, for
#   1. RSA-2048, RSA-3072, RSA-4096 and ECDSA P-256 certificates, TLS 1.3 and
#      TLS 1.2 (ECDHE-RSA / ECDHE-ECDSA), X25519 key exchange;
#   2. RSA-2048 and ECDSA P-256, TLS 1.3 and 1.2, P-256 key exchange.
# Each part writes its own providers-<ts>.md/.json (see providers.sh --help;
# its TG_PROV_* settings can still be overridden, e.g. TG_PROV_SECONDS).
#
#   bench/shapes.sh [TLSGATE]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
case "${1:-}" in -h | --help)
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 0
  ;;
esac
export TG_PROV_VARIANTS=${TG_PROV_VARIANTS:-software cryptomb nginx}
export TG_PROV_CONNS=${TG_PROV_CONNS:-64}
export TG_PROV_TLS=${TG_PROV_TLS:-1.3 1.2}
export TG_PROV_ROUNDS=${TG_PROV_ROUNDS:-2}
export TG_PROV_HEADLINE_ROUNDS=${TG_PROV_HEADLINE_ROUNDS:-2}
export TG_PROV_SECONDS=${TG_PROV_SECONDS:-5}
export TG_PROV_CRYPTO=${TG_PROV_CRYPTO:-0}
TG_PROV_KX=X25519 TG_PROV_CERTS="rsa2048 rsa3072 rsa4096 ecdsa-p256" "$here/providers.sh" "$@"
TG_PROV_KX=P-256 TG_PROV_CERTS="rsa2048 ecdsa-p256" "$here/providers.sh" "$@"
