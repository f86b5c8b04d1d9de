// JPEG 2000 test data with OpenJPEG's encoder (dicom_j2k_encoder.h).
#include "dicom_j2k_encoder.h"

#include <openjpeg.h>

#include <cstring>
#include <stdexcept>

namespace loupe::test {

namespace {

struct Sink {
  std::vector<uint8_t> bytes;
  size_t position = 0;
};

OPJ_SIZE_T write_sink(void* buffer, OPJ_SIZE_T n, void* user) {
  auto* s = static_cast<Sink*>(user);
  if (s->position + n > s->bytes.size()) s->bytes.resize(s->position + n);
  std::memcpy(s->bytes.data() + s->position, buffer, n);
  s->position += n;
  return n;
}
OPJ_OFF_T skip_sink(OPJ_OFF_T n, void* user) {
  auto* s = static_cast<Sink*>(user);
  s->position += static_cast<size_t>(n);
  if (s->position > s->bytes.size()) s->bytes.resize(s->position);
  return n;
}
OPJ_BOOL seek_sink(OPJ_OFF_T to, void* user) {
  auto* s = static_cast<Sink*>(user);
  s->position = static_cast<size_t>(to);
  if (s->position > s->bytes.size()) s->bytes.resize(s->position);
  return OPJ_TRUE;
}

}  // namespace

std::vector<uint8_t> encode_j2k(const std::vector<int32_t>& samples, const J2kOptions& o) {
  const size_t pixels = size_t(o.width) * size_t(o.height);
  if (samples.size() != pixels * size_t(o.components)) throw std::invalid_argument("encode_j2k: sample count");
  std::vector<opj_image_cmptparm_t> parameters(size_t(o.components));
  for (auto& p : parameters) {
    std::memset(&p, 0, sizeof p);
    p.dx = p.dy = 1;
    p.w = OPJ_UINT32(o.width);
    p.h = OPJ_UINT32(o.height);
    p.prec = OPJ_UINT32(o.precision);
    p.sgnd = o.is_signed ? 1 : 0;
  }
  opj_image_t* image = opj_image_create(OPJ_UINT32(o.components), parameters.data(),
                                        o.components == 3 ? OPJ_CLRSPC_SRGB : OPJ_CLRSPC_GRAY);
  if (image == nullptr) throw std::runtime_error("encode_j2k: opj_image_create failed");
  image->x1 = OPJ_UINT32(o.width);
  image->y1 = OPJ_UINT32(o.height);
  for (int c = 0; c < o.components; ++c) {
    for (size_t i = 0; i < pixels; ++i) image->comps[c].data[i] = samples[i * size_t(o.components) + size_t(c)];
  }
  opj_cparameters_t cp;
  opj_set_default_encoder_parameters(&cp);
  cp.tcp_mct = o.colour_transform ? 1 : 0;
  cp.irreversible = o.lossless ? 0 : 1;
  cp.tcp_numlayers = 1;
  cp.tcp_rates[0] = o.lossless ? 0 : 8;
  cp.cp_disto_alloc = 1;
  cp.numresolution = 4;
  opj_codec_t* codec = opj_create_compress(OPJ_CODEC_J2K);
  Sink sink;
  opj_stream_t* stream = opj_stream_create(OPJ_J2K_STREAM_CHUNK_SIZE, OPJ_FALSE);
  opj_stream_set_user_data(stream, &sink, nullptr);
  opj_stream_set_write_function(stream, write_sink);
  opj_stream_set_skip_function(stream, skip_sink);
  opj_stream_set_seek_function(stream, seek_sink);
  const bool ok = opj_setup_encoder(codec, &cp, image) && opj_start_compress(codec, image, stream) &&
                  opj_encode(codec, stream) && opj_end_compress(codec, stream);
  opj_stream_destroy(stream);
  opj_destroy_codec(codec);
  opj_image_destroy(image);
  if (!ok) throw std::runtime_error("encode_j2k: OpenJPEG could not encode");
  return sink.bytes;
}

}  // namespace loupe::test
