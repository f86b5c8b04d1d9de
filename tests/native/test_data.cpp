// Data sets, splits, balancing and augmentation (native/data).
#include "catch_torch.h"  // first: keeps Catch's CHECK (see the header)


#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "loupe/data/augment.h"
#include "loupe/data/balance.h"
#include "../core/dicom_fixtures.h"
#include "loupe/data/dataset.h"
#include "fixtures.h"
#include "format_fixtures.h"

namespace fs = std::filesystem;
using namespace loupe;
using namespace loupe::data;
using Catch::Matchers::Contains;
using loupe::test::write_npz;

TEST_CASE("image folder: classes, counts, and every unusable file listed with a reason", "[data]") {
  const test::TempDir dir;
  test::write_shapes_dataset(dir.path, {"alpha", "beta", "gamma"}, 6, 32);
  std::ofstream(dir.path / "beta" / "notes.txt") << "not an image";
  std::ofstream(dir.path / "beta" / "empty.png");
  std::ofstream(dir.path / "gamma" / "broken.jpg") << "\xFF\xD8\xFF garbage";
  std::ofstream(dir.path / "README.md") << "top-level file";
  const Dataset ds = scan_image_folder(dir.path.string());
  CHECK(ds.classes == std::vector<std::string>{"alpha", "beta", "gamma"});
  CHECK(ds.class_counts() == std::vector<int64_t>{6, 6, 6});
  REQUIRE(ds.skipped.size() == 4);
  std::set<std::string> reasons;
  for (const auto& s : ds.skipped) reasons.insert(fs::path(s.path).filename().string() + ": " + s.reason);
  CHECK_THAT(*reasons.begin(), Contains("README.md"));
  CHECK(std::any_of(reasons.begin(), reasons.end(), [](const std::string& r) { return r.find("empty.png: ") == 0 && r.find("empty") != std::string::npos; }));
  CHECK(std::any_of(reasons.begin(), reasons.end(), [](const std::string& r) { return r.find("notes.txt: not an image") == 0; }));
  CHECK(ds.summary_json()["skipped"].size() == 4);
  CHECK(ds.load_image(0).width == 32);
}

TEST_CASE("bad data sets give clear errors", "[data][bad-input]") {
  const test::TempDir dir;
  CHECK_THAT(test::error_of([&] { load_dataset((dir.path / "missing").string()); }), Contains("no such file or folder"));
  fs::create_directories(dir.path / "empty");
  CHECK_THAT(test::error_of([&] { load_dataset((dir.path / "empty").string()); }), Contains("no class sub-folders"));
  test::write_shapes_dataset(dir.path / "one", {"only"}, 4, 16);
  CHECK_THAT(test::error_of([&] { load_dataset((dir.path / "one").string()); }), Contains("only one class"));
  test::write_shapes_dataset(dir.path / "hollow", {"a", "b"}, 4, 16);
  for (const auto& f : fs::directory_iterator(dir.path / "hollow" / "b")) std::ofstream(f.path()) << "x";
  CHECK_THAT(test::error_of([&] { load_dataset((dir.path / "hollow").string()); }), Contains("class 'b' has no usable images"));
  std::ofstream(dir.path / "data.bin") << "x";
  CHECK_THAT(test::error_of([&] { load_dataset((dir.path / "data.bin").string()); }), Contains("expected a folder"));
}

