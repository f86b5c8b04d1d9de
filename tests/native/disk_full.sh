#!/usr/bin/env bash
# A full disk while checkpointing (issue #3): `loupe train` writes its run folder onto a small
# tmpfs whose space a filler file takes, so that epoch 1's checkpoints fit and a later checkpoint
# write hits ENOSPC. Checks that training stops with a non-zero exit (not a crash) and a message
# naming the cause and the file, that the checkpoints already written are intact (loupe eval loads
# both), that no partial *.tmp file is left behind, and that after deleting the filler --resume
# finishes the run with the same history as an uninterrupted one.
# The tmpfs is mounted in a private mount namespace (unshare -rm: no real root needed); where that
# is not possible, or without the data folder, it exits 77 (ctest: skipped) saying why.
#   disk_full.sh LOUPE_BINARY CONFIG
set -uo pipefail
loupe=$1 config=$2
data=${LOUPE_DATA_DIR:-$(dirname "$0")/../../../shared/data}
[[ -d "$data/all-leukemia" ]] || { echo "SKIP: no $data/all-leukemia: disk-full test skipped"; exit 77; }
export LOUPE_DATA_DIR=$data

# Outside: find a way to mount a tmpfs (user + mount namespace, or a mount namespace as root),
# then run this script again inside it.
if [[ "${LOUPE_DISK_FULL_NS:-}" != 1 ]]; then
  command -v unshare >/dev/null || { echo "SKIP: no unshare command: disk-full test skipped"; exit 77; }
  probe=$(mktemp -d)
  why=""
  for ns in "-rm" "-m"; do
    # shellcheck disable=SC2016  # $1 is expanded by the inner sh
    if err=$(unshare $ns sh -c 'mount -t tmpfs -o size=64k tmpfs "$1"' sh "$probe" 2>&1); then
      rmdir "$probe"
      LOUPE_DISK_FULL_NS=1 exec unshare $ns "$0" "$@"
    fi
    why+=" [unshare $ns: ${err:-failed}]"
  done
  rmdir "$probe"
  echo "SKIP: cannot mount a tmpfs in a private mount namespace:$why; disk-full test skipped"
  exit 77
fi

work=$(mktemp -d)
trap 'umount "$work/disk" 2>/dev/null; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
small=(--set epochs=3 --set preprocess.size=32)

# The same run on an ordinary disk: the reference history and the checkpoint sizes.
"$loupe" train -q -c "$config" -o "$work/ref" "${small[@]}" >"$work/ref.log" 2>&1 || { cat "$work/ref.log"; fail "reference run"; }
best=$(stat -c %s "$work/ref/checkpoints/best.pt") last=$(stat -c %s "$work/ref/checkpoints/last.pt")
(( last > 2 * best )) || fail "expected last.pt (model + optimizer, $last bytes) to be over twice best.pt ($best bytes)"

# Room for best.pt + last.pt + half a last.pt + the small files: epoch 1 fits (best.pt, then
# last.pt); epoch 2's best.pt.tmp fits beside them, its last.pt.tmp cannot.
mkdir "$work/disk"
mount -t tmpfs -o size=64m tmpfs "$work/disk" || fail "mount tmpfs"
room=$(( best + last + last / 2 + 256 * 1024 ))
head -c $(( 64 * 1024 * 1024 - room )) /dev/zero >"$work/disk/filler" || fail "filler"
echo "tmpfs 64 MiB, $(( room / 1024 )) KiB left beside the filler; checkpoints: best.pt $best bytes, last.pt $last bytes"

run=$work/disk/run
"$loupe" train -q -c "$config" -o "$run" "${small[@]}" >"$work/full.log" 2>&1
status=$?
cat "$work/full.log"
(( status != 0 )) || fail "training on a full disk exited 0"
(( status < 128 )) || fail "training on a full disk crashed (exit $status) instead of stopping with an error"
grep -q "epoch 1/3" "$work/full.log" || fail "epoch 1 did not finish: the disk was full too early for this test"
grep -Eqi "no space left on device|disk is full" "$work/full.log" || fail "the error does not say that the disk is full"
grep -Eq "checkpoints/(last|best)\.pt" "$work/full.log" || fail "the error does not name the checkpoint file"
grep -q -- "--resume" "$work/full.log" || fail "the error does not say how to continue"
leftovers=$(find "$run" -name '*.tmp')
[[ -z "$leftovers" ]] || fail "partial files left behind: $leftovers"

# The checkpoints written before the disk filled are whole: both load and evaluate.
for weights in best last; do
  "$loupe" eval -r "$run" --weights "$weights" >"$work/eval-$weights.log" 2>&1 ||
    { cat "$work/eval-$weights.log"; fail "$weights.pt does not load after the full disk"; }
done
echo "after ENOSPC: exit $status, no *.tmp left, best.pt and last.pt load (last.pt test accuracy $(awk '$1 == "accuracy" {print $2; exit}' "$work/eval-last.log"))"

# Space again: --resume finishes the run exactly like the uninterrupted one.
rm "$work/disk/filler"
"$loupe" train -q --resume -o "$run" >"$work/resume.log" 2>&1 || { cat "$work/resume.log"; fail "--resume after freeing space"; }
grep -q "resumed after epoch 1" "$work/resume.log" || { cat "$work/resume.log"; fail "resume did not start from epoch 1's checkpoint"; }
[[ -f "$run/metrics.json" ]] || fail "the resumed run wrote no metrics.json"
[[ -z "$(find "$run" -name '*.tmp')" ]] || fail "partial files left after the resumed run"
python3 - "$work/ref/history.json" "$run/history.json" <<'PY' || fail "the resumed run differs from the uninterrupted one"
import json, sys
keys = ("epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy")
a, b = ([{k: r[k] for k in keys} for r in json.load(open(f))] for f in sys.argv[1:3])
assert a == b, (a, b)
print(f"--resume after freeing space: {len(b)} epochs identical to the uninterrupted run")
PY
echo "ok: a full disk while checkpointing stops with a clear error, keeps the checkpoints, and --resume finishes"
