// drift_encoder's typed work (models/pretrain.h): each validation rule names its flag and the bad
// value, and a few MAE steps on a tiny IDX image file write an encoder file that loads back as a
// ResNet with the configured stages.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "../common/user_error.h"
#include "common/check.h"
#include "models/encoders.h"
#include "models/pretrain.h"

namespace driftlab::models {
namespace {

namespace fs = std::filesystem;

std::string error_of(const EncoderPretrainConfig& c) {
  return testing_util::user_error_of([&] { validate(c); });
}

EncoderPretrainConfig good() {
  EncoderPretrainConfig c;
  c.images = "train-images-idx3-ubyte";
  return c;
}

TEST(EncoderPretrainConfig, EachRuleNamesItsFlagAndValue) {
  EXPECT_EQ(error_of(good()), "");
  struct Case {
    void (*change)(EncoderPretrainConfig&);
    const char* expected;
  };
  const Case cases[] = {
      {[](EncoderPretrainConfig& c) { c.images.clear(); }, "exactly one of --data=<shard folder> or --images="},
      {[](EncoderPretrainConfig& c) { c.data = "data/mnist"; }, "exactly one of --data=<shard folder> or --images="},
      {[](EncoderPretrainConfig& c) { c.batch_size = 0; }, "--batch_size=0: expected > 0"},
      {[](EncoderPretrainConfig& c) { c.max_images = -1; }, "--max_images=-1"},
      {[](EncoderPretrainConfig& c) { c.holdout = -5; }, "--holdout=-5"},
      {[](EncoderPretrainConfig& c) { c.threads = -2; }, "--threads=-2"},
      {[](EncoderPretrainConfig& c) { c.device = "gpu0"; }, "--device=gpu0: expected cpu or cuda[:N]"},
      {[](EncoderPretrainConfig& c) { c.mae.steps = 0; }, "--steps=0: expected > 0"},
      {[](EncoderPretrainConfig& c) { c.mae.mask_prob = 1.0; }, "--mask_prob=1: expected in (0, 1)"},
      {[](EncoderPretrainConfig& c) { c.mae.ema_decay = 1.0; }, "--ema_decay=1: expected in [0, 1)"},
  };
  for (const auto& k : cases) {
    EncoderPretrainConfig c = good();
    k.change(c);
    const std::string msg = error_of(c);
    EXPECT_NE(msg.find(k.expected), std::string::npos) << "expected '" << k.expected << "', got '" << msg << "'";
  }
}

// An idx3 file of n images h x w: big-endian magic 0x00000803, the three sizes, then the bytes.
void write_idx3(const std::string& path, int n, int h, int w) {
  std::ofstream f(path, std::ios::binary);
  auto be32 = [&](uint32_t v) {
    const unsigned char b[4] = {static_cast<unsigned char>(v >> 24), static_cast<unsigned char>(v >> 16),
                                static_cast<unsigned char>(v >> 8), static_cast<unsigned char>(v)};
    f.write(reinterpret_cast<const char*>(b), 4);
  };
  be32(0x00000803);
  be32(n);
  be32(h);
  be32(w);
  for (int i = 0; i < n; ++i)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) f.put(static_cast<char>(((x + i) % 4 < 2) ? 255 : (y * 16) % 256));
}

TEST(EncoderPretrain, FewStepsOnIdxImagesWriteALoadableEncoder) {
  const fs::path dir = fs::temp_directory_path() / ("driftlab_test_pretrain_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  EncoderPretrainConfig c;
  c.images = (dir / "images-idx3-ubyte").string();
  write_idx3(c.images, 24, 16, 16);
  c.out = (dir / "enc.pt").string();
  c.holdout = 8;
  c.batch_size = 4;
  c.widths = {4, 8};
  c.blocks = {1, 1};
  c.groups = 2;
  c.mae.steps = 3;
  c.mae.log_every = 0;
  c.mae.progress = false;
  c.mae.decoder_width = 4;
  testing::internal::CaptureStdout();
  EXPECT_EQ(pretrain_encoder(c), 0);
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_NE(out.find("mae: 3 steps"), std::string::npos) << out;
  EXPECT_NE(out.find("held-out masked-pixel MSE (8 images)"), std::string::npos) << out;
  auto enc = load_encoder_file(c.out);
  auto* r = dynamic_cast<ResNetEncoderImpl*>(enc.get());
  ASSERT_NE(r, nullptr) << enc->describe();
  EXPECT_EQ(r->config().widths, c.widths);
  EXPECT_EQ(r->config().blocks, c.blocks);

  c.mae.finetune_steps = 2;  // IDX images without --labels: no classes to fine-tune on
  try {
    pretrain_encoder(c);
    ADD_FAILURE() << "fine-tuning without labels should be refused";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("--finetune_steps needs labels"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace driftlab::models
