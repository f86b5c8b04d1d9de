// Runner for the native (LibTorch) suites.
//
// Threads: LibTorch starts with one intra-op thread on the project's machines; the suites use two
// (the machines have two cores). LOUPE_TEST_THREADS overrides.
//
// Wait policy: LibTorch's OpenMP (libgomp) threads spin while waiting for work. On a two-core machine
// shared with a compiler or another test, the spinning thread steals the core the other one needs and
// the suite runs about 3x slower. libgomp reads OMP_WAIT_POLICY once, when it is loaded (before
// main), so if it is unset the runner sets it to PASSIVE and re-executes itself once.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>

#include "loupe/train/omp_wait.h"
#include "../core/skip.h"

int main(int argc, char** argv) {
  loupe::train::reexec_with_passive_omp_wait(argv);  // see omp_wait.h
  int threads = 2;
  if (const char* env = std::getenv("LOUPE_TEST_THREADS")) threads = std::max(1, std::atoi(env));
  at::set_num_threads(threads);
  return loupe::test::run_tests(argc, argv);
}
