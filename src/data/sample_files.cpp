// PNG folders and .npz archives of samples, and reading any sample set by index (see sample_files.h).
#include "data/sample_files.h"

#include <glog/logging.h>
#include <zip.h>

#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "common/check.h"
#include "common/fileio.h"
#include "common/image.h"
#include "common/text.h"
#include "data/reader.h"

namespace driftlab::data {
namespace fs = std::filesystem;

namespace {

constexpr const char* kClassList = "class_names.txt";
constexpr int64_t kBlockRows = 1024;  // rows per block when streaming an archive

std::string npy_descr(const DatasetSpec& spec) { return spec.kind == SampleKind::kImage ? "|u1" : "<f4"; }

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// ---- the zip member streamed from a RowSource ----
struct NpyStream {
  std::string header;
  int64_t rows = 0, row_bytes = 0;
  const RowSource* source = nullptr;
  bool want_labels = false;  // stream the labels member instead of arr_0
  const std::vector<int64_t>* labels = nullptr;
  // state
  uint64_t pos = 0, size = 0;
  int64_t block_first = -1, block_rows = 0;
  torch::Tensor block;
  zip_error_t error{};

  void fill_block(int64_t row) {
    block_first = row / kBlockRows * kBlockRows;
    block_rows = std::min(kBlockRows, rows - block_first);
    auto [stored, lab] = (*source)(block_first, block_rows);
    block = stored.contiguous();
    DL_CHECK(block.size(0) == block_rows && block.nbytes() == static_cast<size_t>(block_rows * row_bytes),
             "npz row source returned " << block.sizes() << " for rows " << block_first << "+" << block_rows);
  }

  int64_t read(uint8_t* out, uint64_t len) {
    uint64_t done = 0;
    while (done < len && pos < size) {
      if (pos < header.size()) {
        const uint64_t n = std::min<uint64_t>(len - done, header.size() - pos);
        std::memcpy(out + done, header.data() + pos, n);
        pos += n;
        done += n;
        continue;
      }
      const uint64_t at = pos - header.size();
      const int64_t row = static_cast<int64_t>(at / row_bytes);
      if (row < block_first || row >= block_first + block_rows) fill_block(row);
      const uint64_t in_block = at - static_cast<uint64_t>(block_first * row_bytes);
      const uint64_t n = std::min<uint64_t>(len - done, block.nbytes() - in_block);
      std::memcpy(out + done, static_cast<const uint8_t*>(block.data_ptr()) + in_block, n);
      pos += n;
      done += n;
    }
    return static_cast<int64_t>(done);
  }
};

zip_int64_t npy_callback(void* ud, void* data, zip_uint64_t len, zip_source_cmd_t cmd) {
  auto* s = static_cast<NpyStream*>(ud);
  switch (cmd) {
    case ZIP_SOURCE_OPEN:
      s->pos = 0;
      s->block_first = -1;
      s->block_rows = 0;
      return 0;
    case ZIP_SOURCE_READ:
      try {
        return s->read(static_cast<uint8_t*>(data), len);
      } catch (const std::exception& e) {
        LOG(ERROR) << "npz: " << e.what();
        zip_error_set(&s->error, ZIP_ER_READ, EIO);
        return -1;
      }
    case ZIP_SOURCE_CLOSE:
      s->block = torch::Tensor();
      return 0;
    case ZIP_SOURCE_STAT: {
      auto* st = static_cast<zip_stat_t*>(data);
      zip_stat_init(st);
      st->size = s->size;
      st->mtime = 315532800 + 86400 * 366;  // a fixed time (1981): the same rows give the same archive
      st->valid |= ZIP_STAT_SIZE | ZIP_STAT_MTIME;
      return sizeof(*st);
    }
    case ZIP_SOURCE_ERROR:
      return zip_error_to_data(&s->error, data, len);
    case ZIP_SOURCE_FREE:
      return 0;
    case ZIP_SOURCE_SUPPORTS:
      return zip_source_make_command_bitmap(ZIP_SOURCE_OPEN, ZIP_SOURCE_READ, ZIP_SOURCE_CLOSE, ZIP_SOURCE_STAT,
                                            ZIP_SOURCE_ERROR, ZIP_SOURCE_FREE, -1);
    default:
      zip_error_set(&s->error, ZIP_ER_OPNOTSUPP, 0);
      return -1;
  }
}

void add_member(zip_t* za, const std::string& path, const char* name, NpyStream& stream) {
  zip_source_t* src = zip_source_function(za, npy_callback, &stream);
  DL_REQUIRE(src, path << ": cannot create a zip source: " << zip_strerror(za));
  const zip_int64_t idx = zip_file_add(za, name, src, ZIP_FL_OVERWRITE | ZIP_FL_ENC_UTF_8);
  if (idx < 0) {
    zip_source_free(src);
    throw UserError(path + ": cannot add " + name + ": " + zip_strerror(za));
  }
  DL_REQUIRE(zip_set_file_compression(za, static_cast<zip_uint64_t>(idx), ZIP_CM_STORE, 0) == 0,
             path << ": cannot store " << name << " uncompressed: " << zip_strerror(za));
  zip_file_set_mtime(za, static_cast<zip_uint64_t>(idx), 315532800 + 86400 * 366, 0);
}

// ---- readers ----

class H5Set final : public SampleSet {
 public:
  explicit H5Set(std::shared_ptr<ShardSet> s) : s_(std::move(s)) {}
  const DatasetSpec& spec() const override { return s_->spec(); }
  int64_t size() const override { return s_->size(); }
  std::string path() const override { return s_->path(); }
  std::string format() const override { return "h5"; }
  std::pair<torch::Tensor, torch::Tensor> read(const std::vector<int64_t>& idx) const override {
    return {s_->read(idx), s_->labels_of(idx)};
  }

