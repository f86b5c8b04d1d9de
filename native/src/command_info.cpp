#include <torch/cuda.h>
#include <torch/version.h>

#include <cstdio>

#include "commands.h"
#include "loupe/version.h"

namespace loupe::cli {

void add_info_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("info", "Print version and build information, and the devices LibTorch sees");
  cmd->callback([] {
    const BuildInfo info = build_info();
    std::printf("loupe %s\ntarget: %s\ncompiler: %s\nopencv: %s\n", info.loupe_version.c_str(), info.target.c_str(),
                info.compiler.c_str(), info.opencv_version.c_str());
    // Which LibTorch this build uses and whether it can train on a GPU (device "auto" picks CUDA).
    const size_t gpus = torch::cuda::device_count();
    std::printf("libtorch: %s\ncuda: %s", TORCH_VERSION, gpus ? "" : "not available (training runs on the CPU)\n");
    if (gpus) std::printf("%zu device(s), cuDNN %s\n", gpus, torch::cuda::cudnn_is_available() ? "yes" : "no");
  });
}

}  // namespace loupe::cli
