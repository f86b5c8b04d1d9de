#include <cstdio>

#include "commands.h"
#include "loupe/version.h"

namespace loupe::cli {

void add_info_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("info", "Print version and build information");
  cmd->callback([] {
    const BuildInfo info = build_info();
    std::printf("loupe %s\ntarget: %s\ncompiler: %s\nopencv: %s\n", info.loupe_version.c_str(), info.target.c_str(),
                info.compiler.c_str(), info.opencv_version.c_str());
  });
}

}  // namespace loupe::cli