 private:
  std::shared_ptr<ShardSet> s_;
};

class PngSet final : public SampleSet {
 public:
  PngSet(const std::string& folder, const DatasetSpec* reference) : folder_(folder) {
    std::vector<std::string> subs;
    for (const auto& e : fs::directory_iterator(folder))
      if (e.is_directory() && e.path().filename().string()[0] != '.') subs.push_back(e.path().filename().string());
    std::sort(subs.begin(), subs.end());
    std::vector<std::string> classes;  // subfolder name of each class id
    const fs::path list = fs::path(folder) / kClassList;
    if (fs::exists(list)) {
      std::ifstream in(list);
      for (std::string line; std::getline(in, line);)
        if (!line.empty()) classes.push_back(line);
    } else if (reference && reference->num_classes > 0 && !subs.empty()) {
      for (int64_t c = 0; c < reference->num_classes; ++c) classes.push_back(png_class_folder(*reference, c));
    } else {
      classes = subs;
    }
    std::map<std::string, int64_t> id;
    for (size_t c = 0; c < classes.size(); ++c) id[classes[c]] = static_cast<int64_t>(c);
    auto add_files = [&](const fs::path& dir, int64_t label) {
      for (const auto& e : fs::directory_iterator(dir))
        if (e.is_regular_file() && ends_with(e.path().filename().string(), ".png"))
          files_.push_back({e.path().filename().string(), e.path().string(), label});
    };
    if (subs.empty()) {
      add_files(folder, -1);
    } else {
      for (const auto& sub : subs) {
        auto it = id.find(sub);
        DL_REQUIRE(it != id.end(), folder << ": subfolder '" << sub << "' is not one of the "
                                          << classes.size() << " classes (" << (fs::exists(list) ? kClassList : "the reference's class names")
                                          << "); expected one subfolder per class");
        add_files(fs::path(folder) / sub, it->second);
      }
    }
    DL_REQUIRE(!files_.empty(), folder << ": no PNG files (expected <folder>/<class>/*.png or <folder>/*.png)");
    // Sample order: by file name (the sampler's names are zero-padded global indices), then path.
    std::sort(files_.begin(), files_.end(), [](const File& a, const File& b) {
      return a.name != b.name ? a.name < b.name : a.path < b.path;
    });
    const Image first = read_png(files_.front().path);
    std::vector<std::string> names;
    if (!subs.empty()) {
      names = classes;
      if (reference && static_cast<int64_t>(classes.size()) == reference->num_classes) names = reference->class_names;
    }
    spec_ = image_spec(first.height, first.width, first.channels == 2 ? 1 : first.channels,
                       static_cast<int64_t>(classes.empty() || subs.empty() ? 0 : classes.size()), names);
    spec_.source = "png-folder:" + folder;
  }
  const DatasetSpec& spec() const override { return spec_; }
  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  std::string path() const override { return folder_; }
  std::string format() const override { return "png"; }
  std::pair<torch::Tensor, torch::Tensor> read(const std::vector<int64_t>& idx) const override {
    const int64_t h = spec_.sample_shape[0], w = spec_.sample_shape[1], c = spec_.sample_shape[2];
    auto stored = torch::empty({static_cast<int64_t>(idx.size()), h, w, c}, torch::kUInt8);
    auto labels = torch::empty({static_cast<int64_t>(idx.size())}, torch::kLong);
    for (size_t k = 0; k < idx.size(); ++k) {
      DL_REQUIRE(idx[k] >= 0 && idx[k] < size(), folder_ << ": sample " << idx[k] << " out of range [0, " << size() << ")");
      const File& f = files_[static_cast<size_t>(idx[k])];
      Image img = read_png(f.path);
      DL_REQUIRE(img.height == h && img.width == w && (img.channels == c || (c == 1 && img.channels == 2)),
                 f.path << ": " << img.width << "x" << img.height << "x" << img.channels << ", expected " << w << "x" << h
                        << "x" << c << " like " << files_.front().path);
      std::memcpy(stored[static_cast<int64_t>(k)].data_ptr(), img.pixels.data(), static_cast<size_t>(h * w * c));
      labels[static_cast<int64_t>(k)] = f.label;
    }
    return {decode_samples(spec_, stored), labels};
  }

