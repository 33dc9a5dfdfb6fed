#!/usr/bin/env bash
# Model server benchmark: kiln-trainer serve against a Flask + scikit-learn
# reference (hack/bench/flask_ref.py) on the same load. Both serve a
# Fashion-MNIST MLP 784-128-10; wrk sends single-instance KServe v1
# requests cycling through 1,000 distinct test images (every request runs
# the model). Prints requests/s, p50 and p99 for each, and the ratio.
#
#   hack/bench/serve_bench.sh [BUILD_DIR]
#
# wrk and the server share this machine's two cores, so by default the
# server runs one service thread (wrk takes the other core); on a machine
# of its own it would run one per core (the default of kiln-trainer serve).
#
# Environment: KILN_BENCH_MODEL=PATH serves that checkpoint instead of
# training one; DURATION (default 10s), CONNECTIONS (default 16),
# SERVE_THREADS (default 1), ROUNDS (default 3; the median round is shown).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
trainer=$build/trainer/kiln-trainer
py=/usr/bin/python3
data=/usr/share/datasets/fashion-mnist
duration=${DURATION:-10s}
conns=${CONNECTIONS:-16}
threads=${SERVE_THREADS:-1}
rounds=${ROUNDS:-3}
[ -x "$trainer" ] || { echo "serve_bench: $trainer not built" >&2; exit 1; }
command -v wrk >/dev/null || { echo "serve_bench: wrk is not installed" >&2; exit 1; }

work=$(mktemp -d /tmp/kiln-serve-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_up() { # url
  for _ in $(seq 1 300); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "serve_bench: $1 did not come up" >&2
  return 1
}

# 1,000 distinct test images as v1 bodies, one per line, for the Lua script.
"$py" - "$data" "$work/bodies.txt" <<'PY'
import gzip, json, sys
import numpy as np
d, out = sys.argv[1], sys.argv[2]
x = np.frombuffer(gzip.open(f"{d}/t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16).reshape(-1, 784)
with open(out, "w") as f:
    for img in x[:1000]:
        f.write(json.dumps({"instances": [img.tolist()]}, separators=(",", ":")) + "\n")
PY
cat > "$work/cycle.lua" <<EOF
local bodies = {}
for line in io.lines("$work/bodies.txt") do bodies[#bodies + 1] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
EOF

# CPU time (user + system, all threads) the process PID has used, in ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run_wrk() { # url pid -> prints "rps p50 p99 non2xx cpu_us_per_request"
  local out t0 t1
  t0=$(cpu_ticks "$2")
  out=$(wrk -t1 -c"$conns" -d"$duration" --latency -s "$work/cycle.lua" "$1")
  t1=$(cpu_ticks "$2")
  echo "$out" >>"$work/wrk.txt"
  local rps p50 p99 errs reqs
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errs=$(awk '/Non-2xx or 3xx responses/ {print $5}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  # the server's own CPU per request: on a shared machine a steadier
  # figure than requests/s, which depends on what else runs
  local us
  us=$(awk -v d="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" -v n="${reqs:-0}" \
    'BEGIN { printf "%.1f", (n > 0 ? d / hz / n * 1e6 : 0) }')
  echo "$rps $p50 $p99 ${errs:-0} $us"
}

# The round with the median requests/s out of $rounds, for each server: one
# 10-second run on a two-core virtual machine varies by several percent.
median_wrk() { # url pid
  local r
  for ((r = 0; r < rounds; r++)); do
    run_wrk "$1" "$2"
  done | sort -g -k1,1 | sed -n "$(((rounds + 1) / 2))p"
}

# ---- Kiln
model=${KILN_BENCH_MODEL:-}
if [ -z "$model" ]; then
  echo "training a Fashion-MNIST MLP 784-128-10 with kiln-trainer ..."
  "$trainer" train --data "$data" --output "$work/kiln" --family mlp --hidden 128 \
    --epochs 2 --batch-size 64 >/dev/null
  model=$work/kiln/model.kiln
fi
port=$(free_port)
"$trainer" serve --model "$model" --name fmnist --port "$port" --address 127.0.0.1 \
  --threads "$threads" 2>"$work/kiln-serve.log" &
pids+=($!)
url=http://127.0.0.1:$port
wait_up "$url/readyz"
head -n1 "$work/bodies.txt" >"$work/one.json"
echo "sample answer: $(curl -sf -H 'Content-Type: application/json' --data-binary "@$work/one.json" \
  "$url/v1/models/fmnist:predict")"
read -r k_rps k_p50 k_p99 k_err k_cpu < <(median_wrk "$url/v1/models/fmnist:predict" "${pids[0]}")
echo "kiln-trainer serve:   ${k_rps} req/s  p50 ${k_p50}  p99 ${k_p99}  non-2xx ${k_err}  server CPU ${k_cpu} us/request"
kill "${pids[0]}"
wait "${pids[0]}" || true
pids=()

# ---- Flask reference
echo "training the scikit-learn reference (MLPClassifier((128,)), pickled) ..."
"$py" "$here/flask_ref.py" train "$work/ref.pkl" --max-iter 3
port=$(free_port)
"$py" "$here/flask_ref.py" serve "$work/ref.pkl" --port "$port" 2>"$work/flask.log" &
pids+=($!)
url=http://127.0.0.1:$port
wait_up "$url/healthz"
read -r f_rps f_p50 f_p99 f_err f_cpu < <(median_wrk "$url/v1/models/fmnist:predict" "${pids[0]}")
echo "flask + scikit-learn: ${f_rps} req/s  p50 ${f_p50}  p99 ${f_p99}  non-2xx ${f_err}  server CPU ${f_cpu} us/request"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (on $(nproc) cores; other load lowers both figures)"

"$py" -c "import sys; k, f = float(sys.argv[1]), float(sys.argv[2]); print(f'ratio: {k / f:.1f}x requests/s (goals: >= 50x, >= 30000 req/s, p99 < 5 ms)')" "$k_rps" "$f_rps"
