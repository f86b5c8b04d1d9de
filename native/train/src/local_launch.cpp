// Local ranks for `loupe train --nproc N` (local_launch.h).
#include "loupe/train/local_launch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "loupe/error.h"

extern char** environ;

namespace loupe::train {

namespace {

volatile sig_atomic_t g_signals_received = 0;  // Ctrl-C / SIGTERM at the launcher, counted
volatile sig_atomic_t g_last_signal = 0;

extern "C" void on_launcher_signal(int signal) {
  g_last_signal = signal;
  g_signals_received = g_signals_received + 1;
}

// A port nobody listens on now (the kernel's choice), for the rendezvous store.
int free_local_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error(ErrorCode::Io, std::string("--nproc: cannot open a socket: ") + std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  const int error = errno;
  close(fd);
  if (!ok) throw Error(ErrorCode::Io, std::string("--nproc: cannot find a free port: ") + std::strerror(error));
  return ntohs(address.sin_port);
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int signal = WTERMSIG(status);
    const char* name = strsignal(signal);
    return "was killed by signal " + std::to_string(signal) + " (" + (name ? name : "?") + ")";
  }
  return "stopped (status " + std::to_string(status) + ")";
}

bool succeeded(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

}  // namespace

int launch_local_ranks(const std::string& name, int nproc, const std::vector<std::string>& arguments, int grace_seconds) {
  if (nproc < 1) throw Error(ErrorCode::InvalidArgument, "--nproc " + std::to_string(nproc) + ": expected 1 or more ranks");
  if (const char* world = std::getenv("WORLD_SIZE"); world && *world) {
    throw Error(ErrorCode::InvalidArgument, std::string("--nproc starts its own ranks, but WORLD_SIZE=") + world +
                                                " is already set (by another launcher?): use one or the other");
  }
  std::error_code error;
  const std::string program = std::filesystem::read_symlink("/proc/self/exe", error).string();
  if (error) throw Error(ErrorCode::Io, "--nproc: cannot find this program's path: " + error.message());
  const char* port_variable = std::getenv("MASTER_PORT");
  const int port = port_variable && *port_variable ? std::atoi(port_variable) : free_local_port();

  // Environments and argument vectors are built before any process starts.
  std::vector<std::string> inherited;
  for (char** e = environ; *e; ++e) {
    const std::string entry = *e;
    const std::string variable = entry.substr(0, entry.find('='));
    if (variable != "RANK" && variable != "WORLD_SIZE" && variable != "LOCAL_RANK" && variable != "LOCAL_WORLD_SIZE" &&
        variable != "MASTER_ADDR" && variable != "MASTER_PORT" && variable != "LOUPE_LAUNCHER_PID") {
      inherited.push_back(entry);
    }
  }
  std::vector<std::string> argv_text{program};
  argv_text.insert(argv_text.end(), arguments.begin(), arguments.end());
  std::vector<char*> argv;
  for (auto& a : argv_text) argv.push_back(a.data());
  argv.push_back(nullptr);

  // Handlers first (no SA_RESTART: waiting wakes up to forward the signal).
  struct sigaction action {};
  action.sa_handler = on_launcher_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attributes, 0);  // its own process group: the terminal's Ctrl-C skips it
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  posix_spawnattr_setsigdefault(&attributes, &defaults);

