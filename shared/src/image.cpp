#include "loupe/image.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <string>
#include <vector>

#include "internal.h"
#include "loupe/dicom.h"

namespace loupe {

const char* to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::EmptyInput: return "empty input";
    case ErrorCode::UnknownFormat: return "unknown format";
    case ErrorCode::CorruptImage: return "corrupt image";
    case ErrorCode::ImageTooLarge: return "image too large";
    case ErrorCode::ImageTooSmall: return "image too small";
    case ErrorCode::UnsupportedImage: return "unsupported image";
    case ErrorCode::InvalidSpec: return "invalid preprocessing spec";
    case ErrorCode::InvalidArgument: return "invalid argument";
    case ErrorCode::Io: return "I/O error";
  }
  return "error";
}

const char* to_string(ImageFormat format) {
  switch (format) {
    case ImageFormat::Png: return "PNG";
    case ImageFormat::Jpeg: return "JPEG";
    case ImageFormat::Bmp: return "BMP";
    case ImageFormat::Tiff: return "TIFF";
  }
  return "image";
}

// libjpeg pads a truncated scan with grey and only warns; for a medical image silently invented
// pixels are worse than an error. Entropy-coded data escapes 0xFF as FF 00, so an FF D9 pair
// at or near the end is the real end-of-image marker (an EXIF thumbnail's EOI sits much earlier).
bool detail::jpeg_has_end_marker(const uint8_t* d, size_t n) {
  if (n < 2) return false;
  const size_t window = std::min<size_t>(n, 4096);  // tolerate trailing bytes some writers append
  for (size_t i = n - 1; i > n - window; --i) {
    if (d[i - 1] == 0xFF && d[i] == 0xD9) return true;
  }
  return false;
}

