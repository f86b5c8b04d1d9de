// Internal: the weights hash, without LibTorch (declared publicly in onnx_export.h too).
#pragma once

#include <onnx/onnx_pb.h>

#include <string>

namespace loupe::exporter {

// SHA-256 (lower-case hex) of every initializer's raw_data, concatenated in graph order.
std::string weights_sha256(const onnx::ModelProto& proto);

}  // namespace loupe::exporter
