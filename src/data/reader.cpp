// ShardSet: validation on open, per-class index, batched random reads (see reader.h).
#include "data/reader.h"

#include <glob.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>

#include "common/check.h"
#include "common/text.h"
#include "common/progress.h"

namespace driftlab::data {
namespace fs = std::filesystem;

namespace {

// Total chunk-cache budget over all shards: with checksummed chunks every read decodes a whole
// chunk, so keeping hot chunks avoids re-reading them; small data sets end up fully cached.
constexpr size_t kChunkCacheBudget = 256u << 20;

bool has_glob_chars(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

std::string names_str(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + v[i];
  return s.empty() ? "(none)" : s;
}

struct ShardHeader {
  DatasetSpec spec;
  int64_t index = 0, count = 0, total = 0, rows = 0;
  std::string id;
  double vmin = 0, vmax = 0;
};

}  // namespace

std::vector<std::string> list_shard_files(const std::string& path) {
  std::vector<std::string> files;
  std::error_code ec;
  if (has_glob_chars(path) && !fs::exists(path, ec)) {
    glob_t g{};
    const int rc = ::glob(path.c_str(), 0, nullptr, &g);
    for (size_t i = 0; rc == 0 && i < g.gl_pathc; ++i) files.emplace_back(g.gl_pathv[i]);
    globfree(&g);
    DL_REQUIRE(!files.empty(), "data set " << path << ": the pattern matches no file");
  } else if (fs::is_directory(path, ec)) {
    for (const auto& e : fs::directory_iterator(path))
      if (e.path().extension() == ".h5") files.push_back(e.path().string());
    DL_REQUIRE(!files.empty(), "data set " << path << ": the folder holds no shard (*.h5) files; "
                                           << "the data set is empty");
  } else {
    DL_REQUIRE(fs::exists(path, ec), "data set " << path << ": no such file or folder");
    files.push_back(path);
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::shared_ptr<ShardSet> ShardSet::open(const std::string& path) {
  hdf5_silence_errors();
  std::shared_ptr<ShardSet> set(new ShardSet());
  set->path_ = path;
  const std::vector<std::string> files = list_shard_files(path);
  std::vector<ShardHeader> headers;
  std::vector<std::vector<int32_t>> shard_labels;
  for (const std::string& f : files) {
    std::error_code ec;
    DL_REQUIRE(fs::is_regular_file(f, ec), f << ": not a regular file");
    DL_REQUIRE(fs::file_size(f, ec) > 0, f << ": the file is empty (an interrupted copy?)");
    h5::Handle file(H5Fopen(f.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
    DL_REQUIRE(file.valid(), f << ": cannot open as an HDF5 file (truncated or corrupt shard?): " << hdf5_error_stack());
    const hid_t root = file.get();
    ShardHeader h;
    const std::string schema = h5::read_string(root, "schema", f);
    DL_REQUIRE(schema == kSchemaName, f << ": schema '" << schema << "' (expected '" << kSchemaName << "')");
    const int64_t version = h5::read_int(root, "schema_version", f);
    DL_REQUIRE(version >= 1 && version <= kSchemaVersion,
               f << ": schema_version " << version << " (this build reads 1.." << kSchemaVersion << ")");
    h.spec.kind = parse_kind(h5::read_string(root, "kind", f), f);
    h.spec.sample_shape = h5::read_ints(root, "sample_shape", f);
    h.spec.num_classes = h5::read_int(root, "num_classes", f);
    if (h5::has_attr(root, "class_names")) h.spec.class_names = h5::read_strings(root, "class_names", f);
    h.spec.decode_shift = h5::read_double(root, "decode_shift", f);
    h.spec.decode_scale = h5::read_double(root, "decode_scale", f);
    if (h5::has_attr(root, "source")) h.spec.source = h5::read_string(root, "source", f);
    h.spec.validate(f);
    h.index = h5::read_int(root, "shard_index", f);
    h.count = h5::read_int(root, "shard_count", f);
    h.total = h5::read_int(root, "total_samples", f);
    h.id = h5::read_string(root, "dataset_id", f);
    DL_REQUIRE(h5::has_attr(root, "value_min") && h5::has_attr(root, "value_max"),
               f << ": attribute 'value_min' is missing: the shard was never finished (an interrupted write?)");
    h.vmin = h5::read_double(root, "value_min", f);
    h.vmax = h5::read_double(root, "value_max", f);
    DL_REQUIRE(h.count >= 1 && h.index >= 0 && h.index < h.count,
               f << ": shard_index " << h.index << " / shard_count " << h.count << " (expected 0 <= index < count)");

    DL_REQUIRE(H5Lexists(root, "data", H5P_DEFAULT) > 0, f << ": dataset /data is missing");
    h5::Handle dapl(DL_CHECK_HDF5(H5Pcreate(H5P_DATASET_ACCESS)));
    const size_t cache = std::max<size_t>(1u << 20, kChunkCacheBudget / files.size());
    DL_CHECK_HDF5(H5Pset_chunk_cache(dapl.get(), 12421, cache, 1.0));
    h5::Handle data(H5Dopen2(root, "data", dapl.get()));
    DL_REQUIRE(data.valid(), f << ": cannot open /data: " << hdf5_error_stack());
    {
      h5::Handle type(DL_CHECK_HDF5(H5Dget_type(data.get())));
      const bool image = h.spec.kind == SampleKind::kImage;
      const bool ok = image ? (H5Tget_class(type.get()) == H5T_INTEGER && H5Tget_size(type.get()) == 1 &&
                               H5Tget_sign(type.get()) == H5T_SGN_NONE)
                            : (H5Tget_class(type.get()) == H5T_FLOAT && H5Tget_size(type.get()) == 4);
      DL_REQUIRE(ok, f << ": /data has the wrong element type (expected " << (image ? "uint8" : "float32")
                       << " for kind '" << kind_name(h.spec.kind) << "')");
    }
    const std::vector<int64_t> dims = h5::dataset_dims(data.get());
    std::vector<int64_t> want_tail = h.spec.sample_shape;
    DL_REQUIRE(dims.size() == want_tail.size() + 1 && std::equal(want_tail.begin(), want_tail.end(), dims.begin() + 1),
               f << ": /data has shape " << shape_string(dims) << " (expected [n, " << shape_string(want_tail).substr(1) << ")");
    h.rows = dims[0];
    DL_REQUIRE(h.rows >= 1, f << ": /data holds no samples (an empty shard)");

    std::vector<int32_t> lab;
    if (h.spec.num_classes > 0) {
      DL_REQUIRE(H5Lexists(root, "labels", H5P_DEFAULT) > 0,
                 f << ": dataset /labels is missing (num_classes is " << h.spec.num_classes << ")");
      h5::Handle ld(H5Dopen2(root, "labels", H5P_DEFAULT));
      DL_REQUIRE(ld.valid(), f << ": cannot open /labels: " << hdf5_error_stack());
      const std::vector<int64_t> ldims = h5::dataset_dims(ld.get());
      DL_REQUIRE(ldims.size() == 1 && ldims[0] == h.rows,
                 f << ": /labels has shape " << shape_string(ldims) << " (expected [" << h.rows << "])");
      h5::Handle ltype(DL_CHECK_HDF5(H5Dget_type(ld.get())));
      DL_REQUIRE(H5Tget_class(ltype.get()) == H5T_INTEGER, f << ": /labels is not an integer dataset");
      lab.resize(static_cast<size_t>(h.rows));
      DL_REQUIRE(H5Dread(ld.get(), H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, lab.data()) >= 0,
                 f << ": cannot read /labels (corrupt shard?): " << hdf5_error_stack());
      for (size_t r = 0; r < lab.size(); ++r)
        DL_REQUIRE(lab[r] >= 0 && lab[r] < h.spec.num_classes,
                   f << ": label " << lab[r] << " at row " << r << " is out of range [0, " << h.spec.num_classes << ")");
    }

    if (!headers.empty()) {
      const ShardHeader& a = headers.front();
      const std::string& af = files.front();
      auto disagree = [&](const std::string& field, const std::string& x, const std::string& y) {
        DL_REQUIRE(x == y, f << " disagrees with " << af << " on " << field << ": " << y << " vs " << x
                             << " (shards of different data sets mixed?)");
      };
      disagree("dataset_id", a.id, h.id);
      disagree("kind", kind_name(a.spec.kind), kind_name(h.spec.kind));
      disagree("sample_shape", shape_string(a.spec.sample_shape), shape_string(h.spec.sample_shape));
      disagree("num_classes", std::to_string(a.spec.num_classes), std::to_string(h.spec.num_classes));
      disagree("class_names", names_str(a.spec.class_names), names_str(h.spec.class_names));
      disagree("decoding", std::to_string(a.spec.decode_shift) + "/" + std::to_string(a.spec.decode_scale),
               std::to_string(h.spec.decode_shift) + "/" + std::to_string(h.spec.decode_scale));
      disagree("shard_count", std::to_string(a.count), std::to_string(h.count));
      disagree("total_samples", std::to_string(a.total), std::to_string(h.total));
    }
    headers.push_back(h);
    shard_labels.push_back(std::move(lab));
    set->files_.push_back(std::move(file));
    set->datasets_.push_back(std::move(data));
  }

  // Order by shard index, and require exactly 0..K-1.
  const int64_t k = headers.front().count;
  std::vector<int> at(static_cast<size_t>(k), -1);
  for (size_t i = 0; i < headers.size(); ++i) {
    const int64_t idx = headers[i].index;
    DL_REQUIRE(at[static_cast<size_t>(idx)] < 0,
               files[i] << " and " << files[static_cast<size_t>(at[static_cast<size_t>(idx)])]
                        << " are both shard " << idx << " of the data set");
    at[static_cast<size_t>(idx)] = static_cast<int>(i);
  }
  for (int64_t idx = 0; idx < k; ++idx)
    DL_REQUIRE(at[static_cast<size_t>(idx)] >= 0,
               "data set " << path << ": shard " << idx << " of " << k << " is missing (expected a file like "
                           << shard_file_name(static_cast<int>(idx), static_cast<int>(k)) << "; found "
                           << headers.size() << " of " << k << " shards)");
  std::vector<h5::Handle> fl, ds;
  for (int64_t idx = 0; idx < k; ++idx) {
    const size_t i = static_cast<size_t>(at[static_cast<size_t>(idx)]);
    ShardInfo info{files[i], set->total_, headers[i].rows, headers[i].vmin, headers[i].vmax};
    set->shards_.push_back(info);
    set->total_ += headers[i].rows;
    set->labels_.insert(set->labels_.end(), shard_labels[i].begin(), shard_labels[i].end());
    fl.push_back(std::move(set->files_[i]));
    ds.push_back(std::move(set->datasets_[i]));
  }
  set->files_ = std::move(fl);
  set->datasets_ = std::move(ds);
  DL_REQUIRE(set->total_ == headers.front().total,
             "data set " << path << ": the shards hold " << set->total_ << " samples, but total_samples says "
                         << headers.front().total);
  set->spec_ = headers.front().spec;
  set->id_ = headers.front().id;
  if (set->labelled()) {
    set->by_class_.assign(static_cast<size_t>(set->spec_.num_classes), {});
    for (size_t i = 0; i < set->labels_.size(); ++i)
      set->by_class_[static_cast<size_t>(set->labels_[i])].push_back(static_cast<int64_t>(i));
  }
  return set;
}

std::pair<int, int64_t> ShardSet::locate(int64_t index) const {
  DL_REQUIRE(index >= 0 && index < total_,
             "data set " << path_ << ": index " << index << " out of range [0, " << total_ << ")");
  auto it = std::upper_bound(shards_.begin(), shards_.end(), index,
                             [](int64_t v, const ShardInfo& s) { return v < s.first; });
  const int shard = static_cast<int>(it - shards_.begin()) - 1;
  return {shard, index - shards_[static_cast<size_t>(shard)].first};
}

const std::vector<int64_t>& ShardSet::class_indices(int64_t c) const {
  DL_REQUIRE(labelled(), "data set " << path_ << " has no labels; class " << c << " was asked for");
  DL_REQUIRE(c >= 0 && c < spec_.num_classes,
             "data set " << path_ << ": class " << c << " out of range [0, " << spec_.num_classes << ")");
  return by_class_[static_cast<size_t>(c)];
}

std::vector<int64_t> ShardSet::class_counts() const {
  std::vector<int64_t> n;
  for (const auto& v : by_class_) n.push_back(static_cast<int64_t>(v.size()));
  return n;
}

void ShardSet::read_shard_sorted(int shard, const std::vector<int64_t>& rows, uint8_t* out) const {
  const size_t rank = spec_.sample_shape.size() + 1;
  std::vector<hsize_t> start(rank, 0), count(rank);
  for (size_t d = 1; d < rank; ++d) count[d] = static_cast<hsize_t>(spec_.sample_shape[d - 1]);
  std::lock_guard<std::mutex> lock(mu_);
  const hid_t dset = datasets_[static_cast<size_t>(shard)].get();
  h5::Handle fspace(DL_CHECK_HDF5(H5Dget_space(dset)));
  const hid_t mtype = spec_.kind == SampleKind::kImage ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT;
  const size_t bytes = static_cast<size_t>(spec_.sample_bytes());
  // One read per run of consecutive rows. (A single read of the union of all runs would be one
  // call, but building a union of many blocks with H5S_SELECT_OR is quadratic in HDF5 1.10:
  // data_bench measured it 20x slower than this for 400 random rows.)
  h5::Handle one_row;
  for (size_t i = 0; i < rows.size();) {
    size_t j = i + 1;
    while (j < rows.size() && rows[j] == rows[j - 1] + 1) ++j;
    start[0] = static_cast<hsize_t>(rows[i]);
    count[0] = static_cast<hsize_t>(j - i);
    DL_CHECK_HDF5(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr));
    h5::Handle run_space;
    if (j - i == 1 && !one_row.valid())
      one_row = h5::Handle(DL_CHECK_HDF5(H5Screate_simple(static_cast<int>(rank), count.data(), nullptr)));
    if (j - i > 1) run_space = h5::Handle(DL_CHECK_HDF5(H5Screate_simple(static_cast<int>(rank), count.data(), nullptr)));
    const hid_t mspace = j - i == 1 ? one_row.get() : run_space.get();
    DL_REQUIRE(H5Dread(dset, mtype, mspace, fspace.get(), H5P_DEFAULT, out + i * bytes) >= 0,
               shards_[static_cast<size_t>(shard)].path << ": cannot read samples " << rows[i] << ".." << rows[j - 1]
                   << " from /data (the shard is corrupt or truncated; re-create it with drift_data): "
                   << hdf5_error_stack());
    i = j;
  }
}

torch::Tensor ShardSet::read_stored(const std::vector<int64_t>& indices) const {
  std::vector<int64_t> shape{static_cast<int64_t>(indices.size())};
  shape.insert(shape.end(), spec_.sample_shape.begin(), spec_.sample_shape.end());
  torch::Tensor out = torch::empty(shape, spec_.stored_dtype());
  if (indices.empty()) return out;
  const size_t bytes = static_cast<size_t>(spec_.sample_bytes());
  auto* dst = static_cast<uint8_t*>(out.data_ptr());
  // (shard, row, position in the request), sorted so each shard's rows come together in order.
  std::vector<std::tuple<int, int64_t, size_t>> req;
  req.reserve(indices.size());
  for (size_t p = 0; p < indices.size(); ++p) {
    auto [s, r] = locate(indices[p]);
    req.emplace_back(s, r, p);
  }
  std::sort(req.begin(), req.end());
  std::vector<int64_t> rows;
  std::vector<uint8_t> buf;
  for (size_t i = 0; i < req.size();) {
    const int shard = std::get<0>(req[i]);
    size_t j = i;
    rows.clear();
    for (; j < req.size() && std::get<0>(req[j]) == shard; ++j)
      if (rows.empty() || rows.back() != std::get<1>(req[j])) rows.push_back(std::get<1>(req[j]));
    buf.resize(rows.size() * bytes);
    read_shard_sorted(shard, rows, buf.data());
    size_t u = 0;
    for (size_t q = i; q < j; ++q) {
      while (rows[u] != std::get<1>(req[q])) ++u;
      std::memcpy(dst + std::get<2>(req[q]) * bytes, buf.data() + u * bytes, bytes);
    }
    i = j;
  }
  return out;
}

torch::Tensor ShardSet::read(const std::vector<int64_t>& indices) const {
  return decode_samples(spec_, read_stored(indices));
}

torch::Tensor ShardSet::labels_of(const std::vector<int64_t>& indices) const {
  torch::Tensor out = torch::full({static_cast<int64_t>(indices.size())}, -1, torch::kInt64);
  auto* p = out.data_ptr<int64_t>();
  for (size_t i = 0; i < indices.size(); ++i) {
    const int64_t g = indices[i];
    DL_REQUIRE(g >= 0 && g < total_, "data set " << path_ << ": index " << g << " out of range [0, " << total_ << ")");
    if (labelled()) p[i] = labels_[static_cast<size_t>(g)];
  }
  return out;
}

torch::Tensor ShardSet::read_shard_rows(int shard, int64_t begin, int64_t count) const {
  DL_CHECK(shard >= 0 && shard < num_shards(), "shard " << shard);
  const ShardInfo& s = shards_[static_cast<size_t>(shard)];
  DL_CHECK(begin >= 0 && count >= 0 && begin + count <= s.rows, "rows " << begin << "+" << count);
  std::vector<int64_t> shape{count};
  shape.insert(shape.end(), spec_.sample_shape.begin(), spec_.sample_shape.end());
  torch::Tensor out = torch::empty(shape, spec_.stored_dtype());
  if (count == 0) return out;
  std::vector<int64_t> rows(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) rows[static_cast<size_t>(i)] = begin + i;
  read_shard_sorted(shard, rows, static_cast<uint8_t*>(out.data_ptr()));
  return out;
}

std::pair<double, double> ShardSet::validate_all(bool show_progress) const {
  ProgressBar bar("validating " + path_, total_, show_progress);
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  const int64_t block = std::max<int64_t>(1, (16 << 20) / spec_.sample_bytes());
  for (int k = 0; k < num_shards(); ++k) {
    const ShardInfo& s = shards_[static_cast<size_t>(k)];
    double slo = std::numeric_limits<double>::infinity(), shi = -slo;
    for (int64_t b = 0; b < s.rows; b += block) {
      // Min and max in the stored dtype: converting whole blocks to double first cost more than
      // the reads themselves.
      torch::Tensor x = read_shard_rows(k, b, std::min(block, s.rows - b));
      DL_REQUIRE(!x.is_floating_point() || torch::isfinite(x).all().item<bool>(),
                 s.path << ": /data holds non-finite values near row " << b);
      auto [mn, mx] = torch::aminmax(x);
      slo = std::min(slo, mn.item<double>());
      shi = std::max(shi, mx.item<double>());
      bar.add(x.size(0));
    }
    DL_REQUIRE(slo == s.value_min && shi == s.value_max,
               s.path << ": the values span [" << slo << ", " << shi << "] but the attributes say [" << s.value_min
                      << ", " << s.value_max << "] (the shard was modified or is corrupt)");
    lo = std::min(lo, slo);
    hi = std::max(hi, shi);
  }
  bar.finish();
  return {lo, hi};
}

}  // namespace driftlab::data
