#!/usr/bin/env bash
# The catalogue of broken inputs: each gets exit code 2 and a short,
# specific error naming the file and what was expected versus found, with
# no crash. Registered in the sanitizer build, so it runs under ASan+UBSan.
. "$(dirname "$0")/../lib.sh"
d=$TEST_TMP
export ASAN_OPTIONS=detect_leaks=1 OPENBLAS_NUM_THREADS=1

"$PY" - "$d" "$FMNIST" <<'PYEOF'
import gzip, struct, sys, os
d, src = sys.argv[1], sys.argv[2]
img = gzip.open(f"{src}/t10k-images-idx3-ubyte.gz").read()[16:16 + 100 * 784]
hdr = struct.pack(">IIII", 0x803, 100, 28, 28)
open(f"{d}/empty.csv", "w").close()
open(f"{d}/truncated-images-idx3-ubyte", "wb").write(hdr + img[:5000])
open(f"{d}/magic-images-idx3-ubyte", "wb").write(b"\x12\x34\x08\x03" + hdr[4:] + img)
open(f"{d}/huge-images-idx3-ubyte", "wb").write(struct.pack(">IIII", 0x803, 10**9, 28, 28) + img)
open(f"{d}/ragged.csv", "w").write("a,b,class\n1,2,x\n3,4\n5,6,y\n")
open(f"{d}/nolabel.csv", "w").write("a,b,class\n1,2,x\n3,4,y\n")
open(f"{d}/allnan.csv", "w").write("a,b,class\n" + "".join(f"{i},NA,{'xy'[i%2]}\n" for i in range(20)))
os.makedirs(f"{d}/mism", exist_ok=True)
open(f"{d}/mism/train-images-idx3-ubyte", "wb").write(hdr + img)
open(f"{d}/mism/train-labels-idx1-ubyte", "wb").write(struct.pack(">II", 0x801, 7) + bytes(7))
open(f"{d}/corrupt.csv.gz", "wb").write(gzip.compress(b"a,b\n1,2\n" * 100)[:-20] + b"garbagegarbage")
open(f"{d}/bad.json", "w").write('{"training": {"epochs": 3,}')
PYEOF

# A small valid model to damage.
"$TRAINER" train --data "$FMNIST" --family logistic --epochs 1 --max-samples 300 --output "$d/m" \
  --report "$d/m.json" >/dev/null 2>&1 || fail "could not train the model to damage"
"$PY" - "$d/m/model.kiln" "$d" <<'PYEOF'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
open(f"{sys.argv[2]}/truncated.kiln", "wb").write(b[: len(b) // 2])
b[len(b) // 3] ^= 0x04
open(f"{sys.argv[2]}/bitflip.kiln", "wb").write(b)
PYEOF

n=0
expect() { # NAME EXPECTED-SUBSTRING -- command...
  local name=$1 want=$2; shift 3
  local rc=0
  "$@" >"$d/out" 2>"$d/err" || rc=$?
  [ $rc -eq 2 ] || { cat "$d/err" >&2; fail "$name: exit code $rc, expected 2"; }
  grep -qF -- "$want" "$d/err" || { cat "$d/err" >&2; fail "$name: stderr lacks '$want'"; }
  [ "$(wc -l < "$d/err")" -le 5 ] || { cat "$d/err" >&2; fail "$name: more than 5 lines on stderr"; }
  grep -q 'AddressSanitizer\|runtime error' "$d/err" && fail "$name: sanitizer report"
  n=$((n + 1))
  if [ -n "${SHOW:-}" ]; then echo "$name: $(cat "$d/err")"; fi
}
T() { "$TRAINER" train --output "$d/o$n" --report "$d/r$n.json" "$@"; }

expect "empty file" "empty.csv" -- T --data "$d/empty.csv" --label class
expect "truncated idx" "truncated-images-idx3-ubyte" -- T --data "$d/truncated-images-idx3-ubyte" --family mlp
expect "wrong magic" "magic-images-idx3-ubyte" -- T --data "$d/magic-images-idx3-ubyte" --format idx
expect "huge header" "huge-images-idx3-ubyte" -- T --data "$d/huge-images-idx3-ubyte" --format idx
expect "ragged csv" "row" -- T --data "$d/ragged.csv" --label class
expect "missing label column" "clas" -- T --data "$d/nolabel.csv" --label clas
expect "all-NaN column" "'b'" -- T --data "$d/allnan.csv" --label class
expect "label count" "7 labels for 100 images" -- T --data "$d/mism"
expect "corrupt gzip" "corrupt.csv.gz" -- T --data "$d/corrupt.csv.gz" --label a
expect "missing file" "/nonexistent/data.csv" -- T --data /nonexistent/data.csv
expect "malformed config" "bad.json: malformed JSON" -- T --config "$d/bad.json"
expect "unknown family" "unknown value 'transformer'" -- T --data "$FMNIST" --family transformer
expect "negative epochs" "training.epochs: -1 is out of range" -- T --data "$FMNIST" --epochs -1
expect "cnn on tabular" "cnn needs image data" -- T --data "$d/nolabel.csv" --label class --family cnn
expect "inspect truncated" "truncated.kiln" -- "$TRAINER" inspect "$d/truncated.kiln"
expect "inspect bit flip" "CRC mismatch" -- "$TRAINER" inspect "$d/bitflip.kiln"
expect "predict bit flip" "bitflip.kiln" -- "$TRAINER" predict --model "$d/bitflip.kiln" --input "$d/nolabel.csv"
# The report carries the same error for the controller.
T --data "$d/ragged.csv" --label class >/dev/null 2>&1 || true
[ -n "$(json "$d/r$n.json" 'j["error"]')" ] || fail "report has no error"
pass "$n broken inputs rejected with exit code 2 and a specific message"
