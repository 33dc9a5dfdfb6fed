#!/usr/bin/env bash
# The controller, kubelite and the trainer built with ASan+UBSan run a short
# search end to end and shut down cleanly: no sanitizer report, no leak,
# exit status 0 after SIGTERM. (Registered in the sanitizer build.)
. "$(dirname "$0")/../lib.sh"
export ASAN_OPTIONS=detect_leaks=1 OPENBLAS_NUM_THREADS=1
env_up
cat > "$TEST_TMP/tj.yaml" <<YAML
apiVersion: kiln.dev/v1alpha1
kind: TrainingJob
metadata: {name: asan}
spec:
  data: {uri: "file://$FMNIST", maxSamples: 1000}
  model: {family: logistic}
  training: {epochs: 1, threads: 1}
  objective: {metric: accuracy, goal: 0.99}
  tuning: {maxTrials: 3, parallelism: 2}
  serving: {enabled: true}
YAML
kubectl apply -f "$TEST_TMP/tj.yaml" >/dev/null
kubectl wait --for=jsonpath='{.status.phase}'=Failed tj/asan --timeout=300s >/dev/null \
  || { kubectl get tj asan -o yaml >&2; fail "the search did not end"; }
kubectl wait --for=condition=Serving tj/asan --timeout=120s >/dev/null || fail "not served"
pid=$(cat "$env_dir/controller.pid")
kill -TERM "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "the controller did not stop on SIGTERM"
"$KILN_SOURCE_DIR/hack/local-down.sh" "$env_dir" >/dev/null
if grep -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$env_dir/controller.log" "$env_dir/kubelite.log"; then
  fail "sanitizer report"
fi
grep -q '"shutting down"' "$env_dir/controller.log" || fail "no clean shutdown logged"
pass "search, serving and shutdown under ASan+UBSan with no report"
