// DICOM images: the pixel math both sides share, and the native reader.
//
//   // Native: decode_image() recognises DICOM bytes ("DICM" at offset 128) and reads them with DCMTK.
//   loupe::Image img = loupe::decode_image(loupe::read_file("scan.dcm"));
//
//   // Browser: the page parses the file (web/dicom.mjs, dicom-parser) and hands over the attributes
//   // it read and the bytes of the pixel data; the core does the rest, exactly as natively.
//   loupe::DicomPixels dicom = loupe::dicom_pixels_from_json(attributes, pixels, size);
//   loupe::Image img = loupe::dicom_to_image(dicom);
//
// What dicom_to_image() does, for grayscale (MONOCHROME1/2) X-ray, CT, MR...:
//   1. each stored value is masked to Bits Stored (shifted by High Bit) and sign-extended when
//      Pixel Representation is 1;
//   2. Rescale Slope/Intercept give the modality value m = slope * stored + intercept;
//   3. m is mapped to the output range by the first VOI window (Window Center/Width, with VOI LUT
//      Function LINEAR, LINEAR_EXACT or SIGMOID), else by the VOI LUT Sequence's table, else
//      linearly from the image's own min..max of m;
//   4. MONOCHROME1 (0 = white) is inverted, so every Image is "larger = brighter".
// The output is 16-bit gray, except that plain 8-bit data (Bits Stored <= 8, unsigned, slope 1,
// intercept 0, no window or VOI LUT) stays 8-bit with its values untouched (only inverted when
// MONOCHROME1): an 8-bit DICOM then gives the same Image as the PNG it was made from.
// Why window, else min..max: the window is what the modality chose for display, and what a
// clinician (and the exported PNG/JPEG data sets the models are trained on) sees. Without one,
// mapping the full Bits Stored range would leave typical data (e.g. 10-bit values in 12 stored
// bits, or CT's -1024..3071) nearly black or washed out; the image's own range is what DICOM
// viewers show for an unwindowed image. 16 output bits keep the detail of 12-16-bit data.
// Colour (Samples per Pixel 3): RGB, YBR_FULL and YBR_FULL_422 become 8-bit RGB.
//
// Transfer syntaxes: dicom_to_image() decodes uncompressed (implicit/explicit little endian,
// explicit big endian, deflated once inflated by the parser), RLE Lossless, JPEG Baseline (8-bit,
// with the same libjpeg-turbo as PNG/JPEG decoding, so native and browser agree) and JPEG 2000
// (Part 1, lossless and lossy, with OpenJPEG: Debian's natively, the same source built for wasm).
// JPEG Lossless (process 14) and JPEG-LS arrive already decompressed to native samples
// (pixel_syntax explicit little endian): natively DCMTK's codecs do it in read_dicom(), in the
// browser web/dicom.mjs does it with npm decoders (Debian has no separate library for them), and
// tests/parity checks both give the same samples. Natively, read_dicom() also decompresses JPEG
// Extended (12-bit) with DCMTK. HTJ2K, JPEG XL, video and other syntaxes are refused with a
// message naming them.
// Multi-frame files: one frame is classified, `frame` (0-based; the first by default). Readers
// hand over that frame's pixel data only, and every report says which frame it was ("frame 1 of
// 3"), since an arbitrary slice of an MR volume or a cine loop is not the whole study.
//
// Patient-identifying attributes (names, IDs, dates, UIDs of the study/series/instance,
// institution, free text) are never read into DicomPixels: it holds only what decoding needs and
// a few descriptive, non-identifying attributes (modality, body part, view position, SOP class):
// the model card's intended use is checked against the first three (model_card.h, IntendedImages).
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "loupe/error.h"
#include "loupe/image.h"

