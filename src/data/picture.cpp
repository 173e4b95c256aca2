// Sample pictures (see picture.h).
#include "data/picture.h"

#include <torch/torch.h>

#include <algorithm>

#include "common/check.h"
#include "common/plot.h"

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

Image picture(const DatasetSpec& spec, const torch::Tensor& samples, const torch::Tensor& reference, int cols,
              const std::string& title) {
  if (samples.dim() == 4) return image_grid(samples, cols, -1.f, 1.f);
  DL_REQUIRE(samples.dim() == 2 && samples.size(1) >= 2,
             "pictures need images [n, C, H, W] or points [n, D] with D >= 2; this data set has samples of "
                 << spec.describe());
  // Vectors of more than 2 coordinates: the plane of the first two.
  plot::Scatter s;
  s.title = title;
  if (reference.defined() && reference.dim() == 2 && reference.size(1) >= 2)
    s.series.push_back({reference.slice(1, 0, 2), {150, 150, 150}, 0.35f, "data (" + std::to_string(reference.size(0)) + ")"});
  s.series.push_back({samples.slice(1, 0, 2), {30, 90, 200}, 0.6f, "generated (" + std::to_string(samples.size(0)) + ")"});
  return plot::draw(s);
}

}  // namespace driftlab::data
