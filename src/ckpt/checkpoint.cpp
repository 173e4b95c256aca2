// Sharded checkpoint files and manifest (see checkpoint.h for the layout and the rules).
#include "ckpt/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <regex>
#include <sstream>

#include "common/check.h"
#include "common/fileio.h"
#include "ckpt/run_record.h"
#include "driftlab_config.h"

namespace fs = std::filesystem;

namespace driftlab::ckpt {
namespace {

constexpr char kShardMagic[8] = {'D', 'L', 'S', 'H', 'A', 'R', 'D', '1'};
constexpr uint64_t kAlign = 64;

std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    t[i] = c;
  }
  return t;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t crc32c_hw(const uint8_t* p, size_t n, uint32_t c) {
  uint64_t c64 = c;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c64 = __builtin_ia32_crc32di(c64, v);
  }
  c = static_cast<uint32_t>(c64);
  for (; n > 0; --n, ++p) c = __builtin_ia32_crc32qi(c, *p);
  return c;
}
#endif

// A temporary file that is removed (with its descriptor closed) unless commit() renamed it into
// place: a write that fails half way (ENOSPC, EIO) leaves nothing behind.
class TmpFile {
 public:
  explicit TmpFile(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    DL_REQUIRE(fd_ >= 0, "cannot create '" << path_ << "': " << errno_text());
  }
  ~TmpFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  TmpFile(const TmpFile&) = delete;
  TmpFile& operator=(const TmpFile&) = delete;
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  // fsync, close (both can report a deferred write error, e.g. on NFS) and rename to `target`.
  void commit(const std::string& target) {
    DL_REQUIRE(::fsync(fd_) == 0, "cannot fsync '" << path_ << "': " << errno_text());
    const int fd = fd_;
    fd_ = -1;
    DL_REQUIRE(::close(fd) == 0, "cannot close '" << path_ << "': " << errno_text());
    DL_REQUIRE(::rename(path_.c_str(), target.c_str()) == 0,
               "cannot rename '" << path_ << "' to '" << target << "': " << errno_text());
    path_.clear();
  }

 private:
  std::string path_;
  int fd_ = -1;
};

std::string shard_name(int rank) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "shard_r%05d.bin", rank);
  return buf;
}

int64_t numel_of(const google::protobuf::RepeatedField<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

uint32_t crc32c(const void* data, size_t n, uint32_t crc) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~crc;
#if defined(__x86_64__)
  static const bool hw = __builtin_cpu_supports("sse4.2");
  if (hw) return ~crc32c_hw(p, n, c);
#endif
  static const std::array<uint32_t, 256> table = make_crc_table();
  for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
  return ~c;
}

std::string step_dir_name(uint64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08llu", static_cast<unsigned long long>(step));
  return buf;
}

proto::DType to_proto_dtype(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return proto::FLOAT32;
    case torch::kFloat64: return proto::FLOAT64;
    case torch::kInt32: return proto::INT32;
    case torch::kInt64: return proto::INT64;
    case torch::kUInt8: return proto::UINT8;
    case torch::kBFloat16: return proto::BFLOAT16;
    case torch::kFloat16: return proto::FLOAT16;
    default: throw UserError(std::string("checkpoint: unsupported tensor dtype ") + c10::toString(t));
  }
}

torch::ScalarType from_proto_dtype(proto::DType d) {
  switch (d) {
    case proto::FLOAT32: return torch::kFloat32;
    case proto::FLOAT64: return torch::kFloat64;
    case proto::INT32: return torch::kInt32;
    case proto::INT64: return torch::kInt64;
    case proto::UINT8: return torch::kUInt8;
    case proto::BFLOAT16: return torch::kBFloat16;
    case proto::FLOAT16: return torch::kFloat16;
    default: throw UserError("checkpoint: unknown dtype code " + std::to_string(static_cast<int>(d)));
  }
}

