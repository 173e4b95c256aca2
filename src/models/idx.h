// Raw MNIST-style IDX files (idx3 uint8 images, idx1 uint8 labels): drift_encoder's --images path
// (the other one, --data, reads src/data's shards) and the MNIST data of the models tests. Values
// are decoded like src/data decodes images: [N, 1, H, W] float in [-1, 1].
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>

namespace driftlab::models {

// The first min(max_count, N) images (max_count <= 0: all). UserError naming the file when it is
// missing, truncated or not an idx3 uint8 file.
torch::Tensor load_idx_images(const std::string& path, int64_t max_count = 0);
// The first min(max_count, N) labels as int64 [N].
torch::Tensor load_idx_labels(const std::string& path, int64_t max_count = 0);

}  // namespace driftlab::models
