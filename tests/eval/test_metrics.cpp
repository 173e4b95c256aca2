// Sample-quality metrics against closed forms and a plain double-loop reference.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

#include "common/check.h"
#include "eval/metrics.h"

namespace driftlab::eval {
namespace {

double dist(const torch::Tensor& a, int64_t i, const torch::Tensor& b, int64_t j) {
  return (a[i] - b[j]).square().sum().sqrt().item<double>();
}

double energy_reference(const torch::Tensor& x, const torch::Tensor& y) {
  const int64_t n = x.size(0), m = y.size(0);
  double xy = 0, xx = 0, yy = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < m; ++j) xy += dist(x, i, y, j);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      if (i != j) xx += dist(x, i, x, j);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < m; ++j)
      if (i != j) yy += dist(y, i, y, j);
  return 2 * xy / (n * m) - xx / (n * (n - 1.0)) - yy / (m * (m - 1.0));
}

TEST(Energy, MatchesReferenceAndClosedForm) {
  torch::manual_seed(1);
  auto x = torch::randn({23, 3}, torch::kFloat64), y = torch::randn({17, 3}, torch::kFloat64) + 0.5;
  EXPECT_NEAR(energy_distance(x, y), energy_reference(x, y), 1e-10);
  // Two point masses at distance a: 2a - 0 - 0.
  auto p = torch::zeros({4, 2}), q = torch::full({5, 2}, 3.0);
  EXPECT_NEAR(energy_distance(p, q), 2 * 3 * std::sqrt(2.0), 1e-6);
}

TEST(Energy, SameDistributionIsNearZeroShiftIsNot) {
  torch::manual_seed(2);
  auto a = torch::randn({3000, 2}), b = torch::randn({3000, 2}), c = torch::randn({3000, 2}) + 1.0;
  EXPECT_LT(std::fabs(energy_distance(a, b)), 0.01);
  EXPECT_GT(energy_distance(a, c), 0.3);
}

TEST(Mmd, MatchesReference) {
  torch::manual_seed(3);
  auto x = torch::randn({11, 2}, torch::kFloat64), y = torch::randn({9, 2}, torch::kFloat64) * 2;
  const double h = 0.7;
  auto k = [&](const torch::Tensor& a, int64_t i, const torch::Tensor& b, int64_t j) {
    const double d = dist(a, i, b, j);
    return std::exp(-d * d / (2 * h * h));
  };
  double xx = 0, yy = 0, xy = 0;
  for (int i = 0; i < 11; ++i)
    for (int j = 0; j < 11; ++j)
      if (i != j) xx += k(x, i, x, j);
  for (int i = 0; i < 9; ++i)
    for (int j = 0; j < 9; ++j)
      if (i != j) yy += k(y, i, y, j);
  for (int i = 0; i < 11; ++i)
    for (int j = 0; j < 9; ++j) xy += k(x, i, y, j);
  EXPECT_NEAR(mmd2(x, y, h), xx / 110 + yy / 72 - 2 * xy / 99, 1e-10);
  // V-statistic: self pairs (kernel 1) included, denominators n^2.
  EXPECT_NEAR(mmd2(x, y, h, Estimator::kV), (xx + 11) / 121 + (yy + 9) / 81 - 2 * xy / 99, 1e-10);
  EXPECT_THROW(mmd2(x, y, 0), UserError);
}