TEST_CASE("image folder: DICOM by extension or by content, bad DICOM skipped with the reason", "[data][dicom]") {
  const test::TempDir dir;
  const fs::path made = dir.path / "made";
  fs::create_directories(made);
  test::write_dicom_fixtures(made.string());  // written with DCMTK from ../shared/data images
  const fs::path root = dir.path / "data";
  fs::create_directories(root / "mri");
  fs::create_directories(root / "xray");
  const std::pair<const char*, fs::path> layout[] = {
      {"chest_dx_16bit_mono2.dcm", root / "xray" / "a.dcm"},
      {"chest_big_endian_no_extension", root / "xray" / "IM000001"},      // no extension
      {"chest_rle.dcm", root / "xray" / "1.2.826.0.1.3680043.2.1125.7"},  // named by its UID
      {"chest_jpeg_lossless.dcm", root / "xray" / "b.DCM"},
      {"brain_mr_8bit_mono1.dcm", root / "mri" / "a.dcm"},
      {"brain_rle_8bit_mono1.dcm", root / "mri" / "b.dicom"},
      {"mr_multiframe.dcm", root / "mri" / "multiframe.dcm"},
      {"report_no_pixel_data.dcm", root / "mri" / "report.dcm"},
      {"chest_j2k_lossless.dcm", root / "xray" / "IM_J2K"},  // JPEG 2000, no extension
  };
  for (const auto& [from, to] : layout) fs::copy_file(made / from, to);
  std::ofstream(root / "mri" / "notes") << "no extension and not DICOM";

  const Dataset ds = scan_image_folder(root.string());
  CHECK(ds.classes == std::vector<std::string>{"mri", "xray"});
  CHECK(ds.class_counts() == std::vector<int64_t>{2, 5});
  std::set<std::string> reasons;
  for (const auto& s : ds.skipped) reasons.insert(fs::path(s.path).filename().string() + ": " + s.reason);
  CAPTURE(reasons);
  REQUIRE(ds.skipped.size() == 3);
  const auto has = [&](const std::string& prefix, const std::string& text) {
    return std::any_of(reasons.begin(), reasons.end(), [&](const std::string& r) {
      return r.rfind(prefix, 0) == 0 && r.find(text) != std::string::npos;
    });
  };
  CHECK(has("multiframe.dcm: ", "multi-frame DICOM (3 frames): a training image must be a single frame"));
  CHECK(has("report.dcm: ", "no pixel data"));
  CHECK(has("notes: ", "not an image file extension"));
  for (size_t i = 0; i < ds.samples.size(); ++i) {
    CAPTURE(ds.samples[i].path);
    const Image image = ds.load_image(i);
    CHECK(image.channels == 1);
    CHECK(image.depth == (ds.samples[i].label == 1 ? PixelDepth::U16 : PixelDepth::U8));
  }
}

TEST_CASE("CSV manifest with relative paths and a split column", "[data]") {
  const test::TempDir dir;
  test::write_shapes_dataset(dir.path / "images", {"neg", "pos"}, 3, 24);
  std::ofstream csv(dir.path / "manifest.csv");
  csv << "label,path,split\n";
  int i = 0;
  for (const char* cls : {"neg", "pos"}) {
    for (const auto& f : fs::directory_iterator(dir.path / "images" / cls)) {
      csv << cls << ",\"images/" << cls << "/" << f.path().filename().string() << "\"," << (i++ % 3 == 0 ? "test" : i % 3 == 1 ? "val" : "train") << "\n";
    }
  }
  csv.close();
  const Dataset ds = read_manifest((dir.path / "manifest.csv").string());
  CHECK(ds.classes == std::vector<std::string>{"neg", "pos"});
  CHECK(ds.samples.size() == 6);
  CHECK(ds.has_given_split());
  const Split split = stratified_split(ds, {});
  CHECK(split.from_dataset);
  CHECK(split.train.size() + split.val.size() + split.test.size() == 6);

  std::ofstream(dir.path / "bad.csv") << "file,label\nx.png,a\n";
  CHECK_THAT(test::error_of([&] { read_manifest((dir.path / "bad.csv").string()); }), Contains("'path' and 'label'"));
  std::ofstream(dir.path / "bad_split.csv") << "path,label,split\nimages/neg/a.png,neg,holdout\n";
  CHECK_THAT(test::error_of([&] { read_manifest((dir.path / "bad_split.csv").string()); }), Contains("bad_split.csv:2") && Contains("holdout"));
}

