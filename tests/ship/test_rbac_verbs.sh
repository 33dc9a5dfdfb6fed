#!/usr/bin/env bash
# Least privilege, checked against practice: the controller runs a search
# with serving, leader election and an e-mail notification on kubelite,
# and every (group, resource, verb) it sent, read from kubelite's request
# log, must be granted by manifests/rbac/role.yaml, and every grant must be
# used, except the few listed below with the reason they are needed on a
# real cluster although kubelite never checks them.
. "$(dirname "$0")/../lib.sh"
env_up
# The controller again, now with leader election, as the Deployment runs it.
kill -TERM "$(cat "$env_dir/controller.pid")"
sleep 1
setsid "$KILN_BUILD_DIR/controller/src/kiln-controller" --kubeconfig "$KUBECONFIG" --leader-elect \
  --leader-election-namespace default --metrics-bind-address 0 --health-probe-bind-address 0 \
  >>"$env_dir/controller.log" 2>&1 </dev/null &
echo $! > "$env_dir/controller.pid"

kubectl create secret generic smtp --from-literal=username=u --from-literal=password=p >/dev/null
cat > "$TEST_TMP/tj.yaml" <<YAML
apiVersion: kiln.dev/v1alpha1
kind: TrainingJob
metadata: {name: rbac}
spec:
  data: {uri: "file://$FMNIST", maxSamples: 1000}
  model: {family: logistic}
  training: {epochs: 1, threads: 1}
  objective: {metric: accuracy, goal: 0.5}
  tuning: {maxTrials: 1}
  serving: {enabled: true}
  notify:
    email: {smtpUrl: "smtp://127.0.0.1:9", from: "kiln@example.com", to: ["ml@example.com"], secretRef: {name: smtp}}
YAML
# A second job keeps its checkpoints on a claim it shares, so it holds the
# finalizer (a patch) and its deletion runs the clean-up pod.
cat >> "$TEST_TMP/tj.yaml" <<YAML
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: shared}
spec:
  accessModes: [ReadWriteMany]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: kiln.dev/v1alpha1
kind: TrainingJob
metadata: {name: rbac-shared}
spec:
  data: {uri: "file://$FMNIST", maxSamples: 1000}
  model: {family: logistic}
  training: {epochs: 1, threads: 1}
  objective: {metric: accuracy, goal: 0.5}
  tuning: {maxTrials: 1}
  serving: {enabled: false}
  storage: {volume: {persistentVolumeClaim: {claimName: shared}}}
YAML
kubectl apply -f "$TEST_TMP/tj.yaml" >/dev/null
kubectl wait --for=condition=Serving tj/rbac --timeout=120s >/dev/null || fail "the job was not served"
kubectl wait --for=condition=GoalReached tj/rbac-shared --timeout=120s >/dev/null || fail "rbac-shared did not finish"
kubectl delete tj rbac-shared --timeout=60s >/dev/null || fail "rbac-shared was not deleted (finalizer held?)"
for _ in $(seq 100); do
  grep -q '"resource":"secrets".*kiln-controller' "$env_dir/kubelite/requests.log" && break
  sleep 0.1
done
# Turning serving off makes the controller delete its serving pods;
# retaining the checkpoints makes it read and release the job's claim.
kubectl patch tj rbac --type merge -p '{"spec":{"serving":{"enabled":false},"storage":{"retain":true}}}' >/dev/null
for _ in $(seq 100); do
  [ -z "$(kubectl get pods -l kiln.dev/serving=rbac -o name)" ] &&
    [ -z "$(kubectl get pvc rbac-models -o jsonpath='{.metadata.ownerReferences}')" ] && break
  sleep 0.1
done
sleep 1

"$PY" - "$env_dir/kubelite/requests.log" "$KILN_SOURCE_DIR/manifests/rbac/role.yaml" <<'PYEOF'
import json, sys, yaml
used = set()
for line in open(sys.argv[1]):
    r = json.loads(line)
    if not r.get("userAgent", "").startswith("kiln-controller") or "resource" not in r:
        continue
    res = r["resource"] + ("/" + r["subresource"] if r.get("subresource") else "")
    used.add((r.get("group", ""), res, r["verb"]))
granted = set()
for rule in yaml.safe_load(open(sys.argv[2]))["rules"]:
    for g in rule["apiGroups"]:
        for res in rule["resources"]:
            for v in rule["verbs"]:
                granted.add((g, res, v))
# Needed on a real cluster, never sent as a request of their own.
needed_unsent = {
    ("kiln.dev", "trainingjobs/finalizers", "update"):
        "setting blockOwnerDeletion on owned pods (OwnerReferencesPermissionEnforcement)",
    ("", "events", "patch"):
        "an Event repeated within the aggregation window is counted with a patch",
}
missing = sorted(used - granted)
unused = sorted(granted - used - set(needed_unsent))
print("used:", sorted(used))
assert not missing, f"the controller sent requests the Role does not grant: {missing}"
assert not unused, f"the Role grants what the controller never uses: {unused}"
PYEOF
[ $? -eq 0 ] || fail "RBAC differs from what the controller does"
pass "the Role grants exactly the verbs the controller used"