TEST(Energy, VStatisticMatchesReferenceAndIsNeverNegative) {
  torch::manual_seed(6);
  auto x = torch::randn({19, 3}, torch::kFloat64), y = torch::randn({13, 3}, torch::kFloat64) - 0.3;
  double xy = 0, xx = 0, yy = 0;
  for (int64_t i = 0; i < 19; ++i)
    for (int64_t j = 0; j < 13; ++j) xy += dist(x, i, y, j);
  for (int64_t i = 0; i < 19; ++i)
    for (int64_t j = 0; j < 19; ++j) xx += dist(x, i, x, j);
  for (int64_t i = 0; i < 13; ++i)
    for (int64_t j = 0; j < 13; ++j) yy += dist(y, i, y, j);
  EXPECT_NEAR(energy_distance(x, y, Estimator::kV), 2 * xy / (19 * 13) - xx / (19 * 19) - yy / (13 * 13), 1e-10);
  // Two sets from one distribution: the unbiased estimate straddles 0 across draws, the V-statistic
  // never goes below 0 (it is a squared distance between the two empirical distributions).
  int negative_u = 0;
  for (int r = 0; r < 20; ++r) {
    auto a = torch::randn({200, 2}, torch::kFloat64), b = torch::randn({200, 2}, torch::kFloat64);
    negative_u += energy_distance(a, b) < 0;
    EXPECT_GE(energy_distance(a, b, Estimator::kV), 0.0);
    EXPECT_GE(mmd2(a, b, 1.0, Estimator::kV), 0.0);
  }
  EXPECT_GT(negative_u, 0);
}

TEST(Frechet, ClosedForms) {
  torch::manual_seed(4);
  auto x = torch::randn({500, 4}, torch::kFloat64);
  EXPECT_NEAR(frechet_distance(x, x), 0.0, 1e-8);
  auto shift = torch::tensor({1.0, -2.0, 0.5, 0.0}, torch::kFloat64);
  EXPECT_NEAR(frechet_distance(x, x + shift), 5.25, 1e-8);  // same covariance: |shift|^2
  // Scaling by s: covariance s^2 S, so the trace term is (1 - s)^2 tr(S).
  const double trace = torch::cov(x.t()).trace().item<double>();
  EXPECT_NEAR(frechet_distance(x, 3 * x), 4 * trace + 4 * x.mean(0).square().sum().item<double>(), 1e-6);
}

TEST(Modes, SharesAndMissedModes) {
  auto centers = torch::tensor({{0.f, 0.f}, {10.f, 0.f}, {0.f, 10.f}});
  // 6 samples near mode 0, 3 near mode 1, none near mode 2, 1 far away.
  auto s = torch::tensor({{0.1f, 0.f}, {0.f, 0.1f}, {-0.1f, 0.f}, {0.f, -0.1f}, {0.05f, 0.05f}, {0.f, 0.f},
                          {10.f, 0.1f}, {9.9f, 0.f}, {10.f, 0.f}, {50.f, 50.f}});
  auto c = mode_coverage(s, centers, 1.0);
  ASSERT_EQ(c.share.size(), 3u);
  EXPECT_DOUBLE_EQ(c.share[0], 0.6);
  EXPECT_DOUBLE_EQ(c.share[1], 0.3);
  EXPECT_DOUBLE_EQ(c.share[2], 0.0);
  EXPECT_NEAR(c.off_mode, 0.1, 1e-12);
  EXPECT_EQ(c.missed, 1);
}

TEST(Modes, WeightsByNearestReferenceSampleOnARingAroundACore) {
  // Reference: a ring of radius 5 (label 0, 12 points) around a core (label 1, 4 points near 0):
  // its class mean is the core's centre, so only nearest-sample assignment tells them apart.
  std::vector<float> pts;
  std::vector<int64_t> lab;
  for (int i = 0; i < 12; ++i) {
    pts.push_back(5.f * std::cos(i * 0.5236f));
    pts.push_back(5.f * std::sin(i * 0.5236f));
    lab.push_back(0);
  }
  for (float v : {0.1f, -0.1f}) {
    pts.insert(pts.end(), {v, 0.f, 0.f, v});
    lab.insert(lab.end(), {1, 1});
  }
  auto ref = torch::tensor(pts).view({16, 2});
  auto labels = torch::tensor(lab);
  // Samples: 3 on the ring, 5 at the core (data shares 0.75 / 0.25).
  auto s = torch::tensor({{4.9f, 0.f}, {0.f, 5.1f}, {-5.f, 0.2f}, {0.f, 0.f}, {0.05f, 0.f}, {0.f, -0.05f},
                          {0.2f, 0.2f}, {-0.1f, 0.1f}});
  auto w = mode_weights(s, ref, labels, 2);
  ASSERT_EQ(w.share.size(), 2u);
  EXPECT_DOUBLE_EQ(w.share[0], 3.0 / 8);
  EXPECT_DOUBLE_EQ(w.share[1], 5.0 / 8);
  EXPECT_DOUBLE_EQ(w.data_share[0], 0.75);
  EXPECT_DOUBLE_EQ(w.data_share[1], 0.25);
  EXPECT_NEAR(w.max_gap, 0.375, 1e-12);
  EXPECT_EQ(w.missed, 0);
  // Every sample at the core: the ring (75% of the data) is missed.
  auto core = mode_weights(torch::zeros({10, 2}), ref, labels, 2);
  EXPECT_EQ(core.missed, 1);
  EXPECT_DOUBLE_EQ(core.share[1], 1.0);
  EXPECT_THROW(mode_weights(s, ref, labels.slice(0, 0, 5), 2), UserError);
  EXPECT_THROW(mode_weights(s, ref, labels, 1), UserError);
}

