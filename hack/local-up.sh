#!/usr/bin/env bash
# Starts a local Kiln environment in DIR: kubelite (its state in DIR/kubelite,
# images mapped to the built binaries), the TrainingJob CRD, and
# kiln-controller. Returns once the CRD is Established and the controller is
# ready. Writes DIR/kubeconfig, DIR/*.pid and DIR/*.log; every port is a
# free one, so several environments can run side by side.
#
#   hack/local-up.sh DIR [BUILD_DIR]
#   hack/local-down.sh DIR
set -euo pipefail
dir=${1:?usage: hack/local-up.sh DIR [BUILD_DIR]}
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${2:-$root/build}" && pwd)
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

for b in hack/kubelite/kubelite controller/src/kiln-controller trainer/kiln-trainer; do
  [ -x "$build/$b" ] || { echo "local-up: $build/$b is not built (make build)" >&2; exit 1; }
done
if [ -f "$dir/kubelite.pid" ] && kill -0 "$(cat "$dir/kubelite.pid")" 2>/dev/null; then
  echo "local-up: an environment already runs in $dir (hack/local-down.sh $dir)" >&2
  exit 1
fi

cat > "$dir/images" <<IMAGES
*/kiln-trainer:*=$build/trainer/kiln-trainer
*/kiln-controller:*=$build/controller/src/kiln-controller
IMAGES

# Runs "$@" in the background in a process group of its own, so that
# signals sent to the caller's group (Ctrl-C, a test runner's timeout) do
# not reach it, but in the caller's session. A session of its own (setsid)
# would also give it a scheduling group of its own where the kernel groups
# by session (CONFIG_SCHED_AUTOGROUP, on by default in Debian): kubelite,
# the controller and the caller then each got a third of the CPU, however
# many threads each had busy, and in a burst of a thousand new jobs the
# controller's thirty-two workers together ran no more than kubelite's one
# API thread. Sets $! as "&" does.
start_bg() {
  set -m
  "$@" &
  set +m
}

fail() {
  echo "local-up: $*" >&2
  for f in kubelite.log controller.log; do
    [ -f "$dir/$f" ] && { echo "--- last lines of $dir/$f" >&2; tail -n 20 "$dir/$f" >&2; }
  done
  "$root/hack/local-down.sh" "$dir" >/dev/null 2>&1 || true
  exit 1
}

# kubelite: the kubeconfig appears once the server answers.
rm -f "$dir/kubelite/kubeconfig"
start_bg "$build/hack/kubelite/kubelite" --data-dir "$dir/kubelite" --listen 127.0.0.1:0 \
  --images "$dir/images" >"$dir/kubelite.log" 2>&1 </dev/null
echo $! > "$dir/kubelite.pid"
for _ in $(seq 300); do
  [ -s "$dir/kubelite/kubeconfig" ] && break
  kill -0 "$(cat "$dir/kubelite.pid")" 2>/dev/null || fail "kubelite exited"
  sleep 0.1
done
[ -s "$dir/kubelite/kubeconfig" ] || fail "kubelite did not write its kubeconfig within 30 s"
cp "$dir/kubelite/kubeconfig" "$dir/kubeconfig"
chmod 600 "$dir/kubeconfig"
export KUBECONFIG=$dir/kubeconfig

kubectl apply -f "$root/crds/" >/dev/null || fail "cannot apply the CRD"
kubectl wait --for condition=Established crd/trainingjobs.kiln.dev --timeout=60s >/dev/null \
  || fail "the CRD did not become Established"

# The log exists before the loop below reads it: the background job's own
# redirection may not have run yet.
: > "$dir/controller.log"
start_bg "$build/controller/src/kiln-controller" --kubeconfig "$dir/kubeconfig" \
  --metrics-bind-address 127.0.0.1:0 --health-probe-bind-address 127.0.0.1:0 \
  >>"$dir/controller.log" 2>&1 </dev/null
echo $! > "$dir/controller.pid"
port=
for _ in $(seq 300); do
  kill -0 "$(cat "$dir/controller.pid")" 2>/dev/null || fail "kiln-controller exited"
  port=${port:-$(sed -n 's/.*"endpoint":"health".*"port":\([0-9]*\).*/\1/p' "$dir/controller.log" | head -n 1)}
  if [ -n "$port" ] && curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
    break
  fi
  sleep 0.1
done
curl -fsS "http://127.0.0.1:${port:-0}/readyz" >/dev/null 2>&1 || fail "kiln-controller did not become ready"
echo "$port" > "$dir/controller.health-port"
sed -n 's/.*"endpoint":"metrics".*"port":\([0-9]*\).*/\1/p' "$dir/controller.log" | head -n 1 > "$dir/controller.metrics-port"
echo "local-up: ready. export KUBECONFIG=$dir/kubeconfig"