  std::vector<pid_t> pids(static_cast<size_t>(nproc), -1);
  std::vector<int> statuses(static_cast<size_t>(nproc), 0);
  std::vector<bool> running(static_cast<size_t>(nproc), false);
  std::string started;
  for (int rank = 0; rank < nproc; ++rank) {
    std::vector<std::string> env_text = inherited;
    env_text.push_back("RANK=" + std::to_string(rank));
    env_text.push_back("LOCAL_RANK=" + std::to_string(rank));
    env_text.push_back("WORLD_SIZE=" + std::to_string(nproc));
    env_text.push_back("LOCAL_WORLD_SIZE=" + std::to_string(nproc));
    env_text.push_back("MASTER_ADDR=127.0.0.1");
    env_text.push_back("MASTER_PORT=" + std::to_string(port));
    env_text.push_back("LOUPE_LAUNCHER_PID=" + std::to_string(getpid()));
    std::vector<char*> envp;
    for (auto& e : env_text) envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_t pid = -1;
    const int spawn_error = posix_spawn(&pid, program.c_str(), nullptr, &attributes, argv.data(), envp.data());
    if (spawn_error != 0) {
      for (int r = 0; r < rank; ++r) kill(pids[static_cast<size_t>(r)], SIGTERM);
      for (int r = 0; r < rank; ++r) waitpid(pids[static_cast<size_t>(r)], nullptr, 0);
      posix_spawnattr_destroy(&attributes);
      throw Error(ErrorCode::Io, "--nproc: cannot start rank " + std::to_string(rank) + ": " + std::strerror(spawn_error));
    }
    pids[static_cast<size_t>(rank)] = pid;
    running[static_cast<size_t>(rank)] = true;
    started += (rank ? ", rank " : "rank ") + std::to_string(rank) + " pid " + std::to_string(pid);
  }
  posix_spawnattr_destroy(&attributes);
  std::fprintf(stderr, "%s --nproc %d: %s (MASTER_ADDR 127.0.0.1, MASTER_PORT %d)\n", name.c_str(), nproc, started.c_str(),
               port);

  using Clock = std::chrono::steady_clock;
  int forwarded = 0, left = nproc, first_failed = -1;
  Clock::time_point terminate_at = Clock::time_point::max(), kill_at = Clock::time_point::max();
  while (left > 0) {
    // Every Ctrl-C (or SIGTERM) the launcher received goes to every rank still running, once.
    for (; forwarded < g_signals_received; ++forwarded) {
      for (int r = 0; r < nproc; ++r) {
        if (running[static_cast<size_t>(r)]) kill(pids[static_cast<size_t>(r)], g_last_signal == SIGTERM ? SIGTERM : SIGINT);
      }
    }
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      for (int r = 0; r < nproc; ++r) {
        if (pids[static_cast<size_t>(r)] != pid) continue;
        running[static_cast<size_t>(r)] = false;
        statuses[static_cast<size_t>(r)] = status;
        --left;
        if (!succeeded(status) && first_failed < 0) {
          first_failed = r;
          std::fprintf(stderr, "%s --nproc: rank %d (pid %d) %s; waiting up to %d s for the other ranks to stop\n",
                       name.c_str(), r, static_cast<int>(pid), describe_status(status).c_str(), grace_seconds);
          terminate_at = Clock::now() + std::chrono::seconds(grace_seconds);
        }
      }
      continue;
    }
    const auto now = Clock::now();
    if (now >= terminate_at) {  // the others did not notice in time: end them
      for (int r = 0; r < nproc; ++r) {
        if (running[static_cast<size_t>(r)]) kill(pids[static_cast<size_t>(r)], SIGTERM);
      }
      terminate_at = Clock::time_point::max();
      kill_at = now + std::chrono::seconds(5);
    }
    if (now >= kill_at) {
      for (int r = 0; r < nproc; ++r) {
        if (running[static_cast<size_t>(r)]) kill(pids[static_cast<size_t>(r)], SIGKILL);
      }
      kill_at = Clock::time_point::max();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }

  std::string failures;
  bool interrupted_by_signal = false;
  for (int r = 0; r < nproc; ++r) {
    const int status = statuses[static_cast<size_t>(r)];
    if (succeeded(status)) continue;
    interrupted_by_signal |= WIFSIGNALED(status) && WTERMSIG(status) == SIGINT;
    failures += (failures.empty() ? "" : "; ") + std::string("rank ") + std::to_string(r) + " " + describe_status(status);
  }
  if (failures.empty()) return 0;
  std::fprintf(stderr, "%s --nproc: %s (rank %d failed first)\n", name.c_str(), failures.c_str(), first_failed);
  return interrupted_by_signal ? 130 : 1;
}

void stop_with_local_launcher() {
  const char* launcher = std::getenv("LOUPE_LAUNCHER_PID");
  if (launcher == nullptr || *launcher == '\0') return;
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  // The launcher may have gone between starting this rank and the line above.
  if (getppid() != static_cast<pid_t>(std::atoi(launcher))) std::_Exit(1);
}

}  // namespace loupe::train
