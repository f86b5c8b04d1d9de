// Folder labels, the results table and the evaluation (loupe/results.h): what `loupe predict`
// and the page write for a folder, natively and as wasm.
#include <catch2/catch.hpp>
#include <algorithm>
#include <string>
#include <vector>

#include "loupe/results.h"

using namespace loupe;

namespace {

const std::vector<std::string> kClasses = {"Covid-19", "No_findings", "Pneumonia"};

ModelCard three_class_card(bool with_ood) {
  ModelCard card;
  card.class_names = kClasses;
  card.outputs = {{"logits", {"batch", 3}, ""}};
  if (with_ood) {
    card.outputs.push_back({"ood_distance", {"batch"}, ""});
    card.ood = OodCheck::from_json({{"output", "ood_distance"}, {"threshold", 100.0}});
  }
  return card;
}

ResultRow row(const std::string& path, std::vector<float> probabilities) {
  ResultRow r;
  r.path = path;
  r.label = folder_label(path, kClasses);
  if (!probabilities.empty()) {
    r.status = ResultStatus::ok;
    r.prediction.probabilities = std::move(probabilities);
    r.prediction.top = static_cast<int>(std::max_element(r.prediction.probabilities.begin(), r.prediction.probabilities.end()) -
                                        r.prediction.probabilities.begin());
    r.prediction.confidence = r.prediction.probabilities[static_cast<size_t>(r.prediction.top)];
  }
  return r;
}

}  // namespace

TEST_CASE("folder labels: the nearest folder that names a class, matched loosely", "[results]") {
  CHECK(folder_label("test/Covid-19/a.png", kClasses) == 0);
  CHECK(folder_label("chest/no findings/b.png", kClasses) == 1);    // ' ' matches '_'
  CHECK(folder_label("chest/NO-FINDINGS/b.png", kClasses) == 1);    // case, '-'
  CHECK(folder_label("a/b/pneumonia/c.png", kClasses) == 2);
  CHECK(folder_label("Pneumonia/patient7/c.png", kClasses) == 2);   // class folders may hold sub-folders
  CHECK(folder_label("data/set/Covid-19/2020/x.png", kClasses) == 0);
  CHECK(folder_label("Pneumonia/Covid-19/x.png", kClasses) == 0);   // the nearest one wins
  CHECK(folder_label("pneumonia.png", kClasses) == -1);             // no folder
  CHECK(folder_label("other/c.png", kClasses) == -1);
  CHECK(folder_label("/c.png", kClasses) == -1);
  CHECK(folder_label("", kClasses) == -1);
}

TEST_CASE("evaluation: labelled predictions only; failures and unlabelled counted apart", "[results]") {
  std::vector<ResultRow> rows = {
      row("set/Covid-19/1.png", {0.8f, 0.1f, 0.1f}),
      row("set/Covid-19/2.png", {0.1f, 0.1f, 0.8f}),  // wrong: pneumonia
      row("set/No_findings/3.png", {0.1f, 0.7f, 0.2f}),
      row("set/Pneumonia/4.png", {0.2f, 0.2f, 0.6f}),
      row("set/unsorted/5.png", {0.2f, 0.2f, 0.6f}),  // no class folder
      row("set/Pneumonia/7.png", {}),                 // not run
      row("set/Pneumonia/8.png", {}),
  };
  rows.back().status = ResultStatus::unreadable;
  const Evaluation evaluation = evaluate(rows, kClasses);
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
  // The same numbers the metrics give for this confusion matrix (what `loupe eval` prints).
  const ClassificationReport direct = classification_report(*evaluation.matrix);
  CHECK(direct.accuracy == evaluation.report->accuracy);
  CHECK(direct.macro_avg.f1 == evaluation.report->macro_avg.f1);
  REQUIRE(evaluation.report->roc_auc);
  CHECK(evaluation.report->roc_auc->size() == 3);
  CHECK(evaluation.to_json()["confusion_matrix"]["matrix"][0][2] == 1);
  CHECK_FALSE(evaluation.report->intervals);  // asked for only: a bootstrap is not free
  BootstrapOptions bootstrap;
  bootstrap.resamples = 100;
  const Evaluation with_intervals = evaluate(rows, kClasses, bootstrap);
  REQUIRE(with_intervals.report->intervals);
  CHECK(with_intervals.report->intervals->accuracy.low == wilson_interval(3, 4).low);
  CHECK_FALSE(evaluate({row("x/y.png", {0.5f, 0.3f, 0.2f})}, kClasses).report);
}

TEST_CASE("results CSV: one column set, full-precision numbers, RFC 4180 quoting", "[results]") {
  std::vector<ResultRow> rows = {
      row("set/Covid-19/a,b.png", {0.123456789f, 0.5f, 0.376543211f}),
      row("set/other/c.png", {}),
      row("d.png", {}),
      row("line\rbreak.png", {}),
  };
  rows[2].status = ResultStatus::unreadable;
  rows[2].error = "not an image (\"text\")";
  const std::string csv = results_csv(rows, three_class_card(false));
  const std::string header = "path,label,predicted,confidence,p_Covid-19,p_No_findings,p_Pneumonia,status,error\n";
  REQUIRE(csv.rfind(header, 0) == 0);
  CHECK(csv.find("\"set/Covid-19/a,b.png\",Covid-19,No_findings,0.5,0.123456791,0.5,0.376543224,ok,\n") != std::string::npos);
  CHECK(csv.find("set/other/c.png,,,,,,,not run,\n") != std::string::npos);
  CHECK(csv.find("d.png,,,,,,,unreadable,\"not an image (\"\"text\"\")\"\n") != std::string::npos);
  CHECK(csv.find("\"line\rbreak.png\",") != std::string::npos);  // a CR is quoted too
  CHECK(csv.find("ood") == std::string::npos);                   // no ood check in this card
}

TEST_CASE("results CSV and JSON carry the out-of-distribution check when the card has one", "[results]") {
  std::vector<ResultRow> rows = {row("set/Covid-19/a.png", {0.2f, 0.5f, 0.3f}), row("b.png", {0.9f, 0.05f, 0.05f})};
  rows[0].prediction.has_ood = true;
  rows[0].prediction.ood_distance = 12.5f;
  rows[1].prediction.has_ood = true;
  rows[1].prediction.ood_distance = 250.0f;
  rows[1].prediction.out_of_distribution = true;
  const ModelCard card = three_class_card(true);
  const std::string csv = results_csv(rows, card);
  CHECK(csv.find(",p_Pneumonia,ood_distance,out_of_distribution,status,error\n") != std::string::npos);
  CHECK(csv.find(",12.5,false,ok,\n") != std::string::npos);
  CHECK(csv.find(",250,true,ok,\n") != std::string::npos);
  CHECK(evaluate(rows, kClasses).out_of_distribution == 0);  // b.png has no class folder

  const nlohmann::json json = results_json(rows, card);
  REQUIRE(json.size() == 2);
  CHECK(json[0]["label"] == "Covid-19");
  CHECK(json[0]["predicted"] == "No_findings");
  CHECK(json[0]["probabilities"].size() == 3);
  CHECK(json[0]["ood_distance"] == 12.5);
  CHECK(json[1]["out_of_distribution"] == true);
  CHECK_FALSE(json[1].contains("label"));
  CHECK(json[1]["status"] == "ok");
}
