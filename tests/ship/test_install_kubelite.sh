#!/usr/bin/env bash
# The install paths users take, against kubelite: the kustomize bases with
# `kubectl apply --server-side`, and the Helm chart with `helm install` and
# `helm uninstall`. Both must apply cleanly and create what they declare.
. "$(dirname "$0")/../lib.sh"
kl=$KILN_BUILD_DIR/hack/kubelite/kubelite
[ -x "$kl" ] || fail "kubelite not built"
command -v helm >/dev/null || fail "helm missing (hack/install-deps.sh installs it)"
data=$TEST_TMP/kubelite
setsid "$kl" --data-dir "$data" --listen 127.0.0.1:0 >"$TEST_TMP/kubelite.log" 2>&1 </dev/null &
klpid=$!
cleanup() { kill "$klpid" 2>/dev/null; wait "$klpid" 2>/dev/null; rm -rf "$TEST_TMP"; }
trap cleanup EXIT
for _ in $(seq 300); do [ -s "$data/kubeconfig" ] && break; sleep 0.1; done
[ -s "$data/kubeconfig" ] || fail "kubelite did not start"
export KUBECONFIG=$data/kubeconfig

kubectl kustomize "$KILN_SOURCE_DIR/manifests/default" > "$TEST_TMP/default.yaml" || fail "kustomize"
kubectl apply --server-side --field-manager=kiln-install -f "$TEST_TMP/default.yaml" > "$TEST_TMP/apply.out" 2>&1 \
  || { cat "$TEST_TMP/apply.out" >&2; fail "kubectl apply --server-side of manifests/default"; }
kubectl wait --for condition=Established crd/trainingjobs.kiln.dev --timeout=30s >/dev/null || fail "CRD not established"
for obj in namespace/kiln-system clusterrole/kiln-controller deployment/kiln-controller serviceaccount/kiln-controller; do
  ns=; case $obj in deployment/*|serviceaccount/*) ns="-n kiln-system";; esac
  kubectl get $ns "$obj" >/dev/null 2>&1 || fail "manifests/default did not create $obj"
done
# applying again changes nothing
kubectl apply --server-side --field-manager=kiln-install -f "$TEST_TMP/default.yaml" > "$TEST_TMP/apply2.out" 2>&1 \
  || { cat "$TEST_TMP/apply2.out" >&2; fail "second server-side apply"; }
# the samples are accepted by the CRD as installed
kubectl kustomize "$KILN_SOURCE_DIR/manifests/samples" | kubectl apply --dry-run=server -f - >/dev/null \
  || fail "samples rejected by the API server"
pass "manifests/default: server-side apply, twice, and the samples validate"

kubectl delete -f "$TEST_TMP/default.yaml" --wait=true --timeout=60s >/dev/null 2>&1 || true
kubectl wait --for=delete crd/trainingjobs.kiln.dev --timeout=60s >/dev/null 2>&1 || true
# the namespace goes after its contents; helm cannot create in it meanwhile
kubectl wait --for=delete namespace/kiln-system --timeout=60s >/dev/null 2>&1 || true
[ -z "$(kubectl get namespace kiln-system -o name 2>/dev/null)" ] \
  || fail "namespace kiln-system still there after deleting manifests/default: $(kubectl get namespace kiln-system -o jsonpath='{.status}')"

helm install kiln "$KILN_SOURCE_DIR/charts/kiln" -n kiln-system --create-namespace > "$TEST_TMP/helm.out" 2>&1 \
  || { cat "$TEST_TMP/helm.out" >&2; fail "helm install"; }
grep -q 'STATUS: deployed' "$TEST_TMP/helm.out" || fail "helm install did not deploy"
kubectl get crd trainingjobs.kiln.dev >/dev/null || fail "the chart did not install the CRD"
kubectl -n kiln-system get deployment kiln-controller >/dev/null 2>&1 \
  || kubectl -n kiln-system get deployment -l app.kubernetes.io/name=kiln -o name | grep -q . \
  || fail "the chart did not create the controller Deployment"
helm upgrade kiln "$KILN_SOURCE_DIR/charts/kiln" -n kiln-system --set replicas=2 >/dev/null 2>&1 || fail "helm upgrade"
helm uninstall kiln -n kiln-system >/dev/null || fail "helm uninstall"
left=$(kubectl -n kiln-system get deployments -o name 2>/dev/null | wc -l)
[ "$left" -eq 0 ] || fail "helm uninstall left $left Deployment(s)"
pass "helm install, upgrade and uninstall of charts/kiln"
