#include "loupe/image_report.h"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <utility>

#include "loupe/error.h"

namespace loupe {

namespace {

constexpr int kWidth = 1400, kHeight = 820;
constexpr int kPanel = 800;  // the image's square, left
const cv::Scalar kText(235, 235, 235), kDim(160, 165, 175), kAccent(60, 180, 230), kWarn(70, 185, 245),
    kAlarm(60, 60, 235), kBackground(30, 27, 24), kBar(50, 100, 125);  // BGR

// The image as 8-bit BGR for drawing: gray through its own min..max (16-bit data would otherwise
// look black), colour as it is, alpha dropped.
cv::Mat to_display(const Image& image) {
  const int type = image.depth == PixelDepth::U16 ? CV_16UC(image.channels) : CV_8UC(image.channels);
  const cv::Mat src(image.height, image.width, type, const_cast<uint8_t*>(image.data.data()));
  cv::Mat gray_or_colour;
  if (image.channels == 1) {
    double lo = 0, hi = 0;
    cv::minMaxLoc(src, &lo, &hi);
    src.convertTo(gray_or_colour, CV_8U, hi > lo ? 255.0 / (hi - lo) : 1.0, hi > lo ? -lo * 255.0 / (hi - lo) : 0.0);
    cv::cvtColor(gray_or_colour, gray_or_colour, cv::COLOR_GRAY2BGR);
    return gray_or_colour;
  }
  src.convertTo(gray_or_colour, CV_8U, image.depth == PixelDepth::U16 ? 1.0 / 257.0 : 1.0);
  cv::cvtColor(gray_or_colour, gray_or_colour, image.channels == 4 ? cv::COLOR_RGBA2BGR : cv::COLOR_RGB2BGR);
  return gray_or_colour;
}

void text(cv::Mat& canvas, const std::string& line, int x, int y, const cv::Scalar& colour, double scale = 0.55,
          int thickness = 1) {
  cv::putText(canvas, line, {x, y}, cv::FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv::LINE_AA);
}

// Draws `paragraph` wrapped to `width` pixels from (x, y); returns the y below it.
int wrapped(cv::Mat& canvas, const std::string& paragraph, int x, int y, int width, const cv::Scalar& colour,
            double scale = 0.5) {
  std::string line, word;
  const auto fits = [&](const std::string& s) {
    int baseline = 0;
    return cv::getTextSize(s, cv::FONT_HERSHEY_SIMPLEX, scale, 1, &baseline).width <= width;
  };
  const int step = static_cast<int>(std::lround(30 * scale + 8));
  const auto flush = [&] {
    if (line.empty()) return;
    text(canvas, line, x, y, colour, scale);
    y += step;
    line.clear();
  };
  for (size_t i = 0; i <= paragraph.size(); ++i) {
    const char c = i < paragraph.size() ? paragraph[i] : ' ';
    if (c != ' ') {
      word += c;
      continue;
    }
    if (word.empty()) continue;
    const std::string candidate = line.empty() ? word : line + " " + word;
    if (fits(candidate) || line.empty()) line = candidate;
    else {
      flush();
      line = word;
    }
    word.clear();
  }
  flush();
  return y;
}

// Each {name} in `text` replaced by its value.
std::string fill(std::string text, const std::vector<std::pair<std::string, std::string>>& values) {
  for (const auto& [name, value] : values) {
    const std::string placeholder = "{" + name + "}";
    for (size_t at = text.find(placeholder); at != std::string::npos; at = text.find(placeholder, at + value.size())) {
      text.replace(at, placeholder.size(), value);
    }
  }
  return text;
}

std::string number(const char* format, double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, format, value);
  return buffer;
}

std::string percent(float p) {
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "%.1f%%", static_cast<double>(p) * 100.0);
  return buffer;
}

}  // namespace

std::string report_ood_status(const ImageReportLabels& labels, bool out_of_distribution, double distance,
                              double threshold) {
  return fill(out_of_distribution ? labels.ood_outside : labels.ood_within,
              {{"distance", number("%.1f", distance)}, {"threshold", number("%.1f", threshold)}});
}

std::string report_probability_note(const ImageReportLabels& labels, double temperature, const std::string& fitted_on) {
  if (temperature <= 0) return labels.not_calibrated;
  return fill(labels.calibrated, {{"t", number("%.3g", temperature)}, {"on", fitted_on}});
}

