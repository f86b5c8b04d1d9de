#include "loupe/data/dataset.h"

#include "loupe/data/random.h"

#include "loupe/dicom.h"

#include <zip.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <regex>
#include <sstream>

namespace fs = std::filesystem;

namespace loupe::data {

const char* to_string(SplitName split) {
  switch (split) {
    case SplitName::Unassigned: return "unassigned";
    case SplitName::Train: return "train";
    case SplitName::Val: return "val";
    case SplitName::Test: return "test";
  }
  return "?";
}

namespace {

[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::InvalidArgument, message); }

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool is_image_extension(const std::string& ext) {
  static const char* kExtensions[] = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"};
  return std::any_of(std::begin(kExtensions), std::end(kExtensions), [&](const char* e) { return ext == e; });
}

// DICOM files often have no extension ("IM000123") or a UID as their name ("1.2.840....4.7"):
// those are recognised by their content, "DICM" at byte 128 (132 bytes read).
bool is_dicom_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  uint8_t head[132];
  in.read(reinterpret_cast<char*>(head), sizeof head);
  return in.gcount() == static_cast<std::streamsize>(sizeof head) && is_dicom(head, sizeof head);
}

// A DICOM file's attributes (pixel data skipped): no pixel data, multi-frame, an undecodable
// transfer syntax, unsupported layouts and the size limits are found while scanning.
std::string dicom_problem(const std::string& path) {
  try {
    const DicomPixels header = read_dicom_file_header(path);
    check_dicom(header);
    // Prediction classifies one frame of a multi-frame file and says which; a training set has no
    // place to say it, and an arbitrary slice of a volume is not a labelled example.
    if (header.frames > 1) {
      return "multi-frame DICOM (" + std::to_string(header.frames) +
             " frames): a training image must be a single frame; export the frame you want as its own file";
    }
    return "";
  } catch (const Error& e) {
    const std::string message = e.what();
    return message.rfind(path + ": ", 0) == 0 ? message.substr(path.size() + 2) : message;
  }
}

// Reads just the first bytes and parses the header: finds empty, truncated and non-image files
// without decoding pixels. Returns the reason, or "" when the header is fine.
std::string header_problem(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "cannot open file";
  std::vector<uint8_t> head(64 * 1024);
  in.read(reinterpret_cast<char*>(head.data()), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(in.gcount()));
  if (is_dicom(head)) return dicom_problem(path);
  try {
    const ImageHeader h = read_image_header(head.data(), head.size());
    const DecodeLimits limits;
    if (uint64_t(h.width) * uint64_t(h.height) > limits.max_pixels) {
      return std::to_string(h.width) + "x" + std::to_string(h.height) + " pixels, above the decode limit";
    }
    if (h.width < limits.min_side || h.height < limits.min_side) {
      return std::to_string(h.width) + "x" + std::to_string(h.height) + " pixels, below the minimum side";
    }
  } catch (const Error& e) {
    // A JPEG's frame header can sit after 64 KiB of metadata: only then read the whole file.
    if (e.code() == ErrorCode::CorruptImage && head.size() == 64 * 1024) {
      try {
        const auto bytes = read_file(path);
        read_image_header(bytes.data(), bytes.size());
        return "";
      } catch (const Error& again) {
        return again.what();
      }
    }
    return e.what();
  }
  return "";
}

void require_classes(const Dataset& ds) {
  if (ds.samples.empty()) fail(ds.origin + ": no usable images found" +
                               (ds.skipped.empty() ? "" : " (" + std::to_string(ds.skipped.size()) + " files skipped)"));
  if (ds.classes.size() < 2) {
    fail(ds.origin + ": only one class ('" + (ds.classes.empty() ? "" : ds.classes[0]) +
         "'); a classifier needs at least two");
  }
  const auto counts = ds.class_counts();
  for (size_t c = 0; c < counts.size(); ++c) {
    if (counts[c] == 0) fail(ds.origin + ": class '" + ds.classes[c] + "' has no usable images");
  }
}

// [SECTION] CSV (RFC 4180: quoted fields with "" escapes and commas inside quotes)

std::vector<std::string> parse_csv_line(const std::string& line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') fields.back() += '"', ++i;
      else if (c == '"') quoted = false;
      else fields.back() += c;
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
    } else if (c != '\r') {
      fields.back() += c;
    }
  }
  for (auto& f : fields) {
    const auto first = f.find_first_not_of(" \t");
    f = first == std::string::npos ? "" : f.substr(first, f.find_last_not_of(" \t") - first + 1);
  }
  return fields;
}

