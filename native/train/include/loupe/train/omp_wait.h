// LibTorch's OpenMP (libgomp) threads spin while waiting for work. On a small machine that spin
// steals the cores the image-decoding threads need (a 2-core run went ~3x slower). libgomp reads
// OMP_WAIT_POLICY once, when it is loaded (before main), so a program that wants the passive
// policy must set it and re-execute itself: call this first thing in main().
#pragma once

#include <cstdlib>
#if defined(__linux__)
#include <unistd.h>
#endif

namespace loupe::train {

// If OMP_WAIT_POLICY is unset: sets it to PASSIVE and re-executes the program (does not return).
// Returns when the variable was already set, or when re-executing failed (spinning threads then).
inline void reexec_with_passive_omp_wait(char** argv) {
#if defined(__linux__)
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);
  }
#else
  (void)argv;
#endif
}

}  // namespace loupe::train
