// Scatter plots (see plot.h).
#include "common/plot.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common/check.h"
#include "driftlab_config.h"

#if DRIFTLAB_WITH_CAIRO
#include <cairo.h>
#endif

namespace driftlab::plot {
namespace {

// Square bounds (equal scales) around every series, with a 5% margin.
std::array<double, 4> square_bounds(const Scatter& s) {
  std::vector<torch::Tensor> sets;
  for (const auto& x : s.series)
    if (x.xy.defined() && x.xy.numel() > 0) sets.push_back(x.xy);
  const auto b = sets.empty() ? std::array<float, 4>{-1, 1, -1, 1} : Canvas::fit_bounds(sets);
  const double span = std::max<double>({b[1] - b[0], b[3] - b[2], 1e-6});
  const double cx = (b[0] + b[1]) / 2.0, cy = (b[2] + b[3]) / 2.0;
  return {cx - span / 2, cx + span / 2, cy - span / 2, cy + span / 2};
}

#if DRIFTLAB_WITH_CAIRO
// "0.5", "-2", "1.25": as many decimals as the tick step needs.
std::string tick_label(double v, double step) {
  const int decimals = std::max(0, static_cast<int>(std::ceil(-std::log10(step) - 1e-9)));
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, std::abs(v) < step * 1e-9 ? 0.0 : v);
  return buf;
}

void set_rgb(cairo_t* cr, Rgb c, double alpha = 1.0) {
  cairo_set_source_rgba(cr, c[0] / 255.0, c[1] / 255.0, c[2] / 255.0, alpha);
}

Image draw_cairo(const Scatter& s) {
  const int W = s.size, H = s.size;
  const double left = 64, right = 16, top = s.title.empty() ? 16 : 40, bottom = 44;
  const double side = std::min(W - left - right, H - top - bottom);
  const auto b = square_bounds(s);
  auto px = [&](double x) { return left + (x - b[0]) / (b[1] - b[0]) * side; };
  auto py = [&](double y) { return top + side - (y - b[2]) / (b[3] - b[2]) * side; };

  cairo_surface_t* surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
  cairo_t* cr = cairo_create(surface);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);

  // The points, clipped to the plot area; each its own fill, so density shows as depth of colour.
  cairo_save(cr);
  cairo_rectangle(cr, left, top, side, side);
  cairo_clip(cr);
  const double r = std::max(1.0, s.size / 480.0);
  for (const auto& series : s.series) {
    if (!series.xy.defined() || series.xy.numel() == 0) continue;
    const torch::Tensor xy = series.xy.to(torch::kCPU, torch::kDouble).contiguous();
    const double* p = xy.data_ptr<double>();
    set_rgb(cr, series.color, series.alpha);
    for (int64_t i = 0; i < xy.size(0); ++i) {
      cairo_arc(cr, px(p[2 * i]), py(p[2 * i + 1]), r, 0, 2 * M_PI);
      cairo_fill(cr);
    }
  }
  cairo_restore(cr);

  // Frame, ticks and their labels.
  cairo_set_line_width(cr, 1);
  cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
  cairo_rectangle(cr, left + 0.5, top + 0.5, side, side);
  cairo_stroke(cr);
  cairo_set_font_size(cr, 12);
  cairo_text_extents_t ext;
  for (int axis = 0; axis < 2; ++axis) {
    const double lo = axis == 0 ? b[0] : b[2], hi = axis == 0 ? b[1] : b[3];
    const std::vector<double> t = ticks(lo, hi);
    const double step = t.size() > 1 ? t[1] - t[0] : hi - lo;
    for (double v : t) {
      const std::string label = tick_label(v, step);
      cairo_text_extents(cr, label.c_str(), &ext);
      if (axis == 0) {
        const double x = std::round(px(v)) + 0.5;
        cairo_move_to(cr, x, top + side);
        cairo_line_to(cr, x, top + side + 5);
        cairo_stroke(cr);
        cairo_move_to(cr, x - ext.width / 2 - ext.x_bearing, top + side + 8 + ext.height);
      } else {
        const double y = std::round(py(v)) + 0.5;
        cairo_move_to(cr, left - 5, y);
        cairo_line_to(cr, left, y);
        cairo_stroke(cr);
        cairo_move_to(cr, left - 8 - ext.width - ext.x_bearing, y + ext.height / 2);
      }
      cairo_show_text(cr, label.c_str());
    }
  }
  cairo_set_font_size(cr, 13);
  cairo_text_extents(cr, "x", &ext);
  cairo_move_to(cr, left + side / 2 - ext.width / 2, H - 8);
  cairo_show_text(cr, "x");
  cairo_save(cr);
  cairo_move_to(cr, 16, top + side / 2);
  cairo_rotate(cr, -M_PI / 2);
  cairo_show_text(cr, "y");
  cairo_restore(cr);
  if (!s.title.empty()) {
    cairo_set_font_size(cr, 15);
    cairo_text_extents(cr, s.title.c_str(), &ext);
    cairo_move_to(cr, left + side / 2 - ext.width / 2 - ext.x_bearing, 26);
    cairo_show_text(cr, s.title.c_str());
  }