SplitName parse_split_name(const std::string& text, const std::string& where) {
  const std::string s = lower(text);
  if (s.empty()) return SplitName::Unassigned;
  if (s == "train") return SplitName::Train;
  if (s == "val" || s == "valid" || s == "validation") return SplitName::Val;
  if (s == "test") return SplitName::Test;
  fail(where + ": split '" + text + "' is not train, val or test");
}

// [SECTION] .npz (a zip of .npy arrays)

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;
};

// Every value is checked against the bytes that are there (tests/fuzz found a shape that made
// std::stoll throw): a damaged array is an error that names it, never another exception.
NpyArray parse_npy_u8(const std::vector<uint8_t>& bytes, const std::string& where) {
  if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0) fail(where + ": not a .npy array");
  const int major = bytes[6];
  if (major < 1 || major > 3) fail(where + ": .npy format version " + std::to_string(major) + " is not one of 1, 2, 3");
  if (major > 1 && bytes.size() < 12) fail(where + ": truncated .npy header");
  const size_t header_len = major == 1 ? size_t(bytes[8] | (bytes[9] << 8))
                                       : size_t(bytes[8] | (bytes[9] << 8) | (bytes[10] << 16) | (size_t(bytes[11]) << 24));
  const size_t offset = major == 1 ? 10 : 12;
  if (header_len > bytes.size() - offset) fail(where + ": truncated .npy header");
  const std::string header(bytes.begin() + static_cast<std::ptrdiff_t>(offset),
                           bytes.begin() + static_cast<std::ptrdiff_t>(offset + header_len));
  if (header.find("'descr': '|u1'") == std::string::npos && header.find("'descr': '<u1'") == std::string::npos) {
    fail(where + ": only uint8 arrays are supported (header " + header + ")");
  }
  if (header.find("'fortran_order': False") == std::string::npos) fail(where + ": Fortran-order arrays are not supported");
  NpyArray array;
  const auto shape_key = header.find("'shape'");
  const auto open = shape_key == std::string::npos ? std::string::npos : header.find('(', shape_key);
  const auto close = open == std::string::npos ? std::string::npos : header.find(')', open);
  if (close == std::string::npos) fail(where + ": the .npy header has no shape");
  std::stringstream dims(header.substr(open + 1, close - open - 1));
  std::string dim;
  const size_t data_offset = offset + header_len;
  const size_t available = bytes.size() - data_offset;
  size_t count = 1;
  while (std::getline(dims, dim, ',')) {
    if (dim.find_first_not_of(' ') == std::string::npos) continue;
    char* end = nullptr;
    const long long value = std::strtoll(dim.c_str(), &end, 10);
    if (end == dim.c_str() || std::string(end).find_first_not_of(' ') != std::string::npos || value < 0) {
      fail(where + ": the .npy shape has a dimension that is not a non-negative integer ('" + dim + "')");
    }
    // The product never exceeds the data that is there (checked per dimension: no overflow).
    if (value > 0 && count > available / static_cast<size_t>(value)) fail(where + ": array data truncated");
    array.shape.push_back(value);
    count *= static_cast<size_t>(value);
  }
  if (available < count) fail(where + ": array data truncated");
  array.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(data_offset),
                    bytes.begin() + static_cast<std::ptrdiff_t>(data_offset + count));
  return array;
}

std::vector<uint8_t> read_zip_entry(zip_t* archive, const std::string& name, const std::string& where) {
  zip_stat_t st;
  if (zip_stat(archive, name.c_str(), 0, &st) != 0) return {};
  std::unique_ptr<zip_file_t, decltype(&zip_fclose)> file(zip_fopen(archive, name.c_str(), 0), zip_fclose);
  if (!file) fail(where + ": cannot open " + name + " in the archive");
  // Read as the data arrives: the size the archive declares is not trusted with an allocation.
  std::vector<uint8_t> bytes;
  uint8_t chunk[1 << 16];
  for (;;) {
    const zip_int64_t n = zip_fread(file.get(), chunk, sizeof chunk);
    if (n < 0) fail(where + ": " + name + " is truncated or damaged");
    if (n == 0) break;
    bytes.insert(bytes.end(), chunk, chunk + n);
  }
  if ((st.valid & ZIP_STAT_SIZE) && bytes.size() != st.size) fail(where + ": " + name + " is truncated or damaged");
  return bytes;
}

}  // namespace

