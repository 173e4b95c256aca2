// Contract tests of src/data: writer/reader round trips, every converter, the per-step global
// draw (world-size invariance, class conditioning), the prefetcher, and every bad input.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <torch/torch.h>
#include <zlib.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <thread>

#include "common/check.h"
#include "common/image.h"
#include "data/converters.h"
#include "data/loader.h"
#include "data/reader.h"
#include "data/sample_files.h"
#include "data/writer.h"

namespace driftlab::data {
namespace {
namespace fs = std::filesystem;

// A fresh folder per test under the system temp dir, removed afterwards.
class DataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    hdf5_silence_errors();
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("driftlab_test_data_" + std::string(info->name()) + "_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  WriteOptions quiet(int shards, bool force = false) const {
    WriteOptions o;
    o.num_shards = shards;
    o.force = force;
    o.show_progress = false;
    return o;
  }
  fs::path dir_;
};

// Expects a UserError whose message contains every one of `parts`.
template <class F>
void expect_user_error(F&& f, std::vector<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no UserError thrown; expected one mentioning " << parts.front();
  } catch (const UserError& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "message: " << e.what() << "\nmissing: " << p;
  }
}

// n labelled float samples of shape [4, 3, 3] (a latent-like tensor), label = i % classes.
std::pair<torch::Tensor, torch::Tensor> tensor_samples(int64_t n, int64_t classes) {
  torch::Tensor x = torch::arange(n * 36, torch::kFloat32).reshape({n, 4, 3, 3}).mul(0.25).sub(7.0);
  torch::Tensor y = torch::arange(n, torch::kInt64).remainder(classes);
  return {x, y};
}

std::string write_tensor_set(const std::string& out, int64_t n, int64_t classes, int shards, int64_t chunk = 0) {
  auto [x, y] = tensor_samples(n, classes);
  WriteOptions o;
  o.num_shards = shards;
  o.show_progress = false;
  o.chunk_rows = chunk;
  DatasetWriter w(out, float_spec(SampleKind::kTensor, {4, 3, 3}, classes), n, o);
  // Uneven appends cross shard boundaries inside one call.
  w.append(x.narrow(0, 0, 7), y.narrow(0, 0, 7));
  w.append(x.narrow(0, 7, n - 7), y.narrow(0, 7, n - 7));
  w.finish();
  return out;
}

TEST_F(DataTest, TensorRoundTripAcrossShards) {
  const int64_t n = 101;
  write_tensor_set(path("t"), n, 5, 3, /*chunk=*/8);
  auto set = ShardSet::open(path("t"));
  EXPECT_EQ(set->size(), n);
  EXPECT_EQ(set->num_shards(), 3);
  EXPECT_EQ(set->spec().kind, SampleKind::kTensor);
  EXPECT_EQ(set->spec().sample_shape, (std::vector<int64_t>{4, 3, 3}));
  EXPECT_EQ(set->shards()[0].rows + set->shards()[1].rows + set->shards()[2].rows, n);
  EXPECT_EQ(set->shards()[1].first, set->shards()[0].rows);
  auto [x, y] = tensor_samples(n, 5);
  // Any order, repeats, all shards.
  std::vector<int64_t> idx{100, 0, 33, 34, 67, 68, 33, 5, 99, 1};
  torch::Tensor got = set->read(idx);
  EXPECT_TRUE(torch::equal(got, x.index_select(0, torch::tensor(idx))));
  EXPECT_TRUE(torch::equal(set->labels_of(idx), y.index_select(0, torch::tensor(idx))));
  std::vector<int64_t> all(n);
  for (int64_t i = 0; i < n; ++i) all[i] = i;
  EXPECT_TRUE(torch::equal(set->read(all), x));
  for (int64_t i : {0, 33, 34, 100}) {
    auto [s, r] = set->locate(i);
    EXPECT_EQ(set->shards()[s].first + r, i);
  }
  expect_user_error([&] { set->locate(n); }, {"index 101 out of range"});
  // Per-class index: sorted, complete, only that class.
  int64_t total = 0;
  for (int64_t c = 0; c < 5; ++c) {
    for (int64_t i : set->class_indices(c)) EXPECT_EQ(i % 5, c);
    total += static_cast<int64_t>(set->class_indices(c).size());
  }
  EXPECT_EQ(total, n);
  const auto range = set->validate_all(false);
  EXPECT_EQ(range.first, x.min().item<float>());
  EXPECT_EQ(range.second, x.max().item<float>());
  // The same set opened by glob and by one file.
  EXPECT_EQ(ShardSet::open(path("t") + "/shard-*.h5")->size(), n);
  expect_user_error([&] { ShardSet::open(path("t") + "/shard-00001-of-00003.h5"); }, {"shard 0 of 3 is missing"});
}

