// plain_step_bench: the shipped MNIST training step (configs/mnist.flags) written the way a user
// of plain LibTorch would write it (driftlab's generator and encoder modules, but the feature
// keys, the drifting field and the loss as tensor operations, the gradient by autograd), timed
// against driftlab's run_step in fp32 and in bf16 in the same run, next to a GEMM speed reference
// of the same run. Before timing it checks that the plain step computes the loss of run_step on
// the same batch and weights (exit status 1 when they differ by more than --check_tolerance).
// Prints figures; not a test.
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <c10/core/CPUAllocator.h>
#include <gflags/gflags.h>
#include <torch/torch.h>
#include <torch/version.h>

#include "comm/communicator.h"
#include "comm/drift_reducer.h"
#include "comm/topology.h"
#include "common/check.h"
#include "common/precision.h"
#include "common/rng.h"
#include "common/speed_reference.h"
#include "common/timer.h"
#include "common/tool_main.h"
#include "data/loader.h"
#include "data/reader.h"
#include "drift/features.h"
#include "drift/field.h"
#include "models/encoders.h"
#include "models/generators.h"
#include "trainer/step.h"
#include "trainer/step_plan.h"

DEFINE_string(data, ".cache/data/mnist-train",
              "MNIST training set in the shard format (scripts/mnist.sh makes it); the real rows of each step are "
              "read from it. Missing or empty: uniform random images in [-1, 1] of the same shape (said so)");
DEFINE_string(encoder, ".cache/encoders/mnist-mae.pt",
              "feature encoder file (drift_encoder pretrain); missing or empty: a random-init ResNet of the "
              "same shape (--enc_widths, --enc_blocks, --enc_groups)");
DEFINE_string(enc_widths, "16,32,64", "channels per stage of the random-init ResNet (when --encoder is missing)");
DEFINE_string(enc_blocks, "2,2,2", "basic blocks per stage of the random-init ResNet (when --encoder is missing)");
DEFINE_int64(enc_groups, 8, "GroupNorm groups of the random-init ResNet (when --encoder is missing)");
DEFINE_int32(steps, 10, "timed steps S per variant (after --warmup steps); the variants take turns step by step");
DEFINE_int32(warmup, 2, "untimed warm-up steps per variant before the timed ones");
DEFINE_int32(threads, static_cast<int32_t>(std::thread::hardware_concurrency()),
             "LibTorch intra-op threads, the same for every variant (default: all cores of this machine)");
DEFINE_string(variants, "plain,fp32,bf16",
              "comma-separated variants to time: plain (plain LibTorch, fp32), fp32 (driftlab run_step, fp32), "
              "bf16 (driftlab run_step under bf16 autocast); the loss check runs whenever plain and fp32 are both "
              "listed. Ratios are against plain when it is timed, else against the first variant");
DEFINE_double(check_tolerance, 1e-3,
              "largest relative difference between the plain and driftlab fp32 loss of the first step "
              "(exit status 1 beyond it)");
DEFINE_bool(cdist_mm, false,
            "plain step: torch::cdist in its default compute mode (distances from a matrix product for more than 25 "
            "rows) instead of direct sums; cancellation between near neighbours then changes the loss (the "
            "check fails: x.rms, D = 1)");
DEFINE_bool(show_keys, false, "print the plain and driftlab loss of every key in the check (always when it fails)");
DEFINE_int64(seed, 0, "seed of the noise, the classes and guidance scales, and the real rows (--seed of drift_train)");
DEFINE_int64(first_step, 0, "step index of the first step (noise, classes, alphas and rows follow from it)");
DEFINE_int64(num_classes_per_step, 10, "classes per step K (configs/mnist.flags)");
DEFINE_int64(gen_per_class, 32, "generated samples per class N (configs/mnist.flags)");
DEFINE_int64(pos_per_class, 32, "positives per class P (configs/mnist.flags)");
DEFINE_int64(unc_per_class, 8, "unconditional negatives per class U (configs/mnist.flags; 0: no guidance)");
DEFINE_double(alpha_max, 3.0, "guidance scales are drawn in [1, alpha_max] (configs/mnist.flags)");
DEFINE_double(alpha_power, 3.0, "guidance: alpha density proportional to alpha^-alpha_power");
DEFINE_double(alpha_one_frac, 0.3, "share of classes with alpha = 1 (configs/mnist.flags)");
DEFINE_string(taus, "0.02,0.05,0.2", "kernel temperatures (configs/mnist.flags)");
DEFINE_bool(drift_floor, false, "affinity floor A = sqrt(max(a_row a_col, 1e-6)) (configs/mnist.flags: off)");
DEFINE_bool(keys_per_location, true, "per-location keys of every encoder map (configs/mnist.flags)");
DEFINE_bool(keys_patch, true, "2x2 and 4x4 patch mean/std keys of every encoder map (configs/mnist.flags)");
DEFINE_int64(gen_noise_dim, 64, "conv generator: noise length (configs/mnist.flags)");
DEFINE_int64(gen_width, 32, "conv generator: base channels (configs/mnist.flags)");
DEFINE_int64(gen_cond_dim, 64, "conv generator: class + alpha embedding size (configs/mnist.flags)");

