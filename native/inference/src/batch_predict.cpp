// The native batch loop (batch_predict.h).
#include "loupe/inference/batch_predict.h"

#include <algorithm>
#include <future>
#include <thread>

#include "loupe/dicom.h"
#include "loupe/error.h"
#include "loupe/image.h"
#include "loupe/prediction.h"
#include "loupe/preprocess.h"

namespace fs = std::filesystem;

namespace loupe::inference {

namespace {

// decode_image_file, and for a DICOM file also what the row says about it: the frame classified
// (the first of a multi-frame file) and whether its Modality, Body Part Examined or View Position
// contradict the card's intended images. Errors name the path, as decode_image_file's do.
Image decode_row(ResultRow& row, const ModelCard& card) {
  const std::vector<uint8_t> bytes = read_file(row.path);
  try {
    if (!is_dicom(bytes) || !dicom_reader_available()) return decode_image(bytes);
    const DicomPixels dicom = read_dicom(bytes.data(), bytes.size());
    if (dicom.frames > 1) {
      row.frame = dicom.frame;
      row.frames = dicom.frames;
    }
    if (card.intended_images) {
      row.intended_use_warning = card.intended_images->contradiction(dicom.modality, dicom.body_part, dicom.view_position);
    }
    return dicom_to_image(dicom);
  } catch (const Error& e) {
    throw Error(e.code(), row.path + ": " + e.what());
  }
}

}  // namespace

std::vector<ResultRow> list_images(const std::vector<std::string>& paths, const std::vector<std::string>& class_names) {
  std::vector<ResultRow> rows;
  for (const auto& given : paths) {
    if (fs::is_regular_file(given)) {
      ResultRow row;
      row.path = given;
      rows.push_back(row);
    } else if (fs::is_directory(given)) {
      // The folder's own name counts, as in the browser: "FOLDER/class/file.png".
      fs::path folder = fs::absolute(given).lexically_normal();
      if (folder.filename().empty()) folder = folder.parent_path();
      const fs::path above = folder.parent_path();
      for (auto it = fs::recursive_directory_iterator(given); it != fs::recursive_directory_iterator(); ++it) {
        const fs::directory_entry& entry = *it;
        if (entry.path().filename().string().rfind('.', 0) == 0) {  // hidden: .DS_Store, .git/
          if (entry.is_directory()) it.disable_recursion_pending();
          continue;
        }
        if (!entry.is_regular_file()) continue;
        ResultRow row;
        row.path = entry.path().string();
        row.label = folder_label(fs::absolute(entry.path()).lexically_normal().lexically_relative(above).generic_string(),
                                 class_names);
        rows.push_back(row);
      }
    } else {
      ResultRow row;
      row.path = given;
      row.status = ResultStatus::unreadable;
      row.error = "no such file or folder";
      rows.push_back(row);
    }
  }
  std::sort(rows.begin(), rows.end(), [](const ResultRow& a, const ResultRow& b) { return a.path < b.path; });
  return rows;
}

void predict_rows(const OrtSession& session, const ModelCard& card, std::vector<ResultRow>& rows,
                  const BatchOptions& options) {
  std::vector<size_t> todo;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i].status == ResultStatus::not_run) todo.push_back(i);
  }
  const PreprocessSpec& spec = card.preprocess;
  const size_t plane = static_cast<size_t>(spec.channels()) * static_cast<size_t>(spec.height) * static_cast<size_t>(spec.width);
  const size_t batch = static_cast<size_t>(std::max(1, options.batch));
  const unsigned workers = options.threads > 0 ? static_cast<unsigned>(options.threads)
                                               : std::max(1u, std::thread::hardware_concurrency());
  const std::vector<std::string> outputs = prediction_outputs(card);
  for (size_t begin = 0; begin < todo.size(); begin += batch) {
    const size_t end = std::min(todo.size(), begin + batch);
    std::vector<float> pixels((end - begin) * plane);
    std::vector<char> ok(end - begin, 0);
    // Decode + preprocess in parallel; a bad file marks only its own row.
    std::vector<std::future<void>> jobs;
    for (unsigned w = 0; w < workers; ++w) {
      jobs.push_back(std::async(std::launch::async, [&, w] {
        for (size_t k = begin + w; k < end; k += workers) {
          ResultRow& row = rows[todo[k]];
          Image image;
          try {
            image = decode_row(row, card);
          } catch (const std::exception& e) {
            row.status = ResultStatus::unreadable;
            row.error = e.what();
            continue;
          }
          try {
            preprocess_into(image, spec, pixels.data() + (k - begin) * plane);
            ok[k - begin] = 1;
          } catch (const std::exception& e) {
            row.status = ResultStatus::failed;
            row.error = std::string("preprocessing: ") + e.what();
          }
        }
      }));
    }
    for (auto& job : jobs) job.get();
    Tensor input;
    std::vector<size_t> members;  // rows in the batch tensor, in order
    for (size_t k = begin; k < end; ++k) {
      if (!ok[k - begin]) continue;
      input.data.insert(input.data.end(), pixels.begin() + static_cast<std::ptrdiff_t>((k - begin) * plane),
                        pixels.begin() + static_cast<std::ptrdiff_t>((k - begin + 1) * plane));
      members.push_back(todo[k]);
    }
    if (!members.empty()) {
      input.shape = {static_cast<int64_t>(members.size()), spec.channels(), spec.height, spec.width};
      try {
        const auto results = session.run(input, outputs);
        const Tensor& logits = results.at("logits");
        const Tensor* distance = card.ood ? &results.at(card.ood->output) : nullptr;
        const size_t classes = card.class_names.size();
        for (size_t m = 0; m < members.size(); ++m) {
          ResultRow& row = rows[members[m]];
          ImageOutputs out;
          out.logits = logits.data.data() + m * classes;
          out.logits_size = logits.data.size() >= (m + 1) * classes ? classes : 0;
          if (distance && distance->data.size() > m) out.ood_distance = distance->data.data() + m;
          try {
            row.prediction = interpret_outputs(card, out);
            row.status = ResultStatus::ok;
          } catch (const std::exception& e) {
            row.status = ResultStatus::failed;
            row.error = e.what();
          }
        }
      } catch (const std::exception& e) {  // ONNX Runtime refused the batch
        for (const size_t r : members) {
          rows[r].status = ResultStatus::failed;
          rows[r].error = e.what();
        }
      }
    }
    if (options.progress) options.progress(end, todo.size());
  }
}