// [SECTION] Dataset

std::vector<int64_t> Dataset::class_counts() const {
  std::vector<int64_t> counts(classes.size(), 0);
  for (const auto& s : samples) ++counts[static_cast<size_t>(s.label)];
  return counts;
}

bool Dataset::has_given_split() const {
  return !samples.empty() && std::all_of(samples.begin(), samples.end(),
                                         [](const Sample& s) { return s.given_split != SplitName::Unassigned; });
}

Image Dataset::load_image(size_t index, const DecodeLimits& limits) const {
  const Sample& s = samples.at(index);
  if (s.memory_index >= 0) return in_memory.at(static_cast<size_t>(s.memory_index));
  return decode_image_file(s.path, limits);
}

nlohmann::json Dataset::summary_json() const {
  nlohmann::json skipped_json = nlohmann::json::array();
  for (const auto& s : skipped) skipped_json.push_back({{"path", s.path}, {"reason", s.reason}});
  return {{"origin", origin}, {"kind", kind}, {"classes", classes}, {"class_counts", class_counts()},
          {"images", samples.size()}, {"skipped", skipped_json}};
}

Dataset scan_image_folder(const std::string& root, const LoadOptions& options) {
  if (!fs::is_directory(root)) fail(root + ": not a folder");
  Dataset ds;
  ds.origin = root;
  ds.kind = "folder";
  std::vector<fs::path> class_dirs;
  for (const auto& entry : fs::directory_iterator(root)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    if (entry.is_directory()) class_dirs.push_back(entry.path());
    else ds.skipped.push_back({entry.path().string(), "file at the top level (expected one sub-folder per class)"});
  }
  std::sort(class_dirs.begin(), class_dirs.end());
  for (const auto& dir : class_dirs) {
    const int label = static_cast<int>(ds.classes.size());
    ds.classes.push_back(dir.filename().string());
    std::vector<fs::path> files;
    for (const auto& entry : fs::recursive_directory_iterator(dir)) {
      if (entry.is_regular_file() && entry.path().filename().string()[0] != '.') files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& file : files) {
      const std::string ext = lower(file.extension().string());
      if (!is_image_extension(ext) && !is_dicom_file(file)) {
        ds.skipped.push_back({file.string(), "not an image file extension"});
        continue;
      }
      if (options.check_headers) {
        const std::string problem = header_problem(file.string());
        if (!problem.empty()) {
          ds.skipped.push_back({file.string(), problem});
          continue;
        }
      }
      ds.samples.push_back({file.string(), label, SplitName::Unassigned, -1, {}});
    }
  }
  if (ds.classes.empty()) fail(root + ": no class sub-folders (expected " + root + "/<class>/<image>)");
  require_classes(ds);
  return ds;
}

Dataset read_manifest(const std::string& csv_path, const LoadOptions& options) {
  std::ifstream in(csv_path);
  if (!in) fail(csv_path + ": cannot open manifest");
  Dataset ds;
  ds.origin = csv_path;
  ds.kind = "manifest";
  const fs::path base = fs::path(csv_path).parent_path();
  std::string line;
  if (!std::getline(in, line)) fail(csv_path + ": empty manifest");
  const auto header = parse_csv_line(line);
  int path_col = -1, label_col = -1, split_col = -1, group_col = -1;
  for (size_t i = 0; i < header.size(); ++i) {
    const std::string name = lower(header[i]);
    if (name == "path") path_col = int(i);
    else if (name == "label") label_col = int(i);
    else if (name == "split") split_col = int(i);
    if (!options.group_column.empty() && name == lower(options.group_column)) group_col = int(i);
  }
  if (path_col < 0 || label_col < 0) fail(csv_path + ": the header row must name 'path' and 'label' columns");
  if (!options.group_column.empty() && group_col < 0) {
    fail(csv_path + ": no '" + options.group_column + "' column (split.group.manifest_column)");
  }
  std::map<std::string, int> label_index;
  struct Row { std::string path, label; SplitName split; std::string group; };
  std::vector<Row> parsed;
  for (int number = 2; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto fields = parse_csv_line(line);
    const std::string where = csv_path + ":" + std::to_string(number);
    const size_t needed = size_t(std::max({path_col, label_col, split_col, group_col})) + 1;
    if (fields.size() < needed) fail(where + ": expected " + std::to_string(needed) + " fields, got " + std::to_string(fields.size()));
    if (fields[label_col].empty()) fail(where + ": empty label");
    fs::path p(fields[path_col]);
    if (p.is_relative()) p = base / p;
    parsed.push_back({p.string(), fields[label_col],
                      split_col >= 0 ? parse_split_name(fields[split_col], where) : SplitName::Unassigned,
                      group_col >= 0 ? fields[static_cast<size_t>(group_col)] : std::string()});
    label_index[fields[label_col]] = 0;
  }
  for (auto& [name, index] : label_index) {
    index = static_cast<int>(ds.classes.size());
    ds.classes.push_back(name);
  }
  for (const auto& row : parsed) {
    if (options.check_headers) {
      const std::string problem = header_problem(row.path);
      if (!problem.empty()) {
        ds.skipped.push_back({row.path, problem});
        continue;
      }
    }
    ds.samples.push_back({row.path, label_index[row.label], row.split, -1, row.group});
  }
  if (split_col >= 0 && !ds.has_given_split()) {
    fail(csv_path + ": the split column is filled for some rows only; fill it for all rows or remove it");
  }
  require_classes(ds);
  return ds;
}

