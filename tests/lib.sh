# Shared helpers for the script tests. Sourced, not run.
#   KILN_BUILD_DIR   the build directory (set by ctest)
#   KILN_SOURCE_DIR  the source tree (set by ctest)
set -euo pipefail

KILN_SOURCE_DIR=${KILN_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
KILN_BUILD_DIR=${KILN_BUILD_DIR:-$KILN_SOURCE_DIR/build}
TRAINER=$KILN_BUILD_DIR/trainer/kiln-trainer
FMNIST=/usr/share/datasets/fashion-mnist
PY=/usr/bin/python3

[ -x "$TRAINER" ] || { echo "FAIL: $TRAINER not built" >&2; exit 1; }
[ -d "$FMNIST" ] || { echo "FAIL: $FMNIST missing (hack/install-deps.sh installs dataset-fashion-mnist)" >&2; exit 1; }

TEST_TMP=$(mktemp -d /tmp/kiln-test.XXXXXX)
cleanup_tmp() { rm -rf "$TEST_TMP"; }
trap cleanup_tmp EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok   $*"; }

# json FILE EXPR: evaluates a Python expression over the JSON in FILE (as j).
json() { "$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

# Writes the first N test images (and labels) of Fashion-MNIST as raw IDX
# files DIR/images.idx and DIR/labels.idx.
fmnist_slice() { # DIR N [train|t10k]
  "$PY" - "$1" "$2" "${3:-t10k}" "$FMNIST" <<'PYEOF'
import gzip, struct, sys, os
d, n, part, src = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
os.makedirs(d, exist_ok=True)
img = gzip.open(f"{src}/{part}-images-idx3-ubyte.gz").read()
lab = gzip.open(f"{src}/{part}-labels-idx1-ubyte.gz").read()
open(f"{d}/images.idx", "wb").write(struct.pack(">IIII", 0x803, n, 28, 28) + img[16:16 + n * 784])
open(f"{d}/labels.idx", "wb").write(struct.pack(">II", 0x801, n) + lab[8:8 + n])
PYEOF
}

# env_up: starts a local environment (hack/local-up.sh) in $TEST_TMP/env,
# exports KUBECONFIG and env_dir, and stops it all at exit. A test with
# more to stop defines on_exit before calling env_up.
env_up() {
  env_dir=$TEST_TMP/env
  trap 'if declare -F on_exit >/dev/null; then on_exit; fi
        "$KILN_SOURCE_DIR/hack/local-down.sh" "$env_dir" >/dev/null 2>&1; rm -rf "$TEST_TMP"' EXIT
  "$KILN_SOURCE_DIR/hack/local-up.sh" "$env_dir" "$KILN_BUILD_DIR" >/dev/null || fail "local-up"
  export KUBECONFIG=$env_dir/kubeconfig
}

# kubelite_fault JSON: posts a fault to kubelite's admin endpoint
# ({"killPod":"ns/name"}, {"dropWatches":true}, ...; hack/kubelite/README.md).
kubelite_fault() {
  local server token
  server=$(sed -n 's/ *server: *//p' "$KUBECONFIG" | head -n 1)
  token=$(cat "$env_dir/kubelite/token")
  curl -fsS --cacert <(sed -n 's/ *certificate-authority-data: *//p' "$KUBECONFIG" | base64 -d) \
    -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d "$1" \
    "$server/kubelite/faults" >/dev/null
}