 private:
  struct File {
    std::string name, path;
    int64_t label;
  };
  std::string folder_;
  std::vector<File> files_;
  DatasetSpec spec_;
};

class NpzSet final : public SampleSet {
 public:
  explicit NpzSet(const std::string& path) : path_(path) {
    int err = 0;
    zip_t* za = zip_open(path.c_str(), ZIP_RDONLY, &err);
    DL_REQUIRE(za, path << ": not a readable zip archive (.npz), libzip error " << err);
    try {
      arr_ = member(za, "arr_0.npy");
      DL_REQUIRE(arr_.info.shape.size() >= 2, path << ": arr_0 has shape " << shape_string(arr_.info.shape)
                                                   << ", expected [N, ...] samples");
      const bool u8 = arr_.info.descr == "|u1", f4 = arr_.info.descr == "<f4";
      DL_REQUIRE(u8 || f4, path << ": arr_0 has dtype '" << arr_.info.descr << "', expected uint8 images or float32");
      std::vector<int64_t> sample(arr_.info.shape.begin() + 1, arr_.info.shape.end());
      if (zip_name_locate(za, "labels.npy", 0) >= 0) {
        labels_ = read_labels(za);
        DL_REQUIRE(static_cast<int64_t>(labels_.size()) == arr_.info.shape[0],
                   path << ": labels has " << labels_.size() << " entries for " << arr_.info.shape[0] << " samples");
      }
      const int64_t classes = labels_.empty() ? 0 : *std::max_element(labels_.begin(), labels_.end()) + 1;
      if (u8) {
        DL_REQUIRE(sample.size() == 3, path << ": uint8 arr_0 of shape " << shape_string(arr_.info.shape)
                                             << ", expected [N, H, W, C] images");
        spec_ = image_spec(sample[0], sample[1], sample[2], classes);
      } else {
        spec_ = float_spec(sample.size() == 1 ? SampleKind::kPoints : SampleKind::kTensor, sample, classes);
      }
      spec_.source = "npz:" + path;
      row_bytes_ = spec_.sample_bytes();
    } catch (...) {
      zip_discard(za);
      throw;
    }
    zip_discard(za);
  }
  void set_classes(const DatasetSpec& ref) {
    if (spec_.num_classes > 0 && ref.num_classes >= spec_.num_classes) {
      spec_.num_classes = ref.num_classes;
      spec_.class_names = ref.class_names;
    }
  }
  const DatasetSpec& spec() const override { return spec_; }
  int64_t size() const override { return arr_.info.shape[0]; }
  std::string path() const override { return path_; }
  std::string format() const override { return "npz"; }
  std::pair<torch::Tensor, torch::Tensor> read(const std::vector<int64_t>& idx) const override {
    std::vector<int64_t> sample(arr_.info.shape.begin() + 1, arr_.info.shape.end());
    std::vector<int64_t> shape{static_cast<int64_t>(idx.size())};
    shape.insert(shape.end(), sample.begin(), sample.end());
    auto stored = torch::empty(shape, spec_.stored_dtype());
    auto labels = torch::full({static_cast<int64_t>(idx.size())}, -1, torch::kLong);
    // Visit the rows in file order, reading forward only (seeking when the member allows it).
    std::vector<size_t> order(idx.size());
    for (size_t k = 0; k < idx.size(); ++k) order[k] = k;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return idx[a] < idx[b]; });
    int err = 0;
    zip_t* za = zip_open(path_.c_str(), ZIP_RDONLY, &err);
    DL_REQUIRE(za, path_ << ": cannot reopen the archive, libzip error " << err);
    zip_file_t* zf = zip_fopen_index(za, arr_.index, 0);
    if (!zf) {
      zip_discard(za);
      throw UserError(path_ + ": cannot open arr_0.npy");
    }
    auto* out = static_cast<uint8_t*>(stored.data_ptr());
    uint64_t at = 0;
    size_t prev = 0;  // the last row read
    std::vector<uint8_t> scratch(1 << 16);
    auto fail = [&](const std::string& why) {
      zip_fclose(zf);
      zip_discard(za);
      throw UserError(path_ + ": " + why);
    };
    for (size_t k : order) {
      DL_REQUIRE(idx[k] >= 0 && idx[k] < size(), path_ << ": sample " << idx[k] << " out of range [0, " << size() << ")");
      const uint64_t want = static_cast<uint64_t>(arr_.info.header_bytes + idx[k] * row_bytes_);
      if (want < at) {  // a repeated index (sorted: it follows its first copy): copy that row
        std::memcpy(out + k * row_bytes_, out + prev * row_bytes_, static_cast<size_t>(row_bytes_));
        if (!labels_.empty()) labels[static_cast<int64_t>(k)] = labels_[static_cast<size_t>(idx[k])];
        continue;
      }
      prev = k;
      if (want > at && zip_fseek(zf, static_cast<zip_int64_t>(want), SEEK_SET) == 0) at = want;
      while (at < want) {  // compressed member: read and drop
        const zip_int64_t r = zip_fread(zf, scratch.data(), std::min<uint64_t>(scratch.size(), want - at));
        if (r <= 0) fail("arr_0.npy ends early");
        at += static_cast<uint64_t>(r);
      }
      int64_t got = 0;
      while (got < row_bytes_) {
        const zip_int64_t r = zip_fread(zf, out + k * row_bytes_ + got, static_cast<zip_uint64_t>(row_bytes_ - got));
        if (r <= 0) fail("arr_0.npy ends early");
        got += r;
      }
      at += static_cast<uint64_t>(row_bytes_);
      if (!labels_.empty()) labels[static_cast<int64_t>(k)] = labels_[static_cast<size_t>(idx[k])];
    }
    zip_fclose(zf);
    zip_discard(za);
    return {decode_samples(spec_, stored), labels};
  }

