// Tests of the feature keys (docs/DRIFTING.md section 3), the total loss, the CFG weights
// (section 4) and the drift_field tool end to end.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include <torch/torch.h>

#include "drift/features.h"
#include "drift/field.h"
#include "drift_test_util.h"

namespace driftlab::drift {
namespace {

using torch::Tensor;

const FeatureKey& find_key(const std::vector<FeatureKey>& keys, const std::string& name) {
  for (const auto& k : keys)
    if (k.name == name) return k;
  throw std::runtime_error("no key " + name);
}

GroupedFeatures maps(int64_t K, int64_t n, int64_t P, int64_t U, int64_t C, int64_t H, int64_t W) {
  torch::manual_seed(60);
  GroupedFeatures f;
  f.classes = K;
  f.gen = torch::randn({K * n, C, H, W}, torch::kDouble);
  f.pos = torch::randn({K * P, C, H, W}, torch::kDouble);
  if (U > 0) {
    f.unc = torch::randn({K * U, C, H, W}, torch::kDouble);
    f.unc_weight = torch::arange(1, K + 1, torch::kDouble) * 0.5;
  }
  return f;
}

TEST(DriftFeatures, PerLocationKeyGroupsByClassAndLocation) {
  const int64_t K = 2, n = 3, P = 4, U = 2, C = 5, H = 4, W = 3;
  GroupedFeatures f = maps(K, n, P, U, C, H, W);
  auto keys = feature_map_keys(f, "enc0");
  const Problem& p = find_key(keys, "enc0.loc").problem;
  ASSERT_EQ(p.x.sizes(), (std::vector<int64_t>{K * H * W, n, C}));
  ASSERT_EQ(p.y_pos.sizes(), (std::vector<int64_t>{K * H * W, P, C}));
  ASSERT_EQ(p.y_neg.sizes(), (std::vector<int64_t>{K * H * W, n + U, C}));
  for (int64_t k = 0; k < K; ++k)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t w = 0; w < W; ++w) {
        const int64_t g = k * H * W + h * W + w;
        for (int64_t i = 0; i < n; ++i) {
          EXPECT_TRUE(torch::equal(p.x[g][i], f.gen.select(0, k * n + i).select(1, h).select(1, w)));
          EXPECT_TRUE(torch::equal(p.y_neg[g][i], f.gen.select(0, k * n + i).select(1, h).select(1, w)));
        }
        EXPECT_TRUE(torch::equal(p.y_pos[g][P - 1], f.pos.select(0, k * P + P - 1).select(1, h).select(1, w)));
        EXPECT_TRUE(torch::equal(p.y_neg[g][n + 1], f.unc.select(0, k * U + 1).select(1, h).select(1, w)));
        // Generated negatives weigh 1, unconditional ones their class's weight.
        EXPECT_DOUBLE_EQ(p.w_neg[g][0].item<double>(), 1.0);
        EXPECT_DOUBLE_EQ(p.w_neg[g][n].item<double>(), 0.5 * (k + 1));
      }
  EXPECT_FALSE(p.y_neg.requires_grad());
}

TEST(DriftFeatures, MeanAndStdKeysOverLocationsAndPatches) {
  const int64_t K = 2, n = 2, C = 3, H = 5, W = 4;  // H = 5: the last row is outside every 2x2 / 4x4 patch
  GroupedFeatures f = maps(K, n, 3, 0, C, H, W);
  auto keys = feature_map_keys(f, "m");
  std::vector<std::string> names;
  for (auto& k : keys) names.push_back(k.name);
  EXPECT_EQ(names, (std::vector<std::string>{"m.loc", "m.mean", "m.std", "m.mean2x2", "m.std2x2", "m.mean4x4",
                                             "m.std4x4"}));
  const Tensor g0 = f.gen[0];  // class 0, row 0: [C, H, W]
  Tensor mean = find_key(keys, "m.mean").problem.x;
  ASSERT_EQ(mean.sizes(), (std::vector<int64_t>{K, n, C}));
  EXPECT_TRUE(torch::allclose(mean[0][0], g0.mean({1, 2})));
  Tensor sd = find_key(keys, "m.std").problem.x;
  EXPECT_TRUE(torch::allclose(sd[0][0], (g0.var({1, 2}, false) + 1e-6).sqrt()));
  // 2x2 patches: (5/2) * (4/2) = 4 positions per class, row-major.
  Tensor m2 = find_key(keys, "m.mean2x2").problem.x;
  ASSERT_EQ(m2.sizes(), (std::vector<int64_t>{K * 4, n, C}));
  Tensor pooled = torch::avg_pool2d(f.gen, 2);  // [B, C, 2, 2]
  EXPECT_TRUE(torch::allclose(m2[3][1], pooled[1].select(1, 1).select(1, 1)));
  Tensor patch = g0.narrow(1, 2, 2).narrow(2, 0, 2).reshape({C, 4});
  EXPECT_TRUE(torch::allclose(find_key(keys, "m.std2x2").problem.x[2][0], (patch.var(1, false) + 1e-6).sqrt()));
  EXPECT_EQ(find_key(keys, "m.mean4x4").problem.x.size(0), K);
  // Small maps have no 4x4 key.
  GroupedFeatures small = maps(1, 2, 2, 0, 2, 3, 3);
  EXPECT_EQ(feature_map_keys(small, "s").size(), 5u);
}

TEST(DriftFeatures, OutputKeysFlattenedAndChannelRms) {
  GroupedFeatures f = maps(2, 3, 2, 1, 3, 2, 2);
  auto keys = output_keys(f, "out");
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0].problem.x.sizes(), (std::vector<int64_t>{2, 3, 12}));
  EXPECT_TRUE(torch::equal(keys[0].problem.x[1][2], f.gen[5].flatten()));
  EXPECT_TRUE(torch::allclose(keys[1].problem.x[0][1], (f.gen[1].pow(2).mean({1, 2}) + 1e-6).sqrt()));
  GroupedFeatures v;
  v.classes = 1;
  v.gen = torch::randn({4, 2}), v.pos = torch::randn({5, 2});
  FeatureKey k = vector_key(v, "toy");
  EXPECT_EQ(k.problem.x.sizes(), (std::vector<int64_t>{1, 4, 2}));
  EXPECT_EQ(output_keys(v, "o").size(), 1u);
}

