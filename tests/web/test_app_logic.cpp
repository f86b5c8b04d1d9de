// The web app's logic, natively, with a stand-in for the browser (fake_host.h): the batch
// pipeline from opened files to predictions, models, cancel/resume, per-file errors, the bounded
// work in flight, the CSV export and the test-hook state. The browser tests (tests/browser/) run
// the same code in Chromium; these cover the paths that are hard to provoke there.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "app_logic.h"
#include "fake_host.h"
#include "loupe/results.h"
#include "loupe/self_test.h"
#include "state_json.h"
#include "test_support.h"

using namespace loupe_web;
using loupe_web::test::FakeHost;
using loupe_web::test::shipped_chest_model;
using loupe_web::test::TestApp;

namespace {

std::vector<uint8_t> png(int width, int height, int channels = 1) {
  return loupe::test::encode(loupe::test::make_pattern(width, height, channels), ".png");
}

// A stand-in for the model: the class follows the input's mean (dark, middle, bright).
std::vector<float> logits_by_brightness(const std::vector<float>& input) {
  double sum = 0;
  for (const float v : input) sum += v;
  const double mean = input.empty() ? 0 : sum / static_cast<double>(input.size());
  return {static_cast<float>(-mean * 4), 0.5f, static_cast<float>(mean * 4)};
}

size_t in_flight(const TestApp& t) { return static_cast<size_t>(batch_progress(t.app).in_flight); }

// The app's run of request `request`.
const InferenceRun* app_run(const TestApp& t, int request) {
  const auto found = std::find_if(t.app.runs.begin(), t.app.runs.end(), [&](const InferenceRun& r) { return r.request == request; });
  return found == t.app.runs.end() ? nullptr : &*found;
}

// A gray PNG of one brightness: logits_by_brightness gives it class 0 (dark) or 2 (bright).
std::vector<uint8_t> flat_png(int width, int height, uint8_t value) {
  loupe::Image image;
  image.width = width;
  image.height = height;
  image.channels = 1;
  image.data.assign(static_cast<size_t>(width) * static_cast<size_t>(height), value);
  return loupe::test::encode(image, ".png");
}

}  // namespace

