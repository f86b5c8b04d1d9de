// A model's self-test with ONNX Runtime (self_test_run.h).
#include "loupe/inference/self_test_run.h"

#include "loupe/error.h"
#include "loupe/inference/sha256.h"

namespace loupe::inference {

SelfTestResult run_self_test(const ModelCard& card, const OrtSession& session) {
  if (!card.self_test) throw Error(ErrorCode::InvalidArgument, "the model card has no self-test");
  const SelfTest& test = *card.self_test;
  SelfTestResult result;
  result.images = static_cast<int>(test.images.size());
  const std::string actual = sha256_hex(self_test_digest_text(test));
  if (actual != test.sha256) {
    result.problem = "the self-test record does not match its SHA-256 (" + test.sha256.substr(0, 12) + "... vs " +
                     actual.substr(0, 12) + "...): the file was modified or damaged";
    return result;
  }
  return check_self_test(test, session.run(self_test_input(test, card.preprocess), test.output_names()));
}

}  // namespace loupe::inference
