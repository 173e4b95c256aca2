// Scatter plots (src/common/plot.h): tick positions in closed form; a drawn plot has the series'
// colour where its points are, a white background, and (with cairo) dark frame and text pixels.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/plot.h"

namespace driftlab::plot {
namespace {

void expect_ticks(double lo, double hi, const std::vector<double>& want) {
  const std::vector<double> got = ticks(lo, hi);
  ASSERT_EQ(got.size(), want.size()) << lo << ".." << hi;
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-12) << lo << ".." << hi << " #" << i;
}

TEST(Plot, TicksAreRoundStepsInsideTheRange) {
  expect_ticks(0, 1, {0, 0.2, 0.4, 0.6, 0.8, 1.0});      // raw step 1/6: 2 x 0.1
  expect_ticks(-2.3, 2.5, {-2, -1, 0, 1, 2});            // raw 0.8: 1
  expect_ticks(3, 40, {5, 10, 15, 20, 25, 30, 35, 40});  // raw 6.2: 5
  expect_ticks(0.0011, 0.0019, {0.0011, 0.0012, 0.0013, 0.0014, 0.0015, 0.0016, 0.0017, 0.0018, 0.0019});  // raw 1.3e-4: 1e-4
}

TEST(Plot, PointsInTheirColourOnWhiteWithAFrameWhenCairoIsThere) {
  Scatter s;
  s.size = 300;
  s.title = "test";
  s.series.push_back({torch::randn({400, 2}) * 0.1, {30, 90, 200}, 1.0f, "generated (400)"});
  const Image img = draw(s);
  ASSERT_EQ(img.width, 300);
  ASSERT_EQ(img.height, 300);
  ASSERT_EQ(img.channels, 3);
  int64_t white = 0, blue = 0, dark = 0;
  for (size_t i = 0; i < img.pixels.size(); i += 3) {
    const int r = img.pixels[i], g = img.pixels[i + 1], b = img.pixels[i + 2];
    white += r == 255 && g == 255 && b == 255;
    blue += std::abs(r - 30) < 20 && std::abs(g - 90) < 20 && std::abs(b - 200) < 20;
    dark += r < 90 && g < 90 && b < 90;
  }
  const int64_t n = 300 * 300;
  EXPECT_GT(white, n / 2);  // the background
  EXPECT_GT(blue, 100);     // the points (and the legend's dot)
  if (has_axes()) {
    EXPECT_GT(dark, 500) << "frame (4 x 216 pixels), ticks and text";
  } else {
    EXPECT_EQ(dark, 0) << "points only";
  }
}

}  // namespace
}  // namespace driftlab::plot