TEST_F(DataTest, ImageEncodeDecodeAndAppendDecoded) {
  DatasetSpec spec = image_spec(5, 4, 3, 2, {"cat", "dog"});
  torch::Tensor stored = torch::arange(6 * 60, torch::kInt64).remainder(256).to(torch::kUInt8).reshape({6, 5, 4, 3});
  torch::Tensor dec = decode_samples(spec, stored);
  EXPECT_EQ(dec.sizes().vec(), (std::vector<int64_t>{6, 3, 5, 4}));
  EXPECT_GE(dec.min().item<float>(), -1.f);
  EXPECT_LE(dec.max().item<float>(), 1.f);
  EXPECT_FLOAT_EQ(dec[0][2][1][3].item<float>(), stored[0][1][3][2].item<uint8_t>() / 127.5f - 1.f);
  EXPECT_TRUE(torch::equal(encode_samples(spec, dec), stored));
  // Out-of-range generated values saturate instead of wrapping.
  EXPECT_EQ(encode_samples(spec, torch::full({1, 3, 5, 4}, 3.f)).min().item<uint8_t>(), 255);
  EXPECT_EQ(encode_samples(spec, torch::full({1, 3, 5, 4}, -3.f)).max().item<uint8_t>(), 0);
  // The sampler path: write decoded samples in the data set's own schema.
  DatasetWriter w(path("gen"), spec, 6, quiet(2));
  w.append_decoded(dec, torch::tensor({0, 1, 0, 1, 1, 0}));
  w.finish();
  auto set = ShardSet::open(path("gen"));
  EXPECT_EQ(set->spec().class_names, (std::vector<std::string>{"cat", "dog"}));
  EXPECT_TRUE(torch::equal(set->read_stored({0, 1, 2, 3, 4, 5}), stored));
  EXPECT_TRUE(torch::equal(set->read({5, 0}), dec.index_select(0, torch::tensor({5, 0}))));
  expect_user_error([&] { encode_samples(spec, torch::zeros({1, 5, 4, 3})); }, {"do not match"});
}

// The formats drift_sample writes for evaluation tools read back, by index, as what was written;
// the same rows and placement give byte-identical shard files (the sampler's rank invariance).
TEST_F(DataTest, PngFolderNpzAndShardFilesRoundTrip) {
  DatasetSpec spec = image_spec(5, 4, 1, 3, {"a/b", "", "c"});
  torch::Tensor stored = torch::arange(9 * 20, torch::kInt64).mul(7).remainder(256).to(torch::kUInt8).reshape({9, 5, 4, 1});
  torch::Tensor dec = decode_samples(spec, stored), lab = torch::tensor({2, 0, 1, 1, 0, 2, 2, 0, 1});
  EXPECT_EQ(png_class_folder(spec, 0), "a_b");
  EXPECT_EQ(png_class_folder(spec, 1), "class_1");
  EXPECT_EQ(png_sample_path(spec, 7, 2, 9), "c/000007.png");
  EXPECT_EQ(png_sample_path(spec, 7, 2, 12345678), "c/00000007.png");
  write_png_samples(path("png"), spec, 0, 9, dec.narrow(0, 0, 4), lab.narrow(0, 0, 4));
  write_png_samples(path("png"), spec, 4, 9, dec.narrow(0, 4, 5), lab.narrow(0, 4, 5));
  write_png_class_list(path("png"), spec);
  auto png = open_sample_set(path("png"));
  EXPECT_EQ(png->format(), "png");
  ASSERT_EQ(png->size(), 9);
  EXPECT_EQ(png->spec().num_classes, 3);
  auto [pd, pl] = png->read({8, 0, 3});
  EXPECT_TRUE(torch::equal(pd, dec.index_select(0, torch::tensor({8, 0, 3}))));
  EXPECT_TRUE(torch::equal(pl, torch::tensor({1, 2, 1})));

  RowSource rows = [&](int64_t first, int64_t count) {
    return std::make_pair(stored.narrow(0, first, count), lab.narrow(0, first, count));
  };
  write_npz(path("s.npz"), spec, 9, rows);
  auto npz = open_sample_set(path("s.npz"));
  EXPECT_EQ(npz->format(), "npz");
  ASSERT_EQ(npz->size(), 9);
  auto [nd, nl] = npz->read({5, 5, 1, 8});
  EXPECT_TRUE(torch::equal(nd, dec.index_select(0, torch::tensor({5, 5, 1, 8}))));
  EXPECT_TRUE(torch::equal(nl, torch::tensor({2, 2, 0, 1})));
  const std::string h = npy_header("|u1", {9, 5, 4, 1});
  EXPECT_EQ(h.size() % 64, 0u);
  const NpyInfo info = parse_npy_header(h, "header");
  EXPECT_EQ(info.descr, "|u1");
  EXPECT_EQ(info.shape, (std::vector<int64_t>{9, 5, 4, 1}));
  EXPECT_EQ(info.header_bytes, static_cast<int64_t>(h.size()));
  EXPECT_EQ(parse_npy_header(npy_header("<i8", {3}), "h").shape, (std::vector<int64_t>{3}));
  expect_user_error([&] { parse_npy_header("not a header", "x.npy"); }, {"x.npy", "not a .npy"});

  for (const char* name : {"s1.h5", "s2.h5"}) {
    ShardFileWriter w(path(name), spec, ShardPlacement{1, 3, 27, dataset_id_of("job")}, 9);
    w.append(stored.narrow(0, 0, 2), lab.narrow(0, 0, 2));
    w.append(stored.narrow(0, 2, 7), lab.narrow(0, 2, 7));
    w.close();
  }
  std::ifstream a(path("s1.h5"), std::ios::binary), b(path("s2.h5"), std::ios::binary);
  const std::string ba((std::istreambuf_iterator<char>(a)), {}), bb((std::istreambuf_iterator<char>(b)), {});
  EXPECT_FALSE(ba.empty());
  EXPECT_TRUE(ba == bb) << "the same rows must give the same shard bytes";
  {
    ShardFileWriter dropped(path("s3.h5"), spec, ShardPlacement{0, 1, 9, "x"}, 9);
    dropped.append(stored.narrow(0, 0, 3), lab.narrow(0, 0, 3));
  }
  EXPECT_FALSE(fs::exists(path("s3.h5"))) << "an unfinished shard file must be removed";
}

