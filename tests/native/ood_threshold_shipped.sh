#!/usr/bin/env bash
# The shipped models' out-of-distribution thresholds, re-estimated from the files and their rebuilt
# splits (`loupe split -c CONFIG`, `loupe ood-threshold`): the fit in each graph is reproduced from
# ONNX Runtime's embeddings, and the threshold each shipped card states is the split-conformal one
# (the card consistent with the method it names); the test split's false alarms are within the
# interval of the stated rate. Exit 77 (ctest: skipped) without the data folder.
#   ood_threshold_shipped.sh LOUPE_BINARY REPO_ROOT
set -uo pipefail
loupe=$(readlink -f "$1") repo=$2
export LOUPE_DATA_DIR=${LOUPE_DATA_DIR:-$repo/../shared/data}
[[ -d "$LOUPE_DATA_DIR/chest-xray-covid" && -d "$LOUPE_DATA_DIR/all-leukemia" ]] ||
  { echo "no $LOUPE_DATA_DIR/chest-xray-covid or all-leukemia: shipped OOD thresholds not re-estimated (skipped)"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cd "$repo" || fail "no repository at $repo"

for name in chest-xray-mobilenet_v2 all-leukemia-mobilenet_v2; do
  "$loupe" split -c "models/configs/shipped-$name.json" -o "$work/$name.split.json" >/dev/null || fail "loupe split ($name)"
  "$loupe" ood-threshold -q -m "models/shipped/$name.onnx" --split "$work/$name.split.json" --threads 2 \
    -o "$work/$name.onnx" >"$work/$name.log" 2>&1 || { cat "$work/$name.log"; fail "loupe ood-threshold ($name)"; }
  cat "$work/$name.log"
  python3 - "models/shipped/$name.card.json" "$work/$name.card.json" <<'PY' || fail "$name: the shipped card's threshold is not the re-estimated one"
import json, sys
shipped, again = (json.load(open(p))["ood"] for p in sys.argv[1:3])
assert "split-conformal" in shipped.get("threshold_method", ""), "the shipped card does not state a split-conformal threshold"
assert abs(again["threshold"] - shipped["threshold"]) <= 1e-4 * shipped["threshold"], (again["threshold"], shipped["threshold"])
lo, hi = shipped["false_alarm_interval"]
assert lo < shipped["false_alarm_rate"] <= shipped["alpha"] < hi
test_lo, test_hi = shipped["test_false_alarm_interval"]
assert test_lo <= shipped["alpha"] <= test_hi, "the test split's false alarms contradict the stated rate"
print(f"threshold {shipped['threshold']:.3f} as shipped; false alarms stated {100 * shipped['false_alarm_rate']:.1f}% "
      f"[{100 * lo:.1f}%, {100 * hi:.1f}%], test {100 * shipped['test_false_alarm_rate']:.1f}% "
      f"[{100 * test_lo:.1f}%, {100 * test_hi:.1f}%] on {shipped['test_images']} images")
PY
done
echo "ok: the shipped OOD thresholds are the split-conformal re-estimates"
