// Writing NumPy .npy files: tensors that Python, NumPy and the tests can open directly.
#pragma once

#include <string>

#include "loupe/preprocess.h"

namespace loupe::cli {

// Writes a float32 little-endian C-order .npy file. Throws loupe::Error(Io) on failure.
void write_npy(const std::string& path, const Tensor& tensor);

}  // namespace loupe::cli
