// Data sets for training and evaluation: where the images are, their classes, and the split.
//
//   loupe::data::Dataset ds = loupe::data::load_dataset("../shared/data/all-leukemia");  // folder, .csv or .npz
//   loupe::data::Split split = loupe::data::stratified_split(ds, {.val = 0.1, .test = 0.1, .seed = 42});
//   // split.train / split.val / split.test hold sample indices; split.to_json(ds) is saved in the run folder
//
// Three layouts:
//   - an image folder with one sub-folder per class (png, jpg, jpeg, bmp, tif, tiff, dcm, dicom,
//     and DICOM files under any other name or none, recognised by their content);
//   - a CSV manifest with a header row naming `path`, `label` and optionally `split`
//     (train/val/test); relative paths are relative to the CSV's folder;
//   - a MedMNIST-style .npz (`train_images`, `train_labels`, `val_*`, `test_*`), split included.
// Files that cannot be used are never dropped silently: they are listed in `skipped` with a reason.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "loupe/image.h"

namespace loupe::data {

enum class SplitName { Unassigned, Train, Val, Test };
const char* to_string(SplitName split);

struct Sample {
  std::string path;         // file path; for .npz data "<file>.npz:<array>[<row>]"
  int label = -1;           // index into Dataset::classes
  SplitName given_split = SplitName::Unassigned;  // from a manifest's split column or the .npz arrays
  int64_t memory_index = -1;  // index into Dataset::in_memory for .npz data, else -1
  std::string group;          // a manifest's group column (LoadOptions::group_column), else empty
};

struct SkippedFile {
  std::string path;
  std::string reason;
};

struct Dataset {
  std::string origin;                 // the folder, manifest or .npz it was read from
  std::string kind;                   // "folder", "manifest" or "npz"
  std::vector<std::string> classes;   // index = label
  std::vector<Sample> samples;
  std::vector<SkippedFile> skipped;
  std::vector<Image> in_memory;       // pixels of .npz data sets

  std::vector<int64_t> class_counts() const;
  bool has_given_split() const;
  // Decodes sample i (from its file or from memory). Throws loupe::Error naming the file.
  Image load_image(size_t index, const DecodeLimits& limits = {}) const;
  // {"origin", "kind", "classes", "class_counts", "skipped": [{"path", "reason"}]}
  nlohmann::json summary_json() const;
};

struct LoadOptions {
  // Read each file's header while scanning so unreadable files are reported before training
  // starts (cheap: a few hundred bytes per file).
  bool check_headers = true;
  // Class names for .npz data (whose labels are integers); default "0", "1", ...
  std::vector<std::string> npz_class_names;
  // A manifest column whose value groups rows (a patient id): Sample::group. Must exist when set.
  std::string group_column;
};

// Detects the layout from the path (directory, .csv, .npz). Throws loupe::Error with the reason
// (missing path, no classes, a single class, an unknown label, ...).
Dataset load_dataset(const std::string& path, const LoadOptions& options = {});
Dataset scan_image_folder(const std::string& root, const LoadOptions& options = {});
Dataset read_manifest(const std::string& csv_path, const LoadOptions& options = {});
Dataset read_npz(const std::string& npz_path, const LoadOptions& options = {});

// Which images belong together (one patient's): the config's "split": {"group": {...}}.
//   "file_name_pattern": a regular expression (ECMAScript) whose first capture group, searched in
//                        the file name, is the group id ("^(\\d{8})_\\d{3}\\.png$" for NIH ChestX-ray:
//                        00001280_004.png is patient 00001280). A file it does not match is a group
//                        of its own (and counted as ungrouped).
//   "manifest_column":   a CSV manifest column holding the id.
//   "keep_together":     true (default): no group is on two sides of the split. false: an image-level
//                        split, with the groups only counted (how many cross it: the leakage it has).
struct GroupSpec {
  std::string file_name_pattern, manifest_column;
  bool keep_together = true;
  bool enabled() const { return !file_name_pattern.empty() || !manifest_column.empty(); }
  nlohmann::json to_json() const;
};

struct SplitSpec {
  double val = 0.1;              // fractions of each class
  double test = 0.1;
  double val_from_train = 0.0;   // if > 0: val is this fraction of what remains after test (seed 002's 80/20 + 20%)
  uint64_t seed = 42;
  GroupSpec group;
  // k-fold cross-validation (loupe cv): with folds >= 2, the data set is cut into `folds` parts,
  // stratified by class (and whole groups with `group`), and part `fold` (0-based) is the test
  // split; val is then `val` of what remains. `test` is not used, nor a data set's own split.
  int folds = 0;
  int fold = 0;
  nlohmann::json to_json() const;
  static SplitSpec from_json(const nlohmann::json& json);  // strict: bad keys are named
};

// The groups of a split, as split.json records them.
struct GroupReport {
  size_t groups = 0;                // distinct groups (ungrouped files each count as one)
  size_t ungrouped_files = 0;       // files the pattern did not match (or with an empty column)
  size_t groups_crossing = 0;       // groups with images on more than one side of the split
  size_t test_sharing_train = 0;    // test images whose group also has training images
  nlohmann::json to_json() const;
};

struct Split {
  std::vector<size_t> train, val, test;  // sample indices, each sorted
  SplitSpec spec;
  bool from_dataset = false;             // true when the data set's own split was used
  std::optional<GroupReport> groups;     // when spec.group is enabled
  // Everything needed to reproduce or audit the split: spec, per-class counts, and the file list.
  nlohmann::json to_json(const Dataset& dataset) const;
};

// Stratified by class, deterministic for a seed on every platform (own Fisher-Yates over
// mt19937_64, not std::shuffle whose algorithm differs between standard libraries).
// With spec.group (keep_together), whole groups are assigned: each group counts for its most
// frequent class, and groups are taken in seeded order until each split has its share of that
// class's images (so the fractions hold per class up to one group's size).
// A data set with its own split (manifest column, .npz) keeps it. Throws when a class has too
// few images (or groups) to put at least one in every non-empty split.
Split stratified_split(const Dataset& dataset, const SplitSpec& spec);

// The group id of every sample under `spec` ("" for an ungrouped file).
std::vector<std::string> sample_groups(const Dataset& dataset, const GroupSpec& spec);

}  // namespace loupe::data
