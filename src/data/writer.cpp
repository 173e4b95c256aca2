// DatasetWriter (see writer.h): balanced contiguous shards, temporary folder, rename on finish.
#include "data/writer.h"

#include <hdf5.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <random>
#include <system_error>

#include "common/check.h"
#include "common/progress.h"
#include "data/h5.h"
#include "driftlab_config.h"

namespace driftlab::data {
namespace fs = std::filesystem;

namespace {

bool is_shard_name(const std::string& name) {
  return name.rfind("shard-", 0) == 0 && name.size() > 3 && name.substr(name.size() - 3) == ".h5";
}

// Refuses an output that exists unless it is a data set and force is set.
void check_output(const std::string& out, bool force) {
  std::error_code ec;
  if (!fs::exists(out, ec)) return;
  DL_REQUIRE(force, out << ": already exists; pass --force to replace it");
  DL_REQUIRE(fs::is_directory(out), out << ": exists and is not a data set folder; refusing to replace it");
  for (const auto& e : fs::directory_iterator(out)) {
    const std::string name = e.path().filename().string();
    DL_REQUIRE(e.is_regular_file() && is_shard_name(name),
               out << ": holds '" << name << "', which is not a shard; refusing to replace a folder "
                   << "that is not a data set (even with --force)");
  }
}

}  // namespace

std::string random_dataset_id() {
  std::random_device rd;
  const uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^
                     static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string dataset_id_of(const std::string& text) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a, 64 bits
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

struct ShardFileWriter::State {
  std::string path;
  DatasetSpec spec;
  ShardPlacement where;
  int64_t rows = 0, written = 0;
  bool closed = false;
  h5::Handle file, data, labels;
  double vmin = std::numeric_limits<double>::infinity(), vmax = -std::numeric_limits<double>::infinity();

  void write_rows(const uint8_t* bytes, const int32_t* lab, int64_t from, int64_t m) {
    std::vector<hsize_t> start(spec.sample_shape.size() + 1, 0), count{static_cast<hsize_t>(m)};
    start[0] = static_cast<hsize_t>(from);
    for (int64_t d : spec.sample_shape) count.push_back(static_cast<hsize_t>(d));
    h5::Handle fspace(DL_CHECK_HDF5(H5Dget_space(data.get())));
    DL_CHECK_HDF5(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr));
    h5::Handle mspace(DL_CHECK_HDF5(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr)));
    const hid_t mtype = spec.kind == SampleKind::kImage ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT;
    DL_CHECK_HDF5(H5Dwrite(data.get(), mtype, mspace.get(), fspace.get(), H5P_DEFAULT, bytes));
    if (labels.valid()) {
      hsize_t ls = start[0], lc = count[0];
      h5::Handle lf(DL_CHECK_HDF5(H5Dget_space(labels.get())));
      DL_CHECK_HDF5(H5Sselect_hyperslab(lf.get(), H5S_SELECT_SET, &ls, nullptr, &lc, nullptr));
      h5::Handle lm(DL_CHECK_HDF5(H5Screate_simple(1, &lc, nullptr)));
      DL_CHECK_HDF5(H5Dwrite(labels.get(), H5T_NATIVE_INT32, lm.get(), lf.get(), H5P_DEFAULT, lab));
    }
  }
};

