// One-step sampling shared by drift_sample and the trainer's pictures: global sample i is
// f(noise(seed, i), class_i, alpha_i) with one forward pass, whatever batch or rank computes it.
// Also the pictures of a set of samples: an image grid, or a 2-D scatter over reference data.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <torch/types.h>

#include "common/image.h"
#include "common/rng.h"
#include "data/format.h"
#include "models/generators.h"

namespace driftlab::sampler {

// Samples for global indices [first_index, first_index + labels.size(0)), noise drawn from
// (seed, stream, step, index). labels int64 [m] (num_classes = unconditional), alpha float [m].
// Runs under NoGrad in batches of at most `batch` rows; returns float32 [m, sample_shape...] on CPU.
torch::Tensor generate(models::GeneratorImpl& gen, uint64_t seed, rng::Stream stream, uint64_t step,
                       int64_t first_index, const torch::Tensor& labels, const torch::Tensor& alpha,
                       int64_t batch = 256, torch::Device device = torch::kCPU);

// Images [n, C, H, W] in [-1, 1] -> a grid; points [n, 2] -> a scatter (blue) over the reference
// points (grey, may be undefined). Other shapes: UserError naming `what`.
Image picture(const data::DatasetSpec& spec, const torch::Tensor& samples, const torch::Tensor& reference,
              int cols = 0);

// A data set's spec as flat strings (stored in checkpoint manifests) and back.
std::map<std::string, std::string> spec_to_map(const data::DatasetSpec& spec);
data::DatasetSpec spec_from_map(const std::map<std::string, std::string>& m, const std::string& what);

}  // namespace driftlab::sampler