namespace {

using torch::Tensor;
using namespace driftlab;

// ---- peak memory: a counting wrapper around LibTorch's CPU allocator ------------------------
// The wrapped blocks are kept in a table keyed by their address, so that a block's context is
// its data pointer (what Allocator::raw_allocate requires).
std::atomic<int64_t> g_live{0}, g_high{0};
std::mutex g_blocks_mutex;
std::unordered_map<void*, std::pair<c10::DataPtr, int64_t>> g_blocks;

void release_block(void* data) {
  std::pair<c10::DataPtr, int64_t> block;
  {
    std::lock_guard<std::mutex> lock(g_blocks_mutex);
    auto it = g_blocks.find(data);
    if (it == g_blocks.end()) return;
    block = std::move(it->second);
    g_blocks.erase(it);
  }
  g_live -= block.second;
}  // block.first frees the memory here

class PeakAllocator final : public c10::Allocator {
 public:
  explicit PeakAllocator(c10::Allocator* base) : base_(base) {}
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  c10::DataPtr allocate(size_t n) override { return wrap(n); }
  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }
#else
  c10::DataPtr allocate(size_t n) const override { return wrap(n); }
#endif
  c10::DeleterFnPtr raw_deleter() const override { return &release_block; }

 private:
  c10::DataPtr wrap(size_t n) const {
    c10::DataPtr inner = base_->allocate(n);
    void* data = inner.get();
    const c10::Device device = inner.device();
    if (data == nullptr) return inner;  // empty tensors
    {
      std::lock_guard<std::mutex> lock(g_blocks_mutex);
      g_blocks[data] = {std::move(inner), static_cast<int64_t>(n)};
    }
    const int64_t now = (g_live += static_cast<int64_t>(n));
    int64_t high = g_high.load();
    while (now > high && !g_high.compare_exchange_weak(high, now)) {
    }
    return c10::DataPtr(data, data, &release_block, device);
  }
  c10::Allocator* base_;
};

// Relative paths are tried in the working directory, then in the source tree.
std::string find_path(const std::string& p) {
  struct stat st {};
  if (p.empty() || p[0] == '/' || ::stat(p.c_str(), &st) == 0) return p;
  const std::string alt = std::string(DRIFTLAB_SOURCE_DIR) + "/" + p;
  return ::stat(alt.c_str(), &st) == 0 ? alt : p;
}

bool exists(const std::string& p) {
  struct stat st {};
  return !p.empty() && ::stat(p.c_str(), &st) == 0;
}

// ---- the plain LibTorch step ---------------------------------------------------------------
// What a user would write from the paper and docs/DRIFTING.md: features as [B, L, D] per
// sample (L locations, D dimensions), grouped into [K L, m, D] problems; the field under
// no_grad (it is a stop-gradient target); the regression loss with autograd.

// One key's features of a batch: [B, L, D].
struct NamedFeature {
  std::string name;
  Tensor f;
};