 private:
  struct Member {
    zip_uint64_t index = 0;
    NpyInfo info;
  };
  Member member(zip_t* za, const char* name) const {
    const zip_int64_t i = zip_name_locate(za, name, 0);
    DL_REQUIRE(i >= 0, path_ << ": no member " << name << " (an .npz of samples holds arr_0)");
    zip_file_t* zf = zip_fopen_index(za, static_cast<zip_uint64_t>(i), 0);
    DL_REQUIRE(zf, path_ << ": cannot open " << name);
    std::string head(256, '\0');
    zip_int64_t got = 0, r = 0;
    while (got < 256 && (r = zip_fread(zf, &head[got], 256 - got)) > 0) got += r;
    head.resize(static_cast<size_t>(got));
    // Longer headers (very many dimensions) are not produced by numpy for samples; 256 bytes hold ours.
    zip_fclose(zf);
    Member m;
    m.index = static_cast<zip_uint64_t>(i);
    m.info = parse_npy_header(head, path_ + ":" + name);
    return m;
  }
  std::vector<int64_t> read_labels(zip_t* za) const {
    Member m = member(za, "labels.npy");
    DL_REQUIRE(m.info.shape.size() == 1, path_ << ": labels has shape " << shape_string(m.info.shape) << ", expected [N]");
    const bool i8 = m.info.descr == "<i8", i4 = m.info.descr == "<i4";
    DL_REQUIRE(i8 || i4, path_ << ": labels has dtype '" << m.info.descr << "', expected int64 or int32");
    zip_file_t* zf = zip_fopen_index(za, m.index, 0);
    DL_REQUIRE(zf, path_ << ": cannot open labels.npy");
    std::vector<uint8_t> bytes(static_cast<size_t>(m.info.header_bytes + m.info.shape[0] * (i8 ? 8 : 4)));
    size_t got = 0;
    zip_int64_t r = 0;
    while (got < bytes.size() && (r = zip_fread(zf, bytes.data() + got, bytes.size() - got)) > 0) got += static_cast<size_t>(r);
    zip_fclose(zf);
    DL_REQUIRE(got == bytes.size(), path_ << ": labels.npy ends early");
    std::vector<int64_t> out(static_cast<size_t>(m.info.shape[0]));
    for (size_t k = 0; k < out.size(); ++k) {
      const uint8_t* p = bytes.data() + m.info.header_bytes + k * (i8 ? 8 : 4);
      if (i8) { int64_t v; std::memcpy(&v, p, 8); out[k] = v; }
      else { int32_t v; std::memcpy(&v, p, 4); out[k] = v; }
      DL_REQUIRE(out[k] >= 0, path_ << ": label " << out[k] << " of sample " << k << " is negative");
    }
    return out;
  }

