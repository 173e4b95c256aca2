// drift_eval's typed configs: every validation rule names its flag and the bad value; compare()
// on two small labelled toy sets prints the table, writes every metric row to --json and the
// scatter to --png, and refuses a bad config itself; train-classifier trains one epoch on a tiny
// two-class image set, writes a loadable file and reports the test accuracy.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../common/user_error.h"
#include "common/check.h"
#include "data/converters.h"
#include "eval/classifier.h"
#include "eval/compare.h"

namespace driftlab::eval {
namespace {

namespace fs = std::filesystem;

template <typename Config>
std::string error_of(const Config& c) {
  return testing_util::user_error_of([&] { validate(c); });
}

CompareConfig good_compare() {
  CompareConfig c;
  c.generated = "gen";
  c.reference = "ref";
  return c;
}

TEST(CompareConfig, DefaultsWithBothSetsPass) { EXPECT_EQ(error_of(good_compare()), ""); }

TEST(CompareConfig, EachRuleNamesItsFlagAndValue) {
  struct Case {
    void (*change)(CompareConfig&);
    const char* expected;
  };
  const Case cases[] = {
      {[](CompareConfig& c) { c.generated.clear(); }, "--generated"},
      {[](CompareConfig& c) { c.reference.clear(); }, "--reference"},
      {[](CompareConfig& c) { c.max_samples = 9; }, "--max_samples must be >= 10, got 9"},
      {[](CompareConfig& c) { c.knn_k = 0; }, "--knn_k must be >= 1, got 0"},
      {[](CompareConfig& c) { c.mode_radius = -0.5; }, "--mode_radius must be >= 0 (0: automatic), got -0.5"},
      {[](CompareConfig& c) { c.threads = -1; }, "--eval_threads must be >= 0 (0: all cores), got -1"},
  };
  for (const auto& k : cases) {
    CompareConfig c = good_compare();
    k.change(c);
    const std::string msg = error_of(c);
    EXPECT_NE(msg.find(k.expected), std::string::npos) << "expected '" << k.expected << "', got '" << msg << "'";
  }
}

TEST(ClassifierTrainConfig, EachRuleNamesItsFlagAndValue) {
  ClassifierTrainConfig good;
  good.data = "train";
  good.out = "clf.pt";
  EXPECT_EQ(error_of(good), "");
  struct Case {
    void (*change)(ClassifierTrainConfig&);
    const char* expected;
  };
  const Case cases[] = {
      {[](ClassifierTrainConfig& c) { c.data.clear(); }, "--data"},
      {[](ClassifierTrainConfig& c) { c.out.clear(); }, "--out"},
      {[](ClassifierTrainConfig& c) { c.training.epochs = 0; }, "--epochs must be >= 1, got 0"},
      {[](ClassifierTrainConfig& c) { c.training.batch = -3; }, "--batch must be >= 1, got -3"},
      {[](ClassifierTrainConfig& c) { c.training.lr = 0; }, "--lr must be > 0, got 0"},
  };
  for (const auto& k : cases) {
    ClassifierTrainConfig c = good;
    k.change(c);
    const std::string msg = error_of(c);
    EXPECT_NE(msg.find(k.expected), std::string::npos) << "expected '" << k.expected << "', got '" << msg << "'";
  }
}

TEST(Compare, WritesEveryMetricOfTwoToySetsToJson) {
  const fs::path dir = fs::temp_directory_path() / ("driftlab_test_compare_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  data::WriteOptions w;
  w.show_progress = false;
  data::write_toy("8gaussians", 400, 0, true, (dir / "ref").string(), w);
  data::write_toy("8gaussians", 200, 1, true, (dir / "gen").string(), w);
  CompareConfig c;
  c.reference = (dir / "ref").string();
  c.generated = (dir / "gen").string();
  c.max_samples = 100;
  c.json = (dir / "out.json").string();
  c.png = (dir / "points.png").string();  // 2-D data: a scatter of both sets
  testing::internal::CaptureStdout();
  EXPECT_EQ(compare(c), 0);
  const std::string table = testing::internal::GetCapturedStdout();
  EXPECT_NE(table.find("energy distance"), std::string::npos) << table;
  std::ifstream in(c.json);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string json = ss.str();
  EXPECT_NE(json.find("\"samples\": 100"), std::string::npos) << json;
  for (const char* metric : {"energy distance", "precision (k-NN)", "recall (k-NN)", "modes missed (of 8)"})
    EXPECT_NE(json.find(metric), std::string::npos) << metric << " missing from " << json;
  EXPECT_GT(fs::file_size(c.png), 0u);
  c.max_samples = 5;  // compare() validates its config itself
  EXPECT_THROW(compare(c), UserError);
  fs::remove_all(dir);
}

// An IDX file: big-endian magic and sizes, then the bytes.
void write_idx(const std::string& file, uint32_t magic, const std::vector<uint32_t>& dims,
               const std::vector<uint8_t>& bytes) {
  std::ofstream f(file, std::ios::binary);
  auto be = [&](uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) f.put(static_cast<char>(static_cast<uint8_t>(v >> s)));
  };
  be(magic);
  for (uint32_t d : dims) be(d);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

TEST(ClassifierTrain, OneEpochWritesTheFileAndReportsTheTestAccuracy) {
  const fs::path dir = fs::temp_directory_path() / ("driftlab_test_classifier_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  // 40 images 8x8 of two classes: dark (0) and bright (1).
  const uint32_t n = 40, side = 8;
  std::vector<uint8_t> px(n * side * side), lab(n);
  for (uint32_t i = 0; i < n; ++i) {
    lab[i] = static_cast<uint8_t>(i % 2);
    for (uint32_t k = 0; k < side * side; ++k) px[i * side * side + k] = static_cast<uint8_t>(lab[i] ? 200 + k % 50 : k % 50);
  }
  write_idx((dir / "img").string(), 0x803, {n, side, side}, px);
  write_idx((dir / "lab").string(), 0x801, {n}, lab);
  data::WriteOptions w;
  w.show_progress = false;
  data::convert_idx((dir / "img").string(), (dir / "lab").string(), (dir / "train").string(), w);
  ClassifierTrainConfig c;
  c.data = (dir / "train").string();
  c.test_data = c.data;
  c.out = (dir / "clf.pt").string();
  c.training.epochs = 1;
  c.training.batch = 8;
  testing::internal::CaptureStdout();
  EXPECT_EQ(train_and_save_classifier(c), 0);
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_NE(out.find("classifier written to " + c.out), std::string::npos) << out;
  EXPECT_NE(out.find("test accuracy on "), std::string::npos) << out;
  auto clf = load_classifier(c.out);
  EXPECT_EQ(clf->num_classes, 2);
  EXPECT_EQ(clf->height, 8);
  c.training.batch = 0;  // validated by the job itself, before any work
  fs::remove(c.out);
  EXPECT_THROW(train_and_save_classifier(c), UserError);
  EXPECT_FALSE(fs::exists(c.out));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace driftlab::eval
