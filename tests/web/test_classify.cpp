// The web app's batch logic, natively: probabilities, labels from folders, the evaluation view's
// report (which must equal what `loupe eval` computes from the same predictions) and the CSV.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "classify.h"
#include "image_batch.h"

using namespace loupe_web;

namespace {

ImageEntry entry(const std::string& path, std::vector<float> probabilities, int model_id = 1) {
  ImageEntry e;
  e.path = path;
  e.name = path.substr(path.find_last_of('/') + 1);
  e.status = EntryStatus::ok;
  if (!probabilities.empty()) e.prediction = make_prediction(model_id, std::move(probabilities));
  return e;
}

const std::vector<std::string> kClasses = {"Covid-19", "No_findings", "Pneumonia"};

}  // namespace

TEST_CASE("softmax is stable and sums to one", "[web]") {
  const float logits[] = {1000.0f, 1001.0f, 999.0f};
  const std::vector<float> p = softmax(logits, 3);
  REQUIRE(p.size() == 3);
  CHECK(std::isfinite(p[0]));
  CHECK(p[0] + p[1] + p[2] == Approx(1.0f));
  CHECK(p[1] > p[0]);
  CHECK(p[0] > p[2]);
  CHECK(p[1] == Approx(std::exp(1.0) / (1.0 + std::exp(1.0) + std::exp(-1.0))));
}

TEST_CASE("make_prediction picks the largest probability", "[web]") {
  const Prediction p = make_prediction(7, {0.2f, 0.5f, 0.3f});
  CHECK(p.model_id == 7);
  CHECK(p.status == PredictionStatus::done);
  CHECK(p.top == 1);
  CHECK(p.confidence == Approx(0.5f));
}

TEST_CASE("labels come from the parent folder, matched loosely", "[web]") {
  CHECK(label_from_path("test/Covid-19/a.png", kClasses) == 0);
  CHECK(label_from_path("chest/no findings/b.png", kClasses) == 1);  // ' ' matches '_'
  CHECK(label_from_path("chest/NO-FINDINGS/b.png", kClasses) == 1);  // case, '-'
  CHECK(label_from_path("a/b/pneumonia/c.png", kClasses) == 2);     // only the parent counts
  CHECK(label_from_path("pneumonia.png", kClasses) == -1);          // no folder
  CHECK(label_from_path("other/c.png", kClasses) == -1);
  CHECK(label_from_path("Pneumonia/x/c.png", kClasses) == -1);
}

TEST_CASE("evaluation counts labelled predictions of the active model only", "[web]") {
  std::vector<ImageEntry> images = {
      entry("set/Covid-19/1.png", {0.8f, 0.1f, 0.1f}),
      entry("set/Covid-19/2.png", {0.1f, 0.1f, 0.8f}),     // wrong: pneumonia
      entry("set/No_findings/3.png", {0.1f, 0.7f, 0.2f}),
      entry("set/Pneumonia/4.png", {0.2f, 0.2f, 0.6f}),
      entry("set/unsorted/5.png", {0.2f, 0.2f, 0.6f}),     // no class folder
      entry("set/Pneumonia/6.png", {0.9f, 0.05f, 0.05f}, /*model_id=*/2),  // another model's
      entry("set/Pneumonia/7.png", {}),                    // not predicted yet
  };
  images.push_back(entry("set/Pneumonia/8.png", {}));
  images.back().status = EntryStatus::error;

  const Evaluation evaluation = evaluate(images, kClasses, 1);
  CHECK(evaluation.labelled == 4);
  CHECK(evaluation.unlabelled == 1);
  CHECK(evaluation.failed == 1);
  REQUIRE(evaluation.report);
  REQUIRE(evaluation.matrix);
  CHECK(evaluation.matrix->at(0, 0) == 1);
  CHECK(evaluation.matrix->at(0, 2) == 1);
  CHECK(evaluation.matrix->at(1, 1) == 1);
  CHECK(evaluation.matrix->at(2, 2) == 1);
  CHECK(evaluation.report->accuracy == Approx(0.75));
  // The same numbers loupe eval's code gives for this confusion matrix.
  const loupe::ClassificationReport direct = loupe::classification_report(*evaluation.matrix);
  CHECK(direct.accuracy == evaluation.report->accuracy);
  CHECK(direct.macro_avg.f1 == evaluation.report->macro_avg.f1);
  REQUIRE(evaluation.report->roc_auc);
  CHECK(evaluation.report->roc_auc->size() == 3);

  CHECK_FALSE(evaluate(images, kClasses, 3).report);  // nothing predicted by model 3
}

TEST_CASE("CSV export has one row per image with full-precision probabilities", "[web]") {
  std::vector<ImageEntry> images = {
      entry("set/Covid-19/a,b.png", {0.123456789f, 0.5f, 0.376543211f}),
      entry("set/other/c.png", {}),
      entry("d.png", {}),
  };
  images[2].status = EntryStatus::error;
  images[2].error = "not an image (\"text\")";
  const std::string csv = results_csv(images, {0, 1, 2}, kClasses, 1);
  const std::string expected_header = "path,label,predicted,confidence,p_Covid-19,p_No_findings,p_Pneumonia,status,error\n";
  REQUIRE(csv.rfind(expected_header, 0) == 0);
  CHECK(csv.find("\"set/Covid-19/a,b.png\",Covid-19,No_findings,0.5,0.123456791,0.5,0.376543224,ok,\n") !=
        std::string::npos);
  CHECK(csv.find("set/other/c.png,,,,,,,not run,\n") != std::string::npos);
  CHECK(csv.find("d.png,,,,,,,unreadable,\"not an image (\"\"text\"\")\"\n") != std::string::npos);
  // Order follows the given rows.
  const std::string reversed = results_csv(images, {2, 1, 0}, kClasses, 1);
  CHECK(reversed.find("d.png") < reversed.find("c.png"));
}

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

TEST_CASE("CSV export carries the out-of-distribution check when the model has one", "[web]") {
  std::vector<ImageEntry> images = {entry("set/Covid-19/a.png", {0.2f, 0.5f, 0.3f}), entry("b.png", {0.9f, 0.05f, 0.05f})};
  images[0].prediction.has_ood = true;
  images[0].prediction.ood_distance = 12.5f;
  images[1].prediction.has_ood = true;
  images[1].prediction.ood_distance = 250.0f;
  images[1].prediction.out_of_distribution = true;
  const std::string csv = results_csv(images, {0, 1}, kClasses, 1, /*with_ood=*/true);
  CHECK(csv.find(",p_Pneumonia,ood_distance,out_of_distribution,status,error\n") != std::string::npos);
  CHECK(csv.find(",12.5,false,ok,\n") != std::string::npos);
  CHECK(csv.find(",250,true,ok,\n") != std::string::npos);
  CHECK(results_csv(images, {0, 1}, kClasses, 1).find("ood") == std::string::npos);
  CHECK(evaluate(images, kClasses, 1).out_of_distribution == 0);  // b.png has no class folder
}
