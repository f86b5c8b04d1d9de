// The batch's pure parts (web/image_batch.h): the table's filtering and sorting, and an entry as
// a row of the shared results table.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "image_batch.h"

using namespace loupe_web;

namespace {

ImageEntry entry(const std::string& path, std::vector<float> probabilities, int model_id = 1) {
  ImageEntry e;
  e.path = path;
  e.name = path.substr(path.find_last_of('/') + 1);
  e.status = EntryStatus::ok;
  if (!probabilities.empty()) {
    Prediction& p = e.prediction;
    p.model_id = model_id;
    p.status = PredictionStatus::done;
    p.probabilities = std::move(probabilities);
    p.top = static_cast<int>(std::max_element(p.probabilities.begin(), p.probabilities.end()) - p.probabilities.begin());
    p.confidence = p.probabilities[static_cast<size_t>(p.top)];
  }
  return e;
}

const std::vector<std::string> kClasses = {"Covid-19", "No_findings", "Pneumonia"};

}  // namespace

TEST_CASE("the table sorts and filters by prediction", "[web]") {
  std::vector<ImageEntry> images = {
      entry("b.png", {0.9f, 0.05f, 0.05f}),
      entry("a.png", {0.2f, 0.3f, 0.5f}),
      entry("c.png", {}),
  };
  TableView view;
  view.sort_column = Column::confidence;
  view.ascending = false;
  CHECK(visible_rows(images, view, kClasses, 1) == std::vector<int>{0, 1, 2});
  view.sort_column = Column::prediction;
  view.ascending = true;
  CHECK(visible_rows(images, view, kClasses, 1) == std::vector<int>{2, 0, 1});  // "" < Covid-19 < Pneumonia
  view.filter = "pneum";
  CHECK(visible_rows(images, view, kClasses, 1) == std::vector<int>{1});
  CHECK(visible_rows(images, view, kClasses, 2).empty());  // another model: no predictions
}

TEST_CASE("an entry as a results row: label, status and the active model's prediction", "[web]") {
  ImageEntry done = entry("set/Pneumonia/p1/a.png", {0.1f, 0.2f, 0.7f});
  loupe::ResultRow row = result_row(done, kClasses, 1);
  CHECK(row.path == "set/Pneumonia/p1/a.png");
  CHECK(row.label == 2);
  CHECK(row.status == loupe::ResultStatus::ok);
  CHECK(row.prediction.top == 2);
  CHECK(result_row(done, kClasses, 2).status == loupe::ResultStatus::not_run);  // another model's

  ImageEntry unreadable = entry("set/x.png", {});
  unreadable.status = EntryStatus::error;
  unreadable.error = "PNG file is truncated";
  row = result_row(unreadable, kClasses, 1);
  CHECK(row.status == loupe::ResultStatus::unreadable);
  CHECK(row.error == "PNG file is truncated");
  CHECK(row.label == -1);

  ImageEntry failed = entry("set/Covid-19/y.png", {});
  failed.prediction.model_id = 1;
  failed.prediction.status = PredictionStatus::error;
  failed.prediction.error = "preprocessing: too small";
  row = result_row(failed, kClasses, 1);
  CHECK(row.status == loupe::ResultStatus::failed);
  CHECK(row.error == "preprocessing: too small");
}

TEST_CASE("a DICOM entry's row: the card's intended images and the frame", "[web][dicom]") {
  const loupe::IntendedImages intended =
      loupe::IntendedImages::from_json({{"modality", {"CR", "DX"}}, {"body_part", {"CHEST"}}});
  ImageEntry mr = entry("set/scan.dcm", {0.1f, 0.2f, 0.7f});
  mr.modality = "MR";
  mr.body_part = "CHEST";
  mr.frame = 1;
  mr.frames = 4;
  loupe::ResultRow row = result_row(mr, kClasses, 1, &intended);
  CHECK(row.intended_use_warning == "Modality MR (the model was trained for CR/DX)");
  CHECK(row.frame == 1);
  CHECK(row.frames == 4);
  CHECK(row.status == loupe::ResultStatus::ok);  // still classified: warned, not refused
  CHECK(result_row(mr, kClasses, 1).intended_use_warning.empty());  // a card without intended images
  ImageEntry png = entry("set/a.png", {0.1f, 0.2f, 0.7f});  // no DICOM attributes: nothing to contradict
  CHECK(result_row(png, kClasses, 1, &intended).intended_use_warning.empty());
  CHECK(result_row(png, kClasses, 1, &intended).frames == 0);
}
