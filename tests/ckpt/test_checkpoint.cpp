// Checkpoint files: round trip, slices assembled across writer counts, corruption and
// truncation detected and named, incomplete steps invisible, retention.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "common/check.h"
#include "ckpt/checkpoint.h"

namespace fs = std::filesystem;

namespace driftlab::ckpt {
namespace {

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("driftlab_ckpt_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // Writes a checkpoint at `step` as `world` ranks would: rank 0 holds the weights, the
  // optimizer state "m" (numel 10) is split into contiguous slices, one per rank.
  std::string write_step(uint64_t step, int world, const torch::Tensor& w, const torch::Tensor& m) {
    const std::string dir = (root_ / step_dir_name(step)).string();
    proto::Manifest man;
    man.set_step(step);
    man.set_world_size(world);
    const int64_t n = m.numel();
    for (int r = 0; r < world; ++r) {
      std::vector<TensorToSave> ts;
      if (r == 0) ts.push_back({"model/w", w, {}, 0});
      const int64_t b = n * r / world, e = n * (r + 1) / world;
      ts.push_back({"optim/m", m.flatten().slice(0, b, e), m.sizes().vec(), b});
      for (auto& entry : write_shard(dir, r, ts)) *man.add_tensors() = entry;
    }
    (*man.mutable_config()->mutable_flags())["lr"] = "0.001";
    commit_manifest(dir, man);
    return dir;
  }

  fs::path root_;
};

TEST(Crc32c, KnownValue) {
  const char* s = "123456789";
  EXPECT_EQ(crc32c(s, 9), 0xE3069283u);            // the standard CRC-32C check value
  EXPECT_EQ(crc32c(s + 4, 5, crc32c(s, 4)), 0xE3069283u);  // chaining
}

TEST_F(CheckpointTest, LoadWeightsCopiesByPrefixAndChecksShapes) {
  auto w = torch::randn({3, 4}, torch::kFloat64);
  auto m = torch::arange(10, torch::kFloat32).reshape({2, 5});
  const std::string dir = write_step(7, 3, w, m);
  const auto man = read_manifest(dir);
  // A parameter that requires grad is filled in place (no autograd error), from its prefix.
  auto target_w = torch::zeros({3, 4}, torch::kFloat64).requires_grad_(true);
  auto target_m = torch::zeros({2, 5}, torch::kFloat32);
  load_weights(dir, man, {{"w", target_w}}, "model/");
  load_weights(dir, man, {{"m", target_m}}, "optim/");  // assembled from the three ranks' slices
  EXPECT_TRUE(torch::equal(target_w.detach(), w));
  EXPECT_TRUE(torch::equal(target_m, m));
  try {
    auto wrong = torch::zeros({4, 3}, torch::kFloat64);
    load_weights(dir, man, {{"w", wrong}}, "model/");
    ADD_FAILURE() << "no error for a shape mismatch";
  } catch (const UserError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("model/w"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[3, 4]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[4, 3]"), std::string::npos) << msg;
  }
  EXPECT_THROW(load_weights(dir, man, {{"absent", target_m}}, "model/"), UserError);
}

TEST_F(CheckpointTest, RoundTripAcrossWriterCounts) {
  auto w = torch::randn({3, 4}, torch::kFloat64);
  auto m = torch::arange(10, torch::kFloat32).reshape({2, 5});
  for (int world : {1, 2, 3}) {
    const std::string dir = write_step(world, world, w, m);
    auto man = read_manifest(dir);
    EXPECT_EQ(man.step(), static_cast<uint64_t>(world));
    EXPECT_EQ(man.shards_size(), world);
    EXPECT_TRUE(torch::equal(read_tensor(dir, man, "model/w"), w));
    EXPECT_TRUE(torch::equal(read_tensor(dir, man, "optim/m"), m));
    EXPECT_EQ(tensor_names(man), (std::vector<std::string>{"model/w", "optim/m"}));
    EXPECT_NE(describe(man).find("--lr=0.001"), std::string::npos);
  }
  EXPECT_EQ(list_complete(root_.string()).size(), 3u);
}

TEST_F(CheckpointTest, StepWithoutManifestDoesNotExist) {
  auto w = torch::ones({2});
  write_step(5, 1, w, torch::zeros({10}));
  const std::string partial = (root_ / step_dir_name(6)).string();
  write_shard(partial, 0, {{"model/w", w, {}, 0}});  // crashed before the manifest
  std::vector<std::string> incomplete;
  auto done = list_complete(root_.string(), &incomplete);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].step, 5u);
  ASSERT_EQ(incomplete.size(), 1u);
  EXPECT_EQ(incomplete[0], partial);
  EXPECT_THROW(read_manifest(partial), UserError);
}

TEST_F(CheckpointTest, CorruptionAndTruncationAreNamed) {
  auto w = torch::randn({64});
  const std::string dir = write_step(1, 2, w, torch::randn({10}));
  auto man = read_manifest(dir);
  const std::string shard = dir + "/shard_r00000.bin";
  {  // flip one byte inside model/w
    std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(man.tensors(0).offset() + 7));
    char c = 0x5A;
    f.write(&c, 1);
  }
  try {
    read_tensor(dir, man, "model/w");
    FAIL() << "corruption not detected";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("checksum mismatch in tensor model/w"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("shard_r00000.bin"), std::string::npos) << e.what();
  }
  fs::resize_file(dir + "/shard_r00001.bin", 20);
  try {
    read_tensor(dir, man, "optim/m");
    FAIL() << "truncation not detected";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  {
    std::ofstream f(dir + "/manifest.pb", std::ios::binary | std::ios::trunc);
    f << "\xff\xff\xff garbage";
  }
  EXPECT_THROW(read_manifest(dir), UserError);
}

TEST_F(CheckpointTest, MissingSliceIsAnError) {
  const std::string dir = (root_ / step_dir_name(1)).string();
  proto::Manifest man;
  for (auto& e : write_shard(dir, 0, {{"optim/m", torch::ones({4}), {10}, 0}})) *man.add_tensors() = e;
  commit_manifest(dir, man);
  EXPECT_THROW(read_tensor(dir, read_manifest(dir), "optim/m"), UserError);
  EXPECT_THROW(read_tensor(dir, read_manifest(dir), "nope"), UserError);
}

TEST_F(CheckpointTest, PruneKeepsLastAndMilestones) {
  for (uint64_t s = 10; s <= 60; s += 10) write_step(s, 1, torch::ones({1}), torch::ones({10}));
  write_shard((root_ / step_dir_name(15)).string(), 0, {{"model/w", torch::ones({1}), {}, 0}});  // crash leftover
  write_shard((root_ / step_dir_name(70)).string(), 0, {{"model/w", torch::ones({1}), {}, 0}});  // being written
  prune(root_.string(), /*keep_last=*/2, /*keep_every=*/20);
  std::vector<std::string> incomplete;
  std::vector<uint64_t> steps;
  for (const auto& s : list_complete(root_.string(), &incomplete)) steps.push_back(s.step);
  EXPECT_EQ(steps, (std::vector<uint64_t>{20, 40, 50, 60}));
  ASSERT_EQ(incomplete.size(), 1u);
  EXPECT_NE(incomplete[0].find(step_dir_name(70)), std::string::npos);
}

}  // namespace
}  // namespace driftlab::ckpt
