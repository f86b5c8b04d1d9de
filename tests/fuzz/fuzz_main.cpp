// One libFuzzer executable per target: compiled with -DLOUPE_FUZZ_TARGET=<name> (CMakeLists.txt).
#include "targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  loupe::fuzz::LOUPE_FUZZ_TARGET(data, size);
  return 0;
}