std::vector<proto::TensorEntry> write_shard(const std::string& step_dir, int rank,
                                            const std::vector<TensorToSave>& tensors) {
  std::error_code ec;
  fs::create_directories(step_dir, ec);
  DL_REQUIRE(!ec, "cannot create checkpoint directory '" << step_dir << "': " << ec.message());
  const std::string name = shard_name(rank), path = step_dir + "/" + name;
  TmpFile file(path + ".tmp");
  const int fd = file.fd();
  const std::string& tmp = file.path();
  std::vector<proto::TensorEntry> entries;
  uint64_t offset = 0;
  write_all(fd, kShardMagic, sizeof kShardMagic, tmp);
  offset += sizeof kShardMagic;
  static const char kZeros[kAlign] = {0};
  for (const auto& t : tensors) {
    torch::Tensor c = t.tensor.detach().to(torch::kCPU).contiguous();
    const uint64_t pad = (kAlign - offset % kAlign) % kAlign;
    write_all(fd, kZeros, pad, tmp);
    offset += pad;
    const uint64_t nbytes = c.numel() * c.element_size();
    write_all(fd, c.data_ptr(), nbytes, tmp);
    proto::TensorEntry e;
    e.set_name(t.name);
    e.set_dtype(to_proto_dtype(c.scalar_type()));
    const auto shape = t.full_shape.empty() ? c.sizes().vec() : t.full_shape;
    for (int64_t d : shape) e.add_shape(d);
    e.set_shard(name);
    e.set_offset(offset);
    e.set_nbytes(nbytes);
    e.set_crc32c(crc32c(c.data_ptr(), nbytes));
    e.set_flat_begin(t.flat_begin);
    e.set_flat_end(t.flat_begin + c.numel());
    DL_CHECK(e.flat_end() <= numel_of(e.shape()), "slice of " << t.name << " beyond its full shape");
    entries.push_back(std::move(e));
    offset += nbytes;
  }
  file.commit(path);
  fsync_dir(step_dir);
  return entries;
}

void commit_manifest(const std::string& step_dir, proto::Manifest manifest) {
  manifest.set_format_version(kFormatVersion);
  manifest.set_created_utc(utc_now());
  manifest.set_driftlab_version(DRIFTLAB_VERSION);
  std::vector<std::string> shards;
  for (const auto& e : manifest.tensors())
    if (std::find(shards.begin(), shards.end(), e.shard()) == shards.end()) shards.push_back(e.shard());
  manifest.clear_shards();
  for (const auto& s : shards) {
    DL_REQUIRE(fs::exists(step_dir + "/" + s), "checkpoint " << step_dir << ": shard " << s << " missing before the manifest");
    manifest.add_shards(s);
  }
  std::string bytes;
  DL_CHECK(manifest.SerializeToString(&bytes), "manifest serialization failed");
  write_file_atomic(step_dir + "/" + kManifestName, bytes);
}

std::string discard_step(const std::string& step_dir) {
  std::error_code ec;
  fs::remove_all(step_dir, ec);
  if (ec) return "cannot remove '" + step_dir + "': " + ec.message();
  fsync_dir(fs::path(step_dir).parent_path().string());
  return "";
}

proto::Manifest read_manifest(const std::string& step_dir) {
  const std::string path = step_dir + "/" + kManifestName;
  std::error_code ec;
  DL_REQUIRE(fs::is_regular_file(path, ec), "checkpoint manifest '" << path << "' not found (an incomplete or missing checkpoint)");
  std::FILE* f = std::fopen(path.c_str(), "rb");
  DL_REQUIRE(f, "cannot open '" << path << "': " << errno_text());
  std::string bytes;
  char buf[1 << 16];
  size_t r;
  while ((r = std::fread(buf, 1, sizeof buf, f)) > 0) bytes.append(buf, r);
  std::fclose(f);
  proto::Manifest m;
  DL_REQUIRE(m.ParseFromString(bytes), "checkpoint manifest '" << path << "' is corrupt (not a valid Manifest message)");
  DL_REQUIRE(m.format_version() >= kOldestReadableVersion && m.format_version() <= kFormatVersion,
             "checkpoint manifest '" << path << "' has format version " << m.format_version() << ", this build reads versions "
             << kOldestReadableVersion << " to " << kFormatVersion
             << (m.format_version() > kFormatVersion ? " (it was written by a newer driftlab: update this build)" : ""));
  for (const auto& e : m.tensors()) {
    DL_REQUIRE(e.flat_begin() >= 0 && e.flat_begin() <= e.flat_end() && e.flat_end() <= numel_of(e.shape()),
               "checkpoint manifest '" << path << "': tensor " << e.name() << " has an invalid slice");
    const int64_t elem = c10::elementSize(from_proto_dtype(e.dtype()));
    DL_REQUIRE(static_cast<int64_t>(e.nbytes()) == (e.flat_end() - e.flat_begin()) * elem,
               "checkpoint manifest '" << path << "': tensor " << e.name() << " byte size does not match its shape");
  }
  return m;
}

