#!/usr/bin/env bash
# The quickstart: brings up the local environment (kubelite, the CRD,
# kiln-controller) in .quickstart/, applies the Fashion-MNIST sample
# TrainingJob, prints each trial as it finishes, waits for the best model
# to be served and sends it one prediction through the job's Service.
#
#   hack/quickstart.sh          run (make quickstart)
#   hack/quickstart.sh --down   stop everything (make quickstart-down)
#
# With a terminal the environment stays up until Ctrl-C; without one (or
# with CI=true) it stops everything it started and exits 0 at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$root/.quickstart
sample=$root/manifests/samples/fashion-mnist.yaml
job=fashion-mnist

if [ "${1:-}" = "--down" ]; then
  "$root/hack/local-down.sh" "$dir"
  exit 0
fi
interactive=0
if [ -t 0 ] && [ "${CI:-}" != "true" ]; then interactive=1; fi

"$root/hack/local-down.sh" "$dir" >/dev/null 2>&1 || true
rm -rf "$dir"
stop() { "$root/hack/local-down.sh" "$dir" >/dev/null 2>&1 || true; }
trap stop EXIT
trap 'echo; exit 130' INT TERM

echo "quickstart: starting kubelite and kiln-controller in $dir"
"$root/hack/local-up.sh" "$dir" "${KILN_BUILD_DIR:-$root/build}" >/dev/null
export KUBECONFIG=$dir/kubeconfig
kubectl apply -f "$sample"

echo "quickstart: trials as they finish (goal: accuracy >= $(kubectl get tj $job -o jsonpath='{.spec.objective.goal}'))"
/usr/bin/python3 - "$job" <<'PYEOF'
import json, subprocess, sys, time
job, seen, deadline = sys.argv[1], set(), time.time() + 600
print(f"{'TRIAL':<18} {'ACCURACY':>8}  {'PHASE':<10} PARAMETERS", flush=True)
while time.time() < deadline:
    out = subprocess.run(["kubectl", "get", "tj", job, "-o", "json"], capture_output=True, text=True)
    if out.returncode == 0:
        st = json.loads(out.stdout).get("status", {})
        for t in st.get("trials", []):
            if t.get("phase") in ("Succeeded", "Failed") and t["name"] not in seen:
                seen.add(t["name"])
                p = t.get("params", {})
                arch = {"mlp": ("hiddenLayers",), "cnn": ("convFilters", "denseLayers")}.get(p.get("family"), ())
                keys = ("family",) + arch + ("epochs", "learningRate", "dropout", "warmStartFrom")
                params = " ".join(f"{k}={json.dumps(p[k])}" for k in keys if k in p)
                acc = t.get("metrics", {}).get("accuracy")
                print(f"{t['name']:<18} {acc if acc is not None else '-':>8}  {t['phase']:<10} {params}", flush=True)
        if st.get("phase") in ("Succeeded", "Failed"):
            best = st.get("bestTrial", {})
            print(f"quickstart: job {st['phase']}: best trial {best.get('name')} "
                  f"with accuracy {best.get('metrics', {}).get('accuracy')} ({best.get('checkpoint')})", flush=True)
            sys.exit(0)
    time.sleep(1)
sys.exit("quickstart: the job did not finish within 10 minutes")
PYEOF

kubectl wait --for=condition=Serving "tj/$job" --timeout=180s >/dev/null
ip=$(kubectl get svc "$job" -o jsonpath='{.spec.clusterIP}')
port=$(kubectl get svc "$job" -o jsonpath='{.spec.ports[0].port}')
echo "quickstart: the best model is served at http://$ip:$port/v1/models/$job:predict"
body=$(/usr/bin/python3 -c '
import gzip
img = gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read()[16:16 + 784]
print("{\"instances\": [[" + ",".join(map(str, img)) + "]]}")')
resp=$(curl -sS --retry 5 --retry-connrefused -w '\n%{http_code}' -H 'Content-Type: application/json' \
  -d "$body" "http://$ip:$port/v1/models/$job:predict")
code=$(tail -n 1 <<<"$resp")
echo "quickstart: prediction for the first Fashion-MNIST test image (class 9, ankle boot): $(head -n 1 <<<"$resp") (HTTP $code)"
[ "$code" = 200 ] || exit 1

if [ $interactive -eq 1 ]; then
  echo
  echo "The environment is up:  export KUBECONFIG=$dir/kubeconfig; kubectl get tj"
  echo "Press Ctrl-C (or run 'make quickstart-down' elsewhere) to stop everything."
  while kill -0 "$(cat "$dir/controller.pid" 2>/dev/null || echo 0)" 2>/dev/null; do sleep 1; done
fi