  // Legend, top left inside the frame: a dot of each labelled series' colour and its label.
  cairo_set_font_size(cr, 12);
  double lw = 0;
  int entries = 0;
  for (const auto& series : s.series) {
    if (series.label.empty()) continue;
    cairo_text_extents(cr, series.label.c_str(), &ext);
    lw = std::max(lw, ext.x_advance);
    ++entries;
  }
  if (entries > 0) {
    const double line = 18, x0 = left + 8, y0 = top + 8, w = lw + 34, h = entries * line + 8;
    cairo_rectangle(cr, x0, y0, w, h);
    cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
    cairo_fill_preserve(cr);
    cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
    cairo_stroke(cr);
    int k = 0;
    for (const auto& series : s.series) {
      if (series.label.empty()) continue;
      const double cy = y0 + 4 + line * (k + 0.5);
      set_rgb(cr, series.color);
      cairo_arc(cr, x0 + 12, cy, 4, 0, 2 * M_PI);
      cairo_fill(cr);
      cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
      cairo_move_to(cr, x0 + 24, cy + 4);
      cairo_show_text(cr, series.label.c_str());
      ++k;
    }
  }

  cairo_surface_flush(surface);
  Image img;
  img.width = W, img.height = H, img.channels = 3;
  img.pixels.resize(static_cast<size_t>(W) * H * 3);
  const unsigned char* data = cairo_image_surface_get_data(surface);
  const int stride = cairo_image_surface_get_stride(surface);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const uint32_t v = *reinterpret_cast<const uint32_t*>(data + y * stride + 4 * x);  // xRGB, native order
      uint8_t* o = &img.pixels[(static_cast<size_t>(y) * W + x) * 3];
      o[0] = (v >> 16) & 0xff, o[1] = (v >> 8) & 0xff, o[2] = v & 0xff;
    }
  const cairo_status_t status = cairo_status(cr);
  cairo_destroy(cr);
  cairo_surface_destroy(surface);
  DL_REQUIRE(status == CAIRO_STATUS_SUCCESS, "plot: cairo failed: " << cairo_status_to_string(status));
  return img;
}
#endif

}  // namespace

std::vector<double> ticks(double lo, double hi, int target) {
  DL_REQUIRE(hi > lo && std::isfinite(lo) && std::isfinite(hi) && target >= 1, "plot::ticks: bad range");
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / mag;
  const double step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  std::vector<double> out;
  for (double k = std::ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k += 1) out.push_back(k * step);
  return out;
}

bool has_axes() { return DRIFTLAB_WITH_CAIRO; }

Image draw(const Scatter& s) {
#if DRIFTLAB_WITH_CAIRO
  return draw_cairo(s);
#else
  const auto b = square_bounds(s);
  Canvas c(s.size, s.size, static_cast<float>(b[0]), static_cast<float>(b[1]), static_cast<float>(b[2]),
           static_cast<float>(b[3]));
  for (const auto& series : s.series)
    if (series.xy.defined() && series.xy.numel() > 0) c.points(series.xy, series.color, 1, series.alpha);
  return c.image();
#endif
}

}  // namespace driftlab::plot
