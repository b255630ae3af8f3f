#!/usr/bin/env bash
# test_gateway_api: `tlsgate gateway-api` on the private key provider guide's
# objects (tests/data/gateway-api): the configuration it writes passes
# `tlsgate check-config` with certificates at the mapped paths; client
# certificates (a ClientTrafficPolicy with its CA ConfigMap) are asked for by
# the gateway it runs (a client with one gets through, one without is
# refused); objects it cannot convert exit 2 with the reason and write nothing.
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

tg_case "mutual TLS: a ClientTrafficPolicy and its CA ConfigMap -> client_certificate; handshakes"
# A CA and a client certificate it issued; the ConfigMap carries the CA the
# way kubectl create configmap --from-file=ca.crt=... writes it.
openssl req -x509 -nodes -days 2 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj "/CN=Test Clients CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$TG_TMP/ca.key" -out "$TG_TMP/ca.crt" >"$TG_TMP/ca.log" 2>&1 || { cat "$TG_TMP/ca.log"; tg_fail "CA"; }
openssl req -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj "/CN=client" \
    -keyout "$TG_TMP/client.key" -out "$TG_TMP/client.csr" >"$TG_TMP/client.log" 2>&1 ||
    { cat "$TG_TMP/client.log"; tg_fail "client CSR"; }
printf 'extendedKeyUsage=clientAuth\n' >"$TG_TMP/client.ext"
openssl x509 -req -days 2 -in "$TG_TMP/client.csr" -CA "$TG_TMP/ca.crt" -CAkey "$TG_TMP/ca.key" \
    -CAcreateserial -extfile "$TG_TMP/client.ext" -out "$TG_TMP/client.crt" >>"$TG_TMP/client.log" 2>&1 ||
    { cat "$TG_TMP/client.log"; tg_fail "client certificate"; }
{
    sed -n '1,/^---$/p' "$data/client-traffic-policy-mtls.yaml"
    printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: { name: clients-ca, namespace: default }\ndata:\n  ca.crt: |\n'
    sed 's/^/    /' "$TG_TMP/ca.crt"
} >"$TG_TMP/ctp.yaml"
"$TLSGATE" gateway-api --cert-dir "$TG_TMP/certs" --admin 127.0.0.1:0 -o "$TG_TMP/mtls.yaml" \
    "$data/tls-termination-tcp.yaml" "$TG_TMP/ctp.yaml" 2>"$TG_TMP/mtls.err" ||
    { cat "$TG_TMP/mtls.err"; tg_fail "conversion failed"; }
cat "$TG_TMP/mtls.yaml"
tg_expect_grep '^tlsgate gateway-api: 1 listener\(s\), 1 warning\(s\), 0 error\(s\)$' "$TG_TMP/mtls.err" "summary"
tg_expect_grep "^      # CA: ConfigMap default/clients-ca, key ca.crt, mounted at $TG_TMP/certs/default/clients-ca/\$" \
    "$TG_TMP/mtls.yaml" "where the CA is mounted"
tg_expect_grep '^        mode: require$' "$TG_TMP/mtls.yaml" "mode require"
# The same policy attached by a label selector (kind Gateway, no labels
# asked: every Gateway of its namespace) converts to the same configuration.
sed -e 's/^  targetRefs:$/  targetSelectors:/' -e '/^      name: eg$/d' "$TG_TMP/ctp.yaml" >"$TG_TMP/ctp-sel.yaml"
tg_expect_grep '^  targetSelectors:$' "$TG_TMP/ctp-sel.yaml" "the selector variant was made"
"$TLSGATE" gateway-api --cert-dir "$TG_TMP/certs" --admin 127.0.0.1:0 -o "$TG_TMP/mtls-sel.yaml" \
    "$data/tls-termination-tcp.yaml" "$TG_TMP/ctp-sel.yaml" 2>"$TG_TMP/mtls-sel.err" ||
    { cat "$TG_TMP/mtls-sel.err"; tg_fail "conversion with targetSelectors failed"; }
