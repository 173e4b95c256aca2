// IDX readers (see idx.h).
#include "models/idx.h"

#include <torch/torch.h>

#include <fstream>
#include <vector>

#include "common/check.h"

namespace driftlab::models {
namespace {

uint32_t read_be32(std::ifstream& in, const std::string& path) {
  unsigned char b[4];
  in.read(reinterpret_cast<char*>(b), 4);
  DL_REQUIRE(in.gcount() == 4, "IDX file " << path << ": truncated header");
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
}

// Returns the dimensions after checking the magic (0x0000 08 <ndim>: unsigned bytes).
std::vector<int64_t> read_header(std::ifstream& in, const std::string& path, uint32_t ndim) {
  DL_REQUIRE(in.good(), "IDX file " << path << ": cannot open it");
  const uint32_t magic = read_be32(in, path);
  DL_REQUIRE(magic == (0x0800u | ndim),
             "IDX file " << path << ": magic 0x" << std::hex << magic << std::dec << ", expected a " << ndim
                         << "-dimensional uint8 IDX file (magic 0x" << std::hex << (0x0800u | ndim) << ")");
  std::vector<int64_t> dims;
  for (uint32_t i = 0; i < ndim; ++i) dims.push_back(read_be32(in, path));
  return dims;
}

torch::Tensor read_body(std::ifstream& in, const std::string& path, std::vector<int64_t> shape) {
  auto t = torch::empty(shape, torch::kUInt8);
  const auto bytes = static_cast<std::streamsize>(t.numel());
  in.read(reinterpret_cast<char*>(t.data_ptr<uint8_t>()), bytes);
  DL_REQUIRE(in.gcount() == bytes, "IDX file " << path << ": truncated data (expected " << bytes << " bytes)");
  return t;
}

}  // namespace

torch::Tensor load_idx_images(const std::string& path, int64_t max_count) {
  std::ifstream in(path, std::ios::binary);
  auto dims = read_header(in, path, 3);
  const int64_t n = max_count > 0 ? std::min(max_count, dims[0]) : dims[0];
  auto raw = read_body(in, path, {n, 1, dims[1], dims[2]});
  return raw.to(torch::kFloat).div_(127.5).sub_(1.0);
}

torch::Tensor load_idx_labels(const std::string& path, int64_t max_count) {
  std::ifstream in(path, std::ios::binary);
  auto dims = read_header(in, path, 1);
  const int64_t n = max_count > 0 ? std::min(max_count, dims[0]) : dims[0];
  return read_body(in, path, {n}).to(torch::kLong);
}

}  // namespace driftlab::models
