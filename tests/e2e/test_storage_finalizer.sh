#!/usr/bin/env bash
# Deleting a TrainingJob deletes its checkpoints unless storage.retain, and
# the controller's dashboard shows the jobs live:
#   (a) kiln-trainer clean removes one job's trial directories and nothing
#       else (a sibling job, a symbolic link out of the volume);
#   (b) on kubelite, five jobs train one trial each: three share the claim
#       "shared" (one with retain: true), two use their own claims;
#   (c) GET /dashboard is one self-contained page and its WebSocket pushes
#       a snapshot holding the jobs and their trial results;
#   (d) kubectl delete: the finalizer holds the job while a clean-up pod
#       deletes its directory on the shared claim; the retained job's files
#       and the other job's files survive; the own claim goes with its job;
#       a deletion in the foreground cleans up once the pods are gone; a
#       claim whose job turns retain on later is released and survives.
. "$(dirname "$0")/../lib.sh"

# (a) the clean-up command on a scratch tree
m=$TEST_TMP/m
mkdir -p "$m/ml/a/t0/x" "$m/ml/a/t1" "$m/ml/b/t0" "$TEST_TMP/outside"
echo 1 > "$m/ml/a/t0/model.kiln"; echo 2 > "$m/ml/a/t0/x/epoch-1.kiln"
echo keep > "$TEST_TMP/outside/k"; ln -s "$TEST_TMP/outside" "$m/ml/a/t1/link"
echo b > "$m/ml/b/t0/model.kiln"
"$TRAINER" clean --models "$m" --job ml/a --report "$TEST_TMP/clean.json" >/dev/null || fail "clean exited $?"
[ ! -e "$m/ml/a" ] || fail "clean left $(find "$m/ml/a")"
[ -f "$m/ml/b/t0/model.kiln" ] && [ -f "$TEST_TMP/outside/k" ] || fail "clean deleted what was not the job's"
[ "$(json "$TEST_TMP/clean.json" 'j["removedDirs"]')" = 2 ] || fail "report: $(cat "$TEST_TMP/clean.json")"
for bad in ml/.. ../ml ml/b/t0 ml ""; do
  rc=0; "$TRAINER" clean --models "$m" --job "$bad" >/dev/null 2>&1 || rc=$?
  [ "$rc" = 2 ] || fail "clean --job '$bad' exited $rc, want 2"
done
[ -f "$m/ml/b/t0/model.kiln" ] || fail "a rejected job name deleted files"
pass "kiln-trainer clean deletes one job's trial directories only"

# (b) five jobs
env_up
kubectl apply -f - >/dev/null <<YAML || fail "apply"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: shared}
spec:
  accessModes: [ReadWriteMany]
  resources: {requests: {storage: 1Gi}}
YAML
job() { # NAME STORAGE
  cat <<YAML
---
apiVersion: kiln.dev/v1alpha1
kind: TrainingJob
metadata: {name: $1}
spec:
  data: {uri: "file://$FMNIST", maxSamples: 600}
  model: {family: logistic}
  training: {epochs: 1, threads: 1}
  objective: {metric: accuracy, goal: 0.3}
  tuning: {maxTrials: 1}
  serving: {enabled: false}
  storage: $2
YAML
}
{ job gone '{volume: {persistentVolumeClaim: {claimName: shared}}}'
  job keep '{retain: true, volume: {persistentVolumeClaim: {claimName: shared}}}'
  job own '{}'
  job fore '{volume: {persistentVolumeClaim: {claimName: shared}}}'
  job flip '{}'; } > "$TEST_TMP/jobs.yaml"
kubectl apply -f "$TEST_TMP/jobs.yaml" >/dev/null || fail "apply jobs"
for j in gone keep own fore flip; do
  kubectl wait --for=condition=GoalReached "tj/$j" --timeout=240s >/dev/null \
    || { kubectl get tj "$j" -o yaml >&2; kubectl get pods >&2; tail -n 20 "$env_dir/controller.log" >&2; fail "$j did not finish"; }
done
# Only a job whose checkpoints need the clean-up pod holds the finalizer:
# the own claim goes with its job, a retained volume is left alone.
[[ "$(kubectl get tj gone -o jsonpath='{.metadata.finalizers}')" == *kiln.dev/checkpoints* ]] \
  || fail "gone has no finalizer: $(kubectl get tj gone -o jsonpath='{.metadata.finalizers}')"