TEST_F(DataTest, OverwriteRulesAndNoLeftovers) {
  write_tensor_set(path("t"), 20, 2, 2);
  const std::string id = ShardSet::open(path("t"))->dataset_id();
  expect_user_error([&] { write_tensor_set(path("t"), 20, 2, 2); }, {path("t"), "already exists", "--force"});
  EXPECT_EQ(ShardSet::open(path("t"))->dataset_id(), id);
  {
    // An interrupted write leaves the old data set and no temporary folder behind.
    DatasetWriter w(path("t"), float_spec(SampleKind::kPoints, {2}), 10, quiet(1, true));
    w.append(torch::zeros({3, 2}));
  }
  EXPECT_EQ(ShardSet::open(path("t"))->dataset_id(), id);
  for (const auto& e : fs::directory_iterator(dir_)) EXPECT_EQ(e.path().filename(), "t");
  // Unfinished writes are refused at finish.
  expect_user_error([&] {
    DatasetWriter w(path("u"), float_spec(SampleKind::kPoints, {2}), 10, quiet(1));
    w.append(torch::zeros({3, 2}));
    w.finish();
  }, {"only 3 of the declared 10"});
  // --force replaces a data set...
  write_toy("moons", 50, 1, false, path("t"), quiet(3, true));
  EXPECT_EQ(ShardSet::open(path("t"))->size(), 50);
  // ...but never a folder holding anything else.
  fs::create_directories(path("other"));
  std::ofstream(path("other/notes.txt")) << "keep me";
  expect_user_error([&] { write_toy("moons", 50, 1, false, path("other"), quiet(1, true)); }, {"notes.txt", "not a shard"});
  EXPECT_TRUE(fs::exists(path("other/notes.txt")));
  // Bad write requests.
  expect_user_error([&] { DatasetWriter(path("e"), float_spec(SampleKind::kPoints, {2}), 0, quiet(1)); }, {"must not be empty"});
  expect_user_error([&] { DatasetWriter(path("e"), float_spec(SampleKind::kPoints, {2}), 3, quiet(4)); }, {"cannot fill 4 shards"});
  expect_user_error([&] {
    DatasetWriter w(path("e"), float_spec(SampleKind::kPoints, {2}, 3), 2, quiet(1));
    w.append(torch::zeros({2, 2}), torch::tensor({0, 3}));
  }, {"label 3 out of range [0, 3)"});
  expect_user_error([&] {
    DatasetWriter w(path("e"), float_spec(SampleKind::kPoints, {2}), 1, quiet(1));
    w.append(torch::full({1, 2}, std::nanf("")));
  }, {"non-finite"});
}

TEST_F(DataTest, ToyDistributions) {
  for (const std::string& name : toy_names()) {
    std::vector<int32_t> lab;
    torch::Tensor a = toy_points(name, 400, 7, &lab);
    EXPECT_EQ(a.sizes().vec(), (std::vector<int64_t>{400, 2}));
    EXPECT_TRUE(torch::isfinite(a).all().item<bool>());
    EXPECT_TRUE(torch::equal(a, toy_points(name, 400, 7))) << name;
    // Sample i depends only on (seed, i): a later block equals the tail of a longer draw.
    EXPECT_TRUE(torch::equal(a.narrow(0, 100, 300), toy_points(name, 300, 7, nullptr, 100))) << name;
    EXPECT_FALSE(torch::equal(a, toy_points(name, 400, 8))) << name;
    const int64_t modes = toy_num_modes(name);
    for (int32_t l : lab) EXPECT_TRUE(l >= 0 && (modes == 0 ? l == 0 : l < modes));
    if (modes > 0) {
      std::vector<int> seen(static_cast<size_t>(modes), 0);
      for (int32_t l : lab) seen[static_cast<size_t>(l)] = 1;
      EXPECT_EQ(std::accumulate(seen.begin(), seen.end(), 0), modes) << name << ": every mode should appear in 400 draws";
    }
  }
  // Per-mode labels mean something: 8gaussians' label is the angle sector of the point.
  std::vector<int32_t> lab;
  torch::Tensor g = toy_points("8gaussians", 200, 3, &lab);
  for (int64_t i = 0; i < 200; ++i) {
    const double ang = std::atan2(g[i][1].item<double>(), g[i][0].item<double>());
    const int sector = static_cast<int>(std::lround(ang / (2 * M_PI / 8)) + 8) % 8;
    EXPECT_EQ(sector, lab[static_cast<size_t>(i)]);
  }
  write_toy("checkerboard", 1000, 5, true, path("cb"), quiet(3));
  auto set = ShardSet::open(path("cb"));
  EXPECT_EQ(set->spec().num_classes, 8);
  EXPECT_TRUE(torch::equal(set->read({0, 999}), toy_points("checkerboard", 1000, 5).index_select(0, torch::tensor({0, 999}))));
  expect_user_error([&] { write_toy("spiral", 10, 0, false, path("x"), quiet(1)); }, {"unknown toy data set 'spiral'"});
  expect_user_error([&] { write_toy("swissroll", 10, 0, true, path("x"), quiet(1)); }, {"swissroll has no modes"});
}

