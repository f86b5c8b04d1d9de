// Inference speed of every architecture at 224x224: LibTorch (eval, no grad) vs ONNX Runtime on
// the exported graph of the same weights, in one process. scripts/bench-infer runs it; never a test.
//
//   bench_infer [SIZE] [BATCH] [REPS] [THREADS] [ARCH...]     prints a Markdown table
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "loupe/export/onnx_export.h"
#include "loupe/inference/ort_session.h"
#include "loupe/models/zoo.h"

namespace {

template <typename Fn>
double median_ms(int reps, Fn&& fn) {
  fn();  // warm-up: allocations, kernel selection
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int size = argc > 1 ? std::stoi(argv[1]) : 224;
  const int batch = argc > 2 ? std::stoi(argv[2]) : 8;
  const int reps = argc > 3 ? std::stoi(argv[3]) : 5;
  const int threads = argc > 4 ? std::stoi(argv[4]) : 2;
  std::vector<std::string> archs(argv + std::min(argc, 5), argv + argc);
  if (archs.empty()) archs = loupe::models::architectures();
  at::set_num_threads(threads);
  std::printf("inference at %dx%d, %d threads; latency = batch 1 median of %d, throughput = batch %d\n\n", size, size,
              threads, reps, batch);
  std::printf("| model | LibTorch ms/img (b=1) | ORT ms/img (b=1) | LibTorch img/s (b=%d) | ORT img/s (b=%d) | ORT speed-up (b=1) |\n",
              batch, batch);
  std::printf("|---|---|---|---|---|---|\n");
  for (const auto& arch : archs) {
    try {
      torch::manual_seed(0);
      loupe::models::ModelConfig config;
      config.architecture = arch;
      config.num_classes = 4;
      config.input_size = size;
      auto model = loupe::models::create_model(config);
      model->eval();
      loupe::exporter::ExportOptions options;
      options.embedding = options.cam = false;
      const auto proto = loupe::exporter::export_onnx(*model, options);
      loupe::inference::OrtSessionOptions session_options;
      session_options.threads = threads;
      const auto session = loupe::inference::OrtSession::from_bytes(loupe::exporter::serialize_onnx(proto), session_options);
      const auto timings = [&](int n, double& torch_ms, double& ort_ms) {
        const torch::Tensor x = torch::randn({n, 3, size, size});
        loupe::Tensor input;
        input.shape = {n, 3, size, size};
        input.data.assign(x.data_ptr<float>(), x.data_ptr<float>() + x.numel());
        torch_ms = median_ms(reps, [&] {
          torch::NoGradGuard no_grad;
          model->forward(x);
        });
        ort_ms = median_ms(reps, [&] { session.run(input, {"logits"}); });
      };
      double t1, o1, tb, ob;
      timings(1, t1, o1);
      timings(batch, tb, ob);
      std::printf("| %s | %.1f | %.1f | %.1f | %.1f | %.2fx |\n", arch.c_str(), t1, o1, 1000.0 * batch / tb,
                  1000.0 * batch / ob, t1 / o1);
      std::fflush(stdout);
    } catch (const std::exception& e) {
      std::printf("| %s | error: %s |\n", arch.c_str(), e.what());
    }
  }
  return 0;
}
