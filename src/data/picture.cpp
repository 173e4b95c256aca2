// Sample pictures (see picture.h).
#include "data/picture.h"

#include <torch/torch.h>

#include <algorithm>

#include "common/check.h"

namespace driftlab::data {

std::string picture_unsupported(const DatasetSpec& spec) {
  const auto shape = spec.decoded_shape();
  if (shape.size() == 3 && (shape[0] == 1 || shape[0] == 3)) return "";
  if (shape.size() == 1 && shape[0] >= 2) return "";
  std::string d = spec.describe();
  if (shape.size() == 3)
    return "pictures draw images of 1 or 3 channels; this data set has samples of " + d;
  return "pictures draw images [C, H, W] or vectors of at least 2 coordinates (the first two are drawn); this data "
         "set has samples of " + d;
}

Image picture(const DatasetSpec& spec, const torch::Tensor& samples, const torch::Tensor& reference, int cols) {
  if (samples.dim() == 4) return image_grid(samples, cols, -1.f, 1.f);
  DL_REQUIRE(samples.dim() == 2 && samples.size(1) >= 2,
             "pictures need images [n, C, H, W] or points [n, D] with D >= 2; this data set has samples of "
                 << spec.describe());
  // Vectors of more than 2 coordinates: the plane of the first two.
  const torch::Tensor xy = samples.slice(1, 0, 2);
  const torch::Tensor ref = reference.defined() && reference.dim() == 2 && reference.size(1) >= 2
                                ? reference.slice(1, 0, 2)
                                : torch::Tensor();
  std::vector<torch::Tensor> sets{xy};
  if (ref.defined()) sets.push_back(ref);
  const auto b = Canvas::fit_bounds(sets);
  // Square axes: the same data extent per pixel in x and y, so shapes are not distorted.
  const float span = std::max(b[1] - b[0], b[3] - b[2]);
  const float cx = (b[0] + b[1]) / 2, cy = (b[2] + b[3]) / 2;
  Canvas c(640, 640, cx - span / 2, cx + span / 2, cy - span / 2, cy + span / 2);
  if (ref.defined()) c.points(ref, {150, 150, 150}, 1, 0.35f);
  c.points(xy, {30, 90, 200}, 1, 0.6f);
  return c.image();
}

}  // namespace driftlab::data