  std::string path_;
  Member arr_;
  std::vector<int64_t> labels_;
  DatasetSpec spec_;
  int64_t row_bytes_ = 0;
};

}  // namespace

std::string png_class_folder(const DatasetSpec& spec, int64_t c) {
  if (spec.num_classes <= 0) return "";
  std::string name = c < static_cast<int64_t>(spec.class_names.size()) ? spec.class_names[static_cast<size_t>(c)] : "";
  if (name.empty() || name == "." || name == "..") name = "class_" + std::to_string(c);
  for (char& ch : name)
    if (ch == '/' || static_cast<unsigned char>(ch) < 32) ch = '_';
  return name;
}

std::string png_sample_path(const DatasetSpec& spec, int64_t index, int64_t label, int64_t total) {
  int width = 6;
  for (int64_t v = total - 1; v >= 1000000; v /= 10) ++width;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*lld.png", width, static_cast<long long>(index));
  const std::string sub = png_class_folder(spec, label);
  return sub.empty() ? std::string(buf) : sub + "/" + buf;
}

void write_png_samples(const std::string& folder, const DatasetSpec& spec, int64_t first_index, int64_t total,
                       const torch::Tensor& decoded, const torch::Tensor& labels) {
  DL_REQUIRE(spec.kind == SampleKind::kImage, folder << ": PNG output needs image samples, the data are "
                                                     << spec.describe());
  const auto stored = encode_samples(spec, decoded).contiguous();
  const int64_t m = stored.size(0), h = spec.sample_shape[0], w = spec.sample_shape[1], c = spec.sample_shape[2];
  const auto lab = spec.num_classes > 0 ? labels.to(torch::kLong).contiguous() : torch::Tensor();
  std::set<fs::path> made;  // class folders created by this call
  for (int64_t i = 0; i < m; ++i) {
    const int64_t label = lab.defined() ? lab.data_ptr<int64_t>()[i] : -1;
    const fs::path p = fs::path(folder) / png_sample_path(spec, first_index + i, label, total);
    if (made.insert(p.parent_path()).second) {
      std::error_code ec;
      fs::create_directories(p.parent_path(), ec);
    }
    Image img;
    img.width = static_cast<int>(w);
    img.height = static_cast<int>(h);
    img.channels = static_cast<int>(c);
    const auto* px = stored[i].data_ptr<uint8_t>();
    img.pixels.assign(px, px + h * w * c);
    write_png(p.string(), img);
  }
}

