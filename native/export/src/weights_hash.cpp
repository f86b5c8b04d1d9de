// SHA-256 of an ONNX model's weights (loupe/inference/sha256.h), for the model card: from the
// protobuf when writing, from the shared reader's byte ranges when reading.
#include "loupe/error.h"
#include "loupe/export/onnx_file.h"
#include "loupe/inference/sha256.h"
#include "weights_hash.h"

namespace loupe::exporter {

using inference::Sha256;

std::string weights_sha256(const onnx::ModelProto& proto) {
  Sha256 sha;
  for (const auto& init : proto.graph().initializer()) {
    if (init.raw_data().empty()) {
      int64_t elements = 1;
      for (int64_t d : init.dims()) elements *= d;
      if (elements != 0) {
        throw Error(ErrorCode::InvalidArgument,
                    "weights hash: initializer '" + init.name() + "' keeps its data outside raw_data");
      }
    }
    sha.update(init.raw_data().data(), init.raw_data().size());
  }
  return sha.hex();
}

std::string sha256_of_ranges(const uint8_t* bytes, const std::vector<ByteRange>& ranges) {
  Sha256 sha;
  for (const auto& r : ranges) sha.update(bytes + r.offset, r.size);
  return sha.hex();
}

}  // namespace loupe::exporter
