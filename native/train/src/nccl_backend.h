// NCCL, the c10d backend between CUDA devices, where the build has it (distributed.cpp's only
// link to it). Defined in nccl_backend.cpp, compiled only when CMake finds a CUDA LibTorch 2.x
// with nccl.h (LOUPE_WITH_NCCL); every other build answers nccl_available() = false.
#pragma once

#include <chrono>

#ifdef LOUPE_WITH_NCCL
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#endif

namespace loupe::train {

#ifdef LOUPE_WITH_NCCL
constexpr bool nccl_available() { return true; }
// The process group of `size` ranks over NCCL; collectives run on the tensors' CUDA device.
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                                    std::chrono::milliseconds timeout);
#else
constexpr bool nccl_available() { return false; }
#endif

}  // namespace loupe::train
