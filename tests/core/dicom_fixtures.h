// DICOM files written with DCMTK from real images (../shared/data, or generated patterns when the
// data is missing), for the native DICOM tests and the page-parser parity test
// (tests/parity/dicom.test.mjs through dicom_dump). Native only: needs DCMTK's writer.
#pragma once

#include <string>
#include <vector>

#include "loupe/error.h"
#include "loupe/image.h"

namespace loupe::test {

struct DicomFixture {
  std::string name;      // file name in the folder (some have no extension)
  std::string path;
  std::string source;    // the image it was made from ("pattern" when no data set was found)
  // Success: the Image decode_image() must give, and how exactly.
  Image expected;
  int tolerance = 0;     // max abs difference per sample (0: exact; lossy JPEG: a few levels)
  bool native_only = false;  // a syntax only DCMTK decompresses (the browser refuses it)
  int frame = 0;         // the frame to read (0-based): the same file may be listed for several
  // Failure: the error code and a substring of its message.
  bool fails = false;
  ErrorCode error = ErrorCode::CorruptImage;
  std::string error_contains;
};

// Writes every fixture into `folder` (which must exist). Patient attributes (name, ID, birth
// date) are filled in with made-up values, so tests can check they never come out.
std::vector<DicomFixture> write_dicom_fixtures(const std::string& folder);

// The made-up patient values written into every fixture.
extern const char* const kFixturePatientName;
extern const char* const kFixturePatientId;
extern const char* const kFixtureBirthDate;

}  // namespace loupe::test
