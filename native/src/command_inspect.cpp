// `loupe inspect`: an ONNX model's card, inputs and outputs (the shared reader; no ONNX Runtime).
// With --verify, the card's self-test runs with ONNX Runtime (loupe/inference/self_test_run.h).
#include <cstdio>
#include <memory>

#include "commands.h"
#include "loupe/error.h"
#include "loupe/export/onnx_file.h"
#include "loupe/inference/self_test_run.h"

namespace loupe::cli {

void add_inspect_command(CLI::App& app) {
  struct Options {
    std::string path;
    bool verify = false;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("inspect", "Print an ONNX model's card and its inputs/outputs; --verify runs its self-test");
  cmd->add_option("model", opt->path, "Model file (.onnx)")->required();
  cmd->add_flag("--verify", opt->verify,
                "Run the self-test the card carries (synthetic images and LibTorch's outputs for them) with ONNX "
                "Runtime; exit non-zero when it fails");
  cmd->callback([opt] {
    const exporter::OnnxFileInfo info = exporter::read_onnx_file(opt->path);
    std::printf("%s", exporter::describe(info).c_str());
    if (!opt->verify) return;
    if (!info.card.self_test) {
      throw Error(ErrorCode::InvalidArgument, opt->path + ": the card has no self-test to run (exported before Loupe "
                                                          "wrote one; export it again)");
    }
    const inference::OrtSession session(opt->path);
    const SelfTestResult result = inference::run_self_test(info.card, session);
    std::printf("self-test with ONNX Runtime %s: %s\n", inference::OrtSession::runtime_version().c_str(),
                result.summary().c_str());
    if (!result.passed) throw Error(ErrorCode::InvalidArgument, opt->path + ": the self-test failed");
  });
}

}  // namespace loupe::cli
