#include "loupe/train/report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "loupe/train/trainer.h"

namespace fs = std::filesystem;

namespace loupe::train {

namespace {

const cv::Scalar kTrainColor(200, 110, 30);  // BGR: blue
const cv::Scalar kValColor(40, 130, 240);    // orange
const cv::Scalar kInk(40, 40, 40);
const cv::Scalar kGrid(225, 225, 225);

void text(cv::Mat& img, const std::string& s, cv::Point at, double scale = 0.45, cv::Scalar color = kInk) {
  cv::putText(img, s, at, cv::FONT_HERSHEY_SIMPLEX, scale, color, 1, cv::LINE_AA);
}

std::string fmt(double v, int digits) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

// One panel: two series over epochs with axes, grid, ticks and a legend.
void plot_panel(cv::Mat& img, cv::Rect area, const std::string& title, const std::vector<double>& train,
                const std::vector<double>& val, bool unit_range) {
  const int left = area.x + 55, right = area.x + area.width - 15, top = area.y + 30, bottom = area.y + area.height - 40;
  double lo = unit_range ? 0.0 : 1e300, hi = unit_range ? 1.0 : -1e300;
  if (!unit_range) {
    for (const auto* series : {&train, &val}) {
      for (double v : *series) {
        if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
      }
    }
    if (lo > hi) lo = 0, hi = 1;
    const double pad = std::max(1e-6, (hi - lo) * 0.08);
    lo = std::max(0.0, lo - pad);
    hi += pad;
  }
  const size_t n = std::max(train.size(), val.size());
  const auto px = [&](size_t i) {
    return left + (n <= 1 ? (right - left) / 2 : static_cast<int>(double(i) * (right - left) / double(n - 1)));
  };
  const auto py = [&](double v) { return bottom - static_cast<int>((v - lo) / (hi - lo) * (bottom - top)); };
  text(img, title, {area.x + area.width / 2 - 40, area.y + 18}, 0.55);
  for (int k = 0; k <= 4; ++k) {
    const double v = lo + (hi - lo) * k / 4.0;
    cv::line(img, {left, py(v)}, {right, py(v)}, kGrid, 1);
    text(img, fmt(v, unit_range ? 2 : 3), {area.x + 5, py(v) + 4}, 0.38);
  }
  cv::rectangle(img, {left, top}, {right, bottom}, kInk, 1);
  const size_t step = std::max<size_t>(1, n / 10);
  for (size_t i = 0; i < n; i += step) text(img, std::to_string(i + 1), {px(i) - 4, bottom + 16}, 0.38);
  text(img, "epoch", {(left + right) / 2 - 18, bottom + 34}, 0.42);
  for (const auto& [series, color] : {std::pair{&train, kTrainColor}, std::pair{&val, kValColor}}) {
    for (size_t i = 0; i < series->size(); ++i) {
      const cv::Point p(px(i), py((*series)[i]));
      if (i > 0) cv::line(img, {px(i - 1), py((*series)[i - 1])}, p, color, 2, cv::LINE_AA);
      cv::circle(img, p, 3, color, -1, cv::LINE_AA);
    }
  }
  cv::line(img, {right - 120, top + 14}, {right - 100, top + 14}, kTrainColor, 2);
  text(img, "train", {right - 95, top + 18}, 0.42);
  cv::line(img, {right - 120, top + 32}, {right - 100, top + 32}, kValColor, 2);
  text(img, "validation", {right - 95, top + 36}, 0.42);
}

void write_png(const std::string& path, const cv::Mat& img) {
  if (!cv::imwrite(path, img)) throw Error(ErrorCode::Io, path + ": cannot write picture");
}

}  // namespace

void write_history(const std::string& run_dir, const std::vector<EpochRecord>& history) {
  std::string csv = "epoch,lr,train_loss,train_accuracy,val_loss,val_accuracy,val_balanced_accuracy,seconds,images_per_second\n";
  nlohmann::json json = nlohmann::json::array();
  for (const auto& r : history) {
    csv += std::to_string(r.epoch) + "," + fmt(r.lr, 8) + "," + fmt(r.train_loss, 6) + "," + fmt(r.train_accuracy, 6) +
           "," + fmt(r.val_loss, 6) + "," + fmt(r.val_accuracy, 6) + "," + fmt(r.val_balanced_accuracy, 6) + "," +
           fmt(r.seconds, 2) + "," + fmt(r.images_per_second, 2) + "\n";
    json.push_back(r.to_json());
  }
  for (const auto& [name, content] : {std::pair{std::string("history.csv"), csv},
                                      std::pair{std::string("history.json"), json.dump(2) + "\n"}}) {
    write_text_atomic((fs::path(run_dir) / name).string(), content);
  }
}

void draw_training_curves(const std::vector<EpochRecord>& history, const std::string& png_path) {
  std::vector<double> train_loss, val_loss, train_acc, val_acc;
  for (const auto& r : history) {
    train_loss.push_back(r.train_loss);
    val_loss.push_back(r.val_loss);
    train_acc.push_back(r.train_accuracy);
    val_acc.push_back(r.val_accuracy);
  }
  cv::Mat img(360, 1000, CV_8UC3, cv::Scalar(255, 255, 255));
  plot_panel(img, {0, 0, 500, 360}, "loss", train_loss, val_loss, false);
  plot_panel(img, {500, 0, 500, 360}, "accuracy", train_acc, val_acc, true);
  write_png(png_path, img);
}

void draw_confusion_matrix(const ConfusionMatrix& cm, const std::string& title, const std::string& png_path) {
  const int n = static_cast<int>(cm.num_classes());
  const int cell = std::clamp(480 / std::max(1, n), 40, 120);
  size_t longest = 0;
  for (const auto& name : cm.class_names()) longest = std::max(longest, name.size());
  const int label_w = std::min(220, static_cast<int>(longest) * 9 + 20);
  const int left = label_w + 30, top = 60;
  cv::Mat img(top + n * cell + 70, left + n * cell + 30, CV_8UC3, cv::Scalar(255, 255, 255));
  text(img, title, {10, 24}, 0.6);
  text(img, "predicted", {left + n * cell / 2 - 35, top + n * cell + 55}, 0.5);
  text(img, "true", {8, top + n * cell / 2}, 0.5);
  for (int t = 0; t < n; ++t) {
    const double row_total = static_cast<double>(std::max<int64_t>(1, cm.true_count(t)));
    text(img, cm.class_names()[t].substr(0, 24), {40, top + t * cell + cell / 2 + 5}, 0.45);
    for (int p = 0; p < n; ++p) {
      const double share = static_cast<double>(cm.at(t, p)) / row_total;
      // White to deep blue by the share of the true class (row-normalised, like recall).
      const cv::Scalar fill(255 - share * 80, 255 - share * 170, 255 - share * 215);
      const cv::Rect r(left + p * cell, top + t * cell, cell, cell);
      cv::rectangle(img, r, fill, -1);
      cv::rectangle(img, r, cv::Scalar(200, 200, 200), 1);
      const cv::Scalar ink = share > 0.55 ? cv::Scalar(255, 255, 255) : kInk;
      const std::string count = std::to_string(cm.at(t, p));
      text(img, count, {r.x + cell / 2 - 5 * static_cast<int>(count.size()), r.y + cell / 2}, 0.5, ink);
      text(img, fmt(share * 100, 0) + "%", {r.x + cell / 2 - 12, r.y + cell / 2 + 18}, 0.38, ink);
    }
  }
  for (int p = 0; p < n; ++p) {
    text(img, cm.class_names()[p].substr(0, std::max(3, cell / 9)), {left + p * cell + 4, top + n * cell + 18}, 0.4);
  }
  write_png(png_path, img);
}

void draw_reliability_diagram(const std::vector<ReliabilityPanel>& panels, int columns, const std::string& png_path) {
  const int panel_w = 440, panel_h = 470;
  columns = std::max(1, std::min(columns, static_cast<int>(std::max<size_t>(1, panels.size()))));
  const int rows = std::max(1, static_cast<int>((panels.size() + static_cast<size_t>(columns) - 1) / static_cast<size_t>(columns)));
  cv::Mat img(rows * panel_h, columns * panel_w, CV_8UC3, cv::Scalar(255, 255, 255));
  const cv::Scalar gap_color(90, 90, 230);  // BGR: red
  for (size_t i = 0; i < panels.size(); ++i) {
    const ReliabilityPanel& p = panels[i];
    const int x0 = static_cast<int>(i % static_cast<size_t>(columns)) * panel_w;
    const int y0 = static_cast<int>(i / static_cast<size_t>(columns)) * panel_h;
    const int left = x0 + 55, right = x0 + panel_w - 20, top = y0 + 64, bottom = y0 + panel_h - 80;
    const auto px = [&](double v) { return left + static_cast<int>(v * (right - left)); };
    const auto py = [&](double v) { return bottom - static_cast<int>(v * (bottom - top)); };
    for (size_t start = 0, line = 0; start <= p.title.size(); ++line) {  // the title may have several lines
      const size_t end = std::min(p.title.find('\n', start), p.title.size());
      text(img, p.title.substr(start, end - start), {x0 + 10, y0 + 18 + static_cast<int>(line) * 17}, 0.45);
      start = end + 1;
    }
    for (int k = 0; k <= 5; ++k) {
      const double v = k / 5.0;
      cv::line(img, {left, py(v)}, {right, py(v)}, kGrid, 1);
      text(img, fmt(v, 1), {left - 30, py(v) + 4}, 0.38);
      text(img, fmt(v, 1), {px(v) - 8, bottom + 16}, 0.38);
    }
    text(img, "accuracy", {x0 + 4, top - 6}, 0.38);
    const size_t bins = p.count.size();
    text(img, "n", {left - 16, bottom + 34}, 0.32);
    for (size_t b = 0; b < bins; ++b) {
      const double lo = static_cast<double>(b) / static_cast<double>(bins), hi = static_cast<double>(b + 1) / static_cast<double>(bins);
      if (p.count[b] == 0) continue;
      const double acc = b < p.accuracy.size() ? p.accuracy[b] : 0.0;
      const double conf = b < p.confidence.size() ? p.confidence[b] : 0.0;
      cv::rectangle(img, cv::Rect(cv::Point(px(lo) + 1, py(acc)), cv::Point(px(hi) - 1, bottom)), kTrainColor, -1);
      // The gap between accuracy and the bin's mean confidence.
      const cv::Rect gap(cv::Point(px(lo) + 1, py(std::max(acc, conf))), cv::Point(px(hi) - 1, py(std::min(acc, conf))));
      if (gap.height > 0) cv::rectangle(img, gap, gap_color, 2);
      // Image counts under the axis, on two alternating rows so that neighbours do not overlap.
      text(img, std::to_string(p.count[b]), {px(lo) + 1, bottom + 34 + static_cast<int>(b % 2) * 12}, 0.32);
    }
    cv::line(img, {px(0), py(0)}, {px(1), py(1)}, kInk, 1, cv::LINE_AA);  // perfect calibration
    cv::rectangle(img, {left, top}, {right, bottom}, kInk, 1);
    text(img, "confidence (top-class probability), n = images per bin", {left + 10, bottom + 66}, 0.4);
    cv::rectangle(img, {left + 8, top + 10}, {left + 22, top + 20}, kTrainColor, -1);
    text(img, "accuracy", {left + 28, top + 20}, 0.38);
    cv::rectangle(img, {left + 8, top + 28}, {left + 22, top + 38}, gap_color, 2);
    text(img, "gap to confidence", {left + 28, top + 38}, 0.38);
  }
  write_png(png_path, img);
}

void write_run_report(const std::string& run_dir, const TrainConfig& config, const data::Dataset& dataset,
                      const data::Split& split, const data::BalancedTraining& balanced,
                      const std::vector<EpochRecord>& history, const nlohmann::json& metrics) {
  draw_training_curves(history, (fs::path(run_dir) / "curves.png").string());
  std::string md = "# " + config.name + "\n\n";
  md += "> Research use only. **Not a diagnostic device**: these figures describe a model on one data set's "
        "held-out split and say nothing about clinical performance.\n\n";
  if (!config.description.empty()) md += config.description + "\n\n";
  md += "## Data\n\n- source: `" + dataset.origin + "` (" + dataset.kind + ")\n- classes: ";
  const auto counts = dataset.class_counts();
  for (size_t c = 0; c < dataset.classes.size(); ++c) {
    md += (c ? ", " : "") + dataset.classes[c] + " (" + std::to_string(counts[c]) + ")";
  }
  md += "\n- skipped files: " + std::to_string(dataset.skipped.size()) + " (see dataset.json)\n";
  md += "- split: train " + std::to_string(split.train.size()) + ", validation " + std::to_string(split.val.size()) +
        ", test " + std::to_string(split.test.size()) +
        (split.from_dataset ? " (the data set's own split)" : ", stratified, seed " + std::to_string(split.spec.seed)) +
        "; every file's split is in split.json\n";
  md += "- balancing (training split only): " + std::string(data::to_string(config.balancing)) + ", " +
        std::to_string(split.train.size()) + " -> " + std::to_string(balanced.indices.size()) + " images\n\n";
  md += "## Model and training\n\n- model: `" + config.model.to_json().dump() + "`\n- preprocessing: `" +
        config.preprocess.to_json().dump() + "`\n- optimizer: `" + config.optimizer.to_json().dump() +
        "`\n- epochs run: " + std::to_string(history.size()) + " of " + std::to_string(config.epochs) +
        "; selected epoch " + metrics.value("selected_epoch", nlohmann::json(0)).dump() + " by " + config.selection_metric +
        "\n\n![training curves](curves.png)\n\n";
  for (const char* part : {"val", "test"}) {
    if (!metrics.contains(part)) continue;
    const auto& m = metrics[part];
    const std::string name = std::string(part) == "val" ? "Validation" : "Held-out test";
    md += "## " + name + "\n\n```\n" + m["report_text"].get<std::string>() + "log loss: " +
          fmt(m["log_loss"].get<double>(), 4) + "\n```\n\n";
    std::vector<std::vector<int64_t>> rows = m["confusion_matrix"]["matrix"].get<std::vector<std::vector<int64_t>>>();
    const auto cm = ConfusionMatrix::from_counts(dataset.classes, rows);
    const std::string png = std::string("confusion_") + part + ".png";
    draw_confusion_matrix(cm, name + " confusion matrix (" + std::to_string(cm.total()) + " images)",
                          (fs::path(run_dir) / png).string());
    md += "![" + name + " confusion matrix](" + png + ")\n\n";
  }
  std::ofstream out((fs::path(run_dir) / "report.md").string());
  out << md;
  if (!out) throw Error(ErrorCode::Io, run_dir + "/report.md: write failed");
}

}  // namespace loupe::train
