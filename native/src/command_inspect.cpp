// `loupe inspect`: an ONNX model's card, inputs and outputs (the shared reader; no ONNX Runtime).
#include <cstdio>
#include <memory>

#include "commands.h"
#include "loupe/export/onnx_file.h"

namespace loupe::cli {

void add_inspect_command(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("inspect", "Print an ONNX model's card and its inputs/outputs (no ONNX Runtime needed)");
  cmd->add_option("model", *path, "Model file (.onnx)")->required();
  cmd->callback([path] { std::printf("%s", exporter::describe(exporter::read_onnx_file(*path)).c_str()); });
}

}  // namespace loupe::cli
