// AdamW, clipping, EMA and the schedule (see optim.h).
#include "common/optim.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <iomanip>
#include <sstream>

#include "common/check.h"

namespace driftlab {

AdamW::AdamW(std::vector<torch::Tensor> params, AdamWOptions options) : params_(std::move(params)), opt_(options) {
  DL_REQUIRE(opt_.beta1 >= 0 && opt_.beta1 < 1 && opt_.beta2 >= 0 && opt_.beta2 < 1,
             "AdamW betas must lie in [0, 1), got " << opt_.beta1 << ", " << opt_.beta2);
  for (const auto& p : params_) {
    m_.push_back(torch::zeros_like(p, torch::MemoryFormat::Contiguous));
    v_.push_back(torch::zeros_like(p, torch::MemoryFormat::Contiguous));
  }
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++steps_;
  const double bc1 = 1 - std::pow(opt_.beta1, static_cast<double>(steps_));
  const double bc2 = 1 - std::pow(opt_.beta2, static_cast<double>(steps_));
  const double step_size = lr / bc1, bc2_sqrt = std::sqrt(bc2);
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    const auto& g = p.grad();
    if (!g.defined()) continue;
    if (opt_.weight_decay != 0) p.mul_(1 - lr * opt_.weight_decay);
    m_[i].mul_(opt_.beta1).add_(g, 1 - opt_.beta1);
    v_[i].mul_(opt_.beta2).addcmul_(g, g, 1 - opt_.beta2);
    auto denom = (v_[i].sqrt() / bc2_sqrt).add_(opt_.eps);
    p.addcdiv_(m_[i], denom, -step_size);
  }
}

void AdamW::reset_moments() {
  torch::NoGradGuard no_grad;
  for (auto& m : m_) m.zero_();
  for (auto& v : v_) v.zero_();
  steps_ = 0;
}

double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  double sq = 0;
  for (const auto& p : params)
    if (p.grad().defined()) sq += p.grad().to(torch::kFloat64).square().sum().item<double>();
  const double norm = std::sqrt(sq);
  if (max_norm > 0 && std::isfinite(norm) && norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);
    for (const auto& p : params)
      if (p.grad().defined()) p.grad().mul_(scale);
  }
  return norm;
}

void zero_grad(const std::vector<torch::Tensor>& params) {
  for (auto p : params) p.mutable_grad() = torch::Tensor();
}

Ema::Ema(const std::vector<torch::Tensor>& params, double decay, bool warmup) : decay_(decay), warmup_(warmup) {
  DL_REQUIRE(decay >= 0 && decay < 1, "EMA decay must lie in [0, 1), got " << decay);
  torch::NoGradGuard no_grad;
  for (const auto& p : params) shadow_.push_back(p.detach().clone());
}

void Ema::update(const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard no_grad;
  DL_CHECK(params.size() == shadow_.size(), "EMA of " << shadow_.size() << " tensors updated with " << params.size());
  ++updates_;
  const double t = static_cast<double>(updates_);
  const double d = warmup_ ? std::min(decay_, (1.0 + t) / (10.0 + t)) : decay_;
  for (size_t i = 0; i < params.size(); ++i) shadow_[i].mul_(d).add_(params[i].detach(), 1 - d);
}

void Ema::copy_to(const std::vector<torch::Tensor>& params) const {
  torch::NoGradGuard no_grad;
  DL_CHECK(params.size() == shadow_.size(), "EMA of " << shadow_.size() << " tensors copied to " << params.size());
  for (size_t i = 0; i < params.size(); ++i) params[i].copy_(shadow_[i]);
}

std::string ema_decay_text(double decay) {
  std::ostringstream os;
  os << std::setprecision(10) << decay;
  return os.str();
}

std::string ema_group_prefix(double decay) { return "ema@" + ema_decay_text(decay) + "/"; }

std::vector<double> parse_ema_decays(const std::string& text, double main_decay, const std::string& flag) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string item;
  while (!text.empty() && std::getline(ss, item, ',')) {
    char* end = nullptr;
    const double d = std::strtod(item.c_str(), &end);
    DL_REQUIRE(!item.empty() && end && *end == '\0' && d > 0 && d < 1,
               flag << "=" << text << ": expected comma-separated EMA decays in (0, 1), got '" << item << "'");
    DL_REQUIRE(ema_decay_text(d) != ema_decay_text(main_decay),
               flag << "=" << text << ": " << item << " is the main average's decay (--ema_decay); list only other decays");
    for (double o : out)
      DL_REQUIRE(ema_decay_text(o) != ema_decay_text(d), flag << "=" << text << ": " << item << " is listed twice");
    out.push_back(d);
  }
  return out;
}

void validate(const LrSchedule& s) {
  DL_REQUIRE(s.lr > 0 && std::isfinite(s.lr), "--lr must be a positive number, got " << s.lr);
  DL_REQUIRE(s.warmup >= 0, "--warmup_steps must be >= 0, got " << s.warmup);
  DL_REQUIRE(s.decay == "none" || s.decay == "cosine" || s.decay == "linear",
             "--lr_decay must be none, cosine or linear, got '" << s.decay << "'");
  DL_REQUIRE(s.min_frac >= 0 && s.min_frac <= 1, "--lr_min_frac must be in [0, 1], got " << s.min_frac);
  DL_REQUIRE(s.decay_steps >= 0, "--lr_decay_steps must be >= 0 (0: the decay spans the whole run after the warmup), got "
                                     << s.decay_steps);
  DL_REQUIRE(s.decay == "none" || s.total > s.warmup,
             "--lr_decay=" << s.decay << " needs --steps (" << s.total << ") greater than --warmup_steps (" << s.warmup << ")");
}

double learning_rate(int64_t step, const LrSchedule& s) {
  if (s.warmup > 0 && step < s.warmup) return s.lr * static_cast<double>(step + 1) / static_cast<double>(s.warmup);
  if (s.decay == "none") return s.lr;
  const int64_t start = s.decay_steps > 0 ? std::max(s.warmup, s.total - s.decay_steps) : s.warmup;
  const double span = static_cast<double>(s.total - start);
  const double t = std::min(1.0, std::max(0.0, static_cast<double>(step - start) / span));
  const double shape = s.decay == "cosine" ? 0.5 * (1.0 + std::cos(std::acos(-1.0) * t)) : 1.0 - t;
  return s.lr * (s.min_frac + (1.0 - s.min_frac) * shape);
}

}  // namespace driftlab
