#include "loupe/train/baselines.h"

#include <filesystem>
#include <fstream>
#include <opencv2/core.hpp>
#include <opencv2/ml.hpp>

#include "loupe/metrics.h"
#include "loupe/train/trainer.h"

namespace fs = std::filesystem;

namespace loupe::train {

namespace {

// One row per image: the shared core's preprocessing at a small size, flattened.
cv::Mat features(const data::Dataset& ds, const std::vector<size_t>& samples, const PreprocessSpec& spec,
                 std::vector<int>& labels) {
  cv::Mat rows(static_cast<int>(samples.size()), spec.channels() * spec.width * spec.height, CV_32F);
  labels.clear();
  int r = 0;
  for (size_t i : samples) {
    try {
      preprocess_into(ds.load_image(i), spec, rows.ptr<float>(r));
      labels.push_back(ds.samples[i].label);
      ++r;
    } catch (const Error&) {
      // unreadable files were listed when the data set was scanned; the row is dropped
    }
  }
  return rows.rowRange(0, r).clone();
}

nlohmann::json evaluate(const std::vector<int>& predicted, const std::vector<int>& truth,
                        const std::vector<std::string>& classes) {
  ConfusionMatrix cm(classes);
  for (size_t i = 0; i < truth.size(); ++i) cm.add(truth[i], predicted[i]);
  ClassificationReport report = classification_report(cm);
  // The classifiers give classes, not scores: the bootstrap resamples their one-hot answers.
  std::vector<std::vector<double>> one_hot(truth.size(), std::vector<double>(classes.size(), 0.0));
  for (size_t i = 0; i < truth.size(); ++i) one_hot[i][static_cast<size_t>(predicted[i])] = 1.0;
  if (!truth.empty()) report.intervals = report_intervals(classes, one_hot, truth);
  nlohmann::json j = report.to_json();
  j["confusion_matrix"] = cm.to_json();
  j["report_text"] = report.to_text();
  return j;
}

std::vector<int> predict_rows(const cv::Ptr<cv::ml::StatModel>& model, const cv::Mat& x) {
  cv::Mat out;
  model->predict(x, out);
  std::vector<int> labels;
  for (int r = 0; r < out.rows; ++r) labels.push_back(static_cast<int>(std::lround(out.at<float>(r, 0))));
  return labels;
}

double accuracy(const std::vector<int>& a, const std::vector<int>& b) {
  size_t same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  return a.empty() ? 0.0 : double(same) / double(a.size());
}

}  // namespace

nlohmann::json run_baselines(const TrainConfig& config, const std::string& out_dir, const BaselineOptions& options) {
  fs::create_directories(out_dir);
  const data::Dataset ds = load_run_dataset(config);
  const data::Split split = data::stratified_split(ds, config.split);
  PreprocessSpec spec = config.preprocess;
  spec.width = spec.height = options.feature_side;
  spec.resize = ResizePolicy::Stretch;
  spec.interpolation = Interpolation::Area;
  std::vector<int> y_train, y_val, y_test;
  const cv::Mat x_train = features(ds, split.train, spec, y_train);
  const cv::Mat x_val = features(ds, split.val, spec, y_val);
  const cv::Mat x_test = features(ds, split.test, spec, y_test);
  // Standardise with the training split's statistics only.
  cv::Mat mean, stddev;
  cv::reduce(x_train, mean, 0, cv::REDUCE_AVG);
  cv::Mat centered = x_train - cv::repeat(mean, x_train.rows, 1);
  cv::reduce(centered.mul(centered), stddev, 0, cv::REDUCE_AVG);
  cv::sqrt(stddev, stddev);
  stddev += 1e-6;
  const auto standardise = [&](const cv::Mat& x) {
    cv::Mat out = x - cv::repeat(mean, x.rows, 1);
    return cv::Mat(out / cv::repeat(stddev, x.rows, 1));
  };
  const cv::Mat train = standardise(x_train), val = standardise(x_val), test = standardise(x_test);
  const cv::Mat train_labels(y_train, true);

  nlohmann::json result = {{"features", {{"side", options.feature_side}, {"preprocess", spec.to_json()}}},
                           {"split", {{"train", y_train.size()}, {"val", y_val.size()}, {"test", y_test.size()},
                                      {"seed", config.split.seed}}}};

  // SVM: C and gamma picked on validation (no test peeking).
  const double dims = static_cast<double>(train.cols);
  cv::Ptr<cv::ml::SVM> best_svm;
  double best_val = -1, best_c = 0, best_gamma = 0;
  for (double c : {0.1, 1.0, 10.0}) {
    for (double gamma_scale : {0.3, 1.0, 3.0}) {
      auto svm = cv::ml::SVM::create();
      svm->setType(cv::ml::SVM::C_SVC);
      svm->setKernel(cv::ml::SVM::RBF);
      svm->setC(c);
      svm->setGamma(gamma_scale / dims);  // scikit-learn's "scale" for standardised features is 1/dims
      svm->train(train, cv::ml::ROW_SAMPLE, train_labels);
      const double acc = accuracy(predict_rows(svm, val), y_val);
      if (acc > best_val) best_val = acc, best_svm = svm, best_c = c, best_gamma = gamma_scale / dims;
    }
  }
  result["svm"] = {{"kernel", "rbf"}, {"C", best_c}, {"gamma", best_gamma},
                   {"val", evaluate(predict_rows(best_svm, val), y_val, ds.classes)},
                   {"test", evaluate(predict_rows(best_svm, test), y_test, ds.classes)}};

  auto knn = cv::ml::KNearest::create();
  knn->setDefaultK(options.knn_k);
  knn->train(train, cv::ml::ROW_SAMPLE, train_labels);
  result["knn"] = {{"k", options.knn_k},
                   {"val", evaluate(predict_rows(knn, val), y_val, ds.classes)},
                   {"test", evaluate(predict_rows(knn, test), y_test, ds.classes)}};

  std::ofstream((fs::path(out_dir) / "baselines.json").string()) << result.dump(2) << "\n";
  for (const char* name : {"svm", "knn"}) {
    std::ofstream((fs::path(out_dir) / (std::string("baseline_") + name + ".txt")).string())
        << name << " on held-out test (" << y_test.size() << " images)\n"
        << result[name]["test"]["report_text"].get<std::string>();
  }
  return result;
}

}  // namespace loupe::train
