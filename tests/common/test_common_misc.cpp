// Progress formatting, PNG round trip, image grid layout, the error types.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>

#include "common/check.h"
#include "common/image.h"
#include "common/progress.h"

namespace driftlab {
namespace {

TEST(Progress, FormatDuration) {
  EXPECT_EQ(ProgressBar::format_duration(5.2), "5s");
  EXPECT_EQ(ProgressBar::format_duration(125), "2m05s");
  EXPECT_EQ(ProgressBar::format_duration(3723), "1h02m03s");
  EXPECT_EQ(ProgressBar::format_duration(-1), "?");
}

TEST(Progress, CountsAndRate) {
  ProgressBar bar("test", 10, /*enabled=*/false);
  bar.add(3);
  bar.set(7);
  EXPECT_EQ(bar.done(), 7);
  EXPECT_GT(bar.rate(), 0.0);
  bar.finish();
}

TEST(Require, ThrowsUserErrorWithTheMessage) {
  try {
    DL_REQUIRE(1 + 1 == 3, "flag --x: expected 3, got " << 2);
    FAIL() << "no throw";
  } catch (const UserError& e) {
    EXPECT_STREQ(e.what(), "flag --x: expected 3, got 2");
  }
}

TEST(Png, RoundTripAndGrid) {
  auto imgs = torch::arange(0, 2 * 4 * 5 * 3, torch::kInt64).remainder(256).to(torch::kUInt8).reshape({2, 4, 5, 3});
  Image grid = image_grid(imgs, 2, 0, 1, /*padding=*/1);
  EXPECT_EQ(grid.width, 2 * 5 + 3);
  EXPECT_EQ(grid.height, 4 + 2);
  // Pixel (0, 0) of image 1 sits at x = 1 + 5 + 1, y = 1.
  EXPECT_EQ(grid.pixels[(1 * grid.width + 7) * 3 + 0], imgs[1][0][0][0].item<uint8_t>());
  const std::string path = (std::filesystem::temp_directory_path() / "driftlab_test_grid.png").string();
  write_png(path, grid);
  Image back = read_png(path);
  EXPECT_EQ(back.width, grid.width);
  EXPECT_EQ(back.height, grid.height);
  EXPECT_EQ(back.pixels, grid.pixels);
  std::remove(path.c_str());
  EXPECT_THROW(read_png(path), UserError);
}

TEST(Canvas, DrawsPointsWhereTheyAre) {
  Canvas c(11, 11, 0, 10, 0, 10);
  c.points(torch::tensor({{0.f, 10.f}}), {0, 0, 0}, 0, 1.0f);
  EXPECT_EQ(c.image().pixels[0], 0);          // top-left pixel is (x=0, y=10)
  EXPECT_EQ(c.image().pixels[3 * 60], 255);   // untouched elsewhere
}

}  // namespace
}  // namespace driftlab