TEST_F(DataTest, CsvRoundTripAndErrors) {
  std::ofstream(path("v.csv")) << "x,y,z,label\n1.5,2,3,1\n-4, 5e-1 ,6,0\r\n\n7,8,9,2\n";
  CsvOptions csv;
  csv.header = true;
  csv.label_column = 3;
  csv.class_names = {"a", "b", "c"};
  EXPECT_EQ(convert_csv(path("v.csv"), path("v"), quiet(1), csv), 3);
  auto set = ShardSet::open(path("v"));
  EXPECT_EQ(set->spec().sample_shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(set->spec().class_names, csv.class_names);
  EXPECT_TRUE(torch::equal(set->read({0, 1, 2}), torch::tensor({{1.5f, 2.f, 3.f}, {-4.f, 0.5f, 6.f}, {7.f, 8.f, 9.f}})));
  EXPECT_TRUE(torch::equal(set->labels_of({0, 1, 2}), torch::tensor({1, 0, 2}, torch::kInt64)));
  std::ofstream(path("bad.csv")) << "1,2\n3,x\n";
  expect_user_error([&] { convert_csv(path("bad.csv"), path("b"), quiet(1)); }, {path("bad.csv") + ":2", "'x'"});
  std::ofstream(path("ragged.csv")) << "1,2\n3\n";
  expect_user_error([&] { convert_csv(path("ragged.csv"), path("b"), quiet(1)); }, {path("ragged.csv") + ":2", "1 columns, expected 2"});
  std::ofstream(path("hdr.csv")) << "a,b\n1,2\n";
  expect_user_error([&] { convert_csv(path("hdr.csv"), path("b"), quiet(1)); }, {"--csv_header"});
  std::ofstream(path("empty.csv")) << "\n";
  expect_user_error([&] { convert_csv(path("empty.csv"), path("b"), quiet(1)); }, {path("empty.csv"), "empty"});
  csv.header = false;
  csv.label_column = 1;
  csv.class_names = {};
  std::ofstream(path("neg.csv")) << "1,-1\n";
  expect_user_error([&] { convert_csv(path("neg.csv"), path("b"), quiet(1), csv); }, {path("neg.csv") + ":1", "label '-1'"});
  expect_user_error([&] { convert_csv(path("missing.csv"), path("b"), quiet(1)); }, {path("missing.csv")});
}

// Writes an IDX file (optionally gzip-compressed) with the given magic, dims and bytes.
void write_idx(const std::string& file, uint32_t magic, std::vector<uint32_t> dims, const std::vector<uint8_t>& bytes, bool gz) {
  std::vector<uint8_t> all;
  auto be = [&](uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) all.push_back(static_cast<uint8_t>(v >> s));
  };
  be(magic);
  for (uint32_t d : dims) be(d);
  all.insert(all.end(), bytes.begin(), bytes.end());
  if (gz) {
    gzFile f = gzopen(file.c_str(), "wb");
    gzwrite(f, all.data(), static_cast<unsigned>(all.size()));
    gzclose(f);
  } else {
    std::ofstream(file, std::ios::binary).write(reinterpret_cast<const char*>(all.data()), static_cast<std::streamsize>(all.size()));
  }
}

