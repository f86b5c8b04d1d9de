// SHA-256 of an ONNX model's weights (OpenSSL's EVP interface), for the model card: from the
// protobuf when writing, from the shared reader's byte ranges when reading.
#include <openssl/evp.h>

#include <cstdio>
#include <memory>

#include "loupe/error.h"
#include "loupe/export/onnx_file.h"
#include "weights_hash.h"

namespace loupe::exporter {

namespace {

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) {
    if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1) {
      throw Error(ErrorCode::InvalidArgument, "SHA-256: OpenSSL could not initialise a digest");
    }
  }
  void update(const void* data, size_t size) { EVP_DigestUpdate(ctx_.get(), data, size); }
  std::string hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_DigestFinal_ex(ctx_.get(), digest, &length);
    std::string out;
    char buf[3];
    for (unsigned int i = 0; i < length; ++i) {
      std::snprintf(buf, sizeof buf, "%02x", digest[i]);
      out += buf;
    }
    return out;
  }

 private:
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx_;
};

}  // namespace

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
