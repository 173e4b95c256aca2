// Encoders: ResNet feature maps and shapes, frozen-but-differentiable, encoder files, the
// TorchScript contract (modules built and saved here in C++), MAE masks and pretraining on MNIST.
#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/check.h"
#include "../common/user_error.h"
#include "models/encoders.h"
#include "data/idx.h"
#include "models/mae.h"

namespace driftlab::models {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("driftlab_models_" + name)).string();
}

EncoderConfig small_resnet() {
  EncoderConfig c;
  c.kind = "resnet";
  c.in_channels = 1;
  c.widths = {8, 16, 32};
  c.blocks = {2, 3, 1};
  c.groups = 4;
  return c;
}

std::string error_of(const std::function<void()>& f) { return testing_util::user_error_of(f); }

TEST(EncoderConfig, RoundTripAndErrors) {
  auto c = small_resnet();
  EXPECT_EQ(EncoderConfig::from_map(c.to_map()).to_map(), c.to_map());
  EXPECT_EQ(EncoderConfig::from_text(c.to_text()).to_map(), c.to_map());
  EXPECT_NE(error_of([] { EncoderConfig::from_map({{"enc_kind", "vit"}}); }).find("enc_kind=vit"), std::string::npos);
  EXPECT_NE(error_of([] {
              EncoderConfig::from_map({{"enc_kind", "resnet"}, {"enc_widths", "8,16"}, {"enc_blocks", "2"}});
            }).find("enc_blocks"),
            std::string::npos);
  EXPECT_NE(error_of([] { EncoderConfig::from_map({{"enc_kind", "torchscript"}}); }).find("enc_path"),
            std::string::npos);
}

TEST(Encoders, IdentityReturnsTheInput) {
  auto enc = make_frozen_encoder(EncoderConfig{});
  auto x = torch::randn({5, 2});
  auto maps = enc->forward(x);
  ASSERT_EQ(maps.size(), 1u);
  EXPECT_TRUE(torch::equal(maps[0], x));
}

TEST(Encoders, ResNetFeatureMaps) {
  auto enc_base = make_encoder(small_resnet());
  auto* enc = dynamic_cast<ResNetEncoderImpl*>(enc_base.get());
  ASSERT_NE(enc, nullptr);
  // stage 0 (2 blocks): block 2 = stage output; stage 1 (3 blocks): block 2 and the output;
  // stage 2 (1 block): its output. Stages 1 and 2 halve the resolution.
  std::vector<std::vector<int64_t>> want = {{3, 8, 28, 28}, {3, 16, 14, 14}, {3, 16, 14, 14}, {3, 32, 7, 7}};
  EXPECT_EQ(enc->feature_shapes(3, 28, 28), want);
  auto maps = enc->forward(torch::randn({3, 1, 28, 28}));
  ASSERT_EQ(maps.size(), want.size());
  for (size_t i = 0; i < maps.size(); ++i) EXPECT_EQ(maps[i].sizes().vec(), want[i]);
  EXPECT_EQ(enc->stage_output_indices(), (std::vector<size_t>{0, 2, 3}));
  // 32x32 inputs (CIFAR-like, 3 channels).
  auto c3 = small_resnet();
  c3.in_channels = 3;
  auto e3 = make_encoder(c3);
  auto m3 = e3->forward(torch::randn({2, 3, 32, 32}));
  EXPECT_EQ(m3.back().sizes().vec(), (std::vector<int64_t>{2, 32, 8, 8}));
  EXPECT_THROW(enc->forward(torch::randn({2, 3, 28, 28})), UserError);
}

TEST(Encoders, ResNetParameterCount) {
  auto cfg = small_resnet();
  // conv3x3 without bias, GroupNorm weight+bias, 1x1 projection + norm where the shape changes.
  auto conv = [](int64_t i, int64_t o, int64_t k) { return i * o * k * k; };
  int64_t want = conv(1, 8, 3) + 2 * 8;
  int64_t cin = 8;
  for (size_t s = 0; s < cfg.widths.size(); ++s) {
    for (int64_t b = 0; b < cfg.blocks[s]; ++b) {
      const int64_t w = cfg.widths[s];
      want += conv(cin, w, 3) + 2 * w + conv(w, w, 3) + 2 * w;
      if (cin != w || (s > 0 && b == 0)) want += conv(cin, w, 1) + 2 * w;
      cin = w;
    }
  }
  int64_t got = 0;
  for (const auto& p : make_encoder(cfg)->parameters()) got += p.numel();
  EXPECT_EQ(got, want);
}

TEST(Encoders, FrozenButDifferentiableWrtInput) {
  auto enc = make_frozen_encoder(small_resnet());
  for (const auto& p : enc->parameters()) EXPECT_FALSE(p.requires_grad());
  auto x = torch::randn({2, 1, 28, 28}, torch::requires_grad());
  torch::Tensor loss = torch::zeros({});
  for (const auto& m : enc->forward(x)) loss = loss + m.pow(2).mean();
  loss.backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_GT(x.grad().abs().sum().item<float>(), 0.0f);
  for (const auto& p : enc->parameters()) EXPECT_FALSE(p.grad().defined());
}

