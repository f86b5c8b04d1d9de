#!/usr/bin/env bash
# The CLI end to end on real data: train (a smoke config) -> export (ONNX, verified) -> inspect ->
# predict. Checks that predict on the run's test split reproduces the run's test metrics, that a
# bad file in a predict folder is reported in the output without stopping the batch, and that
# bad models give clear errors. Exit 77 (ctest: skipped) without the data folder.
#   cli_workflow.sh LOUPE_BINARY CONFIG
set -uo pipefail
loupe=$1 config=$2
data=${LOUPE_DATA_DIR:-$(dirname "$0")/../../../shared/data}
[[ -d "$data/all-leukemia" ]] || { echo "no $data/all-leukemia: CLI workflow skipped"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$loupe" train -q -c "$config" -o "$work/run" >"$work/train.log" 2>&1 || { cat "$work/train.log"; fail "train"; }
"$loupe" export -r "$work/run" >"$work/export.log" 2>&1 || { cat "$work/export.log"; fail "export"; }
grep -q "parity passed" "$work/export.log" || fail "export did not report parity"
"$loupe" inspect "$work/run/model.onnx" >"$work/inspect.txt" || fail "inspect"
grep -q "not a diagnostic device" "$work/inspect.txt" || fail "inspect shows no disclaimer"

# Predict on the run's held-out split: the same accuracy as training reported.
"$loupe" predict -q -m "$work/run/model.onnx" --split "$work/run/split.json" -o "$work/test.json" >/dev/null ||
  fail "predict --split"
python3 - "$work/run/metrics.json" "$work/test.json" <<'PY' || fail "predict does not reproduce the run's test metrics"
import json, sys
run = json.load(open(sys.argv[1]))["test"]
pred = json.load(open(sys.argv[2]))["report"]
print(f"run test accuracy {run['accuracy']:.4f}, loupe predict {pred['accuracy']:.4f}")
assert abs(run["accuracy"] - pred["accuracy"]) < 1e-9
assert [round(c["f1"], 9) for c in run["classes"]] == [round(c["f1"], 9) for c in pred["classes"]]
PY

# A folder with good and bad files: the batch goes on, bad files carry their error.
mkdir -p "$work/mixed"
cp "$(find "$data/all-leukemia/Benign" -name '*.jpg' | sort | head -1)" "$work/mixed/good.jpg"
printf 'not an image' >"$work/mixed/notes.png"
head -c 600 "$work/mixed/good.jpg" >"$work/mixed/truncated.jpg"
"$loupe" predict -q -m "$work/run/model.onnx" "$work/mixed" -o "$work/mixed.csv" >/dev/null || fail "predict on a mixed folder"
[[ $(grep -c ',$' "$work/mixed.csv") -eq 1 ]] || fail "expected exactly one row without error"
grep -q 'notes.png.*not a supported image' "$work/mixed.csv" || fail "non-image not reported"
grep -q 'truncated.jpg.*truncated' "$work/mixed.csv" || fail "truncated JPEG not reported"

# Bad models: clear errors, non-zero exit.
head -c 5000 "$work/run/model.onnx" >"$work/cut.onnx"
"$loupe" inspect "$work/cut.onnx" >"$work/cut.log" 2>&1 && fail "a truncated model was accepted"
grep -qi "onnx" "$work/cut.log" || fail "truncated model error does not say what is wrong"
"$loupe" predict -m "$work/mixed/good.jpg" "$work/mixed" >"$work/wrong.log" 2>&1 && fail "an image was accepted as a model"
echo "ok: train -> export -> inspect -> predict"
