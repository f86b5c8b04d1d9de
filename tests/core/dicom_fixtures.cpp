#include "dicom_fixtures.h"

#include <dcmtk/config/osconfig.h>  // must come first
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcrleerg.h>
#include <dcmtk/dcmdata/dcrlerp.h>
#include <dcmtk/dcmdata/dcuid.h>  // UID_* SOP classes
#include <dcmtk/dcmimage/diregist.h>  // colour support for DCMTK's lossy JPEG encoder
#include <dcmtk/dcmjpeg/djencode.h>
#include <dcmtk/dcmjpeg/djrplol.h>
#include <dcmtk/dcmjpeg/djrploss.h>
#include <dcmtk/dcmjpls/djencode.h>
#include <dcmtk/dcmjpls/djrparam.h>
#include <dcmtk/oflog/oflog.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <mutex>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <stdexcept>

#include "dicom_j2k_encoder.h"
#include "test_support.h"

namespace loupe::test {

const char* const kFixturePatientName = "Doe^Jane^Quincy";
const char* const kFixturePatientId = "PID-7734921";
const char* const kFixtureBirthDate = "19470312";

namespace {

void check(const OFCondition& status, const std::string& what) {
  if (status.bad()) throw std::runtime_error("DICOM fixture: " + what + ": " + status.text());
}

void init_encoders() {
  static std::once_flag once;
  std::call_once(once, [] {
    OFLog::configure(std::getenv("LOUPE_DCMTK_LOG") ? OFLogger::DEBUG_LOG_LEVEL : OFLogger::FATAL_LOG_LEVEL);
    DJEncoderRegistration::registerCodecs();
    DJLSEncoderRegistration::registerCodecs();
    DcmRLEEncoderRegistration::registerCodecs();
  });
}

// The real image for a role, as 8-bit gray or RGB; a generated pattern without the data sets.
Image source_image(const std::string& folder, int channels, std::string& source) {
  const auto files = data_files(folder, 1);
  Image image;
  if (files.empty()) {
    source = "pattern";
    return make_pattern(96, 80, channels);
  }
  source = files.front();
  image = decode_image_file(files.front());
  if (image.channels == channels) return image;
  const cv::Mat rgb(image.height, image.width, CV_8UC3, image.data.data());
  cv::Mat gray;
  cv::cvtColor(rgb, gray, cv::COLOR_RGB2GRAY);
  Image out;
  out.width = image.width;
  out.height = image.height;
  out.channels = 1;
  out.data.assign(gray.data, gray.data + gray.total());
  return out;
}

Image to_u16(const Image& gray8, const std::function<uint16_t(uint8_t)>& f) {
  Image out = gray8;
  out.depth = PixelDepth::U16;
  out.data.resize(gray8.data.size() * 2);
  auto* p = reinterpret_cast<uint16_t*>(out.data.data());
  for (size_t i = 0; i < gray8.data.size(); ++i) p[i] = f(gray8.data[i]);
  return out;
}

// A file with the patient, study and equipment attributes a real one has.
void put_common(DcmDataset* ds, const char* sop_class, const char* modality) {
  // Fixed UIDs (not generated ones, whose length varies): the files are the same on every run.
  static int instance = 0;
  const std::string root = "1.2.826.0.1.3680043.10.543.";
  check(ds->putAndInsertString(DCM_SOPClassUID, sop_class), "SOPClassUID");
  check(ds->putAndInsertString(DCM_SOPInstanceUID, (root + "3." + std::to_string(100 + instance++ % 900)).c_str()),
        "uid");
  check(ds->putAndInsertString(DCM_StudyInstanceUID, (root + "1.1").c_str()), "uid");
  check(ds->putAndInsertString(DCM_SeriesInstanceUID, (root + "2.1").c_str()), "uid");
  check(ds->putAndInsertString(DCM_PatientName, kFixturePatientName), "PatientName");
  check(ds->putAndInsertString(DCM_PatientID, kFixturePatientId), "PatientID");
  check(ds->putAndInsertString(DCM_PatientBirthDate, kFixtureBirthDate), "PatientBirthDate");
  check(ds->putAndInsertString(DCM_InstitutionName, "Loupe Test Hospital"), "InstitutionName");
  check(ds->putAndInsertString(DCM_Modality, modality), "Modality");
}

struct Layout {
  int rows = 0, columns = 0, samples = 1, bits_allocated = 8, bits_stored = 8, pixel_representation = 0;
  const char* photometric = "MONOCHROME2";
  int planar = 0;
  int frames = 1;
};

void put_layout(DcmDataset* ds, const Layout& l) {
  check(ds->putAndInsertUint16(DCM_SamplesPerPixel, Uint16(l.samples)), "SamplesPerPixel");
  check(ds->putAndInsertString(DCM_PhotometricInterpretation, l.photometric), "Photometric");
  check(ds->putAndInsertUint16(DCM_Rows, Uint16(l.rows)), "Rows");
  check(ds->putAndInsertUint16(DCM_Columns, Uint16(l.columns)), "Columns");
  check(ds->putAndInsertUint16(DCM_BitsAllocated, Uint16(l.bits_allocated)), "BitsAllocated");
  check(ds->putAndInsertUint16(DCM_BitsStored, Uint16(l.bits_stored)), "BitsStored");
  check(ds->putAndInsertUint16(DCM_HighBit, Uint16(l.bits_stored - 1)), "HighBit");
  check(ds->putAndInsertUint16(DCM_PixelRepresentation, Uint16(l.pixel_representation)), "PixelRepresentation");
  if (l.samples == 3) check(ds->putAndInsertUint16(DCM_PlanarConfiguration, Uint16(l.planar)), "Planar");
  if (l.frames > 1) check(ds->putAndInsertString(DCM_NumberOfFrames, std::to_string(l.frames).c_str()), "Frames");
}

void save(DcmFileFormat& file, const std::string& path, E_TransferSyntax xfer,
          const DcmRepresentationParameter* parameter = nullptr) {
  DcmDataset* ds = file.getDataset();
  if (DcmXfer(xfer).isEncapsulated() && parameter != nullptr) {
    check(ds->chooseRepresentation(xfer, parameter), std::string("compress to ") + DcmXfer(xfer).getXferName());
    if (!ds->canWriteXfer(xfer)) throw std::runtime_error("DICOM fixture: cannot write " + path);
  }
  check(file.saveFile(path.c_str(), xfer), "save " + path);
}

// 16-bit data set from an 8-bit gray image: stored = 16 v + 7 in 12 bits, slope 1/16 and
// intercept -7/16 give back v, and the window 128/256 maps v to 257 v: exactly v as 16-bit.
DcmFileFormat chest_file(const Image& gray, uint16_t upper_bits) {
  DcmFileFormat file;
  DcmDataset* ds = file.getDataset();
  put_common(ds, UID_DigitalXRayImageStorageForPresentation, "DX");
  check(ds->putAndInsertString(DCM_BodyPartExamined, "CHEST"), "BodyPart");
  Layout l;
  l.rows = gray.height;
  l.columns = gray.width;
  l.bits_allocated = 16;
  l.bits_stored = 12;
  put_layout(ds, l);
  check(ds->putAndInsertString(DCM_RescaleSlope, "0.0625"), "slope");
  check(ds->putAndInsertString(DCM_RescaleIntercept, "-0.4375"), "intercept");
  check(ds->putAndInsertString(DCM_RescaleType, "US"), "type");
  check(ds->putAndInsertString(DCM_WindowCenter, "128"), "center");
  check(ds->putAndInsertString(DCM_WindowWidth, "256"), "width");
  std::vector<Uint16> words(gray.data.size());
  for (size_t i = 0; i < words.size(); ++i) words[i] = Uint16((gray.data[i] * 16 + 7) | upper_bits);
  check(ds->putAndInsertUint16Array(DCM_PixelData, words.data(), words.size()), "PixelData");
  return file;
}

// Frame k of a multi-frame fixture: the source with its bits flipped by 0x55 * k, so that every
// frame differs and a reader that returns the wrong one is caught.
Image frame_of(const Image& gray, int k) {
  Image out = gray;
  for (auto& v : out.data) v = uint8_t(v ^ uint8_t(0x55 * k));
  return out;
}

DcmFileFormat gray8_file(const Image& gray, const char* photometric, int frames = 1) {
  DcmFileFormat file;
  DcmDataset* ds = file.getDataset();
  put_common(ds, UID_MRImageStorage, "MR");
  check(ds->putAndInsertString(DCM_BodyPartExamined, "BRAIN"), "BodyPart");
  Layout l;
  l.rows = gray.height;
  l.columns = gray.width;
  l.photometric = photometric;
  l.frames = frames;
  put_layout(ds, l);
  const bool invert = std::string(photometric) == "MONOCHROME1";
  std::vector<Uint8> bytes;
  for (int f = 0; f < frames; ++f) {
    for (uint8_t v : frame_of(gray, f).data) bytes.push_back(invert ? Uint8(255 - v) : v);
  }
  check(ds->putAndInsertUint8Array(DCM_PixelData, bytes.data(), bytes.size()), "PixelData");
  return file;
}

DcmFileFormat rgb_file(const Image& rgb, int planar) {
  DcmFileFormat file;
  DcmDataset* ds = file.getDataset();
  put_common(ds, UID_SecondaryCaptureImageStorage, "OT");
  check(ds->putAndInsertString(DCM_ConversionType, "WSD"), "ConversionType");
  Layout l;
  l.rows = rgb.height;
  l.columns = rgb.width;
  l.samples = 3;
  l.photometric = "RGB";
  l.planar = planar;
  put_layout(ds, l);
  std::vector<Uint8> bytes(rgb.data.size());
  const size_t pixels = size_t(rgb.width) * size_t(rgb.height);
  for (size_t i = 0; i < pixels; ++i) {
    for (size_t c = 0; c < 3; ++c) bytes[planar ? c * pixels + i : i * 3 + c] = rgb.data[i * 3 + c];
  }
  check(ds->putAndInsertUint8Array(DCM_PixelData, bytes.data(), bytes.size()), "PixelData");
  return file;
}

// Encapsulated pixel data from ready codestreams, one per frame: with a Basic Offset Table, or
// without one and each frame cut into two fragments (readers then find frames by their markers).
void put_encapsulated(DcmDataset* ds, const std::vector<std::vector<uint8_t>>& frames, E_TransferSyntax xfer,
                      bool offset_table = true) {
  auto* sequence = new DcmPixelSequence(DCM_PixelSequenceTag);
  auto* table = new DcmPixelItem(DCM_PixelItemTag);
  std::vector<Uint8> offsets;
  auto* pixel_data = new DcmPixelData(DCM_PixelData);
  std::vector<DcmPixelItem*> items;
  Uint32 at = 0;
  for (const auto& frame : frames) {
    std::vector<uint8_t> padded = frame;
    if (padded.size() % 2) padded.push_back(0);  // items have even lengths
    for (int k = 0; k < 4; ++k) offsets.push_back(Uint8(at >> (8 * k)));
    const size_t cut = offset_table || frames.size() == 1 ? padded.size() : (padded.size() / 4) * 2;
    for (const auto& [begin, end] : {std::pair<size_t, size_t>{0, cut}, {cut, padded.size()}}) {
      if (begin == end) continue;
      auto* item = new DcmPixelItem(DCM_PixelItemTag);
      check(item->putUint8Array(padded.data() + begin, Uint32(end - begin)), "fragment");
      items.push_back(item);
      at += Uint32(8 + end - begin);
    }
  }
  if (offset_table && frames.size() > 1) check(table->putUint8Array(offsets.data(), Uint32(offsets.size())), "offsets");
  sequence->insert(table);
  for (auto* item : items) sequence->insert(item);
  pixel_data->putOriginalRepresentation(xfer, nullptr, sequence);
  check(ds->insert(pixel_data), "PixelData");
}

std::vector<int32_t> as_samples(const std::vector<uint8_t>& bytes) { return {bytes.begin(), bytes.end()}; }

}  // namespace

std::vector<DicomFixture> write_dicom_fixtures(const std::string& folder) {
  init_encoders();
  std::vector<DicomFixture> out;
  std::string chest_source, brain_source, rgb_source;
  const Image chest = source_image("chest-xray-covid/No_findings", 1, chest_source);
  const Image brain = source_image("brain-mri/glioma", 1, brain_source);
  const Image rgb = source_image("all-leukemia/Benign", 3, rgb_source);
  const Image chest16 = to_u16(chest, [](uint8_t v) { return uint16_t(v * 257); });

  const auto add = [&](const std::string& name, const std::string& source, const Image& expected, int tolerance = 0,
                       bool native_only = false, int frame = 0) {
    DicomFixture f;
    f.name = name;
    f.path = folder + "/" + name;
    f.source = source;
    f.expected = expected;
    f.tolerance = tolerance;
    f.native_only = native_only;
    f.frame = frame;
    out.push_back(f);
    return f.path;
  };
  const auto add_error = [&](const std::string& name, const std::string& source, ErrorCode code,
                             const std::string& contains) {
    DicomFixture f;
    f.name = name;
    f.path = folder + "/" + name;
    f.source = source;
    f.fails = true;
    f.error = code;
    f.error_contains = contains;
    out.push_back(f);
    return f.path;
  };

  // Uncompressed. Overlay-style garbage in bits 12-15 of the chest file must be masked away.
  {
    DcmFileFormat f = chest_file(chest, 0xA000);
    save(f, add("chest_dx_16bit_mono2.dcm", chest_source, chest16), EXS_LittleEndianExplicit);
  }
  {
    DcmFileFormat f = chest_file(chest, 0);
    save(f, add("chest_big_endian_no_extension", chest_source, chest16), EXS_BigEndianExplicit);
  }
  {
    DcmFileFormat f = gray8_file(brain, "MONOCHROME1");
    save(f, add("brain_mr_8bit_mono1.dcm", brain_source, brain), EXS_LittleEndianImplicit);
  }
  {
    DcmFileFormat f = rgb_file(rgb, 0);
    save(f, add("rgb_secondary_capture.dcm", rgb_source, rgb), EXS_LittleEndianExplicit);
  }
  {
    DcmFileFormat f = rgb_file(rgb, 1);
    save(f, add("rgb_secondary_capture_planar.dcm", rgb_source, rgb), EXS_LittleEndianExplicit);
  }
  // CT-like: signed stored values (4 v - 512), intercept -1024, no window: the image's own
  // range maps to 0..65535.
  {
    DcmFileFormat file;
    DcmDataset* ds = file.getDataset();
    put_common(ds, UID_CTImageStorage, "CT");
    Layout l;
    l.rows = chest.height;
    l.columns = chest.width;
    l.bits_allocated = 16;
    l.bits_stored = 16;
    l.pixel_representation = 1;
    put_layout(ds, l);
    check(ds->putAndInsertString(DCM_RescaleSlope, "1"), "slope");
    check(ds->putAndInsertString(DCM_RescaleIntercept, "-1024"), "intercept");
    std::vector<Uint16> words(chest.data.size());
    for (size_t i = 0; i < words.size(); ++i) words[i] = Uint16(int16_t(chest.data[i] * 4 - 512));
    check(ds->putAndInsertUint16Array(DCM_PixelData, words.data(), words.size()), "PixelData");
    const auto [lo, hi] = std::minmax_element(chest.data.begin(), chest.data.end());
    const double vmin = *lo, vmax = *hi;
    const Image expected = to_u16(chest, [&](uint8_t v) {
      return uint16_t(std::floor((v - vmin) / (vmax - vmin) * 65535.0 + 0.5));
    });
    save(file, add("ct_signed_min_max.dcm", chest_source, expected), EXS_LittleEndianExplicit);
  }

  // Compressed: RLE, JPEG baseline and JPEG 2000 are decoded by the shared core (browser too);
  // JPEG lossless and JPEG-LS by DCMTK natively and by the page's npm decoders.
  {
    DcmFileFormat f = chest_file(chest, 0);
    DcmRLERepresentationParameter rle;
    save(f, add("chest_rle.dcm", chest_source, chest16), EXS_RLELossless, &rle);
  }
  {
    DcmFileFormat f = gray8_file(brain, "MONOCHROME1");
    DcmRLERepresentationParameter rle;
    save(f, add("brain_rle_8bit_mono1.dcm", brain_source, brain), EXS_RLELossless, &rle);
  }
  {
    DcmFileFormat f = rgb_file(rgb, 0);
    DcmRLERepresentationParameter rle;
    save(f, add("rgb_rle.dcm", rgb_source, rgb), EXS_RLELossless, &rle);
  }
  {
    DcmFileFormat f = chest_file(chest, 0);
    DJ_RPLossless lossless;
    save(f, add("chest_jpeg_lossless.dcm", chest_source, chest16), EXS_JPEGProcess14SV1, &lossless);
  }
  {
    DcmFileFormat f = chest_file(chest, 0);
    DJ_RPLossless lossless(6);  // process 14 with predictor 6: Rb + ((Ra - Rc) >> 1)
    save(f, add("chest_jpeg_lossless_predictor6.dcm", chest_source, chest16), EXS_JPEGProcess14, &lossless);
  }
  {
    DcmFileFormat f = rgb_file(rgb, 0);
    DJ_RPLossless lossless;
    save(f, add("rgb_jpeg_lossless.dcm", rgb_source, rgb), EXS_JPEGProcess14SV1, &lossless);
  }
  {
    DcmFileFormat f = chest_file(chest, 0);
    DJLSRepresentationParameter lossless(0, OFTrue);
    save(f, add("chest_jpeg_ls.dcm", chest_source, chest16), EXS_JPEGLSLossless, &lossless);
  }
  {
    // Near-lossless (DCMTK's default deviation): lossy, so compared with the source loosely (mean
    // and worst difference); the page and DCMTK must still agree exactly (tests/parity).
    DcmFileFormat f = chest_file(chest, 0);
    DJLSRepresentationParameter near_lossless(2, OFFalse);
    save(f, add("chest_jpeg_ls_near_lossless.dcm", chest_source, chest16, 320), EXS_JPEGLSLossy, &near_lossless);
  }
  {
    DcmFileFormat f = rgb_file(rgb, 0);
    DJLSRepresentationParameter lossless(0, OFTrue);
    save(f, add("rgb_jpeg_ls.dcm", rgb_source, rgb), EXS_JPEGLSLossless, &lossless);
  }
  // JPEG 2000, encoded with OpenJPEG (DCMTK has no JPEG 2000 codec).
  {
    DcmFileFormat f = chest_file(chest, 0);
    std::vector<int32_t> stored(chest.data.size());
    for (size_t i = 0; i < stored.size(); ++i) stored[i] = chest.data[i] * 16 + 7;
    J2kOptions j2k;
    j2k.width = chest.width;
    j2k.height = chest.height;
    j2k.precision = 12;
    f.getDataset()->findAndDeleteElement(DCM_PixelData);
    put_encapsulated(f.getDataset(), {encode_j2k(stored, j2k)}, EXS_JPEG2000LosslessOnly);
    save(f, add("chest_j2k_lossless.dcm", chest_source, chest16), EXS_JPEG2000LosslessOnly);
    // The same codestream cut in the middle: the decoder must say so, not pad the image.
    DcmFileFormat cut = chest_file(chest, 0);
    cut.getDataset()->findAndDeleteElement(DCM_PixelData);
    auto codestream = encode_j2k(stored, j2k);
    codestream.resize(codestream.size() / 2);
    put_encapsulated(cut.getDataset(), {codestream}, EXS_JPEG2000LosslessOnly);
    save(cut, add_error("chest_j2k_truncated.dcm", chest_source, ErrorCode::CorruptImage, "JPEG 2000 frame"),
         EXS_JPEG2000LosslessOnly);
  }
  {
    DcmFileFormat f = gray8_file(brain, "MONOCHROME2");
    f.getDataset()->findAndDeleteElement(DCM_PixelData);
    J2kOptions j2k;
    j2k.width = brain.width;
    j2k.height = brain.height;
    j2k.lossless = false;
    put_encapsulated(f.getDataset(), {encode_j2k(as_samples(brain.data), j2k)}, EXS_JPEG2000);
    check(f.getDataset()->putAndInsertString(DCM_LossyImageCompression, "01"), "lossy");
    save(f, add("brain_j2k_lossy.dcm", brain_source, brain, 64), EXS_JPEG2000);
  }
  {
    DcmFileFormat f = rgb_file(rgb, 0);
    f.getDataset()->findAndDeleteElement(DCM_PixelData);
    check(f.getDataset()->putAndInsertString(DCM_PhotometricInterpretation, "YBR_RCT"), "photometric");
    J2kOptions j2k;
    j2k.width = rgb.width;
    j2k.height = rgb.height;
    j2k.components = 3;
    j2k.colour_transform = true;
    put_encapsulated(f.getDataset(), {encode_j2k(as_samples(rgb.data), j2k)}, EXS_JPEG2000LosslessOnly);
    save(f, add("rgb_j2k_rct.dcm", rgb_source, rgb), EXS_JPEG2000LosslessOnly);
  }
  {
    // Signed CT values (4 v - 512), intercept -1024, no window: as ct_signed_min_max.dcm.
    DcmFileFormat file;
    DcmDataset* ds = file.getDataset();
    put_common(ds, UID_CTImageStorage, "CT");
    Layout l;
    l.rows = chest.height;
    l.columns = chest.width;
    l.bits_allocated = 16;
    l.bits_stored = 16;
    l.pixel_representation = 1;
    put_layout(ds, l);
    check(ds->putAndInsertString(DCM_RescaleIntercept, "-1024"), "intercept");
    check(ds->putAndInsertString(DCM_RescaleSlope, "1"), "slope");
    std::vector<int32_t> values(chest.data.size());
    for (size_t i = 0; i < values.size(); ++i) values[i] = chest.data[i] * 4 - 512;
    J2kOptions j2k;
    j2k.width = chest.width;
    j2k.height = chest.height;
    j2k.precision = 16;
    j2k.is_signed = true;
    put_encapsulated(ds, {encode_j2k(values, j2k)}, EXS_JPEG2000LosslessOnly);
    const auto [lo, hi] = std::minmax_element(chest.data.begin(), chest.data.end());
    const double vmin = *lo, vmax = *hi;
    const Image expected = to_u16(chest, [&](uint8_t v) {
      return uint16_t(std::floor((v - vmin) / (vmax - vmin) * 65535.0 + 0.5));
    });
    save(file, add("ct_j2k_signed.dcm", chest_source, expected), EXS_JPEG2000LosslessOnly);
  }

  // Multi-frame: every frame differs (frame_of); a reader must hand over the one asked for.
  {
    DcmFileFormat f = gray8_file(brain, "MONOCHROME2", 3);
    const std::string path = add("mr_multiframe.dcm", brain_source, brain);  // the first by default
    add("mr_multiframe.dcm", brain_source, frame_of(brain, 2), 0, false, 2);
    save(f, path, EXS_LittleEndianExplicit);
    DicomFixture past_end;
    past_end.name = "mr_multiframe.dcm";
    past_end.path = path;
    past_end.source = brain_source;
    past_end.frame = 9;
    past_end.fails = true;
    past_end.error = ErrorCode::InvalidArgument;
    past_end.error_contains = "frame 10 does not exist: the DICOM file has 3 frames (1 to 3)";
    out.push_back(past_end);
  }
  {
    DcmFileFormat f = gray8_file(brain, "MONOCHROME2", 3);
    DcmRLERepresentationParameter rle;
    save(f, add("mr_multiframe_rle.dcm", brain_source, frame_of(brain, 1), 0, false, 1), EXS_RLELossless, &rle);
  }
  {
    DcmFileFormat f = gray8_file(brain, "MONOCHROME2", 3);
    DJ_RPLossless lossless;
    save(f, add("mr_multiframe_jpeg_lossless.dcm", brain_source, frame_of(brain, 2), 0, false, 2),
         EXS_JPEGProcess14SV1, &lossless);
  }
  {
    DcmFileFormat f = gray8_file(brain, "MONOCHROME2", 3);
    DJLSRepresentationParameter lossless(0, OFTrue);
    save(f, add("mr_multiframe_jpeg_ls.dcm", brain_source, frame_of(brain, 1), 0, false, 1), EXS_JPEGLSLossless,
         &lossless);
  }
  for (const bool table : {true, false}) {
    DcmFileFormat f = gray8_file(brain, "MONOCHROME2", 3);
    f.getDataset()->findAndDeleteElement(DCM_PixelData);
    J2kOptions j2k;
    j2k.width = brain.width;
    j2k.height = brain.height;
    std::vector<std::vector<uint8_t>> frames;
    for (int k = 0; k < 3; ++k) frames.push_back(encode_j2k(as_samples(frame_of(brain, k).data), j2k));
    put_encapsulated(f.getDataset(), frames, EXS_JPEG2000LosslessOnly, table);
    const std::string name = table ? "mr_multiframe_j2k.dcm" : "mr_multiframe_j2k_no_offset_table.dcm";
    save(f, add(name, brain_source, frame_of(brain, 1), 0, false, 1), EXS_JPEG2000LosslessOnly);
  }
  {
    DcmFileFormat f = gray8_file(brain, "MONOCHROME2");
    DJ_RPLossy lossy(95);
    save(f, add("brain_jpeg_baseline.dcm", brain_source, brain, 48), EXS_JPEGProcess1, &lossy);
  }
  {
    DcmFileFormat f = rgb_file(rgb, 0);
    DJ_RPLossy lossy(95);
    save(f, add("rgb_jpeg_baseline.dcm", rgb_source, rgb, 96), EXS_JPEGProcess1, &lossy);
  }

  // Bad input the issue names.
  {
    DcmFileFormat file;  // a structured report: attributes, no pixels
    put_common(file.getDataset(), UID_BasicTextSRStorage, "SR");
    save(file, add_error("report_no_pixel_data.dcm", "none", ErrorCode::UnsupportedImage, "no pixel data"),
         EXS_LittleEndianExplicit);
  }
  {
    // A JPEG 2000 file: real header, garbage in the one fragment (no codestream at all).
    DcmFileFormat file;
    DcmDataset* ds = file.getDataset();
    put_common(ds, UID_DigitalXRayImageStorageForPresentation, "DX");
    Layout l;
    l.rows = chest.height;
    l.columns = chest.width;
    l.bits_allocated = 16;
    l.bits_stored = 12;
    put_layout(ds, l);
    auto* sequence = new DcmPixelSequence(DCM_PixelSequenceTag);
    sequence->insert(new DcmPixelItem(DCM_PixelItemTag));  // empty basic offset table
    auto* fragment = new DcmPixelItem(DCM_PixelItemTag);
    std::vector<Uint8> garbage(4096);
    for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = Uint8((i * 131 + 17) & 0xFF);
    check(fragment->putUint8Array(garbage.data(), Uint32(garbage.size())), "fragment");
    sequence->insert(fragment);
    auto* pixel_data = new DcmPixelData(DCM_PixelData);
    pixel_data->putOriginalRepresentation(EXS_JPEG2000LosslessOnly, nullptr, sequence);
    check(ds->insert(pixel_data), "PixelData");
    save(file,
         add_error("jpeg2000_garbage.dcm", chest_source, ErrorCode::CorruptImage,
                   "JPEG 2000 frame: no JPEG 2000 codestream"),
         EXS_JPEG2000LosslessOnly);
  }
  {
    DcmFileFormat f = gray8_file(brain, "MONOCHROME2");
    check(f.getDataset()->putAndInsertString(DCM_PhotometricInterpretation, "PALETTE COLOR"), "palette");
    save(f, add_error("palette_color.dcm", brain_source, ErrorCode::UnsupportedImage, "PALETTE COLOR"),
         EXS_LittleEndianExplicit);
  }
  {
    // The chest file cut in the middle of its pixel data.
    DcmFileFormat f = chest_file(chest, 0);
    const std::string whole = folder + "/.whole.tmp";
    save(f, whole, EXS_LittleEndianExplicit);
    std::ifstream in(whole, std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    in.close();
    std::remove(whole.c_str());
    const std::string path = add_error("chest_truncated.dcm", chest_source, ErrorCode::CorruptImage, "");
    std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size() * 3 / 5));
  }
  return out;
}

}  // namespace loupe::test
