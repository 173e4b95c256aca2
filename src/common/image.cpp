// PNG I/O on libpng, image grids and a small rasteriser for scatter plots (see image.h).
#include "common/image.h"

#include <cerrno>
#include <cstring>

#include <png.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <memory>

#include "common/check.h"

namespace driftlab {

void write_png(const std::string& path, const Image& image) {
  DL_REQUIRE(image.width > 0 && image.height > 0, "write_png " << path << ": empty image");
  DL_REQUIRE(image.pixels.size() == static_cast<size_t>(image.width) * image.height * image.channels,
             "write_png " << path << ": pixel buffer size does not match " << image.width << "x"
                          << image.height << "x" << image.channels);
  const std::string tmp = path + ".tmp";
  png_image pi{};
  pi.version = PNG_IMAGE_VERSION;
  pi.width = image.width;
  pi.height = image.height;
  pi.format = image.channels == 1 ? PNG_FORMAT_GRAY : image.channels == 4 ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB;
  if (!png_image_write_to_file(&pi, tmp.c_str(), 0, image.pixels.data(), 0, nullptr)) {
    std::remove(tmp.c_str());
    throw UserError("cannot write PNG '" + path + "': " + pi.message);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    throw UserError("cannot rename '" + tmp + "' to '" + path + "': " + why);
  }
}

Image read_png(const std::string& path) {
  png_image pi{};
  pi.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&pi, path.c_str()))
    throw UserError("cannot read PNG '" + path + "': " + pi.message);
  Image img;
  const bool color = pi.format & PNG_FORMAT_FLAG_COLOR, alpha = pi.format & PNG_FORMAT_FLAG_ALPHA;
  pi.format = color ? (alpha ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB) : PNG_FORMAT_GRAY;
  img.width = pi.width;
  img.height = pi.height;
  img.channels = color ? (alpha ? 4 : 3) : 1;
  img.pixels.resize(PNG_IMAGE_SIZE(pi));
  if (!png_image_finish_read(&pi, nullptr, img.pixels.data(), 0, nullptr)) {
    png_image_free(&pi);
    throw UserError("corrupt PNG '" + path + "': " + pi.message);
  }
  return img;
}

Image image_grid(const torch::Tensor& images, int cols, float lo, float hi, int padding) {
  DL_REQUIRE(images.dim() == 4, "image_grid: expected [n, H, W, C] or [n, C, H, W], got " << images.sizes());
  torch::Tensor t = images.detach().to(torch::kCPU);
  // Channels-first when dim 1 is 1 or 3 and the last dim is not.
  if ((t.size(1) == 1 || t.size(1) == 3) && !(t.size(3) == 1 || t.size(3) == 3)) t = t.permute({0, 2, 3, 1});
  if (t.scalar_type() != torch::kUInt8)
    t = ((t.to(torch::kFloat32) - lo) * (255.f / (hi - lo))).round().clamp(0, 255).to(torch::kUInt8);
  t = t.contiguous();
  const int n = t.size(0), h = t.size(1), w = t.size(2), c = t.size(3);
  DL_REQUIRE(n > 0 && (c == 1 || c == 3), "image_grid: need n > 0 and 1 or 3 channels, got " << t.sizes());
  if (cols <= 0) cols = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(n))));
  const int rows = (n + cols - 1) / cols;
  Image img;
  img.channels = c;
  img.width = cols * w + (cols + 1) * padding;
  img.height = rows * h + (rows + 1) * padding;
  img.pixels.assign(static_cast<size_t>(img.width) * img.height * c, 40);
  const uint8_t* src = t.data_ptr<uint8_t>();
  for (int i = 0; i < n; ++i) {
    const int ox = padding + (i % cols) * (w + padding), oy = padding + (i / cols) * (h + padding);
    for (int y = 0; y < h; ++y)
      std::copy_n(src + (static_cast<size_t>(i) * h + y) * w * c, w * c,
                  img.pixels.begin() + ((static_cast<size_t>(oy) + y) * img.width + ox) * c);
  }
  return img;
}

Canvas::Canvas(int width, int height, float xmin, float xmax, float ymin, float ymax)
    : xmin_(xmin), xmax_(xmax), ymin_(ymin), ymax_(ymax) {
  DL_REQUIRE(width > 0 && height > 0 && xmax > xmin && ymax > ymin, "Canvas: empty size or bounds");
  img_.width = width;
  img_.height = height;
  img_.channels = 3;
  img_.pixels.assign(static_cast<size_t>(width) * height * 3, 255);
}

