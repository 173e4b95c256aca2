// Converters from common sources into the shard format, and the synthetic 2-D data sets.
// drift_data exposes each as a subcommand; tests call them directly.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

#include "data/writer.h"

namespace driftlab::data {

// Class names of well-known data sets: "mnist" (digits 0-9), "fashion-mnist"; {} otherwise.
std::vector<std::string> preset_class_names(const std::string& name);

// MNIST-style IDX files, raw or gzip-compressed (read transparently): images (magic 0x803,
// uint8 [n, H, W]) and optional labels (magic 0x801, uint8 [n]). Labels give
// num_classes = max(max label + 1, class_names.size()). Returns the number of samples.
int64_t convert_idx(const std::string& images_path, const std::string& labels_path, const std::string& out,
                    const WriteOptions& options, std::vector<std::string> class_names = {});

// A folder with one subfolder per class (sorted names = class ids, names kept as class_names)
// holding PNG files, all of one size. channels 0: those of the first image; otherwise every
// image is converted to 1 (luma), 3 or 4 channels.
int64_t convert_image_folder(const std::string& folder, const std::string& out, const WriteOptions& options,
                             int channels = 0);

struct CsvOptions {
  char delimiter = ',';
  bool header = false;                   // skip the first line
  int label_column = -1;                 // column holding an integer label; -1: no labels
  int64_t num_classes = 0;               // 0: max label + 1
  std::vector<std::string> class_names;  // optional
};
// One sample per line: float32 vectors (kind "points"), optionally with a label column.
int64_t convert_csv(const std::string& path, const std::string& out, const WriteOptions& options,
                    const CsvOptions& csv = {});

// Synthetic 2-D distributions: checkerboard, swissroll, 8gaussians, 25gaussians, moons, rings,
// bimodal, unequal (six Gaussians with weights 0.35 .. 0.05), nested (a ring holding 80% of the
// mass around a small core). Sample i is a pure function of (seed, i): rng::Key{seed, kToyData, 0, i}.
std::vector<std::string> toy_names();
// Number of modes (labels) of a toy distribution; 0 for swissroll (one continuous arm).
int64_t toy_num_modes(const std::string& name);
// Samples first .. first+n-1 as float32 [n, 2]; when `labels` is given it receives each mode.
torch::Tensor toy_points(const std::string& name, int64_t n, uint64_t seed, std::vector<int32_t>* labels = nullptr,
                         int64_t first = 0);
// Writes n toy samples (with per-mode labels when with_labels).
int64_t write_toy(const std::string& name, int64_t n, uint64_t seed, bool with_labels, const std::string& out,
                  const WriteOptions& options);

}  // namespace driftlab::data
