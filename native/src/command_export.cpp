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
    int real_images = 8, opset = 13;
    bool feature_map = false, no_cam = false;
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
  cmd->callback([opt] {
    exporter::RunExportOptions options;
    options.weights = opt->weights;
    options.real_images = opt->real_images;
    options.export_options.opset = opt->opset;
    options.export_options.feature_map = opt->feature_map;
    options.export_options.cam = !opt->no_cam;
    const auto result = exporter::run_export(opt->run, opt->out, options);
    std::printf("%s (%lld bytes)\n%s%s\n", result.onnx_path.c_str(), static_cast<long long>(result.file_bytes),
                result.parity.to_text().c_str(), result.note.c_str());
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
};

}  // namespace

void add_predict_command(CLI::App& app) {
  struct Options {
    std::string model, out, split_file, part = "test";
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

    // Files; a single folder whose sub-folders are the model's classes is labelled.
    std::vector<Row> rows;
    bool labelled = opt->paths.size() == 1 && fs::is_directory(opt->paths[0]);
    for (const auto& p : opt->paths) {
      if (fs::is_regular_file(p)) {
        rows.push_back({p, -1, {}, ""});
      } else if (fs::is_directory(p)) {
        for (const auto& e : fs::recursive_directory_iterator(p)) {
          if (e.is_regular_file() && is_image_path(e.path())) rows.push_back({e.path().string(), -1, {}, ""});
        }
      } else {
        rows.push_back({p, -1, {}, "no such file or folder"});
      }
    }
    std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.path < b.path; });
    if (!opt->split_file.empty()) {
      std::ifstream in(opt->split_file);
      if (!in) throw Error(ErrorCode::Io, opt->split_file + ": cannot open split file");
      const nlohmann::json split = nlohmann::json::parse(in);
      if (split.at("classes").get<std::vector<std::string>>() != card.class_names) {
        throw Error(ErrorCode::InvalidArgument, opt->split_file + ": its classes differ from the model's");
      }
      for (const auto& entry : split.at("files").at(opt->part)) {
        rows.push_back({entry.at(0).get<std::string>(), entry.at(1).get<int>(), {}, ""});
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
        const Tensor out = session.run(batch, {output}).at(output);
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
    size_t errors = 0;
    nlohmann::json json_rows = nlohmann::json::array();
    std::string csv = "path,predicted,confidence";
    for (const auto& c : card.class_names) csv += ",p_" + csv_field(c);
    csv += ",error\n";
    for (const auto& r : rows) {
      errors += !r.error.empty();
      const int top = r.probabilities.empty() ? -1 : argmax(r.probabilities);
      const std::string predicted = top >= 0 ? card.class_names[static_cast<size_t>(top)] : "";
      csv += csv_field(r.path) + "," + csv_field(predicted) + "," +
             (top >= 0 ? std::to_string(r.probabilities[static_cast<size_t>(top)]) : "");
      for (size_t c = 0; c < card.class_names.size(); ++c) {
        csv += "," + (r.probabilities.empty() ? std::string() : std::to_string(r.probabilities[c]));
      }
      csv += "," + csv_field(r.error) + "\n";
      nlohmann::json j = {{"path", r.path}};
      if (top >= 0) j["predicted"] = predicted, j["probabilities"] = r.probabilities;
      if (!r.error.empty()) j["error"] = r.error;
      json_rows.push_back(j);
    }
    nlohmann::json result = {{"model", opt->model}, {"model_name", card.name}, {"classes", card.class_names},
                             {"images", rows.size()}, {"errors", errors}, {"predictions", json_rows},
                             {"disclaimer", card.disclaimer}};
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
    std::printf("%zu images, %zu errors -> %s\n%s\n", rows.size(), errors, out_path.c_str(), card.disclaimer.c_str());
  });
}

}  // namespace loupe::cli