TEST(Encoders, EncoderFileRoundTripIsBitExact) {
  auto cfg = small_resnet();
  cfg.init_seed = 3;
  auto enc_base = make_encoder(cfg);
  auto* enc = dynamic_cast<ResNetEncoderImpl*>(enc_base.get());
  const auto path = temp_path("encoder.pt");
  save_resnet_encoder(*enc, path);
  EXPECT_EQ(encoder_file_kind(path), "resnet");
  auto loaded = load_encoder_file(path);
  EncoderConfig by_flag;
  by_flag.kind = "resnet";
  by_flag.path = path;
  auto via_config = make_frozen_encoder(by_flag);
  auto x = torch::randn({2, 1, 28, 28});
  torch::NoGradGuard ng;
  auto a = enc->forward(x), b = loaded->forward(x), c = via_config->forward(x);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i], b[i]));
    EXPECT_TRUE(torch::equal(a[i], c[i]));
  }
  by_flag.kind = "torchscript";
  EXPECT_NE(error_of([&] { make_encoder(by_flag); }).find("drift_encoder file"), std::string::npos);
  std::filesystem::remove(path);
}

// A TorchScript encoder built in C++: conv, then returns [conv, relu(pooled conv)] (or `ret`).
std::string save_script_module(const std::string& name, const std::string& ret) {
  torch::jit::Module m("ScriptEncoder");
  m.register_parameter("w", torch::randn({4, 1, 3, 3}), false);
  m.define("def forward(self, x):\n"
           "    a = torch.conv2d(x, self.w, None, [1, 1], [1, 1])\n"
           "    b = torch.relu(torch.avg_pool2d(a, [2, 2]))\n"
           "    return " + ret + "\n");
  const auto path = temp_path(name);
  m.save(path);
  return path;
}

TEST(Encoders, TorchScriptModuleIsLoadedAndFrozen) {
  const auto path = save_script_module("script_ok.pt", "[a, b]");
  EXPECT_EQ(encoder_file_kind(path), "torchscript");
  EncoderConfig cfg;
  cfg.kind = "torchscript";
  cfg.path = path;
  auto enc = make_frozen_encoder(cfg);
  auto x = torch::randn({2, 1, 8, 8}, torch::requires_grad());
  auto maps = enc->forward(x);
  ASSERT_EQ(maps.size(), 2u);
  EXPECT_EQ(maps[0].sizes().vec(), (std::vector<int64_t>{2, 4, 8, 8}));
  EXPECT_EQ(maps[1].sizes().vec(), (std::vector<int64_t>{2, 4, 4, 4}));
  // Same numbers as the module computed directly.
  auto raw = torch::jit::load(path);
  auto w = raw.attr("w").toTensor();
  EXPECT_TRUE(torch::allclose(maps[0], torch::conv2d(x, w, {}, 1, 1)));
  (maps[0].sum() + maps[1].sum()).backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_GT(x.grad().abs().sum().item<float>(), 0.0f);
  // Tuples are accepted too.
  auto tuple_enc = load_encoder_file(save_script_module("script_tuple.pt", "(a, b)"));
  EXPECT_EQ(tuple_enc->forward(x.detach()).size(), 2u);
  std::filesystem::remove(path);
  std::filesystem::remove(temp_path("script_tuple.pt"));
}

TEST(Encoders, TorchScriptContractViolationsAreClearErrors) {
  auto x = torch::randn({2, 1, 8, 8});
  const auto single = save_script_module("script_tensor.pt", "a");
  auto msg = error_of([&] { load_encoder_file(single)->forward(x); });
  EXPECT_NE(msg.find(single), std::string::npos) << msg;
  EXPECT_NE(msg.find("list or tuple of 4-D tensors"), std::string::npos) << msg;

  const auto flat = save_script_module("script_flat.pt", "[a, torch.flatten(b, 1)]");
  msg = error_of([&] { load_encoder_file(flat)->forward(x); });
  EXPECT_NE(msg.find("element 1"), std::string::npos) << msg;

  const auto garbage = temp_path("garbage.pt");
  std::ofstream(garbage) << "not a module";
  msg = error_of([&] { load_encoder_file(garbage); });
  EXPECT_NE(msg.find(garbage), std::string::npos) << msg;
  msg = error_of([&] { load_encoder_file(temp_path("missing.pt")); });
  EXPECT_NE(msg.find("cannot open"), std::string::npos) << msg;
  for (const auto& p : {single, flat, garbage}) std::filesystem::remove(p);
}

