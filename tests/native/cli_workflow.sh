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
grep -q "calibration: temperature scaling, T = " "$work/export.log" || fail "export did not fit the temperature"
grep -q "out-of-distribution check: Mahalanobis" "$work/export.log" || fail "export did not fit the OOD check"
[[ -f "$work/run/reliability.png" && -f "$work/run/export.md" ]] || fail "export wrote no reliability diagram or report"
"$loupe" inspect "$work/run/model.onnx" >"$work/inspect.txt" || fail "inspect"
grep -q "not a diagnostic device" "$work/inspect.txt" || fail "inspect shows no disclaimer"
grep -q "output ood_distance float32 \[batch\]" "$work/inspect.txt" || fail "inspect shows no ood_distance output"
grep -q "calibration: temperature_scaling" "$work/inspect.txt" || fail "inspect shows no calibration"
"$loupe" inspect --verify "$work/run/model.onnx" >"$work/verify.txt" || fail "inspect --verify: the fresh export fails its self-test"
grep -q "self-test with ONNX Runtime .*: passed: max difference" "$work/verify.txt" || fail "inspect --verify prints no self-test result"

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
# Both carry 95% intervals; the Wilson interval of the same accuracy on the same images is the same.
assert run["intervals"]["accuracy"] == pred["intervals"]["accuracy"], (run["intervals"], pred["intervals"])
lo, hi = pred["intervals"]["accuracy"]
assert lo <= pred["accuracy"] <= hi and pred["intervals"]["resamples"] == 2000
print(f"accuracy {pred['accuracy']:.3f} [{lo:.3f}, {hi:.3f}] on {pred['total']} images")
PY
python3 - "$work/run/model.card.json" "$work/test.json" <<'PY' || fail "predict's out-of-distribution flags"
import json, sys
card = json.load(open(sys.argv[1]))
pred = json.load(open(sys.argv[2]))
rows = [r for r in pred["predictions"] if "predicted" in r]
assert rows and all("ood_distance" in r and isinstance(r["out_of_distribution"], bool) for r in rows)
t = card["ood"]["threshold"]
assert all(r["out_of_distribution"] == (r["ood_distance"] > t) for r in rows)
flagged = sum(r["out_of_distribution"] for r in rows)
assert pred["ood"]["flagged"] == flagged
print(f"test split: {flagged} of {len(rows)} flagged out-of-distribution (card: test false alarms {card['ood']['test_false_alarm_rate']:.3f})")
PY
# split.json's paths are relative to where training ran: predict finds them from another folder too.
loupe_path=$(readlink -f "$loupe")
(cd "$work" && "$loupe_path" predict -q -m run/model.onnx --split run/split.json -o moved.json >/dev/null) ||
  fail "predict --split from another folder"

# int8. loupe export --quantize int8 runs the gate on the run's test split (a handful of images in
# this smoke run, so either outcome is possible): it writes model.int8.onnx or refuses with the
# figures. loupe quantize, the split rebuilt from the config, with the gate opened (the gate itself
# is tested in test_quantize.cpp): inspect says int8 and its self-test passes, predict runs it.
"$loupe" export -r "$work/run" --quantize int8 >"$work/export-int8.log" 2>&1
echo "export --quantize int8: $(grep -m1 'top class agrees' "$work/export-int8.log")"
if [[ -f "$work/run/model.int8.onnx" ]]; then
  grep -q "gate passed" "$work/export-int8.log" || fail "export --quantize wrote an int8 model without the gate"
  echo "export --quantize int8: written (gate passed)"
else
  grep -q "the int8 model is refused (nothing written" "$work/export-int8.log" ||
    { cat "$work/export-int8.log"; fail "export --quantize int8: neither an int8 model nor a refusal"; }
  echo "export --quantize int8: refused by the gate, nothing written"
