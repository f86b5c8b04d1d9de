// Native side of scripts/bench-web: per-image latency of one ONNX model in native ONNX Runtime,
// batch 1, with a given number of intra-op threads, on the same fixed input the browser side uses
// (every element 0.5). Prints one JSON line. A benchmark tool, never a test. With PROFILE_PREFIX,
// ONNX Runtime's profiler records every node (a Chrome trace JSON, named in the output line), for
// scripts/bench-web's per-operator comparison with the browser.
//
//   bench_ort_model MODEL.onnx THREADS [REPS [PROFILE_PREFIX]]
#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL.onnx THREADS [REPS [PROFILE_PREFIX]]\n", argv[0]);
    return 2;
  }
  const std::string model = argv[1];
  const int threads = std::stoi(argv[2]);
  const int reps = argc > 3 ? std::stoi(argv[3]) : 50;
  const std::string profile_prefix = argc > 4 ? argv[4] : "";
  try {
    Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "bench");
    Ort::SessionOptions options;
    options.SetIntraOpNumThreads(threads);
    options.SetInterOpNumThreads(1);
    options.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
    if (!profile_prefix.empty()) options.EnableProfiling(profile_prefix.c_str());
    Ort::Session session(env, model.c_str(), options);
    Ort::AllocatorWithDefaultOptions allocator;
    const std::string input_name = session.GetInputNameAllocated(0, allocator).get();
    std::vector<int64_t> shape = session.GetInputTypeInfo(0).GetTensorTypeAndShapeInfo().GetShape();
    shape[0] = 1;
    size_t count = 1;
    for (const int64_t d : shape) count *= static_cast<size_t>(d);
    std::vector<float> input(count, 0.5f);
    const Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    // The browser asks for the scores output only; so does this.
    std::string output = "logits";
    for (size_t i = 0; i < session.GetOutputCount(); ++i) {
      if (std::string(session.GetOutputNameAllocated(i, allocator).get()) == "probabilities") output = "probabilities";
    }
    const char* input_names[] = {input_name.c_str()};
    const char* output_names[] = {output.c_str()};
    std::vector<double> ms;
    for (int r = 0; r < reps + 5; ++r) {
      Ort::Value tensor = Ort::Value::CreateTensor<float>(memory, input.data(), input.size(), shape.data(), shape.size());
      const auto start = std::chrono::steady_clock::now();
      auto outputs = session.Run(Ort::RunOptions{nullptr}, input_names, &tensor, 1, output_names, 1);
      const double elapsed = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      if (r >= 5) ms.push_back(elapsed);  // the first runs warm up allocators and caches
    }
    std::sort(ms.begin(), ms.end());
    const std::string profile = profile_prefix.empty() ? "" : session.EndProfilingAllocated(allocator).get();
    std::printf("{\"model\": \"%s\", \"threads\": %d, \"reps\": %d, \"median_ms\": %.3f, \"min_ms\": %.3f, \"profile\": \"%s\"}\n",
                model.c_str(), threads, reps, ms[ms.size() / 2], ms.front(), profile.c_str());
  } catch (const Ort::Exception& error) {
    std::fprintf(stderr, "bench_ort_model: %s\n", error.what());
    return 1;
  }
  return 0;
}
