// Data-parallel training over c10d (distributed.h).
//
// [SECTION] c10d across LibTorch versions
// [SECTION] Launch environment
// [SECTION] Rendezvous
// [SECTION] Collectives and lost ranks
// [SECTION] Sampling
// [SECTION] Gradients
// [SECTION] Evaluation
#include "loupe/train/distributed.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef LOUPE_WITH_GLOO  // native/train/CMakeLists.txt: Gloo's headers were found
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "loupe/error.h"
#include "nccl_backend.h"

namespace loupe::train {

// [SECTION] c10d across LibTorch versions

// LibTorch 2.0 split c10d's ProcessGroup into a dispatcher over per-device Backends; Gloo and
// NCCL became Backends with the same collective calls. 1.13's ProcessGroupGloo is a ProcessGroup.
#if TORCH_VERSION_MAJOR >= 2
using Collectives = c10d::Backend;
#else
using Collectives = c10d::ProcessGroup;
#endif

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kHeartbeatPeriod = std::chrono::milliseconds(1000);
constexpr int kHeartbeatsMissedForLost = 3;

// c10::Error's what() carries a C++ backtrace: the first line of the message is what a user reads.
std::string reason_of(const std::exception& e) {
  std::string text = e.what();
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) text = c10->what_without_backtrace();
  const size_t newline = text.find('\n');
  return newline == std::string::npos ? text : text.substr(0, newline);
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string text = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) text += (i ? ", " : "") + std::to_string(ranks[i]);
  return text;
}

std::vector<uint8_t> bytes_of(const std::string& text) { return {text.begin(), text.end()}; }
std::string text_of(const std::vector<uint8_t>& bytes) { return {bytes.begin(), bytes.end()}; }

// FNV-1a, 64 bits: a short name for a resolved config in the log.
std::string short_hash(const std::string& text) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : text) h = (h ^ c) * 0x100000001b3ull;
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
  return out;
}

// The first dotted key at which two JSON documents differ, with both values.
bool first_difference(const nlohmann::json& a, const nlohmann::json& b, const std::string& at, std::string& key,
                      std::string& value_a, std::string& value_b) {
  if (a.is_object() && b.is_object()) {
    std::vector<std::string> keys;
    for (const auto& item : a.items()) keys.push_back(item.key());
    for (const auto& item : b.items()) {
      if (!a.contains(item.key())) keys.push_back(item.key());
    }
    for (const auto& k : keys) {
      const nlohmann::json none;
      const std::string path = at.empty() ? k : at + "." + k;
      if (first_difference(a.contains(k) ? a[k] : none, b.contains(k) ? b[k] : none, path, key, value_a, value_b)) {
        return true;
      }
    }
    return false;
  }
  if (a == b) return false;
  key = at;
  value_a = a.is_null() ? "(absent)" : a.dump();
  value_b = b.is_null() ? "(absent)" : b.dump();
  return true;
}

bool is_loopback(const std::string& address) {
  return address == "localhost" || address == "::1" || address.rfind("127.", 0) == 0;
}

int environment_integer(const char* name, int lo, int hi, int fallback, bool required, const std::string& why) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    if (required) throw Error(ErrorCode::InvalidArgument, std::string(name) + " is not set: " + why);
    return fallback;
  }
  char* end = nullptr;
  errno = 0;
  const long parsed = std::strtol(value, &end, 10);
  if (*end != '\0' || errno != 0) {
    throw Error(ErrorCode::InvalidArgument, std::string(name) + "='" + value + "' is not an integer");
  }
  if (parsed < lo || parsed > hi) {
    throw Error(ErrorCode::InvalidArgument, std::string(name) + "=" + value + " is outside [" + std::to_string(lo) +
                                                ", " + std::to_string(hi) + "]");
  }
  return static_cast<int>(parsed);
}

}  // namespace

// [SECTION] Launch environment

