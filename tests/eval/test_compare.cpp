// drift_eval's typed configs: every validation rule names its flag and the bad value; compare()
// on two small labelled toy sets prints the table, writes every metric row to --json and the
// scatter to --png, and refuses a bad config itself; train-classifier trains one epoch on a tiny
// two-class image set, writes a loadable file and reports the test accuracy.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
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

// The number after "KEY": in the JSON object of `metric` (NaN when absent).
double json_number(const std::string& json, const std::string& metric, const std::string& key) {
  const auto at = json.find("{\"metric\": \"" + metric + "\"");
  if (at == std::string::npos) return NAN;
  const auto end = json.find('}', at);
  const auto k = json.find("\"" + key + "\": ", at);
  if (k == std::string::npos || k > end) return NAN;
  return std::stod(json.substr(k + key.size() + 4));
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
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
      {[](CompareConfig& c) { c.permutations = -1; }, "--permutations must be in [0, 100000] (0: no permutation test), got -1"},
      {[](CompareConfig& c) { c.resamples = 1; }, "--resamples must be 0 (none) or in [2, 1000], got 1"},
      {[](CompareConfig& c) { c.kid_subsets = 0; }, "--kid_subsets must be >= 1, got 0"},
      {[](CompareConfig& c) { c.kid_subset_size = 1; }, "--kid_subset_size must be >= 2, got 1"},
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
  // Tests carry p, z and the null's mean and sd; resampled metrics the real data's mean and sd.
  const double p = json_number(json, "energy distance", "p_value");
  EXPECT_TRUE(p > 0 && p <= 1) << json;
  for (const char* key : {"null_mean", "null_sd", "z"}) EXPECT_FALSE(std::isnan(json_number(json, "energy distance", key))) << key;
  for (const char* key : {"null_mean", "null_sd"}) EXPECT_FALSE(std::isnan(json_number(json, "recall (k-NN)", key))) << key;
  EXPECT_FALSE(std::isnan(json_number(json, "energy distance (V-statistic)", "floor"))) << json;
  EXPECT_NE(table.find("Verdict at 100 generated vs 100 real samples"), std::string::npos) << table;
  EXPECT_GT(fs::file_size(c.png), 0u);
  c.max_samples = 5;  // compare() validates its config itself
  EXPECT_THROW(compare(c), UserError);
  fs::remove_all(dir);
}

