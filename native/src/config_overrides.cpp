// What the commands that read a training config share (train, cv, split): `--set key=value`,
// and Ctrl-C.
#include <csignal>

#include "commands.h"
#include "loupe/error.h"
#include "loupe/train/train_config.h"

namespace loupe::cli {

// "--set optimizer.lr=0.001": the value is parsed as JSON when it is valid JSON, else kept as a string.
static void apply_override(nlohmann::json& config, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw Error(ErrorCode::InvalidArgument, "--set '" + assignment + "': expected key=value, e.g. optimizer.lr=0.001");
  }
  const std::string value = assignment.substr(eq + 1);
  nlohmann::json parsed = nlohmann::json::parse(value, nullptr, false);
  train::set_dotted(config, assignment.substr(0, eq), parsed.is_discarded() ? nlohmann::json(value) : parsed);
}

namespace {
std::atomic<bool> g_interrupt{false};

extern "C" void on_interrupt(int) {
  // First Ctrl-C: finish cleanly (the last finished epoch is checkpointed). Second: default action.
  g_interrupt = true;
  std::signal(SIGINT, SIG_DFL);
}
}  // namespace

std::atomic<bool>* stop_on_ctrl_c() {
  std::signal(SIGINT, on_interrupt);
  return &g_interrupt;
}

void apply_overrides(nlohmann::json& config, const std::vector<std::string>& assignments) {
  for (const auto& a : assignments) apply_override(config, a);
}

train::TrainConfig load_config_with_overrides(const std::string& path, const std::vector<std::string>& assignments) {
  nlohmann::json doc = train::load_config_json(path);
  apply_overrides(doc, assignments);
  try {
    return train::TrainConfig::from_json(doc);
  } catch (const Error& e) {
    throw Error(e.code(), path + ": " + e.what());
  }
}

}  // namespace loupe::cli
