// Files written so that a crash or a full disk never leaves a truncated checkpoint, report or
// results file behind: every write goes to PATH.tmp first (POSIX write, fsync), then is renamed
// into place. On any failure PATH.tmp is removed, PATH keeps its previous content, and Error(Io)
// names the file and the cause ("No space left on device (the disk is full)").
#pragma once

#include <cstddef>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

namespace loupe::train {

// Receives the bytes to write; always reports success (see write_file_atomic).
using Sink = std::function<size_t(const void*, size_t)>;

// Writes what `fill` produces. `fill` gets a sink that always reports success: LibTorch 1.13's zip
// writer aborts the process (an exception from its destructor) when a write comes back short, so
// the first error is only recorded and later bytes are dropped.
void write_file_atomic(const std::string& path, const std::function<void(const Sink&)>& fill);

void write_text_atomic(const std::string& path, const std::string& text);

// A copy of the file at `from` (Error(Io) naming it when it cannot be read).
void copy_file_atomic(const std::string& from, const std::string& to);

// json.dump(2) and a newline.
void write_json_atomic(const std::string& path, const nlohmann::json& json);

}  // namespace loupe::train
