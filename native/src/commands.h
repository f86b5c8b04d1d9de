// Subcommands of the `loupe` CLI. Each registers its options on the app and runs when chosen.
#pragma once

#include <CLI/CLI.hpp>

namespace loupe::cli {

void add_info_command(CLI::App& app);
void add_preprocess_command(CLI::App& app);

}  // namespace loupe::cli
