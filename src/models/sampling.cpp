// One-step sampling (see sampling.h).
#include "models/sampling.h"

#include <torch/torch.h>

#include <algorithm>

#include "common/check.h"

namespace driftlab::models {

torch::Tensor generate(GeneratorImpl& gen, uint64_t seed, rng::Stream stream, uint64_t step,
                       int64_t first_index, const torch::Tensor& labels, const torch::Tensor& alpha,
                       int64_t batch, torch::Device device, Precision precision) {
  DL_REQUIRE(labels.dim() == 1 && alpha.dim() == 1 && labels.size(0) == alpha.size(0),
             "sampling: labels and alpha must be [m] tensors of one length, got " << labels.sizes() << " and " << alpha.sizes());
  DL_REQUIRE(batch > 0, "sampling: batch size must be positive, got " << batch);
  torch::NoGradGuard no_grad;
  AutocastScope autocast(precision, device);
  const bool was_training = gen.is_training();
  gen.eval();
  std::vector<torch::Tensor> out;
  const int64_t m = labels.size(0);
  for (int64_t b = 0; b < m; b += batch) {
    const int64_t rows = std::min(batch, m - b);
    auto in = draw_generator_inputs(gen, seed, stream, step, first_index + b, rows);
    auto style = in.style.defined() ? in.style.to(device) : torch::Tensor();
    out.push_back(gen.forward(in.noise.to(device), labels.slice(0, b, b + rows).to(device, torch::kLong),
                              alpha.slice(0, b, b + rows).to(device, torch::kFloat32), style)
                      .to(torch::kCPU, torch::kFloat32));
  }
  gen.train(was_training);
  if (out.empty()) {
    std::vector<int64_t> shape{0};
    for (int64_t d : gen.config().sample_shape) shape.push_back(d);
    return torch::empty(shape);
  }
  return torch::cat(out);
}

}  // namespace driftlab::models
