# shellcheck shell=bash
# Shared steps of hack/kind-e2e.sh and hack/minikube-e2e.sh. Sourced, not
# run. Each script defines cluster_up, load_image and cluster_down, then
# calls e2e_main. Needs Docker; not run in CI.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$root/charts/kiln/Chart.yaml")
controller_image=ghcr.io/kiln-dev/kiln-controller:$version
trainer_image=ghcr.io/kiln-dev/kiln-trainer:$version
job=fashion-mnist
ns=${KILN_E2E_NAMESPACE:-default}
timeout=${KILN_E2E_TIMEOUT:-45m}
local_port=${KILN_E2E_PORT:-18080}
pf_pid=""

say() { echo "e2e: $*"; }
need() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null || { echo "e2e: $c is required (this script needs Docker and $*)" >&2; exit 1; }
  done
}

e2e_cleanup() {
  if [ -n "$pf_pid" ]; then kill "$pf_pid" 2>/dev/null || true; fi
  if [ "${KILN_E2E_KEEP:-0}" = 1 ]; then
    say "keeping the cluster (KILN_E2E_KEEP=1)"
  else
    cluster_down || true
  fi
}

e2e_main() {
  docker info >/dev/null 2>&1 || { echo "e2e: the Docker engine is not reachable" >&2; exit 1; }
  trap e2e_cleanup EXIT

  say "building $controller_image and $trainer_image"
  docker build -f "$root/controller/Dockerfile" -t "$controller_image" "$root"
  docker build -f "$root/trainer/Dockerfile" -t "$trainer_image" "$root"

  say "starting the cluster"
  cluster_up
  load_image "$controller_image"
  load_image "$trainer_image"

  say "installing the chart"
  helm upgrade --install kiln "$root/charts/kiln" --namespace kiln-system --create-namespace \
    --set image.pullPolicy=IfNotPresent --wait --timeout 5m
  kubectl -n kiln-system rollout status deployment/kiln-controller --timeout=3m

  say "applying the Fashion-MNIST sample in namespace $ns"
  kubectl -n "$ns" apply -f "$root/manifests/samples/fashion-mnist.yaml"
  kubectl -n "$ns" wait "trainingjob/$job" --for=condition=GoalReached --timeout="$timeout"
  kubectl -n "$ns" get "trainingjob/$job"
  kubectl -n "$ns" wait "trainingjob/$job" --for=condition=Serving --timeout=10m

  say "asking the served model for a prediction"
  kubectl -n "$ns" port-forward "service/$job" "$local_port:8080" >/dev/null 2>&1 &
  pf_pid=$!
  local _
  for _ in $(seq 60); do
    curl -fsS "http://127.0.0.1:$local_port/readyz" >/dev/null 2>&1 && break
    sleep 1
  done
  local body resp
  body=$(/usr/bin/python3 -c '
import gzip
img = gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read()[16:16 + 784]
print("{\"instances\": [[" + ",".join(map(str, img)) + "]]}")' 2>/dev/null) ||
    body=$(/usr/bin/python3 -c 'print("{\"instances\": [[" + ",".join(["0"] * 784) + "]]}")')
  resp=$(curl -fsS -H 'Content-Type: application/json' -d "$body" \
    "http://127.0.0.1:$local_port/v1/models/$job:predict")
  say "prediction: $resp"
  grep -q '"predictions"' <<<"$resp" || { echo "e2e: no predictions in the answer" >&2; exit 1; }
  say "passed"
}