TEST_CASE("MedMNIST-style .npz keeps its own split", "[data]") {
  const test::TempDir dir;
  LoadOptions options;
  options.npz_class_names = {"normal", "pneumonia"};
  const Dataset ds = read_npz(write_npz(dir.path / "tiny.npz"), options);
  CHECK(ds.classes == std::vector<std::string>{"normal", "pneumonia"});
  CHECK(ds.samples.size() == 20);
  const Split split = stratified_split(ds, {});
  CHECK(split.train.size() == 10);
  CHECK(split.val.size() == 4);
  CHECK(split.test.size() == 6);
  const Image img = ds.load_image(split.train[1]);
  CHECK(img.width == 12);
  CHECK(img.channels == 1);
  CHECK(img.data[0] == 200);
  options.npz_class_names = {"only"};
  CHECK_THAT(test::error_of([&] { read_npz((dir.path / "tiny.npz").string(), options); }), Contains("class names"));
}

TEST_CASE("stratified split: exact per-class counts, disjoint, seeded", "[data][split]") {
  Dataset ds;
  ds.origin = "synthetic";
  ds.classes = {"a", "b"};
  for (int i = 0; i < 100; ++i) ds.samples.push_back({"a" + std::to_string(i), 0, SplitName::Unassigned, -1, {}});
  for (int i = 0; i < 30; ++i) ds.samples.push_back({"b" + std::to_string(i), 1, SplitName::Unassigned, -1, {}});
  SplitSpec spec;
  spec.val = 0.1;
  spec.test = 0.1;
  const Split s = stratified_split(ds, spec);
  const auto count = [&](const std::vector<size_t>& part, int label) {
    return std::count_if(part.begin(), part.end(), [&](size_t i) { return ds.samples[i].label == label; });
  };
  CHECK(count(s.test, 0) == 10);
  CHECK(count(s.test, 1) == 3);
  CHECK(count(s.val, 1) == 3);
  CHECK(count(s.train, 0) == 80);
  std::set<size_t> all(s.train.begin(), s.train.end());
  all.insert(s.val.begin(), s.val.end());
  all.insert(s.test.begin(), s.test.end());
  CHECK(all.size() == 130);
  CHECK(stratified_split(ds, spec).test == s.test);  // same seed, same split
  spec.seed = 7;
  CHECK(stratified_split(ds, spec).test != s.test);

  SplitSpec paper;  // seed 002: 80/20, then 20% of the training part for validation
  paper.test = 0.2;
  paper.val_from_train = 0.2;
  const Split p = stratified_split(ds, paper);
  CHECK(count(p.test, 0) == 20);
  CHECK(count(p.val, 0) == 16);
  CHECK(count(p.train, 0) == 64);
  CHECK(p.to_json(ds)["class_counts"]["val"] == nlohmann::json({16, 5}));

  Dataset tiny = ds;
  tiny.samples.resize(102);  // class b has 2 images: cannot fill train, val and test
  CHECK_THAT(test::error_of([&] { stratified_split(tiny, spec); }), Contains("class 'b' has 2 images, too few"));
  CHECK_THAT(test::error_of([&] { SplitSpec::from_json({{"tset", 0.2}}); }), Contains("split.tset"));
}

TEST_CASE("balancing the training split", "[data][balance]") {
  Dataset ds;
  ds.classes = {"common", "rare"};
  std::vector<size_t> train;
  for (int i = 0; i < 12; ++i) {
    ds.samples.push_back({std::to_string(i), i < 9 ? 0 : 1, SplitName::Unassigned, -1, {}});
    train.push_back(static_cast<size_t>(i));
  }
  const auto under = balance_training(ds, train, Balancing::Undersample, 1);
  CHECK(under.counts_before == std::vector<int64_t>{9, 3});
  CHECK(under.counts_after == std::vector<int64_t>{3, 3});
  const auto over = balance_training(ds, train, Balancing::Oversample, 1);
  CHECK(over.counts_after == std::vector<int64_t>{9, 9});
  const auto weighted = balance_training(ds, train, Balancing::ClassWeights, 1);
  CHECK(weighted.indices == train);
  CHECK(weighted.class_weights[0] == Approx(12.0 / (2 * 9)));
  CHECK(weighted.class_weights[1] == Approx(12.0 / (2 * 3)));
  CHECK(balance_training(ds, train, Balancing::Undersample, 1).indices ==
        balance_training(ds, train, Balancing::Undersample, 1).indices);
  CHECK_THAT(test::error_of([] { parse_balancing("smote"); }), Contains("'smote'"));
}

