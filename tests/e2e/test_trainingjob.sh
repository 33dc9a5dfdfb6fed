#!/usr/bin/env bash
# The whole loop on kubelite with the real trainer: a TrainingJob whose
# first model is too small for its goal runs several trials, the accuracy
# climbs, and the job ends Succeeded with the best trial above the goal.
. "$(dirname "$0")/../lib.sh"
env_up

cat > "$TEST_TMP/tj.yaml" <<YAML
apiVersion: kiln.dev/v1alpha1
kind: TrainingJob
metadata:
  name: climb
spec:
  data:
    uri: file://$FMNIST
    maxSamples: 4000
  model:
    family: mlp
    mlp: {hiddenLayers: [4]}
  training: {epochs: 1, threads: 1}
  objective: {metric: accuracy, goal: 0.78}
  tuning: {strategy: adaptive, maxTrials: 8, parallelism: 1}
  serving: {enabled: false}
YAML
kubectl apply -f "$TEST_TMP/tj.yaml" >/dev/null || fail "apply"
kubectl wait --for=condition=GoalReached tj/climb --timeout=240s >/dev/null \
  || { kubectl get tj climb -o yaml >&2; kubectl get pods >&2; tail -n 20 "$env_dir/controller.log" >&2; fail "goal not reached"; }
pass "kubectl wait --for=condition=GoalReached"

kubectl get tj climb -o json > "$TEST_TMP/tj.json"
[ "$(json "$TEST_TMP/tj.json" 'j["status"]["phase"]')" = Succeeded ] || fail "phase"
n=$(json "$TEST_TMP/tj.json" 'len(j["status"]["trials"])')
[ "$n" -ge 2 ] || fail "expected several trials, got $n"
best=$(json "$TEST_TMP/tj.json" 'j["status"]["bestTrial"]["metrics"]["accuracy"]')
first=$(json "$TEST_TMP/tj.json" 'j["status"]["trials"][0]["metrics"]["accuracy"]')
"$PY" -c "import sys; sys.exit(0 if $best >= 0.78 and $best > $first else 1)" || fail "best $best, first $first"
pass "$n trials, accuracy $first -> $best"

kubectl get tj climb > "$TEST_TMP/get.txt"
head -n 1 "$TEST_TMP/get.txt" | grep -q 'NAME *PHASE *METRIC *GOAL *TRIALS *AGE' || fail "columns: $(cat "$TEST_TMP/get.txt")"
grep -q 'climb *Succeeded' "$TEST_TMP/get.txt" || fail "row: $(cat "$TEST_TMP/get.txt")"
pass "kubectl get tj shows the printer columns"

# one pod per trial index, labelled, owned by the job
kubectl get pods -l kiln.dev/job=climb -o json > "$TEST_TMP/pods.json"
"$PY" - "$TEST_TMP/pods.json" <<'PYEOF' || fail "trial pods"
import json, sys, collections
pods = json.load(open(sys.argv[1]))["items"]
idx = collections.Counter(p["metadata"]["labels"]["kiln.dev/trial"] for p in pods if "kiln.dev/trial" in p["metadata"]["labels"])
assert all(c == 1 for c in idx.values()), idx
for p in pods:
    assert p["metadata"]["ownerReferences"][0]["kind"] == "TrainingJob"
    sc = p["spec"]["containers"][0]["securityContext"]
    assert sc["readOnlyRootFilesystem"] and sc["allowPrivilegeEscalation"] is False
PYEOF
pass "trial pods: one per index, owned, locked down"

# no spec.storage: the pods share a claim the controller created, owned by
# the job (kubelite would run the pods without it; a cluster would not)
kubectl get pvc climb-models -o json > "$TEST_TMP/pvc.json" 2>/dev/null || fail "no claim climb-models"
[ "$(json "$TEST_TMP/pvc.json" 'j["metadata"]["ownerReferences"][0]["name"]')" = climb ] \
  || fail "climb-models is not owned by the job"
