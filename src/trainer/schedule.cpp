// The per-step schedule (see schedule.h).
#include "trainer/schedule.h"

#include <algorithm>

#include "common/optim.h"  // learning_rate

namespace driftlab {

std::vector<double> step_taus(const ObjectiveConfig& o, int64_t t) {
  std::vector<double> taus = o.taus;
  if (t < o.tau_warmup_steps)
    for (double& tau : taus) tau *= o.tau_warmup_scale;
  return taus;
}

bool restarts_moments(const ObjectiveConfig& o, int64_t t) {
  return o.tau_warmup_reset && o.tau_warmup_steps > 0 && t == o.tau_warmup_steps;
}

int64_t classes_per_step(const TrainConfig& c, int64_t num_classes) {
  return std::min<int64_t>(c.batch.classes_per_step, std::max<int64_t>(num_classes, 1));
}

StepSchedule schedule(const TrainConfig& c, int64_t num_classes, int64_t t) {
  StepSchedule s;
  s.plan = plan_step(c.seed, static_cast<uint64_t>(t), num_classes, classes_per_step(c, num_classes), c.batch.guidance);
  s.taus = step_taus(c.objective, t);
  s.lr = learning_rate(t, c.optim.schedule);
  s.restart_moments = restarts_moments(c.objective, t);
  return s;
}

}  // namespace driftlab
