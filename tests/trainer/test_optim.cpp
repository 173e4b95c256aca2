// AdamW against a scalar reference of the update rule, clipping, EMA, schedule.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "common/check.h"
#include "common/optim.h"

namespace driftlab {
namespace {

TEST(AdamW, MatchesScalarReference) {
  auto p = torch::tensor({1.0, -2.0}, torch::kFloat64).requires_grad_(true);
  AdamWOptions o;
  o.weight_decay = 0.1;
  AdamW opt({p}, o);
  double ref[2] = {1.0, -2.0}, m[2] = {0, 0}, v[2] = {0, 0};
  for (int t = 1; t <= 5; ++t) {
    const double lr = 0.01 * t;
    const double g[2] = {0.3 * t, -0.7 + 0.1 * t};
    p.mutable_grad() = torch::tensor({g[0], g[1]}, torch::kFloat64);
    opt.step(lr);
    for (int i = 0; i < 2; ++i) {
      ref[i] *= 1 - lr * o.weight_decay;
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g[i];
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g[i] * g[i];
      const double mh = m[i] / (1 - std::pow(o.beta1, t)), vh = v[i] / (1 - std::pow(o.beta2, t));
      ref[i] -= lr * mh / (std::sqrt(vh) + o.eps);
    }
    EXPECT_NEAR(p[0].item<double>(), ref[0], 1e-12);
    EXPECT_NEAR(p[1].item<double>(), ref[1], 1e-12);
  }
  EXPECT_EQ(opt.steps(), 5);
}

// After reset_moments the next update is the one a fresh optimizer makes from the same point.
TEST(AdamW, ResetMomentsRestartsLikeAFreshOptimizer) {
  auto p = torch::tensor({0.5, -1.5, 2.0}, torch::kFloat64).requires_grad_(true);
  AdamW opt({p}, AdamWOptions{});
  for (int t = 1; t <= 4; ++t) {
    p.mutable_grad() = torch::tensor({3.0 * t, -2.0, 0.5 * t}, torch::kFloat64);
    opt.step(0.01);
  }
  opt.reset_moments();
  EXPECT_EQ(opt.steps(), 0);
  auto q = p.detach().clone().requires_grad_(true);
  AdamW fresh({q}, AdamWOptions{});
  for (int t = 1; t <= 3; ++t) {
    const auto g = torch::tensor({0.1 * t, 0.2, -0.3 * t}, torch::kFloat64);
    p.mutable_grad() = g.clone();
    q.mutable_grad() = g.clone();
    opt.step(0.02);
    fresh.step(0.02);
    EXPECT_TRUE(torch::equal(p.detach(), q.detach())) << "update " << t;
  }
  EXPECT_TRUE(torch::equal(opt.exp_avg_sq()[0], fresh.exp_avg_sq()[0]));
}

TEST(Clip, GlobalNorm) {
  auto a = torch::zeros({2}).requires_grad_(true), b = torch::zeros({1}).requires_grad_(true);
  a.mutable_grad() = torch::tensor({3.f, 0.f});
  b.mutable_grad() = torch::tensor({4.f});
  EXPECT_NEAR(clip_grad_norm({a, b}, 1.0), 5.0, 1e-9);
  EXPECT_NEAR(a.grad()[0].item<float>(), 0.6f, 1e-5);
  EXPECT_NEAR(b.grad()[0].item<float>(), 0.8f, 1e-5);
  EXPECT_NEAR(clip_grad_norm({a, b}, 10.0), 1.0, 1e-5);  // below the cap: unchanged
  EXPECT_NEAR(a.grad()[0].item<float>(), 0.6f, 1e-5);
}

TEST(Ema, GeometricAverage) {
  auto p = torch::zeros({1});
  Ema ema({p}, 0.5);
  p.fill_(1.0);
  ema.update({p});
  ema.update({p});
  EXPECT_DOUBLE_EQ(ema.shadow()[0].item<float>(), 0.75);
}

TEST(Ema, WarmupAndCopyOut) {
  // d_t = min(decay, (1 + t) / (10 + t)): d_1 = 2/11, d_2 = 3/12 for decay 0.999.
  auto p = torch::zeros({1}, torch::kDouble);
  Ema ema({p}, 0.999, /*warmup=*/true);
  p.fill_(1.0);
  ema.update({p});
  EXPECT_NEAR(ema.shadow()[0].item<double>(), 1 - 2.0 / 11, 1e-15);
  ema.update({p});
  EXPECT_NEAR(ema.shadow()[0].item<double>(), 1 - (2.0 / 11) * (3.0 / 12), 1e-15);
  Ema capped({p}, 0.1, /*warmup=*/true);  // the warm-up never exceeds decay
  p.fill_(3.0);
  capped.update({p});
  EXPECT_NEAR(capped.shadow()[0].item<double>(), 0.1 * 1 + 0.9 * 3, 1e-15);
  auto out = torch::zeros({1}, torch::kDouble);
  ema.copy_to({out});
  EXPECT_DOUBLE_EQ(out.item<double>(), ema.shadow()[0].item<double>());
}

TEST(Ema, GroupPrefixAndExtraDecays) {
  EXPECT_EQ(ema_group_prefix(0.99), "ema@0.99/");
  EXPECT_EQ(ema_group_prefix(0.990), ema_group_prefix(0.99));
  EXPECT_EQ(ema_group_prefix(0.9999), "ema@0.9999/");
  EXPECT_EQ(ema_group_prefix(0), "ema@0/");
  EXPECT_TRUE(parse_ema_decays("", 0.995).empty());
  EXPECT_EQ(parse_ema_decays("0.99,0.98,0.5", 0.995), (std::vector<double>{0.99, 0.98, 0.5}));
  auto message = [](const std::string& text) {
    try {
      parse_ema_decays(text, 0.995);
    } catch (const UserError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("0.99,1").find("'1'"), std::string::npos) << message("0.99,1");
  EXPECT_NE(message("-0.5").find("(0, 1)"), std::string::npos);
  EXPECT_NE(message("0").find("'0'"), std::string::npos);  // 0 would be the raw weights (drift_sample --ema=false)
  EXPECT_NE(message("0.9x").find("'0.9x'"), std::string::npos);
  EXPECT_NE(message("0.99,,0.98").find("''"), std::string::npos);
  EXPECT_NE(message("0.9950").find("main average"), std::string::npos) << message("0.9950");
  EXPECT_NE(message("0.99,0.990").find("twice"), std::string::npos);
  EXPECT_NE(message("0.99").find("no error"), std::string::npos);
}

TEST(Schedule, WarmupThenConstant) {
  const LrSchedule s{1.0, 4, "none", 10, 0.0};
  EXPECT_DOUBLE_EQ(learning_rate(0, s), 0.25);
  EXPECT_DOUBLE_EQ(learning_rate(3, s), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(100, s), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(0, LrSchedule{1.0, 0, "none", 10, 0.0}), 1.0);
}

TEST(Schedule, CosineAndLinearDecay) {
  // warmup 4 steps, decay over steps 4 .. 14 from 2.0 to 2.0 * 0.1.
  const LrSchedule c{2.0, 4, "cosine", 14, 0.1};
  EXPECT_DOUBLE_EQ(learning_rate(1, c), 2.0 * 2 / 4);            // still warming up
  EXPECT_DOUBLE_EQ(learning_rate(4, c), 2.0);                    // decay starts at the peak
  EXPECT_NEAR(learning_rate(9, c), 2.0 * (0.1 + 0.9 * 0.5), 1e-12);  // half way: cos(pi/2) = 0
  EXPECT_NEAR(learning_rate(14, c), 0.2, 1e-12);
  EXPECT_NEAR(learning_rate(1000, c), 0.2, 1e-12);               // past the end: stays at the floor
  // cos(pi * 0.2) for step 6 (t = 2 / 10)
  EXPECT_NEAR(learning_rate(6, c), 2.0 * (0.1 + 0.9 * 0.5 * (1 + std::cos(std::acos(-1.0) * 0.2))), 1e-12);
  for (int64_t t = 4; t < 14; ++t) EXPECT_GT(learning_rate(t, c), learning_rate(t + 1, c)) << t;

  const LrSchedule l{1.0, 0, "linear", 8, 0.0};
  EXPECT_DOUBLE_EQ(learning_rate(0, l), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(2, l), 0.75);
  EXPECT_DOUBLE_EQ(learning_rate(8, l), 0.0);

  // Only the last 4 of 12 steps decay (constant at the peak until step 8).
  const LrSchedule late{1.0, 2, "linear", 12, 0.0, 4};
  EXPECT_DOUBLE_EQ(learning_rate(0, late), 0.5);
  EXPECT_DOUBLE_EQ(learning_rate(7, late), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(8, late), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(10, late), 0.5);
  EXPECT_DOUBLE_EQ(learning_rate(12, late), 0.0);
  // A decay longer than the run after the warmup starts at the warmup's end.
  EXPECT_DOUBLE_EQ(learning_rate(4, LrSchedule{1.0, 2, "linear", 12, 0.0, 100}), 0.8);
}

TEST(Schedule, MalformedIsNamed) {
  auto message = [](const LrSchedule& s) {
    try {
      validate(s);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(LrSchedule{1.0, 0, "cosinus", 10, 0.0}).find("--lr_decay"), std::string::npos);
  EXPECT_NE(message(LrSchedule{1.0, 0, "cosine", 10, 1.5}).find("--lr_min_frac"), std::string::npos);
  EXPECT_NE(message(LrSchedule{1.0, 10, "linear", 10, 0.0}).find("--warmup_steps"), std::string::npos);
  EXPECT_NE(message(LrSchedule{-1.0, 0, "none", 10, 0.0}).find("--lr"), std::string::npos);
  EXPECT_NE(message(LrSchedule{1.0, 0, "linear", 10, 0.0, -1}).find("--lr_decay_steps"), std::string::npos);
  EXPECT_EQ(message(LrSchedule{1.0, 10, "none", 10, 0.0}), "no error");
}

}  // namespace
}  // namespace driftlab
