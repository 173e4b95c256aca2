// IDX, PNG-folder, CSV and toy converters (see converters.h).
#include "data/converters.h"

#include <glog/logging.h>
#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "common/check.h"
#include "common/image.h"
#include "common/rng.h"
#include "data/idx.h"

namespace driftlab::data {
namespace fs = std::filesystem;

namespace {

constexpr double kPi = 3.14159265358979323846;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Converts interleaved pixels from `from` to `to` channels (1 luma, 3 RGB, 4 RGBA).
void convert_channels(const Image& img, int to, uint8_t* out) {
  const int from = img.channels;
  const size_t n = static_cast<size_t>(img.width) * img.height;
  for (size_t p = 0; p < n; ++p) {
    const uint8_t* s = img.pixels.data() + p * from;
    uint8_t r = s[0], g = from >= 3 ? s[1] : s[0], b = from >= 3 ? s[2] : s[0];
    uint8_t a = from == 4 ? s[3] : 255;
    if (from == 2) a = s[1];
    uint8_t* d = out + p * to;
    if (to == 1) {
      d[0] = static_cast<uint8_t>(std::lround(0.299 * r + 0.587 * g + 0.114 * b));
    } else {
      d[0] = r;
      d[1] = g;
      d[2] = b;
      if (to == 4) d[3] = a;
    }
  }
}

// "unequal": six Gaussian modes at irregular places, with unequal weights and spreads
// (x, y, std); mode k has weight kUnequalWeights[k].
constexpr double kUnequalModes[6][3] = {{-2.5, 1.0, 0.20}, {1.5, 2.0, 0.15}, {2.5, -1.0, 0.25},
                                        {-0.5, -2.5, 0.10}, {-2.5, -2.0, 0.12}, {0.5, 0.2, 0.08}};
constexpr double kUnequalWeights[6] = {0.35, 0.25, 0.15, 0.12, 0.08, 0.05};
// "separated": four Gaussian modes far apart relative to their spreads (5 to 11 apart at std
// 0.15 .. 0.3), unequal weights: a generator that starts near one mode must reach the others.
constexpr double kSeparatedModes[4][3] = {{-6.0, 1.0, 0.25}, {3.0, 5.0, 0.20}, {4.0, -4.0, 0.30}, {-2.0, -7.0, 0.15}};
constexpr double kSeparatedWeights[4] = {0.45, 0.30, 0.15, 0.10};
// "nested": a ring of radius 2 (mode 0, 80% of the mass) around a small Gaussian core (mode 1).
constexpr double kNestedCoreWeight = 0.2;

template <size_t M>
int64_t weighted_mode(double u, const double (&w)[M]) {
  double acc = 0;
  for (size_t k = 0; k + 1 < M; ++k)
    if (u < (acc += w[k])) return static_cast<int64_t>(k);
  return static_cast<int64_t>(M - 1);
}

int64_t modes_or_fail(const std::string& name) {
  const auto names = toy_names();
  DL_REQUIRE(std::find(names.begin(), names.end(), name) != names.end(),
             "unknown toy data set '" << name << "' (expected one of checkerboard, swissroll, 8gaussians, "
                                      << "25gaussians, moons, rings, bimodal, unequal, separated, nested)");
  return toy_num_modes(name);
}

}  // namespace

std::vector<std::string> preset_class_names(const std::string& name) {
  if (name == "mnist") return {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
  if (name == "fashion-mnist")
    return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
  return {};
}

int64_t convert_idx(const std::string& images_path, const std::string& labels_path, const std::string& out,
                    const WriteOptions& options, std::vector<std::string> class_names) {
  IdxFile img(images_path, 3);
  const int64_t n = img.dims()[0], h = img.dims()[1], w = img.dims()[2];
  std::vector<int32_t> labels;
  int64_t num_classes = 0;
  if (!labels_path.empty()) {
    IdxFile lab(labels_path, 1);
    const int64_t ln = lab.dims()[0];
    DL_REQUIRE(ln == n, labels_path << ": " << ln << " labels for the " << n << " images of " << images_path);
    std::vector<uint8_t> raw(static_cast<size_t>(n));
    lab.read(raw.data(), raw.size(), "the labels");
    labels.assign(raw.begin(), raw.end());
    num_classes = *std::max_element(labels.begin(), labels.end()) + 1;
    num_classes = std::max<int64_t>(num_classes, static_cast<int64_t>(class_names.size()));
    DL_REQUIRE(class_names.empty() || static_cast<int64_t>(class_names.size()) == num_classes,
               labels_path << ": labels go up to " << num_classes - 1 << " but " << class_names.size()
                           << " class names were given");
  } else {
    class_names.clear();
  }
  DatasetSpec spec = image_spec(h, w, 1, num_classes, class_names);
  spec.source = "idx:" + fs::path(images_path).filename().string();
  DatasetWriter writer(out, spec, n, options);
  const int64_t block = 4096;
  std::vector<uint8_t> buf;
  for (int64_t i = 0; i < n; i += block) {
    const int64_t m = std::min(block, n - i);
    buf.resize(static_cast<size_t>(m * h * w));
    img.read(buf.data(), buf.size(), "the images");
    torch::Tensor t = torch::from_blob(buf.data(), {m, h, w, 1}, torch::kUInt8);
    torch::Tensor l;
    if (!labels.empty()) l = torch::from_blob(labels.data() + i, {m}, torch::kInt32);
    writer.append(t, l);
  }
  writer.finish();
  return n;
}

int64_t convert_image_folder(const std::string& folder, const std::string& out, const WriteOptions& options,
                             int channels) {
  std::error_code ec;
  DL_REQUIRE(fs::is_directory(folder, ec), folder << ": no such folder (expected one subfolder per class)");
  std::vector<std::string> classes;
  for (const auto& e : fs::directory_iterator(folder))
    if (e.is_directory() && e.path().filename().string()[0] != '.') classes.push_back(e.path().filename().string());
  std::sort(classes.begin(), classes.end());
  DL_REQUIRE(!classes.empty(), folder << ": holds no class subfolders (expected <folder>/<class>/*.png)");
  std::vector<std::pair<std::string, int32_t>> files;
  for (size_t c = 0; c < classes.size(); ++c) {
    std::vector<std::string> in_class;
    for (const auto& e : fs::directory_iterator(fs::path(folder) / classes[c]))
      if (e.is_regular_file() && lower(e.path().extension().string()) == ".png") in_class.push_back(e.path().string());
    std::sort(in_class.begin(), in_class.end());
    if (in_class.empty()) LOG(WARNING) << folder << "/" << classes[c] << ": no PNG files; class " << c << " will be empty";
    for (auto& f : in_class) files.emplace_back(std::move(f), static_cast<int32_t>(c));
  }
  DL_REQUIRE(!files.empty(), folder << ": no PNG files in any class subfolder; the data set would be empty");
  DL_REQUIRE(channels == 0 || channels == 1 || channels == 3 || channels == 4,
             "--channels=" << channels << " (expected 0, 1, 3 or 4)");
  const Image first = read_png(files.front().first);
  const int ch = channels != 0 ? channels : (first.channels == 2 ? 1 : first.channels);
  const int64_t h = first.height, w = first.width;
  DatasetSpec spec = image_spec(h, w, ch, static_cast<int64_t>(classes.size()), classes);
  spec.source = "png-folder:" + fs::path(folder).filename().string();
  const int64_t n = static_cast<int64_t>(files.size());
  DatasetWriter writer(out, spec, n, options);
  const int64_t block = 1024, px = h * w * ch;
  std::vector<uint8_t> buf;
  std::vector<int32_t> lab;
  for (int64_t i = 0; i < n; i += block) {
    const int64_t m = std::min(block, n - i);
    buf.resize(static_cast<size_t>(m * px));
    lab.resize(static_cast<size_t>(m));
    for (int64_t k = 0; k < m; ++k) {
      const auto& [path, c] = files[static_cast<size_t>(i + k)];
      const Image img = read_png(path);
      DL_REQUIRE(img.height == h && img.width == w,
                 path << ": " << img.width << "x" << img.height << " pixels, expected " << w << "x" << h
                      << " like " << files.front().first << " (resize the images first)");
      convert_channels(img, ch, buf.data() + k * px);
      lab[static_cast<size_t>(k)] = c;
    }
    writer.append(torch::from_blob(buf.data(), {m, h, w, ch}, torch::kUInt8),
                  torch::from_blob(lab.data(), {m}, torch::kInt32));
  }
  writer.finish();
  return n;
}

int64_t convert_csv(const std::string& path, const std::string& out, const WriteOptions& options,
                    const CsvOptions& csv) {
  std::ifstream in(path);
  DL_REQUIRE(in.good(), path << ": cannot open (no such file?)");
  std::vector<float> values;
  std::vector<int32_t> labels;
  int64_t cols = -1, line_no = 0, rows = 0;
  std::string line;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (csv.header && line_no == 1) continue;
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    std::vector<std::string> fields;
    size_t at = 0;
    for (;;) {
      const size_t end = line.find(csv.delimiter, at);
      fields.push_back(line.substr(at, end == std::string::npos ? std::string::npos : end - at));
      if (end == std::string::npos) break;
      at = end + 1;
    }
    if (cols < 0) {
      cols = static_cast<int64_t>(fields.size());
      DL_REQUIRE(csv.label_column < cols, path << ":" << line_no << ": --label_column=" << csv.label_column
                                               << " but the line has " << cols << " columns");
      DL_REQUIRE(cols - (csv.label_column >= 0 ? 1 : 0) >= 1, path << ":" << line_no << ": no value columns");
    }
    DL_REQUIRE(static_cast<int64_t>(fields.size()) == cols,
               path << ":" << line_no << ": " << fields.size() << " columns, expected " << cols << " like the first line");
    for (int64_t c = 0; c < cols; ++c) {
      std::string f = fields[static_cast<size_t>(c)];
      const size_t b = f.find_first_not_of(" \t"), e = f.find_last_not_of(" \t");
      f = b == std::string::npos ? "" : f.substr(b, e - b + 1);
      char* endp = nullptr;
      if (c == csv.label_column) {
        const long long v = std::strtoll(f.c_str(), &endp, 10);
        DL_REQUIRE(!f.empty() && *endp == '\0' && v >= 0 && v < (1ll << 31),
                   path << ":" << line_no << ": label '" << f << "' is not a non-negative integer");
        labels.push_back(static_cast<int32_t>(v));
      } else {
        const double v = std::strtod(f.c_str(), &endp);
        DL_REQUIRE(!f.empty() && *endp == '\0' && std::isfinite(v),
                   path << ":" << line_no << ": column " << c + 1 << " '" << f << "' is not a finite number"
                        << (line_no == 1 && !csv.header ? " (a header line? pass --csv_header)" : ""));
        values.push_back(static_cast<float>(v));
      }
    }
    ++rows;
  }
  DL_REQUIRE(rows > 0, path << ": no data lines; the data set would be empty");
  const int64_t dim = cols - (csv.label_column >= 0 ? 1 : 0);
  int64_t num_classes = 0;
  if (csv.label_column >= 0) {
    const int64_t max_label = *std::max_element(labels.begin(), labels.end());
    num_classes = csv.num_classes > 0 ? csv.num_classes
                                      : std::max<int64_t>(max_label + 1, static_cast<int64_t>(csv.class_names.size()));
    DL_REQUIRE(max_label < num_classes, path << ": label " << max_label << " is out of range [0, " << num_classes
                                             << ") (--num_classes)");
  }
  DatasetSpec spec = float_spec(SampleKind::kPoints, {dim}, num_classes, num_classes > 0 ? csv.class_names : std::vector<std::string>{});
  spec.source = "csv:" + fs::path(path).filename().string();
  spec.validate(path);
  DatasetWriter writer(out, spec, rows, options);
  torch::Tensor l;
  if (num_classes > 0) l = torch::from_blob(labels.data(), {rows}, torch::kInt32);
  writer.append(torch::from_blob(values.data(), {rows, dim}, torch::kFloat32), l);
  writer.finish();
  return rows;
}

std::vector<std::string> toy_names() {
  return {"checkerboard", "swissroll", "8gaussians", "25gaussians", "moons",
          "rings",        "bimodal",   "unequal",    "separated",   "nested"};
}

int64_t toy_num_modes(const std::string& name) {
  if (name == "checkerboard" || name == "8gaussians") return 8;
  if (name == "25gaussians") return 25;
  if (name == "moons" || name == "bimodal") return 2;
  if (name == "rings") return 3;
  if (name == "unequal") return 6;
  if (name == "separated") return 4;
  if (name == "nested") return 2;
  return 0;
}

torch::Tensor toy_points(const std::string& name, int64_t n, uint64_t seed, std::vector<int32_t>* labels,
                         int64_t first) {
  const int64_t modes = modes_or_fail(name);
  DL_REQUIRE(n > 0 && first >= 0 && first + n <= (1ll << 32),
             "toy " << name << ": --num=" << first + n << " (expected 1 .. 2^32)");
  torch::Tensor out = torch::empty({n, 2}, torch::kFloat32);
  float* p = out.data_ptr<float>();
  if (labels) labels->assign(static_cast<size_t>(n), 0);
  for (int64_t i = 0; i < n; ++i) {
    rng::Draw d(rng::Key{seed, rng::Stream::kToyData, 0, static_cast<uint64_t>(first + i)});
    int64_t k = 0;
    if (name == "unequal") {
      k = weighted_mode(d.uniform(), kUnequalWeights);
    } else if (name == "separated") {
      k = weighted_mode(d.uniform(), kSeparatedWeights);
    } else if (name == "nested") {
      k = d.uniform() < kNestedCoreWeight ? 1 : 0;
    } else if (modes > 0) {
      k = static_cast<int64_t>(d.below(static_cast<uint64_t>(modes)));
    }
    double x = 0, y = 0;
    if (name == "checkerboard") {
      // The 8 dark squares of a 4x4 board on [-2, 2]^2: those with ix + iy even.
      const int64_t iy = k / 2, ix = 2 * (k % 2) + (iy % 2);
      x = -2.0 + ix + d.uniform();
      y = -2.0 + iy + d.uniform();
    } else if (name == "swissroll") {
      const double t = 1.5 * kPi * (1.0 + 2.0 * d.uniform());
      x = t * std::cos(t) / 7.0 + 0.05 * d.normal();
      y = t * std::sin(t) / 7.0 + 0.05 * d.normal();
    } else if (name == "8gaussians") {
      x = 2.0 * std::cos(2 * kPi * k / 8) + 0.1 * d.normal();
      y = 2.0 * std::sin(2 * kPi * k / 8) + 0.1 * d.normal();
    } else if (name == "25gaussians") {
      x = static_cast<double>(k % 5 - 2) + 0.05 * d.normal();
      y = static_cast<double>(k / 5 - 2) + 0.05 * d.normal();
    } else if (name == "moons") {
      const double th = kPi * d.uniform();
      x = (k == 0 ? std::cos(th) : 1.0 - std::cos(th)) - 0.5 + 0.05 * d.normal();
      y = (k == 0 ? std::sin(th) : 0.5 - std::sin(th)) - 0.25 + 0.05 * d.normal();
    } else if (name == "rings") {
      const double r = 0.6 * (k + 1), th = 2 * kPi * d.uniform();
      x = r * std::cos(th) + 0.03 * d.normal();
      y = r * std::sin(th) + 0.03 * d.normal();
    } else if (name == "unequal") {
      x = kUnequalModes[k][0] + kUnequalModes[k][2] * d.normal();
      y = kUnequalModes[k][1] + kUnequalModes[k][2] * d.normal();
    } else if (name == "separated") {
      x = kSeparatedModes[k][0] + kSeparatedModes[k][2] * d.normal();
      y = kSeparatedModes[k][1] + kSeparatedModes[k][2] * d.normal();
    } else if (name == "nested") {
      if (k == 1) {  // the core
        x = 0.15 * d.normal();
        y = 0.15 * d.normal();
      } else {  // the outer ring
        const double th = 2 * kPi * d.uniform();
        x = 2.0 * std::cos(th) + 0.05 * d.normal();
        y = 2.0 * std::sin(th) + 0.05 * d.normal();
      }
    } else {  // bimodal
      x = (k == 0 ? -1.5 : 1.5) + 0.4 * d.normal();
      y = 0.4 * d.normal();
    }
    p[2 * i] = static_cast<float>(x);
    p[2 * i + 1] = static_cast<float>(y);
    if (labels) (*labels)[static_cast<size_t>(i)] = static_cast<int32_t>(k);
  }
  return out;
}

int64_t write_toy(const std::string& name, int64_t n, uint64_t seed, bool with_labels, const std::string& out,
                  const WriteOptions& options) {
  const int64_t modes = modes_or_fail(name);
  DL_REQUIRE(!with_labels || modes > 0, "toy " << name << " has no modes to label; drop --labels");
  DatasetSpec spec = float_spec(SampleKind::kPoints, {2}, with_labels ? modes : 0);
  spec.source = "toy:" + name + " seed=" + std::to_string(seed);
  DatasetWriter writer(out, spec, n, options);
  const int64_t block = 1 << 16;
  for (int64_t i = 0; i < n; i += block) {
    const int64_t m = std::min(block, n - i);
    std::vector<int32_t> lab;
    torch::Tensor pts = toy_points(name, m, seed, with_labels ? &lab : nullptr, i);
    torch::Tensor l;
    if (with_labels) l = torch::from_blob(lab.data(), {m}, torch::kInt32);
    writer.append(pts, l);
  }
  writer.finish();
  return n;
}

}  // namespace driftlab::data