TEST_CASE("a labelled folder: read, decoded, classified, evaluated and exported", "[web][app]") {
  TestApp t;
  t.open_model(shipped_chest_model(), "chest-xray-mobilenet_v2.onnx");
  REQUIRE(t.app.model.status == ModelStatus::ready);
  CHECK(t.app.model.info.card.class_names == std::vector<std::string>{"Covid-19", "No_findings", "Pneumonia"});
  const char* folders[] = {"Covid-19", "No_findings", "Pneumonia", "unsorted"};
  for (int i = 0; i < 12; ++i) t.add_file(std::string("xrays/") + folders[i % 4] + "/" + std::to_string(i) + ".png", png(40 + i, 32));

  size_t most_in_flight = 0;
  for (int round = 0; round < 100 && (!t.host.reads.empty() || !t.host.runs.empty()); ++round) {
    most_in_flight = std::max(most_in_flight, in_flight(t));
    t.answer_reads();
    most_in_flight = std::max(most_in_flight, in_flight(t));
    for (const auto& run : t.host.runs) {
      const nlohmann::json dims = nlohmann::json::parse(run.dims);
      CHECK(dims[0].get<size_t>() <= kMaxBatchImages);
      CHECK(dims == nlohmann::json{dims[0], 3, 224, 224});
      CHECK(run.input.size() == dims[0].get<size_t>() * 3 * 224 * 224);
      // The outputs the shared core needs, and the CAM for the selected image only (in a run of its own).
      CHECK((run.outputs == R"(["logits","ood_distance"])" || (run.outputs == R"(["logits","ood_distance","cam"])" && dims[0] == 1)));
    }
    t.answer_runs(logits_by_brightness, 5.0f);
  }
  CHECK(most_in_flight <= kMaxWorkInFlight);
  const BatchProgress progress = batch_progress(t.app);
  CHECK(progress.total == 12);
  CHECK(progress.done == 12);
  CHECK_FALSE(progress.running);
  for (const ImageEntry& entry : t.app.images) {
    CAPTURE(entry.path);
    CHECK(entry.status == EntryStatus::ok);
    CHECK(entry.prediction.status == PredictionStatus::done);
    CHECK(entry.prediction.probabilities.size() == 3);
    CHECK(entry.prediction.has_ood);
    CHECK_FALSE(entry.prediction.out_of_distribution);  // 5 < the card's threshold
    CHECK(entry.prediction.cam.empty());                // CAMs are kept for the selected image only
  }
  CHECK(t.app.cam.entry == t.app.selected);
  CHECK(t.app.cam.planes.classes == 3);

  refresh_views(t.app);
  CHECK(t.app.views.evaluation.labelled == 9);
  CHECK(t.app.views.evaluation.unlabelled == 3);
  REQUIRE(t.app.views.evaluation.report);
  CHECK(t.app.views.rows.size() == 12);
  // The batch is done: the report carries its confidence intervals, computed once.
  REQUIRE(t.app.views.evaluation.report->intervals);
  const loupe::Interval accuracy = t.app.views.evaluation.report->intervals->accuracy;
  CHECK(accuracy.low <= t.app.views.evaluation.report->accuracy);
  CHECK(accuracy.high >= t.app.views.evaluation.report->accuracy);
  const uint64_t fingerprint = t.app.views.intervals_of;
  UiActions sort;
  sort.sort = std::make_pair(Column::confidence, false);
  apply(t.app, sort);
  refresh_views(t.app);
  CHECK(t.app.views.intervals_of == fingerprint);  // a new table order, the same predictions
  REQUIRE(t.app.views.evaluation.report->intervals);
  CHECK(t.app.views.evaluation.report->intervals->accuracy.low == accuracy.low);
  UiActions by_name;
  by_name.sort = std::make_pair(Column::name, true);
  apply(t.app, by_name);
  refresh_views(t.app);

  UiActions export_action;
  export_action.export_csv = true;
  apply(t.app, export_action);
  REQUIRE(t.host.downloads.size() == 1);
  CHECK(t.host.downloads[0].file_name == "loupe-results-" + t.app.model.info.card.name + ".csv");
  // What loupe predict writes for the same rows (one writer, loupe/results.h), in the table's order.
  std::vector<loupe::ResultRow> in_table_order;
  for (const int row : t.app.views.rows) in_table_order.push_back(t.app.views.results[static_cast<size_t>(row)]);
  CHECK(t.host.downloads[0].text == loupe::results_csv(in_table_order, t.app.model.info.card));
  CHECK(t.host.downloads[0].text.find("xrays/Covid-19/0.png,Covid-19,") != std::string::npos);
  CHECK(t.host.downloads[0].text.find("xrays/unsorted/3.png,,") != std::string::npos);

  const nlohmann::json state = state_json(t.app, true);
  CHECK(state["batch"]["done"] == 12);
  CHECK(state["evaluation"]["labelled"] == 9);
  CHECK(state["model"]["outputs"] == nlohmann::json{"logits", "ood_distance"});
  CHECK(state["model"]["temperature"].get<double>() > 0);
  CHECK(state["images"]["list"].size() == 12);
}

