#!/usr/bin/env bash
# test_manifests: every Kubernetes manifest in deploy/kubernetes and every
# Gateway API object in tests/data/gateway-api validates offline against the
# Kubernetes OpenAPI schema (deploy/validate.mjs, models from the pinned npm
# packages of deploy/package.json), unknown fields included; the manifests
# also keep tlsgate's promises (--policy). The kustomize overlays are
# rendered with `kubectl kustomize` when kubectl is installed and the result
# validated too. Negative cases: deliberately broken copies must fail, each
# mistake reported.
TG_SRC_DIR=${TG_SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$TG_SRC_DIR/tests/integration/lib.sh"
tg_init 120

validate=$TG_SRC_DIR/deploy/validate.mjs
command -v node >/dev/null 2>&1 || tg_fail "node not installed (scripts/setup.sh)"
[ -d "$TG_SRC_DIR/deploy/node_modules/kubernetes-models" ] ||
    tg_fail "deploy/node_modules missing: run scripts/setup.sh (npm ci in deploy/)"

tg_case "deploy/kubernetes: schema + policy"
node "$validate" --policy "$TG_SRC_DIR/deploy/kubernetes" >"$TG_TMP/manifests.txt" 2>&1 ||
    { cat "$TG_TMP/manifests.txt"; tg_fail "a manifest is invalid"; }
tail -n 1 "$TG_TMP/manifests.txt"
n=$(find "$TG_SRC_DIR/deploy/kubernetes" -name '*.yaml' ! -name kustomization.yaml ! -name '*.patch.yaml' | wc -l)
tg_expect_grep "^$n passed, 0 failed" "$TG_TMP/manifests.txt" "every manifest file validated"

tg_case "deploy/kubernetes overlays rendered with kubectl kustomize"
if command -v kubectl >/dev/null 2>&1; then
    for dir in "$TG_SRC_DIR"/deploy/kubernetes/*/; do
        [ -f "$dir/kustomization.yaml" ] || continue
        v=$(basename "$dir")
        tg_run 60 kubectl kustomize "$dir" >"$TG_TMP/render-$v.yaml" 2>"$TG_TMP/render-$v.err" ||
            { cat "$TG_TMP/render-$v.err"; tg_fail "kubectl kustomize $v failed"; }
        node "$validate" --policy --quiet - <"$TG_TMP/render-$v.yaml" >"$TG_TMP/render-$v.txt" 2>&1 ||
            { cat "$TG_TMP/render-$v.txt"; tg_fail "rendered overlay $v is invalid"; }
        echo "$v: $(tail -n 1 "$TG_TMP/render-$v.txt")"
    done
    tg_expect_grep 'preferredDuringSchedulingIgnoredDuringExecution' "$TG_TMP/render-cryptomb-preferred.yaml" \
        "cryptomb-preferred: preferred node affinity"
    tg_expect_nogrep 'requiredDuringScheduling' "$TG_TMP/render-cryptomb-preferred.yaml" \
        "cryptomb-preferred: no required node affinity"
    tg_expect_grep 'qat.intel.com/cy: "1"' "$TG_TMP/render-qat.yaml" "qat: requests a QAT crypto VF"
else
    echo "SKIP: kubectl not installed: overlays not rendered (their files are validated above)"
fi

tg_case "tests/data/gateway-api: schema"
node "$validate" "$TG_SRC_DIR/tests/data/gateway-api" >"$TG_TMP/gwapi.txt" 2>&1 ||
    { cat "$TG_TMP/gwapi.txt"; tg_fail "a Gateway API test object is invalid"; }
tail -n 1 "$TG_TMP/gwapi.txt"
for kind in Gateway GatewayClass TCPRoute TLSRoute HTTPRoute Secret Service; do
    tg_expect_grep "\\($kind [^)]*\\): valid\$" "$TG_TMP/gwapi.txt" "$kind validated against its schema"
done
tg_expect_grep '\(Gateway default/mtls\): valid$' "$TG_TMP/gwapi.txt" \
    "Gateway with spec.tls.frontend (client certificate validation) validated against its schema"
tg_expect_grep '\(ConfigMap default/clients-ca\): valid$' "$TG_TMP/gwapi.txt" "client CA ConfigMap validated"

tg_case "negative: a broken Deployment"
sed -e 's/containerPort: 8443/containerPorts: 8443/' \
    -e 's/^  replicas: 1/  replicas: one/' \
    -e 's/readOnlyRootFilesystem: true/readOnlyRootFileSystem: true/' \
    -e 's/type: RuntimeDefault/type: Default/' \
    "$TG_SRC_DIR/deploy/kubernetes/software/deployment.yaml" >"$TG_TMP/broken-deployment.yaml"
rc=0
node "$validate" --policy "$TG_TMP/broken-deployment.yaml" >"$TG_TMP/broken.txt" 2>&1 || rc=$?
cat "$TG_TMP/broken.txt"
tg_expect_eq "$rc" 1 "exit status for an invalid manifest"
tg_expect_grep 'spec/replicas must be integer' "$TG_TMP/broken.txt" "wrong type reported"
tg_expect_grep 'ports/0 must have required property containerPort' "$TG_TMP/broken.txt" "missing field reported"
tg_expect_grep 'ports\.0\.containerPorts: unknown field' "$TG_TMP/broken.txt" "misspelt field reported"
tg_expect_grep 'securityContext\.readOnlyRootFileSystem: unknown field' "$TG_TMP/broken.txt" "misspelt field reported"
tg_expect_grep 'seccompProfile/type must be equal to one of the allowed values' "$TG_TMP/broken.txt" "bad enum reported"
tg_expect_grep 'policy: .*readOnlyRootFilesystem must be true' "$TG_TMP/broken.txt" "policy reported"
tg_expect_grep '^0 passed, 1 failed' "$TG_TMP/broken.txt" "summary"

tg_case "negative: a broken Gateway, TCPRoute and Service"
cat >"$TG_TMP/broken-gwapi.yaml" <<'YAML'
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: eg, namespace: default }
spec:
  gatewayClassName: eg
  listeners:
    - name: tls
      protocol: TLS
      port: https
      tls:
        mode: Terminated
        certificateRef: { name: example-cert }
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: { name: tcp-app-1, namespace: default }
spec:
  parentRefs: [{ name: eg }]
  rules:
    - backendRef: [{ name: backend, port: 3000 }]
---
apiVersion: v1
kind: Service
metadata: { name: tlsgate, namespace: tlsgate }
spec:
  type: NodeProt
  ports: [{ port: 443, targetPort: tls }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: mtls, namespace: default }
spec:
  gatewayClassName: eg
  tls:
    frontend:
      default:
        validation: { mode: AllowAll, caCertificateRef: [{ kind: ConfigMap, name: clients-ca }] }
  listeners:
    - { name: tls, protocol: TLS, port: 443, tls: { certificateRefs: [{ name: example-cert }] } }
---
apiVersion: gateway.networking.k8s.io/v1
kind: NoSuchRoute
metadata: { name: x }
YAML
rc=0
node "$validate" "$TG_TMP/broken-gwapi.yaml" >"$TG_TMP/broken-gwapi.txt" 2>&1 || rc=$?
cat "$TG_TMP/broken-gwapi.txt"
tg_expect_eq "$rc" 1 "exit status for invalid Gateway API objects"
tg_expect_grep '\(Gateway default/eg\): data/spec/listeners/0/port must be integer' "$TG_TMP/broken-gwapi.txt" "Gateway port type"
tg_expect_grep '\(Gateway default/eg\): data/spec/listeners/0/tls/mode must be equal to one of the allowed values' \
    "$TG_TMP/broken-gwapi.txt" "Gateway tls.mode enum"
tg_expect_grep 'listeners\.0\.tls\.certificateRef: unknown field' "$TG_TMP/broken-gwapi.txt" "Gateway misspelt field"
tg_expect_grep '\(TCPRoute default/tcp-app-1\): spec\.rules\.0\.backendRef: unknown field' "$TG_TMP/broken-gwapi.txt" \
    "TCPRoute misspelt field"
tg_expect_grep '\(Service tlsgate/tlsgate\): data/spec/type must be equal to one of the allowed values' \
    "$TG_TMP/broken-gwapi.txt" "Service type enum"
tg_expect_grep 'no schema for gateway.networking.k8s.io/v1 NoSuchRoute' "$TG_TMP/broken-gwapi.txt" "unknown kind"
tg_expect_grep '\(Gateway default/mtls\): data/spec/tls/frontend/default/validation must have required property caCertificateRefs' \
    "$TG_TMP/broken-gwapi.txt" "client certificate validation without a CA"
tg_expect_grep '\(Gateway default/mtls\): data/spec/tls/frontend/default/validation/mode must be equal to one of the allowed values' \
    "$TG_TMP/broken-gwapi.txt" "client certificate validation mode enum"
tg_expect_grep '^0 passed, 5 failed' "$TG_TMP/broken-gwapi.txt" "summary"

tg_pass