torch::Tensor read_entry(const std::string& step_dir, const proto::TensorEntry& e) {
  const std::string path = step_dir + "/" + e.shard();
  int fd = ::open(path.c_str(), O_RDONLY);
  DL_REQUIRE(fd >= 0, "checkpoint shard '" << path << "' cannot be opened: " << errno_text());
  struct stat st{};
  ::fstat(fd, &st);
  if (static_cast<uint64_t>(st.st_size) < e.offset() + e.nbytes()) {
    ::close(fd);
    throw UserError("checkpoint shard '" + path + "' is truncated: " + std::to_string(st.st_size) +
                    " bytes, tensor " + e.name() + " needs " + std::to_string(e.offset() + e.nbytes()));
  }
  torch::Tensor t = torch::empty({e.flat_end() - e.flat_begin()}, from_proto_dtype(e.dtype()));
  char* dst = static_cast<char*>(t.data_ptr());
  uint64_t done = 0;
  while (done < e.nbytes()) {
    ssize_t r = ::pread(fd, dst + done, e.nbytes() - done, static_cast<off_t>(e.offset() + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      ::close(fd);
      throw UserError("cannot read tensor " + e.name() + " from '" + path + "': " + errno_text());
    }
    done += static_cast<uint64_t>(r);
  }
  ::close(fd);
  DL_REQUIRE(crc32c(dst, e.nbytes()) == e.crc32c(),
             "checkpoint shard '" << path << "' is corrupt: checksum mismatch in tensor " << e.name());
  if (e.flat_begin() == 0 && e.flat_end() == numel_of(e.shape())) return t.reshape(std::vector<int64_t>(e.shape().begin(), e.shape().end()));
  return t;
}

torch::Tensor read_tensor(const std::string& step_dir, const proto::Manifest& m, const std::string& name) {
  std::vector<const proto::TensorEntry*> parts;
  for (const auto& e : m.tensors())
    if (e.name() == name) parts.push_back(&e);
  DL_REQUIRE(!parts.empty(), "checkpoint " << step_dir << " has no tensor named '" << name << "'");
  const auto& first = *parts.front();
  const std::vector<int64_t> shape(first.shape().begin(), first.shape().end());
  const int64_t n = numel_of(first.shape());
  if (parts.size() == 1 && first.flat_begin() == 0 && first.flat_end() == n) return read_entry(step_dir, first);
  std::sort(parts.begin(), parts.end(), [](auto* a, auto* b) { return a->flat_begin() < b->flat_begin(); });
  torch::Tensor full = torch::empty({n}, from_proto_dtype(first.dtype()));
  int64_t covered = 0;
  for (const auto* p : parts) {
    DL_REQUIRE(p->flat_begin() == covered && p->dtype() == first.dtype(),
               "checkpoint " << step_dir << ": slices of '" << name << "' do not tile the tensor (gap or overlap at " << covered << ")");
    full.slice(0, p->flat_begin(), p->flat_end()).copy_(read_entry(step_dir, *p));
    covered = p->flat_end();
  }
  DL_REQUIRE(covered == n, "checkpoint " << step_dir << ": slices of '" << name << "' cover " << covered << " of " << n << " elements");
  return full.reshape(shape);
}

void load_weights(const std::string& step_dir, const proto::Manifest& manifest,
                  const std::vector<std::pair<std::string, torch::Tensor>>& named, const std::string& prefix) {
  torch::NoGradGuard no_grad;
  for (const auto& [name, t] : named) {
    torch::Tensor v = read_tensor(step_dir, manifest, prefix + name);
    DL_REQUIRE(v.sizes() == t.sizes(), "checkpoint " << step_dir << ": " << prefix << name << " has shape " << v.sizes()
                                                     << ", the model built from the flags has " << t.sizes());
    torch::Tensor target = t;
    target.copy_(v);
  }
}

std::vector<std::string> tensor_names(const proto::Manifest& m) {
  std::vector<std::string> names;
  for (const auto& e : m.tensors())
    if (std::find(names.begin(), names.end(), e.name()) == names.end()) names.push_back(e.name());
  return names;
}

std::vector<StepDir> list_complete(const std::string& root, std::vector<std::string>* incomplete) {
  std::vector<StepDir> out;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return out;
  static const std::regex kStep("step_([0-9]+)");
  for (const auto& ent : fs::directory_iterator(root, ec)) {
    std::smatch m;
    const std::string base = ent.path().filename().string();
    if (!ent.is_directory() || !std::regex_match(base, m, kStep)) continue;
    try {
      proto::Manifest man = read_manifest(ent.path().string());
      out.push_back({man.step(), ent.path().string()});
    } catch (const UserError&) {
      if (incomplete) incomplete->push_back(ent.path().string());
    }
  }
  std::sort(out.begin(), out.end(), [](const StepDir& a, const StepDir& b) { return a.step < b.step; });
  if (incomplete) std::sort(incomplete->begin(), incomplete->end());
  return out;
}

std::vector<std::string> prune(const std::string& root, int keep_last, uint64_t keep_every) {
  std::vector<std::string> incomplete, removed;
  auto done = list_complete(root, &incomplete);
  if (done.empty()) return removed;
  const uint64_t newest = done.back().step;
  for (size_t i = 0; i < done.size(); ++i) {
    const bool recent = static_cast<int>(done.size() - i) <= std::max(keep_last, 1);
    const bool milestone = keep_every > 0 && done[i].step % keep_every == 0;
    if (recent || milestone) continue;
    fs::remove_all(done[i].path);
    removed.push_back(done[i].path);
  }
  // Incomplete directories older than the newest complete step are crash leftovers; a newer one
  // may be a checkpoint being written right now, so it stays.
  static const std::regex kStep("step_([0-9]+)");
  for (const auto& p : incomplete) {
    std::smatch m;
    const std::string base = fs::path(p).filename().string();
    if (std::regex_match(base, m, kStep) && std::stoull(m[1]) < newest) {
      fs::remove_all(p);
      removed.push_back(p);
    }
  }
  return removed;
}

std::string describe(const proto::Manifest& m, bool with_flags) {
  std::ostringstream os;
  os << "step " << m.step() << ", written by " << m.world_size() << " rank(s) at " << m.created_utc()
     << " (driftlab " << m.driftlab_version() << ", format " << m.format_version() << ")\n";
  os << "cursors: seed " << m.cursors().seed() << ", next step " << m.cursors().next_step()
     << ", samples seen " << m.cursors().samples_seen() << "\n";
  if (!m.config().model_description().empty()) os << "model: " << m.config().model_description() << "\n";
  os << "precision: " << (m.config().precision().empty() ? "fp32 (not recorded)" : m.config().precision()) << "\n";
  uint64_t total = 0;
  for (const auto& e : m.tensors()) total += e.nbytes();
  os << "shards: " << m.shards_size() << ", tensors: " << tensor_names(m).size() << " (" << m.tensors_size()
     << " entries), " << total / 1048576.0 << " MiB\n";
  for (const auto& e : m.tensors()) {
    os << "  " << e.name() << "  " << c10::toString(from_proto_dtype(e.dtype())) << " [";
    for (int i = 0; i < e.shape_size(); ++i) os << (i ? ", " : "") << e.shape(i);
    os << "]";
    if (!(e.flat_begin() == 0 && e.flat_end() == numel_of(e.shape())))
      os << " slice [" << e.flat_begin() << ", " << e.flat_end() << ")";
    os << "  " << e.shard() << "@" << e.offset() << "\n";
  }
  if (with_flags) {
    const std::map<std::string, std::string> sorted = flat_record(typed_record(m));
    os << "flags (" << sorted.size() << "):\n";
    for (const auto& [k, v] : sorted) os << "  --" << k << "=" << v << "\n";
  }
  return os.str();
}

}  // namespace driftlab::ckpt
