// `loupe export`, `loupe inspect` and `loupe predict`: the ONNX side of the CLI.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <thread>

#include "commands.h"
#include "loupe/dicom.h"
#include "loupe/export/model_card.h"
#include "loupe/export/ort_session.h"
#include "loupe/export/run_export.h"
#include "loupe/image.h"
#include "loupe/metrics.h"
#include "loupe/preprocess.h"

namespace fs = std::filesystem;

namespace loupe::cli {

void add_export_command(CLI::App& app) {
  struct Options {
    std::string run, out, weights = "best";
    std::string data_root;
    int real_images = 8, opset = 13, max_train_images = 2000;
    bool feature_map = false, no_cam = false, no_calibration = false, no_ood = false;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("export", "Export a trained run to ONNX with its model card, verified with ONNX Runtime");
  cmd->add_option("-r,--run", opt->run, "Run folder written by loupe train")->required();
  cmd->add_option("-o,--out", opt->out, "Output .onnx (default RUN/model.onnx)");
  cmd->add_option("--weights", opt->weights, "best or last")->check(CLI::IsMember({"best", "last"}));
  cmd->add_option("--real-images", opt->real_images, "Real images of the run's data compared in the parity check");
  cmd->add_option("--opset", opt->opset, "ONNX opset (13-17)")->check(CLI::Range(13, 17));
  cmd->add_flag("--feature-map", opt->feature_map, "Also output the last convolutional feature map");
  cmd->add_flag("--no-cam", opt->no_cam, "Do not add the class activation map output");
  cmd->add_flag("--no-calibration", opt->no_calibration,
                "Do not fit temperature scaling on the validation split (probabilities stay the plain softmax)");
  cmd->add_flag("--no-ood", opt->no_ood,
                "Do not add the out-of-distribution output (ood_distance, Mahalanobis on the embedding)");
  cmd->add_option("--max-train-images", opt->max_train_images,
                  "Training images (stratified sample) embedded for the out-of-distribution fit")
      ->check(CLI::Range(2, 1000000));
  cmd->add_option("--data-root", opt->data_root,
                  "Where the run's data set is now, if not at config.json's data.path as seen from here");
  cmd->callback([opt] {
    exporter::RunExportOptions options;
    options.weights = opt->weights;
    options.real_images = opt->real_images;
    options.export_options.opset = opt->opset;
    options.export_options.feature_map = opt->feature_map;
    options.export_options.cam = !opt->no_cam;
    options.calibration = !opt->no_calibration;
    options.ood = !opt->no_ood;
    options.max_train_images = opt->max_train_images;
    options.data_root = opt->data_root;
    const auto result = exporter::run_export(opt->run, opt->out, options);
    std::printf("%s (%lld bytes)\n%s%s", result.onnx_path.c_str(), static_cast<long long>(result.file_bytes),
                result.parity.to_text().c_str(), result.summary.c_str());
    if (!result.reliability_png.empty()) std::printf("reliability diagram: %s\n", result.reliability_png.c_str());
    if (!result.report_path.empty()) std::printf("report: %s\n", result.report_path.c_str());
    if (!result.note.empty()) std::printf("note: %s\n", result.note.c_str());
  });
}

void add_inspect_command(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("inspect", "Print an ONNX model's card and its inputs/outputs (no ONNX Runtime needed)");
  cmd->add_option("model", *path, "Model file (.onnx)")->required();
  cmd->callback([path] { std::printf("%s", exporter::describe(exporter::read_onnx_file(*path)).c_str()); });
}

namespace {

bool is_image_path(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".tif" || ext == ".tiff" ||
      ext == ".dcm" || ext == ".dicom") {
    return true;
  }
  // DICOM files are often named without an extension, or by a UID: recognised by their content.
  std::ifstream in(p, std::ios::binary);
  uint8_t head[132];
  in.read(reinterpret_cast<char*>(head), sizeof head);
  return in.gcount() == static_cast<std::streamsize>(sizeof head) && is_dicom(head, sizeof head);
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

struct Row {
  std::string path;
  int label = -1;  // from the class sub-folder, when the folder is labelled
  std::vector<double> probabilities;
  std::string error;
  double ood_distance = 0;  // when the model has the out-of-distribution output
};

std::string number_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

}  // namespace

void add_predict_command(CLI::App& app) {
  struct Options {
    std::string model, out, split_file, part = "test", data_root;
    std::vector<std::string> paths;
    int batch = 16, threads = 0;
    bool quiet = false;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "predict", "Classify images (files or folders, recursive) with an ONNX model; labelled folders also get a report");
  cmd->add_option("-m,--model", opt->model, "Model file (.onnx, exported by loupe)")->required();
  cmd->add_option("paths", opt->paths, "Image files or folders");
  cmd->add_option("--split", opt->split_file,
                  "A run's split.json: classify exactly the images of one part (with their labels), e.g. to "
                  "reproduce the run's held-out test metrics");
  cmd->add_option("--part", opt->part, "With --split: test, val or train")->check(CLI::IsMember({"test", "val", "train"}));
  cmd->add_option("--data-root", opt->data_root,
                  "With --split: where the run's data set is now (replaces config.json's data.path in split.json's paths)");
  cmd->add_option("-o,--out", opt->out, "Results file: .csv (default predictions.csv) or .json");
  cmd->add_option("--batch", opt->batch, "Images per ONNX Runtime call")->check(CLI::Range(1, 1024));
  cmd->add_option("--threads", opt->threads, "Threads for decoding and ONNX Runtime (0 = all cores)");
  cmd->add_flag("-q,--quiet", opt->quiet, "No progress output");
  cmd->callback([opt] {
    const exporter::ModelCard card = exporter::read_model_card(opt->model);
    exporter::OrtSessionOptions session_options;
    session_options.threads = opt->threads;
    const exporter::OrtSession session(opt->model, session_options);
    const std::string output = card.has_output("probabilities") ? "probabilities" : "logits";
    // The out-of-distribution check, when the model has one (the card names its output and threshold).
    std::string ood_output;
    double ood_threshold = 0;
    if (card.ood.is_object() && card.ood.contains("output") && card.ood["output"].is_string() &&
        card.has_output(card.ood["output"].get<std::string>()) && card.ood.contains("threshold") &&
        card.ood["threshold"].is_number()) {
      ood_output = card.ood["output"].get<std::string>();
      ood_threshold = card.ood["threshold"].get<double>();
    }
    std::vector<std::string> outputs{output};
    if (!ood_output.empty()) outputs.push_back(ood_output);

    // Files; a single folder whose sub-folders are the model's classes is labelled.
    std::vector<Row> rows;
    bool labelled = opt->paths.size() == 1 && fs::is_directory(opt->paths[0]);
    for (const auto& p : opt->paths) {
      if (fs::is_regular_file(p)) {
        rows.push_back({p, -1, {}, "", 0.0});
      } else if (fs::is_directory(p)) {
        for (const auto& e : fs::recursive_directory_iterator(p)) {
          if (e.is_regular_file() && is_image_path(e.path())) rows.push_back({e.path().string(), -1, {}, "", 0.0});
        }
      } else {
        rows.push_back({p, -1, {}, "no such file or folder", 0.0});
      }
    }
    std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.path < b.path; });
    if (!opt->split_file.empty()) {
      // Paths in split.json are relative to where training ran: resolved (or a clear error) here.
      const exporter::SplitFiles split = exporter::read_split_files(opt->split_file, opt->data_root);
      if (split.classes != card.class_names) {
        throw Error(ErrorCode::InvalidArgument, opt->split_file + ": its classes differ from the model's");
      }
      if (!split.resolved_from.empty() && !opt->quiet) {
        std::fprintf(stderr, "predict: %s's paths resolved against %s\n", opt->split_file.c_str(),
                     split.resolved_from.c_str());
      }
      for (const auto& [path, label] : split.part(opt->part)) {
        if (path.find(".npz:") != std::string::npos) {
          throw Error(ErrorCode::InvalidArgument, opt->split_file + ": the run's images are inside an .npz (" + path +
                                                      "); loupe predict reads image files: use loupe eval -r RUN");
        }
        rows.push_back({path, label, {}, "", 0.0});
      }
      labelled = true;
    } else if (opt->paths.empty()) {
      throw Error(ErrorCode::InvalidArgument, "give image files or folders, or --split RUN/split.json");
    }
    if (labelled && opt->split_file.empty()) {
      for (auto& r : rows) {
        const std::string cls = fs::relative(fs::path(r.path).parent_path(), opt->paths[0]).begin()->string();
        const auto it = std::find(card.class_names.begin(), card.class_names.end(), cls);
        if (it == card.class_names.end()) {
          labelled = false;
          break;
        }
        r.label = static_cast<int>(it - card.class_names.begin());
      }
    }

    const size_t plane = static_cast<size_t>(card.preprocess.channels()) * card.preprocess.height * card.preprocess.width;
    const unsigned workers = opt->threads > 0 ? static_cast<unsigned>(opt->threads) : std::max(1u, std::thread::hardware_concurrency());
    size_t done = 0;
    for (size_t begin = 0; begin < rows.size(); begin += static_cast<size_t>(opt->batch)) {
      const size_t end = std::min(rows.size(), begin + static_cast<size_t>(opt->batch));
      std::vector<float> pixels((end - begin) * plane);
      std::vector<char> ok(end - begin, 0);
      // Decode + preprocess in parallel; a bad file only marks its own row.
      std::vector<std::future<void>> jobs;
      for (unsigned w = 0; w < workers; ++w) {
        jobs.push_back(std::async(std::launch::async, [&, w] {
          for (size_t i = begin + w; i < end; i += workers) {
            if (!rows[i].error.empty()) continue;
            try {
              preprocess_into(decode_image_file(rows[i].path), card.preprocess, pixels.data() + (i - begin) * plane);
              ok[i - begin] = 1;
            } catch (const std::exception& e) {
              rows[i].error = e.what();
            }
          }
        }));
      }
      for (auto& j : jobs) j.get();
      Tensor batch;
      std::vector<size_t> members;
      for (size_t i = begin; i < end; ++i) {
        if (!ok[i - begin]) continue;
        batch.data.insert(batch.data.end(), pixels.begin() + static_cast<std::ptrdiff_t>((i - begin) * plane),
                          pixels.begin() + static_cast<std::ptrdiff_t>((i - begin + 1) * plane));
        members.push_back(i);
      }
      if (!members.empty()) {
        batch.shape = {static_cast<int64_t>(members.size()), card.preprocess.channels(), card.preprocess.height,
                       card.preprocess.width};
        const auto results = session.run(batch, outputs);
        const Tensor& out = results.at(output);
        if (!ood_output.empty()) {
          const Tensor& distance = results.at(ood_output);
          for (size_t m = 0; m < members.size(); ++m) rows[members[m]].ood_distance = distance.data.at(m);
        }
        const size_t k = card.class_names.size();
        for (size_t m = 0; m < members.size(); ++m) {
          std::vector<double> p(out.data.begin() + static_cast<std::ptrdiff_t>(m * k),
                                out.data.begin() + static_cast<std::ptrdiff_t>((m + 1) * k));
          if (output == "logits") {  // softmax
            const double mx = *std::max_element(p.begin(), p.end());
            double sum = 0;
            for (double& v : p) sum += (v = std::exp(v - mx));
            for (double& v : p) v /= sum;
          }
          rows[members[m]].probabilities = p;
        }
      }
      done = end;
      if (!opt->quiet) std::fprintf(stderr, "\rpredict: %zu/%zu images", done, rows.size());
    }
    if (!opt->quiet) std::fprintf(stderr, "\n");

    const std::string out_path = opt->out.empty() ? "predictions.csv" : opt->out;
    const bool json_out = fs::path(out_path).extension() == ".json";
    size_t errors = 0, classified = 0, flagged = 0;
    nlohmann::json json_rows = nlohmann::json::array();
    std::string csv = "path,predicted,confidence";
    for (const auto& c : card.class_names) csv += ",p_" + csv_field(c);
    if (!ood_output.empty()) csv += ",ood_distance,out_of_distribution";
    csv += ",error\n";
    for (const auto& r : rows) {
      errors += !r.error.empty();
      const int top = r.probabilities.empty() ? -1 : argmax(r.probabilities);
      const std::string predicted = top >= 0 ? card.class_names[static_cast<size_t>(top)] : "";
      const bool out_of_distribution = top >= 0 && !ood_output.empty() && r.ood_distance > ood_threshold;
      classified += top >= 0;
      flagged += out_of_distribution;
      csv += csv_field(r.path) + "," + csv_field(predicted) + "," +
             (top >= 0 ? std::to_string(r.probabilities[static_cast<size_t>(top)]) : "");
      for (size_t c = 0; c < card.class_names.size(); ++c) {
        csv += "," + (r.probabilities.empty() ? std::string() : std::to_string(r.probabilities[c]));
      }
      if (!ood_output.empty()) {
        csv += top >= 0 ? "," + number_text(r.ood_distance) + "," + (out_of_distribution ? "true" : "false") : ",,";
      }
      csv += "," + csv_field(r.error) + "\n";
      nlohmann::json j = {{"path", r.path}};
      if (top >= 0) j["predicted"] = predicted, j["probabilities"] = r.probabilities;
      if (top >= 0 && !ood_output.empty()) j["ood_distance"] = r.ood_distance, j["out_of_distribution"] = out_of_distribution;
      if (!r.error.empty()) j["error"] = r.error;
      json_rows.push_back(j);
    }
    nlohmann::json result = {{"model", opt->model}, {"model_name", card.name}, {"classes", card.class_names},
                             {"images", rows.size()}, {"errors", errors}, {"predictions", json_rows},
                             {"disclaimer", card.disclaimer}};
    if (!ood_output.empty()) {
      result["ood"] = {{"output", ood_output}, {"threshold", ood_threshold}, {"flagged", flagged},
                       {"classified", classified}};
    }
    if (labelled) {
      std::vector<std::vector<double>> scores;
      std::vector<int> labels;
      for (const auto& r : rows) {
        if (r.probabilities.empty()) continue;
        scores.push_back(r.probabilities);
        labels.push_back(r.label);
      }
      if (!scores.empty()) {
        const ClassificationReport report = classification_report(card.class_names, scores, labels);
        ConfusionMatrix cm(card.class_names);
        for (size_t i = 0; i < labels.size(); ++i) cm.add(labels[i], argmax(scores[i]));
        result["report"] = report.to_json();
        result["confusion_matrix"] = cm.to_json();
        std::printf("%s (%zu labelled images):\n%s", opt->split_file.empty() ? opt->paths[0].c_str() : (opt->split_file + " " + opt->part).c_str(),
                    scores.size(), report.to_text().c_str());
      }
    }
    std::ofstream out(out_path);
    if (json_out) out << result.dump(2) << "\n";
    else out << csv;
    if (!out) throw Error(ErrorCode::Io, out_path + ": write failed");
    if (labelled && !json_out) {
      std::ofstream(fs::path(out_path).replace_extension(".report.json")) << result["report"].dump(2) << "\n";
    }
    std::string flagged_text;
    if (!ood_output.empty()) {
      char buf[160];
      std::snprintf(buf, sizeof buf, ", %zu of %zu flagged out-of-distribution (%.1f%%, %s > %.4g)", flagged, classified,
                    classified ? 100.0 * static_cast<double>(flagged) / static_cast<double>(classified) : 0.0,
                    ood_output.c_str(), ood_threshold);
      flagged_text = buf;
    }
    std::printf("%zu images, %zu errors%s -> %s\n%s\n", rows.size(), errors, flagged_text.c_str(), out_path.c_str(),
                card.disclaimer.c_str());
    if (classified == 0) {
      std::string reason = rows.empty() ? "no images found" : "every image failed";
      for (const auto& r : rows) {
        if (!r.error.empty()) {
          reason += " (e.g. " + r.path + ": " + r.error + ")";
          break;
        }
      }
      throw Error(ErrorCode::InvalidArgument, "no image could be classified: " + reason);
    }
  });
}

}  // namespace loupe::cli