LaunchEnvironment launch_environment_from_env() {
  LaunchEnvironment env;
  const char* world = std::getenv("WORLD_SIZE");
  if (world == nullptr || *world == '\0') {
    const char* rank = std::getenv("RANK");
    if (rank != nullptr && *rank != '\0' && std::string(rank) != "0") {
      throw Error(ErrorCode::InvalidArgument, std::string("RANK=") + rank +
                                                  " is set but WORLD_SIZE is not: a launcher sets both (and MASTER_ADDR, "
                                                  "MASTER_PORT)");
    }
    return env;
  }
  env.world_size = environment_integer("WORLD_SIZE", 1, 65536, 1, true, "");
  if (env.world_size == 1) return env;
  env.rank = environment_integer("RANK", 0, env.world_size - 1, 0, true,
                                 "each of the WORLD_SIZE=" + std::to_string(env.world_size) +
                                     " processes needs its own RANK in [0, " + std::to_string(env.world_size - 1) + "]");
  env.local_world_size = environment_integer("LOCAL_WORLD_SIZE", 1, env.world_size, 1, false, "");
  env.local_rank = environment_integer("LOCAL_RANK", 0, env.world_size - 1, 0, false, "");
  if (std::getenv("LOCAL_WORLD_SIZE") && env.local_rank >= env.local_world_size) {
    throw Error(ErrorCode::InvalidArgument, "LOCAL_RANK=" + std::to_string(env.local_rank) + " is not below LOCAL_WORLD_SIZE=" +
                                                std::to_string(env.local_world_size));
  }
  const char* addr = std::getenv("MASTER_ADDR");
  if (addr == nullptr || *addr == '\0') {
    throw Error(ErrorCode::InvalidArgument,
                "MASTER_ADDR is not set: the address of rank 0's machine, where the rendezvous store listens "
                "(WORLD_SIZE=" + std::to_string(env.world_size) + ")");
  }
  env.master_addr = addr;
  env.master_port = environment_integer("MASTER_PORT", 1, 65535, 29500, false, "");
  return env;
}

void check_distributed_config(const TrainConfig& config, int world_size) {
  if (world_size <= 1 || config.batch_size % world_size == 0) return;
  const int below = config.batch_size - config.batch_size % world_size;
  throw Error(ErrorCode::InvalidArgument,
              "batch_size " + std::to_string(config.batch_size) + " does not divide among " + std::to_string(world_size) +
                  " ranks (WORLD_SIZE): batch_size is the global batch and each rank takes batch_size / WORLD_SIZE "
                  "images per step; use " +
                  (below > 0 ? std::to_string(below) + " or " : std::string()) + std::to_string(below + world_size));
}

torch::Device rank_device(const std::string& configured, const LaunchEnvironment& env) {
  torch::Device device = resolve_device(configured);
  if (device.is_cuda() && !device.has_index() && env.distributed()) {
    const auto count = static_cast<int>(torch::cuda::device_count());
    if (env.local_rank >= count) {
      throw Error(ErrorCode::InvalidArgument, "LOCAL_RANK " + std::to_string(env.local_rank) + " needs cuda:" +
                                                  std::to_string(env.local_rank) + " but this machine has " +
                                                  std::to_string(count) + " CUDA device(s): start at most " +
                                                  std::to_string(count) + " ranks here, or set device cpu");
    }
    device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
  }
  return device;
}

int rank_threads(int configured, const LaunchEnvironment& env) {
  if (configured > 0) return configured;
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / std::max(1, env.local_world_size));
}

// [SECTION] Rendezvous

struct DistributedGroup::Impl {
  LaunchEnvironment env;
  std::chrono::milliseconds timeout{0};
  std::string backend;
  bool collectives_on_cuda = false;  // nccl: tensors are reduced on this rank's CUDA device
  torch::Device device{torch::kCPU};
  std::string config_hash;
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<Collectives> collectives;
  uint64_t sequence = 0;  // names the store keys of small gathers (every rank counts alike)
  bool broken = false;    // a collective failed: the backend is left alone (tearing it down may block)

  c10::intrusive_ptr<c10d::Store> heartbeat_store;  // its own connection: the main one may be blocked
  std::thread heartbeat;
  std::mutex heartbeat_mutex;
  std::condition_variable heartbeat_stop;
  bool stopping = false;

  std::string where() const { return env.master_addr + ":" + std::to_string(env.master_port); }
  std::string me() const { return "rank " + std::to_string(env.rank); }

  void start_heartbeat();
  void stop_heartbeat();
  std::string who_stopped();
  [[noreturn]] void fail(const std::string& what, const std::exception& e);
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what);
  torch::Tensor to_collective_device(const torch::Tensor& t) const {
    return collectives_on_cuda ? t.to(device) : t.to(torch::kCPU);
  }
};

namespace {

// torchrun's static rendezvous (its default with --master-addr/--master-port) serves the store in
// its own agent and says so: every rank then joins it as a client, under the prefix
// torch.distributed uses for the attempt (a restart begins afresh).
bool torchrun_serves_store() {
  const char* agent = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
  return agent != nullptr && std::string(agent) == "True";
}

c10::intrusive_ptr<c10d::Store> connect_store(const LaunchEnvironment& env, bool serve,
                                              std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions options;
  options.port = static_cast<uint16_t>(env.master_port);
  options.isServer = serve && !torchrun_serves_store();
  options.waitWorkers = false;  // Loupe counts the arrivals itself, to name the ranks that are missing
  options.timeout = timeout;
  c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
  if (!torchrun_serves_store()) return store;
  const char* attempt = std::getenv("TORCHELASTIC_RESTART_COUNT");
  return c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + std::string(attempt ? attempt : "0"), store);
}

