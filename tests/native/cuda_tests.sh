#!/usr/bin/env bash
# Runs the CUDA cases of the native suite ("[.cuda]", hidden elsewhere) when LibTorch sees a GPU;
# exit 77 (ctest: skipped) otherwise, saying so.
#   cuda_tests.sh LOUPE_BINARY NATIVE_TESTS_BINARY
set -uo pipefail
info=$("$1" info) || exit 1
if grep -q '^cuda: not available' <<<"$info"; then
  echo "$(grep '^libtorch' <<<"$info"), no CUDA device: the CUDA cases are skipped"
  exit 77
fi
exec "$2" "[cuda]"