TEST(PrecisionRecall, IdenticalAndDisjointSets) {
  torch::manual_seed(5);
  auto r = torch::randn({200, 2});
  auto same = knn_precision_recall(r, r, 3);
  EXPECT_DOUBLE_EQ(same.precision, 1.0);
  EXPECT_DOUBLE_EQ(same.recall, 1.0);
  auto far = knn_precision_recall(r + 100, r, 3);
  EXPECT_DOUBLE_EQ(far.precision, 0.0);
  EXPECT_DOUBLE_EQ(far.recall, 0.0);
  // Generated samples collapsed onto one half of the data: precision stays high, recall drops.
  auto half = r.index({r.select(1, 0) > 0});
  auto collapsed = knn_precision_recall(half, r, 3);
  EXPECT_GT(collapsed.precision, 0.9);
  EXPECT_LT(collapsed.recall, 0.75);
}

// Gaussian-kernel MMD^2 U-statistic by plain double loops.
double mmd_reference(const torch::Tensor& x, const torch::Tensor& y, double h) {
  auto k = [&](const torch::Tensor& a, int64_t i, const torch::Tensor& b, int64_t j) {
    const double d = dist(a, i, b, j);
    return std::exp(-d * d / (2 * h * h));
  };
  const int64_t n = x.size(0), m = y.size(0);
  double xx = 0, yy = 0, xy = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      if (i != j) xx += k(x, i, x, j);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < m; ++j)
      if (i != j) yy += k(y, i, y, j);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < m; ++j) xy += k(x, i, y, j);
  return xx / (n * (n - 1.0)) + yy / (m * (m - 1.0)) - 2 * xy / (n * m);
}

// Rows of a mixture of 8 Gaussians (std 0.1) on a circle of radius 2 with the given weights.
torch::Tensor mixture(int64_t n, const std::vector<double>& weights) {
  auto w = torch::tensor(weights, torch::kFloat64);
  auto mode = torch::multinomial(w, n, /*replacement=*/true).to(torch::kFloat64);
  auto angle = mode * (2 * M_PI / 8);
  return torch::stack({2 * angle.cos(), 2 * angle.sin()}, 1) + 0.1 * torch::randn({n, 2}, torch::kFloat64);
}
const std::vector<double> kEqual(8, 0.125);