std::map<std::string, Tensor> run_files(const OrtSession& session, const ModelCard& card,
                                        const std::vector<std::string>& paths, const std::vector<std::string>& outputs,
                                        const BatchOptions& options) {
  const PreprocessSpec& spec = card.preprocess;
  const size_t plane = static_cast<size_t>(spec.channels()) * static_cast<size_t>(spec.height) * static_cast<size_t>(spec.width);
  const size_t batch = static_cast<size_t>(std::max(1, options.batch));
  const unsigned workers = options.threads > 0 ? static_cast<unsigned>(options.threads)
                                               : std::max(1u, std::thread::hardware_concurrency());
  std::map<std::string, Tensor> out;
  for (size_t begin = 0; begin < paths.size(); begin += batch) {
    const size_t end = std::min(paths.size(), begin + batch);
    Tensor input;
    input.shape = {static_cast<int64_t>(end - begin), spec.channels(), spec.height, spec.width};
    input.data.resize((end - begin) * plane);
    std::vector<std::string> errors(end - begin);
    std::vector<std::future<void>> jobs;
    for (unsigned w = 0; w < workers; ++w) {
      jobs.push_back(std::async(std::launch::async, [&, w] {
        for (size_t k = begin + w; k < end; k += workers) {
          try {
            preprocess_into(decode_image_file(paths[k]), spec, input.data.data() + (k - begin) * plane);
          } catch (const std::exception& e) {
            errors[k - begin] = e.what();
          }
        }
      }));
    }
    for (auto& job : jobs) job.get();
    for (size_t k = begin; k < end; ++k) {
      if (!errors[k - begin].empty()) {
        const std::string& e = errors[k - begin];
        throw Error(ErrorCode::InvalidArgument, e.rfind(paths[k], 0) == 0 ? e : paths[k] + ": " + e);
      }
    }
    for (auto& [name, tensor] : session.run(input, outputs)) {
      Tensor& all = out[name];
      if (all.shape.empty()) {
        all.shape = tensor.shape;
        all.shape[0] = 0;
      }
      all.shape[0] += tensor.shape.at(0);
      all.data.insert(all.data.end(), tensor.data.begin(), tensor.data.end());
    }
    if (options.progress) options.progress(end, paths.size());
  }
  return out;
}

}  // namespace loupe::inference