// Mean and std (sqrt(mean squared deviation + eps)) over non-overlapping p x q patches of
// [B, C, H, W] (whole patches only): each [B, h w, C].
std::pair<Tensor, Tensor> patch_mean_std(const Tensor& m, int64_t p, int64_t q, double eps) {
  const int64_t B = m.size(0), C = m.size(1), h = m.size(2) / p, w = m.size(3) / q;
  const Tensor x = m.narrow(2, 0, h * p).narrow(3, 0, w * q).reshape({B, C, h, p, w, q});
  const Tensor mean = x.mean({3, 5}, /*keepdim=*/true);
  const Tensor var = (x - mean).pow(2).mean({3, 5});
  return {mean.reshape({B, C, h * w}).transpose(1, 2), (var + eps).sqrt().reshape({B, C, h * w}).transpose(1, 2)};
}

// Every key of the step, in driftlab's order: the raw output (flattened, per-channel RMS), then
// per encoder map: per-location vectors, global, 2x2 and 4x4 patch means and stds.
std::vector<NamedFeature> plain_keys(const Tensor& x, const std::vector<Tensor>& maps) {
  std::vector<NamedFeature> out;
  out.push_back({"x.flat", x.flatten(1).unsqueeze(1)});
  out.push_back({"x.rms", (x.pow(2).mean({2, 3}) + 1e-6).sqrt().unsqueeze(1)});
  for (size_t i = 0; i < maps.size(); ++i) {
    const Tensor& m = maps[i];
    const std::string p = "f" + std::to_string(i);
    const int64_t H = m.size(2), W = m.size(3);
    if (FLAGS_keys_per_location) out.push_back({p + ".loc", m.flatten(2).transpose(1, 2)});
    auto add = [&](const std::string& tag, int64_t ph, int64_t pw) {
      auto [mean, sd] = patch_mean_std(m, ph, pw, 1e-6);
      out.push_back({p + ".mean" + tag, mean});
      out.push_back({p + ".std" + tag, sd});
    };
    add("", H, W);
    if (FLAGS_keys_patch && H >= 2 && W >= 2) add("2x2", 2, 2);
    if (FLAGS_keys_patch && H >= 4 && W >= 4) add("4x4", 4, 4);
  }
  return out;
}

// [K m, L, D] -> [K L, m, D]: problem (k, l) holds the m rows of class k at location l.
Tensor by_problem(const Tensor& f, int64_t K) {
  const int64_t m = f.size(0) / K, L = f.size(1), D = f.size(2);
  return f.reshape({K, m, L, D}).permute({0, 2, 1, 3}).reshape({K * L, m, D});
}

// The loss of one key: x [G, N, D] (with gradient), positives [G, P, D], unconditional
// negatives [G, U, D] with weight w_unc [G] (both undefined without guidance).
Tensor plain_key_loss(const Tensor& x, const Tensor& pos, const Tensor& unc, const Tensor& w_unc,
                      const std::vector<double>& taus, bool floor) {
  const int64_t G = x.size(0), N = x.size(1), D = x.size(2), P = pos.size(1);
  const int64_t U = unc.defined() ? unc.size(1) : 0, C = P + N + U;
  const double sqrt_d = std::sqrt(static_cast<double>(D));
  Tensor V;
  double s = 0;
  {
    torch::NoGradGuard no_grad;
    const Tensor xd = x.detach();
    // Targets: the positives, then the negatives (the generated rows themselves, then the
    // unconditional real rows).
    const Tensor y = U > 0 ? torch::cat({pos, xd, unc}, 1) : torch::cat({pos, xd}, 1);  // [G, C, D]
    // Euclidean distances summed directly: cdist's default mode takes ||x||^2 + ||y||^2 - 2 x.y
    // for more than 25 rows, which cancels catastrophically between near neighbours.
    const Tensor d = torch::cdist(xd, y, 2.0, FLAGS_cdist_mm ? 0 : 2);  // [G, N, C]
    Tensor w = torch::ones({G, C}, x.options());
    if (U > 0) w.narrow(1, P + N, U).copy_(w_unc.view({G, 1}).expand({G, U}));
    // A generated row is not its own negative: column P + i of row i takes part in nothing.
    const Tensor self = torch::cat({torch::zeros({N, P}, torch::kBool), torch::eye(N, torch::kBool),
                                    torch::zeros({N, U}, torch::kBool)}, 1);  // [N, C]
    const Tensor wm = w.unsqueeze(1).expand({G, N, C}).masked_fill(self, 0);
    s = std::max((d * wm).sum().item<double>() / wm.sum().item<double>(), 1e-12);  // weighted mean distance
    const Tensor yn = y * (sqrt_d / s);  // normalised features: mean distance sqrt(D)
    V = torch::zeros_like(xd);
    for (double tau : taus) {
      const Tensor logits = (d * (-1.0 / (s * tau))).masked_fill(self, -std::numeric_limits<float>::infinity());
      // sqrt(softmax over the targets * softmax over the generated rows), in log space.
      Tensor A = ((logits.log_softmax(2) + logits.log_softmax(1)) * 0.5).exp();
      if (floor) A = A.clamp_min(std::sqrt(1e-6)).masked_fill(self, 0);
      A = A * w.unsqueeze(1);
      const Tensor Ap = A.narrow(2, 0, P), An = A.narrow(2, P, N + U);
      const Tensor Vt = An.sum(2, true) * torch::bmm(Ap, yn.narrow(1, 0, P)) -
                        Ap.sum(2, true) * torch::bmm(An, yn.narrow(1, P, N + U));
      // Squares summed in double (a precaution): far from every positive (at initialisation) a row's
      // field is of the order of its affinities to them, 1e-16 and less at tau 0.02.
      const double lambda = std::sqrt(Vt.to(torch::kDouble).pow(2).sum(2).mean().item<double>() / static_cast<double>(D));
      V += Vt / std::max(lambda, 1e-8);
    }
  }
  // mean ||x~ - sg(x~ + V)||^2 / D with x~ = x sqrt(D) / s (s a constant).
  const Tensor xt = x * (sqrt_d / s);
  return (xt - (xt + V).detach()).pow(2).sum(2).mean() / static_cast<double>(D);
}