TEST_F(DataTest, IdxRoundTripRawAndGzip) {
  const int n = 37, h = 6, w = 5;
  std::vector<uint8_t> px(n * h * w), lab(n);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 7 + 3);
  for (int i = 0; i < n; ++i) lab[i] = static_cast<uint8_t>((i * 3) % 4);
  for (bool gz : {false, true}) {
    const std::string sfx = gz ? ".gz" : "";
    write_idx(path("img" + sfx), 0x803, {n, h, w}, px, gz);
    write_idx(path("lab" + sfx), 0x801, {n}, lab, gz);
    const std::string out = path(gz ? "idx_gz" : "idx_raw");
    EXPECT_EQ(convert_idx(path("img" + sfx), path("lab" + sfx), out, quiet(4)), n);
    auto set = ShardSet::open(out);
    EXPECT_EQ(set->spec().kind, SampleKind::kImage);
    EXPECT_EQ(set->spec().sample_shape, (std::vector<int64_t>{h, w, 1}));
    EXPECT_EQ(set->spec().num_classes, 4);
    std::vector<int64_t> all(n);
    for (int i = 0; i < n; ++i) all[i] = i;
    torch::Tensor want = torch::from_blob(px.data(), {n, h, w, 1}, torch::kUInt8);
    EXPECT_TRUE(torch::equal(set->read_stored(all), want));
    EXPECT_TRUE(torch::equal(set->labels_of(all), torch::from_blob(lab.data(), {n}, torch::kUInt8).to(torch::kInt64)));
  }
  // Unlabelled conversion.
  convert_idx(path("img"), "", path("nolab"), quiet(1));
  EXPECT_FALSE(ShardSet::open(path("nolab"))->labelled());
  // Errors name the file.
  write_idx(path("wrongmagic"), 0x802, {n, h, w}, px, false);
  expect_user_error([&] { convert_idx(path("wrongmagic"), "", path("x"), quiet(1)); }, {path("wrongmagic"), "magic"});
  write_idx(path("short"), 0x803, {n, h, w}, std::vector<uint8_t>(px.begin(), px.begin() + 100), false);
  expect_user_error([&] { convert_idx(path("short"), "", path("x"), quiet(1)); }, {path("short"), "ends early"});
  write_idx(path("fewlabels"), 0x801, {n - 1}, std::vector<uint8_t>(lab.begin(), lab.end() - 1), false);
  expect_user_error([&] { convert_idx(path("img"), path("fewlabels"), path("x"), quiet(1)); }, {path("fewlabels"), "36 labels"});
  expect_user_error([&] { convert_idx(path("nothere"), "", path("x"), quiet(1)); }, {path("nothere"), "no such file"});
  expect_user_error([&] { convert_idx(path("img"), path("lab"), path("x"), quiet(1), {"a", "b"}); }, {"2 class names"});
  EXPECT_FALSE(fs::exists(path("x")));
}

TEST_F(DataTest, ImageFolderRoundTrip) {
  auto make = [&](const std::string& cls, int i, int wdt, int ch) {
    Image img;
    img.width = wdt;
    img.height = 4;
    img.channels = ch;
    img.pixels.resize(static_cast<size_t>(wdt * 4 * ch));
    for (size_t k = 0; k < img.pixels.size(); ++k) img.pixels[k] = static_cast<uint8_t>(k * 11 + i * 29);
    fs::create_directories(path("imgs/" + cls));
    write_png(path("imgs/" + cls + "/" + std::to_string(i) + ".png"), img);
    return img;
  };
  std::vector<Image> imgs{make("bird", 0, 3, 3), make("bird", 1, 3, 3), make("ant", 2, 3, 3)};
  make("zebra", 3, 3, 1);  // gray, converted to RGB
  EXPECT_EQ(convert_image_folder(path("imgs"), path("out"), quiet(2)), 4);
  auto set = ShardSet::open(path("out"));
  EXPECT_EQ(set->spec().class_names, (std::vector<std::string>{"ant", "bird", "zebra"}));
  EXPECT_EQ(set->spec().sample_shape, (std::vector<int64_t>{4, 3, 3}));
  // Order: classes sorted, files sorted within a class.
  EXPECT_TRUE(torch::equal(set->labels_of({0, 1, 2, 3}), torch::tensor({0, 1, 1, 2}, torch::kInt64)));
  torch::Tensor first = set->read_stored({0});
  EXPECT_EQ(std::vector<uint8_t>(first.data_ptr<uint8_t>(), first.data_ptr<uint8_t>() + 36), imgs[2].pixels);
  torch::Tensor gray = set->read_stored({3});
  EXPECT_EQ(gray[0][1][2][0].item<uint8_t>(), gray[0][1][2][2].item<uint8_t>());
  make("bird", 9, 5, 3);
  expect_user_error([&] { convert_image_folder(path("imgs"), path("out2"), quiet(1)); }, {"9.png", "5x4 pixels, expected 3x4"});
  expect_user_error([&] { convert_image_folder(path("none"), path("out2"), quiet(1)); }, {path("none"), "no such folder"});
}

// ---- the per-step draw ---------------------------------------------------------------------

StepRequest request(uint64_t step, std::vector<int64_t> classes, int64_t p, int64_t u) {
  StepRequest r;
  r.step = step;
  r.classes = std::move(classes);
  r.pos_per_class = p;
  r.unc_per_class = u;
  return r;
}

