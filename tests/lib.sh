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
