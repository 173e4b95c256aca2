// Feature keys and the total loss (see features.h).
#include "drift/features.h"

#include <cmath>
#include <functional>
#include <limits>

#include <torch/torch.h>

#include "common/check.h"
#include "common/text.h"

namespace driftlab::drift {
namespace {

using torch::Tensor;
// A key's transform maps a batch to channel-major per-sample features [B, D, L] (L problems per
// class, D-dimensional): the layout pooling and flattening give without a copy.
using Transform = std::function<Tensor(const Tensor&)>;

// [K*m, D, L] -> [K*L, m, D]: problem (k, l) holds the m rows of class k at location l. One copy
// (none when L = 1).
Tensor group(const Tensor& t, int64_t K) {
  const int64_t m = t.size(0) / K, D = t.size(1), L = t.size(2);
  return t.reshape({K, m, D, L}).permute({0, 3, 1, 2}).reshape({K * L, m, D});
}

void check_grouped(const GroupedFeatures& f) {
  DL_REQUIRE(f.classes > 0, "drift features: classes must be > 0, got " << f.classes);
  DL_REQUIRE(f.gen.defined() && f.pos.defined(), "drift features: gen and pos must be given");
  const int64_t K = f.classes;
  auto rows_ok = [&](const Tensor& t, const char* name) {
    DL_REQUIRE(t.dim() >= 1 && t.size(0) > 0 && t.size(0) % K == 0,
               "drift features: " << name << " must hold a non-empty multiple of " << K
                                  << " rows (class-major), got " << shape_string(t.sizes()));
    DL_REQUIRE(t.sizes().slice(1) == f.gen.sizes().slice(1),
               "drift features: " << name << " " << shape_string(t.sizes()) << " must have the per-sample shape of gen "
                                  << shape_string(f.gen.sizes()));
  };
  rows_ok(f.gen, "gen");
  rows_ok(f.pos, "pos");
  if (f.gen_all.defined()) rows_ok(f.gen_all, "gen_all");
  if (f.unc.defined()) rows_ok(f.unc, "unc");
  if (f.unc_weight.defined())
    DL_REQUIRE(f.unc_weight.dim() == 1 && f.unc_weight.size(0) == K,
               "drift features: unc_weight must be [" << K << "], got " << shape_string(f.unc_weight.sizes()));
}

FeatureKey make_key(const GroupedFeatures& f, const std::string& name, const Transform& tr) {
  const int64_t K = f.classes;
  FeatureKey key;
  key.name = name;
  Problem& p = key.problem;
  p.x = group(tr(f.gen), K);
  Tensor gneg;
  {
    torch::NoGradGuard no_grad;
    p.y_pos = group(tr(f.pos.detach()), K);
    // One process: the negatives are the generated rows themselves, already transformed.
    gneg = f.gen_all.defined() ? group(tr(f.gen_all.detach()), K) : p.x.detach();
  }
  const int64_t G = p.x.size(0), L = G / K, N = gneg.size(1);
  p.self_offset = f.self_offset;
  key.generated_negatives = N;
  if (f.unc.defined()) {
    torch::NoGradGuard no_grad;
    Tensor unc = group(tr(f.unc.detach()), K);
    p.y_neg = torch::cat({gneg, unc}, 1);
    if (f.unc_weight.defined()) {
      const int64_t U = unc.size(1);
      Tensor wu = f.unc_weight.detach().to(p.x.options().dtype(p.x.scalar_type()));
      wu = wu.view({K, 1, 1}).expand({K, L, U}).reshape({G, U});
      p.w_neg = torch::cat({torch::ones({G, N}, wu.options()), wu}, 1);
    }
  } else {
    p.y_neg = gneg;
  }
  return key;
}

// Mean and std over non-overlapping (p x q) patches of [B, C, H, W] (rows and columns past the
// last whole patch are left out), as [B, C, h*w], patches row-major. Pooling, not a copy of
// every patch: the std is the RMS deviation from the patch mean.
Tensor patch_mean(const Tensor& m, int64_t p, int64_t q) {
  return torch::avg_pool2d(m, {p, q}, {p, q}).flatten(2);
}
Tensor patch_std(const Tensor& m, int64_t p, int64_t q, double eps) {
  const int64_t h = m.size(2) / p, w = m.size(3) / q;
  Tensor crop = m.narrow(2, 0, h * p).narrow(3, 0, w * q);
  Tensor mean = torch::avg_pool2d(crop, {p, q}, {p, q});
  Tensor dev = crop - torch::upsample_nearest2d(mean, {h * p, w * q});
  return (torch::avg_pool2d(dev * dev, {p, q}, {p, q}) + eps).sqrt().flatten(2);
}

}  // namespace

std::vector<FeatureKey> feature_map_keys(const GroupedFeatures& f, const std::string& prefix,
                                         const KeyOptions& o) {
  check_grouped(f);
  DL_REQUIRE(f.gen.dim() == 4, "drift features: a feature map must be [B, C, H, W], got " << shape_string(f.gen.sizes()));
  const int64_t H = f.gen.size(2), W = f.gen.size(3);
  const double eps = o.std_eps;
  std::vector<FeatureKey> keys;
  if (o.per_location)
    keys.push_back(make_key(f, prefix + ".loc", [](const Tensor& m) { return m.flatten(2); }));  // [B, C, HW]
  auto stats = [&](const std::string& tag, int64_t p, int64_t q) {
    keys.push_back(make_key(f, prefix + ".mean" + tag, [=](const Tensor& m) { return patch_mean(m, p, q); }));
    keys.push_back(make_key(f, prefix + ".std" + tag, [=](const Tensor& m) { return patch_std(m, p, q, eps); }));
  };
  if (o.global_stats) stats("", H, W);
  if (o.patch2 && H >= 2 && W >= 2) stats("2x2", 2, 2);
  if (o.patch4 && H >= 4 && W >= 4) stats("4x4", 4, 4);
  return keys;
}

std::vector<FeatureKey> output_keys(const GroupedFeatures& f, const std::string& prefix) {
  check_grouped(f);
  DL_REQUIRE(f.gen.dim() >= 2, "drift features: an output must be [B, ...], got " << shape_string(f.gen.sizes()));
  std::vector<FeatureKey> keys;
  keys.push_back(make_key(f, prefix + ".flat", [](const Tensor& m) { return m.flatten(1).unsqueeze(2); }));
  if (f.gen.dim() == 4)
    keys.push_back(make_key(f, prefix + ".rms", [](const Tensor& m) {
      return (m.pow(2).mean({2, 3}) + 1e-6).sqrt().unsqueeze(2);  // [B, C, 1]
    }));
  return keys;
}

FeatureKey vector_key(const GroupedFeatures& f, const std::string& prefix) {
  check_grouped(f);
  DL_REQUIRE(f.gen.dim() == 2, "drift features: vectors must be [B, D], got " << shape_string(f.gen.sizes()));
  return make_key(f, prefix, [](const Tensor& m) { return m.unsqueeze(2); });
}

torch::Tensor spread_ratio(const FeatureKey& key) {
  torch::NoGradGuard no_grad;
  const Tensor yp = key.problem.y_pos.dim() == 2 ? key.problem.y_pos.unsqueeze(0) : key.problem.y_pos;
  const Tensor yn = key.problem.y_neg.dim() == 2 ? key.problem.y_neg.unsqueeze(0) : key.problem.y_neg;
  DL_REQUIRE(key.generated_negatives > 0 && key.generated_negatives <= yn.size(1),
             "drift: key " << key.name << " has " << key.generated_negatives << " generated negatives of "
                           << yn.size(1));
  // Mean squared distance to the mean, per problem: mean_i ||y_i||^2 - ||mean y||^2 (in double:
  // the difference of two large terms).
  auto var = [](const Tensor& y) {
    const Tensor yd = y.to(torch::kDouble);
    return (yd.pow(2).sum(-1).mean(-1) - yd.mean(1).pow(2).sum(-1)).clamp_min(0);
  };
  const Tensor vg = var(yn.narrow(1, 0, key.generated_negatives)), vp = var(yp);
  return (vg / vp).sqrt().masked_fill(vp <= 0, std::numeric_limits<double>::quiet_NaN());
}

TotalLoss total_loss(const std::vector<FeatureKey>& keys, const FieldOptions& options, Reducer* reducer) {
  DL_REQUIRE(!keys.empty(), "drift: total_loss needs at least one feature key");
  TotalLoss out;
  for (const FeatureKey& k : keys) {
    LossResult r = drift_loss(k.problem, options, reducer);
    out.loss = out.loss.defined() ? out.loss + r.loss : r.loss;
    out.value += r.value;
    const double spread = k.generated_negatives > 0 ? torch::nanmean(spread_ratio(k)).item<double>()
                                                    : std::numeric_limits<double>::quiet_NaN();
    out.keys.push_back({k.name, r.value, spread, std::move(r.field)});
  }
  return out;
}

double cfg_unconditional_weight(double alpha, int64_t n_neg, int64_t n_unc) {
  DL_REQUIRE(alpha >= 1, "drift: guidance alpha must be >= 1, got " << alpha);
  DL_REQUIRE(n_neg >= 1 && n_unc >= 1, "drift: CFG needs n_neg >= 1 and n_unc >= 1, got " << n_neg << ", " << n_unc);
  return (alpha - 1) * static_cast<double>(n_neg - 1) / static_cast<double>(n_unc);
}

torch::Tensor cfg_unconditional_weight(const torch::Tensor& alpha, int64_t n_neg, int64_t n_unc) {
  DL_REQUIRE(alpha.defined() && alpha.numel() > 0, "drift: CFG alpha tensor is empty");
  DL_REQUIRE((alpha >= 1).all().item<bool>(), "drift: guidance alpha must be >= 1 everywhere");
  DL_REQUIRE(n_neg >= 1 && n_unc >= 1, "drift: CFG needs n_neg >= 1 and n_unc >= 1, got " << n_neg << ", " << n_unc);
  return (alpha - 1) * (static_cast<double>(n_neg - 1) / static_cast<double>(n_unc));
}

}  // namespace driftlab::drift
