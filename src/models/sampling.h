// One-step sampling, shared by drift_sample and the trainer's pictures: global sample i is
// f(noise(seed, i), class_i, alpha_i) with one forward pass, whatever batch or rank computes it.
#pragma once

#include <cstdint>

#include <torch/types.h>

#include "common/precision.h"
#include "common/rng.h"
#include "models/generators.h"

namespace driftlab::models {

// Samples for global indices [first_index, first_index + labels.size(0)), noise drawn from
// (seed, stream, step, index). labels int64 [m] (num_classes = unconditional), alpha float [m].
// Runs under NoGrad in batches of at most `batch` rows, in `precision` (bf16: autocast, the output
// layer in fp32); returns float32 [m, sample_shape...] on CPU.
torch::Tensor generate(GeneratorImpl& gen, uint64_t seed, rng::Stream stream, uint64_t step,
                       int64_t first_index, const torch::Tensor& labels, const torch::Tensor& alpha,
                       int64_t batch = 256, torch::Device device = torch::kCPU,
                       Precision precision = Precision::kFp32);

}  // namespace driftlab::models
