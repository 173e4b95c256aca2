// Pictures of a set of samples shaped like a data set's: an image grid, or a 2-D scatter over
// reference points (training pictures, drift_sample's PNG).
#pragma once

#include <string>

#include <torch/types.h>

#include "common/image.h"
#include "data/format.h"

namespace driftlab::data {

// Why samples of this data set cannot be drawn ("" when they can): images need 1 or 3
// channels, vectors at least 2 coordinates. Callers check it once, before training, and skip
// the pictures with one warning instead of failing later.
std::string picture_unsupported(const DatasetSpec& spec);

// Images [n, C, H, W] in [-1, 1] -> a grid; points [n, D], D >= 2 -> a scatter (blue) of the
// first two coordinates over those of the reference points (grey, may be undefined), with axes,
// `title` and a legend where the build has cairo (common/plot.h). Other shapes: UserError naming
// the data set's sample shape.
Image picture(const DatasetSpec& spec, const torch::Tensor& samples, const torch::Tensor& reference, int cols = 0,
              const std::string& title = "");

}  // namespace driftlab::data