namespace {

// [SECTION] Header parsing: dimensions without decoding, so limits apply before allocation.

uint32_t read_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
uint16_t read_be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t read_le32(const uint8_t* p) {
  return (uint32_t{p[3]} << 24) | (uint32_t{p[2]} << 16) | (uint32_t{p[1]} << 8) | p[0];
}
uint16_t read_le16(const uint8_t* p) { return static_cast<uint16_t>((p[1] << 8) | p[0]); }

[[noreturn]] void corrupt(ImageFormat format, const std::string& what) {
  throw Error(ErrorCode::CorruptImage, std::string(to_string(format)) + " file is corrupt: " + what);
}

// Dimensions are stored as up to 32-bit values; anything above INT32_MAX cannot be a real image.
int checked_dimension(ImageFormat format, int64_t value, const char* name) {
  if (value <= 0 || value > 0x7fffffff) {
    corrupt(format, std::string("header declares ") + name + " " + std::to_string(value));
  }
  return static_cast<int>(value);
}

ImageHeader parse_png(const uint8_t* d, size_t n) {
  // 8-byte signature, then the IHDR chunk: length, "IHDR", width, height (big-endian).
  if (n < 24 || std::memcmp(d + 12, "IHDR", 4) != 0) corrupt(ImageFormat::Png, "IHDR chunk missing or truncated");
  ImageHeader h{ImageFormat::Png, 0, 0};
  h.width = checked_dimension(h.format, read_be32(d + 16), "width");
  h.height = checked_dimension(h.format, read_be32(d + 20), "height");
  return h;
}

ImageHeader parse_jpeg(const uint8_t* d, size_t n) {
  // Walk the marker segments after SOI until a start-of-frame marker, which holds the size.
  size_t pos = 2;
  while (pos + 4 <= n) {
    if (d[pos] != 0xFF) corrupt(ImageFormat::Jpeg, "marker expected at byte " + std::to_string(pos));
    uint8_t marker = d[pos + 1];
    if (marker == 0xFF) {  // fill byte
      ++pos;
      continue;
    }
    if (marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01) {  // no length
      pos += 2;
      continue;
    }
    if (marker == 0xD9 || marker == 0xDA) break;  // end of image / start of scan before any frame
    size_t length = read_be16(d + pos + 2);
    if (length < 2) corrupt(ImageFormat::Jpeg, "segment with length " + std::to_string(length));
    bool is_sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (is_sof) {
      if (pos + 9 > n || length < 7) break;
      ImageHeader h{ImageFormat::Jpeg, 0, 0};
      h.height = checked_dimension(h.format, read_be16(d + pos + 5), "height");
      h.width = checked_dimension(h.format, read_be16(d + pos + 7), "width");
      return h;
    }
    pos += 2 + length;
  }
  corrupt(ImageFormat::Jpeg, "no frame header (SOF) found: the file is truncated or not a JPEG image");
}

ImageHeader parse_bmp(const uint8_t* d, size_t n) {
  if (n < 26) corrupt(ImageFormat::Bmp, "header truncated");
  uint32_t dib_size = read_le32(d + 14);
  ImageHeader h{ImageFormat::Bmp, 0, 0};
  if (dib_size == 12) {  // OS/2 BITMAPCOREHEADER: 16-bit dimensions
    h.width = checked_dimension(h.format, read_le16(d + 18), "width");
    h.height = checked_dimension(h.format, read_le16(d + 20), "height");
    return h;
  }
  if (dib_size < 40 || n < 30) corrupt(ImageFormat::Bmp, "unknown DIB header size " + std::to_string(dib_size));
  int32_t width = static_cast<int32_t>(read_le32(d + 18));
  int32_t height = static_cast<int32_t>(read_le32(d + 22));  // negative: rows stored top-down
  h.width = checked_dimension(h.format, width, "width");
  h.height = checked_dimension(h.format, height == INT32_MIN ? int64_t{0} : std::abs(int64_t{height}), "height");
  return h;
}

// What OpenCV's TIFF reader allocates before it decodes a pixel: one tile, or one strip of
// RowsPerStrip rows (not clamped to the image height unless it is 2^32-1), at 4 bytes a pixel for
// 8-bit output (libtiff's RGBA reader) or BitsPerSample/8 x SamplesPerPixel bytes otherwise.
// The header check refuses what would allocate far more than the image itself.
struct TiffLayout {
  int64_t width = -1, height = -1, bits_per_sample = 1, samples = 1, compression = 1, planar = 1;
  int64_t tile_width = 0, tile_length = 0, rows_per_strip = 0xffffffff;
};

int64_t tiff_strip_rows(const TiffLayout& t) {
  if (t.rows_per_strip == 0 || t.rows_per_strip == 0xffffffff) return t.height;
  // libtiff cuts a single uncompressed contiguous strip into strips of about 8 KB before OpenCV
  // reads RowsPerStrip (strip chopping, on in Debian's build), so a 2048x1536 file saying 65535
  // rows a strip is read in strips of at most its height. libtiff skips the cut only above a
  // million strips, so it is counted on only below a million rows.
  const bool chopped = t.compression == 1 && t.planar == 1 && t.rows_per_strip >= t.height && t.height <= 1'000'000;
  return chopped ? t.height : t.rows_per_strip;
}

void check_tiff_allocation(const TiffLayout& t) {
  const bool tiled = t.tile_width > 0 || t.tile_length > 0;
  const int64_t block_width = tiled && t.tile_width > 0 ? t.tile_width : t.width;
  const int64_t block_height = tiled ? (t.tile_length > 0 ? t.tile_length : t.height) : tiff_strip_rows(t);
  const int64_t bytes_per_pixel = t.bits_per_sample <= 8 ? 4 : t.bits_per_sample / 8 * t.samples;
  // In double: two 32-bit sides overflow int64, and a threshold needs no exactness.
  const double block_bytes = double(block_width) * double(block_height) * double(bytes_per_pixel);
  const double image_bytes = double(t.width) * double(t.height) * double(bytes_per_pixel);
  if (block_bytes <= std::max(4 * image_bytes, 256.0 * (1 << 20))) return;
  const std::string block = std::to_string(block_width) + "x" + std::to_string(block_height);
  const std::string image = std::to_string(t.width) + "x" + std::to_string(t.height);
  corrupt(ImageFormat::Tiff, tiled ? "tiles of " + block + " pixels for a " + image + " image"
                                   : "strips of " + block + " pixels (RowsPerStrip " + std::to_string(t.rows_per_strip) +
                                         ") for a " + image + " image");
}

ImageHeader parse_tiff(const uint8_t* d, size_t n) {
  bool little = d[0] == 'I';
  auto u16 = [&](size_t at) { return little ? read_le16(d + at) : read_be16(d + at); };
  auto u32 = [&](size_t at) { return little ? read_le32(d + at) : read_be32(d + at); };
  if (u16(2) == 43) throw Error(ErrorCode::UnsupportedImage, "BigTIFF files are not supported");
  if (n < 8) corrupt(ImageFormat::Tiff, "header truncated");
  size_t ifd = u32(4);
  if (ifd + 2 > n) corrupt(ImageFormat::Tiff, "first directory offset points past the end of the file");
  size_t entries = u16(ifd);
  // The fields libtiff and OpenCV size their buffers by. A tag given twice is refused: libtiff keeps
  // the first, so reading the last let a file declaring 7953x46034 pixels pass as 31x66 (found by
  // tests/fuzz).
  TiffLayout t;
  std::vector<uint16_t> seen;
  for (size_t i = 0; i < entries; ++i) {
    size_t e = ifd + 2 + i * 12;
    if (e + 12 > n) corrupt(ImageFormat::Tiff, "directory truncated");
    uint16_t tag = u16(e), type = u16(e + 2);
    int64_t* field = tag == 256 ? &t.width : tag == 257 ? &t.height : tag == 258 ? &t.bits_per_sample
                   : tag == 259 ? &t.compression : tag == 277 ? &t.samples : tag == 278 ? &t.rows_per_strip
                   : tag == 284 ? &t.planar : tag == 322 ? &t.tile_width : tag == 323 ? &t.tile_length : nullptr;
    if (field == nullptr) continue;
    if (std::find(seen.begin(), seen.end(), tag) != seen.end()) {
      corrupt(ImageFormat::Tiff, "tag " + std::to_string(tag) + " appears twice");
    }
    seen.push_back(tag);
    if (type != 3 && type != 4) corrupt(ImageFormat::Tiff, "tag " + std::to_string(tag) + " is not a SHORT or LONG");
    size_t value_at = e + 8;
    const uint32_t count = u32(e + 4);
    if (tag == 258 && uint64_t{count} * (type == 3 ? 2 : 4) > 4) {  // one value per sample, stored elsewhere
      value_at = u32(e + 8);
      if (value_at + 4 > n) corrupt(ImageFormat::Tiff, "BitsPerSample values point past the end of the file");
    }
    *field = type == 3 ? int64_t{u16(value_at)} : int64_t{u32(value_at)};
  }
  ImageHeader h{ImageFormat::Tiff, 0, 0};
  h.width = checked_dimension(h.format, t.width, "width");
  h.height = checked_dimension(h.format, t.height, "height");
  if (t.samples < 1 || t.samples > 4) {
    throw Error(ErrorCode::UnsupportedImage, "TIFF with " + std::to_string(t.samples) + " samples per pixel is not supported (1 to 4 are)");
  }
  if (t.bits_per_sample < 1 || t.bits_per_sample > 16) {
    throw Error(ErrorCode::UnsupportedImage,
                "TIFF with " + std::to_string(t.bits_per_sample) + " bits per sample is not supported (1 to 16 are)");
  }
  check_tiff_allocation(t);
  return h;
}

// [SECTION] Conversion from OpenCV's BGR(A) Mat to the core's RGB(A) Image.

Image to_image(const cv::Mat& decoded) {
  cv::Mat rgb;
  switch (decoded.channels()) {
    case 1: rgb = decoded; break;
    case 3: cv::cvtColor(decoded, rgb, cv::COLOR_BGR2RGB); break;
    case 4: cv::cvtColor(decoded, rgb, cv::COLOR_BGRA2RGBA); break;
    default:
      throw Error(ErrorCode::UnsupportedImage, std::to_string(decoded.channels()) + "-channel images are not supported");
  }
  Image image;
  image.width = rgb.cols;
  image.height = rgb.rows;
  image.channels = rgb.channels();
  image.depth = rgb.depth() == CV_16U ? PixelDepth::U16 : PixelDepth::U8;
  image.data.resize(image.row_bytes() * static_cast<size_t>(image.height));
  for (int y = 0; y < rgb.rows; ++y) {
    std::memcpy(image.data.data() + image.row_bytes() * static_cast<size_t>(y), rgb.ptr(y), image.row_bytes());
  }
  return image;
}

}  // namespace

