// NCCL backend of Communicator: CUDA tensors on this rank's GPU (device = local rank modulo the
// visible devices), collectives on LibTorch's current CUDA stream of that device. Built only with
// a CUDA-enabled LibTorch (DRIFTLAB_WITH_CUDA); the raw NCCL calls are in nccl_comm.h. Metadata of
// variable-size gathers travels over MPI, the data over NCCL.
#pragma once

#include <mpi.h>

#include <memory>

#include "comm/communicator.h"
#include "comm/nccl_comm.h"

namespace driftlab::comm {

class NcclCommunicator final : public Communicator {
 public:
  // watchdog: the deadline of every collective and wait (watchdog.h); on expiry the NCCL
  // communicator is aborted and MPI_Abort ends the job.
  explicit NcclCommunicator(const Topology& topology, const WatchdogOptions& watchdog = {});
  ~NcclCommunicator() override;

  std::string backend() const override { return "nccl"; }
  int rank() const override { return nccl_->rank(); }
  int world_size() const override { return nccl_->size(); }
  int local_rank() const override { return local_rank_; }
  torch::Device device() const override;

  void all_reduce(torch::Tensor& t, ReduceOp op) override;
  torch::Tensor all_gather(const torch::Tensor& t) override;
  torch::Tensor all_gather_varying(const torch::Tensor& t, std::vector<int64_t>* counts) override;
  void broadcast(torch::Tensor& t, int root) override;
  // Returns when every rank has reached it and this rank's queued GPU work has finished.
  void barrier() override;

 private:
  void require_device(const torch::Tensor& t, const char* operation) const;
  MPI_Comm mpi_ = MPI_COMM_NULL;
  int local_rank_ = 0;
  std::unique_ptr<NcclComm> nccl_;
};

}  // namespace driftlab::comm
