#!/usr/bin/env bash
# The quickstart: trains the sample TrainingJob's first trial on the real
# Fashion-MNIST data with kiln-trainer, prints the epochs as they finish and
# the result, then serves the model and sends it one prediction.
#
#   hack/quickstart.sh          run (make quickstart)
#   hack/quickstart.sh --down   stop anything a previous run left
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state=$root/.quickstart
trainer=$root/build/trainer/kiln-trainer
sample=$root/manifests/samples/fashion-mnist.yaml

stop_all() {
  if [ -f "$state/serve.pid" ]; then
    kill "$(cat "$state/serve.pid")" 2>/dev/null || true
    rm -f "$state/serve.pid"
  fi
}
if [ "${1:-}" = "--down" ]; then
  stop_all
  echo "quickstart: stopped"
  exit 0
fi
trap stop_all EXIT INT TERM

[ -x "$trainer" ] || { echo "quickstart: build first (make build)" >&2; exit 1; }
rm -rf "$state"
mkdir -p "$state"

# The trainer takes the TrainingJob's spec as JSON.
spec=$(/usr/bin/python3 -c 'import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))["spec"]))' "$sample")
echo "quickstart: training the first trial of $(basename "$sample") on Fashion-MNIST"
printf '%-6s %-10s %-14s %-10s %s\n' EPOCH LOSS TRAIN-ACC VAL-ACC SECONDS
"$trainer" train --config-json "$spec" --output "$state/models/t0" --report "$state/report.json" \
  2>"$state/train.log" | /usr/bin/python3 -c '
import json, sys
for line in sys.stdin:
    j = json.loads(line)
    if "epoch" in j:
        print(f"{j[\"epoch\"]:<6} {j[\"loss\"]:<10.4f} {j[\"trainAccuracy\"]:<14.4f} {j[\"valAccuracy\"]:<10.4f} {j[\"seconds\"]:.2f}", flush=True)
'
/usr/bin/python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
m = r["metrics"]
print(f"quickstart: test accuracy {m[\"accuracy\"]:.4f}, f1 {m[\"f1\"]:.4f}, params {json.dumps(r[\"params\"])}")
print(f"quickstart: checkpoint {r[\"checkpoint\"]}")' "$state/report.json"

if ! "$trainer" help | grep -q '^  serve'; then
  exit 0
fi
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$trainer" serve --model "$state/models/t0/model.kiln" --name fashion-mnist --port "$port" \
  --address 127.0.0.1 2>"$state/serve.log" &
echo $! > "$state/serve.pid"
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
body=$(/usr/bin/python3 -c '
import gzip
img = gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read()[16:16 + 784]
print("{\"instances\": [[" + ",".join(map(str, img)) + "]]}")')
resp=$(curl -sS -w '\n%{http_code}' -H 'Content-Type: application/json' -d "$body" \
  "http://127.0.0.1:$port/v1/models/fashion-mnist:predict")
echo "quickstart: prediction for the first test image (an ankle boot): $(head -n 1 <<<"$resp") (HTTP $(tail -n 1 <<<"$resp"))"