TEST(DriftFeatures, TotalLossSumsKeyLossesAndReachesTheGenerator) {
  GroupedFeatures f = maps(2, 4, 5, 2, 3, 4, 4);
  f.gen.requires_grad_(true);
  FieldOptions o;
  auto keys = feature_map_keys(f, "enc");
  auto outs = output_keys(f, "out");
  keys.insert(keys.end(), outs.begin(), outs.end());
  TotalLoss t = total_loss(keys, o);
  double sum = 0;
  for (const auto& k : keys) sum += drift_loss(k.problem, o).value;
  EXPECT_NEAR(t.value, sum, 1e-9);
  EXPECT_NEAR(t.loss.item<double>(), sum, 1e-9);
  ASSERT_EQ(t.keys.size(), keys.size());
  t.loss.backward();
  ASSERT_TRUE(f.gen.grad().defined());
  EXPECT_TRUE(torch::isfinite(f.gen.grad()).all().item<bool>());
  EXPECT_GT(f.gen.grad().abs().sum().item<double>(), 0.0);
}

TEST(DriftFeatures, SpreadRatioIsGeneratedOverRealRmsSpreadPerProblem) {
  // Class 0 generates the real rows scaled by 0.5 around another centre, class 1 by 2: the RMS
  // spread about the mean scales with the factor, whatever the centre.
  torch::manual_seed(61);
  const int64_t n = 6, P = 6, U = 3;
  Tensor real = torch::randn({2 * P, 3}, torch::kDouble);
  Tensor gen = torch::cat({real.narrow(0, 0, P) * 0.5 + 3.0, real.narrow(0, P, P) * 2.0 - 1.0});
  GroupedFeatures v;
  v.classes = 2;
  v.gen = gen, v.pos = real;
  v.unc = torch::randn({2 * U, 3}, torch::kDouble) * 100;  // extra negatives: not generated rows
  FeatureKey k = vector_key(v, "x");
  EXPECT_EQ(k.generated_negatives, n);
  Tensor r = spread_ratio(k);
  ASSERT_EQ(r.sizes(), (std::vector<int64_t>{2}));
  EXPECT_NEAR(r[0].item<double>(), 0.5, 1e-12);
  EXPECT_NEAR(r[1].item<double>(), 2.0, 1e-12);
  // Reference: the mean pairwise squared distance is twice the squared RMS spread (n/(n-1) aside,
  // which cancels for equal set sizes).
  auto mpsd = [](const Tensor& y) { return torch::cdist(y, y).pow(2).mean().item<double>(); };
  EXPECT_NEAR(r[1].item<double>(), std::sqrt(mpsd(gen.narrow(0, P, P)) / mpsd(real.narrow(0, P, P))), 1e-9);
  // In the total loss: the mean over problems (1.25); a collapsed class reads 0.
  TotalLoss t = total_loss({k}, FieldOptions{});
  EXPECT_NEAR(t.keys[0].spread, 1.25, 1e-12);
  v.gen = torch::cat({real.narrow(0, 0, P) * 0.0 + 1.0, real.narrow(0, P, P)});
  EXPECT_NEAR(spread_ratio(vector_key(v, "x"))[0].item<double>(), 0.0, 1e-12);
  // One positive has no spread: NaN (not logged), not a division by zero.
  GroupedFeatures one;
  one.gen = torch::randn({4, 2}, torch::kDouble), one.pos = torch::randn({1, 2}, torch::kDouble);
  EXPECT_TRUE(std::isnan(spread_ratio(vector_key(one, "x"))[0].item<double>()));
}

