// One training step (see step.h).
#include "trainer/step.h"

#include <torch/torch.h>

#include <string>
#include <vector>

#include "common/check.h"
#include "common/rng.h"

namespace driftlab {
namespace {

// Rows of every rank gathered (rank order) and put back in class-major order: the gathered
// block of rank r is [K, n_r, ...]; the result is [K, N, ...] flattened to [K * N, ...].
torch::Tensor gather_class_major(comm::Communicator& comm, const torch::Tensor& local, int64_t classes) {
  std::vector<int64_t> counts;
  auto all = comm.all_gather_varying(local.detach().contiguous(), &counts);
  std::vector<torch::Tensor> parts;
  int64_t at = 0;
  for (int64_t c : counts) {
    auto block = all.slice(0, at, at + c);
    auto shape = block.sizes().vec();
    shape[0] = c / classes;
    shape.insert(shape.begin(), classes);
    parts.push_back(block.reshape(shape));
    at += c;
  }
  auto out = torch::cat(parts, 1);
  auto shape = out.sizes().vec();
  shape[1] *= shape[0];
  shape.erase(shape.begin());
  return out.reshape(shape);
}

// Rows [begin, end) of a global class-major list, each rank reading and encoding its own slice,
// then gathered so every rank holds all of them in order.
std::vector<torch::Tensor> gather_in_order(comm::Communicator& comm, const std::vector<torch::Tensor>& local) {
  std::vector<torch::Tensor> out;
  for (const auto& t : local) out.push_back(comm.all_gather_varying(t.contiguous()));
  return out;
}

// The encoder's feature maps of x, in fp32 whatever the precision of the pass.
std::vector<torch::Tensor> encode(const StepContext& ctx, const torch::Tensor& x, bool grad) {
  if (!ctx.encoder) return {};
  torch::AutoGradMode mode(grad);
  std::vector<torch::Tensor> maps;
  {
    AutocastScope autocast(ctx.precision, ctx.device);
    maps = ctx.encoder->forward(x);
  }
  for (auto& m : maps) m = as_fp32(m);
  return maps;
}

// gen[0] is the raw output; gen[1..] the encoder's feature maps.
std::vector<drift::FeatureKey> make_keys(const StepContext& ctx, const std::vector<torch::Tensor>& gen,
                                         const std::vector<torch::Tensor>& gen_all, const std::vector<torch::Tensor>& pos,
                                         const std::vector<torch::Tensor>& unc, int64_t self_offset,
                                         const torch::Tensor& unc_weight, int64_t classes) {
  std::vector<drift::FeatureKey> keys;
  for (size_t m = 0; m < gen.size(); ++m) {
    drift::GroupedFeatures f;
    f.gen = gen[m];
    f.gen_all = gen_all[m];
    f.self_offset = self_offset;
    f.pos = pos[m];
    if (!unc.empty()) {
      f.unc = unc[m];
      f.unc_weight = unc_weight;
    }
    f.classes = classes;
    if (m == 0) {
      if (gen[0].dim() == 2) keys.push_back(drift::vector_key(f, "x"));
      else for (auto& k : drift::output_keys(f, "x")) keys.push_back(std::move(k));
    } else {
      for (auto& k : drift::feature_map_keys(f, "f" + std::to_string(m - 1), ctx.keys)) keys.push_back(std::move(k));
    }
  }
  return keys;
}

// UserError naming the step and the first set with NaN or Inf: the generated samples, an encoder
// feature map (of the generated rows, all ranks' generated rows, positives, unconditional rows).
void require_finite(int64_t t, const std::vector<torch::Tensor>& gen, const std::vector<torch::Tensor>& gen_all,
                    const std::vector<torch::Tensor>& pos, const std::vector<torch::Tensor>& unc) {
  std::vector<torch::Tensor> flags;
  std::vector<std::string> names;
  auto add = [&](const std::vector<torch::Tensor>& set, const char* what) {
    for (size_t m = 0; m < set.size(); ++m) {
      if (!set[m].defined()) continue;
      // max and min propagate NaN and reach +-Inf: finite extremes mean a finite tensor.
      const torch::Tensor d = set[m].detach();
      flags.push_back(torch::isfinite(torch::stack({d.amax(), d.amin()})).all());
      names.push_back(std::string(what) + (m == 0 ? " (the samples themselves)" : " (encoder feature map " +
                                                                                       std::to_string(m - 1) + ")"));
    }
  };
  add(gen, "generated rows");
  add(gen_all, "generated rows of all ranks");
  add(pos, "positives");
  add(unc, "unconditional negatives");
  if (flags.empty()) return;
  const torch::Tensor ok = torch::stack(flags).to(torch::kCPU);
  for (size_t i = 0; i < names.size(); ++i)
    DL_REQUIRE(ok[static_cast<int64_t>(i)].item<bool>(),
               "step " << t << ": the " << names[i] << " contain NaN or Inf (the generator diverged, or the data "
                       "holds non-finite values); lower --lr or check the data set");
}

}  // namespace

data::StepRequest step_request(const StepContext& ctx, int64_t t, const StepPlan& plan) {
  data::StepRequest r;
  r.step = static_cast<uint64_t>(t);
  for (int64_t c : plan.classes) r.classes.push_back(ctx.num_classes > 0 ? c : data::kAnyClass);
  r.pos_per_class = ctx.batch.pos_per_class;
  r.unc_per_class = ctx.num_classes > 0 ? ctx.batch.unc_per_class : 0;
  return r;
}

StepStats run_step(const StepContext& ctx, int64_t t, const StepSchedule& s, const data::StepBatch& batch,
                   PhaseTimes* phases) {
  const StepPlan& plan = s.plan;
  DL_CHECK(ctx.gen && ctx.comm, "run_step: the context needs a generator and a communicator");
  DL_CHECK(batch.step == static_cast<uint64_t>(t), "step " << t << " was given the real rows of step " << batch.step);
  PhaseTimes unused;
  PhaseTimes& ph = phases ? *phases : unused;
  Stopwatch sw;
  comm::Communicator& comm = *ctx.comm;
  const int world = comm.world_size();
  const int64_t K = static_cast<int64_t>(plan.classes.size()), N = ctx.batch.gen_per_class;
  const bool guided = ctx.batch.unc_per_class > 0 && ctx.num_classes > 0;
  const auto [b, e] = rank_slice(N, comm.rank(), world);
  const int64_t n = e - b;

  // Generator inputs of this rank's rows: row i of class slot k is global sample k*N + b + i.
  std::vector<torch::Tensor> noise, style;
  std::vector<int64_t> labels;
  std::vector<float> alphas;
  for (int64_t k = 0; k < K; ++k) {
    auto in = models::draw_generator_inputs(*ctx.gen, ctx.seed, rng::Stream::kNoise, static_cast<uint64_t>(t), k * N + b, n);
    noise.push_back(in.noise);
    if (in.style.defined()) style.push_back(in.style);
    const int64_t label = ctx.num_classes > 0 ? plan.classes[k] : ctx.gen->null_class();
    labels.insert(labels.end(), n, label);
    alphas.insert(alphas.end(), n, guided ? static_cast<float>(plan.alphas[k]) : 1.0f);
  }
  torch::Tensor x;
  {
    AutocastScope autocast(ctx.precision, ctx.device);
    x = ctx.gen->forward(torch::cat(noise).to(ctx.device), torch::tensor(labels, torch::kLong).to(ctx.device),
                         torch::tensor(alphas).to(ctx.device),
                         style.empty() ? torch::Tensor() : torch::cat(style).to(ctx.device));
  }
  x = as_fp32(x);
  ph.add("generator", sw.seconds());

  sw.reset();
  std::vector<torch::Tensor> gen_feats{x};
  for (auto& f : encode(ctx, x, true)) gen_feats.push_back(f);
  auto pos_local = batch.positives.to(ctx.device), unc_local = batch.unconditional.to(ctx.device);
  std::vector<torch::Tensor> pos_feats{pos_local}, unc_feats;
  for (auto& f : encode(ctx, pos_local, false)) pos_feats.push_back(f);
  if (guided) {
    unc_feats.push_back(unc_local);
    for (auto& f : encode(ctx, unc_local, false)) unc_feats.push_back(f);
  }
  ph.add("encoder", sw.seconds());

  sw.reset();
  // In one process gen_all stays undefined: the keys then reuse the generated rows' transform
  // for the negatives instead of computing it twice.
  std::vector<torch::Tensor> gen_all;
  for (const auto& f : gen_feats) gen_all.push_back(world == 1 ? torch::Tensor() : gather_class_major(comm, f, K));
  pos_feats = gather_in_order(comm, pos_feats);
  if (guided) unc_feats = gather_in_order(comm, unc_feats);
  ph.add("communication", sw.seconds());

  sw.reset();
  torch::Tensor unc_weight;
  if (guided) {
    std::vector<float> w;
    for (double a : plan.alphas) w.push_back(static_cast<float>(drift::cfg_unconditional_weight(a, N, ctx.batch.unc_per_class)));
    unc_weight = torch::tensor(w).to(ctx.device);
  }
  // Finite inputs are checked here once per feature map (one reduction each) rather than by the
  // field once per key: the keys are views and pools of these maps, thousands of problems each.
  require_finite(t, gen_feats, gen_all, pos_feats, unc_feats);
  drift::FieldOptions field = ctx.field;
  field.taus = s.taus;
  field.check_finite = false;
  auto keys = make_keys(ctx, gen_feats, gen_all, pos_feats, unc_feats, b, unc_weight, K);
  StepStats stats;
  stats.total = drift::total_loss(keys, field, ctx.reducer);
  ph.add("drift", sw.seconds());

  sw.reset();
  ctx.gen->zero_grad();
  // The loss is this rank's share of the global loss; the gradient sync averages, so scale by W
  // to make the synchronised gradient the gradient of the global loss.
  (stats.total.loss * static_cast<double>(world)).backward();
  stats.total.loss = stats.total.loss.detach();
  ph.add("backward", sw.seconds());
  return stats;
}

}  // namespace driftlab