TEST_CASE("bad files fail alone: unreadable, undecodable, a failed run", "[web][app][bad-input]") {
  TestApp t;
  t.open_model(shipped_chest_model(), "chest.onnx");
  t.add_file("set/Covid-19/good.png", png(64, 64));
  t.add_file("set/Covid-19/gone.png", {});  // the browser cannot read it
  const std::string text = "not an image";
  t.add_file("set/Covid-19/notes.png", std::vector<uint8_t>(text.begin(), text.end()));
  t.add_file("set/Covid-19/fails.png", png(48, 48));
  t.add_file("set/Covid-19/good2.png", png(50, 50));
  t.answer_reads();
  // ORT refuses the run with fails.png: its images fail with ORT's message (as in loupe predict,
  // where a refused batch fails its rows), the others go on.
  std::vector<int> refused;
  for (auto run = t.host.runs.begin(); run != t.host.runs.end() && refused.empty(); ++run) {
    const InferenceRun* in_app = app_run(t, run->request);
    if (!in_app) continue;
    for (const int entry : in_app->entries) {
      if (t.app.images[static_cast<size_t>(entry)].name != "fails.png") continue;
      refused = in_app->entries;
      const int request = run->request;
      t.host.runs.erase(run);
      on_ort_run(t.app, request, nullptr, 0, nullptr, "Error: out of memory");
      break;
    }
  }
  REQUIRE_FALSE(refused.empty());
  t.settle(logits_by_brightness);
  const auto& images = t.app.images;
  CHECK(images[0].prediction.status == PredictionStatus::done);
  CHECK(images[1].status == EntryStatus::error);
  CHECK_THAT(images[1].error, Catch::Contains("could not read the file: NotReadableError"));
  CHECK(images[2].status == EntryStatus::error);
  CHECK_THAT(images[2].error, Catch::Contains("not"));
  for (const int index : {0, 3, 4}) {
    const Prediction& prediction = images[static_cast<size_t>(index)].prediction;
    CAPTURE(images[static_cast<size_t>(index)].name);
    if (std::find(refused.begin(), refused.end(), index) != refused.end()) {
      CHECK(prediction.status == PredictionStatus::error);
      CHECK_THAT(prediction.error, Catch::Contains("out of memory"));
    } else {
      CHECK(prediction.status == PredictionStatus::done);
    }
  }
  CHECK(images[3].prediction.status == PredictionStatus::error);
  refresh_views(t.app);
  CHECK(t.app.views.evaluation.failed == 2 + static_cast<int>(refused.size()));
  CHECK(t.app.views.evaluation.labelled == 3 - static_cast<int>(refused.size()));
  const std::string csv = export_csv(t.app);  // the chest card states intended images: one more column
  CHECK(csv.find("set/Covid-19/gone.png,Covid-19,,,,,,,,,unreadable,") != std::string::npos);
  CHECK(csv.find("set/Covid-19/fails.png,Covid-19,,,,,,,,,failed,Error: out of memory") != std::string::npos);
}

TEST_CASE("cancel stops new work, resume finishes the batch", "[web][app]") {
  TestApp t;
  t.open_model(shipped_chest_model(), "chest.onnx");
  for (int i = 0; i < 20; ++i) t.add_file("set/No_findings/" + std::to_string(100 + i) + ".png", png(32, 32));
  t.answer_reads();
  UiActions cancel;
  cancel.cancel_batch = true;
  apply(t.app, cancel);
  t.settle(logits_by_brightness);
  const BatchProgress paused = batch_progress(t.app);
  CHECK(paused.done < paused.total);  // what was in flight finished, nothing new started
  CHECK(t.host.reads.empty());
  CHECK(t.host.runs.empty());
  UiActions resume;
  resume.resume_batch = true;
  apply(t.app, resume);
  t.settle(logits_by_brightness);
  CHECK(batch_progress(t.app).done == 20);
}

