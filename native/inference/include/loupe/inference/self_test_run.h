// Running a model's own self-test (shared/include/loupe/self_test.h) with ONNX Runtime: what
// `loupe export` checks before it writes a file, `loupe inspect --verify` prints and `loupe predict`
// requires before classifying anything.
//
//   const loupe::inference::OrtSession session("model.onnx");
//   loupe::SelfTestResult r = loupe::inference::run_self_test(info.card, session);
//   std::puts(r.summary().c_str());
#pragma once

#include "loupe/inference/ort_session.h"
#include "loupe/model_card.h"
#include "loupe/self_test.h"

namespace loupe::inference {

// Checks the record's SHA-256, runs its synthetic images through `session` in one batch and
// compares with the recorded outputs. A changed record fails before anything runs. Throws
// Error(InvalidArgument) when the card has no self-test.
SelfTestResult run_self_test(const ModelCard& card, const OrtSession& session);

}  // namespace loupe::inference
