#!/usr/bin/env bash
# Restart safety on kubelite with the real trainer:
#  - a trainer pod killed mid-trial (kubelite's killPod fault) is retried
#    with --resume from its epoch checkpoint and counted as one trial;
#  - kiln-controller SIGKILLed mid-search and started again finishes the
#    search with no duplicate pod and no lost trial record.
. "$(dirname "$0")/../lib.sh"
env_up

start_controller() {
  setsid "$KILN_BUILD_DIR/controller/src/kiln-controller" --kubeconfig "$KUBECONFIG" \
    --metrics-bind-address 127.0.0.1:0 --health-probe-bind-address 127.0.0.1:0 \
    >>"$env_dir/controller.log" 2>&1 </dev/null &
  echo $! > "$env_dir/controller.pid"
}

# A trial long enough to be caught running: a CNN over 12 epochs.
cat > "$TEST_TMP/slow.yaml" <<YAML
apiVersion: kiln.dev/v1alpha1
kind: TrainingJob
metadata: {name: slow}
spec:
  data: {uri: "file://$FMNIST", maxSamples: 30000}
  model: {family: cnn, cnn: {convFilters: [8], denseLayers: [32]}}
  training: {epochs: 12, threads: 1}
  objective: {metric: accuracy, goal: 0.5}
  tuning: {maxTrials: 1}
  serving: {enabled: false}
YAML
kubectl apply -f "$TEST_TMP/slow.yaml" >/dev/null
# The trial's log is read into a file before grep sees it: under pipefail,
# `kubectl logs | grep -q` fails whenever grep's early exit makes kubectl
# die of SIGPIPE while it still writes.
log_has() { kubectl logs slow-t0 >"$TEST_TMP/slow-t0.log" 2>/dev/null; grep -q "$1" "$TEST_TMP/slow-t0.log"; }
# wait until epoch 1's checkpoint exists (the first progress line), then kill
for _ in $(seq 600); do
  log_has '"epoch":1' && break
  sleep 0.1
done
log_has '"epoch":1' || fail "trial never reached its first epoch"
kubelite_fault '{"killPod":"default/slow-t0"}' || fail "killPod fault"
kubectl wait --for=condition=GoalReached tj/slow --timeout=180s >/dev/null \
  || { kubectl get tj slow -o yaml >&2; fail "the killed trial did not finish"; }
kubectl get tj slow -o json > "$TEST_TMP/slow.json"
[ "$(json "$TEST_TMP/slow.json" 'len(j["status"]["trials"])')" = 1 ] || fail "the retried trial was counted twice"
[ "$(json "$TEST_TMP/slow.json" 'j["status"]["trials"][0]["attempts"]')" -ge 2 ] || fail "no retry recorded"
log_has '"resuming"' || {
  cat "$TEST_TMP/slow-t0.log" >&2; kubectl get tj slow -o yaml >&2; tail -n 40 "$env_dir/controller.log" >&2
  fail "the retry did not resume from its checkpoint"; }
first=$("$PY" -c '
import json, sys
lines = open(sys.argv[1]).read().splitlines()
after = lines[next(i for i, l in enumerate(lines) if "\"resuming\"" in l):]
print(next(json.loads(l)["epoch"] for l in after if l.startswith("{\"epoch\"")))' "$TEST_TMP/slow-t0.log")
[ "$first" -ge 2 ] || { cat "$TEST_TMP/slow-t0.log" >&2; fail "the resumed run started over at epoch $first"; }
pass "a killed trainer pod resumed at epoch $first and counted once"

# The controller killed mid-search.
cat > "$TEST_TMP/search.yaml" <<YAML
apiVersion: kiln.dev/v1alpha1
kind: TrainingJob
metadata: {name: search}
spec:
  data: {uri: "file://$FMNIST", maxSamples: 4000}
  model: {family: mlp, mlp: {hiddenLayers: [4]}}
  training: {epochs: 1, threads: 1}
  objective: {metric: accuracy, goal: 0.78}
  tuning: {maxTrials: 10, parallelism: 2}
  serving: {enabled: false}
YAML
kubectl apply -f "$TEST_TMP/search.yaml" >/dev/null
for _ in $(seq 300); do
  n=$(kubectl get tj search -o jsonpath='{.status.trialCount}' 2>/dev/null)
  [ "${n:-0}" -ge 2 ] && break
  sleep 0.1
done
kill -KILL "$(cat "$env_dir/controller.pid")"
sleep 1
start_controller
# With two trials at a time the order in which they finish varies, so the
# search may or may not reach its goal; what matters is that it ends.
phase=
for _ in $(seq 1200); do
  phase=$(kubectl get tj search -o jsonpath='{.status.phase}')
  case $phase in Succeeded|Failed) break ;; esac
  sleep 0.2
done
case $phase in Succeeded|Failed) ;; *) kubectl get tj search -o yaml >&2; fail "the search did not finish after the restart" ;; esac
kubectl get tj search -o json > "$TEST_TMP/search.json"
kubectl get pods -l kiln.dev/job=search -o json > "$TEST_TMP/pods.json"
"$PY" - "$TEST_TMP/search.json" "$TEST_TMP/pods.json" <<'PYEOF' || fail "records or pods after the restart"
import json, sys, collections
st = json.load(open(sys.argv[1]))["status"]
pods = json.load(open(sys.argv[2]))["items"]
idx = [t["index"] for t in st["trials"]]
assert idx == list(range(len(idx))), idx                 # no lost or duplicated record
assert st["trialCount"] == len(idx), (st["trialCount"], idx)
names = collections.Counter(p["metadata"]["name"] for p in pods)
assert all(c == 1 for c in names.values()), names
assert all(p["metadata"]["labels"]["kiln.dev/trial"] in {str(i) for i in idx} for p in pods)
PYEOF
pass "controller SIGKILLed mid-search: $(json "$TEST_TMP/search.json" 'j["status"]["trialCount"]') trials ($phase), none lost or duplicated"