TEST_CASE("models: a bad file or a weights mismatch keeps the active model; a new one re-runs the batch", "[web][app][bad-input]") {
  TestApp t;
  t.open_model(shipped_chest_model(), "chest.onnx");
  const int first_id = t.app.model.id;
  t.add_file("a/Pneumonia/1.png", png(30, 30));
  t.add_file("a/Pneumonia/2.png", png(31, 31));
  t.settle(logits_by_brightness);
  REQUIRE(batch_progress(t.app).done == 2);

  const std::string junk = "this is not an onnx file";
  t.open_model(std::vector<uint8_t>(junk.begin(), junk.end()), "junk.onnx");
  CHECK_THAT(t.app.model_error, Catch::Contains("Cannot use this model"));
  CHECK(t.app.model.id == first_id);

  const std::string wrong = "0000000000000000000000000000000000000000000000000000000000000000";
  t.open_model(shipped_chest_model(), "tampered.onnx", &wrong);
  CHECK_THAT(t.app.model_error, Catch::Contains("do not match the model card's SHA-256"));
  CHECK(t.app.model.id == first_id);
  CHECK(t.host.released.size() == 1);  // the refused session is closed

  // A run of the old model answered after the new one is up is dropped; everything runs again.
  t.add_file("a/Pneumonia/3.png", png(33, 33));
  t.answer_reads();
  REQUIRE_FALSE(t.host.runs.empty());
  t.open_model(shipped_chest_model(), "chest-again.onnx");
  CHECK(t.app.model.id != first_id);
  t.settle(logits_by_brightness);
  CHECK(batch_progress(t.app).done == 3);
  for (const auto& entry : t.app.images) CHECK(entry.prediction.model_id == t.app.model.id);
}

TEST_CASE("a model becomes active only once its self-test passes in this browser", "[web][app][self-test]") {
  using Answer = TestApp::SelfTestAnswer;
  TestApp t;
  t.open_model(shipped_chest_model(), "chest.onnx", nullptr, Answer::none);
  REQUIRE(t.app.model_load);
  CHECK(t.app.model.status == ModelStatus::none);  // not yet: the self-test is running
  const loupe::ModelCard& card = t.app.model_load->info->card;
  REQUIRE(card.self_test);  // the shipped models carry one
  // The card's synthetic images, preprocessed by the core, in one run; and the record's hash.
  REQUIRE(t.host.runs.size() == 1);
  const loupe::Tensor expected_input = loupe::self_test_input(*card.self_test, card.preprocess);
  CHECK(t.host.runs[0].input == expected_input.data);
  CHECK(t.host.runs[0].dims == nlohmann::json(expected_input.shape).dump());
  CHECK(nlohmann::json::parse(t.host.runs[0].outputs) == nlohmann::json(card.self_test->output_names()));
  REQUIRE(t.host.hashes.size() == 1);
  CHECK(t.host.hashes[0].text == loupe::self_test_digest_text(*card.self_test));
  t.answer_self_test(Answer::recorded);
  REQUIRE(t.app.model.status == ModelStatus::ready);
  CHECK(t.app.model.has_self_test);
  CHECK(t.app.model.self_test.passed);
  CHECK(t.app.model.self_test.images == 4);
  const nlohmann::json state = state_json(t.app, false);
  CHECK(state["model"]["selfTest"]["passed"] == true);
  CHECK(state["model"]["selfTest"]["maxDifference"] == 0.0);
  const int active = t.app.model.id;

  SECTION("outputs off by 0.01: refused with the figures, the active model stays") {
    t.open_model(shipped_chest_model(), "drifted.onnx", nullptr, Answer::one_logit_off);
    CHECK_THAT(t.app.model_error, Catch::Contains("drifted.onnx fails its self-test in this browser") &&
                                      Catch::Contains("'logits' differs") && Catch::Contains("0.01"));
    CHECK(t.app.model.id == active);
    CHECK_FALSE(t.app.model_load);
    CHECK(t.host.released.size() == 1);
  }
  SECTION("a record whose hash does not match: refused") {
    t.open_model(shipped_chest_model(), "edited.onnx", nullptr, Answer::wrong_hash);
    CHECK_THAT(t.app.model_error, Catch::Contains("self-test record does not match its SHA-256"));
    CHECK(t.app.model.id == active);
    CHECK(t.host.released.size() == 1);
  }
  SECTION("the run fails in ONNX Runtime: refused") {
    t.open_model(shipped_chest_model(), "broken.onnx", nullptr, Answer::none);
    on_ort_run(t.app, t.app.model_load->self_test_run, nullptr, 0, "[]", "Error: out of memory");
    CHECK_THAT(t.app.model_error, Catch::Contains("cannot run its self-test") && Catch::Contains("out of memory"));
    CHECK(t.app.model.id == active);
  }
}