std::string store_failure(const LaunchEnvironment& env, const std::string& where, int timeout_s, const std::string& why) {
  const std::string port = std::to_string(env.master_port);
  const bool serves = env.rank == 0 && !torchrun_serves_store();
  if (serves && (why.find("in use") != std::string::npos || why.find("errno: 98") != std::string::npos)) {
    return "MASTER_PORT " + port + " is already in use on this machine (another run, another program, or a second "
           "process started with RANK=0): rank 0 cannot serve the rendezvous store at " + where +
           ". Choose a free port (MASTER_PORT) for every rank. (" + why + ")";
  }
  if (serves) return "rank 0 cannot serve the rendezvous store at " + where + ": " + why;
  return "rank " + std::to_string(env.rank) + " cannot reach the rendezvous store at " + where + " (MASTER_ADDR:MASTER_PORT) within " +
         std::to_string(timeout_s) + " s (distributed.timeout_s): is rank 0 running there, and is the port open "
         "between the machines? (" + why + ")";
}

#ifdef LOUPE_WITH_GLOO
constexpr bool gloo_available() { return true; }

std::shared_ptr<::gloo::transport::Device> gloo_device(const std::string& master_addr) {
  // GLOO_SOCKET_IFNAME picks the network interface, as in torch.distributed; ranks on one machine
  // talk over loopback; otherwise the address this machine's hostname resolves to.
  if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME"); interface && *interface) {
    return c10d::ProcessGroupGloo::createDeviceForInterface(interface);
  }
  if (is_loopback(master_addr)) return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  return c10d::ProcessGroupGloo::createDefaultDevice();
}
#else
constexpr bool gloo_available() { return false; }
#endif

}  // namespace

