// Errors of the shared core. Every failure the core reports is a loupe::Error whose message
// names the problem in words a user can act on ("PNG header declares 100000x100000 pixels ...").
// The code lets callers (CLI exit codes, the web page's status column, tests) branch on the kind.
#pragma once

#include <stdexcept>
#include <string>

namespace loupe {

enum class ErrorCode {
  EmptyInput,       // zero bytes
  UnknownFormat,    // not a PNG/JPEG/BMP/TIFF signature
  CorruptImage,     // signature fine, but the header or data is truncated or inconsistent
  ImageTooLarge,    // declared pixel count above DecodeLimits::max_pixels (checked before allocating)
  ImageTooSmall,    // below DecodeLimits::min_side
  UnsupportedImage, // a valid file of a kind the build cannot decode (e.g. BigTIFF, 32-bit float)
  InvalidSpec,      // a PreprocessSpec (or its JSON) with a missing, unknown or out-of-range key
  InvalidArgument,  // a caller error, e.g. a class index out of range
  Io,               // a file could not be read
};

const char* to_string(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace loupe
