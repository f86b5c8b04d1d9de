// Reading DICOM files natively with DCMTK (dcmdata, plus the dcmjpeg/dcmjpls codecs): the file's
// attributes and one frame go into DicomPixels, and dicom.cpp's shared math does the rest.
// Without DCMTK (the wasm build) the page parses DICOM itself and these functions say so.
//
// Only the attributes decoding needs and a few descriptive ones are read: nothing
// patient-identifying leaves DCMTK's dataset, which is freed on return.
#include "loupe/dicom.h"

#include <algorithm>
#include <cmath>

#include "internal.h"

#ifdef LOUPE_HAVE_DCMTK
#include <dcmtk/config/osconfig.h>  // must come first
#include <dcmtk/dcmdata/dcdict.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcstack.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/oflog/oflog.h>

#include <mutex>
#endif

namespace loupe {

#ifdef LOUPE_HAVE_DCMTK

namespace {

[[noreturn]] void corrupt(const std::string& what) {
  throw Error(ErrorCode::CorruptImage, "DICOM file is corrupt: " + what);
}

// Codec registration and logging are process-wide in DCMTK: done once. DCMTK's own warnings
// (odd lengths, private tags...) would otherwise go to stderr for every file.
void init_dcmtk() {
  static std::once_flag once;
  std::call_once(once, [] {
    OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
    DJDecoderRegistration::registerCodecs();    // JPEG baseline, extended, lossless
    DJLSDecoderRegistration::registerCodecs();  // JPEG-LS
  });
  if (!dcmDataDict.isDictionaryLoaded()) {
    throw Error(ErrorCode::UnsupportedImage,
                "DCMTK's DICOM data dictionary is not loaded (install DCMTK's dicom.dic or set DCMDICTPATH)");
  }
}

// DCMTK allocates a value of the length its element declares before reading it. From a buffer
// stream it loads every value at once, so a damaged 200-byte file declaring a 4 GB element costs
// a 4 GB allocation (found by tests/fuzz). This stream over the same bytes can be re-created at a
// value's position (as DCMTK's file streams are), so DCMTK leaves values above maxReadLength
// unread until asked for, and Loupe asks only for values that fit in the input (require_fits).
class MemoryStreamFactory final : public DcmInputStreamFactory {
 public:
  MemoryStreamFactory(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  DcmInputStream* create() const override;
  DcmInputStreamFactory* clone() const override { return new MemoryStreamFactory(data_, size_); }
  DcmInputStreamFactoryType ident() const override { return DFT_DcmInputFileStreamFactory; }

 private:
  const uint8_t* data_;
  size_t size_;
};

class MemoryInputStream final : public DcmInputBufferStream {
 public:
  MemoryInputStream(const uint8_t* data, size_t size) : data_(data), size_(size) {
    setBuffer(data, static_cast<offile_off_t>(size));
    setEos();
  }
  // A stream from the current position on: where DCMTK will read a value it did not load.
  DcmInputStreamFactory* newFactory() const override {
    const auto at = static_cast<size_t>(tell());
    return new MemoryStreamFactory(data_ + at, size_ - at);
  }

