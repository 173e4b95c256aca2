// Pictures of a set of samples shaped like a data set's: an image grid, or a 2-D scatter over
// reference points (training pictures, drift_sample's PNG).
#pragma once

#include <torch/types.h>

#include "common/image.h"
#include "data/format.h"

namespace driftlab::data {

// Images [n, C, H, W] in [-1, 1] -> a grid; points [n, 2] -> a scatter (blue) over the reference
// points (grey, may be undefined). Other shapes: UserError naming the data set's sample shape.
Image picture(const DatasetSpec& spec, const torch::Tensor& samples, const torch::Tensor& reference, int cols = 0);

}  // namespace driftlab::data
