#!/usr/bin/env bash
# The Helm chart lints, renders with default and overridden values, and its
# values schema rejects bad values.
. "$(dirname "$0")/common.sh"

out=$("$HELM" lint "$CHART" 2>&1) || fail "helm lint: $out"
grep -q '0 chart(s) failed' <<<"$out" || fail "helm lint: $out"
pass "helm lint"

# Default values: cluster-wide RBAC, no ServiceMonitor, hardened pod.
"$HELM" template kiln "$CHART" --namespace kiln-system >"$SHIP_TMP/default.yaml" || fail "helm template (defaults)"
kinds=$(yq "$SHIP_TMP/default.yaml" 'sorted(d["kind"] for d in docs)')
[ "$kinds" = "['ClusterRole', 'ClusterRoleBinding', 'Deployment', 'Service', 'ServiceAccount']" ] ||
  fail "default render has kinds $kinds"
check() { # FILE EXPR WHAT
  [ "$(yq "$1" "$2")" = True ] || fail "$3 ($2)"
}
dep='by_kind("Deployment")[0]'
c="${dep}[\"spec\"][\"template\"][\"spec\"][\"containers\"][0]"
check "$SHIP_TMP/default.yaml" "${c}['image'] == 'ghcr.io/kiln-dev/kiln-controller:0.1.0'" "image defaults to the appVersion"
check "$SHIP_TMP/default.yaml" "${c}['command'] == ['/usr/local/bin/kiln-controller']" "command"
check "$SHIP_TMP/default.yaml" "${c}['args'][:3] == ['--leader-elect', '--leader-election-namespace', 'kiln-system'] and '--namespace' not in ${c}['args']" "args"
check "$SHIP_TMP/default.yaml" "${c}['args'][${c}['args'].index('--metrics-bind-address') + 1] == ':8080'" "metrics address"
check "$SHIP_TMP/default.yaml" "${c}['securityContext'] == {'runAsNonRoot': True, 'runAsUser': 65532, 'readOnlyRootFilesystem': True, 'allowPrivilegeEscalation': False, 'capabilities': {'drop': ['ALL']}, 'seccompProfile': {'type': 'RuntimeDefault'}}" "container securityContext"
check "$SHIP_TMP/default.yaml" "[e['name'] for e in ${c}['env']] == ['POD_NAME', 'POD_NAMESPACE']" "downward-API env"
check "$SHIP_TMP/default.yaml" "${c}['livenessProbe']['httpGet']['path'] == '/healthz' and ${c}['readinessProbe']['httpGet']['path'] == '/readyz'" "probes"
check "$SHIP_TMP/default.yaml" "by_kind('ClusterRoleBinding')[0]['subjects'][0] == {'kind': 'ServiceAccount', 'name': by_kind('ServiceAccount')[0]['metadata']['name'], 'namespace': 'kiln-system'}" "binding subject is the ServiceAccount"
check "$SHIP_TMP/default.yaml" "${dep}['spec']['template']['spec']['serviceAccountName'] == by_kind('ServiceAccount')[0]['metadata']['name']" "pod runs as the ServiceAccount"
check "$SHIP_TMP/default.yaml" "by_kind('Service')[0]['spec']['selector'] == ${dep}['spec']['selector']['matchLabels']" "metrics Service selects the controller"
pass "helm template with default values"

# Overridden values: one watched namespace, ServiceMonitor on, own tag.
cat >"$SHIP_TMP/values.yaml" <<'YAML'
image: {repository: registry.example/kiln-controller, tag: dev, pullPolicy: Always}
replicas: 2
watchNamespaces: [ml]
qps: 20
burst: 40
trainerImage: registry.example/kiln-trainer:dev
metrics: {enabled: true, port: 9090, serviceMonitor: {enabled: true, interval: 15s}}
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: ml, effect: NoSchedule}]
YAML
"$HELM" template kiln "$CHART" --namespace kiln-system -f "$SHIP_TMP/values.yaml" >"$SHIP_TMP/over.yaml" ||
  fail "helm template (override)"
kinds=$(yq "$SHIP_TMP/over.yaml" 'sorted(d["kind"] for d in docs)')
[ "$kinds" = "['Deployment', 'Role', 'Role', 'RoleBinding', 'RoleBinding', 'Service', 'ServiceAccount', 'ServiceMonitor']" ] ||
  fail "override render has kinds $kinds"
check "$SHIP_TMP/over.yaml" "${c}['image'] == 'registry.example/kiln-controller:dev' and ${c}['imagePullPolicy'] == 'Always'" "image override"
check "$SHIP_TMP/over.yaml" "${dep}['spec']['replicas'] == 2" "replicas"
check "$SHIP_TMP/over.yaml" "' '.join(${c}['args']).endswith('--qps 20 --burst 40 --namespace ml --trainer-image registry.example/kiln-trainer:dev')" "args follow values"
check "$SHIP_TMP/over.yaml" "${c}['args'][${c}['args'].index('--metrics-bind-address') + 1] == ':9090'" "metrics port"
check "$SHIP_TMP/over.yaml" "sorted(r['metadata']['namespace'] for r in by_kind('Role')) == ['kiln-system', 'ml']" "Roles in the watched and the release namespace"
check "$SHIP_TMP/over.yaml" "${dep}['spec']['template']['spec']['nodeSelector'] == {'kubernetes.io/os': 'linux'} and ${dep}['spec']['template']['spec']['tolerations'][0]['key'] == 'dedicated'" "scheduling values"
check "$SHIP_TMP/over.yaml" "by_kind('ServiceMonitor')[0]['spec']['endpoints'][0]['interval'] == '15s'" "ServiceMonitor"
pass "helm template with overridden values"

# The values schema rejects bad values (so a typo fails at install time).
reject() { # WHAT ARGS...
  local what=$1; shift
  if "$HELM" template kiln "$CHART" "$@" >/dev/null 2>"$SHIP_TMP/err"; then
    fail "values schema accepted $what"
  fi
  grep -qi 'values don.t meet the specifications of the schema' "$SHIP_TMP/err" || fail "$what: $(cat "$SHIP_TMP/err")"
}
reject "replicas -1" --set replicas=-1
reject "an unknown key" --set replica=1
reject "pullPolicy Sometimes" --set image.pullPolicy=Sometimes
reject "two watched namespaces" --set 'watchNamespaces={a,b}'
reject "a string for serviceMonitor.enabled" --set-string metrics.serviceMonitor.enabled=yes
pass "values.schema.json rejects 5 bad values"