namespace loupe {

// The attributes decoding needs, and the pixel data of one frame as stored.
// Field names are also the keys of dicom_pixels_to_json() / dicom_pixels_from_json().
struct DicomPixels {
  // Image Pixel module (group 0028).
  int rows = 0;
  int columns = 0;
  int samples_per_pixel = 1;
  int bits_allocated = 0;
  int bits_stored = 0;            // 0: same as bits_allocated
  int high_bit = -1;              // -1: bits_stored - 1
  int pixel_representation = 0;  // 0 unsigned, 1 two's complement
  int planar_configuration = 0;   // colour only: 0 R1G1B1R2..., 1 R1R2...G1G2...B1B2...
  int frames = 1;                 // Number of Frames
  int frame = 0;                  // the frame pixel_data holds, 0-based (< frames)
  std::string photometric;        // MONOCHROME1, MONOCHROME2, RGB, YBR_FULL, YBR_FULL_422, ...
  // The transfer syntax UID of the file, and of `pixel_data` as given here (they differ when a
  // reader already decompressed or byte-swapped the data, e.g. DCMTK natively).
  std::string transfer_syntax;
  std::string pixel_syntax;       // empty: same as transfer_syntax
  // Modality LUT (Rescale Slope / Intercept) and the first VOI window, if any.
  double slope = 1.0;
  double intercept = 0.0;
  std::optional<double> window_center;
  std::optional<double> window_width;
  std::string voi_lut_function;   // "", LINEAR, LINEAR_EXACT or SIGMOID
  // First item of the VOI LUT Sequence (used when there is no window): the table maps modality
  // value voi_lut_first + i to voi_lut[i], in voi_lut_bits bits.
  std::vector<uint16_t> voi_lut;
  int voi_lut_first = 0;
  int voi_lut_bits = 16;
  // Descriptive, non-identifying.
  std::string modality;           // CR, DX, CT, MR, OT, ...
  std::string body_part;          // Body Part Examined (0018,0015): CHEST, HEAD, ...
  std::string view_position;      // View Position (0018,5101): PA, AP, LL, ...
  std::string sop_class_uid;      // e.g. 1.2.840.10008.5.1.4.1.1.7 (Secondary Capture)
  // Pixel Data (7FE0,0010) of frame `frame`: native samples in the byte order of pixel_syntax,
  // or the encapsulated bytes (all fragments of the frame) for RLE / JPEG / JPEG 2000.
  bool has_pixel_data = false;
  std::vector<uint8_t> pixel_data;
};

// True for a DICOM Part 10 file: "DICM" at byte 128 (after the 128-byte preamble).
bool is_dicom(const uint8_t* data, size_t size);
inline bool is_dicom(const std::vector<uint8_t>& bytes) { return is_dicom(bytes.data(), bytes.size()); }

// Checks the attributes without touching pixels: pixel data present, a frame index below the
// frame count, a transfer
// syntax this build decodes, a supported photometric interpretation and bit layout, and the size
// against `limits`. Throws loupe::Error (UnsupportedImage, CorruptImage, ImageTooLarge,
// ImageTooSmall) with a message naming the problem.
void check_dicom(const DicomPixels& dicom, const DecodeLimits& limits = {});

// Attributes + pixel data -> Image (see the top of this file). Calls check_dicom() first.
Image dicom_to_image(const DicomPixels& dicom, const DecodeLimits& limits = {});

// The attributes as JSON (no pixel data): every field above except pixel_data. For display and
// for tools; it holds nothing patient-identifying.
nlohmann::json dicom_pixels_to_json(const DicomPixels& dicom);

// What the page hands over: `attributes` with the keys of dicom_pixels_to_json() (rows, columns,
// bits_allocated, photometric and transfer_syntax are required; the others have the defaults
// above) and the pixel data bytes. Unknown keys are errors that name the key, so an attribute
// that is not meant to cross (a patient's name, say) is refused rather than carried along.
DicomPixels dicom_pixels_from_json(const nlohmann::json& attributes, const uint8_t* pixels, size_t size);

// Human-readable name of a transfer syntax UID ("JPEG 2000 Lossless"), or "" if unknown.
std::string dicom_transfer_syntax_name(const std::string& uid);

// [SECTION] Reading DICOM files: natively with DCMTK. Where the build has no DICOM reader (the
// browser), these throw UnsupportedImage saying the page parses DICOM first (web/dicom.mjs).

// True when read_dicom() works in this build.
bool dicom_reader_available();

// Parses a DICOM file in memory: the attributes above and the pixel data of frame `frame`
// (0-based), decompressed to native little-endian samples when the syntax needs DCMTK's codecs.
// Size limits and the frame index are checked before any decompression.
DicomPixels read_dicom(const uint8_t* data, size_t size, const DecodeLimits& limits = {}, int frame = 0);

// Reads only the attributes of a file (pixel data is skipped, not loaded): has_pixel_data is
// set, pixel_data stays empty. For scanning folders cheaply.
DicomPixels read_dicom_file_header(const std::string& path);

// read_dicom + dicom_to_image: what decode_image() does with DICOM bytes (frame 0).
Image decode_dicom(const uint8_t* data, size_t size, const DecodeLimits& limits = {}, int frame = 0);

// "frame 2 of 3" for a multi-frame file (1-based, for people), "" for a single frame.
std::string dicom_frame_note(const DicomPixels& dicom);

// [SECTION] Frames of encapsulated pixel data (PS3.5 A.4), the one rule both readers follow
// (web/dicom.mjs has the same function, tests/parity checks they agree).
// `fragments`: the size of every fragment after the Basic Offset Table; `offsets`: the table's
// entries (empty when the table is empty); `starts_codestream(i)`: fragment i begins with a
// JPEG / JPEG-LS SOI or JPEG 2000 SOC marker. Returns [first, last) fragment indices of `frame`:
// all fragments for one frame; by the offset table when it has one entry per frame; one fragment
// per frame when there are as many as frames; else by the fragments that start a codestream.
// Throws Error(CorruptImage) naming why the frame cannot be found.
struct FragmentRange {
  size_t first = 0, last = 0;
};
FragmentRange dicom_frame_fragments(const std::vector<uint32_t>& offsets, const std::vector<uint32_t>& fragments,
                                    int frames, int frame, const std::vector<bool>& starts_codestream);

}  // namespace loupe