TEST(PermutationTest, UStatisticsMatchTheFloat64LoopReference) {
  torch::manual_seed(7);
  auto x = torch::randn({21, 3}, torch::kFloat64), y = torch::randn({15, 3}, torch::kFloat64) * 1.5 + 0.2;
  const std::vector<double> h{0.6, 2.0};
  const auto t = permutation_tests(x, y, h, 0, 1);
  EXPECT_NEAR(t.energy.value, energy_reference(x, y), 1e-10);
  EXPECT_NEAR(t.energy.v_value, energy_distance(x, y, Estimator::kV), 1e-10);
  for (size_t i = 0; i < h.size(); ++i) {
    EXPECT_NEAR(t.mmd[i].value, mmd_reference(x, y, h[i]), 1e-10);
    EXPECT_NEAR(t.mmd[i].v_value, mmd2(x, y, h[i], Estimator::kV), 1e-10);
  }
  // The V-statistic's expectation for two real sets: (1/n + 1/m) E|Y - Y'| over y's pairs.
  double yy = 0;
  for (int64_t i = 0; i < 15; ++i)
    for (int64_t j = 0; j < 15; ++j)
      if (i != j) yy += dist(y, i, y, j);
  EXPECT_NEAR(t.energy.v_expected, (1.0 / 21 + 1.0 / 15) * yy / (15 * 14), 1e-10);
  // Blocks: more rows than one block of pairs (2048) give the same values as the plain estimators.
  auto big_x = torch::randn({2100, 2}, torch::kFloat64), big_y = torch::randn({2200, 2}, torch::kFloat64) + 0.05;
  const auto b = permutation_tests(big_x, big_y, {1.0}, 0, 1);
  EXPECT_NEAR(b.energy.value, energy_distance(big_x, big_y), 1e-9);
  EXPECT_NEAR(b.mmd[0].value, mmd2(big_x, big_y, 1.0), 1e-9);
}

TEST(PermutationTest, FastPathMatchesEveryReSplitComputedDirectly) {
  torch::manual_seed(8);
  // 2100 + 60 rows: more than one block, so the symmetric block pass is exercised.
  auto x = torch::randn({2100, 2}, torch::kFloat64), y = torch::randn({60, 2}, torch::kFloat64) * 1.3;
  const int permutations = 12;
  const auto t = permutation_tests(x, y, {0.8}, permutations, 5);
  ASSERT_EQ(t.energy.null.size(), static_cast<size_t>(permutations));
  auto pool = torch::cat({x, y});
  int at_least = 0;
  for (int r = 0; r < permutations; ++r) {
    const auto first = random_subset(pool.size(0), x.size(0), 5, r);
    std::vector<bool> in(pool.size(0), false);
    for (int64_t i : first) in[i] = true;
    std::vector<int64_t> second;
    for (int64_t i = 0; i < pool.size(0); ++i)
      if (!in[i]) second.push_back(i);
    auto a = pool.index_select(0, torch::tensor(first, torch::kLong)), b = pool.index_select(0, torch::tensor(second, torch::kLong));
    EXPECT_NEAR(t.energy.null[r], energy_distance(a, b), 1e-9) << "re-split " << r;
    EXPECT_NEAR(t.mmd[0].null[r], mmd2(a, b, 0.8), 1e-9) << "re-split " << r;
    at_least += t.energy.null[r] >= t.energy.value;
  }
  EXPECT_DOUBLE_EQ(t.energy.p_value, (1.0 + at_least) / (1.0 + permutations));
  double mean = 0, ss = 0;
  for (double v : t.energy.null) mean += v / permutations;
  for (double v : t.energy.null) ss += (v - mean) * (v - mean);
  EXPECT_NEAR(t.energy.null_mean, mean, 1e-12);
  EXPECT_NEAR(t.energy.null_sd, std::sqrt(ss / (permutations - 1)), 1e-12);
  EXPECT_NEAR(t.energy.z, (t.energy.value - mean) / t.energy.null_sd, 1e-9);
  // A random subset is a subset: distinct rows of the pool, `count` of them.
  const auto s = random_subset(50, 20, 3, 4);
  EXPECT_EQ(std::set<int64_t>(s.begin(), s.end()).size(), 20u);
  EXPECT_LT(*std::max_element(s.begin(), s.end()), 50);
}

