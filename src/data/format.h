// The shard format: what a data set is, and how stored values map to what the trainer sees.
//
// A data set is a folder of HDF5 files `shard-KKKKK-of-NNNNN.h5` (docs/formats.md has the full
// layout). Each shard holds
//   /data    uint8 [n, H, W, C] (kind "image") or float32 [n, ...] (kinds "points", "tensor"),
//            chunked along n, Fletcher-32 checksummed (optionally deflate-compressed);
//   /labels  int32 [n], present exactly when num_classes > 0;
// and root attributes: schema, schema_version, kind, sample_shape, num_classes, class_names
// (when known), shard_index, shard_count, total_samples, dataset_id, decode_shift, decode_scale,
// value_min, value_max, source.
//
// Decoding (what the trainer gets): decoded = (stored - decode_shift) * decode_scale, as float32.
// Images additionally move channels first: [H, W, C] uint8 in [0, 255] becomes [C, H, W] float
// in [-1, 1] (shift 127.5, scale 1/127.5). Points and tensors keep their shape.
// This header has no I/O; the writer (writer.h) and reader (reader.h) implement it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <torch/types.h>

namespace driftlab::data {

inline constexpr const char* kSchemaName = "driftlab.shard";
inline constexpr int64_t kSchemaVersion = 1;

enum class SampleKind { kImage, kPoints, kTensor };
std::string kind_name(SampleKind kind);
// UserError naming `what` when the name is not a kind.
SampleKind parse_kind(const std::string& name, const std::string& what);

// Everything every shard of one data set agrees on.
struct DatasetSpec {
  SampleKind kind = SampleKind::kPoints;
  std::vector<int64_t> sample_shape;      // stored shape of one sample ([H, W, C] for images)
  int64_t num_classes = 0;                // 0: unlabelled
  std::vector<std::string> class_names;   // empty, or num_classes names
  double decode_shift = 0.0, decode_scale = 1.0;
  std::string source;                     // provenance, free text

  torch::ScalarType stored_dtype() const;  // uint8 for images, float32 otherwise
  std::vector<int64_t> decoded_shape() const;  // [C, H, W] for images, sample_shape otherwise
  int64_t sample_bytes() const;
  // A readable one-line form ("image [28, 28, 1] uint8, 10 classes").
  std::string describe() const;
  // UserError naming `what` when inconsistent (bad shape, names count, scale 0, ...).
  void validate(const std::string& what) const;
};

// The spec of an image data set: uint8 [H, W, C] decoded to [-1, 1].
DatasetSpec image_spec(int64_t height, int64_t width, int64_t channels, int64_t num_classes = 0,
                       std::vector<std::string> class_names = {});
// The spec of float32 samples of `shape`, decoded unchanged.
DatasetSpec float_spec(SampleKind kind, std::vector<int64_t> shape, int64_t num_classes = 0,
                       std::vector<std::string> class_names = {});

// Stored [n, sample_shape] (stored dtype) -> decoded float32 [n, decoded_shape].
torch::Tensor decode_samples(const DatasetSpec& spec, const torch::Tensor& stored);
// The inverse: decoded float [n, decoded_shape] -> stored dtype [n, sample_shape]; images are
// rounded and clamped to [0, 255] (so generated samples outside [-1, 1] saturate).
torch::Tensor encode_samples(const DatasetSpec& spec, const torch::Tensor& decoded);

// "shard-00002-of-00008.h5"
std::string shard_file_name(int index, int count);
// The first global row of shard k of K in a data set of `total` rows: shard k holds rows
// [shard_first(total, k, K), shard_first(total, k + 1, K)). The one rule of the format, used by
// the writers and by the sampler's units.
inline int64_t shard_first(int64_t total, int k, int count) { return total * k / count; }

// A data set's spec as flat strings (stored in checkpoint manifests) and back; UserError naming
// `what` when a key is missing or malformed.
std::map<std::string, std::string> spec_to_map(const DatasetSpec& spec);
DatasetSpec spec_from_map(const std::map<std::string, std::string>& m, const std::string& what);

}  // namespace driftlab::data