void write_png_class_list(const std::string& folder, const DatasetSpec& spec) {
  if (spec.num_classes <= 0) return;
  std::ostringstream o;
  for (int64_t c = 0; c < spec.num_classes; ++c) o << png_class_folder(spec, c) << "\n";
  write_file_atomic((fs::path(folder) / kClassList).string(), o.str());
}

std::string npy_header(const std::string& descr, const std::vector<int64_t>& shape) {
  std::ostringstream d;
  d << "{'descr': '" << descr << "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < shape.size(); ++i) d << (i ? ", " : "") << shape[i];
  d << (shape.size() == 1 ? ",), }" : "), }");
  std::string dict = d.str();
  const size_t fixed = 10;  // magic (6) + version (2) + header length (2)
  size_t total = fixed + dict.size() + 1;
  total = (total + 63) / 64 * 64;
  dict.append(total - fixed - dict.size() - 1, ' ');
  dict.push_back('\n');
  std::string out("\x93NUMPY\x01\x00", 8);
  out.push_back(static_cast<char>(dict.size() & 0xff));
  out.push_back(static_cast<char>((dict.size() >> 8) & 0xff));
  return out + dict;
}

NpyInfo parse_npy_header(const std::string& b, const std::string& what) {
  DL_REQUIRE(b.size() >= 10 && b.compare(0, 6, "\x93NUMPY") == 0, what << ": not a .npy array (bad magic)");
  const int major = static_cast<unsigned char>(b[6]);
  size_t len = 0, start = 0;
  if (major == 1) {
    len = static_cast<unsigned char>(b[8]) | (static_cast<size_t>(static_cast<unsigned char>(b[9])) << 8);
    start = 10;
  } else {
    DL_REQUIRE(b.size() >= 12 && (major == 2 || major == 3), what << ": .npy version " << major << " is not supported");
    len = 0;
    for (int i = 0; i < 4; ++i) len |= static_cast<size_t>(static_cast<unsigned char>(b[8 + i])) << (8 * i);
    start = 12;
  }
  DL_REQUIRE(b.size() >= start + len, what << ": .npy header of " << len << " bytes is longer than what was read");
  const std::string dict = b.substr(start, len);
  NpyInfo info;
  info.header_bytes = static_cast<int64_t>(start + len);
  auto value_of = [&](const std::string& key) {
    const size_t k = dict.find("'" + key + "'");
    DL_REQUIRE(k != std::string::npos, what << ": .npy header lacks '" << key << "': " << dict);
    size_t v = dict.find(':', k);
    DL_REQUIRE(v != std::string::npos, what << ": malformed .npy header: " << dict);
    ++v;
    while (v < dict.size() && dict[v] == ' ') ++v;
    return v;
  };
  size_t v = value_of("descr");
  DL_REQUIRE(dict[v] == '\'', what << ": malformed descr in .npy header: " << dict);
  info.descr = dict.substr(v + 1, dict.find('\'', v + 1) - v - 1);
  v = value_of("fortran_order");
  info.fortran_order = dict.compare(v, 4, "True") == 0;
  DL_REQUIRE(!info.fortran_order, what << ": Fortran-ordered arrays are not supported");
  v = value_of("shape");
  DL_REQUIRE(dict[v] == '(', what << ": malformed shape in .npy header: " << dict);
  const size_t close = dict.find(')', v);
  std::stringstream ss(dict.substr(v + 1, close - v - 1));
  for (std::string item; std::getline(ss, item, ',');) {
    item.erase(0, item.find_first_not_of(' '));
    if (item.empty()) continue;
    info.shape.push_back(std::stoll(item));
  }
  return info;
}

