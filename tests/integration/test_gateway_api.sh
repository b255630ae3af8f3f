#!/usr/bin/env bash
# test_gateway_api: `tlsgate gateway-api` on the private key provider guide's
# objects (tests/data/gateway-api): the configuration it writes passes
# `tlsgate check-config` with certificates at the mapped paths; objects it
# cannot convert exit 2 with the reason and write nothing.
. "$(dirname "$0")/lib.sh"
tg_init 60
data=$TG_SRC_DIR/tests/data/gateway-api

tg_case "the guide's QAT objects -> a configuration check-config accepts"
read -r CERT KEY < <(tg_cert rsa www.example.com)
mkdir -p "$TG_TMP/certs/default/example-cert"
cp "$CERT" "$TG_TMP/certs/default/example-cert/tls.crt"
cp "$KEY" "$TG_TMP/certs/default/example-cert/tls.key"
"$TLSGATE" gateway-api --cert-dir "$TG_TMP/certs" --upstream cluster-ip -o "$TG_TMP/gw.yaml" \
    "$data/tls-termination-tcp.yaml" "$data/backend-service-kubectl.yaml" "$data/key-provider-qat.yaml" \
    2>"$TG_TMP/convert.err" || { cat "$TG_TMP/convert.err"; tg_fail "conversion failed"; }
cat "$TG_TMP/gw.yaml"
tg_expect_grep '^tlsgate gateway-api: 1 listener\(s\), 4 warning\(s\), 0 error\(s\)$' "$TG_TMP/convert.err" "summary"
tg_expect_grep 'provider_name: qat' "$TG_TMP/gw.yaml" "provider from the EnvoyPatchPolicy"
tg_expect_grep 'address: 10.96.18.7:3000' "$TG_TMP/gw.yaml" "upstream from the Service's cluster IP"
"$TLSGATE" check-config "$TG_TMP/gw.yaml" >"$TG_TMP/check.log" 2>&1 ||
    { cat "$TG_TMP/check.log"; tg_fail "check-config refused the converted configuration"; }
tg_expect_grep 'configuration OK \(1 listener' "$TG_TMP/check.log" "check-config"

tg_case "default: the upstream by the Service's DNS name, to stdout"
"$TLSGATE" gateway-api "$data/tls-termination-tcp.yaml" "$data/key-provider-cryptomb.yaml" \
    >"$TG_TMP/dns.yaml" 2>"$TG_TMP/dns.err" || { cat "$TG_TMP/dns.err"; tg_fail "conversion failed"; }
tg_expect_grep 'endpoints: \[ { address: backend.default.svc.cluster.local:3000 } \]' "$TG_TMP/dns.yaml" "DNS upstream"
tg_expect_grep 'provider_name: cryptomb' "$TG_TMP/dns.yaml" "cryptomb provider"
"$TLSGATE" gateway-api --cert-dir "$TG_TMP/certs" -o "$TG_TMP/dns-check.yaml" \
    "$data/tls-termination-tcp.yaml" "$data/key-provider-cryptomb.yaml" 2>/dev/null ||
    tg_fail "conversion with --cert-dir failed"
"$TLSGATE" check-config "$TG_TMP/dns-check.yaml" >"$TG_TMP/check-dns.log" 2>&1 ||
    { cat "$TG_TMP/check-dns.log"; tg_fail "check-config refused the host-name upstream"; }
tg_expect_grep 'certificate_chain: \{ filename: /etc/tlsgate/certs/default/example-cert/tls.crt \}' \
    "$TG_TMP/dns.yaml" "certificate path convention"

tg_case "unconvertible objects: exit 2, reason on stderr, nothing written"
for f in missing-certificate-refs passthrough httproute unknown-provider; do
    rc=0
    "$TLSGATE" gateway-api -o "$TG_TMP/$f.yaml" "$data/unconvertible/$f.yaml" 2>"$TG_TMP/$f.err" || rc=$?
    tg_expect_eq "$rc" 2 "$f: exit status"
    [ ! -e "$TG_TMP/$f.yaml" ] || tg_fail "$f: output written despite errors"
    tg_expect_grep "^$data/unconvertible/$f.yaml:[0-9]+:[0-9]+: error: " "$TG_TMP/$f.err" "$f: error line"
done
tg_expect_grep "unknown provider 'hsm' \(known: software, deferred[^)]*\)" \
    "$TG_TMP/unknown-provider.err" "unknown provider named"

tg_case "usage errors"
rc=0; "$TLSGATE" gateway-api >/dev/null 2>&1 || rc=$?
tg_expect_eq "$rc" 2 "no FILE"
rc=0; "$TLSGATE" gateway-api --upstream foo x >/dev/null 2>&1 || rc=$?
tg_expect_eq "$rc" 2 "bad --upstream"
rc=0; "$TLSGATE" gateway-api "$TG_TMP/nonexistent.yaml" >/dev/null 2>&1 || rc=$?
tg_expect_eq "$rc" 1 "unreadable FILE"

tg_pass
