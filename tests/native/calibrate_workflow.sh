#!/usr/bin/env bash
# `loupe calibrate` end to end on the shipped chest X-ray model and generated images (three
# patterns, one per class folder; no real data needed, so this never skips): a folder with too few
# images of a class is refused with the number; a calibration with an operating point writes a new
# file whose card records it, whose weights hash and self-test still hold (inspect --verify), and
# which `loupe predict` applies (the probability note, the op_ column, the sensitivity recorded on
# these images reproduced); the model itself is never overwritten; unlabelled folders and unknown
# classes get clear errors.
# With "real-data" it calibrates on the model's own held-out test images instead (from its rebuilt
# split; exit 77, ctest: skipped, without the data folder): the temperature is refitted there and
# the NLL on those images does not rise.
#   calibrate_workflow.sh LOUPE_BINARY SHIPPED_MODEL [real-data]
set -uo pipefail
loupe=$(readlink -f "$1") model=$(readlink -f "$2")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

if [[ ${3:-} == real-data ]]; then
  repo=$(dirname "$model")/../..
  export LOUPE_DATA_DIR=${LOUPE_DATA_DIR:-$repo/../shared/data}
  [[ -d "$LOUPE_DATA_DIR/chest-xray-covid" ]] || { echo "no $LOUPE_DATA_DIR/chest-xray-covid: real-data calibration skipped"; exit 77; }
  (cd "$repo" && "$loupe" split -c models/configs/shipped-chest-xray-mobilenet_v2.json -o "$work/split.json" >/dev/null) || fail "loupe split"
  python3 - "$work/split.json" "$work/test" <<'PY' || fail "test folder"
import json, os, sys
doc = json.load(open(sys.argv[1]))
for path, label in doc["files"]["test"]:
    folder = os.path.join(sys.argv[2], doc["classes"][label])
    os.makedirs(folder, exist_ok=True)
    os.symlink(os.path.abspath(path), os.path.join(folder, os.path.basename(path)))
PY
  "$loupe" calibrate -q -m "$model" "$work/test" --sensitivity Pneumonia=0.9 -o "$work/test.onnx" --report "$work/test.json" \
    >"$work/test.log" 2>&1 || { cat "$work/test.log"; fail "calibrate on the test split"; }
  head -12 "$work/test.log"
  python3 - "$work/test.json" <<'PY' || fail "the refit on the test split"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["temperature_refitted"] and r["images"] == 97, r.get("note")
assert r["after"]["nll"] <= r["before"]["nll"] + 1e-12, "the refit raised the NLL on its own images"
print(f"97 test images: T {r['before']['temperature']:.4f} -> {r['temperature']:.4f}, NLL {r['before']['nll']:.4f} -> {r['after']['nll']:.4f}")
PY
  "$loupe" inspect --verify "$work/test.onnx" >/dev/null || fail "the calibrated file fails inspect --verify"
  echo "ok: calibrate on the shipped model's test split"
  exit 0
fi

# Gray PNGs written with the standard library: a disc (Covid-19), a gradient (No_findings), blobs
# (Pneumonia), each with its own noise; 12 per class, and a folder with only 4 Covid-19 images.
python3 - "$work" <<'PY' || fail "could not generate the images"
import os, random, struct, sys, zlib
root = sys.argv[1]
def png(path, w, h, pixels):
    raw = b"".join(b"\x00" + bytes(pixels[y * w:(y + 1) * w]) for y in range(h))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
                chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
