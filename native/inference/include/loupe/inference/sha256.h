// SHA-256 natively (OpenSSL's EVP interface): the weights hash of the model card and the hash of
// its self-test record. The page computes the same with the browser's crypto.subtle.
//
//   loupe::inference::Sha256 sha;
//   sha.update(bytes.data(), bytes.size());
//   std::string hex = sha.hex();                       // 64 lower-case hex digits
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace loupe::inference {

class Sha256 {
 public:
  Sha256();  // throws Error(InvalidArgument) when OpenSSL cannot make a digest
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  ~Sha256();
  void update(const void* data, size_t size);
  std::string hex();  // finishes the digest

 private:
  struct Context;
  std::unique_ptr<Context> context_;
};

std::string sha256_hex(const std::string& text);

}  // namespace loupe::inference
