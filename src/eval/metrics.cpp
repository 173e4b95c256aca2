// Implementation of the sample-quality metrics (see metrics.h).
#include "eval/metrics.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "common/check.h"

namespace driftlab::eval {
namespace {

constexpr int64_t kBlock = 2048;

torch::Tensor as_rows(const torch::Tensor& t, const char* what) {
  DL_REQUIRE(t.dim() >= 1 && t.size(0) > 0, what << ": expected a non-empty set of samples, got shape " << t.sizes());
  return t.detach().to(torch::kCPU, torch::kFloat64).reshape({t.size(0), -1}).contiguous();
}

void same_dim(const torch::Tensor& a, const torch::Tensor& b) {
  DL_REQUIRE(a.size(1) == b.size(1), "the two sample sets have different dimensions: " << a.size(1) << " vs " << b.size(1));
}

// Sum over all pairs (i, j) of f(dist(a_i, b_j)), computed block by block; with `skip_diagonal`
// (a and b the same set) the i == j terms are left out.
template <typename F>
double pair_sum(const torch::Tensor& a, const torch::Tensor& b, bool skip_diagonal, F f) {
  double total = 0;
  for (int64_t i = 0; i < a.size(0); i += kBlock) {
    auto ai = a.slice(0, i, std::min(i + kBlock, a.size(0)));
    for (int64_t j = 0; j < b.size(0); j += kBlock) {
      auto bj = b.slice(0, j, std::min(j + kBlock, b.size(0)));
      auto d = torch::cdist(ai, bj);
      torch::Tensor v = f(d);
      if (skip_diagonal && i == j) v = v - torch::diag_embed(torch::diagonal(v));  // zero the self pairs
      total += v.sum().item<double>();
    }
  }
  return total;
}

// Distance from each row of `a` to its k-th nearest row of `b` (b == a: self excluded).
torch::Tensor kth_neighbour_distance(const torch::Tensor& a, const torch::Tensor& b, int k, bool same) {
  std::vector<torch::Tensor> out;
  const int64_t kk = k + (same ? 1 : 0);
  DL_REQUIRE(b.size(0) >= kk, "k-NN metric: need more than " << kk - 1 << " reference samples, got " << b.size(0));
  for (int64_t i = 0; i < a.size(0); i += kBlock) {
    auto d = torch::cdist(a.slice(0, i, std::min(i + kBlock, a.size(0))), b);
    out.push_back(std::get<0>(d.topk(kk, 1, /*largest=*/false, /*sorted=*/true)).select(1, kk - 1));
  }
  return torch::cat(out);
}

// Fraction of rows of `q` lying within radius[j] of some row j of `ref`.
double inside_fraction(const torch::Tensor& q, const torch::Tensor& ref, const torch::Tensor& radius) {
  int64_t inside = 0;
  for (int64_t i = 0; i < q.size(0); i += kBlock) {
    auto d = torch::cdist(q.slice(0, i, std::min(i + kBlock, q.size(0))), ref);
    inside += (d <= radius.unsqueeze(0)).any(1).sum().item<int64_t>();
  }
  return static_cast<double>(inside) / q.size(0);
}

torch::Tensor sqrtm_psd(const torch::Tensor& s) {
  auto [evals, evecs] = torch::linalg_eigh(s);
  return evecs.matmul(torch::diag(evals.clamp_min(0).sqrt())).matmul(evecs.transpose(0, 1));
}

}  // namespace

// Mean of f over the pairs of one set: without self pairs (U) or with them (V, f(0) each).
template <typename F>
double within_mean(const torch::Tensor& x, F f, double f_at_zero, Estimator e) {
  const double n = x.size(0), off = pair_sum(x, x, true, f);
  return e == Estimator::kUnbiased ? off / (n * (n - 1)) : (off + n * f_at_zero) / (n * n);
}

double energy_distance(const torch::Tensor& x_in, const torch::Tensor& y_in, Estimator e) {
  auto x = as_rows(x_in, "energy distance (generated)"), y = as_rows(y_in, "energy distance (reference)");
  same_dim(x, y);
  DL_REQUIRE(x.size(0) > 1 && y.size(0) > 1, "energy distance needs at least 2 samples per set");
  auto id = [](const torch::Tensor& d) { return d; };
  const double xy = pair_sum(x, y, false, id) / (static_cast<double>(x.size(0)) * y.size(0));
  return 2 * xy - within_mean(x, id, 0.0, e) - within_mean(y, id, 0.0, e);
}

double mmd2(const torch::Tensor& x_in, const torch::Tensor& y_in, double h, Estimator e) {
  auto x = as_rows(x_in, "MMD (generated)"), y = as_rows(y_in, "MMD (reference)");
  same_dim(x, y);
  DL_REQUIRE(h > 0, "MMD bandwidth must be positive, got " << h);
  DL_REQUIRE(x.size(0) > 1 && y.size(0) > 1, "MMD needs at least 2 samples per set");
  auto k = [h](const torch::Tensor& d) { return torch::exp(-d.square() / (2 * h * h)); };
  const double xy = pair_sum(x, y, false, k) / (static_cast<double>(x.size(0)) * y.size(0));
  return within_mean(x, k, 1.0, e) + within_mean(y, k, 1.0, e) - 2 * xy;
}

double median_pairwise_distance(const torch::Tensor& x_in, const torch::Tensor& y_in) {
  auto x = as_rows(x_in, "median distance"), y = as_rows(y_in, "median distance");
  auto pooled = torch::cat({x.slice(0, 0, 1000), y.slice(0, 0, 1000)});
  auto d = torch::cdist(pooled, pooled);
  auto upper = d.index({torch::triu(torch::ones_like(d, torch::kBool), 1)});
  return upper.numel() ? upper.median().item<double>() : 1.0;
}

ModeCoverage mode_coverage(const torch::Tensor& s_in, const torch::Tensor& c_in, double radius, double min_share) {
  auto s = as_rows(s_in, "mode coverage (samples)"), c = as_rows(c_in, "mode coverage (mode centres)");
  same_dim(s, c);
  auto [dmin, which] = torch::cdist(s, c).min(1);
  auto near = dmin <= radius;
  ModeCoverage out;
  const int64_t m = c.size(0), n = s.size(0);
  auto counts = torch::bincount(which.index({near}), {}, m);
  for (int64_t j = 0; j < m; ++j) {
    out.share.push_back(counts[j].item<double>() / n);
    if (out.share.back() < min_share / m) ++out.missed;
  }
  out.off_mode = 1.0 - near.sum().item<double>() / n;
  return out;
}

ModeWeights mode_weights(const torch::Tensor& s_in, const torch::Tensor& r_in, const torch::Tensor& labels,
                         int64_t num_modes, double min_fraction_of_data) {
  auto s = as_rows(s_in, "mode weights (samples)"), r = as_rows(r_in, "mode weights (reference)");
  same_dim(s, r);
  DL_REQUIRE(num_modes >= 1, "mode weights: need at least one mode, got " << num_modes);
  DL_REQUIRE(labels.dim() == 1 && labels.size(0) == r.size(0),
             "mode weights: one label per reference sample is needed (" << r.size(0) << " samples, labels "
                                                                        << labels.sizes() << ")");
  auto lab = labels.to(torch::kLong);
  DL_REQUIRE(lab.min().item<int64_t>() >= 0 && lab.max().item<int64_t>() < num_modes,
             "mode weights: labels must lie in [0, " << num_modes << ")");
  std::vector<torch::Tensor> nearest;
  for (int64_t i = 0; i < s.size(0); i += kBlock)
    nearest.push_back(std::get<1>(torch::cdist(s.slice(0, i, std::min(i + kBlock, s.size(0))), r).min(1)));
  auto assigned = lab.index({torch::cat(nearest)});
  auto count = torch::bincount(assigned, {}, num_modes).to(torch::kDouble) / static_cast<double>(s.size(0));
  auto data = torch::bincount(lab, {}, num_modes).to(torch::kDouble) / static_cast<double>(r.size(0));
  ModeWeights out;
  for (int64_t k = 0; k < num_modes; ++k) {
    out.share.push_back(count[k].item<double>());
    out.data_share.push_back(data[k].item<double>());
    out.max_gap = std::max(out.max_gap, std::fabs(out.share.back() - out.data_share.back()));
    if (out.data_share.back() > 0 && out.share.back() < min_fraction_of_data * out.data_share.back()) ++out.missed;
  }
  return out;
}

PrecisionRecall knn_precision_recall(const torch::Tensor& g_in, const torch::Tensor& r_in, int k) {
  auto g = as_rows(g_in, "precision/recall (generated)"), r = as_rows(r_in, "precision/recall (reference)");
  same_dim(g, r);
  DL_REQUIRE(k >= 1, "k-NN precision/recall: k must be >= 1, got " << k);
  PrecisionRecall pr;
  pr.precision = inside_fraction(g, r, kth_neighbour_distance(r, r, k, true));
  pr.recall = inside_fraction(r, g, kth_neighbour_distance(g, g, k, true));
  return pr;
}

double frechet_distance(const torch::Tensor& x_in, const torch::Tensor& y_in) {
  auto x = as_rows(x_in, "Frechet distance (generated)"), y = as_rows(y_in, "Frechet distance (reference)");
  same_dim(x, y);
  DL_REQUIRE(x.size(0) > 1 && y.size(0) > 1, "Frechet distance needs at least 2 samples per set");
  auto mx = x.mean(0), my = y.mean(0);
  auto sx = torch::cov(x.t()), sy = torch::cov(y.t());
  if (sx.dim() == 0) sx = sx.reshape({1, 1}), sy = sy.reshape({1, 1});
  auto r = sqrtm_psd(sx);
  auto inner = r.matmul(sy).matmul(r);
  auto evals = torch::linalg_eigvalsh((inner + inner.t()) / 2).clamp_min(0);
  return (mx - my).square().sum().item<double>() + sx.trace().item<double>() + sy.trace().item<double>() -
         2 * evals.sqrt().sum().item<double>();
}

}  // namespace driftlab::eval
