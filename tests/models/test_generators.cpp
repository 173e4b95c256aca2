// Generators: configs and presets, output shapes, exact parameter counts (computed here from the
// architecture formula), conditioning after training, world-size invariant inputs, save/load.
#include <gflags/gflags.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <string>

#include "common/check.h"
#include "models/config.h"
#include "models/generators.h"
#include "models/sampling.h"

namespace driftlab::models {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("driftlab_models_" + name)).string();
}

GeneratorConfig mlp_config() {
  GeneratorConfig c;
  c.arch = "mlp";
  c.sample_shape = {2};
  c.num_classes = 3;
  c.noise_dim = 8;
  c.width = 32;
  c.depth = 2;
  c.cond_dim = 16;
  return c;
}

// The mlp with a discrete part of the noise (gen_noise_categories).
GeneratorConfig mlp_categories_config() {
  GeneratorConfig c = mlp_config();
  c.noise_categories = 5;
  return c;
}

GeneratorConfig conv_config() {
  GeneratorConfig c;
  c.arch = "conv";
  c.sample_shape = {1, 28, 28};
  c.num_classes = 10;
  c.noise_dim = 16;
  c.width = 16;
  c.cond_dim = 32;
  return c;
}

GeneratorConfig dit_config(const std::string& preset, std::vector<int64_t> shape, int64_t classes) {
  GeneratorConfig c;
  apply_generator_preset(c, preset);
  c.sample_shape = std::move(shape);
  c.num_classes = classes;
  return c;
}

// Parameters of the dit, written out from the architecture (not from the module): per block
// qkv + proj + QK-norm gains + SwiGLU (w12, w3) + adaLN (6D); patch embedding, class table (with
// the null class), alpha MLP (256 -> D -> D), style codebooks, in-context positions and
// projection, final adaLN (2D) and linear.
int64_t dit_param_formula(const GeneratorConfig& c) {
  const int64_t d = c.width, hd = d / c.heads, ch = c.sample_shape[0], p = c.patch;
  const auto hm = static_cast<int64_t>(2.0 / 3.0 * c.mlp_ratio * static_cast<double>(d));
  const int64_t block = (d * 3 * d + 3 * d) + (d * d + d) + 2 * hd + (d * 2 * hm + 2 * hm) + (hm * d + d) +
                        (d * 6 * d + 6 * d);
  int64_t total = c.depth * block;
  total += ch * p * p * d + d;
  total += (c.num_classes + 1) * d;
  total += (256 * d + d) + (d * d + d);
  total += c.style_tokens * c.style_codebook * d;
  if (c.context_tokens > 0) total += c.context_tokens * d + d * d + d;
  total += (d * 2 * d + 2 * d) + (d * p * p * ch + p * p * ch);
  return total;
}

struct Batch {
  torch::Tensor noise, labels, alpha, style;
};

Batch make_batch(const GeneratorImpl& g, int64_t b, uint64_t step = 0) {
  auto in = draw_generator_inputs(g, 7, rng::Stream::kNoise, step, 0, b);
  Batch out{in.noise, torch::arange(b, torch::kLong) % (g.config().num_classes + 1),
            torch::linspace(1.0, 4.0, b), in.style};
  return out;
}

torch::Tensor run(GeneratorImpl& g, const Batch& b) { return g.forward(b.noise, b.labels, b.alpha, b.style); }

TEST(GeneratorConfig, MapAndTextRoundTrip) {
  for (const auto& c : {mlp_config(), mlp_categories_config(), conv_config(), dit_config("tiny", {1, 28, 28}, 10)}) {
    auto m = c.to_map();
    EXPECT_EQ(GeneratorConfig::from_map(m).to_map(), m);
    EXPECT_EQ(GeneratorConfig::from_text(c.to_text()).to_map(), m);
  }
  // A whole flag snapshot may be passed: unrelated keys are ignored.
  auto m = dit_config("B/2", {4, 32, 32}, 1000).to_map();
  m["lr"] = "0.001";
  m["encoder"] = "x.pt";
  EXPECT_EQ(GeneratorConfig::from_map(m).width, 768);
}

