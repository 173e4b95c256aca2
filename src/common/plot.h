// Scatter plots a reader can read: axes with a scale, a title and a legend, drawn with cairo (a
// well-kept 2-D graphics library) where the build found it (DRIFTLAB_WITH_CAIRO), else the plain
// Canvas of image.h (points only, no text). Used for every picture of 2-D samples: the trainer's,
// drift_sample's and drift_eval compare's.
//
//   plot::Scatter s;
//   s.title = "step 4000";
//   s.series.push_back({data_xy, {150, 150, 150}, 0.35f, "data (20000)"});
//   s.series.push_back({samples_xy, {30, 90, 200}, 0.6f, "generated (10000)"});
//   write_png("samples.png", plot::draw(s));
#pragma once

#include <string>
#include <vector>

#include <torch/types.h>

#include "common/image.h"

namespace driftlab::plot {

struct Series {
  torch::Tensor xy;   // [n, 2] points (any float dtype, CPU)
  Rgb color;
  float alpha = 0.6f;
  std::string label;  // legend entry; empty: not in the legend
};

struct Scatter {
  std::vector<Series> series;  // drawn in order (the last on top)
  std::string title;           // empty: none
  int size = 720;              // width = height in pixels
};

// Equal scales on both axes (shapes are not distorted), bounds fitting every series with a margin.
Image draw(const Scatter& scatter);

// Whether draw() has text, axes and a legend (this build has cairo).
bool has_axes();

// Tick positions for an axis over [lo, hi]: multiples of 1, 2 or 5 x 10^k, about `target` of them.
std::vector<double> ticks(double lo, double hi, int target = 6);

}  // namespace driftlab::plot