TEST_CASE("derived views are recomputed when the images change, not every frame", "[web][app]") {
  TestApp t;
  t.open_model(shipped_chest_model(), "chest.onnx");
  t.add_file("x/Covid-19/1.png", png(30, 30));
  t.settle(logits_by_brightness);
  refresh_views(t.app);
  const long revision = t.app.views.revision;
  CHECK(t.app.views.evaluation.labelled == 1);
  t.app.images[0].path = "x/Pneumonia/1.png";  // a change nobody announced: the cache holds
  refresh_views(t.app);
  CHECK(t.app.views.revision == revision);
  CHECK(t.app.views.results[0].label == 0);
  ++t.app.images_revision;
  refresh_views(t.app);
  CHECK(t.app.views.results[0].label == 2);
}

// The page hands a DICOM file over as attributes + pixels (web/dicom.mjs); the shipped chest
// model's card states CR/DX, CHEST, PA/AP.
TEST_CASE("a DICOM file the model was not trained for is classified with a warning, in the state and the CSV",
          "[web][app][dicom]") {
  TestApp t;
  t.open_model(shipped_chest_model(), "chest-xray-mobilenet_v2.onnx");
  REQUIRE(t.app.model.info.card.intended_images);
  t.add_file("scans/mr.dcm", {1});
  t.add_file("scans/dx.dcm", {1});
  const loupe::Image picture = loupe::test::make_pattern(32, 32, 1);
  const auto answer = [&](const std::string& modality, int frames) {
    REQUIRE_FALSE(t.host.reads.empty());
    const auto read = t.host.reads.front();
    t.host.reads.erase(t.host.reads.begin());
    const nlohmann::json attributes = {{"rows", 32}, {"columns", 32}, {"bits_allocated", 8},
                                       {"photometric", "MONOCHROME2"}, {"transfer_syntax", "1.2.840.10008.1.2.1"},
                                       {"modality", modality}, {"body_part", "CHEST"}, {"frames", frames}};
    on_image_file_read(t.app, read.request, picture.data.data(), picture.data.size(), attributes.dump().c_str(), nullptr);
  };
  answer("MR", 1);
  answer("DX", 3);
  t.settle(logits_by_brightness);
  refresh_views(t.app);
  const nlohmann::json list = state_json(t.app, true)["images"]["list"];
  REQUIRE(list.size() == 2);
  CHECK(list[0]["intendedUseWarning"] == "Modality MR (the model was trained for CR/DX)");
  CHECK(list[0]["prediction"]["status"] == "done");  // warned, still classified
  CHECK(list[1]["intendedUseWarning"] == "");
  CHECK(list[1]["frame"] == nlohmann::json({{"index", 0}, {"count", 3}}));
  const std::string csv = export_csv(t.app);
  CHECK_THAT(csv, Catch::Contains(",intended_use_warning,frame,status,error\n"));
  CHECK_THAT(csv, Catch::Contains(",Modality MR (the model was trained for CR/DX),,ok,"));
  CHECK_THAT(csv, Catch::Contains(",,1 of 3,ok,"));
}

