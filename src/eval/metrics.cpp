// Implementation of the sample-quality metrics (see metrics.h).
#include "eval/metrics.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "common/check.h"
#include "common/rng.h"

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

std::vector<int64_t> random_subset(int64_t total, int64_t count, uint64_t seed, uint64_t r) {
  DL_REQUIRE(count >= 0 && count <= total, "random subset: cannot draw " << count << " of " << total << " rows");
  std::vector<int64_t> order(total);
  for (int64_t i = 0; i < total; ++i) order[i] = i;
  rng::Draw d(rng::Key{seed, rng::Stream::kEval, r, 0});
  for (int64_t i = 0; i < count; ++i) std::swap(order[i], order[i + d.below(total - i)]);
  order.resize(count);
  return order;
}

TwoSampleTests permutation_tests(const torch::Tensor& x_in, const torch::Tensor& y_in, const std::vector<double>& bandwidths,
                                 int permutations, uint64_t seed) {
  auto x = as_rows(x_in, "two-sample test (generated)"), y = as_rows(y_in, "two-sample test (reference)");
  same_dim(x, y);
  DL_REQUIRE(x.size(0) > 1 && y.size(0) > 1, "two-sample tests need at least 2 samples per set");
  DL_REQUIRE(permutations >= 0, "two-sample tests: the number of permutations must be >= 0, got " << permutations);
  for (double h : bandwidths) DL_REQUIRE(h > 0, "MMD bandwidth must be positive, got " << h);
  const int64_t n = x.size(0), m = y.size(0), total = n + m, cols = permutations + 1;
  auto pool = torch::cat({x, y});
  // Column 0 marks the observed first set (x), column 1 + r the first set of re-split r.
  auto member = torch::zeros({total, cols}, torch::kFloat64);
  member.slice(0, 0, n).select(1, 0).fill_(1);
  {
    auto acc = member.accessor<double, 2>();
    for (int r = 0; r < permutations; ++r)
      for (int64_t i : random_subset(total, n, seed, r)) acc[i][1 + r] = 1;
  }
  // Per statistic f (0: distance; 1 + s: Gaussian kernel of bandwidth s), with self pairs left
  // out: F S (every row's sum over each split's first set) and F 1 (every row's sum). From them,
  // for a split with indicator s: sum over its first set's pairs s'F s, across s'F 1 - s'F s, and
  // within the second set 1'F 1 - 2 s'F 1 + s'F s.
  const size_t stats = 1 + bandwidths.size();
  std::vector<torch::Tensor> fs, f1;
  for (size_t k = 0; k < stats; ++k) {
    fs.push_back(torch::zeros({total, cols}, torch::kFloat64));
    f1.push_back(torch::zeros({total}, torch::kFloat64));
  }
  for (int64_t i = 0; i < total; i += kBlock) {
    const int64_t ie = std::min(i + kBlock, total);
    auto pi = pool.slice(0, i, ie);
    for (int64_t j = i; j < total; j += kBlock) {  // F is symmetric: block (j, i) is block (i, j) transposed
      const int64_t je = std::min(j + kBlock, total);
      auto d = torch::cdist(pi, pool.slice(0, j, je));
      auto d2 = d.square();
      for (size_t k = 0; k < stats; ++k) {
        torch::Tensor v = k == 0 ? d : torch::exp(d2 * (-1.0 / (2 * bandwidths[k - 1] * bandwidths[k - 1])));
        if (i == j) v.fill_diagonal_(0);
        fs[k].slice(0, i, ie).add_(v.matmul(member.slice(0, j, je)));
        f1[k].slice(0, i, ie).add_(v.sum(1));
        if (i != j) {
          fs[k].slice(0, j, je).add_(v.transpose(0, 1).matmul(member.slice(0, i, ie)));
          f1[k].slice(0, j, je).add_(v.sum(0));
        }
      }
    }
  }
  const double nn = static_cast<double>(n), mm = static_cast<double>(m);
  TwoSampleTests out;
  for (size_t k = 0; k < stats; ++k) {
    auto first = (member * fs[k]).sum(0);               // s'F s
    auto row = member.transpose(0, 1).matmul(f1[k]);    // s'F 1
    const double all = f1[k].sum().item<double>();      // 1'F 1
    auto xx = first / (nn * (nn - 1)), xy = (row - first) / (nn * mm), yy = (all - 2 * row + first) / (mm * (mm - 1));
    auto u = k == 0 ? 2 * xy - xx - yy : xx + yy - 2 * xy;
    auto ua = u.accessor<double, 1>();
    PermutationTest t;
    t.value = ua[0];
    for (int r = 0; r < permutations; ++r) t.null.push_back(ua[1 + r]);
    const auto sp = spread_of(t.null);
    t.null_mean = sp.mean;
    t.null_sd = sp.sd;
    t.z = t.null_sd > 0 ? (t.value - t.null_mean) / t.null_sd : 0;
    int64_t at_least = 0;
    for (double v : t.null) at_least += v >= t.value;
    t.p_value = (1.0 + at_least) / (1.0 + permutations);
    const double xx0 = xx[0].item<double>(), yy0 = yy[0].item<double>(), xy0 = xy[0].item<double>();
    // V-statistics: the self pairs add f(0) (0 for the distance, 1 for a kernel) n and m times.
    if (k == 0) {
      t.v_value = 2 * xy0 - xx0 * (nn - 1) / nn - yy0 * (mm - 1) / mm;
      t.v_expected = (1 / nn + 1 / mm) * yy0;
      out.energy = t;
    } else {
      t.v_value = (xx0 * (nn - 1) + 1) / nn + (yy0 * (mm - 1) + 1) / mm - 2 * xy0;
      t.v_expected = (1 / nn + 1 / mm) * (1 - yy0);
      out.mmd.push_back(t);
    }
  }
  return out;
}

