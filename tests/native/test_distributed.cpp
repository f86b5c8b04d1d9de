// Data-parallel training over c10d (loupe/train/distributed.h, local_launch.h).
//
// In this process, ranks as threads: the sampler rule, the launch environment, rendezvous errors
// (a config that differs, an unreachable master, a port in use, a missing rank) and the bucketed
// gradient all-reduce. Through the `loupe` program, ranks as processes: 2 Gloo ranks at batch B
// give one process's weights at batch 2B; a rank that is killed, Ctrl-C at the launcher, --resume,
// and bad input that leaves the run folder untouched.
#include "catch_torch.h"  // first: keeps Catch's CHECK (see the header)

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <thread>

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "fixtures.h"
#include "loupe/train/distributed.h"
#include "loupe/train/trainer.h"

extern char** environ;

namespace fs = std::filesystem;
using namespace loupe;
using namespace loupe::train;
using Catch::Matchers::Contains;

namespace {

// [SECTION] Helpers: ports, ranks as threads, ranks as processes

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  return ntohs(address.sin_port);
}

LaunchEnvironment rank_environment(int rank, int world, int port) {
  LaunchEnvironment env;
  env.rank = env.local_rank = rank;
  env.world_size = env.local_world_size = world;
  env.master_addr = "127.0.0.1";
  env.master_port = port;
  return env;
}

TrainConfig unit_config(double lr = 1e-3, int timeout_s = 20) {
  return TrainConfig::from_json({{"data", {{"path", "unused"}}},
                                 {"preprocess", {{"color", "rgb"}, {"size", 16}}},
                                 {"model", {{"architecture", "simple_cnn"}, {"conv_channels", {4}}, {"hidden_units", 8}}},
                                 {"optimizer", {{"name", "adam"}, {"lr", lr}}},
                                 {"batch_size", 4},
                                 {"distributed", {{"timeout_s", timeout_s}}}});
}

// Runs fn(rank) on `world` threads; returns each rank's error message ("" when it returned).
// (Catch's assertions are not thread-safe: ranks report, the test asserts afterwards.)
std::vector<std::string> on_ranks(int world, const std::function<void(int)>& fn) {
  std::vector<std::string> errors(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        fn(r);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

// Sets environment variables for one scope (the launch-environment cases).
struct ScopedEnvironment {
  explicit ScopedEnvironment(const std::map<std::string, std::string>& values) {
    for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}) {
      if (const char* v = std::getenv(name)) saved[name] = v;
      unsetenv(name);
    }
    for (const auto& [k, v] : values) setenv(k.c_str(), v.c_str(), 1);
  }
  ~ScopedEnvironment() {
    for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}) unsetenv(name);
    for (const auto& [k, v] : saved) setenv(k.c_str(), v.c_str(), 1);
  }
  std::map<std::string, std::string> saved;
};

// A `loupe` process (LOUPE_CLI, the build's program) with its output (stdout and stderr) in a file.
struct Loupe {
  pid_t pid = -1;
  fs::path output;
  int status = -1;
  std::string text() const { return test::read_text(output); }
  bool exited_ok() const { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }
  bool failed() const { return !exited_ok(); }
};

Loupe start_loupe(const std::vector<std::string>& arguments, const std::map<std::string, std::string>& environment,
                  const fs::path& cwd, const fs::path& output) {
  std::vector<std::string> env_text;
  for (char** e = environ; *e; ++e) {
    const std::string entry = *e, name = entry.substr(0, entry.find('='));
    const bool launch_variable = name == "RANK" || name == "WORLD_SIZE" || name == "LOCAL_RANK" ||
                                 name == "LOCAL_WORLD_SIZE" || name == "MASTER_ADDR" || name == "MASTER_PORT";
    if (!launch_variable && environment.count(name) == 0) env_text.push_back(entry);
  }
  for (const auto& [k, v] : environment) env_text.push_back(k + "=" + v);
  std::vector<std::string> argv_text{LOUPE_CLI};
  argv_text.insert(argv_text.end(), arguments.begin(), arguments.end());
  std::vector<char*> argv, envp;
  for (auto& a : argv_text) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env_text) envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, output.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
  Loupe process;
  process.output = output;
  const int error = posix_spawn(&process.pid, LOUPE_CLI, &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) throw std::runtime_error(std::string("cannot start ") + LOUPE_CLI);
  return process;
}