Dataset read_npz(const std::string& npz_path, const LoadOptions& options) {
  int error = 0;
  std::unique_ptr<zip_t, decltype(&zip_discard)> archive(zip_open(npz_path.c_str(), ZIP_RDONLY, &error), zip_discard);
  if (!archive) fail(npz_path + ": cannot open as .npz (zip) archive");
  Dataset ds;
  ds.origin = npz_path;
  ds.kind = "npz";
  int max_label = -1;
  const std::pair<const char*, SplitName> parts[] = {{"train", SplitName::Train}, {"val", SplitName::Val},
                                                      {"test", SplitName::Test}};
  for (const auto& [prefix, split] : parts) {
    const std::string images_name = std::string(prefix) + "_images.npy";
    const std::string labels_name = std::string(prefix) + "_labels.npy";
    const auto image_bytes = read_zip_entry(archive.get(), images_name, npz_path);
    const auto label_bytes = read_zip_entry(archive.get(), labels_name, npz_path);
    if (image_bytes.empty() && label_bytes.empty()) continue;
    if (image_bytes.empty() || label_bytes.empty()) fail(npz_path + ": " + prefix + " images and labels must both be present");
    const NpyArray images = parse_npy_u8(image_bytes, npz_path + ":" + images_name);
    const NpyArray labels = parse_npy_u8(label_bytes, npz_path + ":" + labels_name);
    if (images.shape.size() != 3 && !(images.shape.size() == 4 && (images.shape[3] == 1 || images.shape[3] == 3))) {
      fail(npz_path + ":" + images_name + ": expected shape (N, H, W) or (N, H, W, 1|3)");
    }
    const int64_t n = images.shape[0];
    if (images.shape[1] <= 0 || images.shape[2] <= 0 || images.shape[1] > 65535 || images.shape[2] > 65535) {
      fail(npz_path + ":" + images_name + ": image size " + std::to_string(images.shape[2]) + "x" +
           std::to_string(images.shape[1]) + " is not one Loupe reads (1 to 65535 pixels a side)");
    }
    if (labels.shape.empty() || labels.shape[0] != n || labels.data.size() != static_cast<size_t>(n)) {
      fail(npz_path + ": " + prefix + " has " + std::to_string(n) + " images but labels of another size (multi-label data is not supported)");
    }
    const int h = static_cast<int>(images.shape[1]), w = static_cast<int>(images.shape[2]);
    const int channels = images.shape.size() == 4 ? static_cast<int>(images.shape[3]) : 1;
    const size_t image_size = size_t(h) * w * channels;
    for (int64_t i = 0; i < n; ++i) {
      Image img;
      img.width = w;
      img.height = h;
      img.channels = channels;
      img.data.assign(images.data.begin() + static_cast<std::ptrdiff_t>(i * image_size),
                      images.data.begin() + static_cast<std::ptrdiff_t>((i + 1) * image_size));
      const int label = labels.data[static_cast<size_t>(i)];
      max_label = std::max(max_label, label);
      ds.samples.push_back({npz_path + ":" + images_name + "[" + std::to_string(i) + "]", label, split,
                            static_cast<int64_t>(ds.in_memory.size()), {}});
      ds.in_memory.push_back(std::move(img));
    }
  }
  if (ds.samples.empty()) fail(npz_path + ": no train_/val_/test_ images arrays found");
  if (!options.npz_class_names.empty()) {
    if (static_cast<int>(options.npz_class_names.size()) <= max_label) {
      fail(npz_path + ": labels go up to " + std::to_string(max_label) + " but only " +
           std::to_string(options.npz_class_names.size()) + " class names were given");
    }
    ds.classes = options.npz_class_names;
  } else {
    for (int c = 0; c <= max_label; ++c) ds.classes.push_back(std::to_string(c));
  }
  require_classes(ds);
  return ds;
}