TEST_F(DataTest, SlicesOfAnyWorldSizeConcatenateToTheSameBatch) {
  write_tensor_set(path("t"), 240, 6, 3, 16);
  auto set = ShardSet::open(path("t"));
  for (uint64_t step : {0, 1, 17}) {
    // 4 slots x 5 positives = 20 rows, 4 x 2 = 8 unconditional: not divisible by 3 on purpose.
    const StepRequest req = request(step, {3, 0, 5, 3}, 5, 2);
    const StepBatch one = load_step(*set, 42, req, 0, 1);
    ASSERT_EQ(one.positives.size(0), 20);
    ASSERT_EQ(one.unconditional.size(0), 8);
    for (int world : {2, 3}) {
      std::vector<torch::Tensor> pos, pl, unc, ul;
      int64_t expect_offset = 0;
      for (int r = 0; r < world; ++r) {
        const StepBatch b = load_step(*set, 42, req, r, world);
        EXPECT_EQ(b.pos_offset, expect_offset);
        expect_offset += b.positives.size(0);
        EXPECT_EQ(b.pos_total, 20);
        pos.push_back(b.positives);
        pl.push_back(b.pos_labels);
        unc.push_back(b.unconditional);
        ul.push_back(b.unc_labels);
      }
      EXPECT_TRUE(torch::equal(torch::cat(pos), one.positives)) << "W=" << world << " step " << step;
      EXPECT_TRUE(torch::equal(torch::cat(pl), one.pos_labels));
      EXPECT_TRUE(torch::equal(torch::cat(unc), one.unconditional));
      EXPECT_TRUE(torch::equal(torch::cat(ul), one.unc_labels));
    }
  }
  EXPECT_EQ(rank_slice(20, 0, 3).first, 0);
  EXPECT_EQ(rank_slice(20, 1, 3).first, 7);
  EXPECT_EQ(rank_slice(20, 2, 3).first, 14);
  EXPECT_EQ(rank_slice(20, 2, 3).second, 20);
}

TEST_F(DataTest, ClassConditionalDraws) {
  write_tensor_set(path("t"), 300, 6, 2, 16);
  auto set = ShardSet::open(path("t"));
  const StepRequest req = request(5, {2, 4, 2, kAnyClass}, 30, 40);
  const StepIndices a = draw_step_indices(*set, 9, req);
  ASSERT_EQ(a.positives.size(), 120u);
  ASSERT_EQ(a.unconditional.size(), 160u);
  for (size_t slot = 0; slot < 3; ++slot) {
    std::set<int64_t> distinct;
    for (size_t k = 0; k < 30; ++k) {
      const int64_t g = a.positives[slot * 30 + k];
      EXPECT_EQ(set->label(g), req.classes[slot]) << "slot " << slot;
      distinct.insert(g);
    }
    EXPECT_EQ(distinct.size(), 30u) << "positives of one slot are distinct when the class is large enough";
  }
  // Two slots of the same class draw different positives; labels of the loaded batch agree.
  EXPECT_NE(std::vector<int64_t>(a.positives.begin(), a.positives.begin() + 30),
            std::vector<int64_t>(a.positives.begin() + 60, a.positives.begin() + 90));
  const StepBatch b = load_step(*set, 9, req, 0, 1);
  EXPECT_TRUE((b.pos_labels.narrow(0, 0, 30) == 2).all().item<bool>());
  EXPECT_TRUE((b.pos_labels.narrow(0, 30, 30) == 4).all().item<bool>());
  // Unconditional draws cover several classes (they stand for p(x)).
  std::set<int32_t> unc_classes;
  for (int64_t g : a.unconditional) unc_classes.insert(set->label(g));
  EXPECT_GE(unc_classes.size(), 5u);
  // A pure function of (seed, step, request); other steps and seeds differ.
  EXPECT_EQ(draw_step_indices(*set, 9, req).positives, a.positives);
  EXPECT_NE(draw_step_indices(*set, 9, request(6, req.classes, 30, 40)).positives, a.positives);
  EXPECT_NE(draw_step_indices(*set, 10, req).unconditional, a.unconditional);
  // More positives than the class holds: with replacement, still only that class.
  const StepIndices big = draw_step_indices(*set, 1, request(0, {1}, 80, 0));
  for (int64_t g : big.positives) EXPECT_EQ(set->label(g), 1);
  expect_user_error([&] { draw_step_indices(*set, 1, request(0, {6}, 1, 0)); }, {path("t"), "class 6 out of range [0, 6)"});
}

TEST_F(DataTest, ClassWithoutSamplesIsAnError) {
  DatasetWriter w(path("t"), float_spec(SampleKind::kPoints, {2}, 3, {"a", "b", "c"}), 4, quiet(1));
  w.append(torch::zeros({4, 2}), torch::tensor({0, 2, 0, 2}));
  w.finish();
  auto set = ShardSet::open(path("t"));
  expect_user_error([&] { draw_step_indices(*set, 0, request(3, {0, 1}, 2, 1)); },
                    {path("t"), "class 1 (b) has no samples", "step 3"});
  // Unlabelled sets accept only kAnyClass.
  write_toy("swissroll", 30, 0, false, path("s"), quiet(1));
  auto unl = ShardSet::open(path("s"));
  EXPECT_EQ(draw_step_indices(*unl, 0, request(0, {kAnyClass}, 10, 0)).positives.size(), 10u);
  expect_user_error([&] { draw_step_indices(*unl, 0, request(0, {0}, 1, 0)); }, {"has no labels"});
}

