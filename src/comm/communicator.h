// The narrow collective interface every distributed part of driftlab talks to.
//
// All collectives act on tensors, are called by every rank in the same order with matching
// arguments, and are blocking unless they return a Work handle. Backends: MPI for CPU tensors
// (mpi_communicator.h) and NCCL for CUDA tensors (nccl_communicator.h). A world of one process
// runs through the same backends. An operation a backend lacks (or a tensor it cannot handle)
// throws UnsupportedOperation naming the backend and the operation.
// Not here: process start-up and rank discovery (topology.h), gradient buckets (grad_buckets.h).
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "comm/watchdog.h"
#include "common/check.h"

namespace driftlab::comm {

struct Topology;

enum class ReduceOp { kSum, kMax, kAvg };
const char* to_string(ReduceOp op);

// A backend asked for something it cannot do: "communicator backend 'mpi' does not support ...".
class UnsupportedOperation : public UserError {
 public:
  UnsupportedOperation(const std::string& backend, const std::string& operation, const std::string& detail);
};

// Handle of a collective in flight. wait() completes it (results are in the tensor after wait);
// dropping a Work without wait() waits in the destructor, so buffers are never freed early.
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual std::string backend() const = 0;  // "mpi", "nccl", ...
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual int local_rank() const = 0;
  // Where this backend expects its tensors (CPU for MPI, the rank's GPU for NCCL).
  virtual torch::Device device() const = 0;

  // In place: t becomes the element-wise reduction of every rank's t (same shape and dtype).
  virtual void all_reduce(torch::Tensor& t, ReduceOp op);
  void all_reduce_sum(torch::Tensor& t) { all_reduce(t, ReduceOp::kSum); }
  void all_reduce_max(torch::Tensor& t) { all_reduce(t, ReduceOp::kMax); }
  void all_reduce_avg(torch::Tensor& t) { all_reduce(t, ReduceOp::kAvg); }
  // Starts an in-place all-reduce; t holds the result after wait(). The default runs it now.
  virtual std::unique_ptr<Work> all_reduce_async(torch::Tensor& t, ReduceOp op);

  // Concatenation along dim 0 of every rank's t, in rank order. Equal shapes on every rank
  // (a 0-dim t gathers into shape [world]).
  virtual torch::Tensor all_gather(const torch::Tensor& t);
  // As all_gather, but dim 0 may differ between ranks (the other dims may not). counts, when
  // given, receives each rank's dim 0. In a world of one the result is t itself (no copy), so
  // callers never branch on the world size.
  virtual torch::Tensor all_gather_varying(const torch::Tensor& t, std::vector<int64_t>* counts = nullptr);

  // In place: every rank's t becomes root's t (same shape and dtype everywhere).
  virtual void broadcast(torch::Tensor& t, int root);
  virtual void barrier();

  // The step the caller is in: the collective watchdog names it when a collective times out
  // (the trainer sets it every step). Cheap (one relaxed store); a no-op without a watchdog.
  void set_step(int64_t step) {
    if (watchdog_) watchdog_->set_step(step);
  }
  // The deadline on this communicator's collectives (watchdog.h); null when there is none (a
  // world of one, or a timeout of 0).
  CollectiveWatchdog* watchdog() const { return watchdog_.get(); }

 protected:
  [[noreturn]] void unsupported(const std::string& operation, const std::string& detail = "") const;
  // Backends create it once rank and world are known (start_watchdog) and reset it first thing
  // in their destructor, so its thread never outlives what their abort touches.
  void start_watchdog(const WatchdogOptions& options, int rank, int world, std::function<void(int)> abort);
  std::unique_ptr<CollectiveWatchdog> watchdog_;
};

// Options of make_communicator (the tools fill them from their flags).
struct CommOptions {
  WatchdogOptions watchdog;  // deadline of every collective (--collective_timeout of drift_train)
};

// Makes the communicator for this process (collective over the world). backend: "mpi", "nccl" or
// "auto" (NCCL when this build has CUDA and every rank of the node has its own visible GPU, else
// MPI, warned when GPUs are visible); tools take it from
// their --backend flag. "nccl" in a build or on a machine without it is a UserError saying what is
// missing. options.watchdog: the deadline of every collective (default: none; drift_train and
// comm_bench pass their --collective_timeout).
std::unique_ptr<Communicator> make_communicator(const Topology& topology, const std::string& backend = "auto",
                                                const CommOptions& options = {});

// The device a rank computes on. request: "cpu", "cuda" (the rank's local GPU), "cuda:N", or
// "auto" (the rank's local GPU when this build has CUDA and one is visible, else the CPU). The
// local GPU is local_rank mod the visible devices: the one the NCCL backend uses, so training and
// sampling follow one rule. UserError naming `what` (the flag) for another value or for cuda
// where no GPU is visible.
torch::Device select_device(const std::string& request, const Topology& topology, const std::string& what = "--device");

// "Some rank acts, every rank learns the outcome" (collective): each rank says whether its part
// went well; every rank gets the lowest rank that said no, or -1 when none did. The tools use it
// wherever one rank (or every rank) does file work the others must not run past: the trainer's
// checkpoint shards and manifest, the sampler's output folder.
int lowest_failed_rank(Communicator& comm, bool ok);

}  // namespace driftlab::comm
