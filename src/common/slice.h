// The one rule for splitting n items over the ranks of a world: rank r owns the contiguous range
// [begin, end); the first n % world ranks hold one item more than the others. Used for the
// generated rows of a step, the data loader's positives and unconditional rows, the optimizer
// slices of a checkpoint and the sampler's batches.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>

#include "common/check.h"

namespace driftlab {

inline std::pair<int64_t, int64_t> rank_slice(int64_t n, int rank, int world) {
  DL_CHECK(world >= 1 && rank >= 0 && rank < world && n >= 0, "rank " << rank << " of " << world << ", " << n << " items");
  const int64_t base = n / world, extra = n % world;
  const auto begin = [&](int64_t r) { return r * base + std::min<int64_t>(r, extra); };
  return {begin(rank), begin(rank + 1)};
}

}  // namespace driftlab