// The patch mean/std keys (fused CPU loops, closed-form backward) against the same statistics
// written with plain tensor operations and differentiated by autograd: values and gradients, for
// patch sizes that leave rows and columns out (H = 7, W = 9), in both precisions.
TEST(DriftFeatures, PatchStatsValuesAndGradientsMatchAutogradOfTensorOps) {
  const int64_t B = 5, C = 3, H = 7, W = 9;
  for (auto dt : {torch::kDouble, torch::kFloat}) {
    SCOPED_TRACE(dt == torch::kDouble ? "double" : "float");
    const double tol = dt == torch::kDouble ? 1e-11 : 2e-5;
    torch::manual_seed(64);
    Tensor base = torch::randn({B, C, H, W}, torch::kDouble) * 1.5 + 0.7;
    // Reference: [B, C, L] per statistic, then the keys' grouping (one class: [L, B, C]).
    auto reference = [&](const Tensor& m, int64_t p, int64_t q) {
      const int64_t h = H / p, w = W / q;
      Tensor x6 = m.narrow(2, 0, h * p).narrow(3, 0, w * q).reshape({B, C, h, p, w, q}).permute({0, 1, 2, 4, 3, 5});
      x6 = x6.reshape({B, C, h * w, p * q});
      Tensor mean = x6.mean(-1), sd = (x6.var(-1, /*unbiased=*/false) + 1e-6).sqrt();
      return std::vector<Tensor>{mean.permute({2, 0, 1}), sd.permute({2, 0, 1})};
    };
    GroupedFeatures f;
    f.classes = 1;
    f.gen = base.to(dt).clone().requires_grad_(true);
    f.pos = torch::randn({4, C, H, W}, torch::kDouble).to(dt);
    KeyOptions o;
    o.per_location = false;
    auto keys = feature_map_keys(f, "m", o);
    ASSERT_EQ(keys.size(), 6u);
    Tensor ref_in = base.clone().requires_grad_(true);
    Tensor loss = torch::zeros({}, torch::kDouble), ref_loss = torch::zeros({}, torch::kDouble);
    const std::pair<const char*, std::pair<int64_t, int64_t>> sizes[] = {{"", {H, W}}, {"2x2", {2, 2}}, {"4x4", {4, 4}}};
    for (const auto& [tag, pq] : sizes) {
      auto ref = reference(ref_in, pq.first, pq.second);
      const Tensor& km = find_key(keys, std::string("m.mean") + tag).problem.x;
      const Tensor& ks = find_key(keys, std::string("m.std") + tag).problem.x;
      ASSERT_EQ(km.sizes(), ref[0].sizes()) << tag;
      EXPECT_LE((km.to(torch::kDouble) - ref[0]).abs().max().item<double>(), tol) << tag;
      EXPECT_LE((ks.to(torch::kDouble) - ref[1]).abs().max().item<double>(), tol) << tag;
      // Random weights per output entry, different for the mean and the std.
      Tensor rm = torch::randn(ref[0].sizes(), torch::kDouble), rs = torch::randn(ref[1].sizes(), torch::kDouble);
      loss = loss + (km.to(torch::kDouble) * rm).sum() + (ks.to(torch::kDouble) * rs).sum();
      ref_loss = ref_loss + (ref[0] * rm).sum() + (ref[1] * rs).sum();
    }
    loss.backward();
    ref_loss.backward();
    const Tensor g = f.gen.grad().to(torch::kDouble), gref = ref_in.grad();
    EXPECT_GT(gref.abs().max().item<double>(), 0.1);
    EXPECT_LE((g - gref).abs().max().item<double>(), tol * 10) << "gradient";
    // Rows and columns outside every patch of every size get no gradient from these keys: row 6
    // and column 8 lie outside the 2x2 and 4x4 patches but inside the global one.
    EXPECT_NEAR(g.select(2, 6).abs().max().item<double>(), gref.select(2, 6).abs().max().item<double>(), tol * 10);
  }
}