[ "$(json "$TEST_TMP/pods.json" 'sorted({v["persistentVolumeClaim"]["claimName"] for p in j["items"] for v in p["spec"]["volumes"] if "persistentVolumeClaim" in v})')" = "['climb-models']" ] \
  || fail "trial pods do not mount climb-models"
pass "the trial pods' models claim exists, owned by the job"

kubectl get events --field-selector involvedObject.name=climb -o json > "$TEST_TMP/events.json"
[ "$(json "$TEST_TMP/events.json" 'sum(e["reason"] == "GoalReached" for e in j["items"])')" -ge 1 ] || fail "no GoalReached event"
pass "GoalReached event"

# The controller's /metrics say where the time went: the queue's wait, the
# reconciles and the API requests, as Prometheus histograms whose counts
# cover this job's work.
port=$(cat "$env_dir/controller.metrics-port")
curl -fsS "http://127.0.0.1:$port/metrics" > "$TEST_TMP/metrics.txt" || fail "GET /metrics"
python3 - "$TEST_TMP/metrics.txt" <<'PYEOF' || fail "latency histograms: $(grep -E '_duration_seconds_(count|sum)' "$TEST_TMP/metrics.txt")"
import re, sys
text = open(sys.argv[1]).read()
def series(name, labels=""):
    sel = "{" + labels + "}" if labels else ""
    count = float(re.search(r"^%s_count%s (\S+)$" % (name, re.escape(sel)), text, re.M).group(1))
    inf = float(re.search(r'^%s_bucket\{%sle="\+Inf"\} (\S+)$' % (name, re.escape(labels + "," if labels else "")), text, re.M).group(1))
    assert "# TYPE %s histogram" % name in text, name
    assert inf == count, (name, inf, count)
    return count
reconciles = float(re.search(r"^kiln_reconciles_total (\S+)$", text, re.M).group(1))
assert series("kiln_reconcile_duration_seconds") >= reconciles >= 3, reconciles
assert series("kiln_workqueue_queue_duration_seconds") >= reconciles
assert series("kiln_api_request_duration_seconds", 'verb="POST"') >= 3   # pods, claim, events
assert series("kiln_api_request_duration_seconds", 'verb="PUT"') >= 1    # status
PYEOF
pass "/metrics: queue wait, reconcile and API request latency histograms"

# Threads are named for top -H and perf: the controller's workers and
# watches, kubelite's WAL syncer and kubelet worker.
names() { cat /proc/"$(cat "$env_dir/$1.pid")"/task/*/comm | sort | uniq -c; }
ctl=$(names controller); kl=$(names kubelite)
workers=$(awk '$2 == "kube-worker" {print $1}' <<<"$ctl")
[ "${workers:-0}" -eq 32 ] || fail "want 32 kube-worker threads in the controller, have: $ctl"
for n in watch:trainingj watch:pods watch:services claims http; do
  grep -qw -- "$n" <<<"$ctl" || fail "no controller thread named $n: $ctl"
done
for n in wal-syncer kubelet-worker; do
  grep -qw -- "$n" <<<"$kl" || fail "no kubelite thread named $n: $kl"
done
pass "threads named: $workers kube-worker, watch:*, claims, http; wal-syncer, kubelet-worker"

# local-up starts kubelite and the controller in process groups of their
# own (signals to this test's group do not reach them) but in this
# session: a session of their own would be a scheduling group of its own,
# a third of the CPU each whatever their threads (see hack/local-up.sh).
sid=$(ps -o sid= -p $$ | tr -d ' ')
for p in kubelite controller; do
  pid=$(cat "$env_dir/$p.pid")
  read -r pgid psid < <(ps -o pgid=,sid= -p "$pid")
  [ "$pgid" = "$pid" ] || fail "$p is not in a process group of its own (pgid $pgid, pid $pid)"
  [ "$psid" = "$sid" ] || fail "$p runs in session $psid, not the caller's $sid"
done
pass "kubelite and the controller: own process groups, the caller's session"