Image render_image_report(const Image& image, const ImageReport& report) {
  if (image.empty() || image.width <= 0 || image.height <= 0) throw Error(ErrorCode::InvalidArgument, "report: empty image");
  cv::Mat canvas(kHeight, kWidth, CV_8UC3, kBackground);
  const ImageReportLabels& labels = report.labels;

  // Left: the image, fitted into its square, with the heat map blended over it.
  const cv::Mat shown = to_display(image);
  const double fit = std::min(double(kPanel - 20) / image.width, double(kPanel - 20) / image.height);
  const int w = std::max(1, static_cast<int>(std::lround(image.width * fit)));
  const int h = std::max(1, static_cast<int>(std::lround(image.height * fit)));
  cv::Mat fitted;
  cv::resize(shown, fitted, {w, h}, 0, 0, fit < 1 ? cv::INTER_AREA : cv::INTER_LINEAR);
  if (report.heat_map) {
    const std::vector<uint8_t> rgba = heat_map_overlay(*report.heat_map, report.preprocess, image.width, image.height, w, h);
    const float opacity = std::clamp(report.heat_map_opacity, 0.0f, 1.0f);
    for (int y = 0; y < h; ++y) {
      cv::Vec3b* row = fitted.ptr<cv::Vec3b>(y);
      for (int x = 0; x < w; ++x) {
        const uint8_t* px = &rgba[(static_cast<size_t>(y) * static_cast<size_t>(w) + static_cast<size_t>(x)) * 4];
        const float a = opacity * px[3] / 255.0f;
        for (int c = 0; c < 3; ++c) {
          row[x][c] = static_cast<uint8_t>(std::lround(row[x][c] * (1 - a) + px[2 - c] * a));  // RGBA -> BGR
        }
      }
    }
  }
  const int left = 10 + (kPanel - 20 - w) / 2, top = 10 + (kPanel - 20 - h) / 2;
  fitted.copyTo(canvas(cv::Rect(left, top, w, h)));
  if (report.heat_map) {
    const std::string cls = report.heat_map_class.empty() ? labels.predicted_class : report.heat_map_class;
    text(canvas, fill(labels.heat_map, {{"class", cls}}), 14, kHeight - 8, kDim, 0.45);
  }

  // Right: what the model said, about which image, with which model.
  const int x = kPanel + 20, width = kWidth - x - 24;
  int y = 40;
  text(canvas, labels.title, x, y, kText, 0.9, 2);
  y += 34;
  y = wrapped(canvas, labels.image + ": " + report.file_name, x, y, width, kText);
  y = wrapped(canvas, labels.date + ": " + report.created_utc, x, y, width, kDim);
  y = wrapped(canvas, labels.model + ": " + report.model_name + " (" + report.architecture + ", " + labels.file + " " + report.model_file + ")", x, y,
              width, kDim);
  y = wrapped(canvas, labels.weights + ": " + report.weights_sha256, x, y, width, kDim, 0.42);
  y += 14;
  if (!report.probabilities.empty() && report.probabilities.size() == report.class_names.size()) {
    const bool decided = report.predicted >= 0 && static_cast<size_t>(report.predicted) < report.class_names.size();
    const size_t top_class = decided ? static_cast<size_t>(report.predicted)
                                     : static_cast<size_t>(std::max_element(report.probabilities.begin(), report.probabilities.end()) -
                                                           report.probabilities.begin());
    text(canvas, labels.model_output + ": " + report.class_names[top_class] + " (" + percent(report.probabilities[top_class]) + ")", x, y,
         report.out_of_distribution ? kDim : kAccent, 0.7, 2);
    y += 30;
    for (size_t c = 0; c < report.class_names.size(); ++c) {
      text(canvas, report.class_names[c], x, y + 14, kText, 0.5);
      const int bar_x = x + 170, bar_w = width - 170 - 70;
      cv::rectangle(canvas, {bar_x, y}, {bar_x + bar_w, y + 18}, cv::Scalar(60, 55, 50), cv::FILLED);
      cv::rectangle(canvas, {bar_x, y}, {bar_x + static_cast<int>(std::lround(bar_w * report.probabilities[c])), y + 18},
                    c == top_class ? kAccent : kBar, cv::FILLED);
      text(canvas, percent(report.probabilities[c]), bar_x + bar_w + 8, y + 14, kText, 0.5);
      y += 26;
    }
    if (!report.probability_note.empty()) y = wrapped(canvas, labels.probabilities + ": " + report.probability_note, x, y + 4, width, kDim, 0.45);
    if (!report.decision_note.empty()) y = wrapped(canvas, labels.decision + ": " + report.decision_note, x, y + 2, width, kDim, 0.45);
  } else {
    y = wrapped(canvas, labels.no_prediction, x, y, width, kDim);
  }
  y += 10;
  if (!report.ood_status.empty()) {
    const cv::Scalar colour = report.out_of_distribution ? kAlarm : kDim;
    y = wrapped(canvas, (report.out_of_distribution ? labels.warning : labels.training_data_check) + ": " + report.ood_status, x, y,
                width, colour, report.out_of_distribution ? 0.55 : 0.45);
  }
  y += 16;
  // The card's statement as its author wrote it; in another language, the report's own statement
  // comes first so the reader is told in their language.
  const bool english = labels.not_diagnostic == ImageReportLabels{}.not_diagnostic;
  cv::line(canvas, {x, y}, {x + width, y}, kDim, 1);
  y += 26;
  if (report.disclaimer.empty() || !english) y = wrapped(canvas, labels.not_diagnostic, x, y, width, kWarn, 0.5);
  if (!report.disclaimer.empty() && report.disclaimer != labels.not_diagnostic) {
    wrapped(canvas, report.disclaimer, x, y, width, english ? kWarn : kDim, english ? 0.5 : 0.45);
  }

  Image out;
  out.width = kWidth;
  out.height = kHeight;
  out.channels = 3;
  out.depth = PixelDepth::U8;
  cv::Mat rgb;
  cv::cvtColor(canvas, rgb, cv::COLOR_BGR2RGB);
  out.data.assign(rgb.data, rgb.data + rgb.total() * rgb.elemSize());
  return out;
}

}  // namespace loupe
