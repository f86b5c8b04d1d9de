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
    for (uint8_t v : gray.data) bytes.push_back(invert ? Uint8(255 - v) : v);
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
                       bool native_only = false) {
    DicomFixture f;
    f.name = name;
    f.path = folder + "/" + name;
    f.source = source;
    f.expected = expected;
    f.tolerance = tolerance;
    f.native_only = native_only;
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

  // Compressed: RLE and JPEG baseline are decoded by the shared core (browser too); JPEG lossless
  // and JPEG-LS by DCMTK natively only.
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
    save(f, add("chest_jpeg_lossless.dcm", chest_source, chest16, 0, true), EXS_JPEGProcess14SV1, &lossless);
  }
  {
    DcmFileFormat f = chest_file(chest, 0);
    DJLSRepresentationParameter lossless(0, OFTrue);
    save(f, add("chest_jpeg_ls.dcm", chest_source, chest16, 0, true), EXS_JPEGLSLossless, &lossless);
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
    // A JPEG 2000 file: real header, garbage in the one fragment (no JPEG 2000 codec here).
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
         add_error("jpeg2000_garbage.dcm", chest_source, ErrorCode::UnsupportedImage,
                   "JPEG 2000 compressed DICOM (1.2.840.10008.1.2.4.90) is not supported"),
         EXS_JPEG2000LosslessOnly);
  }
  {
    DcmFileFormat f = gray8_file(brain, "MONOCHROME2", 3);
    save(f, add_error("mr_multiframe.dcm", brain_source, ErrorCode::UnsupportedImage, "multi-frame DICOM (3 frames)"),
         EXS_LittleEndianExplicit);
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
