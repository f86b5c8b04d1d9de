// Atomic file writes (atomic_file.h).
#include "loupe/train/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "loupe/error.h"

namespace fs = std::filesystem;

namespace loupe::train {

void write_file_atomic(const std::string& path, const std::function<void(const Sink&)>& fill) {
  const std::string tmp = path + ".tmp";
  int error = 0;
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) error = errno;
  const auto sink = [&](const void* data, size_t n) -> size_t {
    const char* p = static_cast<const char*>(data);
    for (size_t left = n; left > 0 && error == 0;) {
      const ssize_t w = ::write(fd, p, left);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) error = w < 0 ? errno : EIO;
      else {
        p += w;
        left -= static_cast<size_t>(w);
      }
    }
    return n;
  };
  std::string failure;
  if (error == 0) {
    try {
      fill(sink);
    } catch (const std::exception& e) {
      failure = e.what();
    }
    if (error == 0 && failure.empty() && ::fsync(fd) != 0) error = errno;
  }
  if (fd >= 0 && ::close(fd) != 0 && error == 0) error = errno;
  if (error != 0 || !failure.empty()) {
    ::unlink(tmp.c_str());
    std::string cause = error ? std::strerror(error) : failure;
    if (error == ENOSPC || error == EDQUOT) cause += " (the disk is full)";
    throw Error(ErrorCode::Io, path + ": write failed: " + cause + "; the previous " +
                                   fs::path(path).filename().string() + " is kept, nothing was replaced");
  }
  std::error_code renamed;
  fs::rename(tmp, path, renamed);
  if (renamed) {
    ::unlink(tmp.c_str());
    throw Error(ErrorCode::Io, path + ": cannot replace it: " + renamed.message() + "; the previous version is kept");
  }
}

void write_text_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, [&](const Sink& sink) { sink(text.data(), text.size()); });
}

void copy_file_atomic(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) throw Error(ErrorCode::Io, "cannot read " + from + " to copy it to " + to);
  write_file_atomic(to, [&](const Sink& sink) {
    std::vector<char> buffer(1 << 20);
    while (in) {
      in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
      if (in.gcount() > 0) sink(buffer.data(), static_cast<size_t>(in.gcount()));
    }
    if (in.bad()) throw Error(ErrorCode::Io, "reading " + from + " failed while copying it");
  });
}

void write_json_atomic(const std::string& path, const nlohmann::json& json) { write_text_atomic(path, json.dump(2) + "\n"); }

}  // namespace loupe::train
