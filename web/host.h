// What the app asks of the browser. Every request returns at once; the answer comes back later as
// a call into app_logic.h (on_ort_session, on_ort_run, on_image_file_read, ...). main.cpp
// implements it with the JavaScript bridges (ort_bridge.h, image_files.h, model_files.h, page.h);
// the native tests (tests/web/) with a stand-in that records the requests and answers them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace loupe_web {

class Host {
 public:
  virtual ~Host() = default;

  // image_files.h: read one opened file (answered by on_image_file_read), or open a picker. `frame`:
  // which frame of a multi-frame DICOM file to hand over (0-based; other files ignore it).
  virtual void read_image_file(int request, int file_index, int frame) = 0;
  virtual void open_image_picker(bool folder) = 0;
  // model_files.h: the picker for a .onnx file, or one shipped model (answered by on_model_file).
  virtual void open_model_picker() = 0;
  virtual void open_shipped_model(const std::string& file) = 0;
  // ort_bridge.h: a session on a model's bytes, weights hashed (answered by on_ort_session); a run
  // of one input tensor (answered by on_ort_run); closing a session.
  virtual void create_session(int request, const uint8_t* bytes, size_t size, const std::string& weight_ranges_json) = 0;
  virtual void run_model(int request, int session, const float* input, size_t count, const std::string& dims_json,
                         const std::string& outputs_json) = 0;
  virtual void release_session(int session) = 0;
  // page.h: the SHA-256 (hex) of a text, with the browser's crypto.subtle (answered by on_sha256).
  virtual void sha256(int request, const std::string& text) = 0;
  // page.h: a download made in the tab, and the time.
  virtual void download(const std::string& file_name, const std::string& mime_type, const std::string& text) = 0;
  virtual void download_bytes(const std::string& file_name, const std::string& mime_type, const std::vector<uint8_t>& bytes) = 0;
  virtual std::string now_iso8601() = 0;
};

}  // namespace loupe_web
