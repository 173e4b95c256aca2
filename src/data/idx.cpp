// IDX reader (see idx.h).
#include "data/idx.h"

#include <zlib.h>

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>

#include "common/check.h"

namespace driftlab::data {

IdxFile::IdxFile(const std::string& path, uint32_t ndim) : path_(path) {
  std::error_code ec;
  DL_REQUIRE(std::filesystem::is_regular_file(path, ec), path << ": cannot open it: no such file");
  f_ = gzopen(path.c_str(), "rb");
  DL_REQUIRE(f_ != nullptr, path << ": cannot open it");
  const uint32_t magic = read_be32();
  DL_REQUIRE(magic == (0x0800u | ndim), path << ": IDX magic 0x" << std::hex << magic << " (expected 0x"
                                             << (0x0800u | ndim) << std::dec << ": unsigned bytes, " << ndim
                                             << (ndim == 1 ? " dimension)" : " dimensions)"));
  for (uint32_t i = 0; i < ndim; ++i) {
    const int64_t d = read_be32();
    DL_REQUIRE(d > 0 && (i == 0 || d <= 65536), path << ": IDX dimension " << i << " is " << d << " (expected a positive size)");
    dims_.push_back(d);
  }
}

IdxFile::~IdxFile() {
  if (f_) gzclose(f_);
}

void IdxFile::read(void* buf, size_t n, const char* what) {
  size_t done = 0;
  while (done < n) {
    const unsigned step = static_cast<unsigned>(std::min<size_t>(n - done, 1u << 30));
    const int got = gzread(f_, static_cast<char*>(buf) + done, step);
    if (got < 0) {
      int err = 0;
      const char* msg = gzerror(f_, &err);
      DL_REQUIRE(false, path_ << ": cannot read " << what << ": " << (msg ? msg : "zlib error") << " (corrupt file?)");
    }
    DL_REQUIRE(got > 0, path_ << ": the file ends early while reading " << what << " (truncated?)");
    done += static_cast<size_t>(got);
  }
}

uint32_t IdxFile::read_be32() {
  unsigned char b[4];
  read(b, 4, "the IDX header");
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
}

torch::Tensor load_idx_images(const std::string& path, int64_t max_count) {
  IdxFile f(path, 3);
  const auto& d = f.dims();
  const int64_t n = max_count > 0 ? std::min(max_count, d[0]) : d[0];
  auto raw = torch::empty({n, 1, d[1], d[2]}, torch::kUInt8);
  f.read(raw.data_ptr<uint8_t>(), static_cast<size_t>(raw.numel()), "the images");
  return raw.to(torch::kFloat).div_(127.5).sub_(1.0);
}

torch::Tensor load_idx_labels(const std::string& path, int64_t max_count) {
  IdxFile f(path, 1);
  const int64_t n = max_count > 0 ? std::min(max_count, f.dims()[0]) : f.dims()[0];
  auto raw = torch::empty({n}, torch::kUInt8);
  f.read(raw.data_ptr<uint8_t>(), static_cast<size_t>(n), "the labels");
  return raw.to(torch::kLong);
}

}  // namespace driftlab::data