struct StepInputs {
  int64_t t = 0;
  StepPlan plan;
  data::StepBatch batch;
};

struct PlainResult {
  double loss = 0;
  std::map<std::string, double> key_loss;
};

// The whole step: generator, encoder, keys, field, loss, backward (gradients in gen's .grad()).
PlainResult plain_step(const StepContext& ctx, const StepInputs& in, const std::vector<double>& taus,
                       PhaseTimes* phases) {
  const int64_t K = static_cast<int64_t>(in.plan.classes.size()), N = ctx.batch.gen_per_class;
  const int64_t U = ctx.batch.unc_per_class;
  const bool guided = U > 0 && ctx.num_classes > 0;
  Stopwatch sw;
  std::vector<Tensor> noise;
  std::vector<int64_t> labels;
  std::vector<float> alphas;
  for (int64_t k = 0; k < K; ++k) {
    noise.push_back(models::draw_generator_inputs(*ctx.gen, ctx.seed, rng::Stream::kNoise,
                                                  static_cast<uint64_t>(in.t), k * N, N)
                        .noise);
    labels.insert(labels.end(), N, in.plan.classes[k]);
    alphas.insert(alphas.end(), N, guided ? static_cast<float>(in.plan.alphas[k]) : 1.0f);
  }
  const Tensor x = ctx.gen->forward(torch::cat(noise), torch::tensor(labels, torch::kLong), torch::tensor(alphas));
  phases->add("generator", sw.seconds());

  sw.reset();
  const std::vector<Tensor> gen_maps = ctx.encoder->forward(x);
  std::vector<Tensor> pos_maps, unc_maps;
  {
    torch::NoGradGuard no_grad;
    pos_maps = ctx.encoder->forward(in.batch.positives);
    if (guided) unc_maps = ctx.encoder->forward(in.batch.unconditional);
  }
  phases->add("encoder", sw.seconds());

  sw.reset();
  Tensor w_unc_class;
  if (guided) {
    std::vector<float> w;
    for (double a : in.plan.alphas) w.push_back(static_cast<float>((a - 1.0) * static_cast<double>(N - 1) / U));
    w_unc_class = torch::tensor(w);
  }
  const auto gen_keys = plain_keys(x, gen_maps);
  std::vector<NamedFeature> pos_keys, unc_keys;
  {
    torch::NoGradGuard no_grad;
    pos_keys = plain_keys(in.batch.positives, pos_maps);
    if (guided) unc_keys = plain_keys(in.batch.unconditional, unc_maps);
  }
  PlainResult r;
  Tensor total;
  for (size_t i = 0; i < gen_keys.size(); ++i) {
    const Tensor xg = by_problem(gen_keys[i].f, K);
    const int64_t L = gen_keys[i].f.size(1);
    Tensor unc, wu;
    if (guided) {
      unc = by_problem(unc_keys[i].f, K);
      wu = w_unc_class.repeat_interleave(L);
    }
    const Tensor loss = plain_key_loss(xg, by_problem(pos_keys[i].f, K), unc, wu, taus, FLAGS_drift_floor);
    total = total.defined() ? total + loss : loss;
    r.key_loss[gen_keys[i].name] = loss.item<double>();
  }
  phases->add("drift", sw.seconds());

  sw.reset();
  ctx.gen->zero_grad();
  total.backward();
  r.loss = total.item<double>();
  phases->add("backward", sw.seconds());
  return r;
}