for j in keep own; do
  [ -z "$(kubectl get tj "$j" -o jsonpath='{.metadata.finalizers}')" ] \
    || fail "$j holds a finalizer it does not need: $(kubectl get tj "$j" -o jsonpath='{.metadata.finalizers}')"
done
vols=$env_dir/kubelite/volumes/default
[ -f "$vols/shared/default/gone/t0/model.kiln" ] && [ -f "$vols/shared/default/keep/t0/model.kiln" ] \
  || fail "no checkpoints on the shared claim: $(find "$env_dir/kubelite/volumes" | head -n 30)"
[ -f "$vols/own-models/t0/model.kiln" ] || fail "no checkpoint on the own claim"
[ "$(kubectl get tj gone -o jsonpath='{.status.bestTrial.checkpoint}')" = /models/default/gone/t0/model.kiln ] \
  || fail "checkpoint path: $(kubectl get tj gone -o jsonpath='{.status.bestTrial.checkpoint}')"
pass "jobs sharing a claim write under /models/<namespace>/<job>; only the one to clean up holds the finalizer"

# (c) dashboard
port=$(cat "$env_dir/controller.metrics-port")
curl -fsS "http://127.0.0.1:$port/dashboard" > "$TEST_TMP/dash.html" || fail "GET /dashboard"
grep -q '<!doctype html>' "$TEST_TMP/dash.html" && grep -q '/dashboard/ws' "$TEST_TMP/dash.html" \
  || fail "dashboard page: $(head -c 300 "$TEST_TMP/dash.html")"
