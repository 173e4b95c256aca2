// Feature keys and the total loss (see features.h).
#include "drift/features.h"

#include <cmath>
#include <functional>
#include <limits>

#include <torch/torch.h>

#include "common/check.h"
#include "common/text.h"
#include "drift/cpu_loops.h"

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

// Keys named `names` from a transform giving one [B, D, L] tensor per name: the transform runs
// once per set (several keys share its work, e.g. a patch mean and the std around it).
using MultiTransform = std::function<std::vector<Tensor>(const Tensor&)>;

std::vector<FeatureKey> make_keys(const GroupedFeatures& f, const std::vector<std::string>& names,
                                  const MultiTransform& tr) {
  const int64_t K = f.classes;
  auto grouped = [&](const Tensor& m) {
    std::vector<Tensor> out = tr(m);
    DL_CHECK(out.size() == names.size(), "drift features: a transform gave " << out.size() << " tensors for "
                                                                             << names.size() << " keys");
    for (Tensor& t : out) t = group(t, K);
    return out;
  };
  const std::vector<Tensor> x = grouped(f.gen);
  std::vector<Tensor> pos, gneg, unc;
  {
    torch::NoGradGuard no_grad;
    pos = grouped(f.pos.detach());
    // One process: the negatives are the generated rows themselves, already transformed.
    if (f.gen_all.defined()) gneg = grouped(f.gen_all.detach());
    else for (const Tensor& t : x) gneg.push_back(t.detach());
    if (f.unc.defined()) unc = grouped(f.unc.detach());
  }
  std::vector<FeatureKey> keys;
  for (size_t n = 0; n < names.size(); ++n) {
    FeatureKey key;
    key.name = names[n];
    Problem& p = key.problem;
    p.x = x[n];
    p.y_pos = pos[n];
    const int64_t G = p.x.size(0), L = G / K, N = gneg[n].size(1);
    p.self_offset = f.self_offset;
    key.generated_negatives = N;
    if (f.unc.defined()) {
      torch::NoGradGuard no_grad;
      p.y_neg = torch::cat({gneg[n], unc[n]}, 1);
      if (f.unc_weight.defined()) {
        const int64_t U = unc[n].size(1);
        Tensor wu = f.unc_weight.detach().to(p.x.options().dtype(p.x.scalar_type()));
        wu = wu.view({K, 1, 1}).expand({K, L, U}).reshape({G, U});
        p.w_neg = torch::cat({torch::ones({G, N}, wu.options()), wu}, 1);
      }
    } else {
      p.y_neg = gneg[n];
    }
    keys.push_back(std::move(key));
  }
  return keys;
}

FeatureKey make_key(const GroupedFeatures& f, const std::string& name, const Transform& tr) {
  return std::move(make_keys(f, {name}, [&](const Tensor& m) { return std::vector<Tensor>{tr(m)}; })[0]);
}

// Mean and std over non-overlapping (p x q) patches of [B, C, H, W] (rows and columns past the
// last whole patch are left out), each as [B, C, h*w], patches row-major; std = sqrt(mean
// squared deviation from the patch mean + eps). Tensor operations on a [B, C, h, p, w, q] view
// (any device); CPU tensors take the fused loops below instead.
std::vector<Tensor> patch_stats_ops(const Tensor& m, int64_t p, int64_t q, double eps) {
  const int64_t B = m.size(0), C = m.size(1), h = m.size(2) / p, w = m.size(3) / q;
  const Tensor crop = (h * p == m.size(2) && w * q == m.size(3)) ? m : m.narrow(2, 0, h * p).narrow(3, 0, w * q);
  const Tensor x6 = crop.reshape({B, C, h, p, w, q});
  const Tensor mean = x6.mean(at::IntArrayRef{3, 5}, /*keepdim=*/true);
  const Tensor dev = x6 - mean;
  const Tensor var = (dev * dev).mean(at::IntArrayRef{3, 5});
  return {mean.reshape({B, C, h * w}), (var + eps).sqrt().reshape({B, C, h * w})};
}

// The same on CPU with one pass forward (plus one over each patch for the deviations) and one
// backward (closed form: d mean / dx = 1/n, d std / dx = (x - mean) / (n std)), instead of a
// chain of pooling and elementwise operations and their backward passes, each a sweep over
// the whole feature map.
class PatchStatsFn : public torch::autograd::Function<PatchStatsFn> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const Tensor& m, int64_t p,
                                                int64_t q, double eps) {
    const Tensor x = m.contiguous();
    const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), h = H / p, w = W / q;
    Tensor mean = torch::empty({B, C, h * w}, x.options()), sd = torch::empty({B, C, h * w}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "patch_stats_forward", [&] {
      cpu::patch_stats_forward<scalar_t>(x.data_ptr<scalar_t>(), B * C, H, W, p, q, static_cast<scalar_t>(eps),
                                         mean.data_ptr<scalar_t>(), sd.data_ptr<scalar_t>());
    });
    ctx->save_for_backward({x, mean, sd});
    ctx->saved_data["p"] = p;
    ctx->saved_data["q"] = q;
    return {mean, sd};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &mean = saved[1], &sd = saved[2];
    const int64_t p = ctx->saved_data["p"].toInt(), q = ctx->saved_data["q"].toInt();
    const Tensor gm = grads[0].defined() ? grads[0].contiguous() : Tensor();
    const Tensor gs = grads[1].defined() ? grads[1].contiguous() : Tensor();
    Tensor gx = torch::empty_like(x);
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "patch_stats_backward", [&] {
      cpu::patch_stats_backward<scalar_t>(x.data_ptr<scalar_t>(), x.size(0) * x.size(1), x.size(2), x.size(3), p, q,
                                          mean.data_ptr<scalar_t>(), sd.data_ptr<scalar_t>(),
                                          gm.defined() ? gm.data_ptr<scalar_t>() : nullptr,
                                          gs.defined() ? gs.data_ptr<scalar_t>() : nullptr, gx.data_ptr<scalar_t>());
    });
    return {gx, Tensor(), Tensor(), Tensor()};
  }
};

std::vector<Tensor> patch_stats(const Tensor& m, int64_t p, int64_t q, double eps) {
  if (m.is_cpu() && (m.scalar_type() == torch::kFloat || m.scalar_type() == torch::kDouble))
    return PatchStatsFn::apply(m, p, q, eps);
  return patch_stats_ops(m, p, q, eps);
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
    for (auto& k : make_keys(f, {prefix + ".mean" + tag, prefix + ".std" + tag},
                             [=](const Tensor& m) { return patch_stats(m, p, q, eps); }))
      keys.push_back(std::move(k));
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
  // Mean squared distance to the mean, per problem, in double: on CPU one fused pass per set
  // (the field's inputs are large: thousands of problems per key), elsewhere tensor operations.
  auto var = [](const Tensor& y) {
    if (y.is_cpu() && (y.scalar_type() == torch::kFloat || y.scalar_type() == torch::kDouble) && y.stride(2) == 1 &&
        y.stride(1) == y.size(2)) {
      Tensor out = torch::empty({y.size(0)}, y.options().dtype(torch::kDouble));
      AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "set_spread", [&] {
        cpu::set_spread<scalar_t>(y.data_ptr<scalar_t>(), y.size(0), y.size(1), y.size(2), y.stride(0),
                                  out.data_ptr<double>());
      });
      return out;
    }
    const Tensor yd = y.to(torch::kDouble);
    return (yd - yd.mean(1, true)).pow(2).sum(-1).mean(-1);
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
