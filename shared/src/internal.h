// Helpers that image.cpp, dicom.cpp and dicom_reader.cpp share; not part of the public API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace loupe::detail {

// True when a JPEG stream ends with its end-of-image marker (FF D9), allowing for trailing
// padding. libjpeg pads a truncated scan with grey and only warns; this catches it first.
bool jpeg_has_end_marker(const uint8_t* data, size_t size);

// Throws loupe::Error (UnsupportedImage / CorruptImage) unless this build decodes DICOM pixel
// data in transfer syntax `uid` (natively including the syntaxes DCMTK decompresses).
void check_dicom_transfer_syntax(const std::string& uid);

// What a JPEG 2000 frame must hold: the DICOM header's size and sample layout.
struct Jpeg2000Layout {
  int columns = 0, rows = 0, samples = 1;
  int bits_allocated = 8, bits_stored = 8, high_bit = 7;  // check_dicom() has checked them
};

// One JPEG 2000 frame (raw codestream or JP2) -> interleaved native samples, little endian, in
// bits_allocated, as uncompressed pixel data would hold them (dicom_codecs.cpp, OpenJPEG). The
// codestream's size, components and precision are checked against `layout` before decoding.
// Throws Error(CorruptImage) naming the problem.
std::vector<uint8_t> decode_jpeg2000_frame(const uint8_t* data, size_t size, const Jpeg2000Layout& layout);

}  // namespace loupe::detail
