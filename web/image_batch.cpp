#include "image_batch.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>

namespace loupe_web {

const char* to_string(EntryStatus status) {
  switch (status) {
    case EntryStatus::pending: return "pending";
    case EntryStatus::reading: return "reading";
    case EntryStatus::ok: return "ok";
    case EntryStatus::error: return "error";
  }
  return "unknown";
}

std::string status_text(const ImageEntry& entry) {
  return entry.status == EntryStatus::error ? entry.error : to_string(entry.status);
}

loupe::ResultRow result_row(const ImageEntry& entry, const std::vector<std::string>& class_names, int model_id,
                            const loupe::IntendedImages* intended) {
  loupe::ResultRow row;
  row.path = entry.path;
  if (entry.frames > 1) {
    row.frame = entry.frame;
    row.frames = entry.frames;
  }
  if (intended) row.intended_use_warning = intended->contradiction(entry.modality, entry.body_part, entry.view_position);
  row.label = loupe::folder_label(entry.path, class_names);
  const Prediction& p = entry.prediction;
  if (entry.status == EntryStatus::error) {
    row.status = loupe::ResultStatus::unreadable;
    row.error = entry.error;
  } else if (p.model_id == model_id && p.status == PredictionStatus::error) {
    row.status = loupe::ResultStatus::failed;
    row.error = p.error;
  } else if (p.model_id == model_id && p.status == PredictionStatus::done) {
    row.status = loupe::ResultStatus::ok;
    row.prediction = p;  // the core's part of it
  }
  return row;
}

static std::string lowercase(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

std::string predicted_class(const ImageEntry& entry, const std::vector<std::string>& class_names, int model_id) {
  const Prediction& p = entry.prediction;
  if (p.model_id != model_id || p.status != PredictionStatus::done || p.top < 0 ||
      static_cast<size_t>(p.top) >= class_names.size()) {
    return {};
  }
  return class_names[static_cast<size_t>(p.top)];
}

std::vector<int> visible_rows(const std::vector<ImageEntry>& entries, const TableView& view,
                              const std::vector<std::string>& class_names, int model_id,
                              const std::vector<loupe::ResultRow>* results) {
  const auto in_cell = [&](size_t i) {
    if (!view.cell) return true;
    if (results == nullptr || i >= results->size()) return false;
    const std::optional<loupe::MatrixCell> cell = loupe::evaluation_cell((*results)[i], class_names.size());
    return cell && *cell == *view.cell;
  };
  const std::string needle = lowercase(view.filter);
  const auto confidence = [&](const ImageEntry& entry) {
    const Prediction& p = entry.prediction;
    return p.model_id == model_id && p.status == PredictionStatus::done ? p.confidence : -1.0f;
  };
  std::vector<int> rows;
  rows.reserve(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    const ImageEntry& entry = entries[i];
    if (!in_cell(i)) continue;
    if (needle.empty() || lowercase(entry.path).find(needle) != std::string::npos ||
        lowercase(status_text(entry)).find(needle) != std::string::npos ||
        (!class_names.empty() && lowercase(predicted_class(entry, class_names, model_id)).find(needle) != std::string::npos)) {
      rows.push_back(static_cast<int>(i));
    }
  }
  // -1, 0, 1 in ascending order; stable_sort keeps file order among equals.
  auto compare = [&](const ImageEntry& a, const ImageEntry& b) -> int {
    switch (view.sort_column) {
      case Column::name: return a.path.compare(b.path) < 0 ? -1 : (a.path == b.path ? 0 : 1);
      case Column::size: return a.size_bytes < b.size_bytes ? -1 : (a.size_bytes > b.size_bytes ? 1 : 0);
      case Column::dimensions: {
        const long pa = static_cast<long>(a.width) * a.height, pb = static_cast<long>(b.width) * b.height;
        return pa < pb ? -1 : (pa > pb ? 1 : 0);
      }
      case Column::status: {
        const std::string sa = status_text(a), sb = status_text(b);
        return sa < sb ? -1 : (sa > sb ? 1 : 0);
      }
      case Column::prediction: {
        const std::string pa = predicted_class(a, class_names, model_id), pb = predicted_class(b, class_names, model_id);
        return pa < pb ? -1 : (pa > pb ? 1 : 0);
      }
      case Column::confidence: {
        const float ca = confidence(a), cb = confidence(b);
        return ca < cb ? -1 : (ca > cb ? 1 : 0);
      }
    }
    return 0;
  };
  std::stable_sort(rows.begin(), rows.end(), [&](int a, int b) {
    const int order = compare(entries[static_cast<size_t>(a)], entries[static_cast<size_t>(b)]);
    return view.ascending ? order < 0 : order > 0;
  });
  return rows;
}

// Sample i of an image as a fraction of its range (first channel for gray).
static float sample(const loupe::Image& image, size_t index) {
  if (image.depth == loupe::PixelDepth::U16) {
    uint16_t value;
    std::memcpy(&value, image.data.data() + index * 2, 2);
    return static_cast<float>(value) / 65535.0f;
  }
  return static_cast<float>(image.data[index]) / 255.0f;
}

WindowLevel auto_window(const loupe::Image& image) {
  if (image.empty()) return {};
  const size_t count = static_cast<size_t>(image.width) * static_cast<size_t>(image.height);
  const size_t channels = static_cast<size_t>(image.channels);
  float lo = 1.0f, hi = 0.0f;
  for (size_t i = 0; i < count; ++i) {
    const float value = sample(image, i * channels);
    lo = std::min(lo, value);
    hi = std::max(hi, value);
  }
  if (hi - lo < 1e-4f) return {};  // a flat image: show the full range
  return {hi - lo, (hi + lo) * 0.5f};
}

std::vector<uint8_t> display_rgba(const loupe::Image& image, const WindowLevel& window, int max_side,
                                  int& out_width, int& out_height) {
  out_width = out_height = 0;
  if (image.empty() || image.width <= 0 || image.height <= 0) return {};
  const int step = std::max(1, static_cast<int>(std::ceil(
                                   static_cast<double>(std::max(image.width, image.height)) / std::max(1, max_side))));
  out_width = (image.width + step - 1) / step;
  out_height = (image.height + step - 1) / step;
  std::vector<uint8_t> rgba(static_cast<size_t>(out_width) * static_cast<size_t>(out_height) * 4);
  const size_t channels = static_cast<size_t>(image.channels);
  const bool gray = image.channels == 1;
  const float width = std::max(window.width, 1e-4f);
  const float low = window.level - width * 0.5f;
  auto to_byte = [](float value) {
    return static_cast<uint8_t>(std::lround(std::clamp(value, 0.0f, 1.0f) * 255.0f));
  };
  size_t out = 0;
  for (int y = 0; y < out_height; ++y) {
    const size_t row = static_cast<size_t>(y * step) * static_cast<size_t>(image.width);
    for (int x = 0; x < out_width; ++x) {
      const size_t index = (row + static_cast<size_t>(x * step)) * channels;
      if (gray) {
        const uint8_t value = to_byte((sample(image, index) - low) / width);
        rgba[out] = rgba[out + 1] = rgba[out + 2] = value;
      } else {
        for (size_t c = 0; c < 3; ++c) rgba[out + c] = to_byte(sample(image, index + c));
      }
      rgba[out + 3] = 255;  // alpha is not shown: a transparent X-ray would blend into the panel
      out += 4;
    }
  }
  return rgba;
}

}  // namespace loupe_web