Dataset load_dataset(const std::string& path, const LoadOptions& options) {
  if (!fs::exists(path)) fail(path + ": no such file or folder");
  if (fs::is_directory(path)) return scan_image_folder(path, options);
  const std::string ext = lower(fs::path(path).extension().string());
  if (ext == ".csv") return read_manifest(path, options);
  if (ext == ".npz") return read_npz(path, options);
  fail(path + ": expected a folder of class sub-folders, a .csv manifest or a .npz file");
}

// [SECTION] Splits

nlohmann::json GroupSpec::to_json() const {
  nlohmann::json j = {{"keep_together", keep_together}};
  if (!file_name_pattern.empty()) j["file_name_pattern"] = file_name_pattern;
  if (!manifest_column.empty()) j["manifest_column"] = manifest_column;
  return j;
}

nlohmann::json GroupReport::to_json() const {
  return {{"groups", groups}, {"ungrouped_files", ungrouped_files}, {"groups_crossing_splits", groups_crossing},
          {"test_images_sharing_a_group_with_train", test_sharing_train}};
}

namespace {

// libstdc++'s std::regex parses the number of a back-reference (\12) or an interval ({2,5}) into
// a long without an overflow check (undefined behaviour on "\\2222222222222222222"; found by the
// train_config fuzzer). No file-name pattern needs more than two digits there, or four in braces.
void check_regex_numbers(const std::string& pattern) {
  const auto bad = [](const std::string& why) {
    throw Error(ErrorCode::InvalidSpec, "split.group.file_name_pattern: " + why);
  };
  bool in_braces = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      size_t digits = 0;
      while (i + 1 + digits < pattern.size() && std::isdigit(static_cast<unsigned char>(pattern[i + 1 + digits]))) ++digits;
      if (digits > 2) bad("a back-reference of more than two digits");
      i += digits > 0 ? digits : 1;  // skip the escaped character
    } else if (c == '{') {
      in_braces = true;
    } else if (c == '}') {
      in_braces = false;
    } else if (in_braces && std::isdigit(static_cast<unsigned char>(c))) {
      size_t digits = 0;
      while (i + digits < pattern.size() && std::isdigit(static_cast<unsigned char>(pattern[i + digits]))) ++digits;
      if (digits > 4) bad("a repetition count of more than four digits");
      i += digits - 1;
    }
  }
}


GroupSpec group_spec_from_json(const nlohmann::json& json) {
  if (!json.is_object()) fail("split.group: expected an object");
  GroupSpec g;
  for (const auto& [key, value] : json.items()) {
    if (key == "file_name_pattern" || key == "manifest_column") {
      if (!value.is_string() || value.get<std::string>().empty()) fail("split.group." + key + ": expected a non-empty string");
      (key == "file_name_pattern" ? g.file_name_pattern : g.manifest_column) = value.get<std::string>();
    } else if (key == "keep_together") {
      if (!value.is_boolean()) fail("split.group.keep_together: expected true or false");
      g.keep_together = value.get<bool>();
    } else {
      fail("split.group." + key + ": unknown key; expected file_name_pattern, manifest_column, keep_together");
    }
  }
  if (g.file_name_pattern.empty() == g.manifest_column.empty()) {
    fail("split.group: give exactly one of file_name_pattern and manifest_column");
  }
  if (!g.file_name_pattern.empty()) {
    check_regex_numbers(g.file_name_pattern);
    try {
      const std::regex re(g.file_name_pattern);
      if (re.mark_count() < 1) fail("split.group.file_name_pattern: needs a capture group, e.g. ^(\\d+)_ for the id");
    } catch (const std::regex_error& e) {
      fail("split.group.file_name_pattern: not a valid regular expression (" + std::string(e.what()) + ")");
    }
  }
  return g;
}

}  // namespace

