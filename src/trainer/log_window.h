// What one log row of drift_train reports: the averages over the steps since the previous row
// (loss, gradient norm, drift norm per temperature, diversity per feature key), the throughput,
// the ETA and the share of time per phase. The trainer adds every step and closes the window
// when a row is due; the row goes to metrics.jsonl / TensorBoard (`values`) and the log (`line`).
// Not here: writing the metrics files (trainer/metrics.h), the step itself (trainer/step.h).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/timer.h"    // PhaseTimes, Stopwatch
#include "drift/features.h"  // TotalLoss
#include "trainer/config.h"  // ObjectiveConfig

namespace driftlab {

class LogWindow {
 public:
  // `objective`: its temperatures name the drift-norm columns; its warm-up is shown in the line.
  // `samples_per_step`: generated rows per step (all ranks), for the throughput.
  LogWindow(const ObjectiveConfig& objective, int64_t samples_per_step);

  // After every step: its loss and gradient norm (before clipping).
  void add(const drift::TotalLoss& total, double grad_norm);

  struct Row {
    std::map<std::string, double> values;  // loss, grad_norm, lr, samples_per_s, drift_norm/*, spread/*, time_share/*
    std::string line;                      // the log line
  };
  // The row after step `done` (1-based) of `total_steps` at learning rate `lr`, with the phase
  // times of the window; then the window starts over (the phase times too).
  Row close(int64_t done, int64_t total_steps, double lr, PhaseTimes& phases);

 private:
  const ObjectiveConfig objective_;
  const int64_t samples_per_step_;
  Stopwatch clock_;
  int64_t steps_ = 0;
  double loss_ = 0, grad_norm_ = 0;
  std::vector<double> drift_norm_;                            // per temperature: sum over steps
  std::map<std::string, std::pair<double, int64_t>> spread_;  // per key: sum of spread ratios, steps
  std::vector<std::string> key_order_;                        // keys in the order of the loss
};

}  // namespace driftlab
