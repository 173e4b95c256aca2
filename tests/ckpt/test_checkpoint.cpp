// Checkpoint files: round trip, slices assembled across writer counts, corruption and
// truncation detected and named, incomplete steps invisible, retention.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "common/check.h"
#include "ckpt/checkpoint.h"
#include "ckpt/run_record.h"

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

// The typed run record: maps <-> messages field by field, differences named as flags, a
// format-1 manifest (flag map only) read as the same typed record, unknown versions refused.
TEST_F(CheckpointTest, TypedRunRecordAndFormatVersions) {
  const KeyValues gen{{"gen_arch", "conv"}, {"gen_sample_shape", "1,28,28"}, {"gen_width", "32"},
                      {"gen_mlp_ratio", "2.5"}, {"gen_init_seed", "7"}, {"lr", "ignored"}};
  proto::GeneratorSpec g;
  fill_from_map(gen, "gen_", &g, "test");
  EXPECT_EQ(g.arch(), "conv");
  EXPECT_EQ(g.sample_shape_size(), 3);
  EXPECT_EQ(g.sample_shape(2), 28);
  EXPECT_EQ(g.width(), 32);
  EXPECT_DOUBLE_EQ(g.mlp_ratio(), 2.5);
  EXPECT_EQ(g.init_seed(), 7u);
  const KeyValues back = to_map(g, "gen_");
  for (const char* k : {"gen_arch", "gen_sample_shape", "gen_width", "gen_mlp_ratio", "gen_init_seed"})
    EXPECT_EQ(back.at(k), gen.at(k)) << k;
  EXPECT_EQ(back.count("lr"), 0u);
  try {
    fill_from_map({{"gen_width", "3x"}}, "gen_", &g, "the record");
    ADD_FAILURE() << "a malformed value was accepted";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("gen_width"), std::string::npos) << e.what();
  }
  proto::ObjectiveSpec a, b;
  a.add_taus(0.05);
  a.add_taus(0.2);
  b.add_taus(0.05);
  b.set_keys_patch(true);
  EXPECT_EQ(field_differences(a, b, "--"),
            (std::vector<std::string>{"--taus: '0.05,0.2' -> '0.05'", "--keys_patch: 'false' -> 'true'"}));
  EXPECT_EQ(field_differences(a, b, "--", {"taus"}), std::vector<std::string>{"--keys_patch: 'false' -> 'true'"});
  EXPECT_TRUE(field_differences(a, a, "").empty());
  // An optional field (explicit presence) unset in a record written before it existed: left out
  // of the map and of the comparison; once set in both, compared like any other.
  EXPECT_EQ(to_map(a, "").count("tau_warmup_reset"), 0u);
  b.set_keys_patch(false);
  b.clear_taus();
  b.add_taus(0.05);
  b.add_taus(0.2);
  b.set_tau_warmup_reset(true);
  EXPECT_TRUE(field_differences(a, b, "--").empty());
  EXPECT_EQ(to_map(b, "").at("tau_warmup_reset"), "true");
  a.set_tau_warmup_reset(false);
  EXPECT_EQ(field_differences(a, b, "--"), std::vector<std::string>{"--tau_warmup_reset: 'false' -> 'true'"});

  // A format-1 manifest: the model and the objective lived in the flag map, the data in a map.
  auto w = torch::ones({2});
  const std::string dir = (root_ / step_dir_name(3)).string();
  proto::Manifest v1;
  v1.set_step(3);
  v1.set_world_size(1);
  for (auto& e : write_shard(dir, 0, {{"model/w", w, {}, 0}})) *v1.add_tensors() = e;
  auto& flags = *v1.mutable_config()->mutable_flags();
  for (const auto& [k, v] : gen) flags[k] = v;
  flags["taus"] = "0.02,0.05,0.2";
  flags["keys_patch"] = "true";
  flags["encoder"] = "identity";
  (*v1.mutable_config()->mutable_dataset())["kind"] = "image";
  (*v1.mutable_config()->mutable_dataset())["sample_shape"] = "28,28,1";
  commit_manifest(dir, v1);
  // commit_manifest stamps the current version; write the old one as an old build would have.
  auto man = read_manifest(dir);
  EXPECT_EQ(man.format_version(), kFormatVersion);
  man.set_format_version(1);
  std::string bytes;
  ASSERT_TRUE(man.SerializeToString(&bytes));
  { std::ofstream(dir + "/" + kManifestName, std::ios::binary | std::ios::trunc) << bytes; }
  const auto old = read_manifest(dir);
  const RecordMaps maps = record_maps(old);
  EXPECT_EQ(maps.generator.at("gen_arch"), "conv");
  EXPECT_EQ(maps.generator.at("gen_sample_shape"), "1,28,28");
  EXPECT_EQ(maps.objective.at("taus"), "0.02,0.05,0.2");
  EXPECT_EQ(maps.objective.at("keys_patch"), "true");
  EXPECT_EQ(maps.dataset.at("sample_shape"), "28,28,1");
  EXPECT_EQ(typed_record(old).encoder().kind(), "identity");
  const KeyValues flat = flat_record(typed_record(old));
  EXPECT_EQ(flat.at("gen_width"), "32");
  EXPECT_EQ(flat.at("lr"), "ignored");
  EXPECT_EQ(flat.count("enc_kind"), 0u) << "kind and path are named by --encoder, not compared twice";

  man.set_format_version(kFormatVersion + 1);
  ASSERT_TRUE(man.SerializeToString(&bytes));
  { std::ofstream(dir + "/" + kManifestName, std::ios::binary | std::ios::trunc) << bytes; }
  try {
    read_manifest(dir);
    ADD_FAILURE() << "a manifest of a newer format was read";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("format version " + std::to_string(kFormatVersion + 1)), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("newer driftlab"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace driftlab::ckpt
