#!/usr/bin/env bash
# manifests/default renders with kubectl's kustomize into exactly the kinds
# any cluster serves (no ServiceMonitor), with the hardened controller
# Deployment; manifests/samples renders the four sample TrainingJobs.
. "$(dirname "$0")/common.sh"
M=$KILN_SOURCE_DIR/manifests

kubectl kustomize "$M/default" >"$SHIP_TMP/default.yaml" 2>"$SHIP_TMP/err" ||
  fail "kubectl kustomize manifests/default: $(cat "$SHIP_TMP/err")"
got=$(yq "$SHIP_TMP/default.yaml" 'sorted((d["kind"], d["metadata"]["name"]) for d in docs)')
want="[('ClusterRole', 'kiln-controller'), ('ClusterRoleBinding', 'kiln-controller'), ('CustomResourceDefinition', 'trainingjobs.kiln.dev'), ('Deployment', 'kiln-controller'), ('Namespace', 'kiln-system'), ('Service', 'kiln-controller-metrics'), ('ServiceAccount', 'kiln-controller')]"
[ "$got" = "$want" ] || fail "manifests/default renders $got, want $want"
check() { [ "$(yq "$SHIP_TMP/default.yaml" "$1")" = True ] || fail "$2 ($1)"; }
check "all(d['metadata'].get('namespace') in (None, 'kiln-system') for d in docs)" "namespaced objects live in kiln-system"
pod='by_kind("Deployment")[0]["spec"]["template"]["spec"]'
c="${pod}[\"containers\"][0]"
check "${c}['image'] == 'ghcr.io/kiln-dev/kiln-controller:0.1.0' and ${c}['command'] == ['/usr/local/bin/kiln-controller']" "image and command"
check "${c}['args'] == ['--leader-elect', '--metrics-bind-address', ':8080', '--health-probe-bind-address', ':8081']" "args"
check "{e['name']: e['valueFrom']['fieldRef']['fieldPath'] for e in ${c}['env']} == {'POD_NAME': 'metadata.name', 'POD_NAMESPACE': 'metadata.namespace'}" "downward-API env"
check "(${c}['livenessProbe']['httpGet']['path'], ${c}['readinessProbe']['httpGet']['path']) == ('/healthz', '/readyz') and {p['name']: p['containerPort'] for p in ${c}['ports']}['health'] == 8081" "probes on 8081"
check "set(${c}['resources']) == {'requests', 'limits'}" "resources"
check "${c}['securityContext'] == {'runAsNonRoot': True, 'runAsUser': 65532, 'readOnlyRootFilesystem': True, 'allowPrivilegeEscalation': False, 'capabilities': {'drop': ['ALL']}, 'seccompProfile': {'type': 'RuntimeDefault'}}" "container securityContext"
check "${pod}['serviceAccountName'] == by_kind('ServiceAccount')[0]['metadata']['name']" "pod runs as the ServiceAccount"
check "by_kind('Service')[0]['spec']['selector'] == by_kind('Deployment')[0]['spec']['selector']['matchLabels']" "metrics Service selects the controller"
pass "kubectl kustomize manifests/default: 7 objects, hardened Deployment"

kubectl kustomize "$M/samples" >"$SHIP_TMP/samples.yaml" 2>"$SHIP_TMP/err" ||
  fail "kubectl kustomize manifests/samples: $(cat "$SHIP_TMP/err")"
got=$(yq "$SHIP_TMP/samples.yaml" 'sorted(d["metadata"]["name"] for d in by_kind("TrainingJob"))')
[ "$got" = "['fashion-mnist', 'fashion-mnist-cnn', 'iris-clusters', 'wine']" ] || fail "samples render $got"
n=0
for f in "$M"/samples/*.yaml; do [ "${f##*/}" = kustomization.yaml ] || n=$((n + 1)); done
[ "$n" = 4 ] || fail "manifests/samples has $n sample files, the kustomization lists 4"
pass "kubectl kustomize manifests/samples: 4 TrainingJobs"
