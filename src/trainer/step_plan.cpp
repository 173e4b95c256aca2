// Step plans (see step_plan.h).
#include "trainer/step_plan.h"

#include <cmath>
#include <numeric>

#include "common/check.h"
#include "common/rng.h"

namespace driftlab {

double alpha_from_uniform(double u, double a_max, double k) {
  if (a_max <= 1.0) return 1.0;
  if (std::fabs(k - 1.0) < 1e-12) return std::pow(a_max, u);
  const double e = 1.0 - k;
  return std::pow(1.0 - u * (1.0 - std::pow(a_max, e)), 1.0 / e);
}

StepPlan plan_step(uint64_t seed, uint64_t step, int64_t num_classes, int64_t classes_per_step,
                   const GuidanceOptions& g) {
  // The flags are validated once, by validate(TrainConfig); these are the function's preconditions.
  DL_CHECK(classes_per_step >= 1, "plan_step: classes_per_step must be >= 1, got " << classes_per_step);
  DL_CHECK(g.alpha_max >= 1.0 && g.alpha_one_frac >= 0 && g.alpha_one_frac <= 1,
           "plan_step: guidance needs alpha_max >= 1 and alpha_one_frac in [0, 1]");
  StepPlan plan;
  const int64_t n = std::max<int64_t>(num_classes, 1);
  std::vector<int64_t> pool(n);
  std::iota(pool.begin(), pool.end(), 0);
  if (classes_per_step >= n) {
    plan.classes = pool;
  } else {
    // Partial Fisher-Yates: the first classes_per_step entries are a uniform random subset.
    rng::Draw d(rng::Key{seed, rng::Stream::kClass, step, 0});
    for (int64_t i = 0; i < classes_per_step; ++i) std::swap(pool[i], pool[i + d.below(n - i)]);
    plan.classes.assign(pool.begin(), pool.begin() + classes_per_step);
  }
  for (size_t i = 0; i < plan.classes.size(); ++i) {
    rng::Draw d(rng::Key{seed, rng::Stream::kAlpha, step, i});
    const double force_one = d.uniform(), u = d.uniform();
    plan.alphas.push_back(force_one < g.alpha_one_frac ? 1.0 : alpha_from_uniform(u, g.alpha_max, g.alpha_power));
  }
  return plan;
}

}  // namespace driftlab