nlohmann::json SplitSpec::to_json() const {
  nlohmann::json j = {{"val", val}, {"test", test}, {"val_from_train", val_from_train}, {"seed", seed}};
  if (group.enabled()) j["group"] = group.to_json();
  if (folds > 0) j["folds"] = folds, j["fold"] = fold;
  return j;
}

SplitSpec SplitSpec::from_json(const nlohmann::json& json) {
  if (!json.is_object()) throw Error(ErrorCode::InvalidArgument, "split: expected an object");
  SplitSpec spec;
  for (const auto& [key, value] : json.items()) {
    const auto number = [&, k = key, v = value]() {
      if (!v.is_number()) throw Error(ErrorCode::InvalidArgument, "split." + k + ": expected a number");
      return v.get<double>();
    };
    if (key == "val") spec.val = number();
    else if (key == "test") spec.test = number();
    else if (key == "val_from_train") spec.val_from_train = number();
    else if (key == "seed") {
      if (!value.is_number_integer() || value.get<int64_t>() < 0) {
        throw Error(ErrorCode::InvalidArgument, "split.seed: expected a non-negative integer");
      }
      spec.seed = value.get<uint64_t>();
    } else if (key == "group") {
      spec.group = group_spec_from_json(value);
    } else if (key == "folds" || key == "fold") {
      if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() > 1000) {
        fail("split." + key + ": expected an integer from 0 to 1000");
      }
      (key == "folds" ? spec.folds : spec.fold) = value.get<int>();
    } else {
      throw Error(ErrorCode::InvalidArgument, "split." + key + ": unknown key; expected val, test, val_from_train, seed, group, folds, fold");
    }
  }
  const auto in_range = [](double v) { return v >= 0.0 && v < 1.0; };
  if (!in_range(spec.val) || !in_range(spec.test) || !in_range(spec.val_from_train) || spec.val + spec.test >= 1.0) {
    throw Error(ErrorCode::InvalidArgument, "split: fractions must be in [0, 1) and leave images for training");
  }
  if (spec.folds == 1 || (spec.folds >= 2 && spec.fold >= spec.folds)) {
    fail("split: folds must be 0 (no cross-validation) or at least 2, and fold below folds (got folds " +
         std::to_string(spec.folds) + ", fold " + std::to_string(spec.fold) + ")");
  }
  return spec;
}

nlohmann::json Split::to_json(const Dataset& dataset) const {
  nlohmann::json counts = nlohmann::json::object();
  nlohmann::json files = nlohmann::json::object();
  const std::pair<const char*, const std::vector<size_t>*> parts[] = {{"train", &train}, {"val", &val}, {"test", &test}};
  for (const auto& [name, indices] : parts) {
    std::vector<int64_t> per_class(dataset.classes.size(), 0);
    nlohmann::json list = nlohmann::json::array();
    for (size_t i : *indices) {
      ++per_class[static_cast<size_t>(dataset.samples[i].label)];
      list.push_back({dataset.samples[i].path, dataset.samples[i].label});
    }
    counts[name] = per_class;
    files[name] = list;
  }
  nlohmann::json j = {{"spec", spec.to_json()}, {"from_dataset", from_dataset}, {"classes", dataset.classes},
                      {"class_counts", counts}, {"files", files}};
  if (groups) j["groups"] = groups->to_json();
  return j;
}

std::vector<std::string> sample_groups(const Dataset& dataset, const GroupSpec& spec) {
  std::vector<std::string> out(dataset.samples.size());
  if (!spec.manifest_column.empty()) {
    for (size_t i = 0; i < out.size(); ++i) out[i] = dataset.samples[i].group;
  } else if (!spec.file_name_pattern.empty()) {
    const std::regex re(spec.file_name_pattern);
    for (size_t i = 0; i < out.size(); ++i) {
      const std::string name = fs::path(dataset.samples[i].path).filename().string();
      std::smatch m;
      if (std::regex_search(name, m, re) && m.size() > 1) out[i] = m[1].str();
    }
  }
  return out;
}