void write_npz(const std::string& path, const DatasetSpec& spec, int64_t n, const RowSource& source) {
  DL_REQUIRE(n >= 1, path << ": an archive of samples needs at least one sample");
  const std::string tmp = path + ".tmp";
  std::error_code ec;
  fs::remove(tmp, ec);
  int err = 0;
  zip_t* za = zip_open(tmp.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  DL_REQUIRE(za, tmp << ": cannot create the archive, libzip error " << err);
  std::vector<int64_t> shape{n};
  shape.insert(shape.end(), spec.sample_shape.begin(), spec.sample_shape.end());
  NpyStream arr;
  arr.header = npy_header(npy_descr(spec), shape);
  arr.rows = n;
  arr.row_bytes = spec.sample_bytes();
  arr.source = &source;
  arr.size = arr.header.size() + static_cast<uint64_t>(n * arr.row_bytes);
  zip_error_init(&arr.error);
  // The labels member re-reads the rows' labels block by block through the same source.
  RowSource label_rows = [&](int64_t first, int64_t count) {
    auto lab = source(first, count).second;
    DL_CHECK(lab.defined() && lab.size(0) == count, "npz row source returned no labels for a labelled set");
    return std::make_pair(lab.to(torch::kLong).contiguous(), torch::Tensor());
  };
  NpyStream lab;
  lab.header = npy_header("<i8", {n});
  lab.rows = n;
  lab.row_bytes = 8;
  lab.source = &label_rows;
  lab.size = lab.header.size() + static_cast<uint64_t>(n * 8);
  zip_error_init(&lab.error);
  try {
    add_member(za, tmp, "arr_0.npy", arr);
    if (spec.num_classes > 0) add_member(za, tmp, "labels.npy", lab);
  } catch (...) {
    zip_discard(za);
    fs::remove(tmp, ec);
    throw;
  }
  if (zip_close(za) != 0) {
    const std::string why = zip_strerror(za);
    zip_discard(za);
    fs::remove(tmp, ec);
    throw UserError(path + ": cannot write the archive: " + why);
  }
  zip_error_fini(&arr.error);
  zip_error_fini(&lab.error);
  fsync_file(tmp);
  rename_durable(tmp, path);
}

std::unique_ptr<SampleSet> open_sample_set(const std::string& path, const DatasetSpec* reference) {
  std::error_code ec;
  auto npz = [&](const std::string& p) {
    auto s = std::make_unique<NpzSet>(p);
    if (reference) s->set_classes(*reference);
    return s;
  };
  if (ends_with(path, ".npz") && fs::is_regular_file(path, ec)) return npz(path);
  if (fs::is_directory(path, ec)) {
    if (fs::is_regular_file(fs::path(path) / "samples.npz", ec)) return npz((fs::path(path) / "samples.npz").string());
    bool h5 = false, png = false;
    for (const auto& e : fs::recursive_directory_iterator(path, ec)) {
      const std::string name = e.path().filename().string();
      if (ends_with(name, ".h5") && e.path().parent_path() == fs::path(path)) h5 = true;
      if (ends_with(name, ".png")) png = true;
      if (h5) break;
    }
    if (!h5 && png) return std::make_unique<PngSet>(path, reference);
  }
  return std::make_unique<H5Set>(ShardSet::open(path));
}

}  // namespace driftlab::data