ImageHeader read_image_header(const uint8_t* data, size_t size) {
  if (data == nullptr || size == 0) throw Error(ErrorCode::EmptyInput, "the file is empty (0 bytes)");
  static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (size >= 8 && std::memcmp(data, png_sig, 8) == 0) return parse_png(data, size);
  if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return parse_jpeg(data, size);
  if (size >= 2 && data[0] == 'B' && data[1] == 'M') return parse_bmp(data, size);
  if (size >= 4 && ((data[0] == 'I' && data[1] == 'I' && data[2] == 42 && data[3] == 0) ||
                    (data[0] == 'M' && data[1] == 'M' && data[2] == 0 && data[3] == 42) ||
                    (data[0] == 'I' && data[1] == 'I' && data[2] == 43) ||
                    (data[0] == 'M' && data[1] == 'M' && data[3] == 43))) {
    return parse_tiff(data, size);
  }
  if (is_dicom(data, size)) {
    // ImageFormat has no DICOM member: DICOM attributes are read by dicom.h (read_dicom_file_header,
    // check_dicom), and decode_image() dispatches DICOM bytes there before calling this.
    throw Error(ErrorCode::UnsupportedImage,
                "DICOM file: its header is read with loupe::read_dicom_file_header / check_dicom (dicom.h), "
                "not read_image_header; decode_image() decodes it");
  }
  throw Error(ErrorCode::UnknownFormat, "not a supported image: the content is not PNG, JPEG, BMP or TIFF (" +
                                            std::to_string(size) + " bytes)");
}

