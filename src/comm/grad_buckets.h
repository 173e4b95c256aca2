// Gradient averaging for data parallelism, in buckets (the shape of PyTorch DDP's reducer).
//
// Gradients are copied into flat bucket buffers, each bucket is all-reduced (average) in one
// call, and the result is copied back into every parameter's .grad. Fewer, larger calls beat one
// call per parameter: latency is paid per call, and big messages reach the link's bandwidth.
// Bucket layout, fixed at construction and identical on every rank:
//  * parameters in REVERSE registration order (the order backward produces their gradients);
//  * one dtype and one device per bucket; a parameter is never split between buckets;
//  * per (dtype, device) the first bucket closes once it holds first_bucket_bytes (small, so
//    the first reduction could start early), later ones at bucket_cap_bytes;
//  * buckets are launched strictly in bucket order, so every rank issues the same collectives.
// Not here: broadcasting parameters at start and checking replicas agree (replica_sync.h).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "comm/communicator.h"

namespace driftlab::comm {

struct BucketOptions {
  int64_t first_bucket_bytes = int64_t{1} << 20;  // 1 MiB
  int64_t bucket_cap_bytes = int64_t{25} << 20;   // 25 MiB
  // Start every bucket's all-reduce before waiting for the first (all_reduce_async), so a
  // backend that progresses in the background overlaps it with flattening and copy-back. Off by
  // default: OpenMPI's nonblocking reductions are slower than its blocking ones (comm_bench), and
  // NCCL is asynchronous on its stream either way.
  bool overlap = false;
  // After the first synchronize, each .grad becomes a view into its bucket (as DDP's
  // gradient_as_bucket_view): backward then accumulates straight into the bucket and the two
  // copies per step disappear. Requires that grads are zeroed in place (Module::zero_grad,
  // Optimizer::zero_grad do) rather than replaced; a replaced grad is copied as usual.
  bool grads_as_bucket_views = true;
};

class GradientBuckets {
 public:
  struct Bucket {
    torch::ScalarType dtype;
    torch::Device device;
    std::vector<size_t> params;    // indices into the constructor's parameter list
    std::vector<int64_t> offsets;  // element offset of each parameter inside flat
    int64_t numel = 0;
    torch::Tensor flat;            // persistent buffer, reused every step
  };

  // params in registration order (e.g. module->parameters()); ones without requires_grad are
  // left out. Collective: checks that every rank passes the same dtypes and shapes (a UserError
  // naming the first differing parameter index otherwise).
  GradientBuckets(Communicator& comm, std::vector<torch::Tensor> params, BucketOptions options = {});

  // Replaces every gradient by its average over the ranks. A parameter whose .grad is undefined
  // on this rank contributes zeros and receives the average, so all ranks end with equal grads.
  // With grads_as_bucket_views the .grad tensors are afterwards views into the buckets.
  void synchronize();

  const std::vector<Bucket>& buckets() const { return buckets_; }
  const BucketOptions& options() const { return options_; }

 private:
  void flatten(Bucket& b);
  void scatter(Bucket& b);
  Communicator& comm_;
  std::vector<torch::Tensor> params_;
  BucketOptions options_;
  std::vector<Bucket> buckets_;
};

}  // namespace driftlab::comm
