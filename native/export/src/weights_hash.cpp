// SHA-256 of an ONNX model's weights (OpenSSL's EVP interface), for the model card.
#include "weights_hash.h"

#include <openssl/evp.h>

#include <cstdio>
#include <memory>

#include "loupe/error.h"

namespace loupe::exporter {

std::string weights_sha256(const onnx::ModelProto& proto) {
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    throw Error(ErrorCode::InvalidArgument, "SHA-256: OpenSSL could not initialise a digest");
  }
  for (const auto& init : proto.graph().initializer()) {
    if (init.raw_data().empty()) {
      int64_t elements = 1;
      for (int64_t d : init.dims()) elements *= d;
      if (elements != 0) {
        throw Error(ErrorCode::InvalidArgument,
                    "weights hash: initializer '" + init.name() + "' keeps its data outside raw_data");
      }
    }
    EVP_DigestUpdate(ctx.get(), init.raw_data().data(), init.raw_data().size());
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &length);
  std::string hex;
  char buf[3];
  for (unsigned int i = 0; i < length; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", digest[i]);
    hex += buf;
  }
  return hex;
}

}  // namespace loupe::exporter