TEST_CASE("a folder runs in batches: several images per ORT run, each answer to its own image", "[web][app][batch]") {
  TestApp t;
  t.open_model(shipped_chest_model(), "chest.onnx");
  constexpr int kImages = 21;
  for (int i = 0; i < kImages; ++i) t.add_file("set/" + std::to_string(100 + i) + ".png", flat_png(64, 64, i % 2 ? 250 : 5));
  size_t largest_run = 0, most_in_flight = 0;
  for (int round = 0; round < 100 && (!t.host.reads.empty() || !t.host.runs.empty()); ++round) {
    t.answer_reads();
    most_in_flight = std::max(most_in_flight, in_flight(t));
    for (const auto& run : t.host.runs) largest_run = std::max(largest_run, nlohmann::json::parse(run.dims)[0].get<size_t>());
    t.answer_runs(logits_by_brightness);
  }
  CHECK(largest_run == kMaxBatchImages);
  CHECK(most_in_flight <= kMaxWorkInFlight);
  CHECK(t.app.profile.runs < kImages);  // fewer round trips to ORT than images
  CHECK(t.app.profile.images_run >= kImages);
  // Row m of a run's outputs went to the run's m-th image: dark images are class 0, bright ones 2.
  for (int i = 0; i < kImages; ++i) {
    const ImageEntry& entry = t.app.images[static_cast<size_t>(i)];
    CAPTURE(entry.path);
    REQUIRE(entry.prediction.status == PredictionStatus::done);
    CHECK(entry.prediction.top == (i % 2 ? 2 : 0));
  }
  CHECK(batch_progress(t.app).done == kImages);
  CHECK(t.app.staged.entries.empty());
  CHECK(t.app.staged.inputs.empty());
}

TEST_CASE("while ORT runs a batch, the next one is read and decoded (bounded)", "[web][app][batch]") {
  TestApp t;
  t.open_model(shipped_chest_model(), "chest.onnx");
  for (int i = 0; i < 40; ++i) t.add_file("set/" + std::to_string(100 + i) + ".png", png(48, 48));
  // ORT answers nothing yet: the page reads and decodes ahead until kMaxWorkInFlight images wait.
  for (int round = 0; round < 10 && !t.host.reads.empty(); ++round) t.answer_reads();
  CHECK(t.host.reads.empty());
  CHECK(in_flight(t) == kMaxWorkInFlight);
  size_t full_batches = 0;
  for (const auto& run : t.host.runs) full_batches += nlohmann::json::parse(run.dims)[0] == kMaxBatchImages;
  CHECK(full_batches >= 1);
  // One batch answered: as many images are read again, the rest are still ORT's.
  const size_t before = t.host.runs.size();
  std::vector<FakeHost::Run> rest(t.host.runs.begin() + 1, t.host.runs.end());
  t.host.runs.resize(1);
  t.answer_runs(logits_by_brightness);
  CHECK_FALSE(t.host.reads.empty());
  CHECK(in_flight(t) == kMaxWorkInFlight);
  t.host.runs.insert(t.host.runs.begin(), rest.begin(), rest.end());
  CHECK(t.host.runs.size() >= before - 1);
  t.settle(logits_by_brightness);
  CHECK(batch_progress(t.app).done == 40);
}

TEST_CASE("a run answered with the wrong number of rows fails its images with a message", "[web][app][batch][bad-input]") {
  TestApp t;
  t.open_model(shipped_chest_model(), "chest.onnx");
  for (int i = 0; i < 6; ++i) t.add_file("set/" + std::to_string(i) + ".png", png(40, 40));
  t.answer_reads();
  const auto batched = std::find_if(t.host.runs.begin(), t.host.runs.end(),
                                    [](const FakeHost::Run& run) { return nlohmann::json::parse(run.dims)[0] > 1; });
  REQUIRE(batched != t.host.runs.end());
  const std::vector<int> entries = app_run(t, batched->request)->entries;
  const int request = batched->request;
  t.host.runs.erase(batched);
  // One row of logits and distances for a batch of several images.
  const std::vector<float> data = {0.1f, 0.2f, 0.3f, 1.0f};
  const std::string layout = R"([{"name":"logits","dims":[1,3],"offset":0},{"name":"ood_distance","dims":[1],"offset":3}])";
  on_ort_run(t.app, request, data.data(), data.size(), layout.c_str(), nullptr);
  for (const int index : entries) {
    const Prediction& prediction = t.app.images[static_cast<size_t>(index)].prediction;
    CHECK(prediction.status == PredictionStatus::error);
    CHECK_THAT(prediction.error, Catch::Contains("answered a run of " + std::to_string(entries.size()) + " images with logits of shape [1,3]"));
  }
  t.settle(logits_by_brightness);
  CHECK_FALSE(batch_progress(t.app).running);
}