Spread spread_of(std::vector<double> draws) {
  Spread s;
  s.draws = std::move(draws);
  if (s.draws.empty()) return s;
  for (double v : s.draws) s.mean += v / s.draws.size();
  if (s.draws.size() > 1) {
    double ss = 0;
    for (double v : s.draws) ss += (v - s.mean) * (v - s.mean);
    s.sd = std::sqrt(ss / (s.draws.size() - 1));
  }
  return s;
}

Spread kernel_distance(const torch::Tensor& x_in, const torch::Tensor& y_in, int subsets, int64_t subset_size, uint64_t seed) {
  auto x = as_rows(x_in, "kernel distance (generated)"), y = as_rows(y_in, "kernel distance (reference)");
  same_dim(x, y);
  DL_REQUIRE(subsets >= 1, "kernel distance: need at least one subset, got " << subsets);
  DL_REQUIRE(subset_size >= 2 && subset_size <= x.size(0) && subset_size <= y.size(0),
             "kernel distance: subsets of " << subset_size << " rows need 2 to min(" << x.size(0) << ", " << y.size(0)
                                            << ") rows");
  const double dim = x.size(1), b = subset_size;
  auto kernel = [dim](const torch::Tensor& a, const torch::Tensor& c) { return (a.matmul(c.transpose(0, 1)) / dim + 1).pow(3); };
  std::vector<double> values;
  for (int s = 0; s < subsets; ++s) {
    auto xs = x.index_select(0, torch::tensor(random_subset(x.size(0), subset_size, seed, 2 * s), torch::kLong));
    auto ys = y.index_select(0, torch::tensor(random_subset(y.size(0), subset_size, seed, 2 * s + 1), torch::kLong));
    auto kxx = kernel(xs, xs), kyy = kernel(ys, ys);
    const double within = (kxx.sum() - kxx.trace() + kyy.sum() - kyy.trace()).item<double>() / (b * (b - 1));
    values.push_back(within - 2 * kernel(xs, ys).sum().item<double>() / (b * b));
  }
  return spread_of(values);
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