TEST(DriftFeatures, SpreadRatioFloatMatchesDouble) {
  // The fused spread loop in float against the double tensor formula, on a key with many problems.
  torch::manual_seed(65);
  GroupedFeatures f;
  f.classes = 2;
  f.gen = torch::randn({2 * 6, 24, 3, 3}) * 0.7 + 5.0;  // far from the origin: the mean is subtracted first
  f.pos = torch::randn({2 * 5, 24, 3, 3}) + 5.0;
  f.unc = torch::randn({2 * 2, 24, 3, 3});
  auto keys = feature_map_keys(f, "m");
  // A copy (tensors share storage): bound to a reference, GCC 13+ warns -Wdangling-reference, as if
  // the result could point into the temporary std::string of the name.
  const FeatureKey k = find_key(keys, "m.loc");
  const Tensor got = spread_ratio(k);
  auto var = [](const Tensor& y) {
    const Tensor yd = y.to(torch::kDouble);
    return (yd - yd.mean(1, true)).pow(2).sum(-1).mean(-1);
  };
  const Tensor want = (var(k.problem.y_neg.narrow(1, 0, 6)) / var(k.problem.y_pos)).sqrt();
  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_LE((got - want).abs().max().item<double>(), 1e-5);
  EXPECT_NEAR(got.mean().item<double>(), 0.7, 0.2);
}