 private:
  const uint8_t* data_;
  size_t size_;
};

DcmInputStream* MemoryStreamFactory::create() const { return new MemoryInputStream(data_, size_); }

// The length an element declares, without loading its value: getLength() of a string element
// loads the value to measure it, the very allocation the fit check prevents (a 67-byte file asked
// for 2.3 GB: tests/fuzz/regressions/dicom_file/). Encapsulated pixel data declares no length:
// its fragments are checked one by one before a codec loads them (check_encapsulated_fragments,
// copy_encapsulated_frame), and DCMTK loads no value of undefined length.
uint64_t declared_length(DcmObject* object) {
  const Uint32 field = object->getLengthField();
  return field == DCM_UndefinedLength ? 0 : field;
}

// An element's declared length fits in the input (checked before any value is loaded).
void require_fits(DcmObject* object, size_t input_size, const std::string& what) {
  if (object != nullptr && declared_length(object) > input_size) {
    corrupt(what + " declares " + std::to_string(declared_length(object)) + " bytes but the file has " +
            std::to_string(input_size));
  }
}

// Every value of the file (meta information and data set, nested sequences included) fits in
// the input: checked once after parsing, before any deferred value is loaded.
void require_values_fit(DcmFileFormat& file, size_t input_size) {
  for (DcmItem* root : {static_cast<DcmItem*>(file.getMetaInfo()), static_cast<DcmItem*>(file.getDataset())}) {
    DcmStack stack;
    while (root != nullptr && root->nextObject(stack, OFTrue).good()) {
      DcmObject* object = stack.top();
      if (object->isLeaf()) require_fits(object, input_size, "element " + std::string(object->getTag().toString().c_str()));
    }
  }
}

std::string trimmed(const OFString& s) {
  std::string out(s.c_str());
  const auto first = out.find_first_not_of(" \0", 0, 2);
  if (first == std::string::npos) return "";
  const auto last = out.find_last_not_of(" \0", std::string::npos, 2);
  return out.substr(first, last - first + 1);
}

// The attributes, without pixel data.
DicomPixels read_attributes(DcmFileFormat& file) {
  DcmDataset* ds = file.getDataset();
  DicomPixels d;
  const auto u16 = [&](const DcmTagKey& key, int fallback) {
    Uint16 v = 0;
    return ds->findAndGetUint16(key, v).good() ? int(v) : fallback;
  };
  const auto text = [&](DcmItem* item, const DcmTagKey& key) {
    OFString s;
    return item->findAndGetOFString(key, s).good() ? trimmed(s) : std::string();
  };
  const auto number = [&](const DcmTagKey& key) -> std::optional<double> {
    Float64 v = 0;
    if (ds->findAndGetFloat64(key, v, 0).good() && std::isfinite(v)) return v;
    return std::nullopt;
  };
  d.rows = u16(DCM_Rows, 0);
  d.columns = u16(DCM_Columns, 0);
  d.samples_per_pixel = u16(DCM_SamplesPerPixel, 1);
  d.bits_allocated = u16(DCM_BitsAllocated, 0);
  d.bits_stored = u16(DCM_BitsStored, 0);
  d.high_bit = u16(DCM_HighBit, -1);
  d.pixel_representation = u16(DCM_PixelRepresentation, 0);
  d.planar_configuration = u16(DCM_PlanarConfiguration, 0);
  Sint32 frames = 1;
  if (ds->findAndGetSint32(DCM_NumberOfFrames, frames).good()) d.frames = frames;
  d.photometric = text(ds, DCM_PhotometricInterpretation);
  d.transfer_syntax = text(file.getMetaInfo(), DCM_TransferSyntaxUID);
  if (d.transfer_syntax.empty()) d.transfer_syntax = DcmXfer(ds->getOriginalXfer()).getXferID();
  d.slope = number(DCM_RescaleSlope).value_or(1.0);
  d.intercept = number(DCM_RescaleIntercept).value_or(0.0);
  if (d.slope == 0.0) d.slope = 1.0;  // a zero slope is a writer's mistake, not a black image
  d.window_center = number(DCM_WindowCenter);
  d.window_width = number(DCM_WindowWidth);
  d.voi_lut_function = text(ds, DCM_VOILUTFunction);
  DcmItem* voi = nullptr;
  if (ds->findAndGetSequenceItem(DCM_VOILUTSequence, voi, 0).good() && voi != nullptr) {
    const Uint16* table = nullptr;
    unsigned long count = 0;
    Uint16 entries = 0, bits = 16;
    Uint16 first_unsigned = 0;
    if (voi->findAndGetUint16Array(DCM_LUTData, table, &count).good() && table != nullptr && count > 0 &&
        voi->findAndGetUint16(DCM_LUTDescriptor, entries, 0).good()) {
      voi->findAndGetUint16(DCM_LUTDescriptor, first_unsigned, 1);
      voi->findAndGetUint16(DCM_LUTDescriptor, bits, 2);
      // The first mapped value is signed when the pixel data is (PS3.3 C.11.2.1.1).
      d.voi_lut_first = d.pixel_representation == 1 ? int(static_cast<int16_t>(first_unsigned)) : int(first_unsigned);
      d.voi_lut_bits = bits;
      const size_t n = entries == 0 ? 65536 : entries;
      d.voi_lut.assign(table, table + std::min<size_t>(n, count));
    }
  }
  d.modality = text(ds, DCM_Modality);
  d.body_part = text(ds, DCM_BodyPartExamined);
  d.view_position = text(ds, DCM_ViewPosition);
  d.sop_class_uid = text(ds, DCM_SOPClassUID);
  DcmElement* pixel_data = nullptr;
  d.has_pixel_data = ds->findAndGetElement(DCM_PixelData, pixel_data).good() && pixel_data != nullptr;
  if (!d.has_pixel_data && (ds->tagExists(DCM_FloatPixelData) || ds->tagExists(DCM_DoubleFloatPixelData))) {
    throw Error(ErrorCode::UnsupportedImage,
                "DICOM with floating-point pixel data (a parametric map) is not supported; integer pixel data is");
  }
  return d;
}

// Uncompressed pixel data of frame d.frame, as little-endian bytes. DCMTK keeps OW values in
// host byte order (it swaps big-endian files on reading); OB values are bytes as stored. Frames
// follow each other without padding (PS3.5 8.1.1), so frame k starts k frames' bytes in.
void copy_native_pixels(DcmDataset* ds, DicomPixels& d) {
  DcmElement* element = nullptr;
  if (ds->findAndGetElement(DCM_PixelData, element).bad() || element == nullptr) corrupt("pixel data missing");
  const size_t per_pixel = d.photometric == "YBR_FULL_422" ? 2 : size_t(d.samples_per_pixel) * size_t(d.bits_allocated / 8);
  const size_t frame_bytes = size_t(d.rows) * size_t(d.columns) * per_pixel;
  const size_t start = frame_bytes * size_t(d.frame);
  const size_t length = element->getLength();
  const size_t count = start < length ? std::min(length - start, frame_bytes) : 0;
  d.pixel_data.resize(count);
  if (element->getVR() == EVR_OW) {
    Uint16* words = nullptr;
    if (element->getUint16Array(words).bad() || words == nullptr) corrupt("pixel data (OW) could not be read");
    for (size_t i = 0; i < count; ++i) {
      const Uint16 word = words[(start + i) / 2];
      d.pixel_data[i] = static_cast<uint8_t>((start + i) % 2 == 0 ? word & 0xFF : word >> 8);
    }
  } else {
    Uint8* bytes = nullptr;
    if (element->getUint8Array(bytes).bad() || bytes == nullptr) corrupt("pixel data could not be read");
    if (count > 0) std::copy(bytes + start, bytes + start + count, d.pixel_data.begin());
  }
  d.pixel_syntax = "1.2.840.10008.1.2.1";  // explicit VR little endian, whatever the file had
}

DcmPixelSequence* encapsulated_sequence(DcmDataset* ds) {
  DcmElement* element = nullptr;
  if (ds->findAndGetElement(DCM_PixelData, element).bad() || element == nullptr) corrupt("pixel data missing");
  DcmPixelSequence* sequence = nullptr;
  if (static_cast<DcmPixelData*>(element)->getEncapsulatedRepresentation(ds->getOriginalXfer(), nullptr, sequence).bad() ||
      sequence == nullptr) {
    corrupt("encapsulated pixel data could not be read");
  }
  return sequence;
}

// The fragments of frame d.frame of encapsulated pixel data, for dicom.cpp to decode: found by
// the rule the page follows too (loupe::dicom_frame_fragments).
void copy_encapsulated_frame(DcmDataset* ds, DicomPixels& d, size_t input_size) {
  DcmPixelSequence* sequence = encapsulated_sequence(ds);
  const auto item_bytes = [&](unsigned long i, Uint8*& bytes) -> size_t {
    DcmPixelItem* item = nullptr;
    bytes = nullptr;
    if (sequence->getItem(item, i).bad() || item == nullptr) corrupt("pixel data fragment " + std::to_string(i) + " is missing");
    require_fits(item, input_size, "pixel data fragment " + std::to_string(i));
    if (item->getUint8Array(bytes).bad()) corrupt("pixel data fragment " + std::to_string(i) + " could not be read");
    return bytes == nullptr ? 0 : item->getLength();
  };
  if (sequence->card() == 0) corrupt("encapsulated pixel data has no Basic Offset Table item");
  // Item 0 is the Basic Offset Table (32-bit little-endian offsets); the fragments follow.
  std::vector<uint32_t> offsets;
  Uint8* table = nullptr;
  const size_t table_size = item_bytes(0, table);
  for (size_t k = 0; k + 4 <= table_size; k += 4) {
    offsets.push_back(uint32_t{table[k]} | uint32_t{table[k + 1]} << 8 | uint32_t{table[k + 2]} << 16 |
                      uint32_t{table[k + 3]} << 24);
  }
  std::vector<uint32_t> sizes;
  std::vector<bool> starts;
  for (unsigned long i = 1; i < sequence->card(); ++i) {
    Uint8* bytes = nullptr;
    const size_t n = item_bytes(i, bytes);
    sizes.push_back(static_cast<uint32_t>(n));
    starts.push_back(n >= 2 && bytes[0] == 0xFF && (bytes[1] == 0xD8 || bytes[1] == 0x4F));
  }
  const FragmentRange range = dicom_frame_fragments(offsets, sizes, d.frames, d.frame, starts);
  for (size_t i = range.first; i < range.last; ++i) {
    Uint8* bytes = nullptr;
    const size_t n = item_bytes(static_cast<unsigned long>(i + 1), bytes);
    if (bytes != nullptr) d.pixel_data.insert(d.pixel_data.end(), bytes, bytes + n);
  }
  if (d.pixel_data.empty()) corrupt("encapsulated pixel data of " + dicom_frame_note(d) + " is empty");
  d.pixel_syntax = d.transfer_syntax;
}

// One frame of a multi-frame file in a syntax DCMTK's codecs decompress, without decompressing
// the others: little-endian samples in the file's layout (the codecs keep the Planar
// Configuration the data set declares), and the colour model they produce.
void decompress_one_frame(DcmDataset* ds, DicomPixels& d) {
  DcmElement* element = nullptr;
  if (ds->findAndGetElement(DCM_PixelData, element).bad() || element == nullptr) corrupt("pixel data missing");
  auto* pixel_data = static_cast<DcmPixelData*>(element);
  Uint32 frame_size = 0;
  if (pixel_data->getUncompressedFrameSize(ds, frame_size).bad() || frame_size == 0) {
    corrupt("the size of a decompressed frame could not be determined");
  }
  std::vector<uint8_t> frame(frame_size);
  Uint32 start_fragment = 0;  // DCMTK finds it (offset table, else by counting frames)
  OFString colour;
  const OFCondition decoded =
      pixel_data->getUncompressedFrame(ds, Uint32(d.frame), start_fragment, frame.data(), frame_size, colour);
  if (decoded.bad()) {
    corrupt(dicom_transfer_syntax_name(d.transfer_syntax) + " pixel data of " + dicom_frame_note(d) +
            " could not be decompressed (" + decoded.text() + ")");
  }
  if (!colour.empty()) d.photometric = trimmed(colour);
  const size_t per_pixel = size_t(d.samples_per_pixel) * size_t(d.bits_allocated / 8);
  frame.resize(std::min(frame.size(), size_t(d.rows) * size_t(d.columns) * per_pixel));
  d.pixel_data = std::move(frame);
  d.pixel_syntax = "1.2.840.10008.1.2.1";
}

// Every fragment of encapsulated pixel data fits in the input, before a codec loads them.
void check_encapsulated_fragments(DcmDataset* ds, size_t input_size) {
  DcmPixelSequence* sequence = encapsulated_sequence(ds);
  for (unsigned long i = 0; i < sequence->card(); ++i) {
    DcmPixelItem* item = nullptr;
    if (sequence->getItem(item, i).good()) require_fits(item, input_size, "pixel data fragment " + std::to_string(i));
  }
}

bool is_syntax(const std::string& uid, std::initializer_list<const char*> uids) {
  for (const char* u : uids) {
    if (uid == u) return true;
  }
  return false;
}

}  // namespace

bool dicom_reader_available() { return true; }

DicomPixels read_dicom(const uint8_t* data, size_t size, const DecodeLimits& limits, int frame) {
  if (data == nullptr || size == 0) throw Error(ErrorCode::EmptyInput, "the file is empty (0 bytes)");
  init_dcmtk();
  MemoryInputStream stream(data, size);  // values over DCM_MaxReadLength load when asked for
  DcmFileFormat file;
  file.transferInit();
  const OFCondition status = file.read(stream, EXS_Unknown, EGL_noChange, DCM_MaxReadLength);
  file.transferEnd();
  if (status.bad()) {
    // A syntax DCMTK does not know can stop parsing; name the syntax rather than "corrupt". The
    // parse stopped before require_values_fit, so the UID is read only if its declared length fits
    // in the input and in a UID (64 bytes): DCMTK allocates whatever length an element declares
    // (a fuzzed file declared 4 GB here: tests/fuzz/regressions/dicom_file/).
    DcmElement* syntax = nullptr;
    OFString uid;
    if (file.getMetaInfo()->findAndGetElement(DCM_TransferSyntaxUID, syntax).good() && syntax != nullptr &&
        declared_length(syntax) <= std::min<size_t>(size, 64) && syntax->getOFString(uid, 0).good() &&
        !trimmed(uid).empty()) {
      detail::check_dicom_transfer_syntax(trimmed(uid));
    }
    corrupt(std::string("the DICOM data set could not be parsed (") + status.text() + "): truncated or damaged");
  }
  require_values_fit(file, size);
  DicomPixels d = read_attributes(file);
  d.frame = frame;
  check_dicom(d, limits);  // no pixel data, frame index, syntax, layout and size: before decompressing
  DcmDataset* ds = file.getDataset();
  const std::string& ts = d.transfer_syntax;
  if (is_syntax(ts, {"1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.90",
                     "1.2.840.10008.1.2.4.91"})) {
    // RLE, JPEG baseline and JPEG 2000: dicom.cpp decodes them, as in the browser.
    copy_encapsulated_frame(ds, d, size);
  } else if (DcmXfer(ds->getOriginalXfer()).isEncapsulated() && d.frames > 1) {
    check_encapsulated_fragments(ds, size);
    decompress_one_frame(ds, d);
  } else if (DcmXfer(ds->getOriginalXfer()).isEncapsulated()) {
    check_encapsulated_fragments(ds, size);  // DCMTK's codecs load every fragment
    const OFCondition decoded = ds->chooseRepresentation(EXS_LittleEndianExplicit, nullptr);
    if (decoded.bad() || !ds->canWriteXfer(EXS_LittleEndianExplicit)) {
      corrupt(dicom_transfer_syntax_name(ts) + " pixel data could not be decompressed (" + decoded.text() + ")");
    }
    // Decompression may convert colour (YBR -> RGB) and change the layout: read them again.
    const DicomPixels after = read_attributes(file);
    d.photometric = after.photometric;
    d.planar_configuration = after.planar_configuration;
    d.bits_allocated = after.bits_allocated;
    d.bits_stored = after.bits_stored;
    d.high_bit = after.high_bit;
    copy_native_pixels(ds, d);
  } else {
    copy_native_pixels(ds, d);
  }
  return d;
}

DicomPixels read_dicom_file_header(const std::string& path) {
  init_dcmtk();
  DcmFileFormat file;
  // Values above 256 bytes (the pixel data) are left in the file, not loaded.
  const OFCondition status = file.loadFile(path.c_str(), EXS_Unknown, EGL_noChange, 256, ERM_fileOnly);
  if (status.bad()) {
    throw Error(ErrorCode::CorruptImage, path + ": DICOM file could not be parsed (" + status.text() + ")");
  }
  return read_attributes(file);
}

#else  // no DICOM reader in this build (the browser)

namespace {
[[noreturn]] void no_reader() {
  throw Error(ErrorCode::UnsupportedImage,
              "DICOM files are parsed by the page in the browser build (web/dicom.mjs parseDicom, then "
              "loupe::dicom_pixels_from_json and loupe::dicom_to_image); decode_image() cannot read DICOM bytes here");
}
}  // namespace

bool dicom_reader_available() { return false; }
DicomPixels read_dicom(const uint8_t*, size_t, const DecodeLimits&, int) { no_reader(); }
DicomPixels read_dicom_file_header(const std::string&) { no_reader(); }

#endif

Image decode_dicom(const uint8_t* data, size_t size, const DecodeLimits& limits, int frame) {
  return dicom_to_image(read_dicom(data, size, limits, frame), limits);
}

}  // namespace loupe
