// Pictures for humans: PNG files, image grids and 2-D scatter plots with arrows.
// Used by the drift_field debugging view, the trainer's sample pictures and the sampler.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

namespace driftlab {

struct Image {
  int width = 0, height = 0, channels = 3;  // 1 (gray), 3 (RGB) or 4 (RGBA)
  std::vector<uint8_t> pixels;              // row-major, interleaved channels
};

// Writes atomically (temporary name, then rename); UserError naming the path on failure.
void write_png(const std::string& path, const Image& image);
// Reads any PNG as 8-bit gray, RGB or RGBA (palette and 16-bit are converted).
Image read_png(const std::string& path);

// A grid of images from a uint8 or float tensor [n, H, W, C] or [n, C, H, W] (C in {1, 3});
// floats are mapped from [lo, hi] to [0, 255]. `cols` <= 0 picks a near-square grid.
Image image_grid(const torch::Tensor& images, int cols = 0, float lo = -1.f, float hi = 1.f,
                 int padding = 2);

using Rgb = std::array<uint8_t, 3>;

// A 2-D plot canvas: data coordinates mapped to pixels, white background.
class Canvas {
 public:
  Canvas(int width, int height, float xmin, float xmax, float ymin, float ymax);
  // Bounds that fit all points of one or more [n, 2] tensors, with a margin.
  static std::array<float, 4> fit_bounds(const std::vector<torch::Tensor>& point_sets, float margin = 0.05f);

  void points(const torch::Tensor& xy, Rgb color, int radius = 1, float alpha = 0.6f);
  // Arrows from xy[i] to xy[i] + scale * dxy[i].
  void arrows(const torch::Tensor& xy, const torch::Tensor& dxy, float scale, Rgb color);
  void line(float x0, float y0, float x1, float y1, Rgb color);
  const Image& image() const { return img_; }

 private:
  void blend(int px, int py, Rgb c, float alpha);
  void to_pixel(float x, float y, float& px, float& py) const;
  Image img_;
  float xmin_, xmax_, ymin_, ymax_;
};

}  // namespace driftlab
