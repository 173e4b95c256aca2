// Bucketed gradient averaging (see grad_buckets.h).
#include "comm/grad_buckets.h"

#include <torch/torch.h>

#include <map>
#include <memory>
#include <tuple>

#include "comm/replica_sync.h"

namespace driftlab::comm {

GradientBuckets::GradientBuckets(Communicator& comm, std::vector<torch::Tensor> params, BucketOptions options)
    : comm_(comm), options_(options) {
  DL_REQUIRE(options.first_bucket_bytes > 0 && options.bucket_cap_bytes > 0,
             "gradient buckets: first_bucket_bytes (" << options.first_bucket_bytes << ") and bucket_cap_bytes ("
                                                      << options.bucket_cap_bytes << ") must be positive");
  params_ = std::move(params);
  std::vector<int64_t> layout;
  for (size_t i = 0; i < params_.size(); ++i) {
    DL_REQUIRE(params_[i].defined(), "gradient buckets: parameter " << i << " is undefined");
    if (!params_[i].requires_grad()) continue;
    layout.push_back(static_cast<int64_t>(params_[i].scalar_type()));
    layout.push_back(params_[i].numel());
  }
  RankComparison cmp = compare_across_ranks(comm_, layout);
  DL_REQUIRE(!cmp.length_differs, "gradient buckets: the ranks pass different numbers of trainable parameters (this rank "
                                  << layout.size() / 2 << "); every rank must build the same model");
  DL_REQUIRE(cmp.differing.empty(), "gradient buckets: trainable parameter #" << cmp.differing[0] / 2
                                        << " has a different dtype or size on some rank; every rank must build the same model");

  // Open bucket per (dtype, device), and whether that key has closed its first bucket yet.
  using Key = std::tuple<int, int, int>;
  struct Open {
    Bucket bucket;
    bool first_closed = false;
  };
  std::map<Key, Open> open;
  std::vector<std::pair<size_t, Bucket>> closed;  // (position of the bucket's first parameter, bucket)
  auto close = [&](Open& o, size_t first_position) {
    closed.emplace_back(first_position, std::move(o.bucket));
    o.bucket = Bucket{o.bucket.dtype, o.bucket.device, {}, {}, 0, {}};
    o.first_closed = true;
  };
  std::map<Key, size_t> first_position;
  const size_t n = params_.size();
  for (size_t pos = 0; pos < n; ++pos) {
    const size_t i = n - 1 - pos;  // reverse registration order
    const torch::Tensor& p = params_[i];
    if (!p.requires_grad()) continue;
    Key key{static_cast<int>(p.scalar_type()), static_cast<int>(p.device().type()), static_cast<int>(p.device().index())};
    auto it = open.find(key);
    if (it == open.end()) it = open.emplace(key, Open{Bucket{p.scalar_type(), p.device(), {}, {}, 0, {}}, false}).first;
    Open& o = it->second;
    if (o.bucket.params.empty()) first_position[key] = pos;
    o.bucket.params.push_back(i);
    o.bucket.offsets.push_back(o.bucket.numel);
    o.bucket.numel += p.numel();
    const int64_t limit = o.first_closed ? options_.bucket_cap_bytes : options_.first_bucket_bytes;
    if (o.bucket.numel * p.element_size() >= limit) close(o, first_position[key]);
  }
  for (auto& [key, o] : open)
    if (!o.bucket.params.empty()) close(o, first_position[key]);
  // Bucket order = order of each bucket's first gradient, the same on every rank.
  std::stable_sort(closed.begin(), closed.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [pos, b] : closed) {
    b.flat = torch::empty({b.numel}, torch::TensorOptions().dtype(b.dtype).device(b.device));
    buckets_.push_back(std::move(b));
  }
}

namespace {
// Whether grad is exactly the bucket slot (a view sharing its memory and layout).
bool is_slot_view(const torch::Tensor& grad, const torch::Tensor& slot) {
  return grad.data_ptr() == slot.data_ptr() && grad.is_contiguous() && grad.numel() == slot.numel() &&
         grad.scalar_type() == slot.scalar_type() && grad.device() == slot.device();
}
}  // namespace

void GradientBuckets::flatten(Bucket& b) {
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < b.params.size(); ++k) {
    const torch::Tensor& p = params_[b.params[k]];
    torch::Tensor slot = b.flat.narrow(0, b.offsets[k], p.numel());
    const torch::Tensor& g = p.grad();
    if (!g.defined())
      slot.zero_();
    else if (!is_slot_view(g, slot))
      slot.copy_(g.reshape({-1}));
  }
}

void GradientBuckets::scatter(Bucket& b) {
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < b.params.size(); ++k) {
    torch::Tensor& p = params_[b.params[k]];
    torch::Tensor slot = b.flat.narrow(0, b.offsets[k], p.numel()).view(p.sizes());
    const torch::Tensor& g = p.grad();
    if (g.defined() && is_slot_view(g, slot)) continue;  // already holds the result
    if (options_.grads_as_bucket_views)
      p.mutable_grad() = slot;
    else if (g.defined())
      p.mutable_grad().copy_(slot);
    else
      p.mutable_grad() = slot.clone();
  }
}

void GradientBuckets::synchronize() {
  if (!options_.overlap) {
    for (auto& b : buckets_) {
      flatten(b);
      comm_.all_reduce_avg(b.flat);
      scatter(b);
    }
    return;
  }
  std::vector<std::unique_ptr<Work>> work;
  work.reserve(buckets_.size());
  for (auto& b : buckets_) {
    flatten(b);
    work.push_back(comm_.all_reduce_async(b.flat, ReduceOp::kAvg));
  }
  for (size_t i = 0; i < buckets_.size(); ++i) {
    work[i]->wait();
    scatter(buckets_[i]);
  }
}

}  // namespace driftlab::comm