TEST_F(DataTest, PrefetchLoaderMatchesSynchronousLoadsOnEveryRank) {
  write_tensor_set(path("t"), 200, 4, 3, 8);
  std::shared_ptr<const ShardSet> set = ShardSet::open(path("t"));
  auto plan = [](uint64_t t) {
    // Classes chosen per step, as the trainer would (a pure function of t).
    return request(t, {static_cast<int64_t>(t % 4), static_cast<int64_t>((t + 1) % 4)}, 6, 3);
  };
  const int world = 3;
  std::vector<std::vector<StepBatch>> got(world);
  std::vector<std::thread> ranks;
  for (int r = 0; r < world; ++r) {
    ranks.emplace_back([&, r] {
      LoaderOptions o;
      o.seed = 77;
      o.rank = r;
      o.world = world;
      o.depth = 2;
      o.first_step = 10;
      PrefetchLoader loader(set, o, plan);
      for (int i = 0; i < 6; ++i) got[r].push_back(loader.next());
    });
  }
  for (auto& t : ranks) t.join();
  for (int i = 0; i < 6; ++i) {
    const StepBatch one = load_step(*set, 77, plan(10 + i), 0, 1);
    std::vector<torch::Tensor> pos, unc;
    for (int r = 0; r < world; ++r) {
      EXPECT_EQ(got[r][i].step, 10u + i);
      pos.push_back(got[r][i].positives);
      unc.push_back(got[r][i].unconditional);
    }
    EXPECT_TRUE(torch::equal(torch::cat(pos), one.positives)) << "step " << 10 + i;
    EXPECT_TRUE(torch::equal(torch::cat(unc), one.unconditional));
  }
}

TEST_F(DataTest, PrefetchLoaderReportsErrorsAtTheirStep) {
  DatasetWriter w(path("t"), float_spec(SampleKind::kPoints, {2}, 2), 4, quiet(1));
  w.append(torch::zeros({4, 2}), torch::tensor({0, 0, 0, 0}));
  w.finish();
  std::shared_ptr<const ShardSet> set = ShardSet::open(path("t"));
  LoaderOptions o;
  o.depth = 3;
  PrefetchLoader loader(set, o, [](uint64_t t) { return request(t, {t == 2 ? 1 : 0}, 2, 0); });
  EXPECT_EQ(loader.next().step, 0u);
  EXPECT_EQ(loader.next().step, 1u);
  expect_user_error([&] { loader.next(); }, {"class 1 has no samples", "step 2"});
  expect_user_error([&] { loader.next(); }, {"class 1 has no samples"});
  EXPECT_EQ(loader.next_step(), 2u);
}

// ---- bad shards ----------------------------------------------------------------------------