TEST(DriftFeatures, CfgWeightsAndBadInputs) {
  EXPECT_DOUBLE_EQ(cfg_unconditional_weight(1.0, 64, 16), 0.0);
  EXPECT_DOUBLE_EQ(cfg_unconditional_weight(3.0, 64, 16), 2.0 * 63 / 16);
  Tensor w = cfg_unconditional_weight(torch::tensor({1.0, 2.0, 4.0}, torch::kDouble), 9, 4);
  EXPECT_TRUE(torch::allclose(w, torch::tensor({0.0, 2.0, 6.0}, torch::kDouble)));
  expect_user_error([] { cfg_unconditional_weight(0.5, 8, 2); }, "alpha must be >= 1");
  GroupedFeatures f = maps(2, 3, 2, 0, 2, 2, 2);
  f.classes = 4;
  expect_user_error([&] { feature_map_keys(f, "k"); }, "multiple of 4");
  GroupedFeatures g = maps(2, 3, 2, 0, 2, 2, 2);
  g.pos = torch::randn({4, 3, 2, 2}, torch::kDouble);
  expect_user_error([&] { feature_map_keys(g, "k"); }, "per-sample shape");
  GroupedFeatures h = maps(2, 3, 2, 0, 2, 2, 2);
  expect_user_error([&] { vector_key(h, "k"); }, "[B, D]");
}

// ---- the drift_field tool -------------------------------------------------------------------

int run_tool_cmd(const std::string& args) {
  const std::string cmd = std::string(DRIFT_FIELD_TOOL) + " " + args + " > /dev/null 2>&1";
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void write_csv(const std::string& path, const Tensor& t) {
  std::ofstream out(path);
  out << "c0,c1,c2\n";
  auto a = t.accessor<double, 2>();
  out.precision(17);
  for (int64_t i = 0; i < t.size(0); ++i) out << a[i][0] << "," << a[i][1] << "," << a[i][2] << "\n";
}

TEST(DriftFieldTool, WritesTheLibraryFieldAndRejectsBadInput) {
  const std::string dir = ::testing::TempDir();
  torch::manual_seed(70);
  Tensor x = torch::randn({12, 3}, torch::kDouble), pos = torch::randn({9, 3}, torch::kDouble) + 1,
         extra = torch::randn({4, 3}, torch::kDouble);
  write_csv(dir + "x.csv", x);
  write_csv(dir + "pos.csv", pos);
  write_csv(dir + "neg.csv", extra);
  // Two runs: CSV in -> HDF5 out, then that HDF5 dataset in as x -> CSV out. The second output
  // matches the library only if the first was written right too.
  ASSERT_EQ(run_tool_cmd("--x=" + dir + "x.csv --pos=" + dir + "pos.csv --neg=" + dir + "neg.csv --alpha=2 " +
                         "--dtype=float64 --threads=1 --out=" + dir + "V.h5"),
            0);
  ASSERT_EQ(run_tool_cmd("--x=" + dir + "V.h5:V --pos=" + dir + "pos.csv --neg=" + dir + "neg.csv --alpha=2 " +
                         "--dtype=float64 --threads=1 --out=" + dir + "V.csv"),
            0);
  auto input_units = [&](const Tensor& xx) {
    Problem p;
    p.x = xx, p.y_pos = pos, p.y_neg = torch::cat({xx, extra});
    p.w_neg = torch::cat({torch::ones({12}, torch::kDouble),
                          torch::full({4}, cfg_unconditional_weight(2.0, 12, 4), torch::kDouble)});
    FieldResult f = drift_field(p, FieldOptions{});
    return f.V * (f.scale / std::sqrt(3.0));
  };
  Tensor expected = input_units(input_units(x));
  std::ifstream in(dir + "V.csv");
  std::vector<double> vals;
  std::string line;
  while (std::getline(in, line)) {
    for (char& c : line) c = c == ',' ? ' ' : c;
    std::istringstream ls(line);
    double v;
    while (ls >> v) vals.push_back(v);
  }
  ASSERT_EQ(vals.size(), 36u);
  EXPECT_TRUE(torch::allclose(torch::tensor(vals, torch::kDouble).view({12, 3}), expected, 1e-6, 1e-7));
  // Bad input: a clear error and exit status 2.
  EXPECT_EQ(run_tool_cmd("--x=" + dir + "missing.csv --pos=" + dir + "pos.csv"), 2);
  EXPECT_EQ(run_tool_cmd("--x=" + dir + "x.csv --pos=" + dir + "pos.csv --png=" + dir + "p.png"), 2);  // D = 3
}

}  // namespace
}  // namespace driftlab::drift
