// What one training step works on, as pure functions of (seed, step): which classes, which
// guidance scale per class, and which rows of the global batch each rank owns. Every rank
// computes the same plan, whatever the world size (docs/ARCHITECTURE.md, 'World-size
// invariance').
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "common/slice.h"

namespace driftlab {

struct GuidanceOptions {
  double alpha_max = 4.0;       // alpha is drawn in [1, alpha_max]
  double alpha_power = 3.0;     // with density proportional to alpha^-alpha_power
  double alpha_one_frac = 0.0;  // share of classes forced to alpha = 1 (no guidance)
};

struct StepPlan {
  std::vector<int64_t> classes;  // distinct class ids, one drift problem each
  std::vector<double> alphas;    // guidance scale per class
};

// `classes_per_step` distinct classes out of `num_classes` (all of them, in order, when
// classes_per_step >= num_classes; a single class 0 when num_classes <= 1).
StepPlan plan_step(uint64_t seed, uint64_t step, int64_t num_classes, int64_t classes_per_step,
                   const GuidanceOptions& guidance);

// Inverse CDF of the density proportional to a^-k on [1, a_max] at u in (0, 1).
double alpha_from_uniform(double u, double a_max, double k);

// The CFG weight of the unconditional negatives is drift::cfg_unconditional_weight; the split of
// a step's rows over ranks is rank_slice (common/slice.h).

}  // namespace driftlab