TEST(GeneratorConfig, BadValuesNameTheKey) {
  auto expect_error = [](FlagMap m, const std::string& needle) {
    try {
      GeneratorConfig::from_map(m);
      FAIL() << "no error for " << needle;
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error({{"gen_width", "abc"}}, "gen_width=abc");
  expect_error({{"gen_preset", "XL/3"}}, "gen_preset=XL/3");
  expect_error({{"gen_arch", "gan"}}, "gen_arch=gan");
  expect_error({{"gen_arch", "dit"}, {"gen_sample_shape", "1,28,28"}, {"gen_patch", "3"}}, "gen_patch=3");
  expect_error({{"gen_arch", "conv"}, {"gen_sample_shape", "1,30,30"}}, "multiples of 4");
  expect_error({{"gen_sample_shape", "2,x"}}, "gen_sample_shape");
  expect_error({{"gen_noise_categories", "-1"}}, "gen_noise_categories=-1");
  expect_error({{"gen_arch", "conv"}, {"gen_sample_shape", "1,28,28"}, {"gen_noise_categories", "4"}},
               "only the mlp generator");
}

TEST(GeneratorConfig, ResolveAppliesPresetThenExplicitKeys) {
  auto c = resolve_generator({{"gen_preset", "B/2"}, {"gen_depth", "2"}}, {4, 32, 32}, 1000);
  EXPECT_EQ(c.arch, "dit");
  EXPECT_EQ(c.width, 768);
  EXPECT_EQ(c.heads, 12);
  EXPECT_EQ(c.depth, 2);
  EXPECT_EQ(c.num_classes, 1000);
  EXPECT_EQ(c.sample_shape, (std::vector<int64_t>{4, 32, 32}));
  // The resolved map (what the run record stores) rebuilds the same config.
  EXPECT_EQ(GeneratorConfig::from_map(c.to_map()).to_map(), c.to_map());
  // Given keys win over the data set's shape and classes.
  auto d = resolve_generator({{"gen_arch", "mlp"}, {"gen_sample_shape", "3"}, {"gen_num_classes", "0"}}, {2}, 7);
  EXPECT_EQ(d.sample_shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(d.num_classes, 0);
}

TEST(Generators, OutputShapesSmall) {
  struct Case {
    GeneratorConfig cfg;
    int64_t b;
  };
  std::vector<Case> cases = {{mlp_config(), 5},
                             {mlp_categories_config(), 4},
                             {conv_config(), 3},
                             {[] {
                                auto c = conv_config();
                                c.sample_shape = {3, 32, 32};
                                return c;
                              }(),
                              2},
                             {dit_config("tiny", {1, 28, 28}, 10), 3},
                             {dit_config("tiny", {3, 32, 32}, 0), 2},
                             {dit_config("S/2", {4, 32, 32}, 1000), 1},
                             {dit_config("B/16", {3, 64, 64}, 1000), 1}};
  for (auto& cs : cases) {
    auto g = make_generator(cs.cfg);
    auto batch = make_batch(*g, cs.b);
    torch::NoGradGuard ng;
    auto y = run(*g, batch);
    std::vector<int64_t> want{cs.b};
    want.insert(want.end(), cs.cfg.sample_shape.begin(), cs.cfg.sample_shape.end());
    EXPECT_EQ(y.sizes().vec(), want) << cs.cfg.to_text();
    EXPECT_TRUE(torch::isfinite(y).all().item<bool>());
  }
}

// Sampling in bf16 (autocast, the output layer in fp32): float32 samples close to the fp32 ones,
// not rounded to bf16's 8 bits (most values are not representable in bf16).
TEST(Generators, Bf16SamplesAreFp32AndCloseToTheFp32Ones) {
  for (const auto& cfg : {mlp_config(), conv_config()}) {
    auto g = make_generator(cfg);
    const int64_t m = 40;
    const auto labels = torch::arange(m, torch::kLong) % std::max<int64_t>(1, cfg.num_classes);
    const auto alpha = torch::full({m}, 1.5);
    const auto x32 = generate(*g, 9, rng::Stream::kSample, 0, 0, labels, alpha, 16, torch::kCPU, Precision::kFp32);
    const auto x16 = generate(*g, 9, rng::Stream::kSample, 0, 0, labels, alpha, 16, torch::kCPU, Precision::kBf16);
    ASSERT_EQ(x16.scalar_type(), torch::kFloat) << cfg.arch;
    ASSERT_EQ(x16.sizes(), x32.sizes()) << cfg.arch;
    EXPECT_FALSE(torch::equal(x16, x32)) << cfg.arch << ": bf16 gave the fp32 samples";
    const double rel = ((x16 - x32).norm() / x32.norm()).item<double>();
    EXPECT_LT(rel, 0.03) << cfg.arch;
    const double on_bf16_grid = (x16 == x16.to(torch::kBFloat16).to(torch::kFloat)).to(torch::kFloat).mean().item<double>();
    EXPECT_LT(on_bf16_grid, 0.5) << cfg.arch << ": the samples look rounded to bf16";
  }
}

TEST(Generators, DitParameterCountsMatchFormulaAndPaper) {
  // Every preset on ImageNet latents (4x32x32, 1000 classes); the large ones are built, never run.
  for (const auto& name : generator_preset_names()) {
    // B/4, L/16 differ from B/2, L/2 only in the patch size, which B/16 already covers.
    if (name == "B/4" || name == "L/16") continue;
    auto cfg = dit_config(name, {4, 32, 32}, 1000);
    auto g = make_generator(cfg);
    EXPECT_EQ(count_parameters(*g), dit_param_formula(cfg)) << name;
  }
  const double b2 = static_cast<double>(dit_param_formula(dit_config("B/2", {4, 32, 32}, 1000)));
  const double l2 = static_cast<double>(dit_param_formula(dit_config("L/2", {4, 32, 32}, 1000)));
  EXPECT_NEAR(b2 / 133e6, 1.0, 0.02) << b2;
  EXPECT_NEAR(l2 / 463e6, 1.0, 0.02) << l2;
}

TEST(Generators, SmallParameterCountsMatchFormula) {
  auto m = mlp_config();
  const int64_t mlp = (m.num_classes + 1) * m.cond_dim + (64 * m.cond_dim + m.cond_dim) +
                      (m.cond_dim * m.cond_dim + m.cond_dim) + ((m.noise_dim + m.cond_dim) * m.width + m.width) +
                      (m.width * m.width + m.width) + (m.width * 2 + 2);
  EXPECT_EQ(count_parameters(*make_generator(m)), mlp);
  auto k = mlp_categories_config();
  EXPECT_EQ(count_parameters(*make_generator(k)), mlp + k.noise_categories * k.cond_dim);
}

TEST(Generators, DitStartsAtZeroOutput) {
  // adaLN-zero: the final projection starts at zero, so every untrained output is exactly 0.
  auto g = make_generator(dit_config("tiny", {1, 28, 28}, 10));
  torch::NoGradGuard ng;
  EXPECT_EQ(run(*g, make_batch(*g, 4)).abs().max().item<float>(), 0.0f);
}

TEST(Generators, ConditioningChangesOutputAfterTraining) {
  for (auto cfg : {mlp_config(), mlp_categories_config(), conv_config(), dit_config("tiny", {1, 16, 16}, 4)}) {
    auto g = make_generator(cfg);
    torch::optim::Adam opt(g->parameters(), torch::optim::AdamOptions(3e-3));
    for (int step = 0; step < 8; ++step) {
      auto b = make_batch(*g, 8, static_cast<uint64_t>(step));
      // The target depends on class and alpha, so both must reach the output to lower the loss.
      auto sign = (b.labels.to(torch::kFloat) - 1.0);
      std::vector<int64_t> view{8};
      for (size_t i = 0; i < cfg.sample_shape.size(); ++i) view.push_back(1);
      auto out = run(*g, b);
      auto target = (sign * b.alpha).view(view).expand_as(out);
      auto loss = (out - target.detach()).pow(2).mean();
      opt.zero_grad();
      loss.backward();
      opt.step();
    }
    torch::NoGradGuard ng;
    auto b = make_batch(*g, 4, 100);
    b.labels.fill_(0);
    b.alpha.fill_(1.0);
    auto base = run(*g, b);
    auto other_class = b;
    other_class.labels = torch::full({4}, cfg.num_classes, torch::kLong);  // unconditional
    auto other_alpha = b;
    other_alpha.alpha = torch::full({4}, 3.0);
    EXPECT_GT((run(*g, other_class) - base).abs().max().item<float>(), 1e-4) << cfg.arch;
    EXPECT_GT((run(*g, other_alpha) - base).abs().max().item<float>(), 1e-4) << cfg.arch;
    if (g->style_tokens() > 0) {
      auto other_style = b;
      other_style.style = (b.style + 1) % g->style_codebook();
      EXPECT_GT((run(*g, other_style) - base).abs().max().item<float>(), 0.0f) << "style";
    }
  }
}

TEST(Generators, InputsDependOnlyOnGlobalIndex) {
  auto g = make_generator(dit_config("tiny", {1, 28, 28}, 10));
  auto all = draw_generator_inputs(*g, 3, rng::Stream::kNoise, 5, 0, 6);
  auto head = draw_generator_inputs(*g, 3, rng::Stream::kNoise, 5, 0, 2);
  auto tail = draw_generator_inputs(*g, 3, rng::Stream::kNoise, 5, 2, 4);
  EXPECT_TRUE(torch::equal(all.noise, torch::cat({head.noise, tail.noise})));
  EXPECT_TRUE(torch::equal(all.style, torch::cat({head.style, tail.style})));
  EXPECT_GE(all.style.min().item<int64_t>(), 0);
  EXPECT_LT(all.style.max().item<int64_t>(), g->config().style_codebook);
  auto sample = draw_generator_inputs(*g, 3, rng::Stream::kSample, 5, 0, 6);
  EXPECT_FALSE(torch::equal(all.style, sample.style));
  auto next = draw_generator_inputs(*g, 3, rng::Stream::kNoise, 6, 0, 6);
  EXPECT_FALSE(torch::equal(all.noise, next.noise));
}

// gen_noise_categories: one index per row, uniform over [0, K), a function of the global index
// like the Gaussian part, and it reaches the output (same Gaussian noise, other category).
TEST(Generators, NoiseCategoriesAreUniformPerRowAndChangeTheSample) {
  const auto cfg = mlp_categories_config();
  auto g = make_generator(cfg);
  ASSERT_EQ(g->style_tokens(), 1);
  ASSERT_EQ(g->style_codebook(), cfg.noise_categories);
  const int64_t n = 20000;
  auto all = draw_generator_inputs(*g, 3, rng::Stream::kNoise, 2, 0, n);
  ASSERT_EQ(all.style.sizes().vec(), (std::vector<int64_t>{n, 1}));
  auto tail = draw_generator_inputs(*g, 3, rng::Stream::kNoise, 2, 7, 5);
  EXPECT_TRUE(torch::equal(all.style.slice(0, 7, 12), tail.style));
  // Chi-square with K - 1 = 4 degrees of freedom: above 18.5 has probability 0.001.
  const auto counts = torch::bincount(all.style.view(-1), {}, cfg.noise_categories).to(torch::kDouble);
  ASSERT_EQ(counts.size(0), cfg.noise_categories);
  const double expected = static_cast<double>(n) / static_cast<double>(cfg.noise_categories);
  const double chi2 = ((counts - expected).pow(2) / expected).sum().item<double>();
  EXPECT_LT(chi2, 18.5) << counts;
  torch::NoGradGuard ng;
  auto b = make_batch(*g, 6);
  auto other = b;
  other.style = (b.style + 1) % cfg.noise_categories;
  const auto y = run(*g, b), z = run(*g, other);
  for (int64_t r = 0; r < 6; ++r) EXPECT_GT((y[r] - z[r]).abs().max().item<float>(), 1e-4) << "row " << r;
  auto bad = b;
  bad.style = torch::full({6, 1}, cfg.noise_categories, torch::kLong);
  EXPECT_THROW(run(*g, bad), UserError);
}

TEST(Generators, SeededInitIsReproducible) {
  auto cfg = conv_config();
  auto a = make_generator(cfg), b = make_generator(cfg);
  cfg.init_seed = 1;
  auto c = make_generator(cfg);
  auto pa = a->parameters(), pb = b->parameters(), pc = c->parameters();
  bool any_diff = false;
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(torch::equal(pa[i], pb[i]));
    any_diff = any_diff || !torch::equal(pa[i], pc[i]);
  }
  EXPECT_TRUE(any_diff);
}

TEST(Generators, SaveLoadIsBitExact) {
  for (const auto& cfg : {mlp_config(), mlp_categories_config(), conv_config(), dit_config("tiny", {1, 28, 28}, 10)}) {
    auto g = make_generator(cfg);
    {
      // Move the weights away from their init (the dit starts at zero output).
      torch::NoGradGuard ng;
      for (auto& p : g->parameters()) p.add_(torch::randn_like(p) * 0.05);
    }
    const auto path = temp_path(cfg.arch + ".pt");
    save_generator(*g, path);
    auto h = load_generator(path);
    EXPECT_EQ(h->config().to_map(), cfg.to_map());
    auto b = make_batch(*g, 3);
    torch::NoGradGuard ng;
    auto y = run(*g, b);
    EXPECT_GT(y.abs().max().item<float>(), 0.0f);
    EXPECT_TRUE(torch::equal(y, run(*h, b))) << cfg.arch;
    std::filesystem::remove(path);
  }
}

TEST(Generators, BadInputsAreUserErrors) {
  auto g = make_generator(dit_config("tiny", {1, 28, 28}, 10));
  auto b = make_batch(*g, 2);
  auto bad = b;
  bad.labels = torch::tensor({0, 11}, torch::kLong);
  EXPECT_THROW(run(*g, bad), UserError);
  bad = b;
  bad.noise = torch::zeros({2, 1, 27, 28});
  EXPECT_THROW(run(*g, bad), UserError);
  bad = b;
  bad.style = torch::Tensor();
  EXPECT_THROW(run(*g, bad), UserError);
  bad = b;
  bad.style = b.style + g->config().style_codebook;
  EXPECT_THROW(run(*g, bad), UserError);
  EXPECT_THROW(load_generator(temp_path("does_not_exist.pt")), UserError);
}

}  // namespace
}  // namespace driftlab::models