// 3% of the mass moved onto bridges between neighbouring modes: the two-sample statistics barely
// see it at this size, k-NN precision does, against real data's spread over resamples; a real set
// scored the same way is not flagged.
TEST(Compare, BridgesBetweenModesAreFlaggedByPrecisionNotRealData) {
  const fs::path dir = fs::temp_directory_path() / ("driftlab_test_bridges_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  data::WriteOptions w;
  w.show_progress = false;
  const int64_t n = 5000, bridged = 150;
  data::write_toy("8gaussians", 2 * n, 0, true, (dir / "ref").string(), w);
  data::write_toy("8gaussians", n, 7, true, (dir / "real").string(), w);
  std::vector<int32_t> labels;
  auto pts = data::toy_points("8gaussians", n, 8, &labels).to(torch::kFloat64);
  auto lab = torch::tensor(labels, torch::kLong);
  std::vector<torch::Tensor> centers;
  for (int m = 0; m < 8; ++m) centers.push_back(pts.index({lab == m}).mean(0));
  {
    std::ofstream csv(dir / "bridged.csv");
    torch::manual_seed(13);
    auto t = torch::rand({bridged}, torch::kFloat64) * 0.7 + 0.15;  // away from both ends
    for (int64_t i = 0; i < n; ++i) {
      torch::Tensor p = pts[i];
      if (i < bridged) {  // on the segment from mode i % 8 to its neighbour
        const auto& c0 = centers[i % 8];
        const auto& c1 = centers[(i + 1) % 8];
        p = c0 + t[i] * (c1 - c0);
      }
      csv << p[0].item<double>() << "," << p[1].item<double>() << "," << labels[i] << "\n";
    }
  }
  data::CsvOptions o;
  o.label_column = 2;
  o.num_classes = 8;
  data::convert_csv((dir / "bridged.csv").string(), (dir / "bridged").string(), w, o);
  double z[2];
  for (int k = 0; k < 2; ++k) {
    CompareConfig c;
    c.reference = (dir / "ref").string();
    c.generated = (dir / (k ? "real" : "bridged")).string();
    c.max_samples = n;
    c.permutations = 20;
    c.resamples = 5;
    c.json = (dir / "out.json").string();
    testing::internal::CaptureStdout();
    ASSERT_EQ(compare(c), 0);
    const std::string table = testing::internal::GetCapturedStdout();
    const std::string json = read_file(c.json);
    z[k] = json_number(json, "precision (k-NN)", "z");
    EXPECT_GT(json_number(json, "precision (k-NN)", "null_sd"), 0) << json;
    EXPECT_FALSE(std::isnan(json_number(json, "precision (k-NN)", "null_mean"))) << json;
    if (k == 0) {
      EXPECT_NE(table.find("!! below real data by > 3 sd"), std::string::npos) << table;
    }
  }
  EXPECT_LT(z[0], -3) << "3% of the samples on bridges: precision only " << z[0] << " sd below real data";
  EXPECT_LT(std::fabs(z[1]), 3) << "a real set scored " << z[1] << " sd from real data";
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

// `n` labelled 8x8 images of two classes, dark (0) and bright (1), varied by `offset`, as a shard set.
void write_two_class_images(const fs::path& dir, const std::string& name, uint32_t n, uint32_t offset) {
  const uint32_t side = 8;
  std::vector<uint8_t> px(n * side * side), lab(n);
  for (uint32_t i = 0; i < n; ++i) {
    lab[i] = static_cast<uint8_t>(i % 2);
    for (uint32_t k = 0; k < side * side; ++k)
      px[i * side * side + k] = static_cast<uint8_t>((lab[i] ? 200 : 0) + (k * 7 + i * 13 + offset) % 50);
  }
  write_idx((dir / (name + ".img")).string(), 0x803, {n, side, side}, px);
  write_idx((dir / (name + ".lab")).string(), 0x801, {n}, lab);
  data::WriteOptions w;
  w.show_progress = false;
  data::convert_idx((dir / (name + ".img")).string(), (dir / (name + ".lab")).string(), (dir / name).string(), w);
}

// Images with a classifier: the feature-space tests, the Frechet distance's real-data spread, KID
// with its subset sd, and the class accuracy all reach the JSON.
TEST(Compare, ImagesWithAClassifierGetFeatureTestsFrechetSpreadAndKid) {
  const fs::path dir = fs::temp_directory_path() / ("driftlab_test_compare_images_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  write_two_class_images(dir, "ref", 80, 0);
  write_two_class_images(dir, "gen", 40, 5);
  ClassifierTrainConfig t;
  t.data = (dir / "ref").string();
  t.out = (dir / "clf.pt").string();
  t.training.epochs = 1;
  t.training.batch = 8;
  testing::internal::CaptureStdout();
  ASSERT_EQ(train_and_save_classifier(t), 0);
  CompareConfig c;
  c.reference = (dir / "ref").string();
  c.generated = (dir / "gen").string();
  c.classifier = t.out;
  c.max_samples = 40;
  c.permutations = 50;
  c.resamples = 3;
  c.kid_subsets = 4;
  c.json = (dir / "out.json").string();
  ASSERT_EQ(compare(c), 0);
  testing::internal::GetCapturedStdout();
  const std::string json = read_file(c.json);
  for (const char* test : {"energy distance (pixels)", "energy distance (classifier features)"}) {
    const double p = json_number(json, test, "p_value");
    EXPECT_TRUE(p > 0 && p <= 1) << test << ": " << json;
  }
  EXPECT_GT(json_number(json, "classifier Frechet distance", "null_sd"), 0) << json;
  EXPECT_GE(json_number(json, "KID (classifier features)", "sd"), 0) << json;
  EXPECT_FALSE(std::isnan(json_number(json, "KID (classifier features)", "null_mean"))) << json;
  const double accuracy = json_number(json, "classified as asked class", "value");
  EXPECT_TRUE(accuracy >= 0 && accuracy <= 1) << json;
  EXPECT_FALSE(std::isnan(json_number(json, "energy distance (V-statistic, pixels)", "floor"))) << json;
  fs::remove_all(dir);
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