std::array<float, 4> Canvas::fit_bounds(const std::vector<torch::Tensor>& sets, float margin) {
  float x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const auto& s : sets) {
    if (s.numel() == 0) continue;
    auto f = s.detach().to(torch::kCPU, torch::kFloat32);
    auto fin = torch::isfinite(f).all(1);
    f = f.index({fin});
    if (f.size(0) == 0) continue;
    x0 = std::min(x0, f.select(1, 0).min().item<float>());
    x1 = std::max(x1, f.select(1, 0).max().item<float>());
    y0 = std::min(y0, f.select(1, 1).min().item<float>());
    y1 = std::max(y1, f.select(1, 1).max().item<float>());
  }
  if (!(x1 > x0)) { x0 = -1; x1 = 1; }
  if (!(y1 > y0)) { y0 = -1; y1 = 1; }
  const float mx = (x1 - x0) * margin, my = (y1 - y0) * margin;
  return {x0 - mx, x1 + mx, y0 - my, y1 + my};
}

void Canvas::to_pixel(float x, float y, float& px, float& py) const {
  px = (x - xmin_) / (xmax_ - xmin_) * (img_.width - 1);
  py = (ymax_ - y) / (ymax_ - ymin_) * (img_.height - 1);
}

void Canvas::blend(int px, int py, Rgb c, float alpha) {
  if (px < 0 || py < 0 || px >= img_.width || py >= img_.height) return;
  uint8_t* p = &img_.pixels[(static_cast<size_t>(py) * img_.width + px) * 3];
  for (int k = 0; k < 3; ++k) p[k] = static_cast<uint8_t>(std::lround(p[k] * (1 - alpha) + c[k] * alpha));
}

void Canvas::points(const torch::Tensor& xy, Rgb color, int radius, float alpha) {
  DL_REQUIRE(xy.dim() == 2 && xy.size(1) == 2, "Canvas::points: expected [n, 2], got " << xy.sizes());
  auto a = xy.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  auto acc = a.accessor<float, 2>();
  for (int64_t i = 0; i < a.size(0); ++i) {
    if (!std::isfinite(acc[i][0]) || !std::isfinite(acc[i][1])) continue;
    float px, py;
    to_pixel(acc[i][0], acc[i][1], px, py);
    for (int dy = -radius; dy <= radius; ++dy)
      for (int dx = -radius; dx <= radius; ++dx)
        if (dx * dx + dy * dy <= radius * radius + radius)
          blend(static_cast<int>(std::lround(px)) + dx, static_cast<int>(std::lround(py)) + dy, color, alpha);
  }
}

void Canvas::line(float x0, float y0, float x1, float y1, Rgb color) {
  float ax, ay, bx, by;
  to_pixel(x0, y0, ax, ay);
  to_pixel(x1, y1, bx, by);
  const int steps = std::max(1, static_cast<int>(std::ceil(std::max(std::fabs(bx - ax), std::fabs(by - ay)))));
  if (steps > 4 * (img_.width + img_.height)) return;  // far outside the canvas
  for (int s = 0; s <= steps; ++s) {
    const float t = static_cast<float>(s) / steps;
    blend(static_cast<int>(std::lround(ax + t * (bx - ax))), static_cast<int>(std::lround(ay + t * (by - ay))), color, 0.8f);
  }
}

void Canvas::arrows(const torch::Tensor& xy, const torch::Tensor& dxy, float scale, Rgb color) {
  DL_REQUIRE(xy.sizes() == dxy.sizes() && xy.dim() == 2 && xy.size(1) == 2,
             "Canvas::arrows: expected two [n, 2] tensors, got " << xy.sizes() << " and " << dxy.sizes());
  auto p = xy.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  auto d = dxy.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  auto pa = p.accessor<float, 2>();
  auto da = d.accessor<float, 2>();
  for (int64_t i = 0; i < p.size(0); ++i) {
    const float x0 = pa[i][0], y0 = pa[i][1], x1 = x0 + scale * da[i][0], y1 = y0 + scale * da[i][1];
    if (!std::isfinite(x1) || !std::isfinite(y1)) continue;
    line(x0, y0, x1, y1, color);
    // Arrow head: two short strokes back from the tip at +-25 degrees.
    const float len = std::hypot(x1 - x0, y1 - y0);
    if (len <= 0) continue;
    const float ux = (x0 - x1) / len, uy = (y0 - y1) / len, h = 0.3f * len;
    const float c = std::cos(0.436f), s = std::sin(0.436f);
    line(x1, y1, x1 + h * (ux * c - uy * s), y1 + h * (ux * s + uy * c), color);
    line(x1, y1, x1 + h * (ux * c + uy * s), y1 + h * (-ux * s + uy * c), color);
  }
}

}  // namespace driftlab