namespace {

// How the groups fall on the split (for split.json and the log).
GroupReport report_groups(const std::vector<std::string>& group_of, const Split& split) {
  GroupReport r;
  std::map<std::string, int> sides;  // bit 0 train, 1 val, 2 test
  for (size_t i = 0; i < group_of.size(); ++i) {
    if (group_of[i].empty()) ++r.ungrouped_files;
  }
  const std::pair<int, const std::vector<size_t>*> parts[] = {{1, &split.train}, {2, &split.val}, {4, &split.test}};
  for (const auto& [bit, indices] : parts) {
    for (size_t i : *indices) {
      if (!group_of[i].empty()) sides[group_of[i]] |= bit;
    }
  }
  r.groups = sides.size() + r.ungrouped_files;
  for (const auto& [id, mask] : sides) r.groups_crossing += mask != 1 && mask != 2 && mask != 4;
  for (size_t i : split.test) r.test_sharing_train += !group_of[i].empty() && (sides[group_of[i]] & 1);
  return r;
}

}  // namespace

namespace {

// What a split assigns whole: groups (one patient's images; a file without a group id alone), or
// single images when groups are not kept together. Each counts for its most frequent class.
using Unit = std::vector<size_t>;
std::vector<std::vector<Unit>> units_by_class(const Dataset& dataset, const std::vector<std::string>& group_of,
                                              bool whole_groups) {
  std::map<std::string, Unit> members;
  for (size_t i = 0; i < dataset.samples.size(); ++i) {
    const bool alone = !whole_groups || group_of[i].empty();
    members[alone ? "\x01" + std::to_string(i) : group_of[i]].push_back(i);
  }
  std::vector<std::vector<Unit>> by_class(dataset.classes.size());
  for (auto& [id, indices] : members) {
    std::vector<int> counts(dataset.classes.size(), 0);
    for (size_t i : indices) ++counts[static_cast<size_t>(dataset.samples[i].label)];
    by_class[static_cast<size_t>(std::max_element(counts.begin(), counts.end()) - counts.begin())].push_back(std::move(indices));
  }
  // Sample order, not the ids' order, decides the seeded shuffle's input.
  for (auto& units : by_class) std::sort(units.begin(), units.end());
  return by_class;
}

// k-fold: per class, units in seeded order are dealt to the folds in turn; fold `spec.fold` is
// the test split, and `spec.val` of the remaining images (in seeded order) the validation split.
void split_into_folds(const Dataset& dataset, const std::vector<std::string>& group_of, const SplitSpec& spec,
                      Split& split) {
  const bool whole_groups = spec.group.enabled() && spec.group.keep_together;
  std::vector<std::vector<Unit>> by_class = units_by_class(dataset, group_of, whole_groups);
  std::mt19937_64 rng(spec.seed);
  for (size_t c = 0; c < by_class.size(); ++c) {
    auto& units = by_class[c];
    shuffle_in_place(units, rng);
    if (units.size() < static_cast<size_t>(spec.folds)) {
      fail(dataset.origin + ": class '" + dataset.classes[c] + "' has " + std::to_string(units.size()) +
           (whole_groups ? " group(s)" : " image(s)") + ", fewer than the " + std::to_string(spec.folds) + " folds");
    }
    std::vector<const Unit*> rest;
    size_t rest_images = 0;
    for (size_t j = 0; j < units.size(); ++j) {
      if (static_cast<int>(j % static_cast<size_t>(spec.folds)) == spec.fold) {
        split.test.insert(split.test.end(), units[j].begin(), units[j].end());
      } else {
        rest.push_back(&units[j]);
        rest_images += units[j].size();
      }
    }
    const size_t want_val = static_cast<size_t>(std::lround(double(rest_images) * spec.val));
    size_t in_val = 0;
    for (const Unit* unit : rest) {
      std::vector<size_t>& part = in_val < want_val ? split.val : split.train;
      if (&part == &split.val) in_val += unit->size();
      part.insert(part.end(), unit->begin(), unit->end());
    }
  }
  for (auto* part : {&split.train, &split.val, &split.test}) std::sort(part->begin(), part->end());
  if (split.train.empty()) fail(dataset.origin + ": no training images left in fold " + std::to_string(spec.fold));
}

// Whole groups per split: per class, groups are taken in seeded order into test until it holds
// its share of the class's images, then val, then train.
void split_by_groups(const Dataset& dataset, const std::vector<std::string>& group_of, double test_fraction,
                     double val_fraction, uint64_t seed, Split& split) {
  std::vector<std::vector<Unit>> units = units_by_class(dataset, group_of, true);
  std::mt19937_64 rng(seed);
  for (size_t c = 0; c < units.size(); ++c) {
    std::vector<const Unit*> groups;
    for (const Unit& u : units[c]) groups.push_back(&u);
    shuffle_in_place(groups, rng);
    size_t images = 0;
    for (const auto* g : groups) images += g->size();
    const size_t want_test = static_cast<size_t>(std::lround(double(images) * test_fraction));
    const size_t want_val = static_cast<size_t>(std::lround(double(images) * val_fraction));
    size_t in_test = 0, in_val = 0, in_train = 0;
    for (const auto* g : groups) {
      std::vector<size_t>* part = &split.train;
      if (in_test < want_test) part = &split.test, in_test += g->size();
      else if (in_val < want_val) part = &split.val, in_val += g->size();
      else in_train += g->size();
      part->insert(part->end(), g->begin(), g->end());
    }
    if ((test_fraction > 0 && in_test == 0) || (val_fraction > 0 && in_val == 0) || in_train == 0) {
      fail(dataset.origin + ": class '" + dataset.classes[c] + "' has " + std::to_string(groups.size()) + " group(s) of " +
           std::to_string(images) + " images, too few to keep groups whole in a split with val " +
           std::to_string(val_fraction) + " and test " + std::to_string(test_fraction));
    }
  }
  for (auto* part : {&split.train, &split.val, &split.test}) std::sort(part->begin(), part->end());
}

}  // namespace

