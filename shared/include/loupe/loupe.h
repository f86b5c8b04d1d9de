// Loupe's shared core: everything the native tools and the browser compute the same way.
//
//   #include <loupe/loupe.h>
//
//   loupe::OnnxModelInfo model = loupe::read_onnx_model(onnx.data(), onnx.size(), "model.onnx");
//   const loupe::ModelCard& card = model.card;                         // onnx_model.h, model_card.h
//   loupe::Image image = loupe::decode_image(bytes);                   // image.h
//   loupe::Tensor input = loupe::preprocess(image, card.preprocess);   // preprocess.h
//   ... run the model (ONNX Runtime natively or in the browser), asking for prediction_outputs(card) ...
//   loupe::Prediction p = loupe::interpret_outputs(card, outputs);    // prediction.h
//   std::string csv = loupe::results_csv(rows, card);                 // results.h
//   auto site = loupe::calibrate_for_site(card, loupe::labelled_logits(rows, classes), {});  // calibration.h
//   loupe::ConfusionMatrix cm(class_names); cm.add(truth, predicted);  // metrics.h
//   std::cout << loupe::classification_report(cm).to_text();
#pragma once

#include "loupe/calibration.h"
#include "loupe/error.h"
#include "loupe/image.h"
#include "loupe/metrics.h"
#include "loupe/model_card.h"
#include "loupe/onnx_model.h"
#include "loupe/prediction.h"
#include "loupe/preprocess.h"
#include "loupe/results.h"
#include "loupe/version.h"