void overwrite_bytes(const std::string& file, std::streamoff at, const std::string& bytes) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(at);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TEST_F(DataTest, BadShardsGiveErrorsNamingTheFile) {
  auto fresh = [&](const std::string& name, int shards = 2) {
    fs::remove_all(path(name));
    // Random-looking image data so the data chunks fill the middle of each file.
    torch::Tensor x = torch::randint(0, 256, {2000, 16, 16, 1}, torch::kUInt8);
    DatasetWriter w(path(name), image_spec(16, 16, 1, 10), 2000, quiet(shards));
    w.append(x, torch::arange(2000).remainder(10));
    w.finish();
    return path(name);
  };
  const std::string s0 = "/shard-00000-of-00002.h5", s1 = "/shard-00001-of-00002.h5";

  // Missing shard.
  std::string d = fresh("missing");
  fs::remove(d + s1);
  expect_user_error([&] { ShardSet::open(d); }, {"shard 1 of 2 is missing", "shard-00001-of-00002.h5"});
  // Truncated shard.
  d = fresh("truncated");
  fs::resize_file(d + s1, fs::file_size(d + s1) / 2);
  expect_user_error([&] { ShardSet::open(d); }, {d + s1, "cannot open as an HDF5 file"});
  // Zero-length shard.
  d = fresh("zero");
  fs::resize_file(d + s0, 0);
  expect_user_error([&] { ShardSet::open(d); }, {d + s0, "empty"});
  // Garbage over the superblock.
  d = fresh("header");
  overwrite_bytes(d + s0, 0, std::string(64, 'x'));
  expect_user_error([&] { ShardSet::open(d); }, {d + s0, "cannot open"});
  // Flipped bytes inside the sample data: caught by the chunk checksums on read.
  d = fresh("flipped");
  overwrite_bytes(d + s1, static_cast<std::streamoff>(fs::file_size(d + s1) / 2), std::string(256, '\x5a'));
  auto set = ShardSet::open(d);
  expect_user_error([&] { set->validate_all(false); }, {d + s1, "corrupt"});
  std::vector<int64_t> all(2000);
  for (int i = 0; i < 2000; ++i) all[static_cast<size_t>(i)] = i;
  expect_user_error([&] { set->read(all); }, {d + s1, "corrupt"});
  // Shards of two different data sets mixed.
  d = fresh("mixa");
  const std::string other = fresh("mixb");
  fs::copy_file(other + s1, d + s1, fs::copy_options::overwrite_existing);
  expect_user_error([&] { ShardSet::open(d); }, {d + s1, "disagrees with", "dataset_id"});
  // A shard that disagrees on shape (another data set's shard renamed in).
  d = fresh("shape");
  write_toy("moons", 10, 0, false, path("tiny"), quiet(2));
  fs::copy_file(path("tiny") + s1, d + s1, fs::copy_options::overwrite_existing);
  expect_user_error([&] { ShardSet::open(d); }, {d + s1, "disagrees with"});
  // The same shard twice.
  d = fresh("dup");
  fs::copy_file(d + s0, d + "/shard-00000-copy.h5");
  expect_user_error([&] { ShardSet::open(d); }, {"are both shard 0"});
  // A label out of range, written behind the writer's back.
  d = fresh("labels");
  {
    hid_t f = H5Fopen((d + s0).c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(f, 0);
    hid_t ds = H5Dopen2(f, "labels", H5P_DEFAULT);
    hid_t fsp = H5Dget_space(ds);
    hsize_t start = 5, count = 1;
    H5Sselect_hyperslab(fsp, H5S_SELECT_SET, &start, nullptr, &count, nullptr);
    hid_t msp = H5Screate_simple(1, &count, nullptr);
    int32_t v = 12;
    H5Dwrite(ds, H5T_NATIVE_INT32, msp, fsp, H5P_DEFAULT, &v);
    H5Sclose(msp);
    H5Sclose(fsp);
    H5Dclose(ds);
    H5Fclose(f);
  }
  expect_user_error([&] { ShardSet::open(d); }, {d + s0, "label 12 at row 5 is out of range [0, 10)"});
  // Not a driftlab shard at all.
  fs::create_directories(path("foreign"));
  {
    hid_t f = H5Fcreate(path("foreign/x.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(f);
  }
  expect_user_error([&] { ShardSet::open(path("foreign")); }, {path("foreign/x.h5"), "attribute 'schema' is missing"});
  // Empty data sets and missing paths.
  fs::create_directories(path("empty"));
  expect_user_error([&] { ShardSet::open(path("empty")); }, {path("empty"), "empty"});
  expect_user_error([&] { ShardSet::open(path("nowhere")); }, {path("nowhere"), "no such file or folder"});
  expect_user_error([&] { ShardSet::open(path("nowhere/*.h5")); }, {"matches no file"});
}

// ---- real MNIST ----------------------------------------------------------------------------

std::string mnist_dir() {
  if (const char* env = std::getenv("DRIFTLAB_MNIST_DIR")) return env;
  return std::string(DRIFTLAB_SOURCE_DIR) + "/.cache/data/mnist";
}

TEST_F(DataTest, RealMnistRoundTrip) {
  const std::string m = mnist_dir();
  const std::string images = m + "/t10k-images-idx3-ubyte", labels = m + "/t10k-labels-idx1-ubyte";
  if (!fs::exists(images) || !fs::exists(labels)) GTEST_SKIP() << "MNIST not found in " << m << " (set DRIFTLAB_MNIST_DIR)";
  EXPECT_EQ(convert_idx(images, labels, path("mnist"), quiet(3), preset_class_names("mnist")), 10000);
  auto set = ShardSet::open(path("mnist"));
  EXPECT_EQ(set->size(), 10000);
  EXPECT_EQ(set->spec().decoded_shape(), (std::vector<int64_t>{1, 28, 28}));
  auto counts = set->class_counts();
  EXPECT_EQ(std::accumulate(counts.begin(), counts.end(), int64_t{0}), 10000);
  for (int64_t c : counts) EXPECT_GT(c, 800);  // every digit is well represented in t10k
  // Compare against the raw bytes of the IDX files.
  std::ifstream fi(images, std::ios::binary), fl(labels, std::ios::binary);
  std::vector<char> raw((std::istreambuf_iterator<char>(fi)), {}), rawl((std::istreambuf_iterator<char>(fl)), {});
  ASSERT_EQ(raw.size(), 16u + 10000u * 784u);
  for (int64_t i : {0, 1, 3333, 3334, 6666, 6667, 9999}) {
    torch::Tensor s = set->read_stored({i});
    EXPECT_EQ(std::memcmp(s.data_ptr<uint8_t>(), raw.data() + 16 + i * 784, 784), 0) << "sample " << i;
    EXPECT_EQ(set->label(i), static_cast<uint8_t>(rawl[static_cast<size_t>(8 + i)]));
  }
  torch::Tensor x = set->read({0, 1, 2});
  EXPECT_GE(x.min().item<float>(), -1.f);
  EXPECT_LE(x.max().item<float>(), 1.f);
  const auto range = set->validate_all(false);
  EXPECT_EQ(range.first, 0);
  EXPECT_EQ(range.second, 255);
  // A class-conditional step over real digits returns only that digit.
  const StepBatch b = load_step(*set, 3, request(0, {7, 1}, 16, 4), 0, 1);
  EXPECT_TRUE((b.pos_labels.narrow(0, 0, 16) == 7).all().item<bool>());
  EXPECT_TRUE((b.pos_labels.narrow(0, 16, 16) == 1).all().item<bool>());
}

}  // namespace
}  // namespace driftlab::data
