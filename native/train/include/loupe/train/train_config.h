// A training run's configuration: one JSON file under models/configs/ reproduces one experiment.
//
//   {
//     "name": "seed004-efficientnet_b0",
//     "extends": "base.json",                      // optional: JSON merge patch onto another config
//     "data": {"path": "${LOUPE_DATA_DIR}/all-leukemia", "class_names": [], "include_classes": [],
//              "max_per_class": 0},
//     "split": {"val": 0.1, "test": 0.1, "seed": 42},
//     "balancing": "none",                          // none | undersample | oversample | class_weights
//     "preprocess": {...PreprocessSpec...},
//     "augment": {...AugmentSpec...},
//     "model": {...ModelConfig...},
//     "pretrained": {"path": "", "freeze_backbone_epochs": 0},
//     "optimizer": {"name": "adam", "lr": 1e-4},
//     "schedule": {"kind": "plateau", "patience": 1, "factor": 0.1},
//     "early_stopping": {"patience": 3, "monitor": "val_loss", "restore_best": true},
//     "epochs": 30, "batch_size": 32, "seed": 42,
//     "threads": 0, "workers": 2, "device": "auto",  // 0 threads = all cores
//     "precision": "auto", "channels_last": "auto",   // see precision.h: fp16 + NHWC on CUDA
//     "selection_metric": "val_loss",               // which epoch is "best" (and grid ranking)
//     "distributed": {"backend": "auto", "timeout_s": 300, "bucket_mb": 25},  // several ranks (distributed.h)
//     "grid": {"optimizer.name": ["adam", "rmsprop"], "optimizer.lr": [1e-4, 3e-4], "epochs": [20, 30]},
//     "intended_images": {"modality": ["CR", "DX"], "body_part": ["CHEST"], "view_position": ["PA", "AP"]}
//   }                                               // ^ optional: the card's IntendedImages (model_card.h)
// Every key is checked: an unknown or malformed one is an error naming it ("optimizer.lr: ...").
// "${VAR}" in data.path expands from the environment; LOUPE_DATA_DIR defaults to ../shared/data.
#pragma once

#include <cstdint>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "loupe/model_card.h"
#include "loupe/data/augment.h"
#include "loupe/data/balance.h"
#include "loupe/data/dataset.h"
#include "loupe/models/model_config.h"
#include "loupe/preprocess.h"
#include "loupe/train/optim.h"

namespace loupe::train {

// How a run on several ranks (WORLD_SIZE > 1, distributed.h) communicates. One process ignores it.
struct DistributedConfig {
  std::string backend = "auto";  // auto (nccl when every rank trains on CUDA, else gloo), gloo, nccl
  int timeout_s = 300;           // rendezvous, collectives and a lost rank are given this long
  double bucket_mb = 25;         // gradients are all-reduced in buckets of this size during backward
  nlohmann::json to_json() const;
  static DistributedConfig from_json(const nlohmann::json& json);
};

struct TrainConfig {
  std::string name = "run";
  std::string description;
  std::string data_path;
  std::vector<std::string> class_names;  // for .npz data (integer labels)
  std::vector<std::string> include_classes;  // keep only these classes (seed 003: COVID vs normal)
  int max_per_class = 0;                 // > 0: keep at most this many images per class (smoke runs)
  data::SplitSpec split;
  data::Balancing balancing = data::Balancing::None;
  PreprocessSpec preprocess;
  data::AugmentSpec augment;
  models::ModelConfig model;
  std::string pretrained_path;
  int freeze_backbone_epochs = 0;  // train only the head for this many epochs, then everything
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  EarlyStoppingConfig early_stopping;
  int epochs = 10;
  int batch_size = 32;
  uint64_t seed = 42;
  int threads = 0;
  int workers = 2;
  std::string device = "auto";
  std::string precision = "auto";                      // auto, fp32, bf16, fp16 (precision.h)
  nlohmann::json channels_last = "auto";               // "auto", true or false
  std::string selection_metric = "val_loss";  // val_loss, val_accuracy, val_balanced_accuracy
  DistributedConfig distributed;
  nlohmann::json grid;  // {"dotted.key": [values...]}; empty for a single run
  // The DICOM images the training data stands for, written into the exported model's card.
  std::optional<IntendedImages> intended_images;

  // The fully resolved configuration (defaults filled in), as written to the run folder.
  nlohmann::json to_json() const;
  // Strict parse of a resolved document (no "extends").
  static TrainConfig from_json(const nlohmann::json& json);
};

// Reads a config file, applies "extends" chains (paths relative to the including file) and
// returns the merged JSON. Throws loupe::Error naming the file and the problem.
nlohmann::json load_config_json(const std::string& path);
TrainConfig load_config(const std::string& path);

// Sets a dotted key ("optimizer.lr") in a config document; used by grids and --set overrides.
void set_dotted(nlohmann::json& document, const std::string& dotted_key, const nlohmann::json& value);

// Expands ${VAR} from the environment (LOUPE_DATA_DIR defaults to ../shared/data).
std::string expand_variables(const std::string& text);

}  // namespace loupe::train