TEST_CASE("augmentation is seeded and does what it says", "[data][augment]") {
  const Image img = test::shape_image(40, 30, 3, true, 5);
  AugmentSpec flip;
  flip.horizontal_flip = 1.0;
  std::mt19937_64 rng(1);
  const Image flipped = augment(img, flip, rng);
  REQUIRE(flipped.width == 40);
  for (int x = 0; x < 40; ++x) CHECK(flipped.data[x * 3] == img.data[(39 - x) * 3]);

  AugmentSpec heavy;
  heavy.rotation_degrees = 30;
  heavy.shift_fraction = 0.1;
  heavy.crop_area_min = 0.5;
  heavy.brightness = 0.2;
  heavy.contrast = 0.2;
  std::mt19937_64 a(42), b(42), c(43);
  const Image first = augment(img, heavy, a);
  CHECK(augment(img, heavy, b).data == first.data);
  CHECK(augment(img, heavy, c).data != first.data);
  CHECK(first.width == img.width);
  CHECK(first.height == img.height);
  CHECK_THAT(test::error_of([] { AugmentSpec::from_json({{"rotation", 10}}); }), Contains("augment.rotation"));
  CHECK_THAT(test::error_of([] { AugmentSpec::from_json({{"horizontal_flip", 2}}); }), Contains("outside"));
}

