// JPEG 2000 test data: frames encoded with OpenJPEG's encoder (the library the core decodes with;
// DCMTK has no JPEG 2000 codec), for the core tests (native and wasm), the DICOM fixtures and the
// fuzz seeds. Test code only.
#pragma once

#include <cstdint>
#include <vector>

namespace loupe::test {

struct J2kOptions {
  int width = 0, height = 0, components = 1;
  int precision = 8;        // bits per sample (Bits Stored)
  bool is_signed = false;
  bool lossless = true;     // reversible 5/3 wavelet; else irreversible 9/7 at 8:1
  bool colour_transform = false;  // RCT/ICT over 3 components (DICOM YBR_RCT / YBR_ICT)
};

// `samples`: interleaved values, width * height * components of them (two's complement in
// `precision` bits when signed). Returns a raw codestream (SOC ... EOC).
std::vector<uint8_t> encode_j2k(const std::vector<int32_t>& samples, const J2kOptions& options);

}  // namespace loupe::test
