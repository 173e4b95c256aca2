// Step draws, rank slices and the prefetch thread (see loader.h).
#include "data/loader.h"

#include <torch/torch.h>

#include <unordered_map>

#include "common/check.h"
#include "common/rng.h"
#include "common/timer.h"

namespace driftlab::data {
namespace {

// k distinct positions of [0, n) in draw order: a partial Fisher-Yates shuffle over a virtual
// identity array (only swapped entries are stored), so the cost is O(k) whatever n is.
std::vector<int64_t> distinct_positions(rng::Draw& draw, int64_t n, int64_t k) {
  std::unordered_map<int64_t, int64_t> moved;
  auto at = [&](int64_t i) {
    auto it = moved.find(i);
    return it == moved.end() ? i : it->second;
  };
  std::vector<int64_t> out(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) {
    const int64_t j = i + static_cast<int64_t>(draw.below(static_cast<uint64_t>(n - i)));
    const int64_t vi = at(i), vj = at(j);
    out[static_cast<size_t>(i)] = vj;
    moved[j] = vi;
  }
  return out;
}

}  // namespace

StepIndices draw_step_indices(const ShardSet& data, uint64_t seed, const StepRequest& req) {
  DL_REQUIRE(req.pos_per_class >= 0 && req.unc_per_class >= 0,
             "step request: pos_per_class " << req.pos_per_class << ", unc_per_class " << req.unc_per_class
                                            << " (expected >= 0)");
  StepIndices out;
  const int64_t n = data.size();
  out.positives.reserve(req.classes.size() * static_cast<size_t>(req.pos_per_class));
  out.unconditional.reserve(req.classes.size() * static_cast<size_t>(req.unc_per_class));
  for (size_t j = 0; j < req.classes.size(); ++j) {
    const int64_t c = req.classes[j];
    const std::vector<int64_t>* pool = nullptr;
    if (c != kAnyClass) {
      pool = &data.class_indices(c);
      DL_REQUIRE(!pool->empty() || req.pos_per_class == 0,
                 "data set " << data.path() << ": class " << c
                             << (data.spec().class_names.empty() ? "" : " (" + data.spec().class_names[static_cast<size_t>(c)] + ")")
                             << " has no samples, but step " << req.step << " asks for its positives");
    }
    const int64_t pool_n = pool ? static_cast<int64_t>(pool->size()) : n;
    rng::Draw pos(rng::Key{seed, rng::Stream::kData, req.step, 2 * j});
    std::vector<int64_t> picks;
    if (req.pos_per_class <= pool_n) {
      picks = distinct_positions(pos, pool_n, req.pos_per_class);
    } else {
      for (int64_t i = 0; i < req.pos_per_class; ++i)
        picks.push_back(static_cast<int64_t>(pos.below(static_cast<uint64_t>(pool_n))));
    }
    for (int64_t p : picks) out.positives.push_back(pool ? (*pool)[static_cast<size_t>(p)] : p);
    rng::Draw unc(rng::Key{seed, rng::Stream::kData, req.step, 2 * j + 1});
    for (int64_t i = 0; i < req.unc_per_class; ++i)
      out.unconditional.push_back(static_cast<int64_t>(unc.below(static_cast<uint64_t>(n))));
  }
  return out;
}

StepBatch load_step(const ShardSet& data, uint64_t seed, const StepRequest& req, int rank, int world) {
  DL_REQUIRE(world >= 1 && rank >= 0 && rank < world, "rank " << rank << " of world size " << world << " is invalid");
  const StepIndices all = draw_step_indices(data, seed, req);
  auto slice = [&](const std::vector<int64_t>& v, int64_t& offset, int64_t& total) {
    total = static_cast<int64_t>(v.size());
    const auto [begin, end] = rank_slice(total, rank, world);
    offset = begin;
    return std::vector<int64_t>(v.begin() + begin, v.begin() + end);
  };
  StepBatch b;
  b.step = req.step;
  const std::vector<int64_t> pos = slice(all.positives, b.pos_offset, b.pos_total);
  const std::vector<int64_t> unc = slice(all.unconditional, b.unc_offset, b.unc_total);
  b.positives = data.read(pos);
  b.pos_labels = data.labels_of(pos);
  b.unconditional = data.read(unc);
  b.unc_labels = data.labels_of(unc);
  return b;
}

PrefetchLoader::PrefetchLoader(std::shared_ptr<const ShardSet> data, LoaderOptions options, Plan plan)
    : data_(std::move(data)), opt_(options), plan_(std::move(plan)), next_(options.first_step) {
  DL_REQUIRE(opt_.depth >= 1, "prefetch depth " << opt_.depth << " (expected >= 1)");
  DL_REQUIRE(opt_.world >= 1 && opt_.rank >= 0 && opt_.rank < opt_.world,
             "rank " << opt_.rank << " of world size " << opt_.world << " is invalid");
  DL_CHECK(data_ && plan_, "PrefetchLoader needs a data set and a plan");
  thread_ = std::thread([this] { run(); });
}

PrefetchLoader::~PrefetchLoader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void PrefetchLoader::run() {
  hdf5_silence_errors();  // HDF5's automatic error printing is per thread; we report errors ourselves
  uint64_t step = opt_.first_step;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || static_cast<int>(queue_.size()) < opt_.depth; });
      if (stop_) return;
    }
    Item item;
    Stopwatch busy;
    try {
      StepRequest req = plan_(step);
      req.step = step;
      item.batch = load_step(*data_, opt_.seed, req, opt_.rank, opt_.world);
    } catch (...) {
      item.error = std::current_exception();
    }
    const bool failed = static_cast<bool>(item.error);
    {
      std::lock_guard<std::mutex> lock(mu_);
      loading_ += busy.seconds();
      queue_.push_back(std::move(item));
    }
    cv_.notify_all();
    if (failed) return;  // the consumer gets the error at this step; nothing after it is valid
    ++step;
  }
}

StepBatch PrefetchLoader::next() {
  Stopwatch wait;
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !queue_.empty(); });
  waited_ += wait.seconds();
  // A failed step stays at the front, so every later call reports the same error.
  if (queue_.front().error) std::rethrow_exception(queue_.front().error);
  Item item = std::move(queue_.front());
  queue_.pop_front();
  ++next_;
  lock.unlock();
  cv_.notify_all();
  return std::move(item.batch);
}

uint64_t PrefetchLoader::next_step() const {
  std::lock_guard<std::mutex> lock(mu_);
  return next_;
}

double PrefetchLoader::load_seconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return loading_;
}

double PrefetchLoader::wait_seconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return waited_;
}

}  // namespace driftlab::data
