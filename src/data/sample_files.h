// Samples in the formats evaluation tools read, next to the project's own shard format:
//   * a folder of PNG files, one per sample, one subfolder per class (clean-fid, torch-fidelity,
//     pytorch-fid read such folders); file names are the zero-padded global sample index, so
//     they sort in sample order; OUT/class_names.txt lists the subfolders in class-id order;
//   * a NumPy .npz archive (the evaluation suite of the guided-diffusion line of work): arr_0
//     holds the samples (uint8 [N, H, W, C] for images, float32 [N, ...] otherwise) and `labels`
//     int64 [N] the classes when there are any. Members are stored uncompressed, as np.savez does.
// The zip container is libzip's, the PNG coding libpng's.
//
// Reading: open_sample_set() takes any of the three (a shard data set, a PNG folder, an .npz
// file, or a folder holding samples.npz) and reads samples by index without loading the set, so
// drift_eval scores what the sampler wrote without a conversion step.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "data/format.h"

namespace driftlab::data {

// ---- PNG folders ----

// Subfolder of class c: its name made safe for a path ('/' and control characters become '_'),
// or "class_<c>" when the spec has no names. Empty for unlabelled specs (files sit in the root).
std::string png_class_folder(const DatasetSpec& spec, int64_t c);
// "<class folder>/<index zero-padded to the width of total - 1, at least 6 digits>.png"
std::string png_sample_path(const DatasetSpec& spec, int64_t index, int64_t label, int64_t total);
// Writes samples (decoded form, images only) as PNG files under `folder`, each atomically.
// labels: int64 [m] (ignored for unlabelled specs).
void write_png_samples(const std::string& folder, const DatasetSpec& spec, int64_t first_index, int64_t total,
                       const torch::Tensor& decoded, const torch::Tensor& labels);
// Writes folder/class_names.txt (one subfolder name per line, class-id order); no-op when unlabelled.
void write_png_class_list(const std::string& folder, const DatasetSpec& spec);

// ---- .npy / .npz ----

// The .npy header (magic, version 1.0, dict padded so the data start 64-byte aligned) of a
// C-order array: descr e.g. "|u1", "<f4", "<i8".
std::string npy_header(const std::string& descr, const std::vector<int64_t>& shape);
struct NpyInfo {
  std::string descr;
  std::vector<int64_t> shape;
  bool fortran_order = false;
  int64_t header_bytes = 0;  // where the data start
};
// Parses a .npy header; UserError naming `what` when it is not one or uses what we cannot read.
NpyInfo parse_npy_header(const std::string& bytes, const std::string& what);

// Produces rows [first, first + count) of arr_0 in the stored form (uint8 images [m, H, W, C] or
// float32 [m, ...]) and their int64 labels (undefined tensor when unlabelled). Called with
// consecutive ranges from 0 to N.
using RowSource = std::function<std::pair<torch::Tensor, torch::Tensor>(int64_t first, int64_t count)>;
// Writes an .npz with arr_0 (N rows of spec's stored form) and, when labelled, `labels`, streaming
// rows from `source` in blocks (memory does not grow with N). Written to "<path>.tmp", fsync'ed, renamed.
void write_npz(const std::string& path, const DatasetSpec& spec, int64_t num_rows, const RowSource& source);

// ---- reading any of them ----

class SampleSet {
 public:
  virtual ~SampleSet() = default;
  virtual const DatasetSpec& spec() const = 0;  // kind, shape, classes (names when known)
  virtual int64_t size() const = 0;
  virtual std::string path() const = 0;
  virtual std::string format() const = 0;  // "h5", "png" or "npz"
  // Decoded float32 [m, decoded_shape...] (images in [-1, 1], channels first) and int64 labels
  // (-1 when unlabelled) of the indices, in the order asked.
  virtual std::pair<torch::Tensor, torch::Tensor> read(const std::vector<int64_t>& indices) const = 0;
  bool labelled() const { return spec().num_classes > 0; }
};

// `path`: a shard data set (folder, file or glob), a PNG folder, an .npz file, or a folder
// holding samples.npz. For a PNG folder without class_names.txt, `reference` (may be null)
// names the classes the subfolders are matched against; else the sorted subfolder names are the
// classes. UserError naming the path when it is none of these.
std::unique_ptr<SampleSet> open_sample_set(const std::string& path, const DatasetSpec* reference = nullptr);

}  // namespace driftlab::data