ShardFileWriter::ShardFileWriter(std::string path, const DatasetSpec& spec, ShardPlacement where, int64_t n,
                                 const WriteOptions& opt)
    : s_(std::make_unique<State>()) {
  hdf5_silence_errors();
  spec.validate("output " + path);
  DL_REQUIRE(n >= 1, path << ": a shard needs at least one sample");
  DL_REQUIRE(where.count >= 1 && where.index >= 0 && where.index < where.count && where.total_samples >= n,
             path << ": shard " << where.index << " of " << where.count << " with " << n << " of "
                  << where.total_samples << " samples is not a valid placement");
  State& s = *s_;
  s.path = std::move(path);
  s.spec = spec;
  s.where = where;
  s.rows = n;
  // No timestamps in the file (HDF5 stores object times by default): the same rows give the
  // same bytes, so outputs can be compared with cmp.
  h5::Handle fcpl(DL_CHECK_HDF5(H5Pcreate(H5P_FILE_CREATE)));
  s.file = h5::Handle(H5Fcreate(s.path.c_str(), H5F_ACC_EXCL, fcpl.get(), H5P_DEFAULT));
  DL_REQUIRE(s.file.valid(), s.path << ": cannot create the shard: " << hdf5_error_stack());
  const hid_t root = s.file.get();
  h5::write_string(root, "schema", kSchemaName);
  h5::write_int(root, "schema_version", kSchemaVersion);
  h5::write_string(root, "kind", kind_name(spec.kind));
  h5::write_ints(root, "sample_shape", spec.sample_shape);
  h5::write_int(root, "num_classes", spec.num_classes);
  if (!spec.class_names.empty()) h5::write_strings(root, "class_names", spec.class_names);
  h5::write_int(root, "shard_index", where.index);
  h5::write_int(root, "shard_count", where.count);
  h5::write_int(root, "total_samples", where.total_samples);
  h5::write_string(root, "dataset_id", where.dataset_id);
  h5::write_double(root, "decode_shift", spec.decode_shift);
  h5::write_double(root, "decode_scale", spec.decode_scale);
  h5::write_string(root, "source", spec.source);
  h5::write_string(root, "created_by", std::string("driftlab ") + DRIFTLAB_VERSION);

  std::vector<hsize_t> dims{static_cast<hsize_t>(n)};
  for (int64_t d : spec.sample_shape) dims.push_back(static_cast<hsize_t>(d));
  int64_t chunk = opt.chunk_rows > 0 ? opt.chunk_rows : std::max<int64_t>(1, (64 << 10) / spec.sample_bytes());
  chunk = std::min(chunk, n);
  std::vector<hsize_t> cdims = dims;
  cdims[0] = static_cast<hsize_t>(chunk);
  h5::Handle space(DL_CHECK_HDF5(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr)));
  h5::Handle dcpl(DL_CHECK_HDF5(H5Pcreate(H5P_DATASET_CREATE)));
  DL_CHECK_HDF5(H5Pset_obj_track_times(dcpl.get(), false));
  DL_CHECK_HDF5(H5Pset_chunk(dcpl.get(), static_cast<int>(cdims.size()), cdims.data()));
  if (opt.deflate > 0) DL_CHECK_HDF5(H5Pset_deflate(dcpl.get(), static_cast<unsigned>(opt.deflate)));
  // Last in the pipeline so it checksums the bytes on disk: corruption is caught on read.
  DL_CHECK_HDF5(H5Pset_fletcher32(dcpl.get()));
  const hid_t ftype = spec.kind == SampleKind::kImage ? H5T_STD_U8LE : H5T_IEEE_F32LE;
  s.data = h5::Handle(DL_CHECK_HDF5(H5Dcreate2(root, "data", ftype, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT)));
  if (spec.num_classes > 0) {
    hsize_t ln = static_cast<hsize_t>(n), lc = static_cast<hsize_t>(std::min<int64_t>(n, 65536));
    h5::Handle lspace(DL_CHECK_HDF5(H5Screate_simple(1, &ln, nullptr)));
    h5::Handle lpl(DL_CHECK_HDF5(H5Pcreate(H5P_DATASET_CREATE)));
    DL_CHECK_HDF5(H5Pset_obj_track_times(lpl.get(), false));
    DL_CHECK_HDF5(H5Pset_chunk(lpl.get(), 1, &lc));
    DL_CHECK_HDF5(H5Pset_fletcher32(lpl.get()));
    s.labels = h5::Handle(DL_CHECK_HDF5(
        H5Dcreate2(root, "labels", H5T_STD_I32LE, lspace.get(), H5P_DEFAULT, lpl.get(), H5P_DEFAULT)));
  }
}

ShardFileWriter::~ShardFileWriter() {
  if (!s_ || s_->closed) return;
  s_->labels.reset();
  s_->data.reset();
  s_->file.reset();
  std::error_code ec;
  fs::remove(s_->path, ec);
}