DistributedGroup::DistributedGroup(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<DistributedGroup> DistributedGroup::join(const LaunchEnvironment& env, const TrainConfig& config,
                                                         const torch::Device& device) {
  auto impl = std::make_unique<Impl>();
  impl->env = env;
  impl->device = device;
  impl->timeout = std::chrono::seconds(config.distributed.timeout_s);
  const std::string where = impl->where();
  const int timeout_s = config.distributed.timeout_s;
  try {
    impl->store = connect_store(env, env.rank == 0, impl->timeout);
  } catch (const std::exception& e) {
    throw Error(ErrorCode::Io, store_failure(env, where, timeout_s, reason_of(e)));
  }
  c10d::Store& store = *impl->store;
  const auto arrived = [&](int r) { return store.check({"loupe/rank/" + std::to_string(r)}); };
  try {
    // Arrivals: each rank registers its RANK; all wait until WORLD_SIZE have come.
    if (store.add("loupe/rank/" + std::to_string(env.rank), 1) > 1) {
      throw Error(ErrorCode::InvalidArgument, "two processes were started with RANK=" + std::to_string(env.rank) +
                                                  " (WORLD_SIZE=" + std::to_string(env.world_size) +
                                                  "): every rank needs its own RANK");
    }
    store.add("loupe/arrived", 1);
    const auto deadline = Clock::now() + impl->timeout;
    while (store.add("loupe/arrived", 0) < env.world_size) {
      if (Clock::now() > deadline) {
        std::vector<int> missing;
        for (int r = 0; r < env.world_size; ++r) {
          if (!arrived(r)) missing.push_back(r);
        }
        throw Error(ErrorCode::Io, rank_list(missing) + " did not reach the rendezvous store at " + where + " within " +
                                       std::to_string(timeout_s) + " s (distributed.timeout_s); " +
                                       std::to_string(env.world_size - static_cast<int>(missing.size())) + " of " +
                                       std::to_string(env.world_size) + " ranks arrived");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(ErrorCode::Io, "rank " + std::to_string(env.rank) + ": the rendezvous store at " + where +
                                   " failed during the rendezvous: " + reason_of(e));
  }

  std::unique_ptr<DistributedGroup> group(new DistributedGroup(std::move(impl)));
  Impl& g = *group->impl_;
  // Every rank must run the same resolved config (file + --set overrides, defaults filled in) and
  // agree on WORLD_SIZE: compared at the rendezvous, the first differing key named.
  const nlohmann::json identity = {{"WORLD_SIZE", env.world_size}, {"config", config.to_json()}};
  const std::vector<std::string> identities = group->all_gather_text(identity.dump());
  const nlohmann::json main_identity = nlohmann::json::parse(identities[0]);
  for (int r = 1; r < env.world_size; ++r) {
    std::string key, value_r, value_0;
    if (identities[static_cast<size_t>(r)] != identities[0] &&
        first_difference(nlohmann::json::parse(identities[static_cast<size_t>(r)]), main_identity, "", key, value_r, value_0)) {
      if (key.rfind("config.", 0) == 0) key = key.substr(7);
      throw Error(ErrorCode::InvalidArgument,
                  "rank " + std::to_string(r) + "'s resolved config differs from rank 0's at '" + key + "': " + value_r +
                      " on rank " + std::to_string(r) + ", " + value_0 +
                      " on rank 0. Every rank must start with the same config and --set overrides");
    }
  }
  g.config_hash = short_hash(identities[0]);

  // The backend: NCCL between CUDA devices, Gloo otherwise.
  const std::vector<std::string> devices = group->all_gather_text(device.is_cuda() ? "cuda" : "cpu");
  std::vector<int> cpu_ranks;
  for (int r = 0; r < env.world_size; ++r) {
    if (devices[static_cast<size_t>(r)] != "cuda") cpu_ranks.push_back(r);
  }
  g.backend = config.distributed.backend;
  if (g.backend == "auto") g.backend = cpu_ranks.empty() && nccl_available() ? "nccl" : "gloo";
  if (g.backend == "nccl") {
    if (!nccl_available()) {
      throw Error(ErrorCode::InvalidArgument,
                  "distributed.backend nccl: this build has no NCCL (LibTorch " + std::string(TORCH_VERSION) +
                      " without CUDA, or its nccl.h was not found at build time): use gloo, or build native-cuda "
                      "against a CUDA LibTorch 2.x (README, GPU builds)");
    }
    if (!cpu_ranks.empty()) {
      throw Error(ErrorCode::InvalidArgument, "distributed.backend nccl needs a CUDA device on every rank; " +
                                                  rank_list(cpu_ranks) + " train(s) on the CPU: use gloo or auto");
    }
  } else if (!gloo_available()) {
    throw Error(ErrorCode::InvalidArgument, "distributed.backend " + g.backend +
                                                ": this build has no Gloo (no gloo/config.h beside its LibTorch); "
                                                "NCCL needs a CUDA device on every rank");
  }
  try {
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("loupe/" + g.backend, g.store);
    if (g.backend == "nccl") {
      g.collectives_on_cuda = true;
#ifdef LOUPE_WITH_NCCL  // else nccl_available() is false and "nccl" was refused above
      g.collectives = make_nccl_backend(prefixed, env.rank, env.world_size, g.timeout);
#endif
    } else {
#ifdef LOUPE_WITH_GLOO  // else gloo_available() is false and "gloo" was refused above
      auto options = c10d::ProcessGroupGloo::Options::create(g.timeout);
      options->devices.push_back(gloo_device(env.master_addr));
      g.collectives = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, env.rank, env.world_size, options);
#endif
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(ErrorCode::Io, "rank " + std::to_string(env.rank) + ": the " + g.backend +
                                   " process group could not connect the ranks within " + std::to_string(timeout_s) +
                                   " s: " + reason_of(e));
  }
  g.start_heartbeat();
  return group;
}

DistributedGroup::~DistributedGroup() {
  impl_->stop_heartbeat();
  // After a failed collective the backend's worker threads may still wait on a dead peer, and its
  // destructor would join them: it is left to the process's exit instead.
  if (impl_->broken) static_cast<void>(impl_->collectives.release());
}

int DistributedGroup::rank() const { return impl_->env.rank; }
int DistributedGroup::world_size() const { return impl_->env.world_size; }
const std::string& DistributedGroup::backend() const { return impl_->backend; }
const LaunchEnvironment& DistributedGroup::environment() const { return impl_->env; }
const torch::Device& DistributedGroup::device() const { return impl_->device; }
int DistributedGroup::timeout_seconds() const {
  return static_cast<int>(std::chrono::duration_cast<std::chrono::seconds>(impl_->timeout).count());
}

std::string DistributedGroup::describe() const {
  return "rank " + std::to_string(rank()) + " of " + std::to_string(world_size()) + " (" + impl_->backend + ", store " +
         impl_->where() + ", config " + impl_->config_hash + " on every rank)";
}

// [SECTION] Collectives and lost ranks

void DistributedGroup::Impl::start_heartbeat() {
  heartbeat_store = connect_store(env, false, timeout);
  heartbeat = std::thread([this] {
    const std::string key = "loupe/heartbeat/" + std::to_string(env.rank);
    std::unique_lock<std::mutex> lock(heartbeat_mutex);
    while (!stopping) {
      try {
        heartbeat_store->add(key, 1);
      } catch (const std::exception&) {
        return;  // the store is gone (rank 0 stopped): a collective will say so
      }
      heartbeat_stop.wait_for(lock, kHeartbeatPeriod, [this] { return stopping; });
    }
  });
}

void DistributedGroup::Impl::stop_heartbeat() {
  {
    std::lock_guard<std::mutex> lock(heartbeat_mutex);
    stopping = true;
  }
  heartbeat_stop.notify_all();
  if (heartbeat.joinable()) heartbeat.join();
}

// Which rank stopped, after a collective failed: one that announced a failure, else the ranks
// whose heartbeats stopped, else (all alive) a rank that is stuck.
std::string DistributedGroup::Impl::who_stopped() {
  const auto failure_of = [&](int r, std::string& message) {
    const std::string key = "loupe/failed/" + std::to_string(r);
    if (!heartbeat_store->check({key})) return false;
    message = text_of(heartbeat_store->get(key));
    heartbeat_store->add("loupe/failure_seen", 1);
    return true;
  };
  if (!heartbeat_store) return "the rendezvous store at " + where() + " failed";  // during the rendezvous
  try {
    std::vector<int64_t> before(static_cast<size_t>(env.world_size));
    for (int r = 0; r < env.world_size; ++r) {
      std::string message;
      if (r != env.rank && failure_of(r, message)) return "rank " + std::to_string(r) + " failed: " + message;
      before[static_cast<size_t>(r)] = heartbeat_store->add("loupe/heartbeat/" + std::to_string(r), 0);
    }
    std::this_thread::sleep_for(kHeartbeatPeriod * kHeartbeatsMissedForLost);
    std::vector<int> lost;
    for (int r = 0; r < env.world_size; ++r) {
      std::string message;
      if (r != env.rank && failure_of(r, message)) return "rank " + std::to_string(r) + " failed: " + message;
      if (r != env.rank && heartbeat_store->add("loupe/heartbeat/" + std::to_string(r), 0) == before[static_cast<size_t>(r)]) {
        lost.push_back(r);
      }
    }
    if (!lost.empty()) {
      return rank_list(lost) + " stopped (killed, crashed or unreachable: no heartbeat for " +
             std::to_string(kHeartbeatsMissedForLost) + " s)";
    }
    return "no rank stopped (every heartbeat goes on), but a collective failed or ran past distributed.timeout_s (" +
           std::to_string(std::chrono::duration_cast<std::chrono::seconds>(timeout).count()) + " s): a rank is stuck or far slower";
  } catch (const std::exception&) {
    return "rank 0 stopped (the rendezvous store it serves at " + where() + " is gone)";
  }
}

void DistributedGroup::Impl::fail(const std::string& what, const std::exception& e) {
  broken = true;
  throw Error(ErrorCode::Io, who_stopped() + "; every rank stops (" + me() + ", " + what + ": " + reason_of(e) + ")");
}

void DistributedGroup::Impl::wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what) {
  try {
    work->wait(timeout);
  } catch (const std::exception& e) {
    fail(what, e);
  }
}

void DistributedGroup::all_reduce_sum(torch::Tensor& tensor) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> buffer{impl_->to_collective_device(tensor).contiguous()};
  c10::intrusive_ptr<c10d::Work> work;
  try {
    work = impl_->collectives->allreduce(buffer);
  } catch (const std::exception& e) {
    impl_->fail("all-reduce", e);
  }
  impl_->wait(work, "all-reduce");
  if (!buffer[0].is_same(tensor)) tensor.copy_(buffer[0]);
}

void DistributedGroup::broadcast_from_main(std::vector<torch::Tensor> tensors) {
  torch::NoGradGuard no_grad;
  // One broadcast per dtype: the tensors flattened into one buffer (Gloo takes one tensor a call).
  std::vector<torch::ScalarType> dtypes;
  for (const auto& t : tensors) {
    if (std::find(dtypes.begin(), dtypes.end(), t.scalar_type()) == dtypes.end()) dtypes.push_back(t.scalar_type());
  }
  for (const auto dtype : dtypes) {
    std::vector<torch::Tensor> parts;
    for (const auto& t : tensors) {
      if (t.scalar_type() == dtype) parts.push_back(impl_->to_collective_device(t).reshape({-1}));
    }
    std::vector<torch::Tensor> buffer{torch::cat(parts)};
    c10d::BroadcastOptions options;
    options.rootRank = 0;
    c10::intrusive_ptr<c10d::Work> work;
    try {
      work = impl_->collectives->broadcast(buffer, options);
    } catch (const std::exception& e) {
      impl_->fail("broadcast", e);
    }
    impl_->wait(work, "broadcast");
    int64_t offset = 0;
    for (auto& t : tensors) {
      if (t.scalar_type() != dtype) continue;
      t.copy_(buffer[0].narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  }
}

void DistributedGroup::broadcast_model(models::Classifier& model, bool parameters, bool buffers) {
  std::vector<torch::Tensor> tensors;
  if (parameters) {
    for (const auto& p : model.parameters()) tensors.push_back(p);
  }
  if (buffers) {
    for (const auto& b : model.buffers()) tensors.push_back(b);
  }
  if (!tensors.empty()) broadcast_from_main(tensors);
}

std::vector<std::string> DistributedGroup::all_gather_text(const std::string& text) {
  const std::string prefix = "loupe/gather/" + std::to_string(++impl_->sequence) + "/";
  std::vector<std::string> out(static_cast<size_t>(world_size()));
  try {
    c10d::Store& store = *impl_->store;
    store.set(prefix + std::to_string(rank()), bytes_of(text));
    for (int r = 0; r < world_size(); ++r) out[static_cast<size_t>(r)] = text_of(store.get(prefix + std::to_string(r)));
    // Rank 0 serves the store: it returns (and may stop, on a refused config) only once every rank has read.
    store.add(prefix + "read", 1);
    const auto deadline = Clock::now() + impl_->timeout;
    while (is_main() && store.add(prefix + "read", 0) < world_size() && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  } catch (const std::exception& e) {
    impl_->fail("exchanging values through the store", e);
  }
  return out;
}

std::string DistributedGroup::main_text(const std::string& text) { return all_gather_text(is_main() ? text : "").front(); }

void DistributedGroup::require_same(const std::string& what, const std::string& value, const std::string& hint) {
  const std::vector<std::string> values = all_gather_text(value);
  for (int r = 1; r < world_size(); ++r) {
    if (values[static_cast<size_t>(r)] != values[0]) {
      throw Error(ErrorCode::InvalidArgument, what + " differs between ranks: " + values[0] + " on rank 0, " +
                                                  values[static_cast<size_t>(r)] + " on rank " + std::to_string(r) +
                                                  (hint.empty() ? "" : ". " + hint));
    }
  }
}

bool DistributedGroup::any(bool flag) {
  torch::Tensor t = torch::tensor({flag ? 1.0 : 0.0}, torch::kFloat64);
  all_reduce_sum(t);
  return t.item<double>() > 0;
}

void DistributedGroup::announce_failure(const std::string& message) noexcept {
  if (!impl_->heartbeat_store) return;  // before the rendezvous finished: nobody to tell
  try {
    impl_->heartbeat_store->set("loupe/failed/" + std::to_string(rank()), bytes_of(message));
    if (impl_->broken) return;  // the others found out the same way (or are gone)
    // Close this rank's connections so that the others' next collective fails now rather than at
    // the timeout; rank 0 serves the store, so it waits (a few seconds at most) for them to read why.
    impl_->collectives.reset();
    if (!is_main()) return;
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < deadline && impl_->heartbeat_store->add("loupe/failure_seen", 0) < world_size() - 1) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  } catch (...) {
    // Announcing is a courtesy: the others still stop when this rank's connections close.
  }
}

// [SECTION] Sampling

std::vector<size_t> rank_shard(const std::vector<size_t>& order, int rank, int world_size, bool pad) {
  std::vector<size_t> shard;
  const size_t n = order.size(), world = static_cast<size_t>(std::max(1, world_size));
  if (n == 0) return shard;
  const size_t total = pad ? (n + world - 1) / world * world : n;
  for (size_t p = static_cast<size_t>(rank); p < total; p += world) shard.push_back(order[p % n]);
  return shard;
}

std::string data_fingerprint(const data::Dataset& dataset, const std::vector<size_t>& training) {
  std::string text;
  for (const auto& sample : dataset.samples) text += sample.path + '\t' + std::to_string(sample.label) + '\n';
  for (size_t index : training) text += std::to_string(index) + ',';
  return std::to_string(dataset.samples.size()) + " images in " + std::to_string(dataset.classes.size()) + " classes, " +
         std::to_string(training.size()) + " for training (fingerprint " + short_hash(text) + ")";
}

// [SECTION] Gradients

struct GradientSync::State {
  DistributedGroup::Impl& group;
  struct Bucket {
    std::vector<size_t> parameters;  // indices into State::parameters
    std::vector<int64_t> offsets;
    torch::Tensor flat;              // the gradients of its parameters, back to back
    torch::Tensor sent;              // what was all-reduced (flat, or its copy on the backend's device)
    int pending = 0;                 // gradients still to come this backward
    bool active = false;             // any of its parameters requires a gradient this step
    bool launched = false;
    c10::intrusive_ptr<c10d::Work> work;
  };
  std::vector<torch::Tensor> parameters;
  std::vector<size_t> bucket_of, offset_of;
  std::vector<bool> arrived;
  std::vector<Bucket> buckets;
  std::vector<unsigned> hooks;
  std::vector<bool> hooked;  // LibTorch takes hooks only on tensors that require a gradient (now)
  size_t next_launch = 0;
  bool armed = false;
  std::mutex mutex;
  std::exception_ptr launch_error;

  explicit State(DistributedGroup::Impl& g) : group(g) {}

  void launch(Bucket& bucket) {
    bucket.sent = group.to_collective_device(bucket.flat);
    std::vector<torch::Tensor> tensors{bucket.sent};
    bucket.work = group.collectives->allreduce(tensors);
    bucket.sent = tensors[0];
    bucket.launched = true;
  }

  // Buckets go out strictly in order on every rank (collectives are matched by order).
  void launch_ready() {
    while (next_launch < buckets.size()) {
      Bucket& bucket = buckets[next_launch];
      if (bucket.active && bucket.pending > 0) return;
      if (bucket.active) launch(bucket);
      ++next_launch;
    }
  }

  void on_gradient(size_t index, const torch::Tensor& gradient) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!armed || launch_error) return;
    try {
      Bucket& bucket = buckets[bucket_of[index]];
      torch::Tensor slot = bucket.flat.narrow(0, static_cast<int64_t>(offset_of[index]), gradient.numel()).view(gradient.sizes());
      if (arrived[index]) {  // a parameter whose gradient comes twice in one backward: the sum
        slot.add_(gradient);
        return;
      }
      slot.copy_(gradient);
      arrived[index] = true;
      --bucket.pending;
      launch_ready();
    } catch (...) {
      launch_error = std::current_exception();
    }
  }
};

GradientSync::GradientSync(DistributedGroup& group, const std::vector<torch::Tensor>& parameters, double bucket_mb)
    : state_(std::make_unique<State>(*group.impl_)) {
  State& s = *state_;
  s.parameters = parameters;
  s.bucket_of.resize(parameters.size());
  s.offset_of.resize(parameters.size());
  s.arrived.assign(parameters.size(), false);
  const auto cap = static_cast<int64_t>(bucket_mb * 1024 * 1024);
  // Reverse order: backward produces the last layers' gradients first, so the first bucket fills first.
  int64_t bytes = 0, elements = 0;
  for (size_t k = parameters.size(); k-- > 0;) {
    const torch::Tensor& p = parameters[k];
    const int64_t size = p.numel() * static_cast<int64_t>(p.element_size());
    const bool fits = !s.buckets.empty() && bytes + size <= cap &&
                      s.parameters[s.buckets.back().parameters.front()].scalar_type() == p.scalar_type() &&
                      s.parameters[s.buckets.back().parameters.front()].device() == p.device();
    if (!fits) {
      s.buckets.emplace_back();
      bytes = elements = 0;
    }
    s.buckets.back().parameters.push_back(k);
    s.bucket_of[k] = s.buckets.size() - 1;
    s.offset_of[k] = static_cast<size_t>(elements);
    bytes += size;
    elements += p.numel();
  }
  for (auto& bucket : s.buckets) {
    int64_t total = 0;
    for (size_t k : bucket.parameters) total += s.parameters[k].numel();
    const torch::Tensor& first = s.parameters[bucket.parameters.front()];
    bucket.flat = torch::zeros({total}, first.options().requires_grad(false));
  }
  s.hooks.assign(parameters.size(), 0);
  s.hooked.assign(parameters.size(), false);
}

GradientSync::~GradientSync() {
  for (size_t k = 0; k < state_->parameters.size(); ++k) {
    if (state_->hooked[k]) state_->parameters[k].remove_hook(state_->hooks[k]);
  }
}

size_t GradientSync::bucket_count() const { return state_->buckets.size(); }

GradientSync::Agreement GradientSync::agree(double local_weight, bool finite, bool stop_requested) {
  DistributedGroup::Impl& g = state_->group;
  torch::Tensor t = torch::tensor({finite ? local_weight : 0.0, finite ? 0.0 : 1.0, stop_requested ? 1.0 : 0.0}, torch::kFloat64);
  std::vector<torch::Tensor> buffer{g.to_collective_device(t)};
  c10::intrusive_ptr<c10d::Work> work;
  try {
    work = g.collectives->allreduce(buffer);
  } catch (const std::exception& e) {
    g.fail("the step's agreement", e);
  }
  g.wait(work, "the step's agreement");
  const torch::Tensor sums = buffer[0].to(torch::kCPU);
  const double* v = sums.data_ptr<double>();
  return {v[0], v[1] == 0.0, v[2] > 0.0};
}

void GradientSync::begin_backward() {
  State& s = *state_;
  std::lock_guard<std::mutex> lock(s.mutex);
  torch::NoGradGuard no_grad;
  s.arrived.assign(s.parameters.size(), false);
  // Hooks go on when a parameter first requires a gradient (a frozen backbone joins later).
  State* state = state_.get();
  for (size_t k = 0; k < s.parameters.size(); ++k) {
    if (s.hooked[k] || !s.parameters[k].requires_grad()) continue;
    s.hooks[k] = s.parameters[k].register_hook([state, k](const torch::Tensor& gradient) { state->on_gradient(k, gradient); });
    s.hooked[k] = true;
  }
  for (auto& bucket : s.buckets) {
    bucket.pending = 0;
    for (size_t k : bucket.parameters) bucket.pending += s.parameters[k].requires_grad() ? 1 : 0;
    bucket.active = bucket.pending > 0;
    bucket.launched = false;
    bucket.work.reset();
    if (bucket.active) bucket.flat.zero_();
  }
  s.next_launch = 0;
  s.launch_error = nullptr;
  s.armed = true;
}

void GradientSync::finish_backward() {
  State& s = *state_;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.armed = false;
    if (!s.launch_error) {
      try {
        // Parameters without a gradient this step leave zeros in their bucket; every rank sends it.
        for (; s.next_launch < s.buckets.size(); ++s.next_launch) {
          if (s.buckets[s.next_launch].active) s.launch(s.buckets[s.next_launch]);
        }
      } catch (...) {
        s.launch_error = std::current_exception();
      }
    }
  }
  if (s.launch_error) {
    try {
      std::rethrow_exception(s.launch_error);
    } catch (const std::exception& e) {
      s.group.fail("gradient all-reduce", e);
    }
  }
  torch::NoGradGuard no_grad;
  for (auto& bucket : s.buckets) {
    if (!bucket.active) continue;
    s.group.wait(bucket.work, "gradient all-reduce");
    if (!bucket.sent.is_same(bucket.flat)) bucket.flat.copy_(bucket.sent);
    for (size_t k : bucket.parameters) {
      torch::Tensor& p = s.parameters[k];
      if (!p.requires_grad()) continue;
      const torch::Tensor summed = bucket.flat.narrow(0, static_cast<int64_t>(s.offset_of[k]), p.numel()).view(p.sizes());
      if (s.arrived[k]) {
        p.mutable_grad().copy_(summed);
      } else if (summed.abs().sum().item<double>() > 0) {  // unused here, used on another rank
        p.mutable_grad() = torch::empty_like(p).copy_(summed);
      }
    }
  }
}

