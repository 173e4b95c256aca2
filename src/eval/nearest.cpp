// drift_eval nearest (see nearest.h).
#include "eval/nearest.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <numeric>

#include <torch/torch.h>

#include "common/check.h"
#include "common/image.h"
#include "data/sample_files.h"

namespace driftlab::eval {
namespace {

constexpr int kPanelCols = 10;
constexpr int64_t kReadBlock = 8192;  // rows read from a set at a time

std::vector<int64_t> iota(int64_t begin, int64_t count) {
  std::vector<int64_t> v(static_cast<size_t>(count));
  std::iota(v.begin(), v.end(), begin);
  return v;
}

torch::Tensor flat(const torch::Tensor& t) { return t.reshape({t.size(0), -1}); }

// The distance to, and index of, each query's nearest among `total` pool rows that `rows(begin,
// count)` produces ([count, d]) `block` at a time: the expansion ||q||^2 + ||p||^2 - 2 q.p picks
// each block's nearest row, whose distance is then computed directly (the expansion cancels: an
// exact copy would read about 1e-3 instead of 0), and the blocks are merged on that distance.
std::pair<torch::Tensor, torch::Tensor> nearest_over_blocks(const torch::Tensor& queries, int64_t total, int64_t block,
                                                            const std::function<torch::Tensor(int64_t, int64_t)>& rows) {
  const torch::Tensor q = queries.to(torch::kFloat), q2 = q.pow(2).sum(1, true);
  torch::Tensor best = torch::full({q.size(0)}, std::numeric_limits<float>::infinity());
  torch::Tensor where = torch::zeros({q.size(0)}, torch::kLong);
  for (int64_t b = 0; b < total; b += block) {
    const torch::Tensor p = rows(b, std::min(block, total - b)).to(torch::kFloat);
    DL_REQUIRE(p.dim() == 2 && p.size(1) == q.size(1), "nearest: pool rows of " << p.size(1) << " values for queries of "
                                                                                 << q.size(1));
    const torch::Tensor d2 = q2 + p.pow(2).sum(1).unsqueeze(0) - 2 * q.matmul(p.t());
    const torch::Tensor i = std::get<1>(d2.min(1));
    const torch::Tensor exact = (q - p.index_select(0, i)).pow(2).sum(1);
    const torch::Tensor closer = exact < best;
    best = torch::where(closer, exact, best);
    where = torch::where(closer, i + b, where);
  }
  return {best.sqrt(), where};
}

// The nearest row of a whole sample set, read block by block.
std::pair<torch::Tensor, torch::Tensor> nearest_in_set(const torch::Tensor& queries, const data::SampleSet& set) {
  return nearest_over_blocks(queries, set.size(), kReadBlock,
                             [&](int64_t b, int64_t n) { return flat(set.read(iota(b, n)).first); });
}

double quantile_of(const torch::Tensor& v, double q) { return torch::quantile(v.to(torch::kDouble), q).item<double>(); }

// A grid of the images at `order` (-1: an empty, black cell), `cols` per row.
Image grid_of(const torch::Tensor& images, const std::vector<int64_t>& order, int cols) {
  torch::Tensor out = torch::full({static_cast<int64_t>(order.size()), images.size(1), images.size(2), images.size(3)}, -1.f);
  for (size_t k = 0; k < order.size(); ++k)
    if (order[k] >= 0) out[static_cast<int64_t>(k)].copy_(images[order[k]]);
  return image_grid(out, cols);
}

}  // namespace

std::pair<torch::Tensor, torch::Tensor> nearest_rows(const torch::Tensor& queries, const torch::Tensor& pool, int64_t chunk) {
  DL_REQUIRE(queries.dim() == 2 && pool.dim() == 2 && queries.size(1) == pool.size(1) && pool.size(0) > 0 && chunk > 0,
             "nearest_rows: queries [n, d] and a non-empty pool [m, d] expected");
  return nearest_over_blocks(queries, pool.size(0), chunk, [&](int64_t b, int64_t n) { return pool.narrow(0, b, n); });
}

std::vector<int64_t> class_grid_order(const std::vector<int64_t>& labels, int64_t num_classes, int per_class) {
  std::vector<int64_t> order(static_cast<size_t>(num_classes * per_class), -1);
  std::vector<int> filled(static_cast<size_t>(num_classes), 0);
  for (size_t i = 0; i < labels.size(); ++i) {
    const int64_t c = labels[i];
    if (c < 0 || c >= num_classes || filled[static_cast<size_t>(c)] >= per_class) continue;
    order[static_cast<size_t>(c * per_class + filled[static_cast<size_t>(c)]++)] = static_cast<int64_t>(i);
  }
  return order;
}

void validate(const NearestConfig& c) {
  DL_REQUIRE(!c.generated.empty(), "--generated is required: the generated images");
  DL_REQUIRE(!c.train.empty(), "--train is required: the training set the generator learned from");
  DL_REQUIRE(c.per_class >= 1 && c.per_class <= 100, "--per_class=" << c.per_class << ": expected 1 to 100");
  DL_REQUIRE(c.panel_rows >= 1 && c.panel_rows <= 20, "--panel_rows=" << c.panel_rows << ": expected 1 to 20");
  DL_REQUIRE(c.max_samples >= 10, "--max_samples=" << c.max_samples << ": expected at least 10");
}

int nearest(const NearestConfig& c) {
  validate(c);
  auto gen = data::open_sample_set(c.generated);
  auto train = data::open_sample_set(c.train);
  const auto& shape = gen->spec().decoded_shape();
  DL_REQUIRE(shape.size() == 3, "--generated holds " << gen->spec().describe() << ": nearest draws images only");
  DL_REQUIRE(train->spec().decoded_shape() == shape,
             "--generated holds " << gen->spec().describe() << " but --train holds " << train->spec().describe());
  const int64_t classes = gen->labelled() ? gen->spec().num_classes : 0;

  // The samples scored and drawn: enough to fill every class row as well.
  const int64_t n = std::min(gen->size(), std::max<int64_t>(c.max_samples, classes * std::max(c.per_class, c.panel_rows) * 4));
  auto [g, g_labels] = gen->read(iota(0, n));
  const std::vector<int64_t> labels(g_labels.data_ptr<int64_t>(), g_labels.data_ptr<int64_t>() + n);
  const int64_t scored = std::min(n, c.max_samples);
  std::fprintf(stderr, "nearest: %lld generated images against the %lld of %s...\n", static_cast<long long>(scored),
               static_cast<long long>(train->size()), c.train.c_str());

  // The panel's samples: row r holds the r-th sample of classes 0..9 (unlabelled: the first ones).
  std::vector<int64_t> panel;
  if (classes > 0) {
    const int64_t cols = std::min<int64_t>(classes, kPanelCols);
    const std::vector<int64_t> by_class = class_grid_order(labels, cols, c.panel_rows);
    for (int r = 0; r < c.panel_rows; ++r)
      for (int64_t k = 0; k < cols; ++k) panel.push_back(by_class[static_cast<size_t>(k * c.panel_rows + r)]);
  } else {
    for (int64_t i = 0; i < std::min<int64_t>(n, c.panel_rows * kPanelCols); ++i) panel.push_back(i);
  }
  // Everything scored plus the panel's samples, in one pass over the training set.
  std::vector<int64_t> query = iota(0, scored);
  for (int64_t i : panel)
    if (i >= scored) query.push_back(i);
  torch::Tensor qidx = torch::tensor(query, torch::kLong);
  auto [dist, where] = nearest_in_set(flat(g.index_select(0, qidx)), *train);

  const torch::Tensor gd = dist.narrow(0, 0, scored);
  std::printf("nearest training image (Euclidean distance in pixels, images in [-1, 1]; %s)\n", c.train.c_str());
  std::printf("%-34s %10s %10s %10s\n", "", "median", "5th pct", "min");
  std::printf("%-34s %10.3f %10.3f %10.3f\n", ("generated (" + std::to_string(scored) + ")").c_str(), quantile_of(gd, 0.5),
              quantile_of(gd, 0.05), gd.min().item<double>());
  if (!c.reference.empty()) {
    auto held = data::open_sample_set(c.reference);
    DL_REQUIRE(held->spec().decoded_shape() == shape,
               "--reference holds " << held->spec().describe() << " but --generated holds " << gen->spec().describe());
    const int64_t hn = std::min(held->size(), c.max_samples);
    auto [h, h_labels] = held->read(iota(0, hn));
    auto [hd, hw] = nearest_in_set(flat(h), *train);
    std::printf("%-34s %10.3f %10.3f %10.3f\n", ("held-out real (" + std::to_string(hn) + ")").c_str(), quantile_of(hd, 0.5),
                quantile_of(hd, 0.05), hd.min().item<double>());
    const double p1 = quantile_of(hd, 0.01);
    const double share = (gd < p1).to(torch::kDouble).mean().item<double>();
    std::printf("generated closer to a training image than 99%% of held-out images are: %.1f%% (held-out: 1%% by "
                "construction; a copying generator: near 100%%)\n", 100 * share);
  }

  if (!c.grid_png.empty()) {
    const std::vector<int64_t> order = classes > 0 ? class_grid_order(labels, classes, c.per_class)
                                                   : iota(0, std::min<int64_t>(n, c.per_class * c.per_class));
    write_png(c.grid_png, grid_of(g, order, c.per_class));
    std::printf("wrote %s (%s)\n", c.grid_png.c_str(),
                classes > 0 ? ("one row per class, " + std::to_string(c.per_class) + " samples each").c_str() : "the first samples");
  }
  if (!c.png.empty()) {
    // Rows of samples, each followed by the row of their nearest training images.
    std::vector<int64_t> pos_of(static_cast<size_t>(n), -1);
    for (size_t k = 0; k < query.size(); ++k) pos_of[static_cast<size_t>(query[k])] = static_cast<int64_t>(k);
    const int64_t cols = classes > 0 ? std::min<int64_t>(classes, kPanelCols) : kPanelCols;
    std::vector<int64_t> nearest_idx;
    for (int64_t i : panel) nearest_idx.push_back(i >= 0 ? where[pos_of[static_cast<size_t>(i)]].item<int64_t>() : 0);
    auto [t, t_labels] = train->read(nearest_idx);
    const int64_t rows = (static_cast<int64_t>(panel.size()) + cols - 1) / cols;
    torch::Tensor cells = torch::full({2 * rows * cols, shape[0], shape[1], shape[2]}, -1.f);
    for (size_t k = 0; k < panel.size(); ++k) {
      if (panel[k] < 0) continue;
      const int64_t r = static_cast<int64_t>(k) / cols, col = static_cast<int64_t>(k) % cols;
      cells[2 * r * cols + col].copy_(g[panel[k]]);
      cells[(2 * r + 1) * cols + col].copy_(t[static_cast<int64_t>(k)]);
    }
    write_png(c.png, image_grid(cells, static_cast<int>(cols)));
    std::printf("wrote %s (rows of generated samples, each followed by their nearest training images)\n", c.png.c_str());
  }
  return 0;
}

}  // namespace driftlab::eval
