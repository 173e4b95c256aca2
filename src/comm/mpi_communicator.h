// MPI backend of Communicator: tensors over an MPI communicator (OpenMPI here). CPU tensors move
// in place; CUDA tensors are copied to host memory and back around each collective (this MPI is
// not assumed CUDA-aware): how several ranks share one GPU, which NCCL refuses.
//
// Every collective runs under the collective watchdog's deadline (watchdog.h): the blocking MPI
// call is marked with a Scope, which costs four plain stores (the blocking collectives are
// kept: OpenMPI's nonblocking ones are slower on large messages).
//
// Reductions take float32, float64, int32, int64, and bfloat16/float16 (reduced in float32, as MPI
// has no 16-bit float types); gathers and broadcasts move any dtype as bytes. Averages need a
// floating dtype. Tensors on other devices are refused (UnsupportedOperation). device() is the
// CPU: a rank computes on a GPU over this backend only when asked (drift_train --device=cuda).
#pragma once

#include <mpi.h>

#include "comm/communicator.h"

namespace driftlab::comm {

class MpiCommunicator final : public Communicator {
 public:
  // Duplicates `comm` (collective over it) so this communicator's traffic never mixes with
  // other users of the same ranks; errors on the duplicate are returned, not fatal in MPI.
  // watchdog: the deadline of every collective (watchdog.h; default none); on expiry MPI_Abort
  // ends the job.
  MpiCommunicator(MPI_Comm comm, int local_rank, const WatchdogOptions& watchdog = {});
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  std::string backend() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  int local_rank() const override { return local_rank_; }
  torch::Device device() const override { return torch::kCPU; }

  void all_reduce(torch::Tensor& t, ReduceOp op) override;
  std::unique_ptr<Work> all_reduce_async(torch::Tensor& t, ReduceOp op) override;
  torch::Tensor all_gather(const torch::Tensor& t) override;
  torch::Tensor all_gather_varying(const torch::Tensor& t, std::vector<int64_t>* counts) override;
  void broadcast(torch::Tensor& t, int root) override;
  void barrier() override;

  MPI_Comm comm() const { return comm_; }

  // Reductions larger than this go as several MPI calls of at most this many bytes (same on
  // every rank). MPI allocates a temporary buffer of the message size for each reduction, and
  // glibc serves blocks of 32 MiB and more with a fresh mmap each time, whose page faults cost
  // far more than the transfer (comm_bench: a 32 MiB all-reduce 17x slower unchunked; figures in
  // README, 'Measured figures'). Smaller blocks are reused from the heap.
  static constexpr int64_t kDefaultReduceChunkBytes = int64_t{16} << 20;
  void set_reduce_chunk_bytes(int64_t bytes);
  int64_t reduce_chunk_bytes() const { return reduce_chunk_bytes_; }

 private:
  void require_host_or_cuda(const torch::Tensor& t, const char* operation) const;
  void check_reducible(const torch::Tensor& t, ReduceOp op, const char* operation) const;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int world_ = 1;
  int local_rank_ = 0;
  int64_t reduce_chunk_bytes_ = kDefaultReduceChunkBytes;
};

}  // namespace driftlab::comm
