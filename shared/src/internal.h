// Helpers that image.cpp, dicom.cpp and dicom_reader.cpp share; not part of the public API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace loupe::detail {

// True when a JPEG stream ends with its end-of-image marker (FF D9), allowing for trailing
// padding. libjpeg pads a truncated scan with grey and only warns; this catches it first.
bool jpeg_has_end_marker(const uint8_t* data, size_t size);

// Throws loupe::Error (UnsupportedImage / CorruptImage) unless this build decodes DICOM pixel
// data in transfer syntax `uid` (natively including the syntaxes DCMTK decompresses).
void check_dicom_transfer_syntax(const std::string& uid);

}  // namespace loupe::detail