TEST_CASE("cancel drops the staged inputs; resume reads those images again", "[web][app][batch]") {
  TestApp t;
  t.open_model(shipped_chest_model(), "chest.onnx");
  for (int i = 0; i < 30; ++i) t.add_file("set/" + std::to_string(100 + i) + ".png", png(36, 36));
  // The selected image (its own run) and three more files arrive while others are still being
  // read: the three wait, staged, for a full batch.
  std::vector<FakeHost::Read> pending;
  pending.swap(t.host.reads);
  REQUIRE(pending.size() > 4);
  for (size_t i = 0; i < 4; ++i) {
    const std::vector<uint8_t>& bytes = t.files[static_cast<size_t>(pending[i].file_index)];
    on_image_file_read(t.app, pending[i].request, bytes.data(), bytes.size(), "", nullptr);
  }
  t.host.reads.assign(pending.begin() + 4, pending.end());
  REQUIRE(t.app.staged.entries.size() == 3);
  const std::vector<int> staged = t.app.staged.entries;
  UiActions cancel;
  cancel.cancel_batch = true;
  apply(t.app, cancel);
  CHECK(t.app.staged.entries.empty());
  for (const int index : staged) CHECK(t.app.images[static_cast<size_t>(index)].prediction.status == PredictionStatus::none);
  t.settle(logits_by_brightness);
  for (const int index : staged) CHECK(t.app.images[static_cast<size_t>(index)].prediction.status == PredictionStatus::none);
  CHECK(batch_progress(t.app).done < 30);
  UiActions resume;
  resume.resume_batch = true;
  apply(t.app, resume);
  t.settle(logits_by_brightness);
  CHECK(batch_progress(t.app).done == 30);
}

// Issue 15, part 3: a cell of the evaluation's confusion matrix lists exactly the images it counts.
TEST_CASE("a confusion-matrix cell filters the table to its images, and back", "[web][app][evaluation]") {
  TestApp t;
  t.open_model(shipped_chest_model(), "chest.onnx");
  // Dark images are predicted class 0 (Covid-19), bright ones class 2 (Pneumonia).
  t.add_file("set/Covid-19/right.png", flat_png(40, 40, 5));
  t.add_file("set/Covid-19/wrong-1.png", flat_png(40, 40, 250));
  t.add_file("set/Covid-19/wrong-2.png", flat_png(41, 40, 250));
  t.add_file("set/Pneumonia/right.png", flat_png(40, 40, 250));
  t.add_file("set/No_findings/wrong.png", flat_png(40, 40, 5));
  t.add_file("unsorted/unlabelled.png", flat_png(40, 40, 250));
  t.settle(logits_by_brightness);
  refresh_views(t.app);
  REQUIRE(t.app.views.evaluation.matrix);
  const loupe::ConfusionMatrix& matrix = *t.app.views.evaluation.matrix;
  CHECK(matrix.at(0, 2) == 2);
  CHECK(matrix.at(1, 0) == 1);
  CHECK(t.app.views.rows.size() == 6);

  t.app.show_evaluation = true;
  UiActions click;
  click.matrix_cell = std::optional<loupe::MatrixCell>(loupe::MatrixCell{0, 2});
  apply(t.app, click);
  CHECK_FALSE(t.app.show_evaluation);  // out of the table's way
  refresh_views(t.app);
  CHECK(t.app.views.rows == std::vector<int>{1, 2});  // as many rows as the cell counts, and those
  CHECK((t.app.selected == 1 || t.app.selected == 2));  // one of them in the viewer
  const nlohmann::json state = state_json(t.app, true);
  CHECK(state["images"]["table"]["cell"] == nlohmann::json({{"trueClass", 0}, {"predictedClass", 2}}));
  CHECK(state["images"]["rows"] == nlohmann::json({1, 2}));
  // The filter narrows the cell further; the CSV keeps every image.
  UiActions filter;
  filter.filter = "wrong-2";
  apply(t.app, filter);
  refresh_views(t.app);
  CHECK(t.app.views.rows == std::vector<int>{2});
  const std::string csv = export_csv(t.app);
  CHECK(std::count(csv.begin(), csv.end(), '\n') == 7);  // header + 6
  filter.filter = "";
  apply(t.app, filter);

  UiActions show_all;
  show_all.matrix_cell = std::optional<loupe::MatrixCell>();
  apply(t.app, show_all);
  refresh_views(t.app);
  CHECK(t.app.views.rows.size() == 6);
  CHECK(state_json(t.app, true)["images"]["table"]["cell"].is_null());

  // A cell of the true class No_findings predicted Covid-19: the one image, whatever its file order.
  click.matrix_cell = std::optional<loupe::MatrixCell>(loupe::MatrixCell{1, 0});
  apply(t.app, click);
  refresh_views(t.app);
  CHECK(t.app.views.rows == std::vector<int>{4});
  CHECK(t.app.selected == 4);
}