// Waits for the process; past `limit_s` it is killed (and the case fails: it should have ended).
void finish(Loupe& process, int limit_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(limit_s);
  while (waitpid(process.pid, &process.status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(process.pid, SIGKILL);
      waitpid(process.pid, &process.status, 0);
      FAIL("loupe did not finish within " << limit_s << " s:\n" << process.text());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

bool wait_for_file(const fs::path& path, const Loupe& process, int limit_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(limit_s);
  while (!fs::exists(path)) {
    int status = 0;
    if (waitpid(process.pid, &status, WNOHANG) != 0 || std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

// A small labelled set with its own split (a CSV manifest): 16 training images, imbalanced
// (10 discs, 6 squares), 4 for validation, 4 for test; 16 px.
fs::path write_manifest_dataset(const fs::path& root) {
  test::write_shapes_dataset(root, {"disc", "square"}, 14, 16);
  std::ofstream csv(root / "manifest.csv");
  csv << "path,label,split\n";
  const auto split_of = [](int i, int train) { return i < train ? "train" : i < train + 2 ? "val" : "test"; };
  for (int i = 0; i < 14; ++i) csv << "disc/" << i << ".png,disc," << split_of(i, 10) << "\n";
  for (int i = 0; i < 10; ++i) csv << "square/" << i << ".png,square," << split_of(i, 6) << "\n";
  return root / "manifest.csv";
}

// No dropout and no batch norm (simple_cnn), augmentation on, class weights on an imbalanced
// set: what the equivalence must hold for (issue 14).
nlohmann::json equivalence_config(const fs::path& manifest, int epochs) {
  return {{"name", "dist"},
          {"data", {{"path", manifest.string()}}},
          {"preprocess", {{"color", "rgb"}, {"size", 16}}},
          {"model", {{"architecture", "simple_cnn"}, {"conv_channels", {4, 8}}, {"hidden_units", 16}, {"dropout", 0.0}}},
          {"optimizer", {{"name", "adam"}, {"lr", 3e-3}}},
          {"augment", {{"horizontal_flip", 0.5}, {"rotation_degrees", 10}}},
          {"balancing", "class_weights"},
          {"early_stopping", {{"patience", 0}}},
          {"epochs", epochs},
          {"batch_size", 8},
          {"workers", 1},
          {"threads", 1},
          {"device", "cpu"},
          {"distributed", {{"timeout_s", 20}, {"bucket_mb", 0.001}}}};  // 1 KB: several buckets
}

fs::path write_config(const fs::path& path, const nlohmann::json& config) {
  std::ofstream(path) << config.dump(2);
  return path;
}

std::vector<torch::Tensor> weights_of(const fs::path& checkpoint, const fs::path& config_path) {
  TrainConfig config = TrainConfig::from_json(nlohmann::json::parse(test::read_text(config_path)));
  config.model.num_classes = 2;
  auto model = models::create_model(config.model);
  load_model_file(*model, checkpoint.string());
  std::vector<torch::Tensor> out;
  for (const auto& p : model->parameters()) out.push_back(p.detach().clone());
  return out;
}

// The largest difference of two weight sets, relative to each tensor's largest magnitude.
double relative_difference(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double scale = std::max(b[i].abs().max().item<double>(), 1e-12);
    worst = std::max(worst, (a[i] - b[i]).abs().max().item<double>() / scale);
  }
  return worst;
}

std::map<std::string, std::string> rank_env(int rank, int world, int port) {
  return {{"RANK", std::to_string(rank)}, {"WORLD_SIZE", std::to_string(world)}, {"LOCAL_RANK", std::to_string(rank)},
          {"LOCAL_WORLD_SIZE", std::to_string(world)}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", std::to_string(port)}};
}

}  // namespace

// [SECTION] In this process

TEST_CASE("each rank takes the DistributedSampler's share of the epoch order", "[distributed]") {
  const std::vector<size_t> order{10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
  // Padded to 12 by repeating the start; rank r takes positions r, r + 3, ...
  CHECK(rank_shard(order, 0, 3, true) == std::vector<size_t>{10, 13, 16, 19});
  CHECK(rank_shard(order, 1, 3, true) == std::vector<size_t>{11, 14, 17, 10});
  CHECK(rank_shard(order, 2, 3, true) == std::vector<size_t>{12, 15, 18, 11});
  // Evaluation: no padding, every sample exactly once.
  CHECK(rank_shard(order, 2, 3, false) == std::vector<size_t>{12, 15, 18});
  CHECK(rank_shard({7}, 1, 4, true) == std::vector<size_t>{7});  // fewer samples than ranks: repeated
  CHECK(rank_shard({}, 0, 2, true).empty());
}

TEST_CASE("the launch environment: torchrun's variables, each bad one named", "[distributed][bad-input]") {
  {
    const ScopedEnvironment env({});
    CHECK_FALSE(launch_environment_from_env().distributed());
  }
  {
    const ScopedEnvironment env({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"},
                                 {"MASTER_ADDR", "10.1.2.3"}, {"MASTER_PORT", "29600"}});
    const LaunchEnvironment e = launch_environment_from_env();
    CHECK(e.rank == 1);
    CHECK(e.world_size == 2);
    CHECK(e.local_rank == 1);
    CHECK(e.master_addr == "10.1.2.3");
    CHECK(e.master_port == 29600);
  }
  const auto message = [](const std::map<std::string, std::string>& values) {
    const ScopedEnvironment env(values);
    return test::error_of([] { launch_environment_from_env(); });
  };
  CHECK_THAT(message({{"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}}), Contains("RANK is not set"));
  CHECK_THAT(message({{"WORLD_SIZE", "2"}, {"RANK", "2"}, {"MASTER_ADDR", "127.0.0.1"}}), Contains("RANK=2 is outside [0, 1]"));
  CHECK_THAT(message({{"WORLD_SIZE", "two"}}), Contains("WORLD_SIZE='two' is not an integer"));
  CHECK_THAT(message({{"WORLD_SIZE", "2"}, {"RANK", "0"}}), Contains("MASTER_ADDR is not set"));
  CHECK_THAT(message({{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}}),
             Contains("MASTER_PORT=70000 is outside [1, 65535]"));
  CHECK_THAT(message({{"RANK", "1"}}), Contains("WORLD_SIZE is not"));
}

TEST_CASE("a world size that does not divide the batch is refused before anything starts", "[distributed][bad-input]") {
  TrainConfig config = unit_config();
  config.batch_size = 6;
  CHECK_THAT(test::error_of([&] { check_distributed_config(config, 4); }),
             Contains("batch_size 6 does not divide among 4 ranks") && Contains("use 4 or 8"));
  check_distributed_config(config, 3);
  check_distributed_config(config, 1);
}

TEST_CASE("rendezvous: ranks whose configs differ are refused, naming the key", "[distributed][bad-input]") {
  const int port = free_port();
  const auto errors = on_ranks(2, [&](int rank) {
    DistributedGroup::join(rank_environment(rank, 2, port), unit_config(rank == 0 ? 1e-3 : 3e-4), torch::kCPU);
  });
  for (const auto& e : errors) {
    CHECK_THAT(e, Contains("rank 1's resolved config differs from rank 0's at 'optimizer.lr'") &&
                      Contains("0.0003 on rank 1") && Contains("0.001 on rank 0"));
  }
}

TEST_CASE("rendezvous: an unreachable master, a port in use, a missing rank", "[distributed][bad-input]") {
  const TrainConfig config = unit_config(1e-3, /*timeout_s=*/2);
  const int port = free_port();  // nobody listens there
  CHECK_THAT(test::error_of([&] { DistributedGroup::join(rank_environment(1, 2, port), config, torch::kCPU); }),
             Contains("rank 1 cannot reach the rendezvous store at 127.0.0.1:" + std::to_string(port)) &&
                 Contains("within 2 s"));
  // A port some other program holds.
  const int busy = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_ANY);
  REQUIRE(bind(busy, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  REQUIRE(listen(busy, 1) == 0);
  socklen_t length = sizeof address;
  getsockname(busy, reinterpret_cast<sockaddr*>(&address), &length);
  const int busy_port = ntohs(address.sin_port);
  CHECK_THAT(test::error_of([&] { DistributedGroup::join(rank_environment(0, 2, busy_port), config, torch::kCPU); }),
             Contains("MASTER_PORT " + std::to_string(busy_port) + " is already in use"));
  close(busy);
  // Rank 0 serves the store, rank 1 never comes.
  CHECK_THAT(test::error_of([&] { DistributedGroup::join(rank_environment(0, 2, free_port()), config, torch::kCPU); }),
             Contains("rank 1 did not reach the rendezvous store") && Contains("1 of 2 ranks arrived"));
}

TEST_CASE("gradients are summed across ranks in buckets while backward runs", "[distributed]") {
  const int port = free_port();
  // Each rank: the same model, its own batch; the reference: one model, both batches' losses.
  const auto make_net = [] {
    torch::manual_seed(7);
    return torch::nn::Sequential(torch::nn::Linear(4, 8), torch::nn::ReLU(), torch::nn::Linear(8, 3));
  };
  std::vector<torch::nn::Sequential> nets{make_net(), make_net()};  // here: the generator is not thread-safe
  const auto batch_of = [](int rank) { return torch::randn({5, 4}, torch::TensorOptions().dtype(torch::kFloat32)).add(rank); };
  torch::manual_seed(100);
  const std::vector<torch::Tensor> batches{batch_of(0), batch_of(1)};
  auto reference = make_net();
  (reference->forward(batches[0]).pow(2).sum() + reference->forward(batches[1]).pow(2).sum()).backward();

  std::vector<std::vector<torch::Tensor>> gradients(2);
  std::vector<size_t> buckets(2);
  const auto errors = on_ranks(2, [&](int rank) {
    const auto group = DistributedGroup::join(rank_environment(rank, 2, port), unit_config(), torch::kCPU);
    auto& net = nets[static_cast<size_t>(rank)];
    net[0]->as<torch::nn::Linear>()->bias.requires_grad_(false);  // frozen: left out of the all-reduce
    GradientSync sync(*group, net->parameters(), /*bucket_mb=*/0.0001);  // ~100 bytes: a bucket per tensor
    buckets[static_cast<size_t>(rank)] = sync.bucket_count();
    for (int step = 0; step < 2; ++step) {  // twice: buckets are reset between steps
      for (auto& p : net->parameters()) p.mutable_grad() = torch::Tensor();
      sync.begin_backward();
      net->forward(batches[static_cast<size_t>(rank)]).pow(2).sum().backward();
      sync.finish_backward();
    }
    for (const auto& p : net->parameters()) gradients[static_cast<size_t>(rank)].push_back(p.grad());
  });
  REQUIRE(errors == std::vector<std::string>{"", ""});
  CHECK(buckets[0] == 4);
  const auto expected = reference->parameters();
  for (int rank = 0; rank < 2; ++rank) {
    const auto& got = gradients[static_cast<size_t>(rank)];
    REQUIRE(got.size() == expected.size());
    CHECK_FALSE(got[1].defined());  // the frozen bias has no gradient on either rank
    for (size_t i : {0, 2, 3}) {
      CAPTURE(rank, i);
      REQUIRE(got[i].defined());
      CHECK(torch::allclose(got[i], expected[i].grad(), 1e-5, 1e-6));
    }
  }
}

// [SECTION] Ranks as processes, through `loupe`

TEST_CASE("2 Gloo ranks at batch B give one process's weights at batch 2B; rank 1 writes nothing",
          "[distributed][equivalence]") {
  const test::TempDir dir;
  const fs::path manifest = write_manifest_dataset(dir.path / "data");
  const fs::path config = write_config(dir.path / "config.json", equivalence_config(manifest, 3));  // 6 steps
  fs::create_directories(dir.path / "rank0");
  fs::create_directories(dir.path / "rank1");

  Loupe one = start_loupe({"train", "-q", "-c", config.string(), "-o", "one"}, {}, dir.path, dir.path / "one.log");
  finish(one, 300);
  REQUIRE(one.exited_ok());

  // Two ranks in different working folders with the same relative -o: whatever rank 1 wrote would
  // land in rank1/run.
  const int port = free_port();
  Loupe rank0 = start_loupe({"train", "-q", "-c", config.string(), "-o", "run"}, rank_env(0, 2, port), dir.path / "rank0",
                            dir.path / "rank0.log");
  Loupe rank1 = start_loupe({"train", "-q", "-c", config.string(), "-o", "run"}, rank_env(1, 2, port), dir.path / "rank1",
                            dir.path / "rank1.log");
  finish(rank0, 300);
  finish(rank1, 300);
  INFO(rank0.text() << rank1.text());
  REQUIRE(rank0.exited_ok());
  REQUIRE(rank1.exited_ok());
  CHECK_FALSE(fs::exists(dir.path / "rank1" / "run"));
  CHECK(fs::exists(dir.path / "rank0" / "run" / "metrics.json"));
  CHECK_THAT(test::read_text(dir.path / "rank0" / "run" / "log.txt"),
             Contains("rank 0 of 2 (gloo") && Contains("4 images per rank and step"));

  const auto single = weights_of(dir.path / "one" / "checkpoints" / "last.pt", config);
  const auto ranks = weights_of(dir.path / "rank0" / "run" / "checkpoints" / "last.pt", config);
  const auto initial = [&] {  // as the trainer creates the model (create_run_model: seeded)
    TrainConfig parsed = TrainConfig::from_json(equivalence_config(manifest, 1));
    parsed.model.num_classes = 2;
    torch::manual_seed(parsed.seed);
    auto model = models::create_model(parsed.model);
    std::vector<torch::Tensor> out;
    for (const auto& p : model->parameters()) out.push_back(p.detach().clone());
    return out;
  }();
  CHECK(relative_difference(single, initial) > 1e-2);  // training moved the weights
  CHECK(relative_difference(ranks, single) < 1e-4);    // ... and both ways to the same place
  // The same metrics from the ranks' gathered predictions.
  const auto m1 = nlohmann::json::parse(test::read_text(dir.path / "one" / "metrics.json"));
  const auto m2 = nlohmann::json::parse(test::read_text(dir.path / "rank0" / "run" / "metrics.json"));
  CHECK(m1["test"]["accuracy"] == m2["test"]["accuracy"]);
  CHECK(std::abs(m1["val"]["log_loss"].get<double>() - m2["val"]["log_loss"].get<double>()) < 1e-4);

  // The check can fail: one process at batch B (not 2B) lands elsewhere.
  Loupe half = start_loupe({"train", "-q", "-c", config.string(), "-o", "half", "--set", "batch_size=4"}, {}, dir.path,
                           dir.path / "half.log");
  finish(half, 300);
  REQUIRE(half.exited_ok());
  CHECK(relative_difference(weights_of(dir.path / "half" / "checkpoints" / "last.pt", config), single) > 1e-3);
}

TEST_CASE("a killed rank stops the others with its name; the launcher names it; the checkpoint stays",
          "[distributed][bad-input]") {
  const test::TempDir dir;
  const fs::path manifest = write_manifest_dataset(dir.path / "data");
  nlohmann::json c = equivalence_config(manifest, 1000);  // runs until rank 1 is killed
  c["distributed"]["timeout_s"] = 10;
  const fs::path config = write_config(dir.path / "config.json", c);
  Loupe launcher = start_loupe({"train", "-q", "--nproc", "2", "-c", config.string(), "-o", "run"}, {}, dir.path,
                               dir.path / "launcher.log");
  const fs::path last = dir.path / "run" / "checkpoints" / "last.pt";
  REQUIRE(wait_for_file(last, launcher, 120));
  std::smatch pid;
  const std::string started = launcher.text();
  REQUIRE(std::regex_search(started, pid, std::regex("rank 1 pid (\\d+)")));
  kill(std::stoi(pid[1]), SIGKILL);
  finish(launcher, 10 + 15 + 30);  // the ranks' timeout, the launcher's grace, and a margin
  const std::string text = launcher.text();
  INFO(text);
  CHECK(WEXITSTATUS(launcher.status) == 1);
  CHECK_THAT(text, Contains("rank 1 stopped (killed, crashed or unreachable"));  // rank 0's message
  CHECK_THAT(text, Contains("rank 1 (pid " + std::string(pid[1]) + ") was killed by signal 9"));  // the launcher's
  CHECK_THAT(text, Contains("The last checkpoint is intact: continue with loupe train --resume -o run"));
  CHECK_THAT(text, Contains("rank 0 exited with code 1"));  // rank 0 stopped by itself, not by the launcher
  TrainConfig parsed = TrainConfig::from_json(c);
  parsed.model.num_classes = 2;
  auto model = models::create_model(parsed.model);
  load_model_file(*model, last.string());  // whole
  for (const auto& entry : fs::directory_iterator(dir.path / "run" / "checkpoints")) {
    CHECK(entry.path().extension() != ".tmp");
  }
}

TEST_CASE("Ctrl-C at the launcher stops every rank at the same step; --resume on 2 ranks finishes",
          "[distributed][resume]") {
  const test::TempDir dir;
  const fs::path manifest = write_manifest_dataset(dir.path / "data");
  const fs::path config = write_config(dir.path / "config.json", equivalence_config(manifest, 400));
  Loupe launcher = start_loupe({"train", "-q", "--nproc", "2", "-c", config.string(), "-o", "run"}, {}, dir.path,
                               dir.path / "launcher.log");
  REQUIRE(wait_for_file(dir.path / "run" / "checkpoints" / "last.pt", launcher, 120));
  kill(launcher.pid, SIGINT);
  finish(launcher, 60);
  INFO(launcher.text());
  CHECK(launcher.exited_ok());
  CHECK_THAT(launcher.text(), Contains("interrupted after"));
  const std::string log = test::read_text(dir.path / "run" / "log.txt");
  CHECK_THAT(log, Contains("interrupted"));
  CHECK_FALSE(fs::exists(dir.path / "run" / "metrics.json"));

  // Resumed on 2 ranks with fewer epochs left, it finishes and evaluates.
  const nlohmann::json history = nlohmann::json::parse(test::read_text(dir.path / "run" / "history.json"));
  const int done = static_cast<int>(history.size());
  Loupe resumed = start_loupe({"train", "-q", "--nproc", "2", "--resume", "-o", "run", "--set",
                               "epochs=" + std::to_string(done + 1)},
                              {}, dir.path, dir.path / "resumed.log");
  finish(resumed, 300);
  INFO(resumed.text());
  CHECK(resumed.exited_ok());
  CHECK_THAT(test::read_text(dir.path / "run" / "log.txt"), Contains("resumed after epoch " + std::to_string(done)));
  CHECK(fs::exists(dir.path / "run" / "metrics.json"));
}

TEST_CASE("torchrun's static rendezvous: its agent serves the store, the ranks join it", "[distributed]") {
  // What torchrun (static rendezvous, its default with --master-addr/--master-port) does before
  // starting the ranks: its agent serves a TCPStore at MASTER_PORT and tells the workers so.
  // (Debian 12's torchrun, torch 1.13, fails on Python 3.11 before starting any worker.)
  const test::TempDir dir;
  const fs::path manifest = write_manifest_dataset(dir.path / "data");
  const fs::path config = write_config(dir.path / "config.json", equivalence_config(manifest, 1));
  const int port = free_port();
  c10d::TCPStoreOptions agent;
  agent.port = static_cast<uint16_t>(port);
  agent.isServer = true;
  agent.waitWorkers = false;
  const auto store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", agent);
  std::vector<Loupe> ranks;
  for (int rank = 0; rank < 2; ++rank) {
    auto env = rank_env(rank, 2, port);
    env["TORCHELASTIC_USE_AGENT_STORE"] = "True";
    env["TORCHELASTIC_RESTART_COUNT"] = "0";
    ranks.push_back(start_loupe({"train", "-q", "-c", config.string(), "-o", "run"}, env, dir.path,
                                dir.path / ("rank" + std::to_string(rank) + ".log")));
  }
  for (auto& r : ranks) finish(r, 300);
  INFO(ranks[0].text() << ranks[1].text());
  CHECK(ranks[0].exited_ok());
  CHECK(ranks[1].exited_ok());
  CHECK(fs::exists(dir.path / "run" / "metrics.json"));
  CHECK(store->check({"/worker/attempt_0/loupe/arrived"}));  // the ranks used the agent's store
}

TEST_CASE("bad input on the command line: a clear error and nothing in the run folder", "[distributed][bad-input]") {
  const test::TempDir dir;
  const fs::path manifest = write_manifest_dataset(dir.path / "data");
  nlohmann::json c = equivalence_config(manifest, 1);
  c["distributed"]["timeout_s"] = 3;
  const fs::path config = write_config(dir.path / "config.json", c);
  fs::create_directories(dir.path / "rank0");
  fs::create_directories(dir.path / "rank1");

  // A batch that does not divide among the ranks: refused by the launcher before any rank starts.
  Loupe odd = start_loupe({"train", "--nproc", "2", "-c", config.string(), "-o", "run", "--set", "batch_size=7"}, {},
                          dir.path, dir.path / "odd.log");
  finish(odd, 60);
  CHECK(odd.failed());
  CHECK_THAT(odd.text(), Contains("batch_size 7 does not divide among 2 ranks"));
  CHECK_FALSE(fs::exists(dir.path / "run"));

  // Ranks started with different overrides: both refuse, naming the key; no run folder anywhere.
  const int port = free_port();
  Loupe a = start_loupe({"train", "-c", config.string(), "-o", "run"}, rank_env(0, 2, port), dir.path / "rank0",
                        dir.path / "a.log");
  Loupe b = start_loupe({"train", "-c", config.string(), "-o", "run", "--set", "optimizer.lr=0.01"}, rank_env(1, 2, port),
                        dir.path / "rank1", dir.path / "b.log");
  finish(a, 60);
  finish(b, 60);
  CHECK(a.failed());
  CHECK(b.failed());
  CHECK_THAT(a.text(), Contains("differs from rank 0's at 'optimizer.lr'"));
  CHECK_THAT(b.text(), Contains("differs from rank 0's at 'optimizer.lr'"));
  CHECK_FALSE(fs::exists(dir.path / "rank0" / "run"));
  CHECK_FALSE(fs::exists(dir.path / "rank1" / "run"));

  // Rank 1 with no rank 0 at MASTER_ADDR:MASTER_PORT: the address and port named, within the timeout.
  const int nobody = free_port();
  Loupe lonely = start_loupe({"train", "-c", config.string(), "-o", "run"}, rank_env(1, 2, nobody), dir.path / "rank1",
                             dir.path / "lonely.log");
  finish(lonely, 3 + 30);
  CHECK(lonely.failed());
  CHECK_THAT(lonely.text(), Contains("cannot reach the rendezvous store at 127.0.0.1:" + std::to_string(nobody)));
  CHECK_FALSE(fs::exists(dir.path / "rank1" / "run"));
}
