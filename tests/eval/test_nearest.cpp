// drift_eval nearest's pieces: the chunked nearest-row search against a brute-force reference, and
// the order of a class grid.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "eval/nearest.h"

namespace driftlab::eval {
namespace {

TEST(NearestRows, EqualsBruteForceForEveryChunkSize) {
  torch::manual_seed(3);
  const torch::Tensor pool = torch::randn({57, 12});
  torch::Tensor queries = torch::randn({9, 12});
  queries[4].copy_(pool[31]);  // an exact copy: distance 0, that row
  const torch::Tensor d = torch::cdist(queries.to(torch::kDouble), pool.to(torch::kDouble));
  auto [ref_d, ref_i] = d.min(1);
  for (int64_t chunk : {1, 5, 16, 57, 1000}) {
    auto [dist, where] = nearest_rows(queries, pool, chunk);
    EXPECT_TRUE(torch::equal(where, ref_i)) << "chunk " << chunk << ": " << where << " vs " << ref_i;
    EXPECT_TRUE(torch::allclose(dist.to(torch::kDouble), ref_d, 1e-4, 1e-3)) << "chunk " << chunk;
    EXPECT_EQ(where[4].item<int64_t>(), 31);
    EXPECT_LT(dist[4].item<double>(), 1e-3);
  }
}

TEST(ClassGrid, FirstSamplesOfEachClassInRowsWithEmptyCells) {
  // classes of samples 0..6: 2 0 2 1 0 0 2
  const std::vector<int64_t> labels = {2, 0, 2, 1, 0, 0, 2};
  EXPECT_EQ(class_grid_order(labels, 3, 2), (std::vector<int64_t>{1, 4, 3, -1, 0, 2}));
  EXPECT_EQ(class_grid_order(labels, 3, 1), (std::vector<int64_t>{1, 3, 0}));
  // labels outside [0, classes) (unlabelled -1, or classes not drawn) are skipped
  EXPECT_EQ(class_grid_order({-1, 5, 0}, 2, 1), (std::vector<int64_t>{2, -1}));
}

}  // namespace
}  // namespace driftlab::eval
