// DICOM pixel math shared by the native reader (DCMTK, dicom_reader.cpp) and the browser
// (dicom-parser in web/dicom.mjs): everything from "attributes + pixel data bytes" to an Image.
// No DICOM library here, so the wasm build compiles exactly the same code.
//
// [SECTION] Transfer syntaxes
// [SECTION] Attribute checks
// [SECTION] Frames of encapsulated pixel data
// [SECTION] Frame decoding: native byte order, RLE, JPEG baseline, JPEG 2000
// [SECTION] Grayscale: stored value -> modality value -> VOI -> output
// [SECTION] Colour
// [SECTION] JSON
#include "loupe/dicom.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "internal.h"

namespace loupe {

namespace {

// [SECTION] Transfer syntaxes

enum class SyntaxKind {
  LittleEndian,  // native samples, little endian (deflated ones arrive inflated)
  BigEndian,     // native samples, big endian (retired, still found in archives)
  Rle,           // RLE Lossless: decoded here
  JpegBaseline,  // 8-bit JPEG: decoded here with the core's libjpeg-turbo (same as .jpg files)
  Jpeg2000,      // decoded here with OpenJPEG (dicom_codecs.cpp), natively and in the browser
  ByReader,      // JPEG lossless, JPEG-LS: decompressed by the reader before dicom_to_image (DCMTK
                 // natively, web/dicom.mjs's npm decoders in the browser)
  Dcmtk,         // JPEG extended: decompressed by DCMTK, natively only
  Unsupported,
};

struct SyntaxInfo {
  const char* uid;
  const char* name;
  const char* family;  // what the error message calls it
  SyntaxKind kind;
};

constexpr SyntaxInfo kSyntaxes[] = {
    {"1.2.840.10008.1.2", "Implicit VR Little Endian", "uncompressed", SyntaxKind::LittleEndian},
    {"1.2.840.10008.1.2.1", "Explicit VR Little Endian", "uncompressed", SyntaxKind::LittleEndian},
    {"1.2.840.10008.1.2.1.99", "Deflated Explicit VR Little Endian", "deflated", SyntaxKind::LittleEndian},
    {"1.2.840.10008.1.2.2", "Explicit VR Big Endian", "big-endian", SyntaxKind::BigEndian},
    {"1.2.840.10008.1.2.1.98", "Encapsulated Uncompressed Explicit VR Little Endian", "encapsulated uncompressed",
     SyntaxKind::Unsupported},
    {"1.2.840.10008.1.2.5", "RLE Lossless", "RLE", SyntaxKind::Rle},
    {"1.2.840.10008.1.2.4.50", "JPEG Baseline (Process 1)", "JPEG baseline", SyntaxKind::JpegBaseline},
    {"1.2.840.10008.1.2.4.51", "JPEG Extended (Process 2 & 4)", "JPEG extended (12-bit)", SyntaxKind::Dcmtk},
    {"1.2.840.10008.1.2.4.57", "JPEG Lossless, Non-Hierarchical (Process 14)", "JPEG lossless", SyntaxKind::ByReader},
    {"1.2.840.10008.1.2.4.70", "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 SV1)",
     "JPEG lossless", SyntaxKind::ByReader},
    {"1.2.840.10008.1.2.4.80", "JPEG-LS Lossless", "JPEG-LS", SyntaxKind::ByReader},
    {"1.2.840.10008.1.2.4.81", "JPEG-LS Lossy (Near-Lossless)", "JPEG-LS", SyntaxKind::ByReader},
    {"1.2.840.10008.1.2.4.90", "JPEG 2000 Lossless", "JPEG 2000", SyntaxKind::Jpeg2000},
    {"1.2.840.10008.1.2.4.91", "JPEG 2000", "JPEG 2000", SyntaxKind::Jpeg2000},
    {"1.2.840.10008.1.2.4.92", "JPEG 2000 Part 2 Multi-component Lossless", "JPEG 2000 Part 2 multi-component",
     SyntaxKind::Unsupported},
    {"1.2.840.10008.1.2.4.93", "JPEG 2000 Part 2 Multi-component", "JPEG 2000 Part 2 multi-component",
     SyntaxKind::Unsupported},
    {"1.2.840.10008.1.2.4.94", "JPIP Referenced", "JPIP-referenced", SyntaxKind::Unsupported},
    {"1.2.840.10008.1.2.4.95", "JPIP Referenced Deflate", "JPIP-referenced", SyntaxKind::Unsupported},
    {"1.2.840.10008.1.2.4.100", "MPEG2 Main Profile / Main Level", "MPEG-2 video", SyntaxKind::Unsupported},
    {"1.2.840.10008.1.2.4.101", "MPEG2 Main Profile / High Level", "MPEG-2 video", SyntaxKind::Unsupported},
    {"1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264 High Profile", "MPEG-4 video", SyntaxKind::Unsupported},
    {"1.2.840.10008.1.2.4.103", "MPEG-4 AVC/H.264 BD-compatible High Profile", "MPEG-4 video", SyntaxKind::Unsupported},
    {"1.2.840.10008.1.2.4.104", "MPEG-4 AVC/H.264 High Profile For 2D Video", "MPEG-4 video", SyntaxKind::Unsupported},
    {"1.2.840.10008.1.2.4.105", "MPEG-4 AVC/H.264 High Profile For 3D Video", "MPEG-4 video", SyntaxKind::Unsupported},
    {"1.2.840.10008.1.2.4.106", "MPEG-4 AVC/H.264 Stereo High Profile", "MPEG-4 video", SyntaxKind::Unsupported},
    {"1.2.840.10008.1.2.4.107", "HEVC/H.265 Main Profile", "HEVC video", SyntaxKind::Unsupported},
    {"1.2.840.10008.1.2.4.108", "HEVC/H.265 Main 10 Profile", "HEVC video", SyntaxKind::Unsupported},
    {"1.2.840.10008.1.2.4.110", "JPEG XL Lossless", "JPEG XL", SyntaxKind::Unsupported},
    {"1.2.840.10008.1.2.4.111", "JPEG XL JPEG Recompression", "JPEG XL", SyntaxKind::Unsupported},
    {"1.2.840.10008.1.2.4.112", "JPEG XL", "JPEG XL", SyntaxKind::Unsupported},
    {"1.2.840.10008.1.2.4.201", "High-Throughput JPEG 2000 Lossless", "HTJ2K", SyntaxKind::Unsupported},
    {"1.2.840.10008.1.2.4.202", "High-Throughput JPEG 2000 with RPCL Options Lossless", "HTJ2K",
     SyntaxKind::Unsupported},
    {"1.2.840.10008.1.2.4.203", "High-Throughput JPEG 2000", "HTJ2K", SyntaxKind::Unsupported},
};

const SyntaxInfo* find_syntax(const std::string& uid) {
  for (const auto& s : kSyntaxes) {
    if (uid == s.uid) return &s;
  }
  return nullptr;
}

#ifdef LOUPE_HAVE_DCMTK
constexpr bool kHaveDcmtk = true;
constexpr const char* kDecodedHere =
    "this build decodes uncompressed, RLE, JPEG (baseline, extended, lossless), JPEG-LS and JPEG 2000 DICOM";
#else
constexpr bool kHaveDcmtk = false;
constexpr const char* kDecodedHere =
    "in the browser Loupe decodes uncompressed, RLE, JPEG (baseline, lossless), JPEG-LS and JPEG 2000 DICOM "
    "(the native loupe tool also decodes JPEG extended)";
#endif

[[noreturn]] void unsupported(const std::string& what) { throw Error(ErrorCode::UnsupportedImage, what); }
[[noreturn]] void corrupt(const std::string& what) {
  throw Error(ErrorCode::CorruptImage, "DICOM file is corrupt: " + what);
}

std::string dims(int w, int h) { return std::to_string(w) + "x" + std::to_string(h); }

// The syntax pixel_data is in (what the parser left it in), and its kind; throws for syntaxes
// this build cannot decode.
SyntaxKind checked_pixel_syntax(const DicomPixels& d) {
  const std::string& uid = d.pixel_syntax.empty() ? d.transfer_syntax : d.pixel_syntax;
  if (uid.empty()) corrupt("no transfer syntax (0002,0010) in the file meta information");
  const SyntaxInfo* s = find_syntax(uid);
  if (s == nullptr) {
    unsupported("DICOM transfer syntax " + uid + " is not a known one; " + kDecodedHere);
  }
  if (s->kind == SyntaxKind::Unsupported || (s->kind == SyntaxKind::Dcmtk && !kHaveDcmtk)) {
    unsupported(std::string(s->family) + " compressed DICOM (" + uid + ") is not supported: " + kDecodedHere +
                "; convert the file to an uncompressed transfer syntax first (for example `gdcmconv --raw in.dcm "
                "out.dcm`)");
  }
  return s->kind;
}

bool is_colour(const std::string& photometric) {
  return photometric == "RGB" || photometric == "YBR_FULL" || photometric == "YBR_FULL_422" ||
         photometric == "YBR_RCT" || photometric == "YBR_ICT";
}

// JPEG 2000's colour transforms (reversible / irreversible) are undone by the decoder itself.
bool is_jpeg2000_colour(const std::string& photometric) { return photometric == "YBR_RCT" || photometric == "YBR_ICT"; }

}  // namespace

void detail::check_dicom_transfer_syntax(const std::string& uid) {
  DicomPixels d;
  d.transfer_syntax = uid;
  checked_pixel_syntax(d);
}

std::string dicom_transfer_syntax_name(const std::string& uid) {
  const SyntaxInfo* s = find_syntax(uid);
  return s ? s->name : "";
}

bool is_dicom(const uint8_t* data, size_t size) {
  return data != nullptr && size >= 132 && std::memcmp(data + 128, "DICM", 4) == 0;
}

// [SECTION] Attribute checks

void check_dicom(const DicomPixels& d, const DecodeLimits& limits) {
  if (!d.has_pixel_data) {
    unsupported("DICOM file has no pixel data (7FE0,0010): it holds no image (for example a report, a "
                "presentation state or a DICOMDIR)");
  }
  if (d.frames < 1) corrupt("Number of Frames (0028,0008) is " + std::to_string(d.frames));
  if (d.frame < 0 || d.frame >= d.frames) {
    throw Error(ErrorCode::InvalidArgument,
                "frame " + std::to_string(int64_t{d.frame} + 1) + " does not exist: the DICOM file has " +
                    std::to_string(d.frames) + (d.frames == 1 ? " frame" : " frames (1 to " + std::to_string(d.frames) + ")"));
  }
  if (d.rows <= 0 || d.columns <= 0) corrupt("header declares " + dims(d.columns, d.rows) + " pixels");
  const uint64_t pixels = uint64_t(d.rows) * uint64_t(d.columns);
  if (pixels > limits.max_pixels) {
    throw Error(ErrorCode::ImageTooLarge, "DICOM header declares " + dims(d.columns, d.rows) +
                                              " pixels, above the limit of " + std::to_string(limits.max_pixels) +
                                              " pixels");
  }
  if (d.columns < limits.min_side || d.rows < limits.min_side) {
    throw Error(ErrorCode::ImageTooSmall, "image is " + dims(d.columns, d.rows) +
                                              " pixels; the smallest accepted is " + std::to_string(limits.min_side) +
                                              "x" + std::to_string(limits.min_side));
  }
  const std::string& pi = d.photometric;
  if (pi == "MONOCHROME1" || pi == "MONOCHROME2") {
    if (d.samples_per_pixel != 1) {
      corrupt(pi + " with " + std::to_string(d.samples_per_pixel) + " samples per pixel (expected 1)");
    }
    if (d.bits_allocated != 8 && d.bits_allocated != 16) {
      unsupported("grayscale DICOM with " + std::to_string(d.bits_allocated) +
                  " bits allocated is not supported (8 or 16 bits are)");
    }
  } else if (is_colour(pi)) {
    if (d.samples_per_pixel != 3) {
      corrupt(pi + " with " + std::to_string(d.samples_per_pixel) + " samples per pixel (expected 3)");
    }
    if (d.bits_allocated != 8) {
      unsupported("colour DICOM with " + std::to_string(d.bits_allocated) +
                  " bits allocated is not supported (8 bits per sample are)");
    }
  } else if (pi == "PALETTE COLOR") {
    unsupported("PALETTE COLOR DICOM (pixel values index a colour lookup table) is not supported; grayscale "
                "(MONOCHROME1/2) and RGB/YBR colour images are");
  } else if (pi.empty()) {
    corrupt("no Photometric Interpretation (0028,0004)");
  } else {
    unsupported("DICOM photometric interpretation " + pi +
                " is not supported; grayscale (MONOCHROME1/2) and RGB/YBR colour images are");
  }
  const int stored = d.bits_stored > 0 ? d.bits_stored : d.bits_allocated;
  const int high = d.high_bit >= 0 ? d.high_bit : stored - 1;
  if (stored > d.bits_allocated || high < stored - 1 || high >= d.bits_allocated) {
    corrupt("inconsistent bit layout: " + std::to_string(d.bits_allocated) + " bits allocated, " +
            std::to_string(stored) + " stored, high bit " + std::to_string(high));
  }
  if (is_colour(pi) && stored != 8) {
    unsupported("colour DICOM with " + std::to_string(stored) + " bits stored is not supported (8 bits are)");
  }
  if (d.pixel_representation != 0 && d.pixel_representation != 1) {
    corrupt("Pixel Representation " + std::to_string(d.pixel_representation) + " (expected 0 or 1)");
  }
  if (d.planar_configuration != 0 && d.planar_configuration != 1) {
    corrupt("Planar Configuration " + std::to_string(d.planar_configuration) + " (expected 0 or 1)");
  }
  const SyntaxKind kind = checked_pixel_syntax(d);
  if (is_jpeg2000_colour(pi) && kind != SyntaxKind::Jpeg2000) {
    corrupt(pi + " pixel data in " + dicom_transfer_syntax_name(d.pixel_syntax.empty() ? d.transfer_syntax : d.pixel_syntax) +
            " (" + pi + " is JPEG 2000's colour transform)");
  }
  if (pi == "YBR_FULL_422" && (kind == SyntaxKind::LittleEndian || kind == SyntaxKind::BigEndian) &&
      d.columns % 2 != 0) {
    corrupt("YBR_FULL_422 with an odd number of columns (" + std::to_string(d.columns) + ")");
  }
  if (kind == SyntaxKind::JpegBaseline && d.bits_allocated != 8) {
    corrupt("JPEG baseline pixel data with " + std::to_string(d.bits_allocated) + " bits allocated (it holds 8)");
  }
}

std::string dicom_frame_note(const DicomPixels& dicom) {
  if (dicom.frames <= 1) return "";
  return "frame " + std::to_string(int64_t{dicom.frame} + 1) + " of " + std::to_string(dicom.frames);
}

// [SECTION] Frames of encapsulated pixel data

FragmentRange dicom_frame_fragments(const std::vector<uint32_t>& offsets, const std::vector<uint32_t>& fragments,
                                    int frames, int frame, const std::vector<bool>& starts_codestream) {
  const size_t n = fragments.size();
  const auto which = [&] { return "frame " + std::to_string(int64_t{frame} + 1) + " of " + std::to_string(frames); };
  if (n == 0) corrupt("encapsulated pixel data has no fragments");
  if (frames < 1 || frame < 0 || frame >= frames) corrupt(which() + ": no such frame");
  if (frames == 1) return {0, n};
  const auto f = static_cast<size_t>(frame);
  if (offsets.size() == static_cast<size_t>(frames)) {
    // Offsets count from the first fragment's item tag; each item has an 8-byte header.
    std::vector<uint64_t> item_start(n + 1, 0);
    for (size_t i = 0; i < n; ++i) item_start[i + 1] = item_start[i] + 8 + uint64_t{fragments[i]};
    const auto index_of = [&](uint64_t offset) -> size_t {
      const auto it = std::lower_bound(item_start.begin(), item_start.end(), offset);
      if (it == item_start.end() || *it != offset || it == item_start.end() - 1) {
        corrupt(which() + ": the Basic Offset Table's entry " + std::to_string(offset) +
                " is not the start of a fragment");
      }
      return static_cast<size_t>(it - item_start.begin());
    };
    const size_t first = index_of(offsets[f]);
    const size_t last = f + 1 < offsets.size() ? index_of(offsets[f + 1]) : n;
    if (first >= last) corrupt(which() + ": the Basic Offset Table's entries are not increasing");
    return {first, last};
  }
  if (!offsets.empty()) {
    corrupt("the Basic Offset Table has " + std::to_string(offsets.size()) + " entries for " +
            std::to_string(frames) + " frames");
  }
  if (n == static_cast<size_t>(frames)) return {f, f + 1};
  // No table and more fragments than frames: each frame starts a new codestream.
  std::vector<size_t> starts;
  for (size_t i = 0; i < n && i < starts_codestream.size(); ++i) {
    if (starts_codestream[i]) starts.push_back(i);
  }
  if (starts.size() != static_cast<size_t>(frames) || starts.front() != 0) {
    corrupt(which() + " cannot be found: " + std::to_string(n) + " fragments, no Basic Offset Table, and " +
            std::to_string(starts.size()) + " of them start a codestream");
  }
  return {starts[f], f + 1 < starts.size() ? starts[f + 1] : n};
}

namespace {

// [SECTION] Frame decoding: native byte order, RLE, JPEG baseline, JPEG 2000

// One frame's samples as native values, interleaved unless `planar` (only uncompressed colour
// data can be planar; RLE and JPEG are decoded interleaved).
struct Samples {
  const uint8_t* data = nullptr;
  size_t size = 0;
  bool big_endian = false;
  bool planar = false;
  bool ybr_422 = false;     // uncompressed YBR_FULL_422: Y1 Y2 Cb Cr per pair of pixels
  bool colour_is_rgb = false;  // JPEG decoding already converted YCbCr to RGB
  std::vector<uint8_t> owned;
};

uint32_t le32(const uint8_t* p) {
  return (uint32_t{p[3]} << 24) | (uint32_t{p[2]} << 16) | (uint32_t{p[1]} << 8) | p[0];
}

// PS3.5 Annex G: a 64-byte header (segment count, 15 offsets), then one PackBits-coded segment
// per byte plane: for each sample, its most significant byte first.
std::vector<uint8_t> decode_rle(const uint8_t* d, size_t n, const DicomPixels& dicom) {
  const size_t pixels = size_t(dicom.rows) * size_t(dicom.columns);
  const int bytes = dicom.bits_allocated / 8;
  const uint32_t expected = uint32_t(dicom.samples_per_pixel * bytes);
  if (n < 64) corrupt("RLE frame header truncated (" + std::to_string(n) + " bytes)");
  const uint32_t segments = le32(d);
  if (segments != expected) {
    corrupt("RLE frame has " + std::to_string(segments) + " segments; " + std::to_string(dicom.samples_per_pixel) +
            " sample(s) of " + std::to_string(bytes) + " byte(s) need " + std::to_string(expected));
  }
  std::vector<uint8_t> out(pixels * expected);
  for (uint32_t s = 0; s < segments; ++s) {
    const size_t begin = le32(d + 4 + 4 * s);
    const size_t end = s + 1 < segments ? le32(d + 8 + 4 * s) : n;
    if (begin < 64 || begin > end || end > n) {
      corrupt("RLE segment " + std::to_string(s + 1) + " lies outside the frame (" + std::to_string(begin) + ".." +
              std::to_string(end) + " of " + std::to_string(n) + " bytes)");
    }
    const size_t sample = s / bytes, byte_plane = s % bytes;  // byte_plane 0: most significant
    const size_t offset = sample * bytes + (bytes - 1 - byte_plane);  // little-endian position
    uint8_t* dst = out.data() + offset;
    size_t written = 0, pos = begin;
    while (pos < end && written < pixels) {
      const int8_t header = static_cast<int8_t>(d[pos++]);
      if (header >= 0) {  // literal run of header + 1 bytes
        size_t count = size_t(header) + 1;
        if (pos + count > end) corrupt("RLE segment " + std::to_string(s + 1) + " ends inside a literal run");
        count = std::min(count, pixels - written);
        for (size_t i = 0; i < count; ++i) dst[(written + i) * expected] = d[pos + i];
        pos += size_t(header) + 1;
        written += count;
      } else if (header != -128) {  // replicate the next byte 1 - header times
        if (pos >= end) corrupt("RLE segment " + std::to_string(s + 1) + " ends inside a replicate run");
        const size_t count = std::min(size_t(1 - header), pixels - written);
        for (size_t i = 0; i < count; ++i) dst[(written + i) * expected] = d[pos];
        ++pos;
        written += count;
      }
    }
    if (written < pixels) {
      corrupt("RLE segment " + std::to_string(s + 1) + " decodes to " + std::to_string(written) + " of " +
              std::to_string(pixels) + " bytes");
    }
  }
  return out;
}

std::vector<uint8_t> decode_jpeg_frame(const uint8_t* d, size_t n, const DicomPixels& dicom) {
  ImageHeader header;
  try {
    header = read_image_header(d, n);
  } catch (const Error& e) {
    corrupt(std::string("JPEG baseline frame: ") + e.what());
  }
  if (header.format != ImageFormat::Jpeg) corrupt("JPEG baseline frame does not start with a JPEG marker");
  if (header.width != dicom.columns || header.height != dicom.rows) {
    corrupt("JPEG frame is " + dims(header.width, header.height) + " pixels but the DICOM header says " +
            dims(dicom.columns, dicom.rows));
  }
  if (!detail::jpeg_has_end_marker(d, n)) corrupt("JPEG frame has no end-of-image marker: it is truncated");
  cv::Mat decoded;
  try {
    const cv::Mat buffer(1, static_cast<int>(n), CV_8UC1, const_cast<uint8_t*>(d));
    decoded = cv::imdecode(buffer, cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    corrupt(std::string("JPEG frame decoder error: ") + e.what());
  }
  if (decoded.empty() || decoded.depth() != CV_8U || decoded.channels() != dicom.samples_per_pixel) {
    corrupt("JPEG frame could not be decoded as " + std::to_string(dicom.samples_per_pixel) + "-sample 8-bit data");
  }
  if (decoded.channels() == 3) cv::cvtColor(decoded, decoded, cv::COLOR_BGR2RGB);
  const size_t row = size_t(decoded.cols) * size_t(decoded.channels());
  std::vector<uint8_t> out(row * size_t(decoded.rows));
  for (int y = 0; y < decoded.rows; ++y) std::memcpy(out.data() + row * size_t(y), decoded.ptr(y), row);
  return out;
}

Samples frame_samples(const DicomPixels& d, SyntaxKind kind) {
  Samples s;
  const uint8_t* data = d.pixel_data.data();
  const size_t size = d.pixel_data.size();
  switch (kind) {
    case SyntaxKind::LittleEndian:
    case SyntaxKind::BigEndian: {
      s.data = data;
      s.size = size;
      s.big_endian = kind == SyntaxKind::BigEndian;
      s.planar = d.planar_configuration == 1;
      s.ybr_422 = d.photometric == "YBR_FULL_422";
      const size_t per_pixel = s.ybr_422 ? 2 : size_t(d.samples_per_pixel) * size_t(d.bits_allocated / 8);
      const size_t needed = size_t(d.rows) * size_t(d.columns) * per_pixel;
      if (size < needed) {
        corrupt("pixel data is truncated: " + dims(d.columns, d.rows) + " pixels of " + std::to_string(per_pixel) +
                " byte(s) need " + std::to_string(needed) + " bytes, the file has " + std::to_string(size));
      }
      return s;
    }
    case SyntaxKind::Rle: s.owned = decode_rle(data, size, d); break;
    case SyntaxKind::JpegBaseline:
      s.owned = decode_jpeg_frame(data, size, d);
      s.colour_is_rgb = true;
      break;
    case SyntaxKind::Jpeg2000: {
      detail::Jpeg2000Layout layout;
      layout.columns = d.columns;
      layout.rows = d.rows;
      layout.samples = d.samples_per_pixel;
      layout.bits_allocated = d.bits_allocated;
      layout.bits_stored = d.bits_stored > 0 ? d.bits_stored : d.bits_allocated;
      layout.high_bit = d.high_bit >= 0 ? d.high_bit : layout.bits_stored - 1;
      s.owned = detail::decode_jpeg2000_frame(data, size, layout);
      s.colour_is_rgb = d.photometric == "RGB" || is_jpeg2000_colour(d.photometric);
      break;
    }
    case SyntaxKind::ByReader:
    case SyntaxKind::Dcmtk:
    case SyntaxKind::Unsupported:
      throw Error(ErrorCode::InvalidArgument,
                  "dicom_to_image: pixel data in " + dicom_transfer_syntax_name(d.pixel_syntax.empty() ? d.transfer_syntax
                                                                                              : d.pixel_syntax) +
                      " must be decompressed first (natively loupe::read_dicom does it with DCMTK, in the browser "
                      "web/dicom.mjs)");
  }
  s.data = s.owned.data();
  s.size = s.owned.size();
  return s;
}

// [SECTION] Grayscale: stored value -> modality value -> VOI -> output

// Maps a modality value to [0, 1] (before MONOCHROME1 inversion).
struct VoiMapping {
  enum class Kind { Linear, LinearExact, Sigmoid, Lut, MinMax } kind = Kind::MinMax;
  double center = 0, width = 1, min = 0, max = 0;
  const DicomPixels* dicom = nullptr;

  double operator()(double x) const {
    switch (kind) {
      case Kind::Linear: {  // PS3.3 C.11.2.1.2.1
        const double lower = center - 0.5 - (width - 1) / 2, upper = center - 0.5 + (width - 1) / 2;
        if (x <= lower) return 0.0;
        if (x > upper) return 1.0;
        return (x - (center - 0.5)) / (width - 1) + 0.5;
      }
      case Kind::LinearExact: {  // C.11.2.1.3.2
        if (x <= center - width / 2) return 0.0;
        if (x > center + width / 2) return 1.0;
        return (x - center) / width + 0.5;
      }
      case Kind::Sigmoid: return 1.0 / (1.0 + std::exp(-4.0 * (x - center) / width));  // C.11.2.1.3.1
      case Kind::Lut: {
        const auto& lut = dicom->voi_lut;
        const double index = std::floor(x + 0.5) - dicom->voi_lut_first;
        const size_t i = index <= 0 ? 0 : std::min(lut.size() - 1, static_cast<size_t>(index));
        const double top = std::ldexp(1.0, std::clamp(dicom->voi_lut_bits, 1, 16)) - 1;
        return std::min(1.0, lut[i] / top);
      }
      case Kind::MinMax: return max > min ? (x - min) / (max - min) : 0.0;
    }
    return 0.0;
  }
};

// The first applicable of: window (valid width), VOI LUT, the image's min..max.
VoiMapping choose_voi(const DicomPixels& d, double min, double max) {
  VoiMapping v;
  v.dicom = &d;
  v.min = min;
  v.max = max;
  if (d.window_center && d.window_width) {
    v.center = *d.window_center;
    v.width = *d.window_width;
    const std::string& f = d.voi_lut_function;
    if ((f.empty() || f == "LINEAR") && v.width >= 1) {
      v.kind = VoiMapping::Kind::Linear;
      return v;
    }
    if (f == "LINEAR_EXACT" && v.width > 0) {
      v.kind = VoiMapping::Kind::LinearExact;
      return v;
    }
    if (f == "SIGMOID" && v.width > 0) {
      v.kind = VoiMapping::Kind::Sigmoid;
      return v;
    }
  }
  if (!d.voi_lut.empty()) {
    v.kind = VoiMapping::Kind::Lut;
    return v;
  }
  v.kind = VoiMapping::Kind::MinMax;
  return v;
}

Image grayscale(const DicomPixels& d, const Samples& s) {
  const int stored_bits = d.bits_stored > 0 ? d.bits_stored : d.bits_allocated;
  const int high_bit = d.high_bit >= 0 ? d.high_bit : stored_bits - 1;
  const int shift = high_bit + 1 - stored_bits;
  const uint32_t mask = (uint32_t{1} << stored_bits) - 1;
  const bool is_signed = d.pixel_representation == 1;
  const bool monochrome1 = d.photometric == "MONOCHROME1";
  const size_t pixels = size_t(d.rows) * size_t(d.columns);
  const bool two_bytes = d.bits_allocated == 16;

  // The masked raw value of pixel i, before sign extension: an index into the lookup table.
  const auto raw = [&](size_t i) -> uint32_t {
    uint32_t v;
    if (!two_bytes) v = s.data[i];
    else if (s.big_endian) v = (uint32_t{s.data[2 * i]} << 8) | s.data[2 * i + 1];
    else v = (uint32_t{s.data[2 * i + 1]} << 8) | s.data[2 * i];
    return (v >> shift) & mask;
  };
  const auto stored_value = [&](uint32_t r) -> int32_t {
    if (is_signed && (r >> (stored_bits - 1)) != 0) return int32_t(r) - int32_t(uint32_t{1} << stored_bits);
    return int32_t(r);
  };

  Image image;
  image.width = d.columns;
  image.height = d.rows;
  image.channels = 1;

  const bool has_voi = (d.window_center && d.window_width) || !d.voi_lut.empty();
  if (stored_bits <= 8 && !is_signed && d.slope == 1.0 && d.intercept == 0.0 && !has_voi) {
    // Plain 8-bit data: values as stored (an 8-bit DICOM made from a PNG decodes to that PNG).
    image.depth = PixelDepth::U8;
    image.data.resize(pixels);
    for (size_t i = 0; i < pixels; ++i) {
      const uint32_t v = raw(i);
      image.data[i] = static_cast<uint8_t>(monochrome1 ? mask - v : v);
    }
    return image;
  }

  // Every possible raw value gets its output once (at most 65536 entries); min..max of the
  // modality values comes from the stored extremes because slope * v + intercept is monotonic.
  int32_t lo = INT32_MAX, hi = INT32_MIN;
  for (size_t i = 0; i < pixels; ++i) {
    const int32_t v = stored_value(raw(i));
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  const double m_lo = d.slope * lo + d.intercept, m_hi = d.slope * hi + d.intercept;
  const VoiMapping voi = choose_voi(d, std::min(m_lo, m_hi), std::max(m_lo, m_hi));
  std::vector<uint16_t> lut(size_t(mask) + 1);
  for (uint32_t r = 0; r <= mask; ++r) {
    const double m = d.slope * stored_value(r) + d.intercept;
    const double y = std::clamp(voi(m), 0.0, 1.0);
    const auto out = static_cast<uint16_t>(std::floor(y * 65535.0 + 0.5));
    lut[r] = monochrome1 ? static_cast<uint16_t>(65535 - out) : out;
  }
  image.depth = PixelDepth::U16;
  image.data.resize(pixels * 2);
  uint16_t* out = reinterpret_cast<uint16_t*>(image.data.data());
  for (size_t i = 0; i < pixels; ++i) out[i] = lut[raw(i)];
  return image;
}

// [SECTION] Colour

uint8_t clamp_byte(double v) { return static_cast<uint8_t>(std::clamp(std::floor(v + 0.5), 0.0, 255.0)); }

// PS3.3 C.7.6.3.1.2 (YBR_FULL: full-range ITU-R BT.601 YCbCr).
void ybr_to_rgb(double y, double cb, double cr, uint8_t* rgb) {
  rgb[0] = clamp_byte(y + 1.402 * (cr - 128));
  rgb[1] = clamp_byte(y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128));
  rgb[2] = clamp_byte(y + 1.772 * (cb - 128));
}

Image colour(const DicomPixels& d, const Samples& s) {
  const size_t pixels = size_t(d.rows) * size_t(d.columns);
  Image image;
  image.width = d.columns;
  image.height = d.rows;
  image.channels = 3;
  image.depth = PixelDepth::U8;
  image.data.resize(pixels * 3);
  uint8_t* out = image.data.data();
  const bool ybr = !s.colour_is_rgb && (d.photometric == "YBR_FULL" || d.photometric == "YBR_FULL_422");
  if (s.ybr_422) {
    for (size_t i = 0; i < pixels; i += 2) {  // Y1 Y2 Cb Cr
      const uint8_t* p = s.data + i * 2;
      ybr_to_rgb(p[0], p[2], p[3], out + i * 3);
      ybr_to_rgb(p[1], p[2], p[3], out + i * 3 + 3);
    }
    return image;
  }
  for (size_t i = 0; i < pixels; ++i) {
    uint8_t c[3];
    for (int k = 0; k < 3; ++k) c[k] = s.planar ? s.data[size_t(k) * pixels + i] : s.data[i * 3 + size_t(k)];
    if (ybr) ybr_to_rgb(c[0], c[1], c[2], out + i * 3);
    else std::memcpy(out + i * 3, c, 3);
  }
  return image;
}

}  // namespace

Image dicom_to_image(const DicomPixels& dicom, const DecodeLimits& limits) {
  check_dicom(dicom, limits);
  const Samples samples = frame_samples(dicom, checked_pixel_syntax(dicom));
  return is_colour(dicom.photometric) ? colour(dicom, samples) : grayscale(dicom, samples);
}

// [SECTION] JSON

nlohmann::json dicom_pixels_to_json(const DicomPixels& d) {
  nlohmann::json j = {
      {"rows", d.rows},
      {"columns", d.columns},
      {"samples_per_pixel", d.samples_per_pixel},
      {"bits_allocated", d.bits_allocated},
      {"bits_stored", d.bits_stored},
      {"high_bit", d.high_bit},
      {"pixel_representation", d.pixel_representation},
      {"planar_configuration", d.planar_configuration},
      {"frames", d.frames},
      {"frame", d.frame},
      {"photometric", d.photometric},
      {"transfer_syntax", d.transfer_syntax},
      {"pixel_syntax", d.pixel_syntax},
      {"slope", d.slope},
      {"intercept", d.intercept},
      {"window_center", d.window_center ? nlohmann::json(*d.window_center) : nlohmann::json()},
      {"window_width", d.window_width ? nlohmann::json(*d.window_width) : nlohmann::json()},
      {"voi_lut_function", d.voi_lut_function},
      {"voi_lut", d.voi_lut},
      {"voi_lut_first", d.voi_lut_first},
      {"voi_lut_bits", d.voi_lut_bits},
      {"modality", d.modality},
      {"body_part", d.body_part},
      {"view_position", d.view_position},
      {"sop_class_uid", d.sop_class_uid},
      {"has_pixel_data", d.has_pixel_data},
  };
  return j;
}

DicomPixels dicom_pixels_from_json(const nlohmann::json& attributes, const uint8_t* pixels, size_t size) {
  const auto bad = [](const std::string& key, const char* expected) {
    throw Error(ErrorCode::InvalidArgument, "dicom." + key + ": expected " + expected);
  };
  if (!attributes.is_object()) throw Error(ErrorCode::InvalidArgument, "dicom: attributes must be a JSON object");
  if (pixels == nullptr && size > 0) throw Error(ErrorCode::InvalidArgument, "dicom: null pixel pointer");
  DicomPixels d;
  bool has_pixel_data_given = false;
  for (const auto& [key, value] : attributes.items()) {
    const auto integer = [&, &k = key, &v = value](int& field) {
      if (!v.is_number_integer() || v.get<int64_t>() < INT32_MIN || v.get<int64_t>() > INT32_MAX) bad(k, "an integer");
      field = v.get<int>();
    };
    const auto text = [&, &k = key, &v = value](std::string& field) {
      if (!v.is_string()) bad(k, "a string");
      field = v.get<std::string>();
    };
    const auto number = [&, &k = key, &v = value](double& field) {
      if (!v.is_number()) bad(k, "a number");
      field = v.get<double>();
    };
    const auto optional_number = [&, &k = key, &v = value](std::optional<double>& field) {
      if (v.is_null()) field.reset();
      else if (v.is_number()) field = v.get<double>();
      else bad(k, "a number or null");
    };
    if (key == "rows") integer(d.rows);
    else if (key == "columns") integer(d.columns);
    else if (key == "samples_per_pixel") integer(d.samples_per_pixel);
    else if (key == "bits_allocated") integer(d.bits_allocated);
    else if (key == "bits_stored") integer(d.bits_stored);
    else if (key == "high_bit") integer(d.high_bit);
    else if (key == "pixel_representation") integer(d.pixel_representation);
    else if (key == "planar_configuration") integer(d.planar_configuration);
    else if (key == "frames") integer(d.frames);
    else if (key == "frame") integer(d.frame);
    else if (key == "photometric") text(d.photometric);
    else if (key == "transfer_syntax") text(d.transfer_syntax);
    else if (key == "pixel_syntax") text(d.pixel_syntax);
    else if (key == "slope") number(d.slope);
    else if (key == "intercept") number(d.intercept);
    else if (key == "window_center") optional_number(d.window_center);
    else if (key == "window_width") optional_number(d.window_width);
    else if (key == "voi_lut_function") text(d.voi_lut_function);
    else if (key == "voi_lut_first") integer(d.voi_lut_first);
    else if (key == "voi_lut_bits") integer(d.voi_lut_bits);
    else if (key == "modality") text(d.modality);
    else if (key == "body_part") text(d.body_part);
    else if (key == "view_position") text(d.view_position);
    else if (key == "sop_class_uid") text(d.sop_class_uid);
    else if (key == "voi_lut") {
      if (!value.is_array()) bad(key, "an array of integers 0..65535");
      d.voi_lut.reserve(value.size());
      for (const auto& e : value) {
        if (!e.is_number_integer() || e.get<int64_t>() < 0 || e.get<int64_t>() > 65535) {
          bad(key, "an array of integers 0..65535");
        }
        d.voi_lut.push_back(static_cast<uint16_t>(e.get<int>()));
      }
    } else if (key == "has_pixel_data") {
      if (!value.is_boolean()) bad(key, "true or false");
      d.has_pixel_data = value.get<bool>();
      has_pixel_data_given = true;
    } else {
      throw Error(ErrorCode::InvalidArgument,
                  "dicom." + key + ": unknown attribute; expected the keys of loupe::dicom_pixels_to_json (rows, "
                                   "columns, bits_allocated, photometric, transfer_syntax, ...)");
    }
  }
  for (const char* required : {"rows", "columns", "bits_allocated", "photometric", "transfer_syntax"}) {
    if (!attributes.contains(required)) {
      throw Error(ErrorCode::InvalidArgument, std::string("dicom.") + required + ": missing");
    }
  }
  if (!has_pixel_data_given) d.has_pixel_data = size > 0;
  if (size > 0) d.pixel_data.assign(pixels, pixels + size);
  return d;
}

}  // namespace loupe
