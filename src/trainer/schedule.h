// Everything a training step takes from its step number, as one pure function of (config, data
// set's class count, step): the classes and guidance scales the step trains on, the kernel
// temperatures (broadened during the warm-up), the learning rate, and whether AdamW's moments
// restart before the step's update. Every rank, and the prefetching loader ahead of them,
// compute the same schedule for the same step; nothing here keeps state.
//
//   const StepSchedule s = schedule(config, data.spec().num_classes, t);
//   run_step(ctx, t, s, batch);  if (s.restart_moments) opt.reset_moments();  opt.step(s.lr);
#pragma once

#include <cstdint>
#include <vector>

#include "trainer/config.h"
#include "trainer/step_plan.h"

namespace driftlab {

struct StepSchedule {
  StepPlan plan;               // classes and their guidance scales (plan_step)
  std::vector<double> taus;    // kernel temperatures of this step
  double lr = 0;               // learning rate of this step's update
  bool restart_moments = false;  // AdamW's moments restart before this step's update
};

// `c` validated (validate(TrainConfig)); `num_classes` of the data set (0: unlabelled).
StepSchedule schedule(const TrainConfig& c, int64_t num_classes, int64_t t);

// The classes one step trains on: --num_classes_per_step, at most the data set's class count.
int64_t classes_per_step(const TrainConfig& c, int64_t num_classes);

// The pieces of schedule(), tested on their own: the temperatures of step t (0-based) under the
// warm-up of `o`, and whether step t starts from fresh AdamW moments (the first step after the
// warm-up, with tau_warmup_reset).
std::vector<double> step_taus(const ObjectiveConfig& o, int64_t t);
bool restarts_moments(const ObjectiveConfig& o, int64_t t);

}  // namespace driftlab