void ShardFileWriter::append(const torch::Tensor& stored_in, const torch::Tensor& labels_in) {
  State& s = *s_;
  DL_REQUIRE(!s.closed, s.path << ": append after close");
  std::vector<int64_t> want{stored_in.dim() > 0 ? stored_in.size(0) : -1};
  want.insert(want.end(), s.spec.sample_shape.begin(), s.spec.sample_shape.end());
  DL_REQUIRE(stored_in.sizes().vec() == want && stored_in.scalar_type() == s.spec.stored_dtype(),
             s.path << ": rows of shape " << stored_in.sizes() << " " << stored_in.scalar_type()
                    << " do not match the data set (" << s.spec.describe() << ")");
  const int64_t m = stored_in.size(0);
  DL_REQUIRE(s.written + m <= s.rows, s.path << ": " << s.written + m << " rows appended, but the shard was declared with "
                                             << s.rows);
  if (m == 0) return;
  torch::Tensor stored = stored_in.contiguous().cpu();
  torch::Tensor lab;
  const int64_t first = shard_first(s.where.total_samples, s.where.index, s.where.count) + s.written;  // for messages
  if (s.spec.num_classes > 0) {
    DL_REQUIRE(labels_in.defined() && labels_in.dim() == 1 && labels_in.size(0) == m && !labels_in.is_floating_point(),
               s.path << ": expected " << m << " integer labels with the rows");
    lab = labels_in.to(torch::kCPU, torch::kInt32).contiguous();
    const int64_t lo = lab.min().item<int64_t>(), hi = lab.max().item<int64_t>();
    DL_REQUIRE(lo >= 0 && hi < s.spec.num_classes,
               s.path << ": label " << (lo < 0 ? lo : hi) << " out of range [0, " << s.spec.num_classes << ")");
  } else {
    DL_REQUIRE(!labels_in.defined(), s.path << ": labels given for a data set without classes");
  }
  torch::Tensor as_double = stored.to(torch::kFloat64);
  const double mn = as_double.min().item<double>(), mx = as_double.max().item<double>();
  DL_REQUIRE(std::isfinite(mn) && std::isfinite(mx) && !as_double.isnan().any().item<bool>(),
             s.path << ": rows " << first << ".." << first + m - 1 << " hold non-finite values (NaN or Inf)");
  s.write_rows(static_cast<const uint8_t*>(stored.data_ptr()), lab.defined() ? lab.data_ptr<int32_t>() : nullptr,
               s.written, m);
  s.vmin = std::min(s.vmin, mn);
  s.vmax = std::max(s.vmax, mx);
  s.written += m;
}

void ShardFileWriter::append_decoded(const torch::Tensor& decoded, const torch::Tensor& labels) {
  append(encode_samples(s_->spec, decoded), labels);
}

void ShardFileWriter::close() {
  State& s = *s_;
  DL_REQUIRE(!s.closed, s.path << ": closed twice");
  DL_REQUIRE(s.written == s.rows, s.path << ": only " << s.written << " of the declared " << s.rows << " rows were written");
  h5::write_double(s.file.get(), "value_min", s.vmin);
  h5::write_double(s.file.get(), "value_max", s.vmax);
  s.labels.reset();
  s.data.reset();
  DL_CHECK_HDF5(H5Fflush(s.file.get(), H5F_SCOPE_GLOBAL));
  s.file.reset();
  s.closed = true;
  H5garbage_collect();  // HDF5 keeps freed structures on its own free lists: a long job writes many files
}

int64_t ShardFileWriter::rows_written() const { return s_->written; }
int64_t ShardFileWriter::rows() const { return s_->rows; }
const std::string& ShardFileWriter::path() const { return s_->path; }

struct DatasetWriter::State {
  std::string out, tmp;
  DatasetSpec spec;
  int64_t total = 0;
  WriteOptions opt;
  std::string id;
  int64_t written = 0;
  bool finished = false;
  int shard = -1;  // the open shard
  int64_t shard_end = 0;
  std::unique_ptr<ShardFileWriter> writer;
  std::unique_ptr<ProgressBar> bar;

  int64_t first_of(int k) const { return shard_first(total, k, opt.num_shards); }
  void open_shard(int k) {
    shard = k;
    shard_end = first_of(k + 1);
    writer = std::make_unique<ShardFileWriter>((fs::path(tmp) / shard_file_name(k, opt.num_shards)).string(), spec,
                                               ShardPlacement{k, opt.num_shards, total, id}, shard_end - first_of(k), opt);
  }
  void close_shard() {
    writer->close();
    writer.reset();
    shard = -1;
  }
};

void validate(const WriteOptions& options, const std::string& out_dir) {
  DL_REQUIRE(options.num_shards >= 1, out_dir << ": --shards=" << options.num_shards << " (expected >= 1)");
  DL_REQUIRE(options.deflate >= 0 && options.deflate <= 9, "--deflate=" << options.deflate << " (expected 0..9)");
  DL_REQUIRE(options.chunk_rows >= 0, "--chunk_rows=" << options.chunk_rows << " (expected >= 0)");
}