Split stratified_split(const Dataset& dataset, const SplitSpec& spec) {
  Split split;
  split.spec = spec;
  if (spec.folds >= 2) {  // every image takes part, whatever split the data set came with
    const std::vector<std::string> group_of = sample_groups(dataset, spec.group);
    split_into_folds(dataset, group_of, spec, split);
    if (spec.group.enabled()) split.groups = report_groups(group_of, split);
    return split;
  }
  if (dataset.has_given_split()) {
    split.from_dataset = true;
    for (size_t i = 0; i < dataset.samples.size(); ++i) {
      switch (dataset.samples[i].given_split) {
        case SplitName::Train: split.train.push_back(i); break;
        case SplitName::Val: split.val.push_back(i); break;
        case SplitName::Test: split.test.push_back(i); break;
        case SplitName::Unassigned: break;
      }
    }
    if (split.train.empty()) fail(dataset.origin + ": its own split has no training images");
    if (spec.group.enabled()) split.groups = report_groups(sample_groups(dataset, spec.group), split);
    return split;
  }
  const double test_fraction = spec.test;
  const double val_fraction = spec.val_from_train > 0 ? (1.0 - spec.test) * spec.val_from_train : spec.val;
  const std::vector<std::string> group_of = sample_groups(dataset, spec.group);
  if (spec.group.enabled() && spec.group.keep_together) {
    split_by_groups(dataset, group_of, test_fraction, val_fraction, spec.seed, split);
    split.groups = report_groups(group_of, split);
    return split;
  }
  std::vector<std::vector<size_t>> by_class(dataset.classes.size());
  for (size_t i = 0; i < dataset.samples.size(); ++i) by_class[static_cast<size_t>(dataset.samples[i].label)].push_back(i);
  std::mt19937_64 rng(spec.seed);
  for (size_t c = 0; c < by_class.size(); ++c) {
    auto& indices = by_class[c];
    shuffle_in_place(indices, rng);
    const size_t n = indices.size();
    const size_t n_test = static_cast<size_t>(std::lround(double(n) * test_fraction));
    const size_t n_val = static_cast<size_t>(std::lround(double(n) * val_fraction));
    if ((test_fraction > 0 && n_test == 0) || (val_fraction > 0 && n_val == 0) || n_test + n_val >= n) {
      fail(dataset.origin + ": class '" + dataset.classes[c] + "' has " + std::to_string(n) +
           " images, too few for a split with val " + std::to_string(val_fraction) + " and test " +
           std::to_string(test_fraction) + " (every split needs at least one image per class)");
    }
    split.test.insert(split.test.end(), indices.begin(), indices.begin() + static_cast<std::ptrdiff_t>(n_test));
    split.val.insert(split.val.end(), indices.begin() + static_cast<std::ptrdiff_t>(n_test),
                     indices.begin() + static_cast<std::ptrdiff_t>(n_test + n_val));
    split.train.insert(split.train.end(), indices.begin() + static_cast<std::ptrdiff_t>(n_test + n_val), indices.end());
  }
  for (auto* part : {&split.train, &split.val, &split.test}) std::sort(part->begin(), part->end());
  if (spec.group.enabled()) split.groups = report_groups(group_of, split);
  return split;
}

}  // namespace loupe::data
