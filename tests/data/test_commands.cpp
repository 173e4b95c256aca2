// drift_data's typed subcommands (data/commands.h): each validation rule names its flag and the bad
// value, --class_names parses presets and lists, and a toy data set written by run_command is
// inspected by run_command (with --grid refused for point data, naming the flag).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "../common/user_error.h"
#include "common/check.h"
#include "data/commands.h"
#include "data/reader.h"

namespace driftlab::data {
namespace {

namespace fs = std::filesystem;

template <typename Config>
std::string error_of(const Config& c) {
  return testing_util::user_error_of([&] { validate(c); });
}

template <typename Config>
void expect_error(const Config& c, const std::string& expected) {
  const std::string msg = error_of(c);
  EXPECT_NE(msg.find(expected), std::string::npos) << "expected '" << expected << "', got '" << msg << "'";
}

TEST(DataCommands, EachRuleNamesItsFlagAndValue) {
  ToyConfig toy;
  toy.name = "moons";
  toy.out = "some/out";
  EXPECT_EQ(error_of(toy), "");
  ToyConfig t = toy;
  t.out.clear();
  expect_error(t, "toy: --out=DIR is required");
  t = toy;
  t.write.num_shards = 0;
  expect_error(t, "some/out: --shards=0 (expected >= 1)");
  t = toy;
  t.write.deflate = 11;
  expect_error(t, "--deflate=11 (expected 0..9)");
  t = toy;
  t.write.chunk_rows = -4;
  expect_error(t, "--chunk_rows=-4 (expected >= 0)");

  ConvertCsvConfig csv;
  csv.file = "in.csv";
  csv.out = "some/out";
  EXPECT_EQ(error_of(csv), "");
  csv.delimiter = ";;";
  expect_error(csv, "--delimiter=';;' (expected one character)");
  csv.delimiter = "";
  expect_error(csv, "--delimiter='' (expected one character)");

  ConvertIdxConfig idx;
  idx.images = "train-images-idx3-ubyte";
  expect_error(idx, "convert-idx: --out=DIR is required");
  ConvertImagesConfig images;
  images.folder = "pngs";
  expect_error(images, "convert-images: --out=DIR is required");
  expect_error(InspectConfig{}, "inspect: expected one PATH");
}

TEST(DataCommands, ClassNamesArePresetsOrCommaLists) {
  EXPECT_TRUE(parse_class_names("").empty());
  EXPECT_EQ(parse_class_names("cat,dog,,bird"), (std::vector<std::string>{"cat", "dog", "", "bird"}));
  const auto mnist = parse_class_names("mnist");
  ASSERT_EQ(mnist.size(), 10u);
  EXPECT_EQ(mnist, preset_class_names("mnist"));
}

TEST(DataCommands, ToyWrittenThenInspected) {
  const fs::path dir = fs::temp_directory_path() / ("driftlab_test_commands_" + std::to_string(getpid()));
  fs::remove_all(dir);
  ToyConfig toy;
  toy.name = "moons";
  toy.out = (dir / "moons").string();
  toy.num = 300;
  toy.labels = true;
  toy.write.num_shards = 3;
  toy.write.show_progress = false;
  testing::internal::CaptureStdout();
  EXPECT_EQ(run_command(toy), 0);
  EXPECT_NE(testing::internal::GetCapturedStdout().find("wrote 300 samples in 3 shard(s) to " + toy.out), std::string::npos);
  auto set = ShardSet::open(toy.out);
  EXPECT_EQ(set->size(), 300);
  EXPECT_EQ(set->num_shards(), 3);
  EXPECT_TRUE(set->labelled());

  InspectConfig inspect;
  inspect.path = toy.out;
  inspect.progress = false;
  testing::internal::CaptureStdout();
  EXPECT_EQ(run_command(inspect), 0);
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_NE(out.find("samples    300 in 3 shard(s)"), std::string::npos) << out;
  EXPECT_NE(out.find("all 300 samples read"), std::string::npos) << out;

  inspect.grid = (dir / "grid.png").string();
  testing::internal::CaptureStdout();
  try {
    run_command(inspect);
    ADD_FAILURE() << "--grid on point data should be refused";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("--grid: "), std::string::npos) << e.what();
  }
  testing::internal::GetCapturedStdout();
  EXPECT_FALSE(fs::exists(inspect.grid));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace driftlab::data
