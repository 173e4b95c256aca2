// One training step's computation, with explicit inputs and outputs (docs/ARCHITECTURE.md, 'One
// training step'): this rank's generator inputs from (seed, step, plan), the generator forward,
// the encoder features of generated and real rows, the gathers, the feature keys, the drift loss
// and its backward. It leaves the gradient of the GLOBAL loss in the generator's .grad() (before
// the gradient sync, which averages over ranks). No optimizer, no I/O, no cadence: the Trainer's
// loop does those (logs, pictures, checkpoints, signals).
#pragma once

#include <cstdint>

#include <torch/types.h>

#include "comm/communicator.h"
#include "common/precision.h"
#include "common/timer.h"
#include "data/loader.h"
#include "drift/features.h"
#include "drift/field.h"
#include "drift/reducer.h"
#include "models/encoders.h"
#include "models/generators.h"
#include "trainer/config.h"
#include "trainer/schedule.h"
#include "trainer/step_plan.h"

namespace driftlab {

// What stays the same from step to step (what changes with the step is its StepSchedule).
struct StepContext {
  BatchConfig batch;                 // N (gen_per_class), U (unc_per_class)
  drift::FieldOptions field;         // floor, path, workspace (the temperatures: the schedule's)
  drift::KeyOptions keys;            // which feature keys of the encoder maps
  uint64_t seed = 0;
  int64_t num_classes = 0;           // of the data set; 0: unconditional (labels = the null class)
  models::GeneratorImpl* gen = nullptr;
  models::EncoderImpl* encoder = nullptr;  // null: the identity (the raw samples are the only key)
  comm::Communicator* comm = nullptr;      // the gathers of features (a world of one: no copies)
  drift::Reducer* reducer = nullptr;       // the field's global reductions; null: one process
  torch::Device device = torch::kCPU;
  // The networks' forward passes (and so their backward) in this precision; their outputs are
  // cast to fp32 before the keys, the field and the loss.
  Precision precision = Precision::kFp32;
};

struct StepStats {
  drift::TotalLoss total;  // the global loss value and per-key results (loss tensor detached after backward)
};

// Runs the step for step index t: `s` is schedule(config, num_classes, t) (its plan and
// temperatures are used here; its learning rate and moment restart are the optimizer's) and
// `batch` this rank's slice of the real rows that plan asks for (data::load_step or the
// prefetching loader). Collective.
// `phases` (optional) receives the time of data-independent phases: generator, encoder,
// communication, drift, backward.
StepStats run_step(const StepContext& ctx, int64_t t, const StepSchedule& s, const data::StepBatch& batch,
                   PhaseTimes* phases = nullptr);

// The real rows that `plan` asks for (what the loader reads for step t).
data::StepRequest step_request(const StepContext& ctx, int64_t t, const StepPlan& plan);

}  // namespace driftlab
