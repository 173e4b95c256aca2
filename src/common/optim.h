// Optimisation pieces shared by the trainer and the encoder pretraining (models/mae.cpp): AdamW
// with decoupled weight decay, global-norm gradient clipping, an EMA of the weights and the
// warmup-then-constant learning-rate schedule.
//
// AdamW is written out here (rather than torch::optim::AdamW) so that its state is plain named
// tensors: checkpoints store and partition them directly, and a resumed run restores them
// exactly (bit-for-bit continuation).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

namespace driftlab {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

class AdamW {
 public:
  AdamW(std::vector<torch::Tensor> params, AdamWOptions options);
  // One update with learning rate `lr` from the parameters' .grad() (params without grad are skipped).
  void step(double lr);
  int64_t steps() const { return steps_; }
  void set_steps(int64_t s) { steps_ = s; }
  // Forgets the moment estimates: m = v = 0 and the bias correction restarts (the next step is
  // sized like a first step).
  void reset_moments();
  std::vector<torch::Tensor>& exp_avg() { return m_; }
  std::vector<torch::Tensor>& exp_avg_sq() { return v_; }

 private:
  std::vector<torch::Tensor> params_, m_, v_;
  AdamWOptions opt_;
  int64_t steps_ = 0;
};

// Scales all gradients so that their global L2 norm is at most max_norm (max_norm <= 0: no
// clipping). Returns the norm before clipping (float64 accumulation; NaN/Inf if a gradient is).
double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm);

// Sets every parameter's gradient to undefined (the next backward allocates it afresh).
void zero_grad(const std::vector<torch::Tensor>& params);

// Exponential moving average of parameters: shadow = d * shadow + (1 - d) * param, with
// d = decay, or with `warmup` d = min(decay, (1 + t) / (10 + t)) at update t = 1, 2, ... (short
// runs then do not keep most of the initialisation in the average; the trainer's EMA is plain).
class Ema {
 public:
  Ema(const std::vector<torch::Tensor>& params, double decay, bool warmup = false);
  void update(const std::vector<torch::Tensor>& params);
  // Copies the averages into `params` (same order and shapes as at construction).
  void copy_to(const std::vector<torch::Tensor>& params) const;
  std::vector<torch::Tensor>& shadow() { return shadow_; }
  double decay() const { return decay_; }

 private:
  std::vector<torch::Tensor> shadow_;
  double decay_;
  bool warmup_;
  int64_t updates_ = 0;
};

// Further averages beside the main one (drift_train --ema_extra_decays): checkpoints store the
// average of decay d under ema_group_prefix(d) ("ema@0.99/"), the main one under "ema/", so one
// run yields several averages to sample from (drift_sample --ema_decay). The prefix prints d with
// up to 10 significant digits: 0.99 and 0.990 name the same average.
std::string ema_group_prefix(double decay);
// The decay as the prefixes print it ("0.99"): equal texts name the same average.
std::string ema_decay_text(double decay);
// Parses a comma-separated list of decays in (0, 1) ("" gives none), each distinct and none equal
// to `main_decay` (the flag's value, named in errors as `flag`).
std::vector<double> parse_ema_decays(const std::string& text, double main_decay,
                                     const std::string& flag = "--ema_extra_decays");

// Learning-rate schedule: linear warmup from lr/warmup to lr over `warmup` steps, then
// constant (decay "none"), or a decay from lr to lr * min_frac at step `total` ("cosine": half a
// cosine period; "linear") that starts at the end of warmup, or with `decay_steps` > 0 only that
// many steps before `total` (constant until then). Steps count from 0; steps at or past `total`
// keep lr * min_frac. A pure function of the step, so resumed and re-sharded runs
// follow the same schedule.
struct LrSchedule {
  double lr = 1e-3;
  int64_t warmup = 0;
  std::string decay = "none";  // none | cosine | linear
  int64_t total = 0;           // the step the decay ends at (the run's --steps)
  double min_frac = 0.0;       // final lr as a fraction of lr
  int64_t decay_steps = 0;     // > 0: the decay spans only the last this many steps
};
// Throws (naming the flag) when the schedule is malformed.
void validate(const LrSchedule& s);
double learning_rate(int64_t step, const LrSchedule& s);

}  // namespace driftlab