// NIH ChestX-ray names a patient's images 00001280_000.png, 00001280_001.png, ...
TEST_CASE("group-aware split: no patient on two sides, the leakage of an image-level split counted", "[data][split]") {
  Dataset ds;
  ds.origin = "synthetic";
  ds.classes = {"normal", "pneumonia", "covid"};
  uint32_t state = 5;
  const auto next = [&] { return (state = state * 1664525u + 1013904223u) >> 8; };
  for (int patient = 0; patient < 120; ++patient) {
    const int label = patient % 2;  // normal or pneumonia
    const int images = 1 + static_cast<int>(next() % 5);
    char name[32];
    for (int k = 0; k < images; ++k) {
      std::snprintf(name, sizeof name, "%08d_%03d.png", patient, k);
      ds.samples.push_back({std::string(label ? "pneumonia/" : "normal/") + name, label, SplitName::Unassigned, -1, {}});
    }
  }
  for (int i = 0; i < 40; ++i) ds.samples.push_back({"covid/case-" + std::to_string(i) + ".jpeg", 2, SplitName::Unassigned, -1, {}});
  const SplitSpec spec = SplitSpec::from_json(
      {{"val", 0.15}, {"test", 0.15}, {"seed", 3}, {"group", {{"file_name_pattern", "^(\\d{8})_\\d{3}\\.png$"}}}});
  const Split s = stratified_split(ds, spec);
  REQUIRE(s.groups);
  CHECK(s.groups->groups == 120 + 40);  // every unmatched COVID file is a group of its own
  CHECK(s.groups->ungrouped_files == 40);
  CHECK(s.groups->groups_crossing == 0);
  CHECK(s.groups->test_sharing_train == 0);
  const std::vector<std::string> group_of = sample_groups(ds, spec.group);
  std::map<std::string, std::set<int>> sides;
  const std::pair<int, const std::vector<size_t>*> parts[] = {{0, &s.train}, {1, &s.val}, {2, &s.test}};
  for (const auto& [side, indices] : parts) {
    for (size_t i : *indices) if (!group_of[i].empty()) sides[group_of[i]].insert(side);
  }
  for (const auto& [id, where] : sides) CHECK(where.size() == 1);
  // About 15% of each class's images in test, up to one patient's images.
  for (int label = 0; label < 3; ++label) {
    const auto in = [&](const std::vector<size_t>& part) {
      return std::count_if(part.begin(), part.end(), [&](size_t i) { return ds.samples[i].label == label; });
    };
    const double total = double(in(s.train) + in(s.val) + in(s.test));
    CHECK(double(in(s.test)) / total == Approx(0.15).margin(0.05));
    CHECK(in(s.val) > 0);
  }
  const nlohmann::json recorded = s.to_json(ds);
  CHECK(recorded["groups"]["groups_crossing_splits"] == 0);
  CHECK(recorded["spec"]["group"]["file_name_pattern"] == "^(\\d{8})_\\d{3}\\.png$");
  CHECK(SplitSpec::from_json(recorded["spec"]).group.file_name_pattern == spec.group.file_name_pattern);

  // The same data split image by image: the groups are only counted, and they leak.
  nlohmann::json leaky = spec.to_json();
  leaky["group"]["keep_together"] = false;
  const Split image_level = stratified_split(ds, SplitSpec::from_json(leaky));
  REQUIRE(image_level.groups);
  CHECK(image_level.groups->groups_crossing > 10);
  CHECK(image_level.groups->test_sharing_train > 10);

  // Bad group specs name the key.
  const auto error = [](const nlohmann::json& group) {
    return test::error_of([&] { SplitSpec::from_json({{"group", group}}); });
  };
  CHECK_THAT(error({{"file_name_pattern", "^\\d+_"}}), Contains("needs a capture group"));
  CHECK_THAT(error({{"file_name_pattern", "(["}}), Contains("not a valid regular expression"));
  // Numbers std::regex would overflow on (the train_config fuzzer; regressions/train_config/).
  CHECK_THAT(error({{"file_name_pattern", "^(\\2222222222222222222)"}}), Contains("back-reference of more than two digits"));
  CHECK_THAT(error({{"file_name_pattern", "^(a{99999999999})"}}), Contains("repetition count"));
  CHECK(SplitSpec::from_json({{"group", {{"file_name_pattern", "^(\\d{8})_\\d{3}\\.png$"}}}}).group.enabled());
  CHECK(SplitSpec::from_json({{"group", {{"file_name_pattern", "^(a)\\1_(\\w{2,1000})"}}}}).group.enabled());
  CHECK_THAT(error({{"file_name_pattern", "(x)"}, {"manifest_column", "patient"}}), Contains("exactly one of"));
  CHECK_THAT(error({{"patient", "x"}}), Contains("split.group.patient: unknown key"));
}

TEST_CASE("group-aware split from a manifest column", "[data][split]") {
  const test::TempDir dir;
  std::ofstream csv(dir.path / "manifest.csv");
  csv << "path,label,patient_id\n";
  for (int patient = 0; patient < 30; ++patient) {
    for (int k = 0; k < 3; ++k) csv << "img-" << patient << "-" << k << ".png," << (patient % 2 ? "b" : "a") << ",P" << patient << "\n";
  }
  csv.close();
  LoadOptions options;
  options.check_headers = false;
  options.group_column = "patient_id";
  const Dataset ds = read_manifest((dir.path / "manifest.csv").string(), options);
  CHECK(ds.samples.front().group == "P0");
  SplitSpec spec;
  spec.val = 0.2;
  spec.test = 0.2;
  spec.group.manifest_column = "patient_id";
  const Split s = stratified_split(ds, spec);
  REQUIRE(s.groups);
  CHECK(s.groups->groups == 30);
  CHECK(s.groups->groups_crossing == 0);
  options.group_column = "subject";
  CHECK_THAT(test::error_of([&] { read_manifest((dir.path / "manifest.csv").string(), options); }), Contains("no 'subject' column"));
}
