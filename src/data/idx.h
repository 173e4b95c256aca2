// MNIST-style IDX files (unsigned-byte IDX, raw or gzip-compressed: zlib reads both): one reader
// for the converter (`drift_data convert-idx`, streamed in blocks) and for the whole-file loaders
// used by `drift_encoder --images` and the models tests. Every error is a UserError that names the
// file and what was expected.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

struct gzFile_s;

namespace driftlab::data {

class IdxFile {
 public:
  // Opens `path` and reads its header; the magic must be 0x0800 | ndim (unsigned bytes, ndim
  // dimensions) and every dimension positive.
  IdxFile(const std::string& path, uint32_t ndim);
  ~IdxFile();
  IdxFile(const IdxFile&) = delete;
  IdxFile& operator=(const IdxFile&) = delete;

  const std::vector<int64_t>& dims() const { return dims_; }
  const std::string& path() const { return path_; }
  // Reads exactly n bytes of the body; `what` names them in the error of a short or corrupt file.
  void read(void* buf, size_t n, const char* what);

 private:
  uint32_t read_be32();
  std::string path_;
  gzFile_s* f_ = nullptr;
  std::vector<int64_t> dims_;
};

// The first min(max_count, N) images (max_count <= 0: all) of an idx3 file, decoded as the shard
// reader decodes images: [N, 1, H, W] float in [-1, 1].
torch::Tensor load_idx_images(const std::string& path, int64_t max_count = 0);
// The first min(max_count, N) labels of an idx1 file, int64 [N].
torch::Tensor load_idx_labels(const std::string& path, int64_t max_count = 0);

}  // namespace driftlab::data
