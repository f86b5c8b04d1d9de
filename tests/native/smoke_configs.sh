#!/usr/bin/env bash
# Runs every smoke config of models/configs/smoke/ (one short training each, real data) with the
# loupe CLI, and checks each run folder holds a test report. Exit 77 (ctest: skipped) without data.
#   smoke_configs.sh LOUPE_BINARY CONFIG_DIR
set -uo pipefail
loupe=$1 configs=$2
data=${LOUPE_DATA_DIR:-$(dirname "$0")/../../../shared/data}
[[ -d "$data" ]] || { echo "no data folder $data: smoke configs skipped"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
for config in "$configs"/*.smoke.json; do
  name=$(basename "$config" .smoke.json)
  if "$loupe" train -q -c "$config" -o "$work/$name" >"$work/$name.log" 2>&1 &&
     grep -q '"accuracy"' "$work/$name"/metrics.json; then
    echo "ok   $name: $(grep -m1 'held-out test' "$work/$name.log")"
  else
    echo "FAIL $name"; tail -20 "$work/$name.log"; failed=1
  fi
done
exit $failed
