// The typed configuration of a training run. drift_train parses its flags into a TrainConfig
// once (trainer/train_flags.cpp, the only place that reads them) and hands it down; nothing
// under src/trainer/ reads a flag. validate() checks it once, with errors that name the flag.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "checkpoint.pb.h"
#include "common/optim.h"
#include "data/format.h"
#include "drift/features.h"
#include "drift/field.h"
#include "models/config.h"
#include "trainer/step_plan.h"

namespace driftlab {

// The per-step sets: which classes, how many rows of each kind, guidance.
struct BatchConfig {
  int64_t classes_per_step = 1;  // capped at the data set's class count
  int64_t gen_per_class = 256;   // N, split across ranks
  int64_t pos_per_class = 256;   // P
  int64_t unc_per_class = 0;     // U (CFG negatives); 0: no guidance
  GuidanceOptions guidance;
};

// The drifting objective: kernel temperatures and options, the feature keys. Its record in a
// checkpoint is proto::ObjectiveSpec, filled from the flags of the same names.
struct ObjectiveConfig {
  std::vector<double> taus = drift::parse_taus(drift::kDefaultTaus);
  bool floor = true;
  drift::Path path = drift::Path::kAuto;
  bool keys_per_location = true;
  bool keys_patch = true;
  // Temperature warm-up: steps t < tau_warmup_steps use taus * tau_warmup_scale, broad kernels
  // first (every mode reaches the generated samples), then the taus. 0: off.
  int64_t tau_warmup_steps = 0;
  double tau_warmup_scale = 10.0;
  // At the end of the warm-up, AdamW's moments restart from zero: the broad kernels' gradients
  // are several times larger, and their second moments would shrink the steps long after.
  bool tau_warmup_reset = true;
};

struct OptimConfig {
  LrSchedule schedule;  // schedule.total is the run's step count
  AdamWOptions adam;
  double grad_clip = 2.0;  // 0: off
  double ema_decay = 0.999;
  std::vector<double> ema_extra_decays;  // further averages kept beside the main one (checkpoint "ema@D/")
};

struct CheckpointConfig {
  int64_t every = 500;
  int keep_last = 3;
  int64_t keep_every = 0;
  std::string resume = "none";        // none | auto | a step directory
  bool allow_objective_change = false;  // resume even when objective settings differ (warned)
  int64_t test_pause_ms = 0;          // testing only: pause between the shards and the manifest
};

struct OutputConfig {
  std::string run_dir = "runs/default";
  int64_t log_every = 50;
  int64_t image_every = 500;  // 0: only at the end
  int picture_classes = 10;
  double picture_alpha = 1.0;
};

struct RuntimeConfig {
  int threads = 0;              // 0: $DRIFTLAB_THREADS, else cores / ranks on the node
  std::string backend = "auto";  // auto | mpi | nccl
  // auto (the communicator's device) | cpu | cuda | cuda:N (comm::select_device)
  std::string device = "auto";
  int64_t prefetch = 2;         // steps of real data prepared ahead (0: none)
  int64_t check_sync_every = 0;  // replica check every this many steps (0: never)
  // Deadline of every collective in seconds (0: off); heartbeat records in run_dir/watchdog.
  double collective_timeout = 600;
  // auto | fp32 | bf16 (common/precision.h): the networks' forward passes under bf16 autocast;
  // the field, the loss, weights, optimizer state and EMA stay fp32.
  std::string precision = "auto";
};

struct TrainConfig {
  std::string data;  // the training data set (a shard folder, one shard or a glob)
  int64_t steps = 2000;
  uint64_t seed = 0;
  // The generator as requested (gen_* keys of GeneratorConfig::from_map, only those the user
  // set; sample shape and classes come from the data set when absent) and the encoder as
  // requested (enc_in_channels 0: the data set's channels).
  models::FlagMap generator;
  models::EncoderRequest encoder;
  BatchConfig batch;
  ObjectiveConfig objective;
  OptimConfig optim;
  CheckpointConfig checkpoint;
  OutputConfig output;
  RuntimeConfig runtime;
  // Every project flag's value as given (name -> text): the run record of the checkpoint
  // manifest (the resolved model overrides its gen_* / enc_* entries) and what resume compares.
  std::map<std::string, std::string> record;
};

// The typed run record of a checkpoint (proto/checkpoint.proto RunConfig): the flags as given,
// the resolved generator and encoder, the objective (every ObjectiveSpec field from the flag of
// its name in config.record) and the data set's schema (class counts are added by the trainer).
proto::RunConfig make_run_record(const TrainConfig& config, const models::GeneratorConfig& generator,
                                 const models::EncoderConfig& encoder, const data::DatasetSpec& data);

// Throws UserError naming the flag of the first invalid value (world: the ranks of this run).
void validate(const TrainConfig& c, int world);

// Resume compatibility of two run records (flag name -> value, ckpt::flat_record): the
// checkpoint's and this run's. Model entries (gen_*, encoder, enc_*) must be equal; objective
// entries (the fields of proto::ObjectiveSpec: temperatures and their warm-up, kernel floor,
// feature keys, per-class set sizes, classes per step, guidance distribution) must be equal
// unless allow_objective_change. Returns every refused difference, one "--name: 'then' -> 'now'"
// line each (empty: compatible); `allowed` receives the differences that are only warned about
// (--steps, --resume and --threads never count).
enum class RecordKey { kModel, kObjective, kOther };
RecordKey classify_record_key(const std::string& name);
std::vector<std::string> resume_conflicts(const std::map<std::string, std::string>& then,
                                          const std::map<std::string, std::string>& now, bool allow_objective_change,
                                          std::vector<std::string>* allowed);

}  // namespace driftlab