diff <(tail -n +2 "$TG_TMP/mtls.yaml") <(tail -n +2 "$TG_TMP/mtls-sel.yaml") ||
    tg_fail "targetSelectors and targetRefs converted differently"
# The kubelet's layout of a ConfigMap volume: one file per key.
mkdir -p "$TG_TMP/certs/default/clients-ca"
cp "$TG_TMP/ca.crt" "$TG_TMP/certs/default/clients-ca/ca.crt"
"$TLSGATE" check-config "$TG_TMP/mtls.yaml" >"$TG_TMP/check-mtls.log" 2>&1 ||
    { cat "$TG_TMP/check-mtls.log"; tg_fail "check-config refused the mutual TLS configuration"; }
# Run it on 127.0.0.1 with a local upstream instead of the cluster's.
tg_bench_serve
sed -e 's/address: 0\.0\.0\.0:8443/address: 127.0.0.1:0/' \
    -e "s/endpoints: .*/endpoints: [ { address: \"$UP_ADDR\" } ]/" "$TG_TMP/mtls.yaml" >"$TG_TMP/mtls-run.yaml"
tg_gateway mtls-run.yaml
c() { tg_run 30 curl -sS --cacert "$CERT" --resolve "www.example.com:$GW_PORT:127.0.0.1" "$@" \
    -o /dev/null -w '%{http_code}' "https://www.example.com:$GW_PORT/"; }
code=$(c --cert "$TG_TMP/client.crt" --key "$TG_TMP/client.key") || tg_fail "handshake with a client certificate failed"
tg_expect_eq "$code" 200 "with a client certificate"
rc=0; c >"$TG_TMP/nocert.out" 2>&1 || rc=$?
[ "$rc" != 0 ] || { cat "$TG_TMP/nocert.out"; tg_fail "a client without a certificate got in"; }
tg_expect_grep "$TG_CURL_CERT_REQUIRED" "$TG_TMP/nocert.out" "TLS 1.3 certificate_required alert (or the reset after it)"
tg_settle
# What proves the refusal was for the missing certificate when curl saw only the reset.
tg_expect_eq "$(tg_stat tlsgate_client_certificates_total result=missing)" 1 "refusal counted as missing"
tg_expect_eq "$(tg_stat tlsgate_handshakes_total result=client_certificate)" 1 "handshake refused for its client certificate"
tg_gateway_stop

tg_case "mutual TLS: listener frontendValidation and Gateway spec.tls.frontend pass check-config"
cat >"$TG_TMP/fv.yaml" <<'YAML'
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: fv, namespace: default }
spec:
  gatewayClassName: eg
  listeners:
    - name: tls
      protocol: TLS
      port: 9443
      tls:
        certificateRefs: [{ kind: Secret, group: "", name: example-cert }]
        frontendValidation:
          caCertificateRefs: [{ kind: ConfigMap, group: "", name: clients-ca }]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: { name: fv-app, namespace: default }
spec:
  parentRefs: [{ name: fv }]
  rules: [{ backendRefs: [{ name: backend, port: 3000 }] }]
YAML
for f in "$TG_TMP/fv.yaml" "$data/mtls/gateway-frontend.yaml"; do
    n=$(basename "$f" .yaml)
    "$TLSGATE" gateway-api --cert-dir "$TG_TMP/certs" -o "$TG_TMP/$n-out.yaml" "$f" 2>"$TG_TMP/$n.err" ||
        { cat "$TG_TMP/$n.err"; tg_fail "$n: conversion failed"; }
    tg_expect_grep "ca: \{ filename: $TG_TMP/certs/default/clients-ca/ca.crt \}" "$TG_TMP/$n-out.yaml" "$n: CA file"
    "$TLSGATE" check-config "$TG_TMP/$n-out.yaml" >"$TG_TMP/check-$n.log" 2>&1 ||
        { cat "$TG_TMP/check-$n.log"; tg_fail "$n: check-config refused the configuration"; }
done
tg_expect_grep '^        mode: optional$' "$TG_TMP/gateway-frontend-out.yaml" "perPort AllowInsecureFallback"

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