fi
"$loupe" quantize -q -m "$work/run/model.onnx" -c "$config" -o "$work/run/open.int8.onnx" --max-accuracy-drop 100 \
  --min-agreement 0 --threads 2 >"$work/quantize.log" 2>&1 || { cat "$work/quantize.log"; fail "loupe quantize"; }
[[ -f "$work/run/open.int8.card.json" ]] || fail "loupe quantize wrote no card beside the int8 model"
grep -q "top class agrees on" "$work/quantize.log" || fail "loupe quantize printed no gate figures"
"$loupe" inspect --verify "$work/run/open.int8.onnx" >"$work/inspect-int8.txt" || fail "inspect --verify on the int8 model"
grep -q "^precision: int8 (static QDQ" "$work/inspect-int8.txt" || fail "inspect does not say int8"
grep -q "self-test with ONNX Runtime .*: passed" "$work/inspect-int8.txt" || fail "the int8 self-test did not pass"
"$loupe" predict -q -m "$work/run/open.int8.onnx" --split "$work/run/split.json" -o "$work/int8.json" >/dev/null ||
  fail "predict with the int8 model"

# A folder with good and bad files: the batch goes on, bad files carry their error.
mkdir -p "$work/mixed"
cp "$(find "$data/all-leukemia/Benign" -name '*.jpg' | sort | head -1)" "$work/mixed/good.jpg"
printf 'not an image' >"$work/mixed/notes.png"
head -c 600 "$work/mixed/good.jpg" >"$work/mixed/truncated.jpg"
"$loupe" predict -q -m "$work/run/model.onnx" "$work/mixed" -o "$work/mixed.csv" >/dev/null || fail "predict on a mixed folder"
[[ $(grep -c ',$' "$work/mixed.csv") -eq 1 ]] || fail "expected exactly one row without error"
grep -q 'notes.png.*not a supported image' "$work/mixed.csv" || fail "non-image not reported"
grep -q 'truncated.jpg.*truncated' "$work/mixed.csv" || fail "truncated JPEG not reported"
head -1 "$work/mixed.csv" | grep -q ',ood_distance,out_of_distribution,status,error$' || fail "no OOD columns in the CSV"
# Nothing classifiable: a non-zero exit that says so.
mkdir -p "$work/bad" && cp "$work/mixed/notes.png" "$work/mixed/truncated.jpg" "$work/bad/"
"$loupe" predict -q -m "$work/run/model.onnx" "$work/bad" -o "$work/bad.csv" >"$work/bad.log" 2>&1 &&
  fail "predict exited 0 although every image failed"
grep -q "no image could be classified" "$work/bad.log" || fail "all-failed predict does not say why"

# loupe cv on the smoke config: two folds, every image tested once; loupe split shows a split's groups.
"$loupe" cv -q -c "$config" --folds 2 -o "$work/cv" --set epochs=1 --set data.max_per_class=8 --set preprocess.size=32 \
  >"$work/cv.log" 2>&1 || { cat "$work/cv.log"; fail "loupe cv"; }
grep -q "2-fold cross-validation" "$work/cv.log" || fail "loupe cv printed no summary"
python3 - "$work/cv/cv.json" <<'PY' || fail "cv.json"
import json, sys
cv = json.load(open(sys.argv[1]))
assert cv["folds"] == 2 and len(cv["per_fold"]) == 2, cv
assert sum(f["test_images"] for f in cv["per_fold"]) == 32, cv["per_fold"]  # 4 classes x 8: each tested once
s = cv["summary"]["accuracy"]
assert s["min"] <= s["mean"] <= s["max"]
print(f"loupe cv: accuracy {s['mean']:.3f} +- {s['sd']:.3f} over 2 folds")
PY
"$loupe" split -c "$config" --set 'split.group={"file_name_pattern": "^WBC-(\\w+)-", "keep_together": false}' >"$work/split.log" ||
  fail "loupe split"
grep -q "groups (" "$work/split.log" || fail "loupe split shows no groups"