def image(kind, rng, w=96, h=96):
    cx, cy, r = rng.randint(20, 76), rng.randint(20, 76), rng.randint(10, 30)
    out = []
    for y in range(h):
        for x in range(w):
            if kind == 0: v = 200 if (x - cx) ** 2 + (y - cy) ** 2 < r * r else 60
            elif kind == 1: v = 40 + (x + y) * 80 // (w + h)
            else: v = 90 + 70 * (((x // 12) + (y // 12)) % 2)
            out.append(max(0, min(255, v + rng.randint(-25, 25))))
    return out
for folder, per_class in (("site", [12, 12, 12]), ("few", [4, 12, 12])):
    for kind, name in enumerate(["Covid-19", "No_findings", "Pneumonia"]):
        os.makedirs(os.path.join(root, folder, name), exist_ok=True)
        for i in range(per_class[kind]):
            png(os.path.join(root, folder, name, f"{i:02d}.png"), 96, 96, image(kind, random.Random(1000 * kind + i)))
PY

# Too few images of a class: refused, with the numbers; nothing written.
"$loupe" calibrate -q -m "$model" "$work/few" -o "$work/few.onnx" >"$work/few.log" 2>&1 && fail "4 Covid-19 images were accepted"
grep -q "at least 10 labelled images of every class; too few: Covid-19 4" "$work/few.log" || { cat "$work/few.log"; fail "the refusal does not name the count"; }
[[ ! -e "$work/few.onnx" ]] || fail "a refused calibration wrote a file"

# A calibration with an operating point.
"$loupe" calibrate -q -m "$model" "$work/site" --sensitivity Pneumonia=0.9 --site "test bench" -o "$work/site.onnx" \
  --report "$work/site.json" >"$work/calibrate.log" 2>&1 || { cat "$work/calibrate.log"; fail "calibrate"; }
cat "$work/calibrate.log"
grep -q "site calibration on 36 labelled images (Covid-19 12, No_findings 12, Pneumonia 12)" "$work/calibrate.log" ||
  fail "calibrate does not say what it calibrated on"
grep -q "ECE  " "$work/calibrate.log" && grep -q "NLL  " "$work/calibrate.log" || fail "no ECE/NLL before and after"
grep -q "Pneumonia, sensitivity 0.9: called when p >= " "$work/calibrate.log" || fail "no operating point"
[[ -f "$work/site.card.json" ]] || fail "no card beside the new file"
"$loupe" inspect --verify "$work/site.onnx" >"$work/inspect.txt" || { cat "$work/inspect.txt"; fail "the calibrated file fails inspect --verify"; }
grep -q "site calibration (in use): temperature scaling" "$work/inspect.txt" || fail "inspect does not show the site calibration"
grep -q "operating point: Pneumonia when p >= " "$work/inspect.txt" || fail "inspect does not show the operating point"
grep -q "self-test with ONNX Runtime .*: passed" "$work/inspect.txt" || fail "the self-test does not pass on the calibrated file"
grep -q "weights sha256: .* (verified)" "$work/inspect.txt" || fail "the weights hash does not hold"
python3 - "$work/site.card.json" "$work/site.json" <<'PY' || fail "the card of the calibrated file"
import json, sys
card, record = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
site = card["site_calibration"]
assert site == record, "the --report differs from the card"
assert site["images"] == 36 and site["class_counts"] == [12, 12, 12] and site["site"] == "test bench"
assert site["before"]["calibration"] == "export" and card["calibration"]["temperature"] == site["before"]["temperature"]
assert site["operating_points"][0]["class"] == "Pneumonia" and site["operating_points"][0]["sensitivity"] >= 0.9
print(f"site calibration: T {site['before']['temperature']:.4f} -> {site['temperature']:.4f}, "
      f"ECE {site['before']['ece']:.3f} -> {site['after']['ece']:.3f}, Pneumonia threshold {site['operating_points'][0]['threshold']:.4f}")
PY

# The calibrated file in loupe predict: the calibration in use, the operating point applied.
"$loupe" predict -q -m "$work/site.onnx" "$work/site" -o "$work/site.csv" >"$work/predict.log" 2>&1 || { cat "$work/predict.log"; fail "predict"; }
grep -q "probabilities: calibrated for this site" "$work/predict.log" || fail "predict does not say which calibration is in use"
grep -q "predicted class: operating points (site calibration of .*): Pneumonia when p >= " "$work/predict.log" ||
  fail "predict does not say how the class is chosen"
head -1 "$work/site.csv" | grep -q ",p_Pneumonia,op_Pneumonia,ood_distance," || fail "no op_Pneumonia column"
python3 - "$work/site.csv" "$work/site.json" <<'PY' || fail "predict does not apply the operating point as recorded"
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
point = json.load(open(sys.argv[2]))["operating_points"][0]
assert len(rows) == 36
for r in rows:
    p = float(r["p_Pneumonia"])  # 9 significant digits: compare with that much slack
    if abs(p - point["threshold"]) > 1e-8 * max(1.0, point["threshold"]):
        assert (r["op_Pneumonia"] == "true") == (p >= point["threshold"]), r
    if r["op_Pneumonia"] == "true":
        assert r["predicted"] == "Pneumonia", r
called = sum(r["label"] == "Pneumonia" and r["op_Pneumonia"] == "true" for r in rows)
assert called == point["true_positives"], (called, point)
print(f"predict: {called} of 12 Pneumonia images at the operating point, as recorded")
PY

# Never over the model itself; unlabelled images; an unknown class.
cp "$model" "$work/copy.onnx"
"$loupe" calibrate -q -m "$work/copy.onnx" "$work/site" -o "$work/copy.onnx" >"$work/same.log" 2>&1 && fail "calibrate overwrote its model"
grep -q "would replace the model itself" "$work/same.log" || fail "no message for -o = the model"
cmp -s "$model" "$work/copy.onnx" || fail "the model was changed"
mkdir -p "$work/flat" && cp "$work/site/Covid-19/00.png" "$work/flat/a.png"
"$loupe" calibrate -q -m "$model" "$work/flat" -o "$work/flat.onnx" >"$work/flat.log" 2>&1 && fail "an unlabelled folder was accepted"
grep -q "sub-folders named like the classes (Covid-19, No_findings, Pneumonia)" "$work/flat.log" || { cat "$work/flat.log"; fail "no hint for unlabelled images"; }
"$loupe" calibrate -q -m "$model" "$work/site" --sensitivity Flu=0.9 -o "$work/flu.onnx" >"$work/flu.log" 2>&1 && fail "an unknown class was accepted"
grep -q "'Flu' is not one of the model's classes" "$work/flu.log" || fail "no message for an unknown class"
echo "ok: calibrate -> inspect --verify -> predict"