DatasetWriter::DatasetWriter(std::string out_dir, DatasetSpec spec, int64_t total_samples, WriteOptions options)
    : s_(std::make_unique<State>()) {
  hdf5_silence_errors();
  spec.validate("output " + out_dir);
  DL_REQUIRE(!out_dir.empty(), "no output folder given (--out)");
  while (out_dir.size() > 1 && out_dir.back() == '/') out_dir.pop_back();
  validate(options, out_dir);
  DL_REQUIRE(total_samples >= options.num_shards,
             out_dir << ": " << total_samples << " samples cannot fill " << options.num_shards
                     << " shards (every shard needs at least one sample; the data set must not be empty)");
  check_output(out_dir, options.force);
  s_->out = out_dir;
  s_->tmp = out_dir + ".tmp-" + std::to_string(getpid());
  s_->spec = std::move(spec);
  s_->total = total_samples;
  s_->opt = options;
  s_->id = random_dataset_id();
  std::error_code ec;
  fs::remove_all(s_->tmp, ec);
  const fs::path parent = fs::path(s_->tmp).parent_path();
  if (!parent.empty()) fs::create_directories(parent, ec);
  DL_REQUIRE(fs::create_directory(s_->tmp, ec) && !ec,
             s_->tmp << ": cannot create the temporary output folder: " << ec.message());
  s_->bar = std::make_unique<ProgressBar>("writing " + out_dir, total_samples, options.show_progress);
}

DatasetWriter::~DatasetWriter() {
  if (!s_ || s_->finished) return;
  s_->writer.reset();
  std::error_code ec;
  fs::remove_all(s_->tmp, ec);
}

void DatasetWriter::append(const torch::Tensor& stored, const torch::Tensor& labels) {
  State& s = *s_;
  DL_REQUIRE(!s.finished, s.out << ": append after finish");
  DL_REQUIRE(stored.dim() >= 1, s.out << ": rows of shape " << stored.sizes() << " do not match the data set ("
                                      << s.spec.describe() << ")");
  const int64_t m = stored.size(0);
  DL_REQUIRE(s.written + m <= s.total, s.out << ": " << s.written + m << " rows appended, but the data set was declared with "
                                             << s.total);
  int64_t done = 0;
  while (done < m) {  // the rows are checked by each shard's writer, piece by piece
    const int64_t g = s.written + done;
    if (s.shard < 0 || g >= s.shard_end) {
      if (s.shard >= 0) s.close_shard();
      int k = 0;
      while (s.first_of(k + 1) <= g) ++k;
      s.open_shard(k);
    }
    const int64_t take = std::min(m - done, s.shard_end - g);
    s.writer->append(stored.narrow(0, done, take), labels.defined() && labels.dim() == 1 && labels.size(0) == m
                                                       ? labels.narrow(0, done, take) : labels);
    done += take;
  }
  s.written += m;
  s.bar->set(s.written);
}

void DatasetWriter::append_decoded(const torch::Tensor& decoded, const torch::Tensor& labels) {
  append(encode_samples(s_->spec, decoded), labels);
}

void DatasetWriter::finish() {
  State& s = *s_;
  DL_REQUIRE(!s.finished, s.out << ": finish called twice");
  DL_REQUIRE(s.written == s.total,
             s.out << ": only " << s.written << " of the declared " << s.total << " rows were written");
  if (s.shard >= 0) s.close_shard();
  std::error_code ec;
  // The destination may have appeared while we worked; re-check, then swap atomically per step.
  check_output(s.out, s.opt.force);
  std::string old;
  if (fs::exists(s.out)) {
    old = s.out + ".old-" + std::to_string(getpid());
    fs::remove_all(old, ec);
    fs::rename(s.out, old, ec);
    DL_REQUIRE(!ec, s.out << ": cannot move the old data set aside: " << ec.message());
  }
  fs::rename(s.tmp, s.out, ec);
  DL_REQUIRE(!ec, s.out << ": cannot rename " << s.tmp << " into place: " << ec.message());
  if (!old.empty()) fs::remove_all(old, ec);
  s.finished = true;
  s.bar->finish();
}

int64_t DatasetWriter::rows_written() const { return s_->written; }
const std::string& DatasetWriter::out_dir() const { return s_->out; }

}  // namespace driftlab::data