# kill -9 during training, then --resume: the same history and weights as an uninterrupted run.
small=(--set epochs=3 --set data.max_per_class=10 --set preprocess.size=32 --set augment.horizontal_flip=0.5)
"$loupe" train -q -c "$config" -o "$work/straight" "${small[@]}" >/dev/null 2>&1 || fail "straight run"
"$loupe" train -q -c "$config" -o "$work/killed" "${small[@]}" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 600); do [[ -f "$work/killed/checkpoints/last.pt" ]] && break; sleep 0.05; done
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
[[ -f "$work/killed/metrics.json" ]] && fail "the run finished before it could be killed"
[[ -f "$work/killed/checkpoints/last.pt.tmp" ]] && echo "note: a partial checkpoint write was interrupted (ignored on resume)"
"$loupe" train -q --resume -o "$work/killed" >"$work/resume.log" 2>&1 || { cat "$work/resume.log"; fail "resume"; }
grep -q "resumed after epoch" "$work/resume.log" || fail "resume did not start from the checkpoint"
python3 - "$work/straight/history.json" "$work/killed/history.json" <<'PY' || fail "resumed run differs from the uninterrupted one"
import json, sys
keys = ("epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy")
a, b = ([{k: r[k] for k in keys} for r in json.load(open(f))] for f in sys.argv[1:3])
assert a == b, (a, b)
print(f"kill -9 + --resume: {len(b)} epochs identical to the uninterrupted run")
PY
cmp -s "$work/straight/checkpoints/last.pt" "$work/killed/checkpoints/last.pt" ||
  python3 -c "print('note: checkpoint files differ byte-wise (archive metadata); histories are identical')"

# Ctrl-C: the run stops cleanly (exit 0, says how to resume), the last finished epoch is kept.
"$loupe" train -q -c "$config" -o "$work/ctrl-c" "${small[@]}" --set epochs=50 >"$work/ctrl-c.log" 2>&1 &
pid=$!
for _ in $(seq 600); do [[ -f "$work/ctrl-c/checkpoints/last.pt" ]] && break; sleep 0.05; done
kill -INT "$pid"
wait "$pid" || fail "Ctrl-C: non-zero exit"
grep -q "interrupted after" "$work/ctrl-c.log" || { cat "$work/ctrl-c.log"; fail "Ctrl-C: no clean stop message"; }
[[ -f "$work/ctrl-c/checkpoints/last.pt" && ! -f "$work/ctrl-c/checkpoints/last.pt.tmp" ]] || fail "Ctrl-C: checkpoint missing"

# A grid over epochs: one training per other setting, the shorter count read from it; --resume -o
# finds the grid's config in its folder.
"$loupe" train -q -c "$config" -o "$work/grid" "${small[@]}" --set 'grid={"epochs": [1, 2]}' >"$work/grid.log" 2>&1 ||
  { cat "$work/grid.log"; fail "grid"; }
grep -q "above were trained in $work/grid/grid/001" "$work/grid/grid/000/log.txt" ||
  { cat "$work/grid.log"; fail "grid: epoch 1 was not read from the 2-epoch run"; }
"$loupe" train -q --resume -o "$work/grid" >"$work/grid-resume.log" 2>&1 || { cat "$work/grid-resume.log"; fail "grid --resume -o"; }
grep -q "combinations reach a validation accuracy inside the winner" "$work/grid-resume.log" || fail "grid --resume: no ranking"

# Bad models: clear errors, non-zero exit.
head -c 5000 "$work/run/model.onnx" >"$work/cut.onnx"
"$loupe" inspect "$work/cut.onnx" >"$work/cut.log" 2>&1 && fail "a truncated model was accepted"
grep -qi "onnx" "$work/cut.log" || fail "truncated model error does not say what is wrong"
"$loupe" predict -m "$work/mixed/good.jpg" "$work/mixed" >"$work/wrong.log" 2>&1 && fail "an image was accepted as a model"
echo "ok: train -> export -> inspect -> predict"