TEST(Mae, MaskIsPatchwiseDeterministicAndPerSample) {
  auto m = mae_mask(1, 2, 0, 8, 28, 28, 2, 0.5);
  EXPECT_EQ(m.sizes().vec(), (std::vector<int64_t>{8, 1, 28, 28}));
  // Constant on each 2x2 patch.
  auto pooled = torch::max_pool2d(m, 2), minpooled = -torch::max_pool2d(-m, 2);
  EXPECT_TRUE(torch::equal(pooled, minpooled));
  const double frac = m.mean().item<double>();
  EXPECT_NEAR(frac, 0.5, 0.05);
  // Row r depends only on its global index, not on the batch it is drawn in.
  EXPECT_TRUE(torch::equal(m.narrow(0, 3, 5), mae_mask(1, 2, 3, 5, 28, 28, 2, 0.5)));
  EXPECT_FALSE(torch::equal(m, mae_mask(1, 3, 0, 8, 28, 28, 2, 0.5)));
}

TEST(Mae, PretrainingOnMnistLowersTheLoss) {
  const std::string dir = std::string(DRIFTLAB_SOURCE_DIR) + "/.cache/data/mnist/";
  if (!std::filesystem::exists(dir + "train-images-idx3-ubyte")) GTEST_SKIP() << "no MNIST at " << dir;
  auto images = data::load_idx_images(dir + "train-images-idx3-ubyte", 640);
  auto labels = data::load_idx_labels(dir + "train-labels-idx1-ubyte", 640);
  ASSERT_EQ(images.sizes().vec(), (std::vector<int64_t>{640, 1, 28, 28}));
  EXPECT_GE(images.min().item<float>(), -1.0f);
  EXPECT_LE(images.max().item<float>(), 1.0f);
  auto train = images.narrow(0, 0, 512), held = images.narrow(0, 512, 128);

  EncoderConfig cfg;
  cfg.kind = "resnet";
  cfg.widths = {8, 16, 32};
  cfg.blocks = {1, 1, 1};
  cfg.groups = 4;
  auto enc_base = make_encoder(cfg);
  auto enc = std::dynamic_pointer_cast<ResNetEncoderImpl>(enc_base);
  ASSERT_NE(enc, nullptr);
  MaeOptions o;
  o.steps = 150;
  o.lr = 3e-3;
  o.ema_decay = 0.9;
  o.decoder_width = 16;
  o.log_every = 0;
  o.progress = false;
  o.finetune_steps = 80;
  o.finetune_lr = 5e-3;
  o.num_classes = 10;
  const int64_t bs = 32;
  auto batches = [&](int64_t step) {
    MaeBatch b;
    auto idx = torch::arange(step * bs, (step + 1) * bs, torch::kLong) % 512;
    b.images = train.index_select(0, idx);
    b.labels = labels.index_select(0, idx);
    b.first_index = step * bs;
    return b;
  };
  o.eval_images = held;
  auto report = pretrain_mae(*enc, o, batches);
  ASSERT_EQ(report.losses.size(), 150u);
  EXPECT_LT(report.last_loss, 0.7 * report.first_loss) << report.first_loss << " -> " << report.last_loss;
  std::printf("MAE on 512 MNIST images: loss %.4f -> %.4f, held-out %.4f -> %.4f, %.1f s (with fine-tune), "
              "fine-tune accuracy %.3f\n",
              report.first_loss, report.last_loss, report.heldout_before, report.heldout_after, report.seconds,
              report.finetune_accuracy);
  // Held-out: the EMA encoder with the trained decoder beats the untrained pair and predicting
  // mid-grey (0) for every hidden pixel.
  auto held_mask = mae_mask(o.seed, kHeldoutMaskStep, 0, 128, 28, 28, 2, 0.5);
  const double zero = (held.pow(2) * held_mask).sum().item<double>() / held_mask.sum().item<double>();
  EXPECT_LT(report.heldout_after, 0.7 * report.heldout_before);
  EXPECT_LT(report.heldout_after, zero) << "held-out MAE loss " << report.heldout_after << " vs predicting 0 " << zero;
  EXPECT_GT(report.finetune_accuracy, 0.2);  // chance is 0.1 (192 scored samples)
  for (const auto& p : enc->parameters()) EXPECT_FALSE(p.requires_grad());
}

TEST(Idx, WrongFileKindIsAUserError) {
  const std::string dir = std::string(DRIFTLAB_SOURCE_DIR) + "/.cache/data/mnist/";
  if (!std::filesystem::exists(dir + "train-labels-idx1-ubyte")) GTEST_SKIP() << "no MNIST at " << dir;
  auto msg = error_of([&] { data::load_idx_images(dir + "train-labels-idx1-ubyte"); });
  EXPECT_NE(msg.find("train-labels-idx1-ubyte"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { data::load_idx_images(temp_path("none")); }).find("cannot open"), std::string::npos);
}

}  // namespace
}  // namespace driftlab::models