Tensor flat_grads(models::GeneratorImpl& gen) {
  std::vector<Tensor> g;
  for (auto& p : gen.parameters()) g.push_back(p.grad().flatten().clone());
  return torch::cat(g);
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at <= s.size()) {
    const size_t e = std::min(s.find(',', at), s.size());
    if (e > at) out.push_back(s.substr(at, e - at));
    at = e + 1;
  }
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Variant {
  std::string name, label;
  std::vector<double> seconds;
  PhaseTimes phases;
  int64_t peak_bytes = 0;
};

int body() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // line by line when piped: a long run shows its progress
  static PeakAllocator peak_alloc(c10::GetCPUAllocator());
  c10::SetCPUAllocator(&peak_alloc, /*priority=*/100);
  DL_REQUIRE(FLAGS_steps >= 1, "--steps must be >= 1, got " << FLAGS_steps);
  DL_REQUIRE(FLAGS_warmup >= 0, "--warmup must be >= 0, got " << FLAGS_warmup);
  DL_REQUIRE(FLAGS_threads >= 1, "--threads must be >= 1, got " << FLAGS_threads);
  DL_REQUIRE(FLAGS_num_classes_per_step >= 1 && FLAGS_gen_per_class >= 2 && FLAGS_pos_per_class >= 1 &&
                 FLAGS_unc_per_class >= 0,
             "--num_classes_per_step, --gen_per_class (>= 2), --pos_per_class must be positive, --unc_per_class >= 0");
  std::vector<Variant> variants;
  for (const std::string& v : split(FLAGS_variants)) {
    DL_REQUIRE(v == "plain" || v == "fp32" || v == "bf16", "--variants: unknown variant '" << v
                                                              << "' (plain, fp32, bf16)");
    const char* label = v == "plain" ? "plain LibTorch fp32" : v == "fp32" ? "driftlab run_step fp32"
                                                                              : "driftlab run_step bf16";
    variants.push_back({v, label, {}, {}, 0});
  }
  DL_REQUIRE(!variants.empty(), "--variants is empty");
  torch::set_num_threads(FLAGS_threads);
  const std::vector<double> taus = drift::parse_taus(FLAGS_taus);

  // The data: real MNIST rows when the shard set is there, else random images.
  const std::string data_path = find_path(FLAGS_data);
  std::shared_ptr<data::ShardSet> shards;
  std::vector<int64_t> shape{1, 28, 28};
  int64_t num_classes = 10;
  if (exists(data_path)) {
    shards = data::ShardSet::open(data_path);
    shape = shards->spec().decoded_shape();
    num_classes = shards->spec().num_classes;
    DL_REQUIRE(shape.size() == 3 && num_classes > 0, "--data=" << data_path << ": need a labelled image data set");
  }
  const int64_t K = std::min(FLAGS_num_classes_per_step, num_classes);

  models::GeneratorConfig gcfg = models::resolve_generator(
      {{"gen_arch", "conv"}, {"gen_noise_dim", std::to_string(FLAGS_gen_noise_dim)},
       {"gen_width", std::to_string(FLAGS_gen_width)}, {"gen_cond_dim", std::to_string(FLAGS_gen_cond_dim)}},
      shape, num_classes);
  models::GeneratorPtr gen = models::make_generator(gcfg);
  models::EncoderRequest er;
  const std::string enc_path = find_path(FLAGS_encoder);
  er.encoder = exists(enc_path) ? enc_path : "resnet";
  er.widths = FLAGS_enc_widths;
  er.blocks = FLAGS_enc_blocks;
  er.groups = FLAGS_enc_groups;
  models::EncoderPtr enc = models::make_frozen_encoder(models::resolve_encoder(er, shape[0]));

  comm::Communicator& comm = [&]() -> comm::Communicator& {
    static std::unique_ptr<comm::Communicator> c = comm::make_communicator(comm::init_topology(), "mpi");
    return *c;
  }();
  DL_REQUIRE(comm.world_size() == 1, "plain_step_bench runs as one process (not under mpirun)");
  comm::CommunicatorReducer reducer(comm);
  drift::Workspace ws;
  StepContext ctx;
  ctx.batch.classes_per_step = K;
  ctx.batch.gen_per_class = FLAGS_gen_per_class;
  ctx.batch.pos_per_class = FLAGS_pos_per_class;
  ctx.batch.unc_per_class = FLAGS_unc_per_class;
  ctx.batch.guidance.alpha_max = FLAGS_alpha_max;
  ctx.batch.guidance.alpha_power = FLAGS_alpha_power;
  ctx.batch.guidance.alpha_one_frac = FLAGS_alpha_one_frac;
  ctx.field.floor = FLAGS_drift_floor;
  ctx.field.workspace = &ws;  // as the trainer does: kept across steps
  ctx.keys.per_location = FLAGS_keys_per_location;
  ctx.keys.patch2 = ctx.keys.patch4 = FLAGS_keys_patch;
  ctx.seed = static_cast<uint64_t>(FLAGS_seed);
  ctx.num_classes = num_classes;
  ctx.gen = gen.get();
  ctx.encoder = enc.get();
  ctx.comm = &comm;
  ctx.reducer = &reducer;

  // The inputs of every step, read before any timing.
  const int total_steps = FLAGS_warmup + FLAGS_steps;
  std::vector<StepInputs> steps;
  for (int i = 0; i < total_steps; ++i) {
    StepInputs in;
    in.t = FLAGS_first_step + i;
    in.plan = plan_step(ctx.seed, static_cast<uint64_t>(in.t), num_classes, K, ctx.batch.guidance);
    const data::StepRequest req = step_request(ctx, in.t, in.plan);
    if (shards) {
      in.batch = data::load_step(*shards, ctx.seed, req, 0, 1);
    } else {
      torch::manual_seed(static_cast<uint64_t>(FLAGS_seed) * 1000003u + static_cast<uint64_t>(in.t));
      std::vector<int64_t> ps{K * FLAGS_pos_per_class}, us{K * FLAGS_unc_per_class};
      ps.insert(ps.end(), shape.begin(), shape.end());
      us.insert(us.end(), shape.begin(), shape.end());
      in.batch.step = static_cast<uint64_t>(in.t);
      in.batch.positives = torch::rand(ps) * 2 - 1;
      in.batch.pos_total = ps[0];
      in.batch.unconditional = torch::rand(us) * 2 - 1;
      in.batch.unc_total = us[0];
    }
    steps.push_back(std::move(in));
  }
  auto sched_of = [&](const StepInputs& in) {
    StepSchedule s;
    s.plan = in.plan;
    s.taus = taus;
    return s;
  };

  const int64_t samples = K * FLAGS_gen_per_class;
  std::printf("plain_step_bench: one training step, %lld classes x %lld generated + %lld positives + %lld "
              "unconditional, conv generator (width %lld, noise %lld, cond %lld; %lld parameters), taus %s, floor %s, "
              "keys: raw pixels%s%s\n",
              static_cast<long long>(K), static_cast<long long>(FLAGS_gen_per_class),
              static_cast<long long>(FLAGS_pos_per_class), static_cast<long long>(FLAGS_unc_per_class),
              static_cast<long long>(gcfg.width), static_cast<long long>(gcfg.noise_dim),
              static_cast<long long>(gcfg.cond_dim), static_cast<long long>(models::count_parameters(*gen)),
              FLAGS_taus.c_str(), FLAGS_drift_floor ? "on" : "off",
              ", global mean/std", (std::string(FLAGS_keys_per_location ? ", per-location" : "") +
                                   (FLAGS_keys_patch ? ", 2x2/4x4 patch mean/std" : "")).c_str());
  std::printf("data: %s\n", shards ? (data_path + " (real rows of each step)").c_str()
                                   : ("random images in [-1, 1] (" + data_path + " not found)").c_str());
  std::printf("encoder: %s%s\n", enc->describe().c_str(),
              exists(enc_path) ? "" : (" (" + enc_path + " not found: random init of the same shape)").c_str());
  const PrecisionChoice bf16 = resolve_precision("bf16", torch::kCPU);
  std::printf("threads: %d; bf16: %s\n", torch::get_num_threads(), bf16.reason.c_str());
  std::printf("speed reference (same run): %s", measure_gemm_reference(torch::kCPU).describe().c_str());
  if (hardware_bf16(torch::kCPU))
    std::printf("; %s", measure_gemm_reference(torch::kCPU, torch::kBFloat16).describe().c_str());
  std::printf("\n");

  auto run = [&](const std::string& v, const StepInputs& in, PhaseTimes* ph) -> double {
    if (v == "plain") return plain_step(ctx, in, taus, ph).loss;
    ctx.precision = v == "bf16" ? Precision::kBf16 : Precision::kFp32;
    return run_step(ctx, in.t, sched_of(in), in.batch, ph).total.value;
  };

  // The check: the same step, batch and weights through the plain code and run_step, fp32. When
  // run_step (its field's fused CPU loops, the default) disagrees, the step is also run with the
  // field's tensor-operation path (FieldOptions::fused_cpu_loops = false): agreement there means
  // the difference is in the fused loops' arithmetic, not in what the plain code computes.
  bool has_plain = false, has_fp32 = false;
  for (const auto& v : variants) has_plain |= v.name == "plain", has_fp32 |= v.name == "fp32";
  int status = 0;
  if (has_plain && has_fp32) {
    PhaseTimes unused;
    const StepInputs& in = steps[0];
    const PlainResult plain = plain_step(ctx, in, taus, &unused);
    const Tensor g_plain = flat_grads(*gen);
    ctx.precision = Precision::kFp32;
    struct Form {
      const char* name;
      StepStats stats;
      double rel = 0;
    };
    auto compare = [&](const char* name, bool fused) {
      ctx.field.fused_cpu_loops = fused;
      Form f{name, run_step(ctx, in.t, sched_of(in), in.batch)};
      ctx.field.fused_cpu_loops = true;
      const Tensor g = flat_grads(*gen);
      f.rel = std::abs(plain.loss - f.stats.total.value) / std::abs(f.stats.total.value);
      if (plain.key_loss.size() != f.stats.total.keys.size()) f.rel = std::numeric_limits<double>::infinity();
      double worst = 0;
      std::string worst_key = "-";
      for (const auto& k : f.stats.total.keys) {
        const auto it = plain.key_loss.find(k.name);
        const double r = it == plain.key_loss.end() ? std::numeric_limits<double>::infinity()
                                                    : std::abs(it->second - k.value) / std::abs(k.value);
        if (!(r <= worst)) worst = r, worst_key = k.name;
      }
      std::printf("check, step %lld, fp32, %zu keys: loss plain %.8g, %s %.8g, relative difference %.2e (tolerance "
                  "%.0e); worst key %s %.2e; generator gradient: relative L2 difference %.2e, cosine %.7f\n",
                  static_cast<long long>(in.t), f.stats.total.keys.size(), plain.loss, name, f.stats.total.value, f.rel,
                  FLAGS_check_tolerance, worst_key.c_str(), worst,
                  (g_plain - g).norm().item<double>() / g.norm().item<double>(),
                  (g_plain * g).sum().item<double>() / (g_plain.norm() * g.norm()).item<double>());
      return f;
    };
    std::vector<Form> forms;
    forms.push_back(compare("driftlab run_step", true));
    if (!(forms[0].rel <= FLAGS_check_tolerance)) forms.push_back(compare("run_step with fused_cpu_loops=false", false));
    const bool ok = forms[0].rel <= FLAGS_check_tolerance;
    if (!ok || FLAGS_show_keys) {
      std::printf("  %-12s %14s", "key", "plain");
      for (const Form& f : forms) std::printf(" %14s %9s", &f == &forms[0] ? "run_step" : "no fused", "rel diff");
      std::printf("\n");
      for (size_t i = 0; i < forms[0].stats.total.keys.size(); ++i) {
        const std::string& name = forms[0].stats.total.keys[i].name;
        const auto it = plain.key_loss.find(name);
        const double p = it == plain.key_loss.end() ? std::nan("") : it->second;
        std::printf("  %-12s %14.8g", name.c_str(), p);
        for (const Form& f : forms) {
          const double v = f.stats.total.keys[i].value;
          std::printf(" %14.8g %9.2e", v, std::abs(p - v) / std::abs(v));
        }
        std::printf("\n");
      }
    }
    if (!ok && forms.size() > 1 && forms[1].rel <= FLAGS_check_tolerance) {
      std::printf("check: the plain step agrees with driftlab's tensor-operation field but NOT with run_step's default "
                  "fused CPU loops (fp32): the keys above where only the fused loops differ have rows far from every "
                  "positive, where the fused field is rounding noise at the smallest temperature (exit status 3 after "
                  "the timings)\n");
      status = 3;
    } else if (!ok) {
      std::printf("check FAILED: the plain step does not compute driftlab's loss; no timing\n");
      return 1;
    }
  }

  // Timing: the variants take turns step by step (each sees the same load pattern).
  for (int i = 0; i < total_steps; ++i) {
    for (size_t j = 0; j < variants.size(); ++j) {
      Variant& v = variants[(j + static_cast<size_t>(i)) % variants.size()];
      PhaseTimes ph;
      const int64_t before = g_live.load();
      g_high = before;
      Stopwatch sw;
      run(v.name, steps[static_cast<size_t>(i)], &ph);
      const double sec = sw.seconds();
      if (i < FLAGS_warmup) continue;
      v.seconds.push_back(sec);
      for (const auto& [k, s] : ph.totals()) v.phases.add(k, s);
      v.peak_bytes = std::max(v.peak_bytes, g_high.load() - before);
    }
  }
  const Variant& base = has_plain ? *std::find_if(variants.begin(), variants.end(),
                                                  [](const Variant& v) { return v.name == "plain"; })
                                  : variants[0];
  const double base_med = median(base.seconds);
  std::printf("\n%d timed steps per variant after %d warm-up steps, variants in turn; %lld generated samples per step\n",
              FLAGS_steps, FLAGS_warmup, static_cast<long long>(samples));
  std::printf("%-24s %10s %10s %11s %9s %9s   %s\n", "variant", "median ms", "mean ms", "samples/s", "vs plain",
              "peak MiB", "phases (share of the timed steps)");
  for (const Variant& v : variants) {
    const double med = median(v.seconds);
    double mean = 0;
    for (double s : v.seconds) mean += s;
    mean /= static_cast<double>(v.seconds.size());
    std::string shares;
    for (const char* p : {"generator", "encoder", "communication", "drift", "backward"}) {
      const auto it = v.phases.totals().find(p);
      if (it == v.phases.totals().end()) continue;
      char buf[64];
      std::snprintf(buf, sizeof buf, "%s%s %.1f%%", shares.empty() ? "" : ", ", p, 100.0 * it->second / v.phases.sum());
      shares += buf;
    }
    std::printf("%-24s %10.1f %10.1f %11.1f %8.2fx %9.1f   %s\n", v.label.c_str(), 1e3 * med, 1e3 * mean,
                static_cast<double>(samples) / med, base_med / med, static_cast<double>(v.peak_bytes) / (1 << 20),
                shares.c_str());
  }
  std::printf("(vs plain: the plain step's median time over the variant's; peak MiB: the most LibTorch CPU memory a "
              "step allocated beyond what was live at its start)\n");
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  return run_tool(argc, argv,
                  "plain_step_bench: the shipped MNIST training step in plain LibTorch (keys and drift field as tensor "
                  "operations, autograd) vs driftlab's run_step in fp32 and bf16, same run, same threads; checks the "
                  "plain loss against run_step first. Prints figures; not a test.\n"
                  "Usage: plain_step_bench [--steps=10] [--warmup=2] [--threads=N] [--variants=plain,fp32,bf16] "
                  "[--data=.cache/data/mnist-train] [--encoder=.cache/encoders/mnist-mae.pt]",
                  body);
}