// Issue 15, part 5: a multi-frame DICOM file is classified at its first frame; another frame is
// read and classified again, and never while the file is in flight.
TEST_CASE("another frame of a multi-frame DICOM file is read and classified again", "[web][app][dicom]") {
  TestApp t;
  t.open_model(shipped_chest_model(), "chest.onnx");
  t.add_file("scans/cine.dcm", {1});
  const loupe::Image picture = loupe::test::make_pattern(32, 32, 1);
  const auto answer = [&](int expected_frame) {
    REQUIRE(t.host.reads.size() == 1);
    const FakeHost::Read read = t.host.reads.front();
    t.host.reads.clear();
    CHECK(read.frame == expected_frame);
    const nlohmann::json attributes = {{"rows", 32}, {"columns", 32}, {"bits_allocated", 8},
                                       {"photometric", "MONOCHROME2"}, {"transfer_syntax", "1.2.840.10008.1.2.1"},
                                       {"modality", "DX"}, {"frames", 3}, {"frame", read.frame}};
    on_image_file_read(t.app, read.request, picture.data.data(), picture.data.size(), attributes.dump().c_str(), nullptr);
  };
  answer(0);
  t.settle(logits_by_brightness);
  const ImageEntry& entry = t.app.images[0];
  REQUIRE(t.app.selected == 0);
  CHECK(entry.frame == 0);
  CHECK(entry.frames == 3);
  CHECK(entry.prediction.status == PredictionStatus::done);
  CHECK(can_choose_frame(t.app));

  UiActions next;
  next.frame = 2;
  apply(t.app, next);
  CHECK(entry.prediction.status == PredictionStatus::none);
  CHECK_FALSE(can_choose_frame(t.app));  // being read: another choice now would race that answer
  UiActions meanwhile;
  meanwhile.frame = 1;
  apply(t.app, meanwhile);
  CHECK(entry.frame == 2);
  answer(2);
  t.settle(logits_by_brightness);
  CHECK(entry.frame == 2);
  CHECK(entry.prediction.status == PredictionStatus::done);
  refresh_views(t.app);
  CHECK(state_json(t.app, true)["images"]["list"][0]["frame"] == nlohmann::json({{"index", 2}, {"count", 3}}));
  CHECK_THAT(export_csv(t.app), Catch::Contains(",3 of 3,ok,"));
  // Out of range or the same frame: nothing to do.
  for (const int frame : {-1, 3, 2}) {
    UiActions bad;
    bad.frame = frame;
    apply(t.app, bad);
    CHECK(t.host.reads.empty());
    CHECK(entry.prediction.status == PredictionStatus::done);
  }
}
