// Sample pictures (see picture.h).
#include "data/picture.h"

#include <torch/torch.h>

#include <algorithm>

#include "common/check.h"

namespace driftlab::data {

Image picture(const DatasetSpec& spec, const torch::Tensor& samples, const torch::Tensor& reference, int cols) {
  if (samples.dim() == 4) return image_grid(samples, cols, -1.f, 1.f);
  DL_REQUIRE(samples.dim() == 2 && samples.size(1) == 2,
             "pictures need images [n, C, H, W] or 2-D points [n, 2]; this data set has samples of shape "
                 << spec.describe());
  std::vector<torch::Tensor> sets{samples};
  if (reference.defined()) sets.push_back(reference);
  const auto b = Canvas::fit_bounds(sets);
  // Square axes: the same data extent per pixel in x and y, so shapes are not distorted.
  const float span = std::max(b[1] - b[0], b[3] - b[2]);
  const float cx = (b[0] + b[1]) / 2, cy = (b[2] + b[3]) / 2;
  Canvas c(640, 640, cx - span / 2, cx + span / 2, cy - span / 2, cy + span / 2);
  if (reference.defined()) c.points(reference, {150, 150, 150}, 1, 0.35f);
  c.points(samples, {30, 90, 200}, 1, 0.6f);
  return c.image();
}

}  // namespace driftlab::data
