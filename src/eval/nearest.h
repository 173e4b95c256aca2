// drift_eval nearest: pictures a person looks at, and whether the samples are copies.
//   * a class grid: one row per class, the first `per_class` samples of each (unlabelled sets: a
//     near-square grid of the first per_class^2);
//   * a nearest-training-image panel: rows of generated samples, each followed by the row of their
//     nearest training images (Euclidean distance in pixels), so a reader sees they are not copies;
//   * the copy statistic: each generated sample's distance to its nearest training image, next to
//     the same for held-out real images (which the generator never saw): a memorising generator
//     sits far below the held-out distances, a generalising one near them.
//
//   eval::NearestConfig c;
//   c.generated = "runs/mnist/sampled-alpha1"; c.train = ".cache/data/mnist-train";
//   c.reference = ".cache/data/mnist-test"; c.grid_png = "grid.png"; c.png = "nearest.png";
//   eval::nearest(c);   // prints the copy statistic, writes both pictures
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

namespace driftlab::eval {

struct NearestConfig {
  std::string generated;      // generated images (any format drift_eval reads)
  std::string train;          // the training set the generator learned from
  std::string reference;      // held-out real images for the copy statistic's baseline; empty: none
  std::string png;            // the nearest-training-image panel; empty: none
  std::string grid_png;       // the class grid; empty: none
  int per_class = 10;         // grid: samples per class (per row); >= 1
  int panel_rows = 2;         // panel: rows of 10 samples (each followed by their nearest images); >= 1
  int64_t max_samples = 1000; // copy statistic: generated and held-out images scored; >= 10
  int threads = 0;            // LibTorch intra-op threads, set by the tool; 0: all cores
};

// UserError naming the flag and the bad value.
void validate(const NearestConfig& config);

// Prints the copy statistic and writes the pictures asked for. Returns the exit code (0).
int nearest(const NearestConfig& config);

// For every row of `queries` [n, d], the Euclidean distance to its nearest row of `pool` [m, d]
// and that row's index, computing the distances `chunk` pool rows at a time (memory O(n chunk)).
std::pair<torch::Tensor, torch::Tensor> nearest_rows(const torch::Tensor& queries, const torch::Tensor& pool,
                                                     int64_t chunk = 8192);

// The order of a class grid: for each class 0..num_classes-1 in turn, the indices of its first
// `per_class` samples in `labels` (-1 where a class has fewer: an empty cell).
std::vector<int64_t> class_grid_order(const std::vector<int64_t>& labels, int64_t num_classes, int per_class);

}  // namespace driftlab::eval