// [SECTION] Evaluation

Predictions predict_on_ranks(DistributedGroup* group, models::Classifier& model, const data::Dataset& dataset,
                             const std::vector<size_t>& samples, const PreprocessSpec& spec, const EvalOptions& options) {
  if (group == nullptr || group->world_size() == 1) return predict(model, dataset, samples, spec, options);
  const int rank = group->rank(), world = group->world_size();
  const std::vector<size_t> shard = rank_shard(samples, rank, world, /*pad=*/false);
  const Predictions mine = predict(model, dataset, shard, spec, options);
  // One row per sample: [loaded, loss, probabilities...]; each rank fills its rows, a sum joins them.
  const auto classes = static_cast<int64_t>(dataset.classes.size());
  torch::Tensor table = torch::zeros({static_cast<int64_t>(samples.size()), classes + 2}, torch::kFloat64);
  auto rows = table.accessor<double, 2>();
  size_t next = 0;  // predict() keeps the shard's order and leaves unreadable samples out
  for (size_t k = 0; k < shard.size() && next < mine.samples.size(); ++k) {
    if (mine.samples[next] != shard[k]) continue;
    const auto row = static_cast<int64_t>(k * static_cast<size_t>(world) + static_cast<size_t>(rank));
    rows[row][0] = 1.0;
    rows[row][1] = mine.losses[next];
    for (int64_t c = 0; c < classes; ++c) rows[row][c + 2] = mine.probabilities[next][static_cast<size_t>(c)];
    ++next;
  }
  group->all_reduce_sum(table);
  rows = table.accessor<double, 2>();
  Predictions all;
  double loss_sum = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    const auto row = static_cast<int64_t>(i);
    if (rows[row][0] < 0.5) continue;
    all.samples.push_back(samples[i]);
    all.labels.push_back(dataset.samples[samples[i]].label);
    all.losses.push_back(rows[row][1]);
    all.probabilities.emplace_back();
    for (int64_t c = 0; c < classes; ++c) all.probabilities.back().push_back(rows[row][c + 2]);
    loss_sum += rows[row][1];
  }
  all.mean_loss = all.samples.empty() ? 0.0 : loss_sum / double(all.samples.size());
  for (const auto& text : group->all_gather_text(nlohmann::json(mine.errors).dump())) {
    for (const auto& e : nlohmann::json::parse(text)) all.errors.push_back(e.get<std::string>());
  }
  return all;
}

}  // namespace loupe::train