Image decode_image(const uint8_t* data, size_t size, const DecodeLimits& limits) {
  // DICOM: natively DCMTK parses it; in the browser the page parses it first (web/dicom.mjs) and
  // decode_dicom() says so. Either way the pixel math is dicom_to_image()'s.
  if (is_dicom(data, size)) return decode_dicom(data, size, limits);
  const ImageHeader header = read_image_header(data, size);
  const uint64_t pixels = uint64_t(header.width) * uint64_t(header.height);
  const std::string dims = std::to_string(header.width) + "x" + std::to_string(header.height);
  if (pixels > limits.max_pixels) {
    throw Error(ErrorCode::ImageTooLarge, std::string(to_string(header.format)) + " header declares " + dims +
                                              " pixels, above the limit of " + std::to_string(limits.max_pixels) +
                                              " pixels");
  }
  if (header.width < limits.min_side || header.height < limits.min_side) {
    throw Error(ErrorCode::ImageTooSmall, "image is " + dims + " pixels; the smallest accepted is " +
                                              std::to_string(limits.min_side) + "x" + std::to_string(limits.min_side));
  }
  if (header.format == ImageFormat::Jpeg && !detail::jpeg_has_end_marker(data, size)) {
    corrupt(header.format, "no end-of-image marker: the file is truncated (" + std::to_string(size) + " bytes)");
  }
#ifndef LOUPE_HAVE_TIFF
  if (header.format == ImageFormat::Tiff) {
    throw Error(ErrorCode::UnsupportedImage, "TIFF decoding is not available in this build; use PNG");
  }
#endif

  // JPEG: let OpenCV apply EXIF orientation (IMREAD_UNCHANGED would skip it); JPEG has no alpha.
  // Others: keep alpha and 16-bit samples exactly as stored.
  const int flags = header.format == ImageFormat::Jpeg ? (cv::IMREAD_ANYDEPTH | cv::IMREAD_ANYCOLOR)
                                                       : cv::IMREAD_UNCHANGED;
  cv::Mat decoded;
  try {
    // imdecode does not modify the buffer; the Mat header just wraps it.
    const cv::Mat buffer(1, static_cast<int>(size), CV_8UC1, const_cast<uint8_t*>(data));
    decoded = cv::imdecode(buffer, flags);
  } catch (const cv::Exception& e) {
    corrupt(header.format, std::string("decoder error: ") + e.what());
  }
  if (decoded.empty()) {
    corrupt(header.format, "the pixel data could not be decoded (" + dims + " declared, " + std::to_string(size) +
                               " bytes): truncated or damaged");
  }
  if (decoded.depth() != CV_8U && decoded.depth() != CV_16U) {
    throw Error(ErrorCode::UnsupportedImage,
                std::string(to_string(header.format)) + " with sample type other than 8 or 16-bit integers");
  }
  return to_image(decoded);
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::Io, path + ": cannot open file");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw Error(ErrorCode::Io, path + ": read error");
  return bytes;
}

Image decode_image_file(const std::string& path, const DecodeLimits& limits) {
  const std::vector<uint8_t> bytes = read_file(path);
  try {
    return decode_image(bytes, limits);
  } catch (const Error& e) {
    throw Error(e.code(), path + ": " + e.what());
  }
}

std::vector<uint8_t> encode_png(const Image& image) {
  if (image.empty() || (image.channels != 1 && image.channels != 3 && image.channels != 4)) {
    throw Error(ErrorCode::InvalidArgument, "encode_png: empty image or unsupported channel count");
  }
  const int type = CV_MAKETYPE(image.depth == PixelDepth::U16 ? CV_16U : CV_8U, image.channels);
  const cv::Mat view(image.height, image.width, type, const_cast<uint8_t*>(image.data.data()), image.row_bytes());
  cv::Mat bgr;
  if (image.channels == 3) cv::cvtColor(view, bgr, cv::COLOR_RGB2BGR);
  else if (image.channels == 4) cv::cvtColor(view, bgr, cv::COLOR_RGBA2BGRA);
  else bgr = view;
  std::vector<uint8_t> out;
  if (!cv::imencode(".png", bgr, out)) throw Error(ErrorCode::UnsupportedImage, "PNG encoding failed");
  return out;
}

}  // namespace loupe
