// Sample-quality metrics against closed forms and a plain double-loop reference.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

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

TEST(Metrics, BadInputsAreClearErrors) {
  EXPECT_THROW(energy_distance(torch::zeros({0, 2}), torch::zeros({3, 2})), UserError);
  EXPECT_THROW(energy_distance(torch::zeros({3, 2}), torch::zeros({3, 3})), UserError);
  EXPECT_THROW(knn_precision_recall(torch::zeros({3, 2}), torch::zeros({2, 2}), 3), UserError);
}

}  // namespace
}  // namespace driftlab::eval
