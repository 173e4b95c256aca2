// The per-step global draw of real samples and the prefetching loader the trainer calls.
//
// World-size invariance: for a step t the GLOBAL list of indices is a pure function of
// (seed, t, request); each rank computes it in full (cheap: integers only), then reads just its
// contiguous slice. Concatenating the slices of ranks 0..W-1 gives exactly the batch of W = 1.
//
// The global batch of one step, for request {classes c_0..c_{S-1}, P = pos_per_class,
// U = unc_per_class}:
//   positives:     S*P rows, slot-major: rows [j*P, (j+1)*P) are real samples of class c_j
//                  (c_j = kAnyClass draws from the whole data set: unconditional training);
//   unconditional: S*U rows, slot-major: rows [j*U, (j+1)*U) are drawn from the whole data set
//                  (the CFG negatives of slot j, docs/DRIFTING.md section 4).
// Slot j's positives use the draw rng::Key{seed, kData, t, 2j}, its unconditional samples
// Key{seed, kData, t, 2j+1}. Within one slot the positives are distinct when the class has at
// least P samples (otherwise drawn with replacement); unconditional samples are drawn with
// replacement. A class with no samples is a UserError naming the data set and the class.
//
// Rank r of W owns rows rank_slice(N, r, W) (common/slice.h) of each list
// separately (positives and unconditional), N = that list's length: the first N % W ranks hold
// one row more. Callers who need equal slices choose N divisible by W.
//
// Trainer use:
//   auto data = ShardSet::open(config.data);
//   PrefetchLoader loader(data, {.seed = s, .rank = r, .world = w, .depth = 4, .first_step = t0},
//                         [&](uint64_t t) { return StepRequest{t, classes_for_step(t), P, U}; });
//   for (t = t0; ...; ++t) { StepBatch b = loader.next(); ... b.positives ... }
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <torch/types.h>

#include "common/slice.h"
#include "data/reader.h"

namespace driftlab::data {

inline constexpr int64_t kAnyClass = -1;

struct StepRequest {
  uint64_t step = 0;
  std::vector<int64_t> classes;  // one class per slot, or kAnyClass; the trainer chooses them
  int64_t pos_per_class = 0;
  int64_t unc_per_class = 0;
};

// The global index lists of one step (same on every rank).
struct StepIndices {
  std::vector<int64_t> positives;      // size S*P, slot-major
  std::vector<int64_t> unconditional;  // size S*U, slot-major
};
StepIndices draw_step_indices(const ShardSet& data, uint64_t seed, const StepRequest& request);

// What rank r receives for one step: its slices, decoded (format.h: images [-1, 1], NCHW).
struct StepBatch {
  uint64_t step = 0;
  torch::Tensor positives;       // float32 [pos_rows, decoded_shape...]
  torch::Tensor pos_labels;      // int64 [pos_rows]: the data set's label of each row (-1 unlabelled)
  torch::Tensor unconditional;   // float32 [unc_rows, decoded_shape...]
  torch::Tensor unc_labels;      // int64 [unc_rows]
  int64_t pos_offset = 0, pos_total = 0;  // this slice is rows [offset, offset + rows) of the global list
  int64_t unc_offset = 0, unc_total = 0;
};

// Synchronous: draws, slices and reads one step for rank r of W.
StepBatch load_step(const ShardSet& data, uint64_t seed, const StepRequest& request, int rank, int world);

struct LoaderOptions {
  uint64_t seed = 0;
  int rank = 0, world = 1;
  int depth = 4;            // steps kept ready ahead of the consumer (bounded queue)
  uint64_t first_step = 0;  // the step next() returns first (resume: the checkpoint's step)
};

// A background thread that loads steps first_step, first_step+1, ... in order, keeping at most
// `depth` finished steps queued. `plan(t)` gives step t's request; it runs on the loader's thread,
// so it must be a pure function of t (e.g. classes from rng::Draw keyed by (seed, t)).
// An error while loading (a corrupt shard, a class without samples) is rethrown by next() for
// that step, with its original type and message.
class PrefetchLoader {
 public:
  using Plan = std::function<StepRequest(uint64_t step)>;
  PrefetchLoader(std::shared_ptr<const ShardSet> data, LoaderOptions options, Plan plan);
  ~PrefetchLoader();  // stops and joins the thread
  PrefetchLoader(const PrefetchLoader&) = delete;
  PrefetchLoader& operator=(const PrefetchLoader&) = delete;

  StepBatch next();           // blocks until the next step is ready
  uint64_t next_step() const;  // the step the next call to next() returns
  double wait_seconds() const;  // total time next() spent blocked (the loader's visible cost)
  double load_seconds() const;  // total time the thread spent drawing, reading and decoding

 private:
  struct Item {
    StepBatch batch;
    std::exception_ptr error;
  };
  void run();

  std::shared_ptr<const ShardSet> data_;
  LoaderOptions opt_;
  Plan plan_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool stop_ = false;
  uint64_t next_ = 0;
  double waited_ = 0, loading_ = 0;
  std::thread thread_;
};

}  // namespace driftlab::data
