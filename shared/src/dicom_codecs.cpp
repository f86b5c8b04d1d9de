// JPEG 2000 pixel data of DICOM files, decoded with OpenJPEG: Debian's libopenjp2 natively and the
// same source built for wasm by scripts/setup-wasm-deps, so the page and `loupe` decode a frame
// with the same code (DCMTK has no JPEG 2000 codec; read_dicom() hands the codestream over).
//
// [SECTION] A memory stream for OpenJPEG
// [SECTION] Decoding one frame
#include <openjpeg.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

#include "internal.h"
#include "loupe/error.h"

namespace loupe::detail {

namespace {

[[noreturn]] void corrupt(const std::string& what) {
  throw Error(ErrorCode::CorruptImage, "DICOM file is corrupt: JPEG 2000 frame: " + what);
}

// [SECTION] A memory stream for OpenJPEG

struct MemoryStream {
  const uint8_t* data;
  size_t size;
  size_t position = 0;
};

OPJ_SIZE_T read_stream(void* buffer, OPJ_SIZE_T bytes, void* user) {
  auto* s = static_cast<MemoryStream*>(user);
  if (s->position >= s->size) return static_cast<OPJ_SIZE_T>(-1);  // OpenJPEG's end of stream
  const size_t n = std::min<size_t>(bytes, s->size - s->position);
  std::memcpy(buffer, s->data + s->position, n);
  s->position += n;
  return n;
}

OPJ_OFF_T skip_stream(OPJ_OFF_T bytes, void* user) {
  auto* s = static_cast<MemoryStream*>(user);
  if (bytes < 0) {
    const size_t back = std::min<size_t>(static_cast<size_t>(-bytes), s->position);
    s->position -= back;
    return -static_cast<OPJ_OFF_T>(back);
  }
  const size_t n = std::min<size_t>(static_cast<size_t>(bytes), s->size - s->position);
  s->position += n;
  return static_cast<OPJ_OFF_T>(n);
}

OPJ_BOOL seek_stream(OPJ_OFF_T to, void* user) {
  auto* s = static_cast<MemoryStream*>(user);
  if (to < 0 || static_cast<uint64_t>(to) > s->size) return OPJ_FALSE;
  s->position = static_cast<size_t>(to);
  return OPJ_TRUE;
}

// OpenJPEG reports problems through callbacks; the first error is what the message names.
void on_error(const char* message, void* user) {
  auto* first = static_cast<std::string*>(user);
  if (first->empty() && message != nullptr) {
    *first = message;
    while (!first->empty() && (first->back() == '\n' || first->back() == ' ')) first->pop_back();
  }
}
void on_quiet(const char*, void*) {}

struct CodecDeleter {
  void operator()(opj_codec_t* c) const { opj_destroy_codec(c); }
};
struct StreamDeleter {
  void operator()(opj_stream_t* s) const { opj_stream_destroy(s); }
};
struct ImageDeleter {
  void operator()(opj_image_t* i) const { opj_image_destroy(i); }
};

}  // namespace

// [SECTION] Decoding one frame

std::vector<uint8_t> decode_jpeg2000_frame(const uint8_t* data, size_t size, const Jpeg2000Layout& layout) {
  // A raw codestream starts with SOC (FF 4F FF 51); a JP2 file with its signature box.
  static const uint8_t kJp2Signature[] = {0, 0, 0, 0x0C, 'j', 'P', ' ', ' '};
  OPJ_CODEC_FORMAT format;
  if (size >= 4 && data[0] == 0xFF && data[1] == 0x4F && data[2] == 0xFF && data[3] == 0x51) format = OPJ_CODEC_J2K;
  else if (size >= 8 && std::memcmp(data, kJp2Signature, 8) == 0) format = OPJ_CODEC_JP2;
  else corrupt("no JPEG 2000 codestream (SOC marker FF 4F) or JP2 signature at its start");

  std::unique_ptr<opj_codec_t, CodecDeleter> codec(opj_create_decompress(format));
  std::string error;
  opj_set_error_handler(codec.get(), on_error, &error);
  opj_set_warning_handler(codec.get(), on_quiet, nullptr);
  opj_set_info_handler(codec.get(), on_quiet, nullptr);
  opj_dparameters_t parameters;
  opj_set_default_decoder_parameters(&parameters);
  if (!opj_setup_decoder(codec.get(), &parameters)) corrupt("the decoder could not be set up");
  // Strict: a truncated codestream is an error, not an image padded with zeros.
  opj_decoder_set_strict_mode(codec.get(), OPJ_TRUE);

  MemoryStream memory{data, size};
  std::unique_ptr<opj_stream_t, StreamDeleter> stream(opj_stream_create(OPJ_J2K_STREAM_CHUNK_SIZE, OPJ_TRUE));
  opj_stream_set_user_data(stream.get(), &memory, nullptr);
  opj_stream_set_user_data_length(stream.get(), size);
  opj_stream_set_read_function(stream.get(), read_stream);
  opj_stream_set_skip_function(stream.get(), skip_stream);
  opj_stream_set_seek_function(stream.get(), seek_stream);

  opj_image_t* raw_image = nullptr;
  if (!opj_read_header(stream.get(), codec.get(), &raw_image)) {
    opj_image_destroy(raw_image);
    corrupt("header could not be read (" + (error.empty() ? std::string("damaged codestream") : error) + ")");
  }
  std::unique_ptr<opj_image_t, ImageDeleter> image(raw_image);
  // The codestream must describe the image the DICOM header does, before any sample is decoded.
  const auto dims = [](uint64_t w, uint64_t h) { return std::to_string(w) + "x" + std::to_string(h); };
  const uint64_t width = image->x1 - image->x0, height = image->y1 - image->y0;
  if (width != uint64_t(layout.columns) || height != uint64_t(layout.rows)) {
    corrupt("codestream is " + dims(width, height) + " pixels but the DICOM header says " +
            dims(uint64_t(layout.columns), uint64_t(layout.rows)));
  }
  if (image->numcomps != uint32_t(layout.samples)) {
    corrupt("codestream has " + std::to_string(image->numcomps) + " components but the DICOM header says " +
            std::to_string(layout.samples) + " samples per pixel");
  }
  for (uint32_t c = 0; c < image->numcomps; ++c) {
    const opj_image_comp_t& comp = image->comps[c];
    if (comp.dx != 1 || comp.dy != 1) corrupt("component " + std::to_string(c) + " is subsampled");
    if (comp.prec < 1 || int(comp.prec) > layout.bits_stored) {
      corrupt("component " + std::to_string(c) + " has " + std::to_string(comp.prec) +
              "-bit samples but Bits Stored is " + std::to_string(layout.bits_stored));
    }
  }
  if (!opj_decode(codec.get(), stream.get(), image.get()) || !opj_end_decompress(codec.get(), stream.get())) {
    corrupt("codestream could not be decoded (" + (error.empty() ? std::string("damaged or truncated") : error) + ")");
  }

  // Interleaved native samples, little endian, in Bits Allocated; each value masked to Bits Stored
  // and placed at High Bit, as stored uncompressed data would hold it.
  const size_t pixels = size_t(layout.columns) * size_t(layout.rows);
  const size_t bytes = size_t(layout.bits_allocated / 8);
  const int shift = layout.high_bit + 1 - layout.bits_stored;
  const uint32_t mask = (uint32_t{1} << layout.bits_stored) - 1;
  std::vector<uint8_t> out(pixels * size_t(layout.samples) * bytes);
  for (uint32_t c = 0; c < image->numcomps; ++c) {
    const OPJ_INT32* values = image->comps[c].data;
    if (values == nullptr || image->comps[c].w != width || image->comps[c].h != height) {
      corrupt("component " + std::to_string(c) + " was not decoded");
    }
    for (size_t i = 0; i < pixels; ++i) {
      const uint32_t v = (static_cast<uint32_t>(values[i]) & mask) << shift;
      uint8_t* p = out.data() + (i * size_t(layout.samples) + c) * bytes;
      p[0] = static_cast<uint8_t>(v & 0xFF);
      if (bytes == 2) p[1] = static_cast<uint8_t>(v >> 8);
    }
  }
  return out;
}

}  // namespace loupe::detail