TEST(PermutationTest, PValueIsRoughlyUniformForOneDistribution) {
  torch::manual_seed(9);
  int below_005 = 0, below_05 = 0;
  const int reps = 40;
  for (int r = 0; r < reps; ++r) {
    auto x = mixture(150, kEqual), y = mixture(150, kEqual);
    const double p = permutation_tests(x, y, {0.5}, 200, 100 + r).energy.p_value;
    below_005 += p < 0.05;
    below_05 += p < 0.5;
  }
  EXPECT_LT(below_005, 0.15 * reps) << below_005 << " of " << reps << " same-distribution pairs had p < 0.05";
  // Not stuck at 1 either: about half the p-values fall below 0.5.
  EXPECT_GT(below_05, 0.2 * reps);
  EXPECT_LT(below_05, 0.8 * reps);
}

TEST(PermutationTest, TenPointsOfModeWeightMovedAreFlaggedAtTenThousand) {
  torch::manual_seed(10);
  std::vector<double> moved = kEqual;
  moved[0] += 0.10;  // 10 points of weight from mode 1 to mode 0
  moved[1] -= 0.10;
  auto real = mixture(10000, kEqual), shifted = mixture(10000, moved);
  const auto t = permutation_tests(shifted, real, {}, 200, 11);
  EXPECT_LT(t.energy.p_value, 0.01) << "z " << t.energy.z;
  EXPECT_GT(t.energy.z, 3.0);
}

TEST(Kid, MatchesTheUnbiasedCubicKernelMmdOfEachSubset) {
  torch::manual_seed(12);
  auto x = torch::randn({40, 5}, torch::kFloat64), y = torch::randn({30, 5}, torch::kFloat64) + 0.4;
  const auto kid = kernel_distance(x, y, 3, 10, 6);
  ASSERT_EQ(kid.draws.size(), 3u);
  for (int s = 0; s < 3; ++s) {
    auto xs = x.index_select(0, torch::tensor(random_subset(40, 10, 6, 2 * s), torch::kLong));
    auto ys = y.index_select(0, torch::tensor(random_subset(30, 10, 6, 2 * s + 1), torch::kLong));
    auto k = [](const torch::Tensor& a, int64_t i, const torch::Tensor& b, int64_t j) {
      return std::pow((a[i] * b[j]).sum().item<double>() / 5 + 1, 3);
    };
    double xx = 0, yy = 0, xy = 0;
    for (int i = 0; i < 10; ++i)
      for (int j = 0; j < 10; ++j) {
        if (i != j) xx += k(xs, i, xs, j), yy += k(ys, i, ys, j);
        xy += k(xs, i, ys, j);
      }
    EXPECT_NEAR(kid.draws[s], (xx + yy) / 90 - 2 * xy / 100, 1e-9) << "subset " << s;
  }
  EXPECT_NEAR(kid.mean, (kid.draws[0] + kid.draws[1] + kid.draws[2]) / 3, 1e-12);
  // One distribution: KID is near 0 (unbiased); a shift of the mean raises it well above.
  auto a = torch::randn({2000, 8}, torch::kFloat64), b = torch::randn({2000, 8}, torch::kFloat64);
  const auto same = kernel_distance(a, b, 20, 500, 1), shifted = kernel_distance(a, b + 0.5, 20, 500, 1);
  EXPECT_LT(std::fabs(same.mean), 3 * same.sd / std::sqrt(20.0) + 1e-3);
  EXPECT_GT(shifted.mean, 10 * std::fabs(same.mean) + 5 * shifted.sd / std::sqrt(20.0));
  EXPECT_THROW(kernel_distance(x, y, 0, 10, 1), UserError);
  EXPECT_THROW(kernel_distance(x, y, 2, 31, 1), UserError);
}

TEST(Metrics, BadInputsAreClearErrors) {
  EXPECT_THROW(energy_distance(torch::zeros({0, 2}), torch::zeros({3, 2})), UserError);
  EXPECT_THROW(energy_distance(torch::zeros({3, 2}), torch::zeros({3, 3})), UserError);
  EXPECT_THROW(knn_precision_recall(torch::zeros({3, 2}), torch::zeros({2, 2}), 3), UserError);
}

}  // namespace
}  // namespace driftlab::eval