! grep -Eq '<script[^>]+src=|<link ' "$TEST_TMP/dash.html" || fail "the page loads external assets"
# ws_client PORT [JOB]: prints the first snapshot; with JOB, then reads on
# until a pushed snapshot no longer holds JOB and prints how many came.
cat > "$TEST_TMP/ws.py" <<'PYEOF'
import base64, hashlib, json, os, socket, sys
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port), timeout=20)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((f"GET /dashboard/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
buf = b""
while b"\r\n\r\n" not in buf:
    chunk = s.recv(4096)
    assert chunk, "closed during the handshake"
    buf += chunk
head, buf = buf.split(b"\r\n\r\n", 1)
lines = head.decode().split("\r\n")
assert " 101 " in lines[0], lines[0]
want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
assert any(l.lower().startswith("sec-websocket-accept:") and l.split(":", 1)[1].strip() == want for l in lines), lines
def need(n):
    global buf
    while len(buf) < n:
        chunk = s.recv(65536)
        assert chunk, "closed before a whole frame"
        buf += chunk
    out, buf = buf[:n], buf[n:]
    return out
def message():
    msg = b""
    while True:
        b0, b1 = need(2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(need(2), "big")
        elif n == 127:
            n = int.from_bytes(need(8), "big")
        assert not b1 & 0x80, "server frames are not masked"
        assert b0 & 0x0F in (1, 0), f"opcode {b0 & 0x0F}"
        msg += need(n)
        if b0 & 0x80:
            return msg.decode()
print(message(), flush=True)
if len(sys.argv) > 2:
    s.settimeout(120)
    n = 0
    while True:
        n += 1
        if sys.argv[2] not in {j["name"] for j in json.loads(message())["jobs"]}:
            print(f"gone after {n} pushed snapshots", file=sys.stderr)
            break
PYEOF
"$PY" "$TEST_TMP/ws.py" "$port" > "$TEST_TMP/ws.json" || fail "WebSocket: $(cat "$TEST_TMP/ws.json")"
"$PY" - "$TEST_TMP/ws.json" <<'PYEOF' || fail "snapshot: $(head -c 600 "$TEST_TMP/ws.json")"
import json, sys
snap = json.load(open(sys.argv[1]))
jobs = {j["name"]: j for j in snap["jobs"]}
assert {"gone", "keep", "own"} <= set(jobs), jobs.keys()
g = jobs["gone"]
assert g["phase"] == "Succeeded" and g["metric"] == "accuracy" and g["goal"] == 0.3, g
assert g["trials"] and g["trials"][0]["name"] == "gone-t0", g["trials"]
assert g["trials"][0]["value"] >= 0.3 and g["best"]["value"] == g["trials"][0]["value"], g
PYEOF
pass "GET /dashboard and a WebSocket snapshot with the jobs and their trials"

# (d) deletion, watched live on the dashboard
"$PY" "$TEST_TMP/ws.py" "$port" gone > "$TEST_TMP/ws-first.json" 2> "$TEST_TMP/ws-gone.txt" &
ws_pid=$!
for _ in $(seq 100); do [ -s "$TEST_TMP/ws-first.json" ] && break; sleep 0.1; done
kubectl delete tj gone --wait=true --timeout=120s >/dev/null \
  || { kubectl get tj gone -o yaml >&2; kubectl get pods >&2; fail "tj/gone was not deleted"; }
wait "$ws_pid" || fail "the dashboard did not push the deletion: $(cat "$TEST_TMP/ws-gone.txt")"
grep -q 'gone after' "$TEST_TMP/ws-gone.txt" || fail "dashboard: $(cat "$TEST_TMP/ws-gone.txt")"
kubectl get tj gone >/dev/null 2>&1 && fail "tj/gone still exists"
[ ! -e "$vols/shared/default/gone/t0" ] || fail "the deleted job's checkpoints remain: $(find "$vols/shared/default/gone")"
[ -f "$vols/shared/default/keep/t0/model.kiln" ] || fail "another job's checkpoints were deleted"
kubectl get events --field-selector involvedObject.name=gone -o json > "$TEST_TMP/events.json"
[ "$(json "$TEST_TMP/events.json" 'sum(e["reason"] == "CheckpointsDeleted" for e in j["items"])')" -ge 1 ] \
  || fail "no CheckpointsDeleted event"
pass "kubectl delete tj: the clean-up pod deleted the job's checkpoints, then the job went ($(cat "$TEST_TMP/ws-gone.txt") on the dashboard)"

# Foreground deletion (kubectl --cascade=foreground, and GitOps tools that
# delete that way): the garbage collector deletes the job's pods first; the
# clean-up pod waits for it rather than being deleted with them.
kubectl delete tj fore --cascade=foreground --wait=true --timeout=120s >/dev/null \
  || { kubectl get tj fore -o yaml >&2; kubectl get pods >&2; fail "tj/fore was not deleted in the foreground"; }
[ ! -e "$vols/shared/default/fore/t0" ] || fail "foreground deletion left the checkpoints: $(find "$vols/shared/default/fore")"
pass "kubectl delete --cascade=foreground: pods deleted first, then the checkpoints, then the job"

kubectl delete tj keep --wait=true --timeout=60s >/dev/null || fail "tj/keep was not deleted"
[ -f "$vols/shared/default/keep/t0/model.kiln" ] || fail "retain: true, yet the checkpoints are gone"
kubectl get pod keep-cleanup >/dev/null 2>&1 && fail "a clean-up pod ran for a retained job"
pass "storage.retain: true keeps the checkpoints"

kubectl delete tj own --wait=true --timeout=60s >/dev/null || fail "tj/own was not deleted"
for _ in $(seq 100); do
  kubectl get pvc own-models >/dev/null 2>&1 || break
  sleep 0.1
done
kubectl get pvc own-models >/dev/null 2>&1 && fail "the job's own claim survived it"
kubectl get pvc shared >/dev/null 2>&1 || fail "the shared claim was deleted"
pass "the job's own claim goes with the job"

# retain set after the claim was made: the claim loses its owner reference
# and outlives the job
kubectl patch tj flip --type merge -p '{"spec":{"storage":{"retain":true}}}' >/dev/null || fail "patch retain"
for _ in $(seq 150); do
  [ -z "$(kubectl get pvc flip-models -o jsonpath='{.metadata.ownerReferences}')" ] && break
  sleep 0.2
done
[ -z "$(kubectl get pvc flip-models -o jsonpath='{.metadata.ownerReferences}')" ] \
  || fail "retain: true, yet flip-models is still owned: $(kubectl get pvc flip-models -o jsonpath='{.metadata.ownerReferences}')"
kubectl delete tj flip --wait=true --timeout=60s >/dev/null || fail "tj/flip was not deleted"
sleep 1
kubectl get pvc flip-models >/dev/null 2>&1 || fail "retain set on a running job, yet its claim went with it"
pass "storage.retain set later: the claim is released and survives the job"
